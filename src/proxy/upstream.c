/* upstream.c — opening connections to backends, shared by L4 and HTTP:
 * the socket options, the classification of errors (ours or the backend's)
 * and the pick/connect/avoid loop over a port's balancer. Timeouts stay
 * with the caller's timer; the caller reports the outcome of the attempt
 * that is still outstanding when it ends. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/worker.h"
#include "util/log.h"

int em_proxy_backend_sockaddr(const struct em_balancer_backend *b,
			      struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (b->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = b->ip.v6;
		sin6->sin6_port = htons(b->port);
		return sizeof(*sin6);
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	sin->sin_family = AF_INET;
	sin->sin_addr = b->ip.v4;
	sin->sin_port = htons(b->port);
	return sizeof(*sin);
}

/* Errors that say nothing about the backend: out of descriptors, ports or
 * buffers, or a local firewall (EPERM on connect). */
bool em_proxy_errno_local(int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
	case EADDRNOTAVAIL:
	case EPERM:
	case EACCES:
		return true;
	default:
		return false;
	}
}

/* The bypass mark keeps our own upstream traffic out of the capture rules
 * (else a backend that is itself a fake IP would loop back to us). */
int em_proxy_upstream_open(const struct em_proxy_config *cfg,
			   const struct sockaddr_storage *ss, socklen_t len, bool *local)
{
	int fd, one = 1, ret;

	*local = true;
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (cfg->bypass_mark &&
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &cfg->bypass_mark,
		       sizeof(cfg->bypass_mark)) == -1)
		goto err;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)ss, len) == -1 && errno != EINPROGRESS) {
		*local = em_proxy_errno_local(errno);
		goto err;
	}
	*local = false;
	return fd;
err:
	ret = -errno;
	close(fd);
	return ret;
}

int em_proxy_upstream_connect(struct em_proxy_worker *w, struct em_lb_port *lb,
			      struct em_balancer_request *req, unsigned *attempt,
			      unsigned max_attempts, int *idx,
			      struct sockaddr_storage *ss, socklen_t *ss_len)
{
	while (*attempt < max_attempts) {
		struct em_balancer_result res = { .outcome = EM_BALANCER_FAILED };
		bool local;
		int i, fd;

		req->attempt = *attempt;
		i = em_lb_port_pick_request(lb, req);
		(*attempt)++;
		if (i < 0)
			return -ENOENT;
		*ss_len = (socklen_t)em_proxy_backend_sockaddr(em_lb_port_backend(lb, i), ss);
		fd = em_proxy_upstream_open(&w->proxy->cfg, ss, *ss_len, &local);
		if (fd >= 0) {
			*idx = i;
			return fd;
		}
		res.error = -fd;
		if (local) {
			res.outcome = EM_BALANCER_LOCAL;
			em_lb_port_release_result(lb, i, &res);
			return fd;
		}
		em_lb_port_release_result(lb, i, &res);
		EM_PROXY_COUNT(w->proxy, upstream_failures, 1);
		req->avoid = i;
	}
	return -ENOENT;
}
