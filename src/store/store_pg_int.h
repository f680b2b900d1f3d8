/*
 * store_pg_int — what the PostgreSQL backend's own files share: connections,
 * transactions and the binding of values. Only store_pg*.c include it; everyone
 * else goes through store.h.
 *
 * Rules for a backend file (store_pg_users.c ...): its tables come from the
 * migrations list in store_pg.c (append only); every change runs in store_pg_tx
 * (one transaction on a pooled connection, committed before the caller returns,
 * run again after a deadlock, so fn starts from its arguments each time); a read
 * borrows a connection with store_pg_conn_get and gives it back.
 */
#ifndef LAZARET_STORE_PG_INT_H
#define LAZARET_STORE_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "store/store_backend.h"

/* Values bound to one statement: lists travel as one array value each. */
#define STORE_PG_PARAMS_MAX 40

/*
 * Listing statements a session keeps prepared (store_pg_exec_prepared): one per
 * combination of filters met, a few in practice; past this, the rest are planned
 * each time.
 */
#define STORE_PG_PREPARED_MAX 32

struct store_pg;
struct store_slbl_clean;
struct store_pg_conn {
	PGconn *pg;
	bool insert_prepared; /* the writer's: its session has the insert statement */
	bool timed;	      /* statement_timeout set for the calling thread's read deadline */
	bool replica;	      /* to [store] read_dsn: goes back to the replica pool */
	bool stale;	      /* the writer's: its server refused a write (read-only) */
	char *prepared[STORE_PG_PREPARED_MAX]; /* their SQL, "lazaret_q<i>" on the server */
	unsigned nprepared;
	struct store_pg_conn *next;
};

struct store_pg *store_pg_of(struct store *st);

/* The values of one statement: text (NULL is SQL NULL) or binary (bytea). */
struct store_pg_params {
	const char *v[STORE_PG_PARAMS_MAX];
	int len[STORE_PG_PARAMS_MAX];
	int fmt[STORE_PG_PARAMS_MAX];
	char *owned[2 * STORE_PG_PARAMS_MAX];
	int nowned;
	int n;
};

/* Binds text s (NULL: SQL NULL; invalid UTF-8 becomes U+FFFD), borrowed; returns
 * its number ($n). */
int store_pg_text(struct store_pg_params *p, const char *s);
/* Binds s and frees it with the params. */
int store_pg_owned(struct store_pg_params *p, char *s);
int store_pg_int(struct store_pg_params *p, int64_t v);
/* Binds a text[] literal of v (NULL elements are SQL NULLs). */
int store_pg_array(struct store_pg_params *p, const char *const *v, size_t n);
void store_pg_params_clear(struct store_pg_params *p);

/* The SQLSTATE of the last failed statement on this thread ("" when none). */
extern __thread char store_pg_sqlstate[6];
/*
 * Runs sql with p's values (p may be NULL): the result (the caller PQclear()s it),
 * or NULL when it failed (logged with what; store_pg_sqlstate says why).
 * binary: results in binary format.
 */
PGresult *store_pg_exec(PGconn *c, const char *what, const char *sql,
			const struct store_pg_params *p, bool binary);
/*
 * As store_pg_exec (text results), with sql prepared once on c's session and kept
 * there: the server can then reuse one plan instead of planning every call,
 * which matters for queries over many partitions. For statements run often in a
 * few shapes (listings); falls back to store_pg_exec when c keeps too many.
 */
PGresult *store_pg_exec_prepared(struct store_pg_conn *c, const char *what, const char *sql,
				 const struct store_pg_params *p);
/* Runs sql for its effect; *rows (may be NULL) gets the rows it touched. 0 or -EIO. */
int store_pg_do(PGconn *c, const char *what, const char *sql, const struct store_pg_params *p,
		uint64_t *rows);
/* Several statements without values. 0 or -EIO. */
int store_pg_script(PGconn *c, const char *what, const char *sql);
/* A new copy of a text value, NULL for SQL NULL. */
char *store_pg_dup(const PGresult *r, int row, int col);
/* An integer value, 0 for SQL NULL. */
int64_t store_pg_i64(const PGresult *r, int row, int col);
/* Appends the first column of every row of r to *v. */
void store_pg_collect(const PGresult *r, char ***v, size_t *n);
/* Lower-cases ASCII (a new string). */
char *store_pg_lc(const char *s);

