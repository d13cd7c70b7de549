/* source_file.h — Kubernetes manifests from a file or a directory.
 *
 * The path is a single manifest file or a directory whose *.json, *.yaml
 * and *.yml files (not recursive, hidden files skipped) are read. Each file
 * is its own source "file:<path of the file>" towards the sink, so a broken
 * file keeps its last good objects while the others change; precedence
 * between files holding the same object follows the registry rule (the file
 * seen first, in name order at start, wins).
 *
 * The first read is synchronous: when start returns 0 everything readable
 * has been handed to the sink and committed. Then a thread watches with
 * inotify (the directory, or the file's directory, so that editors that
 * write a temporary file and rename it over the original are seen) and,
 * ~100 ms after the last change, re-reads what changed, replaces, commits.
 * A parse error is logged once per change as "file:line:column: reason". */
#ifndef EM_REGISTRY_SOURCE_FILE_H
#define EM_REGISTRY_SOURCE_FILE_H

#include "registry/source.h"

struct em_source_file;

/* 0 or -errno (-ENOENT: no such path; -EINVAL: not a file or directory). */
int em_source_file_start(const char *path, struct em_source_sink sink,
			 struct em_source_file **out);
/* Stops the watcher thread and frees. NULL is a no-op. The objects stay in
 * the registry. */
void em_source_file_stop(struct em_source_file *sf);

/* Reads and parses one manifest file into a JSON array of objects (also
 * used by tests and tools). On a parse error, logs nothing and fills err. */
struct em_manifest_error;
int em_source_file_load(const char *file, json_t **items, struct em_manifest_error *err);

#endif
