/* test-registry.c — backend resolution, source precedence, protocol
 * decision, the file source's reloads. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb/lb.h"
#include "registry/manifest.h"
#include "registry/ports.h"
#include "registry/registry.h"
#include "sources/source_file.h"
#include "util/log.h"
#include "testlog.h"

Suite *registry_suite(void);

static struct em_registry *reg;
static struct em_source_sink sink;

static void setup(void)
{
	struct em_registry_config c = { 0 };
	urcu_memb_register_thread();
	reg = em_registry_new(&c);
	ck_assert_ptr_nonnull(reg);
	sink = em_registry_sink(reg);
}

static void teardown(void)
{
	em_registry_free(reg);
	urcu_memb_unregister_thread();
}

/* Replaces source src's objects with those of the YAML text and commits. */
static void load(const char *src, const char *yaml)
{
	json_t *items;
	struct em_manifest_error err;
	int r = em_manifest_parse(yaml, strlen(yaml), &items, &err);
	ck_assert_msg(r == 0, "%d:%d %s", err.line, err.column, err.reason);
	ck_assert_int_eq(sink.replace(sink.ctx, src, NULL, items), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, src), 0);
}

/* Backends of (ns/name, port) as "ip:port" joined by spaces, sorted as built. */
static char *backends(const char *ns, const char *name, int proto, uint16_t port)
{
	static char out[1024];
	out[0] = '\0';
	urcu_memb_read_lock();
	const struct em_snapshot *s = em_registry_current(reg);
	const struct em_service *svc = em_snapshot_find_name(s, ns, strlen(ns), name, strlen(name));
	const struct em_service_port *p = svc ? em_service_find_port(svc, proto, port) : NULL;
	if (!svc)
		strcpy(out, "NOSVC");
	else if (!p)
		strcpy(out, "NOPORT");
	for (size_t i = 0; p && i < p->n_backends; i++) {
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(p->backends[i].family, &p->backends[i].ip, ip, sizeof(ip));
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s:%u", i ? " " : "", ip,
			 p->backends[i].port);
	}
	urcu_memb_read_unlock();
	return out;
}

#define POD(name, labels, extra_spec, status) \
	"---\nkind: Pod\nmetadata: {name: " name ", namespace: default, labels: " labels "}\n" \
	"spec:\n  containers:\n  - name: c\n    ports:\n" extra_spec \
	"status:\n" status
#define READY(ip) "  phase: Running\n  podIP: " ip "\n  hostIP: 192.168.0.9\n" \
	"  conditions: [{type: Ready, status: \"True\"}]\n"

START_TEST(walkthrough_from_data)
{
	const char *d = getenv("EM_TEST_DATA");
	char path[512];
	snprintf(path, sizeof(path), "%s/registry/walkthrough.yaml", d ? d : "tests/data");
	json_t *items;
	struct em_manifest_error err;
	ck_assert_int_eq(em_source_file_load(path, &items, &err), 0);
	sink.replace(sink.ctx, "f", NULL, items);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, "f"), 0);
	ck_assert_str_eq(backends("default", "nginx-svc", IPPROTO_TCP, 12345), "10.244.2.2:80");
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg),
							     "default", 7, "nginx-svc", 9);
	ck_assert(svc->headless && svc->has_fake4 && !svc->has_cluster_ip4);
	ck_assert_str_eq(svc->fqdn, "nginx-svc.default.svc.cluster.local");
	ck_assert_int_eq(svc->ports[0].app, EM_APP_HTTP);
	ck_assert_str_eq(svc->ports[0].backends[0].pod, "default/nginx");
	urcu_memb_read_unlock();
}
END_TEST

