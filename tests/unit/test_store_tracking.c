/*
 * Tests for the tracking searches (store_tracked_search, store_tracked_story):
 * every filter finds its messages and none of the others, alone and combined;
 * LIKE's wildcards are plain characters; keyset pages are the whole ordered
 * list, without duplicates or gaps, also across equal times; bad queries and
 * cursors are refused; a story merges the events of the same mail on another
 * gateway within 7 days and no others; every filter's SQL is answered by an
 * index (the query plan, on a real database). Against a real store: SQLite in
 * a temporary folder, or (with LAZARET_TEST_PG_DSN, test_pg.h) a new
 * PostgreSQL database per test.
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
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "common/ids.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "store/store_tracking_int.h"
#include "test_pg.h"

#define T0  1764892800000LL /* 2025-12-05 */
#define DAY 86400000LL

static int setup(void **state)
{
	return test_store_setup(state, "tracking");
}

/* One tracked message: its received event (seq) and one more event (seq + 1). */
struct spec {
	const char *gateway;
	const char *key; /* a label; the msg_id is made from the time */
	int64_t at;
	const char *sender;
	const char *rcpts[3];
	const char *subject;
	const char *message_id;
	const char *client_ip;
	const char *att;
	unsigned flags;
	const char *state;
};

static const struct spec specs[] = {
    {"gw1",
     "report",
     T0,
     "Alice@Example.org",
     {"bob@example.com"},
     "Quarterly report",
     "q1@example.org",
     "192.0.2.1",
     "Q3.pdf",
     STORE_TRACK_DELIVERED,
     "delivered"},
    {"gw1",
     "jp",
     T0 + 1000,
     "carol@x.test",
     {"Dave@Example.JP", "zed@example.com"},
     "見積書のご送付",
     "jp@x.test",
     "192.0.2.2",
     NULL,
     STORE_TRACK_SPAM | STORE_TRACK_QUARANTINED,
     "quarantined"},
    /* the first one again, relayed by gw2 a second later */
    {"gw2",
     "relay",
     T0 + 1000,
     "alice@example.org",
     {"bob@example.com"},
     "Quarterly report",
     "q1@example.org",
     "192.0.2.9",
     "Q3.pdf",
     STORE_TRACK_DELIVERED,
     "delivered"},
    {"gw1",
     "wild",
     T0 + 2000,
     "mallory@x.test",
     {"eve@sub.example.jp"},
     "50% off_now",
     NULL,
     "192.0.2.3",
     "a_b.exe",
     STORE_TRACK_VIRUS,
     "quarantined"},
    /* the same Message-ID 8 days later: not the same mail */
    {"gw2",
     "late",
     T0 + 8 * DAY,
     "alice@example.org",
     {"bob@example.com"},
     "Quarterly report",
     "q1@example.org",
     "192.0.2.9",
     NULL,
     STORE_TRACK_HARD_BOUNCE,
     "bounced"},
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static char msg_ids[NSPECS][IDS_UUID_LEN + 1];

static void put_specs(struct store *st)
{
	for (size_t i = 0; i < NSPECS; i++) {
		const struct spec *s = &specs[i];
		ids_uuidv7(s->at, msg_ids[i]);
		size_t nr = 0;
		while (nr < 3 && s->rcpts[nr] != NULL)
			nr++;
		const char *atts[1] = {s->att};
		struct store_event_message m = {.sender = s->sender,
						.recipients = s->rcpts,
						.nrecipients = nr,
						.subject = s->subject,
						.message_id = s->message_id,
						.client_ip = s->client_ip,
						.attachments = atts,
						.nattachments = s->att != NULL ? 1 : 0,
						.size = 100};
		struct store_event v[] = {
		    {.seq = (int64_t)i * 10 + 1,
		     .at = s->at,
		     .type = "received",
		     .msg_id = msg_ids[i],
		     .detail = "{\"headers\":{\"subject\":\"x\"}}",
		     .message = &m,
		     .state = "received"},
		    {.seq = (int64_t)i * 10 + 2,
		     .at = s->at + 500,
		     .type = "delivery",
		     .msg_id = msg_ids[i],
		     .detail = "{}",
		     .state = s->state,
		     .flags = s->flags},
		};
		assert_int_equal(store_events_put(st, s->gateway, v, 2, 0, s->at, NULL), 0);
	}
}

/* The keys of the messages q finds (all pages of 1000), as "k1,k2,..." newest first. */
static char *found(struct store *st, const struct store_track_query *q)
{
	struct store_tracked_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(st, q, 1000, NULL, &v, &n, &next), 0);
	assert_null(next);
	char *out = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		const char *key = "?";
		for (size_t k = 0; k < NSPECS; k++) {
			if (strcmp(v[i]->msg_id, msg_ids[k]) == 0 &&
			    strcmp(v[i]->gateway, specs[k].gateway) == 0)
				key = specs[k].key;
		}
		char *o = xasprintf("%s%s%s", out, i ? "," : "", key);
		free(out);
		out = o;
	}
	store_tracked_messages_free(v, n);
	return out;
}

