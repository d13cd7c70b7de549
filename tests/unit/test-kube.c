/* test-kube.c — the kube source against tools/fake-apiserver.py (started per
 * test on 127.0.0.1, ephemeral port): list with pagination, watch events,
 * bookmarks, 410 as an ERROR event and as an HTTP status, a stream cut mid-
 * event, a trickling stream, a stalled stream, a server restart, a server
 * absent at start, optional EndpointSlices, field selector + token. The sink
 * records every call; assertions are on what the registry would see. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "sources/kube.h"
#include "timing.h"
#include "util/log.h"
#include "testlog.h"

/* ---- recording sink --------------------------------------------------- */

struct rec {
	pthread_mutex_t lock;
	json_t *objs;		/* "Kind ns/name" -> object */
	unsigned upserts, removes, replaces, commits, bad;
	unsigned replaces_of[4];	/* Service, Endpoints, Pod, EndpointSlice */
};

static struct rec R = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int kind_index(const char *kind)
{
	static const char *const kinds[] = { "Service", "Endpoints", "Pod", "EndpointSlice" };
	for (int i = 0; i < 4; i++)
		if (kind && strcmp(kind, kinds[i]) == 0)
			return i;
	return -1;
}

static void obj_key(char *buf, size_t n, const char *kind, const char *ns, const char *name)
{
	snprintf(buf, n, "%s %s/%s", kind, ns, name);
}

static const char *meta(json_t *obj, const char *k)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), k));
	return s ? s : "";
}

static int rec_upsert(void *ctx, const char *source, json_t *obj)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	char key[512];

	pthread_mutex_lock(&R.lock);
	if (kind_index(kind) < 0 || strcmp(source, "kube") != 0)
		R.bad++;
	obj_key(key, sizeof(key), kind ? kind : "?", meta(obj, "namespace"), meta(obj, "name"));
	json_object_set_new(R.objs, key, json_deep_copy(obj));
	R.upserts++;
	pthread_mutex_unlock(&R.lock);
	return 0;
}

static int rec_remove(void *ctx, const char *source, const char *kind, const char *ns,
		      const char *name)
{
	char key[512];

	pthread_mutex_lock(&R.lock);
	obj_key(key, sizeof(key), kind, ns, name);
	if (json_object_del(R.objs, key) != 0)
		R.bad++;
	R.removes++;
	pthread_mutex_unlock(&R.lock);
	return 0;
}

static int rec_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	const char *k;
	json_t *v, *it;
	void *tmp;
	size_t i;
	char key[512], prefix[64];

	pthread_mutex_lock(&R.lock);
	snprintf(prefix, sizeof(prefix), "%s ", kind);
	json_object_foreach_safe(R.objs, tmp, k, v)
		if (strncmp(k, prefix, strlen(prefix)) == 0)
			json_object_del(R.objs, k);
	json_array_foreach(items, i, it) {
		const char *ik = json_string_value(json_object_get(it, "kind"));
		if (!ik || strcmp(ik, kind) != 0)
			R.bad++;
		obj_key(key, sizeof(key), kind, meta(it, "namespace"), meta(it, "name"));
		json_object_set_new(R.objs, key, json_deep_copy(it));
	}
	R.replaces++;
	if (kind_index(kind) >= 0)
		R.replaces_of[kind_index(kind)]++;
	pthread_mutex_unlock(&R.lock);
	return 0;
}

static int rec_commit(void *ctx, const char *source)
{
	pthread_mutex_lock(&R.lock);
	R.commits++;
	pthread_mutex_unlock(&R.lock);
	return 0;
}

static const struct em_source_sink sink = {
	.ctx = &R, .upsert = rec_upsert, .remove = rec_remove, .replace = rec_replace,
	.commit = rec_commit,
};

static bool has(const char *key)
{
	bool ret;
	pthread_mutex_lock(&R.lock);
	ret = json_object_get(R.objs, key) != NULL;
	pthread_mutex_unlock(&R.lock);
	return ret;
}

