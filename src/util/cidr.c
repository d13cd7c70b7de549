/* cidr.c — parsing and formatting of address prefixes; see cidr.h. */
#include "util/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void em_cidr_mask(const struct em_cidr *c, uint8_t mask[16])
{
	size_t len = em_cidr_len(c);
	unsigned bits = c->plen;

	memset(mask, 0, 16);
	for (size_t i = 0; i < len && bits; i++) {
		unsigned n = bits >= 8 ? 8 : bits;
		mask[i] = (uint8_t)(0xff00u >> n);
		bits -= n;
	}
}

int em_cidr_parse(const char *s, int family, unsigned flags, struct em_cidr *out)
{
	struct em_cidr c = { 0 };
	char host[INET6_ADDRSTRLEN];
	const char *slash;
	uint8_t mask[16];
	unsigned long plen;
	char *end;
	size_t hlen;

	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	if (!slash)
		return -EINVAL;
	hlen = (size_t)(slash - s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	if (inet_pton(AF_INET, host, c.addr) == 1)
		c.family = AF_INET;
	else if (inet_pton(AF_INET6, host, c.addr) == 1)
		c.family = AF_INET6;
	else
		return -EINVAL;
	if (family != AF_UNSPEC && family != c.family)
		return -EINVAL;

	/* strtoul accepts leading blanks and signs: insist on digits only. */
	if (slash[1] < '0' || slash[1] > '9')
		return -EINVAL;
	errno = 0;
	plen = strtoul(slash + 1, &end, 10);
	if (errno || *end != '\0' || plen > em_cidr_len(&c) * 8)
		return -EINVAL;
	if (plen == 0 && !(flags & EM_CIDR_ZERO_LEN))
		return -EINVAL;
	c.plen = (uint8_t)plen;

	em_cidr_mask(&c, mask);
	for (size_t i = 0; i < em_cidr_len(&c) && !(flags & EM_CIDR_HOST_BITS); i++)
		if (c.addr[i] & ~mask[i])
			return -EINVAL;
	*out = c;
	return 0;
}

const char *em_cidr_format(const struct em_cidr *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family, c->addr, host, sizeof(host)))
		snprintf(host, sizeof(host), "?");
	snprintf(buf, len, "%s/%u", host, c->plen);
	return buf;
}
