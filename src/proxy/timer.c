/* timer.c — a binary min-heap of deadlines per worker (connect and idle
 * timeouts). O(log n) arm/cancel; each timer records its heap index so a
 * connection can cancel its own in place. */
#include <errno.h>
#include <stdlib.h>

#include "proxy/worker.h"

void em_proxy_timer_init(struct em_proxy_timer *t, em_proxy_timer_fn fn)
{
	t->deadline_ms = 0;
	t->heap_idx = SIZE_MAX;
	t->fn = fn;
}

static void place(struct em_proxy_timer_heap *h, size_t i, struct em_proxy_timer *t)
{
	h->v[i] = t;
	t->heap_idx = i;
}

static void sift_up(struct em_proxy_timer_heap *h, size_t i)
{
	struct em_proxy_timer *t = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->deadline_ms <= t->deadline_ms)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct em_proxy_timer_heap *h, size_t i)
{
	struct em_proxy_timer *t = h->v[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1]->deadline_ms < h->v[child]->deadline_ms)
			child++;
		if (t->deadline_ms <= h->v[child]->deadline_ms)
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, t);
}

void em_proxy_timer_cancel(struct em_proxy_timer_heap *h, struct em_proxy_timer *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	if (--h->n == i)
		return;
	struct em_proxy_timer *moved = h->v[h->n];
	place(h, i, moved);
	sift_down(h, i);
	sift_up(h, moved->heap_idx);
}

int em_proxy_timer_arm(struct em_proxy_timer_heap *h, struct em_proxy_timer *t,
		       uint64_t deadline_ms)
{
	em_proxy_timer_cancel(h, t);
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct em_proxy_timer **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->deadline_ms = deadline_ms;
	place(h, h->n++, t);
	sift_up(h, h->n - 1);
	return 0;
}

int em_proxy_timer_next(const struct em_proxy_timer_heap *h, uint64_t now_ms)
{
	uint64_t d;

	if (h->n == 0)
		return -1;
	d = h->v[0]->deadline_ms;
	if (d <= now_ms)
		return 0;
	return d - now_ms > 60000 ? 60000 : (int)(d - now_ms);
}

void em_proxy_timer_run(struct em_proxy_worker *w)
{
	struct em_proxy_timer_heap *h = &w->timers;

	while (h->n && h->v[0]->deadline_ms <= w->now_ms) {
		struct em_proxy_timer *t = h->v[0];

		em_proxy_timer_cancel(h, t);
		t->fn(w, t);
	}
}

void em_proxy_timer_heap_free(struct em_proxy_timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
