/* metrics.c — Prometheus text format over a minimal HTTP/1.0 responder.
 *
 * This file is the one place that knows the counters of the other parts
 * (em_proxy_get_stats, em_dns_queue_stats, em_registry_get_stats, the
 * balancer counters, the sources' state): when a part's counters change,
 * only the matching write_* function here follows. */
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon/sources.h"
#include "dns/queue.h"
#include "lb/lb.h"
#include "proxy/proxy.h"
#include "registry/registry.h"
#include "udp/udp.h"

#define P "edgemesh_tproxy_"

static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP " P "%s %s\n# TYPE " P "%s %s\n", name, help, name, type);
}

static void sample(FILE *out, const char *name, uint64_t v)
{
	fprintf(out, P "%s %llu\n", name, (unsigned long long)v);
}

static void one(FILE *out, const char *name, const char *type, const char *help, uint64_t v)
{
	family(out, name, type, help);
	sample(out, name, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', out);
		if (*s == '\n') {
			fputs("\\n", out);
			continue;
		}
		fputc(*s, out);
	}
}

static void write_build(FILE *out, const struct em_metrics_input *in)
{
	family(out, "build_info", "gauge", "Version of the running daemon; always 1.");
	fprintf(out, P "build_info{version=\"%s\"} 1\n", EM_VERSION);
	one(out, "start_time_seconds", "gauge", "When the daemon started, Unix time.",
	    (uint64_t)in->started_at);
	family(out, "reloads_total", "counter", "SIGHUP reloads by result.");
	fprintf(out, P "reloads_total{result=\"ok\"} %llu\n" P "reloads_total{result=\"refused\"} %llu\n",
		(unsigned long long)in->reloads, (unsigned long long)in->reload_failures);
}

static void write_registry(FILE *out, const struct em_metrics_input *in)
{
	struct em_registry_stats rs;
	struct timespec now;
	uint64_t now_ms;

	em_registry_get_stats(in->reg, &rs);
	clock_gettime(CLOCK_REALTIME, &now);
	now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
	one(out, "snapshot_generation", "gauge", "Snapshots published since start (1 = the empty one).",
	    rs.generation);
	family(out, "snapshot_published_timestamp_seconds", "gauge", "When the current snapshot was published, Unix time.");
	fprintf(out, P "snapshot_published_timestamp_seconds %.3f\n", rs.published_at_ms / 1e3);
	family(out, "snapshot_age_seconds", "gauge", "Age of the current snapshot.");
	fprintf(out, P "snapshot_age_seconds %.3f\n",
		now_ms > rs.published_at_ms ? (now_ms - rs.published_at_ms) / 1e3 : 0.0);
	family(out, "snapshot_build_duration_seconds", "gauge", "Duration of the last snapshot build.");
	fprintf(out, P "snapshot_build_duration_seconds %.6f\n", rs.last_build_us / 1e6);
	one(out, "services", "gauge", "Services in the current snapshot.", rs.services);
	one(out, "backends", "gauge", "Backends in the current snapshot.", rs.backends);
	one(out, "objects", "gauge", "Kubernetes objects held from every source.", rs.objects);
	one(out, "services_without_fake_ip", "gauge", "Services left without a fake IP (range exhausted).",
	    rs.fake_exhausted);
	one(out, "objects_rejected_total", "counter", "Objects refused as unusable.", rs.rejected);
}

static void write_dns(FILE *out, const struct em_metrics_input *in)
{
	struct em_dns_stats ds;

	if (!in->dns)
		return;
	em_dns_queue_stats(in->dns, &ds);
	family(out, "dns_queries_total", "counter",
	       "DNS packets by outcome: answered, or the reason they were passed to the real resolver.");
	for (int r = 0; r < EM_DNS_REASON_MAX; r++)
		fprintf(out, P "dns_queries_total{outcome=\"%s\"} %llu\n",
			em_dns_reason_name((enum em_dns_reason)r), (unsigned long long)ds.reasons[r]);
	/* Only the outcomes that come after the question is read: 8 types
	 * times 10 outcomes at most. */
	family(out, "dns_questions_total", "counter",
	       "DNS queries whose question was read, by question type and outcome.");
	for (int k = 0; k < EM_DNS_QTYPE_MAX; k++)
		for (int r = 0; r < EM_DNS_REASON_MAX; r++)
			if (em_dns_reason_has_qtype((enum em_dns_reason)r))
				fprintf(out, P "dns_questions_total{qtype=\"%s\",outcome=\"%s\"} %llu\n",
					em_dns_qtype_name((enum em_dns_qtype)k),
					em_dns_reason_name((enum em_dns_reason)r),
					(unsigned long long)ds.questions[k][r]);
#define X(field, log, metric, help) one(out, metric, "counter", help, ds.field);
	EM_DNS_COUNTERS(X)
#undef X
}

