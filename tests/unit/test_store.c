/*
 * test_store — the quarantine store through store.h: durability of submitted
 * messages, group commit, the recipient state machine, the delivery queue,
 * listing filters and keyset paging, expiry/purge, schema reopen, and the query
 * plans that keep listing fast at scale.
 *
 * One program, both backends. Without LAZARET_TEST_PG_DSN each test works on
 * SQLite in its own temporary directory under /tmp, removed afterwards. With it
 * (scripts/with-postgresql sets it; meson runs this program both ways), each
 * test gets its own new database on that PostgreSQL server, dropped afterwards,
 * and the tests of SQLite's own machinery (its query plans, pages, tokenizer and
 * migrations) give way to PostgreSQL's.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "common/ids.h"
#include "common/clock.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "store/store_short.h"
#include "test_pg.h"
#include "test_util.h"

#define T0 1760000000000LL /* a fixed "now" so ids and times are predictable */

struct fixture {
	char dir[64];
	char db[64]; /* PostgreSQL: this test's database */
	struct store *st;
};

/* The PostgreSQL server to test against (test_pg.h), or NULL: SQLite. */
static const char *pg_dsn;

/* The first value of sql on the fixture's PostgreSQL database, as a number. */
static int64_t pg_int(struct fixture *fx, const char *sql)
{
	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

/* A second store on the fixture's PostgreSQL database, under node name node (NULL:
 * the host name, as the fixture's own store). */
static int fixture_open_node(struct fixture *fx, const char *node, bool exclusive,
			     struct store **out)
{
	char *dsn = test_pg_dsn_of(fx->db);
	struct store_options opt = {
	    .backend = "postgresql", .dsn = dsn, .node_name = node, .exclusive = exclusive};
	int rc = store_open(&opt, out);
	free(dsn);
	return rc;
}

static int fixture_open_other(struct fixture *fx, struct store **out)
{
	return fixture_open_node(fx, NULL, false, out);
}

/* Runs sql on a connection of its own to the fixture's database; asserts it worked. */
static void pg_run(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* Opens the fixture's store: its directory, or its database. */
static int fixture_open(struct fixture *fx)
{
	char *where = pg_dsn != NULL ? test_pg_dsn_of(fx->db) : xasprintf("%s/data", fx->dir);
	struct store_options opt = {.dir = where};
	if (pg_dsn != NULL)
		opt = (struct store_options){.backend = "postgresql", .dsn = where};
	int rc = store_open(&opt, &fx->st);
	free(where);
	return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state);

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lazaret-test-store-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	if (pg_dsn != NULL && test_pg_create(fx->db, sizeof(fx->db)) < 0)
		fail_msg("cannot create a database at %s", pg_dsn);
	/* SQLite: a subdirectory the store must create itself */
	*state = fx;
	if (fixture_open(fx) != 0) {
		teardown(state);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_close(fx->st);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (pg_dsn != NULL && fx->db[0] != '\0')
		test_pg_drop(fx->db);
	free(fx);
	return 0;
}

static char *db_path(struct fixture *fx)
{
	return xasprintf("%s/data/lazaret.db", fx->dir);
}

/* --- building and submitting messages ----------------------------------- */

struct msg_spec {
	const char *label;
	int64_t at; /* received_at; also the id's time */
	const char *quarantine;
	const char *sender;
	const char *from_addr;
	const char *rcpts[4];
	const char *subject;
	const char *verdict;
	const char *gateway;
};

static struct store_new_message *build(const struct msg_spec *sp, char id_out[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(sp->at, m->id);
	if (id_out != NULL)
		memcpy(id_out, m->id, 37);
	m->quarantine = xstrdup(sp->quarantine != NULL ? sp->quarantine : "spam");
	m->received_at = sp->at;
	m->sender = xstrdup(sp->sender != NULL ? sp->sender : "");
	for (size_t i = 0; i < 4 && sp->rcpts[i] != NULL; i++)
		m->nrecipients++;
	m->recipients = xcalloc(m->nrecipients, sizeof(char *));
	for (size_t i = 0; i < m->nrecipients; i++)
		m->recipients[i] = xstrdup(sp->rcpts[i]);
	m->gateway = xstrdup(sp->gateway != NULL ? sp->gateway : "gw1");
	m->verdict = xstrdup(sp->verdict != NULL ? sp->verdict : "spam");
	m->from_addr = sp->from_addr != NULL ? xstrdup(sp->from_addr) : NULL;
	m->from = sp->from_addr != NULL ? xasprintf("Someone <%s>", sp->from_addr) : NULL;
	m->subject = sp->subject != NULL ? xstrdup(sp->subject) : NULL;
	m->raw = (unsigned char *)xasprintf("Subject: %s\r\n\r\nbody of %s\r\n",
					    sp->subject != NULL ? sp->subject : "", sp->label);
	m->raw_len = strlen((char *)m->raw);
	return m;
}

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int remaining;
	int failures;
	int last_rc;
};

static void waiter_init(struct waiter *w, int n)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->remaining = n;
	w->failures = 0;
	w->last_rc = 0;
}

static void waiter_done(void *arg, int rc)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->lock);
	w->remaining--;
	w->last_rc = rc;
	if (rc != 0)
		w->failures++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->remaining > 0)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

static int submit_sync(struct store *st, struct store_new_message *m)
{
	struct waiter w;
	waiter_init(&w, 1);
	assert_int_equal(store_submit_message(st, m, waiter_done, &w), 0);
	waiter_wait(&w);
	return w.last_rc;
}

static void add(struct store *st, const struct msg_spec *sp, char id[37])
{
	assert_int_equal(submit_sync(st, build(sp, id)), 0);
}

static enum store_rcpt_state rcpt_state(struct store *st, const char *id, const char *addr)
{
	struct store_message *m = NULL;
	assert_int_equal(store_get(st, id, &m), 0);
	int found = -1;
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (strcasecmp(m->recipients[i].address, addr) == 0)
			found = (int)m->recipients[i].state;
	}
	store_message_free(m);
	assert_true(found >= 0);
	return (enum store_rcpt_state)found;
}

/* --- roundtrip ----------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	struct fixture *fx = *state;
	/* both backends have every function of store.h */
	assert_null(store_backend_missing("sqlite"));
	assert_null(store_backend_missing("postgresql"));
	assert_null(store_backend_missing(NULL));
	char *missing = store_backend_missing("oracle");
	assert_non_null(missing);
	free(missing);
	struct msg_spec sp = {.label = "rt",
			      .at = T0,
			      .sender = "Bounce@Example.JP",
			      .from_addr = "news@example.jp",
			      .rcpts = {"User@corp.jp", "other@corp.jp"},
			      .subject = "請求書のお知らせ"};
	for (int prepared = 0; prepared < 2; prepared++) {
		char id[37];
		struct store_new_message *m = build(&sp, id);
		/* every byte value, bare CR/LF and a NUL: stored byte-exact */
		free(m->raw);
		m->raw_len = 256 * 4;
		m->raw = xmalloc(m->raw_len);
		for (size_t i = 0; i < m->raw_len; i++)
			m->raw[i] = (unsigned char)(i * 7 + (size_t)prepared);
		unsigned char *expect = xmalloc(m->raw_len);
		memcpy(expect, m->raw, m->raw_len);
		size_t expect_len = m->raw_len;
		m->has_score = prepared == 1;
		m->score = 7.5;
		m->date_ms = T0 - 1000;
		m->message_id = xstrdup("<abc@example.jp>");
		m->nattachments = 1;
		m->attachments = xcalloc(1, sizeof(*m->attachments));
		m->attachments[0].filename = xstrdup("見積書.pdf");
		m->attachments[0].content_type = xstrdup("application/pdf");
		m->attachments[0].size = 12345;
		if (prepared)
			assert_int_equal(store_new_message_prepare(m), 0);
		assert_int_equal(submit_sync(fx->st, m), 0);

		struct store_message *g = NULL;
		assert_int_equal(store_get(fx->st, id, &g), 0);
		assert_string_equal(g->id, id);
		assert_string_equal(g->quarantine, "spam");
		assert_string_equal(g->sender, "Bounce@Example.JP");
		assert_string_equal(g->subject, "請求書のお知らせ");
		assert_string_equal(g->from_addr, "news@example.jp");
		assert_string_equal(g->message_id, "<abc@example.jp>");
		assert_int_equal(g->received_at, T0);
		assert_int_equal(g->date_ms, T0 - 1000);
		assert_int_equal(g->size, expect_len);
		assert_int_equal(g->has_score, prepared == 1);
		if (prepared)
			assert_true(g->score == 7.5);
		assert_int_equal(g->nrecipients, 2);
		assert_string_equal(g->recipients[0].address, "User@corp.jp");
		assert_int_equal(g->recipients[0].state, STORE_RCPT_QUARANTINED);
		assert_string_equal(g->recipients[1].address, "other@corp.jp");
		assert_int_equal(g->nattachments, 1);
		assert_string_equal(g->attachments[0].filename, "見積書.pdf");
		assert_int_equal(g->attachments[0].size, 12345);
		store_message_free(g);

		unsigned char *raw = NULL;
		size_t len = 0;
		assert_int_equal(store_get_raw(fx->st, id, &raw, &len), 0);
		assert_int_equal(len, expect_len);
		assert_memory_equal(raw, expect, len);
		free(raw);
		free(expect);
	}
	char unknown[37];
	ids_uuidv7(T0, unknown);
	struct store_message *g = NULL;
	unsigned char *raw = NULL;
	size_t len = 0;
	assert_int_equal(store_get(fx->st, unknown, &g), -ENOENT);
	assert_int_equal(store_get_raw(fx->st, unknown, &raw, &len), -ENOENT);
	assert_int_equal(store_get(fx->st, "not-an-id", &g), -ENOENT);
}

/* An invalid message fails alone; the ones in the same batch are stored. */
static void test_bad_message_in_batch(void **state)
{
	struct fixture *fx = *state;
	struct msg_spec sp = {.label = "ok", .at = T0, .rcpts = {"a@x.jp"}};
	struct waiter w;
	waiter_init(&w, 3);
	char ok1[37], ok2[37];
	struct store_new_message *bad = build(&sp, NULL);
	for (size_t i = 0; i < bad->nrecipients; i++)
		free(bad->recipients[i]);
	bad->nrecipients = 0; /* no recipient: cannot be stored */
	assert_int_equal(store_submit_message(fx->st, build(&sp, ok1), waiter_done, &w), 0);
	assert_int_equal(store_submit_message(fx->st, bad, waiter_done, &w), 0);
	assert_int_equal(store_submit_message(fx->st, build(&sp, ok2), waiter_done, &w), 0);
	waiter_wait(&w);
	assert_int_equal(w.failures, 1);
	struct store_message *g = NULL;
	assert_int_equal(store_get(fx->st, ok1, &g), 0);
	store_message_free(g);
	assert_int_equal(store_get(fx->st, ok2, &g), 0);
	store_message_free(g);
	/* a duplicate id is a storage failure for that message only */
	struct store_new_message *dup = build(&sp, NULL);
	memcpy(dup->id, ok1, 37);
	assert_int_equal(submit_sync(fx->st, dup), -EIO);
}

/* --- concurrency and group commit ---------------------------------------- */

#define SUBMIT_THREADS	   4
#define SUBMITS_PER_THREAD 250

struct submitter {
	struct store *st;
	struct waiter *w;
	int index;
};

static void *submit_main(void *arg)
{
	struct submitter *s = arg;
	for (int i = 0; i < SUBMITS_PER_THREAD; i++) {
		struct msg_spec sp = {.label = "c",
				      .at = T0 + s->index * 100000 + i,
				      .rcpts = {"a@x.jp", "b@x.jp"},
				      .subject = "concurrent"};
		struct store_new_message *m = build(&sp, NULL);
		if (i % 2 == 0)
			store_new_message_prepare(m);
		if (store_submit_message(s->st, m, waiter_done, s->w) != 0)
			waiter_done(s->w, -1);
	}
	return NULL;
}

static void test_concurrent_submits(void **state)
{
	struct fixture *fx = *state;
	struct waiter w;
	waiter_init(&w, SUBMIT_THREADS * SUBMITS_PER_THREAD);
	pthread_t th[SUBMIT_THREADS];
	struct submitter sub[SUBMIT_THREADS];
	for (int i = 0; i < SUBMIT_THREADS; i++) {
		sub[i] = (struct submitter){.st = fx->st, .w = &w, .index = i};
		pthread_create(&th[i], NULL, submit_main, &sub[i]);
	}
	for (int i = 0; i < SUBMIT_THREADS; i++)
		pthread_join(th[i], NULL);
	waiter_wait(&w);
	assert_int_equal(w.failures, 0);
	struct store_stats ss;
	assert_int_equal(store_stats(fx->st, &ss), 0);
	assert_int_equal(ss.messages, SUBMIT_THREADS * SUBMITS_PER_THREAD);
	assert_true(ss.bytes_original > 0 && ss.bytes_stored > 0);
	assert_true(ss.file_bytes > 0);
}

/* The first callback holds the writer until every other message is queued. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	struct waiter *w;
};

static void gate_done(void *arg, int rc)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->lock);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	waiter_done(g->w, rc);
}

static void test_group_commit_batches(void **state)
{
	struct fixture *fx = *state;
	struct store_debug_counters before, after;
	store_debug_counters(fx->st, &before);
	struct waiter w;
	waiter_init(&w, 500);
	struct gate g = {.w = &w};
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	for (int i = 0; i < 500; i++) {
		struct msg_spec sp = {.label = "g", .at = T0 + i, .rcpts = {"a@x.jp"}};
		assert_int_equal(store_submit_message(fx->st, build(&sp, NULL),
						      i == 0 ? gate_done : waiter_done,
						      i == 0 ? (void *)&g : (void *)&w),
				 0);
	}
	pthread_mutex_lock(&g.lock);
	g.open = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	waiter_wait(&w);
	assert_int_equal(w.failures, 0);
	store_debug_counters(fx->st, &after);
	assert_int_equal(after.batched_messages - before.batched_messages, 500);
	/* 1 + 256 + 243 with the default batch_max: 3 commits for 500 messages */
	assert_true(after.batches - before.batches <= 3);
	assert_true(after.commits - before.commits <= 3);
	pthread_mutex_destroy(&g.lock);
	pthread_cond_destroy(&g.cond);
}

/* --- state machine and deliveries ---------------------------------------- */

static void test_release_delete_states(void **state)
{
	struct fixture *fx = *state;
	struct msg_spec sp = {
	    .label = "s", .at = T0, .sender = "s@x.jp", .rcpts = {"a@x.jp", "B@x.jp", "c@x.jp"}};
	char id[37];
	add(fx->st, &sp, id);
	int changed = -1;
	uint64_t pending = 99;

	/* a non-recipient: -EINVAL and nothing changes */
	const char *bad[] = {"a@x.jp", "nobody@x.jp"};
	assert_int_equal(store_release(fx->st, id, bad, 2, T0, &changed), -EINVAL);
	assert_int_equal(rcpt_state(fx->st, id, "a@x.jp"), STORE_RCPT_QUARANTINED);
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 0);

	/* per-recipient release, case-insensitive */
	const char *ra[] = {"A@X.JP"};
	assert_int_equal(store_release(fx->st, id, ra, 1, T0 + 1, &changed), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(rcpt_state(fx->st, id, "a@x.jp"), STORE_RCPT_RELEASING);
	assert_int_equal(rcpt_state(fx->st, id, "b@x.jp"), STORE_RCPT_QUARANTINED);
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 1);

	/* releasing again is a no-op that queues nothing */
	assert_int_equal(store_release(fx->st, id, ra, 1, T0 + 2, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 1);
	/* a releasing recipient cannot be deleted */
	assert_int_equal(store_delete(fx->st, id, ra, 1, T0 + 2, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(rcpt_state(fx->st, id, "a@x.jp"), STORE_RCPT_RELEASING);

	/* per-recipient delete */
	const char *rb[] = {"b@x.jp"};
	assert_int_equal(store_delete(fx->st, id, rb, 1, T0 + 3, &changed), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(rcpt_state(fx->st, id, "B@x.jp"), STORE_RCPT_DELETED);
	/* deleted is final */
	assert_int_equal(store_release(fx->st, id, rb, 1, T0 + 3, &changed), 0);
	assert_int_equal(changed, 0);

	/* release all: only c is left quarantined; one more delivery */
	assert_int_equal(store_release(fx->st, id, NULL, 0, T0 + 4, &changed), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 2);
	assert_int_equal(store_release(fx->st, id, NULL, 0, T0 + 5, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 2);

	char unknown[37];
	ids_uuidv7(T0, unknown);
	assert_int_equal(store_release(fx->st, unknown, NULL, 0, T0, &changed), -ENOENT);
	assert_int_equal(store_delete(fx->st, "garbage", NULL, 0, T0, &changed), -ENOENT);
}

static void test_delivery_queue(void **state)
{
	struct fixture *fx = *state;
	struct msg_spec sp = {.label = "d",
			      .at = T0,
			      .sender = "s@x.jp",
			      .rcpts = {"ok@x.jp", "bad@x.jp", "later@x.jp"}};
	char id[37];
	add(fx->st, &sp, id);
	struct store_delivery *d = NULL;
	int64_t due = 0;
	assert_int_equal(store_delivery_claim(fx->st, T0, 1000, &d), -EAGAIN);
	assert_int_equal(store_delivery_next_due(fx->st, &due), -EAGAIN);

	int changed = 0;
	assert_int_equal(store_release(fx->st, id, NULL, 0, T0 + 10, &changed), 0);
	assert_int_equal(changed, 3);
	assert_int_equal(store_delivery_next_due(fx->st, &due), 0);
	assert_int_equal(due, T0 + 10);
	/* not due yet */
	assert_int_equal(store_delivery_claim(fx->st, T0 + 9, 1000, &d), -EAGAIN);

	assert_int_equal(store_delivery_claim(fx->st, T0 + 10, 1000, &d), 0);
	assert_string_equal(d->msg_id, id);
	assert_string_equal(d->sender, "s@x.jp");
	assert_int_equal(d->nrcpts, 3);
	assert_int_equal(d->attempts, 0);
	assert_int_equal(d->first_attempt_at, T0 + 10);
	/* leased: not handed out again until the lease runs out */
	struct store_delivery *d2 = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 500, 1000, &d2), -EAGAIN);
	/* after a crash the lease runs out and it comes back */
	assert_int_equal(store_delivery_claim(fx->st, T0 + 1010, 1000, &d2), 0);
	assert_int_equal(d2->job_id, d->job_id);
	store_delivery_free(d2);
	/* start-up: reset_leases makes it due at once */
	assert_int_equal(store_delivery_reset_leases(fx->st, T0 + 1100), 0);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 1100, 1000, &d2), 0);
	store_delivery_free(d2);

	struct store_delivery_result res[] = {
	    {"OK@x.jp", STORE_DELIVERY_DELIVERED, "250 2.0.0 queued"},
	    {"bad@x.jp", STORE_DELIVERY_FAILED, "550 5.1.1 no such user"},
	    {"later@x.jp", STORE_DELIVERY_RETRY, "451 4.3.0 try later"},
	};
	assert_int_equal(store_delivery_finish(fx->st, d, res, 3, T0 + 1200, T0 + 60000), 0);
	assert_int_equal(rcpt_state(fx->st, id, "ok@x.jp"), STORE_RCPT_RELEASED);
	assert_int_equal(rcpt_state(fx->st, id, "bad@x.jp"), STORE_RCPT_FAILED);
	assert_int_equal(rcpt_state(fx->st, id, "later@x.jp"), STORE_RCPT_RELEASING);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_string_equal(m->recipients[1].reply, "550 5.1.1 no such user");
	assert_string_equal(m->recipients[2].reply, "451 4.3.0 try later");
	store_message_free(m);
	/* released is never released again */
	const char *ok[] = {"ok@x.jp"};
	assert_int_equal(store_release(fx->st, id, ok, 1, T0 + 1300, &changed), 0);
	assert_int_equal(changed, 0);

	/* the retry: only the deferred recipient, due at retry_at */
	assert_int_equal(store_delivery_next_due(fx->st, &due), 0);
	assert_int_equal(due, T0 + 60000);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 59999, 1000, &d2), -EAGAIN);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 60000, 1000, &d2), 0);
	assert_int_equal(d2->job_id, d->job_id);
	assert_int_equal(d2->nrcpts, 1);
	assert_string_equal(d2->rcpts[0], "later@x.jp");
	assert_int_equal(d2->attempts, 1);
	/* the first attempt's time stays, so giving up is reckoned from it */
	assert_int_equal(d2->first_attempt_at, T0 + 10);
	struct store_delivery_result res2[] = {
	    {"later@x.jp", STORE_DELIVERY_DELIVERED, "250 ok"},
	};
	assert_int_equal(store_delivery_finish(fx->st, d2, res2, 1, T0 + 60001, T0 + 90000), 0);
	assert_int_equal(rcpt_state(fx->st, id, "later@x.jp"), STORE_RCPT_RELEASED);
	uint64_t pending = 9;
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 0);
	/* a finished job cannot be finished twice */
	assert_int_equal(store_delivery_finish(fx->st, d2, res2, 1, T0 + 60002, T0 + 90000),
			 -ENOENT);
	store_delivery_free(d2);
	store_delivery_free(d);
}

