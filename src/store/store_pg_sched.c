/*
 * store_pg_sched — the PostgreSQL backend's scheduled reports and their archive
 * (its migration 18), with the semantics of store_sched.c. A claim is one
 * UPDATE ... WHERE next_run = old: of several managers sharing the store, the
 * row lock lets exactly one move it on.
 *
 * Not for: checking fields (store.c), rendering and mailing (report_sched.c).
 */
#include "store/store.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/unconst.h"
#include "common/xalloc.h"

struct store_pg_sched_add {
	const struct store_report_schedule *s;
	int64_t *id;
};

static int store_pg_sched_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_sched_add *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->s->report);
	store_pg_text(&p, a->s->period);
	store_pg_text(&p, a->s->every);
	store_pg_text(&p, a->s->format);
	store_pg_text(&p, a->s->recipients);
	store_pg_text(&p, a->s->created_by);
	store_pg_int(&p, a->s->created_at);
	store_pg_int(&p, a->s->next_run);
	store_pg_int(&p, a->s->at_minute);
	store_pg_text(&p, a->s->time_zone != NULL ? a->s->time_zone : "UTC");
	PGresult *r = store_pg_exec(c, "sched_add",
				    "INSERT INTO report_schedules (report, period, every, format,"
				    " recipients, created_by, created_at, next_run, at_minute,"
				    " time_zone) VALUES ($1, $2, $3, $4, $5, $6, $7::bigint,"
				    " $8::bigint, $9::bigint, $10) RETURNING id",
				    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	if (a->id != NULL)
		*a->id = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int store_pg_sched_add(struct store *st, const struct store_report_schedule *s, int64_t *id)
{
	struct store_pg_sched_add a = {s, id};
	return store_pg_tx(store_pg_of(st), store_pg_sched_add_tx, &a);
}

int store_pg_sched_list(struct store *st, struct store_report_schedule **out, size_t *n)
{
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(st), "sched_list",
				"SELECT id, report, period, every, format, recipients, created_by,"
				" created_at, next_run, last_run, at_minute, time_zone"
				" FROM report_schedules ORDER BY id",
				NULL, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_report_schedule *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		int i = (int)k;
		v[k].id = store_pg_i64(r, i, 0);
		v[k].report = store_pg_dup(r, i, 1);
		v[k].period = store_pg_dup(r, i, 2);
		v[k].every = store_pg_dup(r, i, 3);
		v[k].format = store_pg_dup(r, i, 4);
		v[k].recipients = store_pg_dup(r, i, 5);
		v[k].created_by = store_pg_dup(r, i, 6);
		v[k].created_at = store_pg_i64(r, i, 7);
		v[k].next_run = store_pg_i64(r, i, 8);
		v[k].last_run = store_pg_i64(r, i, 9);
		v[k].at_minute = (int)store_pg_i64(r, i, 10);
		v[k].time_zone = store_pg_dup(r, i, 11);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

static int store_pg_sched_delete_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const int64_t *id = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, *id);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "sched_delete",
			     "DELETE FROM report_schedules WHERE id = $1::bigint", &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? 0 : -ENOENT;
}

int store_pg_sched_delete(struct store *st, int64_t id)
{
	return store_pg_tx(store_pg_of(st), store_pg_sched_delete_tx, &id);
}

struct store_pg_sched_claim {
	int64_t id, old_next, new_next, now;
};

static int store_pg_sched_claim_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_sched_claim *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->new_next);
	store_pg_int(&p, a->now);
	store_pg_int(&p, a->id);
	store_pg_int(&p, a->old_next);
	uint64_t rows = 0;
	int rc =
	    store_pg_do(c, "sched_claim",
			"UPDATE report_schedules SET next_run = $1::bigint, last_run = $2::bigint"
			" WHERE id = $3::bigint AND next_run = $4::bigint",
			&p, &rows);
	store_pg_params_clear(&p);
	if (rc < 0 || rows > 0)
		return rc;
	store_pg_int(&p, a->id);
	rc = store_pg_do(c, "sched_claim", "SELECT 1 FROM report_schedules WHERE id = $1::bigint",
			 &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? -EALREADY : -ENOENT;
}

