/* test-manifest.c — JSON/YAML manifests to objects, and normalisation. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/manifest.h"
#include "registry/objects.h"
#include "sources/source_file.h"
#include "testlog.h"

Suite *manifest_suite(void);

static json_t *parse_ok(const char *text)
{
	json_t *items;
	struct em_manifest_error err;
	int r = em_manifest_parse(text, strlen(text), &items, &err);
	ck_assert_msg(r == 0, "parse failed at %d:%d: %s", err.line, err.column, err.reason);
	return items;
}

static int parse_fail(const char *text, size_t len, struct em_manifest_error *err)
{
	json_t *items = (json_t *)1;
	int r = em_manifest_parse(text, len, &items, err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(items);
	ck_assert(err->reason[0] != '\0');
	return r;
}

static char *data_path(const char *name)
{
	const char *d = getenv("EM_TEST_DATA");
	char *p;
	ck_assert_int_ne(asprintf(&p, "%s/registry/%s", d ? d : "tests/data", name), -1);
	return p;
}

START_TEST(yaml_single_object)
{
	json_t *items = parse_ok("kind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n");
	ck_assert_uint_eq(json_array_size(items), 1);
	json_t *o = json_array_get(items, 0);
	ck_assert_str_eq(json_string_value(json_object_get(o, "kind")), "Service");
	json_t *port = json_object_get(json_array_get(json_object_get(json_object_get(o, "spec"), "ports"), 0), "port");
	ck_assert(json_is_integer(port));
	ck_assert_int_eq(json_integer_value(port), 80);
	json_decref(items);
}
END_TEST

START_TEST(yaml_scalar_typing)
{
	json_t *items = parse_ok("kind: X\na: \"80\"\nb: '80'\nc: 80\nd: true\ne: yes\nf: ~\ng:\n"
				 "h: null\ni: -5\nj: 1.5\nk: 0x10\nl: 080\nm: off\nn: !!str 12\n"
				 "80: key\ntrue: key2\n");
	json_t *o = json_array_get(items, 0);
	ck_assert_str_eq(json_string_value(json_object_get(o, "a")), "80");
	ck_assert_str_eq(json_string_value(json_object_get(o, "b")), "80");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "c")), 80);
	ck_assert(json_is_true(json_object_get(o, "d")));
	ck_assert(json_is_true(json_object_get(o, "e")));
	ck_assert(json_is_null(json_object_get(o, "f")));
	ck_assert(json_is_null(json_object_get(o, "g")));
	ck_assert(json_is_null(json_object_get(o, "h")));
	ck_assert_int_eq(json_integer_value(json_object_get(o, "i")), -5);
	ck_assert(json_is_real(json_object_get(o, "j")));
	ck_assert_int_eq(json_integer_value(json_object_get(o, "k")), 16);
	ck_assert_str_eq(json_string_value(json_object_get(o, "l")), "080");
	ck_assert(json_is_false(json_object_get(o, "m")));
	ck_assert_str_eq(json_string_value(json_object_get(o, "n")), "12");
	ck_assert_str_eq(json_string_value(json_object_get(o, "80")), "key");
	ck_assert_str_eq(json_string_value(json_object_get(o, "true")), "key2");
	json_decref(items);
}
END_TEST

START_TEST(yaml_multi_document)
{
	json_t *items = parse_ok("---\nkind: Pod\nmetadata: {name: a}\n---\n---\n"
				 "kind: Service\nmetadata: {name: b}\n...\n");
	ck_assert_uint_eq(json_array_size(items), 2);
	json_decref(items);
}
END_TEST

START_TEST(yaml_typed_list)
{
	json_t *items = parse_ok("kind: PodList\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n");
	ck_assert_uint_eq(json_array_size(items), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 1), "kind")), "Pod");
	json_decref(items);
}
END_TEST

START_TEST(json_list_and_concatenated)
{
	json_t *items = parse_ok("{\"kind\":\"ServiceList\",\"items\":[{\"metadata\":{\"name\":\"a\"}}]}\n"
				 "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}");
	ck_assert_uint_eq(json_array_size(items), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "kind")), "Service");
	json_decref(items);
}
END_TEST

START_TEST(kubectl_output_files)
{
	const char *files[] = { "walkthrough.yaml", "walkthrough.json", "kubectl-services.yaml" };
	const size_t counts[] = { 2, 2, 2 };
	for (size_t i = 0; i < 3; i++) {
		char *p = data_path(files[i]);
		json_t *items;
		struct em_manifest_error err;
		int r = em_source_file_load(p, &items, &err);
		ck_assert_msg(r == 0, "%s: %d:%d %s", p, err.line, err.column, err.reason);
		ck_assert_uint_eq(json_array_size(items), counts[i]);
		json_decref(items);
		free(p);
	}
}
END_TEST

START_TEST(yaml_error_has_line)
{
	struct em_manifest_error err;
	const char *t = "kind: Service\nmetadata:\n  name: a\n  labels: [a, b\nspec: {}\n";
	parse_fail(t, strlen(t), &err);
	ck_assert_int_ge(err.line, 4);
}
END_TEST

START_TEST(json_error_has_line)
{
	struct em_manifest_error err;
	const char *t = "{\n\"kind\": \"Service\",\n\"metadata\": {\"name\": \"a\",}\n}\n";
	parse_fail(t, strlen(t), &err);
	ck_assert_int_eq(err.line, 3);
}
END_TEST

START_TEST(truncated_inputs)
{
	const char *t = "{\"kind\":\"List\",\"items\":[{\"kind\":\"Service\",\"metadata\":{\"name\":\"x\"}}]}";
	const char *y = "kind: List\nitems:\n- kind: Service\n  metadata:\n    name: \"x\"\n";
	for (size_t n = 0; n < strlen(t); n++) {
		json_t *items;
		struct em_manifest_error err;
		if (em_manifest_parse(t, n, &items, &err) == 0)
			json_decref(items);
	}
	for (size_t n = 0; n < strlen(y); n++) {
		json_t *items;
		struct em_manifest_error err;
		if (em_manifest_parse(y, n, &items, &err) == 0)
			json_decref(items);
	}
}
END_TEST

START_TEST(deep_nesting_refused)
{
	size_t n = 100000;
	char *b = malloc(2 * n + 16);
	memcpy(b, "a: ", 3);
	memset(b + 3, '[', n);
	memset(b + 3 + n, ']', n);
	struct em_manifest_error err;
	parse_fail(b, 2 * n + 3, &err);
	ck_assert_ptr_nonnull(strstr(err.reason, "nesting"));
	/* JSON too: jansson's own depth limit. */
	memset(b, '[', n);
	memset(b + n, ']', n);
	parse_fail(b, 2 * n, &err);
	free(b);
}
END_TEST

