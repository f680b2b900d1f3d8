/*
 * store_pvo — the policy, virus and outbreak (PVO) quarantines in the SQLite
 * backend: memberships written with a message, a retried transfer merged into
 * the message it repeats, memberships read back with a message, and their expiry.
 * and the actions on memberships (release, delete, delay, move; store_sqlite_pvo_apply)
 * and copies. Not for: the schema (migrations 8 and 9 in store_sqlite.c), the SMTP
 * side (manager/ingest.c, quarantine/pvo_header.c), delivering (quarantine/release.c).
 *
 * Membership states and who moves them (see store.h):
 *
 *   (none)  --store_sqlite_pvo_insert-------------> held
 *   held    --store_sqlite_expire_memberships-----> expired  (expires_at <= now)
 *   held    --store_sqlite_pvo_apply (release)----> released (the last: delivery queued)
 *   held    --store_sqlite_pvo_apply (delete)-----> deleted  (recipients deleted)
 *   held    --store_sqlite_pvo_apply (delay/move)-> held     (later / elsewhere)
 *   and when no membership of a message is held any more, its quarantined
 *   recipients become expired in the same transaction, so the purge removes it.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

/* A retry of (gateway, origin id): the message it repeats. */
static const char sql_pvo_origin[] = "SELECT msg_id FROM memberships"
				     " WHERE origin_gateway = ?1 AND origin_id = ?2 LIMIT 1";
static const char sql_pvo_quarantine_add[] =
    "INSERT OR IGNORE INTO quarantines (name, type, created_at) VALUES (?1, 'policy', ?2)";
static const char sql_pvo_quarantine_policy[] =
    "UPDATE quarantines SET type = 'policy' WHERE name = ?1";
/*
 * expires_at 0: entered + the quarantine's own delete_after, else the default.
 * A membership the message has already (a retry) is left as it is.
 */
static const char sql_pvo_member_add[] =
    "INSERT OR IGNORE INTO memberships (msg_id, quarantine, reason, entered_at, expires_at,"
    " state, updated_at, origin_gateway, origin_id)"
    " SELECT ?1, ?2, ?3, ?4, CASE WHEN ?5 > 0 THEN ?5 ELSE ?4 + coalesce(delete_after, ?6) END,"
    " 0, ?7, ?8, ?9 FROM quarantines WHERE name = ?2";

int store_sqlite_pvo_existing(struct store_conn *c, const struct store_new_message *m, char *id_out)
{
	id_out[0] = '\0';
	if (m->nmemberships == 0 || m->origin_id == NULL || m->origin_gateway == NULL)
		return 0;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_origin);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, m->origin_gateway, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, m->origin_id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		snprintf(id_out, 37, "%s", v != NULL ? (const char *)v : "");
	}
	sqlite3_reset(s);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_origin", store_int_db(c));
		return -EIO;
	}
	return 0;
}

int store_sqlite_pvo_insert(struct store_conn *c, const struct store_new_message *m, const char *id)
{
	for (size_t i = 0; i < m->nmemberships; i++) {
		const struct store_new_membership *w = &m->memberships[i];
		if (w->quarantine == NULL || w->quarantine[0] == '\0' ||
		    strcmp(w->quarantine, "spam") == 0 ||
		    strcmp(w->quarantine, STORE_PVO_MARKER) == 0)
			return -EINVAL;
		sqlite3_stmt *s = store_int_stmt(c, sql_pvo_quarantine_add);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, w->quarantine, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, m->received_at);
		if (store_int_step_done(c, s, "pvo_quarantine_add") < 0)
			return -EIO;
		if (sqlite3_changes(store_int_db(c)) > 0) {
			/* a gateway's store types "File Analysis" by its name (migration 2's
			 * trigger); a PVO quarantine a gateway names is a policy one, as on
			 * PostgreSQL */
			if ((s = store_int_stmt(c, sql_pvo_quarantine_policy)) == NULL)
				return -EIO;
			sqlite3_bind_text(s, 1, w->quarantine, -1, SQLITE_STATIC);
			if (store_int_step_done(c, s, "pvo_quarantine_policy") < 0)
				return -EIO;
			char q[256];
			log_info("store.quarantine_created",
				 "quarantine=%s type=policy reason=\"named by a gateway\"",
				 log_quote(q, sizeof(q), w->quarantine));
		}
		int64_t entered = w->entered_at > 0 ? w->entered_at : m->received_at;
		if ((s = store_int_stmt(c, sql_pvo_member_add)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, w->quarantine, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, w->reason != NULL ? w->reason : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, entered);
		sqlite3_bind_int64(s, 5, w->expires_at);
		sqlite3_bind_int64(s, 6, STORE_PVO_DELETE_AFTER_DEFAULT_MS);
		sqlite3_bind_int64(s, 7, m->received_at);
		sqlite3_bind_text(s, 8, m->origin_gateway, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 9, m->origin_id, -1, SQLITE_STATIC);
		if (store_int_step_done(c, s, "pvo_member_add") < 0)
			return -EIO;
	}
	return 0;
}

