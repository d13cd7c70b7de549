/* config.h — the daemon's configuration: defaults, a key = value file, and
 * command-line flags. One option table drives all three and --help. */
#ifndef EM_DAEMON_CONFIG_H
#define EM_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EM_CONFIG_MAX_LIST 8

struct em_config {
	char *config_file;
	/* "file:PATH", "kube:URL" or "edgecore-db:PATH"; first wins on conflicts. */
	char *sources[EM_CONFIG_MAX_LIST];
	unsigned n_sources;
	char *cluster_domain;
	char *fake_ipv4_range;
	char *fake_ipv6_range;		/* "" = no IPv6 fake addresses */
	char *capture_cidrs[EM_CONFIG_MAX_LIST];	/* extra ranges to capture, e.g. ClusterIPs */
	unsigned n_capture_cidrs;
	char *client_ifaces[EM_CONFIG_MAX_LIST];	/* who is captured besides lo: interfaces */
	unsigned n_client_ifaces;
	char *client_cidrs[EM_CONFIG_MAX_LIST];		/* ... and source ranges */
	unsigned n_client_cidrs;
	unsigned tproxy_port;
	unsigned queue_num;
	unsigned queues;
	unsigned workers;
	char *state_dir;
	char *log_level;
	unsigned dns_ttl;
	char *dns_unknown;		/* "pass" or "nxdomain" */
	bool dns_short_names;
	bool dns_host;			/* queue host processes' queries (output hook) */
	bool dns_pods;			/* queue forwarded queries (prerouting hook) */
	bool dns_in_place;		/* accept rewritten queries instead of raw-socket replies */
	bool manage_rules;		/* install the nftables table and policy routes */
	bool cleanup;			/* remove what a crashed run left, then exit */
	char *lb_strategy;
	char *lb_plugins[EM_CONFIG_MAX_LIST];
	unsigned n_lb_plugins;
	/* Balancer health and strategy defaults (annotation args override). */
	unsigned lb_max_fails;
	unsigned lb_max_5xx;
	unsigned lb_eject_ms;
	unsigned lb_eject_max_ms;
	unsigned lb_max_eject_percent;
	unsigned lb_panic_percent;
	unsigned lb_hash_load_percent;
	unsigned lb_ewma_decay_ms;
	unsigned lb_default_rtt_ms;
	unsigned capture_mark;
	unsigned bypass_mark;
	unsigned route_table;
	unsigned rule_priority;
	char *kube_token_file;
	char *kube_ca_file;
	bool kube_insecure;
	char *node_name;
	bool kube_pods_on_node_only;
	unsigned poll_interval_ms;
	bool edgecore_merge_legacy;	/* read meta rows of kinds meta_v2 holds too */
	unsigned idle_timeout_s;
	unsigned connect_timeout_ms;
	/* forwarder limits (proxy.h names them) */
	unsigned http_max_head;
	unsigned http_max_line;
	unsigned http_head_timeout_ms;
	unsigned http_keepalive_s;
	unsigned http_response_timeout_ms;
	unsigned http_pool_per_backend;
	unsigned http_pool_total;
	unsigned http_pool_idle_s;
	unsigned http_pool_max_requests;
	unsigned proxy_batch_wait_us;
	unsigned max_conns;
	unsigned max_conns_per_client;
	unsigned pipe_size;
	unsigned big_pipes;
	unsigned udp_idle_timeout_s;	/* UDP flow idle timeout */
	unsigned udp_max_flows;		/* bound of the UDP flow table */
	unsigned dns_external_timeout_ms; /* ExternalName target lookups */
	char *metrics_listen;		/* "" = no metrics endpoint */
	char *control_socket;		/* "" = no status socket */
	bool check_config;		/* --check-config: validate and exit */
};

/* One entry of the option table, for --help and the man page. */
struct em_config_option {
	const char *name;		/* long flag without "--", also the file key */
	const char *metavar;		/* NULL for flags without a value */
	const char *def;		/* default as text; NULL or "" = none */
	const char *help;
	bool repeatable;
	bool takes_value;		/* false: --help, --version, --check-config */
	char short_flag;		/* 'h', 'V' or 0 */
};

/* The i-th option, flags without a value last; false past the end. */
bool em_config_option_at(size_t i, struct em_config_option *out);
/* Checks between options (marks differ, queue range fits); prints the
 * reason to stderr and returns -EINVAL. em_config_load() runs it. */
int em_config_validate(const struct em_config *cfg);
/* The name of the first option whose value differs between a and b, not
 * counting the options named in the NULL-terminated `ignore`; NULL when
 * they agree. */
const char *em_config_first_change(const struct em_config *a, const struct em_config *b,
				   const char *const *ignore);

/* Fill *cfg with defaults, then the config file (the --config flag, else
 * EM_DEFAULT_CONFIG if it exists), then the flags. Returns 0, 1 when the
 * caller should exit 0 (--help, --version), or -EINVAL after printing the
 * reason to stderr. */
int em_config_load(struct em_config *cfg, int argc, char **argv);
/* Parse one "key = value" text (a config file's contents); `origin` names it
 * in error messages. */
int em_config_parse_text(struct em_config *cfg, const char *text, const char *origin);
void em_config_defaults(struct em_config *cfg);
void em_config_usage(FILE *out);
void em_config_free(struct em_config *cfg);

#define EM_DEFAULT_CONTROL_SOCKET "/run/edgemesh-tproxy/control.sock"
#define EM_DEFAULT_CONFIG "/etc/edgemesh-tproxy/edgemesh-tproxy.conf"

#endif
