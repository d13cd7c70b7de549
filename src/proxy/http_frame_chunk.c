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

/* Each function below takes one byte in the states it names and returns the
 * next state, S_ERROR for bad framing. */

/* S_SIZE0 .. S_EXT: a chunk-size line up to its CR. */
static int size_line(struct em_http_chunk *c, char ch)
{
	int v;

	switch (c->state) {
	case S_SIZE0:
	case S_SIZE:
		v = hexval(ch);
		if (v >= 0) {
			if (c->size >> 59)	/* would pass 2^63 */
				return S_ERROR;
			c->size = c->size << 4 | (uint64_t)v;
			return S_SIZE;
		}
		if (c->state == S_SIZE0)
			return S_ERROR;		/* empty size */
		if (ch == ';')
			return S_EXT;
		if (ch == ' ' || ch == '\t')
			return S_BWS;
		return ch == '\r' ? S_SIZE_LF : S_ERROR;
	case S_BWS:
		if (ch == ';')
			return S_EXT;
		return ch == ' ' || ch == '\t' ? S_BWS : S_ERROR;
	default:	/* S_EXT */
		/* chunk-ext names, values and quoted strings: none may hold a
		 * CTL, so CR ends the line unambiguously */
		if (ch == '\r')
			return S_SIZE_LF;
		return is_text(ch) ? S_EXT : S_ERROR;
	}
}

/* S_SIZE_LF: the LF ending a size line. The last chunk goes on to the
 * trailers; any other emits its size line and its data follows. */
static int size_line_end(struct em_http_chunk *c, char ch, struct em_http_chunk_step *s)
{
	char tmp[20];
	int n;

	if (ch != '\n')
		return S_ERROR;
	c->line = 0;
	if (c->size == 0)
		return S_TR_START;
	n = snprintf(tmp, sizeof(tmp), "%llx\r\n", (unsigned long long)c->size);
	emit(s, tmp, (size_t)n);
	c->left = c->size;
	c->size = 0;
	s->data = c->left;
	return S_DATA;
}

/* S_DATA_CR, S_DATA_LF: the CRLF after chunk data. */
static int data_end(int state, char ch, struct em_http_chunk_step *s)
{
	if (state == S_DATA_CR) {
		if (ch != '\r')
			return S_ERROR;	/* data longer than its size */
		return S_DATA_LF;
	}
	if (ch != '\n')
		return S_ERROR;
	emit(s, "\r\n", 2);
	return S_SIZE0;
}

/* S_TR_START .. S_END_LF: trailer lines, checked and dropped, then the
 * final CRLF, which emits the canonical last chunk. */
static int trailers(int state, char ch, struct em_http_chunk_step *s)
{
	switch (state) {
	case S_TR_START:
		if (ch == '\r')
			return S_END_LF;
		return is_tchar(ch) ? S_TR_NAME : S_ERROR;	/* obs-fold, bare LF, junk */
	case S_TR_NAME:
		if (ch == ':')
			return S_TR_VALUE;
		return is_tchar(ch) ? S_TR_NAME : S_ERROR;
	case S_TR_VALUE:
		if (ch == '\r')
			return S_TR_LF;
		return is_text(ch) ? S_TR_VALUE : S_ERROR;
	case S_TR_LF:
		return ch == '\n' ? S_TR_START : S_ERROR;
	default:	/* S_END_LF */
		if (ch != '\n')
			return S_ERROR;
		emit(s, "0\r\n\r\n", 5);
		s->done = true;
		return S_DONE;
	}
}

/* Any framing state: count the byte against the line and trailer limits,
 * then take it. */
static int next_state(struct em_http_chunk *c, char ch, struct em_http_chunk_step *s)
{
	if (c->state <= S_SIZE_LF && ++c->line > EM_HTTP_CHUNK_LINE_MAX)
		return S_ERROR;
	if (c->state >= S_TR_START && c->state <= S_END_LF &&
	    ++c->trailer > EM_HTTP_TRAILER_MAX)
		return S_ERROR;
	switch (c->state) {
	case S_SIZE0:
	case S_SIZE:
	case S_BWS:
	case S_EXT:
		return size_line(c, ch);
	case S_SIZE_LF:
		return size_line_end(c, ch, s);
	case S_DATA_CR:
	case S_DATA_LF:
		return data_end(c->state, ch, s);
	case S_TR_START:
	case S_TR_NAME:
	case S_TR_VALUE:
	case S_TR_LF:
	case S_END_LF:
		return trailers(c->state, ch, s);
	default:
		return S_ERROR;
	}
}

int em_http_chunk_feed(struct em_http_chunk *c, const char *p, size_t len,
		       struct em_http_chunk_step *s)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	if (c->state == S_DATA)
		return -EINVAL;		/* data pending: move it first */
	if (c->state == S_ERROR)
		return -EBADMSG;
	for (i = 0; i < len && c->state != S_DONE; i++) {
		c->state = (uint8_t)next_state(c, p[i], s);
		if (c->state == S_ERROR) {
			memset(s, 0, sizeof(*s));
			return -EBADMSG;
		}
		if (c->state == S_DATA) {
			/* a size line ended: the caller moves the data first */
			s->consumed = i + 1;
			return 0;
		}
	}
	s->consumed = i;
	return 0;
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
