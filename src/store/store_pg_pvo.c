/*
 * store_pg_pvo — the policy, virus and outbreak (PVO) quarantines in the
 * PostgreSQL backend: memberships written with a message, a retried transfer
 * merged into the message it repeats, memberships read back with messages, and
 * their expiry, and the actions on memberships (release, delete, delay, move;
 * store_pg_pvo_apply) and copies. Not for: the schema (migrations 8 and 9 in
 * store_pg.c), the SMTP side, delivering (quarantine/release.c).
 *
 * memberships is partitioned by day of the message id like the other message
 * tables (store_pg_partition.c): its rows go with their day when the day is
 * dropped, and with their message in the purge's statement on the row path (no
 * foreign key since migration 11: see there).
 *
 * Membership states and who moves them (see store.h):
 *
 *   (none)  --store_pg_pvo_add/flush-----------> held
 *   held    --store_pg_expire_memberships------> expired  (expires_at <= now)
 *   held    --store_pg_pvo_apply (release)-----> released (the last: delivery queued)
 *   held    --store_pg_pvo_apply (delete)------> deleted  (recipients deleted)
 *   held    --store_pg_pvo_apply (delay/move)--> held     (later / elsewhere)
 *   and when no membership of a message is held any more, its quarantined
 *   recipients become expired in the same statement, so the purge removes it.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

int store_pg_pvo_existing(PGconn *c, const struct store_new_message *m, char *id_out)
{
	id_out[0] = '\0';
	if (m->nmemberships == 0 || m->origin_id == NULL || m->origin_gateway == NULL)
		return 0;
	struct store_pg_params p = {0};
	store_pg_text(&p, m->origin_gateway);
	store_pg_text(&p, m->origin_id);
	/*
	 * Two lazaretd on one database may take the same retry at once: the
	 * transaction lock on the origin makes the second one see the first's row.
	 */
	PGresult *r = store_pg_exec(
	    c, "pvo_origin_lock",
	    "SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))", &p, false);
	if (r == NULL) {
		store_pg_params_clear(&p);
		return -EIO;
	}
	PQclear(r);
	r = store_pg_exec(c, "pvo_origin",
			  "SELECT msg_id FROM memberships WHERE origin_gateway = $1"
			  " AND origin_id = $2 LIMIT 1",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	if (PQntuples(r) == 1)
		snprintf(id_out, 37, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (id_out[0] == '\0')
		return 0;
	/*
	 * Its message's row, as every action on its memberships takes it first
	 * (store_pg_pvo_apply): a release cannot find "nothing held" while this
	 * transaction adds a held membership.
	 */
	store_pg_text(&p, id_out);
	r = store_pg_exec(c, "pvo_origin_msg", "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	/* purged since its membership was read: the retry is a new message */
	if (PQntuples(r) == 0)
		id_out[0] = '\0';
	PQclear(r);
	return 0;
}

/*
 * One statement for all the memberships of a group commit (a statement per
 * message cost the writer a third of its rate): the quarantines a gateway named
 * that do not exist yet are created as policy ones, and the memberships added. A
 * quarantine created here is not visible to the membership insert (one snapshot),
 * which is right: a new one has no delete_after of its own, so the default applies.
 */
static const char sql_pvo_insert[] =
    "WITH a AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],"
    "   $5::bigint[], $6::bigint[], $7::text[], $8::text[])"
    "   AS a(msg_id, quarantine, reason, entered, expires, at, origin_gateway, origin_id)),"
    " q AS (INSERT INTO quarantines (name, type, created_at)"
    "   SELECT DISTINCT ON (a.quarantine) a.quarantine, 'policy', a.at FROM a"
    "   ON CONFLICT (name) DO NOTHING RETURNING name),"
    " w AS (INSERT INTO memberships (msg_id, quarantine, reason, entered_at, expires_at,"
    "   state, updated_at, origin_gateway, origin_id)"
    "   SELECT a.msg_id, a.quarantine, a.reason, a.entered, CASE WHEN a.expires > 0"
    "   THEN a.expires ELSE a.entered + coalesce(k.delete_after, $9::bigint) END, 0, a.at,"
    "   a.origin_gateway, a.origin_id"
    "   FROM a LEFT JOIN quarantines k ON k.name = a.quarantine"
    "   ON CONFLICT DO NOTHING)"
    " SELECT name FROM q";

/* The columns of sql_pvo_insert's rows, in its parameters' order. */
enum { PVO_MSG, PVO_NAME, PVO_REASON, PVO_ENTERED, PVO_EXPIRES, PVO_AT, PVO_OGW, PVO_OID };

void store_pg_pvo_rows_clear(struct store_pg_pvo_rows *w)
{
	for (size_t k = 0; k < STORE_PG_PVO_COLUMNS; k++) {
		for (size_t i = 0; i < w->n; i++)
			free(w->col[k][i]);
		free(w->col[k]);
	}
	memset(w, 0, sizeof(*w));
}

int store_pg_pvo_add(struct store_pg_pvo_rows *w, const struct store_new_message *m, const char *id)
{
	for (size_t i = 0; i < m->nmemberships; i++) {
		const char *q = m->memberships[i].quarantine;
		if (q == NULL || q[0] == '\0' || strcmp(q, "spam") == 0 ||
		    strcmp(q, STORE_PVO_MARKER) == 0)
			return -EINVAL;
	}
	if (w->n + m->nmemberships > w->cap) {
		w->cap = w->n + m->nmemberships + 64;
		for (size_t k = 0; k < STORE_PG_PVO_COLUMNS; k++)
			w->col[k] = xreallocarray(w->col[k], w->cap, sizeof(*w->col[k]));
	}
	for (size_t i = 0; i < m->nmemberships; i++) {
		const struct store_new_membership *ms = &m->memberships[i];
		char **row[STORE_PG_PVO_COLUMNS];
		for (size_t k = 0; k < STORE_PG_PVO_COLUMNS; k++)
			row[k] = &w->col[k][w->n];
		*row[PVO_MSG] = xstrdup(id);
		*row[PVO_NAME] = xstrdup(ms->quarantine);
		*row[PVO_REASON] = xstrdup(ms->reason != NULL ? ms->reason : "");
		*row[PVO_ENTERED] = xasprintf(
		    "%lld", (long long)(ms->entered_at > 0 ? ms->entered_at : m->received_at));
		*row[PVO_EXPIRES] = xasprintf("%lld", (long long)ms->expires_at);
		*row[PVO_AT] = xasprintf("%lld", (long long)m->received_at);
		*row[PVO_OGW] = xstrdup_or_null(m->origin_gateway);
		*row[PVO_OID] = xstrdup_or_null(m->origin_id);
		w->n++;
	}
	return 0;
}

const char *store_pg_pvo_rows_origin(const struct store_pg_pvo_rows *w,
				     const struct store_new_message *m)
{
	if (m->origin_id == NULL || m->origin_gateway == NULL)
		return NULL;
	for (size_t i = 0; i < w->n; i++) {
		const char *gw = w->col[PVO_OGW][i], *oid = w->col[PVO_OID][i];
		if (gw != NULL && oid != NULL && strcmp(gw, m->origin_gateway) == 0 &&
		    strcmp(oid, m->origin_id) == 0)
			return w->col[PVO_MSG][i];
	}
	return NULL;
}

int store_pg_pvo_flush(struct store_pg_conn *wc, struct store_pg_pvo_rows *w)
{
	if (w->n == 0)
		return 0;
	struct store_pg_params p = {0};
	for (size_t k = 0; k < STORE_PG_PVO_COLUMNS; k++)
		store_pg_array(&p, (const char *const *)w->col[k], w->n);
	store_pg_int(&p, STORE_PVO_DELETE_AFTER_DEFAULT_MS);
	PGresult *r = store_pg_exec_prepared(wc, "pvo_insert", sql_pvo_insert, &p);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	for (int k = 0; k < PQntuples(r); k++) {
		char q[256];
		log_info("store.quarantine_created",
			 "quarantine=%s type=policy reason=\"named by a gateway\"",
			 log_quote(q, sizeof(q), PQgetvalue(r, k, 0)));
	}
	PQclear(r);
	store_pg_pvo_rows_clear(w);
	return 0;
}

static void store_pg_pvo_add_membership(struct store_message *m, PGresult *r, int k)
{
	m->memberships =
	    xreallocarray(m->memberships, m->nmemberships + 1, sizeof(*m->memberships));
	struct store_membership *x = &m->memberships[m->nmemberships++];
	x->quarantine = store_pg_dup(r, k, 1);
	x->type = store_pg_dup(r, k, 2);
	x->reason = store_pg_dup(r, k, 3);
	x->entered_at = store_pg_i64(r, k, 4);
	x->expires_at = store_pg_i64(r, k, 5);
	x->state = (enum store_membership_state)store_pg_i64(r, k, 6);
	x->rescan = (enum store_rescan_state)store_pg_i64(r, k, 7);
	x->rescanned_at = store_pg_i64(r, k, 8);
	x->rescan_rule = store_pg_dup(r, k, 9);
}

int store_pg_pvo_load(PGconn *c, struct store_message **v, size_t n)
{
	const char **ids = xcalloc(n + 1, sizeof(*ids));
	size_t nids = 0;
	/* only PVO messages have memberships: a page without any asks nothing */
	for (size_t i = 0; i < n; i++) {
		if (v[i]->quarantine != NULL && strcmp(v[i]->quarantine, STORE_PVO_MARKER) == 0)
			ids[nids++] = v[i]->id;
	}
	if (nids == 0) {
		free(ids);
		return 0;
	}
	struct store_pg_params p = {0};
	store_pg_array(&p, ids, nids);
	free(ids);
	PGresult *r = store_pg_exec(
	    c, "pvo_members",
	    "SELECT x.msg_id, x.quarantine, q.type, x.reason, x.entered_at, x.expires_at, x.state,"
	    " x.rescan, coalesce(x.rescanned_at, 0), x.rescan_rule"
	    " FROM memberships x LEFT JOIN quarantines q ON q.name = x.quarantine"
	    " WHERE x.msg_id = ANY($1::text[]) ORDER BY x.msg_id, x.entered_at,"
	    " x.quarantine COLLATE \"C\"",
	    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	store_pg_rows_to_messages(r, v, n, store_pg_pvo_add_membership);
	PQclear(r);
	return 0;
}

/* --- expiry ------------------------------------------------------------- */

struct store_pg_pvo_expire_args {
	int64_t now;
	size_t batch;
	size_t done;	     /* memberships expired by this transaction */
	uint64_t recipients; /* recipients expired so far */
};

/*
 * One batch: memberships due are expired and, in the same statement, the
 * recipients of messages left with no held membership (the statement's CTEs see
 * the rows as they were, hence "held and not picked").
 */
static int store_pg_pvo_expire_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_pvo_expire_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->now);
	store_pg_int(&p, (int64_t)a->batch);
	PGresult *r = store_pg_exec(
	    c, "pvo_expire",
	    "WITH pick AS (SELECT msg_id, quarantine FROM memberships WHERE state = 0"
	    " AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
	    " u AS (UPDATE memberships x SET state = 3, updated_at = $1 FROM pick"
	    " WHERE x.msg_id = pick.msg_id AND x.quarantine = pick.quarantine"
	    " RETURNING x.msg_id),"
	    " r AS (UPDATE recipients r SET state = 4, updated_at = $1"
	    " WHERE r.msg_id IN (SELECT msg_id FROM u) AND r.state = 0"
	    " AND NOT EXISTS (SELECT 1 FROM memberships y WHERE y.msg_id = r.msg_id"
	    " AND y.state = 0 AND (y.msg_id, y.quarantine) NOT IN"
	    " (SELECT msg_id, quarantine FROM pick)) RETURNING 1)"
	    " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM r)",
	    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	a->done = (size_t)store_pg_i64(r, 0, 0);
	a->recipients += (uint64_t)store_pg_i64(r, 0, 1);
	PQclear(r);
	return 0;
}

int store_pg_expire_memberships(struct store *s, int64_t now, size_t batch, uint64_t *expired,
				uint64_t *purged)
{
	struct store_pg_pvo_expire_args a = {.now = now, .batch = batch > 0 ? batch : 500};
	uint64_t total = 0;
	int rc;
	/* each batch its own transaction: ingest is never held up for long */
	do {
		rc = store_pg_tx(store_pg_of(s), store_pg_pvo_expire_tx, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	if (expired != NULL)
		*expired = total;
	if (total > 0)
		log_info("store.memberships_expired", "memberships=%llu recipients=%llu",
			 (unsigned long long)total, (unsigned long long)a.recipients);
	if (rc < 0)
		return rc;
	return store_purge(s, batch, purged);
}

/* --- quarantine settings ----------------------------------------------- */

struct store_pg_pvo_put_args {
	const struct store_quarantine_settings *q;
	bool create;
	int64_t now;
};

/* The type of quarantine name into *type (new), locking its row; -ENOENT when none. */
static int store_pg_pvo_type(PGconn *c, const char *name, char **type)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	PGresult *r = store_pg_exec(
	    c, "pvo_type", "SELECT type FROM quarantines WHERE name = $1 FOR UPDATE", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	*type = PQntuples(r) == 1 ? store_pg_dup(r, 0, 0) : NULL;
	PQclear(r);
	return *type != NULL ? 0 : -ENOENT;
}

static int store_pg_pvo_put_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_pvo_put_args *a = arg;
	const struct store_quarantine_settings *q = a->q;
	char *type = NULL;
	int rc = store_pg_pvo_type(c, q->name, &type);
	bool pvo = type != NULL && strcmp(type, "spam") != 0 && strcmp(type, "pvo") != 0;
	free(type);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (a->create && rc == 0)
		return -EEXIST;
	if (!a->create && rc == -ENOENT)
		return -ENOENT;
	if (!a->create && !pvo)
		return -EPERM;
	struct store_pg_params p = {0};
	store_pg_text(&p, q->name);
	if (q->delete_after_ms > 0)
		store_pg_int(&p, q->delete_after_ms);
	else
		store_pg_text(&p, NULL);
	store_pg_text(&p, q->default_action);
	store_pg_text(&p, q->overflow_exempt ? "true" : "false");
	if (a->create)
		store_pg_int(&p, a->now);
	rc = store_pg_do(c, "pvo_quarantine_put",
			 a->create
			     ? "INSERT INTO quarantines (name, type, delete_after, default_action,"
			       " overflow_exempt, created_at)"
			       " VALUES ($1, 'policy', $2, $3, $4, $5)"
			     : "UPDATE quarantines SET delete_after = $2, default_action = $3,"
			       " overflow_exempt = $4 WHERE name = $1",
			 &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	store_pg_text(&p, q->name);
	store_pg_array(&p, q->operators, q->noperators);
	rc = store_pg_do(c, "pvo_operators_put",
			 "WITH d AS (DELETE FROM quarantine_operators WHERE quarantine = $1)"
			 " INSERT INTO quarantine_operators (quarantine, username)"
			 " SELECT DISTINCT $1, u FROM unnest($2::text[]) AS u",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_quarantine_put(struct store *s, const struct store_quarantine_settings *q, bool create,
			    int64_t now)
{
	struct store_pg_pvo_put_args a = {.q = q, .create = create, .now = now};
	return store_pg_tx(store_pg_of(s), store_pg_pvo_put_tx, &a);
}

static int store_pg_pvo_delete_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	const char *name = arg;
	char *type = NULL;
	int rc = store_pg_pvo_type(c, name, &type);
	bool policy = type != NULL && strcmp(type, "policy") == 0;
	free(type);
	if (rc < 0)
		return rc;
	if (!policy)
		return -EPERM;
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	PGresult *r = store_pg_exec(c, "pvo_quarantine_held",
				    "SELECT 1 FROM memberships WHERE quarantine = $1 AND state = 0"
				    " LIMIT 1",
				    &p, false);
	if (r == NULL) {
		store_pg_params_clear(&p);
		return -EIO;
	}
	bool held = PQntuples(r) > 0;
	PQclear(r);
	if (!held)
		rc =
		    store_pg_do(c, "pvo_quarantine_delete",
				"WITH o AS (DELETE FROM quarantine_operators WHERE quarantine = $1)"
				" DELETE FROM quarantines WHERE name = $1",
				&p, NULL);
	store_pg_params_clear(&p);
	return held ? -EBUSY : rc;
}

int store_pg_quarantine_delete(struct store *s, const char *name)
{
	return store_pg_tx(store_pg_of(s), store_pg_pvo_delete_tx, (void *)(uintptr_t)name);
}

int store_pg_pvo_operators(PGconn *c, struct store_quarantine_stats *v, size_t n)
{
	PGresult *r = store_pg_exec(c, "pvo_operators",
				    "SELECT quarantine, username FROM quarantine_operators"
				    " ORDER BY quarantine, username COLLATE \"C\"",
				    NULL, false);
	if (r == NULL)
		return -EIO;
	int rows = PQntuples(r);
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < rows; k++) {
			if (strcmp(PQgetvalue(r, k, 0), v[i].name) != 0)
				continue;
			v[i].operators = xreallocarray(v[i].operators, v[i].noperators + 1,
						       sizeof(*v[i].operators));
			v[i].operators[v[i].noperators++] = store_pg_dup(r, k, 1);
		}
	}
	PQclear(r);
	return 0;
}

int store_pg_operator_quarantines(struct store *s, const char *username, char ***out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_text(&p, username);
	int rc = store_pg_query(store_pg_of(s), "operator_quarantines",
				"SELECT quarantine FROM quarantine_operators WHERE username = $1"
				" ORDER BY quarantine COLLATE \"C\"",
				&p, &r);
	if (rc < 0)
		return rc;
	store_pg_collect(r, out, n);
	PQclear(r);
	return 0;
}

/* --- actions on memberships (store.h "Actions on one membership") -------- */

/*
 * The type of quarantine name into *type (new), or -ENOENT. FOR SHARE: it cannot
 * be deleted while this transaction moves a membership into it, and actions in
 * one quarantine do not wait for each other.
 */
static int store_pg_pvo_type_shared(PGconn *c, const char *name, char **type)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	PGresult *r =
	    store_pg_exec(c, "pvo_type_shared",
			  "SELECT type FROM quarantines WHERE name = $1 FOR SHARE", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	*type = PQntuples(r) == 1 ? store_pg_dup(r, 0, 0) : NULL;
	PQclear(r);
	return *type != NULL ? 0 : -ENOENT;
}

/* One statement with (id, q) as $1, $2 and up to two more values. -EIO or 0; *r. */
static PGresult *store_pg_pvo_run(PGconn *c, const char *what, const char *sql, const char *id,
				  const char *q, const char *text3, int64_t int3, bool has_int3,
				  int64_t now)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, id);
	store_pg_text(&p, q);
	if (text3 != NULL)
		store_pg_text(&p, text3);
	else if (has_int3)
		store_pg_int(&p, int3);
	store_pg_int(&p, now);
	PGresult *r = store_pg_exec(c, what, sql, &p, false);
	store_pg_params_clear(&p);
	return r;
}

/* The message's delivery once nothing holds or deletes it: recipients to releasing. */
static int store_pg_pvo_release_rest(PGconn *c, const char *id, bool no_rescan, int64_t now,
				     struct store_pvo_outcome *out)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, id);
	store_pg_int(&p, now);
	store_pg_int(&p, no_rescan ? 1 : 0);
	/*
	 * One statement: nothing held or deleted any more, then every quarantined
	 * recipient to releasing and one delivery of them, routed to the registered
	 * gateway at the address that transferred the message (else the one its
	 * gateway field names, else '': the alternate release gateway), rescanned
	 * when an outbreak membership was released (not when $3, an admin's
	 * release without a rescan).
	 */
	PGresult *r = store_pg_exec(
	    c, "pvo_release_rest",
	    "WITH go AS (SELECT NOT EXISTS (SELECT 1 FROM memberships WHERE msg_id = $1"
	    "  AND state IN (0, 2)) AS ok),"
	    " u AS (UPDATE recipients SET state = 1, updated_at = $2"
	    "  WHERE msg_id = $1 AND state = 0 AND (SELECT ok FROM go)"
	    "  RETURNING address, pos),"
	    " route AS (SELECT coalesce((SELECT g.name FROM gateways g"
	    "  WHERE g.state = 'registered' AND g.address ="
	    "  (SELECT min(origin_gateway) FROM memberships WHERE msg_id = $1)),"
	    "  (SELECT g.name FROM gateways g JOIN messages m ON m.id = $1"
	    "  WHERE g.state = 'registered' AND lower(g.name) = lower(m.gateway)), '') AS gw,"
	    "  EXISTS (SELECT 1 FROM memberships x JOIN quarantines q ON q.name = x.quarantine"
	    "  WHERE x.msg_id = $1 AND x.state = 1 AND q.type = 'outbreak')"
	    "  AND $3::bigint = 0 AS rescan)"
	    " INSERT INTO deliveries (msg_id, next_attempt_at, rcpts, gateway, rescan)"
	    " SELECT $1, $2, (SELECT array_agg(address ORDER BY pos) FROM u), route.gw,"
	    " route.rescan FROM route WHERE EXISTS (SELECT 1 FROM u) RETURNING job_id",
	    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	out->queued = PQntuples(r) == 1;
	PQclear(r);
	return 0;
}

