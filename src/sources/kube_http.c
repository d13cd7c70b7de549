/* kube_http.c — the kube source's HTTP transport over curl.
 *
 * Each handle has its own curl multi handle holding at most one transfer.
 * The multi is used (rather than curl_easy_perform) for two things:
 * curl_multi_wakeup() makes stop() prompt even in the middle of a blocked
 * watch or a backoff sleep, and our own loop measures how long the stream
 * has been silent (stall detection in ms, independent of curl's one-second
 * LOW_SPEED granularity). */
#include "sources/kube_http.h"
#include "util/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_BODY (256u << 20)	/* one LIST page */
#define MAX_ERR_BODY 4096	/* head of an error body kept during a stream */

struct em_kube_http {
	const struct em_kube_http_opts *opts;
	const atomic_bool *stop;
	struct em_ratelimit *rl;
	CURLM *multi;
	CURL *easy;

	/* The transfer in flight, or the last one. */
	bool stream;
	bool hook_aborted;		/* a hook aborted it (the hook reports why) */
	long status;			/* read at the first body byte, or later */
	char *body;			/* LIST body, or a non-200 stream body */
	size_t body_len, body_cap;
	const struct em_kube_http_hooks *hooks;
	uint64_t last_rx_ns;
	char curl_error[CURL_ERROR_SIZE];	/* curl's reason for a transport error, "" if none */
};

static bool stopping(const struct em_kube_http *h)
{
	return atomic_load(h->stop);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct em_kube_http *em_kube_http_new(const struct em_kube_http_opts *opts,
				      const atomic_bool *stop, struct em_ratelimit *rl)
{
	struct em_kube_http *h = calloc(1, sizeof(*h));

	pthread_once(&curl_once, curl_init);
	if (!h)
		return NULL;
	h->opts = opts;
	h->stop = stop;
	h->rl = rl;
	h->multi = curl_multi_init();
	h->easy = curl_easy_init();
	if (!h->multi || !h->easy) {
		em_kube_http_free(h);
		return NULL;
	}
	return h;
}

void em_kube_http_free(struct em_kube_http *h)
{
	if (!h)
		return;
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free(h->body);
	free(h);
}

/* ---- body --------------------------------------------------------------- */

static int body_append(struct em_kube_http *h, const char *p, size_t n, size_t max)
{
	if (n > max - h->body_len)
		return -EMSGSIZE;
	if (h->body_len + n + 1 > h->body_cap) {
		size_t cap = h->body_cap ? h->body_cap : 16384;
		char *nb;
		while (cap < h->body_len + n + 1)
			cap *= 2;
		nb = realloc(h->body, cap);
		if (!nb)
			return -ENOMEM;
		h->body = nb;
		h->body_cap = cap;
	}
	memcpy(h->body + h->body_len, p, n);
	h->body_len += n;
	h->body[h->body_len] = '\0';
	return 0;
}

void em_kube_http_body_release(struct em_kube_http *h)
{
	if (h->body_cap > (1u << 20)) {
		free(h->body);
		h->body = NULL;
		h->body_cap = 0;
		h->body_len = 0;
	}
}

const char *em_kube_http_body(const struct em_kube_http *h, size_t *len)
{
	*len = h->body_len;
	return h->body && h->body_len ? h->body : "";	/* the buffer may hold an older body */
}

long em_kube_http_status(const struct em_kube_http *h)
{
	return h->status;
}

const char *em_kube_http_reason(const struct em_kube_http *h, int ret)
{
	return ret == -EIO && h->curl_error[0] ? h->curl_error : strerror(-ret);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct em_kube_http *h = ctx;
	size_t n = size * nmemb;

	h->last_rx_ns = em_clock_ns();
	if (h->status == 0)
		curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
	if (!h->stream || h->status != 200) {
		if (body_append(h, p, n, h->stream ? MAX_ERR_BODY : MAX_BODY) < 0)
			return h->stream ? n : 0;	/* error text: keep the head only */
		return n;
	}
	if (h->hooks && h->hooks->stream && h->hooks->stream(h->hooks->ctx, p, n) < 0) {
		h->hook_aborted = true;
		return 0;	/* abort the transfer */
	}
	return n;
}

/* ---- one request -------------------------------------------------------- */

/* The bearer token is re-read on each request: a projected service-account
 * token is rotated under our feet. */
static struct curl_slist *headers(struct em_kube_http *h)
{
	const struct em_kube_http_opts *o = h->opts;
	struct curl_slist *hl = curl_slist_append(NULL, "Accept: application/json");
	char tok[8192], line[8300];
	size_t n = 0;
	FILE *f;

	if (!o->token_file)
		return hl;
	f = fopen(o->token_file, "re");
	if (f) {
		n = fread(tok, 1, sizeof(tok) - 1, f);
		fclose(f);
	}
	while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
		n--;
	tok[n] = '\0';
	if (n > 0) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", tok);
		hl = curl_slist_append(hl, line);
	} else {
		em_log_rl(h->rl, EM_LOG_WARN, "%s: cannot read token file %s (or empty)",
			  o->name, o->token_file);
	}
	return hl;
}

