/* test-config.c — defaults, config file text, flags and their precedence. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "testlog.h"

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

/* Every value is checked where it is read, not later at start-up. */
START_TEST(values_are_validated_when_read)
{
	static const char *bad[] = {
		"fake-ipv4-range = bogus\n", "fake-ipv4-range = 198.18.0.1/16\n",
		"fake-ipv4-range = 198.18.0.0/31\n", "fake-ipv4-range = fd00::/64\n",
		"fake-ipv6-range = 198.18.0.0/16\n", "fake-ipv6-range = fd00::/48\n",
		"capture-cidr = 10.96.0.0\n", "capture-cidr = 0.0.0.0/0\n",
		"queues = 0\n", "workers = 0\n", "tproxy-port = 0\n", "bypass-mark = 0\n",
		"log-level = loud\n", "dns-unknown = refuse\n", "cluster-domain = a..b\n",
		"cluster-domain = \n", "source = http://x\n", "source = file:\n",
		"lb-strategy = \n", "poll-interval-ms = 1\n",
	};
	static const char *good[] = {
		"fake-ipv4-range = 10.250.0.0/16\n", "fake-ipv6-range = fd00:1::/64\n",
		"fake-ipv6-range = \n", "capture-cidr = 10.96.0.0/12\ncapture-cidr = fd00:96::/108\n",
		"queues = 4\n", "log-level = DEBUG\n", "dns-unknown = nxdomain\n",
		"cluster-domain = edge.example\n", "source = kube:\n", "source = edgecore-db:\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct em_config c;
		em_config_defaults(&c);
		ck_assert_msg(em_config_parse_text(&c, bad[i], "t.conf") == -EINVAL, "accepted: %s", bad[i]);
		em_config_free(&c);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct em_config c;
		em_config_defaults(&c);
		ck_assert_msg(em_config_parse_text(&c, good[i], "t.conf") == 0, "refused: %s", good[i]);
		ck_assert_int_eq(em_config_validate(&c), 0);
		em_config_free(&c);
	}
}
END_TEST

START_TEST(bad_flag_value_fails_the_load)
{
	struct em_config c;
	char *argv[] = { "edgemesh-tproxy", "--config", "/dev/null", "--fake-ipv4-range=bogus", NULL };
	ck_assert_int_eq(em_config_load(&c, 4, argv), -EINVAL);
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

START_TEST(options_cross_checked)
{
	struct em_config c;
	em_config_defaults(&c);
	ck_assert_int_eq(em_config_validate(&c), 0);
	c.capture_mark = c.bypass_mark;
	ck_assert_int_eq(em_config_validate(&c), -EINVAL);
	em_config_free(&c);
	em_config_defaults(&c);
	c.queue_num = 65535;
	c.queues = 2;
	ck_assert_int_eq(em_config_validate(&c), -EINVAL);
	em_config_free(&c);
}
END_TEST

START_TEST(check_config_flag_is_recorded)
{
	struct em_config c;
	char *argv[] = { "edgemesh-tproxy", "--config", "/dev/null", "--check-config", NULL };
	ck_assert_int_eq(em_config_load(&c, 4, argv), 0);
	ck_assert(c.check_config);
	em_config_free(&c);
}
END_TEST

/* The table behind --help and the man page lists every flag, once. */
START_TEST(option_table_is_complete)
{
	struct em_config_option o;
	bool seen_source = false, seen_check = false, seen_help = false;
	size_t n = 0;

	for (size_t i = 0; em_config_option_at(i, &o); i++, n++) {
		ck_assert_ptr_nonnull(o.name);
		ck_assert_ptr_nonnull(o.help);
		ck_assert(!o.takes_value || o.metavar);
		for (size_t j = 0; j < i; j++) {
			struct em_config_option p;
			ck_assert(em_config_option_at(j, &p));
			ck_assert_str_ne(p.name, o.name);
		}
		seen_source |= !strcmp(o.name, "source") && o.repeatable;
		seen_check |= !strcmp(o.name, "check-config") && !o.takes_value;
		seen_help |= !strcmp(o.name, "help") && o.short_flag == 'h';
	}
	ck_assert_uint_gt(n, 30);
	ck_assert(seen_source && seen_check && seen_help);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = em_test_tcase(s, "defaults");
	tcase_add_test(tc, defaults_are_documented_values);
	tcase_add_test(tc, option_table_is_complete);
	tcase_add_test(tc, cleanup_flag_alone_and_scope_defaults);
	tc = em_test_tcase(s, "file");
	tcase_add_test(tc, file_text_sets_values_and_lists_replace_defaults);
	tcase_add_test(tc, file_text_errors_are_refused);
	tcase_add_test(tc, missing_explicit_config_file_is_an_error);
	tc = em_test_tcase(s, "flags");
	tcase_add_test(tc, flags_override_the_file);
	tcase_add_test(tc, bad_flag_is_an_error);
	tcase_add_test(tc, bad_flag_value_fails_the_load);
	tcase_add_test(tc, check_config_flag_is_recorded);
	tc = em_test_tcase(s, "validation");
	tcase_add_test(tc, values_are_validated_when_read);
	tcase_add_test(tc, options_cross_checked);
	return s;
}