/* A pooled connection for this call; give it back with store_pg_conn_put. */
int store_pg_conn_get(struct store_pg *st, struct store_pg_conn **out);
void store_pg_conn_put(struct store_pg *st, struct store_pg_conn *c);
/*
 * Runs sql, a pg_try_advisory_lock* call with p's values (p is cleared), every
 * 100 ms until it gives true or wait_ms has passed: *got says which. 0 or -EIO.
 */
int store_pg_lock_wait(PGconn *c, const char *what, const char *sql, struct store_pg_params *p,
		       int64_t wait_ms, bool *got);
/*
 * One statement on a pooled connection (text results): *out gets its result.
 * p (may be NULL) is cleared. 0, -EIO, or store_pg_conn_get's error.
 */
int store_pg_query(struct store_pg *st, const char *what, const char *sql,
		   struct store_pg_params *p, PGresult **out);
/* Starts a read of several statements that sees one snapshot. */
int store_pg_read_begin(PGconn *c);

/* store_pg_pvo.c: PVO memberships, inside the caller's transaction. */
/* The id of the message m repeats (same origin gateway and id) into id_out[37], ""
 * when none (serialized on the origin). 0 or -EIO. */
int store_pg_pvo_existing(PGconn *c, const struct store_new_message *m, char *id_out);
/*
 * The memberships of the messages of one transaction, gathered to be written in
 * one statement: store_pg_pvo_add for each message, store_pg_pvo_flush before the
 * commit, store_pg_pvo_rows_clear in any case.
 */
#define STORE_PG_PVO_COLUMNS 8
struct store_pg_pvo_rows {
	char **col[STORE_PG_PVO_COLUMNS]; /* owned strings, n of each */
	size_t n, cap;
};
/* Adds m's memberships for message id. 0 or -EINVAL (a bad quarantine name). */
int store_pg_pvo_add(struct store_pg_pvo_rows *w, const struct store_new_message *m,
		     const char *id);
/* The message id of an earlier membership in w with m's origin, or NULL. */
const char *store_pg_pvo_rows_origin(const struct store_pg_pvo_rows *w,
				     const struct store_new_message *m);
/* Writes w's memberships (quarantines created as needed) and empties w. 0 or -EIO. */
int store_pg_pvo_flush(struct store_pg_conn *wc, struct store_pg_pvo_rows *w);
void store_pg_pvo_rows_clear(struct store_pg_pvo_rows *w);
/* Fills the memberships of the PVO messages among v[0..n). 0 or -EIO. */
int store_pg_pvo_load(PGconn *c, struct store_message **v, size_t n);
int store_pg_quarantine_put(struct store *s, const struct store_quarantine_settings *q, bool create,
			    int64_t now);
int store_pg_quarantine_delete(struct store *s, const char *name);
int store_pg_operator_quarantines(struct store *s, const char *username, char ***out, size_t *n);
/* Fills the operators of v[0..n). 0 or -EIO. */
int store_pg_pvo_operators(PGconn *c, struct store_quarantine_stats *v, size_t n);
int store_pg_expire_memberships(struct store *s, int64_t now, size_t batch, uint64_t *expired,
				uint64_t *purged);
/*
 * The one place a membership changes by an action (store.h "Actions on one
 * membership"), inside the caller's transaction (it locks the message's
 * memberships first): store_pvo_act, the bulk, and any other writer (a capacity
 * sweep applying a quarantine's default_action) call it. Same results as
 * store_pvo_act; out must not be NULL.
 */
int store_pg_pvo_apply(PGconn *c, const char *id, const struct store_pvo_request *r, int64_t now,
		       struct store_pvo_outcome *out);
/* store_pg_capacity.c: the PVO quarantines' capacity (store.h). */
int store_pg_pvo_usage(struct store *s, struct store_pvo_usage *out);
int store_pg_pvo_overflow(struct store *s, uint64_t max_bytes, size_t batch, int64_t now,
			  struct store_pvo_overflow *out);
