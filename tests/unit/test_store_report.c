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

#include <jansson.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "store/store_backend.h"
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

/* ---- the all-gateway totals and the month/day decomposition ---- */

#define T_DAY 86400000LL
/* 2026-01-30T00:00:00Z .. 2026-04-03: month edges at Feb 1, Mar 1, Apr 1 */
#define T_JAN30 1769731200000LL
#define T_FEB01 1769904000000LL
#define T_MAR01 1772323200000LL
#define T_APR01 1775001600000LL
#define T_NMSG	90
#define T_NGW	3

static const char *const t_gws[T_NGW] = {"gw-a", "gw-b", "gw-c"};

/* Message i: its time (edges of days and months among them), gateway, domain, recipients. */
static int64_t t_at(int i)
{
	static const int64_t at[] = {T_JAN30 + 12 * 3600000LL,
				     T_FEB01 - 1,
				     T_FEB01,
				     T_FEB01 + 13 * T_DAY + 1,
				     T_MAR01 - 1,
				     T_MAR01,
				     T_APR01 - 3600000LL,
				     T_APR01,
				     T_APR01 + T_DAY + 5 * 3600000LL,
				     T_JAN30 + T_DAY,
				     T_MAR01 + 15 * T_DAY + 7};
	return at[i % (int)(sizeof(at) / sizeof(at[0]))];
}
static int t_gw(int i)
{
	return (i / 11) % T_NGW;
}
static int t_dom(int i)
{
	return (i * 7) % 5;
}
static int t_nrcpt(int i)
{
	return 1 + i % 3;
}

/* The incoming of each of the 5 domains over buckets of days [since, until) (or
 * months with by_month), of gateway g (-1: all), counted from the messages. */
static void t_expected(int64_t since, int64_t until, int gran, int g, int64_t exp[5])
{
	memset(exp, 0, 5 * sizeof(*exp));
	for (int i = 0; i < T_NMSG; i++) {
		int64_t b = store_report_bucket(gran, t_at(i));
		if (b >= since && b < until && (g < 0 || t_gw(i) == g))
			exp[t_dom(i)] += t_nrcpt(i);
	}
}

/* The top-N of q's range read from the store equals exp (keys "dN.example"). */
static void t_check(struct store *st, int gran, int64_t since, int64_t until, int g)
{
	int64_t exp[5];
	t_expected(since, until, gran, g, exp);
	struct store_report_row *v = NULL;
	size_t n = 0;
	struct store_report_query q = {.report = STORE_REPORT_INCOMING_DOMAINS,
				       .gran = gran,
				       .since = since,
				       .until = until,
				       .gateway = g < 0 ? NULL : t_gws[g],
				       .limit = 1000};
	assert_int_equal(store_report_read(st, &q, &v, &n), 0);
	size_t want = 0;
	for (int d = 0; d < 5; d++) {
		if (exp[d] == 0)
			continue;
		want++;
		char key[32];
		snprintf(key, sizeof(key), "d%d.example", d);
		const struct store_report_row *r = find(v, n, key);
		assert_non_null(r);
		assert_int_equal(r->c[STORE_REPORT_INCOMING], exp[d]);
		assert_int_equal(r->c[STORE_REPORT_CLEAN], exp[d]);
	}
	assert_int_equal(n, want);
	/* ranked: most incoming first, ties by key */
	for (size_t i = 1; i < n; i++) {
		assert_true(v[i - 1].c[STORE_REPORT_INCOMING] > v[i].c[STORE_REPORT_INCOMING] ||
			    (v[i - 1].c[STORE_REPORT_INCOMING] == v[i].c[STORE_REPORT_INCOMING] &&
			     strcmp(v[i - 1].key, v[i].key) < 0));
	}
	/* a top 2 is the first two of the whole list */
	struct store_report_row *top = NULL;
	size_t ntop = 0;
	q.limit = 2;
	assert_int_equal(store_report_read(st, &q, &top, &ntop), 0);
	assert_int_equal(ntop, n < 2 ? n : 2);
	for (size_t i = 0; i < ntop; i++) {
		assert_string_equal(top[i].key, v[i].key);
		assert_int_equal(top[i].c[STORE_REPORT_INCOMING], v[i].c[STORE_REPORT_INCOMING]);
	}
	store_report_rows_free(top, ntop);
	store_report_rows_free(v, n);
}

