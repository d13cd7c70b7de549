/* cidr.h — address prefixes ("198.18.0.0/16", "fd00::/64"): the one parser
 * of the ranges the ruleset captures, the fake IP pools and the backend
 * address guard. */
#ifndef EM_UTIL_CIDR_H
#define EM_UTIL_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct em_cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t plen;		/* prefix length, 0..32 or 0..128 */
	uint8_t addr[16];	/* network byte order */
};

/* Address byte length of the prefix's family (4 or 16). */
static inline size_t em_cidr_len(const struct em_cidr *c)
{
	return c->family == AF_INET6 ? 16 : 4;
}

/* What em_cidr_parse accepts beyond the strict form. */
enum em_cidr_flags {
	/* Strict: a prefix length of at least 1 (capturing 0.0.0.0/0 would
	 * steal every TCP connection of the node) and no host bits set, so
	 * "198.18.0.1/16" is reported to the admin instead of silently
	 * meaning 198.18.0.0/16. */
	EM_CIDR_STRICT = 0,
	EM_CIDR_ZERO_LEN = 1 << 0,	/* "/0" is accepted */
	EM_CIDR_HOST_BITS = 1 << 1,	/* host bits may be set; kept as given */
};

/* Parse "a.b.c.d/len" or "x:y::/len". `family` is AF_INET, AF_INET6 or
 * AF_UNSPEC (either). The length is required, decimal digits only. `flags`
 * is EM_CIDR_STRICT or an OR of enum em_cidr_flags. -EINVAL on any error;
 * *out is untouched then. */
int em_cidr_parse(const char *s, int family, unsigned flags, struct em_cidr *out);

/* The prefix mask for `c` (em_cidr_len(c) bytes) into mask. */
void em_cidr_mask(const struct em_cidr *c, uint8_t mask[16]);

/* "198.18.0.0/16"; buf of at least EM_CIDR_STRLEN bytes. */
#define EM_CIDR_STRLEN 50
const char *em_cidr_format(const struct em_cidr *c, char *buf, size_t len);

#endif
