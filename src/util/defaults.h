/* defaults.h — the marks and routing numbers several areas must agree on,
 * defined once. The daemon's option table shows them as strings
 * (EM_DEFAULT_STR); the modules use them as numbers in their *_defaults(). */
#ifndef EM_UTIL_DEFAULTS_H
#define EM_UTIL_DEFAULTS_H

/* The TPROXY listener port and IPv4 address: the proxy and UDP listen
 * there, the ruleset sends captured connections there. */
#define EM_TPROXY_PORT 15001
#define EM_TPROXY_IPV4 "127.0.0.1"
#define EM_TPROXY_IPV6 "::1"

/* The pool of fake IPv4 addresses DNS answers hand out, which the ruleset
 * captures and the guard never dials. */
#define EM_FAKE_IPV4_RANGE "198.18.0.0/16"

/* SO_MARK on every socket the daemon opens towards the network (proxy
 * upstreams, UDP flows, DNS answers sent through a raw socket). The ruleset
 * never captures packets carrying it, so the daemon's own traffic is not
 * looped back to itself. */
#define EM_BYPASS_MARK 0x1e3

/* Packet mark the ruleset sets on connections to capture; the policy rule
 * sends marked packets to EM_ROUTE_TABLE, whose local route delivers them
 * to the TPROXY listener. */
#define EM_CAPTURE_MARK 0x1e2
#define EM_ROUTE_TABLE 482		/* 0x1e2 */
#define EM_RULE_PRIORITY 482

/* "0x1e3" from EM_BYPASS_MARK, for the option table's default strings. */
#define EM_DEFAULT_STR_(x) #x
#define EM_DEFAULT_STR(x) EM_DEFAULT_STR_(x)

#endif
