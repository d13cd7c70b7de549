/* config.c — option table, config file and flags. */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cidr.h"
#include "util/defaults.h"
#include "util/log.h"

enum opt_kind { OPT_STR, OPT_UINT, OPT_BOOL, OPT_LIST };

/* A value check run when the option is read: returns true when `value` is
 * acceptable; `expect` completes "is not ..." in the error message. */
struct opt_check {
	bool (*ok)(const char *value);
	const char *expect;
};

static bool prefix_ok(const char *v, int family, unsigned lo, unsigned hi)
{
	struct em_cidr c;
	return em_cidr_parse(v, family, EM_CIDR_STRICT, &c) == 0 && c.plen >= lo && c.plen <= hi;
}

static bool fake4_ok(const char *v) { return prefix_ok(v, AF_INET, 1, 30); }
static bool fake6_ok(const char *v) { return !*v || prefix_ok(v, AF_INET6, 64, 126); }
static bool capture_ok(const char *v) { return prefix_ok(v, AF_UNSPEC, 1, 128); }
static bool level_ok(const char *v) { return em_log_parse_level(v) >= 0; }
static bool unknown_ok(const char *v) { return !strcmp(v, "pass") || !strcmp(v, "nxdomain"); }
static bool nonempty_ok(const char *v) { return *v != '\0'; }

static bool domain_ok(const char *v)
{
	size_t label = 0;

	if (!*v || strlen(v) > 253)
		return false;
	for (const char *p = v; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

static bool source_ok(const char *v)
{
	return (!strncmp(v, "file:", 5) && v[5]) || !strncmp(v, "kube:", 5) ||
	       !strncmp(v, "edgecore-db:", 12);
}

/* "127.0.0.1:9482", "[::1]:9482" or "" (off): loopback only, the
 * endpoint has no authentication. */
static bool metrics_ok(const char *v)
{
	char host[64];
	const char *colon;
	struct in6_addr a6;
	struct in_addr a4;
	unsigned long port;
	char *end;
	size_t hl;

	if (!*v)
		return true;
	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (!close || close[1] != ':')
			return false;
		hl = (size_t)(close - v - 1);
		colon = close + 1;
		v++;
	} else {
		if (!(colon = strrchr(v, ':')))
			return false;
		hl = (size_t)(colon - v);
	}
	if (hl == 0 || hl >= sizeof(host))
		return false;
	memcpy(host, v, hl);
	host[hl] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || port == 0 || port > 65535)
		return false;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static bool abs_path_ok(const char *v) { return !*v || (*v == '/' && strlen(v) < 108); }

static const struct opt_check CHECK_METRICS = { metrics_ok, "empty (off) or a loopback address and port, e.g. 127.0.0.1:9482 or [::1]:9482" };
static const struct opt_check CHECK_SOCKET = { abs_path_ok, "empty (off) or an absolute path shorter than 108 bytes" };
static const struct opt_check CHECK_FAKE4 = { fake4_ok, "an IPv4 CIDR with a prefix length from 1 to 30 and no host bits, e.g. 198.18.0.0/16" };
static const struct opt_check CHECK_FAKE6 = { fake6_ok, "empty or an IPv6 CIDR with a prefix length from 64 to 126 and no host bits, e.g. fd9e:6d65:7368::/64" };
static const struct opt_check CHECK_CIDR = { capture_ok, "an IPv4 or IPv6 CIDR without host bits, e.g. 10.96.0.0/12" };
static const struct opt_check CHECK_LEVEL = { level_ok, "error, warn, info or debug" };
static const struct opt_check CHECK_UNKNOWN = { unknown_ok, "pass or nxdomain" };
static const struct opt_check CHECK_DOMAIN = { domain_ok, "a DNS domain such as cluster.local" };
static const struct opt_check CHECK_SOURCE = { source_ok, "file:PATH, kube:URL, kube:in-cluster or edgecore-db:PATH" };
static const struct opt_check CHECK_NONEMPTY = { nonempty_ok, "a non-empty value" };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off;		/* field in struct em_config */
	size_t count_off;	/* OPT_LIST: the unsigned counter */
	unsigned long max;	/* OPT_UINT: largest value */
	const char *def;	/* default, as text (also shown by --help) */
	const char *metavar;
	const char *help;
	/* Optional, after help so that table rows may leave them out. */
	const struct opt_check *check;	/* OPT_STR, OPT_LIST */
	unsigned long min;		/* OPT_UINT: smallest value */
};

