/*
 * api_backfill — a gateway's rollups of the time before central reporting, sent
 * once (api_backfill.h). Checked on the loop thread, written on a reader thread
 * (api_read.h) in one store transaction.
 *
 * Not for: the SQL (store_backfill.c, store_pg_backfill.c).
 */
#include "api/api_backfill.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_gateways.h"
#include "api/api_read.h"
#include "store/store.h"

static const char *const api_backfill_grans[STORE_REPORT_NGRANS] = {"hour", "day", "month"};
static const char *const api_backfill_counters[STORE_REPORT_NCOUNTERS] = {
    "incoming", "clean", "spam", "suspect", "virus", "content_filter", "count"};

int64_t api_backfill_bucket_end(int gran, int64_t bucket)
{
	return store_report_bucket_end(gran, bucket);
}

struct api_backfill_push {
	struct store *st;
	char *gateway;
	json_t *body; /* holds the keys' strings */
	struct store_rollup_in *v;
	size_t n;
	int64_t cutoff;
	bool done;
};

static void api_backfill_push_free(void *arg)
{
	struct api_backfill_push *p = arg;
	free(p->gateway);
	free(p->v);
	json_decref(p->body);
	free(p);
}

/* Row i of the body into *r: 0, or -1 with *err set. */
static int api_backfill_row(const json_t *o, size_t i, int64_t cutoff, struct store_rollup_in *r,
			    char **err)
{
	static const char *const allowed[] = {"report",	  "gran",	    "bucket", "key",
					      "incoming", "clean",	    "spam",   "suspect",
					      "virus",	  "content_filter", "count",  NULL};
	char *kerr = NULL;
	if (!json_is_object(o)) {
		*err = xasprintf("row %zu is not an object", i + 1);
		return -1;
	}
	if (http_json_check_keys(o, allowed, &kerr) < 0) {
		*err = xasprintf("row %zu: %s", i + 1, kerr);
		free(kerr);
		return -1;
	}
	const char *report = json_string_value(json_object_get(o, "report"));
	r->report = report != NULL ? store_report_by_name(report) : -1;
	if (r->report < 0) {
		*err = xasprintf("row %zu: no such report", i + 1);
		return -1;
	}
	const char *gran = json_string_value(json_object_get(o, "gran"));
	r->gran = -1;
	for (int g = 0; g < STORE_REPORT_NGRANS && gran != NULL; g++)
		if (strcmp(gran, api_backfill_grans[g]) == 0)
			r->gran = g;
	if (r->gran < 0) {
		*err = xasprintf("row %zu: \"gran\" must be hour, day or month", i + 1);
		return -1;
	}
	const json_t *b = json_object_get(o, "bucket");
	r->bucket = json_is_integer(b) ? json_integer_value(b) : -1;
	if (r->bucket < 0 || store_report_bucket(r->gran, r->bucket) != r->bucket) {
		*err = xasprintf("row %zu: \"bucket\" must be the start of a UTC %s (Unix ms)",
				 i + 1, api_backfill_grans[r->gran]);
		return -1;
	}
	if (api_backfill_bucket_end(r->gran, r->bucket) > cutoff) {
		*err = xasprintf("row %zu: the bucket ends after \"cutoff\"", i + 1);
		return -1;
	}
	const json_t *k = json_object_get(o, "key");
	if (!json_is_string(k) || json_string_length(k) > API_BACKFILL_KEY_MAX ||
	    strlen(json_string_value(k)) != json_string_length(k)) {
		*err = xasprintf("row %zu: \"key\" must be a string of at most %d bytes", i + 1,
				 API_BACKFILL_KEY_MAX);
		return -1;
	}
	r->key = json_string_value(k);
	for (int c = 0; c < STORE_REPORT_NCOUNTERS; c++) {
		const json_t *v = json_object_get(o, api_backfill_counters[c]);
		r->c[c] = v == NULL ? 0 : json_is_integer(v) ? json_integer_value(v) : -1;
		if (r->c[c] < 0 || r->c[c] > API_BACKFILL_COUNTER_MAX) {
			*err = xasprintf("row %zu: \"%s\" must be an integer from 0 to %lld", i + 1,
					 api_backfill_counters[c], API_BACKFILL_COUNTER_MAX);
			return -1;
		}
	}
	return 0;
}

/* Reader thread: the rows into the store in one transaction. */
static void api_backfill_commit(void *arg, struct api_read_reply *out)
{
	struct api_backfill_push *p = arg;
	size_t stored = 0;
	int rc = store_report_backfill(p->st, p->gateway, p->cutoff, p->v, p->n, p->done,
				       clock_now_ms(), &stored);
	char q[300];
	if (rc == -EALREADY) {
		api_read_reply_error(out, 409, "the backfill of gateway \"%s\" is done already",
				     p->gateway);
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_report_backfill", rc);
		return;
	}
	log_info("api.backfill", "gateway=%s rows=%zu stored=%zu done=%s",
		 log_quote(q, sizeof(q), p->gateway), p->n, stored, p->done ? "yes" : "no");
	api_read_reply_json(out, 200,
			    json_pack("{s:I, s:b}", "stored", (json_int_t)stored, "done", p->done));
}

static void api_backfill_post(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	struct store_gateway *g = NULL;
	struct store_rollup_in *v = NULL;
	if (!api_request_guard(a, req))
		return;
	int auth = api_gateways_authenticate(a, req, &g);
	if (auth == -ENOENT) {
		http_server_reply_error(req, 401, "a valid gateway token is required");
		return;
	}
	if (auth < 0) {
		api_reply_store_error(req, "api_gateways_authenticate", auth);
		return;
	}
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		goto done;
	static const char *const allowed[] = {"cutoff", "rows", "done", NULL};
	if (http_json_check_keys(body, allowed, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto done;
	}
	const json_t *jc = json_object_get(body, "cutoff");
	int64_t cutoff = json_is_integer(jc) ? json_integer_value(jc) : -1;
	if (cutoff <= 0 || cutoff > clock_now_ms() + API_BACKFILL_SKEW_MS) {
		http_server_reply_error(req, 400,
					"\"cutoff\" must be when the gateway turned central "
					"reporting on (Unix ms), not in the future");
		goto done;
	}
	const json_t *jd = json_object_get(body, "done");
	if (jd != NULL && !json_is_boolean(jd)) {
		http_server_reply_error(req, 400, "\"done\" must be true or false");
		goto done;
	}
	const json_t *rows = json_object_get(body, "rows");
	if (!json_is_array(rows) || json_array_size(rows) > API_BACKFILL_ROWS_MAX) {
		http_server_reply_error(req, 400, "\"rows\" must be a list of at most %d rows",
					API_BACKFILL_ROWS_MAX);
		goto done;
	}
	size_t n = json_array_size(rows);
	v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		if (api_backfill_row(json_array_get(rows, i), i, cutoff, &v[i], &err) < 0) {
			http_server_reply_error(req, 400, "%s", err);
			goto done;
		}
	}
	struct api_backfill_push *p = xcalloc(1, sizeof(*p));
	p->st = api_store(a);
	p->gateway = xstrdup(g->name);
	p->body = body;
	p->v = v;
	p->n = n;
	p->cutoff = cutoff;
	p->done = json_is_true(jd);
	body = NULL;
	v = NULL;
	api_read_submit(api_reads(a), req, "backfill", api_backfill_commit, NULL, p,
			api_backfill_push_free);
done:
	free(v);
	free(err);
	store_gateway_free(g);
	json_decref(body);
}

void api_backfill_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/gateway/rollups", HTTP_SERVER_ROUTE_PUBLIC, api_backfill_post},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
