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
#include "common/tz.h"
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

int64_t api_sched_next_run_at(const char *every, int at_minute, const struct tz_zone *tz,
			      int64_t now)
{
	if (every == NULL || at_minute < 0 || at_minute >= 1440 || now < 0)
		return -1;
	bool daily = strcmp(every, "daily") == 0, weekly = strcmp(every, "weekly") == 0,
	     monthly = strcmp(every, "monthly") == 0;
	if (!daily && !weekly && !monthly)
		return -1;
	/* from the local day before now's, in case a clock change moved the time */
	int64_t day = (now + (tz != NULL ? tz_offset(tz, now) : 0)) / 86400 - 1;
	for (int i = 0; i < 40; i++, day++) {
		time_t t = (time_t)(day * 86400);
		struct tm d;
		gmtime_r(&t, &d);
		if ((weekly && d.tm_wday != 1) || (monthly && d.tm_mday != 1))
			continue;
		int64_t at = tz != NULL ? tz_to_utc(tz, d.tm_year + 1900, d.tm_mon + 1, d.tm_mday,
						    at_minute / 60, at_minute % 60)
					: day * 86400 + at_minute * 60;
		if (at > now)
			return at;
	}
	return -1;
}

int64_t api_sched_next_run(const char *every, int64_t now)
{
	return api_sched_next_run_at(every, API_SCHED_HOUR * 60, NULL, now);
}

int64_t api_sched_mail_backoff(int tries)
{
	/* 1 min, 5 min, 15 min, 1 h, then every 4 h */
	static const int64_t steps[] = {60, 300, 900, 3600};
	if (tries < 1)
		return steps[0];
	return tries <= 4 ? steps[tries - 1] : 4 * 3600;
}

int64_t api_sched_next_for(const struct store_report_schedule *s, int64_t now)
{
	struct tz_zone *tz = NULL;
	if (s->time_zone != NULL && strcmp(s->time_zone, "UTC") != 0 &&
	    tz_load(s->time_zone, &tz) < 0)
		return -1;
	int64_t next = api_sched_next_run_at(s->every, s->at_minute, tz, now);
	tz_free(tz);
	return next;
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
	char at[8];
	snprintf(at, sizeof(at), "%02d:%02d", s->at_minute / 60 % 24, s->at_minute % 60);
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:s, s:s}", "id",
			 (json_int_t)s->id, "report", s->report, "period", s->period, "every",
			 s->every, "format", s->format, "recipients", rc, "created_by",
			 s->created_by, "created_at", api_sched_time_json(s->created_at),
			 "next_run", api_sched_time_json(s->next_run), "last_run",
			 api_sched_time_json(s->last_run), "at", at, "time_zone",
			 s->time_zone != NULL ? s->time_zone : "UTC");
}

/* A copy's mail: "none" (never meant), "sent", "pending" or "failed" (given up). */
static const char *api_sched_mail_state(const struct store_report_archived *a)
{
	bool left = a->mail_pending != NULL && a->mail_pending[0] != '\0';
	if (!left)
		return a->mail_tries > 0 ? "sent" : "none";
	return a->mail_next > 0 ? "pending" : "failed";
}

static json_t *api_sched_archived_json(const struct store_report_archived *a)
{
	json_t *left = json_array();
	const char *p = a->mail_pending;
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		json_array_append_new(left, json_stringn(p, n));
		p = nl != NULL ? nl + 1 : NULL;
	}
	bool pending = strcmp(api_sched_mail_state(a), "pending") == 0;
	json_t *mail = json_pack(
	    "{s:s, s:i, s:o, s:o}", "state", api_sched_mail_state(a), "tries", a->mail_tries,
	    "next_try", pending ? api_sched_time_json(a->mail_next) : json_null(), "pending", left);
	return json_pack(
	    "{s:I, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:o}", "id", (json_int_t)a->id,
	    "schedule_id", a->schedule_id > 0 ? json_integer(a->schedule_id) : json_null(),
	    "report", a->report, "period", a->period, "format", a->format, "since",
	    api_sched_time_json(a->from / 1000), "until", api_sched_time_json(a->to / 1000),
	    "created_at", api_sched_time_json(a->created_at), "size", (json_int_t)a->size, "mail",
	    mail);
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

/*
 * Checks body (a schedule as POST and PUT take it) into *s, its strings new
 * (store_report_schedule_clear), next_run worked out from now. 0, or -1 after a
 * 400 reply.
 */
