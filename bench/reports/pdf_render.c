/*
 * pdf_render — how long api_report_pdf takes to draw a report's PDF: a yearly
 * overview (12 monthly buckets), a 400-day overview (400 daily buckets) and a
 * top-N report at its most rows (1000, Japanese keys among them). The first
 * render also loads the font (fontconfig, FreeType); it is timed apart.
 *
 * Prints one JSON line per case: {"bench":"report_pdf","case",...,"first_ms",
 * "median_ms","max_ms","bytes","runs"}. Target (issue "Central reporting"): a
 * yearly PDF renders in < 2 s.
 *
 * Run: pdf_render [runs]   (default 20)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "api/api_report_pdf.h"
#include "store/store.h"

#define T0  1733011200000LL /* 2024-12-01T00:00:00Z */
#define DAY 86400000LL

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void bench(const char *name, const struct api_report_pdf *d, int runs)
{
	int64_t *ms = calloc((size_t)runs, sizeof(*ms));
	int64_t first = 0;
	size_t bytes = 0;
	for (int i = 0; i <= runs; i++) {
		unsigned char *pdf = NULL;
		size_t len = 0;
		int64_t t = clock_mono_ms();
		if (api_report_pdf_render(d, &pdf, &len) < 0) {
			fprintf(stderr, "pdf_render: %s failed\n", name);
			exit(1);
		}
		t = clock_mono_ms() - t;
		if (i == 0)
			first = t;
		else
			ms[i - 1] = t;
		bytes = len;
		free(pdf);
	}
	qsort(ms, (size_t)runs, sizeof(*ms), cmp);
	printf("{\"bench\":\"report_pdf\",\"case\":\"%s\",\"first_ms\":%lld,\"median_ms\":%lld,"
	       "\"max_ms\":%lld,\"bytes\":%zu,\"runs\":%d}\n",
	       name, (long long)first, (long long)ms[runs / 2], (long long)ms[runs - 1], bytes,
	       runs);
	free(ms);
}

static void fill(struct store_report_row *r, size_t i)
{
	/* figures of a busy site: tens of thousands of messages a bucket */
	r->c[STORE_REPORT_CLEAN] = 40000 + (int64_t)(i * 7919 % 20000);
	r->c[STORE_REPORT_SPAM] = 9000 + (int64_t)(i * 104729 % 6000);
	r->c[STORE_REPORT_SUSPECT] = 2000 + (int64_t)(i % 500);
	r->c[STORE_REPORT_VIRUS] = 50 + (int64_t)(i % 40);
	r->c[STORE_REPORT_CONTENT_FILTER] = 700 + (int64_t)(i % 90);
	r->c[STORE_REPORT_INCOMING] = r->c[STORE_REPORT_CLEAN] + r->c[STORE_REPORT_SPAM] +
				      r->c[STORE_REPORT_SUSPECT] + r->c[STORE_REPORT_VIRUS] +
				      r->c[STORE_REPORT_CONTENT_FILTER];
	r->c[STORE_REPORT_COUNT] = 300 + (int64_t)(i % 77);
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 20;
	if (runs < 1)
		runs = 1;
	static struct store_report_row rows[1000];
	static char keys[1000][64];
	for (size_t i = 0; i < 1000; i++) {
		fill(&rows[i], 1000 - i);
		rows[i].at = T0 + (int64_t)i * DAY;
	}
	/* a year by the month: the buckets' starts need not be exact for drawing */
	struct store_report_row months[12];
	for (size_t i = 0; i < 12; i++) {
		fill(&months[i], i);
		months[i].at = T0 + (int64_t)i * 31 * DAY;
	}
	struct api_report_pdf year = {.report = STORE_REPORT_OVERVIEW,
				      .period = "year",
				      .gran = STORE_REPORT_MONTH,
				      .since = T0,
				      .until = T0 + 365 * DAY,
				      .rows = months,
				      .n = 12};
	bench("overview_year", &year, runs);
	struct api_report_pdf days = {.report = STORE_REPORT_OVERVIEW,
				      .period = "custom",
				      .gran = STORE_REPORT_DAY,
				      .since = T0,
				      .until = T0 + 400 * DAY,
				      .rows = rows,
				      .n = 400};
	bench("overview_400_days", &days, runs);
	for (size_t i = 0; i < 1000; i++) {
		snprintf(keys[i], sizeof(keys[i]),
			 i % 10 == 0 ? "利用者%04zu@例え.jp" : "user%04zu@example.com", i);
		rows[i].key = keys[i];
	}
	struct api_report_pdf top = {.report = STORE_REPORT_INTERNAL_USERS,
				     .period = "year",
				     .gran = STORE_REPORT_MONTH,
				     .since = T0,
				     .until = T0 + 365 * DAY,
				     .rows = rows,
				     .n = 1000};
	bench("internal_users_1000_rows", &top, runs);
	return 0;
}
