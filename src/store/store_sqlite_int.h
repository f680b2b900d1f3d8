/*
 * store_sqlite_int — what the SQLite backend's own files share: the connection,
 * cached statements and the writer-job mechanism. Only store_sqlite*.c include it;
 * everyone else goes through store.h.
 *
 * Rules for a backend file (store_slbl.c, store_users.c ...): its tables come from
 * the migrations list in store_sqlite.c (append only); every change runs as a
 * writer job (store_int_run_job: one transaction, committed before the caller
 * returns); reads take a reader connection and give it back.
 */
#ifndef LAZARET_STORE_SQLITE_INT_H
#define LAZARET_STORE_SQLITE_INT_H

#include <sqlite3.h>

#include "store/store.h"
#include "store/store_backend.h"

struct store;
struct store_conn;
struct store_slbl_clean;

typedef int (*store_int_job_fn)(struct store *st, struct store_conn *c, void *arg);

sqlite3 *store_int_db(struct store_conn *c);
/* A prepared statement cached per connection; sql must be a string constant. */
sqlite3_stmt *store_int_stmt(struct store_conn *c, const char *sql);
/* Steps s to SQLITE_DONE and resets it: 0 or -EIO (logged with what). */
int store_int_step_done(struct store_conn *c, sqlite3_stmt *s, const char *what);
/*
 * Runs fn(st, conn, arg) on the writer thread in one transaction (committed when fn
 * returns >= 0, rolled back otherwise) and waits. fn's result, -EIO, -ESHUTDOWN.
 */
int store_int_run_job(struct store *st, store_int_job_fn fn, void *arg);
/* A read connection for this call (give it back with store_int_reader_put). */
int store_int_reader_get(struct store *st, struct store_conn **out);
void store_int_reader_put(struct store *st, struct store_conn *c);
/* What a read call returns for rc: -ETIMEDOUT when the thread's deadline cut it off. */
int store_int_read_result(int rc);
/* A new copy of a text column, or NULL for SQL NULL. */
char *store_int_col_dup(sqlite3_stmt *s, int col);
void store_int_log_sqlite(const char *what, sqlite3 *db);

/* store.h, as the SQLite backend implements it (store_sqlite_ops). */
void store_sqlite_close(struct store *st);
int store_sqlite_submit_message(struct store *st, struct store_new_message *m, store_done_fn done,
				void *arg);
int store_sqlite_list(struct store *st, const struct store_filter *f, size_t limit,
		      const char *cursor, struct store_message ***out, size_t *n,
		      char **next_cursor);
int store_sqlite_get(struct store *st, const char *id, struct store_message **out);
int store_sqlite_get_raw(struct store *st, const char *id, unsigned char **raw, size_t *len);
int store_sqlite_quarantines(struct store *st, struct store_quarantine_stats **out, size_t *n);
int store_sqlite_release(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
			 int64_t now, int *changed);
int store_sqlite_delete(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
			int64_t now, int *changed);
int store_sqlite_release_matching(struct store *st, const struct store_filter *f, int64_t now,
				  int *changed);
int store_sqlite_delete_matching(struct store *st, const struct store_filter *f, int64_t now,
				 int *changed);
int store_sqlite_delivery_claim(struct store *st, int64_t now, int64_t lease_ms,
				struct store_delivery **out);
int store_sqlite_delivery_finish(struct store *st, const struct store_delivery *d,
				 const struct store_delivery_result *results, size_t nresults,
				 int64_t now, int64_t retry_at);
int store_sqlite_delivery_confirm(struct store *st, const struct store_delivery *d,
				  const struct store_delivery_result *results, size_t nresults,
				  int64_t now, const struct store_rescan_verdict *rescan);
int store_sqlite_delivery_reset_leases(struct store *st, int64_t now);
int store_sqlite_delivery_pending(struct store *st, uint64_t *count);
int store_sqlite_delivery_next_due(struct store *st, int64_t *when);
int store_sqlite_expire(struct store *st, const char *quarantine, int64_t cutoff, int64_t now,
			size_t batch, uint64_t *expired, uint64_t *purged);
