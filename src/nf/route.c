/* route.c — the policy routing half of the capture, over rtnetlink:
 * `ip rule ... fwmark M lookup T` and `ip route ... local X dev lo`. */
#include "nf/nf-internal.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <time.h>

/* A request is < 100 bytes; an ack (NETLINK_CAP_ACK) smaller still. */
#define RT_BUF 8192

/* Send one request with NLM_F_ACK and return the kernel's verdict. */
static int talk(struct mnl_socket *rt, struct nlmsghdr *nlh)
{
	char buf[RT_BUF];
	uint32_t portid = mnl_socket_get_portid(rt);
	uint32_t seq = nlh->nlmsg_seq;

	if (mnl_socket_sendto(rt, nlh, nlh->nlmsg_len) == -1)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(rt, buf, sizeof(buf));
		const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
		int left;

		if (n == -1)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		/* Parsed by hand rather than with mnl_cb_run: that one reports
		 * a foreign seq as ESRCH, which is also what the kernel says
		 * for "no such route". */
		left = (int)n;
		for (; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			const struct nlmsgerr *e;

			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != seq ||
			    h->nlmsg_pid != portid ||
			    h->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
				continue;
			e = mnl_nlmsg_get_payload(h);
			return e->error;
		}
	}
}

static uint32_t next_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)time(NULL);
	return ++seq;
}

int em_nf_route_local(struct mnl_socket *rt, bool add, const struct em_nf_route *r)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;
	unsigned lo = if_nametoindex("lo");

	if (!lo)
		return -errno;
	nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	if (add)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = next_seq();
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (unsigned char)r->family;
	rtm->rtm_dst_len = r->dst_len;
	rtm->rtm_table = r->table < 256 ? (unsigned char)r->table : RT_TABLE_UNSPEC;
	rtm->rtm_type = RTN_LOCAL;
	if (add) {
		rtm->rtm_protocol = RTPROT_STATIC;
		rtm->rtm_scope = RT_SCOPE_HOST;
	} else {
		/* Match any protocol: a route found at install (EEXIST from a
		 * crashed run) counts as ours whoever created it. */
		rtm->rtm_protocol = RTPROT_UNSPEC;
		rtm->rtm_scope = RT_SCOPE_NOWHERE;
	}
	mnl_attr_put_u32(nlh, RTA_TABLE, r->table);
	if (r->dst_len)
		mnl_attr_put(nlh, RTA_DST, r->family == AF_INET6 ? 16 : 4, r->dst);
	if (add && r->has_prefsrc && r->family == AF_INET)
		mnl_attr_put(nlh, RTA_PREFSRC, 4, r->prefsrc);
	mnl_attr_put_u32(nlh, RTA_OIF, lo);
	return talk(rt, nlh);
}

int em_nf_rule_fwmark(struct mnl_socket *rt, bool add, const struct em_nf_rule *r)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct fib_rule_hdr *frh;

	nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	/* NLM_F_EXCL makes the kernel compare with existing rules (since
	 * 4.x); without it a restart after a crash would stack duplicates. */
	if (add)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = next_seq();
	frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = (unsigned char)r->family;
	frh->action = FR_ACT_TO_TBL;
	frh->table = r->table < 256 ? (unsigned char)r->table : RT_TABLE_UNSPEC;
	/* No FRA_FWMASK: the kernel then uses 0xffffffff, as `ip rule` does. */
	mnl_attr_put_u32(nlh, FRA_FWMARK, r->fwmark);
	mnl_attr_put_u32(nlh, FRA_TABLE, r->table);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, r->priority);
	return talk(rt, nlh);
}
