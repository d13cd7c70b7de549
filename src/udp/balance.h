/* balance.h — internal to src/udp: every call the UDP forwarder makes into
 * the balancer layer (src/lb/lb.h) is in balance.c, so that a change of the
 * balancer interface touches one small file. */
#ifndef EM_UDP_BALANCE_H
#define EM_UDP_BALANCE_H

#include <stdbool.h>
#include <sys/socket.h>

struct em_lb_port;

/* A backend for a new flow from client: its index (for release) and its
 * address in *be; -1 when none is usable. */
int em_udp_lb_pick(struct em_lb_port *lp, const struct sockaddr *client, socklen_t client_len,
		   struct sockaddr_storage *be, socklen_t *be_len);
/* The flow is over: ok says whether the backend answered as it should
 * (false: an ICMP error ended it). */
void em_udp_lb_release(struct em_lb_port *lp, int index, bool ok);
void em_udp_lb_put(struct em_lb_port *lp);
/* Whether be (a backend address) is among lp's backends. */
bool em_udp_lb_has(struct em_lb_port *lp, const struct sockaddr *be);

#endif
