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
 * A parse error is logged once per change as "file:line:column: reason".
 *
 * A file being written in place is not read until its writer closes it:
 * a file with a modification (IN_MODIFY: the O_TRUNC of `cmd > f`, every
 * write) and no close for writing (IN_CLOSE_WRITE) after it is held, and so
 * is a file found empty that had objects without a close seen (an empty
 * file is what a writer leaves between truncating and writing). A held file
 * keeps the objects last read from it; it is read ~100 ms after the close,
 * or as it is 5 s after the hold began if the writer never closes (a
 * partial file that does not parse then keeps the last good objects). A
 * file emptied and closed (`: > f`) or an empty file renamed in removes its
 * objects as usual; a rename over the file (IN_MOVED_TO), a deletion and a
 * new file are read after the debounce, a new file written slowly being
 * held like an old one. Any writer's close ends the hold, so with two
 * writers at once the first close lets the file be read. */
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
