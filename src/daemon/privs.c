/* privs.c — after set-up keep only EM_PRIVS_KEEP, with no_new_privs; see
 * privs.h. capset(2) and prctl(2) directly: two syscalls do not need a
 * library. */
#include "daemon/privs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int n = -1;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n >= 0 && n < 64 ? n : CAP_LAST_CAP;
}

static int caps_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	return syscall(SYS_capget, &h, d) == -1 ? -errno : 0;
}

static int caps_set(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
	};

	return syscall(SYS_capset, &h, d) == -1 ? -errno : 0;
}

int em_privs_drop(void)
{
	struct __user_cap_data_struct d[2];
	uint64_t prm, keep;
	int ret, last = last_cap();
	unsigned dropped = 0;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		ret = -errno;
		em_err("privileges: cannot set no_new_privs: %s", strerror(errno));
		return ret;
	}
	if ((ret = caps_get(d)) < 0) {
		em_err("privileges: capget: %s", strerror(-ret));
		return ret;
	}
	prm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
	keep = prm & EM_PRIVS_KEEP;

	/* While CAP_SETPCAP is still held: uid 0 must never regain capabilities
	 * through execve(), and setuid() must not change them either. */
	if (prm & (UINT64_C(1) << CAP_SETPCAP) &&
	    prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
		  SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
		  SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
		  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) == -1)
		em_warn("privileges: cannot lock the securebits: %s", strerror(errno));
	for (int cap = 0; cap <= last; cap++) {
		if (EM_PRIVS_KEEP & (UINT64_C(1) << cap) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1) {
			/* Without CAP_SETPCAP (started unprivileged): the bounding
			 * set cannot shrink, but nothing can be gained through it
			 * either with no_new_privs set. */
			if (errno != EPERM && errno != EINVAL)
				em_warn("privileges: cannot drop capability %d from the bounding set: %s",
					cap, strerror(errno));
			continue;
		}
		dropped++;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 && errno != EINVAL)
		em_warn("privileges: cannot clear the ambient set: %s", strerror(errno));
	ret = caps_set(keep, keep, 0);
	/* A seccomp filter without capset (the shipped unit's): fine when the
	 * service manager gave exactly what is kept; inheritable capabilities
	 * left then are inert under no_new_privs without execve(). */
	if (ret == -EPERM && caps_get(d) == 0 &&
	    ((uint64_t)d[1].permitted << 32 | d[0].permitted) == keep &&
	    ((uint64_t)d[1].effective << 32 | d[0].effective) == keep)
		ret = 0;
	if (ret < 0) {
		em_err("privileges: capset to 0x%llx: %s", (unsigned long long)keep, strerror(-ret));
		return ret;
	}
	em_info("privileges: kept capabilities 0x%llx (CAP_NET_ADMIN is 0x1000), no_new_privs; "
		"%u dropped from the bounding set", (unsigned long long)keep, dropped);
	return 0;
}

int em_state_dir_check(const char *dir)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), ret;

	if (fd == -1 || fstat(fd, &st) == -1) {
		ret = -errno;
		em_err("state directory %s: %s%s", dir, strerror(errno),
		       errno == ELOOP || errno == ENOTDIR ? " (must be a directory, not a symlink)" : "");
		if (fd != -1)
			close(fd);
		return ret;
	}
	if (st.st_uid != geteuid()) {
		em_err("state directory %s belongs to uid %u, not to this process's uid %u: refused",
		       dir, (unsigned)st.st_uid, (unsigned)geteuid());
		close(fd);
		return -EPERM;
	}
	if ((st.st_mode & 07777) != 0700) {
		em_warn("state directory %s had mode %04o; set to 0700", dir,
			(unsigned)(st.st_mode & 07777));
		if (fchmod(fd, 0700) == -1) {
			ret = -errno;
			em_err("state directory %s: chmod 0700: %s", dir, strerror(errno));
			close(fd);
			return ret;
		}
	}
	close(fd);
	return 0;
}
