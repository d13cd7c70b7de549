/* nf.h — the capture ruleset: one nftables table of our own plus the policy
 * routing that delivers marked packets locally, installed and removed as a
 * unit.
 *
 * What gets installed (see nft/edgemesh.nft for the same in nft syntax):
 * - table inet edgemesh, one nfnetlink batch (an existing table of that name,
 *   left by a crashed daemon, is replaced inside the same batch):
 *   prerouting (filter, priority mangle = -150, before kube-proxy's dstnat):
 *     bypass mark -> return; TCP to the fake ranges / extra CIDRs -> tproxy to
 *     the listener, mark set capture mark, accept; UDP dport 53 not from lo
 *     -> queue (dns_pods).
 *   output (route, priority mangle): bypass mark -> return; TCP to the fake
 *     ranges / extra CIDRs -> mark set capture mark (the route chain reroutes).
 *   output_dns (filter, priority mangle): bypass mark -> return; UDP dport 53
 *     -> queue (dns_host).
 *   The queue statement is native `queue` where the kernel has it, else the
 *   xtables NFQUEUE target through nft_compat, in the inet table if the
 *   kernel allows it there, else in `ip edgemesh` / `ip6 edgemesh` tables of
 *   the same batch. Always with bypass (fail-open). The choice is probed
 *   with batches that the kernel validates and aborts (no BATCH_END, as
 *   `nft -c` does), so a probe never changes anything. Measured on the
 *   project's 6.18 VM: native refused (ENOENT), compat accepted in inet
 *   (docs/kernel-notes.md).
 * - ip rule fwmark <capture mark> lookup <table> priority <prio>
 *   ip route add local 0.0.0.0/0 dev lo table <table>   (and the -6 pair)
 * - ip route add local <fake IPv4 range> dev lo src 127.0.0.1 table main
 *   ip -6 route add local <fake IPv6 range> dev lo table main
 *   so that host processes can connect() to a fake IP on a node without a
 *   default route (see routing_add() in nf.c for why exactly these).
 */
#ifndef EM_NF_NF_H
#define EM_NF_NF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum em_nf_queue_variant {
	EM_NF_QUEUE_AUTO = 0,		/* probe the kernel (the default) */
	EM_NF_QUEUE_NATIVE,		/* nft `queue` expression, inet table */
	EM_NF_QUEUE_COMPAT_INET,	/* xt NFQUEUE target, inet table */
	EM_NF_QUEUE_COMPAT_IP,		/* xt NFQUEUE target, ip + ip6 tables */
};

struct em_nf_config {
	/* Ranges as text; em_nf_install validates them and names the bad one. */
	const char *fake_ipv4;		/* required; default EM_FAKE_IPV4_RANGE */
	const char *fake_ipv6;		/* NULL or "": no IPv6 capture (default) */
	const char *const *capture_cidrs; /* extra IPv4/IPv6 ranges to capture
					   * (e.g. the ClusterIP range); default none */
	unsigned n_capture_cidrs;
	const char *tproxy_ipv4;	/* listener address; default EM_TPROXY_IPV4 */
	const char *tproxy_ipv6;	/* default "::1" (used only with IPv6 ranges) */
	uint16_t tproxy_port;		/* default EM_TPROXY_PORT (util/defaults.h) */
	uint16_t queue_num;		/* first DNS queue; default 0 */
	uint16_t queues;		/* number of queues, fanned out; default 1;
					 * 0 = no DNS queueing at all */
	bool queue_cpu_fanout;		/* with queues > 1: pick the queue by CPU
					 * (NFQ_FLAG_CPU_FANOUT / `fanout`) rather
					 * than by address hash; default true */
	bool dns_host;			/* queue host processes' queries; default true */
	bool dns_pods;			/* queue forwarded queries; default true */
	uint32_t capture_mark;		/* default EM_CAPTURE_MARK */
	uint32_t bypass_mark;		/* SO_MARK of the daemon's sockets; default EM_BYPASS_MARK */
	uint32_t route_table;		/* policy routing table; default EM_ROUTE_TABLE */
	uint32_t rule_priority;		/* ip rule priority; default 482 */
	bool main_route;		/* add the `local <fake range> dev lo` route
					 * to the main table; default true */
	bool watch;			/* put the table, rules and routes back when
					 * something removes them while installed
					 * (nftables and rtnetlink events, e.g.
					 * `nft flush ruleset`); default true */
	enum em_nf_queue_variant queue_variant;	/* default EM_NF_QUEUE_AUTO */
	/* Capture scope, prerouting only (host processes come through lo and
	 * are always clients). A packet that fails the strict reverse-path
	 * check (`fib saddr . iif oif missing`: spoofed, or a local source on
	 * a non-lo interface) is never captured nor queued. Beyond that, when
	 * either list below is non-empty only packets arriving on one of
	 * these interfaces or from one of these ranges are clients; anything
	 * else addressed to a capture range is dropped (counted by the rule)
	 * and its DNS queries go to the resolver unqueued. Interfaces: exact
	 * names, "prefix*", "auto" (EM_NF_AUTO_CLIENT_IFACES) or "any" (no
	 * interface scope: everyone). Both lists empty (the default here;
	 * the daemon's default is "auto"): everyone. */
	const char *const *client_ifaces;
	unsigned n_client_ifaces;
	const char *const *client_cidrs;	/* e.g. this node's pod CIDR */
	unsigned n_client_cidrs;
};

