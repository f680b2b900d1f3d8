/*
 * store_backend — what store.c dispatches through: one table of functions per
 * backend (SQLite, PostgreSQL), in store.h's order and with store.h's contracts.
 * Only store.c and the backends include it; everyone else goes through store.h.
 *
 * A backend's state struct begins with a struct store_head (its ops table), so
 * that store.c can find the table behind any struct store *. A NULL entry is a
 * function the backend does not have yet: store.c answers -ENOSYS for it, and
 * store_backend_missing() names it so that lazaretd refuses such a backend.
 */
#ifndef LAZARET_STORE_BACKEND_H
#define LAZARET_STORE_BACKEND_H

#include "store/store.h"

/* zstd level for bodies: level 3 is zstd's default, fast with a good ratio on mail. */
#define STORE_ZSTD_LEVEL 3
/* The largest body a backend will decompress (a corrupt frame header must not
 * make us allocate gigabytes). */
#define STORE_BODY_MAX ((uint64_t)1 << 31)

/*
 * The calling thread's read deadline (clock_mono_ms; 0: none), set by
 * store_read_deadline_set; and whether a backend cut off one of the current
 * call's statements for it (store.c then answers -ETIMEDOUT for the call).
 */
extern _Thread_local int64_t store_read_deadline_ms;
extern _Thread_local bool store_read_timed_out;
/* store_read_replica_set's flag for the calling thread. */
extern _Thread_local bool store_read_replica_ok;
/*
 * Set by a backend when the calling thread's current call could not reach the
 * database or lost its connection (store_error_unavailable reads it); a backend
 * clears it when a call takes its connection.
 */
extern _Thread_local bool store_conn_lost;

/*
 * One recipient's lists as store_slbl_put hands them to a backend: recipient
 * normalized, entries normalized, deduplicated and within max_entries (store.c
 * checks, so that both backends refuse the same input the same way).
 */
struct store_slbl_clean {
	const char *recipient;
	char **lists[2]; /* [0] safelist, [1] blocklist */
	size_t nlists[2];
};

/* A change to an account's second factor (store_totp_*), for a backend. */
enum store_totp_op {
	STORE_TOTP_BEGIN,
	STORE_TOTP_CONFIRM,
	STORE_TOTP_USE_STEP,
	STORE_TOTP_USE_RECOVERY,
	STORE_TOTP_DELETE,
};
struct store_totp_change {
	enum store_totp_op op;
	const char *username;
	const char *secret;	   /* BEGIN */
	int64_t step;		   /* CONFIRM, USE_STEP */
	int64_t now;		   /* BEGIN, CONFIRM, USE_RECOVERY */
	const char *const *hashes; /* CONFIRM */
	size_t nhashes;		   /* CONFIRM */
	const char *hash;	   /* USE_RECOVERY */
};

/* One page of PVO actions (store_pvo_act, store_pvo_act_matching) for a backend. */
struct store_pvo_batch {
	const char *const *ids;
	size_t nids;
	const struct store_pvo_request *r;
	int64_t now;
	bool bulk; /* skip what cannot change instead of failing */
	struct store_pvo_outcome out;
	uint64_t changed, queued; /* this page's */
};
/* A backend's action on one membership inside its transaction (conn: its handle). */
typedef int (*store_pvo_apply_fn)(void *conn, const char *id, const struct store_pvo_request *r,
				  int64_t now, struct store_pvo_outcome *out);
/*
 * The end of a backend's look-up of a PVO quarantine's type for an action: rc is
 * the look-up's (0 with type, new, or -ENOENT, or an error). Frees type; 0 with
 * *policy whether it is a policy quarantine, -ENODEV when there is no such PVO
 * quarantine, or the error. store.c.
 */
int store_pvo_type_policy(int rc, char *type, bool *policy);
/* Runs b over b->ids with apply, counting what changed and queued. store.c. */
int store_pvo_batch_apply(struct store_pvo_batch *b, store_pvo_apply_fn apply, void *conn);

struct store_track_sql; /* store_tracking_int.h */
struct store_track_key;

/* Buckets of granularity gran with since <= start < until. */
struct store_report_span {
	int gran;
	int64_t since, until;
};
/*
 * The spans a top-N read of q scans (store_report.c): q's range as is, or, by
 * the day, its whole months by the month and the days at either end by the day
 * (a month's rows are the sums of its days'). How many (0 to 3).
 */