/* The port of the first Service port of a recorded object, or -1. */
static long svc_port(const char *key)
{
	long ret = -1;
	pthread_mutex_lock(&R.lock);
	json_t *ports = json_object_get(json_object_get(json_object_get(R.objs, key), "spec"), "ports");
	if (json_array_size(ports))
		ret = (long)json_integer_value(json_object_get(json_array_get(ports, 0), "port"));
	pthread_mutex_unlock(&R.lock);
	return ret;
}

static unsigned count(unsigned *field)
{
	unsigned v;
	pthread_mutex_lock(&R.lock);
	v = *field;
	pthread_mutex_unlock(&R.lock);
	return v;
}

#define WAIT_UNTIL(expr, ms) do {					\
		int w_ = 0;						\
		while (!(expr) && w_ < (ms)) {				\
			usleep(10000);					\
			w_ += 10;					\
		}							\
		ck_assert_msg((expr), "timed out waiting for: %s", #expr); \
	} while (0)

/* ---- the fake API server ---------------------------------------------- */

struct fake {
	pid_t pid;
	int port;
	bool tls;
	char state[64];
	char url[64];
};

static struct fake F;
static struct em_source_kube *K;

static void fake_start(struct fake *f, int port, int rv_start)
{
	const char *data = getenv("EM_TEST_DATA");
	char script[4096], portarg[16], rvarg[16], line[64], cert[4096], key[4096];
	int pfd[2];
	size_t n = 0;

	snprintf(script, sizeof(script), "%s/../../tools/fake-apiserver.py", data ? data : "tests/data");
	snprintf(portarg, sizeof(portarg), "%d", port);
	snprintf(rvarg, sizeof(rvarg), "%d", rv_start);
	snprintf(cert, sizeof(cert), "%s/sources/fake-apiserver.crt", data ? data : "tests/data");
	snprintf(key, sizeof(key), "%s/sources/fake-apiserver.key", data ? data : "tests/data");
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], 1);
		if (f->tls)
			execl("/usr/bin/python3", "python3", script, "--port", portarg, "--state",
			      f->state, "--rv-start", rvarg, "--tls-cert", cert, "--tls-key", key,
			      (char *)NULL);
		else
			execl("/usr/bin/python3", "python3", script, "--port", portarg, "--state",
			      f->state, "--rv-start", rvarg, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* Wait for "PORT <n>\n" (the server is listening then). */
	while (n < sizeof(line) - 1) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ck_assert_msg(poll(&p, 1, 5000) == 1, "fake-apiserver did not start (%s)", script);
		if (read(pfd[0], line + n, 1) != 1)
			break;
		if (line[n++] == '\n')
			break;
	}
	line[n] = '\0';
	close(pfd[0]);
	ck_assert_msg(sscanf(line, "PORT %d", &f->port) == 1, "fake-apiserver said \"%s\"", line);
	snprintf(f->url, sizeof(f->url), "%s://127.0.0.1:%d", f->tls ? "https" : "http", f->port);
}

static void fake_kill(struct fake *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
		f->pid = 0;
	}
}

static size_t collect(char *p, size_t size, size_t nmemb, void *ctx)
{
	char **buf = ctx;
	size_t old = *buf ? strlen(*buf) : 0, n = size * nmemb;
	*buf = realloc(*buf, old + n + 1);
	memcpy(*buf + old, p, n);
	(*buf)[old + n] = '\0';
	return n;
}

/* POST /_ctl/<verb> with a JSON body, or GET when body is NULL. Returns the
 * parsed answer (caller decrefs). */
static json_t *ctl(const char *verb, const char *body)
{
	CURL *c = curl_easy_init();
	char url[128], *out = NULL;
	long status = 0;
	json_t *j;

	snprintf(url, sizeof(url), "%s/_ctl/%s", F.url, verb);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	ck_assert_int_eq(status, 200);
	j = json_loads(out ? out : "", 0, NULL);
	free(out);
	ck_assert_ptr_nonnull(j);
	return j;
}

static void ctlv(const char *verb, const char *body)
{
	json_decref(ctl(verb, body));
}

/* How many recorded requests contain `needle`. */
static unsigned requests_with(const char *needle)
{
	json_t *reqs = ctl("requests", NULL), *r;
	unsigned n = 0;
	size_t i;

	json_array_foreach(reqs, i, r)
		if (strstr(json_string_value(r), needle))
			n++;
	json_decref(reqs);
	return n;
}

