/*
 * store_sqlite_report — the SQLite backend's reporting rollups (the table of its
 * reporting migration), with the contract of store.h "reporting rollups": the
 * rows a batch of events adds to (in the batch's writer job; each delta to the
 * gateway's row and to the all-gateway row of report_totals), the reads (a
 * top-N's spans scanned for store_report.c to merge) and the retention.
 *
 * Not for: what counts where (store_report.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static const char store_report_events_sql[] =
    "SELECT gateway, seq, at, type, msg_id, detail FROM events"
    " WHERE gateway = ?1 AND msg_id = ?2 AND at >= ?3 ORDER BY seq";

int store_sqlite_report_fetch(void *ctx, const char *gateway, const char *const *ids, size_t n,
			      int64_t since, struct store_event_row **out, size_t *nout)
{
	struct store_conn *c = ctx;
	struct store_event_row *v = NULL;
	size_t k = 0;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sqlite3_stmt *s = store_int_stmt(c, store_report_events_sql);
		if (s == NULL) {
			rc = -EIO;
			break;
		}
		sqlite3_bind_text(s, 1, gateway, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, ids[i], -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 3, since);
		rc = store_sqlite_event_rows_append(s, &v, &k);
	}
	if (rc < 0) {
		store_event_rows_free(v, k);
		return rc;
	}
	*out = v;
	*nout = k;
	return 0;
}

static const char store_report_upsert_sql[] =
    "INSERT INTO report_rollups (report, gran, bucket, gateway, key, incoming, clean, spam,"
    " suspect, virus, content_filter, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
    " ?11, ?12) ON CONFLICT (report, gran, bucket, gateway, key) DO UPDATE SET"
    " incoming = incoming + excluded.incoming, clean = clean + excluded.clean,"
    " spam = spam + excluded.spam, suspect = suspect + excluded.suspect,"
    " virus = virus + excluded.virus, content_filter = content_filter + excluded.content_filter,"
    " count = count + excluded.count";

/* The same deltas added to the all-gateway totals (no gateway column). */
static const char store_report_totals_upsert_sql[] =
    "INSERT INTO report_totals (report, gran, bucket, key, incoming, clean, spam, suspect,"
    " virus, content_filter, count) VALUES (?1, ?2, ?3, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    " ON CONFLICT (report, gran, bucket, key) DO UPDATE SET"
    " incoming = incoming + excluded.incoming, clean = clean + excluded.clean,"
    " spam = spam + excluded.spam, suspect = suspect + excluded.suspect,"
    " virus = virus + excluded.virus, content_filter = content_filter + excluded.content_filter,"
    " count = count + excluded.count";

int store_sqlite_report_write(void *ctx, const char *gateway, const struct store_report_acc *a)
{
	struct store_conn *c = ctx;
	for (size_t i = 0; i < 2 * a->n; i++) {
		const struct store_report_delta *d = &a->v[i % a->n];
		bool totals = i >= a->n;
		sqlite3_stmt *s = store_int_stmt(c, totals ? store_report_totals_upsert_sql
							   : store_report_upsert_sql);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, store_report_names[d->report], -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, d->gran);
		sqlite3_bind_int64(s, 3, d->bucket);
		if (!totals)
			sqlite3_bind_text(s, 4, gateway, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 5, d->key, -1, SQLITE_TRANSIENT);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			sqlite3_bind_int64(s, 6 + j, d->c[j]);
		int rc =
		    store_int_step_done(c, s, totals ? "report_totals_upsert" : "report_upsert");
		if (rc < 0)
			return rc;
	}
	return 0;
}

#define STORE_REPORT_SUMS                                                                          \
	"sum(incoming), sum(clean), sum(spam), sum(suspect), sum(virus), sum(content_filter),"     \
	" sum(count)"

