/* test-guard.c — names as the API server checks them, backend addresses
 * never dialed, log escaping; hostile input throughout. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "registry/guard.h"
#include "testlog.h"

Suite *guard_suite(void);

START_TEST(names)
{
	static const char *const good_labels[] = { "a", "default", "kube-system", "a1", "0abc",
		"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0" /* 63 */ };
	static const char *const bad_labels[] = { "", "-a", "a-", "A", "a_b", "a.b", "a\nb",
		"a b", "é", "a/b", "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01" /* 64 */ };
	char long_sub[300];

	for (size_t i = 0; i < sizeof(good_labels) / sizeof(*good_labels); i++)
		ck_assert_msg(em_name_is_dns1123_label(good_labels[i]), "%s", good_labels[i]);
	for (size_t i = 0; i < sizeof(bad_labels) / sizeof(*bad_labels); i++)
		ck_assert_msg(!em_name_is_dns1123_label(bad_labels[i]), "%s", bad_labels[i]);
	ck_assert(!em_name_is_dns1123_label(NULL));
	ck_assert(em_name_is_dns1035_label("nginx-svc"));
	ck_assert(!em_name_is_dns1035_label("1nginx"));
	ck_assert(em_name_is_dns1123_subdomain("nginx-0.web"));
	ck_assert(!em_name_is_dns1123_subdomain("nginx..web"));
	ck_assert(!em_name_is_dns1123_subdomain("nginx."));
	ck_assert(!em_name_is_dns1123_subdomain(".nginx"));
	ck_assert(!em_name_is_dns1123_subdomain("evil\n<3>forged"));
	memset(long_sub, 'a', sizeof(long_sub));
	for (size_t i = 60; i < 253; i += 61)
		long_sub[i] = '.';
	long_sub[253] = '\0';
	ck_assert(em_name_is_dns1123_subdomain(long_sub));
	long_sub[253] = 'a';
	long_sub[254] = '\0';
	ck_assert(!em_name_is_dns1123_subdomain(long_sub));
}
END_TEST

static struct em_ip ip4(const char *s)
{
	struct em_ip ip = { .family = AF_INET };
	ck_assert_int_eq(inet_pton(AF_INET, s, &ip.a.v4), 1);
	return ip;
}

static struct em_ip ip6(const char *s)
{
	struct em_ip ip = { .family = AF_INET6 };
	ck_assert_int_eq(inet_pton(AF_INET6, s, &ip.a.v6), 1);
	return ip;
}

