/* nf-driver.c — test driver for netns-tests/nf-ruleset.sh: em_nf_install
 * with the flags' config, print "ready <variant>", wait for SIGTERM or
 * SIGINT, em_nf_remove. Exit 0 only if both worked.
 *
 * With --listen it also binds the DNS queues and accepts every packet
 * unchanged, printing "queued <queue number>" per packet: proof that the
 * queue rules deliver (the DNS rewriter proper is another area's). */
/* glibc's netinet/in.h before linux/netfilter.h's linux/in.h */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "nf/nf.h"
#include "util/log.h"

static const char usage[] =
	"usage: nf-driver [--fake4 CIDR] [--fake6 CIDR] [--capture CIDR]... [--port N]\n"
	"                 [--client-iface NAME]... [--client-cidr CIDR]...\n"
	"                 [--queue-num N] [--queues N] [--no-fanout] [--no-dns-host]\n"
	"                 [--no-dns-pods] [--no-main-route] [--mark M] [--bypass-mark M]\n"
	"                 [--table N] [--priority N] [--variant auto|native|compat-inet|compat-ip]\n"
	"                 [--listen] [--debug]\n";

#define QBUF 65536

static int queue_cmd(struct mnl_socket *nl, uint16_t queue, uint8_t cmd)
{
	char buf[8192];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, cmd);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) == -1)
		return -errno;
	/* wait for the ack: a refused bind (EBUSY) must not go unnoticed */
	n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n == -1 || mnl_cb_run(buf, (size_t)n, 0, mnl_socket_get_portid(nl), NULL, NULL) == -1)
		return -errno;
	if (cmd == NFQNL_CFG_CMD_BIND) {
		nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
		nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 64);
		if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) == -1)
			return -errno;
	}
	return 0;
}

/* Bind queues first..first+n-1 to one socket; NULL on failure. */
static struct mnl_socket *queue_open(uint16_t first, uint16_t n)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);

	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == -1) {
		perror("nf-driver: queue socket");
		return NULL;
	}
	for (unsigned q = first; q < (unsigned)first + n; q++)
		if (queue_cmd(nl, (uint16_t)q, NFQNL_CFG_CMD_BIND) < 0) {
			perror("nf-driver: bind queue");
			mnl_socket_close(nl);
			return NULL;
		}
	return nl;
}

/* Accept every queued packet as it is. */
static void queue_drain(struct mnl_socket *nl)
{
	static char buf[QBUF];
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	int left = (int)n;

	for (; n > 0 && mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		struct nlattr *attr[NFQA_MAX + 1] = { 0 };
		const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
		const struct nfqnl_msg_packet_hdr *ph;
		char vbuf[512];
		struct nlmsghdr *v;
		uint16_t queue = ntohs(nfg->res_id);

		if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
			continue;
		ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
		/* Printed before the verdict: once the client has its
		 * answer, the line is already there for the script to count. */
		printf("queued %u\n", queue);
		fflush(stdout);
		v = nfq_nlmsg_put(vbuf, NFQNL_MSG_VERDICT, queue);
		nfq_nlmsg_verdict_put(v, (int)ntohl(ph->packet_id), NF_ACCEPT);
		if (mnl_socket_sendto(nl, v, v->nlmsg_len) == -1)
			perror("nf-driver: verdict");
	}
}

