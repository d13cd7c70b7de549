/* kube_list_watch.c — the kube source's per-resource loop: LIST (paginated)
 * -> replace + commit, then WATCH from the list's resourceVersion, events
 * to the sink in batches, relist on 410, backoff on failures (kube.h says
 * what the sink sees). The HTTP transport is kube_http.c. */
#include "sources/kube_internal.h"
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rnd(struct kube_resource *r)
{
	/* xorshift64: jitter only, not security */
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static bool stopping(const struct kube_resource *r)
{
	return atomic_load(&r->k->stop);
}

/* Jittered exponential backoff: sleep in [d/2, d), then double d. */
static int backoff(struct kube_resource *r, unsigned *delay)
{
	const struct em_kube_config *c = &r->k->cfg;
	unsigned d = *delay ? *delay : c->backoff_min_ms;
	unsigned s = d / 2 + (unsigned)(rnd(r) % (d / 2 + 1));

	*delay = d >= c->backoff_max_ms / 2 ? c->backoff_max_ms : d * 2;
	return em_kube_http_sleep(r->http, s);
}

static void mark_listed(struct kube_resource *r)
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
static int save_rv(struct kube_resource *r, json_t *obj)
{
	const char *rv = meta_str(obj, "resourceVersion");

	if (strlen(rv) >= EM_KUBE_RV_MAX)
		return -E2BIG;
	if (*rv)
		strcpy(r->rv, rv);
	return 0;
}

/* An ERROR event: 410 means relist, anything else breaks the watch. */
static int on_error_event(struct kube_resource *r, const struct em_watch_event *ev)
{
	const char *msg = json_string_value(json_object_get(ev->object, "message"));

	if (ev->code == 410) {
		r->got_410 = true;
		return -ESTALE;
	}
	em_log_rl(&r->rl, EM_LOG_WARN, "%s: watch %s: ERROR event code %d: %s", r->k->name,
		  r->kind->path, ev->code, msg ? msg : "(no message)");
	return -EPROTO;
}

int em_kube_on_event(void *ctx, const struct em_watch_event *ev)
{
	struct kube_resource *r = ctx;
	struct em_source_kube *k = r->k;
	json_t *obj = ev->object;
	int ret;

	switch (ev->type) {
	case EM_WATCH_ADDED:
	case EM_WATCH_MODIFIED:
		set_kind(obj, r->kind->kind);
		ret = k->sink.upsert(k->sink.ctx, k->name, obj);
		if (ret < 0)
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: %s %s/%s from watch not usable: %s",
				  k->name, r->kind->kind, meta_str(obj, "namespace"),
				  meta_str(obj, "name"), strerror(-ret));
		r->dirty = true;
		break;
	case EM_WATCH_DELETED:
		k->sink.remove(k->sink.ctx, k->name, r->kind->kind, meta_str(obj, "namespace"),
			       meta_str(obj, "name"));
		r->dirty = true;
		break;
	case EM_WATCH_BOOKMARK:
		break;
	case EM_WATCH_ERROR:
		return on_error_event(r, ev);
	}
	if (save_rv(r, obj) < 0) {
		em_log_rl(&r->rl, EM_LOG_ERR, "%s: watch %s: resourceVersion of %zu bytes "
			  "(at most %d): refused", k->name, r->kind->path,
			  strlen(meta_str(obj, "resourceVersion")), EM_KUBE_RV_MAX - 1);
		return -EBADMSG;
	}
	r->events++;
	atomic_fetch_add(&k->n_events, 1);
	return 0;
}

/* ---- requests ----------------------------------------------------------- */

/* One snapshot per batch of watch events, not per event or per received
 * chunk: commit when the stream has been quiet for BATCH_QUIET_NS, or when
 * the oldest uncommitted change is BATCH_MAX_NS old (a steady stream still
 * becomes visible), or when the transfer ends (force). */
#define BATCH_QUIET_NS (20ULL * 1000000ULL)
#define BATCH_MAX_NS (200ULL * 1000000ULL)

static void flush_due(struct kube_resource *r, bool force)
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

