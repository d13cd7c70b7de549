/* round_robin.c — "round-robin", the default: nginx's smooth weighted
 * round robin. Each pick adds every usable backend's weight to its current
 * value, takes the largest, and subtracts the total from it: weights 5,1,1
 * give a a b a c a a, spread out rather than in bursts.
 *
 * The current values live in the shared peers (the core carries them
 * across backend list changes) and change together on every pick, so the
 * pick runs under the service port's pick lock: O(n) per pick, like nginx. */
#include <pthread.h>

#include "lb/lb.h"
#include "lb/peers.h"

static int rr_pick(void *instance, const struct em_balancer_request *req)
{
	const struct em_lb_pick *pk = em_lb_pick_of(req);
	struct em_lb_core *c = pk->core;
	struct em_lb_peer *best = NULL;
	int64_t total = 0;
	int idx = -1;

	(void)instance;
	pthread_mutex_lock(&c->svc->pick_lock);
	for (size_t i = 0; i < c->n; i++) {
		struct em_lb_peer *p = c->peer[i];

		if ((int)i == req->avoid || !em_lb_core_usable(c, i, pk->now))
			continue;
		p->swrr_current += c->weight[i];
		total += c->weight[i];
		if (!best || p->swrr_current > best->swrr_current) {
			best = p;
			idx = (int)i;
		}
	}
	if (best)
		best->swrr_current -= total;
	pthread_mutex_unlock(&c->svc->pick_lock);
	return idx;
}

const struct em_balancer_ops em_lb_round_robin_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.size = sizeof(struct em_balancer_ops),
	.name = "round-robin",
	.pick = rr_pick,
};
