/* manifest.c — JSON/YAML manifests to a flat array of Kubernetes objects. */
#include "registry/manifest.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* reason is the message, arg an optional quoted detail appended to it. */
static void set_err(struct em_manifest_error *err, int line, int col,
		    const char *reason, const char *arg)
{
	err->line = line;
	err->column = col;
	snprintf(err->reason, sizeof(err->reason), "%s%s", reason, arg ? arg : "");
}

/* ---- YAML 1.1 plain scalar typing ---------------------------------- */

static bool is_null_word(const char *s, size_t n)
{
	return n == 0 || (n == 1 && s[0] == '~') ||
	       (n == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")));
}

static int bool_word(const char *s)
{
	/* YAML 1.1 without the one-letter y/n forms: they surprise more than
	 * they help ("namespace: n"), and go-yaml v3 dropped them too. */
	static const char *const t[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
					 "on", "On", "ON", NULL };
	static const char *const f[] = { "false", "False", "FALSE", "no", "No", "NO",
					 "off", "Off", "OFF", NULL };
	for (int i = 0; t[i]; i++)
		if (!strcmp(s, t[i]))
			return 1;
	for (int i = 0; f[i]; i++)
		if (!strcmp(s, f[i]))
			return 0;
	return -1;
}

/* Decimal (with optional sign, no leading zeros except "0") or 0x hex;
 * octal forms are left as strings since no field we read uses them. */
static bool parse_int(const char *s, json_int_t *out)
{
	const char *p = s;
	int base = 10;
	if (*p == '+' || *p == '-')
		p++;
	if (!*p)
		return false;
	if (p[0] == '0' && p[1] == 'x') {
		base = 16;
		p += 2;
		if (!*p)
			return false;
		for (const char *q = p; *q; q++)
			if (!isxdigit((unsigned char)*q))
				return false;
	} else {
		if (p[0] == '0' && p[1])
			return false;
		for (const char *q = p; *q; q++)
			if (!isdigit((unsigned char)*q))
				return false;
	}
	errno = 0;
	long long v = strtoll(base == 16 ? p : s, NULL, base);
	if (errno == ERANGE)
		return false;
	if (base == 16 && s[0] == '-')
		v = -v;
	*out = (json_int_t)v;
	return true;
}

static bool parse_float(const char *s, double *out)
{
	const char *p = s;
	bool digits = false, dot = false;
	if (*p == '+' || *p == '-')
		p++;
	for (; *p && *p != 'e' && *p != 'E'; p++) {
		if (isdigit((unsigned char)*p))
			digits = true;
		else if (*p == '.' && !dot)
			dot = true;
		else
			return false;
	}
	if (!digits || !dot)
		return false;
	char *end;
	*out = strtod(s, &end);
	return *end == '\0';
}

static json_t *scalar_to_json(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;

	/* Explicit !!str, quoted and block scalars are strings. */
	if ((tag && strcmp(tag, YAML_STR_TAG) == 0) ||
	    ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || strlen(s) != n)
		return json_stringn(s, n);
	if (is_null_word(s, n))
		return json_null();
	int b = bool_word(s);
	if (b >= 0)
		return json_boolean(b);
	json_int_t i;
	if (parse_int(s, &i))
		return json_integer(i);
	double d;
	if (parse_float(s, &d))
		return json_real(d);
	return json_stringn(s, n);
}

/* ---- YAML event stream to JSON, with an explicit stack -------------- */

struct frame {
	json_t *node;			/* object or array */
	json_t *key;			/* pending mapping key (string), or NULL */
};

static int add_child(struct frame *top, json_t *v, json_t *docs,
		     const yaml_event_t *ev, struct em_manifest_error *err)
{
	int r;
	if (!top) {
		/* Empty documents (only "---") come out as null; skip them. */
		r = json_is_null(v) ? 0 : json_array_append_new(docs, v);
		if (json_is_null(v))
			json_decref(v);
		return r;
	}
	if (json_is_array(top->node))
		return json_array_append_new(top->node, v);
	if (!top->key) {
		/* v is a key: keys are strings whatever they look like. */
		if (!json_is_string(v)) {
			json_decref(v);
			set_err(err, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
				"mapping key is not a scalar", NULL);
			return -1;
		}
		top->key = v;
		return 0;
	}
	r = json_object_set_new(top->node, json_string_value(top->key), v);
	json_decref(top->key);
	top->key = NULL;
	return r;
}

/* The YAML stream being turned into JSON documents: the open containers
 * (an explicit stack, so hostile nesting cannot overflow the C stack). */
struct builder {
	struct frame stack[EM_MANIFEST_MAX_DEPTH];
	int depth;
	json_t *docs;
	struct em_manifest_error *err;
};

static struct frame *builder_top(struct builder *b)
{
	return b->depth ? &b->stack[b->depth - 1] : NULL;
}

static void set_err_at(struct em_manifest_error *err, const yaml_event_t *ev,
		       const char *reason, const char *detail)
{
	set_err(err, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, reason, detail);
}

/* libyaml's own words for a syntax error, with its context. */
static void syntax_error(const yaml_parser_t *parser, struct em_manifest_error *err)
{
	set_err(err, (int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1,
		parser->problem ? parser->problem : "YAML syntax error", NULL);
	if (parser->context) {
		size_t l = strlen(err->reason);
		snprintf(err->reason + l, sizeof(err->reason) - l, " %s", parser->context);
	}
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
	struct frame *top = builder_top(b);
	json_t *v;

	/* Mapping keys stay strings whatever they look like. */
	if (top && json_is_object(top->node) && !top->key)
		v = json_stringn((const char *)ev->data.scalar.value, ev->data.scalar.length);
	else
		v = scalar_to_json(ev);
	if (!v || add_child(top, v, b->docs, ev, b->err) == -1) {
		if (!b->err->reason[0])
			set_err_at(b->err, ev, "out of memory", NULL);
		return -1;
	}
	return 0;
}

static int on_container_start(struct builder *b, const yaml_event_t *ev)
{
	struct frame *top = builder_top(b);
	json_t *v;

	if (b->depth == EM_MANIFEST_MAX_DEPTH) {
		set_err_at(b->err, ev, "nesting deeper than the limit", NULL);
		return -1;
	}
	if (top && json_is_object(top->node) && !top->key) {
		set_err_at(b->err, ev, "mapping key is not a scalar", NULL);
		return -1;
	}
	v = ev->type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
	if (!v)
		return -1;
	b->stack[b->depth].node = v;
	b->stack[b->depth].key = NULL;
	b->depth++;
	return 0;
}

/* The closed container goes to its parent (or to docs); add_child owns it. */
static int on_container_end(struct builder *b, const yaml_event_t *ev)
{
	b->depth--;
	return add_child(builder_top(b), b->stack[b->depth].node, b->docs, ev, b->err) == -1 ?
	       -1 : 0;
}

/* One event: 0 carry on, 1 end of the stream, -1 error (err set, except
 * for some allocation failures, as before). */
static int builder_event(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_STREAM_END_EVENT:
		return 1;
	case YAML_ALIAS_EVENT:
		set_err_at(b->err, ev, "YAML aliases are not supported: *",
			   (const char *)ev->data.alias.anchor);
		return -1;
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		return on_container_start(b, ev);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return on_container_end(b, ev);
	default:
		return 0;
	}
}

static void builder_free(struct builder *b)
{
	while (b->depth > 0) {
		b->depth--;
		json_decref(b->stack[b->depth].key);
		json_decref(b->stack[b->depth].node);
	}
}

int em_manifest_yaml_to_json(const char *buf, size_t len, json_t *docs,
			     struct em_manifest_error *err)
{
	struct builder b = { .depth = 0, .docs = docs, .err = err };
	yaml_parser_t parser;
	yaml_event_t ev;
	int r = 0;

	memset(err, 0, sizeof(*err));
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (r == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			syntax_error(&parser, err);
			r = -1;
			break;
		}
		r = builder_event(&b, &ev);
		yaml_event_delete(&ev);
	}
	builder_free(&b);
	yaml_parser_delete(&parser);
	return r < 0 ? -EINVAL : 0;
}

