/* watch.c — the ruleset stays true: a thread listens to nftables events
 * (NFNLGRP_NFTABLES) and to routing rule/route events, and when somebody
 * else removes or changes table inet edgemesh (Debian's `systemctl restart
 * nftables` runs `flush ruleset`), a policy rule or one of our routes, it
 * puts them back within ~50 ms of the last event, logging once per repair.
 *
 * Our own batches and route changes are told apart by the netlink port id
 * the kernel puts in every notification (the requester's): repairs go
 * through sockets of this thread, whose port ids are ignored. When the
 * event socket overflows (ENOBUFS), everything is checked. */
#include "nf/nf-internal.h"
#include "util/clock.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

#define QUIET_MS 50	/* wait for the burst of a flush to end */

struct em_nf_watch {
	struct em_nf *nf;
	pthread_t thread;
	int stop_fd;
	struct mnl_socket *ev_nft, *ev_rt;	/* subscribed to events */
	struct mnl_socket *nl, *rt;		/* repairs (their port ids are ours) */
	uint64_t repairs;
};

static struct mnl_socket *subscribe(int bus, const unsigned *groups, size_t n)
{
	struct mnl_socket *s = mnl_socket_open2(bus, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int size = 1 << 20;

	if (!s)
		return NULL;
	if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) == -1)
		goto fail;
	/* a flush of a big ruleset is a burst: a large buffer, and ENOBUFS
	 * (overflow) is handled as "check everything" */
	setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	for (size_t i = 0; i < n; i++) {
		unsigned g = groups[i];

		if (mnl_socket_setsockopt(s, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) == -1)
			goto fail;
	}
	return s;
fail:
	{
		int err = errno;
		mnl_socket_close(s);
		errno = err;
	}
	return NULL;
}

/* nftables: a deletion (table, chain, rule) in a table named like ours,
 * by somebody else. The first attribute of table, chain and rule messages
 * is the table name (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE). */
static bool nft_event_hits_us(const struct nlmsghdr *nlh, uint32_t ours)
{
	uint16_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);
	const struct nlattr *a;

	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES || nlh->nlmsg_pid == ours)
		return false;
	if (type != NFT_MSG_DELTABLE && type != NFT_MSG_DELCHAIN && type != NFT_MSG_DELRULE)
		return false;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) != 1)
			continue;
		return mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0 &&
		       strcmp(mnl_attr_get_str(a), EM_NF_TABLE) == 0;
	}
	return false;
}

/* Drains s; sets *hit when a message concerns us, *overflow on ENOBUFS. */
static void drain(struct mnl_socket *s, bool nft, uint32_t ours, bool *hit, bool *overflow)
{
	char buf[16384] __attribute__((aligned(8)));

	for (;;) {
		ssize_t n = recv(mnl_socket_get_fd(s), buf, sizeof(buf), MSG_DONTWAIT);
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		int left;

		if (n == -1) {
			if (errno == ENOBUFS)
				*overflow = true;
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			return;
		}
		left = (int)n;
		for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nft ? nft_event_hits_us(nlh, ours)
				: ((nlh->nlmsg_type == RTM_DELRULE || nlh->nlmsg_type == RTM_DELROUTE) &&
				   nlh->nlmsg_pid != ours))
				*hit = true;
		}
	}
}

/* Is table inet edgemesh there? 1 yes, 0 no, -errno. */
static int table_present(struct mnl_socket *nl)
{
	char buf[8192] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *g;
	uint32_t seq = (uint32_t)em_clock_ms(), portid = mnl_socket_get_portid(nl);

	nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = NFPROTO_INET;
	g->version = NFNETLINK_V0;
	mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, EM_NF_TABLE);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) == -1)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
		int left;

		if (n == -1)
			return -errno;
		left = (int)n;
		for (; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			const struct nlmsgerr *e;

			if (h->nlmsg_seq != seq || h->nlmsg_pid != portid ||
			    h->nlmsg_type != NLMSG_ERROR || h->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
				continue;
			e = mnl_nlmsg_get_payload(h);
			return e->error == 0 ? 1 : e->error == -ENOENT ? 0 : e->error;
		}
	}
}