/* gw's rows of report at gran over [since, until), as "key:c0,c1,...;" text. */
static char *rows_text(struct store *st, int report, int gran, int64_t since, int64_t until,
		       const char *gw)
{
	struct store_report_row *v = NULL;
	size_t n = 0;
	read_rows(st, report, gran, since, until, gw, false, &v, &n);
	char *out = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		char *t = xasprintf("%s%s:", out, v[i].key);
		free(out);
		out = t;
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++) {
			t = xasprintf("%s%lld,", out, (long long)v[i].c[j]);
			free(out);
			out = t;
		}
		t = xasprintf("%s;", out);
		free(out);
		out = t;
	}
	store_report_rows_free(v, n);
	return out;
}

/*
 * Events whose caller parsed their details (store_event.parsed, as the events
 * API does) count exactly as the same events given as text only, also for a
 * message whose first events were stored by an earlier batch; and the parsed
 * object is what the reports read.
 */
static void test_counting_from_parsed_details(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	int64_t t0 = store_report_bucket(STORE_REPORT_HOUR, now) + 1000;
	struct store_event_message m = {.sender = "x@y"};
	const char *ra[] = {"U1@In.example", "u2@in.example", "u3@other.example"};
	const char *rb[] = {"u1@in.example"};
	char a[IDS_UUID_LEN + 1], c[IDS_UUID_LEN + 1], d[IDS_UUID_LEN + 1];
	ids_uuidv7(now, a);
	ids_uuidv7(now + 1, c);
	ids_uuidv7(now + 2, d);
	char *da = received_detail("s@Spam.example", "192.0.2.1", ra, 3);
	char *dc = received_detail("f@filter.example", "192.0.2.3", rb, 1);
	char *dd = received_detail("ok@clean.example", "192.0.2.4", rb, 1);
	struct store_event v1[16], v2[4];
	size_t n1 = 0, n2 = 0;
	int64_t s = 1;
	n1 = add(v1, n1, s++, t0 + 1, "received", a, da, &m);
	n1 = add(v1, n1, s++, t0 + 2, "verdict", a, "{\"level\":\"spam\"}", NULL);
	n1 = add(v1, n1, s++, t0 + 3, "reply", a, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	n1 = add(v1, n1, s++, t0 + 4, "received", c, dc, &m);
	n1 = add(v1, n1, s++, t0 + 5, "filter", c,
		 "{\"filter\":\"no_exe\",\"action\":\"quarantine\"}", NULL);
	n1 = add(v1, n1, s++, t0 + 6, "reply", c, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	/* d: received in the first batch, its outbreak and reply in the second */
	n1 = add(v1, n1, s++, t0 + 7, "received", d, dd, &m);
	n1 = add(v1, n1, s++, t0 + 8, "verdict", d, "{\"level\":\"clean\"}", NULL);
	n2 = add(v2, n2, s++, t0 + 9, "quarantine", d,
		 "{\"quarantine\":\"Outbreak\",\"where\":\"local\",\"reason\":\"parcel_wave\"}",
		 NULL);
	n2 = add(v2, n2, s++, t0 + 10, "reply", d, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw-text", v1, n1, 0, now, &stored), 0);
	assert_int_equal(store_events_put(fx->st, "gw-text", v2, n2, 0, now, &stored), 0);
	/* the same with their details parsed */
	json_t *parsed[20];
	size_t np = 0;
	for (size_t i = 0; i < n1; i++)
		v1[i].parsed = parsed[np++] = json_loads(v1[i].detail, 0, NULL);
	for (size_t i = 0; i < n2; i++)
		v2[i].parsed = parsed[np++] = json_loads(v2[i].detail, 0, NULL);
	assert_int_equal(store_events_put(fx->st, "gw-parsed", v1, n1, 0, now, &stored), 0);
	assert_int_equal(stored, n1);
	assert_int_equal(store_events_put(fx->st, "gw-parsed", v2, n2, 0, now, &stored), 0);
	assert_int_equal(stored, n2);

	static const int reports[] = {STORE_REPORT_OVERVIEW, STORE_REPORT_INCOMING_DOMAINS,
				      STORE_REPORT_CONTENT_FILTERS, STORE_REPORT_OUTBREAK,
				      STORE_REPORT_INTERNAL_USERS};
	for (int g = 0; g < STORE_REPORT_NGRANS; g++) {
		int64_t b0 = store_report_bucket(g, t0);
		for (size_t r = 0; r < sizeof(reports) / sizeof(reports[0]); r++) {
			char *want = rows_text(fx->st, reports[r], g, b0, b0 + 1, "gw-text");
			char *got = rows_text(fx->st, reports[r], g, b0, b0 + 1, "gw-parsed");
			assert_true(want[0] != '\0');
			assert_string_equal(got, want);
			free(want);
			free(got);
		}
		int64_t tc[STORE_REPORT_NCOUNTERS];
		totals(fx->st, g, b0, b0 + 1, "gw-parsed", tc);
		assert_int_equal(tc[STORE_REPORT_INCOMING], 5);
		assert_int_equal(tc[STORE_REPORT_SPAM], 3);
		assert_int_equal(tc[STORE_REPORT_CONTENT_FILTER], 1);
	}

	/* the parsed object is what is read: the text is not parsed again */
	struct store_event w[3];
	char x[IDS_UUID_LEN + 1];
	ids_uuidv7(now + 3, x);
	size_t nw = add(w, 0, 1, t0 + 11, "received", x, dd, &m);
	nw = add(w, nw, 2, t0 + 12, "verdict", x, "{\"level\":\"clean\"}", NULL);
	nw = add(w, nw, 3, t0 + 13, "reply", x, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	json_t *spam = json_pack("{s:s}", "level", "spam");
	w[1].parsed = spam;
	assert_int_equal(store_events_put(fx->st, "gw-x", w, nw, 0, now, &stored), 0);
	int64_t tc[STORE_REPORT_NCOUNTERS];
	int64_t h0 = store_report_bucket(STORE_REPORT_HOUR, t0);
	totals(fx->st, STORE_REPORT_HOUR, h0, h0 + 1, "gw-x", tc);
	assert_int_equal(tc[STORE_REPORT_SPAM], 1);
	json_decref(spam);
	for (size_t i = 0; i < np; i++)
		json_decref(parsed[i]);
	free(da);
	free(dc);
	free(dd);
}

static void test_totals(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	struct store_event_message m = {.sender = "s@x"};
	/* per gateway two batches: the later half of its messages first, then the
	 * earlier half, late (older times after newer ones) */
	char *ids[T_NMSG], *details[T_NMSG];
	for (int i = 0; i < T_NMSG; i++) {
		ids[i] = xasprintf("m%03d", i);
		char sender[32], *r[3];
		snprintf(sender, sizeof(sender), "s%d@D%d.example", i, t_dom(i));
		for (int k = 0; k < t_nrcpt(i); k++)
			r[k] = xasprintf("u%d@in.example", k);
		details[i] = received_detail(sender, "192.0.2.1", (const char *const *)r,
					     (size_t)t_nrcpt(i));
		for (int k = 0; k < t_nrcpt(i); k++)
			free(r[k]);
	}
	for (int g = 0; g < T_NGW; g++) {
		int64_t seq = 1;
		for (int half = 1; half >= 0; half--) {
			struct store_event v[2 * T_NMSG];
			size_t n = 0;
			for (int i = 0; i < T_NMSG; i++) {
				if (t_gw(i) != g || (i % 2) != half)
					continue;
				n = add(v, n, seq++, t_at(i), "received", ids[i], details[i], &m);
				n = add(v, n, seq++, t_at(i) + 1, "reply", ids[i],
					"{\"reply\":\"250 ok\"}", NULL);
			}
			uint64_t stored = 0;
			assert_int_equal(store_events_put(fx->st, t_gws[g], v, n, 0, now, &stored),
					 0);
			assert_int_equal(stored, n);
		}
	}
	/* the decomposition of a range by the day */
	struct store_report_span sp[3];
	struct store_report_query q = {
	    .gran = STORE_REPORT_DAY, .since = T_JAN30, .until = T_APR01 + 2 * T_DAY};
	assert_int_equal(store_report_spans(&q, sp), 3);
	assert_int_equal(sp[0].gran, STORE_REPORT_DAY);
	assert_int_equal(sp[0].since, T_JAN30);
	assert_int_equal(sp[0].until, T_FEB01);
	assert_int_equal(sp[1].gran, STORE_REPORT_MONTH);
	assert_int_equal(sp[1].since, T_FEB01);
	assert_int_equal(sp[1].until, T_APR01);
	assert_int_equal(sp[2].gran, STORE_REPORT_DAY);
	assert_int_equal(sp[2].since, T_APR01);
	assert_int_equal(sp[2].until, T_APR01 + 2 * T_DAY);
	q.since = T_FEB01;
	q.until = T_MAR01 - 5; /* the bucket of Feb 28 starts before until */
	assert_int_equal(store_report_spans(&q, sp), 1);
	assert_int_equal(sp[0].gran, STORE_REPORT_MONTH);
	assert_int_equal(sp[0].until, T_MAR01);
	q.since = T_FEB01 + 1; /* Feb 1 starts before since: not in */
	assert_int_equal(store_report_spans(&q, sp), 1);
	assert_int_equal(sp[0].gran, STORE_REPORT_DAY);
	assert_int_equal(sp[0].since, T_FEB01 + T_DAY);
	q.since = T_FEB01;
	q.until = T_FEB01;
	assert_int_equal(store_report_spans(&q, sp), 0);

	/* every range, all gateways and each, equals the count of the messages */
	static const int64_t ranges[][2] = {{T_JAN30, T_APR01 + 2 * T_DAY},
					    {T_FEB01, T_MAR01},
					    {T_JAN30 + T_DAY, T_FEB01},
					    {T_FEB01, T_APR01 + 1},
					    {T_FEB01 + T_DAY, T_MAR01 - T_DAY},
					    {T_MAR01, T_APR01 + T_DAY},
					    {T_JAN30, T_MAR01 + 1}};
	for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
		for (int g = -1; g < T_NGW; g++)
			t_check(fx->st, STORE_REPORT_DAY, ranges[r][0], ranges[r][1], g);
	}
	for (int g = -1; g < T_NGW; g++) {
		t_check(fx->st, STORE_REPORT_MONTH, T_FEB01 - 31 * T_DAY, T_APR01 + 1, g);
		t_check(fx->st, STORE_REPORT_HOUR, T_FEB01 - 3600000LL, T_FEB01 + 3600000LL, g);
	}
	/* the all-gateway overview, bucket by bucket, is the sum of the gateways' */
	for (int gran = 0; gran < STORE_REPORT_NGRANS; gran++) {
		struct store_report_row *all = NULL;
		size_t nall = 0;
		read_rows(fx->st, STORE_REPORT_OVERVIEW, gran, 0, T_APR01 + 31 * T_DAY, NULL, true,
			  &all, &nall);
		assert_true(nall > 0);
		for (size_t i = 0; i < nall; i++) {
			int64_t sum[STORE_REPORT_NCOUNTERS] = {0}, tc[STORE_REPORT_NCOUNTERS];
			for (int g = 0; g < T_NGW; g++) {
				totals(fx->st, gran, all[i].at, all[i].at + 1, t_gws[g], tc);
				for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
					sum[j] += tc[j];
			}
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				assert_int_equal(all[i].c[j], sum[j]);
		}
		store_report_rows_free(all, nall);
	}
	/* retention takes the all-gateway rows with the gateways' */
	uint64_t gone = 0, total = 0;
	do {
		assert_int_equal(store_report_purge(fx->st, STORE_REPORT_DAY, T_FEB01, 3, &gone),
				 0);
		assert_true(gone <= 3);
		total += gone;
	} while (gone > 0);
	/* Jan 30 and 31: the overview and a domain row each, per gateway and in total */
	assert_true(total > 0);
	int64_t tc[STORE_REPORT_NCOUNTERS];
	totals(fx->st, STORE_REPORT_DAY, 0, T_FEB01, NULL, tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 0);
	struct store_report_row *v = NULL;
	size_t n = 0;
	read_rows(fx->st, STORE_REPORT_INCOMING_DOMAINS, STORE_REPORT_DAY, T_JAN30, T_FEB01, NULL,
		  false, &v, &n);
	assert_int_equal(n, 0);
	store_report_rows_free(v, n);
	/* a whole month reads its monthly rows, which keep what its days held */
	totals(fx->st, STORE_REPORT_MONTH, 0, T_FEB01, NULL, tc);
	int64_t exp[5], sum = 0;
	t_expected(0, T_FEB01, STORE_REPORT_MONTH, -1, exp);
	for (int d = 0; d < 5; d++)
		sum += exp[d];
	assert_true(sum > 0);
	assert_int_equal(tc[STORE_REPORT_INCOMING], sum);
	read_rows(fx->st, STORE_REPORT_INCOMING_DOMAINS, STORE_REPORT_DAY, T_FEB01 - 31 * T_DAY,
		  T_FEB01, NULL, false, &v, &n);
	int64_t got = 0;
	for (size_t i = 0; i < n; i++)
		got += v[i].c[STORE_REPORT_INCOMING];
	assert_int_equal(got, sum);
	store_report_rows_free(v, n);
	t_check(fx->st, STORE_REPORT_DAY, T_FEB01, T_APR01 + 2 * T_DAY, -1);
	for (int i = 0; i < T_NMSG; i++) {
		free(ids[i]);
		free(details[i]);
	}
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

/*
 * system_capacity: capacity samples add up per gateway and hour (sums, sample
 * count, maxima), a replayed or repeated sample counts once, days are made of
 * the hours, all gateways are summed, bad reads refused, and the retention
 * removes the old hours only.
 */
/*
 * A message whose "received" list was cut: the overview counts recipients_total,
 * the per-recipient reports the listed names and those of its "recipients"
 * events (pushed with it or later, one overlapping, the last push replayed),
 * each once.
 */
static void test_cut_list(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	int64_t t0 = store_report_bucket(STORE_REPORT_HOUR, now) + 1000;
	int64_t h0 = store_report_bucket(STORE_REPORT_HOUR, t0);
	struct store_event_message m = {.sender = "x@y"};
	char a[IDS_UUID_LEN + 1];
	ids_uuidv7(now, a);
	const char *n1[] = {"B@two.example"}, *n2[] = {"c@two.example", "d@two.example"};
	struct store_event_recipients x1 = {.first = 1, .names = n1, .n = 1};
	struct store_event_recipients x2 = {.first = 1, .names = n1, .n = 1};
	struct store_event_recipients x3 = {.first = 2, .names = n2, .n = 2};
	struct store_event v1[2], v2[3];
	size_t n = 0;
	n = add(v1, n, 1, t0, "received", a,
		"{\"sender\":\"s@cut.example\",\"client_ip\":\"192.0.2.1\","
		"\"recipients\":[\"a@one.example\"],\"recipients_total\":4}",
		&m);
	n = add(v1, n, 2, t0, "recipients", a, "{\"first\":1,\"recipients\":[\"B@two.example\"]}",
		NULL);
	v1[1].recipients = &x1;
	assert_int_equal(store_events_put(fx->st, "gw-a", v1, n, 0, now, NULL), 0);
	n = 0;
	n = add(v2, n, 3, t0 + 1, "recipients", a,
		"{\"first\":1,\"recipients\":[\"B@two.example\"]}", NULL);
	v2[0].recipients = &x2;
	n = add(v2, n, 4, t0 + 1, "recipients", a,
		"{\"first\":2,\"recipients\":[\"c@two.example\",\"d@two.example\"]}", NULL);
	v2[1].recipients = &x3;
	n = add(v2, n, 5, t0 + 2, "reply", a, "{\"reply\":\"250 2.0.0 Ok\"}", NULL);
	assert_int_equal(store_events_put(fx->st, "gw-a", v2, n, 0, now, NULL), 0);
	assert_int_equal(store_events_put(fx->st, "gw-a", v2, n, 0, now, NULL), 0);

	int64_t tc[STORE_REPORT_NCOUNTERS];
	totals(fx->st, STORE_REPORT_HOUR, h0, h0 + 1, "gw-a", tc);
	assert_int_equal(tc[STORE_REPORT_INCOMING], 4);
	assert_int_equal(tc[STORE_REPORT_CLEAN], 4);
	struct store_report_row *r = NULL;
	size_t nr = 0;
	read_rows(fx->st, STORE_REPORT_INTERNAL_USERS, STORE_REPORT_HOUR, h0, h0 + 1, NULL, false,
		  &r, &nr);
	assert_int_equal(nr, 4);
	static const char *const users[] = {"a@one.example", "b@two.example", "c@two.example",
					    "d@two.example"};
	for (size_t i = 0; i < 4; i++) {
		const struct store_report_row *u = find(r, nr, users[i]);
		if (u == NULL)
			fail_msg("%s not counted", users[i]);
		assert_int_equal(u->c[STORE_REPORT_INCOMING], 1);
	}
	store_report_rows_free(r, nr);
	read_rows(fx->st, STORE_REPORT_OUTGOING_DESTINATIONS, STORE_REPORT_HOUR, h0, h0 + 1, NULL,
		  false, &r, &nr);
	assert_int_equal(nr, 2);
	assert_int_equal(find(r, nr, "two.example")->c[STORE_REPORT_INCOMING], 3);
	assert_int_equal(find(r, nr, "one.example")->c[STORE_REPORT_INCOMING], 1);
	store_report_rows_free(r, nr);
}

static void test_capacity(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	int64_t h0 = store_report_bucket(STORE_REPORT_HOUR, now) - 3 * 3600000LL;
	struct store_capacity_sample a1 = {.received = 10,
					   .relayed = 8,
					   .connections = 3,
					   .current = 2,
					   .backlog = 5,
					   .load = 150,
					   .memory = 1000};
	struct store_capacity_sample a2 = {.received = 4,
					   .relayed = 4,
					   .connections = 1,
					   .current = 6,
					   .backlog = 1,
					   .load = 50,
					   .memory = 3000};
	struct store_capacity_sample a3 = {.received = 7,
					   .relayed = 0,
					   .connections = 2,
					   .current = 1,
					   .backlog = 0,
					   .load = 400,
					   .memory = 500};
	struct store_capacity_sample b1 = {.received = 100,
					   .relayed = 90,
					   .connections = 9,
					   .current = 4,
					   .backlog = 50,
					   .load = 20,
					   .memory = 9000};
	struct store_event va[3] = {
	    {.seq = 1, .at = h0 + 60000, .type = "capacity", .detail = "{}", .capacity = &a1},
	    {.seq = 2, .at = h0 + 120000, .type = "capacity", .detail = "{}", .capacity = &a2},
	    {.seq = 3, .at = h0 + 3600000, .type = "capacity", .detail = "{}", .capacity = &a3},
	};
	struct store_event vb[1] = {
	    {.seq = 1, .at = h0 + 30000, .type = "capacity", .detail = "{}", .capacity = &b1},
	};
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw-a", va, 2, 0, now, &stored), 0);
	assert_int_equal(stored, 2);
	/* the same batch again, then with the next sample: the first two count once */
	assert_int_equal(store_events_put(fx->st, "gw-a", va, 2, 0, now, &stored), 0);
	assert_int_equal(stored, 0);
	assert_int_equal(store_events_put(fx->st, "gw-a", va, 3, 0, now, &stored), 0);
	assert_int_equal(stored, 1);
	assert_int_equal(store_events_put(fx->st, "gw-b", vb, 1, 0, now, &stored), 0);

	struct store_capacity_row *r = NULL;
	size_t n = 0;
	assert_int_equal(
	    store_capacity_read(fx->st, "gw-a", STORE_REPORT_HOUR, h0 - 3600000LL, now + 1, &r, &n),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].at, h0);
	assert_int_equal(r[0].samples, 2);
	assert_int_equal(r[0].received, 14);
	assert_int_equal(r[0].relayed, 12);
	assert_int_equal(r[0].connections, 4);
	assert_int_equal(r[0].current_sum, 8);
	assert_int_equal(r[0].current_max, 6);
	assert_int_equal(r[0].load_sum, 200);
	assert_int_equal(r[0].load_max, 150);
	assert_int_equal(r[0].memory_max, 3000);
	assert_int_equal(r[0].backlog_max, 5);
	assert_int_equal(r[1].at, h0 + 3600000);
	assert_int_equal(r[1].samples, 1);
	assert_int_equal(r[1].received, 7);
	assert_int_equal(r[1].load_max, 400);
	free(r);

	/* all gateways: sums add, maxima the highest of any */
	assert_int_equal(
	    store_capacity_read(fx->st, NULL, STORE_REPORT_HOUR, h0, h0 + 3600000, &r, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].samples, 3);
	assert_int_equal(r[0].received, 114);
	assert_int_equal(r[0].relayed, 102);
	assert_int_equal(r[0].current_max, 6);
	assert_int_equal(r[0].memory_max, 9000);
	assert_int_equal(r[0].backlog_max, 50);
	assert_int_equal(r[0].load_max, 150);
	free(r);

	/* by the day: the hours folded (both hours may straddle midnight) */
	int64_t d0 = store_report_bucket(STORE_REPORT_DAY, h0);
	assert_int_equal(
	    store_capacity_read(fx->st, "gw-a", STORE_REPORT_DAY, d0 - 86400000LL, now + 1, &r, &n),
	    0);
	int64_t samples = 0, received = 0, load_max = 0;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i].at, store_report_bucket(STORE_REPORT_DAY, r[i].at));
		samples += r[i].samples;
		received += r[i].received;
		load_max = r[i].load_max > load_max ? r[i].load_max : load_max;
	}
	assert_int_equal(samples, 3);
	assert_int_equal(received, 21);
	assert_int_equal(load_max, 400);
	assert_true(n == 1 ||
		    (n == 2 && r[1].at == store_report_bucket(STORE_REPORT_DAY, h0 + 3600000)));
	free(r);

	/* bad reads */
	assert_int_equal(store_capacity_read(fx->st, "bad name", 0, 0, 1, &r, &n), -EINVAL);
	assert_int_equal(store_capacity_read(fx->st, NULL, 3, 0, 1, &r, &n), -EINVAL);
	assert_int_equal(store_capacity_read(fx->st, NULL, 0, 5, 1, &r, &n), -EINVAL);

	/* retention: the hours before h0 + 1h go, the later one stays */
	uint64_t gone = 0;
	assert_int_equal(store_capacity_purge(fx->st, h0 + 3600000, 1000, &gone), 0);
	assert_int_equal(gone, 2); /* gw-a's and gw-b's first hour */
	assert_int_equal(store_capacity_read(fx->st, NULL, STORE_REPORT_HOUR, 0, now + 1, &r, &n),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].at, h0 + 3600000);
	assert_int_equal(r[0].received, 7);
	free(r);
	assert_int_equal(store_capacity_purge(fx->st, h0, 0, &gone), -EINVAL);
}

