/*
 * Tests for http_json (body parsing under limits, field helpers, error bodies) and
 * the I/O-free parts of http_server (status codes, query strings, Bearer check).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/strbuf.h"
#include "http/http_json.h"
#include "http/http_server.h"

/* ---- parsing ---- */

struct parse_case {
	const char *name;
	const char *body;
	size_t len; /* 0: strlen(body) */
	size_t max_size;
	unsigned max_depth;
	int want_rc;
	const char *want_err; /* prefix of the message, or NULL */
};

static const struct parse_case parse_cases[] = {
    {"object", "{\"a\":1}", 0, 0, 0, 0, NULL},
    {"array", "[1,2]", 0, 0, 0, 0, NULL},
    {"empty body", "", 0, 0, 0, -EINVAL, "request body is empty"},
    {"blank body", " \r\n\t", 0, 0, 0, -EINVAL, "request body is empty"},
    {"truncated", "{\"a\":", 0, 0, 0, -EINVAL, "invalid JSON at line 1 column 5: "},
    {"missing colon", "{\"a\" 1}", 0, 0, 0, -EINVAL, "invalid JSON at line 1 column 6: "},
    {"error on line 3", "{\n\"a\":\n}", 0, 0, 0, -EINVAL, "invalid JSON at line 3 column 1: "},
    {"scalar top level", "\"text\"", 0, 0, 0, -EINVAL, "invalid JSON at line 1"},
    {"trailing garbage", "{} x", 0, 0, 0, -EINVAL, "invalid JSON at line 1"},
    {"escaped NUL in string", "{\"a\":\"x\\u0000y\"}", 0, 0, 0, -EINVAL,
     "invalid JSON at line 1 column 15: \\u0000 (NUL) is not allowed in strings"},
    {"raw NUL byte", "{\"a\":\"x\0y\"}", 11, 0, 0, -EINVAL, "invalid JSON at line 1"},
    {"duplicate key", "{\"a\":1,\"a\":2}", 0, 0, 0, -EINVAL, "invalid JSON at line 1"},
    {"bad UTF-8", "{\"a\":\"\xff\"}", 0, 0, 0, -EINVAL, "invalid JSON at line 1"},
    {"exactly max size", "{\"a\":1}", 0, 7, 0, 0, NULL},
    {"one byte over max size", "{\"a\":12}", 0, 7, 0, -E2BIG,
     "request body is larger than 7 bytes"},
    {"depth 3 of 3", "{\"a\":[{}]}", 0, 0, 3, 0, NULL},
    {"depth 4 of 3", "{\"a\":[{\"b\":[]}]}", 0, 0, 3, -ELOOP, "JSON nested deeper than 3 levels"},
    {"depth 16 default", "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]", 0, 0, 0, 0, NULL},
    {"depth 17 default", "[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]", 0, 0, 0, -ELOOP,
     "JSON nested deeper than 16 levels"},
};

static void test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct http_json_limits lim = {.max_size = c->max_size, .max_depth = c->max_depth};
		json_t *v = (json_t *)1;
		char *err = NULL;
		size_t len = c->len != 0 ? c->len : strlen(c->body);
		int rc = http_json_parse(c->body, len, &lim, &v, &err);
		if (rc != c->want_rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->want_rc,
				 err != NULL ? err : "");
		if (c->want_rc == 0) {
			assert_non_null(v);
			assert_null(err);
			json_decref(v);
			continue;
		}
		assert_null(v);
		assert_non_null(err);
		if (strncmp(err, c->want_err, strlen(c->want_err)) != 0)
			fail_msg("%s: message \"%s\", want prefix \"%s\"", c->name, err,
				 c->want_err);
		free(err);
	}
}

static void test_parse_without_err_pointer(void **state)
{
	(void)state;
	json_t *v = NULL;
	assert_int_equal(http_json_parse("{", 1, NULL, &v, NULL), -EINVAL);
	assert_null(v);
}

/* http_json_parse_object and the status each failure is answered with. */
struct object_case {
	const char *name;
	const char *body;
	size_t max_size;
	int want_rc;
	int want_status;      /* http_json_error_status(want_rc); unused for 0 */
	const char *want_err; /* exact message, or NULL */
};