static void repair(struct em_nf_watch *w, bool table_hit, bool route_hit, bool overflow)
{
	uint64_t t0 = em_clock_ms();
	unsigned readded = 0;
	int ret;

	if (!table_hit && overflow)
		table_hit = table_present(w->nl) == 0;
	if (table_hit) {
		/* never the fake ranges' local route without the table: out
		 * first, back after; the UDP sets get their last contents */
		pthread_mutex_lock(&w->nf->lock);
		em_nf_main_routes_del(w->nf, w->rt);
		ret = em_nf_table_batch(w->nl, &w->nf->plan, true);
		if (ret == 0 && w->nf->n_udp &&
		    (ret = em_nf_udp_apply(w->nf, w->nl, w->nf->udp, w->nf->n_udp)) < 0)
			em_err("nf: refilling the UDP capture sets: %s", strerror(-ret));
		pthread_mutex_unlock(&w->nf->lock);
		w->repairs++;
		if (ret == 0)
			em_warn("nf: table inet %s was removed or changed by someone else "
				"(nft flush ruleset?); reinstalled in %llu ms (repair %llu)",
				EM_NF_TABLE, (unsigned long long)(em_clock_ms() - t0),
				(unsigned long long)w->repairs);
	}
	if (table_hit || route_hit || overflow) {
		ret = em_nf_routing_ensure(w->nf, w->rt, &readded);
		if (ret < 0)
			em_err("nf: putting back the policy routing: %s", strerror(-ret));
		else if (readded && !table_hit)
			em_warn("nf: %u policy rule(s)/route(s) were removed by someone else; put back",
				readded);
	}
}

static void *watch_main(void *arg)
{
	struct em_nf_watch *w = arg;
	uint32_t nl_id = mnl_socket_get_portid(w->nl), rt_id = mnl_socket_get_portid(w->rt);
	bool table_hit = false, route_hit = false, overflow = false;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = w->stop_fd, .events = POLLIN },
			{ .fd = mnl_socket_get_fd(w->ev_nft), .events = POLLIN },
			{ .fd = mnl_socket_get_fd(w->ev_rt), .events = POLLIN },
		};
		bool pending = table_hit || route_hit || overflow;
		int n = poll(p, 3, pending ? QUIET_MS : -1);

		if (n == -1 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (n == 0) {	/* quiet since the last event: repair */
			repair(w, table_hit, route_hit, overflow);
			table_hit = route_hit = overflow = false;
			continue;
		}
		if (p[1].revents)
			drain(w->ev_nft, true, nl_id, &table_hit, &overflow);
		if (p[2].revents)
			drain(w->ev_rt, false, rt_id, &route_hit, &overflow);
	}
	return NULL;
}

static void watch_free(struct em_nf_watch *w)
{
	if (w->stop_fd != -1)
		close(w->stop_fd);
	if (w->ev_nft)
		mnl_socket_close(w->ev_nft);
	if (w->ev_rt)
		mnl_socket_close(w->ev_rt);
	if (w->nl)
		mnl_socket_close(w->nl);
	if (w->rt)
		mnl_socket_close(w->rt);
	free(w);
}

int em_nf_watch_start(struct em_nf *nf)
{
	static const unsigned nft_groups[] = { NFNLGRP_NFTABLES };
	static const unsigned rt_groups[] = { RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE,
					      RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE };
	struct em_nf_watch *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->nf = nf;
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->ev_nft = subscribe(NETLINK_NETFILTER, nft_groups, 1);
	w->ev_rt = w->ev_nft ? subscribe(NETLINK_ROUTE, rt_groups, 4) : NULL;
	w->nl = w->ev_rt ? em_nf_nl_open(NETLINK_NETFILTER) : NULL;
	w->rt = w->nl ? em_nf_nl_open(NETLINK_ROUTE) : NULL;
	if (w->stop_fd == -1 || !w->rt) {
		ret = -errno;
		watch_free(w);
		return ret ? ret : -ENOMEM;
	}
	if ((ret = pthread_create(&w->thread, NULL, watch_main, w)) != 0) {
		watch_free(w);
		return -ret;
	}
	nf->watch = w;
	return 0;
}

void em_nf_watch_stop(struct em_nf *nf)
{
	struct em_nf_watch *w = nf->watch;
	uint64_t one = 1;

	if (!w)
		return;
	if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
		em_warn("nf: cannot stop the ruleset watcher cleanly");
	pthread_join(w->thread, NULL);
	watch_free(w);
	nf->watch = NULL;
}
