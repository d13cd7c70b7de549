/* test-lb-common.h — fixtures shared by the balancer test files: a service
 * with one port and up to LB_MAXB backends (10.0.0.1:8080 ...), snapshot
 * commits through the hooks, and a chi-square helper. Static functions:
 * each test file gets its own copy. */
#ifndef EM_TEST_LB_COMMON_H
#define EM_TEST_LB_COMMON_H

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "lb/lb.h"
#include "lb/peers.h"

#define LB_MAXB 64

struct fixture {
	struct em_service svc;
	struct em_service_port port;
	struct em_backend backends[LB_MAXB];
};

/* Backend i is 10.0.0.(first + i):8080, weight 1. */
static inline void fixture_init_from(struct fixture *f, size_t n, unsigned first,
				     const char *strategy, const char *affinity)
{
	memset(f, 0, sizeof(*f));
	f->svc.ns = "default";
	f->svc.name = "svc";
	f->svc.session_affinity = affinity;
	f->svc.affinity_timeout_s = 10800;
	f->svc.lb_strategy = strategy;
	f->svc.ports = &f->port;
	f->svc.n_ports = 1;
	for (size_t i = 0; i < n; i++) {
		f->backends[i].family = AF_INET;
		f->backends[i].ip.v4.s_addr = htonl(0x0a000000 + first + (uint32_t)i);
		f->backends[i].port = 8080;
		f->backends[i].weight = 1;
		f->backends[i].pod = "default/pod";
	}
	f->port.name = "tcp";
	f->port.port = 80;
	f->port.ipproto = IPPROTO_TCP;
	f->port.backends = f->backends;
	f->port.n_backends = n;
	f->port.service = &f->svc;
}

static inline void fixture_init(struct fixture *f, size_t n, const char *strategy,
				const char *affinity)
{
	fixture_init_from(f, n, 1, strategy, affinity);
}

/* A balancer with state of its own. */
static inline struct em_lb_port *new_port(struct fixture *f, const char *strategy, size_t n)
{
	struct em_lb_port *lp;

	fixture_init(f, n, NULL, "None");
	lp = em_lb_port_new(em_lb_find(strategy), &f->port, NULL);
	ck_assert_ptr_nonnull(lp);
	return lp;
}

static inline struct em_lb_port *new_port_args(struct fixture *f, const char *strategy,
					       const char *args)
{
	struct em_balancer_params params = { .size = sizeof(params), .args = args };
	struct em_lb_port *lp = em_lb_port_new(em_lb_find(strategy), &f->port, &params);

	ck_assert_ptr_nonnull(lp);
	return lp;
}

static inline struct sockaddr_in client_addr(uint32_t host)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(40000) };

	sin.sin_addr.s_addr = htonl(0x0b000000 + host);
	return sin;
}

static inline int pick_client(struct em_lb_port *lp, uint32_t host, int avoid)
{
	struct sockaddr_in c = client_addr(host);

	return em_lb_port_pick(lp, (struct sockaddr *)&c, sizeof(c), avoid, avoid < 0 ? 0 : 1);
}

/* Pick and release at once (OK). */
static inline int pick_once(struct em_lb_port *lp)
{
	int idx = em_lb_port_pick(lp, NULL, 0, -1, 0);

	if (idx >= 0)
		em_lb_port_release(lp, idx, EM_BALANCER_OK);
	return idx;
}

static inline void fail_n(struct em_lb_port *lp, int idx, int n,
			  enum em_balancer_outcome outcome)
{
	for (int i = 0; i < n; i++) {
		struct em_balancer_result res = { .outcome = outcome };

		em_lb_port_release_result(lp, idx, &res);
	}
}

static inline struct em_balancer_peer_state peer_state(struct em_lb_port *lp, int idx)
{
	struct em_balancer_peer_state st = { .size = sizeof(st) };

	ck_assert_int_eq(em_lb_port_peer_state(lp, idx, &st), 0);
	return st;
}

static inline bool ejected(struct em_lb_port *lp, int idx)
{
	return peer_state(lp, idx).flags & EM_BALANCER_PEER_EJECTED;
}

/* Pearson's statistic of counts obs[k] against probabilities p[k]. */
static inline double chi2(const int *obs, const double *p, int k)
{
	double total = 0, x = 0;

	for (int i = 0; i < k; i++)
		total += obs[i];
	for (int i = 0; i < k; i++) {
		double e = total * p[i];
		x += (obs[i] - e) * (obs[i] - e) / e;
	}
	return x;
}

/* Critical values at p = 0.0001 by degrees of freedom (1..9): a correct
 * strategy fails a test once in 10,000 runs. */
static inline double chi2_crit(int df)
{
	static const double crit[] = { 0, 15.14, 18.42, 21.11, 23.51, 25.74, 27.86,
				       29.88, 31.83, 33.72 };

	ck_assert_int_ge(df, 1);
	ck_assert_int_le(df, 9);
	return crit[df];
}

/* Probabilities proportional to weights w[0..k). */
static inline void weights_to_p(const uint32_t *w, int k, double *p)
{
	double total = 0;

	for (int i = 0; i < k; i++)
		total += w[i];
	for (int i = 0; i < k; i++)
		p[i] = w[i] / total;
}

/* Commit the next snapshot: init `next` (the new port), then finish
 * `prev` (the old snapshot's, after the grace period). */
static inline void commit(struct em_snapshot_hooks *hooks, struct fixture *prev,
			  struct fixture *next)
{
	ck_assert_int_eq(hooks->port_init(hooks->ctx, &next->port), 0);
	if (prev)
		hooks->port_fini(hooks->ctx, &prev->port);
}

#endif