#define F(field) offsetof(struct em_config, field)

/* Rows may stop after `help`: check and min then default to none and 0. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct opt opts[] = {
	{ "config", OPT_STR, F(config_file), 0, 0, NULL, "FILE",
	  "config file of `key = value` lines, keys as the long flags (default " EM_DEFAULT_CONFIG " if present)" },
	{ "source", OPT_LIST, F(sources), F(n_sources), 0, "file:/etc/edgemesh-tproxy/manifests", "TYPE:ARG",
	  "where services come from; repeatable: file:PATH (manifest file or directory), kube:URL (API server or KubeEdge MetaServer, e.g. kube:http://127.0.0.1:10550, kube:in-cluster), edgecore-db:PATH", &CHECK_SOURCE },
	{ "cluster-domain", OPT_STR, F(cluster_domain), 0, 0, "cluster.local", "DOMAIN", "cluster DNS domain", &CHECK_DOMAIN },
	{ "fake-ipv4-range", OPT_STR, F(fake_ipv4_range), 0, 0, EM_FAKE_IPV4_RANGE, "CIDR", "pool of fake IPv4 addresses handed out in DNS answers", &CHECK_FAKE4 },
	{ "fake-ipv6-range", OPT_STR, F(fake_ipv6_range), 0, 0, "", "CIDR", "pool of fake IPv6 addresses for AAAA answers (empty: none, AAAA gets an empty answer)", &CHECK_FAKE6 },
	{ "capture-cidr", OPT_LIST, F(capture_cidrs), F(n_capture_cidrs), 0, NULL, "CIDR", "also capture TCP to this range (e.g. the ClusterIP range); repeatable", &CHECK_CIDR },
	{ "client-iface", OPT_LIST, F(client_ifaces), F(n_client_ifaces), 0, "auto", "NAME", "capture connections and DNS queries of pods arriving on this interface (a name, prefix*, auto = common CNI names cni*, cbr0, docker0, veth*, cali*, lxc*, kube-bridge, weave; any = from anyone); host processes always; repeatable", &CHECK_NONEMPTY },
	{ "client-cidr", OPT_LIST, F(client_cidrs), F(n_client_cidrs), 0, NULL, "CIDR", "also capture from this source range (e.g. this node's pod CIDR); repeatable", &CHECK_CIDR },
	{ "tproxy-port", OPT_UINT, F(tproxy_port), 0, 65535, EM_DEFAULT_STR(EM_TPROXY_PORT), "PORT", "TPROXY listener port (on 127.0.0.1)", NULL, 1 },
	{ "queue-num", OPT_UINT, F(queue_num), 0, 65535, "0", "N", "first NFQUEUE number for DNS" },
	{ "queues", OPT_UINT, F(queues), 0, 64, "1", "N", "number of DNS queues (one thread each, fanout); to answer no DNS at all set dns-host and dns-pods to no", NULL, 1 },
	{ "workers", OPT_UINT, F(workers), 0, 256, "2", "N", "forwarder threads", NULL, 1 },
	{ "state-dir", OPT_STR, F(state_dir), 0, 0, "/var/lib/edgemesh-tproxy", "DIR", "where the fake IP mapping is kept across restarts" },
	{ "log-level", OPT_STR, F(log_level), 0, 0, "info", "LEVEL", "error, warn, info or debug", &CHECK_LEVEL },
	{ "dns-ttl", OPT_UINT, F(dns_ttl), 0, 86400, "5", "SECONDS", "TTL of DNS answers" },
	{ "dns-unknown", OPT_STR, F(dns_unknown), 0, 0, "pass", "pass|nxdomain", "unknown names in the cluster domain: let the real resolver answer, or answer NXDOMAIN", &CHECK_UNKNOWN },
	{ "dns-short-names", OPT_BOOL, F(dns_short_names), 0, 0, "no", "yes|no", "also answer <svc>.<ns> and <svc>.<ns>.svc" },
	{ "dns-host", OPT_BOOL, F(dns_host), 0, 0, "yes", "yes|no", "answer DNS queries of host processes" },
	{ "dns-pods", OPT_BOOL, F(dns_pods), 0, 0, "yes", "yes|no", "answer DNS queries forwarded from pods" },
	{ "dns-in-place", OPT_BOOL, F(dns_in_place), 0, 0, "no", "yes|no", "deliver answers by accepting the rewritten query (faster) rather than through a raw socket; unsafe when something DNATs DNS on this node, e.g. kube-proxy to the cluster DNS" },
	{ "manage-rules", OPT_BOOL, F(manage_rules), 0, 0, "yes", "yes|no", "install the nftables table and policy routes (no: you include nft/edgemesh.nft yourself)" },
	{ "cleanup", OPT_BOOL, F(cleanup), 0, 0, "no", "yes|no", "remove the nftables table, rules and routes a previous run left (as configured), then exit (the unit's ExecStopPost)" },
	{ "lb-strategy", OPT_STR, F(lb_strategy), 0, 0, "round-robin", "NAME", "default balancer strategy", &CHECK_NONEMPTY },
	{ "lb-plugin", OPT_LIST, F(lb_plugins), F(n_lb_plugins), 0, NULL, "PATH", "load a balancer strategy from a shared object; repeatable", &CHECK_NONEMPTY },
	{ "lb-max-fails", OPT_UINT, F(lb_max_fails), 0, 1000, "1", "N", "consecutive connect failures or timeouts that eject a backend (0: never; annotation fails=)" },
	{ "lb-max-5xx", OPT_UINT, F(lb_max_5xx), 0, 1000, "5", "N", "consecutive 5xx answers on HTTP ports that eject a backend (0: never; fails-5xx=)" },
	{ "lb-eject-ms", OPT_UINT, F(lb_eject_ms), 0, 86400000, "10000", "MS", "first ejection; the n-th lasts n times as long (eject=)" },
	{ "lb-eject-max-ms", OPT_UINT, F(lb_eject_max_ms), 0, 86400000, "300000", "MS", "longest ejection (eject-max=)" },
	{ "lb-max-eject-percent", OPT_UINT, F(lb_max_eject_percent), 0, 100, "50", "PCT", "never eject more than this share of a service's backends (0: never eject; max-eject=)" },
	{ "lb-panic-percent", OPT_UINT, F(lb_panic_percent), 0, 100, "50", "PCT", "below this share of healthy backends, ignore health and use all (panic=)" },
	{ "lb-hash-load-percent", OPT_UINT, F(lb_hash_load_percent), 0, 10000, "125", "PCT", "consistent-hash load bound c in percent of the fair share (0: unbounded; load=)" },
	{ "lb-ewma-decay-ms", OPT_UINT, F(lb_ewma_decay_ms), 0, 3600000, "10000", "MS", "least-request: latency peak-EWMA time constant (decay=)" },
	{ "lb-default-rtt-ms", OPT_UINT, F(lb_default_rtt_ms), 0, 600000, "30", "MS", "least-request: latency assumed for a backend not measured yet (rtt=)" },
	{ "capture-mark", OPT_UINT, F(capture_mark), 0, UINT_MAX, EM_DEFAULT_STR(EM_CAPTURE_MARK), "MARK", "packet mark steering captured connections to the listener", NULL, 1 },
	{ "bypass-mark", OPT_UINT, F(bypass_mark), 0, UINT_MAX, EM_DEFAULT_STR(EM_BYPASS_MARK), "MARK", "mark on the daemon's own traffic, never captured", NULL, 1 },
	{ "route-table", OPT_UINT, F(route_table), 0, UINT_MAX, EM_DEFAULT_STR(EM_ROUTE_TABLE), "N", "policy routing table for captured connections", NULL, 1 },
	{ "rule-priority", OPT_UINT, F(rule_priority), 0, 32765, EM_DEFAULT_STR(EM_RULE_PRIORITY), "N", "priority of the policy routing rule", NULL, 1 },
	{ "kube-token-file", OPT_STR, F(kube_token_file), 0, 0, "", "FILE", "bearer token for the API server" },
	{ "kube-ca-file", OPT_STR, F(kube_ca_file), 0, 0, "", "FILE", "CA bundle for the API server" },
	{ "kube-insecure", OPT_BOOL, F(kube_insecure), 0, 0, "no", "yes|no", "do not verify the API server certificate" },
	{ "node-name", OPT_STR, F(node_name), 0, 0, "", "NAME", "this node's name (default: the host name)" },
	{ "pods-on-node-only", OPT_BOOL, F(kube_pods_on_node_only), 0, 0, "no", "yes|no", "watch only the pods of this node (services without Endpoints then reach local backends only)" },
	{ "poll-interval-ms", OPT_UINT, F(poll_interval_ms), 0, 3600000, "1000", "MS", "edgecore-db polling interval", NULL, 10 },
	{ "edgecore-merge-legacy", OPT_BOOL, F(edgecore_merge_legacy), 0, 0, "no", "yes|no", "edgecore-db: also read the legacy meta rows (podlists, pre-upgrade copies) of kinds meta_v2 holds (no: they are stale and left out)" },
	{ "idle-timeout", OPT_UINT, F(idle_timeout_s), 0, 604800, "3600", "SECONDS", "close forwarded connections idle this long", NULL, 1 },
	{ "connect-timeout-ms", OPT_UINT, F(connect_timeout_ms), 0, 600000, "3000", "MS", "backend connect timeout", NULL, 1 },
	{ "http-max-head", OPT_UINT, F(http_max_head), 0, 1048576, "8192", "BYTES", "largest HTTP request head; larger ones get 431", NULL, 256 },
	{ "http-max-line", OPT_UINT, F(http_max_line), 0, 1048576, "4096", "BYTES", "longest HTTP request line; longer ones get 414", NULL, 64 },
	{ "http-head-timeout-ms", OPT_UINT, F(http_head_timeout_ms), 0, 3600000, "10000", "MS", "time from the first byte of an HTTP request head to its end; slower clients get 408", NULL, 1 },
	{ "http-keepalive-timeout", OPT_UINT, F(http_keepalive_s), 0, 604800, "60", "SECONDS", "close an idle HTTP keep-alive client connection after this long", NULL, 1 },
	{ "http-response-timeout-ms", OPT_UINT, F(http_response_timeout_ms), 0, 3600000, "60000", "MS", "time from a request sent upstream to its response head; else 504", NULL, 1 },
	{ "http-pool-per-backend", OPT_UINT, F(http_pool_per_backend), 0, 100000, "32", "N", "idle upstream keep-alive connections kept per backend and worker" },
	{ "http-pool-total", OPT_UINT, F(http_pool_total), 0, 1000000, "512", "N", "idle upstream keep-alive connections kept per worker; 0 disables reuse" },
	{ "http-pool-idle-timeout", OPT_UINT, F(http_pool_idle_s), 0, 86400, "30", "SECONDS", "close an idle upstream keep-alive connection after this long", NULL, 1 },
	{ "http-pool-max-requests", OPT_UINT, F(http_pool_max_requests), 0, UINT_MAX, "1000", "N", "requests sent on one upstream connection before it is closed", NULL, 1 },
	{ "proxy-batch-wait-us", OPT_UINT, F(proxy_batch_wait_us), 0, 10000, "50", "US", "a forwarder worker with requests in flight whose last wake-up found few events waits this long before polling again (fewer wake-ups per request under load); 0 = never" },
	{ "max-connections", OPT_UINT, F(max_conns), 0, 10000000, "16384", "N", "client connections forwarded at once; more are reset at once", NULL, 1 },
	{ "max-connections-per-client", OPT_UINT, F(max_conns_per_client), 0, 10000000, "4096", "N", "client connections per client address; more are reset at once", NULL, 1 },
	{ "pipe-size", OPT_UINT, F(pipe_size), 0, 1048576, "262144", "BYTES", "size of the pipes bodies and relays are spliced through", NULL, 4096 },
	{ "big-pipes", OPT_UINT, F(big_pipes), 0, 100000, "48", "N", "pipes grown to pipe-size at once (the rest stay 64 KiB): keeps under fs.pipe-user-pages-soft without CAP_SYS_RESOURCE" },
	{ "udp-idle-timeout", OPT_UINT, F(udp_idle_timeout_s), 0, 86400, "60", "SECONDS", "a UDP flow keeps its backend until idle this long", NULL, 1 },
	{ "udp-max-flows", OPT_UINT, F(udp_max_flows), 0, 1000000, "2048", "N", "UDP flows held at once (two sockets each); the least recently active is evicted", NULL, 1 },
	{ "dns-external-timeout-ms", OPT_UINT, F(dns_external_timeout_ms), 0, 60000, "1500", "MS", "ExternalName: wait this long for the resolver's answer about the target, then let the query pass untouched" },
	{ "metrics-listen", OPT_STR, F(metrics_listen), 0, 0, "127.0.0.1:9482", "ADDR:PORT",
	  "serve Prometheus metrics over HTTP at /metrics on this loopback address (empty: off)", &CHECK_METRICS },
	{ "control-socket", OPT_STR, F(control_socket), 0, 0, "/run/edgemesh-tproxy/control.sock", "PATH",
	  "unix socket (root only) that `edgemesh-tproxy status` asks (empty: off)", &CHECK_SOCKET },
};
#pragma GCC diagnostic pop

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const struct opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
		if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
	}
	return -EINVAL;
}

/* Set one option from text. List options append; `replace_list` first
 * empties a list that still holds its default. */
