/* dns.h — the packet-level DNS rewriter: turns a queued IPv4/IPv6 UDP query
 * for a cluster name into its answer, in the caller's buffer, or says PASS.
 * Pure functions: no allocation, no locks, no I/O. The NFQUEUE loop that
 * feeds it lives in dns/queue.h. */
#ifndef EM_DNS_DNS_H
#define EM_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/snapshot.h"

/* The A or AAAA records of an ExternalName service's target, as the
 * resolver gave them (dns/external.c fetches and caches them). */
#define EM_DNS_TARGET_MAX 16
struct em_dns_target {
	uint16_t qtype;			/* 1 (A) or 28 (AAAA) */
	uint8_t rcode;			/* the resolver's: 0 NOERROR, 3 NXDOMAIN */
	uint32_t ttl;			/* seconds left, for the answer */
	unsigned n;			/* 0: NODATA or NXDOMAIN */
	uint8_t addr[EM_DNS_TARGET_MAX][16];	/* 4 bytes each for A */
};

/* How the rewriter finds services: the pure seam between the rewriter and
 * the registry. In production the queue thread fills it from the registry's
 * current snapshot (dns/queue.c); tests and fuzz targets fill it with plain
 * data. Both callbacks run on the queue thread, inside the read-side section
 * the queue opened for the batch, and return NULL when not found. */
struct em_dns_catalog {
	void *ctx;
	const char *domain;	/* cluster domain, e.g. "cluster.local", no trailing dot */
	/* ns/name compare case-insensitively; the lengths allow labels
	 * straight out of a packet (not NUL-terminated). */
	const struct em_service *(*find_name)(void *ctx, const char *ns, size_t ns_len,
					      const char *name, size_t name_len);
	/* AF_INET + struct in_addr or AF_INET6 + struct in6_addr. */
	const struct em_service *(*find_addr)(void *ctx, int family, const void *addr);
	/* Optional (NULL: ExternalName address queries pass): the target's
	 * records of type qtype (A or AAAA) if known, else NULL, which makes
	 * the rewriter return EM_DNS_PASS_EXTERNAL. name: lower case, no
	 * trailing dot. Same thread as the others; its own context. */
	const struct em_dns_target *(*find_target)(void *target_ctx, const char *name,
						   uint16_t qtype);
	void *target_ctx;
};

struct em_dns_opts {
	uint32_t ttl;			/* seconds, answers and SOA minimum; default 5 */
	bool nxdomain_unknown;		/* unknown names in the domain: NXDOMAIN (else pass) */
	bool short_names;		/* answer "<svc>.<ns>" and "<svc>.<ns>.svc" too */
	uint16_t edns_size;		/* UDP payload size we advertise; default 1232 */
	bool verify_checksum;		/* pass queries whose UDP checksum is wrong */
};

#define EM_DNS_DEFAULT_TTL 5
#define EM_DNS_DEFAULT_EDNS_SIZE 1232

/* Why a packet was passed, or that it was answered. Index into counters.
 * In parsing order: from EM_DNS_PASS_QCLASS on, the question (and its
 * QTYPE) has been read (em_dns_reason_has_qtype). */
