/* cidr.h — internal to src/nf: address prefixes as the ruleset needs them. */
#ifndef EM_NF_CIDR_H
#define EM_NF_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct em_nf_cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t plen;		/* prefix length, 1..32 or 1..128 */
	uint8_t addr[16];	/* network byte order; host bits are zero */
};

/* Address byte length of the prefix's family (4 or 16). */
static inline size_t em_nf_cidr_len(const struct em_nf_cidr *c)
{
	return c->family == AF_INET6 ? 16 : 4;
}

/* Parse "a.b.c.d/len" or "x:y::/len". `family` is AF_INET, AF_INET6 or
 * AF_UNSPEC (either). A prefix length is required and must be at least 1:
 * capturing 0.0.0.0/0 would steal every TCP connection of the node. Set
 * host bits are refused rather than masked, so "198.18.0.1/16" is reported
 * to the admin instead of silently meaning 198.18.0.0/16. -EINVAL on any
 * error; *out is untouched then. */
int em_nf_cidr_parse(const char *s, int family, struct em_nf_cidr *out);

/* The prefix mask for `c` (em_nf_cidr_len(c) bytes) into mask. */
void em_nf_cidr_mask(const struct em_nf_cidr *c, uint8_t mask[16]);

/* "198.18.0.0/16"; buf of at least EM_NF_CIDR_STRLEN bytes. */
#define EM_NF_CIDR_STRLEN 50
const char *em_nf_cidr_format(const struct em_nf_cidr *c, char *buf, size_t len);

#endif
