/* snapshot.h — the immutable, published view of services that the DNS
 * rewriter and the forwarder read. Read side only; building lives in
 * registry.h. Every pointer reachable from a snapshot stays valid until the
 * reader leaves its RCU read-side critical section (see registry.h). */
#ifndef EM_REGISTRY_SNAPSHOT_H
#define EM_REGISTRY_SNAPSHOT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a service port is forwarded. Decided in exactly one place:
 * em_app_proto_for_port() in registry/ports.c. */
enum em_app_proto {
	EM_APP_L4 = 0,
	EM_APP_HTTP = 1,
};

struct em_backend {
	int family;			/* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} ip;
	uint16_t port;			/* host byte order */
	uint32_t weight;		/* >= 1 */
	const char *pod;		/* "ns/name" of the pod, or NULL (Endpoints) */
};

struct em_service;

struct em_service_port {
	const char *name;		/* "" when the port is unnamed */
	uint16_t port;			/* service port, host byte order */
	int ipproto;			/* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	enum em_app_proto app;
	const struct em_backend *backends;
	size_t n_backends;
	const struct em_service *service; /* back pointer */
	/* Balancer slot, owned through em_snapshot_hooks. The one field of a
	 * published snapshot that may change: its owner (src/lb) fills it on
	 * the port's first use, from a reader, with an atomic compare-and-swap
	 * (read it with acquire); port_fini clears it. Nobody else touches it. */
	void *lb;
};

struct em_service {
	const char *ns;
	const char *name;
	const char *fqdn;		/* "<name>.<ns>.svc.<domain>", lower case, no trailing dot */
	bool has_fake4;
	struct in_addr fake4;
	bool has_fake6;
	struct in6_addr fake6;
	bool headless;			/* clusterIP: None */
	bool has_cluster_ip4;
	struct in_addr cluster_ip4;	/* the real ClusterIP when there is one */
	const char *session_affinity;	/* "None" or "ClientIP" */
	const char *lb_strategy;	/* from annotation edgemesh.kubeedge.io/lb-strategy, or NULL */
	/* type ExternalName: the target ("db.example.com", lower case, no
	 * trailing dot); such a service has no fake IP and nothing is
	 * forwarded: DNS answers a CNAME. NULL for every other type. */
	const char *external_name;
	const struct em_service_port *ports;
	size_t n_ports;
};

struct em_snapshot;

/* The cluster domain the snapshot was built for, e.g. "cluster.local". */
const char *em_snapshot_domain(const struct em_snapshot *snap);
size_t em_snapshot_service_count(const struct em_snapshot *snap);
/* i in [0, em_snapshot_service_count()), stable order within one snapshot. */
const struct em_service *em_snapshot_service_at(const struct em_snapshot *snap, size_t i);

/* Lookups; NULL when not found. Names compare case-insensitively and the
 * lengths make it possible to look up labels straight out of a packet. */
const struct em_service *em_snapshot_find_name(const struct em_snapshot *snap,
					       const char *ns, size_t ns_len,
					       const char *name, size_t name_len);
/* By fake IP (or real ClusterIP): family AF_INET with a struct in_addr,
 * AF_INET6 with a struct in6_addr. */
const struct em_service *em_snapshot_find_addr(const struct em_snapshot *snap,
					       int family, const void *addr);
/* The service port for (ipproto, port) in host byte order; NULL if none. */
const struct em_service_port *em_service_find_port(const struct em_service *svc,
						   int ipproto, uint16_t port);

/* Called when a service port is first built and when the last snapshot that
 * holds it is freed, so that the balancer layer can attach per-port state
 * without the registry knowing about balancers. Services that a commit does
 * not touch are shared between snapshots and keep their state. port_init
 * runs on the committing thread before publication; port_fini runs after
 * the last reader has left. */
struct em_snapshot_hooks {
	void *ctx;
	int (*port_init)(void *ctx, struct em_service_port *port);
	void (*port_fini)(void *ctx, struct em_service_port *port);
};

#endif
