/* nf.c — em_nf_install / em_nf_remove: validate the config, pick the queue
 * variant the kernel supports, add the policy routing, then swap the table
 * in; remove in the reverse order. */
#include "nf/nf.h"
#include "nf/nf-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "util/defaults.h"
#include "util/log.h"

#define NL_TIMEOUT_S 5

void em_nf_config_defaults(struct em_nf_config *cfg)
{
	*cfg = (struct em_nf_config){
		.fake_ipv4 = EM_FAKE_IPV4_RANGE,
		.fake_ipv6 = NULL,
		.tproxy_ipv4 = EM_TPROXY_IPV4,
		.tproxy_ipv6 = EM_TPROXY_IPV6,
		.tproxy_port = EM_TPROXY_PORT,
		.queue_num = 0,
		.queues = 1,
		.queue_cpu_fanout = true,
		.dns_host = true,
		.dns_pods = true,
		.capture_mark = EM_CAPTURE_MARK,
		.bypass_mark = EM_BYPASS_MARK,
		.route_table = EM_ROUTE_TABLE,
		.rule_priority = EM_RULE_PRIORITY,
		.main_route = true,
		.watch = true,
		.queue_variant = EM_NF_QUEUE_AUTO,
	};
}

static const char *variant_name(enum em_nf_queue_variant v)
{
	switch (v) {
	case EM_NF_QUEUE_NATIVE: return "native";
	case EM_NF_QUEUE_COMPAT_INET: return "compat-inet";
	case EM_NF_QUEUE_COMPAT_IP: return "compat-ip";
	case EM_NF_QUEUE_AUTO: break;
	}
	return "auto";
}

static bool plan_queues(const struct em_nf_plan *p)
{
	return p->queues > 0 && (p->dns_host || p->dns_pods);
}

const char *em_nf_queue_variant_name(const struct em_nf *nf)
{
	return plan_queues(&nf->plan) ? variant_name(nf->plan.variant) : "none";
}

enum em_nf_queue_variant em_nf_queue_variant(const struct em_nf *nf)
{
	return nf->plan.variant;
}

static int add_capture(struct em_nf_plan *p, const char *what, const char *s, int family)
{
	if (p->n_capture >= EM_NF_MAX_CAPTURE) {
		em_err("nf: too many capture ranges (at most %d extra)", EM_NF_MAX_CAPTURE - 2);
		return -EINVAL;
	}
	if (em_cidr_parse(s, family, EM_CIDR_STRICT, &p->capture[p->n_capture]) < 0) {
		em_err("nf: %s \"%s\" is not an %s prefix with host bits clear (e.g. %s)",
		       what, s, family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "IP",
		       family == AF_INET6 ? "fd00:e3::/64" : "198.18.0.0/16");
		return -EINVAL;
	}
	p->n_capture++;
	return 0;
}

static int add_client_iface(struct em_nf_plan *p, const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len >= sizeof(p->client_ifaces[0]) ||
	    strcspn(name, "*") < len - 1 || strpbrk(name, "/ \t\n") ||
	    strcmp(name, "*") == 0) {
		em_err("nf: client interface \"%s\" is not an interface name, a prefix "
		       "ending in '*', auto or any", name);
		return -EINVAL;
	}
	if (p->n_client_ifaces >= EM_NF_MAX_CLIENTS) {
		em_err("nf: too many client interfaces (at most %d)", EM_NF_MAX_CLIENTS);
		return -EINVAL;
	}
	memcpy(p->client_ifaces[p->n_client_ifaces++], name, len + 1);
	return 0;
}

/* The capture scope: interfaces ("auto" expanded, "any" = no scope) and
 * source ranges. */
