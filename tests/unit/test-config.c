/* test-config.c — defaults, config file text, flags and their precedence. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"

START_TEST(defaults_are_documented_values)
{
	struct em_config c;
	em_config_defaults(&c);
	ck_assert_str_eq(c.cluster_domain, "cluster.local");
	ck_assert_str_eq(c.fake_ipv4_range, "198.18.0.0/16");
	ck_assert_str_eq(c.fake_ipv6_range, "");
	ck_assert_uint_eq(c.tproxy_port, 15001);
	ck_assert_uint_eq(c.queue_num, 0);
	ck_assert_uint_eq(c.queues, 1);
	ck_assert_uint_eq(c.bypass_mark, 0x1e3);
	ck_assert_uint_eq(c.n_sources, 1);
	ck_assert_str_eq(c.sources[0], "file:/etc/edgemesh-tproxy/manifests");
	ck_assert(c.manage_rules && c.dns_host && c.dns_pods && !c.dns_short_names);
	em_config_free(&c);
}
END_TEST

START_TEST(file_text_sets_values_and_lists_replace_defaults)
{
	struct em_config c;
	em_config_defaults(&c);
	ck_assert_int_eq(em_config_parse_text(&c,
		"# comment\n\n  cluster-domain = edge.local  \n"
		"source = kube:http://127.0.0.1:10550\nsource = file:/tmp/m\n"
		"tproxy-port=15099\ndns-short-names = yes\nbypass-mark = 0x10\n", "t.conf"), 0);
	ck_assert_str_eq(c.cluster_domain, "edge.local");
	ck_assert_uint_eq(c.n_sources, 2);
	ck_assert_str_eq(c.sources[0], "kube:http://127.0.0.1:10550");
	ck_assert_str_eq(c.sources[1], "file:/tmp/m");
	ck_assert_uint_eq(c.tproxy_port, 15099);
	ck_assert_uint_eq(c.bypass_mark, 0x10);
	ck_assert(c.dns_short_names);
	em_config_free(&c);
}
END_TEST

START_TEST(file_text_errors_are_refused)
{
	static const char *bad[] = {
		"no-equals-sign\n", "unknown-key = 1\n", "tproxy-port = 70000\n",
		"tproxy-port = -1\n", "tproxy-port = 12x\n", "dns-host = maybe\n",
		"config = /etc/other\n", "queues = \n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct em_config c;
		em_config_defaults(&c);
		ck_assert_msg(em_config_parse_text(&c, bad[i], "t.conf") < 0, "accepted: %s", bad[i]);
		em_config_free(&c);
	}
}
END_TEST

START_TEST(flags_override_the_file)
{
	char path[] = "/tmp/em-config-test.XXXXXX";
	int fd = mkstemp(path);
	struct em_config c;
	const char *text = "tproxy-port = 15050\nlog-level = debug\nsource = file:/a\n";
	char *argv[] = { "edgemesh-tproxy", "--config", path, "--tproxy-port=15060",
			 "--source", "file:/b", "--source", "kube:", NULL };

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	ck_assert_int_eq(em_config_load(&c, 8, argv), 0);
	ck_assert_uint_eq(c.tproxy_port, 15060);
	ck_assert_str_eq(c.log_level, "debug");
	ck_assert_uint_eq(c.n_sources, 2);
	ck_assert_str_eq(c.sources[0], "file:/b");
	ck_assert_str_eq(c.sources[1], "kube:");
	em_config_free(&c);
	unlink(path);
}
END_TEST

START_TEST(missing_explicit_config_file_is_an_error)
{
	struct em_config c;
	char *argv[] = { "edgemesh-tproxy", "--config", "/nonexistent/em.conf", NULL };
	ck_assert_int_lt(em_config_load(&c, 3, argv), 0);
	em_config_free(&c);
}
END_TEST

START_TEST(bad_flag_is_an_error)
{
	struct em_config c;
	char *argv[] = { "edgemesh-tproxy", "--config", "/dev/null", "--queues", "1000", NULL };
	ck_assert_int_lt(em_config_load(&c, 5, argv), 0);
	em_config_free(&c);
}
END_TEST

START_TEST(cleanup_flag_alone_and_scope_defaults)
{
	struct em_config c;
	char *argv[] = { "edgemesh-tproxy", "--config", "/dev/null", "--cleanup",
			 "--client-cidr", "10.244.1.0/24", NULL };
	char *argv2[] = { "edgemesh-tproxy", "--config", "/dev/null", "--cleanup=no",
			  "--client-iface", "pa0", "--client-iface=veth*", NULL };

	ck_assert_int_eq(em_config_load(&c, 6, argv), 0);
	ck_assert(c.cleanup);
	ck_assert_uint_eq(c.n_client_ifaces, 1);	/* the default stays */
	ck_assert_str_eq(c.client_ifaces[0], "auto");
	ck_assert_uint_eq(c.n_client_cidrs, 1);
	em_config_free(&c);
	ck_assert_int_eq(em_config_load(&c, 7, argv2), 0);
	ck_assert(!c.cleanup);
	ck_assert_uint_eq(c.n_client_ifaces, 2);
	ck_assert_str_eq(c.client_ifaces[1], "veth*");
	em_config_free(&c);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults_are_documented_values);
	tcase_add_test(tc, file_text_sets_values_and_lists_replace_defaults);
	tcase_add_test(tc, file_text_errors_are_refused);
	tcase_add_test(tc, flags_override_the_file);
	tcase_add_test(tc, missing_explicit_config_file_is_an_error);
	tcase_add_test(tc, bad_flag_is_an_error);
	tcase_add_test(tc, cleanup_flag_alone_and_scope_defaults);
	suite_add_tcase(s, tc);
	return s;
}