static const char sql_pvo_members[] =
    "SELECT x.quarantine, q.type, x.reason, x.entered_at, x.expires_at, x.state,"
    " x.rescan, coalesce(x.rescanned_at, 0), x.rescan_rule"
    " FROM memberships x LEFT JOIN quarantines q ON q.name = x.quarantine"
    " WHERE x.msg_id = ?1 ORDER BY x.entered_at, x.quarantine";

int store_sqlite_pvo_load(struct store_conn *c, struct store_message *m)
{
	/* only PVO messages have memberships: the others skip the query */
	if (m->quarantine == NULL || strcmp(m->quarantine, STORE_PVO_MARKER) != 0)
		return 0;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_members);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		m->memberships =
		    xreallocarray(m->memberships, m->nmemberships + 1, sizeof(*m->memberships));
		struct store_membership *x = &m->memberships[m->nmemberships++];
		x->quarantine = store_int_col_dup(s, 0);
		x->type = store_int_col_dup(s, 1);
		x->reason = store_int_col_dup(s, 2);
		x->entered_at = sqlite3_column_int64(s, 3);
		x->expires_at = sqlite3_column_int64(s, 4);
		x->state = (enum store_membership_state)sqlite3_column_int(s, 5);
		x->rescan = (enum store_rescan_state)sqlite3_column_int(s, 6);
		x->rescanned_at = sqlite3_column_int64(s, 7);
		x->rescan_rule = store_int_col_dup(s, 8);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_members", store_int_db(c));
		return -EIO;
	}
	return 0;
}

/* --- expiry ------------------------------------------------------------- */

static const char sql_pvo_expire_pick[] =
    "UPDATE memberships SET state = 3, updated_at = ?1 WHERE (msg_id, quarantine) IN"
    " (SELECT msg_id, quarantine FROM memberships WHERE state = 0 AND expires_at <= ?1"
    " ORDER BY expires_at LIMIT ?2) RETURNING msg_id";
/* the message's recipients expire once none of its memberships is held */
static const char sql_pvo_expire_rcpts[] =
    "UPDATE recipients SET state = 4, updated_at = ?2 WHERE msg_id = ?1 AND state = 0"
    " AND NOT EXISTS (SELECT 1 FROM memberships WHERE msg_id = ?1 AND state = 0)";

struct store_pvo_expire_args {
	int64_t now;
	size_t batch;
	size_t done;	     /* memberships expired by this job */
	uint64_t recipients; /* recipients expired so far */
};

static int store_pvo_expire_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_pvo_expire_args *a = arg;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_expire_pick);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->now);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)a->batch);
	char **ids = NULL;
	size_t n = 0;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		ids = xreallocarray(ids, n + 1, sizeof(*ids));
		ids[n++] = store_int_col_dup(s, 0);
	}
	sqlite3_reset(s);
	int rc = r == SQLITE_DONE ? 0 : -EIO;
	if (rc < 0)
		store_int_log_sqlite("pvo_expire", store_int_db(c));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if ((s = store_int_stmt(c, sql_pvo_expire_rcpts)) == NULL) {
			rc = -EIO;
			break;
		}
		sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, a->now);
		rc = store_int_step_done(c, s, "pvo_expire_rcpts");
		if (rc == 0)
			a->recipients += (uint64_t)sqlite3_changes(store_int_db(c));
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	a->done = rc == 0 ? n : 0;
	return rc;
}

