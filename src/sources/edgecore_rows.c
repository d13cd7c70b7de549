/* edgecore_rows.c — the rows of edgecore's database the edgecore-db source
 * reads, and how.
 *
 * Locking, which is the whole point of care here: in rollback-journal mode a
 * reader holds a SHARED lock for the life of its read transaction, and
 * edgecore's writer cannot commit (it needs EXCLUSIVE) until every SHARED
 * lock is gone (and edgecore gives up after its 5 s busy timeout). So read
 * transactions only copy the selected raw rows, JSON parsing happens after
 * the last COMMIT, and a read is cut into transactions of ~10 ms (struct
 * reader): at 10,000 services and 50,000 pods one transaction would hold
 * the lock for hundreds of ms. In WAL mode readers never block the writer.
 *
 * Which rows changed: SQLite keeps no per-row version, and edgecore both
 * updates rows in place (the rowid stays; a new resourceVersion often has
 * the same length) and writes INSERT OR REPLACE (a new rowid, the old row
 * deleted). So a row counts as unchanged only when the same rowid comes
 * back with the same key, type and value hash (em_value_hash, a function
 * registered on our connection); deletes are the rows of the last read that
 * a scan no longer returns. A rowid watermark alone would miss in-place
 * updates, and data_version only says that something changed. */
#include "sources/edgecore_rows.h"
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- what is read ------------------------------------------------------ */

const struct em_edgecore_kind em_edgecore_kinds[EM_EDGECORE_KINDS] = {
	{ "Service", "v1", "/core/v1/services/", { "service", "servicelist" } },
	{ "Endpoints", "v1", "/core/v1/endpoints/", { "endpoints", "endpointslist" } },
	{ "Pod", "v1", "/core/v1/pods/", { "pod", "podlist" } },
	{ "EndpointSlice", "discovery.k8s.io/v1", "/discovery.k8s.io/v1/endpointslices/",
	  { "endpointslice", NULL } },
};

/* ---- copying rows ------------------------------------------------------- */

/* Rows are copied into big chunks: the copy runs while the read lock is
 * held, so it does one memcpy per column and (almost) no malloc. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	char data[];
};

void em_edgecore_rows_free(struct rows *rs)
{
	struct chunk *c, *next;

	free(rs->idents);
	free(rs->text);
	for (c = rs->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	free(rs->v);
	free(rs->contribs);
	memset(rs, 0, sizeof(*rs));
}

void em_edgecore_rows_drop_text(struct rows *rs)
{
	struct chunk *c, *next;
	struct row *v;
	char *ids;

	for (c = rs->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	rs->chunks = NULL;
	free(rs->text);
	rs->text = NULL;
	if (rs->n && rs->n < rs->cap && (v = realloc(rs->v, rs->n * sizeof(*v)))) {
		rs->v = v;
		rs->cap = rs->n;
	}
	if (rs->idents_len && rs->idents_len < rs->idents_cap &&
	    (ids = realloc(rs->idents, rs->idents_len))) {
		rs->idents = ids;
		rs->idents_cap = rs->idents_len;
	}
}

const char *em_edgecore_row_key(const struct rows *rs, const struct row *r)
{
	return rs->text ? rs->text[r - rs->v].key : NULL;
}

const char *em_edgecore_row_value(const struct rows *rs, const struct row *r)
{
	return rs->text ? rs->text[r - rs->v].value : NULL;
}

static char *rows_copy(struct rows *rs, const void *src, size_t len)
{
	struct chunk *c = rs->chunks;
	char *p;

	if (!c || c->size - c->used < len + 1) {
		size_t size = len + 1 > (1u << 20) ? len + 1 : (1u << 20);
		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->used = 0;
		c->size = size;
		c->next = rs->chunks;
		rs->chunks = c;
	}
	p = c->data + c->used;
	if (len)
		memcpy(p, src, len);
	p[len] = '\0';
	c->used += len + 1;
	rs->bytes += len;
	return p;
}

static char *col(struct rows *rs, sqlite3_stmt *st, int i)
{
	const void *b = sqlite3_column_blob(st, i);
	return rows_copy(rs, b ? b : "", b ? (size_t)sqlite3_column_bytes(st, i) : 0);
}

/* ---- which rows changed ------------------------------------------------- */

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static uint64_t mix64(uint64_t w)
{
	w *= 0x87c37b91114253d5ULL;
	w = rotl64(w, 31);
	return w * 0x4cf5ad432745937fULL;
}

