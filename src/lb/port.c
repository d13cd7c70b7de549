/* port.c — struct em_lb_port: one service port's balancer, refcounted so a
 * connection can report the end of its attempt after the snapshot that
 * routed it is gone (see the lifetime rules in lb.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/health.h"
#include "lb/lb.h"

struct em_lb_port {
	_Atomic long refs;
	const struct em_balancer_ops *ops;
	void *instance;
	struct em_balancer_port view;	/* what create() saw; points into this struct */
	struct em_balancer_backend *backends;
	char *strings;			/* ns, name, port name, affinity, pods */
	struct backend_counters *counters;	/* n_backends, for metrics and status */
	_Atomic uint64_t requests;	/* first picks: connections (L4), requests (L7) */
	_Atomic uint64_t retries;	/* later picks of the same connection/request */
};

struct backend_counters {
	_Atomic uint64_t picks, failures;
	_Atomic uint32_t fails_in_row;
	_Atomic uint64_t failed_at_ns;
};

/* Bit 0 of port->lb tags "not built yet" (lb.h): needs aligned structs. */
_Static_assert(_Alignof(struct em_lb_port) >= 2, "em_lb_port pointers must leave bit 0 free");

static _Atomic long live_ports;

long em_lb_port_live(void)
{
	return atomic_load(&live_ports);
}

static void port_free(struct em_lb_port *lp)
{
	free(lp->backends);
	free(lp->counters);
	free(lp->strings);
	free(lp);
}

/* Copy every string the view needs into one block so the balancer never
 * points into snapshot memory. */
static char *put_string(char **cursor, const char *s)
{
	char *start = *cursor;
	size_t len = strlen(s) + 1;

	memcpy(start, s, len);
	*cursor += len;
	return start;
}

struct em_lb_port *em_lb_port_new(const struct em_balancer_ops *ops,
				  const struct em_service_port *port,
				  const struct em_balancer_params *params)
{
	static const struct em_balancer_params no_params = { .size = sizeof(no_params) };
	const struct em_service *svc = port->service;
	const char *ns = svc && svc->ns ? svc->ns : "";
	const char *name = svc && svc->name ? svc->name : "";
	const char *aff = svc && svc->session_affinity ? svc->session_affinity : "None";
	const char *pname = port->name ? port->name : "";
	size_t n = port->n_backends, total;
	struct em_lb_port *lp;
	char *cursor;

	lp = calloc(1, sizeof(*lp));
	if (!lp)
		return NULL;
	total = strlen(ns) + strlen(name) + strlen(aff) + strlen(pname) + 4;
	for (size_t i = 0; i < n; i++)
		if (port->backends[i].pod)
			total += strlen(port->backends[i].pod) + 1;
	lp->strings = malloc(total);
	lp->backends = calloc(n ? n : 1, sizeof(*lp->backends));
	lp->counters = calloc(n ? n : 1, sizeof(*lp->counters));
	if (!lp->strings || !lp->backends || !lp->counters)
		goto err;
	cursor = lp->strings;
	lp->view.service_ns = put_string(&cursor, ns);
	lp->view.service_name = put_string(&cursor, name);
	lp->view.port_name = put_string(&cursor, pname);
	lp->view.session_affinity = put_string(&cursor, aff);
	for (size_t i = 0; i < n; i++) {
		const struct em_backend *b = &port->backends[i];
		struct em_balancer_backend *c = &lp->backends[i];

		c->family = b->family;
		if (b->family == AF_INET6)
			c->ip.v6 = b->ip.v6;
		else
			c->ip.v4 = b->ip.v4;
		c->port = b->port;
		c->weight = b->weight ? b->weight : 1;
		c->pod = b->pod ? put_string(&cursor, b->pod) : NULL;
	}
	lp->view.size = sizeof(lp->view);
	lp->view.port = port->port;
	lp->view.http = port->app == EM_APP_HTTP;
	lp->view.affinity_timeout_s = 10800;
	lp->view.ipproto = port->ipproto;
	lp->view.backends = lp->backends;
	lp->view.n_backends = n;
	lp->ops = ops;
	lp->instance = ops->create(&lp->view, params ? params : &no_params);
	if (!lp->instance)
		goto err;
	atomic_init(&lp->refs, 1);
	atomic_fetch_add(&live_ports, 1);
	return lp;
err:
	port_free(lp);
	errno = errno ? errno : ENOMEM;
	return NULL;
}

struct em_lb_port *em_lb_port_get(struct em_lb_port *lp)
{
	/* Relaxed is enough to take a reference: the caller already holds
	 * one (directly, or the snapshot's under RCU protection). */
	atomic_fetch_add_explicit(&lp->refs, 1, memory_order_relaxed);
	return lp;
}