int store_pg_sched_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
			 int64_t now)
{
	struct store_pg_sched_claim a = {id, old_next, new_next, now};
	return store_pg_tx(store_pg_of(st), store_pg_sched_claim_tx, &a);
}

struct store_pg_archive_add {
	const struct store_report_archived *a;
	int64_t *id;
};

static int store_pg_archive_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_archive_add *x = arg;
	const struct store_report_archived *a = x->a;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->schedule_id);
	store_pg_text(&p, a->report);
	store_pg_text(&p, a->period);
	store_pg_text(&p, a->format);
	store_pg_int(&p, a->from);
	store_pg_int(&p, a->to);
	store_pg_int(&p, a->created_at);
	store_pg_bytes(&p, a->data, a->size);
	store_pg_text(&p, a->mail_pending != NULL ? a->mail_pending : "");
	store_pg_int(&p, a->mail_tries);
	store_pg_int(&p, a->mail_next);
	PGresult *r =
	    store_pg_exec(c, "archive_add",
			  "INSERT INTO report_archive (schedule_id, report, period, format,"
			  " range_from, range_to, created_at, data, mail_pending, mail_tries,"
			  " mail_next) VALUES ($1::bigint, $2, $3, $4, $5::bigint, $6::bigint,"
			  " $7::bigint, $8, $9, $10::bigint, $11::bigint) RETURNING id",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	if (x->id != NULL)
		*x->id = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int store_pg_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id)
{
	struct store_pg_archive_add x = {a, id};
	return store_pg_tx(store_pg_of(st), store_pg_archive_add_tx, &x);
}

static void store_pg_archive_row(const PGresult *r, int i, struct store_report_archived *v)
{
	memset(v, 0, sizeof(*v));
	v->id = store_pg_i64(r, i, 0);
	v->schedule_id = store_pg_i64(r, i, 1);
	v->report = store_pg_dup(r, i, 2);
	v->period = store_pg_dup(r, i, 3);
	v->format = store_pg_dup(r, i, 4);
	v->from = store_pg_i64(r, i, 5);
	v->to = store_pg_i64(r, i, 6);
	v->created_at = store_pg_i64(r, i, 7);
	v->size = (size_t)store_pg_i64(r, i, 8);
	v->mail_pending = store_pg_dup(r, i, 9);
	v->mail_tries = (int)store_pg_i64(r, i, 10);
	v->mail_next = store_pg_i64(r, i, 11);
}

int store_pg_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			  size_t *n)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	store_pg_int(&p, (int64_t)limit);
	int rc = store_pg_query(store_pg_of(st), "archive_list",
				"SELECT id, schedule_id, report, period, format, range_from,"
				" range_to, created_at, length(data), mail_pending, mail_tries,"
				" mail_next FROM report_archive ORDER BY id DESC LIMIT $1::bigint",
				&p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_report_archived *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++)
		store_pg_archive_row(r, (int)k, &v[k]);
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

int store_pg_archive_get(struct store *st, int64_t id, struct store_report_archived *out)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	store_pg_int(&p, id);
	int rc = store_pg_query(store_pg_of(st), "archive_get",
				"SELECT id, schedule_id, report, period, format, range_from,"
				" range_to, created_at, length(data), mail_pending, mail_tries,"
				" mail_next, data FROM report_archive WHERE id = $1::bigint",
				&p, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	store_pg_archive_row(r, 0, out);
	size_t len = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 12), &len);
	PQclear(r);
	if (raw == NULL) {
		store_report_archived_clear(out);
		return -ENOMEM;
	}
	out->data = xmalloc(len + 1);
	if (len > 0)
		memcpy(out->data, raw, len);
	out->size = len;
	PQfreemem(raw);
	return 0;
}

