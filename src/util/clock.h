/* clock.h — the monotonic clock in the units the callers need. */
#ifndef EM_UTIL_CLOCK_H
#define EM_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC: never jumps with the wall clock (NTP, admin). */
static inline uint64_t em_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t em_clock_us(void)
{
	return em_clock_ns() / 1000;
}

static inline uint64_t em_clock_ms(void)
{
	return em_clock_ns() / 1000000;
}

/* CLOCK_MONOTONIC_COARSE: the last tick's time (resolution 1-4 ms, see
 * clock_getres), cheaper than reading the hardware counter: for hot paths that only
 * need "about now". */
static inline uint64_t em_clock_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
