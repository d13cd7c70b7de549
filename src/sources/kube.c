/* kube.c — list + watch against a Kubernetes API server / KubeEdge MetaServer.
 *
 * One thread per resource, each with its own curl multi handle holding at
 * most one transfer. The multi is used (rather than curl_easy_perform) for
 * two things: curl_multi_wakeup() makes stop() prompt even in the middle of a
 * blocked watch or a backoff sleep, and our own loop measures how long the
 * stream has been silent (stall detection in ms, independent of curl's
 * one-second LOW_SPEED granularity). */
#include "sources/kube.h"
#include "util/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "sources/watch_stream.h"
#include "util/log.h"

#define MAX_BODY (256u << 20)	/* one LIST page */
#define MAX_ERR_BODY 4096
#define RV_MAX 128

struct em_source_kube;

struct resource {
	struct em_source_kube *k;
	const char *kind;		/* "Service", ... */
	const char *path;		/* "/api/v1/services" */
	bool node_select;		/* pods with fieldSelector */
	bool optional;			/* 404 disables it (EndpointSlices) */
	pthread_t thread;
	bool thread_started;
	CURLM *multi;
	CURL *easy;
	char rv[RV_MAX];
	bool down;			/* last request failed: log recovery */
	uint64_t rng;
	struct em_ratelimit rl;

	/* State of the transfer in flight. */
	bool watching;
	long status;			/* HTTP status, read at the first body byte */
	char *body;			/* LIST body, or a non-200 watch body */
	size_t body_len, body_cap;
	struct em_watch_stream *ws;
	bool dirty;			/* events changed something: commit (batched) */
	uint64_t dirty_since_ns;	/* first uncommitted change */
	bool got_410;
	bool stream_error;
	char curl_error[CURL_ERROR_SIZE];	/* curl's reason for a transport error, "" if none */
	unsigned long events;
	uint64_t last_rx_ns;
};

struct em_source_kube {
	char *name;
	char *base;			/* URL without trailing '/' */
	char *token_file;
	char *ca_file;
	char *field_selector;		/* escaped "spec.nodeName%3D<node>" or NULL */
	struct em_kube_config cfg;	/* numbers with defaults applied */
	struct em_source_sink sink;
	struct resource res[4];
	unsigned nres;
	atomic_bool stop;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned listed;		/* resources past their first LIST */

	atomic_ulong n_lists, n_watches, n_events, n_410, n_errors, n_stalls;
};

