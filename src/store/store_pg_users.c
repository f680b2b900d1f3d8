/*
 * store_pg_users — the PostgreSQL backend's accounts, sessions and audit log (the
 * tables of its migration 2), with the semantics of store_users.c: local accounts
 * with their addresses in order, login sessions keyed by the hash of their token,
 * and the append-only audit log.
 *
 * Not for: deciding who may log in or what a role may do, hashing passwords or
 * tokens (callers hand in hashes), or sessions' expiry policy (callers pass the
 * deadlines).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/* Audit rows in one page (as the SQLite backend). */
#define STORE_PG_AUDIT_LIST_MAX 1000

/* -EEXIST when the last statement broke a unique key, else rc. */
static int store_pg_users_exists(int rc)
{
	return rc == -EIO && strcmp(store_pg_sqlstate, "23505") == 0 ? -EEXIST : rc;
}

/* Runs one statement of the values in p, then clears p; -ENOENT when it touched no row. */
static int store_pg_users_change(PGconn *c, const char *what, const char *sql,
				 struct store_pg_params *p)
{
	uint64_t rows = 0;
	int rc = store_pg_do(c, what, sql, p, &rows);
	store_pg_params_clear(p);
	if (rc < 0)
		return store_pg_users_exists(rc);
	return rows > 0 ? 0 : -ENOENT;
}

/* ---- users ---- */

static int store_pg_user_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_user *u = *(const struct store_user **)arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, u->username);
	store_pg_text(&p, u->password_hash);
	store_pg_text(&p, u->role);
	store_pg_text(&p, u->source != NULL ? u->source : "local");
	store_pg_text(&p, u->language);
	store_pg_text(&p, u->time_zone);
	store_pg_int(&p, u->created_at);
	char **lcs = xcalloc(u->naddresses + 1, sizeof(*lcs));
	for (size_t i = 0; i < u->naddresses; i++)
		lcs[i] = store_pg_lc(u->addresses[i]);
	store_pg_array(&p, (const char *const *)lcs, u->naddresses);
	for (size_t i = 0; i < u->naddresses; i++)
		free(lcs[i]);
	free(lcs);
	/* a repeated address (in any case) is kept once, at its first place */
	int rc = store_pg_do(c, "user_add",
			     "WITH u AS (INSERT INTO users (username, password_hash, role, source,"
			     " language, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
			     " RETURNING username)"
			     " INSERT INTO user_addresses (username, address_lc, pos)"
			     " SELECT u.username, a.lc, a.k - 1 FROM u,"
			     " unnest($8::text[]) WITH ORDINALITY AS a(lc, k)"
			     " ON CONFLICT DO NOTHING",
			     &p, NULL);
	store_pg_params_clear(&p);
	return store_pg_users_exists(rc);
}

int store_pg_user_add(struct store *st, const struct store_user *u)
{
	if (u == NULL || u->username == NULL || *u->username == '\0' || u->role == NULL ||
	    u->naddresses > STORE_USER_MAX_ADDRESSES)
		return -EINVAL;
	return store_pg_tx(store_pg_of(st), store_pg_user_add_tx, &u);
}

#define STORE_PG_USER_COLUMNS                                                                      \
	"u.username, u.password_hash, u.role, u.source, u.language, u.time_zone, u.created_at,"    \
	" coalesce(u.last_login_at, 0),"                                                           \
	" (SELECT array_to_string(array_agg(a.address_lc ORDER BY a.pos, a.address_lc), chr(31))"  \
	"  FROM user_addresses a WHERE a.username = u.username)"

/* The account in row k of r; its addresses come joined by US (0x1f), which no mail
 * address contains. */