static int set_opt(struct em_config *cfg, const struct opt *o, const char *value,
		   const char *origin)
{
	char *base = (char *)cfg;
	char *end;
	unsigned long v;

	if (o->check && !o->check->ok(value)) {
		fprintf(stderr, "%s: --%s: \"%s\" is not %s\n", origin, o->name, value,
			o->check->expect);
		return -EINVAL;
	}
	switch (o->kind) {
	case OPT_STR: {
		char **field = (char **)(base + o->off);
		char *copy = strdup(value);
		if (!copy)
			return -ENOMEM;
		free(*field);
		*field = copy;
		return 0;
	}
	case OPT_UINT:
		errno = 0;
		v = strtoul(value, &end, 0);
		if (errno || end == value || *end || value[0] == '-' || v > o->max || v < o->min) {
			fprintf(stderr, "%s: --%s: \"%s\" is not a number from %lu to %lu\n",
				origin, o->name, value, o->min, o->max);
			return -EINVAL;
		}
		*(unsigned *)(base + o->off) = (unsigned)v;
		return 0;
	case OPT_BOOL:
		if (parse_bool(value, (bool *)(base + o->off)) < 0) {
			fprintf(stderr, "%s: --%s: \"%s\" is not yes or no\n", origin, o->name, value);
			return -EINVAL;
		}
		return 0;
	case OPT_LIST: {
		char **list = (char **)(base + o->off);
		unsigned *n = (unsigned *)(base + o->count_off);
		if (*n >= EM_CONFIG_MAX_LIST) {
			fprintf(stderr, "%s: --%s: at most %d values\n", origin, o->name, EM_CONFIG_MAX_LIST);
			return -EINVAL;
		}
		if (!(list[*n] = strdup(value)))
			return -ENOMEM;
		(*n)++;
		return 0;
	}
	}
	return -EINVAL;
}

