/* core.c — the peer core around every pick and release: the health summary
 * (panic), in-flight counts, counters, the latency peak EWMA and passive
 * health with ejection (Envoy outlier detection in spirit: consecutive
 * failures eject for base x n, capped; a maximum ejected share; panic
 * below a healthy share), and the public peer view for plugins. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lb/peers.h"

_Atomic uint64_t em_lb_clock_offset_ns;

/* The health summary is recomputed at most this often per balancer (and
 * at once after an ejection): panic and n_usable lag re-admissions by at
 * most this much. */
#define HEALTH_CACHE_NS (20ULL * 1000000ULL)

uint64_t em_lb_random(void)
{
	static _Thread_local uint64_t state;
	uint64_t x = state;

	if (x == 0) {
		uint64_t ns = em_clock_ns();

		x = ((ns % 1000000000ULL) << 20) ^ (ns / 1000000000ULL) ^
		    (uint64_t)(uintptr_t)&x ^ 0x9e3779b97f4a7c15ULL;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Local failures are never the backend's fault, whatever the forwarder
 * called them. */
static bool local_errno(int e)
{
	return e == EADDRNOTAVAIL || e == ENOBUFS || e == EMFILE || e == ENFILE ||
	       e == EPERM || e == ENOMEM || e == EACCES;
}

/* ---- public view -------------------------------------------------------- */

static int view_usable(const struct em_balancer_peers *v, int index)
{
	const struct em_lb_core *c = ((const struct em_lb_pick *)v)->core;

	if (index < 0 || (size_t)index >= c->n)
		return 0;
	return em_lb_core_usable(c, (size_t)index, em_lb_now_ns());
}

static int view_state(const struct em_balancer_peers *v, int index,
		      struct em_balancer_peer_state *out)
{
	return em_lb_core_state(((const struct em_lb_pick *)v)->core, index, out);
}

int em_lb_core_state(const struct em_lb_core *c, int index, struct em_balancer_peer_state *out)
{
	struct em_balancer_peer_state st;
	const struct em_lb_peer *p;
	uint64_t now = em_lb_now_ns();
	size_t len;

	if (!out || index < 0 || (size_t)index >= c->n)
		return -1;
	p = c->peer[index];
	memset(&st, 0, sizeof(st));
	st.size = out->size;
	st.flags = (em_lb_peer_ejected(p, now) ? EM_BALANCER_PEER_EJECTED : 0) |
		   (atomic_load(&p->removed) ? EM_BALANCER_PEER_REMOVED : 0);
	st.weight = c->weight[index];
	st.in_flight = atomic_load_explicit(&p->in_flight, memory_order_relaxed);
	st.consecutive_failures = atomic_load_explicit(&p->fails, memory_order_relaxed) +
				  atomic_load_explicit(&p->fails_5xx, memory_order_relaxed);
	st.ejections = atomic_load_explicit(&p->ejections, memory_order_relaxed);
	st.latency_ewma_us = atomic_load(&p->ewma_ns) ? em_lb_core_latency_ns(c, (size_t)index, now) / 1000 : 0;
	st.picks = atomic_load_explicit(&p->picks, memory_order_relaxed);
	st.failures = atomic_load_explicit(&p->failures, memory_order_relaxed) +
		      atomic_load_explicit(&p->timeouts, memory_order_relaxed) +
		      atomic_load_explicit(&p->status_5xx, memory_order_relaxed);
	/* Only what the caller's struct has room for (it may be older). */
	len = out->size < sizeof(st) ? out->size : sizeof(st);
	if (len > sizeof(st.size))
		memcpy((char *)out + sizeof(st.size), (char *)&st + sizeof(st.size),
		       len - sizeof(st.size));
	return 0;
}

/* ---- build ---------------------------------------------------------------- */

int em_lb_core_init(struct em_lb_core *c, struct em_lb_svc *svc,
		    const struct em_balancer_port *port, const struct em_lb_tuning *tune)
{
	size_t n = port->n_backends, slots = 4;

	memset(c, 0, sizeof(*c));
	c->svc = svc;
	c->n = n;
	c->tune = *tune;
	c->http = port->http;
	c->affinity = port->session_affinity && strcmp(port->session_affinity, "ClientIP") == 0;
	c->affinity_timeout_ns = (uint64_t)(port->affinity_timeout_s ? port->affinity_timeout_s
								     : 10800) * 1000000000ULL;
	while (slots < 2 * n)
		slots *= 2;
	c->peer = calloc(n ? n : 1, sizeof(*c->peer));
	c->weight = calloc(n ? n : 1, sizeof(*c->weight));
	c->id_slot = calloc(slots, sizeof(*c->id_slot));
	c->id_index = calloc(slots, sizeof(*c->id_index));
	if (!c->peer || !c->weight || !c->id_slot || !c->id_index)
		return -ENOMEM;
	c->id_mask = slots - 1;
	for (size_t i = 0; i < n; i++) {
		struct em_lb_peer *p = em_lb_svc_peer(svc, &port->backends[i]);
		size_t s;

		if (!p)
			return -ENOMEM;
		c->peer[i] = p;
		c->weight[i] = port->backends[i].weight ? port->backends[i].weight : 1;
		c->total_weight += c->weight[i];
		for (s = p->id & c->id_mask; c->id_slot[s]; s = (s + 1) & c->id_mask)
			;
		c->id_slot[s] = p->id;
		c->id_index[s] = (int)i;
	}
	atomic_init(&c->n_usable, (uint32_t)n);
	return 0;
}

void em_lb_core_fini(struct em_lb_core *c)
{
	if (c->svc) {
		size_t held = 0;

		while (held < c->n && c->peer && c->peer[held])
			held++;
		em_lb_svc_unref(c->svc, c->peer, held);
	}
	free(c->peer);
	free(c->weight);
	free(c->id_slot);
	free(c->id_index);
	memset(c, 0, sizeof(*c));
}

/* ---- around a pick -------------------------------------------------------- */

void em_lb_core_begin(struct em_lb_core *c, struct em_lb_pick *pk)
{
	uint64_t now = em_lb_now_ns();
	size_t healthy = 0, present = 0;
	bool panic;

	memset(pk, 0, sizeof(*pk));
	pk->view.size = sizeof(pk->view);
	pk->view.n = c->n;
	pk->view.usable = view_usable;
	pk->view.state = view_state;
	pk->core = c;
	pk->now = now;
	if (now < atomic_load_explicit(&c->health_until_ns, memory_order_relaxed))
		goto out;
	for (size_t i = 0; i < c->n; i++) {
		const struct em_lb_peer *p = c->peer[i];

		if (atomic_load_explicit(&p->removed, memory_order_relaxed))
			continue;
		present++;
		if (!em_lb_peer_ejected(p, now))
			healthy++;
	}
	/* Below the panic threshold, spreading over every backend beats
	 * piling onto the few healthy ones (Envoy's panic mode). */
	panic = present && healthy * 100 < (uint64_t)c->tune.panic_pct * present;
	atomic_store_explicit(&c->panic, panic, memory_order_relaxed);
	atomic_store_explicit(&c->n_usable, (uint32_t)(panic ? present : healthy),
			      memory_order_relaxed);
	atomic_store_explicit(&c->health_until_ns, now + HEALTH_CACHE_NS, memory_order_relaxed);
out:
	pk->view.panic = (int)atomic_load_explicit(&c->panic, memory_order_relaxed);
	pk->view.n_usable = atomic_load_explicit(&c->n_usable, memory_order_relaxed);
}

void em_lb_core_picked(struct em_lb_core *c, int i)
{
	struct em_lb_peer *p = c->peer[i];

	atomic_fetch_add_explicit(&p->in_flight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->svc->in_flight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->picks, 1, memory_order_relaxed);
}

/* e^-x for x >= 0 without libm (the forwarder's test driver links the
 * balancers without it): e^-x = 2^-k x e^-r with r in [0, ln 2), the
 * latter by its Taylor series (error < 1e-9). */
static double exp_neg(double x)
{
	static const double ln2 = 0.69314718055994530942;
	double r, term = 1.0, sum = 1.0;
	int k;

	if (!(x > 0))
		return 1.0;
	if (x > 700)
		return 0.0;
	k = (int)(x / ln2);
	r = x - k * ln2;
	for (int i = 1; i <= 12; i++) {
		term *= -r / i;
		sum += term;
	}
	while (k-- > 0)
		sum *= 0.5;
	return sum;
}

uint64_t em_lb_core_latency_ns(const struct em_lb_core *c, size_t i, uint64_t now)
{
	const struct em_lb_peer *p = c->peer[i];
	uint64_t ewma = atomic_load_explicit(&p->ewma_ns, memory_order_relaxed);
	uint64_t stamp = atomic_load_explicit(&p->ewma_stamp_ns, memory_order_relaxed);

	if (!ewma)
		return (uint64_t)c->tune.ewma_default_us * 1000;
	if (now > stamp && c->tune.ewma_decay_ms)
		ewma = (uint64_t)((double)ewma *
				  exp_neg((double)(now - stamp) / ((double)c->tune.ewma_decay_ms * 1e6)));
	return ewma ? ewma : 1;
}

/* Peak EWMA: a slower sample is taken at once, a faster one blends in
 * with a weight that grows with the time since the last sample. Racing
 * updates may lose one sample: harmless for an average. */
static void ewma_update(const struct em_lb_core *c, struct em_lb_peer *p, uint64_t rtt,
			uint64_t now)
{
	uint64_t prev = atomic_load_explicit(&p->ewma_ns, memory_order_relaxed);
	uint64_t stamp = atomic_load_explicit(&p->ewma_stamp_ns, memory_order_relaxed);
	uint64_t next;

	if (!prev || rtt > prev || !c->tune.ewma_decay_ms) {
		next = rtt;
	} else {
		double decay = exp_neg((double)(now > stamp ? now - stamp : 0) /
				       ((double)c->tune.ewma_decay_ms * 1e6));
		next = (uint64_t)((double)prev * decay + (double)rtt * (1.0 - decay));
	}
	atomic_store_explicit(&p->ewma_ns, next ? next : 1, memory_order_relaxed);
	atomic_store_explicit(&p->ewma_stamp_ns, now, memory_order_relaxed);
}

/* Eject p, unless too many of this balancer's backends are out already.
 * The interval grows with each ejection (base x n, capped); the count
 * resets once the backend has stayed in for the cap since its last
 * ejection ended. */
static void eject(struct em_lb_core *c, struct em_lb_peer *p, uint64_t now)
{
	uint64_t until = atomic_load(&p->ejected_until_ns), dur;
	size_t ejected = 0, present = 0;
	uint32_t n;

	if (until > now || !c->tune.max_eject_pct)
		return;				/* already out, or ejection off */
	for (size_t i = 0; i < c->n; i++) {
		if (atomic_load_explicit(&c->peer[i]->removed, memory_order_relaxed))
			continue;
		present++;
		if (em_lb_peer_ejected(c->peer[i], now))
			ejected++;
	}
	if (ejected && ejected * 100 >= (uint64_t)c->tune.max_eject_pct * present)
		return;
	n = atomic_load(&p->ejections);
	if (until && now - until > (uint64_t)c->tune.eject_max_ms * 1000000ULL)
		n = 0;
	n++;
	dur = (uint64_t)c->tune.eject_base_ms * n;
	if (dur > c->tune.eject_max_ms)
		dur = c->tune.eject_max_ms;
	/* One releaser ejects; a racing one sees the new deadline. */
	if (!atomic_compare_exchange_strong(&p->ejected_until_ns, &until,
					    now + dur * 1000000ULL))
		return;
	atomic_store(&p->ejections, n);
	atomic_fetch_add_explicit(&p->ejected_total, 1, memory_order_relaxed);
	/* Back on probation when re-admitted: the next failure ejects again
	 * (until a success clears it). */
	atomic_store(&p->fails, c->tune.max_fails ? c->tune.max_fails - 1 : 0);
	atomic_store(&p->fails_5xx, c->tune.max_5xx ? c->tune.max_5xx - 1 : 0);
	atomic_store_explicit(&c->health_until_ns, 0, memory_order_relaxed);
}

/* Decrement, never below zero: a release the pairing rule did not allow
 * (a caller's bug) must not turn into four billion connections. */
static void dec_sat32(_Atomic uint32_t *v)
{
	uint32_t cur = atomic_load_explicit(v, memory_order_relaxed);

	while (cur && !atomic_compare_exchange_weak_explicit(v, &cur, cur - 1,
							     memory_order_relaxed,
							     memory_order_relaxed))
		;
}

static void dec_sat64(_Atomic uint64_t *v)
{
	uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);

	while (cur && !atomic_compare_exchange_weak_explicit(v, &cur, cur - 1,
							     memory_order_relaxed,
							     memory_order_relaxed))
		;
}

void em_lb_core_released(struct em_lb_core *c, int i, const struct em_balancer_result *res)
{
	struct em_lb_peer *p = c->peer[i];
	enum em_balancer_outcome outcome = res->outcome;
	bool failure = false, http5xx = false;
	uint64_t now;

	dec_sat32(&p->in_flight);
	dec_sat64(&c->svc->in_flight);
	if (outcome == EM_BALANCER_FAILED && local_errno(res->error))
		outcome = EM_BALANCER_LOCAL;
	switch (outcome) {
	case EM_BALANCER_OK:
		if (res->http_status >= 500 && res->http_status <= 599) {
			atomic_fetch_add_explicit(&p->status_5xx, 1, memory_order_relaxed);
			http5xx = true;
		} else {
			atomic_fetch_add_explicit(&p->oks, 1, memory_order_relaxed);
		}
		break;
	case EM_BALANCER_FAILED:
		atomic_fetch_add_explicit(&p->failures, 1, memory_order_relaxed);
		failure = true;
		break;
	case EM_BALANCER_TIMEOUT:
		atomic_fetch_add_explicit(&p->timeouts, 1, memory_order_relaxed);
		failure = true;
		break;
	case EM_BALANCER_LOCAL:
		atomic_fetch_add_explicit(&p->locals, 1, memory_order_relaxed);
		return;			/* says nothing of the backend */
	case EM_BALANCER_CANCELLED:
	default:
		atomic_fetch_add_explicit(&p->cancels, 1, memory_order_relaxed);
		return;
	}
	now = em_lb_now_ns();
	if (res->latency_us && !failure)
		ewma_update(c, p, res->latency_us * 1000, now);
	if (failure) {
		if (atomic_fetch_add(&p->fails, 1) + 1 >= c->tune.max_fails && c->tune.max_fails)
			eject(c, p, now);
		return;
	}
	/* The backend answered: connect failures no longer run in a row. */
	if (atomic_load_explicit(&p->fails, memory_order_relaxed))
		atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
	if (http5xx) {
		if (atomic_fetch_add(&p->fails_5xx, 1) + 1 >= c->tune.max_5xx && c->tune.max_5xx)
			eject(c, p, now);
		return;
	}
	if (atomic_load_explicit(&p->fails_5xx, memory_order_relaxed))
		atomic_store_explicit(&p->fails_5xx, 0, memory_order_relaxed);
}

/* ---- ClientIP affinity ------------------------------------------------------ */

/* Client address -> peer id and last use, chained buckets; entries older
 * than the timeout are dropped as they are met, and the table refuses new
 * clients beyond AFF_MAX (they are balanced without affinity). */
#define AFF_BUCKETS 1024
#define AFF_MAX 65536

struct aff_entry {
	struct aff_entry *next;
	int family;
	unsigned char addr[16];
	uint64_t peer_id;
	uint64_t last_ns;
};

struct em_lb_affinity {
	struct aff_entry *bucket[AFF_BUCKETS];
	size_t count;
};

void em_lb_affinity_free(struct em_lb_affinity *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < AFF_BUCKETS; i++) {
		struct aff_entry *e = a->bucket[i];

		while (e) {
			struct aff_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(a);
}

static bool client_key(const struct sockaddr *sa, int *family, unsigned char addr[16])
{
	memset(addr, 0, 16);
	if (sa && sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*family = AF_INET;
		return true;
	}
	if (sa && sa->sa_family == AF_INET6) {
		memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		*family = AF_INET6;
		return true;
	}
	return false;
}

static size_t aff_bucket(int family, const unsigned char addr[16])
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)family;

	for (int i = 0; i < 16; i++) {
		h ^= addr[i];
		h *= 0x100000001b3ULL;
	}
	return (size_t)(h ^ (h >> 32)) % AFF_BUCKETS;
}

