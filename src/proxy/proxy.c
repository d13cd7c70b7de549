/* proxy.c — start/stop, the worker threads and their epoll loops, accepting
 * and refusing connections, and the dispatch by the port's protocol. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "proxy/worker.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"

#define MAX_EVENTS 64
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
/* Wake-up batching (see batch_wait): a turn with fewer events than this,
 * while at least BATCH_BUSY requests are in flight, waits before the next
 * epoll_wait. */
#define BATCH_SMALL 16
#define BATCH_BUSY 8

void em_proxy_config_defaults(struct em_proxy_config *cfg)
{
	*cfg = (struct em_proxy_config){
		.port = EM_TPROXY_PORT,
		.listen4 = EM_TPROXY_IPV4,
		.listen6 = NULL,
		.transparent = true,
		.workers = EM_PROXY_DEFAULT_WORKERS,
		.bypass_mark = EM_BYPASS_MARK,
		.connect_timeout_ms = EM_PROXY_DEFAULT_CONNECT_TIMEOUT_MS,
		.idle_timeout_s = EM_PROXY_DEFAULT_IDLE_TIMEOUT_S,
		.connect_attempts = EM_PROXY_DEFAULT_CONNECT_ATTEMPTS,
		.max_head = EM_PROXY_DEFAULT_MAX_HEAD,
		.max_line = EM_PROXY_DEFAULT_MAX_LINE,
		.head_timeout_ms = EM_PROXY_DEFAULT_HEAD_TIMEOUT_MS,
		.keepalive_s = EM_PROXY_DEFAULT_KEEPALIVE_S,
		.batch_wait_us = EM_PROXY_DEFAULT_BATCH_WAIT_US,
		.response_timeout_ms = EM_PROXY_DEFAULT_RESPONSE_TIMEOUT_MS,
		.pool_per_backend = EM_PROXY_DEFAULT_POOL_PER_BACKEND,
		.pool_total = EM_PROXY_DEFAULT_POOL_TOTAL,
		.pool_idle_s = EM_PROXY_DEFAULT_POOL_IDLE_S,
		.pool_max_requests = EM_PROXY_DEFAULT_POOL_MAX_REQUESTS,
		.max_conns = EM_PROXY_DEFAULT_MAX_CONNS,
		.max_conns_per_client = EM_PROXY_DEFAULT_MAX_CONNS_PER_CLIENT,
		.pipe_size = EM_PROXY_DEFAULT_PIPE_SIZE,
		.big_pipes = EM_PROXY_DEFAULT_BIG_PIPES,
	};
}

void em_proxy_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%u", ip, port);
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}

/* Close with RST: the client learns at once that nobody serves this
 * destination, instead of a connection that opens and then says nothing. */
void em_proxy_close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static size_t client_bucket(const struct sockaddr *client)
{
	const unsigned char *ip;
	size_t len;
	uint32_t h = 2166136261u;

	if (client->sa_family == AF_INET6) {
		ip = ((const struct sockaddr_in6 *)client)->sin6_addr.s6_addr;
		len = 16;
	} else {
		ip = (const unsigned char *)&((const struct sockaddr_in *)client)->sin_addr;
		len = 4;
	}
	for (size_t i = 0; i < len; i++)
		h = (h ^ ip[i]) * 16777619u;
	return h % EM_PROXY_PER_CLIENT_BUCKETS;
}

/* Take a client slot: false (nothing taken) beyond max_conns or
 * max_conns_per_client. */
static bool client_admit(struct em_proxy *p, const struct sockaddr_storage *client)
{
	_Atomic unsigned *per = &p->per_client[client_bucket((const struct sockaddr *)client)];

	if (atomic_fetch_add(&p->clients, 1) >= p->cfg.max_conns) {
		atomic_fetch_sub(&p->clients, 1);
		return false;
	}
	if (atomic_fetch_add(per, 1) >= p->cfg.max_conns_per_client) {
		atomic_fetch_sub(per, 1);
		atomic_fetch_sub(&p->clients, 1);
		return false;
	}
	return true;
}

void em_proxy_client_done(struct em_proxy *p, const struct sockaddr *client)
{
	atomic_fetch_sub(&p->per_client[client_bucket(client)], 1);
	atomic_fetch_sub(&p->clients, 1);
}

