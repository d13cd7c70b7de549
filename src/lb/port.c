/* port.c — struct em_lb_port: one service port's balancer, refcounted so a
 * connection can report the end of its attempt after the snapshot that
 * routed it is gone (see the lifetime rules in lb.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "lb/peers.h"

struct em_lb_port {
	_Atomic long refs;
	const struct em_balancer_ops *ops;
	void *instance;
	struct em_balancer_port view;	/* what create() saw; points into this struct */
	struct em_balancer_backend *backends;
	char *strings;			/* ns, name, port name, affinity, pods */
	struct em_lb_core core;		/* the shared peer state, as this port sees it */
	const void *port_id;		/* its snapshot port: an identity, never read */
	bool port_counted;		/* holds its snapshot port's count in the svc */
	bool incremented;		/* ... because building it counted the port */
	_Atomic uint64_t requests;	/* first picks: connections (L4), requests (L7) */
	_Atomic uint64_t retries;	/* later picks of the same connection/request */
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
	em_lb_core_fini(&lp->core);
	free(lp->backends);
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

/* Copy the port (names, backends) into lp->view so nothing points into the
 * snapshot. */
static int copy_port(struct em_lb_port *lp, const struct em_service_port *port)
{
	const struct em_service *svc = port->service;
	const char *ns = svc && svc->ns ? svc->ns : "";
	const char *name = svc && svc->name ? svc->name : "";
	const char *aff = svc && svc->session_affinity ? svc->session_affinity : "None";
	const char *pname = port->name ? port->name : "";
	size_t n = port->n_backends, total;
	char *cursor;

	total = strlen(ns) + strlen(name) + strlen(aff) + strlen(pname) + 4;
	for (size_t i = 0; i < n; i++)
		if (port->backends[i].pod)
			total += strlen(port->backends[i].pod) + 1;
	lp->strings = malloc(total);
	lp->backends = calloc(n ? n : 1, sizeof(*lp->backends));
	if (!lp->strings || !lp->backends)
		return -ENOMEM;
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
	lp->view.affinity_timeout_s = svc && svc->affinity_timeout_s ? svc->affinity_timeout_s
								      : 10800;
	lp->view.ipproto = port->ipproto;
	lp->view.backends = lp->backends;
	lp->view.n_backends = n;
	return 0;
}

struct em_lb_port *em_lb_port_build(struct em_lb *lb, const struct em_balancer_ops *ops,
				    const struct em_service_port *port,
				    const struct em_balancer_params *params, bool counted)
{
	static const struct em_balancer_params no_params = { .size = sizeof(no_params) };
	struct em_lb_tuning tune = EM_LB_TUNING_DEFAULTS;
	struct em_lb_svc_table *table = lb ? em_lb_svc_table_of(lb) : NULL;
	struct em_lb_svc *svc = NULL;
	struct em_lb_port *lp;
	int ret;

	lp = calloc(1, sizeof(*lp));
	if (!lp)
		return NULL;
	if (copy_port(lp, port) < 0)
		goto err;
	if (lb)
		tune = *em_lb_tuning_of(lb);
	if (params && params->args)
		em_lb_tuning_parse(&tune, params->args);
	if (table) {
		char key[600];

		em_lb_svc_key(lp->view.service_ns, lp->view.service_name, port->ipproto,
			      port->port, key, sizeof(key));
		svc = em_lb_svc_table_acquire(table, key, counted, &lp->incremented);
		if (!svc)
			goto err;
		lp->port_counted = true;
		lp->port_id = port;
		ret = em_lb_core_init(&lp->core, svc, &lp->view, &tune);
		if (ret == 0)
			em_lb_svc_mark_stale(svc, port, lp->core.peer, lp->core.n);
		em_lb_svc_table_unlock(table);
	} else {
		svc = em_lb_svc_new_standalone();
		if (!svc)
			goto err;
		ret = em_lb_core_init(&lp->core, svc, &lp->view, &tune);
	}
	if (ret < 0)
		goto err;
	lp->ops = ops;
	errno = 0;
	lp->instance = ops->create ? ops->create(&lp->view, params ? params : &no_params) : lp;
	if (!lp->instance)
		goto err;
	atomic_init(&lp->refs, 1);
	atomic_fetch_add(&live_ports, 1);
	return lp;
err:
	ret = errno ? errno : ENOMEM;
	em_lb_port_uncount(lp, true);
	port_free(lp);
	errno = ret;
	return NULL;
}

