/* packet.c — the IP and UDP layers of the rewriter: validate the packet the
 * queue handed us, let message.c answer its DNS payload, then turn the packet
 * around (addresses and ports swapped) with fresh lengths and checksums.
 *
 * Anything we would have to think hard about (IPv4 options, fragments, IPv6
 * extension headers, multicast) is passed: the real resolver handles it. */
#include "dns/dns.h"

#include <string.h>

#define IP4_HDR 20
#define IP6_HDR 40
#define UDP_HDR 8
#define PROTO_UDP 17
#define DNS_PORT 53

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

uint32_t em_dns_csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t s = sum;

	for (; len >= 2; p += 2, len -= 2)
		s += (uint32_t)(p[0] << 8 | p[1]);
	if (len)
		s += (uint32_t)p[0] << 8;
	/* end-around carry at 32 bits keeps the value modulo 0xffff */
	while (s >> 32)
		s = (s & 0xffffffff) + (s >> 32);
	return (uint32_t)s;
}

uint16_t em_dns_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* UDP checksum over the pseudo header and the datagram whose checksum field
 * is zero or holds the checksum being verified. addr: src then dst. */
static uint16_t udp_csum(const uint8_t *addrs, size_t addr_len, const uint8_t *udp, size_t udp_len)
{
	uint8_t tail[4] = { 0, PROTO_UDP, (uint8_t)(udp_len >> 8), (uint8_t)udp_len };
	uint32_t s = em_dns_csum_add(0, addrs, addr_len * 2);

	s = em_dns_csum_add(s, tail, sizeof(tail));	/* zero, protocol, length */
	s = em_dns_csum_add(s, udp, udp_len);
	return (uint16_t)~em_dns_csum_fold(s);
}

static bool v4_bad_addr(const uint8_t *a)
{
	uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
	return v == 0 || v == 0xffffffff || (a[0] & 0xf0) == 0xe0;
}

static bool v6_bad_addr(const uint8_t *a)
{
	static const uint8_t zero[16];
	return a[0] == 0xff || memcmp(a, zero, 16) == 0;
}

static void swap(uint8_t *a, uint8_t *b, size_t n)
{
	uint8_t t[16];
	memcpy(t, a, n);
	memcpy(a, b, n);
	memcpy(b, t, n);
}

/* Validates the UDP header at udp (udp_len bytes per the IP layer) and the
 * checksum; addrs points at src+dst of addr_len each. EM_DNS_VALID or why
 * to pass. */
static enum em_dns_reason check_udp(const struct em_dns_opts *opts, const uint8_t *addrs,
				    size_t addr_len, const uint8_t *udp, size_t udp_len)
{
	if (udp_len < UDP_HDR || get16(udp + 4) != udp_len)
		return EM_DNS_PASS_UDP_LENGTH;
	if (get16(udp + 2) != DNS_PORT)
		return EM_DNS_PASS_NOT_PORT53;
	uint16_t c = get16(udp + 6);
	if (c == 0) {
		/* IPv4 allows "no checksum"; IPv6 does not (RFC 8200 8.1). */
		return addr_len == 16 ? EM_DNS_PASS_CHECKSUM : EM_DNS_VALID;
	}
	/* A correct checksum makes the sum over everything 0xffff; an ~0 of
	 * the data is the result. udp_csum already inverts, so 0 means good. */
	if (opts->verify_checksum && udp_csum(addrs, addr_len, udp, udp_len) != 0)
		return EM_DNS_PASS_CHECKSUM;
	return EM_DNS_VALID;
}

static void finish_udp(const uint8_t *addrs, size_t addr_len, uint8_t *udp, size_t udp_len)
{
	swap(udp, udp + 2, 2);
	put16(udp + 4, (uint16_t)udp_len);
	put16(udp + 6, 0);
	uint16_t c = udp_csum(addrs, addr_len, udp, udp_len);
	put16(udp + 6, c == 0 ? 0xffff : c);
}

