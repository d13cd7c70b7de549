/* test-lb-state.c — state that survives snapshot changes: health, in-flight
 * counts and round-robin position carried to the next balancer of a
 * service port by backend address; removed backends finish and are never
 * picked again; the state is freed once the service is gone. Consistent
 * hashing and ClientIP affinity under churn. Snapshots are simulated with
 * the hooks: port_init of the new port, then port_fini of the old one. */
#include <pthread.h>
#include <stdlib.h>

#include "suites.h"
#include "test-lb-common.h"
#include "util/log.h"
#include "testlog.h"

#define SEC 1000000000ULL

static struct em_lb *lb;
static struct em_snapshot_hooks hooks;

static void setup(void)
{
	em_lb_test_reset_clock();
	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
}

static void teardown(void)
{
	ck_assert_int_eq(em_lb_port_live(), 0);
	ck_assert_uint_eq(em_lb_state_count(lb), 0);
	em_lb_free(lb);
	em_lb_test_reset_clock();
}

/* Backend addresses of a fixture, by index. */
static uint32_t addr_of(const struct em_lb_port *lp, int idx)
{
	return ntohl(em_lb_port_backend(lp, idx)->ip.v4.s_addr) & 0xff;
}

static int index_of(const struct em_lb_port *lp, uint32_t last_octet)
{
	for (size_t i = 0; i < em_lb_port_n_backends(lp); i++)
		if (addr_of(lp, (int)i) == last_octet)
			return (int)i;
	return -1;
}

/* Health, in-flight counts, counters and the round-robin position are
 * the same after a commit that adds a backend. */
START_TEST(test_state_survives_commit)
{
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *la, *lb2;
	int held, i2;

	fixture_init(a, 3, NULL, "None");
	commit(&hooks, NULL, a);
	la = em_lb_port_acquire(&a->port);
	ck_assert_ptr_nonnull(la);
	fail_n(la, 1, 3, EM_BALANCER_FAILED);		/* 10.0.0.2 ejected */
	held = em_lb_port_pick(la, NULL, 0, -1, 0);	/* a connection stays open */
	ck_assert_int_ge(held, 0);
	/* The next snapshot: 10.0.0.0 .. 10.0.0.3 (one added before the
	 * others, so every index shifts). */
	fixture_init_from(b, 4, 0, NULL, "None");
	commit(&hooks, a, b);
	lb2 = em_lb_port_acquire(&b->port);
	ck_assert_ptr_nonnull(lb2);
	ck_assert_ptr_ne(lb2, la);
	i2 = index_of(lb2, 2);
	ck_assert(ejected(lb2, i2));				/* still out */
	ck_assert_uint_eq(peer_state(lb2, i2).failures, 3);
	ck_assert_uint_eq(peer_state(lb2, index_of(lb2, addr_of(la, held))).in_flight, 1);
	ck_assert_uint_eq(peer_state(lb2, index_of(lb2, 0)).in_flight, 0);	/* new */
	for (int i = 0; i < 50; i++)
		ck_assert_int_ne(pick_once(lb2), i2);
	/* The old connection ends through the old balancer: the shared count
	 * drops. */
	em_lb_port_release(la, held, EM_BALANCER_OK);
	ck_assert_uint_eq(peer_state(lb2, index_of(lb2, addr_of(la, held))).in_flight, 0);
	em_lb_port_put(la);
	em_lb_port_put(lb2);
	hooks.port_fini(hooks.ctx, &b->port);
	free(a);
	free(b);
}
END_TEST

/* Smooth WRR continues where it was: with weights 5,1,1 the sequence
 * a a b a c a a goes on across the commit rather than restarting. */
START_TEST(test_rr_position_survives_commit)
{
	static const int expect[14] = { 0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0 };
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *lp;
	int k = 0;

	fixture_init(a, 3, NULL, "None");
	a->backends[0].weight = 5;
	commit(&hooks, NULL, a);
	lp = em_lb_port_acquire(&a->port);
	for (; k < 3; k++)
		ck_assert_int_eq(pick_once(lp), expect[k]);
	em_lb_port_put(lp);
	*b = *a;				/* same backends, a new snapshot port */
	b->port.backends = b->backends;
	b->port.service = &b->svc;
	b->svc.ports = &b->port;
	b->port.lb = NULL;
	commit(&hooks, a, b);
	lp = em_lb_port_acquire(&b->port);
	for (; k < 14; k++)
		ck_assert_int_eq(pick_once(lp), expect[k]);
	em_lb_port_put(lp);
	hooks.port_fini(hooks.ctx, &b->port);
	free(a);
	free(b);
}
END_TEST