static int plan_scope(const struct em_nf_config *cfg, struct em_nf_plan *p)
{
	static const char *const auto_ifaces[] = { EM_NF_AUTO_CLIENT_IFACES };
	bool any = false;

	for (unsigned i = 0; i < cfg->n_client_ifaces; i++) {
		const char *name = cfg->client_ifaces[i];

		if (strcmp(name, "any") == 0) {
			any = true;
		} else if (strcmp(name, "auto") == 0) {
			for (size_t k = 0; k < sizeof(auto_ifaces) / sizeof(auto_ifaces[0]); k++)
				if (add_client_iface(p, auto_ifaces[k]) < 0)
					return -EINVAL;
		} else if (add_client_iface(p, name) < 0) {
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < cfg->n_client_cidrs; i++) {
		if (p->n_client_cidrs >= EM_NF_MAX_CLIENTS) {
			em_err("nf: too many client ranges (at most %d)", EM_NF_MAX_CLIENTS);
			return -EINVAL;
		}
		if (em_cidr_parse(cfg->client_cidrs[i], AF_UNSPEC, EM_CIDR_STRICT,
				  &p->client_cidrs[p->n_client_cidrs]) < 0) {
			em_err("nf: client range \"%s\" is not an IP prefix with host bits clear",
			       cfg->client_cidrs[i]);
			return -EINVAL;
		}
		p->n_client_cidrs++;
	}
	if (any)
		p->n_client_ifaces = p->n_client_cidrs = 0;
	return 0;
}

int em_nf_plan_from_config(const struct em_nf_config *cfg, struct em_nf_plan *p)
{
	memset(p, 0, sizeof(*p));
	if (add_capture(p, "fake IPv4 range", cfg->fake_ipv4, AF_INET) < 0)
		return -EINVAL;
	if (cfg->fake_ipv6 && cfg->fake_ipv6[0] &&
	    add_capture(p, "fake IPv6 range", cfg->fake_ipv6, AF_INET6) < 0)
		return -EINVAL;
	p->n_fake = p->n_capture;
	for (unsigned i = 0; i < cfg->n_capture_cidrs; i++)
		if (add_capture(p, "capture CIDR", cfg->capture_cidrs[i], AF_UNSPEC) < 0)
			return -EINVAL;

	if (!cfg->tproxy_ipv4 || inet_pton(AF_INET, cfg->tproxy_ipv4, p->tproxy4) != 1) {
		em_err("nf: TPROXY listener address \"%s\" is not an IPv4 address",
		       cfg->tproxy_ipv4 ? cfg->tproxy_ipv4 : "(null)");
		return -EINVAL;
	}
	if (em_nf_plan_has_v6(p) &&
	    (!cfg->tproxy_ipv6 || inet_pton(AF_INET6, cfg->tproxy_ipv6, p->tproxy6) != 1)) {
		em_err("nf: TPROXY listener address \"%s\" is not an IPv6 address",
		       cfg->tproxy_ipv6 ? cfg->tproxy_ipv6 : "(null)");
		return -EINVAL;
	}
	if (cfg->tproxy_port == 0) {
		em_err("nf: TPROXY port 0 is not a port");
		return -EINVAL;
	}
	if (cfg->queues && (unsigned)cfg->queue_num + cfg->queues - 1 > 65535) {
		em_err("nf: queues %u..%u exceed the last queue number 65535",
		       cfg->queue_num, (unsigned)cfg->queue_num + cfg->queues - 1);
		return -EINVAL;
	}
	if (cfg->capture_mark == 0 || cfg->capture_mark == cfg->bypass_mark) {
		em_err("nf: capture mark 0x%x must be non-zero and differ from the bypass mark 0x%x",
		       cfg->capture_mark, cfg->bypass_mark);
		return -EINVAL;
	}
	if (cfg->bypass_mark == 0) {
		em_err("nf: bypass mark 0 would exempt every unmarked packet");
		return -EINVAL;
	}
	/* 0 is unspec; 253..255 are default/main/local: never ours to fill. */
	if (cfg->route_table == 0 || (cfg->route_table >= 253 && cfg->route_table <= 255)) {
		em_err("nf: route table %u is reserved; pick another (default 482)",
		       cfg->route_table);
		return -EINVAL;
	}
	if (cfg->rule_priority == 0 || cfg->rule_priority >= 32766) {
		em_err("nf: rule priority %u must be within 1..32765 (before the main table)",
		       cfg->rule_priority);
		return -EINVAL;
	}
	p->tproxy_port = cfg->tproxy_port;
	p->queue_num = cfg->queue_num;
	p->queues = cfg->queues;
	p->cpu_fanout = cfg->queue_cpu_fanout;
	p->dns_host = cfg->dns_host;
	p->dns_pods = cfg->dns_pods;
	p->capture_mark = cfg->capture_mark;
	p->bypass_mark = cfg->bypass_mark;
	p->variant = cfg->queue_variant;
	return plan_scope(cfg, p);
}

struct mnl_socket *em_nf_nl_open(int bus)
{
	struct timeval tv = { .tv_sec = NL_TIMEOUT_S };
	struct mnl_socket *nl = mnl_socket_open(bus);
	int one = 1;

	if (!nl)
		return NULL;
	/* Error acks without a copy of the (large) request. */
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == -1) {
		int err = errno;

		mnl_socket_close(nl);
		errno = err;
		return NULL;
	}
	return nl;
}