size_t store_report_spans(const struct store_report_query *q, struct store_report_span v[3]);
/*
 * The buckets a backfilled row of gran starting at bucket is added to
 * (store_report.c): its own, then each coarser one that did not end by cutoff
 * (the gateway sends none of those: the row's part of it is added there, so a
 * month's row stays the sum of its days' and a day's of its hours'). Into
 * gv/bv, how many (1 to STORE_REPORT_NGRANS).
 */
size_t store_report_backfill_buckets(int gran, int64_t bucket, int64_t cutoff,
				     int gv[STORE_REPORT_NGRANS], int64_t bv[STORE_REPORT_NGRANS]);
/* One rollup row of a scan: its key and counters. */
typedef void (*store_report_row_fn)(void *arg, const char *key,
				    const int64_t c[STORE_REPORT_NCOUNTERS]);

struct store_ops {
	void (*close)(struct store *st);
	int (*submit_message)(struct store *st, struct store_new_message *m, store_done_fn done,
			      void *arg);
	int (*list)(struct store *st, const struct store_filter *f, size_t limit,
		    const char *cursor, struct store_message ***out, size_t *n, char **next_cursor);
	int (*get)(struct store *st, const char *id, struct store_message **out);
	int (*get_raw)(struct store *st, const char *id, unsigned char **raw, size_t *len);
	int (*quarantines)(struct store *st, struct store_quarantine_stats **out, size_t *n);
	int (*release)(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		       int64_t now, int *changed);
	int (*delete)(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		      int64_t now, int *changed);
	int (*release_matching)(struct store *st, const struct store_filter *f, int64_t now,
				int *changed);
	int (*delete_matching)(struct store *st, const struct store_filter *f, int64_t now,
			       int *changed);
	int (*delivery_claim)(struct store *st, int64_t now, int64_t lease_ms,
			      struct store_delivery **out);
	int (*delivery_finish)(struct store *st, const struct store_delivery *d,
			       const struct store_delivery_result *results, size_t nresults,
			       int64_t now, int64_t retry_at);
	int (*delivery_confirm)(struct store *st, const struct store_delivery *d,
				const struct store_delivery_result *results, size_t nresults,
				int64_t now, const struct store_rescan_verdict *rescan);
	int (*delivery_reset_leases)(struct store *st, int64_t now);
	int (*delivery_pending)(struct store *st, uint64_t *count);
	int (*delivery_next_due)(struct store *st, int64_t *when);
	int (*expire)(struct store *st, const char *quarantine, int64_t cutoff, int64_t now,
		      size_t batch, uint64_t *expired, uint64_t *purged);
	int (*expire_memberships)(struct store *st, int64_t now, size_t batch, uint64_t *expired,
				  uint64_t *purged);
	int (*quarantine_put)(struct store *st, const struct store_quarantine_settings *q,
			      bool create, int64_t now);
	int (*quarantine_delete)(struct store *st, const char *name);
	int (*operator_quarantines)(struct store *st, const char *username, char ***out, size_t *n);
	/*
	 * store_pvo_act and store_pvo_act_matching (store.c pages): runs b in one
	 * transaction, store_pvo_batch_apply with the backend's action.
	 */
	int (*pvo_act_batch)(struct store *st, struct store_pvo_batch *b);
	/* Up to limit ids matching f after cursor, newest first (bulk actions page with it). */
	int (*list_ids)(struct store *st, const struct store_filter *f, const char *cursor,
			size_t limit, char ***out, size_t *n);
	int (*pvo_copy)(struct store *st, const char *id, const char *const *to, size_t n,
			int64_t now);
	int (*pvo_usage)(struct store *st, struct store_pvo_usage *out);
	int (*pvo_overflow)(struct store *st, uint64_t max_bytes, size_t batch, int64_t now,
			    struct store_pvo_overflow *out);
	int (*purge)(struct store *st, size_t batch, uint64_t *purged);
	/* NULL: the backend keeps no time partitions (store_maintain does nothing) */
	int (*maintain)(struct store *st, int64_t now, uint64_t *stray);
	int (*stats)(struct store *st, struct store_stats *out);
	void (*debug_counters)(struct store *st, struct store_debug_counters *out);
	/* Optional (NULL: always available, as SQLite). */
	void (*status)(struct store *st, struct store_status *out);
	int (*debug_list_plan)(struct store *st, const struct store_filter *f, const char *cursor,
			       char **plan);
	int (*slbl_get)(struct store *st, const char *recipient, struct store_slbl **out);
	int (*slbl_put)(struct store *st, const struct store_slbl_clean *c, int64_t *version);
	int (*slbl_changes)(struct store *st, int64_t since, size_t limit, struct store_slbl ***out,
			    size_t *n, int64_t *version);
	int (*user_add)(struct store *st, const struct store_user *u);
	int (*user_get)(struct store *st, const char *username, struct store_user **out);
	int (*user_list)(struct store *st, struct store_user ***out, size_t *n);
	int (*user_count)(struct store *st, uint64_t *count);
	int (*user_delete)(struct store *st, const char *username);
	int (*user_set_prefs)(struct store *st, const char *username, const char *language,
			      const char *time_zone);
	int (*user_set_last_login)(struct store *st, const char *username, int64_t at);
	int (*session_add)(struct store *st, const char *token_hash, const struct store_session *s);
	int (*session_get)(struct store *st, const char *token_hash, struct store_session **out);
	int (*session_touch)(struct store *st, const char *token_hash, int64_t expires_at);
	int (*session_delete)(struct store *st, const char *token_hash);
	int (*session_purge)(struct store *st, int64_t now, int64_t created_before,
			     uint64_t *purged);
	int (*totp_get)(struct store *st, const char *username, struct store_totp **out);
	int (*totp_change)(struct store *st, const struct store_totp_change *ch);
	int (*audit_add)(struct store *st, const struct store_audit *a);
	int (*audit_list)(struct store *st, size_t limit, int64_t before_seq,
			  struct store_audit ***out, size_t *n);
	int (*digest_user_by_address)(struct store *st, const char *address,
				      struct store_digest_user **out);
	int (*digest_user_by_name)(struct store *st, const char *username,
				   struct store_digest_user **out);
	int (*digest_max_seq)(struct store *st, int64_t *out);
	int (*digest_candidates)(struct store *st, const char *q, int64_t after, int64_t upto,
				 char ***out, size_t *n);
	int (*digest_entries)(struct store *st, const char *q, const char *address, int64_t after,
			      int64_t upto, size_t limit, struct store_digest_entry **out,
			      size_t *n, size_t *total);
	int (*digest_state_get)(struct store *st, const char *address, int64_t *last_seq,
				int64_t *last_sent_at);
	int (*digest_state_put)(struct store *st, const char *const *addresses, size_t n,
				int64_t last_seq, int64_t sent_at);
	int (*digest_token_used)(struct store *st, const char *nonce, bool *used);
	int (*digest_token_use)(struct store *st, const char *nonce, int64_t now,
				int64_t expires_at);
	int (*nodes)(struct store *st, int64_t since, struct store_node **out, size_t *n);
	const char *(*node_name)(struct store *st);
	int (*job_try)(struct store *st, const char *name, bool *held);
	void (*job_done)(struct store *st, const char *name);
	int (*secret_get)(struct store *st, const char *name, unsigned char *out, size_t len);
	int (*secret_add)(struct store *st, const char *name, const unsigned char *value,
			  size_t len, unsigned char *out);
	int (*snapshot)(struct store *st, const char *path);
	int (*gateway_add)(struct store *st, const struct store_gateway *g);
	int (*gateway_list)(struct store *st, struct store_gateway ***out, size_t *n);
	int (*gateway_get)(struct store *st, const char *name, struct store_gateway **out);
	int (*gateway_get_by_address)(struct store *st, const char *address,
				      struct store_gateway **out);
	int (*gateway_get_by_token_hash)(struct store *st, const char *token_hash,
					 struct store_gateway **out);
	int (*gateway_remove)(struct store *st, const char *name);
	int (*gateway_touch)(struct store *st, const char *name, int64_t now, const char *version);
	int (*gateway_pending_put)(struct store *st, const struct store_gateway *g,
				   size_t max_pending, int64_t now);
	int (*gateway_set_central)(struct store *st, const char *name, unsigned central);
	int (*gateway_outbreak_version)(struct store *st, const char *name, const char *version,
					int64_t now, bool *changed);
	int (*gateway_set_levels)(struct store *st, const char *name, const char *group,
				  const char *cluster);
	int (*gateway_set_mapping)(struct store *st, const char *name, const char *mapping,
				   struct store_migration *busy);
	int (*gateway_migration_report)(struct store *st, const char *name,
					const struct store_migration *r, const char *notify,
					int64_t now, struct store_migration *out, bool *first_done);
	int (*notice_due)(struct store *st, int64_t now, size_t limit,
			  struct store_migration_notice **out, size_t *n);
	int (*notice_set)(struct store *st, int64_t id, int64_t old_next, int tries, int64_t next,
			  bool sent, int64_t last_try, const char *reply);
	int (*level_list)(struct store *st, struct store_level **out, size_t *n);
	int (*level_put)(struct store *st, const struct store_level *l);
	int (*sched_add)(struct store *st, const struct store_report_schedule *s, int64_t *id);
	int (*sched_list)(struct store *st, struct store_report_schedule **out, size_t *n);
	int (*sched_delete)(struct store *st, int64_t id);
	int (*sched_claim)(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
			   int64_t now);
	int (*archive_add)(struct store *st, const struct store_report_archived *a, int64_t *id);
	int (*archive_list)(struct store *st, size_t limit, struct store_report_archived **out,
			    size_t *n);
	int (*archive_get)(struct store *st, int64_t id, struct store_report_archived *out);
	int (*sched_update)(struct store *st, const struct store_report_schedule *s);
	int (*report_backfill)(struct store *st, const char *gateway, int64_t cutoff,
			       const struct store_rollup_in *v, size_t n, bool done, int64_t now,
			       size_t *stored);
	int (*report_backfill_state)(struct store *st, const char *gateway, int64_t *done_at);
	int (*report_export)(struct store *st, int gran, int64_t before,
			     const struct store_rollup_row *after, size_t limit,
			     struct store_rollup_row **out, size_t *n);
	int (*archive_purge)(struct store *st, int64_t before, size_t limit, size_t *removed);
	int (*archive_mail_due)(struct store *st, int64_t now, size_t limit,
				struct store_report_archived **out, size_t *n);
	int (*archive_mail_set)(struct store *st, int64_t id, int64_t old_next, const char *pending,
				int tries, int64_t next);
	/* own: number the events on from the gateway's last seq (store_events_put_own) */
	int (*events_put)(struct store *st, const char *gateway, const struct store_event *v,
			  size_t n, int64_t backlog, int64_t now, bool own, uint64_t *stored);
	int (*event_states)(struct store *st, struct store_event_state **out, size_t *n);
	int (*events_list)(struct store *st, const char *gateway, const char *msg_id,
			   int64_t after_seq, size_t limit, struct store_event_row **out,
			   size_t *n);
	int (*tracked_message_get)(struct store *st, const char *gateway, const char *msg_id,
				   struct store_tracked_message **out);
	/* the keys of a search page: q from store_tracking.c (store_tracking_int.h) */
	int (*tracked_search)(struct store *st, const struct store_track_sql *q,
			      struct store_track_key **out, size_t *n);
	/* the "connection" events of the session of (gateway, msg_id)'s "received"
	 * event, and its "rcpt_refused" events since the session's previous
	 * "received" (this message's transaction), with from <= at <= to, at most
	 * STORE_TRACK_SESSION_EVENTS */
	int (*tracked_session_events)(struct store *st, const char *gateway, const char *msg_id,
				      int64_t from, int64_t to, struct store_event_row **out,
				      size_t *n);
	int (*tracking_drop_days)(struct store *st, int64_t before, uint64_t *events,
				  uint64_t *messages);
	int (*tracking_purge)(struct store *st, int64_t before, size_t batch, uint64_t *events,
			      uint64_t *messages);
	int (*report_read)(struct store *st, const struct store_report_query *q,
			   struct store_report_row **out, size_t *n);
	int (*report_purge)(struct store *st, int gran, int64_t before, size_t batch,
			    uint64_t *rows);
	/* the hourly capacity rows of gateway (NULL: all gateways summed) */
	int (*capacity_read)(struct store *st, const char *gateway, int64_t since, int64_t until,
			     struct store_capacity_row **out, size_t *n);
	int (*capacity_purge)(struct store *st, int64_t before, size_t batch, uint64_t *rows);
	/* the rollup rows of report for gateway (NULL: the all-gateway totals) in
	 * the spans v[0..n), one call of row each, on one connection */
	int (*report_scan)(struct store *st, int report, const char *gateway,
			   const struct store_report_span *v, size_t n, store_report_row_fn row,
			   void *arg);
};

