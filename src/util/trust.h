/* trust.h — may a file be loaded as code into a root daemon? */
#ifndef EM_UTIL_TRUST_H
#define EM_UTIL_TRUST_H

#include <limits.h>
#include <stddef.h>

/* 0 when `path` is absolute, resolves (symlinks followed) to a regular
 * file, and both the file and the directory holding it are owned by root
 * (or by this process's effective user, which gains nothing by loading its
 * own file) and writable by neither group nor others. The resolved path,
 * the one to load, goes to resolved (PATH_MAX bytes). Otherwise -EINVAL
 * (not absolute), -ENOENT / -errno (does not resolve), -EPERM (owner or
 * mode), with *why a static reason. */
int em_trust_code_path(const char *path, char resolved[PATH_MAX], const char **why);

#endif
