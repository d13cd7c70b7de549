/* test-proxy.c — the forwarder without root: listeners on 127.0.0.1 with
 * IP_TRANSPARENT off, a fake resolve callback, and backends that are
 * threads in this process (echo, sink, refused ports, a full backlog). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lb/lb.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "registry/manifest.h"
#include "registry/registry.h"
#include "suites.h"
#include "util/log.h"
#include "testlog.h"

/* ---- backends ------------------------------------------------------------ */

enum srv_mode { SRV_ECHO, SRV_SINK, SRV_CLOSER };

struct server {
	int fd;
	uint16_t port;
	enum srv_mode mode;
	pthread_t thread;
	_Atomic int conns;
};

static int listen_loopback(uint16_t *port, int backlog)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void *serve_conn(void *arg)
{
	enum srv_mode mode = (enum srv_mode)(intptr_t)((void **)arg)[0];
	int fd = (int)(intptr_t)((void **)arg)[1];
	char buf[65536];
	size_t total = 0;
	ssize_t n;

	free(arg);
	if (mode == SRV_CLOSER) {
		/* Read a little, then close with unread data: the kernel
		 * answers with RST and the proxy's next write fails. */
		n = read(fd, buf, 16);
		(void)n;
		goto out;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		total += (size_t)n;
		if (mode == SRV_ECHO) {
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(fd, buf + off, (size_t)(n - off));
				if (w <= 0)
					goto out;
				off += w;
			}
		}
	}
	if (mode == SRV_SINK) {
		/* Only reachable after our read side saw EOF: the reply proves
		 * the half-close travelled and the other direction lives on. */
		int len = snprintf(buf, sizeof(buf), "got %zu", total);
		if (write(fd, buf, (size_t)len) != len)
			goto out;
	}
out:
	close(fd);
	return NULL;
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	for (;;) {
		int fd = accept(s->fd, NULL, NULL);
		pthread_t th;
		void **a;

		if (fd == -1)
			return NULL;
		s->conns++;
		a = malloc(2 * sizeof(void *));
		a[0] = (void *)(intptr_t)s->mode;
		a[1] = (void *)(intptr_t)fd;
		pthread_create(&th, NULL, serve_conn, a);
		pthread_detach(th);
	}
}

static void server_start(struct server *s, enum srv_mode mode)
{
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->fd = listen_loopback(&s->port, 64);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

/* Wake the accept() (shutdown on a listener makes it fail) and join:
 * the struct lives on the test's stack. Connection threads own copies. */
static void server_stop(struct server *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* A port where nobody listens (bound, then closed). */
static uint16_t closed_port(void)
{
	uint16_t port;
	int fd = listen_loopback(&port, 1);

	close(fd);
	return port;
}

/* ---- the service and the fake resolve ---------------------------------- */

struct fake_service {
	struct em_service svc;
	struct em_service_port port;
	struct em_backend backends[4];
	struct em_lb_port *lb;
	enum em_app_proto app;
	_Atomic int resolved;
};

static void service_init(struct fake_service *fs, const uint16_t *ports, size_t n)
{
	memset(fs, 0, sizeof(*fs));
	fs->svc.ns = "default";
	fs->svc.name = "echo";
	fs->svc.session_affinity = "None";
	for (size_t i = 0; i < n; i++) {
		fs->backends[i].family = AF_INET;
		fs->backends[i].ip.v4.s_addr = htonl(INADDR_LOOPBACK);
		fs->backends[i].port = ports[i];
		fs->backends[i].weight = 1;
	}
	fs->port.port = 7;
	fs->port.ipproto = IPPROTO_TCP;
	fs->port.backends = fs->backends;
	fs->port.n_backends = n;
	fs->port.service = &fs->svc;
	fs->lb = em_lb_port_new(&em_lb_round_robin_ops, &fs->port, NULL);
	ck_assert_ptr_nonnull(fs->lb);
}

static int fake_resolve(void *ctx, const struct sockaddr *dst,
			const struct sockaddr *client, struct em_proxy_target *out)
{
	struct fake_service *fs = ctx;

	fs->resolved++;
	if (!fs->lb || dst->sa_family != client->sa_family)
		return -ENOENT;
	out->lb = em_lb_port_get(fs->lb);
	out->app = fs->app;
	return 0;
}

static struct em_proxy *proxy_start(struct fake_service *fs, unsigned workers,
				    unsigned connect_ms, unsigned idle_s)
{
	struct em_proxy_config cfg;
	struct em_proxy *p;

	em_proxy_config_defaults(&cfg);
	cfg.port = 0;
	cfg.transparent = false;
	cfg.bypass_mark = 0;
	cfg.workers = workers;
	cfg.connect_timeout_ms = connect_ms;
	cfg.idle_timeout_s = idle_s;
	cfg.resolve = fake_resolve;
	cfg.resolve_ctx = fs;
	ck_assert_int_eq(em_proxy_start(&cfg, &p), 0);
	return p;
}

/* A client connection to p from the loopback address `from` (host order;
 * 0: any). */
static int client_connect_from(struct em_proxy *p, uint32_t from)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(em_proxy_port(p)) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 10 };

	if (from) {
		struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(from) };

		ck_assert_int_eq(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int client_connect(struct em_proxy *p)
{
	return client_connect_from(p, 0);
}

/* Read until EOF or error: bytes read, or -errno. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = read(fd, buf + got, cap - got);
		if (n == 0)
			return (ssize_t)got;
		if (n < 0)
			return -errno;
		got += (size_t)n;
		if (got == cap)
			return (ssize_t)got;
	}
}

static void wait_stat(struct em_proxy *p, size_t offset, uint64_t want)
{
	struct em_proxy_stats st;

	for (int i = 0; i < 300; i++) {
		em_proxy_get_stats(p, &st);
		if (*(uint64_t *)((char *)&st + offset) >= want)
			return;
		usleep(10000);
	}
	ck_abort_msg("counter at offset %zu never reached %llu", offset,
		     (unsigned long long)want);
}
#define WAIT_STAT(p, field, want) wait_stat(p, offsetof(struct em_proxy_stats, field), want)

static void service_done(struct fake_service *fs, struct em_proxy *p)
{
	em_proxy_stop(p);
	em_lb_port_put(fs->lb);
	ck_assert_int_eq(em_lb_port_live(), 0);
	ck_assert_int_eq(em_log_error_count(), 0);
}

/* ---- tests --------------------------------------------------------------- */

#define BIG (16u * 1024 * 1024)

struct writer_arg {
	int fd;
	const unsigned char *data;
	size_t len;
};

static void *writer(void *arg)
{
	struct writer_arg *w = arg;

	for (size_t off = 0; off < w->len;) {
		ssize_t n = write(w->fd, w->data + off, w->len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

START_TEST(test_relay_big_echo)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	unsigned char *out = malloc(BIG), *in = malloc(BIG);
	struct writer_arg wa;
	pthread_t th;
	struct em_proxy_stats st;
	int fd;

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	p = proxy_start(&fs, 2, 3000, 60);
	for (size_t i = 0; i < BIG; i++)
		out[i] = (unsigned char)(i * 2654435761u >> 13);
	fd = client_connect(p);
	wa = (struct writer_arg){ fd, out, BIG };
	pthread_create(&th, NULL, writer, &wa);
	/* EOF arrives only after the echo saw our FIN and closed: half-close
	 * in both directions. */
	ck_assert_int_eq(read_all(fd, (char *)in, BIG), (ssize_t)BIG);
	ck_assert_int_eq(read(fd, in, 1), 0);
	pthread_join(th, NULL);
	ck_assert(memcmp(in, out, BIG) == 0);
	close(fd);
	WAIT_STAT(p, completed, 1);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.bytes_up, BIG);
	ck_assert_uint_eq(st.bytes_down, BIG);
	ck_assert_uint_eq(st.active, 0);
	free(in);
	free(out);
	service_done(&fs, p);
	server_stop(&echo);
}
END_TEST

START_TEST(test_half_close)
{
	struct server sink;
	struct fake_service fs;
	struct em_proxy *p;
	char buf[64] = { 0 };
	int fd;

	server_start(&sink, SRV_SINK);
	service_init(&fs, &sink.port, 1);
	p = proxy_start(&fs, 1, 3000, 60);
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "hello world", 11), 11);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	ck_assert_int_eq(read_all(fd, buf, sizeof(buf) - 1), 6);
	ck_assert_str_eq(buf, "got 11");
	close(fd);
	WAIT_STAT(p, completed, 1);
	service_done(&fs, p);
	server_stop(&sink);
}
END_TEST

START_TEST(test_refuse_unknown)
{
	struct fake_service fs = { 0 };	/* resolve finds nothing */
	struct em_proxy *p = proxy_start(&fs, 1, 3000, 60);
	struct em_proxy_stats st;
	char c;
	int fd = client_connect(p);

	ck_assert_int_le(read(fd, &c, 1), 0);	/* RST or EOF, never data */
	close(fd);
	WAIT_STAT(p, refused, 1);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.accepted, 1);
	ck_assert_uint_eq(st.active, 0);
	em_proxy_stop(p);
}
END_TEST

