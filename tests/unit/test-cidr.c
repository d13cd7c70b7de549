/* test-cidr.c — the one prefix parser (util/cidr.c): the strict form the
 * ruleset and the option checks use, the looser one of the fake IP pools and
 * the address guard, and hostile input. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <string.h>

#include "testlog.h"
#include "util/cidr.h"

Suite *cidr_suite(void);

START_TEST(cidr_ipv4)
{
	struct em_cidr c;
	char buf[EM_CIDR_STRLEN];

	ck_assert_int_eq(em_cidr_parse("198.18.0.0/16", AF_INET, EM_CIDR_STRICT, &c), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_int_eq(c.plen, 16);
	ck_assert_int_eq(c.addr[0], 198);
	ck_assert_int_eq(c.addr[1], 18);
	ck_assert_str_eq(em_cidr_format(&c, buf, sizeof(buf)), "198.18.0.0/16");
	ck_assert_int_eq(em_cidr_len(&c), 4);
	ck_assert_int_eq(em_cidr_parse("10.1.2.3/32", AF_UNSPEC, EM_CIDR_STRICT, &c), 0);
	ck_assert_int_eq(c.plen, 32);
}
END_TEST

START_TEST(cidr_ipv6)
{
	struct em_cidr c;
	char buf[EM_CIDR_STRLEN];

	ck_assert_int_eq(em_cidr_parse("fd00:e3::/64", AF_INET6, EM_CIDR_STRICT, &c), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(c.plen, 64);
	ck_assert_int_eq(em_cidr_len(&c), 16);
	ck_assert_str_eq(em_cidr_format(&c, buf, sizeof(buf)), "fd00:e3::/64");
	ck_assert_int_eq(em_cidr_parse("fd00:96::/108", AF_UNSPEC, EM_CIDR_STRICT, &c), 0);
	ck_assert_int_eq(em_cidr_parse("::1/128", AF_INET6, EM_CIDR_STRICT, &c), 0);
}
END_TEST

START_TEST(cidr_mask_unaligned)
{
	struct em_cidr c;
	uint8_t m[16];

	ck_assert_int_eq(em_cidr_parse("10.96.0.0/12", AF_INET, EM_CIDR_STRICT, &c), 0);
	em_cidr_mask(&c, m);
	ck_assert_int_eq(m[0], 0xff);
	ck_assert_int_eq(m[1], 0xf0);
	ck_assert_int_eq(m[2], 0);
	ck_assert_int_eq(m[3], 0);
	ck_assert_int_eq(em_cidr_parse("fd00::/9", AF_INET6, EM_CIDR_STRICT, &c), 0);
	em_cidr_mask(&c, m);
	ck_assert_int_eq(m[0], 0xff);
	ck_assert_int_eq(m[1], 0x80);
	ck_assert_int_eq(m[15], 0);
}
END_TEST

START_TEST(cidr_hostile)
{
	static const char *bad[] = {
		"", "/", "/16", "198.18.0.0", "198.18.0.0/", "198.18.0.0/0",
		"198.18.0.0/33", "198.18.0.0/-1", "198.18.0.0/+16", "198.18.0.0/ 16",
		"198.18.0.0/16x", "198.18.0.0/16/16", "198.18.0.1/16", "198.18.0/16",
		"198.18.0.0.0/16", "256.18.0.0/16", "fd00::/129", "fd00::1/64",
		"fd00::/0", "::/0", "0.0.0.0/0", "fd00:::/64", "x/8",
		"198.18.0.0/99999999999999999999999", "198.18.0.0/0x10",
		"1111:2222:3333:4444:5555:6666:7777:8888:9999/64",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/8",
	};
	struct em_cidr c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(em_cidr_parse(bad[i], AF_UNSPEC, EM_CIDR_STRICT, &c) == -EINVAL,
			      "accepted \"%s\"", bad[i]);
	ck_assert_int_eq(em_cidr_parse(NULL, AF_UNSPEC, EM_CIDR_STRICT, &c), -EINVAL);
}
END_TEST

START_TEST(cidr_family_mismatch)
{
	struct em_cidr c = { .plen = 77 };

	ck_assert_int_eq(em_cidr_parse("fd00:e3::/64", AF_INET, EM_CIDR_STRICT, &c), -EINVAL);
	ck_assert_int_eq(em_cidr_parse("198.18.0.0/16", AF_INET6, EM_CIDR_STRICT, &c), -EINVAL);
	ck_assert_int_eq(c.plen, 77);	/* untouched on error */
}
END_TEST

/* What the flags loosen, and only that: every hostile string that is not
 * one of the loosened forms stays refused. */
START_TEST(cidr_flags)
{
	struct em_cidr c;
	unsigned loose = EM_CIDR_ZERO_LEN | EM_CIDR_HOST_BITS;

	ck_assert_int_eq(em_cidr_parse("0.0.0.0/0", AF_UNSPEC, EM_CIDR_STRICT, &c), -EINVAL);
	ck_assert_int_eq(em_cidr_parse("0.0.0.0/0", AF_UNSPEC, EM_CIDR_ZERO_LEN, &c), 0);
	ck_assert_int_eq(c.plen, 0);
	ck_assert_int_eq(em_cidr_parse("::/0", AF_INET6, EM_CIDR_ZERO_LEN, &c), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(em_cidr_parse("10.0.0.0/0", AF_INET, EM_CIDR_ZERO_LEN, &c), -EINVAL);

	ck_assert_int_eq(em_cidr_parse("198.18.0.1/16", AF_INET, EM_CIDR_ZERO_LEN, &c), -EINVAL);
	ck_assert_int_eq(em_cidr_parse("198.18.0.1/16", AF_INET, EM_CIDR_HOST_BITS, &c), 0);
	ck_assert_int_eq(c.plen, 16);
	ck_assert_int_eq(c.addr[3], 1);		/* kept as given */
	ck_assert_int_eq(em_cidr_parse("fd00::1/64", AF_INET6, EM_CIDR_HOST_BITS, &c), 0);
	ck_assert_int_eq(c.addr[15], 1);

	static const char *bad[] = {
		"", "/", "/16", "198.18.0.0", "198.18.0.0/", "198.18.0.0/33",
		"198.18.0.0/-1", "198.18.0.0/-0", "198.18.0.0/+16", "198.18.0.0/ 16",
		"198.18.0.0/16x", "198.18.0.0/16/16", "198.18.0/16", "256.18.0.0/16",
		"fd00::/129", "fd00:::/64", "x/8", "198.18.0.0/99999999999999999999999",
		"198.18.0.0/0x10",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(em_cidr_parse(bad[i], AF_UNSPEC, loose, &c) == -EINVAL,
			      "accepted \"%s\" with the loose flags", bad[i]);
	ck_assert_int_eq(em_cidr_parse(NULL, AF_UNSPEC, loose, &c), -EINVAL);
}
END_TEST

Suite *cidr_suite(void)
{
	Suite *s = suite_create("cidr");
	TCase *tc;

	tc = em_test_tcase(s, "parse");
	tcase_add_test(tc, cidr_ipv4);
	tcase_add_test(tc, cidr_ipv6);
	tcase_add_test(tc, cidr_hostile);
	tcase_add_test(tc, cidr_family_mismatch);

	tc = em_test_tcase(s, "flags");
	tcase_add_test(tc, cidr_flags);

	tc = em_test_tcase(s, "mask");
	tcase_add_test(tc, cidr_mask_unaligned);
	return s;
}
