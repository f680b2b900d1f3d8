/*
 * test_store_partitions — PostgreSQL's daily partitions of the message tables:
 * days created ahead (pg_inherits), retention by dropping a whole day with exact
 * counts and counters, a day with a pending release kept (and its delivery still
 * working), lookups and cursor paging across days and the DEFAULT partition, and
 * the upgrade of a version-3 database with data. Runs only under
 * scripts/with-postgresql (without a server it is skipped, as meson's 77).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "quarantine/expiry.h"
#include "store/store.h"
#include "store/store_pg_int.h"
#include "test_pg.h"
#include "test_util.h"

#define DAY 86400000LL
/* midnight UTC, a fixed day long ago: no partition of the store's own "now" */
#define D0 (1760000000000LL - 1760000000000LL % DAY)

struct fixture {
	char db[64];
	struct store *st;
	PGconn *pg;
};

static int fixture_open(struct fixture *fx)
{
	char *dsn = test_pg_dsn_of(fx->db);
	struct store_options opt = {.backend = "postgresql", .dsn = dsn};
	int rc = store_open(&opt, &fx->st);
	free(dsn);
	return rc;
}

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	if (test_pg_create(fx->db, sizeof(fx->db)) < 0)
		return -1;
	char *dsn = test_pg_dsn_of(fx->db);
	fx->pg = PQconnectdb(dsn);
	free(dsn);
	*state = fx;
	if (PQstatus(fx->pg) != CONNECTION_OK || fixture_open(fx) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_pg_debug_migrate_to(0);
	store_close(fx->st);
	PQfinish(fx->pg);
	test_pg_drop(fx->db);
	free(fx);
	return 0;
}

