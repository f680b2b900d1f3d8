/*
 * Tests for the reporting rollups (store.h "reporting rollups"): events stored
 * by store_events_put fill the rollups with the counting rules (per recipient,
 * spam before virus before content filter, a 4xx-answered message not at all),
 * a message whose events come in two batches counts once, a replayed batch
 * counts nothing, a late message lands in its own day, gateways are kept apart
 * and summed, and the retention removes old buckets of one granularity only.
 * Against a real store: SQLite in a temporary folder, or (with
 * LAZARET_TEST_PG_DSN, test_pg.h) a new PostgreSQL database per test.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "test_pg.h"

static int setup(void **state)
{
	return test_store_setup(state, "report");
}

static size_t add(struct store_event *v, size_t n, int64_t seq, int64_t at, const char *type,
		  const char *msg_id, const char *detail, const struct store_event_message *m)
{
	v[n] = (struct store_event){
	    .seq = seq, .at = at, .type = type, .msg_id = msg_id, .detail = detail, .message = m};
	return n + 1;
}

static char *received_detail(const char *sender, const char *ip, const char *const *r, size_t n)
{
	char *list = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		char *l = xasprintf("%s%s\"%s\"", list, i ? "," : "", r[i]);
		free(list);
		list = l;
	}
	char *d = xasprintf("{\"sender\":\"%s\",\"client_ip\":\"%s\",\"recipients\":[%s]}", sender,
			    ip, list);
	free(list);
	return d;
}

static void read_rows(struct store *st, int report, int gran, int64_t since, int64_t until,
		      const char *gw, bool series, struct store_report_row **v, size_t *n)
{
	struct store_report_query q = {.report = report,
				       .gran = gran,
				       .since = since,
				       .until = until,
				       .gateway = gw,
				       .series = series,
				       .limit = 10};
	assert_int_equal(store_report_read(st, &q, v, n), 0);
}

/* The counters of the overview over [since, until) at gran, summed. */
static void totals(struct store *st, int gran, int64_t since, int64_t until, const char *gw,
		   int64_t c[STORE_REPORT_NCOUNTERS])
{
	struct store_report_row *v = NULL;
	size_t n = 0;
	memset(c, 0, sizeof(int64_t) * STORE_REPORT_NCOUNTERS);
	read_rows(st, STORE_REPORT_OVERVIEW, gran, since, until, gw, true, &v, &n);
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			c[j] += v[i].c[j];
	store_report_rows_free(v, n);
}

static const struct store_report_row *find(const struct store_report_row *v, size_t n,
					   const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].key, key) == 0)
			return &v[i];
	return NULL;
}

