/*
 * http_json — parsing of JSON request bodies under limits, typed field access with
 * messages that name the field, and the one error body shape of our HTTP APIs.
 *
 * jansson does the parsing; this module adds what jansson leaves to the caller:
 * a size limit checked before any parsing, a nesting limit checked by walking the
 * parsed value (jansson's own limit is a compile-time 2048), and wording.
 * Not for: routing, replies, sockets (http_server), or API-specific validation.
 */
#include "http/http_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"

static void http_json_set_err(char **err, char *msg)
{
	if (err != NULL)
		*err = msg;
	else
		free(msg);
}

/* True when v nests deeper than budget levels; stops walking as soon as it knows. */
static bool http_json_deeper_than(const json_t *v, unsigned budget)
{
	if (!json_is_object(v) && !json_is_array(v))
		return false;
	if (budget == 0)
		return true;
	if (json_is_array(v)) {
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e)
		{
			if (http_json_deeper_than(e, budget - 1))
				return true;
		}
		return false;
	}
	const char *k;
	const json_t *e;
	json_object_foreach(unconst(v), k, e) /* jansson has no const iterator */
	{
		if (http_json_deeper_than(e, budget - 1))
			return true;
	}
	return false;
}

unsigned http_json_depth(const json_t *v)
{
	unsigned d = 0;
	while (http_json_deeper_than(v, d))
		d++;
	return d;
}

static bool http_json_blank(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	}
	return true;
}

int http_json_parse(const void *data, size_t len, const struct http_json_limits *lim, json_t **out,
		    char **err)
{
	size_t max_size =
	    lim != NULL && lim->max_size != 0 ? lim->max_size : HTTP_JSON_DEFAULT_MAX_SIZE;
	unsigned max_depth =
	    lim != NULL && lim->max_depth != 0 ? lim->max_depth : HTTP_JSON_DEFAULT_MAX_DEPTH;
	*out = NULL;
	if (len > max_size) {
		http_json_set_err(err,
				  xasprintf("request body is larger than %zu bytes", max_size));
		return -E2BIG;
	}
	if (data == NULL || http_json_blank(data, len)) {
		http_json_set_err(err, xstrdup("request body is empty; expected a JSON object"));
		return -EINVAL;
	}
	json_error_t je;
	/* No JSON_ALLOW_NUL: "\u0000" in a string is refused (our strings are C strings). */
	json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (v == NULL) {
		const char *why = je.text;
		if (strstr(je.text, "JSON_ALLOW_NUL") != NULL)
			why = "\\u0000 (NUL) is not allowed in strings";
		http_json_set_err(err, xasprintf("invalid JSON at line %d column %d: %s", je.line,
						 je.column, why));
		return -EINVAL;
	}
	if (http_json_deeper_than(v, max_depth)) {
		json_decref(v);
		http_json_set_err(err, xasprintf("JSON nested deeper than %u levels", max_depth));
		return -ELOOP;
	}
	*out = v;
	return 0;
}

int http_json_parse_object(const void *data, size_t len, const struct http_json_limits *lim,
			   json_t **out, char **err)
{
	int rc = http_json_parse(data, len, lim, out, err);
	if (rc < 0)
		return rc;
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		http_json_set_err(err, xstrdup("the request body must be a JSON object"));
		return -EDOM;
	}
	return 0;
}

int http_json_error_status(int rc)
{
	return rc == -E2BIG ? 413 : rc == -EDOM ? 422 : 400;
}

/* The field, or NULL when absent or null. */
static json_t *http_json_field(const json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_null(v) ? NULL : v;
}

