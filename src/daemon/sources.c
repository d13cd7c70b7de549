/* sources.c — the table of source types, their start/stop, and a sink
 * wrapper that counts what each source does. */
#include "daemon/sources.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry/manifest.h"
#include "sources/source_file.h"
#include "sources/edgecore_db.h"
#include "sources/kube.h"
#include "util/log.h"

struct running {
	void (*stop)(void *handle);
	void *handle;
	const char *type;
	char spec[256];
	/* The registry's sink, wrapped: the source calls tap_*. */
	struct em_source_sink inner;
	_Atomic uint64_t syncs, updates, commits, errors;
	_Atomic int64_t last_sync, last_commit;
};

struct em_sources {
	struct running *run[EM_CONFIG_MAX_LIST];
	unsigned n;
};

/* ---- the counting sink ------------------------------------------------- */

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int counted(struct running *r, int ret)
{
	if (ret < 0)
		atomic_fetch_add(&r->errors, 1);
	return ret;
}

static int tap_upsert(void *ctx, const char *source, json_t *obj)
{
	struct running *r = ctx;
	atomic_fetch_add(&r->updates, 1);
	return counted(r, r->inner.upsert(r->inner.ctx, source, obj));
}

static int tap_remove(void *ctx, const char *source, const char *kind, const char *ns,
		      const char *name)
{
	struct running *r = ctx;
	atomic_fetch_add(&r->updates, 1);
	return counted(r, r->inner.remove(r->inner.ctx, source, kind, ns, name));
}

static int tap_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	struct running *r = ctx;
	atomic_fetch_add(&r->syncs, 1);
	atomic_store(&r->last_sync, now_s());
	return counted(r, r->inner.replace(r->inner.ctx, source, kind, items));
}

static int tap_commit(void *ctx, const char *source)
{
	struct running *r = ctx;
	atomic_fetch_add(&r->commits, 1);
	atomic_store(&r->last_commit, now_s());
	return r->inner.commit(r->inner.ctx, source);
}

static struct em_source_sink tap(struct running *r)
{
	return (struct em_source_sink){
		.ctx = r, .upsert = tap_upsert, .remove = tap_remove,
		.replace = tap_replace, .commit = tap_commit,
	};
}

/* ---- source types ------------------------------------------------------ */

static int start_file(const struct em_config *cfg, const char *spec, const char *arg,
		      struct em_source_sink sink, struct running *r)
{
	struct em_source_file *sf;
	int ret;

	(void)cfg;
	(void)spec;	/* each file is its own source, "file:<file>" */
	if ((ret = em_source_file_start(arg, sink, &sf)) < 0)
		return ret;
	r->stop = (void (*)(void *))em_source_file_stop;
	r->handle = sf;
	return 0;
}

static int start_kube(const struct em_config *cfg, const char *spec, const char *arg,
		      struct em_source_sink sink, struct running *r)
{
	struct em_kube_config kc = {
		.name = spec,
		.url = *arg ? arg : EM_KUBE_DEFAULT_URL,
		.token_file = *cfg->kube_token_file ? cfg->kube_token_file : NULL,
		.ca_file = *cfg->kube_ca_file ? cfg->kube_ca_file : NULL,
		.insecure_skip_verify = cfg->kube_insecure,
		.node_name = cfg->node_name,
		.pods_on_node_only = cfg->kube_pods_on_node_only,
	};
	struct em_source_kube *k;
	char host[256] = "";
	int ret;

	if (!*kc.node_name && gethostname(host, sizeof(host) - 1) == 0)
		kc.node_name = host;

	if ((ret = em_source_kube_start(&kc, sink, &k)) < 0)
		return ret;
	r->stop = (void (*)(void *))em_source_kube_stop;
	r->handle = k;
	return 0;
}

static int start_edgecore(const struct em_config *cfg, const char *spec, const char *arg,
			  struct em_source_sink sink, struct running *r)
{
	struct em_edgecore_config ec = {
		.name = spec,
		.path = *arg ? arg : EM_EDGECORE_DEFAULT_DB,
		.poll_interval_ms = cfg->poll_interval_ms,
		.merge_legacy = cfg->edgecore_merge_legacy,
	};
	struct em_source_edgecore *e;
	int ret;

