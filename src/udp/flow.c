/* flow.c — the UDP flow table: a hash of keys with chaining, and a doubly
 * linked list in activity order, so lookup, touch, eviction of the oldest
 * and idle expiry are all O(1). */
#include "udp/flow.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int em_udp_key_from(struct em_udp_key *k, const struct sockaddr *client,
		    const struct sockaddr *dst)
{
	memset(k, 0, sizeof(*k));
	if (client->sa_family != dst->sa_family)
		return -EAFNOSUPPORT;
	if (client->sa_family == AF_INET) {
		const struct sockaddr_in *c = (const void *)client, *d = (const void *)dst;
		k->family = AF_INET;
		k->cport = c->sin_port;
		k->dport = d->sin_port;
		memcpy(k->caddr, &c->sin_addr, 4);
		memcpy(k->daddr, &d->sin_addr, 4);
		return 0;
	}
	if (client->sa_family == AF_INET6) {
		const struct sockaddr_in6 *c = (const void *)client, *d = (const void *)dst;
		k->family = AF_INET6;
		k->cport = c->sin6_port;
		k->dport = d->sin6_port;
		memcpy(k->caddr, &c->sin6_addr, 16);
		memcpy(k->daddr, &d->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static void to_sockaddr(int family, const uint8_t *addr, uint16_t port,
			struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = port;
		memcpy(&s->sin_addr, addr, 4);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = port;
		memcpy(&s->sin6_addr, addr, 16);
		*len = sizeof(*s);
	}
}

void em_udp_key_client(const struct em_udp_key *k, struct sockaddr_storage *ss, socklen_t *len)
{
	to_sockaddr(k->family, k->caddr, k->cport, ss, len);
}

void em_udp_key_dst(const struct em_udp_key *k, struct sockaddr_storage *ss, socklen_t *len)
{
	to_sockaddr(k->family, k->daddr, k->dport, ss, len);
}

/* FNV-1a over the key: clients pick their ports, so no keyed hash is
 * needed to keep chains short on a node's own traffic; the table is
 * bounded anyway. */
static size_t hash(const struct em_udp_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

int em_udp_table_init(struct em_udp_table *t, size_t max)
{
	size_t nb = 16;

	memset(t, 0, sizeof(*t));
	if (max == 0)
		max = 1;
	while (nb < max && nb < ((size_t)1 << 24))
		nb <<= 1;
	t->buckets = calloc(nb, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->mask = nb - 1;
	t->max = max;
	return 0;
}

void em_udp_table_fini(struct em_udp_table *t)
{
	free(t->buckets);
	t->buckets = NULL;
}

struct em_udp_flow_node *em_udp_table_find(struct em_udp_table *t, const struct em_udp_key *k)
{
	for (struct em_udp_flow_node *n = t->buckets[hash(k) & t->mask]; n; n = n->hnext)
		if (memcmp(&n->key, k, sizeof(*k)) == 0)
			return n;
	return NULL;
}

static void list_unlink(struct em_udp_table *t, struct em_udp_flow_node *n)
{
	if (n->older)
		n->older->newer = n->newer;
	else
		t->oldest = n->newer;
	if (n->newer)
		n->newer->older = n->older;
	else
		t->newest = n->older;
	n->older = n->newer = NULL;
}

static void list_append(struct em_udp_table *t, struct em_udp_flow_node *n)
{
	n->older = t->newest;
	n->newer = NULL;
	if (t->newest)
		t->newest->newer = n;
	else
		t->oldest = n;
	t->newest = n;
}

void em_udp_table_remove(struct em_udp_table *t, struct em_udp_flow_node *n)
{
	if (!n->linked)
		return;
	struct em_udp_flow_node **pp = &t->buckets[hash(&n->key) & t->mask];
	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = n->hnext;
	n->hnext = NULL;
	list_unlink(t, n);
	n->linked = false;
	t->n--;
}

struct em_udp_flow_node *em_udp_table_insert(struct em_udp_table *t,
					     struct em_udp_flow_node *n, uint64_t now)
{
	struct em_udp_flow_node *evicted = NULL;

	if (t->n >= t->max) {
		evicted = t->oldest;
		em_udp_table_remove(t, evicted);
	}
	size_t b = hash(&n->key) & t->mask;
	n->hnext = t->buckets[b];
	t->buckets[b] = n;
	n->last_ms = now;
	n->linked = true;
	list_append(t, n);
	t->n++;
	return evicted;
}

void em_udp_table_touch(struct em_udp_table *t, struct em_udp_flow_node *n, uint64_t now)
{
	n->last_ms = now;
	if (n->linked && t->newest != n) {
		list_unlink(t, n);
		list_append(t, n);
	}
}

struct em_udp_flow_node *em_udp_table_oldest(const struct em_udp_table *t)
{
	return t->oldest;
}

struct em_udp_flow_node *em_udp_table_expire(struct em_udp_table *t, uint64_t now,
					     uint64_t idle_ms)
{
	struct em_udp_flow_node *n = t->oldest;

	if (!n || n->last_ms + idle_ms > now)
		return NULL;
	em_udp_table_remove(t, n);
	return n;
}

uint64_t em_udp_table_next_expiry(const struct em_udp_table *t, uint64_t idle_ms)
{
	return t->oldest ? t->oldest->last_ms + idle_ms : UINT64_MAX;
}