/* The top-N of report over [since, until) by the day: key's counters into c (0s: no row). */
static void topn(struct store *st, int report, int64_t since, int64_t until, const char *gw,
		 const char *key, int64_t c[STORE_REPORT_NCOUNTERS])
{
	struct store_report_row *v = NULL;
	size_t n = 0;
	memset(c, 0, sizeof(int64_t) * STORE_REPORT_NCOUNTERS);
	read_rows(st, report, STORE_REPORT_DAY, since, until, gw, false, &v, &n);
	const struct store_report_row *r = find(v, n, key);
	if (r != NULL)
		memcpy(c, r->c, sizeof(int64_t) * STORE_REPORT_NCOUNTERS);
	store_report_rows_free(v, n);
}

#define B_DAY	 86400000LL
#define B_FEB01	 1769904000000LL /* 2026-02-01T00:00Z */
#define B_FEB15	 1771113600000LL
#define B_MAR01	 1772323200000LL
#define B_MAR02	 1772409600000LL
#define B_MAR09	 1773014400000LL
#define B_MAR10	 1773100800000LL
#define B_MAR20	 1773964800000LL
#define B_APR01	 1775001600000LL
#define B_SWITCH (B_MAR10 + 5 * 3600000LL + 1800000LL) /* 05:30 on March 10 */