START_TEST(selector_all_labels_and_namespace)
{
	load("s",
	     POD("a", "{app: x, tier: web}", "    - containerPort: 80\n", READY("10.0.0.1"))
	     POD("b", "{app: x}", "    - containerPort: 80\n", READY("10.0.0.2"))
	     POD("c", "{app: y, tier: web}", "    - containerPort: 80\n", READY("10.0.0.3"))
	     "---\nkind: Pod\nmetadata: {name: d, namespace: other, labels: {app: x, tier: web}}\n"
	     "status:\n" READY("10.0.0.4")
	     "---\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x, tier: web}\n"
	     "  ports: [{port: 8080, targetPort: 80}]\n"
	     "---\nkind: Service\nmetadata: {name: s2}\nspec:\n  selector: {app: x}\n"
	     "  ports: [{port: 8080, targetPort: 80}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 8080), "10.0.0.1:80");
	ck_assert_str_eq(backends("default", "s2", IPPROTO_TCP, 8080), "10.0.0.1:80 10.0.0.2:80");
	ck_assert_str_eq(backends("default", "s", IPPROTO_UDP, 8080), "NOPORT");
}
END_TEST

START_TEST(unquoted_label_values)
{
	/* "version: 1" and "n" are typed by YAML; selectors must still match. */
	load("s",
	     POD("a", "{app: x, version: 1, on: yes, ns: n}", "", READY("10.0.0.1"))
	     POD("b", "{app: x, version: \"2\"}", "", READY("10.0.0.2"))
	     "---\nkind: Service\nmetadata: {name: s, namespace: default}\nspec:\n"
	     "  selector: {app: x, version: 1, on: yes, ns: n}\n  ports: [{port: 80}]\n"
	     "---\nkind: Service\nmetadata: {name: s2}\nspec:\n  selector: {version: \"2\"}\n  ports: [{port: 80}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.1:80");
	ck_assert_str_eq(backends("default", "s2", IPPROTO_TCP, 80), "10.0.0.2:80");
}
END_TEST

START_TEST(not_ready_pods_skipped)
{
	load("s",
	     POD("a", "{app: x}", "", READY("10.0.0.1"))
	     POD("b", "{app: x}", "", "  phase: Pending\n  podIP: 10.0.0.2\n")
	     POD("c", "{app: x}", "", "  phase: Running\n  podIP: 10.0.0.3\n"
				      "  conditions: [{type: Ready, status: \"False\"}]\n")
	     "---\nkind: Pod\nmetadata: {name: d, labels: {app: x}, deletionTimestamp: \"2024-01-01T00:00:00Z\"}\n"
	     "status:\n" READY("10.0.0.4")
	     POD("e", "{app: x}", "", "  phase: Running\n  conditions: [{type: Ready, status: \"True\"}]\n")
	     "---\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x}\n  ports: [{port: 80}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.1:80");
}
END_TEST

/* hostNetwork: the address is hostIP:port. A real hostNetwork pod has
 * podIP = hostIP, which would let the podIP rule pass this test too: the
 * pod here says otherwise, so only the hostNetwork rule gives 192.168.0.7. */
START_TEST(host_port_and_host_network)
{
	load("s",
	     POD("hp", "{app: x}", "    - {containerPort: 80, hostPort: 30080}\n", READY("10.0.0.1"))
	     "---\nkind: Pod\nmetadata: {name: hn, labels: {app: x}}\n"
	     "spec:\n  hostNetwork: true\n  containers: [{name: c, ports: [{containerPort: 80}]}]\n"
	     "status:\n  phase: Running\n  podIP: 10.0.0.2\n  hostIP: 192.168.0.7\n"
	     "  conditions: [{type: Ready, status: \"True\"}]\n"
	     POD("plain", "{app: x}", "    - {containerPort: 80}\n", READY("10.0.0.3"))
	     "---\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x}\n"
	     "  ports: [{port: 1234, targetPort: 80}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 192.168.0.7:80 192.168.0.9:30080");
}
END_TEST

START_TEST(named_target_port)
{
	load("s",
	     POD("a", "{app: x}", "    - {name: web, containerPort: 8080}\n", READY("10.0.0.1"))
	     POD("b", "{app: x}", "    - {name: web, containerPort: 9090, hostPort: 31000}\n", READY("10.0.0.2"))
	     POD("c", "{app: x}", "    - {name: other, containerPort: 80}\n", READY("10.0.0.3"))
	     "---\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x}\n"
	     "  ports: [{name: http, port: 80, targetPort: web}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80),
			 "10.0.0.1:8080 192.168.0.9:31000");
}
END_TEST

START_TEST(endpoints_without_selector)
{
	load("s",
	     "kind: Service\nmetadata: {name: ext, namespace: n}\nspec:\n  clusterIP: 10.96.0.5\n"
	     "  ports: [{name: a, port: 80}, {name: b, port: 90, protocol: UDP}]\n"
	     "---\nkind: Endpoints\nmetadata: {name: ext, namespace: n}\nsubsets:\n"
	     "- addresses: [{ip: 10.9.0.1}, {ip: 10.9.0.2}]\n"
	     "  ports: [{name: a, port: 8080}, {name: b, port: 9090, protocol: UDP}]\n"
	     "- addresses: [{ip: 10.9.1.1}]\n  ports: [{name: b, port: 9191, protocol: UDP}]\n"
	     "---\nkind: Service\nmetadata: {name: one, namespace: n}\nspec:\n  ports: [{port: 5432}]\n"
	     "---\nkind: Endpoints\nmetadata: {name: one, namespace: n}\nsubsets:\n"
	     "- addresses: [{ip: \"fd00::5\"}]\n  ports: [{port: 15432}]\n"
	     "---\nkind: Service\nmetadata: {name: sl, namespace: n}\nspec:\n  ports: [{name: a, port: 80}]\n"
	     "---\nkind: EndpointSlice\nmetadata: {name: sl-x1, namespace: n, labels: {kubernetes.io/service-name: sl}}\n"
	     "endpoints: [{addresses: [10.8.0.1]}]\nports: [{name: a, port: 81}]\n");
	ck_assert_str_eq(backends("n", "ext", IPPROTO_TCP, 80), "10.9.0.1:8080 10.9.0.2:8080");
	ck_assert_str_eq(backends("n", "ext", IPPROTO_UDP, 90),
			 "10.9.0.1:9090 10.9.0.2:9090 10.9.1.1:9191");
	ck_assert_str_eq(backends("n", "one", IPPROTO_TCP, 5432), "fd00::5:15432");
	ck_assert_str_eq(backends("n", "sl", IPPROTO_TCP, 80), "10.8.0.1:81");
}
END_TEST

static void upsert_yaml(const char *src, const char *yaml)
{
	json_t *items;
	struct em_manifest_error err;
	ck_assert_int_eq(em_manifest_parse(yaml, strlen(yaml), &items, &err), 0);
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
		ck_assert_int_eq(sink.upsert(sink.ctx, src, it), 0);
	json_decref(items);
	ck_assert_int_eq(sink.commit(sink.ctx, src), 0);
}

START_TEST(pod_updates_incremental)
{
	/* The pod index follows single upserts/removes, across sources. */
	em_registry_add_source(reg, "a");
	load("b", POD("p", "{app: x}", "", READY("10.0.0.2"))
		  "---\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x}\n  ports: [{port: 80}]\n");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.2:80");
	upsert_yaml("a", POD("p", "{app: x}", "", READY("10.0.0.1")));	/* a wins */
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.1:80");
	upsert_yaml("a", POD("p", "{app: y}", "", READY("10.0.0.1")));	/* relabelled */
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "");
	upsert_yaml("a", POD("p", "{app: x}", "", "  phase: Pending\n"));
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "");
	upsert_yaml("a", POD("p", "{app: x}", "", READY("10.0.0.3")));
	upsert_yaml("a", POD("q", "{app: x}", "", READY("10.0.0.4")));
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.3:80 10.0.0.4:80");
	sink.remove(sink.ctx, "a", "Pod", "default", "p");	/* b's copy takes over */
	sink.commit(sink.ctx, "a");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "10.0.0.2:80 10.0.0.4:80");
	sink.remove(sink.ctx, "b", "Pod", "default", "p");
	sink.remove(sink.ctx, "a", "Pod", "", "q");
	sink.commit(sink.ctx, "a");
	ck_assert_str_eq(backends("default", "s", IPPROTO_TCP, 80), "");
	/* A big relist takes the rebuild path. */
	char *y = malloc(300 * 256);
	y[0] = '\0';
	for (int i = 0; i < 300; i++)
		sprintf(y + strlen(y), "---\nkind: Pod\nmetadata: {name: r%d, labels: {app: x}}\n"
			"status: {phase: Running, podIP: 10.1.%d.%d, conditions: [{type: Ready, status: \"True\"}]}\n",
			i, i / 250, i % 250);
	load("c", y);
	load("c", y);
	free(y);
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg), "default", 7, "s", 1);
	ck_assert_uint_eq(svc->ports[0].n_backends, 300);
	urcu_memb_read_unlock();
}
END_TEST

