/* strategy.c — finding a strategy: the NULL-terminated table of built-ins,
 * plugins loaded with dlopen, the choice of strategy for a service, and the
 * snapshot hooks that give every service port a balancer built on its first
 * connection (see lb.h for the states of port->lb and the lifetime rules). */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "util/trust.h"
#include "util/log.h"

static const struct em_balancer_ops *const builtin_strategies[] = {
	&em_lb_round_robin_ops,
	&em_lb_random_ops,
	&em_lb_least_conn_ops,
	&em_lb_consistent_hash_ops,
	NULL,
};

#define MAX_PLUGINS 16

struct em_lb {
	const struct em_balancer_ops *dflt;
	unsigned n_plugins;
	const struct em_balancer_ops *plugin_ops[MAX_PLUGINS];
	void *plugin_handle[MAX_PLUGINS];
};

const struct em_balancer_ops *em_lb_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; builtin_strategies[i]; i++)
		if (strcmp(builtin_strategies[i]->name, name) == 0)
			return builtin_strategies[i];
	return NULL;
}

const struct em_balancer_ops *em_lb_lookup(const struct em_lb *lb, const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 0; lb && i < lb->n_plugins; i++)
		if (strcmp(lb->plugin_ops[i]->name, name) == 0)
			return lb->plugin_ops[i];
	return em_lb_find(name);
}

int em_lb_load_plugin(const char *path, const struct em_balancer_ops **ops,
		      void **handle, char *err, size_t errlen)
{
	const struct em_balancer_ops *(*entry)(void);
	const struct em_balancer_ops *o;
	const char *why;
	void *h;
	int ret;

	/* Code run as root: refused unless only root can have put it there. */
	char resolved[PATH_MAX];
	if ((ret = em_trust_code_path(path, resolved, &why)) < 0)
		goto fail;
	/* RTLD_LOCAL: two plugins may use the same helper names. RTLD_NOW:
	 * fail here, at start-up, not on the first pick. */
	h = dlopen(resolved, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why = dlerror();
		ret = -ENOENT;
		goto fail;
	}
	*(void **)&entry = dlsym(h, EM_BALANCER_PLUGIN_SYMBOL);
	if (!entry) {
		why = "no " EM_BALANCER_PLUGIN_SYMBOL "() entry point";
		ret = -ENOEXEC;
		goto fail_close;
	}
	o = entry();
	if (!o) {
		why = EM_BALANCER_PLUGIN_SYMBOL "() returned NULL";
		ret = -ENOEXEC;
		goto fail_close;
	}
	if (o->abi_version != EM_BALANCER_ABI_VERSION) {
		if (err)
			snprintf(err, errlen, "ABI version %u, expected %u",
				 (unsigned)o->abi_version, EM_BALANCER_ABI_VERSION);
		dlclose(h);
		return -EPROTO;
	}
	if (o->size < offsetof(struct em_balancer_ops, reserved) || !o->name ||
	    !*o->name || !o->create || !o->pick || !o->release || !o->destroy) {
		why = "ops lacks size, name, create, pick, release or destroy";
		ret = -EINVAL;
		goto fail_close;
	}
	*ops = o;
	*handle = h;
	return 0;
fail_close:
	dlclose(h);
fail:
	if (err)
		snprintf(err, errlen, "%s", why ? why : "unknown dlopen error");
	return ret;
}

