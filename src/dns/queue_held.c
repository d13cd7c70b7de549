/* queue_held.c — ExternalName queries held by the DNS queue threads
 * (issue 15).
 *
 * An address query for an ExternalName service whose target is not in the
 * thread's cache gets no verdict: the packet stays in the kernel's queue
 * (verdicts can come later, by id) while the same resolver the client asked
 * is asked for the target, from a socket with the bypass mark (so the
 * query is not queued again). Its reply fills the cache and the held query
 * is answered (CNAME + records, raw socket, then NF_DROP); on a timeout or
 * an error it is accepted untouched. While anything is held, packets get
 * one verdict each instead of the batch verdict, which would accept every
 * lower id, held ones included.
 *
 * Apart from queue.c because it is the one path where a packet outlives
 * its batch: it has its own sockets, table, deadlines and verdicts sent one
 * at a time, while queue.c's batch loop only asks it to hold a packet and
 * polls its sockets and deadline. Everything here but open and close runs
 * on the queue thread that owns t (queue_internal.h). */
#include "dns/queue_internal.h"
#include "dns/external.h"
#include "util/clock.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int em_dns_held_open(struct qthread *t, uint32_t mark)
{
	int fam[2] = { AF_INET, AF_INET6 }, *fd[2] = { &t->up4, &t->up6 };

	t->cache = calloc(1, sizeof(*t->cache));
	if (!t->cache)
		return -ENOMEM;
	for (int i = 0; i < 2; i++) {
		*fd[i] = socket(fam[i], SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (*fd[i] == -1 ||
		    (mark && setsockopt(*fd[i], SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == -1))
			return -errno;
	}
	t->next_up_id = (uint16_t)(em_clock_ms() ^ (uint64_t)getpid() << 4);
	return 0;
}

/* One verdict, sent now (outside a batch). */
static void verdict_now(struct qthread *t, uint32_t id, int verdict)
{
	char buf[256];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, t->num);

	nfq_nlmsg_verdict_put(nlh, (int)id, verdict);
	if (mnl_socket_sendto(t->nl, nlh, nlh->nlmsg_len) < 0) {
		ADD(send_errors);
		em_log_rl(&t->rl, EM_LOG_WARN, "dns queue %u: verdict send: %s", t->num,
			  strerror(errno));
	}
}

static void held_release(struct qthread *t, struct held *h, int verdict)
{
	verdict_now(t, h->id, verdict);
	if (verdict == NF_ACCEPT)
		ADD(held_passed);
	else
		ADD(held_answered);
	h->used = false;
	t->n_held--;
}

/* Holds packet id (the query in work[0..len)) and asks its resolver about
 * the target the rewriter missed; 0 when held, else -errno (pass it). */
int em_dns_held_add(struct qthread *t, uint32_t id, const uint8_t *work, size_t len, uint32_t indev)
{
	struct held *h = NULL;
	uint8_t q[300];
	int qlen;

	for (unsigned i = 0; i < MAX_HELD && !h; i++)
		if (!t->held[i].used)
			h = &t->held[i];
	if (!h)
		return -ENOSPC;
	if (!h->pkt && !(h->pkt = malloc(WORK_CAP)))
		return -ENOMEM;
	memset(&h->resolver, 0, sizeof(h->resolver));
	if (work[0] >> 4 == 4) {
		struct sockaddr_in *sa = (struct sockaddr_in *)&h->resolver;
		sa->sin_family = AF_INET;
		memcpy(&sa->sin_addr, work + 16, 4);
		sa->sin_port = htons(53);
	} else {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&h->resolver;
		sa->sin6_family = AF_INET6;
		memcpy(&sa->sin6_addr, work + 24, 16);
		sa->sin6_port = htons(53);
		if (IN6_IS_ADDR_LINKLOCAL(&sa->sin6_addr))
			sa->sin6_scope_id = indev;
	}
	snprintf(h->name, sizeof(h->name), "%s", t->cache->miss_name);
	h->qtype = t->cache->miss_qtype;
	h->up_id = t->next_up_id++;
	qlen = em_dns_target_query(q, sizeof(q), h->up_id, h->name, h->qtype);
	if (qlen < 0)
		return qlen;
	if (sendto(h->resolver.ss_family == AF_INET ? t->up4 : t->up6, q, (size_t)qlen, 0,
		   (struct sockaddr *)&h->resolver, sizeof(h->resolver)) == -1)
		return -errno;
	memcpy(h->pkt, work, len);
	h->len = len;
	h->id = id;
	h->indev = indev;
	h->deadline_ms = em_clock_ms() + t->q->cfg.external_timeout_ms;
	h->used = true;
	t->n_held++;
	ADD(held);
	return 0;
}

/* The target is in the cache now: answer h, or let it pass. */
static void held_answer(struct qthread *t, struct held *h)
{
	struct em_dns_catalog cat;
	enum em_dns_reason r;
	size_t out_len;
	uint16_t qtype;

	em_dns_queue_catalog_acquire(t, &cat);
	r = em_dns_answer(&t->q->cfg.opts, &cat, h->pkt, h->len, WORK_CAP, &out_len, &qtype);
	em_dns_queue_catalog_release(t);
	if (r == EM_DNS_ANSWERED) {
		/* the same raw path as every other answer (one-answer batch) */
		struct batch b = { .n_raw = 1 };
		bool ok[1] = { false };

		b.raw[0] = (struct raw_out){ .id = h->id, .pkt = h->pkt, .len = out_len,
					     .indev = h->indev };
		em_dns_queue_raw_flush(t, &b, h->pkt[0] >> 4 == 4 ? 4 : 6, ok);
		if (ok[0]) {
			ADD(raw_sent);
			held_release(t, h, NF_DROP);
			return;
		}
	}
	held_release(t, h, NF_ACCEPT);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* Replies from resolvers: each one that matches a held query's id, source
 * and question is cached, and every query held for that target is
 * answered from it. */
void em_dns_held_recv(struct qthread *t, int fd)
{
	uint8_t buf[4096];

	for (int n = 0; n < 64; n++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (len == -1)
			return;
		for (unsigned i = 0; i < MAX_HELD; i++) {
			struct held *h = &t->held[i];
			struct em_dns_target tg;
			if (!h->used || !same_addr(&h->resolver, &from))
				continue;
			int r = em_dns_target_parse(buf, (size_t)len, h->up_id, h->name, h->qtype,
						    t->q->cfg.opts.ttl, &tg);
			if (r == -EINVAL)
				continue;
			if (r < 0) {
				held_release(t, h, NF_ACCEPT);
				break;
			}
			t->cache->now_ms = em_clock_ms();
			em_dns_target_store(t->cache, h->name, h->qtype, &tg);
			char name[256];
			uint16_t qtype = h->qtype;
			memcpy(name, h->name, sizeof(name));
			for (unsigned j = 0; j < MAX_HELD; j++)
				if (t->held[j].used && t->held[j].qtype == qtype &&
				    strcmp(t->held[j].name, name) == 0)
					held_answer(t, &t->held[j]);
			break;
		}
	}
}

void em_dns_held_expire(struct qthread *t)
{
	uint64_t now = t->n_held ? em_clock_ms() : 0;

	for (unsigned i = 0; t->n_held && i < MAX_HELD; i++)
		if (t->held[i].used && t->held[i].deadline_ms <= now)
			held_release(t, &t->held[i], NF_ACCEPT);
}

void em_dns_held_pass_all(struct qthread *t)
{
	for (unsigned i = 0; t->n_held && i < MAX_HELD; i++)
		if (t->held[i].used)
			held_release(t, &t->held[i], NF_ACCEPT);
}

/* poll() timeout: the nearest deadline of a held query, or -1. */
int em_dns_held_timeout(const struct qthread *t)
{
	uint64_t next = UINT64_MAX, now;

	if (!t->n_held)
		return -1;
	for (unsigned i = 0; i < MAX_HELD; i++)
		if (t->held[i].used && t->held[i].deadline_ms < next)
			next = t->held[i].deadline_ms;
	now = em_clock_ms();
	return next <= now ? 0 : (int)(next - now);
}

void em_dns_held_close(struct qthread *t)
{
	if (t->up4 >= 0)
		close(t->up4);
	if (t->up6 >= 0)
		close(t->up6);
	for (unsigned i = 0; i < MAX_HELD; i++)
		free(t->held[i].pkt);
	free(t->cache);
}
