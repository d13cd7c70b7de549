/* test-lb-strategies.c — what each built-in strategy does with its picks:
 * distributions with chi-square bounds (weights included) rather than exact
 * sequences where the strategy is random, exact sequences where it is not.
 * One test case per behaviour. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#include "suites.h"
#include "test-lb-common.h"
#include "testlog.h"

/* ---- round-robin: smooth weighted ----------------------------------------- */

/* nginx's example: weights 5, 1, 1 give a a b a c a a, again and again. */
START_TEST(test_rr_smooth_sequence)
{
	static const int expect[7] = { 0, 0, 1, 0, 2, 0, 0 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[3] = { 0 };

	fixture_init(&f, 3, NULL, "None");
	f.backends[0].weight = 5;
	lp = em_lb_port_new(&em_lb_round_robin_ops, &f.port, NULL);
	ck_assert_ptr_nonnull(lp);
	for (int round = 0; round < 100; round++)
		for (int i = 0; i < 7; i++) {
			int idx = pick_once(lp);
			ck_assert_int_eq(idx, expect[i]);
			count[idx]++;
		}
	ck_assert_int_eq(count[0], 500);
	ck_assert_int_eq(count[1], 100);
	ck_assert_int_eq(count[2], 100);
	em_lb_port_put(lp);
}
END_TEST

START_TEST(test_rr_equal_alternates)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "round-robin", 3);
	int count[3] = { 0 }, prev = -1;

	for (int i = 0; i < 3000; i++) {
		int idx = pick_once(lp);
		ck_assert_int_ge(idx, 0);
		ck_assert_int_ne(idx, prev);	/* strictly alternates */
		prev = idx;
		count[idx]++;
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(count[i], 1000);
	em_lb_port_put(lp);
}
END_TEST

/* Weights 1..4 over many picks: exact shares (smooth WRR is deterministic). */
START_TEST(test_rr_weighted_shares)
{
	static const uint32_t w[4] = { 1, 2, 3, 4 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[4] = { 0 };

	fixture_init(&f, 4, NULL, "None");
	for (int i = 0; i < 4; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_round_robin_ops, &f.port, NULL);
	for (int i = 0; i < 10000; i++)
		count[pick_once(lp)]++;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(count[i], 1000 * (int)w[i]);
	em_lb_port_put(lp);
}
END_TEST

START_TEST(test_rr_avoid)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "round-robin", 3);

	for (int i = 0; i < 100; i++) {
		int idx = em_lb_port_pick(lp, NULL, 0, 1, 1);
		ck_assert_int_ne(idx, 1);
		ck_assert_int_ge(idx, 0);
		em_lb_port_release(lp, idx, EM_BALANCER_OK);
	}
	em_lb_port_put(lp);
	/* One backend that is to be avoided: nothing left. */
	lp = new_port(&f, "round-robin", 1);
	ck_assert_int_eq(em_lb_port_pick(lp, NULL, 0, 0, 1), -1);
	ck_assert_int_eq(pick_once(lp), 0);
	em_lb_port_put(lp);
}
END_TEST

#define RR_THREADS 4
#define RR_PICKS 30000

struct rr_thread_arg {
	struct em_lb_port *lp;
	_Atomic int *count;
};

static void *rr_thread(void *p)
{
	struct rr_thread_arg *a = p;

	for (int i = 0; i < RR_PICKS; i++) {
		int idx = em_lb_port_pick(a->lp, NULL, 0, -1, 0);
		if (idx >= 0) {
			atomic_fetch_add(&a->count[idx], 1);
			em_lb_port_release(a->lp, idx, EM_BALANCER_OK);
		}
	}
	return NULL;
}

/* Concurrent workers: the pick lock keeps the split exact, and in-flight
 * counts come back to zero. */
START_TEST(test_rr_concurrent)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "round-robin", 3);
	_Atomic int count[3] = { 0 };
	struct rr_thread_arg arg = { lp, count };
	pthread_t th[RR_THREADS];

	for (int i = 0; i < RR_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, rr_thread, &arg), 0);
	for (int i = 0; i < RR_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(count[i], RR_THREADS * RR_PICKS / 3);
		ck_assert_uint_eq(peer_state(lp, i).in_flight, 0);
	}
	em_lb_port_put(lp);
}
END_TEST

