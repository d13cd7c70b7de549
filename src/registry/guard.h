/* guard.h — internal to the registry: what the API server would refuse is
 * refused here, before an object reaches DNS, the logs, the fake-IP state
 * file or a balancer.
 *
 * - Names: RFC 1123 labels for namespaces, RFC 1035 labels for Service
 *   names, RFC 1123 subdomains for the other objects, labels for port
 *   names; lengths as the API server's (63, 253). A name that fails makes
 *   the whole object unusable (the caller logs it, escaped).
 * - Backend addresses, whatever the source: never loopback, link-local
 *   (169.254.0.0/16 with the metadata address, fe80::/10), unspecified,
 *   multicast, broadcast / class E, IPv4-mapped forms of those, the fake
 *   ranges or the capture CIDRs. Such an address is removed from the
 *   object (an Endpoints address, a pod's IP) and counted, so no snapshot
 *   and no balancer ever holds it.
 *
 * Not thread safe: the registry's writer (under its lock) owns it. */
#ifndef EM_REGISTRY_GUARD_H
#define EM_REGISTRY_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/objects.h"
#include "util/cidr.h"
#include "util/log.h"

#define EM_GUARD_MAX_DENY 20

struct em_guard {
	struct em_cidr deny[EM_GUARD_MAX_DENY];	/* fake ranges, capture CIDRs */
	unsigned n_deny;
	uint64_t rejected_addrs;	/* backend addresses removed so far */
	bool allow_loopback;		/* unit tests without root only */
	struct em_ratelimit rl;
};

/* Adds a range never to dial ("198.18.0.0/16", "fd00::/64"); -EINVAL for
 * text that is not a prefix, -ENOSPC past EM_GUARD_MAX_DENY. */
int em_guard_deny(struct em_guard *g, const char *cidr);

/* NULL when ip may be dialed, else why not ("loopback", "link-local", ...). */
const char *em_guard_addr_why(const struct em_guard *g, const struct em_ip *ip);

/* RFC 1123 label (lower-case alphanumerics and '-', alphanumeric at both
 * ends, 1..63), RFC 1035 label (the same, starting with a letter) and RFC
 * 1123 subdomain (labels joined by '.', at most 253). */
bool em_name_is_dns1123_label(const char *s);
bool em_name_is_dns1035_label(const char *s);
bool em_name_is_dns1123_subdomain(const char *s);

/* 0 when every name of o is valid, else -EINVAL with *why set (static). */
int em_guard_check_names(const struct em_obj *o, const char **why);

/* Removes the backend addresses of o that may not be dialed, logging each
 * (rate-limited) with the object and source; returns how many. */
unsigned em_guard_filter_addrs(struct em_guard *g, struct em_obj *o, const char *source);

/* Copies s into buf (always terminated) with every byte outside printable
 * ASCII, and '\\', as \xNN: text from the network printed in a log line can
 * neither start a new line nor forge a priority. Returns buf. */
char *em_log_escape(char *buf, size_t len, const char *s);

#endif
