/* http.c — the HTTP/1.x forwarder: per-request balancing over one client
 * connection, upstream keep-alive (pool.c), bodies moved with splice(2)
 * (pipes.c) by the framing that http_frame.c decided.
 *
 * One struct em_http_conn per client connection. While idle it holds the
 * client socket, a timer and this struct: no buffer, no pipe, no upstream,
 * no balancer reference. A request borrows a head buffer (the parsed head,
 * the received bytes, the rewritten head) until its response head is sent
 * on, a pipe per direction while body bytes wait in one, a balancer
 * reference resolved from the current snapshot, and an upstream connection
 * taken from the pool or opened.
 *
 * Request heads are read with MSG_PEEK and parsed from the start each time
 * (they are at most max_head bytes); once complete, exactly head_len bytes
 * are consumed, so the body and any pipelined request stay in the socket.
 * The next request head is not read before the current response is
 * through: pipelined requests are answered in order by construction.
 * Response heads are read with one plain recv: body bytes that came in the
 * same read (at most max_head of them) are sent on with the head from user
 * space, which makes a small response one send; the rest is spliced.
 *
 * Both sockets are edge-triggered for in and out: drive() advances until
 * every path waits on EAGAIN or on the other side, and a fresh edge of
 * either socket calls it again. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "proxy/worker.h"
#include "util/log.h"

/* After a reply that ends the connection: drain what the client still sends
 * for this long, so our reply is not destroyed by the RST that closing a
 * socket with unread bytes sends. */
#define LINGER_MS 2000
/* Peek size for chunk framing (the machine consumes long lines piecewise). */
#define CHUNK_PEEK 2048

enum http_state {
	ST_IDLE,	/* between requests: no buffer */
	ST_HEAD,	/* part of a request head received; head timeout armed */
	ST_CONNECT,	/* upstream connect in progress */
	ST_EXCHANGE,	/* request going up, response coming down */
	ST_LINGER,	/* reply sent and write side shut: draining, then close */
	ST_DEAD,
};

enum req_phase { RQ_HEAD, RQ_BODY, RQ_DONE };
enum resp_phase { RS_WAIT, RS_HEAD_OUT, RS_BODY, RS_DONE };

/* One direction of a message body. */
struct body {
	uint8_t kind;			/* enum em_http_body */
	bool eof;			/* the source closed */
	bool chunk_end;			/* chunked: last chunk and trailers consumed */
	uint8_t emit_len, emit_off;	/* chunked: framing still to send */
	char emit[EM_HTTP_CHUNK_EMIT_MAX];
	uint64_t left;			/* LENGTH: bytes still to read from the source */
	uint64_t taken;			/* bytes read from the source so far */
	struct em_http_chunk ch;
	struct em_proxy_splice sp;
};

struct em_http_conn {
	struct em_proxy_src client;
	struct em_http_conn *prev, *next;
	uint8_t state;			/* enum http_state */
	bool sniffed;			/* first bytes looked at (L4 fallback decided) */
	/* An EPOLLIN edge came since the last EAGAIN (or bytes are known to
	 * wait): worth peeking for a request head. */
	bool readable;
	bool rerun;			/* the timer is a zero-delay re-run, not keep-alive */
	union em_proxy_addr client_addr;
	union em_proxy_addr dst_addr;
	socklen_t client_len, dst_len;
	struct em_proxy_timer timer;	/* by state: keep-alive, head, connect, response, linger */
	struct http_req *rq;		/* the request in flight, NULL while idle */
};

/* Everything a request in flight needs; allocated with it, freed after its
 * response: an idle connection does not carry it. */
struct http_req {
	struct em_proxy_buf *buf;	/* borrowed until the response head is sent */
	struct em_lb_port *lb;		/* resolved for this request */
	struct em_proxy_upconn *up;
	int backend;			/* outstanding pick, or -1 */
	int avoid;
	unsigned attempt, max_attempts;
	bool fresh_only;		/* retrying after a stale pooled connection */
	bool stale_retried;
	bool picked_any;		/* some pick returned a backend */
	uint8_t method;			/* enum http_method */
	uint8_t minor;
	bool keep_alive, upgrade, has_body;
	uint8_t rq, rs;			/* enum req_phase, enum resp_phase */
	bool interim;			/* the response head being sent is 1xx */
	bool tunnel;
	bool resp_keep_alive;		/* upstream may be reused */
	bool client_close;		/* close the client after this response */
	bool resp_bytes;		/* a response byte arrived from upstream */
	bool resp_bad;			/* body framing broken: close once the head is out */
	/* An EPOLLIN edge came from the upstream since its last EAGAIN: a
	 * response head is worth peeking for (saves a recv per request). */
	bool up_readable;
	uint16_t status;
	uint64_t picked_ms, sent_ms, last_ms;
	uint64_t latency_us;
	uint64_t bytes_up, bytes_down;
	struct body req, resp;
};

#define conn_of_client(src) \
	((struct em_http_conn *)((char *)(src) - offsetof(struct em_http_conn, client)))
#define conn_of_timer(t) \
	((struct em_http_conn *)((char *)(t) - offsetof(struct em_http_conn, timer)))

static void drive(struct em_proxy_worker *w, struct em_http_conn *c);
static void pick_and_connect(struct em_proxy_worker *w, struct em_http_conn *c);

/* ---- small helpers ---------------------------------------------------- */

static void arm(struct em_proxy_worker *w, struct em_http_conn *c, uint64_t ms)
{
	c->rerun = false;
	em_proxy_timer_arm(&w->timers, &c->timer, w->now_ms + ms);
}

