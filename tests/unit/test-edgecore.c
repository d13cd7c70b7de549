/* test-edgecore.c — the edgecore-db source against databases built here
 * with KubeEdge's table shapes (meta; meta_v2 as gorm creates it) and
 * objects serialised as Kubernetes JSON. Also: changes are picked up, the
 * database is never written, a concurrent writer is not held up, a missing
 * or locked database keeps the last good data. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sources/edgecore_db.h"

/* ---- recording sink --------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *last;		/* "Kind ns/name" -> object of the last replace */
static unsigned replaces, commits, bad_calls;

static int rec_upsert(void *ctx, const char *source, json_t *obj)
{
	bad_calls++;	/* this source only replaces */
	return 0;
}

static int rec_remove(void *ctx, const char *source, const char *kind, const char *ns,
		      const char *name)
{
	bad_calls++;
	return 0;
}

static int rec_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	json_t *it;
	size_t i;

	pthread_mutex_lock(&lock);
	if (kind || strcmp(source, "edgecore-db") != 0)
		bad_calls++;
	json_decref(last);
	last = json_object();
	json_array_foreach(items, i, it) {
		json_t *m = json_object_get(it, "metadata");
		const char *k = json_string_value(json_object_get(it, "kind"));
		const char *ns = json_string_value(json_object_get(m, "namespace"));
		const char *name = json_string_value(json_object_get(m, "name"));
		char key[512];

		if (!k || !name)
			bad_calls++;
		snprintf(key, sizeof(key), "%s %s/%s", k ? k : "?", ns ? ns : "", name ? name : "?");
		if (json_object_get(last, key))
			bad_calls++;	/* duplicates must be resolved by the source */
		json_object_set_new(last, key, json_deep_copy(it));
	}
	replaces++;
	pthread_mutex_unlock(&lock);
	return 0;
}

static int rec_commit(void *ctx, const char *source)
{
	pthread_mutex_lock(&lock);
	commits++;
	pthread_mutex_unlock(&lock);
	return 0;
}

static const struct em_source_sink sink = {
	.upsert = rec_upsert, .remove = rec_remove, .replace = rec_replace, .commit = rec_commit,
};

static bool has(const char *key)
{
	bool r;
	pthread_mutex_lock(&lock);
	r = json_object_get(last, key) != NULL;
	pthread_mutex_unlock(&lock);
	return r;
}

static size_t nobjs(void)
{
	size_t n;
	pthread_mutex_lock(&lock);
	n = json_object_size(last);
	pthread_mutex_unlock(&lock);
	return n;
}

static unsigned nreplaces(void)
{
	unsigned n;
	pthread_mutex_lock(&lock);
	n = replaces;
	pthread_mutex_unlock(&lock);
	return n;
}

/* resourceVersion of a recorded object, or "" */
static const char *rv(const char *key)
{
	static char buf[32];
	pthread_mutex_lock(&lock);
	const char *v = json_string_value(json_object_get(json_object_get(
		json_object_get(last, key), "metadata"), "resourceVersion"));
	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	pthread_mutex_unlock(&lock);
	return buf;
}

#define WAIT_UNTIL(expr, ms) do {					\
		int w_ = 0;						\
		while (!(expr) && w_ < (ms)) {				\
			usleep(5000);					\
			w_ += 5;					\
		}							\
		ck_assert_msg((expr), "timed out waiting for: %s", #expr); \
	} while (0)

/* ---- databases -------------------------------------------------------- */

static char dbpath[64];
static struct em_source_edgecore *E;

/* The table shapes: meta as MetaManager creates it; meta_v2 with the
 * column names of current (gorm) edgecore. */
static const char schema[] =
	"CREATE TABLE meta (key varchar(256) NOT NULL PRIMARY KEY, type varchar(32) NOT NULL DEFAULT '', value text NOT NULL DEFAULT '');"
	"CREATE TABLE meta_v2 (key varchar(256) NOT NULL PRIMARY KEY, group_version_resource varchar(256), namespace varchar(256), name varchar(256), resource_version integer, value text);";

static sqlite3 *db_open(void)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 1000);
	return db;
}

static void exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
}