static void test_counting(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	int64_t t0 = store_report_bucket(STORE_REPORT_HOUR, now) + 1000;
	struct store_event_message m = {.sender = "x@y"};
	const char *ra[] = {"U1@In.example", "u2@in.example", "u3@other.example"};
	const char *rb[] = {"u1@in.example"};
	const char *rc_[] = {"u1@in.example", "u2@in.example"};
	char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1], c[IDS_UUID_LEN + 1], d[IDS_UUID_LEN + 1],
	    e[IDS_UUID_LEN + 1];
	ids_uuidv7(now, a);
	ids_uuidv7(now + 1, b);
	ids_uuidv7(now + 2, c);
	ids_uuidv7(now + 3, d);
	ids_uuidv7(now + 4, e);
	char *da = received_detail("s@Spam.example", "192.0.2.1", ra, 3);
	char *db = received_detail("v@virus.example", "192.0.2.2", rb, 1);
	char *dc = received_detail("f@filter.example", "192.0.2.3", rc_, 2);
	char *dd = received_detail("ok@clean.example", "192.0.2.4", rb, 1);
	char *de = received_detail("t@temp.example", "192.0.2.5", rb, 1);
	struct store_event v1[32];
	size_t n = 0;
	int64_t s = 1;
	n = add(
	    v1, n, s++, t0, "connection", NULL,
	    "{\"client_ip\":\"192.0.2.9\",\"hat_decision\":\"reject\",\"hat_policy\":\"BLOCKED\","
	    "\"tls_version\":null}",
	    NULL);
	n = add(
	    v1, n, s++, t0, "connection", NULL,
	    "{\"client_ip\":\"192.0.2.1\",\"hat_decision\":\"accept\",\"hat_policy\":\"ACCEPTED\","
	    "\"tls_version\":\"TLSv1.3\"}",
	    NULL);
	/* a: spam and virus: spam, 3 recipients */
	n = add(v1, n, s++, t0 + 1, "received", a, da, &m);
	n = add(v1, n, s++, t0 + 2, "verdict", a, "{\"level\":\"spam\"}", NULL);
	n = add(v1, n, s++, t0 + 3, "virus", a, "{\"name\":\"Eicar-Test\"}", NULL);
	n = add(v1, n, s++, t0 + 4, "reply", a, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	/* b: virus */
	n = add(v1, n, s++, t0 + 5, "received", b, db, &m);
	n = add(v1, n, s++, t0 + 6, "verdict", b, "{\"level\":\"clean\"}", NULL);
	n = add(v1, n, s++, t0 + 7, "virus", b, "{\"name\":\"Eicar-Test\"}", NULL);
	n = add(v1, n, s++, t0 + 8, "reply", b, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	/* c: a content filter quarantined it, another only tagged it */
	n = add(v1, n, s++, t0 + 9, "received", c, dc, &m);
	n = add(v1, n, s++, t0 + 10, "filter", c,
		"{\"filter\":\"tagger\",\"action\":\"insert-header\"}", NULL);
	n = add(v1, n, s++, t0 + 11, "filter", c,
		"{\"filter\":\"no_exe\",\"action\":\"quarantine\"}", NULL);
	n = add(v1, n, s++, t0 + 12, "reply", c, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	/* e: told to retry: not counted */
	n = add(v1, n, s++, t0 + 13, "received", e, de, &m);
	n = add(v1, n, s++, t0 + 14, "reply", e, "{\"reply\":\"451 4.3.0 try again\"}", NULL);
	/* d: clean, its reply in the next batch */
	n = add(v1, n, s++, t0 + 15, "received", d, dd, &m);
	n = add(v1, n, s++, t0 + 16, "verdict", d, "{\"level\":\"clean\"}", NULL);
	size_t n1 = n;
	struct store_event v2[4];
	size_t n2 = add(
	    v2, 0, s++, t0 + 17, "quarantine", d,
	    "{\"quarantine\":\"Outbreak\",\"where\":\"local\",\"reason\":\"parcel_wave\"}", NULL);
	n2 = add(v2, n2, s++, t0 + 17, "reply", d, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	n2 = add(v2, n2, s++, t0 + 18, "rate_limit", NULL,
		 "{\"client_ip\":\"192.0.2.8\",\"hat_policy\":\"THROTTLED\",\"limit\":10}", NULL);

	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw-a", v1, n1, 0, now, &stored), 0);
	assert_int_equal(stored, n1);
	assert_int_equal(store_events_put(fx->st, "gw-a", v2, n2, 0, now, &stored), 0);
	assert_int_equal(stored, n2);
	/* replays of both batches count nothing */
	assert_int_equal(store_events_put(fx->st, "gw-a", v1, n1, 0, now, &stored), 0);
	assert_int_equal(stored, 0);
	assert_int_equal(store_events_put(fx->st, "gw-a", v2, n2, 0, now, &stored), 0);
	assert_int_equal(stored, 0);

	int64_t h0 = store_report_bucket(STORE_REPORT_HOUR, t0);
	for (int g = 0; g < STORE_REPORT_NGRANS; g++) {
		int64_t tc[STORE_REPORT_NCOUNTERS];
		int64_t b0 = store_report_bucket(g, t0);
		totals(fx->st, g, b0, b0 + 1, NULL, tc);
		assert_int_equal(tc[STORE_REPORT_INCOMING], 7);
		assert_int_equal(tc[STORE_REPORT_SPAM], 3);
		assert_int_equal(tc[STORE_REPORT_VIRUS], 1);
		assert_int_equal(tc[STORE_REPORT_CONTENT_FILTER], 2);
		assert_int_equal(tc[STORE_REPORT_CLEAN], 1);
		assert_int_equal(tc[STORE_REPORT_SUSPECT], 0);
		assert_int_equal(tc[STORE_REPORT_COUNT], 1); /* rejected connections */
	}
	struct store_report_row *r = NULL;
	size_t nr = 0;
	read_rows(fx->st, STORE_REPORT_INCOMING_DOMAINS, STORE_REPORT_HOUR, h0, h0 + 1, "gw-a",
		  false, &r, &nr);
	assert_int_equal(nr, 4);
	assert_string_equal(r[0].key, "spam.example"); /* the most incoming first */
	assert_int_equal(r[0].c[STORE_REPORT_INCOMING], 3);
	assert_int_equal(r[0].c[STORE_REPORT_SPAM], 3);
	assert_non_null(find(r, nr, "clean.example"));
	assert_int_equal(find(r, nr, "clean.example")->c[STORE_REPORT_CLEAN], 1);
	assert_null(find(r, nr, "temp.example"));
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_VIRUS_TYPES, STORE_REPORT_DAY,
		  store_report_bucket(STORE_REPORT_DAY, t0), t0 + 1, NULL, false, &r, &nr);
	assert_int_equal(nr, 1);
	assert_string_equal(r[0].key, "Eicar-Test");
	assert_int_equal(r[0].c[STORE_REPORT_INCOMING], 4);
	assert_int_equal(r[0].c[STORE_REPORT_SPAM], 3); /* spam first */
	assert_int_equal(r[0].c[STORE_REPORT_VIRUS], 1);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_CONTENT_FILTERS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false,
		  &r, &nr);
	assert_int_equal(nr, 2);
	assert_int_equal(find(r, nr, "no_exe")->c[STORE_REPORT_CONTENT_FILTER], 2);
	assert_int_equal(find(r, nr, "tagger")->c[STORE_REPORT_INCOMING], 2);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_INTERNAL_USERS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false,
		  &r, &nr);
	assert_int_equal(nr, 3);
	assert_string_equal(r[0].key, "u1@in.example");
	assert_int_equal(r[0].c[STORE_REPORT_INCOMING], 4);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_OUTGOING_DESTINATIONS, STORE_REPORT_HOUR, h0, h0 + 1, NULL,
		  false, &r, &nr);
	assert_int_equal(nr, 2);
	assert_string_equal(r[0].key, "in.example");
	assert_int_equal(r[0].c[STORE_REPORT_INCOMING], 6);
	assert_int_equal(find(r, nr, "other.example")->c[STORE_REPORT_SPAM], 1);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_TLS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false, &r, &nr);
	assert_int_equal(nr, 1); /* the rejected connection had no TLS session */
	assert_int_equal(find(r, nr, "TLSv1.3")->c[STORE_REPORT_COUNT], 1);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_SENDER_GROUPS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false,
		  &r, &nr);
	assert_int_equal(nr, 2);
	assert_int_equal(find(r, nr, "BLOCKED")->c[STORE_REPORT_COUNT], 1);
	assert_int_equal(find(r, nr, "ACCEPTED")->c[STORE_REPORT_COUNT], 1);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_OUTBREAK, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false, &r,
		  &nr);
	assert_int_equal(nr, 1);
	assert_string_equal(r[0].key, "parcel_wave");
	assert_int_equal(r[0].c[STORE_REPORT_INCOMING], 1);
	store_report_rows_free(r, nr);

	read_rows(fx->st, STORE_REPORT_RATE_LIMITS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false, &r,
		  &nr);
	assert_int_equal(nr, 1);
	assert_string_equal(r[0].key, "192.0.2.8");
	store_report_rows_free(r, nr);

	/* a second gateway: kept apart, summed in the total; a late message in its day */
	int64_t late = t0 - 3 * 86400000LL;
	struct store_event v3[4];
	size_t n3 = add(v3, 0, 1, late, "received", a, dd, &m);
	n3 = add(v3, n3, 2, late + 1, "reply", a, "{\"reply\":\"250 ok\"}", NULL);
	n3 = add(v3, n3, 3, t0, "received", b, dd, &m);
	n3 = add(v3, n3, 4, t0 + 1, "reply", b, "{\"reply\":\"554 5.7.1 no\"}", NULL);
	assert_int_equal(store_events_put(fx->st, "gw-b", v3, n3, 0, now, &stored), 0);
	int64_t tc[STORE_REPORT_NCOUNTERS];
	int64_t d0 = store_report_bucket(STORE_REPORT_DAY, t0);
	totals(fx->st, STORE_REPORT_DAY, d0, d0 + 1, "gw-b", tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 1);
	totals(fx->st, STORE_REPORT_DAY, d0, d0 + 1, "gw-a", tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 7);
	totals(fx->st, STORE_REPORT_DAY, d0, d0 + 1, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 8);
	int64_t dl = store_report_bucket(STORE_REPORT_DAY, late);
	totals(fx->st, STORE_REPORT_DAY, dl, dl + 1, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 1);
	assert_int_equal(tc[STORE_REPORT_CLEAN], 1);
	read_rows(fx->st, STORE_REPORT_OVERVIEW, STORE_REPORT_DAY, dl, d0 + 1, NULL, true, &r, &nr);
	assert_int_equal(nr, 2);
	assert_int_equal(r[0].at, dl);
	assert_int_equal(r[1].at, d0);
	store_report_rows_free(r, nr);

	/* retention of the hours: the late hour goes, its day stays */
	uint64_t gone = 0, all = 0;
	do {
		assert_int_equal(
		    store_report_purge(fx->st, STORE_REPORT_HOUR, dl + 86400000, 2, &gone), 0);
		all += gone;
	} while (gone > 0);
	assert_true(all > 0);
	totals(fx->st, STORE_REPORT_HOUR, dl, dl + 86400000, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 0);
	totals(fx->st, STORE_REPORT_DAY, dl, dl + 1, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 1);
	totals(fx->st, STORE_REPORT_HOUR, h0, h0 + 1, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 8);
	free(da);
	free(db);
	free(dc);
	free(dd);
	free(de);
}

