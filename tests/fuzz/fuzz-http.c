/* fuzz-http.c — libFuzzer target for the HTTP/1.x framing core
 * (src/proxy/http_frame*.c): a whole client stream (pipelined requests) or
 * upstream stream (responses) goes through the head parser and the body
 * framing, message after message, as the forwarder would drive them.
 *
 * Input: byte 0 picks the options, the rest is the stream.
 *   bit 0     responses instead of requests
 *   bits 1-2  limits: default, small, tiny, large
 *   bits 3-5  responses: the method of the request answered (GET, HEAD,
 *             CONNECT, POST, ...), bit 6 that request asked for an upgrade
 *   bit 7     seed of the chunk splits
 *
 * Invariants (abort on violation):
 *   - a head length is within the input and the limits; every span lies
 *     inside the head; a complete head's every proper prefix "needs more";
 *   - a rejection is one of the documented statuses and ends the stream:
 *     nothing after it is parsed as another head;
 *   - the head we write parses back with the same framing, method/status
 *     and upgrade; it carries no hop-by-hop header;
 *   - http-parser, given a response head that our scanner accepted, reads
 *     the same version, status and Content-Length whenever it accepts it
 *     too (the forwarder no longer runs it on responses, so the two readers
 *     are compared here). It may refuse what we take: 2.9.4 reads a field
 *     named "Transfer-Encodingx" as Transfer-Encoding, for one;
 *   - the chunked machine consumes no more than it is given, gives the same
 *     verdict and the same canonical output whether fed at once or in
 *     random pieces, and its output is a valid chunked body that maps to
 *     itself.
 * Seed corpus: tests/fuzz/corpus/http/. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "proxy/http_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define OUT_MAX (1u << 20)

static uint32_t rng;

static size_t next_split(void)
{
	rng = rng * 1103515245u + 12345u;
	return 1 + (rng >> 16) % 13;
}

static void check_span(struct em_http_span s, size_t head_len)
{
	CHECK(s.off <= head_len && s.len <= head_len - s.off);
}

static void check_head(const struct em_http_head *h, size_t r, const struct em_http_limits *lim)
{
	CHECK(h->head_len == r && h->start < r);
	CHECK(r <= lim->max_head);
	CHECK(h->nheaders <= lim->max_headers && h->nheaders <= EM_HTTP_HEADERS_MAX);
	CHECK(h->minor <= 1);
	check_span(h->method_s, r);
	check_span(h->target, r);
	check_span(h->reason, r);
	check_span(h->host, r);
	for (uint32_t i = 0; i < h->nheaders; i++) {
		check_span(h->hdr[i].name, r);
		check_span(h->hdr[i].value, r);
		CHECK(h->hdr[i].name.len > 0);
	}
	CHECK(h->body <= EM_HTTP_BODY_TUNNEL);
	if (h->is_request)
		CHECK(h->body != EM_HTTP_BODY_CLOSE && h->body != EM_HTTP_BODY_TUNNEL);
	if (h->body == EM_HTTP_BODY_LENGTH)
		CHECK(h->content_length > 0 || !h->is_request);
}

/* Run a chunked body at p[0..len). Returns bytes of input the body took,
 * or -1 rejected, -2 input ended first. out gets the forwarded body. */
static long chunk_run(const char *p, size_t len, bool random_splits, char *out, size_t *olen)
{
	struct em_http_chunk c;
	struct em_http_chunk_step st;
	size_t pos = 0;

	em_http_chunk_init(&c);
	*olen = 0;
	while (!em_http_chunk_done(&c)) {
		uint64_t pend = em_http_chunk_pending(&c);
		size_t n = random_splits ? next_split() : len - pos;
		if (n > len - pos)
			n = len - pos;
		if (pend) {
			if (n > pend)
				n = (size_t)pend;
			if (n == 0)
				return -2;
			if (*olen + n > OUT_MAX)
				return -2;
			memcpy(out + *olen, p + pos, n);
			*olen += n;
			pos += n;
			em_http_chunk_moved(&c, n);
			continue;
		}
		int r = em_http_chunk_feed(&c, p + pos, n, &st);
		if (r) {
			CHECK(r == -EBADMSG && st.emit_len == 0);
			return -1;
		}
		CHECK(st.consumed <= n && st.emit_len <= EM_HTTP_CHUNK_EMIT_MAX);
		CHECK(st.data == em_http_chunk_pending(&c));
		CHECK(st.done == em_http_chunk_done(&c));
		if (*olen + st.emit_len > OUT_MAX)
			return -2;
		memcpy(out + *olen, st.emit, st.emit_len);
		*olen += st.emit_len;
		pos += st.consumed;
		if (!st.done && st.data == 0) {
			CHECK(st.consumed == n);	/* stops early only at data or end */
			if (pos == len)
				return -2;
		}
	}
	return (long)pos;
}