static int api_sched_parse(struct http_server_request *req, const json_t *body, int64_t now,
			   struct store_report_schedule *s)
{
	char *err = NULL;
	struct strbuf rcpts = {0};
	memset(s, 0, sizeof(*s));
	static const char *const allowed[] = {"report",	    "period", "every",	   "format",
					      "recipients", "at",     "time_zone", NULL};
	if (http_json_check_keys(body, allowed, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto bad;
	}
	const char *report = json_string_value(json_object_get(body, "report"));
	const char *period = json_string_value(json_object_get(body, "period"));
	const char *every = json_string_value(json_object_get(body, "every"));
	const json_t *jformat = json_object_get(body, "format");
	const json_t *jat = json_object_get(body, "at");
	const json_t *jzone = json_object_get(body, "time_zone");
	const json_t *list = json_object_get(body, "recipients");
	if (report == NULL || period == NULL || every == NULL) {
		http_server_reply_error(req, 400,
					"\"report\", \"period\" and \"every\" are needed");
		goto bad;
	}
	struct api_reports_params p;
	if (api_reports_parse(report, api_sched_period_get, unconst(period), now * 1000, &p, &err) <
	    0) {
		http_server_reply_error(req, 400, "%s", err);
		goto bad;
	}
	bool custom = strcmp(p.period, "custom") == 0;
	api_reports_params_clear(&p);
	if (custom) {
		http_server_reply_error(req, 400, "a schedule cannot use period=custom");
		goto bad;
	}
	if (api_sched_next_run(every, now) < 0) {
		http_server_reply_error(req, 400, "\"every\" must be daily, weekly or monthly");
		goto bad;
	}
	const char *format = jformat == NULL ? "pdf" : json_string_value(jformat);
	if (format == NULL || (strcmp(format, "pdf") != 0 && strcmp(format, "csv") != 0)) {
		http_server_reply_error(req, 400, "\"format\" must be pdf or csv");
		goto bad;
	}
	int at_minute = API_SCHED_HOUR * 60;
	if (jat != NULL) {
		const char *t = json_string_value(jat);
		if (t == NULL || strlen(t) != 5 || t[2] != ':' || t[0] < '0' || t[0] > '2' ||
		    t[1] < '0' || t[1] > '9' || t[3] < '0' || t[3] > '5' || t[4] < '0' ||
		    t[4] > '9' || (t[0] - '0') * 10 + (t[1] - '0') > 23) {
			http_server_reply_error(req, 400,
						"\"at\" must be a time of day as HH:MM (00:00 to "
						"23:59)");
			goto bad;
		}
		at_minute =
		    ((t[0] - '0') * 10 + (t[1] - '0')) * 60 + (t[3] - '0') * 10 + (t[4] - '0');
	}
	const char *zone = "UTC";
	if (jzone != NULL) {
		zone = json_string_value(jzone);
		struct tz_zone *tz = NULL;
		int rc = zone != NULL && strlen(zone) <= STORE_SCHED_NAME_MAX ? tz_load(zone, &tz)
									      : -EINVAL;
		tz_free(tz);
		if (rc < 0) {
			http_server_reply_error(req, 400,
						"\"time_zone\" must be a zone of the tz database "
						"(\"UTC\", \"Asia/Tokyo\")");
			goto bad;
		}
	}
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > API_SCHED_RECIPIENTS_MAX) {
		http_server_reply_error(req, 400,
					"\"recipients\" must be a list of 1 to %d addresses",
					API_SCHED_RECIPIENTS_MAX);
		goto bad;
	}
	size_t i;
	const json_t *v;
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) || !api_sched_address_ok(json_string_value(v))) {
			http_server_reply_error(req, 400, "recipient %zu is not a mail address",
						i + 1);
			goto bad;
		}
		strbuf_printf(&rcpts, "%s%s", i > 0 ? "\n" : "", json_string_value(v));
	}
	s->report = xstrdup(report);
	s->period = xstrdup(period);
	s->every = xstrdup(every);
	s->format = xstrdup(format);
	s->recipients = strbuf_take(&rcpts);
	s->at_minute = at_minute;
	s->time_zone = xstrdup(zone);
	s->next_run = api_sched_next_for(s, now);
	if (s->next_run < 0) {
		http_server_reply_error(req, 400, "no time to send this schedule at");
		store_report_schedule_clear(s);
		goto bad;
	}
	return 0;
bad:
	free(err);
	strbuf_free(&rcpts);
	return -1;
}

