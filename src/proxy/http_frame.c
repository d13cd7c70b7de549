/* http_frame.c — HTTP/1.x head parsing with the strictness http-parser
 * lacks, header and cookie lookup, and the L4-fallback sniffer.
 *
 * A head is checked line by line here (every line ends in CRLF, no CR
 * elsewhere, tokens and field values by the RFC 9110/9112 grammar), its
 * framing decided from our own reading of Content-Length /
 * Transfer-Encoding / Connection. A request head is then fed to http-parser
 * as a second reader that must accept it too and that supplies the method
 * enum. A response head is not: the status line and fields are all this
 * scanner needs, and a second read cost 4-5 % of the forwarder's CPU per
 * keep-alive request (perf, bench keepalive_bound). That http-parser
 * accepts every response head this scanner accepts is an invariant of
 * fuzz-http instead.
 * Parsing restarts from the buffer start on every call: the caller keeps no
 * parse state between reads, and a head is at most a few KiB. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "proxy/http_frame.h"

/* RFC 9110 §5.6.2 tchar */
static const uint8_t tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
	['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
	['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_tchar(char c)
{
	return tchar[(uint8_t)c];
}

/* field-vchar / SP / HTAB / obs-text (RFC 9110 §5.5): no CTL but HTAB. */
static bool is_field_char(char c)
{
	uint8_t u = (uint8_t)c;
	return u == '\t' || (u >= 0x20 && u != 0x7f);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static bool span_is(const char *buf, struct em_http_span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && strncasecmp(buf + s.off, lit, n) == 0;
}

static struct em_http_span mkspan(size_t off, size_t len)
{
	return (struct em_http_span){ .off = (uint32_t)off, .len = (uint32_t)len };
}

void em_http_limits_default(struct em_http_limits *lim)
{
	lim->max_head = 8192;
	lim->max_line = 4096;
	lim->max_headers = 100;
}

/* ---- list parsing (RFC 9110 §5.6.1) ---------------------------------- */

/* Next element of a comma list in v[*i..n): skips empty elements and OWS;
 * returns false at the end. The element is [*s, *e) trimmed of OWS. */
static bool list_next(const char *v, size_t n, size_t *i, size_t *s, size_t *e)
{
	while (*i < n) {
		while (*i < n && (is_ows(v[*i]) || v[*i] == ','))
			(*i)++;
		if (*i >= n)
			return false;
		*s = *i;
		while (*i < n && v[*i] != ',')
			(*i)++;
		*e = *i;
		while (*e > *s && is_ows(v[*e - 1]))
			(*e)--;
		return true;
	}
	return false;
}

static bool all_tchar(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar(p[i]))
			return false;
	return true;
}

/* ---- the head parser ------------------------------------------------- */

#define CONN_NAMES_MAX 16

/* What the header lines said about framing and the connection. */
struct scan {
	int bad;		/* status to answer with (400/501), 0 if none yet */
	unsigned ncl;		/* Content-Length fields seen */
	uint64_t cl;
	unsigned nte;		/* Transfer-Encoding fields seen */
	bool te_chunked_last;	/* the last coding seen is chunked */
	bool te_chunked_early;	/* chunked followed by another coding */
	bool te_unknown;
	unsigned nhost;
	bool conn_close, conn_keepalive, conn_upgrade;
	bool has_upgrade, expect_continue;
	unsigned nconn;		/* Connection-named headers */
	struct em_http_span conn[CONN_NAMES_MAX];
};

static int fail(struct scan *sc, int status)
{
	if (!sc->bad)
		sc->bad = status;
	return -1;
}

static void scan_content_length(struct scan *sc, const char *v, size_t n)
{
	uint64_t x = 0;

	/* 1*DIGIT only: "5, 5", "+5", " 5 5" are all refused (§6.3 item 5). */
	if (n == 0 || n > 18)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			goto bad;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	/* RFC 9110 §8.6 allows merging identical duplicates; we refuse every
	 * duplicate, as http-parser does. */
	if (sc->ncl++)
		goto bad;
	sc->cl = x;
	return;
bad:
	fail(sc, 400);
}

static void scan_transfer_encoding(struct scan *sc, const char *v, size_t n)
{
	static const char *const known[] = { "gzip", "x-gzip", "deflate", "compress",
					     "x-compress", NULL };
	size_t i = 0, s, e;
	bool any = false;

	sc->nte++;
	while (list_next(v, n, &i, &s, &e)) {
		size_t t = s;
		while (t < e && is_tchar(v[t]))
			t++;
		/* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
		if (t == s || (t < e && !is_ows(v[t]) && v[t] != ';')) {
			fail(sc, 400);
			return;
		}
		any = true;
		if (sc->te_chunked_last)
			sc->te_chunked_early = true;
		if (t - s == 7 && strncasecmp(v + s, "chunked", 7) == 0) {
			if (t != e)	/* chunked takes no parameters */
				fail(sc, 400);
			sc->te_chunked_last = true;
			continue;
		}
		sc->te_chunked_last = false;
		bool ok = false;
		for (size_t k = 0; known[k]; k++)
			if (strlen(known[k]) == t - s && strncasecmp(v + s, known[k], t - s) == 0)
				ok = true;
		if (!ok)
			sc->te_unknown = true;
	}
	if (!any)
		fail(sc, 400);
}

static void scan_connection(struct scan *sc, const char *buf, size_t off, size_t n)
{
	const char *v = buf + off;
	size_t i = 0, s, e;

	while (list_next(v, n, &i, &s, &e)) {
		if (!all_tchar(v + s, e - s)) {
			fail(sc, 400);
			return;
		}
		struct em_http_span t = mkspan(off + s, e - s);
		if (span_is(buf, t, "close"))
			sc->conn_close = true;
		else if (span_is(buf, t, "keep-alive"))
			sc->conn_keepalive = true;
		else if (span_is(buf, t, "upgrade"))
			sc->conn_upgrade = true;
		else if (sc->nconn < CONN_NAMES_MAX)
			sc->conn[sc->nconn++] = t;
		else
			fail(sc, 400);	/* more names than we can drop */
	}
}

/* Host = uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2): reg-name
 * characters, IP literals in brackets, percent-encoding. It may be empty. */
static bool valid_host(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!c || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("-._~!$&'()*+,;=:[]%", c)))
			return false;
	}
	return true;
}

