/* balance.h — internal to src/udp: every call the UDP forwarder makes into
 * the balancer layer (src/lb/lb.h) is in balance.c, so that a change of the
 * balancer interface touches one small file. */
#ifndef EM_UDP_BALANCE_H
#define EM_UDP_BALANCE_H

#include <stdbool.h>
#include <sys/socket.h>

#include <stdint.h>

struct em_lb_port;

/* How a flow ended, as the balancer hears it. */
enum em_udp_end {
	EM_UDP_END_ANSWERED,	/* the backend answered at least once */
	EM_UDP_END_SILENT,	/* ended (idle, evicted, moved, stop) without an answer:
				 * the outcome is unknown (one-way traffic is fine) */
	EM_UDP_END_ICMP,	/* an ICMP error from the backend (err: its errno) */
	EM_UDP_END_LOCAL,	/* a local failure setting the flow up (err) */
};

/* A backend for a new flow from client to orig_dst: its index (for
 * release) and its address in *be; -1 when none is usable. */
int em_udp_lb_pick(struct em_lb_port *lp, const struct sockaddr *client, socklen_t client_len,
		   const struct sockaddr *orig_dst, socklen_t orig_dst_len,
		   struct sockaddr_storage *be, socklen_t *be_len);
/* The flow is over. */
void em_udp_lb_release(struct em_lb_port *lp, int index, enum em_udp_end end, int err,
		       uint64_t bytes_up, uint64_t bytes_down);
void em_udp_lb_put(struct em_lb_port *lp);
/* Whether be (a backend address) is among lp's backends. */
bool em_udp_lb_has(struct em_lb_port *lp, const struct sockaddr *be);

#endif
