/* test-source-file.c — the file source and writers that take their time:
 * a file open for writing is not read until closed (bounded), an emptied
 * and closed file still removes its objects. The sink records every call,
 * so "the service was never lost" is checked on every replace, not sampled. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sources/source_file.h"
#include "timing.h"
#include "testlog.h"

Suite *source_file_suite(void);

#define MAX_REC 64

struct rec {
	char source[256];
	size_t n_items;
	char *dump;			/* items as compact JSON */
	long at_ms;			/* since the test began */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rec recs[MAX_REC];
static size_t n_recs, n_commits;
static long t_begin;
static char dir[64];

static long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rec_upsert(void *ctx, const char *source, json_t *obj)
{
	(void)ctx, (void)source, (void)obj;
	return -ENOTSUP;
}

static int rec_remove(void *ctx, const char *source, const char *kind, const char *ns,
		      const char *name)
{
	(void)ctx, (void)source, (void)kind, (void)ns, (void)name;
	return -ENOTSUP;
}

static int rec_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	(void)ctx, (void)kind;
	pthread_mutex_lock(&mu);
	if (n_recs < MAX_REC) {
		struct rec *r = &recs[n_recs++];
		snprintf(r->source, sizeof(r->source), "%s", source);
		r->n_items = json_array_size(items);
		r->dump = json_dumps(items, JSON_COMPACT);
		r->at_ms = mono_ms() - t_begin;
	}
	pthread_mutex_unlock(&mu);
	return 0;
}

static int rec_commit(void *ctx, const char *source)
{
	(void)ctx, (void)source;
	pthread_mutex_lock(&mu);
	n_commits++;
	pthread_mutex_unlock(&mu);
	return 0;
}

static const struct em_source_sink sink = {
	.upsert = rec_upsert, .remove = rec_remove, .replace = rec_replace, .commit = rec_commit,
};

static size_t count(void)
{
	pthread_mutex_lock(&mu);
	size_t n = n_recs;
	pthread_mutex_unlock(&mu);
	return n;
}

/* Waits up to ms for the number of replaces to exceed n; the new count. */
static size_t wait_more(size_t n, int ms)
{
	for (int i = 0; i < ms / 10 && count() <= n; i++)
		usleep(10000);
	return count();
}

static char *path_of(const char *name)
{
	static char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static void put(const char *name, const char *text)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path_of(name)), 0);
}

