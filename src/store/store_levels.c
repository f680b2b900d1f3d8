/*
 * store_levels — the SQLite backend's centralization levels (migration 15, the
 * contract of store.h "centralization levels") and what each gateway says it
 * runs with (gateways.central).
 *
 * Not for: resolving a gateway's settings or refusing conflicting ones
 * (api_levels.c), checking fields (store.c).
 */
#include "store/store.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/unconst.h"
#include "common/xalloc.h"

static int store_levels_fail(struct store_conn *c, const char *what)
{
	log_error("store.levels_failed", "what=%s error=%s", what, sqlite3_errmsg(store_int_db(c)));
	return -EIO;
}

static int store_levels_flag(sqlite3_stmt *s, int col)
{
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return STORE_LEVEL_UNSET;
	return sqlite3_column_int(s, col) != 0 ? 1 : 0;
}

static void store_levels_bind_flag(sqlite3_stmt *s, int i, int v)
{
	if (v == STORE_LEVEL_UNSET)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_int(s, i, v);
}

int store_sqlite_level_list(struct store *st, struct store_level **out, size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "SELECT level, name, pvo, reporting, tracking, filters, updated_at"
			       " FROM levels ORDER BY CASE level WHEN 'cluster' THEN 0"
			       " WHEN 'group' THEN 1 ELSE 2 END, name COLLATE BINARY",
			       -1, &s, NULL) != SQLITE_OK) {
		rc = store_levels_fail(c, "level_list");
		store_int_reader_put(st, c);
		return rc;
	}
	struct store_level *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		struct store_level *l = &v[k++];
		l->level = store_int_col_dup(s, 0);
		l->name = store_int_col_dup(s, 1);
		l->pvo = store_levels_flag(s, 2);
		l->reporting = store_levels_flag(s, 3);
		l->tracking = store_levels_flag(s, 4);
		l->filters = store_int_col_dup(s, 5);
		l->updated_at = sqlite3_column_int64(s, 6);
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_level_array_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

static int store_level_put_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_level *l = arg;
	bool empty = l->pvo == STORE_LEVEL_UNSET && l->reporting == STORE_LEVEL_UNSET &&
		     l->tracking == STORE_LEVEL_UNSET && l->filters == NULL;
	sqlite3_stmt *s = NULL;
	const char *sql =
	    empty
		? "DELETE FROM levels WHERE level = ?1 AND name = ?2"
		: "INSERT INTO levels (level, name, pvo, reporting, tracking, filters, updated_at)"
		  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
		  " ON CONFLICT (level, name) DO UPDATE SET pvo = excluded.pvo,"
		  " reporting = excluded.reporting, tracking = excluded.tracking,"
		  " filters = excluded.filters, updated_at = excluded.updated_at";
	if (sqlite3_prepare_v2(store_int_db(c), sql, -1, &s, NULL) != SQLITE_OK)
		return store_levels_fail(c, "level_put");
	sqlite3_bind_text(s, 1, l->level, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, l->name, -1, SQLITE_STATIC);
	if (!empty) {
		store_levels_bind_flag(s, 3, l->pvo);
		store_levels_bind_flag(s, 4, l->reporting);
		store_levels_bind_flag(s, 5, l->tracking);
		if (l->filters != NULL)
			sqlite3_bind_text(s, 6, l->filters, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 6);
		sqlite3_bind_int64(s, 7, l->updated_at);
	}
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	return step == SQLITE_DONE ? 0 : store_levels_fail(c, "level_put");
}

int store_sqlite_level_put(struct store *st, const struct store_level *l)
{
	return store_int_run_job(st, store_level_put_job, unconst(l));
}

struct store_levels_central {
	const char *name;
	unsigned central;
};