/* The forwarder's counters: the coupling to struct em_proxy_stats. */
static void write_proxy(FILE *out, const struct em_metrics_input *in)
{
	struct em_proxy_stats ps;

	if (!in->proxy)
		return;
	em_proxy_get_stats(in->proxy, &ps);
	one(out, "connections_accepted_total", "counter", "Connections accepted by the TPROXY listeners.",
	    ps.accepted);
	one(out, "connections_refused_total", "counter", "Connections to an address that is not a service port.",
	    ps.refused);
	one(out, "connections_no_backend_total", "counter",
	    "Connections closed because no backend was usable or every attempt failed.", ps.no_backend);
	one(out, "connections_completed_total", "counter", "Relays ended by both sides closing.", ps.completed);
	one(out, "connections_active", "gauge", "Connections open now.", ps.active);
	family(out, "upstream_errors_total", "counter", "Upstream failures by kind.");
	fprintf(out, P "upstream_errors_total{kind=\"connect_failed\"} %llu\n"
		P "upstream_errors_total{kind=\"connect_timeout\"} %llu\n"
		P "upstream_errors_total{kind=\"idle_timeout\"} %llu\n"
		P "upstream_errors_total{kind=\"reset\"} %llu\n",
		(unsigned long long)ps.upstream_failures, (unsigned long long)ps.connect_timeouts,
		(unsigned long long)ps.idle_timeouts, (unsigned long long)ps.errors);
	family(out, "forwarded_bytes_total", "counter", "Bytes relayed, by direction.");
	fprintf(out, P "forwarded_bytes_total{direction=\"upstream\"} %llu\n"
		P "forwarded_bytes_total{direction=\"downstream\"} %llu\n",
		(unsigned long long)ps.bytes_up, (unsigned long long)ps.bytes_down);
	family(out, "upstream_pool_requests_total", "counter",
	       "HTTP requests by upstream connection: pooled (hit), new (miss), pooled but stale.");
	fprintf(out, P "upstream_pool_requests_total{result=\"hit\"} %llu\n"
		P "upstream_pool_requests_total{result=\"miss\"} %llu\n"
		P "upstream_pool_requests_total{result=\"stale\"} %llu\n",
		(unsigned long long)ps.pool_hits, (unsigned long long)ps.pool_misses,
		(unsigned long long)ps.pool_stale);
	/* Ejections are per backend: backend_ejections_total (write_services). */
}

/* The UDP forwarder's counters: the coupling to struct em_udp_stats. */
static void write_udp(FILE *out, const struct em_metrics_input *in)
{
	struct em_udp_stats us;

	if (!in->udp)
		return;
	em_udp_get_stats(in->udp, &us);
	family(out, "udp_datagrams_total", "counter", "UDP datagrams relayed, by direction.");
	fprintf(out, P "udp_datagrams_total{direction=\"upstream\"} %llu\n"
		P "udp_datagrams_total{direction=\"downstream\"} %llu\n",
		(unsigned long long)us.datagrams_up, (unsigned long long)us.datagrams_down);
	one(out, "udp_refused_total", "counter", "UDP datagrams to an address that is not a UDP service port.",
	    us.refused);
	one(out, "udp_no_backend_total", "counter", "UDP datagrams to a service port without a usable backend.",
	    us.no_backend);
	one(out, "udp_flows_total", "counter", "UDP flows created.", us.flows);
	one(out, "udp_flows_active", "gauge", "UDP flows now.", us.active);
	family(out, "udp_flows_ended_total", "counter", "UDP flows ended, by reason.");
	fprintf(out, P "udp_flows_ended_total{reason=\"idle\"} %llu\n"
		P "udp_flows_ended_total{reason=\"evicted\"} %llu\n"
		P "udp_flows_ended_total{reason=\"icmp_error\"} %llu\n"
		P "udp_flows_ended_total{reason=\"backend_moved\"} %llu\n",
		(unsigned long long)us.idle, (unsigned long long)us.evicted,
		(unsigned long long)us.icmp_errors, (unsigned long long)us.moved);
	one(out, "udp_errors_total", "counter", "UDP socket errors setting up a flow or sending.", us.errors);
}

static void addr_text(const struct em_balancer_backend *b, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(b->family, &b->ip, ip, sizeof(ip));
	snprintf(buf, len, b->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)b->port);
}

struct per_port_sums {
	uint64_t requests, retries, picks, failures;
};

/* Connections/requests per service port and per backend, from the
 * balancers built so far (a port never used has none and no series). */
