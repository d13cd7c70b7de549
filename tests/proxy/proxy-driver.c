/* proxy-driver.c — test driver for netns-tests/proxy-*.sh.
 *
 *   proxy-driver proxy [--port N] [--workers N] [--mark N] [--idle S]
 *                      [--listen6 ADDR] [--strategy NAME] [--plugin PATH]
 *                      --service FAKEIP:PORT=IP:PORT[,IP:PORT...] ...
 *       Addresses are 1.2.3.4:80 or [fd00::1]:80.
 *       The forwarder with a fixed in-memory service table (no registry),
 *       balancers attached through the snapshot hooks as the registry does.
 *       Prints "ready port=N" when listening; counters on SIGUSR1 and at exit
 *       (SIGINT/SIGTERM) as "stats accepted=... refused=...".
 *   proxy-driver server IP PORT NAME
 *       Per connection: sends "NAME\n", echoes everything, and after the
 *       client's FIN sends "\nEOF <bytes>\n" and closes (proves half-close).
 *   proxy-driver client IP PORT [--in FILE] [--out FILE]
 *       Reads the banner, sends FILE (or nothing), shuts down its write side,
 *       writes the echoed bytes to --out, and prints
 *       "backend=NAME bytes=N trailer=<EOF n> secs=S MBps=R" (or "refused").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lb/lb.h"
#include "proxy/proxy.h"
#include "util/log.h"

#define MAX_SERVICES 16
#define MAX_BACKENDS 8

struct table_entry {
	struct sockaddr_storage fake;
	struct em_service svc;
	struct em_service_port port;
	struct em_backend backends[MAX_BACKENDS];
	char name[32];
};

static struct table_entry table[MAX_SERVICES];
static size_t n_table;

/* "1.2.3.4:80" or "[fd00::1]:80" -> sockaddr; returns its length or -1. */
static int parse_addr(const char *text, struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
	char buf[80], *colon, *host = buf;

	snprintf(buf, sizeof(buf), "%s", text);
	colon = strrchr(buf, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	memset(out, 0, sizeof(*out));
	if (buf[0] == '[' && colon > buf && colon[-1] == ']') {
		colon[-1] = '\0';
		host = buf + 1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)atoi(colon + 1));
		return inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1 ? (int)sizeof(*sin6) : -1;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? (int)sizeof(*sin) : -1;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					       : ((const struct sockaddr_in *)ss)->sin_port);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) &&
	       x->sin6_port == y->sin6_port;
}

