/* edgemesh/balancer.h — the public balancer strategy ABI of edgemesh-tproxy,
 * version 2.
 *
 * This is the only header a balancer plugin includes. A strategy is one
 * initialised `const struct em_balancer_ops`; the daemon finds built-in
 * strategies by name in a table and loads others from shared objects at
 * start-up (dlopen) through the entry point EM_BALANCER_PLUGIN_SYMBOL.
 *
 * Model: nginx upstream peers. Every successful pick() is paired with exactly
 * one release() that reports how the attempt ended (struct
 * em_balancer_result), so weights, in-flight counts, latency and passive
 * health live in one place.
 *
 * Lifetime: the daemon builds one instance per service port lazily, on the
 * first connection to that port, and destroys it when the last user is gone:
 * the snapshot holding the port has been replaced and every connection that
 * picked from the instance has called release(). An instance never sees its
 * backend list change; a new list means a new instance.
 *
 * Threads:
 *   - create() runs on a forwarder worker thread (the first connection to the
 *     port), inside the registry's RCU read-side section, with no lock of the
 *     daemon held. Two workers may build an instance for the same port at the
 *     same moment; one is installed, the other is destroyed at once without
 *     any pick(). create() must not block.
 *   - pick() and release() run on worker threads, concurrently, for the same
 *     instance: they must be thread-safe (atomics, or a lock of the
 *     strategy's own) and must not block.
 *   - destroy() may run on any thread, once, after every other call on the
 *     instance has returned.
 *
 * Versioning and growth: a plugin is loaded only when ops->abi_version equals
 * the daemon's EM_BALANCER_ABI_VERSION. Within a version, structs only grow at
 * their end, and each carries its own size: the daemon reads ops->size to
 * know which fields a plugin filled, and a plugin reads req->size / res->size
 * before touching a field added after the first release of version 2. A
 * plugin built today keeps loading when fields are added.
 */
#ifndef EDGEMESH_BALANCER_H
#define EDGEMESH_BALANCER_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EM_BALANCER_ABI_VERSION 2

/* A plugin exports this function: `const struct em_balancer_ops
 * *em_balancer_plugin(void)`. It is called once, right after dlopen, on the
 * daemon's main thread; the returned struct must stay valid until the daemon
 * exits (a static const object). Returning NULL refuses to load. */
#define EM_BALANCER_PLUGIN_SYMBOL "em_balancer_plugin"

/* True when the struct at `s` (with a leading uint32_t size, as filled by
 * its producer) has field `f`. */
#define EM_BALANCER_HAS(s, type, f) \
	((s)->size >= offsetof(type, f) + sizeof(((type *)0)->f))

/* How an attempt that pick() started ended. */
enum em_balancer_outcome {
	/* Connected, and the connection (L4) or request (HTTP) ran. On HTTP
	 * ports res->http_status says how it went (5xx counts as a failure
	 * for health). */
	EM_BALANCER_OK = 0,
	/* Connect refused, unreachable or reset before any response byte. */
	EM_BALANCER_FAILED = 1,
	/* No connection within the connect timeout, or no response head
	 * within the response timeout. */
	EM_BALANCER_TIMEOUT = 2,
	/* Not the backend's fault: a local error (EADDRNOTAVAIL, ENOBUFS,
	 * EMFILE/ENFILE, EPERM from a local firewall) or a stale pooled
	 * connection that failed before any response byte. Never held
	 * against the backend. */
	EM_BALANCER_LOCAL = 3,
	/* The client went away before the outcome was known. */
	EM_BALANCER_CANCELLED = 4,
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
	uint32_t size;			/* sizeof(struct em_balancer_port) in the daemon */
	const char *service_ns;		/* "default" */
	const char *service_name;	/* "nginx-svc" */
	const char *port_name;		/* "" when unnamed */
	uint16_t port;			/* service port, host byte order */
	int ipproto;			/* IPPROTO_TCP, IPPROTO_UDP */
	int http;			/* 1 when requests are balanced one by one (HTTP port) */
	const char *session_affinity;	/* "None" or "ClientIP" (never NULL) */
	uint32_t affinity_timeout_s;	/* sessionAffinityConfig.clientIP.timeoutSeconds (10800 default) */
	const struct em_balancer_backend *backends;
	size_t n_backends;		/* may be 0: pick() then returns -1 */
};

