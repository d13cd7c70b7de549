/* message.c — the DNS layer of the rewriter: parse one query, classify its
 * name against the cluster domain, and build the response in place.
 *
 * The question is left byte for byte where the client wrote it (case
 * preserved, RFC 1035 4.1.1 lets a response echo it) and every record we add
 * points back into it with a compression pointer. Records are built in a
 * scratch buffer first so that a PASS leaves the caller's bytes untouched. */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HDR_LEN 12
#define MAX_LABELS 128
#define MAX_NAME 255
#define MAX_RESPONSE 4096

#define F_QR 0x8000
#define F_OPCODE 0x7800
#define F_AA 0x0400
#define F_TC 0x0200
#define F_RD 0x0100
#define F_RA 0x0080
#define F_CD 0x0010
#define F_RCODE 0x000f

#define T_A 1
#define T_CNAME 5
#define T_SOA 6
#define T_PTR 12
#define T_TXT 16
#define T_AAAA 28
#define T_SRV 33
#define T_OPT 41
#define T_HTTPS 65
#define T_ANY 255
#define C_IN 1
#define RCODE_NXDOMAIN 3

/* The question's name as offsets of its labels inside the message. */
struct qname {
	uint16_t off[MAX_LABELS];	/* offset of each length byte */
	unsigned n;
};

struct query {
	struct qname q;
	size_t qend;			/* first byte after QTYPE/QCLASS */
	uint16_t qtype;
	bool edns;
	bool dnssec_ok;			/* the query's DO bit */
	uint16_t client_size;		/* the client's EDNS UDP size */
};

/* A response being written: the records after the question. */
struct out {
	uint8_t buf[MAX_RESPONSE];
	size_t base;			/* message offset of buf[0] (== qend) */
	size_t pos, max;		/* max: limit for base + pos */
	bool overflow;
	uint16_t an, ns, ar;
};

static const char *const reason_names[EM_DNS_REASON_MAX] = {
	[EM_DNS_ANSWERED] = "answered",
	[EM_DNS_PASS_NOT_IP] = "not_ip",
	[EM_DNS_PASS_IP_OPTIONS] = "ip_options",
	[EM_DNS_PASS_FRAGMENT] = "fragment",
	[EM_DNS_PASS_IP_LENGTH] = "ip_length",
	[EM_DNS_PASS_NOT_UDP] = "not_udp",
	[EM_DNS_PASS_NOT_PORT53] = "not_port53",
	[EM_DNS_PASS_UDP_LENGTH] = "udp_length",
	[EM_DNS_PASS_CHECKSUM] = "checksum",
	[EM_DNS_PASS_ADDRESS] = "address",
	[EM_DNS_PASS_HEADER] = "header",
	[EM_DNS_PASS_QDCOUNT] = "qdcount",
	[EM_DNS_PASS_NAME] = "name",
	[EM_DNS_PASS_QCLASS] = "qclass",
	[EM_DNS_PASS_ADDITIONAL] = "additional",
	[EM_DNS_PASS_EDNS_VERSION] = "edns_version",
	[EM_DNS_PASS_TRAILING] = "trailing",
	[EM_DNS_PASS_OUTSIDE] = "outside",
	[EM_DNS_PASS_UNKNOWN] = "unknown",
	[EM_DNS_PASS_TOO_BIG] = "too_big",
	[EM_DNS_PASS_NO_FAKE_IP] = "no_fake_ip",
	[EM_DNS_PASS_EXTERNAL] = "external",
};

const char *em_dns_reason_name(enum em_dns_reason reason)
{
	if ((unsigned)reason >= EM_DNS_REASON_MAX)
		return "invalid";
	return reason_names[reason];
}

static const char *const qtype_names[EM_DNS_QTYPE_MAX] = {
	[EM_DNS_QTYPE_A] = "A",
	[EM_DNS_QTYPE_AAAA] = "AAAA",
	[EM_DNS_QTYPE_SRV] = "SRV",
	[EM_DNS_QTYPE_PTR] = "PTR",
	[EM_DNS_QTYPE_TXT] = "TXT",
	[EM_DNS_QTYPE_HTTPS] = "HTTPS",
	[EM_DNS_QTYPE_ANY] = "ANY",
	[EM_DNS_QTYPE_OTHER] = "other",
};

