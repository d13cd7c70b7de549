/* edgecore_rows.h — internal to the edgecore-db source: reading the raw
 * rows of the kinds it serves out of edgecore's database (edgecore_rows.c),
 * for edgecore_db.c to turn into objects. */
#ifndef EM_SOURCES_EDGECORE_ROWS_H
#define EM_SOURCES_EDGECORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "sources/edgecore_db.h"

/* The kinds served, where each lives: meta_v2 key prefix (group "core" for
 * the core API, exactly as MetaServer's key function writes it) and meta
 * type strings (MetaManager's resource types; the *list types hold a JSON
 * array). Anything else in either table (secrets, configmaps, podstatus,
 * podpatch, nodes, node task requests, non-resource paths...) is never
 * selected, so it never leaves the database. */
enum { EM_EDGECORE_SERVICE, EM_EDGECORE_ENDPOINTS, EM_EDGECORE_POD, EM_EDGECORE_SLICE,
       EM_EDGECORE_KINDS };

struct em_edgecore_kind {
	const char *kind;
	const char *api_version;	/* a value's apiVersion, when it has one */
	const char *v2_prefix;
	const char *types[2];		/* meta: single, list (or NULL) */
};
extern const struct em_edgecore_kind em_edgecore_kinds[EM_EDGECORE_KINDS];

struct chunk;

/* One selected row: its kind, which table (v2: meta_v2), whether its value
 * is a list (podlist...). Only what identifies the row, its value and the
 * object it holds: this is what is kept between reads (40 bytes). */
struct row {
	uint32_t ident;			/* 1 + the offset in the rows' idents of
					 * "ns\0name\0", the object a single row holds;
					 * 0: a list row or no object */
	sqlite3_int64 rowid;
	uint64_t key_hash;		/* value_hash of the meta type / v2 key and key */
	uint64_t hash;			/* value_hash(value) */
	unsigned char kind;
	bool v2, list;
	bool read;			/* its value was read by this read */
	bool kept;			/* (previous read) the next read found it unchanged */
	bool v2_obj;			/* a meta_v2 key of an object ("/g/v/r/ns/name") */
};

/* The selected rows of one read, in scan order (meta_v2, then meta, each by
 * rowid); keys and values read live in the chunks. contribs: the identity
 * hash (em_edgecore_ident_hash) of every object every row holds (a list
 * row's items included), sorted: an object found in two rows (legacy
 * podlists, merge_legacy) appears twice. idents: the rows' objects'
 * "ns\0name\0", back to back in one block (a malloc per row would pin a
 * page of the parse's freed memory each). */
struct row_text {
	const char *key, *value;
};

struct rows {
	struct row *v;
	size_t n, cap;
	/* v[i]'s key and value, for the rows read by this read (NULL for the
	 * others), until em_edgecore_rows_drop_text() */
	struct row_text *text;
	struct chunk *chunks;
	size_t bytes;
	size_t n_read;			/* rows whose value was read from the database */
	bool v2_has[EM_EDGECORE_KINDS];	/* meta_v2 holds rows of that kind */
	uint64_t *contribs;
	size_t n_contribs;
	char *idents;
	size_t idents_len, idents_cap;
};

void em_edgecore_rows_free(struct rows *rs);
/* Frees the keys and values read (and the spare room of the row array):
 * what is kept between reads. */
void em_edgecore_rows_drop_text(struct rows *rs);
/* The key and value of row r of rs (read by this read, text not dropped). */
const char *em_edgecore_row_key(const struct rows *rs, const struct row *r);
const char *em_edgecore_row_value(const struct rows *rs, const struct row *r);

/* The same 64-bit hash SQL's em_value_hash computes. */
uint64_t em_edgecore_hash(const void *data, size_t n);
/* Sets the object of row r (of rs): its namespace and name. 0, -ENOMEM. */
int em_edgecore_ident_set(struct rows *rs, struct row *r, const char *ns, const char *name);
/* The object's "ns\0name\0" of row r, or NULL. */
const char *em_edgecore_ident(const struct rows *rs, const struct row *r);
/* The hash of an object's identity: kind, namespace, name. */
uint64_t em_edgecore_ident_hash(int kind, const char *ns, const char *name);
/* ... of the object of row r (which has one). */
uint64_t em_edgecore_row_ident_hash(const struct rows *rs, const struct row *r);

/* Open the database read-only (never created; PRAGMA query_only) with the
 * busy timeout, and the SQL function the reads use. 0 or -errno. */
int em_edgecore_open(const char *path, unsigned busy_ms, sqlite3 **out);

/* The read: copy the selected rows (in short transactions), noting
 * data_version first (version may be NULL). With prev (the rows of the
 * previous read, same file), only the values of rows that changed are read
 * from the database (read set); an unchanged row keeps prev's ident (and
 * prev's row is marked kept). 0 or -errno (see
 * em_edgecore_db_read). */
int em_edgecore_rows_read(sqlite3 *db, const struct em_edgecore_config *cfg,
			  struct rows *prev, struct rows *rs, long long *version,
			  struct em_edgecore_lock_times *lt);

/* SQLite result code -> -errno. */
int em_edgecore_errno(int rc);

#endif
