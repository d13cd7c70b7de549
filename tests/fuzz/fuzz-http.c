/* fuzz-http.c — libFuzzer target for the HTTP/1.x framing core. */
#include <stdint.h>
#include <stdlib.h>

#include "proxy/http_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct em_http_limits lim;
	static struct em_http_head h;

	em_http_limits_default(&lim);
	int r = em_http_parse_request((const char *)data, size, &lim, &h);
	if (r > 0 && (size_t)r > size)
		abort();
	return 0;
}
