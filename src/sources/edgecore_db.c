/* edgecore_db.c — KubeEdge MetaManager's SQLite store as a source: its rows
 * (edgecore_rows.c) turned into objects, and the polling.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "sources/edgecore_rows.h"
#include "util/log.h"

/* What stat() says of the database and its WAL. */
struct sig {
	long long size, mtime_ns, wal_size, wal_mtime_ns;
};

/* ---- rows to objects ---------------------------------------------------- */

struct counts {
	unsigned long skipped;		/* rows of our kinds that are not usable objects */
	unsigned long ignored;		/* other API groups, list or cluster-scoped keys */
};

static unsigned long long rv_of(json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));
	return rv ? strtoull(rv, NULL, 10) : 0;
}

/* Whether obj is of em_edgecore_kinds[k] as far as it says: a kind or apiVersion it
 * carries must match (the dynamic controller stores, e.g., Knative
 * Services under the type "service"). Values without either (MetaManager
 * up to KubeEdge 1.5) are taken for what the row says. */
static bool same_api(json_t *obj, int k)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	const char *api = json_string_value(json_object_get(obj, "apiVersion"));

	return (!kind || strcmp(kind, em_edgecore_kinds[k].kind) == 0) &&
	       (!api || strcmp(api, em_edgecore_kinds[k].api_version) == 0);
}

/* Where a parse notes what identifies the objects of the rows (NULL: only
 * the objects are wanted): the row parsed (it gets the ident of the object
 * a non-list row holds) and the identity hash of every object found. */
struct index {
	struct rows *rs;
	struct row *row;
	uint64_t *v;
	size_t n, cap;
	bool nomem;
};

static void index_add(struct index *ix, int k, const char *ns, const char *name)
{
	if (ix->n == ix->cap) {
		size_t cap = ix->cap ? 2 * ix->cap : 1024;
		uint64_t *v = realloc(ix->v, cap * sizeof(*v));

		if (v) {
			ix->v = v;
			ix->cap = cap;
		}
	}
	if (ix->n == ix->cap || (!ix->row->list && !ix->row->ident &&
				 em_edgecore_ident_set(ix->rs, ix->row, ns, name) < 0)) {
		ix->nomem = true;
		return;
	}
	ix->v[ix->n++] = em_edgecore_ident_hash(k, ns, name);
}

/* Add one object to `seen` ("Kind ns/name" -> obj), higher resourceVersion
 * winning, a later row on a tie. 1 added, 0 ignored (another API), -1 not
 * a usable object. Steals nothing. */
static int add_object(json_t *seen, json_t *obj, int k, const char *ns, struct index *ix)
{
	json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ons = json_string_value(json_object_get(meta, "namespace"));
	json_t *old;
	char *key;

	if (!json_is_object(obj) || !json_is_object(meta) || !name || !*name)
		return -1;
	if (!same_api(obj, k))
		return 0;
	if (!json_is_string(json_object_get(obj, "kind")))
		json_object_set_new(obj, "kind", json_string(em_edgecore_kinds[k].kind));
	if (!ons && ns && *ns)
		json_object_set_new(meta, "namespace", json_string(ns));
	ons = json_string_value(json_object_get(meta, "namespace"));
	if (asprintf(&key, "%s %s/%s", em_edgecore_kinds[k].kind, ons ? ons : "", name) == -1)
		return -1;
	if (ix)
		index_add(ix, k, ons ? ons : "", name);
	old = json_object_get(seen, key);
	if (!old || rv_of(obj) >= rv_of(old))
		json_object_set(seen, key, obj);
	free(key);
	return 1;
}

/* Segments of a '/'-separated key (empty ones dropped); at most max + 1. */
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

static void count(struct counts *c, int r, const struct row *row, const char *key)
{
	if (r < 0) {
		c->skipped++;
		em_log(EM_LOG_DEBUG, "edgecore-db: row %s: not a Kubernetes %s", key,
		       em_edgecore_kinds[row->kind].kind);
	} else if (r == 0) {
		c->ignored++;
	}
}

/* One row of rs, read by this read -> objects in `seen` (and ix, if not
 * NULL). */
static void parse_row(const struct rows *rs, const struct row *r, json_t *seen, struct counts *c,
		      struct index *ix)
{
	const char *key = em_edgecore_row_key(rs, r);
	char *keycopy = strdup(key), *seg[6];
	size_t n = keycopy ? split(keycopy, seg, 5) : 0;
	const char *ns = NULL;
	json_t *val, *items, *it;
	size_t i;

