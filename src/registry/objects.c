/* objects.c — Kubernetes JSON to the registry's plain structs. */
#include "registry/objects.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry/ports.h"

#define LB_ANNOTATION "edgemesh.kubeedge.io/lb-strategy"
#define LB_ANNOTATION_SHORT "edgemesh.kubeedge.io/lb"

static const char *const kind_names[EM_OBJ_KIND_COUNT] = {
	"Service", "Pod", "Endpoints", "EndpointSlice",
};

int em_obj_kind_from_name(const char *kind)
{
	if (!kind)
		return -1;
	for (int i = 0; i < EM_OBJ_KIND_COUNT; i++)
		if (strcmp(kind, kind_names[i]) == 0)
			return i;
	return -1;
}

const char *em_obj_kind_name(enum em_obj_kind kind)
{
	return (unsigned)kind < EM_OBJ_KIND_COUNT ? kind_names[kind] : "?";
}

/* ---- helpers ---------------------------------------------------------- */

static const char *str_at(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A port number in 1..65535 given as a JSON integer; 0 otherwise. */
static uint16_t port_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return 0;
	json_int_t n = json_integer_value(v);
	return n >= 1 && n <= 65535 ? (uint16_t)n : 0;
}

/* Missing protocol means TCP, as in Kubernetes; unknown -> -1. */
static int proto_at(json_t *o)
{
	const char *p = str_at(o, "protocol");
	if (!p || strcasecmp(p, "TCP") == 0)
		return IPPROTO_TCP;
	if (strcasecmp(p, "UDP") == 0)
		return IPPROTO_UDP;
	if (strcasecmp(p, "SCTP") == 0)
		return IPPROTO_SCTP;
	return -1;
}

static bool parse_ip(const char *s, struct em_ip *ip)
{
	if (!s)
		return false;
	if (inet_pton(AF_INET, s, &ip->a.v4) == 1) {
		ip->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, &ip->a.v6) == 1) {
		ip->family = AF_INET6;
		return true;
	}
	return false;
}

/* Entries of a JSON object (labels, selector) -> kv array. Unquoted YAML
 * numbers and booleans ("version: 1") arrive typed; they are turned back
 * into strings so that a selector never silently loses a term. Objects and
 * arrays are skipped. */
static int kv_from(json_t *o, struct em_kv **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!json_is_object(o) || json_object_size(o) == 0)
		return 0;
	struct em_kv *kv = calloc(json_object_size(o), sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	const char *k;
	json_t *v;
	size_t i = 0;
	json_object_foreach(o, k, v) {
		char num[32];
		const char *val = json_string_value(v);
		if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			val = num;
		} else if (json_is_boolean(v)) {
			val = json_is_true(v) ? "true" : "false";
		} else if (json_is_real(v)) {
			snprintf(num, sizeof(num), "%g", json_real_value(v));
			val = num;
		}
		if (!val)
			continue;
		/* key and value share one allocation (owned by key). */
		size_t lk = strlen(k), lv = strlen(val);
		kv[i].key = malloc(lk + lv + 2);
		if (kv[i].key) {
			memcpy(kv[i].key, k, lk + 1);
			kv[i].val = kv[i].key + lk + 1;
			memcpy(kv[i].val, val, lv + 1);
		}
		i++;
		if (!kv[i - 1].key) {
			*out = kv;
			*n = i;
			return -ENOMEM;
		}
	}
	*out = kv;
	*n = i;
	return 0;
}

static void kv_free(struct em_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(kv[i].key);	/* the value lives in the same block */
	free(kv);
}

/* ---- Service ---------------------------------------------------------- */

