/* http_frame_write.c — heads to send on, and generated replies.
 *
 * Writers copy the end-to-end fields of a parsed head into a caller buffer
 * and add the fields the forwarder owns: the framing header (written from
 * our reading of the message, never passed through), X-Forwarded-*, and
 * Connection. Nothing is allocated; a full buffer is -ENOSPC. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proxy/http_frame.h"

struct out {
	char *p;
	size_t cap, len;
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || o->cap - o->len < n) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putspan(struct out *o, const char *buf, struct em_http_span s)
{
	put(o, buf + s.off, s.len);
}

/* Decimal digits of v, at least `width` of them (zero-padded): the three
 * numbers a head carries, without vsnprintf (a profile of 1 KiB keep-alive
 * requests showed it at ~2 % of the daemon's CPU). */
static void putu(struct out *o, uint64_t v, unsigned width)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v || sizeof(tmp) - i < width);
	put(o, tmp + i, sizeof(tmp) - i);
}

static int finish(struct out *o)
{
	return o->full ? -ENOSPC : (int)o->len;
}

/* Every header the forwarder does not own, as "name: value". */
static void put_end_to_end(struct out *o, const struct em_http_head *h, const char *buf)
{
	for (uint32_t i = 0; i < h->nheaders; i++) {
		const struct em_http_header *hd = &h->hdr[i];
		if (hd->flags & EM_HTTP_HDR_HOP)
			continue;
		putspan(o, buf, hd->name);
		put(o, ": ", 2);
		putspan(o, buf, hd->value);
		put(o, "\r\n", 2);
	}
}

static void put_upgrade(struct out *o, const struct em_http_head *h, const char *buf)
{
	puts_(o, "Connection: Upgrade\r\n");
	for (uint32_t i = 0; i < h->nheaders; i++) {
		if (!(h->hdr[i].flags & EM_HTTP_HDR_UPGRADE))
			continue;
		puts_(o, "Upgrade: ");
		putspan(o, buf, h->hdr[i].value);
		put(o, "\r\n", 2);
	}
}

/* Content-Length from our number; Transfer-Encoding as one field holding
 * the codings received (validated: a list ending in chunked), so that a
 * gzip transfer coding under the chunking is not lost on the way. */
static void put_framing(struct out *o, const struct em_http_head *h, const char *buf)
{
	bool first = true;

	if (h->body == EM_HTTP_BODY_LENGTH) {
		put(o, "Content-Length: ", 16);
		putu(o, h->content_length, 1);
		put(o, "\r\n", 2);
	} else if (h->body == EM_HTTP_BODY_CHUNKED) {
		for (uint32_t i = 0; i < h->nheaders; i++) {
			if (!(h->hdr[i].flags & EM_HTTP_HDR_TE))
				continue;
			puts_(o, first ? "Transfer-Encoding: " : ", ");
			putspan(o, buf, h->hdr[i].value);
			first = false;
		}
		put(o, "\r\n", 2);
	}
}

int em_http_write_request(const struct em_http_head *h, const char *buf, const char *client,
			  char *out, size_t cap)
{
	struct out o = { .p = out, .cap = cap };
	bool xff = false;

	putspan(&o, buf, h->method_s);
	put(&o, " ", 1);
	putspan(&o, buf, h->target);
	put(&o, " HTTP/1.", 8);
	putu(&o, h->minor, 1);
	put(&o, "\r\n", 2);
	put_end_to_end(&o, h, buf);

	/* X-Forwarded-For: the values received, in order, then the client */
	for (uint32_t i = 0; i < h->nheaders; i++) {
		const struct em_http_header *hd = &h->hdr[i];
		if (!(hd->flags & EM_HTTP_HDR_XFF) || hd->value.len == 0)
			continue;
		puts_(&o, xff ? ", " : "X-Forwarded-For: ");
		putspan(&o, buf, hd->value);
		xff = true;
	}
	if (client && *client) {
		puts_(&o, xff ? ", " : "X-Forwarded-For: ");
		puts_(&o, client);
		xff = true;
	}
	if (xff)
		put(&o, "\r\n", 2);
	puts_(&o, "X-Forwarded-Proto: http\r\n");

	put_framing(&o, h, buf);
	if (h->upgrade)
		put_upgrade(&o, h, buf);
	else
		puts_(&o, "Connection: keep-alive\r\n");
	put(&o, "\r\n", 2);
	return finish(&o);
}

int em_http_write_response(const struct em_http_head *h, const char *buf, unsigned flags,
			   char *out, size_t cap)
{
	struct out o = { .p = out, .cap = cap };

	/* RFC 9110 §15.2: no 1xx to an HTTP/1.0 client */
	if (h->interim && (flags & EM_HTTP_W_CLIENT_10))
		return 0;
	/* RFC 9110 §6.2: an intermediary sends its own version */
	put(&o, "HTTP/1.1 ", 9);
	putu(&o, h->status, 3);
	put(&o, " ", 1);
	putspan(&o, buf, h->reason);
	put(&o, "\r\n", 2);
	put_end_to_end(&o, h, buf);
	if (h->interim) {
		put(&o, "\r\n", 2);
		return finish(&o);
	}
	put_framing(&o, h, buf);
	if (h->status == 101)
		put_upgrade(&o, h, buf);
	else if (h->body == EM_HTTP_BODY_TUNNEL)
		;	/* 2xx to CONNECT: the tunnel follows, no connection option */
	else if ((flags & EM_HTTP_W_CLOSE) || h->body == EM_HTTP_BODY_CLOSE)
		puts_(&o, "Connection: close\r\n");
	else if (flags & EM_HTTP_W_CLIENT_10)
		puts_(&o, "Connection: keep-alive\r\n");
	put(&o, "\r\n", 2);
	return finish(&o);
}

static const char *reason(unsigned status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status >= 500 ? "Server Error" : "Error";
	}
}

int em_http_reply(unsigned status, bool close_conn, char *out, size_t cap)
{
	const char *r;
	int n;

	if (status < 100 || status > 599)
		return -EINVAL;
	r = reason(status);
	/* body: the reason and a newline, e.g. "Bad Gateway\n" */
	n = snprintf(out, cap,
		     "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "%s\r\n%s\n",
		     status, r, strlen(r) + 1, close_conn ? "Connection: close\r\n" : "", r);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}