START_TEST(alias_bomb_refused)
{
	const char *t = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
			"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c]\n";
	struct em_manifest_error err;
	parse_fail(t, strlen(t), &err);
	ck_assert_ptr_nonnull(strstr(err.reason, "alias"));
	ck_assert_int_eq(err.line, 2);
}
END_TEST

START_TEST(non_utf8_and_binary)
{
	struct em_manifest_error err;
	const char bad[] = "kind: Service\nmetadata:\n  name: \xff\xfe\n";
	parse_fail(bad, sizeof(bad) - 1, &err);
	const char nul[] = "kind: Ser\0vice\n";
	json_t *items;
	if (em_manifest_parse(nul, sizeof(nul) - 1, &items, &err) == 0)
		json_decref(items);
	const char jbad[] = "{\"kind\": \"\xc3\x28\"}";
	parse_fail(jbad, sizeof(jbad) - 1, &err);
}
END_TEST

START_TEST(scalar_document_refused)
{
	struct em_manifest_error err;
	parse_fail("just a string\n", 14, &err);
	json_t *items = parse_ok("");
	ck_assert_uint_eq(json_array_size(items), 0);
	json_decref(items);
}
END_TEST

/* ---- normalisation ---- */

static struct em_obj *norm(const char *yaml, int expect)
{
	json_t *items = parse_ok(yaml);
	struct em_obj *o = NULL;
	const char *why;
	int r = em_obj_from_json(json_array_get(items, 0), &o, &why);
	ck_assert_msg(r == expect, "got %d (%s)", r, why ? why : "");
	json_decref(items);
	return o;
}