/*
 * Reporting rollups at ingest (store_report.c): the deltas of a batch, sorted by
 * (report, gran, bucket, key) and merged, which a backend adds to its rows.
 */
struct store_report_delta {
	int report, gran;
	int64_t bucket;
	char *key;
	int64_t c[STORE_REPORT_NCOUNTERS];
};
struct store_report_acc {
	struct store_report_delta *v;
	size_t n, cap;
};
void store_report_acc_free(struct store_report_acc *a);
/* The events of gateway's messages ids[0..n) with at >= since, by msg_id then seq. */
typedef int (*store_report_fetch_fn)(void *ctx, const char *gateway, const char *const *ids,
				     size_t n, int64_t since, struct store_event_row **out,
				     size_t *nout);
/* Adds a's deltas to gateway's rollup rows. */
typedef int (*store_report_write_fn)(void *ctx, const char *gateway,
				     const struct store_report_acc *a);
/*
 * What the newly stored events fresh[0..n) of gateway (seq order) add to the
 * rollups, read and written through the backend's fetch and write in its
 * transaction (ctx). 0 or the first error.
 */
int store_report_ingest(const char *gateway, const struct store_event *const *fresh, size_t n,
			store_report_fetch_fn fetch, store_report_write_fn write, void *ctx);

/* The first member of every backend's struct store. */
struct store_head {
	const struct store_ops *ops;
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

/*
 * The node name of opt (store_options.node_name, else the host name) into buf.
 * 0, or -EINVAL when it is not a usable name. store.c.
 */
int store_node_name_of(const struct store_options *opt, char buf[STORE_NODE_NAME_MAX + 1]);

int store_sqlite_open(const struct store_options *opt, struct store **out);
int store_pg_open(const struct store_options *opt, struct store **out);

/*
 * Decodes a stored body (codec "zstd" or "none") of the original size into a new
 * buffer *out (the caller frees it). id names the message in the log. 0 or -EIO
 * (corrupt: logged).
 */
int store_body_unpack(const char *id, const char *codec, const void *data, size_t dlen,
		      uint64_t size, unsigned char **out);

/*
 * Normalized (store_slbl_normalize), deduplicated copies of in[0..n), the first
 * occurrence kept: *out is new (free each, then the array). -EINVAL when one is
 * malformed (nothing is returned then). store_slbl.c.
 */
int store_slbl_clean_list(char *const *in, size_t n, char ***out, size_t *nout);

/*
 * Checks f's lists against their limits and its state name, for both backends'
 * filter SQL: 0 with *state the recipient state to filter on (-1: none), or
 * -EINVAL. f must not be NULL.
 */
int store_filter_check(const struct store_filter *f, int *state);

/* A backend's reader of up to limit ids matching f after cursor, newest first. */
typedef int (*store_list_ids_fn)(struct store *st, const struct store_filter *f, const char *cursor,
				 size_t limit, char ***out, size_t *n);
/* Acts on one page of ids in one transaction of the backend. 0 or -errno. */
typedef int (*store_page_fn)(struct store *st, const char *const *ids, size_t n, void *arg);

/*
 * Bulk actions: pages through the ids matching f (batch a page), handing each
 * non-empty page to act, so that each page is its own transaction (ingest commits
 * in between, row locks are held briefly). Stops at the first error: its -errno,
 * else 0. store.c.
 */
int store_each_id_page(struct store *st, const struct store_filter *f, size_t batch,
		       store_list_ids_fn list, store_page_fn act, void *arg);

/*
 * Bulk release/delete: the recipients a caller may touch for filter f into
 * *scope, *nscope (NULL, 0: all of them; one is storage for a single one). false
 * when f names a recipient outside its own addresses (nothing can change). store.c.
 */
bool store_change_scope(const struct store_filter *f, const char *one[1], const char *const **scope,
			size_t *nscope);

/*
 * What a migration report r makes of the stored migration cur (store.h
 * store_gateway_migration_report) into *next: false when nothing changes.
 */
bool store_migration_next(const struct store_migration *cur, const struct store_migration *r,
			  int64_t now, struct store_migration *next, bool *first_done);

#endif
