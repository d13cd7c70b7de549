/* edgecore_db.c — KubeEdge MetaManager's SQLite store as a source.
 *
 * Locking, which is the whole point of care here: in rollback-journal mode a
 * reader holds a SHARED lock for the life of its read transaction, and
 * edgecore's writer cannot commit (it needs EXCLUSIVE) until every SHARED
 * lock is gone. So the read transaction only copies the raw rows; JSON
 * parsing happens after COMMIT. In WAL mode readers never block the writer.
 *
 * Change detection takes no lock at all while nothing changes: a commit
 * writes the database file (rollback journal) or the -wal file (WAL), so
 * their size + mtime + inode form a signature checked with stat(). mtime has
 * coarse granularity, so a signature whose mtime is within a second of our
 * last check is "racy" (the trick git uses for its index) and is confirmed
 * with PRAGMA data_version on the connection kept open between polls, which
 * changes whenever another connection commits. */
#include "sources/edgecore_db.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "util/log.h"

/* What stat() says of the database and its WAL. */
struct sig {
	long long size, mtime_ns, wal_size, wal_mtime_ns;
};

struct em_source_edgecore {
	char *name;
	char *path;
	unsigned poll_ms, busy_ms;
	struct em_source_sink sink;

	sqlite3 *db;			/* kept open for data_version */
	dev_t dev;
	ino_t ino;
	struct sig sig;			/* files as of the last check */
	long long verified_ns;		/* wall clock of that check */
	long long version;		/* data_version of the last delivered read */
	bool delivered;			/* a read has reached the sink */
	int last_err;			/* for logging state changes once */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;

	atomic_ulong n_reads, n_failures, n_skipped;
};

/* ---- reading ------------------------------------------------------------ */

struct row {
	bool v2;
	char *key, *type, *value;
};

struct rows {
	struct row *v;
	size_t n, cap;
};

static void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].key);
		free(rs->v[i].type);
		free(rs->v[i].value);
	}
	free(rs->v);
	rs->v = NULL;
	rs->n = rs->cap = 0;
}

static char *col(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return strdup(s ? (const char *)s : "");
}

static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static int table_exists(sqlite3 *db, const char *table, bool *exists)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db,
		"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sqlite_errno(rc);
	*exists = rc == SQLITE_ROW;
	return 0;
}

static int copy_rows(sqlite3 *db, const char *sql, bool v2, struct rows *rs)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row *r;

		if (rs->n == rs->cap) {
			size_t cap = rs->cap ? rs->cap * 2 : 256;
			struct row *nv = realloc(rs->v, cap * sizeof(*nv));
			if (!nv) {
				sqlite3_finalize(st);
				return -ENOMEM;
			}
			rs->v = nv;
			rs->cap = cap;
		}
		r = &rs->v[rs->n++];
		r->v2 = v2;
		r->key = col(st, 0);
		r->type = v2 ? strdup("") : col(st, 1);
		r->value = col(st, v2 ? 1 : 2);
		if (!r->key || !r->type || !r->value) {
			sqlite3_finalize(st);
			return -ENOMEM;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sqlite_errno(rc);
}

