/* least_conn.c — "least-conn": the usable backend with the fewest attempts
 * in flight (picked and not yet released), ties broken round robin from an
 * atomic ticket so equal backends share the load. Counts are per instance:
 * connections routed with an older snapshot count against the old instance
 * only, which is fine because a new backend list starts from zero anyway.
 * Weights scale the count (active / weight), as in nginx. */
#include <stdatomic.h>
#include <stdlib.h>

#include "lb/health.h"
#include "lb/lb.h"

struct lc_backend {
	_Atomic uint32_t active;
	uint32_t weight;
	struct em_lb_health health;
};

struct lc {
	size_t n;
	_Atomic uint64_t ticket;
	struct lc_backend b[];
};

static void *lc_create(const struct em_balancer_port *port,
		       const struct em_balancer_params *params)
{
	struct lc *lc = calloc(1, sizeof(*lc) + port->n_backends * sizeof(lc->b[0]));

	(void)params;
	if (!lc)
		return NULL;
	lc->n = port->n_backends;
	for (size_t i = 0; i < lc->n; i++)
		lc->b[i].weight = port->backends[i].weight ? port->backends[i].weight : 1;
	return lc;
}

static int lc_pick(void *instance, const struct em_balancer_request *req)
{
	struct lc *lc = instance;
	uint64_t now = em_lb_now_ns(), best_load = UINT64_MAX, start;
	int best = -1, fallback = -1;

	if (lc->n == 0)
		return -1;
	start = atomic_fetch_add_explicit(&lc->ticket, 1, memory_order_relaxed);
	for (size_t i = 0; i < lc->n; i++) {
		int idx = (int)((start + i) % lc->n);
		struct lc_backend *b = &lc->b[idx];
		uint64_t load;

		if (idx == req->avoid)
			continue;
		if (fallback < 0)
			fallback = idx;
		if (!em_lb_health_usable(&b->health, now))
			continue;
		/* Compare active/weight without division. */
		load = ((uint64_t)atomic_load_explicit(&b->active, memory_order_relaxed) << 16) /
		       b->weight;
		if (load < best_load) {
			best_load = load;
			best = idx;
		}
	}
	if (best < 0)
		best = fallback;	/* all backing off: try one anyway */
	if (best >= 0)
		atomic_fetch_add_explicit(&lc->b[best].active, 1, memory_order_relaxed);
	return best;
}

static void lc_release(void *instance, int index, const struct em_balancer_result *res)
{
	struct lc *lc = instance;
	enum em_balancer_outcome outcome = res->outcome;

	if (index < 0 || (size_t)index >= lc->n)
		return;
	atomic_fetch_sub_explicit(&lc->b[index].active, 1, memory_order_relaxed);
	em_lb_health_report(&lc->b[index].health, outcome);
}

static void lc_destroy(void *instance)
{
	free(instance);
}

const struct em_balancer_ops em_lb_least_conn_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.name = "least-conn",
	.create = lc_create,
	.pick = lc_pick,
	.release = lc_release,
	.destroy = lc_destroy,
};
