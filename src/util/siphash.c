/* siphash.c — SipHash-2-4 and the process key; see siphash.h. Written from
 * the paper's description: 2 compression rounds per 8-byte word, 4
 * finalisation rounds, length in the top byte of the last word. */
#include "util/siphash.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define SIPROUND(v0, v1, v2, v3) do { \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)

uint64_t em_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data, *end = in + (len & ~(size_t)7);
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m, b = (uint64_t)len << 56;

	for (; in != end; in += 8) {
		m = load_le64(in);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint8_t seed[16];
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
	size_t got = 0;

	while (got < sizeof(seed)) {
		ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof(seed)) {
		/* No getrandom (seccomp, old kernel): weaker, still per process. */
		uint64_t ns = em_clock_ns(), x;

		x = (ns % 1000000000ULL) ^ ((ns / 1000000000ULL) << 30) ^ ((uint64_t)getpid() << 48) ^
		    (uint64_t)(uintptr_t)&ns;
		memcpy(seed, &x, 8);
		x = ROTL(x, 29) * 0x9e3779b97f4a7c15ULL;
		memcpy(seed + 8, &x, 8);
	}
}

const uint8_t *em_hash_seed(void)
{
	pthread_once(&seed_once, seed_init);
	return seed;
}

void em_hash_seed_set(const uint8_t key[16])
{
	pthread_once(&seed_once, seed_init);
	memcpy(seed, key, sizeof(seed));
}
