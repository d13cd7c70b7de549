/* health.h — internal to edgemesh-tproxy: passive health shared by the
 * built-in strategies (nginx max_fails/fail_timeout model).
 *
 * A backend whose attempts failed EM_LB_MAX_FAILS times in a row is skipped
 * for EM_LB_FAIL_TIMEOUT_NS, then tried again; one success clears it. All
 * fields are atomics because pick and release run on several workers at once;
 * the races are benign (at worst one extra attempt on a failing backend). */
#ifndef EM_LB_HEALTH_H
#define EM_LB_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "edgemesh/balancer.h"

#define EM_LB_MAX_FAILS 1
#define EM_LB_FAIL_TIMEOUT_NS (10ULL * 1000000000ULL)

struct em_lb_health {
	_Atomic uint32_t fails;
	_Atomic uint64_t down_until_ns;
};

static inline uint64_t em_lb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline bool em_lb_health_usable(const struct em_lb_health *h, uint64_t now)
{
	return atomic_load_explicit(&h->down_until_ns, memory_order_relaxed) <= now;
}

static inline void em_lb_health_report(struct em_lb_health *h,
				       enum em_balancer_outcome outcome)
{
	/* Local errors and clients that left say nothing of the backend. */
	if (outcome == EM_BALANCER_LOCAL || outcome == EM_BALANCER_CANCELLED)
		return;
	if (outcome == EM_BALANCER_OK) {
		if (atomic_load_explicit(&h->fails, memory_order_relaxed))
			atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
		return;
	}
	if (atomic_fetch_add_explicit(&h->fails, 1, memory_order_relaxed) + 1 >=
	    EM_LB_MAX_FAILS)
		atomic_store_explicit(&h->down_until_ns,
				      em_lb_now_ns() + EM_LB_FAIL_TIMEOUT_NS,
				      memory_order_relaxed);
}

#endif
