/*
 * store_digest — the SQLite side of the notification digests (store.h, "digests"): end
 * users with their addresses (tables users, user_addresses), new quarantined
 * messages per address, the digest_state bookkeeping and used_tokens.
 *
 * Reads take a reader connection; every change is one writer job (committed
 * before the call returns), like every other backend file. The queries walk the
 * messages primary key (seq ranges) or the recipients_address index, never the
 * whole store. Not for: deciding who gets a digest or building it (digest/notify).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "store/store_sqlite_int.h"

/* Used nonces forgotten per store_digest_token_use call once their token expired. */
#define STORE_DIGEST_PRUNE_BATCH 100

static const char sql_user_by_address[] =
    "SELECT u.username, u.language, u.time_zone FROM user_addresses a"
    " JOIN users u ON u.username = a.username"
    " WHERE a.address_lc = lower(?1) AND u.role = 'enduser'"
    " ORDER BY u.username LIMIT 1";
static const char sql_user_by_name[] =
    "SELECT username, language, time_zone FROM users WHERE username = ?1 AND role = 'enduser'";
static const char sql_user_addresses[] =
    "SELECT address_lc FROM user_addresses WHERE username = ?1 ORDER BY address_lc";
static const char sql_max_seq[] = "SELECT coalesce(max(seq), 0) FROM messages";
static const char sql_candidates[] =
    "SELECT DISTINCT r.address_lc FROM messages m JOIN recipients r ON r.msg_id = m.id"
    " WHERE m.seq > ?1 AND m.seq <= ?2 AND m.quarantine = ?3 AND r.state = 0";
static const char sql_entries[] =
    "SELECT m.seq, m.id, m.received_at, r.address, m.sender, m.from_text, m.from_addr,"
    "  m.subject, m.score"
    " FROM recipients r JOIN messages m ON m.id = r.msg_id"
    " WHERE r.address_lc = lower(?1) AND r.state = 0 AND m.quarantine = ?2"
    "  AND m.seq > ?3 AND m.seq <= ?4"
    " ORDER BY m.seq LIMIT ?5";
static const char sql_entries_count[] =
    "SELECT count(*) FROM recipients r JOIN messages m ON m.id = r.msg_id"
    " WHERE r.address_lc = lower(?1) AND r.state = 0 AND m.quarantine = ?2"
    "  AND m.seq > ?3 AND m.seq <= ?4";
static const char sql_state_get[] =
    "SELECT last_seq, last_sent_at FROM digest_state WHERE address_lc = lower(?1)";
static const char sql_state_put[] =
    "INSERT INTO digest_state(address_lc, last_sent_at, last_seq) VALUES (lower(?1), ?2, ?3)"
    " ON CONFLICT(address_lc) DO UPDATE SET last_sent_at = excluded.last_sent_at,"
    "  last_seq = max(last_seq, excluded.last_seq)";
static const char sql_mark_put[] =
    "INSERT INTO digest_state(address_lc, last_sent_at, last_seq) VALUES ('*', ?1, ?2)"
    " ON CONFLICT(address_lc) DO UPDATE SET last_sent_at = excluded.last_sent_at,"
    "  last_seq = excluded.last_seq";
static const char sql_token_used[] = "SELECT 1 FROM used_tokens WHERE nonce = ?1";
static const char sql_token_insert[] =
    "INSERT OR IGNORE INTO used_tokens(nonce, used_at, expires_at) VALUES (?1, ?2, ?3)";
static const char sql_token_prune[] =
    "DELETE FROM used_tokens WHERE nonce IN"
    " (SELECT nonce FROM used_tokens WHERE expires_at < ?1 LIMIT ?2)";

void store_digest_user_free(struct store_digest_user *u)
{
	if (u == NULL)
		return;
	free(u->username);
	free(u->language);
	free(u->time_zone);
	for (size_t i = 0; i < u->naddresses; i++)
		free(u->addresses[i]);
	free(u->addresses);
	free(u);
}

void store_digest_entries_free(struct store_digest_entry *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].recipient);
		free(v[i].sender);
		free(v[i].from);
		free(v[i].from_addr);
		free(v[i].subject);
	}
	free(v);
}

/* Steps s through its rows, appending column 0 to *v; resets s. 0 or -EIO. */
static int store_digest_collect_text(struct store_conn *c, sqlite3_stmt *s, const char *what,
				     char ***v, size_t *n)
{
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		*v = xreallocarray(*v, *n + 1, sizeof(**v));
		(*v)[(*n)++] = store_int_col_dup(s, 0);
	}
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		store_int_log_sqlite(what, store_int_db(c));
		return -EIO;
	}
	return 0;
}