static enum em_dns_reason answer4(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
				  uint8_t *pkt, size_t len, size_t cap, size_t *out_len,
				  uint16_t *qtype)
{
	if (len < IP4_HDR || (pkt[0] & 0x0f) < 5)
		return EM_DNS_PASS_NOT_IP;
	if ((pkt[0] & 0x0f) != 5)
		return EM_DNS_PASS_IP_OPTIONS;
	if (get16(pkt + 2) != len)
		return EM_DNS_PASS_IP_LENGTH;
	if (get16(pkt + 6) & 0x3fff)		/* MF or a fragment offset */
		return EM_DNS_PASS_FRAGMENT;
	if (pkt[9] != PROTO_UDP)
		return EM_DNS_PASS_NOT_UDP;
	if (v4_bad_addr(pkt + 12) || v4_bad_addr(pkt + 16))
		return EM_DNS_PASS_ADDRESS;

	uint8_t *udp = pkt + IP4_HDR;
	enum em_dns_reason r = check_udp(opts, pkt + 12, 4, udp, len - IP4_HDR);
	if (r != EM_DNS_VALID)
		return r;
	size_t dns_len;
	size_t room = cap - IP4_HDR - UDP_HDR;
	if (room > 0xffff - IP4_HDR - UDP_HDR)
		room = 0xffff - IP4_HDR - UDP_HDR;
	r = em_dns_answer_message(opts, cat, udp + UDP_HDR, len - IP4_HDR - UDP_HDR, room, &dns_len,
				  qtype);
	if (r != EM_DNS_ANSWERED)
		return r;

	size_t total = IP4_HDR + UDP_HDR + dns_len;
	put16(pkt + 2, (uint16_t)total);
	put16(pkt + 6, 0x4000);			/* DF, no fragments */
	pkt[8] = 64;
	swap(pkt + 12, pkt + 16, 4);
	put16(pkt + 10, 0);
	put16(pkt + 10, (uint16_t)~em_dns_csum_fold(em_dns_csum_add(0, pkt, IP4_HDR)));
	finish_udp(pkt + 12, 4, udp, UDP_HDR + dns_len);
	*out_len = total;
	return EM_DNS_ANSWERED;
}

static enum em_dns_reason answer6(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
				  uint8_t *pkt, size_t len, size_t cap, size_t *out_len,
				  uint16_t *qtype)
{
	if (len < IP6_HDR)
		return EM_DNS_PASS_NOT_IP;
	if (get16(pkt + 4) != len - IP6_HDR)	/* 0 = jumbogram, never DNS */
		return EM_DNS_PASS_IP_LENGTH;
	if (pkt[6] != PROTO_UDP)		/* extension headers included */
		return EM_DNS_PASS_NOT_UDP;
	if (v6_bad_addr(pkt + 8) || v6_bad_addr(pkt + 24))
		return EM_DNS_PASS_ADDRESS;

	uint8_t *udp = pkt + IP6_HDR;
	enum em_dns_reason r = check_udp(opts, pkt + 8, 16, udp, len - IP6_HDR);
	if (r != EM_DNS_VALID)
		return r;
	size_t dns_len;
	size_t room = cap - IP6_HDR - UDP_HDR;
	if (room > 0xffff - UDP_HDR)
		room = 0xffff - UDP_HDR;
	r = em_dns_answer_message(opts, cat, udp + UDP_HDR, len - IP6_HDR - UDP_HDR, room, &dns_len,
				  qtype);
	if (r != EM_DNS_ANSWERED)
		return r;

	put16(pkt + 4, (uint16_t)(UDP_HDR + dns_len));
	pkt[1] &= 0xf0;				/* keep traffic class, clear flow label */
	pkt[2] = pkt[3] = 0;
	pkt[7] = 64;
	swap(pkt + 8, pkt + 24, 16);
	finish_udp(pkt + 8, 16, udp, UDP_HDR + dns_len);
	*out_len = IP6_HDR + UDP_HDR + dns_len;
	return EM_DNS_ANSWERED;
}

enum em_dns_reason em_dns_answer(const struct em_dns_opts *opts, const struct em_dns_catalog *cat,
				 uint8_t *pkt, size_t len, size_t cap, size_t *out_len,
				 uint16_t *qtype)
{
	*qtype = 0;
	if (len == 0 || cap < len)
		return EM_DNS_PASS_NOT_IP;
	switch (pkt[0] >> 4) {
	case 4:
		return answer4(opts, cat, pkt, len, cap, out_len, qtype);
	case 6:
		return answer6(opts, cat, pkt, len, cap, out_len, qtype);
	default:
		return EM_DNS_PASS_NOT_IP;
	}
}
