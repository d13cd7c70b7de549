/* pool.c — per-worker keep-alive pool of idle upstream connections, keyed by
 * backend address (not by balancer index: a new snapshot renumbers
 * backends, the address stays). Bounded per backend and in total, with an
 * idle timeout. Every upstream socket stays registered edge-triggered for
 * in, out and EPOLLRDHUP for its whole life; parking and taking only swap
 * src.on_event (no epoll_ctl per request). A backend closing an idle
 * connection raises an edge that idle_event takes as the end of it; a
 * close that raced with the end of the previous response is caught when
 * the connection is next used (http.c retries it once, fresh).
 *
 * struct em_proxy_upconn is owned by the HTTP request using it (owner set)
 * or by the pool (owner NULL, in a bucket list). Closed ones go to the
 * worker's up_dead list and are freed after the event batch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/worker.h"

static size_t addr_hash(const struct sockaddr_storage *ss)
{
	const unsigned char *p = (const unsigned char *)ss;
	size_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					       : sizeof(struct sockaddr_in);
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % EM_PROXY_POOL_BUCKETS;
}

static bool addr_eq(const struct sockaddr_storage *a, socklen_t alen,
		    const struct sockaddr_storage *b, socklen_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

static void unlink_idle(struct em_proxy_worker *w, struct em_proxy_upconn *u)
{
	size_t h = addr_hash(&u->addr);

	if (u->prev)
		u->prev->next = u->next;
	else
		w->pool.bucket[h] = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->prev = u->next = NULL;
	w->pool.idle--;
	w->pool.bucket_n[h]--;
	em_proxy_timer_disarm(&u->idle);
}

/* `pooled`: u is in a bucket list (owner NULL). */
static void upconn_close(struct em_proxy_worker *w, struct em_proxy_upconn *u,
			 bool reset, bool pooled)
{
	if (u->src.fd < 0)
		return;
	if (pooled)
		unlink_idle(w, u);
	em_proxy_timer_cancel(&w->timers, &u->idle);
	if (reset)
		em_proxy_close_reset(u->src.fd);
	else
		close(u->src.fd);
	u->src.fd = -1;
	u->owner = NULL;
	u->next = w->up_dead;
	w->up_dead = u;
}

void em_proxy_upconn_close(struct em_proxy_worker *w, struct em_proxy_upconn *u,
			   bool reset)
{
	upconn_close(w, u, reset, u->owner == NULL);
}

int em_proxy_upconn_detach(struct em_proxy_worker *w, struct em_proxy_upconn *u)
{
	int fd = u->src.fd;

	/* Taken from the pool, its timer may still be placed (disarmed). */
	em_proxy_timer_cancel(&w->timers, &u->idle);
	u->src.fd = -1;
	u->owner = NULL;
	u->next = w->up_dead;
	w->up_dead = u;
	return fd;
}

/* An idle pooled connection became readable or was closed: a backend has
 * nothing to say between requests, so either way it is of no further use. */
static void idle_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events)
{
	struct em_proxy_upconn *u = (struct em_proxy_upconn *)src;

	if (u->src.fd < 0 || u->owner)
		return;
	/* A late EPOLLOUT edge of the last request says nothing. */
	if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return;
	em_proxy_upconn_close(w, u, true);
}

static void idle_timeout(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	struct em_proxy_upconn *u = (struct em_proxy_upconn *)
		((char *)t - offsetof(struct em_proxy_upconn, idle));

	if (u->src.fd >= 0 && !u->owner)
		em_proxy_upconn_close(w, u, false);
}

struct em_proxy_upconn *em_proxy_upconn_new(struct em_proxy_worker *w, int fd,
					    const struct sockaddr_storage *ss,
					    socklen_t len, void *owner,
					    em_proxy_event_fn on_event)
{
	struct em_proxy_upconn *u = calloc(1, sizeof(*u));

	(void)w;
	if (!u) {
		close(fd);
		return NULL;
	}
	u->src = (struct em_proxy_src){ fd, on_event };
	u->owner = owner;
	u->addr = *ss;
	u->addr_len = len;
	em_proxy_timer_init(&u->idle, idle_timeout);
	return u;
}

struct em_proxy_upconn *em_proxy_pool_take(struct em_proxy_worker *w,
					   const struct sockaddr_storage *ss,
					   socklen_t len, void *owner)
{
	size_t h = addr_hash(ss);

	/* Most recently parked first: the warmest connection, and the
	 * coldest ones age out. */
	for (struct em_proxy_upconn *u = w->pool.bucket[h]; u; u = u->next) {
		if (!addr_eq(&u->addr, u->addr_len, ss, len))
			continue;
		unlink_idle(w, u);
		u->owner = owner;
		u->reused = true;
		return u;
	}
	return NULL;
}

void em_proxy_pool_put(struct em_proxy_worker *w, struct em_proxy_upconn *u,
		       bool reusable)
{
	const struct em_proxy_config *cfg = &w->proxy->cfg;
	size_t h = addr_hash(&u->addr), same = 0;

	if (!reusable || w->stopping || cfg->pool_total == 0 ||
	    u->requests >= cfg->pool_max_requests)
		goto close;
	/* Counting this backend's idle connections walks the bucket: only
	 * needed once the bucket itself holds enough to reach the limit. */
	if (w->pool.bucket_n[h] >= cfg->pool_per_backend) {
		for (struct em_proxy_upconn *i = w->pool.bucket[h]; i; i = i->next)
			if (addr_eq(&i->addr, i->addr_len, &u->addr, u->addr_len))
				same++;
		if (same >= cfg->pool_per_backend)
			goto close;
	}
	if (w->pool.idle >= cfg->pool_total) {
		/* Make room: drop the oldest idle connection of this bucket,
		 * else refuse (no global LRU: bounded is what matters). */
		struct em_proxy_upconn *last = w->pool.bucket[h];
		while (last && last->next)
			last = last->next;
		if (!last)
			goto close;
		em_proxy_upconn_close(w, last, false);
	}
	u->src.on_event = idle_event;
	u->owner = NULL;
	u->prev = NULL;
	u->next = w->pool.bucket[h];
	if (u->next)
		u->next->prev = u;
	w->pool.bucket[h] = u;
	w->pool.bucket_n[h]++;
	w->pool.idle++;
	em_proxy_timer_arm(&w->timers, &u->idle, w->now_ms + (uint64_t)cfg->pool_idle_s * 1000);
	return;
close:
	/* The exchange ended cleanly (else the caller resets it itself). */
	upconn_close(w, u, false, false);
}

void em_proxy_pool_close_all(struct em_proxy_worker *w)
{
	for (size_t h = 0; h < EM_PROXY_POOL_BUCKETS; h++)
		while (w->pool.bucket[h])
			em_proxy_upconn_close(w, w->pool.bucket[h], false);
}

void em_proxy_pool_reap(struct em_proxy_worker *w)
{
	while (w->up_dead) {
		struct em_proxy_upconn *u = w->up_dead;
		w->up_dead = u->next;
		free(u);
	}
}