static const struct {
	struct store_track_query q;
	const char *want;
} search_cases[] = {
    {{0}, "late,wild,relay,jp,report"},
    {{.sender = "ALICE@example.ORG"}, "late,relay,report"},
    {{.sender = "alice"}, ""},
    {{.sender = "mallory@x.test"}, "wild"},
    {{.recipient = "dave@example.jp"}, "jp"},
    {{.recipient = "zed@EXAMPLE.com"}, "jp"},
    {{.recipient = "@example.jp"}, "jp"},
    {{.recipient = "@EXAMPLE.com"}, "late,relay,jp,report"},
    {{.recipient = "@sub.example.jp"}, "wild"},
    {{.recipient = "@jp"}, ""},
    {{.subject = "積書のご"}, "jp"},
    {{.subject = "見積書", .subject_op = STORE_TRACK_SUBJECT_BEGINS}, "jp"},
    {{.subject = "積書", .subject_op = STORE_TRACK_SUBJECT_BEGINS}, ""},
    {{.subject = "見積書のご送付", .subject_op = STORE_TRACK_SUBJECT_IS}, "jp"},
    {{.subject = "見積書", .subject_op = STORE_TRACK_SUBJECT_IS}, ""},
    {{.subject = "QUARTERLY"}, "late,relay,report"},
    {{.subject = "quarterly REPORT", .subject_op = STORE_TRACK_SUBJECT_IS}, "late,relay,report"},
    {{.subject = "quarterly", .subject_op = STORE_TRACK_SUBJECT_IS}, ""},
    {{.subject = "%"}, "wild"},
    {{.subject = "_"}, "wild"},
    {{.subject = "0%", .subject_op = STORE_TRACK_SUBJECT_BEGINS}, ""},
    {{.subject = "50%", .subject_op = STORE_TRACK_SUBJECT_BEGINS}, "wild"},
    {{.subject = "f%w"}, ""},
    {{.subject = "f_n"}, "wild"},
    {{.subject = "ff-n"}, ""},
    {{.subject = "\\"}, ""},
    {{.message_id = "q1@example.org"}, "late,relay,report"},
    {{.message_id = "<jp@x.test>"}, "jp"},
    {{.message_id = "Q1@example.org"}, ""},
    {{.gateway = "gw2"}, "late,relay"},
    {{.gateway = "gw3"}, ""},
    {{.gateway = "not a gateway!"}, ""},
    {{.client_ip = "192.0.2.2"}, "jp"},
    {{.client_ip = "192.0.2"}, ""},
    {{.attachment = "q3.PDF"}, "relay,report"},
    {{.attachment = "a_b.exe"}, "wild"},
    {{.attachment = "a%b.exe"}, ""},
    {{.flags = STORE_TRACK_SPAM}, "jp"},
    {{.flags = STORE_TRACK_DELIVERED}, "relay,report"},
    {{.flags = STORE_TRACK_VIRUS | STORE_TRACK_HARD_BOUNCE}, "late,wild"},
    {{.flags = STORE_TRACK_VIRUS | STORE_TRACK_DELIVERED}, "wild,relay,report"},
    {{.flags = STORE_TRACK_DLP}, ""},
    {{.since = T0 + 1000}, "late,wild,relay,jp"},
    {{.until = T0 + 1000}, "report"},
    {{.since = T0 + 1000, .until = T0 + 2000}, "relay,jp"},
    {{.since = T0 + 1000, .until = T0 + 1000}, ""},
    {{.sender = "alice@example.org", .gateway = "gw2", .until = T0 + DAY}, "relay"},
    {{.sender = "alice@example.org", .subject = "見積"}, ""},
    {{.recipient = "bob@example.com",
      .attachment = "q3.pdf",
      .flags = STORE_TRACK_DELIVERED,
      .client_ip = "192.0.2.1",
      .message_id = "q1@example.org",
      .subject = "report"},
     "report"},
};