/* Batches of one process never share sequence numbers, so that a late
 * answer to one is never taken for the answer to the next. */
static uint32_t batch_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)time(NULL) << 8;
	seq += EM_NF_BATCH_MAX_MSGS + 2;
	return seq;
}

/* Does the kernel take a queue rule of variant v? 0 yes, else its -errno. */
static int probe(struct mnl_socket *nl, enum em_nf_queue_variant v, const char **bad)
{
	struct em_nf_batch b;
	int ret;

	ret = em_nf_batch_init(&b, batch_seq());
	if (ret < 0)
		return ret;
	ret = em_nf_ruleset_build_probe(&b, v);
	if (ret == 0)
		ret = em_nf_batch_send(nl, &b, bad);
	em_nf_batch_fini(&b);
	return ret;
}

static int choose_variant(struct mnl_socket *nl, struct em_nf_plan *p)
{
	static const enum em_nf_queue_variant order[] = {
		EM_NF_QUEUE_NATIVE, EM_NF_QUEUE_COMPAT_INET, EM_NF_QUEUE_COMPAT_IP,
	};
	int ret = -ENOENT;

	if (!plan_queues(p) || p->variant != EM_NF_QUEUE_AUTO)
		return 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *bad = NULL;

		ret = probe(nl, order[i], &bad);
		if (ret == 0) {
			static const char *const how[] = {
				[EM_NF_QUEUE_NATIVE] = "the native nft queue expression",
				[EM_NF_QUEUE_COMPAT_INET] = "the xtables NFQUEUE target (nft_compat) "
					"in table inet " EM_NF_TABLE,
				[EM_NF_QUEUE_COMPAT_IP] = "the xtables NFQUEUE target (nft_compat) "
					"in tables ip/ip6 " EM_NF_TABLE,
			};
			p->variant = order[i];
			em_info("nf: DNS queue variant %s: %s%s", variant_name(order[i]),
				how[order[i]], i ? " (probed: the kernel refused the ones before)" : "");
			return 0;
		}
		em_debug("nf: queue variant %s refused: %s (%s)", variant_name(order[i]),
			 strerror(-ret), bad ? bad : "batch");
		/* Only "no such expression/target/family" means try the next. */
		if (ret != -ENOENT && ret != -EOPNOTSUPP && ret != -EINVAL &&
		    ret != -EPROTONOSUPPORT && ret != -EAFNOSUPPORT) {
			em_err("nf: probing the kernel's nftables: %s%s", strerror(-ret),
			       ret == -EPERM ? " (CAP_NET_ADMIN needed)" : "");
			return ret;
		}
	}
	em_err("nf: no NFQUEUE variant works on this kernel (last: %s); need nft_queue or "
	       "nft_compat + xt_NFQUEUE", strerror(-ret));
	return ret;
}

static int route_add(struct em_nf *nf, struct mnl_socket *rt, int family,
		     uint32_t table, const uint8_t *dst, uint8_t dst_len)
{
	struct undo u = { .route = { .family = family, .table = table, .dst_len = dst_len } };
	static const uint8_t loopback[4] = { 127, 0, 0, 1 };
	char where[EM_CIDR_STRLEN];
	int ret;

	if (dst)
		memcpy(u.route.dst, dst, family == AF_INET6 ? 16 : 4);
	if (table == RT_TABLE_MAIN && family == AF_INET) {
		u.route.has_prefsrc = true;
		memcpy(u.route.prefsrc, loopback, 4);
	}
	ret = em_nf_route_local(rt, true, &u.route);
	if (ret == -EEXIST)
		ret = 0;
	if (ret < 0) {
		struct em_cidr c = { .family = family, .plen = dst_len };

		memcpy(c.addr, u.route.dst, 16);
		em_err("nf: cannot add route \"%slocal %s dev lo table %u%s\": %s",
		       family == AF_INET6 ? "-6 " : "",
		       dst_len ? em_cidr_format(&c, where, sizeof(where)) : "default",
		       table, u.route.has_prefsrc ? " src 127.0.0.1" : "", strerror(-ret));
		return ret;
	}
	nf->undo[nf->n_undo++] = u;
	return 0;
}