/* Live messages of gw, one recipient each, at the times in at[]. */
static void live(struct store *st, const char *gw, int64_t *seq, const char *tag, const int64_t *at,
		 size_t n)
{
	struct store_event_message m = {.sender = "s@live.example"};
	const char *r[] = {"u@in.example"};
	char *d = received_detail("s@live.example", "192.0.2.7", r, 1);
	struct store_event v[16];
	char *ids[8];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		ids[i] = xasprintf("%s-%s-%zu", gw, tag, i);
		k = add(v, k, (*seq)++, at[i], "received", ids[i], d, &m);
		k = add(v, k, (*seq)++, at[i] + 1, "reply", ids[i], "{\"reply\":\"250 ok\"}", NULL);
	}
	uint64_t stored = 0;
	assert_int_equal(store_events_put(st, gw, v, k, 0, clock_now_ms(), &stored), 0);
	assert_int_equal(stored, k);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(d);
}

/*
 * A gateway switched to central on March 10 at 05:30 and sent its rollups of
 * before (March 2 and 9 by the day, 01:00 and 04:00 on March 10 by the hour;
 * February by the month, day and hour) while live messages came in before and
 * after: March read whole (its monthly row) and by the day agree, per gateway
 * and over all, and a replayed push adds nothing.
 */
