/* consistent_hash.c — "consistent-hash": a Maglev lookup table (Eisenbud et
 * al., NSDI 2016) with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
 * "Consistent Hashing with Bounded Loads", SODA 2018).
 *
 * Key: the client IP address by default; "header=<Name>" or
 * "cookie=<Name>" use that request header or cookie on HTTP ports, and
 * fall back to the client IP when the request lacks it (and on L4 ports).
 *
 * Table: M slots (a prime, about 100 per backend, at most 65521). Each
 * backend walks its own permutation of the slots (offset and skip from a
 * hash of its ADDRESS, not its index) and claims the next free one in
 * turn, `weight / max weight` turns per round, until the table is full.
 * A key goes to table[hash % M]. Because permutations depend on addresses
 * only, removing one of N backends re-homes its keys and disturbs only a
 * few others: about 1/N of the keys move, across snapshots too.
 *
 * Bounded load: a backend may hold at most max(2, ceil(c x (in flight + 1)
 * x weight / total weight)) of the port's attempts in flight (c = 1.25 by
 * default, "load=" or the option; the floor of 2 keeps affinity at tiny
 * loads); when the key's backend is full, ejected or to be avoided, the
 * walk continues at the next slots, which belong to other backends in a
 * key-dependent order. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "lb/peers.h"

enum key_kind { KEY_CLIENT_IP, KEY_HEADER, KEY_COOKIE };

/* A backend may always hold this many attempts, whatever the bound says.
 * At tiny loads ceil(c x (total + 1) x w / W) is 1 for every backend, so a
 * key would leave its backend as soon as one connection (say the previous
 * one of the same client, not yet closed) is open there: affinity would
 * break exactly when nothing is loaded. */
#define LOAD_FLOOR 2

struct chash {
	size_t n;
	uint32_t m;			/* table size, prime */
	enum key_kind kind;
	char name[128];			/* header or cookie name */
	uint32_t *table;		/* [m] backend index */
};

static const uint32_t primes[] = { 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521 };

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t mix(uint64_t x)	/* splitmix64 finaliser */
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t backend_hash(const struct em_balancer_backend *b)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = b->family == AF_INET6 ? fnv1a(h, &b->ip.v6, sizeof(b->ip.v6))
				  : fnv1a(h, &b->ip.v4, sizeof(b->ip.v4));
	return mix(fnv1a(h, &b->port, sizeof(b->port)));
}

/* Fill the table (Maglev's population, with weighted turns). */
static int populate(struct chash *c, const struct em_balancer_backend *backends)
{
	size_t n = c->n;
	uint32_t m = c->m, filled = 0, max_w = 1;
	uint64_t *offset = calloc(n, sizeof(*offset)), *skip = calloc(n, sizeof(*skip));
	uint64_t *next = calloc(n, sizeof(*next));
	double *credit = calloc(n, sizeof(*credit));
	int ret = -ENOMEM;

	if (!offset || !skip || !next || !credit)
		goto out;
	for (size_t i = 0; i < n; i++) {
		uint64_t h = backend_hash(&backends[i]);

		offset[i] = h % m;
		skip[i] = mix(h ^ 0x9e3779b97f4a7c15ULL) % (m - 1) + 1;
		if (backends[i].weight > max_w)
			max_w = backends[i].weight;
	}
	for (uint32_t s = 0; s < m; s++)
		c->table[s] = UINT32_MAX;
	while (filled < m) {
		for (size_t i = 0; i < n && filled < m; i++) {
			credit[i] += (double)(backends[i].weight ? backends[i].weight : 1) / max_w;
			while (credit[i] >= 1.0 && filled < m) {
				uint32_t s;

				do {	/* the next free slot of i's permutation */
					s = (uint32_t)((offset[i] + next[i] * skip[i]) % m);
					next[i]++;
				} while (c->table[s] != UINT32_MAX);
				c->table[s] = (uint32_t)i;
				filled++;
				credit[i] -= 1.0;
			}
		}
	}
	ret = 0;
out:
	free(offset);
	free(skip);
	free(next);
	free(credit);
	return ret;
}

