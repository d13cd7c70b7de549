/* build.c — resolving services to ports and backends, the EdgeMesh way,
 * into a new snapshot.
 *
 * Where backends come from: a service's Endpoints (the object of its name),
 * else its EndpointSlices, whenever the sources hold any, selector or not.
 * Since KubeEdge 1.8 an edge node receives only its own pods, so on a real
 * node (MetaServer, edgecore.db) only Endpoints know the backends on other
 * nodes. The pods a selector matches are used only where no Endpoints exist
 * (manifests on disk, legacy podlists). Either way the EdgeMesh address rule
 * applies where the pod is known: to the matched pods, and to Endpoints
 * addresses whose targetRef names a pod the registry holds.
 *
 * Selector matching uses a pod index by (namespace, label, value): a
 * service looks up each of its selector labels, walks the shortest list and
 * checks the remaining labels, so the cost is about the number of matching
 * pods, not services x pods. */
#include "registry/snapshot_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "registry/ports.h"
#include "util/log.h"
#include "util/siphash.h"

/* ---- pod index ------------------------------------------------------------- */

static void list_free(void *v)
{
	struct em_obj_list *l = v;
	free(l->objs);
	free(l);
}

static struct em_obj_list *list_add(struct em_strmap *m, const char *key, struct em_obj *o)
{
	struct em_strmap_entry *e = em_strmap_put(m, key);
	if (!e)
		return NULL;
	struct em_obj_list *l = e->val;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			return NULL;
		e->val = l;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct em_obj **p = realloc(l->objs, cap * sizeof(*p));
		if (!p)
			return NULL;
		l->objs = p;
		l->cap = cap;
	}
	l->objs[l->n++] = o;
	return l;
}

/* Whether the pod can ever be a backend: ready with a usable address. */
static bool pod_usable(const struct em_obj_pod *p)
{
	if (!p->ready)
		return false;
	return p->host_network ? p->has_host_ip : (p->has_pod_ip || p->has_host_ip);
}

/* "ns\1key\1value" without printf: this runs for every label of every pod. */
static int label_key(char *buf, size_t n, const char *ns, const char *k, const char *v)
{
	size_t a = strlen(ns), b = strlen(k), c = strlen(v);
	if (a + b + c + 3 > n)
		return -1;
	memcpy(buf, ns, a);
	buf[a] = '\x01';
	memcpy(buf + a + 1, k, b);
	buf[a + 1 + b] = '\x01';
	memcpy(buf + a + b + 2, v, c + 1);
	return 0;
}

void em_pod_index_init(struct em_pod_index *idx)
{
	em_strmap_init(&idx->by_label);
	idx->gen = 1;
}

void em_pod_index_reset(struct em_pod_index *idx)
{
	uint64_t gen = idx->gen;
	em_pod_index_clear(idx);
	em_strmap_init(&idx->by_label);
	idx->gen = gen + 1;	/* monotonic: entries built before must not match */
}

int em_pod_index_add(struct em_pod_index *idx, struct em_obj *pod)
{
	char key[1024];
	const struct em_obj_pod *p = &pod->u.pod;
	if (!pod_usable(p))
		return 0;
	idx->gen++;
	for (size_t j = 0; j < p->n_labels; j++) {
		if (label_key(key, sizeof(key), pod->ns, p->labels[j].key, p->labels[j].val) < 0)
			continue;
		struct em_obj_list *l = list_add(&idx->by_label, key, pod);
		if (!l)
			return -ENOMEM;
		l->gen = idx->gen;
	}
	return 0;
}

/* Removal is a scan of the label's list: lists are per (ns, label, value),
 * and a swap with the last entry keeps it O(1) after the find. */
