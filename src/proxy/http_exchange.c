/* http_exchange.c — one request in flight on the HTTP forwarder: the
 * rewritten head up, the body by its framing (spliced; chunked framing
 * parsed and re-emitted by the frame machine), the response head read once
 * (body bytes that came with it go on from user space), the response body,
 * then the upstream back to the pool or a tunnel for Upgrade/CONNECT. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/http.h"
#include "proxy/sockio.h"
#include "util/log.h"

void em_http_body_init(struct body *b, enum em_http_body kind, uint64_t len)
{
	memset(b, 0, sizeof(*b));
	b->kind = (uint8_t)kind;
	b->left = len;
	em_http_chunk_init(&b->ch);
}

/* ---- bodies -------------------------------------------------------------- */

enum { BODY_WAIT = 0, BODY_PROGRESS = 1, BODY_DONE = 2 };

/* Send up to `max` of the client's unused bytes (c->pre) to `to`. Returns
 * the bytes sent, 0 on EAGAIN, or -errno. */
static ssize_t pre_send(struct em_http_conn *c, int to, uint64_t max)
{
	size_t k = c->pre_len - c->pre_off;
	ssize_t n;

	if (k > max)
		k = (size_t)max;
	n = em_sock_send(to, c->pre + c->pre_off, k, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	em_http_pre_used(c, (size_t)n);
	return n;
}

/* A body delimited by its length, the source's close, or a tunnel: the
 * bytes read with the head first (pre), then spliced. */
static int plain_move(struct em_proxy_worker *w, struct body *b, int from, int to,
		      uint64_t *count, struct em_http_conn *pre)
{
	bool length = b->kind == EM_HTTP_BODY_LENGTH;
	uint64_t limit = length ? b->left : UINT64_MAX;
	uint64_t taken = 0;
	ssize_t n;

	if (pre && pre->pre && limit) {
		/* Body bytes read with the head, beyond what went with it:
		 * they come before the socket's. */
		n = pre_send(pre, to, limit);
		if (n < 0)
			return (int)n;
		*count += (uint64_t)n;
		b->taken += (uint64_t)n;
		if (length)
			b->left -= (uint64_t)n;
		if (pre->pre)
			return n > 0;	/* the destination is full */
		if (length && b->left == 0)
			return BODY_DONE;
		limit = length ? b->left : UINT64_MAX;
	}
	n = em_proxy_splice_move(w, &b->sp, from, to, limit, &taken, &b->eof);
	if (n < 0)
		return (int)n;
	*count += (uint64_t)n;
	b->taken += taken;
	if (length) {
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

/* Feed the chunk machine the next framing bytes: those read with the head
 * (pre), else a peek of the socket, consuming what it took. Returns 1 with
 * *st filled, 0 when the socket is empty, or -errno. */
static int chunk_framing(struct body *b, int from, struct em_http_conn *pre,
			 struct em_http_chunk_step *st)
{
	char tmp[CHUNK_PEEK];
	ssize_t n;

	if (pre && pre->pre) {
		if (em_http_chunk_feed(&b->ch, pre->pre + pre->pre_off,
				       pre->pre_len - pre->pre_off, st) < 0)
			return -EBADMSG;
		em_http_pre_used(pre, st->consumed);
		return 1;
	}
	n = recv(from, tmp, sizeof(tmp), MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return -ECONNABORTED;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (em_http_chunk_feed(&b->ch, tmp, (size_t)n, st) < 0)
		return -EBADMSG;
	if (st->consumed && recv(from, tmp, st->consumed, MSG_DONTWAIT) != (ssize_t)st->consumed)
		return -EIO;
	return 1;
}

/* Chunked: framing parsed here and re-emitted, data spliced (or sent from
 * pre when it was read with the head). */
static int chunked_move(struct em_proxy_worker *w, struct body *b, int from, int to,
			uint64_t *count, struct em_http_conn *pre)
{
	int progress = 0, ret;
	ssize_t n;

	for (;;) {
		uint64_t pending;
		struct em_http_chunk_step st;

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
		if (pending && pre && pre->pre) {
			/* Chunk data read with the head (nothing is in the
			 * pipe yet: those bytes come first). */
			n = pre_send(pre, to, pending);
			if (n <= 0)
				return n < 0 ? (int)n : progress;
			*count += (uint64_t)n;
			b->taken += (uint64_t)n;
			em_http_chunk_moved(&b->ch, (uint64_t)n);
			progress = 1;
			continue;
		}
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
		ret = chunk_framing(b, from, pre, &st);
		if (ret <= 0)
			return ret < 0 ? ret : progress;
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

/* Move body b from `from` to `to`. `pre`: the request direction, whose
 * source continues in c->pre before the socket (NULL for responses).
 * Returns BODY_* or -errno: -EBADMSG for bad chunk framing, -ECONNABORTED
 * when the source closed early, else the socket error. */
static int body_move(struct em_proxy_worker *w, struct body *b, int from, int to,
		     uint64_t *count, struct em_http_conn *pre)
{
	switch (b->kind) {
	case EM_HTTP_BODY_NONE:
		return BODY_DONE;
	case EM_HTTP_BODY_LENGTH:
	case EM_HTTP_BODY_CLOSE:
	case EM_HTTP_BODY_TUNNEL:
		return plain_move(w, b, from, to, count, pre);
	default:
		return chunked_move(w, b, from, to, count, pre);
	}
}

/* ---- the exchange ----------------------------------------------------------- */

/* RS_DONE: the request ends; the upstream goes back to the pool (or is
 * closed), the client connection waits for its next request or closes. */
static void finish(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	/* An early response (e.g. 413) while the body is still coming
	 * (r->rq != RQ_DONE): this connection cannot continue. */
	bool keep = !r->client_close && r->rq == RQ_DONE;
	bool reuse = r->resp_keep_alive && r->rq == RQ_DONE &&
		     r->resp.kind != EM_HTTP_BODY_CLOSE;
	/* The client itself asked to close, its request is read whole and
	 * nothing more came (no edge since the head was consumed up to
	 * EAGAIN): a plain close sends FIN, there is nothing to drain, so
	 * the half-close and linger (shutdown, two recv, a timer, one more
	 * wake-up per connection) are not needed. */
	bool quick = !keep && !r->keep_alive && r->rq == RQ_DONE && !c->readable && !c->pre;

	em_http_release(w, r, EM_BALANCER_OK, 0);
	if (r->up) {
		em_proxy_pool_put(w, r->up, reuse);
		r->up = NULL;
	}
	em_http_req_free(w, c, EM_BALANCER_OK, 0);
	if (quick) {
		em_http_conn_close(w, c, false, EM_BALANCER_OK);
		return;
	}
	if (!keep) {
		em_http_pre_drop(c);
		shutdown(c->client.fd, SHUT_WR);
		c->state = ST_LINGER;
		em_http_arm(w, c, LINGER_MS);
		return;
	}
	c->state = ST_IDLE;
	em_http_arm(w, c, (uint64_t)w->proxy->cfg.keepalive_s * 1000);
}

static void tunnel(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	struct sockaddr_storage client = { 0 };
	socklen_t client_len = c->client_len;
	int ufd = r->up->src.fd, cfd;

	if (c->pre) {
		/* The client's bytes after its head belong to the tunnel and
		 * come before the socket's: at most max_head bytes into a
		 * socket that has only sent a head, so one send takes them;
		 * if not, the connection cannot go on. */
		size_t k = c->pre_len - c->pre_off;

		if (send(ufd, c->pre + c->pre_off, k, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)k) {
			EM_PROXY_COUNT(w->proxy, aborted_responses, 1);
			em_http_conn_close(w, c, true, EM_BALANCER_FAILED);
			return;
		}
		em_http_pre_drop(c);
	}
	EM_PROXY_COUNT(w->proxy, tunnels, 1);
	memcpy(&client, &c->client_addr, client_len);
	em_http_release(w, r, EM_BALANCER_OK, 0);
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, ufd, NULL);
	/* The socket moves to the relay: the upconn struct goes without
	 * closing it. */
	em_proxy_upconn_detach(w, r->up);
	r->up = NULL;
	em_http_req_free(w, c, EM_BALANCER_OK, 0);
	cfd = em_http_conn_detach(w, c);
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
		em_http_body_init(&r->resp, r->tunnel ? EM_HTTP_BODY_NONE : h->body, h->content_length);
		/* From here on: inactivity, whatever the body's length. */
		r->last_ms = w->now_ms;
		em_http_arm(w, c, (uint64_t)w->proxy->cfg.idle_timeout_s * 1000);
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
	em_http_conn_close(w, c, true, EM_BALANCER_FAILED);
}

/* ---- the phases of one request --------------------------------------------- */

/* What a phase tells em_http_exchange: go on to the next phase, or return
 * at once with 0 (wait for an event; also when the connection was closed or
 * handed to a tunnel) or 1 (the connection's state changed: run it again).
 * A phase that moved the request along sets *moved. */
enum { STEP_NEXT = -1, STEP_WAIT = 0, STEP_CHANGED = 1 };

/* RQ_HEAD: the rewritten request head (r->buf->out) goes upstream. A send
 * that fails is a failed attempt, which may try again elsewhere. */
static int request_head_send(struct em_proxy_worker *w, struct em_http_conn *c,
			     bool *moved)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	struct em_proxy_buf *b = r->buf;
	ssize_t n;

	n = em_sock_send(r->up->src.fd, b->out + b->out_off, b->out_len - b->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return STEP_WAIT;
		em_http_attempt_failed(w, c, EM_BALANCER_FAILED, errno, b->out_off > 0);
		return STEP_CHANGED;
	}
	b->out_off += (size_t)n;
	r->bytes_up += (uint64_t)n;
	EM_PROXY_COUNT(p, bytes_up, (uint64_t)n);
	if (b->out_off < b->out_len)
		return STEP_WAIT;
	r->rq = r->has_body ? RQ_BODY : RQ_DONE;
	r->sent_ms = w->now_ms;
	if (r->rq == RQ_DONE)
		em_http_arm(w, c, p->cfg.response_timeout_ms);
	*moved = true;
	return STEP_NEXT;
}

/* The request body could not go on (body_move's -errno in err): the client
 * hears 400 or 502 while no response has begun, else its connection is
 * closed. */
static int request_body_failed(struct em_proxy_worker *w, struct em_http_conn *c, int err)
{
	struct http_req *r = c->rq;

	if (err == -EBADMSG) {
		EM_PROXY_COUNT(w->proxy, bad_requests, 1);
		if (r->rs == RS_WAIT) {
			em_http_answer(w, c, 400, false);
			return STEP_CHANGED;
		}
		em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return STEP_WAIT;
	}
	/* The client went away mid-body, or the upstream stopped taking it. */
	if (r->rs == RS_WAIT && err != -ECONNABORTED && err != -ECONNRESET) {
		em_http_release(w, r, EM_BALANCER_FAILED, -err);
		em_http_answer(w, c, 502, false);
		return STEP_CHANGED;
	}
	em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
	return STEP_WAIT;
}

/* RQ_BODY: the request body goes upstream; once it is whole, the response
 * timeout runs (unless the response has begun already). */
static int request_body_move(struct em_proxy_worker *w, struct em_http_conn *c,
			     bool *moved)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	uint64_t before = r->bytes_up;
	int ret;

	ret = body_move(w, &r->req, c->client.fd, r->up->src.fd, &r->bytes_up, c);
	EM_PROXY_COUNT(p, bytes_up, r->bytes_up - before);
	if (ret < 0)
		return request_body_failed(w, c, ret);
	if (ret == BODY_DONE) {
		r->rq = RQ_DONE;
		r->sent_ms = w->now_ms;
		if (r->rs == RS_WAIT)
			em_http_arm(w, c, p->cfg.response_timeout_ms);
		*moved = true;
	} else if (ret == BODY_PROGRESS) {
		r->last_ms = w->now_ms;
		*moved = true;
	}
	return STEP_NEXT;
}

/* Read what the upstream has into r->buf->in after the bytes already there,
 * when it is readable and there is room. The upstream failing is a 502 once
 * it has sent anything, else a failed attempt (which may try elsewhere). */
static int response_head_recv(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	struct em_proxy_buf *b = r->buf;
	size_t have = b->in_len;
	ssize_t n;

	if (!r->up_readable || have >= b->cap_in)
		return STEP_NEXT;
	n = em_sock_recv(r->up->src.fd, b->in + have, b->cap_in - have, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		r->up_readable = false;
	} else if (n <= 0) {
		int err = n == 0 ? ECONNRESET : errno;

		if (r->resp_bytes) {
			EM_PROXY_COUNT(w->proxy, bad_responses, 1);
			em_http_release(w, r, EM_BALANCER_FAILED, err);
			em_http_answer(w, c, 502, false);
			return STEP_CHANGED;
		}
		em_http_attempt_failed(w, c, EM_BALANCER_FAILED, err, true);
		return STEP_CHANGED;
	} else {
		/* A short read emptied the socket. */
		if ((size_t)n < b->cap_in - have)
			r->up_readable = false;
		b->in_len = have + (size_t)n;
		r->resp_bytes = true;
	}
	return STEP_NEXT;
}

/* RS_WAIT (the request head is out): read and parse the response head.
 * Plain reads (no peek): the head and whatever body bytes came with it are
 * taken here and sent on from user space; the rest of the body is spliced.
 * A head we refuse, or one that fills the buffer unfinished, is a 502. */
static int response_head_read(struct em_proxy_worker *w, struct em_http_conn *c,
			      bool *moved)
{
	static _Thread_local struct em_ratelimit bad_rl;
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	struct em_proxy_buf *b = r->buf;
	size_t have;
	int ret;

	if (!r->up_readable && !b->in_len)
		return STEP_NEXT;
	ret = response_head_recv(w, c);
	if (ret != STEP_NEXT)
		return ret;
	have = b->in_len;
	if (!have)
		return STEP_NEXT;
	ret = em_http_parse_response(b->in, have, &p->limits, r->method, r->upgrade,
				     &b->head);
	if (ret == 0 && have >= b->cap_in)
		ret = -502;
	if (ret < 0 || (ret > 0 && response_head(w, c, have - (size_t)ret) < 0)) {
		em_log_rl(&bad_rl, EM_LOG_INFO, "proxy: %s: malformed response head",
			  em_lb_port_label(r->lb));
		EM_PROXY_COUNT(p, bad_responses, 1);
		em_http_release(w, r, EM_BALANCER_FAILED, EBADMSG);
		em_http_answer(w, c, 502, false);
		return STEP_CHANGED;
	}
	if (ret > 0) {
		r->bytes_down += have - b->in_len;
		*moved = true;
	}
	return STEP_NEXT;
}

/* RS_HEAD_OUT: the response head (and the body bytes read with it) goes to
 * the client. Then, as the head decided: wait for the next head after an
 * interim one, become a tunnel, or move the body. */
static int response_head_send(struct em_proxy_worker *w, struct em_http_conn *c,
			      bool *moved)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	struct em_proxy_buf *b = r->buf;
	ssize_t n;

	n = em_sock_send(c->client.fd, b->out + b->out_off, b->out_len - b->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			em_http_conn_close(w, c, true, EM_BALANCER_CANCELLED);
		return STEP_WAIT;
	}
	b->out_off += (size_t)n;
	EM_PROXY_COUNT(p, bytes_down, (uint64_t)n);
	if (b->out_off < b->out_len)
		return STEP_WAIT;
	if (r->resp_bad) {
		EM_PROXY_COUNT(p, bad_responses, 1);
		abort_response(w, c, EBADMSG);
		return STEP_WAIT;
	}
	if (r->interim) {
		r->rs = RS_WAIT;
	} else if (r->tunnel) {
		tunnel(w, c);
		return STEP_WAIT;
	} else {
		r->rs = RS_BODY;
		/* The head buffer is free again: only bodies remain. */
		em_proxy_buf_put(w, r->buf);
		r->buf = NULL;
		r->last_ms = w->now_ms;
	}
	*moved = true;
	return STEP_NEXT;
}

/* RS_BODY: the response body goes to the client; a failure aborts the
 * response. */
static int response_body_move(struct em_proxy_worker *w, struct em_http_conn *c,
			      bool *moved)
{
	struct em_proxy *p = w->proxy;
	struct http_req *r = c->rq;
	uint64_t before = r->bytes_down;
	int ret;

	ret = body_move(w, &r->resp, r->up->src.fd, c->client.fd, &r->bytes_down, NULL);
	EM_PROXY_COUNT(p, bytes_down, r->bytes_down - before);
	if (ret < 0) {
		if (ret == -EBADMSG)
			EM_PROXY_COUNT(p, bad_responses, 1);
		abort_response(w, c, -ret);
		return STEP_WAIT;
	}
	if (ret == BODY_PROGRESS) {
		*moved = true;
		r->last_ms = w->now_ms;
	}
	if (ret == BODY_DONE)
		r->rs = RS_DONE;
	return STEP_NEXT;
}

/* Returns 1 when the state changed, 0 to wait. Each pass runs the phases in
 * order, each in its own state, so one pass can carry a request from its
 * head to the end of its response; passes repeat while a phase moved. */
int em_http_exchange(struct em_proxy_worker *w, struct em_http_conn *c)
{
	struct http_req *r = c->rq;
	bool moved;
	int ret;

	do {
		moved = false;
		if (r->rq == RQ_HEAD && (ret = request_head_send(w, c, &moved)) != STEP_NEXT)
			return ret;
		if (r->rq == RQ_BODY && (ret = request_body_move(w, c, &moved)) != STEP_NEXT)
			return ret;
		if (r->rs == RS_WAIT && r->rq != RQ_HEAD &&
		    (ret = response_head_read(w, c, &moved)) != STEP_NEXT)
			return ret;
		if (r->rs == RS_HEAD_OUT && (ret = response_head_send(w, c, &moved)) != STEP_NEXT)
			return ret;
		if (r->rs == RS_BODY && (ret = response_body_move(w, c, &moved)) != STEP_NEXT)
			return ret;
		if (r->rs == RS_DONE) {
			finish(w, c);
			return 1;
		}
	} while (moved);
	return 0;
}