static uint64_t rnd(struct resource *r)
{
	/* xorshift64: jitter only, not security */
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static bool stopping(const struct resource *r)
{
	return atomic_load(&r->k->stop);
}

/* Sleep ms unless stop() wakes us. Returns -ECANCELED on stop. */
static int sleep_ms(struct resource *r, unsigned ms)
{
	uint64_t deadline = em_clock_ns() + (uint64_t)ms * 1000000ULL;

	while (!stopping(r)) {
		uint64_t now = em_clock_ns();
		if (now >= deadline)
			return 0;
		curl_multi_poll(r->multi, NULL, 0, (int)((deadline - now) / 1000000ULL) + 1, NULL);
	}
	return -ECANCELED;
}

/* Jittered exponential backoff: sleep in [d/2, d), then double d. */
static int backoff(struct resource *r, unsigned *delay)
{
	const struct em_kube_config *c = &r->k->cfg;
	unsigned d = *delay ? *delay : c->backoff_min_ms;
	unsigned s = d / 2 + (unsigned)(rnd(r) % (d / 2 + 1));

	*delay = d >= c->backoff_max_ms / 2 ? c->backoff_max_ms : d * 2;
	return sleep_ms(r, s);
}

static void mark_listed(struct resource *r)
{
	struct em_source_kube *k = r->k;

	pthread_mutex_lock(&k->lock);
	k->listed++;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

/* ---- objects ---------------------------------------------------------- */

static void set_kind(json_t *obj, const char *kind)
{
	if (!json_is_string(json_object_get(obj, "kind")))
		json_object_set_new(obj, "kind", json_string(kind));
}

static const char *meta_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
	return s ? s : "";
}

/* A resourceVersion that does not fit is an error, never a truncation: a
 * cut one would be sent back and loop through 410s and relists. */
static int save_rv(struct resource *r, json_t *obj)
{
	const char *rv = meta_str(obj, "resourceVersion");

	if (strlen(rv) >= RV_MAX)
		return -E2BIG;
	if (*rv)
		strcpy(r->rv, rv);
	return 0;
}

/* After a LIST page: a big body buffer goes back to the allocator rather
 * than staying for the life of the source. */
static void body_release_if_large(struct resource *r)
{
	if (r->body_cap > (1u << 20)) {
		free(r->body);
		r->body = NULL;
		r->body_cap = 0;
		r->body_len = 0;
	}
}

static int on_event(void *ctx, const struct em_watch_event *ev)
{
	struct resource *r = ctx;
	struct em_source_kube *k = r->k;
	json_t *obj = ev->object;
	int ret;

	switch (ev->type) {
	case EM_WATCH_ADDED:
	case EM_WATCH_MODIFIED:
		set_kind(obj, r->kind);
		ret = k->sink.upsert(k->sink.ctx, k->name, obj);
		if (ret < 0)
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: %s %s/%s from watch not usable: %s",
				  k->name, r->kind, meta_str(obj, "namespace"),
				  meta_str(obj, "name"), strerror(-ret));
		r->dirty = true;
		break;
	case EM_WATCH_DELETED:
		k->sink.remove(k->sink.ctx, k->name, r->kind, meta_str(obj, "namespace"),
			       meta_str(obj, "name"));
		r->dirty = true;
		break;
	case EM_WATCH_BOOKMARK:
		break;
	case EM_WATCH_ERROR: {
		const char *msg = json_string_value(json_object_get(obj, "message"));

		if (ev->code == 410) {
			r->got_410 = true;
			return -ESTALE;
		}
		em_log_rl(&r->rl, EM_LOG_WARN, "%s: watch %s: ERROR event code %d: %s", k->name,
			  r->path, ev->code, msg ? msg : "(no message)");
		return -EPROTO;
	}
	}
	if (save_rv(r, obj) < 0) {
		em_log_rl(&r->rl, EM_LOG_ERR, "%s: watch %s: resourceVersion of %zu bytes "
			  "(at most %d): refused", k->name, r->path,
			  strlen(meta_str(obj, "resourceVersion")), RV_MAX - 1);
		return -EBADMSG;
	}
	r->events++;
	atomic_fetch_add(&k->n_events, 1);
	return 0;
}

/* ---- transfers -------------------------------------------------------- */

static int body_append(struct resource *r, const char *p, size_t n, size_t max)
{
	if (n > max - r->body_len)
		return -EMSGSIZE;
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 16384;
		char *nb;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		nb = realloc(r->body, cap);
		if (!nb)
			return -ENOMEM;
		r->body = nb;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct resource *r = ctx;
	size_t n = size * nmemb;
	int ret;

	r->last_rx_ns = em_clock_ns();
	if (r->status == 0)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (!r->watching || r->status != 200) {
		if (body_append(r, p, n, r->watching ? MAX_ERR_BODY : MAX_BODY) < 0)
			return r->watching ? n : 0;	/* error text: keep the head only */
		return n;
	}
	ret = em_watch_stream_feed(r->ws, p, n);
	/* Batch: perform() commits once the stream pauses (see flush_due). */
	if (r->dirty && !r->dirty_since_ns)
		r->dirty_since_ns = r->last_rx_ns;
	if (ret < 0) {
		if (ret != -ESTALE && ret != -EPROTO)
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: watch %s: bad event stream: %s",
				  r->k->name, r->path, strerror(-ret));
		r->stream_error = true;
		return 0;	/* abort the transfer */
	}
	return n;
}

static struct curl_slist *headers(struct resource *r)
{
	struct em_source_kube *k = r->k;
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");

	if (k->token_file) {
		char tok[8192], line[8300];
		FILE *f = fopen(k->token_file, "re");
		size_t n = 0;

		if (f) {
			n = fread(tok, 1, sizeof(tok) - 1, f);
			fclose(f);
		}
		while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
			n--;
		tok[n] = '\0';
		if (n > 0) {
			snprintf(line, sizeof(line), "Authorization: Bearer %s", tok);
			h = curl_slist_append(h, line);
		} else {
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: cannot read token file %s (or empty)",
				  k->name, k->token_file);
		}
	}
	return h;
}

