/* test-dns-verify.c — the independent answer parser and the plain-data
 * catalog of test-dns-verify.h. */
#include "test-dns-verify.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Reads a possibly compressed name; pointers must go strictly backwards. */
int dv_name(const uint8_t *m, size_t len, size_t *off, char *out)
{
	size_t p = *off, o = 0;
	bool jumped = false;
	int hops = 0;

	out[0] = '\0';
	for (;;) {
		if (p >= len)
			return -1;
		uint8_t l = m[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 1 >= len || ++hops > 64)
				return -1;
			size_t to = (size_t)(l & 0x3f) << 8 | m[p + 1];
			if (to >= p)
				return -1;
			if (!jumped)
				*off = p + 2;
			jumped = true;
			p = to;
			continue;
		}
		if (l > 63)
			return -1;
		if (l == 0)
			break;
		if (p + 1 + l > len || o + l + 2 > 255)
			return -1;
		if (o)
			out[o++] = '.';
		for (unsigned i = 0; i < l; i++)
			out[o++] = (char)tolower(m[p + 1 + i]);
		out[o] = '\0';
		p += 1u + l;
	}
	if (!jumped)
		*off = p + 1;
	return 0;
}

#define DV_FAIL(m, s) do { (m)->err = (s); return -1; } while (0)

/* Parses an answer packet (IP + UDP + DNS), checking lengths and checksums. */
int dv_parse(const uint8_t *pkt, size_t len, struct dv_msg *m)
{
	size_t hl;
	uint32_t s;

	memset(m, 0, sizeof(*m));
	if (len < 1)
		DV_FAIL(m, "empty");
	m->version = pkt[0] >> 4;
	if (m->version == 4) {
		if (len < 28 || (pkt[0] & 15) != 5)
			DV_FAIL(m, "ipv4 header");
		hl = 20;
		if (dv16(pkt + 2) != len)
			DV_FAIL(m, "ipv4 total length");
		if (dv_fold(dv_sum(0, pkt, 20)) != 0xffff)
			DV_FAIL(m, "ipv4 header checksum");
		if (pkt[9] != 17 || (dv16(pkt + 6) & 0x3fff))
			DV_FAIL(m, "ipv4 proto/frag");
		m->alen = 4;
		memcpy(m->src, pkt + 12, 4);
		memcpy(m->dst, pkt + 16, 4);
		s = dv_sum(0, pkt + 12, 8);
	} else if (m->version == 6) {
		if (len < 48)
			DV_FAIL(m, "ipv6 header");
		hl = 40;
		if (dv16(pkt + 4) != len - 40 || pkt[6] != 17)
			DV_FAIL(m, "ipv6 payload length/next header");
		m->alen = 16;
		memcpy(m->src, pkt + 8, 16);
		memcpy(m->dst, pkt + 24, 16);
		s = dv_sum(0, pkt + 8, 32);
	} else {
		DV_FAIL(m, "ip version");
	}
	const uint8_t *udp = pkt + hl;
	size_t ulen = len - hl;
	if (dv16(udp + 4) != ulen)
		DV_FAIL(m, "udp length");
	s += 17 + (uint32_t)ulen;
	if (dv16(udp + 6) == 0 || dv_fold(dv_sum(s, udp, ulen)) != 0xffff)
		DV_FAIL(m, "udp checksum");
	m->sport = dv16(udp);
	m->dport = dv16(udp + 2);
	m->dns = udp + 8;
	m->dns_len = ulen - 8;

	const uint8_t *d = m->dns;
	size_t dl = m->dns_len, off = 12;
	if (dl < 12)
		DV_FAIL(m, "dns header");
	m->id = dv16(d);
	m->flags = dv16(d + 2);
	m->qd = dv16(d + 4);
	m->an = dv16(d + 6);
	m->ns = dv16(d + 8);
	m->ar = dv16(d + 10);
	if (m->qd != 1)
		DV_FAIL(m, "qdcount");
	if (dv_name(d, dl, &off, m->qname) < 0 || off + 4 > dl)
		DV_FAIL(m, "question");
	m->qtype = dv16(d + off);
	m->qclass = dv16(d + off + 2);
	m->qend = off + 4;
	off = m->qend;
	unsigned total = (unsigned)m->an + m->ns + m->ar;
	if (total > DV_MAX_RR)
		DV_FAIL(m, "too many records");
	for (unsigned i = 0; i < total; i++) {
		struct dv_rr *r = &m->rr[i];
		if (dv_name(d, dl, &off, r->name) < 0 || off + 10 > dl)
			DV_FAIL(m, "record header");
		r->type = dv16(d + off);
		r->cls = dv16(d + off + 2);
		r->ttl = dv32(d + off + 4);
		r->rdlen = dv16(d + off + 8);
		r->rdoff = off + 10;
		off += 10u + r->rdlen;
		if (off > dl)
			DV_FAIL(m, "rdata length");
	}
	if (off != dl)
		DV_FAIL(m, "trailing bytes");
	m->nrr = total;
	return 0;
}

/* Checks the answer a against the query q it was built from: addresses and
 * ports swapped, id and question identical, header bits right. */