/* The first value of sql (a new string), failing the test on an error. */
static char *pg_text(struct fixture *fx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = NULL;
	if (vasprintf(&sql, fmt, ap) < 0)
		abort();
	va_end(ap);
	PGresult *r = PQexec(fx->pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		fail_msg("%s: %s", sql, PQerrorMessage(fx->pg));
	char *v = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	free(sql);
	return v;
}

static int64_t pg_int(struct fixture *fx, const char *sql)
{
	char *v = pg_text(fx, "%s", sql);
	int64_t n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

/* Whether the day of at has its partition in every one of the four tables. */
static int day_partitions(struct fixture *fx, int64_t at)
{
	time_t t = (time_t)(at / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char day[16];
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	char *v = pg_text(fx,
			  "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
			  " WHERE i.inhparent::regclass::text IN"
			  " ('messages', 'bodies', 'recipients', 'attachments')"
			  " AND c.relname LIKE '%%_p%s'",
			  day);
	int n = atoi(v);
	free(v);
	return n;
}

static struct store_new_message *build(int64_t at, const char *quarantine, const char *rcpt1,
				       const char *rcpt2, char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(at, m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup(quarantine);
	m->received_at = at;
	m->sender = xstrdup("s@sender.example");
	m->nrecipients = rcpt2 != NULL ? 2 : 1;
	m->recipients = xcalloc(2, sizeof(char *));
	m->recipients[0] = xstrdup(rcpt1);
	if (rcpt2 != NULL)
		m->recipients[1] = xstrdup(rcpt2);
	m->gateway = xstrdup("gw1");
	m->verdict = xstrdup("spam");
	m->subject = xasprintf("message at %" PRId64, at);
	m->raw =
	    (unsigned char *)xasprintf("Subject: at %" PRId64 "\r\n\r\nbody %s\r\n", at, m->id);
	m->raw_len = strlen((char *)m->raw);
	return m;
}

struct waiter {
	int rc;
	bool done;
};

static void waiter_done(void *arg, int rc)
{
	struct waiter *w = arg;
	w->rc = rc;
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

static void add(struct fixture *fx, int64_t at, const char *q, const char *r1, const char *r2,
		char id[37])
{
	struct waiter w = {0};
	assert_int_equal(store_submit_message(fx->st, build(at, q, r1, r2, id), waiter_done, &w),
			 0);
	while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(w.rc, 0);
}

/* The counters the triggers keep equal what the rows say. */
static void assert_counters_exact(struct fixture *fx)
{
	assert_int_equal(pg_int(fx, "SELECT messages FROM totals"),
			 pg_int(fx, "SELECT count(*) FROM messages"));
	assert_int_equal(pg_int(fx, "SELECT bytes_original FROM totals"),
			 pg_int(fx, "SELECT coalesce(sum(size), 0) FROM messages"));
	assert_int_equal(pg_int(fx, "SELECT bytes_stored FROM totals"),
			 pg_int(fx, "SELECT coalesce(sum(stored_size), 0) FROM messages"));
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM quarantines q, LATERAL (SELECT"
				    " count(*) AS n, coalesce(sum(size), 0) AS b FROM messages m"
				    " WHERE m.quarantine = q.name AND m.held > 0) x"
				    " WHERE q.messages <> x.n OR q.bytes <> x.b"),
			 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM messages m, LATERAL (SELECT"
				    " count(*) FILTER (WHERE state = 0) AS h,"
				    " count(*) FILTER (WHERE state IN (0, 1)) AS a"
				    " FROM recipients r WHERE r.msg_id = m.id) x"
				    " WHERE m.held <> x.h OR m.active <> x.a"),
			 0);
}

/* Today and a week ahead exist after open; store_maintain adds a chosen "now". */
static void test_partitions_ahead(void **state)
{
	struct fixture *fx = *state;
	int64_t now = clock_now_ms();
	for (int d = 0; d <= STORE_PG_PARTITION_AHEAD_DAYS; d++)
		assert_int_equal(day_partitions(fx, now + d * DAY), 4);
	assert_int_equal(day_partitions(fx, now + (STORE_PG_PARTITION_AHEAD_DAYS + 2) * DAY), 0);
	assert_int_equal(day_partitions(fx, D0), 0);
	uint64_t stray = 99;
	assert_int_equal(store_maintain(fx->st, D0 + 5, &stray), 0);
	assert_int_equal(stray, 0);
	for (int d = 0; d <= STORE_PG_PARTITION_AHEAD_DAYS; d++)
		assert_int_equal(day_partitions(fx, D0 + d * DAY), 4);
	/* a day's bounds are the id texts of its first milliseconds */
	char lo[37], hi[37];
	ids_uuidv7(D0, lo);
	ids_uuidv7(D0 + DAY, hi);
	char *bound = pg_text(fx, "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
				  " WHERE c.relname = 'messages_p20251009'");
	char want[128];
	snprintf(want, sizeof(want), "FOR VALUES FROM ('%.13s') TO ('%.13s')", lo, hi);
	assert_string_equal(bound, want);
	free(bound);
	/* again: nothing new, nothing failing */
	assert_int_equal(store_maintain(fx->st, D0 + 5, NULL), 0);
	/* a message outside every day lands in DEFAULT and is reported */
	char id[37];
	add(fx, D0 - 40 * DAY, "spam", "a@x.jp", NULL, id);
	assert_int_equal(store_maintain(fx->st, D0, &stray), 0);
	assert_int_equal(stray, 3); /* its row in messages, bodies, recipients */
	/* its day cannot be made now; the days around it can */
	assert_int_equal(store_maintain(fx->st, D0 - 42 * DAY, &stray), 0);
	assert_int_equal(stray, 3);
	assert_int_equal(day_partitions(fx, D0 - 40 * DAY), 0);
	assert_int_equal(day_partitions(fx, D0 - 41 * DAY), 4);
	assert_int_equal(day_partitions(fx, D0 - 39 * DAY), 4);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, id, &m), 0);
	store_message_free(m);
}

/*
 * Day 0: spam only, all older than the cutoff: dropped whole. Day 1: the same,
 * but one message has a recipient being released: the day stays, its other
 * messages expire row by row, the delivery still works. Day 2: after the cutoff.
 * The counts equal what the row path gives, and the counters stay exact.
 */
static void test_drop_old_day(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(store_maintain(fx->st, D0, NULL), 0);
	char ids0[6][37], ids1[4][37], rel[37], id2[37], deleted[37];
	for (int i = 0; i < 6; i++)
		add(fx, D0 + 1000 * i, "spam", "a@x.jp", i % 2 ? "b@x.jp" : NULL, ids0[i]);
	/* a message all of whose recipients are final already (purgeable) */
	add(fx, D0 + 9000, "spam", "a@x.jp", NULL, deleted);
	int changed = 0;
	assert_int_equal(store_delete(fx->st, deleted, NULL, 0, D0 + 9001, &changed), 0);
	for (int i = 0; i < 4; i++)
		add(fx, D0 + DAY + 1000 * i, "spam", "a@x.jp", "b@x.jp", ids1[i]);
	add(fx, D0 + DAY + 5000, "spam", "a@x.jp", "b@x.jp", rel);
	const char *a[] = {"a@x.jp"};
	assert_int_equal(store_release(fx->st, rel, a, 1, D0 + DAY + 6000, &changed), 0);
	add(fx, D0 + 2 * DAY + 10, "spam", "a@x.jp", NULL, id2);
	assert_counters_exact(fx);
	int64_t bodies_before = pg_int(fx, "SELECT count(*) FROM bodies");
	assert_int_equal(bodies_before, 13);

	uint64_t expired = 0, purged = 0;
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 2 * DAY, D0 + 3 * DAY, 2, &expired, &purged), 0);
	/* day 0: 9 quarantined recipients in 6 messages, plus the deleted one;
	 * day 1: 8 of 4 messages and the released message's b (it stays) */
	assert_int_equal(expired, 9 + 8 + 1);
	assert_int_equal(purged, 7 + 4);
	assert_int_equal(day_partitions(fx, D0), 0);
	assert_int_equal(day_partitions(fx, D0 + DAY), 4);
	assert_int_equal(day_partitions(fx, D0 + 2 * DAY), 4);
	struct store_message *m = NULL;
	assert_int_equal(store_get(fx->st, ids0[3], &m), -ENOENT);
	assert_int_equal(store_get(fx->st, ids1[0], &m), -ENOENT);
	assert_int_equal(store_get(fx->st, id2, &m), 0);
	store_message_free(m);
	struct store_stats ss;
	assert_int_equal(store_stats(fx->st, &ss), 0);
	assert_int_equal(ss.messages, 2);
	assert_int_equal(ss.deliveries_pending, 1);
	assert_counters_exact(fx);
	struct store_quarantine_stats *qs = NULL;
	size_t nq = 0;
	assert_int_equal(store_quarantines(fx->st, &qs, &nq), 0);
	for (size_t i = 0; i < nq; i++) {
		if (strcmp(qs[i].name, "spam") == 0) {
			assert_int_equal(qs[i].messages, 1); /* id2; rel holds none */
			assert_int_equal(qs[i].oldest, D0 + 2 * DAY + 10);
		}
	}
	store_quarantine_stats_free(qs, nq);

	/* the kept day's delivery goes on; once done, purge takes the message */
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, D0 + 3 * DAY, 1000, &d), 0);
	assert_string_equal(d->msg_id, rel);
	struct store_delivery_result res[] = {{"a@x.jp", STORE_DELIVERY_DELIVERED, "250 ok"}};
	assert_int_equal(store_delivery_finish(fx->st, d, res, 1, D0 + 3 * DAY + 1, 0), 0);
	store_delivery_free(d);
	/* now day 1 is empty of anything needed: the next run drops it */
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 2 * DAY, D0 + 3 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(expired, 0);
	assert_int_equal(purged, 1);
	assert_int_equal(day_partitions(fx, D0 + DAY), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM messages"), 1);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM bodies"), 1);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM recipients"), 1);
	assert_counters_exact(fx);
	/* a day of another quarantine's held messages is not this quarantine's to drop */
	char pol[37];
	add(fx, D0 + 2 * DAY + 20, "policy1", "a@x.jp", NULL, pol);
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 3 * DAY, D0 + 4 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 1);
	assert_int_equal(day_partitions(fx, D0 + 2 * DAY), 4);
	assert_int_equal(store_get(fx->st, pol, &m), 0);
	store_message_free(m);
	assert_int_equal(
	    store_expire(fx->st, "policy1", D0 + 3 * DAY, D0 + 4 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 1);
	assert_int_equal(day_partitions(fx, D0 + 2 * DAY), 0);
	assert_counters_exact(fx);
	assert_int_equal(store_stats(fx->st, &ss), 0);
	assert_int_equal(ss.messages, 0);
	assert_int_equal(ss.bytes_original, 0);
}

