/* source.h — what a source of Kubernetes objects (file, kube API /
 * MetaServer, edgecore database) hands to the registry.
 *
 * Objects travel as Kubernetes JSON (jansson json_t), exactly as the API
 * server serialises them, with "kind" set (sources that get items from a
 * typed list set it themselves: "Service", "Pod", "Endpoints",
 * "EndpointSlice"). The sink normalises them.
 *
 * All sink calls may come from any thread; the sink serialises them. They
 * return 0 or -errno (-EINVAL for an object that cannot be used; the caller
 * logs it naming the object). Nothing is visible to readers until commit(). */
#ifndef EM_REGISTRY_SOURCE_H
#define EM_REGISTRY_SOURCE_H

#include <jansson.h>

struct em_source_sink {
	void *ctx;
	/* Add or replace one object (borrowed reference). */
	int (*upsert)(void *ctx, const char *source, json_t *obj);
	/* Remove one object; kind as in "kind" ("Service", ...). */
	int (*remove)(void *ctx, const char *source, const char *kind,
		      const char *ns, const char *name);
	/* Replace every object of `kind` that `source` contributed by the
	 * items of the JSON array `items` (a relist or a file reload). kind
	 * NULL means every kind: items may then mix kinds. */
	int (*replace)(void *ctx, const char *source, const char *kind, json_t *items);
	/* Build and publish a new snapshot from everything received so far. */
	int (*commit)(void *ctx, const char *source);
};

#endif
