/*
 * store_pg_backfill — the PostgreSQL backend's rollup rows that gateways send
 * once (its migration 21), with the semantics of store_backfill.c: a row is added
 * to report_rollups only when its key goes into report_backfill for the first
 * time (ON CONFLICT DO NOTHING: of two pushes of one row at once, the second
 * waits for the first and adds nothing), to its own bucket and to the day and
 * month of the switch that the gateway does not send.
 *
 * Not for: checking rows (store.c and api_backfill.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>

#include "common/xalloc.h"

#define STORE_PG_BACKFILL_SUMS                                                                     \
	" UPDATE SET incoming = t.incoming + excluded.incoming,"                                   \
	" clean = t.clean + excluded.clean, spam = t.spam + excluded.spam,"                        \
	" suspect = t.suspect + excluded.suspect, virus = t.virus + excluded.virus,"               \
	" content_filter = t.content_filter + excluded.content_filter,"                            \
	" count = t.count + excluded.count"

static const char store_pg_backfill_add_sql[] =
    "INSERT INTO report_rollups AS t (report, gran, bucket, gateway, key, incoming, clean,"
    " spam, suspect, virus, content_filter, count) VALUES ($1, $2::smallint, $3::bigint, $4,"
    " $5, $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint,"
    " $12::bigint) ON CONFLICT (report, gran, bucket, gateway, key) DO" STORE_PG_BACKFILL_SUMS;
/* the same parameters; $4, the gateway, only where the SELECT needs a condition */
static const char store_pg_backfill_totals_sql[] =
    "INSERT INTO report_totals AS t (report, gran, bucket, key, incoming, clean, spam,"
    " suspect, virus, content_filter, count) SELECT $1, $2::smallint, $3::bigint, $5,"
    " $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint, $12::bigint"
    " WHERE $4::text IS NOT NULL ON CONFLICT (report, gran, bucket, key) DO" STORE_PG_BACKFILL_SUMS;

struct store_pg_backfill {
	const char *gateway;
	int64_t cutoff;
	const struct store_rollup_in *v;
	size_t n;
	bool done;
	int64_t now;
	size_t *stored;
};

static int store_pg_backfill_done_at(PGconn *c, const char *gateway, int64_t *at)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	PGresult *r =
	    store_pg_exec(c, "backfill_state",
			  "SELECT done_at FROM report_backfill_done WHERE gateway = $1", &p, false);
	store_pg_params_clear(&p);
	*at = 0;
	if (r == NULL)
		return -EIO;
	if (PQntuples(r) > 0)
		*at = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