int store_sqlite_expire_memberships(struct store *st, int64_t now, size_t batch, uint64_t *expired,
				    uint64_t *purged)
{
	struct store_pvo_expire_args a = {.now = now, .batch = batch > 0 ? batch : 500};
	uint64_t total = 0;
	int rc;
	/* each batch its own writer job: queued ingest commits in between */
	do {
		rc = store_int_run_job(st, store_pvo_expire_job, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	if (expired != NULL)
		*expired = total;
	if (total > 0)
		log_info("store.memberships_expired", "memberships=%llu recipients=%llu",
			 (unsigned long long)total, (unsigned long long)a.recipients);
	if (rc < 0)
		return rc;
	return store_sqlite_purge(st, batch, purged);
}

/* --- quarantine settings ----------------------------------------------- */

struct store_pvo_put_args {
	const struct store_quarantine_settings *q;
	bool create;
	int64_t now;
};

static const char sql_pvo_q_type[] = "SELECT type FROM quarantines WHERE name = ?1";
static const char sql_pvo_q_insert[] =
    "INSERT INTO quarantines (name, type, delete_after, default_action, overflow_exempt,"
    " created_at) VALUES (?1, 'policy', ?2, ?3, ?4, ?5)";
static const char sql_pvo_q_update[] = "UPDATE quarantines SET delete_after = ?2,"
				       " default_action = ?3, overflow_exempt = ?4 WHERE name = ?1";
static const char sql_pvo_ops_clear[] = "DELETE FROM quarantine_operators WHERE quarantine = ?1";
static const char sql_pvo_ops_add[] =
    "INSERT OR IGNORE INTO quarantine_operators (quarantine, username) VALUES (?1, ?2)";
static const char sql_pvo_q_held[] =
    "SELECT 1 FROM memberships WHERE quarantine = ?1 AND state = 0 LIMIT 1";
static const char sql_pvo_q_delete[] = "DELETE FROM quarantines WHERE name = ?1";

/* The type of quarantine name into *type (a new string), or -ENOENT. */
static int store_pvo_type(struct store_conn *c, const char *name, char **type)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_q_type);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	*type = r == SQLITE_ROW ? store_int_col_dup(s, 0) : NULL;
	sqlite3_reset(s);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return -ENOENT;
	store_int_log_sqlite("pvo_type", store_int_db(c));
	return -EIO;
}

static int store_pvo_put_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_pvo_put_args *a = arg;
	const struct store_quarantine_settings *q = a->q;
	char *type = NULL;
	int rc = store_pvo_type(c, q->name, &type);
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
	sqlite3_stmt *s = store_int_stmt(c, a->create ? sql_pvo_q_insert : sql_pvo_q_update);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
	if (q->delete_after_ms > 0)
		sqlite3_bind_int64(s, 2, q->delete_after_ms);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_text(s, 3, q->default_action, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 4, q->overflow_exempt ? 1 : 0);
	if (a->create)
		sqlite3_bind_int64(s, 5, a->now);
	if (store_int_step_done(c, s, "pvo_quarantine_put") < 0)
		return -EIO;
	if ((s = store_int_stmt(c, sql_pvo_ops_clear)) == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
	if (store_int_step_done(c, s, "pvo_operators_clear") < 0)
		return -EIO;
	for (size_t i = 0; i < q->noperators; i++) {
		if ((s = store_int_stmt(c, sql_pvo_ops_add)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, q->operators[i], -1, SQLITE_STATIC);
		if (store_int_step_done(c, s, "pvo_operators_add") < 0)
			return -EIO;
	}
	return 0;
}

int store_sqlite_quarantine_put(struct store *st, const struct store_quarantine_settings *q,
				bool create, int64_t now)
{
	struct store_pvo_put_args a = {.q = q, .create = create, .now = now};
	return store_int_run_job(st, store_pvo_put_job, &a);
}

static int store_pvo_delete_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	const char *name = arg;
	char *type = NULL;
	int rc = store_pvo_type(c, name, &type);
	bool policy = type != NULL && strcmp(type, "policy") == 0;
	free(type);
	if (rc < 0)
		return rc;
	if (!policy)
		return -EPERM;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_q_held);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r == SQLITE_ROW)
		return -EBUSY;
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_quarantine_held", store_int_db(c));
		return -EIO;
	}
	if ((s = store_int_stmt(c, sql_pvo_ops_clear)) == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (store_int_step_done(c, s, "pvo_operators_clear") < 0)
		return -EIO;
	if ((s = store_int_stmt(c, sql_pvo_q_delete)) == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	return store_int_step_done(c, s, "pvo_quarantine_delete");
}

int store_sqlite_quarantine_delete(struct store *st, const char *name)
{
	return store_int_run_job(st, store_pvo_delete_job, (void *)(uintptr_t)name);
}

static const char sql_pvo_ops_of[] =
    "SELECT username FROM quarantine_operators WHERE quarantine = ?1 ORDER BY username";

int store_sqlite_pvo_operators(struct store_conn *c, struct store_quarantine_stats *q)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_ops_of);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		q->operators =
		    xreallocarray(q->operators, q->noperators + 1, sizeof(*q->operators));
		q->operators[q->noperators++] = store_int_col_dup(s, 0);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_operators", store_int_db(c));
		return -EIO;
	}
	return 0;
}

