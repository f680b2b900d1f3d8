/*
 * libFuzzer target for the HTTP APIs' input helpers: JSON request bodies under
 * limits (src/http/http_json.c) and query strings and Authorization headers
 * (src/http/http_server.c).
 *
 * Byte 0 chooses the limits: its low nibble is the nesting limit (0 = default);
 * with bit 4 set the size limit is 16 + 8 * byte 1 (else the default). The rest
 * is the request body; it also serves, cut at its first NUL, as a query string, an
 * Authorization header and a string for http_json_string_or_null.
 *
 * The run fails on a crash, a sanitizer report, a leak, or a broken promise: a
 * return code the header does not list, a result and an error both or neither set,
 * a body over the size limit accepted, a value nested deeper than the limit, a
 * value that does not survive being written and read back, a field helper that
 * disagrees with the value's JSON type, a string that is not valid UTF-8, a query
 * that is not what its keys say.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "http/http_json.h"
#include "http/http_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool utf8_valid(const char *s)
{
	json_t *v = json_string(s); /* jansson refuses invalid UTF-8 */
	if (v == NULL)
		return false;
	json_decref(v);
	return true;
}

/* An error message is a non-empty, valid UTF-8 sentence we can put in a JSON body. */
static void check_err(char *err)
{
	FUZZ_CHECK(err != NULL && err[0] != '\0');
	json_t *body = http_json_error_body("bad_request", err);
	FUZZ_CHECK(body != NULL);
	json_decref(body);
	free(err);
}

/* Every field helper agrees with the JSON type of obj[key]. */
static void check_fields(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	char *err = NULL;
	int rc;

	const char *s = NULL;
	rc = http_json_get_string(obj, key, &s, &err);
	if (v == NULL || json_is_null(v)) {
		FUZZ_CHECK(rc == -ENOENT && err == NULL);
	} else if (json_is_string(v)) {
		FUZZ_CHECK(rc == 0 && err == NULL && s == json_string_value(v));
	} else {
		FUZZ_CHECK(rc == -EINVAL);
		FUZZ_CHECK(strncmp(err, "field \"", 7) == 0);
		check_err(err);
		err = NULL;
	}

	bool b = false;
	rc = http_json_get_bool(obj, key, &b, &err);
	if (json_is_boolean(v)) {
		FUZZ_CHECK(rc == 0 && b == json_is_true(v));
	} else if (v == NULL || json_is_null(v)) {
		FUZZ_CHECK(rc == -ENOENT);
	} else {
		FUZZ_CHECK(rc == -EINVAL);
		check_err(err);
		err = NULL;
	}

	int64_t n = 0;
	rc = http_json_get_int(obj, key, &n, &err);
	if (json_is_integer(v)) {
		FUZZ_CHECK(rc == 0 && n == (int64_t)json_integer_value(v));
	} else if (v == NULL || json_is_null(v)) {
		FUZZ_CHECK(rc == -ENOENT);
	} else {
		FUZZ_CHECK(rc == -EINVAL);
		check_err(err);
		err = NULL;
	}

	const char **items = NULL;
	size_t nitems = 0;
	size_t max_items = 3;
	rc = http_json_get_string_array(obj, key, max_items, &items, &nitems, &err);
	if (v == NULL || json_is_null(v)) {
		FUZZ_CHECK(rc == -ENOENT);
	} else if (rc == 0) {
		FUZZ_CHECK(json_is_array(v) && nitems == json_array_size(v) && nitems <= max_items);
		FUZZ_CHECK((nitems == 0) == (items == NULL));
		for (size_t i = 0; i < nitems; i++)
			FUZZ_CHECK(items[i] == json_string_value(json_array_get(v, i)));
		free(items);
	} else {
		FUZZ_CHECK(rc == -EINVAL || (rc == -E2BIG && json_array_size(v) > max_items));
		FUZZ_CHECK(rc == -E2BIG || !json_is_array(v) || json_array_size(v) > 0);
		check_err(err);
	}
}