static void ip_text(const union em_proxy_addr *a, char *buf, size_t len)
{
	if (a->sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = &a->sin6;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)len);
	} else {
		inet_ntop(AF_INET, &a->sin.sin_addr, buf, (socklen_t)len);
	}
}

static bool method_idempotent(unsigned m)
{
	switch (m) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_PUT:
	case HTTP_DELETE:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
		return true;
	default:
		return false;
	}
}

static void body_init(struct body *b, enum em_http_body kind, uint64_t len)
{
	memset(b, 0, sizeof(*b));
	b->kind = (uint8_t)kind;
	b->left = len;
	em_http_chunk_init(&b->ch);
}

static void release(struct em_proxy_worker *w, struct http_req *r,
		    enum em_balancer_outcome outcome, int err)
{
	struct em_balancer_result res = {
		.outcome = outcome,
		.error = err,
		.http_status = r->status,
		.latency_us = r->latency_us,
		.bytes_sent = r->bytes_up,
		.bytes_received = r->bytes_down,
	};

	(void)w;
	if (r->backend < 0)
		return;
	em_lb_port_release_result(r->lb, r->backend, &res);
	r->backend = -1;
}

/* Drop everything the request holds. The upstream connection is reset
 * unless it was handed back before. */
static void req_free(struct em_proxy_worker *w, struct em_http_conn *c,
		     enum em_balancer_outcome outcome, int err)
{
	struct http_req *r = c->rq;

	if (!r)
		return;
	release(w, r, outcome, err);
	if (r->up)
		em_proxy_upconn_close(w, r->up, true);
	em_proxy_splice_drop(w, &r->req.sp);
	em_proxy_splice_drop(w, &r->resp.sp);
	em_proxy_buf_put(w, r->buf);
	em_lb_port_put(r->lb);
	free(r);
	c->rq = NULL;
}

static void unlink_conn(struct em_proxy_worker *w, struct em_http_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		w->http_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->http_dead;
	w->http_dead = c;
	atomic_fetch_sub_explicit(&w->proxy->c.active, 1, memory_order_relaxed);
}

/* End the client connection (RST when `reset`) and whatever it holds. */
static void conn_close(struct em_proxy_worker *w, struct em_http_conn *c, bool reset,
		       enum em_balancer_outcome outcome)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	req_free(w, c, outcome, 0);
	em_proxy_timer_cancel(&w->timers, &c->timer);
	if (reset)
		em_proxy_close_reset(c->client.fd);
	else
		close(c->client.fd);
	c->client.fd = -1;
	em_proxy_client_done(w->proxy, &c->client_addr.sa);
	unlink_conn(w, c);
}

/* Hand the client socket over (L4 fallback, tunnel): the struct goes, the
 * socket and the client slot live on. */
static int conn_detach(struct em_proxy_worker *w, struct em_http_conn *c)
{
	int fd = c->client.fd;

	epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
	c->state = ST_DEAD;
	em_proxy_timer_cancel(&w->timers, &c->timer);
	c->client.fd = -1;
	unlink_conn(w, c);
	return fd;
}

/* Send a reply of our own. `keep`: the connection continues (the request
 * had no body left in the socket); else the write side is shut and the
 * rest of what the client sends is drained for a moment. */