/* ---- random: weighted ------------------------------------------------------ */

START_TEST(test_random_weighted_chi2)
{
	static const uint32_t w[4] = { 1, 2, 3, 4 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[4] = { 0 };
	double p[4], uniform[4] = { 0.25, 0.25, 0.25, 0.25 };

	fixture_init(&f, 4, NULL, "None");
	for (int i = 0; i < 4; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_random_ops, &f.port, NULL);
	for (int i = 0; i < 20000; i++)
		count[pick_once(lp)]++;
	weights_to_p(w, 4, p);
	ck_assert_double_lt(chi2(count, p, 4), chi2_crit(3));
	/* The same counts are far from uniform: the test can tell. */
	ck_assert_double_gt(chi2(count, uniform, 4), 10 * chi2_crit(3));
	em_lb_port_put(lp);
}
END_TEST

START_TEST(test_random_avoid_spread)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "random", 4);
	int count[4] = { 0 }, rest[3];
	double p[3] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 };

	for (int i = 0; i < 6000; i++) {
		int idx = em_lb_port_pick(lp, NULL, 0, 2, 1);
		ck_assert_int_ne(idx, 2);
		ck_assert_int_ge(idx, 0);
		count[idx]++;
		em_lb_port_release(lp, idx, EM_BALANCER_OK);
	}
	rest[0] = count[0], rest[1] = count[1], rest[2] = count[3];
	ck_assert_double_lt(chi2(rest, p, 3), chi2_crit(2));
	em_lb_port_put(lp);
}
END_TEST

/* ---- least-conn: weighted -------------------------------------------------- */

START_TEST(test_least_conn_prefers_idle)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "least-conn", 2);
	int a = em_lb_port_pick(lp, NULL, 0, -1, 0);
	int b = em_lb_port_pick(lp, NULL, 0, -1, 0);
	int c;

	ck_assert_int_ne(a, b);		/* both busy once */
	em_lb_port_release(lp, a, EM_BALANCER_OK);
	c = em_lb_port_pick(lp, NULL, 0, -1, 0);
	ck_assert_int_eq(c, a);		/* a is the idle one now */
	em_lb_port_release(lp, b, EM_BALANCER_OK);
	em_lb_port_release(lp, c, EM_BALANCER_OK);
	em_lb_port_put(lp);
}
END_TEST

