/* fuzz-watch.c — libFuzzer target for the watch stream parser. The input is
 * fed in chunks whose sizes come from the input's first bytes, so chunk
 * boundaries are fuzzed along with the content. Seeds: tests/fuzz/corpus/watch/. */
#include <stddef.h>
#include <stdint.h>

#include "sources/watch_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_event(void *ctx, const struct em_watch_event *ev)
{
	size_t *n = ctx;

	/* Touch what a consumer touches. */
	json_t *meta = json_object_get(ev->object, "metadata");
	(void)json_string_value(json_object_get(meta, "resourceVersion"));
	(void)em_watch_type_name(ev->type);
	(*n)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t events = 0;
	struct em_watch_stream *ws = em_watch_stream_new(4096, on_event, &events);
	uint8_t step;
	size_t off = 0;

	if (!ws || size < 1) {
		em_watch_stream_free(ws);
		return 0;
	}
	step = data[0];
	data++;
	size--;
	while (off < size) {
		size_t n = (size_t)(step % 64) + 1;
		if (n > size - off)
			n = size - off;
		if (em_watch_stream_feed(ws, data + off, n) < 0)
			em_watch_stream_reset(ws);
		off += n;
		step = (uint8_t)(step * 31 + 7);
	}
	em_watch_stream_free(ws);
	return 0;
}
