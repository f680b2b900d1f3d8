/*
 * Tests for the store's gateway events and tracked messages (store_events_put
 * and its reads): a batch is stored whole and in order, a replayed batch stores
 * nothing twice, a bad event stores nothing of its batch, the tracked message
 * gets the "received" fields, flags and the last state, the gateway's counters
 * follow; retention (store_tracking_drop_days, store_tracking_purge) removes
 * what is old, keeps what is fresh and the gateway's seq, so that a replay of a
 * purged batch stores nothing. Against a real store: SQLite in a temporary folder, or (with
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
	return test_store_setup(state, "events");
}

static uint64_t count_events(struct store *st, const char *gw)
{
	struct store_event_row *v = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(st, gw, NULL, 0, 10000, &v, &n), 0);
	store_event_rows_free(v, n);
	return n;
}

static void test_batch_and_replay(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char id[IDS_UUID_LEN + 1];
	ids_uuidv7(now, id);
	const char *rcpts[] = {"Bob@Example.COM", "carol@example.com"};
	const char *atts[] = {"Invoice.PDF"};
	struct store_event_message m = {.sender = "Alice@Example.org",
					.recipients = rcpts,
					.nrecipients = 2,
					.subject = "Hello 日本",
					.message_id = "<a1@example.org>",
					.client_ip = "192.0.2.7",
					.attachments = atts,
					.nattachments = 1,
					.size = 1234};
	struct store_event batch[] = {
	    {.seq = 10, .at = now, .type = "connection", .detail = "{\"client\":\"192.0.2.7\"}"},
	    {.seq = 11,
	     .at = now + 1,
	     .type = "received",
	     .msg_id = id,
	     .detail = "{}",
	     .message = &m,
	     .state = "received"},
	    {.seq = 12,
	     .at = now + 2,
	     .type = "verdict",
	     .msg_id = id,
	     .detail = "{\"level\":\"spam\"}",
	     .flags = STORE_TRACK_SPAM},
	    {.seq = 13,
	     .at = now + 3,
	     .type = "delivery",
	     .msg_id = id,
	     .detail = "{\"status\":\"sent\"}",
	     .state = "delivered",
	     .flags = STORE_TRACK_DELIVERED},
	};
	uint64_t stored = 99;
	assert_int_equal(store_events_put(fx->st, "gw1", batch, 4, 7, now, &stored), 0);
	assert_int_equal(stored, 4);
	/* the same batch again (the answer was lost): nothing new */
	assert_int_equal(store_events_put(fx->st, "gw1", batch, 4, 3, now + 10, &stored), 0);
	assert_int_equal(stored, 0);
	/* overlapping: one old, one new */
	struct store_event more[] = {
	    batch[3],
	    {.seq = 14,
	     .at = now + 4,
	     .type = "bounce",
	     .msg_id = id,
	     .detail = "{}",
	     .state = "hard_bounce",
	     .flags = STORE_TRACK_HARD_BOUNCE},
	};
	assert_int_equal(store_events_put(fx->st, "gw1", more, 2, 0, now + 20, &stored), 0);
	assert_int_equal(stored, 1);
	assert_int_equal(count_events(fx->st, "gw1"), 5);
	/* another gateway's seq space is its own */
	assert_int_equal(store_events_put(fx->st, "gw2", batch, 1, -1, now, &stored), 0);
	assert_int_equal(stored, 1);

	struct store_event_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(fx->st, "gw1", NULL, 0, 100, &rows, &n), 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rows[i].seq, 10 + (int64_t)i);
	assert_string_equal(rows[0].type, "connection");
	assert_null(rows[0].msg_id);
	assert_string_equal(rows[1].msg_id, id);
	assert_string_equal(rows[2].detail, "{\"level\":\"spam\"}");
	store_event_rows_free(rows, n);
	/* one message's timeline */
	assert_int_equal(store_events_list(fx->st, "gw1", id, 11, 100, &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].type, "verdict");
	store_event_rows_free(rows, n);

	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", id, &t), 0);
	assert_string_equal(t->sender, "Alice@Example.org");
	assert_string_equal(t->subject, "Hello 日本");
	assert_string_equal(t->message_id, "<a1@example.org>");
	assert_string_equal(t->client_ip, "192.0.2.7");
	assert_int_equal(t->received_at, now + 1);
	assert_int_equal(t->size, 1234);
	assert_int_equal(t->nrecipients, 2);
	assert_string_equal(t->recipients[0], "Bob@Example.COM");
	assert_string_equal(t->recipients[1], "carol@example.com");
	assert_int_equal(t->nattachments, 1);
	assert_string_equal(t->attachments[0], "Invoice.PDF");
	assert_string_equal(t->last_state, "hard_bounce");
	assert_int_equal(t->flags,
			 STORE_TRACK_SPAM | STORE_TRACK_DELIVERED | STORE_TRACK_HARD_BOUNCE);
	store_tracked_message_free(t);
	assert_int_equal(store_tracked_message_get(fx->st, "gw2", id, &t), -ENOENT);

	struct store_event_state *sv = NULL;
	assert_int_equal(store_event_states(fx->st, &sv, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(sv[0].gateway, "gw1");
	assert_int_equal(sv[0].last_seq, 14);
	assert_int_equal(sv[0].last_event_at, now + 4);
	assert_int_equal(sv[0].backlog, 0);
	assert_int_equal(sv[0].received, 5);
	assert_int_equal(sv[0].pushed_at, now + 20);
	assert_string_equal(sv[1].gateway, "gw2");
	assert_int_equal(sv[1].backlog, -1);
	assert_int_equal(sv[1].received, 1);
	store_event_states_free(sv, n);
}

/*
 * A batch out of seq order, with a seq twice, two messages and addresses that
 * need quoting: each seq stored once (the first of equal ones), each message's
 * fields its own, in either backend's way of writing a batch at once.
 */
static void test_batch_out_of_order(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1];
	ids_uuidv7(now, a);
	ids_uuidv7(now + 1, b);
	const char *ra[] = {"\"odd,\\name\"@example.com", "{brace}@example.com"};
	const char *rb[] = {"NULL@example.com"};
	struct store_event_message ma = {.sender = "", .recipients = ra, .nrecipients = 2};
	struct store_event_message mb = {
	    .sender = "x@example.org", .recipients = rb, .nrecipients = 1, .subject = "b"};
	struct store_event batch[] = {
	    {.seq = 23,
	     .at = now + 3,
	     .type = "delivery",
	     .msg_id = a,
	     .detail = "{}",
	     .state = "delivered",
	     .flags = STORE_TRACK_DELIVERED},
	    {.seq = 21,
	     .at = now + 1,
	     .type = "received",
	     .msg_id = a,
	     .detail = "{\"n\":1}",
	     .message = &ma,
	     .state = "received"},
	    {.seq = 21,
	     .at = now + 1,
	     .type = "received",
	     .msg_id = b,
	     .detail = "{\"n\":2}",
	     .message = &mb,
	     .state = "received"},
	    {.seq = 22,
	     .at = now + 2,
	     .type = "received",
	     .msg_id = b,
	     .detail = "{}",
	     .message = &mb,
	     .state = "received"},
	    {.seq = 24,
	     .at = now + 4,
	     .type = "verdict",
	     .msg_id = b,
	     .detail = "{}",
	     .flags = STORE_TRACK_VIRUS},
	};
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw1", batch, 5, 0, now, &stored), 0);
	assert_int_equal(stored, 4);
	struct store_event_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(fx->st, "gw1", NULL, 0, 100, &rows, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rows[i].seq, 21 + (int64_t)i);
	assert_string_equal(rows[0].msg_id, a); /* the first of the two 21s */
	assert_string_equal(rows[0].detail, "{\"n\":1}");
	store_event_rows_free(rows, n);
	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", a, &t), 0);
	assert_string_equal(t->sender, "");
	assert_null(t->subject);
	assert_int_equal(t->nrecipients, 2);
	assert_string_equal(t->recipients[0], ra[0]);
	assert_string_equal(t->recipients[1], ra[1]);
	assert_string_equal(t->last_state, "delivered");
	assert_int_equal(t->received_at, now + 1);
	store_tracked_message_free(t);
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", b, &t), 0);
	assert_string_equal(t->subject, "b");
	assert_int_equal(t->nrecipients, 1);
	assert_string_equal(t->recipients[0], "NULL@example.com");
	assert_string_equal(t->last_state, "received");
	assert_int_equal(t->flags, STORE_TRACK_VIRUS);
	assert_int_equal(t->received_at, now + 2);
	store_tracked_message_free(t);
}