static void accept_one(struct em_proxy_worker *w, int cfd,
		       const struct sockaddr_storage *client, socklen_t client_len)
{
	static _Thread_local struct em_ratelimit refuse_rl, limit_rl;
	struct em_proxy *p = w->proxy;
	struct sockaddr_storage dst;
	socklen_t dst_len = sizeof(dst);
	struct em_proxy_target t = { 0 };
	char a[64], b[64];
	int ret;

	EM_PROXY_COUNT(p, accepted, 1);
	if (!client_admit(p, client)) {
		/* Refused at once (RST), never left hanging in a queue. */
		em_proxy_addr_text((const struct sockaddr *)client, a, sizeof(a));
		em_log_rl(&limit_rl, EM_LOG_WARN, "proxy: refused %s: connection limit "
			  "(%u in all, %u per client)", a, p->cfg.max_conns,
			  p->cfg.max_conns_per_client);
		em_proxy_close_reset(cfd);
		EM_PROXY_COUNT(p, limit_refusals, 1);
		return;
	}
	/* On a transparent socket the local address is the destination the
	 * client dialled (the fake IP:port), not the listener's. */
	if (getsockname(cfd, (struct sockaddr *)&dst, &dst_len) == -1) {
		em_proxy_close_reset(cfd);
		em_proxy_client_done(p, (const struct sockaddr *)client);
		EM_PROXY_COUNT(p, refused, 1);
		return;
	}
	ret = p->cfg.resolve(p->cfg.resolve_ctx, (struct sockaddr *)&dst,
			     (const struct sockaddr *)client, &t);
	if (ret < 0 || !t.lb) {
		EM_PROXY_COUNT(p, refused, 1);
		em_proxy_addr_text((struct sockaddr *)client, a, sizeof(a));
		em_proxy_addr_text((struct sockaddr *)&dst, b, sizeof(b));
		em_log_rl(&refuse_rl, EM_LOG_INFO,
			  "proxy: refused %s -> %s: not a service port", a, b);
		em_proxy_close_reset(cfd);
		em_proxy_client_done(p, (const struct sockaddr *)client);
		return;
	}
	/* The one place where the protocol of a port picks its forwarder. */
	switch (t.app) {
	case EM_APP_HTTP:
		/* Per request: each request resolves and picks again. */
		em_lb_port_put(t.lb);
		em_proxy_http_start(w, cfd, client, client_len, &dst, dst_len);
		break;
	case EM_APP_L4:
		em_proxy_l4_start(w, cfd, client, client_len, &dst, dst_len, t.lb, NULL, 0);
		break;
	default:
		EM_PROXY_COUNT(p, refused, 1);
		em_lb_port_put(t.lb);
		em_proxy_close_reset(cfd);
		em_proxy_client_done(p, (const struct sockaddr *)client);
		break;
	}
}

static void resume_accepts(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	struct em_proxy_src *ls[] = { &w->listen4, &w->listen6 };

	(void)t;
	for (size_t i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = ls[i] };
		if (ls[i]->fd >= 0)
			epoll_ctl(w->epfd, EPOLL_CTL_MOD, ls[i]->fd, &ev);
	}
}

static void pause_accepts(struct em_proxy_worker *w)
{
	struct em_proxy_src *ls[] = { &w->listen4, &w->listen6 };

	/* Level-triggered listeners would spin at EMFILE: stop polling them
	 * for a moment; the kernel keeps queueing in the backlog. */
	for (size_t i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = 0, .data.ptr = ls[i] };
		if (ls[i]->fd >= 0)
			epoll_ctl(w->epfd, EPOLL_CTL_MOD, ls[i]->fd, &ev);
	}
	em_proxy_timer_arm(&w->timers, &w->listen_resume, w->now_ms + ACCEPT_PAUSE_MS);
}

static void accept_ready(struct em_proxy_worker *w, struct em_proxy_src *ls,
			 uint32_t events)
{
	static _Thread_local struct em_ratelimit accept_rl;

	(void)events;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage client;
		socklen_t len = sizeof(client);
		int cfd = accept4(ls->fd, (struct sockaddr *)&client, &len,
				  SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd == -1) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			em_log_rl(&accept_rl, EM_LOG_WARN, "proxy: accept on port %u: %s",
				  w->proxy->port, strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				pause_accepts(w);
			return;
		}
		accept_one(w, cfd, &client, len);
	}
}

static void stop_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events)
{
	(void)src;
	(void)events;
	w->stopping = true;
}

/* A busy worker whose last turn found only a few events sleeps
 * cfg.batch_wait_us before the next epoll_wait, so that the events of the
 * requests in flight gather: else it blocks in epoll_wait after almost
 * every turn and pays a sleep and a wake-up (an IPI, in a VM an exit) for
 * one or two events. In the proxy-bound keep-alive benchmark that was the
 * difference to HAProxy, whose longer turns batch by themselves (5 times
 * fewer context switches per request). A quiet worker (few requests in
 * flight) never waits: its latency is unchanged. */