START_TEST(test_retry_next_backend)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	uint16_t ports[2];

	server_start(&echo, SRV_ECHO);
	ports[0] = closed_port();
	ports[1] = echo.port;
	service_init(&fs, ports, 2);
	p = proxy_start(&fs, 1, 3000, 60);
	for (int i = 0; i < 4; i++) {
		char buf[8] = { 0 };
		int fd = client_connect(p);
		ck_assert_int_eq(write(fd, "ping", 4), 4);
		ck_assert_int_eq(read(fd, buf, 4), 4);
		ck_assert_str_eq(buf, "ping");
		close(fd);
	}
	em_proxy_get_stats(p, &st);
	/* The dead backend failed once, then passive health skipped it. */
	ck_assert_uint_eq(st.upstream_failures, 1);
	ck_assert_uint_eq(st.no_backend, 0);
	ck_assert_int_eq(echo.conns, 4);
	service_done(&fs, p);
	server_stop(&echo);
}
END_TEST

START_TEST(test_all_backends_fail)
{
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	uint16_t ports[3] = { closed_port(), closed_port(), closed_port() };
	char c;
	int fd;

	service_init(&fs, ports, 3);
	p = proxy_start(&fs, 1, 3000, 60);
	fd = client_connect(p);
	ck_assert_int_le(read(fd, &c, 1), 0);
	close(fd);
	WAIT_STAT(p, no_backend, 1);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.upstream_failures, 3);
	ck_assert_uint_eq(st.active, 0);
	service_done(&fs, p);
}
END_TEST

START_TEST(test_no_backends)
{
	struct fake_service fs;
	struct em_proxy *p;
	char c;
	int fd;

	service_init(&fs, NULL, 0);
	p = proxy_start(&fs, 1, 3000, 60);
	fd = client_connect(p);
	ck_assert_int_le(read(fd, &c, 1), 0);
	close(fd);
	WAIT_STAT(p, no_backend, 1);
	service_done(&fs, p);
}
END_TEST

/* A backend whose accept queue is full drops our SYNs: the attempt times
 * out and the next backend serves. */
START_TEST(test_connect_timeout)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	uint16_t ports[2];
	int full, fillers[4];
	char buf[8] = { 0 };
	int fd;

	full = listen_loopback(&ports[0], 0);
	for (int i = 0; i < 4; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(ports[0]) };
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(50000);
	server_start(&echo, SRV_ECHO);
	ports[1] = echo.port;
	service_init(&fs, ports, 2);
	p = proxy_start(&fs, 1, 300, 60);
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "ping", 4), 4);
	ck_assert_int_eq(read(fd, buf, 4), 4);
	ck_assert_str_eq(buf, "ping");
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.connect_timeouts, 1);
	service_done(&fs, p);
	server_stop(&echo);
	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	close(full);
}
END_TEST

START_TEST(test_idle_timeout)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	char c;
	int fd;

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	p = proxy_start(&fs, 1, 3000, 1);
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	ck_assert_int_eq(read(fd, &c, 1), 1);
	/* Then silence: reset after about a second. */
	ck_assert_int_le(read(fd, &c, 1), 0);
	close(fd);
	WAIT_STAT(p, idle_timeouts, 1);
	service_done(&fs, p);
	server_stop(&echo);
}
END_TEST

/* Stop with connections open: each releases its pick and reference. */
START_TEST(test_stop_with_open_connections)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	int fds[8];

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	p = proxy_start(&fs, 2, 3000, 60);
	for (int i = 0; i < 8; i++) {
		char c;
		fds[i] = client_connect(p);
		ck_assert_int_eq(write(fds[i], "y", 1), 1);
		ck_assert_int_eq(read(fds[i], &c, 1), 1);
	}
	WAIT_STAT(p, accepted, 8);
	service_done(&fs, p);
	server_stop(&echo);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
}
END_TEST

/* The balancer reference outlives the "snapshot": the service drops its
 * reference while a connection is open; the relay and its release go on. */