/* The periodic expiry job keeps the days ahead and drops the old ones whole. */
static void test_expiry_job(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(store_maintain(fx->st, D0, NULL), 0);
	char id0[37], id1[37];
	add(fx, D0 + 10, "spam", "a@x.jp", "b@x.jp", id0);
	add(fx, D0 + 20 * DAY, "spam", "a@x.jp", NULL, id1); /* in DEFAULT for now */
	struct expiry_retention spam = {"spam", 10 * DAY};
	uint64_t expired = 0, purged = 0;
	assert_int_equal(day_partitions(fx, D0 + 12 * DAY), 0);
	assert_int_equal(expiry_run_once(fx->st, &spam, 1, D0 + 12 * DAY, &expired, &purged), 0);
	assert_int_equal(expired, 2);
	assert_int_equal(purged, 1);
	assert_int_equal(day_partitions(fx, D0), 0);
	for (int d = 12; d <= 12 + STORE_PG_PARTITION_AHEAD_DAYS; d++)
		assert_int_equal(day_partitions(fx, D0 + d * DAY), 4);
	assert_counters_exact(fx);
}

static int cmp_desc(const void *a, const void *b)
{
	return -strcmp((const char *)a, (const char *)b);
}

/* Lookups by id touch one partition; paging crosses days and DEFAULT in order. */
static void test_lookup_and_paging(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(store_maintain(fx->st, D0, NULL), 0);
	enum { N = 13 };
	char ids[N][37];
	for (int i = 0; i < N; i++) {
		/* days 0..3, and two far before every partition (DEFAULT) */
		int64_t at = i < 2 ? D0 - 100 * DAY + i : D0 + (i % 4) * DAY + i * 7;
		add(fx, at, i % 3 ? "spam" : "virus", "u@x.jp", i % 2 ? "v@x.jp" : NULL, ids[i]);
	}
	qsort(ids, N, sizeof(ids[0]), cmp_desc);
	char got[N][37];
	for (size_t page = 1; page <= 4; page++) {
		/* every id once, newest first, across the days and DEFAULT */
		assert_int_equal(test_list_all(fx->st, NULL, page, got, N), N);
		for (int i = 0; i < N; i++)
			assert_string_equal(got[i], ids[i]);
	}
	/* a filtered listing with a cursor */
	struct store_filter f = {.quarantine = "virus"};
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(store_list(fx->st, &f, 2, NULL, &v, &n, &next), 0);
	assert_int_equal(n, 2);
	assert_non_null(next);
	store_message_array_free(v, n);
	char *last = NULL;
	assert_int_equal(store_list(fx->st, &f, 1000, next, &v, &n, &last), 0);
	assert_int_equal(n, 5 - 2);
	assert_null(last);
	free(next);
	store_message_array_free(v, n);
	for (int i = 0; i < N; i++) {
		struct store_message *m = NULL;
		assert_int_equal(store_get(fx->st, ids[i], &m), 0);
		assert_string_equal(m->id, ids[i]);
		store_message_free(m);
		unsigned char *raw = NULL;
		size_t len = 0;
		assert_int_equal(store_get_raw(fx->st, ids[i], &raw, &len), 0);
		assert_non_null(strstr((char *)raw, ids[i]));
		free(raw);
	}
}

