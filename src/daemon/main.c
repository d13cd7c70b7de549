/* main.c — edgemesh-tproxy: wire the registry, sources, balancers, DNS
 * rewriter, forwarder and ruleset together, and take them down in reverse
 * on SIGINT/SIGTERM. The main thread then runs the control loop: signals
 * (SIGHUP reloads, SIGUSR1 logs the counters), the systemd watchdog, the
 * metrics endpoint and the status socket. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/control.h"
#include "daemon/metrics.h"
#include "daemon/notify.h"
#include "daemon/privs.h"
#include "daemon/sources.h"
#include "dns/queue.h"
#include "lb/lb.h"
#include "lb/peers.h"
#include "nf/nf.h"
#include "proxy/proxy.h"
#include "registry/registry.h"
#include "udp/udp.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/progress.h"

struct daemon {
	struct em_config cfg;
	struct em_lb *lb;
	struct em_registry *reg;
	struct em_sources *sources;
	struct em_proxy *proxy;
	struct em_dns_queue *dns;
	struct em_nf *nf;
	/* The control loop. */
	int argc;
	char **argv;
	int metrics_fd, control_fd;
	bool control_made_dir;
	int64_t started_at;
	uint64_t reloads, reload_failures;
	uint64_t watchdog_usec;
	char status[256];		/* last STATUS= sent */
	struct em_udp *udp;
	struct em_nf_udp_port *udp_set;	/* the UDP capture set as last installed */
	size_t n_udp_set;		/* (UDP thread only) */
};

/* Runs on a forwarder worker for each accepted connection. */
static int resolve(void *reg, const struct sockaddr *dst, const struct sockaddr *client,
		   struct em_proxy_target *out)
{
	int ret;

	(void)client;
	urcu_memb_read_lock();
	ret = em_proxy_target_from_snapshot(em_registry_current(reg), dst, out);
	urcu_memb_read_unlock();
	return ret;
}

static int resolve_udp(void *reg, const struct sockaddr *dst, struct em_lb_port **out)
{
	return em_udp_port_from_snapshot(em_registry_current(reg), dst, out);
}

static uint64_t generation(void *reg)
{
	return em_registry_generation(reg);
}

/* On the UDP thread after each registry change: the ruleset captures UDP
 * only for the fake IP:port of UDP service ports that have backends (the
 * others meet the local route and are refused by the kernel). */
static int sync_udp_capture(void *arg)
{
	static struct em_ratelimit rl;
	struct daemon *d = arg;
	struct em_nf_udp_port *v = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	if (!d->nf)
		return 0;	/* --manage-rules=no: the admin fills the sets */
	urcu_memb_read_lock();
	const struct em_snapshot *snap = em_registry_current(d->reg);
	for (size_t i = 0; ret == 0 && i < em_snapshot_service_count(snap); i++) {
		const struct em_service *svc = em_snapshot_service_at(snap, i);
		for (size_t j = 0; ret == 0 && j < svc->n_ports; j++) {
			const struct em_service_port *sp = &svc->ports[j];
			if (sp->ipproto != IPPROTO_UDP || !sp->n_backends)
				continue;
			if (n + 2 > cap) {
				cap = cap ? 2 * cap : 64;
				struct em_nf_udp_port *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					ret = -ENOMEM;
					break;
				}
				v = nv;
			}
			/* memset: entries are compared bytewise below */
			if (svc->has_fake4) {
				memset(&v[n], 0, sizeof(v[n]));
				v[n].family = AF_INET;
				v[n].port = sp->port;
				memcpy(v[n++].addr, &svc->fake4, 4);
			}
			if (svc->has_fake6) {
				memset(&v[n], 0, sizeof(v[n]));
				v[n].family = AF_INET6;
				v[n].port = sp->port;
				memcpy(v[n++].addr, &svc->fake6, 16);
			}
		}
	}
	urcu_memb_read_unlock();
	/* Services are in a stable order: most commits (pods coming and
	 * going) leave the set as it is, and cost no netlink round trip. */
	if (ret == 0 && d->udp_set && n == d->n_udp_set &&
	    (n == 0 || memcmp(v, d->udp_set, n * sizeof(*v)) == 0)) {
		free(v);
		return 0;
	}
	if (ret == 0)
		ret = em_nf_udp_sync(d->nf, v, n);
	if (ret < 0) {
		em_log_rl(&rl, EM_LOG_WARN, "UDP capture sets (%zu ports): %s; retrying", n,
			  strerror(-ret));
		free(v);
		return ret;
	}
	em_debug("UDP capture sets: %zu fake IP:port", n);
	free(d->udp_set);
	d->udp_set = v ? v : malloc(1);	/* non-NULL: "installed", even empty */
	d->n_udp_set = n;
	return 0;
}