static void reply(struct em_proxy_worker *w, struct em_http_conn *c, unsigned status,
		  bool keep)
{
	char out[256];
	int n = em_http_reply(status, !keep, out, sizeof(out));
	ssize_t sent = -1;

	if (n > 0)
		sent = send(c->client.fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	EM_PROXY_COUNT(w->proxy, generated[status / 100 % 6], 1);
	req_free(w, c, EM_BALANCER_CANCELLED, 0);
	if (sent != n) {
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	if (keep) {
		c->state = ST_IDLE;
		arm(w, c, (uint64_t)w->proxy->cfg.keepalive_s * 1000);
		return;
	}
	shutdown(c->client.fd, SHUT_WR);
	c->state = ST_LINGER;
	arm(w, c, LINGER_MS);
}

/* ---- the balancer's view of a request ----------------------------------- */

static const char *req_header(const struct em_balancer_request *req, const char *name,
			      size_t *len)
{
	const struct http_req *r = req->priv;
	struct em_http_span v;

	if (!name || em_http_header_find(&r->buf->head, r->buf->in, name, strlen(name), &v) < 0)
		return NULL;
	*len = v.len;
	return r->buf->in + v.off;
}

static const char *req_cookie(const struct em_balancer_request *req, const char *name,
			      size_t *len)
{
	const struct http_req *r = req->priv;
	struct em_http_span v;

	if (!name || em_http_cookie_find(&r->buf->head, r->buf->in, name, strlen(name), &v) < 0)
		return NULL;
	*len = v.len;
	return r->buf->in + v.off;
}

/* ---- request head ------------------------------------------------------ */

static void fallback_l4(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct em_proxy *p = w->proxy;
	struct em_proxy_target t = { 0 };
	struct sockaddr_storage client = { 0 }, dst = { 0 };
	socklen_t client_len = c->client_len, dst_len = c->dst_len;
	int fd;

	if (p->cfg.resolve(p->cfg.resolve_ctx, &c->dst_addr.sa,
			   &c->client_addr.sa, &t) < 0 || !t.lb) {
		EM_PROXY_COUNT(p, no_backend, 1);
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	EM_PROXY_COUNT(p, l4_fallbacks, 1);
	memcpy(&client, &c->client_addr, client_len);
	memcpy(&dst, &c->dst_addr, dst_len);
	fd = conn_detach(w, c);
	em_proxy_l4_start(w, fd, &client, client_len, &dst, dst_len, t.lb);
}

/* The request head is in r->buf: resolve, pick, connect or reuse. */
static void begin_request(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	struct em_http_head *h = &r->buf->head;
	struct em_proxy_target t = { 0 };
	char ip[INET6_ADDRSTRLEN];
	size_t n;
	int len;

	r->method = h->method;
	r->minor = h->minor;
	r->keep_alive = h->keep_alive;
	r->upgrade = h->upgrade;
	r->has_body = h->body != EM_HTTP_BODY_NONE;
	body_init(&r->req, h->body, h->content_length);
	r->backend = r->avoid = -1;
	EM_PROXY_COUNT(p, requests, 1);
	/* The current snapshot, for this request: a pod added since the
	 * connection opened is a candidate, a deleted one is not. */
	if (p->cfg.resolve(p->cfg.resolve_ctx, &c->dst_addr.sa,
			   &c->client_addr.sa, &t) < 0 || !t.lb) {
		EM_PROXY_COUNT(p, no_backend, 1);
		reply(w, c, 503, !r->has_body && r->keep_alive);
		return;
	}
	r->lb = t.lb;
	ip_text(&c->client_addr, ip, sizeof(ip));
	len = em_http_write_request(h, r->buf->in, ip, r->buf->out, r->buf->cap_out);
	if (len < 0) {
		EM_PROXY_COUNT(p, bad_requests, 1);
		reply(w, c, 431, false);
		return;
	}
	r->buf->out_len = (size_t)len;
	r->buf->out_off = 0;
	n = em_lb_port_n_backends(r->lb);
	r->max_attempts = p->cfg.connect_attempts < n ? p->cfg.connect_attempts : (unsigned)n;
	if (r->max_attempts == 0)
		r->max_attempts = 1;
	pick_and_connect(w, c);
}

/* Look at the bytes waiting on the client socket. Returns 1 when the state
 * changed (drive again), 0 to wait for the next edge. */
static int read_head(struct em_proxy_worker *w, struct em_http_conn *c)
{
	static _Thread_local struct em_ratelimit bad_rl;
	struct em_proxy *p = w->proxy;
	struct em_proxy_buf *b;
	struct http_req *r;
	ssize_t n;
	int ret;

	if (!c->readable)
		return 0;
	b = em_proxy_buf_get(w);
	if (!b) {
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return 0;
	}
	n = recv(c->client.fd, b->in, b->cap_in, MSG_PEEK | MSG_DONTWAIT);
	if (n <= 0) {
		em_proxy_buf_put(w, b);
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			c->readable = false;
			return 0;
		}
		/* EOF or error between requests: the client is done. */
		conn_close(w, c, n == -1, EM_BALANCER_CANCELLED);
		return 0;
	}
	if (!c->sniffed) {
		enum em_http_sniff s = em_http_sniff(b->in, (size_t)n);

		if (s == EM_HTTP_SNIFF_OTHER) {
			em_proxy_buf_put(w, b);
			fallback_l4(w, c);
			return 0;
		}
		if (s == EM_HTTP_SNIFF_HTTP1)
			c->sniffed = true;
	}
	ret = em_http_parse_request(b->in, (size_t)n, &p->limits, &b->head);
	if (ret == 0 && (size_t)n >= b->cap_in)
		ret = -431;
	if (ret == 0) {
		em_proxy_buf_put(w, b);
		if (c->state == ST_IDLE) {
			/* The head timeout runs from its first byte. */
			c->state = ST_HEAD;
			arm(w, c, p->cfg.head_timeout_ms);
		}
		return 0;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		em_proxy_buf_put(w, b);
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return 0;
	}
	r->buf = b;
	r->backend = -1;
	c->rq = r;
	if (ret < 0) {
		char a[64];

		em_proxy_addr_text(&c->client_addr.sa, a, sizeof(a));
		em_log_rl(&bad_rl, EM_LOG_INFO, "proxy: http request from %s refused: %d", a, -ret);
		EM_PROXY_COUNT(p, bad_requests, 1);
		reply(w, c, (unsigned)-ret, false);
		return 1;
	}
	/* Consume exactly the head; the body stays in the socket. */
	if (recv(c->client.fd, b->in, (size_t)ret, MSG_DONTWAIT) != ret) {
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return 0;
	}
	/* Nothing more was waiting: the next edge says when there is. */
	if (n == ret && (size_t)n < b->cap_in)
		c->readable = false;
	c->state = ST_CONNECT;	/* until pick_and_connect says otherwise */
	em_proxy_timer_cancel(&w->timers, &c->timer);
	begin_request(w, c);
	return 1;
}

/* ---- upstream ----------------------------------------------------------- */

static void upstream_event(struct em_proxy_worker *w, struct em_proxy_src *src,
			   uint32_t events);

/* Start sending on r->up (connected, or fresh from the pool). */
static void start_exchange(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;

	c->state = ST_EXCHANGE;
	r->rq = RQ_HEAD;
	r->rs = RS_WAIT;
	r->buf->out_off = 0;
	r->up->requests++;
	/* Until the request is through: inactivity (a stuck head or a slow
	 * upload); then the response timeout (exchange). */
	r->last_ms = w->now_ms;
	arm(w, c, (uint64_t)w->proxy->cfg.idle_timeout_s * 1000);
}

/* Every attempt failed, or none was possible. */
static void give_up(struct em_proxy_worker *w, struct em_http_conn *c)
{
	static _Thread_local struct em_ratelimit fail_rl;
	struct http_req *r = c->rq;
	bool none = !r->picked_any;

	EM_PROXY_COUNT(w->proxy, no_backend, 1);
	if (!none)
		em_log_rl(&fail_rl, EM_LOG_WARN, "proxy: %s: no backend answered after %u "
			  "attempt(s)", em_lb_port_label(r->lb), r->attempt);
	/* The body, if any, is still in the socket: the connection cannot
	 * continue then. */
	reply(w, c, none ? 503 : 502, !r->has_body && r->keep_alive && r->req.taken == 0);
}

static void pick_and_connect(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	struct em_http_head *h = &r->buf->head;
	struct em_balancer_request req = {
		.client = &c->client_addr.sa,
		.client_len = c->client_len,
		.orig_dst = &c->dst_addr.sa,
		.orig_dst_len = c->dst_len,
		.method = r->buf->in + h->method_s.off,
		.method_len = h->method_s.len,
		.path = r->buf->in + h->target.off,
		.path_len = h->target.len,
		.host = h->host.len ? r->buf->in + h->host.off : NULL,
		.host_len = h->host.len,
		.header = req_header,
		.cookie = req_cookie,
		.priv = r,
	};

	while (r->attempt < r->max_attempts + (r->stale_retried ? 1u : 0u)) {
		struct em_balancer_result res = { .outcome = EM_BALANCER_FAILED };
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
		struct sockaddr_storage ss;
		socklen_t len;
		bool local;
		int idx, fd;

		req.avoid = r->avoid;
		req.attempt = r->attempt++;
		idx = em_lb_port_pick_request(r->lb, &req);
		if (idx < 0)
			break;
		r->picked_any = true;
		r->backend = idx;
		r->picked_ms = w->now_ms;
		len = (socklen_t)em_proxy_backend_sockaddr(em_lb_port_backend(r->lb, idx), &ss);
		if (!r->fresh_only) {
			r->up = em_proxy_pool_take(w, &ss, len, c);
			if (r->up) {
				/* Still registered (pool.c): only the handler
				 * changes. */
				EM_PROXY_COUNT(p, pool_hits, 1);
				r->up->src.on_event = upstream_event;
				r->up_readable = false;
				start_exchange(w, c);
				return;
			}
		}
		EM_PROXY_COUNT(p, pool_misses, 1);
		fd = em_proxy_upstream_open(&p->cfg, &ss, len, &local);
		if (fd >= 0) {
			r->up = em_proxy_upconn_new(w, fd, &ss, len, c, upstream_event);
			if (!r->up) {
				release(w, r, EM_BALANCER_LOCAL, ENOMEM);
				break;
			}
			r->up_readable = false;
			ev.data.ptr = &r->up->src;
			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
				release(w, r, EM_BALANCER_LOCAL, errno);
				break;
			}
			c->state = ST_CONNECT;
			arm(w, c, p->cfg.connect_timeout_ms);
			return;
		}
		res.error = -fd;
		if (local) {
			static _Thread_local struct em_ratelimit sock_rl;

			em_log_rl(&sock_rl, EM_LOG_WARN, "proxy: %s: upstream socket: %s",
				  em_lb_port_label(r->lb), strerror(-fd));
			res.outcome = EM_BALANCER_LOCAL;
			em_lb_port_release_result(r->lb, idx, &res);
			r->backend = -1;
			break;
		}
		em_lb_port_release_result(r->lb, idx, &res);
		r->backend = -1;
		EM_PROXY_COUNT(p, upstream_failures, 1);
		r->avoid = idx;
	}
	give_up(w, c);
}

/* The attempt on r->up failed before any response byte. `sent`: the request
 * head (or some of it) went out. Retry when that is safe, else 502. */
static void attempt_failed(struct em_proxy_worker *w, struct em_http_conn *c,
			   enum em_balancer_outcome outcome, int err, bool sent)
{
	struct http_req *r = c->rq;
	bool stale = r->up && r->up->reused && !r->stale_retried;
	int failed = r->backend;

	if (r->up) {
		em_proxy_upconn_close(w, r->up, true);
		r->up = NULL;
	}
	if (stale) {
		/* A pooled connection the backend closed just before we
		 * used it: not the backend's fault; once more, fresh, and
		 * the same backend may be picked again. */
		EM_PROXY_COUNT(w->proxy, pool_stale, 1);
		release(w, r, EM_BALANCER_LOCAL, err);
		r->stale_retried = true;
		r->fresh_only = true;
	} else {
		release(w, r, outcome, err);
		if (outcome == EM_BALANCER_TIMEOUT)
			EM_PROXY_COUNT(w->proxy, connect_timeouts, 1);
		else
			EM_PROXY_COUNT(w->proxy, upstream_failures, 1);
		r->avoid = failed;
		/* After the request went out, only an idempotent request
		 * without a body may be sent again. */
		if (sent && (!method_idempotent(r->method) || r->has_body)) {
			EM_PROXY_COUNT(w->proxy, no_backend, 1);
			reply(w, c, 502, false);
			return;
		}
	}
	if (r->req.taken) {
		/* Body bytes left the client socket: they cannot be sent
		 * again. */
		EM_PROXY_COUNT(w->proxy, no_backend, 1);
		reply(w, c, 502, false);
		return;
	}
	EM_PROXY_COUNT(w->proxy, retries, 1);
	pick_and_connect(w, c);
}

static void upstream_event(struct em_proxy_worker *w, struct em_proxy_src *src,
			   uint32_t events)
{
	struct em_proxy_upconn *u = (struct em_proxy_upconn *)src;
	struct em_http_conn *c = u->owner;

	if (!c || src->fd < 0 || c->state == ST_DEAD || !c->rq || c->rq->up != u)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rq->up_readable = true;
	if (c->state == ST_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			attempt_failed(w, c, em_proxy_errno_local(err) ? EM_BALANCER_LOCAL
								       : EM_BALANCER_FAILED,
				       err ? err : ECONNREFUSED, false);
			drive(w, c);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		start_exchange(w, c);
	}
	drive(w, c);
}

/* ---- bodies -------------------------------------------------------------- */

enum { BODY_WAIT = 0, BODY_PROGRESS = 1, BODY_DONE = 2 };

/* Move body b from `from` to `to`. Returns BODY_* or -errno: -EBADMSG for
 * bad chunk framing, -ECONNABORTED when the source closed early, else the
 * socket error. */
static int body_move(struct em_proxy_worker *w, struct body *b, int from, int to,
		     uint64_t *count)
{
	int progress = 0;
	ssize_t n;

	switch (b->kind) {
	case EM_HTTP_BODY_NONE:
		return BODY_DONE;
	case EM_HTTP_BODY_LENGTH:
	case EM_HTTP_BODY_CLOSE:
	case EM_HTTP_BODY_TUNNEL: {
		uint64_t limit = b->kind == EM_HTTP_BODY_LENGTH ? b->left : UINT64_MAX;
		uint64_t taken = 0;

		n = em_proxy_splice_move(w, &b->sp, from, to, limit, &taken, &b->eof);
		if (n < 0)
			return (int)n;
		*count += (uint64_t)n;
		b->taken += taken;
		if (b->kind == EM_HTTP_BODY_LENGTH) {
			b->left -= taken;
			if (b->left == 0 && b->sp.queued == 0)
				return BODY_DONE;
			if (b->eof)
				return -ECONNABORTED;
		} else if (b->eof && b->sp.queued == 0) {
			return BODY_DONE;
		}
		return n > 0 || taken > 0;
	}
	default:
		break;
	}
	/* Chunked: framing parsed here, data spliced. */
	for (;;) {
		uint64_t pending;
		struct em_http_chunk_step st;
		char tmp[CHUNK_PEEK];

		if (b->emit_off < b->emit_len) {
			n = send(to, b->emit + b->emit_off, b->emit_len - b->emit_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? progress : -errno;
			b->emit_off += (uint8_t)n;
			*count += (uint64_t)n;
			progress = 1;
			continue;
		}
		if (b->chunk_end)
			return BODY_DONE;
		pending = em_http_chunk_pending(&b->ch);
		if (pending || b->sp.queued) {
			uint64_t taken = 0;

			n = em_proxy_splice_move(w, &b->sp, from, to, pending, &taken, &b->eof);
			if (n < 0)
				return (int)n;
			*count += (uint64_t)n;
			b->taken += taken;
			if (taken)
				em_http_chunk_moved(&b->ch, taken);
			if (n > 0 || taken)
				progress = 1;
			if (em_http_chunk_pending(&b->ch) || b->sp.queued)
				return b->eof ? -ECONNABORTED : progress;
			continue;
		}
		n = recv(from, tmp, sizeof(tmp), MSG_PEEK | MSG_DONTWAIT);
		if (n == 0)
			return -ECONNABORTED;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? progress : -errno;
		if (em_http_chunk_feed(&b->ch, tmp, (size_t)n, &st) < 0)
			return -EBADMSG;
		if (st.consumed && recv(from, tmp, st.consumed, MSG_DONTWAIT) != (ssize_t)st.consumed)
			return -EIO;
		b->taken += st.consumed;
		memcpy(b->emit, st.emit, st.emit_len);
		b->emit_len = st.emit_len;
		b->emit_off = 0;
		if (st.done)
			b->chunk_end = true;
		if (!st.consumed && !st.emit_len && !st.data && !st.done)
			return progress;	/* needs more bytes than have come */
		progress = 1;
	}
}

/* ---- the exchange ----------------------------------------------------------- */

static void finish(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	bool keep = !r->client_close && r->rq == RQ_DONE;
	bool reuse = r->resp_keep_alive && r->rq == RQ_DONE &&
		     r->resp.kind != EM_HTTP_BODY_CLOSE;

	release(w, r, EM_BALANCER_OK, 0);
	if (r->up) {
		em_proxy_pool_put(w, r->up, reuse);
		r->up = NULL;
	}
	req_free(w, c, EM_BALANCER_OK, 0);
	if (!keep) {
		shutdown(c->client.fd, SHUT_WR);
		c->state = ST_LINGER;
		arm(w, c, LINGER_MS);
		return;
	}
	c->state = ST_IDLE;
	arm(w, c, (uint64_t)w->proxy->cfg.keepalive_s * 1000);
}

static void tunnel(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	struct sockaddr_storage client = { 0 };
	socklen_t client_len = c->client_len;
	int ufd = r->up->src.fd, cfd;

	EM_PROXY_COUNT(w->proxy, tunnels, 1);
	memcpy(&client, &c->client_addr, client_len);
	release(w, r, EM_BALANCER_OK, 0);
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, ufd, NULL);
	/* The socket moves to the relay: the upconn struct goes without
	 * closing it. */
	r->up->src.fd = -1;
	r->up->next = w->up_dead;
	w->up_dead = r->up;
	r->up = NULL;
	req_free(w, c, EM_BALANCER_OK, 0);
	cfd = conn_detach(w, c);
	em_proxy_l4_tunnel(w, cfd, ufd, &client, client_len);
}

/* Append the body bytes that came in the same read as the response head
 * (extra[0..len)) to the head being sent on, by the body's framing. Returns
 * 0 or -EBADMSG (bad chunk framing). Rewritten chunk framing is never longer
 * than what it replaces, so out (cap_in + 512) always has room. */
static int take_extra(struct http_req *r, enum em_http_body kind, const char *extra,
		      size_t len)
{
	struct em_proxy_buf *b = r->buf;
	struct body *d = &r->resp;

	switch (kind) {
	case EM_HTTP_BODY_LENGTH: {
		size_t k = len < d->left ? len : (size_t)d->left;

		memcpy(b->out + b->out_len, extra, k);
		b->out_len += k;
		d->left -= k;
		d->taken += k;
		if (d->left == 0)
			d->kind = EM_HTTP_BODY_NONE;	/* complete */
		if (len > k)
			r->resp_keep_alive = false;	/* bytes beyond the message */
		return 0;
	}
	case EM_HTTP_BODY_CLOSE:
	case EM_HTTP_BODY_TUNNEL:
		memcpy(b->out + b->out_len, extra, len);
		b->out_len += len;
		d->taken += len;
		return 0;
	case EM_HTTP_BODY_CHUNKED:
		while (len) {
			uint64_t pending = em_http_chunk_pending(&d->ch);
			struct em_http_chunk_step st;

			if (d->chunk_end) {
				r->resp_keep_alive = false;
				return 0;
			}
			if (pending) {
				size_t k = len < pending ? len : (size_t)pending;

				memcpy(b->out + b->out_len, extra, k);
				b->out_len += k;
				em_http_chunk_moved(&d->ch, k);
				extra += k;
				len -= k;
				continue;
			}
			if (em_http_chunk_feed(&d->ch, extra, len, &st) < 0)
				return -EBADMSG;
			memcpy(b->out + b->out_len, st.emit, st.emit_len);
			b->out_len += st.emit_len;
			extra += st.consumed;
			len -= st.consumed;
			if (st.done)
				d->chunk_end = true;
			if (!st.consumed && !st.emit_len && !st.data && !st.done)
				return -EBADMSG;	/* bytes it would not take: cannot be put back */
		}
		return 0;
	default:
		if (len)
			r->resp_keep_alive = false;
		return 0;
	}
}

/* The response head is r->buf->in[0..head_len) (parsed into r->buf->head),
 * followed by `extra` bytes of the same read. Writes the head to send on
 * and, after it, the body bytes already here (small bodies go out whole in
 * one send); an interim (1xx) head keeps the bytes after it for the next
 * head. Returns 0 or -EBADMSG. */
static int response_head(struct em_proxy_worker *w, struct em_http_conn *c, size_t extra)
{
	struct http_req *r = c->rq;
	struct em_proxy_buf *b = r->buf;
	struct em_http_head *h = &b->head;
	size_t head_len = h->head_len;
	unsigned flags = 0;
	int len;

	r->status = h->status;
	r->interim = h->interim;
	if (!h->interim) {
		r->latency_us = (w->now_ms - r->picked_ms) * 1000;
		r->tunnel = h->body == EM_HTTP_BODY_TUNNEL;
		r->resp_keep_alive = h->keep_alive;
		r->client_close = !r->keep_alive || h->body == EM_HTTP_BODY_CLOSE ||
				  r->rq != RQ_DONE;
		body_init(&r->resp, r->tunnel ? EM_HTTP_BODY_NONE : h->body, h->content_length);
		/* From here on: inactivity, whatever the body's length. */
		r->last_ms = w->now_ms;
		arm(w, c, (uint64_t)w->proxy->cfg.idle_timeout_s * 1000);
	}
	if (r->client_close && !h->interim)
		flags |= EM_HTTP_W_CLOSE;
	if (r->minor == 0)
		flags |= EM_HTTP_W_CLIENT_10;
	len = em_http_write_response(h, b->in, flags, b->out, b->cap_out);
	if (len < 0)
		return -EBADMSG;
	b->out_len = (size_t)len;
	b->out_off = 0;
	EM_PROXY_COUNT(w->proxy, responses[h->status / 100 % 6], 1);
	r->rs = RS_HEAD_OUT;
	if (h->interim) {
		/* The final head may already follow: parse it next. */
		memmove(b->in, b->in + head_len, extra);
		b->in_len = extra;
		return 0;
	}
	b->in_len = 0;
	/* Bad chunk framing behind a good head: what came before it goes on,
	 * then the client connection is closed, as when the same bytes
	 * arrive after the head (the outcome must not depend on timing). */
	if (take_extra(r, r->tunnel ? EM_HTTP_BODY_TUNNEL : h->body, b->in + head_len, extra) < 0)
		r->resp_bad = true;
	return 0;
}

/* Abort a response in the middle: the client must not take a truncated
 * body for a complete one, so its connection is reset. */
static void abort_response(struct em_proxy_worker *w, struct em_http_conn *c, int err)
{
	static _Thread_local struct em_ratelimit abort_rl;
	struct http_req *r = c->rq;

	if (err != ECONNRESET && err != EPIPE && err != ECONNABORTED)
		em_log_rl(&abort_rl, EM_LOG_INFO, "proxy: %s: response aborted: %s",
			  em_lb_port_label(r->lb), strerror(err));
	EM_PROXY_COUNT(w->proxy, aborted_responses, 1);
	conn_close(w, c, true, EM_BALANCER_FAILED);
}

/* Returns 1 when the state changed, 0 to wait. */
static int exchange(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	int ufd = r->up->src.fd, cfd = c->client.fd, ret;
	bool progress;
	ssize_t n;

	do {
		progress = false;
		if (r->rq == RQ_HEAD) {
			struct em_proxy_buf *b = r->buf;

			n = send(ufd, b->out + b->out_off, b->out_len - b->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				attempt_failed(w, c, EM_BALANCER_FAILED, errno, b->out_off > 0);
				return 1;
			}
			b->out_off += (size_t)n;
			r->bytes_up += (uint64_t)n;
			EM_PROXY_COUNT(p, bytes_up, (uint64_t)n);
			if (b->out_off < b->out_len)
				return 0;
			r->rq = r->has_body ? RQ_BODY : RQ_DONE;
			r->sent_ms = w->now_ms;
			if (r->rq == RQ_DONE)
				arm(w, c, p->cfg.response_timeout_ms);
			progress = true;
		}
		if (r->rq == RQ_BODY) {
			uint64_t before = r->bytes_up;

			ret = body_move(w, &r->req, cfd, ufd, &r->bytes_up);
			EM_PROXY_COUNT(p, bytes_up, r->bytes_up - before);
			if (ret == -EBADMSG) {
				EM_PROXY_COUNT(p, bad_requests, 1);
				if (r->rs == RS_WAIT) {
					reply(w, c, 400, false);
					return 1;
				}
				conn_close(w, c, true, EM_BALANCER_CANCELLED);
				return 0;
			}
			if (ret < 0) {
				/* The client went away mid-body, or the
				 * upstream stopped taking it. */
				if (r->rs == RS_WAIT && ret != -ECONNABORTED &&
				    ret != -ECONNRESET) {
					release(w, r, EM_BALANCER_FAILED, -ret);
					reply(w, c, 502, false);
					return 1;
				}
				conn_close(w, c, true, EM_BALANCER_CANCELLED);
				return 0;
			}
			if (ret == BODY_DONE) {
				r->rq = RQ_DONE;
				r->sent_ms = w->now_ms;
				if (r->rs == RS_WAIT)
					arm(w, c, p->cfg.response_timeout_ms);
				progress = true;
			} else if (ret == BODY_PROGRESS) {
				r->last_ms = w->now_ms;
				progress = true;
			}
		}
		if (r->rs == RS_WAIT && r->rq != RQ_HEAD && (r->up_readable || r->buf->in_len)) {
			/* Plain reads (no peek): the head and whatever body
			 * bytes came with it are taken here and sent on from
			 * user space; the rest of the body is spliced. */
			struct em_proxy_buf *b = r->buf;
			size_t have = b->in_len;

			if (r->up_readable && have < b->cap_in) {
				n = recv(ufd, b->in + have, b->cap_in - have, MSG_DONTWAIT);
				if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
					r->up_readable = false;
				} else if (n <= 0) {
					int err = n == 0 ? ECONNRESET : errno;

					if (r->resp_bytes) {
						EM_PROXY_COUNT(p, bad_responses, 1);
						release(w, r, EM_BALANCER_FAILED, err);
						reply(w, c, 502, false);
						return 1;
					}
					attempt_failed(w, c, EM_BALANCER_FAILED, err, true);
					return 1;
				} else {
					/* A short read emptied the socket. */
					if ((size_t)n < b->cap_in - have)
						r->up_readable = false;
					have += (size_t)n;
					b->in_len = have;
					r->resp_bytes = true;
				}
			}
			if (have) {
				ret = em_http_parse_response(b->in, have, &p->limits, r->method,
							     r->upgrade, &b->head);
				if (ret == 0 && have >= b->cap_in)
					ret = -502;
				if (ret < 0 || (ret > 0 && response_head(w, c, have - (size_t)ret) < 0)) {
					static _Thread_local struct em_ratelimit bad_rl;

					em_log_rl(&bad_rl, EM_LOG_INFO,
						  "proxy: %s: malformed response head",
						  em_lb_port_label(r->lb));
					EM_PROXY_COUNT(p, bad_responses, 1);
					release(w, r, EM_BALANCER_FAILED, EBADMSG);
					reply(w, c, 502, false);
					return 1;
				}
				if (ret > 0) {
					r->bytes_down += have - b->in_len;
					progress = true;
				}
			}
		}
		if (r->rs == RS_HEAD_OUT) {
			struct em_proxy_buf *b = r->buf;

			n = send(cfd, b->out + b->out_off, b->out_len - b->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				conn_close(w, c, true, EM_BALANCER_CANCELLED);
				return 0;
			}
			b->out_off += (size_t)n;
			EM_PROXY_COUNT(p, bytes_down, (uint64_t)n);
			if (b->out_off < b->out_len)
				return 0;
			progress = true;
			if (r->resp_bad) {
				EM_PROXY_COUNT(p, bad_responses, 1);
				abort_response(w, c, EBADMSG);
				return 0;
			}
			if (r->interim) {
				r->rs = RS_WAIT;
			} else if (r->tunnel) {
				tunnel(w, c);
				return 0;
			} else {
				r->rs = RS_BODY;
				/* The head buffer is free again: only bodies
				 * remain. */
				em_proxy_buf_put(w, r->buf);
				r->buf = NULL;
				r->last_ms = w->now_ms;
			}
		}
		if (r->rs == RS_BODY) {
			uint64_t before = r->bytes_down;

			ret = body_move(w, &r->resp, ufd, cfd, &r->bytes_down);
			EM_PROXY_COUNT(p, bytes_down, r->bytes_down - before);
			if (ret < 0) {
				if (ret == -EBADMSG)
					EM_PROXY_COUNT(p, bad_responses, 1);
				abort_response(w, c, -ret);
				return 0;
			}
			if (ret == BODY_PROGRESS) {
				progress = true;
				r->last_ms = w->now_ms;
			}
			if (ret == BODY_DONE)
				r->rs = RS_DONE;
		}
		if (r->rs == RS_DONE && (r->rq == RQ_DONE || !r->has_body || r->client_close)) {
			finish(w, c);
			return 1;
		}
		if (r->rs == RS_DONE && r->rq != RQ_DONE) {
			/* An early response (e.g. 413) while the body is still
			 * coming: this connection cannot continue. */
			r->client_close = true;
			finish(w, c);
			return 1;
		}
	} while (progress);
	return 0;
}

