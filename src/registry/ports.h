/* ports.h — port protocol decisions (internal to the registry, but the
 * forwarder may call em_app_proto_for_port too). */
#ifndef EM_REGISTRY_PORTS_H
#define EM_REGISTRY_PORTS_H

#include "registry/snapshot.h"

/* name: the service port's name (may be NULL or ""); app_protocol: its
 * appProtocol field or NULL. */
enum em_app_proto em_app_proto_for_port(const char *name, const char *app_protocol);

#endif
