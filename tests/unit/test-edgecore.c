/* test-edgecore.c — the edgecore-db source against databases built here
 * with KubeEdge's table shapes (meta; meta_v2 as beego and as gorm create
 * it, and upgraded: both column sets) and objects serialised as Kubernetes
 * JSON, with and without kind/apiVersion. Also: rows of other kinds and
 * APIs never leave the database, stale legacy rows are left out, changes
 * are picked up, the database is never written, a concurrent writer is not
 * held up, a missing or locked database and a hot journal keep the last
 * good data. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sqlite3.h>

#include "registry/registry.h"
#include "sources/edgecore_db.h"
#include "timing.h"
#include "testlog.h"

/* ---- recording sink --------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *last;		/* "Kind ns/name" -> object, as the sink holds them */
static unsigned replaces, commits, bad_calls, upserts, removes;

/* "Kind ns/name" of an object; false if it lacks kind or name. */
static bool obj_key(json_t *it, char *key, size_t size)
{
	json_t *m = json_object_get(it, "metadata");
	const char *k = json_string_value(json_object_get(it, "kind"));
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	const char *name = json_string_value(json_object_get(m, "name"));

	snprintf(key, size, "%s %s/%s", k ? k : "?", ns ? ns : "", name ? name : "?");
	return k && name;
}

static int rec_upsert(void *ctx, const char *source, json_t *obj)
{
	char key[512];

	pthread_mutex_lock(&lock);
	if (!obj_key(obj, key, sizeof(key)) || strcmp(source, "edgecore-db") != 0 || !last)
		bad_calls++;
	else
		json_object_set_new(last, key, json_deep_copy(obj));
	upserts++;
	pthread_mutex_unlock(&lock);
	return 0;
}

