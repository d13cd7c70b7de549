/* l4.c — one L4 connection: choose a backend, connect without blocking
 * (retrying other backends), then relay both directions with splice(2)
 * through a pipe each, honouring half-close, resets and timeouts.
 *
 * Ownership: struct em_proxy_conn owns both sockets, its balancer reference
 * and its pick, and borrows a pipe per direction only while bytes wait in it
 * (an idle relay holds none); conn_close() gives them all back and
 * em_proxy_conn_reap() (the worker's dead list, after the event batch) is the
 * one place the struct is freed. Both sockets are registered edge-triggered for in and out at once,
 * so pump() must move data until every path is blocked on EAGAIN, an empty
 * pipe or an EOF: each of those is re-announced by a fresh edge. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/worker.h"
#include "util/log.h"

enum conn_state {
	CONN_CONNECTING,
	CONN_RELAY,
	CONN_DEAD,
};

struct relay_dir {
	struct em_proxy_splice sp;	/* pipe borrowed while bytes wait in it */
	bool eof;			/* the source sent FIN */
	bool shut;			/* we sent FIN to the destination */
};

struct em_proxy_conn {
	struct em_proxy_src client;
	struct em_proxy_src upstream;	/* fd -1 between attempts */
	struct em_proxy_conn *prev, *next;
	enum conn_state state;
	struct em_lb_port *lb;		/* our reference; NULL for a tunnel */
	int backend;			/* index of the outstanding pick, or -1 */
	unsigned attempt;
	unsigned max_attempts;
	uint64_t picked_ms;		/* when the outstanding attempt started */
	uint64_t latency_us;		/* pick to connected */
	struct sockaddr_storage client_addr;
	socklen_t client_len;
	struct sockaddr_storage dst_addr;	/* the original destination */
	socklen_t dst_len;
	struct em_balancer_request req;	/* avoid/attempt carried across retries */
	struct em_proxy_timer timer;	/* connect timeout, then idle timeout */
	uint64_t last_active_ms;
	uint64_t sent, received;
	struct relay_dir up;		/* client -> backend */
	struct relay_dir down;		/* backend -> client */
	/* Client bytes already read (an HTTP port's first bytes that were
	 * not HTTP): sent to the backend before any from the socket. */
	char *pre;
	size_t pre_len, pre_off;
};

#define conn_of(src, member) \
	((struct em_proxy_conn *)((char *)(src) - offsetof(struct em_proxy_conn, member)))
#define conn_of_timer(t) conn_of(t, timer)

static void try_connect(struct em_proxy_worker *w, struct em_proxy_conn *c);
static void client_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events);
static void upstream_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events);