static int on_stream(void *ctx, const char *p, size_t n)
{
	struct kube_resource *r = ctx;
	int ret;

	r->last_rx_ns = em_clock_ns();
	ret = em_watch_stream_feed(r->ws, p, n);
	/* Batch: the transfer loop commits once the stream pauses (flush_due). */
	if (r->dirty && !r->dirty_since_ns)
		r->dirty_since_ns = r->last_rx_ns;
	if (ret < 0) {
		if (ret != -ESTALE && ret != -EPROTO)
			em_log_rl(&r->rl, EM_LOG_WARN, "%s: watch %s: bad event stream: %s",
				  r->k->name, r->kind->path, strerror(-ret));
		r->stream_error = true;
	}
	return ret;
}

static int on_tick(void *ctx)
{
	struct kube_resource *r = ctx;

	flush_due(r, false);
	/* Back in business as soon as a watch is accepted, so the next outage
	 * is reported again. */
	if (r->watching && r->down && em_kube_http_status(r->http) == 200) {
		em_info("%s: watch %s%s: reconnected", r->k->name, r->k->base, r->kind->path);
		r->down = false;
	}
	return r->dirty ? 5 : 100;
}

/* One GET (a LIST page or a watch) through the transport; batched commits
 * of a watch end with it. Returns as em_kube_http_get. */
static int get(struct kube_resource *r, const char *url, bool watch, unsigned timeout_ms)
{
	const struct em_kube_http_hooks hooks = { .stream = on_stream, .tick = on_tick, .ctx = r };
	int ret;

	r->watching = watch;
	r->dirty = false;
	r->got_410 = false;
	r->stream_error = false;
	r->events = 0;
	r->last_rx_ns = em_clock_ns();
	em_watch_stream_reset(r->ws);
	ret = em_kube_http_get(r->http, url, watch, timeout_ms, &hooks);
	flush_due(r, true);
	if (ret == -ETIMEDOUT)
		atomic_fetch_add(&r->k->n_stalls, 1);
	return ret;
}

static char *make_url(struct kube_resource *r, const char *query)
{
	struct em_source_kube *k = r->k;
	bool select = r->kind->node_scoped && k->field_selector;
	char *url;

	if (asprintf(&url, "%s%s?%s%s%s", k->base, r->kind->path, query,
		     select ? "&fieldSelector=" : "", select ? k->field_selector : "") == -1)
		return NULL;
	return url;
}

static void report_failure(struct kube_resource *r, const char *what, int ret)
{
	struct em_source_kube *k = r->k;
	long status = em_kube_http_status(r->http);
	size_t len;
	const char *body = em_kube_http_body(r->http, &len);

	atomic_fetch_add(&k->n_errors, 1);
	if (status && status != 200)
		em_log_rl(&r->rl, r->down ? EM_LOG_DEBUG : EM_LOG_WARN,
			  "%s: %s %s%s: HTTP %ld: %.200s", k->name, what, k->base, r->kind->path,
			  status, body);
	else
		em_log_rl(&r->rl, r->down ? EM_LOG_DEBUG : EM_LOG_WARN,
			  "%s: %s %s%s failed: %s%s", k->name, what, k->base, r->kind->path,
			  em_kube_http_reason(r->http, ret),
			  r->down ? "" : " (keeping the last good data, retrying)");
	r->down = true;
}

/* ---- LIST --------------------------------------------------------------- */

/* A LIST in progress: the items of the pages so far. */
struct list_state {
	json_t *items;
	char *cont;			/* continue token of the next page */
	char rv[EM_KUBE_RV_MAX];	/* the list's resourceVersion */
	size_t total_bytes;
	unsigned restarts;
};

static char *page_url(struct kube_resource *r, const char *cont)
{
	char query[64], *q = NULL, *esc, *url;

	snprintf(query, sizeof(query), "limit=%u", r->k->cfg.page_limit);
	if (!cont)
		return make_url(r, query);
	esc = em_kube_http_escape(cont);
	if (asprintf(&q, "%s&continue=%s", query, esc ? esc : "") == -1)
		q = NULL;
	free(esc);
	url = make_url(r, q ? q : query);
	free(q);
	return url;
}

