/*
 * api_reports — the report routes (api_reports.h): the period arithmetic, the
 * JSON and CSV of a report, and the handler, which checks the caller's role on
 * the loop thread and reads the store on a reader thread (api_read.h).
 *
 * A period is whole buckets of one granularity (UTC), chosen so that a report
 * reads at most a few hundred buckets: hour and day (and the previous day) by
 * the hour, week, 30 and 90 days and the previous month by the day, a year by
 * the month; a custom range by the hour up to 2 days, by the day up to 400
 * days, else by the month, its ends rounded out to whole buckets.
 *
 * system_capacity is not a rollup's report: its rows are the gateways' capacity
 * samples by hour (store_capacity_read), with columns of its own (sums, peaks,
 * averages), in JSON, CSV and a PDF table.
 *
 * Not for: counting (store_report.c), the SQL (store_*_report.c).
 */
#include "api/api_reports.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_read.h"
#include "api/api_report_pdf.h"
#include "store/store.h"

#define HOUR_MS 3600000LL
#define DAY_MS	86400000LL
/* The longest custom range: 10 years. */
#define API_REPORTS_MAX_RANGE (3660 * DAY_MS)

static const char *const api_reports_keys[] = {"period",  "since", "until",
					       "gateway", "limit", "format"};
#define API_REPORTS_NKEYS (sizeof(api_reports_keys) / sizeof(api_reports_keys[0]))

static const char *const api_reports_grans[] = {"hour", "day", "month"};