static char out_a[OUT_MAX], out_b[OUT_MAX], out_c[OUT_MAX];

static long chunk_body(const char *p, size_t len)
{
	size_t la, lb, lc;
	long a = chunk_run(p, len, false, out_a, &la);
	long b = chunk_run(p, len, true, out_b, &lb);

	/* same verdict and length however the bytes arrive */
	CHECK(a == b);
	if (a < 0)
		return a;
	CHECK(la == lb && memcmp(out_a, out_b, la) == 0);
	/* canonical output: a valid body that maps to itself */
	long c = chunk_run(out_a, la, true, out_c, &lc);
	CHECK(c == (long)la && lc == la && memcmp(out_a, out_c, la) == 0);
	return a;
}

static void check_written_request(const struct em_http_head *h, const char *buf)
{
	static char w[2 * 65536 + 1024];
	static struct em_http_head back;
	struct em_http_limits big = { .max_head = sizeof(w), .max_line = sizeof(w),
				      .max_headers = EM_HTTP_HEADERS_MAX };

	int n = em_http_write_request(h, buf, "192.0.2.1", w, sizeof(w));
	CHECK(n > 0);
	/* one byte short never overflows */
	CHECK(em_http_write_request(h, buf, "192.0.2.1", w, (size_t)n - 1) == -ENOSPC);
	if (h->nheaders + 5 > EM_HTTP_HEADERS_MAX)
		return;
	int r = em_http_parse_request(w, (size_t)n, &big, &back);
	CHECK(r == n);
	CHECK(back.body == h->body && back.content_length == h->content_length);
	CHECK(back.method == h->method && back.minor == h->minor);
	CHECK(back.upgrade == h->upgrade);
	CHECK(back.host.len == h->host.len &&
	      memcmp(w + back.host.off, buf + h->host.off, h->host.len) == 0);
	CHECK(back.target.len == h->target.len &&
	      memcmp(w + back.target.off, buf + h->target.off, h->target.len) == 0);
}

static void check_written_response(const struct em_http_head *h, const char *buf,
				   unsigned method, bool upgrade)
{
	static char w[2 * 65536 + 1024];
	static struct em_http_head back;
	struct em_http_limits big = { .max_head = sizeof(w), .max_line = sizeof(w),
				      .max_headers = EM_HTTP_HEADERS_MAX };

	unsigned flags = rng & 3;
	int n = em_http_write_response(h, buf, flags, w, sizeof(w));
	if (h->interim && (flags & EM_HTTP_W_CLIENT_10)) {
		CHECK(n == 0);	/* no 1xx to a 1.0 client */
		return;
	}
	CHECK(n > 0);
	if (h->nheaders + 3 > EM_HTTP_HEADERS_MAX)
		return;
	int r = em_http_parse_response(w, (size_t)n, &big, method, upgrade, &back);
	CHECK(r == n);
	CHECK(back.status == h->status && back.body == h->body && back.interim == h->interim);
	CHECK(back.content_length == h->content_length);
}

static void check_lookups(const struct em_http_head *h, const char *buf)
{
	struct em_http_span v;

	for (uint32_t i = 0; i < h->nheaders; i++) {
		const struct em_http_header *hd = &h->hdr[i];
		CHECK(em_http_header_find(h, buf, buf + hd->name.off, hd->name.len, &v) == 0);
		check_span(v, h->head_len);
	}
	if (em_http_cookie_find(h, buf, "session", 7, &v) == 0)
		check_span(v, h->head_len);
	if (h->nheaders && em_http_cookie_find(h, buf, buf + h->hdr[0].value.off,
					       h->hdr[0].value.len > 8 ? 8 : h->hdr[0].value.len,
					       &v) == 0)
		check_span(v, h->head_len);
}

static int hp_complete(http_parser *p)
{
	*(bool *)p->data = true;
	return 2;	/* stop right after the head */
}

