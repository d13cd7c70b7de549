/* edgecore_db.h — the `edgecore-db` source: KubeEdge MetaManager's SQLite
 * store, read-only, polled for changes.
 *
 * What is read (nothing else ever leaves the database: the queries select
 * by key prefix and by type, so secrets, configmaps, podstatus, podpatch,
 * node task requests and the like are never copied):
 *   meta_v2 (key, value), where it exists: keys
 *           "/<group>/<version>/<resource>/<ns>/<name>" under
 *           /core/v1/{services,endpoints,pods}/ and
 *           /discovery.k8s.io/v1/endpointslices/ (5 segments exactly; a
 *           value's kind/apiVersion, if any, must match). The GVR and
 *           resource-version columns are not read: their names differ
 *           between edgecore versions (beego groupversionresource /
 *           resourceversion, gorm group_version_resource / resource_version,
 *           an upgraded database has both).
 *   meta    (key, type, value): types service, endpoints, pod, endpointslice
 *           and the lists servicelist, endpointslist, podlist (a JSON array;
 *           null or [] = empty), keys "<ns>/<type>/<name>". A value's
 *           kind/apiVersion, if any, must be the core one (the dynamic
 *           controller stores, e.g., Knative Services under type service);
 *           values without them (KubeEdge <= 1.5) are taken as the type says.
 * Stale data: nothing garbage-collects these tables. When meta_v2 holds rows
 * of a kind, the meta rows of that kind (legacy podlists included) are not
 * read at all, unless merge_legacy. An object found twice is taken once: the
 * higher metadata.resourceVersion wins, meta_v2 on a tie.
 *
 * Only the rows that changed are read, and only their objects delivered:
 * the first read copies every selected row and delivers sink.replace(kind
 * NULL, everything) + commit; later ones scan the selected rows' rowid and
 * hashes of the key and of the value (computed inside SQLite, nothing is
 * copied out) and read a row only when its rowid, key, type or hash is new.
 * Between reads the source keeps per row only those (rowid, two hashes, the
 * kind) and the namespace/name of the object a single row holds, plus one
 * 64-bit identity hash per object held (about 65 bytes a row, never the
 * text). The objects of the changed rows go out as sink.upsert/remove and
 * one commit (none when no object changed). A change that a row alone
 * cannot settle falls back to a full read + replace: a list row (podlist,
 * servicelist, endpointslist) changed, appeared or went, or an object the
 * change touches is held by more than one row (legacy podlists, meta and
 * meta_v2 with merge_legacy: the resourceVersion rule needs the other
 * rows). Updates in place, INSERT OR REPLACE (a new rowid), inserts and
 * deletes are all seen.
 * The database is opened SQLITE_OPEN_READONLY with PRAGMA query_only. A
 * read copies the selected rows (parsing happens afterwards) in deferred
 * read transactions of at most about lock_budget_ms each, resuming after the
 * last row seen (tables are scanned in rowid order, a row's value read only
 * when it is selected), so edgecore's writer (rollback journal, 5 s busy timeout)
 * never waits longer than one of them; the busy timeout bounds how long a
 * read waits for the writer. A missing or locked database keeps the last
 * good data; so does a hot journal left by a crashed writer, which a
 * read-only reader may not roll back (logged as such). */
#ifndef EM_SOURCES_EDGECORE_DB_H
#define EM_SOURCES_EDGECORE_DB_H

#include <stdbool.h>
#include <stddef.h>

#include "registry/source.h"

#define EM_EDGECORE_DEFAULT_DB "/var/lib/kubeedge/edgecore.db"

/* Zero fields take the default in brackets. Strings are copied by start. */
struct em_edgecore_config {
	const char *name;		/* sink source name ["edgecore-db"] */
	const char *path;		/* ["/var/lib/kubeedge/edgecore.db"] */
	unsigned poll_interval_ms;	/* change check [1000] */
	unsigned busy_timeout_ms;	/* SQLite busy timeout for a read [1000] */
	bool merge_legacy;		/* read meta rows of kinds meta_v2 holds too [no] */
	unsigned lock_budget_ms;	/* a read transaction ends after this long and the
					 * read resumes in the next one [10] */
	unsigned max_rows_per_txn;	/* ... or after this many rows [0: no limit] */
};

struct em_source_edgecore;

/* Read the database once (synchronously: the first snapshot is there when it
 * returns, if the database could be read; if not, that is logged and the
 * source keeps retrying), then poll in a thread. 0, -EINVAL, -ENOMEM. */
int em_source_edgecore_start(const struct em_edgecore_config *cfg, struct em_source_sink sink,
			     struct em_source_edgecore **out);
/* Stop (within one poll step) and free. NULL is a no-op. No sink call
 * happens after it returns. */
void em_source_edgecore_stop(struct em_source_edgecore *e);

/* A read is a sequence of short read transactions (the SHARED lock is held
 * during each, released in between). */
struct em_edgecore_lock_times {
	long long max_us;		/* the longest transaction */
	long long total_us;		/* all of them */
	unsigned transactions;
};

struct em_edgecore_read_info {
	struct em_edgecore_lock_times lock;
	size_t rows;			/* rows copied out */
	size_t bytes;			/* key + value bytes copied */
	unsigned long skipped;		/* rows of our kinds that are not usable objects */
	unsigned long ignored;		/* other API groups, list/cluster-scoped/odd keys */
};

/* Read every usable object of the database cfg->path (busy_timeout_ms,
 * merge_legacy as for the source) into a new JSON array (kind set on each).
 * 0, or -errno (-ENOENT missing, -EBUSY locked, -EROFS hot journal, -ENODATA
 * no edgecore table, -EIO other SQLite errors). info may be NULL. Used by
 * the source; exposed for tests and benchmarks. */
int em_edgecore_db_read(const struct em_edgecore_config *cfg, json_t **items,
			struct em_edgecore_read_info *info);

struct em_edgecore_stats {
	unsigned long polls;		/* polls finished by the thread (after the first read) */
	unsigned long reads;		/* successful full reads delivered */
	unsigned long failures;		/* failed reads or opens */
	unsigned long skipped;		/* rows of our kinds that are not usable objects */
	unsigned long ignored;		/* rows under our types/prefixes of other APIs */
	unsigned long lock_us_last;	/* longest read transaction of the last read */
	unsigned long lock_us_max;	/* the longest one so far */
	unsigned long rows_read;	/* rows whose value was read from the database */
	unsigned long rows_read_last;	/* ... by the last read delivered */
	unsigned long full_reads;	/* reads delivered by replace (the first, fallbacks) */
	unsigned long objects_last;	/* objects the last read delivered (upserts + removes,
					 * or every object of a full read) */
};
void em_source_edgecore_stats(struct em_source_edgecore *e, struct em_edgecore_stats *st);

/* One poll now, in the calling thread: for tests and fuzzing, which keep the
 * thread from polling at the same time by a long poll_interval_ms. */
void em_source_edgecore_poll(struct em_source_edgecore *e);

#endif
