/*
 * store_capacity — the capacity of the PVO quarantines together (PV7) in the
 * SQLite backend: how much they hold, and the overflow sweep's batch, which gives
 * the oldest memberships of quarantines not exempt from it their quarantine's
 * default action early. The contract is store.h's (store_pvo_usage,
 * store_pvo_overflow). Not for: when the sweep runs (quarantine/capacity.c).
 */
#include "store/store.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* The PVO counters, and whether a non-exempt quarantine holds a membership. */
static const char sql_pvo_usage[] =
    "SELECT messages, bytes, EXISTS (SELECT 1 FROM quarantines q"
    "  WHERE q.type IN ('policy', 'virus', 'outbreak', 'unclassified')"
    "  AND q.overflow_exempt = 0 AND EXISTS (SELECT 1 FROM memberships w"
    "    WHERE w.quarantine = q.name AND w.state = 0))"
    " FROM quarantines WHERE name = '" STORE_PVO_MARKER "'";

int store_sqlite_pvo_usage_conn(struct store_conn *c, struct store_pvo_usage *out)
{
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_usage);
	if (s == NULL)
		return -EIO;
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		out->messages = (uint64_t)sqlite3_column_int64(s, 0);
		out->bytes = (uint64_t)sqlite3_column_int64(s, 1);
		out->sweepable = sqlite3_column_int(s, 2) != 0;
	}
	sqlite3_reset(s);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_usage", store_int_db(c));
		return -EIO;
	}
	return 0;
}

int store_sqlite_pvo_usage(struct store *st, struct store_pvo_usage *out)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = store_sqlite_pvo_usage_conn(c, out);
	store_int_reader_put(st, c);
	return store_int_read_result(rc);
}

/* The quarantines the sweep may act in, with the action it takes there. */
static const char sql_overflow_quarantines[] =
    "SELECT name, default_action = 'release', type = 'outbreak' FROM quarantines"
    " WHERE type IN ('policy', 'virus', 'outbreak', 'unclassified') AND overflow_exempt = 0";
/* One quarantine's oldest held memberships (memberships_oldest). */
static const char sql_overflow_oldest[] =
    "SELECT msg_id, entered_at FROM memberships WHERE quarantine = ?1 AND state = 0"
    " ORDER BY entered_at, msg_id LIMIT ?2";
/*
 * The Outbreak quarantine (PV10): as many as by age, the n-th oldest's place in
 * the batch going to the n-th closest to expiry.
 */
static const char sql_overflow_expiring[] =
    "WITH a AS (SELECT entered_at, row_number() OVER (ORDER BY entered_at, msg_id) AS n"
    "  FROM memberships WHERE quarantine = ?1 AND state = 0"
    "  ORDER BY entered_at, msg_id LIMIT ?2),"
    " e AS (SELECT msg_id, row_number() OVER (ORDER BY expires_at, msg_id) AS n"
    "  FROM memberships WHERE quarantine = ?1 AND state = 0"
    "  ORDER BY expires_at, msg_id LIMIT ?2)"
    " SELECT e.msg_id, a.entered_at FROM e JOIN a ON a.n = e.n ORDER BY e.n";
static const char sql_overflow_bytes[] =
    "SELECT bytes FROM quarantines WHERE name = '" STORE_PVO_MARKER "'";
static const char sql_overflow_audit[] =
    "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, 'system', ?2, ?3, ?4)";

struct store_overflow_pick {
	char *msg_id;
	int64_t entered_at;
	size_t q;    /* index into the quarantines */
	size_t rank; /* its place in its quarantine's picks */
};

static int store_overflow_pick_cmp(const void *a, const void *b)
{
	const struct store_overflow_pick *x = a, *y = b;
	if (x->entered_at != y->entered_at)
		return x->entered_at < y->entered_at ? -1 : 1;
	if (x->q == y->q)
		return x->rank < y->rank ? -1 : x->rank > y->rank;
	return strcmp(x->msg_id, y->msg_id);
}

struct store_overflow_quarantine {
	char *name;
	bool release;	/* its default_action */
	bool by_expiry; /* the Outbreak quarantine: closest to expiry first */
};

