/*
 * gw_hello — the gateway's hello to the manager (gw_hello.h): the body, one
 * libcurl POST, and a strict reading of the answer, which comes from the network
 * and is checked like any other input (gw_hello_parse_answer, table-tested).
 *
 * Not for: scheduling (lazaret_gw.c) or the safelist sync (slbl_cache.c), which
 * shares the manager's URL, token and CA but not this code's answer.
 */
#include "gateway/gw_hello.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h" /* panic */
#include "common/strbuf.h"
#include "common/xalloc.h"

void gw_hello_answer_clear(struct gw_hello_answer *a)
{
	free(a->state);
	free(a->group);
	free(a->cluster);
	free(a->message);
	memset(a, 0, sizeof(*a));
}

char *gw_hello_body(const char *name, const char *version, const char *group, const char *cluster)
{
	json_t *o = json_object();
	if (o == NULL || json_object_set_new(o, "name", json_string(name)) != 0)
		panic("gw_hello: cannot build the body");
	if (version != NULL)
		json_object_set_new(o, "version", json_string(version));
	if (group != NULL)
		json_object_set_new(o, "group", json_string(group));
	if (cluster != NULL)
		json_object_set_new(o, "cluster", json_string(cluster));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		panic("gw_hello: cannot build the body");
	return text;
}

/* A copy of the string member key of o; NULL when absent or null; -EPROTO otherwise. */
static int gw_hello_string(const json_t *o, const char *key, char **out)
{
	const json_t *v = json_object_get(o, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EPROTO;
	*out = xstrdup(json_string_value(v));
	return 0;
}

int gw_hello_parse_answer(long status, const char *body, size_t len, struct gw_hello_answer *out)
{
	memset(out, 0, sizeof(*out));
	out->status = status;
	json_error_t jerr;
	json_t *doc = body != NULL && len > 0 ? json_loadb(body, len, 0, &jerr) : NULL;
	int rc = -EPROTO;
	if (status != 200) {
		/* {"error": {"code", "message"}}: keep the message for the log */
		const json_t *e = json_object_get(doc, "error");
		const json_t *m = json_object_get(e, "message");
		if (json_is_string(m))
			out->message = xstrdup(json_string_value(m));
		rc = status == 401 || status == 403 ? -EACCES : -EPROTO;
		goto done;
	}
	const json_t *g = json_object_get(doc, "gateway");
	if (!json_is_object(g) || !json_is_string(json_object_get(g, "name")))
		goto done;
	if (gw_hello_string(g, "state", &out->state) < 0 || out->state == NULL ||
	    gw_hello_string(g, "group", &out->group) < 0 ||
	    gw_hello_string(g, "cluster", &out->cluster) < 0)
		goto done;
	rc = 0;
done:
	if (rc == -EPROTO && status == 200) {
		free(out->state);
		free(out->group);
		free(out->cluster);
		out->state = out->group = out->cluster = NULL;
	}
	json_decref(doc);
	return rc;
}

static pthread_once_t gw_hello_curl_once = PTHREAD_ONCE_INIT;

static void gw_hello_curl_init(void)
{
	/* not thread-safe in libcurl: once, before the first hello (slbl_cache does too;
	 * libcurl counts the calls) */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		panic("gw_hello: libcurl does not initialise");
}

struct gw_hello_sink {
	struct strbuf b;
	bool too_big;
};

static size_t gw_hello_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct gw_hello_sink *s = arg;
	size_t n = size * nmemb;
	if (s->b.len + n > GW_HELLO_MAX_ANSWER) {
		s->too_big = true;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	strbuf_add(&s->b, data, n);
	return n;
}

int gw_hello_send(const char *api_url, const char *token, const char *ca_file, const char *body,
		  int64_t timeout_ms, struct gw_hello_answer *out)
{
	memset(out, 0, sizeof(*out));
	if (api_url == NULL || body == NULL || timeout_ms <= 0)
		return -EINVAL;
	pthread_once(&gw_hello_curl_once, gw_hello_curl_init);
	CURL *h = curl_easy_init();
	if (h == NULL)
		return -ENOMEM;
	size_t ul = strlen(api_url);
	while (ul > 0 && api_url[ul - 1] == '/')
		ul--;
	char *url = xasprintf("%.*s/api/v1/gateway/hello", (int)ul, api_url);
	char *auth = token != NULL ? xasprintf("Authorization: Bearer %s", token) : NULL;
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (auth != NULL)
		hdrs = curl_slist_append(hdrs, auth);
	struct gw_hello_sink sink = {STRBUF_INIT, false};
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, gw_hello_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	/* https: the peer and its name are always verified, as for the safelist sync */
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	int rc;
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
		out->status = 0;
		out->message = xstrdup(sink.too_big ? "answer too large" : curl_easy_strerror(cc));
	} else {
		rc = gw_hello_parse_answer(status, strbuf_str(&sink.b), sink.b.len, out);
	}
	strbuf_free(&sink.b);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(auth);
	free(url);
	return rc;
}