	if ((ret = em_source_edgecore_start(&ec, sink, &e)) < 0)
		return ret;
	r->stop = (void (*)(void *))em_source_edgecore_stop;
	r->handle = e;
	return 0;
}

static const struct source_type {
	const char *prefix;
	const char *type;
	int (*start)(const struct em_config *cfg, const char *spec, const char *arg,
		     struct em_source_sink sink, struct running *r);
} types[] = {
	{ "file:", "file", start_file },
	{ "kube:", "kube", start_kube },
	{ "edgecore-db:", "edgecore-db", start_edgecore },
	{ NULL, NULL, NULL },
};

static const struct source_type *type_of(const char *spec)
{
	const struct source_type *t;

	for (t = types; t->prefix; t++)
		if (strncmp(spec, t->prefix, strlen(t->prefix)) == 0)
			return t;
	return NULL;
}

void em_sources_stop(struct em_sources *s)
{
	if (!s)
		return;
	while (s->n > 0) {
		struct running *r = s->run[--s->n];
		r->stop(r->handle);
		free(r);
	}
	free(s);
}

int em_sources_start(const struct em_config *cfg, struct em_registry *reg,
		     struct em_sources **out)
{
	struct em_sources *s = calloc(1, sizeof(*s));
	int ret = -EINVAL;

	if (!s)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->n_sources; i++) {
		const char *spec = cfg->sources[i];
		const struct source_type *t = type_of(spec);
		struct running *r;

		if (!t) {
			em_err("source \"%s\": expected file:PATH, kube:URL or edgecore-db:PATH", spec);
			ret = -EINVAL;
			goto err;
		}
		if (!(r = calloc(1, sizeof(*r)))) {
			ret = -ENOMEM;
			goto err;
		}
		r->type = t->type;
		snprintf(r->spec, sizeof(r->spec), "%s", spec);
		r->inner = em_registry_sink(reg);
		/* Registering in config order fixes precedence between sources. */
		em_registry_add_source(reg, spec);
		ret = t->start(cfg, spec, spec + strlen(t->prefix), tap(r), r);
		if (ret < 0) {
			em_err("source \"%s\": cannot start: %s", spec, strerror(-ret));
			free(r);
			goto err;
		}
		s->run[s->n++] = r;
		em_info("source %s started", spec);
	}
	*out = s;
	return 0;
err:
	em_sources_stop(s);
	return ret;
}

static void forget_one(struct em_source_sink *sink, const char *name)
{
	json_t *none = json_array();

	if (none)
		sink->replace(sink->ctx, name, NULL, none);
	json_decref(none);
}

static bool manifest_name(const char *name);

void em_sources_forget(struct em_registry *reg, const char *spec)
{
	struct em_source_sink sink = em_registry_sink(reg);
	const char *path = spec + 5;
	struct stat st;

	forget_one(&sink, spec);
	if (!strncmp(spec, "file:", 5) && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		struct dirent **names;
		int n = scandir(path, &names, NULL, alphasort);

		for (int i = 0; i < n; i++) {
			char name[4096];

			if (manifest_name(names[i]->d_name)) {
				snprintf(name, sizeof(name), "file:%s/%s", path, names[i]->d_name);
				forget_one(&sink, name);
			}
			free(names[i]);
		}
		if (n >= 0)
			free(names);
	}
	sink.commit(sink.ctx, spec);
}

unsigned em_sources_count(const struct em_sources *s)
{
	return s ? s->n : 0;
}

