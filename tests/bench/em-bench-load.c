/* em-bench-load.c — the load pieces netns-tests/bench/run.sh needs and
 * Debian's wrk lacks (wrk has no fixed-rate mode; wrk2 is not packaged).
 *
 *   rate  HOST PORT PATH CONNS RATE SECONDS
 *         Fixed-rate HTTP/1.1 keep-alive GETs over CONNS connections, one
 *         request in flight per connection. Request i is due at
 *         start + i/RATE; its latency runs from that due time (not from
 *         when a connection became free), so queueing behind a slow server
 *         counts (no coordinated omission). Prints one line of key=value:
 *         sent, done, errors, rps, p50_us, p90_us, p99_us, p999_us, max_us.
 *   idle  HOST PORT PATH CONNS
 *         Opens CONNS keep-alive connections, sends one GET on each, reads
 *         the answers, prints "ready CONNS" and holds them until SIGTERM.
 *   get   HOST PORT PATH        one GET; prints bytes, seconds, MBps.
 *   put   HOST PORT PATH BYTES  one POST of BYTES; prints bytes, seconds, MBps.
 *   sink  ADDR PORT             HTTP server: reads each request's
 *         Content-Length body, throws it away, answers 200 (keep-alive).
 *
 * Responses must carry Content-Length (nginx, HAProxy and the sink do). */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const char *host, int port, int nonblock)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Length of the head and of the body announced by it; 0 while incomplete. */
