/* log.h — leveled logging to stderr (journald reads the <N> prefix). */
#ifndef EM_UTIL_LOG_H
#define EM_UTIL_LOG_H

#include <stdint.h>

enum em_log_level {
	EM_LOG_ERR = 3,
	EM_LOG_WARN = 4,
	EM_LOG_INFO = 6,
	EM_LOG_DEBUG = 7,
};

/* Messages above this level are dropped. Default EM_LOG_INFO. */
void em_log_set_level(enum em_log_level level);
enum em_log_level em_log_get_level(void);
/* "error", "warn", "info", "debug" -> level; -EINVAL otherwise. */
int em_log_parse_level(const char *name);

/* Count of messages logged at EM_LOG_ERR since start or the last reset;
 * unit tests assert it stays 0 where no error is expected. */
uint64_t em_log_error_count(void);
void em_log_reset(void);

/* A test hook: when set, it sees every message (any level, even those
 * below the threshold) as formatted, before the level filter, on the
 * logging thread. For the unit-test fixture (tests/unit/testlog.c); the
 * daemon never sets it. NULL removes it; em_log_reset() leaves it alone so
 * that a test resetting the level cannot switch its fixture off. */
typedef void (*em_log_hook_fn)(enum em_log_level level, const char *msg);
void em_log_set_hook(em_log_hook_fn hook);

void em_log(enum em_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Rate limiting for messages caused by network input: at most `burst`
 * messages per `interval_s`; the suppressed count is reported with the next
 * message that passes. One struct per call site, zero-initialised. */
struct em_ratelimit {
	uint64_t window_start_ns;
	uint32_t in_window;
	uint32_t suppressed;
};

void em_log_rl(struct em_ratelimit *rl, enum em_log_level level,
	       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define em_err(...) em_log(EM_LOG_ERR, __VA_ARGS__)
#define em_warn(...) em_log(EM_LOG_WARN, __VA_ARGS__)
#define em_info(...) em_log(EM_LOG_INFO, __VA_ARGS__)
#define em_debug(...) em_log(EM_LOG_DEBUG, __VA_ARGS__)

#endif
