/* listener.c — the transparent listening sockets of the forwarder. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/worker.h"

/* Open a listener on addr:port. With `transparent`, IP_TRANSPARENT makes the
 * kernel hand us connections that nftables `tproxy` steered here although
 * their destination (the fake IP) is not a local address; accept() then
 * yields a socket whose local address is that original destination.
 * SO_REUSEPORT lets every worker own a listener on the same port; the kernel
 * spreads new connections across them by flow hash, so no accept lock.
 * TCP_NODELAY is set here once: accepted sockets inherit it (one
 * setsockopt less per connection). */
int em_proxy_listener_open(int family, const char *addr, uint16_t port,
			   bool transparent)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, one = 1, ret;

	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return -EINVAL;
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
			return -EINVAL;
		len = sizeof(*sin6);
	}
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		goto err;
	if (family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto err;
	if (transparent) {
		if (family == AF_INET &&
		    setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) == -1)
			goto err;
		if (family == AF_INET6 &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == -1)
			goto err;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, SOMAXCONN) == -1)
		goto err;
	return fd;
err:
	ret = -errno;
	close(fd);
	return ret;
}