static char *svc_json(const char *name, int port)
{
	char *s;
	ck_assert_int_ne(asprintf(&s,
		"{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\"},"
		"\"spec\":{\"selector\":{\"app\":\"%s\"},\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":%d,\"targetPort\":8080}]}}",
		name, name, port), -1);
	return s;
}

/* Upsert Services (name:port, ...) in one control call = one watch chunk. */
static void add_services(bool cut, int n, ...)
{
	char body[8192];
	size_t len;
	va_list ap;

	len = (size_t)snprintf(body, sizeof(body), "{\"resource\":\"services\",\"cut\":%s,\"objects\":[",
			       cut ? "true" : "false");
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		const char *name = va_arg(ap, const char *);
		int port = va_arg(ap, int);
		char *s = svc_json(name, port);
		len += (size_t)snprintf(body + len, sizeof(body) - len, "%s%s", i ? "," : "", s);
		free(s);
	}
	va_end(ap);
	snprintf(body + len, sizeof(body) - len, "]}");
	ctlv("upsert", body);
}

static void del_service(const char *name, bool silent)
{
	char body[256];
	snprintf(body, sizeof(body),
		 "{\"resource\":\"services\",\"namespace\":\"default\",\"name\":\"%s\",\"silent\":%s}",
		 name, silent ? "true" : "false");
	ctlv("delete", body);
}

static struct em_kube_config test_cfg(void)
{
	struct em_kube_config c = {
		.url = F.url,
		.page_limit = 2,
		.connect_timeout_ms = 1000,
		.list_timeout_ms = 3000,
		.watch_timeout_s = 30,
		.stall_timeout_ms = 1000,
		.backoff_min_ms = 50,
		.backoff_max_ms = 300,
		.start_timeout_ms = 5000,
	};
	return c;
}

static void start_kube(const struct em_kube_config *c)
{
	ck_assert_int_eq(em_source_kube_start(c, sink, &K), 0);
	ck_assert_ptr_nonnull(K);
}

static struct em_kube_stats stats(void)
{
	struct em_kube_stats st;
	em_source_kube_stats(K, &st);
	return st;
}

static void setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_lock(&R.lock);
	json_decref(R.objs);
	memset(&R.upserts, 0, sizeof(R) - offsetof(struct rec, upserts));
	R.objs = json_object();
	pthread_mutex_unlock(&R.lock);
	snprintf(F.state, sizeof(F.state), "/tmp/em-kube-test-%d.json", (int)getpid());
	unlink(F.state);
	fake_start(&F, 0, 100);
	K = NULL;
}