static const struct object_case object_cases[] = {
    {"object", "{\"a\":[1]}", 0, 0, 0, NULL},
    {"empty object", "{}", 0, 0, 0, NULL},
    {"array", "[1,2]", 0, -EDOM, 422, "the request body must be a JSON object"},
    {"empty array", "[]", 0, -EDOM, 422, "the request body must be a JSON object"},
    {"empty body", "", 0, -EINVAL, 400, "request body is empty; expected a JSON object"},
    {"not JSON", "{a}", 0, -EINVAL, 400, NULL},
    {"scalar", "1", 0, -EINVAL, 400, NULL},
    {"too large", "{\"a\":12}", 7, -E2BIG, 413, "request body is larger than 7 bytes"},
    {"too large array", "[1,2,3,4]", 7, -E2BIG, 413, "request body is larger than 7 bytes"},
    {"too deep", "{\"a\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}", 0, -ELOOP, 400,
     "JSON nested deeper than 16 levels"},
};

static void test_parse_object_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(object_cases) / sizeof(object_cases[0]); i++) {
		const struct object_case *c = &object_cases[i];
		struct http_json_limits lim = {.max_size = c->max_size};
		json_t *v = (json_t *)1;
		char *err = NULL;
		int rc = http_json_parse_object(c->body, strlen(c->body), &lim, &v, &err);
		if (rc != c->want_rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->want_rc,
				 err != NULL ? err : "");
		if (rc == 0) {
			assert_true(json_is_object(v));
			assert_null(err);
			json_decref(v);
			continue;
		}
		assert_null(v);
		assert_non_null(err);
		if (c->want_err != NULL && strcmp(err, c->want_err) != 0)
			fail_msg("%s: message \"%s\", want \"%s\"", c->name, err, c->want_err);
		if (http_json_error_status(rc) != c->want_status)
			fail_msg("%s: status %d, want %d", c->name, http_json_error_status(rc),
				 c->want_status);
		free(err);
	}
	json_t *v = NULL;
	assert_int_equal(http_json_parse_object("[]", 2, NULL, &v, NULL), -EDOM);
	assert_null(v);
}

static void test_depth_table(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		unsigned depth;
	} cases[] = {
	    {"1", 0},
	    {"\"s\"", 0},
	    {"[]", 1},
	    {"{}", 1},
	    {"[[1]]", 2},
	    {"{\"a\":{\"b\":[1]}}", 3},
	    {"[1,[2,[3]],4]", 3},
	    {"[{},{\"x\":[[]]}]", 4},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		assert_non_null(v);
		if (http_json_depth(v) != cases[i].depth)
			fail_msg("%s: depth %u, want %u", cases[i].json, http_json_depth(v),
				 cases[i].depth);
		json_decref(v);
	}
}

/* ---- field helpers ---- */

static const char *const helper_doc =
    "{\"s\":\"text\",\"n\":3,\"b\":true,\"nul\":null,\"arr\":[\"a\",\"b\"],"
    "\"empty\":[],\"mixed\":[\"a\",1],\"obj\":{}}";

struct field_case {
	const char *kind; /* "string", "bool", "int", "array" */
	const char *key;
	int want_rc;
	const char *want_err;
};

static const struct field_case field_cases[] = {
    {"string", "s", 0, NULL},
    {"string", "missing", -ENOENT, NULL},
    {"string", "nul", -ENOENT, NULL},
    {"string", "n", -EINVAL, "field \"n\" must be a string"},
    {"string", "arr", -EINVAL, "field \"arr\" must be a string"},
    {"bool", "b", 0, NULL},
    {"bool", "s", -EINVAL, "field \"s\" must be true or false"},
    {"bool", "missing", -ENOENT, NULL},
    {"int", "n", 0, NULL},
    {"int", "b", -EINVAL, "field \"b\" must be an integer"},
    {"array", "arr", 0, NULL},
    {"array", "empty", 0, NULL},
    {"array", "missing", -ENOENT, NULL},
    {"array", "mixed", -EINVAL, "field \"mixed\" must be an array of strings"},
    {"array", "s", -EINVAL, "field \"s\" must be an array of strings"},
    {"array", "obj", -EINVAL, "field \"obj\" must be an array of strings"},
};

