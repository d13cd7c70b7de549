/* sources.h — start and stop the configured sources ("file:PATH",
 * "kube:URL", "edgecore-db:PATH") towards the registry's sink. */
#ifndef EM_DAEMON_SOURCES_H
#define EM_DAEMON_SOURCES_H

#include "daemon/config.h"
#include "registry/registry.h"

struct em_sources;

/* Starts every source in cfg->sources, in order (the first listed wins when
 * two give the same object). Logs and returns -errno if one cannot start;
 * nothing is left running then. */
int em_sources_start(const struct em_config *cfg, struct em_registry *reg,
		     struct em_sources **out);
void em_sources_stop(struct em_sources *s);

#endif
