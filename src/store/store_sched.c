/*
 * store_sched — the SQLite backend's scheduled reports and their archive
 * (migration 18, the contract of store.h "scheduled reports").
 *
 * Not for: checking fields (store.c), working out when a schedule is due or
 * rendering and mailing it (report_sched.c).
 */
#include "store/store.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/unconst.h"
#include "common/xalloc.h"

static int store_sched_fail(struct store_conn *c, const char *what)
{
	log_error("store.sched_failed", "what=%s error=%s", what, sqlite3_errmsg(store_int_db(c)));
	return -EIO;
}

struct store_sched_add {
	const struct store_report_schedule *s;
	int64_t *id;
};

static int store_sched_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_sched_add *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "INSERT INTO report_schedules (report, period, every, format,"
			       " recipients, created_by, created_at, next_run, at_minute,"
			       " time_zone) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "sched_add");
	sqlite3_bind_text(s, 1, a->s->report, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->s->period, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, a->s->every, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, a->s->format, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, a->s->recipients, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, a->s->created_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, a->s->created_at);
	sqlite3_bind_int64(s, 8, a->s->next_run);
	sqlite3_bind_int(s, 9, a->s->at_minute);
	sqlite3_bind_text(s, 10, a->s->time_zone != NULL ? a->s->time_zone : "UTC", -1,
			  SQLITE_STATIC);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "sched_add");
	if (a->id != NULL)
		*a->id = sqlite3_last_insert_rowid(store_int_db(c));
	return 0;
}

int store_sqlite_sched_add(struct store *st, const struct store_report_schedule *s, int64_t *id)
{
	struct store_sched_add a = {s, id};
	return store_int_run_job(st, store_sched_add_job, &a);
}

int store_sqlite_sched_list(struct store *st, struct store_report_schedule **out, size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "SELECT id, report, period, every, format, recipients, created_by,"
			       " created_at, next_run, last_run, at_minute, time_zone"
			       " FROM report_schedules ORDER BY id",
			       -1, &s, NULL) != SQLITE_OK) {
		rc = store_sched_fail(c, "sched_list");
		store_int_reader_put(st, c);
		return rc;
	}
	struct store_report_schedule *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		struct store_report_schedule *r = &v[k++];
		r->id = sqlite3_column_int64(s, 0);
		r->report = store_int_col_dup(s, 1);
		r->period = store_int_col_dup(s, 2);
		r->every = store_int_col_dup(s, 3);
		r->format = store_int_col_dup(s, 4);
		r->recipients = store_int_col_dup(s, 5);
		r->created_by = store_int_col_dup(s, 6);
		r->created_at = sqlite3_column_int64(s, 7);
		r->next_run = sqlite3_column_int64(s, 8);
		r->last_run = sqlite3_column_int64(s, 9);
		r->at_minute = sqlite3_column_int(s, 10);
		r->time_zone = store_int_col_dup(s, 11);
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_report_schedule_array_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

static int store_sched_delete_job(struct store *st, struct store_conn *c, void *arg)
{
	const int64_t *id = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), "DELETE FROM report_schedules WHERE id = ?", -1, &s,
			       NULL) != SQLITE_OK)
		return store_sched_fail(c, "sched_delete");
	sqlite3_bind_int64(s, 1, *id);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "sched_delete");
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_sched_delete(struct store *st, int64_t id)
{
	return store_int_run_job(st, store_sched_delete_job, &id);
}

struct store_sched_claim {
	int64_t id, old_next, new_next, now;
};

static int store_sched_claim_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_sched_claim *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "UPDATE report_schedules SET next_run = ?1, last_run = ?2"
			       " WHERE id = ?3 AND next_run = ?4",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "sched_claim");
	sqlite3_bind_int64(s, 1, a->new_next);
	sqlite3_bind_int64(s, 2, a->now);
	sqlite3_bind_int64(s, 3, a->id);
	sqlite3_bind_int64(s, 4, a->old_next);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "sched_claim");
	if (sqlite3_changes(store_int_db(c)) > 0)
		return 0;
	if (sqlite3_prepare_v2(store_int_db(c), "SELECT 1 FROM report_schedules WHERE id = ?", -1,
			       &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "sched_claim");
	sqlite3_bind_int64(s, 1, a->id);
	step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step == SQLITE_ROW)
		return -EALREADY;
	return step == SQLITE_DONE ? -ENOENT : store_sched_fail(c, "sched_claim");
}

