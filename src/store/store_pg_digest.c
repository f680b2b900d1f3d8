/*
 * store_pg_digest — what the notification digests need from the store, on
 * PostgreSQL, with the semantics of store_digest.c: end users with their
 * addresses, new quarantined messages per address (by message sequence number),
 * the digest_state bookkeeping and used_tokens.
 *
 * "New" is measured in messages.seq. With one lazaretd the writer thread is the
 * only one inserting messages and commits its batches one after the other, so
 * every seq up to the greatest one visible is committed. (Several lazaretd on one
 * database would break that: see the design note in store_pg.c.)
 *
 * Not for: deciding who gets a digest or building it (manager/notify).
 */
#include "store/store.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* Used nonces forgotten per store_digest_token_use call once their token expired. */
#define STORE_PG_DIGEST_PRUNE_BATCH 100

/* The end user found by sql with one text value; -ENOENT when none. */
static int store_pg_digest_user(struct store *s, const char *what, const char *sql, char *key,
				struct store_digest_user **out)
{
	struct store_pg_params p = {0};
	store_pg_owned(&p, key);
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), what, sql, &p, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	struct store_digest_user *u = xcalloc(1, sizeof(*u));
	u->username = store_pg_dup(r, 0, 0);
	u->language = store_pg_dup(r, 0, 1);
	u->time_zone = store_pg_dup(r, 0, 2);
	/* addresses sorted (byte order), joined by US (0x1f), which no address holds */
	const char *t = PQgetisnull(r, 0, 3) ? "" : PQgetvalue(r, 0, 3);
	while (*t != '\0') {
		size_t l = strcspn(t, "\x1f");
		u->addresses = xreallocarray(u->addresses, u->naddresses + 1, sizeof(char *));
		u->addresses[u->naddresses++] = xstrndup(t, l);
		t += l + (t[l] != '\0' ? 1 : 0);
	}
	PQclear(r);
	*out = u;
	return 0;
}

#define STORE_PG_DIGEST_USER_COLS                                                                  \
	"u.username, u.language, u.time_zone,"                                                     \
	" (SELECT array_to_string(array_agg(a.address_lc ORDER BY a.address_lc COLLATE \"C\"),"    \
	"  chr(31)) FROM user_addresses a WHERE a.username = u.username)"

int store_pg_digest_user_by_address(struct store *st, const char *address,
				    struct store_digest_user **out)
{
	*out = NULL;
	if (address == NULL || *address == '\0')
		return -EINVAL;
	return store_pg_digest_user(st, "digest_user_by_address",
				    "SELECT " STORE_PG_DIGEST_USER_COLS " FROM user_addresses x"
				    " JOIN users u ON u.username = x.username"
				    " WHERE x.address_lc = $1 AND u.role = 'enduser'"
				    " ORDER BY u.username COLLATE \"C\" LIMIT 1",
				    store_pg_lc(address), out);
}

int store_pg_digest_user_by_name(struct store *st, const char *username,
				 struct store_digest_user **out)
{
	*out = NULL;
	if (username == NULL || *username == '\0')
		return -EINVAL;
	return store_pg_digest_user(st, "digest_user_by_name",
				    "SELECT " STORE_PG_DIGEST_USER_COLS " FROM users u"
				    " WHERE u.username = $1 AND u.role = 'enduser'",
				    xstrdup(username), out);
}

/*
 * Numbers come from an identity, handed out when a message is inserted, and
 * several writers (several lazaretd) commit in any order: 101 may be visible
 * while 100 is not yet, and a digest run bounded by 101 would then never list 100.
 * So every inserting transaction holds STORE_PG_INGEST_LOCK shared until it
 * commits, and this takes it exclusively first: once granted, no transaction
 * holding a number is still open, and max(seq), read after it in a new snapshot,
 * is a bound below which every message is visible. Writers wait for the moment
 * this takes.
 */
