/* peers.h — internal to edgemesh-tproxy: the peer core every strategy of a
 * service port shares (nginx's upstream round-robin peers, in spirit).
 *
 * Three layers:
 *   - struct em_lb_peer: the state of one backend ADDRESS of one service
 *     port: in-flight count, consecutive failures, ejection, latency peak
 *     EWMA, smooth-weighted-round-robin position, counters. Atomics: picks
 *     and releases on several workers update it at once.
 *   - struct em_lb_svc: every peer of one service port (ns/name/proto/port),
 *     plus what is shared by all its balancers: the pick lock of smooth
 *     weighted round robin, the total in flight (bounded-load hashing), the
 *     ClientIP affinity table. Lives in a table owned by struct em_lb, so
 *     that a balancer built for the next snapshot finds the state of every
 *     backend that stayed.
 *   - struct em_lb_core: what one balancer (struct em_lb_port) sees: its
 *     backend list mapped to peers, the tuning, the cached health summary,
 *     and the public view (struct em_balancer_peers, first member, so a
 *     built-in strategy gets its core back from req->peers).
 *
 * Lifetime (all under the struct em_lb's lock, never on the pick path):
 *   - a balancer holds a reference on its svc and on each of its peers;
 *   - every snapshot port of the key that was init'ed while the svc existed
 *     (or that built a balancer) counts in svc->ports until port_fini;
 *   - port_init of a port whose svc exists marks the peers of its backends
 *     seen and every other peer REMOVED: old balancers still finishing
 *     connections never pick them again;
 *   - a peer is freed when no balancer holds it and it is removed (or its
 *     svc goes); a svc when no balancer holds it and no port counts it:
 *     the service is gone, or was never used again.
 */
#ifndef EM_LB_PEERS_H
#define EM_LB_PEERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "edgemesh/balancer.h"
#include "registry/snapshot.h"
#include "util/clock.h"

/* Health and strategy parameters: defaults, the daemon's options, then the
 * service's annotation arguments override them. */
struct em_lb_tuning {
	uint32_t max_fails;		/* consecutive connect failures/timeouts that eject; 0: never */
	uint32_t max_5xx;		/* consecutive 5xx answers (HTTP ports) that eject; 0: never */
	uint32_t eject_base_ms;		/* first ejection; the n-th lasts n times longer */
	uint32_t eject_max_ms;		/* cap of one ejection */
	uint32_t max_eject_pct;		/* never eject more than this share of backends */
	uint32_t panic_pct;		/* healthy share below which health is ignored */
	uint32_t hash_load_pct;		/* consistent-hash load bound c, in % (125); 0: unbounded */
	uint32_t ewma_decay_ms;		/* peak-EWMA time constant */
	uint32_t ewma_default_us;	/* cost of a backend without a latency sample yet */
};

#define EM_LB_TUNING_DEFAULTS { \
	.max_fails = 1, .max_5xx = 5, .eject_base_ms = 10000, .eject_max_ms = 300000, \
	.max_eject_pct = 50, .panic_pct = 50, .hash_load_pct = 125, \
	.ewma_decay_ms = 10000, .ewma_default_us = 30000, }

struct em_lb_peer {
	/* Read by every pick that looks at this backend: kept together in the
	 * first cache line (an O(n) pick touches one line per backend). */
	_Atomic uint32_t removed;	/* 1: not in the service's latest backend list */
	_Atomic uint32_t in_flight;
	_Atomic uint64_t ejected_until_ns;
	int64_t swrr_current;		/* under svc->pick_lock */
	_Atomic uint32_t weight;
	_Atomic uint32_t fails;		/* consecutive connect failures and timeouts */
	_Atomic uint32_t fails_5xx;	/* consecutive 5xx */
	_Atomic uint32_t ejections;
	_Atomic uint64_t ewma_ns;
	_Atomic uint64_t ewma_stamp_ns;
	/* Key: the backend address. */
	int family;
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} ip;
	uint16_t port;
	uint64_t id;			/* unique in the process, never reused */
	/* Under the em_lb lock. */
	unsigned refs;
	uint64_t seen_gen;
	struct em_lb_peer *hnext;	/* svc hash chain */
	/* Counters. */
	_Atomic uint64_t picks, oks, failures, timeouts, locals, cancels, status_5xx,
		ejected_total;
};

struct em_lb_affinity;

struct em_lb_svc_table;

