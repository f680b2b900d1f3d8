/*
 * store_backfill — the SQLite backend's rollup rows that gateways send once
 * (migration 21, store.h "store_report_backfill"): a row is added to
 * report_rollups (and to the all-gateway report_totals) only when its (gateway,
 * report, gran, bucket, key) goes into report_backfill for the first time, in
 * the same transaction: to its own bucket, and to the day and month of the
 * switch (store_report_backfill_buckets), which the gateway does not send, so
 * that a month read whole equals its days read by the day.
 *
 * Not for: checking rows (store.c and api_backfill.c), rollups from events
 * (store_sqlite_report.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/xalloc.h"

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
/* ?4, the gateway, is bound and not used: the same binding as the add */
static const char *const store_backfill_totals_sql =
    "INSERT INTO report_totals (report, gran, bucket, key, incoming, clean, spam, suspect,"
    " virus, content_filter, count) SELECT ?1, ?2, ?3, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12"
    " WHERE ?4 IS NOT NULL ON CONFLICT (report, gran, bucket, key) DO UPDATE SET"
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
	int64_t cutoff;
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
		/* the row's bucket and the coarser ones of the switch that the gateway
		 * does not send; each the gateway's row, and the all-gateway row the
		 * reports over every gateway read (report_totals) */
		int gv[STORE_REPORT_NGRANS];
		int64_t bv[STORE_REPORT_NGRANS];
		size_t nb = store_report_backfill_buckets(r->gran, r->bucket, j->cutoff, gv, bv);
		for (size_t b = 0; b < nb; b++) {
			for (int t = 0; t < 2; t++) {
				s = store_int_stmt(c, t == 0 ? store_backfill_add_sql
							     : store_backfill_totals_sql);
				if (s == NULL)
					return -EIO;
				sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
				sqlite3_bind_int(s, 2, gv[b]);
				sqlite3_bind_int64(s, 3, bv[b]);
				sqlite3_bind_text(s, 4, j->gateway, -1, SQLITE_STATIC);
				sqlite3_bind_text(s, 5, r->key, -1, SQLITE_STATIC);
				for (int k = 0; k < STORE_REPORT_NCOUNTERS; k++)
					sqlite3_bind_int64(s, 6 + k, r->c[k]);
				if (store_int_step_done(
					c, s, t == 0 ? "backfill_add" : "backfill_totals") < 0)
					return -EIO;
			}
		}
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

int store_sqlite_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
				 const struct store_rollup_in *v, size_t n, bool done, int64_t now,
				 size_t *stored)
{
	struct store_backfill_job j = {gateway, cutoff, v, n, done, now, stored};
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

static const char *const store_backfill_export_sql =
    "SELECT report, bucket, key, sum(incoming), sum(clean), sum(spam), sum(suspect), sum(virus),"
    " sum(content_filter), sum(count) FROM report_rollups WHERE gran = ?1 AND bucket < ?2 AND"
    " (?3 IS NULL OR (report, bucket, key) > (?3, ?4, ?5)) GROUP BY report, bucket, key"
    " ORDER BY report, bucket, key LIMIT ?6";

int store_sqlite_report_export(struct store *st, int gran, int64_t before,
			       const struct store_rollup_row *after, size_t limit,
			       struct store_rollup_row **out, size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, store_backfill_export_sql);
	if (s == NULL) {
		store_int_reader_put(st, c);
		return store_int_read_result(-EIO);
	}
	sqlite3_bind_int(s, 1, gran);
	sqlite3_bind_int64(s, 2, before);
	if (after->key != NULL) {
		sqlite3_bind_text(s, 3, store_report_names[after->report], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, after->bucket);
		sqlite3_bind_text(s, 5, after->key, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_null(s, 3);
	}
	sqlite3_bind_int64(s, 6, (int64_t)limit);
	struct store_rollup_row *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		int report = store_report_by_name((const char *)sqlite3_column_text(s, 0));
		if (report < 0)
			continue; /* a report this version does not know */
		v = xreallocarray(v, k + 1, sizeof(*v));
		struct store_rollup_row *r = &v[k++];
		r->report = report;
		r->gran = gran;
		r->bucket = sqlite3_column_int64(s, 1);
		r->key = xstrdup((const char *)sqlite3_column_text(s, 2));
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			r->c[j] = sqlite3_column_int64(s, 3 + j);
	}
	sqlite3_reset(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_rollup_rows_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}
