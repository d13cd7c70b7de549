/* test-lb-health.c — passive health in the peer core: consecutive failures
 * eject, the interval grows per ejection up to a cap, re-admission, the
 * maximum ejected share, panic, and the outcomes that never count against
 * a backend. The clock is moved with em_lb_test_advance_clock. */
#include <errno.h>

#include "suites.h"
#include "test-lb-common.h"
#include "testlog.h"

#define SEC 1000000000ULL

static void setup(void)
{
	em_lb_test_reset_clock();
}

static void teardown(void)
{
	em_lb_test_reset_clock();
	ck_assert_int_eq(em_lb_port_live(), 0);
}

static bool picks_avoid(struct em_lb_port *lp, int idx, int n)
{
	for (int i = 0; i < n; i++)
		if (pick_once(lp) == idx)
			return false;
	return true;
}

/* fails=3: three failures in a row eject; fewer, or a success in between,
 * do not. (The default, 1, is nginx's max_fails.) */
START_TEST(test_consecutive_failures_eject)
{
	struct fixture f;
	struct em_lb_port *lp;

	fixture_init(&f, 3, NULL, "None");
	lp = new_port_args(&f, "round-robin", "fails=3");

	fail_n(lp, 0, 2, EM_BALANCER_FAILED);
	ck_assert(!picks_avoid(lp, 0, 6));			/* successes: run reset */
	fail_n(lp, 0, 2, EM_BALANCER_TIMEOUT);
	ck_assert(!ejected(lp, 0));
	ck_assert_uint_eq(peer_state(lp, 0).consecutive_failures, 2);
	fail_n(lp, 0, 1, EM_BALANCER_FAILED);			/* third in a row */
	ck_assert(ejected(lp, 0));
	ck_assert(picks_avoid(lp, 0, 100));
	ck_assert_uint_eq(peer_state(lp, 0).ejections, 1);
	em_lb_port_put(lp);
}
END_TEST

/* Back after the interval; on probation then: one failure ejects again,
 * for twice as long; intervals stop growing at the cap. */
START_TEST(test_readmit_and_growing_interval)
{
	struct fixture f;
	struct em_lb_port *lp;

	fixture_init(&f, 3, NULL, "None");
	lp = new_port_args(&f, "round-robin", "fails=3,eject=10s,eject-max=25s");
	fail_n(lp, 1, 3, EM_BALANCER_FAILED);
	ck_assert(ejected(lp, 1));
	em_lb_test_advance_clock(9 * SEC);
	ck_assert(picks_avoid(lp, 1, 30));
	em_lb_test_advance_clock(2 * SEC);			/* 11 s: back */
	ck_assert(!ejected(lp, 1));
	fail_n(lp, 1, 1, EM_BALANCER_FAILED);			/* probation: out again */
	ck_assert(ejected(lp, 1));
	ck_assert_uint_eq(peer_state(lp, 1).ejections, 2);
	em_lb_test_advance_clock(15 * SEC);
	ck_assert(ejected(lp, 1));				/* 20 s this time */
	em_lb_test_advance_clock(6 * SEC);
	ck_assert(!ejected(lp, 1));
	ck_assert(!picks_avoid(lp, 1, 30));			/* picked, and it works */
	fail_n(lp, 1, 3, EM_BALANCER_FAILED);			/* third: 30 s, capped at 25 */
	em_lb_test_advance_clock(24 * SEC);
	ck_assert(ejected(lp, 1));
	em_lb_test_advance_clock(2 * SEC);
	ck_assert(!ejected(lp, 1));
	/* A success ends probation: one failure no longer ejects. */
	em_lb_port_release(lp, 1, EM_BALANCER_OK);
	fail_n(lp, 1, 1, EM_BALANCER_FAILED);
	ck_assert(!ejected(lp, 1));
	em_lb_port_put(lp);
}
END_TEST

/* Never more than max-eject percent of the backends out at once. */
START_TEST(test_max_ejection_percent)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "random", 4);	/* default 50 % */
	int out = 0;

	for (int i = 0; i < 4; i++)
		fail_n(lp, i, 3, EM_BALANCER_FAILED);
	for (int i = 0; i < 4; i++)
		out += ejected(lp, i);
	ck_assert_int_eq(out, 2);
	em_lb_port_put(lp);

	fixture_init(&f, 4, NULL, "None");
	lp = new_port_args(&f, "random", "max-eject=25");
	for (int i = 0; i < 4; i++)
		fail_n(lp, i, 3, EM_BALANCER_FAILED);
	out = 0;
	for (int i = 0; i < 4; i++)
		out += ejected(lp, i);
	ck_assert_int_eq(out, 1);
	em_lb_port_put(lp);
}
END_TEST

/* Below the panic threshold (50 %) of healthy backends, health is
 * ignored: picks spread over every backend. At the threshold, not. */