/* store_delivery_confirm: final outcomes recorded while the attempt goes on. */
static void test_delivery_confirm(void **state)
{
	struct fixture *fx = *state;
	struct msg_spec sp = {
	    .label = "c", .at = T0, .sender = "s@x.jp", .rcpts = {"a@x.jp", "b@x.jp", "c@x.jp"}};
	char id[37];
	add(fx->st, &sp, id);
	int changed = 0;
	assert_int_equal(store_release(fx->st, id, NULL, 0, T0 + 10, &changed), 0);
	struct store_delivery *d = NULL, *d2 = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 10, 1000, &d), 0);

	/* The primary took a@ and refused b@; c@ was deferred (a RETRY is not final). */
	struct store_delivery_result res[] = {
	    {"A@x.jp", STORE_DELIVERY_DELIVERED, "250 ok"},
	    {"b@x.jp", STORE_DELIVERY_FAILED, "550 no"},
	    {"c@x.jp", STORE_DELIVERY_RETRY, "451 later"},
	};
	assert_int_equal(store_delivery_confirm(fx->st, d, res, 3, T0 + 20), 0);
	assert_int_equal(rcpt_state(fx->st, id, "a@x.jp"), STORE_RCPT_RELEASED);
	assert_int_equal(rcpt_state(fx->st, id, "b@x.jp"), STORE_RCPT_FAILED);
	assert_int_equal(rcpt_state(fx->st, id, "c@x.jp"), STORE_RCPT_RELEASING);
	/* The job keeps its lease: not handed out again while the attempt goes on. */
	assert_int_equal(store_delivery_claim(fx->st, T0 + 500, 1000, &d2), -EAGAIN);
	/* A crash now: after the restart only c@ is sent again, as the same attempt. */
	assert_int_equal(store_delivery_reset_leases(fx->st, T0 + 600), 0);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 600, 1000, &d2), 0);
	assert_int_equal(d2->job_id, d->job_id);
	assert_int_equal(d2->nrcpts, 1);
	assert_string_equal(d2->rcpts[0], "c@x.jp");
	assert_int_equal(d2->attempts, 0);
	/* Confirming the last recipient removes the job. */
	struct store_delivery_result last[] = {{"c@x.jp", STORE_DELIVERY_DELIVERED, "250 ok"}};
	assert_int_equal(store_delivery_confirm(fx->st, d2, last, 1, T0 + 700), 0);
	assert_int_equal(rcpt_state(fx->st, id, "c@x.jp"), STORE_RCPT_RELEASED);
	uint64_t pending = 9;
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 0);
	assert_int_equal(store_delivery_confirm(fx->st, d2, last, 1, T0 + 800), -ENOENT);
	store_delivery_free(d2);
	store_delivery_free(d);
}

/* --- listing --------------------------------------------------------------- */

static const struct msg_spec corpus[] = {
    {"m0",
     T0 + 0,
     "spam",
     "alice@shop.example.jp",
     NULL,
     {"u1@corp.jp"},
     "Invoice overdue",
     "spam",
     "gw1"},
    {"m1",
     T0 + 1000,
     "spam",
     "bob@bank.example",
     "Security@Bank.example",
     {"u2@corp.jp", "u1@corp.jp"},
     "お支払い請求書のご案内",
     "suspect",
     "gw2"},
    {"m2",
     T0 + 2000,
     "policy1",
     "",
     "notice@shop.example.jp",
     {"u3@corp.jp"},
     "会議の資料",
     "spam",
     "gw1"},
    {"m3",
     T0 + 3000,
     "spam",
     "carol@other.example",
     NULL,
     {"U1@Corp.JP"},
     "FREE INVOICE now",
     "spam",
     "gw2"},
    {"m4",
     T0 + 4000,
     "spam",
     "dave@shop.example.jp",
     NULL,
     {"u2@corp.jp"},
     "請求書",
     "spam",
     "gw1"},
    {"m5",
     T0 + 5000,
     "spam",
     "eve@x.example",
     NULL,
     {"u4@corp.jp"},
     "100% off_sale",
     "spam",
     "gw1"},
    {"m6",
     T0 + 6000,
     "spam",
     "bob@bank.example",
     NULL,
     {"u4@corp.jp", "u2@corp.jp"},
     NULL,
     "suspect",
     "gw1"},
};
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

static char corpus_ids[NCORPUS][37];

static void add_corpus(struct store *st)
{
	for (size_t i = 0; i < NCORPUS; i++)
		add(st, &corpus[i], corpus_ids[i]);
	/* m6: u4 deleted, u2 still quarantined */
	const char *u4[] = {"u4@corp.jp"};
	int changed = 0;
	assert_int_equal(store_delete(st, corpus_ids[6], u4, 1, T0 + 7000, &changed), 0);
	assert_int_equal(changed, 1);
}

/* "m4 m1 m0": labels of what store_list returns (newest first) */
static void list_labels(struct store *st, const struct store_filter *f, char *out, size_t size)
{
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	out[0] = '\0';
	assert_int_equal(store_list(st, f, 100, NULL, &v, &n, &next), 0);
	assert_null(next);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < NCORPUS; j++) {
			if (strcmp(v[i]->id, corpus_ids[j]) == 0) {
				size_t len = strlen(out);
				snprintf(out + len, size - len, "%s%s", len > 0 ? " " : "",
					 corpus[j].label);
			}
		}
	}
	store_message_array_free(v, n);
}

static void test_list_filters(void **state)
{
	struct fixture *fx = *state;
	add_corpus(fx->st);
	const char *u1[] = {"u1@corp.jp"};
	const char *u12[] = {"U2@corp.jp", "u1@corp.jp"};
	const char *ids[] = {corpus_ids[0], corpus_ids[5], "bogus"};
	const struct {
		struct store_filter f;
		const char *expect;
	} cases[] = {
	    {{0}, "m6 m5 m4 m3 m2 m1 m0"},
	    {{.quarantine = "spam"}, "m6 m5 m4 m3 m1 m0"},
	    {{.quarantine = "policy1"}, "m2"},
	    {{.recipient = "U1@CORP.JP"}, "m3 m1 m0"},
	    {{.sender = "BOB@bank.example"}, "m6 m1"},
	    {{.sender = "security@bank.example"}, "m1"}, /* From: address */
	    {{.sender = "shop.example.jp"}, "m4 m2 m0"}, /* envelope or From: domain */
	    {{.sender = "@Bank.Example"}, "m6 m1"},
	    {{.sender = "example.jp"}, ""}, /* a domain is matched whole */
	    {{.subject = "invoice"}, "m3 m0"},
	    {{.subject = "請求書"}, "m4 m1"}, /* 3 characters: trigram index */
	    {{.subject = "資料"}, "m2"},      /* 2 characters: LIKE fallback */
	    {{.subject = "請求書の"}, "m1"},
	    {{.subject = "%"}, "m5"}, /* LIKE wildcards are literal */
	    {{.subject = "f_s"}, "m5"},
	    {{.subject = "0% off"}, "m5"},
	    {{.verdict = "suspect"}, "m6 m1"},
	    {{.gateway = "gw2"}, "m3 m1"},
	    {{.since = T0 + 2000, .until = T0 + 5000}, "m4 m3 m2"},
	    {{.since = T0 + 5000}, "m6 m5"},
	    {{.until = T0 + 1000}, "m0"},
	    {{.state = "deleted"}, "m6"},
	    {{.state = "quarantined", .recipient = "u4@corp.jp"}, "m5"},
	    {{.addresses = u1, .naddresses = 1}, "m3 m1 m0"},
	    {{.addresses = u12, .naddresses = 2, .subject = "請求書"}, "m4 m1"},
	    {{.addresses = u1, .naddresses = 1, .recipient = "u2@corp.jp"}, ""},
	    {{.ids = ids, .nids = 3}, "m5 m0"},
	    {{.quarantine = "spam",
	      .sender = "bob@bank.example",
	      .verdict = "suspect",
	      .since = T0 + 1000,
	      .until = T0 + 2000},
	     "m1"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got[128];
		list_labels(fx->st, &cases[i].f, got, sizeof(got));
		if (strcmp(got, cases[i].expect) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, cases[i].expect);
	}
	/* the listing carries every recipient with its state */
	struct store_filter f = {.ids = (const char *const[]){corpus_ids[6]}, .nids = 1};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &f, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0]->nrecipients, 2);
	assert_int_equal(v[0]->recipients[0].state, STORE_RCPT_DELETED);
	assert_int_equal(v[0]->recipients[1].state, STORE_RCPT_QUARANTINED);
	store_message_array_free(v, n);

	/* bad arguments */
	struct store_filter bad_state = {.state = "limbo"};
	assert_int_equal(store_list(fx->st, &bad_state, 10, NULL, &v, &n, &next), -EINVAL);
	assert_int_equal(store_list(fx->st, NULL, 0, NULL, &v, &n, &next), -EINVAL);
	assert_int_equal(store_list(fx->st, NULL, 1001, NULL, &v, &n, &next), -EINVAL);
	assert_int_equal(store_list(fx->st, NULL, 10, "not-a-cursor", &v, &n, &next), -EINVAL);
	assert_int_equal(store_list(fx->st, NULL, 10, "' OR 1=1 --", &v, &n, &next), -EINVAL);
}

static void test_keyset_paging(void **state)
{
	struct fixture *fx = *state;
	enum { N = 130, PAGE = 7 };
	char(*ids)[37] = xcalloc(N, 37), (*got)[37] = xcalloc(N, 37);
	for (int i = 0; i < N; i++) {
		/* same millisecond for runs of 5: order must still be total */
		struct msg_spec sp = {
		    .label = "p", .at = T0 + (i / 5), .rcpts = {i % 2 ? "odd@x.jp" : "even@x.jp"}};
		add(fx->st, &sp, ids[i]);
	}
	for (int scoped = 0; scoped < 2; scoped++) {
		struct store_filter f = {.recipient = scoped ? "odd@x.jp" : NULL};
		int want = scoped ? N / 2 : N;
		/* strictly descending over full pages: no duplicate, no gap */
		assert_int_equal(test_list_all(fx->st, &f, PAGE, got, N), want);
	}
	free(got);
	free(ids);
}

static void test_bulk_actions(void **state)
{
	struct fixture *fx = *state;
	add_corpus(fx->st);
	/* an end user releasing everything of theirs touches only their recipients */
	const char *u2[] = {"u2@corp.jp"};
	struct store_filter f = {.addresses = u2, .naddresses = 1};
	int changed = 0;
	assert_int_equal(store_release_matching(fx->st, &f, T0 + 9000, &changed), 0);
	assert_int_equal(changed, 3); /* m1, m4, m6 */
	assert_int_equal(rcpt_state(fx->st, corpus_ids[1], "u2@corp.jp"), STORE_RCPT_RELEASING);
	assert_int_equal(rcpt_state(fx->st, corpus_ids[1], "u1@corp.jp"), STORE_RCPT_QUARANTINED);
	assert_int_equal(rcpt_state(fx->st, corpus_ids[6], "u4@corp.jp"), STORE_RCPT_DELETED);
	uint64_t pending = 0;
	assert_int_equal(store_delivery_pending(fx->st, &pending), 0);
	assert_int_equal(pending, 3);
	/* again: nothing */
	assert_int_equal(store_release_matching(fx->st, &f, T0 + 9001, &changed), 0);
	assert_int_equal(changed, 0);
	/* admin: delete everything from a sender domain */
	struct store_filter d = {.sender = "shop.example.jp"};
	assert_int_equal(store_delete_matching(fx->st, &d, T0 + 9002, &changed), 0);
	assert_int_equal(changed, 2); /* m0 u1, m2 u3 (m4 u2 is releasing) */
	assert_int_equal(rcpt_state(fx->st, corpus_ids[0], "u1@corp.jp"), STORE_RCPT_DELETED);
	assert_int_equal(rcpt_state(fx->st, corpus_ids[4], "u2@corp.jp"), STORE_RCPT_RELEASING);
}

/* --- quarantines, expiry, purge, vacuum ----------------------------------- */

static void test_quarantines(void **state)
{
	struct fixture *fx = *state;
	struct store_quarantine_stats *q = NULL;
	size_t n = 0;
	assert_int_equal(store_quarantines(fx->st, &q, &n), 0);
	/* spam and the PVO system quarantines, even when empty (never the PVO marker) */
	assert_int_equal(n, 4);
	assert_string_equal(q[0].name, "outbreak");
	assert_string_equal(q[0].type, "outbreak");
	assert_true(q[0].system);
	assert_string_equal(q[1].name, "spam");
	assert_string_equal(q[1].type, "spam");
	assert_int_equal(q[1].messages, 0);
	assert_int_equal(q[1].oldest, 0);
	assert_string_equal(q[2].name, "unclassified");
	assert_string_equal(q[3].name, "virus");
	assert_string_equal(q[3].default_action, "delete");
	store_quarantine_stats_free(q, n);

	add_corpus(fx->st);
	int changed = 0;
	/* m0 has no quarantined recipient left: not counted */
	assert_int_equal(store_delete(fx->st, corpus_ids[0], NULL, 0, T0 + 8000, &changed), 0);
	assert_int_equal(store_quarantines(fx->st, &q, &n), 0);
	assert_int_equal(n, 5);
	assert_string_equal(q[0].name, "outbreak");
	assert_string_equal(q[1].name, "policy1");
	assert_string_equal(q[1].type, "policy");
	assert_false(q[1].system);
	assert_int_equal(q[1].messages, 1);
	/* the rest of the test reads spam as q[1] */
	struct store_quarantine_stats tmp = q[1];
	q[1] = q[2];
	q[2] = tmp;
	assert_string_equal(q[1].name, "spam");
	assert_int_equal(q[1].messages, 5); /* m1 m3 m4 m5 m6 */
	assert_int_equal(q[1].oldest, T0 + 1000);
	uint64_t bytes = 0;
	for (size_t i = 1; i < NCORPUS; i++) {
		struct store_message *m = NULL;
		if (i == 2)
			continue;
		assert_int_equal(store_get(fx->st, corpus_ids[i], &m), 0);
		bytes += m->size;
		store_message_free(m);
	}
	assert_int_equal(q[1].bytes, bytes);
	store_quarantine_stats_free(q, n);
}

static void test_expire_and_purge(void **state)
{
	struct fixture *fx = *state;
	char old_ids[25][37], new_id[37], releasing_id[37], policy_id[37];
	for (int i = 0; i < 25; i++) {
		struct msg_spec sp = {.label = "old", .at = T0 + i, .rcpts = {"a@x.jp", "b@x.jp"}};
		add(fx->st, &sp, old_ids[i]);
	}
	struct msg_spec rel = {.label = "rel", .at = T0 + 50, .rcpts = {"a@x.jp", "b@x.jp"}};
	add(fx->st, &rel, releasing_id);
	struct msg_spec pol = {
	    .label = "pol", .at = T0, .quarantine = "policy1", .rcpts = {"a@x.jp"}};
	add(fx->st, &pol, policy_id);
	struct msg_spec nw = {.label = "new", .at = T0 + 100000, .rcpts = {"a@x.jp"}};
	add(fx->st, &nw, new_id);
	const char *a[] = {"a@x.jp"};
	int changed = 0;
	assert_int_equal(store_release(fx->st, releasing_id, a, 1, T0 + 60, &changed), 0);

	uint64_t expired = 0, purged = 0;
	/* batch 4: several transactions */
	struct store_debug_counters before, after;
	store_debug_counters(fx->st, &before);
	assert_int_equal(store_expire(fx->st, "spam", T0 + 1000, T0 + 200000, 4, &expired, &purged),
			 0);
	store_debug_counters(fx->st, &after);
	assert_int_equal(expired, 51); /* recipients: 25 old x 2 + the releasing one's b */
	assert_int_equal(purged, 25);
	assert_true(after.commits - before.commits >= 26 / 4);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, old_ids[3], &m), -ENOENT);
	unsigned char *raw = NULL;
	size_t len = 0;
	assert_int_equal(store_get_raw(fx->st, old_ids[3], &raw, &len), -ENOENT);
	/* a recipient still being released keeps its message */
	assert_int_equal(rcpt_state(fx->st, releasing_id, "a@x.jp"), STORE_RCPT_RELEASING);
	assert_int_equal(rcpt_state(fx->st, releasing_id, "b@x.jp"), STORE_RCPT_EXPIRED);
	assert_int_equal(rcpt_state(fx->st, new_id, "a@x.jp"), STORE_RCPT_QUARANTINED);
	assert_int_equal(rcpt_state(fx->st, policy_id, "a@x.jp"), STORE_RCPT_QUARANTINED);
	struct store_stats ss;
	assert_int_equal(store_stats(fx->st, &ss), 0);
	assert_int_equal(ss.messages, 3);
	assert_int_equal(ss.deliveries_pending, 1);

	/* once delivered, purge removes it */
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 200000, 1000, &d), 0);
	struct store_delivery_result res[] = {{"a@x.jp", STORE_DELIVERY_DELIVERED, "250 ok"}};
	assert_int_equal(store_delivery_finish(fx->st, d, res, 1, T0 + 200001, 0), 0);
	store_delivery_free(d);
	assert_int_equal(store_purge(fx->st, 0, &purged), 0);
	assert_int_equal(purged, 1);
	assert_int_equal(store_get(fx->st, releasing_id, &m), -ENOENT);
	assert_int_equal(store_purge(fx->st, 0, &purged), 0);
	assert_int_equal(purged, 0);
	if (pg_dsn != NULL) {
		/* recipients and bodies went with their messages */
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM recipients"), 2);
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM bodies"), 2);
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM attachments"), 0);
		return;
	}
	/* the subject index forgot the purged rows too */
	char *path = db_path(fx);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT (SELECT count(*) FROM recipients),"
					    " (SELECT count(*) FROM bodies), (SELECT count(*) FROM"
					    " subject_fts_docsize)",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 2);
	assert_int_equal(sqlite3_column_int(s, 1), 2);
	assert_int_equal(sqlite3_column_int(s, 2), 2);
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(path);
}

static int64_t pragma_int(const char *path, const char *pragma)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	char *sql = xasprintf("PRAGMA %s", pragma);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(sql);
	return v;
}

static void test_vacuum_frees_pages(void **state)
{
	struct fixture *fx = *state;
	char *path = db_path(fx);
	assert_int_equal(pragma_int(path, "auto_vacuum"), 2); /* incremental */
	for (int i = 0; i < 60; i++) {
		struct msg_spec sp = {.label = "v", .at = T0 + i, .rcpts = {"a@x.jp"}};
		struct store_new_message *m = build(&sp, NULL);
		/* incompressible bodies so the file really grows */
		free(m->raw);
		m->raw_len = 64 * 1024;
		m->raw = xmalloc(m->raw_len);
		uint32_t x = 2463534242u + (uint32_t)i;
		for (size_t j = 0; j < m->raw_len; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			m->raw[j] = (unsigned char)x;
		}
		assert_int_equal(submit_sync(fx->st, m), 0);
	}
	int64_t pages_before = pragma_int(path, "page_count");
	uint64_t expired = 0, purged = 0;
	assert_int_equal(store_expire(fx->st, "spam", T0 + 1000, T0 + 2000, 0, &expired, &purged),
			 0);
	assert_int_equal(purged, 60);
	int64_t pages_after = pragma_int(path, "page_count");
	/* ~4 MB of bodies given back to the file system */
	assert_true(pages_before - pages_after > 500);
	assert_int_equal(pragma_int(path, "freelist_count"), 0);
	free(path);
}

static void test_reopen_keeps_data(void **state)
{
	struct fixture *fx = *state;
	char id[37];
	struct msg_spec sp = {
	    .label = "r", .at = T0, .rcpts = {"a@x.jp"}, .subject = "再起動テスト"};
	add(fx->st, &sp, id);
	store_close(fx->st);
	fx->st = NULL;
	char *path = db_path(fx);
	if (pg_dsn != NULL)
		/* every migration recorded, once */
		assert_int_equal(pg_int(fx, "SELECT count(*) - max(version) FROM store_migrations"),
				 0);
	else
		assert_int_equal(pragma_int(path, "user_version"), 25);
	assert_int_equal(fixture_open(fx), 0);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_string_equal(m->subject, "再起動テスト");
	store_message_free(m);
	struct store_filter f = {.subject = "起動テ"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &f, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 1);
	store_message_array_free(v, n);
	free(path);
}

/* --- subject search ------------------------------------------------------- */

