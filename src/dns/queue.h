/* queue.h — the DNS rewriter's NFQUEUE loop: one thread per queue, batched
 * verdicts, fail-open queues, answers delivered in place or through a raw
 * socket. What the daemon starts and stops. */
#ifndef EM_DNS_QUEUE_H
#define EM_DNS_QUEUE_H

#include <stdint.h>

#include "dns/dns.h"

struct em_registry;

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
	/* Where names are looked up, one of the two. registry: each queue
	 * thread registers with urcu-memb and reads the current snapshot
	 * under the read lock, one read-side section per batch of packets
	 * (the registry must outlive the queue). catalog: a fixed catalog
	 * used as it is (tests, em-dns-driver). */
	struct em_registry *registry;
	const struct em_dns_catalog *catalog;
};

void em_dns_config_defaults(struct em_dns_config *cfg);

/* The queue's counters besides the per-outcome ones, declared once:
 * X(field, log, metric, help). field: of struct em_dns_stats (and of each
 * queue thread's atomic copy); it is also the key in the log line
 * (em_dns_stats_format), where log says when it is shown; metric: the
 * Prometheus family after the edgemesh_tproxy_ prefix (daemon/metrics.c),
 * with its help text. */
#define EM_DNS_LOG_LEAD 0		/* first, before the outcomes */
#define EM_DNS_LOG_ALWAYS 1
#define EM_DNS_LOG_NONZERO 2
#define EM_DNS_COUNTERS(X) \
	X(packets, EM_DNS_LOG_LEAD, "dns_packets_total", \
	  "Packets received from the DNS queues.") \
	X(held, EM_DNS_LOG_NONZERO, "dns_external_held_total", \
	  "ExternalName queries held while the resolver is asked for the target.") \
	X(held_answered, EM_DNS_LOG_NONZERO, "dns_external_held_answered_total", \
	  "Held ExternalName queries answered once the resolver replied.") \
	X(held_passed, EM_DNS_LOG_NONZERO, "dns_external_held_passed_total", \
	  "Held ExternalName queries passed untouched (timeout, error, table full).") \
	X(raw_sent, EM_DNS_LOG_ALWAYS, "dns_raw_answers_total", \
	  "Answers sent through the raw socket.") \
	X(raw_errors, EM_DNS_LOG_ALWAYS, "dns_raw_errors_total", \
	  "Raw socket sends that failed (query passed instead).") \
	X(truncated, EM_DNS_LOG_ALWAYS, "dns_truncated_total", \
	  "Packets cut by the copy range, passed.") \
	X(enobufs, EM_DNS_LOG_ALWAYS, "dns_queue_enobufs_total", \
	  "Queue socket overruns (ENOBUFS): packets the kernel dropped from the queue.") \
	X(recv_errors, EM_DNS_LOG_ALWAYS, "dns_queue_receive_errors_total", \
	  "Other receive errors on the queue sockets.") \
	X(send_errors, EM_DNS_LOG_ALWAYS, "dns_verdict_errors_total", \
	  "Verdicts not sent or refused by the kernel.") \
	X(spoofed, EM_DNS_LOG_NONZERO, "dns_spoofed_total", \
	  "Prerouting queries with a local source that did not come through lo: left unanswered.")

struct em_dns_stats {
	uint64_t reasons[EM_DNS_REASON_MAX];	/* answered + passed by reason */
	/* The same outcomes by question type, for the packets whose question
	 * was read (em_dns_reason_has_qtype; QTYPE 0 is not counted). */
	uint64_t questions[EM_DNS_QTYPE_MAX][EM_DNS_REASON_MAX];
#define EM_DNS_STATS_FIELD(field, log, metric, help) uint64_t field;
	EM_DNS_COUNTERS(EM_DNS_STATS_FIELD)
#undef EM_DNS_STATS_FIELD
};

struct em_dns_queue;

/* Binds the queues, sets them up fail-open, and starts the threads. Fails
 * (-errno, nothing left running) if any queue cannot be bound, e.g. -EBUSY
 * when another process holds it or -EPERM without CAP_NET_ADMIN; -EINVAL
 * without a registry or catalog. Each failure is logged here, naming the
 * queue and the step (the caller has nothing to add). */
int em_dns_queue_start(const struct em_dns_config *cfg, struct em_dns_queue **out);
/* Stops the threads (prompt: they poll an eventfd), unbinds, frees. The
 * kernel accepts queued packets itself once no one listens (bypass). */
void em_dns_queue_stop(struct em_dns_queue *q);
/* Sums the per-thread counters; safe from any thread at any time. */
void em_dns_queue_stats(const struct em_dns_queue *q, struct em_dns_stats *out);
/* One line, e.g. "answered=3 outside=10 ... enobufs=0", for logs. */
int em_dns_stats_format(const struct em_dns_stats *st, char *buf, size_t len);

#endif
