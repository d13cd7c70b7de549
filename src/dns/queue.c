/* queue.c — NFQUEUE loop of the DNS rewriter (libmnl-based
 * libnetfilter_queue API).
 *
 * One thread per queue. Each wakeup reads up to BATCH packets with one
 * recvmmsg(), answers what it can, and sends all verdicts with one sendmsg:
 * first the per-packet verdicts (answers carrying their new payload, drops),
 * then a single NFQNL_MSG_VERDICT_BATCH accepting every other packet up to
 * the highest id read. The kernel handles the messages of one send in order,
 * so the batch never covers a packet that already got its own verdict.
 *
 * Delivery (docs/kernel-notes.md): an answer made in place and accepted is
 * rerouted by the kernel in the output hook, and routed normally in
 * prerouting when its new source (the resolver) is not a local address. In
 * prerouting with a local resolver address it would be a martian, and in
 * any other hook it is already routed the wrong way. Sending the answer
 * through a raw socket (marked with the bypass mark) and dropping the query
 * works in every case, and is the default.
 *
 * Why not in place by default: an in-place answer keeps the query's
 * conntrack entry. If that entry already has a DNAT binding (an earlier
 * query from the same client socket was passed and DNAT'd by kube-proxy to
 * the cluster DNS), nat rewrites the answer's destination with it after our
 * verdict and the answer is lost (measured: netns-tests/dns-queue.sh). The
 * dropped query's unconfirmed entry dies with it; the raw answer is new. */
#include "dns/queue_internal.h"
#include "dns/external.h"
#include "dns/localaddr.h"
#include "registry/registry.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/progress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <net/if.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#define VERDICT_ROOM (WORK_CAP + 128)
#define CFG_BUF 8192		/* config messages and their acks */

void em_dns_config_defaults(struct em_dns_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	em_dns_opts_defaults(&cfg->opts);
	cfg->queues = 1;
	cfg->copy_range = 512;
	cfg->queue_maxlen = 4096;
	cfg->rcvbuf = 8 << 20;
	cfg->bypass_mark = EM_BYPASS_MARK;
	cfg->external_timeout_ms = 1500;
}

/* ---- setup ------------------------------------------------------------ */

/* Sends one config message and waits for its ack; 0 or -errno. Packets that
 * arrive meanwhile are left unverdicted; the first batch verdict covers them. */
static int config_send(struct qthread *t, struct nlmsghdr *nlh)
{
	char buf[CFG_BUF];
	unsigned seq = (unsigned)nlh->nlmsg_seq;

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(t->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t got = mnl_socket_recvfrom(t->nl, buf, sizeof(buf));
		if (got < 0)
			return errno == ENOBUFS ? 0 : -errno;
		int n = (int)got;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; mnl_nlmsg_ok(h, n);
		     h = mnl_nlmsg_next(h, &n)) {
			if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
				return e->error;
			}
		}
	}
}

static int queue_open(struct qthread *t, const struct em_dns_config *cfg)
{
	char buf[CFG_BUF];
	struct nlmsghdr *nlh;
	int err;

	t->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!t->nl)
		return -errno;
	if (mnl_socket_bind(t->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	t->portid = mnl_socket_get_portid(t->nl);
	int fd = mnl_socket_get_fd(t->nl);
	/* A large buffer absorbs bursts; FORCE needs CAP_NET_ADMIN, which we
	 * have if we can bind a queue at all; fall back to the capped one. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &cfg->rcvbuf, sizeof(cfg->rcvbuf)) == -1)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof(cfg->rcvbuf));

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, t->num);
	nlh->nlmsg_seq = 1;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
	err = config_send(t, nlh);
	if (err < 0)
		return err;

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, t->num);
	nlh->nlmsg_seq = 2;
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)cfg->copy_range);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, cfg->queue_maxlen);
	/* FAIL_OPEN: when the queue is full the kernel accepts instead of
	 * dropping. No F_GSO: without it the kernel completes partial
	 * checksums before copying, so every payload we see is final. */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	return config_send(t, nlh);
}

static int raw_open(int family, uint32_t mark)
{
	int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);

	if (fd == -1)
		return -errno;
	/* IPPROTO_RAW implies a header supplied by us for IPv4 and, on Linux,
	 * for IPv6 as well. */
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == -1) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* ---- per packet ------------------------------------------------------- */

