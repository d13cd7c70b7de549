/* test-http-frame.c — the pure HTTP/1.x framing core: heads, strictness,
 * limits, rewriting, response body rules, the chunked machine. */
#include <check.h>

#include "proxy/http_frame.h"

Suite *http_frame_suite(void);

START_TEST(limits_default)
{
	struct em_http_limits lim;
	em_http_limits_default(&lim);
	ck_assert_uint_gt(lim.max_head, lim.max_line);
}
END_TEST

Suite *http_frame_suite(void)
{
	Suite *s = suite_create("http_frame");
	TCase *tc = tcase_create("limits");
	tcase_add_test(tc, limits_default);
	suite_add_tcase(s, tc);
	return s;
}
