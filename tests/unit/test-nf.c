/* test-nf.c — the nf area's pure logic: config checking and
 * the nfnetlink batches built into a buffer (parsed back and checked without
 * a kernel). The kernel side is netns-tests/nf-ruleset.sh. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/xt_NFQUEUE.h>
#include <libmnl/libmnl.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <string.h>

#include "nf/nf-internal.h"
#include "nf/nf.h"
#include "util/log.h"
#include "testlog.h"

Suite *nf_suite(void);

/* ---- config to plan ---- */

static int plan_with(void (*tweak)(struct em_nf_config *), struct em_nf_plan *p)
{
	struct em_nf_config cfg;

	em_nf_config_defaults(&cfg);
	if (tweak)
		tweak(&cfg);
	return em_nf_plan_from_config(&cfg, p);
}

START_TEST(plan_defaults)
{
	struct em_nf_config cfg;
	struct em_nf_plan p;

	em_nf_config_defaults(&cfg);
	ck_assert_str_eq(cfg.fake_ipv4, "198.18.0.0/16");
	ck_assert_int_eq(cfg.tproxy_port, 15001);
	ck_assert_uint_eq(cfg.capture_mark, 0x1e2);
	ck_assert_uint_eq(cfg.bypass_mark, 0x1e3);
	ck_assert_uint_eq(cfg.route_table, 482);
	ck_assert(cfg.dns_host && cfg.dns_pods && cfg.main_route);
	ck_assert_int_eq(em_nf_plan_from_config(&cfg, &p), 0);
	ck_assert_uint_eq(p.n_capture, 1);
	ck_assert_uint_eq(p.n_fake, 1);
	ck_assert(!em_nf_plan_has_v6(&p));
	ck_assert_int_eq(p.tproxy4[0], 127);
	ck_assert_int_eq(p.tproxy4[3], 1);
}
END_TEST

static const char *const extra[] = { "10.96.0.0/12", "fd00:96::/108" };

static void t_v6(struct em_nf_config *c) { c->fake_ipv6 = "fd00:e3::/64"; c->capture_cidrs = extra; c->n_capture_cidrs = 2; }
static void t_empty_v6(struct em_nf_config *c) { c->fake_ipv6 = ""; }
static void t_bad4(struct em_nf_config *c) { c->fake_ipv4 = "198.18.0.1/16"; }
static void t_v6_as_4(struct em_nf_config *c) { c->fake_ipv4 = "fd00:e3::/64"; }
static void t_null4(struct em_nf_config *c) { c->fake_ipv4 = NULL; }
static void t_same_marks(struct em_nf_config *c) { c->bypass_mark = c->capture_mark; }
static void t_zero_mark(struct em_nf_config *c) { c->capture_mark = 0; }
static void t_zero_bypass(struct em_nf_config *c) { c->bypass_mark = 0; }
static void t_main_table(struct em_nf_config *c) { c->route_table = 254; }
static void t_port0(struct em_nf_config *c) { c->tproxy_port = 0; }
static void t_queue_wrap(struct em_nf_config *c) { c->queue_num = 65535; c->queues = 2; }
static void t_prio(struct em_nf_config *c) { c->rule_priority = 32766; }
static void t_bad_tproxy6(struct em_nf_config *c) { c->fake_ipv6 = "fd00:e3::/64"; c->tproxy_ipv6 = "127.0.0.1"; }
static void t_bad_extra(struct em_nf_config *c)
{
	static const char *const e[] = { "10.96.0.0/12", "10.96.0.0" };
	c->capture_cidrs = e;
	c->n_capture_cidrs = 2;
}

START_TEST(plan_v6_and_extra)
{
	struct em_nf_plan p;

	ck_assert_int_eq(plan_with(t_v6, &p), 0);
	ck_assert_uint_eq(p.n_capture, 4);
	ck_assert_uint_eq(p.n_fake, 2);
	ck_assert(em_nf_plan_has_v6(&p));
	ck_assert_int_eq(p.tproxy6[15], 1);
	ck_assert_int_eq(plan_with(t_empty_v6, &p), 0);
	ck_assert_uint_eq(p.n_capture, 1);
}
END_TEST