int store_sqlite_purge(struct store *st, size_t batch, uint64_t *purged);

/* store_pvo.c: PVO memberships, inside the writer's or a reader's transaction. */
/* The id of the message m repeats (same origin gateway and id) into id_out[37],
 * "" when none. 0 or -EIO. */
int store_sqlite_pvo_existing(struct store_conn *c, const struct store_new_message *m,
			      char *id_out);
/* m's memberships for message id (quarantines created as needed). 0, -EINVAL, -EIO. */
int store_sqlite_pvo_insert(struct store_conn *c, const struct store_new_message *m,
			    const char *id);
/* Fills m->memberships (PVO messages only). 0 or -EIO. */
int store_sqlite_pvo_load(struct store_conn *c, struct store_message *m);
int store_sqlite_quarantine_put(struct store *st, const struct store_quarantine_settings *q,
				bool create, int64_t now);
int store_sqlite_quarantine_delete(struct store *st, const char *name);
int store_sqlite_operator_quarantines(struct store *st, const char *username, char ***out,
				      size_t *n);
/* Fills q->operators (inside the caller's read). 0 or -EIO. */
int store_sqlite_pvo_operators(struct store_conn *c, struct store_quarantine_stats *q);
int store_sqlite_expire_memberships(struct store *st, int64_t now, size_t batch, uint64_t *expired,
				    uint64_t *purged);
/*
 * The one place a membership changes by an action (store.h "Actions on one
 * membership"), inside the caller's writer job: store_pvo_act, the bulk, and any
 * other writer (a capacity sweep applying a quarantine's default_action) call it.
 * Same results as store_pvo_act; out must not be NULL.
 */
int store_sqlite_pvo_apply(struct store_conn *c, const char *id, const struct store_pvo_request *r,
			   int64_t now, struct store_pvo_outcome *out);
/* The pvo_act_batch of store_backend.h: b in one writer job. */
struct store_pvo_batch;
int store_sqlite_pvo_act_batch(struct store *st, struct store_pvo_batch *b);
int store_sqlite_pvo_copy(struct store *st, const char *id, const char *const *to, size_t n,
			  int64_t now);
/* Queues one delivery of message id to rcpts (store_delivery's route fields). 0 or -EIO. */
int store_sqlite_delivery_queue(struct store_conn *c, const char *id, const char *const *rcpts,
				size_t n, int64_t now, const char *gateway, bool rescan, bool copy);
/* Up to limit ids matching f after cursor, newest first (a reader; bulk actions page). */
int store_sqlite_list_ids(struct store *st, const struct store_filter *f, const char *cursor,
			  size_t limit, char ***out, size_t *n);
/* store_capacity.c: the PVO quarantines' capacity (store.h). */
int store_sqlite_pvo_usage_conn(struct store_conn *c, struct store_pvo_usage *out);
int store_sqlite_pvo_usage(struct store *st, struct store_pvo_usage *out);
int store_sqlite_pvo_overflow(struct store *st, uint64_t max_bytes, size_t batch, int64_t now,
			      struct store_pvo_overflow *out);
int store_sqlite_stats(struct store *st, struct store_stats *out);
void store_sqlite_debug_counters(struct store *st, struct store_debug_counters *out);
int store_sqlite_debug_list_plan(struct store *st, const struct store_filter *f, const char *cursor,
				 char **plan);
int store_sqlite_slbl_get(struct store *st, const char *recipient, struct store_slbl **out);
int store_sqlite_slbl_put(struct store *st, const struct store_slbl_clean *c, int64_t *version);
int store_sqlite_slbl_changes(struct store *st, int64_t since, size_t limit,
			      struct store_slbl ***out, size_t *n, int64_t *version);
int store_sqlite_user_add(struct store *st, const struct store_user *u);
int store_sqlite_user_get(struct store *st, const char *username, struct store_user **out);
int store_sqlite_user_list(struct store *st, struct store_user ***out, size_t *n);
int store_sqlite_user_count(struct store *st, uint64_t *count);
int store_sqlite_user_delete(struct store *st, const char *username);
int store_sqlite_user_set_prefs(struct store *st, const char *username, const char *language,
				const char *time_zone);