static void test_search_fields(void **state)
{
	struct test_store_fixture *fx = *state;
	put_specs(fx->st);
	for (size_t i = 0; i < sizeof(search_cases) / sizeof(search_cases[0]); i++) {
		char *got = found(fx->st, &search_cases[i].q);
		if (strcmp(got, search_cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, search_cases[i].want);
		free(got);
	}
	/* a row's fields */
	struct store_track_query q = {.recipient = "dave@example.jp"};
	struct store_tracked_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(fx->st, &q, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0]->gateway, "gw1");
	assert_string_equal(v[0]->msg_id, msg_ids[1]);
	assert_int_equal(v[0]->received_at, T0 + 1000);
	assert_string_equal(v[0]->sender, "carol@x.test");
	assert_int_equal(v[0]->nrecipients, 2);
	assert_string_equal(v[0]->recipients[0], "Dave@Example.JP");
	assert_string_equal(v[0]->subject, "見積書のご送付");
	assert_string_equal(v[0]->last_state, "quarantined");
	assert_int_equal(v[0]->flags, STORE_TRACK_SPAM | STORE_TRACK_QUARANTINED);
	store_tracked_messages_free(v, n);
}

static void test_bad_queries(void **state)
{
	struct test_store_fixture *fx = *state;
	put_specs(fx->st);
	struct store_track_query q = {0};
	struct store_tracked_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(fx->st, &q, 0, NULL, &v, &n, &next), -EINVAL);
	assert_int_equal(store_tracked_search(fx->st, &q, 1001, NULL, &v, &n, &next), -EINVAL);
	static const char *const bad[] = {
	    "",
	    "x",
	    "1~gw1",
	    "~gw1~m",
	    "1~~m",
	    "1~gw1~",
	    "a~gw1~m",
	    "-1~gw1~m",
	    "1~gw 1~m",
	    "1~gw1~a b",
	    "99999999999999999999~gw1~m",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (store_tracked_search(fx->st, &q, 10, bad[i], &v, &n, &next) != -EINVAL)
			fail_msg("cursor \"%s\" accepted", bad[i]);
		assert_null(v);
		assert_null(next);
	}
	char *big = xcalloc(1, STORE_EVENT_TEXT_MAX + 2);
	memset(big, 'a', STORE_EVENT_TEXT_MAX + 1);
	struct store_track_query qb = {.sender = big};
	assert_int_equal(store_tracked_search(fx->st, &qb, 10, NULL, &v, &n, &next), -EINVAL);
	qb = (struct store_track_query){.subject = "x", .subject_op = 7};
	assert_int_equal(store_tracked_search(fx->st, &qb, 10, NULL, &v, &n, &next), -EINVAL);
	free(big);
	/* the store is intact */
	char *all = found(fx->st, &q);
	assert_string_equal(all, "late,wild,relay,jp,report");
	free(all);
}