/* Fills the destination of an answer leaving through the raw socket. */
static void raw_dest(const struct raw_out *r, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (r->pkt[0] >> 4 == 4) {
		struct sockaddr_in *sa = (struct sockaddr_in *)ss;
		sa->sin_family = AF_INET;
		memcpy(&sa->sin_addr, r->pkt + 16, 4);
		*sl = sizeof(*sa);
	} else {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)ss;
		sa->sin6_family = AF_INET6;
		memcpy(&sa->sin6_addr, r->pkt + 24, 16);
		/* a link-local client is only reachable on the device it came in */
		if (IN6_IS_ADDR_LINKLOCAL(&sa->sin6_addr) || IN6_IS_ADDR_MC_LINKLOCAL(&sa->sin6_addr))
			sa->sin6_scope_id = r->indev;
		*sl = sizeof(*sa);
	}
}

/* Sends the family's raw answers of the batch with sendmmsg; sets ok[i]. */
void em_dns_queue_raw_flush(struct qthread *t, struct batch *b, int v, bool *ok)
{
	struct mmsghdr m[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage ss[BATCH];
	unsigned idx[BATCH], n = 0;
	int fd = v == 4 ? t->raw4 : t->raw6;

	for (unsigned i = 0; i < b->n_raw; i++) {
		if (b->raw[i].pkt[0] >> 4 != v)
			continue;
		memset(&m[n], 0, sizeof(m[n]));
		iov[n].iov_base = b->raw[i].pkt;
		iov[n].iov_len = b->raw[i].len;
		raw_dest(&b->raw[i], &ss[n], &m[n].msg_hdr.msg_namelen);
		m[n].msg_hdr.msg_name = &ss[n];
		m[n].msg_hdr.msg_iov = &iov[n];
		m[n].msg_hdr.msg_iovlen = 1;
		idx[n++] = i;
	}
	for (unsigned off = 0; off < n;) {
		int r = sendmmsg(fd, m + off, n - off, 0);
		if (r == -1) {
			/* the message at off failed; the rest get their own try */
			ADD(raw_errors);
			em_log_rl(&t->rl, EM_LOG_WARN, "dns queue %u: raw answer send failed: %s",
				  t->num, strerror(errno));
			off++;
			continue;
		}
		for (int j = 0; j < r; j++)
			ok[idx[off + j]] = true;
		off += (unsigned)r;
	}
}

static void put_verdict(struct qthread *t, size_t *used, int type, uint32_t id, int verdict,
			const void *payload, size_t plen)
{
	struct nlmsghdr *nlh = nfq_nlmsg_put(t->tx + *used, type, t->num);
	nfq_nlmsg_verdict_put(nlh, (int)id, verdict);
	if (payload)
		nfq_nlmsg_verdict_put_pkt(nlh, payload, (uint32_t)plen);
	*used += NLMSG_ALIGN(nlh->nlmsg_len);
}

/* A query that claims a loopback or node-local source but did not come
 * through lo was not sent by this node: answering it would deliver the
 * answer (through the raw socket, which sends wherever the query claims to
 * come from) to a local socket on behalf of a spoofer. The ruleset's
 * reverse-path check refuses such packets before the queue; this is the
 * second line should the ruleset be someone else's (--manage-rules=no). */
static bool spoofed_source(const struct qthread *t, uint8_t hook, struct nlattr **attr,
			   const uint8_t *pkt, size_t len)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint32_t indev;
	bool v4;

	if (hook != NF_INET_PRE_ROUTING || len < 20)
		return false;
	indev = attr[NFQA_IFINDEX_INDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
	if (indev && indev == t->lo_index)
		return false;
	v4 = pkt[0] >> 4 == 4;
	if (!v4 && len < 40)
		return false;
	if (!v4 && memcmp(pkt + 8, v4mapped, 12) == 0)
		return true;	/* ::ffff:a.b.c.d never arrives honestly */
	return em_dns_localaddr_has(&t->local, v4 ? AF_INET : AF_INET6, v4 ? pkt + 12 : pkt + 8);
}

static void count_outcome(struct qthread *t, enum em_dns_reason r, uint16_t qtype)
{
	atomic_fetch_add_explicit(&t->n.reasons[r], 1, memory_order_relaxed);
	if (qtype)
		atomic_fetch_add_explicit(&t->n.questions[em_dns_qtype_of(qtype)][r], 1,
					  memory_order_relaxed);
}

/* Whether the kernel delivers an answer made in place and accepted: in the
 * output hook, and in prerouting when the answer's source (the query's
 * destination, the resolver) is not a node address. */
static bool in_place_ok(const struct qthread *t, uint8_t hook, const uint8_t *answer)
{
	bool v4 = answer[0] >> 4 == 4;

	return hook == NF_INET_LOCAL_OUT ||
	       (hook == NF_INET_PRE_ROUTING &&
		!em_dns_localaddr_has(&t->local, v4 ? AF_INET : AF_INET6, v4 ? answer + 12 : answer + 8));
}

/* Handles one NFQNL_MSG_PACKET: appends an in-place verdict, or queues a
 * raw answer in b; returns the id when the packet is to be accepted by the
 * batch verdict, else 0. */
static uint32_t handle_packet(struct qthread *t, const struct nlmsghdr *nlh,
			      const struct em_dns_catalog *cat, struct batch *b)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	size_t out_len;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) {
		ADD(recv_errors);
		return 0;
	}
	const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	uint32_t id = ntohl(ph->packet_id);
	ADD(packets);
	if (!attr[NFQA_PAYLOAD])
		return id;
	size_t len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
	if (attr[NFQA_CAP_LEN] && ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN])) != len) {
		ADD(truncated);
		return id;
	}
	if (len > WORK_CAP || b->slots == BATCH)
		return id;
	uint8_t *work = t->work + (size_t)b->slots * WORK_CAP;
	memcpy(work, mnl_attr_get_payload(attr[NFQA_PAYLOAD]), len);
	if (spoofed_source(t, ph->hook, attr, work, len)) {
		ADD(spoofed);
		return id;	/* untouched: the kernel drops it as a martian */
	}

	uint16_t qtype;
	enum em_dns_reason r = em_dns_answer(&t->q->cfg.opts, cat, work, len, WORK_CAP, &out_len,
					     &qtype);
	count_outcome(t, r, qtype);
	if (r == EM_DNS_PASS_EXTERNAL) {
		uint32_t indev = attr[NFQA_IFINDEX_INDEV] ?
				 ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
		return em_dns_held_add(t, id, work, len, indev) == 0 ? 0 : id;
	}
	if (r != EM_DNS_ANSWERED)
		return id;

	if (t->q->cfg.in_place && in_place_ok(t, ph->hook, work)) {
		put_verdict(t, &b->used, NFQNL_MSG_VERDICT, id, NF_ACCEPT, work, out_len);
		return 0;
	}
	struct raw_out *ro = &b->raw[b->n_raw++];
	b->slots++;
	ro->id = id;
	ro->pkt = work;
	ro->len = out_len;
	ro->indev = attr[NFQA_IFINDEX_INDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
	return 0;
}

