/* ports.c — the one place that decides how a service port is forwarded. */
#include "registry/ports.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

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

char *em_external_name_normalise(const char *name)
{
	size_t n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253) {
		errno = EINVAL;
		return NULL;
	}
	size_t lbl = 0;
	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)name[i]);
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (c == '.') {
			/* a label never ends with '-' nor is empty */
			if (lbl == 0 || name[i - 1] == '-') {
				errno = EINVAL;
				return NULL;
			}
			lbl = 0;
			continue;
		}
		if (!alnum && (c != '-' || lbl == 0)) {
			errno = EINVAL;
			return NULL;
		}
		if (++lbl > 63) {
			errno = EINVAL;
			return NULL;
		}
	}
	if (lbl == 0 || name[n - 1] == '-') {	/* "a.b.." or "a.b-" */
		errno = EINVAL;
		return NULL;
	}
	char *out = strndup(name, n);
	if (!out)
		return NULL;
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

bool em_port_forwarded(int ipproto, const char *svc, uint16_t port)
{
	static atomic_bool sctp_logged;

	if (ipproto == IPPROTO_TCP || ipproto == IPPROTO_UDP)
		return true;
	if (!atomic_exchange(&sctp_logged, true))
		em_warn("service %s port %u/SCTP: SCTP is not forwarded (its name still resolves; "
			"logged once for all SCTP ports)", svc, port);
	return false;
}
