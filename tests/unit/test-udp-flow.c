/* test-udp-flow.c — the UDP flow table: keys, lookup, eviction of the
 * oldest when full, idle expiry in activity order. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "udp/flow.h"
#include "testlog.h"

static void key4(struct em_udp_key *k, const char *client, uint16_t cport, const char *dst,
		 uint16_t dport)
{
	struct sockaddr_in c = { .sin_family = AF_INET, .sin_port = htons(cport) };
	struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(dport) };

	ck_assert_int_eq(inet_pton(AF_INET, client, &c.sin_addr), 1);
	ck_assert_int_eq(inet_pton(AF_INET, dst, &d.sin_addr), 1);
	ck_assert_int_eq(em_udp_key_from(k, (struct sockaddr *)&c, (struct sockaddr *)&d), 0);
}

START_TEST(test_key_round_trip)
{
	struct em_udp_key k;
	struct sockaddr_storage ss;
	socklen_t len;
	struct sockaddr_in6 c6 = { .sin6_family = AF_INET6, .sin6_port = htons(5353) };
	struct sockaddr_in d4 = { .sin_family = AF_INET };

	key4(&k, "10.0.0.2", 40000, "198.18.0.7", 53);
	em_udp_key_client(&k, &ss, &len);
	ck_assert_int_eq(len, sizeof(struct sockaddr_in));
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 40000);
	em_udp_key_dst(&k, &ss, &len);
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 53);
	ck_assert_str_eq(inet_ntoa(((struct sockaddr_in *)&ss)->sin_addr), "198.18.0.7");
	/* mixed families are refused */
	ck_assert_int_lt(em_udp_key_from(&k, (struct sockaddr *)&c6, (struct sockaddr *)&d4), 0);
}
END_TEST

START_TEST(test_find_by_client_and_dst)
{
	struct em_udp_table t;
	struct em_udp_flow_node a = { 0 }, b = { 0 };
	struct em_udp_key k;

	ck_assert_int_eq(em_udp_table_init(&t, 8), 0);
	key4(&a.key, "10.0.0.2", 40000, "198.18.0.7", 53);
	key4(&b.key, "10.0.0.2", 40001, "198.18.0.7", 53);
	ck_assert_ptr_null(em_udp_table_insert(&t, &a, 1));
	ck_assert_ptr_null(em_udp_table_insert(&t, &b, 2));
	key4(&k, "10.0.0.2", 40001, "198.18.0.7", 53);
	ck_assert_ptr_eq(em_udp_table_find(&t, &k), &b);
	key4(&k, "10.0.0.2", 40000, "198.18.0.7", 53);
	ck_assert_ptr_eq(em_udp_table_find(&t, &k), &a);
	/* same client, another service: another flow */
	key4(&k, "10.0.0.2", 40000, "198.18.0.8", 53);
	ck_assert_ptr_null(em_udp_table_find(&t, &k));
	em_udp_table_remove(&t, &a);
	key4(&k, "10.0.0.2", 40000, "198.18.0.7", 53);
	ck_assert_ptr_null(em_udp_table_find(&t, &k));
	ck_assert_uint_eq(t.n, 1);
	em_udp_table_remove(&t, &b);
	em_udp_table_remove(&t, &b);	/* twice: a no-op */
	ck_assert_uint_eq(t.n, 0);
	ck_assert_ptr_null(em_udp_table_oldest(&t));
	em_udp_table_fini(&t);
}
END_TEST

START_TEST(test_evicts_least_recently_active)
{
	struct em_udp_table t;
	struct em_udp_flow_node n[4] = { 0 };

	ck_assert_int_eq(em_udp_table_init(&t, 3), 0);
	for (int i = 0; i < 4; i++)
		key4(&n[i].key, "10.0.0.2", (uint16_t)(1000 + i), "198.18.0.7", 9);
	ck_assert_ptr_null(em_udp_table_insert(&t, &n[0], 10));
	ck_assert_ptr_null(em_udp_table_insert(&t, &n[1], 20));
	ck_assert_ptr_null(em_udp_table_insert(&t, &n[2], 30));
	/* n[0] is the oldest by creation but active again: n[1] goes */
	em_udp_table_touch(&t, &n[0], 40);
	ck_assert_ptr_eq(em_udp_table_insert(&t, &n[3], 50), &n[1]);
	ck_assert_uint_eq(t.n, 3);
	ck_assert_ptr_null(em_udp_table_find(&t, &n[1].key));
	ck_assert_ptr_eq(em_udp_table_find(&t, &n[0].key), &n[0]);
	ck_assert_ptr_eq(em_udp_table_oldest(&t), &n[2]);
	em_udp_table_fini(&t);
}
END_TEST

START_TEST(test_idle_timeout)
{
	struct em_udp_table t;
	struct em_udp_flow_node n[3] = { 0 };

	ck_assert_int_eq(em_udp_table_init(&t, 16), 0);
	for (int i = 0; i < 3; i++)
		key4(&n[i].key, "10.0.0.3", (uint16_t)(2000 + i), "198.18.0.9", 53);
	em_udp_table_insert(&t, &n[0], 0);
	em_udp_table_insert(&t, &n[1], 100);
	em_udp_table_insert(&t, &n[2], 200);
	em_udp_table_touch(&t, &n[0], 250);
	ck_assert_uint_eq(em_udp_table_next_expiry(&t, 1000), 1100);
	ck_assert_ptr_null(em_udp_table_expire(&t, 1099, 1000));
	ck_assert_ptr_eq(em_udp_table_expire(&t, 1100, 1000), &n[1]);
	ck_assert_ptr_null(em_udp_table_expire(&t, 1100, 1000));
	ck_assert_ptr_eq(em_udp_table_expire(&t, 1300, 1000), &n[2]);
	/* n[0] was touched at 250: still alive at 1249 */
	ck_assert_ptr_null(em_udp_table_expire(&t, 1249, 1000));
	ck_assert_ptr_eq(em_udp_table_expire(&t, 1250, 1000), &n[0]);
	ck_assert_uint_eq(em_udp_table_next_expiry(&t, 1000), UINT64_MAX);
	ck_assert_uint_eq(t.n, 0);
	em_udp_table_fini(&t);
}
END_TEST

START_TEST(test_many_flows)
{
	enum { N = 5000, MAX = 1024 };
	struct em_udp_table t;
	struct em_udp_flow_node *n = calloc(N, sizeof(*n));
	size_t evicted = 0;

	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(em_udp_table_init(&t, MAX), 0);
	for (int i = 0; i < N; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 250, i % 250 + 1);
		key4(&n[i].key, ip, 5000, "198.18.0.1", 7);
		struct em_udp_flow_node *old = em_udp_table_insert(&t, &n[i], (uint64_t)i);
		if (old) {
			/* always the oldest: i - MAX */
			ck_assert_ptr_eq(old, &n[i - MAX]);
			evicted++;
		}
	}
	ck_assert_uint_eq(evicted, N - MAX);
	ck_assert_uint_eq(t.n, MAX);
	for (int i = N - MAX; i < N; i++)
		ck_assert_ptr_eq(em_udp_table_find(&t, &n[i].key), &n[i]);
	em_udp_table_fini(&t);
	free(n);
}
END_TEST

Suite *udp_flow_suite(void)
{
	Suite *s = suite_create("udp_flow");
	TCase *tc = em_test_tcase(s, "keys");
	tcase_add_test(tc, test_key_round_trip);
	tcase_add_test(tc, test_find_by_client_and_dst);
	tc = em_test_tcase(s, "eviction");
	tcase_add_test(tc, test_evicts_least_recently_active);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_many_flows);
	return s;
}