START_TEST(normalise_service)
{
	struct em_obj *o = norm("kind: Service\nmetadata:\n  name: s\n  namespace: ns1\n"
				"  annotations: {edgemesh.kubeedge.io/lb-strategy: random}\n"
				"spec:\n  clusterIP: 10.96.0.1\n  sessionAffinity: ClientIP\n"
				"  selector: {app: x, tier: \"1\"}\n  ports:\n"
				"  - {name: http-web, port: 80, targetPort: web}\n"
				"  - {name: dns, port: 53, protocol: UDP, targetPort: \"5353\"}\n"
				"  - {name: sctp, port: 9, protocol: SCTP}\n", 0);
	ck_assert_int_eq(o->kind, EM_OBJ_SERVICE);
	ck_assert_str_eq(o->ns, "ns1");
	struct em_obj_service *s = &o->u.svc;
	ck_assert_uint_eq(s->n_selector, 2);
	ck_assert(s->has_cip4 && !s->headless);
	ck_assert_str_eq(s->affinity, "ClientIP");
	ck_assert_str_eq(s->lb, "random");
	ck_assert_uint_eq(s->n_ports, 3);
	ck_assert_str_eq(s->ports[0].target_name, "web");
	ck_assert_int_eq(s->ports[0].app, EM_APP_HTTP);
	ck_assert_int_eq(s->ports[1].ipproto, IPPROTO_UDP);
	ck_assert_uint_eq(s->ports[1].target_num, 5353);
	ck_assert_ptr_null(s->ports[1].target_name);
	ck_assert_int_eq(s->ports[2].ipproto, IPPROTO_SCTP);
	ck_assert_uint_eq(s->ports[2].target_num, 9);
	em_obj_free(o);
}
END_TEST

START_TEST(normalise_wrong_types)
{
	/* Ports as strings, negative, huge, unknown protocol: those ports
	 * are dropped, the service stays. */
	struct em_obj *o = norm("kind: Service\nmetadata: {name: s}\nspec:\n  ports:\n"
				"  - {port: \"80\"}\n  - {port: -1}\n  - {port: 70000}\n"
				"  - {port: 99999999999999999999}\n  - {port: 81, protocol: ICMP}\n"
				"  - {port: 82, targetPort: 0}\n  - 7\n  - {port: 83, targetPort: []}\n"
				"  - {port: 84}\n", 0);
	ck_assert_str_eq(o->ns, "default");
	ck_assert_uint_eq(o->u.svc.n_ports, 2);
	ck_assert_uint_eq(o->u.svc.ports[0].port, 83);
	ck_assert_uint_eq(o->u.svc.ports[0].target_num, 83);
	ck_assert_uint_eq(o->u.svc.ports[1].port, 84);
	em_obj_free(o);
	norm("kind: Service\nmetadata: {namespace: x}\nspec: {}\n", -EINVAL);
	norm("kind: Service\nmetadata: {name: [1]}\n", -EINVAL);
	norm("kind: Service\nmetadata: {name: a/b}\nspec: {}\n", -EINVAL);
	norm("kind: Service\nmetadata: {name: a}\nspec: 5\n", -EINVAL);
	norm("kind: Deployment\nmetadata: {name: a}\n", -ENOTSUP);
	norm("kind: 5\nmetadata: {name: a}\n", -ENOTSUP);
	o = norm("kind: Pod\nmetadata: {name: p, labels: [1]}\nspec: {containers: 7}\nstatus: 9\n", 0);
	ck_assert(!o->u.pod.ready);
	em_obj_free(o);
}
END_TEST

