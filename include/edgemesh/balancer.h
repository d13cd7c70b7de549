/* edgemesh/balancer.h — the public balancer strategy ABI of edgemesh-tproxy.
 *
 * This is the only header a balancer plugin includes. A strategy is one
 * initialised `const struct em_balancer_ops`; the daemon finds built-in
 * strategies by name in a table and loads others from shared objects at
 * start-up (dlopen) through the entry point EM_BALANCER_PLUGIN_SYMBOL.
 *
 * Model: nginx upstream peers. Every successful pick() is paired with exactly
 * one release() that reports how the attempt ended, so weights, connection
 * counts and passive health checks live in one place, the strategy.
 *
 * Lifetime: the daemon creates one instance per service port every time it
 * publishes a new service snapshot, and destroys it when the last user is
 * gone: the snapshot has been replaced and every connection that picked from
 * the instance has called release(). An instance therefore never sees its
 * backend list change; a new list means a new instance.
 *
 * Threads: create() runs on the thread that builds a snapshot. pick() and
 * release() run on the forwarder's worker threads, concurrently, for the same
 * instance: they must be thread-safe (atomics, or a lock of the strategy's
 * own). destroy() may run on any thread, once, after every other call on the
 * instance has returned.
 *
 * Versioning: a plugin is loaded only when its ops->abi_version equals the
 * daemon's EM_BALANCER_ABI_VERSION. Any change of a struct below changes the
 * version.
 */
#ifndef EDGEMESH_BALANCER_H
#define EDGEMESH_BALANCER_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EM_BALANCER_ABI_VERSION 1

/* A plugin exports this function: `const struct em_balancer_ops
 * *em_balancer_plugin(void)`. It is called once, right after dlopen, on the
 * daemon's main thread; the returned struct must stay valid until the daemon
 * exits (a static const object). Returning NULL refuses to load. */
#define EM_BALANCER_PLUGIN_SYMBOL "em_balancer_plugin"

/* What a strategy needs from a request before pick(); the forwarder only
 * fills the corresponding fields of struct em_balancer_request when asked. */
enum em_balancer_need {
	EM_BALANCER_NEED_CLIENT_ADDR = 1u << 0,	/* req->client */
	EM_BALANCER_NEED_HEADER = 1u << 1,	/* req->header_value (HTTP ports) */
};

/* How an attempt that pick() started ended, reported by release(). */
enum em_balancer_outcome {
	EM_BALANCER_OK = 0,		/* connected; the request/connection ran */
	EM_BALANCER_FAILED = 1,		/* connect refused/unreachable, or reset before use */
	EM_BALANCER_TIMEOUT = 2,	/* no answer within the connect timeout */
};

/* One backend as the daemon resolved it. Owned by the daemon; valid, and
 * unchanged, for the whole life of the instance it was given to. */
struct em_balancer_backend {
	int family;			/* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} ip;
	uint16_t port;			/* host byte order */
	uint32_t weight;		/* >= 1; 1 unless the service says otherwise */
	const char *pod;		/* "namespace/name" of the pod, or NULL */
};

/* The service port an instance balances. Passed to create(); the strings and
 * the backends array are owned by the daemon and stay valid until after
 * destroy() returns, so an instance may keep pointers into them. */
struct em_balancer_port {
	const char *service_ns;		/* "default" */
	const char *service_name;	/* "nginx-svc" */
	const char *port_name;		/* "" when unnamed */
	uint16_t port;			/* service port, host byte order */
	int ipproto;			/* IPPROTO_TCP, ... */
	const char *session_affinity;	/* "None" or "ClientIP" (never NULL) */
	const struct em_balancer_backend *backends;
	size_t n_backends;		/* may be 0: pick() then returns -1 */
};

/* Per-service parameters from configuration or annotation. Owned by the
 * daemon and valid only during create(): copy what you keep. */
struct em_balancer_params {
	/* Text after the strategy name in an annotation such as
	 * "consistent-hash:header=X-User", or NULL. The syntax is the
	 * strategy's own. */
	const char *args;
	/* HTTP header to hash on, from configuration, or NULL. */
	const char *hash_header;
};

/* One pick request. Built by the forwarder on its stack: valid only during
 * pick(). */
struct em_balancer_request {
	/* The client's address; NULL unless ops->needs has
	 * EM_BALANCER_NEED_CLIENT_ADDR. */
	const struct sockaddr *client;
	socklen_t client_len;
	/* The value of the header named by the instance (see header_name()),
	 * not NUL-terminated; NULL when not needed, absent, or the port is L4. */
	const char *header_value;
	size_t header_len;
	/* Index of a backend that just failed for this same request (retry),
	 * or -1. Pick another one when there is any. */
	int avoid;
	/* 0 for the first pick of a request, 1 for the first retry, ... */
	unsigned attempt;
};

struct em_balancer_ops {
	/* EM_BALANCER_ABI_VERSION at the time the strategy was compiled. */
	uint32_t abi_version;
	/* Unique name used in configuration and annotations, e.g.
	 * "round-robin": lower case, [a-z0-9-]. */
	const char *name;
	/* Bitwise or of enum em_balancer_need. */
	uint32_t needs;

	/* Build the instance for one port. Returns the instance (opaque to the
	 * daemon), or NULL with errno set; the daemon then logs the port and
	 * falls back to its default strategy. Building thread. */
	void *(*create)(const struct em_balancer_port *port,
			const struct em_balancer_params *params);

	/* Name of the HTTP header this instance hashes on, or NULL. Only
	 * called when needs has EM_BALANCER_NEED_HEADER. Optional (NULL). The
	 * returned string is owned by the instance. */
	const char *(*header_name)(void *instance);

	/* Choose a backend: an index into port->backends, or -1 when none is
	 * usable (the forwarder then fails the request). Worker threads,
	 * concurrently. Must not block. */
	int (*pick)(void *instance, const struct em_balancer_request *req);

	/* Report the end of an attempt that a pick() returning `index` started.
	 * Called exactly once per successful pick, possibly on another worker
	 * thread than the pick, possibly long after the snapshot that created
	 * the instance was replaced (the instance is kept alive until then).
	 * Worker threads, concurrently. Must not block. */
	void (*release)(void *instance, int index, enum em_balancer_outcome outcome);

	/* Free the instance. Any thread, once, after every pick() and
	 * release() on it has returned. */
	void (*destroy)(void *instance);
};

#endif
