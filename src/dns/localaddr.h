/* localaddr.h — internal to src/dns/: the set of the node's own addresses,
 * so the queue loop can tell whether a query in prerouting is addressed to
 * the node (then its in-place answer would be a martian; see queue.c).
 * Owned by one queue thread; refreshed from getifaddrs() when rtnetlink
 * reports an address change, never per packet. */
#ifndef EM_DNS_LOCALADDR_H
#define EM_DNS_LOCALADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EM_DNS_MAX_LOCAL 256

struct em_dns_localaddr {
	struct in_addr v4[EM_DNS_MAX_LOCAL];
	size_t n4;
	struct in6_addr v6[EM_DNS_MAX_LOCAL];
	size_t n6;
	int nl_fd;		/* rtnetlink socket for address changes, or -1 */
};

/* Opens the change socket and loads the set; 0 or -errno. */
int em_dns_localaddr_open(struct em_dns_localaddr *la);
void em_dns_localaddr_close(struct em_dns_localaddr *la);
/* Reloads the set from getifaddrs(); 0 or -errno (the old set is kept). */
int em_dns_localaddr_load(struct em_dns_localaddr *la);
/* Drains pending rtnetlink notifications on nl_fd and reloads if any. */
void em_dns_localaddr_changed(struct em_dns_localaddr *la);
/* family AF_INET (4 bytes) or AF_INET6 (16 bytes). 127/8 and ::1 are local.
 * Per packet, so inline here: a query's path from NFQUEUE to verdict stays
 * within queue.c, packet.c, message.c and the snapshot (registry.c,
 * snapshot.c); this file's .c is only entered on address changes. */
static inline bool em_dns_localaddr_has(const struct em_dns_localaddr *la, int family, const void *addr)
{
	if (family == AF_INET) {
		const uint8_t *b = addr;
		if (b[0] == 127)
			return true;
		for (size_t i = 0; i < la->n4; i++)
			if (memcmp(&la->v4[i], addr, 4) == 0)
				return true;
		return false;
	}
	if (memcmp(addr, &in6addr_loopback, 16) == 0)
		return true;
	for (size_t i = 0; i < la->n6; i++)
		if (memcmp(&la->v6[i], addr, 16) == 0)
			return true;
	return false;
}

#endif
