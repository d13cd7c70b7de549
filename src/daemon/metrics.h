/* metrics.h — the daemon's counters in the Prometheus text exposition
 * format (version 0.0.4), served over HTTP at /metrics on a loopback
 * address. Everything is read at scrape time from the parts' own counters;
 * nothing is stored here. */
#ifndef EM_DAEMON_METRICS_H
#define EM_DAEMON_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct em_registry;
struct em_proxy;
struct em_dns_queue;
struct em_sources;
struct em_udp;

/* Label cardinality bounds: series past these are summed under
 * service="other" / backend="other". */
#define EM_METRICS_MAX_SERVICE_PORTS 200
#define EM_METRICS_MAX_BACKENDS 1000

struct em_metrics_input {
	struct em_registry *reg;		/* required */
	const struct em_proxy *proxy;		/* NULL: forwarder not running */
	const struct em_dns_queue *dns;		/* NULL: DNS off */
	const struct em_udp *udp;		/* NULL: no UDP forwarder */
	const struct em_sources *sources;	/* NULL: none */
	int64_t started_at;			/* CLOCK_REALTIME seconds */
	uint64_t reloads, reload_failures;
};

/* Writes every family to out. The calling thread must be registered with
 * urcu-memb (the snapshot is read under its read lock). */
int em_metrics_write(const struct em_metrics_input *in, FILE *out);

/* Opens a listening TCP socket on "127.0.0.1:9482" / "[::1]:9482"
 * (validated by the config). Returns the fd or -errno. */
int em_metrics_listen(const char *addr);
/* Accepts one connection on lfd and answers it: GET /metrics gets the
 * metrics, anything else 404 (or 405 for other methods). The request is
 * read with a 1 s timeout and the answer written with one; the call never
 * blocks longer. */
void em_metrics_serve(int lfd, const struct em_metrics_input *in);

#endif