/* One short read transaction: copy the rows, note data_version, commit. */
static int read_rows(sqlite3 *db, struct rows *rs, long long *version)
{
	bool has_meta = false, has_v2 = false;
	sqlite3_stmt *st;
	int rc, ret;

	rc = sqlite3_exec(db, "BEGIN DEFERRED", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	ret = table_exists(db, "meta", &has_meta);
	if (ret == 0)
		ret = table_exists(db, "meta_v2", &has_v2);
	if (ret == 0 && !has_meta && !has_v2)
		ret = -ENODATA;		/* not (yet) an edgecore database */
	if (ret == 0 && has_meta)
		ret = copy_rows(db, "SELECT key, type, value FROM meta", false, rs);
	if (ret == 0 && has_v2)
		ret = copy_rows(db, "SELECT key, value FROM meta_v2", true, rs);
	if (ret == 0 && version) {
		rc = sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			*version = sqlite3_column_int64(st, 0);
		else
			ret = sqlite_errno(rc == SQLITE_OK ? sqlite3_errcode(db) : rc);
		sqlite3_finalize(st);
	}
	sqlite3_exec(db, ret == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

/* The Kubernetes kind for a meta type / key segment / meta_v2 resource, and
 * whether the value is a list of them. */
static const char *kind_of(const char *what, bool *list)
{
	static const struct { const char *name, *kind; bool list; } map[] = {
		{ "service", "Service", false }, { "services", "Service", false },
		{ "servicelist", "Service", true },
		{ "endpoints", "Endpoints", false }, { "endpointslist", "Endpoints", true },
		{ "pod", "Pod", false }, { "pods", "Pod", false }, { "podlist", "Pod", true },
		{ "endpointslice", "EndpointSlice", false },
		{ "endpointslices", "EndpointSlice", false },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(what, map[i].name) == 0) {
			*list = map[i].list;
			return map[i].kind;
		}
	return NULL;
}

static unsigned long long rv_of(json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));
	return rv ? strtoull(rv, NULL, 10) : 0;
}

/* Add one object to `seen` ("Kind ns/name" -> obj), higher resourceVersion
 * winning, a later row on a tie. Steals nothing. */
static bool add_object(json_t *seen, json_t *obj, const char *kind, const char *ns)
{
	json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ons = json_string_value(json_object_get(meta, "namespace"));
	json_t *old;
	char *key;

	if (!json_is_object(obj) || !name || !*name)
		return false;
	if (!json_is_string(json_object_get(obj, "kind")))
		json_object_set_new(obj, "kind", json_string(kind));
	if (!ons && ns && *ns && strcmp(ns, "null") != 0)
		json_object_set_new(meta, "namespace", json_string(ns));
	ons = json_string_value(json_object_get(meta, "namespace"));
	if (asprintf(&key, "%s %s/%s", json_string_value(json_object_get(obj, "kind")),
		     ons ? ons : "", name) == -1)
		return false;
	old = json_object_get(seen, key);
	if (!old || rv_of(obj) >= rv_of(old))
		json_object_set(seen, key, obj);
	free(key);
	return true;
}

/* Split "a/b/c" style keys; returns the number of segments (at most max). */
static size_t split(char *s, char **seg, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (n == max)
			return max + 1;
		seg[n++] = t;
	}
	return n;
}

/* One row -> objects in `seen`. Rows of kinds we do not serve (configmaps,
 * secrets, nodes, ...) are ignored; rows of our kinds that do not parse are
 * counted in *skipped. */
static void parse_row(const struct row *r, json_t *seen, unsigned long *skipped)
{
	char *keycopy = strdup(r->key), *seg[6];
	const char *kind = NULL, *ns = NULL;
	bool list = false;
	size_t n = keycopy ? split(keycopy, seg, 5) : 0;
	json_t *val, *items, *it;
	size_t i;

	if (r->v2) {
		/* /<group>/<version>/<resource>/<ns>/<name>; 4 segments is a list row */
		if (n == 5) {
			kind = kind_of(seg[2], &list);
			ns = seg[3];
			list = false;
		}
	} else {
		kind = kind_of(r->type, &list);
		if (!kind && n == 3)
			kind = kind_of(seg[1], &list);
		if (n == 3)
			ns = seg[0];
	}
	if (!kind)
		goto out;
	val = json_loads(r->value, 0, NULL);
	items = json_is_object(val) && json_is_array(json_object_get(val, "items")) ?
		json_object_get(val, "items") : val;
	if (json_is_array(items)) {
		json_array_foreach(items, i, it)
			if (!add_object(seen, it, kind, ns))
				(*skipped)++;
	} else if (list || !add_object(seen, val, kind, ns)) {
		(*skipped)++;
		em_log(EM_LOG_DEBUG, "edgecore-db: row %s: not a Kubernetes %s", r->key, kind);
	}
	json_decref(val);
out:
	free(keycopy);
}