START_TEST(plan_rejects)
{
	void (*bad[])(struct em_nf_config *) = {
		t_bad4, t_v6_as_4, t_null4, t_same_marks, t_zero_mark, t_zero_bypass,
		t_main_table, t_port0, t_queue_wrap, t_prio, t_bad_tproxy6, t_bad_extra,
	};
	struct em_nf_plan p;

	em_test_expect_errors(sizeof(bad) / sizeof(bad[0]));	/* one per refused config */

	em_log_set_level(EM_LOG_ERR - 1);	/* expected errors: keep the log quiet */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(plan_with(bad[i], &p) == -EINVAL, "config %zu accepted", i);
	em_log_reset();
}
END_TEST

/* ---- batches ---- */

struct walk {
	unsigned n, tables_new, tables_del, chains, rules, begin, end;
	unsigned tproxy, queue_native, queue_target, counters;
	unsigned sets, elem_msgs, lookups;	/* UDP capture sets (issue 15) */
	unsigned families[256];
	bool acks_all, seq_ok;
	uint32_t mark_set;
	uint16_t tproxy_port_be;
	struct xt_NFQ_info_v3 nfq;
	uint16_t queue_flags;
};

static int expr_cb(struct nftnl_expr *e, void *data)
{
	struct walk *w = data;
	const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
	uint32_t len;

	if (strcmp(name, "lookup") == 0)
		w->lookups++;
	if (strcmp(name, "tproxy") == 0)
		w->tproxy++;
	else if (strcmp(name, "queue") == 0) {
		w->queue_native++;
		w->queue_flags = nftnl_expr_get_u16(e, NFTNL_EXPR_QUEUE_FLAGS);
	} else if (strcmp(name, "target") == 0) {
		const void *info = nftnl_expr_get(e, NFTNL_EXPR_TG_INFO, &len);

		w->queue_target++;
		ck_assert_str_eq(nftnl_expr_get_str(e, NFTNL_EXPR_TG_NAME), "NFQUEUE");
		ck_assert_uint_eq(nftnl_expr_get_u32(e, NFTNL_EXPR_TG_REV), 3);
		ck_assert_uint_ge(len, sizeof(w->nfq));
		memcpy(&w->nfq, info, sizeof(w->nfq));
	} else if (strcmp(name, "counter") == 0)
		w->counters++;
	else if (strcmp(name, "immediate") == 0 &&
		 nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_DREG) == NFT_REG_2) {
		const void *d = nftnl_expr_get(e, NFTNL_EXPR_IMM_DATA, &len);

		ck_assert_uint_eq(len, 2);
		memcpy(&w->tproxy_port_be, d, 2);
	} else if (strcmp(name, "immediate") == 0 &&
		   nftnl_expr_is_set(e, NFTNL_EXPR_IMM_DATA)) {
		const void *d = nftnl_expr_get(e, NFTNL_EXPR_IMM_DATA, &len);

		if (len == 4)
			memcpy(&w->mark_set, d, 4);
	}
	return 0;
}

static void walk_batch(const struct em_nf_batch *b, struct walk *w)
{
	size_t len;
	const void *data = em_nf_batch_data(b, &len);
	const struct nlmsghdr *nlh = data;
	int left = (int)len;
	uint32_t want_seq = b->seq_begin;

	memset(w, 0, sizeof(*w));
	w->acks_all = true;
	w->seq_ok = true;
	for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
		uint16_t type = nlh->nlmsg_type;

		w->n++;
		if (nlh->nlmsg_seq != want_seq++)
			w->seq_ok = false;
		if (type == NFNL_MSG_BATCH_BEGIN) {
			ck_assert_int_eq(w->n, 1);
			ck_assert_int_eq(ntohs(nfg->res_id), NFNL_SUBSYS_NFTABLES);
			w->begin++;
			continue;
		}
		if (type == NFNL_MSG_BATCH_END) {
			w->end++;
			continue;
		}
		ck_assert_int_eq(NFNL_SUBSYS_ID(type), NFNL_SUBSYS_NFTABLES);
		ck_assert_msg(w->end == 0, "message after the batch end");
		if (!(nlh->nlmsg_flags & NLM_F_ACK))
			w->acks_all = false;
		w->families[nfg->nfgen_family]++;
		switch (NFNL_MSG_TYPE(type)) {
		case NFT_MSG_NEWTABLE: w->tables_new++; break;
		case NFT_MSG_DELTABLE: w->tables_del++; break;
		case NFT_MSG_NEWCHAIN: w->chains++; break;
		case NFT_MSG_NEWSET: w->sets++; break;
		case NFT_MSG_NEWSETELEM: case NFT_MSG_DELSETELEM: w->elem_msgs++; break;
		case NFT_MSG_NEWRULE: {
			struct nftnl_rule *r = nftnl_rule_alloc();

			ck_assert_ptr_nonnull(r);
			ck_assert_int_eq(nftnl_rule_nlmsg_parse(nlh, r), 0);
			nftnl_expr_foreach(r, expr_cb, w);
			nftnl_rule_free(r);
			w->rules++;
			break;
		}
		default:
			ck_abort_msg("unexpected message type %u", NFNL_MSG_TYPE(type));
		}
	}
	ck_assert_int_eq(left, 0);	/* no trailing garbage */
}