/* ---- flattening ------------------------------------------------------ */

static bool ends_with_list(const char *kind)
{
	size_t n = strlen(kind);
	return n >= 4 && strcmp(kind + n - 4, "List") == 0;
}

/* Appends the objects in v to items: lists are opened one level deep. */
static int flatten(json_t *v, json_t *items, struct em_manifest_error *err)
{
	if (json_is_array(v)) {
		/* A bare JSON array of objects (e.g. edgecore's podlist). */
		size_t i;
		json_t *it;
		json_array_foreach(v, i, it)
			if (json_is_object(it) && json_array_append(items, it) == -1)
				return -ENOMEM;
		return 0;
	}
	if (!json_is_object(v)) {
		set_err(err, 0, 0, "document is not an object", NULL);
		return -EINVAL;
	}
	const char *kind = json_string_value(json_object_get(v, "kind"));
	json_t *list = json_object_get(v, "items");
	if (kind && ends_with_list(kind) && json_is_array(list)) {
		char item_kind[64] = "";
		size_t kl = strlen(kind) - 4;
		if (kl > 0 && kl < sizeof(item_kind)) {
			memcpy(item_kind, kind, kl);
			item_kind[kl] = '\0';
		}
		size_t i;
		json_t *it;
		json_array_foreach(list, i, it) {
			if (!json_is_object(it))
				continue;
			if (!json_is_string(json_object_get(it, "kind")) && item_kind[0])
				json_object_set_new(it, "kind", json_string(item_kind));
			if (json_array_append(items, it) == -1)
				return -ENOMEM;
		}
		return 0;
	}
	return json_array_append(items, v) == -1 ? -ENOMEM : 0;
}