/* FAKEIP:PORT=IP:PORT,IP:PORT */
static int add_service(const char *spec)
{
	struct table_entry *e = &table[n_table];
	char buf[512], *eq, *tok, *save;

	if (n_table == MAX_SERVICES)
		return -1;
	snprintf(buf, sizeof(buf), "%s", spec);
	eq = strchr(buf, '=');
	if (!eq)
		return -1;
	*eq = '\0';
	if (parse_addr(buf, &e->fake) < 0)
		return -1;
	snprintf(e->name, sizeof(e->name), "svc%zu", n_table);
	e->svc.ns = "default";
	e->svc.name = e->name;
	e->svc.session_affinity = "None";
	e->svc.ports = &e->port;
	e->svc.n_ports = 1;
	e->port.name = "tcp";
	e->port.port = addr_port(&e->fake);
	e->port.ipproto = IPPROTO_TCP;
	e->port.app = EM_APP_L4;
	e->port.backends = e->backends;
	e->port.service = &e->svc;
	for (tok = strtok_r(eq + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct sockaddr_storage b;
		struct em_backend *be = &e->backends[e->port.n_backends];

		if (e->port.n_backends == MAX_BACKENDS || parse_addr(tok, &b) < 0)
			return -1;
		be->family = b.ss_family;
		if (b.ss_family == AF_INET6)
			be->ip.v6 = ((struct sockaddr_in6 *)&b)->sin6_addr;
		else
			be->ip.v4 = ((struct sockaddr_in *)&b)->sin_addr;
		be->port = addr_port(&b);
		e->backends[e->port.n_backends].weight = 1;
		e->port.n_backends++;
	}
	n_table++;
	return 0;
}

static int table_resolve(void *ctx, const struct sockaddr *dst,
			 const struct sockaddr *client, struct em_proxy_target *out)
{
	(void)ctx;
	(void)client;
	for (size_t i = 0; i < n_table; i++)
		if (same_addr(&table[i].fake, dst)) {
			/* Built on the first connection, as resolve.c does. */
			out->lb = em_lb_port_acquire(&table[i].port);
			out->app = table[i].port.app;
			return out->lb ? 0 : -EAGAIN;
		}
	return -ENOENT;
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static void print_stats(struct em_proxy *p)
{
	struct em_proxy_stats st;

	em_proxy_get_stats(p, &st);
	printf("stats accepted=%llu refused=%llu no_backend=%llu upstream_failures=%llu "
	       "connect_timeouts=%llu idle_timeouts=%llu errors=%llu completed=%llu "
	       "active=%llu bytes_up=%llu bytes_down=%llu\n",
	       (unsigned long long)st.accepted, (unsigned long long)st.refused,
	       (unsigned long long)st.no_backend, (unsigned long long)st.upstream_failures,
	       (unsigned long long)st.connect_timeouts, (unsigned long long)st.idle_timeouts,
	       (unsigned long long)st.errors, (unsigned long long)st.completed,
	       (unsigned long long)st.active, (unsigned long long)st.bytes_up,
	       (unsigned long long)st.bytes_down);
	fflush(stdout);
}

static int run_proxy(int argc, char **argv)
{
	struct em_proxy_config cfg;
	struct em_proxy *p;
	struct em_lb *lb;
	struct em_snapshot_hooks hooks;
	const char *strategy = NULL;
	char *plugins[4];
	unsigned n_plugins = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	int ret;

	em_proxy_config_defaults(&cfg);
	for (int i = 0; i < argc; i += 2) {	/* every option takes a value */
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			goto usage;
		if (!strcmp(argv[i], "--port"))
			cfg.port = (uint16_t)atoi(v);
		else if (!strcmp(argv[i], "--workers"))
			cfg.workers = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--mark"))
			cfg.bypass_mark = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(argv[i], "--listen6"))
			cfg.listen6 = v;
		else if (!strcmp(argv[i], "--idle"))
			cfg.idle_timeout_s = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--strategy"))
			strategy = v;
		else if (!strcmp(argv[i], "--plugin") && n_plugins < 4)
			plugins[n_plugins++] = argv[i + 1];
		else if (!strcmp(argv[i], "--service")) {
			if (add_service(v) < 0) {
				fprintf(stderr, "bad --service '%s', expected "
					"FAKEIP:PORT=IP:PORT[,IP:PORT...]\n", v);
				return 2;
			}
		} else
			goto usage;
	}
	if ((ret = em_lb_new(strategy, plugins, n_plugins, &lb)) < 0)
		return 1;
	hooks = em_lb_snapshot_hooks(lb);
	for (size_t i = 0; i < n_table; i++)
		if (hooks.port_init(hooks.ctx, &table[i].port) < 0)
			return 1;
	cfg.resolve = table_resolve;
	ret = em_proxy_start(&cfg, &p);
	if (ret < 0) {
		fprintf(stderr, "proxy on port %u: %s\n", cfg.port, strerror(-ret));
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready port=%u\n", em_proxy_port(p));
	fflush(stdout);
	for (;;) {
		pause();
		if (got_signal == SIGUSR1) {
			got_signal = 0;
			print_stats(p);
			continue;
		}
		if (got_signal)
			break;
	}
	print_stats(p);
	em_proxy_stop(p);
	for (size_t i = 0; i < n_table; i++)
		hooks.port_fini(hooks.ctx, &table[i].port);
	em_lb_free(lb);
	return em_lb_port_live() == 0 ? 0 : 3;
usage:
	fprintf(stderr, "usage: proxy-driver proxy [--port N] [--workers N] [--mark N] "
		"[--idle S] [--strategy NAME] [--plugin PATH] --service FAKEIP:PORT=IP:PORT,...\n");
	return 2;
}

/* ---- server ------------------------------------------------------------- */

struct serve_arg {
	int fd;
	const char *name;
};

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *serve(void *arg)
{
	struct serve_arg *a = arg;
	static char buf[1 << 16];	/* per thread below */
	char *b = malloc(sizeof(buf));
	unsigned long long total = 0;
	char line[64];
	ssize_t n;

	snprintf(line, sizeof(line), "%s\n", a->name);
	if (!b || write_full(a->fd, line, strlen(line)) < 0)
		goto out;
	while ((n = read(a->fd, b, sizeof(buf))) > 0) {
		total += (unsigned long long)n;
		if (write_full(a->fd, b, (size_t)n) < 0)
			goto out;
	}
	if (n == 0) {
		snprintf(line, sizeof(line), "\nEOF %llu\n", total);
		write_full(a->fd, line, strlen(line));
	}
out:
	free(b);
	close(a->fd);
	free(a);
	return NULL;
}

/* IP and PORT as two arguments -> sockaddr (IPv6 when IP has a colon). */
static int parse_ip_port(const char *ip, const char *port, struct sockaddr_storage *out)
{
	char addr[80];

	snprintf(addr, sizeof(addr), strchr(ip, ':') ? "[%s]:%s" : "%s:%s", ip, port);
	return parse_addr(addr, out);
}

static int run_server(int argc, char **argv)
{
	struct sockaddr_storage ss;
	int fd, one = 1, len;

	if (argc != 3)
		return 2;
	if ((len = parse_ip_port(argv[0], argv[1], &ss)) < 0)
		return 2;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) == -1 || listen(fd, 128) == -1) {
		perror("server");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct serve_arg *a = malloc(sizeof(*a));
		pthread_t th;

		a->fd = accept(fd, NULL, NULL);
		if (a->fd == -1) {
			free(a);
			continue;
		}
		a->name = argv[2];
		pthread_create(&th, NULL, serve, a);
		pthread_detach(th);
	}
}

