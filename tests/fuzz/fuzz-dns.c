/* fuzz-dns.c — libFuzzer target for the packet-level DNS rewriter: packet in,
 * answer or pass out. A pass must leave the bytes untouched; an answer must
 * parse back (independent parser, tests/unit/test-dns-verify.c) and agree
 * with the query. The first input byte picks the options so that both
 * unknown-name modes, short names and checksum checking are covered.
 * Seed corpus: tests/fuzz/corpus/dns/ (binary copies of tests/data/dns/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

#include "test-dns-verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct em_dns_catalog cat;
	static uint8_t pkt[4400], orig[4400];
	struct em_dns_opts opts;
	struct dv_msg m, scratch;
	size_t out = 0;

	if (!cat.domain)
		dv_catalog_init(&cat);
	if (size < 1 || size - 1 > 4096)
		return 0;
	em_dns_opts_defaults(&opts);
	opts.nxdomain_unknown = data[0] & 1;
	opts.short_names = data[0] & 2;
	opts.verify_checksum = data[0] & 4;
	if (data[0] & 8)
		opts.edns_size = 512;
	size_t len = size - 1;
	/* cap: sometimes exactly the packet, to exercise the size limit */
	size_t cap = data[0] & 16 ? len : sizeof(pkt);
	memcpy(pkt, data + 1, len);
	memcpy(orig, data + 1, len);

	uint16_t qtype = 1;
	enum em_dns_reason r = em_dns_answer(&opts, &cat, pkt, len, cap, &out, &qtype);
	if ((unsigned)r >= EM_DNS_REASON_MAX)
		abort();
	/* the QTYPE is known exactly when the outcome says the question was read */
	if (qtype && !em_dns_reason_has_qtype(r))
		abort();
	if (r != EM_DNS_ANSWERED) {
		if (memcmp(pkt, orig, len) != 0)
			abort();
		return 0;
	}
	if (out > cap || dv_parse(pkt, out, &m) != 0 || dv_check_pair(orig, len, &m, &scratch) != 0 ||
	    m.qtype != qtype)
		abort();
	/* no EDNS: 512 bytes of DNS at most */
	if (m.dns_len > 512 && !(m.nrr && m.rr[m.nrr - 1].type == 41))
		abort();
	return 0;
}