static void batch_wait(const struct em_proxy_worker *w, int last_n)
{
	unsigned us = w->proxy->cfg.batch_wait_us;
	struct timespec ts;

	if (!us || last_n <= 0 || last_n >= BATCH_SMALL || w->pools.bufs_out < BATCH_BUSY)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	nanosleep(&ts, NULL);
}

static void *worker_main(void *arg)
{
	struct em_proxy_worker *w = arg;
	struct epoll_event evs[MAX_EVENTS];
	int n = 0;
	/* resolve() reads the registry snapshot under RCU. */
	urcu_memb_register_thread();
	em_progress_register(&w->progress, "forwarder worker");
	while (!w->stopping) {
		int timeout;

		batch_wait(w, n);
		w->now_ms = em_clock_ms();
		timeout = em_proxy_timer_next(&w->timers, w->now_ms);
		em_progress_wait(&w->progress);
		n = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout);
		em_progress_woke(&w->progress);
		if (n == -1 && errno != EINTR) {
			em_err("proxy: epoll_wait: %s", strerror(errno));
			break;
		}
		w->now_ms = em_clock_ms();
		for (int i = 0; i < n; i++) {
			struct em_proxy_src *src = evs[i].data.ptr;

			src->on_event(w, src, evs[i].events);
		}
		em_proxy_timer_run(w);
		/* Only now: events later in the batch may still name a
		 * connection closed earlier in it (they see it as dead). */
		em_proxy_conn_reap(w);
		em_proxy_http_reap(w);
		em_proxy_pool_reap(w);
	}
	w->stopping = true;
	em_proxy_http_close_all(w);
	em_proxy_conn_close_all(w);
	em_proxy_pool_close_all(w);
	em_proxy_conn_reap(w);
	em_proxy_http_reap(w);
	em_proxy_pool_reap(w);
	em_proxy_pools_free(w);
	em_progress_unregister(&w->progress);
	urcu_memb_unregister_thread();
	return NULL;
}

static void worker_close(struct em_proxy_worker *w)
{
	if (w->listen4.fd >= 0)
		close(w->listen4.fd);
	if (w->listen6.fd >= 0)
		close(w->listen6.fd);
	if (w->stop.fd >= 0)
		close(w->stop.fd);
	if (w->epfd >= 0)
		close(w->epfd);
	em_proxy_timer_heap_free(&w->timers);
}

static int add_src(struct em_proxy_worker *w, struct em_proxy_src *src)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = src };

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, src->fd, &ev) == -1)
		return -errno;
	return 0;
}

/* The first listener learns the port when cfg->port is 0; the others bind
 * the same one (SO_REUSEPORT group). */
static int worker_open(struct em_proxy *p, struct em_proxy_worker *w)
{
	int ret;

	w->proxy = p;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd == -1)
		return -errno;
	w->stop = (struct em_proxy_src){ eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), stop_event };
	if (w->stop.fd == -1)
		return -errno;
	if ((ret = add_src(w, &w->stop)) < 0)
		return ret;
	em_proxy_timer_init(&w->listen_resume, resume_accepts);
	if (p->cfg.listen4) {
		w->listen4.fd = em_proxy_listener_open(AF_INET, p->cfg.listen4, p->port,
						       p->cfg.transparent);
		if (w->listen4.fd < 0)
			return w->listen4.fd;
		if (p->port == 0) {
			struct sockaddr_in sin;
			socklen_t len = sizeof(sin);
			if (getsockname(w->listen4.fd, (struct sockaddr *)&sin, &len) == -1)
				return -errno;
			p->port = ntohs(sin.sin_port);
		}
		if ((ret = add_src(w, &w->listen4)) < 0)
			return ret;
	}
	if (p->cfg.listen6) {
		w->listen6.fd = em_proxy_listener_open(AF_INET6, p->cfg.listen6, p->port,
						       p->cfg.transparent);
		if (w->listen6.fd < 0)
			return w->listen6.fd;
		if (p->port == 0) {
			struct sockaddr_in6 sin6;
			socklen_t len = sizeof(sin6);
			if (getsockname(w->listen6.fd, (struct sockaddr *)&sin6, &len) == -1)
				return -errno;
			p->port = ntohs(sin6.sin6_port);
		}
		if ((ret = add_src(w, &w->listen6)) < 0)
			return ret;
	}
	return 0;
}