/* The differential: where http-parser takes the response head we took, it
 * reads it as we do. */
static void check_http_parser_agrees(const struct em_http_head *h, const char *buf)
{
	http_parser_settings set;
	http_parser p;
	bool complete = false;

	http_parser_settings_init(&set);
	set.on_headers_complete = hp_complete;
	http_parser_init(&p, HTTP_RESPONSE);
	p.data = &complete;
	size_t n = http_parser_execute(&p, &set, buf, h->head_len);
	if (HTTP_PARSER_ERRNO(&p) != HPE_OK)
		return;
	CHECK(complete && n == h->head_len);
	CHECK(p.http_major == 1 && p.http_minor == h->minor && p.status_code == h->status);
	if (h->body == EM_HTTP_BODY_LENGTH)
		CHECK(p.content_length == h->content_length);
}

static bool allowed(int r, bool response)
{
	if (response)
		return r == -502;
	return r == -400 || r == -414 || r == -431 || r == -501 || r == -505;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned methods[] = { HTTP_GET, HTTP_HEAD, HTTP_CONNECT, HTTP_POST,
					    HTTP_PUT, HTTP_GET, HTTP_OPTIONS, HTTP_DELETE };
	static struct em_http_head h;
	struct em_http_limits lim;

	if (size < 1)
		return 0;
	uint8_t opt = data[0];
	const char *buf = (const char *)data + 1;
	size_t len = size - 1, pos = 0;
	bool response = opt & 1;
	unsigned method = methods[(opt >> 3) & 7];
	bool upgrade = opt & 0x40;

	em_http_limits_default(&lim);
	switch ((opt >> 1) & 3) {
	case 1: lim = (struct em_http_limits){ .max_head = 256, .max_line = 64, .max_headers = 8 };
		break;
	case 2: lim = (struct em_http_limits){ .max_head = 24, .max_line = 16, .max_headers = 1 };
		break;
	case 3: lim = (struct em_http_limits){ .max_head = 65536, .max_line = 65536,
					       .max_headers = 1000 };
		break;
	}
	rng = opt >> 7 ? 0x9e3779b9u : 1;
	(void)em_http_sniff(buf, len);

	for (int msg = 0; msg < 64 && pos < len; msg++) {
		const char *p = buf + pos;
		size_t left = len - pos;
		int r = response ? em_http_parse_response(p, left, &lim, method, upgrade, &h)
				 : em_http_parse_request(p, left, &lim, &h);
		if (r == 0)
			break;
		if (r < 0) {
			CHECK(allowed(r, response));
			break;	/* rejected: the stream ends here, nothing after is a head */
		}
		CHECK((size_t)r <= left);
		if (lim.max_headers > EM_HTTP_HEADERS_MAX)
			lim.max_headers = EM_HTTP_HEADERS_MAX;	/* what the parser applies */
		check_head(&h, (size_t)r, &lim);
		/* every proper prefix of a complete head needs more bytes */
		static struct em_http_head pre;
		size_t k = (size_t)r - 1 - (rng % (size_t)r);
		int rp = response ? em_http_parse_response(p, (size_t)r - 1, &lim, method, upgrade, &pre)
				  : em_http_parse_request(p, (size_t)r - 1, &lim, &pre);
		CHECK(rp == 0);
		rp = response ? em_http_parse_response(p, k, &lim, method, upgrade, &pre)
			      : em_http_parse_request(p, k, &lim, &pre);
		CHECK(rp == 0);
		check_lookups(&h, p);
		if (response) {
			check_http_parser_agrees(&h, p);
			check_written_response(&h, p, method, upgrade);
		}
		else
			check_written_request(&h, p);

		pos += (size_t)r;
		if (h.body == EM_HTTP_BODY_LENGTH) {
			if (h.content_length > len - pos)
				break;
			pos += (size_t)h.content_length;
		} else if (h.body == EM_HTTP_BODY_CHUNKED) {
			long b = chunk_body(buf + pos, len - pos);
			if (b < 0)
				break;
			pos += (size_t)b;
		} else if (h.body != EM_HTTP_BODY_NONE) {
			break;	/* CLOSE / TUNNEL: the rest is opaque */
		} else if (response && !h.interim && !h.keep_alive) {
			break;
		}
	}
	return 0;
}