static void test_subject_short_terms(void **state)
{
	struct fixture *fx = *state;
	static const struct msg_spec specs[] = {
	    {.label = "s0", .at = T0, .rcpts = {"a@x.jp"}, .subject = "請求書のお知らせ"},
	    {.label = "s1", .at = T0 + 1, .rcpts = {"a@x.jp"}, .subject = "重要"},
	    {.label = "s2", .at = T0 + 2, .rcpts = {"a@x.jp"}, .subject = "aB"},
	    {.label = "s3", .at = T0 + 3, .rcpts = {"a@x.jp"}, .subject = "x"},
	    {.label = "s4", .at = T0 + 4, .rcpts = {"a@x.jp"}, .subject = "XYZ report"},
	    {.label = "s5", .at = T0 + 5, .rcpts = {"a@x.jp"}, .subject = NULL},
	    {.label = "s6", .at = T0 + 6, .rcpts = {"a@x.jp"}, .subject = "請求・重要 100%"},
	};
	enum { NS = sizeof(specs) / sizeof(specs[0]) };
	char ids[NS][37];
	for (size_t i = 0; i < NS; i++)
		add(fx->st, &specs[i], ids[i]);
	const struct {
		const char *term;
		const char *expect;
	} cases[] = {
	    {"請", "s6 s0"},	  /* one kanji */
	    {"請求", "s6 s0"},	  /* two */
	    {"重要", "s6 s1"},	  /* two: the whole subject of s1 */
	    {"要", "s6 s1"},	  /* the last character */
	    {"知ら", "s0"},	  /* inside */
	    {"ab", "s2"},	  /* the whole subject, case folded */
	    {"AB", "s2"},	  /* folded the other way */
	    {"b", "s2"},	  /* the last character */
	    {"x", "s4 s3"},	  /* a one-character subject, and X folded */
	    {"X", "s4 s3"},	  /* the first character */
	    {"rt", "s4"},	  /* the end */
	    {" r", "s4"},	  /* a space is a character too */
	    {"%", "s6"},	  /* no wildcard */
	    {"0%", "s6"},	  /* no wildcard */
	    {"・", "s6"},	  /* punctuation is searchable */
	    {"XYZ report", "s4"}, /* trigrams: the whole subject */
	    {"請求書のお知らせ", "s0"},
	    {"鯖", ""}, /* absent */
	    {"鯖缶", ""},
	    {"zq", ""},
	    {"q", ""},
	    {"ba", ""},	      /* both characters present, not in this order */
	    {"\xe3\x81", ""}, /* malformed UTF-8: no match, no failure */
	    {"\x81\x81\x81", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_filter f = {.subject = cases[i].term};
		struct store_message **v = NULL;
		size_t n = 0;
		char *next = NULL;
		assert_int_equal(store_list(fx->st, &f, 100, NULL, &v, &n, &next), 0);
		assert_null(next);
		char got[64] = "";
		for (size_t k = 0; k < n; k++) {
			for (size_t j = 0; j < NS; j++) {
				if (strcmp(v[k]->id, ids[j]) == 0) {
					size_t len = strlen(got);
					snprintf(got + len, sizeof(got) - len, "%s%s",
						 len > 0 ? " " : "", specs[j].label);
				}
			}
		}
		store_message_array_free(v, n);
		if (strcmp(got, cases[i].expect) != 0)
			fail_msg("term \"%s\": got \"%s\", want \"%s\"", cases[i].term, got,
				 cases[i].expect);
	}
}

/*
 * The 1-2 character tokenizer on its own (store_short.c), through an in-memory
 * FTS5 table: the tokens a subject yields (fts5vocab, in byte order, joined by
 * '|'), and whether a query term finds it. Malformed UTF-8 counts byte by byte
 * on both sides, so a search can never fail on it.
 */
static void test_short_tokenizer(void **state)
{
	(void)state;
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	assert_int_equal(store_short_register(db), 0);
	assert_int_equal(
	    sqlite3_exec(db,
			 "CREATE VIRTUAL TABLE t USING fts5(s, tokenize='" STORE_SHORT_TOKENIZER
			 "', detail=none);"
			 "CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row');",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	static const struct {
		const char *doc;
		const char *tokens;
		const char *hit;  /* a term that must find doc */
		const char *miss; /* one that must not */
	} cases[] = {
	    {"Ab", "a|ab|b", "aB", "ba"},
	    {"x", "x", "X", "y"},
	    {"請求", "求|請|請求", "請求", "求請"}, /* 求 is E6.., 請 E8.. */
	    {"a請", "a|a請|請", "A請", "請a"},
	    {"1 %", " | %|%|1|1 ", "1 ", "%1"},
	    {"\xf0\x9f\x93\xa7!", "!|\xf0\x9f\x93\xa7|\xf0\x9f\x93\xa7!", "\xf0\x9f\x93\xa7",
	     "!\xf0\x9f\x93\xa7"},
	    /* malformed: a cut-off sequence, a stray continuation byte, 0xff */
	    {"\xe3\x81", "\x81|\xe3|\xe3\x81", "\xe3\x81", "\x81\xe3"},
	    {"a\x81\xff", "a|a\x81|\x81|\x81\xff|\xff", "\x81\xff", "\xff\x81"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sqlite3_stmt *s = NULL;
		assert_int_equal(sqlite3_exec(db, "DELETE FROM t", NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(
		    sqlite3_prepare_v2(db, "INSERT INTO t(s) VALUES (?1)", -1, &s, NULL),
		    SQLITE_OK);
		sqlite3_bind_text(s, 1, cases[i].doc, -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(s), SQLITE_DONE);
		sqlite3_finalize(s);
		assert_int_equal(
		    sqlite3_prepare_v2(db,
				       "SELECT group_concat(term, '|') FROM"
				       " (SELECT term FROM v ORDER BY CAST(term AS BLOB))",
				       -1, &s, NULL),
		    SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		const char *got = (const char *)sqlite3_column_text(s, 0);
		if (got == NULL || strcmp(got, cases[i].tokens) != 0)
			fail_msg("case %zu: tokens \"%s\", want \"%s\"", i, got ? got : "(none)",
				 cases[i].tokens);
		sqlite3_finalize(s);
		for (int k = 0; k < 2; k++) {
			const char *term = k == 0 ? cases[i].hit : cases[i].miss;
			assert_true(store_short_chars(term) <= 2);
			char *phrase = xasprintf("\"%s\"", term);
			assert_int_equal(
			    sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE t MATCH ?1", -1,
					       &s, NULL),
			    SQLITE_OK);
			sqlite3_bind_text(s, 1, phrase, -1, SQLITE_STATIC);
			assert_int_equal(sqlite3_step(s), SQLITE_ROW);
			if (sqlite3_column_int(s, 0) != (k == 0 ? 1 : 0))
				fail_msg("case %zu: term \"%s\" found %d", i, term,
					 sqlite3_column_int(s, 0));
			sqlite3_finalize(s);
			free(phrase);
		}
	}
	/* characters as the tokenizer counts them */
	assert_int_equal(store_short_chars(""), 0);
	assert_int_equal(store_short_chars("請求書"), 3);
	assert_int_equal(store_short_chars("\x81\x81\x81"), 3);
	assert_int_equal(store_short_chars("\xe3\x81"), 2);
	sqlite3_close(db);
}

/* ASCII-case-insensitive substring, what a subject filter means. */
static bool subject_has(const char *subject, const char *term)
{
	if (subject == NULL)
		return false;
	size_t n = strlen(term);
	for (const char *p = subject; *p != '\0'; p++) {
		if (strncasecmp(p, term, n) == 0)
			return true;
	}
	return false;
}

static int cmp_id_desc(const void *a, const void *b)
{
	return -strcmp((const char *)a, (const char *)b);
}

/*
 * Pages through subject searches (1, 2 and 3+ characters, Japanese and Latin,
 * frequent and rare) over messages whose ids do not arrive in order: some are
 * inserted after newer ones, as concurrent ingest and clock steps do. Every
 * match must come exactly once, newest id first, however the pages fall.
 */
static void subject_paging(struct fixture *fx, bool hour_late)
{
	enum { N = 420 };
	char(*ids)[37] = xcalloc(N, 37);
	char **subjects = xcalloc(N, sizeof(char *));
	int64_t *ats = xcalloc(N, sizeof(int64_t));
	struct waiter w;
	waiter_init(&w, N);
	for (int i = 0; i < N; i++) {
		/* runs of 4 in one millisecond; every 9th is late by up to 3 s; every
		 * 50th comes from an hour before */
		int64_t at = T0 + 1000 * (i / 4);
		if (i % 9 == 0)
			at -= 3000 + i % 7;
		if (hour_late && i % 50 == 0)
			at -= 3600 * 1000;
		const char *kind = i % 3 == 0	? "重要なお知らせ"
				   : i % 3 == 1 ? "Invoice 請求"
						: "hello";
		char subject[64];
		snprintf(subject, sizeof(subject), "%s%s #%d", kind, i % 40 == 7 ? " 鰻" : "", i);
		subjects[i] = xstrdup(subject);
		ats[i] = at;
		struct msg_spec sp = {
		    .label = "p", .at = at, .rcpts = {"a@x.jp"}, .subject = subject};
		assert_int_equal(store_submit_message(fx->st, build(&sp, ids[i]), waiter_done, &w),
				 0);
	}
	waiter_wait(&w);
	assert_int_equal(w.failures, 0);
	static const char *const terms[] = {"重", "重要", "重要なお", "I",  "iN", "invoice", "鰻",
					    "#1", "#9",	  "hello #4", "鯖", "zq", "#"};
	char(*want)[37] = xcalloc(N, 37);
	char(*got)[37] = xcalloc(N, 37);
	/* with no time range, and with ranges that cut through the late messages
	 * ("#" is in every subject: a late one just before since comes first) */
	static const int64_t ranges[][2] = {{0, 0},
					    {T0 + 20000, T0 + 60000},
					    {T0 - 1000, 0},
					    {0, T0 + 30000},
					    /* the newest id before since is a late message */
					    {T0 + 18995, 0}};
	enum { NR = sizeof(ranges) / sizeof(ranges[0]) };
	for (size_t t = 0; t < sizeof(terms) / sizeof(terms[0]) * NR; t++) {
		const char *term = terms[t / NR];
		int64_t since = ranges[t % NR][0], until = ranges[t % NR][1];
		size_t nwant = 0;
		for (int i = 0; i < N; i++) {
			if (subject_has(subjects[i], term) && (since == 0 || ats[i] >= since) &&
			    (until == 0 || ats[i] < until))
				memcpy(want[nwant++], ids[i], 37);
		}
		qsort(want, nwant, 37, cmp_id_desc);
		for (size_t page = 1; page <= 50; page += 48) {
			struct store_filter f = {
			    .subject = term, .quarantine = "spam", .since = since, .until = until};
			size_t ngot = test_list_all(fx->st, &f, page, got, N);
			if (ngot != nwant)
				fail_msg("term \"%s\" range %zu page %zu: %zu matches, want %zu",
					 term, t % NR, page, ngot, nwant);
			for (size_t k = 0; k < ngot; k++) {
				if (strcmp(got[k], want[k]) != 0)
					fail_msg("term \"%s\" range %zu page %zu: match %zu is %s,"
						 " want %s",
						 term, t % NR, page, k, got[k], want[k]);
			}
		}
	}
	/* SQLite: the walk's bounds saw the late messages */
	if (pg_dsn != NULL)
		goto done;
	char *path = db_path(fx);
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT max_late, id_ahead, id_behind FROM list_order",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_true(sqlite3_column_int64(s, 0) >= (hour_late ? 3600 * 1000 : 3000));
	assert_true(sqlite3_column_int64(s, 0) < (hour_late ? 3700 * 1000 : 4000));
	assert_int_equal(sqlite3_column_int64(s, 1), 0); /* ids and received_at agree */
	assert_int_equal(sqlite3_column_int64(s, 2), 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(path);
done:
	for (int i = 0; i < N; i++)
		free(subjects[i]);
	free(subjects);
	free(ats);
	free(want);
	free(got);
	free(ids);
}

/* Late by up to 3 s: the walks stop early. */
static void test_subject_paging(void **state)
{
	subject_paging(*state, false);
}

/* Some an hour late too: the walks go further, the answers stay the same. */
static void test_subject_paging_late(void **state)
{
	subject_paging(*state, true);
}

/*
 * Time ranges over messages whose received_at differs from the time in their id
 * (a copied store, a clock step between the two readings): a range of received
 * times must answer every message received in it, at both edges, newest id
 * first, however the store bounds its walk of the ids.
 */
static void test_time_range_drift(void **state)
{
	struct fixture *fx = *state;
	enum { DAY = 86400000, HOUR = 3600000 };
	static const struct {
		struct msg_spec m;
		int64_t id_at; /* the id's time (0: received_at) */
	} specs[] = {
	    {{.label = "a", .at = T0 + 5000, .rcpts = {"a@x.jp"}, .subject = "請求"}, 0},
	    /* the id 7 s ahead of its received_at */
	    {{.label = "b", .at = T0 + 5000, .rcpts = {"a@x.jp"}}, T0 + 12000},
	    /* received a day after its id's time (another day's partition) */
	    {{.label = "c", .at = T0 + 10000, .rcpts = {"a@x.jp"}}, T0 + 10000 - DAY},
	    /* the id an hour ahead */
	    {{.label = "d", .at = T0 + 20000, .rcpts = {"a@x.jp"}}, T0 + 20000 + HOUR},
	    {{.label = "e", .at = T0 + 20001, .rcpts = {"a@x.jp"}, .subject = "会議"}, 0},
	    {{.label = "f", .at = T0 - 1, .rcpts = {"a@x.jp"}}, 0},
	    /* the id 29 s behind */
	    {{.label = "g", .at = T0 + 30000, .rcpts = {"a@x.jp"}}, T0 + 1000},
	};
	enum { NS = sizeof(specs) / sizeof(specs[0]) };
	char ids[NS][37];
	for (size_t i = 0; i < NS; i++) {
		struct store_new_message *m = build(&specs[i].m, NULL);
		if (specs[i].id_at != 0)
			ids_uuidv7(specs[i].id_at, m->id);
		memcpy(ids[i], m->id, 37);
		assert_int_equal(submit_sync(fx->st, m), 0);
	}
	static const int64_t ranges[][2] = {
	    {T0 + 5000, T0 + 5001},   /* exactly a and b: since is inside */
	    {T0 + 5001, T0 + 20000},  /* c only: until is outside (d) */
	    {T0 + 5001, T0 + 20001},  /* c and d */
	    {T0 + 10000, T0 + 10001}, /* c, whose id is a day older */
	    {T0 + 20000, 0},	      /* d, e, g */
	    {0, T0 + 5000},	      /* f */
	    {0, T0},		      /* f: until is its received_at + 1 */
	    {0, T0 - 1},	      /* none */
	    {T0 - 1, T0 + 30001},     /* all */
	    {T0 + 30000, T0 + 30001}, /* g, whose id is 29 s older */
	    {T0 + 30001, 0},	      /* none */
	    {T0 + 12000, T0 + 12001}, /* none: b's id time, not its received_at */
	    {T0 + 20000 + HOUR, 0},   /* none: d's id time */
	};
	char(*want)[37] = xcalloc(NS, 37);
	char(*got)[37] = xcalloc(NS, 37);
	for (size_t t = 0; t < sizeof(ranges) / sizeof(ranges[0]); t++) {
		int64_t since = ranges[t][0], until = ranges[t][1];
		size_t nwant = 0;
		for (size_t i = 0; i < NS; i++) {
			if ((since == 0 || specs[i].m.at >= since) &&
			    (until == 0 || specs[i].m.at < until))
				memcpy(want[nwant++], ids[i], 37);
		}
		qsort(want, nwant, 37, cmp_id_desc);
		for (size_t page = 1; page <= 50; page += 49) {
			struct store_filter f = {
			    .quarantine = "spam", .since = since, .until = until};
			size_t ngot = test_list_all(fx->st, &f, page, got, NS);
			if (ngot != nwant)
				fail_msg("range %zu page %zu: %zu matches, want %zu", t, page, ngot,
					 nwant);
			for (size_t k = 0; k < ngot; k++) {
				if (strcmp(got[k], want[k]) != 0)
					fail_msg("range %zu page %zu: match %zu is %s, want %s", t,
						 page, k, got[k], want[k]);
			}
		}
	}
	/* a short subject term within a range, and a bulk action over a range */
	struct store_filter fs = {.subject = "会", .since = T0 + 20000, .until = T0 + 20002};
	assert_int_equal(test_list_all(fx->st, &fs, 50, got, NS), 1);
	assert_string_equal(got[0], ids[4]);
	struct store_filter fb = {.since = T0 + 5000, .until = T0 + 10001};
	int changed = 0;
	assert_int_equal(store_delete_matching(fx->st, &fb, T0 + 40000, &changed), 0);
	assert_int_equal(changed, 3); /* a, b, c */
	if (pg_dsn != NULL) {
		/* PostgreSQL keeps the bounds it turns a range into */
		assert_int_equal(pg_int(fx, "SELECT id_ahead FROM list_order"), HOUR);
		assert_int_equal(pg_int(fx, "SELECT id_behind FROM list_order"), DAY);
	}
	free(want);
	free(got);
}

/* A bulk action by subject pages through the walk batch by batch: every match, once. */
static void test_subject_bulk(void **state)
{
	struct fixture *fx = *state;
	enum { N = 1300 };
	struct waiter w;
	waiter_init(&w, N);
	for (int i = 0; i < N; i++) {
		char subject[64];
		snprintf(subject, sizeof(subject), "%s #%d", i % 2 ? "重要" : "other", i);
		/* every 7th a little late, as under concurrent ingest */
		struct msg_spec sp = {.label = "b",
				      .at = T0 + 10 * i - (i % 7 == 0 ? 25 : 0),
				      .rcpts = {"a@x.jp"},
				      .subject = subject};
		assert_int_equal(store_submit_message(fx->st, build(&sp, NULL), waiter_done, &w),
				 0);
	}
	waiter_wait(&w);
	assert_int_equal(w.failures, 0);
	struct store_filter f = {.subject = "重要"};
	int changed = 0;
	assert_int_equal(store_delete_matching(fx->st, &f, T0 + 100000, &changed), 0);
	assert_int_equal(changed, N / 2);
	assert_int_equal(store_delete_matching(fx->st, &f, T0 + 100001, &changed), 0);
	assert_int_equal(changed, 0);
	char(*got)[37] = xcalloc(N, 37);
	struct store_filter held = {.subject = "重要", .state = "quarantined"};
	assert_int_equal(test_list_all(fx->st, &held, 100, got, N), 0);
	struct store_filter deleted = {.subject = "重要", .state = "deleted"};
	assert_int_equal(test_list_all(fx->st, &deleted, 100, got, N), N / 2);
	struct store_filter other = {.subject = "other", .state = "quarantined"};
	assert_int_equal(test_list_all(fx->st, &other, 100, got, N), N / 2);
	free(got);
}

/*
 * The calling thread's read deadline: a scan still running when it passes stops
 * with -ETIMEDOUT; the connection it ran on (the only one this thread uses) is
 * reset and answers the next read in full; other threads' reads are untouched.
 */
static void *deadline_other_thread(void *arg)
{
	struct store *st = arg;
	struct store_filter none = {.verdict = "no-such-verdict"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	/* no deadline of its own: the main thread's does not reach it */
	intptr_t rc = store_list(st, &none, 50, NULL, &v, &n, &next);
	store_message_array_free(v, n);
	free(next);
	return (void *)rc;
}

static void test_read_deadline(void **state)
{
	struct fixture *fx = *state;
	enum { N = 400 };
	struct waiter w;
	waiter_init(&w, N);
	for (int i = 0; i < N; i++) {
		char subject[32];
		snprintf(subject, sizeof(subject), "deadline %d", i);
		struct msg_spec sp = {
		    .label = "d", .at = T0 + i, .rcpts = {"a@x.jp"}, .subject = subject};
		assert_int_equal(store_submit_message(fx->st, build(&sp, NULL), waiter_done, &w),
				 0);
	}
	waiter_wait(&w);
	assert_int_equal(w.failures, 0);
	/* a verdict no message has: the query reads every row to say so */
	struct store_filter none = {.verdict = "no-such-verdict"};
	struct store_filter all = {.quarantine = "spam"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;

	store_read_deadline_set(1);
	struct timespec ts = {0, 5 * 1000 * 1000};
	nanosleep(&ts, NULL);
	assert_int_equal(store_list(fx->st, &none, 50, NULL, &v, &n, &next), -ETIMEDOUT);
	assert_null(v);
	/* with a listing that reads rows and recipients, and a message's lookup */
	assert_int_equal(store_list(fx->st, &all, 1000, NULL, &v, &n, &next), -ETIMEDOUT);
	assert_null(v);
	struct store_quarantine_stats *q = NULL;
	size_t nq = 0;
	int rc = store_quarantines(fx->st, &q, &nq);
	/* a two-row statement may finish before the first check: either answer is right */
	assert_true(rc == 0 || rc == -ETIMEDOUT);
	store_quarantine_stats_free(q, nq);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, deadline_other_thread, fx->st), 0);
	void *other = NULL;
	pthread_join(th, &other);
	assert_int_equal((intptr_t)other, 0);

	/* a budget long enough, then none: the same connection answers in full */
	store_read_deadline_set(60 * 1000);
	assert_int_equal(store_list(fx->st, &all, 1000, NULL, &v, &n, &next), 0);
	assert_int_equal(n, N);
	store_message_array_free(v, n);
	free(next);
	v = NULL;
	store_read_deadline_clear();
	assert_int_equal(store_list(fx->st, &none, 50, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 0);
	store_message_array_free(v, n);
	/* 0 clears too */
	store_read_deadline_set(1);
	store_read_deadline_set(0);
	nanosleep(&ts, NULL);
	assert_int_equal(store_list(fx->st, &all, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 10);
	store_message_array_free(v, n);
	free(next);
}

/*
 * A store made by schema 4 (before the 1-2 character index and list_order)
 * gets both from its messages when opened: made here by opening a store, adding
 * messages, and taking migration 5's objects away again.
 */
static void test_migration_builds_search_index(void **state)
{
	struct fixture *fx = *state;
	enum { N = 30 };
	char ids[N][37];
	for (int i = 0; i < N; i++) {
		/* the 10th arrives 5 s late */
		struct msg_spec sp = {.label = "g",
				      .at = T0 + 1000 * i - (i == 10 ? 5000 + 1000 * i : 0),
				      .rcpts = {"a@x.jp"},
				      .subject = i % 2 ? "重要 Notice" : "請求"};
		add(fx->st, &sp, ids[i]);
	}
	store_close(fx->st);
	fx->st = NULL;
	char *path = db_path(fx);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(store_short_register(db), 0); /* to drop the index */
	assert_int_equal(
	    sqlite3_exec(
		db,
		"BEGIN; DROP TRIGGER messages_ai_short;"
		" DROP TRIGGER messages_ad_short; DROP TRIGGER messages_ai_order;"
		" DROP TABLE subject_short; DROP TABLE list_order; DROP TABLE secrets;"
		" DROP TABLE memberships; DROP TABLE quarantine_operators;"
		" ALTER TABLE quarantines DROP COLUMN delete_after;"
		" ALTER TABLE quarantines DROP COLUMN default_action;"
		" ALTER TABLE quarantines DROP COLUMN overflow_exempt;"
		" ALTER TABLE quarantines DROP COLUMN created_at;"
		" ALTER TABLE deliveries DROP COLUMN gateway;"
		" ALTER TABLE deliveries DROP COLUMN rescan;"
		" ALTER TABLE deliveries DROP COLUMN copy;"
		" DROP TABLE gateways; DROP TABLE events; DROP TABLE tracked_messages;"
		" DROP TABLE tracked_recipients; DROP TABLE tracked_attachments;"
		" DROP TABLE gateway_event_state; DROP TABLE user_totp;"
		" DROP TABLE user_recovery_codes; DROP TABLE report_rollups; DROP TABLE levels;"
		" DROP TABLE report_schedules; DROP TABLE report_archive;"
		" DROP TABLE report_backfill; DROP TABLE report_backfill_done; DROP TABLE "
		"report_totals; DROP TABLE capacity_hours; DROP TABLE migration_notices;"
		" PRAGMA user_version=4; COMMIT;",
		NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(pragma_int(path, "user_version"), 4);

	char *sub = xasprintf("%s/data", fx->dir);
	struct store_options opt = {.dir = sub};
	assert_int_equal(store_open(&opt, &fx->st), 0);
	assert_int_equal(pragma_int(path, "user_version"), 25);
	char got[N][37];
	struct store_filter f = {.subject = "重要"};
	assert_int_equal(test_list_all(fx->st, &f, 4, got, N), N / 2);
	struct store_filter f1 = {.subject = "n"}; /* "Notice", folded */
	assert_int_equal(test_list_all(fx->st, &f1, 4, got, N), N / 2);
	struct store_filter f2 = {.subject = "請求"};
	assert_int_equal(test_list_all(fx->st, &f2, 4, got, N), N / 2);
	/* newest id first, the late one in its place */
	assert_string_equal(got[0], ids[28]);
	assert_string_equal(got[N / 2 - 1], ids[10]);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *s = NULL;
	assert_int_equal(
	    sqlite3_prepare_v2(db, "SELECT max_late, max_id FROM list_order", -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	/* id 10 (T0 - 5 s) was 14 s older than id 9 (T0 + 9 s), inserted before it */
	assert_int_equal(sqlite3_column_int64(s, 0), 14000);
	assert_string_equal((const char *)sqlite3_column_text(s, 1), ids[N - 1]);
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* and keeps both up to date from then on */
	char late[37];
	struct msg_spec sp = {.label = "l", .at = T0, .rcpts = {"a@x.jp"}, .subject = "重要"};
	add(fx->st, &sp, late);
	assert_int_equal(test_list_all(fx->st, &f, 4, got, N), N / 2 + 1);
	assert_string_equal(got[N / 2], late);
	free(sub);
	free(path);
}

/* --- query plans ---------------------------------------------------------- */

static void test_query_plans(void **state)
{
	struct fixture *fx = *state;
	add_corpus(fx->st);
	const char *u1[] = {"u1@corp.jp"};
	const char *theirs[] = {"Alpha", "Beta"};
	const struct {
		struct store_filter f;
		const char *must[3];
	} cases[] = {
	    /* an operator's: a walked PVO row looks up its own memberships by key */
	    {{.quarantine = "spam",
	      .scope_pvo = true,
	      .pvo_quarantines = theirs,
	      .npvo_quarantines = 2},
	     {"INDEX messages_quarantine (quarantine=?)",
	      "SEARCH w USING PRIMARY KEY (msg_id=? AND quarantine=?)"}},
	    {{.recipient = "u1@corp.jp",
	      .scope_pvo = true,
	      .pvo_quarantines = theirs,
	      .npvo_quarantines = 2},
	     {"COVERING INDEX recipients_address (address_lc=?",
	      "SEARCH w USING PRIMARY KEY (msg_id=? AND quarantine=?)"}},
	    /* an end user's listing, even with the quarantine given */
	    {{.quarantine = "spam", .addresses = u1, .naddresses = 1},
	     {"SEARCH r USING COVERING INDEX recipients_address (address_lc=?"}},
	    {{.recipient = "u1@corp.jp", .state = "quarantined"},
	     {"COVERING INDEX recipients_address (address_lc=?"}},
	    {{.quarantine = "spam", .sender = "bob@bank.example"},
	     {"INDEX messages_sender (sender_lc=?", "INDEX messages_from (from_addr_lc=?"}},
	    {{.sender = "bank.example"},
	     {"INDEX messages_sender_domain (sender_domain=?",
	      "INDEX messages_from_domain (from_domain=?"}},
	    /* a range of the id index (ids carry their time), stopped at the page */
	    {{.quarantine = "spam", .since = T0, .until = T0 + 1000},
	     {"INDEX sqlite_autoindex_messages_1 (id>? AND id<?)"}},
	    {{.since = T0}, {"INDEX sqlite_autoindex_messages_1 (id>?)"}},
	    {{.quarantine = "spam"}, {"INDEX messages_quarantine (quarantine=?)"}},
	    /* subject searches walk their index in seq order: no sort of all matches */
	    {{.subject = "請求書"},
	     {"SCAN subject_fts VIRTUAL TABLE INDEX", "SEARCH m USING INTEGER"}},
	    {{.subject = "資料"}, {"SCAN subject_short VIRTUAL TABLE INDEX"}},
	    {{.subject = "x", .quarantine = "spam", .since = T0},
	     {"SCAN subject_short VIRTUAL TABLE INDEX"}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *plan = NULL;
		assert_int_equal(store_debug_list_plan(fx->st, &cases[i].f, NULL, &plan), 0);
		for (size_t j = 0; j < 3 && cases[i].must[j] != NULL; j++) {
			if (strstr(plan, cases[i].must[j]) == NULL)
				fail_msg("case %zu: plan lacks \"%s\":\n%s", i, cases[i].must[j],
					 plan);
		}
		/* never a full scan of messages, nor a sort of everything that matched */
		if (strstr(plan, "SCAN m\n") != NULL || strstr(plan, "SCAN m ") != NULL)
			fail_msg("case %zu: full scan:\n%s", i, plan);
		bool walks = cases[i].f.subject != NULL ||
			     (cases[i].f.since != 0 && cases[i].f.sender == NULL);
		if (walks && strstr(plan, "TEMP B-TREE") != NULL)
			fail_msg("case %zu: sorts:\n%s", i, plan);
		free(plan);
	}
	/* a keyset cursor stays within the index */
	char *plan = NULL;
	struct store_filter q = {.quarantine = "spam"};
	assert_int_equal(store_debug_list_plan(fx->st, &q, corpus_ids[3], &plan), 0);
	assert_non_null(strstr(plan, "messages_quarantine (quarantine=? AND id<?)"));
	free(plan);
}

/* --- PostgreSQL's own ------------------------------------------------------ */

struct claimer {
	struct store *st;
	int64_t jobs[64];
	int n;
	int errors;
};

static void *claim_main(void *arg)
{
	struct claimer *c = arg;
	for (;;) {
		struct store_delivery *d = NULL;
		int rc = store_delivery_claim(c->st, T0 + 10, 60000, &d);
		if (rc == -EAGAIN)
			break;
		if (rc != 0) {
			c->errors++;
			break;
		}
		if (c->n < 64)
			c->jobs[c->n++] = d->job_id;
		store_delivery_free(d);
	}
	return NULL;
}

/* Claimers racing on one queue (FOR UPDATE SKIP LOCKED): each job goes to one. */
static void test_pg_claims_race(void **state)
{
	struct fixture *fx = *state;
	enum { JOBS = 40, CLAIMERS = 4 };
	for (int i = 0; i < JOBS; i++) {
		char id[37];
		struct msg_spec sp = {.label = "c", .at = T0 + i, .rcpts = {"a@x.jp"}};
		add(fx->st, &sp, id);
		assert_int_equal(store_release(fx->st, id, NULL, 0, T0, NULL), 0);
	}
	struct claimer cl[CLAIMERS] = {0};
	pthread_t th[CLAIMERS];
	for (int i = 0; i < CLAIMERS; i++) {
		cl[i].st = fx->st;
		pthread_create(&th[i], NULL, claim_main, &cl[i]);
	}
	int total = 0;
	int64_t seen[JOBS];
	for (int i = 0; i < CLAIMERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(cl[i].errors, 0);
		for (int k = 0; k < cl[i].n; k++) {
			for (int j = 0; j < total; j++)
				assert_true(seen[j] != cl[i].jobs[k]);
			assert_true(total < JOBS);
			seen[total++] = cl[i].jobs[k];
		}
	}
	assert_int_equal(total, JOBS);
	/* all leased until T0 + 10 + 60000 */
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 60009, 1000, &d), -EAGAIN);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 60010, 1000, &d), 0);
	store_delivery_free(d);
}

/* A database migrated by a newer lazaretd is refused, not damaged. */
static void test_pg_schema_too_new(void **state)
{
	struct fixture *fx = *state;
	char id[37];
	struct msg_spec sp = {.label = "n", .at = T0, .rcpts = {"a@x.jp"}};
	add(fx->st, &sp, id);
	store_close(fx->st);
	fx->st = NULL;
	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	PGresult *r = PQexec(c, "INSERT INTO store_migrations (version) VALUES (99)");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	assert_int_equal(fixture_open(fx), -EPROTO);
	fx->st = NULL;
	r = PQexec(c, "DELETE FROM store_migrations WHERE version = 99");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
	assert_int_equal(fixture_open(fx), 0);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	store_message_free(m);
	/* one store per node name at a time (both are named after this host) */
	struct store *other = NULL;
	assert_int_equal(fixture_open_other(fx, &other), -EBUSY);
	/* and a wrong DSN is an error, not a hang */
	struct store_options bad = {.backend = "postgresql", .dsn = "host=/nonexistent port=1"};
	assert_int_equal(store_open(&bad, &other), -ENOTCONN);
	struct store_options none = {.backend = "postgresql"};
	assert_int_equal(store_open(&none, &other), -EINVAL);
	struct store_options unknown = {.backend = "oracle", .dsn = "x"};
	assert_int_equal(store_open(&unknown, &other), -EINVAL);
}

/*
 * Opening against a server that does not answer waits connect_wait_ms, then
 * -ENOTCONN; one that answers and refuses (an unknown database) is -EACCES at once.
 */
static void test_pg_connect_wait(void **state)
{
	(void)state;
	struct store *st = NULL;
	struct store_options none = {
	    .backend = "postgresql", .dsn = "host=/nonexistent port=1", .connect_wait_ms = 600};
	int64_t began = clock_mono_ms();
	assert_int_equal(store_open(&none, &st), -ENOTCONN);
	assert_true(clock_mono_ms() - began >= 550);
	/* what callers answer: "unavailable" for these, their own error otherwise */
	assert_true(store_error_unavailable(-ENOTCONN));
	assert_false(store_error_unavailable(-EINVAL));
	assert_false(store_error_unavailable(-ENOENT));
	char *dsn = test_pg_dsn_of("no_such_database_here");
	struct store_options refused = {
	    .backend = "postgresql", .dsn = dsn, .connect_wait_ms = 60000};
	began = clock_mono_ms();
	assert_int_equal(store_open(&refused, &st), -EACCES);
	assert_true(clock_mono_ms() - began < 20000);
	free(dsn);
}

/*
 * With a read replica that cannot be reached, the reads of a thread that allows
 * the replica go to the primary (counted), others never try it; the status says so.
 */
static void test_pg_replica_fallback(void **state)
{
	struct fixture *fx = *state;
	char id[37];
	struct msg_spec sp = {.label = "r", .at = T0, .rcpts = {"a@x.jp"}};
	add(fx->st, &sp, id);
	struct store_status ss;
	store_status(fx->st, &ss);
	assert_true(ss.available);
	assert_false(ss.replica);
	store_close(fx->st);
	char *dsn = test_pg_dsn_of(fx->db);
	struct store_options opt = {
	    .backend = "postgresql", .dsn = dsn, .read_dsn = "host=/nonexistent port=1"};
	assert_int_equal(store_open(&opt, &fx->st), 0);
	free(dsn);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0); /* not allowed: never tried */
	store_message_free(m);
	store_status(fx->st, &ss);
	assert_true(ss.replica);
	assert_int_equal(ss.replica_fallbacks, 0);
	store_read_replica_set(true);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_get(fx->st, id, &m), 0);
		store_message_free(m);
	}
	store_read_replica_set(false);
	store_status(fx->st, &ss);
	assert_true(ss.available);
	assert_false(ss.replica_available);
	assert_int_equal(ss.replica_fallbacks, 3);
}

/*
 * A read held up on the server (here: behind another session's lock) is cancelled
 * by the statement_timeout of the thread's deadline and answers -ETIMEDOUT; the
 * connection then serves the next read in full, and changes are never cut off.
 */
static void test_pg_read_deadline_cancels(void **state)
{
	struct fixture *fx = *state;
	char id[37];
	struct msg_spec sp = {.label = "l", .at = T0, .rcpts = {"a@x.jp"}};
	add(fx->st, &sp, id);
	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, "BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	struct store_filter all = {.quarantine = "spam"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	store_read_deadline_set(300);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(store_list(fx->st, &all, 10, NULL, &v, &n, &next), -ETIMEDOUT);
	int64_t took = clock_mono_ms() - t0;
	assert_true(took >= 250 && took < 10000);
	assert_null(v);
	struct store_message *m = NULL;
	store_read_deadline_set(300);
	assert_int_equal(store_get(fx->st, id, &m), -ETIMEDOUT);
	store_read_deadline_clear();
	r = PQexec(c, "COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
	/* the pooled connections carry no timeout any more */
	assert_int_equal(store_list(fx->st, &all, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 1);
	store_message_array_free(v, n);
	free(next);
	assert_int_equal(store_get(fx->st, id, &m), 0);
	store_message_free(m);
	/* a change made by a thread with a spent deadline still commits */
	store_read_deadline_set(1);
	struct timespec ts = {0, 5 * 1000 * 1000};
	nanosleep(&ts, NULL);
	const char *rcpts[] = {"a@x.jp"};
	int changed = 0;
	assert_int_equal(store_delete(fx->st, id, rcpts, 1, T0 + 1, &changed), 0);
	assert_int_equal(changed, 1);
	store_read_deadline_clear();
}

/* Text PostgreSQL cannot hold as is (invalid UTF-8) is stored with U+FFFD. */
static void test_pg_invalid_utf8(void **state)
{
	struct fixture *fx = *state;
	char id[37];
	struct msg_spec sp = {
	    .label = "u", .at = T0, .rcpts = {"a@x.jp"}, .subject = "bad \xff\xfe end \xe3\x81"};
	add(fx->st, &sp, id);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_string_equal(m->subject,
			    "bad \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd");
	store_message_free(m);
	struct store_filter f = {.subject = "end"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &f, 10, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 1);
	store_message_array_free(v, n);
	/* the subject is searchable through its trigram index */
	assert_int_equal(
	    pg_int(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_subject'"
		       " AND indexdef LIKE '%gin_trgm_ops%'"),
	    1);
}

/* --- several processes on one store ------------------------------------- */

/*
 * Cluster-wide jobs, shared secrets and the node list through store.h. On SQLite
 * (one process) a job is always granted; on PostgreSQL a second store (another
 * node) is refused a job the first holds, and gets it once the first is done.
 */
static void test_cluster_jobs_and_secrets(void **state)
{
	struct fixture *fx = *state;
	bool held = false;
	assert_int_equal(store_job_try(fx->st, "expiry", &held), 0);
	assert_true(held);
	/* a job held by this process is not taken twice */
	if (pg_dsn != NULL)
		assert_int_equal(store_job_try(fx->st, "expiry", &held), -EINVAL);
	assert_int_equal(store_job_try(fx->st, "", &held), -EINVAL);
	assert_false(held);
	struct store *other = NULL;
	if (pg_dsn != NULL) {
		assert_int_equal(fixture_open_node(fx, "node-b", false, &other), 0);
		assert_int_equal(store_job_try(other, "expiry", &held), 0);
		assert_false(held); /* the first node runs it: skip */
		assert_int_equal(store_job_try(other, "digest_schedule", &held), 0);
		assert_true(held); /* another job is free */
		store_job_done(other, "digest_schedule");
	}
	store_job_done(fx->st, "expiry");
	store_job_done(fx->st, "expiry"); /* not held: a no-op */
	if (other != NULL) {
		assert_int_equal(store_job_try(other, "expiry", &held), 0);
		assert_true(held);
		/* and the first node is now refused */
		assert_int_equal(store_job_try(fx->st, "expiry", &held), 0);
		assert_false(held);
		store_job_done(other, "expiry");
		/* its pooled connection holds no lock any more */
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM pg_locks WHERE locktype ="
					    " 'advisory' AND objsubid = 2 AND classid::bigint ="
					    " 1819961954"),
				 0);
	}

	unsigned char a[32], b[32], got[32];
	memset(a, 0xa5, sizeof(a));
	memset(b, 0x5a, sizeof(b));
	a[0] = 0; /* a NUL inside is kept */
	assert_int_equal(store_secret_get(fx->st, "digest_key", got, sizeof(got)), -ENOENT);
	assert_int_equal(store_secret_add(fx->st, "digest_key", a, sizeof(a), got), 0);
	assert_memory_equal(got, a, sizeof(a));
	/* the first one stays: a second node starting later gets it */
	struct store *second = other != NULL ? other : fx->st;
	memset(got, 0, sizeof(got));
	assert_int_equal(store_secret_add(second, "digest_key", b, sizeof(b), got), 0);
	assert_memory_equal(got, a, sizeof(a));
	memset(got, 0, sizeof(got));
	assert_int_equal(store_secret_get(second, "digest_key", got, sizeof(got)), 0);
	assert_memory_equal(got, a, sizeof(a));
	/* a wrong length is refused, never half-filled */
	assert_int_equal(store_secret_get(fx->st, "digest_key", got, 16), -EINVAL);
	assert_int_equal(store_secret_add(fx->st, "x", a, 0, got), -EINVAL);
	assert_int_equal(store_secret_add(fx->st, "x", a, STORE_SECRET_MAX + 1, got), -EINVAL);
	assert_int_equal(store_secret_get(fx->st, NULL, got, sizeof(got)), -EINVAL);

	/* the nodes: this one, and on PostgreSQL the second too */
	char host[STORE_NODE_NAME_MAX + 1];
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(store_node_name(fx->st), host);
	struct store_node *v = NULL;
	size_t n = 0;
	assert_int_equal(store_nodes(fx->st, 0, &v, &n), 0);
	assert_int_equal(n, other != NULL ? 2 : 1);
	bool self = false, b_seen = false;
	for (size_t i = 0; i < n; i++) {
		self |= strcmp(v[i].name, host) == 0;
		b_seen |= strcmp(v[i].name, "node-b") == 0;
		assert_string_equal(v[i].version, LAZARET_VERSION);
		assert_true(v[i].started_at > 0 && v[i].last_seen >= v[i].started_at);
	}
	assert_true(self);
	assert_true(b_seen == (other != NULL));
	store_node_array_free(v, n);
	/* none seen in the future */
	assert_int_equal(store_nodes(fx->st, clock_now_ms() + 3600000, &v, &n), 0);
	assert_int_equal(n, 0);
	store_node_array_free(v, n);
	store_close(other);
}

/*
 * Node names on PostgreSQL: a second store with the same name is refused, another
 * name shares the database; an exclusive store (lazaret-migrate-store) is refused
 * while nodes are there, and a bad name is refused before connecting.
 */
static void test_pg_node_names(void **state)
{
	struct fixture *fx = *state;
	struct store *b = NULL, *b2 = NULL, *x = NULL;
	assert_int_equal(fixture_open_node(fx, "node-b", false, &b), 0);
	assert_int_equal(fixture_open_node(fx, "node-b", false, &b2), -EBUSY);
	assert_int_equal(fixture_open_node(fx, "bad name", false, &x), -EINVAL);
	assert_int_equal(fixture_open_node(fx, NULL, true, &x), -EBUSY);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM nodes"), 2);
	/* both write: messages from both are there */
	struct msg_spec sp = {.label = "n", .at = T0, .sender = "s@x.jp", .rcpts = {"a@x.jp"}};
	char id1[37], id2[37];
	add(fx->st, &sp, id1);
	sp.at = T0 + 1;
	add(b, &sp, id2);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id2, &m), 0);
	store_message_free(m);
	/* the name is free again once its store is closed */
	store_close(b);
	assert_int_equal(fixture_open_node(fx, "node-b", false, &b2), 0);
	store_close(b2);
	/* with every node gone, the exclusive store gets the database, and keeps nodes out */
	store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(fixture_open_node(fx, NULL, true, &x), 0);
	assert_int_equal(fixture_open_node(fx, "node-c", false, &b), -EBUSY);
	store_close(x);
	assert_int_equal(fixture_open(fx), 0);
}

/*
 * Delivery leases name their node: a node starting up takes back its own leased
 * deliveries at once, never another live node's; those come back only when their
 * lease runs out.
 */
static void test_pg_leases_per_node(void **state)
{
	struct fixture *fx = *state;
	struct store *b = NULL;
	assert_int_equal(fixture_open_node(fx, "node-b", false, &b), 0);
	struct msg_spec sp = {.label = "l", .at = T0, .sender = "s@x.jp", .rcpts = {"a@x.jp"}};
	char id1[37], id2[37];
	add(fx->st, &sp, id1);
	sp.at = T0 + 1;
	add(fx->st, &sp, id2);
	assert_int_equal(store_release(fx->st, id1, NULL, 0, T0 + 10, NULL), 0);
	assert_int_equal(store_release(fx->st, id2, NULL, 0, T0 + 10, NULL), 0);
	/* each node claims one, leased for 10 s */
	struct store_delivery *da = NULL, *db = NULL, *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 20, 10000, &da), 0);
	assert_int_equal(store_delivery_claim(b, T0 + 20, 10000, &db), 0);
	assert_true(da->job_id != db->job_id);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM deliveries WHERE leased_by = 'node-b'"),
			 1);
	/* node b restarts: it takes back its own, and leaves the first node's alone */
	store_close(b);
	assert_int_equal(fixture_open_node(fx, "node-b", false, &b), 0);
	assert_int_equal(store_delivery_reset_leases(b, T0 + 30), 0);
	assert_int_equal(store_delivery_claim(b, T0 + 30, 10000, &d), 0);
	assert_int_equal(d->job_id, db->job_id);
	store_delivery_free(d);
	assert_int_equal(store_delivery_claim(b, T0 + 30, 10000, &d), -EAGAIN);
	/* the first node "died" with its lease: b takes it over once it runs out */
	assert_int_equal(store_delivery_claim(b, T0 + 10019, 10000, &d), -EAGAIN);
	assert_int_equal(store_delivery_claim(b, T0 + 10020, 10000, &d), 0);
	assert_int_equal(d->job_id, da->job_id);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM deliveries WHERE leased_by = 'node-b'"),
			 2);
	/* a retry gives the lease up */
	struct store_delivery_result res = {"a@x.jp", STORE_DELIVERY_RETRY, "451 later"};
	assert_int_equal(store_delivery_finish(b, d, &res, 1, T0 + 10030, T0 + 20000), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM deliveries WHERE leased_by IS NULL"), 1);
	store_delivery_free(d);
	store_delivery_free(da);
	store_delivery_free(db);
	store_close(b);
}

struct max_seq_call {
	struct store *st;
	int64_t seq;
	int rc;
	_Atomic bool done;
};

static void *max_seq_main(void *arg)
{
	struct max_seq_call *c = arg;
	c->rc = store_digest_max_seq(c->st, &c->seq);
	atomic_store(&c->done, true);
	return NULL;
}

/*
 * The digest's upper bound never passes a message that is not committed yet: an
 * ingest transaction still open (here on a connection of its own, taking the
 * ingest lock as the writer does) holds store_digest_max_seq back until it
 * commits; and while the bound is being taken, the writer's next batch waits.
 */
static void test_pg_max_seq_waits_for_ingest(void **state)
{
	struct fixture *fx = *state;
	struct msg_spec sp = {.label = "s", .at = T0, .sender = "s@x.jp", .rcpts = {"a@x.jp"}};
	char id[37];
	add(fx->st, &sp, id);
	int64_t first = 0;
	assert_int_equal(store_digest_max_seq(fx->st, &first), 0);
	assert_true(first > 0);

	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	pg_run(c, "BEGIN; SELECT pg_advisory_xact_lock_shared(7809657787786818611)");
	pg_run(c,
	       "INSERT INTO messages (id, quarantine, received_at, sender, sender_lc,"
	       " sender_domain, size, stored_size) VALUES ('0199c8a0-0000-7000-8000-000000000001',"
	       " 'spam', 0, 's@x.jp', 's@x.jp', 'x.jp', 1, 1)");
	int64_t open_seq = pg_int(fx, "SELECT last_value FROM messages_seq_seq");
	assert_true(open_seq > first);
	struct max_seq_call call = {.st = fx->st};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, max_seq_main, &call), 0);
	usleep(500 * 1000);
	assert_false(atomic_load(&call.done)); /* held back by the open ingest */
	pg_run(c, "COMMIT");
	pthread_join(t, NULL);
	assert_int_equal(call.rc, 0);
	assert_int_equal(call.seq, open_seq);

	/* the other way round: while the bound is taken, a batch is not committed */
	pg_run(c, "BEGIN; SELECT pg_advisory_xact_lock(7809657787786818611)");
	struct waiter w;
	waiter_init(&w, 1);
	sp.at = T0 + 5;
	assert_int_equal(store_submit_message(fx->st, build(&sp, id), waiter_done, &w), 0);
	usleep(500 * 1000);
	pthread_mutex_lock(&w.lock);
	int remaining = w.remaining;
	pthread_mutex_unlock(&w.lock);
	assert_int_equal(remaining, 1);
	pg_run(c, "COMMIT");
	waiter_wait(&w);
	assert_int_equal(w.last_rc, 0);
	PQfinish(c);
}