static const char sql_pvo_of_operator[] =
    "SELECT quarantine FROM quarantine_operators WHERE username = ?1 ORDER BY quarantine";

int store_sqlite_operator_quarantines(struct store *st, const char *username, char ***out,
				      size_t *n)
{
	struct store_conn *c = NULL;
	char **v = NULL;
	size_t nv = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_of_operator);
	if (s != NULL) {
		sqlite3_bind_text(s, 1, username, -1, SQLITE_STATIC);
		int r;
		while ((r = sqlite3_step(s)) == SQLITE_ROW) {
			v = xreallocarray(v, nv + 1, sizeof(*v));
			v[nv++] = store_int_col_dup(s, 0);
		}
		sqlite3_reset(s);
		if (r == SQLITE_DONE)
			rc = 0;
		else
			store_int_log_sqlite("operator_quarantines", store_int_db(c));
	}
	store_int_reader_put(st, c);
	if (rc < 0) {
		store_string_array_free(v, nv);
		return store_int_read_result(rc);
	}
	*out = v;
	*n = nv;
	return 0;
}

/* --- actions on memberships (store.h "Actions on one membership") -------- */

static const char sql_pvo_act_msg[] = "SELECT quarantine FROM messages WHERE id = ?1";
static const char sql_pvo_act_state[] =
    "SELECT state FROM memberships WHERE msg_id = ?1 AND quarantine = ?2";
static const char sql_pvo_act_set[] = "UPDATE memberships SET state = ?3, updated_at = ?4"
				      " WHERE msg_id = ?1 AND quarantine = ?2 AND state = 0";
static const char sql_pvo_act_others_deleted[] =
    "UPDATE memberships SET state = 2, updated_at = ?2 WHERE msg_id = ?1 AND state = 0";
static const char sql_pvo_act_delay[] =
    "UPDATE memberships SET expires_at = expires_at + ?3, updated_at = ?4"
    " WHERE msg_id = ?1 AND quarantine = ?2 AND state = 0";
static const char sql_pvo_act_move[] = "UPDATE memberships SET quarantine = ?3, updated_at = ?4"
				       " WHERE msg_id = ?1 AND quarantine = ?2 AND state = 0";
/* still held or deleted somewhere: no delivery (yet, or ever) */
static const char sql_pvo_act_blocked[] =
    "SELECT 1 FROM memberships WHERE msg_id = ?1 AND state IN (0, 2) LIMIT 1";
static const char sql_pvo_act_rcpts[] = "UPDATE recipients SET state = ?2, updated_at = ?3"
					" WHERE msg_id = ?1 AND state = 0 RETURNING address";
