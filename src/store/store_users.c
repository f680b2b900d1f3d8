/*
 * store_users — the SQLite backend's accounts, sessions and audit log (tables of
 * migration 3): local user accounts with their addresses, login sessions keyed by
 * the hash of their token, and the append-only audit log.
 *
 * Not for: deciding who may log in or what a role may do (api/auth.c and the
 * API decide), hashing passwords or tokens (callers hand in hashes), or sessions'
 * expiry policy (callers pass the deadlines).
 *
 * These calls are rare next to ingest, so their statements are prepared per call
 * rather than cached per connection: the cache is sized for the hot paths.
 * Changes run as writer jobs; reads take a reader connection.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/* Audit rows in one page. */
#define STORE_AUDIT_LIST_MAX 1000

/* ---- helpers ---- */

static sqlite3_stmt *store_users_prepare(struct store_conn *c, const char *sql)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), sql, -1, &s, NULL) != SQLITE_OK) {
		store_int_log_sqlite("prepare", store_int_db(c));
		return NULL;
	}
	return s;
}

static void store_users_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* Steps s (an uncached statement) to its end and finalizes it: 0, -EEXIST, -EIO. */
static int store_users_run(struct store_conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	int ext = sqlite3_extended_errcode(store_int_db(c));
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
		return -EEXIST;
	log_error("store.users_failed", "what=%s error=%s", what, sqlite3_errmsg(store_int_db(c)));
	return -EIO;
}

static char *store_users_lower(const char *s)
{
	char *out = xstrdup(s);
	for (char *p = out; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return out;
}

static void store_users_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* '\n'-joined text of v (sessions keep their addresses in one column). */
static char *store_users_join(char *const *v, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	char *out = xmalloc(len);
	char *p = out;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(v[i]);
		memcpy(p, v[i], l);
		p += l;
		if (i + 1 < n)
			*p++ = '\n';
	}
	*p = '\0';
	return out;
}

static void store_users_split(const char *text, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (text == NULL || *text == '\0')
		return;
	const char *p = text;
	for (;;) {
		size_t l = strcspn(p, "\n");
		*out = xreallocarray(*out, *n + 1, sizeof(**out));
		(*out)[(*n)++] = xstrndup(p, l);
		if (p[l] == '\0')
			break;
		p += l + 1;
	}
}

/* ---- users ---- */

void store_user_free(struct store_user *u)
{
	if (u == NULL)
		return;
	free(unconst(u->username));
	free(u->password_hash);
	free(unconst(u->role));
	free(unconst(u->source));
	free(unconst(u->language));
	free(unconst(u->time_zone));
	store_users_strv_free(u->addresses, u->naddresses);
	free(u);
}

void store_user_array_free(struct store_user **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_user_free(v[i]);
	free(v);
}

static int store_user_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_user *u = *(const struct store_user **)arg;
	sqlite3_stmt *s = store_users_prepare(
	    c, "INSERT INTO users (username, password_hash, role, source, language, time_zone,"
	       " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
	if (s == NULL)
		return -EIO;
	store_users_bind_text(s, 1, u->username);
	store_users_bind_text(s, 2, u->password_hash);
	store_users_bind_text(s, 3, u->role);
	store_users_bind_text(s, 4, u->source != NULL ? u->source : "local");
	store_users_bind_text(s, 5, u->language);
	store_users_bind_text(s, 6, u->time_zone);
	sqlite3_bind_int64(s, 7, u->created_at);
	int rc = store_users_run(c, s, "user_add");
	for (size_t i = 0; rc == 0 && i < u->naddresses; i++) {
		s = store_users_prepare(c, "INSERT OR IGNORE INTO user_addresses (username,"
					   " address_lc, pos) VALUES (?, ?, ?)");
		if (s == NULL)
			return -EIO;
		char *lc = store_users_lower(u->addresses[i]);
		store_users_bind_text(s, 1, u->username);
		store_users_bind_text(s, 2, lc);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)i);
		free(lc);
		rc = store_users_run(c, s, "user_add_address");
	}
	return rc;
}

