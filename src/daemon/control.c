/* control.c — status over a unix socket: the server side in the daemon's
 * main loop and the client side of `edgemesh-tproxy status`. */
#include "daemon/control.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/sources.h"
#include "lb/lb.h"
#include "registry/registry.h"

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sun;
	int fd, ret;

	if ((ret = unix_addr(path, &sun)) < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int em_control_listen(const char *path, bool *made_dir)
{
	struct sockaddr_un sun;
	char *dir_copy = strdup(path);
	mode_t old_umask;
	int fd, ret;

	if (!dir_copy)
		return -ENOMEM;
	if ((ret = unix_addr(path, &sun)) < 0)
		goto out;
	*made_dir = false;
	if (mkdir(dirname(dir_copy), 0700) == 0)
		*made_dir = true;
	else if (errno != EEXIST) {
		ret = -errno;
		goto out;
	}
	fd = connect_to(path);
	if (fd >= 0) {
		close(fd);
		ret = -EADDRINUSE;
		goto out;
	}
	if (fd == -ECONNREFUSED)
		unlink(path);	/* stale: left by a daemon that died */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		ret = -errno;
		goto out;
	}
	/* Created 0600 from the start: no window where others may connect. */
	old_umask = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_umask);
	if (ret == -1 || listen(fd, 8) == -1) {
		ret = -errno;
		close(fd);
		goto out;
	}
	ret = fd;
out:
	free(dir_copy);
	return ret;
}

void em_control_close(int fd, const char *path, bool made_dir)
{
	struct stat st;
	char *dir_copy;

	if (fd < 0)
		return;
	if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	close(fd);
	if (made_dir && (dir_copy = strdup(path))) {
		rmdir(dirname(dir_copy));	/* fails, harmlessly, if not empty */
		free(dir_copy);
	}
}

static json_t *addr_json(int family, const void *addr)
{
	char buf[INET6_ADDRSTRLEN];
	return json_string(inet_ntop(family, addr, buf, sizeof(buf)));
}

static const char *proto_name(int ipproto)
{
	return ipproto == IPPROTO_UDP ? "UDP" : ipproto == IPPROTO_SCTP ? "SCTP" : "TCP";
}

static json_t *port_json(const struct em_service *svc, const struct em_service_port *p,
			 const char *default_strategy)
{
	struct em_lb_port *lp = em_lb_port_peek(p);
	json_t *backends = json_array();
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s}", "port", (int)p->port, "name", p->name,
			      "protocol", proto_name(p->ipproto),
			      "app", p->app == EM_APP_HTTP ? "http" : "l4",
			      "strategy", lp ? em_lb_port_strategy(lp) : em_lb_strategy_for(svc, default_strategy));

	for (size_t i = 0; i < p->n_backends; i++) {
		const struct em_backend *b = &p->backends[i];
		json_t *bj = json_pack("{s:o, s:i, s:i}", "ip", addr_json(b->family, &b->ip),
				       "port", (int)b->port, "weight", (int)b->weight);

		if (b->pod)
			json_object_set_new(bj, "pod", json_string(b->pod));
		/* Health is known once the port's balancer exists; backends
		 * line up with the snapshot's (the balancer copies them). */
		if (lp && i < em_lb_port_n_backends(lp)) {
			struct em_lb_backend_stats bs;
			em_lb_port_backend_stats(lp, (int)i, &bs);
			json_object_set_new(bj, "health", json_string(bs.healthy ? "up" : "down"));
			json_object_set_new(bj, "picks", json_integer((json_int_t)bs.picks));
			json_object_set_new(bj, "failures", json_integer((json_int_t)bs.failures));
		} else {
			json_object_set_new(bj, "health", json_string("unused"));
		}
		json_array_append_new(backends, bj);
	}
	json_object_set_new(o, "backends", backends);
	return o;
}

json_t *em_control_status_json(const struct em_metrics_input *in, const char *default_strategy)
{
	struct em_registry_stats rs;
	json_t *services = json_array(), *sources = json_array();
	unsigned n = em_sources_count(in->sources);

	em_registry_get_stats(in->reg, &rs);
	urcu_memb_read_lock();
	const struct em_snapshot *snap = em_registry_current(in->reg);
	for (size_t i = 0; i < em_snapshot_service_count(snap); i++) {
		const struct em_service *svc = em_snapshot_service_at(snap, i);
		json_t *ports = json_array();
		json_t *s = json_pack("{s:s, s:s, s:s}", "namespace", svc->ns, "name", svc->name,
				      "fqdn", svc->fqdn);

		if (svc->has_fake4)
			json_object_set_new(s, "fake_ipv4", addr_json(AF_INET, &svc->fake4));
		if (svc->has_fake6)
			json_object_set_new(s, "fake_ipv6", addr_json(AF_INET6, &svc->fake6));
		if (svc->has_cluster_ip4)
			json_object_set_new(s, "cluster_ip", addr_json(AF_INET, &svc->cluster_ip4));
		json_object_set_new(s, "headless", json_boolean(svc->headless));
		for (size_t j = 0; j < svc->n_ports; j++)
			json_array_append_new(ports, port_json(svc, &svc->ports[j], default_strategy));
		json_object_set_new(s, "ports", ports);
		json_array_append_new(services, s);
	}
	urcu_memb_read_unlock();
	for (unsigned i = 0; i < n; i++) {
		struct em_source_state st;
		em_sources_state(in->sources, i, &st);
		json_array_append_new(sources, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"source", st.spec, "type", st.type,
			"state", st.connected == 1 ? "connected" : st.connected == 0 ? "disconnected" :
				 st.syncs ? "loaded" : "not loaded",
			"syncs", (json_int_t)st.syncs, "relists", (json_int_t)st.relists,
			"updates", (json_int_t)st.updates, "commits", (json_int_t)st.commits,
			"errors", (json_int_t)st.errors, "last_sync", (json_int_t)st.last_sync,
			"last_commit", (json_int_t)st.last_commit));
	}
	return json_pack("{s:s, s:I, s:I, s:I, s:o, s:o}", "version", EM_VERSION,
			 "generation", (json_int_t)rs.generation,
			 "snapshot_published_ms", (json_int_t)rs.published_at_ms,
			 "started_at", (json_int_t)in->started_at,
			 "services", services, "sources", sources);
}

