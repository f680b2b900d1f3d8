/*
 * store_gateways — the SQLite backend's gateway registry (the table of migration
 * 7), with the contract of store.h "the gateway registry": registered gateways
 * with the hash of their token, pending ones that said hello without one. And
 * the "done" mails of their migration runs (migration_notices, migration 24).
 *
 * Not for: checking fields (store.c hands in checked values with a canonical
 * address), making or hashing tokens (api_gateways.c), deciding who may add a
 * pending entry (the API's allow-list and rate limit).
 *
 * Registrations are rare, so statements are prepared per call as in
 * store_users.c. Changes run as writer jobs, reads on a reader connection.
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

/*
 * Each gateway's last rescan, in one pass over the Outbreak memberships ever sent
 * back (the partial index memberships_rescan holds just those, with their
 * state): per gateway and time sent, how many and how many came back clean (2),
 * kept (3) and requarantined (4); of those the latest time per gateway.
 */
#define STORE_GW_LAST_RESCAN                                                                       \
	"(SELECT rescan_gw, rescan_at, rescan_n, rescan_clean, rescan_kept, rescan_requarantined"  \
	" FROM (SELECT w.gateway AS rescan_gw, x.rescan_sent_at AS rescan_at,"                     \
	" count(*) AS rescan_n,"                                                                   \
	" sum(CASE WHEN x.rescan = 2 THEN 1 ELSE 0 END) AS rescan_clean,"                          \
	" sum(CASE WHEN x.rescan = 3 THEN 1 ELSE 0 END) AS rescan_kept,"                           \
	" sum(CASE WHEN x.rescan = 4 THEN 1 ELSE 0 END) AS rescan_requarantined,"                  \
	" row_number() OVER (PARTITION BY w.gateway ORDER BY x.rescan_sent_at DESC) AS rescan_k"   \
	" FROM memberships x JOIN messages w ON w.id = x.msg_id"                                   \
	" WHERE x.quarantine = 'outbreak' AND x.rescan_sent_at IS NOT NULL"                        \
	" GROUP BY w.gateway, x.rescan_sent_at) t WHERE rescan_k = 1) r"
/*
 * What the list adds: central, the outbreak rules version and the gateway's last
 * rescan (when its Outbreak messages were last sent back, how many were, and
 * how many of those came back clean, kept and requarantined). Reads
 * of one gateway (every gateway API call looks its token up) leave the rescan
 * out: it reads the Outbreak memberships sent back of every gateway.
 */
#define STORE_GW_MIGRATION                                                                         \
	", mapping, mig_state, mig_run, mig_total, mig_done, mig_failed, mig_finished_at,"         \
	" mig_notified_at, n.id, n.rcpt, n.tries, n.next_try, n.sent, n.last_try, n.reply"
/* The "done" mail of the gateway's last run, when there is one (migration 24). */
#define STORE_GW_FROM                                                                              \
	" FROM gateways LEFT JOIN migration_notices n ON n.gateway = gateways.name"                \
	" AND n.run = gateways.mig_run"
#define STORE_GATEWAY_READ_TAIL_ONE                                                                \
	", central, outbreak_version, 0, 0, 0, 0, 0" STORE_GW_MIGRATION STORE_GW_FROM
#define STORE_GATEWAY_READ_TAIL_LIST                                                               \
	", central, outbreak_version, coalesce(rescan_at, 0), coalesce(rescan_n, 0),"              \
	" coalesce(rescan_clean, 0), coalesce(rescan_kept, 0),"                                    \
	" coalesce(rescan_requarantined, 0)" STORE_GW_MIGRATION STORE_GW_FROM                      \
	" LEFT JOIN " STORE_GW_LAST_RESCAN " ON rescan_gw = gateways.name COLLATE BINARY"

#define STORE_GATEWAY_COLUMNS                                                                      \
	"name, state, address, group_name, cluster, release_port, token_hash, created_at,"         \
	" last_seen, version"

static sqlite3_stmt *store_gateways_prepare(struct store_conn *c, const char *sql)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), sql, -1, &s, NULL) != SQLITE_OK) {
		store_int_log_sqlite("prepare", store_int_db(c));
		return NULL;
	}
	return s;
}