static json_t *parse_rows(const struct rows *rs, unsigned long *skipped)
{
	json_t *seen = json_object(), *items = json_array(), *v;
	const char *k;

	/* meta rows first, so meta_v2 wins ties */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < rs->n; i++)
			if (rs->v[i].v2 == (pass == 1))
				parse_row(&rs->v[i], seen, skipped);
	json_object_foreach(seen, k, v)
		json_array_append(items, v);
	json_decref(seen);
	return items;
}

static int open_db(const char *path, unsigned busy_ms, sqlite3 **out)
{
	sqlite3 *db = NULL;
	/* SQLITE_OPEN_READONLY is what the URI's mode=ro sets; the file is
	 * never created, and query_only refuses writes even if it could. */
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc != SQLITE_OK) {
		sqlite3_close(db);
		return sqlite_errno(rc);
	}
	sqlite3_busy_timeout(db, (int)busy_ms);
	sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL);
	*out = db;
	return 0;
}

int em_edgecore_db_read(const char *path, unsigned busy_timeout_ms, json_t **items)
{
	struct rows rs = { 0 };
	unsigned long skipped = 0;
	struct stat sb;
	sqlite3 *db;
	int ret;

	if (stat(path, &sb) == -1)
		return -errno;
	ret = open_db(path, busy_timeout_ms ? busy_timeout_ms : 1000, &db);
	if (ret < 0)
		return ret;
	ret = read_rows(db, &rs, NULL);
	sqlite3_close(db);
	if (ret == 0)
		*items = parse_rows(&rs, &skipped);
	rows_free(&rs);
	return ret;
}

/* ---- polling ------------------------------------------------------------ */

static void note_error(struct em_source_edgecore *e, int err, const char *what)
{
	atomic_fetch_add(&e->n_failures, 1);
	if (err != e->last_err)
		em_warn("%s: %s %s: %s%s", e->name, what, e->path, strerror(-err),
			e->delivered ? " (keeping the last good data, retrying)" : " (retrying)");
	e->last_err = err;
}

static void close_db(struct em_source_edgecore *e)
{
	sqlite3_close(e->db);
	e->db = NULL;
}

