/* test-registry-kinds.c — every kind of Service in the registry (issue
 * 15): ExternalName (target validated and normalised, no fake IP, no
 * backends), NodePort/LoadBalancer like ClusterIP, UDP and SCTP ports,
 * services without ports, TCP and UDP on one port number. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registry/manifest.h"
#include "registry/objects.h"
#include "registry/ports.h"
#include "registry/registry.h"
#include "util/log.h"
#include "testlog.h"

Suite *registry_kinds_suite(void);

static struct em_registry *reg;
static struct em_source_sink sink;

static void setup(void)
{
	struct em_registry_config c = { .fake_ipv6_range = "fd00:e3::/64" };
	urcu_memb_register_thread();
	reg = em_registry_new(&c);
	ck_assert_ptr_nonnull(reg);
	sink = em_registry_sink(reg);
}

static void teardown(void)
{
	em_registry_free(reg);
	urcu_memb_unregister_thread();
}

static void load(const char *yaml)
{
	json_t *items;
	struct em_manifest_error err;
	int r = em_manifest_parse(yaml, strlen(yaml), &items, &err);
	ck_assert_msg(r == 0, "%d:%d %s", err.line, err.column, err.reason);
	ck_assert_int_eq(sink.replace(sink.ctx, "test", NULL, items), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, "test"), 0);
}

START_TEST(external_name_normalised)
{
	static const struct { const char *in, *out; } ok[] = {
		{ "db.example.com", "db.example.com" },
		{ "DB.Example.COM.", "db.example.com" },
		{ "a", "a" },
		{ "x-1.y-2.z", "x-1.y-2.z" },
		{ "1.2.3.4", "1.2.3.4" },
	};
	static const char *const bad[] = {
		"", ".", "..", "a..b", "-a.b", "a-.b", "a.b-", "a_b.c", "a b", "db.example.com..",
		".db.example.com", "caf\xc3\xa9.test",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test",	/* 64 */
	};
	char long_name[300];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *n = em_external_name_normalise(ok[i].in);
		ck_assert_ptr_nonnull(n);
		ck_assert_str_eq(n, ok[i].out);
		free(n);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_msg(em_external_name_normalise(bad[i]) == NULL, "accepted \"%s\"", bad[i]);
		ck_assert_int_eq(errno, EINVAL);
	}
	/* 253 bytes is the limit, a trailing dot not counted */
	memset(long_name, 'a', sizeof(long_name));
	for (int i = 63; i < 253; i += 64)
		long_name[i] = '.';
	long_name[253] = '\0';
	char *n = em_external_name_normalise(long_name);
	ck_assert_ptr_nonnull(n);
	free(n);
	long_name[253] = '.';
	long_name[254] = '\0';
	n = em_external_name_normalise(long_name);
	ck_assert_ptr_nonnull(n);
	free(n);
	long_name[253] = 'a';
	ck_assert_ptr_null(em_external_name_normalise(long_name));
}
END_TEST

START_TEST(external_name_object)
{
	json_t *j = json_loads("{\"kind\":\"Service\",\"metadata\":{\"name\":\"e\"},"
			       "\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"bad_name\"}}", 0, NULL);
	struct em_obj *o;
	const char *why = NULL;

	ck_assert_int_eq(em_obj_from_json(j, &o, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "externalName"));
	json_decref(j);
	/* missing externalName: rejected too */
	j = json_loads("{\"kind\":\"Service\",\"metadata\":{\"name\":\"e\"},"
		       "\"spec\":{\"type\":\"ExternalName\"}}", 0, NULL);
	ck_assert_int_eq(em_obj_from_json(j, &o, &why), -EINVAL);
	json_decref(j);
	/* externalName on another type is ignored, as the API server does */
	j = json_loads("{\"kind\":\"Service\",\"metadata\":{\"name\":\"e\"},"
		       "\"spec\":{\"type\":\"ClusterIP\",\"externalName\":\"x.y\"}}", 0, NULL);
	ck_assert_int_eq(em_obj_from_json(j, &o, &why), 0);
	ck_assert_ptr_null(o->u.svc.external_name);
	em_obj_free(o);
	json_decref(j);
}
END_TEST