static void clear_list(struct em_config *cfg, const struct opt *o)
{
	char **list = (char **)((char *)cfg + o->off);
	unsigned *n = (unsigned *)((char *)cfg + o->count_off);
	for (unsigned i = 0; i < *n; i++) {
		free(list[i]);
		list[i] = NULL;
	}
	*n = 0;
}

void em_config_defaults(struct em_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].def)
			set_opt(cfg, &opts[i], opts[i].def, "defaults");
}

void em_config_free(struct em_config *cfg)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		if (opts[i].kind == OPT_STR) {
			char **field = (char **)((char *)cfg + opts[i].off);
			free(*field);
			*field = NULL;
		} else if (opts[i].kind == OPT_LIST) {
			clear_list(cfg, &opts[i]);
		}
	}
}

/* Flags that act instead of setting an option. */
static const struct em_config_option actions[] = {
	{ "check-config", NULL, NULL, "validate the configuration and the sources, print a summary, and exit (0: valid, 2: not)", false, false, 0 },
	{ "help", NULL, NULL, "show this help and exit", false, false, 'h' },
	{ "version", NULL, NULL, "show the version and exit", false, false, 'V' },
};

#define N_ACTIONS (sizeof(actions) / sizeof(actions[0]))

bool em_config_option_at(size_t i, struct em_config_option *out)
{
	if (i < N_OPTS) {
		*out = (struct em_config_option){
			.name = opts[i].name,
			.metavar = opts[i].metavar,
			.def = opts[i].def,
			.help = opts[i].help,
			.repeatable = opts[i].kind == OPT_LIST,
			.takes_value = true,
		};
		return true;
	}
	if (i - N_OPTS < N_ACTIONS) {
		*out = actions[i - N_OPTS];
		return true;
	}
	return false;
}