static void test_cursor_pages(void **state)
{
	struct test_store_fixture *fx = *state;
	enum { N = 23 };
	char ids[N][IDS_UUID_LEN + 1];
	for (int i = 0; i < N; i++) {
		/* three at each time: the cursor must break ties */
		int64_t at = T0 + (i / 3) * 1000;
		ids_uuidv7(T0 + i, ids[i]);
		const char *r[] = {"x@example.com"};
		struct store_event_message m = {
		    .sender = "s@x.test", .recipients = r, .nrecipients = 1};
		struct store_event e = {.seq = i + 1,
					.at = at,
					.type = "received",
					.msg_id = ids[i],
					.detail = "{}",
					.message = &m};
		assert_int_equal(
		    store_events_put(fx->st, i % 2 ? "gw-b" : "gw-a", &e, 1, 0, at, NULL), 0);
	}
	struct store_track_query q = {0};
	struct store_tracked_message **whole = NULL;
	size_t nwhole = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(fx->st, &q, 1000, NULL, &whole, &nwhole, &next), 0);
	assert_int_equal(nwhole, N);
	assert_null(next);
	for (size_t i = 1; i < nwhole; i++)
		assert_true(whole[i - 1]->received_at >= whole[i]->received_at);
	for (size_t limit = 1; limit <= 8; limit++) {
		size_t k = 0;
		char *cursor = NULL;
		for (int pages = 0;; pages++) {
			assert_true(pages <= N);
			struct store_tracked_message **v = NULL;
			size_t n = 0;
			assert_int_equal(
			    store_tracked_search(fx->st, &q, limit, cursor, &v, &n, &next), 0);
			assert_true(n <= limit);
			for (size_t i = 0; i < n; i++, k++) {
				assert_true(k < N);
				assert_string_equal(v[i]->msg_id, whole[k]->msg_id);
				assert_string_equal(v[i]->gateway, whole[k]->gateway);
			}
			store_tracked_messages_free(v, n);
			free(cursor);
			cursor = next;
			if (cursor == NULL)
				break;
		}
		assert_int_equal(k, N);
	}
	store_tracked_messages_free(whole, nwhole);
}

