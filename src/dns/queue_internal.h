/* queue_internal.h — internal to src/dns: what the queue threads (queue.c)
 * share with the ExternalName held queries (queue_held.c): the per-thread
 * state, the batch of raw answers, and the calls each file makes into the
 * other. Not for other areas; they use queue.h. */
#ifndef EM_DNS_QUEUE_INTERNAL_H
#define EM_DNS_QUEUE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns/dns.h"
#include "dns/localaddr.h"
#include "dns/queue.h"
#include "util/log.h"

struct mnl_socket;
struct em_dns_target_cache;

#define BATCH 32
#define WORK_CAP 4352		/* largest answer (4096 DNS) + headers */
#define MAX_HELD 64		/* ExternalName queries held per queue thread */

/* An ExternalName query held (no verdict yet) while the resolver it was
 * sent to is asked for the target's records (issue 15). */
struct held {
	bool used;
	uint32_t id;			/* the packet's queue id */
	uint16_t up_id;			/* DNS id of our query to the resolver */
	uint16_t qtype;
	char name[256];			/* the target */
	uint64_t deadline_ms;
	struct sockaddr_storage resolver;
	uint32_t indev;
	size_t len;
	uint8_t *pkt;			/* WORK_CAP bytes: the query, then its answer */
};

/* One thread's counters: those of struct em_dns_stats, atomic (the thread
 * adds, any thread reads). */
struct qcounters {
	_Atomic uint64_t reasons[EM_DNS_REASON_MAX];
	_Atomic uint64_t questions[EM_DNS_QTYPE_MAX][EM_DNS_REASON_MAX];
#define X(field, log, metric, help) _Atomic uint64_t field;
	EM_DNS_COUNTERS(X)
#undef X
};

struct qthread {
	struct em_dns_queue *q;
	uint16_t num;
	struct mnl_socket *nl;
	unsigned portid;
	int raw4, raw6;
	unsigned lo_index;		/* ifindex of lo in this namespace */
	struct em_dns_localaddr local;
	pthread_t tid;
	bool started;
	uint8_t *rx;			/* BATCH slots of rx_slot bytes */
	uint8_t *work;			/* BATCH slots of WORK_CAP bytes: answers */
	size_t rx_slot;
	char *tx;			/* verdict messages */
	size_t tx_cap;
	struct qcounters n;
	struct em_ratelimit rl;
	/* ExternalName (issue 15) */
	int up4, up6;			/* UDP sockets to resolvers, bypass mark */
	struct em_dns_target_cache *cache;
	struct held held[MAX_HELD];
	unsigned n_held;
	uint16_t next_up_id;
};

struct em_dns_queue {
	struct em_dns_config cfg;
	int stop_fd;			/* eventfd: readable once stop is asked */
	unsigned n;
	struct qthread t[];
};

/* Counts one event on thread t (a struct qcounters field). */
#define ADD(field) atomic_fetch_add_explicit(&t->n.field, 1, memory_order_relaxed)

/* Answers of one batch waiting for the raw socket. */
struct batch {
	size_t used;			/* bytes of verdicts in t->tx */
	unsigned slots;			/* work slots taken */
	unsigned n_raw;
	struct raw_out {
		uint32_t id;
		uint8_t *pkt;
		size_t len;
		uint32_t indev;
	} raw[BATCH];
};

/* ---- queue.c, for the held queries ------------------------------------- */

/* Sends b's raw answers of IP version v (4 or 6); sets ok[i] for each sent. */
void em_dns_queue_raw_flush(struct qthread *t, struct batch *b, int v, bool *ok);
/* Fills *cat with the current names and t's target cache; pair with release. */
void em_dns_queue_catalog_acquire(struct qthread *t, struct em_dns_catalog *cat);
/* Ends what em_dns_queue_catalog_acquire began (the urcu read-side section). */
void em_dns_queue_catalog_release(struct qthread *t);

/* ---- queue_held.c, for the queue thread -------------------------------- */

/* Opens t's resolver sockets (SO_MARK mark) and target cache; -errno. */
int em_dns_held_open(struct qthread *t, uint32_t mark);
/* Closes and frees what em_dns_held_open and em_dns_held_add took. */
void em_dns_held_close(struct qthread *t);
/* Holds packet id and asks the resolver; 0 when held, else -errno (pass it). */
int em_dns_held_add(struct qthread *t, uint32_t id, const uint8_t *work, size_t len,
		    uint32_t indev);
/* Reads resolver replies on fd and answers the queries they were for. */
void em_dns_held_recv(struct qthread *t, int fd);
/* Accepts untouched every held query whose deadline has passed. */
void em_dns_held_expire(struct qthread *t);
/* Accepts untouched every held query (the thread is stopping). */
void em_dns_held_pass_all(struct qthread *t);
/* poll() timeout: ms to the nearest held query's deadline, or -1. */
int em_dns_held_timeout(const struct qthread *t);

#endif