/* A removed backend: its open connection finishes (release lands), no
 * balancer, the old one included, picks it again; its state goes with
 * the last reference. */
START_TEST(test_removed_never_repicked)
{
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *old, *cur;
	int held;

	fixture_init(a, 3, NULL, "None");
	commit(&hooks, NULL, a);
	old = em_lb_port_acquire(&a->port);		/* a keep-alive client's */
	held = index_of(old, 3);
	while (em_lb_port_pick(old, NULL, 0, -1, 0) != held)
		;	/* the others' picks stay open too: released below */
	/* Next snapshot without 10.0.0.3. */
	fixture_init(b, 2, NULL, "None");
	commit(&hooks, a, b);
	cur = em_lb_port_acquire(&b->port);
	for (int i = 0; i < 60; i++) {
		ck_assert_int_ne(pick_once(old), held);	/* old balancer, too */
		ck_assert_int_ge(pick_once(cur), 0);
	}
	ck_assert(peer_state(old, held).flags & EM_BALANCER_PEER_REMOVED);
	ck_assert_uint_eq(peer_state(old, held).in_flight, 1);
	em_lb_port_release(old, held, EM_BALANCER_OK);	/* the connection ends */
	ck_assert_uint_eq(peer_state(old, held).in_flight, 0);
	for (int i = 0; i < 2; i++)
		while (peer_state(old, i).in_flight)
			em_lb_port_release(old, i, EM_BALANCER_OK);
	em_lb_port_put(old);
	em_lb_port_put(cur);
	hooks.port_fini(hooks.ctx, &b->port);
	free(a);
	free(b);
}
END_TEST

/* A worker still reading an older snapshot builds that snapshot's first
 * balancer after a newer snapshot dropped a backend: the backend is
 * removed for it too (never picked), and kept for the newest. */
START_TEST(test_old_snapshot_built_late)
{
	struct fixture *z = malloc(sizeof(*z)), *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *lz, *la, *lb2;
	int gone;

	fixture_init(z, 2, NULL, "None");
	commit(&hooks, NULL, z);
	lz = em_lb_port_acquire(&z->port);		/* the state exists */
	fixture_init(a, 3, NULL, "None");		/* 10.0.0.3 added ... */
	commit(&hooks, z, a);
	fixture_init(b, 2, NULL, "None");		/* ... and gone again */
	ck_assert_int_eq(hooks.port_init(hooks.ctx, &b->port), 0);
	la = em_lb_port_acquire(&a->port);		/* late, from snapshot A */
	gone = index_of(la, 3);
	ck_assert(peer_state(la, gone).flags & EM_BALANCER_PEER_REMOVED);
	for (int i = 0; i < 30; i++)
		ck_assert_int_ne(pick_once(la), gone);
	hooks.port_fini(hooks.ctx, &a->port);
	lb2 = em_lb_port_acquire(&b->port);
	for (int i = 0; i < 2; i++)
		ck_assert(!(peer_state(lb2, i).flags & EM_BALANCER_PEER_REMOVED));
	/* Built in the right order, 10.0.0.3 would be live for A's own
	 * balancer: covered by test_state_survives_commit. */
	em_lb_port_put(lz);
	em_lb_port_put(la);
	em_lb_port_put(lb2);
	hooks.port_fini(hooks.ctx, &b->port);
	free(z);
	free(a);
	free(b);
}
END_TEST

/* The state is freed when the service is gone (its last port finished
 * and its last connection ended), and never allocated for ports nobody
 * used. A service re-created later starts afresh. */
