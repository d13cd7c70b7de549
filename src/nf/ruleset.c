/* ruleset.c — the nftables side of the capture: the messages of one
 * nfnetlink batch (tables, chains, rules) built with libnftnl into a caller
 * buffer, and the exchange with the kernel.
 *
 * Each rule mirrors what `nft` itself emits for the rule written in
 * nft/edgemesh.nft (compare with `nft --debug=netlink -f nft/edgemesh.nft`),
 * so `nft list ruleset` prints the daemon's table in the same words. */
#include "nf/nf-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_NFQUEUE.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* One batch is far below this: ~20 messages of < 1 KiB. */
#define BATCH_LIMIT (64 * 1024)

#define PRIO_MANGLE (-150)	/* NF_IP_PRI_MANGLE: before dstnat (-100) */
#define PRIO_RAW (-300)		/* NF_IP_PRI_RAW: before conntrack (-200) */

int em_nf_batch_init(struct em_nf_batch *b, uint32_t seq)
{
	memset(b, 0, sizeof(*b));
	/* mnl batches let the last message overrun the limit by one page;
	 * twice the limit leaves room for any single message. */
	b->size = 2 * BATCH_LIMIT;
	/* Zeroed: attribute padding is left as found, and goes to the kernel. */
	b->buf = calloc(1, b->size);
	if (!b->buf)
		return -ENOMEM;
	b->b = mnl_nlmsg_batch_start(b->buf, BATCH_LIMIT);
	if (!b->b) {
		free(b->buf);
		b->buf = NULL;
		return -ENOMEM;
	}
	b->seq_begin = seq;
	b->seq = seq;
	nftnl_batch_begin(mnl_nlmsg_batch_current(b->b), b->seq++);
	mnl_nlmsg_batch_next(b->b);
	return 0;
}

void em_nf_batch_fini(struct em_nf_batch *b)
{
	if (b->b)
		mnl_nlmsg_batch_stop(b->b);
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

const void *em_nf_batch_data(const struct em_nf_batch *b, size_t *len)
{
	*len = mnl_nlmsg_batch_size(b->b);
	return mnl_nlmsg_batch_head(b->b);
}

/* Start a message with NLM_F_ACK so that the kernel answers each one and
 * the sender knows when the batch is through. NULL when the batch is full
 * or already failed. */
static struct nlmsghdr *msg_start(struct em_nf_batch *b, uint16_t type,
				  uint16_t family, uint16_t flags, const char *desc)
{
	if (b->err)
		return NULL;
	if (b->ended || b->n_msgs >= EM_NF_BATCH_MAX_MSGS) {
		b->err = -E2BIG;
		return NULL;
	}
	b->desc[b->n_msgs] = desc;
	return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b->b), type, family,
				     flags | NLM_F_ACK, b->seq);
}

static void msg_end(struct em_nf_batch *b)
{
	b->n_msgs++;
	b->seq++;
	if (!mnl_nlmsg_batch_next(b->b))
		b->err = -E2BIG;
}

static void batch_end(struct em_nf_batch *b)
{
	if (b->err)
		return;
	nftnl_batch_end(mnl_nlmsg_batch_current(b->b), b->seq++);
	if (!mnl_nlmsg_batch_next(b->b))
		b->err = -E2BIG;
	b->ended = true;
}

/* ---- tables and chains ---- */

static void put_table(struct em_nf_batch *b, uint16_t type, uint16_t family,
		      const char *name, uint16_t flags, const char *desc)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	if (!t) {
		b->err = b->err ? b->err : -ENOMEM;
		return;
	}
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nlh = msg_start(b, type, family, flags, desc);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		msg_end(b);
	}
	nftnl_table_free(t);
}

/* A table that exists (maybe stale from a crash) is emptied by the delete;
 * one that does not is created by the first add and deleted again, all in
 * the same transaction, so there is no moment without rules and no error. */
static void destroy_table(struct em_nf_batch *b, uint16_t family, const char *name)
{
	put_table(b, NFT_MSG_NEWTABLE, family, name, NLM_F_CREATE, "add table (before delete)");
	put_table(b, NFT_MSG_DELTABLE, family, name, 0, "delete table");
}

static void put_chain(struct em_nf_batch *b, uint16_t family, const char *table,
		      const char *name, const char *type, uint32_t hook,
		      int32_t prio, const char *desc)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c) {
		b->err = b->err ? b->err : -ENOMEM;
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = msg_start(b, NFT_MSG_NEWCHAIN, family, NLM_F_CREATE, desc);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		msg_end(b);
	}
	nftnl_chain_free(c);
}

