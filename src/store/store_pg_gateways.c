/*
 * store_pg_gateways — the PostgreSQL backend's gateway registry (the table of its
 * migration 7), with the semantics of store_gateways.c: registered gateways with
 * the hash of their token, pending ones that said hello without one; names
 * unique whatever their case (a unique index on lower(name)). And the "done"
 * mails of their migration runs (migration_notices, migration 24).
 *
 * Not for: checking fields (store.c does), tokens (api_gateways.c), deciding who
 * may add a pending entry. Several managers may share the database: the bound on
 * pending entries is kept under an advisory lock, so two puts cannot both pass it.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/unconst.h"
#include "common/xalloc.h"

/* Serializes pending puts across processes ("lazaretg"). */
#define STORE_PG_GATEWAY_PENDING_LOCK "7809657787786818663"

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
	" mig_notified_at, n.id, n.rcpt, n.tries, n.next_try, n.sent::int, n.last_try, n.reply"
/* The "done" mail of the gateway's last run, when there is one (migration 24). */
#define STORE_GW_FROM                                                                              \
	" FROM gateways LEFT JOIN migration_notices n ON n.gateway = gateways.name"                \
	" AND n.run = gateways.mig_run"
#define STORE_PG_GATEWAY_READ_TAIL_ONE                                                             \
	", central, outbreak_version, 0, 0, 0, 0, 0" STORE_GW_MIGRATION STORE_GW_FROM
#define STORE_PG_GATEWAY_READ_TAIL_LIST                                                            \
	", central, outbreak_version, coalesce(rescan_at, 0), coalesce(rescan_n, 0),"              \
	" coalesce(rescan_clean, 0), coalesce(rescan_kept, 0),"                                    \
	" coalesce(rescan_requarantined, 0)" STORE_GW_MIGRATION STORE_GW_FROM                      \
	" LEFT JOIN " STORE_GW_LAST_RESCAN " ON rescan_gw = gateways.name"

#define STORE_PG_GATEWAY_COLUMNS                                                                   \
	"name, state, address, group_name, cluster, release_port, token_hash, created_at,"         \
	" last_seen, version"

/* A migration from the columns of STORE_GW_MIGRATION after the mapping, from i. */
static void store_pg_gateways_migration_from(const PGresult *r, int k, int i,
					     struct store_migration *m)
{
	int64_t state = store_pg_i64(r, k, i);
	m->state = state == STORE_MIGRATION_RUNNING ? STORE_MIGRATION_RUNNING
		   : state == STORE_MIGRATION_DONE  ? STORE_MIGRATION_DONE
						    : STORE_MIGRATION_NONE;
	m->run = store_pg_i64(r, k, i + 1);
	m->total = store_pg_i64(r, k, i + 2);
	m->done = store_pg_i64(r, k, i + 3);
	m->failed = store_pg_i64(r, k, i + 4);
	m->finished_at = store_pg_i64(r, k, i + 5);
	m->notified_at = store_pg_i64(r, k, i + 6);
}

static struct store_gateway *store_pg_gateway_from_row(const PGresult *r, int k)
{
	struct store_gateway *g = xcalloc(1, sizeof(*g));
	g->name = store_pg_dup(r, k, 0);
	g->state = strcmp(PQgetvalue(r, k, 1), "pending") == 0 ? STORE_GATEWAY_PENDING
							       : STORE_GATEWAY_REGISTERED;
	g->address = store_pg_dup(r, k, 2);
	g->group = store_pg_dup(r, k, 3);
	g->cluster = store_pg_dup(r, k, 4);
	g->release_port = (unsigned)store_pg_i64(r, k, 5);
	g->token_hash = store_pg_dup(r, k, 6);
	g->created_at = store_pg_i64(r, k, 7);
	g->last_seen = store_pg_i64(r, k, 8);
	g->version = store_pg_dup(r, k, 9);
	g->central = (unsigned)store_pg_i64(r, k, 10);
	g->outbreak_version = store_pg_dup(r, k, 11);
	g->last_rescan_at = store_pg_i64(r, k, 12);
	g->last_rescan_messages = (uint64_t)store_pg_i64(r, k, 13);
	g->last_rescan_clean = (uint64_t)store_pg_i64(r, k, 14);
	g->last_rescan_kept = (uint64_t)store_pg_i64(r, k, 15);
	g->last_rescan_requarantined = (uint64_t)store_pg_i64(r, k, 16);
	g->mapping = store_pg_dup(r, k, 17);
	store_pg_gateways_migration_from(r, k, 18, &g->migration);
	if (!PQgetisnull(r, k, 25)) {
		g->notice.id = store_pg_i64(r, k, 25);
		g->notice.to = store_pg_dup(r, k, 26);
		g->notice.tries = (int)store_pg_i64(r, k, 27);
		g->notice.next = store_pg_i64(r, k, 28);
		g->notice.sent = store_pg_i64(r, k, 29) != 0;
		g->notice.last_try = store_pg_i64(r, k, 30);
		g->notice.reply = store_pg_dup(r, k, 31);
	}
	return g;
}