/* The balancer built for port 80 of service s1 (NULL if none yet). */
static struct em_lb_port *peek_lb(struct em_registry *r, const char *name)
{
	struct em_lb_port *lp;

	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(r), "default", 7,
							     name, strlen(name));
	ck_assert_ptr_nonnull(svc);
	lp = em_lb_port_peek(&svc->ports[0]);
	urcu_memb_read_unlock();
	return lp;
}

static struct em_lb_port *acquire_lb(struct em_registry *r, const char *name)
{
	struct em_lb_port *lp;

	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(r), "default", 7,
							     name, strlen(name));
	ck_assert_ptr_nonnull(svc);
	lp = em_lb_port_acquire(&svc->ports[0]);
	urcu_memb_read_unlock();
	ck_assert_ptr_nonnull(lp);
	em_lb_port_put(lp);	/* the port keeps its own reference */
	return lp;
}

/* Commits that do not touch a service (another service's pod changes, a
 * relist or reload that hands over the same objects) keep its balancer
 * and thus its state (round-robin position, health, counters). */
START_TEST(untouched_service_keeps_balancer)
{
	static const char base[] =
		"kind: Service\nmetadata: {name: s1}\nspec:\n  selector: {app: a}\n  ports: [{port: 80}]\n"
		"---\nkind: Service\nmetadata: {name: s2}\nspec:\n  selector: {app: b}\n  ports: [{port: 80}]\n"
		"---\n" POD("a1", "{app: a}", "", READY("10.0.0.1"))
		"---\n" POD("a2", "{app: a}", "", READY("10.0.0.2"))
		"---\n" POD("b1", "{app: b}", "", READY("10.0.1.1"));
	struct em_registry_config c = { 0 };
	struct em_lb *lb;
	struct em_registry *r;
	struct em_source_sink saved = sink;
	struct em_lb_port *lp;
	struct em_lb_port_stats st;

	ck_assert_int_eq(em_lb_new(NULL, NULL, 0, &lb), 0);
	c.hooks = em_lb_snapshot_hooks(lb);
	ck_assert_ptr_nonnull(r = em_registry_new(&c));
	sink = em_registry_sink(r);
	load("src", base);
	/* First connection to s1 builds its balancer. */
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(r), "default", 7, "s1", 2);
	lp = em_lb_port_acquire(&svc->ports[0]);
	urcu_memb_read_unlock();
	ck_assert_ptr_nonnull(lp);
	em_lb_port_release(lp, em_lb_port_pick(lp, NULL, 0, -1, 0), EM_BALANCER_OK);
	em_lb_port_put(lp);
	/* Another service's pod changes. */
	upsert_yaml("src", POD("b2", "{app: b}", "", READY("10.0.1.2")));
	ck_assert_ptr_eq(peek_lb(r, "s1"), lp);
	/* The same objects again, as a relist or a reload would hand them. */
	load("src", base);
	ck_assert_ptr_eq(peek_lb(r, "s1"), lp);
	em_lb_port_get_stats(peek_lb(r, "s1"), &st);
	ck_assert_uint_eq(st.requests, 1);
	/* A big relist (over the index rebuild threshold) of unchanged objects. */
	{
		size_t cap = sizeof(base) + 300 * 256;
		char *y = malloc(cap);
		ck_assert_ptr_nonnull(y);
		strcpy(y, base);
		for (int i = 0; i < 300; i++)
			snprintf(y + strlen(y), cap - strlen(y),
				 "---\nkind: Pod\nmetadata: {name: c%d, labels: {app: c}}\n"
				 "status: {phase: Running, podIP: 10.2.%d.%d, conditions: [{type: Ready, status: \"True\"}]}\n",
				 i, i / 250, i % 250);
		load("src", y);
		lp = acquire_lb(r, "s1");
		load("src", y);
		ck_assert_ptr_eq(peek_lb(r, "s1"), lp);
		/* (Dropping the 300 pods again rebuilds the pod index, and with
		 * it every selector service: a known limit, see registry.c.) */
		free(y);
	}
	/* s1 itself changes: a new balancer for the new backends. */
	upsert_yaml("src", POD("a3", "{app: a}", "", READY("10.0.0.3")));
	ck_assert_ptr_ne(peek_lb(r, "s1"), lp);
	em_registry_free(r);
	em_lb_free(lb);
	sink = saved;
}
END_TEST