static void build(void (*tweak)(struct em_nf_config *), enum em_nf_queue_variant v,
		  struct walk *w)
{
	struct em_nf_plan p;
	struct em_nf_batch b;

	ck_assert_int_eq(plan_with(tweak, &p), 0);
	p.variant = v;
	ck_assert_int_eq(em_nf_batch_init(&b, 1000), 0);
	ck_assert_int_eq(em_nf_ruleset_build_install(&b, &p), 0);
	walk_batch(&b, w);
	ck_assert_uint_eq(w->n, b.n_msgs + 2);
	em_nf_batch_fini(&b);
}

START_TEST(batch_install_native)
{
	struct walk w;

	build(NULL, EM_NF_QUEUE_NATIVE, &w);
	ck_assert(w.seq_ok && w.acks_all);
	ck_assert_uint_eq(w.begin, 1);
	ck_assert_uint_eq(w.end, 1);
	/* stale inet, ip, ip6 replaced: 3 add+delete, then our table */
	ck_assert_uint_eq(w.tables_del, 3);
	ck_assert_uint_eq(w.tables_new, 4);
	ck_assert_uint_eq(w.chains, 3 + 2);	/* + scope, refuse */
	/* 3 bypass returns, tproxy, mark, 2 queues, UDP tproxy + UDP mark;
	 * refuse: drop + DNS, scope: lo + reverse path, the jump */
	ck_assert_uint_eq(w.rules, 9 + 2 + 2 + 1);
	ck_assert_uint_eq(w.tproxy, 2);
	ck_assert_uint_eq(w.sets, 1);
	ck_assert_uint_eq(w.lookups, 2);
	ck_assert_uint_eq(w.queue_native, 2);
	ck_assert_uint_eq(w.queue_target, 0);
	ck_assert_uint_eq(w.queue_flags, NFT_QUEUE_FLAG_BYPASS);
	ck_assert_uint_eq(ntohs(w.tproxy_port_be), 15001);
	ck_assert_uint_eq(w.mark_set, 0x1e2);
	ck_assert_uint_eq(w.families[NFPROTO_INET], 2 + 1 + 1 + (3 + 2) + (9 + 5));
}
END_TEST

static void t_fanout(struct em_nf_config *c) { c->queue_num = 4; c->queues = 3; }

START_TEST(batch_install_compat_inet)
{
	struct walk w;

	build(t_fanout, EM_NF_QUEUE_COMPAT_INET, &w);
	ck_assert_uint_eq(w.queue_native, 0);
	ck_assert_uint_eq(w.queue_target, 2);
	ck_assert_uint_eq(w.nfq.queuenum, 4);
	ck_assert_uint_eq(w.nfq.queues_total, 3);
	ck_assert_uint_eq(w.nfq.flags, NFQ_FLAG_BYPASS | NFQ_FLAG_CPU_FANOUT);
}
END_TEST

START_TEST(batch_install_compat_ip)
{
	struct walk w;

	build(NULL, EM_NF_QUEUE_COMPAT_IP, &w);
	ck_assert_uint_eq(w.queue_target, 4);	/* 2 hooks x ip, ip6 */
	ck_assert_uint_eq(w.nfq.flags, NFQ_FLAG_BYPASS);
	ck_assert_uint_eq(w.nfq.queues_total, 1);
	/* inet: prerouting + output; ip and ip6: two dns chains each; each
	 * of the three tables: scope + refuse */
	ck_assert_uint_eq(w.chains, 6 + 3 * 2);
	ck_assert_uint_eq(w.tables_new, 3 + 3);
	/* + refuse (DNS only), scope (lo, reverse path), the jump */
	ck_assert_uint_eq(w.families[NFPROTO_IPV4], 2 + 1 + 2 + 4 + 2 + 1 + 2 + 1);
	ck_assert_uint_eq(w.families[NFPROTO_IPV6], 2 + 1 + 2 + 4 + 2 + 1 + 2 + 1);
}
END_TEST

