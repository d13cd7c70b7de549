/* test-snapshot.c — lookups, hooks, publication under concurrent readers. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "registry/manifest.h"
#include "registry/registry.h"
#include "testlog.h"

Suite *snapshot_suite(void);

static int inits, finis;

static int hook_init(void *ctx, struct em_service_port *p)
{
	(void)ctx;
	inits++;
	p->lb = p;
	return p->port == 666 ? -EINVAL : 0;	/* a failing init is not fini'd */
}

static void hook_fini(void *ctx, struct em_service_port *p)
{
	(void)ctx;
	ck_assert_ptr_eq(p->lb, p);
	finis++;
}

static struct em_registry *new_reg(const char *domain)
{
	struct em_registry_config c = {
		.cluster_domain = domain,
		.fake_ipv6_range = "fd9e:6d65:7368::/64",
		.hooks = { .port_init = hook_init, .port_fini = hook_fini },
	};
	struct em_registry *r = em_registry_new(&c);
	ck_assert_ptr_nonnull(r);
	return r;
}

static void load(struct em_registry *r, const char *yaml)
{
	struct em_source_sink sink = em_registry_sink(r);
	json_t *items;
	struct em_manifest_error err;
	ck_assert_int_eq(em_manifest_parse(yaml, strlen(yaml), &items, &err), 0);
	ck_assert_int_eq(sink.replace(sink.ctx, "t", NULL, items), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, "t"), 0);
}

static const char *services =
	"kind: Service\nmetadata: {name: web, namespace: shop, annotations: {edgemesh.kubeedge.io/lb-strategy: random}}\n"
	"spec: {clusterIP: 10.96.3.4, sessionAffinity: ClientIP, ports: [{name: http, port: 80}, {port: 666}]}\n"
	"---\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec: {clusterIP: None, ports: [{port: 5432}]}\n";

START_TEST(lookups)
{
	urcu_memb_register_thread();
	struct em_registry *r = new_reg("Cluster.Local.");
	load(r, services);
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(r);
	ck_assert_str_eq(em_snapshot_domain(s), "cluster.local");
	ck_assert_uint_eq(em_snapshot_service_count(s), 2);
	/* Labels straight out of a packet: not NUL-terminated, any case. */
	const char pkt[] = "WEBxSHOPx";
	const struct em_service *w = em_snapshot_find_name(s, pkt + 4, 4, pkt, 3);
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->name, "web");
	ck_assert_str_eq(w->fqdn, "web.shop.svc.cluster.local");
	ck_assert_str_eq(w->session_affinity, "ClientIP");
	ck_assert_str_eq(w->lb_strategy, "random");
	ck_assert(w->has_fake4 && w->has_fake6 && w->has_cluster_ip4 && !w->headless);
	ck_assert_ptr_null(em_snapshot_find_name(s, "shop", 4, "we", 2));
	ck_assert_ptr_null(em_snapshot_find_name(s, "shop", 4, "webs", 4));
	ck_assert_ptr_null(em_snapshot_find_name(s, "sho", 3, "web", 3));
	ck_assert_ptr_eq(em_snapshot_find_addr(s, AF_INET, &w->fake4), w);
	ck_assert_ptr_eq(em_snapshot_find_addr(s, AF_INET6, &w->fake6), w);
	ck_assert_ptr_eq(em_snapshot_find_addr(s, AF_INET, &w->cluster_ip4), w);
	struct in_addr none = { htonl(0x01020304) };
	ck_assert_ptr_null(em_snapshot_find_addr(s, AF_INET, &none));
	ck_assert_ptr_null(em_snapshot_find_addr(s, AF_UNIX, &none));
	const struct em_service *db = em_snapshot_find_name(s, "shop", 4, "DB", 2);
	ck_assert(db && db->headless);
	ck_assert_uint_ne(db->fake4.s_addr, w->fake4.s_addr);
	ck_assert_ptr_eq(em_service_find_port(w, IPPROTO_TCP, 80)->service, w);
	ck_assert_int_eq(em_service_find_port(w, IPPROTO_TCP, 80)->app, EM_APP_HTTP);
	const struct em_service *first = em_snapshot_service_at(s, 0);
	ck_assert(first == w || first == db);
	ck_assert(em_snapshot_service_at(s, 1) == (first == w ? db : w));
	ck_assert_ptr_null(em_snapshot_service_at(s, 2));
	urcu_memb_read_unlock();
	em_registry_free(r);
	urcu_memb_unregister_thread();
}
END_TEST