void em_config_usage(FILE *out)
{
	struct em_config_option o;

	fprintf(out,
		"Usage: edgemesh-tproxy [OPTION]...\n"
		"       edgemesh-tproxy status [--json]\n"
		"Node-local service mesh: answers DNS for cluster services with fake IPs\n"
		"and forwards connections to them (nftables TPROXY) to the service's pods.\n\n");
	for (size_t i = 0; em_config_option_at(i, &o); i++) {
		char flag[64];
		if (o.takes_value)
			snprintf(flag, sizeof(flag), "--%s=%s", o.name, o.metavar);
		else if (o.short_flag)
			snprintf(flag, sizeof(flag), "-%c, --%s", o.short_flag, o.name);
		else
			snprintf(flag, sizeof(flag), "--%s", o.name);
		fprintf(out, "  %-34s %s", flag, o.help);
		if (o.def && o.def[0])
			fprintf(out, " [%s]", o.def);
		fputc('\n', out);
	}
	fprintf(out,
		"\nEvery option can also be set in the config file as `name = value`.\n"
		"Flags override the file. SIGHUP reloads the file and the sources;\n"
		"SIGINT or SIGTERM stop the daemon and remove the rules. See edgemesh-tproxy(8).\n");
}

static char *trim(char *s)
{
	char *e;
	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int em_config_parse_text(struct em_config *cfg, const char *text, const char *origin)
{
	char *copy = strdup(text), *line, *save = NULL;
	bool cleared[N_OPTS] = { false };
	unsigned lineno = 0;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char where[512], *eq, *key, *value;
		const struct opt *o;

		lineno++;
		line = trim(line);
		if (!*line || *line == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%u", origin, lineno);
		eq = strchr(line, '=');
		if (!eq) {
			fprintf(stderr, "%s: expected `key = value`, got \"%s\"\n", where, line);
			ret = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(line);
		value = trim(eq + 1);
		o = find_opt(key, strlen(key));
		if (!o || o->off == F(config_file)) {
			fprintf(stderr, "%s: unknown option \"%s\"\n", where, key);
			ret = -EINVAL;
			break;
		}
		/* A list named in the file replaces its default. */
		if (o->kind == OPT_LIST && !cleared[o - opts]) {
			clear_list(cfg, o);
			cleared[o - opts] = true;
		}
		if ((ret = set_opt(cfg, o, value, where)) < 0)
			break;
	}
	free(copy);
	return ret;
}

static int load_file(struct em_config *cfg, const char *path, bool must_exist)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret;

	if (!f) {
		if (!must_exist && errno == ENOENT)
			return 0;
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	n = getdelim(&text, &cap, '\0', f);
	fclose(f);
	ret = n < 0 ? 0 : em_config_parse_text(cfg, text, path);
	free(text);
	return ret;
}

static bool listed(const char *name, const char *const *names)
{
	for (; names && *names; names++)
		if (!strcmp(*names, name))
			return true;
	return false;
}

const char *em_config_first_change(const struct em_config *a, const struct em_config *b,
				   const char *const *ignore)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *o = &opts[i];
		const char *ca = (const char *)a + o->off, *cb = (const char *)b + o->off;
		bool same = true;

		if (listed(o->name, ignore))
			continue;
		switch (o->kind) {
		case OPT_STR: {
			const char *sa = *(char *const *)ca, *sb = *(char *const *)cb;
			same = !strcmp(sa ? sa : "", sb ? sb : "");
			break;
		}
		case OPT_UINT:
			same = *(const unsigned *)ca == *(const unsigned *)cb;
			break;
		case OPT_BOOL:
			same = *(const bool *)ca == *(const bool *)cb;
			break;
		case OPT_LIST: {
			unsigned na = *(const unsigned *)((const char *)a + o->count_off);
			unsigned nb = *(const unsigned *)((const char *)b + o->count_off);
			same = na == nb;
			for (unsigned j = 0; same && j < na; j++)
				same = !strcmp(((char *const *)ca)[j], ((char *const *)cb)[j]);
			break;
		}
		}
		if (!same)
			return o->name;
	}
	return NULL;
}