/* Classify one header: set its flags and feed what framing needs. */
static void scan_header(struct scan *sc, const char *buf, struct em_http_header *hd)
{
	const char *v = buf + hd->value.off;
	size_t n = hd->value.len;
	struct em_http_span nm = hd->name;

	switch (nm.len) {
	case 2:
		if (span_is(buf, nm, "te"))
			hd->flags |= EM_HTTP_HDR_HOP;
		break;
	case 4:
		if (span_is(buf, nm, "host")) {
			sc->nhost++;
			if (!valid_host(v, n))
				fail(sc, 400);
		}
		break;
	case 6:
		if (span_is(buf, nm, "expect") && n == 12 && strncasecmp(v, "100-continue", 12) == 0)
			sc->expect_continue = true;
		break;
	case 7:
		if (span_is(buf, nm, "upgrade")) {
			hd->flags |= EM_HTTP_HDR_HOP | EM_HTTP_HDR_UPGRADE;
			sc->has_upgrade = true;
		} else if (span_is(buf, nm, "trailer")) {
			hd->flags |= EM_HTTP_HDR_HOP;
		}
		break;
	case 10:
		if (span_is(buf, nm, "connection")) {
			hd->flags |= EM_HTTP_HDR_HOP;
			scan_connection(sc, buf, hd->value.off, n);
		} else if (span_is(buf, nm, "keep-alive")) {
			hd->flags |= EM_HTTP_HDR_HOP;
		}
		break;
	case 14:
		if (span_is(buf, nm, "content-length")) {
			hd->flags |= EM_HTTP_HDR_HOP;
			scan_content_length(sc, v, n);
		}
		break;
	case 15:
		if (span_is(buf, nm, "x-forwarded-for"))
			hd->flags |= EM_HTTP_HDR_HOP | EM_HTTP_HDR_XFF;
		break;
	case 16:
		if (span_is(buf, nm, "proxy-connection"))
			hd->flags |= EM_HTTP_HDR_HOP;
		break;
	case 17:
		if (span_is(buf, nm, "transfer-encoding")) {
			hd->flags |= EM_HTTP_HDR_HOP | EM_HTTP_HDR_TE;
			scan_transfer_encoding(sc, v, n);
		} else if (span_is(buf, nm, "x-forwarded-proto")) {
			hd->flags |= EM_HTTP_HDR_HOP;
		}
		break;
	}
}