static int rule_add(struct em_nf *nf, struct mnl_socket *rt, int family,
		    const struct em_nf_config *cfg)
{
	struct undo u = { .is_rule = true, .rule = {
		.family = family, .fwmark = cfg->capture_mark,
		.table = cfg->route_table, .priority = cfg->rule_priority,
	} };
	int ret = em_nf_rule_fwmark(rt, true, &u.rule);

	if (ret == -EEXIST)
		ret = 0;
	if (ret < 0) {
		em_err("nf: cannot add rule \"%sfwmark 0x%x lookup %u priority %u\": %s",
		       family == AF_INET6 ? "-6 " : "", u.rule.fwmark, u.rule.table,
		       u.rule.priority, strerror(-ret));
		return ret;
	}
	nf->undo[nf->n_undo++] = u;
	return 0;
}

/* Undo the routing side, newest first; already gone is fine. */
static int routing_remove(struct em_nf *nf, struct mnl_socket *rt)
{
	int first = 0;

	while (nf->n_undo > 0) {
		const struct undo *u = &nf->undo[--nf->n_undo];
		int ret = u->is_rule ? em_nf_rule_fwmark(rt, false, &u->rule)
				     : em_nf_route_local(rt, false, &u->route);

		if (ret == -ENOENT || ret == -ESRCH || ret == -EAFNOSUPPORT)
			ret = 0;
		if (ret < 0 && !first)
			first = ret;
	}
	if (first)
		em_err("nf: removing policy routing: %s", strerror(-first));
	return first;
}

/* Local delivery of marked packets, per family; then the main-table route
 * that gives host sockets a route to the fake range on a node without a
 * default route (connect() fails with ENETUNREACH before netfilter sees
 * anything otherwise). Measured in a namespace (netns-tests/nf-ruleset.sh;
 * docs/kernel-notes.md):
 * - `local` type, so that other protocols to a fake IP fail at once (port
 *   unreachable) and a pod's connection that found no listener is refused
 *   rather than forwarded back out through lo;
 * - in main, not in the local table, so the fake range does not become
 *   addresses of the node (ARP, `fib daddr type local` as used by
 *   kube-proxy for NodePorts: unchanged);
 * - IPv4 with `src 127.0.0.1`: without it the source of a host socket is
 *   the fake IP itself, and the kernel's second lookup in connect()
 *   (ip_route_connect with that source) fails with ENETUNREACH, since a
 *   source must be an address of the node or sit in the local table.
 *   IPv6 has no such check and picks a node address by itself. */
static int routing_add(struct em_nf *nf, struct mnl_socket *rt,
		       const struct em_nf_config *cfg)
{
	const struct em_nf_plan *p = &nf->plan;
	int ret;

	ret = route_add(nf, rt, AF_INET, cfg->route_table, NULL, 0);
	if (ret == 0)
		ret = rule_add(nf, rt, AF_INET, cfg);
	if (ret == 0 && em_nf_plan_has_v6(p)) {
		ret = route_add(nf, rt, AF_INET6, cfg->route_table, NULL, 0);
		if (ret == 0)
			ret = rule_add(nf, rt, AF_INET6, cfg);
	}
	return ret;
}

/* The main-table routes of the fake ranges: only while the table exists
 * (added after it, removed before it), since without the table's scope
 * chain a LAN neighbour routing the fake range here would reach host
 * sockets bound to 0.0.0.0. */
static int routing_add_main(struct em_nf *nf, struct mnl_socket *rt,
			    const struct em_nf_config *cfg)
{
	const struct em_nf_plan *p = &nf->plan;
	int ret = 0;

	for (unsigned i = 0; ret == 0 && cfg->main_route && i < p->n_fake; i++)
		ret = route_add(nf, rt, p->capture[i].family, RT_TABLE_MAIN,
				p->capture[i].addr, p->capture[i].plen);
	return ret;
}

void em_nf_main_routes_del(struct em_nf *nf, struct mnl_socket *rt)
{
	for (unsigned i = nf->n_undo; i-- > 0;)
		if (!nf->undo[i].is_rule && nf->undo[i].route.table == RT_TABLE_MAIN)
			em_nf_route_local(rt, false, &nf->undo[i].route);
}

