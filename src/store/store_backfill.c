/*
 * store_backfill — the SQLite backend's rollup rows that gateways send once
 * (migration 22, store.h "store_report_backfill"): a row is added to
 * report_rollups only when its (gateway, report, gran, bucket, key) goes into
 * report_backfill for the first time, in the same transaction.
 *
 * Not for: checking rows (store.c and api_backfill.c), rollups from events
 * (store_sqlite_report.c).
 */
#include "store/store.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "common/log.h"

static const char *const store_backfill_mark_sql =
    "INSERT OR IGNORE INTO report_backfill (gateway, report, gran, bucket, key)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";
static const char *const store_backfill_add_sql =
    "INSERT INTO report_rollups (report, gran, bucket, gateway, key, incoming, clean, spam,"
    " suspect, virus, content_filter, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
    " ?11, ?12) ON CONFLICT (report, gran, bucket, gateway, key) DO UPDATE SET"
    " incoming = incoming + excluded.incoming, clean = clean + excluded.clean,"
    " spam = spam + excluded.spam, suspect = suspect + excluded.suspect,"
    " virus = virus + excluded.virus, content_filter = content_filter + excluded.content_filter,"
    " count = count + excluded.count";
static const char *const store_backfill_done_sql =
    "SELECT done_at FROM report_backfill_done WHERE gateway = ?1";
static const char *const store_backfill_finish_sql =
    "INSERT INTO report_backfill_done (gateway, done_at) VALUES (?1, ?2)";

struct store_backfill_job {
	const char *gateway;
	const struct store_rollup_in *v;
	size_t n;
	bool done;
	int64_t now;
	size_t *stored;
};

/* The finish time of gateway's backfill into *at (0: none), or -EIO. */
static int store_backfill_done_at(struct store_conn *c, const char *gateway, int64_t *at)
{
	sqlite3_stmt *s = store_int_stmt(c, store_backfill_done_sql);
	*at = 0;
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, gateway, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*at = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -EIO;
}

static int store_backfill_run(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_backfill_job *j = arg;
	int64_t at = 0;
	if (store_backfill_done_at(c, j->gateway, &at) < 0)
		return -EIO;
	if (at > 0)
		return -EALREADY;
	for (size_t i = 0; i < j->n; i++) {
		const struct store_rollup_in *r = &j->v[i];
		const char *name = store_report_names[r->report];
		sqlite3_stmt *s = store_int_stmt(c, store_backfill_mark_sql);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, j->gateway, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, r->gran);
		sqlite3_bind_int64(s, 4, r->bucket);
		sqlite3_bind_text(s, 5, r->key, -1, SQLITE_STATIC);
		if (store_int_step_done(c, s, "backfill_mark") < 0)
			return -EIO;
		if (sqlite3_changes(store_int_db(c)) == 0)
			continue; /* taken before: a replay */
		s = store_int_stmt(c, store_backfill_add_sql);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, r->gran);
		sqlite3_bind_int64(s, 3, r->bucket);
		sqlite3_bind_text(s, 4, j->gateway, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, r->key, -1, SQLITE_STATIC);
		for (int k = 0; k < STORE_REPORT_NCOUNTERS; k++)
			sqlite3_bind_int64(s, 6 + k, r->c[k]);
		if (store_int_step_done(c, s, "backfill_add") < 0)
			return -EIO;
		(*j->stored)++;
	}
	if (j->done) {
		sqlite3_stmt *s = store_int_stmt(c, store_backfill_finish_sql);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, j->gateway, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, j->now > 0 ? j->now : 1);
		if (store_int_step_done(c, s, "backfill_finish") < 0)
			return -EIO;
	}
	return 0;
}

int store_sqlite_report_backfill(struct store *st, const char *gateway,
				 const struct store_rollup_in *v, size_t n, bool done, int64_t now,
				 size_t *stored)
{
	struct store_backfill_job j = {gateway, v, n, done, now, stored};
	int rc = store_int_run_job(st, store_backfill_run, &j);
	if (rc < 0)
		*stored = 0; /* rolled back */
	return rc;
}

int store_sqlite_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = store_backfill_done_at(c, gateway, done_at);
	store_int_reader_put(st, c);
	return rc < 0 ? store_int_read_result(rc) : 0;
}