/* The pvo_act_batch of store_backend.h: b in one transaction. */
struct store_pvo_batch;
int store_pg_pvo_act_batch(struct store *s, struct store_pvo_batch *b);
int store_pg_pvo_copy(struct store *s, const char *id, const char *const *to, size_t n,
		      int64_t now);
/* Up to limit ids matching f after cursor, newest first (bulk actions page with it). */
int store_pg_list_ids(struct store *s, const struct store_filter *f, const char *cursor,
		      size_t limit, char ***out, size_t *n);

typedef int (*store_pg_tx_fn)(struct store_pg *st, PGconn *c, void *arg);
/*
 * Runs fn in one transaction on a pooled connection: committed when fn returns >= 0
 * (fn's result is returned), rolled back otherwise; run again after a deadlock or
 * serialization failure. -EIO when the commit failed.
 */
int store_pg_tx(struct store_pg *st, store_pg_tx_fn fn, void *arg);

/*
 * Key of the advisory lock that orders message numbers with commits: every
 * transaction that inserts messages holds it shared until it commits, and
 * store_pg_digest_max_seq takes it exclusively (store_pg_digest.c).
 */
#define STORE_PG_INGEST_LOCK "7809657787786818611" /* 0x6c617a6172657433, "lazaret3" */

/* store_pg_cluster.c: nodes, cluster-wide jobs, shared secrets. */
struct store_pg_cluster;
struct store_pg_cluster *store_pg_cluster_of(struct store_pg *st);
/*
 * Takes the lock of node name node for c's session, waiting up to wait_ms for a
 * session that is ending: 0, -EBUSY (logged: store.node_in_use), -EIO.
 */
int store_pg_node_lock(PGconn *c, const char *node, int64_t wait_ms);
/* Records node in nodes and starts refreshing it (not when exclusive). */
int store_pg_cluster_open(struct store_pg *st, const char *node, bool exclusive,
			  struct store_pg_cluster **out);
void store_pg_cluster_close(struct store_pg_cluster *cl);
const char *store_pg_node_name(struct store *st);
int store_pg_nodes(struct store *st, int64_t since, struct store_node **out, size_t *n);
int store_pg_job_try(struct store *st, const char *name, bool *held);
void store_pg_job_done(struct store *st, const char *name);
int store_pg_secret_get(struct store *st, const char *name, unsigned char *out, size_t len);
int store_pg_secret_add(struct store *st, const char *name, const unsigned char *value, size_t len,
			unsigned char *out);

/* store.h, as store_pg_users.c implements it (store_pg_ops). */
int store_pg_user_add(struct store *st, const struct store_user *u);
int store_pg_user_get(struct store *st, const char *username, struct store_user **out);
int store_pg_user_list(struct store *st, struct store_user ***out, size_t *n);
int store_pg_user_count(struct store *st, uint64_t *count);
int store_pg_user_delete(struct store *st, const char *username);
int store_pg_user_set_prefs(struct store *st, const char *username, const char *language,
			    const char *time_zone);
int store_pg_user_set_last_login(struct store *st, const char *username, int64_t at);
int store_pg_session_add(struct store *st, const char *token_hash, const struct store_session *s);
int store_pg_session_get(struct store *st, const char *token_hash, struct store_session **out);
int store_pg_session_touch(struct store *st, const char *token_hash, int64_t expires_at);
int store_pg_session_delete(struct store *st, const char *token_hash);
int store_pg_session_purge(struct store *st, int64_t now, int64_t created_before, uint64_t *purged);
struct store_totp_change;
int store_pg_totp_get(struct store *st, const char *username, struct store_totp **out);
int store_pg_totp_change(struct store *st, const struct store_totp_change *ch);
int store_pg_audit_add(struct store *st, const struct store_audit *a);
int store_pg_audit_list(struct store *st, size_t limit, int64_t before_seq,
			struct store_audit ***out, size_t *n);

/* store.h, as store_pg_slbl.c and store_pg_digest.c implement it. */
int store_pg_slbl_get(struct store *st, const char *recipient, struct store_slbl **out);
int store_pg_slbl_put(struct store *st, const struct store_slbl_clean *c, int64_t *version);
int store_pg_slbl_changes(struct store *st, int64_t since, size_t limit, struct store_slbl ***out,
			  size_t *n, int64_t *version);
