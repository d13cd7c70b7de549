/* udp.h — the UDP forwarder: TPROXY for UDP service ports.
 *
 * The ruleset TPROXYs datagrams to a UDP service port of a fake IP to a
 * transparent UDP socket on 127.0.0.1 (and ::1) at the listener port; the
 * original destination comes with each datagram (IP_ORIGDSTADDR). A flow is
 * a client address:port and the fake IP:port it sent to. Its first datagram
 * picks a backend from the port's balancer; the flow keeps it until idle
 * for the timeout, an ICMP error from the backend, the backend leaving the
 * service, or eviction (the table is bounded, oldest first).
 *
 * Per flow: an upstream socket connected to the backend (bypass mark), and
 * a reply socket bound to the fake IP:port with IP_TRANSPARENT and
 * connected to the client, so replies leave from the address the client
 * sent to, and the flow's next datagrams reach that socket directly (the
 * kernel's socket lookup in tproxy prefers the connected socket).
 *
 * One epoll thread of its own with its own timers; independent of the TCP
 * forwarder (src/proxy). The registry is reached only through the resolve
 * callback. */
#ifndef EM_UDP_UDP_H
#define EM_UDP_UDP_H

#include <stdint.h>
#include <sys/socket.h>

#include "registry/snapshot.h"

#define EM_UDP_DEFAULT_IDLE_TIMEOUT_S 60
#define EM_UDP_DEFAULT_MAX_FLOWS 2048

struct em_lb_port;

/* orig_dst -> a reference on the balancer of that UDP service port, or
 * -ENOENT when it is not one (the datagram is dropped: never an open relay).
 * Runs on the UDP thread, which is registered with urcu-memb. */
typedef int (*em_udp_resolve_fn)(void *ctx, const struct sockaddr *orig_dst,
				 struct em_lb_port **out);

struct em_udp_config {
	uint16_t port;			/* listener port; 0 = ephemeral (tests) */
	const char *listen4;		/* "127.0.0.1"; NULL = none */
	const char *listen6;		/* NULL (default) = none */
	uint32_t bypass_mark;		/* SO_MARK of upstream and reply sockets; EM_BYPASS_MARK */
	unsigned idle_timeout_s;	/* EM_UDP_DEFAULT_IDLE_TIMEOUT_S */
	unsigned max_flows;		/* EM_UDP_DEFAULT_MAX_FLOWS */
	em_udp_resolve_fn resolve;	/* required */
	void *resolve_ctx;
	/* Optional: a number that changes when the services change (the
	 * registry generation). On a change every flow is checked against the
	 * current backends of its port, and ended if its backend left. */
	uint64_t (*generation)(void *ctx);
	/* Optional: called on the UDP thread, outside any read-side section,
	 * after a generation change (and once at start), e.g. to refresh the
	 * ruleset's UDP capture sets. A negative return retries it on the
	 * next check (every 200 ms). */
	int (*changed)(void *ctx);
	void *changed_ctx;
};

struct em_udp_stats {
	uint64_t datagrams_up, datagrams_down;
	uint64_t refused;		/* not a UDP service port: dropped */
	uint64_t no_backend;		/* service port without a usable backend */
	uint64_t flows;			/* flows created */
	uint64_t active;		/* flows now */
	uint64_t evicted;		/* ended because the table was full */
	uint64_t idle;			/* ended by the idle timeout */
	uint64_t icmp_errors;		/* ended by an error from the backend */
	uint64_t moved;			/* ended because the backend left the service */
	uint64_t errors;		/* socket errors setting up a flow or sending */
};

struct em_udp;

void em_udp_config_defaults(struct em_udp_config *cfg);
/* Binds the listeners and starts the thread; 0 or -errno (-EPERM without
 * CAP_NET_ADMIN, -EADDRINUSE). Logs nothing: the caller names the port. */
int em_udp_start(const struct em_udp_config *cfg, struct em_udp **out);
/* Ends every flow, joins the thread, frees. NULL is a no-op. */
void em_udp_stop(struct em_udp *u);
uint16_t em_udp_port(const struct em_udp *u);
void em_udp_get_stats(const struct em_udp *u, struct em_udp_stats *out);

/* The standard resolve body: orig_dst as a fake IP (or ClusterIP) and a UDP
 * service port of snap; takes a reference on its balancer. Inside the RCU
 * read-side section protecting snap. 0, -ENOENT, -EAGAIN, -ENOMEM. */
int em_udp_port_from_snapshot(const struct em_snapshot *snap, const struct sockaddr *orig_dst,
			      struct em_lb_port **out);

#endif
