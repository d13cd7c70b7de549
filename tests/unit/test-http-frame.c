/* test-http-frame.c — the pure HTTP/1.x framing core: heads, strictness
 * (every smuggling shape of issue 7), limits, rewriting, response body
 * rules, generated replies, lookups, the chunked machine. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "proxy/http_frame.h"
#include "testlog.h"

Suite *http_frame_suite(void);

static struct em_http_head H;

static int preq_lim(const char *s, const struct em_http_limits *lim)
{
	return em_http_parse_request(s, strlen(s), lim, &H);
}

static int preq(const char *s)
{
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	return preq_lim(s, &lim);
}

static int presp(const char *s, unsigned method, bool upgrade)
{
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	return em_http_parse_response(s, strlen(s), &lim, method, upgrade, &H);
}

static bool span_eq(const char *buf, struct em_http_span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(buf + s.off, lit, s.len) == 0;
}

/* ---- requests -------------------------------------------------------- */

START_TEST(request_basic)
{
	const char *s = "GET /a?b=1 HTTP/1.1\r\nHost: svc:80\r\nUser-Agent:  t/1 \r\n"
			"Accept: */*\r\n\r\n";
	ck_assert_int_eq(preq(s), (int)strlen(s));
	ck_assert_uint_eq(H.method, HTTP_GET);
	ck_assert(span_eq(s, H.method_s, "GET"));
	ck_assert(span_eq(s, H.target, "/a?b=1"));
	ck_assert(span_eq(s, H.host, "svc:80"));
	ck_assert_uint_eq(H.minor, 1);
	ck_assert_uint_eq(H.nheaders, 3);
	ck_assert(span_eq(s, H.hdr[1].name, "User-Agent"));
	ck_assert(span_eq(s, H.hdr[1].value, "t/1"));	/* OWS trimmed */
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
	ck_assert(H.keep_alive);
	ck_assert(!H.upgrade && !H.expect_continue);
}
END_TEST

START_TEST(request_prefixes_need_more)
{
	const char *s = "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
	size_t head = strlen(s) - 3;
	for (size_t k = 0; k < head; k++)
		ck_assert_msg(em_http_parse_request(s, k, &(struct em_http_limits){ 8192, 4096, 100 },
						    &H) == 0, "prefix %zu", k);
	ck_assert_int_eq(em_http_parse_request(s, head, &(struct em_http_limits){ 8192, 4096, 100 },
					       &H), (int)head);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_LENGTH);
	ck_assert_uint_eq(H.content_length, 3);
}
END_TEST

START_TEST(request_pipelined)
{
	const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
			"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy"
			"\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\nGET /4 HT";
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	size_t len = strlen(s), pos = 0;
	const char *want[] = { "/1", "/2", "/3" };

	for (int i = 0; i < 3; i++) {
		int r = em_http_parse_request(s + pos, len - pos, &lim, &H);
		ck_assert_int_gt(r, 0);
		ck_assert(span_eq(s + pos, H.target, want[i]));
		pos += (size_t)r + (H.body == EM_HTTP_BODY_LENGTH ? H.content_length : 0);
	}
	/* the CRLF after the POST body was skipped as an empty line (§2.2) */
	ck_assert_int_eq(em_http_parse_request(s + pos, len - pos, &lim, &H), 0);
}
END_TEST

START_TEST(request_leading_crlf)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	ck_assert_int_eq(preq(s), (int)strlen(s));
	ck_assert_uint_eq(H.start, 4);
	ck_assert(span_eq(s, H.target, "/"));
	ck_assert_int_eq(preq("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
}
END_TEST

START_TEST(strict_bare_lf)
{
	ck_assert_int_eq(preq("GET / HTTP/1.1\nHost: a\n\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\n\n"), -400);
	/* rejected as soon as seen, not after waiting for more bytes */
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\nX"), -400);
	/* bare CR */
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), -400);
	ck_assert_int_eq(presp("HTTP/1.1 200 OK\nContent-Length: 0\n\n", HTTP_GET, false), -502);
}
END_TEST

START_TEST(strict_obs_fold)
{
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n"), -400);
	/* whitespace between the request line and the first field (§2.2) */
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -400);
	ck_assert_int_eq(presp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
			       HTTP_GET, false), -502);
}
END_TEST

START_TEST(strict_header_name)
{
	/* the vector: http-parser 2.9.4 non-strict takes it */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent Length: 5\r\n\r\nhello"),
			 -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX\"y: 1\r\n\r\n"), -400);
}
END_TEST

START_TEST(strict_field_value)
{
	static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	ck_assert_int_eq(em_http_parse_request(nul, sizeof(nul) - 1, &lim, &H), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), -400);
	/* HTAB and obs-text are fine */
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xc3\xa9\r\n\r\n"), 0);
}
END_TEST

START_TEST(strict_te_cl)
{
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			      "Content-Length: 5\r\n\r\n"), -400);
	ck_assert_int_eq(presp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
			       "Transfer-Encoding: chunked\r\n\r\n", HTTP_GET, false), -502);
}
END_TEST