/* Runs sql (no result wanted) on the fixture's PostgreSQL database. */
static void pg_run_fx(struct fixture *fx, const char *sql)
{
	char *dsn = test_pg_dsn_of(fx->db);
	PGconn *c = PQconnectdb(dsn);
	free(dsn);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	pg_run(c, sql);
	PQfinish(c);
}

/* How many messages store_list answers for f (all pages). */
static size_t list_count(struct store *st, const struct store_filter *f)
{
	char(*got)[37] = xcalloc(200, 37);
	size_t n = test_list_all(st, f, 50, got, 200);
	free(got);
	return n;
}

/*
 * PostgreSQL's 1-2 character index folds case as ILIKE does, beyond ASCII too
 * (lower() of the database's locale): every term answers what a scan with ILIKE
 * answers. Then, with sequential scans off, the plans show the index of short
 * terms and a time range pruned to its day's partition.
 */
static void test_pg_search_indexes(void **state)
{
	struct fixture *fx = *state;
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT lazaret_message_partitions(%lld, %lld)", (long long)T0,
		 (long long)T0);
	pg_run_fx(fx, sql);
	static const char *const subjects[] = {"Ärger über Öl", "ÄRGER", "請求書",
					       "会議室の予約",	"plain", "ÉCOLE été"};
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		struct msg_spec sp = {.label = "x",
				      .at = T0 + 1000 * (int64_t)i,
				      .rcpts = {"a@x.jp"},
				      .subject = subjects[i]};
		add(fx->st, &sp, NULL);
	}
	static const char *const terms[] = {"ä",  "Ä",	  "är", "ÄR", "rg",   "ü", "öl", "ÖL", "É",
					    "ét", "請求", "請", "会", "議室", "x", "鯖", "ö"};
	for (size_t i = 0; i < sizeof(terms) / sizeof(terms[0]); i++) {
		struct store_filter f = {.subject = terms[i]};
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM messages WHERE subject ILIKE '%%%s%%'", terms[i]);
		size_t want = (size_t)pg_int(fx, sql);
		size_t got = list_count(fx->st, &f);
		if (got != want)
			fail_msg("term \"%s\": %zu matches, ILIKE finds %zu", terms[i], got, want);
	}
	/* the ASCII and Japanese ones, as SQLite answers them too */
	struct store_filter f1 = {.subject = "請求"};
	assert_int_equal(list_count(fx->st, &f1), 1);
	struct store_filter f2 = {.subject = "RG"};
	assert_int_equal(list_count(fx->st, &f2), 2);
	/* what the plans use, once sequential scans are off for new connections */
	store_close(fx->st);
	fx->st = NULL;
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s SET enable_seqscan = off", fx->db);
	pg_run_fx(fx, sql);
	assert_int_equal(fixture_open(fx), 0);
	char *plan = NULL;
	assert_int_equal(store_debug_list_plan(fx->st, &f1, NULL, &plan), 0);
	if (strstr(plan, "short_grams_idx") == NULL)
		fail_msg("a 2-character term without its index:\n%s", plan);
	free(plan);
	struct store_filter fr = {.quarantine = "spam", .since = T0, .until = T0 + 2000};
	assert_int_equal(store_debug_list_plan(fx->st, &fr, NULL, &plan), 0);
	if (strstr(plan, "messages_p20251009") == NULL || strstr(plan, "messages_default") != NULL)
		fail_msg("a time range not pruned to its day:\n%s", plan);
	free(plan);
	assert_int_equal(list_count(fx->st, &fr), 2);
}