/* Run one GET to completion. Returns 0 when the transfer completed (see
 * r->status), -ECANCELED on stop, -ETIMEDOUT on a stall, -EIO on a transport
 * error or an aborted stream. */
/* One snapshot per batch of watch events, not per event or per received
 * chunk: commit when the stream has been quiet for BATCH_QUIET_NS, or when
 * the oldest uncommitted change is BATCH_MAX_NS old (a steady stream still
 * becomes visible), or when the transfer ends (force). */
#define BATCH_QUIET_NS (20ULL * 1000000ULL)
#define BATCH_MAX_NS (200ULL * 1000000ULL)

static void flush_due(struct resource *r, bool force)
{
	uint64_t now = em_clock_ns();

	if (!r->dirty)
		return;
	if (force || now - r->last_rx_ns >= BATCH_QUIET_NS || now - r->dirty_since_ns >= BATCH_MAX_NS) {
		r->k->sink.commit(r->k->sink.ctx, r->k->name);
		r->dirty = false;
		r->dirty_since_ns = 0;
	}
}

static int perform(struct resource *r, const char *url, bool watch, unsigned timeout_ms)
{
	struct em_source_kube *k = r->k;
	struct curl_slist *h = headers(r);
	CURL *e = r->easy;
	CURLcode res = CURLE_OK;
	bool done = false, accepted = false;
	int ret = 0;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "edgemesh-tproxy/" EM_VERSION);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, watch ? NULL : "");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)k->cfg.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	/* curl's own words for a transport failure ("SSL certificate problem:
	 * unable to get local issuer certificate", "no alternative certificate
	 * subject name matches"): the operator needs them, errno has none. */
	r->curl_error[0] = '\0';
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error);
	if (k->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, k->ca_file);
	if (k->cfg.insecure_skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	r->watching = watch;
	r->status = 0;
	r->body_len = 0;
	r->dirty = false;
	r->got_410 = false;
	r->stream_error = false;
	r->events = 0;
	r->last_rx_ns = em_clock_ns();
	em_watch_stream_reset(r->ws);

	curl_multi_add_handle(r->multi, e);
	while (!done) {
		int running;
		CURLMsg *m;
		int left;

		if (stopping(r)) {
			ret = -ECANCELED;
			break;
		}
		curl_multi_perform(r->multi, &running);
		while ((m = curl_multi_info_read(r->multi, &left)))
			if (m->msg == CURLMSG_DONE && m->easy_handle == e) {
				res = m->data.result;
				done = true;
			}
		if (done)
			break;
		flush_due(r, false);
		if (watch && !accepted) {
			if (r->status == 0)
				curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
			accepted = r->status != 0;
			/* Back in business as soon as a watch is accepted, so the
			 * next outage is reported again. */
			if (r->status == 200 && r->down) {
				em_info("%s: watch %s%s: reconnected", k->name, k->base, r->path);
				r->down = false;
			}
		}
		if (em_clock_ns() - r->last_rx_ns > (uint64_t)k->cfg.stall_timeout_ms * 1000000ULL) {
			atomic_fetch_add(&k->n_stalls, 1);
			ret = -ETIMEDOUT;
			break;
		}
		curl_multi_poll(r->multi, NULL, 0, r->dirty ? 5 : 100, NULL);
	}
	flush_due(r, true);
	curl_multi_remove_handle(r->multi, e);
	curl_slist_free_all(h);
	if (r->status == 0)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	if (ret == 0 && res != CURLE_OK) {
		if (!r->got_410 && !r->stream_error)	/* those are reported by the caller */
			em_debug("%s: GET %s: %s", k->name, url, curl_easy_strerror(res));
		ret = -EIO;
	}
	return ret;
}

static char *make_url(struct resource *r, const char *query)
{
	struct em_source_kube *k = r->k;
	char *url;

	if (asprintf(&url, "%s%s?%s%s%s", k->base, r->path, query,
		     r->node_select && k->field_selector ? "&fieldSelector=" : "",
		     r->node_select && k->field_selector ? k->field_selector : "") == -1)
		return NULL;
	return url;
}

