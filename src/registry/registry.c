/* registry.c — the object store behind the source sink, and publication. */
#include "registry/registry.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry/fakeip.h"
#include "registry/guard.h"
#include "registry/objects.h"
#include "registry/snapshot_impl.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"

#define FAKEIP_STATE_FILE "fake-ips"
#define POD_CHANGES_MAX 4096

/* One source's copy of an object; a slot's list is sorted by source index,
 * so the head is the copy in effect. */
struct version {
	struct version *next;
	unsigned src;
	uint32_t round;			/* reg->round when last put (replace) */
	struct em_obj *obj;
};

struct em_registry {
	pthread_mutex_t lock;
	struct em_snapshot *current;	/* RCU-protected */
	char *domain;
	struct em_snapshot_hooks hooks;
	struct em_fakeip_pool *pool;
	char *state_file;		/* for messages; NULL without a state dir */
	/* Per kind, so a build walks only services and endpoints, never the
	 * (many more) pods: "<kind>/<ns>/<name>" -> struct version list. */
	struct em_strmap store[EM_OBJ_KIND_COUNT];
	char **sources;
	struct source_rank *rank;	/* per source: precedence, lower wins */
	unsigned n_sources;
	uint32_t n_major;
	bool dirty;			/* something changed since the last commit */
	struct em_pod_index pod_index;	/* of the pods in effect */
	bool index_broken;		/* an index update failed (ENOMEM): rebuild it */
	/* "ns/name" of the pods whose copy in effect changed since the last
	 * published snapshot (the Endpoints-backed services naming them are
	 * re-resolved); past POD_CHANGES_MAX, every pod counts as changed. */
	struct em_strmap pods_changed;
	bool all_pods_changed;
	uint64_t churn;			/* objects stored or dropped since the last commit */
	uint32_t round;			/* sink_replace rounds, to find what a replace left out */
	atomic_bool trim_pending;	/* a big commit freed memory: em_registry_trim() */
	struct em_registry_stats stats;
	struct em_guard guard;		/* names and backend addresses (guard.h) */
};

/* A source's precedence: the sources the daemon registers get majors 1, 2,
 * ... in the configured order (minor 0); a child source "parent/..." gets
 * its parent's major and the next minor. Lower wins (rank_before). */
struct source_rank {
	uint32_t major;
	uint32_t minor;
};

static bool rank_before(struct source_rank a, struct source_rank b)
{
	return a.major != b.major ? a.major < b.major : a.minor < b.minor;
}

/* A new source name gets the next rank, unless a registered source's name
 * followed by '/' is a prefix of it: then it ranks right after that one
 * (and its earlier children). That keeps the file source's per-file names
 * ("file:/dir/a.yaml") at the place the daemon registered "file:/dir" in
 * the configured order, even for files added later. */
