/* resolve.c — the standard resolve body: original destination -> service
 * port -> a reference on its balancer (built on the port's first use).
 * Kept apart from the workers so that test drivers can link the proxy
 * without the registry. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/proxy.h"

int em_proxy_target_from_snapshot(const struct em_snapshot *snap,
				  const struct sockaddr *orig_dst,
				  struct em_proxy_target *out)
{
	const struct em_service *svc = NULL;
	const struct em_service_port *port;
	uint16_t dport;

	if (!snap || !orig_dst)
		return -ENOENT;
	if (orig_dst->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)orig_dst;

		svc = em_snapshot_find_addr(snap, AF_INET, &sin->sin_addr);
		dport = ntohs(sin->sin_port);
	} else if (orig_dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)orig_dst;

		/* A v4 client of a dual-stack socket shows up v4-mapped. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			struct in_addr v4;

			memcpy(&v4, &sin6->sin6_addr.s6_addr[12], sizeof(v4));
			svc = em_snapshot_find_addr(snap, AF_INET, &v4);
		} else {
			svc = em_snapshot_find_addr(snap, AF_INET6, &sin6->sin6_addr);
		}
		dport = ntohs(sin6->sin6_port);
	} else {
		return -ENOENT;
	}
	if (!svc)
		return -ENOENT;
	port = em_service_find_port(svc, IPPROTO_TCP, dport);
	if (!port)
		return -ENOENT;
	/* The first connection to a port builds its balancer (lb.h): a
	 * reference that stays valid after the read-side section ends. */
	out->lb = em_lb_port_acquire(port);
	if (!out->lb)
		return errno == ENOMEM ? -ENOMEM : -EAGAIN;
	out->app = port->app;
	return 0;
}
