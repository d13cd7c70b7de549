/* catalog.c — the production catalog: the registry's current snapshot,
 * read under userspace RCU. Each queue thread registers with urcu-memb once;
 * each batch of packets is one read-side critical section, so a snapshot the
 * batch looks at is not freed before the batch's verdicts are built. No
 * locks on this path. */
#include "dns/queue.h"

#include <urcu/urcu-memb.h>

static const struct em_service *snap_find_name(void *ctx, const char *ns, size_t ns_len,
					       const char *name, size_t name_len)
{
	return em_snapshot_find_name(ctx, ns, ns_len, name, name_len);
}

static const struct em_service *snap_find_addr(void *ctx, int family, const void *addr)
{
	return em_snapshot_find_addr(ctx, family, addr);
}

static void thread_init(void *ctx)
{
	(void)ctx;
	urcu_memb_register_thread();
}

static void thread_fini(void *ctx)
{
	(void)ctx;
	urcu_memb_unregister_thread();
}

static void acquire(void *ctx, struct em_dns_catalog *cat)
{
	struct em_dns_snapshot_source *src = ctx;

	urcu_memb_read_lock();
	const struct em_snapshot *snap = src->current(src->ctx);
	/* No snapshot yet (registry still loading): pass everything. */
	cat->ctx = (void *)snap;
	cat->domain = snap ? em_snapshot_domain(snap) : NULL;
	cat->find_name = snap ? snap_find_name : NULL;
	cat->find_addr = snap ? snap_find_addr : NULL;
}

static void release(void *ctx)
{
	(void)ctx;
	urcu_memb_read_unlock();
}

void em_dns_snapshot_provider(struct em_dns_provider *p, struct em_dns_snapshot_source *src)
{
	p->ctx = src;
	p->thread_init = thread_init;
	p->thread_fini = thread_fini;
	p->acquire = acquire;
	p->release = release;
}