/* The entry of the client (expired ones on the way are freed). Lock held. */
static struct aff_entry *aff_find(struct em_lb_affinity *a, int family,
				  const unsigned char addr[16], uint64_t now,
				  uint64_t timeout)
{
	struct aff_entry **pp = &a->bucket[aff_bucket(family, addr)];

	while (*pp) {
		struct aff_entry *e = *pp;

		if (now - e->last_ns > timeout) {
			*pp = e->next;
			free(e);
			a->count--;
			continue;
		}
		if (e->family == family && memcmp(e->addr, addr, 16) == 0)
			return e;
		pp = &e->next;
	}
	return NULL;
}

static int index_of_id(const struct em_lb_core *c, uint64_t id)
{
	for (size_t s = id & c->id_mask; c->id_slot[s]; s = (s + 1) & c->id_mask)
		if (c->id_slot[s] == id)
			return c->id_index[s];
	return -1;
}

int em_lb_core_affinity_get(struct em_lb_core *c, const struct sockaddr *client,
			    int avoid, uint64_t now)
{
	struct em_lb_svc *svc = c->svc;
	unsigned char addr[16];
	struct aff_entry *e;
	int family, idx = -1;

	if (!client_key(client, &family, addr))
		return -1;
	pthread_mutex_lock(&svc->affinity_lock);
	if (svc->affinity &&
	    (e = aff_find(svc->affinity, family, addr, now, c->affinity_timeout_ns))) {
		idx = index_of_id(c, e->peer_id);
		if (idx >= 0 && (idx == avoid || !em_lb_core_usable(c, (size_t)idx, now)))
			idx = -1;
		if (idx >= 0)
			e->last_ns = now;	/* every use refreshes (kube-proxy's "recent --set") */
	}
	pthread_mutex_unlock(&svc->affinity_lock);
	return idx;
}

void em_lb_core_affinity_set(struct em_lb_core *c, const struct sockaddr *client,
			     int i, uint64_t now)
{
	struct em_lb_svc *svc = c->svc;
	unsigned char addr[16];
	struct aff_entry *e;
	int family;

	if (!client_key(client, &family, addr))
		return;
	pthread_mutex_lock(&svc->affinity_lock);
	if (!svc->affinity)
		svc->affinity = calloc(1, sizeof(*svc->affinity));
	if (!svc->affinity)
		goto out;
	e = aff_find(svc->affinity, family, addr, now, c->affinity_timeout_ns);
	if (!e && svc->affinity->count < AFF_MAX && (e = calloc(1, sizeof(*e)))) {
		size_t b = aff_bucket(family, addr);

		e->family = family;
		memcpy(e->addr, addr, 16);
		e->next = svc->affinity->bucket[b];
		svc->affinity->bucket[b] = e;
		svc->affinity->count++;
	}
	if (e) {
		e->peer_id = c->peer[i]->id;
		e->last_ns = now;
	}
out:
	pthread_mutex_unlock(&svc->affinity_lock);
}