/* Per-service parameters from configuration or annotation. Owned by the
 * daemon and valid only during create(): copy what you keep. */
struct em_balancer_params {
	uint32_t size;			/* sizeof(struct em_balancer_params) in the daemon */
	/* Text after the strategy name in an annotation such as
	 * "consistent-hash:header=X-User", or NULL. The syntax is the
	 * strategy's own. */
	const char *args;
};

/* One pick request. Built by the forwarder on its stack: valid only during
 * pick(). Strings are not NUL-terminated (pointer + length); absent ones are
 * NULL with length 0. */
struct em_balancer_request {
	uint32_t size;			/* sizeof(struct em_balancer_request) in the daemon */
	/* The client's address, and the destination it dialled (fake IP or
	 * ClusterIP and service port). Always set. */
	const struct sockaddr *client;
	socklen_t client_len;
	const struct sockaddr *orig_dst;
	socklen_t orig_dst_len;
	/* HTTP ports only (NULL on L4): the request's method, target (path
	 * and query as sent) and Host header. */
	const char *method;
	size_t method_len;
	const char *path;
	size_t path_len;
	const char *host;
	size_t host_len;
	/* HTTP ports only (NULL on L4): the value of a request header (name
	 * case-insensitive; the first one when repeated) or of a cookie (name
	 * case-sensitive), or NULL when absent. *len receives the length.
	 * Valid during pick() only. */
	const char *(*header)(const struct em_balancer_request *req, const char *name,
			      size_t *len);
	const char *(*cookie)(const struct em_balancer_request *req, const char *name,
			      size_t *len);
	const void *priv;		/* the daemon's, for header() and cookie() */
	/* Index of a backend that just failed for this same request (retry),
	 * or -1. Pick another one when there is any. */
	int avoid;
	/* 0 for the first pick of a request, 1 for the first retry, ... */
	unsigned attempt;
};

/* How one attempt ended: given to release(). */
struct em_balancer_result {
	uint32_t size;			/* sizeof(struct em_balancer_result) in the daemon */
	enum em_balancer_outcome outcome;
	int error;			/* errno for FAILED and LOCAL, else 0 */
	unsigned http_status;		/* response status on HTTP ports; 0 on L4 or without a response */
	/* From the pick to the connection (L4) or to the response head
	 * (HTTP), in microseconds; 0 when the attempt failed first. */
	uint64_t latency_us;
	uint64_t bytes_sent;		/* to the backend */
	uint64_t bytes_received;	/* from the backend */
};

struct em_balancer_ops {
	/* EM_BALANCER_ABI_VERSION at the time the strategy was compiled. */
	uint32_t abi_version;
	/* sizeof(struct em_balancer_ops) at the time the strategy was
	 * compiled: fields beyond it are treated as absent (NULL). */
	uint32_t size;
	/* Unique name used in configuration and annotations, e.g.
	 * "round-robin": lower case, [a-z0-9-]. */
	const char *name;

	/* Build the instance for one port. Returns the instance (opaque to the
	 * daemon), or NULL with errno set; the daemon then logs the port and
	 * falls back to its default strategy. */
	void *(*create)(const struct em_balancer_port *port,
			const struct em_balancer_params *params);

	/* Choose a backend: an index into port->backends, or -1 when none is
	 * usable (the forwarder then fails the request). */
	int (*pick)(void *instance, const struct em_balancer_request *req);

	/* Report the end of an attempt that a pick() returning `index` started.
	 * Called exactly once per successful pick, possibly on another worker
	 * thread than the pick, possibly long after the snapshot that created
	 * the instance was replaced (the instance is kept alive until then). */
	void (*release)(void *instance, int index, const struct em_balancer_result *res);

	/* Free the instance, once, after every pick() and release() on it
	 * has returned. */
	void (*destroy)(void *instance);

	/* Zero: room to grow without breaking plugins built today. */
	void *reserved[4];
};

#endif