/* A bad event anywhere in a batch: -EINVAL and nothing of the batch is stored. */
static void test_bad_batches(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char longid[STORE_EVENT_MSG_ID_MAX + 2];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	static const struct {
		const char *what;
		struct store_event e;
	} bad[] = {
	    {"seq 0", {.seq = 0, .at = 1, .type = "received", .detail = "{}"}},
	    {"negative time", {.seq = 2, .at = -1, .type = "received", .detail = "{}"}},
	    {"unknown type", {.seq = 2, .at = 1, .type = "exploded", .detail = "{}"}},
	    {"no type", {.seq = 2, .at = 1, .detail = "{}"}},
	    {"no detail", {.seq = 2, .at = 1, .type = "received"}},
	    {"blank in id",
	     {.seq = 2, .at = 1, .type = "received", .msg_id = "a b", .detail = "{}"}},
	    {"state without id",
	     {.seq = 2, .at = 1, .type = "delivery", .detail = "{}", .state = "delivered"}},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct store_event v[] = {
		    {.seq = 1, .at = now, .type = "connection", .detail = "{}"},
		    bad[i].e,
		};
		uint64_t stored = 5;
		int rc = store_events_put(fx->st, "gw1", v, 2, 0, now, &stored);
		if (rc != -EINVAL)
			fail_msg("%s: %d", bad[i].what, rc);
		assert_int_equal(stored, 0);
	}
	struct store_event v = {
	    .seq = 1, .at = now, .type = "received", .msg_id = longid, .detail = "{}"};
	assert_int_equal(store_events_put(fx->st, "gw1", &v, 1, 0, now, NULL), -EINVAL);
	assert_int_equal(store_events_put(fx->st, "bad name", &v, 1, 0, now, NULL), -EINVAL);
	assert_int_equal(count_events(fx->st, "gw1"), 0);
	struct store_event_state *sv = NULL;
	size_t n = 9;
	assert_int_equal(store_event_states(fx->st, &sv, &n), 0);
	assert_int_equal(n, 0);
	store_event_states_free(sv, n);
}