/*
 * An end user's listing, with a cursor and under a generic plan (a prepared
 * listing's, forced here): driven by the recipient's index rows, each message
 * looked up by id in a nested loop, never a walk of every message joined to
 * them. Then the same pages as the plain walk answers.
 */
static void test_pg_recipient_listing_plan(void **state)
{
	struct fixture *fx = *state;
	add_corpus(fx->st);
	store_close(fx->st);
	fx->st = NULL;
	char sql[256];
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s SET plan_cache_mode = force_generic_plan",
		 fx->db);
	pg_run_fx(fx, sql);
	assert_int_equal(fixture_open(fx), 0);
	const char *u1[] = {"U1@corp.jp", "u2@corp.jp"};
	struct store_filter f = {.quarantine = "spam", .addresses = u1, .naddresses = 2};
	for (int with_cursor = 0; with_cursor < 2; with_cursor++) {
		char *plan = NULL;
		assert_int_equal(store_debug_list_plan(fx->st, &f,
						       with_cursor ? corpus_ids[NCORPUS - 1] : NULL,
						       &plan),
				 0);
		if (strstr(plan, "Nested Loop") == NULL || strstr(plan, " on recipients") == NULL ||
		    strstr(plan, "(id = r.msg_id)") == NULL || strstr(plan, "Merge") != NULL ||
		    strstr(plan, "Hash Join") != NULL)
			fail_msg("not driven by the recipient's rows:\n%s", plan);
		free(plan);
	}
	/*
	 * An operator's listing by recipient, scoped to their PVO quarantines: still
	 * driven by the recipient's rows, and a walked PVO row looks up its own
	 * memberships (never a hash of every membership of their quarantines).
	 */
	const char *theirs[] = {"Alpha", "Beta"};
	struct store_filter op = {.recipient = "u1@corp.jp",
				  .scope_pvo = true,
				  .pvo_quarantines = theirs,
				  .npvo_quarantines = 2};
	for (int with_cursor = 0; with_cursor < 2; with_cursor++) {
		char *plan = NULL;
		assert_int_equal(store_debug_list_plan(fx->st, &op,
						       with_cursor ? corpus_ids[NCORPUS - 1] : NULL,
						       &plan),
				 0);
		if (strstr(plan, "Nested Loop") == NULL || strstr(plan, " on recipients") == NULL ||
		    strstr(plan, "(id = r.msg_id)") == NULL || strstr(plan, "Hash Join") != NULL ||
		    strstr(plan, "hashed SubPlan") != NULL ||
		    strstr(plan, "AND (msg_id = m") == NULL)
			fail_msg("an operator's listing not driven by the recipient's rows:\n%s",
				 plan);
		free(plan);
	}
	/* the listing itself, page by page, is every message to u1 or u2 */
	struct store_filter all = {.quarantine = "spam"};
	struct store_message **v = NULL;
	size_t nall = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &all, 100, NULL, &v, &nall, &next), 0);
	assert_null(next);
	char(*want)[37] = xcalloc(NCORPUS, 37), (*got)[37] = xcalloc(NCORPUS, 37);
	size_t nwant = 0;
	for (size_t i = 0; i < nall; i++) {
		bool mine = false;
		for (size_t k = 0; k < v[i]->nrecipients; k++)
			mine = mine || strcasecmp(v[i]->recipients[k].address, "u1@corp.jp") == 0 ||
			       strcasecmp(v[i]->recipients[k].address, "u2@corp.jp") == 0;
		if (mine)
			memcpy(want[nwant++], v[i]->id, 37);
	}
	store_message_array_free(v, nall);
	assert_true(nwant > 3 && nwant < nall);
	for (size_t page = 1; page <= 3; page++) {
		assert_int_equal(test_list_all(fx->st, &f, page, got, NCORPUS), nwant);
		for (size_t i = 0; i < nwant; i++)
			assert_string_equal(got[i], want[i]);
	}
	free(want);
	free(got);
}

/*
 * Migration 5 on a database that already holds messages (some with an id time
 * other than their received_at): the bounds come from the rows, the index of
 * short terms covers them. Version 5 is this migration's number; renumber it
 * here if migrations are renumbered.
 */
static void test_pg_search_migration(void **state)
{
	struct fixture *fx = *state;
	enum { HOUR = 3600000 };
	char ids[3][37];
	static const struct msg_spec specs[] = {
	    {.label = "a", .at = T0, .rcpts = {"a@x.jp"}, .subject = "会議のお知らせ"},
	    {.label = "b", .at = T0 + 1000, .rcpts = {"a@x.jp"}, .subject = "Re: 会議"},
	    {.label = "c", .at = T0 + 2000, .rcpts = {"a@x.jp"}, .subject = "hello"},
	};
	for (size_t i = 0; i < 3; i++) {
		struct store_new_message *m = build(&specs[i], NULL);
		if (i == 1)
			ids_uuidv7(T0 + 1000 - 2 * HOUR, m->id); /* received 2 h after its id */
		if (i == 2)
			ids_uuidv7(T0 + 2000 + HOUR, m->id); /* its id an hour ahead */
		memcpy(ids[i], m->id, 37);
		assert_int_equal(submit_sync(fx->st, m), 0);
	}
	store_close(fx->st);
	fx->st = NULL;
	pg_run_fx(fx, "BEGIN; DROP TRIGGER messages_ai_order ON messages;"
		      " DROP FUNCTION messages_ai_order(); DROP TABLE list_order;"
		      " DROP INDEX messages_subject_short; DROP FUNCTION lazaret_short_grams(text);"
		      " DROP FUNCTION lazaret_uuidv7_ms(text); DROP TABLE gateways;"
		      /* and what came after 6 (7 the gateway registry; 8 the PVO quarantines;
		       * 9 the routes of deliveries; 10 gateway events and tracking; 11
		       * dropped a foreign key of memberships; 12 tracking indexes; 13 second
		       * factors; 14 report rollups; 15 the centralization levels; 16 the
		       * outbreak rules versions; 17 the rescans of memberships; 18 scheduled
		       * reports; 19 migration mappings, 20 the rules of rescans' verdicts,
		       * 21 the rollups' backfill, 22 the
		       * all-gateway rollups, 23 the capacity hours, 24 the migration
		       * notices, 25 an index of memberships: dropped with them) */
		      " DROP TABLE memberships; DROP TABLE quarantine_operators;"
		      " DROP TABLE events; DROP TABLE tracked_messages;"
		      " DROP TABLE tracked_recipients; DROP TABLE tracked_attachments;"
		      " DROP TABLE gateway_event_state; DROP TABLE user_recovery_codes;"
		      " DROP TABLE user_totp; DROP TABLE report_rollups; DROP TABLE levels;"
		      " DROP TABLE report_schedules; DROP TABLE report_archive;"
		      " DROP TABLE report_backfill; DROP TABLE report_backfill_done; DROP TABLE "
		      "report_totals; DROP TABLE capacity_hours; DROP TABLE migration_notices;"
		      " DROP FUNCTION lazaret_tracking_partitions(bigint, bigint);"
		      " ALTER TABLE quarantines DROP COLUMN delete_after,"
		      " DROP COLUMN default_action, DROP COLUMN overflow_exempt,"
		      " DROP COLUMN created_at;"
		      " ALTER TABLE deliveries DROP COLUMN gateway, DROP COLUMN rescan,"
		      " DROP COLUMN copy;"
		      " DELETE FROM store_migrations WHERE version >= 6; COMMIT");
	assert_int_equal(fixture_open(fx), 0);
	assert_int_equal(pg_int(fx, "SELECT max(version) FROM store_migrations"), 25);
	/* the planner has the statistics of the new index expression */
	assert_true(pg_int(fx, "SELECT count(*) FROM pg_stats"
			       " WHERE tablename LIKE '%short_grams%'") > 0);
	assert_int_equal(pg_int(fx, "SELECT id_ahead FROM list_order"), HOUR);
	assert_int_equal(pg_int(fx, "SELECT id_behind FROM list_order"), 2 * HOUR);
	struct store_filter f = {.subject = "会議"};
	assert_int_equal(list_count(fx->st, &f), 2);
	struct store_filter r = {.since = T0 + 1000, .until = T0 + 1001};
	char got[3][37];
	assert_int_equal(test_list_all(fx->st, &r, 1, got, 3), 1);
	assert_string_equal(got[0], ids[1]);
	struct store_filter r2 = {.since = T0 + 2000};
	assert_int_equal(test_list_all(fx->st, &r2, 1, got, 3), 1);
	assert_string_equal(got[0], ids[2]);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM messages"
				    " WHERE lazaret_short_grams(subject) @> ARRAY['会議']"),
			 2);
}

/* --- PVO quarantines ------------------------------------------------------ */

/* A PVO message from gateway gw with origin id origin, in quarantines q[] (NULL-ended). */
static struct store_new_message *build_pvo(int64_t at, const char *gw, const char *origin,
					   const char *const *q, const int64_t *expires,
					   char id_out[37], char *stored_as)
{
	const struct msg_spec sp = {"pvo",	   at,	 STORE_PVO_MARKER,
				    "s@x.jp",	   NULL, {"user@example.jp", NULL},
				    "pvo subject", "",	 gw};
	struct store_new_message *m = build(&sp, id_out);
	size_t n = 0;
	while (q[n] != NULL)
		n++;
	m->memberships = xcalloc(n, sizeof(*m->memberships));
	m->nmemberships = n;
	for (size_t i = 0; i < n; i++) {
		m->memberships[i].quarantine = xstrdup(q[i]);
		m->memberships[i].reason = xasprintf("reason %zu", i);
		m->memberships[i].entered_at = at - 1000;
		m->memberships[i].expires_at = expires != NULL ? expires[i] : 0;
	}
	m->origin_gateway = gw != NULL ? xstrdup(gw) : NULL;
	m->origin_id = origin != NULL ? xstrdup(origin) : NULL;
	m->stored_as = stored_as;
	return m;
}

/* Stores a PVO message as build_pvo builds it (not stored_as another one). */
static void add_pvo(struct store *st, int64_t at, const char *gw, const char *origin,
		    const char *const *q, const int64_t *expires, char id_out[37])
{
	assert_int_equal(submit_sync(st, build_pvo(at, gw, origin, q, expires, id_out, NULL)), 0);
}

/* A spam message beside the PVO ones: what a PVO action must leave alone. */
static void add_spam(struct store *st, char id_out[37])
{
	add(st,
	    &(struct msg_spec){
		"s", T0, "spam", "a@b.jp", NULL, {"u@example.jp"}, "s", "spam", "gw1"},
	    id_out);
}

static const struct store_quarantine_stats *stats_of(const struct store_quarantine_stats *v,
						     size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	}
	return NULL;
}

static size_t count_listed(struct store *st, const struct store_filter *f)
{
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_list(st, f, 100, NULL, &v, &n, &next), 0);
	store_message_array_free(v, n);
	free(next);
	return n;
}

static void test_pvo_memberships(void **state)
{
	struct fixture *fx = *state;
	const char *const q[] = {"Adult", "virus", NULL};
	const int64_t exp[] = {T0 + 3600000, 0};
	char id[37], stored[37] = "";
	assert_int_equal(submit_sync(fx->st, build_pvo(T0, "10.0.0.1", "o-1", q, exp, id, stored)),
			 0);
	assert_string_equal(stored, id);
	add(fx->st,
	    &(struct msg_spec){
		"s", T0 + 10, "spam", "a@b.jp", NULL, {"user@example.jp"}, "s", "spam", "gw1"},
	    NULL);

	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_string_equal(m->quarantine, STORE_PVO_MARKER);
	assert_int_equal(m->nmemberships, 2);
	assert_string_equal(m->memberships[0].quarantine, "Adult");
	assert_string_equal(m->memberships[0].type, "policy");
	assert_string_equal(m->memberships[0].reason, "reason 0");
	assert_int_equal(m->memberships[0].entered_at, T0 - 1000);
	assert_int_equal(m->memberships[0].expires_at, T0 + 3600000);
	assert_int_equal(m->memberships[0].state, STORE_MEMBER_HELD);
	assert_string_equal(m->memberships[1].quarantine, "virus");
	assert_string_equal(m->memberships[1].type, "virus");
	/* no expiry given: entered + the default delete_after */
	assert_int_equal(m->memberships[1].expires_at,
			 T0 - 1000 + STORE_PVO_DELETE_AFTER_DEFAULT_MS);
	store_message_free(m);

	/* a name a gateway's own store would type by its name is a policy one here */
	const char *const fa[] = {"File Analysis", NULL};
	char fa_id[37];
	add_pvo(fx->st, T0 + 20, "10.0.0.1", "o-fa", fa, NULL, fa_id);
	assert_int_equal(store_get(fx->st, fa_id, &m), 0);
	assert_string_equal(m->memberships[0].type, "policy");
	store_message_free(m);

	/* the unknown policy quarantine was created; counts go by membership */
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	assert_int_equal(store_quarantines(fx->st, &v, &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(stats_of(v, n, "File Analysis")->type, "policy");
	const struct store_quarantine_stats *a = stats_of(v, n, "Adult");
	assert_non_null(a);
	assert_string_equal(a->type, "policy");
	assert_false(a->system);
	assert_int_equal(a->messages, 1);
	assert_true(a->bytes > 0);
	assert_int_equal(a->oldest, T0 - 1000);
	assert_int_equal(stats_of(v, n, "virus")->messages, 1);
	assert_int_equal(stats_of(v, n, "outbreak")->messages, 0);
	assert_int_equal(stats_of(v, n, "spam")->messages, 1);
	assert_null(stats_of(v, n, STORE_PVO_MARKER));
	store_quarantine_stats_free(v, n);

	/* listings: each quarantine through its memberships; spam keeps its own */
	assert_int_equal(count_listed(fx->st, &(struct store_filter){.quarantine = "virus"}), 1);
	assert_int_equal(count_listed(fx->st, &(struct store_filter){.quarantine = "Adult"}), 1);
	assert_int_equal(count_listed(fx->st, &(struct store_filter){.quarantine = "outbreak"}), 0);
	assert_int_equal(count_listed(fx->st, &(struct store_filter){.quarantine = "spam"}), 1);
	struct store_message **lv = NULL;
	size_t ln = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &(struct store_filter){.quarantine = "virus"}, 10, NULL,
				    &lv, &ln, &next),
			 0);
	assert_int_equal(ln, 1);
	assert_int_equal(lv[0]->nmemberships, 2);
	store_message_array_free(lv, ln);
	free(next);
	/* an end user's scoping (the spam quarantine, their addresses) never shows it */
	const char *mine[] = {"user@example.jp"};
	assert_int_equal(count_listed(fx->st, &(struct store_filter){.quarantine = "spam",
								     .addresses = mine,
								     .naddresses = 1}),
			 1);
}

static void test_pvo_retry_stored_once(void **state)
{
	struct fixture *fx = *state;
	const char *const q1[] = {"virus", NULL};
	const char *const q2[] = {"virus", "Finance", NULL};
	char id1[37], id2[37], id3[37], s1[37] = "", s2[37] = "", s3[37] = "";
	assert_int_equal(submit_sync(fx->st, build_pvo(T0, "10.0.0.1", "o-7", q1, NULL, id1, s1)),
			 0);
	/* the same transfer again (a new id, as a retry gets): nothing stored twice */
	assert_int_equal(
	    submit_sync(fx->st, build_pvo(T0 + 5, "10.0.0.1", "o-7", q1, NULL, id2, s2)), 0);
	assert_string_equal(s1, id1);
	assert_string_equal(s2, id1);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id2, &m), -ENOENT);
	/* a retry naming one more quarantine adds only that membership */
	assert_int_equal(
	    submit_sync(fx->st, build_pvo(T0 + 9, "10.0.0.1", "o-7", q2, NULL, id3, s3)), 0);
	assert_string_equal(s3, id1);
	assert_int_equal(store_get(fx->st, id1, &m), 0);
	assert_int_equal(m->nmemberships, 2);
	store_message_free(m);
	/* the same origin id from another gateway is another message */
	char id4[37], s4[37] = "";
	assert_int_equal(
	    submit_sync(fx->st, build_pvo(T0 + 12, "10.0.0.2", "o-7", q1, NULL, id4, s4)), 0);
	assert_string_equal(s4, id4);
	struct store_stats stats;
	assert_int_equal(store_stats(fx->st, &stats), 0);
	assert_int_equal(stats.messages, 2);
	/*
	 * Within one group commit too: the first message's callback holds the
	 * writer until three submits of one origin are queued, so they are
	 * written together — one message, with the union of their memberships.
	 */
	struct waiter w;
	waiter_init(&w, 4);
	struct gate g = {.w = &w};
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	const char *const q3[] = {"Finance", NULL};
	char id0[37], id5[37], id6[37], id7[37], s5[37] = "", s6[37] = "", s7[37] = "";
	assert_int_equal(
	    store_submit_message(fx->st, build_pvo(T0 + 19, "10.0.0.5", "o-0", q1, NULL, id0, NULL),
				 gate_done, &g),
	    0);
	assert_int_equal(
	    store_submit_message(fx->st, build_pvo(T0 + 20, "10.0.0.3", "o-9", q1, NULL, id5, s5),
				 waiter_done, &w),
	    0);
	assert_int_equal(
	    store_submit_message(fx->st, build_pvo(T0 + 21, "10.0.0.3", "o-9", q1, NULL, id6, s6),
				 waiter_done, &w),
	    0);
	assert_int_equal(
	    store_submit_message(fx->st, build_pvo(T0 + 22, "10.0.0.3", "o-9", q3, NULL, id7, s7),
				 waiter_done, &w),
	    0);
	pthread_mutex_lock(&g.lock);
	g.open = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	waiter_wait(&w);
	pthread_mutex_destroy(&g.lock);
	pthread_cond_destroy(&g.cond);
	assert_int_equal(w.failures, 0);
	assert_string_equal(s5, id5);
	assert_string_equal(s6, id5);
	assert_string_equal(s7, id5);
	assert_int_equal(store_get(fx->st, id5, &m), 0);
	assert_int_equal(m->nmemberships, 2);
	store_message_free(m);
	assert_int_equal(store_get(fx->st, id6, &m), -ENOENT);
	assert_int_equal(store_get(fx->st, id7, &m), -ENOENT);
	assert_int_equal(store_stats(fx->st, &stats), 0);
	assert_int_equal(stats.messages, 4);
	/* spam, the marker or no name are not memberships */
	const char *const bad[][2] = {{"spam", NULL}, {STORE_PVO_MARKER, NULL}, {"", NULL}};
	for (size_t i = 0; i < 3; i++) {
		char idb[37];
		assert_int_equal(submit_sync(fx->st, build_pvo(T0 + 30 + (int64_t)i, "10.0.0.4",
							       NULL, bad[i], NULL, idb, NULL)),
				 -EINVAL);
	}
	assert_int_equal(store_stats(fx->st, &stats), 0);
	assert_int_equal(stats.messages, 4);
}