#define POD_READY(extra_md, phase, ready) \
	"kind: Pod\nmetadata: {name: p" extra_md "}\nstatus:\n  phase: " phase "\n  podIP: 10.0.0.1\n" \
	"  conditions: [{type: Ready, status: \"" ready "\"}]\n"

START_TEST(normalise_pod_readiness)
{
	struct em_obj *o;
	o = norm(POD_READY("", "Running", "True"), 0);
	ck_assert(o->u.pod.ready && o->u.pod.has_pod_ip);
	em_obj_free(o);
	o = norm(POD_READY("", "Running", "False"), 0);
	ck_assert(!o->u.pod.ready);
	em_obj_free(o);
	o = norm(POD_READY("", "Pending", "True"), 0);
	ck_assert(!o->u.pod.ready);
	em_obj_free(o);
	o = norm(POD_READY(", deletionTimestamp: \"2024-01-01T00:00:00Z\"", "Running", "True"), 0);
	ck_assert(!o->u.pod.ready);
	em_obj_free(o);
}
END_TEST

START_TEST(normalise_endpoints_and_slice)
{
	struct em_obj *o = norm("kind: Endpoints\nmetadata: {name: e, namespace: n}\nsubsets:\n"
				"- addresses: [{ip: 10.1.1.1, targetRef: {kind: Pod, name: p1}}, {ip: bogus}, {ip: \"fd00::1\"}]\n"
				"  ports: [{name: a, port: 80}, {name: b, port: 0}]\n", 0);
	ck_assert_uint_eq(o->u.ep.n_subsets, 1);
	ck_assert_uint_eq(o->u.ep.subsets[0].n_addrs, 2);
	ck_assert_str_eq(o->u.ep.subsets[0].addrs[0].pod, "n/p1");
	ck_assert_int_eq(o->u.ep.subsets[0].addrs[1].ip.family, AF_INET6);
	ck_assert_uint_eq(o->u.ep.subsets[0].n_ports, 1);
	em_obj_free(o);
	o = norm("kind: EndpointSlice\nmetadata: {name: e-abc, namespace: n, labels: {kubernetes.io/service-name: e}}\n"
		 "endpoints:\n- addresses: [10.1.1.1]\n- addresses: [10.1.1.2]\n  conditions: {ready: false}\n"
		 "ports: [{name: a, port: 80}]\n", 0);
	ck_assert_str_eq(o->u.ep.service, "e");
	ck_assert_uint_eq(o->u.ep.subsets[0].n_addrs, 1);
	em_obj_free(o);
	norm("kind: EndpointSlice\nmetadata: {name: e-abc}\n", -EINVAL);
}
END_TEST

Suite *manifest_suite(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = em_test_tcase(s, "parse");
	tcase_add_test(tc, yaml_single_object);
	tcase_add_test(tc, yaml_scalar_typing);
	tcase_add_test(tc, yaml_multi_document);
	tcase_add_test(tc, yaml_typed_list);
	tcase_add_test(tc, json_list_and_concatenated);
	tcase_add_test(tc, kubectl_output_files);
	tc = em_test_tcase(s, "hostile");
	tcase_add_test(tc, yaml_error_has_line);
	tcase_add_test(tc, json_error_has_line);
	tcase_add_test(tc, truncated_inputs);
	tcase_add_test(tc, deep_nesting_refused);
	tcase_add_test(tc, alias_bomb_refused);
	tcase_add_test(tc, non_utf8_and_binary);
	tcase_add_test(tc, scalar_document_refused);
	tc = em_test_tcase(s, "normalise");
	tcase_add_test(tc, normalise_service);
	tcase_add_test(tc, normalise_wrong_types);
	tcase_add_test(tc, normalise_pod_readiness);
	tcase_add_test(tc, normalise_endpoints_and_slice);
	return s;
}