int store_sqlite_sched_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
			     int64_t now)
{
	struct store_sched_claim a = {id, old_next, new_next, now};
	return store_int_run_job(st, store_sched_claim_job, &a);
}

struct store_archive_add {
	const struct store_report_archived *a;
	int64_t *id;
};

static int store_archive_add_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_archive_add *x = arg;
	const struct store_report_archived *a = x->a;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "INSERT INTO report_archive (schedule_id, report, period, format,"
			       " range_from, range_to, created_at, data, mail_pending, mail_tries,"
			       " mail_next) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "archive_add");
	sqlite3_bind_int64(s, 1, a->schedule_id);
	sqlite3_bind_text(s, 2, a->report, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, a->period, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, a->format, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, a->from);
	sqlite3_bind_int64(s, 6, a->to);
	sqlite3_bind_int64(s, 7, a->created_at);
	sqlite3_bind_blob64(s, 8, a->size > 0 ? (const void *)a->data : "", a->size, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, a->mail_pending != NULL ? a->mail_pending : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 10, a->mail_tries);
	sqlite3_bind_int64(s, 11, a->mail_next);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "archive_add");
	if (x->id != NULL)
		*x->id = sqlite3_last_insert_rowid(store_int_db(c));
	return 0;
}

int store_sqlite_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id)
{
	struct store_archive_add x = {a, id};
	return store_int_run_job(st, store_archive_add_job, &x);
}

/* Reads archive rows of sql (?1 bound to arg, ?2 to arg2) with data when with_data. */
static int store_archive_read(struct store *st, const char *sql, int64_t arg, int64_t arg2,
			      bool with_data, struct store_report_archived **out, size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), sql, -1, &s, NULL) != SQLITE_OK) {
		rc = store_sched_fail(c, "archive_read");
		store_int_reader_put(st, c);
		return rc;
	}
	sqlite3_bind_int64(s, 1, arg);
	if (sqlite3_bind_parameter_count(s) >= 2)
		sqlite3_bind_int64(s, 2, arg2);
	struct store_report_archived *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		struct store_report_archived *r = &v[k++];
		memset(r, 0, sizeof(*r));
		r->id = sqlite3_column_int64(s, 0);
		r->schedule_id = sqlite3_column_int64(s, 1);
		r->report = store_int_col_dup(s, 2);
		r->period = store_int_col_dup(s, 3);
		r->format = store_int_col_dup(s, 4);
		r->from = sqlite3_column_int64(s, 5);
		r->to = sqlite3_column_int64(s, 6);
		r->created_at = sqlite3_column_int64(s, 7);
		r->size = (size_t)sqlite3_column_int64(s, 8);
		r->mail_pending = store_int_col_dup(s, 9);
		r->mail_tries = sqlite3_column_int(s, 10);
		r->mail_next = sqlite3_column_int64(s, 11);
		if (with_data) {
			const void *b = sqlite3_column_blob(s, 12);
			r->size = (size_t)sqlite3_column_bytes(s, 12);
			r->data = xmalloc(r->size + 1);
			if (r->size > 0)
				memcpy(r->data, b, r->size);
		}
	}
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_report_archived_array_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

int store_sqlite_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			      size_t *n)
{
	return store_archive_read(st,
				  "SELECT id, schedule_id, report, period, format, range_from,"
				  " range_to, created_at, length(data), mail_pending, mail_tries,"
				  " mail_next FROM report_archive ORDER BY id DESC LIMIT ?1",
				  (int64_t)limit, 0, false, out, n);
}