static void test_backfill_switch_month(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t seq_a = 1, seq_b = 1;
	const int64_t early[] = {B_SWITCH + 60000, B_MAR20};
	live(fx->st, "gw-a", &seq_a, "early", early, 2);
	live(fx->st, "gw-b", &seq_b, "early", early, 1);
	struct store_rollup_in v[] = {
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_HOUR,
	     .bucket = B_FEB15,
	     .key = "",
	     .c = {1, 1}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_HOUR,
	     .bucket = B_MAR10 + 3600000LL,
	     .key = "",
	     .c = {2, 1, 1}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_HOUR,
	     .bucket = B_MAR10 + 4 * 3600000LL,
	     .key = "",
	     .c = {1, 1}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_DAY,
	     .bucket = B_FEB15,
	     .key = "",
	     .c = {1, 1}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_DAY,
	     .bucket = B_MAR02,
	     .key = "",
	     .c = {3, 2, 1}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_DAY,
	     .bucket = B_MAR09,
	     .key = "",
	     .c = {4, 4}},
	    {.report = STORE_REPORT_INCOMING_DOMAINS,
	     .gran = STORE_REPORT_DAY,
	     .bucket = B_MAR09,
	     .key = "old.example",
	     .c = {4, 4}},
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_MONTH,
	     .bucket = B_FEB01,
	     .key = "",
	     .c = {1, 1}},
	};
	size_t nv = sizeof(v) / sizeof(v[0]), stored = 0;
	/* one push that claims March whole is refused: March had not ended */
	struct store_rollup_in march = v[7];
	march.bucket = B_MAR01;
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", B_SWITCH, &march, 1, false, 1000, &stored),
	    -EINVAL);
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", B_SWITCH, v, nv, false, 1000, &stored), 0);
	assert_int_equal(stored, nv);
	const int64_t late[] = {B_MAR20 + 3600000LL};
	live(fx->st, "gw-a", &seq_a, "late", late, 1);
	/* a replay (the push again, after a crash) adds nothing */
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", B_SWITCH, v, nv, true, 2000, &stored), 0);
	assert_int_equal(stored, 0);

	/* gw-a in March: 3 + 4 by the day, 2 + 1 by the hour before the switch, 3 live */
	const char *gws[] = {"gw-a", "gw-b", NULL};
	const int64_t want[] = {13, 1, 14};
	for (size_t g = 0; g < 3; g++) {
		int64_t whole[STORE_REPORT_NCOUNTERS], sum[STORE_REPORT_NCOUNTERS] = {0};
		int64_t c[STORE_REPORT_NCOUNTERS];
		topn(fx->st, STORE_REPORT_OVERVIEW, B_MAR01, B_APR01, gws[g], "", whole);
		for (int64_t d = B_MAR01; d < B_APR01; d += B_DAY) {
			topn(fx->st, STORE_REPORT_OVERVIEW, d, d + B_DAY, gws[g], "", c);
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				sum[j] += c[j];
		}
		assert_int_equal(whole[STORE_REPORT_INCOMING], want[g]);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			assert_int_equal(whole[j], sum[j]);
		/* a range reading March whole and one reading it by the day (from
		 * March 2) differ by March 1 only, which had nothing */
		topn(fx->st, STORE_REPORT_OVERVIEW, B_FEB01, B_APR01 + B_DAY, gws[g], "", whole);
		topn(fx->st, STORE_REPORT_OVERVIEW, B_FEB15, B_APR01 - B_DAY, gws[g], "", c);
		assert_int_equal(whole[STORE_REPORT_INCOMING],
				 want[g] + (gws[g] != NULL && strcmp(gws[g], "gw-b") == 0 ? 0 : 1));
		assert_int_equal(c[STORE_REPORT_INCOMING], whole[STORE_REPORT_INCOMING]);
		/* the day of the switch: its hours read by the hour, the day whole */
		int64_t hours[STORE_REPORT_NCOUNTERS], day[STORE_REPORT_NCOUNTERS];
		totals(fx->st, STORE_REPORT_HOUR, B_MAR10, B_MAR10 + B_DAY, gws[g], hours);
		totals(fx->st, STORE_REPORT_DAY, B_MAR10, B_MAR10 + B_DAY, gws[g], day);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			assert_int_equal(hours[j], day[j]);
		assert_int_equal(day[STORE_REPORT_INCOMING], g == 0 ? 4 : g == 1 ? 1 : 5);
	}
	/* a key only the backfill has: March whole equals its one day */
	int64_t whole[STORE_REPORT_NCOUNTERS], day[STORE_REPORT_NCOUNTERS];
	for (size_t g = 0; g < 3; g += 2) {
		topn(fx->st, STORE_REPORT_INCOMING_DOMAINS, B_MAR01, B_APR01, gws[g], "old.example",
		     whole);
		topn(fx->st, STORE_REPORT_INCOMING_DOMAINS, B_MAR09, B_MAR10, gws[g], "old.example",
		     day);
		assert_int_equal(whole[STORE_REPORT_INCOMING], 4);
		assert_int_equal(day[STORE_REPORT_INCOMING], 4);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_counting, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_counting_from_parsed_details, setup,
					    test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_totals, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_reads, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_capacity, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_backfill_switch_month, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_cut_list, setup, test_store_teardown),
	};
	return cmocka_run_group_tests_name(test_pg_dsn() != NULL ? "store_report_postgresql"
								 : "store_report_sqlite",
					   tests, NULL, NULL);
}