START_TEST(test_state_freed_when_gone)
{
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *lp;
	int idx;

	fixture_init(a, 2, NULL, "None");
	commit(&hooks, NULL, a);
	ck_assert_uint_eq(em_lb_state_count(lb), 0);		/* unused: nothing */
	lp = em_lb_port_acquire(&a->port);
	ck_assert_uint_eq(em_lb_state_count(lb), 1);
	idx = em_lb_port_pick(lp, NULL, 0, -1, 0);
	fail_n(lp, 1 - idx, 3, EM_BALANCER_FAILED);
	{
		struct em_lb_stats st;
		char line[256];

		em_lb_get_stats(lb, &st);
		ck_assert_uint_eq(st.ports, 1);
		ck_assert_uint_eq(st.peers, 2);
		ck_assert_uint_eq(st.ejected, 1);
		ck_assert_uint_eq(st.ejections, 1);
		ck_assert_uint_eq(st.in_flight, 1);
		ck_assert_uint_eq(st.picks, 1);
		ck_assert_uint_eq(st.failures, 3);
		em_lb_stats_format(&st, line, sizeof(line));
		ck_assert_ptr_nonnull(strstr(line, "ejected now 1"));
	}
	hooks.port_fini(hooks.ctx, &a->port);			/* service deleted */
	ck_assert_uint_eq(em_lb_state_count(lb), 1);		/* a connection is open */
	em_lb_port_release(lp, idx, EM_BALANCER_OK);
	em_lb_port_put(lp);
	ck_assert_uint_eq(em_lb_state_count(lb), 0);
	/* Re-created: no memory of the ejection. */
	fixture_init(b, 2, NULL, "None");
	commit(&hooks, NULL, b);
	lp = em_lb_port_acquire(&b->port);
	ck_assert(!ejected(lp, 1 - idx));
	em_lb_port_put(lp);
	hooks.port_fini(hooks.ctx, &b->port);
	free(a);
	free(b);
}
END_TEST

/* A snapshot port never connected to, between two used ones, carries the
 * state on: it counts the service port while it lives. */
START_TEST(test_state_through_unused_snapshot)
{
	struct fixture *f[3];
	struct em_lb_port *lp;

	for (int i = 0; i < 3; i++) {
		f[i] = malloc(sizeof(*f[i]));
		fixture_init(f[i], 3, NULL, "None");
	}
	commit(&hooks, NULL, f[0]);
	lp = em_lb_port_acquire(&f[0]->port);
	fail_n(lp, 2, 3, EM_BALANCER_FAILED);
	em_lb_port_put(lp);
	commit(&hooks, f[0], f[1]);			/* balancer of f[0] freed here */
	commit(&hooks, f[1], f[2]);			/* f[1] never used */
	lp = em_lb_port_acquire(&f[2]->port);
	ck_assert(ejected(lp, 2));
	em_lb_port_put(lp);
	hooks.port_fini(hooks.ctx, &f[2]->port);
	for (int i = 0; i < 3; i++)
		free(f[i]);
}
END_TEST

/* ---- consistent hashing under churn ------------------------------------------ */

/* Removing one of N backends moves about 1/N of the keys: the removed
 * one's, and few others. */
START_TEST(test_chash_removal_moves_one_nth)
{
	enum { N = 10, KEYS = 20000 };
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *la, *lb2;
	int moved = 0, moved_other = 0;

	fixture_init(a, N, "consistent-hash", "None");
	fixture_init(b, N, "consistent-hash", "None");
	/* b lacks a's backend 4. */
	memmove(&b->backends[4], &b->backends[5], (N - 5) * sizeof(b->backends[0]));
	b->port.n_backends = N - 1;
	la = new_port_args(a, "consistent-hash", "load=0");
	lb2 = new_port_args(b, "consistent-hash", "load=0");
	for (uint32_t h = 0; h < KEYS; h++) {
		int x = pick_client(la, h, -1), y = pick_client(lb2, h, -1);

		em_lb_port_release(la, x, EM_BALANCER_OK);
		em_lb_port_release(lb2, y, EM_BALANCER_OK);
		if (addr_of(la, x) != addr_of(lb2, y)) {
			moved++;
			if (addr_of(la, x) != 5)	/* 10.0.0.5 was removed */
				moved_other++;
		}
	}
	/* 1/N = 10 %: between 7 and 14 %, and under 3 % of the others. */
	ck_assert_int_gt(moved, KEYS * 7 / 100);
	ck_assert_int_lt(moved, KEYS * 14 / 100);
	ck_assert_int_lt(moved_other, KEYS * 3 / 100);
	em_lb_port_put(la);
	em_lb_port_put(lb2);
	free(a);
	free(b);
}
END_TEST