static unsigned long num(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v > max) {
		fprintf(stderr, "nf-driver: \"%s\" is not a number up to %lu\n", s, max);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "fake4", required_argument, NULL, '4' },
		{ "fake6", required_argument, NULL, '6' },
		{ "capture", required_argument, NULL, 'c' },
		{ "client-iface", required_argument, NULL, 'I' },
		{ "client-cidr", required_argument, NULL, 'C' },
		{ "port", required_argument, NULL, 'p' },
		{ "queue-num", required_argument, NULL, 'q' },
		{ "queues", required_argument, NULL, 'n' },
		{ "no-fanout", no_argument, NULL, 'F' },
		{ "no-dns-host", no_argument, NULL, 'H' },
		{ "no-dns-pods", no_argument, NULL, 'P' },
		{ "no-main-route", no_argument, NULL, 'R' },
		{ "mark", required_argument, NULL, 'm' },
		{ "bypass-mark", required_argument, NULL, 'b' },
		{ "table", required_argument, NULL, 't' },
		{ "priority", required_argument, NULL, 'r' },
		{ "variant", required_argument, NULL, 'v' },
		{ "debug", no_argument, NULL, 'd' },
		{ "listen", no_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *captures[16], *ifaces[16], *cidrs[16];
	struct em_nf_config cfg;
	struct em_nf *nf;
	struct mnl_socket *qnl = NULL;
	bool listen = false;
	sigset_t set;
	int opt, ret, sfd;

	em_nf_config_defaults(&cfg);
	cfg.capture_cidrs = captures;
	cfg.client_ifaces = ifaces;
	cfg.client_cidrs = cidrs;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case '4': cfg.fake_ipv4 = optarg; break;
		case '6': cfg.fake_ipv6 = optarg; break;
		case 'c':
			if (cfg.n_capture_cidrs >= 16) {
				fprintf(stderr, "nf-driver: at most 16 --capture\n");
				return 2;
			}
			captures[cfg.n_capture_cidrs++] = optarg;
			break;
		case 'p': cfg.tproxy_port = (uint16_t)num(optarg, 65535); break;
		case 'q': cfg.queue_num = (uint16_t)num(optarg, 65535); break;
		case 'n': cfg.queues = (uint16_t)num(optarg, 65535); break;
		case 'F': cfg.queue_cpu_fanout = false; break;
		case 'H': cfg.dns_host = false; break;
		case 'P': cfg.dns_pods = false; break;
		case 'R': cfg.main_route = false; break;
		case 'I':
			if (cfg.n_client_ifaces < 16)
				ifaces[cfg.n_client_ifaces++] = optarg;
			break;
		case 'C':
			if (cfg.n_client_cidrs < 16)
				cidrs[cfg.n_client_cidrs++] = optarg;
			break;
		case 'm': cfg.capture_mark = (uint32_t)num(optarg, UINT32_MAX); break;
		case 'b': cfg.bypass_mark = (uint32_t)num(optarg, UINT32_MAX); break;
		case 't': cfg.route_table = (uint32_t)num(optarg, UINT32_MAX); break;
		case 'r': cfg.rule_priority = (uint32_t)num(optarg, UINT32_MAX); break;
		case 'v':
			if (strcmp(optarg, "auto") == 0)
				cfg.queue_variant = EM_NF_QUEUE_AUTO;
			else if (strcmp(optarg, "native") == 0)
				cfg.queue_variant = EM_NF_QUEUE_NATIVE;
			else if (strcmp(optarg, "compat-inet") == 0)
				cfg.queue_variant = EM_NF_QUEUE_COMPAT_INET;
			else if (strcmp(optarg, "compat-ip") == 0)
				cfg.queue_variant = EM_NF_QUEUE_COMPAT_IP;
			else {
				fprintf(stderr, "nf-driver: variant \"%s\": expected auto, native, "
					"compat-inet or compat-ip\n", optarg);
				return 2;
			}
			break;
		case 'd': em_log_set_level(EM_LOG_DEBUG); break;
		case 'l': listen = true; break;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}

	/* Block first so a SIGTERM right after "ready" is not lost. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	ret = em_nf_install(&cfg, &nf);
	if (ret < 0) {
		fprintf(stderr, "nf-driver: install failed: %s\n", strerror(-ret));
		return 1;
	}
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (listen && cfg.queues)
		qnl = queue_open(cfg.queue_num, cfg.queues);
	if (sfd == -1 || (listen && cfg.queues && !qnl)) {
		em_nf_remove(nf);
		return 1;
	}
	printf("ready %s\n", em_nf_queue_variant_name(nf));
	fflush(stdout);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = qnl ? mnl_socket_get_fd(qnl) : -1, .events = POLLIN },
		};

		if (poll(pfd, 2, -1) == -1 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents)
			queue_drain(qnl);
	}
	if (qnl)
		mnl_socket_close(qnl);	/* unbinds the queues */
	close(sfd);
	ret = em_nf_remove(nf);
	if (ret < 0) {
		fprintf(stderr, "nf-driver: remove failed: %s\n", strerror(-ret));
		return 1;
	}
	return 0;
}