/* EXPLAIN's text for sql (a new string). */
static char *explain(struct fixture *fx, const char *sql)
{
	char *q = xasprintf("EXPLAIN %s", sql);
	PGresult *r = PQexec(fx->pg, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(fx->pg));
	size_t len = 0;
	for (int k = 0; k < PQntuples(r); k++)
		len += strlen(PQgetvalue(r, k, 0)) + 1;
	char *out = xcalloc(len + 1, 1);
	for (int k = 0; k < PQntuples(r); k++) {
		strcat(out, PQgetvalue(r, k, 0));
		strcat(out, "\n");
	}
	PQclear(r);
	free(q);
	return out;
}

/* The plans the partitioned schema is for. */
static void test_plans(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(store_maintain(fx->st, D0, NULL), 0);
	char id[37];
	add(fx, D0 + 5, "spam", "u@x.jp", NULL, id);
	char *sql = xasprintf("SELECT * FROM messages WHERE id = '%s'", id);
	char *plan = explain(fx, sql);
	if (test_count_of(plan, " on messages_p") != 1 ||
	    strstr(plan, "messages_p20251009") == NULL)
		fail_msg("not pruned to one day:\n%s", plan);
	free(plan);
	free(sql);
	sql = xasprintf("SELECT b.data FROM messages m JOIN bodies b ON b.msg_id = m.id"
			" WHERE m.id = '%s'",
			id);
	plan = explain(fx, sql);
	if (test_count_of(plan, " on bodies_p") != 1 || test_count_of(plan, " on messages_p") != 1)
		fail_msg("body lookup not pruned:\n%s", plan);
	free(plan);
	free(sql);
	/* a listing walks the days' id indexes in order, stopping at the page */
	plan = explain(fx, "SELECT id FROM messages ORDER BY id DESC LIMIT 51");
	if (strstr(plan, "Sort  ") != NULL || strstr(plan, "Limit") == NULL)
		fail_msg("listing sorts:\n%s", plan);
	free(plan);
}