/*
 * "recipients" events: the names a cut "received" list left out are added at
 * their indexes, in the received event's batch or a later one; a replay, or a
 * name at an index stored already, adds nothing; the timeline leaves them out;
 * a bad one stores nothing of its batch.
 */
static void test_more_recipients(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1];
	ids_uuidv7(now, a);
	ids_uuidv7(now + 1, b);
	const char *listed[] = {"r0@example.com", "r1@example.com"};
	const char *more1[] = {"R2@Example.COM", "r3@example.com"};
	const char *more2[] = {"r4@example.com"};
	const char *clash[] = {"other@example.com", "r5@example.com"};
	struct store_event_message m = {
	    .sender = "s@example.org", .recipients = listed, .nrecipients = 2};
	struct store_event_recipients x1 = {.first = 2, .names = more1, .n = 2};
	struct store_event_recipients x2 = {.first = 4, .names = more2, .n = 1};
	struct store_event_recipients x3 = {.first = 4, .names = clash, .n = 2};
	struct store_event batch1[] = {
	    {.seq = 1,
	     .at = now,
	     .type = "received",
	     .msg_id = a,
	     .detail = "{}",
	     .message = &m,
	     .state = "received"},
	    {.seq = 2,
	     .at = now,
	     .type = "recipients",
	     .msg_id = a,
	     .detail = "{}",
	     .recipients = &x1},
	    /* b's received event and its extra names in one batch */
	    {.seq = 3,
	     .at = now + 1,
	     .type = "received",
	     .msg_id = b,
	     .detail = "{}",
	     .message = &m,
	     .state = "received"},
	    {.seq = 4,
	     .at = now + 1,
	     .type = "recipients",
	     .msg_id = b,
	     .detail = "{}",
	     .recipients = &x1},
	};
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw1", batch1, 4, 0, now, &stored), 0);
	assert_int_equal(stored, 4);
	/* a later push: the rest of a's; then the whole of it again (a replay) */
	struct store_event batch2[] = {
	    {.seq = 5,
	     .at = now + 2,
	     .type = "recipients",
	     .msg_id = a,
	     .detail = "{}",
	     .recipients = &x2},
	    {.seq = 6,
	     .at = now + 3,
	     .type = "delivery",
	     .msg_id = a,
	     .detail = "{\"status\":\"sent\"}",
	     .state = "delivered",
	     .flags = STORE_TRACK_DELIVERED},
	};
	assert_int_equal(store_events_put(fx->st, "gw1", batch2, 2, 0, now, &stored), 0);
	assert_int_equal(stored, 2);
	assert_int_equal(store_events_put(fx->st, "gw1", batch1, 4, 0, now, &stored), 0);
	assert_int_equal(store_events_put(fx->st, "gw1", batch2, 2, 0, now, &stored), 0);
	assert_int_equal(stored, 0);
	/* a new event naming an index stored already: that one kept, the next added */
	struct store_event clash_ev = {.seq = 7,
				       .at = now + 4,
				       .type = "recipients",
				       .msg_id = a,
				       .detail = "{}",
				       .recipients = &x3};
	assert_int_equal(store_events_put(fx->st, "gw1", &clash_ev, 1, 0, now, &stored), 0);
	assert_int_equal(stored, 1);

	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", a, &t), 0);
	assert_int_equal(t->nrecipients, 6);
	static const char *const want[] = {"r0@example.com", "r1@example.com", "R2@Example.COM",
					   "r3@example.com", "r4@example.com", "r5@example.com"};
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(t->recipients[i], want[i]);
	assert_string_equal(t->last_state, "delivered");
	store_tracked_message_free(t);
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", b, &t), 0);
	assert_int_equal(t->nrecipients, 4);
	assert_string_equal(t->recipients[3], "r3@example.com");
	assert_string_equal(t->last_state, "received");
	store_tracked_message_free(t);
	/* a search by an added name (any case) finds the message */
	struct store_track_query q = {
	    .since = now - 1000, .until = now + 1000, .recipient = "r2@example.com"};
	struct store_tracked_message **found = NULL;
	size_t nfound = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(fx->st, &q, 10, NULL, &found, &nfound, &next), 0);
	assert_null(next);
	assert_int_equal(nfound, 2);
	store_tracked_messages_free(found, nfound);

	/* the timeline: what happened, not the lists */
	struct store_event_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(fx->st, "gw1", a, 0, 100, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].type, "received");
	assert_string_equal(rows[1].type, "delivery");
	store_event_rows_free(rows, n);
	assert_int_equal(count_events(fx->st, "gw1"), 7);

	/* bad ones: no id, no names, a negative or too high index */
	struct store_event_recipients none = {.first = 0, .names = more1, .n = 0};
	struct store_event_recipients neg = {.first = -1, .names = more1, .n = 2};
	struct store_event_recipients high = {
	    .first = STORE_EVENT_RCPTS_MAX - 1, .names = more1, .n = 2};
	const char *nul[] = {"a@b", NULL};
	struct store_event_recipients hole = {.first = 0, .names = nul, .n = 2};
	const struct store_event_recipients *bad[] = {&x1, &none, &neg, &high, &hole};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct store_event v[] = {
		    {.seq = 8, .at = now, .type = "connection", .detail = "{}"},
		    {.seq = 9,
		     .at = now,
		     .type = "recipients",
		     .msg_id = i == 0 ? NULL : a,
		     .detail = "{}",
		     .recipients = bad[i]},
		};
		if (store_events_put(fx->st, "gw1", v, 2, 0, now, &stored) != -EINVAL)
			fail_msg("bad recipients event %zu stored", i);
	}
	assert_int_equal(count_events(fx->st, "gw1"), 7);
}