/* The batch oldest held memberships of the non-exempt quarantines, oldest first. */
static int store_overflow_picks(struct store_conn *c, size_t batch,
				struct store_overflow_quarantine **qs, size_t *nq,
				struct store_overflow_pick **picks, size_t *npicks)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_overflow_quarantines);
	if (s == NULL)
		return -EIO;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		*qs = xreallocarray(*qs, *nq + 1, sizeof(**qs));
		(*qs)[*nq].name = store_int_col_dup(s, 0);
		(*qs)[*nq].release = sqlite3_column_int(s, 1) != 0;
		(*qs)[*nq].by_expiry = sqlite3_column_int(s, 2) != 0;
		(*nq)++;
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("overflow_quarantines", store_int_db(c));
		return -EIO;
	}
	for (size_t q = 0; q < *nq; q++) {
		if ((s = store_int_stmt(c, (*qs)[q].by_expiry ? sql_overflow_expiring
							      : sql_overflow_oldest)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, (*qs)[q].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)batch);
		size_t rank = 0;
		while ((r = sqlite3_step(s)) == SQLITE_ROW) {
			*picks = xreallocarray(*picks, *npicks + 1, sizeof(**picks));
			(*picks)[*npicks] = (struct store_overflow_pick){
			    .msg_id = store_int_col_dup(s, 0),
			    .entered_at = sqlite3_column_int64(s, 1),
			    .q = q,
			    .rank = rank++,
			};
			(*npicks)++;
		}
		sqlite3_reset(s);
		if (r != SQLITE_DONE) {
			store_int_log_sqlite("overflow_oldest", store_int_db(c));
			return -EIO;
		}
	}
	if (*npicks > 0)
		qsort(*picks, *npicks, sizeof(**picks), store_overflow_pick_cmp);
	return 0;
}

static int store_overflow_audit(struct store_conn *c, const char *id, const char *quarantine,
				bool release, int64_t now)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_overflow_audit);
	if (s == NULL)
		return -EIO;
	/* a quarantine name has no '"', '\\' or control character (pvo_header_name_ok) */
	char *detail = xasprintf("{\"quarantine\":\"%s\"}", quarantine);
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_text(s, 2, release ? "pvo_overflow_release" : "pvo_overflow_delete", -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, detail, -1, SQLITE_STATIC);
	int rc = store_int_step_done(c, s, "overflow_audit");
	free(detail);
	return rc;
}

struct store_overflow_args {
	uint64_t max_bytes;
	size_t batch;
	int64_t now;
	struct store_pvo_overflow out;
};

static int store_overflow_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_overflow_args *a = arg;
	struct store_pvo_usage u;
	int rc = store_sqlite_pvo_usage_conn(c, &u);
	if (rc < 0 || u.bytes <= a->max_bytes || !u.sweepable) {
		a->out.after = u;
		return rc;
	}
	struct store_overflow_quarantine *qs = NULL;
	struct store_overflow_pick *picks = NULL;
	size_t nq = 0, npicks = 0, all = 0;
	rc = store_overflow_picks(c, a->batch, &qs, &nq, &picks, &all);
	npicks = all < a->batch ? all : a->batch;
	for (size_t i = 0; rc == 0 && i < npicks; i++) {
		const struct store_overflow_quarantine *q = &qs[picks[i].q];
		struct store_pvo_request r = {
		    .action = q->release ? STORE_PVO_RELEASE : STORE_PVO_DELETE,
		    .quarantine = q->name,
		};
		struct store_pvo_outcome o = {0};
		rc = store_sqlite_pvo_apply(c, picks[i].msg_id, &r, a->now, &o);
		if (rc == -EALREADY || rc == -ENXIO) {
			/* deleted from another quarantine earlier in this batch */
			rc = 0;
			continue;
		}
		if (rc == 0)
			rc = store_overflow_audit(c, picks[i].msg_id, q->name, q->release, a->now);
		if (rc == 0)
			*(q->release ? &a->out.released : &a->out.deleted) += 1;
		/* no more than the limit needs: stop once within it */
		sqlite3_stmt *s = rc == 0 ? store_int_stmt(c, sql_overflow_bytes) : NULL;
		if (s != NULL && sqlite3_step(s) == SQLITE_ROW &&
		    (uint64_t)sqlite3_column_int64(s, 0) <= a->max_bytes)
			npicks = i + 1;
		if (s != NULL)
			sqlite3_reset(s);
	}
	if (rc == 0)
		rc = store_sqlite_pvo_usage_conn(c, &a->out.after);
	for (size_t i = 0; i < all; i++)
		free(picks[i].msg_id);
	free(picks);
	for (size_t i = 0; i < nq; i++)
		free(qs[i].name);
	free(qs);
	return rc;
}

int store_sqlite_pvo_overflow(struct store *st, uint64_t max_bytes, size_t batch, int64_t now,
			      struct store_pvo_overflow *out)
{
	struct store_overflow_args a = {.max_bytes = max_bytes, .batch = batch, .now = now};
	int rc = store_int_run_job(st, store_overflow_job, &a);
	*out = rc == 0 ? a.out : (struct store_pvo_overflow){0};
	return rc;
}