static void report_failure(struct resource *r, const char *what, int ret)
{
	struct em_source_kube *k = r->k;

	atomic_fetch_add(&k->n_errors, 1);
	if (r->status && r->status != 200)
		em_log_rl(&r->rl, r->down ? EM_LOG_DEBUG : EM_LOG_WARN,
			  "%s: %s %s%s: HTTP %ld: %.200s", k->name, what, k->base, r->path,
			  r->status, r->body_len ? r->body : "");
	else
		em_log_rl(&r->rl, r->down ? EM_LOG_DEBUG : EM_LOG_WARN,
			  "%s: %s %s%s failed: %s%s", k->name, what, k->base, r->path,
			  ret == -EIO && r->curl_error[0] ? r->curl_error : strerror(-ret),
			  r->down ? "" : " (keeping the last good data, retrying)");
	r->down = true;
}

/* LIST every page, then replace + commit. 0, -ENOENT (404), -ECANCELED, or
 * another -errno (logged). Nothing reaches the sink unless every page
 * arrived: a half list must not remove objects. */
static int do_list(struct resource *r)
{
	struct em_source_kube *k = r->k;
	json_t *items = json_array();
	char *cont = NULL;
	char rv[RV_MAX] = "";
	unsigned restarts = 0;
	size_t total_bytes = 0;
	int ret;

	for (;;) {
		char query[64];
		char *url, *q = NULL;
		json_t *root, *list, *meta, *it;
		json_error_t jerr;
		size_t i;

		snprintf(query, sizeof(query), "limit=%u", k->cfg.page_limit);
		if (cont) {
			char *esc = curl_easy_escape(r->easy, cont, 0);
			if (asprintf(&q, "%s&continue=%s", query, esc ? esc : "") == -1)
				q = NULL;
			curl_free(esc);
		}
		url = make_url(r, q ? q : query);
		free(q);
		if (!url) {
			ret = -ENOMEM;
			goto out;
		}
		ret = perform(r, url, false, k->cfg.list_timeout_ms);
		free(url);
		if (ret < 0)
			goto fail;
		if (r->status == 410 && cont && restarts++ < 3) {
			/* The continue token expired mid-list: start over. */
			free(cont);
			cont = NULL;
			json_array_clear(items);
			total_bytes = 0;
			continue;
		}
		if (r->status == 404 && r->optional) {
			ret = -ENOENT;
			goto out;
		}
		if (r->status != 200) {
			ret = -EIO;
			goto fail;
		}
		total_bytes += r->body_len;
		root = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
		body_release_if_large(r);
		list = json_object_get(root, "items");
		meta = json_object_get(root, "metadata");
		if (!json_is_object(root) || !(json_is_array(list) || json_is_null(list))) {
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: LIST %s%s: not a list: %s", k->name,
				  k->base, r->path, root ? "no items" : jerr.text);
			json_decref(root);
			ret = -EBADMSG;
			goto fail;
		}
		json_array_foreach(list, i, it) {
			if (!json_is_object(it))
				continue;
			set_kind(it, r->kind);
			json_array_append(items, it);
		}
		free(cont);
		cont = NULL;
		if (total_bytes > k->cfg.max_list_bytes ||
		    json_array_size(items) > k->cfg.max_list_objects) {
			em_log_rl(&r->rl, EM_LOG_ERR, "%s: LIST %s%s: more than %zu bytes or %zu objects "
				  "(%zu bytes, %zu objects so far): refused", k->name, k->base, r->path,
				  k->cfg.max_list_bytes, k->cfg.max_list_objects, total_bytes,
				  json_array_size(items));
			json_decref(root);
			ret = -EFBIG;
			goto fail;
		}
		const char *lrv = json_string_value(json_object_get(meta, "resourceVersion"));
		if (lrv && strlen(lrv) >= sizeof(rv)) {
			em_log_rl(&r->rl, EM_LOG_ERR, "%s: LIST %s%s: resourceVersion of %zu bytes "
				  "(at most %zu): refused", k->name, k->base, r->path, strlen(lrv),
				  sizeof(rv) - 1);
			json_decref(root);
			ret = -EBADMSG;
			goto fail;
		}
		if (lrv)
			strcpy(rv, lrv);
		if (json_string_length(json_object_get(meta, "continue")) > 0)
			cont = strdup(json_string_value(json_object_get(meta, "continue")));
		json_decref(root);
		if (!cont)
			break;
	}
	k->sink.replace(k->sink.ctx, k->name, r->kind, items);
	k->sink.commit(k->sink.ctx, k->name);
	strcpy(r->rv, rv);
	atomic_fetch_add(&k->n_lists, 1);
	em_log(r->down ? EM_LOG_INFO : EM_LOG_DEBUG, "%s: listed %zu %s (resourceVersion %s)",
	       k->name, json_array_size(items), r->kind, rv);
	r->down = false;
	ret = 0;
	goto out;