/*
 * The route: the registered gateway at the address that transferred the message
 * (memberships.origin_gateway), else the one named by the message's gateway
 * field, else '' (unknown: the alternate release gateway); and whether an
 * outbreak membership was released (the gateway rescans it).
 */
static const char sql_pvo_act_route[] =
    "SELECT coalesce((SELECT g.name FROM gateways g WHERE g.state = 'registered'"
    "  AND g.address = (SELECT min(origin_gateway) FROM memberships WHERE msg_id = ?1)),"
    " (SELECT g.name FROM gateways g JOIN messages m ON m.id = ?1"
    "  WHERE g.state = 'registered' AND g.name = m.gateway), ''),"
    " EXISTS (SELECT 1 FROM memberships x JOIN quarantines q ON q.name = x.quarantine"
    "  WHERE x.msg_id = ?1 AND x.state = 1 AND q.type = 'outbreak')";

/* Binds ?1 id and ?2 q, steps s, and gives the integer of its first row into *v
 * (1 when a row, 0 when none; -EIO). */
static int store_pvo_int_row(struct store_conn *c, sqlite3_stmt *s, const char *id, const char *q,
			     int64_t *v)
{
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (q != NULL)
		sqlite3_bind_text(s, 2, q, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW && v != NULL)
		*v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	store_int_log_sqlite("pvo_act", store_int_db(c));
	return -EIO;
}

/* The message's delivery once nothing holds or deletes it: recipients to releasing. */
static int store_pvo_release_rest(struct store_conn *c, const char *id, bool no_rescan, int64_t now,
				  struct store_pvo_outcome *out)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_act_blocked);
	if (s == NULL)
		return -EIO;
	int rc = store_pvo_int_row(c, s, id, NULL, NULL);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	char *gateway = NULL, **moved = NULL;
	size_t nmoved = 0;
	bool rescan = false;
	rc = -EIO;
	if ((s = store_int_stmt(c, sql_pvo_act_route)) == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		gateway = store_int_col_dup(s, 0);
		rescan = sqlite3_column_int(s, 1) != 0 && !no_rescan;
	}
	sqlite3_reset(s);
	if (r != SQLITE_ROW) {
		store_int_log_sqlite("pvo_route", store_int_db(c));
		goto fail;
	}
	if ((s = store_int_stmt(c, sql_pvo_act_rcpts)) == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, STORE_RCPT_RELEASING);
	sqlite3_bind_int64(s, 3, now);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		moved = xreallocarray(moved, nmoved + 1, sizeof(*moved));
		moved[nmoved++] = store_int_col_dup(s, 0);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("pvo_release_rcpts", store_int_db(c));
		goto fail;
	}
	rc = 0;
	if (nmoved > 0) {
		rc = store_sqlite_delivery_queue(c, id, (const char *const *)moved, nmoved, now,
						 gateway != NULL ? gateway : "", rescan, false);
		out->queued = rc == 0;
	}
fail:
	for (size_t i = 0; i < nmoved; i++)
		free(moved[i]);
	free(moved);
	free(gateway);
	return rc;
}

