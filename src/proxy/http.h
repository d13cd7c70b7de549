/* http.h — internal to the proxy's HTTP/1.x forwarder (http.c: connections,
 * request heads, picking and connecting, timers; http_exchange.c: moving a
 * request and its response, bodies). Not for other modules. */
#ifndef EM_PROXY_HTTP_H
#define EM_PROXY_HTTP_H

#include "proxy/worker.h"

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
	/* Bytes already taken from the client socket and not used yet: body
	 * bytes that came with a head, pipelined requests, a partial head.
	 * The client's stream continues here before the socket. malloc'ed
	 * while there are any, NULL otherwise (an idle connection has none
	 * unless its client pipelined). */
	char *pre;
	uint32_t pre_off, pre_len;
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

/* http.c */
void em_http_arm(struct em_proxy_worker *w, struct em_http_conn *c, uint64_t ms);
/* Report the outstanding pick (if any) with r's status, latency and bytes. */
void em_http_release(struct em_proxy_worker *w, struct http_req *r,
		     enum em_balancer_outcome outcome, int err);
/* Drop everything the request holds (the upstream is reset unless handed
 * back before). */
void em_http_req_free(struct em_proxy_worker *w, struct em_http_conn *c,
		      enum em_balancer_outcome outcome, int err);
void em_http_conn_close(struct em_proxy_worker *w, struct em_http_conn *c, bool reset,
			enum em_balancer_outcome outcome);
/* Take the client socket out of the connection (L4 fallback, tunnel). */
int em_http_conn_detach(struct em_proxy_worker *w, struct em_http_conn *c);
/* A reply of our own; `keep`: the connection continues. */
void em_http_answer(struct em_proxy_worker *w, struct em_http_conn *c, unsigned status,
		   bool keep);
/* The attempt on r->up failed before any response byte; retry when safe. */
void em_http_attempt_failed(struct em_proxy_worker *w, struct em_http_conn *c,
			    enum em_balancer_outcome outcome, int err, bool sent);

/* Keep a copy of p[0..n) as the connection's unused client bytes (it has
 * none: they were taken before). 0 or -ENOMEM. */
int em_http_pre_keep(struct em_http_conn *c, const char *p, size_t n);
/* n of the unused client bytes were used. */
void em_http_pre_used(struct em_http_conn *c, size_t n);
void em_http_pre_drop(struct em_http_conn *c);

/* http_exchange.c */
void em_http_body_init(struct body *b, enum em_http_body kind, uint64_t len);
/* Advance the request in flight: 1 when the connection changed state
 * (drive again), 0 to wait for the next edge. */
int em_http_exchange(struct em_proxy_worker *w, struct em_http_conn *c);

#endif