START_TEST(test_conn_outlives_snapshot)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	char buf[8] = { 0 };
	int fd;

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	p = proxy_start(&fs, 1, 3000, 60);
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "a", 1), 1);
	ck_assert_int_eq(read(fd, buf, 1), 1);
	em_lb_port_put(fs.lb);		/* port_fini of the old snapshot */
	fs.lb = NULL;
	memset(&fs.port, 0x5a, sizeof(fs.port));
	memset(fs.backends, 0x5a, sizeof(fs.backends));
	ck_assert_int_eq(em_lb_port_live(), 1);
	ck_assert_int_eq(write(fd, "bcd", 3), 3);
	ck_assert_int_eq(read(fd, buf, 3), 3);
	ck_assert_str_eq(buf, "bcd");
	close(fd);
	WAIT_STAT(p, completed, 1);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_proxy_stop(p);
	server_stop(&echo);
}
END_TEST

/* ---- through the registry: balancers built on first connection ---------- */

struct reg_resolve {
	struct em_registry *reg;
	struct sockaddr_in dst;		/* what getsockname() would give with TPROXY */
};

/* The daemon's resolve, with the fake destination filled in: these
 * listeners are not transparent. */
static int registry_resolve(void *ctx, const struct sockaddr *dst,
			    const struct sockaddr *client, struct em_proxy_target *out)
{
	struct reg_resolve *rr = ctx;
	int ret;

	(void)dst;
	(void)client;
	urcu_memb_read_lock();
	ret = em_proxy_target_from_snapshot(em_registry_current(rr->reg),
					    (const struct sockaddr *)&rr->dst, out);
	urcu_memb_read_unlock();
	return ret;
}

/* Adds or replaces the objects of the YAML text one by one (as watch events
 * would) and commits: objects left out are left alone. */
static void reg_upsert(struct em_registry *reg, const char *yaml)
{
	struct em_source_sink sink = em_registry_sink(reg);
	struct em_manifest_error err;
	json_t *items;

	ck_assert_msg(em_manifest_parse(yaml, strlen(yaml), &items, &err) == 0,
		      "%d:%d %s", err.line, err.column, err.reason);
	for (size_t i = 0; i < json_array_size(items); i++)
		ck_assert_int_eq(sink.upsert(sink.ctx, "test", json_array_get(items, i)), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, "test"), 0);
}

/* The balancer of ns/name port 7 in the current snapshot, if built. */
static struct em_lb_port *reg_peek(struct em_registry *reg, const char *name,
				   struct in_addr *fake)
{
	struct em_lb_port *lp = NULL;

	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg),
							     "default", 7, name, strlen(name));
	const struct em_service_port *port = svc ? em_service_find_port(svc, IPPROTO_TCP, 7) : NULL;
	ck_assert_ptr_nonnull(port);
	if (fake) {
		ck_assert(svc->has_fake4);
		*fake = svc->fake4;
	}
	lp = em_lb_port_peek(port);
	urcu_memb_read_unlock();
	return lp;
}

#define REG_SVC_A(extra_port) \
	"kind: Service\nmetadata: {name: a, namespace: default}\n" \
	"spec: {ports: [{name: echo, port: 7}" extra_port "]}\n"
#define REG_EP_A \
	"kind: Endpoints\nmetadata: {name: a, namespace: default}\n" \
	"subsets: [{addresses: [{ip: 127.0.0.1}], ports: [{name: echo, port: %u}]}]\n"
#define REG_B(ip) \
	"kind: Service\nmetadata: {name: b, namespace: default}\n" \
	"spec: {ports: [{port: 7}]}\n---\n" \
	"kind: Endpoints\nmetadata: {name: b, namespace: default}\n" \
	"subsets: [{addresses: [{ip: " ip "}], ports: [{port: 7}]}]\n"

/* With the real registry and the daemon's resolve: loading builds no
 * balancer; the first connection builds one; an unrelated commit keeps it
 * (round robin state); a rebuild of the service leaves the open connection
 * on the old balancer, which goes away with the connection. */
START_TEST(test_registry_lazy_balancer)
{
	struct em_registry_config rc = { 0 };
	struct reg_resolve rr = { .dst = { .sin_family = AF_INET, .sin_port = htons(7) } };
	struct em_proxy_config cfg;
	struct server echo;
	struct em_proxy *p;
	struct em_lb *lb;
	struct em_lb_port *built;
	char yaml[2048], buf[8] = { 0 };
	int fd;

	urcu_memb_register_thread();
	server_start(&echo, SRV_ECHO);
	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	rc.hooks = em_lb_snapshot_hooks(lb);
	rc.test_allow_loopback = true;	/* the echo server is on 127.0.0.1 */
	rr.reg = em_registry_new(&rc);
	ck_assert_ptr_nonnull(rr.reg);
	snprintf(yaml, sizeof(yaml), REG_SVC_A("") "---\n" REG_EP_A "---\n" REG_B("10.0.0.1"),
		 echo.port);
	reg_upsert(rr.reg, yaml);
	ck_assert_int_eq(em_lb_port_live(), 0);		/* nothing built at load */
	ck_assert_ptr_null(reg_peek(rr.reg, "a", &rr.dst.sin_addr));

	em_proxy_config_defaults(&cfg);
	cfg.port = 0;
	cfg.transparent = false;
	cfg.bypass_mark = 0;
	cfg.workers = 2;
	cfg.resolve = registry_resolve;
	cfg.resolve_ctx = &rr;
	ck_assert_int_eq(em_proxy_start(&cfg, &p), 0);
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "a", 1), 1);
	ck_assert_int_eq(read(fd, buf, 1), 1);
	ck_assert_int_eq(em_lb_port_live(), 1);		/* a's, on first use */
	built = reg_peek(rr.reg, "a", NULL);
	ck_assert_ptr_nonnull(built);
	ck_assert_ptr_null(reg_peek(rr.reg, "b", NULL));

	/* Only b changes: a's entry, and its balancer, carry over. */
	reg_upsert(rr.reg, REG_B("10.0.0.2"));
	ck_assert_ptr_eq(reg_peek(rr.reg, "a", NULL), built);
	ck_assert_int_eq(em_lb_port_live(), 1);

	/* a is rebuilt: the old snapshot and its port are freed while the
	 * connection still uses the old balancer. */
	reg_upsert(rr.reg, REG_SVC_A(", {name: other, port: 8}"));
	ck_assert_ptr_null(reg_peek(rr.reg, "a", NULL));
	ck_assert_int_eq(em_lb_port_live(), 1);		/* the connection's */
	ck_assert_int_eq(write(fd, "bcd", 3), 3);
	ck_assert_int_eq(read(fd, buf, 3), 3);
	ck_assert_str_eq(buf, "bcd");
	close(fd);
	WAIT_STAT(p, completed, 1);
	ck_assert_int_eq(em_lb_port_live(), 0);

	/* The next connection builds the new port's balancer. */
	fd = client_connect(p);
	ck_assert_int_eq(write(fd, "e", 1), 1);
	ck_assert_int_eq(read(fd, buf, 1), 1);
	ck_assert_ptr_nonnull(reg_peek(rr.reg, "a", NULL));
	close(fd);
	WAIT_STAT(p, completed, 2);
	ck_assert_int_eq(em_lb_port_live(), 1);		/* kept by the port */
	em_proxy_stop(p);
	em_registry_free(rr.reg);
	ck_assert_int_eq(em_lb_port_live(), 0);
	em_lb_free(lb);
	server_stop(&echo);
	urcu_memb_unregister_thread();
}
END_TEST