/* The start of the month n months after the one holding at (n may be negative). */
static int64_t api_reports_month_add(int64_t at, int n)
{
	time_t t = (time_t)(store_report_bucket(STORE_REPORT_MONTH, at) / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_mon += n;
	return (int64_t)timegm(&tm) * 1000;
}

/* The start of the bucket after the one starting at b. */
static int64_t api_reports_next(int gran, int64_t b)
{
	if (gran == STORE_REPORT_HOUR)
		return b + HOUR_MS;
	if (gran == STORE_REPORT_DAY)
		return b + DAY_MS;
	return api_reports_month_add(b, 1);
}

static int api_reports_time(const char *name, const char *value, int64_t *out, char **err)
{
	if (value == NULL) {
		*err = xasprintf("period=custom needs \"%s\"", name);
		return -EINVAL;
	}
	if (clock_parse_rfc3339(value, out) < 0 || *out < 0) {
		*err = xasprintf("\"%s\" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)",
				 name);
		return -EINVAL;
	}
	return 0;
}

/* The period called name at now into p (gran, since, until). */
static int api_reports_period(const char *name, const char *since, const char *until, int64_t now,
			      struct api_reports_params *p, char **err)
{
	int64_t hour = store_report_bucket(STORE_REPORT_HOUR, now);
	int64_t day = store_report_bucket(STORE_REPORT_DAY, now);
	static const char *const names[] = {"hour",	"day",	      "week", "30d",   "90d",
					    "prev_day", "prev_month", "year", "custom"};
	size_t i = 0;
	while (i < sizeof(names) / sizeof(names[0]) && strcmp(names[i], name) != 0)
		i++;
	if (i == sizeof(names) / sizeof(names[0])) {
		*err = xasprintf("\"period\" must be one of hour, day, week, 30d, 90d, prev_day, "
				 "prev_month, year, custom");
		return -EINVAL;
	}
	p->period = names[i];
	if (i != 8 && (since != NULL || until != NULL)) {
		*err = xasprintf("\"since\" and \"until\" go with period=custom only");
		return -EINVAL;
	}
	p->until = now + 1;
	switch (i) {
	case 0: /* the current hour and the one before: the last 60 minutes in whole hours */
		p->gran = STORE_REPORT_HOUR;
		p->since = hour - HOUR_MS;
		break;
	case 1: /* the last 24 hours, this one included */
		p->gran = STORE_REPORT_HOUR;
		p->since = hour - 23 * HOUR_MS;
		break;
	case 2:
	case 3:
	case 4: /* the last 7, 30, 90 days, today included */
		p->gran = STORE_REPORT_DAY;
		p->since = day - (i == 2 ? 6 : i == 3 ? 29 : 89) * DAY_MS;
		break;
	case 5:
		p->gran = STORE_REPORT_HOUR;
		p->since = day - DAY_MS;
		p->until = day;
		break;
	case 6:
		p->gran = STORE_REPORT_DAY;
		p->since = api_reports_month_add(now, -1);
		p->until = store_report_bucket(STORE_REPORT_MONTH, now);
		break;
	case 7: /* the last 12 months, this one included */
		p->gran = STORE_REPORT_MONTH;
		p->since = api_reports_month_add(now, -11);
		break;
	default: {
		int64_t s, u;
		if (api_reports_time("since", since, &s, err) < 0 ||
		    api_reports_time("until", until, &u, err) < 0)
			return -EINVAL;
		if (u <= s) {
			*err = xasprintf("\"until\" must be after \"since\"");
			return -EINVAL;
		}
		if (u - s > API_REPORTS_MAX_RANGE) {
			*err = xasprintf("a custom range must be at most 3660 days");
			return -EINVAL;
		}
		p->gran = u - s <= 2 * DAY_MS	  ? STORE_REPORT_HOUR
			  : u - s <= 400 * DAY_MS ? STORE_REPORT_DAY
						  : STORE_REPORT_MONTH;
		p->since = store_report_bucket(p->gran, s);
		p->until = u;
	}
	}
	return 0;
}

int api_reports_parse(const char *report, api_reports_query_fn get, void *arg, int64_t now,
		      struct api_reports_params *out, char **err)
{
	const char *v[API_REPORTS_NKEYS];
	memset(out, 0, sizeof(*out));
	*err = NULL;
	out->report = store_report_by_name(report);
	if (out->report < 0 && report != NULL && strcmp(report, "system_capacity") == 0)
		out->report = API_REPORTS_SYSTEM_CAPACITY;
	if (out->report < 0) {
		struct strbuf b = {0};
		for (int i = 0; i < STORE_REPORT_NREPORTS; i++)
			strbuf_printf(&b, "%s%s", i > 0 ? ", " : "", store_report_names[i]);
		*err = xasprintf("no such report: the reports are %s, system_capacity",
				 strbuf_str(&b));
		strbuf_free(&b);
		return -EINVAL;
	}
	out->limit = API_REPORTS_DEFAULT_LIMIT;
	for (size_t i = 0; i < API_REPORTS_NKEYS; i++) {
		size_t count = 0;
		v[i] = get(arg, api_reports_keys[i], &count);
		if (count > 1) {
			*err = xasprintf("query parameter \"%s\" given more than once",
					 api_reports_keys[i]);
			return -EINVAL;
		}
		if (v[i] != NULL && v[i][0] == '\0')
			v[i] = NULL;
	}
	if (api_reports_period(v[0] != NULL ? v[0] : "day", v[1], v[2], now, out, err) < 0)
		return -EINVAL;
	if (v[3] != NULL) {
		if (!store_gateway_name_ok(v[3])) {
			*err = xasprintf("\"gateway\" is not a gateway name");
			return -EINVAL;
		}
		out->gateway = xstrdup(v[3]);
	}
	if (v[4] != NULL) {
		size_t n = 0;
		const char *p = v[4];
		for (; *p >= '0' && *p <= '9' && n <= STORE_REPORT_LIMIT_MAX; p++)
			n = n * 10 + (size_t)(*p - '0');
		if (*p != '\0' || n < 1 || n > STORE_REPORT_LIMIT_MAX) {
			*err = xasprintf("\"limit\" must be a number from 1 to %d",
					 STORE_REPORT_LIMIT_MAX);
			api_reports_params_clear(out);
			return -EINVAL;
		}
		out->limit = n;
	}
	if (v[5] != NULL) {
		if (strcmp(v[5], "csv") == 0) {
			out->csv = true;
		} else if (strcmp(v[5], "pdf") == 0) {
			out->pdf = true;
		} else if (strcmp(v[5], "json") != 0) {
			*err = xasprintf("\"format\" must be json, csv or pdf");
			api_reports_params_clear(out);
			return -EINVAL;
		}
	}
	return 0;
}

void api_reports_params_clear(struct api_reports_params *p)
{
	free(p->gateway);
	p->gateway = NULL;
}

/* ---- JSON and CSV ---- */

static void api_reports_set(json_t *o, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(o, key, v) != 0)
		panic("api_reports: cannot build JSON for \"%s\"", key);
}

static json_t *api_reports_time_json(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	clock_format_rfc3339(ms, buf);
	return json_string(buf);
}

/* The counters' names in JSON and CSV, by enum store_report_counter. */
static const char *const api_reports_counters[STORE_REPORT_NCOUNTERS] = {
    "incoming", "clean", "spam", "suspect", "virus", "content_filter", "count"};