/* Interfaces that CNI plugins commonly connect a node's pods through. */
#define EM_NF_AUTO_CLIENT_IFACES \
	"cni*", "cbr0", "docker0", "veth*", "cali*", "lxc*", "kube-bridge", "weave"


struct em_nf;

/* Fill *cfg with the defaults listed above. */
void em_nf_config_defaults(struct em_nf_config *cfg);

/* Install the table and the policy routing. On success *out owns what was
 * installed; on failure nothing stays installed and the reason has been
 * logged. Returns 0 or -errno (-EINVAL for a bad config value, -EPERM
 * without CAP_NET_ADMIN, the kernel's error otherwise). Blocking: a few
 * netlink round trips. Not thread-safe against itself. */
int em_nf_install(const struct em_nf_config *cfg, struct em_nf **out);

/* Remove everything em_nf_install added (one batch for the tables; routes
 * and rules that are already gone are not an error) and free nf. NULL is a
 * no-op. Returns 0 or the first -errno met; nf is freed in every case. */
int em_nf_remove(struct em_nf *nf);

/* What a crashed run may have left, removed without knowing what it
 * installed: the tables of every variant, the fwmark rules and the local
 * routes of both families, the main-table routes of the fake ranges (as
 * cfg names them). What is not there is not an error. For the unit's
 * ExecStopPost (`edgemesh-tproxy --cleanup`). 0 or the first -errno. */
int em_nf_cleanup(const struct em_nf_config *cfg);
/* UDP capture (issue 15): only datagrams to a fake IP and port that is a
 * UDP service port are TPROXY'd, through the sets udp4/udp6 of table inet
 * edgemesh (`ip daddr . udp dport @udp4`). The caller keeps them current:
 * em_nf_udp_sync() replaces their contents atomically (one batch). Other
 * UDP to a fake IP meets the local route and gets port unreachable. */
struct em_nf_udp_port {
	int family;			/* AF_INET or AF_INET6 */
	uint8_t addr[16];		/* the fake IP (4 bytes used for IPv4) */
	uint16_t port;			/* host byte order */
};
/* 0 or -errno (logged by the caller). Ports of a family without a fake
 * range are ignored. Blocking: one netlink round trip. Any one thread. */
int em_nf_udp_sync(struct em_nf *nf, const struct em_nf_udp_port *ports, size_t n);

/* The queue variant in use ("native", "compat-inet", "compat-ip", or "none"
 * when no DNS queueing was asked for). */
const char *em_nf_queue_variant_name(const struct em_nf *nf);
enum em_nf_queue_variant em_nf_queue_variant(const struct em_nf *nf);

#endif
