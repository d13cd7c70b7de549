/* registry.h — the object store and the snapshot publisher.
 *
 * Writers: sources call the struct em_source_sink from em_registry_sink()
 * (any thread; calls are serialised by a mutex). commit() builds a new
 * snapshot, publishes it with rcu_assign_pointer() and frees the previous
 * one after a grace period (urcu_memb_synchronize_rcu() on the committing
 * thread, so commit must never be called inside a read-side section).
 *
 * Readers (DNS, forwarder workers), liburcu membarrier flavour:
 *
 *	urcu_memb_register_thread();		// once per thread
 *	urcu_memb_read_lock();
 *	const struct em_snapshot *s = em_registry_current(reg);
 *	... lookups; no pointer from s is used after the unlock ...
 *	urcu_memb_read_unlock();
 *	urcu_memb_unregister_thread();		// before the thread exits
 *
 * An empty snapshot is published by em_registry_new(), so
 * em_registry_current() never returns NULL.
 *
 * Rebuilds are incremental: a commit re-resolves only the services whose
 * Service object, selected pods (tracked per namespace/label/value) or
 * Endpoints changed; every other service's struct em_service (ports,
 * backends, and the balancer state the hooks attached to port->lb) is
 * shared with the previous snapshot. Hence the snapshot hooks run once per
 * service entry, not once per snapshot: port_init when a port is built
 * (on the committing thread, before publication), port_fini after the last
 * snapshot holding it is freed (after a grace period, on a committing
 * thread or in em_registry_free). A pointer to a service may therefore
 * stay the same across generations; readers must still not keep it past
 * their read-side critical section.
 *
 * The same object from two sources: every source name gets a rank the
 * first time the registry sees it (em_registry_add_source() lets the daemon
 * fix the order at start-up, in configuration order). For each (kind,
 * namespace, name) the copy from the source with the LOWEST rank wins, i.e.
 * the source registered first; the others are kept and take over when the
 * winner removes its copy. A source whose name extends a registered one
 * with "/..." (the file source's "file:/dir/a.yaml" under "file:/dir")
 * ranks right after its parent and its earlier siblings, so a whole
 * directory keeps its configured place. */
#ifndef EM_REGISTRY_REGISTRY_H
#define EM_REGISTRY_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <urcu/urcu-memb.h>

#include "registry/snapshot.h"
#include "registry/source.h"

struct em_registry_config {
	const char *cluster_domain;	/* NULL: "cluster.local" */
	const char *fake_ipv4_range;	/* NULL: EM_FAKE_IPV4_RANGE (util/defaults.h) */
	const char *fake_ipv6_range;	/* NULL or "": no fake IPv6 */
	const char *state_dir;		/* NULL: fake IPs are not persisted;
					 * else <state_dir>/fake-ips is used */
	struct em_snapshot_hooks hooks;	/* zero: none */
	const char *const *capture_cidrs; /* never dialed as backends (nor the
					   * fake ranges); may be NULL */
	unsigned n_capture_cidrs;
	bool test_allow_loopback;	/* unit tests without root only: 127/8 backends */
};

struct em_registry;
/* A commit after this many objects were stored or dropped asks for freed
 * memory to be returned to the system: em_registry_trim(). */
#define EM_REGISTRY_TRIM_CHURN 1000

struct em_registry_stats {
	uint64_t generation;		/* snapshots published, 1 = the empty one */
	uint64_t services;		/* in the current snapshot */
	uint64_t backends;
	uint64_t objects;		/* objects held (all sources) */
	uint64_t fake_exhausted;	/* services in the current snapshot without a fake IP
					 * (range exhausted; each also logged, rate-limited) */
	uint64_t rejected;		/* objects refused as unusable */
	uint64_t rejected_addrs;	/* backend addresses refused (loopback,
					 * link-local, fake ranges...; guard.h) */
	uint64_t last_build_us;		/* duration of the last commit */
	uint64_t published_at_ms;	/* CLOCK_REALTIME of the current snapshot */
};

/* NULL with errno set (EINVAL: bad range or domain; ENOMEM). */
struct em_registry *em_registry_new(const struct em_registry_config *cfg);
/* Waits for readers, frees everything. Sources must be stopped first. */
void em_registry_free(struct em_registry *reg);

struct em_source_sink em_registry_sink(struct em_registry *reg);
/* Optional: registers a source name to fix its precedence (see above).
 * Returns its index. */
int em_registry_add_source(struct em_registry *reg, const char *source);

/* Only inside urcu_memb_read_lock()/unlock(). Never NULL. */
const struct em_snapshot *em_registry_current(struct em_registry *reg);
uint64_t em_registry_generation(struct em_registry *reg);
/* After a big commit (EM_REGISTRY_TRIM_CHURN), hands the freed heap back to
 * the system (malloc_trim) and returns true; else does nothing. Called
 * from a quiet moment (the daemon's timer), not from commit: the source
 * frees its copy of a relist (the JSON) only after the commit returns, and
 * the trim would miss it. Any thread. */
bool em_registry_trim(struct em_registry *reg);
void em_registry_get_stats(struct em_registry *reg, struct em_registry_stats *st);

#endif