/* Connections held open: in flight ends up proportional to the weights. */
START_TEST(test_least_conn_weighted_load)
{
	static const uint32_t w[3] = { 1, 2, 3 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[3] = { 0 };

	fixture_init(&f, 3, NULL, "None");
	for (int i = 0; i < 3; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_least_conn_ops, &f.port, NULL);
	for (int i = 0; i < 600; i++)
		count[em_lb_port_pick(lp, NULL, 0, -1, 0)]++;
	for (int i = 0; i < 3; i++) {
		ck_assert_int_ge(count[i], 100 * (int)w[i] - 1);
		ck_assert_int_le(count[i], 100 * (int)w[i] + 1);
		ck_assert_uint_eq(peer_state(lp, i).in_flight, (unsigned)count[i]);
	}
	for (int i = 0; i < 3; i++)
		fail_n(lp, i, count[i], EM_BALANCER_OK);
	ck_assert_uint_eq(peer_state(lp, 0).in_flight, 0);
	em_lb_port_put(lp);
}
END_TEST

/* Every backend idle at each pick: ties are drawn by weight. */
START_TEST(test_least_conn_ties_weighted_chi2)
{
	static const uint32_t w[3] = { 1, 1, 4 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[3] = { 0 };
	double p[3];

	fixture_init(&f, 3, NULL, "None");
	for (int i = 0; i < 3; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_least_conn_ops, &f.port, NULL);
	for (int i = 0; i < 12000; i++)
		count[pick_once(lp)]++;
	weights_to_p(w, 3, p);
	ck_assert_double_lt(chi2(count, p, 3), chi2_crit(2));
	em_lb_port_put(lp);
}
END_TEST

/* ---- least-request: P2C over in flight x peak EWMA latency ----------------- */

static void release_latency(struct em_lb_port *lp, int idx, uint64_t us)
{
	struct em_balancer_result res = { .outcome = EM_BALANCER_OK, .latency_us = us };

	em_lb_port_release_result(lp, idx, &res);
}

/* A slow backend loses every draw it is in: two distinct candidates, and
 * one of them is always faster. */
START_TEST(test_least_request_avoids_slow)
{
	struct fixture f;
	struct em_lb_port *lp;
	int count[3] = { 0 }, pair[2];
	double half[2] = { 0.5, 0.5 };

	/* Without a sample a backend costs 1 ms here, as fast as the fast
	 * ones: backend 0 gets picked until its first answer is seen. */
	fixture_init(&f, 3, NULL, "None");
	lp = new_port_args(&f, "least-request", "rtt=1ms");
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(peer_state(lp, i).latency_ewma_us, 0);	/* no sample yet */
	/* Backend 0 answers in 50 ms, the others in 1 ms. */
	for (int i = 0; i < 9000; i++) {
		int idx = em_lb_port_pick(lp, NULL, 0, -1, 0);
		count[idx]++;
		release_latency(lp, idx, idx == 0 ? 50000 : 1000);
	}
	/* Before its first sample backend 0 may win a few draws (ties); after
	 * it, none. Ignoring latency it would get a third. */
	ck_assert_int_le(count[0], 5);
	pair[0] = count[1], pair[1] = count[2];
	ck_assert_double_lt(chi2(pair, half, 2), chi2_crit(1));
	if (count[0])
		ck_assert_uint_ge(peer_state(lp, 0).latency_ewma_us, 40000);
	ck_assert_uint_le(peer_state(lp, 1).latency_ewma_us, 1000);
	ck_assert_uint_gt(peer_state(lp, 1).latency_ewma_us, 0);
	em_lb_port_put(lp);
}
END_TEST

/* The peak EWMA takes a slower sample at once and forgets it over the
 * decay time. */
START_TEST(test_least_request_peak_ewma_decays)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "least-request", 1);
	int idx = em_lb_port_pick(lp, NULL, 0, -1, 0);

	release_latency(lp, idx, 1000);
	idx = em_lb_port_pick(lp, NULL, 0, -1, 0);
	release_latency(lp, idx, 80000);		/* a spike: taken at once */
	ck_assert_uint_ge(peer_state(lp, 0).latency_ewma_us, 79000);
	em_lb_test_advance_clock(30ULL * 1000000000ULL);	/* 3 decay times */
	ck_assert_uint_le(peer_state(lp, 0).latency_ewma_us, 80000 / 10);
	em_lb_test_reset_clock();
	em_lb_port_put(lp);
}
END_TEST

