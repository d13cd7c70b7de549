/* test-edgecore-bench.c — what the edgecore-db source reads from a database
 * and how long it holds the read lock (not a unit test; built and run by
 * netns-tests/bench-edgecore.sh and netns-tests/edgecore-endpoints.sh).
 *
 * edgecore-bench DB --dump [--merge-legacy]
 *	prints "Kind ns/name" of every object read, sorted, then
 *	"# rows R skipped S ignored I"
 * edgecore-bench DB [RUNS [CHANGES]]
 *	reads the database RUNS times (default 15) and prints how long the
 *	SHARED lock was held at a stretch (the longest read transaction of a
 *	read: median and worst over the runs), next to a peer measured in the
 *	same run: one transaction copying every row of meta and meta_v2, as
 *	the source did before it selected in SQL and paged its reads.
 *	Then runs the source on DB: prints the memory it holds between reads
 *	(RSS growth after its first read, after malloc_trim) next to the text
 *	of the selected rows (what it kept between reads before it kept only
 *	hashes), then updates one pod CHANGES times (its phase Running <->
 *	Pending, in place, so an even count leaves DB as it was) and prints,
 *	per change, the rows the source read, the objects it delivered and the
 *	time of the poll, next to the rows and time of a full read with JSON
 *	parsing (what every change cost before). */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sources/edgecore_db.h"
#include "util/log.h"

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned long n_upserts, n_removes;

static int null_upsert(void *ctx, const char *source, json_t *obj)
{
	n_upserts++;
	return 0;
}

static int null_remove(void *ctx, const char *source, const char *kind, const char *ns,
		       const char *name)
{
	n_removes++;
	return 0;
}

/* Resident memory now, after giving freed memory back. */
static long long rss_bytes(void)
{
	long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	malloc_trim(0);
	if (f) {
		if (fscanf(f, "%lld %lld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

static int null_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	return 0;
}

static int null_commit(void *ctx, const char *source)
{
	return 0;
}

/* The source on DB: the memory it holds between reads, then one pod
 * updated in place CHANGES times, each change polled at once: rows read,
 * objects delivered, time of the poll. full_rows, full_bytes, full_us: a
 * full read (rows, text, time with parsing) measured in the same run. */
static int changes(const char *path, int n, size_t full_rows, size_t full_bytes, long long full_us)
{
	static const char *const sql[] = {
		"UPDATE meta_v2 SET value = replace(value, 'Running', 'Pending') WHERE rowid = "
		"(SELECT min(rowid) FROM meta_v2 WHERE key LIKE '/core/v1/pods/%')",
		"UPDATE meta_v2 SET value = replace(value, 'Pending', 'Running') WHERE rowid = "
		"(SELECT min(rowid) FROM meta_v2 WHERE key LIKE '/core/v1/pods/%')",
	};
	const struct em_source_sink sink = { .upsert = null_upsert, .remove = null_remove,
					     .replace = null_replace, .commit = null_commit };
	/* polled here only: em_source_edgecore_poll */
	struct em_edgecore_config c = { .path = path, .poll_interval_ms = 3600 * 1000 };
	struct em_edgecore_stats st;
	struct em_source_edgecore *e;
	unsigned long rows = 0, objects = 0, full_reads;
	long long rss0 = rss_bytes(), rss1, rss2, poll_us = 0, t0;
	sqlite3 *db;

	if (em_source_edgecore_start(&c, sink, &e) < 0 || sqlite3_open(path, &db) != SQLITE_OK)
		return 1;
	rss1 = rss_bytes();
	sqlite3_busy_timeout(db, 5000);
	em_source_edgecore_stats(e, &st);
	full_reads = st.full_reads;
	for (int i = 0; i < n; i++) {
		if (sqlite3_exec(db, sql[i % 2], NULL, NULL, NULL) != SQLITE_OK || sqlite3_changes(db) != 1) {
			fprintf(stderr, "%s: cannot update a pod of meta_v2\n", path);
			return 1;
		}
		t0 = now_us();
		em_source_edgecore_poll(e);
		poll_us += now_us() - t0;
		em_source_edgecore_stats(e, &st);
		rows += st.rows_read_last;
		objects += st.objects_last;
	}
	sqlite3_close(db);
	rss2 = rss_bytes();
	printf("memory the source holds between reads: %.1f MiB (RSS growth after its first read; "
	       "%.1f MiB after the changes below); the text of the selected rows, which it kept "
	       "before: %.1f MiB; ratio %.2f\n", (rss1 - rss0) / 1048576.0, (rss2 - rss0) / 1048576.0,
	       full_bytes / 1048576.0, full_bytes ? (double)(rss1 - rss0) / (double)full_bytes : 0.0);
	printf("one pod updated %d times: per change %.1f rows read (a full read: %zu rows), "
	       "%.1f objects delivered (%lu upserts, %lu removes, %lu full reads), "
	       "poll %.2f ms (a full read with parsing: %.1f ms; ratio %.4f), "
	       "read lock held at a stretch %.1f ms\n", n, (double)rows / n, full_rows,
	       (double)objects / n, n_upserts, n_removes, st.full_reads - full_reads,
	       poll_us / 1e3 / n, full_us / 1e3, full_us ? (double)poll_us / n / (double)full_us : 0.0,
	       st.lock_us_last / 1e3);
	em_source_edgecore_stop(e);
	return 0;
}

static int dump(const char *path, bool merge)
{
	struct em_edgecore_config c = { .path = path, .merge_legacy = merge };
	struct em_edgecore_read_info info;
	json_t *items, *it;
	char **lines;
	size_t i, n;
	int r = em_edgecore_db_read(&c, &items, &info);

	if (r < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
		return 1;
	}
	n = json_array_size(items);
	lines = calloc(n + 1, sizeof(*lines));
	json_array_foreach(items, i, it) {
		json_t *m = json_object_get(it, "metadata");
		const char *ns = json_string_value(json_object_get(m, "namespace"));
		if (asprintf(&lines[i], "%s %s/%s", json_string_value(json_object_get(it, "kind")),
			     ns ? ns : "",
			     json_string_value(json_object_get(m, "name"))) == -1)
			return 1;
	}
	qsort(lines, n, sizeof(*lines), cmp_str);
	for (i = 0; i < n; i++) {
		printf("%s\n", lines[i]);
		free(lines[i]);
	}
	printf("# rows %zu skipped %lu ignored %lu\n", info.rows, info.skipped, info.ignored);
	free(lines);
	json_decref(items);
	return 0;
}

/* The peer: every row of both tables copied in one read transaction. */
static long long copy_everything(const char *path, size_t *rows, size_t *bytes)
{
	static const char *const sql[] = { "SELECT key, type, value FROM meta",
					   "SELECT * FROM meta_v2" };
	sqlite3 *db;
	long long t0;

	*rows = *bytes = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	t0 = now_us();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (size_t q = 0; q < 2; q++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, sql[q], -1, &st, NULL) != SQLITE_OK)
			continue;
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(st); i++) {
				const void *b = sqlite3_column_blob(st, i);
				size_t len = (size_t)sqlite3_column_bytes(st, i);
				char *copy = malloc(len + 1);
				if (b)
					memcpy(copy, b, len);
				*bytes += len;
				free(copy);
			}
			(*rows)++;
		}
		sqlite3_finalize(st);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	t0 = now_us() - t0;
	sqlite3_close(db);
	return t0;
}

