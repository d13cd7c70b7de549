/* http_frame_chunk.c — the chunked transfer coding (RFC 9112 §7.1) as a
 * byte-at-a-time state machine over framing only.
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *
 * Size lines, the CRLF after data, the last chunk and the trailers are read
 * here; chunk data is only counted, the caller moves it (splice). Whatever
 * the input looked like, what is emitted is canonical: "%x\r\n", "\r\n",
 * "0\r\n\r\n" — extensions and trailer fields are dropped, so the next hop
 * never has to interpret anything this machine did not check. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy/http_frame.h"

enum {
	S_SIZE0,	/* first hex digit of a size line */
	S_SIZE,		/* more hex digits */
	S_BWS,		/* SP/HTAB after the size: only ';' may follow */
	S_EXT,		/* chunk extensions up to CR */
	S_SIZE_LF,	/* LF ending the size line */
	S_DATA,		/* left data bytes, moved by the caller */
	S_DATA_CR,	/* CR after chunk data */
	S_DATA_LF,	/* LF after chunk data */
	S_TR_START,	/* start of a trailer line or the final CRLF */
	S_TR_NAME,	/* trailer field name */
	S_TR_VALUE,	/* trailer field value up to CR */
	S_TR_LF,	/* LF ending a trailer line */
	S_END_LF,	/* LF of the final CRLF */
	S_DONE,
	S_ERROR,
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* HTAB, SP, VCHAR, obs-text: everything but CTLs */
static bool is_text(char c)
{
	uint8_t u = (uint8_t)c;
	return u == '\t' || (u >= 0x20 && u != 0x7f);
}

void em_http_chunk_init(struct em_http_chunk *c)
{
	memset(c, 0, sizeof(*c));
	c->state = S_SIZE0;
}

static void emit(struct em_http_chunk_step *s, const char *p, size_t n)
{
	/* at most "\r\n" + 16 hex digits + "\r\n" per step: fits by design */
	memcpy(s->emit + s->emit_len, p, n);
	s->emit_len = (uint8_t)(s->emit_len + n);
}

int em_http_chunk_feed(struct em_http_chunk *c, const char *p, size_t len,
		       struct em_http_chunk_step *s)
{
	size_t i = 0;

	memset(s, 0, sizeof(*s));
	if (c->state == S_DATA)
		return -EINVAL;		/* data pending: move it first */
	if (c->state == S_ERROR)
		return -EBADMSG;
	for (; i < len && c->state != S_DONE; i++) {
		char ch = p[i];

		if (c->state <= S_SIZE_LF && ++c->line > EM_HTTP_CHUNK_LINE_MAX)
			goto bad;
		if (c->state >= S_TR_START && c->state <= S_END_LF &&
		    ++c->trailer > EM_HTTP_TRAILER_MAX)
			goto bad;
		switch (c->state) {
		case S_SIZE0:
		case S_SIZE: {
			int v = hexval(ch);
			if (v >= 0) {
				if (c->size >> 59)	/* would pass 2^63 */
					goto bad;
				c->size = c->size << 4 | (uint64_t)v;
				c->state = S_SIZE;
			} else if (c->state == S_SIZE0) {
				goto bad;		/* empty size */
			} else if (ch == ';') {
				c->state = S_EXT;
			} else if (ch == ' ' || ch == '\t') {
				c->state = S_BWS;
			} else if (ch == '\r') {
				c->state = S_SIZE_LF;
			} else {
				goto bad;
			}
			break;
		}
		case S_BWS:
			if (ch == ';')
				c->state = S_EXT;
			else if (ch != ' ' && ch != '\t')
				goto bad;
			break;
		case S_EXT:
			/* chunk-ext names, values and quoted strings: none may
			 * hold a CTL, so CR ends the line unambiguously */
			if (ch == '\r')
				c->state = S_SIZE_LF;
			else if (!is_text(ch))
				goto bad;
			break;
		case S_SIZE_LF:
			if (ch != '\n')
				goto bad;
			c->line = 0;
			if (c->size == 0) {
				c->state = S_TR_START;
				break;
			}
			char tmp[20];
			int n = snprintf(tmp, sizeof(tmp), "%llx\r\n", (unsigned long long)c->size);
			emit(s, tmp, (size_t)n);
			c->left = c->size;
			c->size = 0;
			c->state = S_DATA;
			s->data = c->left;
			s->consumed = i + 1;
			return 0;
		case S_DATA_CR:
			if (ch != '\r')
				goto bad;	/* data longer than its size */
			c->state = S_DATA_LF;
			break;
		case S_DATA_LF:
			if (ch != '\n')
				goto bad;
			emit(s, "\r\n", 2);
			c->state = S_SIZE0;
			break;
		case S_TR_START:
			if (ch == '\r')
				c->state = S_END_LF;
			else if (is_tchar(ch))
				c->state = S_TR_NAME;
			else
				goto bad;	/* obs-fold, bare LF, junk */
			break;
		case S_TR_NAME:
			if (ch == ':')
				c->state = S_TR_VALUE;
			else if (!is_tchar(ch))
				goto bad;
			break;
		case S_TR_VALUE:
			if (ch == '\r')
				c->state = S_TR_LF;
			else if (!is_text(ch))
				goto bad;
			break;
		case S_TR_LF:
			if (ch != '\n')
				goto bad;
			c->state = S_TR_START;
			break;
		case S_END_LF:
			if (ch != '\n')
				goto bad;
			emit(s, "0\r\n\r\n", 5);
			c->state = S_DONE;
			s->done = true;
			break;
		default:
			goto bad;
		}
	}
	s->consumed = i;
	return 0;
bad:
	c->state = S_ERROR;
	memset(s, 0, sizeof(*s));
	return -EBADMSG;
}

void em_http_chunk_moved(struct em_http_chunk *c, uint64_t n)
{
	if (c->state != S_DATA || n > c->left) {
		c->state = S_ERROR;	/* caller bug: never let it pass silently */
		return;
	}
	c->left -= n;
	if (c->left == 0)
		c->state = S_DATA_CR;
}

uint64_t em_http_chunk_pending(const struct em_http_chunk *c)
{
	return c->state == S_DATA ? c->left : 0;
}

bool em_http_chunk_done(const struct em_http_chunk *c)
{
	return c->state == S_DONE;
}
