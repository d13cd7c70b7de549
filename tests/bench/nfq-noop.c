/* nfq-noop.c — the NFQUEUE floor for netns-tests/bench/run.sh: binds one
 * queue and accepts every packet unchanged, with the same batching as the
 * DNS rewriter (src/dns/queue.c): up to 32 packets per recvmmsg(), then one
 * NFQNL_MSG_VERDICT_BATCH accepting them all. No parsing, no rewriting: what
 * is left is the cost of the queue round trip itself.
 *
 * usage: nfq-noop QUEUE [READY_FILE]
 * Writes READY_FILE (if given) once bound; stops on SIGINT/SIGTERM and
 * prints "packets=N" on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define SLOT 4096

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int config(struct mnl_socket *nl, uint16_t q, int cmd)
{
	char buf[8192];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q);

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (cmd >= 0) {
		nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, (uint8_t)cmd);
	} else {
		nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 512);
		nfq_nlmsg_cfg_put_qmaxlen(nlh, 4096);
	}
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0 || mnl_cb_run(buf, (size_t)n, 0, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		return -errno;
	return 0;
}

static uint32_t packet_id(const struct nlmsghdr *nlh)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return 0;
	struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	return ntohl(ph->packet_id);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: nfq-noop QUEUE [READY_FILE]\n");
		return 2;
	}
	uint16_t q = (uint16_t)atoi(argv[1]);
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		perror("netlink");
		return 1;
	}
	int one = 1;
	mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof(one));
	int rcvbuf = 4 << 20;
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	if (config(nl, q, NFQNL_CFG_CMD_BIND) < 0 || config(nl, q, -1) < 0) {
		perror("bind queue");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (argc > 2) {
		FILE *f = fopen(argv[2], "w");
		if (f)
			fclose(f);
	}

	static char rx[BATCH][SLOT];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	int fd = mnl_socket_get_fd(nl);
	unsigned long long packets = 0;
	char tx[8192];

	while (!stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		memset(msgs, 0, sizeof(msgs));
		for (int i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){ rx[i], SLOT };
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			continue;
		uint32_t max = 0;
		for (int i = 0; i < n; i++) {
			size_t len = msgs[i].msg_len;
			for (struct nlmsghdr *h = (struct nlmsghdr *)rx[i]; mnl_nlmsg_ok(h, (int)len);
			     h = mnl_nlmsg_next(h, (int *)&len)) {
				if ((h->nlmsg_type & 0xff) != NFQNL_MSG_PACKET)
					continue;
				uint32_t id = packet_id(h);
				if (id > max)
					max = id;
				packets++;
			}
		}
		if (max) {
			struct nlmsghdr *nlh = nfq_nlmsg_put(tx, NFQNL_MSG_VERDICT_BATCH, q);
			nfq_nlmsg_verdict_put(nlh, (int)max, NF_ACCEPT);
			mnl_socket_sendto(nl, nlh, nlh->nlmsg_len);
		}
	}
	config(nl, q, NFQNL_CFG_CMD_UNBIND);
	mnl_socket_close(nl);
	fprintf(stderr, "packets=%llu\n", packets);
	return 0;
}
