/* test-lb.c — the strategy table, the choice of strategy per service,
 * plugins (loading, refusal, the peer view they get) and the refcounted,
 * lazily built per-port balancers. What the strategies do is in
 * test-lb-strategies.c, health in test-lb-health.c, state across
 * snapshots in test-lb-state.c. */
#include <arpa/inet.h>
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lb-test-config.h"
#include "suites.h"
#include "test-lb-common.h"
#include "util/log.h"
#include "testlog.h"

#define MAXB 8

START_TEST(test_find_builtins)
{
	ck_assert_ptr_eq(em_lb_find("round-robin"), &em_lb_round_robin_ops);
	ck_assert_ptr_eq(em_lb_find("random"), &em_lb_random_ops);
	ck_assert_ptr_eq(em_lb_find("least-conn"), &em_lb_least_conn_ops);
	ck_assert_ptr_eq(em_lb_find("least-request"), &em_lb_least_request_ops);
	ck_assert_ptr_eq(em_lb_find("consistent-hash"), &em_lb_consistent_hash_ops);
	ck_assert_ptr_null(em_lb_find("Round-Robin"));
	ck_assert_ptr_null(em_lb_find(""));
	ck_assert_ptr_null(em_lb_find(NULL));
	ck_assert_uint_eq(em_lb_round_robin_ops.abi_version, EM_BALANCER_ABI_VERSION);
}
END_TEST



/* consistent-hash:header=X-User hashes on the header value when given and
 * falls back to the client address without it. */
START_TEST(test_strategy_for)
{
	struct fixture f;

	fixture_init(&f, 1, NULL, "None");
	ck_assert_str_eq(em_lb_strategy_for(&f.svc, "random"), "random");
	ck_assert_str_eq(em_lb_strategy_for(&f.svc, NULL), "round-robin");
	/* ClientIP affinity is the core's, around any strategy. */
	f.svc.session_affinity = "ClientIP";
	ck_assert_str_eq(em_lb_strategy_for(&f.svc, "random"), "random");
	f.svc.lb_strategy = "least-conn";	/* the annotation wins */
	ck_assert_str_eq(em_lb_strategy_for(&f.svc, "random"), "least-conn");
	f.svc.lb_strategy = "";
	ck_assert_str_eq(em_lb_strategy_for(&f.svc, "random"), "random");
}
END_TEST