struct em_lb_port *em_lb_port_new(const struct em_balancer_ops *ops,
				  const struct em_service_port *port,
				  const struct em_balancer_params *params)
{
	return em_lb_port_build(NULL, ops, port, params, false);
}

void em_lb_port_uncount(struct em_lb_port *lp, bool own_only)
{
	bool counted = own_only ? lp->incremented : lp->port_counted;

	if (counted && lp->core.svc && lp->core.svc->owner)
		em_lb_svc_table_port_fini(lp->core.svc->owner, lp->core.svc->key, lp->port_id);
	lp->port_counted = false;
	lp->incremented = false;
}

int em_lb_port_peer_state(const struct em_lb_port *lp, int index,
			  struct em_balancer_peer_state *out)
{
	return em_lb_core_state(&lp->core, index, out);
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
	if (lp->ops->destroy && lp->ops->create)
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

/* The first backend usable now other than `avoid`, from `from` on: the
 * answer when a plugin names a backend that left the service. */
static int next_usable(const struct em_lb_core *c, int from, int avoid, uint64_t now)
{
	for (size_t k = 0; k < c->n; k++) {
		size_t i = ((size_t)from + k) % c->n;

		if ((int)i != avoid && em_lb_core_usable(c, i, now))
			return (int)i;
	}
	return -1;
}

int em_lb_port_pick_request(struct em_lb_port *lp, const struct em_balancer_request *in)
{
	struct em_lb_core *c = &lp->core;
	struct em_balancer_request req = *in;
	struct em_lb_pick pk;
	int idx = -1;

	if (c->n == 0)
		return -1;
	atomic_fetch_add_explicit(in->attempt ? &lp->retries : &lp->requests, 1,
				  memory_order_relaxed);
	em_lb_core_begin(c, &pk);
	req.size = sizeof(req);
	req.peers = &pk.view;
	if (c->affinity)
		idx = em_lb_core_affinity_get(c, req.client, req.avoid, pk.now);
	if (idx < 0) {
		idx = lp->ops->pick(lp->instance, &req);
		/* A plugin's answer is input like any other: never index with
		 * it unchecked. An out-of-range index is treated as "none". */
		if (idx < 0 || (size_t)idx >= c->n)
			return -1;
		/* A backend that left the service is never picked again,
		 * whoever asks (an old balancer finishing its connections). */
		if (atomic_load_explicit(&c->peer[idx]->removed, memory_order_relaxed) &&
		    (idx = next_usable(c, idx, req.avoid, pk.now)) < 0)
			return -1;
		if (c->affinity)
			em_lb_core_affinity_set(c, req.client, idx, pk.now);
	}
	em_lb_core_picked(c, idx);
	return idx;
}

void em_lb_port_release_result(struct em_lb_port *lp, int index,
			       const struct em_balancer_result *in)
{
	struct em_balancer_result res = *in;

	/* Only a pick's index is ever released (the pairing rule): anything
	 * else is a caller's bug, ignored rather than miscounted. */
	if (index < 0 || (size_t)index >= lp->core.n)
		return;
	res.size = sizeof(res);
	em_lb_core_released(&lp->core, index, &res);
	if (lp->ops->release)
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

/* From the shared peer state (peers.h): the counters live with the backend,
 * so they span every balancer the service port had, and health is what the
 * core decides (not ejected, still in the service). */
void em_lb_port_backend_stats(const struct em_lb_port *lp, int index,
			      struct em_lb_backend_stats *out)
{
	const struct em_lb_peer *p = lp->core.peer[index];
	uint64_t now = em_lb_now_ns();

	out->picks = atomic_load_explicit(&p->picks, memory_order_relaxed);
	out->failures = atomic_load_explicit(&p->failures, memory_order_relaxed) +
			atomic_load_explicit(&p->timeouts, memory_order_relaxed);
	out->ejections = atomic_load_explicit(&p->ejected_total, memory_order_relaxed);
	out->healthy = !atomic_load_explicit(&p->removed, memory_order_relaxed) &&
		       !em_lb_peer_ejected(p, now);
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
