/*
 * api_reports — the reports of gateways' traffic for administrators
 * (docs/openapi.yaml, tag reports): GET /api/v1/reports/{report} reads the
 * reporting rollups (store_report_read) for a period, per gateway or all, as
 * JSON, CSV or PDF (api_report_pdf.h). The query string is read by api_reports_parse (no I/O); the
 * store is read on a reader thread. An extension of the API core: the daemon adds it with
 * api_reports_register.
 *
 * Only administrators read reports: they cross every gateway and name senders
 * and recipients, which neither an end user's nor a scoped operator's view
 * allows.
 *
 * Not for: counting (store_report.c), the SQL (store_*_report.c).
 */
#ifndef LAZARET_API_REPORTS_H
#define LAZARET_API_REPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;

/* Rows of a top-N report when the query gives no limit. */
#define API_REPORTS_DEFAULT_LIMIT 10

/* The value of query parameter key and how often it came (*count; 0: absent). */
typedef const char *(*api_reports_query_fn)(void *arg, const char *key, size_t *count);

/* A parsed report request. */
/* The report that is not a rollup's: the gateways' capacity samples (store.h). */
#define API_REPORTS_SYSTEM_CAPACITY STORE_REPORT_NREPORTS

struct api_reports_params {
	int report;	      /* enum store_report_kind, or API_REPORTS_SYSTEM_CAPACITY */
	const char *period;   /* its name, static */
	int gran;	      /* enum store_report_gran */
	int64_t since, until; /* buckets with since <= start < until (Unix ms) */
	char *gateway;	      /* NULL: all */
	size_t limit;
	bool csv;
	bool pdf;
};

/*
 * Reads report (the path's name) and the query string through get, with now
 * the current time (Unix ms). 0, or -EINVAL with *err a new message for the
 * client's 400 (the first bad parameter; an unknown report too).
 */
int api_reports_parse(const char *report, api_reports_query_fn get, void *arg, int64_t now,
		      struct api_reports_params *out, char **err);
void api_reports_params_clear(struct api_reports_params *p);

struct store;
/*
 * Reader thread (it reads the store): p's report as CSV or PDF (p->csv or p->pdf)
 * into *out (malloc()ed) and *len, as GET /api/v1/reports/{report} answers it.
 * 0, -EINVAL without a format, or the store's error / -EIO.
 */
int api_reports_render(struct store *st, const struct api_reports_params *p, unsigned char **out,
		       size_t *len);

/* Adds the routes to a's server. */
void api_reports_register(struct api *a);

#endif