static void store_gateways_bind(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* Steps s (uncached) to its end and finalizes it: 0, -EEXIST (a unique key), -EIO. */
static int store_gateways_run(struct store_conn *c, sqlite3_stmt *s, const char *what, int *changes)
{
	int rc = sqlite3_step(s);
	int ext = sqlite3_extended_errcode(store_int_db(c));
	sqlite3_finalize(s);
	if (changes != NULL)
		*changes = sqlite3_changes(store_int_db(c));
	if (rc == SQLITE_DONE)
		return 0;
	if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
		return -EEXIST;
	log_error("store.gateways_failed", "what=%s error=%s", what,
		  sqlite3_errmsg(store_int_db(c)));
	return -EIO;
}

/* A migration from the columns of STORE_GW_MIGRATION after the mapping, from i. */
static void store_gateways_migration_from(sqlite3_stmt *s, int i, struct store_migration *m)
{
	int state = sqlite3_column_int(s, i);
	m->state = state == STORE_MIGRATION_RUNNING ? STORE_MIGRATION_RUNNING
		   : state == STORE_MIGRATION_DONE  ? STORE_MIGRATION_DONE
						    : STORE_MIGRATION_NONE;
	m->run = sqlite3_column_int64(s, i + 1);
	m->total = sqlite3_column_int64(s, i + 2);
	m->done = sqlite3_column_int64(s, i + 3);
	m->failed = sqlite3_column_int64(s, i + 4);
	m->finished_at = sqlite3_column_int64(s, i + 5);
	m->notified_at = sqlite3_column_int64(s, i + 6);
}

static struct store_gateway *store_gateway_from_row(sqlite3_stmt *s)
{
	struct store_gateway *g = xcalloc(1, sizeof(*g));
	g->name = store_int_col_dup(s, 0);
	const char *state = (const char *)sqlite3_column_text(s, 1);
	g->state = state != NULL && strcmp(state, "pending") == 0 ? STORE_GATEWAY_PENDING
								  : STORE_GATEWAY_REGISTERED;
	g->address = store_int_col_dup(s, 2);
	g->group = store_int_col_dup(s, 3);
	g->cluster = store_int_col_dup(s, 4);
	g->release_port = (unsigned)sqlite3_column_int64(s, 5);
	g->token_hash = store_int_col_dup(s, 6);
	g->created_at = sqlite3_column_int64(s, 7);
	g->last_seen = sqlite3_column_int64(s, 8);
	g->version = store_int_col_dup(s, 9);
	g->central = (unsigned)sqlite3_column_int(s, 10);
	g->outbreak_version = store_int_col_dup(s, 11);
	g->last_rescan_at = sqlite3_column_int64(s, 12);
	g->last_rescan_messages = (uint64_t)sqlite3_column_int64(s, 13);
	g->last_rescan_clean = (uint64_t)sqlite3_column_int64(s, 14);
	g->last_rescan_kept = (uint64_t)sqlite3_column_int64(s, 15);
	g->last_rescan_requarantined = (uint64_t)sqlite3_column_int64(s, 16);
	g->mapping = store_int_col_dup(s, 17);
	store_gateways_migration_from(s, 18, &g->migration);
	if (sqlite3_column_type(s, 25) != SQLITE_NULL) {
		g->notice.id = sqlite3_column_int64(s, 25);
		g->notice.to = store_int_col_dup(s, 26);
		g->notice.tries = sqlite3_column_int(s, 27);
		g->notice.next = sqlite3_column_int64(s, 28);
		g->notice.sent = sqlite3_column_int(s, 29) != 0;
		g->notice.last_try = sqlite3_column_int64(s, 30);
		g->notice.reply = store_int_col_dup(s, 31);
	}
	return g;
}

/*
 * The gateways sql yields with one text value bound (value may be NULL: none), by
 * name. *out is new (store_gateway_array_free).
 */
static int store_gateways_read(struct store *st, const char *sql, const char *value,
			       struct store_gateway ***out, size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_gateways_prepare(c, sql);
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	if (value != NULL)
		store_gateways_bind(s, 1, value);
	struct store_gateway **v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		v[k++] = store_gateway_from_row(s);
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_gateway_array_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

/* The one gateway sql yields for value; -ENOENT when none. */
static int store_gateways_read_one(struct store *st, const char *sql, const char *value,
				   struct store_gateway **out)
{
	struct store_gateway **v = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = store_gateways_read(st, sql, value, &v, &n);
	if (rc < 0)
		return rc;
	if (n == 0) {
		free(v);
		return -ENOENT;
	}
	*out = v[0];
	v[0] = NULL;
	store_gateway_array_free(v, n);
	return 0;
}

/* The state of the gateway named name into *state; -ENOENT when none. */
static int store_gateways_state_of(struct store_conn *c, const char *sql, const char *value,
				   bool *pending)
{
	sqlite3_stmt *s = store_gateways_prepare(c, sql);
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, value);
	int step = sqlite3_step(s);
	int rc = -ENOENT;
	if (step == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(s, 0);
		*pending = state != NULL && strcmp(state, "pending") == 0;
		rc = 0;
	} else if (step != SQLITE_DONE) {
		rc = -EIO;
	}
	sqlite3_finalize(s);
	return rc;
}

static int store_gateway_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_gateway *g = arg;
	bool pending = false;
	int rc = store_gateways_state_of(c, "SELECT state FROM gateways WHERE name = ?", g->name,
					 &pending);
	if (rc == 0 && !pending)
		return -EEXIST;
	if (rc < 0 && rc != -ENOENT)
		return rc;
	rc = store_gateways_state_of(
	    c, "SELECT state FROM gateways WHERE address = ? AND state = 'registered'", g->address,
	    &pending);
	if (rc == 0)
		return -EADDRINUSE;
	if (rc != -ENOENT)
		return rc;
	/* the pending entry of this name (if any) becomes the registered gateway */
	sqlite3_stmt *s =
	    store_gateways_prepare(c, "DELETE FROM gateways WHERE name = ? AND state = 'pending'");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, g->name);
	rc = store_gateways_run(c, s, "gateway_add_pending", NULL);
	if (rc < 0)
		return rc;
	s = store_gateways_prepare(c, "INSERT INTO gateways (" STORE_GATEWAY_COLUMNS ")"
				      " VALUES (?, 'registered', ?, ?, ?, ?, ?, ?, 0, ?)");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, g->name);
	store_gateways_bind(s, 2, g->address);
	store_gateways_bind(s, 3, g->group);
	store_gateways_bind(s, 4, g->cluster);
	sqlite3_bind_int64(s, 5, g->release_port);
	store_gateways_bind(s, 6, g->token_hash);
	sqlite3_bind_int64(s, 7, g->created_at);
	store_gateways_bind(s, 8, g->version);
	return store_gateways_run(c, s, "gateway_add", NULL);
}

