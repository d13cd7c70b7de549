/* http_frame.h — the pure HTTP/1.x framing core of the L7 forwarder.
 *
 * Bytes in, decisions out: nothing here does I/O, allocates or keeps global
 * state. The socket side (http.c) owns the buffers and the descriptors; this
 * module tells it where a head ends, how the body that follows is framed,
 * what head to send on, and, for chunked bodies, which bytes are framing
 * (parsed here, re-emitted canonically) and how many are data (moved by the
 * caller with splice(2), never copied through user space).
 *
 * Strictness. Debian's libhttp-parser 2.9.4 is built with
 * HTTP_PARSER_STRICT=0 and accepts bare LF, obs-fold, spaces in header
 * names and a chunk whose data is not followed by CRLF. Each of those is a
 * request-smuggling vector, so heads are checked line by line here first
 * (RFC 9112 §2.2, 3, 5.1, 5.2, 6.1, 6.3, 7.1, 11.2; RFC 9110 §5.5). A
 * request head is then handed to http-parser, which must agree (method
 * table, version); a response head is read by this scanner alone, and
 * fuzz-http compares the two readers on responses. Chunked bodies are
 * framed entirely by em_http_chunk_*.
 *
 * Spans are offsets into the caller's buffer so that a parsed head holds no
 * pointer and survives the buffer being moved (never being reused, though).
 */
#ifndef EM_PROXY_HTTP_FRAME_H
#define EM_PROXY_HTTP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ---------------------------------------------------------- */

/* Hard cap on header lines kept per head; em_http_limits.max_headers may
 * only lower it. 128 × 20 bytes keeps struct em_http_head under 3 KiB. */
#define EM_HTTP_HEADERS_MAX 128

struct em_http_limits {
	uint32_t max_head;	/* whole head incl. final CRLF → 431 (responses: 502) */
	uint32_t max_line;	/* request line incl. CRLF → 414 */
	uint32_t max_headers;	/* header lines → 431; clamped to EM_HTTP_HEADERS_MAX */
};

/* 8 KiB head, 4 KiB request line, 100 headers (nginx/HAProxy-like). */
void em_http_limits_default(struct em_http_limits *lim);

/* ---- parsed head ----------------------------------------------------- */

struct em_http_span {
	uint32_t off;		/* from the start of the caller's buffer */
	uint32_t len;
};

/* How the body after a head is delimited (RFC 9112 §6.3). */
enum em_http_body {
	EM_HTTP_BODY_NONE,	/* no body: next bytes are the next message */
	EM_HTTP_BODY_LENGTH,	/* exactly head.content_length bytes */
	EM_HTTP_BODY_CHUNKED,	/* chunked: drive em_http_chunk_* */
	EM_HTTP_BODY_CLOSE,	/* responses only: until the upstream closes */
	EM_HTTP_BODY_TUNNEL,	/* responses only: 101 to an Upgrade request, 2xx to
				 * CONNECT; both directions become a byte tunnel */
};

/* em_http_header.flags */
enum {
	EM_HTTP_HDR_HOP = 1 << 0,	/* drop when forwarding: hop-by-hop
					 * (RFC 9110 §7.6.1: Connection, every
					 * header Connection names, Keep-Alive,
					 * Proxy-Connection, TE, Trailer,
					 * Upgrade) or a header the writers
					 * re-emit themselves (Content-Length,
					 * Transfer-Encoding, X-Forwarded-For,
					 * X-Forwarded-Proto) */
	EM_HTTP_HDR_UPGRADE = 1 << 1,	/* an Upgrade header (re-sent by the
					 * request writer when upgrading) */
	EM_HTTP_HDR_XFF = 1 << 2,	/* an X-Forwarded-For header (its value
					 * is kept and appended to) */
	EM_HTTP_HDR_TE = 1 << 3,	/* a Transfer-Encoding header (its
					 * validated codings are re-sent) */
};

struct em_http_header {
	struct em_http_span name;
	struct em_http_span value;	/* leading/trailing OWS trimmed */
	uint32_t flags;			/* EM_HTTP_HDR_* */
};

struct em_http_head {
	uint32_t head_len;	/* bytes of the head incl. the empty line (and,
				 * for requests, empty lines skipped before it) */
	uint32_t start;		/* offset of the request/status line */
	uint8_t is_request;
	uint8_t minor;		/* HTTP/1.<minor>: 0 or 1 */
	uint8_t method;		/* requests: enum http_method (http_parser.h) */
	uint16_t status;	/* responses: 100..999 */
	struct em_http_span method_s;	/* requests: the method token */
	struct em_http_span target;	/* requests: the request-target */
	struct em_http_span reason;	/* responses: reason phrase (may be empty) */
	struct em_http_span host;	/* requests: Host value (len 0: none) */