/* The gateways sql yields for value (NULL: no value bound). */
static int store_pg_gateways_read(struct store *st, const char *what, const char *sql,
				  const char *value, struct store_gateway ***out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	*out = NULL;
	*n = 0;
	if (value != NULL)
		store_pg_text(&p, value);
	int rc = store_pg_query(store_pg_of(st), what, sql, value != NULL ? &p : NULL, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_gateway **v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++)
		v[k] = store_pg_gateway_from_row(r, (int)k);
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

static int store_pg_gateways_read_one(struct store *st, const char *what, const char *sql,
				      const char *value, struct store_gateway **out)
{
	struct store_gateway **v = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = store_pg_gateways_read(st, what, sql, value, &v, &n);
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

/* The state of the row sql finds for value: 0 with *pending, -ENOENT, -EIO. */
static int store_pg_gateways_state_of(PGconn *c, const char *what, const char *sql,
				      const char *value, bool *pending)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, value);
	PGresult *r = store_pg_exec(c, what, sql, &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int rc = -ENOENT;
	if (PQntuples(r) > 0) {
		*pending = strcmp(PQgetvalue(r, 0, 0), "pending") == 0;
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int store_pg_gateway_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_gateway *g = arg;
	bool pending = false;
	/* FOR UPDATE: a pending put of this name waits for the registration */
	int rc = store_pg_gateways_state_of(
	    c, "gateway_add_name",
	    "SELECT state FROM gateways WHERE lower(name) = lower($1) FOR UPDATE", g->name,
	    &pending);
	if (rc == 0 && !pending)
		return -EEXIST;
	if (rc < 0 && rc != -ENOENT)
		return rc;
	rc = store_pg_gateways_state_of(
	    c, "gateway_add_address",
	    "SELECT state FROM gateways WHERE address = $1 AND state = 'registered'", g->address,
	    &pending);
	if (rc == 0)
		return -EADDRINUSE;
	if (rc != -ENOENT)
		return rc;
	struct store_pg_params p = {0};
	store_pg_text(&p, g->name);
	rc = store_pg_do(c, "gateway_add_pending",
			 "DELETE FROM gateways WHERE lower(name) = lower($1) AND state = 'pending'",
			 &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	store_pg_text(&p, g->name);
	store_pg_text(&p, g->address);
	store_pg_text(&p, g->group);
	store_pg_text(&p, g->cluster);
	store_pg_int(&p, g->release_port);
	store_pg_text(&p, g->token_hash);
	store_pg_int(&p, g->created_at);
	store_pg_text(&p, g->version);
	rc = store_pg_do(c, "gateway_add",
			 "INSERT INTO gateways (" STORE_PG_GATEWAY_COLUMNS ")"
			 " VALUES ($1, 'registered', $2, $3, $4, $5, $6, $7, 0, $8)",
			 &p, NULL);
	store_pg_params_clear(&p);
	if (rc == -EIO && strcmp(store_pg_sqlstate, "23505") == 0)
		return -EEXIST; /* a registration of the same name or address committed first */
	return rc;
}

int store_pg_gateway_add(struct store *st, const struct store_gateway *g)
{
	return store_pg_tx(store_pg_of(st), store_pg_gateway_add_tx, unconst(g));
}

int store_pg_gateway_list(struct store *st, struct store_gateway ***out, size_t *n)
{
	return store_pg_gateways_read(
	    st, "gateway_list",
	    "SELECT " STORE_PG_GATEWAY_COLUMNS STORE_PG_GATEWAY_READ_TAIL_LIST
	    " ORDER BY name COLLATE \"C\"",
	    NULL, out, n);
}

int store_pg_gateway_get(struct store *st, const char *name, struct store_gateway **out)
{
	return store_pg_gateways_read_one(
	    st, "gateway_get",
	    "SELECT " STORE_PG_GATEWAY_COLUMNS STORE_PG_GATEWAY_READ_TAIL_ONE
	    " WHERE lower(name) = lower($1)",
	    name, out);
}

int store_pg_gateway_get_by_address(struct store *st, const char *address,
				    struct store_gateway **out)
{
	return store_pg_gateways_read_one(
	    st, "gateway_get_by_address",
	    "SELECT " STORE_PG_GATEWAY_COLUMNS STORE_PG_GATEWAY_READ_TAIL_ONE
	    " WHERE address = $1 AND state = 'registered'",
	    address, out);
}

int store_pg_gateway_get_by_token_hash(struct store *st, const char *token_hash,
				       struct store_gateway **out)
{
	return store_pg_gateways_read_one(
	    st, "gateway_get_by_token_hash",
	    "SELECT " STORE_PG_GATEWAY_COLUMNS STORE_PG_GATEWAY_READ_TAIL_ONE
	    " WHERE token_hash = $1 AND state = 'registered'",
	    token_hash, out);
}

/* Runs one change of p's values (p is cleared); -ENOENT when it touched no row. */
static int store_pg_gateways_change(PGconn *c, const char *what, const char *sql,
				    struct store_pg_params *p)
{
	uint64_t rows = 0;
	int rc = store_pg_do(c, what, sql, p, &rows);
	store_pg_params_clear(p);
	return rc < 0 ? rc : rows > 0 ? 0 : -ENOENT;
}

static int store_pg_gateway_remove_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, arg);
	return store_pg_gateways_change(c, "gateway_remove",
					"DELETE FROM gateways WHERE lower(name) = lower($1)", &p);
}

int store_pg_gateway_remove(struct store *st, const char *name)
{
	return store_pg_tx(store_pg_of(st), store_pg_gateway_remove_tx, unconst(name));
}

struct store_pg_gateway_touch {
	const char *name;
	int64_t now;
	const char *version;
};

static int store_pg_gateway_touch_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_gateway_touch *t = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, t->now);
	store_pg_text(&p, t->version);
	store_pg_text(&p, t->name);
	return store_pg_gateways_change(
	    c, "gateway_touch",
	    "UPDATE gateways SET last_seen = greatest(last_seen, $1::bigint),"
	    " version = coalesce($2, version)"
	    " WHERE lower(name) = lower($3) AND state = 'registered'",
	    &p);
}