int em_nf_routing_ensure(struct em_nf *nf, struct mnl_socket *rt, unsigned *readded)
{
	int first = 0;

	*readded = 0;
	for (unsigned i = 0; i < nf->n_undo; i++) {
		const struct undo *u = &nf->undo[i];
		int ret = u->is_rule ? em_nf_rule_fwmark(rt, true, &u->rule)
				     : em_nf_route_local(rt, true, &u->route);

		if (ret == 0)
			(*readded)++;
		else if (ret != -EEXIST && !first)
			first = ret;
	}
	return first;
}

int em_nf_table_batch(struct mnl_socket *nl, const struct em_nf_plan *p, bool install)
{
	struct em_nf_batch b;
	const char *bad = NULL;
	int ret;

	ret = em_nf_batch_init(&b, batch_seq());
	if (ret < 0)
		return ret;
	ret = install ? em_nf_ruleset_build_install(&b, p) : em_nf_ruleset_build_remove(&b, p);
	if (ret < 0)
		em_err("nf: building the nftables batch: %s", strerror(-ret));
	else if ((ret = em_nf_batch_send(nl, &b, &bad)) < 0)
		em_err("nf: the kernel refused the %s of table inet %s (%s): %s",
		       install ? "installation" : "removal", EM_NF_TABLE,
		       bad ? bad : "whole batch", strerror(-ret));
	em_nf_batch_fini(&b);
	return ret;
}

