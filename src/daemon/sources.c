/* sources.c — the table of source types and their start/stop. */
#include "daemon/sources.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/source_file.h"
#include "sources/edgecore_db.h"
#include "sources/kube.h"
#include "util/log.h"

struct running {
	void (*stop)(void *handle);
	void *handle;
};

struct em_sources {
	struct running run[EM_CONFIG_MAX_LIST];
	unsigned n;
};

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
	int (*start)(const struct em_config *cfg, const char *spec, const char *arg,
		     struct em_source_sink sink, struct running *r);
} types[] = {
	{ "file:", start_file },
	{ "kube:", start_kube },
	{ "edgecore-db:", start_edgecore },
	{ NULL, NULL },
};

void em_sources_stop(struct em_sources *s)
{
	if (!s)
		return;
	while (s->n > 0) {
		struct running *r = &s->run[--s->n];
		r->stop(r->handle);
	}
	free(s);
}

int em_sources_start(const struct em_config *cfg, struct em_registry *reg,
		     struct em_sources **out)
{
	struct em_sources *s = calloc(1, sizeof(*s));
	struct em_source_sink sink = em_registry_sink(reg);
	int ret = -EINVAL;

	if (!s)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->n_sources; i++) {
		const char *spec = cfg->sources[i];
		const struct source_type *t;

		for (t = types; t->prefix; t++)
			if (strncmp(spec, t->prefix, strlen(t->prefix)) == 0)
				break;
		if (!t->prefix) {
			em_err("source \"%s\": expected file:PATH, kube:URL or edgecore-db:PATH", spec);
			ret = -EINVAL;
			goto err;
		}
		/* Registering in config order fixes precedence between sources. */
		em_registry_add_source(reg, spec);
		ret = t->start(cfg, spec, spec + strlen(t->prefix), sink, &s->run[s->n]);
		if (ret < 0) {
			em_err("source \"%s\": cannot start: %s", spec, strerror(-ret));
			goto err;
		}
		s->n++;
		em_info("source %s started", spec);
	}
	*out = s;
	return 0;
err:
	em_sources_stop(s);
	return ret;
}
