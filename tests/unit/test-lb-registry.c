/* test-lb-registry.c — what the balancers take from the registry: the pod
 * weight annotation, sessionAffinityConfig.clientIP.timeoutSeconds, and the
 * carried peer state through real commits (snapshot hooks, RCU grace
 * periods) rather than simulated ones. */
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>

#include "registry/manifest.h"
#include "registry/registry.h"
#include "suites.h"
#include "test-lb-common.h"
#include "util/log.h"
#include "testlog.h"

static struct em_registry *reg;
static struct em_source_sink sink;
static struct em_lb *lb;

static void setup(void)
{
	struct em_registry_config c = { 0 };

	urcu_memb_register_thread();
	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	c.hooks = em_lb_snapshot_hooks(lb);
	reg = em_registry_new(&c);
	ck_assert_ptr_nonnull(reg);
	sink = em_registry_sink(reg);
}

static void teardown(void)
{
	em_registry_free(reg);
	ck_assert_int_eq(em_lb_port_live(), 0);
	ck_assert_uint_eq(em_lb_state_count(lb), 0);
	em_lb_free(lb);
	urcu_memb_unregister_thread();
}

static void load(const char *yaml)
{
	struct em_manifest_error err;
	json_t *items;
	int r = em_manifest_parse(yaml, strlen(yaml), &items, &err);

	ck_assert_msg(r == 0, "%d:%d %s", err.line, err.column, err.reason);
	ck_assert_int_eq(sink.replace(sink.ctx, "t", NULL, items), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, "t"), 0);
	urcu_memb_synchronize_rcu();	/* the old snapshot's ports finish */
	urcu_memb_barrier();
}

#define POD(name, ip, weight) \
	"---\nkind: Pod\nmetadata: {name: " name ", namespace: default, labels: {app: x}" \
	weight "}\nspec:\n  containers:\n  - name: c\n" \
	"status:\n  phase: Running\n  podIP: " ip "\n  hostIP: 192.168.0.9\n" \
	"  conditions: [{type: Ready, status: \"True\"}]\n"
#define W(v) ", annotations: {edgemesh.kubeedge.io/weight: " v "}"
#define SVC(name, extra) \
	"---\nkind: Service\nmetadata: {name: " name ", namespace: default}\nspec:\n" \
	"  selector: {app: x}\n  ports: [{port: 80}]\n" extra

/* Weight of the backend at ip for service s (0: not found). */
static uint32_t weight_of(const char *svc_name, const char *ip)
{
	struct in_addr a;
	uint32_t w = 0;

	inet_pton(AF_INET, ip, &a);
	urcu_memb_read_lock();
	const struct em_service *s = em_snapshot_find_name(em_registry_current(reg), "default",
							   7, svc_name, strlen(svc_name));
	const struct em_service_port *p = s ? em_service_find_port(s, IPPROTO_TCP, 80) : NULL;
	for (size_t i = 0; p && i < p->n_backends; i++)
		if (p->backends[i].ip.v4.s_addr == a.s_addr)
			w = p->backends[i].weight;
	urcu_memb_read_unlock();
	return w;
}

static uint32_t timeout_of(const char *svc_name)
{
	uint32_t t = 0;

	urcu_memb_read_lock();
	const struct em_service *s = em_snapshot_find_name(em_registry_current(reg), "default",
							   7, svc_name, strlen(svc_name));
	if (s)
		t = s->affinity_timeout_s;
	urcu_memb_read_unlock();
	return t;
}

START_TEST(test_weight_annotation)
{
	load(POD("a", "10.0.0.1", W("\"3\"")) POD("b", "10.0.0.2", W("\"100\""))
	     POD("c", "10.0.0.3", W("\"0\"")) POD("d", "10.0.0.4", W("\"101\""))
	     POD("e", "10.0.0.5", W("\"abc\"")) POD("f", "10.0.0.6", W("\"2x\""))
	     POD("g", "10.0.0.7", W("7")) POD("h", "10.0.0.8", "")
	     POD("i", "10.0.0.9", W("\"-4\"")) SVC("s", ""));
	ck_assert_uint_eq(weight_of("s", "10.0.0.1"), 3);
	ck_assert_uint_eq(weight_of("s", "10.0.0.2"), 100);
	ck_assert_uint_eq(weight_of("s", "10.0.0.3"), 1);	/* out of range */
	ck_assert_uint_eq(weight_of("s", "10.0.0.4"), 1);
	ck_assert_uint_eq(weight_of("s", "10.0.0.5"), 1);	/* not a number */
	ck_assert_uint_eq(weight_of("s", "10.0.0.6"), 1);
	ck_assert_uint_eq(weight_of("s", "10.0.0.7"), 7);	/* unquoted YAML int */
	ck_assert_uint_eq(weight_of("s", "10.0.0.8"), 1);	/* none */
	ck_assert_uint_eq(weight_of("s", "10.0.0.9"), 1);
}
END_TEST

