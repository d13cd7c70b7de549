/* balance.c — the UDP forwarder's calls into the balancer layer, and the
 * standard resolve body (see balance.h for why they are kept together). */
#include "udp/balance.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "lb/lb.h"
#include "udp/udp.h"

static void backend_addr(const struct em_balancer_backend *b, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (b->family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_addr = b->ip.v4;
		s->sin_port = htons(b->port);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_addr = b->ip.v6;
		s->sin6_port = htons(b->port);
		*len = sizeof(*s);
	}
}

int em_udp_lb_pick(struct em_lb_port *lp, const struct sockaddr *client, socklen_t client_len,
		   const struct sockaddr *orig_dst, socklen_t orig_dst_len,
		   struct sockaddr_storage *be, socklen_t *be_len)
{
	struct em_balancer_request req = {
		.size = sizeof(req),
		.client = client,
		.client_len = client_len,
		.orig_dst = orig_dst,
		.orig_dst_len = orig_dst_len,
		.avoid = -1,
	};
	int idx = em_lb_port_pick_request(lp, &req);

	if (idx < 0)
		return -1;
	backend_addr(em_lb_port_backend(lp, idx), be, be_len);
	return idx;
}

void em_udp_lb_release(struct em_lb_port *lp, int index, enum em_udp_end end, int err,
		       uint64_t bytes_up, uint64_t bytes_down)
{
	static const enum em_balancer_outcome outcome[] = {
		[EM_UDP_END_ANSWERED] = EM_BALANCER_OK,
		[EM_UDP_END_SILENT] = EM_BALANCER_CANCELLED,
		[EM_UDP_END_ICMP] = EM_BALANCER_FAILED,
		[EM_UDP_END_LOCAL] = EM_BALANCER_LOCAL,
	};
	struct em_balancer_result res = {
		.size = sizeof(res),
		.outcome = outcome[end],
		.error = end == EM_UDP_END_ICMP || end == EM_UDP_END_LOCAL ? err : 0,
		.bytes_sent = bytes_up,
		.bytes_received = bytes_down,
	};

	em_lb_port_release_result(lp, index, &res);
}

void em_udp_lb_put(struct em_lb_port *lp)
{
	em_lb_port_put(lp);
}

bool em_udp_lb_has(struct em_lb_port *lp, const struct sockaddr *be)
{
	size_t n = em_lb_port_n_backends(lp);

	for (size_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		backend_addr(em_lb_port_backend(lp, (int)i), &ss, &len);
		if (ss.ss_family == be->sa_family && memcmp(&ss, be, len) == 0)
			return true;
	}
	return false;
}

int em_udp_port_from_snapshot(const struct em_snapshot *snap, const struct sockaddr *orig_dst,
			      struct em_lb_port **out)
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
		svc = em_snapshot_find_addr(snap, AF_INET6, &sin6->sin6_addr);
		dport = ntohs(sin6->sin6_port);
	} else {
		return -ENOENT;
	}
	if (!svc || !(port = em_service_find_port(svc, IPPROTO_UDP, dport)))
		return -ENOENT;
	*out = em_lb_port_acquire(port);
	if (!*out)
		return errno == ENOMEM ? -ENOMEM : -EAGAIN;
	return 0;
}