static void test_pvo_expiry(void **state)
{
	struct fixture *fx = *state;
	const char *const q[] = {"virus", "Adult", NULL};
	const int64_t exp[] = {T0 + 1000, T0 + 5000};
	char id[37], spam_id[37];
	add_pvo(fx->st, T0, "10.0.0.1", "o-1", q, exp, id);
	add_spam(fx->st, spam_id);
	uint64_t expired = 0, purged = 0;
	/* nothing due yet */
	assert_int_equal(store_expire_memberships(fx->st, T0 + 999, 1, &expired, &purged), 0);
	assert_int_equal(expired, 0);
	/* the first quarantine's expiry: the message stays, held in the other one */
	assert_int_equal(store_expire_memberships(fx->st, T0 + 2000, 1, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 0);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_int_equal(m->recipients[0].state, STORE_RCPT_QUARANTINED);
	/* by entered_at, then name: "Adult" before "virus" */
	assert_string_equal(m->memberships[1].quarantine, "virus");
	assert_int_equal(m->memberships[1].state, STORE_MEMBER_EXPIRED);
	assert_string_equal(store_membership_state_name(m->memberships[1].state), "expired");
	assert_int_equal(m->memberships[0].state, STORE_MEMBER_HELD);
	store_message_free(m);
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	assert_int_equal(store_quarantines(fx->st, &v, &n), 0);
	assert_int_equal(stats_of(v, n, "virus")->messages, 0);
	assert_int_equal(stats_of(v, n, "Adult")->messages, 1);
	store_quarantine_stats_free(v, n);
	/* the latest expiry: it leaves storage; the spam message is not touched */
	assert_int_equal(store_expire_memberships(fx->st, T0 + 6000, 100, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 1);
	assert_int_equal(store_get(fx->st, id, &m), -ENOENT);
	assert_int_equal(rcpt_state(fx->st, spam_id, "u@example.jp"), STORE_RCPT_QUARANTINED);
	/* batches smaller than the work: several transactions, all done */
	for (int i = 0; i < 5; i++) {
		char pid[37], origin[16];
		snprintf(origin, sizeof(origin), "b-%d", i);
		const int64_t e1[] = {T0 + 10000, T0 + 10000};
		add_pvo(fx->st, T0 + 100 + i, "10.0.0.1", origin, q, e1, pid);
	}
	assert_int_equal(store_expire_memberships(fx->st, T0 + 20000, 3, &expired, &purged), 0);
	assert_int_equal(expired, 10);
	assert_int_equal(purged, 5);
	struct store_stats stats;
	assert_int_equal(store_stats(fx->st, &stats), 0);
	assert_int_equal(stats.messages, 1);
	/* the purge took the memberships with their messages (no cascade on PostgreSQL) */
	if (pg_dsn != NULL)
		assert_int_equal(pg_int(fx, "SELECT count(*) FROM memberships"), 0);
}

static void test_pvo_quarantine_settings(void **state)
{
	struct fixture *fx = *state;
	const char *ops[] = {"op1", "op2", "op1"};
	struct store_quarantine_settings q = {.name = "Finance",
					      .delete_after_ms = 3600000,
					      .default_action = "release",
					      .overflow_exempt = true,
					      .operators = ops,
					      .noperators = 3};
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), 0);
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), -EEXIST);
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	assert_int_equal(store_quarantines(fx->st, &v, &n), 0);
	const struct store_quarantine_stats *f = stats_of(v, n, "Finance");
	assert_non_null(f);
	assert_string_equal(f->type, "policy");
	assert_int_equal(f->delete_after_ms, 3600000);
	assert_string_equal(f->default_action, "release");
	assert_true(f->overflow_exempt);
	assert_false(f->system);
	assert_int_equal(f->noperators, 2);
	assert_string_equal(f->operators[0], "op1");
	assert_string_equal(f->operators[1], "op2");
	assert_int_equal(stats_of(v, n, "virus")->noperators, 0);
	store_quarantine_stats_free(v, n);

	/* its delete_after makes the default expiry of a membership */
	const char *const qn[] = {"Finance", NULL};
	char id[37];
	add_pvo(fx->st, T0, "10.0.0.1", NULL, qn, NULL, id);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_int_equal(m->memberships[0].expires_at, T0 - 1000 + 3600000);
	store_message_free(m);

	/* changes: settings and operators replaced; system ones too; spam never */
	struct store_quarantine_settings u = {.name = "Finance", .default_action = "delete"};
	assert_int_equal(store_quarantine_put(fx->st, &u, false, T0), 0);
	u.name = "virus";
	u.delete_after_ms = 86400000;
	assert_int_equal(store_quarantine_put(fx->st, &u, false, T0), 0);
	u.name = "spam";
	assert_int_equal(store_quarantine_put(fx->st, &u, false, T0), -EPERM);
	u.name = "nope";
	assert_int_equal(store_quarantine_put(fx->st, &u, false, T0), -ENOENT);
	u.default_action = "keep";
	assert_int_equal(store_quarantine_put(fx->st, &u, true, T0), -EINVAL);
	assert_int_equal(store_quarantines(fx->st, &v, &n), 0);
	f = stats_of(v, n, "Finance");
	assert_int_equal(f->delete_after_ms, 0);
	assert_string_equal(f->default_action, "delete");
	assert_false(f->overflow_exempt);
	assert_int_equal(f->noperators, 0);
	assert_int_equal(stats_of(v, n, "virus")->delete_after_ms, 86400000);
	assert_null(stats_of(v, n, "nope"));
	store_quarantine_stats_free(v, n);

	/* deletion: policy only, never while a message is held in it */
	assert_int_equal(store_quarantine_delete(fx->st, "Finance"), -EBUSY);
	assert_int_equal(store_quarantine_delete(fx->st, "virus"), -EPERM);
	assert_int_equal(store_quarantine_delete(fx->st, "spam"), -EPERM);
	assert_int_equal(store_quarantine_delete(fx->st, "nope"), -ENOENT);
	q.name = "Empty";
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), 0);
	assert_int_equal(store_quarantine_delete(fx->st, "Empty"), 0);
	assert_int_equal(store_quarantine_delete(fx->st, "Empty"), -ENOENT);
	/* once its message has left it, Finance can go */
	uint64_t e = 0;
	assert_int_equal(store_expire_memberships(fx->st, T0 + 3600000, 10, &e, NULL), 0);
	assert_int_equal(e, 1);
	assert_int_equal(store_quarantine_delete(fx->st, "Finance"), 0);
	assert_int_equal(store_quarantines(fx->st, &v, &n), 0);
	assert_int_equal(n, 4);
	store_quarantine_stats_free(v, n);
}

/* Every id of f's listing, page by page (limit 2), newest first, into ids. */
static size_t list_pages(struct store *st, const struct store_filter *f, char ids[][37], size_t max)
{
	size_t total = 0;
	char *cursor = NULL;
	do {
		struct store_message **v = NULL;
		size_t n = 0;
		char *next = NULL;
		assert_int_equal(store_list(st, f, 2, cursor, &v, &n, &next), 0);
		assert_true(n <= 2);
		/* a next page only after a full one */
		if (next != NULL)
			assert_int_equal(n, 2);
		for (size_t i = 0; i < n; i++) {
			assert_true(total < max);
			memcpy(ids[total++], v[i]->id, 37);
		}
		store_message_array_free(v, n);
		free(cursor);
		cursor = next;
	} while (cursor != NULL);
	return total;
}

static void assert_ids(char got[][37], size_t n, const char *const *want)
{
	size_t k = 0;
	while (want[k] != NULL)
		k++;
	assert_int_equal(n, k);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(got[i], want[i]);
}

static void test_pvo_operator_scope(void **state)
{
	struct fixture *fx = *state;
	const char *alpha_ops[] = {"opa"};
	const char *gamma_ops[] = {"opb", "opa"};
	struct store_quarantine_settings q = {
	    .name = "Alpha", .default_action = "release", .operators = alpha_ops, .noperators = 1};
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), 0);
	q.name = "Beta";
	q.operators = NULL;
	q.noperators = 0;
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), 0);
	q.name = "Gamma";
	q.operators = gamma_ops;
	q.noperators = 2;
	assert_int_equal(store_quarantine_put(fx->st, &q, true, T0), 0);

	char **names = NULL;
	size_t nn = 0;
	assert_int_equal(store_operator_quarantines(fx->st, "opa", &names, &nn), 0);
	assert_int_equal(nn, 2);
	assert_string_equal(names[0], "Alpha");
	assert_string_equal(names[1], "Gamma");
	store_string_array_free(names, nn);
	assert_int_equal(store_operator_quarantines(fx->st, "nobody", &names, &nn), 0);
	assert_int_equal(nn, 0);
	assert_null(names);

	/* newest first: s2, ab, b1, s1, a1, g1 */
	const char *const qa[] = {"Alpha", NULL}, *const qb[] = {"Beta", NULL};
	const char *const qab[] = {"Beta", "Alpha", NULL}, *const qg[] = {"Gamma", NULL};
	char g1[37], a1[37], s1[37], b1[37], ab[37], s2[37];
	add_pvo(fx->st, T0, "10.0.0.1", "g1", qg, NULL, g1);
	add_pvo(fx->st, T0 + 10, "10.0.0.1", "a1", qa, NULL, a1);
	add(fx->st,
	    &(struct msg_spec){
		"s1", T0 + 20, "spam", "a@b.jp", NULL, {"user@example.jp"}, "s", "spam", "gw1"},
	    s1);
	add_pvo(fx->st, T0 + 30, "10.0.0.1", "b1", qb, NULL, b1);
	add_pvo(fx->st, T0 + 40, "10.0.0.1", "ab", qab, NULL, ab);
	add(fx->st,
	    &(struct msg_spec){
		"s2", T0 + 50, "spam", "a@b.jp", NULL, {"user@example.jp"}, "s", "spam", "gw1"},
	    s2);

	char got[16][37];
	size_t n;
	/* no scoping: everything */
	n = list_pages(fx->st, &(struct store_filter){0}, got, 16);
	assert_ids(got, n, (const char *const[]){s2, ab, b1, s1, a1, g1, NULL});
	/* Alpha: its messages (also the one in Beta too) and the spam quarantine's */
	const char *alpha[] = {"Alpha"};
	struct store_filter f = {
	    .scope_pvo = true, .pvo_quarantines = alpha, .npvo_quarantines = 1};
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, ab, s1, a1, NULL});
	/* by recipient (PostgreSQL's own form of listing), the same */
	f.recipient = "USER@example.jp";
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, ab, s1, a1, NULL});
	f.recipient = NULL;
	/* a quarantine asked for: only within the scope */
	f.quarantine = "Beta";
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){ab, NULL});
	f.quarantine = "Gamma";
	n = list_pages(fx->st, &f, got, 16);
	assert_int_equal(n, 0);
	f.quarantine = "spam";
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, s1, NULL});
	f.quarantine = NULL;
	/* two quarantines */
	const char *two[] = {"Gamma", "Beta"};
	f.pvo_quarantines = two;
	f.npvo_quarantines = 2;
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, ab, b1, s1, g1, NULL});
	/* none: no PVO message at all */
	f.pvo_quarantines = NULL;
	f.npvo_quarantines = 0;
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, s1, NULL});
	f.recipient = "user@example.jp";
	n = list_pages(fx->st, &f, got, 16);
	assert_ids(got, n, (const char *const[]){s2, s1, NULL});
	f.recipient = NULL;

	/* out of bounds */
	struct store_message **v = NULL;
	char *next = NULL;
	f.npvo_quarantines = 1;
	assert_int_equal(store_list(fx->st, &f, 10, NULL, &v, &n, &next), -EINVAL);
	f.pvo_quarantines = alpha;
	f.npvo_quarantines = STORE_OPERATOR_MAX_QUARANTINES + 1;
	assert_int_equal(store_list(fx->st, &f, 10, NULL, &v, &n, &next), -EINVAL);

	/* bulk actions honour it too: b1 is out of Alpha's scope, s1 in it */
	const char *ids[] = {b1, s1};
	f = (struct store_filter){.ids = ids,
				  .nids = 2,
				  .scope_pvo = true,
				  .pvo_quarantines = alpha,
				  .npvo_quarantines = 1,
				  .exclude_pvo = true};
	int changed = -1;
	assert_int_equal(store_delete_matching(fx->st, &f, T0 + 100, &changed), 0);
	assert_int_equal(changed, 1);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, b1, &m), 0);
	assert_int_equal(m->recipients[0].state, STORE_RCPT_QUARANTINED);
	assert_int_equal(m->nmemberships, 1);
	assert_int_equal(m->memberships[0].state, STORE_MEMBER_HELD);
	store_message_free(m);
	assert_int_equal(store_get(fx->st, s1, &m), 0);
	assert_int_equal(m->recipients[0].state, STORE_RCPT_DELETED);
	store_message_free(m);
}

/* --- PVO actions (PV9) ---------------------------------------------------- */

static uint64_t pending(struct store *st)
{
	uint64_t n = 0;
	assert_int_equal(store_delivery_pending(st, &n), 0);
	return n;
}

static const struct store_membership *membership_of(const struct store_message *m, const char *q)
{
	for (size_t i = 0; i < m->nmemberships; i++) {
		if (strcmp(m->memberships[i].quarantine, q) == 0)
			return &m->memberships[i];
	}
	return NULL;
}

static void register_gw(struct store *st, const char *name, const char *address)
{
	char hash[80];
	snprintf(hash, sizeof(hash), "hash-%s", name);
	struct store_gateway g = {.name = (char *)(uintptr_t)name,
				  .address = (char *)(uintptr_t)address,
				  .release_port = 2525,
				  .token_hash = hash,
				  .created_at = T0};
	assert_int_equal(store_gateway_add(st, &g), 0);
}

/*
 * Released from one of two quarantines: nothing sent; from the other: one
 * delivery, routed to the gateway that sent it, rescanned for outbreak; a
 * second click and the bad requests change nothing.
 */
static void test_pvo_release_from_all(void **state)
{
	struct fixture *fx = *state;
	register_gw(fx->st, "gw-a", "10.0.0.1");
	const char *const q[] = {"Adult", "outbreak", NULL};
	char id[37], spam_id[37], other[37];
	add_pvo(fx->st, T0, "10.0.0.1", "o-1", q, NULL, id);
	add_spam(fx->st, spam_id);
	struct store_pvo_outcome out;
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "Adult"};
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 10, &out), 0);
	assert_false(out.queued);
	assert_int_equal(out.was, STORE_MEMBER_HELD);
	assert_int_equal(pending(fx->st), 0);
	assert_int_equal(rcpt_state(fx->st, id, "user@example.jp"), STORE_RCPT_QUARANTINED);
	/* the second click: nothing changes, and it says why */
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 11, &out), -EALREADY);
	assert_int_equal(out.was, STORE_MEMBER_RELEASED);
	/* not in that quarantine; no such quarantine; no such message; a spam message */
	r.quarantine = "virus";
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 11, &out), -ENXIO);
	r.quarantine = "Nope";
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 11, &out), -ENODEV);
	r.quarantine = "Adult";
	ids_uuidv7(T0, other);
	assert_int_equal(store_pvo_act(fx->st, other, &r, T0 + 11, &out), -ENOENT);
	assert_int_equal(store_pvo_act(fx->st, spam_id, &r, T0 + 11, &out), -ENOENT);
	assert_int_equal(store_pvo_act(fx->st, "not-an-id", &r, T0 + 11, &out), -ENOENT);
	r.quarantine = "";
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 11, &out), -EINVAL);
	assert_int_equal(pending(fx->st), 0);

	/* the last one: delivered once, back through gw-a, rescanned (outbreak) */
	r.quarantine = "outbreak";
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 20, &out), 0);
	assert_true(out.queued);
	assert_int_equal(pending(fx->st), 1);
	assert_int_equal(rcpt_state(fx->st, id, "user@example.jp"), STORE_RCPT_RELEASING);
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 21, &out), -EALREADY);
	assert_int_equal(pending(fx->st), 1);
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 30, 60000, &d), 0);
	assert_string_equal(d->msg_id, id);
	assert_non_null(d->gateway);
	assert_string_equal(d->gateway, "gw-a");
	assert_true(d->rescan);
	assert_false(d->copy);
	assert_int_equal(d->nrcpts, 1);
	assert_string_equal(d->rcpts[0], "user@example.jp");
	struct store_delivery_result res = {"user@example.jp", STORE_DELIVERY_DELIVERED, "250 ok"};
	assert_int_equal(store_delivery_finish(fx->st, d, &res, 1, T0 + 31, 0), 0);
	store_delivery_free(d);
	assert_int_equal(rcpt_state(fx->st, id, "user@example.jp"), STORE_RCPT_RELEASED);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_int_equal(membership_of(m, "Adult")->state, STORE_MEMBER_RELEASED);
	assert_int_equal(membership_of(m, "outbreak")->state, STORE_MEMBER_RELEASED);
	store_message_free(m);
	/* the spam message is untouched; a spam release still has no route */
	assert_int_equal(rcpt_state(fx->st, spam_id, "u@example.jp"), STORE_RCPT_QUARANTINED);
	assert_int_equal(store_release(fx->st, spam_id, NULL, 0, T0 + 40, NULL), 0);
	assert_int_equal(store_delivery_claim(fx->st, T0 + 40, 60000, &d), 0);
	assert_null(d->gateway);
	assert_false(d->rescan);
	store_delivery_free(d);
}

/* Deleted from any = never delivered; expired counts as not held. */
static void test_pvo_delete_and_expired(void **state)
{
	struct fixture *fx = *state;
	const char *const q[] = {"Adult", "virus", NULL};
	char a[37], b[37];
	add_pvo(fx->st, T0, "10.0.0.9", "o-1", q, NULL, a);
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "virus"};
	assert_int_equal(store_pvo_act(fx->st, a, &r, T0 + 10, NULL), 0);
	r.action = STORE_PVO_DELETE;
	r.quarantine = "Adult";
	assert_int_equal(store_pvo_act(fx->st, a, &r, T0 + 20, NULL), 0);
	assert_int_equal(pending(fx->st), 0);
	assert_int_equal(rcpt_state(fx->st, a, "user@example.jp"), STORE_RCPT_DELETED);
	uint64_t purged = 0;
	assert_int_equal(store_purge(fx->st, 100, &purged), 0);
	assert_int_equal(purged, 1);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, a, &m), -ENOENT);

	/* deleted from one quarantine, it is in none: the other membership is deleted too */
	char c[37];
	add_pvo(fx->st, T0, "10.0.0.9", "o-3", q, NULL, c);
	r.action = STORE_PVO_DELETE;
	r.quarantine = "Adult";
	assert_int_equal(store_pvo_act(fx->st, c, &r, T0 + 30, NULL), 0);
	assert_int_equal(store_get(fx->st, c, &m), 0);
	assert_int_equal(membership_of(m, "virus")->state, STORE_MEMBER_DELETED);
	store_message_free(m);
	r.action = STORE_PVO_RELEASE;
	r.quarantine = "virus";
	struct store_pvo_outcome was;
	assert_int_equal(store_pvo_act(fx->st, c, &r, T0 + 31, &was), -EALREADY);
	assert_int_equal(was.was, STORE_MEMBER_DELETED);
	assert_int_equal(pending(fx->st), 0);
	r.quarantine = "Adult";

	/* one membership expired, the other released: delivered; no registered gateway
	 * at its address: the route is "" (the alternate release gateway) */
	const int64_t exp[] = {T0 + 1000, T0 + 900000};
	add_pvo(fx->st, T0, "10.0.0.9", "o-2", q, exp, b);
	uint64_t expired = 0;
	assert_int_equal(store_expire_memberships(fx->st, T0 + 2000, 10, &expired, NULL), 0);
	assert_int_equal(expired, 1);
	r.action = STORE_PVO_DELETE; /* an expired membership is not held any more */
	struct store_pvo_outcome out;
	assert_int_equal(store_pvo_act(fx->st, b, &r, T0 + 2001, &out), -EALREADY);
	assert_int_equal(out.was, STORE_MEMBER_EXPIRED);
	r.action = STORE_PVO_RELEASE;
	r.quarantine = "virus";
	assert_int_equal(store_pvo_act(fx->st, b, &r, T0 + 2002, &out), 0);
	assert_true(out.queued);
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 3000, 60000, &d), 0);
	assert_string_equal(d->msg_id, b);
	assert_string_equal(d->gateway, "");
	assert_false(d->rescan);
	store_delivery_free(d);
}