static void set_linger0(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void release_pick(struct em_proxy_worker *w, struct em_proxy_conn *c,
			 enum em_balancer_outcome outcome, int err)
{
	struct em_balancer_result res = {
		.outcome = outcome,
		.error = err,
		.bytes_sent = c->sent,
		.bytes_received = c->received,
	};

	if (c->backend < 0)
		return;
	(void)w;
	if (outcome == EM_BALANCER_OK)
		res.latency_us = c->latency_us;
	em_lb_port_release_result(c->lb, c->backend, &res);
	c->backend = -1;
}

/* End the connection. `reset`: close both sockets with RST (errors,
 * timeouts, refusals) so the peers see the failure instead of a clean EOF.
 * Idempotent; the struct itself is freed later by em_proxy_conn_reap(). */
static void conn_close(struct em_proxy_worker *w, struct em_proxy_conn *c,
		       bool reset, enum em_balancer_outcome outcome, int err)
{
	struct em_proxy *p = w->proxy;

	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	release_pick(w, c, outcome, err);
	em_lb_port_put(c->lb);
	c->lb = NULL;
	em_proxy_timer_cancel(&w->timers, &c->timer);
	/* close() also removes the fds from epoll (no dup exists). */
	if (c->client.fd >= 0) {
		if (reset)
			set_linger0(c->client.fd);
		close(c->client.fd);
		c->client.fd = -1;
	}
	if (c->upstream.fd >= 0) {
		if (reset)
			set_linger0(c->upstream.fd);
		close(c->upstream.fd);
		c->upstream.fd = -1;
	}
	em_proxy_splice_drop(w, &c->up.sp);
	em_proxy_splice_drop(w, &c->down.sp);
	free(c->pre);
	c->pre = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->dead;
	w->dead = c;
	em_proxy_client_done(p, (const struct sockaddr *)&c->client_addr);
	atomic_fetch_sub_explicit(&p->c.active, 1, memory_order_relaxed);
}

void em_proxy_conn_reap(struct em_proxy_worker *w)
{
	while (w->dead) {
		struct em_proxy_conn *c = w->dead;
		w->dead = c->next;
		free(c);
	}
}

void em_proxy_conn_close_all(struct em_proxy_worker *w)
{
	while (w->conns)
		conn_close(w, w->conns, true, EM_BALANCER_CANCELLED, 0);
}

/* Every attempt failed, or no backend at all: the client gets a reset. */
static void conn_fail(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit fail_rl;

	em_log_rl(&fail_rl, EM_LOG_WARN, "proxy: %s: no backend reachable after %u attempt(s) "
		  "(%zu backends)", em_lb_port_label(c->lb), c->attempt,
		  em_lb_port_n_backends(c->lb));
	conn_close(w, c, true, EM_BALANCER_FAILED, 0);
	/* Counted after the close, here and below: whoever sees the counter
	 * move also sees `active` already lowered. */
	EM_PROXY_COUNT(w->proxy, no_backend, 1);
}

/* The current attempt failed: report it, drop its socket, try the next. */
static void attempt_failed(struct em_proxy_worker *w, struct em_proxy_conn *c,
			   enum em_balancer_outcome outcome, int err)
{
	c->req.avoid = c->backend;
	release_pick(w, c, outcome, err);
	if (c->upstream.fd >= 0) {
		close(c->upstream.fd);
		c->upstream.fd = -1;
	}
	if (outcome == EM_BALANCER_TIMEOUT)
		EM_PROXY_COUNT(w->proxy, connect_timeouts, 1);
	else
		EM_PROXY_COUNT(w->proxy, upstream_failures, 1);
	try_connect(w, c);
}

static void on_timer(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	struct em_proxy_conn *c = conn_of_timer(t);
	uint64_t idle_ms = (uint64_t)w->proxy->cfg.idle_timeout_s * 1000;

	if (c->state == CONN_CONNECTING) {
		attempt_failed(w, c, EM_BALANCER_TIMEOUT, ETIMEDOUT);
		return;
	}
	if (c->state != CONN_RELAY)
		return;
	/* Activity does not touch the heap; the timer re-arms itself from
	 * the last activity until a full idle period has passed. */
	if (w->now_ms - c->last_active_ms < idle_ms) {
		em_proxy_timer_arm(&w->timers, &c->timer, c->last_active_ms + idle_ms);
		return;
	}
	conn_close(w, c, true, EM_BALANCER_OK, 0);
	EM_PROXY_COUNT(w->proxy, idle_timeouts, 1);
}

static void try_connect(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit sock_rl;
	const struct em_proxy_config *cfg = &w->proxy->cfg;
	struct sockaddr_storage ss;
	socklen_t ss_len;
	struct epoll_event ev;
	int fd, idx;

	c->req.client = (const struct sockaddr *)&c->client_addr;
	c->req.client_len = c->client_len;
	c->req.orig_dst = (const struct sockaddr *)&c->dst_addr;
	c->req.orig_dst_len = c->dst_len;
	fd = em_proxy_upstream_connect(w, c->lb, &c->req, &c->attempt, c->max_attempts,
				       &idx, &ss, &ss_len);
	if (fd == -ENOENT) {
		conn_fail(w, c);
		return;
	}
	if (fd < 0) {
		/* Not the backend's fault (EMFILE, EPERM on SO_MARK); the
		 * pick was released as LOCAL. */
		em_log_rl(&sock_rl, EM_LOG_WARN, "proxy: %s: upstream socket: %s",
			  em_lb_port_label(c->lb), strerror(-fd));
		conn_close(w, c, true, EM_BALANCER_LOCAL, -fd);
		return;
	}
	c->backend = idx;
	c->picked_ms = w->now_ms;
	c->upstream.fd = fd;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = &c->upstream;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1 ||
	    em_proxy_timer_arm(&w->timers, &c->timer,
			       w->now_ms + cfg->connect_timeout_ms) < 0)
		conn_close(w, c, true, EM_BALANCER_LOCAL, ENOMEM);
}