void em_pod_index_remove(struct em_pod_index *idx, struct em_obj *pod)
{
	char key[1024];
	const struct em_obj_pod *p = &pod->u.pod;
	if (!pod_usable(p))
		return;
	idx->gen++;
	for (size_t j = 0; j < p->n_labels; j++) {
		if (label_key(key, sizeof(key), pod->ns, p->labels[j].key, p->labels[j].val) < 0)
			continue;
		struct em_strmap_entry *e = em_strmap_get(&idx->by_label, key);
		if (!e)
			continue;
		struct em_obj_list *l = e->val;
		l->gen = idx->gen;
		for (size_t i = 0; i < l->n; i++) {
			if (l->objs[i] != pod)
				continue;
			l->objs[i] = l->objs[--l->n];
			break;
		}
		if (l->n == 0)
			list_free(em_strmap_del(&idx->by_label, key));
	}
}

void em_pod_index_clear(struct em_pod_index *idx)
{
	em_strmap_clear(&idx->by_label, list_free);
}

int em_objlist_add(struct em_strmap *m, const char *key, struct em_obj *o)
{
	return list_add(m, key, o) ? 0 : -ENOMEM;
}
void em_objlist_free(void *v)
{
	list_free(v);
}

static bool pod_matches(const struct em_obj_pod *p, const struct em_obj_service *s)
{
	for (size_t i = 0; i < s->n_selector; i++) {
		bool found = false;
		for (size_t j = 0; j < p->n_labels && !found; j++)
			found = strcmp(p->labels[j].key, s->selector[i].key) == 0 &&
				strcmp(p->labels[j].val, s->selector[i].val) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* ---- backends -------------------------------------------------------------- */

struct bvec {
	struct em_backend *b;
	const struct em_obj **pod;	/* the pod behind b[i], or NULL */
	size_t n, cap;
};

static int bvec_push(struct bvec *v, const struct em_ip *ip, uint16_t port,
		     const char *pod, const struct em_obj *po)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		struct em_backend *nb = realloc(v->b, cap * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		v->b = nb;
		const struct em_obj **np = realloc(v->pod, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		v->pod = np;
		v->cap = cap;
	}
	v->pod[v->n] = po;
	struct em_backend *b = &v->b[v->n++];
	memset(b, 0, sizeof(*b));
	b->family = ip->family;
	if (ip->family == AF_INET)
		b->ip.v4 = ip->a.v4;
	else
		b->ip.v6 = ip->a.v6;
	b->port = port;
	b->weight = po && po->kind == EM_OBJ_POD && po->u.pod.weight ? po->u.pod.weight : 1;
	b->pod = pod;		/* replaced by an arena copy */
	return 0;
}

/* The EdgeMesh rule for one pod and one service port:
 *   container port designated by targetPort maps a hostPort -> hostIP:hostPort
 *   hostNetwork pod                                         -> hostIP:targetPort
 *   otherwise                                               -> podIP:targetPort
 * A named targetPort is resolved through the pod's container port names;
 * a pod without that name is skipped (returns false). */
static bool pod_backend(const struct em_obj_pod *p, const struct em_svc_port_spec *sp,
			struct em_ip *ip, uint16_t *port)
{
	const struct em_ctr_port *cp = NULL;
	for (size_t i = 0; i < p->n_ports && !cp; i++) {
		const struct em_ctr_port *c = &p->ports[i];
		if (sp->target_name ? (c->name && strcmp(c->name, sp->target_name) == 0)
				    : (c->container_port == sp->target_num && c->ipproto == sp->ipproto))
			cp = c;
	}
	if (sp->target_name && !cp)
		return false;
	uint16_t target = cp ? cp->container_port : sp->target_num;
	if (cp && cp->host_port && p->has_host_ip) {
		*ip = p->host_ip;
		*port = cp->host_port;
	} else if (p->host_network) {
		if (!p->has_host_ip)
			return false;
		*ip = p->host_ip;
		*port = target;
	} else {
		if (!p->has_pod_ip)
			return false;
		*ip = p->pod_ip;
		*port = target;
	}
	return true;
}

static const struct em_obj_list *smallest_list(const struct em_build_input *in,
					       const struct em_obj *svc)
{
	char key[1024];
	const struct em_obj_list *best = NULL;
	static const struct em_obj_list empty;
	for (size_t i = 0; i < svc->u.svc.n_selector; i++) {
		if (label_key(key, sizeof(key), svc->ns, svc->u.svc.selector[i].key,
			      svc->u.svc.selector[i].val) < 0)
			return &empty;
		struct em_strmap_entry *e = em_strmap_get(&in->pods->by_label, key);
		if (!e)
			return &empty;
		const struct em_obj_list *l = e->val;
		if (!best || l->n < best->n)
			best = l;
	}
	return best ? best : &empty;
}

static int pods_for_port(const struct em_obj *svc,
			 const struct em_obj_list *cand, const struct em_svc_port_spec *sp,
			 struct bvec *out)
{
	for (size_t i = 0; i < cand->n; i++) {
		const struct em_obj *po = cand->objs[i];
		struct em_ip ip;
		uint16_t port;
		if (!pod_matches(&po->u.pod, &svc->u.svc) || !pod_backend(&po->u.pod, sp, &ip, &port))
			continue;
		if (bvec_push(out, &ip, port, NULL, po) < 0)
			return -ENOMEM;
	}
	return 0;
}

static bool ep_port_matches(const struct em_ep_subset *ss, const struct em_ep_port *ep,
			    const struct em_svc_port_spec *sp, size_t svc_ports)
{
	if (ep->ipproto != sp->ipproto)
		return false;
	if (strcmp(ep->name, sp->name) == 0)
		return true;
	/* A single unnamed service port and a single endpoints port pair up. */
	return svc_ports == 1 && ss->n_ports == 1;
}

/* The EdgeMesh rule for an Endpoints address whose pod is known (ep_port
 * is the resolved target port, i.e. a container port): hostIP:hostPort
 * when that container port maps a host port, hostIP for a hostNetwork pod;
 * otherwise the address stays as the Endpoints give it. */
static void ep_pod_rule(const struct em_obj_pod *p, int ipproto, struct em_ip *ip,
			uint16_t *port)
{
	for (size_t i = 0; i < p->n_ports; i++) {
		const struct em_ctr_port *c = &p->ports[i];
		if (c->container_port != *port || c->ipproto != ipproto)
			continue;
		if (c->host_port && p->has_host_ip) {
			*ip = p->host_ip;
			*port = c->host_port;
			return;
		}
		break;
	}
	if (p->host_network && p->has_host_ip)
		*ip = p->host_ip;
}

static int endpoints_for_port(const struct em_build_input *in, const struct em_obj_list *eps,
			      const struct em_svc_port_spec *sp, size_t svc_ports, struct bvec *out)
{
	for (size_t e = 0; e < eps->n; e++) {
		const struct em_obj_endpoints *ep = &eps->objs[e]->u.ep;
		for (size_t s = 0; s < ep->n_subsets; s++) {
			const struct em_ep_subset *ss = &ep->subsets[s];
			for (size_t p = 0; p < ss->n_ports; p++) {
				if (!ep_port_matches(ss, &ss->ports[p], sp, svc_ports))
					continue;
				for (size_t a = 0; a < ss->n_addrs; a++) {
					const struct em_ep_addr *ad = &ss->addrs[a];
					const struct em_obj *po = ad->pod && in->pod_lookup ?
						in->pod_lookup(in->pod_lookup_ctx, ad->pod) : NULL;
					struct em_ip ip = ad->ip;
					uint16_t port = ss->ports[p].port;
					if (po && po->kind == EM_OBJ_POD)
						ep_pod_rule(&po->u.pod, sp->ipproto, &ip, &port);
					if (bvec_push(out, &ip, port, ad->pod, NULL) < 0)
						return -ENOMEM;
				}
				break;
			}
		}
	}
	return 0;
}

/* Backends in address order: stable across snapshots whatever the order
 * the objects arrived in, so balancer state keyed by index stays meaningful. */
static int cmp_backend(const void *a, const void *b)
{
	const struct em_backend *x = a, *y = b;
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	int r = memcmp(&x->ip, &y->ip, x->family == AF_INET ? 4 : 16);
	if (r)
		return r;
	return (x->port > y->port) - (x->port < y->port);
}

/* ---- the snapshot -------------------------------------------------------------- */

/* "<name>.<ns>.svc.<domain>" in lower case. */
static char *fqdn_dup(struct em_arena *a, const char *ns, const char *name, const char *dom)
{
	size_t ln = strlen(name), lns = strlen(ns), ld = strlen(dom);
	char *s = em_arena_alloc(a, ln + lns + ld + 7);
	if (!s)
		return NULL;
	char *p = s;
	memcpy(p, name, ln);
	p += ln;
	*p++ = '.';
	memcpy(p, ns, lns);
	p += lns;
	memcpy(p, ".svc.", 5);
	p += 5;
	memcpy(p, dom, ld + 1);
	for (p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

/* Services are ordered by "ns/name": deterministic whatever order the
 * objects arrived in. (Ordering by a hash was tried: fewer string compares
 * but a build 30% slower, the walk losing its memory locality.) */
static int cmp_svc(const void *a, const void *b)
{
	const struct em_obj *x = *(struct em_obj *const *)a, *y = *(struct em_obj *const *)b;
	return strcmp(x->nsname, y->nsname);
}

/* The bit of a pod name in the changed-pods filter. The filter is built
 * from the entries' own hashes (em_strmap: keyed SipHash), so the probe
 * must use the same function. */
static uint64_t bloom_bit(const char *nsname)
{
	return 1ull << (em_hash_seeded(nsname, strlen(nsname)) & 63);
}

/* A service's fake addresses, as the pool handed them out this build. */
struct fake_ips {
	bool has4, has6;
	struct in_addr v4;
	struct in6_addr v6;
};

/* Whether a pod named by a targetRef of eps changed since the block was
 * built. The bloom bits skip the exact check for almost every service
 * when a few pods changed. */
static bool ref_pods_changed(const struct em_build_input *in, const struct em_svc_block *b,
			     const struct em_obj_list *eps, uint64_t changed_bloom)
{
	if (!b->has_ref_pods)
		return false;
	if (in->all_pods_changed)
		return true;
	if (!(b->ref_bloom & changed_bloom))
		return false;
	for (size_t e = 0; e < eps->n; e++) {
		const struct em_obj_endpoints *ep = &eps->objs[e]->u.ep;
		for (size_t s = 0; s < ep->n_subsets; s++)
			for (size_t a = 0; a < ep->subsets[s].n_addrs; a++) {
				const char *pod = ep->subsets[s].addrs[a].pod;
				if (pod && em_strmap_get(in->pods_changed, pod))
					return true;
			}
	}
	return false;
}

/* Whether prev's entry for service o still describes it: same Service
 * object, same fake IPs, and none of the inputs of its backends changed:
 * the same Endpoints/slice objects (none, or the same ones) and the pods
 * their targetRefs name unchanged, or, built from pods, every pod list its
 * selector reads unchanged since the build. */
static bool block_reusable(const struct em_build_input *in, const struct em_obj *o,
			   const struct em_svc_block *b, const struct fake_ips *fake,
			   const struct em_obj_list *eps, uint64_t changed_bloom)
{
	const struct em_obj_service *os = &o->u.svc;
	char key[1024];

	if (b->obj_seq != o->seq || b->svc.has_fake4 != fake->has4 ||
	    b->svc.has_fake6 != fake->has6 ||
	    (fake->has4 && b->svc.fake4.s_addr != fake->v4.s_addr) ||
	    (fake->has6 && memcmp(&b->svc.fake6, &fake->v6, sizeof(fake->v6)) != 0))
		return false;
	if (eps->n != b->n_ep_seqs)
		return false;
	for (size_t i = 0; i < eps->n; i++)
		if (eps->objs[i]->seq != b->ep_seqs[i])
			return false;
	if (eps->n)
		return !ref_pods_changed(in, b, eps, changed_bloom);
	if (os->n_selector) {
		for (size_t i = 0; i < os->n_selector; i++) {
			if (label_key(key, sizeof(key), o->ns, os->selector[i].key,
				      os->selector[i].val) < 0)
				return !b->has_pod_backends;
			struct em_strmap_entry *e = em_strmap_get(&in->pods->by_label, key);
			/* No list now: no candidates now; fine if there were none. */
			if (!e)
				return !b->has_pod_backends;
			if (((const struct em_obj_list *)e->val)->gen > b->built_gen)
				return false;
		}
	}
	return true;
}

/* The service's own fields, copied from the object into the block's arena. */
static int copy_service(struct em_svc_block *blk, const struct em_build_input *in,
			const struct em_obj *o, const struct fake_ips *fake)
{
	const struct em_obj_service *os = &o->u.svc;
	struct em_arena *a = &blk->arena;
	struct em_service *svc = &blk->svc;

	/* ns and name share one copy of "ns/name", split at the slash. */
	char *nn = em_arena_alloc(a, o->nsname_len + 1);
	if (!nn)
		return -ENOMEM;
	memcpy(nn, o->nsname, o->nsname_len + 1);
	nn[strlen(o->ns)] = '\0';
	svc->ns = nn;
	svc->name = nn + strlen(o->ns) + 1;
	svc->fqdn = fqdn_dup(a, o->ns, o->name, in->domain);
	svc->session_affinity = em_arena_strdup(a, os->affinity);
	svc->affinity_timeout_s = os->affinity_timeout_s;
	svc->lb_strategy = os->lb ? em_arena_strdup(a, os->lb) : NULL;
	svc->external_name = os->external_name ? em_arena_strdup(a, os->external_name) : NULL;
	if (!svc->fqdn || !svc->session_affinity || (os->lb && !svc->lb_strategy) ||
	    (os->external_name && !svc->external_name))
		return -ENOMEM;
	svc->headless = os->headless;
	svc->has_cluster_ip4 = os->has_cip4;
	svc->cluster_ip4 = os->cip4;
	svc->has_fake4 = fake->has4;
	svc->fake4 = fake->v4;
	svc->has_fake6 = fake->has6;
	svc->fake6 = fake->v6;
	return 0;
}

/* Remember which Endpoints/slice objects the block was built from, and the
 * pods their targetRefs name (for block_reusable). */
static int note_endpoints(struct em_svc_block *blk, const struct em_obj_list *eps)
{
	if (!eps->n)
		return 0;
	blk->ep_seqs = em_arena_alloc(&blk->arena, eps->n * sizeof(*blk->ep_seqs));
	if (!blk->ep_seqs)
		return -ENOMEM;
	for (size_t i = 0; i < eps->n; i++) {
		const struct em_obj_endpoints *ep = &eps->objs[i]->u.ep;
		blk->ep_seqs[i] = eps->objs[i]->seq;
		for (size_t s = 0; s < ep->n_subsets; s++)
			for (size_t k = 0; k < ep->subsets[s].n_addrs; k++) {
				const char *pod = ep->subsets[s].addrs[k].pod;
				if (!pod)
					continue;
				blk->has_ref_pods = true;
				blk->ref_bloom |= bloom_bit(pod);
			}
	}
	blk->n_ep_seqs = eps->n;
	return 0;
}

/* The backends collected in bv, sorted, into port p (in the block's arena). */
static int place_backends(struct em_svc_block *blk, struct em_service_port *p,
			  const struct bvec *bv)
{
	struct em_arena *a = &blk->arena;
	struct em_backend *b = em_arena_alloc(a, bv->n * sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t k = 0; k < bv->n; k++) {
		b[k] = bv->b[k];
		if (bv->pod[k]) {
			const struct em_obj *po = bv->pod[k];
			char *pn = em_arena_alloc(a, po->nsname_len + 1);
			if (!pn)
				return -ENOMEM;
			memcpy(pn, po->nsname, po->nsname_len + 1);
			b[k].pod = pn;
			blk->has_pod_backends = true;
		} else if (b[k].pod) {
			b[k].pod = em_arena_strdup(a, b[k].pod);
		}
	}
	qsort(b, bv->n, sizeof(*b), cmp_backend);
	p->backends = b;
	p->n_backends = bv->n;
	blk->n_backends += bv->n;
	return 0;
}

/* Port i of service o with its backends: from the candidate pods when
 * there are any (no Endpoints), else from the Endpoints/slices. */
static int build_port(struct em_svc_block *blk, const struct em_build_input *in,
		      const struct em_obj *o, const struct em_obj_list *cand,
		      const struct em_obj_list *eps, size_t i, struct em_service_port *p,
		      struct bvec *bv)
{
	const struct em_obj_service *os = &o->u.svc;
	const struct em_svc_port_spec *sp = &os->ports[i];
	int ret;

	bv->n = 0;
	ret = cand ? pods_for_port(o, cand, sp, bv)
		   : endpoints_for_port(in, eps, sp, os->n_ports, bv);
	if (ret < 0)
		return ret;
	p->name = em_arena_strdup(&blk->arena, sp->name);
	p->port = sp->port;
	p->ipproto = sp->ipproto;
	p->app = sp->app;
	p->service = &blk->svc;
	if (!p->name)
		return -ENOMEM;
	/* SCTP (logged once) and ExternalName ports get no backends:
	 * nothing captures them. */
	if (!em_port_forwarded(sp->ipproto, o->nsname, sp->port) || os->external_name)
		bv->n = 0;
	return bv->n ? place_backends(blk, p, bv) : 0;
}

/* The entry is complete (back pointers valid): attach balancers. A port
 * whose init fails keeps no balancer (port_ok 0) and is logged. */
static void attach_balancers(struct em_svc_block *blk, struct em_service_port *ports)
{
	struct em_service *svc = &blk->svc;

	for (size_t j = 0; blk->hooks.port_init && j < svc->n_ports; j++) {
		int r = blk->hooks.port_init(blk->hooks.ctx, &ports[j]);
		blk->port_ok[j] = r == 0;
		if (r < 0)
			em_warn("service %s/%s port %u: balancer init failed: %s",
				svc->ns, svc->name, ports[j].port, strerror(-r));
	}
}

/* A new block for service o: its fields, its ports and their backends,
 * balancers attached. */
static int build_block(const struct em_build_input *in, const struct em_obj *o,
		       const struct fake_ips *fake, const struct em_obj_list *eps,
		       struct bvec *bv, struct em_svc_block **out)
{
	const struct em_obj_service *os = &o->u.svc;
	struct em_svc_block *blk = calloc(1, sizeof(*blk));
	struct em_service_port *ports = NULL;
	int ret;

	if (!blk)
		return -ENOMEM;
	atomic_init(&blk->refs, 1);
	blk->arena.chunk = 1024;
	blk->obj_seq = o->seq;
	blk->built_gen = in->pods->gen;
	if (in->hooks)
		blk->hooks = *in->hooks;
	ret = copy_service(blk, in, o, fake);
	if (ret < 0)
		goto fail;
	if (os->n_ports) {
		ports = em_arena_alloc(&blk->arena, os->n_ports * sizeof(*ports));
		blk->port_ok = em_arena_alloc(&blk->arena, os->n_ports);
		if (!ports || !blk->port_ok) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	ret = note_endpoints(blk, eps);
	if (ret < 0)
		goto fail;
	/* Pods only where no Endpoints exist (see the top of the file). */
	const struct em_obj_list *cand = os->n_selector && !eps->n ? smallest_list(in, o) : NULL;
	for (size_t i = 0; i < os->n_ports; i++) {
		ret = build_port(blk, in, o, cand, eps, i, &ports[i], bv);
		if (ret < 0)
			goto fail;
	}
	blk->svc.ports = ports;
	blk->svc.n_ports = os->n_ports;
	attach_balancers(blk, ports);
	*out = blk;
	return 0;
fail:
	em_arena_free(&blk->arena);
	free(blk);
	return ret;
}

/* Fake IPs are acquired for every live service on every build: that is
 * what keeps them live in the pool's round. */
static void acquire_fake_ips(const struct em_build_input *in, const struct em_obj *o,
			     struct fake_ips *fake, struct em_build_stats *st)
{
	static struct em_ratelimit rl;
	memset(fake, 0, sizeof(*fake));
	/* An ExternalName service is a CNAME: no fake IP, no capture. */
	if (o->u.svc.external_name)
		return;
	if (in->pool && em_fakeip_acquire(in->pool, o->nsname, &fake->has4, &fake->v4,
					  &fake->has6, &fake->v6) == -ENOSPC) {
		st->fake_exhausted++;
		em_log_rl(&rl, EM_LOG_ERR, "fake IP range exhausted: service %s has no fake IP",
			  o->nsname);
	}
}

int em_snapshot_build(const struct em_build_input *in, struct em_snapshot **out,
		      struct em_build_stats *st)
{
	static const struct em_obj_list empty;
	struct em_snapshot *s = calloc(1, sizeof(*s));
	struct em_obj **order = NULL;
	struct bvec bv = { 0 };
	uint64_t changed_bloom = 0;
	int ret = -ENOMEM;

	memset(st, 0, sizeof(*st));
	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->domain = strdup(in->domain);
	if (!s->domain)
		goto fail;
	if (in->pods_changed) {
		struct em_strmap_entry *e;
		size_t bk;
		for (e = em_strmap_next(in->pods_changed, NULL, &bk); e;
		     e = em_strmap_next(in->pods_changed, e, &bk))
			changed_bloom |= 1ull << (e->hash & 63);
	}
	if (in->n_services) {
		order = malloc(in->n_services * sizeof(*order));
		s->blocks = calloc(in->n_services, sizeof(*s->blocks));
		if (!order || !s->blocks)
			goto fail;
		memcpy(order, in->services, in->n_services * sizeof(*order));
		qsort(order, in->n_services, sizeof(*order), cmp_svc);
	}
	for (size_t i = 0; i < in->n_services; i++) {
		const struct em_obj *o = order[i];
		const struct em_obj_list *eps = &empty;
		struct fake_ips fake;
		struct em_svc_block *b;

		acquire_fake_ips(in, o, &fake, st);
		/* The Endpoints object of the same name, else the EndpointSlices
		 * labelled with the service's name, selector or not. */
		struct em_strmap_entry *e = em_strmap_get(in->endpoints, o->nsname);
		if (!e)
			e = em_strmap_get(in->slices, o->nsname);
		if (e)
			eps = e->val;
		b = em_snapshot_block(in->prev, o->ns, o->name);
		if (b && block_reusable(in, o, b, &fake, eps, changed_bloom)) {
			atomic_fetch_add(&b->refs, 1);
		} else {
			ret = build_block(in, o, &fake, eps, &bv, &b);
			if (ret < 0)
				goto fail;
			st->rebuilt++;
		}
		s->blocks[s->n_services++] = b;
		s->n_backends += b->n_backends;
	}
	ret = em_snapshot_index(s);
	if (ret < 0)
		goto fail;
	st->backends = s->n_backends;
	st->services = s->n_services;
	free(order);
	free(bv.b);
	free(bv.pod);
	*out = s;
	return 0;
fail:
	free(order);
	free(bv.b);
	free(bv.pod);
	em_snapshot_free(s);
	return ret;
}
