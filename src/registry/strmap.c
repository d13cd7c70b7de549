/* strmap.c — chained string hash map, doubling at load factor 1. Buckets
 * are chosen by SipHash under the process key (util/siphash.h): the keys
 * are names tenants choose. em_strmap_hash (FNV-1a, unkeyed) stays for
 * whoever needs the same value in every process (the fake IP allocation). */
#include "registry/strmap.h"
#include "util/siphash.h"

#include <stdlib.h>
#include <string.h>

uint64_t em_strmap_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

void em_strmap_init(struct em_strmap *m)
{
	memset(m, 0, sizeof(*m));
}

void em_strmap_clear(struct em_strmap *m, void (*free_val)(void *))
{
	for (size_t b = 0; b < m->n_buckets; b++) {
		struct em_strmap_entry *e = m->buckets[b], *next;
		for (; e; e = next) {
			next = e->next;
			if (free_val && e->val)
				free_val(e->val);
			free(e);
		}
	}
	free(m->buckets);
	em_strmap_init(m);
}

struct em_strmap_entry *em_strmap_get(const struct em_strmap *m, const char *key)
{
	if (!m->n_buckets)
		return NULL;
	uint64_t h = em_hash_seeded(key, strlen(key));
	for (struct em_strmap_entry *e = m->buckets[h & (m->n_buckets - 1)]; e; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static int grow(struct em_strmap *m)
{
	size_t n = m->n_buckets ? m->n_buckets * 2 : 64;
	struct em_strmap_entry **b = calloc(n, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct em_strmap_entry *e = m->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = n;
	return 0;
}

struct em_strmap_entry *em_strmap_put(struct em_strmap *m, const char *key)
{
	struct em_strmap_entry *e = em_strmap_get(m, key);
	if (e)
		return e;
	if (m->count >= m->n_buckets && grow(m) == -1)
		return NULL;
	size_t len = strlen(key);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->key, key, len + 1);
	e->hash = em_hash_seeded(key, len);
	e->val = NULL;
	e->next = m->buckets[e->hash & (m->n_buckets - 1)];
	m->buckets[e->hash & (m->n_buckets - 1)] = e;
	m->count++;
	return e;
}

void *em_strmap_del(struct em_strmap *m, const char *key)
{
	if (!m->n_buckets)
		return NULL;
	uint64_t h = em_hash_seeded(key, strlen(key));
	struct em_strmap_entry **pp = &m->buckets[h & (m->n_buckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		struct em_strmap_entry *e = *pp;
		if (e->hash == h && strcmp(e->key, key) == 0) {
			void *val = e->val;
			*pp = e->next;
			free(e);
			m->count--;
			return val;
		}
	}
	return NULL;
}

struct em_strmap_entry *em_strmap_next(const struct em_strmap *m,
				       struct em_strmap_entry *cur, size_t *bucket)
{
	if (cur && cur->next)
		return cur->next;
	size_t b = cur ? *bucket + 1 : 0;
	for (; b < m->n_buckets; b++) {
		if (m->buckets[b]) {
			*bucket = b;
			return m->buckets[b];
		}
	}
	return NULL;
}
