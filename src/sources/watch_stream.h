/* watch_stream.h — incremental parser for the Kubernetes watch stream.
 *
 * A watch response body is newline-delimited JSON, one event per line:
 *   {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}
 * It arrives in arbitrary chunks (split anywhere: mid-line, mid-UTF-8,
 * several events per chunk). Pure code: no I/O, no threads. */
#ifndef EM_SOURCES_WATCH_STREAM_H
#define EM_SOURCES_WATCH_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Default limit on one event line (a huge ConfigMap-like object is the
 * worst legitimate case; Services/Pods are far below it). */
#define EM_WATCH_MAX_LINE_DEFAULT (16u << 20)

enum em_watch_type {
	EM_WATCH_ADDED,
	EM_WATCH_MODIFIED,
	EM_WATCH_DELETED,
	EM_WATCH_BOOKMARK,
	EM_WATCH_ERROR,
};

struct em_watch_event {
	enum em_watch_type type;
	/* Borrowed; valid during the callback only (take a reference to keep).
	 * Always a JSON object. */
	json_t *object;
	/* ERROR only: the Status "code" (410 = Gone / Expired: relist), else 0. */
	int code;
};

/* Called once per complete event, in stream order. A negative return stops
 * the feed, which returns that value. */
typedef int (*em_watch_event_fn)(void *ctx, const struct em_watch_event *ev);

struct em_watch_stream;

/* max_line 0 = EM_WATCH_MAX_LINE_DEFAULT. NULL + errno on failure. */
struct em_watch_stream *em_watch_stream_new(size_t max_line, em_watch_event_fn fn, void *ctx);
void em_watch_stream_free(struct em_watch_stream *ws);

/* Feed the next chunk. Returns the number of events delivered, or:
 *   -EMSGSIZE  a line exceeded max_line;
 *   -EBADMSG   a line is not a well-formed watch event;
 *   the callback's negative value.
 * After an error the stream is poisoned (every later feed returns the same
 * error) until em_watch_stream_reset(): an event was lost, so the caller's
 * view may be stale and it must reconnect (and the caller decides whether
 * to relist). Events before the bad line have been delivered. */
int em_watch_stream_feed(struct em_watch_stream *ws, const void *data, size_t len);

/* Forget buffered bytes and any error (a new connection starts). */
void em_watch_stream_reset(struct em_watch_stream *ws);

/* Bytes of an incomplete line held (a stream cut mid-event leaves >0). */
size_t em_watch_stream_pending(const struct em_watch_stream *ws);

/* Parse one complete line (without the newline) into *ev; on success the
 * caller owns ev->object (json_decref it). Blank lines are -ENODATA.
 * Exposed for tests and the fuzzer. */
int em_watch_parse_line(const char *line, size_t len, struct em_watch_event *ev);

const char *em_watch_type_name(enum em_watch_type type);

#endif
