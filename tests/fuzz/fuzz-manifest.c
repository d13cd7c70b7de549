/* fuzz-manifest.c — libFuzzer: bytes -> JSON/YAML manifest -> normalised
 * objects -> a snapshot. Seeds: tests/fuzz/corpus/manifest/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "registry/manifest.h"
#include "registry/objects.h"
#include "registry/registry.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct em_registry *reg;
	json_t *items;
	struct em_manifest_error err;

	if (!reg) {
		struct em_registry_config c = { .fake_ipv4_range = "10.0.0.0/28" };
		em_log_set_level(EM_LOG_ERR - 1);	/* quiet */
		reg = em_registry_new(&c);
		if (!reg)
			abort();
	}
	if (em_manifest_parse((const char *)data, size, &items, &err) < 0)
		return 0;
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		struct em_obj *o;
		if (em_obj_from_json(it, &o, NULL) == 0)
			em_obj_free(o);
	}
	/* Through the whole registry: resolution and the snapshot indices. */
	struct em_source_sink sink = em_registry_sink(reg);
	sink.replace(sink.ctx, "fuzz", NULL, items);
	sink.commit(sink.ctx, "fuzz");
	json_decref(items);
	return 0;
}