static void check_value(json_t *v, const struct http_json_limits *lim)
{
	unsigned max_depth = lim->max_depth != 0 ? lim->max_depth : HTTP_JSON_DEFAULT_MAX_DEPTH;
	FUZZ_CHECK(json_is_object(v) || json_is_array(v));
	unsigned depth = http_json_depth(v);
	FUZZ_CHECK(depth >= 1 && depth <= max_depth);

	/* Written out and read back, under limits that admit it, it is the same value. */
	char *text = json_dumps(v, JSON_COMPACT);
	FUZZ_CHECK(text != NULL);
	struct http_json_limits wide = {.max_size = strlen(text) + 1, .max_depth = depth};
	json_t *again = NULL;
	char *err = NULL;
	FUZZ_CHECK(http_json_parse(text, strlen(text), &wide, &again, &err) == 0 && err == NULL);
	FUZZ_CHECK(json_equal(v, again));
	FUZZ_CHECK(http_json_depth(again) == depth);
	json_decref(again);
	/* One level less is refused as too deep. */
	if (depth > 1) {
		wide.max_depth = depth - 1;
		FUZZ_CHECK(http_json_parse(text, strlen(text), &wide, &again, &err) == -ELOOP);
		FUZZ_CHECK(again == NULL);
		check_err(err);
		err = NULL;
	}
	free(text);

	if (!json_is_object(v))
		return;
	const char *key;
	json_t *e;
	const char *allowed[3] = {NULL, NULL, NULL};
	size_t nkeys = 0;
	json_object_foreach(v, key, e)
	{
		FUZZ_CHECK(utf8_valid(key));
		check_fields(v, key);
		if (nkeys < 2)
			allowed[nkeys] = key;
		nkeys++;
	}
	check_fields(v, "no such field");
	int rc = http_json_check_keys(v, allowed, &err);
	if (nkeys <= 2) {
		FUZZ_CHECK(rc == 0 && err == NULL);
	} else {
		FUZZ_CHECK(rc == -EINVAL);
		FUZZ_CHECK(strncmp(err, "unknown field \"", 15) == 0);
		check_err(err);
	}
}

static void check_query(const char *qs)
{
	struct http_server_query *q = NULL;
	int rc = http_server_query_parse(qs, &q);
	if (rc != 0) {
		FUZZ_CHECK(rc == -EINVAL && q == NULL);
		return;
	}
	FUZZ_CHECK(q != NULL && q->n <= HTTP_SERVER_MAX_QUERY_PARAMS);
	for (size_t i = 0; i < q->n; i++) {
		FUZZ_CHECK(q->keys[i] != NULL && q->keys[i][0] != '\0' && q->values[i] != NULL);
		const char *first = http_server_query_get(q, q->keys[i]);
		FUZZ_CHECK(first != NULL);
		size_t count = http_server_query_count(q, q->keys[i]), seen = 0, at = q->n;
		for (size_t j = 0; j < q->n; j++) {
			if (strcmp(q->keys[j], q->keys[i]) == 0) {
				seen++;
				if (at == q->n)
					at = j;
			}
		}
		FUZZ_CHECK(count == seen && at <= i && strcmp(first, q->values[at]) == 0);
	}
	http_server_query_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_LEVEL_ERROR);
		quiet = true;
	}
	if (size < 2)
		return 0;
	struct http_json_limits lim = {.max_depth = data[0] & 0x0f};
	if (data[0] & 0x10)
		lim.max_size = 16 + 8 * (size_t)data[1];
	size_t max_size = lim.max_size != 0 ? lim.max_size : HTTP_JSON_DEFAULT_MAX_SIZE;
	const uint8_t *body = data + 2;
	size_t len = size - 2;

	/* An exact-size copy, so a read past the end is an ASan report. */
	uint8_t *copy = malloc(len ? len : 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, body, len);
	json_t *v = NULL;
	char *err = NULL;
	int rc = http_json_parse(copy, len, &lim, &v, &err);
	FUZZ_CHECK(rc == 0 || rc == -E2BIG || rc == -EINVAL || rc == -ELOOP);
	FUZZ_CHECK((rc == -E2BIG) == (len > max_size));
	if (rc == 0) {
		FUZZ_CHECK(v != NULL && err == NULL);
		check_value(v, &lim);
		json_decref(v);
	} else {
		FUZZ_CHECK(v == NULL);
		check_err(err);
	}
	/* Without an err pointer the message is freed inside (a leak would show). */
	rc = http_json_parse(copy, len, &lim, &v, NULL);
	if (rc == 0)
		json_decref(v);
	free(copy);

	char *text = malloc(len + 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, body, len);
	text[len] = '\0';
	check_query(text);
	(void)http_server_bearer_ok(text, "s3cret-token");
	json_t *s = http_json_string_or_null(text);
	FUZZ_CHECK(json_is_string(s) && utf8_valid(json_string_value(s)));
	if (utf8_valid(text))
		FUZZ_CHECK(strcmp(json_string_value(s), text) == 0);
	json_decref(s);
	free(text);
	return 0;
}