static int store_pg_backfill_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_backfill *j = arg;
	int64_t at = 0;
	*j->stored = 0;
	if (store_pg_backfill_done_at(c, j->gateway, &at) < 0)
		return -EIO;
	if (at > 0)
		return -EALREADY;
	for (size_t i = 0; i < j->n; i++) {
		const struct store_rollup_in *r = &j->v[i];
		struct store_pg_params p = {0};
		store_pg_text(&p, j->gateway);
		store_pg_text(&p, store_report_names[r->report]);
		store_pg_int(&p, r->gran);
		store_pg_int(&p, r->bucket);
		store_pg_text(&p, r->key);
		uint64_t rows = 0;
		int rc =
		    store_pg_do(c, "backfill_mark",
				"INSERT INTO report_backfill (gateway, report, gran, bucket, key)"
				" VALUES ($1, $2, $3::smallint, $4::bigint, $5)"
				" ON CONFLICT DO NOTHING",
				&p, &rows);
		store_pg_params_clear(&p);
		if (rc < 0)
			return rc;
		if (rows == 0)
			continue; /* taken before: a replay */
		/* the row's bucket and the coarser ones of the switch that the gateway
		 * does not send; each the gateway's row, and the all-gateway row the
		 * reports over every gateway read (report_totals, which leaves $4 out) */
		int gv[STORE_REPORT_NGRANS];
		int64_t bv[STORE_REPORT_NGRANS];
		size_t nb = store_report_backfill_buckets(r->gran, r->bucket, j->cutoff, gv, bv);
		for (size_t b = 0; b < nb && rc >= 0; b++) {
			store_pg_text(&p, store_report_names[r->report]);
			store_pg_int(&p, gv[b]);
			store_pg_int(&p, bv[b]);
			store_pg_text(&p, j->gateway);
			store_pg_text(&p, r->key);
			for (int k = 0; k < STORE_REPORT_NCOUNTERS; k++)
				store_pg_int(&p, r->c[k]);
			for (int t = 0; t < 2 && rc >= 0; t++)
				rc = store_pg_do(c, t == 0 ? "backfill_add" : "backfill_totals",
						 t == 0 ? store_pg_backfill_add_sql
							: store_pg_backfill_totals_sql,
						 &p, NULL);
			store_pg_params_clear(&p);
		}
		if (rc < 0)
			return rc;
		(*j->stored)++;
	}
	if (j->done) {
		struct store_pg_params p = {0};
		store_pg_text(&p, j->gateway);
		store_pg_int(&p, j->now > 0 ? j->now : 1);
		int rc = store_pg_do(c, "backfill_finish",
				     "INSERT INTO report_backfill_done (gateway, done_at)"
				     " VALUES ($1, $2::bigint)",
				     &p, NULL);
		store_pg_params_clear(&p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int store_pg_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
			     const struct store_rollup_in *v, size_t n, bool done, int64_t now,
			     size_t *stored)
{
	struct store_pg_backfill j = {gateway, cutoff, v, n, done, now, stored};
	int rc = store_pg_tx(store_pg_of(st), store_pg_backfill_tx, &j);
	if (rc < 0)
		*stored = 0; /* rolled back */
	return rc;
}

int store_pg_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	int rc =
	    store_pg_query(store_pg_of(st), "backfill_state",
			   "SELECT done_at FROM report_backfill_done WHERE gateway = $1", &p, &r);
	*done_at = 0;
	if (rc < 0)
		return rc;
	if (PQntuples(r) > 0)
		*done_at = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int store_pg_report_export(struct store *st, int gran, int64_t before,
			   const struct store_rollup_row *after, size_t limit,
			   struct store_rollup_row **out, size_t *n)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	store_pg_int(&p, gran);
	store_pg_int(&p, before);
	store_pg_text(&p, after->key != NULL ? store_report_names[after->report] : NULL);
	store_pg_int(&p, after->key != NULL ? after->bucket : 0);
	store_pg_text(&p, after->key);
	store_pg_int(&p, (int64_t)limit);
	int rc = store_pg_query(
	    store_pg_of(st), "report_export",
	    "SELECT report, bucket, key, sum(incoming), sum(clean), sum(spam), sum(suspect),"
	    " sum(virus), sum(content_filter), sum(count) FROM report_rollups WHERE"
	    " gran = $1::smallint AND bucket < $2::bigint AND ($3::text IS NULL OR"
	    " report COLLATE \"C\" > $3::text OR (report = $3::text AND (bucket > $4::bigint OR"
	    " (bucket = $4::bigint AND key COLLATE \"C\" > $5::text)))) GROUP BY report, bucket,"
	    " key ORDER BY report COLLATE \"C\", bucket, key COLLATE \"C\" LIMIT $6::bigint",
	    &p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_rollup_row *v = xcalloc(rows + 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < rows; i++) {
		int report = store_report_by_name(PQgetvalue(r, (int)i, 0));
		if (report < 0)
			continue;
		v[k].report = report;
		v[k].gran = gran;
		v[k].bucket = store_pg_i64(r, (int)i, 1);
		v[k].key = store_pg_dup(r, (int)i, 2);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			v[k].c[j] = store_pg_i64(r, (int)i, 3 + j);
		k++;
	}
	PQclear(r);
	*out = v;
	*n = k;
	return 0;
}