int store_sqlite_gateway_add(struct store *st, const struct store_gateway *g)
{
	return store_int_run_job(st, store_gateway_add_job, unconst(g));
}

int store_sqlite_gateway_list(struct store *st, struct store_gateway ***out, size_t *n)
{
	return store_gateways_read(st,
				   "SELECT " STORE_GATEWAY_COLUMNS STORE_GATEWAY_READ_TAIL_LIST
				   " ORDER BY name COLLATE BINARY",
				   NULL, out, n);
}

int store_sqlite_gateway_get(struct store *st, const char *name, struct store_gateway **out)
{
	return store_gateways_read_one(
	    st, "SELECT " STORE_GATEWAY_COLUMNS STORE_GATEWAY_READ_TAIL_ONE " WHERE name = ?", name,
	    out);
}

int store_sqlite_gateway_get_by_address(struct store *st, const char *address,
					struct store_gateway **out)
{
	return store_gateways_read_one(st,
				       "SELECT " STORE_GATEWAY_COLUMNS STORE_GATEWAY_READ_TAIL_ONE
				       " WHERE address = ? AND state = 'registered'",
				       address, out);
}

int store_sqlite_gateway_get_by_token_hash(struct store *st, const char *token_hash,
					   struct store_gateway **out)
{
	return store_gateways_read_one(st,
				       "SELECT " STORE_GATEWAY_COLUMNS STORE_GATEWAY_READ_TAIL_ONE
				       " WHERE token_hash = ? AND state = 'registered'",
				       token_hash, out);
}

