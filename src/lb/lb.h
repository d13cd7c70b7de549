/* lb.h — internal to edgemesh-tproxy (plugins include edgemesh/balancer.h only).
 *
 * The balancer layer: the table of strategies (built-in and loaded from
 * plugins), the choice of strategy per service, and the refcounted per-port
 * balancer (struct em_lb_port) that the registry attaches to every service
 * port through em_snapshot_hooks and that the forwarder picks from.
 *
 * Lifetime of a struct em_lb_port (the hazard: a connection outlives the
 * snapshot it was routed with):
 *   - port_init (snapshot build) creates it with one reference, owned by the
 *     snapshot, and stores it in port->lb;
 *   - a reader inside its RCU read-side section takes its own reference with
 *     em_lb_port_get() (safe: port_fini cannot have run yet);
 *   - port_fini (after the grace period) drops the snapshot's reference;
 *   - the connection calls em_lb_port_release() for its pick and then
 *     em_lb_port_put(); the last put destroys the strategy instance and the
 *     backend copy. The port keeps its own copy of the backends, so picks and
 *     releases never touch snapshot memory after the RCU section.
 */
#ifndef EM_LB_LB_H
#define EM_LB_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "edgemesh/balancer.h"
#include "registry/snapshot.h"

#define EM_LB_DEFAULT_STRATEGY "round-robin"

/* Built-in strategies (one file each). */
extern const struct em_balancer_ops em_lb_round_robin_ops;
extern const struct em_balancer_ops em_lb_random_ops;
extern const struct em_balancer_ops em_lb_least_conn_ops;
extern const struct em_balancer_ops em_lb_consistent_hash_ops;

struct em_lb;		/* configuration: default strategy + loaded plugins */
struct em_lb_port;	/* refcounted balancer of one service port */

/* Built-in strategy by name (NULL-terminated table), or NULL. */
const struct em_balancer_ops *em_lb_find(const char *name);

/* dlopen `path` and fetch its ops through EM_BALANCER_PLUGIN_SYMBOL; checks
 * the ABI version and the mandatory callbacks. On success *handle is the
 * dlopen handle (dlclose it only once no instance of the strategy exists).
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
/* A loaded plugin by name, then a built-in; NULL if none. */
const struct em_balancer_ops *em_lb_lookup(const struct em_lb *lb, const char *name);

/* Strategy text for a service: its lb annotation ("name" or "name:args"),
 * else consistent-hash on the client IP for sessionAffinity ClientIP, else
 * `dflt`. Pure: no lookup. */
const char *em_lb_strategy_for(const struct em_service *svc, const char *dflt);

/* The hooks that make the registry call em_lb_port_init/fini. */
struct em_snapshot_hooks em_lb_snapshot_hooks(struct em_lb *lb);
/* Hook bodies (ctx is the struct em_lb). port_init never fails for a bad
 * annotation (falls back to the default strategy, warns); -ENOMEM only. */
int em_lb_port_init(void *lb, struct em_service_port *port);
void em_lb_port_fini(void *lb, struct em_service_port *port);

/* A port balancer with an explicit strategy (tests, and port_init).
 * Returns NULL with errno set. One reference, the caller's. */
struct em_lb_port *em_lb_port_new(const struct em_balancer_ops *ops,
				  const struct em_service_port *port,
				  const struct em_balancer_params *params);
struct em_lb_port *em_lb_port_get(struct em_lb_port *lp);
/* Drop a reference; the last one frees. NULL is a no-op. */
void em_lb_port_put(struct em_lb_port *lp);

/* ops->pick with the request view; -1 when no backend is usable. */
int em_lb_port_pick(struct em_lb_port *lp, const struct sockaddr *client,
		    socklen_t client_len, int avoid, unsigned attempt);
/* The same with a full request view (the L7 forwarder: header value).
 * Fields the strategy did not ask for (ops->needs) are hidden from it. */
int em_lb_port_pick_request(struct em_lb_port *lp, const struct em_balancer_request *req);
/* The header the strategy hashes on, or NULL (the L7 forwarder extracts its
 * value before picking). */
const char *em_lb_port_header(const struct em_lb_port *lp);
void em_lb_port_release(struct em_lb_port *lp, int index,
			enum em_balancer_outcome outcome);
size_t em_lb_port_n_backends(const struct em_lb_port *lp);
const struct em_balancer_backend *em_lb_port_backend(const struct em_lb_port *lp,
						     int index);
/* "ns/name:port" for log messages. */
const char *em_lb_port_label(const struct em_lb_port *lp);
const char *em_lb_port_strategy(const struct em_lb_port *lp);
/* Number of live port balancers in the process (tests: leak checks). */
long em_lb_port_live(void);

#endif
