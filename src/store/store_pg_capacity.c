/*
 * store_pg_capacity — the capacity of the PVO quarantines together (PV7) in the
 * PostgreSQL backend, with store.h's contract (store_pvo_usage,
 * store_pvo_overflow) and the semantics of store_capacity.c. Not for: when the
 * sweep runs (quarantine/capacity.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static const char sql_pvo_usage[] =
    "SELECT messages, bytes, EXISTS (SELECT 1 FROM quarantines q"
    "  WHERE q.type IN ('policy', 'virus', 'outbreak', 'unclassified')"
    "  AND NOT q.overflow_exempt AND EXISTS (SELECT 1 FROM memberships w"
    "    WHERE w.quarantine = q.name AND w.state = 0))"
    " FROM quarantines WHERE name = '" STORE_PVO_MARKER "'";

static void store_pg_pvo_usage_of(PGresult *r, struct store_pvo_usage *out)
{
	memset(out, 0, sizeof(*out));
	if (PQntuples(r) != 1)
		return;
	out->messages = (uint64_t)store_pg_i64(r, 0, 0);
	out->bytes = (uint64_t)store_pg_i64(r, 0, 1);
	out->sweepable = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
}

int store_pg_pvo_usage(struct store *s, struct store_pvo_usage *out)
{
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), "pvo_usage", sql_pvo_usage, NULL, &r);
	if (rc < 0)
		return rc;
	store_pg_pvo_usage_of(r, out);
	PQclear(r);
	return 0;
}

/* The quarantines the sweep may act in, with the action it takes there. */
static const char sql_overflow_quarantines[] =
    "SELECT name, (default_action = 'release')::int, (type = 'outbreak')::int FROM quarantines"
    " WHERE type IN ('policy', 'virus', 'outbreak', 'unclassified') AND NOT overflow_exempt";
/* One quarantine's oldest held memberships (memberships_oldest, every day's). */
static const char sql_overflow_oldest[] =
    "SELECT msg_id, entered_at FROM memberships WHERE quarantine = $1 AND state = 0"
    " ORDER BY entered_at, msg_id LIMIT $2";
/*
 * The Outbreak quarantine (PV10): as many as by age, the n-th oldest's place in
 * the batch going to the n-th closest to expiry.
 */
static const char sql_overflow_expiring[] =
    "WITH a AS (SELECT entered_at, row_number() OVER (ORDER BY entered_at, msg_id) AS n"
    "  FROM memberships WHERE quarantine = $1 AND state = 0"
    "  ORDER BY entered_at, msg_id LIMIT $2),"
    " e AS (SELECT msg_id, row_number() OVER (ORDER BY expires_at, msg_id) AS n"
    "  FROM memberships WHERE quarantine = $1 AND state = 0"
    "  ORDER BY expires_at, msg_id LIMIT $2)"
    " SELECT e.msg_id, a.entered_at FROM e JOIN a ON a.n = e.n ORDER BY e.n";

struct store_pg_overflow_pick {
	char *msg_id;
	int64_t entered_at;
	int q;	     /* row of the quarantines' result */
	size_t rank; /* its place in its quarantine's picks */
};

static int store_pg_overflow_pick_cmp(const void *a, const void *b)
{
	const struct store_pg_overflow_pick *x = a, *y = b;
	if (x->entered_at != y->entered_at)
		return x->entered_at < y->entered_at ? -1 : 1;
	if (x->q == y->q)
		return x->rank < y->rank ? -1 : x->rank > y->rank;
	return strcmp(x->msg_id, y->msg_id);
}

struct store_pg_overflow_args {
	uint64_t max_bytes;
	size_t batch;
	int64_t now;
	struct store_pvo_overflow out;
};

static int store_pg_overflow_usage(PGconn *c, struct store_pvo_usage *u)
{
	PGresult *r = store_pg_exec(c, "pvo_usage", sql_pvo_usage, NULL, false);
	if (r == NULL)
		return -EIO;
	store_pg_pvo_usage_of(r, u);
	PQclear(r);
	return 0;
}