int store_pg_pvo_apply(PGconn *c, const char *id, const struct store_pvo_request *r, int64_t now,
		       struct store_pvo_outcome *out)
{
	memset(out, 0, sizeof(*out));
	struct store_pg_params p = {0};
	store_pg_text(&p, id);
	/* the message's row, then its memberships, locked in one order by every action */
	PGresult *res =
	    store_pg_exec(c, "pvo_act_msg",
			  "SELECT quarantine FROM messages WHERE id = $1 FOR UPDATE", &p, false);
	store_pg_params_clear(&p);
	if (res == NULL)
		return -EIO;
	bool pvo = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), STORE_PVO_MARKER) == 0;
	PQclear(res);
	if (!pvo)
		return -ENOENT;
	store_pg_text(&p, id);
	res = store_pg_exec(c, "pvo_act_lock",
			    "SELECT quarantine, state FROM memberships WHERE msg_id = $1"
			    " ORDER BY quarantine FOR UPDATE",
			    &p, false);
	store_pg_params_clear(&p);
	if (res == NULL)
		return -EIO;
	int state = -1;
	bool to_taken = false;
	for (int k = 0; k < PQntuples(res); k++) {
		if (strcmp(PQgetvalue(res, k, 0), r->quarantine) == 0)
			state = (int)store_pg_i64(res, k, 1);
		if (r->to != NULL && strcmp(PQgetvalue(res, k, 0), r->to) == 0)
			to_taken = true;
	}
	PQclear(res);
	char *type = NULL;
	bool from_policy, to_policy;
	int rc = store_pg_pvo_type_shared(c, r->quarantine, &type);
	if ((rc = store_pvo_type_policy(rc, type, &from_policy)) < 0)
		return rc;
	if (state < 0)
		return -ENXIO;
	out->was = (enum store_membership_state)state;
	if (state != STORE_MEMBER_HELD)
		return -EALREADY;
	const char *sql = NULL;
	switch (r->action) {
	case STORE_PVO_RELEASE:
		sql = "UPDATE memberships SET state = 1, updated_at = $3"
		      " WHERE msg_id = $1 AND quarantine = $2 AND state = 0";
		break;
	case STORE_PVO_DELETE:
		sql = "UPDATE memberships SET state = 2, updated_at = $3"
		      " WHERE msg_id = $1 AND quarantine = $2 AND state = 0";
		break;
	case STORE_PVO_DELAY:
		sql = "UPDATE memberships SET expires_at = expires_at + $3, updated_at = $4"
		      " WHERE msg_id = $1 AND quarantine = $2 AND state = 0";
		break;
	case STORE_PVO_MOVE: {
		type = NULL;
		rc = store_pg_pvo_type_shared(c, r->to, &type);
		if (rc == -ENOENT)
			out->to_unknown = true;
		if ((rc = store_pvo_type_policy(rc, type, &to_policy)) < 0)
			return rc;
		if (!from_policy || !to_policy)
			return -EPERM;
		if (to_taken)
			return -EEXIST;
		sql = "UPDATE memberships SET quarantine = $3, updated_at = $4"
		      " WHERE msg_id = $1 AND quarantine = $2 AND state = 0";
		break;
	}
	default:
		return -EINVAL;
	}
	res = store_pg_pvo_run(c, "pvo_act", sql, id, r->quarantine,
			       r->action == STORE_PVO_MOVE ? r->to : NULL, r->by_ms,
			       r->action == STORE_PVO_DELAY, now);
	if (res == NULL)
		return -EIO;
	PQclear(res);
	if (r->action == STORE_PVO_RELEASE)
		return store_pg_pvo_release_rest(c, id, r->no_rescan, now, out);
	if (r->action == STORE_PVO_DELETE) {
		/*
		 * deleted from one = never delivered: out of its other quarantines too
		 * (no listing, count or capacity sweep holds it), and the purge removes it
		 */
		store_pg_text(&p, id);
		store_pg_int(&p, now);
		rc = store_pg_do(c, "pvo_delete_rcpts",
				 "WITH o AS (UPDATE memberships SET state = 2, updated_at = $2"
				 " WHERE msg_id = $1 AND state = 0)"
				 " UPDATE recipients SET state = 3, updated_at = $2"
				 " WHERE msg_id = $1 AND state = 0",
				 &p, NULL);
		store_pg_params_clear(&p);
		return rc;
	}
	return 0;
}