static struct store_user *store_pg_user_from_row(const PGresult *r, int k)
{
	struct store_user *u = xcalloc(1, sizeof(*u));
	u->username = store_pg_dup(r, k, 0);
	u->password_hash = store_pg_dup(r, k, 1);
	u->role = store_pg_dup(r, k, 2);
	u->source = store_pg_dup(r, k, 3);
	u->language = store_pg_dup(r, k, 4);
	u->time_zone = store_pg_dup(r, k, 5);
	u->created_at = store_pg_i64(r, k, 6);
	u->last_login_at = store_pg_i64(r, k, 7);
	const char *p = PQgetisnull(r, k, 8) ? "" : PQgetvalue(r, k, 8);
	while (*p != '\0') {
		size_t l = strcspn(p, "\x1f");
		u->addresses = xreallocarray(u->addresses, u->naddresses + 1, sizeof(char *));
		u->addresses[u->naddresses++] = xstrndup(p, l);
		p += l + (p[l] == '\x1f' ? 1 : 0);
	}
	return u;
}

/* The accounts sql yields (with p's values; p is cleared). */
static int store_pg_users_read(struct store *s, const char *what, const char *sql,
			       struct store_pg_params *p, struct store_user ***out, size_t *n)
{
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), what, sql, p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_user **v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++)
		v[k] = store_pg_user_from_row(r, (int)k);
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

int store_pg_user_get(struct store *st, const char *username, struct store_user **out)
{
	struct store_pg_params p = {0};
	struct store_user **v = NULL;
	size_t n = 0;
	*out = NULL;
	store_pg_text(&p, username);
	int rc = store_pg_users_read(
	    st, "user_get", "SELECT " STORE_PG_USER_COLUMNS " FROM users u WHERE u.username = $1",
	    &p, &v, &n);
	if (rc < 0)
		return rc;
	if (n == 0) {
		free(v);
		return -ENOENT;
	}
	*out = v[0];
	free(v);
	return 0;
}

int store_pg_user_list(struct store *st, struct store_user ***out, size_t *n)
{
	struct store_pg_params p = {0};
	*out = NULL;
	*n = 0;
	return store_pg_users_read(st, "user_list",
				   "SELECT " STORE_PG_USER_COLUMNS
				   " FROM users u ORDER BY u.username COLLATE \"C\"",
				   &p, out, n);
}

int store_pg_user_count(struct store *s, uint64_t *count)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	PGresult *r = store_pg_exec(c->pg, "user_count", "SELECT count(*) FROM users", NULL, false);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	*count = (uint64_t)store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

static int store_pg_user_delete_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const char *username = *(const char **)arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, username);
	int rc = store_pg_do(c, "user_delete_sessions", "DELETE FROM sessions WHERE username = $1",
			     &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	/* its addresses go with it (ON DELETE CASCADE) */
	store_pg_text(&p, username);
	return store_pg_users_change(c, "user_delete", "DELETE FROM users WHERE username = $1", &p);
}

int store_pg_user_delete(struct store *st, const char *username)
{
	if (username == NULL)
		return -EINVAL;
	return store_pg_tx(store_pg_of(st), store_pg_user_delete_tx, &username);
}

struct store_pg_user_update {
	const char *username;
	const char *language;
	const char *time_zone;
	int64_t last_login_at;
	bool prefs;
};

static int store_pg_user_update_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_user_update *up = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, up->username);
	if (up->prefs) {
		store_pg_text(&p, up->language);
		store_pg_text(&p, up->time_zone);
		return store_pg_users_change(c, "user_prefs",
					     "UPDATE users SET language = coalesce($2, language),"
					     " time_zone = coalesce($3, time_zone)"
					     " WHERE username = $1",
					     &p);
	}
	store_pg_int(&p, up->last_login_at);
	return store_pg_users_change(c, "user_last_login",
				     "UPDATE users SET last_login_at = $2 WHERE username = $1", &p);
}

int store_pg_user_set_prefs(struct store *st, const char *username, const char *language,
			    const char *time_zone)
{
	struct store_pg_user_update up = {
	    .username = username, .language = language, .time_zone = time_zone, .prefs = true};
	return store_pg_tx(store_pg_of(st), store_pg_user_update_tx, &up);
}

int store_pg_user_set_last_login(struct store *st, const char *username, int64_t at)
{
	struct store_pg_user_update up = {.username = username, .last_login_at = at};
	return store_pg_tx(store_pg_of(st), store_pg_user_update_tx, &up);
}

/* ---- sessions ---- */