int em_lb_new(const char *default_strategy, char *const *plugin_paths,
	      unsigned n_plugins, struct em_lb **out)
{
	struct em_lb *lb = calloc(1, sizeof(*lb));
	char err[256];
	int ret = -ENOMEM;

	if (!lb)
		return ret;
	if (n_plugins > MAX_PLUGINS) {
		em_err("lb: %u plugins given, at most %d supported", n_plugins, MAX_PLUGINS);
		ret = -E2BIG;
		goto err;
	}
	for (unsigned i = 0; i < n_plugins; i++) {
		const struct em_balancer_ops *ops;
		void *handle;

		ret = em_lb_load_plugin(plugin_paths[i], &ops, &handle, err, sizeof(err));
		if (ret < 0) {
			em_err("lb: cannot load plugin '%s': %s", plugin_paths[i], err);
			goto err;
		}
		if (em_lb_lookup(lb, ops->name)) {
			em_err("lb: plugin '%s' names strategy '%s', which already exists",
			       plugin_paths[i], ops->name);
			dlclose(handle);
			ret = -EEXIST;
			goto err;
		}
		lb->plugin_ops[lb->n_plugins] = ops;
		lb->plugin_handle[lb->n_plugins++] = handle;
		em_info("lb: loaded strategy '%s' from '%s'", ops->name, plugin_paths[i]);
	}
	if (!default_strategy || !*default_strategy)
		default_strategy = EM_LB_DEFAULT_STRATEGY;
	lb->dflt = em_lb_lookup(lb, default_strategy);
	if (!lb->dflt) {
		em_err("lb: unknown default strategy '%s' (built-in: round-robin, random, "
		       "least-conn, consistent-hash; or one loaded from a plugin)",
		       default_strategy);
		ret = -ENOENT;
		goto err;
	}
	*out = lb;
	return 0;
err:
	em_lb_free(lb);
	return ret;
}

void em_lb_free(struct em_lb *lb)
{
	if (!lb)
		return;
	for (unsigned i = 0; i < lb->n_plugins; i++)
		dlclose(lb->plugin_handle[i]);
	free(lb);
}

const char *em_lb_strategy_for(const struct em_service *svc, const char *dflt)
{
	if (svc && svc->lb_strategy && *svc->lb_strategy)
		return svc->lb_strategy;
	if (svc && svc->session_affinity && strcmp(svc->session_affinity, "ClientIP") == 0)
		return "consistent-hash";
	return dflt && *dflt ? dflt : EM_LB_DEFAULT_STRATEGY;
}

/* ---- snapshot hooks and lazy balancers --------------------------------- */

/* port->lb states (lb.h): NULL, the struct em_lb tagged with bit 0 (not
 * built yet), or a struct em_lb_port. */
#define LAZY_TAG ((uintptr_t)1)
_Static_assert(_Alignof(struct em_lb) >= 2, "em_lb pointers must leave bit 0 free");

static void *lazy_mark(struct em_lb *lb)
{
	return (void *)((uintptr_t)lb | LAZY_TAG);
}

static struct em_lb *lazy_config(void *slot)
{
	return (uintptr_t)slot & LAZY_TAG ? (struct em_lb *)((uintptr_t)slot & ~LAZY_TAG)
					  : NULL;
}

/* The slot is a plain `void *` in the shared snapshot.h (the registry only
 * hands it over); the GCC/Clang __atomic builtins work on plain objects.
 * Acquire pairs with the release of the CAS that installed a balancer, so a
 * reader that sees the pointer sees the balancer's contents. */