static void test_field_helpers_table(void **state)
{
	(void)state;
	json_t *doc = json_loads(helper_doc, 0, NULL);
	assert_non_null(doc);
	for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
		const struct field_case *c = &field_cases[i];
		char *err = NULL;
		int rc;
		if (strcmp(c->kind, "string") == 0) {
			const char *s = NULL;
			rc = http_json_get_string(doc, c->key, &s, &err);
			if (rc == 0)
				assert_string_equal(s, "text");
		} else if (strcmp(c->kind, "bool") == 0) {
			bool b = false;
			rc = http_json_get_bool(doc, c->key, &b, &err);
			if (rc == 0)
				assert_true(b);
		} else if (strcmp(c->kind, "int") == 0) {
			int64_t n = 0;
			rc = http_json_get_int(doc, c->key, &n, &err);
			if (rc == 0)
				assert_int_equal(n, 3);
		} else {
			const char **v = NULL;
			size_t n = 99;
			rc = http_json_get_string_array(doc, c->key, 10, &v, &n, &err);
			if (rc == 0 && strcmp(c->key, "arr") == 0) {
				assert_int_equal(n, 2);
				assert_string_equal(v[0], "a");
				assert_string_equal(v[1], "b");
			} else if (rc == 0) {
				assert_int_equal(n, 0);
				assert_null(v);
			}
			free(v);
		}
		if (rc != c->want_rc)
			fail_msg("%s %s: rc %d, want %d", c->kind, c->key, rc, c->want_rc);
		if (c->want_err != NULL) {
			assert_non_null(err);
			assert_string_equal(err, c->want_err);
		} else {
			assert_null(err);
		}
		free(err);
	}
	json_decref(doc);
}