int main(int argc, char **argv)
{
	struct em_edgecore_config c = { 0 };
	struct em_edgecore_read_info info = { 0 };
	long long *ours, *peer, total = 0, t0, held = 0, full_us;
	unsigned txns = 0;
	size_t prow = 0, pbytes = 0, nobj = 0;
	int runs;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DB --dump [--merge-legacy] | %s DB [RUNS [CHANGES]]\n",
			argv[0], argv[0]);
		return 2;
	}
	em_log_set_level(EM_LOG_WARN);
	if (argc >= 3 && strcmp(argv[2], "--dump") == 0)
		return dump(argv[1], argc >= 4 && strcmp(argv[3], "--merge-legacy") == 0);
	runs = argc >= 3 ? atoi(argv[2]) : 15;
	if (runs < 1)
		runs = 1;
	c.path = argv[1];
	ours = calloc((size_t)runs, sizeof(*ours));
	peer = calloc((size_t)runs, sizeof(*peer));
	for (int i = 0; i < runs; i++) {
		json_t *items;
		/* alternate, so both see the same page cache and machine load */
		peer[i] = copy_everything(c.path, &prow, &pbytes);
		t0 = now_us();
		if (em_edgecore_db_read(&c, &items, &info) < 0) {
			fprintf(stderr, "%s: cannot read\n", c.path);
			return 1;
		}
		total += now_us() - t0;
		ours[i] = info.lock.max_us;
		held += info.lock.total_us;
		txns += info.lock.transactions;
		nobj = json_array_size(items);
		json_decref(items);
	}
	qsort(ours, (size_t)runs, sizeof(*ours), cmp_ll);
	qsort(peer, (size_t)runs, sizeof(*peer), cmp_ll);
	printf("objects read: %zu (rows copied %zu, %.1f MiB; skipped %lu, ignored %lu)\n", nobj,
	       info.rows, info.bytes / 1048576.0, info.skipped, info.ignored);
	printf("read lock held at a stretch: median %.1f ms, worst %.1f ms over %d reads\n"
	       "  (per read on average: %.1f transactions, %.1f ms under lock in all, %.1f ms with JSON parsing)\n",
	       ours[runs / 2] / 1e3, ours[runs - 1] / 1e3, runs, (double)txns / runs,
	       held / 1e3 / runs, total / 1e3 / runs);
	printf("peer, every row of both tables copied (%zu rows, %.1f MiB): median %.1f ms, worst %.1f ms\n",
	       prow, pbytes / 1048576.0, peer[runs / 2] / 1e3, peer[runs - 1] / 1e3);
	printf("ratio lock(ours)/lock(peer): %.2f\n",
	       peer[runs / 2] ? (double)ours[runs / 2] / (double)peer[runs / 2] : 0.0);
	free(ours);
	free(peer);
	full_us = total / runs;
	runs = argc >= 4 ? atoi(argv[3]) : 10;
	runs = runs < 2 ? 2 : runs + runs % 2;	/* even: DB ends as it was */
	return changes(c.path, runs, info.rows, info.bytes, full_us);
}
