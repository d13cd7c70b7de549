/* kube_internal.h — internal to the kube source: what kube.c (configuration,
 * start and stop) shares with kube_list_watch.c (the per-resource LIST +
 * WATCH loop). The transport is kube_http.h. */
#ifndef EM_SOURCES_KUBE_INTERNAL_H
#define EM_SOURCES_KUBE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sources/kube.h"
#include "sources/kube_http.h"
#include "sources/watch_stream.h"
#include "util/log.h"

#define EM_KUBE_RV_MAX 128		/* resourceVersion, NUL included */

/* One resource the source lists and watches (kube.c's table). */
struct kube_kind {
	const char *kind;		/* "Service", ... (the sink's kind) */
	const char *path;		/* "/api/v1/services" */
	bool node_scoped;		/* pods_on_node_only adds the fieldSelector */
	bool optional;			/* a 404 disables it (EndpointSlices on old servers) */
};

#define EM_KUBE_MAX_KINDS 4

/* A resource's thread and the state of its list/watch. */
struct kube_resource {
	struct em_source_kube *k;
	const struct kube_kind *kind;
	pthread_t thread;
	bool thread_started;
	struct em_kube_http *http;
	struct em_watch_stream *ws;
	char rv[EM_KUBE_RV_MAX];
	bool down;			/* last request failed: log recovery */
	uint64_t rng;
	struct em_ratelimit rl;

	/* State of the watch in flight. */
	bool watching;
	bool dirty;			/* events changed something: commit (batched) */
	uint64_t dirty_since_ns;	/* first uncommitted change */
	uint64_t last_rx_ns;		/* last stream bytes */
	bool got_410;
	bool stream_error;
	unsigned long events;
};

struct em_source_kube {
	char *name;
	char *base;			/* URL without trailing '/' */
	char *token_file;
	char *ca_file;
	char *field_selector;		/* escaped "spec.nodeName=<node>" or NULL */
	struct em_kube_config cfg;	/* numbers with defaults applied */
	struct em_kube_http_opts http;	/* borrows the strings above */
	struct em_source_sink sink;
	struct kube_resource res[EM_KUBE_MAX_KINDS];
	unsigned nres;
	atomic_bool stop;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned listed;		/* resources past their first LIST */

	atomic_ulong n_lists, n_watches, n_events, n_410, n_errors, n_stalls;
};

/* The thread of one resource (arg: struct kube_resource): LIST, then WATCH
 * until stop, relisting on 410, backing off on failures. */
void *em_kube_resource_thread(void *arg);

/* The watch stream's event callback (ctx: struct kube_resource). */
int em_kube_on_event(void *ctx, const struct em_watch_event *ev);

#endif