static void note_accept(uint32_t id, uint32_t *max, bool *have)
{
	/* ids wrap: compare as the kernel does (nfq_id_after) */
	if (id && (!*have || (int32_t)(id - *max) > 0)) {
		*max = id;
		*have = true;
	}
}

/* ---- the catalog ------------------------------------------------------ */

static const struct em_service *snap_find_name(void *snap, const char *ns, size_t ns_len,
					       const char *name, size_t name_len)
{
	return em_snapshot_find_name(snap, ns, ns_len, name, name_len);
}

static const struct em_service *snap_find_addr(void *snap, int family, const void *addr)
{
	return em_snapshot_find_addr(snap, family, addr);
}

/* Fills *cat for a batch of packets: the registry's current snapshot, read
 * under urcu-memb (the thread registered in thread_main), or the fixed
 * catalog; then the thread's ExternalName target cache. A snapshot is not
 * freed before em_dns_queue_catalog_release(), so the batch's answers and
 * verdicts are built on one snapshot. No locks on this path. */
void em_dns_queue_catalog_acquire(struct qthread *t, struct em_dns_catalog *cat)
{
	struct em_registry *reg = t->q->cfg.registry;

	if (reg) {
		urcu_memb_read_lock();
		const struct em_snapshot *snap = em_registry_current(reg);
		*cat = (struct em_dns_catalog){
			.ctx = (void *)snap,
			.domain = em_snapshot_domain(snap),
			.find_name = snap_find_name,
			.find_addr = snap_find_addr,
		};
	} else {
		*cat = *t->q->cfg.catalog;
	}
	t->cache->now_ms = em_clock_ms();
	cat->find_target = em_dns_target_find;
	cat->target_ctx = t->cache;
}