static void teardown(void)
{
	em_source_kube_stop(K);
	K = NULL;
	fake_kill(&F);
	unlink(F.state);
	pthread_mutex_lock(&R.lock);
	ck_assert_uint_eq(R.bad, 0);
	json_decref(R.objs);
	R.objs = NULL;
	pthread_mutex_unlock(&R.lock);
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(list_paginated)
{
	struct em_kube_config c = test_cfg();

	add_services(false, 5, "a", 80, "b", 81, "c", 82, "d", 83, "e", 84);
	start_kube(&c);
	/* start() returned after the first LIST of every resource. */
	ck_assert(has("Service default/a"));
	ck_assert(has("Service default/e"));
	ck_assert_int_eq(svc_port("Service default/c"), 82);
	ck_assert_uint_eq(count(&R.replaces_of[0]), 1);
	ck_assert_uint_eq(count(&R.replaces_of[1]), 1);
	ck_assert_uint_eq(count(&R.replaces_of[2]), 1);
	ck_assert_uint_eq(count(&R.replaces_of[3]), 1);
	ck_assert_uint_ge(count(&R.commits), 4);
	/* 5 items with limit=2: three pages, the last two with continue. */
	ck_assert_uint_eq(requests_with("/api/v1/services?limit=2&continue="), 2);
	WAIT_UNTIL(requests_with("/api/v1/services?watch=1&resourceVersion=105&allowWatchBookmarks=true") == 1, 3000);
}
END_TEST

START_TEST(watch_events)
{
	struct em_kube_config c = test_cfg();
	unsigned commits;

	add_services(false, 1, "a", 80);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	usleep(100000);
	commits = count(&R.commits);
	/* Three events in one chunk: one commit. */
	add_services(false, 3, "b", 81, "c", 82, "a", 90);
	WAIT_UNTIL(svc_port("Service default/a") == 90 && has("Service default/c"), 3000);
	usleep(100000);
	ck_assert_uint_eq(count(&R.commits), commits + 1);
	ck_assert_uint_eq(count(&R.upserts), 3);
	del_service("b", false);
	WAIT_UNTIL(!has("Service default/b"), 3000);
	ck_assert_uint_eq(count(&R.removes), 1);
	WAIT_UNTIL(count(&R.commits) == commits + 2, 1000);	/* after the batch pause */
	usleep(100000);
	ck_assert_uint_eq(count(&R.commits), commits + 2);
	ck_assert(has("Service default/a"));
	ck_assert_uint_eq(count(&R.replaces), 4);	/* no relist */
	ck_assert_uint_eq(stats().events, 4);
}
END_TEST

/* Churn: a burst of events, each in its own chunk, is one batch. Per
 * chunk, as before, it would be 20 commits. */
START_TEST(burst_of_events_commits_per_batch)
{
	struct em_kube_config c = test_cfg();
	unsigned commits;
	char name[16];

	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	usleep(100000);
	commits = count(&R.commits);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "burst-%d", i);
		add_services(false, 1, name, 1000 + i);
	}
	WAIT_UNTIL(has("Service default/burst-19"), 3000);
	usleep(300000);
	ck_assert_uint_eq(count(&R.upserts), 20);
	ck_assert_uint_ge(count(&R.commits), commits + 1);
	ck_assert_msg(count(&R.commits) - commits < 10, "%u commits for 20 events",
		      count(&R.commits) - commits);
}
END_TEST

START_TEST(bookmark_moves_resource_version)
{
	struct em_kube_config c = test_cfg();
	json_t *st;
	char want[64];

	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	ctlv("bookmark", "{}");
	st = ctl("state", NULL);
	snprintf(want, sizeof(want), "services?watch=1&resourceVersion=%lld&",
		 json_integer_value(json_object_get(st, "rv")));
	json_decref(st);
	usleep(200000);
	ck_assert_uint_eq(count(&R.commits), 4);	/* a bookmark commits nothing */
	ctlv("close-watches", "{}");
	WAIT_UNTIL(requests_with(want) == 1, 3000);
	ck_assert_uint_eq(count(&R.replaces), 4);
}
END_TEST

/* A delete the client never saw, then the server's history is compacted and
 * the open watch gets an ERROR event with a 410 Status: relist, and the
 * missed delete shows because replace drops what the list no longer has. */
START_TEST(error_event_410_relists)
{
	struct em_kube_config c = test_cfg();

	add_services(false, 2, "a", 80, "b", 81);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	del_service("b", true);
	usleep(100000);
	ck_assert(has("Service default/b"));
	ctlv("expire", "{\"event\":true}");
	WAIT_UNTIL(!has("Service default/b"), 3000);
	ck_assert(has("Service default/a"));
	ck_assert_uint_ge(count(&R.replaces_of[0]), 2);
	ck_assert_uint_eq(count(&R.removes), 0);
	ck_assert_uint_ge(stats().relists_410, 1);
}
END_TEST

START_TEST(http_410_relists)
{
	struct em_kube_config c = test_cfg();

	add_services(false, 2, "a", 80, "b", 81);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	ctlv("set", "{\"watch_http_410\":{\"services\":1}}");
	del_service("b", true);
	ctlv("close-watches", "{}");
	WAIT_UNTIL(!has("Service default/b"), 3000);
	ck_assert(has("Service default/a"));
	ck_assert_uint_eq(count(&R.replaces_of[0]), 2);
	ck_assert_uint_ge(stats().relists_410, 1);
}
END_TEST

/* Half an event, then the connection drops: nothing half-parsed reaches the
 * sink; the watch resumes from the last resourceVersion and the server
 * replays the event whole. */
