/* consistent_hash.c — "consistent-hash": session affinity by rendezvous
 * (highest random weight) hashing of a key over the backends. The key is
 * the client IP address (sessionAffinity: ClientIP), or the value of an HTTP
 * header given as "consistent-hash:header=<Name>" when the request carries
 * it (L7 ports; L4 connections fall back to the client IP).
 *
 * Rendezvous hashing needs no ring: each backend scores hash(key, backend)
 * and the best usable score wins. Removing a backend moves only the keys it
 * owned, adding one takes about 1/n of the keys, and that holds across
 * snapshots because the score depends on the backend address, not its index.
 * O(n) per pick, which is cheap for service-sized backend lists. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lb/health.h"
#include "lb/lb.h"

struct chash {
	size_t n;
	const struct em_balancer_backend *backends;
	char *header;			/* NULL: client IP */
	uint64_t *seed;			/* per backend: hash of its address */
	struct em_lb_health health[];
};

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

static void *chash_create(const struct em_balancer_port *port,
			  const struct em_balancer_params *params)
{
	struct chash *c = calloc(1, sizeof(*c) + port->n_backends * sizeof(c->health[0]));
	const char *hdr = NULL;

	if (!c)
		return NULL;
	c->n = port->n_backends;
	c->backends = port->backends;
	if (params && params->args && strncasecmp(params->args, "header=", 7) == 0)
		hdr = params->args + 7;
	if (hdr && *hdr && !(c->header = strdup(hdr)))
		goto err;
	c->seed = calloc(c->n ? c->n : 1, sizeof(*c->seed));
	if (!c->seed)
		goto err;
	for (size_t i = 0; i < c->n; i++) {
		const struct em_balancer_backend *b = &port->backends[i];
		uint64_t h = 0xcbf29ce484222325ULL;

		h = b->family == AF_INET6 ? fnv1a(h, &b->ip.v6, sizeof(b->ip.v6))
					  : fnv1a(h, &b->ip.v4, sizeof(b->ip.v4));
		c->seed[i] = fnv1a(h, &b->port, sizeof(b->port));
	}
	return c;
err:
	free(c->header);
	free(c);
	errno = ENOMEM;
	return NULL;
}

static uint64_t request_key(const struct chash *c, const struct em_balancer_request *req)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (c->header && req->header) {
		size_t len;
		const char *v = req->header(req, c->header, &len);

		if (v)
			return fnv1a(h, v, len);
	}
	if (req->client && req->client->sa_family == AF_INET)
		return fnv1a(h, &((const struct sockaddr_in *)req->client)->sin_addr,
			     sizeof(struct in_addr));
	if (req->client && req->client->sa_family == AF_INET6)
		return fnv1a(h, &((const struct sockaddr_in6 *)req->client)->sin6_addr,
			     sizeof(struct in6_addr));
	return h;
}

static int chash_pick(void *instance, const struct em_balancer_request *req)
{
	struct chash *c = instance;
	uint64_t key = request_key(c, req), now = em_lb_now_ns();
	uint64_t best_score = 0, any_score = 0;
	int best = -1, any = -1;

	for (size_t i = 0; i < c->n; i++) {
		uint64_t score = mix(key ^ c->seed[i]);

		if ((int)i == req->avoid)
			continue;
		if (any < 0 || score > any_score) {
			any = (int)i;
			any_score = score;
		}
		if (em_lb_health_usable(&c->health[i], now) &&
		    (best < 0 || score > best_score)) {
			best = (int)i;
			best_score = score;
		}
	}
	return best >= 0 ? best : any;
}

static void chash_release(void *instance, int index, const struct em_balancer_result *res)
{
	struct chash *c = instance;
	enum em_balancer_outcome outcome = res->outcome;

	if (index >= 0 && (size_t)index < c->n)
		em_lb_health_report(&c->health[index], outcome);
}

static void chash_destroy(void *instance)
{
	struct chash *c = instance;

	free(c->seed);
	free(c->header);
	free(c);
}

const struct em_balancer_ops em_lb_consistent_hash_ops = {
	.abi_version = EM_BALANCER_ABI_VERSION,
	.name = "consistent-hash",
	.size = sizeof(struct em_balancer_ops),
	.create = chash_create,
	.pick = chash_pick,
	.release = chash_release,
	.destroy = chash_destroy,
};