struct store_pg_session_args {
	const char *token_hash;
	const struct store_session *s;
	int64_t expires_at;
	int64_t now;
	int64_t created_before;
	uint64_t purged;
};

static int store_pg_session_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_session_args *a = arg;
	/* the addresses in one column, '\n'-joined (store_pg_session_add checked them) */
	struct strbuf addrs = STRBUF_INIT;
	strbuf_puts(&addrs, "");
	for (size_t i = 0; i < a->s->naddresses; i++) {
		if (i > 0)
			strbuf_addc(&addrs, '\n');
		strbuf_puts(&addrs, a->s->addresses[i]);
	}
	struct store_pg_params p = {0};
	store_pg_text(&p, a->token_hash);
	store_pg_text(&p, a->s->username);
	store_pg_text(&p, a->s->role);
	store_pg_owned(&p, strbuf_take(&addrs));
	store_pg_text(&p, a->s->csrf_token);
	store_pg_int(&p, a->s->created_at);
	store_pg_int(&p, a->s->expires_at);
	int rc = store_pg_do(c, "session_add",
			     "INSERT INTO sessions (token_hash, username, role, addresses,"
			     " csrf_token, created_at, expires_at)"
			     " VALUES ($1, $2, $3, $4, $5, $6, $7)",
			     &p, NULL);
	store_pg_params_clear(&p);
	return store_pg_users_exists(rc);
}

int store_pg_session_add(struct store *st, const char *token_hash, const struct store_session *s)
{
	if (token_hash == NULL || s == NULL || s->username == NULL || s->role == NULL ||
	    s->csrf_token == NULL || s->naddresses > STORE_USER_MAX_ADDRESSES)
		return -EINVAL;
	for (size_t i = 0; i < s->naddresses; i++) {
		if (strchr(s->addresses[i], '\n') != NULL)
			return -EINVAL;
	}
	struct store_pg_session_args a = {.token_hash = token_hash, .s = s};
	return store_pg_tx(store_pg_of(st), store_pg_session_add_tx, &a);
}

int store_pg_session_get(struct store *s, const char *token_hash, struct store_session **out)
{
	*out = NULL;
	struct store_pg_params p = {0};
	store_pg_text(&p, token_hash);
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), "session_get",
				"SELECT username, role, addresses, csrf_token, created_at,"
				" expires_at FROM sessions WHERE token_hash = $1",
				&p, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return -ENOENT;
	}
	struct store_session *ses = xcalloc(1, sizeof(*ses));
	ses->username = store_pg_dup(r, 0, 0);
	ses->role = store_pg_dup(r, 0, 1);
	const char *t = PQgetvalue(r, 0, 2);
	while (*t != '\0') {
		size_t l = strcspn(t, "\n");
		ses->addresses = xreallocarray(ses->addresses, ses->naddresses + 1, sizeof(char *));
		ses->addresses[ses->naddresses++] = xstrndup(t, l);
		if (t[l] == '\0')
			break;
		t += l + 1;
	}
	ses->csrf_token = store_pg_dup(r, 0, 3);
	ses->created_at = store_pg_i64(r, 0, 4);
	ses->expires_at = store_pg_i64(r, 0, 5);
	PQclear(r);
	*out = ses;
	return 0;
}

static int store_pg_session_touch_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_session_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->token_hash);
	store_pg_int(&p, a->expires_at);
	return store_pg_users_change(
	    c, "session_touch", "UPDATE sessions SET expires_at = $2 WHERE token_hash = $1", &p);
}

int store_pg_session_touch(struct store *st, const char *token_hash, int64_t expires_at)
{
	struct store_pg_session_args a = {.token_hash = token_hash, .expires_at = expires_at};
	return store_pg_tx(store_pg_of(st), store_pg_session_touch_tx, &a);
}

static int store_pg_session_delete_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_session_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->token_hash);
	return store_pg_users_change(c, "session_delete",
				     "DELETE FROM sessions WHERE token_hash = $1", &p);
}

int store_pg_session_delete(struct store *st, const char *token_hash)
{
	struct store_pg_session_args a = {.token_hash = token_hash};
	return store_pg_tx(store_pg_of(st), store_pg_session_delete_tx, &a);
}