/* A large batch, in one transaction, read back in order. */
static void test_large_batch(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	enum { N = 1000 };
	struct store_event *v = xcalloc(N, sizeof(*v));
	char(*ids)[IDS_UUID_LEN + 1] = xcalloc(N, sizeof(*ids));
	for (size_t i = 0; i < N; i++) {
		ids_uuidv7(now + (int64_t)i, ids[i]);
		v[i] = (struct store_event){.seq = (int64_t)i + 1,
					    .at = now + (int64_t)i,
					    .type = "delivery",
					    .msg_id = ids[i],
					    .detail = "{\"status\":\"sent\"}",
					    .state = "delivered",
					    .flags = STORE_TRACK_DELIVERED};
	}
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw1", v, N, 0, now, &stored), 0);
	assert_int_equal(stored, N);
	assert_int_equal(count_events(fx->st, "gw1"), N);
	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", ids[N - 1], &t), 0);
	assert_string_equal(t->last_state, "delivered");
	assert_null(t->sender);
	store_tracked_message_free(t);
	free(v);
	free(ids);
}

/* PostgreSQL: one integer from sql on this test's database. */
static int64_t pg_int(struct test_store_fixture *fx, const char *sql)
{
	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	PGresult *r = PQexec(c, sql);
	int64_t v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
			? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
			: -1;
	PQclear(r);
	PQfinish(c);
	return v;
}