static void test_story(void **state)
{
	struct test_store_fixture *fx = *state;
	put_specs(fx->st);
	struct store_tracked_message *m = NULL;
	struct store_event_row *ev = NULL;
	size_t n = 0;
	/* the report, relayed by gw2: both gateways' events, in time order */
	assert_int_equal(store_tracked_story(fx->st, "gw1", msg_ids[0], &m, &ev, &n), 0);
	assert_string_equal(m->gateway, "gw1");
	assert_string_equal(m->subject, "Quarterly report");
	assert_int_equal(n, 4);
	const struct {
		const char *gateway, *type;
		int64_t at;
	} want[] = {
	    {"gw1", "received", T0},
	    {"gw1", "delivery", T0 + 500},
	    {"gw2", "received", T0 + 1000},
	    {"gw2", "delivery", T0 + 1500},
	};
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(ev[i].gateway, want[i].gateway);
		assert_string_equal(ev[i].type, want[i].type);
		assert_int_equal(ev[i].at, want[i].at);
	}
	assert_string_equal(ev[0].detail, "{\"headers\":{\"subject\":\"x\"}}");
	store_tracked_message_free(m);
	store_event_rows_free(ev, n);
	/* from gw2's side: the same story, and not the one 8 days later */
	assert_int_equal(store_tracked_story(fx->st, "gw2", msg_ids[2], &m, &ev, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(ev[0].gateway, "gw1");
	store_tracked_message_free(m);
	store_event_rows_free(ev, n);
	/* 8 days later: alone (gw1's report is beyond 7 days) */
	assert_int_equal(store_tracked_story(fx->st, "gw2", msg_ids[4], &m, &ev, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].gateway, "gw2");
	assert_string_equal(ev[1].gateway, "gw2");
	store_tracked_message_free(m);
	store_event_rows_free(ev, n);
	/* no Message-ID: only its own */
	assert_int_equal(store_tracked_story(fx->st, "gw1", msg_ids[3], &m, &ev, &n), 0);
	assert_int_equal(n, 2);
	store_tracked_message_free(m);
	store_event_rows_free(ev, n);
	/* unknown */
	assert_int_equal(store_tracked_story(fx->st, "gw2", msg_ids[0], &m, &ev, &n), -ENOENT);
	assert_null(m);
	assert_null(ev);
	assert_int_equal(store_tracked_story(fx->st, "bad gw", msg_ids[0], &m, &ev, &n), -ENOENT);
}

/*
 * A message's tracked row is the same whether its events come in one batch or
 * in several, its "received" first or last: the first event's time until the
 * "received" one's, the last state said, the flags of all, the newest time.
 */
static void test_tracked_row_across_batches(void **state)
{
	struct test_store_fixture *fx = *state;
	char ids[3][IDS_UUID_LEN + 1];
	for (int i = 0; i < 3; i++)
		ids_uuidv7(T0 + i, ids[i]);
	const char *r[] = {"A@Example.com", "b@example.com"};
	const char *att[] = {"Q3.pdf"};
	struct store_event_message m = {.sender = "S@X.test",
					.subject = "見積書",
					.message_id = "m@x",
					.client_ip = "192.0.2.7",
					.size = 1234,
					.recipients = r,
					.nrecipients = 2,
					.attachments = att,
					.nattachments = 1};
	/* gw1: one batch; gw2: the same events one at a time; gw3: "received" last */
	for (int g = 0; g < 3; g++) {
		const char *gw = g == 0 ? "gw1" : g == 1 ? "gw2" : "gw3";
		const char *id = ids[g];
		struct store_event v[] = {
		    {.seq = 1,
		     .at = T0,
		     .type = "received",
		     .msg_id = id,
		     .detail = "{}",
		     .message = &m,
		     .state = "received"},
		    {.seq = 2,
		     .at = T0 + 5,
		     .type = "verdict",
		     .msg_id = id,
		     .detail = "{}",
		     .flags = STORE_TRACK_SPAM},
		    {.seq = 3,
		     .at = T0 + 9,
		     .type = "quarantine",
		     .msg_id = id,
		     .detail = "{}",
		     .state = "quarantined",
		     .flags = STORE_TRACK_QUARANTINED},
		    {.seq = 4, .at = T0 + 7, .type = "reply", .msg_id = id, .detail = "{}"},
		};
		if (g == 0) {
			assert_int_equal(store_events_put(fx->st, gw, v, 4, 0, T0, NULL), 0);
		} else if (g == 1) {
			for (int i = 0; i < 4; i++)
				assert_int_equal(
				    store_events_put(fx->st, gw, &v[i], 1, 0, T0, NULL), 0);
		} else {
			/* the others first, then "received" as a later event */
			v[0].seq = 5;
			v[0].at = T0 + 3;
			assert_int_equal(store_events_put(fx->st, gw, &v[1], 3, 0, T0, NULL), 0);
			struct store_tracked_message *t = NULL;
			assert_int_equal(store_tracked_message_get(fx->st, gw, id, &t), 0);
			assert_null(t->sender);
			assert_int_equal(t->received_at, T0 + 5);
			assert_int_equal(t->nrecipients, 0);
			store_tracked_message_free(t);
			assert_int_equal(store_events_put(fx->st, gw, &v[0], 1, 0, T0, NULL), 0);
		}
		struct store_tracked_message *t = NULL;
		assert_int_equal(store_tracked_message_get(fx->st, gw, id, &t), 0);
		assert_string_equal(t->sender, "S@X.test");
		assert_string_equal(t->subject, "見積書");
		assert_string_equal(t->message_id, "m@x");
		assert_string_equal(t->client_ip, "192.0.2.7");
		assert_int_equal(t->size, 1234);
		assert_int_equal(t->nrecipients, 2);
		assert_string_equal(t->recipients[1], "b@example.com");
		assert_int_equal(t->nattachments, 1);
		assert_int_equal(t->received_at, g == 2 ? T0 + 3 : T0);
		/* gw3's "received" came last: its state is the last said */
		assert_string_equal(t->last_state, g == 2 ? "received" : "quarantined");
		assert_int_equal(t->flags, STORE_TRACK_SPAM | STORE_TRACK_QUARANTINED);
		assert_int_equal(t->updated_at, T0 + 9);
		store_tracked_message_free(t);
	}
	/* found by its sender through the index */
	struct store_track_query q = {.since = T0 - 1000, .until = T0 + 1000, .sender = "s@x.test"};
	struct store_tracked_message **found = NULL;
	size_t nf = 0;
	char *next = NULL;
	assert_int_equal(store_tracked_search(fx->st, &q, 10, NULL, &found, &nf, &next), 0);
	assert_int_equal(nf, 3);
	store_tracked_messages_free(found, nf);
	free(next);
}

/* A story shows the connection event of the message's own SMTP session, not
 * another session's, nor one that began over STORE_TRACK_SESSION_WINDOW_MS before. */
static void test_story_session(void **state)
{
	struct test_store_fixture *fx = *state;
	char id1[IDS_UUID_LEN + 1], id2[IDS_UUID_LEN + 1];
	ids_uuidv7(T0, id1);
	ids_uuidv7(T0 + 1, id2);
	const char *r[] = {"x@example.com"};
	struct store_event_message m = {.sender = "s@x.test", .recipients = r, .nrecipients = 1};
	struct store_event v[] = {
	    {.seq = 1,
	     .at = T0 - 3 * 3600 * 1000LL,
	     .type = "connection",
	     .detail = "{\"session\":\"s2\",\"hat_decision\":\"accept\"}"},
	    {.seq = 2,
	     .at = T0 - 5000,
	     .type = "connection",
	     .detail = "{\"session\":\"s1\",\"helo\":\"mx.example.org\"}"},
	    {.seq = 3, .at = T0 - 4000, .type = "connection", .detail = "{\"session\":\"s9\"}"},
	    {.seq = 4,
	     .at = T0 - 3000,
	     .type = "rcpt_accepted",
	     .detail = "{\"session\":\"s1\",\"rcpt\":\"x@example.com\"}"},
	    {.seq = 5,
	     .at = T0,
	     .type = "received",
	     .msg_id = id1,
	     .detail = "{\"session\":\"s1\"}",
	     .message = &m},
	    {.seq = 6,
	     .at = T0 + 1,
	     .type = "received",
	     .msg_id = id2,
	     .detail = "{\"session\":\"s2\"}",
	     .message = &m},
	    /* a later session s1 of another day is not this one's */
	    {.seq = 7, .at = T0 + 10, .type = "connection", .detail = "{\"session\":\"s1\"}"},
	};
	assert_int_equal(store_events_put(fx->st, "gw1", v, 7, 0, T0, NULL), 0);
	struct store_tracked_message *msg = NULL;
	struct store_event_row *ev = NULL;
	size_t n = 0;
	assert_int_equal(store_tracked_story(fx->st, "gw1", id1, &msg, &ev, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].type, "connection");
	assert_int_equal(ev[0].seq, 2);
	assert_null(ev[0].msg_id);
	assert_string_equal(ev[0].gateway, "gw1");
	assert_string_equal(ev[1].type, "received");
	store_tracked_message_free(msg);
	store_event_rows_free(ev, n);
	/* s2 began 3 hours before its message: beyond the window */
	assert_int_equal(store_tracked_story(fx->st, "gw1", id2, &msg, &ev, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].type, "received");
	store_tracked_message_free(msg);
	store_event_rows_free(ev, n);
}

/* A story shows the recipients refused at RCPT in its own transaction: not those
 * of the session's earlier message, nor another session's; accepted ones are in
 * its "received" event. */
static void test_story_refused_rcpts(void **state)
{
	struct test_store_fixture *fx = *state;
	char id1[IDS_UUID_LEN + 1], id2[IDS_UUID_LEN + 1];
	ids_uuidv7(T0 - 3000, id1);
	ids_uuidv7(T0, id2);
	const char *r[] = {"x@example.com"};
	struct store_event_message m = {.sender = "s@x.test", .recipients = r, .nrecipients = 1};
	struct store_event v[] = {
	    {.seq = 1, .at = T0 - 5000, .type = "connection", .detail = "{\"session\":\"s1\"}"},
	    {.seq = 2,
	     .at = T0 - 4000,
	     .type = "rcpt_refused",
	     .detail = "{\"session\":\"s1\",\"rcpt\":\"a@elsewhere.test\",\"reply\":\"550 no\"}"},
	    {.seq = 3,
	     .at = T0 - 3000,
	     .type = "received",
	     .msg_id = id1,
	     .detail = "{\"session\":\"s1\"}",
	     .message = &m},
	    {.seq = 4,
	     .at = T0 - 2000,
	     .type = "rcpt_refused",
	     .detail = "{\"session\":\"s1\",\"rcpt\":\"b@elsewhere.test\",\"reply\":\"550 no\"}"},
	    {.seq = 5,
	     .at = T0 - 1900,
	     .type = "rcpt_accepted",
	     .detail = "{\"session\":\"s1\",\"rcpt\":\"x@example.com\"}"},
	    {.seq = 6,
	     .at = T0 - 1500,
	     .type = "rcpt_refused",
	     .detail = "{\"session\":\"s2\",\"rcpt\":\"c@elsewhere.test\",\"reply\":\"550 no\"}"},
	    {.seq = 7,
	     .at = T0,
	     .type = "received",
	     .msg_id = id2,
	     .detail = "{\"session\":\"s1\"}",
	     .message = &m},
	};
	assert_int_equal(store_events_put(fx->st, "gw1", v, 7, 0, T0, NULL), 0);
	const struct {
		const char *id;
		int64_t seq[3];
	} want[] = {{id1, {1, 2, 3}}, {id2, {1, 4, 7}}};
	for (size_t i = 0; i < 2; i++) {
		struct store_tracked_message *msg = NULL;
		struct store_event_row *ev = NULL;
		size_t n = 0;
		assert_int_equal(store_tracked_story(fx->st, "gw1", want[i].id, &msg, &ev, &n), 0);
		assert_int_equal(n, 3);
		for (size_t k = 0; k < 3; k++)
			assert_int_equal(ev[k].seq, want[i].seq[k]);
		assert_string_equal(ev[1].type, "rcpt_refused");
		assert_null(ev[1].msg_id);
		store_tracked_message_free(msg);
		store_event_rows_free(ev, n);
	}
}

/* The queries whose plans must use an index, and (SQLite) the index. */
static const struct {
	struct store_track_query q;
	const char *sqlite_index;
} plan_cases[] = {
    {{.sender = "a@x"}, "tracked_sender"},
    {{.recipient = "a@x"}, "tracked_recipients_address"},
    {{.recipient = "@x"}, "tracked_recipients_domain"},
    {{.subject = "abc", .subject_op = STORE_TRACK_SUBJECT_BEGINS}, "tracked_subject"},
    {{.subject = "abc", .subject_op = STORE_TRACK_SUBJECT_IS}, "tracked_subject"},
    {{.message_id = "a@x"}, "tracked_message_id"},
    {{.gateway = "gw1"}, "tracked_gateway"},
    {{.client_ip = "192.0.2.1"}, "tracked_client"},
    {{.attachment = "a.pdf"}, "tracked_attachments_name"},
    {{.flags = STORE_TRACK_VIRUS}, "tracked_flagged"},
    {{.flags = STORE_TRACK_SPAM | STORE_TRACK_DLP}, "tracked_flagged"},
    {{.since = T0, .until = T0 + 1}, "tracked_received"},
    /* SQLite: contains reads the rows newest first (no trigram column) */
    {{.subject = "abc"}, "tracked_received"},
    {{0}, "tracked_received"},
};

static char *plan_text_sqlite(sqlite3 *db, const struct store_track_sql *sql)
{
	char *text = xasprintf("EXPLAIN QUERY PLAN %s", sql->sql);
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, text, -1, &s, NULL), SQLITE_OK);
	free(text);
	for (size_t i = 0; i < sql->n; i++) {
		if (sql->v[i].is_int)
			sqlite3_bind_int64(s, (int)i + 1, sql->v[i].i);
		else
			sqlite3_bind_text(s, (int)i + 1, sql->v[i].text, -1, SQLITE_STATIC);
	}
	char *out = xstrdup("");
	while (sqlite3_step(s) == SQLITE_ROW) {
		char *o = xasprintf("%s%s\n", out, (const char *)sqlite3_column_text(s, 3));
		free(out);
		out = o;
	}
	sqlite3_finalize(s);
	return out;
}