int store_sqlite_user_add(struct store *st, const struct store_user *u)
{
	if (u == NULL || u->username == NULL || *u->username == '\0' || u->role == NULL ||
	    u->naddresses > STORE_USER_MAX_ADDRESSES)
		return -EINVAL;
	return store_int_run_job(st, store_user_add_job, &u);
}

/* Fills u's addresses, in the order they were added. */
static int store_user_read_addresses(struct store_conn *c, struct store_user *u)
{
	sqlite3_stmt *s = store_users_prepare(
	    c, "SELECT address_lc FROM user_addresses WHERE username = ? ORDER BY pos, address_lc");
	if (s == NULL)
		return -EIO;
	store_users_bind_text(s, 1, u->username);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		u->addresses = xreallocarray(u->addresses, u->naddresses + 1, sizeof(char *));
		u->addresses[u->naddresses++] = store_int_col_dup(s, 0);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static struct store_user *store_user_from_row(sqlite3_stmt *s)
{
	struct store_user *u = xcalloc(1, sizeof(*u));
	u->username = store_int_col_dup(s, 0);
	u->password_hash = store_int_col_dup(s, 1);
	u->role = store_int_col_dup(s, 2);
	u->source = store_int_col_dup(s, 3);
	u->language = store_int_col_dup(s, 4);
	u->time_zone = store_int_col_dup(s, 5);
	u->created_at = sqlite3_column_int64(s, 6);
	u->last_login_at = sqlite3_column_int64(s, 7);
	return u;
}

#define STORE_USER_COLUMNS                                                                         \
	"username, password_hash, role, source, language, time_zone, created_at,"                  \
	" coalesce(last_login_at, 0)"

int store_sqlite_user_get(struct store *st, const char *username, struct store_user **out)
{
	struct store_conn *c = NULL;
	struct store_user *u = NULL;
	*out = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    store_users_prepare(c, "SELECT " STORE_USER_COLUMNS " FROM users WHERE username = ?");
	if (s == NULL) {
		rc = -EIO;
		goto fail;
	}
	store_users_bind_text(s, 1, username);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		u = store_user_from_row(s);
	sqlite3_finalize(s);
	if (u == NULL) {
		rc = step == SQLITE_DONE ? -ENOENT : -EIO;
		goto fail;
	}
	rc = store_user_read_addresses(c, u);
	if (rc < 0)
		goto fail;
	store_int_reader_put(st, c);
	*out = u;
	return 0;

fail:
	store_user_free(u);
	store_int_reader_put(st, c);
	return rc;
}

int store_sqlite_user_list(struct store *st, struct store_user ***out, size_t *n)
{
	struct store_conn *c = NULL;
	struct store_user **v = NULL;
	size_t count = 0;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    store_users_prepare(c, "SELECT " STORE_USER_COLUMNS " FROM users ORDER BY username");
	if (s == NULL) {
		rc = -EIO;
		goto fail;
	}
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, count + 1, sizeof(*v));
		v[count++] = store_user_from_row(s);
	}
	sqlite3_finalize(s);
	if (step != SQLITE_DONE) {
		rc = -EIO;
		goto fail;
	}
	for (size_t i = 0; i < count; i++) {
		if ((rc = store_user_read_addresses(c, v[i])) < 0)
			goto fail;
	}
	store_int_reader_put(st, c);
	*out = v;
	*n = count;
	return 0;

fail:
	store_user_array_free(v, count);
	store_int_reader_put(st, c);
	return rc;
}

int store_sqlite_user_count(struct store *st, uint64_t *count)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_users_prepare(c, "SELECT count(*) FROM users");
	rc = -EIO;
	if (s != NULL && sqlite3_step(s) == SQLITE_ROW) {
		*count = (uint64_t)sqlite3_column_int64(s, 0);
		rc = 0;
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	return rc;
}

