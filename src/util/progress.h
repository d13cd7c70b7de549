/* progress.h — heartbeats of the worker and queue threads, for the
 * systemd watchdog: the daemon pings only while every registered thread
 * either waits for work or has moved since the last check.
 *
 * A thread embeds a struct em_progress, registers it once, and brackets
 * its blocking wait:
 *
 *	em_progress_register(&w->progress, "forwarder worker");
 *	for (;;) {
 *		em_progress_wait(&w->progress);
 *		n = epoll_wait(...);
 *		em_progress_woke(&w->progress);
 *		... handle the events ...
 *	}
 *	em_progress_unregister(&w->progress);
 *
 * The counter is odd while the thread waits and even while it works; it
 * changes at every turn of the loop. A thread that is even and has not
 * changed between two checks is stuck (a deadlock, an endless loop, a
 * blocking call that should not block). */
#ifndef EM_UTIL_PROGRESS_H
#define EM_UTIL_PROGRESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct em_progress {
	_Atomic uint64_t beat;		/* written by the owning thread only */
	uint64_t seen;			/* the checker's last reading */
	char name[32];
	struct em_progress *next;	/* registered list, under a mutex */
};

/* Any thread; p must stay valid until unregistered. */
void em_progress_register(struct em_progress *p, const char *name);
void em_progress_unregister(struct em_progress *p);

static inline void em_progress_wait(struct em_progress *p)
{
	atomic_fetch_add_explicit(&p->beat, 1, memory_order_relaxed);
}

static inline void em_progress_woke(struct em_progress *p)
{
	atomic_fetch_add_explicit(&p->beat, 1, memory_order_relaxed);
}

/* One checker (the main thread). Returns the number of registered threads
 * that are stuck since the previous call and copies the first one's name
 * into stuck_name (when not NULL). The first call after a thread registers
 * counts it as moving. */
unsigned em_progress_check(char *stuck_name, size_t len);
/* Number of registered threads. */
unsigned em_progress_count(void);

#endif
