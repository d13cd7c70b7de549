/* kube.c — the kube source: configuration (defaults, the API server URL,
 * the node selector), the table of resources, start and stop.
 *
 * Each resource of the table gets a thread running the LIST + WATCH loop of
 * kube_list_watch.c over its own HTTP transport handle (kube_http.c). */
#include "sources/kube_internal.h"
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What is listed and watched, in this order. */
static const struct kube_kind kinds[] = {
	{ "Service", "/api/v1/services", false, false },
	{ "Endpoints", "/api/v1/endpoints", false, false },
	{ "Pod", "/api/v1/pods", true, false },
	{ "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices", false, true },
};

_Static_assert(sizeof(kinds) / sizeof(kinds[0]) <= EM_KUBE_MAX_KINDS, "EM_KUBE_MAX_KINDS");

static bool wanted(const struct kube_kind *kk, const struct em_kube_config *cfg)
{
	return !(cfg->no_endpointslices && strcmp(kk->kind, "EndpointSlice") == 0);
}

/* ---- configuration ------------------------------------------------------ */

static int resolve_in_cluster(struct em_source_kube *k, const struct em_kube_config *cfg)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");

	if (!host || !*host) {
		em_err("%s: url \"in-cluster\" but KUBERNETES_SERVICE_HOST is not set", k->name);
		return -EINVAL;
	}
	if (asprintf(&k->base, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
		     host, port && *port ? port : "443") == -1) {
		k->base = NULL;
		return -ENOMEM;
	}
	if (!cfg->token_file)
		k->token_file = strdup(EM_KUBE_SA_DIR "/token");
	if (!cfg->ca_file)
		k->ca_file = strdup(EM_KUBE_SA_DIR "/ca.crt");
	return 0;
}

static int resolve_url(struct em_source_kube *k, const struct em_kube_config *cfg)
{
	const char *url = cfg->url && *cfg->url ? cfg->url : EM_KUBE_DEFAULT_URL;
	size_t n;
	int ret;

	if (strcmp(url, "in-cluster") == 0) {
		ret = resolve_in_cluster(k, cfg);
		if (ret < 0)
			return ret;
	} else {
		if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
			em_err("%s: url \"%s\": expected http://HOST[:PORT], https://... or in-cluster",
			       k->name, url);
			return -EINVAL;
		}
		k->base = strdup(url);
		if (!k->base)
			return -ENOMEM;
	}
	n = strlen(k->base);
	while (n > 0 && k->base[n - 1] == '/')
		k->base[--n] = '\0';
	return 0;
}

static int set_field_selector(struct em_source_kube *k, const struct em_kube_config *cfg)
{
	char *sel;

	if (!cfg->pods_on_node_only)
		return 0;
	if (!cfg->node_name || !*cfg->node_name) {
		em_err("%s: pods on this node only, but no node name", k->name);
		return -EINVAL;
	}
	if (asprintf(&sel, "spec.nodeName=%s", cfg->node_name) == -1)
		return -ENOMEM;
	k->field_selector = em_kube_http_escape(sel);
	free(sel);
	return 0;
}

#define DEFAULT(f, v) do { if (!c->f) c->f = (v); } while (0)

static void apply_defaults(struct em_kube_config *c)
{
	DEFAULT(page_limit, 500);
	DEFAULT(max_list_bytes, (size_t)512 << 20);
	DEFAULT(max_list_objects, 200000);
	DEFAULT(connect_timeout_ms, 5000);
	DEFAULT(list_timeout_ms, 60000);
	DEFAULT(watch_timeout_s, 300);
	DEFAULT(stall_timeout_ms, 90000);
	DEFAULT(backoff_min_ms, 500);
	DEFAULT(backoff_max_ms, 30000);
	DEFAULT(start_timeout_ms, 10000);
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
}

static void kube_free(struct em_source_kube *k)
{
	for (unsigned i = 0; i < k->nres; i++) {
		em_kube_http_free(k->res[i].http);
		em_watch_stream_free(k->res[i].ws);
	}
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->cond);
	free(k->name);
	free(k->base);
	free(k->token_file);
	free(k->ca_file);
	free(k->field_selector);
	free(k);
}

