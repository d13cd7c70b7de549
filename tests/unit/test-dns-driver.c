/* test-dns-driver.c — runs the DNS queue with a fixed catalog, for the netns
 * tests and the benchmark (netns-tests/dns-*.sh). Not a unit test: meson
 * builds it as em-dns-driver.
 *
 * Catalog: nginx-svc.default (198.18.0.10, fd00:e3::a, ports http-0/tcp
 * 12345, dns/udp 53), v4only.default (198.18.0.11), and svc-0..svc-99 in
 * namespace bench (198.18.1.N).
 *
 * em-dns-driver [-q first-queue] [-n queues] [-t ttl] [-m bypass-mark]
 *               [-x (nxdomain for unknown)] [-s (short names)]
 *               [-I (answer in place where the kernel allows)] [-r ready-file]
 * Runs until SIGINT/SIGTERM, then prints the counters on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns/queue.h"
#include "util/log.h"

#include "test-dns-verify.h"

#define N_BENCH 100

static struct em_service bench[N_BENCH];
static char bench_names[N_BENCH][16];
static struct em_dns_catalog base;

static const struct em_service *drv_find_name(void *ctx, const char *ns, size_t ns_len,
					      const char *name, size_t name_len)
{
	const struct em_service *s = dv_find_name(ctx, ns, ns_len, name, name_len);
	if (s || ns_len != 5 || strncasecmp(ns, "bench", 5) != 0)
		return s;
	for (int i = 0; i < N_BENCH; i++)
		if (strlen(bench_names[i]) == name_len && strncasecmp(bench_names[i], name, name_len) == 0)
			return &bench[i];
	return NULL;
}

static const struct em_service *drv_find_addr(void *ctx, int family, const void *addr)
{
	const struct em_service *s = dv_find_addr(ctx, family, addr);
	for (int i = 0; !s && family == AF_INET && i < N_BENCH; i++)
		if (memcmp(&bench[i].fake4, addr, 4) == 0)
			s = &bench[i];
	return s;
}

int main(int argc, char **argv)
{
	struct em_dns_config cfg;
	struct em_dns_queue *q;
	const char *ready = NULL;
	sigset_t set;
	int opt, sig, err;

	em_dns_config_defaults(&cfg);
	while ((opt = getopt(argc, argv, "q:n:t:m:xsIr:")) != -1) {
		switch (opt) {
		case 'q': cfg.queue_num = (uint16_t)atoi(optarg); break;
		case 'n': cfg.queues = (uint16_t)atoi(optarg); break;
		case 't': cfg.opts.ttl = (uint32_t)atoi(optarg); break;
		case 'm': cfg.bypass_mark = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'x': cfg.opts.nxdomain_unknown = true; break;
		case 's': cfg.opts.short_names = true; break;
		case 'I': cfg.in_place = true; break;
		case 'r': ready = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-q queue] [-n queues] [-t ttl] [-m mark] [-x] [-s] [-I] [-r ready-file]\n",
				argv[0]);
			return 2;
		}
	}
	dv_catalog_init(&base);
	base.find_name = drv_find_name;
	base.find_addr = drv_find_addr;
	cfg.catalog = &base;
	for (int i = 0; i < N_BENCH; i++) {
		snprintf(bench_names[i], sizeof(bench_names[i]), "svc-%d", i);
		bench[i] = (struct em_service){ .ns = "bench", .name = bench_names[i], .has_fake4 = true };
		bench[i].fake4.s_addr = htonl(0xc6120100u + (unsigned)i);	/* 198.18.1.i */
	}

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* inherited by the queue threads */
	err = em_dns_queue_start(&cfg, &q);
	if (err < 0)
		return 1;	/* logged by em_dns_queue_start */
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f)
			fclose(f);
	}
	sigwait(&set, &sig);

	struct em_dns_stats st;
	char line[1024];
	em_dns_queue_stats(q, &st);
	em_dns_stats_format(&st, line, sizeof(line));
	em_dns_queue_stop(q);
	fprintf(stderr, "em-dns-driver: %s\n", line);
	return 0;
}
