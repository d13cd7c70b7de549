/* ports.c — the one place that decides how a service port is forwarded. */
#include "registry/ports.h"

#include <string.h>
#include <strings.h>

/* appProtocol wins when set: only "http" (any case) means HTTP/1.x, every
 * other value (h2c, kubernetes.io/ws, grpc...) is forwarded at L4 rather than
 * refused. Without appProtocol the EdgeMesh naming rule applies: "http" or
 * "http-<anything>". */
enum em_app_proto em_app_proto_for_port(const char *name, const char *app_protocol)
{
	if (app_protocol && app_protocol[0])
		return strcasecmp(app_protocol, "http") == 0 ? EM_APP_HTTP : EM_APP_L4;
	if (!name)
		return EM_APP_L4;
	if (strcasecmp(name, "http") == 0)
		return EM_APP_HTTP;
	if (strncasecmp(name, "http-", 5) == 0)
		return EM_APP_HTTP;
	return EM_APP_L4;
}
