/* testlog.c — see testlog.h. The log hook may run on any thread the test
 * started (sources, proxy workers), hence the mutex. */
#include "testlog.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

#define MAX_EXPECTED 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *expected[MAX_EXPECTED];
static unsigned n_expected;
static unsigned allowance;	/* error lines of any text still expected */
static unsigned unexpected;
static char first[512];	/* the first unexpected line, for the failure */

static int matches_expected(const char *msg)
{
	for (unsigned i = 0; i < n_expected; i++)
		if (strstr(msg, expected[i]))
			return 1;
	return 0;
}

static void on_log(enum em_log_level level, const char *msg)
{
	if (level != EM_LOG_ERR)
		return;
	pthread_mutex_lock(&lock);
	if (matches_expected(msg)) {
		/* declared by substring */
	} else if (allowance > 0) {
		allowance--;
	} else if (unexpected++ == 0) {
		snprintf(first, sizeof(first), "%s", msg);
	}
	pthread_mutex_unlock(&lock);
}

static void clear(void)
{
	n_expected = 0;
	allowance = 0;
	unexpected = 0;
	first[0] = '\0';
}

void em_test_expect_error(const char *substring)
{
	int full;

	pthread_mutex_lock(&lock);
	full = n_expected == MAX_EXPECTED;
	if (!full)
		expected[n_expected++] = substring;
	pthread_mutex_unlock(&lock);
	ck_assert_msg(!full, "more than %d expected errors declared", MAX_EXPECTED);
}

void em_test_expect_errors(unsigned n)
{
	pthread_mutex_lock(&lock);
	allowance += n;
	pthread_mutex_unlock(&lock);
}

void em_testlog_setup(void)
{
	pthread_mutex_lock(&lock);
	clear();
	pthread_mutex_unlock(&lock);
	em_log_reset();
	em_log_set_hook(on_log);
}

void em_testlog_teardown(void)
{
	unsigned n;
	char msg[sizeof(first)];

	/* Read and clear before asserting: with CK_FORK=no a failed assertion
	 * jumps back into Check, which runs the teardowns once more. */
	pthread_mutex_lock(&lock);
	n = unexpected;
	memcpy(msg, first, sizeof(msg));
	clear();
	pthread_mutex_unlock(&lock);
	ck_assert_msg(n == 0, "%u unexpected error line(s) logged, the first: \"%s\"", n, msg);
}

TCase *em_test_tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, em_testlog_setup, em_testlog_teardown);
	suite_add_tcase(s, tc);
	return tc;
}
