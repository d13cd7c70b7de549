/* localaddr.c — the node's addresses, kept current from rtnetlink. */
#include "dns/localaddr.h"

#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int em_dns_localaddr_load(struct em_dns_localaddr *la)
{
	struct ifaddrs *ifa, *i;
	size_t n4 = 0, n6 = 0;

	if (getifaddrs(&ifa) == -1)
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET && n4 < EM_DNS_MAX_LOCAL)
			la->v4[n4++] = ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6 && n6 < EM_DNS_MAX_LOCAL)
			la->v6[n6++] = ((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
	}
	freeifaddrs(ifa);
	la->n4 = n4;
	la->n6 = n6;
	return 0;
}

int em_dns_localaddr_open(struct em_dns_localaddr *la)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	};

	la->n4 = la->n6 = 0;
	la->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (la->nl_fd == -1)
		return -errno;
	if (bind(la->nl_fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int err = -errno;
		close(la->nl_fd);
		la->nl_fd = -1;
		return err;
	}
	/* Load after subscribing so that no change falls in between. */
	return em_dns_localaddr_load(la);
}

void em_dns_localaddr_close(struct em_dns_localaddr *la)
{
	if (la->nl_fd >= 0)
		close(la->nl_fd);
	la->nl_fd = -1;
}

void em_dns_localaddr_changed(struct em_dns_localaddr *la)
{
	char buf[8192];
	bool any = false;

	for (;;) {
		ssize_t n = recv(la->nl_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			any = true;
			continue;
		}
		/* ENOBUFS: notifications were lost, reload anyway. */
		if (n == -1 && errno == ENOBUFS) {
			any = true;
			continue;
		}
		break;
	}
	if (any)
		em_dns_localaddr_load(la);
}
