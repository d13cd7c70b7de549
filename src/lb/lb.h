/* lb.h — internal to edgemesh-tproxy (plugins include edgemesh/balancer.h only).
 *
 * The balancer layer: the table of strategies (built-in and loaded from
 * plugins), the choice of strategy per service, and the refcounted per-port
 * balancer (struct em_lb_port) that the forwarder picks from. The registry
 * knows nothing of it: em_snapshot_hooks lets this layer own the port->lb
 * slot of every service port.
 *
 * Created lazily. An edge node has thousands of services and talks to a
 * handful, so a balancer (backend copy, strings, strategy instance) is built
 * on the first connection to a port, not when the snapshot is built.
 * port->lb holds one of:
 *   - NULL: no hooks ran (or the port is finished): no balancer, ever;
 *   - the struct em_lb, tagged with bit 0: hooks ran, nothing built yet
 *     (costs nothing: port_init allocates nothing);
 *   - a struct em_lb_port: built, holding the snapshot's reference.
 * The only transition readers make is tagged -> built, with a
 * compare-and-swap (release) by em_lb_port_acquire(); slots are read with
 * acquire. Because a service port is shared by every snapshot that did not
 * rebuild its service (registry.h), a balancer built through one snapshot
 * serves the following ones too: round robin and health state survive
 * unrelated commits, as they did when built eagerly.
 *
 * Lifetime of a struct em_lb_port (the hazard: a connection outlives the
 * snapshot it was routed with):
 *   - em_lb_port_acquire(), inside the reader's RCU read-side section, builds
 *     the balancer if the slot has none: the slot's reference is the
 *     snapshot's; the CAS loser destroys its own copy, which nobody saw;
 *   - it then takes the caller's own reference (safe: port_fini, which drops
 *     the slot's, cannot run before the section ends);
 *   - port_fini (after the grace period that follows the last snapshot
 *     holding the port; no reader can CAS any more) drops the snapshot's
 *     reference if one was built, and clears the slot;
 *   - the connection calls em_lb_port_release() for its pick and then
 *     em_lb_port_put(); the last put destroys the strategy instance and the
 *     backend copy. The port keeps its own copy of the backends and names,
 *     so picks, releases and labels never touch snapshot memory after the
 *     RCU section.
 */
#ifndef EM_LB_LB_H
#define EM_LB_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "edgemesh/balancer.h"
#include "registry/snapshot.h"

#define EM_LB_DEFAULT_STRATEGY "round-robin"

/* Built-in strategies (one file each). */
extern const struct em_balancer_ops em_lb_round_robin_ops;
extern const struct em_balancer_ops em_lb_random_ops;
extern const struct em_balancer_ops em_lb_least_conn_ops;
extern const struct em_balancer_ops em_lb_least_request_ops;
extern const struct em_balancer_ops em_lb_consistent_hash_ops;

struct em_lb;		/* configuration, plugins, carried peer state */
struct em_lb_port;	/* refcounted balancer of one service port */
struct em_lb_tuning;	/* health and strategy parameters (peers.h) */

/* Built-in strategy by name (NULL-terminated table), or NULL. */
const struct em_balancer_ops *em_lb_find(const char *name);

/* dlopen `path` and fetch its ops through EM_BALANCER_PLUGIN_SYMBOL; checks
 * the ABI version and the mandatory callbacks. On success *handle is the
 * dlopen handle (dlclose it only once no instance of the strategy exists).
 * Before dlopen the path must pass em_trust_code_path() (absolute; file
 * and directory owned by root, not group/world-writable): -EINVAL or
 * -EPERM otherwise, with the reason in `err`.
 * Errors: -ENOENT (cannot load: `err` gets dlerror()), -ENOEXEC (no entry
 * point, or it returned NULL), -EPROTO (ABI version mismatch), -EINVAL
 * (a mandatory field missing). `err` (may be NULL) receives a reason. */