static int store_pg_sched_update_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_report_schedule *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->report);
	store_pg_text(&p, a->period);
	store_pg_text(&p, a->every);
	store_pg_text(&p, a->format);
	store_pg_text(&p, a->recipients);
	store_pg_int(&p, a->at_minute);
	store_pg_text(&p, a->time_zone != NULL ? a->time_zone : "UTC");
	store_pg_int(&p, a->next_run);
	store_pg_int(&p, a->id);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "sched_update",
			     "UPDATE report_schedules SET report = $1, period = $2, every = $3,"
			     " format = $4, recipients = $5, at_minute = $6::bigint,"
			     " time_zone = $7, next_run = $8::bigint WHERE id = $9::bigint",
			     &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? 0 : -ENOENT;
}

int store_pg_sched_update(struct store *st, const struct store_report_schedule *s)
{
	return store_pg_tx(store_pg_of(st), store_pg_sched_update_tx, unconst(s));
}

struct store_pg_archive_purge {
	int64_t before;
	size_t limit, *removed;
};

static int store_pg_archive_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_archive_purge *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->before);
	store_pg_int(&p, (int64_t)a->limit);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "archive_purge",
			     "DELETE FROM report_archive WHERE id IN (SELECT id FROM"
			     " report_archive WHERE created_at < $1::bigint ORDER BY created_at,"
			     " id LIMIT $2::bigint)",
			     &p, &rows);
	store_pg_params_clear(&p);
	if (rc == 0)
		*a->removed = (size_t)rows;
	return rc;
}

int store_pg_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed)
{
	struct store_pg_archive_purge a = {before, limit, removed};
	return store_pg_tx(store_pg_of(st), store_pg_archive_purge_tx, &a);
}

int store_pg_archive_mail_due(struct store *st, int64_t now, size_t limit,
			      struct store_report_archived **out, size_t *n)
{
	PGresult *r = NULL;
	struct store_pg_params p = {0};
	store_pg_int(&p, now);
	store_pg_int(&p, (int64_t)limit);
	int rc = store_pg_query(store_pg_of(st), "archive_mail_due",
				"SELECT id, schedule_id, report, period, format, range_from,"
				" range_to, created_at, length(data), mail_pending, mail_tries,"
				" mail_next FROM report_archive WHERE mail_next > 0 AND"
				" mail_next <= $1::bigint AND mail_pending <> ''"
				" ORDER BY mail_next, id LIMIT $2::bigint",
				&p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_report_archived *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++)
		store_pg_archive_row(r, (int)k, &v[k]);
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

struct store_pg_archive_mail_set {
	int64_t id, old_next;
	const char *pending;
	int tries;
	int64_t next;
};

static int store_pg_archive_mail_set_tx(struct store_pg *st, PGconn *c, void *arg)
{
	const struct store_pg_archive_mail_set *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->pending);
	store_pg_int(&p, a->tries);
	store_pg_int(&p, a->next);
	store_pg_int(&p, a->id);
	store_pg_int(&p, a->old_next);
	uint64_t rows = 0;
	int rc = store_pg_do(c, "archive_mail_set",
			     "UPDATE report_archive SET mail_pending = $1, mail_tries = $2::bigint,"
			     " mail_next = $3::bigint WHERE id = $4::bigint AND"
			     " ($5::bigint < 0 OR mail_next = $5::bigint)",
			     &p, &rows);
	store_pg_params_clear(&p);
	if (rc < 0 || rows > 0)
		return rc;
	store_pg_int(&p, a->id);
	rc = store_pg_do(c, "archive_mail_set",
			 "SELECT 1 FROM report_archive WHERE id = $1::bigint", &p, &rows);
	store_pg_params_clear(&p);
	return rc < 0 ? rc : rows > 0 ? -EALREADY : -ENOENT;
}

int store_pg_archive_mail_set(struct store *st, int64_t id, int64_t old_next, const char *pending,
			      int tries, int64_t next)
{
	struct store_pg_archive_mail_set a = {id, old_next, pending, tries, next};
	return store_pg_tx(store_pg_of(st), store_pg_archive_mail_set_tx, &a);
}