static int service_from(json_t *obj, struct em_obj_service *s, const char **why)
{
	json_t *spec = json_object_get(obj, "spec");
	json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
	if (!json_is_object(spec)) {
		*why = "Service without spec";
		return -EINVAL;
	}
	const char *type = str_at(spec, "type");
	if (type && strcmp(type, "ExternalName") == 0) {
		const char *ext = str_at(spec, "externalName");
		s->external_name = ext ? em_external_name_normalise(ext) : NULL;
		if (!s->external_name) {
			*why = "ExternalName service without a valid spec.externalName "
			       "(a DNS-1123 subdomain)";
			return -EINVAL;
		}
	}
	if (kv_from(json_object_get(spec, "selector"), &s->selector, &s->n_selector) < 0)
		return -ENOMEM;

	const char *cip = str_at(spec, "clusterIP");
	if (cip && (strcasecmp(cip, "None") == 0))
		s->headless = true;
	else if (cip && inet_pton(AF_INET, cip, &s->cip4) == 1)
		s->has_cip4 = true;

	const char *aff = str_at(spec, "sessionAffinity");
	s->affinity = strdup(aff && strcmp(aff, "ClientIP") == 0 ? "ClientIP" : "None");
	const char *lb = str_at(ann, LB_ANNOTATION);
	if (!lb)
		lb = str_at(ann, LB_ANNOTATION_SHORT);
	s->lb = dup_or_null(lb);
	if (!s->affinity || (lb && !s->lb))
		return -ENOMEM;

	json_t *ports = json_object_get(spec, "ports");
	if (!json_is_array(ports) || json_array_size(ports) == 0)
		return 0;	/* a service without ports has nothing to forward */
	s->ports = calloc(json_array_size(ports), sizeof(*s->ports));
	if (!s->ports)
		return -ENOMEM;
	size_t i;
	json_t *p;
	json_array_foreach(ports, i, p) {
		struct em_svc_port_spec *sp = &s->ports[s->n_ports];
		if (!json_is_object(p))
			continue;
		uint16_t port = port_at(p, "port");
		int proto = proto_at(p);
		if (!port || proto < 0)
			continue;	/* unusable port: skip it, keep the others */
		json_t *tp = json_object_get(p, "targetPort");
		sp->port = port;
		sp->ipproto = proto;
		sp->target_num = port;
		if (json_is_integer(tp)) {
			sp->target_num = port_at(p, "targetPort");
			if (!sp->target_num)
				continue;
		} else if (json_is_string(tp) && json_string_length(tp) > 0) {
			/* IntOrString: "8080" is a number, "http" a port name. */
			const char *t = json_string_value(tp);
			char *end;
			long n = strtol(t, &end, 10);
			if (*end == '\0') {
				if (n < 1 || n > 65535)
					continue;
				sp->target_num = (uint16_t)n;
			} else {
				sp->target_name = strdup(t);
				if (!sp->target_name)
					return -ENOMEM;
			}
		}
		const char *name = str_at(p, "name");
		sp->name = strdup(name ? name : "");
		if (!sp->name)
			return -ENOMEM;
		sp->app = em_app_proto_for_port(sp->name, str_at(p, "appProtocol"));
		s->n_ports++;
	}
	return 0;
}

static void service_free(struct em_obj_service *s)
{
	free(s->external_name);
	kv_free(s->selector, s->n_selector);
	free(s->affinity);
	free(s->lb);
	for (size_t i = 0; i < s->n_ports; i++) {
		free(s->ports[i].name);
		free(s->ports[i].target_name);
	}
	free(s->ports);
}

/* ---- Pod -------------------------------------------------------------- */

static bool pod_ready(json_t *obj, json_t *status)
{
	if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") &&
	    !json_is_null(json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp")))
		return false;
	const char *phase = str_at(status, "phase");
	if (!phase || strcmp(phase, "Running") != 0)
		return false;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(status, "conditions"), i, c) {
		const char *type = str_at(c, "type");
		if (type && strcmp(type, "Ready") == 0) {
			const char *st = str_at(c, "status");
			return st && strcmp(st, "True") == 0;
		}
	}
	return false;
}

static int pod_from(json_t *obj, struct em_obj_pod *p, const char **why)
{
	json_t *spec = json_object_get(obj, "spec");
	json_t *status = json_object_get(obj, "status");
	if (kv_from(json_object_get(json_object_get(obj, "metadata"), "labels"),
		    &p->labels, &p->n_labels) < 0)
		return -ENOMEM;
	p->ready = pod_ready(obj, status);
	p->host_network = json_is_true(json_object_get(spec, "hostNetwork"));
	p->has_pod_ip = parse_ip(str_at(status, "podIP"), &p->pod_ip);
	p->has_host_ip = parse_ip(str_at(status, "hostIP"), &p->host_ip);

	size_t n = 0, i, j;
	json_t *c, *cp;
	json_array_foreach(json_object_get(spec, "containers"), i, c)
		n += json_array_size(json_object_get(c, "ports"));
	if (!n)
		return 0;
	p->ports = calloc(n, sizeof(*p->ports));
	if (!p->ports)
		return -ENOMEM;
	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		json_array_foreach(json_object_get(c, "ports"), j, cp) {
			struct em_ctr_port *q = &p->ports[p->n_ports];
			q->container_port = port_at(cp, "containerPort");
			q->host_port = port_at(cp, "hostPort");
			q->ipproto = proto_at(cp);
			if (!q->container_port || q->ipproto < 0)
				continue;
			q->name = dup_or_null(str_at(cp, "name"));
			if (str_at(cp, "name") && !q->name)
				return -ENOMEM;
			p->n_ports++;
		}
	}
	return 0;
}