	enum em_http_body body;
	uint64_t content_length;	/* EM_HTTP_BODY_LENGTH only */
	bool keep_alive;	/* the connection may carry another message after
				 * this one: version + Connection (and, for
				 * responses, a body not delimited by close) */
	bool expect_continue;	/* requests: Expect: 100-continue */
	bool upgrade;		/* requests: Upgrade asked (Upgrade header and
				 * "upgrade" in Connection, HTTP/1.1) */
	bool interim;		/* responses: 1xx other than 101: another
				 * response head follows for the same request */

	uint32_t nheaders;
	struct em_http_header hdr[EM_HTTP_HEADERS_MAX];
};

/* ---- head parsers ---------------------------------------------------- */

/* Parse a request head at the start of buf[0..len) (the bytes received so
 * far; pipelined bytes after the head are left alone).
 *   > 0  the head is complete and valid; the value is h->head_len, the body
 *        (per h->body) starts right after it;
 *   0    more bytes are needed (len is still within the limits);
 *   < 0  the negated status to answer with, then close:
 *        -400 malformed, ambiguous framing or a smuggling shape (this
 *             includes any repeated Content-Length, identical or not),
 *        -414 request line longer than lim->max_line,
 *        -431 head larger than lim->max_head or too many headers,
 *        -501 unknown Transfer-Encoding coding or unknown method,
 *        -505 HTTP version other than 1.0 / 1.1.
 * Never reads buf beyond len. h is fully written only on > 0. */
int em_http_parse_request(const char *buf, size_t len, const struct em_http_limits *lim,
			  struct em_http_head *h);

/* Parse a response head answering a request with method req_method (enum
 * http_method) that asked for an upgrade when req_upgrade. Same returns as
 * em_http_parse_request except that every rejection is -502. Body rules
 * (RFC 9112 §6.3): HEAD, 1xx, 204, 304 → NONE (1xx other than 101 sets
 * h->interim); 101 → TUNNEL (-502 unless req_upgrade); 2xx to CONNECT →
 * TUNNEL; chunked → CHUNKED; Content-Length → LENGTH; else CLOSE. */
int em_http_parse_response(const char *buf, size_t len, const struct em_http_limits *lim,
			   unsigned req_method, bool req_upgrade, struct em_http_head *h);

/* RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE (enum
 * http_method). A request may be retried on another upstream after it was
 * sent only if its method is idempotent (and it had no body). */
bool em_http_method_idempotent(unsigned method);

/* What the first bytes of a new client connection look like, to fall back
 * to L4 for TLS, HTTP/2 and anything that is not HTTP/1.x. */
enum em_http_sniff {
	EM_HTTP_SNIFF_MORE,	/* too few bytes to tell */
	EM_HTTP_SNIFF_HTTP1,	/* starts like an HTTP/1.x request line */
	EM_HTTP_SNIFF_OTHER,	/* TLS ClientHello, HTTP/2 preface, other */
};
enum em_http_sniff em_http_sniff(const char *buf, size_t len);

/* ---- lookups (balancer request context: header(name), cookie(name)) - */

/* First header named name (case-insensitive, nlen bytes), hop-by-hop ones
 * included. 0 and *val set, or -ENOENT. */
int em_http_header_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val);

/* Value of cookie name (case-sensitive, RFC 6265) in the Cookie header(s)
 * of a request. 0 and *val set, or -ENOENT. */
int em_http_cookie_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val);

/* ---- head writers ---------------------------------------------------- */

/* Write the request head to send upstream into out[0..cap):
 *   METHOD SP target SP HTTP/1.<minor> CRLF (tokens as received)
 *   every header without EM_HTTP_HDR_HOP, in order (Host as sent)
 *   X-Forwarded-For: <existing values>, <client>   (or just <client>)
 *   X-Forwarded-Proto: http
 *   Content-Length: n | Transfer-Encoding: <codings>  (per h->body; the
 *        codings received, joined with ", ", always ending in chunked)
 *   Connection: Upgrade + the Upgrade header(s)      when h->upgrade
 *   Connection: keep-alive                           otherwise
 * client is the client's address as text (NUL-terminated, may be NULL: no
 * X-Forwarded-For added). Returns the length written or -ENOSPC. */
int em_http_write_request(const struct em_http_head *h, const char *buf, const char *client,
			  char *out, size_t cap);

/* em_http_write_response flags */
enum {
	EM_HTTP_W_CLOSE = 1 << 0,	/* the client connection ends after this
					 * response: send Connection: close */
	EM_HTTP_W_CLIENT_10 = 1 << 1,	/* the client spoke HTTP/1.0: when it
					 * continues, say Connection: keep-alive */
};

/* Write the response head to send to the client into out[0..cap): the
 * status line as received, every header without EM_HTTP_HDR_HOP, the
 * canonical framing header (none for NONE/CLOSE/TUNNEL, and for 1xx),
 * Connection: close | keep-alive | Upgrade (+ Upgrade header for a 101).
 * A CLOSE-delimited body always gets Connection: close. An interim (1xx)
 * response to an HTTP/1.0 client (EM_HTTP_W_CLIENT_10) is not forwarded
 * (RFC 9110 §15.2): 0 is returned. Returns the length or -ENOSPC. */
