/* udp.c — the UDP forwarder's thread: transparent listeners, per-flow
 * upstream and reply sockets, idle timers from the flow table's activity
 * order. See udp.h for the model. */
#include "udp/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "udp/balance.h"
#include "udp/flow.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/progress.h"

#define DGRAM_MAX 65536
#define GEN_CHECK_MS 200	/* how often the service generation is polled */
#define EVENTS 64
/* Datagrams read per readiness event of a flow socket. The sockets are
 * level-triggered: what is left comes back with the next epoll_wait, which
 * serves up to EVENTS sockets per call. Reading until EAGAIN would cost one
 * more recv per event, and request/response traffic has one datagram
 * queued at a time (bench-udp.sh: 1 per event was faster than 32). */
#define PER_EVENT 1

struct em_udp;

/* An epoll source carries its handler (STYLE.md). */
struct source {
	void (*fn)(struct em_udp *u, struct source *s, uint32_t events);
	int fd;
};

struct flow {
	struct em_udp_flow_node node;	/* key: client + fake IP:port */
	struct source up;		/* connected to the backend */
	struct source reply;		/* bound to the fake IP:port, connected to the client */
	struct em_lb_port *lp;
	int pick;
	struct sockaddr_storage backend;
	socklen_t backend_len;
	uint64_t bytes_up, bytes_down;	/* for the balancer's result */
};

struct em_udp {
	struct em_udp_config cfg;
	int epfd;
	struct source stop, l4, l6;
	uint16_t port;
	pthread_t tid;
	bool started;
	struct em_udp_table table;
	uint64_t gen, next_gen_check;
	bool change_pending;		/* cfg.changed still to be (re)called */
	uint8_t *buf;
	/* The batch of events being handled, so that a flow freed by one
	 * event can void its later events (libuv's rule). */
	struct epoll_event *ev;
	int ev_i, ev_n;
	struct em_ratelimit rl;
	_Atomic uint64_t datagrams_up, datagrams_down, refused, no_backend, flows, active,
		evicted, idle, icmp_errors, moved, errors;
};

#define ADD(f) atomic_fetch_add_explicit(&u->f, 1, memory_order_relaxed)

void em_udp_config_defaults(struct em_udp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->port = EM_TPROXY_PORT;
	cfg->listen4 = EM_TPROXY_IPV4;
	cfg->bypass_mark = EM_BYPASS_MARK;
	cfg->idle_timeout_s = EM_UDP_DEFAULT_IDLE_TIMEOUT_S;
	cfg->max_flows = EM_UDP_DEFAULT_MAX_FLOWS;
}

/* ---- flows ------------------------------------------------------------ */

static struct flow *flow_of(struct em_udp_flow_node *n)
{
	return (struct flow *)((char *)n - offsetof(struct flow, node));
}

/* Ends a flow already unlinked from the table (or never linked). why:
 * EM_UDP_END_ICMP or _LOCAL with err, else 0 (answered or not is known
 * from the flow). */
static void flow_free(struct em_udp *u, struct flow *f, enum em_udp_end why, int err)
{
	for (int j = u->ev_i + 1; u->ev && j < u->ev_n; j++)
		if (u->ev[j].data.ptr == &f->up || u->ev[j].data.ptr == &f->reply)
			u->ev[j].data.ptr = NULL;
	if (f->up.fd >= 0)
		close(f->up.fd);	/* closing removes it from the epoll set */
	if (f->reply.fd >= 0)
		close(f->reply.fd);
	if (f->lp) {
		if (why != EM_UDP_END_ICMP && why != EM_UDP_END_LOCAL)
			why = f->bytes_down ? EM_UDP_END_ANSWERED : EM_UDP_END_SILENT;
		em_udp_lb_release(f->lp, f->pick, why, err, f->bytes_up, f->bytes_down);
		em_udp_lb_put(f->lp);
	}
	free(f);
	atomic_fetch_sub_explicit(&u->active, 1, memory_order_relaxed);
}

