/* l4.c — one L4 connection: choose a backend, connect without blocking
 * (retrying other backends), then relay both directions with splice(2)
 * through a pipe each, honouring half-close, resets and timeouts.
 *
 * Ownership: struct em_proxy_conn owns both sockets, both pipes, its
 * balancer reference and its pick; conn_close() gives them all back and
 * conn_free() (via the worker's dead list) is the one place the struct is
 * freed. Both sockets are registered edge-triggered for in and out at once,
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

/* 256 KiB pipes: a bulk transfer moves more per splice than the default
 * 64 KiB; pages are only used while data waits in them. */
#define PIPE_SIZE (256 * 1024)

enum conn_state {
	CONN_CONNECTING,
	CONN_RELAY,
	CONN_DEAD,
};

struct relay_dir {
	int pipe[2];			/* [0] read end, [1] write end; -1 when closed */
	size_t queued;			/* bytes in the pipe */
	size_t capacity;
	bool eof;			/* the source sent FIN */
	bool shut;			/* we sent FIN to the destination */
};

struct em_proxy_conn {
	struct em_proxy_src client;	/* kind EM_SRC_CLIENT */
	struct em_proxy_src upstream;	/* kind EM_SRC_UPSTREAM; fd -1 between attempts */
	struct em_proxy_conn *prev, *next;
	enum conn_state state;
	struct em_lb_port *lb;		/* our reference */
	int backend;			/* index of the outstanding pick, or -1 */
	int avoid;			/* last failed backend, for the retry */
	unsigned attempt;
	unsigned max_attempts;
	struct sockaddr_storage client_addr;
	socklen_t client_len;
	struct em_proxy_timer timer;	/* connect timeout, then idle timeout */
	uint64_t last_active_ms;
	struct relay_dir up;		/* client -> backend */
	struct relay_dir down;		/* backend -> client */
};

#define conn_of(src, member) \
	((struct em_proxy_conn *)((char *)(src) - offsetof(struct em_proxy_conn, member)))
#define conn_of_timer(t) conn_of(t, timer)

static void try_connect(struct em_proxy_worker *w, struct em_proxy_conn *c);

static void set_linger0(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void dir_close(struct relay_dir *d)
{
	for (int i = 0; i < 2; i++)
		if (d->pipe[i] >= 0) {
			close(d->pipe[i]);
			d->pipe[i] = -1;
		}
}

/* End the connection. `reset`: close both sockets with RST (errors,
 * timeouts, refusals) so the peers see the failure instead of a clean EOF.
 * Idempotent; the struct itself is freed later by em_proxy_conn_reap(). */
static void conn_close(struct em_proxy_worker *w, struct em_proxy_conn *c,
		       bool reset, enum em_balancer_outcome outcome)
{
	struct em_proxy *p = w->proxy;

	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	if (c->backend >= 0)
		em_lb_port_release(c->lb, c->backend, outcome);
	c->backend = -1;
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
	dir_close(&c->up);
	dir_close(&c->down);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->dead;
	w->dead = c;
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
		conn_close(w, w->conns, true, EM_BALANCER_OK);
}

/* Every attempt failed, or no backend at all: the client gets a reset. */
static void conn_fail(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit fail_rl;

	em_log_rl(&fail_rl, EM_LOG_WARN, "proxy: %s: no backend reachable after %u attempt(s) "
		  "(%zu backends)", em_lb_port_label(c->lb), c->attempt,
		  em_lb_port_n_backends(c->lb));
	conn_close(w, c, true, EM_BALANCER_FAILED);
	/* Counted after the close, here and below: whoever sees the counter
	 * move also sees `active` already lowered. */
	EM_PROXY_COUNT(w->proxy, no_backend, 1);
}

/* The current attempt failed: report it, drop its socket, try the next. */
static void attempt_failed(struct em_proxy_worker *w, struct em_proxy_conn *c,
			   enum em_balancer_outcome outcome)
{
	em_lb_port_release(c->lb, c->backend, outcome);
	c->avoid = c->backend;
	c->backend = -1;
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
		attempt_failed(w, c, EM_BALANCER_TIMEOUT);
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
	conn_close(w, c, true, EM_BALANCER_OK);
	EM_PROXY_COUNT(w->proxy, idle_timeouts, 1);
}

static int backend_sockaddr(const struct em_balancer_backend *b,
			    struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (b->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = b->ip.v6;
		sin6->sin6_port = htons(b->port);
		return sizeof(*sin6);
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	sin->sin_family = AF_INET;
	sin->sin_addr = b->ip.v4;
	sin->sin_port = htons(b->port);
	return sizeof(*sin);
}

/* Open a non-blocking socket to backend `b`. The bypass mark keeps our own
 * upstream traffic out of the capture rules (else a backend that is itself
 * a fake IP would loop back to us). Returns the fd or -errno; a connect
 * that fails at once (ENETUNREACH, or ECONNREFUSED on loopback) returns
 * -errno too. */
static int open_upstream(const struct em_proxy_config *cfg,
			 const struct em_balancer_backend *b, bool *local_error)
{
	struct sockaddr_storage ss;
	int len = backend_sockaddr(b, &ss), fd, one = 1, ret;

	*local_error = true;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (cfg->bypass_mark &&
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &cfg->bypass_mark,
		       sizeof(cfg->bypass_mark)) == -1)
		goto err;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) == -1 &&
	    errno != EINPROGRESS) {
		*local_error = false;
		goto err;
	}
	*local_error = false;
	return fd;
