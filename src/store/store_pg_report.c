/*
 * store_pg_report — the PostgreSQL backend's reporting rollups (the table of its
 * reporting migration), with the semantics of store_sqlite_report.c: the rows a
 * batch of events adds to (in the batch's transaction, one statement for all
 * its rows of report_rollups and one for the all-gateway rows of
 * report_totals), the reads (a top-N's spans scanned in one snapshot for
 * store_report.c to merge) and the retention.
 *
 * Two managers sharing the database may add to the same row at once: the rows
 * of a batch come sorted (store_report.c), so their row locks are always taken
 * in one order and never deadlock.
 *
 * Not for: what counts where (store_report.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

int store_pg_report_fetch(void *ctx, const char *gateway, const char *const *ids, size_t n,
			  int64_t since, struct store_event_row **out, size_t *nout)
{
	PGconn *c = ctx;
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	store_pg_array(&p, ids, n);
	store_pg_int(&p, since);
	PGresult *r = store_pg_exec(c, "report_events",
				    "SELECT gateway, seq, at, type, msg_id, detail FROM events"
				    " WHERE gateway = $1 AND msg_id = ANY($2::text[]) AND at >= $3"
				    " ORDER BY msg_id, seq",
				    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	store_pg_event_rows(r, out, nout);
	return 0;
}

int store_pg_report_write(void *ctx, const char *gateway, const struct store_report_acc *a)
{
	PGconn *c = ctx;
	enum { NCOL = 4 + STORE_REPORT_NCOUNTERS };
	const char **col[NCOL];
	char **owned = xcalloc(a->n * (NCOL - 2) + 1, sizeof(*owned));
	size_t nowned = 0;
	for (size_t k = 0; k < NCOL; k++)
		col[k] = xcalloc(a->n + 1, sizeof(*col[k]));
	for (size_t i = 0; i < a->n; i++) {
		const struct store_report_delta *d = &a->v[i];
		col[0][i] = store_report_names[d->report];
		col[1][i] = owned[nowned++] = xasprintf("%d", d->gran);
		col[2][i] = owned[nowned++] = xasprintf("%lld", (long long)d->bucket);
		col[3][i] = d->key;
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			col[4 + j][i] = owned[nowned++] = xasprintf("%lld", (long long)d->c[j]);
	}
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	for (size_t k = 0; k < NCOL; k++)
		store_pg_array(&p, col[k], a->n);
	int rc = store_pg_do(
	    c, "report_upsert",
	    "INSERT INTO report_rollups AS t (report, gran, bucket, gateway, key, incoming, clean,"
	    " spam, suspect, virus, content_filter, count)"
	    " SELECT r, g::smallint, b::bigint, $1, k, i::bigint, c::bigint, s::bigint, u::bigint,"
	    " v::bigint, f::bigint, n::bigint FROM unnest($2::text[], $3::text[], $4::text[],"
	    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
	    " $12::text[]) AS x(r, g, b, k, i, c, s, u, v, f, n)"
	    " ON CONFLICT (report, gran, bucket, gateway, key) DO UPDATE SET"
	    " incoming = t.incoming + excluded.incoming, clean = t.clean + excluded.clean,"
	    " spam = t.spam + excluded.spam, suspect = t.suspect + excluded.suspect,"
	    " virus = t.virus + excluded.virus,"
	    " content_filter = t.content_filter + excluded.content_filter,"
	    " count = t.count + excluded.count",
	    &p, NULL);
	/* the same deltas to the all-gateway totals ($1 unused there) */
	if (rc == 0)
		rc = store_pg_do(
		    c, "report_totals_upsert",
		    "INSERT INTO report_totals AS t (report, gran, bucket, key, incoming, clean,"
		    " spam, suspect, virus, content_filter, count)"
		    " SELECT r, g::smallint, b::bigint, k, i::bigint, c::bigint, s::bigint,"
		    " u::bigint, v::bigint, f::bigint, n::bigint FROM unnest($2::text[],"
		    " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],"
		    " $9::text[], $10::text[], $11::text[], $12::text[])"
		    " AS x(r, g, b, k, i, c, s, u, v, f, n) WHERE $1::text IS NOT NULL"
		    " ON CONFLICT (report, gran, bucket, key) DO UPDATE SET"
		    " incoming = t.incoming + excluded.incoming, clean = t.clean + excluded.clean,"
		    " spam = t.spam + excluded.spam, suspect = t.suspect + excluded.suspect,"
		    " virus = t.virus + excluded.virus,"
		    " content_filter = t.content_filter + excluded.content_filter,"
		    " count = t.count + excluded.count",
		    &p, NULL);
	store_pg_params_clear(&p);
	for (size_t k = 0; k < NCOL; k++)
		free(col[k]);
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	return rc;
}

#define STORE_PG_REPORT_SUMS                                                                       \
	"sum(incoming), sum(clean), sum(spam), sum(suspect), sum(virus), sum(content_filter),"     \
	" sum(count)"