static void flow_end(struct em_udp *u, struct flow *f, enum em_udp_end why, int err)
{
	em_udp_table_remove(&u->table, &f->node);
	flow_free(u, f, why, err);
}

/* why for the other ends: answered or silent, from the flow's bytes */
#define ENDED EM_UDP_END_SILENT

static void on_up(struct em_udp *u, struct source *s, uint32_t events);
static void on_reply(struct em_udp *u, struct source *s, uint32_t events);

static int set_mark(int fd, uint32_t mark)
{
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == -1)
		return -errno;
	return 0;
}

/* The reply socket: from the fake IP:port to the client. */
static int reply_socket(const struct em_udp *u, const struct sockaddr *dst, socklen_t dlen,
			const struct sockaddr *client, socklen_t clen)
{
	int one = 1, err;
	int fd = socket(dst->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -errno;
	if (dst->sa_family == AF_INET6)
		err = setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
	else
		err = setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
	/* SO_REUSEADDR: every client of one fake IP:port has its own socket
	 * bound to it, told apart by the connected peer. */
	if (err == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    set_mark(fd, u->cfg.bypass_mark) < 0 || bind(fd, dst, dlen) == -1 ||
	    connect(fd, client, clen) == -1) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int up_socket(const struct em_udp *u, const struct sockaddr *be, socklen_t len)
{
	int err, fd = socket(be->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -errno;
	if (set_mark(fd, u->cfg.bypass_mark) < 0 || connect(fd, be, len) == -1) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int watch(struct em_udp *u, struct source *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };

	return epoll_ctl(u->epfd, EPOLL_CTL_ADD, s->fd, &ev) == -1 ? -errno : 0;
}

/* A new flow for the first datagram of key; NULL when it is dropped. */
static struct flow *flow_new(struct em_udp *u, const struct em_udp_key *key, uint64_t now)
{
	struct sockaddr_storage client, dst;
	socklen_t clen, dlen;
	struct em_lb_port *lp = NULL;
	struct flow *f;
	int r;

	em_udp_key_client(key, &client, &clen);
	em_udp_key_dst(key, &dst, &dlen);
	urcu_memb_read_lock();
	r = u->cfg.resolve(u->cfg.resolve_ctx, (struct sockaddr *)&dst, &lp);
	urcu_memb_read_unlock();
	if (r < 0) {
		ADD(refused);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		em_udp_lb_put(lp);
		ADD(errors);
		return NULL;
	}
	f->node.key = *key;
	f->up.fd = f->reply.fd = -1;
	f->up.fn = on_up;
	f->reply.fn = on_reply;
	f->lp = lp;
	atomic_fetch_add_explicit(&u->active, 1, memory_order_relaxed);
	f->pick = em_udp_lb_pick(lp, (struct sockaddr *)&client, clen, (struct sockaddr *)&dst, dlen,
				 &f->backend, &f->backend_len);
	if (f->pick < 0) {
		ADD(no_backend);
		f->lp = NULL;
		em_udp_lb_put(lp);
		flow_free(u, f, ENDED, 0);
		return NULL;
	}
	if ((r = f->up.fd = up_socket(u, (struct sockaddr *)&f->backend, f->backend_len)) < 0 ||
	    (r = f->reply.fd = reply_socket(u, (struct sockaddr *)&dst, dlen,
					    (struct sockaddr *)&client, clen)) < 0 ||
	    (r = watch(u, &f->up)) < 0 || (r = watch(u, &f->reply)) < 0) {
		char a[INET6_ADDRSTRLEN];
		ADD(errors);
		inet_ntop(key->family, key->daddr, a, sizeof(a));
		em_log_rl(&u->rl, EM_LOG_WARN, "udp flow to %s:%u: %s", a, ntohs(key->dport),
			  strerror(-r));
		if (f->up.fd < 0)
			f->up.fd = -1;
		if (f->reply.fd < 0)
			f->reply.fd = -1;
		flow_free(u, f, EM_UDP_END_LOCAL, -r);
		return NULL;
	}
	ADD(flows);
	struct em_udp_flow_node *old = em_udp_table_insert(&u->table, &f->node, now);
	if (old) {
		ADD(evicted);
		flow_free(u, flow_of(old), ENDED, 0);
	}
	return f;
}

/* false when the flow ended (f is freed). */
static bool forward_up(struct em_udp *u, struct flow *f, const void *buf, size_t len)
{
	if (send(f->up.fd, buf, len, 0) == -1) {
		if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
			/* an ICMP error from an earlier datagram */
			ADD(icmp_errors);
			flow_end(u, f, EM_UDP_END_ICMP, errno);
			return false;
		}
		ADD(errors);
		return true;
	}
	ADD(datagrams_up);
	f->bytes_up += len;
	em_udp_table_touch(&u->table, &f->node, em_clock_ms());
	return true;
}

/* ---- events ----------------------------------------------------------- */

/* A backend's datagram (or its ICMP error) for the client. */
static void on_up(struct em_udp *u, struct source *s, uint32_t events)
{
	struct flow *f = (struct flow *)((char *)s - offsetof(struct flow, up));

	(void)events;
	for (int i = 0; i < PER_EVENT; i++) {
		ssize_t n = recv(s->fd, u->buf, DGRAM_MAX, 0);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* Connected UDP: ICMP unreachable shows up here. */
			ADD(icmp_errors);
			flow_end(u, f, EM_UDP_END_ICMP, errno);
			return;
		}
		f->bytes_down += (uint64_t)n;	/* the backend answered, whatever comes next */
		if (send(f->reply.fd, u->buf, (size_t)n, 0) == -1) {
			ADD(errors);
			continue;
		}
		ADD(datagrams_down);
		em_udp_table_touch(&u->table, &f->node, em_clock_ms());
	}
}

/* The client's next datagrams, delivered straight to the connected reply
 * socket. */
static void on_reply(struct em_udp *u, struct source *s, uint32_t events)
{
	struct flow *f = (struct flow *)((char *)s - offsetof(struct flow, reply));

	(void)events;
	for (int i = 0; i < PER_EVENT; i++) {
		ssize_t n = recv(s->fd, u->buf, DGRAM_MAX, 0);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* the client went away (ICMP port unreachable) */
			flow_end(u, f, ENDED, 0);
			return;
		}
		if (!forward_up(u, f, u->buf, (size_t)n))
			return;
	}
}