/* One per-backend sample: NAME{service="ns/name",port="P",backend="ADDR"} V. */
static void backend_line(FILE *f, const char *name, const struct em_service *svc, uint16_t port,
			 const char *addr, unsigned long long value)
{
	fprintf(f, P "%s{service=\"", name);
	label_value(f, svc->ns);
	fputc('/', f);
	label_value(f, svc->name);
	fprintf(f, "\",port=\"%u\",backend=\"%s\"} %llu\n", (unsigned)port, addr, value);
}

static void write_services(FILE *out, const struct em_metrics_input *in)
{
	char *req = NULL, *back = NULL;
	size_t req_len = 0, back_len = 0;
	FILE *rf = open_memstream(&req, &req_len), *bf = open_memstream(&back, &back_len);
	struct per_port_sums other_port = { 0 }, other_backend = { 0 }, all = { 0 };
	unsigned ports = 0, backends = 0;

	if (!rf || !bf)
		goto out;
	urcu_memb_read_lock();
	const struct em_snapshot *snap = em_registry_current(in->reg);
	for (size_t i = 0; i < em_snapshot_service_count(snap); i++) {
		const struct em_service *svc = em_snapshot_service_at(snap, i);

		for (size_t j = 0; j < svc->n_ports; j++) {
			struct em_lb_port *lp = em_lb_port_peek(&svc->ports[j]);
			struct em_lb_port_stats ps;
			bool own = ports < EM_METRICS_MAX_SERVICE_PORTS;

			if (!lp)
				continue;
			em_lb_port_get_stats(lp, &ps);
			all.requests += ps.requests;
			all.retries += ps.retries;
			if (own) {
				ports++;
				fprintf(rf, P "service_requests_total{service=\"");
				label_value(rf, svc->ns);
				fputc('/', rf);
				label_value(rf, svc->name);
				fprintf(rf, "\",port=\"%u\"} %llu\n", (unsigned)svc->ports[j].port,
					(unsigned long long)ps.requests);
			} else {
				other_port.requests += ps.requests;
			}
			for (size_t b = 0; b < em_lb_port_n_backends(lp); b++) {
				struct em_lb_backend_stats bs;
				char addr[64];

				em_lb_port_backend_stats(lp, (int)b, &bs);
				if (!own || backends >= EM_METRICS_MAX_BACKENDS) {
					other_backend.picks += bs.picks;
					other_backend.failures += bs.failures;
					continue;
				}
				backends++;
				addr_text(em_lb_port_backend(lp, (int)b), addr, sizeof(addr));
				backend_line(bf, "backend_picks_total", svc, svc->ports[j].port, addr, bs.picks);
				backend_line(bf, "backend_failures_total", svc, svc->ports[j].port, addr,
					     bs.failures);
				backend_line(bf, "backend_healthy", svc, svc->ports[j].port, addr, bs.healthy);
				backend_line(bf, "backend_ejections_total", svc, svc->ports[j].port, addr,
					     bs.ejections);
			}
		}
	}
	urcu_memb_read_unlock();
	if (other_port.requests)
		fprintf(rf, P "service_requests_total{service=\"other\",port=\"\"} %llu\n",
			(unsigned long long)other_port.requests);
	if (other_backend.picks || other_backend.failures)
		fprintf(bf, P "backend_picks_total{service=\"other\",port=\"\",backend=\"other\"} %llu\n"
			P "backend_failures_total{service=\"other\",port=\"\",backend=\"other\"} %llu\n",
			(unsigned long long)other_backend.picks, (unsigned long long)other_backend.failures);
	fclose(rf);
	fclose(bf);
	rf = bf = NULL;
	family(out, "service_requests_total", "counter",
	       "Connections (L4) or requests (L7) balanced per service port, since its balancer was built.");
	fputs(req, out);
	one(out, "retries_total", "counter", "Further backend picks for a connection or request after a failure.",
	    all.retries);
	/* One HELP/TYPE per family; the four are interleaved per backend
	 * above, so split them by prefix here. */
	static const struct { const char *name, *type, *help; } fams[] = {
		{ "backend_picks_total", "counter", "Times a backend was chosen." },
		{ "backend_failures_total", "counter", "Attempts on a backend that failed." },
		{ "backend_healthy", "gauge", "1 unless the backend is ejected now (passive health) or gone." },
		{ "backend_ejections_total", "counter", "Times a backend was ejected (passive health)." },
	};
	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		size_t nl = strlen(fams[f].name);
		family(out, fams[f].name, fams[f].type, fams[f].help);
		for (char *line = back; line && *line;) {
			char *end = strchr(line, '\n');
			size_t len = end ? (size_t)(end - line + 1) : strlen(line);
			if (!strncmp(line, P, strlen(P)) && !strncmp(line + strlen(P), fams[f].name, nl) &&
			    line[strlen(P) + nl] == '{')
				fwrite(line, 1, len, out);
			line += len;
		}
	}