START_TEST(addresses)
{
	static const char *const bad4[] = { "127.0.0.1", "127.1.2.3", "169.254.169.254",
		"169.254.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
		"255.255.255.255", "240.0.0.1", "198.18.0.9", "198.18.255.254", "10.96.0.1" };
	static const char *const good4[] = { "10.244.1.2", "192.168.1.1", "198.19.0.1",
		"10.95.255.255", "169.253.1.1", "8.8.8.8" };
	static const char *const bad6[] = { "::", "::1", "fe80::1", "febf::1", "ff02::1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "fd00:e3::5" };
	static const char *const good6[] = { "fd00:e4::1", "2001:db8::1", "::ffff:10.1.2.3", "fec0::1" };
	struct em_guard g = { 0 };

	ck_assert_int_eq(em_guard_deny(&g, "198.18.0.0/16"), 0);
	ck_assert_int_eq(em_guard_deny(&g, "fd00:e3::/64"), 0);
	ck_assert_int_eq(em_guard_deny(&g, "10.96.0.0/12"), 0);
	ck_assert_int_eq(em_guard_deny(&g, "not-a-cidr"), -EINVAL);
	ck_assert_int_eq(em_guard_deny(&g, "10.0.0.0"), -EINVAL);
	for (size_t i = 0; i < sizeof(bad4) / sizeof(*bad4); i++) {
		struct em_ip ip = ip4(bad4[i]);
		ck_assert_msg(em_guard_addr_why(&g, &ip) != NULL, "%s allowed", bad4[i]);
	}
	for (size_t i = 0; i < sizeof(good4) / sizeof(*good4); i++) {
		struct em_ip ip = ip4(good4[i]);
		ck_assert_msg(em_guard_addr_why(&g, &ip) == NULL, "%s refused", good4[i]);
	}
	for (size_t i = 0; i < sizeof(bad6) / sizeof(*bad6); i++) {
		struct em_ip ip = ip6(bad6[i]);
		ck_assert_msg(em_guard_addr_why(&g, &ip) != NULL, "%s allowed", bad6[i]);
	}
	for (size_t i = 0; i < sizeof(good6) / sizeof(*good6); i++) {
		struct em_ip ip = ip6(good6[i]);
		ck_assert_msg(em_guard_addr_why(&g, &ip) == NULL, "%s refused", good6[i]);
	}
}
END_TEST

static struct em_obj *obj(const char *json)
{
	json_error_t err;
	json_t *j = json_loads(json, 0, &err);
	struct em_obj *o = NULL;
	const char *why;

	ck_assert_msg(j != NULL, "%s", err.text);
	ck_assert_int_eq(em_obj_from_json(j, &o, &why), 0);
	json_decref(j);
	return o;
}

START_TEST(filter_endpoints)
{
	struct em_guard g = { 0 };
	struct em_obj *o = obj("{\"kind\":\"Endpoints\",\"metadata\":{\"name\":\"meta\",\"namespace\":\"default\"},"
		"\"subsets\":[{\"addresses\":[{\"ip\":\"127.0.0.1\"},{\"ip\":\"10.244.1.2\",\"targetRef\":"
		"{\"kind\":\"Pod\",\"name\":\"p\",\"namespace\":\"default\"}},{\"ip\":\"169.254.169.254\"},"
		"{\"ip\":\"198.18.0.9\",\"targetRef\":{\"kind\":\"Pod\",\"name\":\"q\",\"namespace\":\"default\"}}],"
		"\"ports\":[{\"port\":80}]}]}");
	const char *why;

	ck_assert_int_eq(em_guard_deny(&g, "198.18.0.0/16"), 0);
	ck_assert_int_eq(em_guard_check_names(o, &why), 0);
	ck_assert_uint_eq(em_guard_filter_addrs(&g, o, "test"), 3);
	ck_assert_uint_eq(g.rejected_addrs, 3);
	ck_assert_uint_eq(o->u.ep.subsets[0].n_addrs, 1);
	ck_assert_str_eq(o->u.ep.subsets[0].addrs[0].pod, "default/p");
	em_obj_free(o);

	o = obj("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"namespace\":\"default\"},"
		"\"status\":{\"podIP\":\"127.0.0.1\",\"hostIP\":\"10.77.0.1\"}}");
	ck_assert_uint_eq(em_guard_filter_addrs(&g, o, "test"), 1);
	ck_assert(!o->u.pod.has_pod_ip);
	ck_assert(o->u.pod.has_host_ip);
	em_obj_free(o);
}
END_TEST

START_TEST(names_of_objects)
{
	static const char *const bad[] = {
		"{\"kind\":\"Service\",\"metadata\":{\"name\":\"evil\\n<3>x\",\"namespace\":\"default\"}}",
		"{\"kind\":\"Service\",\"metadata\":{\"name\":\"Nginx\",\"namespace\":\"default\"}}",
		"{\"kind\":\"Service\",\"metadata\":{\"name\":\"nginx\",\"namespace\":\"de fault\"}}",
		"{\"kind\":\"Service\",\"metadata\":{\"name\":\"nginx.x\",\"namespace\":\"default\"}}",
		"{\"kind\":\"Service\",\"metadata\":{\"name\":\"nginx\",\"namespace\":\"default\"},"
		"\"spec\":{\"ports\":[{\"name\":\"HTTP\\n\",\"port\":80}]}}",
		"{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p_1\",\"namespace\":\"default\"}}",
	};
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		json_t *j = json_loads(bad[i], 0, NULL);
		struct em_obj *o = NULL;

		ck_assert_ptr_nonnull(j);
		/* refused by the normaliser already, or by the guard */
		int r = em_obj_from_json(j, &o, &why);
		json_decref(j);
		if (r < 0)
			continue;
		ck_assert_msg(em_guard_check_names(o, &why) == -EINVAL, "accepted: %s", bad[i]);
		ck_assert_ptr_nonnull(why);
		em_obj_free(o);
	}
	struct em_obj *o = obj("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"nginx-0.web\",\"namespace\":\"default\"}}");
	ck_assert_int_eq(em_guard_check_names(o, &why), 0);
	em_obj_free(o);
}
END_TEST

START_TEST(escape)
{
	char buf[32];

	ck_assert_str_eq(em_log_escape(buf, sizeof(buf), "a\n<3>b"), "a\\x0a<3>b");
	ck_assert_str_eq(em_log_escape(buf, sizeof(buf), "back\\slash"), "back\\x5cslash");
	ck_assert_str_eq(em_log_escape(buf, 6, "\x01\x02\x03"), "\\x01");
	ck_assert_str_eq(em_log_escape(buf, sizeof(buf), "\xc3\xa9"), "\\xc3\\xa9");
	ck_assert_str_eq(em_log_escape(buf, 1, "abc"), "");
}
END_TEST

Suite *guard_suite(void)
{
	Suite *s = suite_create("guard");
	TCase *tc = em_test_tcase(s, "names");
	tcase_add_test(tc, names);
	tcase_add_test(tc, names_of_objects);
	tcase_add_test(tc, escape);
	tc = em_test_tcase(s, "addresses");
	tcase_add_test(tc, addresses);
	tcase_add_test(tc, filter_endpoints);
	return s;
}