START_TEST(cut_mid_event_resumes)
{
	struct em_kube_config c = test_cfg();

	add_services(false, 1, "a", 80);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	add_services(true, 1, "b", 81);
	WAIT_UNTIL(has("Service default/b"), 3000);
	ck_assert_uint_eq(requests_with("services?watch=1&resourceVersion=101&"), 2);
	ck_assert_uint_eq(count(&R.replaces_of[0]), 1);	/* resumed, no relist */
	ck_assert_uint_eq(count(&R.upserts), 1);
	ck_assert_int_eq(svc_port("Service default/b"), 81);
	ck_assert_uint_ge(stats().errors, 1);
}
END_TEST

START_TEST(slow_stream)
{
	struct em_kube_config c = test_cfg();

	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	ctlv("set", "{\"trickle_ms\":1}");	/* 3 bytes per chunk */
	add_services(false, 2, "a", 80, "b", 81);
	WAIT_UNTIL(has("Service default/a") && has("Service default/b"), 5000);
	ck_assert_int_eq(svc_port("Service default/b"), 81);
	ck_assert_uint_eq(stats().errors, 0);
	/* Events trickled in many chunks: at most one commit each (fewer
	 * when they fall into one batch), never one per chunk. */
	WAIT_UNTIL(count(&R.commits) >= 4 + 1, 1000);
	usleep(300000);
	ck_assert_uint_le(count(&R.commits), 4 + 2);
}
END_TEST

START_TEST(stalled_stream_reconnects)
{
	struct em_kube_config c = test_cfg();

	add_services(false, 1, "a", 80);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	ctlv("set", "{\"stall\":true}");
	ctlv("close-watches", "{}");
	/* The reconnected watch gets headers and then silence. */
	WAIT_UNTIL(stats().stalls >= 1, 4000);
	ck_assert(has("Service default/a"));
	ctlv("set", "{\"stall\":false}");
	add_services(false, 1, "b", 81);
	WAIT_UNTIL(has("Service default/b"), 4000);
	ck_assert_uint_eq(count(&R.removes), 0);
	ck_assert_uint_eq(count(&R.replaces_of[0]), 1);
}
END_TEST

/* The server dies: nothing is removed while it is down. It comes back on the
 * same port with its history compacted: 410, relist, and a delete missed
 * before the crash shows. */
START_TEST(server_restart)
{
	struct em_kube_config c = test_cfg();
	unsigned replaces, port;

	add_services(false, 2, "a", 80, "b", 81);
	start_kube(&c);
	WAIT_UNTIL(requests_with("services?watch=1") == 1, 3000);
	del_service("b", true);
	replaces = count(&R.replaces);
	port = (unsigned)F.port;
	fake_kill(&F);
	usleep(1200000);	/* several reconnect attempts */
	ck_assert(has("Service default/a"));
	ck_assert(has("Service default/b"));
	ck_assert_uint_eq(count(&R.removes), 0);
	ck_assert_uint_eq(count(&R.replaces), replaces);
	ck_assert_uint_ge(stats().errors, 1);
	fake_start(&F, (int)port, 10000);
	ck_assert_int_eq(F.port, (int)port);
	WAIT_UNTIL(!has("Service default/b"), 4000);
	ck_assert(has("Service default/a"));
	add_services(false, 1, "c", 82);
	WAIT_UNTIL(has("Service default/c"), 3000);
}
END_TEST

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

START_TEST(start_without_server)
{
	struct em_kube_config c;
	struct timespec t0, t1;
	char url[64];
	int port = free_port();

	fake_kill(&F);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	c = test_cfg();
	c.url = url;
	c.start_timeout_ms = 400;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	start_kube(&c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
			 em_test_ms(1000));
	ck_assert_uint_eq(count(&R.replaces), 0);
	fake_start(&F, port, 100);
	add_services(false, 1, "a", 80);
	WAIT_UNTIL(has("Service default/a"), 4000);
}
END_TEST