/* "HTTP/" DIGIT "." DIGIT at p[0..n): 0 and *minor, -400 not a version,
 * -505 a version other than 1.0 / 1.1. */
static int parse_version(const char *p, size_t n, uint8_t *minor)
{
	if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
	    p[7] < '0' || p[7] > '9')
		return -400;
	if (p[5] != '1' || p[7] > '1')
		return -505;
	*minor = (uint8_t)(p[7] - '0');
	return 0;
}

/* method SP request-target SP HTTP-version (RFC 9112 §3), line without CRLF */
static int parse_request_line(const char *buf, size_t off, size_t n, struct em_http_head *h)
{
	const char *p = buf + off;
	size_t i = 0, t0;

	while (i < n && is_tchar(p[i]))
		i++;
	if (i == 0 || i >= n || p[i] != ' ')
		return -400;
	h->method_s = mkspan(off, i);
	t0 = ++i;
	/* absolute-form, origin-form, authority-form or "*": visible ASCII */
	while (i < n && (uint8_t)p[i] > 0x20 && (uint8_t)p[i] < 0x7f)
		i++;
	if (i == t0 || i >= n || p[i] != ' ')
		return -400;
	h->target = mkspan(off + t0, i - t0);
	i++;
	return parse_version(p + i, n - i, &h->minor);
}

/* HTTP-version SP 3DIGIT [SP reason-phrase] (RFC 9112 §4) */
static int parse_status_line(const char *buf, size_t off, size_t n, struct em_http_head *h)
{
	const char *p = buf + off;

	if (n < 12 || p[8] != ' ' || parse_version(p, 8, &h->minor) != 0)
		return -502;
	unsigned st = 0;
	for (int k = 9; k < 12; k++) {
		if (p[k] < '0' || p[k] > '9')
			return -502;
		st = st * 10 + (unsigned)(p[k] - '0');
	}
	if (st < 100 || st > 599)
		return -502;
	h->status = (uint16_t)st;
	if (n == 12) {		/* "HTTP/1.1 200" without SP: tolerated, empty reason */
		h->reason = mkspan(off + 12, 0);
		return 0;
	}
	if (p[12] != ' ')
		return -502;
	for (size_t k = 13; k < n; k++)
		if (!is_field_char(p[k]))
			return -502;
	h->reason = mkspan(off + 13, n - 13);
	return 0;
}

/* field-name ":" OWS field-value OWS (RFC 9112 §5), line without CRLF */
static int parse_field_line(const char *buf, size_t off, size_t n, struct em_http_header *hd)
{
	const char *p = buf + off;
	size_t i = 0;

	/* A leading SP/HTAB is obs-fold (§5.2) or whitespace before the first
	 * field (§2.2): both refused. Non-tchar before ':' (a space inside the
	 * name or before the colon, §5.1) as well. */
	while (i < n && is_tchar(p[i]))
		i++;
	if (i == 0 || i >= n || p[i] != ':')
		return -1;
	hd->name = mkspan(off, i);
	i++;
	while (i < n && is_ows(p[i]))
		i++;
	size_t vs = i, ve = n;
	for (size_t k = vs; k < n; k++)
		if (!is_field_char(p[k]))	/* NUL, CR, LF, other CTLs */
			return -1;
	while (ve > vs && is_ows(p[ve - 1]))
		ve--;
	hd->value = mkspan(off + vs, ve - vs);
	hd->flags = 0;
	return 0;
}

/* http-parser as the second reader of a request head: it must take the
 * whole head, and it names the method. */
struct hp_state {
	bool complete;
};

static int hp_headers_complete(http_parser *p)
{
	((struct hp_state *)p->data)->complete = true;
	return 2;	/* no body, no further message: stop right after the head */
}

