/* random.c — "random": a uniformly random backend, skipping the one to avoid
 * and those in passive-health back-off. The generator is a per-thread
 * xorshift seeded from the thread's stack address and the clock: no shared
 * state between workers, and quality is irrelevant here. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "lb/health.h"
#include "lb/lb.h"

struct rnd {
	size_t n;
	struct em_lb_health health[];
};

static _Thread_local uint64_t rng_state;

static uint64_t next_random(void)
{
	uint64_t x = rng_state;

	if (x == 0)
		x = em_lb_now_ns() ^ (uint64_t)(uintptr_t)&x ^ 0x9e3779b97f4a7c15ULL;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static void *rnd_create(const struct em_balancer_port *port,
			const struct em_balancer_params *params)
{
	struct rnd *r = calloc(1, sizeof(*r) + port->n_backends * sizeof(r->health[0]));

	(void)params;
	if (r)
		r->n = port->n_backends;
	return r;
}

static int rnd_pick(void *instance, const struct em_balancer_request *req)
{
	struct rnd *r = instance;
	uint64_t now = em_lb_now_ns();
	size_t start;

	if (r->n == 0 || (r->n == 1 && req->avoid == 0))
		return -1;
	/* Draw among the backends other than the one to avoid, so a retry
	 * does not hand the avoided backend's share to its neighbour. */
	if (req->avoid >= 0 && (size_t)req->avoid < r->n) {
		start = (size_t)(next_random() % (r->n - 1));
		if (start >= (size_t)req->avoid)
			start++;
	} else {
		start = (size_t)(next_random() % r->n);
	}
	if (em_lb_health_usable(&r->health[start], now))
		return (int)start;
	/* Some are backing off: the next usable one in O(n). */
	for (size_t i = 0; i < r->n; i++) {
		int idx = (int)((start + i) % r->n);
		if (idx != req->avoid && em_lb_health_usable(&r->health[idx], now))
			return idx;
	}
	return (int)start == req->avoid ? (int)((start + 1) % r->n) : (int)start;
}

static void rnd_release(void *instance, int index, const struct em_balancer_result *res)
{
	struct rnd *r = instance;
	enum em_balancer_outcome outcome = res->outcome;

	if (index >= 0 && (size_t)index < r->n)
		em_lb_health_report(&r->health[index], outcome);
}

static void rnd_destroy(void *instance)
{
	free(instance);
}

const struct em_balancer_ops em_lb_random_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.name = "random",
	.create = rnd_create,
	.pick = rnd_pick,
	.release = rnd_release,
	.destroy = rnd_destroy,
};