static int start_udp(struct daemon *d)
{
	struct em_udp_config uc;
	int ret;

	em_udp_config_defaults(&uc);
	uc.port = (uint16_t)d->cfg.tproxy_port;
	uc.listen6 = *d->cfg.fake_ipv6_range ? EM_TPROXY_IPV6 : NULL;
	uc.bypass_mark = d->cfg.bypass_mark;
	uc.idle_timeout_s = d->cfg.udp_idle_timeout_s;
	uc.max_flows = d->cfg.udp_max_flows;
	uc.resolve = resolve_udp;
	uc.resolve_ctx = d->reg;
	uc.generation = generation;
	uc.changed = sync_udp_capture;
	uc.changed_ctx = d;
	if ((ret = em_udp_start(&uc, &d->udp)) < 0)
		em_err("UDP TPROXY socket on port %u: %s", d->cfg.tproxy_port, strerror(-ret));
	return ret;
}

/* Each forwarded connection holds six descriptors (two sockets, two pipes):
 * take the hard limit, the soft default of 1024 is a few hundred clients. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			em_warn("cannot raise the open file limit to %llu: %s",
				(unsigned long long)rl.rlim_max, strerror(errno));
	}
}

static int make_state_dir(const char *dir)
{
	if (!*dir)
		return 0;
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		em_err("state directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	return em_state_dir_check(dir);
}

static int start_registry(struct daemon *d)
{
	struct em_registry_config rc = {
		.cluster_domain = d->cfg.cluster_domain,
		.fake_ipv4_range = d->cfg.fake_ipv4_range,
		.fake_ipv6_range = d->cfg.fake_ipv6_range,
		.state_dir = *d->cfg.state_dir ? d->cfg.state_dir : NULL,
		.capture_cidrs = (const char *const *)d->cfg.capture_cidrs,
		.n_capture_cidrs = d->cfg.n_capture_cidrs,
	};
	int ret;

	if ((ret = em_lb_new(d->cfg.lb_strategy, d->cfg.lb_plugins, d->cfg.n_lb_plugins, &d->lb)) < 0)
		return ret;
	em_lb_set_tuning(d->lb, &(struct em_lb_tuning){
		.max_fails = d->cfg.lb_max_fails,
		.max_5xx = d->cfg.lb_max_5xx,
		.eject_base_ms = d->cfg.lb_eject_ms,
		.eject_max_ms = d->cfg.lb_eject_max_ms < d->cfg.lb_eject_ms ? d->cfg.lb_eject_ms
									  : d->cfg.lb_eject_max_ms,
		.max_eject_pct = d->cfg.lb_max_eject_percent,
		.panic_pct = d->cfg.lb_panic_percent,
		.hash_load_pct = d->cfg.lb_hash_load_percent > 0 && d->cfg.lb_hash_load_percent <= 100
					 ? 101 : d->cfg.lb_hash_load_percent,
		.ewma_decay_ms = d->cfg.lb_ewma_decay_ms,
		.ewma_default_us = d->cfg.lb_default_rtt_ms * 1000,
	});
	if ((ret = make_state_dir(d->cfg.state_dir)) < 0)
		return ret;
	rc.hooks = em_lb_snapshot_hooks(d->lb);
	if (!(d->reg = em_registry_new(&rc))) {
		ret = -errno;
		em_err("registry (domain %s, fake ranges \"%s\" \"%s\"): %s", d->cfg.cluster_domain,
		       d->cfg.fake_ipv4_range, d->cfg.fake_ipv6_range, strerror(errno));
		return ret;
	}
	return em_sources_start(&d->cfg, d->reg, &d->sources);
}

static int start_proxy(struct daemon *d)
{
	struct em_proxy_config pc;
	int ret;

	em_proxy_config_defaults(&pc);
	pc.port = (uint16_t)d->cfg.tproxy_port;
	pc.listen6 = *d->cfg.fake_ipv6_range ? EM_TPROXY_IPV6 : NULL;
	pc.workers = d->cfg.workers ? d->cfg.workers : 1;
	pc.bypass_mark = d->cfg.bypass_mark;
	pc.connect_timeout_ms = d->cfg.connect_timeout_ms;
	pc.idle_timeout_s = d->cfg.idle_timeout_s;
	pc.max_head = d->cfg.http_max_head;
	pc.max_line = d->cfg.http_max_line;
	pc.head_timeout_ms = d->cfg.http_head_timeout_ms;
	pc.keepalive_s = d->cfg.http_keepalive_s;
	pc.response_timeout_ms = d->cfg.http_response_timeout_ms;
	pc.pool_per_backend = d->cfg.http_pool_per_backend;
	pc.pool_total = d->cfg.http_pool_total;
	pc.pool_idle_s = d->cfg.http_pool_idle_s;
	pc.pool_max_requests = d->cfg.http_pool_max_requests;
	pc.batch_wait_us = d->cfg.proxy_batch_wait_us;
	pc.max_conns = d->cfg.max_conns;
	pc.max_conns_per_client = d->cfg.max_conns_per_client;
	pc.pipe_size = d->cfg.pipe_size;
	pc.big_pipes = d->cfg.big_pipes;
	pc.resolve = resolve;
	pc.resolve_ctx = d->reg;
	if ((ret = em_proxy_start(&pc, &d->proxy)) < 0)
		em_err("TPROXY listener on port %u: %s", d->cfg.tproxy_port, strerror(-ret));
	return ret;
}

static int start_dns(struct daemon *d)
{
	struct em_dns_config dc;

	if (d->cfg.queues == 0 || (!d->cfg.dns_host && !d->cfg.dns_pods))
		return 0;
	em_dns_config_defaults(&dc);
	dc.opts.ttl = d->cfg.dns_ttl;
	dc.opts.short_names = d->cfg.dns_short_names;
	dc.opts.nxdomain_unknown = strcmp(d->cfg.dns_unknown, "nxdomain") == 0;
	dc.queue_num = (uint16_t)d->cfg.queue_num;
	dc.queues = (uint16_t)d->cfg.queues;
	dc.bypass_mark = d->cfg.bypass_mark;
	dc.in_place = d->cfg.dns_in_place;
	if (d->cfg.dns_external_timeout_ms)
		dc.external_timeout_ms = d->cfg.dns_external_timeout_ms;
	dc.registry = d->reg;
	/* em_dns_queue_start logs its failures, naming the queue */
	return em_dns_queue_start(&dc, &d->dns);
}

