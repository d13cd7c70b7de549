/* test-siphash.c — SipHash-2-4 against the paper's vectors; the process key. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "registry/strmap.h"
#include "util/siphash.h"
#include "testlog.h"

Suite *siphash_suite(void);

START_TEST(reference_vectors)
{
	uint8_t key[16], msg[64];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	/* Aumasson & Bernstein, "SipHash: a fast short-input PRF", appendix A */
	ck_assert_uint_eq(em_siphash(key, msg, 15), 0xa129ca6149be45e5ULL);
	ck_assert_uint_eq(em_siphash(key, msg, 0), 0x726fdb47dd0e0e31ULL);
	/* every length up to 64 differs from its neighbour (tail handling) */
	for (size_t n = 1; n < 64; n++)
		ck_assert_uint_ne(em_siphash(key, msg, n), em_siphash(key, msg, n - 1));
}
END_TEST

START_TEST(process_key)
{
	static const uint8_t k1[16] = { 1 }, k2[16] = { 2 };
	const uint8_t *s = em_hash_seed();
	static const uint8_t zero[16];

	ck_assert(memcmp(s, zero, 16) != 0);	/* seeded, not all zero */
	ck_assert_ptr_eq(em_hash_seed(), s);
	em_hash_seed_set(k1);
	uint64_t a = em_hash_seeded("default/web", 11);
	em_hash_seed_set(k2);
	uint64_t b = em_hash_seeded("default/web", 11);
	ck_assert_uint_ne(a, b);		/* the key decides the buckets */
	/* the map still finds everything under any key */
	struct em_strmap m;
	char k[32];
	em_strmap_init(&m);
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "ns/svc-%d", i);
		ck_assert_ptr_nonnull(em_strmap_put(&m, k));
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "ns/svc-%d", i);
		ck_assert_ptr_nonnull(em_strmap_get(&m, k));
	}
	em_strmap_clear(&m, NULL);
	/* the unkeyed FNV stays the same whatever the key (fake IP allocation) */
	ck_assert_uint_eq(em_strmap_hash("", 0), 1469598103934665603ULL);
}
END_TEST

Suite *siphash_suite(void)
{
	Suite *s = suite_create("siphash");

	tcase_add_test(em_test_tcase(s, "reference-vectors"), reference_vectors);
	tcase_add_test(em_test_tcase(s, "process-key"), process_key);
	return s;
}