static uint32_t max_in_flight(struct em_lb_port *lp)
{
	uint32_t m = 0;

	for (size_t i = 0; i < em_lb_port_n_backends(lp); i++)
		if (peer_state(lp, (int)i).in_flight > m)
			m = peer_state(lp, (int)i).in_flight;
	return m;
}

/* max(2, ceil(1.25 x total / n)): the bound with its floor. */
static uint32_t bound(uint32_t total, uint32_t n)
{
	uint32_t b = (125 * total + 100 * n - 1) / (100 * n);

	return b < 2 ? 2 : b;
}

/* Few hot keys, connections held: without the bound one backend takes
 * them all; with c = 1.25, none exceeds ceil(c x fair share) - through a
 * commit that removes a backend too. */
START_TEST(test_chash_load_bound_under_churn)
{
	enum { N = 8, PICKS = 800 };
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *la, *lb2, *unbounded;
	uint32_t total = 0;
	int *held_a = calloc(PICKS, sizeof(int)), *held_b = calloc(PICKS, sizeof(int));

	fixture_init(a, N, "consistent-hash", "None");
	unbounded = new_port_args(a, "consistent-hash", "load=0");
	for (int i = 0; i < 100; i++)
		held_a[i] = pick_client(unbounded, (uint32_t)i % 3, -1);
	ck_assert_uint_ge(max_in_flight(unbounded), 34);	/* hot keys pile up */
	for (int i = 0; i < 100; i++)
		em_lb_port_release(unbounded, held_a[i], EM_BALANCER_OK);
	em_lb_port_put(unbounded);

	commit(&hooks, NULL, a);
	la = em_lb_port_acquire(&a->port);
	ck_assert_str_eq(em_lb_port_strategy(la), "consistent-hash");
	for (int i = 0; i < PICKS; i++) {
		held_a[i] = pick_client(la, (uint32_t)i % 3, -1);
		total++;
		ck_assert_uint_le(max_in_flight(la), bound(total, N));
	}
	ck_assert_uint_ge(max_in_flight(la), bound(total, N) - 1);	/* it did bind */
	/* One backend leaves: its connections stay open (counted in the
	 * total); the new balancer keeps the bound over the others. */
	fixture_init(b, N - 1, "consistent-hash", "None");
	commit(&hooks, a, b);
	lb2 = em_lb_port_acquire(&b->port);
	for (int i = 0; i < PICKS; i++) {
		held_b[i] = pick_client(lb2, (uint32_t)i % 3, -1);
		total++;
		ck_assert_uint_le(max_in_flight(lb2), bound(total, N - 1));
	}
	for (int i = 0; i < PICKS; i++) {
		em_lb_port_release(la, held_a[i], EM_BALANCER_OK);
		em_lb_port_release(lb2, held_b[i], EM_BALANCER_OK);
	}
	ck_assert_uint_eq(max_in_flight(lb2), 0);
	em_lb_port_put(la);
	em_lb_port_put(lb2);
	hooks.port_fini(hooks.ctx, &b->port);
	free(held_a);
	free(held_b);
	free(a);
	free(b);
}
END_TEST

/* ---- sessionAffinity: ClientIP ----------------------------------------------- */

/* Each client sticks to its backend while it keeps coming within the
 * timeout (every connection refreshes it), whatever the strategy picks for
 * others; after a silence longer than the timeout it is balanced anew. */
