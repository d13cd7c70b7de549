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
 * is a list (podlist...). */

struct row {
	const char *key, *value;
	sqlite3_int64 rowid;
	uint64_t hash;			/* value_hash(value) */
	size_t value_len;
	unsigned char kind;
	bool v2, list;
	bool borrowed;			/* value points into the previous read's rows */
};

/* The selected rows of one read, in scan order (meta_v2, then meta, each by
 * rowid); keys and values live in the chunks. */
struct rows {
	struct row *v;
	size_t n, cap;
	struct chunk *chunks;
	size_t bytes;
	size_t n_read;			/* rows whose value was read from the database */
	bool v2_has[EM_EDGECORE_KINDS];	/* meta_v2 holds rows of that kind */
};

void em_edgecore_rows_free(struct rows *rs);

/* Open the database read-only (never created; PRAGMA query_only) with the
 * busy timeout, and the SQL function the reads use. 0 or -errno. */
int em_edgecore_open(const char *path, unsigned busy_ms, sqlite3 **out);

/* The read: copy the selected rows (in short transactions), noting
 * data_version first (version may be NULL). With prev (the rows of the
 * previous read, same file), only the values of rows that changed are read
 * from the database. 0 or -errno (see em_edgecore_db_read). */
int em_edgecore_rows_read(sqlite3 *db, const struct em_edgecore_config *cfg,
			  const struct rows *prev, struct rows *rs, long long *version,
			  struct em_edgecore_lock_times *lt);

/* SQLite result code -> -errno. */
int em_edgecore_errno(int rc);

#endif