START_TEST(strict_te_codings)
{
	/* last coding not chunked */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
			 -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: chunked, gzip\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), -400);
	/* chunked twice */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: chunked, chunked\r\n\r\n"), -400);
	/* unknown coding */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: foo, chunked\r\n\r\n"), -501);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
			 -501);
	/* junk and emptiness */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"),
			 -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"),
			 -400);
	/* on HTTP/1.0 (§6.1) */
	ck_assert_int_eq(preq("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
	ck_assert_int_eq(presp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET,
			       false), -502);
	/* valid: a coding list ending in chunked, split over two fields, any case */
	ck_assert_int_gt(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: gzip\r\nTransfer-Encoding: ChunKed\r\n\r\n"), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_CHUNKED);
	ck_assert_int_gt(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Transfer-Encoding: gzip ,chunked\r\n\r\n"), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_CHUNKED);
}
END_TEST

START_TEST(strict_content_length)
{
	/* even identical duplicates: RFC 9110 §8.6 lets a recipient reject
	 * them, and http-parser (the second reader) does */
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			      "Content-Length: 5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			      "Content-Length: 6\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), -400);
	ck_assert_int_eq(preq("POST / HTTP/1.1\r\nHost: a\r\n"
			      "Content-Length: 99999999999999999999\r\n\r\n"), -400);
	ck_assert_int_eq(presp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
			       HTTP_GET, false), -502);
	/* OWS around the value is not part of it */
	ck_assert_int_gt(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  7 \r\n\r\n"), 0);
	ck_assert_uint_eq(H.content_length, 7);
	/* zero: no body */
	ck_assert_int_gt(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
}
END_TEST

START_TEST(strict_request_line)
{
	ck_assert_int_eq(preq("GET /\r\nHost: a\r\n\r\n"), -400);		/* HTTP/0.9 */
	ck_assert_int_eq(preq("GET / \r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / http/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), -505);
	ck_assert_int_eq(preq("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), -505);
	ck_assert_int_eq(preq("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), -505);
	ck_assert_int_eq(preq("FOO / HTTP/1.1\r\nHost: a\r\n\r\n"), -501);
	ck_assert_int_eq(preq("get / HTTP/1.1\r\nHost: a\r\n\r\n"), -501);
	ck_assert_int_eq(presp("HTTP/1.1 20 OK\r\n\r\n", HTTP_GET, false), -502);
	ck_assert_int_eq(presp("HTTP/1.1 2000 OK\r\n\r\n", HTTP_GET, false), -502);
	ck_assert_int_eq(presp("HTTP/2.0 200 OK\r\n\r\n", HTTP_GET, false), -502);
	ck_assert_int_eq(presp("HTTP/1.1 099 OK\r\n\r\n", HTTP_GET, false), -502);
	ck_assert_int_eq(presp("\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_GET, false), -502);
	ck_assert_int_gt(presp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", HTTP_GET, false), 0);
	ck_assert_uint_eq(H.reason.len, 0);
}
END_TEST

START_TEST(request_host)
{
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), -400);
	ck_assert_int_gt(preq("GET / HTTP/1.0\r\n\r\n"), 0);
	ck_assert_uint_eq(H.host.len, 0);
	ck_assert_int_gt(preq("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 0);
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), -400);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), -400);
}
END_TEST

START_TEST(request_connect)
{
	ck_assert_int_gt(preq("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"), 0);
	ck_assert_uint_eq(H.method, HTTP_CONNECT);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
	ck_assert_int_eq(preq("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n"
			      "Content-Length: 4\r\n\r\n"), -400);
	ck_assert_int_eq(preq("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"), -400);
}
END_TEST

START_TEST(limits)
{
	struct em_http_limits lim = { .max_head = 256, .max_line = 64, .max_headers = 3 };
	char buf[1024];

	/* request line: 414 once complete and too long, and while still incomplete */
	snprintf(buf, sizeof(buf), "GET /%060d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	ck_assert_int_eq(preq_lim(buf, &lim), -414);
	snprintf(buf, sizeof(buf), "GET /%070d", 0);
	ck_assert_int_eq(preq_lim(buf, &lim), -414);
	snprintf(buf, sizeof(buf), "GET /%040d", 0);
	ck_assert_int_eq(preq_lim(buf, &lim), 0);
	/* exactly max_line with CRLF is fine */
	snprintf(buf, sizeof(buf), "GET /%048d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	ck_assert_uint_eq(strchr(buf, '\n') + 1 - buf, 64);
	ck_assert_int_gt(preq_lim(buf, &lim), 0);
	/* head: 431 complete or not */
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0250d\r\n\r\n", 0);
	ck_assert_int_eq(preq_lim(buf, &lim), -431);
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0250d", 0);
	ck_assert_int_eq(preq_lim(buf, &lim), -431);
	/* header count */
	ck_assert_int_gt(preq_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &lim), 0);
	ck_assert_int_eq(preq_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &lim),
			 -431);
	/* responses: anything too big is a 502 */
	snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nX: %0250d\r\n\r\n", 0);
	ck_assert_int_eq(em_http_parse_response(buf, strlen(buf), &lim, HTTP_GET, false, &H), -502);
	/* max_headers is clamped to the array */
	lim.max_headers = 100000;
	lim.max_head = 65536;
	static char big[65536];
	size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < EM_HTTP_HEADERS_MAX + 1; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: %d\r\n", i, i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	ck_assert_int_eq(em_http_parse_request(big, n, &lim, &H), -431);
}
END_TEST

START_TEST(request_keep_alive)
{
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	ck_assert(H.keep_alive);
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"), 0);
	ck_assert(!H.keep_alive);
	ck_assert_int_gt(preq("GET / HTTP/1.0\r\n\r\n"), 0);
	ck_assert(!H.keep_alive);
	ck_assert_int_gt(preq("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
	ck_assert(H.keep_alive);
	ck_assert_int_gt(preq("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
	ck_assert(!H.keep_alive);
	ck_assert_int_eq(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"), -400);
}
END_TEST

START_TEST(request_expect_upgrade)
{
	ck_assert_int_gt(preq("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
			      "Content-Length: 9\r\n\r\n"), 0);
	ck_assert(H.expect_continue);
	ck_assert_int_gt(preq("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n"
			      "Content-Length: 9\r\n\r\n"), 0);
	ck_assert(!H.expect_continue);	/* RFC 9110 §10.1.1: ignored from 1.0 */

	const char *ws = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			 "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n";
	ck_assert_int_gt(preq(ws), 0);
	ck_assert(H.upgrade);
	/* Upgrade without Connection: upgrade, on 1.0, or with a body: no upgrade */
	ck_assert_int_gt(preq("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), 0);
	ck_assert(!H.upgrade);
	ck_assert_int_gt(preq("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
			 0);
	ck_assert(!H.upgrade);
	ck_assert_int_gt(preq("POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			      "Connection: upgrade\r\nContent-Length: 1\r\n\r\n"), 0);
	ck_assert(!H.upgrade);
}
END_TEST

START_TEST(idempotent)
{
	ck_assert(em_http_method_idempotent(HTTP_GET));
	ck_assert(em_http_method_idempotent(HTTP_PUT));
	ck_assert(em_http_method_idempotent(HTTP_DELETE));
	ck_assert(!em_http_method_idempotent(HTTP_POST));
	ck_assert(!em_http_method_idempotent(HTTP_PATCH));
	ck_assert(!em_http_method_idempotent(HTTP_CONNECT));
}
END_TEST

START_TEST(sniff)
{
	ck_assert_int_eq(em_http_sniff("", 0), EM_HTTP_SNIFF_MORE);
	ck_assert_int_eq(em_http_sniff("GE", 2), EM_HTTP_SNIFF_MORE);
	ck_assert_int_eq(em_http_sniff("GET ", 4), EM_HTTP_SNIFF_HTTP1);
	ck_assert_int_eq(em_http_sniff("M-SEARCH * HTTP/1.1", 19), EM_HTTP_SNIFF_HTTP1);
	ck_assert_int_eq(em_http_sniff("\x16\x03\x01\x02\x00", 5), EM_HTTP_SNIFF_OTHER);
	ck_assert_int_eq(em_http_sniff("PRI * HT", 8), EM_HTTP_SNIFF_MORE);
	ck_assert_int_eq(em_http_sniff("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24), EM_HTTP_SNIFF_OTHER);
	ck_assert_int_eq(em_http_sniff("SSH-2.0-x", 9), EM_HTTP_SNIFF_OTHER);
	ck_assert_int_eq(em_http_sniff(" GET", 4), EM_HTTP_SNIFF_OTHER);
	ck_assert_int_eq(em_http_sniff("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 30), EM_HTTP_SNIFF_OTHER);
}
END_TEST

/* ---- rewriting ------------------------------------------------------- */

static char OUT[4096];

static int wreq(const char *s, const char *client)
{
	ck_assert_int_gt(preq(s), 0);
	int n = em_http_write_request(&H, s, client, OUT, sizeof(OUT) - 1);
	ck_assert_int_gt(n, 0);
	OUT[n] = 0;
	return n;
}

START_TEST(rewrite_request_hop_by_hop)
{
	const char *s = "POST /x HTTP/1.1\r\nHost: svc.ns:8080\r\nConnection: keep-alive, X-Secret\r\n"
			"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
			"Trailer: X-Sum\r\nUpgrade: h2c\r\nX-Secret: 1\r\nx-secret: 2\r\n"
			"Content-Length:  5\r\nAccept: */*\r\n\r\n";
	int n = wreq(s, "10.0.0.7");
	ck_assert_str_eq(OUT, "POST /x HTTP/1.1\r\nHost: svc.ns:8080\r\nAccept: */*\r\n"
			      "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
			      "Content-Length: 5\r\nConnection: keep-alive\r\n\r\n");
	/* what we send parses back, with the same framing */
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	static struct em_http_head back;
	ck_assert_int_eq(em_http_parse_request(OUT, (size_t)n, &lim, &back), n);
	ck_assert_int_eq(back.body, EM_HTTP_BODY_LENGTH);
	ck_assert_uint_eq(back.content_length, 5);
}
END_TEST

START_TEST(rewrite_request_xff)
{
	wreq("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
	     "X-Forwarded-Proto: https\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\r\n", "10.0.0.7");
	ck_assert_str_eq(OUT, "GET / HTTP/1.1\r\nHost: a\r\n"
			      "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7\r\n"
			      "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
	wreq("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n", NULL);
	ck_assert_str_eq(OUT, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
			      "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
}
END_TEST

START_TEST(rewrite_request_framing)
{
	wreq("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "::1");
	ck_assert_str_eq(OUT, "POST /c HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: ::1\r\n"
			      "X-Forwarded-Proto: http\r\nTransfer-Encoding: gzip, chunked\r\n"
			      "Connection: keep-alive\r\n\r\n");
	/* HTTP/1.0 stays 1.0; Connection: keep-alive keeps the upstream open */
	wreq("GET / HTTP/1.0\r\n\r\n", "1.2.3.4");
	ck_assert_str_eq(OUT, "GET / HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\n"
			      "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
}
END_TEST

START_TEST(rewrite_request_upgrade)
{
	wreq("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
	     "Sec-WebSocket-Version: 13\r\n\r\n", "1.2.3.4");
	ck_assert_str_eq(OUT, "GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Version: 13\r\n"
			      "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n"
			      "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
}
END_TEST

START_TEST(rewrite_nospace)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	ck_assert_int_gt(preq(s), 0);
	int full = em_http_write_request(&H, s, "1.2.3.4", OUT, sizeof(OUT));
	ck_assert_int_gt(full, 0);
	for (int cap = 0; cap < full; cap++)
		ck_assert_int_eq(em_http_write_request(&H, s, "1.2.3.4", OUT, (size_t)cap), -ENOSPC);
	ck_assert_int_eq(em_http_write_request(&H, s, "1.2.3.4", OUT, (size_t)full), full);
}
END_TEST

static int wresp(const char *s, unsigned method, bool upgrade, unsigned flags)
{
	ck_assert_int_gt(presp(s, method, upgrade), 0);
	int n = em_http_write_response(&H, s, flags, OUT, sizeof(OUT) - 1);
	ck_assert_int_gt(n, 0);
	OUT[n] = 0;
	return n;
}

START_TEST(rewrite_response)
{
	wresp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\n"
	      "X-Hop: 1\r\nServer: t\r\n\r\n", HTTP_GET, false, 0);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 2\r\n\r\n");
	wresp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", HTTP_GET, false, EM_HTTP_W_CLOSE);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
	wresp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", HTTP_GET, false, EM_HTTP_W_CLIENT_10);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
			      "Connection: keep-alive\r\n\r\n");
	/* close-delimited from a 1.0 backend: the client learns it too */
	wresp("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", HTTP_GET, false, 0);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nServer: old\r\nConnection: close\r\n\r\n");
	/* HEAD keeps its Content-Length (it frames nothing) */
	wresp("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", HTTP_HEAD, false, 0);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
	wresp("HTTP/1.1 100 Continue\r\n\r\n", HTTP_PUT, false, EM_HTTP_W_CLOSE);
	ck_assert_str_eq(OUT, "HTTP/1.1 100 Continue\r\n\r\n");
	/* never a 1xx to a 1.0 client */
	ck_assert_int_eq(em_http_write_response(&H, "HTTP/1.1 100 Continue\r\n\r\n",
						EM_HTTP_W_CLIENT_10, OUT, sizeof(OUT)), 0);
	wresp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	      "Sec-WebSocket-Accept: x\r\n\r\n", HTTP_GET, true, 0);
	ck_assert_str_eq(OUT, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
			      "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
	wresp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n", HTTP_GET,
	      false, 0);
	ck_assert_str_eq(OUT, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}
END_TEST

/* ---- response body rules --------------------------------------------- */

START_TEST(response_body_rules)
{
	const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
	ck_assert_int_gt(presp(cl, HTTP_GET, false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_LENGTH);
	ck_assert(H.keep_alive);
	ck_assert_int_gt(presp(cl, HTTP_HEAD, false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
	ck_assert(H.keep_alive);

	ck_assert_int_gt(presp("HTTP/1.1 100 Continue\r\n\r\n", HTTP_POST, false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
	ck_assert(H.interim);
	ck_assert_int_gt(presp("HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n", HTTP_GET, false),
			 0);
	ck_assert(H.interim);

	ck_assert_int_gt(presp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", HTTP_GET,
			       false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);
	ck_assert(!H.interim);
	ck_assert_int_gt(presp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
			       HTTP_GET, false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_NONE);

	ck_assert_int_gt(presp("HTTP/1.1 200 Connection established\r\n\r\n", HTTP_CONNECT, false),
			 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_TUNNEL);
	ck_assert(!H.keep_alive);
	ck_assert_int_gt(presp("HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", HTTP_CONNECT,
			       false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_LENGTH);

	const char *up = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\n\r\n";
	ck_assert_int_gt(presp(up, HTTP_GET, true), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_TUNNEL);
	ck_assert_int_eq(presp(up, HTTP_GET, false), -502);	/* nobody asked */
	ck_assert_int_eq(presp("HTTP/1.1 101 Switching Protocols\r\n\r\n", HTTP_GET, true), -502);

	ck_assert_int_gt(presp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", HTTP_GET, false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_CLOSE);
	ck_assert(!H.keep_alive);

	ck_assert_int_gt(presp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET,
			       false), 0);
	ck_assert_int_eq(H.body, EM_HTTP_BODY_CHUNKED);
	ck_assert(H.keep_alive);
	ck_assert_int_eq(presp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP_GET,
			       false), -502);

	ck_assert_int_gt(presp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
			       HTTP_GET, false), 0);
	ck_assert(!H.keep_alive);
	ck_assert_int_gt(presp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", HTTP_GET, false), 0);
	ck_assert(!H.keep_alive);
	ck_assert_int_gt(presp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
			       HTTP_GET, false), 0);
	ck_assert(H.keep_alive);
}
END_TEST

START_TEST(response_pipelined_interim)
{
	const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
			"Content-Length: 0\r\n\r\n";
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	int r = em_http_parse_response(s, strlen(s), &lim, HTTP_PUT, false, &H);
	ck_assert_int_eq(r, 25);
	ck_assert(H.interim);
	ck_assert_int_eq(em_http_parse_response(s + r, strlen(s) - (size_t)r, &lim, HTTP_PUT, false,
						&H), (int)strlen(s) - r);
	ck_assert_uint_eq(H.status, 201);
}
END_TEST

/* ---- replies --------------------------------------------------------- */

START_TEST(replies)
{
	static const unsigned codes[] = { 400, 408, 413, 414, 431, 501, 502, 503, 504, 505 };
	char buf[192];
	struct em_http_limits lim;
	em_http_limits_default(&lim);

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		for (int c = 0; c < 2; c++) {
			int n = em_http_reply(codes[i], c, buf, sizeof(buf));
			ck_assert_int_gt(n, 0);
			int r = em_http_parse_response(buf, (size_t)n, &lim, HTTP_GET, false, &H);
			ck_assert_int_gt(r, 0);
			ck_assert_uint_eq(H.status, codes[i]);
			ck_assert_int_eq(H.body, EM_HTTP_BODY_LENGTH);
			ck_assert_uint_eq(H.content_length, (uint64_t)(n - r));
			ck_assert(H.keep_alive == !c);
			struct em_http_span v;
			ck_assert_int_eq(em_http_header_find(&H, buf, "content-type", 12, &v), 0);
			ck_assert(span_eq(buf, v, "text/plain"));
		}
	}
	ck_assert_int_eq(em_http_reply(502, true, buf, 20), -ENOSPC);
	ck_assert_int_eq(em_http_reply(42, true, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* ---- lookups --------------------------------------------------------- */

START_TEST(lookups)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-User: bob\r\n"
			"Cookie: a=1; session=\"xyz\" ; b\r\nCookie: sid=42;Sid=43\r\n\r\n";
	struct em_http_span v;

	ck_assert_int_gt(preq(s), 0);
	ck_assert_int_eq(em_http_header_find(&H, s, "x-USER", 6, &v), 0);
	ck_assert(span_eq(s, v, "bob"));
	ck_assert_int_eq(em_http_header_find(&H, s, "x-use", 5, &v), -ENOENT);
	ck_assert_int_eq(em_http_cookie_find(&H, s, "a", 1, &v), 0);
	ck_assert(span_eq(s, v, "1"));
	ck_assert_int_eq(em_http_cookie_find(&H, s, "session", 7, &v), 0);
	ck_assert(span_eq(s, v, "xyz"));
	ck_assert_int_eq(em_http_cookie_find(&H, s, "sid", 3, &v), 0);
	ck_assert(span_eq(s, v, "42"));
	ck_assert_int_eq(em_http_cookie_find(&H, s, "Sid", 3, &v), 0);
	ck_assert(span_eq(s, v, "43"));
	ck_assert_int_eq(em_http_cookie_find(&H, s, "b", 1, &v), -ENOENT);
	ck_assert_int_eq(em_http_cookie_find(&H, s, "SESSION", 7, &v), -ENOENT);
}
END_TEST

/* ---- chunked --------------------------------------------------------- */

/* Run the machine over in[0..len), feeding at most split(i) bytes a time
 * (like a MSG_PEEK of what has arrived) and moving data like splice would.
 * Returns 0 done, 1 input ended first, or the negative error; out gets the
 * forwarded body (emitted framing + data). */
static unsigned lcg;

static size_t split_one(void)
{
	return 1;
}

static size_t split_all(void)
{
	return (size_t)-1;
}

static size_t split_random(void)
{
	lcg = lcg * 1103515245u + 12345u;
	return 1 + (lcg >> 16) % 9;
}

static int chunk_run(const char *in, size_t len, size_t (*split)(void), char *out, size_t *olen)
{
	struct em_http_chunk c;
	struct em_http_chunk_step st;
	size_t pos = 0;

	em_http_chunk_init(&c);
	*olen = 0;
	while (!em_http_chunk_done(&c)) {
		uint64_t pend = em_http_chunk_pending(&c);
		if (pend) {
			size_t n = split();
			if (n > len - pos)
				n = len - pos;
			if (n > pend)
				n = (size_t)pend;
			if (n == 0)
				return 1;
			memcpy(out + *olen, in + pos, n);
			*olen += n;
			pos += n;
			em_http_chunk_moved(&c, n);
			continue;
		}
		size_t n = split();
		if (n > len - pos)
			n = len - pos;
		int r = em_http_chunk_feed(&c, in + pos, n, &st);
		if (r)
			return r;
		ck_assert_uint_le(st.consumed, n);
		memcpy(out + *olen, st.emit, st.emit_len);
		*olen += st.emit_len;
		pos += st.consumed;
		ck_assert(st.data == em_http_chunk_pending(&c));
		if (st.consumed == 0 && st.data == 0 && !st.done)
			return 1;	/* wants more than there is */
	}
	ck_assert_uint_eq(pos, len);	/* callers pass exactly one body */
	return 0;
}

static void chunk_expect(const char *in, const char *want)
{
	size_t (*splits[])(void) = { split_all, split_one, split_random, split_random };
	static char out[65536];
	size_t olen;

	for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
		int r = chunk_run(in, strlen(in), splits[k], out, &olen);
		ck_assert_msg(r == 0, "'%s' split %zu: %d", in, k, r);
		ck_assert_uint_eq(olen, strlen(want));
		ck_assert(memcmp(out, want, olen) == 0);
	}
}

static void chunk_reject(const char *in, size_t len)
{
	size_t (*splits[])(void) = { split_all, split_one, split_random };
	static char out[65536];
	size_t olen;

	for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++)
		ck_assert_msg(chunk_run(in, len, splits[k], out, &olen) == -EBADMSG,
			      "'%s' split %zu accepted", in, k);
}

#define REJECT(lit) chunk_reject(lit, sizeof(lit) - 1)

START_TEST(chunk_canonical)
{
	lcg = 7;
	chunk_expect("5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n");
	chunk_expect("0\r\n\r\n", "0\r\n\r\n");
	chunk_expect("000\r\n\r\n", "0\r\n\r\n");
	/* upper-case hex and leading zeros become canonical */
	chunk_expect("0A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n",
		     "a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n");
	/* extensions dropped, BWS before ';' tolerated */
	chunk_expect("3;name=val;q=\"a;b\"\r\nabc\r\n0 ;last\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n");
	/* trailers validated and dropped */
	chunk_expect("2\r\nhi\r\n0\r\nX-Sum: 12\r\nX-B:\r\n\r\n", "2\r\nhi\r\n0\r\n\r\n");
}
END_TEST

START_TEST(chunk_random_splits)
{
	static char in[40000], want[40000];
	size_t n = 0, w = 0;

	for (int i = 0; i < 60; i++) {
		int sz = (i * 97) % 513;
		if (sz == 0)
			sz = 1;
		n += (size_t)sprintf(in + n, "%X%s\r\n", sz, i % 3 ? "" : ";e=1");
		w += (size_t)sprintf(want + w, "%x\r\n", sz);
		for (int k = 0; k < sz; k++)
			in[n++] = want[w++] = (char)('a' + (i + k) % 26);
		n += (size_t)sprintf(in + n, "\r\n");
		w += (size_t)sprintf(want + w, "\r\n");
	}
	n += (size_t)sprintf(in + n, "0\r\nT: v\r\n\r\n");
	w += (size_t)sprintf(want + w, "0\r\n\r\n");
	in[n] = want[w] = 0;
	for (unsigned seed = 1; seed < 20; seed++) {
		lcg = seed;
		chunk_expect(in, want);
	}
}
END_TEST

START_TEST(chunk_smuggling)
{
	lcg = 3;
	/* the vector: data not followed by CRLF */
	REJECT("1\r\naXY0\r\n\r\n");
	REJECT("3\r\nabcd\r\n0\r\n\r\n");
	REJECT("3\r\nab\r\n\r\n0\r\n\r\n");
	/* sizes: empty, non-hex, signed, prefixed, overflowing, spaced */
	REJECT("\r\n\r\n");
	REJECT(";x\r\n\r\n");
	REJECT("g\r\n\r\n");
	REJECT("-1\r\n\r\n");
	REJECT("+1\r\nx\r\n0\r\n\r\n");
	REJECT("0x5\r\nhello\r\n0\r\n\r\n");
	REJECT(" 5\r\nhello\r\n0\r\n\r\n");
	REJECT("5 \r\nhello\r\n0\r\n\r\n");
	REJECT("10000000000000000\r\n");
	REJECT("fffffffffffffffff\r\n");
	REJECT("8000000000000000\r\n");
	/* bare LF and bare CR in every position */
	REJECT("5\nhello\r\n0\r\n\r\n");
	REJECT("5\r\nhello\n0\r\n\r\n");
	REJECT("5\r\nhello\r\n0\n\r\n");
	REJECT("5\r\nhello\r\n0\r\n\n");
	REJECT("5\r\nhello\r\n0\r\nX: 1\n\r\n");
	REJECT("5\rhello\r\n0\r\n\r\n");
	REJECT("5;a\rb\r\nhello\r\n0\r\n\r\n");
	/* control bytes in extensions and trailers, obs-fold in trailers */
	REJECT("5;a\x01\r\nhello\r\n0\r\n\r\n");
	REJECT("5;a\0\r\nhello\r\n0\r\n\r\n");
	REJECT("0\r\nX: a\0b\r\n\r\n");
	REJECT("0\r\nX: a\r\n b\r\n\r\n");
	REJECT("0\r\nX y: a\r\n\r\n");
	REJECT("0\r\n: a\r\n\r\n");
}
END_TEST

START_TEST(chunk_limits)
{
	static char in[3 * EM_HTTP_TRAILER_MAX];
	size_t n;

	lcg = 5;
	/* size line: EM_HTTP_CHUNK_LINE_MAX incl. CRLF is the most accepted */
	n = (size_t)sprintf(in, "1;");
	memset(in + n, 'e', EM_HTTP_CHUNK_LINE_MAX - 2 - n);
	n = EM_HTTP_CHUNK_LINE_MAX - 2;
	n += (size_t)sprintf(in + n, "\r\nx\r\n0\r\n\r\n");
	chunk_expect(in, "1\r\nx\r\n0\r\n\r\n");
	n = (size_t)sprintf(in, "1;");
	memset(in + n, 'e', EM_HTTP_CHUNK_LINE_MAX);
	n += EM_HTTP_CHUNK_LINE_MAX;
	n += (size_t)sprintf(in + n, "\r\nx\r\n0\r\n\r\n");
	chunk_reject(in, n);
	/* trailers */
	n = (size_t)sprintf(in, "0\r\n");
	while (n < EM_HTTP_TRAILER_MAX + 100)
		n += (size_t)sprintf(in + n, "X-Long: %050d\r\n", 0);
	n += (size_t)sprintf(in + n, "\r\n");
	chunk_reject(in, n);
}
END_TEST

START_TEST(chunk_api)
{
	struct em_http_chunk c;
	struct em_http_chunk_step st;

	em_http_chunk_init(&c);
	/* a feed stops at data and reports it; feeding again first is -EINVAL */
	ck_assert_int_eq(em_http_chunk_feed(&c, "4\r\nabcd\r\n", 10, &st), 0);
	ck_assert_uint_eq(st.consumed, 3);
	ck_assert_uint_eq(st.data, 4);
	ck_assert_uint_eq(st.emit_len, 3);
	ck_assert(memcmp(st.emit, "4\r\n", 3) == 0);
	ck_assert_int_eq(em_http_chunk_feed(&c, "abcd", 4, &st), -EINVAL);
	em_http_chunk_moved(&c, 3);
	ck_assert_uint_eq(em_http_chunk_pending(&c), 1);
	em_http_chunk_moved(&c, 1);
	ck_assert_uint_eq(em_http_chunk_pending(&c), 0);
	/* CRLF after data and the next size line come out in one step */
	ck_assert_int_eq(em_http_chunk_feed(&c, "\r\n1f\r\n", 6, &st), 0);
	ck_assert_uint_eq(st.consumed, 6);
	ck_assert_uint_eq(st.data, 31);
	ck_assert_uint_eq(st.emit_len, 6);
	ck_assert(memcmp(st.emit, "\r\n1f\r\n", 6) == 0);
	/* moving more than pending is a caller bug: the machine refuses */
	em_http_chunk_moved(&c, 32);
	ck_assert_int_eq(em_http_chunk_feed(&c, "\r\n", 2, &st), -EBADMSG);
	ck_assert_uint_eq(st.emit_len, 0);

	/* done stops consuming: bytes after the body are the next message */
	em_http_chunk_init(&c);
	ck_assert_int_eq(em_http_chunk_feed(&c, "0\r\n\r\nGET /", 10, &st), 0);
	ck_assert(st.done && em_http_chunk_done(&c));
	ck_assert_uint_eq(st.consumed, 5);
}
END_TEST

/* ---- the end-to-end smuggling vectors, through the core alone -------- */

static size_t unescape(const char *in, char *out)
{
	size_t n = 0;
	for (const char *p = in; *p; p++) {
		if (*p != '\\') {
			out[n++] = *p;
			continue;
		}
		switch (*++p) {
		case 'r': out[n++] = '\r'; break;
		case 'n': out[n++] = '\n'; break;
		case 't': out[n++] = '\t'; break;
		case '0': out[n++] = '\0'; break;
		case '\\': out[n++] = '\\'; break;
		case 'x': {
			char hex[3] = { p[1], p[2], 0 };
			out[n++] = (char)strtol(hex, NULL, 16);
			p += 2;
			break;
		}
		default: ck_abort_msg("bad escape \\%c", *p);
		}
	}
	return n;
}

/* What the core decides for one vector, in the file's vocabulary. */
static void simulate(bool resp, const char *b, size_t len, char *got, size_t cap)
{
	struct em_http_limits lim;
	struct em_http_chunk c;
	struct em_http_chunk_step st;
	em_http_limits_default(&lim);

	int r = resp ? em_http_parse_response(b, len, &lim, HTTP_GET, false, &H)
		     : em_http_parse_request(b, len, &lim, &H);
	if (r <= 0) {
		snprintf(got, cap, r ? "%d" : "open", -r);
		return;
	}
	size_t pos = (size_t)r;
	snprintf(got, cap, "200");
	if (H.body == EM_HTTP_BODY_LENGTH && H.content_length > len - pos) {
		snprintf(got, cap, resp ? "close" : "open");
	} else if (H.body == EM_HTTP_BODY_CHUNKED) {
		em_http_chunk_init(&c);
		while (!em_http_chunk_done(&c)) {
			uint64_t pend = em_http_chunk_pending(&c);
			if (pend > len - pos) {
				snprintf(got, cap, "close");
				return;
			}
			pos += pend;
			if (pend)
				em_http_chunk_moved(&c, pend);
			if (em_http_chunk_feed(&c, b + pos, len - pos, &st)) {
				snprintf(got, cap, resp ? "close" : "400");
				return;
			}
			pos += st.consumed;
			if (!st.done && !st.data) {
				snprintf(got, cap, "close");
				return;
			}
		}
	}
}

START_TEST(smuggling_vectors)
{
	const char *data = getenv("EM_TEST_DATA");
	char path[512], line[4096], raw[4096], got[16];
	int cases = 0;

	ck_assert_ptr_nonnull(data);
	snprintf(path, sizeof(path), "%s/../proxy/http-smuggling.vectors", data);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		char *dir = strtok(line, "\t"), *name = strtok(NULL, "\t");
		char *expect = strtok(NULL, "\t"), *bytes = strtok(NULL, "");
		ck_assert_msg(dir && name && expect && bytes, "bad line in %s", path);
		size_t n = unescape(bytes, raw);
		simulate(strcmp(dir, "resp") == 0, raw, n, got, sizeof(got));
		bool ok = false;
		for (char *e = strtok(expect, "|"); e; e = strtok(NULL, "|"))
			ok |= strcmp(e, got) == 0;
		ck_assert_msg(ok, "%s %s: got %s", dir, name, got);
		cases++;
	}
	fclose(f);
	ck_assert_int_gt(cases, 50);
}
END_TEST

Suite *http_frame_suite(void)
{
	Suite *s = suite_create("http_frame");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "request_basic", request_basic },
		{ "request_prefixes_need_more", request_prefixes_need_more },
		{ "request_pipelined", request_pipelined },
		{ "request_leading_crlf", request_leading_crlf },
		{ "strict_bare_lf", strict_bare_lf },
		{ "strict_obs_fold", strict_obs_fold },
		{ "strict_header_name", strict_header_name },
		{ "strict_field_value", strict_field_value },
		{ "strict_te_cl", strict_te_cl },
		{ "strict_te_codings", strict_te_codings },
		{ "strict_content_length", strict_content_length },
		{ "strict_request_line", strict_request_line },
		{ "request_host", request_host },
		{ "request_connect", request_connect },
		{ "limits", limits },
		{ "request_keep_alive", request_keep_alive },
		{ "request_expect_upgrade", request_expect_upgrade },
		{ "sniff", sniff },
		{ "idempotent", idempotent },
		{ "rewrite_request_hop_by_hop", rewrite_request_hop_by_hop },
		{ "rewrite_request_xff", rewrite_request_xff },
		{ "rewrite_request_framing", rewrite_request_framing },
		{ "rewrite_request_upgrade", rewrite_request_upgrade },
		{ "rewrite_nospace", rewrite_nospace },
		{ "rewrite_response", rewrite_response },
		{ "response_body_rules", response_body_rules },
		{ "response_pipelined_interim", response_pipelined_interim },
		{ "replies", replies },
		{ "lookups", lookups },
		{ "chunk_canonical", chunk_canonical },
		{ "chunk_random_splits", chunk_random_splits },
		{ "chunk_smuggling", chunk_smuggling },
		{ "chunk_limits", chunk_limits },
		{ "chunk_api", chunk_api },
		{ "smuggling_vectors", smuggling_vectors },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
