/* random.c — "random": a backend drawn with probability proportional to
 * its weight. The cumulative weights are fixed for the instance (the
 * backend list never changes under it), so a draw is a binary search; a
 * draw that lands on an ejected or avoided backend is redrawn a few times,
 * then the draw is made over the usable backends only, in O(n). */
#include <stdint.h>
#include <stdlib.h>

#include "lb/lb.h"
#include "lb/peers.h"

struct rnd {
	size_t n;
	uint64_t total;
	uint64_t cum[];		/* cum[i] = weight[0] + ... + weight[i] */
};

static void *rnd_create(const struct em_balancer_port *port,
			const struct em_balancer_params *params)
{
	struct rnd *r = calloc(1, sizeof(*r) + (port->n_backends + 1) * sizeof(r->cum[0]));

	(void)params;
	if (!r)
		return NULL;
	r->n = port->n_backends;
	for (size_t i = 0; i < r->n; i++) {
		r->total += port->backends[i].weight ? port->backends[i].weight : 1;
		r->cum[i] = r->total;
	}
	return r;
}

static size_t draw(const struct rnd *r)
{
	uint64_t x = em_lb_random() % r->total;
	size_t lo = 0, hi = r->n - 1;

	while (lo < hi) {	/* first i with cum[i] > x */
		size_t mid = lo + (hi - lo) / 2;

		if (r->cum[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static int rnd_pick(void *instance, const struct em_balancer_request *req)
{
	const struct em_lb_pick *pk = em_lb_pick_of(req);
	const struct em_lb_core *c = pk->core;
	struct rnd *r = instance;
	uint64_t sum = 0, x;

	if (r->n == 0)
		return -1;
	for (int tries = 0; tries < 4; tries++) {
		size_t i = draw(r);

		if ((int)i != req->avoid && em_lb_core_usable(c, i, pk->now))
			return (int)i;
	}
	for (size_t i = 0; i < r->n; i++)
		if ((int)i != req->avoid && em_lb_core_usable(c, i, pk->now))
			sum += c->weight[i];
	if (!sum)
		return -1;
	x = em_lb_random() % sum;
	for (size_t i = 0; i < r->n; i++) {
		if ((int)i == req->avoid || !em_lb_core_usable(c, i, pk->now))
			continue;
		if (x < c->weight[i])
			return (int)i;
		x -= c->weight[i];
	}
	return -1;
}

static void rnd_destroy(void *instance)
{
	free(instance);
}

const struct em_balancer_ops em_lb_random_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.size = sizeof(struct em_balancer_ops),
	.name = "random",
	.create = rnd_create,
	.pick = rnd_pick,
	.destroy = rnd_destroy,
};