static void nf_config(struct daemon *d, struct em_nf_config *out)
{
	struct em_nf_config nc;

	em_nf_config_defaults(&nc);
	nc.fake_ipv4 = d->cfg.fake_ipv4_range;
	nc.fake_ipv6 = d->cfg.fake_ipv6_range;
	nc.capture_cidrs = (const char *const *)d->cfg.capture_cidrs;
	nc.n_capture_cidrs = d->cfg.n_capture_cidrs;
	nc.client_ifaces = (const char *const *)d->cfg.client_ifaces;
	nc.n_client_ifaces = d->cfg.n_client_ifaces;
	nc.client_cidrs = (const char *const *)d->cfg.client_cidrs;
	nc.n_client_cidrs = d->cfg.n_client_cidrs;
	nc.tproxy_port = (uint16_t)d->cfg.tproxy_port;
	nc.queue_num = (uint16_t)d->cfg.queue_num;
	nc.queues = (uint16_t)d->cfg.queues;
	nc.dns_host = d->cfg.dns_host;
	nc.dns_pods = d->cfg.dns_pods;
	nc.capture_mark = d->cfg.capture_mark;
	nc.bypass_mark = d->cfg.bypass_mark;
	nc.route_table = d->cfg.route_table;
	nc.rule_priority = d->cfg.rule_priority;
	*out = nc;
}