int em_nf_install(const struct em_nf_config *cfg, struct em_nf **out)
{
	struct mnl_socket *nl = NULL, *rt = NULL;
	struct em_nf *nf;
	char range[EM_CIDR_STRLEN], range6[EM_CIDR_STRLEN];
	int ret = -ENOMEM;

	*out = NULL;
	nf = calloc(1, sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	pthread_mutex_init(&nf->lock, NULL);
	ret = em_nf_plan_from_config(cfg, &nf->plan);
	if (ret < 0)
		goto err_free;

	nl = em_nf_nl_open(NETLINK_NETFILTER);
	rt = nl ? em_nf_nl_open(NETLINK_ROUTE) : NULL;
	if (!nl || !rt) {
		ret = -errno;
		em_err("nf: cannot open netlink: %s", strerror(errno));
		goto err_close;
	}
	ret = choose_variant(nl, &nf->plan);
	if (ret < 0)
		goto err_close;

	/* Routing first: a packet marked before its route exists would be
	 * routed by the main table, off the node. */
	ret = routing_add(nf, rt, cfg);
	if (ret < 0)
		goto err_routing;
	ret = em_nf_table_batch(nl, &nf->plan, true);
	if (ret < 0)
		goto err_routing;
	ret = routing_add_main(nf, rt, cfg);
	if (ret < 0) {
		em_nf_table_batch(nl, &nf->plan, false);
		goto err_routing;
	}
	if (cfg->watch && (ret = em_nf_watch_start(nf)) < 0)
		em_warn("nf: cannot watch for a flushed ruleset (%s): a `nft flush ruleset` "
			"will not be repaired", strerror(-ret));

	em_info("nf: installed table inet %s: TCP to %s%s%s (+%u more ranges) -> port %u, "
		"mark 0x%x -> table %u; DNS queue %s",
		EM_NF_TABLE, em_cidr_format(&nf->plan.capture[0], range, sizeof(range)),
		nf->plan.n_fake > 1 ? " and " : "",
		nf->plan.n_fake > 1 ? em_cidr_format(&nf->plan.capture[1], range6,
							sizeof(range6)) : "",
		nf->plan.n_capture - nf->plan.n_fake, cfg->tproxy_port,
		cfg->capture_mark, cfg->route_table, em_nf_queue_variant_name(nf));
	if (nf->plan.n_client_ifaces + nf->plan.n_client_cidrs)
		em_info("nf: capture scope: lo, %u interface patterns, %u source ranges; "
			"strict reverse-path check", nf->plan.n_client_ifaces, nf->plan.n_client_cidrs);
	else
		em_info("nf: capture scope: anyone passing the strict reverse-path check");
	mnl_socket_close(rt);
	mnl_socket_close(nl);
	*out = nf;
	return 0;

err_routing:
	routing_remove(nf, rt);
err_close:
	if (rt)
		mnl_socket_close(rt);
	if (nl)
		mnl_socket_close(nl);
err_free:
	free(nf);
	return ret;
}

int em_nf_remove(struct em_nf *nf)
{
	struct mnl_socket *nl, *rt;
	int ret = 0, r;

	if (!nf)
		return 0;
	em_nf_watch_stop(nf);
	/* The fake ranges' main routes before the table (never the route
	 * without the table), the table before the policy routing: marked
	 * packets without the local route would leave by the main table for
	 * a moment otherwise. */
	rt = em_nf_nl_open(NETLINK_ROUTE);
	if (rt)
		em_nf_main_routes_del(nf, rt);
	nl = em_nf_nl_open(NETLINK_NETFILTER);
	if (!nl) {
		ret = -errno;
		em_err("nf: cannot open netlink to remove table inet %s: %s",
		       EM_NF_TABLE, strerror(errno));
	} else {
		ret = em_nf_table_batch(nl, &nf->plan, false);
		mnl_socket_close(nl);
	}
	if (!rt) {
		r = -errno;
		em_err("nf: cannot open rtnetlink to remove the policy routing: %s",
		       strerror(errno));
	} else {
		r = routing_remove(nf, rt);
		mnl_socket_close(rt);
	}
	if (!ret)
		ret = r;
	if (!ret)
		em_info("nf: removed table inet %s and its policy routing", EM_NF_TABLE);
	free(nf->udp);
	pthread_mutex_destroy(&nf->lock);
	free(nf);
	return ret;
}

int em_nf_cleanup(const struct em_nf_config *cfg)
{
	struct em_nf *nf = calloc(1, sizeof(*nf));
	int ret;

	if (!nf)
		return -ENOMEM;
	pthread_mutex_init(&nf->lock, NULL);
	ret = em_nf_plan_from_config(cfg, &nf->plan);
	if (ret < 0) {
		free(nf);
		return ret;
	}
	/* compat-ip removes the inet table and the ip/ip6 ones */
	nf->plan.variant = EM_NF_QUEUE_COMPAT_IP;
	for (int v6 = 0; v6 < 2; v6++) {
		int family = v6 ? AF_INET6 : AF_INET;

		nf->undo[nf->n_undo++] = (struct undo){ .route = {
			.family = family, .table = cfg->route_table } };
		nf->undo[nf->n_undo++] = (struct undo){ .is_rule = true, .rule = {
			.family = family, .fwmark = cfg->capture_mark,
			.table = cfg->route_table, .priority = cfg->rule_priority } };
	}
	for (unsigned i = 0; cfg->main_route && i < nf->plan.n_fake && nf->n_undo < MAX_UNDO; i++) {
		struct undo u = { .route = { .family = nf->plan.capture[i].family,
			.table = RT_TABLE_MAIN, .dst_len = nf->plan.capture[i].plen } };

		memcpy(u.route.dst, nf->plan.capture[i].addr, 16);
		nf->undo[nf->n_undo++] = u;
	}
	return em_nf_remove(nf);
}

int em_nf_udp_apply(struct em_nf *nf, struct mnl_socket *nl,
		    const struct em_nf_udp_port *ports, size_t n)
{
	struct em_nf_batch b;
	const char *bad = NULL;
	int ret = em_nf_batch_init(&b, batch_seq());

	if (ret == 0) {
		ret = em_nf_ruleset_build_udp_sync(&b, &nf->plan, ports, n);
		if (ret == 0)
			ret = em_nf_batch_send(nl, &b, &bad);
		em_nf_batch_fini(&b);
	}
	return ret;
}

int em_nf_udp_sync(struct em_nf *nf, const struct em_nf_udp_port *ports, size_t n)
{
	struct mnl_socket *nl = em_nf_nl_open(NETLINK_NETFILTER);
	int ret;

	if (!nl)
		return -errno;
	pthread_mutex_lock(&nf->lock);
	ret = em_nf_udp_apply(nf, nl, ports, n);
	if (ret == 0) {	/* remembered for a reinstall by the watcher */
		struct em_nf_udp_port *copy = n ? malloc(n * sizeof(*copy)) : NULL;

		if (n && !copy) {
			ret = -ENOMEM;
		} else {
			if (n)
				memcpy(copy, ports, n * sizeof(*copy));
			free(nf->udp);
			nf->udp = copy;
			nf->n_udp = n;
		}
	}
	pthread_mutex_unlock(&nf->lock);
	mnl_socket_close(nl);
	return ret;
}