static int store_gateway_central_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_levels_central *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(
		store_int_db(c),
		"UPDATE gateways SET central = ? WHERE name = ? AND state = 'registered'", -1, &s,
		NULL) != SQLITE_OK)
		return store_levels_fail(c, "gateway_set_central");
	sqlite3_bind_int(s, 1, (int)a->central);
	sqlite3_bind_text(s, 2, a->name, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_levels_fail(c, "gateway_set_central");
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_gateway_set_central(struct store *st, const char *name, unsigned central)
{
	struct store_levels_central a = {name, central};
	return store_int_run_job(st, store_gateway_central_job, &a);
}

struct store_levels_outbreak {
	const char *name, *version;
	int64_t now;
	bool *changed;
};

/* Runs sql (?1 name, ?2 version): the rows it changed, or -EIO. */
static int store_gateway_outbreak_step(struct store_conn *c, const char *sql,
				       const struct store_levels_outbreak *a)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), sql, -1, &s, NULL) != SQLITE_OK)
		return store_levels_fail(c, "gateway_outbreak_version");
	sqlite3_bind_text(s, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->version, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_levels_fail(c, "gateway_outbreak_version");
	return sqlite3_changes(store_int_db(c));
}

static int store_gateway_outbreak_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_levels_outbreak *a = arg;
	int n = store_gateway_outbreak_step(
	    c,
	    "UPDATE gateways SET outbreak_version = ?2 WHERE name = ?1 AND state = 'registered'"
	    " AND outbreak_version IS NOT NULL AND outbreak_version IS NOT ?2",
	    a);
	if (n < 0)
		return n;
	*a->changed = n > 0;
	if (n > 0) {
		/* the gateway's Outbreak messages still held go back for rescanning */
		sqlite3_stmt *s = NULL;
		if (sqlite3_prepare_v2(store_int_db(c),
				       "UPDATE memberships SET rescan = 1, rescanned_at = ?2,"
				       " rescan_sent_at = ?2, rescan_rule = NULL"
				       " WHERE quarantine = 'outbreak' AND state = 0 AND msg_id IN"
				       " (SELECT id FROM messages WHERE gateway = ?1)",
				       -1, &s, NULL) != SQLITE_OK)
			return store_levels_fail(c, "gateway_outbreak_rescan");
		sqlite3_bind_text(s, 1, a->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, a->now);
		int step = sqlite3_step(s);
		sqlite3_finalize(s);
		return step == SQLITE_DONE ? 0 : store_levels_fail(c, "gateway_outbreak_rescan");
	}
	n = store_gateway_outbreak_step(c,
					"UPDATE gateways SET outbreak_version = ?2 WHERE name = ?1"
					" AND state = 'registered' AND outbreak_version IS NULL",
					a);
	if (n != 0)
		return n < 0 ? n : 0;
	n = store_gateway_outbreak_step(c,
					"UPDATE gateways SET outbreak_version = ?2 WHERE name = ?1"
					" AND state = 'registered'",
					a);
	return n < 0 ? n : n > 0 ? 0 : -ENOENT;
}

int store_sqlite_gateway_outbreak_version(struct store *st, const char *name, const char *version,
					  int64_t now, bool *changed)
{
	struct store_levels_outbreak a = {name, version, now, changed};
	return store_int_run_job(st, store_gateway_outbreak_job, &a);
}

struct store_levels_membership {
	const char *name, *group, *cluster;
};

static int store_gateway_levels_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_levels_membership *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "UPDATE gateways SET group_name = ?, cluster = ?"
			       " WHERE name = ? AND state = 'registered'",
			       -1, &s, NULL) != SQLITE_OK)
		return store_levels_fail(c, "gateway_set_levels");
	if (a->group != NULL)
		sqlite3_bind_text(s, 1, a->group, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 1);
	if (a->cluster != NULL)
		sqlite3_bind_text(s, 2, a->cluster, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_text(s, 3, a->name, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_levels_fail(c, "gateway_set_levels");
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_gateway_set_levels(struct store *st, const char *name, const char *group,
				    const char *cluster)
{
	struct store_levels_membership a = {name, group, cluster};
	return store_int_run_job(st, store_gateway_levels_job, &a);
}