static void put_meta(sqlite3 *db, const char *key, const char *type, const char *value)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key, type, value) VALUES (?, ?, ?)",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static void put_v2(sqlite3 *db, const char *key, const char *gvr, const char *ns,
		   const char *name, int rvv, const char *value)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta_v2 VALUES (?, ?, ?, ?, ?, ?)",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, gvr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, rvv);
	sqlite3_bind_text(st, 6, value, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

#define SVC(name, rv) \
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"default\",\"resourceVersion\":\"" rv "\"}," \
	"\"spec\":{\"selector\":{\"app\":\"" name "\"},\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}],\"clusterIP\":\"10.96.0.10\"}}"
/* as MetaManager stores them: no kind, no apiVersion */
#define POD(name, rv) \
	"{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"default\",\"resourceVersion\":\"" rv "\",\"labels\":{\"app\":\"web\"}}," \
	"\"spec\":{\"nodeName\":\"edge-1\",\"containers\":[{\"name\":\"c\",\"ports\":[{\"containerPort\":8080}]}]}," \
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.5\",\"hostIP\":\"192.168.1.10\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}"

static void make_db(void)
{
	sqlite3 *db = db_open();

	exec(db, schema);
	exec(db, "BEGIN");
	put_meta(db, "default/service/web", "service", SVC("web", "10"));
	put_meta(db, "default/endpoints/web", "endpoints",
		 "{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"resourceVersion\":\"11\"},"
		 "\"subsets\":[{\"addresses\":[{\"ip\":\"10.244.1.5\"}],\"ports\":[{\"name\":\"http\",\"port\":8080}]}]}");
	put_meta(db, "default/pod/p1", "pod", POD("p1", "12"));
	/* p1 again in the podlist with a newer resourceVersion: that one wins */
	put_meta(db, "default/podlist/web", "podlist", "[" POD("p1", "15") "," POD("p2", "13") "]");
	put_meta(db, "default/configmap/cfg", "configmap", "{\"metadata\":{\"name\":\"cfg\"}}");
	/* type and namespace from the key */
	put_meta(db, "kube-system/service/dns", "",
		 "{\"metadata\":{\"name\":\"dns\",\"resourceVersion\":\"3\"},\"spec\":{\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]}}");
	put_v2(db, "/core/v1/services/default/v2svc", "/v1, Resource=services", "default", "v2svc", 20,
	       "{\"metadata\":{\"name\":\"v2svc\",\"namespace\":\"default\",\"resourceVersion\":\"20\"},\"spec\":{\"ports\":[{\"port\":81}]}}");
	put_v2(db, "/discovery.k8s.io/v1/endpointslices/default/web-abc", "discovery.k8s.io/v1, Resource=endpointslices",
	       "default", "web-abc", 21,
	       "{\"metadata\":{\"name\":\"web-abc\",\"namespace\":\"default\",\"resourceVersion\":\"21\"},\"endpoints\":[]}");
	/* the same Service in meta and meta_v2: the higher resourceVersion */
	put_v2(db, "/core/v1/services/default/web", "/v1, Resource=services", "default", "web", 9, SVC("web", "9"));
	put_v2(db, "/core/v1/pods/default", "/v1, Resource=pods", "default", "null", 0, "[]");	/* list row */
	put_v2(db, "/core/v1/nodes/null/edge-1", "/v1, Resource=nodes", "null", "edge-1", 5, "{}");
	exec(db, "COMMIT");
	sqlite3_close(db);
}

static struct em_edgecore_config cfg(unsigned poll_ms)
{
	struct em_edgecore_config c = { .path = dbpath, .poll_interval_ms = poll_ms, .busy_timeout_ms = 200 };
	return c;
}

static void setup(void)
{
	pthread_mutex_lock(&lock);
	json_decref(last);
	last = json_object();
	replaces = commits = bad_calls = 0;
	pthread_mutex_unlock(&lock);
	snprintf(dbpath, sizeof(dbpath), "/tmp/em-edgecore-test-%d.db", (int)getpid());
	unlink(dbpath);
	E = NULL;
}

static void teardown(void)
{
	char p[80];

	em_source_edgecore_stop(E);
	E = NULL;
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-journal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
	ck_assert_uint_eq(bad_calls, 0);
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(reads_meta_and_meta_v2)
{
	struct em_edgecore_config c = cfg(1000);

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	/* The first read is synchronous. */
	ck_assert_uint_eq(nreplaces(), 1);
	ck_assert_uint_eq(commits, 1);
	ck_assert(has("Service default/web"));
	ck_assert_str_eq(rv("Service default/web"), "10");
	ck_assert(has("Endpoints default/web"));
	ck_assert(has("Pod default/p1"));
	ck_assert_str_eq(rv("Pod default/p1"), "15");
	ck_assert(has("Pod default/p2"));
	ck_assert(has("Service kube-system/dns"));
	ck_assert(has("Service default/v2svc"));
	ck_assert(has("EndpointSlice default/web-abc"));
	ck_assert_uint_eq(nobjs(), 7);
	/* Idle polls deliver nothing. */
	em_source_edgecore_stop(E);
	E = NULL;
}
END_TEST

START_TEST(change_is_picked_up)
{
	struct em_edgecore_config c = cfg(20);
	sqlite3 *db;

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(nreplaces(), 1);
	usleep(1200000);	/* past the racy window: idle polls are stat() only */
	ck_assert_uint_eq(nreplaces(), 1);
	db = db_open();
	put_meta(db, "default/service/new", "service", SVC("new", "30"));
	WAIT_UNTIL(has("Service default/new"), 2000);
	exec(db, "DELETE FROM meta WHERE key = 'default/service/web'");
	exec(db, "DELETE FROM meta_v2 WHERE key = '/core/v1/services/default/web'");
	WAIT_UNTIL(!has("Service default/web"), 2000);
	/* Two quick commits of the same size within one mtime tick. */
	put_meta(db, "default/service/new", "service", SVC("new", "31"));
	put_meta(db, "default/service/new", "service", SVC("new", "32"));
	WAIT_UNTIL(strcmp(rv("Service default/new"), "32") == 0, 2000);
	sqlite3_close(db);
}
END_TEST

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b = malloc(1 << 20);

	ck_assert_ptr_nonnull(f);
	*len = fread(b, 1, 1 << 20, f);
	fclose(f);
	return b;
}

START_TEST(never_written)
{
	struct em_edgecore_config c = cfg(5);
	struct stat before, after;
	unsigned char *a, *b;
	size_t alen, blen;
	char journal[80];

	make_db();
	ck_assert_int_eq(stat(dbpath, &before), 0);
	a = slurp(dbpath, &alen);
	usleep(20000);
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	usleep(1500000);	/* hundreds of polls, racy checks included */
	em_source_edgecore_stop(E);
	E = NULL;
	ck_assert_int_eq(stat(dbpath, &after), 0);
	b = slurp(dbpath, &blen);
	ck_assert_uint_eq(alen, blen);
	ck_assert(memcmp(a, b, alen) == 0);
	ck_assert(before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
		  before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
	snprintf(journal, sizeof(journal), "%s-journal", dbpath);
	ck_assert_int_ne(access(journal, F_OK), 0);
	free(a);
	free(b);
}
END_TEST

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* edgecore keeps writing while we poll as fast as we can: every one of its
 * commits succeeds, none waits anywhere near its busy timeout. */
START_TEST(writer_not_blocked)
{
	struct em_edgecore_config c = cfg(1);
	double worst = 0;
	sqlite3 *db;

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	db = db_open();
	for (int i = 0; i < 150; i++) {
		char key[64], val[512];
		double t0 = now_ms(), dt;

		snprintf(key, sizeof(key), "default/pod/w%d", i);
		snprintf(val, sizeof(val),
			 "{\"metadata\":{\"name\":\"w%d\",\"namespace\":\"default\",\"resourceVersion\":\"%d\"}}",
			 i, 100 + i);
		exec(db, "BEGIN IMMEDIATE");
		put_meta(db, key, "pod", val);
		exec(db, "COMMIT");
		dt = now_ms() - t0;
		if (dt > worst)
			worst = dt;
		usleep(2000);
	}
	sqlite3_close(db);
	ck_assert_msg(worst < 1000, "a commit waited %.1f ms", worst);
	WAIT_UNTIL(has("Pod default/w149"), 2000);
	ck_assert_uint_eq(nobjs(), 7 + 150);
}
END_TEST

START_TEST(missing_then_created_then_replaced)
{
	struct em_edgecore_config c = cfg(20);
	struct em_edgecore_stats st;
	sqlite3 *db;

	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(nreplaces(), 0);
	make_db();
	WAIT_UNTIL(has("Service default/web"), 2000);
	/* The file goes away: the last good data stays. */
	unlink(dbpath);
	usleep(200000);
	ck_assert_uint_eq(nobjs(), 7);
	em_source_edgecore_stats(E, &st);
	ck_assert_uint_ge(st.failures, 1);
	/* A new database at the same path (new inode). */
	db = db_open();
	exec(db, schema);
	put_meta(db, "default/service/solo", "service", SVC("solo", "1"));
	sqlite3_close(db);
	WAIT_UNTIL(has("Service default/solo") && nobjs() == 1, 2000);
}
END_TEST

START_TEST(locked_keeps_last_data)
{
	struct em_edgecore_config c = cfg(20);
	struct em_edgecore_stats st;
	sqlite3 *db;
	unsigned n;

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	db = db_open();
	exec(db, "BEGIN EXCLUSIVE");
	put_meta(db, "default/service/late", "service", SVC("late", "40"));
	n = nreplaces();
	usleep(600000);		/* longer than the source's 200 ms busy timeout */
	ck_assert_uint_eq(nreplaces(), n);
	ck_assert_uint_eq(nobjs(), 7);
	em_source_edgecore_stats(E, &st);
	exec(db, "COMMIT");
	sqlite3_close(db);
	WAIT_UNTIL(has("Service default/late"), 2000);
	ck_assert(has("Service default/web"));
}
END_TEST

START_TEST(bad_rows_skipped)
{
	struct em_edgecore_config c = cfg(1000);
	struct em_edgecore_stats st;
	sqlite3 *db = db_open();

	exec(db, schema);
	put_meta(db, "default/service/ok", "service", SVC("ok", "1"));
	put_meta(db, "default/service/broken", "service", "{\"metadata\":");
	put_meta(db, "default/service/noname", "service", "{\"metadata\":{}}");
	put_meta(db, "default/service/array", "service", "[1]");
	put_meta(db, "default/podlist/x", "podlist", "{\"not\":\"a list\"}");
	put_meta(db, "weird", "service", SVC("weird", "1"));	/* key without ns: still usable */
	put_v2(db, "/core/v1/services", "", "", "", 0, "{}");
	put_v2(db, "/a/b/c/d/e/f/g", "", "", "", 0, "{}");
	sqlite3_close(db);
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert(has("Service default/ok"));
	ck_assert(has("Service default/weird"));
	ck_assert_uint_eq(nobjs(), 2);
	em_source_edgecore_stats(E, &st);
	ck_assert_uint_eq(st.skipped, 4);
}
END_TEST

START_TEST(not_a_database)
{
	json_t *items = NULL;
	int fd = open(dbpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "this is not sqlite, just text long enough to have a header...........", 70), 70);
	close(fd);
	ck_assert_int_lt(em_edgecore_db_read(dbpath, 100, &items), 0);
	ck_assert_ptr_null(items);
	ck_assert_int_eq(em_edgecore_db_read("/nonexistent/edgecore.db", 100, &items), -ENOENT);
	unlink(dbpath);
	make_db();
	ck_assert_int_eq(em_edgecore_db_read(dbpath, 100, &items), 0);
	ck_assert_uint_eq(json_array_size(items), 7);
	json_decref(items);
}
END_TEST

Suite *edgecore_suite(void);
Suite *edgecore_suite(void)
{
	Suite *s = suite_create("edgecore");
	TCase *tc = tcase_create("db");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, reads_meta_and_meta_v2);
	tcase_add_test(tc, change_is_picked_up);
	tcase_add_test(tc, never_written);
	tcase_add_test(tc, writer_not_blocked);
	tcase_add_test(tc, missing_then_created_then_replaced);
	tcase_add_test(tc, locked_keeps_last_data);
	tcase_add_test(tc, bad_rows_skipped);
	tcase_add_test(tc, not_a_database);
	suite_add_tcase(s, tc);
	return s;
}