fail:
	if (ret != -ECANCELED)
		report_failure(r, "LIST", ret);
out:
	free(cont);
	json_decref(items);
	return ret;
}

/* One watch connection. 0 = ended cleanly (timeoutSeconds), -ESTALE = 410
 * (relist), -ECANCELED, other -errno = broken (reconnect after backoff). */
static int do_watch(struct resource *r)
{
	struct em_source_kube *k = r->k;
	unsigned t = k->cfg.watch_timeout_s;
	char query[RV_MAX + 128];
	char *url, *esc;
	int ret;

	t += (unsigned)(rnd(r) % (t / 2 + 1));
	esc = curl_easy_escape(r->easy, r->rv, 0);
	snprintf(query, sizeof(query),
		 "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
		 esc ? esc : "", t);
	curl_free(esc);
	url = make_url(r, query);
	if (!url)
		return -ENOMEM;
	/* The server ends the watch after t s; the curl timeout is a backstop. */
	ret = perform(r, url, true, (t + 30) * 1000);
	free(url);
	if (r->status == 200)
		atomic_fetch_add(&k->n_watches, 1);
	if (ret == -ECANCELED)
		return ret;
	if (r->got_410 || r->status == 410) {
		atomic_fetch_add(&k->n_410, 1);
		em_info("%s: watch %s: resourceVersion %s expired (410), relisting", k->name,
			r->path, r->rv);
		return -ESTALE;
	}
	if (ret == 0 && r->status == 200 && em_watch_stream_pending(r->ws) == 0)
		return 0;
	if (ret == 0 || (ret == -EIO && r->status == 200))
		ret = r->stream_error ? -EBADMSG : -EPIPE;	/* cut mid-stream */
	if (ret == -ETIMEDOUT)
		em_debug("%s: watch %s: no data for %u ms, reconnecting", k->name, r->path,
			 k->cfg.stall_timeout_ms);
	else
		report_failure(r, "WATCH", ret);
	return ret;
}

static void *resource_thread(void *arg)
{
	struct resource *r = arg;
	struct em_source_kube *k = r->k;
	bool need_list = true, listed_once = false;
	unsigned delay = 0;
	int ret;

	while (!stopping(r)) {
		if (need_list) {
			ret = do_list(r);
			if (ret == -ECANCELED)
				break;
			if (ret == -ENOENT) {
				em_info("%s: %s not served by %s, not watching them", k->name,
					r->path, k->base);
				break;
			}
			if (ret < 0) {
				if (backoff(r, &delay) < 0)
					break;
				continue;
			}
			need_list = false;
			if (!listed_once) {
				listed_once = true;
				mark_listed(r);
			}
		}
		uint64_t t0 = em_clock_ns();
		ret = do_watch(r);
		if (ret == -ECANCELED)
			break;
		if (ret == -ESTALE)
			need_list = true;
		/* A watch that lived a while or carried events proves the server
		 * healthy: reconnect at once. Anything else backs off, so a server
		 * that closes every watch at once is not hammered. */
		if ((ret == 0 || ret == -ESTALE || ret == -ETIMEDOUT) &&
		    (r->events > 0 || em_clock_ns() - t0 > 1000000000ULL)) {
			delay = 0;
			continue;
		}
		if (backoff(r, &delay) < 0)
			break;
	}
	if (!listed_once)
		mark_listed(r);
	return NULL;
}