err:
	ret = -errno;
	close(fd);
	return ret;
}

static void try_connect(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit sock_rl;
	const struct em_proxy_config *cfg = &w->proxy->cfg;

	while (c->attempt < c->max_attempts) {
		const struct em_balancer_backend *b;
		struct epoll_event ev;
		bool local_error;
		int idx, fd;

		idx = em_lb_port_pick(c->lb, (struct sockaddr *)&c->client_addr,
				      c->client_len, c->avoid, c->attempt);
		c->attempt++;
		if (idx < 0)
			break;
		c->backend = idx;
		b = em_lb_port_backend(c->lb, idx);
		fd = open_upstream(cfg, b, &local_error);
		if (fd < 0 && local_error) {
			/* Not the backend's fault (EMFILE, EPERM on SO_MARK):
			 * report the pick as fine and give up. */
			em_log_rl(&sock_rl, EM_LOG_WARN, "proxy: %s: upstream socket: %s",
				  em_lb_port_label(c->lb), strerror(-fd));
			conn_close(w, c, true, EM_BALANCER_OK);
			return;
		}
		if (fd < 0) {
			em_lb_port_release(c->lb, idx, EM_BALANCER_FAILED);
			EM_PROXY_COUNT(w->proxy, upstream_failures, 1);
			c->backend = -1;
			c->avoid = idx;
			continue;
		}
		c->upstream.fd = fd;
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		ev.data.ptr = &c->upstream;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1 ||
		    em_proxy_timer_arm(&w->timers, &c->timer,
				       w->now_ms + cfg->connect_timeout_ms) < 0) {
			conn_close(w, c, true, EM_BALANCER_OK);
			return;
		}
		return;
	}
	conn_fail(w, c);
}

static int dir_open(struct relay_dir *d)
{
	int ret;

	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		return -errno;
	/* Best effort: the default 64 KiB works too. */
	ret = fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
	if (ret == -1)
		ret = fcntl(d->pipe[1], F_GETPIPE_SZ);
	d->capacity = ret > 0 ? (size_t)ret : 65536;
	return 0;
}

/* Move what can be moved from `from` to `to` through d's pipe. Returns 1 if
 * anything moved, 0 if not, -errno on a socket error (either side).
 * SPLICE_F_NONBLOCK only makes the pipe side non-blocking; the sockets are
 * O_NONBLOCK themselves. EAGAIN reading means "socket empty or pipe full";
 * both are resolved by the write half or a later edge. */
static int pump(struct relay_dir *d, int from, int to, _Atomic uint64_t *bytes)
{
	int progress = 0;

	for (;;) {
		bool moved = false;
		ssize_t n;

		if (!d->eof && d->queued < d->capacity) {
			n = splice(from, NULL, d->pipe[1], NULL, d->capacity - d->queued,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				d->queued += (size_t)n;
				moved = true;
			} else if (n == 0) {
				d->eof = true;
				moved = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				return -errno;
			}
		}
		if (d->queued) {
			n = splice(d->pipe[0], NULL, to, NULL, d->queued,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				d->queued -= (size_t)n;
				atomic_fetch_add_explicit(bytes, (uint64_t)n,
							  memory_order_relaxed);
				moved = true;
			} else if (n == -1 && errno != EAGAIN && errno != EINTR) {
				return -errno;
			}
		}
		if (d->eof && !d->queued && !d->shut) {
			/* Half-close: pass the FIN on and keep the other
			 * direction running. */
			if (shutdown(to, SHUT_WR) == -1 && errno != ENOTCONN)
				return -errno;
			d->shut = true;
		}
		if (!moved)
			return progress;
		progress = 1;
	}
}