static int store_gateway_remove_job(struct store *st, struct store_conn *c, void *arg)
{
	sqlite3_stmt *s = store_gateways_prepare(c, "DELETE FROM gateways WHERE name = ?");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, arg);
	int changes = 0;
	int rc = store_gateways_run(c, s, "gateway_remove", &changes);
	return rc < 0 ? rc : changes > 0 ? 0 : -ENOENT;
}

int store_sqlite_gateway_remove(struct store *st, const char *name)
{
	return store_int_run_job(st, store_gateway_remove_job, unconst(name));
}

struct store_gateway_touch_args {
	const char *name;
	int64_t now;
	const char *version;
};

static int store_gateway_touch_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_gateway_touch_args *t = arg;
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "UPDATE gateways SET last_seen = max(last_seen, ?), version = coalesce(?, version)"
	       " WHERE name = ? AND state = 'registered'");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, t->now);
	store_gateways_bind(s, 2, t->version);
	store_gateways_bind(s, 3, t->name);
	int changes = 0;
	int rc = store_gateways_run(c, s, "gateway_touch", &changes);
	return rc < 0 ? rc : changes > 0 ? 0 : -ENOENT;
}

int store_sqlite_gateway_touch(struct store *st, const char *name, int64_t now, const char *version)
{
	struct store_gateway_touch_args t = {name, now, version};
	return store_int_run_job(st, store_gateway_touch_job, &t);
}

struct store_gateway_pending_args {
	const struct store_gateway *g;
	size_t max_pending;
	int64_t now;
};

static int store_gateway_pending_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_gateway_pending_args *p = arg;
	const struct store_gateway *g = p->g;
	bool pending = false;
	int rc = store_gateways_state_of(c, "SELECT state FROM gateways WHERE name = ?", g->name,
					 &pending);
	if (rc == 0 && !pending)
		return -EEXIST;
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (rc == -ENOENT) {
		/* one writer: the count and the insert cannot interleave with another put */
		sqlite3_stmt *s = store_gateways_prepare(
		    c, "SELECT count(*) FROM gateways WHERE state = 'pending'");
		if (s == NULL)
			return -EIO;
		int step = sqlite3_step(s);
		int64_t count = step == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
		sqlite3_finalize(s);
		if (count < 0)
			return -EIO;
		if ((uint64_t)count >= p->max_pending)
			return -ENOSPC;
	}
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "INSERT INTO gateways (" STORE_GATEWAY_COLUMNS ")"
	       " VALUES (?, 'pending', ?, ?, ?, ?, NULL, ?, ?, ?)"
	       " ON CONFLICT (name) DO UPDATE SET address = excluded.address,"
	       " group_name = excluded.group_name, cluster = excluded.cluster,"
	       " version = excluded.version, last_seen = excluded.last_seen"
	       " WHERE gateways.state = 'pending'");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, g->name);
	store_gateways_bind(s, 2, g->address);
	store_gateways_bind(s, 3, g->group);
	store_gateways_bind(s, 4, g->cluster);
	sqlite3_bind_int64(s, 5, g->release_port);
	sqlite3_bind_int64(s, 6, p->now);
	sqlite3_bind_int64(s, 7, p->now);
	store_gateways_bind(s, 8, g->version);
	return store_gateways_run(c, s, "gateway_pending_put", NULL);
}

int store_sqlite_gateway_pending_put(struct store *st, const struct store_gateway *g,
				     size_t max_pending, int64_t now)
{
	struct store_gateway_pending_args p = {g, max_pending, now};
	return store_int_run_job(st, store_gateway_pending_job, &p);
}

/*
 * The stored migration of registered gateway name (one writer: nothing changes
 * it between this read and the caller's update). 0, -ENOENT, -EIO.
 */
