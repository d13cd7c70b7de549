/* test-kube-watch.c — the Kubernetes watch stream parser: a recorded stream
 * fed at every split point, byte by byte and in random chunks; limits;
 * hostile lines. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/watch_stream.h"
#include "testlog.h"

/* Every event as "TYPE name rv code", one line each, appended here. */
struct trace {
	char buf[8192];
	size_t len;
	int events;
	int fail_at;		/* callback returns -EIO at this event (1-based), 0 = never */
};

static int record(void *ctx, const struct em_watch_event *ev)
{
	struct trace *t = ctx;
	json_t *meta = json_object_get(ev->object, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	int n;

	ck_assert(json_is_object(ev->object));
	t->events++;
	if (t->fail_at && t->events == t->fail_at)
		return -EIO;
	n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s %s %s %d\n",
		     em_watch_type_name(ev->type), name ? name : "-", rv ? rv : "-", ev->code);
	ck_assert(n > 0 && (size_t)n < sizeof(t->buf) - t->len);
	t->len += (size_t)n;
	return 0;
}

static char *stream;
static size_t stream_len;

static const char expected[] =
	"ADDED web 1001 0\n"
	"ADDED api 1002 0\n"
	"MODIFIED web 1003 0\n"
	"BOOKMARK - 1004 0\n"
	"DELETED api 1005 0\n"
	"ERROR - - 410\n";

static void load_stream(void)
{
	char path[4096];
	const char *dir = getenv("EM_TEST_DATA");
	FILE *f;

	snprintf(path, sizeof(path), "%s/sources/watch-stream.jsonl", dir ? dir : "tests/data");
	f = fopen(path, "rb");
	ck_assert_msg(f, "cannot open %s", path);
	stream = malloc(1 << 16);
	stream_len = fread(stream, 1, 1 << 16, f);
	fclose(f);
	ck_assert_uint_gt(stream_len, 1000);
}

static void free_stream(void)
{
	free(stream);
	stream = NULL;
}

static int feed_all(struct em_watch_stream *ws, const char *p, size_t len)
{
	int ret = em_watch_stream_feed(ws, p, len);
	ck_assert_int_ge(ret, 0);
	return ret;
}

START_TEST(whole_stream)
{
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);

	ck_assert_int_eq(em_watch_stream_feed(ws, stream, stream_len), 6);
	ck_assert_str_eq(t.buf, expected);
	ck_assert_uint_eq(em_watch_stream_pending(ws), 0);
	em_watch_stream_free(ws);
}
END_TEST

/* A chunk boundary anywhere, including inside a UTF-8 sequence. */
START_TEST(every_split_point)
{
	for (size_t cut = 0; cut <= stream_len; cut++) {
		struct trace t = { 0 };
		struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);
		int n = feed_all(ws, stream, cut);

		n += feed_all(ws, stream + cut, stream_len - cut);
		ck_assert_int_eq(n, 6);
		ck_assert_msg(strcmp(t.buf, expected) == 0, "split at %zu: %s", cut, t.buf);
		em_watch_stream_free(ws);
	}
}
END_TEST

START_TEST(byte_by_byte)
{
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);
	int n = 0;

	for (size_t i = 0; i < stream_len; i++) {
		n += feed_all(ws, stream + i, 1);
		/* An event is delivered exactly when its newline arrives. */
		if (stream[i] != '\n')
			ck_assert_uint_gt(em_watch_stream_pending(ws), 0);
	}
	ck_assert_int_eq(n, 6);
	ck_assert_str_eq(t.buf, expected);
	em_watch_stream_free(ws);
}
END_TEST

START_TEST(random_chunks)
{
	unsigned seed = 12345;

	for (int round = 0; round < 300; round++) {
		struct trace t = { 0 };
		struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);
		size_t off = 0;

		while (off < stream_len) {
			size_t n = (size_t)(rand_r(&seed) % 700) + 1;
			if (n > stream_len - off)
				n = stream_len - off;
			feed_all(ws, stream + off, n);
			off += n;
		}
		ck_assert_str_eq(t.buf, expected);
		em_watch_stream_free(ws);
	}
}
END_TEST