static int source_index(struct em_registry *reg, const char *source)
{
	for (unsigned i = 0; i < reg->n_sources; i++)
		if (strcmp(reg->sources[i], source) == 0)
			return (int)i;
	struct source_rank rank = { .major = ++reg->n_major, .minor = 0 };
	for (unsigned i = 0; i < reg->n_sources; i++) {
		size_t l = strlen(reg->sources[i]);
		if (reg->rank[i].minor == 0 && strncmp(reg->sources[i], source, l) == 0 &&
		    source[l] == '/') {
			reg->n_major--;
			rank = reg->rank[i];
			for (unsigned j = 0; j < reg->n_sources; j++)
				if (reg->rank[j].major == rank.major && reg->rank[j].minor > rank.minor)
					rank.minor = reg->rank[j].minor;
			rank.minor++;
			break;
		}
	}
	char **ns = realloc(reg->sources, (reg->n_sources + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	reg->sources = ns;
	struct source_rank *nr = realloc(reg->rank, (reg->n_sources + 1) * sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	reg->rank = nr;
	ns[reg->n_sources] = strdup(source);
	if (!ns[reg->n_sources])
		return -ENOMEM;
	nr[reg->n_sources] = rank;
	return (int)reg->n_sources++;
}

static void store_key(char *buf, size_t n, enum em_obj_kind kind, const char *ns,
		      const char *name)
{
	snprintf(buf, n, "%d/%s/%s", (int)kind, ns, name);
}

/* Notes a pod whose copy in effect changed, for the next build. */
static void pod_changed(struct em_registry *reg, const struct em_obj *pod)
{
	if (reg->all_pods_changed)
		return;
	if (reg->pods_changed.count >= POD_CHANGES_MAX ||
	    !em_strmap_put(&reg->pods_changed, pod->nsname))
		reg->all_pods_changed = true;
}

/* The head of a slot's list is the copy in effect; when it changes for a
 * pod, the pod index follows (and the pod is noted as changed). */
static void effect_changed(struct em_registry *reg, struct em_obj *before, struct em_obj *after)
{
	reg->dirty = true;
	if (before != after && (before ? before : after)->kind == EM_OBJ_POD)
		pod_changed(reg, before ? before : after);
	if (before == after || reg->index_broken)
		return;		/* broken: rebuilt from scratch at the next commit */
	if (before && before->kind == EM_OBJ_POD)
		em_pod_index_remove(&reg->pod_index, before);
	if (after && after->kind == EM_OBJ_POD &&
	    em_pod_index_add(&reg->pod_index, after) < 0)
		reg->index_broken = true;
}

static struct em_obj *head_obj(struct em_strmap_entry *e)
{
	return e && e->val ? ((struct version *)e->val)->obj : NULL;
}

/* ---- store -------------------------------------------------------------- */

static int store_put(struct em_registry *reg, unsigned src, struct em_obj *obj)
{
	char key[600];
	store_key(key, sizeof(key), obj->kind, obj->ns, obj->name);
	struct em_strmap *m = &reg->store[obj->kind];
	struct em_strmap_entry *e = em_strmap_put(m, key);
	if (!e)
		return -ENOMEM;
	struct em_obj *before = head_obj(e), *old = NULL;
	struct version **pp = (struct version **)&e->val;
	for (; *pp && rank_before(reg->rank[(*pp)->src], reg->rank[src]); pp = &(*pp)->next)
		;
	if (*pp && (*pp)->src == src) {
		(*pp)->round = reg->round;
		/* Unchanged (a relist, a file re-read): keep the old object,
		 * so nothing built from it is rebuilt. */
		if (em_obj_same((*pp)->obj, obj)) {
			em_obj_free(obj);
			return 0;
		}
		old = (*pp)->obj;
		(*pp)->obj = obj;
	} else {
		struct version *v = malloc(sizeof(*v));
		if (!v) {
			if (!e->val)
				em_strmap_del(m, key);
			return -ENOMEM;
		}
		v->src = src;
		v->round = reg->round;
		v->obj = obj;
		v->next = *pp;
		*pp = v;
		reg->stats.objects++;
	}
	effect_changed(reg, before, head_obj(e));
	em_obj_free(old);	/* after the index let go of it */
	reg->churn++;
	return 0;
}

/* Removes src's copy from the slot at key; true if there was one. */
static bool store_del(struct em_registry *reg, enum em_obj_kind kind, const char *key,
		      unsigned src)
{
	struct em_strmap *m = &reg->store[kind];
	struct em_strmap_entry *e = em_strmap_get(m, key);
	if (!e)
		return false;
	struct em_obj *before = head_obj(e);
	for (struct version **pp = (struct version **)&e->val; *pp; pp = &(*pp)->next) {
		if ((*pp)->src != src)
			continue;
		struct version *v = *pp;
		*pp = v->next;
		effect_changed(reg, before, head_obj(e));
		em_obj_free(v->obj);
		free(v);
		reg->stats.objects--;
		reg->churn++;
		if (!e->val)
			em_strmap_del(m, key);
		return true;
	}
	return false;
}

static void versions_free(void *val)
{
	struct version *v = val, *next;
	for (; v; v = next) {
		next = v->next;
		em_obj_free(v->obj);
		free(v);
	}
}

static const char *or_dash(const char *s)
{
	return s ? s : "-";
}

/* Normalises and stores one object; logs an unusable one naming it. */
static int upsert_locked(struct em_registry *reg, unsigned src, json_t *obj)
{
	struct em_obj *o;
	const char *why;
	int r = em_obj_from_json(obj, &o, &why);
	if (r == -ENOTSUP)
		return 0;	/* a kind we do not use (Deployment, ConfigMap...) */
	if (r == 0 && (r = em_guard_check_names(o, &why)) < 0)
		em_obj_free(o);
	if (r < 0) {
		json_t *md = json_object_get(obj, "metadata");
		char k[64], ns[100], name[300];
		reg->stats.rejected++;
		/* escaped: the names are the untrusted part */
		em_warn("source %s: %s %s/%s ignored: %s", reg->sources[src],
			em_log_escape(k, sizeof(k), or_dash(json_string_value(json_object_get(obj, "kind")))),
			em_log_escape(ns, sizeof(ns), or_dash(json_string_value(json_object_get(md, "namespace")))),
			em_log_escape(name, sizeof(name), or_dash(json_string_value(json_object_get(md, "name")))),
			why ? why : strerror(-r));
		return r;
	}
	reg->stats.rejected_addrs += em_guard_filter_addrs(&reg->guard, o, reg->sources[src]);
	r = store_put(reg, src, o);
	if (r < 0)
		em_obj_free(o);
	return r;
}

/* ---- sink ----------------------------------------------------------------- */

static int sink_upsert(void *ctx, const char *source, json_t *obj)
{
	struct em_registry *reg = ctx;
	pthread_mutex_lock(&reg->lock);
	int src = source_index(reg, source);
	int r = src < 0 ? src : upsert_locked(reg, (unsigned)src, obj);
	pthread_mutex_unlock(&reg->lock);
	return r;
}

static int sink_remove(void *ctx, const char *source, const char *kind,
		       const char *ns, const char *name)
{
	struct em_registry *reg = ctx;
	int k = em_obj_kind_from_name(kind);
	char key[600];
	if (k < 0)
		return 0;
	if (!ns || !ns[0])
		ns = "default";
	store_key(key, sizeof(key), (enum em_obj_kind)k, ns, name);
	pthread_mutex_lock(&reg->lock);
	int src = source_index(reg, source);
	if (src >= 0)
		store_del(reg, (enum em_obj_kind)k, key, (unsigned)src);
	pthread_mutex_unlock(&reg->lock);
	return src < 0 ? src : 0;
}

static int sink_replace(void *ctx, const char *source, const char *kind, json_t *items)
{
	struct em_registry *reg = ctx;
	int k = kind ? em_obj_kind_from_name(kind) : -1;
	int ret = 0;
	if (kind && k < 0)
		return 0;
	pthread_mutex_lock(&reg->lock);
	int src = source_index(reg, source);
	if (src < 0) {
		ret = src;
		goto out;
	}
	/* Put the items first: an object equal to the one held is kept as it
	 * is (store_put), so a relist changes only what changed. Then drop
	 * what this source gave of that kind and the items left out: the
	 * versions not put in this round. */
	size_t n = 0, cap = 0, b, i;
	struct { char *key; enum em_obj_kind kind; } *keys = NULL;
	struct em_strmap_entry *e;
	json_t *it;
	uint64_t churn0 = reg->churn;
	reg->round++;
	json_array_foreach(items, i, it) {
		if (k >= 0 && em_obj_kind_from_name(json_string_value(json_object_get(it, "kind"))) != k)
			continue;
		if (upsert_locked(reg, (unsigned)src, it) == -ENOMEM)
			ret = -ENOMEM;
		/* Re-indexing pod by pod is slower than rebuilding the index
		 * once at commit when many changed (every selector service is
		 * then rebuilt); unchanged objects cost nothing here. */
		if (reg->churn - churn0 > 256)
			reg->index_broken = true;
	}
	/* Keys first: the map must not change while it is walked. */
	for (int kk = 0; kk < EM_OBJ_KIND_COUNT; kk++) {
		struct em_strmap *m = &reg->store[kk];
		if (k >= 0 && kk != k)
			continue;
		for (e = em_strmap_next(m, NULL, &b); e; e = em_strmap_next(m, e, &b)) {
			bool stale = false;
			for (struct version *v = e->val; v && !stale; v = v->next)
				stale = v->src == (unsigned)src && v->round != reg->round;
			if (!stale)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				void *nk = realloc(keys, cap * sizeof(*keys));
				if (!nk) {
					ret = -ENOMEM;
					goto drop;
				}
				keys = nk;
			}
			keys[n].key = e->key;	/* valid until deleted below */
			keys[n++].kind = (enum em_obj_kind)kk;
		}
	}
drop:
	if (n > 256)
		reg->index_broken = true;
	/* Copy before deleting: store_del frees the entry holding the key. */
	for (size_t j = 0; j < n; j++) {
		char key[600];
		snprintf(key, sizeof(key), "%s", keys[j].key);
		store_del(reg, keys[j].kind, key, (unsigned)src);
	}
	free(keys);
	/* A replace always counts as a change, even to nothing. */
	reg->dirty = true;
out:
	pthread_mutex_unlock(&reg->lock);
	return ret;
}

/* ---- build and publish ------------------------------------------------------- */

/* For the build: the pod in effect named "ns/name" (lock held). */
static struct em_obj *pod_by_name(void *ctx, const char *nsname)
{
	struct em_registry *reg = ctx;
	char key[600];
	snprintf(key, sizeof(key), "%d/%s", (int)EM_OBJ_POD, nsname);
	return head_obj(em_strmap_get(&reg->store[EM_OBJ_POD], key));
}

struct objvec {
	struct em_obj **v;
	size_t n, cap;
};

static int objvec_push(struct objvec *ov, struct em_obj *o)
{
	if (ov->n == ov->cap) {
		size_t cap = ov->cap ? ov->cap * 2 : 1024;
		struct em_obj **nv = realloc(ov->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		ov->v = nv;
		ov->cap = cap;
	}
	ov->v[ov->n++] = o;
	return 0;
}

static void publish(struct em_registry *reg, struct em_snapshot *snap);

/* Caller holds the lock. */
static int rebuild(struct em_registry *reg, struct em_snapshot **old)
{
	struct objvec svcs = { 0 }, pods = { 0 };
	struct em_strmap eps, slices;
	struct em_strmap_entry *e;
	size_t b;
	char key[600];
	int ret = 0;
	uint64_t t0 = em_clock_us();

	em_strmap_init(&eps);
	em_strmap_init(&slices);
	for (int kind = 0; kind < EM_OBJ_KIND_COUNT && ret == 0; kind++) {
		struct em_strmap *m = &reg->store[kind];
		if (kind == EM_OBJ_POD && !reg->index_broken)
			continue;
		for (e = em_strmap_next(m, NULL, &b); e && ret == 0; e = em_strmap_next(m, e, &b)) {
			struct em_obj *o = ((struct version *)e->val)->obj;
			switch (o->kind) {
			case EM_OBJ_SERVICE:
				ret = objvec_push(&svcs, o);
				break;
			case EM_OBJ_POD:
				ret = objvec_push(&pods, o);
				break;
			default:
				snprintf(key, sizeof(key), "%s/%s", o->ns, o->u.ep.service);
				ret = em_objlist_add(o->kind == EM_OBJ_ENDPOINTS ? &eps : &slices, key, o);
				break;
			}
		}
	}
	if (ret == 0 && reg->index_broken) {
		em_pod_index_reset(&reg->pod_index);
		for (size_t i = 0; i < pods.n && ret == 0; i++)
			ret = em_pod_index_add(&reg->pod_index, pods.v[i]);
		reg->index_broken = ret < 0;
	}
	if (ret == 0) {
		struct em_build_input in = {
			.domain = reg->domain,
			.services = svcs.v,
			.n_services = svcs.n,
			.pods = &reg->pod_index,
			.endpoints = &eps,
			.slices = &slices,
			.pod_lookup = pod_by_name,
			.pod_lookup_ctx = reg,
			.pods_changed = &reg->pods_changed,
			.all_pods_changed = reg->all_pods_changed,
			.pool = reg->pool,
			.hooks = &reg->hooks,
			.prev = reg->current,
		};
		struct em_build_stats st;
		struct em_snapshot *snap;
		em_fakeip_begin(reg->pool);
		ret = em_snapshot_build(&in, &snap, &st);
		int sr = em_fakeip_end(reg->pool);
		static struct em_ratelimit save_rl;
		if (sr < 0)	/* retried with back-off by the pool */
			em_log_rl(&save_rl, EM_LOG_ERR, "fake IP state %s: cannot save: %s; "
				  "retrying with back-off; addresses may change on restart",
				  reg->state_file ? reg->state_file : "-", strerror(-sr));
		if (ret == 0) {
			reg->stats.services = st.services;
			reg->stats.backends = st.backends;
			reg->stats.fake_exhausted = st.fake_exhausted;
			*old = reg->current;
			publish(reg, snap);
			reg->dirty = false;
			em_strmap_clear(&reg->pods_changed, NULL);
			reg->all_pods_changed = false;
		}
	}
	em_strmap_clear(&eps, em_objlist_free);
	em_strmap_clear(&slices, em_objlist_free);
	free(svcs.v);
	free(pods.v);
	reg->stats.last_build_us = em_clock_us() - t0;
	return ret;
}

static void publish(struct em_registry *reg, struct em_snapshot *snap)
{
	struct timespec ts;

	rcu_assign_pointer(reg->current, snap);
	reg->stats.generation++;
	clock_gettime(CLOCK_REALTIME, &ts);
	reg->stats.published_at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int sink_commit(void *ctx, const char *source)
{
	struct em_registry *reg = ctx;
	struct em_snapshot *old = NULL;
	int ret = 0;

	bool trim;

	pthread_mutex_lock(&reg->lock);
	if (reg->dirty)
		ret = rebuild(reg, &old);
	trim = reg->churn >= EM_REGISTRY_TRIM_CHURN;
	reg->churn = 0;
	pthread_mutex_unlock(&reg->lock);
	if (ret < 0)
		em_err("source %s: new snapshot not built, previous one kept: %s",
		       source, strerror(-ret));
	if (old) {
		/* Every reader that could see old has left once this returns. */
		urcu_memb_synchronize_rcu();
		em_snapshot_free(old);
	}
	if (trim)
		atomic_store(&reg->trim_pending, true);
	return ret;
}

struct em_source_sink em_registry_sink(struct em_registry *reg)
{
	return (struct em_source_sink){
		.ctx = reg,
		.upsert = sink_upsert,
		.remove = sink_remove,
		.replace = sink_replace,
		.commit = sink_commit,
	};
}

int em_registry_add_source(struct em_registry *reg, const char *source)
{
	pthread_mutex_lock(&reg->lock);
	int r = source_index(reg, source);
	pthread_mutex_unlock(&reg->lock);
	return r;
}

const struct em_snapshot *em_registry_current(struct em_registry *reg)
{
	return rcu_dereference(reg->current);
}

bool em_registry_trim(struct em_registry *reg)
{
	if (!atomic_exchange(&reg->trim_pending, false))
		return false;
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	return true;
}

uint64_t em_registry_generation(struct em_registry *reg)
{
	pthread_mutex_lock(&reg->lock);
	uint64_t g = reg->stats.generation;
	pthread_mutex_unlock(&reg->lock);
	return g;
}

void em_registry_get_stats(struct em_registry *reg, struct em_registry_stats *st)
{
	pthread_mutex_lock(&reg->lock);
	*st = reg->stats;
	pthread_mutex_unlock(&reg->lock);
}

/* ---- life cycle ----------------------------------------------------------------- */

struct em_registry *em_registry_new(const struct em_registry_config *cfg)
{
	struct em_registry *reg = calloc(1, sizeof(*reg));
	char *state = NULL;
	struct em_snapshot *old = NULL;
	int r = -ENOMEM;

	if (!reg)
		goto fail_errno;
	pthread_mutex_init(&reg->lock, NULL);
	for (int k = 0; k < EM_OBJ_KIND_COUNT; k++)
		em_strmap_init(&reg->store[k]);
	em_pod_index_init(&reg->pod_index);
	em_strmap_init(&reg->pods_changed);
	const char *dom = cfg->cluster_domain ? cfg->cluster_domain : "cluster.local";
	size_t dl = strlen(dom);
	while (dl > 0 && dom[dl - 1] == '.')
		dl--;
	if (dl == 0 || dl > 200) {
		r = -EINVAL;
		goto fail;
	}
	reg->domain = strndup(dom, dl);
	if (!reg->domain)
		goto fail;
	for (char *p = reg->domain; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	reg->hooks = cfg->hooks;
	if (cfg->state_dir && asprintf(&state, "%s/%s", cfg->state_dir, FAKEIP_STATE_FILE) == -1) {
		state = NULL;
		goto fail;
	}
	struct em_fakeip_config fc = {
		.v4_cidr = cfg->fake_ipv4_range,
		.v6_cidr = cfg->fake_ipv6_range,
		.state_file = state,
	};
	reg->guard.allow_loopback = cfg->test_allow_loopback;
	/* Never dial the fake ranges or the capture CIDRs. */
	if ((r = em_guard_deny(&reg->guard, fc.v4_cidr ? fc.v4_cidr : EM_FAKE_IPV4_RANGE)) < 0 ||
	    (fc.v6_cidr && fc.v6_cidr[0] && (r = em_guard_deny(&reg->guard, fc.v6_cidr)) < 0))
		goto fail;
	for (unsigned i = 0; i < cfg->n_capture_cidrs; i++)
		if ((r = em_guard_deny(&reg->guard, cfg->capture_cidrs[i])) < 0)
			goto fail;
	r = em_fakeip_pool_new(&fc, &reg->pool);
	reg->state_file = state;
	if (r < 0)
		goto fail;
	reg->dirty = true;
	r = rebuild(reg, &old);
	if (r < 0)
		goto fail;
	return reg;
fail:
	em_registry_free(reg);
	errno = -r;
	return NULL;
fail_errno:
	errno = ENOMEM;
	return NULL;
}

void em_registry_free(struct em_registry *reg)
{
	if (!reg)
		return;
	urcu_memb_synchronize_rcu();
	em_snapshot_free(reg->current);
	em_pod_index_clear(&reg->pod_index);
	em_strmap_clear(&reg->pods_changed, NULL);
	for (int k = 0; k < EM_OBJ_KIND_COUNT; k++)
		em_strmap_clear(&reg->store[k], versions_free);
	em_fakeip_pool_free(reg->pool);
	for (unsigned i = 0; i < reg->n_sources; i++)
		free(reg->sources[i]);
	free(reg->sources);
	free(reg->rank);
	free(reg->state_file);
	free(reg->domain);
	pthread_mutex_destroy(&reg->lock);
	free(reg);
}