#define PODS \
	"kind: Pod\nmetadata: {name: p1, labels: {app: a}}\n" \
	"spec: {containers: [{name: c, ports: [{containerPort: 53, protocol: UDP}, {containerPort: 53, protocol: TCP}, {containerPort: 8053, protocol: TCP}]}]}\n" \
	"status: {phase: Running, podIP: 10.0.0.1, hostIP: 192.168.0.9, conditions: [{type: Ready, status: \"True\"}]}\n"

START_TEST(every_kind_in_the_snapshot)
{
	uint64_t errors = em_log_error_count();

	em_log_set_level(EM_LOG_ERR);	/* the SCTP line is a warning */
	load(PODS "---\n"
	     "kind: Service\nmetadata: {name: ext}\n"
	     "spec: {type: ExternalName, externalName: Db.Example.Test., selector: {app: a}, ports: [{port: 53}]}\n"
	     "---\n"
	     "kind: Service\nmetadata: {name: np}\n"
	     "spec: {type: NodePort, selector: {app: a}, ports: [{name: d, port: 53, protocol: UDP, nodePort: 30053},"
	     " {name: t, port: 53, protocol: TCP, targetPort: 8053}]}\n"
	     "---\n"
	     "kind: Service\nmetadata: {name: lb}\n"
	     "spec: {type: LoadBalancer, selector: {app: a}, ports: [{port: 53, protocol: TCP}]}\n"
	     "---\n"
	     "kind: Service\nmetadata: {name: sctp}\n"
	     "spec: {selector: {app: a}, ports: [{port: 9999, protocol: SCTP}]}\n"
	     "---\n"
	     "kind: Service\nmetadata: {name: none}\n"
	     "spec: {selector: {app: a}}\n");
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(reg);
	const struct em_service *ext = em_snapshot_find_name(s, "default", 7, "ext", 3);
	const struct em_service *np = em_snapshot_find_name(s, "default", 7, "np", 2);
	const struct em_service *lb = em_snapshot_find_name(s, "default", 7, "lb", 2);
	const struct em_service *sctp = em_snapshot_find_name(s, "default", 7, "sctp", 4);
	const struct em_service *none = em_snapshot_find_name(s, "default", 7, "none", 4);
	ck_assert(ext && np && lb && sctp && none);
	/* ExternalName: the normalised target, no fake IP, no backends */
	ck_assert_str_eq(ext->external_name, "db.example.test");
	ck_assert(!ext->has_fake4 && !ext->has_fake6);
	ck_assert_uint_eq(ext->ports[0].n_backends, 0);
	/* NodePort: like ClusterIP; UDP and TCP on 53, each to its own target */
	ck_assert(np->has_fake4 && np->has_fake6 && !np->external_name);
	const struct em_service_port *u = em_service_find_port(np, IPPROTO_UDP, 53);
	const struct em_service_port *t = em_service_find_port(np, IPPROTO_TCP, 53);
	ck_assert(u && t && u != t);
	ck_assert_uint_eq(u->n_backends, 1);
	ck_assert_uint_eq(u->backends[0].port, 53);
	ck_assert_uint_eq(t->n_backends, 1);
	ck_assert_uint_eq(t->backends[0].port, 8053);
	ck_assert_ptr_eq(em_snapshot_find_addr(s, AF_INET, &np->fake4), np);
	ck_assert(lb->has_fake4 && em_service_find_port(lb, IPPROTO_TCP, 53)->n_backends == 1);
	/* SCTP: resolves (fake IP), nothing to forward to */
	ck_assert(sctp->has_fake4);
	ck_assert_uint_eq(sctp->ports[0].ipproto, IPPROTO_SCTP);
	ck_assert_uint_eq(sctp->ports[0].n_backends, 0);
	/* no ports: resolves */
	ck_assert(none->has_fake4);
	ck_assert_uint_eq(none->n_ports, 0);
	urcu_memb_read_unlock();
	ck_assert_uint_eq(em_log_error_count(), errors);
	em_log_set_level(EM_LOG_INFO);
}
END_TEST

static TCase *kinds_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	return tc;
}

Suite *registry_kinds_suite(void)
{
	Suite *s = suite_create("registry_kinds");
	TCase *tc = kinds_case(s, "external-name");
	tcase_add_test(tc, external_name_normalised);
	tcase_add_test(tc, external_name_object);
	tc = kinds_case(s, "kinds");
	tcase_add_test(tc, every_kind_in_the_snapshot);
	return s;
}