/* ---- rules: one expression per helper; errors are sticky in rb ---- */

struct rb {
	struct nftnl_rule *r;
	int err;
};

static struct nftnl_expr *expr(struct rb *rb, const char *name)
{
	struct nftnl_expr *e = nftnl_expr_alloc(name);

	if (!e && !rb->err)
		rb->err = -ENOMEM;
	return e;
}

static void push(struct rb *rb, struct nftnl_expr *e)
{
	if (e && rb->r)
		nftnl_rule_add_expr(rb->r, e);	/* the rule owns it now */
	else if (e)
		nftnl_expr_free(e);
}

static void meta_load(struct rb *rb, uint32_t key)
{
	struct nftnl_expr *e = expr(rb, "meta");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	}
	push(rb, e);
}

static void meta_set(struct rb *rb, uint32_t key)
{
	struct nftnl_expr *e = expr(rb, "meta");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
	}
	push(rb, e);
}

static void cmp(struct rb *rb, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = expr(rb, "cmp");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	}
	push(rb, e);
}

static void cmp_u8(struct rb *rb, uint8_t v)
{
	cmp(rb, NFT_CMP_EQ, &v, sizeof(v));
}

static void payload(struct rb *rb, uint32_t base, uint32_t off, uint32_t len)
{
	struct nftnl_expr *e = expr(rb, "payload");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	}
	push(rb, e);
}

static void bitwise_and(struct rb *rb, const uint8_t *mask, uint32_t len)
{
	static const uint8_t zero[16];
	struct nftnl_expr *e = expr(rb, "bitwise");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
		nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
		nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
	}
	push(rb, e);
}

static void imm_data(struct rb *rb, uint32_t reg, const void *data, uint32_t len)
{
	struct nftnl_expr *e = expr(rb, "immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg);
		nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	}
	push(rb, e);
}

static void verdict(struct rb *rb, int v)
{
	struct nftnl_expr *e = expr(rb, "immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)v);
	}
	push(rb, e);
}

static void counter(struct rb *rb)
{
	push(rb, expr(rb, "counter"));
}

/* meta mark == m */
static void match_mark(struct rb *rb, uint32_t m)
{
	meta_load(rb, NFT_META_MARK);
	cmp(rb, NFT_CMP_EQ, &m, sizeof(m));
}

static void set_mark(struct rb *rb, uint32_t m)
{
	imm_data(rb, NFT_REG_1, &m, sizeof(m));
	meta_set(rb, NFT_META_MARK);
}

/* meta l4proto tcp, meta nfproto ipvX, ipX daddr <prefix> */
static void match_tcp_to(struct rb *rb, const struct em_cidr *c)
{
	uint8_t mask[16];
	uint32_t bytes;

	meta_load(rb, NFT_META_L4PROTO);
	cmp_u8(rb, IPPROTO_TCP);
	meta_load(rb, NFT_META_NFPROTO);
	cmp_u8(rb, c->family == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	/* Like nft, so that `nft list` prints `ip daddr X/len`: a byte-aligned
	 * prefix loads just its bytes; any other loads the whole address and
	 * masks it. */
	bytes = c->plen % 8 ? (uint32_t)em_cidr_len(c) : c->plen / 8u;
	payload(rb, NFT_PAYLOAD_NETWORK_HEADER, c->family == AF_INET6 ? 24 : 16, bytes);
	if (c->plen % 8) {
		em_cidr_mask(c, mask);
		bitwise_and(rb, mask, bytes);
	}
	cmp(rb, NFT_CMP_EQ, c->addr, bytes);
}

/* udp dport 53, and (from_lo_skip) not arriving on lo */
static void match_dns(struct rb *rb, bool skip_lo)
{
	uint16_t port = htons(53);

	if (skip_lo) {
		char lo[IFNAMSIZ] = "lo";

		meta_load(rb, NFT_META_IIFNAME);
		cmp(rb, NFT_CMP_NEQ, lo, sizeof(lo));
	}
	meta_load(rb, NFT_META_L4PROTO);
	cmp_u8(rb, IPPROTO_UDP);
	payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
	cmp(rb, NFT_CMP_EQ, &port, sizeof(port));
}

static uint16_t queue_flags_native(const struct em_nf_plan *p)
{
	uint16_t f = NFT_QUEUE_FLAG_BYPASS;

	if (p->queues > 1 && p->cpu_fanout)
		f |= NFT_QUEUE_FLAG_CPU_FANOUT;
	return f;
}

/* `queue num N-M bypass [fanout]`, natively or as the xt NFQUEUE target
 * (revision 3: the only one with both bypass and cpu fanout). */
static void queue(struct rb *rb, const struct em_nf_plan *p, enum em_nf_queue_variant v)
{
	struct nftnl_expr *e;

	if (v == EM_NF_QUEUE_NATIVE) {
		e = expr(rb, "queue");
		if (e) {
			nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_NUM, p->queue_num);
			nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_TOTAL, p->queues);
			nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_FLAGS, queue_flags_native(p));
		}
		push(rb, e);
		return;
	}

	/* nft_compat insists on the xt-aligned size of the target's info;
	 * libnftnl takes ownership of the buffer. */
	struct xt_NFQ_info_v3 *info = calloc(1, XT_ALIGN(sizeof(*info)));

	if (!info) {
		rb->err = rb->err ? rb->err : -ENOMEM;
		return;
	}
	info->queuenum = p->queue_num;
	info->queues_total = p->queues;
	info->flags = NFQ_FLAG_BYPASS;
	if (p->queues > 1 && p->cpu_fanout)
		info->flags |= NFQ_FLAG_CPU_FANOUT;
	e = expr(rb, "target");
	if (!e) {
		free(info);
		return;
	}
	nftnl_expr_set_str(e, NFTNL_EXPR_TG_NAME, "NFQUEUE");
	nftnl_expr_set_u32(e, NFTNL_EXPR_TG_REV, 3);
	nftnl_expr_set(e, NFTNL_EXPR_TG_INFO, info, XT_ALIGN(sizeof(*info)));
	push(rb, e);
	/* What iptables-nft sends with `-p udp`: the compat layer hands the
	 * protocol to the target's checkentry. */
	if (rb->r) {
		nftnl_rule_set_u32(rb->r, NFTNL_RULE_COMPAT_PROTO, IPPROTO_UDP);
		nftnl_rule_set_u32(rb->r, NFTNL_RULE_COMPAT_FLAGS, 0);
	}
}