static void t_no_dns(struct em_nf_config *c) { c->queues = 0; }
static void t_host_only(struct em_nf_config *c) { c->dns_pods = false; }

START_TEST(batch_install_dns_choices)
{
	struct walk w;

	build(t_no_dns, EM_NF_QUEUE_NATIVE, &w);
	ck_assert_uint_eq(w.queue_native + w.queue_target, 0);
	ck_assert_uint_eq(w.chains, 2 + 2);
	build(t_host_only, EM_NF_QUEUE_NATIVE, &w);
	ck_assert_uint_eq(w.queue_native, 1);
	ck_assert_uint_eq(w.chains, 3 + 2);	/* + scope, refuse */
}
END_TEST

START_TEST(batch_install_many_ranges)
{
	struct walk w;

	build(t_v6, EM_NF_QUEUE_NATIVE, &w);
	/* TCP: every range; UDP: the two fake ranges only, by set */
	ck_assert_uint_eq(w.tproxy, 4 + 2);
	ck_assert_uint_eq(w.sets, 2);
	/* + refuse: 4 ranges + DNS; scope: lo, reverse path; the jump;
	 * + the raw chains for the 2 extra ranges: a bypass return and a
	 * notrack rule per range in each of prerouting_raw and output_raw. */
	ck_assert_uint_eq(w.rules, 3 + 4 + 4 + 2 + 4 + (4 + 1) + 2 + 1 + 1 + 2 * 2);
}
END_TEST

static void t_scoped(struct em_nf_config *c)
{
	static const char *const ifaces[] = { "auto", "pa0" };
	static const char *const cidrs[] = { "10.244.1.0/24" };

	c->client_ifaces = ifaces;
	c->n_client_ifaces = 2;
	c->client_cidrs = cidrs;
	c->n_client_cidrs = 1;
}

static void t_scoped_any(struct em_nf_config *c)
{
	static const char *const ifaces[] = { "pa0", "any" };

	c->client_ifaces = ifaces;
	c->n_client_ifaces = 2;
}

static void t_bad_iface(struct em_nf_config *c)
{
	static const char *const ifaces[] = { "a*b" };

	c->client_ifaces = ifaces;
	c->n_client_ifaces = 1;
}

START_TEST(batch_install_scope)
{
	struct walk w, base;
	struct em_nf_plan p;
	em_test_expect_error("client interface \"a*b\"");	/* t_bad_iface */
	build(NULL, EM_NF_QUEUE_NATIVE, &base);
	build(t_scoped, EM_NF_QUEUE_NATIVE, &w);
	/* auto's interfaces + pa0 + one range + the final goto */
	ck_assert_uint_eq(w.rules, base.rules + 8 + 1 + 1 + 1);
	build(t_scoped_any, EM_NF_QUEUE_NATIVE, &w);
	ck_assert_uint_eq(w.rules, base.rules);
	ck_assert_int_eq(plan_with(t_bad_iface, &p), -EINVAL);
}
END_TEST

/* The UDP capture sets are replaced in one batch: flush, then elements,
 * for each family that has a fake range. */
START_TEST(batch_udp_sync)
{
	struct em_nf_plan p;
	struct em_nf_batch b;
	struct walk w;
	struct em_nf_udp_port ports[600];

	memset(ports, 0, sizeof(ports));
	for (int i = 0; i < 600; i++) {
		ports[i].family = i == 599 ? AF_INET6 : AF_INET;
		ports[i].addr[0] = 198;
		ports[i].addr[1] = 18;
		ports[i].addr[3] = (uint8_t)i;
		ports[i].port = 53;
	}
	ck_assert_int_eq(plan_with(NULL, &p), 0);
	ck_assert_int_eq(em_nf_batch_init(&b, 5), 0);
	ck_assert_int_eq(em_nf_ruleset_build_udp_sync(&b, &p, ports, 600), 0);
	walk_batch(&b, &w);
	ck_assert(w.seq_ok && w.acks_all);
	/* IPv4 only (no fake IPv6 range): 1 flush + 599 in 3 messages of 256 */
	ck_assert_uint_eq(w.elem_msgs, 1 + 3);
	ck_assert_uint_eq(w.end, 1);
	em_nf_batch_fini(&b);

	ck_assert_int_eq(plan_with(t_v6, &p), 0);
	ck_assert_int_eq(em_nf_batch_init(&b, 5), 0);
	ck_assert_int_eq(em_nf_ruleset_build_udp_sync(&b, &p, ports, 0), 0);
	walk_batch(&b, &w);
	ck_assert_uint_eq(w.elem_msgs, 2);	/* two flushes: an empty sync empties both */
	em_nf_batch_fini(&b);
}
END_TEST