static size_t parse_head(const char *buf, size_t len, long long *body)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	*body = 0;
	for (const char *p = buf; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		if (*p == '\n')
			p++;
		if ((size_t)(end - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
			*body = atoll(p + 15);
	}
	return (size_t)(end - buf) + 4;
}

/* ---- rate ---------------------------------------------------------------- */

struct conn {
	int fd;
	int busy;
	double due;		/* due time of the request in flight */
	size_t have;		/* bytes of the current response read */
	size_t need;		/* head + body once the head is parsed, else 0 */
	char buf[4096];
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_rate(const char *host, int port, const char *path, int nconn, double rate,
		    double secs)
{
	char req[512];
	int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
	struct conn *c = calloc((size_t)nconn, sizeof(*c));
	size_t cap = (size_t)(rate * secs) + 16;
	uint32_t *lat = malloc(cap * sizeof(*lat));
	double *queue = malloc(cap * sizeof(*queue));	/* due times not yet sent */
	int ep = epoll_create1(0);
	long errors = 0;
	size_t done = 0, qhead = 0, qtail = 0, sent = 0;

	if (!c || !lat || !queue || ep < 0)
		return 1;
	for (int i = 0; i < nconn; i++) {
		c[i].fd = dial(host, port, 0);
		if (c[i].fd < 0) {
			fprintf(stderr, "connect: %s\n", strerror(-c[i].fd));
			return 1;
		}
		fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
	}
	double t0 = now_s(), end = t0 + secs;
	size_t next = 0;	/* index of the next request to schedule */
	int idle_hint = 0;
	for (;;) {
		double t = now_s();
		/* schedule every request that is due */
		while (t0 + (double)next / rate <= t && t < end && qtail < cap)
			queue[qtail++] = t0 + (double)next++ / rate;
		/* hand due requests to idle connections */
		for (int k = 0; k < nconn && qhead < qtail; k++) {
			int i = (idle_hint + k) % nconn;
			if (c[i].busy || c[i].fd < 0)
				continue;
			if (send(c[i].fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
				errors++;
				close(c[i].fd);
				c[i].fd = -1;
				continue;
			}
			c[i].busy = 1;
			c[i].due = queue[qhead++];
			c[i].have = c[i].need = 0;
			sent++;
			idle_hint = i + 1;
		}
		int inflight = 0;
		for (int i = 0; i < nconn; i++)
			inflight += c[i].busy;
		if (t >= end && inflight == 0)
			break;
		if (t >= end + 5.0) {	/* stragglers: count them as errors */
			errors += inflight;
			break;
		}
		double wait = t < end ? t0 + (double)next / rate - t : 0.05;
		int ms = wait > 0 ? (int)(wait * 1000) : 0;
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, ms);
		for (int e = 0; e < n; e++) {
			struct conn *k = &c[evs[e].data.u32];
			for (;;) {
				ssize_t r = recv(k->fd, k->buf + (k->have < sizeof(k->buf) ? k->have : 0),
						 k->have < sizeof(k->buf) ? sizeof(k->buf) - k->have : sizeof(k->buf), 0);
				if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
					break;
				if (r <= 0) {
					errors += k->busy;
					epoll_ctl(ep, EPOLL_CTL_DEL, k->fd, NULL);
					close(k->fd);
					k->fd = -1;
					k->busy = 0;
					break;
				}
				k->have += (size_t)r;
				if (!k->need) {
					long long body;
					size_t h = parse_head(k->buf, k->have < sizeof(k->buf) ? k->have : sizeof(k->buf), &body);
					if (h)
						k->need = h + (size_t)body;
				}
				if (k->need && k->have >= k->need) {
					double d = now_s() - k->due;
					if (done < cap)
						lat[done++] = (uint32_t)(d * 1e6);
					k->busy = 0;
					k->have = k->need = 0;
				}
			}
		}
	}
	double elapsed = now_s() - t0;
	qsort(lat, done, sizeof(*lat), cmp_u32);
#define PCT(p) (done ? lat[(size_t)((double)(done - 1) * (p))] : 0)
	printf("sent=%zu done=%zu errors=%ld rps=%.0f p50_us=%u p90_us=%u p99_us=%u p999_us=%u max_us=%u\n",
	       sent, done, errors, (double)done / elapsed, PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999),
	       done ? lat[done - 1] : 0);
	return 0;
}

/* ---- idle ---------------------------------------------------------------- */

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int read_response(int fd)
{
	char buf[65536];
	size_t have = 0, need = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + (have < 4096 ? have : 0), have < 4096 ? sizeof(buf) - have : sizeof(buf), 0);
		if (r <= 0)
			return -1;
		have += (size_t)r;
		if (!need) {
			long long body;
			size_t h = parse_head(buf, have < sizeof(buf) ? have : sizeof(buf), &body);
			if (h)
				need = h + (size_t)body;
		}
		if (need && have >= need)
			return 0;
	}
}

static int cmd_idle(const char *host, int port, const char *path, int nconn)
{
	char req[512];
	int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
	int *fds = calloc((size_t)nconn, sizeof(int));
	int ok = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (int i = 0; i < nconn; i++) {
		fds[i] = dial(host, port, 0);
		if (fds[i] < 0) {
			fprintf(stderr, "connect %d: %s\n", i, strerror(-fds[i]));
			break;
		}
		struct timeval tv = { 5, 0 };
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (send(fds[i], req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen || read_response(fds[i]) < 0) {
			fprintf(stderr, "request %d failed\n", i);
			break;
		}
		ok++;
	}
	printf("ready %d\n", ok);
	fflush(stdout);
	while (!stop)
		pause();
	return ok == nconn ? 0 : 1;
}

/* ---- get / put --------------------------------------------------------- */

static int cmd_xfer(const char *host, int port, const char *path, long long up)
{
	static char buf[1 << 18];
	int fd = dial(host, port, 0);
	if (fd < 0) {
		fprintf(stderr, "connect: %s\n", strerror(-fd));
		return 1;
	}
	double t0 = now_s();
	char head[512];
	int hl = up ? snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: %s\r\n"
			       "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n\r\n",
			       path, host, up)
		    : snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
	if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) != hl)
		return 1;
	memset(buf, 'u', sizeof(buf));
	for (long long left = up; left > 0;) {
		ssize_t w = send(fd, buf, left < (long long)sizeof(buf) ? (size_t)left : sizeof(buf), MSG_NOSIGNAL);
		if (w <= 0) {
			perror("send");
			return 1;
		}
		left -= w;
	}
	/* the response: head, then Content-Length bytes */
	size_t have = 0, need = 0;
	long long body = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + (need ? 0 : have), need ? sizeof(buf) : sizeof(buf) - have, 0);
		if (r <= 0) {
			fprintf(stderr, "response cut after %zu bytes\n", have);
			return 1;
		}
		have += (size_t)r;
		if (!need) {
			size_t h = parse_head(buf, have, &body);
			if (h) {
				if (strncmp(buf, "HTTP/1.1 200", 12) != 0) {
					fprintf(stderr, "status: %.*s\n", 12, buf);
					return 1;
				}
				need = h + (size_t)body;
			}
		}
		if (need && have >= need)
			break;
	}
	double d = now_s() - t0;
	long long bytes = up ? up : body;
	printf("bytes=%lld seconds=%.4f MBps=%.1f\n", bytes, d, (double)bytes / d / 1e6);
	close(fd);
	return 0;
}

