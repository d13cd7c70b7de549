/* notify.c — sd_notify wrappers. */
#include "daemon/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

int em_notify(const char *text)
{
#ifdef HAVE_LIBSYSTEMD
	return sd_notify(0, text);
#else
	(void)text;
	return 0;
#endif
}

int em_notifyf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return em_notify(buf);
}

uint64_t em_notify_watchdog_usec(void)
{
#ifdef HAVE_LIBSYSTEMD
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
#else
	return 0;
#endif
}