static void test_bad_reads(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_report_row *r = NULL;
	size_t nr = 0;
	struct store_report_query q = {.report = STORE_REPORT_NREPORTS, .gran = 0, .limit = 10};
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), -EINVAL);
	q.report = 0;
	q.gran = 3;
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), -EINVAL);
	q.gran = 0;
	q.since = 10;
	q.until = 5;
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), -EINVAL);
	q.since = 0;
	q.limit = 0;
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), -EINVAL);
	q.limit = 5;
	q.gateway = "bad name";
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), -EINVAL);
	q.gateway = NULL;
	assert_int_equal(store_report_read(fx->st, &q, &r, &nr), 0);
	assert_int_equal(nr, 0);
	store_report_rows_free(r, nr);
	assert_int_equal(store_report_by_name("overview"), STORE_REPORT_OVERVIEW);
	assert_int_equal(store_report_by_name("rate_limits"), STORE_REPORT_RATE_LIMITS);
	assert_int_equal(store_report_by_name("nope"), -1);
	/* buckets: UTC hour, day, month */
	int64_t t = 1764988245123; /* 2025-12-06T02:30:45.123Z */
	assert_int_equal(store_report_bucket(STORE_REPORT_HOUR, t), 1764986400000);
	assert_int_equal(store_report_bucket(STORE_REPORT_DAY, t), 1764979200000);
	assert_int_equal(store_report_bucket(STORE_REPORT_MONTH, t), 1764547200000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_counting, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_reads, setup, test_store_teardown),
	};
	return cmocka_run_group_tests_name(test_pg_dsn() != NULL ? "store_report_postgresql"
								 : "store_report_sqlite",
					   tests, NULL, NULL);
}