static void relay(struct em_proxy_worker *w, struct em_proxy_conn *c)
{
	static _Thread_local struct em_ratelimit relay_rl;
	struct em_proxy *p = w->proxy;
	int a, b;

	a = pump(&c->up, c->client.fd, c->upstream.fd, &p->c.bytes_up);
	b = a < 0 ? 0 : pump(&c->down, c->upstream.fd, c->client.fd, &p->c.bytes_down);
	if (a < 0 || b < 0) {
		int err = a < 0 ? -a : -b;

		if (err == EPIPE) {
			/* Consume the SIGPIPE the write raised (blocked in
			 * workers) so it does not stay pending. */
			static const struct timespec zero;
			sigset_t pipe_set;

			sigemptyset(&pipe_set);
			sigaddset(&pipe_set, SIGPIPE);
			sigtimedwait(&pipe_set, NULL, &zero);
		}
		/* A reset by either peer is routine; pass it on as a reset. */
		if (err != ECONNRESET && err != EPIPE)
			em_log_rl(&relay_rl, EM_LOG_INFO, "proxy: %s: relay: %s",
				  em_lb_port_label(c->lb), strerror(err));
		conn_close(w, c, true, EM_BALANCER_OK);
		EM_PROXY_COUNT(p, errors, 1);
		return;
	}
	if (a > 0 || b > 0)
		c->last_active_ms = w->now_ms;
	if (c->up.shut && c->down.shut) {
		conn_close(w, c, false, EM_BALANCER_OK);
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
	if (dir_open(&c->up) < 0 || dir_open(&c->down) < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->client.fd, &ev) == -1 ||
	    em_proxy_timer_arm(&w->timers, &c->timer, w->now_ms + idle_ms) < 0) {
		conn_close(w, c, true, EM_BALANCER_OK);
		return;
	}
	relay(w, c);
}

void em_proxy_conn_event(struct em_proxy_worker *w, struct em_proxy_src *src,
			 uint32_t events)
{
	struct em_proxy_conn *c = src->kind == EM_SRC_CLIENT ? conn_of(src, client)
							     : conn_of(src, upstream);

	if (c->state == CONN_DEAD)
		return;		/* closed earlier in this event batch */
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (src->kind != EM_SRC_UPSTREAM || src->fd < 0)
			return;
		if (getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			attempt_failed(w, c, EM_BALANCER_FAILED);
			return;
		}
		if (events & EPOLLOUT)
			connected(w, c);
		return;
	}
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		/* A reset on a direction we no longer read (after EOF) would
		 * otherwise go unnoticed until the next write. */
		getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_close(w, c, true, EM_BALANCER_OK);
			EM_PROXY_COUNT(w->proxy, errors, 1);
			return;
		}
	}
	relay(w, c);
}

void em_proxy_l4_start(struct em_proxy_worker *w, int cfd,
		       const struct sockaddr_storage *client, socklen_t client_len,
		       struct em_lb_port *lb)
{
	struct em_proxy *p = w->proxy;
	struct em_proxy_conn *c = calloc(1, sizeof(*c));
	size_t n;

	if (!c) {
		set_linger0(cfd);
		close(cfd);
		em_lb_port_put(lb);
		return;
	}
	c->client = (struct em_proxy_src){ EM_SRC_CLIENT, cfd };
	c->upstream = (struct em_proxy_src){ EM_SRC_UPSTREAM, -1 };
	c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
	c->state = CONN_CONNECTING;
	c->lb = lb;
	c->backend = c->avoid = -1;
	c->client_addr = *client;
	c->client_len = client_len;
	n = em_lb_port_n_backends(lb);
	c->max_attempts = p->cfg.connect_attempts < n ? p->cfg.connect_attempts : (unsigned)n;
	if (c->max_attempts == 0)
		c->max_attempts = 1;	/* one pick, which says "none" */
	em_proxy_timer_init(&c->timer, on_timer);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	EM_PROXY_COUNT(p, active, 1);
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	try_connect(w, c);
}