static void test_string_array_item_limit(void **state)
{
	(void)state;
	json_t *doc = json_loads("{\"ids\":[\"1\",\"2\",\"3\"]}", 0, NULL);
	const char **v = NULL;
	size_t n = 0;
	char *err = NULL;
	assert_int_equal(http_json_get_string_array(doc, "ids", 3, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	free(v);
	v = NULL;
	assert_int_equal(http_json_get_string_array(doc, "ids", 2, &v, &n, &err), -E2BIG);
	assert_null(v);
	assert_string_equal(err, "field \"ids\" has more than 2 items");
	free(err);
	json_decref(doc);
}

static void test_check_keys(void **state)
{
	(void)state;
	static const char *const allowed[] = {"ids", "all", NULL};
	json_t *ok = json_loads("{\"ids\":[],\"all\":true}", 0, NULL);
	json_t *typo = json_loads("{\"ids\":[],\"sendr\":\"x\"}", 0, NULL);
	char *err = NULL;
	assert_int_equal(http_json_check_keys(ok, allowed, &err), 0);
	assert_null(err);
	assert_int_equal(http_json_check_keys(typo, allowed, &err), -EINVAL);
	assert_string_equal(err, "unknown field \"sendr\"");
	free(err);
	json_decref(ok);
	json_decref(typo);
}

/* ---- error bodies and status codes ---- */

static void test_error_body_format(void **state)
{
	(void)state;
	static const struct {
		const char *code;
		const char *message;
		const char *want;
	} cases[] = {
	    {"not_found", "no such message",
	     "{\"error\": {\"code\": \"not_found\", \"message\": \"no such message\"}}"},
	    {"bad_request", "say \"hi\"",
	     "{\"error\": {\"code\": \"bad_request\", \"message\": \"say \\\"hi\\\"\"}}"},
	    {"internal", NULL, "{\"error\": {\"code\": \"internal\", \"message\": \"\"}}"},
	    /* Echoed input that is not UTF-8 must not break the body. */
	    {"unprocessable", "bad \xff byte",
	     "{\"error\": {\"code\": \"unprocessable\", \"message\": \"bad \xef\xbf\xbd byte\"}}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *b = http_json_error_body(cases[i].code, cases[i].message);
		assert_non_null(b);
		char *text = json_dumps(b, JSON_SORT_KEYS);
		assert_string_equal(text, cases[i].want);
		free(text);
		json_decref(b);
	}
}

static void test_string_or_null(void **state)
{
	(void)state;
	json_t *v = http_json_string_or_null(NULL);
	assert_true(json_is_null(v));
	json_decref(v);
	v = http_json_string_or_null("\xe5\xb1\xb1\xe7\x94\xb0"); /* 山田 */
	assert_string_equal(json_string_value(v), "\xe5\xb1\xb1\xe7\x94\xb0");
	json_decref(v);
	/* ISO-2022-JP escape is ASCII; a lone Shift_JIS lead byte is not UTF-8. */
	v = http_json_string_or_null("a\x82"
				     "b\xe5\xb1");
	assert_string_equal(json_string_value(v), "a\xef\xbf\xbd"
						  "b\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(v);
}

/* ---- writing without jansson values ---- */

/* http_json_put_string writes what jansson writes for http_json_string_or_null,
 * for texts of every byte value (invalid UTF-8, controls, quotes, Japanese). */
static void test_put_string_as_jansson(void **state)
{
	(void)state;
	static const char *const fixed[] = {
	    "",
	    "plain",
	    "quote \" back \\ slash /",
	    "\b\f\n\r\t\x01\x1f\x7f",
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x93\xa7",
	    "bad \xff\xfe tail",
	    "cut \xe6\x97",
	    "\xc0\xaf overlong, \xed\xa0\x80 surrogate, \xf4\x90\x80\x80 too high",
	};
	char buf[64];
	unsigned seed = 7;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 2000; i++) {
		const char *s;
		if (i < sizeof(fixed) / sizeof(fixed[0])) {
			s = fixed[i];
		} else {
			size_t n = (size_t)(rand_r(&seed) % (sizeof(buf) - 1));
			for (size_t k = 0; k < n; k++) {
				buf[k] = (char)(rand_r(&seed) % 255 + 1);
				if (rand_r(&seed) % 2)
					buf[k] = (char)(buf[k] & 0x7f ? buf[k] & 0x7f : 'x');
			}
			buf[n] = '\0';
			s = buf;
		}
		json_t *j = http_json_string_or_null(s);
		char *want = json_dumps(j, JSON_ENCODE_ANY);
		struct strbuf b = STRBUF_INIT;
		size_t kept = http_json_put_string(&b, s, SIZE_MAX);
		assert_string_equal(strbuf_str(&b), want);
		assert_int_equal(kept, json_string_length(j));
		free(want);
		json_decref(j);
		strbuf_free(&b);
	}
	struct strbuf b = STRBUF_INIT;
	assert_int_equal(http_json_put_string(&b, NULL, 10), 0);
	assert_string_equal(strbuf_str(&b), "null");
	strbuf_free(&b);
}

/* A cut keeps whole characters only, counted in UTF-8 bytes before escaping. */
static void test_put_string_cut(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t max;
		const char *out;
	} cases[] = {
	    {"abcdef", 3, "\"abc\""},
	    {"ab\"def", 3, "\"ab\\\"\""},
	    {"a\xe6\x97\xa5\xe6\x9c\xac", 3, "\"a\""},
	    {"a\xe6\x97\xa5\xe6\x9c\xac", 4, "\"a\xe6\x97\xa5\""},
	    {"a\xff", 3, "\"a\""},
	    {"a\xff", 4, "\"a\xef\xbf\xbd\""},
	    {"abc", 0, "\"\""},
	    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 8, "\"\xe6\x97\xa5\xe6\x9c\xac\""},
	    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\""},
	    {"ab\xe6\x97\xa5x", 4, "\"ab\""},
	    {"\xe6\x97\xa5\xe6\x97", 9, "\"\xe6\x97\xa5\xef\xbf\xbd\xef\xbf\xbd\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf b = STRBUF_INIT;
		(void)http_json_put_string(&b, cases[i].in, cases[i].max);
		assert_string_equal(strbuf_str(&b), cases[i].out);
		strbuf_free(&b);
	}
}

/* Reals read back as jansson reals with the same value. */
static void test_put_real(void **state)
{
	(void)state;
	static const double v[] = {0, 1, -2, 5.2, 1e300, -3.25e-7, 123456789.0};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct strbuf b = STRBUF_INIT;
		http_json_put_real(&b, v[i]);
		json_error_t err;
		json_t *j = json_loads(strbuf_str(&b), JSON_DECODE_ANY, &err);
		assert_non_null(j);
		assert_true(json_is_real(j));
		assert_true(json_real_value(j) == v[i]);
		json_decref(j);
		strbuf_free(&b);
	}
}

