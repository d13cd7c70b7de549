/* svc.c — the state that outlives balancers: one struct em_lb_svc per
 * service port key in a table owned by struct em_lb, holding a peer per
 * backend address (see peers.h for the lifetime rules). Everything here
 * runs under the table lock, off the pick path: when a balancer is built
 * (first connection after a change), freed, and in the snapshot hooks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "lb/peers.h"

static _Atomic uint64_t next_peer_id = 1;

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t addr_hash(int family, const void *ip, uint16_t port)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = fnv1a(h, ip, family == AF_INET6 ? 16 : 4);
	return fnv1a(h, &port, sizeof(port));
}

static bool peer_is(const struct em_lb_peer *p, int family, const void *ip, uint16_t port)
{
	if (p->family != family || p->port != port)
		return false;
	return memcmp(&p->ip, ip, family == AF_INET6 ? 16 : 4) == 0;
}

void em_lb_svc_key(const char *ns, const char *name, int ipproto, uint16_t port,
		   char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%d/%u", ns ? ns : "", name ? name : "", ipproto,
		 (unsigned)port);
}

/* ---- one svc ---------------------------------------------------------- */

static struct em_lb_svc *svc_new(const char *key)
{
	struct em_lb_svc *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->key = strdup(key ? key : "");
	s->tab_size = 16;
	s->tab = calloc(s->tab_size, sizeof(*s->tab));
	if (!s->key || !s->tab) {
		free(s->key);
		free(s->tab);
		free(s);
		return NULL;
	}
	s->hash = fnv1a(0xcbf29ce484222325ULL, s->key, strlen(s->key));
	pthread_mutex_init(&s->pick_lock, NULL);
	pthread_mutex_init(&s->affinity_lock, NULL);
	return s;
}

static void svc_free(struct em_lb_svc *s)
{
	for (size_t i = 0; i < s->tab_size; i++) {
		struct em_lb_peer *p = s->tab[i];

		while (p) {
			struct em_lb_peer *next = p->hnext;
			free(p);
			p = next;
		}
	}
	em_lb_affinity_free(s->affinity);
	pthread_mutex_destroy(&s->pick_lock);
	pthread_mutex_destroy(&s->affinity_lock);
	free(s->tab);
	free(s->key);
	free(s);
}

struct em_lb_svc *em_lb_svc_new_standalone(void)
{
	struct em_lb_svc *s = svc_new("");

	if (s)
		s->refs = 1;
	return s;
}

static struct em_lb_peer *peer_find(const struct em_lb_svc *s, int family,
				    const void *ip, uint16_t port)
{
	struct em_lb_peer *p = s->tab[addr_hash(family, ip, port) & (s->tab_size - 1)];

	while (p && !peer_is(p, family, ip, port))
		p = p->hnext;
	return p;
}

static void tab_grow(struct em_lb_svc *s)
{
	size_t size = s->tab_size * 2;
	struct em_lb_peer **tab = calloc(size, sizeof(*tab));

	if (!tab)
		return;		/* longer chains, still correct */
	for (size_t i = 0; i < s->tab_size; i++) {
		struct em_lb_peer *p = s->tab[i];

		while (p) {
			struct em_lb_peer *next = p->hnext;
			size_t b = addr_hash(p->family, &p->ip, p->port) & (size - 1);

			p->hnext = tab[b];
			tab[b] = p;
			p = next;
		}
	}
	free(s->tab);
	s->tab = tab;
	s->tab_size = size;
}

struct em_lb_peer *em_lb_svc_peer(struct em_lb_svc *s, const struct em_balancer_backend *b)
{
	struct em_lb_peer *p = peer_find(s, b->family, &b->ip, b->port);
	size_t bucket;

	if (!p) {
		if (s->n_peers >= s->tab_size)
			tab_grow(s);
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
		p->family = b->family;
		if (b->family == AF_INET6)
			p->ip.v6 = b->ip.v6;
		else
			p->ip.v4 = b->ip.v4;
		p->port = b->port;
		p->id = atomic_fetch_add(&next_peer_id, 1);
		p->seen_gen = s->gen;
		bucket = addr_hash(p->family, &p->ip, p->port) & (s->tab_size - 1);
		p->hnext = s->tab[bucket];
		s->tab[bucket] = p;
		s->n_peers++;
	}
	/* The latest weight wins (an annotation may change it). */
	atomic_store_explicit(&p->weight, b->weight ? b->weight : 1, memory_order_relaxed);
	p->refs++;
	return p;
}

/* Free the peers nobody holds that left the service. */
static void prune(struct em_lb_svc *s)
{
	for (size_t i = 0; i < s->tab_size; i++) {
		struct em_lb_peer **pp = &s->tab[i];

		while (*pp) {
			struct em_lb_peer *p = *pp;

			if (p->refs == 0 && atomic_load(&p->removed)) {
				*pp = p->hnext;
				free(p);
				s->n_peers--;
			} else {
				pp = &p->hnext;
			}
		}
	}
}

/* ---- the table -------------------------------------------------------- */

void em_lb_svc_table_init(struct em_lb_svc_table *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

void em_lb_svc_table_fini(struct em_lb_svc_table *t)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct em_lb_svc *s = t->buckets[i];

		while (s) {
			struct em_lb_svc *next = s->next;
			svc_free(s);
			s = next;
		}
	}
	free(t->buckets);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