/* Every pair of split points within the first two events (three chunks). */
START_TEST(three_chunks)
{
	size_t end = (size_t)((char *)memchr(stream, '\n', stream_len) - stream) + 40;

	for (size_t a = 0; a < end; a += 7)
		for (size_t b = a; b < end; b += 5) {
			struct trace t = { 0 };
			struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);

			feed_all(ws, stream, a);
			feed_all(ws, stream + a, b - a);
			feed_all(ws, stream + b, stream_len - b);
			ck_assert_str_eq(t.buf, expected);
			em_watch_stream_free(ws);
		}
}
END_TEST

START_TEST(crlf_and_blank_lines)
{
	static const char s[] =
		"\n\r\n  \n{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}\r\n"
		"\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\n";
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);

	ck_assert_int_eq(em_watch_stream_feed(ws, s, sizeof(s) - 1), 2);
	ck_assert_str_eq(t.buf, "ADDED a 1 0\nBOOKMARK - 2 0\n");
	em_watch_stream_free(ws);
}
END_TEST

START_TEST(line_too_long)
{
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(64, record, &t);
	static const char ok[] = "{\"type\":\"ADDED\",\"object\":{}}\n";
	char big[200];

	memset(big, 'x', sizeof(big));
	/* In pieces: the buffered tail crosses the limit. */
	ck_assert_int_eq(em_watch_stream_feed(ws, big, 50), 0);
	ck_assert_int_eq(em_watch_stream_feed(ws, big, 50), -EMSGSIZE);
	/* Poisoned until reset. */
	ck_assert_int_eq(em_watch_stream_feed(ws, ok, sizeof(ok) - 1), -EMSGSIZE);
	em_watch_stream_reset(ws);
	ck_assert_int_eq(em_watch_stream_feed(ws, ok, sizeof(ok) - 1), 1);
	/* In one chunk with its newline. */
	big[sizeof(big) - 1] = '\n';
	ck_assert_int_eq(em_watch_stream_feed(ws, big, sizeof(big)), -EMSGSIZE);
	ck_assert_int_eq(t.events, 1);
	em_watch_stream_free(ws);
}
END_TEST

START_TEST(hostile_lines)
{
	static const char *const bad[] = {
		"not json",
		"[1,2,3]",
		"\"string\"",
		"{\"type\":\"ADDED\"}",
		"{\"object\":{}}",
		"{\"type\":\"ADDED\",\"object\":[]}",
		"{\"type\":\"ADDED\",\"object\":null}",
		"{\"type\":5,\"object\":{}}",
		"{\"type\":\"added\",\"object\":{}}",
		"{\"type\":\"SYNC\",\"object\":{}}",
		"{\"type\":\"ADDED\",\"object\":{}} trailing",
		"{\"type\":\"ADDED\",\"object\":{}}{\"type\":\"ADDED\",\"object\":{}}",
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"\xff\xfe\"}}",	/* invalid UTF-8 */
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"\xc3\"}}",	/* truncated UTF-8 */
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"\\ud800\"}}",	/* lone surrogate */
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"x\0y\"}}",
		"{\"type\":\"ADDED\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct trace t = { 0 };
		struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);
		char line[256];
		size_t n = strlen(bad[i]);

		if (i == 15)
			n += 1 + strlen(bad[i] + n + 1);	/* past the embedded NUL */
		memcpy(line, bad[i], n);
		line[n] = '\n';
		ck_assert_msg(em_watch_stream_feed(ws, line, n + 1) == -EBADMSG, "accepted: %s", bad[i]);
		ck_assert_int_eq(t.events, 0);
		em_watch_stream_free(ws);
	}
}
END_TEST

START_TEST(deep_nesting)
{
	size_t depth = 200000;
	char *s = malloc(depth * 2 + 64);
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);
	size_t n = 0;

	n += (size_t)sprintf(s, "{\"type\":\"ADDED\",\"object\":{\"a\":");
	memset(s + n, '[', depth);
	n += depth;
	memset(s + n, ']', depth);
	n += depth;
	s[n++] = '}';
	s[n++] = '}';
	s[n++] = '\n';
	ck_assert_int_eq(em_watch_stream_feed(ws, s, n), -EBADMSG);
	em_watch_stream_free(ws);
	free(s);
}
END_TEST