int em_config_validate(const struct em_config *cfg)
{
	if (cfg->capture_mark == cfg->bypass_mark) {
		fprintf(stderr, "--capture-mark and --bypass-mark: both are %#x; they must differ\n",
			cfg->capture_mark);
		return -EINVAL;
	}
	if (cfg->queue_num + cfg->queues - 1 > 65535) {
		fprintf(stderr, "--queue-num=%u with --queues=%u: queue numbers end past 65535\n",
			cfg->queue_num, cfg->queues);
		return -EINVAL;
	}
	if (cfg->n_sources == 0) {
		fprintf(stderr, "--source: at least one source is needed\n");
		return -EINVAL;
	}
	return 0;
}

int em_config_load(struct em_config *cfg, int argc, char **argv)
{
	struct option lopts[N_OPTS + 4];
	bool cleared[N_OPTS] = { false };
	const char *file = NULL;
	int c, idx, ret;

	em_config_defaults(cfg);
	for (size_t i = 0; i < N_OPTS; i++)
		lopts[i] = (struct option){ opts[i].name, required_argument, NULL, 0 };
	/* --cleanup alone means yes (the unit's ExecStopPost line) */
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].off == F(cleanup))
			lopts[i].has_arg = optional_argument;
	lopts[N_OPTS] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[N_OPTS + 1] = (struct option){ "version", no_argument, NULL, 'V' };
	lopts[N_OPTS + 2] = (struct option){ "check-config", no_argument, NULL, 'C' };
	lopts[N_OPTS + 3] = (struct option){ 0 };

	/* Pass 1: --config, --help and --version, and errors in flag syntax. */
	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hV", lopts, &idx)) != -1) {
		if (c == 'h') {
			em_config_usage(stdout);
			return 1;
		}
		if (c == 'V') {
			printf("edgemesh-tproxy %s\n", EM_VERSION);
			return 1;
		}
		if (c == 'C')
			cfg->check_config = true;
		if (c == '?') {
			fprintf(stderr, "Try 'edgemesh-tproxy --help'.\n");
			return -EINVAL;
		}
		if (c == 0 && opts[idx].off == F(config_file))
			file = optarg;
	}
	if (optind < argc) {
		fprintf(stderr, "unexpected argument \"%s\"; try 'edgemesh-tproxy --help'.\n", argv[optind]);
		return -EINVAL;
	}
	if ((ret = load_file(cfg, file ? file : EM_DEFAULT_CONFIG, file != NULL)) < 0)
		return ret;
	if (file && (ret = set_opt(cfg, &opts[0], file, "flags")) < 0)
		return ret;

	/* Pass 2: the other flags override the file. */
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", lopts, &idx)) != -1) {
		const struct opt *o;
		if (c != 0)
			continue;
		o = &opts[idx];
		if (o->off == F(config_file))
			continue;
		if (o->kind == OPT_LIST && !cleared[idx]) {
			clear_list(cfg, o);
			cleared[idx] = true;
		}
		if ((ret = set_opt(cfg, o, optarg ? optarg : "yes", "flags")) < 0)
			return ret;
	}
	return em_config_validate(cfg);
}
