/* log.c — leveled logging to stderr with per-call-site rate limiting. */
#include "util/log.h"
#include "util/clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RL_INTERVAL_NS (5ULL * 1000000000ULL)
#define RL_BURST 10

static _Atomic int log_level = EM_LOG_INFO;
static _Atomic uint64_t error_count;
static _Atomic em_log_hook_fn log_hook;

void em_log_set_level(enum em_log_level level) { log_level = level; }
enum em_log_level em_log_get_level(void) { return log_level; }
uint64_t em_log_error_count(void) { return error_count; }
void em_log_set_hook(em_log_hook_fn hook) { log_hook = hook; }

void em_log_reset(void)
{
	log_level = EM_LOG_INFO;
	error_count = 0;
}

int em_log_parse_level(const char *name)
{
	static const struct { const char *name; enum em_log_level level; } names[] = {
		{ "error", EM_LOG_ERR }, { "warn", EM_LOG_WARN },
		{ "warning", EM_LOG_WARN }, { "info", EM_LOG_INFO },
		{ "debug", EM_LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i].name) == 0)
			return names[i].level;
	return -EINVAL;
}

__attribute__((format(printf, 2, 0)))
static void vlog(enum em_log_level level, const char *fmt, va_list ap)
{
	char buf[1024];
	em_log_hook_fn hook = log_hook;
	int shown = (int)level <= log_level;

	if (level == EM_LOG_ERR)
		error_count++;
	if (!shown && !hook)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (hook)
		hook(level, buf);
	/* One write per line so threads do not interleave mid-line. */
	if (shown)
		fprintf(stderr, "<%d>%s\n", (int)level, buf);
}

void em_log(enum em_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

/* Not thread-safe per struct: each call site's struct is owned by one thread. */
void em_log_rl(struct em_ratelimit *rl, enum em_log_level level,
	       const char *fmt, ...)
{
	uint64_t now = em_clock_ns();
	va_list ap;

	if (now - rl->window_start_ns > RL_INTERVAL_NS) {
		if (rl->suppressed)
			em_log(level, "(%u similar messages suppressed)", rl->suppressed);
		rl->window_start_ns = now;
		rl->in_window = 0;
		rl->suppressed = 0;
	}
	if (rl->in_window >= RL_BURST) {
		rl->suppressed++;
		return;
	}
	rl->in_window++;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}
