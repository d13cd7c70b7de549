/* siphash.h — SipHash-2-4 with a per-process random key, for hash tables
 * keyed by names that tenants choose (namespaces, service names): without
 * the key nobody can compute which names collide, so nobody can turn a
 * table into a list by choosing names. */
#ifndef EM_UTIL_SIPHASH_H
#define EM_UTIL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of data under a 16-byte key (Aumasson & Bernstein, 2012). */
uint64_t em_siphash(const uint8_t key[16], const void *data, size_t len);

/* The process's key: 16 bytes from getrandom() on first use (thread-safe);
 * never changes afterwards except through em_hash_seed_set. */
const uint8_t *em_hash_seed(void);
/* Tests only: fix the key (before any table is built). */
void em_hash_seed_set(const uint8_t key[16]);

/* em_siphash under the process key. */
static inline uint64_t em_hash_seeded(const void *data, size_t len)
{
	return em_siphash(em_hash_seed(), data, len);
}

#endif