/* The backend resets mid-transfer: the relay ends with a reset toward the
 * client, counted as an error, and no SIGPIPE kills the process. */
START_TEST(test_upstream_reset)
{
	struct server closer;
	struct fake_service fs;
	struct em_proxy *p;
	static char chunk[65536];
	ssize_t n = 0;
	int fd;

	server_start(&closer, SRV_CLOSER);
	service_init(&fs, &closer.port, 1);
	p = proxy_start(&fs, 1, 3000, 60);
	fd = client_connect(p);
	for (int i = 0; i < 1024; i++) {
		n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n < 0)
			break;
	}
	ck_assert_int_lt(n, 0);		/* the reset reached the client */
	close(fd);
	WAIT_STAT(p, errors, 1);
	service_done(&fs, p);
	server_stop(&closer);
}
END_TEST

/* Whether this machine can bind ::1: the IPv6 test is added only then, and
 * its absence is printed as a skip (never counted as a pass). */
static bool ipv6_loopback(void)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* The IPv6 listener: a v6 client, a v4 backend. */
START_TEST(test_ipv6_listener)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy_config cfg;
	struct em_proxy *p;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	char buf[8] = { 0 };
	int fd;

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	em_proxy_config_defaults(&cfg);
	cfg.port = 0;
	cfg.listen4 = NULL;
	cfg.listen6 = "::1";
	cfg.transparent = false;
	cfg.bypass_mark = 0;
	cfg.resolve = fake_resolve;
	cfg.resolve_ctx = &fs;
	/* Added to the suite only where ::1 can be bound (see ipv6_loopback()):
	 * here a failure is a failure. */
	ck_assert_int_eq(em_proxy_start(&cfg, &p), 0);
	sin6.sin6_port = htons(em_proxy_port(p));
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin6, sizeof(sin6)), 0);
	ck_assert_int_eq(write(fd, "v6", 2), 2);
	ck_assert_int_eq(read(fd, buf, 2), 2);
	ck_assert_str_eq(buf, "v6");
	close(fd);
	WAIT_STAT(p, completed, 1);
	service_done(&fs, p);
	server_stop(&echo);
}
END_TEST

/* The timer heap fires in deadline order, whatever the order of arming,
 * re-arming and cancelling. */
static uint64_t fired_last;
static int fired_count;
static void on_fire(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	(void)w;
	ck_assert_uint_ge(t->deadline_ms, fired_last);
	fired_last = t->deadline_ms;
	fired_count++;
}

START_TEST(test_timer_heap)
{
	struct em_proxy_worker w = { 0 };
	static struct em_proxy_timer t[500];
	int armed = 0;

	srand(7);
	for (int i = 0; i < 500; i++) {
		em_proxy_timer_init(&t[i], on_fire);
		ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &t[i], (uint64_t)(rand() % 1000)), 0);
	}
	for (int i = 0; i < 500; i += 3)	/* re-arm some */
		ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &t[i], (uint64_t)(rand() % 1000)), 0);
	for (int i = 1; i < 500; i += 4) {	/* cancel some, twice */
		em_proxy_timer_cancel(&w.timers, &t[i]);
		em_proxy_timer_cancel(&w.timers, &t[i]);
	}
	for (int i = 0; i < 500; i++)
		armed += t[i].heap_idx != SIZE_MAX;
	ck_assert_int_eq(em_proxy_timer_next(&w.timers, 0) >= 0, 1);
	w.now_ms = 499;
	em_proxy_timer_run(&w);
	ck_assert_uint_le(fired_last, 499);
	w.now_ms = 1000;
	em_proxy_timer_run(&w);
	ck_assert_int_eq(fired_count, armed);
	ck_assert_int_eq(em_proxy_timer_next(&w.timers, 0), -1);
	em_proxy_timer_heap_free(&w.timers);
}
END_TEST

/* Re-arming later only writes the deadline down; the timer still fires at
 * the later one, exactly once, and not at the earlier one. Re-arming
 * earlier moves it up. A disarmed timer never fires and leaves the heap when
 * its key comes up; armed again, it fires at its new deadline. */
static int lazy_fired[3];
static uint64_t lazy_at[3];
static struct em_proxy_timer lazy_t[3];
static void on_lazy(struct em_proxy_worker *w, struct em_proxy_timer *t)
{
	int i = (int)(t - lazy_t);

	lazy_fired[i]++;
	lazy_at[i] = w->now_ms;
}

START_TEST(test_timer_rearm_lazy)
{
	struct em_proxy_worker w = { 0 };

	for (int i = 0; i < 3; i++)
		em_proxy_timer_init(&lazy_t[i], on_lazy);
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[0], 100), 0);
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[1], 300), 0);
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[2], 200), 0);
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[0], 500), 0);	/* later */
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[1], 50), 0);	/* earlier */
	em_proxy_timer_disarm(&lazy_t[2]);

	w.now_ms = 60;
	em_proxy_timer_run(&w);
	ck_assert_int_eq(lazy_fired[1], 1);
	ck_assert_int_eq(lazy_fired[0], 0);
	w.now_ms = 250;		/* past t0's first deadline and t2's */
	em_proxy_timer_run(&w);
	ck_assert_int_eq(lazy_fired[0], 0);
	ck_assert_int_eq(lazy_fired[2], 0);
	ck_assert_uint_eq(w.timers.n, 1);	/* t2 left, t0 re-placed at 500 */
	ck_assert_int_eq(em_proxy_timer_next(&w.timers, 250), 250);
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[2], 400), 0);
	w.now_ms = 499;
	em_proxy_timer_run(&w);
	ck_assert_int_eq(lazy_fired[2], 1);
	ck_assert_uint_eq(lazy_at[2], 499);
	ck_assert_int_eq(lazy_fired[0], 0);
	w.now_ms = 500;
	em_proxy_timer_run(&w);
	ck_assert_int_eq(lazy_fired[0], 1);
	ck_assert_int_eq(em_proxy_timer_next(&w.timers, 500), -1);
	/* disarmed, then cancelled before its key came up: gone at once */
	ck_assert_int_eq(em_proxy_timer_arm(&w.timers, &lazy_t[0], 600), 0);
	em_proxy_timer_disarm(&lazy_t[0]);
	em_proxy_timer_cancel(&w.timers, &lazy_t[0]);
	ck_assert_uint_eq(w.timers.n, 0);
	em_proxy_timer_heap_free(&w.timers);
}
END_TEST