static int store_user_delete_job(struct store *st, struct store_conn *c, void *arg)
{
	const char *username = *(const char **)arg;
	static const char *const sql[] = {
	    "DELETE FROM user_addresses WHERE username = ?",
	    "DELETE FROM sessions WHERE username = ?",
	    "DELETE FROM user_totp WHERE username = ?",
	    "DELETE FROM user_recovery_codes WHERE username = ?",
	    "DELETE FROM users WHERE username = ?",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		sqlite3_stmt *s = store_users_prepare(c, sql[i]);
		if (s == NULL)
			return -EIO;
		store_users_bind_text(s, 1, username);
		int rc = store_users_run(c, s, "user_delete");
		if (rc < 0)
			return rc;
	}
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_user_delete(struct store *st, const char *username)
{
	if (username == NULL)
		return -EINVAL;
	return store_int_run_job(st, store_user_delete_job, &username);
}

struct store_user_update {
	const char *username;
	const char *language;
	const char *time_zone;
	int64_t last_login_at;
	bool prefs;
};

static int store_user_update_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_user_update *up = arg;
	sqlite3_stmt *s = store_users_prepare(
	    c, up->prefs ? "UPDATE users SET language = coalesce(?, language),"
			   " time_zone = coalesce(?, time_zone) WHERE username = ?"
			 : "UPDATE users SET last_login_at = ? WHERE username = ?");
	if (s == NULL)
		return -EIO;
	if (up->prefs) {
		store_users_bind_text(s, 1, up->language);
		store_users_bind_text(s, 2, up->time_zone);
		store_users_bind_text(s, 3, up->username);
	} else {
		sqlite3_bind_int64(s, 1, up->last_login_at);
		store_users_bind_text(s, 2, up->username);
	}
	int rc = store_users_run(c, s, "user_update");
	if (rc < 0)
		return rc;
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_user_set_prefs(struct store *st, const char *username, const char *language,
				const char *time_zone)
{
	struct store_user_update up = {
	    .username = username, .language = language, .time_zone = time_zone, .prefs = true};
	return store_int_run_job(st, store_user_update_job, &up);
}

int store_sqlite_user_set_last_login(struct store *st, const char *username, int64_t at)
{
	struct store_user_update up = {.username = username, .last_login_at = at};
	return store_int_run_job(st, store_user_update_job, &up);
}

/* ---- sessions ---- */

void store_session_free(struct store_session *s)
{
	if (s == NULL)
		return;
	free(s->username);
	free(s->role);
	store_users_strv_free(s->addresses, s->naddresses);
	free(s->csrf_token);
	free(s);
}

struct store_session_add {
	const char *token_hash;
	const struct store_session *s;
};

static int store_session_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_session_add *a = arg;
	sqlite3_stmt *s = store_users_prepare(
	    c, "INSERT INTO sessions (token_hash, username, role, addresses, csrf_token,"
	       " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
	if (s == NULL)
		return -EIO;
	char *addrs = store_users_join(a->s->addresses, a->s->naddresses);
	store_users_bind_text(s, 1, a->token_hash);
	store_users_bind_text(s, 2, a->s->username);
	store_users_bind_text(s, 3, a->s->role);
	store_users_bind_text(s, 4, addrs);
	store_users_bind_text(s, 5, a->s->csrf_token);
	sqlite3_bind_int64(s, 6, a->s->created_at);
	sqlite3_bind_int64(s, 7, a->s->expires_at);
	free(addrs);
	return store_users_run(c, s, "session_add");
}

int store_sqlite_session_add(struct store *st, const char *token_hash,
			     const struct store_session *s)
{
	if (token_hash == NULL || s == NULL || s->username == NULL || s->role == NULL ||
	    s->csrf_token == NULL || s->naddresses > STORE_USER_MAX_ADDRESSES)
		return -EINVAL;
	for (size_t i = 0; i < s->naddresses; i++) {
		if (strchr(s->addresses[i], '\n') != NULL)
			return -EINVAL;
	}
	struct store_session_add a = {.token_hash = token_hash, .s = s};
	return store_int_run_job(st, store_session_add_job, &a);
}

int store_sqlite_session_get(struct store *st, const char *token_hash, struct store_session **out)
{
	struct store_conn *c = NULL;
	*out = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    store_users_prepare(c, "SELECT username, role, addresses, csrf_token, created_at,"
				   " expires_at FROM sessions WHERE token_hash = ?");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	store_users_bind_text(s, 1, token_hash);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		struct store_session *ses = xcalloc(1, sizeof(*ses));
		ses->username = store_int_col_dup(s, 0);
		ses->role = store_int_col_dup(s, 1);
		store_users_split((const char *)sqlite3_column_text(s, 2), &ses->addresses,
				  &ses->naddresses);
		ses->csrf_token = store_int_col_dup(s, 3);
		ses->created_at = sqlite3_column_int64(s, 4);
		ses->expires_at = sqlite3_column_int64(s, 5);
		*out = ses;
		rc = 0;
	} else {
		rc = step == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	return rc;
}

struct store_session_change {
	const char *token_hash;
	int64_t expires_at;
	bool remove;
};

static int store_session_change_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_session_change *ch = arg;
	sqlite3_stmt *s = store_users_prepare(
	    c, ch->remove ? "DELETE FROM sessions WHERE token_hash = ?"
			  : "UPDATE sessions SET expires_at = ? WHERE token_hash = ?");
	if (s == NULL)
		return -EIO;
	if (ch->remove) {
		store_users_bind_text(s, 1, ch->token_hash);
	} else {
		sqlite3_bind_int64(s, 1, ch->expires_at);
		store_users_bind_text(s, 2, ch->token_hash);
	}
	int rc = store_users_run(c, s, "session_change");
	if (rc < 0)
		return rc;
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_session_touch(struct store *st, const char *token_hash, int64_t expires_at)
{
	struct store_session_change ch = {.token_hash = token_hash, .expires_at = expires_at};
	return store_int_run_job(st, store_session_change_job, &ch);
}

int store_sqlite_session_delete(struct store *st, const char *token_hash)
{
	struct store_session_change ch = {.token_hash = token_hash, .remove = true};
	return store_int_run_job(st, store_session_change_job, &ch);
}

/* ---- second factors ---- */

int store_sqlite_totp_get(struct store *st, const char *username, struct store_totp **out)
{
	struct store_conn *c = NULL;
	*out = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    store_users_prepare(c, "SELECT secret, created_at, enrolled_at, last_step,"
				   " (SELECT count(*) FROM user_recovery_codes r"
				   "  WHERE r.username = t.username AND r.used_at = 0)"
				   " FROM user_totp t WHERE username = ?");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	store_users_bind_text(s, 1, username);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		struct store_totp *t = xcalloc(1, sizeof(*t));
		t->secret = store_int_col_dup(s, 0);
		t->created_at = sqlite3_column_int64(s, 1);
		t->enrolled_at = sqlite3_column_int64(s, 2);
		t->last_step = sqlite3_column_int64(s, 3);
		t->recovery_left = (size_t)sqlite3_column_int64(s, 4);
		*out = t;
		rc = 0;
	} else {
		rc = step == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	return rc;
}

/* The first column of the one row sql (bound to username) gives: 0 none, 1 one, <0 error. */
static int store_totp_int(struct store_conn *c, const char *sql, const char *username, int64_t *out)
{
	sqlite3_stmt *s = store_users_prepare(c, sql);
	if (s == NULL)
		return -EIO;
	store_users_bind_text(s, 1, username);
	int step = sqlite3_step(s);
	int rc = step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : -EIO;
	if (rc == 1)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc;
}

/* Runs s and answers 0 when it changed a row, else none (-ENOENT, -EALREADY). */
static int store_totp_changed(struct store_conn *c, sqlite3_stmt *s, const char *what, int none)
{
	int rc = store_users_run(c, s, what);
	if (rc < 0)
		return rc;
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : none;
}

static int store_totp_change_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_totp_change *ch = arg;
	int64_t enrolled = 0, one = 0;
	sqlite3_stmt *s = NULL;
	int rc;
	switch (ch->op) {
	case STORE_TOTP_BEGIN:
		rc = store_totp_int(c, "SELECT enrolled_at FROM user_totp WHERE username = ?",
				    ch->username, &enrolled);
		if (rc < 0)
			return rc;
		if (rc == 1 && enrolled != 0)
			return -EEXIST;
		rc =
		    store_totp_int(c, "SELECT 1 FROM users WHERE username = ?", ch->username, &one);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
		s = store_users_prepare(
		    c, "INSERT OR REPLACE INTO user_totp (username, secret,"
		       " created_at, enrolled_at, last_step) VALUES (?, ?, ?, 0, 0)");
		if (s == NULL)
			return -EIO;
		store_users_bind_text(s, 1, ch->username);
		store_users_bind_text(s, 2, ch->secret);
		sqlite3_bind_int64(s, 3, ch->now);
		return store_users_run(c, s, "totp_begin");
	case STORE_TOTP_CONFIRM:
		rc = store_totp_int(c, "SELECT enrolled_at FROM user_totp WHERE username = ?",
				    ch->username, &enrolled);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
		if (enrolled != 0)
			return -EEXIST;
		s = store_users_prepare(c, "UPDATE user_totp SET enrolled_at = ?, last_step = ?"
					   " WHERE username = ?");
		if (s == NULL)
			return -EIO;
		sqlite3_bind_int64(s, 1, ch->now);
		sqlite3_bind_int64(s, 2, ch->step);
		store_users_bind_text(s, 3, ch->username);
		if ((rc = store_users_run(c, s, "totp_confirm")) < 0)
			return rc;
		s = store_users_prepare(c, "DELETE FROM user_recovery_codes WHERE username = ?");
		if (s == NULL)
			return -EIO;
		store_users_bind_text(s, 1, ch->username);
		if ((rc = store_users_run(c, s, "totp_confirm_codes")) < 0)
			return rc;
		for (size_t i = 0; i < ch->nhashes; i++) {
			s = store_users_prepare(c, "INSERT OR IGNORE INTO user_recovery_codes"
						   " (username, code_hash) VALUES (?, ?)");
			if (s == NULL)
				return -EIO;
			store_users_bind_text(s, 1, ch->username);
			store_users_bind_text(s, 2, ch->hashes[i]);
			if ((rc = store_users_run(c, s, "totp_confirm_code")) < 0)
				return rc;
		}
		return 0;
	case STORE_TOTP_USE_STEP:
		rc = store_totp_int(c, "SELECT enrolled_at FROM user_totp WHERE username = ?",
				    ch->username, &enrolled);
		if (rc < 0)
			return rc;
		if (rc == 0 || enrolled == 0)
			return -ENOENT;
		s = store_users_prepare(c, "UPDATE user_totp SET last_step = ?"
					   " WHERE username = ? AND last_step < ?");
		if (s == NULL)
			return -EIO;
		sqlite3_bind_int64(s, 1, ch->step);
		store_users_bind_text(s, 2, ch->username);
		sqlite3_bind_int64(s, 3, ch->step);
		return store_totp_changed(c, s, "totp_use_step", -EALREADY);
	case STORE_TOTP_USE_RECOVERY:
		s = store_users_prepare(c, "UPDATE user_recovery_codes SET used_at = ?"
					   " WHERE username = ? AND code_hash = ? AND used_at = 0"
					   " AND EXISTS (SELECT 1 FROM user_totp t"
					   "  WHERE t.username = user_recovery_codes.username"
					   "  AND t.enrolled_at <> 0)");
		if (s == NULL)
			return -EIO;
		sqlite3_bind_int64(s, 1, ch->now > 0 ? ch->now : 1);
		store_users_bind_text(s, 2, ch->username);
		store_users_bind_text(s, 3, ch->hash);
		return store_totp_changed(c, s, "totp_use_recovery", -ENOENT);
	case STORE_TOTP_DELETE:
		s = store_users_prepare(c, "DELETE FROM user_recovery_codes WHERE username = ?");
		if (s == NULL)
			return -EIO;
		store_users_bind_text(s, 1, ch->username);
		if ((rc = store_users_run(c, s, "totp_delete_codes")) < 0)
			return rc;
		s = store_users_prepare(c, "DELETE FROM user_totp WHERE username = ?");
		if (s == NULL)
			return -EIO;
		store_users_bind_text(s, 1, ch->username);
		return store_totp_changed(c, s, "totp_delete", -ENOENT);
	}
	return -EINVAL;
}