static int start_rules(struct daemon *d)
{
	struct em_nf_config nc;
	int ret;

	if (!d->cfg.manage_rules)
		return 0;
	nf_config(d, &nc);
	/* em_nf_install logs both outcomes: the cause of a failure, or the
	 * table, ranges, mark, route table and queue variant installed. */
	ret = em_nf_install(&nc, &d->nf);
	return ret < 0 ? ret : 0;
}

static void log_stats(struct daemon *d)
{
	struct em_registry_stats rs;
	struct em_proxy_stats ps;
	char line[1024];

	em_registry_get_stats(d->reg, &rs);
	em_info("registry: generation %llu, %llu services, %llu backends, %llu objects, "
		"%llu without fake IP, %llu rejected, %llu rejected backend addresses, last build %llu us",
		(unsigned long long)rs.generation, (unsigned long long)rs.services,
		(unsigned long long)rs.backends, (unsigned long long)rs.objects,
		(unsigned long long)rs.fake_exhausted, (unsigned long long)rs.rejected,
		(unsigned long long)rs.rejected_addrs,
		(unsigned long long)rs.last_build_us);
	if (d->lb) {
		struct em_lb_stats ls;
		em_lb_get_stats(d->lb, &ls);
		em_lb_stats_format(&ls, line, sizeof(line));
		em_info("lb: %s", line);
	}
	if (d->dns) {
		struct em_dns_stats ds;
		em_dns_queue_stats(d->dns, &ds);
		em_dns_stats_format(&ds, line, sizeof(line));
		em_info("dns: %s", line);
	}
	if (d->proxy) {
		em_proxy_get_stats(d->proxy, &ps);
		em_info("forwarder: accepted %llu, refused %llu, no backend %llu, upstream failures %llu, "
			"active %llu, bytes up %llu down %llu",
			(unsigned long long)ps.accepted, (unsigned long long)ps.refused,
			(unsigned long long)ps.no_backend, (unsigned long long)ps.upstream_failures,
			(unsigned long long)ps.active, (unsigned long long)ps.bytes_up,
			(unsigned long long)ps.bytes_down);
#define U(x) (unsigned long long)(x)
		em_info("forwarder http: requests %llu, responses 1xx %llu 2xx %llu 3xx %llu 4xx %llu "
			"5xx %llu, generated 4xx %llu 5xx %llu, retries %llu, pool hits %llu misses %llu "
			"stale %llu, timeouts head %llu response %llu, bad requests %llu responses %llu, "
			"aborted %llu, tunnels %llu, L4 fallbacks %llu, limit refusals %llu, pipes %llu "
			"(size refused %llu, small %llu)",
			U(ps.requests), U(ps.responses[1]), U(ps.responses[2]), U(ps.responses[3]),
			U(ps.responses[4]), U(ps.responses[5]), U(ps.generated[4]), U(ps.generated[5]),
			U(ps.retries), U(ps.pool_hits), U(ps.pool_misses), U(ps.pool_stale),
			U(ps.head_timeouts), U(ps.response_timeouts), U(ps.bad_requests),
			U(ps.bad_responses), U(ps.aborted_responses), U(ps.tunnels), U(ps.l4_fallbacks),
			U(ps.limit_refusals), U(ps.pipes), U(ps.pipe_size_failures), U(ps.pipes_small));
#undef U
	}
	if (d->udp) {
		struct em_udp_stats us;
		em_udp_get_stats(d->udp, &us);
		em_info("udp: flows %llu (active %llu; ended idle %llu, evicted %llu, icmp %llu, moved %llu), "
			"datagrams up %llu down %llu, refused %llu, no backend %llu, errors %llu",
			(unsigned long long)us.flows, (unsigned long long)us.active,
			(unsigned long long)us.idle, (unsigned long long)us.evicted,
			(unsigned long long)us.icmp_errors, (unsigned long long)us.moved,
			(unsigned long long)us.datagrams_up, (unsigned long long)us.datagrams_down,
			(unsigned long long)us.refused, (unsigned long long)us.no_backend,
			(unsigned long long)us.errors);
	}
}

/* Reverse order of start: stop capturing first, so no new connection or
 * query arrives while the parts behind the rules go away. */