static bool looks_like_json(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (isspace((unsigned char)buf[i]))
			continue;
		return buf[i] == '{' || buf[i] == '[';
	}
	return false;
}

static int parse_json(const char *buf, size_t len, json_t *docs,
		      struct em_manifest_error *err)
{
	size_t off = 0;
	while (off < len) {
		json_error_t jerr;
		size_t skip = off;
		while (skip < len && isspace((unsigned char)buf[skip]))
			skip++;
		if (skip == len)
			break;
		json_t *v = json_loadb(buf + skip, len - skip,
				       JSON_DISABLE_EOF_CHECK, &jerr);
		if (!v) {
			/* jansson's line is relative to where this value started. */
			int base_line = 1;
			for (size_t i = 0; i < skip; i++)
				if (buf[i] == '\n')
					base_line++;
			set_err(err, base_line + (jerr.line > 0 ? jerr.line - 1 : 0),
				jerr.column > 0 ? jerr.column : 0, jerr.text, NULL);
			return -EINVAL;
		}
		if (json_array_append_new(docs, v) == -1)
			return -ENOMEM;
		off = skip + jerr.position;
		if (jerr.position == 0)
			break;
	}
	return 0;
}

int em_manifest_parse(const char *buf, size_t len, json_t **items,
		      struct em_manifest_error *err)
{
	json_t *docs = NULL, *out = NULL;
	int ret;

	memset(err, 0, sizeof(*err));
	*items = NULL;
	if (len > EM_MANIFEST_MAX_BYTES) {
		set_err(err, 0, 0, "file larger than the limit", NULL);
		return -EFBIG;
	}
	docs = json_array();
	out = json_array();
	if (!docs || !out) {
		ret = -ENOMEM;
		goto fail;
	}
	if (looks_like_json(buf, len))
		ret = parse_json(buf, len, docs, err);
	else
		ret = em_manifest_yaml_to_json(buf, len, docs, err);
	if (ret < 0)
		goto fail;

	size_t i;
	json_t *doc;
	json_array_foreach(docs, i, doc) {
		ret = flatten(doc, out, err);
		if (ret < 0) {
			if (err->line == 0)
				snprintf(err->reason, sizeof(err->reason),
					 "document %zu is not an object", i + 1);
			goto fail;
		}
	}
	json_decref(docs);
	*items = out;
	return 0;
fail:
	if (ret == -ENOMEM && !err->reason[0])
		set_err(err, 0, 0, "out of memory", NULL);
	json_decref(docs);
	json_decref(out);
	return ret;
}