static int hp_check_request(const char *buf, size_t head_len, struct em_http_head *h)
{
	http_parser_settings set;
	http_parser p;
	struct hp_state st = { .complete = false };

	http_parser_settings_init(&set);
	set.on_headers_complete = hp_headers_complete;
	http_parser_init(&p, HTTP_REQUEST);
	p.data = &st;
	size_t n = http_parser_execute(&p, &set, buf, head_len);
	enum http_errno err = HTTP_PARSER_ERRNO(&p);
	if (err == HPE_INVALID_METHOD)
		return -501;
	if (err == HPE_HEADER_OVERFLOW)
		return -431;
	if (err != HPE_OK || !st.complete || n != head_len || p.http_major != 1 ||
	    p.http_minor != h->minor)
		return -400;
	const char *m = http_method_str((enum http_method)p.method);
	if (strlen(m) != h->method_s.len || memcmp(m, buf + h->method_s.off, h->method_s.len))
		return -501;	/* a token http-parser only half-knows */
	h->method = (uint8_t)p.method;
	return 0;
}

/* Lines of the head, framing-relevant fields, limits. Returns the head
 * length, 0 for more, or the negated status. */
static int scan_head(const char *buf, size_t len, const struct em_http_limits *lim,
		     bool request, struct em_http_head *h, struct scan *sc)
{
	int bad = request ? -400 : -502, big = request ? -431 : -502;
	uint32_t maxh = lim->max_headers < EM_HTTP_HEADERS_MAX ? lim->max_headers
							       : EM_HTTP_HEADERS_MAX;
	size_t pos = 0;

	/* RFC 9112 §2.2: a server SHOULD ignore empty lines before the
	 * request-line (a client may send one after a POST body). */
	if (request)
		while (len - pos >= 2 && buf[pos] == '\r' && buf[pos + 1] == '\n')
			pos += 2;
	h->start = (uint32_t)pos;
	h->nheaders = 0;

	for (bool first = true;; first = false) {
		const char *lf = memchr(buf + pos, '\n', len - pos);
		size_t end = lf ? (size_t)(lf - buf) : len;
		/* CR only as the last byte before LF; no bare LF (§2.2) */
		const char *cr = memchr(buf + pos, '\r', end - pos);
		if (cr && (size_t)(cr - buf) + 1 < end)
			return bad;
		if (lf && (!cr || (size_t)(cr - buf) + 1 != end))
			return bad;
		if (!lf) {
			if (request && first && len - h->start > lim->max_line)
				return -414;
			if (len > lim->max_head)
				return big;
			return 0;
		}
		size_t line = end - 1 - pos;	/* without CRLF */
		if (end + 1 > lim->max_head)
			return request && first && line + 2 > lim->max_line ? -414 : big;
		if (first) {
			int r;
			if (request) {
				if (line + 2 > lim->max_line)
					return -414;
				r = parse_request_line(buf, pos, line, h);
			} else {
				r = parse_status_line(buf, pos, line, h);
			}
			if (r)
				return r;
		} else if (line == 0) {
			h->head_len = (uint32_t)(end + 1);
			return (int)h->head_len;
		} else {
			if (h->nheaders >= maxh)
				return big;
			struct em_http_header *hd = &h->hdr[h->nheaders++];
			if (parse_field_line(buf, pos, line, hd))
				return bad;
			scan_header(sc, buf, hd);
		}
		pos = end + 1;
	}
}

/* Mark the headers that Connection names as hop-by-hop (RFC 9110 §7.6.1);
 * Host stays whatever Connection says. */
static void mark_connection_names(const char *buf, struct em_http_head *h, const struct scan *sc)
{
	for (uint32_t i = 0; i < h->nheaders; i++) {
		struct em_http_header *hd = &h->hdr[i];
		for (unsigned k = 0; k < sc->nconn; k++) {
			const struct em_http_span t = sc->conn[k];
			if (hd->name.len == t.len &&
			    strncasecmp(buf + hd->name.off, buf + t.off, t.len) == 0 &&
			    !span_is(buf, hd->name, "host"))
				hd->flags |= EM_HTTP_HDR_HOP;
		}
	}
}

