/* timing.h — wall-clock bounds in unit tests.
 *
 * A bound on elapsed time is only meaningful at native speed. Runs that are
 * slowed on purpose set EM_TEST_TIME_SCALE (meson's valgrind setup sets 10):
 * every upper bound goes through em_test_ms(), which scales it and says so
 * once on stderr, so the output shows that the bounds were relaxed. */
#ifndef EM_TEST_TIMING_H
#define EM_TEST_TIMING_H

#include <stdio.h>
#include <stdlib.h>

static inline long em_test_ms(long ms)
{
	static long scale;

	if (!scale) {
		const char *s = getenv("EM_TEST_TIME_SCALE");

		scale = s && atol(s) > 0 ? atol(s) : 1;
		if (scale != 1)
			fprintf(stderr, "# wall-clock bounds scaled x%ld (EM_TEST_TIME_SCALE)\n",
				scale);
	}
	return ms * scale;
}

#endif
