/* test-lb-bench.c — the cost of a pick (plus its release), per strategy, at
 * 10, 100 and 1000 backends: a micro-benchmark, built by meson as lb-bench
 * and never run by the test suite.
 *
 * lb-bench [PICKS]
 * Prints ns per pick+release on one thread and the ratio to "random" (a
 * binary search: the cheapest pick) measured in the same run, so the
 * figures compare across machines. Clients cycle over 4096 addresses;
 * every release reports OK with a latency, as the HTTP forwarder does. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lb/lb.h"
#include "util/log.h"

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double run(const char *strategy, const char *affinity, size_t n, long picks)
{
	struct em_backend *b = calloc(n, sizeof(*b));
	struct em_service svc = { .ns = "bench", .name = "svc", .session_affinity = affinity,
				  .affinity_timeout_s = 10800 };
	struct em_service_port port = { .name = "", .port = 80, .ipproto = IPPROTO_TCP,
					.backends = b, .n_backends = n, .service = &svc };
	struct em_lb_port *lp;
	struct sockaddr_in c = { .sin_family = AF_INET };
	double t0, t1;

	svc.ports = &port;
	svc.n_ports = 1;
	for (size_t i = 0; i < n; i++) {
		b[i].family = AF_INET;
		b[i].ip.v4.s_addr = htonl(0x0a000000 + (uint32_t)i + 1);
		b[i].port = 8080;
		b[i].weight = 1 + i % 3;
	}
	lp = em_lb_port_new(em_lb_find(strategy), &port, NULL);
	if (!lp) {
		fprintf(stderr, "lb-bench: %s: cannot build\n", strategy);
		exit(1);
	}
	t0 = now_ns();
	for (long k = 0; k < picks; k++) {
		struct em_balancer_result res = { .outcome = EM_BALANCER_OK,
						  .latency_us = 500 + (uint64_t)(k & 1023) };
		int idx;

		c.sin_addr.s_addr = htonl(0x0b000000 + (uint32_t)(k & 4095));
		idx = em_lb_port_pick(lp, (struct sockaddr *)&c, sizeof(c), -1, 0);
		if (idx >= 0)
			em_lb_port_release_result(lp, idx, &res);
	}
	t1 = now_ns();
	em_lb_port_put(lp);
	free(b);
	return (t1 - t0) / picks;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *label, *strategy, *affinity;
	} rows[] = {
		{ "random", "random", "None" },
		{ "round-robin", "round-robin", "None" },
		{ "least-conn", "least-conn", "None" },
		{ "least-request", "least-request", "None" },
		{ "consistent-hash", "consistent-hash", "None" },
		{ "round-robin+ClientIP", "round-robin", "ClientIP" },
	};
	static const size_t sizes[] = { 10, 100, 1000 };
	long picks = argc > 1 ? atol(argv[1]) : 200000;
	double base[3];

	em_log_set_level(EM_LOG_ERR);
	if (picks <= 0)
		picks = 200000;
	for (size_t s = 0; s < 3; s++)	/* warm up: page faults, clock */
		run("random", "None", sizes[s], picks);
	printf("%-22s %18s %18s %18s\n", "ns/pick (x random)", "10 backends", "100 backends",
	       "1000 backends");
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		printf("%-22s", rows[r].label);
		for (size_t s = 0; s < 3; s++) {
			double ns = run(rows[r].strategy, rows[r].affinity, sizes[s], picks);
			char cell[32];

			if (r == 0)
				base[s] = ns;
			snprintf(cell, sizeof(cell), "%.0f (x%.1f)", ns, ns / base[s]);
			printf(" %18s", cell);
		}
		printf("\n");
	}
	return 0;
}