void em_dns_queue_catalog_release(struct qthread *t)
{
	if (t->q->cfg.registry)
		urcu_memb_read_unlock();
}

/* While queries are held, a batch verdict would take them along:
 * every packet then gets its own verdict (see handle_batch). */
static void accept_id(struct qthread *t, struct batch *b, uint32_t id, uint32_t *max, bool *have)
{
	if (id && t->n_held)
		put_verdict(t, &b->used, NFQNL_MSG_VERDICT, id, NF_ACCEPT, NULL, 0);
	else
		note_accept(id, max, have);
}

/* Reads one batch of packets and sends its verdicts; returns how many
 * messages were read (0 when none were waiting). */
static int handle_batch(struct qthread *t)
{
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct em_dns_catalog cat;
	int fd = mnl_socket_get_fd(t->nl);

	for (unsigned i = 0; i < BATCH; i++) {
		iov[i].iov_base = t->rx + i * t->rx_slot;
		iov[i].iov_len = t->rx_slot;
		memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
	if (n == -1) {
		if (errno == ENOBUFS) {
			/* The kernel dropped messages for us; those packets
			 * stay queued and the next batch verdict accepts them. */
			ADD(enobufs);
		} else if (errno != EAGAIN && errno != EINTR) {
			ADD(recv_errors);
			em_log_rl(&t->rl, EM_LOG_WARN, "dns queue %u: recv: %s", t->num, strerror(errno));
		}
		return errno == ENOBUFS ? 1 : 0;
	}

	struct batch b = { 0 };
	uint32_t accept_max = 0;
	bool have_accept = false;
	em_dns_queue_catalog_acquire(t, &cat);
	for (int i = 0; i < n; i++) {
		int len = (int)msgs[i].msg_len;
		for (const struct nlmsghdr *nlh = (const void *)(t->rx + i * t->rx_slot); mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				/* a verdict the kernel refused (netlink reports
				 * errors even unasked) */
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
				if (e->error) {
					ADD(send_errors);
					em_log_rl(&t->rl, EM_LOG_WARN, "dns queue %u: verdict refused: %s",
						  t->num, strerror(-e->error));
				}
				continue;
			}
			if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
				continue;
			if (b.used + VERDICT_ROOM > t->tx_cap)
				break;	/* cannot happen with BATCH slots; be safe */
			accept_id(t, &b, handle_packet(t, nlh, &cat, &b), &accept_max, &have_accept);
		}
	}
	em_dns_queue_catalog_release(t);

	/* Raw answers first, then their verdicts: a query is dropped only
	 * once its answer is out; a failed send leaves it to the resolver. */
	if (b.n_raw) {
		bool ok[BATCH] = { 0 };
		em_dns_queue_raw_flush(t, &b, 4, ok);
		em_dns_queue_raw_flush(t, &b, 6, ok);
		for (unsigned i = 0; i < b.n_raw; i++) {
			if (ok[i]) {
				ADD(raw_sent);
				put_verdict(t, &b.used, NFQNL_MSG_VERDICT, b.raw[i].id, NF_DROP, NULL, 0);
			} else {
				accept_id(t, &b, b.raw[i].id, &accept_max, &have_accept);
			}
		}
	}
	if (have_accept)
		put_verdict(t, &b.used, NFQNL_MSG_VERDICT_BATCH, accept_max, NF_ACCEPT, NULL, 0);
	if (b.used && mnl_socket_sendto(t->nl, t->tx, b.used) < 0) {
		ADD(send_errors);
		em_log_rl(&t->rl, EM_LOG_WARN, "dns queue %u: verdict send: %s", t->num, strerror(errno));
	}
	return n;
}

