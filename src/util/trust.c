/* trust.c — em_trust_code_path: the checks before dlopen(); see trust.h. */
#include "util/trust.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int owner_ok(const struct stat *st)
{
	return st->st_uid == 0 || st->st_uid == geteuid();
}

int em_trust_code_path(const char *path, char resolved[PATH_MAX], const char **why)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	*why = NULL;
	if (!path || path[0] != '/') {
		*why = "not an absolute path";
		return -EINVAL;
	}
	if (!realpath(path, resolved)) {
		*why = "cannot be resolved";
		return errno ? -errno : -ENOENT;
	}
	if (stat(resolved, &st) == -1) {
		*why = "cannot be read";
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		return -EPERM;
	}
	if (!owner_ok(&st) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		*why = "the file is not owned by root or is group- or world-writable";
		return -EPERM;
	}
	memcpy(dir, resolved, strlen(resolved) + 1);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';	/* "/x.so": the directory is "/" */
	else
		*slash = '\0';
	if (stat(dir, &st) == -1) {
		*why = "its directory cannot be read";
		return -errno;
	}
	if (!owner_ok(&st) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		*why = "its directory is not owned by root or is group- or world-writable";
		return -EPERM;
	}
	return 0;
}