int store_sqlite_report_read(struct store *st, const struct store_report_query *q,
			     struct store_report_row **out, size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    !q->series
		? store_int_stmt(c,
				 "SELECT key, " STORE_REPORT_SUMS " FROM report_rollups"
				 " WHERE report = ?1 AND gran = ?2 AND bucket >= ?3 AND bucket < ?4"
				 " AND (?5 IS NULL OR gateway = ?5) GROUP BY key"
				 " ORDER BY sum(incoming) DESC, sum(count) DESC, key LIMIT ?6")
	    : q->gateway != NULL
		? store_int_stmt(c,
				 "SELECT bucket, " STORE_REPORT_SUMS " FROM report_rollups"
				 " WHERE report = ?1 AND gran = ?2 AND bucket >= ?3 AND bucket < ?4"
				 " AND gateway = ?5 GROUP BY bucket ORDER BY bucket")
		: store_int_stmt(c,
				 "SELECT bucket, " STORE_REPORT_SUMS " FROM report_totals"
				 " WHERE report = ?1 AND gran = ?2 AND bucket >= ?3 AND bucket < ?4"
				 " AND ?5 IS NULL GROUP BY bucket ORDER BY bucket");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	sqlite3_bind_text(s, 1, store_report_names[q->report], -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, q->gran);
	sqlite3_bind_int64(s, 3, q->since);
	sqlite3_bind_int64(s, 4, q->until);
	if (q->gateway != NULL)
		sqlite3_bind_text(s, 5, q->gateway, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, 5);
	if (!q->series)
		sqlite3_bind_int64(s, 6, (sqlite3_int64)q->limit);
	struct store_report_row *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		memset(&v[k], 0, sizeof(v[k]));
		if (q->series)
			v[k].at = sqlite3_column_int64(s, 0);
		else
			v[k].key = store_int_col_dup(s, 0);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			v[k].c[j] = sqlite3_column_int64(s, 1 + j);
		k++;
	}
	sqlite3_reset(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_report_rows_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

int store_sqlite_report_scan(struct store *st, int report, const char *gateway,
			     const struct store_report_span *v, size_t n, store_report_row_fn row,
			     void *arg)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	/* one reader transaction, so that the spans see one state of the rows */
	if (sqlite3_exec(store_int_db(c), "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		rc = -EIO;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sqlite3_stmt *s =
		    gateway != NULL
			? store_int_stmt(c, "SELECT key, incoming, clean, spam, suspect, virus,"
					    " content_filter, count FROM report_rollups"
					    " WHERE report = ?1 AND gran = ?2 AND bucket >= ?3"
					    " AND bucket < ?4 AND gateway = ?5")
			: store_int_stmt(c, "SELECT key, incoming, clean, spam, suspect, virus,"
					    " content_filter, count FROM report_totals"
					    " WHERE report = ?1 AND gran = ?2 AND bucket >= ?3"
					    " AND bucket < ?4");
		if (s == NULL) {
			rc = -EIO;
			break;
		}
		sqlite3_bind_text(s, 1, store_report_names[report], -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, v[i].gran);
		sqlite3_bind_int64(s, 3, v[i].since);
		sqlite3_bind_int64(s, 4, v[i].until);
		if (gateway != NULL)
			sqlite3_bind_text(s, 5, gateway, -1, SQLITE_TRANSIENT);
		int step;
		while ((step = sqlite3_step(s)) == SQLITE_ROW) {
			int64_t cnt[STORE_REPORT_NCOUNTERS];
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				cnt[j] = sqlite3_column_int64(s, 1 + j);
			const char *key = (const char *)sqlite3_column_text(s, 0);
			row(arg, key != NULL ? key : "", cnt);
		}
		sqlite3_reset(s);
		if (step != SQLITE_DONE)
			rc = store_int_read_result(-EIO);
	}
	if (sqlite3_get_autocommit(store_int_db(c)) == 0 &&
	    sqlite3_exec(store_int_db(c), "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		(void)sqlite3_exec(store_int_db(c), "ROLLBACK", NULL, NULL, NULL);
	store_int_reader_put(st, c);
	return rc;
}

/* store_report_names as an SQL list: the totals' primary key starts with the report */
#define STORE_REPORT_NAMES_SQL                                                                     \
	"'overview', 'incoming_domains', 'incoming_ips', 'sender_groups',"                         \
	" 'outgoing_destinations', 'outgoing_senders', 'internal_users', 'content_filters',"       \
	" 'virus_types', 'outbreak', 'tls', 'rate_limits'"
_Static_assert(STORE_REPORT_NREPORTS == 12, "STORE_REPORT_NAMES_SQL lists every report");

struct store_report_purge_args {
	int gran;
	int64_t before;
	size_t batch;
	uint64_t rows;
};

static int store_report_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_report_purge_args *a = arg;
	/* the per-gateway rows, then (in the same batch) the all-gateway totals */
	static const char *const sql[2] = {
	    "DELETE FROM report_rollups WHERE rowid IN (SELECT rowid FROM report_rollups"
	    " WHERE gran = ?1 AND bucket < ?2 ORDER BY bucket LIMIT ?3)",
	    "DELETE FROM report_totals WHERE (report, gran, bucket, key) IN (SELECT report, gran,"
	    " bucket, key FROM report_totals WHERE report IN (" STORE_REPORT_NAMES_SQL ")"
	    " AND gran = ?1 AND bucket < ?2 LIMIT ?3)"};
	a->rows = 0;
	for (int i = 0; i < 2 && a->rows < a->batch; i++) {
		sqlite3_stmt *s = store_int_stmt(c, sql[i]);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_int(s, 1, a->gran);
		sqlite3_bind_int64(s, 2, a->before);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)(a->batch - a->rows));
		int rc = store_int_step_done(c, s, i == 0 ? "report_purge" : "report_totals_purge");
		if (rc < 0)
			return rc;
		a->rows += (uint64_t)sqlite3_changes(store_int_db(c));
	}
	return 0;
}