/* Applies the quarantine's default action to one pick, with its audit row. */
static int store_pg_overflow_one(PGconn *c, const char *id, const char *quarantine, bool release,
				 int64_t now)
{
	struct store_pvo_request req = {
	    .action = release ? STORE_PVO_RELEASE : STORE_PVO_DELETE,
	    .quarantine = quarantine,
	};
	struct store_pvo_outcome o = {0};
	int rc = store_pg_pvo_apply(c, id, &req, now, &o);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_int(&p, now);
	store_pg_text(&p, release ? "pvo_overflow_release" : "pvo_overflow_delete");
	store_pg_text(&p, id);
	store_pg_text(&p, quarantine);
	rc =
	    store_pg_do(c, "overflow_audit",
			"INSERT INTO audit (at, actor, action, target, detail)"
			" VALUES ($1, 'system', $2, $3, json_build_object('quarantine', $4::text))",
			&p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

static int store_pg_overflow_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_overflow_args *a = arg;
	memset(&a->out, 0, sizeof(a->out));
	struct store_pvo_usage u;
	int rc = store_pg_overflow_usage(c, &u);
	if (rc < 0 || u.bytes <= a->max_bytes || !u.sweepable) {
		a->out.after = u;
		return rc;
	}
	PGresult *qs =
	    store_pg_exec(c, "overflow_quarantines", sql_overflow_quarantines, NULL, false);
	if (qs == NULL)
		return -EIO;
	struct store_pg_overflow_pick *picks = NULL;
	size_t n = 0;
	for (int q = 0; rc == 0 && q < PQntuples(qs); q++) {
		struct store_pg_params p = {0};
		store_pg_text(&p, PQgetvalue(qs, q, 0));
		store_pg_int(&p, (int64_t)a->batch);
		bool by_expiry = strcmp(PQgetvalue(qs, q, 2), "1") == 0;
		PGresult *r = store_pg_exec(c, "overflow_oldest",
					    by_expiry ? sql_overflow_expiring : sql_overflow_oldest,
					    &p, false);
		store_pg_params_clear(&p);
		if (r == NULL) {
			rc = -EIO;
			break;
		}
		for (int k = 0; k < PQntuples(r); k++) {
			picks = xreallocarray(picks, n + 1, sizeof(*picks));
			picks[n++] = (struct store_pg_overflow_pick){
			    .msg_id = store_pg_dup(r, k, 0),
			    .entered_at = store_pg_i64(r, k, 1),
			    .q = q,
			    .rank = (size_t)k,
			};
		}
		PQclear(r);
	}
	if (n > 0)
		qsort(picks, n, sizeof(*picks), store_pg_overflow_pick_cmp);
	for (size_t i = 0; rc == 0 && i < n && i < a->batch; i++) {
		const char *name = PQgetvalue(qs, picks[i].q, 0);
		bool release = strcmp(PQgetvalue(qs, picks[i].q, 1), "1") == 0;
		rc = store_pg_overflow_one(c, picks[i].msg_id, name, release, a->now);
		if (rc == -EALREADY || rc == -ENXIO) {
			/* deleted from another quarantine earlier in this batch */
			rc = 0;
			continue;
		}
		if (rc == 0)
			*(release ? &a->out.released : &a->out.deleted) += 1;
		/* no more than the limit needs: stop once within it */
		PGresult *b =
		    rc == 0
			? store_pg_exec(
			      c, "overflow_bytes",
			      "SELECT bytes FROM quarantines WHERE name = '" STORE_PVO_MARKER "'",
			      NULL, false)
			: NULL;
		bool within = b != NULL && PQntuples(b) == 1 &&
			      (uint64_t)store_pg_i64(b, 0, 0) <= a->max_bytes;
		PQclear(b);
		if (within)
			break;
	}
	if (rc == 0)
		rc = store_pg_overflow_usage(c, &a->out.after);
	for (size_t i = 0; i < n; i++)
		free(picks[i].msg_id);
	free(picks);
	PQclear(qs);
	return rc;
}

int store_pg_pvo_overflow(struct store *s, uint64_t max_bytes, size_t batch, int64_t now,
			  struct store_pvo_overflow *out)
{
	struct store_pg_overflow_args a = {.max_bytes = max_bytes, .batch = batch, .now = now};
	int rc = store_pg_tx(store_pg_of(s), store_pg_overflow_tx, &a);
	*out = rc == 0 ? a.out : (struct store_pvo_overflow){0};
	return rc;
}
