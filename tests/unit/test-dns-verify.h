/* test-dns-verify.h — an independent parser for the rewriter's answers, and
 * a small catalog of plain data, shared by tests/unit/test-dns.c,
 * tests/unit/test-dns-driver.c (em-dns-driver) and tests/fuzz/fuzz-dns.c.
 * Compiled once (tests/unit/test-dns-verify.c, the dnsverify library of
 * tests/meson.build). Written apart from src/dns/ on purpose: it decompresses
 * names, checks every length and checksum, and compares the answer with the
 * query it came from. */
#ifndef EM_TEST_DNS_VERIFY_H
#define EM_TEST_DNS_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

#define DV_MAX_RR 16

struct dv_rr {
	char name[256];		/* lower case, dotted, no trailing dot; "" = root */
	uint16_t type, cls;
	uint32_t ttl;
	uint16_t rdlen;
	size_t rdoff;		/* offset of rdata in the DNS message */
};

struct dv_msg {
	int version;
	uint8_t src[16], dst[16];
	size_t alen;
	uint16_t sport, dport;
	const uint8_t *dns;
	size_t dns_len;
	uint16_t id, flags, qd, an, ns, ar;
	char qname[256];
	uint16_t qtype, qclass;
	size_t qend;
	struct dv_rr rr[DV_MAX_RR];
	unsigned nrr;
	const char *err;	/* why dv_parse failed */
};

static inline uint16_t dv16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t dv32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint32_t dv_sum(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += dv16(p + i);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static inline uint16_t dv_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* Reads a possibly compressed name at *off into out (lower case, dotted,
 * 256 bytes); pointers must go strictly backwards. 0, or -1 if malformed. */
int dv_name(const uint8_t *m, size_t len, size_t *off, char *out);

/* Parses an answer packet (IP + UDP + DNS), checking lengths and checksums:
 * 0, or -1 with m->err saying why. */
int dv_parse(const uint8_t *pkt, size_t len, struct dv_msg *m);

/* Checks the answer a against the query q it was built from: addresses and
 * ports swapped, id and question identical, header bits right. 0, or -1
 * with scratch->err saying why. */
int dv_check_pair(const uint8_t *q, size_t qlen, const struct dv_msg *a, struct dv_msg *scratch);

/* The catalog: nginx-svc.default (198.18.0.10 + fd00:e3::a, ports
 * http-0/tcp 12345 and dns/udp 53) and v4only.default (198.18.0.11, no
 * IPv6, one unnamed port). Tests may change dv_services and restore it. */
extern struct em_service dv_services[2];
const struct em_service *dv_find_name(void *ctx, const char *ns, size_t ns_len,
				      const char *name, size_t name_len);
const struct em_service *dv_find_addr(void *ctx, int family, const void *addr);
void dv_catalog_init(struct em_dns_catalog *cat);

#endif