enum em_dns_reason {
	EM_DNS_ANSWERED = 0,		/* rewritten into an answer */
	EM_DNS_PASS_NOT_IP,		/* not IPv4/IPv6, short IP header */
	EM_DNS_PASS_IP_OPTIONS,		/* IPv4 options present */
	EM_DNS_PASS_FRAGMENT,		/* IPv4 MF/offset */
	EM_DNS_PASS_IP_LENGTH,		/* total/payload length != captured bytes */
	EM_DNS_PASS_NOT_UDP,		/* other protocol, IPv6 extension headers */
	EM_DNS_PASS_NOT_PORT53,		/* destination port is not 53 */
	EM_DNS_PASS_UDP_LENGTH,		/* UDP length mismatch */
	EM_DNS_PASS_CHECKSUM,		/* UDP checksum wrong (when verified) */
	EM_DNS_PASS_ADDRESS,		/* multicast/broadcast/unspecified address */
	EM_DNS_PASS_HEADER,		/* short DNS header, QR/TC set, opcode != QUERY, counts */
	EM_DNS_PASS_QDCOUNT,		/* QDCOUNT != 1 */
	EM_DNS_PASS_NAME,		/* bad question name: truncated, compressed, too long */
	EM_DNS_PASS_QCLASS,		/* class not IN, meta types */
	EM_DNS_PASS_ADDITIONAL,		/* additional section not exactly one sane OPT */
	EM_DNS_PASS_EDNS_VERSION,	/* EDNS version != 0 (a resolver answers BADVERS) */
	EM_DNS_PASS_TRAILING,		/* bytes after the last record */
	EM_DNS_PASS_OUTSIDE,		/* name not in the cluster domain (normal traffic) */
	EM_DNS_PASS_UNKNOWN,		/* in the domain, not a known service, pass mode */
	EM_DNS_PASS_TOO_BIG,		/* answer would not fit the response size */
	EM_DNS_PASS_NO_FAKE_IP,		/* A/ANY for a service without a fake IPv4 */
	EM_DNS_PASS_EXTERNAL,		/* ExternalName address query, target's records not
					 * known yet: the queue looks them up, holding it */
	EM_DNS_REASON_MAX,
	/* Not an outcome and never returned by em_dns_answer*(): what the
	 * rewriter's own checks return when the packet is valid so far and
	 * the work carries on. Outside the counters' range on purpose. */
	EM_DNS_VALID,
};

/* Short stable name for logs and metrics ("answered", "ip_options", ...). */
const char *em_dns_reason_name(enum em_dns_reason reason);

static inline bool em_dns_reason_has_qtype(enum em_dns_reason reason)
{
	return reason == EM_DNS_ANSWERED ||
	       (reason >= EM_DNS_PASS_QCLASS && reason < EM_DNS_REASON_MAX);
}

/* Question types as the counters group them: the ones stub resolvers send
 * to a cluster DNS, the rest together, so that labels stay few. */
enum em_dns_qtype {
	EM_DNS_QTYPE_A = 0,
	EM_DNS_QTYPE_AAAA,
	EM_DNS_QTYPE_SRV,
	EM_DNS_QTYPE_PTR,
	EM_DNS_QTYPE_TXT,
	EM_DNS_QTYPE_HTTPS,
	EM_DNS_QTYPE_ANY,
	EM_DNS_QTYPE_OTHER,
	EM_DNS_QTYPE_MAX,
};

/* The group of a QTYPE as on the wire (1 -> EM_DNS_QTYPE_A, ...). */
enum em_dns_qtype em_dns_qtype_of(uint16_t qtype);
/* Its name for logs and metrics: "A", "AAAA", ..., "other". */
const char *em_dns_qtype_name(enum em_dns_qtype group);

/* Try to answer the IPv4/IPv6 packet pkt[0..len) in place. cap is the size
 * of the buffer (>= len); the answer never writes beyond it. Returns
 * EM_DNS_ANSWERED with *out_len set to the answer packet's length (addresses
 * and ports swapped, lengths and checksums fixed), or a PASS reason with the
 * buffer untouched. Whatever the outcome, *qtype is the question's QTYPE
 * once the question was read (em_dns_reason_has_qtype), else 0. */
enum em_dns_reason em_dns_answer(const struct em_dns_opts *opts,
				 const struct em_dns_catalog *cat,
				 uint8_t *pkt, size_t len, size_t cap, size_t *out_len,
				 uint16_t *qtype);

/* The DNS layer alone: msg[0..len) is a UDP payload to port 53; builds the
 * response in place within max_len bytes (max_len <= cap of the buffer) and
 * sets *out_len. Same return convention. */
enum em_dns_reason em_dns_answer_message(const struct em_dns_opts *opts,
					 const struct em_dns_catalog *cat,
					 uint8_t *msg, size_t len, size_t cap, size_t *out_len,
					 uint16_t *qtype);

void em_dns_opts_defaults(struct em_dns_opts *opts);

/* Internet checksum helpers, exposed for tests: one's complement sum of
 * data folded into sum (not inverted). */
uint32_t em_dns_csum_add(uint32_t sum, const void *data, size_t len);
uint16_t em_dns_csum_fold(uint32_t sum);

#endif