out:
	if (rf)
		fclose(rf);
	if (bf)
		fclose(bf);
	free(req);
	free(back);
}

static void write_sources(FILE *out, const struct em_metrics_input *in)
{
	static const struct { const char *name, *type, *help; } fams[] = {
		{ "source_up", "gauge", "1 when the source is connected (kube) or has loaded (file, edgecore-db)." },
		{ "source_last_sync_timestamp_seconds", "gauge", "Last full load (LIST, file read), Unix time." },
		{ "source_syncs_total", "counter", "Full loads: LISTs, file reads." },
		{ "source_relists_total", "counter", "Relists after 410 Gone (kube)." },
		{ "source_updates_total", "counter", "Single-object changes handed to the registry." },
		{ "source_commits_total", "counter", "Snapshots the source asked for." },
		{ "source_errors_total", "counter", "Objects refused and failed requests." },
	};
	unsigned n = em_sources_count(in->sources);

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		family(out, fams[f].name, fams[f].type, fams[f].help);
		for (unsigned i = 0; i < n; i++) {
			struct em_source_state st;
			uint64_t v;

			em_sources_state(in->sources, i, &st);
			switch (f) {
			case 0: v = st.connected >= 0 ? (uint64_t)st.connected : st.syncs > 0; break;
			case 1: v = (uint64_t)st.last_sync; break;
			case 2: v = st.syncs; break;
			case 3: v = st.relists; break;
			case 4: v = st.updates; break;
			case 5: v = st.commits; break;
			default: v = st.errors; break;
			}
			fprintf(out, P "%s{source=\"", fams[f].name);
			label_value(out, st.spec);
			fprintf(out, "\",type=\"%s\"} %llu\n", st.type, (unsigned long long)v);
		}
	}
}

int em_metrics_write(const struct em_metrics_input *in, FILE *out)
{
	write_build(out, in);
	write_registry(out, in);
	write_sources(out, in);
	write_dns(out, in);
	write_proxy(out, in);
	write_udp(out, in);
	write_services(out, in);
	return ferror(out) ? -EIO : 0;
}

/* ---- HTTP -------------------------------------------------------------- */

int em_metrics_listen(const char *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	char host[64];
	const char *colon;
	int fd, one_ = 1;

	if (*addr == '[') {
		const char *close = strchr(addr, ']');
		if (!close)
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(close - addr - 1), addr + 1);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)atoi(colon + 1));
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)atoi(colon + 1));
		len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof(one_));
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 16) == -1) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;		/* error or the 1 s timeout: give up */
		p += w;
		n -= (size_t)w;
	}
}

void em_metrics_serve(int lfd, const struct em_metrics_input *in)
{
	struct timeval tv = { .tv_sec = 1 };
	char reqbuf[2048], head[256];
	size_t got = 0;
	char *body = NULL;
	size_t body_len = 0;
	const char *status = "200 OK";
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd == -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* The request head only; a body is never expected. */
	while (got < sizeof(reqbuf) - 1) {
		ssize_t r = recv(fd, reqbuf + got, sizeof(reqbuf) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		reqbuf[got] = '\0';
		if (strstr(reqbuf, "\r\n\r\n") || strstr(reqbuf, "\n\n"))
			break;
	}
	reqbuf[got] = '\0';
	if (strncmp(reqbuf, "GET ", 4) != 0 && strncmp(reqbuf, "HEAD ", 5) != 0) {
		status = "405 Method Not Allowed";
	} else {
		const char *path = strchr(reqbuf, ' ') + 1;
		size_t plen = strcspn(path, " ?\r\n");
		if (!(plen == 8 && !strncmp(path, "/metrics", 8)))
			status = "404 Not Found";
	}
	if (!strcmp(status, "200 OK")) {
		FILE *f = open_memstream(&body, &body_len);
		if (!f || em_metrics_write(in, f) < 0)
			status = "500 Internal Server Error";
		if (f)
			fclose(f);
	}
	if (strcmp(status, "200 OK") != 0) {
		free(body);
		body = strdup(status);
		body_len = body ? strlen(body) : 0;
	}
	snprintf(head, sizeof(head),
		 "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, body_len);
	send_all(fd, head, strlen(head));
	if (strncmp(reqbuf, "HEAD ", 5) != 0 && body)
		send_all(fd, body, body_len);
	free(body);
	close(fd);
}
