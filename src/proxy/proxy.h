/* proxy.h — the forwarder: transparent (TPROXY) listeners, one epoll loop per
 * worker thread, L4 splice relaying to a backend chosen by the balancer, and
 * on HTTP ports (target app EM_APP_HTTP) the HTTP/1.x forwarder, which
 * balances every request of a keep-alive connection on its own.
 *
 * The proxy does not know the registry: for every accepted connection it
 * calls cfg->resolve() with the original destination (the fake IP:port the
 * client dialled, from getsockname() on the accepted socket), and on HTTP
 * ports again for every request (so a request sees the current snapshot:
 * the reference it gets is dropped when the request ends). The daemon
 * implements resolve with the current snapshot, e.g.
 *
 *	static int resolve(void *ctx, const struct sockaddr *dst,
 *			   const struct sockaddr *client, struct em_proxy_target *out)
 *	{
 *		int ret;
 *		urcu_memb_read_lock();
 *		ret = em_proxy_target_from_snapshot(em_registry_current(ctx), dst, out);
 *		urcu_memb_read_unlock();
 *		return ret;
 *	}
 *
 * Worker threads register themselves with liburcu (urcu_memb_register_thread)
 * before their first resolve and unregister when they exit.
 */
#ifndef EM_PROXY_PROXY_H
#define EM_PROXY_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/lb.h"
#include "registry/snapshot.h"

#define EM_PROXY_DEFAULT_WORKERS 2
#define EM_PROXY_DEFAULT_CONNECT_TIMEOUT_MS 3000
#define EM_PROXY_DEFAULT_IDLE_TIMEOUT_S 3600
#define EM_PROXY_DEFAULT_CONNECT_ATTEMPTS 3
#define EM_PROXY_DEFAULT_MAX_HEAD 8192
#define EM_PROXY_DEFAULT_MAX_LINE 4096
#define EM_PROXY_DEFAULT_HEAD_TIMEOUT_MS 10000
#define EM_PROXY_DEFAULT_KEEPALIVE_S 60
#define EM_PROXY_DEFAULT_BATCH_WAIT_US 50
#define EM_PROXY_DEFAULT_RESPONSE_TIMEOUT_MS 60000
#define EM_PROXY_DEFAULT_MAX_CONNS 16384
#define EM_PROXY_DEFAULT_MAX_CONNS_PER_CLIENT 4096
#define EM_PROXY_DEFAULT_POOL_PER_BACKEND 32
#define EM_PROXY_DEFAULT_POOL_TOTAL 512
#define EM_PROXY_DEFAULT_POOL_IDLE_S 30
#define EM_PROXY_DEFAULT_POOL_MAX_REQUESTS 1000
#define EM_PROXY_DEFAULT_PIPE_SIZE (256 * 1024)
#define EM_PROXY_DEFAULT_BIG_PIPES 48

/* What resolve() found for a connection. */
struct em_proxy_target {
	/* A reference the proxy takes over (em_lb_port_get() it inside the RCU
	 * section); the proxy drops it when the connection ends. */
	struct em_lb_port *lb;
	enum em_app_proto app;		/* the port's protocol: dispatch key */
};

/* Called on a worker thread for each accepted connection (and each HTTP
 * request). Fill *out and return 0, or return -ENOENT when orig_dst is not a
 * service port (the proxy then refuses the connection, or answers the
 * request with 503: it is never an open relay). Must not block. */
typedef int (*em_proxy_resolve_fn)(void *ctx, const struct sockaddr *orig_dst,
				   const struct sockaddr *client,
				   struct em_proxy_target *out);

struct em_proxy_config {
	uint16_t port;			/* listen port; 0 = ephemeral (tests). EM_TPROXY_PORT */
	const char *listen4;		/* IPv4 listen address, "127.0.0.1"; NULL = none */
	const char *listen6;		/* IPv6 listen address, e.g. "::1"; NULL = none (default) */
	bool transparent;		/* IP_TRANSPARENT/IPV6_TRANSPARENT (needs CAP_NET_ADMIN). true */
	unsigned workers;		/* epoll threads, each with its own SO_REUSEPORT listener. 2 */
	uint32_t bypass_mark;		/* SO_MARK on upstream sockets; 0 = leave unset. EM_BYPASS_MARK */
	unsigned connect_timeout_ms;	/* per attempt. 3000 */
	unsigned idle_timeout_s;	/* no byte either way for this long: reset. 3600 */
	unsigned connect_attempts;	/* backends tried per connection (capped by their number). 3 */
	/* HTTP ports (see http.c) */
	unsigned max_head;		/* request head bytes, else 431. 8192 */
	unsigned max_line;		/* request line bytes, else 414. 4096 */
	unsigned head_timeout_ms;	/* first byte to end of a request head, else 408. 10000 */
	unsigned keepalive_s;		/* idle client keep-alive connection closed after. 60 */
	unsigned response_timeout_ms;	/* request sent to response head, else 504. 60000 */
	/* A worker with requests in flight whose last turn found few events
	 * waits this long before its next epoll_wait (fewer wake-ups per
	 * request under load); 0 = never. 50 */
	unsigned batch_wait_us;
	unsigned pool_per_backend;	/* idle upstream connections kept per backend and worker. 32 */
	unsigned pool_total;		/* idle upstream connections kept per worker. 512 */
	unsigned pool_idle_s;		/* idle upstream connection closed after. 30 */
	unsigned pool_max_requests;	/* requests per upstream connection. 1000 */
	/* Every port */
	unsigned max_conns;		/* client connections open at once; more are reset. 16384 */
	unsigned max_conns_per_client;	/* per client address; more are reset. 4096 */
	unsigned pipe_size;		/* bytes of a spliced pipe (F_SETPIPE_SZ). 262144 */
	/* Pipes grown to pipe_size at once, process-wide: keeps the
	 * process under fs.pipe-user-pages-soft (16384 pages) without
	 * CAP_SYS_RESOURCE; the others stay at the default 64 KiB. 48 */
	unsigned big_pipes;
	em_proxy_resolve_fn resolve;	/* required */
	void *resolve_ctx;
};