static void stop_all(struct daemon *d)
{
	if (d->metrics_fd >= 0)
		close(d->metrics_fd);
	d->metrics_fd = -1;
	em_control_close(d->control_fd, d->cfg.control_socket, d->control_made_dir);
	d->control_fd = -1;
	em_udp_stop(d->udp);	/* first: its thread refreshes the ruleset's sets */
	d->udp = NULL;
	free(d->udp_set);
	d->udp_set = NULL;
	if (d->nf && em_nf_remove(d->nf) < 0)
		em_err("removing the ruleset failed; `nft delete table inet edgemesh` removes it");
	d->nf = NULL;
	em_dns_queue_stop(d->dns);
	em_proxy_stop(d->proxy);
	em_sources_stop(d->sources);
	if (d->reg)
		em_registry_free(d->reg);
	if (d->lb)
		em_lb_free(d->lb);
	em_config_free(&d->cfg);
}

static struct em_metrics_input metrics_input(const struct daemon *d)
{
	return (struct em_metrics_input){
		.reg = d->reg, .proxy = d->proxy, .dns = d->dns, .udp = d->udp, .sources = d->sources,
		.started_at = d->started_at, .reloads = d->reloads,
		.reload_failures = d->reload_failures,
	};
}

/* Metrics and status are conveniences: a port or socket that is taken is
 * logged, and the daemon serves traffic without them. */
static void start_control(struct daemon *d)
{
	int fd;

	if (*d->cfg.metrics_listen) {
		if ((fd = em_metrics_listen(d->cfg.metrics_listen)) < 0)
			em_warn("metrics on %s: %s; metrics are off", d->cfg.metrics_listen, strerror(-fd));
		else
			d->metrics_fd = fd;
	}
	if (*d->cfg.control_socket) {
		if ((fd = em_control_listen(d->cfg.control_socket, &d->control_made_dir)) < 0)
			em_warn("control socket %s: %s; `edgemesh-tproxy status` is off",
				d->cfg.control_socket,
				fd == -EADDRINUSE ? "another daemon answers there" : strerror(-fd));
		else
			d->control_fd = fd;
	}
}

/* STATUS= for systemctl status: what is served and where it comes from. */
static void update_status(struct daemon *d)
{
	struct em_registry_stats rs;
	char status[256];
	unsigned n = em_sources_count(d->sources), up = 0;

	em_registry_get_stats(d->reg, &rs);
	for (unsigned i = 0; i < n; i++) {
		struct em_source_state st;
		em_sources_state(d->sources, i, &st);
		up += st.connected == 1 || (st.connected < 0 && st.syncs > 0);
	}
	snprintf(status, sizeof(status), "%llu services, %llu backends; %u/%u sources up",
		 (unsigned long long)rs.services, (unsigned long long)rs.backends, up, n);
	if (strcmp(status, d->status) != 0) {
		em_notifyf("STATUS=%s", status);
		snprintf(d->status, sizeof(d->status), "%s", status);
	}
}

/* Pings only while every worker and queue thread moves or waits. */
static void watchdog_tick(struct daemon *d)
{
	static struct em_ratelimit rl;
	char stuck[32];
	unsigned n;

	if (!d->watchdog_usec)
		return;
	if ((n = em_progress_check(stuck, sizeof(stuck))) == 0) {
		em_notify("WATCHDOG=1");
		return;
	}
	em_log_rl(&rl, EM_LOG_ERR, "watchdog: %u thread(s) made no progress (first: %s); "
		  "withholding the keep-alive ping", n, stuck);
}

/* Options that a reload applies; every other one needs a restart. */
static const char *const reloadable[] = {
	"config", "source", "log-level", "kube-token-file", "kube-ca-file", "kube-insecure",
	"node-name", "pods-on-node-only", "poll-interval-ms", "edgecore-merge-legacy", NULL,
};

static bool has_source(const struct em_config *cfg, const char *spec)
{
	for (unsigned i = 0; i < cfg->n_sources; i++)
		if (!strcmp(cfg->sources[i], spec))
			return true;
	return false;
}

/* SIGHUP: read the configuration again and restart the sources. The
 * forwarder, the queues and the ruleset are not touched, and the registry
 * keeps serving its snapshot while the new sources load (a stopped source's
 * objects stay until replaced). Returns 0 or -errno; on failure nothing
 * changed. */
