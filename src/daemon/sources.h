/* sources.h — start and stop the configured sources ("file:PATH",
 * "kube:URL", "edgecore-db:PATH") towards the registry's sink, and keep
 * the state of each (for metrics and status). */
#ifndef EM_DAEMON_SOURCES_H
#define EM_DAEMON_SOURCES_H

#include <stdint.h>

#include "daemon/config.h"
#include "registry/registry.h"

struct em_sources;

/* Starts every source in cfg->sources, in order (the first listed wins when
 * two give the same object). Logs and returns -errno if one cannot start;
 * nothing is left running then. */
int em_sources_start(const struct em_config *cfg, struct em_registry *reg,
		     struct em_sources **out);
void em_sources_stop(struct em_sources *s);

/* What one running source has done. Times are CLOCK_REALTIME seconds,
 * 0 = never. */
struct em_source_state {
	char spec[256];			/* as configured, "kube:http://..." */
	const char *type;		/* "file", "kube", "edgecore-db" */
	uint64_t syncs;			/* full loads: file reads, LISTs */
	uint64_t relists;		/* kube: relists after 410 Gone */
	uint64_t updates;		/* single-object changes (watch events, ...) */
	uint64_t commits;		/* snapshots asked for */
	uint64_t errors;		/* objects refused, failed requests */
	int64_t last_sync;
	int64_t last_commit;
	int connected;			/* 1 yes, 0 no, -1 unknown for this type */
};

/* After a reload dropped `spec` from the configuration: removes the
 * objects it contributed (for a directory, those of each manifest file in
 * it) and commits. */
void em_sources_forget(struct em_registry *reg, const char *spec);

unsigned em_sources_count(const struct em_sources *s);
/* i < em_sources_count(); any thread. */
void em_sources_state(const struct em_sources *s, unsigned i, struct em_source_state *out);

/* --check-config: reads every file source's manifests (a parse error is
 * printed as file:line:column: reason), checks that the kube token and CA
 * files and the edgecore database can be read. Prints one line per source
 * to `out`, problems to stderr; returns 0 or -EINVAL. Starts nothing. */
int em_sources_check(const struct em_config *cfg, FILE *out);

#endif