static void test_status_codes(void **state)
{
	(void)state;
	static const struct {
		int status;
		const char *code;
	} cases[] = {
	    {400, "bad_request"},	{401, "unauthorized"},
	    {404, "not_found"},		{405, "method_not_allowed"},
	    {413, "payload_too_large"}, {415, "unsupported_media_type"},
	    {422, "unprocessable"},	{500, "internal"},
	    {599, "internal"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(http_server_status_code(cases[i].status), cases[i].code);
}

/* ---- query strings ---- */

struct query_case {
	const char *qs;
	int want_rc;
	size_t want_n;
	const char *key; /* looked up when rc is 0 */
	const char *want_value;
	size_t want_count;
};

static const struct query_case query_cases[] = {
    {NULL, 0, 0, "a", NULL, 0},
    {"", 0, 0, "a", NULL, 0},
    {"a=1", 0, 1, "a", "1", 1},
    {"a=1&b=x%20y&a=2", 0, 3, "a", "1", 2},
    {"a=1&b=x%20y&a=2", 0, 3, "b", "x y", 1},
    {"subject=%E8%BF%B7%E6%83%91+mail", 0, 1, "subject", "\xe8\xbf\xb7\xe6\x83\x91 mail", 1},
    {"sender=a%40x.jp", 0, 1, "sender", "a@x.jp", 1},
    {"flag", 0, 1, "flag", "", 1},
    {"a=", 0, 1, "a", "", 1},
    {"&&a=1&", 0, 1, "a", "1", 1},
    {"a=b=c", 0, 1, "a", "b=c", 1},
    {"%61=1", 0, 1, "a", "1", 1},
    {"a=x%00y", -EINVAL, 0, NULL, NULL, 0},
    {"a%00=1", -EINVAL, 0, NULL, NULL, 0},
    {"=1", -EINVAL, 0, NULL, NULL, 0},
};

static void test_query_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++) {
		const struct query_case *c = &query_cases[i];
		struct http_server_query *q = NULL;
		int rc = http_server_query_parse(c->qs, &q);
		if (rc != c->want_rc)
			fail_msg("\"%s\": rc %d, want %d", c->qs ? c->qs : "(null)", rc,
				 c->want_rc);
		if (rc < 0) {
			assert_null(q);
			continue;
		}
		assert_int_equal(q->n, c->want_n);
		const char *v = http_server_query_get(q, c->key);
		if (c->want_value == NULL)
			assert_null(v);
		else
			assert_string_equal(v, c->want_value);
		assert_int_equal(http_server_query_count(q, c->key), c->want_count);
		http_server_query_free(q);
	}
}

static void test_query_too_many_params(void **state)
{
	(void)state;
	char qs[HTTP_SERVER_MAX_QUERY_PARAMS * 4 + 8] = "";
	for (int i = 0; i < HTTP_SERVER_MAX_QUERY_PARAMS; i++)
		strcat(qs, "a=1&");
	struct http_server_query *q = NULL;
	assert_int_equal(http_server_query_parse(qs, &q), 0);
	http_server_query_free(q);
	strcat(qs, "a=1");
	assert_int_equal(http_server_query_parse(qs, &q), -EINVAL);
	assert_null(q);
}

/* ---- Bearer tokens ---- */

