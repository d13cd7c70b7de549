/* http.c — the HTTP/1.x forwarder: per-request balancing over one client
 * connection, upstream keep-alive (pool.c), bodies moved with splice(2)
 * (pipes.c) by the framing that http_frame.c decided. This file: the
 * client connection, request heads, resolving, picking and connecting,
 * retries, timers; http_exchange.c moves a request and its response.
 *
 * One struct em_http_conn per client connection. While idle it holds the
 * client socket, a timer and this struct: no buffer, no pipe, no upstream,
 * no balancer reference. A request borrows a head buffer (the parsed head,
 * the received bytes, the rewritten head) until its response head is sent
 * on, a pipe per direction while body bytes wait in one, a balancer
 * reference resolved from the current snapshot, and an upstream connection
 * taken from the pool or opened.
 *
 * Each request head is read with one plain recv: the bytes after it
 * (body bytes, pipelined requests; a partial head) are kept in c->pre, the
 * client's stream continuing there before the socket. A client whose first
 * bytes are not HTTP/1 falls back to L4 with the bytes read. Body
 * bytes go up right after the rewritten head (in the same send when they
 * fit), the rest of the body is spliced; pipelined bytes wait for the next
 * head, which is not read before the current response is through:
 * pipelined requests are answered in order by construction.
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

#include "proxy/http.h"
#include "proxy/sockio.h"
#include "util/log.h"


static void drive(struct em_proxy_worker *w, struct em_http_conn *c);
static void pick_and_connect(struct em_proxy_worker *w, struct em_http_conn *c);

/* ---- small helpers ---------------------------------------------------- */

void em_http_arm(struct em_proxy_worker *w, struct em_http_conn *c, uint64_t ms)
{
	c->rerun = false;
	em_proxy_timer_arm(&w->timers, &c->timer, w->now_ms + ms);
}

int em_http_pre_keep(struct em_http_conn *c, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	c->pre = malloc(n);
	if (!c->pre)
		return -ENOMEM;
	memcpy(c->pre, p, n);
	c->pre_off = 0;
	c->pre_len = (uint32_t)n;
	return 0;
}

void em_http_pre_used(struct em_http_conn *c, size_t n)
{
	c->pre_off += (uint32_t)n;
	if (c->pre_off >= c->pre_len)
		em_http_pre_drop(c);
}

void em_http_pre_drop(struct em_http_conn *c)
{
	free(c->pre);
	c->pre = NULL;
	c->pre_off = c->pre_len = 0;
}

/* Dotted quad into buf (at least INET_ADDRSTRLEN): glibc's inet_ntop
 * formats IPv4 with sprintf, which showed in the per-request profile. */
static void ipv4_text(const uint8_t *a, char *buf)
{
	for (int i = 0; i < 4; i++) {
		unsigned v = a[i];

		if (v >= 100)
			*buf++ = (char)('0' + v / 100);
		if (v >= 10)
			*buf++ = (char)('0' + v / 10 % 10);
		*buf++ = (char)('0' + v % 10);
		*buf++ = i < 3 ? '.' : '\0';
	}
}