/* GET the next page: 0 with a 200 body, 1 to start over (the continue
 * token expired mid-list), -ENOENT (404 of an optional resource), -EIO
 * (another status), -ENOMEM, or the transport's -errno. */
static int get_page(struct kube_resource *r, struct list_state *ls)
{
	char *url = page_url(r, ls->cont);
	long status;
	int ret;

	if (!url)
		return -ENOMEM;
	ret = get(r, url, false, r->k->cfg.list_timeout_ms);
	free(url);
	if (ret < 0)
		return ret;
	status = em_kube_http_status(r->http);
	if (status == 410 && ls->cont && ls->restarts++ < 3) {
		free(ls->cont);
		ls->cont = NULL;
		json_array_clear(ls->items);
		ls->total_bytes = 0;
		return 1;
	}
	if (status == 404 && r->kind->optional)
		return -ENOENT;
	return status == 200 ? 0 : -EIO;
}

/* The size limits of one LIST: -EFBIG (logged) when past them. */
static int check_limits(struct kube_resource *r, const struct list_state *ls)
{
	struct em_source_kube *k = r->k;

	if (ls->total_bytes <= k->cfg.max_list_bytes &&
	    json_array_size(ls->items) <= k->cfg.max_list_objects)
		return 0;
	em_log_rl(&r->rl, EM_LOG_ERR, "%s: LIST %s%s: more than %zu bytes or %zu objects "
		  "(%zu bytes, %zu objects so far): refused", k->name, k->base, r->kind->path,
		  k->cfg.max_list_bytes, k->cfg.max_list_objects, ls->total_bytes,
		  json_array_size(ls->items));
	return -EFBIG;
}

/* The list metadata of a page: its resourceVersion and continue token. */
static int take_list_meta(struct kube_resource *r, struct list_state *ls, json_t *meta)
{
	struct em_source_kube *k = r->k;
	const char *lrv = json_string_value(json_object_get(meta, "resourceVersion"));

	if (lrv && strlen(lrv) >= sizeof(ls->rv)) {
		em_log_rl(&r->rl, EM_LOG_ERR, "%s: LIST %s%s: resourceVersion of %zu bytes "
			  "(at most %zu): refused", k->name, k->base, r->kind->path, strlen(lrv),
			  sizeof(ls->rv) - 1);
		return -EBADMSG;
	}
	if (lrv)
		strcpy(ls->rv, lrv);
	if (json_string_length(json_object_get(meta, "continue")) > 0)
		ls->cont = strdup(json_string_value(json_object_get(meta, "continue")));
	return 0;
}

/* Parse the page just received and add its items. 0 or -errno (logged). */
static int take_page(struct kube_resource *r, struct list_state *ls)
{
	size_t len, i;
	const char *body = em_kube_http_body(r->http, &len);
	json_error_t jerr;
	json_t *root = json_loadb(body, len, 0, &jerr), *list, *it;
	int ret;

	ls->total_bytes += len;
	em_kube_http_body_release(r->http);
	list = json_object_get(root, "items");
	if (!json_is_object(root) || !(json_is_array(list) || json_is_null(list))) {
		em_log_rl(&r->rl, EM_LOG_WARN, "%s: LIST %s%s: not a list: %s", r->k->name,
			  r->k->base, r->kind->path, root ? "no items" : jerr.text);
		json_decref(root);
		return -EBADMSG;
	}
	json_array_foreach(list, i, it) {
		if (!json_is_object(it))
			continue;
		set_kind(it, r->kind->kind);
		json_array_append(ls->items, it);
	}
	free(ls->cont);
	ls->cont = NULL;
	ret = check_limits(r, ls);
	if (ret == 0)
		ret = take_list_meta(r, ls, json_object_get(root, "metadata"));
	json_decref(root);
	return ret;
}

