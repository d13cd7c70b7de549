/* testlog.h — the checked fixture every unit-test case runs under: an
 * error-level log line that the test did not declare fails the test.
 *
 * Check runs checked fixtures in the test's process (the forked child by
 * default, the runner itself with CK_FORK=no), so the state here is reset
 * by the setup of every test. */
#ifndef EM_TESTLOG_H
#define EM_TESTLOG_H

#include <check.h>

/* A TCase named `name`, added to `s`, that carries the log fixture. Add the
 * case's own checked fixture after this call: Check runs setups in the
 * order added and teardowns in reverse, so the log check surrounds it and
 * also sees errors logged by the case's own teardown. */
TCase *em_test_tcase(Suite *s, const char *name);

/* Declarations a test makes before provoking errors on purpose:
 * error lines containing `substring` are expected (any number of them);
 * `n` more error lines of any text are expected (calls add up). */
void em_test_expect_error(const char *substring);
void em_test_expect_errors(unsigned n);

/* The fixture itself, for a case built without em_test_tcase(). */
void em_testlog_setup(void);
void em_testlog_teardown(void);

#endif
