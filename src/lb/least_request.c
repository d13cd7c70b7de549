/* least_request.c — "least-request": power of two choices over the
 * requests in flight, weighted by a peak EWMA of latency, as
 * linkerd2-proxy balances by default (tower's PeakEwma). Two distinct
 * usable backends are drawn at random and the cheaper one wins, where
 *
 *   cost = latency_ewma x (in_flight + 1) / weight
 *
 * The EWMA (kept by the core from ABI v2's latency_us) jumps up to a slower
 * sample at once and decays towards faster ones, so a backend that turns
 * slow is avoided quickly and earns its way back gradually. A backend
 * without a sample costs the default RTT. O(1) per pick: it scales to any
 * number of backends, and two random choices give exponentially better
 * balance than one (Mitzenmacher). */
#include "lb/lb.h"
#include "lb/peers.h"

/* A random usable backend other than `avoid` and `other`, or -1: a few
 * draws, then a scan from a random start (few usable backends left). */
static int draw(const struct em_lb_pick *pk, int avoid, int other)
{
	const struct em_lb_core *c = pk->core;
	size_t start;

	for (int tries = 0; tries < 4; tries++) {
		size_t i = (size_t)(em_lb_random() % c->n);

		if ((int)i != avoid && (int)i != other && em_lb_core_usable(c, i, pk->now))
			return (int)i;
	}
	start = (size_t)(em_lb_random() % c->n);
	for (size_t k = 0; k < c->n; k++) {
		size_t i = (start + k) % c->n;

		if ((int)i != avoid && (int)i != other && em_lb_core_usable(c, i, pk->now))
			return (int)i;
	}
	return -1;
}

static double cost(const struct em_lb_pick *pk, int i)
{
	const struct em_lb_core *c = pk->core;

	return (double)em_lb_core_latency_ns(c, (size_t)i, pk->now) *
	       (double)(em_lb_core_in_flight(c, (size_t)i) + 1) / (double)c->weight[i];
}

static int lr_pick(void *instance, const struct em_balancer_request *req)
{
	const struct em_lb_pick *pk = em_lb_pick_of(req);
	double ca, cb;
	int a, b;

	(void)instance;
	if (pk->core->n == 0)
		return -1;
	a = draw(pk, req->avoid, -1);
	if (a < 0)
		return -1;
	b = draw(pk, req->avoid, a);
	if (b < 0)
		return a;
	ca = cost(pk, a);
	cb = cost(pk, b);
	if (ca == cb)
		return em_lb_random() & 1 ? a : b;
	return ca < cb ? a : b;
}

const struct em_balancer_ops em_lb_least_request_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.size = sizeof(struct em_balancer_ops),
	.name = "least-request",
	.pick = lr_pick,
};