struct em_lb_svc {
	char *key;			/* "ns/name/proto/port" */
	uint64_t hash;
	struct em_lb_svc *next;		/* table chain */
	struct em_lb_svc_table *owner;	/* NULL: standalone (em_lb_port_new without em_lb) */
	/* Under the em_lb lock. */
	unsigned refs;			/* balancers */
	unsigned ports;			/* counted snapshot ports */
	uint64_t gen;
	/* The port of the latest port_init while the state existed, until its
	 * port_fini: its backends are the live ones. Compared as an identity
	 * and read only under the lock (the port is alive until its fini). */
	const struct em_service_port *latest;
	struct em_lb_peer **tab;	/* peers by address */
	size_t tab_size, n_peers;
	/* Shared by the svc's balancers. */
	pthread_mutex_t pick_lock;	/* smooth weighted round robin */
	_Atomic uint64_t in_flight;	/* sum of the peers' in_flight */
	struct em_lb_affinity *affinity;	/* NULL until the first ClientIP pick */
	pthread_mutex_t affinity_lock;
};

/* One balancer's view of its peers. */
struct em_lb_core {
	struct em_lb_svc *svc;
	struct em_lb_peer **peer;	/* [n], index-aligned with the backends */
	uint32_t *weight;		/* [n] */
	uint64_t total_weight;
	size_t n;
	struct em_lb_tuning tune;
	bool http;
	bool affinity;			/* sessionAffinity ClientIP */
	uint64_t affinity_timeout_ns;
	/* Health summary cache (see em_lb_core_begin). */
	_Atomic uint64_t health_until_ns;
	_Atomic uint32_t n_usable;
	_Atomic uint32_t panic;
	/* Peer id -> index, open addressing, for affinity hits. */
	uint64_t *id_slot;
	int *id_index;
	size_t id_mask;
};

/* The monotonic clock of the balancer layer, plus an offset tests move
 * forward (em_lb_test_advance_clock in lb.h). */
extern _Atomic uint64_t em_lb_clock_offset_ns;

static inline uint64_t em_lb_now_ns(void)
{
	return em_clock_coarse_ns() + atomic_load_explicit(&em_lb_clock_offset_ns, memory_order_relaxed);
}

/* One pick, on the picking thread's stack: the public view (first member:
 * req->peers points here) and what the built-ins need besides. */
struct em_lb_pick {
	struct em_balancer_peers view;
	struct em_lb_core *core;
	uint64_t now;
};

/* The pick a built-in strategy runs in (a plugin sees the public view). */
static inline const struct em_lb_pick *em_lb_pick_of(const struct em_balancer_request *req)
{
	return (const struct em_lb_pick *)req->peers;
}

static inline bool em_lb_peer_ejected(const struct em_lb_peer *p, uint64_t now)
{
	return atomic_load_explicit(&p->ejected_until_ns, memory_order_relaxed) > now;
}

/* May backend i be picked now? Not removed, and not ejected unless the
 * port is in panic (then health is ignored). */
static inline bool em_lb_core_usable(const struct em_lb_core *c, size_t i, uint64_t now)
{
	const struct em_lb_peer *p = c->peer[i];

	if (atomic_load_explicit(&p->removed, memory_order_relaxed))
		return false;
	return atomic_load_explicit(&c->panic, memory_order_relaxed) ||
	       !em_lb_peer_ejected(p, now);
}

static inline uint32_t em_lb_core_in_flight(const struct em_lb_core *c, size_t i)
{
	return atomic_load_explicit(&c->peer[i]->in_flight, memory_order_relaxed);
}

/* Peak-EWMA latency of backend i decayed to `now`, in ns; the default cost
 * when it has no sample yet (linkerd2-proxy / tower PeakEwma). */
uint64_t em_lb_core_latency_ns(const struct em_lb_core *c, size_t i, uint64_t now);

/* Per-thread xorshift64* generator (random, least-request). */
uint64_t em_lb_random(void);

/* The state of backend `index` into *out (out->size set by the caller). */
int em_lb_core_state(const struct em_lb_core *c, int index, struct em_balancer_peer_state *out);

/* ---- core.c --------------------------------------------------------- */

/* Build the core for `port`'s backends with svc (a reference is taken on
 * it and on each peer: the caller holds the em_lb lock when svc->owner is
 * set). Returns 0 or -ENOMEM. */
int em_lb_core_init(struct em_lb_core *c, struct em_lb_svc *svc,
		    const struct em_balancer_port *port, const struct em_lb_tuning *tune);
/* Drop the references (takes the em_lb lock itself) and free. */
void em_lb_core_fini(struct em_lb_core *c);