	if (r->v2) {
		/* /<group>/<version>/<resource>/<ns>/<name>; a 4-segment key is
		 * a list row, 6 segments are not ours; "null" = cluster scope */
		if (n != 5 || strcmp(seg[3], "null") == 0) {
			c->ignored++;
			goto out;
		}
		ns = seg[3];
	} else if (n == 3) {
		ns = seg[0];		/* <ns>/<type>/<name> */
	}
	val = json_loads(em_edgecore_row_value(rs, r), JSON_DECODE_ANY, NULL);
	items = json_is_object(val) && json_is_array(json_object_get(val, "items")) ?
		json_object_get(val, "items") : val;
	if (r->list && json_is_null(val)) {
		/* MetaManager writes an empty podlist as null */
	} else if (r->list && json_is_array(items)) {
		json_array_foreach(items, i, it)
			count(c, add_object(seen, it, r->kind, ns, ix), r, key);
	} else if (r->list) {
		count(c, -1, r, key);
	} else {
		count(c, add_object(seen, val, r->kind, ns, ix), r, key);
	}
	json_decref(val);
out:
	free(keycopy);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Every row -> the objects, the winner of each identity; with ix, also the
 * rows' idents and rs->contribs (NULL on ENOMEM). */
static json_t *parse_rows(struct rows *rs, struct counts *c, struct index *ix)
{
	json_t *seen = json_object(), *items = json_array(), *v;
	const char *k;

	/* meta rows first, so meta_v2 wins ties */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < rs->n; i++)
			if (rs->v[i].v2 == (pass == 1)) {
				if (ix) {
					ix->rs = rs;
					ix->row = &rs->v[i];
				}
				parse_row(rs, &rs->v[i], seen, c, ix);
			}
	json_object_foreach(seen, k, v)
		json_array_append(items, v);
	json_decref(seen);
	if (ix && ix->nomem) {
		free(ix->v);
		json_decref(items);
		return NULL;
	}
	if (ix) {
		if (ix->n)
			qsort(ix->v, ix->n, sizeof(*ix->v), cmp_u64);
		free(rs->contribs);
		rs->contribs = ix->v;
		rs->n_contribs = ix->n;
	}
	return items;
}

int em_edgecore_db_read(const struct em_edgecore_config *cfg, json_t **items,
			struct em_edgecore_read_info *info)
{
	const char *path = cfg->path && *cfg->path ? cfg->path : EM_EDGECORE_DEFAULT_DB;
	struct rows rs = { 0 };
	struct counts c = { 0 };
	struct em_edgecore_lock_times lt = { 0 };
	struct stat sb;
	sqlite3 *db;
	int ret;

	*items = NULL;
	if (stat(path, &sb) == -1)
		return -errno;
	ret = em_edgecore_open(path, cfg->busy_timeout_ms ? cfg->busy_timeout_ms : 1000, &db);
	if (ret < 0)
		return ret;
	ret = em_edgecore_rows_read(db, cfg, NULL, &rs, NULL, &lt);
	sqlite3_close(db);
	if (ret == 0)
		*items = parse_rows(&rs, &c, NULL);
	if (info) {
		info->lock = lt;
		info->rows = rs.n;
		info->bytes = rs.bytes;
		info->skipped = c.skipped;
		info->ignored = c.ignored;
	}
	em_edgecore_rows_free(&rs);
	return ret;
}

struct em_source_edgecore {
	char *name;
	char *path;
	unsigned poll_ms, busy_ms;
	struct em_edgecore_config read_cfg;	/* what read_rows uses of it */
	struct em_source_sink sink;

	sqlite3 *db;			/* kept open for data_version */
	dev_t dev;
	ino_t ino;
	struct sig sig;			/* files as of the last check */
	long long verified_ns;		/* wall clock of that check */
	long long version;		/* data_version of the last delivered read */
	bool delivered;			/* a read has reached the sink */
	bool have_cache;		/* cache holds the rows of the last read delivered */
	struct rows cache;		/* rowids, hashes, idents: no text */
	int last_err;			/* for logging state changes once */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;

	atomic_ulong n_reads, n_failures, n_skipped, n_ignored, n_polls;
	atomic_ulong lock_us_last, lock_us_max;
	atomic_ulong n_rows_read, rows_read_last;
	atomic_ulong n_full_reads, objects_last;
};

/* ---- polling ------------------------------------------------------------ */

