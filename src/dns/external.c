/* external.c — ExternalName targets: the query to the resolver, the parse
 * of its reply, and the per-thread cache the rewriter reads. */
#include "dns/external.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HDR 12
#define T_A 1
#define T_AAAA 28
#define C_IN 1

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* name as labels + root; returns the length or -1. */
static int put_name(uint8_t *p, size_t cap, const char *name)
{
	size_t o = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);
		if (n == 0 || n > 63 || o + 1 + n + 1 > cap)
			return -1;
		p[o++] = (uint8_t)n;
		memcpy(p + o, name, n);
		o += n;
		name += n + (dot ? 1 : 0);
	}
	if (o + 1 > cap || o + 1 > 255)
		return -1;
	p[o++] = 0;
	return (int)o;
}

int em_dns_target_query(uint8_t *buf, size_t cap, uint16_t id, const char *name,
			uint16_t qtype)
{
	if (cap < HDR + 4)
		return -ENOSPC;
	memset(buf, 0, HDR);
	put16(buf, id);
	put16(buf + 2, 0x0100);		/* RD */
	put16(buf + 4, 1);
	int n = put_name(buf + HDR, cap - HDR - 4, name);
	if (n < 0)
		return -EINVAL;		/* a bad name, or cap below HDR + 259 */
	put16(buf + HDR + n, qtype);
	put16(buf + HDR + n + 2, C_IN);
	return HDR + n + 4;
}

/* Skips a (possibly compressed) name at *off; -1 when malformed. A
 * pointer ends the name, so there is no loop to follow. */
static int skip_name(const uint8_t *msg, size_t len, size_t *off)
{
	size_t p = *off;

	for (unsigned hops = 0; hops < 128; hops++) {
		if (p >= len)
			return -1;
		uint8_t l = msg[p];
		if (l == 0) {
			*off = p + 1;
			return 0;
		}
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return -1;
			*off = p + 2;
			return 0;
		}
		if (l & 0xc0)
			return -1;
		p += 1u + l;
	}
	return -1;
}

/* Compares the uncompressed question name at off with name. */
static bool question_is(const uint8_t *msg, size_t len, size_t off, const char *name)
{
	size_t p = off;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);
		if (p >= len || msg[p] != n || p + 1 + n > len ||
		    strncasecmp((const char *)msg + p + 1, name, n) != 0)
			return false;
		p += 1 + n;
		name += n + (dot ? 1 : 0);
	}
	return p < len && msg[p] == 0;
}

int em_dns_target_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name,
			uint16_t qtype, uint32_t neg_ttl, struct em_dns_target *out)
{
	size_t p = HDR;

	if (len < HDR || get16(msg) != id || !(msg[2] & 0x80) || get16(msg + 4) != 1)
		return -EINVAL;
	if (!question_is(msg, len, p, name) || skip_name(msg, len, &p) < 0 || p + 4 > len ||
	    get16(msg + p) != qtype || get16(msg + p + 2) != C_IN)
		return -EINVAL;
	p += 4;
	uint16_t flags = get16(msg + 2);
	unsigned rcode = flags & 0x000f;
	if ((flags & 0x0200) || (rcode != 0 && rcode != 3))
		return -EAGAIN;		/* TC, SERVFAIL, REFUSED...: not ours to decide */

	memset(out, 0, sizeof(*out));
	out->qtype = qtype;
	out->rcode = (uint8_t)rcode;
	uint32_t ttl = UINT32_MAX;
	unsigned an = get16(msg + 6);
	for (unsigned i = 0; i < an; i++) {
		if (skip_name(msg, len, &p) < 0 || p + 10 > len)
			return -EINVAL;
		uint16_t type = get16(msg + p), cls = get16(msg + p + 2);
		uint32_t rttl = get32(msg + p + 4);
		uint16_t rdlen = get16(msg + p + 8);
		p += 10;
		if (p + rdlen > len)
			return -EINVAL;
		if (rttl > 0x7fffffff)		/* RFC 2181 8: treat as 0 */
			rttl = 0;
		if (cls == C_IN && (type == 5 || type == qtype) && rttl < ttl)
			ttl = rttl;		/* the chain's TTL bounds the answer */
		if (cls == C_IN && type == qtype && rdlen == (qtype == T_AAAA ? 16 : 4) &&
		    out->n < EM_DNS_TARGET_MAX)
			memcpy(out->addr[out->n++], msg + p, rdlen);
		p += rdlen;
	}
	out->ttl = out->n ? ttl : neg_ttl;
	if (out->ttl > EM_DNS_TARGET_MAX_TTL)
		out->ttl = EM_DNS_TARGET_MAX_TTL;
	return 0;
}

const struct em_dns_target *em_dns_target_find(void *ctx, const char *name, uint16_t qtype)
{
	struct em_dns_target_cache *c = ctx;

	for (size_t i = 0; i < EM_DNS_TARGET_CACHE; i++) {
		struct em_dns_target_entry *e = &c->e[i];
		/* >= : an entry stored with TTL 0 serves the queries held for it */
		if (e->expires_ms && e->expires_ms >= c->now_ms && e->qtype == qtype &&
		    strcmp(e->name, name) == 0) {
			e->t.ttl = (uint32_t)((e->expires_ms - c->now_ms) / 1000);
			return &e->t;
		}
	}
	snprintf(c->miss_name, sizeof(c->miss_name), "%s", name);
	c->miss_qtype = qtype;
	return NULL;
}

void em_dns_target_store(struct em_dns_target_cache *c, const char *name, uint16_t qtype,
			 const struct em_dns_target *t)
{
	struct em_dns_target_entry *best = &c->e[0];

	if (strlen(name) >= sizeof(best->name))
		return;
	for (size_t i = 0; i < EM_DNS_TARGET_CACHE; i++) {
		struct em_dns_target_entry *e = &c->e[i];
		if (e->expires_ms && e->qtype == qtype && strcmp(e->name, name) == 0) {
			best = e;	/* the same target: refresh it */
			break;
		}
		if (e->expires_ms < best->expires_ms)
			best = e;	/* free (0), expired or expiring first */
	}
	memcpy(best->name, name, strlen(name) + 1);
	best->qtype = qtype;
	best->t = *t;
	uint32_t ttl = t->ttl > EM_DNS_TARGET_MAX_TTL ? EM_DNS_TARGET_MAX_TTL : t->ttl;
	best->expires_ms = c->now_ms + (uint64_t)ttl * 1000;
	if (best->expires_ms == 0)
		best->expires_ms = 1;
}
