/*
 * api_report_sched — the routes of scheduled reports and their archive
 * (api_report_sched.h). Schedules are checked and written on the loop thread;
 * a run reads the rollups, renders and archives on a reader thread (api_read.h).
 *
 * Not for: rendering (api_reports.c), the SQL (store_*sched.c).
 */
#include "api/api_report_sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_read.h"
#include "api/api_reports.h"
#include "store/store.h"

#define API_SCHED_RECIPIENTS_MAX 50
#define API_SCHED_ARCHIVE_LIST	 500

/* Set once at registration, before the server runs (one API per process). */
static api_sched_mail_fn api_sched_mail;
static void *api_sched_mail_arg;

int64_t api_sched_next_run(const char *every, int64_t now)
{
	time_t t = (time_t)now;
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_min = 0;
	tm.tm_sec = 0;
	tm.tm_hour = API_SCHED_HOUR;
	if (every == NULL)
		return -1;
	for (int i = 0; i < 40; i++) {
		int64_t at = (int64_t)timegm(&tm);
		struct tm d;
		time_t ta = (time_t)at;
		gmtime_r(&ta, &d);
		bool ok = strcmp(every, "daily") == 0	  ? true
			  : strcmp(every, "weekly") == 0  ? d.tm_wday == 1
			  : strcmp(every, "monthly") == 0 ? d.tm_mday == 1
							  : false;
		if (strcmp(every, "daily") != 0 && strcmp(every, "weekly") != 0 &&
		    strcmp(every, "monthly") != 0)
			return -1;
		if (ok && at > now)
			return at;
		tm = d;
		tm.tm_mday++;
	}
	return -1;
}

bool api_sched_address_ok(const char *addr)
{
	if (addr == NULL)
		return false;
	size_t len = strlen(addr);
	const char *at = strrchr(addr, '@');
	if (len < 3 || len > 254 || at == NULL || at == addr || at[1] == '\0' ||
	    strchr(addr, '@') != at)
		return false;
	for (const char *p = addr; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || strchr("\"<>(),;:[]\\", c) != NULL)
			return false;
	}
	return true;
}

/* api_reports_query_fn giving period only. */
static const char *api_sched_period_get(void *arg, const char *key, size_t *count)
{
	*count = 0;
	if (strcmp(key, "period") != 0)
		return NULL;
	*count = 1;
	return arg;
}

static json_t *api_sched_time_json(int64_t s)
{
	if (s <= 0)
		return json_null();
	char at[CLOCK_RFC3339_LEN];
	clock_format_rfc3339(s * 1000, at);
	return json_string(at);
}

static json_t *api_sched_json(const struct store_report_schedule *s)
{
	json_t *rc = json_array();
	const char *p = s->recipients;
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		json_array_append_new(rc, json_stringn(p, n));
		p = nl != NULL ? nl + 1 : NULL;
	}
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o}", "id",
			 (json_int_t)s->id, "report", s->report, "period", s->period, "every",
			 s->every, "format", s->format, "recipients", rc, "created_by",
			 s->created_by, "created_at", api_sched_time_json(s->created_at),
			 "next_run", api_sched_time_json(s->next_run), "last_run",
			 api_sched_time_json(s->last_run));
}

static json_t *api_sched_archived_json(const struct store_report_archived *a)
{
	return json_pack(
	    "{s:I, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:I}", "id", (json_int_t)a->id, "schedule_id",
	    a->schedule_id > 0 ? json_integer(a->schedule_id) : json_null(), "report", a->report,
	    "period", a->period, "format", a->format, "since", api_sched_time_json(a->from / 1000),
	    "until", api_sched_time_json(a->to / 1000), "created_at",
	    api_sched_time_json(a->created_at), "size", (json_int_t)a->size);
}

/* A positive decimal id from the path, or -1. */
static int64_t api_sched_id(struct http_server_request *req)
{
	const char *s = http_server_request_param(req, "id");
	int64_t v = 0;
	if (s == NULL || *s == '\0' || strlen(s) > 15)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v > 0 ? v : -1;
}