size_t em_lb_svc_table_count(struct em_lb_svc_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void em_lb_svc_table_stats(struct em_lb_svc_table *t, struct em_lb_stats *st)
{
	uint64_t now = em_lb_now_ns();

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_buckets; i++)
		for (struct em_lb_svc *s = t->buckets[i]; s; s = s->next) {
			st->ports++;
			for (size_t j = 0; j < s->tab_size; j++)
				for (struct em_lb_peer *p = s->tab[j]; p; p = p->hnext) {
					st->peers++;
					st->ejected += em_lb_peer_ejected(p, now);
					st->ejections += atomic_load(&p->ejected_total);
					st->in_flight += atomic_load(&p->in_flight);
					st->picks += atomic_load(&p->picks);
					st->failures += atomic_load(&p->failures);
					st->timeouts += atomic_load(&p->timeouts);
					st->status_5xx += atomic_load(&p->status_5xx);
					st->local += atomic_load(&p->locals);
				}
		}
	pthread_mutex_unlock(&t->lock);
}

static struct em_lb_svc **slot_of(struct em_lb_svc_table *t, const char *key)
{
	uint64_t h = fnv1a(0xcbf29ce484222325ULL, key, strlen(key));
	struct em_lb_svc **pp;

	if (!t->n_buckets)
		return NULL;
	pp = &t->buckets[h & (t->n_buckets - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

static void table_grow(struct em_lb_svc_table *t)
{
	size_t n = t->n_buckets ? t->n_buckets * 2 : 64;
	struct em_lb_svc **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct em_lb_svc *s = t->buckets[i];

		while (s) {
			struct em_lb_svc *next = s->next;
			s->next = b[s->hash & (n - 1)];
			b[s->hash & (n - 1)] = s;
			s = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
}

/* Unlink and free s when nothing keeps it. Lock held. */
static void maybe_drop(struct em_lb_svc_table *t, struct em_lb_svc *s)
{
	struct em_lb_svc **pp;

	if (s->refs || s->ports)
		return;
	pp = slot_of(t, s->key);
	if (pp && *pp == s) {
		*pp = s->next;
		t->count--;
	}
	svc_free(s);
}

bool em_lb_svc_table_port_init(struct em_lb_svc_table *t, const char *key,
			       const struct em_service_port *port)
{
	const struct em_backend *backends = port->backends;
	size_t n = port->n_backends;
	struct em_lb_svc **pp, *s;

	pthread_mutex_lock(&t->lock);
	pp = slot_of(t, key);
	s = pp ? *pp : NULL;
	if (!s) {
		pthread_mutex_unlock(&t->lock);
		return false;
	}
	s->ports++;
	s->gen++;
	s->latest = port;
	for (size_t i = 0; i < n; i++) {
		struct em_lb_peer *p = peer_find(s, backends[i].family, &backends[i].ip,
						 backends[i].port);
		if (p) {
			p->seen_gen = s->gen;
			atomic_store(&p->removed, 0);
		}
	}
	/* Every peer the new list lacks: connections on it finish, no new
	 * pick (even from an older balancer) goes there. */
	for (size_t i = 0; i < s->tab_size; i++)
		for (struct em_lb_peer *p = s->tab[i]; p; p = p->hnext)
			if (p->seen_gen != s->gen)
				atomic_store(&p->removed, 1);
	prune(s);
	pthread_mutex_unlock(&t->lock);
	return true;
}

void em_lb_svc_table_port_fini(struct em_lb_svc_table *t, const char *key,
			       const void *port)
{
	struct em_lb_svc **pp, *s;

	pthread_mutex_lock(&t->lock);
	pp = slot_of(t, key);
	s = pp ? *pp : NULL;
	if (s && s->latest == port)
		s->latest = NULL;
	if (s && s->ports) {
		s->ports--;
		maybe_drop(t, s);
	}
	pthread_mutex_unlock(&t->lock);
}

struct em_lb_svc *em_lb_svc_table_acquire(struct em_lb_svc_table *t, const char *key,
					  bool counted, bool *incremented)
{
	struct em_lb_svc **pp, *s;

	*incremented = false;
	pthread_mutex_lock(&t->lock);
	pp = slot_of(t, key);
	s = pp ? *pp : NULL;
	if (!s) {
		if (t->count >= t->n_buckets)
			table_grow(t);
		s = t->n_buckets ? svc_new(key) : NULL;
		if (!s) {
			pthread_mutex_unlock(&t->lock);
			return NULL;
		}
		s->owner = t;
		pp = slot_of(t, key);
		s->next = *pp;
		*pp = s;
		t->count++;
	}
	s->refs++;
	if (!counted) {
		s->ports++;
		*incremented = true;
	}
	return s;
}

void em_lb_svc_mark_stale(struct em_lb_svc *s, const struct em_service_port *port,
			  struct em_lb_peer *const *peers, size_t n)
{
	const struct em_service_port *l = s->latest;

	if (!l || l == port)
		return;
	for (size_t i = 0; i < n; i++) {
		bool live = false;

		for (size_t j = 0; j < l->n_backends && !live; j++)
			live = peer_is(peers[i], l->backends[j].family, &l->backends[j].ip,
				       l->backends[j].port);
		atomic_store(&peers[i]->removed, !live);
	}
}

void em_lb_svc_table_unlock(struct em_lb_svc_table *t)
{
	pthread_mutex_unlock(&t->lock);
}

void em_lb_svc_unref(struct em_lb_svc *s, struct em_lb_peer *const *peers, size_t n)
{
	struct em_lb_svc_table *t = s->owner;

	if (t)
		pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < n; i++)
		if (peers[i])
			peers[i]->refs--;
	s->refs--;
	if (t) {
		prune(s);
		maybe_drop(t, s);
		pthread_mutex_unlock(&t->lock);
	} else if (s->refs == 0) {
		svc_free(s);
	}
}