int store_sqlite_report_purge(struct store *st, int gran, int64_t before, size_t batch,
			      uint64_t *rows)
{
	struct store_report_purge_args a = {gran, before, batch, 0};
	int rc = store_int_run_job(st, store_report_purge_job, &a);
	if (rc == 0)
		*rows = a.rows;
	return rc;
}

/* ---- system_capacity (migration 23) ---- */

int store_sqlite_capacity_write(struct store_conn *c, const char *gateway, int64_t at,
				const struct store_capacity_sample *v)
{
	sqlite3_stmt *s = store_int_stmt(
	    c, "INSERT INTO capacity_hours AS t (gateway, bucket, samples, received, relayed,"
	       " connections, current_sum, current_max, load_sum, load_max, memory_max,"
	       " backlog_max) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6, ?7, ?7, ?8, ?9)"
	       " ON CONFLICT (gateway, bucket) DO UPDATE SET samples = t.samples + 1,"
	       " received = t.received + excluded.received,"
	       " relayed = t.relayed + excluded.relayed,"
	       " connections = t.connections + excluded.connections,"
	       " current_sum = t.current_sum + excluded.current_sum,"
	       " current_max = max(t.current_max, excluded.current_max),"
	       " load_sum = t.load_sum + excluded.load_sum,"
	       " load_max = max(t.load_max, excluded.load_max),"
	       " memory_max = max(t.memory_max, excluded.memory_max),"
	       " backlog_max = max(t.backlog_max, excluded.backlog_max)");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, gateway, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, store_report_bucket(STORE_REPORT_HOUR, at));
	sqlite3_bind_int64(s, 3, v->received);
	sqlite3_bind_int64(s, 4, v->relayed);
	sqlite3_bind_int64(s, 5, v->connections);
	sqlite3_bind_int64(s, 6, v->current);
	sqlite3_bind_int64(s, 7, v->load);
	sqlite3_bind_int64(s, 8, v->memory);
	sqlite3_bind_int64(s, 9, v->backlog);
	return store_int_step_done(c, s, "capacity_upsert");
}

int store_sqlite_capacity_read(struct store *st, const char *gateway, int64_t since, int64_t until,
			       struct store_capacity_row **out, size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(
	    c, "SELECT bucket, sum(samples), sum(received), sum(relayed), sum(connections),"
	       " sum(current_sum), max(current_max), sum(load_sum), max(load_max),"
	       " max(memory_max), max(backlog_max) FROM capacity_hours"
	       " WHERE bucket >= ?1 AND bucket < ?2 AND (?3 IS NULL OR gateway = ?3)"
	       " GROUP BY bucket ORDER BY bucket");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, since);
	sqlite3_bind_int64(s, 2, until);
	if (gateway != NULL)
		sqlite3_bind_text(s, 3, gateway, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, 3);
	struct store_capacity_row *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		int64_t *f[] = {&v[k].at,	   &v[k].samples,     &v[k].received,
				&v[k].relayed,	   &v[k].connections, &v[k].current_sum,
				&v[k].current_max, &v[k].load_sum,    &v[k].load_max,
				&v[k].memory_max,  &v[k].backlog_max};
		for (int j = 0; j < (int)(sizeof(f) / sizeof(f[0])); j++)
			*f[j] = sqlite3_column_int64(s, j);
		k++;
	}
	sqlite3_reset(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		free(v);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

static int store_capacity_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_report_purge_args *a = arg;
	sqlite3_stmt *s = store_int_stmt(
	    c, "DELETE FROM capacity_hours WHERE (gateway, bucket) IN (SELECT gateway, bucket"
	       " FROM capacity_hours WHERE bucket < ?1 ORDER BY bucket LIMIT ?2)");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->before);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)a->batch);
	int rc = store_int_step_done(c, s, "capacity_purge");
	if (rc == 0)
		a->rows = (uint64_t)sqlite3_changes(store_int_db(c));
	return rc;
}

int store_sqlite_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows)
{
	struct store_report_purge_args a = {STORE_REPORT_HOUR, before, batch, 0};
	int rc = store_int_run_job(st, store_capacity_purge_job, &a);
	if (rc == 0)
		*rows = a.rows;
	return rc;
}