static void api_sched_create(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	struct strbuf rcpts = {0};
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (api_body_object(a, req, &body) < 0)
		return;
	static const char *const allowed[] = {"report", "period",     "every",
					      "format", "recipients", NULL};
	if (http_json_check_keys(body, allowed, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto done;
	}
	const char *report = json_string_value(json_object_get(body, "report"));
	const char *period = json_string_value(json_object_get(body, "period"));
	const char *every = json_string_value(json_object_get(body, "every"));
	const char *format = json_string_value(json_object_get(body, "format"));
	const json_t *list = json_object_get(body, "recipients");
	if (report == NULL || period == NULL || every == NULL) {
		http_server_reply_error(req, 400,
					"\"report\", \"period\" and \"every\" are needed");
		goto done;
	}
	struct api_reports_params p;
	if (api_reports_parse(report, api_sched_period_get, unconst(period), clock_now_ms(), &p,
			      &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto done;
	}
	bool custom = strcmp(p.period, "custom") == 0;
	api_reports_params_clear(&p);
	if (custom) {
		http_server_reply_error(req, 400, "a schedule cannot use period=custom");
		goto done;
	}
	int64_t now = clock_now_ms() / 1000;
	int64_t next = api_sched_next_run(every, now);
	if (next < 0) {
		http_server_reply_error(req, 400, "\"every\" must be daily, weekly or monthly");
		goto done;
	}
	if (format == NULL)
		format = "pdf";
	if (strcmp(format, "pdf") != 0 && strcmp(format, "csv") != 0) {
		http_server_reply_error(req, 400, "\"format\" must be pdf or csv");
		goto done;
	}
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > API_SCHED_RECIPIENTS_MAX) {
		http_server_reply_error(req, 400,
					"\"recipients\" must be a list of 1 to %d addresses",
					API_SCHED_RECIPIENTS_MAX);
		goto done;
	}
	size_t i;
	const json_t *v;
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) || !api_sched_address_ok(json_string_value(v))) {
			http_server_reply_error(req, 400, "recipient %zu is not a mail address",
						i + 1);
			goto done;
		}
		strbuf_printf(&rcpts, "%s%s", i > 0 ? "\n" : "", json_string_value(v));
	}
	const struct api_actor *who = api_actor(a, req);
	struct store_report_schedule s = {.report = unconst(report),
					  .period = unconst(period),
					  .every = unconst(every),
					  .format = unconst(format),
					  .recipients = unconst(strbuf_str(&rcpts)),
					  .created_by = unconst(who->username),
					  .created_at = now,
					  .next_run = next};
	int rc = store_report_schedule_add(api_store(a), &s, &s.id);
	if (rc == -EINVAL) {
		http_server_reply_error(req, 400, "bad schedule");
		goto done;
	}
	if (rc < 0) {
		api_reply_store_error(req, "store_report_schedule_add", rc);
		goto done;
	}
	json_t *out = api_sched_json(&s);
	api_audit(a, req, "report_schedule.create", report, json_incref(out));
	http_server_reply_json(req, 201, out);
done:
	free(err);
	strbuf_free(&rcpts);
	json_decref(body);
}

static void api_sched_list(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct store_report_schedule *v = NULL;
	size_t n = 0;
	int rc = store_report_schedule_list(api_store(a), &v, &n);
	if (rc < 0) {
		api_reply_store_error(req, "store_report_schedule_list", rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, api_sched_json(&v[i]));
	store_report_schedule_array_free(v, n);
	http_server_reply_json(req, 200, json_pack("{s:o}", "schedules", list));
}

static void api_sched_delete(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	int64_t id = api_sched_id(req);
	int rc = id > 0 ? store_report_schedule_delete(api_store(a), id) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such schedule");
		return;
	}
	if (rc < 0) {
		api_reply_store_error(req, "store_report_schedule_delete", rc);
		return;
	}
	api_audit(a, req, "report_schedule.delete", http_server_request_param(req, "id"), NULL);
	http_server_reply_json(req, 200, json_object());
}

struct api_sched_run {
	struct store *st;
	struct store_report_schedule s;
};

static void api_sched_run_free(void *arg)
{
	struct api_sched_run *r = arg;
	store_report_schedule_clear(&r->s);
	free(r);
}

int api_sched_make(struct store *st, const struct store_report_schedule *s, int64_t now_ms,
		   struct store_report_archived *out)
{
	struct api_reports_params p;
	char *err = NULL;
	memset(out, 0, sizeof(*out));
	int rc = api_reports_parse(s->report, api_sched_period_get, s->period, now_ms, &p, &err);
	free(err);
	if (rc < 0)
		return rc;
	p.csv = strcmp(s->format, "csv") == 0;
	p.pdf = !p.csv;
	unsigned char *doc = NULL;
	size_t len = 0;
	rc = api_reports_render(st, &p, &doc, &len);
	if (rc == 0) {
		*out = (struct store_report_archived){.schedule_id = s->id,
						      .report = xstrdup(s->report),
						      .period = xstrdup(s->period),
						      .format = xstrdup(s->format),
						      .from = p.since,
						      .to = p.until,
						      .created_at = now_ms / 1000,
						      .data = doc,
						      .size = len};
		rc = store_report_archive_add(st, out, &out->id);
		if (rc < 0)
			store_report_archived_clear(out);
	}
	api_reports_params_clear(&p);
	return rc;
}

