/* flow.h — internal to src/udp: the UDP flow table. A flow is one client
 * address:port talking to one fake IP:port; it keeps the backend its first
 * datagram was given until it has been idle for the timeout. The table is
 * bounded: when full, the least recently active flow is evicted.
 *
 * Pure data structure (no sockets, no clock): the caller passes "now" in
 * milliseconds, so tests drive time. One thread owns a table. */
#ifndef EM_UDP_FLOW_H
#define EM_UDP_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The flow key: both addresses in one comparable block (zero padded). */
struct em_udp_key {
	uint8_t family;			/* AF_INET or AF_INET6 */
	uint8_t pad;
	uint16_t cport, dport;		/* network byte order */
	uint8_t caddr[16], daddr[16];
};

/* Fills *k from a client and an original destination of one family;
 * -EAFNOSUPPORT for anything but two AF_INET or two AF_INET6 addresses. */
int em_udp_key_from(struct em_udp_key *k, const struct sockaddr *client,
		    const struct sockaddr *dst);
/* The addresses back as sockaddrs (len set to the family's size). */
void em_udp_key_client(const struct em_udp_key *k, struct sockaddr_storage *ss, socklen_t *len);
void em_udp_key_dst(const struct em_udp_key *k, struct sockaddr_storage *ss, socklen_t *len);

/* Embedded in the caller's flow struct (container_of style). */
struct em_udp_flow_node {
	struct em_udp_key key;
	uint64_t last_ms;		/* last datagram either way */
	struct em_udp_flow_node *hnext;	/* hash chain */
	struct em_udp_flow_node *older, *newer;	/* activity order */
	bool linked;
};

struct em_udp_table {
	struct em_udp_flow_node **buckets;
	size_t mask;
	size_t n, max;
	struct em_udp_flow_node *oldest, *newest;
};

/* max flows (>= 1). -ENOMEM. */
int em_udp_table_init(struct em_udp_table *t, size_t max);
/* Frees the buckets only: the caller ends its flows first (em_udp_table_oldest
 * until NULL, removing each). */
void em_udp_table_fini(struct em_udp_table *t);

struct em_udp_flow_node *em_udp_table_find(struct em_udp_table *t, const struct em_udp_key *k);
/* Inserts n (key set by the caller, not present yet) as the newest flow at
 * now. When the table is full, the oldest flow is unlinked first and
 * returned for the caller to end; otherwise NULL. */
struct em_udp_flow_node *em_udp_table_insert(struct em_udp_table *t,
					     struct em_udp_flow_node *n, uint64_t now);
/* A datagram went through n at now: it becomes the newest. */
void em_udp_table_touch(struct em_udp_table *t, struct em_udp_flow_node *n, uint64_t now);
void em_udp_table_remove(struct em_udp_table *t, struct em_udp_flow_node *n);
/* The least recently active flow, or NULL when empty. */
struct em_udp_flow_node *em_udp_table_oldest(const struct em_udp_table *t);
/* The oldest flow if it has been idle for idle_ms at now (unlinked, for the
 * caller to end), else NULL. Call until NULL. */
struct em_udp_flow_node *em_udp_table_expire(struct em_udp_table *t, uint64_t now,
					     uint64_t idle_ms);
/* When the oldest flow expires (ms), or UINT64_MAX when empty. */
uint64_t em_udp_table_next_expiry(const struct em_udp_table *t, uint64_t idle_ms);

#endif
