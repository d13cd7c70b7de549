/* privs.h — least privilege once set-up is over. */
#ifndef EM_DAEMON_PRIVS_H
#define EM_DAEMON_PRIVS_H

#include <stdint.h>

/* The capabilities the daemon keeps after set-up, as a capability mask.
 * Measured (netns-tests/security.sh and walkthrough.sh with builds keeping
 * less, -DEM_PRIVS_KEEP=...): only CAP_NET_ADMIN is needed once the
 * sockets are open --
 * - SO_MARK (the bypass mark) on every upstream socket,
 * - the nftables/rtnetlink batches that remove the ruleset at exit.
 * CAP_NET_RAW is needed only to open the DNS raw sockets and the
 * IP_TRANSPARENT listeners, both done during set-up; with CAP_NET_ADMIN
 * alone afterwards every scenario passes, so it goes. Everything else
 * (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_SETUID, ...) goes too; the state
 * directory and edgecore's database belong to root, which the daemon stays
 * (uid 0 without capabilities). */
#ifndef EM_PRIVS_KEEP	/* -DEM_PRIVS_KEEP=... only to measure what is needed */
#define EM_PRIVS_KEEP (UINT64_C(1) << 12)	/* CAP_NET_ADMIN */
/* The state directory must be a directory of this user, not a symlink,
 * with mode 0700 (a wider mode of our own directory is narrowed, with a
 * warning). Another owner is refused: its owner could choose the fake IPs.
 * 0 or -errno after logging. */
int em_state_dir_check(const char *dir);

#endif

/* Sets no_new_privs, drops every capability but EM_PRIVS_KEEP from the
 * bounding, ambient, inheritable, permitted and effective sets, and locks
 * the securebits so that no later execve() or setuid() brings them back.
 * Works the same started by systemd or as plain root (and as a
 * non-root user with fewer capabilities: what is not held is not kept).
 * Returns 0 or -errno after logging what failed. */
int em_privs_drop(void);

/* The state directory must be a directory of this user, not a symlink,
 * with mode 0700 (a wider mode of our own directory is narrowed, with a
 * warning). Another owner is refused: its owner could choose the fake IPs.
 * 0 or -errno after logging. */
int em_state_dir_check(const char *dir);

#endif