/* Only a big commit asks for the heap to be trimmed, once. */
START_TEST(trim_after_big_commit)
{
	char *y = malloc(1100 * 200);
	ck_assert_ptr_nonnull(y);
	y[0] = '\0';
	load("a", POD("p", "{app: x}", "", READY("10.0.0.2")));
	ck_assert(!em_registry_trim(reg));
	for (int i = 0; i < 1100; i++)
		sprintf(y + strlen(y), "---\nkind: Pod\nmetadata: {name: t%d, labels: {app: t}}\n"
			"status: {phase: Running, podIP: 10.3.%d.%d}\n", i, i / 250, i % 250);
	load("a", y);
	free(y);
	ck_assert(em_registry_trim(reg));
	ck_assert(!em_registry_trim(reg));
	load("a", POD("p", "{app: x}", "", READY("10.0.0.2")));	/* 1100 dropped */
	ck_assert(em_registry_trim(reg));
}
END_TEST

/* ---- where backends come from: Endpoints first, pods only without ---------- */

/* A selector service of a real edge node: its Endpoints list a backend on
 * another node (pod unknown here) and two local pods (known: one maps a
 * hostPort, one is hostNetwork). */
#define EP_WEB \
	"---\nkind: Endpoints\nmetadata: {name: web, namespace: default}\nsubsets:\n" \
	"- addresses:\n" \
	"  - {ip: 10.244.9.9, targetRef: {kind: Pod, name: remote, namespace: default}}\n" \
	"  - {ip: 10.0.0.1, targetRef: {kind: Pod, name: hp}}\n" \
	"  - {ip: 192.168.0.7, targetRef: {kind: Pod, name: hn}}\n" \
	"  - {ip: 10.0.0.3, targetRef: {kind: Pod, name: plain}}\n" \
	"  ports: [{name: http, port: 80}]\n"
