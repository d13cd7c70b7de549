/* test-registry-bench.c — registry scale figures (not a unit test; built and
 * run by netns-tests/bench-registry.sh).
 *
 * bench-registry DIR [STATE_DIR]
 * Loads DIR through the file source and prints: load time (parse +
 * normalise + build + publish), RSS, the time for one changed Service to
 * be visible through the sink (what the kube source does) and through the
 * file source (includes the ~100 ms debounce), lookup speed. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb/lb.h"
#include "registry/manifest.h"
#include "registry/registry.h"
#include "sources/source_file.h"
#include "util/log.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = atol(line + strlen(field) + 1);
	if (f)
		fclose(f);
	return v;
}

static size_t n_backends_of(struct em_registry *reg, const char *ns, const char *name,
			    uint16_t port, bool *found)
{
	size_t n = 0;
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg), ns,
							     strlen(ns), name, strlen(name));
	*found = svc != NULL;
	const struct em_service_port *p = svc ? em_service_find_port(svc, IPPROTO_TCP, port) : NULL;
	if (p)
		n = p->n_backends;
	*found = *found && p;
	urcu_memb_read_unlock();
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [STATE_DIR]\n", argv[0]);
		return 2;
	}
	em_log_set_level(EM_LOG_WARN);
	urcu_memb_register_thread();
	long rss0 = status_kb("VmRSS:");
	struct em_registry_config cfg = { .state_dir = argc > 2 ? argv[2] : NULL };
	/* With the balancer hooks the daemon uses (BENCH_LB=0 to leave out). */
	struct em_lb *lb = NULL;
	const char *use_lb = getenv("BENCH_LB");
	if ((!use_lb || strcmp(use_lb, "0") != 0) && em_lb_new(NULL, NULL, 0, &lb) == 0)
		cfg.hooks = em_lb_snapshot_hooks(lb);
	printf("balancer hooks: %s\n", lb ? "on" : "off");
	double t0 = now_ms();
	struct em_registry *reg = em_registry_new(&cfg);
	struct em_source_file *sf;
	if (!reg || em_source_file_start(argv[1], em_registry_sink(reg), &sf) < 0) {
		fprintf(stderr, "start failed\n");
		return 1;
	}
	double t1 = now_ms();
	struct em_registry_stats st;
	em_registry_get_stats(reg, &st);
	long rss1 = status_kb("VmRSS:"), hwm = status_kb("VmHWM:");
	malloc_trim(0);
	long rss2 = status_kb("VmRSS:");
	printf("load: %.0f ms for %llu objects -> %llu services, %llu backends "
	       "(last build %.1f ms)\n", t1 - t0, (unsigned long long)st.objects,
	       (unsigned long long)st.services, (unsigned long long)st.backends,
	       st.last_build_us / 1e3);
	printf("rss: %ld KiB before, %ld KiB after load, peak %ld KiB, %ld KiB after malloc_trim\n",
	       rss0, rss1, hwm, rss2);

	/* One Service changed through the sink, as a watch event would. */
	char src[4096];
	snprintf(src, sizeof(src), "file:%s/services-000.json", argv[1]);
	if (access(src + 5, F_OK) != 0)
		snprintf(src, sizeof(src), "file:%s/services-000.yaml", argv[1]);
	json_t *svc = json_pack("{s:s, s:{s:s, s:s}, s:{s:{s:s, s:s}, s:[{s:s, s:i, s:s}]}}",
				"kind", "Service", "metadata", "name", "svc-0", "namespace", "ns-0",
				"spec", "selector", "app", "svc-0", "tier", "backend", "ports",
				"name", "http-new", "port", 8081, "targetPort", "web");
	struct em_source_sink sink = em_registry_sink(reg);
	double best = 1e9, sum = 0;
	for (int i = 0; i < 10; i++) {
		json_object_set_new(json_object_get(svc, "metadata"), "resourceVersion",
				    json_integer(i));
		json_object_set_new(json_array_get(json_object_get(json_object_get(svc, "spec"), "ports"), 0),
				    "port", json_integer(8081 + i));
		double a = now_ms();
		sink.upsert(sink.ctx, src, svc);
		sink.commit(sink.ctx, src);
		double b = now_ms();
		bool found;
		size_t nb = n_backends_of(reg, "ns-0", "svc-0", (uint16_t)(8081 + i), &found);
		if (!found) {
			fprintf(stderr, "change not visible\n");
			return 1;
		}
		(void)nb;
		sum += b - a;
		if (b - a < best)
			best = b - a;
	}
	json_decref(svc);
	printf("one Service changed via sink (upsert+commit, visible to readers): "
	       "best %.1f ms, mean %.1f ms\n", best, sum / 10);

	/* One Pod changed (becomes not ready) through the sink. */
	char psrc[4096];
	snprintf(psrc, sizeof(psrc), "%s", src);
	char *dash = strrchr(psrc, '/');
	memcpy(dash + 1, "pods", 4);	/* services-000 -> pods-000 */
	memmove(dash + 5, dash + 9, strlen(dash + 9) + 1);
	json_t *pod = json_pack("{s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:{s:s, s:s, s:[{s:s, s:s}]}}",
				"kind", "Pod", "metadata", "name", "svc-0-pod-0", "namespace", "ns-0",
				"labels", "app", "svc-0", "tier", "backend", "status", "phase", "Running",
				"podIP", "10.200.0.1", "conditions", "type", "Ready", "status", "True");
	best = 1e9;
	sum = 0;
	for (int i = 0; i < 10; i++) {
		json_object_set_new(json_array_get(json_object_get(json_object_get(pod, "status"), "conditions"), 0),
				    "status", json_string(i % 2 ? "True" : "False"));
		double a = now_ms();
		sink.upsert(sink.ctx, psrc, pod);
		sink.commit(sink.ctx, psrc);
		double b = now_ms();
		sum += b - a;
		if (b - a < best)
			best = b - a;
	}
	json_decref(pod);
	printf("one Pod changed via sink (upsert+commit): best %.1f ms, mean %.1f ms\n", best, sum / 10);

	/* A relist of one pods file (5,000 pods) through the sink. */
	{
		char pf[4096];
		json_t *items;
		struct em_manifest_error err;
		/* psrc is "file:<path>": the path, with room for "file:" back. */
		if (strlen(psrc + 5) >= sizeof(pf) - 16)
			return 1;
		memcpy(pf, psrc + 5, strlen(psrc + 5) + 1);
		char *dot = strrchr(pf, '/');
		strcpy(dot + 1, strstr(src, ".yaml") ? "pods-000.yaml" : "pods-000.json");
		memcpy(psrc, "file:", 5);
		memcpy(psrc + 5, pf, strlen(pf) + 1);
		if (em_source_file_load(pf, &items, &err) == 0) {
			double a = now_ms();
			sink.replace(sink.ctx, psrc, NULL, items);
			sink.commit(sink.ctx, psrc);
			printf("relist of %zu pods via sink (replace+commit): %.1f ms\n",
			       json_array_size(items), now_ms() - a);
			/* 5,000 more pods in the same relist, then back: the
			 * freed memory must go back to the system (issue 12). */
			json_t *big = json_deep_copy(items);
			for (int i = 0; i < 5000; i++) {
				char name[64], ip[32];
				snprintf(name, sizeof(name), "extra-pod-%d", i);
				snprintf(ip, sizeof(ip), "10.250.%d.%d", i / 250, i % 250 + 1);
				json_array_append_new(big, json_pack(
					"{s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s, s:[{s:s, s:s}]}}",
					"kind", "Pod", "metadata", "name", name, "namespace", "ns-0",
					"labels", "app", "extra", "status", "phase", "Running",
					"podIP", ip, "conditions", "type", "Ready", "status", "True"));
			}
			sink.replace(sink.ctx, psrc, NULL, big);
			sink.commit(sink.ctx, psrc);
			long rss_big = status_kb("VmRSS:");
			sink.replace(sink.ctx, psrc, NULL, items);
			sink.commit(sink.ctx, psrc);
			json_decref(big);
			json_decref(items);
			items = NULL;
			/* What the daemon's timer does after a big commit. */
			bool trimmed = !getenv("BENCH_NO_TRIM") && em_registry_trim(reg);
			long rss_back = status_kb("VmRSS:");
			/* Issue 12: back within 10% of the first load. A small
			 * registry (the short benchmark's 1k/5k) is dominated by
			 * the allocator's fixed overhead, so at least 2 MiB is
			 * allowed; at 10k/50k (~56 MiB) the 10% rule decides. */
			long limit = rss2 * 11 / 10 > rss2 + 2048 ? rss2 * 11 / 10 : rss2 + 2048;
			printf("rss: %ld KiB with 5,000 more pods, %ld KiB back%s (%.0f%% of %ld KiB after the "
			       "first load and its trim; limit %ld KiB: 110%%, at least +2 MiB)%s\n", rss_big,
			       rss_back, trimmed ? ", trimmed" : "", 100.0 * rss_back / rss2, rss2, limit,
			       rss_back <= limit ? "" : " OVER");
			json_decref(items);
		}
	}

	/* Through the file source: a new small file. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/zz-bench-extra.json", argv[1]);
	FILE *f = fopen(path, "w");
	double a = now_ms();
	fprintf(f, "{\"kind\":\"Service\",\"metadata\":{\"name\":\"extra\",\"namespace\":\"ns-1\"},"
		   "\"spec\":{\"selector\":{\"app\":\"svc-1\"},\"ports\":[{\"port\":80,\"targetPort\":\"web\"}]}}");
	fclose(f);
	bool found = false;
	while (!found && now_ms() - a < 5000) {
		n_backends_of(reg, "ns-1", "extra", 80, &found);
		if (!found)
			usleep(1000);
	}
	printf("one Service added as a file: visible after %.0f ms (includes the 100 ms debounce)%s\n",
	       now_ms() - a, found ? "" : " NOT SEEN");
	unlink(path);

	/* Lookups. */
	char names[1000][32];
	for (int i = 0; i < 1000; i++)
		snprintf(names[i], sizeof(names[i]), "SVC-%d", (i * 7919) % 10000);
	a = now_ms();
	size_t hits = 0;
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(reg);
	for (int r = 0; r < 1000; r++)
		for (int i = 0; i < 1000; i++) {
			char ns[16];
			int k = atoi(names[i] + 4) % 100;
			int l = snprintf(ns, sizeof(ns), "ns-%d", k);
			hits += em_snapshot_find_name(s, ns, (size_t)l, names[i], strlen(names[i])) != NULL;
		}
	urcu_memb_read_unlock();
	double b = now_ms();
	printf("lookups by name: %.0f ns each (%zu hits of 1000000)\n", (b - a) * 1e6 / 1e6, hits);

	/* Balancers are built on a port's first connection (lb.h): after the
	 * load there are none; what do 1% and then all ports in use cost? */
	malloc_trim(0);
	printf("after the changes above: %ld balancers, rss %ld KiB after malloc_trim\n",
	       em_lb_port_live(), status_kb("VmRSS:"));
	if (lb) {
		for (int pct = 1; pct <= 100; pct += 99) {
			size_t used = 0;
			a = now_ms();
			urcu_memb_read_lock();
			s = em_registry_current(reg);
			for (size_t i = 0; i < em_snapshot_service_count(s); i++) {
				const struct em_service *sv = em_snapshot_service_at(s, i);
				if (i % 100 >= (size_t)pct)
					continue;
				for (size_t j = 0; j < sv->n_ports; j++) {
					/* As resolve does; the port keeps it. */
					struct em_lb_port *lp = em_lb_port_acquire(&sv->ports[j]);
					if (lp) {
						em_lb_port_put(lp);
						used++;
					}
				}
			}
			urcu_memb_read_unlock();
			b = now_ms();
			malloc_trim(0);
			printf("%d%% of services used: %zu ports touched in %.1f ms, %ld balancers, "
			       "rss %ld KiB after malloc_trim\n", pct, used, b - a,
			       em_lb_port_live(), status_kb("VmRSS:"));
		}
	}

	em_source_file_stop(sf);
	em_registry_free(reg);
	em_lb_free(lb);
	urcu_memb_unregister_thread();
	return 0;
}
