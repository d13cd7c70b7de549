/* round_robin.c — "round-robin": an atomic ticket per pick, backend
 * ticket % n, skipping the backend to avoid and backends in passive-health
 * back-off. Lock-free: concurrent workers each take a distinct ticket, so over
 * any window every backend gets within one pick of its share. Weights are
 * ignored (weighted round robin is a separate strategy). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "lb/health.h"
#include "lb/lb.h"

struct rr {
	size_t n;
	_Atomic uint64_t ticket;
	struct em_lb_health health[];
};

static void *rr_create(const struct em_balancer_port *port,
		       const struct em_balancer_params *params)
{
	struct rr *rr = calloc(1, sizeof(*rr) + port->n_backends * sizeof(rr->health[0]));

	(void)params;
	if (!rr)
		return NULL;
	rr->n = port->n_backends;
	return rr;
}

static int rr_pick(void *instance, const struct em_balancer_request *req)
{
	struct rr *rr = instance;
	uint64_t now, start;

	if (rr->n == 0)
		return -1;
	start = atomic_fetch_add_explicit(&rr->ticket, 1, memory_order_relaxed);
	if (rr->n == 1)
		return req->avoid == 0 ? -1 : 0;
	now = em_lb_now_ns();
	for (size_t i = 0; i < rr->n; i++) {
		int idx = (int)((start + i) % rr->n);
		if (idx != req->avoid && em_lb_health_usable(&rr->health[idx], now))
			return idx;
	}
	/* Every other backend is backing off: better to try one anyway than
	 * to fail the request outright (nginx does the same when all peers
	 * are down). */
	int idx = (int)(start % rr->n);
	return idx == req->avoid ? (int)((start + 1) % rr->n) : idx;
}

static void rr_release(void *instance, int index, const struct em_balancer_result *res)
{
	struct rr *rr = instance;
	enum em_balancer_outcome outcome = res->outcome;

	if (index >= 0 && (size_t)index < rr->n)
		em_lb_health_report(&rr->health[index], outcome);
}

static void rr_destroy(void *instance)
{
	free(instance);
}

const struct em_balancer_ops em_lb_round_robin_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.name = "round-robin",
	.size = sizeof(struct em_balancer_ops),
	.create = rr_create,
	.pick = rr_pick,
	.release = rr_release,
	.destroy = rr_destroy,
};