START_TEST(endpointslices_absent)
{
	struct em_kube_config c = test_cfg();

	ctlv("set", "{\"disable\":[\"endpointslices\"]}");
	add_services(false, 1, "a", 80);
	start_kube(&c);
	ck_assert(has("Service default/a"));
	ck_assert_uint_eq(count(&R.replaces_of[3]), 0);
	ck_assert_uint_eq(requests_with("endpointslices"), 1);
	usleep(300000);
	ck_assert_uint_eq(requests_with("endpointslices"), 1);	/* not retried */
}
END_TEST

START_TEST(pods_on_node_and_token)
{
	struct em_kube_config c = test_cfg();
	char tok[] = "/tmp/em-kube-token-XXXXXX";
	int fd = mkstemp(tok);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "s3cr3t\n", 7), 7);
	close(fd);
	ctlv("upsert", "{\"resource\":\"pods\",\"objects\":["
	     "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"edge-1\"}},"
	     "{\"metadata\":{\"name\":\"p2\",\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"edge-2\"}}]}");
	c.pods_on_node_only = true;
	c.node_name = "edge-1";
	c.token_file = tok;
	c.no_endpointslices = true;
	start_kube(&c);
	unlink(tok);
	ck_assert(has("Pod default/p1"));
	ck_assert(!has("Pod default/p2"));
	ck_assert_uint_eq(requests_with("/api/v1/pods?limit=2&fieldSelector=spec.nodeName%3Dedge-1 [Bearer s3cr3t]"), 1);
	ck_assert_uint_eq(requests_with("/api/v1/services?limit=2 [Bearer s3cr3t]"), 1);
	ck_assert_uint_eq(requests_with("endpointslices"), 0);
	/* Watch events are field-selected too. */
	ctlv("upsert", "{\"resource\":\"pods\",\"objects\":["
	     "{\"metadata\":{\"name\":\"p3\",\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"edge-2\"}},"
	     "{\"metadata\":{\"name\":\"p4\",\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"edge-1\"}}]}");
	WAIT_UNTIL(has("Pod default/p4"), 3000);
	ck_assert(!has("Pod default/p3"));
}
END_TEST

START_TEST(list_failure_retries)
{
	struct em_kube_config c = test_cfg();

	ctlv("set", "{\"list_fail\":3}");
	add_services(false, 1, "a", 80);
	start_kube(&c);
	ck_assert(has("Service default/a"));
	ck_assert_uint_ge(stats().errors, 3);
	ck_assert_uint_eq(count(&R.replaces), 4);
}
END_TEST

/* More objects than allowed: the LIST fails as a whole (nothing reaches
 * the sink for that kind), the other kinds are listed. */
START_TEST(list_object_cap)
{
	struct em_kube_config c = test_cfg();
	em_test_expect_error("so far): refused");	/* both caps, on purpose */

	c.max_list_objects = 3;
	c.start_timeout_ms = 800;
	add_services(false, 5, "a", 80, "b", 81, "c", 82, "d", 83, "e", 84);
	start_kube(&c);
	ck_assert(!has("Service default/a"));
	ck_assert_uint_eq(count(&R.replaces_of[0]), 0);
	ck_assert_uint_eq(count(&R.replaces_of[1]), 1);
	ck_assert_uint_ge(stats().errors, 1);
	em_source_kube_stop(K);
	K = NULL;
	/* the byte cap likewise */
	c.max_list_objects = 0;
	c.max_list_bytes = 64;
	start_kube(&c);
	ck_assert(!has("Service default/a"));
	em_log_reset();
}
END_TEST

START_TEST(stop_is_prompt)
{
	struct em_kube_config c = test_cfg();
	struct timespec t0, t1;

	c.stall_timeout_ms = 60000;
	start_kube(&c);
	WAIT_UNTIL(requests_with("?watch=1") == 4, 3000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	em_source_kube_stop(K);
	K = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
			 em_test_ms(300));
}
END_TEST

