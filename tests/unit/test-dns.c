/* test-dns.c — the packet-level rewriter against real captured queries
 * (tests/data/dns/, made by tools/dns-capture.sh: dig, getent/glibc,
 * nslookup, musl-style) and hand-made hostile ones. Every answer is parsed
 * back by the independent parser in test-dns-verify.c. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "dns/external.h"
#include "dns/localaddr.h"
#include "dns/queue.h"

#include "test-dns-verify.h"
#include "testlog.h"

#define CAP 2048

static struct em_dns_catalog cat;
static struct em_dns_opts opts;

static void setup(void)
{
	dv_catalog_init(&cat);
	em_dns_opts_defaults(&opts);
}

static size_t load_hex(const char *name, uint8_t *buf)
{
	const char *dir = getenv("EM_TEST_DATA");
	char path[512], line[8192];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/dns/%s.hex", dir ? dir : "tests/data", name);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert(fgets(line, sizeof(line), f) != NULL);
	fclose(f);
	for (size_t i = 0; line[i] && line[i + 1] && line[i] != '\n'; i += 2) {
		unsigned v;
		ck_assert(sscanf(line + i, "%2x", &v) == 1);
		ck_assert(n < CAP);
		buf[n++] = (uint8_t)v;
	}
	return n;
}

static uint16_t last_qtype;	/* the QTYPE run() was told */

/* Answers pkt and, when answered, parses and cross-checks the result. */
static enum em_dns_reason run(uint8_t *pkt, size_t len, size_t cap, struct dv_msg *m)
{
	uint8_t orig[CAP];
	size_t out = 0;
	struct dv_msg scratch;

	memcpy(orig, pkt, len);
	last_qtype = 0xdead;
	enum em_dns_reason r = em_dns_answer(&opts, &cat, pkt, len, cap, &out, &last_qtype);
	ck_assert_msg(last_qtype == 0 || em_dns_reason_has_qtype(r), "QTYPE %u with outcome %s",
		      last_qtype, em_dns_reason_name(r));
	if (r != EM_DNS_ANSWERED) {
		ck_assert_msg(memcmp(orig, pkt, len) == 0, "pass (%s) modified the packet",
			      em_dns_reason_name(r));
		return r;
	}
	ck_assert(out <= cap);
	ck_assert_msg(dv_parse(pkt, out, m) == 0, "answer does not parse: %s", m->err);
	ck_assert_msg(dv_check_pair(orig, len, m, &scratch) == 0, "answer vs query: %s", scratch.err);
	ck_assert_uint_eq(m->qtype, last_qtype);
	return r;
}

static enum em_dns_reason run_file(const char *name, struct dv_msg *m)
{
	static uint8_t pkt[CAP];
	size_t len = load_hex(name, pkt);
	return run(pkt, len, CAP, m);
}

static const struct dv_rr *find_rr(const struct dv_msg *m, unsigned from, unsigned n, uint16_t type)
{
	for (unsigned i = from; i < from + n; i++)
		if (m->rr[i].type == type)
			return &m->rr[i];
	return NULL;
}

static void assert_a(const struct dv_msg *m, const char *addr)
{
	uint8_t want[4];
	inet_pton(AF_INET, addr, want);
	ck_assert_uint_eq(m->an, 1);
	ck_assert_uint_eq(m->rr[0].type, 1);
	ck_assert_str_eq(m->rr[0].name, m->qname);
	ck_assert_uint_eq(m->rr[0].ttl, 5);
	ck_assert_uint_eq(m->rr[0].rdlen, 4);
	ck_assert(memcmp(m->dns + m->rr[0].rdoff, want, 4) == 0);
}

static void assert_soa_only(const struct dv_msg *m, int rcode)
{
	char mname[256], rname[256];
	ck_assert_uint_eq(m->flags & 0xf, (unsigned)rcode);
	ck_assert_uint_eq(m->an, 0);
	ck_assert_uint_eq(m->ns, 1);
	const struct dv_rr *soa = &m->rr[0];
	ck_assert_uint_eq(soa->type, 6);
	ck_assert_str_eq(soa->name, "cluster.local");
	size_t off = soa->rdoff;
	ck_assert(dv_name(m->dns, m->dns_len, &off, mname) == 0);
	ck_assert(dv_name(m->dns, m->dns_len, &off, rname) == 0);
	ck_assert_str_eq(mname, "ns.dns.cluster.local");
	ck_assert_str_eq(rname, "hostmaster.cluster.local");
	ck_assert_uint_eq(off + 20, soa->rdoff + soa->rdlen);
	ck_assert_uint_eq(dv32(m->dns + off + 16), 5);	/* minimum = ttl */
}

static void assert_opt(const struct dv_msg *m, bool present)
{
	const struct dv_rr *opt = find_rr(m, 0, m->nrr, 41);
	if (!present) {
		ck_assert(opt == NULL);
		return;
	}
	ck_assert(opt != NULL);
	ck_assert_uint_eq(opt->cls, 1232);
	ck_assert_uint_eq(opt->ttl, 0);		/* version 0, DO clear */
	ck_assert_uint_eq(opt->rdlen, 0);	/* cookie not echoed */
}

/* ---- hand-made packets ---------------------------------------------- */