static int store_pg_session_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_session_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->now);
	store_pg_int(&p, a->created_before);
	int rc = store_pg_do(c, "session_purge",
			     "DELETE FROM sessions WHERE expires_at <= $1 OR created_at < $2", &p,
			     &a->purged);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_session_purge(struct store *st, int64_t now, int64_t created_before, uint64_t *purged)
{
	struct store_pg_session_args a = {.now = now, .created_before = created_before};
	int rc = store_pg_tx(store_pg_of(st), store_pg_session_purge_tx, &a);
	if (rc == 0 && purged != NULL)
		*purged = a.purged;
	return rc;
}

/* ---- audit ---- */

static int store_pg_audit_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_audit *a = *(const struct store_audit **)arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->at);
	store_pg_text(&p, a->actor);
	store_pg_text(&p, a->action);
	store_pg_text(&p, a->target);
	store_pg_text(&p, a->detail);
	store_pg_text(&p, a->peer);
	int rc = store_pg_do(c, "audit_add",
			     "INSERT INTO audit (at, actor, action, target, detail, peer)"
			     " VALUES ($1, $2, $3, $4, $5, $6)",
			     &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_audit_add(struct store *st, const struct store_audit *a)
{
	if (a == NULL || a->actor == NULL || a->action == NULL)
		return -EINVAL;
	return store_pg_tx(store_pg_of(st), store_pg_audit_add_tx, &a);
}

int store_pg_audit_list(struct store *s, size_t limit, int64_t before_seq,
			struct store_audit ***out, size_t *n)
{
	struct store_pg *st = store_pg_of(s);
	*out = NULL;
	*n = 0;
	if (limit == 0 || limit > STORE_PG_AUDIT_LIST_MAX)
		return -EINVAL;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_int(&p, before_seq > 0 ? before_seq : INT64_MAX);
	store_pg_int(&p, (int64_t)limit);
	PGresult *r = store_pg_exec(c->pg, "audit_list",
				    "SELECT seq, at, actor, action, target, detail, peer FROM audit"
				    " WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
				    &p, false);
	store_pg_params_clear(&p);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	size_t rows = (size_t)PQntuples(r);
	struct store_audit **v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		struct store_audit *a = xcalloc(1, sizeof(*a));
		a->seq = store_pg_i64(r, (int)k, 0);
		a->at = store_pg_i64(r, (int)k, 1);
		a->actor = store_pg_dup(r, (int)k, 2);
		a->action = store_pg_dup(r, (int)k, 3);
		a->target = store_pg_dup(r, (int)k, 4);
		a->detail = store_pg_dup(r, (int)k, 5);
		a->peer = store_pg_dup(r, (int)k, 6);
		v[k] = a;
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

/* ---- second factors ---- */

int store_pg_totp_get(struct store *st, const char *username, struct store_totp **out)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	*out = NULL;
	store_pg_text(&p, username);
	int rc = store_pg_query(store_pg_of(st), "totp_get",
				"SELECT secret, created_at, enrolled_at, last_step,"
				" (SELECT count(*) FROM user_recovery_codes c"
				"  WHERE c.username = t.username AND c.used_at = 0)"
				" FROM user_totp t WHERE t.username = $1",
				&p, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	struct store_totp *t = xcalloc(1, sizeof(*t));
	t->secret = store_pg_dup(r, 0, 0);
	t->created_at = store_pg_i64(r, 0, 1);
	t->enrolled_at = store_pg_i64(r, 0, 2);
	t->last_step = store_pg_i64(r, 0, 3);
	t->recovery_left = (size_t)store_pg_i64(r, 0, 4);
	PQclear(r);
	*out = t;
	return 0;
}

/*
 * enrolled_at of username's second factor, locked for the transaction: 1 with
 * *enrolled, 0 when it has none, or -EIO.
 */
static int store_pg_totp_lock(PGconn *c, const char *username, int64_t *enrolled)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, username);
	PGresult *r = store_pg_exec(
	    c, "totp_lock", "SELECT enrolled_at FROM user_totp WHERE username = $1 FOR UPDATE", &p,
	    false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int rc = PQntuples(r) > 0 ? 1 : 0;
	if (rc == 1)
		*enrolled = store_pg_i64(r, 0, 0);
	PQclear(r);
	return rc;
}

static int store_pg_totp_change_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_totp_change *ch = arg;
	struct store_pg_params p = {0};
	int64_t enrolled = 0;
	int rc;
	(void)st;
	switch (ch->op) {
	case STORE_TOTP_BEGIN:
		rc = store_pg_totp_lock(c, ch->username, &enrolled);
		if (rc < 0)
			return rc;
		if (rc == 1 && enrolled != 0)
			return -EEXIST;
		store_pg_text(&p, ch->username);
		store_pg_text(&p, ch->secret);
		store_pg_int(&p, ch->now);
		/* no account, no row (and no foreign key error) */
		return store_pg_users_change(
		    c, "totp_begin",
		    "INSERT INTO user_totp (username, secret, created_at)"
		    " SELECT username, $2, $3 FROM users WHERE username = $1"
		    " ON CONFLICT (username) DO UPDATE SET secret = excluded.secret,"
		    " created_at = excluded.created_at, enrolled_at = 0, last_step = 0",
		    &p);
	case STORE_TOTP_CONFIRM:
		rc = store_pg_totp_lock(c, ch->username, &enrolled);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
		if (enrolled != 0)
			return -EEXIST;
		store_pg_text(&p, ch->username);
		store_pg_int(&p, ch->now);
		store_pg_int(&p, ch->step);
		if ((rc = store_pg_users_change(
			 c, "totp_confirm",
			 "UPDATE user_totp SET enrolled_at = $2, last_step = $3"
			 " WHERE username = $1",
			 &p)) < 0)
			return rc;
		store_pg_text(&p, ch->username);
		store_pg_array(&p, ch->hashes, ch->nhashes);
		rc = store_pg_do(c, "totp_confirm_codes",
				 "WITH d AS (DELETE FROM user_recovery_codes WHERE username = $1)"
				 " INSERT INTO user_recovery_codes (username, code_hash)"
				 " SELECT DISTINCT $1, h FROM unnest($2::text[]) AS h",
				 &p, NULL);
		store_pg_params_clear(&p);
		return rc;
	case STORE_TOTP_USE_STEP:
		rc = store_pg_totp_lock(c, ch->username, &enrolled);
		if (rc < 0)
			return rc;
		if (rc == 0 || enrolled == 0)
			return -ENOENT;
		store_pg_text(&p, ch->username);
		store_pg_int(&p, ch->step);
		rc = store_pg_users_change(c, "totp_use_step",
					   "UPDATE user_totp SET last_step = $2"
					   " WHERE username = $1 AND last_step < $2",
					   &p);
		return rc == -ENOENT ? -EALREADY : rc;
	case STORE_TOTP_USE_RECOVERY:
		store_pg_text(&p, ch->username);
		store_pg_text(&p, ch->hash);
		store_pg_int(&p, ch->now > 0 ? ch->now : 1);
		return store_pg_users_change(
		    c, "totp_use_recovery",
		    "UPDATE user_recovery_codes r SET used_at = $3"
		    " WHERE r.username = $1 AND r.code_hash = $2 AND r.used_at = 0"
		    " AND EXISTS (SELECT 1 FROM user_totp t WHERE t.username = r.username"
		    "  AND t.enrolled_at <> 0)",
		    &p);
	case STORE_TOTP_DELETE:
		store_pg_text(&p, ch->username);
		rc = store_pg_do(c, "totp_delete_codes",
				 "DELETE FROM user_recovery_codes WHERE username = $1", &p, NULL);
		store_pg_params_clear(&p);
		if (rc < 0)
			return rc;
		store_pg_text(&p, ch->username);
		return store_pg_users_change(c, "totp_delete",
					     "DELETE FROM user_totp WHERE username = $1", &p);
	}
	return -EINVAL;
}

int store_pg_totp_change(struct store *st, const struct store_totp_change *ch)
{
	return store_pg_tx(store_pg_of(st), store_pg_totp_change_tx, unconst(ch));
}