static bool keep_alive(const struct em_http_head *h, const struct scan *sc)
{
	if (sc->conn_close)
		return false;
	return h->minor >= 1 || sc->conn_keepalive;
}

int em_http_parse_request(const char *buf, size_t len, const struct em_http_limits *lim,
			  struct em_http_head *h)
{
	struct scan sc;
	int r;

	memset(&sc, 0, sizeof(sc));
	h->is_request = 1;
	h->status = 0;
	h->reason = mkspan(0, 0);
	r = scan_head(buf, len, lim, true, h, &sc);
	if (r <= 0)
		return r;
	if (sc.bad)
		return -sc.bad;

	/* Framing, RFC 9112 §6.1 and §6.3 */
	h->body = EM_HTTP_BODY_NONE;
	h->content_length = 0;
	if (sc.nte) {
		if (h->minor == 0 || sc.ncl)	/* §6.1: faulty framing; §6.3 item 3 */
			return -400;
		if (sc.te_unknown)
			return -501;
		if (!sc.te_chunked_last || sc.te_chunked_early)
			return -400;
		h->body = EM_HTTP_BODY_CHUNKED;
	} else if (sc.ncl) {
		h->body = EM_HTTP_BODY_LENGTH;
		h->content_length = sc.cl;
	}
	/* §3.2: exactly one Host in HTTP/1.1; at most one in 1.0 */
	if (sc.nhost > 1 || (h->minor == 1 && sc.nhost == 0))
		return -400;

	r = hp_check_request(buf, h->head_len, h);
	if (r)
		return r;
	if (h->method == HTTP_CONNECT && (h->body == EM_HTTP_BODY_CHUNKED ||
					  (h->body == EM_HTTP_BODY_LENGTH && h->content_length)))
		return -400;	/* RFC 9110 §9.3.6: CONNECT has no content */
	if (h->body == EM_HTTP_BODY_LENGTH && h->content_length == 0)
		h->body = EM_HTTP_BODY_NONE;

	h->host = mkspan(0, 0);
	for (uint32_t i = 0; i < h->nheaders; i++)
		if (span_is(buf, h->hdr[i].name, "host"))
			h->host = h->hdr[i].value;
	mark_connection_names(buf, h, &sc);
	h->keep_alive = keep_alive(h, &sc);
	h->expect_continue = sc.expect_continue && h->minor == 1;
	/* An upgrade is honoured only for a 1.1 request without a body;
	 * otherwise the Upgrade header is simply not forwarded (§7.8). */
	h->upgrade = sc.has_upgrade && sc.conn_upgrade && h->minor == 1 &&
		     h->body == EM_HTTP_BODY_NONE && h->method != HTTP_CONNECT;
	h->interim = false;
	return (int)h->head_len;
}

int em_http_parse_response(const char *buf, size_t len, const struct em_http_limits *lim,
			   unsigned req_method, bool req_upgrade, struct em_http_head *h)
{
	struct scan sc;
	int r;

	memset(&sc, 0, sizeof(sc));
	h->is_request = 0;
	h->method = (uint8_t)req_method;
	h->method_s = h->target = h->host = mkspan(0, 0);
	r = scan_head(buf, len, lim, false, h, &sc);
	if (r <= 0)
		return r;
	if (sc.bad)
		return -502;
	if (sc.nte && (h->minor == 0 || sc.ncl || sc.te_unknown || !sc.te_chunked_last ||
		       sc.te_chunked_early))
		return -502;

	unsigned st = h->status;
	h->content_length = 0;
	h->interim = false;
	h->expect_continue = false;
	h->upgrade = false;
	if (st == 101) {
		if (!req_upgrade || !sc.has_upgrade)
			return -502;
		h->body = EM_HTTP_BODY_TUNNEL;
		h->upgrade = true;
	} else if (st < 200) {
		h->body = EM_HTTP_BODY_NONE;
		h->interim = true;
	} else if (req_method == HTTP_CONNECT && st < 300) {
		h->body = EM_HTTP_BODY_TUNNEL;
	} else if (req_method == HTTP_HEAD || st == 204 || st == 304) {
		h->body = EM_HTTP_BODY_NONE;
	} else if (sc.nte) {
		h->body = EM_HTTP_BODY_CHUNKED;
	} else if (sc.ncl) {
		h->body = EM_HTTP_BODY_LENGTH;
		h->content_length = sc.cl;
	} else {
		h->body = EM_HTTP_BODY_CLOSE;
	}
	mark_connection_names(buf, h, &sc);
	/* A HEAD or 304 response's Content-Length describes the selected
	 * representation, frames nothing: pass it on as received. */
	if ((req_method == HTTP_HEAD || st == 304) && st >= 200)
		for (uint32_t i = 0; i < h->nheaders; i++)
			if (span_is(buf, h->hdr[i].name, "content-length"))
				h->hdr[i].flags &= ~(uint32_t)EM_HTTP_HDR_HOP;
	h->keep_alive = keep_alive(h, &sc) && h->body != EM_HTTP_BODY_CLOSE &&
			h->body != EM_HTTP_BODY_TUNNEL;
	return (int)h->head_len;
}

