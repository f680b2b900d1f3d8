/*
 * Scheduled reports: when a schedule falls due, which recipients are taken, and
 * the mail a recipient gets (headers, the attachment byte for byte).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "api/api_migration.h"
#include "api/api_report_sched.h"
#include "common/clock.h"
#include "common/strbuf.h"
#include "common/tz.h"
#include "common/xalloc.h"
#include "manager/report_sched.h"
#include "store/store.h"

/* 2026-12-02T10:00:00Z, a Wednesday */
#define WED_10 1796205600LL
#define DAY    86400LL

static void test_next_run(void **state)
{
	(void)state;
	/* daily: 06:00 UTC tomorrow after 10:00, today before 06:00, never now itself */
	assert_int_equal(api_sched_next_run("daily", WED_10), WED_10 - 4 * 3600 + DAY);
	assert_int_equal(api_sched_next_run("daily", WED_10 - 5 * 3600), WED_10 - 4 * 3600);
	assert_int_equal(api_sched_next_run("daily", WED_10 - 4 * 3600), WED_10 - 4 * 3600 + DAY);
	/* weekly: the next Monday, 2026-12-07 */
	assert_int_equal(api_sched_next_run("weekly", WED_10), WED_10 - 4 * 3600 + 5 * DAY);
	/* monthly: 2027-01-01 06:00 */
	assert_int_equal(api_sched_next_run("monthly", WED_10), 1798783200LL);
	assert_int_equal(api_sched_next_run("monthly", 1798783200LL - 1), 1798783200LL);
	assert_int_equal(api_sched_next_run("hourly", WED_10), -1);
	assert_int_equal(api_sched_next_run(NULL, WED_10), -1);
}

static void test_next_run_at(void **state)
{
	(void)state;
	struct tz_zone *tokyo = NULL, *berlin = NULL;
	assert_int_equal(tz_load("Asia/Tokyo", &tokyo), 0);
	assert_int_equal(tz_load("Europe/Berlin", &berlin), 0);
	/* 10:00Z is 19:00 in Tokyo: 18:30 JST is tomorrow, 09:30Z */
	assert_int_equal(api_sched_next_run_at("daily", 18 * 60 + 30, tokyo, WED_10),
			 WED_10 - 30 * 60 + DAY);
	/* 20:00 JST is today, 11:00Z */
	assert_int_equal(api_sched_next_run_at("daily", 20 * 60, tokyo, WED_10), WED_10 + 3600);
	/* UTC at 23:59 and 00:00 */
	assert_int_equal(api_sched_next_run_at("daily", 23 * 60 + 59, NULL, WED_10),
			 WED_10 + 13 * 3600 + 59 * 60);
	assert_int_equal(api_sched_next_run_at("daily", 0, NULL, WED_10), WED_10 + 14 * 3600);
	/* weekly: Monday 07:00 JST is Sunday 22:00Z, 2026-12-06 */
	assert_int_equal(api_sched_next_run_at("weekly", 7 * 60, tokyo, WED_10),
			 WED_10 + 4 * DAY + 12 * 3600);
	/* monthly: 2027-01-01 00:30 CET is 2026-12-31 23:30Z */
	assert_int_equal(api_sched_next_run_at("monthly", 30, berlin, WED_10),
			 1798783200LL - 6 * 3600 - 30 * 60);
	/* a summer day in Berlin: 2027-07-01 06:00 CEST is 04:00Z */
	assert_int_equal(api_sched_next_run_at("monthly", 6 * 60, berlin, 1814400000LL),
			 1814414400LL);
	assert_int_equal(api_sched_next_run_at("daily", 1440, NULL, WED_10), -1);
	assert_int_equal(api_sched_next_run_at("daily", -1, NULL, WED_10), -1);
	assert_int_equal(api_sched_next_run_at("hourly", 0, tokyo, WED_10), -1);
	tz_free(tokyo);
	tz_free(berlin);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(api_sched_mail_backoff(1), 60);
	assert_int_equal(api_sched_mail_backoff(2), 300);
	assert_int_equal(api_sched_mail_backoff(4), 3600);
	assert_int_equal(api_sched_mail_backoff(API_SCHED_MAIL_TRIES), 4 * 3600);
}

