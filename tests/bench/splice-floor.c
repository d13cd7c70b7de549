/* splice-floor.c — the relay floor for netns-tests/bench/run.sh: the
 * simplest TCP relay that splices, for the 64 MiB transfer cases. Each
 * accepted connection gets a thread per direction that splices through its
 * own 256 KiB pipe and waits in poll(2) on its one socket (no epoll, no
 * parsing, no pools, no balancing) to one fixed upstream. What a proxy reaches next to it is what
 * is left to gain; what it lacks against a direct connection is the cost of
 * relaying at all on this topology.
 *
 * usage: splice-floor READY_FILE LISTEN_ADDR PORT UPSTREAM_ADDR PORT [...]
 * One or more listeners, each with its upstream. Runs until killed; writes
 * READY_FILE once every listener listens. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (256 << 10)

#define MAPS_MAX 8

struct map {
	int lfd;
	struct sockaddr_in upstream;
};

struct conn {
	int cfd;
	const struct sockaddr_in *upstream;
};

struct leg {
	int from, to;
	pthread_t peer;		/* the other direction's thread, joined by the down leg */
};

/* Wait for fd to be ready for events; false on error or hang-up only. */
static bool wait_for(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	return poll(&pfd, 1, -1) == 1 && (pfd.revents & events);
}

/* The sockets are non-blocking so that a splice takes what has arrived,
 * not a whole pipe's worth: store-and-forward in 256 KiB blocks would
 * stall each side in turn (measured: 240 MB/s). */
static void *relay(void *arg)
{
	struct leg *l = arg;
	int p[2];

	if (pipe2(p, O_CLOEXEC) == 0) {
		fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);
		for (;;) {
			ssize_t n = splice(l->from, NULL, p[1], NULL, PIPE_BYTES, SPLICE_F_MOVE);
			if (n < 0 && errno == EAGAIN) {
				if (!wait_for(l->from, POLLIN))
					break;
				continue;
			}
			if (n <= 0)
				break;
			while (n > 0) {
				ssize_t m = splice(p[0], NULL, l->to, NULL, (size_t)n, SPLICE_F_MOVE);
				if (m < 0 && errno == EAGAIN) {
					if (!wait_for(l->to, POLLOUT))
						goto out;
					continue;
				}
				if (m <= 0)
					goto out;
				n -= m;
			}
		}
out:
		close(p[0]);
		close(p[1]);
	}
	shutdown(l->to, SHUT_WR);
	return NULL;
}

static void *conn_main(void *arg)
{
	struct conn c = *(struct conn *)arg;
	int one = 1, cfd = c.cfd;
	int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct leg up = { .from = cfd }, down;

	free(arg);
	if (ufd < 0 || connect(ufd, (const struct sockaddr *)c.upstream, sizeof(*c.upstream)) != 0)
		goto done;
	setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(ufd, F_SETFL, O_NONBLOCK);
	fcntl(cfd, F_SETFL, O_NONBLOCK);
	up.to = ufd;
	down = (struct leg){ .from = ufd, .to = cfd };
	if (pthread_create(&up.peer, NULL, relay, &up) != 0)
		goto done;
	relay(&down);
	pthread_join(up.peer, NULL);
done:
	if (ufd >= 0)
		close(ufd);
	close(cfd);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct map *m = arg;
	pthread_attr_t at;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	for (;;) {
		int cfd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c;
		pthread_t t;

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("splice-floor: accept");
			exit(1);
		}
		c = malloc(sizeof(*c));
		if (!c) {
			close(cfd);
			continue;
		}
		*c = (struct conn){ .cfd = cfd, .upstream = &m->upstream };
		if (pthread_create(&t, &at, conn_main, c) != 0) {
			free(c);
			close(cfd);
		}
	}
	return NULL;
}

static int parse_addr(const char *a, const char *port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(port));
	return inet_pton(AF_INET, a, &sin->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static struct map maps[MAPS_MAX];
	int n = (argc - 2) / 4, one = 1;
	pthread_t t;
	FILE *f;

	if (argc < 6 || (argc - 2) % 4 || n > MAPS_MAX) {
		fprintf(stderr, "usage: splice-floor READY_FILE LISTEN_ADDR PORT UPSTREAM_ADDR PORT [...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in lsin;
		char **a = argv + 2 + 4 * i;

		if (parse_addr(a[0], a[1], &lsin) || parse_addr(a[2], a[3], &maps[i].upstream)) {
			fprintf(stderr, "splice-floor: bad address in %s:%s %s:%s\n", a[0], a[1], a[2], a[3]);
			return 2;
		}
		maps[i].lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (maps[i].lfd < 0 ||
		    setsockopt(maps[i].lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(maps[i].lfd, (struct sockaddr *)&lsin, sizeof(lsin)) ||
		    listen(maps[i].lfd, 128)) {
			perror("splice-floor: listen");
			return 1;
		}
	}
	f = fopen(argv[1], "w");
	if (f)
		fclose(f);
	for (int i = 1; i < n; i++)
		if (pthread_create(&t, NULL, accept_main, &maps[i]) != 0)
			return 1;
	accept_main(&maps[0]);
	return 0;
}
