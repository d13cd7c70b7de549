/* test-fakeip.c — stable, persisted, never shared fake IPs. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry/fakeip.h"
#include "testlog.h"

Suite *fakeip_suite(void);

static char tmpdir[64];
static char statefile[128];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/em-fakeip-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(statefile, sizeof(statefile), "%s/fake-ips", tmpdir);
}

static void teardown(void)
{
	char tmp[160];
	unlink(statefile);
	snprintf(tmp, sizeof(tmp), "%s.tmp", statefile);
	unlink(tmp);
	rmdir(tmpdir);
}

static struct em_fakeip_pool *pool_new(const char *v4, const char *v6, bool persist)
{
	struct em_fakeip_config c = { .v4_cidr = v4, .v6_cidr = v6,
				      .state_file = persist ? statefile : NULL };
	struct em_fakeip_pool *p;
	ck_assert_int_eq(em_fakeip_pool_new(&c, &p), 0);
	return p;
}

static uint32_t get4(struct em_fakeip_pool *p, const char *key, int expect)
{
	bool h4, h6;
	struct in_addr a;
	struct in6_addr a6;
	int r = em_fakeip_acquire(p, key, &h4, &a, &h6, &a6);
	ck_assert_int_eq(r, expect);
	return h4 ? ntohl(a.s_addr) : 0;
}

START_TEST(in_range_and_stable)
{
	struct em_fakeip_pool *p = pool_new(NULL, NULL, false);
	em_fakeip_begin(p);
	uint32_t a = get4(p, "default/nginx-svc", 0);
	ck_assert_uint_eq(a >> 16, (198u << 8) | 18u);
	ck_assert_uint_ne(a & 0xffff, 0);
	ck_assert_uint_ne(a & 0xffff, 0xffff);
	ck_assert_uint_eq(get4(p, "default/nginx-svc", 0), a);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
	/* A fresh node with no state computes the same address. */
	p = pool_new(NULL, NULL, false);
	em_fakeip_begin(p);
	ck_assert_uint_eq(get4(p, "default/nginx-svc", 0), a);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(never_shared)
{
	struct em_fakeip_pool *p = pool_new("10.0.0.0/24", NULL, false);
	uint32_t seen[254] = { 0 };
	em_fakeip_begin(p);
	for (int i = 0; i < 254; i++) {
		char k[32];
		snprintf(k, sizeof(k), "ns/svc%d", i);
		seen[i] = get4(p, k, 0);
		ck_assert_uint_ge(seen[i] & 0xff, 1);
		ck_assert_uint_le(seen[i] & 0xff, 254);
		for (int j = 0; j < i; j++)
			ck_assert_uint_ne(seen[i], seen[j]);
	}
	get4(p, "ns/one-too-many", -ENOSPC);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(exhaustion_tiny_range)
{
	struct em_fakeip_pool *p = pool_new("192.0.2.0/30", NULL, false);
	em_fakeip_begin(p);
	uint32_t a = get4(p, "a/a", 0), b = get4(p, "b/b", 0);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_ge(a & 3, 1);
	ck_assert_uint_le(a & 3, 2);
	ck_assert_uint_ge(b & 3, 1);
	ck_assert_uint_le(b & 3, 2);
	ck_assert_uint_eq(get4(p, "c/c", -ENOSPC), 0);
	em_fakeip_end(p);
	/* a goes away: c may now take its address (a is only remembered). */
	em_fakeip_begin(p);
	get4(p, "b/b", 0);
	em_fakeip_end(p);
	em_fakeip_begin(p);
	get4(p, "b/b", 0);
	ck_assert_uint_eq(get4(p, "c/c", 0), a);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(recreated_keeps_ip)
{
	struct em_fakeip_pool *p = pool_new("10.9.0.0/28", NULL, false);
	em_fakeip_begin(p);
	uint32_t a = get4(p, "ns/a", 0);
	em_fakeip_end(p);
	em_fakeip_begin(p);	/* ns/a deleted */
	for (int i = 0; i < 10; i++) {
		char k[16];
		snprintf(k, sizeof(k), "ns/o%d", i);
		ck_assert_uint_ne(get4(p, k, 0), a);
	}
	em_fakeip_end(p);
	ck_assert_uint_eq(em_fakeip_remembered_count(p), 1);
	em_fakeip_begin(p);	/* re-created */
	ck_assert_uint_eq(get4(p, "ns/a", 0), a);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(persistence_round_trip)
{
	struct em_fakeip_pool *p = pool_new("10.1.0.0/16", "fd9e:6d65:7368::/64", true);
	uint32_t a[50];
	struct in6_addr six;
	em_fakeip_begin(p);
	for (int i = 0; i < 50; i++) {
		char k[16];
		snprintf(k, sizeof(k), "ns/s%d", i);
		a[i] = get4(p, k, 0);
	}
	bool h4, h6;
	struct in_addr x;
	ck_assert_int_eq(em_fakeip_acquire(p, "ns/s0", &h4, &x, &h6, &six), 0);
	ck_assert(h6);
	ck_assert_int_eq(memcmp(&six, "\xfd\x9e\x6d\x65\x73\x68\0\0", 8), 0);
	ck_assert_int_eq(em_fakeip_end(p), 0);
	em_fakeip_pool_free(p);

	/* Restart with a different hash outcome impossible to tell apart: the
	 * file is what keeps the addresses, shown by a remembered entry that
	 * survives and by identical v6. */
	p = pool_new("10.1.0.0/16", "fd9e:6d65:7368::/64", true);
	ck_assert_uint_eq(em_fakeip_remembered_count(p), 50);
	em_fakeip_begin(p);
	for (int i = 49; i >= 0; i--) {
		char k[16];
		snprintf(k, sizeof(k), "ns/s%d", i);
		ck_assert_uint_eq(get4(p, k, 0), a[i]);
	}
	struct in6_addr six2;
	em_fakeip_acquire(p, "ns/s0", &h4, &x, &h6, &six2);
	ck_assert_int_eq(memcmp(&six, &six2, 16), 0);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(persisted_address_wins_over_hash)
{
	/* Hand-written state: ns/x lives at .77, which its hash would not give. */
	FILE *f = fopen(statefile, "w");
	fprintf(f, "ns/x 10.2.0.77\n");
	fclose(f);
	struct em_fakeip_pool *p = pool_new("10.2.0.0/24", NULL, true);
	em_fakeip_begin(p);
	ck_assert_uint_eq(get4(p, "ns/x", 0) & 0xff, 77);
	em_fakeip_end(p);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(corrupt_file_tolerated)
{
	FILE *f = fopen(statefile, "w");
	fprintf(f, "garbage\nns/a 10.3.0.5\nns/b 300.1.1.1\nns/c 10.3.0.5\n"
		   "ns/d 10.4.0.9\nns/e 10.3.0.6 extra tokens\n\x01\x02\xff\n"
		   "ns/f 10.3.0.0\nns/g 10.3.0.255\nns/h 10.3.0.7 fd00::1\nns/i 10.3.0.8 nonsense\n");
	for (int i = 0; i < 1000; i++)
		fputc('x', f);
	fprintf(f, "\nns/z 10.3.0.9");	/* truncated: no newline */
	fclose(f);
	struct em_fakeip_pool *p = pool_new("10.3.0.0/24", NULL, true);
	em_fakeip_begin(p);
	ck_assert_uint_eq(get4(p, "ns/a", 0) & 0xff, 5);
	ck_assert_uint_ne(get4(p, "ns/c", 0) & 0xff, 5);	/* duplicate address dropped */
	ck_assert_uint_eq(get4(p, "ns/h", 0) & 0xff, 7);	/* v6 ignored: not configured */
	ck_assert_uint_eq(get4(p, "ns/z", 0) & 0xff, 9);
	uint32_t g = get4(p, "ns/g", 0) & 0xff;
	ck_assert(g >= 1 && g <= 254);
	ck_assert_int_eq(em_fakeip_end(p), 0);
	em_fakeip_pool_free(p);
	/* The rewritten file is clean. */
	p = pool_new("10.3.0.0/24", NULL, true);
	em_fakeip_begin(p);
	ck_assert_uint_eq(get4(p, "ns/a", 0) & 0xff, 5);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(state_file_is_private_and_no_symlink_is_followed)
{
	char victim[160], tmp[160];
	struct stat st;
	FILE *f;

	/* a stale temp file that is a symlink to somewhere else */
	snprintf(victim, sizeof(victim), "%s/victim", tmpdir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", statefile);
	f = fopen(victim, "w");
	fputs("untouched\n", f);
	fclose(f);
	ck_assert_int_eq(symlink(victim, tmp), 0);
	struct em_fakeip_pool *p = pool_new("10.5.0.0/24", NULL, true);
	em_fakeip_begin(p);
	get4(p, "ns/a", 0);
	ck_assert_int_eq(em_fakeip_end(p), 0);
	em_fakeip_pool_free(p);
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_size, 10);		/* not written through */
	ck_assert_int_eq(lstat(statefile, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);

	/* the state file itself a symlink: not read (and replaced on save) */
	ck_assert_int_eq(rename(statefile, victim), 0);
	ck_assert_int_eq(symlink(victim, statefile), 0);
	p = pool_new("10.5.0.0/24", NULL, true);
	ck_assert_uint_eq(em_fakeip_remembered_count(p), 0);
	em_fakeip_pool_free(p);
	/* a world-writable state file: not read either */
	unlink(statefile);
	ck_assert_int_eq(rename(victim, statefile), 0);
	ck_assert_int_eq(chmod(statefile, 0666), 0);
	p = pool_new("10.5.0.0/24", NULL, true);
	ck_assert_uint_eq(em_fakeip_remembered_count(p), 0);
	em_fakeip_pool_free(p);
	/* a name no source could give (an edited file) is dropped */
	f = fopen(statefile, "w");
	fputs("ns/ok 10.5.0.9\nNS/Upper 10.5.0.10\nns/a_b 10.5.0.11\n-x/y 10.5.0.12\n", f);
	fclose(f);
	chmod(statefile, 0600);
	p = pool_new("10.5.0.0/24", NULL, true);
	ck_assert_uint_eq(em_fakeip_remembered_count(p), 1);
	em_fakeip_pool_free(p);
	unlink(victim);
}
END_TEST

START_TEST(failed_save_backs_off)
{
	struct em_fakeip_config c = { .v4_cidr = "10.6.0.0/24",
				      .state_file = "/nonexistent-em-dir/fake-ips" };
	struct em_fakeip_pool *p;

	ck_assert_int_eq(em_fakeip_pool_new(&c, &p), 0);
	em_fakeip_begin(p);
	get4(p, "ns/a", 0);
	ck_assert_int_eq(em_fakeip_end(p), -ENOENT);
	/* the next round, at once: no new attempt (and so nothing to log) */
	em_fakeip_begin(p);
	get4(p, "ns/b", 0);
	ck_assert_int_eq(em_fakeip_end(p), 0);
	em_fakeip_pool_free(p);
}
END_TEST

START_TEST(bad_cidr)
{
	struct em_fakeip_pool *p;
	const char *bad[] = { "10.0.0.0", "10.0.0.0/31", "10.0.0.0/33", "x/8", "10.0.0.0/", "10.0.0.0/8x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct em_fakeip_config c = { .v4_cidr = bad[i] };
		ck_assert_int_eq(em_fakeip_pool_new(&c, &p), -EINVAL);
	}
	struct em_fakeip_config c6 = { .v6_cidr = "fd00::/48" };
	ck_assert_int_eq(em_fakeip_pool_new(&c6, &p), -EINVAL);
}
END_TEST

START_TEST(remembered_bounded)
{
	struct em_fakeip_config c = { .v4_cidr = "10.5.0.0/16", .max_remembered = 10 };
	struct em_fakeip_pool *p;
	ck_assert_int_eq(em_fakeip_pool_new(&c, &p), 0);
	for (int i = 0; i < 100; i++) {
		char k[16];
		snprintf(k, sizeof(k), "ns/s%d", i);
		em_fakeip_begin(p);
		get4(p, k, 0);
		em_fakeip_end(p);
	}
	ck_assert_uint_eq(em_fakeip_live_count(p), 1);
	ck_assert_uint_le(em_fakeip_remembered_count(p), 10);
	em_fakeip_pool_free(p);
}
END_TEST

static TCase *pool_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	return tc;
}

Suite *fakeip_suite(void)
{
	Suite *s = suite_create("fakeip");
	TCase *tc = pool_case(s, "allocation");
	tcase_add_test(tc, in_range_and_stable);
	tcase_add_test(tc, never_shared);
	tcase_add_test(tc, exhaustion_tiny_range);
	tcase_add_test(tc, recreated_keeps_ip);
	tcase_add_test(tc, remembered_bounded);
	tcase_add_test(tc, bad_cidr);
	tc = pool_case(s, "persistence");
	tcase_add_test(tc, persistence_round_trip);
	tcase_add_test(tc, persisted_address_wins_over_hash);
	tcase_add_test(tc, corrupt_file_tolerated);
	tcase_add_test(tc, state_file_is_private_and_no_symlink_is_followed);
	tcase_add_test(tc, failed_save_backs_off);
	return s;
}