static void *thread_main(void *arg)
{
	struct qthread *t = arg;
	struct pollfd pfd[5] = {
		{ .fd = t->q->stop_fd, .events = POLLIN },
		{ .fd = mnl_socket_get_fd(t->nl), .events = POLLIN },
		{ .fd = t->local.nl_fd, .events = POLLIN },
		{ .fd = t->up4, .events = POLLIN },
		{ .fd = t->up6, .events = POLLIN },
	};

	struct em_progress progress;	/* watchdog heartbeat */
	int polled;

	if (t->q->cfg.registry)
		urcu_memb_register_thread();	/* the catalog reads the snapshot */
	em_progress_register(&progress, "dns queue");
	for (;;) {
		em_progress_wait(&progress);
		polled = poll(pfd, 5, em_dns_held_timeout(t));
		em_progress_woke(&progress);
		if (polled == -1) {
			if (errno == EINTR)
				continue;
			em_err("dns queue %u: poll: %s", t->num, strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			/* Unbinding drops what is still queued: verdict it
			 * first (bounded, in case packets keep coming). */
			for (int i = 0; i < 64 && handle_batch(t) > 0; i++)
				;
			em_dns_held_pass_all(t);
			break;
		}
		if ((pfd[3].revents | pfd[4].revents) & POLLIN)
			em_dns_held_recv(t, (pfd[3].revents & POLLIN) ? t->up4 : t->up6);
		em_dns_held_expire(t);
		if (pfd[2].revents)
			em_dns_localaddr_changed(&t->local);
		/* POLLERR on netlink is an overrun (ENOBUFS): recv reports it */
		if (pfd[1].revents & (POLLIN | POLLERR))
			handle_batch(t);
	}
	em_progress_unregister(&progress);
	if (t->q->cfg.registry)
		urcu_memb_unregister_thread();
	return NULL;
}

/* ---- start / stop ----------------------------------------------------- */

static void thread_close(struct qthread *t)
{
	if (t->nl) {
		char buf[CFG_BUF];
		struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, t->num);
		nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_UNBIND);
		mnl_socket_sendto(t->nl, nlh, nlh->nlmsg_len);
		mnl_socket_close(t->nl);
	}
	if (t->raw4 >= 0)
		close(t->raw4);
	if (t->raw6 >= 0)
		close(t->raw6);
	em_dns_held_close(t);
	em_dns_localaddr_close(&t->local);
	free(t->rx);
	free(t->tx);
	free(t->work);
}

void em_dns_queue_stop(struct em_dns_queue *q)
{
	if (!q)
		return;
	uint64_t one = 1;
	if (write(q->stop_fd, &one, sizeof(one)) == -1)
		em_err("dns queue: cannot signal stop: %s", strerror(errno));
	for (unsigned i = 0; i < q->n; i++)
		if (q->t[i].started)
			pthread_join(q->t[i].tid, NULL);
	for (unsigned i = 0; i < q->n; i++)
		thread_close(&q->t[i]);
	close(q->stop_fd);
	free(q);
}