#define SVC_WEB \
	"---\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: x}\n" \
	"  ports: [{name: http, port: 1234, targetPort: 80}]\n"
#define LOCAL_PODS \
	POD("hp", "{app: x}", "    - {containerPort: 80, hostPort: 30080}\n", READY("10.0.0.1")) \
	"---\nkind: Pod\nmetadata: {name: hn, labels: {app: x}}\n" \
	"spec:\n  hostNetwork: true\n  containers: [{name: c, ports: [{containerPort: 80}]}]\n" \
	"status:\n  phase: Running\n  podIP: 192.168.0.7\n  hostIP: 192.168.0.7\n" \
	"  conditions: [{type: Ready, status: \"True\"}]\n" \
	POD("plain", "{app: x}", "    - {containerPort: 80}\n", READY("10.0.0.3"))

START_TEST(endpoints_over_selector)
{
	/* Backends on other nodes come from the Endpoints; the local pods
	 * they name keep the EdgeMesh rule (hostIP:hostPort). Before issue
	 * 14 only the three matching local pods were used. */
	load("s", LOCAL_PODS SVC_WEB EP_WEB);
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 10.244.9.9:80 192.168.0.7:80 192.168.0.9:30080");
	/* The same from an EndpointSlice (no Endpoints object). */
	load("s", LOCAL_PODS SVC_WEB
	     "---\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, "
	     "labels: {kubernetes.io/service-name: web}}\n"
	     "endpoints:\n- {addresses: [10.244.9.9], targetRef: {kind: Pod, name: remote}}\n"
	     "- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: hp}}\n"
	     "- {addresses: [10.244.9.8], conditions: {ready: false}}\n"
	     "ports: [{name: http, port: 80}]\n");
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.244.9.9:80 192.168.0.9:30080");
	/* No Endpoints, no slices: the matching ready pods. */
	load("s", LOCAL_PODS SVC_WEB);
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 192.168.0.7:80 192.168.0.9:30080");
	/* Endpoints with no ready address: no backend, not the pods. */
	load("s", LOCAL_PODS SVC_WEB
	     "---\nkind: Endpoints\nmetadata: {name: web}\nsubsets:\n"
	     "- notReadyAddresses: [{ip: 10.0.0.3}]\n  ports: [{name: http, port: 80}]\n");
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234), "");
}
END_TEST

START_TEST(endpoints_from_another_source)
{
	/* The Endpoints may come from another source than the Service and
	 * the pods: they still decide. */
	load("file", LOCAL_PODS SVC_WEB);
	load("kube", EP_WEB);
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 10.244.9.9:80 192.168.0.7:80 192.168.0.9:30080");
	/* ... and when they go, the pods again. */
	load("kube", "");
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 192.168.0.7:80 192.168.0.9:30080");
}
END_TEST

static const struct em_service *svc_ptr(const char *name)
{
	urcu_memb_read_lock();
	const struct em_service *s = em_snapshot_find_name(em_registry_current(reg), "default", 7,
							   name, strlen(name));
	urcu_memb_read_unlock();
	return s;	/* compared only, never dereferenced */
}

