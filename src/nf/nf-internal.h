/* nf-internal.h — internal to src/nf: the resolved plan of what to install,
 * the nfnetlink batch builder and the rtnetlink helpers. Not for other areas;
 * they use nf.h. */
#ifndef EM_NF_INTERNAL_H
#define EM_NF_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nf/nf.h"
#include "util/cidr.h"

struct mnl_socket;
struct mnl_nlmsg_batch;

#define EM_NF_TABLE "edgemesh"
/* fake IPv4, fake IPv6 and up to this many extra ranges */
#define EM_NF_MAX_CAPTURE 18
/* client interfaces (after expanding "auto") and client ranges, each */
#define EM_NF_MAX_CLIENTS 16

/* Everything the batch needs, already parsed and checked. */
struct em_nf_plan {
	struct em_cidr capture[EM_NF_MAX_CAPTURE];	/* [0] = fake IPv4 */
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
	/* Capture scope (see em_nf_config): with neither interfaces nor
	 * ranges, anyone passing the reverse-path check is a client. */
	char client_ifaces[EM_NF_MAX_CLIENTS][16];	/* "name" or "prefix*" */
	unsigned n_client_ifaces;
	struct em_cidr client_cidrs[EM_NF_MAX_CLIENTS];
	unsigned n_client_cidrs;
};

/* Turn the config into a plan; -EINVAL after logging the bad value. */
int em_nf_plan_from_config(const struct em_nf_config *cfg, struct em_nf_plan *p);
bool em_nf_plan_has_v6(const struct em_nf_plan *p);

/* ---- nfnetlink batches (ruleset.c) ---- */

#define EM_NF_BATCH_MAX_MSGS 128

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

/* ---- the installed state (nf.c) and its watcher (watch.c) ---- */

/* Per family: the table's local default route and the rule; plus the fake
 * ranges' routes in main. */
#define MAX_UNDO 6

/* One routing object added (or found already there at install: a crashed
 * run's leftovers count as ours); exactly these are removed, newest first. */
struct undo {
	bool is_rule;
	struct em_nf_route route;
	struct em_nf_rule rule;
};

struct em_nf_watch;

struct em_nf {
	struct em_nf_plan plan;
	struct undo undo[MAX_UNDO];
	unsigned n_undo;
	struct em_nf_watch *watch;	/* NULL: not watching */
	/* The UDP sets' last contents, so that a reinstalled table gets them
	 * back; the lock orders em_nf_udp_sync against the watcher's repairs. */
	pthread_mutex_t lock;
	struct em_nf_udp_port *udp;
	size_t n_udp;
};

/* Fill the UDP sets on nl (lock held by the caller); 0 or -errno. */
int em_nf_udp_apply(struct em_nf *nf, struct mnl_socket *nl,
		    const struct em_nf_udp_port *ports, size_t n);

/* A bound NETLINK_NETFILTER / NETLINK_ROUTE socket with a receive timeout
 * and NETLINK_CAP_ACK; NULL with errno. */
struct mnl_socket *em_nf_nl_open(int bus);
/* Install (replace) or remove the plan's tables in one batch; logs. */
int em_nf_table_batch(struct mnl_socket *nl, const struct em_nf_plan *p, bool install);

/* Delete the fake ranges' main-table routes of nf (undo kept). */
void em_nf_main_routes_del(struct em_nf *nf, struct mnl_socket *rt);
/* Add every routing object of nf again; those that were missing are
 * counted in *readded. 0 or the first -errno other than EEXIST. */
int em_nf_routing_ensure(struct em_nf *nf, struct mnl_socket *rt, unsigned *readded);

/* Watch nftables and routing events; when the table, a policy rule or a
 * route of nf vanishes, put it back (see watch.c). Started by
 * em_nf_install when the config asks for it, stopped by em_nf_remove. */
int em_nf_watch_start(struct em_nf *nf);
void em_nf_watch_stop(struct em_nf *nf);

#endif