/* The source with its configuration resolved, no resource yet. */
static int kube_new(const struct em_kube_config *cfg, struct em_source_sink sink,
		    struct em_source_kube **out)
{
	struct em_source_kube *k = calloc(1, sizeof(*k));
	int ret = -ENOMEM;

	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	k->cfg = *cfg;
	k->sink = sink;
	k->name = strdup(cfg->name && *cfg->name ? cfg->name : "kube");
	if (!k->name)
		goto err;
	if (cfg->token_file && *cfg->token_file && !(k->token_file = strdup(cfg->token_file)))
		goto err;
	if (cfg->ca_file && *cfg->ca_file && !(k->ca_file = strdup(cfg->ca_file)))
		goto err;
	if ((ret = resolve_url(k, cfg)) < 0 || (ret = set_field_selector(k, cfg)) < 0)
		goto err;
	apply_defaults(&k->cfg);
	k->http = (struct em_kube_http_opts){
		.name = k->name, .token_file = k->token_file, .ca_file = k->ca_file,
		.insecure_skip_verify = k->cfg.insecure_skip_verify,
		.connect_timeout_ms = k->cfg.connect_timeout_ms,
		.stall_timeout_ms = k->cfg.stall_timeout_ms,
	};
	*out = k;
	return 0;
err:
	if (ret == -ENOMEM)
		em_err("%s: out of memory starting", k->name ? k->name : "kube");
	kube_free(k);
	return ret;
}

/* ---- start / stop ------------------------------------------------------- */

static int add_resources(struct em_source_kube *k)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct kube_resource *r;

		if (!wanted(&kinds[i], &k->cfg))
			continue;
		r = &k->res[k->nres++];
		r->k = k;
		r->kind = &kinds[i];
		r->rng = em_clock_ns() ^ ((uint64_t)(uintptr_t)r << 16) ^ 0x9e3779b97f4a7c15ULL;
		r->http = em_kube_http_new(&k->http, &k->stop, &r->rl);
		r->ws = em_watch_stream_new(0, em_kube_on_event, r);
		if (!r->http || !r->ws) {
			em_err("%s: out of memory starting", k->name);
			return -ENOMEM;
		}
	}
	return 0;
}

static int start_threads(struct em_source_kube *k)
{
	for (unsigned i = 0; i < k->nres; i++) {
		if (pthread_create(&k->res[i].thread, NULL, em_kube_resource_thread, &k->res[i]) != 0) {
			em_err("%s: cannot start a watch thread", k->name);
			return -EAGAIN;
		}
		k->res[i].thread_started = true;
	}
	return 0;
}

/* Wait until every resource has been listed once, or start_timeout_ms. */
static void wait_first_lists(struct em_source_kube *k)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += k->cfg.start_timeout_ms / 1000;
	deadline.tv_nsec += (long)(k->cfg.start_timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&k->lock);
	while (k->listed < k->nres)
		if (pthread_cond_timedwait(&k->cond, &k->lock, &deadline) == ETIMEDOUT)
			break;
	if (k->listed < k->nres)
		em_warn("%s: %s not answering after %u ms; serving without it, retrying in the background",
			k->name, k->base, k->cfg.start_timeout_ms);
	else
		em_info("%s: listed from %s", k->name, k->base);
	pthread_mutex_unlock(&k->lock);
}

int em_source_kube_start(const struct em_kube_config *cfg, struct em_source_sink sink,
			 struct em_source_kube **out)
{
	struct em_source_kube *k;
	int ret;

	*out = NULL;
	ret = kube_new(cfg, sink, &k);
	if (ret < 0)
		return ret;
	ret = add_resources(k);
	if (ret < 0) {
		kube_free(k);
		return ret;
	}
	ret = start_threads(k);
	if (ret < 0) {
		em_source_kube_stop(k);
		return ret;
	}
	wait_first_lists(k);
	*out = k;
	return 0;
}

void em_source_kube_stop(struct em_source_kube *k)
{
	if (!k)
		return;
	atomic_store(&k->stop, true);
	for (unsigned i = 0; i < k->nres; i++)
		if (k->res[i].http)
			em_kube_http_wakeup(k->res[i].http);
	for (unsigned i = 0; i < k->nres; i++)
		if (k->res[i].thread_started)
			pthread_join(k->res[i].thread, NULL);
	kube_free(k);
}

void em_source_kube_stats(struct em_source_kube *k, struct em_kube_stats *st)
{
	st->lists = atomic_load(&k->n_lists);
	st->watches = atomic_load(&k->n_watches);
	st->events = atomic_load(&k->n_events);
	st->relists_410 = atomic_load(&k->n_410);
	st->errors = atomic_load(&k->n_errors);
	st->stalls = atomic_load(&k->n_stalls);
}
