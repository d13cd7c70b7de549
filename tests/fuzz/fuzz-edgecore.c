/* fuzz-edgecore.c — libFuzzer target for what the edgecore-db source makes
 * of rows: the input is lines "<table>|<key>|<type>|<value>" (table m =
 * meta, v = meta_v2; type unused for meta_v2), written to a scratch
 * database, then read back with reads paged every two rows, legacy rows
 * merged or not (the input's first byte). Then some rows are rewritten and
 * some deleted (which: the first byte too), and a read of only the changed
 * rows must give the very rows a full read gives; and the source, which
 * after its first read delivers only the objects of changed rows (upsert,
 * remove), must leave the sink holding what a full read gives.
 * Seeds: tests/fuzz/corpus/edgecore/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sources/edgecore_db.h"
#include "sources/edgecore_rows.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];
static sqlite3 *db;

static void cleanup(void)
{
	sqlite3_close(db);
	unlink(path);
}

static int init(void)
{
	snprintf(path, sizeof(path), "/tmp/em-fuzz-edgecore-%d.db", (int)getpid());
	unlink(path);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;"
			 "CREATE TABLE meta (key varchar(256) NOT NULL PRIMARY KEY, "
			 "type varchar(32) NOT NULL DEFAULT '', value text NOT NULL DEFAULT '');"
			 "CREATE TABLE meta_v2 (key text, group_version_resource text, namespace text, "
			 "name text, resource_version integer, value text, PRIMARY KEY (key));",
			 NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	em_log_set_level(EM_LOG_ERR);
	atexit(cleanup);
	return 0;
}

static void same_rows(const struct rows *a, const struct rows *b)
{
	if (a->n != b->n || memcmp(a->v2_has, b->v2_has, sizeof(a->v2_has)) != 0)
		abort();
	for (size_t i = 0; i < a->n; i++) {
		const struct row *x = &a->v[i], *y = &b->v[i];
		if (x->rowid != y->rowid || x->v2 != y->v2 || x->kind != y->kind ||
		    x->list != y->list || x->key_hash != y->key_hash || x->hash != y->hash ||
		    (x->read && (strcmp(a->text[i].key, b->text[i].key) != 0 ||
				 strcmp(a->text[i].value, b->text[i].value) != 0)))
			abort();
	}
}

/* ---- a sink holding "Kind ns/name" -> object -------------------------- */

static json_t *held;

static void key_of(json_t *obj, char *key, size_t size)
{
	json_t *m = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	const char *name = json_string_value(json_object_get(m, "name"));

	snprintf(key, size, "%s %s/%s", json_string_value(json_object_get(obj, "kind")),
		 ns ? ns : "", name ? name : "");
}

static int hold_upsert(void *ctx, const char *source, json_t *obj)
{
	char key[1024];

	key_of(obj, key, sizeof(key));
	json_object_set_new(held, key, json_deep_copy(obj));
	return 0;
}

static int hold_remove(void *ctx, const char *source, const char *kind, const char *ns,
		       const char *name)
{
	char key[1024];

	snprintf(key, sizeof(key), "%s %s/%s", kind, ns, name);
	if (json_object_del(held, key) != 0)
		abort();	/* removes only what it delivered */
	return 0;
}

static int hold_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	size_t i;
	json_t *it;

	json_object_clear(held);
	json_array_foreach(items, i, it)
		hold_upsert(ctx, source, it);
	return 0;
}

static int hold_commit(void *ctx, const char *source)
{
	return 0;
}

/* What the sink holds equals a full read's objects. */
static void same_as_full_read(const struct em_edgecore_config *c)
{
	json_t *items = NULL, *saved = held;

	if (em_edgecore_db_read(c, &items, NULL) != 0)
		abort();
	held = json_object();
	hold_replace(NULL, NULL, NULL, items);
	if (!json_equal(held, saved))
		abort();
	json_decref(held);
	json_decref(items);
	held = saved;
}

/* A read of the changed rows only, after a change, equals a full read. */
static void check_incremental(const struct em_edgecore_config *c, unsigned mode)
{
	static const char *const change[] = {
		"UPDATE meta SET value = value || ' ' WHERE rowid % 2 = 0;"
		"DELETE FROM meta_v2 WHERE rowid % 3 = 0",
		"UPDATE meta_v2 SET value = substr(value, 2) WHERE rowid % 2 = 1;"
		"DELETE FROM meta WHERE rowid % 3 = 1",
	};
	const struct em_source_sink sink = { .upsert = hold_upsert, .remove = hold_remove,
					     .replace = hold_replace, .commit = hold_commit };
	struct em_edgecore_config sc = *c;
	struct rows prev = { 0 }, inc = { 0 }, full = { 0 };
	struct em_edgecore_lock_times lt;
	struct em_source_edgecore *e = NULL;
	sqlite3 *rd;

	if (em_edgecore_open(path, 1000, &rd) < 0)
		abort();
	sc.poll_interval_ms = 3600 * 1000;	/* only em_source_edgecore_poll polls */
	held = json_object();
	if (em_edgecore_rows_read(rd, c, NULL, &prev, NULL, &lt) == 0) {
		if (em_source_edgecore_start(&sc, sink, &e) != 0)
			abort();
		sqlite3_exec(db, change[mode & 1], NULL, NULL, NULL);
		em_source_edgecore_poll(e);
		same_as_full_read(c);
		if (em_edgecore_rows_read(rd, c, &prev, &inc, NULL, &lt) != 0 ||
		    em_edgecore_rows_read(rd, c, NULL, &full, NULL, &lt) != 0)
			abort();
		same_rows(&inc, &full);
	}
	em_edgecore_rows_free(&prev);
	em_edgecore_rows_free(&inc);
	em_edgecore_rows_free(&full);
	em_source_edgecore_stop(e);
	json_decref(held);
	sqlite3_close(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct em_edgecore_config c = { .path = path, .max_rows_per_txn = 2 };
	sqlite3_stmt *meta, *v2;
	char *text, *line, *save = NULL;
	json_t *items = NULL;

	if (!db && init() < 0)
		abort();
	if (size < 1)
		return 0;
	c.merge_legacy = data[0] & 1;
	text = strndup((const char *)data + 1, size - 1);
	sqlite3_exec(db, "BEGIN; DELETE FROM meta; DELETE FROM meta_v2", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta VALUES (?1, ?2, ?3)", -1, &meta, NULL);
	sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta_v2 (key, value) VALUES (?1, ?3)", -1, &v2, NULL);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[4] = { line, NULL, NULL, NULL };
		sqlite3_stmt *st;

		for (int i = 1; i < 4 && f[i - 1]; i++) {
			f[i] = strchr(f[i - 1], '|');
			if (f[i])
				*f[i]++ = '\0';
		}
		if (!f[3])
			continue;
		st = f[0][0] == 'v' ? v2 : meta;
		sqlite3_reset(st);
		for (int i = 1; i < 4; i++)
			sqlite3_bind_text(st, i, f[i], -1, SQLITE_STATIC);
		sqlite3_step(st);
	}
	sqlite3_finalize(meta);
	sqlite3_finalize(v2);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	free(text);
	if (em_edgecore_db_read(&c, &items, NULL) == 0) {
		size_t i;
		json_t *it;
		json_array_foreach(items, i, it)
			if (!json_string_value(json_object_get(it, "kind")))
				abort();	/* the source promises a kind on each */
	}
	json_decref(items);
	check_incremental(&c, data[0] >> 1);
	return 0;
}
