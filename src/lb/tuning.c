/* tuning.c — the "key=value,key=value" argument text of a strategy
 * annotation ("least-request:fails=5,eject=30s"): the health and core
 * settings every strategy shares are read here; the strategy reads its own
 * keys (header=, cookie=) with em_lb_args_get. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lb/peers.h"

/* Next "key=value" token of args at *pos: key and value as pointer and
 * length. False at the end. */
static bool next_token(const char *args, size_t *pos, const char **key, size_t *klen,
		       const char **val, size_t *vlen)
{
	size_t i = *pos, start, eq;

	while (args[i] == ',' || args[i] == ';' || args[i] == ' ')
		i++;
	if (!args[i])
		return false;
	start = i;
	while (args[i] && args[i] != ',' && args[i] != ';')
		i++;
	*pos = i;
	for (eq = start; eq < i && args[eq] != '='; eq++)
		;
	*key = args + start;
	*klen = eq - start;
	*val = eq < i ? args + eq + 1 : args + i;
	*vlen = eq < i ? i - eq - 1 : 0;
	return true;
}

bool em_lb_args_get(const char *args, const char *key, char *buf, size_t len)
{
	const char *k, *v;
	size_t pos = 0, kl, vl;

	if (!args || !len)
		return false;
	while (next_token(args, &pos, &k, &kl, &v, &vl)) {
		if (kl != strlen(key) || strncasecmp(k, key, kl) != 0)
			continue;
		if (vl >= len)
			vl = len - 1;
		memcpy(buf, v, vl);
		buf[vl] = '\0';
		return true;
	}
	return false;
}

/* A duration in ms: "250", "250ms", "30s", "5m". */
static int parse_ms(const char *s, uint32_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		;
	else if (strcmp(end, "s") == 0)
		v *= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60000;
	else
		return -EINVAL;
	if (v > 86400000.0)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

static int parse_uint(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* A load factor "1.25" -> 125 (%); must be 0 (unbounded) or > 1. */
static int parse_factor(const char *s, uint32_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v == 0 || (v > 1.0 && v <= 100.0)))
		return -EINVAL;
	*out = (uint32_t)(v * 100 + 0.5);
	return 0;
}

int em_lb_tuning_parse(struct em_lb_tuning *t, const char *args)
{
	struct em_lb_tuning n = *t;
	int bad = 0;
	char v[64];

	if (!args)
		return 0;
	if (em_lb_args_get(args, "fails", v, sizeof(v)))
		bad += parse_uint(v, 1000, &n.max_fails) < 0;
	if (em_lb_args_get(args, "fails-5xx", v, sizeof(v)))
		bad += parse_uint(v, 1000, &n.max_5xx) < 0;
	if (em_lb_args_get(args, "eject", v, sizeof(v)))
		bad += parse_ms(v, &n.eject_base_ms) < 0;
	if (em_lb_args_get(args, "eject-max", v, sizeof(v)))
		bad += parse_ms(v, &n.eject_max_ms) < 0;
	if (em_lb_args_get(args, "max-eject", v, sizeof(v)))
		bad += parse_uint(v, 100, &n.max_eject_pct) < 0;
	if (em_lb_args_get(args, "panic", v, sizeof(v)))
		bad += parse_uint(v, 100, &n.panic_pct) < 0;
	if (em_lb_args_get(args, "load", v, sizeof(v)))
		bad += parse_factor(v, &n.hash_load_pct) < 0;
	if (em_lb_args_get(args, "decay", v, sizeof(v)))
		bad += parse_ms(v, &n.ewma_decay_ms) < 0;
	if (em_lb_args_get(args, "rtt", v, sizeof(v))) {
		uint32_t ms;
		if (parse_ms(v, &ms) < 0)
			bad++;
		else
			n.ewma_default_us = ms * 1000;
	}
	if (n.eject_max_ms < n.eject_base_ms)
		n.eject_max_ms = n.eject_base_ms;
	*t = n;
	return bad;
}