static struct rb rule_new(uint16_t family,
			  const char *table, const char *chain)
{
	struct rb rb = { .r = nftnl_rule_alloc(), .err = 0 };

	if (!rb.r) {
		rb.err = -ENOMEM;
		return rb;
	}
	nftnl_rule_set_u32(rb.r, NFTNL_RULE_FAMILY, family);
	nftnl_rule_set_str(rb.r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(rb.r, NFTNL_RULE_CHAIN, chain);
	return rb;
}

static void rule_put(struct em_nf_batch *b, struct rb *rb, uint16_t family,
		     const char *desc)
{
	struct nlmsghdr *nlh;

	if (rb->err && !b->err)
		b->err = rb->err;
	if (!rb->r)
		return;
	nlh = msg_start(b, NFT_MSG_NEWRULE, family, NLM_F_CREATE | NLM_F_APPEND, desc);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, rb->r);
		msg_end(b);
	}
	nftnl_rule_free(rb->r);
	rb->r = NULL;
}

/* ---- UDP service ports: sets of fake IP . port (issue 15) ---- */

/* nft's concatenated key types: (type << 6) | subtype, with ipv4_addr = 7,
 * ipv6_addr = 8, inet_service = 13; each field padded to 4 bytes. */
#define UDP_SET_KEY4 ((7u << 6) | 13u)
#define UDP_SET_KEY6 ((8u << 6) | 13u)
#define UDP_SET_ID4 1
#define UDP_SET_ID6 2

static const char *udp_set_name(int family)
{
	return family == AF_INET6 ? EM_NF_UDP_SET6 : EM_NF_UDP_SET4;
}

static void put_udp_set(struct em_nf_batch *b, int family)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;
	bool v6 = family == AF_INET6;

	if (!s) {
		b->err = b->err ? b->err : -ENOMEM;
		return;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, EM_NF_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, udp_set_name(family));
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, v6 ? UDP_SET_KEY6 : UDP_SET_KEY4);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, v6 ? 20 : 8);
	nftnl_set_set_u32(s, NFTNL_SET_ID, v6 ? UDP_SET_ID6 : UDP_SET_ID4);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, 0);
	nlh = msg_start(b, NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE,
			v6 ? "udp6 set" : "udp4 set");
	if (nlh) {
		nftnl_set_nlmsg_build_payload(nlh, s);
		msg_end(b);
	}
	nftnl_set_free(s);
}