static void ip_text(const union em_proxy_addr *a, char *buf, size_t len)
{
	if (a->sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = &a->sin6;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			ipv4_text(&s6->sin6_addr.s6_addr[12], buf);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)len);
	} else {
		ipv4_text((const uint8_t *)&a->sin.sin_addr, buf);
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

void em_http_release(struct em_proxy_worker *w, struct http_req *r,
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

/* Request states: a per-worker free list in front of calloc (1 % of the
 * keep-alive profile was malloc/free). */
#define FREE_REQS_MAX 256

static struct http_req *req_new(struct em_proxy_worker *w)
{
	struct em_proxy_free_req *f = w->pools.reqs;

	if (!f)
		return calloc(1, sizeof(struct http_req));
	w->pools.reqs = f->next;
	w->pools.n_reqs--;
	return memset(f, 0, sizeof(struct http_req));
}

static void req_delete(struct em_proxy_worker *w, struct http_req *r)
{
	struct em_proxy_free_req *f = (struct em_proxy_free_req *)r;

	if (!r)
		return;
	if (w->pools.n_reqs >= FREE_REQS_MAX || w->stopping) {
		free(r);
		return;
	}
	f->next = w->pools.reqs;
	w->pools.reqs = f;
	w->pools.n_reqs++;
}

/* Drop everything the request holds. The upstream connection is reset
 * unless it was handed back before. */
void em_http_req_free(struct em_proxy_worker *w, struct em_http_conn *c,
		     enum em_balancer_outcome outcome, int err)
{
	struct http_req *r = c->rq;

	if (!r)
		return;
	em_http_release(w, r, outcome, err);
	if (r->up)
		em_proxy_upconn_close(w, r->up, true);
	em_proxy_splice_drop(w, &r->req.sp);
	em_proxy_splice_drop(w, &r->resp.sp);
	em_proxy_buf_put(w, r->buf);
	em_lb_port_put(r->lb);
	req_delete(w, r);
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
void em_http_conn_close(struct em_proxy_worker *w, struct em_http_conn *c, bool reset,
		       enum em_balancer_outcome outcome)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	em_http_req_free(w, c, outcome, 0);
	em_http_pre_drop(c);
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
int em_http_conn_detach(struct em_proxy_worker *w, struct em_http_conn *c)
{
	int fd = c->client.fd;

	epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
	em_http_pre_drop(c);
	c->state = ST_DEAD;
	em_proxy_timer_cancel(&w->timers, &c->timer);
	c->client.fd = -1;
	unlink_conn(w, c);
	return fd;
}

/* Send a reply of our own. `keep`: the connection continues (the request
 * had no body left in the socket); else the write side is shut and the
 * rest of what the client sends is drained for a moment. */
void em_http_answer(struct em_proxy_worker *w, struct em_http_conn *c, unsigned status,
		  bool keep)
{
	char out[256];
	int n = em_http_reply(status, !keep, out, sizeof(out));
	ssize_t sent = -1;

	if (n > 0)
		sent = em_sock_send(c->client.fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	EM_PROXY_COUNT(w->proxy, generated[status / 100 % 6], 1);
	em_http_req_free(w, c, EM_BALANCER_CANCELLED, 0);
	if (sent != n) {
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	if (keep) {
		c->state = ST_IDLE;
		em_http_arm(w, c, (uint64_t)w->proxy->cfg.keepalive_s * 1000);
		return;
	}
	em_http_pre_drop(c);
	shutdown(c->client.fd, SHUT_WR);
	c->state = ST_LINGER;
	em_http_arm(w, c, LINGER_MS);
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

/* Not HTTP/1: the connection becomes an L4 relay; pre[0..len) are the
 * bytes already read from the client. */
static void fallback_l4(struct em_proxy_worker *w, struct em_http_conn *c, const char *pre,
			size_t len)
{
	struct em_proxy *p = w->proxy;
	struct em_proxy_target t = { 0 };
	struct sockaddr_storage client = { 0 }, dst = { 0 };
	socklen_t client_len = c->client_len, dst_len = c->dst_len;
	int fd;

	if (p->cfg.resolve(p->cfg.resolve_ctx, &c->dst_addr.sa,
			   &c->client_addr.sa, &t) < 0 || !t.lb) {
		EM_PROXY_COUNT(p, no_backend, 1);
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	EM_PROXY_COUNT(p, l4_fallbacks, 1);
	memcpy(&client, &c->client_addr, client_len);
	memcpy(&dst, &c->dst_addr, dst_len);
	fd = em_http_conn_detach(w, c);
	em_proxy_l4_start(w, fd, &client, client_len, &dst, dst_len, t.lb, pre, len);
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
	em_http_body_init(&r->req, h->body, h->content_length);
	r->backend = r->avoid = -1;
	EM_PROXY_COUNT(p, requests, 1);
	/* The current snapshot, for this request: a pod added since the
	 * connection opened is a candidate, a deleted one is not. */
	if (p->cfg.resolve(p->cfg.resolve_ctx, &c->dst_addr.sa,
			   &c->client_addr.sa, &t) < 0 || !t.lb) {
		EM_PROXY_COUNT(p, no_backend, 1);
		em_http_answer(w, c, 503, !r->has_body && r->keep_alive);
		return;
	}
	r->lb = t.lb;
	ip_text(&c->client_addr, ip, sizeof(ip));
	len = em_http_write_request(h, r->buf->in, ip, r->buf->out, r->buf->cap_out);
	if (len < 0) {
		EM_PROXY_COUNT(p, bad_requests, 1);
		em_http_answer(w, c, 431, false);
		return;
	}
	r->buf->out_len = (size_t)len;
	r->buf->out_off = 0;
	if (c->pre && r->req.kind == EM_HTTP_BODY_LENGTH) {
		/* Body bytes that came with the head go up in the same send
		 * (and again on a retry: they stay in the buffer, so they do
		 * not count as taken from the client). */
		size_t k = c->pre_len - c->pre_off;

		if (k > r->req.left)
			k = (size_t)r->req.left;
		if (k > r->buf->cap_out - r->buf->out_len)
			k = r->buf->cap_out - r->buf->out_len;
		memcpy(r->buf->out + r->buf->out_len, c->pre + c->pre_off, k);
		r->buf->out_len += k;
		r->req.left -= k;
		em_http_pre_used(c, k);
	}
	n = em_lb_port_n_backends(r->lb);
	r->max_attempts = p->cfg.connect_attempts < n ? p->cfg.connect_attempts : (unsigned)n;
	if (r->max_attempts == 0)
		r->max_attempts = 1;
	pick_and_connect(w, c);
}

/* The head timeout runs from a head's first byte. */
static void head_started(struct em_proxy_worker *w, struct em_http_conn *c)
{
	if (c->state == ST_IDLE) {
		c->state = ST_HEAD;
		em_http_arm(w, c, w->proxy->cfg.head_timeout_ms);
	}
}

/* Fill b->in with the client's next bytes: c->pre first, then the socket.
 * Returns the bytes in b->in, 0 to wait for the next edge, or -1 when the
 * connection was closed or handed to L4. */
static ssize_t fill_head(struct em_proxy_worker *w, struct em_http_conn *c,
			 struct em_proxy_buf *b)
{
	size_t have = 0;
	ssize_t n;

	if (c->pre) {
		have = c->pre_len - c->pre_off;
		memcpy(b->in, c->pre + c->pre_off, have);
		em_http_pre_drop(c);
		if (c->sniffed &&
		    em_http_parse_request(b->in, have, &w->proxy->limits, &b->head) != 0)
			return (ssize_t)have;	/* a whole head or an error */
	}
	if (c->readable) {
		n = em_sock_recv(c->client.fd, b->in + have, b->cap_in - have, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			c->readable = false;
		} else if (n <= 0) {
			/* EOF or error between requests (or in a head): the
			 * client is done. */
			em_http_conn_close(w, c, n < 0, EM_BALANCER_CANCELLED);
			return -1;
		} else {
			/* A short read emptied the socket: the next edge says
			 * when there is more. */
			if ((size_t)n < b->cap_in - have)
				c->readable = false;
			have += (size_t)n;
		}
	}
	if (!c->sniffed && have) {
		enum em_http_sniff s = em_http_sniff(b->in, have);

		if (s == EM_HTTP_SNIFF_OTHER) {
			fallback_l4(w, c, b->in, have);
			return -1;
		}
		if (s == EM_HTTP_SNIFF_HTTP1)
			c->sniffed = true;
	}
	return (ssize_t)have;
}

/* Read the client's next request head (see the top of the file). Returns 1
 * when the state changed (drive again), 0 to wait for the next edge. */
static int read_head(struct em_proxy_worker *w, struct em_http_conn *c)
{
	static _Thread_local struct em_ratelimit bad_rl;
	struct em_proxy *p = w->proxy;
	struct em_proxy_buf *b;
	struct http_req *r;
	ssize_t n;
	int ret;

	if (!c->readable && !c->pre)
		return 0;
	b = em_proxy_buf_get(w);
	if (!b) {
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return 0;
	}
	n = fill_head(w, c, b);
	if (n <= 0) {
		em_proxy_buf_put(w, b);
		return 0;
	}
	ret = em_http_parse_request(b->in, (size_t)n, &p->limits, &b->head);
	if (ret == 0 && (size_t)n >= b->cap_in)
		ret = -431;
	/* Incomplete: the bytes are kept, the head timeout runs from the
	 * first. Complete: the bytes behind the head are kept. */
	r = ret == 0 ? NULL : req_new(w);
	if ((ret != 0 && !r) || (ret >= 0 && em_http_pre_keep(c, b->in + ret,
							       (size_t)n - (size_t)ret) < 0)) {
		req_delete(w, r);
		em_proxy_buf_put(w, b);
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return 0;
	}
	if (ret == 0) {
		em_proxy_buf_put(w, b);
		head_started(w, c);
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
		em_http_answer(w, c, (unsigned)-ret, false);
		return 1;
	}
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
	em_http_arm(w, c, (uint64_t)w->proxy->cfg.idle_timeout_s * 1000);
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
	em_http_answer(w, c, none ? 503 : 502, !r->has_body && r->keep_alive && r->req.taken == 0);
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
				em_http_release(w, r, EM_BALANCER_LOCAL, ENOMEM);
				break;
			}
			r->up_readable = false;
			ev.data.ptr = &r->up->src;
			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
				em_http_release(w, r, EM_BALANCER_LOCAL, errno);
				break;
			}
			c->state = ST_CONNECT;
			em_http_arm(w, c, p->cfg.connect_timeout_ms);
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
void em_http_attempt_failed(struct em_proxy_worker *w, struct em_http_conn *c,
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
		em_http_release(w, r, EM_BALANCER_LOCAL, err);
		r->stale_retried = true;
		r->fresh_only = true;
	} else {
		em_http_release(w, r, outcome, err);
		if (outcome == EM_BALANCER_TIMEOUT)
			EM_PROXY_COUNT(w->proxy, connect_timeouts, 1);
		else
			EM_PROXY_COUNT(w->proxy, upstream_failures, 1);
		r->avoid = failed;
		/* After the request went out, only an idempotent request
		 * without a body may be sent again. */
		if (sent && (!method_idempotent(r->method) || r->has_body)) {
			EM_PROXY_COUNT(w->proxy, no_backend, 1);
			em_http_answer(w, c, 502, false);
			return;
		}
	}
	if (r->req.taken) {
		/* Body bytes left the client socket: they cannot be sent
		 * again. */
		EM_PROXY_COUNT(w->proxy, no_backend, 1);
		em_http_answer(w, c, 502, false);
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
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->rq->req.sp.out_full = false;
	if (c->state == ST_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			em_http_attempt_failed(w, c, em_proxy_errno_local(err) ? EM_BALANCER_LOCAL
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

static int linger(struct em_proxy_worker *w, struct em_http_conn *c)
{
	char tmp[4096];
	ssize_t n;

	while ((n = recv(c->client.fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		em_http_conn_close(w, c, false, EM_BALANCER_CANCELLED);
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
			r = em_http_exchange(w, c);
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
		em_http_arm(w, c, 0);
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
	if (c->rq && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
		c->rq->resp.sp.out_full = false;
	if ((events & EPOLLERR) && c->state != ST_EXCHANGE) {
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
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
			em_http_arm(w, c, (uint64_t)p->cfg.keepalive_s * 1000);
			drive(w, c);
			return;
		}
		EM_PROXY_COUNT(p, idle_timeouts, 1);
		em_http_conn_close(w, c, false, EM_BALANCER_CANCELLED);
		return;
	case ST_HEAD:
		EM_PROXY_COUNT(p, head_timeouts, 1);
		/* rq is NULL while the head is incomplete: nothing to free. */
		em_http_answer(w, c, 408, false);
		return;
	case ST_CONNECT:
		em_http_attempt_failed(w, c, EM_BALANCER_TIMEOUT, ETIMEDOUT, false);
		drive(w, c);
		return;
	case ST_EXCHANGE:
		if (r->rs == RS_WAIT && r->rq == RQ_DONE) {
			static _Thread_local struct em_ratelimit to_rl;

			em_log_rl(&to_rl, EM_LOG_INFO, "proxy: %s: no response within %u ms",
				  em_lb_port_label(r->lb), p->cfg.response_timeout_ms);
			EM_PROXY_COUNT(p, response_timeouts, 1);
			em_http_release(w, r, EM_BALANCER_TIMEOUT, ETIMEDOUT);
			em_http_answer(w, c, 504, false);
			return;
		}
		if (w->now_ms - r->last_ms < (uint64_t)p->cfg.idle_timeout_s * 1000) {
			em_proxy_timer_arm(&w->timers, &c->timer,
					   r->last_ms + (uint64_t)p->cfg.idle_timeout_s * 1000);
			return;
		}
		EM_PROXY_COUNT(p, idle_timeouts, 1);
		em_http_conn_close(w, c, true, EM_BALANCER_TIMEOUT);
		return;
	case ST_LINGER:
		em_http_conn_close(w, c, false, EM_BALANCER_CANCELLED);
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
	/* TCP_NODELAY comes from the listener (listener.c). */
	ev.data.ptr = &c->client;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, cfd, &ev) == -1) {
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return;
	}
	em_http_arm(w, c, (uint64_t)p->cfg.keepalive_s * 1000);
}

void em_proxy_http_close_all(struct em_proxy_worker *w)
{
	while (w->http_conns)
		em_http_conn_close(w, w->http_conns, true, EM_BALANCER_CANCELLED);
}

void em_proxy_http_reap(struct em_proxy_worker *w)
{
	while (w->http_dead) {
		struct em_http_conn *c = w->http_dead;
		w->http_dead = c->next;
		free(c);
	}
}