enum em_dns_qtype em_dns_qtype_of(uint16_t qtype)
{
	switch (qtype) {
	case T_A: return EM_DNS_QTYPE_A;
	case T_AAAA: return EM_DNS_QTYPE_AAAA;
	case T_SRV: return EM_DNS_QTYPE_SRV;
	case T_PTR: return EM_DNS_QTYPE_PTR;
	case T_TXT: return EM_DNS_QTYPE_TXT;
	case T_HTTPS: return EM_DNS_QTYPE_HTTPS;
	case T_ANY: return EM_DNS_QTYPE_ANY;
	default: return EM_DNS_QTYPE_OTHER;
	}
}

const char *em_dns_qtype_name(enum em_dns_qtype group)
{
	if ((unsigned)group >= EM_DNS_QTYPE_MAX)
		return "invalid";
	return qtype_names[group];
}

void em_dns_opts_defaults(struct em_dns_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->ttl = EM_DNS_DEFAULT_TTL;
	opts->edns_size = EM_DNS_DEFAULT_EDNS_SIZE;
	opts->verify_checksum = true;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* ---- parsing ---------------------------------------------------------- */

/* Reads an uncompressed name at *off. Compression in the question is legal
 * but no stub resolver sends it (there is nothing earlier to point to), so it
 * is treated as odd and passed; that also rules out pointer loops. */
static int parse_qname(const uint8_t *msg, size_t len, size_t *off, struct qname *q)
{
	size_t p = *off, total = 1;

	q->n = 0;
	for (;;) {
		if (p >= len)
			return -1;
		uint8_t l = msg[p];
		if (l == 0)
			break;
		if (l > 63 || q->n == MAX_LABELS)	/* pointers and 0x40/0x80 types */
			return -1;
		total += 1u + l;
		if (total > MAX_NAME || p + 1 + l > len)
			return -1;
		q->off[q->n++] = (uint16_t)p;
		p += 1u + l;
	}
	*off = p + 1;
	return 0;
}

/* The single additional record a stub may send: an EDNS OPT at the root. */
static enum em_dns_reason parse_opt(const uint8_t *msg, size_t len, size_t p, struct query *qu)
{
	if (p + 11 > len || msg[p] != 0 || get16(msg + p + 1) != T_OPT)
		return EM_DNS_PASS_ADDITIONAL;
	uint16_t size = get16(msg + p + 3);
	uint8_t version = msg[p + 6];
	uint16_t rdlen = get16(msg + p + 9);
	size_t o = p + 11, end = o + rdlen;

	if (end > len)
		return EM_DNS_PASS_ADDITIONAL;
	while (o < end) {	/* options must tile rdata exactly */
		if (o + 4 > end || o + 4 + get16(msg + o + 2) > end)
			return EM_DNS_PASS_ADDITIONAL;
		o += 4u + get16(msg + o + 2);
	}
	if (end != len)
		return EM_DNS_PASS_TRAILING;
	if (version != 0)
		return EM_DNS_PASS_EDNS_VERSION;
	qu->edns = true;
	qu->dnssec_ok = (msg[p + 7] & 0x80) != 0;
	qu->client_size = size < 512 ? 512 : size;	/* RFC 6891 6.2.3 */
	return EM_DNS_VALID;
}

/* EM_DNS_VALID with *qu filled, or why to pass; qu->qtype stays 0 until
 * the question is read. */
static enum em_dns_reason parse_query(const uint8_t *msg, size_t len, struct query *qu)
{
	qu->qtype = 0;
	if (len < HDR_LEN)
		return EM_DNS_PASS_HEADER;
	uint16_t flags = get16(msg + 2);
	if (flags & (F_QR | F_OPCODE | F_TC | F_RCODE))
		return EM_DNS_PASS_HEADER;
	if (get16(msg + 4) != 1)
		return EM_DNS_PASS_QDCOUNT;
	if (get16(msg + 6) != 0 || get16(msg + 8) != 0 || get16(msg + 10) > 1)
		return EM_DNS_PASS_HEADER;

	size_t p = HDR_LEN;
	if (parse_qname(msg, len, &p, &qu->q) < 0)
		return EM_DNS_PASS_NAME;
	if (p + 4 > len)
		return EM_DNS_PASS_NAME;
	qu->qtype = get16(msg + p);
	uint16_t qclass = get16(msg + p + 2);
	qu->qend = p + 4;
	/* Meta types (TKEY, TSIG, IXFR, AXFR, MAILB, ...) except ANY, and OPT as
	 * a question, belong to the real server. */
	if (qclass != C_IN || qu->qtype == T_OPT || qu->qtype == 0 ||
	    (qu->qtype >= 128 && qu->qtype < 255))
		return EM_DNS_PASS_QCLASS;

	qu->edns = false;
	qu->client_size = 512;
	if (get16(msg + 10) == 1)
		return parse_opt(msg, len, qu->qend, qu);
	return qu->qend == len ? EM_DNS_VALID : EM_DNS_PASS_TRAILING;
}

/* ---- name classification ---------------------------------------------- */

static const char *lbl(const uint8_t *msg, const struct qname *q, unsigned i)
{
	return (const char *)msg + q->off[i] + 1;
}

static size_t lbl_len(const uint8_t *msg, const struct qname *q, unsigned i)
{
	return msg[q->off[i]];
}

static bool lbl_is(const uint8_t *msg, const struct qname *q, unsigned i, const char *s)
{
	size_t n = strlen(s);
	return lbl_len(msg, q, i) == n && strncasecmp(lbl(msg, q, i), s, n) == 0;
}

/* Number of labels of the cluster domain, or -1 if it is not the suffix of
 * the question (case-insensitive; the domain may carry a trailing dot). */
static int domain_suffix(const uint8_t *msg, const struct qname *q, const char *domain)
{
	const char *end = domain + strlen(domain);
	unsigned i = q->n;
	int k = 0;

	if (end > domain && end[-1] == '.')
		end--;
	while (end > domain) {
		const char *start = end;
		while (start > domain && start[-1] != '.')
			start--;
		size_t n = (size_t)(end - start);
		if (i == 0 || n == 0 || lbl_len(msg, q, i - 1) != n ||
		    strncasecmp(lbl(msg, q, i - 1), start, n) != 0)
			return -1;
		i--;
		k++;
		end = start > domain ? start - 1 : start;
	}
	return k;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* a.b.c.d.in-addr.arpa / 32 nibbles.ip6.arpa -> address; 0 or -1. */
static int parse_reverse(const uint8_t *msg, const struct qname *q, int *family, uint8_t addr[16])
{
	if (q->n == 6 && lbl_is(msg, q, 4, "in-addr") && lbl_is(msg, q, 5, "arpa")) {
		for (unsigned i = 0; i < 4; i++) {
			const char *s = lbl(msg, q, i);
			size_t n = lbl_len(msg, q, i);
			unsigned v = 0;
			if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
				return -1;
			for (size_t j = 0; j < n; j++) {
				if (s[j] < '0' || s[j] > '9')
					return -1;
				v = v * 10 + (unsigned)(s[j] - '0');
			}
			if (v > 255)
				return -1;
			addr[3 - i] = (uint8_t)v;
		}
		*family = AF_INET;
		return 0;
	}
	if (q->n == 34 && lbl_is(msg, q, 32, "ip6") && lbl_is(msg, q, 33, "arpa")) {
		memset(addr, 0, 16);
		for (unsigned i = 0; i < 32; i++) {
			int v = lbl_len(msg, q, i) == 1 ? hexval(lbl(msg, q, i)[0]) : -1;
			if (v < 0)
				return -1;
			unsigned nib = 31 - i;	/* first label is the lowest nibble */
			addr[nib / 2] |= (uint8_t)(nib % 2 ? v : v << 4);
		}
		*family = AF_INET6;
		return 0;
	}
	return -1;
}

/* ---- writing ---------------------------------------------------------- */

static uint8_t *reserve(struct out *o, size_t n)
{
	if (o->overflow || o->base + o->pos + n > o->max) {
		o->overflow = true;
		return NULL;
	}
	uint8_t *p = o->buf + o->pos;
	o->pos += n;
	return p;
}

static void w16(struct out *o, uint16_t v)
{
	uint8_t *p = reserve(o, 2);
	if (p)
		put16(p, v);
}

static void w32(struct out *o, uint32_t v)
{
	w16(o, (uint16_t)(v >> 16));
	w16(o, (uint16_t)v);
}

static void wbytes(struct out *o, const void *data, size_t n)
{
	uint8_t *p = reserve(o, n);
	if (p)
		memcpy(p, data, n);
}

static void wptr(struct out *o, size_t msg_off)
{
	w16(o, (uint16_t)(0xc000 | msg_off));
}

/* Writes the labels of a dotted string (no final root label). */
static void wlabels(struct out *o, const char *s)
{
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (n == 0 || n > 63) {		/* bad data from the catalog */
			o->overflow = true;
			return;
		}
		uint8_t l = (uint8_t)n;
		wbytes(o, &l, 1);
		wbytes(o, s, n);
		s += n + (dot ? 1 : 0);
	}
}

static size_t msg_pos(const struct out *o) { return o->base + o->pos; }

/* Record header; returns the position of RDLENGTH to patch, or SIZE_MAX. */
static size_t rr_begin(struct out *o, uint16_t type, uint32_t ttl)
{
	w16(o, type);
	w16(o, C_IN);
	w32(o, ttl);
	size_t at = o->pos;
	w16(o, 0);
	return o->overflow ? SIZE_MAX : at;
}

static void rr_end(struct out *o, size_t at)
{
	if (!o->overflow)
		put16(o->buf + at, (uint16_t)(o->pos - at - 2));
}

/* The service's FQDN as a name; returns its message offset. The pieces are
 * written from the service's fields so that test catalogs need no fqdn. */
static size_t write_fqdn(struct out *o, const struct em_service *svc, const char *domain)
{
	size_t at = msg_pos(o);
	size_t start = o->pos;

	wlabels(o, svc->name);
	wlabels(o, svc->ns);
	wlabels(o, "svc");
	wlabels(o, domain);
	wbytes(o, "", 1);
	if (!o->overflow && o->pos - start > MAX_NAME)
		o->overflow = true;
	return at;
}

/* SOA for negative answers (RFC 2308): owner is the cluster domain, at
 * dom_off in the question when the question is inside the domain. */
static void write_soa(struct out *o, const struct em_dns_opts *opts, const char *domain,
		      size_t dom_off)
{
	if (dom_off == 0) {
		dom_off = msg_pos(o);
		wlabels(o, domain);
		wbytes(o, "", 1);
	} else {
		wptr(o, dom_off);
	}
	size_t at = rr_begin(o, T_SOA, opts->ttl);
	wbytes(o, "\2ns\3dns", 7);
	wptr(o, dom_off);
	wbytes(o, "\12hostmaster", 11);
	wptr(o, dom_off);
	w32(o, 1);		/* serial: the data has no versions worth exposing */
	w32(o, 7200);		/* refresh */
	w32(o, 1800);		/* retry */
	w32(o, 86400);		/* expire */
	w32(o, opts->ttl);	/* negative caching TTL */
	rr_end(o, at);
	o->ns++;
}

/* DO is copied from the query (RFC 3225 3): it says the client can take
 * DNSSEC records, not that the answer is signed; AD stays clear, so a
 * validating client never takes our unsigned answer as secure. */
static void write_opt(struct out *o, const struct em_dns_opts *opts, bool dnssec_ok)
{
	wbytes(o, "", 1);
	w16(o, T_OPT);
	w16(o, opts->edns_size < 512 ? 512 : opts->edns_size);
	w32(o, dnssec_ok ? 0x8000 : 0);	/* ext rcode 0, version 0, DO */
	w16(o, 0);		/* no options: cookies are ignored (RFC 7873 5.2) */
	o->ar++;
}

enum kind {
	K_NONE,			/* pass */
	K_SVC,			/* <svc>.<ns>.svc.<domain> or a short form */
	K_SRV,			/* _<port>._<proto>.<svc>.<ns>.svc.<domain> */
	K_PTR,
	K_NXDOMAIN,
	K_NODATA_ONLY,		/* empty non-terminal under svc.<domain> */
	K_EXTERNAL,		/* an ExternalName service: CNAME (+ target's records) */
};

struct match {
	enum kind kind;
	const struct em_service *svc;
	const struct em_dns_target *target;	/* K_EXTERNAL, address queries */
	struct em_dns_target local;	/* ... when the target is a cluster service */
	size_t dom_off;		/* offset of the domain inside the question, or 0 */
	unsigned port_lbl;	/* K_SRV: label index of _<port> */
};

static int proto_from_label(const uint8_t *msg, const struct qname *q, unsigned i)
{
	if (lbl_is(msg, q, i, "_tcp"))
		return IPPROTO_TCP;
	if (lbl_is(msg, q, i, "_udp"))
		return IPPROTO_UDP;
	if (lbl_is(msg, q, i, "_sctp"))
		return IPPROTO_SCTP;
	return -1;
}

static bool srv_port_matches(const uint8_t *msg, const struct qname *q, unsigned i,
			     const struct em_service_port *sp)
{
	size_t n = lbl_len(msg, q, i);
	const char *name = sp->name ? sp->name : "";

	return name[0] != '\0' && n - 1 == strlen(name) && proto_from_label(msg, q, i + 1) == sp->ipproto &&
	       strncasecmp(lbl(msg, q, i) + 1, name, n - 1) == 0;
}

static void classify(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
		     const uint8_t *msg, const struct query *qu, struct match *m)
{
	const struct qname *q = &qu->q;
	int k = cat->domain ? domain_suffix(msg, q, cat->domain) : -1;

	m->kind = K_NONE;
	m->svc = NULL;
	m->dom_off = 0;
	m->port_lbl = 0;
	if (k > 0) {
		unsigned r = q->n - (unsigned)k;
		m->dom_off = r < q->n ? q->off[r] : 0;
		if (r == 0 || !lbl_is(msg, q, r - 1, "svc"))
			return;		/* pod records and the like: not ours */
		if (r == 3) {
			m->svc = cat->find_name(cat->ctx, lbl(msg, q, 1), lbl_len(msg, q, 1),
						lbl(msg, q, 0), lbl_len(msg, q, 0));
			m->kind = m->svc ? K_SVC : K_NXDOMAIN;
			return;
		}
		if (r == 5 && lbl(msg, q, 0)[0] == '_' && lbl(msg, q, 1)[0] == '_' &&
		    lbl_len(msg, q, 0) > 1) {
			m->svc = cat->find_name(cat->ctx, lbl(msg, q, 3), lbl_len(msg, q, 3),
						lbl(msg, q, 2), lbl_len(msg, q, 2));
			m->kind = K_NXDOMAIN;
			for (size_t i = 0; m->svc && i < m->svc->n_ports; i++)
				if (srv_port_matches(msg, q, 0, &m->svc->ports[i]))
					m->kind = K_SRV;
			return;
		}
		/* svc.<domain>, <ns>.svc.<domain>, _<proto>.<svc>.<ns>.svc...:
		 * names that exist when anything below them does. */
		m->kind = r <= 2 || (r == 4 && lbl(msg, q, 0)[0] == '_') ? K_NODATA_ONLY : K_NXDOMAIN;
		return;
	}

	uint8_t addr[16];
	int family;
	if (parse_reverse(msg, q, &family, addr) == 0) {
		m->svc = cat->find_addr(cat->ctx, family, addr);
		if (m->svc && qu->qtype == T_PTR)
			m->kind = K_PTR;
		return;
	}

	if (opts->short_names && (q->n == 2 || (q->n == 3 && lbl_is(msg, q, 2, "svc")))) {
		m->svc = cat->find_name(cat->ctx, lbl(msg, q, 1), lbl_len(msg, q, 1),
					lbl(msg, q, 0), lbl_len(msg, q, 0));
		if (m->svc)
			m->kind = K_SVC;
	}
}

/* An ExternalName whose target is "<svc>.<ns>.svc.<domain>" of a known
 * (not ExternalName) service: its fake IP, without asking anyone (the
 * node's resolver may not know cluster names). false: not such a target. */
static bool cluster_target(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
			   const char *target, uint16_t qtype, struct em_dns_target *out)
{
	size_t dl = strlen(cat->domain), tl = strlen(target);

	if (dl && cat->domain[dl - 1] == '.')
		dl--;
	if (tl <= dl + 5 || strncasecmp(target + tl - dl, cat->domain, dl) != 0 ||
	    strncasecmp(target + tl - dl - 5, ".svc.", 5) != 0)
		return false;
	size_t head = tl - dl - 5;
	const char *dot = memchr(target, '.', head);
	if (!dot || dot == target || memchr(dot + 1, '.', head - (size_t)(dot + 1 - target)) ||
	    (size_t)(dot + 1 - target) == head)
		return false;
	const struct em_service *svc = cat->find_name(cat->ctx, dot + 1, head - (size_t)(dot + 1 - target),
						      target, (size_t)(dot - target));
	if (!svc || svc->external_name)
		return false;
	memset(out, 0, sizeof(*out));
	out->qtype = qtype;
	out->ttl = opts->ttl;
	if (qtype == T_A && svc->has_fake4)
		memcpy(out->addr[out->n++], &svc->fake4, 4);
	if (qtype == T_AAAA && svc->has_fake6)
		memcpy(out->addr[out->n++], &svc->fake6, 16);
	return true;
}

/* ExternalName, as CoreDNS answers it: a CNAME to the target, then the
 * target's records of the asked type (owner: the CNAME's target, by
 * pointer) with the resolver's TTL and rcode (NXDOMAIN after a CNAME is
 * about the target, RFC 6604). Other types get the CNAME alone. */
static int write_external(struct out *o, const struct em_dns_opts *opts, const struct match *m)
{
	const struct em_dns_target *t = m->target;

	wptr(o, HDR_LEN);
	size_t at = rr_begin(o, T_CNAME, opts->ttl);
	size_t name_at = msg_pos(o);
	size_t start = o->pos;
	wlabels(o, m->svc->external_name);
	wbytes(o, "", 1);
	if (!o->overflow && o->pos - start > MAX_NAME)
		o->overflow = true;
	rr_end(o, at);
	o->an++;
	if (!t)
		return 0;
	for (unsigned i = 0; i < t->n && i < EM_DNS_TARGET_MAX; i++) {
		wptr(o, name_at);
		at = rr_begin(o, t->qtype, t->ttl);
		wbytes(o, t->addr[i], t->qtype == T_AAAA ? 16 : 4);
		rr_end(o, at);
		o->an++;
	}
	return t->rcode;
}

/* Fills o with the answer, authority and additional sections; returns the
 * rcode, or -1 to pass. */
static int build(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
		 const uint8_t *msg, const struct query *qu, const struct match *m,
		 struct out *o, bool with_glue)
{
	uint16_t t = qu->qtype;
	int rcode = 0;

	switch (m->kind) {
	case K_NONE:
		return -1;
	case K_NXDOMAIN:
	case K_NODATA_ONLY:
		if (!opts->nxdomain_unknown)
			return -1;
		rcode = m->kind == K_NXDOMAIN ? RCODE_NXDOMAIN : 0;
		write_soa(o, opts, cat->domain, m->dom_off);
		break;
	case K_SVC:
		/* ANY gets the address records (RFC 8482 allows a subset) */
		if ((t == T_A || t == T_ANY) && m->svc->has_fake4) {
			wptr(o, HDR_LEN);
			size_t at = rr_begin(o, T_A, opts->ttl);
			wbytes(o, &m->svc->fake4, 4);
			rr_end(o, at);
			o->an++;
		}
		if ((t == T_AAAA || t == T_ANY) && m->svc->has_fake6) {
			wptr(o, HDR_LEN);
			size_t at = rr_begin(o, T_AAAA, opts->ttl);
			wbytes(o, &m->svc->fake6, 16);
			rr_end(o, at);
			o->an++;
		}
		if (o->an == 0)
			write_soa(o, opts, cat->domain, m->dom_off);
		break;
	case K_SRV: {
		if (t != T_SRV) {
			write_soa(o, opts, cat->domain, m->dom_off);
			break;
		}
		unsigned n = 0;
		for (size_t i = 0; i < m->svc->n_ports; i++)
			n += srv_port_matches(msg, &qu->q, m->port_lbl, &m->svc->ports[i]);
		size_t target = 0;
		for (size_t i = 0; i < m->svc->n_ports; i++) {
			const struct em_service_port *sp = &m->svc->ports[i];
			if (!srv_port_matches(msg, &qu->q, m->port_lbl, sp))
				continue;
			wptr(o, HDR_LEN);
			size_t at = rr_begin(o, T_SRV, opts->ttl);
			w16(o, 0);			/* priority */
			w16(o, (uint16_t)(100 / n));	/* weight, as CoreDNS */
			w16(o, sp->port);
			if (target == 0)
				target = write_fqdn(o, m->svc, cat->domain);
			else
				wptr(o, target);
			rr_end(o, at);
			o->an++;
		}
		if (with_glue && target && m->svc->has_fake4) {
			wptr(o, target);
			size_t at = rr_begin(o, T_A, opts->ttl);
			wbytes(o, &m->svc->fake4, 4);
			rr_end(o, at);
			o->ar++;
		}
		if (with_glue && target && m->svc->has_fake6) {
			wptr(o, target);
			size_t at = rr_begin(o, T_AAAA, opts->ttl);
			wbytes(o, &m->svc->fake6, 16);
			rr_end(o, at);
			o->ar++;
		}
		break;
	}
	case K_PTR: {
		wptr(o, HDR_LEN);
		size_t at = rr_begin(o, T_PTR, opts->ttl);
		write_fqdn(o, m->svc, cat->domain);
		rr_end(o, at);
		o->an++;
		break;
	}
	case K_EXTERNAL:
		rcode = write_external(o, opts, m);
		break;
	}
	if (qu->edns)
		write_opt(o, opts, qu->dnssec_ok);
	return rcode;
}

enum em_dns_reason em_dns_answer_message(const struct em_dns_opts *opts,
					 const struct em_dns_catalog *cat,
					 uint8_t *msg, size_t len, size_t cap, size_t *out_len,
					 uint16_t *qtype)
{
	struct query qu;
	struct match m;
	struct out o;
	enum em_dns_reason r = parse_query(msg, len, &qu);

	*qtype = qu.qtype;
	if (r != EM_DNS_VALID)
		return r;
	classify(opts, cat, msg, &qu, &m);
	if (m.kind == K_NONE)
		return EM_DNS_PASS_OUTSIDE;
	m.target = NULL;
	if (m.kind == K_SVC && m.svc->external_name) {
		m.kind = K_EXTERNAL;
		if (qu.qtype == T_A || qu.qtype == T_AAAA || qu.qtype == T_ANY) {
			/* ANY: the IPv4 records (RFC 8482 allows a subset) */
			uint16_t t = qu.qtype == T_AAAA ? T_AAAA : T_A;
			if (cluster_target(opts, cat, m.svc->external_name, t, &m.local))
				m.target = &m.local;
			else if (cat->find_target)
				m.target = cat->find_target(cat->target_ctx, m.svc->external_name, t);
			if (!m.target)
				return EM_DNS_PASS_EXTERNAL;
		}
	}
	if ((m.kind == K_NXDOMAIN || m.kind == K_NODATA_ONLY) && !opts->nxdomain_unknown)
		return EM_DNS_PASS_UNKNOWN;
	/* A service without a fake IPv4 (pool exhausted): never claim it has
	 * no address; the real resolver may know its ClusterIP. */
	if (m.kind == K_SVC && !m.svc->has_fake4 && (qu.qtype == T_A || qu.qtype == T_ANY))
		return EM_DNS_PASS_NO_FAKE_IP;

	/* Response size limit: 512 without EDNS, else the smaller of the
	 * client's size and ours (RFC 6891 6.2.5), and never beyond cap. */
	size_t limit = 512;
	if (qu.edns) {
		size_t ours = opts->edns_size < 512 ? 512 : opts->edns_size;
		limit = qu.client_size < ours ? qu.client_size : ours;
	}
	if (limit > cap)
		limit = cap;
	if (limit > MAX_RESPONSE)
		limit = MAX_RESPONSE;

	int rcode = -1;
	for (int glue = 1; glue >= 0; glue--) {	/* drop SRV glue first if too big */
		o.base = qu.qend;
		o.pos = 0;
		o.max = limit;
		o.overflow = false;
		o.an = o.ns = o.ar = 0;
		rcode = build(opts, cat, msg, &qu, &m, &o, glue);
		if (rcode < 0)
			return EM_DNS_PASS_UNKNOWN;
		if (!o.overflow)
			break;
	}
	/* Too big even without glue: pass rather than set TC, because the TCP
	 * retry would go to the real resolver, which does not know the name. */
	if (o.overflow)
		return EM_DNS_PASS_TOO_BIG;

	uint16_t qflags = get16(msg + 2);
	put16(msg + 2, (uint16_t)(F_QR | F_AA | F_RA | (qflags & (F_RD | F_CD)) | rcode));
	put16(msg + 6, o.an);
	put16(msg + 8, o.ns);
	put16(msg + 10, o.ar);
	memcpy(msg + qu.qend, o.buf, o.pos);
	*out_len = qu.qend + o.pos;
	return EM_DNS_ANSWERED;
}