/* Reads the user row s points at (after a bind) and its addresses. */
static int store_digest_user_read(struct store_conn *c, sqlite3_stmt *s,
				  struct store_digest_user **out)
{
	struct store_digest_user *u = NULL;
	int step = sqlite3_step(s);
	int rc;
	if (step != SQLITE_ROW) {
		sqlite3_reset(s);
		if (step == SQLITE_DONE)
			return -ENOENT;
		store_int_log_sqlite("digest_user", store_int_db(c));
		return -EIO;
	}
	u = xcalloc(1, sizeof(*u));
	u->username = store_int_col_dup(s, 0);
	u->language = store_int_col_dup(s, 1);
	u->time_zone = store_int_col_dup(s, 2);
	sqlite3_reset(s);
	sqlite3_stmt *a = store_int_stmt(c, sql_user_addresses);
	if (a == NULL) {
		rc = -EIO;
		goto fail;
	}
	sqlite3_bind_text(a, 1, u->username, -1, SQLITE_STATIC);
	rc =
	    store_digest_collect_text(c, a, "digest_user_addresses", &u->addresses, &u->naddresses);
	if (rc < 0)
		goto fail;
	*out = u;
	return 0;

fail:
	store_digest_user_free(u);
	return rc;
}

static int store_digest_user_lookup(struct store *st, const char *sql, const char *key,
				    struct store_digest_user **out)
{
	struct store_conn *c;
	*out = NULL;
	if (key == NULL || *key == '\0')
		return -EINVAL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql);
	if (s == NULL) {
		rc = -EIO;
	} else {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		rc = store_digest_user_read(c, s, out);
	}
	store_int_reader_put(st, c);
	return rc;
}

int store_sqlite_digest_user_by_address(struct store *st, const char *address,
					struct store_digest_user **out)
{
	return store_digest_user_lookup(st, sql_user_by_address, address, out);
}

int store_sqlite_digest_user_by_name(struct store *st, const char *username,
				     struct store_digest_user **out)
{
	return store_digest_user_lookup(st, sql_user_by_name, username, out);
}

int store_sqlite_digest_max_seq(struct store *st, int64_t *out)
{
	struct store_conn *c;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql_max_seq);
	rc = -EIO;
	if (s != NULL) {
		if (sqlite3_step(s) == SQLITE_ROW) {
			*out = sqlite3_column_int64(s, 0);
			rc = 0;
		} else {
			store_int_log_sqlite("digest_max_seq", store_int_db(c));
		}
		sqlite3_reset(s);
	}
	store_int_reader_put(st, c);
	return rc;
}

int store_sqlite_digest_candidates(struct store *st, const char *q, int64_t after, int64_t upto,
				   char ***out, size_t *n)
{
	struct store_conn *c;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql_candidates);
	if (s == NULL) {
		rc = -EIO;
	} else {
		sqlite3_bind_int64(s, 1, after);
		sqlite3_bind_int64(s, 2, upto);
		sqlite3_bind_text(s, 3, q, -1, SQLITE_STATIC);
		rc = store_digest_collect_text(c, s, "digest_candidates", out, n);
	}
	store_int_reader_put(st, c);
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			free((*out)[i]);
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int store_sqlite_digest_entries(struct store *st, const char *q, const char *address, int64_t after,
				int64_t upto, size_t limit, struct store_digest_entry **out,
				size_t *n, size_t *total)
{
	struct store_conn *c;
	struct store_digest_entry *v = NULL;
	size_t count = 0;
	int rc, step;
	*out = NULL;
	*n = 0;
	if (address == NULL || limit == 0)
		return -EINVAL;
	if ((rc = store_int_reader_get(st, &c)) < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql_entries);
	if (s == NULL) {
		rc = -EIO;
		goto done;
	}
	sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, q, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, after);
	sqlite3_bind_int64(s, 4, upto);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)limit);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, count + 1, sizeof(*v));
		struct store_digest_entry *e = &v[count++];
		memset(e, 0, sizeof(*e));
		e->seq = sqlite3_column_int64(s, 0);
		const unsigned char *id = sqlite3_column_text(s, 1);
		snprintf(e->id, sizeof(e->id), "%s", id != NULL ? (const char *)id : "");
		e->received_at = sqlite3_column_int64(s, 2);
		e->recipient = store_int_col_dup(s, 3);
		e->sender = store_int_col_dup(s, 4);
		e->from = store_int_col_dup(s, 5);
		e->from_addr = store_int_col_dup(s, 6);
		e->subject = store_int_col_dup(s, 7);
		e->has_score = sqlite3_column_type(s, 8) != SQLITE_NULL;
		e->score = e->has_score ? sqlite3_column_double(s, 8) : 0.0;
	}
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		store_int_log_sqlite("digest_entries", store_int_db(c));
		rc = -EIO;
		goto done;
	}
	if (total != NULL) {
		*total = count;
		if (count == limit) {
			sqlite3_stmt *t = store_int_stmt(c, sql_entries_count);
			if (t == NULL) {
				rc = -EIO;
				goto done;
			}
			sqlite3_bind_text(t, 1, address, -1, SQLITE_STATIC);
			sqlite3_bind_text(t, 2, q, -1, SQLITE_STATIC);
			sqlite3_bind_int64(t, 3, after);
			sqlite3_bind_int64(t, 4, upto);
			if (sqlite3_step(t) == SQLITE_ROW)
				*total = (size_t)sqlite3_column_int64(t, 0);
			sqlite3_reset(t);
		}
	}
	rc = 0;

