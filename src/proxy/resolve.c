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
	const struct em_service_port *port = em_snapshot_find_dst(snap, orig_dst, IPPROTO_TCP);

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