START_TEST(endpoints_pod_changes_incremental)
{
	/* The Endpoints arrive before the pod they name; the pod's later
	 * arrival, change and removal re-resolve the service, and only it. */
	load("k", SVC_WEB EP_WEB
	     "---\nkind: Service\nmetadata: {name: other}\nspec:\n  selector: {app: o}\n"
	     "  ports: [{name: http, port: 1, targetPort: 80}]\n"
	     "---\nkind: Endpoints\nmetadata: {name: other}\nsubsets:\n"
	     "- addresses: [{ip: 10.5.0.1, targetRef: {kind: Pod, name: o1}}]\n"
	     "  ports: [{name: http, port: 80}]\n");
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.1:80 10.0.0.3:80 10.244.9.9:80 192.168.0.7:80");
	const struct em_service *other = svc_ptr("other");
	upsert_yaml("k", POD("hp", "{app: x}", "    - {containerPort: 80, hostPort: 30080}\n",
			      READY("10.0.0.1")));
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 10.244.9.9:80 192.168.0.7:80 192.168.0.9:30080");
	ck_assert_ptr_eq(svc_ptr("other"), other);	/* untouched: reused */
	upsert_yaml("k", POD("hp", "{app: x}", "    - {containerPort: 80, hostPort: 30081}\n",
			      READY("10.0.0.1")));
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.3:80 10.244.9.9:80 192.168.0.7:80 192.168.0.9:30081");
	sink.remove(sink.ctx, "k", "Pod", "default", "hp");
	sink.commit(sink.ctx, "k");
	ck_assert_str_eq(backends("default", "web", IPPROTO_TCP, 1234),
			 "10.0.0.1:80 10.0.0.3:80 10.244.9.9:80 192.168.0.7:80");
	/* A pod nobody's Endpoints name changes nothing. */
	const struct em_service *web = svc_ptr("web");
	upsert_yaml("k", POD("unrelated", "{app: z}", "", READY("10.0.0.77")));
	ck_assert_ptr_eq(svc_ptr("web"), web);
	ck_assert_ptr_eq(svc_ptr("other"), other);
	/* Endpoints appear for a service served from its pods, and go. */
	load("p", POD("z1", "{app: zz}", "", READY("10.0.1.1"))
		  "---\nkind: Service\nmetadata: {name: z}\nspec:\n  selector: {app: zz}\n  ports: [{port: 80}]\n");
	ck_assert_str_eq(backends("default", "z", IPPROTO_TCP, 80), "10.0.1.1:80");
	upsert_yaml("e", "kind: Endpoints\nmetadata: {name: z}\nsubsets:\n"
			 "- addresses: [{ip: 10.7.7.7}]\n  ports: [{port: 80}]\n");
	ck_assert_str_eq(backends("default", "z", IPPROTO_TCP, 80), "10.7.7.7:80");
	sink.remove(sink.ctx, "e", "Endpoints", "default", "z");
	sink.commit(sink.ctx, "e");
	ck_assert_str_eq(backends("default", "z", IPPROTO_TCP, 80), "10.0.1.1:80");
}
END_TEST

START_TEST(protocol_decision)
{
	ck_assert_int_eq(em_app_proto_for_port("http", NULL), EM_APP_HTTP);
	ck_assert_int_eq(em_app_proto_for_port("http-0", NULL), EM_APP_HTTP);
	ck_assert_int_eq(em_app_proto_for_port("HTTP-web", NULL), EM_APP_HTTP);
	ck_assert_int_eq(em_app_proto_for_port("https", NULL), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port("httpx", NULL), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port("tcp-echo", NULL), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port("", NULL), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port(NULL, NULL), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port("tcp", "http"), EM_APP_HTTP);
	ck_assert_int_eq(em_app_proto_for_port("tcp", "HTTP"), EM_APP_HTTP);
	ck_assert_int_eq(em_app_proto_for_port("http", "kubernetes.io/h2c"), EM_APP_L4);
	ck_assert_int_eq(em_app_proto_for_port("http", ""), EM_APP_HTTP);
}
END_TEST