START_TEST(bad_config)
{
	struct em_kube_config c = { .url = "ftp://x" };
	struct em_source_kube *k = (void *)1;

	em_test_expect_errors(3);	/* one per refused configuration */

	ck_assert_int_eq(em_source_kube_start(&c, sink, &k), -EINVAL);
	ck_assert_ptr_null(k);
	c.url = NULL;
	c.pods_on_node_only = true;
	ck_assert_int_eq(em_source_kube_start(&c, sink, &k), -EINVAL);
	c.url = "in-cluster";
	c.pods_on_node_only = false;
	unsetenv("KUBERNETES_SERVICE_HOST");
	ck_assert_int_eq(em_source_kube_start(&c, sink, &k), -EINVAL);
}
END_TEST

static void restart_with_tls(void)
{
	fake_kill(&F);
	F.tls = true;
	fake_start(&F, 0, 100);
	F.tls = false;
	add_services(false, 1, "a", 80);
}

static const char *data_file(const char *name)
{
	static char path[4096];
	const char *data = getenv("EM_TEST_DATA");
	snprintf(path, sizeof(path), "%s/sources/%s", data ? data : "tests/data", name);
	return path;
}

START_TEST(tls_with_ca_file)
{
	struct em_kube_config c = test_cfg();

	restart_with_tls();
	c.ca_file = data_file("fake-apiserver.crt");
	start_kube(&c);
	ck_assert(has("Service default/a"));
	add_services(false, 1, "b", 81);
	WAIT_UNTIL(has("Service default/b"), 3000);
}
END_TEST

START_TEST(tls_unknown_ca_refused)
{
	struct em_kube_config c = test_cfg();

	restart_with_tls();
	c.start_timeout_ms = 500;
	start_kube(&c);		/* system CAs: the self-signed server is refused */
	WAIT_UNTIL(stats().errors >= 1, 3000);
	ck_assert_uint_eq(count(&R.replaces), 0);
	em_source_kube_stop(K);
	c.insecure_skip_verify = true;
	c.start_timeout_ms = 5000;
	start_kube(&c);
	ck_assert(has("Service default/a"));
}
END_TEST

START_TEST(in_cluster)
{
	struct em_kube_config c = test_cfg();
	char port[16];
	char tok[] = "/tmp/em-kube-token-XXXXXX";
	int fd = mkstemp(tok);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "sa-token", 8), 8);
	close(fd);
	restart_with_tls();
	snprintf(port, sizeof(port), "%d", F.port);
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", port, 1);
	c.url = "in-cluster";
	c.ca_file = data_file("fake-apiserver.crt");	/* else the service-account CA */
	c.token_file = tok;
	start_kube(&c);
	unlink(tok);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	ck_assert(has("Service default/a"));
	ck_assert_uint_eq(requests_with("/api/v1/services?limit=2 [Bearer sa-token]"), 1);
}
END_TEST

/* A case against the fake API server of setup(). */
static TCase *apiserver_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	return tc;
}

Suite *kube_suite(void);
Suite *kube_suite(void)
{
	Suite *s = suite_create("kube");
	TCase *tc = apiserver_case(s, "list");
	tcase_add_test(tc, list_paginated);
	tcase_add_test(tc, list_failure_retries);
	tcase_add_test(tc, list_object_cap);
	tcase_add_test(tc, endpointslices_absent);
	tcase_add_test(tc, pods_on_node_and_token);
	tc = apiserver_case(s, "watch");
	tcase_add_test(tc, watch_events);
	tcase_add_test(tc, burst_of_events_commits_per_batch);
	tcase_add_test(tc, bookmark_moves_resource_version);
	tc = apiserver_case(s, "relist");
	tcase_add_test(tc, error_event_410_relists);
	tcase_add_test(tc, http_410_relists);
	tc = apiserver_case(s, "reconnect");
	tcase_add_test(tc, cut_mid_event_resumes);
	tcase_add_test(tc, slow_stream);
	tcase_add_test(tc, stalled_stream_reconnects);
	tcase_add_test(tc, server_restart);
	tcase_add_test(tc, start_without_server);
	tc = apiserver_case(s, "lifecycle");
	tcase_add_test(tc, stop_is_prompt);
	tcase_add_test(tc, bad_config);
	tcase_add_test(tc, in_cluster);
	tc = apiserver_case(s, "tls");
	tcase_add_test(tc, tls_with_ca_file);
	tcase_add_test(tc, tls_unknown_ca_refused);
	return s;
}