/* meta l4proto udp, meta nfproto ipvX, ipX daddr . udp dport @udpX */
static void match_udp_set(struct rb *rb, int family)
{
	bool v6 = family == AF_INET6;
	struct nftnl_expr *e;

	meta_load(rb, NFT_META_L4PROTO);
	cmp_u8(rb, IPPROTO_UDP);
	meta_load(rb, NFT_META_NFPROTO);
	cmp_u8(rb, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	payload(rb, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16, v6 ? 16 : 4);
	/* the port goes into the 32-bit register right after the address */
	e = expr(rb, "payload");
	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 2);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 2);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, v6 ? NFT_REG_2 : NFT_REG32_01);
	}
	push(rb, e);
	e = expr(rb, "lookup");
	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, udp_set_name(family));
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, v6 ? UDP_SET_ID6 : UDP_SET_ID4);
	}
	push(rb, e);
}

/* The tail of a capture rule, TCP or UDP: count, TPROXY to the listener
 * (address and port through registers), set the capture mark, accept. */
static void tproxy_mark_accept(struct rb *rb, const struct em_nf_plan *p, bool v6)
{
	uint16_t port = htons(p->tproxy_port);
	struct nftnl_expr *e;

	counter(rb);
	imm_data(rb, NFT_REG_1, v6 ? (const void *)p->tproxy6 : (const void *)p->tproxy4,
		 v6 ? 16 : 4);
	imm_data(rb, NFT_REG_2, &port, sizeof(port));
	e = expr(rb, "tproxy");
	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_FAMILY, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
		nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_ADDR, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_PORT, NFT_REG_2);
	}
	push(rb, e);
	set_mark(rb, p->capture_mark);
	verdict(rb, NF_ACCEPT);
}

static void rule_udp_tproxy(struct em_nf_batch *b, const struct em_nf_plan *p, int family)
{
	struct rb rb = rule_new(NFPROTO_INET, EM_NF_TABLE, "prerouting");
	bool v6 = family == AF_INET6;

	match_udp_set(&rb, family);
	tproxy_mark_accept(&rb, p, v6);
	rule_put(b, &rb, NFPROTO_INET, "udp tproxy rule (prerouting)");
}

static void rule_udp_mark_output(struct em_nf_batch *b, const struct em_nf_plan *p, int family)
{
	struct rb rb = rule_new(NFPROTO_INET, EM_NF_TABLE, "output");

	match_udp_set(&rb, family);
	counter(&rb);
	set_mark(&rb, p->capture_mark);
	rule_put(b, &rb, NFPROTO_INET, "udp mark rule (output)");
}

/* The families of our fake ranges: UDP is captured for fake IPs only. */
static bool plan_fake_family(const struct em_nf_plan *p, int family)
{
	for (unsigned i = 0; i < p->n_fake; i++)
		if (p->capture[i].family == family)
			return true;
	return false;
}

#define UDP_ELEMS_PER_MSG 256

static void put_udp_elems(struct em_nf_batch *b, int family, const struct em_nf_udp_port *ports,
			  size_t n, uint16_t type, const char *desc)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;

	if (!s) {
		b->err = b->err ? b->err : -ENOMEM;
		return;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, EM_NF_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, udp_set_name(family));
	for (size_t i = 0; i < n; i++) {
		uint8_t key[20] = { 0 };
		size_t al = family == AF_INET6 ? 16 : 4;
		uint16_t port = htons(ports[i].port);
		struct nftnl_set_elem *e = nftnl_set_elem_alloc();

		if (!e) {
			b->err = b->err ? b->err : -ENOMEM;
			break;
		}
		memcpy(key, ports[i].addr, al);
		memcpy(key + al, &port, 2);
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, (uint32_t)al + 4);
		nftnl_set_elem_add(s, e);
	}
	nlh = msg_start(b, type, NFPROTO_INET, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0,
			desc);
	if (nlh) {
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		msg_end(b);
	}
	nftnl_set_free(s);
}

int em_nf_ruleset_build_udp_sync(struct em_nf_batch *b, const struct em_nf_plan *p,
				 const struct em_nf_udp_port *ports, size_t n)
{
	static const int families[] = { AF_INET, AF_INET6 };

	for (size_t f = 0; f < 2; f++) {
		int family = families[f];
		struct em_nf_udp_port chunk[UDP_ELEMS_PER_MSG];
		size_t k = 0;

		if (!plan_fake_family(p, family))
			continue;
		/* DELSETELEM without elements flushes the set. */
		put_udp_elems(b, family, NULL, 0, NFT_MSG_DELSETELEM, "udp set flush");
		for (size_t i = 0; i < n; i++) {
			if (ports[i].family != family)
				continue;
			chunk[k++] = ports[i];
			if (k == UDP_ELEMS_PER_MSG) {
				put_udp_elems(b, family, chunk, k, NFT_MSG_NEWSETELEM, "udp set elements");
				k = 0;
			}
		}
		if (k)
			put_udp_elems(b, family, chunk, k, NFT_MSG_NEWSETELEM, "udp set elements");
	}
	batch_end(b);
	return b->err;
}