void em_lb_port_put(struct em_lb_port *lp)
{
	if (!lp)
		return;
	/* Release on every put, acquire on the last: the destroying thread
	 * sees every other thread's last release() on the instance. acq_rel
	 * on each decrement rather than release plus an acquire fence on the
	 * last one: the same on x86 (a locked xadd either way), and
	 * ThreadSanitizer, which does not model fences, can check it. */
	if (atomic_fetch_sub_explicit(&lp->refs, 1, memory_order_acq_rel) != 1)
		return;
	lp->ops->destroy(lp->instance);
	port_free(lp);
	atomic_fetch_sub(&live_ports, 1);
}

int em_lb_port_pick(struct em_lb_port *lp, const struct sockaddr *client,
		    socklen_t client_len, int avoid, unsigned attempt)
{
	struct em_balancer_request req = {
		.client = client,
		.client_len = client_len,
		.avoid = avoid,
		.attempt = attempt,
	};

	return em_lb_port_pick_request(lp, &req);
}

int em_lb_port_pick_request(struct em_lb_port *lp, const struct em_balancer_request *in)
{
	struct em_balancer_request req = *in;
	int idx;

	req.size = sizeof(req);
	idx = lp->ops->pick(lp->instance, &req);
	/* A plugin's answer is input like any other: never index with it
	 * unchecked. An out-of-range index is treated as "none". */
	if (idx < 0 || (size_t)idx >= lp->view.n_backends)
		return -1;
	atomic_fetch_add_explicit(in->attempt ? &lp->retries : &lp->requests, 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&lp->counters[idx].picks, 1, memory_order_relaxed);
	return idx;
}

void em_lb_port_release_result(struct em_lb_port *lp, int index,
			       const struct em_balancer_result *in)
{
	struct em_balancer_result res = *in;

	if (index >= 0 && (size_t)index < lp->view.n_backends) {
		struct backend_counters *c = &lp->counters[index];

		/* Counted for metrics and status: a backend's own failures only
		 * (LOCAL is ours), as health.h judges them. */
		if (in->outcome == EM_BALANCER_OK) {
			atomic_store_explicit(&c->fails_in_row, 0, memory_order_relaxed);
		} else if (in->outcome == EM_BALANCER_FAILED || in->outcome == EM_BALANCER_TIMEOUT) {
			atomic_fetch_add_explicit(&c->failures, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&c->fails_in_row, 1, memory_order_relaxed);
			atomic_store_explicit(&c->failed_at_ns, em_lb_now_ns(), memory_order_relaxed);
		}
	}
	res.size = sizeof(res);
	lp->ops->release(lp->instance, index, &res);
}

void em_lb_port_release(struct em_lb_port *lp, int index,
			enum em_balancer_outcome outcome)
{
	struct em_balancer_result res = { .outcome = outcome };

	em_lb_port_release_result(lp, index, &res);
}

void em_lb_port_get_stats(const struct em_lb_port *lp, struct em_lb_port_stats *out)
{
	out->requests = atomic_load_explicit(&lp->requests, memory_order_relaxed);
	out->retries = atomic_load_explicit(&lp->retries, memory_order_relaxed);
}

void em_lb_port_backend_stats(const struct em_lb_port *lp, int index,
			      struct em_lb_backend_stats *out)
{
	const struct backend_counters *c = &lp->counters[index];

	out->picks = atomic_load_explicit(&c->picks, memory_order_relaxed);
	out->failures = atomic_load_explicit(&c->failures, memory_order_relaxed);
	/* The passive health rule of health.h, seen from outside the strategy. */
	out->healthy = atomic_load_explicit(&c->fails_in_row, memory_order_relaxed) < EM_LB_MAX_FAILS ||
		       atomic_load_explicit(&c->failed_at_ns, memory_order_relaxed) +
		       EM_LB_FAIL_TIMEOUT_NS <= em_lb_now_ns();
}

size_t em_lb_port_n_backends(const struct em_lb_port *lp)
{
	return lp->view.n_backends;
}

const struct em_balancer_backend *em_lb_port_backend(const struct em_lb_port *lp,
						     int index)
{
	if (index < 0 || (size_t)index >= lp->view.n_backends)
		return NULL;
	return &lp->backends[index];
}

char *em_lb_port_format_label(const struct em_lb_port *lp, char *buf, size_t len)
{
	if (len)
		snprintf(buf, len, "%s/%s:%u", lp->view.service_ns, lp->view.service_name,
			 (unsigned)lp->view.port);
	return buf;
}

/* Labels are only wanted for log lines, which are rare (rate-limited):
 * formatting them then beats storing 160 bytes in every balancer. A small
 * ring lets one log call name two balancers. */
#define LABEL_RING 4
#define LABEL_LEN 160

const char *em_lb_port_label(const struct em_lb_port *lp)
{
	static _Thread_local char ring[LABEL_RING][LABEL_LEN];
	static _Thread_local unsigned next;
	char *buf = ring[next++ % LABEL_RING];

	return em_lb_port_format_label(lp, buf, LABEL_LEN);
}

const char *em_lb_port_strategy(const struct em_lb_port *lp)
{
	return lp->ops->name;
}