int em_lb_load_plugin(const char *path, const struct em_balancer_ops **ops,
		      void **handle, char *err, size_t errlen);

/* Build the configuration: the default strategy (NULL = round-robin) and
 * plugin paths to load. Logs and returns -errno when a plugin does not load
 * or the default names no strategy. Main thread. */
int em_lb_new(const char *default_strategy, char *const *plugin_paths,
	      unsigned n_plugins, struct em_lb **out);
/* Precondition: every em_lb_port built from `lb` is gone (the proxy is
 * stopped and every snapshot freed): plugins are dlclosed here. */
void em_lb_free(struct em_lb *lb);
/* The daemon-wide defaults of the health and strategy parameters (from
 * options); a service's annotation arguments override them. Main thread,
 * before the first balancer is built. */
void em_lb_set_tuning(struct em_lb *lb, const struct em_lb_tuning *t);
/* Number of service ports whose peer state is kept (tests: state is freed
 * once the service is gone and its last connection ended). */
size_t em_lb_state_count(struct em_lb *lb);
/* Totals over the kept peer state (SIGUSR1 line). */
struct em_lb_stats {
	uint64_t ports;			/* service ports with state */
	uint64_t peers;			/* backends with state */
	uint64_t ejected;		/* backends ejected right now */
	uint64_t ejections;		/* ejections so far (of backends still kept) */
	uint64_t in_flight;
	uint64_t picks, failures, timeouts, status_5xx, local;
};
void em_lb_get_stats(struct em_lb *lb, struct em_lb_stats *st);
/* "ports 3, backends 9, ejected 1, ..." into buf. */
void em_lb_stats_format(const struct em_lb_stats *st, char *buf, size_t len);
/* Tests: move the balancer layer's clock forward (ejection intervals,
 * affinity timeouts, latency decay), and back to real time. */
void em_lb_test_advance_clock(uint64_t ns);
void em_lb_test_reset_clock(void);
/* A loaded plugin by name, then a built-in; NULL if none. */
const struct em_balancer_ops *em_lb_lookup(const struct em_lb *lb, const char *name);

/* Strategy text for a service: its lb annotation ("name" or "name:args"),
 * else `dflt`. (sessionAffinity ClientIP is applied by the core around
 * whichever strategy.) Pure: no lookup. */
const char *em_lb_strategy_for(const struct em_service *svc, const char *dflt);

/* The hooks that make the registry call em_lb_port_init/fini. */
struct em_snapshot_hooks em_lb_snapshot_hooks(struct em_lb *lb);
/* Hook bodies (ctx is the struct em_lb, which must outlive the port).
 * port_init allocates nothing and never fails: it marks the slot for lazy
 * creation and warns (rate-limited) about an unknown strategy annotation,
 * which will fall back to the default. port_fini drops the balancer if one
 * was built; any slot state is fine, a never-used port included. */
int em_lb_port_init(void *lb, struct em_service_port *port);
void em_lb_port_fini(void *lb, struct em_service_port *port);

/* The balancer of a service port, built on first use, with a new reference
 * for the caller (em_lb_port_put() it). Call inside the RCU read-side
 * section that protects `port` (it is read, and its lb slot may be set:
 * snapshots are otherwise immutable). Any thread, concurrently: exactly one
 * balancer is ever installed per port. NULL with errno EAGAIN (the port has
 * no hooks: built without em_lb_snapshot_hooks(), or finished) or ENOMEM. A
 * strategy that refuses the service (its args) falls back to the default,
 * with a rate-limited warning. */
struct em_lb_port *em_lb_port_acquire(const struct em_service_port *port);
/* The port's balancer if it was built, else NULL; takes no reference and
 * never builds (tests, diagnostics). Same RCU rule as em_lb_port_acquire. */
struct em_lb_port *em_lb_port_peek(const struct em_service_port *port);

/* A port balancer with an explicit strategy and state of its own (tests).
 * Returns NULL with errno set. One reference, the caller's. */