/* PostgreSQL: today's events and tracked messages land in today's partitions,
 * made at open, not in the DEFAULT ones. */
static void test_pg_daily_partitions(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char id[IDS_UUID_LEN + 1];
	ids_uuidv7(now, id);
	const char *rcpts[] = {"b@y.test"};
	struct store_event_message m = {
	    .sender = "a@x.test", .recipients = rcpts, .nrecipients = 1};
	struct store_event v[] = {
	    {.seq = 1, .at = now, .type = "received", .msg_id = id, .detail = "{}", .message = &m},
	    {.seq = 2, .at = now, .type = "delivery", .msg_id = id, .detail = "{}"},
	};
	assert_int_equal(store_events_put(fx->st, "gw1", v, 2, 0, now, NULL), 0);
	char sql[256];
	time_t t = (time_t)(now / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char day[16];
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM events_p%s", day);
	assert_int_equal(pg_int(fx, sql), 2);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM tracked_messages_p%s", day);
	assert_int_equal(pg_int(fx, sql), 1);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM tracked_recipients_p%s", day);
	assert_int_equal(pg_int(fx, sql), 1);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM events_default"), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM tracked_messages_default"), 0);
	/* the days ahead exist too (made with the message days) */
	assert_true(pg_int(fx, "SELECT count(*) FROM pg_inherits"
			       " WHERE inhparent = 'events'::regclass") >= 8);
}

#define DAY_MS (86400LL * 1000)

/*
 * Retention: events and tracked messages older than the cutoff go (with their
 * recipients and attachments), fresh ones stay, the gateway's last seq stays, and
 * the old batch pushed again is not stored. On PostgreSQL the old day has its
 * partitions (dropped whole) and one older message sits in the DEFAULT
 * partitions (deleted row by row).
 */
