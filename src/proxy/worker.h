/* worker.h — internal to edgemesh-tproxy's proxy: the per-thread event loop
 * shared by the listener, the timers, the pools and the connection handlers
 * (L4 in l4.c, HTTP in http.c, idle upstream connections in pool.c). */
#ifndef EM_PROXY_WORKER_H
#define EM_PROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "proxy/http_frame.h"
#include "proxy/proxy.h"
#include "util/progress.h"

struct em_proxy_worker;
struct em_proxy_src;

/* An IPv4 or IPv6 socket address in 28 bytes (not sockaddr_storage's 128):
 * what a long-lived connection struct keeps. */
union em_proxy_addr {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

/* What an epoll event's data.ptr points to: an fd and the function that
 * handles its events (Redis' rfileProc, nginx's ev->handler). The loop calls
 * src->on_event and knows no kinds. A handler may close any connection of
 * the worker; closed ones are freed only after the batch (em_proxy_*_reap),
 * so a later event of the same batch still finds valid memory and must
 * check its owner's state. */
typedef void (*em_proxy_event_fn)(struct em_proxy_worker *w, struct em_proxy_src *src,
				  uint32_t events);
struct em_proxy_src {
	int fd;
	em_proxy_event_fn on_event;
};

struct em_proxy_timer;
typedef void (*em_proxy_timer_fn)(struct em_proxy_worker *w, struct em_proxy_timer *t);

/* A timer in the worker's min-heap; embedded in its owner. heap_idx is
 * SIZE_MAX while it is not in the heap. The heap is ordered by key_ms, which
 * is never later than deadline_ms: re-arming to a later deadline (every
 * request pushes its connection's timeout further out) only moves
 * deadline_ms, and the timer is re-placed when its old key comes up. */
struct em_proxy_timer {
	uint64_t deadline_ms;		/* due then; UINT64_MAX: disarmed, still placed */
	uint64_t key_ms;		/* its place in the heap */
	size_t heap_idx;
	em_proxy_timer_fn fn;
};

struct em_proxy_timer_heap {
	struct em_proxy_timer **v;
	size_t n, cap;
};

/* ---- borrowed resources (pipes.c) -------------------------------------- */

/* A pipe borrowed from the worker's pool while bytes are in flight. */
struct em_proxy_pipe {
	struct em_proxy_pipe *next;	/* free list */
	int fd[2];			/* [0] read end, [1] write end */
	size_t capacity;
};

/* A head buffer borrowed while a head is parsed or written: the parsed head
 * (~3 KiB), the received bytes and the rewritten head. */
struct em_proxy_buf {
	struct em_proxy_buf *next;	/* free list */
	struct em_http_head head;
	char *in;			/* cap_in bytes */
	char *out;			/* cap_out bytes */
	size_t cap_in, cap_out;
	size_t in_len;			/* response bytes received into `in` */
	size_t out_len, out_off;	/* rewritten head: written so far */
};

/* One direction of spliced bytes: a pipe borrowed while queued > 0. */
struct em_proxy_splice {
	struct em_proxy_pipe *pipe;
	size_t queued;
	/* The destination said EAGAIN: no splice out (and no splice in once
	 * the pipe is half full) until the caller saw EPOLLOUT, EPOLLERR or
	 * EPOLLHUP on it and cleared this. Saves two failing splices per
	 * wake-up of the source while the destination is the bottleneck. */
	bool out_full;
};

struct em_proxy_pools {
	struct em_proxy_pipe *pipes;	/* free pipes */
	size_t n_pipes;			/* in the free list */
	struct em_proxy_buf *bufs;
	size_t n_bufs;
	size_t bufs_out;		/* lent out: requests between head and response head */
	/* Freed HTTP request states (http.c), reused before calloc: one is
	 * taken and given back per request. Only the link is known here. */
	struct em_proxy_free_req { struct em_proxy_free_req *next; } *reqs;
	size_t n_reqs;
};

/* ---- the upstream keep-alive pool (pool.c) ------------------------------- */

/* An upstream connection to a backend address. Owned by one HTTP request
 * while it is used (owner != NULL) or by the pool while idle. */
struct em_proxy_upconn {
	struct em_proxy_src src;	/* on_event dispatches to the owner or the pool */
	void *owner;			/* the HTTP connection using it, or NULL */
	struct em_proxy_upconn *prev, *next;	/* pool bucket list while idle */
	struct sockaddr_storage addr;	/* the backend: the pool's key */
	socklen_t addr_len;
	unsigned requests;		/* requests sent on it so far */
	bool reused;			/* came from the pool (stale-retry rule) */
	struct em_proxy_timer idle;	/* pooled: idle timeout */
};

#define EM_PROXY_POOL_BUCKETS 64

struct em_proxy_pool {
	struct em_proxy_upconn *bucket[EM_PROXY_POOL_BUCKETS];
	uint32_t bucket_n[EM_PROXY_POOL_BUCKETS];	/* idle connections per bucket */
	size_t idle;			/* idle connections in the pool */
};

struct em_proxy_conn;	/* l4.c */
struct em_http_conn;	/* http.c */

struct em_proxy_worker {
	struct em_proxy *proxy;
	pthread_t thread;
	int epfd;
	bool stopping;
	struct em_proxy_src stop;	/* eventfd */
	struct em_proxy_src listen4, listen6;	/* fd -1 when absent */
	struct em_proxy_timer listen_resume;	/* after EMFILE: re-enable accepts */
	struct em_proxy_timer_heap timers;
	uint64_t now_ms;		/* CLOCK_MONOTONIC, refreshed per loop turn */
	struct em_proxy_conn *conns;	/* open L4 connections (doubly linked) */
	struct em_proxy_conn *dead;	/* closed this turn: freed after the event batch */
	struct em_http_conn *http_conns;
	struct em_http_conn *http_dead;
	struct em_proxy_upconn *up_dead;
	struct em_proxy_pools pools;
	struct em_proxy_pool pool;
	struct em_progress progress;	/* watchdog heartbeat */
};

/* Counters live in struct em_proxy; workers add with relaxed atomics. The
 * fields are those of struct em_proxy_stats (the lists in proxy.h). */
struct em_proxy_counters {
#define COUNTER_(name) _Atomic uint64_t name;
#define CLASS_COUNTER_(name) _Atomic uint64_t name[EM_PROXY_STATUS_CLASSES];
	EM_PROXY_COUNTERS(COUNTER_)
	EM_PROXY_CLASS_COUNTERS(CLASS_COUNTER_)
#undef COUNTER_
#undef CLASS_COUNTER_
};

/* Client connections per client address: hashed into buckets (two clients
 * sharing a bucket share its budget: conservative, never unbounded). */
#define EM_PROXY_PER_CLIENT_BUCKETS 4096

struct em_proxy {
	struct em_proxy_config cfg;
	struct em_http_limits limits;
	uint16_t port;
	unsigned n_workers;
	struct em_proxy_worker *workers;
	struct em_proxy_counters c;
	_Atomic unsigned clients;	/* client connections open (L4 + HTTP) */
	_Atomic unsigned per_client[EM_PROXY_PER_CLIENT_BUCKETS];
	_Atomic unsigned big_pipes;	/* pipes grown to cfg.pipe_size */
};

#define EM_PROXY_COUNT(p, field, n) \
	atomic_fetch_add_explicit(&(p)->c.field, (n), memory_order_relaxed)

/* timer.c */
void em_proxy_timer_init(struct em_proxy_timer *t, em_proxy_timer_fn fn);
/* Arm (or re-arm) t at deadline_ms. -ENOMEM only. */
int em_proxy_timer_arm(struct em_proxy_timer_heap *h, struct em_proxy_timer *t,
		       uint64_t deadline_ms);
/* Take t out of the heap: required before its owner is freed. */
void em_proxy_timer_cancel(struct em_proxy_timer_heap *h, struct em_proxy_timer *t);
/* Stop t from firing without a heap operation; it leaves the heap when its
 * key comes up, or at the next cancel. Its owner must still cancel before
 * being freed. */
void em_proxy_timer_disarm(struct em_proxy_timer *t);
/* Milliseconds until the earliest deadline (0 if due), -1 if none. */
int em_proxy_timer_next(const struct em_proxy_timer_heap *h, uint64_t now_ms);
/* Run every timer due at now_ms; each is disarmed before its fn runs. */
void em_proxy_timer_run(struct em_proxy_worker *w);
void em_proxy_timer_heap_free(struct em_proxy_timer_heap *h);

/* listener.c: a non-blocking listening socket, or -errno. */
int em_proxy_listener_open(int family, const char *addr, uint16_t port,
			   bool transparent);

/* proxy.c: close with RST. */
void em_proxy_close_reset(int fd);
/* proxy.c: the client slot taken at accept (limits); every client
 * connection gives it back exactly once when it ends. */
void em_proxy_client_done(struct em_proxy *p, const struct sockaddr *client);
void em_proxy_addr_text(const struct sockaddr *sa, char *buf, size_t len);

/* pipes.c: borrow/return pipes and head buffers. */
struct em_proxy_pipe *em_proxy_pipe_get(struct em_proxy_worker *w);
void em_proxy_pipe_put(struct em_proxy_worker *w, struct em_proxy_pipe *pp);
struct em_proxy_buf *em_proxy_buf_get(struct em_proxy_worker *w);
void em_proxy_buf_put(struct em_proxy_worker *w, struct em_proxy_buf *b);
void em_proxy_pools_free(struct em_proxy_worker *w);
/* Move up to `limit` bytes from `from` to `to` through a borrowed pipe
 * (returned once empty). Returns bytes delivered to `to` (>= 0), or -errno
 * on a socket or pipe error; *taken (may be NULL) grows by the bytes read
 * from `from`, *eof is set when `from` reached EOF. Stops at EAGAIN on
 * either side. */
ssize_t em_proxy_splice_move(struct em_proxy_worker *w, struct em_proxy_splice *s,
			     int from, int to, uint64_t limit, uint64_t *taken, bool *eof);
/* Give the pipe back (its bytes are dropped). */
void em_proxy_splice_drop(struct em_proxy_worker *w, struct em_proxy_splice *s);
/* Swallow the SIGPIPE a write into a closed socket raised (blocked in
 * workers), so it does not stay pending. */
void em_proxy_eat_sigpipe(void);

/* upstream.c: connect logic shared by L4 and HTTP. */
int em_proxy_backend_sockaddr(const struct em_balancer_backend *b,
			      struct sockaddr_storage *ss);
/* A non-blocking socket connecting to ss (bypass mark, TCP_NODELAY).
 * Returns the fd, or -errno; *local says whether the error is ours
 * (EMFILE, ENOBUFS, EADDRNOTAVAIL, EPERM) rather than the backend's. */
int em_proxy_upstream_open(const struct em_proxy_config *cfg,
			   const struct sockaddr_storage *ss, socklen_t len, bool *local);
/* Pick backends for req and open a socket to the first that does not fail
 * at once; failed picks are released (FAILED or LOCAL) and avoided.
 * *attempt counts picks, up to max_attempts. Returns the fd (connect in
 * progress) with *idx the outstanding pick and *ss its address, -ENOENT when
 * no backend was usable or attempts ran out, or -errno for a local error
 * (then nothing is outstanding). */
int em_proxy_upstream_connect(struct em_proxy_worker *w, struct em_lb_port *lb,
			      struct em_balancer_request *req, unsigned *attempt,
			      unsigned max_attempts, int *idx,
			      struct sockaddr_storage *ss, socklen_t *ss_len);
bool em_proxy_errno_local(int err);

/* pool.c: idle upstream connections by backend address. */
/* An idle connection to ss, taken out of the pool (owner set), or NULL. */
struct em_proxy_upconn *em_proxy_pool_take(struct em_proxy_worker *w,
					   const struct sockaddr_storage *ss,
					   socklen_t len, void *owner);
/* A new connection object for fd (owner set); NULL (fd closed) on ENOMEM. */
struct em_proxy_upconn *em_proxy_upconn_new(struct em_proxy_worker *w, int fd,
					    const struct sockaddr_storage *ss,
					    socklen_t len, void *owner,
					    em_proxy_event_fn on_event);
/* Done with u after a clean exchange: park it in the pool when `reusable`
 * and the bounds allow, else close it (FIN). */
void em_proxy_pool_put(struct em_proxy_worker *w, struct em_proxy_upconn *u,
		       bool reusable);
/* Close u now (reset when `reset`). */
void em_proxy_upconn_close(struct em_proxy_worker *w, struct em_proxy_upconn *u,
			   bool reset);
void em_proxy_pool_close_all(struct em_proxy_worker *w);
/* The socket leaves the pool's care (it becomes a tunnel's): u is freed
 * after the batch, its timer cancelled, its fd returned, not closed. */
int em_proxy_upconn_detach(struct em_proxy_worker *w, struct em_proxy_upconn *u);
void em_proxy_pool_reap(struct em_proxy_worker *w);

/* l4.c: take over an accepted client socket; lb is a reference the
 * connection now owns; pre[0..pre_len): bytes already read from the client
 * (copied), sent to the backend first. Never fails visibly: on error the
 * client is closed and counted. */
void em_proxy_l4_start(struct em_proxy_worker *w, int cfd,
		       const struct sockaddr_storage *client, socklen_t client_len,
		       const struct sockaddr_storage *orig_dst, socklen_t dst_len,
		       struct em_lb_port *lb, const char *pre, size_t pre_len);
/* l4.c: a byte tunnel between two connected sockets (HTTP Upgrade/CONNECT,
 * after the response that accepted it). Takes over both fds (both must be
 * removed from epoll by the caller first) and the client slot. */
void em_proxy_l4_tunnel(struct em_proxy_worker *w, int cfd, int ufd,
			const struct sockaddr_storage *client, socklen_t client_len);
/* Close every connection of the worker (stop). */
void em_proxy_conn_close_all(struct em_proxy_worker *w);
/* Free the connections closed during this loop turn. */
void em_proxy_conn_reap(struct em_proxy_worker *w);

/* http.c */
void em_proxy_http_start(struct em_proxy_worker *w, int cfd,
			 const struct sockaddr_storage *client, socklen_t client_len,
			 const struct sockaddr_storage *orig_dst, socklen_t dst_len);
void em_proxy_http_close_all(struct em_proxy_worker *w);
void em_proxy_http_reap(struct em_proxy_worker *w);

#endif
