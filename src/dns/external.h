/* external.h — internal to src/dns: what ExternalName answers need from
 * the resolver. Pure parts (the query for a target, the parse of the
 * resolver's reply, a small TTL cache) apart from the queue's sockets.
 *
 * The queue (queue.c) holds a client's query whose target is not cached,
 * sends em_dns_target_query() to the resolver the client asked, with the
 * bypass mark, and when the reply parses (em_dns_target_parse) stores it
 * in the cache and answers the held query again; the rewriter then finds
 * the records through em_dns_target_find(). */
#ifndef EM_DNS_EXTERNAL_H
#define EM_DNS_EXTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

#define EM_DNS_TARGET_CACHE 64
#define EM_DNS_TARGET_MAX_TTL 3600	/* seconds a target's records are kept at most */

/* A query (RD set, no EDNS) for name/qtype with the given id into buf;
 * returns its length, or -EINVAL (a bad name) / -ENOSPC. */
int em_dns_target_query(uint8_t *buf, size_t cap, uint16_t id, const char *name,
			uint16_t qtype);

/* The resolver's reply to that query: checks id, QR, the question (name
 * case-insensitively, qtype, class IN), then collects the answer's records
 * of type qtype (the CNAME chain before them is skipped: they are the
 * target's addresses whatever their owner) and the smallest TTL. 0 with
 * *out filled for NOERROR and NXDOMAIN (n = 0 when there are none: the
 * TTL is then neg_ttl); -EAGAIN for a truncated reply or another rcode
 * (SERVFAIL, REFUSED: the client's query should pass); -EINVAL for
 * anything that is not a reply to this query (ignore it). */
int em_dns_target_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name,
			uint16_t qtype, uint32_t neg_ttl, struct em_dns_target *out);

/* Per queue thread: recent targets, and the last miss of the rewriter. */
struct em_dns_target_cache {
	struct em_dns_target_entry {
		char name[256];
		uint16_t qtype;
		uint64_t expires_ms;	/* 0: free */
		struct em_dns_target t;
	} e[EM_DNS_TARGET_CACHE];
	uint64_t now_ms;		/* set before each batch */
	char miss_name[256];		/* the last name em_dns_target_find missed */
	uint16_t miss_qtype;
};

/* The catalog callback: a live entry with t.ttl set to the seconds left,
 * or NULL (recorded as the miss). ctx: the cache. */
const struct em_dns_target *em_dns_target_find(void *ctx, const char *name, uint16_t qtype);
/* Keeps t for its TTL (capped) from now_ms; replaces an expired entry or
 * the one expiring first. */
void em_dns_target_store(struct em_dns_target_cache *c, const char *name, uint16_t qtype,
			 const struct em_dns_target *t);

#endif