int store_pg_digest_user_by_address(struct store *st, const char *address,
				    struct store_digest_user **out);
int store_pg_digest_user_by_name(struct store *st, const char *username,
				 struct store_digest_user **out);
int store_pg_digest_max_seq(struct store *st, int64_t *out);
int store_pg_digest_candidates(struct store *st, const char *q, int64_t after, int64_t upto,
			       char ***out, size_t *n);
int store_pg_digest_entries(struct store *st, const char *q, const char *address, int64_t after,
			    int64_t upto, size_t limit, struct store_digest_entry **out, size_t *n,
			    size_t *total);
int store_pg_digest_state_get(struct store *st, const char *address, int64_t *last_seq,
			      int64_t *last_sent_at);
int store_pg_digest_state_put(struct store *st, const char *const *addresses, size_t n,
			      int64_t last_seq, int64_t sent_at);
int store_pg_digest_token_used(struct store *st, const char *nonce, bool *used);
int store_pg_digest_token_use(struct store *st, const char *nonce, int64_t now, int64_t expires_at);

/*
 * Tests only: later store_pg_open calls migrate no further than version (0: to
 * the newest), so that a test can build a database of an older schema.
 */
void store_pg_debug_migrate_to(int version);

/* Days of message partitions kept ready after today (store_pg_partition.c). */
#define STORE_PG_PARTITION_AHEAD_DAYS 7
/*
 * Creates the missing daily partitions of the message tables for every UTC day
 * from from_ms to to_ms (autocommit, or inside the caller's transaction);
 * *created (may be NULL) gets the number of tables made. 0 or -EIO.
 */
int store_pg_partitions_ensure(PGconn *c, int64_t from_ms, int64_t to_ms, int *created);
/* store_maintain: the days ahead of now, and the rows left in DEFAULT partitions. */
int store_pg_maintain(struct store *st, int64_t now, uint64_t *stray);
/*
 * Expires and purges whole days that ended before cutoff and hold nothing still
 * needed, each day in one transaction; adds to *expired the recipients that were
 * still quarantined and to *purged the messages. 0 or -EIO (days dropped before
 * the failure are counted).
 */
int store_pg_partitions_expire(struct store_pg *st, const char *quarantine, int64_t cutoff,
			       uint64_t *expired, uint64_t *purged);

/* store_pg_gateways.c */
int store_pg_gateway_add(struct store *st, const struct store_gateway *g);
int store_pg_gateway_list(struct store *st, struct store_gateway ***out, size_t *n);
int store_pg_gateway_get(struct store *st, const char *name, struct store_gateway **out);
int store_pg_gateway_get_by_address(struct store *st, const char *address,
				    struct store_gateway **out);
int store_pg_gateway_get_by_token_hash(struct store *st, const char *token_hash,
				       struct store_gateway **out);
int store_pg_gateway_remove(struct store *st, const char *name);
int store_pg_gateway_touch(struct store *st, const char *name, int64_t now, const char *version);
/* store_pg_levels.c */
int store_pg_gateway_set_central(struct store *st, const char *name, unsigned central);
int store_pg_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
				 struct store_migration *busy);
int store_pg_gateway_migration_report(struct store *st, const char *name,
				      const struct store_migration *r, const char *notify,
				      int64_t now, struct store_migration *out, bool *first_done);
int store_pg_notice_due(struct store *st, int64_t now, size_t limit,
			struct store_migration_notice **out, size_t *n);
int store_pg_notice_set(struct store *st, int64_t id, int64_t old_next, int tries, int64_t next,
			bool sent, int64_t last_try, const char *reply);
int store_pg_gateway_outbreak_version(struct store *st, const char *name, const char *version,
				      int64_t now, bool *changed);
int store_pg_gateway_set_levels(struct store *st, const char *name, const char *group,
				const char *cluster);