static int store_pg_pvo_apply_on(void *conn, const char *id, const struct store_pvo_request *r,
				 int64_t now, struct store_pvo_outcome *out)
{
	return store_pg_pvo_apply(conn, id, r, now, out);
}

static int store_pg_pvo_act_job(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	return store_pvo_batch_apply(arg, store_pg_pvo_apply_on, c);
}

/* each page its own transaction: row locks are held briefly */
int store_pg_pvo_act_batch(struct store *s, struct store_pvo_batch *b)
{
	return store_pg_tx(store_pg_of(s), store_pg_pvo_act_job, b);
}

struct store_pg_pvo_copy_args {
	const char *id;
	const char *const *to;
	size_t n;
	int64_t now;
};

static int store_pg_pvo_copy_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_pvo_copy_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->id);
	store_pg_int(&p, a->now);
	store_pg_array(&p, a->to, a->n);
	store_pg_text(&p, STORE_PVO_MARKER);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "pvo_copy",
			     "INSERT INTO deliveries (msg_id, next_attempt_at, rcpts, copy)"
			     " SELECT id, $2, $3::text[], true FROM messages"
			     " WHERE id = $1 AND quarantine = $4",
			     &p, &rows);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	return rows == 1 ? 0 : -ENOENT;
}

int store_pg_pvo_copy(struct store *s, const char *id, const char *const *to, size_t n, int64_t now)
{
	struct store_pg_pvo_copy_args a = {.id = id, .to = to, .n = n, .now = now};
	return store_pg_tx(store_pg_of(s), store_pg_pvo_copy_tx, &a);
}