int em_dns_queue_start(const struct em_dns_config *cfg, struct em_dns_queue **out)
{
	unsigned n = cfg->queues ? cfg->queues : 1;
	struct em_dns_queue *q;
	int err = -ENOMEM;

	if (!cfg->registry == !cfg->catalog) {
		em_err("dns queue: needs a registry or a catalog (one of the two)");
		return -EINVAL;
	}
	q = calloc(1, sizeof(*q) + n * sizeof(q->t[0]));
	if (!q) {
		em_err("dns queue: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	q->cfg = *cfg;
	if (q->cfg.copy_range < 64)
		q->cfg.copy_range = 64;
	q->n = n;
	for (unsigned i = 0; i < n; i++) {
		q->t[i].raw4 = q->t[i].raw6 = -1;
		q->t[i].up4 = q->t[i].up6 = -1;
		q->t[i].local.nl_fd = -1;
	}
	q->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->stop_fd == -1) {
		err = -errno;
		em_err("dns queue: eventfd: %s", strerror(-err));
		free(q);
		return err;
	}
	for (unsigned i = 0; i < n; i++) {
		struct qthread *t = &q->t[i];
		t->q = q;
		t->num = (uint16_t)(cfg->queue_num + i);
		t->rx_slot = q->cfg.copy_range + 512;	/* netlink and attribute headers */
		t->rx = malloc(BATCH * t->rx_slot);
		t->tx_cap = (BATCH + 1) * VERDICT_ROOM;
		t->tx = malloc(t->tx_cap);
		t->work = malloc((size_t)BATCH * WORK_CAP);
		if (!t->rx || !t->tx || !t->work) {
			em_err("dns queue %u: buffers: %s", t->num, strerror(ENOMEM));
			goto fail;
		}
		if ((err = queue_open(t, &q->cfg)) < 0) {
			em_err("dns queue %u: cannot bind: %s", t->num, strerror(-err));
			goto fail;
		}
		if ((err = t->raw4 = raw_open(AF_INET, cfg->bypass_mark)) < 0 ||
		    (err = t->raw6 = raw_open(AF_INET6, cfg->bypass_mark)) < 0) {
			em_err("dns queue %u: raw socket (mark 0x%x): %s", t->num,
			       cfg->bypass_mark, strerror(-err));
			goto fail;
		}
		t->lo_index = if_nametoindex("lo");
		if ((err = em_dns_held_open(t, cfg->bypass_mark)) < 0) {
			em_err("dns queue %u: ExternalName resolver sockets: %s", t->num, strerror(-err));
			goto fail;
		}
		if ((err = em_dns_localaddr_open(&t->local)) < 0) {
			em_err("dns queue %u: local addresses: %s", t->num, strerror(-err));
			goto fail;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		err = -pthread_create(&q->t[i].tid, NULL, thread_main, &q->t[i]);
		if (err < 0) {
			em_err("dns queue %u: thread: %s", q->t[i].num, strerror(-err));
			goto fail;
		}
		q->t[i].started = true;
	}
	*out = q;
	return 0;
fail:
	em_dns_queue_stop(q);
	return err;
}

/* ---- counters --------------------------------------------------------- */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void em_dns_queue_stats(const struct em_dns_queue *q, struct em_dns_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < q->n; i++) {
		const struct qcounters *c = &q->t[i].n;
		for (int r = 0; r < EM_DNS_REASON_MAX; r++) {
			st->reasons[r] += LOAD(c->reasons[r]);
			for (int k = 0; k < EM_DNS_QTYPE_MAX; k++)
				st->questions[k][r] += LOAD(c->questions[k][r]);
		}
#define X(field, log, metric, help) st->field += LOAD(c->field);
		EM_DNS_COUNTERS(X)
#undef X
	}
}

/* Appends "key=value" to buf[0..len) at *o, after a blank unless first;
 * *o counts what did not fit, as snprintf does. */
static void append(char *buf, size_t len, size_t *o, const char *key, uint64_t v)
{
	int n = snprintf(*o < len ? buf + *o : NULL, *o < len ? len - *o : 0, "%s%s=%llu",
			 *o ? " " : "", key, (unsigned long long)v);

	if (n > 0)
		*o += (size_t)n;
}

int em_dns_stats_format(const struct em_dns_stats *st, char *buf, size_t len)
{
	size_t o = 0;

	if (len)
		buf[0] = '\0';
#define X(field, log, metric, help) \
	if ((log) == EM_DNS_LOG_LEAD) \
		append(buf, len, &o, #field, st->field);
	EM_DNS_COUNTERS(X)
#undef X
	for (int r = 0; r < EM_DNS_REASON_MAX; r++)
		if (st->reasons[r] || r == EM_DNS_ANSWERED)
			append(buf, len, &o, em_dns_reason_name(r), st->reasons[r]);
#define X(field, log, metric, help) \
	if ((log) == EM_DNS_LOG_ALWAYS || ((log) == EM_DNS_LOG_NONZERO && st->field)) \
		append(buf, len, &o, #field, st->field);
	EM_DNS_COUNTERS(X)
#undef X
	return o < len ? (int)o : -ENOSPC;
}