static void pod_free(struct em_obj_pod *p)
{
	kv_free(p->labels, p->n_labels);
	for (size_t i = 0; i < p->n_ports; i++)
		free(p->ports[i].name);
	free(p->ports);
}

/* ---- Endpoints / EndpointSlice --------------------------------------- */

static int ep_ports_from(json_t *ports, struct em_ep_subset *ss)
{
	size_t i;
	json_t *p;
	if (!json_array_size(ports))
		return 0;
	ss->ports = calloc(json_array_size(ports), sizeof(*ss->ports));
	if (!ss->ports)
		return -ENOMEM;
	json_array_foreach(ports, i, p) {
		struct em_ep_port *q = &ss->ports[ss->n_ports];
		q->port = port_at(p, "port");
		q->ipproto = proto_at(p);
		if (!q->port || q->ipproto < 0)
			continue;
		const char *name = str_at(p, "name");
		q->name = strdup(name ? name : "");
		if (!q->name)
			return -ENOMEM;
		ss->n_ports++;
	}
	return 0;
}

static int ep_addr_add(struct em_ep_subset *ss, json_t *a, const char *ip, const char *ns)
{
	struct em_ep_addr *q = &ss->addrs[ss->n_addrs];
	if (!parse_ip(ip, &q->ip))
		return 0;
	json_t *ref = json_object_get(a, "targetRef");
	const char *rk = str_at(ref, "kind"), *rn = str_at(ref, "name");
	const char *rns = str_at(ref, "namespace");
	if (rk && rn && strcmp(rk, "Pod") == 0) {
		if (asprintf(&q->pod, "%s/%s", rns ? rns : ns, rn) == -1) {
			q->pod = NULL;
			return -ENOMEM;
		}
	}
	ss->n_addrs++;
	return 0;
}

static int endpoints_from(json_t *obj, const char *ns, struct em_obj_endpoints *e)
{
	json_t *subsets = json_object_get(obj, "subsets");
	size_t i, j;
	json_t *s, *a;
	if (!json_array_size(subsets))
		return 0;
	e->subsets = calloc(json_array_size(subsets), sizeof(*e->subsets));
	if (!e->subsets)
		return -ENOMEM;
	json_array_foreach(subsets, i, s) {
		struct em_ep_subset *ss = &e->subsets[e->n_subsets++];
		json_t *addrs = json_object_get(s, "addresses");
		if (ep_ports_from(json_object_get(s, "ports"), ss) < 0)
			return -ENOMEM;
		if (!json_array_size(addrs))
			continue;
		ss->addrs = calloc(json_array_size(addrs), sizeof(*ss->addrs));
		if (!ss->addrs)
			return -ENOMEM;
		json_array_foreach(addrs, j, a)
			if (ep_addr_add(ss, a, str_at(a, "ip"), ns) < 0)
				return -ENOMEM;
	}
	return 0;
}

static int slice_from(json_t *obj, const char *ns, struct em_obj_endpoints *e,
		      const char **why)
{
	const char *svc = str_at(json_object_get(json_object_get(obj, "metadata"), "labels"),
				 "kubernetes.io/service-name");
	if (!svc) {
		*why = "EndpointSlice without label kubernetes.io/service-name";
		return -EINVAL;
	}
	e->service = strdup(svc);
	e->subsets = calloc(1, sizeof(*e->subsets));
	if (!e->service || !e->subsets)
		return -ENOMEM;
	e->n_subsets = 1;
	struct em_ep_subset *ss = e->subsets;
	if (ep_ports_from(json_object_get(obj, "ports"), ss) < 0)
		return -ENOMEM;
	size_t n = 0, i, j;
	json_t *ep, *ip;
	json_t *eps = json_object_get(obj, "endpoints");
	json_array_foreach(eps, i, ep)
		n += json_array_size(json_object_get(ep, "addresses"));
	if (!n)
		return 0;
	ss->addrs = calloc(n, sizeof(*ss->addrs));
	if (!ss->addrs)
		return -ENOMEM;
	json_array_foreach(eps, i, ep) {
		/* conditions.ready absent means ready (API contract). */
		json_t *ready = json_object_get(json_object_get(ep, "conditions"), "ready");
		if (json_is_false(ready))
			continue;
		json_array_foreach(json_object_get(ep, "addresses"), j, ip)
			if (ep_addr_add(ss, ep, json_string_value(ip), ns) < 0)
				return -ENOMEM;
	}
	return 0;
}

