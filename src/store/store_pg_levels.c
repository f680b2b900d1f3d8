/*
 * store_pg_levels — the PostgreSQL backend's centralization levels (its migration
 * 17), with the semantics of store_levels.c, and what each gateway says it runs
 * with (gateways.central).
 *
 * Not for: resolving a gateway's settings or refusing conflicting ones
 * (api_levels.c), checking fields (store.c).
 */
#include "store/store.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/unconst.h"
#include "common/xalloc.h"

static int store_pg_levels_flag(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return STORE_LEVEL_UNSET;
	return PQgetvalue(r, row, col)[0] == 't' ? 1 : 0;
}

static const char *store_pg_levels_bool(int v)
{
	return v == STORE_LEVEL_UNSET ? NULL : v ? "true" : "false";
}

int store_pg_level_list(struct store *st, struct store_level **out, size_t *n)
{
	PGresult *r = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_pg_query(store_pg_of(st), "level_list",
				"SELECT level, name, pvo, reporting, tracking, filters, updated_at"
				" FROM levels ORDER BY CASE level WHEN 'cluster' THEN 0"
				" WHEN 'group' THEN 1 ELSE 2 END, name COLLATE \"C\"",
				NULL, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_level *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		v[k].level = store_pg_dup(r, (int)k, 0);
		v[k].name = store_pg_dup(r, (int)k, 1);
		v[k].pvo = store_pg_levels_flag(r, (int)k, 2);
		v[k].reporting = store_pg_levels_flag(r, (int)k, 3);
		v[k].tracking = store_pg_levels_flag(r, (int)k, 4);
		v[k].filters = store_pg_dup(r, (int)k, 5);
		v[k].updated_at = store_pg_i64(r, (int)k, 6);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

static int store_pg_level_put_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_level *l = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, l->level);
	store_pg_text(&p, l->name);
	int rc = store_pg_do(c, "level_put_delete",
			     "DELETE FROM levels WHERE level = $1 AND lower(name) = lower($2)", &p,
			     NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	if (l->pvo == STORE_LEVEL_UNSET && l->reporting == STORE_LEVEL_UNSET &&
	    l->tracking == STORE_LEVEL_UNSET && l->filters == NULL)
		return 0;
	store_pg_text(&p, l->level);
	store_pg_text(&p, l->name);
	store_pg_text(&p, store_pg_levels_bool(l->pvo));
	store_pg_text(&p, store_pg_levels_bool(l->reporting));
	store_pg_text(&p, store_pg_levels_bool(l->tracking));
	store_pg_text(&p, l->filters);
	store_pg_int(&p, l->updated_at);
	rc = store_pg_do(c, "level_put",
			 "INSERT INTO levels (level, name, pvo, reporting, tracking, filters,"
			 " updated_at) VALUES ($1, $2, $3::boolean, $4::boolean, $5::boolean, $6,"
			 " $7::bigint)",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_level_put(struct store *st, const struct store_level *l)
{
	return store_pg_tx(store_pg_of(st), store_pg_level_put_tx, unconst(l));
}

struct store_pg_levels_central {
	const char *name;
	unsigned central;
};

static int store_pg_gateway_central_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_levels_central *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->central);
	store_pg_text(&p, a->name);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "gateway_set_central",
			     "UPDATE gateways SET central = $1::integer"
			     " WHERE lower(name) = lower($2) AND state = 'registered'",
			     &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? 0 : -ENOENT;
}

int store_pg_gateway_set_central(struct store *st, const char *name, unsigned central)
{
	struct store_pg_levels_central a = {name, central};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_central_tx, &a);
}

struct store_pg_levels_outbreak {
	const char *name, *version;
	int64_t now;
	bool *changed;
};

static int store_pg_gateway_outbreak_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_levels_outbreak *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->name);
	store_pg_text(&p, a->version);
	uint64_t changed = 0, set = 0;
	/* the row lock orders two managers: the second finds the version already set */
	int rc = store_pg_do(c, "gateway_outbreak_version",
			     "UPDATE gateways SET outbreak_version = $2"
			     " WHERE lower(name) = lower($1) AND state = 'registered'"
			     " AND outbreak_version IS NOT NULL AND outbreak_version <> $2",
			     &p, &changed);
	if (rc >= 0 && changed == 0)
		rc = store_pg_do(c, "gateway_outbreak_version",
				 "UPDATE gateways SET outbreak_version = $2"
				 " WHERE lower(name) = lower($1) AND state = 'registered'",
				 &p, &set);
	store_pg_params_clear(&p);
	if (rc >= 0 && changed > 0) {
		/* the gateway's Outbreak messages still held go back for rescanning */
		struct store_pg_params q = {0};
		store_pg_text(&q, a->name);
		store_pg_int(&q, a->now);
		rc = store_pg_do(c, "gateway_outbreak_rescan",
				 "UPDATE memberships SET rescan = 1, rescanned_at = $2,"
				 " rescan_sent_at = $2, rescan_rule = NULL"
				 " WHERE quarantine = 'outbreak' AND state = 0 AND msg_id IN"
				 " (SELECT id FROM messages WHERE gateway = $1)",
				 &q, NULL);
		store_pg_params_clear(&q);
	}
	*a->changed = changed > 0;
	return rc < 0 ? rc : changed + set > 0 ? 0 : -ENOENT;
}

int store_pg_gateway_outbreak_version(struct store *st, const char *name, const char *version,
				      int64_t now, bool *changed)
{
	struct store_pg_levels_outbreak a = {name, version, now, changed};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_outbreak_tx, &a);
}

struct store_pg_levels_membership {
	const char *name, *group, *cluster;
};

static int store_pg_gateway_levels_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_levels_membership *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->group);
	store_pg_text(&p, a->cluster);
	store_pg_text(&p, a->name);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "gateway_set_levels",
			     "UPDATE gateways SET group_name = $1, cluster = $2"
			     " WHERE lower(name) = lower($3) AND state = 'registered'",
			     &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? 0 : -ENOENT;
}

int store_pg_gateway_set_levels(struct store *st, const char *name, const char *group,
				const char *cluster)
{
	struct store_pg_levels_membership a = {name, group, cluster};
	return store_pg_tx(store_pg_of(st), store_pg_gateway_levels_tx, &a);
}