/* First datagrams of flows, with their original destination. */
static void on_listener(struct em_udp *u, struct source *s, uint32_t events)
{
	(void)events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage client, dst;
		char cbuf[CMSG_SPACE(sizeof(struct sockaddr_in6))];
		struct iovec iov = { .iov_base = u->buf, .iov_len = DGRAM_MAX };
		struct msghdr mh = {
			.msg_name = &client, .msg_namelen = sizeof(client),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		bool have_dst = false;
		ssize_t n = recvmsg(s->fd, &mh, 0);

		if (n == -1)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
			    (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
				memcpy(&dst, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0) < sizeof(dst) ?
				       c->cmsg_len - CMSG_LEN(0) : sizeof(dst));
				have_dst = true;
			}
		}
		struct em_udp_key key;
		if (!have_dst || em_udp_key_from(&key, (struct sockaddr *)&client,
						 (struct sockaddr *)&dst) < 0) {
			ADD(refused);
			continue;
		}
		struct em_udp_flow_node *node = em_udp_table_find(&u->table, &key);
		struct flow *f = node ? flow_of(node) : flow_new(u, &key, em_clock_ms());
		if (f)
			forward_up(u, f, u->buf, (size_t)n);
	}
}

/* The services changed: flows whose backend left their port move (end now;
 * the client's next datagram picks again). */