int em_proxy_start(const struct em_proxy_config *cfg, struct em_proxy **out)
{
	struct em_proxy *p;
	unsigned started = 0;
	sigset_t all, old;
	int ret = -EINVAL;

	if (!cfg->resolve || (!cfg->listen4 && !cfg->listen6))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	if (p->cfg.workers == 0)
		p->cfg.workers = 1;
	if (p->cfg.connect_timeout_ms == 0)
		p->cfg.connect_timeout_ms = EM_PROXY_DEFAULT_CONNECT_TIMEOUT_MS;
	if (p->cfg.idle_timeout_s == 0)
		p->cfg.idle_timeout_s = EM_PROXY_DEFAULT_IDLE_TIMEOUT_S;
	if (p->cfg.connect_attempts == 0)
		p->cfg.connect_attempts = 1;
	em_http_limits_default(&p->limits);
	if (p->cfg.max_head)
		p->limits.max_head = p->cfg.max_head;
	if (p->cfg.max_line)
		p->limits.max_line = p->cfg.max_line;
	if (p->limits.max_line > p->limits.max_head)
		p->limits.max_line = p->limits.max_head;
	if (p->limits.max_head < 256)
		p->limits.max_head = 256;
	if (p->cfg.head_timeout_ms == 0)
		p->cfg.head_timeout_ms = EM_PROXY_DEFAULT_HEAD_TIMEOUT_MS;
	if (p->cfg.keepalive_s == 0)
		p->cfg.keepalive_s = EM_PROXY_DEFAULT_KEEPALIVE_S;
	if (p->cfg.response_timeout_ms == 0)
		p->cfg.response_timeout_ms = EM_PROXY_DEFAULT_RESPONSE_TIMEOUT_MS;
	if (p->cfg.max_conns == 0)
		p->cfg.max_conns = EM_PROXY_DEFAULT_MAX_CONNS;
	if (p->cfg.max_conns_per_client == 0)
		p->cfg.max_conns_per_client = p->cfg.max_conns;
	if (p->cfg.pool_max_requests == 0)
		p->cfg.pool_max_requests = EM_PROXY_DEFAULT_POOL_MAX_REQUESTS;
	if (p->cfg.pool_idle_s == 0)
		p->cfg.pool_idle_s = EM_PROXY_DEFAULT_POOL_IDLE_S;
	if (p->cfg.pipe_size == 0)
		p->cfg.pipe_size = EM_PROXY_DEFAULT_PIPE_SIZE;
	p->port = cfg->port;
	p->workers = calloc(p->cfg.workers, sizeof(*p->workers));
	if (!p->workers) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < p->cfg.workers; i++) {
		struct em_proxy_worker *w = &p->workers[i];
		w->epfd = w->stop.fd = -1;
		w->listen4 = (struct em_proxy_src){ -1, accept_ready };
		w->listen6 = (struct em_proxy_src){ -1, accept_ready };
	}
	p->n_workers = p->cfg.workers;
	for (unsigned i = 0; i < p->n_workers; i++)
		if ((ret = worker_open(p, &p->workers[i])) < 0)
			goto err;
	/* Workers start with every signal blocked: the daemon's handlers run
	 * on its own thread, and SIGPIPE from splice() into a socket whose
	 * peer has gone stays pending instead of killing the process (the
	 * EPIPE return is what we act on). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (; started < p->n_workers; started++) {
		ret = -pthread_create(&p->workers[started].thread, NULL, worker_main,
				      &p->workers[started]);
		if (ret < 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0)
		goto err;
	*out = p;
	return 0;
err:
	for (unsigned i = 0; i < started; i++) {
		uint64_t one = 1;
		if (write(p->workers[i].stop.fd, &one, sizeof(one)) == -1)
			em_err("proxy: cannot wake worker %u: %s", i, strerror(errno));
		pthread_join(p->workers[i].thread, NULL);
	}
	for (unsigned i = 0; p->workers && i < p->n_workers; i++)
		worker_close(&p->workers[i]);
	free(p->workers);
	free(p);
	return ret;
}

void em_proxy_stop(struct em_proxy *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n_workers; i++) {
		uint64_t one = 1;
		/* An eventfd write only fails on counter overflow: cannot
		 * happen with one write per worker. */
		if (write(p->workers[i].stop.fd, &one, sizeof(one)) == -1)
			em_err("proxy: cannot wake worker %u: %s", i, strerror(errno));
	}
	for (unsigned i = 0; i < p->n_workers; i++) {
		pthread_join(p->workers[i].thread, NULL);
		worker_close(&p->workers[i]);
	}
	free(p->workers);
	free(p);
}

uint16_t em_proxy_port(const struct em_proxy *p)
{
	return p->port;
}

void em_proxy_get_stats(const struct em_proxy *p, struct em_proxy_stats *out)
{
#define GET(f) out->f = atomic_load_explicit(&p->c.f, memory_order_relaxed);
#define GET_CLASSES(f)						\
	for (int i = 0; i < EM_PROXY_STATUS_CLASSES; i++)	\
		GET(f[i])
	EM_PROXY_COUNTERS(GET)
	EM_PROXY_CLASS_COUNTERS(GET_CLASSES)
#undef GET_CLASSES
#undef GET
}