int store_sqlite_totp_change(struct store *st, const struct store_totp_change *ch)
{
	return store_int_run_job(st, store_totp_change_job, unconst(ch));
}

struct store_session_purge {
	int64_t now;
	int64_t created_before;
	uint64_t purged;
};

static int store_session_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_session_purge *p = arg;
	sqlite3_stmt *s =
	    store_users_prepare(c, "DELETE FROM sessions WHERE expires_at <= ? OR created_at < ?");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, p->now);
	sqlite3_bind_int64(s, 2, p->created_before);
	int rc = store_users_run(c, s, "session_purge");
	if (rc == 0)
		p->purged = (uint64_t)sqlite3_changes(store_int_db(c));
	return rc;
}

int store_sqlite_session_purge(struct store *st, int64_t now, int64_t created_before,
			       uint64_t *purged)
{
	struct store_session_purge p = {.now = now, .created_before = created_before};
	int rc = store_int_run_job(st, store_session_purge_job, &p);
	if (rc == 0 && purged != NULL)
		*purged = p.purged;
	return rc;
}

/* ---- audit ---- */

void store_audit_free(struct store_audit *a)
{
	if (a == NULL)
		return;
	free(unconst(a->actor));
	free(unconst(a->action));
	free(unconst(a->target));
	free(unconst(a->detail));
	free(unconst(a->peer));
	free(a);
}

