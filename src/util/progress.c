/* progress.c — the registered heartbeats and their check. */
#include "util/progress.h"

#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct em_progress *head;

void em_progress_register(struct em_progress *p, const char *name)
{
	atomic_store_explicit(&p->beat, 0, memory_order_relaxed);
	p->seen = UINT64_MAX;	/* never equal to a reading: first check passes */
	snprintf(p->name, sizeof(p->name), "%s", name);
	pthread_mutex_lock(&lock);
	p->next = head;
	head = p;
	pthread_mutex_unlock(&lock);
}

void em_progress_unregister(struct em_progress *p)
{
	pthread_mutex_lock(&lock);
	for (struct em_progress **pp = &head; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
}

unsigned em_progress_check(char *stuck_name, size_t len)
{
	unsigned stuck = 0;

	pthread_mutex_lock(&lock);
	for (struct em_progress *p = head; p; p = p->next) {
		uint64_t now = atomic_load_explicit(&p->beat, memory_order_relaxed);

		if (!(now & 1) && now == p->seen) {
			if (stuck++ == 0 && stuck_name)
				snprintf(stuck_name, len, "%s", p->name);
		}
		p->seen = now;
	}
	pthread_mutex_unlock(&lock);
	return stuck;
}

unsigned em_progress_count(void)
{
	unsigned n = 0;

	pthread_mutex_lock(&lock);
	for (struct em_progress *p = head; p; p = p->next)
		n++;
	pthread_mutex_unlock(&lock);
	return n;
}
