/* strmap.h — internal to the registry: a chained hash map with string keys
 * (the key is copied), used by the object store and the fake IP pool. */
#ifndef EM_REGISTRY_STRMAP_H
#define EM_REGISTRY_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct em_strmap_entry {
	struct em_strmap_entry *next;
	uint64_t hash;
	void *val;
	char key[];
};

struct em_strmap {
	struct em_strmap_entry **buckets;
	size_t n_buckets;		/* power of two, or 0 before the first insert */
	size_t count;
};

/* FNV-1a: the same in every process, so NOT what the map uses for its
 * buckets (that is keyed SipHash); for stable allocation only. */
uint64_t em_strmap_hash(const char *s, size_t len);
void em_strmap_init(struct em_strmap *m);
/* Frees the entries (not the values: call free_val for each, may be NULL). */
void em_strmap_clear(struct em_strmap *m, void (*free_val)(void *));
struct em_strmap_entry *em_strmap_get(const struct em_strmap *m, const char *key);
/* Returns the entry for key, creating it with val NULL if absent; NULL on ENOMEM. */
struct em_strmap_entry *em_strmap_put(struct em_strmap *m, const char *key);
/* Removes and returns the value (NULL if absent). */
void *em_strmap_del(struct em_strmap *m, const char *key);

/* Iteration: for (e = em_strmap_next(m, NULL, &b); e; e = em_strmap_next(m, e, &b))
 * Deleting the current entry during iteration is not allowed. */
struct em_strmap_entry *em_strmap_next(const struct em_strmap *m,
				       struct em_strmap_entry *cur, size_t *bucket);

#endif