static int rec_remove(void *ctx, const char *source, const char *kind, const char *ns,
		      const char *name)
{
	char key[512];

	pthread_mutex_lock(&lock);
	snprintf(key, sizeof(key), "%s %s/%s", kind, ns, name);
	/* only what the source delivered before can go */
	if (strcmp(source, "edgecore-db") != 0 || !last || json_object_del(last, key) != 0)
		bad_calls++;
	removes++;
	pthread_mutex_unlock(&lock);
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
		char key[512];

		if (!obj_key(it, key, sizeof(key)))
			bad_calls++;
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

static void put_v2_svc(sqlite3 *db, const char *name, int rvv, const char *value)
{
	char key[128];
	snprintf(key, sizeof(key), "/core/v1/services/default/%s", name);
	put_v2(db, key, "/v1, Resource=services", "default", name, rvv, value);
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
	/* a type we do not read, even though the key looks like a service */
	put_meta(db, "kube-system/service/dns", "",
		 "{\"metadata\":{\"name\":\"dns\",\"resourceVersion\":\"3\"},\"spec\":{\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]}}");
	put_v2(db, "/core/v1/services/default/v2svc", "/v1, Resource=services", "default", "v2svc", 20,
	       "{\"metadata\":{\"name\":\"v2svc\",\"namespace\":\"default\",\"resourceVersion\":\"20\"},\"spec\":{\"ports\":[{\"port\":81}]}}");
	put_v2(db, "/discovery.k8s.io/v1/endpointslices/default/web-abc", "discovery.k8s.io/v1, Resource=endpointslices",
	       "default", "web-abc", 21,
	       "{\"metadata\":{\"name\":\"web-abc\",\"namespace\":\"default\",\"resourceVersion\":\"21\"},\"endpoints\":[]}");
	/* the same Service in meta and meta_v2: meta_v2 holds services, so
	 * the meta row is stale and not read (with merge_legacy: the higher
	 * resourceVersion) */
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
	replaces = commits = bad_calls = upserts = removes = 0;
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
	ck_assert_str_eq(rv("Service default/web"), "9");
	ck_assert(has("Endpoints default/web"));
	ck_assert(has("Pod default/p1"));
	ck_assert_str_eq(rv("Pod default/p1"), "15");
	ck_assert(has("Pod default/p2"));
	ck_assert(!has("Service kube-system/dns"));
	ck_assert(has("Service default/v2svc"));
	ck_assert(has("EndpointSlice default/web-abc"));
	ck_assert_uint_eq(nobjs(), 6);
	em_source_edgecore_stop(E);
	E = NULL;
}
END_TEST

/* Idle polls deliver nothing: wait until the thread has polled three times
 * (the event), then assert that nothing reached the sink. */
START_TEST(idle_polls_deliver_nothing)
{
	struct em_edgecore_config c = cfg(20);
	struct em_edgecore_stats st = { 0 };

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(nreplaces(), 1);
	for (int i = 0; i < 500 && st.polls < 3; i++) {
		usleep(10000);
		em_source_edgecore_stats(E, &st);
	}
	ck_assert_uint_ge(st.polls, 3);
	ck_assert_uint_eq(nreplaces(), 1);
	ck_assert_uint_eq(st.reads, 1);
	ck_assert_uint_eq(st.failures, 0);
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
	put_v2_svc(db, "new", 30, SVC("new", "30"));
	WAIT_UNTIL(has("Service default/new"), 2000);
	exec(db, "DELETE FROM meta WHERE key = 'default/service/web'");
	exec(db, "DELETE FROM meta_v2 WHERE key = '/core/v1/services/default/web'");
	WAIT_UNTIL(!has("Service default/web"), 2000);
	/* Two quick commits of the same size within one mtime tick. */
	put_v2_svc(db, "new", 31, SVC("new", "31"));
	put_v2_svc(db, "new", 32, SVC("new", "32"));
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
	struct em_edgecore_stats st;
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
	em_source_edgecore_stats(E, &st);
	ck_assert_msg(worst < em_test_ms(1000), "a commit waited %.1f ms (our longest read transaction: %lu us)",
		      worst, st.lock_us_max);
	WAIT_UNTIL(has("Pod default/w149"), 2000);
	ck_assert_uint_eq(nobjs(), 6 + 150);
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
	ck_assert_uint_eq(nobjs(), 6);
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
	put_v2_svc(db, "late", 40, SVC("late", "40"));
	n = nreplaces();
	/* Wait for the event: a read refused by the lock (the source's 200 ms
	 * busy timeout), counted as a failure; then nothing may have changed. */
	em_source_edgecore_stats(E, &st);
	for (int i = 0; i < 300 && st.failures == 0; i++) {
		usleep(10000);
		em_source_edgecore_stats(E, &st);
	}
	ck_assert_uint_ge(st.failures, 1);
	ck_assert_uint_eq(nreplaces(), n);
	ck_assert_uint_eq(nobjs(), 6);
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
	struct em_edgecore_config c = cfg(0), missing = { .path = "/nonexistent/edgecore.db" };

	ck_assert_int_lt(em_edgecore_db_read(&c, &items, NULL), 0);
	ck_assert_ptr_null(items);
	ck_assert_int_eq(em_edgecore_db_read(&missing, &items, NULL), -ENOENT);
	unlink(dbpath);
	make_db();
	ck_assert_int_eq(em_edgecore_db_read(&c, &items, NULL), 0);
	ck_assert_uint_eq(json_array_size(items), 6);
	json_decref(items);
}
END_TEST

/* ---- what real databases hold -------------------------------------------- */

static const char meta_schema[] =
	"CREATE TABLE meta (key varchar(256) NOT NULL PRIMARY KEY, type varchar(32) NOT NULL DEFAULT '', value text NOT NULL DEFAULT '');";
/* meta_v2 as beego's orm created it (KubeEdge < 1.23) ... */
static const char v2_beego[] =
	"CREATE TABLE meta_v2 (key varchar(256) NOT NULL PRIMARY KEY, groupversionresource varchar(256) NOT NULL DEFAULT '', "
	"namespace varchar(256) NOT NULL DEFAULT '', name varchar(256) NOT NULL DEFAULT '', "
	"resourceversion integer unsigned NOT NULL DEFAULT 0, value text);";
/* ... as gorm creates it ... */
static const char v2_gorm[] =
	"CREATE TABLE meta_v2 (key text, group_version_resource text, namespace text, name text, "
	"resource_version integer, value text, PRIMARY KEY (key));";
/* ... and a beego table after gorm's migration added its columns */
static const char v2_upgrade[] =
	"ALTER TABLE meta_v2 ADD COLUMN group_version_resource text;"
	"ALTER TABLE meta_v2 ADD COLUMN resource_version integer;";

static void put_v2_cols(sqlite3 *db, bool gorm, const char *key, const char *gvr, int rvv,
			const char *value)
{
	char sql[256];
	sqlite3_stmt *st;
	snprintf(sql, sizeof(sql), "INSERT INTO meta_v2 (key, %s, %s, value) VALUES (?, ?, ?, ?)",
		 gorm ? "group_version_resource" : "groupversionresource",
		 gorm ? "resource_version" : "resourceversion");
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, gvr, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, rvv);
	sqlite3_bind_text(st, 4, value, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static json_t *read_all(bool merge_legacy, struct em_edgecore_read_info *info)
{
	struct em_edgecore_config c = cfg(0);
	json_t *items = NULL, *it;
	size_t i;

	c.merge_legacy = merge_legacy;
	ck_assert_int_eq(em_edgecore_db_read(&c, &items, info), 0);
	/* through the recording sink, for has()/rv()/nobjs() */
	rec_replace(NULL, "edgecore-db", NULL, items);
	json_array_foreach(items, i, it)
		ck_assert_ptr_nonnull(json_object_get(it, "kind"));
	return items;
}

#define OBJ(kind_api, name, rv, rest) \
	"{" kind_api "\"metadata\":{\"name\":\"" name "\",\"namespace\":\"default\",\"resourceVersion\":\"" rv "\"}" rest "}"
#define CORE(kind) "\"apiVersion\":\"v1\",\"kind\":\"" kind "\","
#define EPS_REST ",\"subsets\":[{\"addresses\":[{\"ip\":\"10.244.7.7\"}],\"ports\":[{\"port\":80}]}]"
#define SLICE_REST ",\"endpoints\":[{\"addresses\":[\"10.244.7.7\"]}],\"ports\":[{\"port\":80}]"

START_TEST(both_eras_column_names)
{
	for (int era = 0; era < 3; era++) {	/* beego, gorm, upgraded */
		sqlite3 *db;
		json_t *items;

		setup();
		db = db_open();
		exec(db, meta_schema);
		exec(db, era == 1 ? v2_gorm : v2_beego);
		if (era == 2)
			exec(db, v2_upgrade);
		/* with kind/apiVersion, and (the pod) without */
		put_v2_cols(db, era == 1, "/core/v1/services/default/a", "/v1, Resource=services", 5,
			    OBJ(CORE("Service"), "a", "5", ",\"spec\":{\"ports\":[{\"port\":80}]}"));
		put_v2_cols(db, era == 1, "/core/v1/pods/default/p", "/v1, Resource=pods", 6,
			    OBJ("", "p", "6", ""));
		/* upgraded: the newer rows carry the gorm columns */
		put_v2_cols(db, era >= 1, "/core/v1/endpoints/default/a", "/v1, Resource=endpoints", 7,
			    OBJ(CORE("Endpoints"), "a", "7", EPS_REST));
		put_v2_cols(db, era >= 1, "/discovery.k8s.io/v1/endpointslices/default/a-1",
			    "discovery.k8s.io/v1, Resource=endpointslices", 8,
			    OBJ("\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",", "a-1", "8",
				SLICE_REST));
		sqlite3_close(db);
		items = read_all(false, NULL);
		ck_assert_msg(nobjs() == 4, "era %d: %zu objects", era, nobjs());
		ck_assert(has("Service default/a") && has("Pod default/p") &&
			  has("Endpoints default/a") && has("EndpointSlice default/a-1"));
		json_decref(items);
		teardown();
	}
}
END_TEST

START_TEST(legacy_podlists)
{
	/* Up to KubeEdge 1.7: meta only, <ns>/podlist/<svc> rows, values
	 * without kind/apiVersion (<= 1.5), an empty podlist written as null. */
	struct em_edgecore_read_info info;
	sqlite3 *db = db_open();
	json_t *items;

	exec(db, meta_schema);
	put_meta(db, "default/service/web", "service", OBJ("", "web", "3", ",\"spec\":{\"selector\":{\"app\":\"web\"}}"));
	put_meta(db, "default/podlist/web", "podlist", "[" POD("p1", "4") "," POD("p2", "5") "]");
	put_meta(db, "default/podlist/idle", "podlist", "null");
	put_meta(db, "default/podlist/none", "podlist", "[]");
	put_meta(db, "default/service/idle", "service", OBJ("", "idle", "6", ""));
	sqlite3_close(db);
	items = read_all(false, &info);
	ck_assert(has("Service default/web") && has("Service default/idle"));
	ck_assert(has("Pod default/p1") && has("Pod default/p2"));
	ck_assert_uint_eq(nobjs(), 4);
	ck_assert_uint_eq(info.skipped, 0);	/* null and [] are empty, not bad */
	ck_assert_uint_eq(info.ignored, 0);
	json_decref(items);
}
END_TEST

START_TEST(ignored_rows_stay_in_the_database)
{
	struct em_edgecore_read_info info;
	sqlite3 *db = db_open();
	json_t *items;

	exec(db, schema);
	/* read: core services in meta (meta_v2 holds none) */
	put_meta(db, "default/service/web", "service", OBJ(CORE("Service"), "web", "1", ""));
	put_meta(db, "default/service/bare", "service", OBJ("", "bare", "2", ""));
	/* read, then ignored: a Knative Service under the same type */
	put_meta(db, "default/service/kn", "service",
		 OBJ("\"apiVersion\":\"serving.knative.dev/v1\",\"kind\":\"Service\",", "kn", "3", ""));
	/* never selected */
	put_meta(db, "default/secret/s", "secret", "{\"data\":{\"password\":\"TOPSECRET\"}}");
	put_meta(db, "default/configmap/c", "configmap", "{\"data\":{\"k\":\"TOPSECRET\"}}");
	put_meta(db, "default/podstatus/p", "podstatus", "{\"TOPSECRET\":1}");
	put_meta(db, "default/podpatch/p", "podpatch", "{\"TOPSECRET\":1}");
	put_meta(db, "default/nodestatus/edge-1", "nodestatus", "{\"TOPSECRET\":1}");
	put_meta(db, "default/pod/stale", "pod", POD("stale", "1"));	/* meta_v2 holds pods */
	put_v2(db, "/core/v1/secrets/default/s", "/v1, Resource=secrets", "default", "s", 1, "TOPSECRET");
	put_v2(db, "/core/v1/configmaps/default/c", "/v1, Resource=configmaps", "default", "c", 1, "TOPSECRET");
	put_v2(db, "/operations.kubeedge.io/v1alpha1/nodeupgradejobtaskrequests/t1",
	       "operations.kubeedge.io/v1alpha1, Resource=nodeupgradejobtaskrequests", "null", "t1", 0, "TOPSECRET");
	put_v2(db, "/operations.kubeedge.io/v1alpha2/nodeupgradejobspecs/job/nodes/edge-1",
	       "operations.kubeedge.io/v1alpha2, Resource=nodeupgradejobspecs", "null", "job", 0, "TOPSECRET");
	put_v2(db, "/serving.knative.dev/v1/services/default/kn", "serving.knative.dev/v1, Resource=services",
	       "default", "kn", 3, "TOPSECRET");
	put_v2(db, "/version", "", "", "", 0, "TOPSECRET");
	put_v2(db, "/core/v1/servicesx/default/y", "", "", "", 0, "TOPSECRET");
	/* read: a pod; then ignored: a list row, a 6-part key, cluster scope */
	put_v2(db, "/core/v1/pods/default/p", "/v1, Resource=pods", "default", "p", 4, POD("p", "4"));
	put_v2(db, "/core/v1/pods/default", "/v1, Resource=pods", "default", "null", 0, "[]");
	put_v2(db, "/core/v1/pods/default/p/status", "/v1, Resource=pods", "default", "p", 4, POD("p", "5"));
	put_v2(db, "/core/v1/endpoints/null/x", "/v1, Resource=endpoints", "null", "x", 4,
	       "{\"metadata\":{\"name\":\"x\"}}");
	/* ... which does not make meta_v2 a holder of Endpoints: meta's are read */
	put_meta(db, "default/endpoints/web", "endpoints", OBJ("", "web", "5", EPS_REST));
	sqlite3_close(db);
	items = read_all(false, &info);
	ck_assert(has("Service default/web") && has("Service default/bare") && has("Pod default/p"));
	ck_assert(has("Endpoints default/web"));
	ck_assert_str_eq(rv("Pod default/p"), "4");
	ck_assert_uint_eq(nobjs(), 4);
	ck_assert_uint_eq(info.skipped, 0);
	ck_assert_uint_eq(info.ignored, 4);	/* kn, list row, 6 parts, null namespace */
	/* copied out: web, bare, kn, endpoints web; p, its list row, p/status, x.
	 * Nothing else. */
	ck_assert_uint_eq(info.rows, 8);
	json_decref(items);
}
END_TEST

START_TEST(stale_legacy_rows)
{
	sqlite3 *db = db_open();
	json_t *items;

	exec(db, schema);
	/* pre-upgrade rows nobody removed */
	put_meta(db, "default/service/old", "service", SVC("old", "2"));
	put_meta(db, "default/service/web", "service", SVC("web", "50"));
	put_meta(db, "default/podlist/web", "podlist", "[" POD("gone", "3") "]");
	/* a kind meta_v2 does not hold is still read from meta */
	put_meta(db, "default/endpoints/web", "endpoints", OBJ("", "web", "4", EPS_REST));
	put_v2_svc(db, "web", 9, SVC("web", "9"));
	put_v2(db, "/core/v1/pods/default/p", "/v1, Resource=pods", "default", "p", 10, POD("p", "10"));
	sqlite3_close(db);
	items = read_all(false, NULL);
	ck_assert_str_eq(rv("Service default/web"), "9");
	ck_assert(!has("Service default/old") && !has("Pod default/gone"));
	ck_assert(has("Pod default/p") && has("Endpoints default/web"));
	ck_assert_uint_eq(nobjs(), 3);
	json_decref(items);
	/* configurable: merged, the higher resourceVersion winning */
	items = read_all(true, NULL);
	ck_assert_str_eq(rv("Service default/web"), "50");
	ck_assert(has("Service default/old") && has("Pod default/gone"));
	ck_assert_uint_eq(nobjs(), 5);
	json_decref(items);
}
END_TEST

/* A writer that dies inside a transaction after its cache spilled to the
 * database file leaves a hot journal. */
static void crash_writer(void)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sqlite3 *db;
		char big[2048];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		if (sqlite3_open(dbpath, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA cache_size = 2; BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			_exit(1);
		for (int i = 0; i < 200; i++) {
			char sql[2200];
			snprintf(sql, sizeof(sql),
				 "INSERT INTO meta VALUES ('default/configmap/c%d', 'configmap', '%s')", i, big);
			if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
				_exit(1);
		}
		_exit(0);	/* no COMMIT, no ROLLBACK, no close */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

START_TEST(hot_journal)
{
	struct em_edgecore_config c = cfg(20);
	struct em_edgecore_stats st;
	char journal[80];
	json_t *items = NULL;
	sqlite3 *db;

	make_db();
	crash_writer();
	snprintf(journal, sizeof(journal), "%s-journal", dbpath);
	ck_assert_int_eq(access(journal, F_OK), 0);
	ck_assert_int_eq(em_edgecore_db_read(&c, &items, NULL), -EROFS);
	ck_assert_ptr_null(items);
	/* The source keeps retrying and counts it as a failure. */
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(nreplaces(), 0);
	em_source_edgecore_stats(E, &st);
	ck_assert_uint_ge(st.failures, 1);
	/* edgecore (a writer) opens the database: the journal is rolled back,
	 * and the data from before the crashed transaction is read. */
	db = db_open();
	exec(db, "SELECT count(*) FROM meta");
	sqlite3_close(db);
	WAIT_UNTIL(has("Service default/web"), 2000);
	ck_assert_uint_eq(nobjs(), 6);
}
END_TEST

START_TEST(paged_reads)
{
	/* A read in several transactions (3 rows each) resumes where it
	 * stopped: every object exactly once (the recording sink counts
	 * duplicates as bad calls), whatever the table. */
	struct em_edgecore_config c = cfg(0);
	struct em_edgecore_read_info info;
	json_t *items;
	sqlite3 *db;

	make_db();
	db = db_open();
	exec(db, "BEGIN");
	for (int i = 0; i < 40; i++) {
		char key[64], name[16], val[512];
		snprintf(name, sizeof(name), "s%02d", i);
		snprintf(key, sizeof(key), "/core/v1/services/default/%s", name);
		snprintf(val, sizeof(val), OBJ(CORE("Service"), "%s", "%d", ""), name, 100 + i);
		put_v2(db, key, "/v1, Resource=services", "default", name, 100 + i, val);
		snprintf(key, sizeof(key), "default/endpoints/%s", name);
		snprintf(val, sizeof(val), OBJ("", "%s", "%d", EPS_REST), name, 200 + i);
		put_meta(db, key, "endpoints", val);
	}
	exec(db, "COMMIT");
	sqlite3_close(db);
	c.max_rows_per_txn = 3;
	ck_assert_int_eq(em_edgecore_db_read(&c, &items, &info), 0);
	rec_replace(NULL, "edgecore-db", NULL, items);
	ck_assert_uint_eq(nobjs(), 6 + 80);
	ck_assert_uint_ge(info.lock.transactions, 1 + (7 + 80) / 3);
	ck_assert(has("Service default/s00") && has("Service default/s39"));
	ck_assert(has("Endpoints default/s00") && has("Endpoints default/s39"));
	json_decref(items);
	/* the source pages the same way */
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(nobjs(), 6 + 80);
}
END_TEST

/* ---- only the rows that changed are read -------------------------------- */

static struct em_edgecore_stats stats_now(void)
{
	struct em_edgecore_stats st;
	em_source_edgecore_stats(E, &st);
	return st;
}

/* Wait for the poll that delivers the write just made; returns how many
 * rows it read from the database. */
static unsigned long rows_read_by_next_read(unsigned long *reads)
{
	struct em_edgecore_stats st = stats_now();

	for (int w = 0; w < 2000 && st.reads == *reads; w += 5) {
		usleep(5000);
		st = stats_now();
	}
	ck_assert_uint_eq(st.reads, *reads + 1);
	*reads = st.reads;
	return st.rows_read_last;
}

/* What the source delivered (by replace, then upserts and removes) equals
 * what a full read of the database gives. */
static void same_as_full_read(void)
{
	struct em_edgecore_config c = cfg(0);
	json_t *items = NULL, *full = json_object(), *it;
	size_t i;

	ck_assert_int_eq(em_edgecore_db_read(&c, &items, NULL), 0);
	json_array_foreach(items, i, it) {
		char key[512];
		ck_assert(obj_key(it, key, sizeof(key)));
		json_object_set(full, key, it);
	}
	pthread_mutex_lock(&lock);
	ck_assert_msg(json_equal(full, last), "incremental and full reads differ");
	pthread_mutex_unlock(&lock);
	json_decref(items);
	json_decref(full);
}

static unsigned count_of(const unsigned *n)
{
	unsigned v;
	pthread_mutex_lock(&lock);
	v = *n;
	pthread_mutex_unlock(&lock);
	return v;
}

static void changed_rows_only(unsigned max_rows_per_txn)
{
	struct em_edgecore_config c = cfg(10);
	struct em_edgecore_read_info info;
	unsigned long reads = 1;
	unsigned long n;
	unsigned up, rm, rep0;
	json_t *items;
	sqlite3 *db;

	c.max_rows_per_txn = max_rows_per_txn;
	make_db();
	items = read_all(false, &info);	/* the peer: every selected row */
	json_decref(items);
	ck_assert_uint_gt(info.rows, 3);
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_uint_eq(stats_now().rows_read_last, info.rows);	/* the first read: all */
	ck_assert_uint_eq(stats_now().full_reads, 1);
	rep0 = nreplaces();
	db = db_open();
	/* an update in place (the rowid stays), the value as long as before:
	 * one row read, one object upserted, no replace */
	exec(db, "UPDATE meta SET value = replace(value, '\"11\"', '\"19\"') WHERE key = 'default/endpoints/web'");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert_str_eq(rv("Endpoints default/web"), "19");
	ck_assert_uint_eq(stats_now().objects_last, 1);
	ck_assert_uint_eq(count_of(&upserts), 1);
	ck_assert_uint_eq(nreplaces(), rep0);
	same_as_full_read();
	/* INSERT OR REPLACE: a new rowid, the old row deleted */
	put_v2_svc(db, "v2svc", 25, SVC("v2svc", "25"));
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert_str_eq(rv("Service default/v2svc"), "25");
	/* an insert */
	put_v2_svc(db, "new", 30, SVC("new", "30"));
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert(has("Service default/new"));
	ck_assert_uint_eq(count_of(&upserts), 3);
	same_as_full_read();
	/* a delete reads nothing and removes the object */
	exec(db, "DELETE FROM meta WHERE key = 'default/endpoints/web'");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 0);
	ck_assert(!has("Endpoints default/web"));
	ck_assert_uint_eq(count_of(&removes), 1);
	/* a row of a type not read changes: a poll reads, but no row, and
	 * delivers nothing */
	up = count_of(&upserts);
	rm = count_of(&removes);
	put_meta(db, "default/configmap/cfg", "configmap", "{\"metadata\":{\"name\":\"cfg2\"}}");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 0);
	ck_assert_uint_eq(stats_now().objects_last, 0);
	ck_assert_uint_eq(count_of(&upserts), up);
	ck_assert_uint_eq(count_of(&removes), rm);
	ck_assert_uint_eq(nreplaces(), rep0);
	ck_assert_uint_eq(stats_now().rows_read, info.rows + 3);
	same_as_full_read();
	/* p1 is held by its pod row and by the podlist (the higher
	 * resourceVersion wins): a change to it is settled by a full read; the
	 * pod row's new value (13) still loses to the podlist's (15) */
	exec(db, "UPDATE meta SET value = replace(value, '\"12\"', '\"13\"') WHERE key = 'default/pod/p1'");
	n = rows_read_by_next_read(&reads);
	ck_assert_str_eq(rv("Pod default/p1"), "15");	/* what is served first */
	ck_assert_uint_eq(n, 1 + info.rows);
	ck_assert_uint_eq(nreplaces(), rep0 + 1);
	ck_assert_uint_eq(stats_now().full_reads, 2);
	sqlite3_close(db);
	same_as_full_read();
}

START_TEST(update_reads_one_row)
{
	changed_rows_only(0);
}
END_TEST

START_TEST(update_reads_one_row_paged)
{
	changed_rows_only(1);	/* the comparison resumes across transactions */
}
END_TEST

/* List rows (a podlist holds many objects) and objects held by two rows
 * are settled by a full read; objects renamed in place or made unusable go
 * by remove. After each change the sink holds what a full read gives. */
START_TEST(lists_and_renames)
{
	struct em_edgecore_config c = cfg(10);
	unsigned long reads = 1, full;
	unsigned rm;
	sqlite3 *db;

	make_db();
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	db = db_open();
	/* the podlist changes: p2 newer, p3 added, p1 gone from it (p1 then
	 * comes from its pod row alone) */
	full = stats_now().full_reads;
	put_meta(db, "default/podlist/web", "podlist", "[" POD("p2", "23") "," POD("p3", "24") "]");
	rows_read_by_next_read(&reads);
	ck_assert_uint_eq(stats_now().full_reads, full + 1);
	ck_assert_str_eq(rv("Pod default/p1"), "12");
	ck_assert_str_eq(rv("Pod default/p2"), "23");
	ck_assert_str_eq(rv("Pod default/p3"), "24");
	same_as_full_read();
	/* p1 is now held by one row only: its change goes by upsert */
	full = stats_now().full_reads;
	exec(db, "UPDATE meta SET value = replace(value, '\"12\"', '\"18\"') WHERE key = 'default/pod/p1'");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert_uint_eq(stats_now().full_reads, full);
	ck_assert_str_eq(rv("Pod default/p1"), "18");
	/* a Service renamed in place (its row's key unchanged) */
	rm = count_of(&removes);
	exec(db, "UPDATE meta_v2 SET value = replace(value, '\"v2svc\"', '\"v2svc2\"') "
		 "WHERE key = '/core/v1/services/default/v2svc'");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert(!has("Service default/v2svc"));
	ck_assert(has("Service default/v2svc2"));
	ck_assert_uint_eq(count_of(&removes), rm + 1);
	same_as_full_read();
	/* a value no longer usable: its object goes */
	exec(db, "UPDATE meta_v2 SET value = '{' WHERE key = '/discovery.k8s.io/v1/endpointslices/default/web-abc'");
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	ck_assert(!has("EndpointSlice default/web-abc"));
	ck_assert_uint_eq(stats_now().full_reads, full);
	same_as_full_read();
	/* the podlist deleted: p2 and p3 go, p1 stays */
	exec(db, "DELETE FROM meta WHERE key = 'default/podlist/web'");
	rows_read_by_next_read(&reads);
	ck_assert_uint_eq(stats_now().full_reads, full + 1);
	ck_assert(has("Pod default/p1") && !has("Pod default/p2") && !has("Pod default/p3"));
	sqlite3_close(db);
	same_as_full_read();
}
END_TEST

/* ---- through the registry ---------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What a registry serves: each service with its ports and their backends
 * (sorted: their order follows arrival). Fake IPs left out: they follow the
 * order services arrived in. */
static char *serving(struct em_registry *reg)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	urcu_memb_read_lock();
	const struct em_snapshot *snap = em_registry_current(reg);
	for (size_t i = 0; i < em_snapshot_service_count(snap); i++) {
		const struct em_service *svc = em_snapshot_service_at(snap, i);

		fprintf(f, "%s/%s\n", svc->ns, svc->name);
		for (size_t p = 0; p < svc->n_ports; p++) {
			const struct em_service_port *port = &svc->ports[p];
			char **b = calloc(port->n_backends + 1, sizeof(*b));

			for (size_t k = 0; k < port->n_backends; k++) {
				char ip[INET6_ADDRSTRLEN];
				inet_ntop(port->backends[k].family, &port->backends[k].ip, ip, sizeof(ip));
				ck_assert_int_ne(asprintf(&b[k], "%s:%u %s", ip, port->backends[k].port,
							  port->backends[k].pod ? port->backends[k].pod : "-"), -1);
			}
			qsort(b, port->n_backends, sizeof(*b), cmp_str);
			fprintf(f, " %u/%d:", port->port, port->ipproto);
			for (size_t k = 0; k < port->n_backends; k++) {
				fprintf(f, " %s", b[k]);
				free(b[k]);
			}
			fprintf(f, "\n");
			free(b);
		}
	}
	urcu_memb_read_unlock();
	fclose(f);
	return out;
}

/* reg (fed by the source) serves what a registry fed by a full read does. */
static void registry_same_as_full_read(struct em_registry *reg)
{
	struct em_registry_config rc = { 0 };
	struct em_registry *peer = em_registry_new(&rc);
	struct em_source_sink ps = em_registry_sink(peer);
	struct em_edgecore_config c = cfg(0);
	json_t *items = NULL;
	char *a, *b;

	ck_assert_ptr_nonnull(peer);
	ck_assert_int_eq(em_edgecore_db_read(&c, &items, NULL), 0);
	ps.replace(ps.ctx, "edgecore-db", NULL, items);
	ps.commit(ps.ctx, "edgecore-db");
	json_decref(items);
	a = serving(reg);
	b = serving(peer);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	em_registry_free(peer);
}

#define RPOD(name, app, ip, rv) \
	"{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"default\",\"resourceVersion\":\"" rv "\"," \
	"\"labels\":{\"app\":\"" app "\"}},\"spec\":{\"nodeName\":\"edge-1\",\"containers\":[{\"name\":\"c\"," \
	"\"ports\":[{\"containerPort\":8080}]}]},\"status\":{\"phase\":\"Running\",\"podIP\":\"" ip "\"," \
	"\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}"
#define RSVC(name, app, port, rv) \
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"default\"," \
	"\"resourceVersion\":\"" rv "\"},\"spec\":{\"selector\":{\"app\":\"" app "\"},\"ports\":[{\"port\":" port "," \
	"\"protocol\":\"TCP\",\"targetPort\":8080}],\"clusterIP\":\"10.96.0.20\"}}"

static void put_v2_pod(sqlite3 *db, const char *name, const char *value)
{
	char key[128];
	snprintf(key, sizeof(key), "/core/v1/pods/default/%s", name);
	put_v2(db, key, "/v1, Resource=pods", "default", name, 1, value);
}

/* A registry fed by the source, through per-object changes (pods moved,
 * added, deleted; a Service's port changed, a Service deleted) and list
 * rows (a full read), serves what a registry fed by a full read serves. */
START_TEST(registry_follows_changes)
{
	struct em_registry_config rc = { 0 };
	struct em_registry *reg;
	struct em_edgecore_config c = cfg(10);
	unsigned long reads = 1, full;
	sqlite3 *db;
	char *s;

	urcu_memb_register_thread();
	ck_assert_ptr_nonnull(reg = em_registry_new(&rc));
	make_db();
	db = db_open();
	put_v2_svc(db, "a", 1, RSVC("a", "a", "80", "1"));
	put_v2_svc(db, "b", 1, RSVC("b", "b", "81", "1"));
	put_v2_pod(db, "a1", RPOD("a1", "a", "10.244.0.1", "1"));
	put_v2_pod(db, "a2", RPOD("a2", "a", "10.244.0.2", "1"));
	put_v2_pod(db, "b1", RPOD("b1", "b", "10.244.0.3", "1"));
	ck_assert_int_eq(em_source_edgecore_start(&c, em_registry_sink(reg), &E), 0);
	s = serving(reg);
	ck_assert_ptr_nonnull(strstr(s, "10.244.0.2:8080 default/a2"));
	free(s);
	registry_same_as_full_read(reg);
	full = stats_now().full_reads;
	put_v2_pod(db, "a2", RPOD("a2", "a", "10.244.0.9", "2"));	/* moved */
	rows_read_by_next_read(&reads);
	registry_same_as_full_read(reg);
	put_v2_pod(db, "a3", RPOD("a3", "a", "10.244.0.4", "1"));	/* added */
	rows_read_by_next_read(&reads);
	registry_same_as_full_read(reg);
	exec(db, "DELETE FROM meta_v2 WHERE key = '/core/v1/pods/default/a1'");
	rows_read_by_next_read(&reads);
	registry_same_as_full_read(reg);
	put_v2_svc(db, "b", 2, RSVC("b", "b", "82", "2"));		/* port changed */
	rows_read_by_next_read(&reads);
	registry_same_as_full_read(reg);
	exec(db, "DELETE FROM meta_v2 WHERE key = '/core/v1/services/default/a'");
	rows_read_by_next_read(&reads);
	registry_same_as_full_read(reg);
	ck_assert_uint_eq(stats_now().full_reads, full);		/* all per object */
	s = serving(reg);
	ck_assert_ptr_null(strstr(s, "default/a\n"));
	ck_assert_ptr_nonnull(strstr(s, " 82/6: 10.244.0.3:8080 default/b1"));
	free(s);
	/* a list row appears (meta_v2 holds no Endpoints, so meta's count):
	 * a full read */
	put_meta(db, "default/endpointslist/b", "endpointslist",
		 "[{\"metadata\":{\"name\":\"b\",\"namespace\":\"default\",\"resourceVersion\":\"5\"},"
		 "\"subsets\":[{\"addresses\":[{\"ip\":\"10.244.0.50\"}],\"ports\":[{\"port\":8080}]}]}]");
	rows_read_by_next_read(&reads);
	ck_assert_uint_eq(stats_now().full_reads, full + 1);
	registry_same_as_full_read(reg);
	sqlite3_close(db);
	em_source_edgecore_stop(E);
	E = NULL;
	em_registry_free(reg);
	urcu_memb_unregister_thread();
}
END_TEST

/* meta_v2 gets its first Service: the meta services stop counting (stale
 * legacy rows), which the rows kept from the last read must follow. */
START_TEST(selection_change_drops_rows)
{
	struct em_edgecore_config c = cfg(10);
	unsigned long reads = 1;
	sqlite3 *db;

	make_db();
	db = db_open();
	exec(db, "DELETE FROM meta_v2 WHERE key LIKE '/core/v1/services/%'");
	sqlite3_close(db);
	ck_assert_int_eq(em_source_edgecore_start(&c, sink, &E), 0);
	ck_assert_str_eq(rv("Service default/web"), "10");	/* from meta */
	db = db_open();
	put_v2_svc(db, "other", 40, SVC("other", "40"));
	ck_assert_uint_eq(rows_read_by_next_read(&reads), 1);
	sqlite3_close(db);
	ck_assert(!has("Service default/web"));
	ck_assert(has("Service default/other"));
	same_as_full_read();
}
END_TEST

/* A case on a database of its own, polled by a started source. */
static TCase *db_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	return tc;
}