/* Move what can be moved from `from` to `to`. Returns 1 if anything moved,
 * 0 if not, -errno on a socket error (either side). */
static int pump(struct em_proxy_worker *w, struct relay_dir *d, int from, int to,
		_Atomic uint64_t *bytes, uint64_t *mine)
{
	bool was_eof = d->eof;
	ssize_t n;

	if (d->shut)
		return 0;
	n = em_proxy_splice_move(w, &d->sp, from, to, UINT64_MAX, NULL, &d->eof);
	if (n < 0)
		return (int)n;
	if (n > 0) {
		atomic_fetch_add_explicit(bytes, (uint64_t)n, memory_order_relaxed);
		*mine += (uint64_t)n;
	}
	if (d->eof && !d->sp.queued && !d->shut) {
		/* Half-close: pass the FIN on and keep the other direction
		 * running. */
		if (shutdown(to, SHUT_WR) == -1 && errno != ENOTCONN)
			return -errno;
		d->shut = true;
	}
	return n > 0 || d->eof != was_eof;
}

/* Send the client bytes read before the relay started. Returns 1 if any
 * went, 0 if none could, -errno. */
static int send_pre(struct em_proxy *p, struct em_proxy_conn *c)
{
	ssize_t n = send(c->upstream.fd, c->pre + c->pre_off, c->pre_len - c->pre_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	atomic_fetch_add_explicit(&p->c.bytes_up, (uint64_t)n, memory_order_relaxed);
	c->sent += (uint64_t)n;
	c->pre_off += (size_t)n;
	if (c->pre_off == c->pre_len) {
		free(c->pre);
		c->pre = NULL;
	}
	return n > 0;
}

static void relay(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit relay_rl;
	struct em_proxy *p = w->proxy;
	int a, b;

	a = c->pre ? send_pre(p, c) : 0;
	if (a >= 0 && !c->pre) {
		int m = pump(w, &c->up, c->client.fd, c->upstream.fd, &p->c.bytes_up, &c->sent);

		a = m < 0 ? m : a | m;
	}
	b = a < 0 ? 0 : pump(w, &c->down, c->upstream.fd, c->client.fd, &p->c.bytes_down,
			     &c->received);
	if (a < 0 || b < 0) {
		int err = a < 0 ? -a : -b;

		/* A reset by either peer is routine; pass it on as a reset. */
		if (err != ECONNRESET && err != EPIPE)
			em_log_rl(&relay_rl, EM_LOG_INFO, "proxy: %s: relay: %s",
				  c->lb ? em_lb_port_label(c->lb) : "tunnel", strerror(err));
		conn_close(w, c, true, EM_BALANCER_OK, 0);
		EM_PROXY_COUNT(p, errors, 1);
		return;
	}
	if (a > 0 || b > 0)
		c->last_active_ms = w->now_ms;
	if (c->up.shut && c->down.shut) {
		conn_close(w, c, false, EM_BALANCER_OK, 0);
		EM_PROXY_COUNT(p, completed, 1);
	}
}

static void connected(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	uint64_t idle_ms = (uint64_t)w->proxy->cfg.idle_timeout_s * 1000;
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.ptr = &c->client,
	};

	c->state = CONN_RELAY;
	c->last_active_ms = w->now_ms;
	/* Adding an fd reports its current readiness, so bytes the client
	 * sent while we were connecting are not missed by edge triggering. */
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->client.fd, &ev) == -1 ||
	    em_proxy_timer_arm(&w->timers, &c->timer, w->now_ms + idle_ms) < 0) {
		conn_close(w, c, true, EM_BALANCER_LOCAL, ENOMEM);
		return;
	}
	relay(w, c);
}