START_TEST(empty_snapshot_at_creation)
{
	urcu_memb_register_thread();
	struct em_registry *r = new_reg(NULL);
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(r);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(em_snapshot_service_count(s), 0);
	ck_assert_ptr_null(em_snapshot_find_name(s, "a", 1, "b", 1));
	struct in_addr a = { 0 };
	ck_assert_ptr_null(em_snapshot_find_addr(s, AF_INET, &a));
	urcu_memb_read_unlock();
	em_registry_free(r);
	urcu_memb_unregister_thread();
}
END_TEST

START_TEST(hooks_paired)
{
	inits = finis = 0;
	struct em_registry *r = new_reg(NULL);
	load(r, services);
	ck_assert_int_eq(inits, 3);
	load(r, "kind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1}]}\n");
	ck_assert_int_eq(inits, 4);
	ck_assert_int_eq(finis, 2);	/* the first snapshot's two good ports */
	em_registry_free(r);
	ck_assert_int_eq(finis, 3);
}
END_TEST

static void upsert(struct em_registry *r, const char *src, const char *yaml)
{
	struct em_source_sink sink = em_registry_sink(r);
	json_t *items;
	struct em_manifest_error err;
	ck_assert_int_eq(em_manifest_parse(yaml, strlen(yaml), &items, &err), 0);
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
		ck_assert_int_eq(sink.upsert(sink.ctx, src, it), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, src), 0);
}

static const struct em_service *find(struct em_registry *r, const char *name)
{
	/* The registry is only changed by this thread: pointers stay valid
	 * until the next commit, enough for these comparisons. */
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(r), "default", 7,
							     name, strlen(name));
	urcu_memb_read_unlock();
	return svc;
}

START_TEST(entries_reused)
{
	/* An unchanged service keeps its entry (and balancer state) across
	 * commits; a change to its pods or endpoints rebuilds just it. */
	inits = finis = 0;
	urcu_memb_register_thread();
	struct em_registry *r = new_reg(NULL);
	upsert(r, "s", "kind: Service\nmetadata: {name: a}\nspec: {selector: {app: a}, ports: [{port: 80}]}\n"
		       "---\nkind: Service\nmetadata: {name: b}\nspec: {selector: {app: b}, ports: [{port: 80}]}\n"
		       "---\nkind: Service\nmetadata: {name: e}\nspec: {ports: [{port: 80}]}\n"
		       "---\nkind: Pod\nmetadata: {name: pa, labels: {app: a}}\nstatus: {phase: Running, podIP: 10.0.0.1, conditions: [{type: Ready, status: \"True\"}]}\n");
	ck_assert_int_eq(inits, 3);
	const struct em_service *a1 = find(r, "a"), *b1 = find(r, "b"), *e1 = find(r, "e");
	ck_assert_uint_eq(a1->ports[0].n_backends, 1);

	/* A pod for b: b rebuilt, a and e reused. */
	upsert(r, "s", "kind: Pod\nmetadata: {name: pb, labels: {app: b}}\nstatus: {phase: Running, podIP: 10.0.0.2, conditions: [{type: Ready, status: \"True\"}]}\n");
	ck_assert_ptr_eq(find(r, "a"), a1);
	ck_assert_ptr_eq(find(r, "e"), e1);
	(void)b1;	/* its memory may be reused: count rebuilds by port_init */
	ck_assert_uint_eq(find(r, "b")->ports[0].n_backends, 1);
	ck_assert_int_eq(inits, 4);
	ck_assert_int_eq(finis, 1);	/* old b, after the grace period */

	/* Endpoints for e: only e rebuilt. */
	const struct em_service *b2 = find(r, "b");
	upsert(r, "s", "kind: Endpoints\nmetadata: {name: e}\nsubsets: [{addresses: [{ip: 10.0.0.9}], ports: [{port: 81}]}]\n");
	ck_assert_ptr_eq(find(r, "a"), a1);
	ck_assert_ptr_eq(find(r, "b"), b2);
	ck_assert_uint_eq(find(r, "e")->ports[0].n_backends, 1);
	ck_assert_uint_eq(find(r, "e")->ports[0].backends[0].port, 81);
	ck_assert_int_eq(inits, 5);
	upsert(r, "s", "kind: Endpoints\nmetadata: {name: e}\nsubsets: [{addresses: [{ip: 10.0.0.9}], ports: [{port: 82}]}]\n");
	ck_assert_int_eq(inits, 6);
	ck_assert_uint_eq(find(r, "e")->ports[0].backends[0].port, 82);

	/* Pod a not ready any more: a rebuilt with no backends; back: one. */
	upsert(r, "s", "kind: Pod\nmetadata: {name: pa, labels: {app: a}}\nstatus: {phase: Pending}\n");
	ck_assert_int_eq(inits, 7);
	ck_assert_uint_eq(find(r, "a")->ports[0].n_backends, 0);
	upsert(r, "s", "kind: Pod\nmetadata: {name: pa, labels: {app: a}}\nstatus: {phase: Running, podIP: 10.0.0.5, conditions: [{type: Ready, status: \"True\"}]}\n");
	ck_assert_uint_eq(find(r, "a")->ports[0].n_backends, 1);
	ck_assert_uint_eq(ntohl(find(r, "a")->ports[0].backends[0].ip.v4.s_addr), 0x0a000005);

	/* The service object itself changed: rebuilt. */
	ck_assert_int_eq(inits, 8);
	upsert(r, "s", "kind: Service\nmetadata: {name: a}\nspec: {selector: {app: a}, ports: [{port: 8080}]}\n");
	ck_assert_int_eq(inits, 9);
	ck_assert_ptr_nonnull(em_service_find_port(find(r, "a"), IPPROTO_TCP, 8080));
	em_registry_free(r);
	ck_assert_int_eq(inits, finis);
	urcu_memb_unregister_thread();
}
END_TEST

