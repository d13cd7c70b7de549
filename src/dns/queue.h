/* queue.h — the DNS rewriter's NFQUEUE loop: one thread per queue, batched
 * verdicts, fail-open queues, answers delivered in place or through a raw
 * socket. What the daemon starts and stops. */
#ifndef EM_DNS_QUEUE_H
#define EM_DNS_QUEUE_H

#include <stdint.h>

#include "dns/dns.h"

struct em_snapshot;

struct em_dns_config {
	struct em_dns_opts opts;	/* ttl, nxdomain_unknown, short_names, edns_size */
	uint16_t queue_num;		/* first queue number */
	uint16_t queues;		/* queues queue_num .. queue_num+queues-1, a thread each */
	uint32_t copy_range;		/* bytes of each packet copied to us; default 512 */
	uint32_t queue_maxlen;		/* kernel queue length; default 4096 */
	int rcvbuf;			/* netlink receive buffer, bytes; default 8 MiB */
	uint32_t bypass_mark;		/* SO_MARK of raw-socket answers; default EM_BYPASS_MARK */
	/* false (default): every answer leaves through the raw socket and the
	 * query is dropped. true: answer in place where the kernel reroutes
	 * the packet (output hook; prerouting towards a resolver that is not
	 * a node address), raw socket elsewhere. In place is not faster
	 * (netns-tests/dns-bench.sh) and loses the answer when the query's
	 * conntrack entry already carries a DNAT binding (see queue.c). */
	bool in_place;
	/* ExternalName: how long a query waits for the resolver's answer
	 * about the target before it passes untouched; default 1500. */
	unsigned external_timeout_ms;
};

void em_dns_config_defaults(struct em_dns_config *cfg);

/* Where the queue threads find the catalog for each batch of packets.
 * thread_init/thread_fini (optional) run once on each queue thread;
 * acquire opens a read-side section and fills *cat, release closes it.
 * All run on the queue threads. */
struct em_dns_provider {
	void *ctx;
	void (*thread_init)(void *ctx);
	void (*thread_fini)(void *ctx);
	void (*acquire)(void *ctx, struct em_dns_catalog *cat);
	void (*release)(void *ctx);
};

/* A provider over the registry's published snapshot, read under
 * userspace RCU (urcu-memb): current() is called inside the read-side
 * section (e.g. em_registry_current). src must outlive the queue. */
struct em_dns_snapshot_source {
	const struct em_snapshot *(*current)(void *ctx);
	void *ctx;
};
void em_dns_snapshot_provider(struct em_dns_provider *p, struct em_dns_snapshot_source *src);

struct em_dns_stats {
	uint64_t reasons[EM_DNS_REASON_MAX];	/* answered + passed by reason */
	uint64_t packets;		/* packets received from the kernel */
	uint64_t raw_sent;		/* answers sent through the raw socket */
	uint64_t raw_errors;		/* raw send failures (query accepted instead) */
	uint64_t spoofed;		/* prerouting queries with a local source not from lo:
					 * left unanswered */
	uint64_t truncated;		/* payload cut by copy_range: passed */
	uint64_t enobufs;		/* socket overruns: packets the kernel gave up on */
	uint64_t recv_errors;
	uint64_t send_errors;		/* verdicts not sent or refused by the kernel */
	uint64_t held;			/* ExternalName queries held for the target's records */
	uint64_t held_answered;		/* ... answered once the resolver replied */
	uint64_t held_passed;		/* ... passed untouched (timeout, error, table full) */
};

struct em_dns_queue;

/* Binds the queues, sets them up fail-open, and starts the threads. Fails
 * (-errno, nothing left running) if any queue cannot be bound, e.g. -EBUSY
 * when another process holds it or -EPERM without CAP_NET_ADMIN. */
int em_dns_queue_start(const struct em_dns_config *cfg, const struct em_dns_provider *prov,
		       struct em_dns_queue **out);
/* Stops the threads (prompt: they poll an eventfd), unbinds, frees. The
 * kernel accepts queued packets itself once no one listens (bypass). */
void em_dns_queue_stop(struct em_dns_queue *q);
/* Sums the per-thread counters; safe from any thread at any time. */
void em_dns_queue_stats(const struct em_dns_queue *q, struct em_dns_stats *out);
/* One line, e.g. "answered=3 outside=10 ... enobufs=0", for logs. */
int em_dns_stats_format(const struct em_dns_stats *st, char *buf, size_t len);

#endif
