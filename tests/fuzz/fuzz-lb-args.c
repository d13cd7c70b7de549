/* fuzz-lb-args.c — libFuzzer: bytes -> a service's lb-strategy annotation
 * ("name:key=value,...") -> strategy choice, tuning and strategy arguments
 * -> a balancer built through the snapshot hooks, picked from and released
 * with header and cookie lookups that answer with the same bytes. Seeds:
 * tests/fuzz/corpus/lb-args/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *lookup(const struct em_balancer_request *req, const char *name,
			  size_t *len)
{
	const char *text = req->priv;

	(void)name;
	*len = strlen(text);
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct em_lb *lb;
	struct em_backend b[5];
	struct em_service svc = { .ns = "default", .name = "fuzz",
				  .session_affinity = size & 1 ? "ClientIP" : "None",
				  .affinity_timeout_s = 60 };
	struct em_service_port port = { .name = "http", .port = 80, .ipproto = IPPROTO_TCP,
					.app = EM_APP_HTTP, .backends = b, .n_backends = 5,
					.service = &svc };
	struct sockaddr_in client = { .sin_family = AF_INET };
	struct em_snapshot_hooks hooks;
	struct em_lb_port *lp;
	char *text;

	if (!lb) {
		em_log_set_level(EM_LOG_ERR - 1);	/* quiet */
		if (em_lb_new(NULL, NULL, 0, &lb) < 0)
			abort();
	}
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(b, 0, sizeof(b));
	for (int i = 0; i < 5; i++) {
		b[i].family = AF_INET;
		b[i].ip.v4.s_addr = htonl(0x0a000001 + (uint32_t)i);
		b[i].port = 8080;
		b[i].weight = 1 + (uint32_t)(size > (size_t)i ? data[i] % 100 : 0);
	}
	svc.lb_strategy = text;
	svc.ports = &port;
	svc.n_ports = 1;
	hooks = em_lb_snapshot_hooks(lb);
	if (hooks.port_init(hooks.ctx, &port) == 0) {
		lp = em_lb_port_acquire(&port);
		for (int i = 0; lp && i < 8; i++) {
			struct em_balancer_request req = {
				.client = (struct sockaddr *)&client, .client_len = sizeof(client),
				.header = lookup, .cookie = lookup, .priv = text, .avoid = i % 3 - 1,
			};
			struct em_balancer_result res = { .outcome = (enum em_balancer_outcome)(i % 5),
							  .http_status = 200 + 100 * (unsigned)(i % 4),
							  .latency_us = (uint64_t)i * 1000 };
			int idx;

			client.sin_addr.s_addr = htonl(0x0b000000 + (uint32_t)i);
			idx = em_lb_port_pick_request(lp, &req);
			if (idx >= 5)
				abort();
			if (idx >= 0)
				em_lb_port_release_result(lp, idx, &res);
		}
		em_lb_port_put(lp);
		hooks.port_fini(hooks.ctx, &port);
	}
	if (em_lb_state_count(lb) != 0 || em_lb_port_live() != 0)
		abort();
	free(text);
	return 0;
}