/* The state of message id's membership in quarantine q. */
static enum store_membership_state member_state(struct store *st, const char *id, const char *q)
{
	struct store_message *m = NULL;
	assert_int_equal(store_get(st, id, &m), 0);
	const struct store_membership *w = membership_of(m, q);
	assert_non_null(w);
	enum store_membership_state v = w->state;
	store_message_free(m);
	return v;
}

/*
 * The capacity sweep: nothing within the limit; over it, the oldest held
 * memberships of non-exempt quarantines get their default action, a batch at a
 * time and no more than the limit needs, each audited; exempt ones stay, and a
 * delete takes the message out of its exempt quarantine too.
 */
/*
 * PV10: on overflow the Outbreak quarantine's messages closest to expiry go
 * first. The quarantine keeps its place in the batch by age (its oldest held
 * membership against the others'), and which of its messages fills that place is
 * the one that expires first.
 */
static void test_pvo_overflow_outbreak_by_expiry(void **state)
{
	struct fixture *fx = *state;
	struct store_quarantine_settings ob = {.name = "outbreak", .default_action = "release"};
	assert_int_equal(store_quarantine_put(fx->st, &ob, false, T0), 0);
	const char *const qo[] = {"outbreak", NULL}, *const qa[] = {"Adult", NULL};
	const int64_t late[] = {T0 + 900000}, soon[] = {T0 + 500000};
	char o1[37], o2[37], a1[37];
	add_pvo(fx->st, T0 + 1, "10.0.0.1", "o-1", qo, late, o1);
	add_pvo(fx->st, T0 + 2, "10.0.0.1", "o-2", qo, soon, o2);
	add_pvo(fx->st, T0 + 3, "10.0.0.1", "o-3", qa, NULL, a1);
	struct store_pvo_overflow o;
	/* the outbreak message that expires first, though it is the younger one */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 1, T0 + 10, &o), 0);
	assert_int_equal(o.released, 1);
	assert_int_equal(o.deleted, 0);
	assert_int_equal(member_state(fx->st, o2, "outbreak"), STORE_MEMBER_RELEASED);
	assert_int_equal(member_state(fx->st, o1, "outbreak"), STORE_MEMBER_HELD);
	assert_int_equal(pending(fx->st), 1);
	/* then the other one: the Outbreak quarantine still holds the oldest membership */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 1, T0 + 11, &o), 0);
	assert_int_equal(o.released, 1);
	assert_int_equal(member_state(fx->st, o1, "outbreak"), STORE_MEMBER_RELEASED);
	assert_int_equal(member_state(fx->st, a1, "Adult"), STORE_MEMBER_HELD);
	/* then the policy one */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 10, T0 + 12, &o), 0);
	assert_int_equal(o.deleted, 1);
	assert_int_equal(member_state(fx->st, a1, "Adult"), STORE_MEMBER_DELETED);
}

/* An Outbreak membership's rescan, and when it became one (0: never). */
static enum store_rescan_state member_rescan(struct store *st, const char *id, const char *q,
					     int64_t *at)
{
	struct store_message *m = NULL;
	assert_int_equal(store_get(st, id, &m), 0);
	const struct store_membership *w = membership_of(m, q);
	assert_non_null(w);
	enum store_rescan_state v = w->rescan;
	*at = w->rescanned_at;
	store_message_free(m);
	return v;
}

/*
 * An admin's release without a rescan: the delivery it queues is not marked
 * rescan, the membership's rescan stays as it was; released by policy first,
 * then outbreak without a rescan (the release that queues it decides).
 */
static void test_pvo_release_without_rescan(void **state)
{
	struct fixture *fx = *state;
	register_gw(fx->st, "gw-a", "10.0.0.1");
	const char *const q[] = {"Adult", "outbreak", NULL};
	char id[37];
	add_pvo(fx->st, T0, "10.0.0.1", "o-1", q, NULL, id);
	struct store_pvo_outcome out;
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "Adult"};
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 10, &out), 0);
	assert_false(out.queued);
	r.quarantine = "outbreak";
	r.no_rescan = true;
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 20, &out), 0);
	assert_true(out.queued);
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, T0 + 30, 60000, &d), 0);
	assert_string_equal(d->msg_id, id);
	assert_string_equal(d->gateway, "gw-a");
	assert_false(d->rescan);
	store_delivery_free(d);
	int64_t at = -1;
	assert_int_equal(member_rescan(fx->st, id, "outbreak", &at), STORE_RESCAN_NONE);
	assert_int_equal(at, 0);
}

/*
 * A new outbreak rules version of a gateway makes the memberships held in the
 * outbreak quarantine of its messages rescan pending, in the same transaction;
 * the other gateways' messages, other quarantines and memberships no longer held
 * stay as they were.
 */
static void test_pvo_outbreak_rescan_pending(void **state)
{
	struct fixture *fx = *state;
	struct store_gateway g = {
	    .name = "gw1", .address = "192.0.2.1", .token_hash = "h1", .created_at = 1};
	assert_int_equal(store_gateway_add(fx->st, &g), 0);
	const char *const qo[] = {"outbreak", NULL}, *const qoa[] = {"outbreak", "Adult", NULL};
	char mine[37], both[37], done[37], other[37];
	add_pvo(fx->st, T0 + 1, "gw1", "o-1", qo, NULL, mine);
	add_pvo(fx->st, T0 + 2, "gw1", "o-2", qoa, NULL, both);
	add_pvo(fx->st, T0 + 3, "gw1", "o-3", qo, NULL, done);
	add_pvo(fx->st, T0 + 4, "gw2", "o-4", qo, NULL, other);
	struct store_pvo_request r = {.action = STORE_PVO_DELETE, .quarantine = "outbreak"};
	assert_int_equal(store_pvo_act(fx->st, done, &r, T0 + 5, NULL), 0);
	int64_t at = -1;
	assert_int_equal(member_rescan(fx->st, mine, "outbreak", &at), STORE_RESCAN_NONE);
	assert_int_equal(at, 0);
	assert_string_equal(store_rescan_state_name(STORE_RESCAN_NONE), "none");

	bool changed = true;
	/* the first version said is only recorded: nothing to rescan */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "1", T0 + 10, &changed), 0);
	assert_false(changed);
	assert_int_equal(member_rescan(fx->st, mine, "outbreak", &at), STORE_RESCAN_NONE);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2", T0 + 20, &changed), 0);
	assert_true(changed);
	assert_int_equal(member_rescan(fx->st, mine, "outbreak", &at), STORE_RESCAN_PENDING);
	assert_int_equal(at, T0 + 20);
	assert_string_equal(store_rescan_state_name(STORE_RESCAN_PENDING), "pending");
	assert_int_equal(member_rescan(fx->st, both, "outbreak", &at), STORE_RESCAN_PENDING);
	assert_int_equal(member_rescan(fx->st, both, "Adult", &at), STORE_RESCAN_NONE);
	assert_int_equal(at, 0);
	assert_int_equal(member_rescan(fx->st, done, "outbreak", &at), STORE_RESCAN_NONE);
	assert_int_equal(member_rescan(fx->st, other, "outbreak", &at), STORE_RESCAN_NONE);
	/* the same version again changes nothing, not even the time */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2", T0 + 30, &changed), 0);
	assert_false(changed);
	assert_int_equal(member_rescan(fx->st, mine, "outbreak", &at), STORE_RESCAN_PENDING);
	assert_int_equal(at, T0 + 20);
}

/* The stored migration of gateway name (store_gateway_get). */
static struct store_migration migration_of(struct store *st, const char *name, char **mapping)
{
	struct store_gateway *g = NULL;
	assert_int_equal(store_gateway_get(st, name, &g), 0);
	struct store_migration m = g->migration;
	if (mapping != NULL)
		*mapping = g->mapping != NULL ? strdup(g->mapping) : NULL;
	store_gateway_free(g);
	return m;
}

/*
 * A gateway's mapping and migration progress: reports of an older run change
 * nothing, the first "done" of a run is seen once, the mapping cannot change
 * while a run is going, and one gateway's report leaves the others alone.
 */
static void test_gateway_migration(void **state)
{
	struct fixture *fx = *state;
	struct store_gateway g1 = {
	    .name = "gw1", .address = "192.0.2.1", .token_hash = "h1", .created_at = 1};
	struct store_gateway g2 = {
	    .name = "gw2", .address = "192.0.2.2", .token_hash = "h2", .created_at = 1};
	assert_int_equal(store_gateway_add(fx->st, &g1), 0);
	assert_int_equal(store_gateway_add(fx->st, &g2), 0);
	char *mapping = NULL;
	struct store_migration m = migration_of(fx->st, "gw1", &mapping);
	assert_int_equal(m.state, STORE_MIGRATION_NONE);
	assert_null(mapping);

	struct store_migration busy = {0};
	assert_int_equal(store_gateway_set_mapping(fx->st, "GW1", "{\"A\":\"B\"}", &busy), 0);
	migration_of(fx->st, "gw1", &mapping);
	assert_string_equal(mapping, "{\"A\":\"B\"}");
	free(mapping);
	assert_int_equal(store_gateway_set_mapping(fx->st, "nosuch", NULL, &busy), -ENOENT);
	assert_int_equal(store_gateway_set_mapping(fx->st, "gw1", "[]", &busy), -EINVAL);

	struct store_migration r = {
	    .state = STORE_MIGRATION_RUNNING, .run = T0, .total = 10, .done = 4, .failed = 1};
	struct store_migration out;
	bool first = true;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &r, NULL, T0 + 1, &out, &first), 0);
	assert_false(first);
	assert_int_equal(out.state, STORE_MIGRATION_RUNNING);
	assert_int_equal(out.done, 4);
	m = migration_of(fx->st, "gw1", NULL);
	assert_int_equal(m.run, T0);
	assert_int_equal(m.total, 10);
	assert_int_equal(m.failed, 1);
	assert_int_equal(m.finished_at, 0);
	assert_int_equal(migration_of(fx->st, "gw2", NULL).state, STORE_MIGRATION_NONE);

	/* running: the mapping stays; the other gateway's may change */
	assert_int_equal(store_gateway_set_mapping(fx->st, "gw1", NULL, &busy), -EBUSY);
	assert_int_equal(busy.done, 4);
	assert_int_equal(busy.total, 10);
	migration_of(fx->st, "gw1", &mapping);
	assert_string_equal(mapping, "{\"A\":\"B\"}");
	free(mapping);
	assert_int_equal(store_gateway_set_mapping(fx->st, "gw2", "{}", NULL), 0);

	/* bad reports */
	struct store_migration bad = r;
	bad.done = 10;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &bad, NULL, T0, &out, &first), -EINVAL);
	bad = r;
	bad.run = 0;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &bad, NULL, T0, &out, &first), -EINVAL);
	bad = r;
	bad.state = STORE_MIGRATION_NONE;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &bad, NULL, T0, &out, &first), -EINVAL);
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "nosuch", &r, NULL, T0, &out, &first), -ENOENT);

	/* an older run is ignored */
	struct store_migration old = r;
	old.run = T0 - 1000;
	old.state = STORE_MIGRATION_DONE;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &old, NULL, T0 + 2, &out, &first), 0);
	assert_false(first);
	assert_int_equal(out.state, STORE_MIGRATION_RUNNING);
	assert_int_equal(out.run, T0);

	/* done: first once, then never again for that run */
	struct store_migration done = r;
	done.state = STORE_MIGRATION_DONE;
	done.done = 9;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &done, NULL, T0 + 3, &out, &first), 0);
	assert_true(first);
	assert_int_equal(out.finished_at, T0 + 3);
	assert_int_equal(out.notified_at, T0 + 3);
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &done, NULL, T0 + 4, &out, &first), 0);
	assert_false(first);
	assert_int_equal(out.finished_at, T0 + 3);
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &r, NULL, T0 + 5, &out, &first), 0);
	assert_false(first);
	m = migration_of(fx->st, "gw1", NULL);
	assert_int_equal(m.state, STORE_MIGRATION_DONE);
	assert_int_equal(m.done, 9);
	assert_int_equal(m.finished_at, T0 + 3);
	assert_int_equal(store_gateway_set_mapping(fx->st, "gw1", NULL, &busy), 0);

	/* a newer run starts afresh */
	struct store_migration next = r;
	next.run = T0 + 100;
	next.done = 0;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &next, NULL, T0 + 101, &out, &first), 0);
	assert_false(first);
	m = migration_of(fx->st, "gw1", &mapping);
	assert_null(mapping);
	assert_int_equal(m.state, STORE_MIGRATION_RUNNING);
	assert_int_equal(m.run, T0 + 100);
	assert_int_equal(m.finished_at, 0);
	assert_int_equal(m.notified_at, 0);
	/* the list reads it too */
	struct store_gateway **v = NULL;
	size_t n = 0;
	assert_int_equal(store_gateway_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0]->migration.run, T0 + 100);
	assert_string_equal(v[1]->mapping, "{}");
	store_gateway_array_free(v, n);
}

/* The notice of gw's last run as the registry reads it (to NULL: none); clear it. */
static struct store_migration_notice notice_of(struct store *st, const char *name)
{
	struct store_gateway *g = NULL;
	assert_int_equal(store_gateway_get(st, name, &g), 0);
	struct store_migration_notice n = g->notice;
	memset(&g->notice, 0, sizeof(g->notice));
	store_gateway_free(g);
	return n;
}

/*
 * A run's "done" mail: recorded with the first "done" (once per run), due at
 * once; claimed by one caller of two; deferred, then settled; a newer run's
 * notice replaces the settled one; a bad address or a long reply.
 */
static void test_migration_notice(void **state)
{
	struct fixture *fx = *state;
	struct store_gateway g1 = {
	    .name = "gw1", .address = "192.0.2.1", .token_hash = "h1", .created_at = 1};
	assert_int_equal(store_gateway_add(fx->st, &g1), 0);
	struct store_migration done = {
	    .state = STORE_MIGRATION_DONE, .run = T0 - 5000, .total = 10, .done = 9, .failed = 1};
	struct store_migration out;
	bool first = false;
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &done, "a b@x.test", T0, &out, &first),
	    -EINVAL);
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "gw1", &done, "a@x.test\r\n", T0, &out, &first),
	    -EINVAL);
	struct store_migration_notice n = notice_of(fx->st, "gw1");
	assert_null(n.to);
	assert_int_equal(
	    store_gateway_migration_report(fx->st, "GW1", &done, "ops@x.test", T0, &out, &first),
	    0);
	assert_true(first);
	/* the gateway's retry, with another address: nothing more */
	assert_int_equal(store_gateway_migration_report(fx->st, "gw1", &done, "other@x.test",
							T0 + 1000, &out, &first),
			 0);
	assert_false(first);
	n = notice_of(fx->st, "gw1");
	assert_string_equal(n.to, "ops@x.test");
	assert_int_equal(n.next, T0 / 1000);
	assert_int_equal(n.tries, 0);
	assert_false(n.sent);
	assert_null(n.reply);
	store_migration_notice_clear(&n);

	struct store_migration_notice *v = NULL;
	size_t k = 0;
	assert_int_equal(store_migration_notice_due(fx->st, T0 / 1000 - 1, 10, &v, &k), 0);
	assert_int_equal(k, 0);
	store_migration_notice_array_free(v, k);
	assert_int_equal(store_migration_notice_due(fx->st, T0 / 1000, 10, &v, &k), 0);
	assert_int_equal(k, 1);
	assert_string_equal(v[0].gateway, "gw1");
	assert_string_equal(v[0].to, "ops@x.test");
	assert_int_equal(v[0].m.run, T0 - 5000);
	assert_int_equal(v[0].m.total, 10);
	assert_int_equal(v[0].m.done, 9);
	assert_int_equal(v[0].m.failed, 1);
	assert_int_equal(v[0].m.finished_at, T0);
	int64_t id = v[0].id, due = v[0].next;
	store_migration_notice_array_free(v, k);

	/* two claims of one due notice: one wins */
	int64_t lease = T0 / 1000 + 600;
	assert_int_equal(store_migration_notice_set(fx->st, id, due, 0, lease, false, 0, NULL), 0);
	assert_int_equal(store_migration_notice_set(fx->st, id, due, 0, lease + 1, false, 0, NULL),
			 -EALREADY);
	assert_int_equal(store_migration_notice_set(fx->st, id + 1000, due, 0, 1, false, 0, NULL),
			 -ENOENT);
	assert_int_equal(store_migration_notice_due(fx->st, T0 / 1000 + 10, 10, &v, &k), 0);
	assert_int_equal(k, 0); /* claimed: not due before the claim ends */
	store_migration_notice_array_free(v, k);

	/* deferred, with the relay's reply (cut to STORE_NOTICE_REPLY_MAX) */
	char longer[STORE_NOTICE_REPLY_MAX + 40];
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	memcpy(longer, "451 4.3.0 ", 10);
	assert_int_equal(store_migration_notice_set(fx->st, id, lease, 1, T0 / 1000 + 60, false,
						    T0 / 1000, longer),
			 0);
	n = notice_of(fx->st, "gw1");
	assert_int_equal(n.tries, 1);
	assert_int_equal(n.next, T0 / 1000 + 60);
	assert_int_equal(n.last_try, T0 / 1000);
	assert_int_equal(strlen(n.reply), STORE_NOTICE_REPLY_MAX);
	assert_memory_equal(n.reply, "451 4.3.0 xxx", 13);
	store_migration_notice_clear(&n);
	assert_int_equal(store_migration_notice_due(fx->st, T0 / 1000 + 60, 10, &v, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(v[0].tries, 1);
	store_migration_notice_array_free(v, k);

	/* sent: settled, never due again */
	assert_int_equal(store_migration_notice_set(fx->st, id, T0 / 1000 + 60, 2, 0, true,
						    T0 / 1000 + 61, NULL),
			 0);
	n = notice_of(fx->st, "gw1");
	assert_true(n.sent);
	assert_int_equal(n.next, 0);
	assert_int_equal(n.tries, 2);
	assert_null(n.reply);
	store_migration_notice_clear(&n);
	assert_int_equal(store_migration_notice_due(fx->st, T0, 10, &v, &k), 0);
	assert_int_equal(k, 0);
	store_migration_notice_array_free(v, k);

	/* a newer run: running has no notice; its "done" has its own */
	struct store_migration next = done;
	next.run = T0 + 100000;
	next.state = STORE_MIGRATION_RUNNING;
	assert_int_equal(store_gateway_migration_report(fx->st, "gw1", &next, "ops@x.test",
							T0 + 200000, &out, &first),
			 0);
	n = notice_of(fx->st, "gw1");
	assert_null(n.to);
	next.state = STORE_MIGRATION_DONE;
	assert_int_equal(store_gateway_migration_report(fx->st, "gw1", &next, "ops2@x.test",
							T0 + 300000, &out, &first),
			 0);
	assert_true(first);
	n = notice_of(fx->st, "gw1");
	assert_string_equal(n.to, "ops2@x.test");
	assert_true(n.id != id);
	store_migration_notice_clear(&n);
	/* the older run's settled notice went; the new one is the only one due */
	assert_int_equal(store_migration_notice_due(fx->st, T0, 10, &v, &k), 0);
	assert_int_equal(k, 1);
	assert_string_equal(v[0].to, "ops2@x.test");
	store_migration_notice_array_free(v, k);
	/* the list reads it too */
	struct store_gateway **list = NULL;
	assert_int_equal(store_gateway_list(fx->st, &list, &k), 0);
	assert_int_equal(k, 1);
	assert_string_equal(list[0]->notice.to, "ops2@x.test");
	assert_int_equal(list[0]->notice.next, (T0 + 300000) / 1000);
	store_gateway_array_free(list, k);
}

/*
 * The gateway's verdicts on a rescan, recorded with the recipients' outcome:
 * kept holds the message again (expiry unchanged, the rule noted), clean
 * releases it; the gateway's last rescan counts them.
 */
static void test_pvo_outbreak_rescan_verdicts(void **state)
{
	struct fixture *fx = *state;
	struct store_gateway g = {
	    .name = "gw1", .address = "192.0.2.1", .token_hash = "h1", .created_at = 1};
	assert_int_equal(store_gateway_add(fx->st, &g), 0);
	const char *const qo[] = {"outbreak", NULL};
	const int64_t expires[] = {T0 + 999999};
	char kept[37], clean[37];
	add_pvo(fx->st, T0 + 1, "gw1", "o-1", qo, expires, kept);
	add_pvo(fx->st, T0 + 2, "gw1", "o-2", qo, expires, clean);
	bool changed = false;
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "1", T0 + 10, &changed), 0);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2", T0 + 20, &changed), 0);
	assert_true(changed);
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "outbreak"};
	assert_int_equal(store_pvo_act(fx->st, kept, &r, T0 + 21, NULL), 0);
	assert_int_equal(store_pvo_act(fx->st, clean, &r, T0 + 21, NULL), 0);
	assert_int_equal(pending(fx->st), 2);
	for (int k = 0; k < 2; k++) {
		struct store_delivery *d = NULL;
		assert_int_equal(store_delivery_claim(fx->st, T0 + 30, 60000, &d), 0);
		assert_true(d->rescan);
		bool is_kept = strcmp(d->msg_id, kept) == 0;
		struct store_delivery_result res = {"user@example.jp", STORE_DELIVERY_DELIVERED,
						    "250 2.0.0 Ok: j rescan=..."};
		struct store_rescan_verdict v = {STORE_RESCAN_PENDING, NULL};
		assert_int_equal(store_delivery_confirm_rescan(fx->st, d, &res, 1, T0 + 40, &v),
				 -EINVAL);
		v.state = is_kept ? STORE_RESCAN_KEPT : STORE_RESCAN_CLEAN;
		v.rule = is_kept ? "wave_1" : NULL;
		assert_int_equal(store_delivery_confirm_rescan(fx->st, d, &res, 1, T0 + 40 + k, &v),
				 0);
		store_delivery_free(d);
	}
	assert_int_equal(pending(fx->st), 0);
	int64_t at = 0;
	assert_int_equal(member_rescan(fx->st, kept, "outbreak", &at), STORE_RESCAN_KEPT);
	assert_true(at == T0 + 40 || at == T0 + 41);
	assert_string_equal(store_rescan_state_name(STORE_RESCAN_KEPT), "kept");
	assert_int_equal(member_state(fx->st, kept, "outbreak"), STORE_MEMBER_HELD);
	assert_int_equal(rcpt_state(fx->st, kept, "user@example.jp"), STORE_RCPT_QUARANTINED);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, kept, &m), 0);
	assert_string_equal(membership_of(m, "outbreak")->rescan_rule, "wave_1");
	assert_int_equal(membership_of(m, "outbreak")->expires_at, T0 + 999999);
	store_message_free(m);
	assert_int_equal(member_rescan(fx->st, clean, "outbreak", &at), STORE_RESCAN_CLEAN);
	assert_int_equal(member_state(fx->st, clean, "outbreak"), STORE_MEMBER_RELEASED);
	assert_int_equal(rcpt_state(fx->st, clean, "user@example.jp"), STORE_RCPT_RELEASED);
	assert_int_equal(store_get(fx->st, clean, &m), 0);
	assert_null(membership_of(m, "outbreak")->rescan_rule);
	store_message_free(m);

	struct store_gateway **list = NULL;
	size_t n = 0;
	assert_int_equal(store_gateway_list(fx->st, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0]->last_rescan_at, T0 + 20);
	assert_int_equal(list[0]->last_rescan_messages, 2);
	assert_int_equal(list[0]->last_rescan_clean, 1);
	assert_int_equal(list[0]->last_rescan_kept, 1);
	assert_int_equal(list[0]->last_rescan_requarantined, 0);
	store_gateway_array_free(list, n);

	/* the next change sends the kept one back again, pending, without its rule */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "3", T0 + 50, &changed), 0);
	assert_int_equal(member_rescan(fx->st, kept, "outbreak", &at), STORE_RESCAN_PENDING);
	assert_int_equal(at, T0 + 50);
	assert_int_equal(store_get(fx->st, kept, &m), 0);
	assert_null(membership_of(m, "outbreak")->rescan_rule);
	store_message_free(m);
	assert_int_equal(member_rescan(fx->st, clean, "outbreak", &at), STORE_RESCAN_CLEAN);
}