START_TEST(test_hooks_choose)
{
	struct em_lb *lb;
	struct em_snapshot_hooks hooks;
	struct fixture f;
	static const struct {
		const char *annotation, *affinity, *expect;
	} cases[] = {
		{ NULL, "None", "random" },		/* configured default */
		{ NULL, "ClientIP", "random" },
		{ "least-request:fails=5,eject=1s", "None", "least-request" },
		{ "least-conn", "None", "least-conn" },
		{ "consistent-hash:header=X-User", "None", "consistent-hash" },
		{ "no-such-strategy", "None", "random" },	/* falls back */
		{ "round-robin:::", "None", "round-robin" },
		{ "a-very-long-strategy-name-that-overflows-the-name-buffer-for-sure-xxxxxxxxxxxx",
		  "None", "random" },
	};

	em_test_expect_error("unknown default strategy 'nope'");	/* below, on purpose */
	ck_assert_int_eq(em_lb_new("random", NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct em_lb_port *lp;

		fixture_init(&f, 2, cases[i].annotation, cases[i].affinity);
		ck_assert_int_eq(hooks.port_init(hooks.ctx, &f.port), 0);
		ck_assert_ptr_nonnull(f.port.lb);
		ck_assert_ptr_null(em_lb_port_peek(&f.port));	/* not built yet */
		lp = em_lb_port_acquire(&f.port);
		ck_assert_ptr_nonnull(lp);
		ck_assert_ptr_eq(em_lb_port_peek(&f.port), lp);
		ck_assert_str_eq(em_lb_port_strategy(lp), cases[i].expect);
		ck_assert_str_eq(em_lb_port_label(lp), "default/svc:80");
		em_lb_port_put(lp);
		hooks.port_fini(hooks.ctx, &f.port);
		ck_assert_ptr_null(f.port.lb);
	}
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
	/* An unknown default is a configuration error. */
	ck_assert_int_eq(em_lb_new("nope", NULL, 0, &lb), -ENOENT);
	em_log_reset();
}
END_TEST

/* A connection routed with a snapshot keeps the balancer alive after the
 * snapshot is freed, and its release lands on live memory. */
START_TEST(test_refcount_outlives_snapshot)
{
	struct em_lb *lb;
	struct em_snapshot_hooks hooks;
	struct fixture f;
	struct em_lb_port *conn_ref;
	const struct em_balancer_backend *b;
	int idx;

	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
	fixture_init(&f, 2, NULL, "None");
	ck_assert_int_eq(hooks.port_init(hooks.ctx, &f.port), 0);
	conn_ref = em_lb_port_acquire(&f.port);	/* what resolve does */
	ck_assert_ptr_nonnull(conn_ref);
	idx = em_lb_port_pick(conn_ref, NULL, 0, -1, 0);
	ck_assert_int_ge(idx, 0);
	hooks.port_fini(hooks.ctx, &f.port);	/* the snapshot goes away */
	/* Scribble over the snapshot's memory: the port must not need it. */
	memset(&f, 0xa5, sizeof(f));
	ck_assert_int_eq(em_lb_port_live(), 1);
	b = em_lb_port_backend(conn_ref, idx);
	ck_assert_int_eq(b->family, AF_INET);
	ck_assert_uint_eq(b->port, 8080);
	ck_assert_str_eq(b->pod, "default/pod");
	ck_assert_str_eq(em_lb_port_label(conn_ref), "default/svc:80");
	em_lb_port_release(conn_ref, idx, EM_BALANCER_OK);
	em_lb_port_put(conn_ref);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
}
END_TEST

/* ---- lazy balancers ------------------------------------------------------ */

/* port_init allocates nothing: a snapshot of thousands of ports that are
 * never connected to costs no balancer memory; finishing them is fine. */
START_TEST(test_lazy_unused_ports)
{
	enum { N = 500 };
	static struct fixture fs[N];
	struct em_snapshot_hooks hooks;
	struct mallinfo2 before, after;
	struct em_lb *lb;

	em_log_reset();
	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
	for (size_t i = 0; i < N; i++)
		fixture_init(&fs[i], 1 + i % MAXB, i % 3 ? NULL : "least-conn",
			     i % 2 ? "None" : "ClientIP");
	int failed = 0;
	/* No ck_assert inside the window: with CK_FORK=no (valgrind, qemu)
	 * Check itself allocates to record each assertion's location. */
	before = mallinfo2();
	for (size_t i = 0; i < N; i++)
		failed += hooks.port_init(hooks.ctx, &fs[i].port) != 0;
	after = mallinfo2();
	ck_assert_int_eq(failed, 0);
	ck_assert_uint_eq(after.uordblks, before.uordblks);
	ck_assert_int_eq(em_lb_port_live(), 0);
	for (size_t i = 0; i < N; i++) {
		ck_assert_ptr_nonnull(fs[i].port.lb);		/* marked for later */
		ck_assert_ptr_null(em_lb_port_peek(&fs[i].port));
	}
	for (size_t i = 0; i < N; i++) {
		hooks.port_fini(hooks.ctx, &fs[i].port);	/* never used */
		ck_assert_ptr_null(fs[i].port.lb);
		hooks.port_fini(hooks.ctx, &fs[i].port);	/* and again: a no-op */
	}
	ck_assert_int_eq(em_lb_port_live(), 0);
	/* A finished port, or one never given hooks, has no balancer. */
	errno = 0;
	ck_assert_ptr_null(em_lb_port_acquire(&fs[0].port));
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
	ck_assert_int_eq(em_log_error_count(), 0);
}
END_TEST

/* Built once, then reused: the second connection continues the first
 * one's round robin instead of starting over. */
START_TEST(test_lazy_built_once)
{
	struct em_snapshot_hooks hooks;
	struct em_lb_port *a, *b;
	struct fixture f;
	struct em_lb *lb;
	int first, second;

	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
	fixture_init(&f, 3, NULL, "None");
	ck_assert_int_eq(hooks.port_init(hooks.ctx, &f.port), 0);
	a = em_lb_port_acquire(&f.port);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(em_lb_port_live(), 1);
	first = em_lb_port_pick(a, NULL, 0, -1, 0);
	em_lb_port_release(a, first, EM_BALANCER_OK);
	em_lb_port_put(a);			/* the connection ends */
	ck_assert_int_eq(em_lb_port_live(), 1);	/* the port keeps it */
	b = em_lb_port_acquire(&f.port);
	ck_assert_ptr_eq(b, a);
	second = em_lb_port_pick(b, NULL, 0, -1, 0);
	ck_assert_int_eq(second, (first + 1) % 3);
	em_lb_port_release(b, second, EM_BALANCER_OK);
	em_lb_port_put(b);
	hooks.port_fini(hooks.ctx, &f.port);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
}
END_TEST

#define RACERS 8

struct racer {
	struct em_service_port *port;
	pthread_barrier_t *go;
	struct em_lb_port *got;
	int picked;
};

static void *race_first_pick(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	r->got = em_lb_port_acquire(r->port);
	if (r->got) {
		r->picked = em_lb_port_pick(r->got, NULL, 0, -1, 0);
		em_lb_port_release(r->got, r->picked, EM_BALANCER_OK);
	}
	return NULL;
}

/* Several workers take the first connection to a port at the same moment:
 * exactly one balancer is installed, everybody uses it, the losers' copies
 * are gone, and the round robin saw every pick. */
START_TEST(test_lazy_concurrent_first_pick)
{
	struct em_snapshot_hooks hooks;
	pthread_barrier_t go;
	struct fixture f;
	struct em_lb *lb;

	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	hooks = em_lb_snapshot_hooks(lb);
	for (int round = 0; round < 50; round++) {
		struct racer r[RACERS];
		pthread_t t[RACERS];
		int seen[RACERS] = { 0 };

		fixture_init(&f, RACERS, NULL, "None");
		ck_assert_int_eq(hooks.port_init(hooks.ctx, &f.port), 0);
		pthread_barrier_init(&go, NULL, RACERS);
		for (int i = 0; i < RACERS; i++) {
			r[i] = (struct racer){ .port = &f.port, .go = &go };
			ck_assert_int_eq(pthread_create(&t[i], NULL, race_first_pick, &r[i]), 0);
		}
		for (int i = 0; i < RACERS; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		ck_assert_int_eq(em_lb_port_live(), 1);
		ck_assert_ptr_nonnull(em_lb_port_peek(&f.port));
		for (int i = 0; i < RACERS; i++) {
			ck_assert_ptr_eq(r[i].got, em_lb_port_peek(&f.port));
			ck_assert_int_ge(r[i].picked, 0);
			seen[r[i].picked]++;
		}
		/* One shared ticket: 8 picks over 8 backends hit each once. */
		for (int i = 0; i < RACERS; i++)
			ck_assert_int_eq(seen[i], 1);
		for (int i = 0; i < RACERS; i++)
			em_lb_port_put(r[i].got);
		ck_assert_int_eq(em_lb_port_live(), 1);
		hooks.port_fini(hooks.ctx, &f.port);
		ck_assert_int_eq(em_lb_port_live(), 0);
	}
	em_lb_free(lb);
}
END_TEST

/* On-demand labels: two in one log line stay distinct, and a long name is
 * truncated rather than overflowing. */
/* Counters behind the metrics and the status command. */
START_TEST(test_port_counters)
{
	struct fixture f;
	struct em_lb_port *lp = new_port(&f, "round-robin", 2);
	struct em_lb_port_stats ps;
	struct em_lb_backend_stats b0, b1;
	int first, second;

	first = em_lb_port_pick(lp, NULL, 0, -1, 0);
	em_lb_port_release(lp, first, EM_BALANCER_FAILED);
	second = em_lb_port_pick(lp, NULL, 0, first, 1);
	ck_assert_int_ne(first, second);
	em_lb_port_release(lp, second, EM_BALANCER_OK);
	em_lb_port_release(lp, em_lb_port_pick(lp, NULL, 0, -1, 0), EM_BALANCER_OK);
	em_lb_port_get_stats(lp, &ps);
	ck_assert_uint_eq(ps.requests, 2);
	ck_assert_uint_eq(ps.retries, 1);
	em_lb_port_backend_stats(lp, first, &b0);
	em_lb_port_backend_stats(lp, second, &b1);
	ck_assert_uint_eq(b0.picks + b1.picks, 3);
	ck_assert_uint_eq(b0.failures, 1);
	ck_assert_uint_eq(b1.failures, 0);
	ck_assert(!b0.healthy);
	ck_assert(b1.healthy);
	em_lb_port_put(lp);
}
END_TEST

START_TEST(test_label_on_demand)
{
	struct fixture f, g;
	struct em_lb_port *a, *b;
	char small[8];
	char longname[300];

	fixture_init(&f, 1, NULL, "None");
	a = em_lb_port_new(&em_lb_round_robin_ops, &f.port, NULL);
	fixture_init(&g, 1, NULL, "None");
	g.svc.ns = "other";
	g.port.port = 443;
	b = em_lb_port_new(&em_lb_round_robin_ops, &g.port, NULL);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	const char *la = em_lb_port_label(a), *lb_ = em_lb_port_label(b);
	ck_assert_str_eq(la, "default/svc:80");
	ck_assert_str_eq(lb_, "other/svc:443");
	ck_assert_str_eq(em_lb_port_format_label(a, small, sizeof(small)), "default");
	em_lb_port_put(b);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	g.svc.name = longname;
	b = em_lb_port_new(&em_lb_round_robin_ops, &g.port, NULL);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_lt(strlen(em_lb_port_label(b)), sizeof(longname));
	em_lb_port_put(b);
	em_lb_port_put(a);
	ck_assert_int_eq(em_lb_port_live(), 0);
}
END_TEST

START_TEST(test_plugin_load)
{
	const struct em_balancer_ops *ops;
	long (*in_flight)(void);
	struct fixture f;
	struct em_lb_port *lp;
	void *handle;
	char err[256];
	int idx;

	ck_assert_int_eq(em_lb_load_plugin(EM_LB_TEST_PLUGIN, &ops, &handle, err,
					   sizeof(err)), 0);
	ck_assert_str_eq(ops->name, "first-backend");
	*(void **)&in_flight = dlsym(handle, "first_backend_in_flight");
	ck_assert(in_flight != NULL);
	fixture_init(&f, 3, NULL, "None");
	lp = em_lb_port_new(ops, &f.port, NULL);
	ck_assert_ptr_nonnull(lp);
	idx = em_lb_port_pick(lp, NULL, 0, -1, 0);
	ck_assert_int_eq(idx, 0);
	ck_assert_int_eq(in_flight(), 1);
	em_lb_port_release(lp, idx, EM_BALANCER_FAILED);
	ck_assert_int_eq(in_flight(), 0);
	idx = em_lb_port_pick(lp, NULL, 0, -1, 0);	/* 0 failed: standby */
	ck_assert_int_eq(idx, 1);
	em_lb_port_release(lp, idx, EM_BALANCER_OK);
	em_lb_port_put(lp);
	dlclose(handle);
}
END_TEST

/* A plugin gets the core's peer view: an ejected backend is not usable
 * to it either; state copies respect the caller's (older, smaller) size. */
START_TEST(test_plugin_sees_peers)
{
	const struct em_balancer_ops *ops;
	struct em_balancer_peer_state st;
	struct fixture f;
	struct em_lb_port *lp;
	void *handle;
	char err[256];

	ck_assert_int_eq(em_lb_load_plugin(EM_LB_TEST_PLUGIN, &ops, &handle, err,
					   sizeof(err)), 0);
	fixture_init(&f, 3, NULL, "None");
	lp = em_lb_port_new(ops, &f.port, NULL);
	ck_assert_ptr_nonnull(lp);
	ck_assert_int_eq(pick_once(lp), 0);
	/* Five 503s: the plugin does not count them, the core does and
	 * ejects 0, which the plugin sees through req->peers. */
	for (int i = 0; i < 5; i++) {
		struct em_balancer_result r503 = { .outcome = EM_BALANCER_OK,
						   .http_status = 503 };

		ck_assert_int_eq(em_lb_port_pick(lp, NULL, 0, -1, 0), 0);
		em_lb_port_release_result(lp, 0, &r503);
	}
	ck_assert_int_eq(em_lb_port_pick(lp, NULL, 0, -1, 0), 1);
	em_lb_port_release(lp, 1, EM_BALANCER_OK);
	ck_assert_int_eq(pick_once(lp), 1);
	/* An older caller's struct: only its fields are written. */
	memset(&st, 0x5a, sizeof(st));
	st.size = offsetof(struct em_balancer_peer_state, latency_ewma_us);
	ck_assert_int_eq(em_lb_port_peer_state(lp, 0, &st), 0);
	ck_assert_uint_eq(st.flags, EM_BALANCER_PEER_EJECTED);
	ck_assert_uint_eq(st.weight, 1);
	ck_assert_uint_eq(st.ejections, 1);
	ck_assert_uint_eq(st.picks, 0x5a5a5a5a5a5a5a5aULL);	/* untouched */
	ck_assert_int_eq(em_lb_port_peer_state(lp, 3, &st), -1);
	em_lb_port_put(lp);
	dlclose(handle);
}
END_TEST

START_TEST(test_plugin_in_config)
{
	char *paths[] = { (char *)EM_LB_TEST_PLUGIN };
	struct em_lb *lb;
	struct em_snapshot_hooks hooks;
	struct fixture f;

	em_test_expect_error("which already exists");	/* the plugin loaded twice */

	ck_assert_int_eq(em_lb_new("first-backend", paths, 1, &lb), 0);
	ck_assert_ptr_nonnull(em_lb_lookup(lb, "first-backend"));
	ck_assert_ptr_nonnull(em_lb_lookup(lb, "round-robin"));
	hooks = em_lb_snapshot_hooks(lb);
	fixture_init(&f, 2, NULL, "None");
	ck_assert_int_eq(hooks.port_init(hooks.ctx, &f.port), 0);
	struct em_lb_port *lp = em_lb_port_acquire(&f.port);
	ck_assert_ptr_nonnull(lp);
	ck_assert_str_eq(em_lb_port_strategy(lp), "first-backend");
	em_lb_port_put(lp);
	hooks.port_fini(hooks.ctx, &f.port);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
	/* The same plugin twice: its name is taken. */
	char *twice[] = { (char *)EM_LB_TEST_PLUGIN, (char *)EM_LB_TEST_PLUGIN };
	ck_assert_int_eq(em_lb_new(NULL, twice, 2, &lb), -EEXIST);
	em_log_reset();
}
END_TEST

START_TEST(test_plugin_refused)
{
	const struct em_balancer_ops *ops = NULL;
	void *handle = NULL;
	char err[256];

	ck_assert_int_eq(em_lb_load_plugin(EM_LB_TEST_PLUGIN_BAD_ABI, &ops, &handle,
					   err, sizeof(err)), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "ABI version"));
	ck_assert_int_eq(em_lb_load_plugin("/nonexistent/plugin.so", &ops, &handle,
					   err, sizeof(err)), -ENOENT);
	/* A name the loader would search for: refused before dlopen. */
	ck_assert_int_eq(em_lb_load_plugin("libm.so.6", &ops, &handle, err,
					   sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "absolute"));
	/* A shared object that is no plugin: the C library, by its path. */
	Dl_info info;
	ck_assert(dladdr((void *)stdout, &info) && info.dli_fname[0] == '/');
	ck_assert_int_eq(em_lb_load_plugin(info.dli_fname, &ops, &handle, err,
					   sizeof(err)), -ENOEXEC);
	ck_assert_ptr_null(ops);
}
END_TEST

/* copy the test plugin to dir/name with mode; returns the path */
static void copy_plugin(const char *dir, mode_t mode, char *out, size_t len)
{
	char buf[65536];
	int in = open(EM_LB_TEST_PLUGIN, O_RDONLY), fd;
	ssize_t n;

	snprintf(out, len, "%s/plugin.so", dir);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert(in >= 0 && fd >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(fd, buf, (size_t)n), n);
	close(in);
	close(fd);
	ck_assert_int_eq(chmod(out, mode), 0);
}

START_TEST(test_plugin_untrusted_place)
{
	const struct em_balancer_ops *ops = NULL;
	char dir[] = "/tmp/em-plugin-XXXXXX", path[64], err[256];
	void *handle = NULL;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* a world-writable directory: anyone could have swapped the file */
	ck_assert_int_eq(chmod(dir, 0777), 0);
	copy_plugin(dir, 0644, path, sizeof(path));
	ck_assert_int_eq(em_lb_load_plugin(path, &ops, &handle, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "directory"));
	/* a private directory, but a world-writable file */
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(chmod(path, 0666), 0);
	ck_assert_int_eq(em_lb_load_plugin(path, &ops, &handle, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "file"));
	/* both fine: loads */
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(em_lb_load_plugin(path, &ops, &handle, err, sizeof(err)), 0);
	dlclose(handle);
	unlink(path);
	rmdir(dir);
}
END_TEST

Suite *lb_suite(void)
{
	Suite *s = suite_create("lb");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "find_builtins", test_find_builtins },
		{ "strategy_for", test_strategy_for },
		{ "hooks_choose", test_hooks_choose },
		{ "refcount_outlives_snapshot", test_refcount_outlives_snapshot },
		{ "lazy_unused_ports", test_lazy_unused_ports },
		{ "lazy_built_once", test_lazy_built_once },
		{ "lazy_concurrent_first_pick", test_lazy_concurrent_first_pick },
		{ "label_on_demand", test_label_on_demand },
		{ "port_counters", test_port_counters },
		{ "plugin_load", test_plugin_load },
		{ "plugin_sees_peers", test_plugin_sees_peers },
		{ "plugin_in_config", test_plugin_in_config },
		{ "plugin_refused", test_plugin_refused },
		{ "plugin_untrusted_place", test_plugin_untrusted_place },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