START_TEST(first_source_wins)
{
	em_registry_add_source(reg, "first");
	load("second", "kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.2\n  ports: [{port: 80}]\n");
	load("first", "kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n");
	struct in_addr a;
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg), "default", 7, "s", 1);
	a = svc->cluster_ip4;
	urcu_memb_read_unlock();
	ck_assert_uint_eq(ntohl(a.s_addr), 0x0a600001);
	/* The winner withdraws: the other copy takes over. */
	sink.remove(sink.ctx, "first", "Service", "default", "s");
	sink.commit(sink.ctx, "first");
	urcu_memb_read_lock();
	svc = em_snapshot_find_name(em_registry_current(reg), "default", 7, "s", 1);
	a = svc->cluster_ip4;
	urcu_memb_read_unlock();
	ck_assert_uint_eq(ntohl(a.s_addr), 0x0a600002);
}
END_TEST

START_TEST(child_source_keeps_parent_rank)
{
	em_registry_add_source(reg, "file:/d");
	em_registry_add_source(reg, "kube:x");
	/* A file of the directory appearing after kube registered still wins. */
	load("kube:x", "kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.2\n  ports: [{port: 80}]\n");
	load("file:/d/late.yaml", "kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n");
	load("file:/dx", "kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.3\n  ports: [{port: 80}]\n");
	urcu_memb_read_lock();
	const struct em_service *svc = em_snapshot_find_name(em_registry_current(reg), "default", 7, "s", 1);
	ck_assert_uint_eq(ntohl(svc->cluster_ip4.s_addr), 0x0a600001);
	urcu_memb_read_unlock();
}
END_TEST

START_TEST(upsert_remove_generation)
{
	uint64_t g0 = em_registry_generation(reg);
	ck_assert_uint_eq(g0, 1);
	json_t *o = json_pack("{s:s, s:{s:s}, s:{s:[{s:i}]}}", "kind", "Service", "metadata",
			      "name", "u", "spec", "ports", "port", 80);
	ck_assert_int_eq(sink.upsert(sink.ctx, "k", o), 0);
	json_decref(o);
	ck_assert_str_eq(backends("default", "u", IPPROTO_TCP, 80), "NOSVC");	/* not committed */
	sink.commit(sink.ctx, "k");
	ck_assert_str_eq(backends("default", "u", IPPROTO_TCP, 80), "");
	ck_assert_uint_eq(em_registry_generation(reg), g0 + 1);
	sink.commit(sink.ctx, "k");	/* nothing changed: no new snapshot */
	ck_assert_uint_eq(em_registry_generation(reg), g0 + 1);
	o = json_pack("{s:s, s:{s:s}}", "kind", "Service", "metadata", "namespace", "x");
	ck_assert_int_eq(sink.upsert(sink.ctx, "k", o), -EINVAL);
	json_decref(o);
	sink.remove(sink.ctx, "k", "Service", "default", "u");
	sink.commit(sink.ctx, "k");
	ck_assert_str_eq(backends("default", "u", IPPROTO_TCP, 80), "NOSVC");
	struct em_registry_stats st;
	em_registry_get_stats(reg, &st);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_uint_eq(st.objects, 0);
}
END_TEST

/* ---- file source ---- */

static char dir[64];

static void write_file(const char *name, const char *text)
{
	char tmp[256], path[256];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, path), 0);	/* like an editor */
}

/* Polls until backends() equals want (the watcher debounces ~100 ms). */
static void wait_for(const char *ns, const char *name, uint16_t port, const char *want)
{
	for (int i = 0; i < 300; i++) {
		if (strcmp(backends(ns, name, IPPROTO_TCP, port), want) == 0)
			return;
		usleep(10000);
	}
	ck_abort_msg("timeout: %s/%s:%u is '%s', want '%s'", ns, name, port,
		     backends(ns, name, IPPROTO_TCP, port), want);
}

#define SVC_EP(name, ip) \
	"kind: Service\nmetadata: {name: " name "}\nspec: {ports: [{port: 80}]}\n---\n" \
	"kind: Endpoints\nmetadata: {name: " name "}\nsubsets: [{addresses: [{ip: " ip "}], ports: [{port: 80}]}]\n"