/* The overview calls its count rejected_connections. */
static const char *api_reports_counter(int report, int j)
{
	if (j == STORE_REPORT_COUNT && report == STORE_REPORT_OVERVIEW)
		return "rejected_connections";
	return api_reports_counters[j];
}

static void api_reports_counters_json(json_t *o, int report, const int64_t *c)
{
	for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
		api_reports_set(o, api_reports_counter(report, j), json_integer((json_int_t)c[j]));
}

/* A CSV field: quoted, quotes doubled; a leading =, +, -, @, tab or CR gets a ' so that
 * a spreadsheet never reads a sender's text as a formula. */
static void api_reports_csv_field(struct strbuf *b, const char *s)
{
	strbuf_addc(b, '"');
	if (strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0')
		strbuf_addc(b, '\'');
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"')
			strbuf_addc(b, '"');
		strbuf_addc(b, *p);
	}
	strbuf_addc(b, '"');
}

struct api_reports_read {
	struct store *st;
	struct api_reports_params p;
};

static void api_reports_read_free(void *arg)
{
	struct api_reports_read *r = arg;
	api_reports_params_clear(&r->p);
	free(r);
}

/* Reader thread: the PDF of the rows v[n] read for p (a series has a row per bucket). */
static void api_reports_pdf(const struct api_reports_params *p, struct store_report_row *v,
			    size_t n, struct api_read_reply *out)
{
	struct store_report_row *dense = NULL;
	size_t ndense = 0;
	if (p->report == STORE_REPORT_OVERVIEW) {
		/* every bucket of the period, the empty ones as zeros */
		size_t cap = 0, k = 0;
		for (int64_t b = p->since; b < p->until; b = api_reports_next(p->gran, b))
			cap++;
		dense = xcalloc(cap > 0 ? cap : 1, sizeof(*dense));
		for (int64_t b = p->since; b < p->until; b = api_reports_next(p->gran, b)) {
			while (k < n && v[k].at < b)
				k++;
			dense[ndense].at = b;
			if (k < n && v[k].at == b)
				memcpy(dense[ndense].c, v[k].c, sizeof(dense[ndense].c));
			ndense++;
		}
	}
	struct api_report_pdf d = {.report = p->report,
				   .period = p->period,
				   .gran = p->gran,
				   .since = p->since,
				   .until = p->until,
				   .gateway = p->gateway,
				   .rows = dense != NULL ? dense : v,
				   .n = dense != NULL ? ndense : n};
	unsigned char *pdf = NULL;
	size_t len = 0;
	int rc = api_report_pdf_render(&d, &pdf, &len);
	if (rc < 0) {
		free(dense);
		api_read_reply_error(out, 500, "the report's PDF could not be drawn");
		return;
	}
	api_read_reply_bytes(out, 200, "application/pdf", pdf, len);
	char *name = api_report_pdf_filename(&d);
	out->disposition = xasprintf("attachment; filename=\"%s\"", name);
	free(name);
	free(dense);
}

/* ---- system_capacity ---- */

/* The columns of a system_capacity bucket, in JSON and CSV. */
static const char *const api_reports_cap_cols[] = {
    "samples",		"messages_in", "messages_out", "connections", "connections_avg",
    "connections_peak", "load_avg",    "load_max",     "memory_max",  "backlog_max"};
#define API_REPORTS_CAP_NCOLS (sizeof(api_reports_cap_cols) / sizeof(api_reports_cap_cols[0]))

/* Whether column j is a decimal (averages, load) rather than a count. */
static bool api_reports_cap_real(size_t j)
{
	return j == 4 || j == 6 || j == 7;
}

/*
 * The columns of row c as numbers (x) and whether each is known (averages are
 * not without a sample): counts, averages of open connections and load, the
 * load in its unit (the store keeps hundredths).
 */
static void api_reports_cap_values(const struct store_capacity_row *c,
				   double x[API_REPORTS_CAP_NCOLS],
				   bool known[API_REPORTS_CAP_NCOLS])
{
	double n = (double)c->samples;
	double v[API_REPORTS_CAP_NCOLS] = {(double)c->samples,
					   (double)c->received,
					   (double)c->relayed,
					   (double)c->connections,
					   n > 0 ? (double)c->current_sum / n : 0,
					   (double)c->current_max,
					   n > 0 ? (double)c->load_sum / n / 100.0 : 0,
					   (double)c->load_max / 100.0,
					   (double)c->memory_max,
					   (double)c->backlog_max};
	for (size_t j = 0; j < API_REPORTS_CAP_NCOLS; j++) {
		/* decimals to hundredths, the same in JSON and CSV */
		x[j] =
		    api_reports_cap_real(j) ? (double)(int64_t)(v[j] * 100.0 + 0.5) / 100.0 : v[j];
		known[j] = c->samples > 0;
	}
	for (size_t j = 0; j < 4; j++)
		known[j] = true; /* counts: an empty bucket holds zeros */
}