static int reload(struct daemon *d)
{
	struct em_config nc;
	struct em_sources *ns = NULL;
	const char *changed;
	int ret, level;

	em_notify("RELOADING=1");
	ret = em_config_load(&nc, d->argc, d->argv);
	if (ret != 0) {
		em_err("reload refused: the configuration is invalid (see the message above); "
		       "the running configuration is kept");
		ret = -EINVAL;
		goto out;
	}
	if ((changed = em_config_first_change(&d->cfg, &nc, reloadable))) {
		em_err("reload refused: --%s changed, which takes effect only on restart; "
		       "the running configuration is kept", changed);
		ret = -EINVAL;
		goto out;
	}
	if ((ret = em_sources_start(&nc, d->reg, &ns)) < 0) {
		em_err("reload refused: the new sources did not start (see above); the running ones are kept");
		goto out;
	}
	em_sources_stop(d->sources);
	d->sources = ns;
	for (unsigned i = 0; i < d->cfg.n_sources; i++)
		if (!has_source(&nc, d->cfg.sources[i]))
			em_sources_forget(d->reg, d->cfg.sources[i]);
	if ((level = em_log_parse_level(nc.log_level)) >= 0)
		em_log_set_level(level);
	/* Swap: the running config becomes the new one. */
	{
		struct em_config old = d->cfg;
		d->cfg = nc;
		nc = old;
	}
	em_info("reloaded: %u source(s)", d->cfg.n_sources);
out:
	em_config_free(&nc);
	if (ret < 0)
		d->reload_failures++;
	else
		d->reloads++;
	em_notify("READY=1");
	d->status[0] = '\0';
	update_status(d);
	return ret;
}

/* --check-config: everything that can be checked without installing
 * anything: the options (already, when read), the balancer strategies and
 * plugins, and the sources. */
static int check_config(struct daemon *d)
{
	struct em_lb *lb = NULL;
	int ret;

	if ((ret = em_lb_new(d->cfg.lb_strategy, d->cfg.lb_plugins, d->cfg.n_lb_plugins, &lb)) < 0)
		fprintf(stderr, "--lb-strategy=%s / --lb-plugin: %s\n", d->cfg.lb_strategy, strerror(-ret));
	else
		em_lb_free(lb);
	if (em_sources_check(&d->cfg, stdout) < 0)
		ret = -EINVAL;
	if (ret < 0) {
		fprintf(stderr, "configuration %s: NOT valid\n",
			d->cfg.config_file ? d->cfg.config_file : "(defaults and flags)");
		return 2;
	}
	printf("configuration %s: valid\n", d->cfg.config_file ? d->cfg.config_file : "(defaults and flags)");
	return EXIT_SUCCESS;
}

static int add_fd(int ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	return fd < 0 ? 0 : epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* The main thread's loop until SIGINT/SIGTERM. */
static void control_loop(struct daemon *d, const sigset_t *sigs)
{
	struct itimerspec period = { 0 };
	uint64_t tick_ns = d->watchdog_usec ? d->watchdog_usec * 1000 / 2 : 5000000000ULL;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	bool stop = false;

	if (ep == -1 || sfd == -1 || tfd == -1) {
		em_err("control loop: %s; only signals are handled", strerror(errno));
		goto fallback;
	}
	period.it_interval.tv_sec = (time_t)(tick_ns / 1000000000ULL);
	period.it_interval.tv_nsec = (long)(tick_ns % 1000000000ULL);
	period.it_value = period.it_interval;
	timerfd_settime(tfd, 0, &period, NULL);
	if (add_fd(ep, sfd) || add_fd(ep, tfd) || add_fd(ep, d->metrics_fd) || add_fd(ep, d->control_fd)) {
		em_err("control loop: epoll: %s; only signals are handled", strerror(errno));
		goto fallback;
	}
	urcu_memb_register_thread();	/* metrics and status read the snapshot */
	while (!stop) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			struct em_metrics_input in = metrics_input(d);

			if (fd == sfd) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGUSR1) {
						log_stats(d);
					} else if (si.ssi_signo == SIGHUP) {
						em_info("SIGHUP: reloading %s",
							d->cfg.config_file ? d->cfg.config_file : EM_DEFAULT_CONFIG);
						reload(d);
					} else {
						em_info("%s: stopping", strsignal((int)si.ssi_signo));
						stop = true;
					}
				}
			} else if (fd == tfd) {
				uint64_t expirations;
				if (read(tfd, &expirations, sizeof(expirations)) > 0) {
					watchdog_tick(d);
					update_status(d);
					em_registry_trim(d->reg);
				}
			} else if (fd == d->metrics_fd) {
				em_metrics_serve(fd, &in);
			} else if (fd == d->control_fd) {
				em_control_serve(fd, &in, d->cfg.lb_strategy);
			}
		}
	}
	urcu_memb_unregister_thread();
	close(ep);
	close(sfd);
	close(tfd);
	return;
