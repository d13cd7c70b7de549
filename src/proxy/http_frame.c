/* http_frame.c — pure HTTP/1.x framing (see http_frame.h). Stub: API only. */
#include <errno.h>
#include <string.h>

#include "proxy/http_frame.h"

void em_http_limits_default(struct em_http_limits *lim)
{
	lim->max_head = 8192;
	lim->max_line = 4096;
	lim->max_headers = 100;
}

int em_http_parse_request(const char *buf, size_t len, const struct em_http_limits *lim,
			  struct em_http_head *h)
{
	return -501;
}

int em_http_parse_response(const char *buf, size_t len, const struct em_http_limits *lim,
			   unsigned req_method, bool req_upgrade, struct em_http_head *h)
{
	return -502;
}

enum em_http_sniff em_http_sniff(const char *buf, size_t len)
{
	return EM_HTTP_SNIFF_OTHER;
}

int em_http_header_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val)
{
	return -ENOENT;
}

int em_http_cookie_find(const struct em_http_head *h, const char *buf, const char *name,
			size_t nlen, struct em_http_span *val)
{
	return -ENOENT;
}

int em_http_write_request(const struct em_http_head *h, const char *buf, const char *client,
			  char *out, size_t cap)
{
	return -ENOSPC;
}

int em_http_write_response(const struct em_http_head *h, const char *buf, unsigned flags,
			   char *out, size_t cap)
{
	return -ENOSPC;
}

int em_http_reply(unsigned status, bool close_conn, char *out, size_t cap)
{
	return -ENOSPC;
}

void em_http_chunk_init(struct em_http_chunk *c)
{
	memset(c, 0, sizeof(*c));
}

int em_http_chunk_feed(struct em_http_chunk *c, const char *p, size_t len,
		       struct em_http_chunk_step *s)
{
	memset(s, 0, sizeof(*s));
	return -EBADMSG;
}

void em_http_chunk_moved(struct em_http_chunk *c, uint64_t n)
{
	c->left -= n;
}

uint64_t em_http_chunk_pending(const struct em_http_chunk *c)
{
	return c->left;
}

bool em_http_chunk_done(const struct em_http_chunk *c)
{
	return false;
}