static void wr(int fd, const char *text)
{
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void setup(void)
{
	n_recs = n_commits = 0;
	t_begin = mono_ms();
	strcpy(dir, "/tmp/em-srcfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	for (size_t i = 0; i < n_recs; i++)
		free(recs[i].dump);
	const char *names[] = { "a.yaml", "b.yaml", ".e.yaml.tmp" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(path_of(names[i]));
	rmdir(dir);
}

#define SVC(name) "kind: Service\nmetadata: {name: " name "}\nspec: {ports: [{port: 80}]}\n---\n"
#define EP(name, ip) \
	"kind: Endpoints\nmetadata: {name: " name "}\nsubsets: [{addresses: [{ip: " ip "}], ports: [{port: 80}]}]\n"

/* `slow-cmd > a.yaml`: truncated, 400 ms empty, half written, 400 ms more,
 * then the rest and the close. Only the complete file may be handed on. */
START_TEST(slow_inplace_writer_never_loses_objects)
{
	struct em_source_file *sf;
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_int_eq(em_source_file_start(dir, sink, &sf), 0);
	ck_assert_uint_eq(count(), 1);
	ck_assert_uint_eq(recs[0].n_items, 2);

	int fd = open(path_of("a.yaml"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	usleep(400000);
	ck_assert_uint_eq(count(), 1);
	wr(fd, SVC("a"));
	usleep(400000);
	ck_assert_uint_eq(count(), 1);
	wr(fd, EP("a", "10.0.0.2"));
	long closed_at = mono_ms() - t_begin;
	ck_assert_int_eq(close(fd), 0);
	size_t n = wait_more(1, 3000);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(recs[1].n_items, 2);
	ck_assert_ptr_nonnull(strstr(recs[1].dump, "10.0.0.2"));
	printf("slow writer: read %ld ms after its close\n", recs[1].at_ms - closed_at);
	ck_assert_int_lt(recs[1].at_ms - closed_at, em_test_ms(1000));

	/* A new file written slowly is held the same way. */
	fd = open(path_of("b.yaml"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ck_assert_int_ne(fd, -1);
	wr(fd, SVC("b"));
	usleep(400000);
	wr(fd, EP("b", "10.0.0.3"));
	ck_assert_int_eq(close(fd), 0);
	usleep(400000);
	em_source_file_stop(sf);
	for (size_t i = 0; i < n_recs; i++)
		ck_assert_msg(recs[i].n_items == 2, "replace %zu of %s had %zu objects: %s", i,
			      recs[i].source, recs[i].n_items, recs[i].dump);
	ck_assert_ptr_nonnull(strstr(recs[n_recs - 1].source, "/b.yaml"));
}
END_TEST

/* The normal in-place rewrite keeps its ~100 ms debounce. */
START_TEST(fast_inplace_rewrite_debounced)
{
	struct em_source_file *sf;
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_int_eq(em_source_file_start(path_of("a.yaml"), sink, &sf), 0);
	long t0 = mono_ms() - t_begin;
	FILE *f = fopen(path_of("a.yaml"), "w");
	ck_assert_ptr_nonnull(f);
	fputs(SVC("a") EP("a", "10.0.0.4"), f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_uint_eq(wait_more(1, 3000), 2);
	ck_assert_ptr_nonnull(strstr(recs[1].dump, "10.0.0.4"));
	printf("fast in-place rewrite: read after %ld ms\n", recs[1].at_ms - t0);
	ck_assert_int_lt(recs[1].at_ms - t0, em_test_ms(600));
	em_source_file_stop(sf);
}
END_TEST

/* `: > a.yaml` and a slow writer that writes nothing: emptied and closed
 * means no objects, right after the close. */
START_TEST(emptied_and_closed_removes_objects)
{
	struct em_source_file *sf;
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_int_eq(em_source_file_start(dir, sink, &sf), 0);
	int fd = open(path_of("a.yaml"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	usleep(400000);
	ck_assert_uint_eq(count(), 1);
	long closed_at = mono_ms() - t_begin;
	ck_assert_int_eq(close(fd), 0);
	ck_assert_uint_eq(wait_more(1, 3000), 2);
	ck_assert_uint_eq(recs[1].n_items, 0);
	ck_assert_int_lt(recs[1].at_ms - closed_at, em_test_ms(1000));

	/* Back, then emptied at once. */
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_uint_eq(wait_more(2, 3000), 3);
	ck_assert_uint_eq(recs[2].n_items, 2);
	fd = open(path_of("a.yaml"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(close(fd), 0);
	ck_assert_uint_eq(wait_more(3, 3000), 4);
	ck_assert_uint_eq(recs[3].n_items, 0);

	/* Back, then an empty file renamed over it. */
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_uint_eq(wait_more(4, 3000), 5);
	long t0 = mono_ms() - t_begin;
	put("a.yaml", "");
	ck_assert_uint_eq(wait_more(5, 3000), 6);
	ck_assert_uint_eq(recs[5].n_items, 0);
	ck_assert_int_lt(recs[5].at_ms - t0, em_test_ms(1000));

	/* And deleted files still take their objects away. */
	put("b.yaml", SVC("b") EP("b", "10.0.0.1"));
	ck_assert_uint_eq(wait_more(6, 3000), 7);
	ck_assert_int_eq(unlink(path_of("b.yaml")), 0);
	ck_assert_uint_eq(wait_more(7, 3000), 8);
	ck_assert_uint_eq(recs[7].n_items, 0);
	ck_assert_ptr_nonnull(strstr(recs[7].source, "/b.yaml"));
	em_source_file_stop(sf);
}
END_TEST

/* A writer that never closes: read as it is once the 5 s bound is over. */
START_TEST(never_closed_writer_read_after_bound)
{
	struct em_source_file *sf;
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_int_eq(em_source_file_start(path_of("a.yaml"), sink, &sf), 0);
	int fd = open(path_of("a.yaml"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	long t0 = mono_ms() - t_begin;
	wr(fd, SVC("a") EP("a", "10.0.0.5"));
	usleep(4000000);
	ck_assert_uint_eq(count(), 1);
	ck_assert_uint_eq(wait_more(1, 4000), 2);
	printf("never-closed writer: read after %ld ms\n", recs[1].at_ms - t0);
	ck_assert_int_ge(recs[1].at_ms - t0, 4900);
	ck_assert_int_lt(recs[1].at_ms - t0, em_test_ms(6500));
	ck_assert_ptr_nonnull(strstr(recs[1].dump, "10.0.0.5"));
	/* Its close reads it again (same content): no harm, no hold. */
	ck_assert_int_eq(close(fd), 0);
	ck_assert_uint_eq(wait_more(2, 3000), 3);
	ck_assert_uint_eq(recs[2].n_items, 2);
	em_source_file_stop(sf);
}
END_TEST

/* Truncated and left open, empty: after the bound the file counts as empty. */
START_TEST(never_closed_empty_read_after_bound)
{
	struct em_source_file *sf;
	put("a.yaml", SVC("a") EP("a", "10.0.0.1"));
	ck_assert_int_eq(em_source_file_start(dir, sink, &sf), 0);
	int fd = open(path_of("a.yaml"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	long t0 = mono_ms() - t_begin;
	usleep(4000000);
	ck_assert_uint_eq(count(), 1);
	ck_assert_uint_eq(wait_more(1, 4000), 2);
	ck_assert_int_ge(recs[1].at_ms - t0, 4900);
	ck_assert_uint_eq(recs[1].n_items, 0);
	/* Nothing more while it stays open and untouched. */
	usleep(300000);
	ck_assert_uint_eq(count(), 2);
	ck_assert_int_eq(close(fd), 0);
	em_source_file_stop(sf);
}
END_TEST

Suite *source_file_suite(void)
{
	Suite *s = suite_create("source_file");
	TCase *tc = em_test_tcase(s, "writers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, slow_inplace_writer_never_loses_objects);
	tcase_add_test(tc, fast_inplace_rewrite_debounced);
	tcase_add_test(tc, emptied_and_closed_removes_objects);
	tcase_add_test(tc, never_closed_writer_read_after_bound);
	tcase_add_test(tc, never_closed_empty_read_after_bound);
	return s;
}
