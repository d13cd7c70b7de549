/* fuzz-config.c — libFuzzer: bytes -> config file text -> every option's
 * value check (CIDRs, numbers with ranges, loopback addresses, domains,
 * sources) -> the cross checks. Seeds: tests/fuzz/corpus/config/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct em_config c;
	FILE *saved = stderr;
	char *text;

	/* The parser reports through stdio's stderr; thousands of lines a
	 * second would drown the fuzzer's output. Swap the FILE only:
	 * libFuzzer and the sanitizers write to fd 2 directly. */
	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	stderr = devnull;
	em_config_defaults(&c);
	if (em_config_parse_text(&c, text, "fuzz") == 0)
		(void)em_config_validate(&c);
	em_config_free(&c);
	stderr = saved;
	free(text);
	return 0;
}