void em_sources_state(const struct em_sources *s, unsigned i, struct em_source_state *out)
{
	struct running *r = s->run[i];

	memset(out, 0, sizeof(*out));
	snprintf(out->spec, sizeof(out->spec), "%s", r->spec);
	out->type = r->type;
	out->syncs = atomic_load(&r->syncs);
	out->updates = atomic_load(&r->updates);
	out->commits = atomic_load(&r->commits);
	out->errors = atomic_load(&r->errors);
	out->last_sync = atomic_load(&r->last_sync);
	out->last_commit = atomic_load(&r->last_commit);
	out->connected = -1;
	if (r->stop == (void (*)(void *))em_source_kube_stop) {
		struct em_kube_stats ks;

		em_source_kube_stats(r->handle, &ks);
		out->syncs = ks.lists;
		out->relists = ks.relists_410;
		out->errors += ks.errors + ks.stalls;
		/* Connected: a watch is open or the lists went through and no
		 * request failed since (errors and stalls end the watches). */
		out->connected = ks.lists > 0 && ks.watches + ks.lists > ks.errors + ks.stalls;
	}
}

/* ---- --check-config ------------------------------------------------------ */

static bool manifest_name(const char *name)
{
	size_t n = strlen(name);

	if (name[0] == '.')
		return false;
	return (n > 5 && !strcmp(name + n - 5, ".json")) || (n > 5 && !strcmp(name + n - 5, ".yaml")) ||
	       (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int check_manifest(const char *file, size_t *objects)
{
	struct em_manifest_error err = { 0 };
	json_t *items = NULL;
	int ret = em_source_file_load(file, &items, &err);

	if (ret < 0) {
		if (err.reason[0])
			fprintf(stderr, "%s:%d:%d: %s\n", file, err.line, err.column, err.reason);
		else
			fprintf(stderr, "%s: %s\n", file, strerror(-ret));
		return -EINVAL;
	}
	*objects += json_array_size(items);
	json_decref(items);
	return 0;
}

static int check_file_source(const char *path, FILE *out)
{
	struct stat st;
	size_t objects = 0, files = 0;
	int ret = 0;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "source file:%s: %s\n", path, strerror(errno));
		return -EINVAL;
	}
	if (S_ISDIR(st.st_mode)) {
		struct dirent **names;
		int n = scandir(path, &names, NULL, alphasort);

		if (n < 0) {
			fprintf(stderr, "source file:%s: %s\n", path, strerror(errno));
			return -EINVAL;
		}
		for (int i = 0; i < n; i++) {
			char file[4096];

			if (manifest_name(names[i]->d_name)) {
				snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
				files++;
				if (check_manifest(file, &objects) < 0)
					ret = -EINVAL;
			}
			free(names[i]);
		}
		free(names);
	} else {
		files = 1;
		ret = check_manifest(path, &objects);
	}
	if (ret == 0)
		fprintf(out, "source file:%s: %zu file(s), %zu object(s)\n", path, files, objects);
	return ret;
}

static int check_readable(const char *what, const char *path)
{
	if (*path && access(path, R_OK) == -1) {
		fprintf(stderr, "%s %s: %s\n", what, path, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

int em_sources_check(const struct em_config *cfg, FILE *out)
{
	int ret = 0;

	for (unsigned i = 0; i < cfg->n_sources; i++) {
		const char *spec = cfg->sources[i];
		const struct source_type *t = type_of(spec);
		const char *arg;

		if (!t) {
			fprintf(stderr, "source \"%s\": expected file:PATH, kube:URL or edgecore-db:PATH\n", spec);
			ret = -EINVAL;
			continue;
		}
		arg = spec + strlen(t->prefix);
		if (!strcmp(t->type, "file")) {
			if (check_file_source(arg, out) < 0)
				ret = -EINVAL;
		} else if (!strcmp(t->type, "kube")) {
			if (check_readable("--kube-token-file", cfg->kube_token_file) < 0 ||
			    check_readable("--kube-ca-file", cfg->kube_ca_file) < 0)
				ret = -EINVAL;
			else
				fprintf(out, "source %s: not contacted (checked the token and CA files only)\n", spec);
		} else {
			if (check_readable("source edgecore-db:", *arg ? arg : EM_EDGECORE_DEFAULT_DB) < 0)
				ret = -EINVAL;
			else
				fprintf(out, "source %s: database readable\n", spec);
		}
	}
	return ret;
}