static void set_options(struct em_kube_http *h, const char *url, bool stream,
			unsigned timeout_ms, struct curl_slist *hl)
{
	const struct em_kube_http_opts *o = h->opts;
	CURL *e = h->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "edgemesh-tproxy/" EM_VERSION);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, stream ? NULL : "");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	/* curl's own words for a transport failure ("SSL certificate problem:
	 * unable to get local issuer certificate", "no alternative certificate
	 * subject name matches"): the operator needs them, errno has none. */
	h->curl_error[0] = '\0';
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->curl_error);
	if (o->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
	if (o->insecure_skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/* Drive the transfer until it is done: 0 (result in *res), -ECANCELED or
 * -ETIMEDOUT. */
static int run(struct em_kube_http *h, CURLcode *res)
{
	uint64_t stall_ns = (uint64_t)h->opts->stall_timeout_ms * 1000000ULL;

	for (;;) {
		int running, left, wait_ms = 100;
		CURLMsg *m;

		if (stopping(h))
			return -ECANCELED;
		curl_multi_perform(h->multi, &running);
		while ((m = curl_multi_info_read(h->multi, &left)))
			if (m->msg == CURLMSG_DONE && m->easy_handle == h->easy) {
				*res = m->data.result;
				return 0;
			}
		/* A stream's status counts as soon as the headers are in. */
		if (h->stream && h->status == 0)
			curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
		if (h->hooks && h->hooks->tick)
			wait_ms = h->hooks->tick(h->hooks->ctx);
		if (em_clock_ns() - h->last_rx_ns > stall_ns)
			return -ETIMEDOUT;
		curl_multi_poll(h->multi, NULL, 0, wait_ms, NULL);
	}
}

int em_kube_http_get(struct em_kube_http *h, const char *url, bool stream, unsigned timeout_ms,
		     const struct em_kube_http_hooks *hooks)
{
	struct curl_slist *hl = headers(h);
	CURLcode res = CURLE_OK;
	int ret;

	set_options(h, url, stream, timeout_ms, hl);
	h->stream = stream;
	h->hooks = hooks;
	h->hook_aborted = false;
	h->status = 0;
	h->body_len = 0;
	h->last_rx_ns = em_clock_ns();

	curl_multi_add_handle(h->multi, h->easy);
	ret = run(h, &res);
	curl_multi_remove_handle(h->multi, h->easy);
	curl_slist_free_all(hl);
	h->hooks = NULL;
	if (h->status == 0)
		curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
	if (ret == 0 && res != CURLE_OK) {
		if (!h->hook_aborted)	/* the hook reports its reason */
			em_debug("%s: GET %s: %s", h->opts->name, url, curl_easy_strerror(res));
		ret = -EIO;
	}
	return ret;
}

/* ---- waiting ------------------------------------------------------------ */

int em_kube_http_sleep(struct em_kube_http *h, unsigned ms)
{
	uint64_t deadline = em_clock_ns() + (uint64_t)ms * 1000000ULL;

	while (!stopping(h)) {
		uint64_t now = em_clock_ns();
		if (now >= deadline)
			return 0;
		curl_multi_poll(h->multi, NULL, 0, (int)((deadline - now) / 1000000ULL) + 1, NULL);
	}
	return -ECANCELED;
}

void em_kube_http_wakeup(struct em_kube_http *h)
{
	curl_multi_wakeup(h->multi);
}

char *em_kube_http_escape(const char *s)
{
	char *esc = curl_easy_escape(NULL, s, 0);
	char *out = esc ? strdup(esc) : NULL;

	curl_free(esc);
	return out;
}