int store_pg_report_read(struct store *st, const struct store_report_query *q,
			 struct store_report_row **out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_text(&p, store_report_names[q->report]);
	store_pg_int(&p, q->gran);
	store_pg_int(&p, q->since);
	store_pg_int(&p, q->until);
	store_pg_text(&p, q->gateway);
	store_pg_int(&p, q->series ? 0 : (int64_t)q->limit);
	int rc = store_pg_query(
	    store_pg_of(st), "report_read",
	    q->series && q->gateway == NULL
		? "SELECT bucket, " STORE_PG_REPORT_SUMS " FROM report_totals"
		  " WHERE report = $1 AND gran = $2 AND bucket >= $3 AND bucket < $4"
		  " AND $5::text IS NULL AND $6::bigint = 0 GROUP BY bucket ORDER BY bucket"
	    : q->series
		? "SELECT bucket, " STORE_PG_REPORT_SUMS " FROM report_rollups"
		  " WHERE report = $1 AND gran = $2 AND bucket >= $3 AND bucket < $4"
		  " AND ($5::text IS NULL OR gateway = $5) AND $6::bigint = 0"
		  " GROUP BY bucket ORDER BY bucket"
		: "SELECT key, " STORE_PG_REPORT_SUMS " FROM report_rollups"
		  " WHERE report = $1 AND gran = $2 AND bucket >= $3 AND bucket < $4"
		  " AND ($5::text IS NULL OR gateway = $5) GROUP BY key"
		  " ORDER BY sum(incoming) DESC, sum(count) DESC, key COLLATE \"C\" LIMIT $6",
	    &p, &r);
	if (rc < 0)
		return rc;
	int nr = PQntuples(r);
	struct store_report_row *v = xcalloc((size_t)nr + 1, sizeof(*v));
	for (int i = 0; i < nr; i++) {
		if (q->series)
			v[i].at = store_pg_i64(r, i, 0);
		else
			v[i].key = store_pg_dup(r, i, 0);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
			v[i].c[j] = store_pg_i64(r, i, 1 + j);
	}
	PQclear(r);
	*out = v;
	*n = (size_t)nr;
	return 0;
}

int store_pg_report_scan(struct store *st, int report, const char *gateway,
			 const struct store_report_span *v, size_t n, store_report_row_fn row,
			 void *arg)
{
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(store_pg_of(st), &c);
	/* one snapshot for every span */
	if (rc == 0)
		rc = store_pg_read_begin(c->pg);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct store_pg_params p = {0};
		store_pg_text(&p, store_report_names[report]);
		store_pg_int(&p, v[i].gran);
		store_pg_int(&p, v[i].since);
		store_pg_int(&p, v[i].until);
		store_pg_text(&p, gateway);
		PGresult *r = store_pg_exec(
		    c->pg, "report_scan",
		    gateway != NULL
			? "SELECT key, incoming, clean, spam, suspect, virus, content_filter, count"
			  " FROM report_rollups WHERE report = $1 AND gran = $2 AND bucket >= $3"
			  " AND bucket < $4 AND gateway = $5"
			: "SELECT key, incoming, clean, spam, suspect, virus, content_filter, count"
			  " FROM report_totals WHERE report = $1 AND gran = $2 AND bucket >= $3"
			  " AND bucket < $4 AND $5::text IS NULL",
		    &p, false);
		store_pg_params_clear(&p);
		if (r == NULL) {
			rc = -EIO;
			break;
		}
		for (int k = 0; k < PQntuples(r); k++) {
			int64_t cnt[STORE_REPORT_NCOUNTERS];
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				cnt[j] = store_pg_i64(r, k, 1 + j);
			row(arg, PQgetvalue(r, k, 0), cnt);
		}
		PQclear(r);
	}
	if (c != NULL)
		store_pg_conn_put(store_pg_of(st), c);
	return rc;
}

struct store_pg_report_purge_args {
	int gran;
	int64_t before;
	size_t batch;
	uint64_t rows;
};

static int store_pg_report_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_report_purge_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->gran);
	store_pg_int(&p, a->before);
	store_pg_int(&p, (int64_t)a->batch);
	int rc = store_pg_do(c, "report_purge",
			     "DELETE FROM report_rollups WHERE ctid IN (SELECT ctid FROM"
			     " report_rollups WHERE gran = $1 AND bucket < $2 LIMIT $3)",
			     &p, &a->rows);
	store_pg_params_clear(&p);
	/* the all-gateway totals in the rest of the batch */
	if (rc == 0 && a->rows < a->batch) {
		uint64_t more = 0;
		store_pg_int(&p, a->gran);
		store_pg_int(&p, a->before);
		store_pg_int(&p, (int64_t)(a->batch - a->rows));
		/* every report: the primary key starts with it */
		store_pg_array(&p, store_report_names, STORE_REPORT_NREPORTS);
		rc = store_pg_do(c, "report_totals_purge",
				 "DELETE FROM report_totals WHERE ctid IN (SELECT ctid FROM"
				 " report_totals WHERE report = ANY($4::text[]) AND gran = $1"
				 " AND bucket < $2 LIMIT $3)",
				 &p, &more);
		store_pg_params_clear(&p);
		a->rows += more;
	}
	return rc;
}

