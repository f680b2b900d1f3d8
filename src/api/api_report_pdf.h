/*
 * api_report_pdf — a report as a PDF (GET /api/v1/reports/{report}?format=pdf),
 * drawn with cairo's PDF surface and the Noto Sans CJK font found through
 * fontconfig (cairo-ft), so that Japanese keys render: on every page the
 * report's title, its period (from–to, UTC), the gateways and "n / N"; the
 * overview with a stacked bar chart of the buckets, its totals and the buckets'
 * table, a top-N report with a bar chart of its first rows and the rows' table,
 * system_capacity with its totals and a row per bucket (a table of text);
 * tables continue over pages with their header repeated.
 *
 * Pure: no store, no I/O besides fonts; safe on any thread (reader threads call
 * it). Keys are any bytes: invalid UTF-8 and control characters show as U+FFFD.
 *
 * Not for: reading the report (api_reports.c).
 */
#ifndef LAZARET_API_REPORT_PDF_H
#define LAZARET_API_REPORT_PDF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_report_row;

struct api_report_pdf {
	int report;	      /* enum store_report_kind */
	const char *period;   /* the period's name */
	int gran;	      /* enum store_report_gran */
	int64_t since, until; /* Unix ms */
	const char *gateway;  /* NULL: all gateways */
	/* overview: one row per bucket in time order (at set); else the top rows (key) */
	const struct store_report_row *rows;
	size_t n;
	/*
	 * system_capacity (report STORE_REPORT_NREPORTS; rows unused): a table of
	 * text, n buckets and then the totals, each 1 + ncols cells (the bucket's
	 * start as Unix ms in decimal, then the columns' values)
	 */
	size_t ncols;
	const char *const *columns; /* ncols names */
	const char *const *cells;
};

/* The PDF of d into *out (malloc()ed) and *len: 0, or -EIO when cairo failed. */
int api_report_pdf_render(const struct api_report_pdf *d, unsigned char **out, size_t *len);

/* A safe file name for d's PDF: [A-Za-z0-9._-] only (malloc()ed). */
char *api_report_pdf_filename(const struct api_report_pdf *d);

#endif