void store_audit_array_free(struct store_audit **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_audit_free(v[i]);
	free(v);
}

static int store_audit_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_audit *a = *(const struct store_audit **)arg;
	sqlite3_stmt *s = store_users_prepare(c, "INSERT INTO audit (at, actor, action, target, "
						 "detail, peer) VALUES (?, ?, ?, ?, ?, ?)");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->at);
	store_users_bind_text(s, 2, a->actor);
	store_users_bind_text(s, 3, a->action);
	store_users_bind_text(s, 4, a->target);
	store_users_bind_text(s, 5, a->detail);
	store_users_bind_text(s, 6, a->peer);
	return store_users_run(c, s, "audit_add");
}

int store_sqlite_audit_add(struct store *st, const struct store_audit *a)
{
	if (a == NULL || a->actor == NULL || a->action == NULL)
		return -EINVAL;
	return store_int_run_job(st, store_audit_add_job, &a);
}

int store_sqlite_audit_list(struct store *st, size_t limit, int64_t before_seq,
			    struct store_audit ***out, size_t *n)
{
	struct store_conn *c = NULL;
	struct store_audit **v = NULL;
	size_t count = 0;
	*out = NULL;
	*n = 0;
	if (limit == 0 || limit > STORE_AUDIT_LIST_MAX)
		return -EINVAL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    store_users_prepare(c, "SELECT seq, at, actor, action, target, detail, peer FROM audit"
				   " WHERE seq < ? ORDER BY seq DESC LIMIT ?");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, before_seq > 0 ? before_seq : INT64_MAX);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_audit *a = xcalloc(1, sizeof(*a));
		a->seq = sqlite3_column_int64(s, 0);
		a->at = sqlite3_column_int64(s, 1);
		a->actor = store_int_col_dup(s, 2);
		a->action = store_int_col_dup(s, 3);
		a->target = store_int_col_dup(s, 4);
		a->detail = store_int_col_dup(s, 5);
		a->peer = store_int_col_dup(s, 6);
		v = xreallocarray(v, count + 1, sizeof(*v));
		v[count++] = a;
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_audit_array_free(v, count);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = count;
	return 0;
}