/* ---- sink ---------------------------------------------------------------- */

struct sconn {
	int fd;
	size_t have;		/* bytes of the head buffered */
	long long body;		/* body bytes still to discard */
	char head[4096];
};

static int cmd_sink(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	static char junk[1 << 18];
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || ls < 0)
		return 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1024) < 0) {
		perror("sink listen");
		return 1;
	}
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int e = 0; e < n; e++) {
			struct sconn *c = evs[e].data.ptr;
			if (!c) {
				int fd;
				while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					c = calloc(1, sizeof(*c));
					c->fd = fd;
					struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
				continue;
			}
			for (;;) {
				ssize_t r;
				if (c->body > 0) {
					r = recv(c->fd, junk, c->body < (long long)sizeof(junk) ? (size_t)c->body : sizeof(junk), 0);
					if (r > 0) {
						c->body -= r;
						if (c->body == 0)
							send(c->fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
						continue;
					}
				} else {
					r = recv(c->fd, c->head + c->have, sizeof(c->head) - c->have, 0);
					if (r > 0) {
						c->have += (size_t)r;
						long long body;
						size_t h = parse_head(c->head, c->have, &body);
						if (!h) {
							if (c->have == sizeof(c->head))
								r = 0;	/* head too long: drop */
							else
								continue;
						} else {
							size_t extra = c->have - h;
							c->have = 0;
							c->body = body - (long long)extra;
							if (c->body <= 0) {	/* pipelined bytes beyond: not supported */
								c->body = 0;
								send(c->fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
							}
							continue;
						}
					}
				}
				if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
					break;
				close(c->fd);
				free(c);
				break;
			}
		}
	}
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 8 && strcmp(argv[1], "rate") == 0)
		return cmd_rate(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]), atof(argv[6]), atof(argv[7]));
	if (argc >= 6 && strcmp(argv[1], "idle") == 0)
		return cmd_idle(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
	if (argc >= 5 && strcmp(argv[1], "get") == 0)
		return cmd_xfer(argv[2], atoi(argv[3]), argv[4], 0);
	if (argc >= 6 && strcmp(argv[1], "put") == 0)
		return cmd_xfer(argv[2], atoi(argv[3]), argv[4], atoll(argv[5]));
	if (argc >= 4 && strcmp(argv[1], "sink") == 0)
		return cmd_sink(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: em-bench-load rate HOST PORT PATH CONNS RATE SECONDS\n"
			"       em-bench-load idle HOST PORT PATH CONNS\n"
			"       em-bench-load get HOST PORT PATH\n"
			"       em-bench-load put HOST PORT PATH BYTES\n"
			"       em-bench-load sink ADDR PORT\n");
	return 2;
}