done:
	store_int_reader_put(st, c);
	if (rc < 0) {
		store_digest_entries_free(v, count);
		return rc;
	}
	*out = v;
	*n = count;
	return 0;
}

int store_sqlite_digest_state_get(struct store *st, const char *address, int64_t *last_seq,
				  int64_t *last_sent_at)
{
	struct store_conn *c;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql_state_get);
	if (s == NULL) {
		rc = -EIO;
		goto done;
	}
	sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		if (last_seq != NULL)
			*last_seq = sqlite3_column_int64(s, 0);
		if (last_sent_at != NULL)
			*last_sent_at = sqlite3_column_int64(s, 1);
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		store_int_log_sqlite("digest_state_get", store_int_db(c));
		rc = -EIO;
	}
	sqlite3_reset(s);
done:
	store_int_reader_put(st, c);
	return rc;
}

struct store_digest_state_args {
	const char *const *addresses;
	size_t n;
	int64_t last_seq;
	int64_t sent_at;
};

static int store_digest_state_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_digest_state_args *a = arg;
	for (size_t i = 0; i < a->n; i++) {
		bool mark = strcmp(a->addresses[i], "*") == 0;
		sqlite3_stmt *s = store_int_stmt(c, mark ? sql_mark_put : sql_state_put);
		if (s == NULL)
			return -EIO;
		if (mark) {
			sqlite3_bind_int64(s, 1, a->sent_at);
			sqlite3_bind_int64(s, 2, a->last_seq);
		} else {
			sqlite3_bind_text(s, 1, a->addresses[i], -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, a->sent_at);
			sqlite3_bind_int64(s, 3, a->last_seq);
		}
		int rc = store_int_step_done(c, s, "digest_state_put");
		if (rc < 0)
			return rc;
	}
	return 0;
}

int store_sqlite_digest_state_put(struct store *st, const char *const *addresses, size_t n,
				  int64_t last_seq, int64_t sent_at)
{
	struct store_digest_state_args a = {addresses, n, last_seq, sent_at};
	if (n == 0)
		return 0;
	return store_int_run_job(st, store_digest_state_job, &a);
}

int store_sqlite_digest_token_used(struct store *st, const char *nonce, bool *used)
{
	struct store_conn *c;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(c, sql_token_used);
	if (s == NULL) {
		rc = -EIO;
	} else {
		sqlite3_bind_text(s, 1, nonce, -1, SQLITE_STATIC);
		int step = sqlite3_step(s);
		if (step == SQLITE_ROW || step == SQLITE_DONE) {
			*used = step == SQLITE_ROW;
			rc = 0;
		} else {
			store_int_log_sqlite("digest_token_used", store_int_db(c));
			rc = -EIO;
		}
		sqlite3_reset(s);
	}
	store_int_reader_put(st, c);
	return rc;
}

struct store_digest_token_args {
	const char *nonce;
	int64_t now;
	int64_t expires_at;
};

static int store_digest_token_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_digest_token_args *a = arg;
	sqlite3_stmt *s = store_int_stmt(c, sql_token_insert);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, a->nonce, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, a->now);
	sqlite3_bind_int64(s, 3, a->expires_at);
	int rc = store_int_step_done(c, s, "digest_token_insert");
	if (rc < 0)
		return rc;
	/* INSERT OR IGNORE: no change means the nonce was there already. */
	if (sqlite3_changes(store_int_db(c)) == 0)
		return -EEXIST;
	if ((s = store_int_stmt(c, sql_token_prune)) == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->now);
	sqlite3_bind_int64(s, 2, STORE_DIGEST_PRUNE_BATCH);
	return store_int_step_done(c, s, "digest_token_prune");
}

int store_sqlite_digest_token_use(struct store *st, const char *nonce, int64_t now,
				  int64_t expires_at)
{
	struct store_digest_token_args a = {nonce, now, expires_at};
	if (nonce == NULL || *nonce == '\0')
		return -EINVAL;
	return store_int_run_job(st, store_digest_token_job, &a);
}
