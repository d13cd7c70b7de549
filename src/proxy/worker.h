/* worker.h — internal to edgemesh-tproxy's proxy: the per-thread event loop
 * shared by the listener, the timers and the connection handlers. */
#ifndef EM_PROXY_WORKER_H
#define EM_PROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/proxy.h"
#include "util/progress.h"

/* What an epoll event's data.ptr points to. Connection sources are embedded
 * in struct em_proxy_conn; the handler finds the connection by kind. */
enum em_proxy_src_kind {
	EM_SRC_LISTENER,
	EM_SRC_STOP,
	EM_SRC_CLIENT,
	EM_SRC_UPSTREAM,
};

struct em_proxy_src {
	enum em_proxy_src_kind kind;
	int fd;
};

struct em_proxy_worker;
struct em_proxy_timer;
typedef void (*em_proxy_timer_fn)(struct em_proxy_worker *w, struct em_proxy_timer *t);

/* A timer in the worker's min-heap; embedded in its owner. heap_idx is
 * SIZE_MAX while not armed. */
struct em_proxy_timer {
	uint64_t deadline_ms;
	size_t heap_idx;
	em_proxy_timer_fn fn;
};

struct em_proxy_timer_heap {
	struct em_proxy_timer **v;
	size_t n, cap;
};

struct em_proxy_conn;

struct em_proxy_worker {
	struct em_proxy *proxy;
	pthread_t thread;
	int epfd;
	struct em_proxy_src stop;	/* eventfd */
	struct em_proxy_src listen4, listen6;	/* fd -1 when absent */
	struct em_proxy_timer listen_resume;	/* after EMFILE: re-enable accepts */
	struct em_proxy_timer_heap timers;
	uint64_t now_ms;		/* CLOCK_MONOTONIC, refreshed per loop turn */
	struct em_proxy_conn *conns;	/* open connections (doubly linked) */
	struct em_proxy_conn *dead;	/* closed this turn: freed after the event batch */
	struct em_progress progress;	/* watchdog heartbeat */
};

/* Counters live in struct em_proxy; workers add with relaxed atomics. */
struct em_proxy_counters {
	_Atomic uint64_t accepted, refused, no_backend, upstream_failures,
		connect_timeouts, idle_timeouts, errors, completed, active,
		bytes_up, bytes_down;
};

struct em_proxy {
	struct em_proxy_config cfg;
	uint16_t port;
	unsigned n_workers;
	struct em_proxy_worker *workers;
	struct em_proxy_counters c;
};

#define EM_PROXY_COUNT(p, field, n) \
	atomic_fetch_add_explicit(&(p)->c.field, (n), memory_order_relaxed)

/* timer.c */
void em_proxy_timer_init(struct em_proxy_timer *t, em_proxy_timer_fn fn);
/* Arm (or re-arm) t at deadline_ms. -ENOMEM only. */
int em_proxy_timer_arm(struct em_proxy_timer_heap *h, struct em_proxy_timer *t,
		       uint64_t deadline_ms);
void em_proxy_timer_cancel(struct em_proxy_timer_heap *h, struct em_proxy_timer *t);
/* Milliseconds until the earliest deadline (0 if due), -1 if none. */
int em_proxy_timer_next(const struct em_proxy_timer_heap *h, uint64_t now_ms);
/* Run every timer due at now_ms; each is disarmed before its fn runs. */
void em_proxy_timer_run(struct em_proxy_worker *w);
void em_proxy_timer_heap_free(struct em_proxy_timer_heap *h);
uint64_t em_proxy_now_ms(void);

/* listener.c: a non-blocking listening socket, or -errno. */
int em_proxy_listener_open(int family, const char *addr, uint16_t port,
			   bool transparent);

/* l4.c: take over an accepted client socket; lb is a reference the
 * connection now owns. Never fails visibly: on error the client is closed
 * and counted. */
void em_proxy_l4_start(struct em_proxy_worker *w, int cfd,
		       const struct sockaddr_storage *client, socklen_t client_len,
		       struct em_lb_port *lb);
void em_proxy_conn_event(struct em_proxy_worker *w, struct em_proxy_src *src,
			 uint32_t events);
/* Close every connection of the worker (stop). */
void em_proxy_conn_close_all(struct em_proxy_worker *w);
/* Free the connections closed during this loop turn. */
void em_proxy_conn_reap(struct em_proxy_worker *w);

#endif