/* The PDF's column names (short: ten columns on A4). */
static const char *const api_reports_cap_pdf_cols[API_REPORTS_CAP_NCOLS] = {
    "Samples",	"In",	    "Relayed",	"Conns",   "Open avg",
    "Open max", "Load avg", "Load max", "Mem MiB", "Backlog"};

/* Row c's PDF cells into cells[0..API_REPORTS_CAP_NCOLS) (new strings). */
static void api_reports_cap_cells(const struct store_capacity_row *c, char **cells)
{
	double x[API_REPORTS_CAP_NCOLS];
	bool known[API_REPORTS_CAP_NCOLS];
	api_reports_cap_values(c, x, known);
	for (size_t j = 0; j < API_REPORTS_CAP_NCOLS; j++)
		cells[j] = !known[j]		     ? xstrdup("-")
			   : api_reports_cap_real(j) ? xasprintf("%.2f", x[j])
			   : j == 8		     ? xasprintf("%.1f", x[j] / 1048576.0)
						     : xasprintf("%lld", (long long)x[j]);
}

static void api_reports_cap_add(json_t *o, struct strbuf *csv, const struct store_capacity_row *c)
{
	double x[API_REPORTS_CAP_NCOLS];
	bool known[API_REPORTS_CAP_NCOLS];
	api_reports_cap_values(c, x, known);
	for (size_t j = 0; j < API_REPORTS_CAP_NCOLS; j++) {
		json_t *v = !known[j]		      ? json_null()
			    : api_reports_cap_real(j) ? json_real(x[j])
						      : json_integer((json_int_t)x[j]);
		api_reports_set(o, api_reports_cap_cols[j], v);
		if (csv == NULL)
			continue;
		if (!known[j])
			strbuf_puts(csv, ",");
		else if (api_reports_cap_real(j))
			strbuf_printf(csv, ",%.2f", x[j]);
		else
			strbuf_printf(csv, ",%lld", (long long)x[j]);
	}
}

/* Reader thread: the PDF of system_capacity's buckets v[n] and totals tot. */
static void api_reports_cap_pdf(const struct api_reports_params *p,
				const struct store_capacity_row *v, size_t n,
				const struct store_capacity_row *tot, struct api_read_reply *out)
{
	size_t w = 1 + API_REPORTS_CAP_NCOLS;
	char **cells = xcalloc((n + 1) * w + 1, sizeof(*cells));
	for (size_t i = 0; i <= n; i++) {
		const struct store_capacity_row *c = i < n ? &v[i] : tot;
		cells[i * w] = xasprintf("%lld", (long long)(i < n ? c->at : 0));
		api_reports_cap_cells(c, cells + i * w + 1);
	}
	struct api_report_pdf d = {.report = API_REPORTS_SYSTEM_CAPACITY,
				   .period = p->period,
				   .gran = p->gran,
				   .since = p->since,
				   .until = p->until,
				   .gateway = p->gateway,
				   .n = n,
				   .ncols = API_REPORTS_CAP_NCOLS,
				   .columns = api_reports_cap_pdf_cols,
				   .cells = (const char *const *)cells};
	unsigned char *pdf = NULL;
	size_t len = 0;
	if (api_report_pdf_render(&d, &pdf, &len) < 0) {
		api_read_reply_error(out, 500, "the report's PDF could not be drawn");
	} else {
		api_read_reply_bytes(out, 200, "application/pdf", pdf, len);
		char *name = api_report_pdf_filename(&d);
		out->disposition = xasprintf("attachment; filename=\"%s\"", name);
		free(name);
	}
	for (size_t i = 0; i < (n + 1) * w; i++)
		free(cells[i]);
	free(cells);
}