START_TEST(test_start_errors)
{
	struct em_proxy_config cfg;
	struct em_proxy *p;

	em_proxy_config_defaults(&cfg);
	ck_assert_int_eq(em_proxy_start(&cfg, &p), -EINVAL);	/* no resolve */
	cfg.resolve = fake_resolve;
	cfg.listen4 = "not-an-address";
	cfg.transparent = false;
	cfg.port = 0;
	ck_assert_int_eq(em_proxy_start(&cfg, &p), -EINVAL);
}
END_TEST

/* ---- HTTP ------------------------------------------------------------------ */

enum hsrv_mode {
	HSRV_OK,	/* answer every request: "<id> <method> <body bytes>" */
	HSRV_SILENT,	/* read the request, never answer */
	HSRV_DIE,	/* announce 100000 bytes, send 10, close */
	HSRV_CLOSE_AFTER,	/* answer once with keep-alive, then close the connection */
	HSRV_UPGRADE,	/* as OK, but a request with Upgrade gets 101, then an echo */
};

struct hsrv {
	int fd;
	uint16_t port;
	int id;
	enum hsrv_mode mode;
	pthread_t thread;
	_Atomic int conns, requests;
	char log[8192];		/* request lines and X-Forwarded-For lines seen */
	pthread_mutex_t lock;
};

struct hconn {
	struct hsrv *s;
	int fd;
};

/* Read one line (CRLF) from fd into buf, byte by byte: slow and simple.
 * Returns its length without CRLF, or -1 at EOF. */
static ssize_t read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	for (;;) {
		char c;
		if (read(fd, &c, 1) != 1)
			return -1;
		if (c == '\n') {
			if (n && buf[n - 1] == '\r')
				n--;
			buf[n] = 0;
			return (ssize_t)n;
		}
		if (n + 1 < cap)
			buf[n++] = c;
	}
}

static bool read_exact(int fd, size_t len)
{
	char buf[4096];

	while (len) {
		ssize_t n = read(fd, buf, len < sizeof(buf) ? len : sizeof(buf));
		if (n <= 0)
			return false;
		len -= (size_t)n;
	}
	return true;
}

static void hsrv_log(struct hsrv *s, const char *line)
{
	pthread_mutex_lock(&s->lock);
	if (strlen(s->log) + strlen(line) + 2 < sizeof(s->log)) {
		strcat(s->log, line);
		strcat(s->log, "\n");
	}
	pthread_mutex_unlock(&s->lock);
}

static void *hsrv_conn(void *arg)
{
	struct hconn *hc = arg;
	struct hsrv *s = hc->s;
	int fd = hc->fd;
	char line[1024], method[32], out[512];

	free(hc);
	for (;;) {
		size_t cl = 0, body = 0;
		bool chunked = false, upgrade = false;
		int n;

		if (read_line(fd, line, sizeof(line)) < 0)
			break;
		sscanf(line, "%31s", method);
		hsrv_log(s, line);
		s->requests++;
		while (read_line(fd, line, sizeof(line)) > 0) {
			if (strncasecmp(line, "X-Forwarded-For:", 16) == 0)
				hsrv_log(s, line);
			if (strncasecmp(line, "Upgrade:", 8) == 0)
				upgrade = true;
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				cl = strtoul(line + 15, NULL, 10);
			if (strncasecmp(line, "Transfer-Encoding: chunked", 26) == 0)
				chunked = true;
			if (strncasecmp(line, "Expect: 100-continue", 20) == 0 &&
			    write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 25)
				goto out;
		}
		if (chunked) {
			for (;;) {
				size_t sz;
				if (read_line(fd, line, sizeof(line)) < 0)
					goto out;
				sz = strtoul(line, NULL, 16);
				if (sz == 0) {
					read_line(fd, line, sizeof(line));
					break;
				}
				if (!read_exact(fd, sz) || read_line(fd, line, sizeof(line)) != 0)
					goto out;
				body += sz;
			}
		} else {
			if (!read_exact(fd, cl))
				break;
			body = cl;
		}
		if (s->mode == HSRV_UPGRADE && upgrade) {
			static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
						 "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n";
			char buf[512];
			ssize_t k;

			if (write(fd, sw, sizeof(sw) - 1) != (ssize_t)sizeof(sw) - 1)
				break;
			while ((k = read(fd, buf, sizeof(buf))) > 0)
				if (write(fd, buf, (size_t)k) != k)
					break;
			break;
		}
		if (s->mode == HSRV_SILENT) {
			sleep(5);
			break;
		}
		if (s->mode == HSRV_DIE) {
			n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789");
			if (write(fd, out, (size_t)n) != n)
				break;
			usleep(50000);
			break;
		}
		char text[64];
		int tl = snprintf(text, sizeof(text), "%d %s %zu", s->id, method, body);
		n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
			     strcmp(method, "HEAD") ? tl : tl, strcmp(method, "HEAD") ? text : "");
		if (write(fd, out, (size_t)n) != n)
			break;
		if (s->mode == HSRV_CLOSE_AFTER)
			break;
	}
out:
	close(fd);
	return NULL;
}

static void *hsrv_main(void *arg)
{
	struct hsrv *s = arg;

	for (;;) {
		int fd = accept(s->fd, NULL, NULL);
		struct hconn *hc;
		pthread_t th;

		if (fd == -1)
			return NULL;
		s->conns++;
		hc = malloc(sizeof(*hc));
		hc->s = s;
		hc->fd = fd;
		pthread_create(&th, NULL, hsrv_conn, hc);
		pthread_detach(th);
	}
}

static void hsrv_start(struct hsrv *s, int id, enum hsrv_mode mode)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->mode = mode;
	pthread_mutex_init(&s->lock, NULL);
	s->fd = listen_loopback(&s->port, 64);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, hsrv_main, s), 0);
}

static void hsrv_stop(struct hsrv *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

static struct em_proxy *http_proxy_start(struct fake_service *fs,
					 void (*tweak)(struct em_proxy_config *))
{
	struct em_proxy_config cfg;
	struct em_proxy *p;

	fs->app = EM_APP_HTTP;
	em_proxy_config_defaults(&cfg);
	cfg.port = 0;
	cfg.transparent = false;
	cfg.bypass_mark = 0;
	cfg.workers = 1;
	cfg.resolve = fake_resolve;
	cfg.resolve_ctx = fs;
	if (tweak)
		tweak(&cfg);
	ck_assert_int_eq(em_proxy_start(&cfg, &p), 0);
	return p;
}

static void send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		ck_assert_int_gt(n, 0);
		s += n;
		len -= (size_t)n;
	}
}
#define SEND(fd, lit) send_all(fd, lit, strlen(lit))