START_TEST(fake_range_exhausted_counted)
{
	em_test_expect_error("fake IP range exhausted");	/* service c, on purpose */
	urcu_memb_register_thread();
	struct em_registry_config c = { .fake_ipv4_range = "192.0.2.0/30" };
	struct em_registry *r = em_registry_new(&c);
	ck_assert_ptr_nonnull(r);
	load(r, "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n"
		"kind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 1}]}\n---\n"
		"kind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 1}]}\n");
	struct em_registry_stats st;
	em_registry_get_stats(r, &st);
	ck_assert_uint_eq(st.services, 3);
	ck_assert_uint_eq(st.fake_exhausted, 1);
	int without = 0;
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(r);
	for (size_t i = 0; i < em_snapshot_service_count(s); i++) {
		const struct em_service *svc = em_snapshot_service_at(s, i);
		if (!svc->has_fake4)
			without++;
		else
			ck_assert_ptr_eq(em_snapshot_find_addr(s, AF_INET, &svc->fake4), svc);
	}
	urcu_memb_read_unlock();
	ck_assert_int_eq(without, 1);
	em_registry_free(r);
	urcu_memb_unregister_thread();
	{
		struct em_registry_config bad = { .fake_ipv4_range = "nonsense" };
		ck_assert_ptr_null(em_registry_new(&bad));
		ck_assert_int_eq(errno, EINVAL);
	}
}
END_TEST

/* Readers spin on lookups while the writer publishes; a reader must
 * always find a consistent service (ASan/valgrind catch use-after-free). */
static atomic_bool stop;

static void *reader(void *arg)
{
	struct em_registry *r = arg;
	unsigned long n = 0;
	urcu_memb_register_thread();
	while (!atomic_load(&stop)) {
		urcu_memb_read_lock();
		const struct em_snapshot *s = em_registry_current(r);
		const struct em_service *svc = em_snapshot_find_name(s, "default", 7, "x", 1);
		if (svc) {
			ck_assert_str_eq(svc->name, "x");
			ck_assert_uint_eq(svc->n_ports, 1);
			n += svc->ports[0].n_backends;
		}
		urcu_memb_read_unlock();
	}
	urcu_memb_unregister_thread();
	return (void *)n;
}

START_TEST(concurrent_readers)
{
	struct em_registry *r = new_reg(NULL);
	pthread_t t[2];
	atomic_store(&stop, false);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, reader, r);
	for (int i = 0; i < 200; i++) {
		char y[512];
		snprintf(y, sizeof(y),
			 "kind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n---\n"
			 "kind: Endpoints\nmetadata: {name: x}\nsubsets: [{addresses: [{ip: 10.0.%d.1}], ports: [{port: 80}]}]\n",
			 i % 250);
		load(r, y);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_ge(em_registry_generation(r), 200);
	em_registry_free(r);
}
END_TEST

static TCase *snapshot_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_set_timeout(tc, 60);
	return tc;
}

Suite *snapshot_suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = snapshot_case(s, "lookups");
	tcase_add_test(tc, lookups);
	tcase_add_test(tc, empty_snapshot_at_creation);
	tc = snapshot_case(s, "entries");
	tcase_add_test(tc, hooks_paired);
	tcase_add_test(tc, entries_reused);
	tc = snapshot_case(s, "fake-range");
	tcase_add_test(tc, fake_range_exhausted_counted);
	tc = snapshot_case(s, "concurrency");
	tcase_add_test(tc, concurrent_readers);
	return s;
}
