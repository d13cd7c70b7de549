/* least_conn.c — "least-conn": the usable backend with the fewest attempts
 * in flight for its weight (in_flight / weight, compared by cross
 * multiplication as nginx does). Ties are broken by a weighted draw among
 * the tied backends, so idle backends share new work by weight. The
 * in-flight counts are the core's: every balancer of the service port,
 * old ones finishing their connections included, counts in them. */
#include "lb/lb.h"
#include "lb/peers.h"

static int lc_pick(void *instance, const struct em_balancer_request *req)
{
	const struct em_lb_pick *pk = em_lb_pick_of(req);
	const struct em_lb_core *c = pk->core;
	uint64_t best_conns = 0, best_weight = 1, tied = 0;
	/* One draw per pick seeds a local LCG for the ties: a draw per tied
	 * backend would cost more than the scan at 1000 idle backends. */
	uint64_t lcg = em_lb_random() | 1;
	int best = -1;

	(void)instance;
	for (size_t i = 0; i < c->n; i++) {
		uint64_t conns, w = c->weight[i];

		if ((int)i == req->avoid || !em_lb_core_usable(c, i, pk->now))
			continue;
		conns = em_lb_core_in_flight(c, i);
		if (best < 0 || conns * best_weight < best_conns * w) {
			best = (int)i;
			best_conns = conns;
			best_weight = w;
			tied = w;
		} else if (conns * best_weight == best_conns * w) {
			/* Weighted reservoir: i replaces the choice with
			 * probability w / (weight of all ties so far). */
			tied += w;
			lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
			if ((((lcg >> 32) * tied) >> 32) < w) {	/* uniform in [0, tied) */
				best = (int)i;
				best_conns = conns;
				best_weight = w;
			}
		}
	}
	return best;
}

const struct em_balancer_ops em_lb_least_conn_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.size = sizeof(struct em_balancer_ops),
	.name = "least-conn",
	.pick = lc_pick,
};