START_TEST(test_panic)
{
	struct fixture f;
	struct em_lb_port *lp;
	int count[4] = { 0 };

	fixture_init(&f, 3, NULL, "None");
	lp = new_port_args(&f, "round-robin", "max-eject=100");
	fail_n(lp, 0, 3, EM_BALANCER_FAILED);
	fail_n(lp, 1, 3, EM_BALANCER_FAILED);
	ck_assert(ejected(lp, 0) && ejected(lp, 1));		/* 1 of 3 healthy */
	for (int i = 0; i < 300; i++)
		count[pick_once(lp)]++;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(count[i], 100);		/* panic: all of them */
	em_lb_port_put(lp);

	fixture_init(&f, 4, NULL, "None");
	lp = new_port_args(&f, "round-robin", "max-eject=100");
	fail_n(lp, 0, 3, EM_BALANCER_FAILED);
	fail_n(lp, 1, 3, EM_BALANCER_FAILED);			/* 2 of 4: no panic */
	memset(count, 0, sizeof(count));
	for (int i = 0; i < 300; i++)
		count[pick_once(lp)]++;
	ck_assert_int_eq(count[0] + count[1], 0);
	ck_assert_int_eq(count[2], 150);
	/* A third one out: panic. */
	fail_n(lp, 2, 3, EM_BALANCER_FAILED);
	ck_assert(ejected(lp, 2));
	ck_assert(!picks_avoid(lp, 0, 8));
	em_lb_port_put(lp);

	/* panic=0: never; the last healthy one takes everything. */
	fixture_init(&f, 3, NULL, "None");
	lp = new_port_args(&f, "round-robin", "max-eject=100,panic=0");
	fail_n(lp, 0, 3, EM_BALANCER_FAILED);
	fail_n(lp, 1, 3, EM_BALANCER_FAILED);
	for (int i = 0; i < 30; i++)
		ck_assert_int_eq(pick_once(lp), 2);
	em_lb_port_put(lp);
}
END_TEST

/* Local errors, cancelled attempts and stale pooled connections (LOCAL)
 * never count against a backend, whatever outcome the caller chose for
 * a local errno. */
START_TEST(test_local_errors_never_count)
{
	static const int local[] = { EADDRNOTAVAIL, ENOBUFS, EMFILE, ENFILE, EPERM };
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "least-conn", 2);

	for (int round = 0; round < 20; round++) {
		for (size_t e = 0; e < sizeof(local) / sizeof(local[0]); e++) {
			struct em_balancer_result res = { .outcome = EM_BALANCER_FAILED,
							  .error = local[e] };
			em_lb_port_release_result(lp, 0, &res);
		}
		fail_n(lp, 0, 1, EM_BALANCER_LOCAL);
		fail_n(lp, 0, 1, EM_BALANCER_CANCELLED);
	}
	ck_assert(!ejected(lp, 0));
	ck_assert_uint_eq(peer_state(lp, 0).consecutive_failures, 0);
	ck_assert_uint_eq(peer_state(lp, 0).failures, 0);
	/* A real refusal does count. */
	{
		struct em_balancer_result res = { .outcome = EM_BALANCER_FAILED,
						  .error = ECONNREFUSED };
		for (int i = 0; i < 3; i++)
			em_lb_port_release_result(lp, 0, &res);
	}
	ck_assert(ejected(lp, 0));
	em_lb_port_put(lp);
}
END_TEST

/* On HTTP ports 5xx answers count as failures (5 in a row by default, as
 * Envoy's consecutive_5xx); other statuses do not and end the run. */
START_TEST(test_http_5xx)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "round-robin", 3);
	struct em_balancer_result r404 = { .outcome = EM_BALANCER_OK, .http_status = 404 };
	struct em_balancer_result r503 = { .outcome = EM_BALANCER_OK, .http_status = 503 };

	for (int i = 0; i < 10; i++)
		em_lb_port_release_result(lp, 2, &r404);
	ck_assert(!ejected(lp, 2));
	for (int i = 0; i < 4; i++)
		em_lb_port_release_result(lp, 2, &r503);
	ck_assert(!ejected(lp, 2));
	em_lb_port_release_result(lp, 2, &r404);		/* a good answer: run reset */
	for (int i = 0; i < 4; i++)
		em_lb_port_release_result(lp, 2, &r503);
	ck_assert(!ejected(lp, 2));
	em_lb_port_release_result(lp, 2, &r503);		/* fifth in a row */
	ck_assert(ejected(lp, 2));
	ck_assert_uint_eq(peer_state(lp, 2).failures, 9);
	em_lb_port_put(lp);
}
END_TEST

