/* fakeip.h — the pool of fake service addresses handed out in DNS answers.
 *
 * Allocation is stable: the address is hash("ns/name") mapped into the
 * range, with linear probing past taken addresses; the network address and
 * the last address of the range are never used. A service keeps its
 * addresses while it exists; when it goes away the mapping is remembered
 * (bounded, oldest forgotten first) so a re-created service gets the same
 * addresses back, and remembered addresses are handed to someone else only
 * when the range has nothing free. Two live services never share an
 * address. The mapping (live and remembered) is persisted in a text file,
 * one "ns/name ipv4|- [ipv6]" per line, replaced atomically.
 *
 * Not thread safe: the registry's writer owns the pool. */
#ifndef EM_REGISTRY_FAKEIP_H
#define EM_REGISTRY_FAKEIP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct em_fakeip_config {
	const char *v4_cidr;		/* NULL: EM_FAKE_IPV4_RANGE; prefix 1..30 */
	const char *v6_cidr;		/* NULL or "": no IPv6; prefix 64..126 */
	const char *state_file;		/* NULL: no persistence */
	size_t max_remembered;		/* 0: 4096 */
};

struct em_fakeip_pool;

/* -EINVAL for a bad CIDR. A missing state file is an empty pool; a corrupt
 * one loses only its bad lines (logged). */
int em_fakeip_pool_new(const struct em_fakeip_config *cfg, struct em_fakeip_pool **out);
void em_fakeip_pool_free(struct em_fakeip_pool *pool);

/* A round: begin, acquire every live service, end. Services not acquired in
 * the round become remembered; end() saves the file when anything changed
 * and returns 0 or the -errno of the save. */
void em_fakeip_begin(struct em_fakeip_pool *pool);
int em_fakeip_end(struct em_fakeip_pool *pool);

/* Addresses for key ("ns/name"). Returns 0 when every configured family got
 * an address, -ENOSPC when one is exhausted (the other may still be set:
 * check has4/has6). */
int em_fakeip_acquire(struct em_fakeip_pool *pool, const char *key,
		      bool *has4, struct in_addr *v4, bool *has6, struct in6_addr *v6);

/* Counts, for logs and tests. */
size_t em_fakeip_live_count(const struct em_fakeip_pool *pool);
size_t em_fakeip_remembered_count(const struct em_fakeip_pool *pool);

#endif