int store_sqlite_user_set_last_login(struct store *st, const char *username, int64_t at);
int store_sqlite_session_add(struct store *st, const char *token_hash,
			     const struct store_session *s);
int store_sqlite_session_get(struct store *st, const char *token_hash, struct store_session **out);
int store_sqlite_session_touch(struct store *st, const char *token_hash, int64_t expires_at);
int store_sqlite_session_delete(struct store *st, const char *token_hash);
int store_sqlite_session_purge(struct store *st, int64_t now, int64_t created_before,
			       uint64_t *purged);
struct store_totp_change;
int store_sqlite_totp_get(struct store *st, const char *username, struct store_totp **out);
int store_sqlite_totp_change(struct store *st, const struct store_totp_change *ch);
int store_sqlite_audit_add(struct store *st, const struct store_audit *a);
int store_sqlite_audit_list(struct store *st, size_t limit, int64_t before_seq,
			    struct store_audit ***out, size_t *n);
int store_sqlite_digest_user_by_address(struct store *st, const char *address,
					struct store_digest_user **out);
int store_sqlite_digest_user_by_name(struct store *st, const char *username,
				     struct store_digest_user **out);
int store_sqlite_digest_max_seq(struct store *st, int64_t *out);
int store_sqlite_digest_candidates(struct store *st, const char *q, int64_t after, int64_t upto,
				   char ***out, size_t *n);
int store_sqlite_digest_entries(struct store *st, const char *q, const char *address, int64_t after,
				int64_t upto, size_t limit, struct store_digest_entry **out,
				size_t *n, size_t *total);
int store_sqlite_digest_state_get(struct store *st, const char *address, int64_t *last_seq,
				  int64_t *last_sent_at);
int store_sqlite_digest_state_put(struct store *st, const char *const *addresses, size_t n,
				  int64_t last_seq, int64_t sent_at);
int store_sqlite_digest_token_used(struct store *st, const char *nonce, bool *used);
int store_sqlite_digest_token_use(struct store *st, const char *nonce, int64_t now,
				  int64_t expires_at);

/* store_gateways.c */
int store_sqlite_gateway_add(struct store *st, const struct store_gateway *g);
int store_sqlite_gateway_list(struct store *st, struct store_gateway ***out, size_t *n);
int store_sqlite_gateway_get(struct store *st, const char *name, struct store_gateway **out);
int store_sqlite_gateway_get_by_address(struct store *st, const char *address,
					struct store_gateway **out);
int store_sqlite_gateway_get_by_token_hash(struct store *st, const char *token_hash,
					   struct store_gateway **out);
int store_sqlite_gateway_remove(struct store *st, const char *name);
int store_sqlite_gateway_touch(struct store *st, const char *name, int64_t now,
			       const char *version);
int store_sqlite_gateway_pending_put(struct store *st, const struct store_gateway *g,
				     size_t max_pending, int64_t now);

/* store_levels.c */
int store_sqlite_gateway_set_central(struct store *st, const char *name, unsigned central);
int store_sqlite_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
				     struct store_migration *busy);
int store_sqlite_gateway_migration_report(struct store *st, const char *name,
					  const struct store_migration *r, const char *notify,
					  int64_t now, struct store_migration *out,
					  bool *first_done);
int store_sqlite_notice_due(struct store *st, int64_t now, size_t limit,
			    struct store_migration_notice **out, size_t *n);
int store_sqlite_notice_set(struct store *st, int64_t id, int64_t old_next, int tries, int64_t next,
			    bool sent, int64_t last_try, const char *reply);
int store_sqlite_gateway_outbreak_version(struct store *st, const char *name, const char *version,
					  int64_t now, bool *changed);
int store_sqlite_gateway_set_levels(struct store *st, const char *name, const char *group,
				    const char *cluster);