static void *chash_create(const struct em_balancer_port *port,
			  const struct em_balancer_params *params)
{
	struct chash *c = calloc(1, sizeof(*c));
	const char *args = params ? params->args : NULL;
	size_t n = port->n_backends;

	if (!c)
		return NULL;
	c->n = n;
	if (em_lb_args_get(args, "header", c->name, sizeof(c->name)) && *c->name)
		c->kind = KEY_HEADER;
	else if (em_lb_args_get(args, "cookie", c->name, sizeof(c->name)) && *c->name)
		c->kind = KEY_COOKIE;
	if (!n)
		return c;
	c->m = primes[sizeof(primes) / sizeof(primes[0]) - 1];
	for (size_t i = 0; i < sizeof(primes) / sizeof(primes[0]); i++)
		if (primes[i] >= 100 * n) {
			c->m = primes[i];
			break;
		}
	if (c->m < n)		/* more backends than slots: refuse */
		goto err_inval;
	c->table = malloc(c->m * sizeof(*c->table));
	if (!c->table || populate(c, port->backends) < 0) {
		free(c->table);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
err_inval:
	free(c);
	errno = EINVAL;
	return NULL;
}

static uint64_t request_key(const struct chash *c, const struct em_balancer_request *req)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *v = NULL;
	size_t len = 0;

	if (c->kind == KEY_HEADER && req->header)
		v = req->header(req, c->name, &len);
	else if (c->kind == KEY_COOKIE && req->cookie)
		v = req->cookie(req, c->name, &len);
	if (v)
		return mix(fnv1a(h ^ 1, v, len));
	if (req->client && req->client->sa_family == AF_INET)
		return mix(fnv1a(h, &((const struct sockaddr_in *)req->client)->sin_addr,
				 sizeof(struct in_addr)));
	if (req->client && req->client->sa_family == AF_INET6)
		return mix(fnv1a(h, &((const struct sockaddr_in6 *)req->client)->sin6_addr,
				 sizeof(struct in6_addr)));
	return h;
}

static int chash_pick(void *instance, const struct em_balancer_request *req)
{
	const struct em_lb_pick *pk = em_lb_pick_of(req);
	const struct em_lb_core *core = pk->core;
	struct chash *c = instance;
	uint64_t key, total = 0, scaled = 0;
	uint32_t slot;
	int fallback = -1;

	if (c->n == 0)
		return -1;
	key = request_key(c, req);
	slot = (uint32_t)(key % c->m);
	/* Capacity of backend i: ceil(c% x (total + 1) x w_i / (100 x W)).
	 * in_flight + 1 <= that  <=>  (in_flight + 1) x 100 x W <= c% x
	 * (total + 1) x w_i + (100 x W - 1), in integers. */
	if (core->tune.hash_load_pct) {
		total = atomic_load_explicit(&core->svc->in_flight, memory_order_relaxed);
		scaled = (uint64_t)core->tune.hash_load_pct * (total + 1);
	}
	for (uint32_t step = 0; step < c->m; step++) {
		uint32_t i = c->table[(slot + step) % c->m];

		if ((int)i == req->avoid || !em_lb_core_usable(core, i, pk->now))
			continue;
		if (fallback < 0)
			fallback = (int)i;
		if (!core->tune.hash_load_pct || em_lb_core_in_flight(core, i) < LOAD_FLOOR ||
		    ((uint64_t)em_lb_core_in_flight(core, i) + 1) * 100 * core->total_weight <=
			    scaled * core->weight[i] + 100 * core->total_weight - 1)
			return (int)i;
	}
	return fallback;
}

static void chash_destroy(void *instance)
{
	struct chash *c = instance;

	free(c->table);
	free(c);
}

const struct em_balancer_ops em_lb_consistent_hash_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.size = sizeof(struct em_balancer_ops),
	.name = "consistent-hash",
	.create = chash_create,
	.pick = chash_pick,
	.destroy = chash_destroy,
};