int store_sqlite_archive_get(struct store *st, int64_t id, struct store_report_archived *out)
{
	struct store_report_archived *v = NULL;
	size_t n = 0;
	int rc = store_archive_read(st,
				    "SELECT id, schedule_id, report, period, format, range_from,"
				    " range_to, created_at, length(data), mail_pending, mail_tries,"
				    " mail_next, data FROM report_archive WHERE id = ?1",
				    id, 0, true, &v, &n);
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

static int store_sched_update_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_report_schedule *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "UPDATE report_schedules SET report = ?, period = ?, every = ?,"
			       " format = ?, recipients = ?, at_minute = ?, time_zone = ?,"
			       " next_run = ? WHERE id = ?",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "sched_update");
	sqlite3_bind_text(s, 1, a->report, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->period, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, a->every, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, a->format, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, a->recipients, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, a->at_minute);
	sqlite3_bind_text(s, 7, a->time_zone != NULL ? a->time_zone : "UTC", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, a->next_run);
	sqlite3_bind_int64(s, 9, a->id);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "sched_update");
	return sqlite3_changes(store_int_db(c)) > 0 ? 0 : -ENOENT;
}

int store_sqlite_sched_update(struct store *st, const struct store_report_schedule *s)
{
	return store_int_run_job(st, store_sched_update_job, unconst(s));
}

struct store_archive_purge {
	int64_t before;
	size_t limit, *removed;
};

static int store_archive_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_archive_purge *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "DELETE FROM report_archive WHERE id IN (SELECT id FROM"
			       " report_archive WHERE created_at < ? ORDER BY created_at, id"
			       " LIMIT ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "archive_purge");
	sqlite3_bind_int64(s, 1, a->before);
	sqlite3_bind_int64(s, 2, (int64_t)a->limit);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "archive_purge");
	*a->removed = (size_t)sqlite3_changes(store_int_db(c));
	return 0;
}

int store_sqlite_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed)
{
	struct store_archive_purge a = {before, limit, removed};
	return store_int_run_job(st, store_archive_purge_job, &a);
}

int store_sqlite_archive_mail_due(struct store *st, int64_t now, size_t limit,
				  struct store_report_archived **out, size_t *n)
{
	return store_archive_read(st,
				  "SELECT id, schedule_id, report, period, format, range_from,"
				  " range_to, created_at, length(data), mail_pending, mail_tries,"
				  " mail_next FROM report_archive WHERE mail_next > 0 AND"
				  " mail_next <= ?1 AND mail_pending <> '' ORDER BY mail_next, id"
				  " LIMIT ?2",
				  now, (int64_t)limit, false, out, n);
}

struct store_archive_mail_set {
	int64_t id, old_next;
	const char *pending;
	int tries;
	int64_t next;
};

static int store_archive_mail_set_job(struct store *st, struct store_conn *c, void *arg)
{
	const struct store_archive_mail_set *a = arg;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c),
			       "UPDATE report_archive SET mail_pending = ?1, mail_tries = ?2,"
			       " mail_next = ?3 WHERE id = ?4 AND (?5 < 0 OR mail_next = ?5)",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sched_fail(c, "archive_mail_set");
	sqlite3_bind_text(s, 1, a->pending, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, a->tries);
	sqlite3_bind_int64(s, 3, a->next);
	sqlite3_bind_int64(s, 4, a->id);
	sqlite3_bind_int64(s, 5, a->old_next);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE)
		return store_sched_fail(c, "archive_mail_set");
	if (sqlite3_changes(store_int_db(c)) > 0)
		return 0;
	if (sqlite3_prepare_v2(store_int_db(c), "SELECT 1 FROM report_archive WHERE id = ?", -1, &s,
			       NULL) != SQLITE_OK)
		return store_sched_fail(c, "archive_mail_set");
	sqlite3_bind_int64(s, 1, a->id);
	step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step == SQLITE_ROW)
		return -EALREADY;
	return step == SQLITE_DONE ? -ENOENT : store_sched_fail(c, "archive_mail_set");
}

int store_sqlite_archive_mail_set(struct store *st, int64_t id, int64_t old_next,
				  const char *pending, int tries, int64_t next)
{
	struct store_archive_mail_set a = {id, old_next, pending, tries, next};
	return store_int_run_job(st, store_archive_mail_set_job, &a);
}