START_TEST(file_source_reload)
{
	struct em_source_file *sf;
	em_test_expect_error("did not find expected");	/* the broken a.yaml */
	strcpy(dir, "/tmp/em-regfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file("a.yaml", SVC_EP("a", "10.0.0.1"));
	write_file("ignored.txt", SVC_EP("t", "10.0.0.9"));
	ck_assert_int_eq(em_source_file_start(dir, sink, &sf), 0);
	/* Synchronous first read. */
	ck_assert_str_eq(backends("default", "a", IPPROTO_TCP, 80), "10.0.0.1:80");
	ck_assert_str_eq(backends("default", "t", IPPROTO_TCP, 80), "NOSVC");

	write_file("a.yaml", SVC_EP("a", "10.0.0.2"));
	wait_for("default", "a", 80, "10.0.0.2:80");

	write_file("b.json", "{\"kind\":\"Service\",\"metadata\":{\"name\":\"b\"},\"spec\":{\"ports\":[{\"port\":80}]}}");
	wait_for("default", "b", 80, "");

	/* A broken file keeps its last good objects. Wait for the event (the
	 * parse error, logged at error level) before asserting that nothing
	 * changed: a sleep would pass as well if the file were never read. */
	uint64_t errors = em_log_error_count();
	write_file("a.yaml", "kind: Service\nmetadata: {name: a\n");
	for (int i = 0; i < 300 && em_log_error_count() == errors; i++)
		usleep(10000);
	ck_assert_uint_gt(em_log_error_count(), errors);
	ck_assert_str_eq(backends("default", "a", IPPROTO_TCP, 80), "10.0.0.2:80");
	write_file("a.yaml", SVC_EP("a", "10.0.0.3"));
	wait_for("default", "a", 80, "10.0.0.3:80");

	/* In-place rewrite (no rename). */
	char path[256];
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	FILE *f = fopen(path, "w");
	fputs(SVC_EP("a", "10.0.0.4"), f);
	fclose(f);
	wait_for("default", "a", 80, "10.0.0.4:80");

	/* A removed file takes its objects away. */
	snprintf(path, sizeof(path), "%s/b.json", dir);
	unlink(path);
	wait_for("default", "b", 80, "NOSVC");

	em_source_file_stop(sf);
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ignored.txt", dir);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(file_source_single_file)
{
	struct em_source_file *sf;
	char path[256];
	strcpy(dir, "/tmp/em-regfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file("m.yaml", SVC_EP("m", "10.0.0.1"));
	write_file("other.yaml", SVC_EP("o", "10.0.0.1"));
	snprintf(path, sizeof(path), "%s/m.yaml", dir);
	ck_assert_int_eq(em_source_file_start(path, sink, &sf), 0);
	ck_assert_str_eq(backends("default", "m", IPPROTO_TCP, 80), "10.0.0.1:80");
	ck_assert_str_eq(backends("default", "o", IPPROTO_TCP, 80), "NOSVC");
	write_file("m.yaml", SVC_EP("m", "10.0.0.5"));
	wait_for("default", "m", 80, "10.0.0.5:80");
	em_source_file_stop(sf);
	unlink(path);
	snprintf(path, sizeof(path), "%s/other.yaml", dir);
	unlink(path);
	rmdir(dir);
	ck_assert_int_eq(em_source_file_start("/nonexistent/em-x", sink, &sf), -ENOENT);
}
END_TEST

static TCase *registry_case(Suite *s, const char *name)
{
	TCase *tc = em_test_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	return tc;
}

Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = registry_case(s, "selection");
	tcase_add_test(tc, walkthrough_from_data);
	tcase_add_test(tc, selector_all_labels_and_namespace);
	tcase_add_test(tc, unquoted_label_values);
	tcase_add_test(tc, not_ready_pods_skipped);
	tcase_add_test(tc, host_port_and_host_network);
	tcase_add_test(tc, named_target_port);
	tcase_add_test(tc, protocol_decision);
	tc = registry_case(s, "endpoints");
	tcase_add_test(tc, endpoints_without_selector);
	tcase_add_test(tc, endpoints_over_selector);
	tcase_add_test(tc, endpoints_from_another_source);
	tcase_add_test(tc, endpoints_pod_changes_incremental);
	tc = registry_case(s, "updates");
	tcase_add_test(tc, pod_updates_incremental);
	tcase_add_test(tc, untouched_service_keeps_balancer);
	tcase_add_test(tc, trim_after_big_commit);
	tcase_add_test(tc, upsert_remove_generation);
	tc = registry_case(s, "source-rank");
	tcase_add_test(tc, first_source_wins);
	tcase_add_test(tc, child_source_keeps_parent_rank);
	tc = registry_case(s, "file-source");
	tcase_add_test(tc, file_source_reload);
	tcase_add_test(tc, file_source_single_file);
	tcase_set_timeout(tc, 30);
	return s;
}