/* ---- the ruleset ---- */

static void rule_return_on_bypass(struct em_nf_batch *b, const struct em_nf_plan *p,
				  uint16_t family, const char *chain)
{
	struct rb rb = rule_new(family, EM_NF_TABLE, chain);

	match_mark(&rb, p->bypass_mark);
	verdict(&rb, NFT_RETURN);
	rule_put(b, &rb, family, "bypass-mark return rule");
}

static void rule_tproxy(struct em_nf_batch *b, const struct em_nf_plan *p,
			const struct em_cidr *c)
{
	struct rb rb = rule_new(NFPROTO_INET, EM_NF_TABLE, "prerouting");
	bool v6 = c->family == AF_INET6;

	match_tcp_to(&rb, c);
	tproxy_mark_accept(&rb, p, v6);
	rule_put(b, &rb, NFPROTO_INET, "tproxy rule (prerouting)");
}

static void rule_mark_output(struct em_nf_batch *b, const struct em_nf_plan *p,
			     const struct em_cidr *c)
{
	struct rb rb = rule_new(NFPROTO_INET, EM_NF_TABLE, "output");

	match_tcp_to(&rb, c);
	counter(&rb);
	set_mark(&rb, p->capture_mark);
	rule_put(b, &rb, NFPROTO_INET, "mark rule (output)");
}

/* TCP to an extra capture range (a ClusterIP range) is not tracked:
 * kube-proxy DNATs that range too, and its dstnat rule would rewrite the
 * destination of the very SYN that TPROXY handed to our listener (the
 * accepted socket then names the pod, not the service) or, for the host's
 * own connections, send them away from lo. Without a conntrack entry no NAT
 * applies; TPROXY and the policy route do not need one. */
static void rule_notrack(struct em_nf_batch *b, const struct em_nf_plan *p, const char *chain,
			 const struct em_cidr *c)
{
	struct rb rb = rule_new(NFPROTO_INET, EM_NF_TABLE, chain);

	match_tcp_to(&rb, c);
	push(&rb, expr(&rb, "notrack"));
	rule_put(b, &rb, NFPROTO_INET, "notrack rule");
}

static void rule_queue(struct em_nf_batch *b, const struct em_nf_plan *p,
		       uint16_t family, const char *chain, bool skip_lo,
		       enum em_nf_queue_variant v, const char *desc)
{
	struct rb rb = rule_new(family, EM_NF_TABLE, chain);

	match_dns(&rb, skip_lo);
	counter(&rb);
	queue(&rb, p, v);
	rule_put(b, &rb, family, desc);
}

/* ---- capture scope: who may be captured in prerouting ----
 *
 *   chain refuse {			# not a client of this node
 *     ip daddr <capture range> counter drop	# one per range, any protocol
 *     udp dport 53 counter accept		# to the real resolver, unqueued
 *   }
 *   chain scope {
 *     iifname "lo" return			# host processes
 *     fib saddr . iif oif missing counter goto refuse	# spoofed / local source
 *     iifname "<client iface>" return		# one per interface (or prefix*)
 *     ip saddr <client range> return		# one per range
 *     goto refuse				# only when any of the two above
 *   }
 *   prerouting: ... bypass return; jump scope; ...
 *
 * `accept` in refuse ends this table's prerouting for the packet (the
 * queue rule after the jump is not reached); other tables still see it. */

static void verdict_chain(struct rb *rb, int v, const char *chain)
{
	struct nftnl_expr *e = expr(rb, "immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)v);
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	}
	push(rb, e);
}

/* meta iifname "name" (the whole zero-padded name), or "prefix*" (the
 * prefix bytes only, as nft emits for a wildcard). */
static void match_iifname(struct rb *rb, const char *name)
{
	char buf[IFNAMSIZ] = { 0 };
	size_t len = strlen(name);
	bool prefix = len && name[len - 1] == '*';

	memcpy(buf, name, prefix ? len - 1 : len);
	meta_load(rb, NFT_META_IIFNAME);
	cmp(rb, NFT_CMP_EQ, buf, prefix ? (uint32_t)(len - 1) : sizeof(buf));
}

