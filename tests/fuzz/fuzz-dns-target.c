/* fuzz-dns-target.c — libFuzzer target for the parse of a resolver's reply
 * about an ExternalName target (dns/external.c). The first byte picks the
 * asked type; the reply must never yield more records than the array holds
 * nor a TTL above the cap, and a cache fed with it stays consistent. */
#include <stdint.h>
#include <string.h>

#include "dns/external.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct em_dns_target_cache cache;
	struct em_dns_target t;
	uint16_t qtype;

	if (size < 3)
		return 0;
	qtype = data[0] & 1 ? 28 : 1;
	/* the id the reply carries is taken as ours: exercise past the check */
	uint16_t id = (uint16_t)(data[1] << 8 | data[2]);
	if (em_dns_target_parse(data + 1, size - 1, id, "db.example.test", qtype, 5, &t) == 0) {
		if (t.n > EM_DNS_TARGET_MAX || t.ttl > EM_DNS_TARGET_MAX_TTL || t.qtype != qtype)
			__builtin_trap();
		cache.now_ms += 1000;
		em_dns_target_store(&cache, "db.example.test", qtype, &t);
		if (!em_dns_target_find(&cache, "db.example.test", qtype))
			__builtin_trap();
	}
	return 0;
}
