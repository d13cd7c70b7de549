/* kube.h — the `kube` source: list + watch Services, Pods, Endpoints and
 * EndpointSlices against a Kubernetes API server or KubeEdge's MetaServer,
 * handing the objects to a registry sink (registry/source.h).
 *
 * One thread per resource. Each does LIST (paginated) -> sink.replace +
 * commit, then WATCH from the list's resourceVersion: ADDED/MODIFIED ->
 * upsert, DELETED -> remove, BOOKMARK -> resourceVersion only; one commit per
 * batch of events that changed something (when the stream pauses for 20 ms,
 * at the latest 200 ms after the batch's first change). 410 Gone (HTTP status or an ERROR
 * event) -> relist. Other failures -> reconnect (watch again from the last
 * resourceVersion) after a jittered exponential backoff. While the server is
 * unreachable nothing is removed: the last good data keeps serving. */
#ifndef EM_SOURCES_KUBE_H
#define EM_SOURCES_KUBE_H

#include <stdbool.h>

#include "registry/source.h"

#define EM_KUBE_DEFAULT_URL "http://127.0.0.1:10550"	/* KubeEdge MetaServer */
#define EM_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Zero fields take the default in brackets. Strings are copied by start. */
struct em_kube_config {
	const char *name;		/* sink source name ["kube"] */
	/* ["http://127.0.0.1:10550"]; "in-cluster" = https://$KUBERNETES_SERVICE_HOST:
	 * $KUBERNETES_SERVICE_PORT with the service-account token and CA
	 * (unless token_file / ca_file are set). */
	const char *url;
	const char *token_file;		/* bearer token, re-read on each connect [none] */
	const char *ca_file;		/* CA bundle [system default] */
	bool insecure_skip_verify;	/* [false] */
	const char *node_name;		/* for pods_on_node_only */
	bool pods_on_node_only;		/* fieldSelector=spec.nodeName=<node_name> [false] */
	bool no_endpointslices;		/* do not list/watch EndpointSlices [false: watch
					 * them; a 404 (old server) disables them quietly] */
	unsigned page_limit;		/* LIST ?limit= [500] */
	size_t max_list_bytes;		/* all pages of one LIST together; more
					 * fails the LIST (logged) [512 MiB] */
	size_t max_list_objects;	/* objects of one LIST [200000] */
	unsigned connect_timeout_ms;	/* [5000] */
	unsigned list_timeout_ms;	/* one LIST page request [60000] */
	unsigned watch_timeout_s;	/* ?timeoutSeconds=, jittered x1..x1.5 [300] */
	unsigned stall_timeout_ms;	/* no byte for this long = disconnect [90000] */
	unsigned backoff_min_ms;	/* [500] */
	unsigned backoff_max_ms;	/* [30000] */
	unsigned start_timeout_ms;	/* start() waits this long for the first LISTs [10000] */
};

struct em_source_kube;

/* Start the resource threads. Returns 0 after the first successful LIST of
 * every resource, or after start_timeout_ms (logged; the threads keep
 * trying in the background). -EINVAL for a bad config (logged), -ENOMEM. */
int em_source_kube_start(const struct em_kube_config *cfg, struct em_source_sink sink,
			 struct em_source_kube **out);

/* Stop promptly (in-flight transfers are aborted) and free. NULL is a no-op.
 * No sink call happens after it returns. */
void em_source_kube_stop(struct em_source_kube *k);

/* Counters for tests and metrics. */
struct em_kube_stats {
	unsigned long lists;		/* completed LISTs (all pages) */
	unsigned long watches;		/* watch connections that got a 200 */
	unsigned long events;
	unsigned long relists_410;
	unsigned long errors;		/* failed requests / broken streams */
	unsigned long stalls;
};
void em_source_kube_stats(struct em_source_kube *k, struct em_kube_stats *st);

#endif
