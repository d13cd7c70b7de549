/* manifest.h — Kubernetes manifests (JSON or YAML bytes) to a flat JSON
 * array of objects. Internal to the registry (file source, fuzz target).
 *
 * Accepted: one object, a list (kind "List", "ServiceList", "PodList", ...
 * with "items", as `kubectl get -o json|yaml` prints), several JSON values
 * one after the other, multi-document YAML. Items of a typed list without
 * "kind" get it from the list ("PodList" -> "Pod").
 *
 * YAML is converted node by node with YAML 1.1 plain-scalar typing for the
 * values Kubernetes uses: unquoted ints, floats, true/false/yes/no/on/off,
 * null/~/empty become JSON numbers, booleans and null; quoted scalars and
 * mapping keys always stay strings ("80" stays "80").
 *
 * Hostile input: nesting is limited to EM_MANIFEST_MAX_DEPTH, aliases are
 * refused (no alias bombs), input is limited to EM_MANIFEST_MAX_BYTES. */
#ifndef EM_REGISTRY_MANIFEST_H
#define EM_REGISTRY_MANIFEST_H

#include <jansson.h>
#include <stddef.h>

#define EM_MANIFEST_MAX_DEPTH 64
#define EM_MANIFEST_MAX_BYTES (128u << 20)

struct em_manifest_error {
	int line;			/* 1-based, 0 when unknown */
	int column;			/* 1-based, 0 when unknown */
	char reason[200];
};

/* On success returns 0 and *items is a new JSON array of objects (possibly
 * empty). On failure returns -EINVAL (or -ENOMEM, -EFBIG) with err filled in
 * and *items NULL. Never crashes on any input. */
int em_manifest_parse(const char *buf, size_t len, json_t **items,
		      struct em_manifest_error *err);

/* YAML only (exposed for tests): every document appended to docs (array). */
int em_manifest_yaml_to_json(const char *buf, size_t len, json_t *docs,
			     struct em_manifest_error *err);

#endif