static void check_backends(struct em_udp *u)
{
	struct em_udp_flow_node *n = em_udp_table_oldest(&u->table), *next;

	for (; n; n = next) {
		struct flow *f = flow_of(n);
		struct sockaddr_storage dst;
		socklen_t dlen;
		struct em_lb_port *lp = NULL;
		bool keep;

		next = n->newer;
		em_udp_key_dst(&n->key, &dst, &dlen);
		urcu_memb_read_lock();
		int r = u->cfg.resolve(u->cfg.resolve_ctx, (struct sockaddr *)&dst, &lp);
		urcu_memb_read_unlock();
		keep = r == 0 && (lp == f->lp || em_udp_lb_has(lp, (struct sockaddr *)&f->backend));
		if (r == 0)
			em_udp_lb_put(lp);
		if (!keep) {
			ADD(moved);
			flow_end(u, f, ENDED, 0);
		}
	}
}

static void timers(struct em_udp *u, uint64_t now)
{
	struct em_udp_flow_node *n;
	uint64_t idle = (uint64_t)u->cfg.idle_timeout_s * 1000;

	while ((n = em_udp_table_expire(&u->table, now, idle))) {
		ADD(idle);
		flow_free(u, flow_of(n), ENDED, 0);
	}
	if (u->cfg.generation && now >= u->next_gen_check) {
		uint64_t g;
		u->next_gen_check = now + GEN_CHECK_MS;
		urcu_memb_read_lock();
		g = u->cfg.generation(u->cfg.resolve_ctx);
		urcu_memb_read_unlock();
		if (g != u->gen) {
			u->gen = g;
			check_backends(u);
			u->change_pending = true;
		}
		if (u->change_pending && u->cfg.changed)
			u->change_pending = u->cfg.changed(u->cfg.changed_ctx) < 0;
	}
}

static void *thread_main(void *arg)
{
	struct em_udp *u = arg;
	struct epoll_event ev[EVENTS];
	uint64_t idle = (uint64_t)u->cfg.idle_timeout_s * 1000;
	struct em_progress progress;	/* watchdog heartbeat */

	urcu_memb_register_thread();
	em_progress_register(&progress, "udp forwarder");
	for (;;) {
		uint64_t now = em_clock_ms();
		uint64_t next = em_udp_table_next_expiry(&u->table, idle);
		if (u->cfg.generation && u->next_gen_check < next)
			next = u->next_gen_check;
		int timeout = next == UINT64_MAX ? -1 : next <= now ? 0 :
			      next - now > 60000 ? 60000 : (int)(next - now);
		em_progress_wait(&progress);
		int n = epoll_wait(u->epfd, ev, EVENTS, timeout);
		em_progress_woke(&progress);
		bool stop = false;

		if (n == -1 && errno != EINTR) {
			em_err("udp forwarder: epoll_wait: %s", strerror(errno));
			break;
		}
		u->ev = ev;
		u->ev_n = n;
		for (u->ev_i = 0; u->ev_i < n; u->ev_i++) {
			struct source *s = ev[u->ev_i].data.ptr;
			if (s == &u->stop)
				stop = true;
			else if (s)	/* NULL: its flow was freed earlier in the batch */
				s->fn(u, s, ev[u->ev_i].events);
		}
		u->ev = NULL;
		if (stop)
			break;
		timers(u, em_clock_ms());
	}
	em_progress_unregister(&progress);
	urcu_memb_unregister_thread();
	return NULL;
}

/* ---- start / stop ----------------------------------------------------- */