static void test_bearer_table(void **state)
{
	(void)state;
	static const struct {
		const char *header;
		const char *token;
		bool want;
	} cases[] = {
	    {"Bearer s3cret-token", "s3cret-token", true},
	    {"bearer s3cret-token", "s3cret-token", true},
	    {"BEARER  s3cret-token ", "s3cret-token", true},
	    {"Bearer s3cret-toke", "s3cret-token", false},
	    {"Bearer s3cret-tokenX", "s3cret-token", false},
	    {"Bearer S3CRET-TOKEN", "s3cret-token", false},
	    {"Bearer s3cret-token", "s3cret-tokeN", false},
	    {"Bearers3cret-token", "s3cret-token", false},
	    {"Basic s3cret-token", "s3cret-token", false},
	    {"s3cret-token", "s3cret-token", false},
	    {"Bearer ", "s3cret-token", false},
	    {"", "s3cret-token", false},
	    {NULL, "s3cret-token", false},
	    /* An unset token must not let an empty one in. */
	    {"Bearer ", "", false},
	    {"Bearer x", "", false},
	    {"Bearer x", NULL, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = http_server_bearer_ok(cases[i].header, cases[i].token);
		if (got != cases[i].want)
			fail_msg("case %zu (\"%s\" vs \"%s\"): got %d", i,
				 cases[i].header ? cases[i].header : "(null)",
				 cases[i].token ? cases[i].token : "(null)", got);
	}
}

/* ---- the server on loopback: routing, auth, limits, headers ---- */

static void handler_echo_param(struct http_server_request *req, void *arg)
{
	(void)arg;
	json_t *b = json_object();
	json_object_set_new(b, "id", json_string(http_server_request_param(req, "id")));
	const char *q = http_server_request_query(req, "q");
	json_object_set_new(b, "q", q ? json_string(q) : json_null());
	http_server_reply_json(req, 200, b);
}

static void handler_literal(struct http_server_request *req, void *arg)
{
	(void)arg;
	const char *data;
	size_t len;
	http_server_request_body(req, &data, &len);
	http_server_reply_json(req, 201,
			       json_pack("{s:s, s:i}", "route", "literal", "len", (int)len));
}

/* Answers 200 {"keys": N} for a JSON object body of at most 32 bytes. */
static void handler_json_object(struct http_server_request *req, void *arg)
{
	(void)arg;
	json_t *body = (json_t *)1;
	if (http_server_request_json_object(req, 32, &body) < 0) {
		assert_null(body);
		return; /* answered */
	}
	http_server_reply_json(req, 200, json_pack("{s:i}", "keys", (int)json_object_size(body)));
	json_decref(body);
}

static void handler_silent(struct http_server_request *req, void *arg)
{
	(void)req;
	(void)arg; /* forgets to answer: the server must answer 500 */
}

static bool auth_token(struct http_server_request *req, void *arg)
{
	return http_server_bearer_ok(http_server_request_header(req, "Authorization"), arg);
}

struct reply {
	int status;
	char body[512];
	char allow[64];
	char www_auth[64];
	char nosniff[32];
	char cache[32];
	char csp[64];
	struct event_base *base;
};

static void copy_header(struct evkeyvalq *h, const char *name, char *out, size_t size)
{
	const char *v = evhttp_find_header(h, name);
	snprintf(out, size, "%s", v ? v : "");
}

static void on_reply(struct evhttp_request *ev, void *arg)
{
	struct reply *r = arg;
	if (ev != NULL) {
		r->status = evhttp_request_get_response_code(ev);
		struct evbuffer *in = evhttp_request_get_input_buffer(ev);
		size_t n = evbuffer_get_length(in);
		if (n >= sizeof(r->body))
			n = sizeof(r->body) - 1;
		evbuffer_copyout(in, r->body, n);
		r->body[n] = '\0';
		struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
		copy_header(h, "Allow", r->allow, sizeof(r->allow));
		copy_header(h, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
		copy_header(h, "X-Content-Type-Options", r->nosniff, sizeof(r->nosniff));
		copy_header(h, "Cache-Control", r->cache, sizeof(r->cache));
		copy_header(h, "Content-Security-Policy", r->csp, sizeof(r->csp));
	}
	event_base_loopexit(r->base, NULL);
}

struct route_case {
	enum evhttp_cmd_type method;
	const char *uri;
	const char *auth;
	size_t body_len; /* bytes of 'x' to send */
	int want_status;
	const char *want_body; /* exact, or NULL */
	const char *want_allow;
};

static const struct route_case route_cases[] = {
    {EVHTTP_REQ_GET, "/api/items/abc?q=caf%C3%A9", "Bearer tok", 0, 200,
     "{\"id\":\"abc\",\"q\":\"caf\xc3\xa9\"}", NULL},
    {EVHTTP_REQ_GET, "/api/items/a%20b", "Bearer tok", 0, 200, "{\"id\":\"a b\",\"q\":null}", NULL},
    /* A literal route added first wins over "{id}" for its method... */
    {EVHTTP_REQ_POST, "/api/items/new", "Bearer tok", 3, 201, "{\"route\":\"literal\",\"len\":3}",
     NULL},
    /* ...and the "{id}" route still serves other methods on the same path. */
    {EVHTTP_REQ_GET, "/api/items/new", "Bearer tok", 0, 200, "{\"id\":\"new\",\"q\":null}", NULL},
    {EVHTTP_REQ_DELETE, "/api/items/abc", "Bearer tok", 0, 405,
     "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"DELETE is not allowed here\"}}",
     "GET"},
    {EVHTTP_REQ_GET, "/api/items/abc", NULL, 0, 401,
     "{\"error\":{\"code\":\"unauthorized\",\"message\":\"a valid Bearer token is required\"}}",
     NULL},
    {EVHTTP_REQ_GET, "/api/items/abc", "Bearer tok2", 0, 401, NULL, NULL},
    {EVHTTP_REQ_GET, "/api/items", "Bearer tok", 0, 404,
     "{\"error\":{\"code\":\"not_found\",\"message\":\"no such resource\"}}", NULL},
    {EVHTTP_REQ_GET, "/api/items/abc/", "Bearer tok", 0, 404, NULL, NULL},
    {EVHTTP_REQ_GET, "/api/items/a%00b", "Bearer tok", 0, 404, NULL, NULL},
    {EVHTTP_REQ_GET, "/api/items/abc?q=%00", "Bearer tok", 0, 400,
     "{\"error\":{\"code\":\"bad_request\",\"message\":\"malformed query string\"}}", NULL},
    {EVHTTP_REQ_GET, "/open", NULL, 0, 500,
     "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}", NULL},
    {EVHTTP_REQ_POST, "/api/items/new", "Bearer tok", 64, 201, NULL, NULL},
    {EVHTTP_REQ_POST, "/api/items/new", "Bearer tok", 65, 413,
     "{\"error\":{\"code\":\"payload_too_large\",\"message\":\"request body is larger than 64 "
     "bytes\"}}",
     NULL},
};

static void test_server_routes_table(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct http_server *srv = NULL;
	struct http_server_limits lim = {.max_body_size = 64};
	assert_int_equal(http_server_new(base, "127.0.0.1:0", &lim, &srv), 0);
	assert_int_equal(http_server_route(srv, "POST", "/api/items/new", HTTP_SERVER_ROUTE_AUTH,
					   handler_literal, NULL),
			 0);
	assert_int_equal(http_server_route(srv, "GET", "/api/items/{id}", HTTP_SERVER_ROUTE_AUTH,
					   handler_echo_param, NULL),
			 0);
	assert_int_equal(
	    http_server_route(srv, "GET", "/open", HTTP_SERVER_ROUTE_PUBLIC, handler_silent, NULL),
	    0);
	assert_int_equal(http_server_route(srv, "GET", "/bad/{x", 0, handler_silent, NULL),
			 -EINVAL);
	assert_int_equal(http_server_route(srv, "GET", "no-slash", 0, handler_silent, NULL),
			 -EINVAL);
	http_server_set_auth(srv, auth_token, "tok");
	unsigned port = http_server_port(srv);
	assert_true(port > 0);

	for (size_t i = 0; i < sizeof(route_cases) / sizeof(route_cases[0]); i++) {
		const struct route_case *c = &route_cases[i];
		struct reply r;
		memset(&r, 0, sizeof(r));
		r.base = base;
		struct evhttp_connection *conn =
		    evhttp_connection_base_new(base, NULL, "127.0.0.1", (ev_uint16_t)port);
		struct evhttp_request *ev = evhttp_request_new(on_reply, &r);
		struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
		evhttp_add_header(h, "Host", "localhost");
		if (c->auth != NULL)
			evhttp_add_header(h, "Authorization", c->auth);
		for (size_t k = 0; k < c->body_len; k++)
			evbuffer_add(evhttp_request_get_output_buffer(ev), "x", 1);
		assert_int_equal(evhttp_make_request(conn, ev, c->method, c->uri), 0);
		event_base_dispatch(base);
		if (r.status != c->want_status)
			fail_msg("%s: status %d, want %d (%s)", c->uri, r.status, c->want_status,
				 r.body);
		if (c->want_body != NULL && strcmp(r.body, c->want_body) != 0)
			fail_msg("%s: body %s, want %s", c->uri, r.body, c->want_body);
		if (c->want_allow != NULL)
			assert_string_equal(r.allow, c->want_allow);
		if (c->want_status == 401)
			assert_string_equal(r.www_auth, "Bearer");
		assert_string_equal(r.nosniff, "nosniff");
		assert_string_equal(r.cache, "no-store");
		assert_string_equal(r.csp, "default-src 'self'");
		evhttp_connection_free(conn);
	}
	http_server_free(srv);
	event_base_free(base);
}

struct json_body_case {
	const char *body;
	int want_status;
	const char *want_body;
};

static const struct json_body_case json_body_cases[] = {
    {"{\"a\":1,\"b\":2}", 200, "{\"keys\":2}"},
    {"[1]", 422,
     "{\"error\":{\"code\":\"unprocessable\",\"message\":\"the request body must be a JSON "
     "object\"}}"},
    {"", 400,
     "{\"error\":{\"code\":\"bad_request\",\"message\":\"request body is empty; expected a "
     "JSON object\"}}"},
    {"{\"a\":", 400,
     "{\"error\":{\"code\":\"bad_request\",\"message\":\"invalid JSON at line 1 column 5: "
     "unexpected token near end of file\"}}"},
    {"{\"a\":\"0123456789012345678901234\"}", 413,
     "{\"error\":{\"code\":\"payload_too_large\",\"message\":\"request body is larger than 32 "
     "bytes\"}}"},
};

/* http_server_request_json_object answers each bad body itself, with its status. */
static void test_server_json_object_table(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct http_server *srv = NULL;
	assert_int_equal(http_server_new(base, "127.0.0.1:0", NULL, &srv), 0);
	assert_int_equal(http_server_route(srv, "POST", "/obj", HTTP_SERVER_ROUTE_PUBLIC,
					   handler_json_object, NULL),
			 0);
	unsigned port = http_server_port(srv);
	for (size_t i = 0; i < sizeof(json_body_cases) / sizeof(json_body_cases[0]); i++) {
		const struct json_body_case *c = &json_body_cases[i];
		struct reply r;
		memset(&r, 0, sizeof(r));
		r.base = base;
		struct evhttp_connection *conn =
		    evhttp_connection_base_new(base, NULL, "127.0.0.1", (ev_uint16_t)port);
		struct evhttp_request *ev = evhttp_request_new(on_reply, &r);
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Host", "localhost");
		evbuffer_add(evhttp_request_get_output_buffer(ev), c->body, strlen(c->body));
		assert_int_equal(evhttp_make_request(conn, ev, EVHTTP_REQ_POST, "/obj"), 0);
		event_base_dispatch(base);
		if (r.status != c->want_status || strcmp(r.body, c->want_body) != 0)
			fail_msg("%s: %d %s, want %d %s", c->body, r.status, r.body, c->want_status,
				 c->want_body);
		evhttp_connection_free(conn);
	}
	http_server_free(srv);
	event_base_free(base);
}

static void test_server_bad_listen(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	static const char *const bad[] = {"127.0.0.1",	  "127.0.0.1:",	 "127.0.0.1:99999",
					  ":8080",	  "[::1]8080",	 "::1:8080",
					  "127.0.0.1:-1", "127.0.0.1:8x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_server *srv = (struct http_server *)1;
		if (http_server_new(base, bad[i], NULL, &srv) != -EINVAL)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_null(srv);
	}
	struct http_server *srv = NULL;
	assert_int_equal(http_server_new(base, "[::1]:0", NULL, &srv), 0);
	assert_true(http_server_port(srv) > 0);
	http_server_free(srv);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_without_err_pointer),
	    cmocka_unit_test(test_parse_object_table),
	    cmocka_unit_test(test_depth_table),
	    cmocka_unit_test(test_field_helpers_table),
	    cmocka_unit_test(test_string_array_item_limit),
	    cmocka_unit_test(test_check_keys),
	    cmocka_unit_test(test_put_string_as_jansson),
	    cmocka_unit_test(test_put_string_cut),
	    cmocka_unit_test(test_put_real),
	    cmocka_unit_test(test_error_body_format),
	    cmocka_unit_test(test_string_or_null),
	    cmocka_unit_test(test_status_codes),
	    cmocka_unit_test(test_query_table),
	    cmocka_unit_test(test_query_too_many_params),
	    cmocka_unit_test(test_bearer_table),
	    cmocka_unit_test(test_server_routes_table),
	    cmocka_unit_test(test_server_json_object_table),
	    cmocka_unit_test(test_server_bad_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