static void test_retention(void **state)
{
	struct test_store_fixture *fx = *state;
	bool pg = test_pg_dsn() != NULL;
	int64_t now = clock_now_ms();
	int64_t old = now - 40 * DAY_MS, older = now - 50 * DAY_MS;
	if (pg) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT lazaret_tracking_partitions(%lld, %lld)",
			 (long long)old, (long long)old);
		assert_true(pg_int(fx, sql) >= 4);
	}
	char old_id[IDS_UUID_LEN + 1], new_id[IDS_UUID_LEN + 1];
	ids_uuidv7(old, old_id);
	ids_uuidv7(now, new_id);
	const char *rcpts[] = {"b@y.test", "c@y.test"};
	const char *atts[] = {"a.pdf"};
	struct store_event_message m = {.sender = "a@x.test",
					.recipients = rcpts,
					.nrecipients = 2,
					.attachments = atts,
					.nattachments = 1,
					.message_id = "<r1@x.test>"};
	struct store_event old_batch[] = {
	    {.seq = 1,
	     .at = older,
	     .type = "received",
	     .msg_id = "m-older",
	     .detail = "{}",
	     .message = &m},
	    {.seq = 2, .at = old, .type = "connection", .detail = "{}"},
	    {.seq = 3,
	     .at = old,
	     .type = "received",
	     .msg_id = old_id,
	     .detail = "{}",
	     .message = &m},
	    {.seq = 4,
	     .at = old + 1,
	     .type = "delivery",
	     .msg_id = old_id,
	     .detail = "{}",
	     .state = "delivered",
	     .flags = STORE_TRACK_DELIVERED},
	};
	struct store_event new_batch[] = {
	    {.seq = 5,
	     .at = now,
	     .type = "received",
	     .msg_id = new_id,
	     .detail = "{}",
	     .message = &m},
	    {.seq = 6,
	     .at = now + 1,
	     .type = "delivery",
	     .msg_id = new_id,
	     .detail = "{}",
	     .state = "delivered",
	     .flags = STORE_TRACK_DELIVERED},
	};
	uint64_t stored = 0;
	assert_int_equal(store_events_put(fx->st, "gw1", old_batch, 4, 0, now, &stored), 0);
	assert_int_equal(stored, 4);
	assert_int_equal(store_events_put(fx->st, "gw1", new_batch, 2, 0, now, &stored), 0);
	assert_int_equal(stored, 2);
	assert_int_equal(count_events(fx->st, "gw1"), 6);

	int64_t before = now - 30 * DAY_MS;
	uint64_t de = 0, dm = 0;
	assert_int_equal(store_tracking_drop_days(fx->st, before, &de, &dm), 0);
	/* PostgreSQL: the old day (3 events, 1 message) went whole; SQLite has no days */
	assert_int_equal(de, pg ? 3 : 0);
	assert_int_equal(dm, pg ? 1 : 0);
	uint64_t te = de, tm = dm, e = 0, mm = 0;
	int rounds = 0;
	do {
		assert_int_equal(store_tracking_purge(fx->st, before, 1, &e, &mm), 0);
		assert_true(e <= 1 && mm <= 1);
		te += e;
		tm += mm;
		rounds++;
	} while ((e > 0 || mm > 0) && rounds < 20);
	assert_int_equal(te, 4);
	assert_int_equal(tm, 2);
	/* batches of one: the row path took at least as many rounds as it had rows */
	assert_true(rounds >= (pg ? 2 : 4));

	struct store_event_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(fx->st, "gw1", NULL, 0, 100, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].seq, 5);
	assert_int_equal(rows[1].seq, 6);
	store_event_rows_free(rows, n);
	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", old_id, &t), -ENOENT);
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", "m-older", &t), -ENOENT);
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", new_id, &t), 0);
	assert_int_equal(t->nrecipients, 2);
	assert_int_equal(t->nattachments, 1);
	store_tracked_message_free(t);

	/* the seq counter is kept: the purged batch pushed again stores nothing */
	struct store_event_state *sv = NULL;
	assert_int_equal(store_event_states(fx->st, &sv, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(sv[0].last_seq, 6);
	store_event_states_free(sv, n);
	assert_int_equal(store_events_put(fx->st, "gw1", old_batch, 4, 0, now, &stored), 0);
	assert_int_equal(stored, 0);
	assert_int_equal(count_events(fx->st, "gw1"), 2);
	assert_int_equal(store_tracked_message_get(fx->st, "gw1", old_id, &t), -ENOENT);
	/* nothing left to do */
	assert_int_equal(store_tracking_purge(fx->st, before, 500, &e, &mm), 0);
	assert_int_equal(e + mm, 0);
	assert_int_equal(store_tracking_purge(fx->st, before, 0, &e, &mm), -EINVAL);

	if (pg) {
		/* the lists went with their messages; the old day's tables are gone, the
		 * days ahead are still there */
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM tracked_recipients"), 2);
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM tracked_attachments"), 1);
		char sql[256];
		time_t tt = (time_t)(old / 1000);
		struct tm tmv;
		gmtime_r(&tt, &tmv);
		char day[16];
		strftime(day, sizeof(day), "%Y%m%d", &tmv);
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM pg_class WHERE relname IN ('events_p%1$s',"
			 " 'tracked_messages_p%1$s', 'tracked_recipients_p%1$s',"
			 " 'tracked_attachments_p%1$s')",
			 day);
		assert_int_equal(pg_int(fx, sql), 0);
		assert_true(pg_int(fx, "SELECT count(*) FROM pg_inherits"
				       " WHERE inhparent = 'events'::regclass") >= 8);
	}
}

/*
 * The manager's own events: numbered by the store from its own counter (the
 * callers' seqs ignored), each call going on from the last; the manager-only
 * types; the reserved name taken by no gateway, and not by the gateway calls.
 */
static void test_own_events(void **state)
{
	struct test_store_fixture *fx = *state;
	int64_t now = clock_now_ms();
	char id[IDS_UUID_LEN + 1];
	ids_uuidv7(now, id);
	const char *rcpts[] = {"u1@corp.test"};
	struct store_event_message m = {.sender = "a@x.test",
					.recipients = rcpts,
					.nrecipients = 1,
					.subject = "件名",
					.message_id = "m1@x.test",
					.size = 10};
	struct store_event v[] = {
	    {.seq = 0,
	     .at = now,
	     .type = "quarantine",
	     .msg_id = id,
	     .detail = "{\"quarantine\":\"spam\"}",
	     .message = &m,
	     .state = "quarantined",
	     .flags = STORE_TRACK_QUARANTINED | STORE_TRACK_SPAM},
	    {.seq = 0,
	     .at = now + 1,
	     .type = "delete",
	     .msg_id = id,
	     .detail = "{}",
	     .state = "deleted"},
	};
	uint64_t stored = 0;
	assert_int_equal(store_events_put_own(fx->st, v, 1, now, &stored), 0);
	assert_int_equal(stored, 1);
	assert_int_equal(store_events_put_own(fx->st, v + 1, 1, now, &stored), 0);
	assert_int_equal(stored, 1);
	struct store_event_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_events_list(fx->st, STORE_EVENTS_OWN_GATEWAY, id, 0, 10, &rows, &n),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].seq, 1);
	assert_string_equal(rows[0].type, "quarantine");
	assert_int_equal(rows[1].seq, 2);
	assert_string_equal(rows[1].type, "delete");
	store_event_rows_free(rows, n);
	struct store_tracked_message *t = NULL;
	assert_int_equal(store_tracked_message_get(fx->st, STORE_EVENTS_OWN_GATEWAY, id, &t), 0);
	assert_string_equal(t->last_state, "deleted");
	assert_string_equal(t->message_id, "m1@x.test");
	assert_string_equal(t->subject, "件名");
	assert_int_equal(t->flags, STORE_TRACK_QUARANTINED | STORE_TRACK_SPAM);
	store_tracked_message_free(t);
	/* "delete" and "expire" are the manager's: a gateway's batch may not have them */
	struct store_event g = {.seq = 1, .at = now, .type = "delete", .detail = "{}"};
	assert_int_equal(store_events_put(fx->st, "gw1", &g, 1, 0, now, &stored), -EINVAL);
	struct store_event bad = {.at = now, .type = "exploded", .detail = "{}"};
	assert_int_equal(store_events_put_own(fx->st, &bad, 1, now, &stored), -EINVAL);
	struct store_event_state *sv = NULL;
	assert_int_equal(store_event_states(fx->st, &sv, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(sv[0].gateway, STORE_EVENTS_OWN_GATEWAY);
	assert_int_equal(sv[0].last_seq, 2);
	store_event_states_free(sv, n);
	/* no gateway takes the name, in any case */
	assert_true(store_gateway_reserved("manager"));
	assert_true(store_gateway_reserved("Manager"));
	assert_false(store_gateway_reserved("manager2"));
	struct store_gateway gw = {
	    .name = (char *)"MANAGER", .address = (char *)"192.0.2.1", .token_hash = (char *)"00"};
	assert_int_equal(store_gateway_add(fx->st, &gw), -EINVAL);
	gw.name = (char *)"gw-ok";
	assert_int_equal(store_gateway_add(fx->st, &gw), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch_and_replay, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_out_of_order, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_batches, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_more_recipients, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_large_batch, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_retention, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_own_events, setup, test_store_teardown),
	};
	const struct CMUnitTest pg_tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch_and_replay, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_out_of_order, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_batches, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_more_recipients, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_large_batch, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_pg_daily_partitions, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_retention, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_own_events, setup, test_store_teardown),
	};
	if (test_pg_dsn() != NULL)
		return cmocka_run_group_tests_name("store_events_postgresql", pg_tests, NULL, NULL);
	return cmocka_run_group_tests_name("store_events_sqlite", tests, NULL, NULL);
}