/* DNS query for a dotted name (uncompressed); returns its length. */
static size_t mkquery(uint8_t *d, const char *name, uint16_t qtype, uint16_t flags, bool edns)
{
	size_t n = 12;
	memset(d, 0, 12);
	d[0] = 0xbe; d[1] = 0xef;
	d[2] = (uint8_t)(flags >> 8); d[3] = (uint8_t)flags;
	d[5] = 1;
	d[11] = edns ? 1 : 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		d[n++] = (uint8_t)l;
		memcpy(d + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	d[n++] = 0;
	d[n++] = (uint8_t)(qtype >> 8); d[n++] = (uint8_t)qtype;
	d[n++] = 0; d[n++] = 1;
	if (edns) {
		static const uint8_t opt[] = { 0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0 };
		memcpy(d + n, opt, sizeof(opt));	/* 4096 bytes, DO set */
		n += sizeof(opt);
	}
	return n;
}

static void udp_csum_fix(uint8_t *pkt, size_t hl, size_t alen, size_t len)
{
	uint8_t *udp = pkt + hl;
	size_t ulen = len - hl;
	udp[6] = udp[7] = 0;
	uint32_t s = dv_sum(0, pkt + (hl == 20 ? 12 : 8), 2 * alen) + 17 + (uint32_t)ulen;
	uint16_t c = (uint16_t)~dv_fold(dv_sum(s, udp, ulen));
	if (c == 0)
		c = 0xffff;
	udp[6] = (uint8_t)(c >> 8); udp[7] = (uint8_t)c;
}

/* Wraps a DNS payload: 10.1.0.2:40000 -> 10.1.0.1:53. */
static size_t mkpkt4(uint8_t *pkt, const uint8_t *dns, size_t dlen)
{
	static const uint8_t hdr[20] = { 0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0,
					 10, 1, 0, 2, 10, 1, 0, 1 };
	size_t len = 28 + dlen;
	memcpy(pkt, hdr, 20);
	pkt[2] = (uint8_t)(len >> 8); pkt[3] = (uint8_t)len;
	uint16_t c = (uint16_t)~dv_fold(dv_sum(0, pkt, 20));
	pkt[10] = (uint8_t)(c >> 8); pkt[11] = (uint8_t)c;
	uint8_t *u = pkt + 20;
	u[0] = 0x9c; u[1] = 0x40; u[2] = 0; u[3] = 53;
	u[4] = (uint8_t)((dlen + 8) >> 8); u[5] = (uint8_t)(dlen + 8);
	memmove(u + 8, dns, dlen);
	udp_csum_fix(pkt, 20, 4, len);
	return len;
}

/* fd01::2:40000 -> fd01::1:53 */
static size_t mkpkt6(uint8_t *pkt, const uint8_t *dns, size_t dlen)
{
	size_t len = 48 + dlen;
	memset(pkt, 0, 40);
	pkt[0] = 0x60;
	pkt[4] = (uint8_t)((dlen + 8) >> 8); pkt[5] = (uint8_t)(dlen + 8);
	pkt[6] = 17; pkt[7] = 64;
	pkt[8] = 0xfd; pkt[9] = 1; pkt[23] = 2;
	pkt[24] = 0xfd; pkt[25] = 1; pkt[39] = 1;
	uint8_t *u = pkt + 40;
	u[0] = 0x9c; u[1] = 0x40; u[2] = 0; u[3] = 53;
	u[4] = (uint8_t)((dlen + 8) >> 8); u[5] = (uint8_t)(dlen + 8);
	memmove(u + 8, dns, dlen);
	udp_csum_fix(pkt, 40, 16, len);
	return len;
}

static enum em_dns_reason ask4(const char *name, uint16_t qtype, bool edns, struct dv_msg *m)
{
	static uint8_t pkt[CAP];
	uint8_t dns[512];
	size_t dl = mkquery(dns, name, qtype, 0x0100, edns);
	return run(pkt, mkpkt4(pkt, dns, dl), CAP, m);
}

static enum em_dns_reason ask6(const char *name, uint16_t qtype, bool edns, struct dv_msg *m)
{
	static uint8_t pkt[CAP];
	uint8_t dns[512];
	size_t dl = mkquery(dns, name, qtype, 0x0100, edns);
	return run(pkt, mkpkt6(pkt, dns, dl), CAP, m);
}

/* ---- real captured queries -------------------------------------------- */

START_TEST(dig_a_with_edns_cookie)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("dig-a-1", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	ck_assert_uint_eq(m.ar, 1);
	assert_opt(&m, true);
	ck_assert_uint_eq(m.flags & 0xf, 0);
}
END_TEST

START_TEST(dig_a_no_edns)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("dig-noedns-1", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	assert_opt(&m, false);
	ck_assert_int_eq(run_file("dig-nocookie-1", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	assert_opt(&m, true);
}
END_TEST

START_TEST(dig_upper_case_echoed)
{
	struct dv_msg m;
	uint8_t pkt[CAP];
	size_t len = load_hex("dig-upper-1", pkt);
	ck_assert_int_eq(run(pkt, len, CAP, &m), EM_DNS_ANSWERED);
	ck_assert(memmem(m.dns, m.dns_len, "\11NGINX-SVC\7Default\3SVC", 22) != NULL);
	assert_a(&m, "198.18.0.10");
}
END_TEST

START_TEST(dig_aaaa)
{
	struct dv_msg m;
	uint8_t want[16];
	inet_pton(AF_INET6, "fd00:e3::a", want);
	ck_assert_int_eq(run_file("dig-aaaa-1", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 1);
	ck_assert_uint_eq(m.rr[0].type, 28);
	ck_assert(memcmp(m.dns + m.rr[0].rdoff, want, 16) == 0);
	assert_opt(&m, true);
}
END_TEST

START_TEST(aaaa_without_fake6_is_nodata)
{
	struct dv_msg m;
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 28, true, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	ck_assert_uint_eq(m.ar, 1);
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 28, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	ck_assert_uint_eq(m.ar, 0);
}
END_TEST

START_TEST(other_type_is_nodata)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("dig-mx-1", &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	ck_assert_int_eq(ask4("nginx-svc.default.svc.cluster.local", 16, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
}
END_TEST

START_TEST(any_gets_addresses)
{
	struct dv_msg m;
	ck_assert_int_eq(ask4("nginx-svc.default.svc.cluster.local", 255, false, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 2);
	ck_assert_uint_eq(m.rr[0].type, 1);
	ck_assert_uint_eq(m.rr[1].type, 28);
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 255, false, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 1);
}
END_TEST

START_TEST(no_fake_ip_passes)
{
	struct dv_msg m;
	dv_services[1].has_fake4 = false;
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_NO_FAKE_IP);
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 255, false, &m), EM_DNS_PASS_NO_FAKE_IP);
	ck_assert_int_eq(ask4("v4only.default.svc.cluster.local", 28, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	dv_services[1].has_fake4 = true;
}
END_TEST

START_TEST(dig_srv)
{
	struct dv_msg m;
	char target[256];
	ck_assert_int_eq(run_file("dig-srv-1", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 1);
	const struct dv_rr *r = &m.rr[0];
	ck_assert_uint_eq(r->type, 33);
	ck_assert_uint_eq(dv16(m.dns + r->rdoff), 0);
	ck_assert_uint_eq(dv16(m.dns + r->rdoff + 2), 100);
	ck_assert_uint_eq(dv16(m.dns + r->rdoff + 4), 12345);
	size_t off = r->rdoff + 6;
	ck_assert(dv_name(m.dns, m.dns_len, &off, target) == 0);
	ck_assert_uint_eq(off, r->rdoff + r->rdlen);
	ck_assert_str_eq(target, "nginx-svc.default.svc.cluster.local");
	ck_assert_uint_eq(m.ar, 3);		/* A, AAAA glue, OPT */
	ck_assert_str_eq(m.rr[1].name, target);
	ck_assert_uint_eq(m.rr[1].type, 1);
	ck_assert_uint_eq(m.rr[2].type, 28);
	assert_opt(&m, true);
}
END_TEST

START_TEST(srv_unknown_port_and_udp)
{
	struct dv_msg m;
	ck_assert_int_eq(ask4("_dns._udp.nginx-svc.default.svc.cluster.local", 33, false, &m),
			 EM_DNS_ANSWERED);
	ck_assert_uint_eq(dv16(m.dns + m.rr[0].rdoff + 4), 53);
	ck_assert_int_eq(ask4("_dns._tcp.nginx-svc.default.svc.cluster.local", 33, false, &m),
			 EM_DNS_PASS_UNKNOWN);
	ck_assert_int_eq(ask4("_http-0._tcp.nginx-svc.default.svc.cluster.local", 1, false, &m),
			 EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	opts.nxdomain_unknown = true;
	ck_assert_int_eq(ask4("_x._tcp.nginx-svc.default.svc.cluster.local", 33, false, &m),
			 EM_DNS_ANSWERED);
	assert_soa_only(&m, 3);
}
END_TEST

START_TEST(dig_ptr)
{
	struct dv_msg m;
	char target[256];
	ck_assert_int_eq(run_file("dig-ptr-1", &m), EM_DNS_ANSWERED);
	ck_assert_str_eq(m.qname, "10.0.18.198.in-addr.arpa");
	ck_assert_uint_eq(m.an, 1);
	ck_assert_uint_eq(m.rr[0].type, 12);
	size_t off = m.rr[0].rdoff;
	ck_assert(dv_name(m.dns, m.dns_len, &off, target) == 0);
	ck_assert_str_eq(target, "nginx-svc.default.svc.cluster.local");
	ck_assert_int_eq(run_file("dig-ptr6-1", &m), EM_DNS_ANSWERED);
	off = m.rr[0].rdoff;
	ck_assert(dv_name(m.dns, m.dns_len, &off, target) == 0);
	ck_assert_str_eq(target, "nginx-svc.default.svc.cluster.local");
	ck_assert_int_eq(ask4("99.0.18.198.in-addr.arpa", 12, false, &m), EM_DNS_PASS_OUTSIDE);
	ck_assert_int_eq(ask4("010.0.18.198.in-addr.arpa", 12, false, &m), EM_DNS_PASS_OUTSIDE);
}
END_TEST

START_TEST(outside_passes_untouched)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("dig-outside-1", &m), EM_DNS_PASS_OUTSIDE);
	ck_assert_int_eq(ask4("nginx-svc.default.svc.cluster.local.example.org", 1, false, &m),
			 EM_DNS_PASS_OUTSIDE);
	ck_assert_int_eq(ask4("x.default.pod.cluster.local", 1, false, &m), EM_DNS_PASS_OUTSIDE);
}
END_TEST

START_TEST(ipv6_transport)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("dig6-a-1", &m), EM_DNS_ANSWERED);
	ck_assert_int_eq(m.version, 6);
	assert_a(&m, "198.18.0.10");
	ck_assert_int_eq(run_file("dig6-aaaa-noedns-1", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.rr[0].type, 28);
	assert_opt(&m, false);
	ck_assert_int_eq(ask6("v4only.default.svc.cluster.local", 28, true, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
}
END_TEST

START_TEST(getent_glibc_search_list)
{
	struct dv_msg m;
	/* nginx-svc.default.{default.svc.cluster.local, svc.cluster.local,
	 * cluster.local, .} as A and AAAA: only the second pair is ours. */
	ck_assert_int_eq(run_file("getent-1", &m), EM_DNS_PASS_UNKNOWN);
	ck_assert_int_eq(run_file("getent-2", &m), EM_DNS_PASS_UNKNOWN);
	ck_assert_int_eq(run_file("getent-3", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	ck_assert_int_eq(run_file("getent-4", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.rr[0].type, 28);
	ck_assert_int_eq(run_file("getent-5", &m), EM_DNS_PASS_OUTSIDE);
	ck_assert_int_eq(run_file("getent-7", &m), EM_DNS_PASS_OUTSIDE);
	opts.nxdomain_unknown = true;
	ck_assert_int_eq(run_file("getent-1", &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 3);
}
END_TEST

START_TEST(short_names_when_enabled)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("getent-8", &m), EM_DNS_PASS_OUTSIDE);
	opts.short_names = true;
	ck_assert_int_eq(run_file("getent-7", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	ck_assert_int_eq(run_file("getent-8", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.rr[0].type, 28);
	ck_assert_int_eq(ask4("v4only.default.svc", 28, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);		/* SOA written out in full, not pointed to */
	ck_assert_int_eq(ask4("example.org", 1, false, &m), EM_DNS_PASS_OUTSIDE);
}
END_TEST

START_TEST(nslookup_and_musl)
{
	struct dv_msg m;
	ck_assert_int_eq(run_file("nslookup-1", &m), EM_DNS_PASS_UNKNOWN);
	ck_assert_int_eq(run_file("nslookup-4", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	ck_assert_int_eq(run_file("musl-1", &m), EM_DNS_ANSWERED);
	assert_a(&m, "198.18.0.10");
	ck_assert_int_eq(run_file("musl-2", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.rr[0].type, 28);
}
END_TEST

START_TEST(ttl_and_edns_size_configurable)
{
	struct dv_msg m;
	opts.ttl = 30;
	opts.edns_size = 4000;
	ck_assert_int_eq(ask4("nginx-svc.default.svc.cluster.local", 1, true, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.rr[0].ttl, 30);
	ck_assert_uint_eq(m.rr[1].cls, 4000);
}
END_TEST

START_TEST(nxdomain_mode_and_empty_nonterminals)
{
	struct dv_msg m;
	ck_assert_int_eq(ask4("nope.default.svc.cluster.local", 1, true, &m), EM_DNS_PASS_UNKNOWN);
	opts.nxdomain_unknown = true;
	ck_assert_int_eq(ask4("nope.default.svc.cluster.local", 1, true, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 3);
	ck_assert_int_eq(ask4("default.svc.cluster.local", 1, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	ck_assert_int_eq(ask4("svc.cluster.local", 1, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 0);
	ck_assert_int_eq(ask6("NOPE.default.svc.cluster.local", 28, false, &m), EM_DNS_ANSWERED);
	assert_soa_only(&m, 3);
}
END_TEST

/* ---- hostile input ------------------------------------------------------ */

static void expect_pass(uint8_t *pkt, size_t len, enum em_dns_reason want)
{
	struct dv_msg m;
	ck_assert_str_eq(em_dns_reason_name(run(pkt, len, CAP, &m)), em_dns_reason_name(want));
}

START_TEST(truncated_at_every_byte)
{
	static const char *files[] = { "dig-a-1", "dig6-a-1", "dig-srv-1", "getent-3", "musl-2" };
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		uint8_t orig[CAP], pkt[CAP];
		size_t len = load_hex(files[f], orig);
		size_t hl = orig[0] >> 4 == 4 ? 20 : 40;
		for (size_t cut = 0; cut < len; cut++) {	/* the IP layer sees it */
			struct dv_msg m;
			memcpy(pkt, orig, cut);
			ck_assert_int_ne(run(pkt, cut, CAP, &m), EM_DNS_ANSWERED);
		}
		for (size_t cut = 0; cut < len - hl - 8; cut++) {	/* consistent lengths */
			struct dv_msg m;
			size_t n = hl == 20 ? mkpkt4(pkt, orig + hl + 8, cut) : mkpkt6(pkt, orig + hl + 8, cut);
			ck_assert_int_ne(run(pkt, n, CAP, &m), EM_DNS_ANSWERED);
		}
	}
}
END_TEST

START_TEST(counts_and_flags)
{
	uint8_t dns[512], pkt[CAP];
	size_t dl = mkquery(dns, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	static const struct { unsigned off; uint8_t val; enum em_dns_reason r; } cases[] = {
		{ 5, 0, EM_DNS_PASS_QDCOUNT },		/* QDCOUNT 0 */
		{ 5, 2, EM_DNS_PASS_QDCOUNT },		/* QDCOUNT 2 */
		{ 4, 1, EM_DNS_PASS_QDCOUNT },		/* QDCOUNT 257 */
		{ 7, 1, EM_DNS_PASS_HEADER },		/* ANCOUNT 1 */
		{ 9, 1, EM_DNS_PASS_HEADER },		/* NSCOUNT 1 */
		{ 11, 2, EM_DNS_PASS_HEADER },		/* ARCOUNT 2 */
		{ 11, 1, EM_DNS_PASS_ADDITIONAL },	/* ARCOUNT 1, nothing there */
		{ 2, 0x81, EM_DNS_PASS_HEADER },	/* QR: a response */
		{ 2, 0x03, EM_DNS_PASS_HEADER },	/* TC */
		{ 2, 0x11, EM_DNS_PASS_HEADER },	/* opcode STATUS */
		{ 2, 0x21, EM_DNS_PASS_HEADER },	/* opcode NOTIFY */
		{ 2, 0x29, EM_DNS_PASS_HEADER },	/* opcode UPDATE */
		{ 3, 0x03, EM_DNS_PASS_HEADER },	/* rcode in a query */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t d[512];
		memcpy(d, dns, dl);
		d[cases[i].off] = cases[i].val;
		expect_pass(pkt, mkpkt4(pkt, d, dl), cases[i].r);
	}
}
END_TEST

START_TEST(names_loops_and_labels)
{
	uint8_t d[600], pkt[CAP];
	size_t n;

	/* a compression pointer to itself in the question */
	n = mkquery(d, "a", 1, 0x0100, false);
	d[12] = 0xc0; d[13] = 12;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	/* compression after a label, pointing back at the header */
	n = mkquery(d, "nginx-svc.x", 1, 0x0100, false);
	d[22] = 0xc0; d[23] = 0x00;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	/* a 64-byte label (0x40: extended label type) */
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	d[12] = 64;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	d[12] = 0x80;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	/* a name of 257 bytes: 4 labels of 63 */
	char big[300];
	memset(big, 'a', sizeof(big));
	for (int i = 63; i < 256; i += 64)
		big[i] = '.';
	big[255] = '\0';
	n = mkquery(d, big, 1, 0x0100, false);
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	/* the label length runs past the end */
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	d[12] = 60;
	d[n - 5] = 1;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_NAME);
	/* class CHAOS, type AXFR, type OPT as a question */
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	d[n - 1] = 3;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_QCLASS);
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 252, 0x0100, false);
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_QCLASS);
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 41, 0x0100, false);
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_QCLASS);
	/* trailing garbage */
	n = mkquery(d, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	d[n++] = 0;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_TRAILING);
}
END_TEST

START_TEST(edns_variants)
{
	uint8_t d[600], pkt[CAP];
	struct dv_msg m;
	size_t n = mkquery(d, "nginx-svc.default.svc.cluster.local", 1, 0x0110, true);
	/* CD and DO in the query: CD and DO copied, AD never set */
	ck_assert_int_eq(run(pkt, mkpkt4(pkt, d, n), CAP, &m), EM_DNS_ANSWERED);
	ck_assert(m.flags & 0x0010);
	ck_assert(!(m.flags & 0x0020));
	ck_assert(find_rr(&m, 0, m.nrr, 41) != NULL);
	ck_assert_uint_eq(find_rr(&m, 0, m.nrr, 41)->ttl, 0x8000);	/* DO copied, version 0 */
	/* EDNS version 1 -> the real server answers BADVERS */
	d[n - 5] = 1;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_EDNS_VERSION);
	d[n - 5] = 0;
	/* OPT rdata length past the end, options not tiling rdata */
	d[n - 1] = 4;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_ADDITIONAL);
	memcpy(d + n, "\0\12\0\10", 4);		/* cookie option claiming 8 bytes, none there */
	expect_pass(pkt, mkpkt4(pkt, d, n + 4), EM_DNS_PASS_ADDITIONAL);
	/* the additional record is not an OPT (say a TSIG) */
	d[n - 1] = 0;
	d[n - 9] = 250;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_ADDITIONAL);
	/* OPT owner not the root */
	d[n - 9] = 41;
	d[n - 11] = 1;
	expect_pass(pkt, mkpkt4(pkt, d, n), EM_DNS_PASS_ADDITIONAL);
}
END_TEST

START_TEST(ip_layer_oddities)
{
	uint8_t dns[512], pkt[CAP];
	size_t dl = mkquery(dns, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	size_t n;

	/* IPv4 options: IHL 6 */
	n = mkpkt4(pkt, dns, dl);
	pkt[0] = 0x46;
	expect_pass(pkt, n, EM_DNS_PASS_IP_OPTIONS);
	/* fragments: MF, and an offset */
	n = mkpkt4(pkt, dns, dl);
	pkt[6] = 0x20;
	expect_pass(pkt, n, EM_DNS_PASS_FRAGMENT);
	n = mkpkt4(pkt, dns, dl);
	pkt[6] = 0x00; pkt[7] = 0x10;
	expect_pass(pkt, n, EM_DNS_PASS_FRAGMENT);
	/* IP total length disagreeing with the captured length */
	n = mkpkt4(pkt, dns, dl);
	expect_pass(pkt, n - 1, EM_DNS_PASS_IP_LENGTH);
	/* wrong UDP length, both ways */
	n = mkpkt4(pkt, dns, dl);
	pkt[25]++;
	expect_pass(pkt, n, EM_DNS_PASS_UDP_LENGTH);
	n = mkpkt4(pkt, dns, dl);
	pkt[25] -= 2;
	expect_pass(pkt, n, EM_DNS_PASS_UDP_LENGTH);
	/* not UDP, not port 53 */
	n = mkpkt4(pkt, dns, dl);
	pkt[9] = 6;
	expect_pass(pkt, n, EM_DNS_PASS_NOT_UDP);
	n = mkpkt4(pkt, dns, dl);
	pkt[23] = 54;
	expect_pass(pkt, n, EM_DNS_PASS_NOT_PORT53);
	/* bad UDP checksum; zero checksum is fine over IPv4 */
	n = mkpkt4(pkt, dns, dl);
	pkt[26] ^= 1;
	expect_pass(pkt, n, EM_DNS_PASS_CHECKSUM);
	struct dv_msg m;
	n = mkpkt4(pkt, dns, dl);
	pkt[26] = pkt[27] = 0;
	ck_assert_int_eq(run(pkt, n, CAP, &m), EM_DNS_ANSWERED);
	/* multicast and broadcast destinations */
	n = mkpkt4(pkt, dns, dl);
	pkt[16] = 224;
	expect_pass(pkt, n, EM_DNS_PASS_ADDRESS);
	memset(pkt + 16, 255, 4);
	expect_pass(pkt, n, EM_DNS_PASS_ADDRESS);
	/* IPv6: an extension header (hop-by-hop), zero checksum, multicast */
	n = mkpkt6(pkt, dns, dl);
	pkt[6] = 0;
	expect_pass(pkt, n, EM_DNS_PASS_NOT_UDP);
	n = mkpkt6(pkt, dns, dl);
	pkt[46] = pkt[47] = 0;
	expect_pass(pkt, n, EM_DNS_PASS_CHECKSUM);
	n = mkpkt6(pkt, dns, dl);
	pkt[24] = 0xff;
	expect_pass(pkt, n, EM_DNS_PASS_ADDRESS);
	n = mkpkt6(pkt, dns, dl);
	pkt[5]++;
	expect_pass(pkt, n, EM_DNS_PASS_IP_LENGTH);
	/* not IP at all */
	n = mkpkt4(pkt, dns, dl);
	pkt[0] = 0x55;
	expect_pass(pkt, n, EM_DNS_PASS_NOT_IP);
	expect_pass(pkt, 0, EM_DNS_PASS_NOT_IP);
}
END_TEST

START_TEST(answer_must_fit)
{
	uint8_t pkt[CAP];
	size_t len = load_hex("dig-noedns-1", pkt);
	struct dv_msg m;

	/* the buffer holds the query only: the answer cannot fit */
	ck_assert_int_eq(run(pkt, len, len, &m), EM_DNS_PASS_TOO_BIG);
	ck_assert_int_eq(run(pkt, len, len + 16, &m), EM_DNS_ANSWERED);

	/* SRV: glue is dropped before giving up */
	len = load_hex("dig-srv-1", pkt);
	size_t full, out;
	uint16_t qtype;
	uint8_t copy[CAP];
	memcpy(copy, pkt, len);
	ck_assert_int_eq(em_dns_answer(&opts, &cat, copy, len, CAP, &full, &qtype), EM_DNS_ANSWERED);
	memcpy(copy, pkt, len);
	ck_assert_int_eq(em_dns_answer(&opts, &cat, copy, len, full - 1, &out, &qtype), EM_DNS_ANSWERED);
	ck_assert_int_eq(dv_parse(copy, out, &m), 0);
	ck_assert_uint_eq(m.an, 1);
	ck_assert_uint_eq(m.ar, 1);		/* OPT only */
}
END_TEST

START_TEST(mutations_never_answer_wrongly)
{
	static const char *files[] = { "dig-a-1", "dig6-a-1", "dig-srv-1", "dig-ptr6-1", "getent-4" };
	unsigned seed = 12345;
	opts.verify_checksum = false;		/* let mutations reach the DNS layer */
	opts.nxdomain_unknown = true;
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		uint8_t orig[CAP], pkt[CAP];
		size_t len = load_hex(files[f], orig);
		for (int i = 0; i < 20000; i++) {
			struct dv_msg m;
			memcpy(pkt, orig, len);
			int flips = 1 + rand_r(&seed) % 3;
			for (int j = 0; j < flips; j++)
				pkt[rand_r(&seed) % len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
			run(pkt, len, CAP, &m);	/* asserts internally */
		}
	}
}
END_TEST

START_TEST(reason_names)
{
	for (int r = 0; r < EM_DNS_REASON_MAX; r++)
		ck_assert(em_dns_reason_name(r) != NULL && strcmp(em_dns_reason_name(r), "invalid") != 0);
	ck_assert_str_eq(em_dns_reason_name(EM_DNS_REASON_MAX), "invalid");
}
END_TEST

/* ---- queue support ------------------------------------------------------ */

START_TEST(local_addresses)
{
	struct em_dns_localaddr la;
	struct in_addr a;
	struct in6_addr a6;

	ck_assert_int_eq(em_dns_localaddr_open(&la), 0);
	inet_pton(AF_INET, "127.0.0.53", &a);
	ck_assert(em_dns_localaddr_has(&la, AF_INET, &a));
	ck_assert(em_dns_localaddr_has(&la, AF_INET6, &in6addr_loopback));
	inet_pton(AF_INET, "198.18.0.10", &a);
	ck_assert(!em_dns_localaddr_has(&la, AF_INET, &a));
	inet_pton(AF_INET6, "fd00:e3::a", &a6);
	ck_assert(!em_dns_localaddr_has(&la, AF_INET6, &a6));
	em_dns_localaddr_changed(&la);		/* nothing pending: no-op */
	em_dns_localaddr_close(&la);
}
END_TEST

/* The counters by question type: em_dns_answer says the QTYPE once the
 * question is read, whatever the outcome, and 0 before. */
START_TEST(qtype_reported)
{
	uint8_t pkt[CAP];
	struct dv_msg m;

	ck_assert_int_eq(run_file("dig-aaaa-1", &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(last_qtype, 28);
	ck_assert_int_eq(ask4("nginx-svc.default.svc.cluster.local", 33, false, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(last_qtype, 33);
	ck_assert_int_eq(ask4("example.org", 16, false, &m), EM_DNS_PASS_OUTSIDE);
	ck_assert_uint_eq(last_qtype, 16);
	/* the header is read, the question is cut: no QTYPE yet */
	uint8_t dns[512];
	size_t dl = mkquery(dns, "nginx-svc.default.svc.cluster.local", 1, 0x0100, false);
	ck_assert_int_eq(run(pkt, mkpkt4(pkt, dns, 12 + 4), CAP, &m), EM_DNS_PASS_NAME);
	ck_assert_uint_eq(last_qtype, 0);
	ck_assert_int_eq(run(pkt, mkpkt4(pkt, dns, dl - 1), CAP, &m), EM_DNS_PASS_NAME);
	ck_assert_uint_eq(last_qtype, 0);
	/* read, then passed for its class (CHAOS) */
	dns[dl - 1] = 3;
	ck_assert_int_eq(run(pkt, mkpkt4(pkt, dns, dl), CAP, &m), EM_DNS_PASS_QCLASS);
	ck_assert_uint_eq(last_qtype, 1);

	ck_assert_int_eq(em_dns_qtype_of(1), EM_DNS_QTYPE_A);
	ck_assert_int_eq(em_dns_qtype_of(28), EM_DNS_QTYPE_AAAA);
	ck_assert_int_eq(em_dns_qtype_of(33), EM_DNS_QTYPE_SRV);
	ck_assert_int_eq(em_dns_qtype_of(12), EM_DNS_QTYPE_PTR);
	ck_assert_int_eq(em_dns_qtype_of(16), EM_DNS_QTYPE_TXT);
	ck_assert_int_eq(em_dns_qtype_of(65), EM_DNS_QTYPE_HTTPS);
	ck_assert_int_eq(em_dns_qtype_of(255), EM_DNS_QTYPE_ANY);
	ck_assert_int_eq(em_dns_qtype_of(15), EM_DNS_QTYPE_OTHER);
	ck_assert_int_eq(em_dns_qtype_of(0), EM_DNS_QTYPE_OTHER);
	ck_assert_str_eq(em_dns_qtype_name(EM_DNS_QTYPE_AAAA), "AAAA");
	ck_assert_str_eq(em_dns_qtype_name(EM_DNS_QTYPE_OTHER), "other");
	ck_assert_str_eq(em_dns_qtype_name(EM_DNS_QTYPE_MAX), "invalid");
	for (int k = 0; k < EM_DNS_QTYPE_MAX; k++)
		ck_assert_str_ne(em_dns_qtype_name((enum em_dns_qtype)k), "invalid");
	/* outcomes after the question, in the enum's parsing order */
	ck_assert(em_dns_reason_has_qtype(EM_DNS_ANSWERED));
	ck_assert(!em_dns_reason_has_qtype(EM_DNS_PASS_NAME));
	ck_assert(em_dns_reason_has_qtype(EM_DNS_PASS_QCLASS));
	ck_assert(em_dns_reason_has_qtype(EM_DNS_PASS_EXTERNAL));
	ck_assert(!em_dns_reason_has_qtype(EM_DNS_VALID));
}
END_TEST

START_TEST(stats_line)
{
	struct em_dns_stats st = { .packets = 7, .enobufs = 1 };
	char buf[512];

	st.reasons[EM_DNS_ANSWERED] = 5;
	st.reasons[EM_DNS_PASS_OUTSIDE] = 2;
	ck_assert_int_gt(em_dns_stats_format(&st, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "packets=7 answered=5 outside=2 "));
	ck_assert_ptr_nonnull(strstr(buf, "enobufs=1"));
	ck_assert_ptr_null(strstr(buf, "qdcount"));
	/* counters of rare events only once they happened */
	ck_assert_ptr_nonnull(strstr(buf, " send_errors=0"));
	ck_assert_ptr_null(strstr(buf, "held"));
	ck_assert_ptr_null(strstr(buf, "spoofed"));
	st.held = 3;
	st.held_passed = 3;
	st.spoofed = 2;
	ck_assert_int_gt(em_dns_stats_format(&st, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "outside=2 held=3 held_passed=3 raw_sent=0 "));
	ck_assert_ptr_nonnull(strstr(buf, " spoofed=2"));
	ck_assert_int_eq(em_dns_stats_format(&st, buf, 10), -ENOSPC);
}
END_TEST

START_TEST(config_defaults)
{
	struct em_dns_config c;
	em_dns_config_defaults(&c);
	ck_assert_uint_eq(c.opts.ttl, 5);
	ck_assert(!c.opts.nxdomain_unknown);
	ck_assert(!c.opts.short_names);
	ck_assert_uint_eq(c.opts.edns_size, 1232);
	ck_assert_uint_eq(c.queues, 1);
	ck_assert_uint_eq(c.bypass_mark, 0x1e3);
	ck_assert_uint_le(c.copy_range, 512);
}
END_TEST


/* ---- ExternalName (issue 15) ------------------------------------------ */

static struct em_service ext_svc = {
	.ns = "default", .name = "ext", .session_affinity = "None",
	.external_name = "db.example.test",
};
static struct em_dns_target_cache ext_cache;
static struct em_service ext_in_cluster = {
	.ns = "default", .name = "alias", .session_affinity = "None",
	.external_name = "nginx-svc.default.svc.cluster.local",
};

static const struct em_service *ext_find_name(void *ctx, const char *ns, size_t ns_len,
					      const char *name, size_t name_len)
{
	if (ns_len == 7 && strncasecmp(ns, "default", 7) == 0 && name_len == 3 &&
	    strncasecmp(name, "ext", 3) == 0)
		return &ext_svc;
	if (ns_len == 7 && strncasecmp(ns, "default", 7) == 0 && name_len == 5 &&
	    strncasecmp(name, "alias", 5) == 0)
		return &ext_in_cluster;
	return dv_find_name(ctx, ns, ns_len, name, name_len);
}

static void ext_setup(void)
{
	struct em_dns_target t = { .qtype = 1, .ttl = 30, .n = 2 };

	setup();
	memset(&ext_cache, 0, sizeof(ext_cache));
	ext_cache.now_ms = 1000000;
	inet_pton(AF_INET, "10.1.2.3", t.addr[0]);
	inet_pton(AF_INET, "10.1.2.4", t.addr[1]);
	em_dns_target_store(&ext_cache, "db.example.test", 1, &t);
	cat.find_name = ext_find_name;
	cat.find_target = em_dns_target_find;
	cat.target_ctx = &ext_cache;
}

/* The CNAME first, owner the question, then the target's records owned by
 * the CNAME's target. */
static void assert_cname(const struct dv_msg *m, unsigned an)
{
	char target[256];
	size_t off = m->rr[0].rdoff;

	ck_assert_uint_eq(m->an, an);
	ck_assert_uint_eq(m->rr[0].type, 5);
	ck_assert_str_eq(m->rr[0].name, m->qname);
	ck_assert_uint_eq(m->rr[0].ttl, 5);
	ck_assert(dv_name(m->dns, m->dns_len, &off, target) == 0);
	ck_assert_str_eq(target, "db.example.test");
	for (unsigned i = 1; i < an; i++)
		ck_assert_str_eq(m->rr[i].name, "db.example.test");
}

START_TEST(external_cname_and_records)
{
	struct dv_msg m;
	uint8_t want[4];

	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 1, false, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 3);
	ck_assert_uint_eq(m.flags & 0xf, 0);
	inet_pton(AF_INET, "10.1.2.4", want);
	ck_assert_uint_eq(m.rr[2].type, 1);
	ck_assert_uint_eq(m.rr[2].ttl, 30);
	ck_assert(memcmp(m.dns + m.rr[2].rdoff, want, 4) == 0);
	assert_opt(&m, false);
	/* ANY gets the same (IPv4) records; the name's case is the client's */
	ck_assert_int_eq(ask4("EXT.Default.svc.cluster.local", 255, false, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 3);
}
END_TEST

START_TEST(external_cname_with_edns)
{
	struct dv_msg m;

	const struct dv_rr *opt;

	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 1, true, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 3);
	/* the OPT comes after the answers, in the additional section */
	ck_assert_uint_eq(m.ar, 1);
	opt = find_rr(&m, m.an + m.ns, m.ar, 41);
	ck_assert_ptr_nonnull(opt);
	ck_assert_uint_eq(opt->cls, 1232);
	/* over IPv6 transport too */
	ck_assert_int_eq(ask6("ext.default.svc.cluster.local", 1, true, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 3);
	ck_assert_ptr_nonnull(find_rr(&m, m.an + m.ns, m.ar, 41));
}
END_TEST

START_TEST(external_target_unknown_passes)
{
	struct dv_msg m;

	/* AAAA not cached: pass untouched (run checks), the miss recorded */
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 28, false, &m), EM_DNS_PASS_EXTERNAL);
	ck_assert_str_eq(ext_cache.miss_name, "db.example.test");
	ck_assert_uint_eq(ext_cache.miss_qtype, 28);
	/* expired: the same */
	ext_cache.now_ms += 31000;
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_EXTERNAL);
	/* without a target lookup at all (the test driver's catalog) */
	cat.find_target = NULL;
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_EXTERNAL);
	ck_assert_str_eq(em_dns_reason_name(EM_DNS_PASS_EXTERNAL), "external");
}
END_TEST

START_TEST(external_other_types_and_nxdomain)
{
	struct dv_msg m;
	struct em_dns_target nx = { .qtype = 28, .rcode = 3, .ttl = 5, .n = 0 };

	/* TXT, MX, CNAME: the CNAME alone, no lookup needed */
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 16, false, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 1);
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 5, true, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 1);
	/* the target does not exist: CNAME + NXDOMAIN (RFC 6604) */
	em_dns_target_store(&ext_cache, "db.example.test", 28, &nx);
	ck_assert_int_eq(ask4("ext.default.svc.cluster.local", 28, false, &m), EM_DNS_ANSWERED);
	assert_cname(&m, 1);
	ck_assert_uint_eq(m.flags & 0xf, 3);
}
END_TEST

/* A resolver's reply to em_dns_target_query(): header, question, answers. */
static size_t resolver_reply(uint8_t *b, uint16_t id, uint16_t flags, const char *qname,
			     uint16_t qtype)
{
	int n = em_dns_target_query(b, 512, id, qname, qtype);
	ck_assert_int_gt(n, 0);
	b[2] = (uint8_t)(flags >> 8);
	b[3] = (uint8_t)flags;
	return (size_t)n;
}

static size_t add_rr(uint8_t *b, size_t p, uint16_t type, uint32_t ttl, const void *rd,
		     uint16_t rdlen)
{
	b[7]++;				/* ANCOUNT, < 256 here */
	b[p++] = 0xc0; b[p++] = 12;	/* owner: the question */
	b[p++] = (uint8_t)(type >> 8); b[p++] = (uint8_t)type;
	b[p++] = 0; b[p++] = 1;
	b[p++] = (uint8_t)(ttl >> 24); b[p++] = (uint8_t)(ttl >> 16);
	b[p++] = (uint8_t)(ttl >> 8); b[p++] = (uint8_t)ttl;
	b[p++] = (uint8_t)(rdlen >> 8); b[p++] = (uint8_t)rdlen;
	memcpy(b + p, rd, rdlen);
	return p + rdlen;
}

/* A target that is a cluster service: its fake IP, no lookup. */
START_TEST(external_to_cluster_service)
{
	struct dv_msg m;
	uint8_t want[4];

	memset(&ext_cache, 0, sizeof(ext_cache));	/* nothing cached */
	ck_assert_int_eq(ask4("alias.default.svc.cluster.local", 1, true, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 2);
	ck_assert_uint_eq(m.rr[0].type, 5);
	ck_assert_str_eq(m.rr[1].name, "nginx-svc.default.svc.cluster.local");
	inet_pton(AF_INET, "198.18.0.10", want);
	ck_assert(memcmp(m.dns + m.rr[1].rdoff, want, 4) == 0);
	ck_assert_int_eq(ask4("alias.default.svc.cluster.local", 28, false, &m), EM_DNS_ANSWERED);
	ck_assert_uint_eq(m.an, 2);
	ck_assert_uint_eq(m.rr[1].type, 28);
	/* an unknown cluster name goes to the resolver like any other */
	ext_in_cluster.external_name = "nope.default.svc.cluster.local";
	ck_assert_int_eq(ask4("alias.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_EXTERNAL);
	ext_in_cluster.external_name = "default.svc.cluster.local";
	ck_assert_int_eq(ask4("alias.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_EXTERNAL);
	ext_in_cluster.external_name = "a.b.default.svc.cluster.local";
	ck_assert_int_eq(ask4("alias.default.svc.cluster.local", 1, false, &m), EM_DNS_PASS_EXTERNAL);
	ext_in_cluster.external_name = "nginx-svc.default.svc.cluster.local";
}
END_TEST

START_TEST(external_resolver_reply_parse)
{
	uint8_t b[1024], a1[4] = { 10, 0, 0, 1 }, a2[4] = { 10, 0, 0, 2 };
	uint8_t cname[] = "\3www\7example\4test";
	struct em_dns_target t;
	size_t n;

	n = resolver_reply(b, 0x1234, 0x8180, "db.example.test", 1);
	n = add_rr(b, n, 5, 120, cname, sizeof(cname));
	n = add_rr(b, n, 1, 60, a1, 4);
	n = add_rr(b, n, 1, 90, a2, 4);
	n = add_rr(b, n, 28, 10, b, 16);	/* another type: ignored */
	ck_assert_int_eq(em_dns_target_parse(b, n, 0x1234, "db.example.test", 1, 5, &t), 0);
	ck_assert_uint_eq(t.n, 2);
	ck_assert_uint_eq(t.ttl, 60);
	ck_assert_uint_eq(t.rcode, 0);
	ck_assert(memcmp(t.addr[1], a2, 4) == 0);
	/* the question compares case-insensitively */
	ck_assert_int_eq(em_dns_target_parse(b, n, 0x1234, "DB.example.TEST", 1, 5, &t), 0);
	/* not the reply to this query */
	ck_assert_int_eq(em_dns_target_parse(b, n, 0x1235, "db.example.test", 1, 5, &t), -EINVAL);
	ck_assert_int_eq(em_dns_target_parse(b, n, 0x1234, "db.example.tes", 1, 5, &t), -EINVAL);
	ck_assert_int_eq(em_dns_target_parse(b, n, 0x1234, "db.example.test", 28, 5, &t), -EINVAL);
	/* every truncation is refused or parsed, never read beyond */
	for (size_t k = 0; k < n; k++)
		ck_assert_int_ne(em_dns_target_parse(b, k, 0x1234, "db.example.test", 1, 5, &t), -EAGAIN);
	/* NXDOMAIN: cacheable, negative TTL; SERVFAIL and TC: pass */
	n = resolver_reply(b, 7, 0x8183, "db.example.test", 1);
	ck_assert_int_eq(em_dns_target_parse(b, n, 7, "db.example.test", 1, 5, &t), 0);
	ck_assert_uint_eq(t.rcode, 3);
	ck_assert_uint_eq(t.n, 0);
	ck_assert_uint_eq(t.ttl, 5);
	n = resolver_reply(b, 7, 0x8182, "db.example.test", 1);
	ck_assert_int_eq(em_dns_target_parse(b, n, 7, "db.example.test", 1, 5, &t), -EAGAIN);
	n = resolver_reply(b, 7, 0x8380, "db.example.test", 1);
	ck_assert_int_eq(em_dns_target_parse(b, n, 7, "db.example.test", 1, 5, &t), -EAGAIN);
	/* a query (QR clear) is not a reply */
	n = resolver_reply(b, 7, 0x0100, "db.example.test", 1);
	ck_assert_int_eq(em_dns_target_parse(b, n, 7, "db.example.test", 1, 5, &t), -EINVAL);
	/* hostile: random bytes after a valid question never crash */
	srand(15);
	for (int round = 0; round < 2000; round++) {
		n = resolver_reply(b, 9, 0x8180, "db.example.test", 1);
		b[6] = (uint8_t)(rand() & 1);
		b[7] = (uint8_t)rand();
		size_t extra = (size_t)rand() % 200;
		for (size_t k = 0; k < extra; k++)
			b[n + k] = (uint8_t)rand();
		(void)em_dns_target_parse(b, n + extra, 9, "db.example.test", 1, 5, &t);
		ck_assert_uint_le(t.n, EM_DNS_TARGET_MAX);
	}
	/* bad names are refused when building the query */
	ck_assert_int_eq(em_dns_target_query(b, sizeof(b), 1, "a..b", 1), -EINVAL);
}
END_TEST

START_TEST(external_cache_ttl)
{
	struct em_dns_target t = { .qtype = 1, .ttl = 10, .n = 1 };
	const struct em_dns_target *got;

	memset(&ext_cache, 0, sizeof(ext_cache));
	ext_cache.now_ms = 5000;
	em_dns_target_store(&ext_cache, "a.test", 1, &t);
	ext_cache.now_ms = 9000;
	got = em_dns_target_find(&ext_cache, "a.test", 1);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->ttl, 6);		/* the seconds left */
	ck_assert_ptr_null(em_dns_target_find(&ext_cache, "a.test", 28));
	ext_cache.now_ms = 15001;
	ck_assert_ptr_null(em_dns_target_find(&ext_cache, "a.test", 1));
	/* TTL 0 serves the queries answered at the same moment only */
	t.ttl = 0;
	em_dns_target_store(&ext_cache, "b.test", 1, &t);
	ck_assert_ptr_nonnull(em_dns_target_find(&ext_cache, "b.test", 1));
	ext_cache.now_ms++;
	ck_assert_ptr_null(em_dns_target_find(&ext_cache, "b.test", 1));
	/* more targets than entries: the cache stays bounded and finds the latest */
	for (int i = 0; i < 3 * EM_DNS_TARGET_CACHE; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%d.test", i);
		t.ttl = (uint32_t)(100 + i);
		em_dns_target_store(&ext_cache, name, 1, &t);
	}
	ck_assert_ptr_nonnull(em_dns_target_find(&ext_cache, "t191.test", 1));
	ck_assert_ptr_null(em_dns_target_find(&ext_cache, "t0.test", 1));
}
END_TEST

/* A case of answers to well-formed queries, on the shared catalog. */
static TCase *answers_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, NULL);
	return tc;
}

Suite *dns_suite(void);
Suite *dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = answers_case(s, "records");
	tcase_add_test(tc, dig_a_with_edns_cookie);
	tcase_add_test(tc, dig_a_no_edns);
	tcase_add_test(tc, dig_upper_case_echoed);
	tcase_add_test(tc, dig_aaaa);
	tcase_add_test(tc, aaaa_without_fake6_is_nodata);
	tcase_add_test(tc, other_type_is_nodata);
	tcase_add_test(tc, any_gets_addresses);
	tcase_add_test(tc, dig_srv);
	tcase_add_test(tc, srv_unknown_port_and_udp);
	tcase_add_test(tc, dig_ptr);
	tc = answers_case(s, "pass-through");
	tcase_add_test(tc, no_fake_ip_passes);
	tcase_add_test(tc, outside_passes_untouched);
	tc = answers_case(s, "clients");
	tcase_add_test(tc, ipv6_transport);
	tcase_add_test(tc, getent_glibc_search_list);
	tcase_add_test(tc, nslookup_and_musl);
	tcase_add_test(tc, short_names_when_enabled);
	tc = answers_case(s, "options");
	tcase_add_test(tc, ttl_and_edns_size_configurable);
	tcase_add_test(tc, nxdomain_mode_and_empty_nonterminals);

	tc = em_test_tcase(s, "hostile");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, truncated_at_every_byte);
	tcase_add_test(tc, counts_and_flags);
	tcase_add_test(tc, names_loops_and_labels);
	tcase_add_test(tc, edns_variants);
	tcase_add_test(tc, ip_layer_oddities);
	tcase_add_test(tc, answer_must_fit);
	tcase_add_test(tc, mutations_never_answer_wrongly);
	tcase_add_test(tc, reason_names);
	tc = answers_case(s, "question type");
	tcase_add_test(tc, qtype_reported);

	tc = em_test_tcase(s, "external");
	tcase_add_checked_fixture(tc, ext_setup, NULL);
	tcase_add_test(tc, external_cname_and_records);
	tcase_add_test(tc, external_cname_with_edns);
	tcase_add_test(tc, external_target_unknown_passes);
	tcase_add_test(tc, external_other_types_and_nxdomain);
	tcase_add_test(tc, external_to_cluster_service);
	tcase_add_test(tc, external_resolver_reply_parse);
	tcase_add_test(tc, external_cache_ttl);

	tcase_add_test(em_test_tcase(s, "local-addresses"), local_addresses);
	tcase_add_test(em_test_tcase(s, "stats-line"), stats_line);
	tcase_add_test(em_test_tcase(s, "config-defaults"), config_defaults);
	return s;
}
