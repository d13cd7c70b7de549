/* fuzz-cidr.c — libFuzzer: bytes -> em_cidr_parse under every flag set.
 * Whatever is accepted must be a prefix the parser agrees with itself on:
 * its printed form parses back to the same prefix, and a strict parse is
 * also accepted by every looser one. Seeds: tests/fuzz/corpus/cidr/. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned flag_sets[] = {
	EM_CIDR_STRICT, EM_CIDR_ZERO_LEN, EM_CIDR_HOST_BITS,
	EM_CIDR_ZERO_LEN | EM_CIDR_HOST_BITS,
};

static bool same(const struct em_cidr *a, const struct em_cidr *b)
{
	return a->family == b->family && a->plen == b->plen &&
	       memcmp(a->addr, b->addr, em_cidr_len(a)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int families[] = { AF_UNSPEC, AF_INET, AF_INET6 };
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		bool strict_ok = false;

		for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
			struct em_cidr c, back;
			char buf[EM_CIDR_STRLEN];
			int ret = em_cidr_parse(text, families[f], flag_sets[i], &c);

			if (i == 0)
				strict_ok = ret == 0;
			else if (strict_ok && ret != 0)
				abort();	/* a looser parse refused a strict one */
			if (ret != 0)
				continue;
			if (c.family != AF_INET && c.family != AF_INET6)
				abort();
			if (c.plen > em_cidr_len(&c) * 8)
				abort();
			em_cidr_format(&c, buf, sizeof(buf));
			if (em_cidr_parse(buf, families[f], flag_sets[i], &back) != 0 ||
			    !same(&c, &back))
				abort();
		}
	}
	free(text);
	return 0;
}