START_TEST(test_affinity_timeout)
{
	enum { CLIENTS = 30 };
	struct fixture *a = malloc(sizeof(*a));
	struct em_lb_port *lp;
	int first[CLIENTS], spread[3] = { 0 }, moved = 0;

	fixture_init(a, 3, NULL, "ClientIP");
	a->svc.affinity_timeout_s = 60;
	commit(&hooks, NULL, a);
	lp = em_lb_port_acquire(&a->port);
	ck_assert_str_eq(em_lb_port_strategy(lp), "round-robin");
	for (uint32_t c = 0; c < CLIENTS; c++) {
		first[c] = pick_client(lp, c, -1);
		em_lb_port_release(lp, first[c], EM_BALANCER_OK);
		spread[first[c]]++;
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(spread[i], CLIENTS / 3);	/* round robin */
	for (int round = 0; round < 4; round++) {		/* 4 x 40 s > 60 s */
		em_lb_test_advance_clock(40 * SEC);
		for (uint32_t c = 0; c < CLIENTS; c++) {
			int idx = pick_client(lp, c, -1);
			ck_assert_int_eq(idx, first[c]);
			em_lb_port_release(lp, idx, EM_BALANCER_OK);
		}
	}
	em_lb_test_advance_clock(61 * SEC);			/* silence > timeout */
	em_lb_port_release(lp, pick_client(lp, 1000, -1), EM_BALANCER_OK);	/* shifts the round */
	for (uint32_t c = 0; c < CLIENTS; c++) {
		int idx = pick_client(lp, c, -1);
		moved += idx != first[c];
		em_lb_port_release(lp, idx, EM_BALANCER_OK);
	}
	ck_assert_int_eq(moved, CLIENTS);	/* balanced anew, one step further */
	em_lb_port_put(lp);
	hooks.port_fini(hooks.ctx, &a->port);
	free(a);
}
END_TEST

/* Affinity across a commit: clients stay on backends that stay; a client
 * whose backend left, or was ejected, moves (and then sticks there). */
START_TEST(test_affinity_under_churn)
{
	enum { CLIENTS = 30 };
	struct fixture *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct em_lb_port *la, *lb2;
	uint32_t first[CLIENTS];

	fixture_init(a, 3, "random", "ClientIP");
	commit(&hooks, NULL, a);
	la = em_lb_port_acquire(&a->port);
	for (uint32_t c = 0; c < CLIENTS; c++) {
		int idx = pick_client(la, c, -1);
		first[c] = addr_of(la, idx);
		em_lb_port_release(la, idx, EM_BALANCER_OK);
	}
	em_lb_port_put(la);
	/* 10.0.0.3 leaves, 10.0.0.4 and .5 join. */
	fixture_init(b, 4, "random", "ClientIP");
	b->backends[2].ip.v4.s_addr = htonl(0x0a000005);
	commit(&hooks, a, b);
	lb2 = em_lb_port_acquire(&b->port);
	for (uint32_t c = 0; c < CLIENTS; c++) {
		int idx = pick_client(lb2, c, -1), again;
		uint32_t now_at = addr_of(lb2, idx);

		if (first[c] != 3)
			ck_assert_uint_eq(now_at, first[c]);
		else
			ck_assert_uint_ne(now_at, 3);
		em_lb_port_release(lb2, idx, EM_BALANCER_OK);
		again = pick_client(lb2, c, -1);
		ck_assert_int_eq(again, idx);
		em_lb_port_release(lb2, again, EM_BALANCER_OK);
	}
	/* Eject 10.0.0.1: its clients move. */
	fail_n(lb2, index_of(lb2, 1), 3, EM_BALANCER_FAILED);
	for (uint32_t c = 0; c < CLIENTS; c++) {
		int idx = pick_client(lb2, c, -1);

		ck_assert_uint_ne(addr_of(lb2, idx), 1);
		em_lb_port_release(lb2, idx, EM_BALANCER_OK);
	}
	em_lb_port_put(lb2);
	hooks.port_fini(hooks.ctx, &b->port);
	free(a);
	free(b);
}
END_TEST

/* ---- workers and commits at once ---------------------------------------------- */

/* Workers acquire, pick and release (all outcomes, latencies, avoid) while
 * the main thread commits snapshots that change backends, weights,
 * strategy and affinity; the rwlock stands in for RCU (a port is finished
 * only when no worker is inside acquire). Meant for ThreadSanitizer and
 * valgrind as much as for the final checks: nothing leaks, nothing stays
 * in flight, the state goes with the service. */
#define CHURN_WORKERS 4
#define CHURN_COMMITS 24

static pthread_rwlock_t churn_rcu = PTHREAD_RWLOCK_INITIALIZER;
static struct fixture *_Atomic churn_cur;
static _Atomic int churn_stop;

static void *churn_worker(void *arg)
{
	uint32_t seed = (uint32_t)(uintptr_t)arg * 2654435761u + 1;

	while (!atomic_load(&churn_stop)) {
		struct em_lb_port *lp;

		pthread_rwlock_rdlock(&churn_rcu);
		lp = em_lb_port_acquire(&atomic_load(&churn_cur)->port);
		pthread_rwlock_unlock(&churn_rcu);
		if (!lp)
			continue;
		for (int i = 0; i < 50; i++) {
			struct em_balancer_result res = { 0 };
			int idx, avoid;

			seed = seed * 1103515245u + 12345u;
			avoid = (int)(seed >> 20) % 4 - 1;
			idx = pick_client(lp, seed >> 24, avoid);
			if (idx < 0)
				continue;
			res.outcome = (enum em_balancer_outcome)((seed >> 8) % 9 < 5 ? 0 : (seed >> 8) % 5);
			res.http_status = (seed >> 12) % 7 == 0 ? 503 : 200;
			res.latency_us = (seed >> 4) % 5000;
			em_lb_port_release_result(lp, idx, &res);
		}
		em_lb_port_put(lp);
	}
	return NULL;
}

START_TEST(test_concurrent_churn)
{
	static const char *const strategies[] = { "round-robin", "random", "least-conn",
						  "least-request", "consistent-hash:load=1.1" };
	struct fixture *f[CHURN_COMMITS];
	pthread_t t[CHURN_WORKERS];

	for (int k = 0; k < CHURN_COMMITS; k++) {
		f[k] = malloc(sizeof(*f[k]));
		fixture_init_from(f[k], 3 + (size_t)k % 5, 1 + (unsigned)k % 3,
				  strategies[k % 5], k % 2 ? "ClientIP" : "None");
		for (int i = 0; i < 8; i++)
			f[k]->backends[i].weight = 1 + (uint32_t)((k + i) % 4);
	}
	commit(&hooks, NULL, f[0]);
	atomic_store(&churn_cur, f[0]);
	for (int i = 0; i < CHURN_WORKERS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn_worker,
						(void *)(uintptr_t)(i + 1)), 0);
	for (int k = 1; k < CHURN_COMMITS; k++) {
		struct timespec ms = { 0, 2000000 };

		ck_assert_int_eq(hooks.port_init(hooks.ctx, &f[k]->port), 0);
		atomic_store(&churn_cur, f[k]);
		pthread_rwlock_wrlock(&churn_rcu);	/* the grace period */
		pthread_rwlock_unlock(&churn_rcu);
		hooks.port_fini(hooks.ctx, &f[k - 1]->port);
		nanosleep(&ms, NULL);
	}
	atomic_store(&churn_stop, 1);
	for (int i = 0; i < CHURN_WORKERS; i++)
		pthread_join(t[i], NULL);
	{
		struct em_lb_port *lp = em_lb_port_acquire(&f[CHURN_COMMITS - 1]->port);
		struct em_lb_stats st;

		ck_assert_ptr_nonnull(lp);
		em_lb_get_stats(lb, &st);
		ck_assert_uint_eq(st.in_flight, 0);	/* every pick was released */
		ck_assert_uint_eq(st.ports, 1);
		em_lb_port_put(lp);
	}
	hooks.port_fini(hooks.ctx, &f[CHURN_COMMITS - 1]->port);
	for (int k = 0; k < CHURN_COMMITS; k++)
		free(f[k]);
}
END_TEST

Suite *lb_state_suite(void)
{
	Suite *s = suite_create("lb_state");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "state_survives_commit", test_state_survives_commit },
		{ "rr_position_survives_commit", test_rr_position_survives_commit },
		{ "removed_never_repicked", test_removed_never_repicked },
		{ "old_snapshot_built_late", test_old_snapshot_built_late },
		{ "state_freed_when_gone", test_state_freed_when_gone },
		{ "state_through_unused_snapshot", test_state_through_unused_snapshot },
		{ "chash_removal_moves_one_nth", test_chash_removal_moves_one_nth },
		{ "chash_load_bound_under_churn", test_chash_load_bound_under_churn },
		{ "affinity_timeout", test_affinity_timeout },
		{ "affinity_under_churn", test_affinity_under_churn },
		{ "concurrent_churn", test_concurrent_churn },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