/* A 64-bit hash of a row's value, eight bytes a step: a changed value has
 * another hash but for a 2^-64 chance. The length goes in first, so the
 * zero padding of the tail is unambiguous. */
uint64_t em_edgecore_hash(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ mix64(n), w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = rotl64(h ^ mix64(w), 27) * 5 + 0x52dce729;
	}
	if (i < n) {
		w = 0;
		memcpy(&w, p + i, n - i);
		h ^= mix64(w);
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

static uint64_t value_hash(const void *data, size_t n)
{
	return em_edgecore_hash(data, n);
}

/* Appends "a\0b\0" to rs's idents for row r. */
static int ident_put(struct rows *rs, struct row *r, const char *a, size_t la, const char *b,
		     size_t lb)
{
	size_t need = rs->idents_len + la + lb + 2;

	if (need > UINT32_MAX)
		return -ENOMEM;
	if (need > rs->idents_cap) {
		size_t cap = rs->idents_cap ? rs->idents_cap : 4096;
		char *v;

		while (cap < need)
			cap *= 2;
		v = realloc(rs->idents, cap);
		if (!v)
			return -ENOMEM;
		rs->idents = v;
		rs->idents_cap = cap;
	}
	r->ident = (uint32_t)rs->idents_len + 1;
	memcpy(rs->idents + rs->idents_len, a, la + 1);
	memcpy(rs->idents + rs->idents_len + la + 1, b, lb + 1);
	rs->idents_len = need;
	return 0;
}

int em_edgecore_ident_set(struct rows *rs, struct row *r, const char *ns, const char *name)
{
	return ident_put(rs, r, ns, strlen(ns), name, strlen(name));
}

const char *em_edgecore_ident(const struct rows *rs, const struct row *r)
{
	return r->ident ? rs->idents + r->ident - 1 : NULL;
}

/* Each part hashed on its own, mixed in at its place: "a" "b/c" and
 * "a/b" "c" differ. */
uint64_t em_edgecore_ident_hash(int kind, const char *ns, const char *name)
{
	uint64_t h = em_edgecore_hash(ns, strlen(ns));

	h = rotl64(h, 17) ^ mix64(em_edgecore_hash(name, strlen(name)));
	return h ^ rotl64(mix64((uint64_t)kind + 1), 41);
}

uint64_t em_edgecore_row_ident_hash(const struct rows *rs, const struct row *r)
{
	const char *id = em_edgecore_ident(rs, r);

	return em_edgecore_ident_hash(r->kind, id, id + strlen(id) + 1);
}

/* SQL em_value_hash(value): value_hash of the bytes col() would copy;
 * NULL stays NULL. Runs inside SQLite, so the value is hashed where it
 * lies and never copied out. */
static void sql_value_hash(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const void *b;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	b = sqlite3_value_blob(argv[0]);
	sqlite3_result_int64(ctx, (sqlite3_int64)value_hash(b ? b : "",
			     b ? (size_t)sqlite3_value_bytes(argv[0]) : 0));
}

/* SQLite result -> -errno. A read-only connection cannot roll back a hot
 * journal that a crashed writer left: -EROFS, logged apart, until edgecore
 * (a writer) opens the database and rolls it back. */
int em_edgecore_errno(int rc)
{
	if (rc == SQLITE_READONLY_ROLLBACK)
		return -EROFS;
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
		return em_edgecore_errno(rc);
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return em_edgecore_errno(rc);
	*exists = rc == SQLITE_ROW;
	return 0;
}

/* A read made of short read transactions. Each holds the SHARED lock for at
 * most about budget_us, then lets edgecore's writer in, and the next one
 * resumes after the last row seen (paging on the rowid).
 * Rows are each consistent; the whole may mix states across a commit of
 * edgecore's, like a watch does, and then the next poll reads again, since
 * the data_version noted is the one from before the first transaction. */
struct reader {
	sqlite3 *db;
	struct rows *rs;
	long long budget_us;
	unsigned max_rows;		/* per transaction; 0: no limit */
	unsigned rows_in_txn;
	bool in_txn;
	long long t0;			/* start of the current transaction */
	struct em_edgecore_lock_times *lt;

	/* An incremental read: the rows of the previous read, or NULL (read
	 * every value). Both lists are in scan order (meta_v2 then meta, each
	 * by rowid), so one cursor walks prev along with the scan. */
	struct rows *prev;
	size_t pi;			/* cursor in prev */
	sqlite3_stmt *value_st;		/* the value of one rowid of the table scanned */
};

static int txn_begin(struct reader *rd)
{
	int rc;

	if (rd->in_txn)
		return 0;
	rd->t0 = (long long)em_clock_us();
	rc = sqlite3_exec(rd->db, "BEGIN DEFERRED", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return em_edgecore_errno(rc);
	rd->in_txn = true;
	rd->rows_in_txn = 0;
	return 0;
}

static void txn_end(struct reader *rd, bool ok)
{
	long long held;

	if (!rd->in_txn)
		return;
	sqlite3_exec(rd->db, ok ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
	rd->in_txn = false;
	held = (long long)em_clock_us() - rd->t0;
	rd->lt->total_us += held;
	rd->lt->transactions++;
	if (held > rd->lt->max_us)
		rd->lt->max_us = held;
}

/* Which of em_edgecore_kinds[] a selected row is: by the meta type (and whether the
 * value is a list) or by the meta_v2 key prefix; -1 for none. */
static int classify(bool v2, const char *what, bool *list)
{
	*list = false;
	for (int k = 0; what && k < EM_EDGECORE_KINDS; k++) {
		if (v2) {
			if (strncmp(what, em_edgecore_kinds[k].v2_prefix, strlen(em_edgecore_kinds[k].v2_prefix)) == 0)
				return k;
			continue;
		}
		for (int t = 0; t < 2; t++)
			if (em_edgecore_kinds[k].types[t] && strcmp(what, em_edgecore_kinds[k].types[t]) == 0) {
				*list = t == 1;
				return k;
			}
	}
	return -1;
}

static struct row *rows_add(struct rows *rs)
{
	if (rs->n == rs->cap || !rs->text) {
		size_t cap = rs->n == rs->cap ? (rs->cap ? rs->cap * 2 : 1024) : rs->cap;
		struct row *nv = realloc(rs->v, cap * sizeof(*nv));
		struct row_text *nt;

		if (!nv)
			return NULL;
		rs->v = nv;
		nt = realloc(rs->text, cap * sizeof(*nt));
		if (!nt)
			return NULL;
		rs->text = nt;
		rs->cap = cap;
	}
	memset(&rs->v[rs->n], 0, sizeof(rs->v[0]));
	memset(&rs->text[rs->n], 0, sizeof(rs->text[0]));
	return &rs->v[rs->n];
}

/* The previous read's row at (v2, rowid), if any; the cursor moves past
 * the rows before it (rows gone since). */
static struct row *prev_row(struct reader *rd, bool v2, sqlite3_int64 rowid)
{
	struct rows *p = rd->prev;

	while (rd->pi < p->n && ((p->v[rd->pi].v2 && !v2) ||
				 (p->v[rd->pi].v2 == v2 && p->v[rd->pi].rowid < rowid)))
		rd->pi++;
	if (rd->pi < p->n && p->v[rd->pi].v2 == v2 && p->v[rd->pi].rowid == rowid)
		return &p->v[rd->pi];
	return NULL;
}

/* Reads the key and value of row r->rowid (in the current transaction)
 * into r. */
static int read_value(struct reader *rd, struct row *r)
{
	struct row_text *t = &rd->rs->text[r - rd->rs->v];
	int rc;

	sqlite3_bind_int64(rd->value_st, 1, r->rowid);
	rc = sqlite3_step(rd->value_st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(rd->value_st);
		return rc == SQLITE_DONE ? -EIO : em_edgecore_errno(rc);
	}
	t->key = col(rd->rs, rd->value_st, 0);
	t->value = col(rd->rs, rd->value_st, 1);
	/* at once: an active statement would keep the SHARED lock past COMMIT */
	sqlite3_reset(rd->value_st);
	return t->key && t->value ? 0 : -ENOMEM;
}

/* Column 3 of an incremental scan is the value's hash: an unchanged row
 * (same rowid, key, type and hash) takes over the previous read's ident and
 * is not read; any other row's key and value are read. */
static int take_value(struct reader *rd, sqlite3_stmt *st, struct row *r)
{
	struct row *old;

	if (!rd->prev) {
		struct row_text *t = &rd->rs->text[r - rd->rs->v];

		t->key = col(rd->rs, st, 2);
		t->value = col(rd->rs, st, 3);
		if (!t->key || !t->value)
			return -ENOMEM;
		r->hash = value_hash(t->value, (size_t)sqlite3_column_bytes(st, 3));
		r->read = true;
		rd->rs->n_read++;
		return 0;
	}
	r->hash = (uint64_t)sqlite3_column_int64(st, 3);
	old = prev_row(rd, r->v2, r->rowid);
	if (old && old->hash == r->hash && old->kind == r->kind && old->list == r->list &&
	    old->key_hash == r->key_hash) {
		const char *id = em_edgecore_ident(rd->prev, old);

		old->kept = true;
		if (!id)
			return 0;
		return ident_put(rd->rs, r, id, strlen(id), id + strlen(id) + 1,
				 strlen(id + strlen(id) + 1));
	}
	r->read = true;
	rd->rs->n_read++;
	return read_value(rd, r);
}

/* The hash of a row's type (meta) or key (meta_v2) and key, read where
 * SQLite holds them (nothing copied). */
static uint64_t key_hash(sqlite3_stmt *st)
{
	const void *what = sqlite3_column_blob(st, 1), *key = sqlite3_column_blob(st, 2);
	uint64_t h1 = value_hash(what ? what : "", what ? (size_t)sqlite3_column_bytes(st, 1) : 0);

	return value_hash(key ? key : "", key ? (size_t)sqlite3_column_bytes(st, 2) : 0) ^ mix64(h1);
}

/* "/<group>/<version>/<resource>/<ns>/<name>": a key meta_v2 holds an
 * object under (list rows, cluster-scoped ("null" namespace) and other
 * shapes do not count). */
static bool v2_object_key(const char *key)
{
	const char *ns = NULL;
	size_t slashes = 0;

	for (const char *p = key; p && *p; p++)
		if (*p == '/' && ++slashes == 4)
			ns = p + 1;
	return slashes == 5 && strncmp(ns, "null/", 5) != 0;
}

/* Takes one row if it is selected (columns 1-3 not NULL). 1 kept, 0 not. */
static int keep_row(struct reader *rd, sqlite3_stmt *st, bool v2)
{
	struct row *r;
	bool list;
	int kind, ret;

	if (sqlite3_column_type(st, 3) == SQLITE_NULL)
		return 0;
	kind = classify(v2, (const char *)sqlite3_column_text(st, 1), &list);
	if (kind < 0)
		return 0;
	r = rows_add(rd->rs);
	if (!r)
		return -ENOMEM;
	r->rowid = sqlite3_column_int64(st, 0);
	r->v2 = v2;
	r->kind = (unsigned char)kind;
	r->list = list;
	r->key_hash = key_hash(st);
	r->v2_obj = v2 && v2_object_key((const char *)sqlite3_column_text(st, 2));
	ret = take_value(rd, st, r);
	if (ret < 0)
		return ret;
	rd->rs->n++;
	return 1;
}

/* Copies the rows of one table that `sql` selects, resuming after the last
 * rowid seen when the transaction's budget is spent. The query returns
 * EVERY row of the table, in rowid (storage) order, as: rowid, then the
 * meta type or meta_v2 key, the key and the value, all three NULL unless
 * the row is selected. So nothing of another row is ever copied out of
 * SQLite (its value is not even read: the CASE skips the column), the table
 * is read sequentially rather than through the key index, and a long run of
 * other rows cannot hold the lock past the budget. ?1 is the rowid to
 * resume after, ?2.. binds[]. */
static int scan_paged(struct reader *rd, const char *sql, const char *const *binds, int n_binds,
		      bool v2)
{
	sqlite3_int64 after = INT64_MIN;
	sqlite3_stmt *st = NULL;
	int rc, ret;

	for (;;) {
		bool more = false;

		ret = txn_begin(rd);
		if (ret < 0)
			return ret;
		rc = sqlite3_prepare_v2(rd->db, sql, -1, &st, NULL);
		if (rc != SQLITE_OK)
			return em_edgecore_errno(rc);
		sqlite3_bind_int64(st, 1, after);
		for (int i = 0; i < n_binds; i++)
			sqlite3_bind_text(st, i + 2, binds[i], -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			int kept;

			after = sqlite3_column_int64(st, 0);
			kept = keep_row(rd, st, v2);
			if (kept < 0) {
				sqlite3_finalize(st);
				return kept;
			}
			if ((long long)em_clock_us() - rd->t0 >= rd->budget_us ||
			    (rd->max_rows && ++rd->rows_in_txn >= rd->max_rows)) {
				more = true;
				break;
			}
		}
		sqlite3_finalize(st);
		if (!more)
			return rc == SQLITE_DONE ? 0 : em_edgecore_errno(rc);
		txn_end(rd, true);	/* let the writer in, then resume */
	}
}

/* scan_paged with, for an incremental read, the statement that reads the
 * value of a changed row. */
static int copy_paged(struct reader *rd, const char *sql, const char *const *binds, int n_binds,
		      bool v2)
{
	int rc, ret;

	rd->value_st = NULL;
	if (rd->prev) {
		rc = sqlite3_prepare_v2(rd->db, v2 ? "SELECT key, value FROM meta_v2 WHERE rowid = ?1" :
					"SELECT key, value FROM meta WHERE rowid = ?1", -1, &rd->value_st, NULL);
		if (rc != SQLITE_OK)
			return em_edgecore_errno(rc);
	}
	ret = scan_paged(rd, sql, binds, n_binds, v2);
	sqlite3_finalize(rd->value_st);
	rd->value_st = NULL;
	return ret;
}

/* What a scan selects of a selected row's value: the value itself, or only
 * its hash when the previous read's rows tell what changed. */
static const char *value_column(const struct reader *rd)
{
	return rd->prev ? "em_value_hash(value)" : "value";
}

/* meta_v2: by key prefix, one range per kind. The GVR column is not used:
 * its name differs between edgecore versions. */
static int copy_v2(struct reader *rd)
{
	char cond[512] = "", sql[1300], hi[EM_EDGECORE_KINDS][64];
	const char *binds[2 * EM_EDGECORE_KINDS];
	struct rows *rs = rd->rs;
	int ret;

	for (int k = 0; k < EM_EDGECORE_KINDS; k++) {
		/* the prefix ends in '/': every key under it sorts below prefix-with-'0' */
		snprintf(hi[k], sizeof(hi[k]), "%.*s0", (int)strlen(em_edgecore_kinds[k].v2_prefix) - 1,
			 em_edgecore_kinds[k].v2_prefix);
		binds[2 * k] = em_edgecore_kinds[k].v2_prefix;
		binds[2 * k + 1] = hi[k];
		snprintf(cond + strlen(cond), sizeof(cond) - strlen(cond), "%s(key > ?%d AND key < ?%d)",
			 k ? " OR " : "", 2 * k + 2, 2 * k + 3);
	}
	snprintf(sql, sizeof(sql),
		 "SELECT rowid, CASE WHEN %s THEN key END, CASE WHEN %s THEN key END, "
		 "CASE WHEN %s THEN %s END FROM meta_v2 WHERE rowid > ?1 ORDER BY rowid",
		 cond, cond, cond, value_column(rd));
	ret = copy_paged(rd, sql, binds, 2 * EM_EDGECORE_KINDS, true);
	/* which kinds it holds objects of */
	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].v2_obj)
			rs->v2_has[rs->v[i].kind] = true;
	return ret;
}

/* meta: by type, leaving out the kinds meta_v2 holds unless merge_legacy. */
static int copy_meta(struct reader *rd, bool merge_legacy)
{
	char in[128] = "", sql[640];
	const char *binds[2 * EM_EDGECORE_KINDS];
	int n = 0;

	for (int k = 0; k < EM_EDGECORE_KINDS; k++) {
		if (rd->rs->v2_has[k] && !merge_legacy)
			continue;
		for (int t = 0; t < 2; t++)
			if (em_edgecore_kinds[k].types[t]) {
				snprintf(in + strlen(in), sizeof(in) - strlen(in), "%s?%d",
					 n ? "," : "", n + 2);
				binds[n++] = em_edgecore_kinds[k].types[t];
			}
	}
	if (!n)
		return 0;
	snprintf(sql, sizeof(sql),
		 "SELECT rowid, CASE WHEN type IN (%s) THEN type END, CASE WHEN type IN (%s) THEN key END, "
		 "CASE WHEN type IN (%s) THEN %s END FROM meta WHERE rowid > ?1 ORDER BY rowid",
		 in, in, in, value_column(rd));
	return copy_paged(rd, sql, binds, n, false);
}

/* The read: copy the selected rows (in short transactions, see struct
 * reader), noting data_version first. With prev (the rows of the previous
 * read), only the values of rows that changed are read. */
int em_edgecore_rows_read(sqlite3 *db, const struct em_edgecore_config *cfg, struct rows *prev,
		     struct rows *rs, long long *version, struct em_edgecore_lock_times *lt)
{
	struct reader rd = {
		.db = db, .rs = rs, .lt = lt, .prev = prev,
		.budget_us = (long long)(cfg->lock_budget_ms ? cfg->lock_budget_ms : 10) * 1000,
		.max_rows = cfg->max_rows_per_txn,
	};
	bool merge_legacy = cfg->merge_legacy;
	bool has_meta = false, has_v2 = false;
	sqlite3_stmt *st;
	int rc, ret;

	memset(lt, 0, sizeof(*lt));
	for (size_t i = 0; prev && i < prev->n; i++)
		prev->v[i].kept = false;
	if (prev && prev->n) {
		/* about the size of the last read's, at once: a chain of
		 * doubling reallocs on every poll leaves the heap in holes */
		rs->v = malloc((prev->n + 256) * sizeof(*rs->v));
		rs->cap = rs->v ? prev->n + 256 : 0;
		rs->idents = malloc(prev->idents_len + 4096);
		rs->idents_cap = rs->idents ? prev->idents_len + 4096 : 0;
	}
	ret = txn_begin(&rd);
	if (ret == 0)
		ret = table_exists(db, "meta", &has_meta);
	if (ret == 0)
		ret = table_exists(db, "meta_v2", &has_v2);
	if (ret == 0 && !has_meta && !has_v2)
		ret = -ENODATA;		/* not (yet) an edgecore database */
	if (ret == 0 && version) {
		rc = sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			*version = sqlite3_column_int64(st, 0);
		else
			ret = em_edgecore_errno(rc == SQLITE_OK ? sqlite3_extended_errcode(db) : rc);
		sqlite3_finalize(st);
	}
	if (ret == 0 && has_v2)
		ret = copy_v2(&rd);	/* first: it decides which meta rows count */
	if (ret == 0 && has_meta)
		ret = copy_meta(&rd, merge_legacy);
	txn_end(&rd, ret == 0);
	return ret;
}

int em_edgecore_open(const char *path, unsigned busy_ms, sqlite3 **out)
{
	sqlite3 *db = NULL;
	/* SQLITE_OPEN_READONLY is what the URI's mode=ro sets; the file is
	 * never created, and query_only refuses writes even if it could. */
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc != SQLITE_OK) {
		sqlite3_close(db);
		return em_edgecore_errno(rc);
	}
	sqlite3_extended_result_codes(db, 1);	/* to tell SQLITE_READONLY_ROLLBACK */
	rc = sqlite3_create_function(db, "em_value_hash", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
				     NULL, sql_value_hash, NULL, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_close(db);
		return em_edgecore_errno(rc);
	}
	sqlite3_busy_timeout(db, (int)busy_ms);
	sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL);
	*out = db;
	return 0;
}