/* ---- client ------------------------------------------------------------- */

struct send_arg {
	int fd, in;
	unsigned long long sent;
};

static void *sender(void *arg)
{
	struct send_arg *s = arg;
	char *buf = malloc(1 << 16);
	ssize_t n;

	while (s->in >= 0 && buf && (n = read(s->in, buf, 1 << 16)) > 0) {
		if (write_full(s->fd, buf, (size_t)n) < 0)
			break;
		s->sent += (unsigned long long)n;
	}
	shutdown(s->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Trailer "\nEOF <n>\n" is at most 32 bytes: hold back the last 32 bytes
 * received until EOF so the echoed payload can be written without it. */
static int run_client(int argc, char **argv)
{
	struct sockaddr_storage ss;
	struct send_arg s = { .in = -1 };
	const char *in = NULL, *out = NULL;
	char banner[64], tail[64];
	size_t banner_len = 0, tail_len = 0;
	unsigned long long echoed = 0;
	char *buf = malloc(1 << 17);
	pthread_t th;
	double t0, t1;
	int fd, ofd = -1, len;
	struct timeval tv = { .tv_sec = 30 };

	if (argc < 2 || !buf)
		return 2;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--in"))
			in = argv[i + 1];
		else if (!strcmp(argv[i], "--out"))
			out = argv[i + 1];
	}
	if ((len = parse_ip_port(argv[0], argv[1], &ss)) < 0)
		return 2;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) == -1) {
		printf("connect-failed %s\n", strerror(errno));
		return 1;
	}
	/* Banner first: a refused connection gives EOF/RST with no banner. */
	while (banner_len < sizeof(banner) - 1) {
		ssize_t n = read(fd, banner + banner_len, 1);
		if (n <= 0) {
			printf("refused %s\n", n == 0 ? "eof" : strerror(errno));
			return 1;
		}
		if (banner[banner_len] == '\n')
			break;
		banner_len++;
	}
	banner[banner_len] = '\0';
	if (in && (s.in = open(in, O_RDONLY)) < 0)
		return 2;
	if (out && (ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		return 2;
	s.fd = fd;
	t0 = now_s();
	pthread_create(&th, NULL, sender, &s);
	for (;;) {
		ssize_t n = read(fd, buf + tail_len, (1 << 17) - tail_len);
		size_t have;
		if (n <= 0) {
			if (n < 0)
				printf("read-error %s ", strerror(errno));
			break;
		}
		have = tail_len + (size_t)n;
		if (have > 32) {
			size_t flush = have - 32;
			if (ofd >= 0 && write_full(ofd, buf, flush) < 0)
				return 1;
			echoed += flush;
			memmove(buf, buf + flush, 32);
			tail_len = 32;
		} else {
			tail_len = have;
		}
	}
	t1 = now_s();
	pthread_join(th, NULL);
	/* Split what is held back into payload and trailer. */
	memcpy(tail, buf, tail_len);
	tail[tail_len] = '\0';
	/* memmem, not strstr: the payload is random bytes and may hold a NUL
	 * just before the trailer. */
	char *eof = memmem(tail, tail_len, "\nEOF ", 5);
	size_t payload = eof ? (size_t)(eof - tail) : tail_len;
	if (ofd >= 0 && write_full(ofd, tail, payload) < 0)
		return 1;
	echoed += payload;
	if (eof) {
		char *nl = strchr(eof + 1, '\n');
		if (nl)
			*nl = '\0';
	}
	printf("backend=%s bytes=%llu trailer=%s secs=%.3f MBps=%.1f\n", banner, echoed,
	       eof ? eof + 1 : "none", t1 - t0,
	       t1 > t0 ? (double)echoed / (t1 - t0) / 1e6 : 0.0);
	close(fd);
	if (ofd >= 0)
		close(ofd);
	free(buf);
	return eof ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "proxy"))
		return run_proxy(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return run_server(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return run_client(argc - 2, argv + 2);
	fprintf(stderr, "usage: proxy-driver proxy|server|client ...\n");
	return 2;
}