/* Read one response: status, body into body (NUL-terminated). Returns the
 * status, or -1 when the connection ended before a complete response. */
static int read_response(int fd, char *body, size_t cap, bool *closing)
{
	char line[1024];
	size_t cl = 0;
	int status = -1;

	if (closing)
		*closing = false;
	do {
		if (read_line(fd, line, sizeof(line)) < 0)
			return -1;
		if (sscanf(line, "HTTP/1.%*d %d", &status) != 1)
			return -1;
		while (read_line(fd, line, sizeof(line)) > 0) {
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				cl = strtoul(line + 15, NULL, 10);
			if (closing && strcasecmp(line, "Connection: close") == 0)
				*closing = true;
		}
	} while (status == 100);
	for (size_t got = 0; got < cl;) {
		char junk[4096];
		char *to = got < cap - 1 ? body + got : junk;
		size_t room = got < cap - 1 ? cap - 1 - got : sizeof(junk);
		ssize_t n = read(fd, to, cl - got < room ? cl - got : room);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	body[cl < cap - 1 ? cl : cap - 1] = 0;
	return status;
}

static void http_done(struct fake_service *fs, struct em_proxy *p)
{
	em_proxy_stop(p);
	em_lb_port_put(fs->lb);
	ck_assert_int_eq(em_lb_port_live(), 0);
}

/* The next response on fd is a 200 whose body is `want`. */
static void expect_200(int fd, const char *want)
{
	char body[256];

	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, want);
}

/* A client connection to p; `warm`: one GET answered on it first. */
static int http_client_warm(struct em_proxy *p, bool warm)
{
	char body[64];
	int fd = client_connect(p);

	if (warm) {
		SEND(fd, "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n");
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	}
	return fd;
}

START_TEST(test_http_keepalive_balances)
{
	struct hsrv a, b;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	uint16_t ports[2];
	char body[256];
	int fd, seen[3] = { 0 };

	hsrv_start(&a, 1, HSRV_OK);
	hsrv_start(&b, 2, HSRV_OK);
	ports[0] = a.port;
	ports[1] = b.port;
	service_init(&fs, ports, 2);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	for (int i = 0; i < 20; i++) {
		int id;

		SEND(fd, "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n");
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
		ck_assert_int_eq(sscanf(body, "%d", &id), 1);
		ck_assert(id == 1 || id == 2);
		seen[id]++;
	}
	/* Round robin per request over one client connection. */
	ck_assert_int_eq(seen[1], 10);
	ck_assert_int_eq(seen[2], 10);
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.requests, 20);
	ck_assert_uint_eq(st.responses[2], 20);
	/* One upstream connection per backend, reused from the pool. */
	ck_assert_int_eq(a.conns, 1);
	ck_assert_int_eq(b.conns, 1);
	ck_assert_uint_eq(st.pool_misses, 2);
	ck_assert_uint_eq(st.pool_hits, 18);
	http_done(&fs, p);
	hsrv_stop(&a);
	hsrv_stop(&b);
}
END_TEST

static void pool_idle_2s(struct em_proxy_config *cfg)
{
	cfg->pool_idle_s = 2;
}

/* The pool's idle timeout runs from the last time a connection was handed
 * back, not from the first: a connection reused at 1.2 s is still pooled at
 * 2.5 s (after its first deadline), and closed by 5.5 s. */