fallback:
	for (;;) {
		int sig;
		if (sigwait(sigs, &sig) != 0)
			continue;
		if (sig == SIGUSR1) {
			log_stats(d);
			continue;
		}
		if (sig == SIGHUP) {
			reload(d);
			continue;
		}
		em_info("%s: stopping", strsignal(sig));
		break;
	}
	if (ep != -1)
		close(ep);
	if (sfd != -1)
		close(sfd);
	if (tfd != -1)
		close(tfd);
}

int main(int argc, char **argv)
{
	struct daemon d = { .metrics_fd = -1, .control_fd = -1, .argc = argc, .argv = argv };
	uint64_t t0_ms;
	sigset_t sigs;
	int ret, level;

	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return em_control_status_main(argc - 1, argv + 1);
	ret = em_config_load(&d.cfg, argc, argv);
	if (ret != 0) {
		em_config_free(&d.cfg);
		return ret > 0 ? EXIT_SUCCESS : 2;
	}
	if ((level = em_log_parse_level(d.cfg.log_level)) < 0) {
		fprintf(stderr, "--log-level: \"%s\" is not error, warn, info or debug\n", d.cfg.log_level);
		em_config_free(&d.cfg);
		return 2;
	}
	em_log_set_level(level);
	if (d.cfg.check_config) {
		ret = check_config(&d);
		em_config_free(&d.cfg);
		return ret;
	}
	if (d.cfg.cleanup) {	/* ExecStopPost: what a crash left goes */
		struct em_nf_config nc;
		nf_config(&d, &nc);
		ret = em_nf_cleanup(&nc);
		em_config_free(&d.cfg);
		return ret < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
	}

	/* Signals are taken synchronously below; every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	t0_ms = em_clock_ms();
	d.started_at = (int64_t)time(NULL);
	raise_fd_limit();
	em_info("edgemesh-tproxy %s starting: domain %s, fake range %s%s%s", EM_VERSION,
		d.cfg.cluster_domain, d.cfg.fake_ipv4_range,
		*d.cfg.fake_ipv6_range ? " and " : "", d.cfg.fake_ipv6_range);
	if (start_registry(&d) < 0 || start_proxy(&d) < 0 || start_dns(&d) < 0 ||
	    start_rules(&d) < 0 || start_udp(&d) < 0 || em_privs_drop() < 0) {
		em_err("start-up failed; nothing is left installed");
		stop_all(&d);
		return EXIT_FAILURE;
	}
	start_control(&d);
	em_info("ready in %ld ms: listener 127.0.0.1:%u%s, DNS queue %u (x%u)",
		(long)(em_clock_ms() - t0_ms),
		d.cfg.tproxy_port, *d.cfg.fake_ipv6_range ? " and [::1]" : "",
		d.cfg.queue_num, d.cfg.queues);
	log_stats(&d);
	/* Rules, queues and listeners are all up: only now READY=1. */
	d.watchdog_usec = em_notify_watchdog_usec();
	em_notify("READY=1");
	update_status(&d);
	if (d.watchdog_usec)
		em_info("watchdog: %llu ms, pinged while %u worker and queue threads make progress",
			(unsigned long long)(d.watchdog_usec / 1000), em_progress_count());

	control_loop(&d, &sigs);
	em_notify("STOPPING=1");
	log_stats(&d);
	stop_all(&d);
	em_info("stopped; ruleset and routes removed");
	return EXIT_SUCCESS;
}
