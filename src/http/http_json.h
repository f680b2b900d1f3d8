/*
 * http_json — JSON request bodies and error bodies for the HTTP APIs (manager and
 * gateway alike), on jansson.
 *
 * Request bodies are hostile input: parsing enforces a size limit and a nesting
 * limit, refuses NUL characters in strings and duplicate keys, and explains a
 * failure in words a client can act on ("invalid JSON at line 1 column 5: ...").
 * The field helpers check types and say which field was wrong.
 * Not for: routing, sockets, or anything specific to one API.
 */
#ifndef LAZARET_HTTP_JSON_H
#define LAZARET_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * Deepest nesting a request body may have: our bodies are flat objects holding
 * arrays of strings (depth 3); 16 leaves room for growth while keeping hostile
 * inputs from building deep trees that later recursive code would walk.
 */
#define HTTP_JSON_DEFAULT_MAX_DEPTH 16
/* Default request body limit when a caller gives none: 1 MiB holds ~25,000 ids. */
#define HTTP_JSON_DEFAULT_MAX_SIZE (1024 * 1024)

struct http_json_limits {
	size_t max_size;    /* bytes; 0 = HTTP_JSON_DEFAULT_MAX_SIZE */
	unsigned max_depth; /* levels (a bare object is 1); 0 = HTTP_JSON_DEFAULT_MAX_DEPTH */
};

/*
 * Parses len bytes of data (need not be NUL-terminated) as one JSON object or array.
 * lim may be NULL (defaults). On success *out is a new reference the caller
 * json_decref()s. On failure *out is NULL and *err (when err is not NULL) is a new
 * message the caller frees:
 *   -E2BIG   longer than max_size (answer 413)
 *   -EINVAL  not JSON, NUL character, duplicate key, or top level not an object or
 *            array ("invalid JSON at line L column C: ...") (answer 400)
 *   -ELOOP   nested deeper than max_depth (answer 400)
 */
int http_json_parse(const void *data, size_t len, const struct http_json_limits *lim, json_t **out,
		    char **err);

/*
 * Like http_json_parse for a body that must be one JSON object: an array at the top
 * level is -EDOM, with *err "the request body must be a JSON object".
 */
int http_json_parse_object(const void *data, size_t len, const struct http_json_limits *lim,
			   json_t **out, char **err);

/*
 * The HTTP status that answers a failure of http_json_parse or
 * http_json_parse_object: 413 for -E2BIG, 422 for -EDOM (well-formed JSON of the
 * wrong kind), 400 for anything else (not JSON, too deep).
 */
int http_json_error_status(int rc);

/* How deep v nests: a scalar is 0, [] or {} is 1, [[1]] is 2. */
unsigned http_json_depth(const json_t *v);

/*
 * Field helpers for an object obj. Each returns 0 and sets *out when the field is
 * present with the right type; -ENOENT when the field is absent or JSON null
 * (*out untouched); -EINVAL when it has another type, with *err (if err is not NULL)
 * a new message naming the field ("field \"ids\" must be an array of strings").
 * Returned strings point into obj: valid while obj is.
 */
int http_json_get_string(const json_t *obj, const char *key, const char **out, char **err);
int http_json_get_bool(const json_t *obj, const char *key, bool *out, char **err);
int http_json_get_int(const json_t *obj, const char *key, int64_t *out, char **err);
/*
 * The strings of an array field, at most max_items (more: -E2BIG with a message).
 * *out is a new array of *n pointers into obj (free() the array, not the strings);
 * NULL when *n is 0.
 */
int http_json_get_string_array(const json_t *obj, const char *key, size_t max_items,
			       const char ***out, size_t *n, char **err);

/*
 * 0 when every key of obj is in allowed (a NULL-terminated list); else -EINVAL and
 * *err names the first unknown key. Catches typos in filters before they widen them.
 */
int http_json_check_keys(const json_t *obj, const char *const *allowed, char **err);

/*
 * A new JSON string holding s, or JSON null when s is NULL. Bytes that are not valid
 * UTF-8 (stored data is not always clean) become U+FFFD instead of failing.
 */
json_t *http_json_string_or_null(const char *s);

struct strbuf;

/*
 * Appends s as JSON text to b without building jansson values (for writers on a
 * hot path): null when s is NULL; else a string as json_dumps writes it (", \ and
 * control characters escaped, UTF-8 as is), each byte that is not part of valid
 * UTF-8 replaced with U+FFFD as http_json_string_or_null does, and the text cut
 * to at most max bytes of (unescaped) UTF-8 at a character boundary. Returns the
 * bytes of text kept (before escaping).
 */
size_t http_json_put_string(struct strbuf *b, const char *s, size_t max);

/* Appends a real number as json_dumps writes a json_real (always with a '.' or
 * an exponent, so that it reads back as a real); NaN and infinities as 0.0. */
void http_json_put_real(struct strbuf *b, double v);

/* The error body every API answers with: {"error": {"code": code, "message": message}}. */
json_t *http_json_error_body(const char *code, const char *message);

#endif