static void relay_event(struct em_proxy_worker *w, struct em_proxy_conn *c,
			struct em_proxy_src *src, uint32_t events)
{
	/* The destination of one direction has room again (pipes.c). */
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
		if (src == &c->client)
			c->down.sp.out_full = false;
		else
			c->up.sp.out_full = false;
	}
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		/* A reset on a direction we no longer read (after EOF) would
		 * otherwise go unnoticed until the next write. */
		getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_close(w, c, true, EM_BALANCER_OK, 0);
			EM_PROXY_COUNT(w->proxy, errors, 1);
			return;
		}
	}
	relay(w, c);
}

static void client_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events)
{
	struct em_proxy_conn *c = conn_of(src, client);

	if (c->state == CONN_RELAY)	/* not DEAD (closed earlier in this batch) */
		relay_event(w, c, src, events);
}

static void upstream_event(struct em_proxy_worker *w, struct em_proxy_src *src, uint32_t events)
{
	struct em_proxy_conn *c = conn_of(src, upstream);

	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (src->fd < 0)
			return;
		if (getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			attempt_failed(w, c, em_proxy_errno_local(err) ? EM_BALANCER_LOCAL
								       : EM_BALANCER_FAILED,
				       err ? err : ECONNREFUSED);
			return;
		}
		if (events & EPOLLOUT) {
			/* The pick stays outstanding for the connection's
			 * life (least-conn counts connections); its latency
			 * is the connect time. */
			c->latency_us = (w->now_ms - c->picked_ms) * 1000;
			connected(w, c);
		}
		return;
	}
	if (c->state == CONN_RELAY)
		relay_event(w, c, src, events);
}

static struct em_proxy_conn *conn_new(struct em_proxy_worker *w, int cfd,
				      const struct sockaddr_storage *client,
				      socklen_t client_len)
{
	struct em_proxy_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->client = (struct em_proxy_src){ cfd, client_event };
	c->upstream = (struct em_proxy_src){ -1, upstream_event };
	c->backend = -1;
	c->req.avoid = -1;
	c->client_addr = *client;
	c->client_len = client_len;
	em_proxy_timer_init(&c->timer, on_timer);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	EM_PROXY_COUNT(w->proxy, active, 1);
	return c;
}

void em_proxy_l4_start(struct em_proxy_worker *w, int cfd,
		       const struct sockaddr_storage *client, socklen_t client_len,
		       const struct sockaddr_storage *orig_dst, socklen_t dst_len,
		       struct em_lb_port *lb, const char *pre, size_t pre_len)
{
	struct em_proxy *p = w->proxy;
	struct em_proxy_conn *c = conn_new(w, cfd, client, client_len);
	size_t n;

	if (!c) {
		set_linger0(cfd);
		close(cfd);
		em_lb_port_put(lb);
		em_proxy_client_done(p, (const struct sockaddr *)client);
		return;
	}
	c->state = CONN_CONNECTING;
	c->lb = lb;
	c->dst_addr = *orig_dst;
	c->dst_len = dst_len;
	n = em_lb_port_n_backends(lb);
	c->max_attempts = p->cfg.connect_attempts < n ? p->cfg.connect_attempts : (unsigned)n;
	if (c->max_attempts == 0)
		c->max_attempts = 1;	/* one pick, which says "none" */
	if (pre_len) {
		c->pre = malloc(pre_len);
		if (!c->pre) {
			conn_close(w, c, true, EM_BALANCER_CANCELLED, ENOMEM);
			return;
		}
		memcpy(c->pre, pre, pre_len);
		c->pre_len = pre_len;
	}
	/* TCP_NODELAY comes from the listener (listener.c). */
	try_connect(w, c);
}

void em_proxy_l4_tunnel(struct em_proxy_worker *w, int cfd, int ufd,
			const struct sockaddr_storage *client, socklen_t client_len)
{
	struct em_proxy_conn *c = conn_new(w, cfd, client, client_len);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };

	if (!c) {
		set_linger0(cfd);
		close(cfd);
		set_linger0(ufd);
		close(ufd);
		em_proxy_client_done(w->proxy, (const struct sockaddr *)client);
		return;
	}
	c->upstream.fd = ufd;
	ev.data.ptr = &c->upstream;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, ufd, &ev) == -1) {
		c->state = CONN_RELAY;
		conn_close(w, c, true, EM_BALANCER_OK, 0);
		return;
	}
	connected(w, c);
}
