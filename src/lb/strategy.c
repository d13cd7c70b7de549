/* strategy.c — finding a strategy: the NULL-terminated table of built-ins,
 * plugins loaded with dlopen, and the choice of strategy for a service. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
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

	/* RTLD_LOCAL: two plugins may use the same helper names. RTLD_NOW:
	 * fail here, at start-up, not on the first pick. */
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
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
	if (!o->name || !*o->name || !o->create || !o->pick || !o->release ||
	    !o->destroy) {
		why = "ops lacks name, create, pick, release or destroy";
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

/* ---- snapshot hooks ---------------------------------------------------- */

static struct em_ratelimit unknown_rl;

int em_lb_port_init(void *ctx, struct em_service_port *port)
{
	struct em_lb *lb = ctx;
	const struct em_service *svc = port->service;
	const char *text = em_lb_strategy_for(svc, lb->dflt->name);
	const struct em_balancer_ops *ops;
	struct em_balancer_params params = { 0 };
	char name[64];
	const char *colon = strchr(text, ':');
	size_t len = colon ? (size_t)(colon - text) : strlen(text);

	if (len >= sizeof(name))
		len = sizeof(name) - 1;
	memcpy(name, text, len);
	name[len] = '\0';
	params.args = colon ? colon + 1 : NULL;
	ops = em_lb_lookup(lb, name);
	if (!ops) {
		em_log_rl(&unknown_rl, EM_LOG_WARN,
			  "lb: service %s/%s asks for unknown strategy '%s'; using '%s'",
			  svc ? svc->ns : "?", svc ? svc->name : "?", text, lb->dflt->name);
		ops = lb->dflt;
		params.args = NULL;
	}
	port->lb = em_lb_port_new(ops, port, &params);
	if (!port->lb && ops != lb->dflt) {
		em_log_rl(&unknown_rl, EM_LOG_WARN,
			  "lb: strategy '%s' refused service %s/%s port %u (%s); using '%s'",
			  ops->name, svc ? svc->ns : "?", svc ? svc->name : "?",
			  port->port, strerror(errno), lb->dflt->name);
		port->lb = em_lb_port_new(lb->dflt, port, NULL);
	}
	return port->lb ? 0 : -ENOMEM;
}

void em_lb_port_fini(void *ctx, struct em_service_port *port)
{
	(void)ctx;
	em_lb_port_put(port->lb);
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