/* meta nfproto ipvX, ipX saddr|daddr <prefix> */
static void match_prefix(struct rb *rb, const struct em_cidr *c, bool src)
{
	uint8_t mask[16];
	bool v6 = c->family == AF_INET6;
	uint32_t bytes = c->plen % 8 ? (uint32_t)em_cidr_len(c) : c->plen / 8u;

	meta_load(rb, NFT_META_NFPROTO);
	cmp_u8(rb, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	payload(rb, NFT_PAYLOAD_NETWORK_HEADER, (v6 ? 8 : 12) + (src ? 0 : (v6 ? 16 : 4)), bytes);
	if (c->plen % 8) {
		em_cidr_mask(c, mask);
		bitwise_and(rb, mask, bytes);
	}
	cmp(rb, NFT_CMP_EQ, c->addr, bytes);
}

/* fib saddr . iif oif missing: no route back to the source through the
 * interface it came in on; local sources always fail (the kernel's fib
 * expression has no answer for RTN_LOCAL), except on lo. */
static void match_rpf_fail(struct rb *rb)
{
	struct nftnl_expr *e = expr(rb, "fib");
	uint32_t missing = 0;	/* as nft: the whole register (store8 zeroes it) */

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS,
				   NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF | NFTA_FIB_F_PRESENT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_OIF);
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
	}
	push(rb, e);
	cmp(rb, NFT_CMP_EQ, &missing, sizeof(missing));
}

static bool plan_scoped(const struct em_nf_plan *p)
{
	return p->n_client_ifaces + p->n_client_cidrs > 0;
}

static void put_regular_chain(struct em_nf_batch *b, uint16_t family, const char *name,
			      const char *desc)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c) {
		b->err = b->err ? b->err : -ENOMEM;
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, EM_NF_TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nlh = msg_start(b, NFT_MSG_NEWCHAIN, family, NLM_F_CREATE, desc);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		msg_end(b);
	}
	nftnl_chain_free(c);
}

/* The refuse and scope chains of the family's table; before the chain
 * that jumps. dns_only: the refuse chain of the compat-ip variant's ip/ip6
 * tables, which only queue DNS (the inet table drops the rest). */
static void build_scope_chains(struct em_nf_batch *b, const struct em_nf_plan *p,
			       uint16_t family, bool dns_only)
{
	uint16_t port = htons(53);
	struct rb rb;

	put_regular_chain(b, family, "refuse", "refuse chain");
	for (unsigned i = 0; !dns_only && i < p->n_capture; i++) {
		rb = rule_new(family, EM_NF_TABLE, "refuse");
		match_prefix(&rb, &p->capture[i], false);
		counter(&rb);
		verdict(&rb, NF_DROP);
		rule_put(b, &rb, family, "drop rule (refuse)");
	}
	rb = rule_new(family, EM_NF_TABLE, "refuse");
	meta_load(&rb, NFT_META_L4PROTO);
	cmp_u8(&rb, IPPROTO_UDP);
	payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
	cmp(&rb, NFT_CMP_EQ, &port, sizeof(port));
	counter(&rb);
	verdict(&rb, NF_ACCEPT);
	rule_put(b, &rb, family, "DNS pass rule (refuse)");

	put_regular_chain(b, family, "scope", "scope chain");
	rb = rule_new(family, EM_NF_TABLE, "scope");
	match_iifname(&rb, "lo");
	verdict(&rb, NFT_RETURN);
	rule_put(b, &rb, family, "lo rule (scope)");
	rb = rule_new(family, EM_NF_TABLE, "scope");
	match_rpf_fail(&rb);
	counter(&rb);
	verdict_chain(&rb, NFT_GOTO, "refuse");
	rule_put(b, &rb, family, "reverse-path rule (scope)");
	if (!plan_scoped(p))
		return;
	for (unsigned i = 0; i < p->n_client_ifaces; i++) {
		rb = rule_new(family, EM_NF_TABLE, "scope");
		match_iifname(&rb, p->client_ifaces[i]);
		verdict(&rb, NFT_RETURN);
		rule_put(b, &rb, family, "client interface rule (scope)");
	}
	for (unsigned i = 0; i < p->n_client_cidrs; i++) {
		if ((family == NFPROTO_IPV4 && p->client_cidrs[i].family != AF_INET) ||
		    (family == NFPROTO_IPV6 && p->client_cidrs[i].family != AF_INET6))
			continue;
		rb = rule_new(family, EM_NF_TABLE, "scope");
		match_prefix(&rb, &p->client_cidrs[i], true);
		verdict(&rb, NFT_RETURN);
		rule_put(b, &rb, family, "client range rule (scope)");
	}
	rb = rule_new(family, EM_NF_TABLE, "scope");
	counter(&rb);
	verdict_chain(&rb, NFT_GOTO, "refuse");
	rule_put(b, &rb, family, "non-client rule (scope)");
}