static int store_gateways_migration_of(struct store_conn *c, const char *name,
				       struct store_migration *m)
{
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "SELECT mig_state, mig_run, mig_total, mig_done, mig_failed, mig_finished_at,"
	       " mig_notified_at FROM gateways WHERE name = ? AND state = 'registered'");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, name);
	int step = sqlite3_step(s);
	int rc = step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? -ENOENT : -EIO;
	if (rc == 0)
		store_gateways_migration_from(s, 0, m);
	sqlite3_finalize(s);
	return rc;
}

struct store_gateways_mapping {
	const char *name, *mapping;
	struct store_migration *busy;
};

static int store_gateway_mapping_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_gateways_mapping *a = arg;
	int rc = store_gateways_migration_of(c, a->name, a->busy);
	if (rc < 0)
		return rc;
	if (a->busy->state == STORE_MIGRATION_RUNNING)
		return -EBUSY;
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "UPDATE gateways SET mapping = ? WHERE name = ? AND state = 'registered'");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, a->mapping);
	store_gateways_bind(s, 2, a->name);
	return store_gateways_run(c, s, "gateway_set_mapping", NULL);
}

int store_sqlite_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
				     struct store_migration *busy)
{
	struct store_gateways_mapping a = {name, mapping, busy};
	return store_int_run_job(st, store_gateway_mapping_job, &a);
}

/*
 * Records the "done" mail of run m of gateway name to notify, due at now (ms),
 * in the caller's job: the gateway's settled notices of older runs go. The
 * gateway's name is taken from its row, as the registry's list joins it.
 */
static int store_gateways_notice_add(struct store_conn *c, const char *name, const char *notify,
				     const struct store_migration *m, int64_t now)
{
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "DELETE FROM migration_notices WHERE gateway = ? AND next_try = 0 AND run < ?");
	if (s == NULL)
		return -EIO;
	store_gateways_bind(s, 1, name);
	sqlite3_bind_int64(s, 2, m->run);
	int rc = store_gateways_run(c, s, "migration_notice_prune", NULL);
	if (rc < 0)
		return rc;
	s = store_gateways_prepare(
	    c, "INSERT OR IGNORE INTO migration_notices (gateway, run, rcpt, total, moved, failed,"
	       " finished_at, next_try) SELECT name, ?, ?, ?, ?, ?, ?, ? FROM gateways"
	       " WHERE name = ? AND state = 'registered'");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, m->run);
	store_gateways_bind(s, 2, notify);
	sqlite3_bind_int64(s, 3, m->total);
	sqlite3_bind_int64(s, 4, m->done);
	sqlite3_bind_int64(s, 5, m->failed);
	sqlite3_bind_int64(s, 6, m->finished_at);
	sqlite3_bind_int64(s, 7, now / 1000 > 0 ? now / 1000 : 1);
	store_gateways_bind(s, 8, name);
	return store_gateways_run(c, s, "migration_notice_add", NULL);
}

struct store_gateways_report {
	const char *name;
	const struct store_migration *r;
	const char *notify;
	int64_t now;
	struct store_migration *out;
	bool *first_done;
};

static int store_gateway_report_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_gateways_report *a = arg;
	struct store_migration cur = {0};
	*a->first_done = false;
	int rc = store_gateways_migration_of(c, a->name, &cur);
	if (rc < 0)
		return rc;
	if (!store_migration_next(&cur, a->r, a->now, a->out, a->first_done))
		return 0;
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "UPDATE gateways SET mig_state = ?, mig_run = ?, mig_total = ?, mig_done = ?,"
	       " mig_failed = ?, mig_finished_at = ?, mig_notified_at = ?"
	       " WHERE name = ? AND state = 'registered'");
	if (s == NULL)
		return -EIO;
	const struct store_migration *m = a->out;
	sqlite3_bind_int(s, 1, (int)m->state);
	sqlite3_bind_int64(s, 2, m->run);
	sqlite3_bind_int64(s, 3, m->total);
	sqlite3_bind_int64(s, 4, m->done);
	sqlite3_bind_int64(s, 5, m->failed);
	sqlite3_bind_int64(s, 6, m->finished_at);
	sqlite3_bind_int64(s, 7, m->notified_at);
	store_gateways_bind(s, 8, a->name);
	rc = store_gateways_run(c, s, "gateway_migration_report", NULL);
	if (rc == 0 && *a->first_done && a->notify != NULL)
		rc = store_gateways_notice_add(c, a->name, a->notify, m, a->now);
	if (rc < 0)
		*a->first_done = false;
	return rc;
}

