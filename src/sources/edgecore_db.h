/* edgecore_db.h — the `edgecore-db` source: KubeEdge MetaManager's SQLite
 * store, read-only, polled for changes.
 *
 * Tables read (whatever else the database holds is ignored):
 *   meta    (key, type, value): keys "<ns>/service/<name>", "<ns>/endpoints/<name>",
 *           "<ns>/pod/<name>", "<ns>/podlist/<svc>" (value: JSON array of Pods),
 *           "<ns>/endpointslice/<name>"; values are Kubernetes JSON.
 *   meta_v2 (key, ..., value), where it exists: keys
 *           "/<group>/<version>/<resource>/<ns>/<name>", e.g. "/core/v1/services/default/web".
 * An object found twice (meta and meta_v2, a pod and a podlist) is taken once:
 * the higher metadata.resourceVersion wins, meta_v2 on a tie.
 *
 * Every change is delivered as sink.replace(kind NULL, everything) + commit.
 * The database is opened SQLITE_OPEN_READONLY with PRAGMA query_only, each
 * read is one short deferred transaction, and the busy timeout bounds how
 * long a read waits for edgecore's writer (it never blocks the writer for
 * longer than one read: SQLite readers hold a SHARED lock only while
 * reading). A missing or locked database keeps the last good data. */
#ifndef EM_SOURCES_EDGECORE_DB_H
#define EM_SOURCES_EDGECORE_DB_H

#include "registry/source.h"

#define EM_EDGECORE_DEFAULT_DB "/var/lib/kubeedge/edgecore.db"

/* Zero fields take the default in brackets. Strings are copied by start. */
struct em_edgecore_config {
	const char *name;		/* sink source name ["edgecore-db"] */
	const char *path;		/* ["/var/lib/kubeedge/edgecore.db"] */
	unsigned poll_interval_ms;	/* change check [1000] */
	unsigned busy_timeout_ms;	/* SQLite busy timeout for a read [1000] */
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

/* Read every usable object of the database at `path` into a new JSON array
 * (kind set on each). 0, or -errno (-ENOENT missing, -EBUSY locked,
 * -EIO other SQLite errors). Used by the source; exposed for tests/tools. */
int em_edgecore_db_read(const char *path, unsigned busy_timeout_ms, json_t **items);

struct em_edgecore_stats {
	unsigned long reads;		/* successful full reads delivered */
	unsigned long failures;		/* failed reads or opens */
	unsigned long skipped;		/* rows not understood (bad JSON, unknown key) */
};
void em_source_edgecore_stats(struct em_source_edgecore *e, struct em_edgecore_stats *st);

#endif