int dv_check_pair(const uint8_t *q, size_t qlen, const struct dv_msg *a, struct dv_msg *scratch)
{
	const uint8_t *qdns;
	size_t hl = (q[0] >> 4) == 4 ? 20 : 40, alen = hl == 20 ? 4 : 16;
	const uint8_t *qs = hl == 20 ? q + 12 : q + 8;
	uint32_t query_do = 0;

	qdns = q + hl + 8;
	/* An answered query has no records but its OPT, right after the
	 * question (which the answer echoes, so a->qend is the query's too). */
	if (dv16(qdns + 10) == 1 && hl + 8 + a->qend + 11 <= qlen &&
	    dv16(qdns + a->qend + 1) == 41)
		query_do = (qdns[a->qend + 7] & 0x80) ? 0x8000 : 0;
	if (a->version != q[0] >> 4)
		DV_FAIL(scratch, "version changed");
	if (memcmp(a->src, qs + alen, alen) || memcmp(a->dst, qs, alen))
		DV_FAIL(scratch, "addresses not swapped");
	if (a->sport != dv16(q + hl + 2) || a->dport != dv16(q + hl))
		DV_FAIL(scratch, "ports not swapped");
	qdns = q + hl + 8;
	if (a->id != dv16(qdns))
		DV_FAIL(scratch, "id");
	if (memcmp(a->dns + 12, qdns + 12, a->qend - 12) != 0)
		DV_FAIL(scratch, "question not echoed");
	uint16_t f = a->flags, qf = dv16(qdns + 2);
	if (!(f & 0x8000) || (f & 0x7800) || !(f & 0x0400) || (f & 0x0200) || !(f & 0x0080))
		DV_FAIL(scratch, "header bits");
	if ((f & 0x0100) != (qf & 0x0100))
		DV_FAIL(scratch, "RD not copied");
	if (f & 0x0020)
		DV_FAIL(scratch, "AD set");
	for (unsigned i = 0; i < a->nrr; i++) {
		const struct dv_rr *r = &a->rr[i];
		if (r->type == 41) {
			if (i != a->nrr - 1 || r->name[0] || (r->ttl & 0x8000) != query_do ||
			    (r->ttl >> 16) != 0)
				DV_FAIL(scratch, "OPT misplaced, DO not copied or ext rcode");
		} else if (r->cls != 1) {
			DV_FAIL(scratch, "record class");
		}
	}
	return 0;
}

/* ---- a catalog of plain data ------------------------------------------ */
/* nginx-svc.default: 198.18.0.10 + fd00:e3::a, ports http-0/tcp 12345 and
 * dns/udp 53; v4only.default: 198.18.0.11, no IPv6, one unnamed port. */
static struct em_service_port dv_nginx_ports[] = {
	{ .name = "http-0", .port = 12345, .ipproto = IPPROTO_TCP, .app = EM_APP_HTTP },
	{ .name = "dns", .port = 53, .ipproto = IPPROTO_UDP },
};
static struct em_service_port dv_v4_ports[] = {
	{ .name = "", .port = 80, .ipproto = IPPROTO_TCP },
};
struct em_service dv_services[2] = {
	{ .ns = "default", .name = "nginx-svc", .fqdn = "nginx-svc.default.svc.cluster.local",
	  .has_fake4 = true, .has_fake6 = true, .headless = true,
	  .ports = dv_nginx_ports, .n_ports = 2 },
	{ .ns = "default", .name = "v4only", .fqdn = "v4only.default.svc.cluster.local",
	  .has_fake4 = true, .ports = dv_v4_ports, .n_ports = 1 },
};

const struct em_service *dv_find_name(void *ctx, const char *ns, size_t ns_len,
				      const char *name, size_t name_len)
{
	(void)ctx;
	for (size_t i = 0; i < sizeof(dv_services) / sizeof(dv_services[0]); i++) {
		const struct em_service *s = &dv_services[i];
		if (strlen(s->ns) == ns_len && strlen(s->name) == name_len &&
		    strncasecmp(s->ns, ns, ns_len) == 0 && strncasecmp(s->name, name, name_len) == 0)
			return s;
	}
	return NULL;
}

const struct em_service *dv_find_addr(void *ctx, int family, const void *addr)
{
	(void)ctx;
	for (size_t i = 0; i < sizeof(dv_services) / sizeof(dv_services[0]); i++) {
		const struct em_service *s = &dv_services[i];
		if (family == AF_INET && s->has_fake4 && memcmp(&s->fake4, addr, 4) == 0)
			return s;
		if (family == AF_INET6 && s->has_fake6 && memcmp(&s->fake6, addr, 16) == 0)
			return s;
	}
	return NULL;
}

void dv_catalog_init(struct em_dns_catalog *cat)
{
	inet_pton(AF_INET, "198.18.0.10", &dv_services[0].fake4);
	inet_pton(AF_INET6, "fd00:e3::a", &dv_services[0].fake6);
	inet_pton(AF_INET, "198.18.0.11", &dv_services[1].fake4);
	dv_nginx_ports[0].service = dv_nginx_ports[1].service = &dv_services[0];
	dv_v4_ports[0].service = &dv_services[1];
	cat->ctx = NULL;
	cat->domain = "cluster.local";
	cat->find_name = dv_find_name;
	cat->find_addr = dv_find_addr;
}