START_TEST(batch_remove)
{
	struct em_nf_plan p;
	struct em_nf_batch b;
	struct walk w;

	ck_assert_int_eq(plan_with(NULL, &p), 0);
	p.variant = EM_NF_QUEUE_COMPAT_INET;
	ck_assert_int_eq(em_nf_batch_init(&b, 7), 0);
	ck_assert_int_eq(em_nf_ruleset_build_remove(&b, &p), 0);
	walk_batch(&b, &w);
	ck_assert(w.seq_ok && w.acks_all);
	ck_assert_uint_eq(w.tables_new, 1);
	ck_assert_uint_eq(w.tables_del, 1);
	ck_assert_uint_eq(w.end, 1);
	em_nf_batch_fini(&b);

	p.variant = EM_NF_QUEUE_COMPAT_IP;
	ck_assert_int_eq(em_nf_batch_init(&b, 7), 0);
	ck_assert_int_eq(em_nf_ruleset_build_remove(&b, &p), 0);
	walk_batch(&b, &w);
	ck_assert_uint_eq(w.tables_del, 3);
	em_nf_batch_fini(&b);
}
END_TEST

START_TEST(batch_probe_has_no_end)
{
	struct em_nf_batch b;
	struct walk w;

	ck_assert_int_eq(em_nf_batch_init(&b, 1), 0);
	ck_assert_int_eq(em_nf_ruleset_build_probe(&b, EM_NF_QUEUE_NATIVE), 0);
	walk_batch(&b, &w);
	ck_assert_uint_eq(w.begin, 1);
	ck_assert_uint_eq(w.end, 0);	/* the kernel validates and aborts */
	ck_assert_uint_eq(w.queue_native, 2);
	ck_assert(!b.ended);
	em_nf_batch_fini(&b);

	ck_assert_int_eq(em_nf_batch_init(&b, 1), 0);
	ck_assert_int_eq(em_nf_ruleset_build_probe(&b, EM_NF_QUEUE_COMPAT_IP), 0);
	walk_batch(&b, &w);
	ck_assert_uint_eq(w.queue_target, 2);
	ck_assert_uint_eq(w.families[NFPROTO_IPV4], 5);
	em_nf_batch_fini(&b);
}
END_TEST

START_TEST(batch_after_end_fails)
{
	struct em_nf_plan p;
	struct em_nf_batch b;
	const char *bad = "x";

	ck_assert_int_eq(plan_with(NULL, &p), 0);
	p.variant = EM_NF_QUEUE_NATIVE;
	ck_assert_int_eq(em_nf_batch_init(&b, 1), 0);
	ck_assert_int_eq(em_nf_ruleset_build_install(&b, &p), 0);
	ck_assert_int_eq(em_nf_ruleset_build_remove(&b, &p), -E2BIG);
	/* a failed build is never sent */
	ck_assert_int_eq(em_nf_batch_send(NULL, &b, &bad), -E2BIG);
	ck_assert_ptr_null(bad);
	em_nf_batch_fini(&b);
}
END_TEST

Suite *nf_suite(void)
{
	Suite *s = suite_create("nf");
	TCase *tc = em_test_tcase(s, "plan");
	tcase_add_test(tc, plan_defaults);
	tcase_add_test(tc, plan_v6_and_extra);
	tcase_add_test(tc, plan_rejects);
	tc = em_test_tcase(s, "batch-install");
	tcase_add_test(tc, batch_install_native);
	tcase_add_test(tc, batch_install_compat_inet);
	tcase_add_test(tc, batch_install_compat_ip);
	tcase_add_test(tc, batch_install_dns_choices);
	tcase_add_test(tc, batch_install_many_ranges);
	tcase_add_test(tc, batch_install_scope);
	tc = em_test_tcase(s, "batch-remove");
	tcase_add_test(tc, batch_remove);
	tc = em_test_tcase(s, "batch-framing");
	tcase_add_test(tc, batch_udp_sync);
	tcase_add_test(tc, batch_probe_has_no_end);
	tcase_add_test(tc, batch_after_end_fails);
	return s;
}