int store_pg_level_list(struct store *st, struct store_level **out, size_t *n);
int store_pg_level_put(struct store *st, const struct store_level *l);
int store_pg_sched_add(struct store *st, const struct store_report_schedule *s, int64_t *id);
int store_pg_sched_list(struct store *st, struct store_report_schedule **out, size_t *n);
int store_pg_sched_delete(struct store *st, int64_t id);
int store_pg_sched_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
			 int64_t now);
int store_pg_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id);
int store_pg_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			  size_t *n);
int store_pg_archive_get(struct store *st, int64_t id, struct store_report_archived *out);
int store_pg_sched_update(struct store *st, const struct store_report_schedule *s);
int store_pg_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
			     const struct store_rollup_in *v, size_t n, bool done, int64_t now,
			     size_t *stored);
int store_pg_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at);
int store_pg_report_export(struct store *st, int gran, int64_t before,
			   const struct store_rollup_row *after, size_t limit,
			   struct store_rollup_row **out, size_t *n);
int store_pg_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed);
int store_pg_archive_mail_due(struct store *st, int64_t now, size_t limit,
			      struct store_report_archived **out, size_t *n);
int store_pg_archive_mail_set(struct store *st, int64_t id, int64_t old_next, const char *pending,
			      int tries, int64_t next);
/* Binds len bytes of data as bytea, borrowed; returns its number ($n). */
int store_pg_bytes(struct store_pg_params *p, const void *data, size_t len);
int store_pg_gateway_pending_put(struct store *st, const struct store_gateway *g,
				 size_t max_pending, int64_t now);

/*
 * Hands each row k of r whose first column is the id of one of v[0..n) to
 * add(that message, r, k), in r's order: children (recipients, memberships)
 * loaded for a page of messages in one query.
 */
void store_pg_rows_to_messages(PGresult *r, struct store_message **v, size_t n,
			       void (*add)(struct store_message *m, PGresult *r, int k));

/* store_pg_events.c */
int store_pg_events_put(struct store *st, const char *gateway, const struct store_event *v,
			size_t n, int64_t backlog, int64_t now, bool own, uint64_t *stored);
int store_pg_report_read(struct store *st, const struct store_report_query *q,
			 struct store_report_row **out, size_t *n);
int store_pg_report_scan(struct store *st, int report, const char *gateway,
			 const struct store_report_span *v, size_t n, store_report_row_fn row,
			 void *arg);
int store_pg_report_purge(struct store *st, int gran, int64_t before, size_t batch, uint64_t *rows);
/* system_capacity: the capacity samples among v[0..n) into their hours */
int store_pg_capacity_write(PGconn *c, const char *gateway, const struct store_event *const *v,
			    size_t n);
int store_pg_capacity_read(struct store *st, const char *gateway, int64_t since, int64_t until,
			   struct store_capacity_row **out, size_t *n);
int store_pg_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows);
/* store_report_fetch_fn and _write_fn in a transaction (ctx: its PGconn) */
int store_pg_report_fetch(void *ctx, const char *gateway, const char *const *ids, size_t n,
			  int64_t since, struct store_event_row **out, size_t *nout);
struct store_report_acc;
int store_pg_report_write(void *ctx, const char *gateway, const struct store_report_acc *a);
int store_pg_event_states(struct store *st, struct store_event_state **out, size_t *n);
int store_pg_events_list(struct store *st, const char *gateway, const char *msg_id,
			 int64_t after_seq, size_t limit, struct store_event_row **out, size_t *n);
/* The rows of r (gateway, seq, at, type, msg_id, detail) as new event rows;
 * clears r. */
void store_pg_event_rows(PGresult *r, struct store_event_row **out, size_t *n);
int store_pg_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
				 struct store_tracked_message **out);
int store_pg_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
			    uint64_t *messages);
int store_pg_tracking_drop_days(struct store *st, int64_t before, uint64_t *events,
				uint64_t *messages);

/* store_pg_tracking.c */
struct store_track_sql;
struct store_track_key;
int store_pg_tracked_search(struct store *st, const struct store_track_sql *q,
			    struct store_track_key **out, size_t *n);
int store_pg_tracked_session_events(struct store *st, const char *gateway, const char *msg_id,
				    int64_t from, int64_t to, struct store_event_row **out,
				    size_t *n);

#endif
