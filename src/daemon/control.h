/* control.h — the root-only unix socket that `edgemesh-tproxy status`
 * asks: one request line ("status"), one JSON answer, close. */
#ifndef EM_DAEMON_CONTROL_H
#define EM_DAEMON_CONTROL_H

#include <jansson.h>
#include <stdbool.h>

#include "daemon/metrics.h"

/* Creates the socket's directory (0700) when missing (*made_dir), removes
 * a stale socket (one nobody answers on), binds and listens with mode 0600.
 * Returns the fd, -EADDRINUSE when a live daemon answers there, or -errno. */
int em_control_listen(const char *path, bool *made_dir);
/* Closes fd, removes the socket file, and the directory if listen made it. */
void em_control_close(int fd, const char *path, bool made_dir);

/* The status document: services (fake IPs, ports, protocol, strategy,
 * backends with health) and sources. Same RCU rule as em_metrics_write. */
json_t *em_control_status_json(const struct em_metrics_input *in, const char *default_strategy);
/* Accept one client on lfd and answer it (1 s timeouts). */
void em_control_serve(int lfd, const struct em_metrics_input *in, const char *default_strategy);

/* The `status` subcommand: argv[0] = "status", then --json and
 * --control-socket=PATH. Returns the exit status (0, 1 unreachable, 2 usage). */
int em_control_status_main(int argc, char **argv);

#endif
