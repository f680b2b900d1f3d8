/*
 * Tests of api_report_pdf: keys a gateway's events may carry (bad UTF-8, control
 * characters, long ones) still give a whole PDF; a long table makes the pages the
 * layout counted; the file name stays safe whatever the gateway's name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_report_pdf.h"
#include "store/store.h"

#define T0 1764892800000LL /* 2025-12-05T00:00:00Z */

/* Page objects in a PDF cairo wrote ("/Type /Page", not "/Type /Pages"). */
static size_t pdf_pages(const unsigned char *pdf, size_t len)
{
	size_t n = 0;
	static const char tag[] = "/Type /Page";
	for (size_t i = 0; i + sizeof(tag) <= len; i++)
		if (memcmp(pdf + i, tag, sizeof(tag) - 1) == 0 && pdf[i + sizeof(tag) - 1] != 's')
			n++;
	return n;
}

static void render(const struct api_report_pdf *d, size_t want_pages)
{
	unsigned char *pdf = NULL;
	size_t len = 0;
	assert_int_equal(api_report_pdf_render(d, &pdf, &len), 0);
	assert_true(len > 100);
	assert_memory_equal(pdf, "%PDF-", 5);
	assert_non_null(memmem(pdf + len - 16, 16, "%%EOF", 5));
	assert_int_equal(pdf_pages(pdf, len), want_pages);
	free(pdf);
}

static void test_hostile_keys(void **state)
{
	(void)state;
	static char long_key[4097];
	memset(long_key, 'a', sizeof(long_key) - 1);
	memcpy(long_key + 100, "\xe5\xb1\xb1", 3); /* 山 inside a long run */
	char *keys[] = {
	    "\xff\xfe\xfd",	  /* not UTF-8 */
	    "a\x01\x1b[31mb\x7f", /* control characters */
	    "\xc0\xaf",		  /* overlong "/" */
	    "\xed\xa0\x80",	  /* a surrogate */
	    "\xe5\xb1",		  /* cut in the middle of a character */
	    "\xf4\x90\x80\x80",	  /* beyond U+10FFFF */
	    "\xc2\x85",		  /* C1 control */
	    "",
	    long_key,
	    "山田太郎@例え.jp",
	};
	size_t n = sizeof(keys) / sizeof(keys[0]);
	struct store_report_row *rows = calloc(n, sizeof(*rows));
	assert_non_null(rows);
	for (size_t i = 0; i < n; i++) {
		rows[i].key = keys[i];
		rows[i].c[STORE_REPORT_INCOMING] = (int64_t)(n - i);
	}
	struct api_report_pdf d = {.report = STORE_REPORT_INTERNAL_USERS,
				   .period = "day",
				   .gran = STORE_REPORT_HOUR,
				   .since = T0,
				   .until = T0 + 86400000,
				   .rows = rows,
				   .n = n};
	render(&d, 1);
	free(rows);
}

static void test_pages(void **state)
{
	(void)state;
	/* the most rows a report has: a table over many pages, the header on each */
	size_t n = STORE_REPORT_LIMIT_MAX;
	struct store_report_row *rows = calloc(n, sizeof(*rows));
	char(*keys)[32] = calloc(n, 32);
	assert_non_null(rows);
	assert_non_null(keys);
	for (size_t i = 0; i < n; i++) {
		snprintf(keys[i], 32, "u%04zu@example.com", i);
		rows[i].key = keys[i];
		rows[i].c[STORE_REPORT_COUNT] = (int64_t)i;
	}
	struct api_report_pdf d = {.report = STORE_REPORT_TLS,
				   .period = "year",
				   .gran = STORE_REPORT_MONTH,
				   .since = T0,
				   .until = T0 + 86400000,
				   .rows = rows,
				   .n = n};
	/* 1000 rows of 13 pt: more than 18 pages of about 53 */
	unsigned char *pdf = NULL;
	size_t len = 0;
	assert_int_equal(api_report_pdf_render(&d, &pdf, &len), 0);
	size_t pages = pdf_pages(pdf, len);
	assert_true(pages >= 19 && pages <= 21);
	free(pdf);
	/* no rows: one page; an overview with no buckets too */
	d.n = 0;
	render(&d, 1);
	d.report = STORE_REPORT_OVERVIEW;
	render(&d, 1);
	free(keys);
	free(rows);
}

static void test_filename(void **state)
{
	(void)state;
	struct api_report_pdf d = {.report = STORE_REPORT_OVERVIEW,
				   .period = "custom",
				   .since = T0,
				   .until = T0 + 1,
				   .gateway = "gw-a"};
	char *name = api_report_pdf_filename(&d);
	assert_string_equal(name, "lazaret-overview-custom-gw-a-20251205.pdf");
	free(name);
	d.gateway = "../\"evil\r\n;name=x";
	d.period = "day";
	name = api_report_pdf_filename(&d);
	assert_string_equal(name, "lazaret-overview-day-..__evil___name_x-20251205.pdf");
	free(name);
	d.gateway = NULL;
	name = api_report_pdf_filename(&d);
	assert_string_equal(name, "lazaret-overview-day-all-20251205.pdf");
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hostile_keys),
	    cmocka_unit_test(test_pages),
	    cmocka_unit_test(test_filename),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
