/* timer.c — a binary min-heap of deadlines per worker (connect and idle
 * timeouts). O(log n) arm/cancel; each timer records its heap index so a
 * connection can cancel its own in place.
 *
 * Timeouts are mostly pushed later, once or twice per request (response
 * timeout, then keep-alive idle), and hardly ever fire. So a later deadline
 * is only written down (deadline_ms); the heap keeps the old key_ms and the
 * timer is moved when that key comes up. A pooled upstream connection taken
 * for a request is disarmed the same way. The heap operations per
 * keep-alive request went from about six to one (an earlier response
 * timeout than the keep-alive deadline before it). */
#include <errno.h>
#include <stdlib.h>

#include "proxy/worker.h"

void em_proxy_timer_init(struct em_proxy_timer *t, em_proxy_timer_fn fn)
{
	t->deadline_ms = t->key_ms = 0;
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
		if (h->v[parent]->key_ms <= t->key_ms)
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
		if (child + 1 < h->n && h->v[child + 1]->key_ms < h->v[child]->key_ms)
			child++;
		if (t->key_ms <= h->v[child]->key_ms)
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

void em_proxy_timer_disarm(struct em_proxy_timer *t)
{
	t->deadline_ms = UINT64_MAX;
}

int em_proxy_timer_arm(struct em_proxy_timer_heap *h, struct em_proxy_timer *t,
		       uint64_t deadline_ms)
{
	if (t->heap_idx != SIZE_MAX) {
		t->deadline_ms = deadline_ms;
		if (deadline_ms < t->key_ms) {
			t->key_ms = deadline_ms;
			sift_up(h, t->heap_idx);
		}
		return 0;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct em_proxy_timer **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->deadline_ms = t->key_ms = deadline_ms;
	place(h, h->n++, t);
	sift_up(h, h->n - 1);
	return 0;
}

int em_proxy_timer_next(const struct em_proxy_timer_heap *h, uint64_t now_ms)
{
	uint64_t d;

	if (h->n == 0)
		return -1;
	d = h->v[0]->key_ms;	/* maybe early: the run re-places it then */
	if (d <= now_ms)
		return 0;
	return d - now_ms > 60000 ? 60000 : (int)(d - now_ms);
}

void em_proxy_timer_run(struct em_proxy_worker *w)
{
	struct em_proxy_timer_heap *h = &w->timers;

	while (h->n && h->v[0]->key_ms <= w->now_ms) {
		struct em_proxy_timer *t = h->v[0];

		if (t->deadline_ms == UINT64_MAX) {
			em_proxy_timer_cancel(h, t);	/* disarmed */
		} else if (t->deadline_ms != t->key_ms) {
			t->key_ms = t->deadline_ms;	/* pushed later: re-place it */
			sift_down(h, 0);
		} else {
			em_proxy_timer_cancel(h, t);
			t->fn(w, t);
		}
	}
}

void em_proxy_timer_heap_free(struct em_proxy_timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