bool em_http_method_idempotent(unsigned method)
{
	switch (method) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
	case HTTP_PUT:
	case HTTP_DELETE:
		return true;
	default:
		return false;
	}
}

/* ---- sniffing -------------------------------------------------------- */

enum em_http_sniff em_http_sniff(const char *buf, size_t len)
{
	static const char h2[] = "PRI * HTTP/2.0\r\n";
	size_t i = 0;

	if (len == 0)
		return EM_HTTP_SNIFF_MORE;
	/* HTTP/2 prior knowledge starts like a request line: look for it first */
	if (memcmp(buf, h2, len < sizeof(h2) - 1 ? len : sizeof(h2) - 1) == 0)
		return len < sizeof(h2) - 1 ? EM_HTTP_SNIFF_MORE : EM_HTTP_SNIFF_OTHER;
	/* A method is upper-case letters (and '-' / '_') then SP, within 24
	 * bytes; a TLS record starts with 0x16, other protocols with anything. */
	while (i < len && i < 24 && ((buf[i] >= 'A' && buf[i] <= 'Z') || buf[i] == '-' ||
				     buf[i] == '_'))
		i++;
	if (i == len)
		return i < 24 ? EM_HTTP_SNIFF_MORE : EM_HTTP_SNIFF_OTHER;
	return i > 0 && buf[i] == ' ' ? EM_HTTP_SNIFF_HTTP1 : EM_HTTP_SNIFF_OTHER;
}

/* ---- lookups --------------------------------------------------------- */

int em_http_header_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val)
{
	for (uint32_t i = 0; i < h->nheaders; i++) {
		const struct em_http_header *hd = &h->hdr[i];
		if (hd->name.len == nlen && strncasecmp(buf + hd->name.off, name, nlen) == 0) {
			*val = hd->value;
			return 0;
		}
	}
	return -ENOENT;
}

/* cookie-string = cookie-pair *( ";" SP cookie-pair ), read leniently
 * about the separator's spaces; a DQUOTE-wrapped value is returned bare. */
int em_http_cookie_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val)
{
	for (uint32_t i = 0; i < h->nheaders; i++) {
		const struct em_http_header *hd = &h->hdr[i];
		if (!span_is(buf, hd->name, "cookie"))
			continue;
		const char *v = buf + hd->value.off;
		size_t n = hd->value.len, k = 0;
		while (k < n) {
			while (k < n && (v[k] == ' ' || v[k] == ';' || v[k] == '\t'))
				k++;
			size_t ns = k;
			while (k < n && v[k] != '=' && v[k] != ';')
				k++;
			size_t ne = k;
			while (ne > ns && is_ows(v[ne - 1]))
				ne--;
			if (k >= n || v[k] != '=')
				continue;	/* a pair without '=' */
			size_t vs = ++k;
			while (k < n && v[k] != ';')
				k++;
			size_t ve = k;
			while (ve > vs && is_ows(v[ve - 1]))
				ve--;
			if (ve - vs >= 2 && v[vs] == '"' && v[ve - 1] == '"')
				vs++, ve--;
			if (ne - ns == nlen && memcmp(v + ns, name, nlen) == 0) {
				*val = mkspan(hd->value.off + vs, ve - vs);
				return 0;
			}
		}
	}
	return -ENOENT;
}
