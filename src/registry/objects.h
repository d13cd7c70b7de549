/* objects.h — internal to the registry: Service, Pod, Endpoints and
 * EndpointSlice objects normalised from Kubernetes JSON into plain C structs
 * (only the fields the registry uses). Each object is one allocation owner:
 * em_obj_free() releases everything. */
#ifndef EM_REGISTRY_OBJECTS_H
#define EM_REGISTRY_OBJECTS_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/snapshot.h"

enum em_obj_kind {
	EM_OBJ_SERVICE,
	EM_OBJ_POD,
	EM_OBJ_ENDPOINTS,
	EM_OBJ_ENDPOINTSLICE,
	EM_OBJ_KIND_COUNT,
};

struct em_kv {
	char *key;
	char *val;
};

struct em_ip {
	int family;			/* AF_INET, AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} a;
};

struct em_svc_port_spec {
	char *name;			/* "" when unnamed */
	uint16_t port;
	int ipproto;
	uint16_t target_num;		/* numeric targetPort (defaults to port) */
	char *target_name;		/* named targetPort, or NULL */
	enum em_app_proto app;
};

struct em_obj_service {
	/* spec.type ExternalName: the target name, lower case, no trailing
	 * dot (validated as the API server does); NULL for every other type.
	 * NodePort and LoadBalancer services are served like ClusterIP ones. */
	char *external_name;
	struct em_kv *selector;
	size_t n_selector;		/* 0: no selector, Endpoints are used */
	bool headless;
	bool has_cip4;
	struct in_addr cip4;
	char *affinity;			/* "None" or "ClientIP" */
	uint32_t affinity_timeout_s;	/* sessionAffinityConfig.clientIP.timeoutSeconds (10800) */
	char *lb;			/* lb strategy annotation, or NULL */
	struct em_svc_port_spec *ports;
	size_t n_ports;
};

struct em_ctr_port {
	char *name;			/* NULL when unnamed */
	uint16_t container_port;
	uint16_t host_port;		/* 0 = none */
	int ipproto;
};

struct em_obj_pod {
	struct em_kv *labels;
	size_t n_labels;
	bool ready;			/* Running, Ready=True, not being deleted */
	bool host_network;
	uint32_t weight;		/* annotation edgemesh.kubeedge.io/weight, 1..100; 1 */
	bool has_pod_ip, has_host_ip;
	struct em_ip pod_ip, host_ip;
	struct em_ctr_port *ports;
	size_t n_ports;
};

struct em_ep_addr {
	struct em_ip ip;
	char *pod;			/* "ns/name" from targetRef, or NULL */
};

struct em_ep_port {
	char *name;			/* "" when unnamed */
	uint16_t port;
	int ipproto;
};

struct em_ep_subset {
	struct em_ep_addr *addrs;
	size_t n_addrs;
	struct em_ep_port *ports;
	size_t n_ports;
};

/* Endpoints and EndpointSlice share this shape; for a slice, service is the
 * kubernetes.io/service-name label and only ready endpoints are kept. */
struct em_obj_endpoints {
	char *service;
	struct em_ep_subset *subsets;
	size_t n_subsets;
};

struct em_obj {
	enum em_obj_kind kind;
	char *ns;
	char *name;
	char *nsname;			/* "ns/name" */
	size_t nsname_len;
	uint64_t seq;			/* unique per normalised object, never reused */
	union {
		struct em_obj_service svc;
		struct em_obj_pod pod;
		struct em_obj_endpoints ep;
	} u;
};

/* "Service", "Pod", "Endpoints", "EndpointSlice" -> kind; -1 otherwise. */
int em_obj_kind_from_name(const char *kind);
const char *em_obj_kind_name(enum em_obj_kind kind);

/* Normalises obj. Returns 0 with *out set; -ENOTSUP for a kind the registry
 * does not use (not an error for callers); -EINVAL with why (a static
 * string) for an unusable object; -ENOMEM. Fields of the wrong type are
 * ignored where the object stays usable (a port "80" as a string, a
 * negative port: that port is dropped). */
int em_obj_from_json(json_t *obj, struct em_obj **out, const char **why);
void em_obj_free(struct em_obj *o);
/* Same kind, name and every normalised field (objcmp.c); seq aside.
 * A field added to the structs above must be compared there too. */
bool em_obj_same(const struct em_obj *a, const struct em_obj *b);

#endif