static int linger(struct em_proxy_worker *w, struct em_http_conn *c)
{
	char tmp[4096];
	ssize_t n;

	while ((n = recv(c->client.fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		conn_close(w, c, false, EM_BALANCER_CANCELLED);
	return 0;
}

static void drive(struct em_proxy_worker *w, struct em_http_conn *c)
{
	for (int guard = 0; guard < 64; guard++) {
		int r;

		switch (c->state) {
		case ST_IDLE:
		case ST_HEAD:
			r = read_head(w, c);
			break;
		case ST_EXCHANGE:
			r = exchange(w, c);
			break;
		case ST_LINGER:
			r = linger(w, c);
			break;
		default:
			return;
		}
		if (r <= 0)
			return;
	}
	/* Many pipelined requests answered at once: let other connections
	 * run; the rest waits in the socket, so arm a turn-of-loop timer. */
	if (c->state == ST_IDLE) {
		arm(w, c, 0);
		c->rerun = true;
	}
}

static void client_event(struct em_proxy_worker *w, struct em_proxy_src *src,
			 uint32_t events)
{
	struct em_http_conn *c = conn_of_client(src);

	if (c->state == ST_DEAD)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if ((events & EPOLLERR) && c->state != ST_EXCHANGE) {
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	drive(w, c);
}

static void on_timer(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	struct em_http_conn *c = conn_of_timer(t);
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;

	switch (c->state) {
	case ST_IDLE:
		if (c->rerun) {
			/* drive() yielded after many pipelined requests. */
			c->rerun = false;
			arm(w, c, (uint64_t)p->cfg.keepalive_s * 1000);
			drive(w, c);
			return;
		}
		EM_PROXY_COUNT(p, idle_timeouts, 1);
		conn_close(w, c, false, EM_BALANCER_CANCELLED);
		return;
	case ST_HEAD:
		EM_PROXY_COUNT(p, head_timeouts, 1);
		/* rq is NULL while the head is incomplete: reply() frees none. */
		reply(w, c, 408, false);
		return;
	case ST_CONNECT:
		attempt_failed(w, c, EM_BALANCER_TIMEOUT, ETIMEDOUT, false);
		drive(w, c);
		return;
	case ST_EXCHANGE:
		if (r->rs == RS_WAIT && r->rq == RQ_DONE) {
			static _Thread_local struct em_ratelimit to_rl;

			em_log_rl(&to_rl, EM_LOG_INFO, "proxy: %s: no response within %u ms",
				  em_lb_port_label(r->lb), p->cfg.response_timeout_ms);
			EM_PROXY_COUNT(p, response_timeouts, 1);
			release(w, r, EM_BALANCER_TIMEOUT, ETIMEDOUT);
			reply(w, c, 504, false);
			return;
		}
		if (w->now_ms - r->last_ms < (uint64_t)p->cfg.idle_timeout_s * 1000) {
			em_proxy_timer_arm(&w->timers, &c->timer,
					   r->last_ms + (uint64_t)p->cfg.idle_timeout_s * 1000);
			return;
		}
		EM_PROXY_COUNT(p, idle_timeouts, 1);
		conn_close(w, c, true, EM_BALANCER_TIMEOUT);
		return;
	case ST_LINGER:
		conn_close(w, c, false, EM_BALANCER_CANCELLED);
		return;
	default:
		return;
	}
}

void em_proxy_http_start(struct em_proxy_worker *w, int cfd,
			 const struct sockaddr_storage *client, socklen_t client_len,
			 const struct sockaddr_storage *orig_dst, socklen_t dst_len)
{
	struct em_proxy *p = w->proxy;
	struct em_http_conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };

	if (!c) {
		em_proxy_close_reset(cfd);
		em_proxy_client_done(p, (const struct sockaddr *)client);
		return;
	}
	c->client = (struct em_proxy_src){ cfd, client_event };
	c->client_len = client_len < sizeof(c->client_addr) ? client_len : sizeof(c->client_addr);
	c->dst_len = dst_len < sizeof(c->dst_addr) ? dst_len : sizeof(c->dst_addr);
	memcpy(&c->client_addr, client, c->client_len);
	memcpy(&c->dst_addr, orig_dst, c->dst_len);
	c->state = ST_IDLE;
	c->readable = true;
	em_proxy_timer_init(&c->timer, on_timer);
	c->next = w->http_conns;
	if (w->http_conns)
		w->http_conns->prev = c;
	w->http_conns = c;
	EM_PROXY_COUNT(p, active, 1);
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	ev.data.ptr = &c->client;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, cfd, &ev) == -1) {
		conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	arm(w, c, (uint64_t)p->cfg.keepalive_s * 1000);
}

void em_proxy_http_close_all(struct em_proxy_worker *w)
{
	while (w->http_conns)
		conn_close(w, w->http_conns, true, EM_BALANCER_CANCELLED);
}

void em_proxy_http_reap(struct em_proxy_worker *w)
{
	while (w->http_dead) {
		struct em_http_conn *c = w->http_dead;
		w->http_dead = c->next;
		free(c);
	}
}