/* Before a pick: fill *pk (refreshing the health summary when stale). */
void em_lb_core_begin(struct em_lb_core *c, struct em_lb_pick *pk);
/* After a pick of index i (>= 0): count it in flight. */
void em_lb_core_picked(struct em_lb_core *c, int i);
/* A release: in flight, counters, latency, passive health. */
void em_lb_core_released(struct em_lb_core *c, int i, const struct em_balancer_result *res);

/* ClientIP affinity: the remembered backend of the client, if any, usable
 * and not `avoid`, else -1. */
int em_lb_core_affinity_get(struct em_lb_core *c, const struct sockaddr *client,
			    int avoid, uint64_t now);
/* Remember (or refresh) client -> backend i. */
void em_lb_core_affinity_set(struct em_lb_core *c, const struct sockaddr *client,
			     int i, uint64_t now);
void em_lb_affinity_free(struct em_lb_affinity *a);

/* ---- tuning.c, strategy.c ------------------------------------------------ */

/* Apply "key=value" settings found in a strategy's argument text
 * (separated by ',' or ';'): fails=N, fails-5xx=N, eject=DUR, eject-max=DUR,
 * max-eject=PCT, panic=PCT, load=FACTOR (e.g. 1.25; 0: unbounded),
 * decay=DUR, rtt=DUR (DUR: a number of ms, or with an ms/s/m suffix).
 * Other keys belong to the strategy and are skipped; a bad value leaves
 * the setting alone. Returns the number of bad values. */
int em_lb_tuning_parse(struct em_lb_tuning *t, const char *args);
/* Look up `key` in such argument text; copies its value into buf. */
bool em_lb_args_get(const char *args, const char *key, char *buf, size_t len);

struct em_lb;
struct em_lb_svc_table *em_lb_svc_table_of(struct em_lb *lb);
const struct em_lb_tuning *em_lb_tuning_of(const struct em_lb *lb);

/* ---- svc.c: the per-service-port state table of struct em_lb -------- */

/* Owned by struct em_lb. The lock is taken when a balancer is built or
 * freed and by the snapshot hooks: never on the pick/release path. */
struct em_lb_svc_table {
	pthread_mutex_t lock;
	struct em_lb_svc **buckets;
	size_t n_buckets, count;
};

void em_lb_svc_table_init(struct em_lb_svc_table *t);
/* Precondition: no balancer left (every svc is unreferenced). */
void em_lb_svc_table_fini(struct em_lb_svc_table *t);
size_t em_lb_svc_table_count(struct em_lb_svc_table *t);
struct em_lb_stats;
void em_lb_svc_table_stats(struct em_lb_svc_table *t, struct em_lb_stats *st);

/* The key of a service port, "ns/name/proto/port", into buf. */
void em_lb_svc_key(const char *ns, const char *name, int ipproto, uint16_t port,
		   char *buf, size_t len);
/* port_init: when the key has state, count the port, make it the latest,
 * and mark the peers of its backends seen and all others removed. Returns
 * true when counted. */
bool em_lb_svc_table_port_init(struct em_lb_svc_table *t, const char *key,
			       const struct em_service_port *port);
/* port_fini of a counted port (`port` only compared, never read). */
void em_lb_svc_table_port_fini(struct em_lb_svc_table *t, const char *key,
			       const void *port);
/* With the table locked, after a balancer for `port` mapped its peers: when
 * a later port is the latest, the peers it lacks are removed (a worker
 * building its first balancer from an older snapshot must not revive a
 * backend that has left). */
void em_lb_svc_mark_stale(struct em_lb_svc *svc, const struct em_service_port *port,
			  struct em_lb_peer *const *peers, size_t n);

/* A balancer is being built: the svc of `key`, created if needed, with a
 * reference for the balancer; counts the port unless `counted` (already
 * counted by port_init); *incremented tells whether this call counted it.
 * The lock is held on return (the caller maps peers, then calls
 * em_lb_svc_table_unlock). NULL (lock released) on ENOMEM. */
struct em_lb_svc *em_lb_svc_table_acquire(struct em_lb_svc_table *t, const char *key,
					  bool counted, bool *incremented);
void em_lb_svc_table_unlock(struct em_lb_svc_table *t);

/* A standalone svc (tests, em_lb_port_new): refs 1, in no table. */
struct em_lb_svc *em_lb_svc_new_standalone(void);
/* With the table locked (or standalone): the peer of an address in svc,
 * created if needed, with a reference taken. NULL on ENOMEM. */
struct em_lb_peer *em_lb_svc_peer(struct em_lb_svc *svc, const struct em_balancer_backend *b);
/* Drop a balancer's references on its svc and peers (takes the lock). */
void em_lb_svc_unref(struct em_lb_svc *svc, struct em_lb_peer *const *peers, size_t n);

#endif