/* Every page arrived: the sink gets the whole list. */
static void publish_list(struct kube_resource *r, struct list_state *ls)
{
	struct em_source_kube *k = r->k;

	k->sink.replace(k->sink.ctx, k->name, r->kind->kind, ls->items);
	k->sink.commit(k->sink.ctx, k->name);
	strcpy(r->rv, ls->rv);
	atomic_fetch_add(&k->n_lists, 1);
	em_log(r->down ? EM_LOG_INFO : EM_LOG_DEBUG, "%s: listed %zu %s (resourceVersion %s)",
	       k->name, json_array_size(ls->items), r->kind->kind, ls->rv);
	r->down = false;
}

/* LIST every page, then replace + commit. 0, -ENOENT (404), -ECANCELED, or
 * another -errno (logged). Nothing reaches the sink unless every page
 * arrived: a half list must not remove objects. */
static int do_list(struct kube_resource *r)
{
	struct list_state ls = { .items = json_array() };
	int ret;

	do {
		ret = get_page(r, &ls);
		if (ret == 0)
			ret = take_page(r, &ls);
	} while (ret >= 0 && (ret == 1 || ls.cont));
	if (ret >= 0) {
		publish_list(r, &ls);
		ret = 0;
	} else if (ret != -ECANCELED && ret != -ENOENT && ret != -ENOMEM) {
		report_failure(r, "LIST", ret);
	}
	free(ls.cont);
	json_decref(ls.items);
	return ret;
}

/* ---- WATCH -------------------------------------------------------------- */

/* One watch connection. 0 = ended cleanly (timeoutSeconds), -ESTALE = 410
 * (relist), -ECANCELED, other -errno = broken (reconnect after backoff). */
static int do_watch(struct kube_resource *r)
{
	struct em_source_kube *k = r->k;
	unsigned t = k->cfg.watch_timeout_s;
	char query[EM_KUBE_RV_MAX + 128];
	char *url, *esc;
	long status;
	int ret;

	t += (unsigned)(rnd(r) % (t / 2 + 1));
	esc = em_kube_http_escape(r->rv);
	snprintf(query, sizeof(query),
		 "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
		 esc ? esc : "", t);
	free(esc);
	url = make_url(r, query);
	if (!url)
		return -ENOMEM;
	/* The server ends the watch after t s; the curl timeout is a backstop. */
	ret = get(r, url, true, (t + 30) * 1000);
	free(url);
	status = em_kube_http_status(r->http);
	if (status == 200)
		atomic_fetch_add(&k->n_watches, 1);
	if (ret == -ECANCELED)
		return ret;
	if (r->got_410 || status == 410) {
		atomic_fetch_add(&k->n_410, 1);
		em_info("%s: watch %s: resourceVersion %s expired (410), relisting", k->name,
			r->kind->path, r->rv);
		return -ESTALE;
	}
	if (ret == 0 && status == 200 && em_watch_stream_pending(r->ws) == 0)
		return 0;
	if (ret == 0 || (ret == -EIO && status == 200))
		ret = r->stream_error ? -EBADMSG : -EPIPE;	/* cut mid-stream */
	if (ret == -ETIMEDOUT)
		em_debug("%s: watch %s: no data for %u ms, reconnecting", k->name, r->kind->path,
			 k->cfg.stall_timeout_ms);
	else
		report_failure(r, "WATCH", ret);
	return ret;
}

/* ---- the loop ----------------------------------------------------------- */

/* LIST until it works: 0, or -ECANCELED / -ENOENT to end the thread. */
static int list_until_done(struct kube_resource *r, unsigned *delay)
{
	for (;;) {
		int ret = do_list(r);

		if (ret == -ENOENT)
			em_info("%s: %s not served by %s, not watching them", r->k->name,
				r->kind->path, r->k->base);
		if (ret == 0 || ret == -ECANCELED || ret == -ENOENT)
			return ret;
		if (backoff(r, delay) < 0)
			return -ECANCELED;
	}
}

void *em_kube_resource_thread(void *arg)
{
	struct kube_resource *r = arg;
	bool need_list = true, listed_once = false;
	unsigned delay = 0;
	int ret;

	while (!stopping(r)) {
		if (need_list) {
			if (list_until_done(r, &delay) < 0)
				break;
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
