/*
 * gw_api — one JSON POST to the manager's API (gw_api.h).
 */
#include "gateway/gw_api.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h" /* panic */
#include "common/xalloc.h"

static pthread_once_t gw_api_curl_once = PTHREAD_ONCE_INIT;

static void gw_api_curl_init(void)
{
	/* not thread-safe in libcurl: once, before the first call (slbl_cache does too;
	 * libcurl counts the calls) */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		panic("gw_api: libcurl does not initialise");
}

void gw_api_init(void)
{
	pthread_once(&gw_api_curl_once, gw_api_curl_init);
}

struct gw_api_sink {
	struct strbuf *b;
	size_t max;
	bool too_big;
};

static size_t gw_api_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct gw_api_sink *s = arg;
	size_t n = size * nmemb;
	if (s->b->len + n > s->max) {
		s->too_big = true;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	strbuf_add(s->b, data, n);
	return n;
}

static int gw_api_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			   curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return atomic_load((atomic_bool *)arg) ? 1 : 0;
}

int gw_api_post(const struct gw_api_call *call, struct gw_api_answer *out)
{
	*out = (struct gw_api_answer){.body = STRBUF_INIT};
	if (call->api_url == NULL || call->path == NULL || (call->body == NULL && !call->get) ||
	    call->timeout_ms <= 0)
		return -EINVAL;
	gw_api_init();
	CURL *h = curl_easy_init();
	if (h == NULL)
		return -ENOMEM;
	size_t ul = strlen(call->api_url);
	while (ul > 0 && call->api_url[ul - 1] == '/')
		ul--;
	char *url = xasprintf("%.*s%s", (int)ul, call->api_url, call->path);
	char *auth =
	    call->token != NULL ? xasprintf("Authorization: Bearer %s", call->token) : NULL;
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (auth != NULL)
		hdrs = curl_slist_append(hdrs, auth);
	struct gw_api_sink sink = {&out->body, call->max_answer, false};
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (call->get)
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	else
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, call->body);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)call->timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, gw_api_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	if (call->abort != NULL) {
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, gw_api_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, call->abort);
	}
	/* https: the peer and its name are always verified */
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (call->ca != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, call->ca);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	int rc = 0;
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
		out->error = sink.too_big ? "answer too large" : curl_easy_strerror(cc);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(auth);
	free(url);
	return rc;
}