static void api_sched_create(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (api_body_object(a, req, &body) < 0)
		return;
	int64_t now = clock_now_ms() / 1000;
	struct store_report_schedule s;
	if (api_sched_parse(req, body, now, &s) < 0) {
		json_decref(body);
		return;
	}
	const struct api_actor *who = api_actor(a, req);
	s.created_by = xstrdup(who->username);
	s.created_at = now;
	int rc = store_report_schedule_add(api_store(a), &s, &s.id);
	if (rc == -EINVAL)
		http_server_reply_error(req, 400, "bad schedule");
	else if (rc < 0)
		api_reply_store_error(req, "store_report_schedule_add", rc);
	else {
		json_t *out = api_sched_json(&s);
		api_audit(a, req, "report_schedule.create", s.report, json_incref(out));
		http_server_reply_json(req, 201, out);
	}
	store_report_schedule_clear(&s);
	json_decref(body);
}

/* The schedule id from the store into *out: 0, or -1 after a reply. */
static int api_sched_find(struct api *a, struct http_server_request *req, int64_t id,
			  struct store_report_schedule *out)
{
	struct store_report_schedule *v = NULL;
	size_t n = 0;
	memset(out, 0, sizeof(*out));
	int rc = store_report_schedule_list(api_store(a), &v, &n);
	if (rc < 0) {
		api_reply_store_error(req, "store_report_schedule_list", rc);
		return -1;
	}
	bool found = false;
	for (size_t i = 0; i < n && !found; i++)
		if (v[i].id == id) {
			*out = v[i];
			memset(&v[i], 0, sizeof(v[i]));
			found = true;
		}
	store_report_schedule_array_free(v, n);
	if (!found) {
		http_server_reply_error(req, 404, "no such schedule");
		return -1;
	}
	return 0;
}

static void api_sched_update(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	int64_t id = api_sched_id(req);
	struct store_report_schedule old;
	if (id < 0) {
		http_server_reply_error(req, 404, "no such schedule");
		return;
	}
	if (api_sched_find(a, req, id, &old) < 0)
		return;
	if (api_body_object(a, req, &body) < 0) {
		store_report_schedule_clear(&old);
		return;
	}
	int64_t now = clock_now_ms() / 1000;
	struct store_report_schedule s;
	if (api_sched_parse(req, body, now, &s) < 0)
		goto done;
	s.id = id;
	int rc = store_report_schedule_update(api_store(a), &s);
	if (rc == -ENOENT)
		http_server_reply_error(req, 404, "no such schedule");
	else if (rc == -EINVAL)
		http_server_reply_error(req, 400, "bad schedule");
	else if (rc < 0)
		api_reply_store_error(req, "store_report_schedule_update", rc);
	else {
		s.created_by = old.created_by;
		s.created_at = old.created_at;
		s.last_run = old.last_run;
		old.created_by = NULL;
		json_t *out = api_sched_json(&s);
		api_audit(a, req, "report_schedule.update", http_server_request_param(req, "id"),
			  json_incref(out));
		http_server_reply_json(req, 200, out);
	}
	store_report_schedule_clear(&s);
done:
	store_report_schedule_clear(&old);
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
		   int64_t mail_next, struct store_report_archived *out)
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
		*out = (struct store_report_archived){
		    .schedule_id = s->id,
		    .report = xstrdup(s->report),
		    .period = xstrdup(s->period),
		    .format = xstrdup(s->format),
		    .from = p.since,
		    .to = p.until,
		    .created_at = now_ms / 1000,
		    .data = doc,
		    .size = len,
		    .mail_pending = xstrdup(mail_next > 0 ? s->recipients : ""),
		    .mail_next = mail_next};
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
	int64_t now_ms = clock_now_ms();
	int rc =
	    api_sched_make(r->st, &r->s, now_ms,
			   api_sched_mail != NULL ? now_ms / 1000 + API_SCHED_MAIL_LEASE : 0, &a);
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
	struct store_report_schedule s;
	if (id < 0) {
		http_server_reply_error(req, 404, "no such schedule");
		return;
	}
	if (api_sched_find(a, req, id, &s) < 0)
		return;
	struct api_sched_run *r = xcalloc(1, sizeof(*r));
	r->st = api_store(a);
	r->s = s;
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
	    {"PUT", "/api/v1/report-schedules/{id}", HTTP_SERVER_ROUTE_AUTH, api_sched_update},
	    {"POST", "/api/v1/report-schedules/{id}/run", HTTP_SERVER_ROUTE_AUTH, api_sched_run},
	    {"GET", "/api/v1/report-archive", HTTP_SERVER_ROUTE_AUTH, api_sched_archive_list},
	    {"GET", "/api/v1/report-archive/{id}", HTTP_SERVER_ROUTE_AUTH, api_sched_archive_get},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