START_TEST(test_http_pool_idle_timeout)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	char body[64];
	int fd;

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, pool_idle_2s);
	fd = client_connect(p);
	SEND(fd, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	usleep(1200 * 1000);
	SEND(fd, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	usleep(1300 * 1000);
	SEND(fd, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.pool_misses, 1);
	ck_assert_uint_eq(st.pool_hits, 2);
	usleep(3000 * 1000);
	SEND(fd, "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.pool_misses, 2);
	ck_assert_uint_eq(st.pool_hits, 2);
	ck_assert_int_eq(a.conns, 2);
	close(fd);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

static void long_batch_wait(struct em_proxy_config *cfg)
{
	cfg->batch_wait_us = 2000;
}

/* Many requests in flight at once, so that the worker waits before
 * polling again (batch_wait): every response still arrives, each on its
 * own connection, and every head buffer lent out comes back. */
START_TEST(test_http_many_in_flight)
{
	enum { CONNS = 24, ROUNDS = 8 };
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	int fd[CONNS];

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, long_batch_wait);
	for (int i = 0; i < CONNS; i++)
		fd[i] = client_connect(p);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < CONNS; i++)
			SEND(fd[i], "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n");
		for (int i = 0; i < CONNS; i++)
			expect_200(fd[i], "1 GET 0");
	}
	for (int i = 0; i < CONNS; i++)
		close(fd[i]);
	for (int i = 0; i < 300; i++) {
		em_proxy_get_stats(p, &st);
		if (st.active == 0)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.active, 0);
	ck_assert_uint_eq(st.requests, CONNS * ROUNDS);
	ck_assert_uint_eq(st.responses[2], CONNS * ROUNDS);
	ck_assert_uint_eq(p->workers[0].pools.bufs_out, 0);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_bodies)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char body[256];
	int fd;

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	SEND(fd, "POST /u HTTP/1.1\r\nHost: svc\r\nContent-Length: 11\r\n\r\nhello world");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 POST 11");
	/* Chunked, with an extension and a trailer (both dropped). */
	SEND(fd, "POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 POST 11");
	/* Expect: 100-continue: the interim answer comes through first. */
	SEND(fd, "PUT /e HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
	{
		char line[128];
		ck_assert_int_ge(read_line(fd, line, sizeof(line)), 0);
		ck_assert_str_eq(line, "HTTP/1.1 100 Continue");
		ck_assert_int_eq(read_line(fd, line, sizeof(line)), 0);
	}
	SEND(fd, "abc");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 PUT 3");
	/* Pipelined: two requests in one write, answered in order. */
	SEND(fd, "GET /1 HTTP/1.1\r\nHost: svc\r\n\r\nPOST /2 HTTP/1.1\r\nHost: svc\r\n"
		 "Content-Length: 2\r\n\r\nok");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 GET 0");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 POST 2");
	/* Bodies read with their head (the connection is past its first
	 * request): a whole one and the next request behind it... */
	SEND(fd, "POST /3 HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello"
		 "GET /4 HTTP/1.1\r\nHost: svc\r\n\r\n");
	expect_200(fd, "1 POST 5");
	expect_200(fd, "1 GET 0");
	/* ...chunked, framing and data, then the next request... */
	SEND(fd, "POST /5 HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "3\r\nabc\r\n0\r\n\r\nGET /6 HTTP/1.1\r\nHost: svc\r\n\r\n");
	expect_200(fd, "1 POST 3");
	expect_200(fd, "1 GET 0");
	/* ...a size line cut after the head's read, finished from the socket... */
	SEND(fd, "POST /7 HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n1");
	usleep(50000);
	SEND(fd, "0\r\n0123456789abcdef\r\n0\r\n\r\n");
	expect_200(fd, "1 POST 16");
	/* ...and a large body, its first bytes read with the head. */
	{
		static char big[200000 + 128];
		int n = snprintf(big, sizeof(big), "PUT /8 HTTP/1.1\r\nHost: svc\r\n"
				 "Content-Length: 200000\r\n\r\n");

		memset(big + n, 'x', 200000);
		send_all(fd, big, (size_t)n + 200000);
		expect_200(fd, "1 PUT 200000");
	}
	close(fd);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

/* X-Forwarded-For carries the client's address as text: every digit
 * count of a dotted quad. */
START_TEST(test_http_forwarded_for)
{
	static const uint32_t from[] = { 0x7f0ac809 /* 127.10.200.9 */, 0x7f000001 };
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	for (size_t i = 0; i < 2; i++) {
		int fd = client_connect_from(p, from[i]);

		SEND(fd, "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n");
		expect_200(fd, "1 GET 0");
		close(fd);
	}
	pthread_mutex_lock(&a.lock);
	ck_assert_ptr_nonnull(strstr(a.log, "X-Forwarded-For: 127.10.200.9\n"));
	ck_assert_ptr_nonnull(strstr(a.log, "X-Forwarded-For: 127.0.0.1\n"));
	pthread_mutex_unlock(&a.lock);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

/* Bytes a client sends right behind an Upgrade request's head (read with
 * it, on a connection past its first request) reach the backend first,
 * once it switched protocols. */
START_TEST(test_http_upgrade_bytes_behind_head)
{
	static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n";
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char buf[512] = "";
	size_t got = 0;
	int fd;

	hsrv_start(&a, 1, HSRV_UPGRADE);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = http_client_warm(p, true);
	SEND(fd, "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
		 "early bytes");
	while (got < sizeof(buf) - 1 && !strstr(buf, "early bytes")) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = 0;
	}
	ck_assert_int_eq(strncmp(buf, want, sizeof(want) - 1), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\nearly bytes"));
	SEND(fd, "later");
	ck_assert_int_eq(read(fd, buf, 5), 5);
	ck_assert_int_eq(memcmp(buf, "later", 5), 0);
	close(fd);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_smuggling_refused)
{
	static const char *vectors[] = {
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\nHost: a\nContent-Length: 0\n\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n"
		"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
	};
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	char body[256];

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	/* warm: after a first request on the same connection. The first head
	 * of a connection is peeked and consumed exactly; later ones are read
	 * whole with the bytes behind them (http.c): both paths must refuse. */
	for (int warm = 0; warm < 2; warm++) {
		for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
			bool closing;
			int fd = http_client_warm(p, warm);

			SEND(fd, vectors[i]);
			/* 400, or 501 for a coding we do not know */
			ck_assert_int_eq(read_response(fd, body, sizeof(body), &closing) / 100,
					 4 + (i == 4));
			ck_assert(closing);
			close(fd);
		}
		/* A chunk whose data is not followed by CRLF: the head is fine
		 * and goes up, the body is cut; the backend never sees a
		 * second request. */
		{
			int fd = http_client_warm(p, warm);
			char c;

			SEND(fd, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "1\r\naXY0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
			while (read(fd, &c, 1) > 0)
				;
			close(fd);
		}
	}
	usleep(100000);
	pthread_mutex_lock(&a.lock);
	ck_assert_ptr_null(strstr(a.log, "smuggled"));
	pthread_mutex_unlock(&a.lock);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_ge(st.bad_requests, 14);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_failures)
{
	struct fake_service fs;
	struct em_proxy *p;
	uint16_t ports[3] = { closed_port(), closed_port(), closed_port() };
	char body[256];
	int fd;

	/* All refusing: 502. */
	service_init(&fs, ports, 3);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 502);
	close(fd);
	http_done(&fs, p);

	/* None: 503, and a bodiless request keeps the connection. */
	service_init(&fs, NULL, 0);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 503);
	SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 503);
	close(fd);
	http_done(&fs, p);
}
END_TEST

static void short_response_timeout(struct em_proxy_config *cfg)
{
	cfg->response_timeout_ms = 300;
	cfg->head_timeout_ms = 300;
}

START_TEST(test_http_timeouts_and_aborts)
{
	struct hsrv silent, die;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	char body[256], c;
	int fd;

	/* Never answers: 504 within the response timeout. */
	hsrv_start(&silent, 1, HSRV_SILENT);
	service_init(&fs, &silent.port, 1);
	p = http_proxy_start(&fs, short_response_timeout);
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 504);
	close(fd);
	/* Slowloris: half a head, then nothing: 408. */
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.1\r\nHost:");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 408);
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.response_timeouts, 1);
	ck_assert_uint_eq(st.head_timeouts, 1);
	http_done(&fs, p);

	/* Dies mid-response: the client connection ends without the rest. */
	hsrv_start(&die, 2, HSRV_DIE);
	service_init(&fs, &die.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), -1);
	while (read(fd, &c, 1) > 0)
		;
	close(fd);
	WAIT_STAT(p, aborted_responses, 1);
	http_done(&fs, p);
	hsrv_stop(&die);
	hsrv_stop(&silent);
}
END_TEST

static void two_per_upstream(struct em_proxy_config *cfg)
{
	cfg->pool_max_requests = 2;
}

static void no_pool(struct em_proxy_config *cfg)
{
	cfg->pool_total = 0;
}

