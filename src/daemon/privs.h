/* privs.h — least privilege once set-up is over. */
#ifndef EM_DAEMON_PRIVS_H
#define EM_DAEMON_PRIVS_H

#include <stdint.h>

/* The capabilities the daemon keeps after set-up, as a capability mask,
 * and why (measured, see the README's threat model):
 * - CAP_NET_ADMIN: SO_MARK (bypass mark) on every upstream socket, the
 *   nftables/rtnetlink batches that reinstall the ruleset while running
 *   and remove it at exit;
 * - CAP_NET_RAW: SO_MARK is also allowed by it (Linux >= 5.17), and raw
 *   sockets reopened for DNS answers.
 * Everything else (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SETUID, ...) goes;
 * the state directory and edgecore's database are owned by root, which the
 * daemon stays (uid 0 without capabilities). */
#ifndef EM_PRIVS_KEEP	/* -DEM_PRIVS_KEEP=... only to measure what is needed */
#define EM_PRIVS_KEEP ((UINT64_C(1) << 12) | (UINT64_C(1) << 13))
#endif

/* Sets no_new_privs, drops every capability but EM_PRIVS_KEEP from the
 * bounding, ambient, inheritable, permitted and effective sets, and locks
 * the securebits so that no later execve() or setuid() brings them back.
 * Works the same started by systemd or as plain root (and as a
 * non-root user with fewer capabilities: what is not held is not kept).
 * Returns 0 or -errno after logging what failed. */
int em_privs_drop(void);

#endif
