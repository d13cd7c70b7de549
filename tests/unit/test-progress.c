/* test-progress.c — the watchdog's view of thread heartbeats. */
#include <check.h>
#include <string.h>

#include "util/progress.h"
#include "testlog.h"

START_TEST(waiting_or_moving_threads_are_alive)
{
	struct em_progress a, b;
	char name[32] = "";

	em_progress_register(&a, "worker a");
	em_progress_register(&b, "queue b");
	ck_assert_uint_eq(em_progress_count(), 2);
	/* Both just registered and working: the first check passes. */
	ck_assert_uint_eq(em_progress_check(name, sizeof(name)), 0);
	/* a waits (odd) and stays there: alive. b works and never turns: stuck. */
	em_progress_wait(&a);
	ck_assert_uint_eq(em_progress_check(name, sizeof(name)), 1);
	ck_assert_str_eq(name, "queue b");
	/* b turns its loop: alive again; a woke and is working on. */
	em_progress_wait(&b);
	em_progress_woke(&b);
	em_progress_woke(&a);
	ck_assert_uint_eq(em_progress_check(NULL, 0), 0);
	/* Nobody moved and both work: both stuck. */
	ck_assert_uint_eq(em_progress_check(name, sizeof(name)), 2);
	em_progress_unregister(&b);
	ck_assert_uint_eq(em_progress_count(), 1);
	em_progress_unregister(&a);
	ck_assert_uint_eq(em_progress_count(), 0);
	ck_assert_uint_eq(em_progress_check(NULL, 0), 0);
}
END_TEST

Suite *progress_suite(void)
{
	Suite *s = suite_create("progress");
	TCase *tc = em_test_tcase(s, "progress");
	tcase_add_test(tc, waiting_or_moving_threads_are_alive);
	return s;
}