static void test_addresses(void **state)
{
	(void)state;
	assert_true(api_sched_address_ok("boss@example.com"));
	assert_true(api_sched_address_ok("a.b+c@sub.example.jp"));
	/* mail goes out without SMTPUTF8: ASCII addresses only */
	assert_false(api_sched_address_ok("a@例え.jp"));
	const char *bad[] = {
	    "",	     "a",     "@x",	 "a@",	 "a@@b", "a b@c", "a@b\r\nBcc: x@y",
	    "<a@b>", "a,b@c", "\"a\"@b", "a@b;c"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(api_sched_address_ok(bad[i]));
}

static void test_mail(void **state)
{
	(void)state;
	unsigned char doc[300];
	for (size_t i = 0; i < sizeof(doc); i++)
		doc[i] = (unsigned char)(i * 7);
	const char *to[] = {"a@example.jp", "b@example.jp"};
	struct report_sched_mail m = {.from = "reports@corp.test\r\nBcc: x@y",
				      .to = to,
				      .nto = 2,
				      .hostname = "mx.test",
				      .report = "overview",
				      .period = "prev_day",
				      .format = "pdf",
				      .since = 1764806400000LL,
				      .until = 1764892800000LL,
				      .now_ms = WED_10 * 1000,
				      .archive_id = 7,
				      .data = doc,
				      .size = sizeof(doc)};
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(report_sched_build_mail(&m, &out, &len), 0);
	assert_int_equal(strlen(out), len);
	/* no header injection: From on one line; every byte of the headers ASCII */
	assert_non_null(strstr(out, "From: reports@corp.testBcc: x@y\r\n"));
	assert_null(strstr(out, "\r\nBcc:"));
	assert_non_null(strstr(out, "To: a@example.jp,\r\n b@example.jp\r\n"));
	const char *end = strstr(out, "\r\n\r\n");
	assert_non_null(end);
	for (const char *p = out; p < end; p++)
		assert_true((unsigned char)*p < 0x80);
	assert_non_null(strstr(out, "Subject: =?UTF-8?B?"));
	assert_non_null(strstr(out, "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"));
	assert_non_null(strstr(out, "Message-ID: <"));
	assert_non_null(strstr(out, "@mx.test>\r\n"));
	assert_non_null(
	    strstr(out, "Content-Type: application/pdf; name=\"overview-prev_day-7.pdf\""));
	assert_non_null(
	    strstr(out, "Content-Disposition: attachment; filename=\"overview-prev_day-7.pdf\""));
	/* the attachment decodes to the document */
	const char *b64 = strstr(out, "filename=\"overview-prev_day-7.pdf\"");
	b64 = strstr(b64, "\r\n\r\n") + 4;
	const char *stop = strstr(b64, "\r\n--");
	unsigned char got[sizeof(doc) + 8];
	size_t n = 0;
	assert_int_equal(sodium_base642bin(got, sizeof(got), b64, (size_t)(stop - b64), "\r\n", &n,
					   NULL, sodium_base64_VARIANT_ORIGINAL),
			 0);
	assert_int_equal(n, sizeof(doc));
	assert_memory_equal(got, doc, sizeof(doc));
	free(out);

	m.nto = 0;
	assert_int_equal(report_sched_build_mail(&m, &out, &len), -EINVAL);
}

/* A notice: one recipient, headers on one line each, the text in base64 with CRLF lines. */
static void test_notice(void **state)
{
	(void)state;
	char *out = NULL;
	size_t len = 0;
	const char *text = "移行が終わりました。\nThe migration has finished.\n";
	assert_int_equal(report_sched_build_notice("lazaret@corp.test", "ops@corp.test\r\nBcc: x@y",
						   "mx.test", "[Lazaret] 移行完了 / done\r\nX: y",
						   text, WED_10 * 1000, &out, &len),
			 0);
	assert_int_equal(strlen(out), len);
	assert_non_null(strstr(out, "From: lazaret@corp.test\r\n"));
	assert_non_null(strstr(out, "To: ops@corp.testBcc: x@y\r\n"));
	assert_null(strstr(out, "\r\nBcc:"));
	assert_null(strstr(out, "\r\nX: y"));
	assert_non_null(strstr(out, "Subject: =?UTF-8?B?"));
	assert_non_null(strstr(out, "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"));
	assert_non_null(strstr(out, "@mx.test>\r\n"));
	assert_non_null(strstr(out, "Content-Type: text/plain; charset=UTF-8\r\n"));
	const char *end = strstr(out, "\r\n\r\n");
	assert_non_null(end);
	for (const char *p = out; p < end; p++)
		assert_true((unsigned char)*p < 0x80);
	const char *b64 = end + 4;
	char got[256];
	size_t n = 0;
	assert_int_equal(sodium_base642bin((unsigned char *)got, sizeof(got) - 1, b64, strlen(b64),
					   "\r\n", &n, NULL, sodium_base64_VARIANT_ORIGINAL),
			 0);
	got[n] = '\0';
	assert_string_equal(got, "移行が終わりました。\r\nThe migration has finished.\r\n");
	free(out);
	assert_int_equal(report_sched_build_notice(NULL, "a@b", NULL, "s", "t", 0, &out, &len),
			 -EINVAL);
}

/* A migration notice deferred by the relay: 1, 5, 15 min, 1 h, then 4 h, until given up. */
static void test_notice_retries(void **state)
{
	(void)state;
	assert_int_equal(api_migration_notice_next(1, WED_10), WED_10 + 60);
	assert_int_equal(api_migration_notice_next(2, WED_10), WED_10 + 300);
	assert_int_equal(api_migration_notice_next(3, WED_10), WED_10 + 900);
	assert_int_equal(api_migration_notice_next(4, WED_10), WED_10 + 3600);
	assert_int_equal(api_migration_notice_next(5, WED_10), WED_10 + 4 * 3600);
	assert_int_equal(api_migration_notice_next(API_MIGRATION_NOTICE_TRIES - 1, WED_10),
			 WED_10 + 4 * 3600);
	assert_int_equal(api_migration_notice_next(API_MIGRATION_NOTICE_TRIES, WED_10), 0);
	/* given up after about a week of attempts */
	int64_t t = 0;
	for (int i = 1; i < API_MIGRATION_NOTICE_TRIES; i++)
		t = api_migration_notice_next(i, t);
	assert_true(t > 6 * DAY && t < 8 * DAY);
}

/* The notice's text: the gateway and the run's counts and times, in both languages. */
static void test_notice_text(void **state)
{
	(void)state;
	struct store_migration_notice n = {.gateway = "gw1",
					   .to = "ops@corp.test",
					   .m = {.state = STORE_MIGRATION_DONE,
						 .run = WED_10 * 1000,
						 .total = 20000,
						 .done = 19997,
						 .failed = 3,
						 .finished_at = (WED_10 + 3600) * 1000}};
	char *subject = NULL, *text = NULL;
	api_migration_notice_mail(&n, &subject, &text);
	assert_string_equal(subject, "[Lazaret] 移行完了 / Migration finished: gw1");
	assert_non_null(strstr(text, "ゲートウェイ gw1 の隔離メッセージの移行が終わりました。\n"));
	assert_non_null(strstr(text, "  移行済み: 19997 通\n"));
	assert_non_null(strstr(text, "  Failed:   3\n"));
	assert_non_null(strstr(text, "  Started:  2026-12-02T10:00:00Z\n"));
	assert_non_null(strstr(text, "  Finished: 2026-12-02T11:00:00Z\n"));
	free(subject);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_next_run),	   cmocka_unit_test(test_next_run_at),
	    cmocka_unit_test(test_backoff),	   cmocka_unit_test(test_addresses),
	    cmocka_unit_test(test_mail),	   cmocka_unit_test(test_notice),
	    cmocka_unit_test(test_notice_retries), cmocka_unit_test(test_notice_text),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