int store_pg_digest_max_seq(struct store *s, int64_t *out)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	PGresult *r = NULL;
	if (store_pg_script(c->pg, "digest_seq_lock",
			    "BEGIN; SELECT pg_advisory_xact_lock(" STORE_PG_INGEST_LOCK ")") == 0)
		r = store_pg_exec(c->pg, "digest_max_seq",
				  "SELECT coalesce(max(seq), 0) FROM messages", NULL, false);
	store_pg_conn_put(st, c); /* ends the transaction, and the lock with it */
	if (r == NULL)
		return -EIO;
	*out = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int store_pg_digest_candidates(struct store *s, const char *q, int64_t after, int64_t upto,
			       char ***out, size_t *n)
{
	struct store_pg *st = store_pg_of(s);
	*out = NULL;
	*n = 0;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_int(&p, after);
	store_pg_int(&p, upto);
	store_pg_text(&p, q);
	PGresult *r = store_pg_exec(
	    c->pg, "digest_candidates",
	    "SELECT DISTINCT r.address_lc FROM messages m JOIN recipients r ON r.msg_id = m.id"
	    " WHERE m.seq > $1 AND m.seq <= $2 AND m.quarantine = $3 AND r.state = 0",
	    &p, false);
	store_pg_params_clear(&p);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	store_pg_collect(r, out, n);
	PQclear(r);
	return 0;
}

#define STORE_PG_DIGEST_WHERE                                                                      \
	" FROM recipients r JOIN messages m ON m.id = r.msg_id"                                    \
	" WHERE r.address_lc = $1 AND r.state = 0 AND m.quarantine = $2"                           \
	" AND m.seq > $3 AND m.seq <= $4"

int store_pg_digest_entries(struct store *s, const char *q, const char *address, int64_t after,
			    int64_t upto, size_t limit, struct store_digest_entry **out, size_t *n,
			    size_t *total)
{
	struct store_pg *st = store_pg_of(s);
	*out = NULL;
	*n = 0;
	if (address == NULL || limit == 0)
		return -EINVAL;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_owned(&p, store_pg_lc(address));
	store_pg_text(&p, q);
	store_pg_int(&p, after);
	store_pg_int(&p, upto);
	store_pg_owned(&p, xasprintf("%zu", limit));
	/* the count without the limit comes with every row (0 rows: total 0) */
	PGresult *r = store_pg_exec(c->pg, "digest_entries",
				    "SELECT m.seq, m.id, m.received_at, r.address, m.sender,"
				    " m.from_text, m.from_addr, m.subject, m.score,"
				    " count(*) OVER ()" STORE_PG_DIGEST_WHERE
				    " ORDER BY m.seq LIMIT $5::bigint",
				    &p, false);
	store_pg_params_clear(&p);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	size_t rows = (size_t)PQntuples(r);
	struct store_digest_entry *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		struct store_digest_entry *e = &v[k];
		int i = (int)k;
		e->seq = store_pg_i64(r, i, 0);
		snprintf(e->id, sizeof(e->id), "%s", PQgetvalue(r, i, 1));
		e->received_at = store_pg_i64(r, i, 2);
		e->recipient = store_pg_dup(r, i, 3);
		e->sender = store_pg_dup(r, i, 4);
		e->from = store_pg_dup(r, i, 5);
		e->from_addr = store_pg_dup(r, i, 6);
		e->subject = store_pg_dup(r, i, 7);
		e->has_score = !PQgetisnull(r, i, 8);
		e->score = e->has_score ? strtod(PQgetvalue(r, i, 8), NULL) : 0.0;
	}
	if (total != NULL)
		*total = rows > 0 ? (size_t)store_pg_i64(r, 0, 9) : 0;
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