/* Reader thread: makes the report of the schedule now and archives it. */
static void api_sched_run_work(void *arg, struct api_read_reply *out)
{
	struct api_sched_run *r = arg;
	struct store_report_archived a;
	int rc = api_sched_make(r->st, &r->s, clock_now_ms(), &a);
	if (rc < 0) {
		api_read_reply_store_error(out, "api_sched_make", rc);
		return;
	}
	if (api_sched_mail != NULL)
		api_sched_mail(api_sched_mail_arg, &r->s, &a);
	json_t *o = api_sched_archived_json(&a);
	store_report_archived_clear(&a);
	api_read_reply_json(out, 201, o);
}

static void api_sched_run(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	int64_t id = api_sched_id(req);
	struct store_report_schedule *v = NULL;
	size_t n = 0;
	int rc = store_report_schedule_list(api_store(a), &v, &n);
	if (rc < 0) {
		api_reply_store_error(req, "store_report_schedule_list", rc);
		return;
	}
	struct api_sched_run *r = NULL;
	for (size_t i = 0; i < n && r == NULL; i++)
		if (v[i].id == id) {
			r = xcalloc(1, sizeof(*r));
			r->st = api_store(a);
			r->s = v[i];
			memset(&v[i], 0, sizeof(v[i]));
		}
	store_report_schedule_array_free(v, n);
	if (r == NULL) {
		http_server_reply_error(req, 404, "no such schedule");
		return;
	}
	api_audit(a, req, "report_schedule.run", http_server_request_param(req, "id"), NULL);
	api_read_submit(api_reads(a), req, "report_run", api_sched_run_work, NULL, r,
			api_sched_run_free);
}

struct api_sched_archive_read {
	struct store *st;
	int64_t id; /* 0: the list */
};

static void api_sched_archive_work(void *arg, struct api_read_reply *out)
{
	struct api_sched_archive_read *r = arg;
	if (r->id == 0) {
		struct store_report_archived *v = NULL;
		size_t n = 0;
		int rc = store_report_archive_list(r->st, API_SCHED_ARCHIVE_LIST, &v, &n);
		if (rc < 0) {
			api_read_reply_store_error(out, "store_report_archive_list", rc);
			return;
		}
		json_t *list = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(list, api_sched_archived_json(&v[i]));
		store_report_archived_array_free(v, n);
		api_read_reply_json(out, 200, json_pack("{s:o}", "reports", list));
		return;
	}
	struct store_report_archived a;
	int rc = store_report_archive_get(r->st, r->id, &a);
	if (rc == -ENOENT) {
		api_read_reply_error(out, 404, "no such archived report");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_report_archive_get", rc);
		return;
	}
	bool csv = strcmp(a.format, "csv") == 0;
	api_read_reply_bytes(out, 200, csv ? "text/csv; charset=utf-8" : "application/pdf", a.data,
			     a.size);
	/* report and period are [A-Za-z0-9_-] (store.c): safe in the header */
	out->disposition = xasprintf("attachment; filename=\"%s-%s-%lld.%s\"", a.report, a.period,
				     (long long)a.id, csv ? "csv" : "pdf");
	a.data = NULL;
	store_report_archived_clear(&a);
}

static void api_sched_archive(struct http_server_request *req, void *arg, bool one)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct api_sched_archive_read *r = xcalloc(1, sizeof(*r));
	r->st = api_store(a);
	if (one) {
		r->id = api_sched_id(req);
		if (r->id < 0) {
			free(r);
			http_server_reply_error(req, 404, "no such archived report");
			return;
		}
	}
	api_read_submit(api_reads(a), req, "report_archive", api_sched_archive_work, NULL, r, free);
}

static void api_sched_archive_list(struct http_server_request *req, void *arg)
{
	api_sched_archive(req, arg, false);
}

static void api_sched_archive_get(struct http_server_request *req, void *arg)
{
	api_sched_archive(req, arg, true);
}

void api_report_sched_register(struct api *a, api_sched_mail_fn mail, void *mail_arg)
{
	api_sched_mail = mail;
	api_sched_mail_arg = mail_arg;
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/report-schedules", HTTP_SERVER_ROUTE_AUTH, api_sched_create},
	    {"GET", "/api/v1/report-schedules", HTTP_SERVER_ROUTE_AUTH, api_sched_list},
	    {"DELETE", "/api/v1/report-schedules/{id}", HTTP_SERVER_ROUTE_AUTH, api_sched_delete},
	    {"POST", "/api/v1/report-schedules/{id}/run", HTTP_SERVER_ROUTE_AUTH, api_sched_run},
	    {"GET", "/api/v1/report-archive", HTTP_SERVER_ROUTE_AUTH, api_sched_archive_list},
	    {"GET", "/api/v1/report-archive/{id}", HTTP_SERVER_ROUTE_AUTH, api_sched_archive_get},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
