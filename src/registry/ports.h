/* ports.h — port protocol decisions (internal to the registry, but the
 * forwarder may call em_app_proto_for_port too). */
#ifndef EM_REGISTRY_PORTS_H
#define EM_REGISTRY_PORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "registry/snapshot.h"

/* name: the service port's name (may be NULL or ""); app_protocol: its
 * appProtocol field or NULL. */
enum em_app_proto em_app_proto_for_port(const char *name, const char *app_protocol);

/* spec.externalName as the API server validates it: a DNS-1123 subdomain
 * (labels of [a-z0-9-], alphanumeric at both ends, at most 63 bytes; at
 * most 253 in all) once one trailing dot is trimmed. Upper case is folded
 * (DNS names compare case-insensitively) rather than refused. Returns a
 * malloc'd normalised copy, or NULL (errno EINVAL or ENOMEM). */
char *em_external_name_normalise(const char *name);

/* Whether a port of this protocol is forwarded (TCP, UDP). SCTP is not:
 * the first SCTP port met is logged once per process. */
bool em_port_forwarded(int ipproto, const char *svc, uint16_t port);

#endif