START_TEST(test_affinity_timeout_parsed)
{
	load(POD("a", "10.0.0.1", "")
	     SVC("t30", "  sessionAffinity: ClientIP\n"
			"  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}\n")
	     SVC("tdef", "  sessionAffinity: ClientIP\n")
	     SVC("tzero", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n")
	     SVC("tbig", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n")
	     SVC("tmax", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}\n")
	     SVC("tstr", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: \"30\"}}\n")
	     SVC("tbad", "  sessionAffinityConfig: {clientIP: 5}\n"));
	ck_assert_uint_eq(timeout_of("t30"), 30);
	ck_assert_uint_eq(timeout_of("tdef"), 10800);
	ck_assert_uint_eq(timeout_of("tzero"), 10800);
	ck_assert_uint_eq(timeout_of("tbig"), 10800);
	ck_assert_uint_eq(timeout_of("tmax"), 86400);
	ck_assert_uint_eq(timeout_of("tstr"), 10800);
	ck_assert_uint_eq(timeout_of("tbad"), 10800);
}
END_TEST

static struct em_lb_port *acquire(void)
{
	struct em_lb_port *lp;

	urcu_memb_read_lock();
	const struct em_service *s = em_snapshot_find_name(em_registry_current(reg), "default",
							   7, "s", 1);
	lp = s ? em_lb_port_acquire(em_service_find_port(s, IPPROTO_TCP, 80)) : NULL;
	urcu_memb_read_unlock();
	ck_assert_ptr_nonnull(lp);
	return lp;
}

static int index_of_ip(struct em_lb_port *lp, const char *ip)
{
	struct in_addr a;

	inet_pton(AF_INET, ip, &a);
	for (size_t i = 0; i < em_lb_port_n_backends(lp); i++)
		if (em_lb_port_backend(lp, (int)i)->ip.v4.s_addr == a.s_addr)
			return (int)i;
	return -1;
}

/* Through real commits: a pod joins, a weight changes, a pod leaves; the
 * ejection of a staying backend and the weights follow; the service is
 * deleted and its state goes. */
START_TEST(test_state_through_registry)
{
	struct em_lb_port *lp, *old;
	int idx, held;

	load(POD("a", "10.0.0.1", "") POD("b", "10.0.0.2", "") SVC("s", ""));
	lp = acquire();
	fail_n(lp, index_of_ip(lp, "10.0.0.2"), 1, EM_BALANCER_FAILED);
	held = em_lb_port_pick(lp, NULL, 0, -1, 0);		/* stays open */
	ck_assert_int_eq(held, index_of_ip(lp, "10.0.0.1"));
	old = lp;
	load(POD("a", "10.0.0.1", W("\"4\"")) POD("b", "10.0.0.2", "")
	     POD("c", "10.0.0.3", "") SVC("s", ""));
	lp = acquire();
	ck_assert_ptr_ne(lp, old);
	idx = index_of_ip(lp, "10.0.0.2");
	ck_assert(ejected(lp, idx));
	ck_assert_uint_eq(peer_state(lp, index_of_ip(lp, "10.0.0.1")).in_flight, 1);
	ck_assert_uint_eq(peer_state(lp, index_of_ip(lp, "10.0.0.1")).weight, 4);
	em_lb_port_put(lp);
	/* 10.0.0.1 leaves: the old connection's release still lands. */
	load(POD("b", "10.0.0.2", "") POD("c", "10.0.0.3", "") SVC("s", ""));
	lp = acquire();
	ck_assert_int_eq(index_of_ip(lp, "10.0.0.1"), -1);
	ck_assert(ejected(lp, index_of_ip(lp, "10.0.0.2")));
	ck_assert(peer_state(old, held).flags & EM_BALANCER_PEER_REMOVED);
	em_lb_port_release(old, held, EM_BALANCER_OK);
	em_lb_port_put(old);
	em_lb_port_put(lp);
	ck_assert_uint_eq(em_lb_state_count(lb), 1);
	load(POD("b", "10.0.0.2", ""));				/* service deleted */
	ck_assert_uint_eq(em_lb_state_count(lb), 0);
}
END_TEST

Suite *lb_registry_suite(void)
{
	Suite *s = suite_create("lb_registry");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "weight_annotation", test_weight_annotation },
		{ "affinity_timeout_parsed", test_affinity_timeout_parsed },
		{ "state_through_registry", test_state_through_registry },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = em_test_tcase(s, cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
	}
	return s;
}