static void rule_jump_scope(struct em_nf_batch *b, uint16_t family, const char *chain)
{
	struct rb rb = rule_new(family, EM_NF_TABLE, chain);

	verdict_chain(&rb, NFT_JUMP, "scope");
	rule_put(b, &rb, family, "jump rule (prerouting)");
}

bool em_nf_plan_has_v6(const struct em_nf_plan *p)
{
	for (unsigned i = 0; i < p->n_capture; i++)
		if (p->capture[i].family == AF_INET6)
			return true;
	return false;
}

/* The DNS chains of the compat-ip variant: one table per address family,
 * because this kernel's nft_compat may refuse xt targets in inet tables. */
static void build_ip_dns_table(struct em_nf_batch *b, const struct em_nf_plan *p,
			       uint16_t family)
{
	put_table(b, NFT_MSG_NEWTABLE, family, EM_NF_TABLE, NLM_F_CREATE, "add dns table");
	if (p->dns_pods) {
		build_scope_chains(b, p, family, true);
		put_chain(b, family, EM_NF_TABLE, "prerouting_dns", "filter",
			  NF_INET_PRE_ROUTING, PRIO_MANGLE, "prerouting_dns chain");
		rule_return_on_bypass(b, p, family, "prerouting_dns");
		rule_jump_scope(b, family, "prerouting_dns");
		rule_queue(b, p, family, "prerouting_dns", true, p->variant,
			   "queue rule (compat, prerouting)");
	}
	if (p->dns_host) {
		put_chain(b, family, EM_NF_TABLE, "output_dns", "filter",
			  NF_INET_LOCAL_OUT, PRIO_MANGLE, "output_dns chain");
		rule_return_on_bypass(b, p, family, "output_dns");
		rule_queue(b, p, family, "output_dns", false, p->variant,
			   "queue rule (compat, output)");
	}
}

int em_nf_ruleset_build_install(struct em_nf_batch *b, const struct em_nf_plan *p)
{
	bool dns = p->queues > 0 && (p->dns_host || p->dns_pods);
	bool dns_inet = dns && p->variant != EM_NF_QUEUE_COMPAT_IP;

	/* Stale tables of every variant go, whatever this run installs. */
	destroy_table(b, NFPROTO_INET, EM_NF_TABLE);
	destroy_table(b, NFPROTO_IPV4, EM_NF_TABLE);
	destroy_table(b, NFPROTO_IPV6, EM_NF_TABLE);

	put_table(b, NFT_MSG_NEWTABLE, NFPROTO_INET, EM_NF_TABLE, NLM_F_CREATE, "add table");
	build_scope_chains(b, p, NFPROTO_INET, false);
	put_udp_set(b, AF_INET);	/* filled by em_nf_udp_sync() */
	if (plan_fake_family(p, AF_INET6))
		put_udp_set(b, AF_INET6);
	if (p->n_capture > p->n_fake) {
		put_chain(b, NFPROTO_INET, EM_NF_TABLE, "prerouting_raw", "filter",
			  NF_INET_PRE_ROUTING, PRIO_RAW, "prerouting_raw chain");
		put_chain(b, NFPROTO_INET, EM_NF_TABLE, "output_raw", "filter",
			  NF_INET_LOCAL_OUT, PRIO_RAW, "output_raw chain");
		rule_return_on_bypass(b, p, NFPROTO_INET, "output_raw");
		for (unsigned i = p->n_fake; i < p->n_capture; i++) {
			rule_notrack(b, p, "prerouting_raw", &p->capture[i]);
			rule_notrack(b, p, "output_raw", &p->capture[i]);
		}
	}
	put_chain(b, NFPROTO_INET, EM_NF_TABLE, "prerouting", "filter",
		  NF_INET_PRE_ROUTING, PRIO_MANGLE, "prerouting chain");
	rule_return_on_bypass(b, p, NFPROTO_INET, "prerouting");
	rule_jump_scope(b, NFPROTO_INET, "prerouting");
	for (unsigned i = 0; i < p->n_capture; i++)
		rule_tproxy(b, p, &p->capture[i]);
	rule_udp_tproxy(b, p, AF_INET);
	if (plan_fake_family(p, AF_INET6))
		rule_udp_tproxy(b, p, AF_INET6);
	if (dns_inet && p->dns_pods)
		rule_queue(b, p, NFPROTO_INET, "prerouting", true, p->variant,
			   "queue rule (prerouting)");

	/* type route: the kernel re-runs the route lookup when the chain
	 * changed the mark, which is what sends the packet to lo. */
	put_chain(b, NFPROTO_INET, EM_NF_TABLE, "output", "route",
		  NF_INET_LOCAL_OUT, PRIO_MANGLE, "output chain");
	rule_return_on_bypass(b, p, NFPROTO_INET, "output");
	for (unsigned i = 0; i < p->n_capture; i++)
		rule_mark_output(b, p, &p->capture[i]);
	rule_udp_mark_output(b, p, AF_INET);
	if (plan_fake_family(p, AF_INET6))
		rule_udp_mark_output(b, p, AF_INET6);

	if (dns_inet && p->dns_host) {
		put_chain(b, NFPROTO_INET, EM_NF_TABLE, "output_dns", "filter",
			  NF_INET_LOCAL_OUT, PRIO_MANGLE, "output_dns chain");
		rule_return_on_bypass(b, p, NFPROTO_INET, "output_dns");
		rule_queue(b, p, NFPROTO_INET, "output_dns", false, p->variant,
			   "queue rule (output)");
	}
	if (dns && p->variant == EM_NF_QUEUE_COMPAT_IP) {
		build_ip_dns_table(b, p, NFPROTO_IPV4);
		build_ip_dns_table(b, p, NFPROTO_IPV6);
	}
	batch_end(b);
	return b->err;
}