START_TEST(error_status_codes)
{
	struct em_watch_event ev;
	static const char gone[] =
		"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Gone\"}}";
	static const char nocode[] = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\"}}";
	static const char strcode[] = "{\"type\":\"ERROR\",\"object\":{\"code\":\"410\"}}";
	static const char hugecode[] = "{\"type\":\"ERROR\",\"object\":{\"code\":99999999999}}";

	ck_assert_int_eq(em_watch_parse_line(gone, sizeof(gone) - 1, &ev), 0);
	ck_assert_int_eq(ev.type, EM_WATCH_ERROR);
	ck_assert_int_eq(ev.code, 410);
	json_decref(ev.object);
	ck_assert_int_eq(em_watch_parse_line(nocode, sizeof(nocode) - 1, &ev), 0);
	ck_assert_int_eq(ev.code, 0);
	json_decref(ev.object);
	ck_assert_int_eq(em_watch_parse_line(strcode, sizeof(strcode) - 1, &ev), 0);
	ck_assert_int_eq(ev.code, 0);
	json_decref(ev.object);
	ck_assert_int_eq(em_watch_parse_line(hugecode, sizeof(hugecode) - 1, &ev), 0);
	ck_assert_int_eq(ev.code, 0);
	json_decref(ev.object);
	ck_assert_int_eq(em_watch_parse_line("  \r", 3, &ev), -ENODATA);
}
END_TEST

START_TEST(callback_error_stops)
{
	struct trace t = { .fail_at = 2 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);

	ck_assert_int_eq(em_watch_stream_feed(ws, stream, stream_len), -EIO);
	ck_assert_int_eq(t.events, 2);
	ck_assert_str_eq(t.buf, "ADDED web 1001 0\n");
	ck_assert_int_eq(em_watch_stream_feed(ws, "\n", 1), -EIO);
	em_watch_stream_reset(ws);
	ck_assert_int_eq(em_watch_stream_feed(ws, "\n", 1), 0);
	em_watch_stream_free(ws);
}
END_TEST

/* A connection cut mid-event leaves a tail; a reset drops it so the next
 * connection's first event parses cleanly. */
START_TEST(cut_then_reset)
{
	struct trace t = { 0 };
	struct em_watch_stream *ws = em_watch_stream_new(0, record, &t);

	ck_assert_int_eq(em_watch_stream_feed(ws, stream, 100), 0);
	ck_assert_uint_eq(em_watch_stream_pending(ws), 100);
	em_watch_stream_reset(ws);
	ck_assert_uint_eq(em_watch_stream_pending(ws), 0);
	ck_assert_int_eq(em_watch_stream_feed(ws, stream, stream_len), 6);
	ck_assert_str_eq(t.buf, expected);
	em_watch_stream_free(ws);
}
END_TEST

/* A case reading the recorded watch stream. */
static TCase *stream_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, load_stream, free_stream);
	return tc;
}

Suite *kube_watch_suite(void);
Suite *kube_watch_suite(void)
{
	Suite *s = suite_create("kube_watch");
	TCase *tc = stream_case(s, "splits");
	tcase_add_test(tc, whole_stream);
	tcase_add_test(tc, every_split_point);
	tcase_add_test(tc, byte_by_byte);
	tcase_add_test(tc, random_chunks);
	tcase_add_test(tc, three_chunks);
	tcase_add_test(tc, crlf_and_blank_lines);
	tcase_add_test(tc, cut_then_reset);
	tc = stream_case(s, "hostile");
	tcase_add_test(tc, line_too_long);
	tcase_add_test(tc, hostile_lines);
	tcase_add_test(tc, deep_nesting);
	tc = stream_case(s, "errors");
	tcase_add_test(tc, error_status_codes);
	tcase_add_test(tc, callback_error_stops);
	return s;
}
