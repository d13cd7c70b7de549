/* nf-internal.h — internal to src/nf: the resolved plan of what to install,
 * the nfnetlink batch builder and the rtnetlink helpers. Not for other areas;
 * they use nf.h. */
#ifndef EM_NF_INTERNAL_H
#define EM_NF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nf/cidr.h"
#include "nf/nf.h"

struct mnl_socket;
struct mnl_nlmsg_batch;

#define EM_NF_TABLE "edgemesh"
/* fake IPv4, fake IPv6 and up to this many extra ranges */
#define EM_NF_MAX_CAPTURE 18

/* Everything the batch needs, already parsed and checked. */
struct em_nf_plan {
	struct em_nf_cidr capture[EM_NF_MAX_CAPTURE];	/* [0] = fake IPv4 */
	unsigned n_capture;
	unsigned n_fake;		/* capture[0..n_fake) are our fake ranges */
	uint8_t tproxy4[4];
	uint8_t tproxy6[16];
	uint16_t tproxy_port;		/* host order */
	uint16_t queue_num;
	uint16_t queues;		/* 0: no queue rules */
	bool cpu_fanout;
	bool dns_host;
	bool dns_pods;
	uint32_t capture_mark;
	uint32_t bypass_mark;
	enum em_nf_queue_variant variant;	/* never AUTO when building */
};

/* Turn the config into a plan; -EINVAL after logging the bad value. */
int em_nf_plan_from_config(const struct em_nf_config *cfg, struct em_nf_plan *p);
bool em_nf_plan_has_v6(const struct em_nf_plan *p);

/* ---- nfnetlink batches (ruleset.c) ---- */

#define EM_NF_BATCH_MAX_MSGS 64

struct em_nf_batch {
	char *buf;
	size_t size;
	struct mnl_nlmsg_batch *b;
	uint32_t seq_begin;		/* seq of the BATCH_BEGIN message */
	uint32_t seq;			/* next seq to use */
	unsigned n_msgs;		/* messages between begin and end */
	bool ended;			/* BATCH_END appended (commit) */
	int err;			/* first building error (sticky) */
	/* What each message is, for the log when the kernel refuses one:
	 * desc[i] belongs to seq_begin + 1 + i. */
	const char *desc[EM_NF_BATCH_MAX_MSGS];
};

int em_nf_batch_init(struct em_nf_batch *b, uint32_t seq);
void em_nf_batch_fini(struct em_nf_batch *b);
const void *em_nf_batch_data(const struct em_nf_batch *b, size_t *len);

/* Replace-or-create every table of the plan, then fill it; ends the batch. */
int em_nf_ruleset_build_install(struct em_nf_batch *b, const struct em_nf_plan *p);
/* Delete the plan's tables, tolerating their absence; ends the batch. */
int em_nf_ruleset_build_remove(struct em_nf_batch *b, const struct em_nf_plan *p);
/* A throw-away table with one queue rule in variant `v`, WITHOUT the batch
 * end: the kernel checks every message and then aborts, committing nothing
 * (the same mechanism `nft -c` uses). */
int em_nf_ruleset_build_probe(struct em_nf_batch *b, enum em_nf_queue_variant v);

/* Send the batch on a NETLINK_NETFILTER socket and wait for the kernel's
 * answer to every message. Returns 0 or the first refusal as -errno; *bad
 * is then the description of the refused message (NULL if it was the batch
 * as a whole). */
int em_nf_batch_send(struct mnl_socket *nl, const struct em_nf_batch *b,
		     const char **bad);

/* The UDP capture sets (fake IP . port of every UDP service port): flush
 * and refill, one batch; ends the batch. */
#define EM_NF_UDP_SET4 "udp4"
#define EM_NF_UDP_SET6 "udp6"
int em_nf_ruleset_build_udp_sync(struct em_nf_batch *b, const struct em_nf_plan *p,
				 const struct em_nf_udp_port *ports, size_t n);

/* ---- rtnetlink (route.c) ---- */

struct em_nf_route {
	int family;
	uint32_t table;
	uint8_t dst[16];
	uint8_t dst_len;
	bool has_prefsrc;	/* IPv4 only: source for sockets using the route */
	uint8_t prefsrc[4];
};

struct em_nf_rule {
	int family;
	uint32_t fwmark;
	uint32_t table;
	uint32_t priority;
};

/* `ip route add|del local DST dev lo table T [src PREFSRC]`. Returns 0 or -errno as the
 * kernel said (-EEXIST on add, -ESRCH/-ENOENT on del are the caller's to
 * judge). */
int em_nf_route_local(struct mnl_socket *rt, bool add, const struct em_nf_route *r);
/* `ip rule add|del fwmark M lookup T priority P`. */
int em_nf_rule_fwmark(struct mnl_socket *rt, bool add, const struct em_nf_rule *r);

#endif