int store_sqlite_level_list(struct store *st, struct store_level **out, size_t *n);
int store_sqlite_level_put(struct store *st, const struct store_level *l);
int store_sqlite_sched_add(struct store *st, const struct store_report_schedule *s, int64_t *id);
int store_sqlite_sched_list(struct store *st, struct store_report_schedule **out, size_t *n);
int store_sqlite_sched_delete(struct store *st, int64_t id);
int store_sqlite_sched_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
			     int64_t now);
int store_sqlite_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id);
int store_sqlite_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			      size_t *n);
int store_sqlite_archive_get(struct store *st, int64_t id, struct store_report_archived *out);
int store_sqlite_sched_update(struct store *st, const struct store_report_schedule *s);
int store_sqlite_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
				 const struct store_rollup_in *v, size_t n, bool done, int64_t now,
				 size_t *stored);
int store_sqlite_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at);
int store_sqlite_report_export(struct store *st, int gran, int64_t before,
			       const struct store_rollup_row *after, size_t limit,
			       struct store_rollup_row **out, size_t *n);
int store_sqlite_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed);
int store_sqlite_archive_mail_due(struct store *st, int64_t now, size_t limit,
				  struct store_report_archived **out, size_t *n);
int store_sqlite_archive_mail_set(struct store *st, int64_t id, int64_t old_next,
				  const char *pending, int tries, int64_t next);

/* store_sqlite_events.c */
int store_sqlite_events_put(struct store *st, const char *gateway, const struct store_event *v,
			    size_t n, int64_t backlog, int64_t now, bool own, uint64_t *stored);
int store_sqlite_report_read(struct store *st, const struct store_report_query *q,
			     struct store_report_row **out, size_t *n);
int store_sqlite_report_scan(struct store *st, int report, const char *gateway,
			     const struct store_report_span *v, size_t n, store_report_row_fn row,
			     void *arg);
int store_sqlite_report_purge(struct store *st, int gran, int64_t before, size_t batch,
			      uint64_t *rows);
/* system_capacity: a capacity event's sample into its hour, in a writer job */
int store_sqlite_capacity_write(struct store_conn *c, const char *gateway, int64_t at,
				const struct store_capacity_sample *v);
int store_sqlite_capacity_read(struct store *st, const char *gateway, int64_t since, int64_t until,
			       struct store_capacity_row **out, size_t *n);
int store_sqlite_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows);
/* store_report_fetch_fn and _write_fn on a writer job's connection (ctx) */
int store_sqlite_report_fetch(void *ctx, const char *gateway, const char *const *ids, size_t n,
			      int64_t since, struct store_event_row **out, size_t *nout);
struct store_report_acc;
int store_sqlite_report_write(void *ctx, const char *gateway, const struct store_report_acc *a);
int store_sqlite_event_states(struct store *st, struct store_event_state **out, size_t *n);
int store_sqlite_events_list(struct store *st, const char *gateway, const char *msg_id,
			     int64_t after_seq, size_t limit, struct store_event_row **out,
			     size_t *n);
/* Appends the rows of s (gateway, seq, at, type, msg_id, detail; bound, not yet
 * stepped) to the k event rows of *v; resets s. 0 or -EIO (the rows read stay). */
int store_sqlite_event_rows_append(sqlite3_stmt *s, struct store_event_row **v, size_t *k);
/* The rows of s (as store_sqlite_event_rows_append) as new event rows; resets s
 * and gives the reader c back. */
int store_sqlite_event_rows(struct store *st, struct store_conn *c, sqlite3_stmt *s,
			    struct store_event_row **out, size_t *n);
int store_sqlite_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
				     struct store_tracked_message **out);
int store_sqlite_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
				uint64_t *messages);

/* store_sqlite_tracking.c */
struct store_track_sql;
struct store_track_key;
int store_sqlite_tracked_search(struct store *st, const struct store_track_sql *q,
				struct store_track_key **out, size_t *n);
int store_sqlite_tracked_session_events(struct store *st, const char *gateway, const char *msg_id,
					int64_t from, int64_t to, struct store_event_row **out,
					size_t *n);

#endif
