/* kube_http.h — internal to the kube source: its HTTP transport. One GET at
 * a time per handle over curl: TLS (CA file or no verification), the bearer
 * token re-read on each request, the response status and body, stall
 * detection, and a sleep that stop() interrupts.
 *
 * A handle belongs to one thread; em_kube_http_wakeup() is the one call
 * another thread may make on it. */
#ifndef EM_SOURCES_KUBE_HTTP_H
#define EM_SOURCES_KUBE_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

/* What every request of a handle shares. Strings are borrowed: they must
 * outlive the handle. */
struct em_kube_http_opts {
	const char *name;		/* source name, for log lines */
	const char *token_file;		/* "Authorization: Bearer" from it; NULL: none */
	const char *ca_file;		/* NULL: the system's CA bundle */
	bool insecure_skip_verify;
	unsigned connect_timeout_ms;
	unsigned stall_timeout_ms;	/* no byte for this long: -ETIMEDOUT */
};

/* Called on the handle's thread from inside em_kube_http_get(). */
struct em_kube_http_hooks {
	/* Bytes of a streamed response with status 200 (the error body of any
	 * other status is kept as for a plain GET). < 0 aborts the transfer. */
	int (*stream)(void *ctx, const char *p, size_t n);
	/* Each turn of the transfer loop; returns how long (ms) the loop may
	 * wait for data before the next turn. */
	int (*tick)(void *ctx);
	void *ctx;
};

struct em_kube_http;

/* NULL on failure (out of memory). stop: when it turns true, a transfer in
 * progress or a sleep ends with -ECANCELED (after em_kube_http_wakeup). rl:
 * rate limit of the owner's warnings, used for the transport's own. */
struct em_kube_http *em_kube_http_new(const struct em_kube_http_opts *opts,
				      const atomic_bool *stop, struct em_ratelimit *rl);
void em_kube_http_free(struct em_kube_http *h);

/* Run one GET to completion. stream: the body goes to hooks->stream (a
 * watch) instead of being collected (a LIST page, at most 256 MiB). hooks
 * may be NULL. Returns 0 when the transfer completed (see the status),
 * -ECANCELED on stop, -ETIMEDOUT on a stall, -EIO on a transport error or a
 * transfer aborted (by a hook or an oversized body). */
int em_kube_http_get(struct em_kube_http *h, const char *url, bool stream, unsigned timeout_ms,
		     const struct em_kube_http_hooks *hooks);

/* The last GET's HTTP status, 0 if none arrived. */
long em_kube_http_status(const struct em_kube_http *h);
/* The last GET's collected body ("" if none), NUL-terminated; for a stream
 * only the head of a non-200 body is kept. */
const char *em_kube_http_body(const struct em_kube_http *h, size_t *len);
/* Give a large body buffer back to the allocator (after a LIST page). */
void em_kube_http_body_release(struct em_kube_http *h);
/* Why a GET failed with ret: curl's own words for a transport error (TLS
 * problems, names that do not match...), else strerror. */
const char *em_kube_http_reason(const struct em_kube_http *h, int ret);

/* Sleep ms unless stop: 0, or -ECANCELED. */
int em_kube_http_sleep(struct em_kube_http *h, unsigned ms);
/* Make a GET or sleep of the handle look at the stop flag now. Any thread. */
void em_kube_http_wakeup(struct em_kube_http *h);

/* s escaped for a URL query, malloc'ed; NULL if out of memory. */
char *em_kube_http_escape(const char *s);


#endif