/* Held requests, equal latency: in flight spreads by weight. */
START_TEST(test_least_request_weighted_load)
{
	static const uint32_t w[3] = { 1, 1, 2 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[3] = { 0 };

	fixture_init(&f, 3, NULL, "None");
	for (int i = 0; i < 3; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_least_request_ops, &f.port, NULL);
	for (int i = 0; i < 400; i++)
		count[em_lb_port_pick(lp, NULL, 0, -1, 0)]++;
	for (int i = 0; i < 3; i++) {
		ck_assert_int_ge(count[i], 100 * (int)w[i] - 10);
		ck_assert_int_le(count[i], 100 * (int)w[i] + 10);
	}
	for (int i = 0; i < 3; i++)
		fail_n(lp, i, count[i], EM_BALANCER_OK);
	em_lb_port_put(lp);
}
END_TEST

/* ---- consistent-hash: Maglev ------------------------------------------------ */

/* Sticky per client, a retry goes elsewhere, keys spread by weight. */
START_TEST(test_chash_sticky_weighted_chi2)
{
	static const uint32_t w[4] = { 1, 1, 2, 4 };
	struct fixture f;
	struct em_lb_port *lp;
	int count[4] = { 0 };
	double p[4];

	fixture_init(&f, 4, NULL, "None");
	for (int i = 0; i < 4; i++)
		f.backends[i].weight = w[i];
	lp = em_lb_port_new(&em_lb_consistent_hash_ops, &f.port, NULL);
	for (uint32_t h = 0; h < 8000; h++) {
		int x = pick_client(lp, h, -1), y, r;

		em_lb_port_release(lp, x, EM_BALANCER_OK);
		y = pick_client(lp, h, -1);
		em_lb_port_release(lp, y, EM_BALANCER_OK);
		r = pick_client(lp, h, x);
		em_lb_port_release(lp, r, EM_BALANCER_OK);
		ck_assert_int_eq(x, y);
		ck_assert_int_ne(r, x);
		count[x]++;
	}
	weights_to_p(w, 4, p);
	/* Keys over a fixed table: the spread follows the table's shares,
	 * which Maglev keeps within a few percent of the weights. */
	ck_assert_double_lt(chi2(count, p, 4), chi2_crit(3));
	em_lb_port_put(lp);
}
END_TEST

/* A header lookup over one "Name: value" pair, a cookie lookup over one
 * "name=value": what the HTTP forwarder passes (ABI v2). */
struct one_kv {
	const char *name, *value;
};

static const char *one_lookup(const struct em_balancer_request *req, const char *name,
			      size_t *len)
{
	const struct one_kv *h = req->priv;

	if (strcasecmp(name, h->name) != 0)
		return NULL;
	*len = strlen(h->value);
	return h->value;
}

static void chash_by(const char *args, bool cookie)
{
	struct fixture f;
	struct em_lb_port *lp;
	struct sockaddr_in c1 = client_addr(1);
	int seen[4] = { 0 }, distinct = 0, none;

	fixture_init(&f, 4, NULL, "None");
	lp = new_port_args(&f, "consistent-hash", args);
	for (int u = 0; u < 64; u++) {
		char user[16];
		struct one_kv h = { "x-user", user };
		struct em_balancer_request req = { .client = (struct sockaddr *)&c1,
						   .client_len = sizeof(c1), .avoid = -1,
						   .priv = &h };
		int a, b;

		if (cookie)
			req.cookie = one_lookup;
		else
			req.header = one_lookup;
		snprintf(user, sizeof(user), "user-%d", u);
		a = em_lb_port_pick_request(lp, &req);
		em_lb_port_release(lp, a, EM_BALANCER_OK);
		b = em_lb_port_pick_request(lp, &req);
		em_lb_port_release(lp, b, EM_BALANCER_OK);
		ck_assert_int_eq(a, b);
		if (!seen[a]++)
			distinct++;
	}
	/* One client address, many users: spread by the header/cookie. */
	ck_assert_int_ge(distinct, 3);
	/* Without it (an L4 connection): the client address decides. */
	none = pick_client(lp, 1, -1);
	em_lb_port_release(lp, none, EM_BALANCER_OK);
	ck_assert_int_ge(none, 0);
	ck_assert_int_eq(pick_client(lp, 1, -1), none);
	em_lb_port_release(lp, none, EM_BALANCER_OK);
	em_lb_port_put(lp);
}

START_TEST(test_chash_header)
{
	chash_by("header=X-User", false);
}
END_TEST

START_TEST(test_chash_cookie)
{
	chash_by("cookie=x-user,load=1.5", true);
}
END_TEST

/* IPv6 backends and clients: keys, permutations and affinity use the
 * 16-byte addresses (a client differing only in its last byte is another
 * client). */
START_TEST(test_ipv6)
{
	struct fixture f;
	struct em_lb_port *ch, *aff;
	int first[16], seen[3] = { 0 };

	fixture_init(&f, 3, NULL, "ClientIP");
	for (int i = 0; i < 3; i++) {
		f.backends[i].family = AF_INET6;
		inet_pton(AF_INET6, "fd00::1", &f.backends[i].ip.v6);
		f.backends[i].ip.v6.s6_addr[15] = (uint8_t)(i + 1);
	}
	ch = em_lb_port_new(&em_lb_consistent_hash_ops, &f.port, NULL);
	aff = em_lb_port_new(&em_lb_round_robin_ops, &f.port, NULL);
	ck_assert_ptr_nonnull(ch);
	ck_assert_ptr_nonnull(aff);
	for (int round = 0; round < 3; round++)
		for (int c = 0; c < 16; c++) {
			struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
			int a, b;

			inet_pton(AF_INET6, "fd00:1::", &sin6.sin6_addr);
			sin6.sin6_addr.s6_addr[15] = (uint8_t)c;
			a = em_lb_port_pick(ch, (struct sockaddr *)&sin6, sizeof(sin6), -1, 0);
			em_lb_port_release(ch, a, EM_BALANCER_OK);
			b = em_lb_port_pick(aff, (struct sockaddr *)&sin6, sizeof(sin6), -1, 0);
			em_lb_port_release(aff, b, EM_BALANCER_OK);
			if (round == 0) {
				first[c] = a;
				seen[b]++;			/* first picks: round robin */
			} else {
				ck_assert_int_eq(a, first[c]);	/* consistent */
			}
			ck_assert_int_eq(b, c % 3);		/* affinity holds */
		}
	for (int i = 0; i < 3; i++)
		ck_assert_int_ge(seen[i], 5);
	em_lb_port_put(ch);
	em_lb_port_put(aff);
}
END_TEST

/* ---- all of them ---------------------------------------------------------- */

static const char *const all_strategies[] = { "round-robin", "random", "least-conn",
					      "least-request", "consistent-hash" };
#define N_STRATEGIES (sizeof(all_strategies) / sizeof(all_strategies[0]))

START_TEST(test_no_backends)
{
	struct fixture f;

	for (size_t i = 0; i < N_STRATEGIES; i++) {
		struct em_lb_port *lp = new_port(&f, all_strategies[i], 0);
		ck_assert_int_eq(pick_client(lp, 1, -1), -1);
		ck_assert_ptr_null(em_lb_port_backend(lp, 0));
		em_lb_port_put(lp);
	}
}
END_TEST

/* Every strategy honours `avoid` and never answers out of range, with
 * one, two and many backends. */
START_TEST(test_all_avoid)
{
	static const size_t sizes[] = { 1, 2, 7 };
	struct fixture f;

	for (size_t s = 0; s < N_STRATEGIES; s++)
		for (size_t z = 0; z < 3; z++) {
			struct em_lb_port *lp = new_port(&f, all_strategies[s], sizes[z]);

			for (uint32_t i = 0; i < 200; i++) {
				int avoid = (int)(i % sizes[z]);
				int idx = pick_client(lp, i, avoid);

				if (sizes[z] == 1) {
					ck_assert_int_eq(idx, -1);
					continue;
				}
				ck_assert_int_ge(idx, 0);
				ck_assert_int_lt(idx, (int)sizes[z]);
				ck_assert_int_ne(idx, avoid);
				em_lb_port_release(lp, idx, EM_BALANCER_OK);
			}
			em_lb_port_put(lp);
		}
	ck_assert_int_eq(em_lb_port_live(), 0);
}
END_TEST

Suite *lb_strategies_suite(void)
{
	Suite *s = suite_create("lb_strategies");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "rr_smooth_sequence", test_rr_smooth_sequence },
		{ "rr_equal_alternates", test_rr_equal_alternates },
		{ "rr_weighted_shares", test_rr_weighted_shares },
		{ "rr_avoid", test_rr_avoid },
		{ "rr_concurrent", test_rr_concurrent },
		{ "random_weighted_chi2", test_random_weighted_chi2 },
		{ "random_avoid_spread", test_random_avoid_spread },
		{ "least_conn_prefers_idle", test_least_conn_prefers_idle },
		{ "least_conn_weighted_load", test_least_conn_weighted_load },
		{ "least_conn_ties_weighted", test_least_conn_ties_weighted_chi2 },
		{ "least_request_avoids_slow", test_least_request_avoids_slow },
		{ "least_request_peak_ewma", test_least_request_peak_ewma_decays },
		{ "least_request_weighted_load", test_least_request_weighted_load },
		{ "chash_sticky_weighted", test_chash_sticky_weighted_chi2 },
		{ "chash_header", test_chash_header },
		{ "chash_cookie", test_chash_cookie },
		{ "ipv6", test_ipv6 },
		{ "no_backends", test_no_backends },
		{ "all_avoid", test_all_avoid },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