int store_sqlite_gateway_migration_report(struct store *st, const char *name,
					  const struct store_migration *r, const char *notify,
					  int64_t now, struct store_migration *out,
					  bool *first_done)
{
	struct store_gateways_report a = {name, r, notify, now, out, first_done};
	int rc = store_int_run_job(st, store_gateway_report_job, &a);
	if (rc < 0)
		*first_done = false;
	return rc;
}

/* --- the "done" mails of migration runs --------------------------------------- */

int store_sqlite_notice_due(struct store *st, int64_t now, size_t limit,
			    struct store_migration_notice **out, size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "SELECT id, gateway, run, rcpt, total, moved, failed, finished_at, tries,"
	       " next_try, sent, last_try, reply FROM migration_notices WHERE next_try > 0"
	       " AND next_try <= ? ORDER BY next_try, id LIMIT ?");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (int64_t)limit);
	struct store_migration_notice *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		struct store_migration_notice *x = &v[k++];
		memset(x, 0, sizeof(*x));
		x->id = sqlite3_column_int64(s, 0);
		x->gateway = store_int_col_dup(s, 1);
		x->m.state = STORE_MIGRATION_DONE;
		x->m.run = sqlite3_column_int64(s, 2);
		x->to = store_int_col_dup(s, 3);
		x->m.total = sqlite3_column_int64(s, 4);
		x->m.done = sqlite3_column_int64(s, 5);
		x->m.failed = sqlite3_column_int64(s, 6);
		x->m.finished_at = sqlite3_column_int64(s, 7);
		x->tries = sqlite3_column_int(s, 8);
		x->next = sqlite3_column_int64(s, 9);
		x->sent = sqlite3_column_int(s, 10) != 0;
		x->last_try = sqlite3_column_int64(s, 11);
		x->reply = store_int_col_dup(s, 12);
	}
	if (step != SQLITE_DONE) {
		store_int_log_sqlite("notice_due", store_int_db(c));
		rc = -EIO;
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (rc < 0) {
		store_migration_notice_array_free(v, k);
		return rc;
	}
	*out = v;
	*n = k;
	return 0;
}

struct store_gateways_notice_set {
	int64_t id, old_next;
	int tries;
	int64_t next;
	bool sent;
	int64_t last_try;
	const char *reply;
};

static int store_gateways_notice_set_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	const struct store_gateways_notice_set *a = arg;
	sqlite3_stmt *s = store_gateways_prepare(
	    c, "UPDATE migration_notices SET tries = ?1, next_try = ?2, sent = ?3,"
	       " last_try = ?4, reply = ?5 WHERE id = ?6 AND next_try = ?7");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int(s, 1, a->tries);
	sqlite3_bind_int64(s, 2, a->next);
	sqlite3_bind_int(s, 3, a->sent ? 1 : 0);
	sqlite3_bind_int64(s, 4, a->last_try);
	store_gateways_bind(s, 5, a->reply);
	sqlite3_bind_int64(s, 6, a->id);
	sqlite3_bind_int64(s, 7, a->old_next);
	int changes = 0;
	int rc = store_gateways_run(c, s, "notice_set", &changes);
	if (rc < 0 || changes > 0)
		return rc;
	s = store_gateways_prepare(c, "SELECT 1 FROM migration_notices WHERE id = ?");
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->id);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step == SQLITE_ROW)
		return -EALREADY;
	return step == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_sqlite_notice_set(struct store *st, int64_t id, int64_t old_next, int tries, int64_t next,
			    bool sent, int64_t last_try, const char *reply)
{
	struct store_gateways_notice_set a = {id, old_next, tries, next, sent, last_try, reply};
	return store_int_run_job(st, store_gateways_notice_set_job, &a);
}