/* Releases id from the Outbreak quarantine at at and records the gateway's verdict s. */
static void rescan_verdict(struct store *st, const char *id, enum store_rescan_state s, int64_t at)
{
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "outbreak"};
	assert_int_equal(store_pvo_act(st, id, &r, at, NULL), 0);
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(st, at + 1, 60000, &d), 0);
	assert_string_equal(d->msg_id, id);
	assert_true(d->rescan);
	struct store_delivery_result res = {"user@example.jp", STORE_DELIVERY_DELIVERED,
					    "250 2.0.0 Ok"};
	struct store_rescan_verdict v = {s, s == STORE_RESCAN_CLEAN ? NULL : "wave_1"};
	assert_int_equal(store_delivery_confirm_rescan(st, d, &res, 1, at + 2, &v), 0);
	store_delivery_free(d);
	assert_int_equal(pending(st), 0);
}

/* The last rescan store_gateway_list says of gateway name. */
static void assert_last_rescan(struct store_gateway *const *v, size_t n, const char *name,
			       int64_t at, uint64_t messages, uint64_t clean, uint64_t kept,
			       uint64_t requarantined)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i]->name, name) != 0)
			continue;
		assert_int_equal(v[i]->last_rescan_at, at);
		assert_int_equal(v[i]->last_rescan_messages, messages);
		assert_int_equal(v[i]->last_rescan_clean, clean);
		assert_int_equal(v[i]->last_rescan_kept, kept);
		assert_int_equal(v[i]->last_rescan_requarantined, requarantined);
		return;
	}
	fail_msg("gateway %s not listed", name);
}

/*
 * The list's last rescan per gateway: of gw1's two rescans only the later one
 * counts (the message released clean by the first is not in it), with a verdict
 * of each kind and one still pending; gw2's rescan at the same time counts apart;
 * gw3, never rescanned, and gw4, with no messages, have none. Only Outbreak
 * memberships count, and the reads of one gateway leave it out.
 */
static void test_gateway_list_last_rescan(void **state)
{
	struct fixture *fx = *state;
	const char *const names[] = {"gw1", "gw2", "gw3", "gw4"};
	for (size_t i = 0; i < 4; i++) {
		char address[32], hash[32];
		snprintf(address, sizeof(address), "192.0.2.%zu", i + 1);
		snprintf(hash, sizeof(hash), "h%zu", i + 1);
		struct store_gateway g = {.name = (char *)(uintptr_t)names[i],
					  .address = address,
					  .token_hash = hash,
					  .created_at = 1};
		assert_int_equal(store_gateway_add(fx->st, &g), 0);
	}
	const char *const qo[] = {"outbreak", NULL}, *const qoa[] = {"outbreak", "Adult", NULL};
	const char *const qa[] = {"Adult", NULL};
	const int64_t expires[] = {T0 + 999999, T0 + 999999};
	char a[5][37], b[2][37], c[37], adult[37], spam[37];
	for (int k = 0; k < 5; k++) {
		char origin[16];
		snprintf(origin, sizeof(origin), "a-%d", k);
		add_pvo(fx->st, T0 + 1 + k, "gw1", origin, k == 4 ? qoa : qo, expires, a[k]);
	}
	add_pvo(fx->st, T0 + 6, "gw2", "b-0", qo, expires, b[0]);
	add_pvo(fx->st, T0 + 7, "gw2", "b-1", qo, expires, b[1]);
	add_pvo(fx->st, T0 + 8, "gw3", "c-0", qo, expires, c);
	add_pvo(fx->st, T0 + 9, "gw1", "a-adult", qa, expires, adult);
	add_spam(fx->st, spam);
	bool changed = false;
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(
		    store_gateway_outbreak_version(fx->st, names[i], "1", T0 + 10, &changed), 0);

	/* gw1's first rescan: one comes back clean */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2", T0 + 20, &changed), 0);
	assert_true(changed);
	rescan_verdict(fx->st, a[0], STORE_RESCAN_CLEAN, T0 + 21);
	struct store_gateway **v = NULL;
	size_t n = 0;
	assert_int_equal(store_gateway_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_last_rescan(v, n, "gw1", T0 + 20, 5, 1, 0, 0);
	assert_last_rescan(v, n, "gw2", 0, 0, 0, 0, 0);
	store_gateway_array_free(v, n);

	/* the second, of the four still held, and gw2's at the same time */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "3", T0 + 50, &changed), 0);
	assert_true(changed);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw2", "2", T0 + 50, &changed), 0);
	assert_true(changed);
	rescan_verdict(fx->st, a[1], STORE_RESCAN_KEPT, T0 + 60);
	rescan_verdict(fx->st, a[2], STORE_RESCAN_REQUARANTINED, T0 + 63);
	rescan_verdict(fx->st, a[3], STORE_RESCAN_CLEAN, T0 + 66);
	rescan_verdict(fx->st, b[0], STORE_RESCAN_CLEAN, T0 + 69);
	int64_t at = 0;
	assert_int_equal(member_rescan(fx->st, a[4], "outbreak", &at), STORE_RESCAN_PENDING);
	assert_int_equal(member_rescan(fx->st, a[4], "Adult", &at), STORE_RESCAN_NONE);

	assert_int_equal(store_gateway_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(v[i]->name, names[i]);
	assert_last_rescan(v, n, "gw1", T0 + 50, 4, 1, 1, 1);
	assert_last_rescan(v, n, "gw2", T0 + 50, 2, 1, 0, 0);
	assert_last_rescan(v, n, "gw3", 0, 0, 0, 0, 0);
	assert_last_rescan(v, n, "gw4", 0, 0, 0, 0, 0);
	store_gateway_array_free(v, n);

	struct store_gateway *one = NULL;
	assert_int_equal(store_gateway_get(fx->st, "gw1", &one), 0);
	assert_int_equal(one->last_rescan_at, 0);
	assert_int_equal(one->last_rescan_messages, 0);
	store_gateway_free(one);
}

static void test_pvo_overflow(void **state)
{
	struct fixture *fx = *state;
	struct store_quarantine_settings keep = {
	    .name = "Keep", .default_action = "delete", .overflow_exempt = true};
	struct store_quarantine_settings rel = {.name = "Rel", .default_action = "release"};
	assert_int_equal(store_quarantine_put(fx->st, &keep, true, T0), 0);
	assert_int_equal(store_quarantine_put(fx->st, &rel, true, T0), 0);
	const char *const q1[] = {"Adult", NULL}, *const q2[] = {"Rel", NULL};
	const char *const q3[] = {"Adult", "Keep", NULL}, *const q4[] = {"Keep", NULL};
	char m1[37], m2[37], m3[37], m4[37];
	add_pvo(fx->st, T0 + 1, "10.0.0.1", "o-1", q1, NULL, m1);
	add_pvo(fx->st, T0 + 2, "10.0.0.1", "o-2", q2, NULL, m2);
	add_pvo(fx->st, T0 + 3, "10.0.0.1", "o-3", q3, NULL, m3);
	add_pvo(fx->st, T0 + 4, "10.0.0.1", "o-4", q4, NULL, m4);
	struct store_pvo_usage u;
	assert_int_equal(store_pvo_usage(fx->st, &u), 0);
	assert_int_equal(u.messages, 4);
	assert_true(u.sweepable);
	const uint64_t size = u.bytes / 4;
	assert_true(size > 0 && u.bytes == 4 * size);

	/* within the limit: nothing */
	struct store_pvo_overflow o;
	assert_int_equal(store_pvo_overflow(fx->st, u.bytes, 10, T0 + 10, &o), 0);
	assert_int_equal(o.released + o.deleted, 0);
	assert_int_equal(o.after.bytes, 4 * size);
	/* a batch of one: the oldest, m1, deleted from Adult */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 1, T0 + 11, &o), 0);
	assert_int_equal(o.deleted, 1);
	assert_int_equal(o.released, 0);
	assert_int_equal(o.after.bytes, 3 * size);
	assert_int_equal(rcpt_state(fx->st, m1, "user@example.jp"), STORE_RCPT_DELETED);
	/* the next, m2, released (its only quarantine): delivered; then within the limit */
	assert_int_equal(store_pvo_overflow(fx->st, 2 * size, 10, T0 + 12, &o), 0);
	assert_int_equal(o.released, 1);
	assert_int_equal(o.deleted, 0);
	assert_int_equal(o.after.bytes, 2 * size);
	assert_int_equal(pending(fx->st), 1);
	assert_int_equal(member_state(fx->st, m3, "Adult"), STORE_MEMBER_HELD);
	/* m3 deleted from Adult leaves Keep with it; m4, only in Keep, stays */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 10, T0 + 13, &o), 0);
	assert_int_equal(o.deleted, 1);
	assert_int_equal(o.after.bytes, size);
	assert_false(o.after.sweepable);
	assert_int_equal(member_state(fx->st, m3, "Keep"), STORE_MEMBER_DELETED);
	assert_int_equal(member_state(fx->st, m4, "Keep"), STORE_MEMBER_HELD);
	/* nothing left to act on */
	assert_int_equal(store_pvo_overflow(fx->st, 0, 10, T0 + 14, &o), 0);
	assert_int_equal(o.released + o.deleted, 0);
	assert_int_equal(o.after.bytes, size);

	struct store_audit **rows = NULL;
	size_t n = 0;
	assert_int_equal(store_audit_list(fx->st, 10, 0, &rows, &n), 0);
	assert_int_equal(n, 3);
	const char *const want[][2] = {
	    {"pvo_overflow_delete", m3}, {"pvo_overflow_release", m2}, {"pvo_overflow_delete", m1}};
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(rows[i]->actor, "system");
		assert_string_equal(rows[i]->action, want[i][0]);
		assert_string_equal(rows[i]->target, want[i][1]);
	}
	assert_non_null(strstr(rows[2]->detail, "Adult"));
	assert_non_null(strstr(rows[1]->detail, "Rel"));
	store_audit_array_free(rows, n);
}

/* Delay moves the exit; move keeps reason and times; the refusals change nothing. */
static void test_pvo_delay_and_move(void **state)
{
	struct fixture *fx = *state;
	struct store_quarantine_settings fin = {.name = "Finance", .default_action = "delete"};
	assert_int_equal(store_quarantine_put(fx->st, &fin, true, T0), 0);
	const char *const q[] = {"Adult", "Other", "virus", NULL};
	const int64_t exp[] = {T0 + 5000, T0 + 6000, T0 + 7000};
	char id[37];
	add_pvo(fx->st, T0, "10.0.0.1", "o-1", q, exp, id);
	struct store_pvo_request r = {
	    .action = STORE_PVO_DELAY, .quarantine = "Adult", .by_ms = 3 * 86400000LL};
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 1, NULL), 0);
	r.by_ms = 0;
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 1, NULL), -EINVAL);
	r.by_ms = -5;
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 1, NULL), -EINVAL);

	struct store_pvo_outcome out;
	struct store_pvo_request mv = {
	    .action = STORE_PVO_MOVE, .quarantine = "Adult", .to = "virus"};
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 2, &out), -EPERM);
	mv.quarantine = "virus";
	mv.to = "Finance";
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 2, &out), -EPERM);
	mv.quarantine = "Adult";
	mv.to = "Nowhere";
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 2, &out), -ENODEV);
	assert_true(out.to_unknown);
	mv.to = "Other";
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 2, &out), -EEXIST);
	mv.to = "Finance";
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 3, &out), 0);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	assert_null(membership_of(m, "Adult"));
	const struct store_membership *x = membership_of(m, "Finance");
	assert_non_null(x);
	assert_int_equal(x->state, STORE_MEMBER_HELD);
	assert_int_equal(x->expires_at, T0 + 5000 + 3 * 86400000LL);
	assert_int_equal(x->entered_at, T0 - 1000);
	assert_string_equal(x->reason, "reason 0");
	assert_string_equal(x->type, "policy");
	assert_int_equal(membership_of(m, "Other")->expires_at, T0 + 6000);
	store_message_free(m);
	/* a membership that is not held is neither delayed nor moved */
	struct store_pvo_request rel = {.action = STORE_PVO_RELEASE, .quarantine = "Other"};
	assert_int_equal(store_pvo_act(fx->st, id, &rel, T0 + 4, NULL), 0);
	r.quarantine = "Other";
	r.by_ms = 1000;
	assert_int_equal(store_pvo_act(fx->st, id, &r, T0 + 5, &out), -EALREADY);
	mv.quarantine = "Other";
	mv.to = "Adult";
	assert_int_equal(store_pvo_act(fx->st, id, &mv, T0 + 5, &out), -EALREADY);
	assert_int_equal(pending(fx->st), 0);
}

/* Bulk by filter: every held membership of the quarantine, skipping the rest. */
static void test_pvo_bulk_and_copy(void **state)
{
	struct fixture *fx = *state;
	const char *const one[] = {"Adult", NULL};
	const char *const two[] = {"Adult", "virus", NULL};
	enum { N = 5 };
	char ids[N][37], spam_id[37];
	for (int i = 0; i < N; i++) {
		char origin[16];
		snprintf(origin, sizeof(origin), "b-%d", i);
		add_pvo(fx->st, T0 + i, "10.0.0.1", origin, i == 0 ? two : one, NULL, ids[i]);
	}
	add_spam(fx->st, spam_id);
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "Adult"};
	/* one of them released by hand already */
	assert_int_equal(store_pvo_act(fx->st, ids[4], &r, T0 + 10, NULL), 0);
	assert_int_equal(pending(fx->st), 1);
	struct store_filter f = {.quarantine = "Adult"};
	uint64_t changed = 0, queued = 0;
	assert_int_equal(store_pvo_act_matching(fx->st, &f, &r, T0 + 20, &changed, &queued), 0);
	assert_int_equal(changed, N - 1);
	assert_int_equal(queued, N - 2); /* ids[0] is still held in virus */
	assert_int_equal(pending(fx->st), N - 1);
	assert_int_equal(store_pvo_act_matching(fx->st, &f, &r, T0 + 30, &changed, &queued), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(queued, 0);
	/* the filter must name the action's quarantine */
	f.quarantine = "virus";
	assert_int_equal(store_pvo_act_matching(fx->st, &f, &r, T0 + 30, &changed, &queued),
			 -EINVAL);
	/* operator scoping: not theirs, nothing */
	const char *const theirs[] = {"Other"};
	struct store_filter fo = {.quarantine = "virus",
				  .scope_pvo = true,
				  .pvo_quarantines = theirs,
				  .npvo_quarantines = 1};
	r.quarantine = "virus";
	assert_int_equal(store_pvo_act_matching(fx->st, &fo, &r, T0 + 30, &changed, &queued), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(rcpt_state(fx->st, spam_id, "u@example.jp"), STORE_RCPT_QUARANTINED);

	/* a copy: its own delivery, changing no state */
	const char *to[] = {"audit@example.jp", "user@example.jp"};
	assert_int_equal(store_pvo_copy(fx->st, ids[0], to, 2, T0 + 40), 0);
	assert_int_equal(store_pvo_copy(fx->st, spam_id, to, 2, T0 + 40), -ENOENT);
	assert_int_equal(store_pvo_copy(fx->st, ids[0], to, 0, T0 + 40), -EINVAL);
	struct store_delivery *d = NULL;
	bool seen = false;
	while (store_delivery_claim(fx->st, T0 + 50, 60000, &d) == 0) {
		if (d->copy) {
			seen = true;
			assert_string_equal(d->msg_id, ids[0]);
			assert_null(d->gateway);
			assert_int_equal(d->nrcpts, 2);
			assert_string_equal(d->rcpts[0], "audit@example.jp");
			struct store_delivery_result res[2] = {
			    {"audit@example.jp", STORE_DELIVERY_DELIVERED, "250 ok"},
			    {"user@example.jp", STORE_DELIVERY_FAILED, "550 no"}};
			assert_int_equal(store_delivery_finish(fx->st, d, res, 2, T0 + 51, 0), 0);
		}
		store_delivery_free(d);
		d = NULL;
	}
	assert_true(seen);
	assert_int_equal(rcpt_state(fx->st, ids[0], "user@example.jp"), STORE_RCPT_QUARANTINED);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, ids[0], &m), 0);
	assert_int_equal(membership_of(m, "virus")->state, STORE_MEMBER_HELD);
	store_message_free(m);
}

struct pvo_racer {
	struct store *st;
	const char (*ids)[37];
	int n;
	const char *quarantine;
	int done, errors;
};

static void *pvo_race_main(void *arg)
{
	struct pvo_racer *a = arg;
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = a->quarantine};
	for (int i = 0; i < a->n; i++) {
		int rc = store_pvo_act(a->st, a->ids[i], &r, T0 + 10, NULL);
		if (rc == 0)
			a->done++;
		else if (rc != -EALREADY)
			a->errors++;
	}
	return NULL;
}

/*
 * Four clients releasing at once, two per quarantine of each message: every
 * message gets exactly one delivery (PostgreSQL: the row locks; SQLite: the writer).
 */
static void test_pvo_release_race(void **state)
{
	struct fixture *fx = *state;
	enum { N = 20, RACERS = 4 };
	const char *const q[] = {"Adult", "virus", NULL};
	char ids[N][37];
	for (int i = 0; i < N; i++) {
		char origin[16];
		snprintf(origin, sizeof(origin), "r-%d", i);
		add_pvo(fx->st, T0 + i, "10.0.0.1", origin, q, NULL, ids[i]);
	}
	struct pvo_racer rc[RACERS];
	pthread_t th[RACERS];
	for (int i = 0; i < RACERS; i++) {
		rc[i] = (struct pvo_racer){
		    .st = fx->st, .ids = (const char(*)[37])ids, .n = N, .quarantine = q[i % 2]};
		pthread_create(&th[i], NULL, pvo_race_main, &rc[i]);
	}
	int done = 0;
	for (int i = 0; i < RACERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rc[i].errors, 0);
		done += rc[i].done;
	}
	assert_int_equal(done, 2 * N); /* each membership released once */
	assert_int_equal(pending(fx->st), N);
	int per[N] = {0};
	struct store_delivery *d = NULL;
	while (store_delivery_claim(fx->st, T0 + 50, 60000, &d) == 0) {
		for (int i = 0; i < N; i++)
			per[i] += strcmp(d->msg_id, ids[i]) == 0;
		store_delivery_free(d);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(per[i], 1);
}

int main(void)
{
	const struct CMUnitTest sqlite_tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_message_in_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_submits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit_batches, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_delete_states, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_confirm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keyset_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bulk_actions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quarantines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_memberships, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_retry_stored_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_quarantine_settings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_operator_scope, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_release_from_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_release_without_rescan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_delete_and_expired, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_delay_and_move, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_overflow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_overflow_outbreak_by_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_outbreak_rescan_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_migration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_notice, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_outbreak_rescan_verdicts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_list_last_rescan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_bulk_and_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_release_race, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire_and_purge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vacuum_frees_pages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_query_plans, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_deadline, setup, teardown),
	    cmocka_unit_test(test_short_tokenizer),
	    cmocka_unit_test_setup_teardown(test_subject_short_terms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_paging_late, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_bulk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_time_range_drift, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_builds_search_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cluster_jobs_and_secrets, setup, teardown),
	};
	/* the same behaviour on PostgreSQL, and what is PostgreSQL's own */
	const struct CMUnitTest pg_tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_message_in_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_submits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit_batches, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_delete_states, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_confirm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keyset_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bulk_actions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quarantines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_memberships, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_retry_stored_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_quarantine_settings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_operator_scope, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_outbreak_rescan_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_migration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_notice, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_outbreak_rescan_verdicts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_list_last_rescan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire_and_purge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_short_terms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_paging_late, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subject_bulk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_time_range_drift, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_claims_race, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_schema_too_new, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_invalid_utf8, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_search_indexes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_recipient_listing_plan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_search_migration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_read_deadline_cancels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cluster_jobs_and_secrets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_node_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_leases_per_node, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pg_max_seq_waits_for_ingest, setup, teardown),
	    cmocka_unit_test(test_pg_connect_wait),
	    cmocka_unit_test_setup_teardown(test_pg_replica_fallback, setup, teardown),
	};
	pg_dsn = test_pg_dsn();
	if (pg_dsn != NULL)
		return cmocka_run_group_tests_name("store_postgresql", pg_tests, NULL, NULL);
	return cmocka_run_group_tests_name("store_sqlite", sqlite_tests, NULL, NULL);
}