/* fails=0 (and fails-5xx=0), or max-eject=0, turn ejection off. */
START_TEST(test_ejection_off)
{
	struct fixture f;
	struct em_lb_port *lp;
	struct em_balancer_result r500 = { .outcome = EM_BALANCER_OK, .http_status = 500 };

	fixture_init(&f, 2, NULL, "None");
	lp = new_port_args(&f, "round-robin", "fails=0,fails-5xx=0");
	fail_n(lp, 0, 50, EM_BALANCER_FAILED);
	for (int i = 0; i < 50; i++)
		em_lb_port_release_result(lp, 0, &r500);
	ck_assert(!ejected(lp, 0));
	em_lb_port_put(lp);
	/* max-eject=0: nothing may be out. */
	fixture_init(&f, 2, NULL, "None");
	lp = new_port_args(&f, "round-robin", "max-eject=0");
	fail_n(lp, 0, 5, EM_BALANCER_FAILED);
	ck_assert(!ejected(lp, 0));
	em_lb_port_put(lp);
}
END_TEST

/* Every strategy, built-in and plugin view alike, skips an ejected
 * backend. */
START_TEST(test_all_strategies_skip_ejected)
{
	static const char *const names[] = { "round-robin", "random", "least-conn",
					     "least-request", "consistent-hash" };
	struct fixture f;

	for (size_t s = 0; s < sizeof(names) / sizeof(names[0]); s++) {
		struct em_lb_port *lp = new_port(&f, names[s], 5);

		fail_n(lp, 3, 3, EM_BALANCER_FAILED);
		for (uint32_t i = 0; i < 300; i++) {
			int idx = pick_client(lp, i, -1);
			ck_assert_int_ne(idx, 3);
			em_lb_port_release(lp, idx, EM_BALANCER_OK);
		}
		em_lb_test_advance_clock(11 * SEC);		/* back in */
		{
			bool seen = false;
			for (uint32_t i = 0; i < 300 && !seen; i++) {
				int idx = pick_client(lp, i, -1);
				seen = idx == 3;
				em_lb_port_release(lp, idx, EM_BALANCER_OK);
			}
			ck_assert_msg(seen, "%s never re-admitted backend 3", names[s]);
		}
		em_lb_port_put(lp);
		em_lb_test_reset_clock();
	}
}
END_TEST

/* Hostile and edge-case argument texts. */
START_TEST(test_tuning_parse)
{
	struct em_lb_tuning t = EM_LB_TUNING_DEFAULTS, d = EM_LB_TUNING_DEFAULTS;
	char v[8];

	ck_assert_int_eq(em_lb_tuning_parse(&t, "fails=5,fails-5xx=7,eject=2s,eject-max=1m,max-eject=30;"
						"panic=20, load=1.5,decay=500ms,rtt=20"), 0);
	ck_assert_uint_eq(t.max_fails, 5);
	ck_assert_uint_eq(t.max_5xx, 7);
	ck_assert_uint_eq(t.eject_base_ms, 2000);
	ck_assert_uint_eq(t.eject_max_ms, 60000);
	ck_assert_uint_eq(t.max_eject_pct, 30);
	ck_assert_uint_eq(t.panic_pct, 20);
	ck_assert_uint_eq(t.hash_load_pct, 150);
	ck_assert_uint_eq(t.ewma_decay_ms, 500);
	ck_assert_uint_eq(t.ewma_default_us, 20000);
	t = d;
	ck_assert_int_eq(em_lb_tuning_parse(&t, "fails=-1,eject=abc,max-eject=101,load=0.5,"
						"panic=,eject-max=99999999999s"), 6);
	ck_assert_mem_eq(&t, &d, sizeof(t));		/* bad values change nothing */
	ck_assert_int_eq(em_lb_tuning_parse(&t, ",,;;=,==,header=X,fails"), 1);
	ck_assert_int_eq(em_lb_tuning_parse(&t, NULL), 0);
	ck_assert_int_eq(em_lb_tuning_parse(&t, "load=0"), 0);
	ck_assert_uint_eq(t.hash_load_pct, 0);
	ck_assert(em_lb_args_get("a=1,header=X-Long-Header-Name", "header", v, sizeof(v)));
	ck_assert_str_eq(v, "X-Long-");			/* truncated, terminated */
	ck_assert(!em_lb_args_get("headers=1", "header", v, sizeof(v)));
	ck_assert(!em_lb_args_get(NULL, "header", v, sizeof(v)));
}
END_TEST

Suite *lb_health_suite(void)
{
	Suite *s = suite_create("lb_health");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "consecutive_failures_eject", test_consecutive_failures_eject },
		{ "readmit_growing_interval", test_readmit_and_growing_interval },
		{ "max_ejection_percent", test_max_ejection_percent },
		{ "panic", test_panic },
		{ "local_errors_never_count", test_local_errors_never_count },
		{ "http_5xx", test_http_5xx },
		{ "ejection_off", test_ejection_off },
		{ "all_strategies_skip_ejected", test_all_strategies_skip_ejected },
		{ "tuning_parse", test_tuning_parse },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