static void note_error(struct em_source_edgecore *e, int err, const char *what)
{
	atomic_fetch_add(&e->n_failures, 1);
	if (err == -EROFS && err != e->last_err)
		em_warn("%s: %s %s: a crashed writer left a hot journal, which a read-only "
			"reader may not roll back; waiting for edgecore to open the database%s",
			e->name, what, e->path,
			e->delivered ? " (keeping the last good data)" : "");
	else if (err != e->last_err)
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

/* The database open on the file now at e->path: 0, or -1 (noted). A file
 * replaced since the last poll is opened afresh and read whole. */
static int ensure_open(struct em_source_edgecore *e, struct stat *sb)
{
	int ret;

	if (stat(e->path, sb) == -1) {
		close_db(e);
		note_error(e, -errno, "cannot stat");
		return -1;
	}
	if (e->db && (sb->st_dev != e->dev || sb->st_ino != e->ino))
		close_db(e);		/* replaced: data_version of the old file says nothing */
	if (e->db)
		return 0;
	ret = em_edgecore_open(e->path, e->busy_ms, &e->db);
	if (ret < 0) {
		note_error(e, ret, "cannot open");
		return -1;
	}
	e->dev = sb->st_dev;
	e->ino = sb->st_ino;
	e->delivered = false;
	e->have_cache = false;
	em_edgecore_rows_free(&e->cache);	/* rowids of another file */
	return 0;
}

/* Whether the database changed since the last delivered read: 1 (read
 * it), 0 (no; the check is noted), -1 (error, noted). sig gets the files'
 * signature. */
static int changed(struct em_source_edgecore *e, const struct stat *sb, struct sig *sig,
		   long long now)
{
	long long version = 0;
	sqlite3_stmt *st;
	int rc;

	if (!e->delivered) {
		unchanged(e, sb, sig);
		return 1;
	}
	if (unchanged(e, sb, sig))
		return 0;
	rc = sqlite3_prepare_v2(e->db, "PRAGMA data_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		note_error(e, em_edgecore_errno(rc), "cannot read");
		return -1;
	}
	if (version != e->version)
		return 1;
	e->sig = *sig;
	e->verified_ns = now;
	return 0;
}

static void note_skipped(struct em_source_edgecore *e, const struct counts *c)
{
	atomic_fetch_add(&e->n_ignored, c->ignored);
	if (c->skipped) {
		atomic_fetch_add(&e->n_skipped, c->skipped);
		em_warn("%s: %lu rows of %s are not usable Kubernetes objects, ignored", e->name,
			c->skipped, e->path);
	}
}

/* The rows of a full read to the sink (replace + commit); without their
 * text they become the cache the next read compares with. 0 or -ENOMEM. */
static int deliver_all(struct em_source_edgecore *e, struct rows *rs, long long max_lock_us)
{
	struct counts c = { 0 };
	struct index ix = { 0 };
	json_t *items = parse_rows(rs, &c, &ix);

	if (!items)
		return -ENOMEM;
	note_skipped(e, &c);
	em_edgecore_rows_drop_text(rs);
	em_edgecore_rows_free(&e->cache);
	e->cache = *rs;
	e->have_cache = true;
	memset(rs, 0, sizeof(*rs));
	e->sink.replace(e->sink.ctx, e->name, NULL, items);
	e->sink.commit(e->sink.ctx, e->name);
	atomic_fetch_add(&e->n_full_reads, 1);
	atomic_store(&e->objects_last, json_array_size(items));
	if (e->last_err)
		em_info("%s: reading %s again: %zu objects", e->name, e->path, json_array_size(items));
	else
		em_debug("%s: read %zu objects from %s (%zu rows, read lock held at most %lld us)",
			 e->name, json_array_size(items), e->path, e->cache.n, max_lock_us);
	json_decref(items);
	return 0;
}

/* One object an incremental read takes away (-1: a row of the last read
 * that changed or went) or brings (+1, with the object). */
struct change {
	uint64_t h;
	int delta;
	const struct row *row;
	json_t *obj;
};

static int cmp_change(const void *a, const void *b)
{
	const struct change *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->delta - y->delta;	/* takings first */
}

/* How many rows of the last read hold the object of hash h. */
static size_t contributors(const struct rows *prev, uint64_t h)
{
	size_t lo = 0, hi = prev->n_contribs, n = 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (prev->contribs[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (lo + n < prev->n_contribs && prev->contribs[lo + n] == h)
		n++;
	return n;
}

/* The changes, sorted by identity hash: the objects of the rows of prev that
 * are not kept and of the rows of rs that were read (*n_out of them, even
 * on error). 0, 1 when a list row is among them (a full read is needed),
 * -ENOMEM. */
static int collect(const struct rows *prev, struct rows *rs, struct counts *c, struct change *ch,
		   size_t *n_out)
{
	*n_out = 0;
	for (size_t i = 0; i < prev->n; i++) {
		const struct row *r = &prev->v[i];
		if (r->kept)
			continue;
		if (r->list)
			return 1;
		if (r->ident)
			ch[(*n_out)++] = (struct change){ em_edgecore_row_ident_hash(prev, r), -1, r,
							  NULL };
	}
	for (size_t i = 0; i < rs->n; i++) {
		struct row *r = &rs->v[i];
		struct index ix = { .rs = rs, .row = r };
		json_t *seen, *v;
		const char *k;

		if (!r->read)
			continue;
		if (r->list)
			return 1;
		seen = json_object();
		parse_row(rs, r, seen, c, &ix);
		free(ix.v);
		if (ix.nomem || !seen) {
			json_decref(seen);
			return -ENOMEM;
		}
		if (r->ident)
			json_object_foreach(seen, k, v)
				ch[(*n_out)++] = (struct change){ em_edgecore_row_ident_hash(rs, r), 1,
								  r, json_incref(v) };
		json_decref(seen);
	}
	qsort(ch, *n_out, sizeof(*ch), cmp_change);
	return 0;
}

/* Whether every object the changes touch is held by one row at most, before
 * and after: then the object of its row is the one a full read would take
 * (several rows holding one object need the resourceVersion rule, which
 * needs the other rows' values: a full read). */
static bool single_holders(const struct rows *prev, const struct change *ch, size_t n)
{
	for (size_t i = 0, j; i < n; i = j) {
		size_t before = contributors(prev, ch[i].h);
		long after = (long)before;

		for (j = i; j < n && ch[j].h == ch[i].h; j++)
			after += ch[j].delta;
		if (before > 1 || after > 1)
			return false;
	}
	return true;
}

/* The contributions of the last read, less the changes' takings, plus their
 * additions (all sorted). NULL on ENOMEM. */
static uint64_t *merge_contribs(const struct rows *prev, const struct change *ch, size_t n,
				size_t *n_out)
{
	uint64_t *v = malloc((prev->n_contribs + n + 1) * sizeof(*v));
	size_t i = 0, k = 0, o = 0;

	if (!v)
		return NULL;
	while (i < prev->n_contribs || k < n) {
		if (k < n && ch[k].delta < 0 && i < prev->n_contribs && prev->contribs[i] == ch[k].h) {
			i++;	/* taken away */
			k++;
		} else if (k < n && ch[k].delta < 0 && (i == prev->n_contribs || prev->contribs[i] > ch[k].h)) {
			k++;	/* cannot happen: every taking was counted */
		} else if (k < n && ch[k].delta > 0 &&
			   (i == prev->n_contribs || ch[k].h <= prev->contribs[i])) {
			v[o++] = ch[k++].h;
		} else {
			v[o++] = prev->contribs[i++];
		}
	}
	*n_out = o;
	return v;
}

/* An incremental read to the sink: per object upsert or remove, one commit.
 * 1 delivered (rs becomes the cache), 0 a full read is needed, -ENOMEM. */
static int deliver_changes(struct em_source_edgecore *e, struct rows *rs)
{
	struct rows *prev = &e->cache;
	struct change *ch = calloc(prev->n + rs->n_read + 1, sizeof(*ch));
	struct counts c = { 0 };
	size_t n = 0, n_contribs = 0, objects = 0;
	uint64_t *contribs = NULL;
	int ret = ch ? collect(prev, rs, &c, ch, &n) : -ENOMEM;

	if (ret == 0 && !single_holders(prev, ch, n))
		ret = 1;
	if (ret == 0 && !(contribs = merge_contribs(prev, ch, n, &n_contribs)))
		ret = -ENOMEM;
	for (size_t i = 0, j; ret == 0 && i < n; i = j) {
		size_t last = i;

		for (j = i; j < n && ch[j].h == ch[i].h; j++)
			last = j;
		objects++;
		if (ch[last].delta > 0) {
			e->sink.upsert(e->sink.ctx, e->name, ch[last].obj);
		} else {
			const struct row *r = ch[last].row;
			const char *id = em_edgecore_ident(prev, r);

			e->sink.remove(e->sink.ctx, e->name, em_edgecore_kinds[r->kind].kind, id,
				       id + strlen(id) + 1);
		}
	}
	if (ret == 0) {
		note_skipped(e, &c);
		if (objects)
			e->sink.commit(e->sink.ctx, e->name);
		atomic_store(&e->objects_last, objects);
		em_edgecore_rows_drop_text(rs);
		rs->contribs = contribs;
		rs->n_contribs = n_contribs;
		em_edgecore_rows_free(&e->cache);
		e->cache = *rs;
		memset(rs, 0, sizeof(*rs));
		em_debug("%s: %zu rows changed in %s", e->name, e->cache.n_read, e->path);
	}
	for (size_t i = 0; i < n; i++)
		json_decref(ch[i].obj);
	free(ch);
	return ret == 0 ? 1 : ret == 1 ? 0 : ret;
}

/* One read of the rows (prev: the cache, or NULL for every value). */
static int read_rows(struct em_source_edgecore *e, struct rows *prev, struct rows *rs,
		     long long *version, long long *max_lock_us)
{
	struct em_edgecore_lock_times lt;
	int ret = em_edgecore_rows_read(e->db, &e->read_cfg, prev, rs, version, &lt);

	atomic_store(&e->lock_us_last, (unsigned long)lt.max_us);
	if ((unsigned long)lt.max_us > atomic_load(&e->lock_us_max))
		atomic_store(&e->lock_us_max, (unsigned long)lt.max_us);
	if (lt.max_us > *max_lock_us)
		*max_lock_us = lt.max_us;
	return ret;
}

/* Check for a change and deliver it. Called from start and the thread.
 * With the rows of the last read kept, only changed rows are read and only
 * their objects delivered; a change a row alone cannot tell (a list row, an
 * object several rows hold) falls back to a full read. */
static void poll_once(struct em_source_edgecore *e)
{
	struct rows rs = { 0 };
	long long version = 0, now, max_lock_us = 0;
	unsigned long n_read = 0;
	struct stat sb;
	struct sig sig;
	int ret;

	if (ensure_open(e, &sb) < 0)
		return;
	now = wall_ns();
	if (changed(e, &sb, &sig, now) <= 0)
		return;
	ret = read_rows(e, e->have_cache ? &e->cache : NULL, &rs, &version, &max_lock_us);
	if (ret == 0 && e->have_cache) {
		n_read = rs.n_read;
		ret = deliver_changes(e, &rs);
		if (ret <= 0) {
			em_edgecore_rows_free(&rs);
			em_edgecore_rows_free(&e->cache);
			e->have_cache = false;
		}
		if (ret == 0)
			ret = read_rows(e, NULL, &rs, &version, &max_lock_us);
	}
	if (ret == 0) {
		n_read += rs.n_read;
		ret = deliver_all(e, &rs, max_lock_us);
	}
	if (ret < 0) {
		/* a read that failed leaves the cache as it was, not what the
		 * sink holds after a failed delivery */
		em_edgecore_rows_free(&rs);
		note_error(e, ret, "cannot read");
		return;
	}
	atomic_fetch_add(&e->n_rows_read, n_read);
	atomic_store(&e->rows_read_last, n_read);
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
		atomic_fetch_add(&e->n_polls, 1);
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

static void edgecore_free(struct em_source_edgecore *e)
{
	close_db(e);
	em_edgecore_rows_free(&e->cache);
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
	e->read_cfg.merge_legacy = cfg->merge_legacy;
	e->read_cfg.lock_budget_ms = cfg->lock_budget_ms;
	e->read_cfg.max_rows_per_txn = cfg->max_rows_per_txn;
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

void em_source_edgecore_poll(struct em_source_edgecore *e)
{
	poll_once(e);
}

void em_source_edgecore_stats(struct em_source_edgecore *e, struct em_edgecore_stats *st)
{
	st->polls = atomic_load(&e->n_polls);
	st->reads = atomic_load(&e->n_reads);
	st->failures = atomic_load(&e->n_failures);
	st->skipped = atomic_load(&e->n_skipped);
	st->ignored = atomic_load(&e->n_ignored);
	st->lock_us_last = atomic_load(&e->lock_us_last);
	st->lock_us_max = atomic_load(&e->lock_us_max);
	st->rows_read = atomic_load(&e->n_rows_read);
	st->rows_read_last = atomic_load(&e->rows_read_last);
	st->full_reads = atomic_load(&e->n_full_reads);
	st->objects_last = atomic_load(&e->objects_last);
}