/* Reader thread: the system_capacity report (a series, every bucket of the period). */
static void api_reports_capacity(struct api_reports_read *r, struct api_read_reply *out)
{
	const struct api_reports_params *p = &r->p;
	struct store_capacity_row *v = NULL;
	size_t n = 0;
	int rc = store_capacity_read(r->st, p->gateway, p->gran, p->since, p->until, &v, &n);
	if (rc == -EINVAL) {
		api_read_reply_error(out, 400, "bad report query");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_capacity_read", rc);
		return;
	}
	struct strbuf csv = {0};
	if (p->csv) {
		strbuf_puts(&csv, "at");
		for (size_t j = 0; j < API_REPORTS_CAP_NCOLS; j++)
			strbuf_printf(&csv, ",%s", api_reports_cap_cols[j]);
		strbuf_puts(&csv, "\r\n");
	}
	json_t *body = json_object();
	api_reports_set(body, "report", json_string("system_capacity"));
	api_reports_set(body, "period", json_string(p->period));
	api_reports_set(body, "granularity", json_string(api_reports_grans[p->gran]));
	api_reports_set(body, "since", api_reports_time_json(p->since));
	api_reports_set(body, "until", api_reports_time_json(p->until));
	api_reports_set(body, "gateway", http_json_string_or_null(p->gateway));
	struct store_capacity_row tot = {0}, *dense = NULL;
	size_t ndense = 0;
	json_t *list = json_array();
	size_t k = 0;
	for (int64_t b = p->since; b < p->until; b = api_reports_next(p->gran, b)) {
		struct store_capacity_row c = {.at = b};
		while (k < n && v[k].at < b)
			k++;
		if (k < n && v[k].at == b)
			c = v[k];
		if (p->pdf) {
			dense = xreallocarray(dense, ndense + 1, sizeof(*dense));
			dense[ndense++] = c;
		}
		tot.samples += c.samples;
		tot.received += c.received;
		tot.relayed += c.relayed;
		tot.connections += c.connections;
		tot.current_sum += c.current_sum;
		tot.load_sum += c.load_sum;
		tot.current_max = c.current_max > tot.current_max ? c.current_max : tot.current_max;
		tot.load_max = c.load_max > tot.load_max ? c.load_max : tot.load_max;
		tot.memory_max = c.memory_max > tot.memory_max ? c.memory_max : tot.memory_max;
		tot.backlog_max = c.backlog_max > tot.backlog_max ? c.backlog_max : tot.backlog_max;
		json_t *o = json_object();
		api_reports_set(o, "at", api_reports_time_json(b));
		if (p->csv) {
			char at[CLOCK_RFC3339_LEN];
			clock_format_rfc3339(b, at);
			strbuf_puts(&csv, at);
		}
		api_reports_cap_add(o, p->csv ? &csv : NULL, &c);
		if (p->csv)
			strbuf_puts(&csv, "\r\n");
		json_array_append_new(list, o);
	}
	free(v);
	if (p->pdf) {
		api_reports_cap_pdf(p, dense, ndense, &tot, out);
		free(dense);
		json_decref(list);
		json_decref(body);
		return;
	}
	json_t *t = json_object();
	api_reports_cap_add(t, NULL, &tot);
	api_reports_set(body, "totals", t);
	api_reports_set(body, "series", list);
	if (p->csv) {
		json_decref(body);
		size_t len = strlen(strbuf_str(&csv));
		api_read_reply_bytes(out, 200, "text/csv; charset=utf-8",
				     (unsigned char *)strbuf_take(&csv), len);
		return;
	}
	api_read_reply_json(out, 200, body);
}