/* ---- start / stop ----------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int resolve_url(struct em_source_kube *k, const struct em_kube_config *cfg)
{
	const char *url = cfg->url && *cfg->url ? cfg->url : EM_KUBE_DEFAULT_URL;
	size_t n;

	if (strcmp(url, "in-cluster") == 0) {
		const char *host = getenv("KUBERNETES_SERVICE_HOST");
		const char *port = getenv("KUBERNETES_SERVICE_PORT");

		if (!host || !*host) {
			em_err("%s: url \"in-cluster\" but KUBERNETES_SERVICE_HOST is not set",
			       k->name);
			return -EINVAL;
		}
		if (asprintf(&k->base, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
			     host, port && *port ? port : "443") == -1)
			return -ENOMEM;
		if (!cfg->token_file)
			k->token_file = strdup(EM_KUBE_SA_DIR "/token");
		if (!cfg->ca_file)
			k->ca_file = strdup(EM_KUBE_SA_DIR "/ca.crt");
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

static void kube_free(struct em_source_kube *k)
{
	for (unsigned i = 0; i < k->nres; i++) {
		struct resource *r = &k->res[i];
		if (r->easy)
			curl_easy_cleanup(r->easy);
		if (r->multi)
			curl_multi_cleanup(r->multi);
		em_watch_stream_free(r->ws);
		free(r->body);
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

#define DEFAULT(f, v) do { if (!k->cfg.f) k->cfg.f = (v); } while (0)

int em_source_kube_start(const struct em_kube_config *cfg, struct em_source_sink sink,
			 struct em_source_kube **out)
{
	static const struct { const char *kind, *path; } kinds[] = {
		{ "Service", "/api/v1/services" },
		{ "Endpoints", "/api/v1/endpoints" },
		{ "Pod", "/api/v1/pods" },
		{ "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices" },
	};
	struct em_source_kube *k = calloc(1, sizeof(*k));
	struct timespec deadline;
	int ret = -ENOMEM;

	*out = NULL;
	if (!k)
		return -ENOMEM;
	pthread_once(&curl_once, curl_init);
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
	ret = resolve_url(k, cfg);
	if (ret < 0)
		goto err;
	if (cfg->pods_on_node_only) {
		char *sel;
		if (!cfg->node_name || !*cfg->node_name) {
			em_err("%s: pods on this node only, but no node name", k->name);
			ret = -EINVAL;
			goto err;
		}
		if (asprintf(&sel, "spec.nodeName=%s", cfg->node_name) == -1) {
			ret = -ENOMEM;
			goto err;
		}
		k->field_selector = curl_easy_escape(NULL, sel, 0);
		free(sel);
	}
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
	if (k->cfg.backoff_max_ms < k->cfg.backoff_min_ms)
		k->cfg.backoff_max_ms = k->cfg.backoff_min_ms;

	ret = -ENOMEM;
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct resource *r;

		if (i == 3 && cfg->no_endpointslices)
			break;
		r = &k->res[k->nres++];
		r->k = k;
		r->kind = kinds[i].kind;
		r->path = kinds[i].path;
		r->node_select = i == 2;
		r->optional = i == 3;
		r->rng = em_clock_ns() ^ ((uint64_t)(uintptr_t)r << 16) ^ 0x9e3779b97f4a7c15ULL;
		r->multi = curl_multi_init();
		r->easy = curl_easy_init();
		r->ws = em_watch_stream_new(0, on_event, r);
		if (!r->multi || !r->easy || !r->ws)
			goto err;
	}
	for (unsigned i = 0; i < k->nres; i++) {
		if (pthread_create(&k->res[i].thread, NULL, resource_thread, &k->res[i]) != 0) {
			em_err("%s: cannot start a watch thread", k->name);
			em_source_kube_stop(k);
			return -EAGAIN;
		}
		k->res[i].thread_started = true;
	}

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
	*out = k;
	return 0;
err:
	if (ret == -ENOMEM)
		em_err("%s: out of memory starting", k->name ? k->name : "kube");
	kube_free(k);
	return ret;
}

void em_source_kube_stop(struct em_source_kube *k)
{
	if (!k)
		return;
	atomic_store(&k->stop, true);
	for (unsigned i = 0; i < k->nres; i++)
		if (k->res[i].multi)
			curl_multi_wakeup(k->res[i].multi);
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