static void endpoints_free(struct em_obj_endpoints *e)
{
	free(e->service);
	for (size_t i = 0; i < e->n_subsets; i++) {
		struct em_ep_subset *ss = &e->subsets[i];
		for (size_t j = 0; j < ss->n_addrs; j++)
			free(ss->addrs[j].pod);
		for (size_t j = 0; j < ss->n_ports; j++)
			free(ss->ports[j].name);
		free(ss->addrs);
		free(ss->ports);
	}
	free(e->subsets);
}

/* ---- entry points ----------------------------------------------------- */

/* Lets the builder tell "the same object" from "an object at the same
 * address" when it decides whether a service entry can be reused. */
static _Atomic uint64_t next_seq;

int em_obj_from_json(json_t *obj, struct em_obj **out, const char **why)
{
	static const char *dummy;
	int ret;

	if (!why)
		why = &dummy;
	*why = NULL;
	*out = NULL;
	if (!json_is_object(obj)) {
		*why = "not a JSON object";
		return -EINVAL;
	}
	int kind = em_obj_kind_from_name(str_at(obj, "kind"));
	if (kind < 0)
		return -ENOTSUP;
	json_t *md = json_object_get(obj, "metadata");
	const char *name = str_at(md, "name"), *ns = str_at(md, "namespace");
	if (!name || !name[0]) {
		*why = "metadata.name missing";
		return -EINVAL;
	}
	if (!ns || !ns[0])
		ns = "default";
	if (strchr(name, '/') || strchr(ns, '/') || strlen(name) > 253 || strlen(ns) > 63) {
		*why = "invalid metadata.name or metadata.namespace";
		return -EINVAL;
	}
	struct em_obj *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->kind = (enum em_obj_kind)kind;
	/* One buffer "ns/name\0ns\0name\0": three strings, one allocation
	 * (the store holds 10,000s of objects). */
	size_t lns = strlen(ns), ln = strlen(name);
	o->nsname = malloc(2 * (lns + ln) + 4);
	if (!o->nsname) {
		ret = -ENOMEM;
		goto fail;
	}
	memcpy(o->nsname, ns, lns);
	o->nsname[lns] = '/';
	memcpy(o->nsname + lns + 1, name, ln + 1);
	o->ns = o->nsname + lns + ln + 2;
	memcpy(o->ns, ns, lns + 1);
	o->name = o->ns + lns + 1;
	memcpy(o->name, name, ln + 1);
	switch (o->kind) {
	case EM_OBJ_SERVICE:
		ret = service_from(obj, &o->u.svc, why);
		break;
	case EM_OBJ_POD:
		ret = pod_from(obj, &o->u.pod, why);
		break;
	case EM_OBJ_ENDPOINTS:
		o->u.ep.service = strdup(name);
		ret = o->u.ep.service ? endpoints_from(obj, ns, &o->u.ep) : -ENOMEM;
		break;
	default:
		ret = slice_from(obj, ns, &o->u.ep, why);
		break;
	}
	if (ret < 0)
		goto fail;
	o->nsname_len = strlen(o->nsname);
	o->seq = atomic_fetch_add(&next_seq, 1) + 1;
	*out = o;
	return 0;
fail:
	if (ret == -ENOMEM && !*why)
		*why = "out of memory";
	em_obj_free(o);
	return ret;
}

void em_obj_free(struct em_obj *o)
{
	if (!o)
		return;
	switch (o->kind) {
	case EM_OBJ_SERVICE:
		service_free(&o->u.svc);
		break;
	case EM_OBJ_POD:
		pod_free(&o->u.pod);
		break;
	default:
		endpoints_free(&o->u.ep);
		break;
	}
	free(o->nsname);	/* ns and name live in the same buffer */
	free(o);
}