START_TEST(test_http_pool_bounds)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char body[64];
	int fd;

	/* At most two requests per upstream connection: six take three. */
	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, two_per_upstream);
	fd = client_connect(p);
	for (int i = 0; i < 6; i++) {
		SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	}
	close(fd);
	http_done(&fs, p);
	ck_assert_int_eq(a.conns, 3);
	hsrv_stop(&a);

	/* No pool: one upstream connection per request. */
	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, no_pool);
	fd = client_connect(p);
	for (int i = 0; i < 4; i++) {
		SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	}
	close(fd);
	http_done(&fs, p);
	ck_assert_int_eq(a.conns, 4);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_head_and_http10)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char line[256], body[64], c;
	size_t cl = 0;
	int fd;

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	/* HEAD: a Content-Length but no body; the next answer follows at once. */
	SEND(fd, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_ge(read_line(fd, line, sizeof(line)), 0);
	ck_assert_str_eq(line, "HTTP/1.1 200 OK");
	while (read_line(fd, line, sizeof(line)) > 0)
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			cl = strtoul(line + 15, NULL, 10);
	ck_assert_uint_gt(cl, 0);
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 GET 0");
	close(fd);
	/* HTTP/1.0 without keep-alive: one answer, then the close. */
	fd = client_connect(p);
	SEND(fd, "GET / HTTP/1.0\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 GET 0");
	ck_assert_int_eq(read(fd, &c, 1), 0);
	close(fd);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_slow_upload_is_not_a_timeout)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char body[64];
	int fd;

	/* The response timeout counts from the end of the request: an upload
	 * slower than it is fine. */
	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, short_response_timeout);
	fd = client_connect(p);
	SEND(fd, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc");
	usleep(600000);
	SEND(fd, "def");
	ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	ck_assert_str_eq(body, "1 POST 6");
	close(fd);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_stale_pool_retry)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	char body[256];
	int fd;

	/* The backend answers once per connection and closes it: the pooled
	 * connection is found dead (RDHUP) or fails at once and the request
	 * is retried on a fresh one; the client never sees an error. */
	hsrv_start(&a, 1, HSRV_CLOSE_AFTER);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	for (int i = 0; i < 5; i++) {
		SEND(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
	}
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.responses[2], 5);
	ck_assert_uint_eq(st.generated[5], 0);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

START_TEST(test_http_l4_fallback)
{
	struct server echo;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	char buf[16] = { 0 };
	int fd;

	server_start(&echo, SRV_ECHO);
	service_init(&fs, &echo.port, 1);
	p = http_proxy_start(&fs, NULL);
	fd = client_connect(p);
	/* A TLS ClientHello starts 16 03 01. */
	ck_assert_int_eq(write(fd, "\x16\x03\x01\x00\x05hello", 10), 10);
	ck_assert_int_eq(read(fd, buf, 10), 10);
	ck_assert(memcmp(buf, "\x16\x03\x01\x00\x05hello", 10) == 0);
	/* The first bytes were read by the HTTP side and handed over: the
	 * relay goes on from the socket behind them. */
	ck_assert_int_eq(write(fd, "more", 4), 4);
	ck_assert_int_eq(read(fd, buf, 4), 4);
	ck_assert(memcmp(buf, "more", 4) == 0);
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.l4_fallbacks, 1);
	http_done(&fs, p);
	server_stop(&echo);
}
END_TEST

static void short_keepalive(struct em_proxy_config *cfg)
{
	cfg->keepalive_s = 1;
}

START_TEST(test_http_many_pipelined_then_idle)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	struct em_proxy_stats st;
	static char req[100 * 40];
	char body[64], c;
	size_t len = 0;
	int fd;

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, short_keepalive);
	fd = client_connect(p);
	/* More than drive() handles in one go: it yields and comes back. */
	for (int i = 0; i < 100; i++)
		len += (size_t)snprintf(req + len, sizeof(req) - len,
					"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
	send_all(fd, req, len);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(read_response(fd, body, sizeof(body), NULL), 200);
		ck_assert_str_eq(body, "1 GET 0");
	}
	/* Then the keep-alive timeout closes the idle connection. */
	ck_assert_int_eq(read(fd, &c, 1), 0);
	close(fd);
	em_proxy_get_stats(p, &st);
	ck_assert_uint_eq(st.requests, 100);
	ck_assert_uint_eq(st.idle_timeouts, 1);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

static void two_per_client(struct em_proxy_config *cfg)
{
	cfg->max_conns_per_client = 2;
}

START_TEST(test_conn_limit_per_client)
{
	struct hsrv a;
	struct fake_service fs;
	struct em_proxy *p;
	char body[64], c;
	int fd[3];

	hsrv_start(&a, 1, HSRV_OK);
	service_init(&fs, &a.port, 1);
	p = http_proxy_start(&fs, two_per_client);
	for (int i = 0; i < 3; i++)
		fd[i] = client_connect(p);
	/* The third is reset at once, the first two are served. */
	ck_assert_int_le(read(fd[2], &c, 1), 0);
	WAIT_STAT(p, limit_refusals, 1);
	SEND(fd[0], "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ck_assert_int_eq(read_response(fd[0], body, sizeof(body), NULL), 200);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	http_done(&fs, p);
	hsrv_stop(&a);
}
END_TEST

static TCase *proxy_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_set_timeout(tc, 30);
	return tc;
}

Suite *proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = proxy_case(s, "l4-relay");
	tcase_add_test(tc, test_relay_big_echo);
	tcase_add_test(tc, test_half_close);
	tcase_add_test(tc, test_upstream_reset);
	tcase_add_test(tc, test_conn_outlives_snapshot);
	if (ipv6_loopback())
		tcase_add_test(tc, test_ipv6_listener);
	else
		fprintf(stderr, "SKIP proxy: test_ipv6_listener: ::1 cannot be bound here\n");
	tc = proxy_case(s, "l4-refusal");
	tcase_add_test(tc, test_refuse_unknown);
	tcase_add_test(tc, test_no_backends);
	tcase_add_test(tc, test_conn_limit_per_client);
	tc = proxy_case(s, "l4-failover");
	tcase_add_test(tc, test_retry_next_backend);
	tcase_add_test(tc, test_all_backends_fail);
	tcase_add_test(tc, test_connect_timeout);
	tc = proxy_case(s, "timers");
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_timer_heap);
	tcase_add_test(tc, test_timer_rearm_lazy);
	tc = proxy_case(s, "lifecycle");
	tcase_add_test(tc, test_stop_with_open_connections);
	tcase_add_test(tc, test_start_errors);
	tcase_add_test(tc, test_registry_lazy_balancer);
	tc = proxy_case(s, "http-balancing");
	tcase_add_test(tc, test_http_keepalive_balances);
	tcase_add_test(tc, test_http_pool_bounds);
	tcase_add_test(tc, test_http_stale_pool_retry);
	tcase_add_test(tc, test_http_pool_idle_timeout);
	tcase_add_test(tc, test_http_many_pipelined_then_idle);
	tc = proxy_case(s, "http-framing");
	tcase_add_test(tc, test_http_bodies);
	tcase_add_test(tc, test_http_smuggling_refused);
	tcase_add_test(tc, test_http_head_and_http10);
	tcase_add_test(tc, test_http_l4_fallback);
	tcase_add_test(tc, test_http_upgrade_bytes_behind_head);
	tc = proxy_case(s, "http-headers");
	tcase_add_test(tc, test_http_forwarded_for);
	tcase_add_test(tc, test_http_many_in_flight);
	tc = proxy_case(s, "http-failures");
	tcase_add_test(tc, test_http_failures);
	tcase_add_test(tc, test_http_timeouts_and_aborts);
	tcase_add_test(tc, test_http_slow_upload_is_not_a_timeout);
	return s;
}