static long long wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long mtime_ns(const struct stat *sb)
{
	return (long long)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

/* True when the files are as at the last check and that check was made long
 * enough after their last modification to trust the timestamps. */
static bool unchanged(struct em_source_edgecore *e, const struct stat *sb, struct sig *sig)
{
	char wal[4096];
	struct stat wb;

	sig->size = (long long)sb->st_size;
	sig->mtime_ns = mtime_ns(sb);
	sig->wal_size = sig->wal_mtime_ns = 0;
	snprintf(wal, sizeof(wal), "%s-wal", e->path);
	if (stat(wal, &wb) == 0) {
		sig->wal_size = (long long)wb.st_size;
		sig->wal_mtime_ns = mtime_ns(&wb);
	}
	return memcmp(sig, &e->sig, sizeof(*sig)) == 0 &&
	       sig->mtime_ns + 1000000000LL < e->verified_ns &&
	       sig->wal_mtime_ns + 1000000000LL < e->verified_ns;
}

/* Check for a change and deliver it. Called from start and the thread. */
static void poll_once(struct em_source_edgecore *e)
{
	struct rows rs = { 0 };
	unsigned long skipped = 0;
	long long version = 0, now;
	struct stat sb;
	struct sig sig;
	sqlite3_stmt *st;
	json_t *items;
	int ret;

	if (stat(e->path, &sb) == -1) {
		close_db(e);
		note_error(e, -errno, "cannot stat");
		return;
	}
	if (e->db && (sb.st_dev != e->dev || sb.st_ino != e->ino)) {
		close_db(e);		/* replaced: data_version of the old file says nothing */
		e->delivered = false;
	}
	if (!e->db) {
		ret = open_db(e->path, e->busy_ms, &e->db);
		if (ret < 0) {
			note_error(e, ret, "cannot open");
			return;
		}
		e->dev = sb.st_dev;
		e->ino = sb.st_ino;
		e->delivered = false;
	}
	now = wall_ns();
	if (e->delivered && unchanged(e, &sb, &sig))
		return;
	if (e->delivered) {
		ret = sqlite3_prepare_v2(e->db, "PRAGMA data_version", -1, &st, NULL);
		if (ret == SQLITE_OK && (ret = sqlite3_step(st)) == SQLITE_ROW)
			version = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		if (ret != SQLITE_ROW) {
			note_error(e, sqlite_errno(ret), "cannot read");
			return;
		}
		if (version == e->version) {
			e->sig = sig;
			e->verified_ns = now;
			return;
		}
	} else {
		unchanged(e, &sb, &sig);
	}
	ret = read_rows(e->db, &rs, &version);
	if (ret < 0) {
		rows_free(&rs);
		note_error(e, ret, "cannot read");
		return;
	}
	items = parse_rows(&rs, &skipped);
	rows_free(&rs);
	if (skipped) {
		atomic_fetch_add(&e->n_skipped, skipped);
		em_warn("%s: %lu rows of %s are not usable Kubernetes objects, ignored", e->name,
			skipped, e->path);
	}
	e->sink.replace(e->sink.ctx, e->name, NULL, items);
	e->sink.commit(e->sink.ctx, e->name);
	if (e->last_err)
		em_info("%s: reading %s again: %zu objects", e->name, e->path, json_array_size(items));
	else
		em_debug("%s: read %zu objects from %s", e->name, json_array_size(items), e->path);
	json_decref(items);
	e->version = version;
	e->sig = sig;
	e->verified_ns = now;
	e->delivered = true;
	e->last_err = 0;
	atomic_fetch_add(&e->n_reads, 1);
}

static void *poll_thread(void *arg)
{
	struct em_source_edgecore *e = arg;

	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += e->poll_ms / 1000;
		ts.tv_nsec += (long)(e->poll_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!e->stop && pthread_cond_timedwait(&e->cond, &e->lock, &ts) != ETIMEDOUT)
			;
		if (e->stop)
			break;
		pthread_mutex_unlock(&e->lock);
		poll_once(e);
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

static void edgecore_free(struct em_source_edgecore *e)
{
	close_db(e);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e->name);
	free(e->path);
	free(e);
}

int em_source_edgecore_start(const struct em_edgecore_config *cfg, struct em_source_sink sink,
			     struct em_source_edgecore **out)
{
	struct em_source_edgecore *e = calloc(1, sizeof(*e));
	pthread_condattr_t ca;

	*out = NULL;
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cond, &ca);
	pthread_condattr_destroy(&ca);
	e->sink = sink;
	e->name = strdup(cfg->name && *cfg->name ? cfg->name : "edgecore-db");
	e->path = strdup(cfg->path && *cfg->path ? cfg->path : EM_EDGECORE_DEFAULT_DB);
	e->poll_ms = cfg->poll_interval_ms ? cfg->poll_interval_ms : 1000;
	e->busy_ms = cfg->busy_timeout_ms ? cfg->busy_timeout_ms : 1000;
	if (!e->name || !e->path) {
		edgecore_free(e);
		return -ENOMEM;
	}
	poll_once(e);
	if (pthread_create(&e->thread, NULL, poll_thread, e) != 0) {
		em_err("%s: cannot start the polling thread", e->name);
		edgecore_free(e);
		return -EAGAIN;
	}
	e->thread_started = true;
	*out = e;
	return 0;
}

void em_source_edgecore_stop(struct em_source_edgecore *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	if (e->thread_started)
		pthread_join(e->thread, NULL);
	edgecore_free(e);
}

void em_source_edgecore_stats(struct em_source_edgecore *e, struct em_edgecore_stats *st)
{
	st->reads = atomic_load(&e->n_reads);
	st->failures = atomic_load(&e->n_failures);
	st->skipped = atomic_load(&e->n_skipped);
}
