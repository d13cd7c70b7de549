/* runner.c — the one Check runner; every module's suite is added through the
 * list that meson generates (tests/meson.build). */
#include <stdlib.h>

#include "suites.h"
#include "util/log.h"

int main(void)
{
	SRunner *sr = srunner_create(NULL);
	int failed;

	EM_ADD_SUITES(sr);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