int store_sqlite_pvo_apply(struct store_conn *c, const char *id, const struct store_pvo_request *r,
			   int64_t now, struct store_pvo_outcome *out)
{
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_act_msg);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	bool pvo = step == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL &&
		   strcmp((const char *)sqlite3_column_text(s, 0), STORE_PVO_MARKER) == 0;
	sqlite3_reset(s);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		store_int_log_sqlite("pvo_act_msg", store_int_db(c));
		return -EIO;
	}
	if (!pvo)
		return -ENOENT;
	char *type = NULL;
	bool from_policy, to_policy;
	int rc = store_pvo_type(c, r->quarantine, &type);
	if ((rc = store_pvo_type_policy(rc, type, &from_policy)) < 0)
		return rc;
	int64_t state = 0;
	if ((s = store_int_stmt(c, sql_pvo_act_state)) == NULL)
		return -EIO;
	if ((rc = store_pvo_int_row(c, s, id, r->quarantine, &state)) <= 0)
		return rc == 0 ? -ENXIO : rc;
	out->was = (enum store_membership_state)state;
	if (state != STORE_MEMBER_HELD)
		return -EALREADY;
	switch (r->action) {
	case STORE_PVO_RELEASE:
	case STORE_PVO_DELETE:
		if ((s = store_int_stmt(c, sql_pvo_act_set)) == NULL)
			return -EIO;
		sqlite3_bind_int(s, 3,
				 r->action == STORE_PVO_RELEASE ? STORE_MEMBER_RELEASED
								: STORE_MEMBER_DELETED);
		break;
	case STORE_PVO_DELAY:
		if ((s = store_int_stmt(c, sql_pvo_act_delay)) == NULL)
			return -EIO;
		sqlite3_bind_int64(s, 3, r->by_ms);
		break;
	case STORE_PVO_MOVE:
		type = NULL;
		rc = store_pvo_type(c, r->to, &type);
		if (rc == -ENOENT)
			out->to_unknown = true;
		if ((rc = store_pvo_type_policy(rc, type, &to_policy)) < 0)
			return rc;
		if (!from_policy || !to_policy)
			return -EPERM;
		if ((s = store_int_stmt(c, sql_pvo_act_state)) == NULL)
			return -EIO;
		if ((rc = store_pvo_int_row(c, s, id, r->to, NULL)) != 0)
			return rc < 0 ? rc : -EEXIST;
		if ((s = store_int_stmt(c, sql_pvo_act_move)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 3, r->to, -1, SQLITE_STATIC);
		break;
	default:
		return -EINVAL;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->quarantine, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now);
	if (store_int_step_done(c, s, "pvo_act") < 0)
		return -EIO;
	if (r->action == STORE_PVO_RELEASE)
		return store_pvo_release_rest(c, id, r->no_rescan, now, out);
	if (r->action == STORE_PVO_DELETE) {
		/*
		 * deleted from one = never delivered: out of its other quarantines too
		 * (no listing, count or capacity sweep holds it), and the purge removes it
		 */
		if ((s = store_int_stmt(c, sql_pvo_act_others_deleted)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, now);
		if (store_int_step_done(c, s, "pvo_delete_others") < 0)
			return -EIO;
		if ((s = store_int_stmt(c, sql_pvo_act_rcpts)) == NULL)
			return -EIO;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, STORE_RCPT_DELETED);
		sqlite3_bind_int64(s, 3, now);
		int st;
		while ((st = sqlite3_step(s)) == SQLITE_ROW)
			;
		sqlite3_reset(s);
		if (st != SQLITE_DONE) {
			store_int_log_sqlite("pvo_delete_rcpts", store_int_db(c));
			return -EIO;
		}
	}
	return 0;
}

static int store_pvo_apply_on(void *conn, const char *id, const struct store_pvo_request *r,
			      int64_t now, struct store_pvo_outcome *out)
{
	return store_sqlite_pvo_apply(conn, id, r, now, out);
}

static int store_pvo_act_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	return store_pvo_batch_apply(arg, store_pvo_apply_on, c);
}

/* each page its own writer job: ingest commits in between */
int store_sqlite_pvo_act_batch(struct store *st, struct store_pvo_batch *b)
{
	return store_int_run_job(st, store_pvo_act_job, b);
}

struct store_pvo_copy_args {
	const char *id;
	const char *const *to;
	size_t n;
	int64_t now;
};

static int store_pvo_copy_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_pvo_copy_args *a = arg;
	sqlite3_stmt *s = store_int_stmt(c, sql_pvo_act_msg);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	bool pvo = step == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL &&
		   strcmp((const char *)sqlite3_column_text(s, 0), STORE_PVO_MARKER) == 0;
	sqlite3_reset(s);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return -EIO;
	if (!pvo)
		return -ENOENT;
	return store_sqlite_delivery_queue(c, a->id, a->to, a->n, a->now, NULL, false, true);
}

int store_sqlite_pvo_copy(struct store *st, const char *id, const char *const *to, size_t n,
			  int64_t now)
{
	struct store_pvo_copy_args a = {.id = id, .to = to, .n = n, .now = now};
	return store_int_run_job(st, store_pvo_copy_job, &a);
}
