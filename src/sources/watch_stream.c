/* watch_stream.c — incremental parser for the Kubernetes watch stream.
 *
 * Lines are complete JSON documents, so the only state between chunks is the
 * tail of an unfinished line. A line that is complete within one chunk is
 * parsed in place, without copying; only the tail is buffered. jansson
 * validates UTF-8 and bounds nesting depth, which is what makes hostile input
 * safe here; we bound the line length. */
#include "sources/watch_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct em_watch_stream {
	em_watch_event_fn fn;
	void *ctx;
	size_t max_line;
	char *buf;		/* tail of an unfinished line */
	size_t len, cap;
	int err;		/* sticky error, 0 = healthy */
};

static const char *const type_names[] = {
	[EM_WATCH_ADDED] = "ADDED",
	[EM_WATCH_MODIFIED] = "MODIFIED",
	[EM_WATCH_DELETED] = "DELETED",
	[EM_WATCH_BOOKMARK] = "BOOKMARK",
	[EM_WATCH_ERROR] = "ERROR",
};

const char *em_watch_type_name(enum em_watch_type type)
{
	if ((unsigned)type < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[type];
	return "?";
}

struct em_watch_stream *em_watch_stream_new(size_t max_line, em_watch_event_fn fn, void *ctx)
{
	struct em_watch_stream *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return NULL;
	ws->fn = fn;
	ws->ctx = ctx;
	ws->max_line = max_line ? max_line : EM_WATCH_MAX_LINE_DEFAULT;
	return ws;
}

void em_watch_stream_free(struct em_watch_stream *ws)
{
	if (!ws)
		return;
	free(ws->buf);
	free(ws);
}

void em_watch_stream_reset(struct em_watch_stream *ws)
{
	ws->len = 0;
	ws->err = 0;
	/* Give back a buffer a huge line grew, so one big event does not pin
	 * megabytes for the life of the connection. */
	if (ws->cap > 65536) {
		free(ws->buf);
		ws->buf = NULL;
		ws->cap = 0;
	}
}

size_t em_watch_stream_pending(const struct em_watch_stream *ws)
{
	return ws->len;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int em_watch_parse_line(const char *line, size_t len, struct em_watch_event *ev)
{
	json_t *root, *type, *object, *code;
	const char *t;
	size_t i;

	while (len > 0 && is_space(line[len - 1]))
		len--;
	for (i = 0; i < len && is_space(line[i]); i++)
		;
	if (i == len)
		return -ENODATA;

	root = json_loadb(line, len, 0, NULL);
	if (!root)
		return -EBADMSG;
	type = json_object_get(root, "type");
	object = json_object_get(root, "object");
	if (!json_is_object(root) || !json_is_string(type) || !json_is_object(object))
		goto bad;
	t = json_string_value(type);
	for (i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (strcmp(t, type_names[i]) == 0)
			break;
	if (i == sizeof(type_names) / sizeof(type_names[0]))
		goto bad;

	ev->type = (enum em_watch_type)i;
	ev->code = 0;
	if (ev->type == EM_WATCH_ERROR) {
		code = json_object_get(object, "code");
		if (json_is_integer(code) && json_integer_value(code) > 0 &&
		    json_integer_value(code) < 1000)
			ev->code = (int)json_integer_value(code);
	}
	ev->object = json_incref(object);
	json_decref(root);
	return 0;
bad:
	json_decref(root);
	return -EBADMSG;
}

/* Returns 1 if an event was delivered, 0 for a blank line, or -errno. */
static int handle_line(struct em_watch_stream *ws, const char *line, size_t len)
{
	struct em_watch_event ev;
	int ret = em_watch_parse_line(line, len, &ev);

	if (ret == -ENODATA)
		return 0;
	if (ret < 0)
		return ret;
	ret = ws->fn(ws->ctx, &ev);
	json_decref(ev.object);
	return ret < 0 ? ret : 1;
}

static int append(struct em_watch_stream *ws, const char *p, size_t n)
{
	if (n > ws->max_line - ws->len)
		return -EMSGSIZE;
	if (ws->len + n > ws->cap) {
		size_t cap = ws->cap ? ws->cap : 4096;
		char *nb;

		while (cap < ws->len + n)
			cap = cap > ws->max_line / 2 ? ws->max_line : cap * 2;
		nb = realloc(ws->buf, cap);
		if (!nb)
			return -ENOMEM;
		ws->buf = nb;
		ws->cap = cap;
	}
	memcpy(ws->buf + ws->len, p, n);
	ws->len += n;
	return 0;
}

int em_watch_stream_feed(struct em_watch_stream *ws, const void *data, size_t len)
{
	const char *p = data;
	int delivered = 0, ret;

	if (ws->err)
		return ws->err;
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t seg;

		if (!nl) {
			ret = append(ws, p, len);
			if (ret < 0)
				goto fail;
			break;
		}
		seg = (size_t)(nl - p);
		if (ws->len == 0) {
			if (seg > ws->max_line) {
				ret = -EMSGSIZE;
				goto fail;
			}
			ret = handle_line(ws, p, seg);
		} else {
			ret = append(ws, p, seg);
			if (ret < 0)
				goto fail;
			ret = handle_line(ws, ws->buf, ws->len);
			ws->len = 0;
		}
		if (ret < 0)
			goto fail;
		delivered += ret;
		p = nl + 1;
		len -= seg + 1;
	}
	return delivered;
fail:
	ws->err = ret;
	ws->len = 0;
	return ret;
}