/* Reader thread: the report. */
static void api_reports_work(void *arg, struct api_read_reply *out)
{
	struct api_reports_read *r = arg;
	const struct api_reports_params *p = &r->p;
	if (p->report == API_REPORTS_SYSTEM_CAPACITY) {
		api_reports_capacity(r, out);
		return;
	}
	bool series = p->report == STORE_REPORT_OVERVIEW;
	struct store_report_query q = {.report = p->report,
				       .gran = p->gran,
				       .since = p->since,
				       .until = p->until,
				       .gateway = p->gateway,
				       .series = series,
				       .limit = p->limit};
	struct store_report_row *v = NULL;
	size_t n = 0;
	int rc = store_report_read(r->st, &q, &v, &n);
	if (rc == -EINVAL) {
		api_read_reply_error(out, 400, "bad report query");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_report_read", rc);
		return;
	}
	if (p->pdf) {
		api_reports_pdf(p, v, n, out);
		store_report_rows_free(v, n);
		return;
	}
	const char *report = store_report_names[p->report];
	struct strbuf csv = {0};
	json_t *body = json_object();
	if (p->csv) {
		strbuf_puts(&csv, series ? "at" : "key");
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			strbuf_printf(&csv, ",%s", api_reports_counter(p->report, j));
		strbuf_puts(&csv, "\r\n");
	}
	api_reports_set(body, "report", json_string(report));
	api_reports_set(body, "period", json_string(p->period));
	api_reports_set(body, "granularity", json_string(api_reports_grans[p->gran]));
	api_reports_set(body, "since", api_reports_time_json(p->since));
	api_reports_set(body, "until", api_reports_time_json(p->until));
	api_reports_set(body, "gateway", http_json_string_or_null(p->gateway));
	if (series) {
		/* every bucket of the period, the empty ones as zeros */
		int64_t tot[STORE_REPORT_NCOUNTERS] = {0};
		json_t *list = json_array();
		size_t k = 0;
		for (int64_t b = p->since; b < p->until; b = api_reports_next(p->gran, b)) {
			int64_t zero[STORE_REPORT_NCOUNTERS] = {0};
			const int64_t *c = zero;
			while (k < n && v[k].at < b)
				k++;
			if (k < n && v[k].at == b)
				c = v[k].c;
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				tot[j] += c[j];
			json_t *o = json_object();
			api_reports_set(o, "at", api_reports_time_json(b));
			api_reports_counters_json(o, p->report, c);
			json_array_append_new(list, o);
			if (p->csv) {
				char at[CLOCK_RFC3339_LEN];
				clock_format_rfc3339(b, at);
				strbuf_puts(&csv, at);
				for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
					strbuf_printf(&csv, ",%lld", (long long)c[j]);
				strbuf_puts(&csv, "\r\n");
			}
		}
		json_t *t = json_object();
		api_reports_counters_json(t, p->report, tot);
		api_reports_set(body, "totals", t);
		api_reports_set(body, "series", list);
	} else {
		json_t *list = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *o = json_object();
			/* keys come from checked JSON; never trust a store for UTF-8 though */
			json_t *key = json_string(v[i].key);
			api_reports_set(o, "key", key != NULL ? key : json_string("\xef\xbf\xbd"));
			api_reports_counters_json(o, p->report, v[i].c);
			json_array_append_new(list, o);
			if (p->csv) {
				api_reports_csv_field(&csv, v[i].key);
				for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
					strbuf_printf(&csv, ",%lld", (long long)v[i].c[j]);
				strbuf_puts(&csv, "\r\n");
			}
		}
		api_reports_set(body, "rows", list);
	}
	store_report_rows_free(v, n);
	if (p->csv) {
		json_decref(body);
		size_t len = strlen(strbuf_str(&csv));
		api_read_reply_bytes(out, 200, "text/csv; charset=utf-8",
				     (unsigned char *)strbuf_take(&csv), len);
		return;
	}
	api_read_reply_json(out, 200, body);
}

int api_reports_render(struct store *st, const struct api_reports_params *p, unsigned char **out,
		       size_t *len)
{
	struct api_reports_read r = {.st = st, .p = *p};
	struct api_read_reply rep = {0};
	*out = NULL;
	*len = 0;
	if (!p->csv && !p->pdf)
		return -EINVAL;
	api_reports_work(&r, &rep);
	json_decref(rep.json);
	free(rep.disposition);
	if (rep.status != 200 || rep.bytes == NULL) {
		free(rep.bytes);
		return rep.store_rc < 0 ? rep.store_rc : -EIO;
	}
	*out = rep.bytes;
	*len = rep.len;
	return 0;
}

/* api_reports_query_fn over a request. */
static const char *api_reports_req_get(void *arg, const char *key, size_t *count)
{
	struct http_server_request *req = arg;
	*count = http_server_request_query_count(req, key);
	return http_server_request_query(req, key);
}

static void api_reports_get(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct api_reports_read *r = xcalloc(1, sizeof(*r));
	r->st = api_store(a);
	char *err = NULL;
	int rc = api_reports_parse(http_server_request_param(req, "report"), api_reports_req_get,
				   req, clock_now_ms(), &r->p, &err);
	if (rc < 0) {
		http_server_reply_error(req, 400, "%s", err);
		free(err);
		api_reports_read_free(r);
		return;
	}
	api_read_submit(api_reads(a), req, "report", api_reports_work, NULL, r,
			api_reports_read_free);
}

void api_reports_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"GET", "/api/v1/reports/{report}", HTTP_SERVER_ROUTE_AUTH, api_reports_get},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