int store_pg_digest_state_get(struct store *s, const char *address, int64_t *last_seq,
			      int64_t *last_sent_at)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_owned(&p, store_pg_lc(address));
	PGresult *r = store_pg_exec(
	    c->pg, "digest_state_get",
	    "SELECT last_seq, last_sent_at FROM digest_state WHERE address_lc = $1", &p, false);
	store_pg_params_clear(&p);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	rc = -ENOENT;
	if (PQntuples(r) == 1) {
		if (last_seq != NULL)
			*last_seq = store_pg_i64(r, 0, 0);
		if (last_sent_at != NULL)
			*last_sent_at = store_pg_i64(r, 0, 1);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

struct store_pg_digest_state_args {
	const char *const *addresses;
	size_t n;
	int64_t last_seq;
	int64_t sent_at;
};

static int store_pg_digest_state_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_digest_state_args *a = arg;
	for (size_t i = 0; i < a->n; i++) {
		/* "*" is the scheduler's own mark: set as given; an address never goes down */
		bool mark = strcmp(a->addresses[i], "*") == 0;
		struct store_pg_params p = {0};
		store_pg_owned(&p, store_pg_lc(a->addresses[i]));
		store_pg_int(&p, a->sent_at);
		store_pg_int(&p, a->last_seq);
		int rc = store_pg_do(
		    c, "digest_state_put",
		    mark ? "INSERT INTO digest_state (address_lc, last_sent_at, last_seq)"
			   " VALUES ($1, $2, $3) ON CONFLICT (address_lc) DO UPDATE"
			   " SET last_sent_at = excluded.last_sent_at, last_seq = excluded.last_seq"
			 : "INSERT INTO digest_state (address_lc, last_sent_at, last_seq)"
			   " VALUES ($1, $2, $3) ON CONFLICT (address_lc) DO UPDATE"
			   " SET last_sent_at = excluded.last_sent_at,"
			   " last_seq = greatest(digest_state.last_seq, excluded.last_seq)",
		    &p, NULL);
		store_pg_params_clear(&p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int store_pg_digest_state_put(struct store *st, const char *const *addresses, size_t n,
			      int64_t last_seq, int64_t sent_at)
{
	struct store_pg_digest_state_args a = {addresses, n, last_seq, sent_at};
	if (n == 0)
		return 0;
	return store_pg_tx(store_pg_of(st), store_pg_digest_state_tx, &a);
}

int store_pg_digest_token_used(struct store *s, const char *nonce, bool *used)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, nonce);
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), "digest_token_used",
				"SELECT 1 FROM used_tokens WHERE nonce = $1", &p, &r);
	if (rc < 0)
		return rc;
	*used = PQntuples(r) > 0;
	PQclear(r);
	return 0;
}

struct store_pg_digest_token_args {
	const char *nonce;
	int64_t now;
	int64_t expires_at;
};

static int store_pg_digest_token_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_digest_token_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->nonce);
	store_pg_int(&p, a->now);
	store_pg_int(&p, a->expires_at);
	uint64_t rows = 0;
	/* a second use of the nonce inserts nothing (two at once: the second waits for
	 * the first's commit on the key, then inserts nothing) */
	int rc = store_pg_do(c, "digest_token_insert",
			     "INSERT INTO used_tokens (nonce, used_at, expires_at)"
			     " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			     &p, &rows);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	if (rows == 0)
		return -EEXIST;
	store_pg_int(&p, a->now);
	store_pg_int(&p, STORE_PG_DIGEST_PRUNE_BATCH);
	rc = store_pg_do(c, "digest_token_prune",
			 "DELETE FROM used_tokens WHERE nonce IN (SELECT nonce FROM used_tokens"
			 " WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_digest_token_use(struct store *st, const char *nonce, int64_t now, int64_t expires_at)
{
	struct store_pg_digest_token_args a = {nonce, now, expires_at};
	if (nonce == NULL || *nonce == '\0')
		return -EINVAL;
	return store_pg_tx(store_pg_of(st), store_pg_digest_token_tx, &a);
}