int store_pg_gateway_touch(struct store *st, const char *name, int64_t now, const char *version)
{
	struct store_pg_gateway_touch t = {name, now, version};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_touch_tx, &t);
}

struct store_pg_gateway_pending {
	const struct store_gateway *g;
	size_t max_pending;
	int64_t now;
};

static int store_pg_gateway_pending_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_gateway_pending *a = arg;
	const struct store_gateway *g = a->g;
	int rc = store_pg_do(c, "gateway_pending_lock",
			     "SELECT pg_advisory_xact_lock(" STORE_PG_GATEWAY_PENDING_LOCK ")",
			     NULL, NULL);
	if (rc < 0)
		return rc;
	bool pending = false;
	rc = store_pg_gateways_state_of(c, "gateway_pending_name",
					"SELECT state FROM gateways WHERE lower(name) = lower($1)",
					g->name, &pending);
	if (rc == 0 && !pending)
		return -EEXIST;
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (rc == -ENOENT) {
		PGresult *r = store_pg_exec(c, "gateway_pending_count",
					    "SELECT count(*) FROM gateways WHERE state = 'pending'",
					    NULL, false);
		if (r == NULL)
			return -EIO;
		int64_t count = store_pg_i64(r, 0, 0);
		PQclear(r);
		if ((uint64_t)count >= a->max_pending)
			return -ENOSPC;
	}
	struct store_pg_params p = {0};
	store_pg_text(&p, g->name);
	store_pg_text(&p, g->address);
	store_pg_text(&p, g->group);
	store_pg_text(&p, g->cluster);
	store_pg_int(&p, g->release_port);
	store_pg_int(&p, a->now);
	store_pg_text(&p, g->version);
	rc = store_pg_do(c, "gateway_pending_put",
			 "INSERT INTO gateways (" STORE_PG_GATEWAY_COLUMNS ")"
			 " VALUES ($1, 'pending', $2, $3, $4, $5, NULL, $6, $6, $7)"
			 " ON CONFLICT ((lower(name))) DO UPDATE SET address = excluded.address,"
			 " group_name = excluded.group_name, cluster = excluded.cluster,"
			 " version = excluded.version, last_seen = excluded.last_seen"
			 " WHERE gateways.state = 'pending'",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_gateway_pending_put(struct store *st, const struct store_gateway *g,
				 size_t max_pending, int64_t now)
{
	struct store_pg_gateway_pending a = {g, max_pending, now};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_pending_tx, &a);
}

