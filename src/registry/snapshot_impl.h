/* snapshot_impl.h — internal to the registry: the layout of a snapshot and
 * how the registry builds one. Readers use snapshot.h only. */
#ifndef EM_REGISTRY_SNAPSHOT_IMPL_H
#define EM_REGISTRY_SNAPSHOT_IMPL_H

#include <stdatomic.h>
#include <urcu/urcu-memb.h>

#include "registry/fakeip.h"
#include "registry/objects.h"
#include "registry/snapshot.h"
#include "registry/strmap.h"

/* Bump allocator: everything a service entry (or a snapshot's indices)
 * points to lives in a few chunks, so building is cheap and freeing is a
 * handful of free() calls. */
struct em_arena_chunk;
struct em_arena {
	struct em_arena_chunk *head;
	size_t used_total;
	size_t chunk;			/* chunk size; 0: 256 KiB */
};

void *em_arena_alloc(struct em_arena *a, size_t size);
char *em_arena_strdup(struct em_arena *a, const char *s);
void em_arena_free(struct em_arena *a);

/* One service as readers see it, with everything it points to. Shared by
 * consecutive snapshots while the service and its backends do not change
 * (refcounted): a commit rebuilds only the services it touched, and the
 * balancer state attached to an unchanged port survives the commit.
 * port_init runs once when the entry is built, port_fini once when the last
 * snapshot holding it is freed. */
struct em_svc_block {
	atomic_uint refs;
	uint64_t obj_seq;		/* the Service object it was built from */
	uint64_t built_gen;		/* pod index generation at build */
	bool has_pod_backends;
	uint64_t *ep_seqs;		/* Endpoints/slices used, if any */
	size_t n_ep_seqs;
	bool has_ref_pods;		/* an address of those names a pod (targetRef) */
	uint64_t ref_bloom;		/* bit (hash & 63) of each such pod's "ns/name" */
	struct em_snapshot_hooks hooks;
	unsigned char *port_ok;		/* per port: port_init returned 0 */
	size_t n_backends;
	struct em_arena arena;
	struct em_service svc;
};

struct em_snapshot {
	char *domain;
	struct em_svc_block **blocks;	/* sorted by "ns/name" */
	size_t n_services;
	size_t n_backends;
	uint32_t *name_tab;		/* open addressing: service index + 1, 0 empty */
	size_t name_mask;
	struct em_addr_slot *addr_tab;
	size_t addr_mask;
	struct em_arena arena;		/* the index tables */
};

/* Drops one reference; the last one runs port_fini and frees. */
void em_svc_block_put(struct em_svc_block *b);
/* The entry for ns/name in snap (exact, case-sensitive), or NULL. */
struct em_svc_block *em_snapshot_block(const struct em_snapshot *snap, const char *ns,
				       const char *name);

/* A growable list of objects: the pods of one label in the pod index, or
 * the Endpoints (or EndpointSlice) objects of one service. */
struct em_obj_list {
	struct em_obj **objs;
	size_t n, cap;
	uint64_t gen;			/* pod index: index generation of the last change */
};

/* Pods by "ns\1key\1value" -> struct em_obj_list of pods; only pods that
 * can be a backend (ready, with an address). The registry keeps it up to
 * date as the pod in effect for a name changes, so a build never scans
 * every pod. */

struct em_pod_index {
	struct em_strmap by_label;
	uint64_t gen;			/* bumped by every add/remove */
};

void em_pod_index_init(struct em_pod_index *idx);
/* Both are no-ops for a pod that cannot be a backend; remove must get the
 * same (unchanged) object that add got. */
int em_pod_index_add(struct em_pod_index *idx, struct em_obj *pod);
void em_pod_index_remove(struct em_pod_index *idx, struct em_obj *pod);
void em_pod_index_clear(struct em_pod_index *idx);
/* Empties the index for a rebuild, keeping its generation monotonic. */
void em_pod_index_reset(struct em_pod_index *idx);
/* Lists of objects by key (endpoints by "ns/service"): add, and the value
 * destructor for em_strmap_clear(). */
int em_objlist_add(struct em_strmap *m, const char *key, struct em_obj *o);
void em_objlist_free(void *v);

struct em_build_input {
	const char *domain;
	struct em_obj *const *services;
	size_t n_services;
	const struct em_pod_index *pods;
	/* Endpoints objects by "ns/name", slices by "ns/service" (values:
	 * struct em_obj_list, filled with em_objlist_add). */
	const struct em_strmap *endpoints;
	const struct em_strmap *slices;
	/* The pod in effect named "ns/name", or NULL: Endpoints addresses
	 * whose targetRef names a known pod follow the hostPort/hostNetwork
	 * rule. May be NULL (no pod is known). */
	struct em_obj *(*pod_lookup)(void *ctx, const char *nsname);
	void *pod_lookup_ctx;
	/* Pods ("ns/name" keys) whose object in effect changed since prev was
	 * built, or all_pods_changed; may be NULL (none changed). */
	const struct em_strmap *pods_changed;
	bool all_pods_changed;
	struct em_fakeip_pool *pool;	/* may be NULL (no fake IPs) */
	const struct em_snapshot_hooks *hooks;
	const struct em_snapshot *prev;	/* entries are reused from it; may be NULL */
};

struct em_build_stats {
	size_t services, backends;
	size_t rebuilt;			/* entries built (the others were reused) */
	uint64_t fake_exhausted;	/* services left without a fake IP */
};

/* Builds (and indexes) a snapshot; port_init hooks run before it returns. */
int em_snapshot_build(const struct em_build_input *in, struct em_snapshot **out,
		      struct em_build_stats *st);
/* Runs port_fini hooks and frees. NULL is a no-op. Only after a grace period. */
void em_snapshot_free(struct em_snapshot *snap);
/* Fills the hash indices of an assembled snapshot. */
int em_snapshot_index(struct em_snapshot *snap);

#endif