/* The forwarder's counters, declared once: X(name) for a count, and
 * X(name) in EM_PROXY_CLASS_COUNTERS for a count per HTTP status class
 * (an array of 6: [1]=1xx .. [5]=5xx). struct em_proxy_stats (here) and the
 * workers' atomic counters (worker.h) are both made from these lists, and
 * em_proxy_get_stats() copies one into the other with them. */
#define EM_PROXY_COUNTERS(X)						\
	X(accepted)		/* connections accepted */		\
	X(refused)		/* not a service port: closed at once */ \
	X(no_backend)		/* service port without a usable backend, or every attempt failed */ \
	X(upstream_failures)	/* connect attempts that failed (refused, unreachable) */ \
	X(connect_timeouts)	/* connect attempts that timed out */	\
	X(idle_timeouts)	/* connections reset for idleness */	\
	X(errors)		/* relays ended by a reset or socket error */ \
	X(completed)		/* relays ended by both sides closing */ \
	X(active)		/* connections open now */		\
	X(bytes_up)		/* client -> backend */			\
	X(bytes_down)		/* backend -> client */			\
	/* limits: connections reset at accept (max_conns, per client) */ \
	X(limit_refusals)						\
	/* HTTP */							\
	X(l4_fallbacks)		/* HTTP port, not HTTP/1.x first bytes: relayed at L4 */ \
	X(requests)		/* request heads accepted */		\
	X(retries)		/* requests sent again (another backend or a fresh connection) */ \
	X(pool_hits)		/* requests sent on a pooled upstream connection */ \
	X(pool_misses)		/* requests that had to connect */	\
	X(pool_stale)		/* pooled connections that failed before a response byte */ \
	X(head_timeouts)	/* 408 */				\
	X(response_timeouts)	/* 504 */				\
	X(bad_requests)		/* framing errors from clients (4xx/501/505 + close) */ \
	X(bad_responses)	/* framing errors from backends (502 or close) */ \
	X(aborted_responses)	/* backend died mid-response: client closed */ \
	X(tunnels)		/* Upgrade/CONNECT turned into byte tunnels */ \
	/* pipes */							\
	X(pipes)		/* pipes created */			\
	X(pipe_size_failures)	/* F_SETPIPE_SZ refused (EPERM: pipe-user-pages-soft) */ \
	X(pipes_small)		/* pipes left at the default size (budget of big pipes spent) */

#define EM_PROXY_CLASS_COUNTERS(X)					\
	X(responses)		/* forwarded response heads by class */	\
	X(generated)		/* replies the proxy wrote itself, by class ([4]: 400/408/414/431, [5]: 502/503/504) */

#define EM_PROXY_STATUS_CLASSES 6

struct em_proxy_stats {
#define EM_PROXY_STAT_(name) uint64_t name;
#define EM_PROXY_CLASS_STAT_(name) uint64_t name[EM_PROXY_STATUS_CLASSES];
	EM_PROXY_COUNTERS(EM_PROXY_STAT_)
	EM_PROXY_CLASS_COUNTERS(EM_PROXY_CLASS_STAT_)
#undef EM_PROXY_STAT_
#undef EM_PROXY_CLASS_STAT_
};

struct em_proxy;

void em_proxy_config_defaults(struct em_proxy_config *cfg);

/* Open the listeners and start the workers. Returns 0 or -errno (-EADDRINUSE,
 * -EPERM without CAP_NET_ADMIN for transparent sockets, -EINVAL for a bad
 * address or a missing resolve). Logs nothing: the caller names the port. */
int em_proxy_start(const struct em_proxy_config *cfg, struct em_proxy **out);

/* Wake every worker (eventfd), close every connection (each releases its
 * balancer pick and reference), join the threads and free the proxy.
 * Returns promptly; NULL is a no-op. */
void em_proxy_stop(struct em_proxy *p);

/* The port the listeners are bound to (useful with cfg->port = 0). */
uint16_t em_proxy_port(const struct em_proxy *p);

/* Counters summed over the workers; any thread. */
void em_proxy_get_stats(const struct em_proxy *p, struct em_proxy_stats *out);

/* The standard resolve body: look orig_dst up as a fake IP (or ClusterIP)
 * and a TCP service port in `snap`, take a reference on the port's balancer
 * (built on the port's first connection: em_lb_port_acquire()). Call inside
 * the RCU read-side section that protects `snap`. Returns 0, -ENOENT (no
 * such service or port, snap NULL), -EAGAIN (the port has no balancer: the
 * snapshot was built without em_lb_snapshot_hooks()) or -ENOMEM (building
 * the balancer on first use failed; the next connection tries again). */
int em_proxy_target_from_snapshot(const struct em_snapshot *snap,
				  const struct sockaddr *orig_dst,
				  struct em_proxy_target *out);

#endif