/*
 * The stored migration of registered gateway name, its row locked until the
 * transaction ends: of two managers, the second reads what the first wrote.
 */
static int store_pg_gateways_migration_of(PGconn *c, const char *name, struct store_migration *m)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	PGresult *r = store_pg_exec(
	    c, "gateway_migration_of",
	    "SELECT mig_state, mig_run, mig_total, mig_done, mig_failed, mig_finished_at,"
	    " mig_notified_at FROM gateways WHERE lower(name) = lower($1)"
	    " AND state = 'registered' FOR UPDATE",
	    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int rc = -ENOENT;
	if (PQntuples(r) > 0) {
		store_pg_gateways_migration_from(r, 0, 0, m);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

struct store_pg_gateways_mapping {
	const char *name, *mapping;
	struct store_migration *busy;
};

static int store_pg_gateway_mapping_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_gateways_mapping *a = arg;
	int rc = store_pg_gateways_migration_of(c, a->name, a->busy);
	if (rc < 0)
		return rc;
	if (a->busy->state == STORE_MIGRATION_RUNNING)
		return -EBUSY;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->mapping);
	store_pg_text(&p, a->name);
	return store_pg_gateways_change(c, "gateway_set_mapping",
					"UPDATE gateways SET mapping = $1"
					" WHERE lower(name) = lower($2) AND state = 'registered'",
					&p);
}

int store_pg_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
				 struct store_migration *busy)
{
	struct store_pg_gateways_mapping a = {name, mapping, busy};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_mapping_tx, &a);
}

/*
 * Records the "done" mail of run m of gateway name to notify, due at now (ms),
 * in the caller's transaction (the gateway's row is locked): the gateway's
 * settled notices of older runs go. The name is taken from the gateway's row,
 * as the registry's list joins it; a notice of the same run already kept stays.
 */