Suite *edgecore_suite(void);
Suite *edgecore_suite(void)
{
	Suite *s = suite_create("edgecore");

	TCase *tc = db_case(s, "read");
	tcase_add_test(tc, reads_meta_and_meta_v2);
	tcase_add_test(tc, both_eras_column_names);
	tcase_add_test(tc, legacy_podlists);
	tcase_add_test(tc, stale_legacy_rows);
	tcase_add_test(tc, ignored_rows_stay_in_the_database);
	tcase_add_test(tc, paged_reads);
	tc = db_case(s, "changes");
	tcase_add_test(tc, change_is_picked_up);
	tcase_add_test(tc, idle_polls_deliver_nothing);
	tcase_add_test(tc, missing_then_created_then_replaced);
	tcase_add_test(tc, never_written);
	tc = db_case(s, "locking");
	tcase_add_test(tc, writer_not_blocked);
	tcase_add_test(tc, locked_keeps_last_data);
	tcase_add_test(tc, hot_journal);
	tc = db_case(s, "bad-data");
	tcase_add_test(tc, bad_rows_skipped);
	tcase_add_test(tc, not_a_database);
	tc = db_case(s, "changed-rows");
	tcase_add_test(tc, update_reads_one_row);
	tcase_add_test(tc, update_reads_one_row_paged);
	tcase_add_test(tc, selection_change_drops_rows);
	tcase_add_test(tc, lists_and_renames);
	tcase_add_test(tc, registry_follows_changes);
	return s;
}