/* A version-3 database (bodies by seq, no partitions) with data, then upgraded. */
static void test_upgrade_from_v3(void **state)
{
	struct fixture *fx = *state;
	store_close(fx->st);
	fx->st = NULL;
	test_pg_drop(fx->db);
	PQfinish(fx->pg);
	assert_int_equal(test_pg_create(fx->db, sizeof(fx->db)), 0);
	char *dsn = test_pg_dsn_of(fx->db);
	fx->pg = PQconnectdb(dsn);
	free(dsn);
	store_pg_debug_migrate_to(3);
	assert_int_equal(fixture_open(fx), 0);
	assert_int_equal(pg_int(fx, "SELECT max(version) FROM store_migrations"), 3);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM pg_inherits"), 0);
	/* rows as version 3 wrote them, over three days and today */
	enum { N = 9 };
	char ids[N][37];
	int64_t ats[N];
	for (int i = 0; i < N; i++) {
		ats[i] = i == N - 1 ? clock_now_ms() : D0 + (i % 3) * DAY + i;
		struct store_new_message *m = build(ats[i], i % 2 ? "spam" : "virus", "a@x.jp",
						    i % 3 ? "b@x.jp" : NULL, ids[i]);
		assert_int_equal(store_new_message_prepare(m), 0);
		char at[32], size[32], ssize[32], held[24];
		snprintf(at, sizeof(at), "%" PRId64, ats[i]);
		snprintf(size, sizeof(size), "%zu", m->raw_len);
		snprintf(ssize, sizeof(ssize), "%zu", m->packed_len);
		snprintf(held, sizeof(held), "%zu", m->nrecipients);
		const char *v[] = {ids[i], m->quarantine, at, m->subject, size, ssize, held};
		PGresult *r = PQexecParams(
		    fx->pg,
		    "INSERT INTO messages (id, quarantine, received_at, sender, sender_lc,"
		    " sender_domain, subject, size, stored_size, held, active) VALUES"
		    " ($1, $2, $3, 's@sender.example', 's@sender.example', 'sender.example', $4,"
		    " $5, $6, $7, $7) RETURNING seq",
		    7, NULL, v, NULL, NULL, 0);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		const char *seq = PQgetvalue(r, 0, 0);
		const char *bv[] = {seq, (const char *)m->packed};
		int blen[] = {0, (int)m->packed_len};
		int bfmt[] = {0, 1};
		PGresult *b = PQexecParams(fx->pg,
					   "INSERT INTO bodies (msg_seq, codec, data)"
					   " VALUES ($1, 'zstd', $2)",
					   2, NULL, bv, blen, bfmt, 0);
		assert_int_equal(PQresultStatus(b), PGRES_COMMAND_OK);
		PQclear(b);
		PQclear(r);
		for (size_t k = 0; k < m->nrecipients; k++) {
			char pos[24];
			snprintf(pos, sizeof(pos), "%zu", k);
			const char *rv[] = {ids[i], m->recipients[k], pos, at};
			r = PQexecParams(fx->pg,
					 "INSERT INTO recipients (msg_id, address, address_lc, pos,"
					 " state, updated_at) VALUES ($1, $2, $2, $3, 0, $4)",
					 4, NULL, rv, NULL, NULL, 0);
			assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
			PQclear(r);
		}
		const char *av[] = {ids[i]};
		r = PQexecParams(
		    fx->pg,
		    "INSERT INTO attachments (msg_id, idx, filename, content_type, size)"
		    " VALUES ($1, 0, 'a.pdf', 'application/pdf', 10)",
		    1, NULL, av, NULL, NULL, 0);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		store_new_message_free(m);
	}
	/* a release queued in version 3 */
	const char *a[] = {"a@x.jp"};
	int changed = 0;
	assert_int_equal(store_release(fx->st, ids[1], a, 1, D0 + 100, &changed), 0);
	assert_int_equal(changed, 1);
	int64_t max_seq = pg_int(fx, "SELECT max(seq) FROM messages");
	int64_t spam_bytes = pg_int(fx, "SELECT bytes FROM quarantines WHERE name = 'spam'");
	store_close(fx->st);
	fx->st = NULL;

	store_pg_debug_migrate_to(0);
	assert_int_equal(fixture_open(fx), 0);
	assert_true(pg_int(fx, "SELECT max(version) FROM store_migrations") >= 4);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM information_schema.schemata"
				    " WHERE schema_name = 'lazaret_v3'"),
			 0);
	for (int d = 0; d < 3; d++)
		assert_int_equal(day_partitions(fx, D0 + d * DAY), 4);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM messages_default"), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM messages"), N);
	assert_int_equal(pg_int(fx, "SELECT max(seq) FROM messages"), max_seq);
	assert_int_equal(pg_int(fx, "SELECT bytes FROM quarantines WHERE name = 'spam'"),
			 spam_bytes);
	assert_counters_exact(fx);
	for (int i = 0; i < N; i++) {
		struct store_message *m = NULL;
		assert_int_equal(store_get(fx->st, ids[i], &m), 0);
		assert_int_equal(m->received_at, ats[i]);
		assert_int_equal(m->nrecipients, i % 3 ? 2 : 1);
		assert_int_equal(m->nattachments, 1);
		store_message_free(m);
		unsigned char *raw = NULL;
		size_t len = 0;
		assert_int_equal(store_get_raw(fx->st, ids[i], &raw, &len), 0);
		assert_non_null(strstr((char *)raw, ids[i]));
		free(raw);
	}
	/* new messages get the next seq, the queued delivery goes on */
	char id[37];
	add(fx, clock_now_ms(), "spam", "c@x.jp", NULL, id);
	char *seq = pg_text(fx, "SELECT seq FROM messages WHERE id = '%s'", id);
	assert_int_equal(strtoll(seq, NULL, 10), max_seq + 1);
	free(seq);
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(fx->st, clock_now_ms(), 1000, &d), 0);
	assert_string_equal(d->msg_id, ids[1]);
	store_delivery_free(d);
	/* and the old days can now go whole */
	uint64_t expired = 0, purged = 0;
	assert_int_equal(
	    store_expire(fx->st, "virus", D0 + 3 * DAY, D0 + 4 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(purged, 4); /* days mixing spam and virus: row by row */
	assert_counters_exact(fx);
}

/*
 * PVO memberships live in their message's day (memberships_pYYYYMMDD): a day that
 * still holds a PVO message is not dropped by the spam quarantine's retention;
 * once its memberships have all expired the message goes, and the day goes whole
 * with its memberships partition.
 */
static void test_pvo_memberships_by_day(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(store_maintain(fx->st, D0, NULL), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM pg_class"
				    " WHERE relname = 'memberships_p20251009'"),
			 1);
	char spam[37], pvo[37];
	add(fx, D0 + 1000, "spam", "a@x.jp", NULL, spam);
	struct store_new_message *m = build(D0 + 2000, STORE_PVO_MARKER, "a@x.jp", NULL, pvo);
	m->memberships = xcalloc(2, sizeof(*m->memberships));
	m->nmemberships = 2;
	m->memberships[0].quarantine = xstrdup("virus");
	m->memberships[0].expires_at = D0 + 3000;
	m->memberships[1].quarantine = xstrdup("Adult");
	m->memberships[1].expires_at = D0 + DAY + 3000;
	struct waiter w = {0};
	assert_int_equal(store_submit_message(fx->st, m, waiter_done, &w), 0);
	while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(w.rc, 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM memberships_p20251009"), 2);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM memberships_default"), 0);

	/* the spam retention: its message expires, the day stays for the PVO one */
	uint64_t expired = 0, purged = 0;
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 2 * DAY, D0 + 3 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(purged, 1);
	assert_int_equal(day_partitions(fx, D0), 4);
	/* the first membership expires, the second holds it */
	assert_int_equal(store_expire_memberships(fx->st, D0 + DAY, 0, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 0);
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 2 * DAY, D0 + 3 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(day_partitions(fx, D0), 4);
	struct store_message *got = NULL;
	assert_int_equal(store_get(fx->st, pvo, &got), 0);
	store_message_free(got);
	/* the last one: the message goes, then its day, memberships with it */
	assert_int_equal(store_expire_memberships(fx->st, D0 + 2 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(purged, 1);
	assert_int_equal(
	    store_expire(fx->st, "spam", D0 + 2 * DAY, D0 + 3 * DAY, 0, &expired, &purged), 0);
	assert_int_equal(day_partitions(fx, D0), 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM pg_class"
				    " WHERE relname = 'memberships_p20251009'"),
			 0);
	assert_int_equal(pg_int(fx, "SELECT count(*) FROM memberships"), 0);
	assert_counters_exact(fx);
}

int main(void)
{
	if (test_pg_dsn() == NULL) {
		fprintf(stderr,
			"test_store_partitions: PostgreSQL only (scripts/with-postgresql)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_partitions_ahead, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drop_old_day, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_memberships_by_day, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry_job, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_and_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_plans, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upgrade_from_v3, setup, teardown),
	};
	return cmocka_run_group_tests_name("store_partitions", tests, NULL, NULL);
}