int em_nf_ruleset_build_remove(struct em_nf_batch *b, const struct em_nf_plan *p)
{
	destroy_table(b, NFPROTO_INET, EM_NF_TABLE);
	if (p->variant == EM_NF_QUEUE_COMPAT_IP) {
		destroy_table(b, NFPROTO_IPV4, EM_NF_TABLE);
		destroy_table(b, NFPROTO_IPV6, EM_NF_TABLE);
	}
	batch_end(b);
	return b->err;
}

int em_nf_ruleset_build_probe(struct em_nf_batch *b, enum em_nf_queue_variant v)
{
	static const char probe_table[] = EM_NF_TABLE "-probe";
	struct em_nf_plan p = { .queue_num = 0, .queues = 1 };
	uint16_t family = v == EM_NF_QUEUE_COMPAT_IP ? NFPROTO_IPV4 : NFPROTO_INET;
	struct rb rb;

	put_table(b, NFT_MSG_NEWTABLE, family, probe_table, NLM_F_CREATE, "probe table");
	/* The hooks the real rules use: xt targets may restrict hooks. */
	put_chain(b, family, probe_table, "pre", "filter", NF_INET_PRE_ROUTING,
		  PRIO_MANGLE, "probe chain (prerouting)");
	put_chain(b, family, probe_table, "out", "filter", NF_INET_LOCAL_OUT,
		  PRIO_MANGLE, "probe chain (output)");
	rb = rule_new(family, probe_table, "pre");
	match_dns(&rb, true);
	queue(&rb, &p, v);
	rule_put(b, &rb, family, "probe queue rule (prerouting)");
	rb = rule_new(family, probe_table, "out");
	match_dns(&rb, false);
	queue(&rb, &p, v);
	rule_put(b, &rb, family, "probe queue rule (output)");
	/* No batch end: validate and abort. */
	return b->err;
}

/* ---- talking to the kernel ---- */

int em_nf_batch_send(struct mnl_socket *nl, const struct em_nf_batch *b,
		     const char **bad)
{
	uint32_t portid;
	char rbuf[16384];
	unsigned answered = 0;
	int first = 0;
	size_t len;
	const void *data = em_nf_batch_data(b, &len);

	*bad = NULL;
	if (b->err)
		return b->err;
	portid = mnl_socket_get_portid(nl);
	if (mnl_socket_sendto(nl, data, len) == -1)
		return -errno;

	while (answered < b->n_msgs) {
		ssize_t n = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)rbuf;
		int left;

		if (n == -1)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		left = (int)n;
		for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsgerr *e;
			uint32_t seq = nlh->nlmsg_seq;

			if (nlh->nlmsg_pid != portid || nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
				continue;
			e = mnl_nlmsg_get_payload(nlh);
			/* The batch as a whole (no permission, commit failed):
			 * the kernel answers on the BATCH_BEGIN message. */
			if (seq == b->seq_begin && e->error)
				return e->error;
			if (seq <= b->seq_begin || seq > b->seq_begin + b->n_msgs)
				continue;
			answered++;
			if (e->error && !first) {
				first = e->error;
				*bad = b->desc[seq - b->seq_begin - 1];
			}
		}
	}
	return first;
}