int em_http_write_response(const struct em_http_head *h, const char *buf, unsigned flags,
			   char *out, size_t cap);

/* A complete generated response for status (400, 408, 413, 414, 431, 501,
 * 502, 503, 504, 505; other codes get a generic reason): status line,
 * Content-Type: text/plain, Content-Length, Connection: close when
 * close_conn, and a one-line body (the reason). Returns the length, -ENOSPC
 * (192 bytes always suffice) or -EINVAL for a status outside 100..599. */
int em_http_reply(unsigned status, bool close_conn, char *out, size_t cap);

/* ---- chunked bodies (RFC 9112 §7.1) ---------------------------------- */

/* The machine is incremental: it keeps its place inside a size line or the
 * trailers, so the caller never needs a buffer as large as a line. A
 * forwarding loop for one direction (errors and EAGAIN left out):
 *
 *	while (!em_http_chunk_done(&c)) {
 *		uint64_t left = em_http_chunk_pending(&c);
 *		if (left) {			// chunk data: never copied
 *			n = splice(in, pipe, min(left, room));
 *			em_http_chunk_moved(&c, n);
 *			... splice pipe -> out ...
 *			continue;
 *		}
 *		n = recv(in, peek, sizeof(peek), MSG_PEEK);
 *		if (em_http_chunk_feed(&c, peek, n, &st))
 *			reject (400 / close);
 *		recv(in, peek, st.consumed, 0);	// drop exactly the framing
 *		send(out, st.emit, st.emit_len);	// after the data already moved
 *	}
 *
 * Bytes after the body (st.done) belong to the next message and stay in the
 * socket. If a body turns out malformed after some of it went on, the
 * receiving peer holds a partial message: close that connection too. */

/* Limits of the chunked machine. */
#define EM_HTTP_CHUNK_LINE_MAX 4096	/* chunk-size line incl. extensions */
#define EM_HTTP_TRAILER_MAX 8192	/* whole trailer section */
#define EM_HTTP_CHUNK_EMIT_MAX 32	/* canonical framing of one step */

/* One direction's chunked body in flight. Zero it with em_http_chunk_init;
 * it holds no pointer. */
struct em_http_chunk {
	uint8_t state;
	uint32_t line;		/* bytes of the current size/trailer line */
	uint32_t trailer;	/* bytes of trailer section so far */
	uint64_t size;		/* chunk-size being read / of the current chunk */
	uint64_t left;		/* data bytes of the current chunk not yet moved */
};

struct em_http_chunk_step {
	size_t consumed;	/* framing bytes taken from the input: the caller
				 * discards exactly these (recv of consumed bytes
				 * after a MSG_PEEK) */
	uint64_t data;		/* data bytes that follow and that the caller
				 * must move (splice) before feeding again;
				 * report them with em_http_chunk_moved */
	uint8_t emit_len;	/* canonical framing to send on first */
	char emit[EM_HTTP_CHUNK_EMIT_MAX];
	bool done;		/* the last chunk and trailers are through: the
				 * message ends after consumed bytes */
};

void em_http_chunk_init(struct em_http_chunk *c);

/* Feed the bytes at the current position of the body (p[0..len), typically
 * a MSG_PEEK). Consumes framing until it reaches chunk data, the end of the
 * message or the end of the input, and says what to emit: "%x\r\n" for
 * each chunk-size line (extensions dropped), "\r\n" after each chunk's
 * data, "0\r\n\r\n" at the end. Trailer fields are validated (field syntax,
 * EM_HTTP_TRAILER_MAX) and dropped: the forwarded body never carries
 * trailers (the Trailer header is hop-by-hop and removed too).
 * Called while data is pending (em_http_chunk_pending > 0) it returns
 * -EINVAL and changes nothing.
 * Returns 0, or -EBADMSG for a malformed body (empty, non-hex or overflowing
 * size, data not followed by CRLF, bare LF, control bytes, over-long line or
 * trailers): the caller answers 400 (request) / closes (response). With
 * -EBADMSG s->emit_len is 0 and nothing must be sent on. */
int em_http_chunk_feed(struct em_http_chunk *c, const char *p, size_t len,
		       struct em_http_chunk_step *s);

/* The caller moved n (≤ pending) data bytes of the current chunk. More than
 * pending is a caller bug: the machine goes to its error state. If the body
 * then fails (-EBADMSG after data went on), the upstream connection holds a
 * partial chunk and must be closed, never pooled. */
void em_http_chunk_moved(struct em_http_chunk *c, uint64_t n);

/* Data bytes of the current chunk still to move. */
uint64_t em_http_chunk_pending(const struct em_http_chunk *c);

/* True once the whole chunked body has been consumed. */
bool em_http_chunk_done(const struct em_http_chunk *c);

#endif