static char *plan_text_pg(PGconn *c, const struct store_track_sql *sql)
{
	const char *values[STORE_TRACK_SQL_PARAMS];
	char ints[STORE_TRACK_SQL_PARAMS][24];
	for (size_t i = 0; i < sql->n; i++) {
		if (sql->v[i].is_int) {
			snprintf(ints[i], sizeof(ints[i]), "%lld", (long long)sql->v[i].i);
			values[i] = ints[i];
		} else {
			values[i] = sql->v[i].text;
		}
	}
	char *text = xasprintf("EXPLAIN %s", sql->sql);
	PGresult *r = PQexecParams(c, text, (int)sql->n, NULL, values, NULL, NULL, 0);
	free(text);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	char *out = xstrdup("");
	for (int i = 0; i < PQntuples(r); i++) {
		char *o = xasprintf("%s%s\n", out, PQgetvalue(r, i, 0));
		free(out);
		out = o;
	}
	PQclear(r);
	return out;
}

static void test_plans_use_indexes(void **state)
{
	struct test_store_fixture *fx = *state;
	put_specs(fx->st);
	sqlite3 *db = NULL;
	PGconn *pg = NULL;
	if (fx->db[0] == '\0') {
		char *path = xasprintf("%s/lazaret.db", fx->dir);
		assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
		free(path);
	} else {
		char *dsn = test_pg_dsn_of(fx->db);
		pg = PQconnectdb(dsn);
		free(dsn);
		assert_int_equal(PQstatus(pg), CONNECTION_OK);
		/* a few rows: the planner would read them all; forbid it to see what
		 * it would do on a large store */
		PQclear(PQexec(pg, "SET enable_seqscan = off"));
	}
	for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
		struct store_track_sql sql;
		store_tracking_sql_build(&plan_cases[i].q, 50, 0, NULL, NULL,
					 db != NULL ? STORE_TRACK_SQLITE : STORE_TRACK_PG, &sql);
		char *plan = db != NULL ? plan_text_sqlite(db, &sql) : plan_text_pg(pg, &sql);
		if (db != NULL) {
			char *want = xasprintf("INDEX %s", plan_cases[i].sqlite_index);
			if (strstr(plan, want) == NULL)
				fail_msg("case %zu: no %s in\n%s%s", i, want, plan, sql.sql);
			/* and no table read whole without an index */
			if (strstr(plan, "SCAN m\n") != NULL || strstr(plan, "SCAN r\n") != NULL ||
			    strstr(plan, "SCAN a\n") != NULL)
				fail_msg("case %zu: a full scan in\n%s", i, plan);
			free(want);
		} else if (strstr(plan, "Seq Scan") != NULL) {
			fail_msg("case %zu: a sequential scan in\n%s%s", i, plan, sql.sql);
		}
		free(plan);
		store_tracking_sql_clear(&sql);
	}
	if (db != NULL)
		sqlite3_close(db);
	if (pg != NULL)
		PQfinish(pg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_search_fields, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_queries, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_cursor_pages, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_story, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_tracked_row_across_batches, setup,
					    test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_story_session, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_story_refused_rcpts, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_plans_use_indexes, setup, test_store_teardown),
	};
	if (test_pg_dsn() != NULL)
		return cmocka_run_group_tests_name("store_tracking_postgresql", tests, NULL, NULL);
	return cmocka_run_group_tests_name("store_tracking_sqlite", tests, NULL, NULL);
}
