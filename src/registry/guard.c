/* guard.c — name and backend address validation; see guard.h. */
#include "registry/guard.h"
#include "registry/fakeip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------- */

static bool alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A label of s[0..n): [a-z0-9]([-a-z0-9]*[a-z0-9])?, 1..63 */
static bool label_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !alnum_lower(s[0]) || !alnum_lower(s[n - 1]))
		return false;
	for (size_t i = 1; i + 1 < n; i++)
		if (!alnum_lower(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool em_name_is_dns1123_label(const char *s)
{
	return s && label_ok(s, strlen(s));
}

bool em_name_is_dns1035_label(const char *s)
{
	return em_name_is_dns1123_label(s) && s[0] >= 'a' && s[0] <= 'z';
}

bool em_name_is_dns1123_subdomain(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 253)
		return false;
	for (const char *p = s;;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);

		if (!label_ok(p, len))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

static bool port_name_ok(const char *s)
{
	return !s || !s[0] || em_name_is_dns1123_label(s);
}

int em_guard_check_names(const struct em_obj *o, const char **why)
{
	*why = NULL;
	if (!em_name_is_dns1123_label(o->ns))
		*why = "metadata.namespace is not a valid RFC 1123 label";
	else if (o->kind == EM_OBJ_SERVICE ? !em_name_is_dns1035_label(o->name)
					   : !em_name_is_dns1123_subdomain(o->name))
		*why = o->kind == EM_OBJ_SERVICE ? "metadata.name is not a valid RFC 1035 label"
						 : "metadata.name is not a valid RFC 1123 subdomain";
	if (*why)
		return -EINVAL;
	switch (o->kind) {
	case EM_OBJ_SERVICE:
		for (size_t i = 0; i < o->u.svc.n_ports; i++)
			if (!port_name_ok(o->u.svc.ports[i].name) ||
			    !port_name_ok(o->u.svc.ports[i].target_name))
				*why = "a port name is not a valid RFC 1123 label";
		break;
	case EM_OBJ_POD:
		for (size_t i = 0; i < o->u.pod.n_ports; i++)
			if (!port_name_ok(o->u.pod.ports[i].name))
				*why = "a container port name is not a valid RFC 1123 label";
		break;
	case EM_OBJ_ENDPOINTS:
	case EM_OBJ_ENDPOINTSLICE:
		if (o->u.ep.service && !em_name_is_dns1035_label(o->u.ep.service))
			*why = "the service name is not a valid RFC 1035 label";
		for (size_t s = 0; s < o->u.ep.n_subsets; s++) {
			const struct em_ep_subset *ss = &o->u.ep.subsets[s];
			for (size_t i = 0; i < ss->n_ports; i++)
				if (!port_name_ok(ss->ports[i].name))
					*why = "a port name is not a valid RFC 1123 label";
			for (size_t i = 0; i < ss->n_addrs; i++) {
				const char *pod = ss->addrs[i].pod, *slash;
				char ns[64];

				if (!pod)
					continue;
				slash = strchr(pod, '/');
				if (!slash || (size_t)(slash - pod) >= sizeof(ns) ||
				    !em_name_is_dns1123_subdomain(slash + 1)) {
					*why = "a targetRef is not a valid namespace/name";
					continue;
				}
				memcpy(ns, pod, (size_t)(slash - pod));
				ns[slash - pod] = '\0';
				if (!em_name_is_dns1123_label(ns))
					*why = "a targetRef is not a valid namespace/name";
			}
		}
		break;
	case EM_OBJ_KIND_COUNT:
		break;
	}
	return *why ? -EINVAL : 0;
}

char *em_log_escape(char *buf, size_t len, const char *s)
{
	size_t o = 0;

	if (!len)
		return buf;
	for (; s && *s && o + 1 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			buf[o++] = (char)c;
		} else if (o + 4 < len) {
			snprintf(buf + o, len - o, "\\x%02x", c);
			o += 4;
		} else {
			break;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* ---- addresses --------------------------------------------------------- */

int em_guard_deny(struct em_guard *g, const char *cidr)
{
	struct em_cidr *p;

	if (g->n_deny >= EM_GUARD_MAX_DENY)
		return -ENOSPC;
	p = &g->deny[g->n_deny];
	if (em_cidr_parse(cidr, AF_UNSPEC, EM_CIDR_ZERO_LEN | EM_CIDR_HOST_BITS, p) < 0)
		return -EINVAL;
	g->n_deny++;
	return 0;
}

static bool in_prefix(const uint8_t *a, const uint8_t *net, unsigned plen)
{
	unsigned bytes = plen / 8, bits = plen % 8;

	if (memcmp(a, net, bytes) != 0)
		return false;
	if (!bits)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (a[bytes] & mask) == (net[bytes] & mask);
}

static const char *v4_why(const uint8_t *a)
{
	if (a[0] == 0)
		return "unspecified (0.0.0.0/8)";
	if (a[0] == 127)
		return "loopback";
	if (a[0] == 169 && a[1] == 254)
		return "link-local (169.254.0.0/16, cloud metadata)";
	if (a[0] >= 224 && a[0] < 240)
		return "multicast";
	if (a[0] >= 240)
		return "broadcast or reserved (240.0.0.0/4)";
	return NULL;
}

const char *em_guard_addr_why(const struct em_guard *g, const struct em_ip *ip)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t zero[16];
	const uint8_t *a;
	uint8_t v4[4];
	const char *why;
	int family = ip->family;

	if (family == AF_INET) {
		a = (const uint8_t *)&ip->a.v4;
	} else if (family == AF_INET6) {
		a = ip->a.v6.s6_addr;
		if (memcmp(a, mapped, 12) == 0) {
			memcpy(v4, a + 12, 4);
			a = v4;
			family = AF_INET;
		}
	} else {
		return "not an IP address";
	}
	if (family == AF_INET && (why = v4_why(a)) && !(g->allow_loopback && a[0] == 127))
		return why;
	if (family == AF_INET6) {
		if (memcmp(a, zero, 16) == 0)
			return "unspecified (::)";
		if (memcmp(a, zero, 15) == 0 && a[15] == 1)
			return "loopback";
		if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
			return "link-local (fe80::/10)";
		if (a[0] == 0xff)
			return "multicast";
	}
	for (unsigned i = 0; i < g->n_deny; i++)
		if (g->deny[i].family == family && in_prefix(a, g->deny[i].addr, g->deny[i].plen))
			return "inside a fake range or capture CIDR";
	return NULL;
}

static bool drop_addr(struct em_guard *g, const struct em_obj *o, const char *source,
		      const struct em_ip *ip)
{
	const char *why = em_guard_addr_why(g, ip);
	char txt[INET6_ADDRSTRLEN];

	if (!why)
		return false;
	g->rejected_addrs++;
	inet_ntop(ip->family, &ip->a, txt, sizeof(txt));
	/* names were validated before: printable */
	em_log_rl(&g->rl, EM_LOG_WARN, "source %s: %s %s: backend address %s refused: %s",
		  source, em_obj_kind_name(o->kind), o->nsname, txt, why);
	return true;
}

unsigned em_guard_filter_addrs(struct em_guard *g, struct em_obj *o, const char *source)
{
	unsigned n = 0;

	if (o->kind == EM_OBJ_POD) {
		struct em_obj_pod *p = &o->u.pod;

		if (p->has_pod_ip && !p->host_network && drop_addr(g, o, source, &p->pod_ip)) {
			p->has_pod_ip = false;
			n++;
		}
		if (p->has_host_ip && drop_addr(g, o, source, &p->host_ip)) {
			p->has_host_ip = false;
			n++;
		}
		return n;
	}
	if (o->kind != EM_OBJ_ENDPOINTS && o->kind != EM_OBJ_ENDPOINTSLICE)
		return 0;
	for (size_t s = 0; s < o->u.ep.n_subsets; s++) {
		struct em_ep_subset *ss = &o->u.ep.subsets[s];
		size_t keep = 0;

		for (size_t i = 0; i < ss->n_addrs; i++) {
			if (drop_addr(g, o, source, &ss->addrs[i].ip)) {
				free(ss->addrs[i].pod);
				n++;
				continue;
			}
			ss->addrs[keep++] = ss->addrs[i];
		}
		ss->n_addrs = keep;
	}
	return n;
}