static void *slot_load(void *const *slot)
{
	return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

/* The strategy for a service: its ops and params.args (pointing into the
 * service's strategy text, i.e. snapshot memory: only for create()).
 * Unknown names fall back to the default; `rl` (NULL: silent) rate-limits
 * the warning. */
static const struct em_balancer_ops *choose(const struct em_lb *lb,
					    const struct em_service *svc,
					    struct em_balancer_params *params,
					    struct em_ratelimit *rl)
{
	const char *text = em_lb_strategy_for(svc, lb->dflt->name);
	const struct em_balancer_ops *ops;
	char name[64];
	const char *colon = strchr(text, ':');
	size_t len = colon ? (size_t)(colon - text) : strlen(text);

	if (len >= sizeof(name))
		len = sizeof(name) - 1;
	memcpy(name, text, len);
	name[len] = '\0';
	params->args = colon ? colon + 1 : NULL;
	ops = em_lb_lookup(lb, name);
	if (!ops) {
		if (rl)
			em_log_rl(rl, EM_LOG_WARN,
				  "lb: service %s/%s asks for unknown strategy '%s'; using '%s'",
				  svc ? svc->ns : "?", svc ? svc->name : "?", text,
				  lb->dflt->name);
		ops = lb->dflt;
		params->args = NULL;
	}
	return ops;
}

static struct em_ratelimit unknown_rl;	/* port_init: commits are serialised */

int em_lb_port_init(void *ctx, struct em_service_port *port)
{
	struct em_lb *lb = ctx;
	struct em_balancer_params params = { .size = sizeof(params) };

	/* Only the cheap part now, so that a bad annotation is reported when
	 * the service is loaded rather than on its first connection. */
	choose(lb, port->service, &params, &unknown_rl);
	port->lb = lazy_mark(lb);	/* published with the snapshot (rcu_assign_pointer) */
	return 0;
}

/* Build the balancer for a port not built yet (on a worker thread, inside
 * the read-side section: port, its service and backends are readable). */
static struct em_lb_port *build(struct em_lb *lb, const struct em_service_port *port)
{
	static _Thread_local struct em_ratelimit refused_rl;
	const struct em_service *svc = port->service;
	struct em_balancer_params params = { .size = sizeof(params) };
	const struct em_balancer_ops *ops = choose(lb, svc, &params, NULL);
	struct em_lb_port *lp;

	lp = em_lb_port_new(ops, port, &params);
	if (!lp && ops != lb->dflt) {
		em_log_rl(&refused_rl, EM_LOG_WARN,
			  "lb: strategy '%s' refused service %s/%s port %u (%s); using '%s'",
			  ops->name, svc ? svc->ns : "?", svc ? svc->name : "?",
			  port->port, strerror(errno), lb->dflt->name);
		lp = em_lb_port_new(lb->dflt, port, NULL);
	}
	return lp;
}

struct em_lb_port *em_lb_port_acquire(const struct em_service_port *port)
{
	/* Snapshots are immutable except for this slot, which this layer owns
	 * (em_snapshot_hooks); the port itself was allocated writable. */
	void **slot = &((struct em_service_port *)port)->lb;
	void *cur = slot_load(slot);
	struct em_lb *lb = lazy_config(cur);
	struct em_lb_port *lp;

	if (!cur) {
		errno = EAGAIN;
		return NULL;
	}
	if (!lb)
		return em_lb_port_get(cur);
	lp = build(lb, port);
	if (!lp) {
		errno = ENOMEM;
		return NULL;
	}
	/* Several workers may get here for the same port at once; one CAS
	 * wins and the others adopt its balancer. Only tagged -> built ever
	 * happens while readers exist, so a failed CAS leaves a built one in
	 * cur. Release: whoever loads the pointer sees a complete balancer. */
	if (__atomic_compare_exchange_n(slot, &cur, lp, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return em_lb_port_get(lp);
	em_lb_port_put(lp);		/* never seen by anyone: destroyed */
	if (!cur || lazy_config(cur)) {	/* cannot happen (see above) */
		errno = EAGAIN;
		return NULL;
	}
	return em_lb_port_get(cur);
}

struct em_lb_port *em_lb_port_peek(const struct em_service_port *port)
{
	void *cur = slot_load(&port->lb);

	return cur && !lazy_config(cur) ? cur : NULL;
}

void em_lb_port_fini(void *ctx, struct em_service_port *port)
{
	void *cur = slot_load(&port->lb);

	(void)ctx;
	/* After the grace period: no reader can still install a balancer. */
	if (cur && !lazy_config(cur))
		em_lb_port_put(cur);
	port->lb = NULL;
}

struct em_snapshot_hooks em_lb_snapshot_hooks(struct em_lb *lb)
{
	return (struct em_snapshot_hooks){
		.ctx = lb,
		.port_init = em_lb_port_init,
		.port_fini = em_lb_port_fini,
	};
}