int http_json_get_string(const json_t *obj, const char *key, const char **out, char **err)
{
	json_t *v = http_json_field(obj, key);
	if (v == NULL)
		return -ENOENT;
	if (!json_is_string(v)) {
		http_json_set_err(err, xasprintf("field \"%s\" must be a string", key));
		return -EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

int http_json_get_bool(const json_t *obj, const char *key, bool *out, char **err)
{
	json_t *v = http_json_field(obj, key);
	if (v == NULL)
		return -ENOENT;
	if (!json_is_boolean(v)) {
		http_json_set_err(err, xasprintf("field \"%s\" must be true or false", key));
		return -EINVAL;
	}
	*out = json_is_true(v);
	return 0;
}

int http_json_get_int(const json_t *obj, const char *key, int64_t *out, char **err)
{
	json_t *v = http_json_field(obj, key);
	if (v == NULL)
		return -ENOENT;
	if (!json_is_integer(v)) {
		http_json_set_err(err, xasprintf("field \"%s\" must be an integer", key));
		return -EINVAL;
	}
	*out = (int64_t)json_integer_value(v);
	return 0;
}

int http_json_get_string_array(const json_t *obj, const char *key, size_t max_items,
			       const char ***out, size_t *n, char **err)
{
	json_t *v = http_json_field(obj, key);
	if (v == NULL)
		return -ENOENT;
	if (!json_is_array(v))
		goto wrong_type;
	size_t count = json_array_size(v);
	if (count > max_items) {
		http_json_set_err(
		    err, xasprintf("field \"%s\" has more than %zu items", key, max_items));
		return -E2BIG;
	}
	for (size_t i = 0; i < count; i++) {
		if (!json_is_string(json_array_get(v, i)))
			goto wrong_type;
	}
	const char **items = NULL;
	if (count > 0) {
		items = xcalloc(count, sizeof(*items));
		for (size_t i = 0; i < count; i++)
			items[i] = json_string_value(json_array_get(v, i));
	}
	*out = items;
	*n = count;
	return 0;

wrong_type:
	http_json_set_err(err, xasprintf("field \"%s\" must be an array of strings", key));
	return -EINVAL;
}

int http_json_check_keys(const json_t *obj, const char *const *allowed, char **err)
{
	const char *k;
	json_t *v;
	json_object_foreach(unconst(obj), k, v) /* jansson has no const iterator */
	{
		bool known = false;
		for (const char *const *a = allowed; *a != NULL && !known; a++)
			known = strcmp(*a, k) == 0;
		if (!known) {
			http_json_set_err(err, xasprintf("unknown field \"%s\"", k));
			return -EINVAL;
		}
	}
	return 0;
}

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 when it is not one. */
static size_t http_json_utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned min;
	unsigned cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, min = 0x80, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, min = 0x800, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, min = 0x10000, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

size_t http_json_put_string(struct strbuf *b, const char *s, size_t max)
{
	if (s == NULL) {
		strbuf_puts(b, "null");
		return 0;
	}
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), kept = 0, i = 0;
	strbuf_reserve(b, n + 2);
	strbuf_addc(b, '"');
	while (i < n) {
		size_t start = i;
		/* a run written as it is, within max: printable ASCII but " and \, and
		 * valid UTF-8 sequences (Japanese text is one run, not a call a
		 * character) */
		size_t end = n - i < max - kept ? n : i + (max - kept);
		while (i < end) {
			if (p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
				i++;
				continue;
			}
			size_t len = p[i] < 0x80 ? 0 : http_json_utf8_len(p + i, n - i);
			if (len == 0 || len > end - i)
				break;
			i += len;
		}
		if (i > start) {
			strbuf_add(b, p + start, i - start);
			kept += i - start;
			continue;
		}
		size_t len = p[i] < 0x80 ? 1 : http_json_utf8_len(p + i, n - i);
		size_t out = len > 0 ? len : 3; /* U+FFFD */
		if (kept + out > max)
			break;
		kept += out;
		if (len == 0) {
			strbuf_add(b, "\xef\xbf\xbd", 3);
			i++;
		} else if (len > 1) {
			strbuf_add(b, p + i, len);
			i += len;
		} else {
			unsigned char c = p[i++];
			char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
			switch (c) {
			case '"':
			case '\\':
				esc[1] = (char)c;
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 0xf];
				break;
			}
			strbuf_add(b, esc, esc[2] != 0 ? 6 : 2);
		}
	}
	strbuf_addc(b, '"');
	return kept;
}

void http_json_put_real(struct strbuf *b, double v)
{
	if (!isfinite(v))
		v = 0;
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%.17g", v);
	if (n <= 0 || (size_t)n >= sizeof(buf)) {
		strbuf_puts(b, "0.0");
		return;
	}
	strbuf_add(b, buf, (size_t)n);
	if (strpbrk(buf, ".eE") == NULL)
		strbuf_puts(b, ".0");
}

json_t *http_json_string_or_null(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *v = json_string(s);
	if (v != NULL)
		return v;
	/* Not UTF-8: keep the valid sequences, replace each bad byte with U+FFFD. */
	size_t n = strlen(s);
	char *clean = xmalloc(n * 3 + 1);
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t len = http_json_utf8_len(p + i, n - i);
		if (len == 0) {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(clean + o, p + i, len);
			o += len;
			i += len;
		}
	}
	clean[o] = '\0';
	v = json_string(clean);
	free(clean);
	if (v == NULL)
		panic("http_json: cannot build a string");
	return v;
}

json_t *http_json_error_body(const char *code, const char *message)
{
	json_t *inner = json_object();
	json_t *body = json_object();
	if (inner == NULL || body == NULL)
		panic("http_json: out of memory");
	json_object_set_new(inner, "code", http_json_string_or_null(code));
	json_object_set_new(inner, "message",
			    http_json_string_or_null(message != NULL ? message : ""));
	json_object_set_new(body, "error", inner);
	return body;
}