void em_control_serve(int lfd, const struct em_metrics_input *in, const char *default_strategy)
{
	struct timeval tv = { .tv_sec = 1 };
	char line[64];
	ssize_t r;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd == -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = recv(fd, line, sizeof(line) - 1, 0);
	if (r > 0) {
		line[r] = '\0';
		if (strncmp(line, "status", 6) == 0) {
			json_t *doc = em_control_status_json(in, default_strategy);
			char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
			if (text) {
				size_t n = strlen(text), off = 0;
				while (off < n) {
					ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
					if (w <= 0)
						break;
					off += (size_t)w;
				}
			}
			free(text);
			json_decref(doc);
		} else {
			send(fd, "{\"error\":\"unknown request\"}", 27, MSG_NOSIGNAL);
		}
	}
	close(fd);
}

/* ---- the client ---------------------------------------------------------- */

static void print_time(const char *label, json_int_t t)
{
	char buf[64];
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		printf("%s never", label);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
	printf("%s %s", label, buf);
}

static void print_text(json_t *doc)
{
	json_t *services = json_object_get(doc, "services"), *sources = json_object_get(doc, "sources");
	size_t i, j, k;
	json_t *s, *p, *b;

	printf("edgemesh-tproxy %s, snapshot generation %lld, %zu services\n",
	       json_string_value(json_object_get(doc, "version")),
	       (long long)json_integer_value(json_object_get(doc, "generation")),
	       json_array_size(services));
	printf("\nSOURCES\n");
	json_array_foreach(sources, i, s) {
		printf("  %s: %s, %lld syncs, %lld relists, %lld updates, %lld errors, ",
		       json_string_value(json_object_get(s, "source")),
		       json_string_value(json_object_get(s, "state")),
		       (long long)json_integer_value(json_object_get(s, "syncs")),
		       (long long)json_integer_value(json_object_get(s, "relists")),
		       (long long)json_integer_value(json_object_get(s, "updates")),
		       (long long)json_integer_value(json_object_get(s, "errors")));
		print_time("last sync", json_integer_value(json_object_get(s, "last_sync")));
		putchar('\n');
	}
	printf("\nSERVICES\n");
	json_array_foreach(services, i, s) {
		json_t *f4 = json_object_get(s, "fake_ipv4"), *f6 = json_object_get(s, "fake_ipv6");
		printf("  %s/%s  fake %s%s%s\n", json_string_value(json_object_get(s, "namespace")),
		       json_string_value(json_object_get(s, "name")),
		       f4 ? json_string_value(f4) : "-", f6 ? " " : "", f6 ? json_string_value(f6) : "");
		json_array_foreach(json_object_get(s, "ports"), j, p) {
			const char *name = json_string_value(json_object_get(p, "name"));
			printf("    %lld/%s%s%s %s, %s\n", (long long)json_integer_value(json_object_get(p, "port")),
			       json_string_value(json_object_get(p, "protocol")),
			       name && *name ? " " : "", name ? name : "",
			       json_string_value(json_object_get(p, "app")),
			       json_string_value(json_object_get(p, "strategy")));
			json_array_foreach(json_object_get(p, "backends"), k, b) {
				const char *ip = json_string_value(json_object_get(b, "ip"));
				json_t *pod = json_object_get(b, "pod");
				printf(strchr(ip, ':') ? "      [%s]:%lld" : "      %s:%lld", ip,
				       (long long)json_integer_value(json_object_get(b, "port")));
				printf(" %s%s%s\n", json_string_value(json_object_get(b, "health")),
				       pod ? " pod " : "", pod ? json_string_value(pod) : "");
			}
		}
	}
}

int em_control_status_main(int argc, char **argv)
{
	const char *path = EM_DEFAULT_CONTROL_SOCKET;
	bool as_json = false;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *doc;
	json_error_t err;
	int fd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = true;
		else if (!strncmp(argv[i], "--control-socket=", 17))
			path = argv[i] + 17;
		else if (!strcmp(argv[i], "--control-socket") && i + 1 < argc)
			path = argv[++i];
		else {
			fprintf(stderr, "status: unknown argument \"%s\"; usage: edgemesh-tproxy status [--json] [--control-socket=PATH]\n",
				argv[i]);
			return 2;
		}
	}
	fd = connect_to(path);
	if (fd < 0) {
		fprintf(stderr, "status: cannot reach the daemon at %s: %s\n", path, strerror(-fd));
		return 1;
	}
	if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) {
		fprintf(stderr, "status: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	for (;;) {
		ssize_t r;
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 65536);
			if (!nb) {
				free(buf);
				close(fd);
				return 1;
			}
			buf = nb;
		}
		r = recv(fd, buf + len, cap - len - 1, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!buf) {
		fprintf(stderr, "status: %s: empty answer\n", path);
		return 1;
	}
	buf[len] = '\0';
	doc = json_loads(buf, 0, &err);
	free(buf);
	if (!doc) {
		fprintf(stderr, "status: %s: bad answer: %s\n", path, err.text);
		return 1;
	}
	if (as_json) {
		json_dumpf(doc, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		print_text(doc);
	}
	json_decref(doc);
	return 0;
}
