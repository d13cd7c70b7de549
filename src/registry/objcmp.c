/* objcmp.c — whether two normalised objects say the same thing, so that a
 * relist or a file re-read that hands over unchanged objects changes
 * nothing downstream (the services keep their blocks and balancers).
 * Every field of the structs in objects.h is compared: a field added there
 * must be added here, or a change of only that field would go unseen. */
#include <string.h>
#include <sys/socket.h>

#include "registry/objects.h"

/* The comparison below must see every field: a struct that grows fails the
 * build here until its *_eq function compares the new field and the size is
 * updated (LP64; the weight and the affinity timeout were once missed). */
_Static_assert(sizeof(struct em_obj_service) == 72, "compare the new field in svc_eq");
_Static_assert(sizeof(struct em_svc_port_spec) == 40, "compare the new field in svc_eq");
_Static_assert(sizeof(struct em_obj_pod) == 88, "compare the new field in pod_eq");
_Static_assert(sizeof(struct em_ctr_port) == 16, "compare the new field in pod_eq");
_Static_assert(sizeof(struct em_obj_endpoints) == 24, "compare the new field in ep_eq");
_Static_assert(sizeof(struct em_ep_addr) == 32, "compare the new field in ep_eq");

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool kvs_eq(const struct em_kv *a, size_t na, const struct em_kv *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i].key, b[i].key) || !str_eq(a[i].val, b[i].val))
			return false;
	return true;
}

static bool ip_eq(const struct em_ip *a, const struct em_ip *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == AF_INET6)
		return memcmp(&a->a.v6, &b->a.v6, sizeof(a->a.v6)) == 0;
	return a->a.v4.s_addr == b->a.v4.s_addr;
}

static bool svc_eq(const struct em_obj_service *a, const struct em_obj_service *b)
{
	if (!str_eq(a->external_name, b->external_name) ||
	    !kvs_eq(a->selector, a->n_selector, b->selector, b->n_selector) ||
	    a->headless != b->headless || a->has_cip4 != b->has_cip4 ||
	    (a->has_cip4 && a->cip4.s_addr != b->cip4.s_addr) ||
	    !str_eq(a->affinity, b->affinity) || a->affinity_timeout_s != b->affinity_timeout_s ||
	    !str_eq(a->lb, b->lb) || a->n_ports != b->n_ports)
		return false;
	for (size_t i = 0; i < a->n_ports; i++) {
		const struct em_svc_port_spec *x = &a->ports[i], *y = &b->ports[i];
		if (!str_eq(x->name, y->name) || x->port != y->port || x->ipproto != y->ipproto ||
		    x->target_num != y->target_num || !str_eq(x->target_name, y->target_name) ||
		    x->app != y->app)
			return false;
	}
	return true;
}

static bool pod_eq(const struct em_obj_pod *a, const struct em_obj_pod *b)
{
	if (!kvs_eq(a->labels, a->n_labels, b->labels, b->n_labels) || a->ready != b->ready ||
	    a->host_network != b->host_network || a->weight != b->weight ||
	    a->has_pod_ip != b->has_pod_ip ||
	    a->has_host_ip != b->has_host_ip || (a->has_pod_ip && !ip_eq(&a->pod_ip, &b->pod_ip)) ||
	    (a->has_host_ip && !ip_eq(&a->host_ip, &b->host_ip)) || a->n_ports != b->n_ports)
		return false;
	for (size_t i = 0; i < a->n_ports; i++) {
		const struct em_ctr_port *x = &a->ports[i], *y = &b->ports[i];
		if (!str_eq(x->name, y->name) || x->container_port != y->container_port ||
		    x->host_port != y->host_port || x->ipproto != y->ipproto)
			return false;
	}
	return true;
}

static bool ep_eq(const struct em_obj_endpoints *a, const struct em_obj_endpoints *b)
{
	if (!str_eq(a->service, b->service) || a->n_subsets != b->n_subsets)
		return false;
	for (size_t i = 0; i < a->n_subsets; i++) {
		const struct em_ep_subset *x = &a->subsets[i], *y = &b->subsets[i];
		if (x->n_addrs != y->n_addrs || x->n_ports != y->n_ports)
			return false;
		for (size_t j = 0; j < x->n_addrs; j++)
			if (!ip_eq(&x->addrs[j].ip, &y->addrs[j].ip) ||
			    !str_eq(x->addrs[j].pod, y->addrs[j].pod))
				return false;
		for (size_t j = 0; j < x->n_ports; j++)
			if (!str_eq(x->ports[j].name, y->ports[j].name) ||
			    x->ports[j].port != y->ports[j].port ||
			    x->ports[j].ipproto != y->ports[j].ipproto)
				return false;
	}
	return true;
}

bool em_obj_same(const struct em_obj *a, const struct em_obj *b)
{
	if (a->kind != b->kind || !str_eq(a->nsname, b->nsname))
		return false;
	switch (a->kind) {
	case EM_OBJ_SERVICE:
		return svc_eq(&a->u.svc, &b->u.svc);
	case EM_OBJ_POD:
		return pod_eq(&a->u.pod, &b->u.pod);
	case EM_OBJ_ENDPOINTS:
	case EM_OBJ_ENDPOINTSLICE:
		return ep_eq(&a->u.ep, &b->u.ep);
	default:
		return false;
	}
}