static int listener(struct em_udp *u, int family, const char *addr, struct source *s)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1, err;
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	s->fd = -1;
	s->fn = on_listener;
	if (fd == -1)
		return -errno;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(u->port);
		len = sizeof(*a);
		err = inet_pton(AF_INET, addr, &a->sin_addr) == 1 ? 0 : -EINVAL;
		if (!err && (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == -1 ||
			     setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) == -1))
			err = -errno;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(u->port);
		len = sizeof(*a);
		err = inet_pton(AF_INET6, addr, &a->sin6_addr) == 1 ? 0 : -EINVAL;
		if (!err && (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1 ||
			     setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == -1 ||
			     setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) == -1))
			err = -errno;
	}
	if (!err && bind(fd, (struct sockaddr *)&ss, len) == -1)
		err = -errno;
	if (!err && u->port == 0) {
		len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
			u->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
							  : ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	s->fd = fd;
	if (!err)
		err = watch(u, s);
	return err;
}

void em_udp_stop(struct em_udp *u)
{
	struct em_udp_flow_node *n;

	if (!u)
		return;
	if (u->started) {
		uint64_t one = 1;
		if (write(u->stop.fd, &one, sizeof(one)) == -1)
			em_err("udp forwarder: cannot signal stop: %s", strerror(errno));
		pthread_join(u->tid, NULL);
	}
	while ((n = em_udp_table_oldest(&u->table))) {
		em_udp_table_remove(&u->table, n);
		flow_free(u, flow_of(n), ENDED, 0);
	}
	em_udp_table_fini(&u->table);
	if (u->l4.fd >= 0)
		close(u->l4.fd);
	if (u->l6.fd >= 0)
		close(u->l6.fd);
	if (u->stop.fd >= 0)
		close(u->stop.fd);
	if (u->epfd >= 0)
		close(u->epfd);
	free(u->buf);
	free(u);
}

int em_udp_start(const struct em_udp_config *cfg, struct em_udp **out)
{
	struct em_udp *u;
	int err;

	if (!cfg->resolve || (!cfg->listen4 && !cfg->listen6))
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->cfg = *cfg;
	if (!u->cfg.idle_timeout_s)
		u->cfg.idle_timeout_s = EM_UDP_DEFAULT_IDLE_TIMEOUT_S;
	u->port = cfg->port;
	u->l4.fd = u->l6.fd = -1;
	u->stop.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->epfd = epoll_create1(EPOLL_CLOEXEC);
	u->buf = malloc(DGRAM_MAX);
	err = -ENOMEM;
	if (!u->buf || em_udp_table_init(&u->table, cfg->max_flows ? cfg->max_flows
								  : EM_UDP_DEFAULT_MAX_FLOWS) < 0)
		goto fail;
	err = -errno;
	if (u->stop.fd == -1 || u->epfd == -1)
		goto fail;
	if ((err = watch(u, &u->stop)) < 0)
		goto fail;
	if (cfg->listen4 && (err = listener(u, AF_INET, cfg->listen4, &u->l4)) < 0)
		goto fail;
	if (cfg->listen6 && (err = listener(u, AF_INET6, cfg->listen6, &u->l6)) < 0)
		goto fail;
	if (cfg->generation)
		u->gen = cfg->generation(cfg->resolve_ctx);
	u->change_pending = true;	/* the first state, whatever the generation */
	if ((err = -pthread_create(&u->tid, NULL, thread_main, u)) < 0)
		goto fail;
	u->started = true;
	*out = u;
	return 0;
fail:
	em_udp_stop(u);
	return err;
}

uint16_t em_udp_port(const struct em_udp *u)
{
	return u->port;
}

#define LOAD(x) atomic_load_explicit(&((struct em_udp *)u)->x, memory_order_relaxed)

void em_udp_get_stats(const struct em_udp *u, struct em_udp_stats *st)
{
	st->datagrams_up = LOAD(datagrams_up);
	st->datagrams_down = LOAD(datagrams_down);
	st->refused = LOAD(refused);
	st->no_backend = LOAD(no_backend);
	st->flows = LOAD(flows);
	st->active = LOAD(active);
	st->evicted = LOAD(evicted);
	st->idle = LOAD(idle);
	st->icmp_errors = LOAD(icmp_errors);
	st->moved = LOAD(moved);
	st->errors = LOAD(errors);
}