struct em_lb_port *em_lb_port_new(const struct em_balancer_ops *ops,
				  const struct em_service_port *port,
				  const struct em_balancer_params *params);
/* The same with the state carried in lb's table for the port's service
 * port (lb's tuning, then params->args). `counted`: port_init already
 * counted the snapshot port in the state; else building counts it, and
 * em_lb_port_uncount(lp, true) undoes that for a balancer never installed.
 * em_lb_port_uncount(lp, false) is port_fini's: the port is gone. */
struct em_lb_port *em_lb_port_build(struct em_lb *lb, const struct em_balancer_ops *ops,
				    const struct em_service_port *port,
				    const struct em_balancer_params *params, bool counted);
void em_lb_port_uncount(struct em_lb_port *lp, bool own_only);
/* Another reference on a balancer the caller holds one on. Not for
 * port->lb, which may not be built yet: em_lb_port_acquire() that. */
struct em_lb_port *em_lb_port_get(struct em_lb_port *lp);
/* Drop a reference; the last one frees. NULL is a no-op. */
void em_lb_port_put(struct em_lb_port *lp);

/* ops->pick for a request (the forwarder fills every field it has: client,
 * original destination, and on HTTP ports the request fields and lookups);
 * -1 when no backend is usable or the strategy answered out of range.
 * req->size is set here; the caller need not. */
int em_lb_port_pick_request(struct em_lb_port *lp, const struct em_balancer_request *req);
/* Shorthand for tests and callers with only a client address. */
int em_lb_port_pick(struct em_lb_port *lp, const struct sockaddr *client,
		    socklen_t client_len, int avoid, unsigned attempt);
/* ops->release with the attempt's result (res->size is set here). */
void em_lb_port_release_result(struct em_lb_port *lp, int index,
			       const struct em_balancer_result *res);
/* Shorthand: a result with only the outcome. */
void em_lb_port_release(struct em_lb_port *lp, int index,
			enum em_balancer_outcome outcome);
size_t em_lb_port_n_backends(const struct em_lb_port *lp);
/* A backend's shared state (weight, in flight, health, latency, counters):
 * out->size set by the caller. 0, or -1 for a bad index. */
int em_lb_port_peer_state(const struct em_lb_port *lp, int index,
			  struct em_balancer_peer_state *out);
const struct em_balancer_backend *em_lb_port_backend(const struct em_lb_port *lp,
						     int index);
/* "ns/name:port" for log messages, formatted on demand (nothing stored):
 * into buf (returns buf, truncated to len), or, for em_lb_port_label(), into
 * one of a few thread-local buffers: valid until the 4th next call on the
 * same thread, i.e. fine for a log line or two. */
char *em_lb_port_format_label(const struct em_lb_port *lp, char *buf, size_t len);
const char *em_lb_port_label(const struct em_lb_port *lp);
const char *em_lb_port_strategy(const struct em_lb_port *lp);
/* Counters of a port balancer since it was built (a commit that changes
 * the service builds a new one). Any thread. */
struct em_lb_port_stats {
	uint64_t requests;		/* first picks: L4 connections, L7 requests */
	uint64_t retries;		/* further picks for the same one */
};
struct em_lb_backend_stats {
	uint64_t picks;			/* times this backend was chosen */
	uint64_t failures;		/* releases with a failure outcome (connect, timeout) */
	uint64_t ejections;		/* times it was ejected (passive health) */
	bool healthy;			/* not failing right now (passive health) */
};
void em_lb_port_get_stats(const struct em_lb_port *lp, struct em_lb_port_stats *out);
/* index < em_lb_port_n_backends(lp). */
void em_lb_port_backend_stats(const struct em_lb_port *lp, int index,
			      struct em_lb_backend_stats *out);
/* Number of live port balancers in the process (tests: leak checks). */
long em_lb_port_live(void);

#endif