static int store_pg_gateways_notice_add(PGconn *c, const char *name, const char *notify,
					const struct store_migration *m, int64_t now)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	store_pg_int(&p, m->run);
	int rc = store_pg_do(c, "migration_notice_prune",
			     "DELETE FROM migration_notices WHERE lower(gateway) = lower($1)"
			     " AND next_try = 0 AND run < $2::bigint",
			     &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	store_pg_int(&p, m->run);
	store_pg_text(&p, notify);
	store_pg_int(&p, m->total);
	store_pg_int(&p, m->done);
	store_pg_int(&p, m->failed);
	store_pg_int(&p, m->finished_at);
	store_pg_int(&p, now / 1000 > 0 ? now / 1000 : 1);
	store_pg_text(&p, name);
	rc = store_pg_do(c, "migration_notice_add",
			 "INSERT INTO migration_notices (gateway, run, rcpt, total, moved, failed,"
			 " finished_at, next_try) SELECT name, $1::bigint, $2, $3::bigint,"
			 " $4::bigint, $5::bigint, $6::bigint, $7::bigint FROM gateways"
			 " WHERE lower(name) = lower($8) AND state = 'registered'"
			 " ON CONFLICT (gateway, run) DO NOTHING",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

struct store_pg_gateways_report {
	const char *name;
	const struct store_migration *r;
	const char *notify;
	int64_t now;
	struct store_migration *out;
	bool *first_done;
};

static int store_pg_gateway_report_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_gateways_report *a = arg;
	struct store_migration cur = {0};
	*a->first_done = false;
	int rc = store_pg_gateways_migration_of(c, a->name, &cur);
	if (rc < 0)
		return rc;
	if (!store_migration_next(&cur, a->r, a->now, a->out, a->first_done))
		return 0;
	const struct store_migration *m = a->out;
	struct store_pg_params p = {0};
	store_pg_int(&p, (int64_t)m->state);
	store_pg_int(&p, m->run);
	store_pg_int(&p, m->total);
	store_pg_int(&p, m->done);
	store_pg_int(&p, m->failed);
	store_pg_int(&p, m->finished_at);
	store_pg_int(&p, m->notified_at);
	store_pg_text(&p, a->name);
	rc = store_pg_gateways_change(
	    c, "gateway_migration_report",
	    "UPDATE gateways SET mig_state = $1, mig_run = $2, mig_total = $3, mig_done = $4,"
	    " mig_failed = $5, mig_finished_at = $6, mig_notified_at = $7"
	    " WHERE lower(name) = lower($8) AND state = 'registered'",
	    &p);
	if (rc == 0 && *a->first_done && a->notify != NULL)
		rc = store_pg_gateways_notice_add(c, a->name, a->notify, m, a->now);
	return rc;
}

int store_pg_gateway_migration_report(struct store *st, const char *name,
				      const struct store_migration *r, const char *notify,
				      int64_t now, struct store_migration *out, bool *first_done)
{
	struct store_pg_gateways_report a = {name, r, notify, now, out, first_done};
	int rc = store_pg_tx(store_pg_of(st), store_pg_gateway_report_tx, &a);
	if (rc < 0)
		*first_done = false;
	return rc;
}

/* --- the "done" mails of migration runs --------------------------------------- */

int store_pg_notice_due(struct store *st, int64_t now, size_t limit,
			struct store_migration_notice **out, size_t *n)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	*out = NULL;
	*n = 0;
	store_pg_int(&p, now);
	store_pg_int(&p, (int64_t)limit);
	int rc =
	    store_pg_query(store_pg_of(st), "notice_due",
			   "SELECT id, gateway, run, rcpt, total, moved, failed, finished_at,"
			   " tries, next_try, sent::int, last_try, reply FROM migration_notices"
			   " WHERE next_try > 0 AND next_try <= $1::bigint"
			   " ORDER BY next_try, id LIMIT $2::bigint",
			   &p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_migration_notice *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		struct store_migration_notice *x = &v[k];
		int i = (int)k;
		x->id = store_pg_i64(r, i, 0);
		x->gateway = store_pg_dup(r, i, 1);
		x->m.state = STORE_MIGRATION_DONE;
		x->m.run = store_pg_i64(r, i, 2);
		x->to = store_pg_dup(r, i, 3);
		x->m.total = store_pg_i64(r, i, 4);
		x->m.done = store_pg_i64(r, i, 5);
		x->m.failed = store_pg_i64(r, i, 6);
		x->m.finished_at = store_pg_i64(r, i, 7);
		x->tries = (int)store_pg_i64(r, i, 8);
		x->next = store_pg_i64(r, i, 9);
		x->sent = store_pg_i64(r, i, 10) != 0;
		x->last_try = store_pg_i64(r, i, 11);
		x->reply = store_pg_dup(r, i, 12);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

struct store_pg_notice_set {
	int64_t id, old_next;
	int tries;
	int64_t next;
	bool sent;
	int64_t last_try;
	const char *reply;
};

static int store_pg_notice_set_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	const struct store_pg_notice_set *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->tries);
	store_pg_int(&p, a->next);
	store_pg_int(&p, a->sent ? 1 : 0);
	store_pg_int(&p, a->last_try);
	store_pg_text(&p, a->reply);
	store_pg_int(&p, a->id);
	store_pg_int(&p, a->old_next);
	uint64_t rows = 0;
	int rc =
	    store_pg_do(c, "notice_set",
			"UPDATE migration_notices SET tries = $1::bigint, next_try = $2::bigint,"
			" sent = $3::int <> 0, last_try = $4::bigint, reply = $5"
			" WHERE id = $6::bigint AND next_try = $7::bigint",
			&p, &rows);
	store_pg_params_clear(&p);
	if (rc < 0 || rows > 0)
		return rc;
	store_pg_int(&p, a->id);
	rc = store_pg_do(c, "notice_set", "SELECT 1 FROM migration_notices WHERE id = $1::bigint",
			 &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? -EALREADY : -ENOENT;
}

int store_pg_notice_set(struct store *st, int64_t id, int64_t old_next, int tries, int64_t next,
			bool sent, int64_t last_try, const char *reply)
{
	struct store_pg_notice_set a = {id, old_next, tries, next, sent, last_try, reply};
	return store_pg_tx(store_pg_of(st), store_pg_notice_set_tx, &a);
}
