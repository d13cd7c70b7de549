/* snapshot.c — the published snapshot: memory, hash indices, lookups. */
#include "registry/snapshot_impl.h"
#include "util/siphash.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- arena --------------------------------------------------------------- */

#define ARENA_CHUNK (256u * 1024)

struct em_arena_chunk {
	struct em_arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

void *em_arena_alloc(struct em_arena *a, size_t size)
{
	size = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
	struct em_arena_chunk *c = a->head;
	if (!c || c->size - c->used < size) {
		size_t chunk = a->chunk ? a->chunk : ARENA_CHUNK;
		size_t cap = size > chunk ? size : chunk;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->size = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += size;
	a->used_total += size;
	memset(p, 0, size);
	return p;
}

char *em_arena_strdup(struct em_arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = em_arena_alloc(a, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

void em_arena_free(struct em_arena *a)
{
	struct em_arena_chunk *c = a->head, *next;
	for (; c; c = next) {
		next = c->next;
		free(c);
	}
	a->head = NULL;
	a->used_total = 0;
}

/* ---- indices --------------------------------------------------------------- */

struct em_addr_slot {
	int family;			/* 0: empty */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} a;
	uint32_t svc;			/* service index */
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* Case-insensitive keyed hash of ns, a separator, name (SipHash under the
 * process key: tenants choose these names). Longer than any valid name:
 * hashed truncated, equality is checked apart. */
static uint64_t name_hash(const char *ns, size_t ns_len, const char *name, size_t name_len)
{
	char buf[64 + 1 + 256];
	size_t n = 0;

	for (size_t i = 0; i < ns_len && n < 64; i++)
		buf[n++] = (char)tolower((unsigned char)ns[i]);
	buf[n++] = '/';
	for (size_t i = 0; i < name_len && n < sizeof(buf); i++)
		buf[n++] = (char)tolower((unsigned char)name[i]);
	return em_hash_seeded(buf, n);
}

static uint64_t addr_hash(int family, const void *addr)
{
	size_t n = family == AF_INET ? 4 : 16;
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)family;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)addr)[i]) * 1099511628211ULL;
	return mix(h);
}

static size_t table_size(size_t n)
{
	size_t sz = 16;
	while (sz < n * 2)
		sz <<= 1;
	return sz;
}

static void addr_insert(struct em_snapshot *s, int family, const void *addr, uint32_t svc)
{
	size_t i = addr_hash(family, addr) & s->addr_mask;
	size_t len = family == AF_INET ? 4 : 16;
	for (;; i = (i + 1) & s->addr_mask) {
		struct em_addr_slot *sl = &s->addr_tab[i];
		if (!sl->family) {
			sl->family = family;
			memcpy(&sl->a, addr, len);
			sl->svc = svc;
			return;
		}
		if (sl->family == family && memcmp(&sl->a, addr, len) == 0)
			return;	/* first service keeps the address */
	}
}

int em_snapshot_index(struct em_snapshot *s)
{
	size_t nsz = table_size(s->n_services), asz = table_size(s->n_services * 3);
	s->name_tab = em_arena_alloc(&s->arena, nsz * sizeof(*s->name_tab));
	s->addr_tab = em_arena_alloc(&s->arena, asz * sizeof(*s->addr_tab));
	if (!s->name_tab || !s->addr_tab)
		return -ENOMEM;
	s->name_mask = nsz - 1;
	s->addr_mask = asz - 1;
	for (size_t k = 0; k < s->n_services; k++) {
		const struct em_service *svc = &s->blocks[k]->svc;
		size_t i = name_hash(svc->ns, strlen(svc->ns), svc->name, strlen(svc->name)) &
			   s->name_mask;
		while (s->name_tab[i])
			i = (i + 1) & s->name_mask;
		s->name_tab[i] = (uint32_t)k + 1;
		if (svc->has_fake4)
			addr_insert(s, AF_INET, &svc->fake4, (uint32_t)k);
		if (svc->has_fake6)
			addr_insert(s, AF_INET6, &svc->fake6, (uint32_t)k);
		if (svc->has_cluster_ip4)
			addr_insert(s, AF_INET, &svc->cluster_ip4, (uint32_t)k);
	}
	return 0;
}

/* ---- read side ------------------------------------------------------------- */

const char *em_snapshot_domain(const struct em_snapshot *snap)
{
	return snap->domain;
}

size_t em_snapshot_service_count(const struct em_snapshot *snap)
{
	return snap->n_services;
}

const struct em_service *em_snapshot_service_at(const struct em_snapshot *snap, size_t i)
{
	return i < snap->n_services ? &snap->blocks[i]->svc : NULL;
}

const struct em_service *em_snapshot_find_name(const struct em_snapshot *snap,
					       const char *ns, size_t ns_len,
					       const char *name, size_t name_len)
{
	if (!snap->n_services)
		return NULL;
	size_t i = name_hash(ns, ns_len, name, name_len) & snap->name_mask;
	for (; snap->name_tab[i]; i = (i + 1) & snap->name_mask) {
		const struct em_service *svc = &snap->blocks[snap->name_tab[i] - 1]->svc;
		if (strlen(svc->ns) == ns_len && strlen(svc->name) == name_len &&
		    strncasecmp(svc->ns, ns, ns_len) == 0 &&
		    strncasecmp(svc->name, name, name_len) == 0)
			return svc;
	}
	return NULL;
}

const struct em_service *em_snapshot_find_addr(const struct em_snapshot *snap,
					       int family, const void *addr)
{
	if (!snap->n_services || (family != AF_INET && family != AF_INET6))
		return NULL;
	size_t len = family == AF_INET ? 4 : 16;
	size_t i = addr_hash(family, addr) & snap->addr_mask;
	for (; snap->addr_tab[i].family; i = (i + 1) & snap->addr_mask) {
		const struct em_addr_slot *sl = &snap->addr_tab[i];
		if (sl->family == family && memcmp(&sl->a, addr, len) == 0)
			return &snap->blocks[sl->svc]->svc;
	}
	return NULL;
}

const struct em_service_port *em_service_find_port(const struct em_service *svc,
						   int ipproto, uint16_t port)
{
	for (size_t i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == port && svc->ports[i].ipproto == ipproto)
			return &svc->ports[i];
	return NULL;
}

struct em_svc_block *em_snapshot_block(const struct em_snapshot *snap, const char *ns,
				       const char *name)
{
	size_t ns_len = strlen(ns), name_len = strlen(name);
	if (!snap || !snap->n_services)
		return NULL;
	size_t i = name_hash(ns, ns_len, name, name_len) & snap->name_mask;
	for (; snap->name_tab[i]; i = (i + 1) & snap->name_mask) {
		struct em_svc_block *b = snap->blocks[snap->name_tab[i] - 1];
		if (strcmp(b->svc.ns, ns) == 0 && strcmp(b->svc.name, name) == 0)
			return b;
	}
	return NULL;
}

void em_svc_block_put(struct em_svc_block *b)
{
	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	if (b->hooks.port_fini && b->port_ok)
		for (size_t j = 0; j < b->svc.n_ports; j++)
			if (b->port_ok[j])
				b->hooks.port_fini(b->hooks.ctx,
						   (struct em_service_port *)&b->svc.ports[j]);
	em_arena_free(&b->arena);
	free(b);
}

void em_snapshot_free(struct em_snapshot *snap)
{
	if (!snap)
		return;
	for (size_t i = 0; i < snap->n_services; i++)
		em_svc_block_put(snap->blocks[i]);
	free(snap->blocks);
	free(snap->domain);
	em_arena_free(&snap->arena);
	free(snap);
}