int store_pg_report_purge(struct store *st, int gran, int64_t before, size_t batch, uint64_t *rows)
{
	struct store_pg_report_purge_args a = {gran, before, batch, 0};
	int rc = store_pg_tx(store_pg_of(st), store_pg_report_purge_tx, &a);
	if (rc < 0)
		return rc;
	*rows = a.rows;
	return 0;
}

/* ---- system_capacity (migration 23) ---- */

int store_pg_capacity_write(PGconn *c, const char *gateway, const struct store_event *const *v,
			    size_t n)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct store_capacity_sample *x = v[i]->capacity;
		if (x == NULL)
			continue;
		struct store_pg_params p = {0};
		store_pg_text(&p, gateway);
		store_pg_int(&p, store_report_bucket(STORE_REPORT_HOUR, v[i]->at));
		store_pg_int(&p, x->received);
		store_pg_int(&p, x->relayed);
		store_pg_int(&p, x->connections);
		store_pg_int(&p, x->current);
		store_pg_int(&p, x->load);
		store_pg_int(&p, x->memory);
		store_pg_int(&p, x->backlog);
		rc = store_pg_do(
		    c, "capacity_upsert",
		    "INSERT INTO capacity_hours AS t (gateway, bucket, samples, received, relayed,"
		    " connections, current_sum, current_max, load_sum, load_max, memory_max,"
		    " backlog_max) VALUES ($1, $2, 1, $3, $4, $5, $6, $6, $7, $7, $8, $9)"
		    " ON CONFLICT (gateway, bucket) DO UPDATE SET samples = t.samples + 1,"
		    " received = t.received + excluded.received,"
		    " relayed = t.relayed + excluded.relayed,"
		    " connections = t.connections + excluded.connections,"
		    " current_sum = t.current_sum + excluded.current_sum,"
		    " current_max = greatest(t.current_max, excluded.current_max),"
		    " load_sum = t.load_sum + excluded.load_sum,"
		    " load_max = greatest(t.load_max, excluded.load_max),"
		    " memory_max = greatest(t.memory_max, excluded.memory_max),"
		    " backlog_max = greatest(t.backlog_max, excluded.backlog_max)",
		    &p, NULL);
		store_pg_params_clear(&p);
	}
	return rc;
}

int store_pg_capacity_read(struct store *st, const char *gateway, int64_t since, int64_t until,
			   struct store_capacity_row **out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_int(&p, since);
	store_pg_int(&p, until);
	store_pg_text(&p, gateway);
	int rc = store_pg_query(
	    store_pg_of(st), "capacity_read",
	    "SELECT bucket, sum(samples), sum(received), sum(relayed), sum(connections),"
	    " sum(current_sum), max(current_max), sum(load_sum), max(load_max),"
	    " max(memory_max), max(backlog_max) FROM capacity_hours"
	    " WHERE bucket >= $1 AND bucket < $2 AND ($3::text IS NULL OR gateway = $3)"
	    " GROUP BY bucket ORDER BY bucket",
	    &p, &r);
	if (rc < 0)
		return rc;
	int nr = PQntuples(r);
	struct store_capacity_row *v = xcalloc((size_t)nr + 1, sizeof(*v));
	for (int i = 0; i < nr; i++) {
		int64_t *f[] = {&v[i].at,	   &v[i].samples,     &v[i].received,
				&v[i].relayed,	   &v[i].connections, &v[i].current_sum,
				&v[i].current_max, &v[i].load_sum,    &v[i].load_max,
				&v[i].memory_max,  &v[i].backlog_max};
		for (int j = 0; j < (int)(sizeof(f) / sizeof(f[0])); j++)
			*f[j] = store_pg_i64(r, i, j);
	}
	PQclear(r);
	*out = v;
	*n = (size_t)nr;
	return 0;
}

static int store_pg_capacity_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_report_purge_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->before);
	store_pg_int(&p, (int64_t)a->batch);
	int rc = store_pg_do(c, "capacity_purge",
			     "DELETE FROM capacity_hours WHERE ctid IN (SELECT ctid FROM"
			     " capacity_hours WHERE bucket < $1 LIMIT $2)",
			     &p, &a->rows);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows)
{
	struct store_pg_report_purge_args a = {STORE_REPORT_HOUR, before, batch, 0};
	int rc = store_pg_tx(store_pg_of(st), store_pg_capacity_purge_tx, &a);
	if (rc < 0)
		return rc;
	*rows = a.rows;
	return 0;
}
