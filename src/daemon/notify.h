/* notify.h — the service manager protocol (sd_notify): READY, STATUS,
 * RELOADING, STOPPING and watchdog pings. Without libsystemd at build time
 * or outside systemd ($NOTIFY_SOCKET unset) every call is a no-op. */
#ifndef EM_DAEMON_NOTIFY_H
#define EM_DAEMON_NOTIFY_H

#include <stdint.h>

/* "READY=1\nSTATUS=..." style text; returns what sd_notify returns
 * (> 0 sent, 0 no manager, -errno). */
int em_notify(const char *text);
int em_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Watchdog period in microseconds ($WATCHDOG_USEC for this process), or 0
 * when the watchdog is off. */
uint64_t em_notify_watchdog_usec(void);

#endif
