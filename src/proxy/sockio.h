/* sockio.h — send/recv on the forwarder's non-blocking sockets without
 * glibc's cancellation-point wrappers: send(2) and recv(2) enable and
 * disable asynchronous cancellation around every call (about 1.5 % of the
 * daemon's CPU in the keep-alive profile). The workers are never
 * cancelled (they stop on their eventfd), so nothing is lost. Same return
 * values and errno as send(2)/recv(2). */
#ifndef EM_PROXY_SOCKIO_H
#define EM_PROXY_SOCKIO_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static inline ssize_t em_sock_send(int fd, const void *buf, size_t len, int flags)
{
	return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

static inline ssize_t em_sock_recv(int fd, void *buf, size_t len, int flags)
{
	return syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}

#endif
