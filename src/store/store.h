/*
 * store — the only way into quarantine storage (manager and gateway alike).
 *
 * A quarantined message is one row of metadata plus its original bytes (zstd-
 * compressed), and one row per recipient with its own state. A message leaves
 * the store (is purged) once no recipient needs it any more.
 *
 * Recipient states and who moves them:
 *
 *   quarantined --store_release*--> releasing --store_delivery_finish(2xx)--> released
 *   quarantined --store_delete*----> deleted       releasing --finish(5xx)--> failed
 *   quarantined --store_expire-----> expired       releasing --finish(4xx/no conn)--> releasing
 *                                                  (retried at the time finish was given)
 *   released/releasing are never released again (exactly-once from the user's view);
 *   deleted/expired/failed are final.
 *
 * Threads: store_submit_message() is asynchronous: a single writer thread batches
 * many messages into one transaction (group commit) and calls each message's done
 * callback, on the writer thread, after that transaction is durable (WAL,
 * synchronous=FULL). Every other mutating call is synchronous: it runs on the writer
 * thread and the caller blocks until it has committed. Read calls may come from any
 * thread; each thread gets its own read connection. A thread may give its reads a
 * time budget (store_read_deadline_set): a read call still running when it ends
 * stops and returns -ETIMEDOUT.
 *
 * Times are Unix milliseconds. Returns: 0 or a negative errno (-ENOENT unknown id,
 * -EINVAL bad argument, -EIO storage failure, -EAGAIN nothing due, -ETIMEDOUT a
 * read over the calling thread's deadline, -ENOTCONN the database cannot be reached
 * now: PostgreSQL down or restarting, try again later; see store_error_unavailable).
 * Backends: SQLite (the default; store_sqlite*.c) and PostgreSQL (store_pg*.c),
 * chosen by store_options.backend; store.c dispatches (store_backend.h).
 */
#ifndef LAZARET_STORE_H
#define LAZARET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_rcpt_state {
	STORE_RCPT_QUARANTINED = 0,
	STORE_RCPT_RELEASING,
	STORE_RCPT_RELEASED,
	STORE_RCPT_DELETED,
	STORE_RCPT_EXPIRED,
	STORE_RCPT_FAILED,
};

/* "quarantined", "releasing", ... */
const char *store_rcpt_state_name(enum store_rcpt_state s);
/* 0, or -EINVAL for an unknown name. */
int store_rcpt_state_parse(const char *name, enum store_rcpt_state *out);

struct store_options {
	const char *backend;	/* "sqlite" (NULL or "": the default) | "postgresql" */
	const char *dsn;	/* postgresql: the libpq connection string */
	const char *dir;	/* sqlite: data directory; created if missing */
	unsigned batch_max;	/* most messages in one group commit (default 256) */
	unsigned batch_wait_us; /* how long the writer waits to fill a batch (default 0:
				   commit what is there; concurrency fills batches) */
	/*
	 * This process's name among the processes sharing one database (NULL or "":
	 * the host name; at most STORE_NODE_NAME_MAX bytes, printable ASCII). On
	 * PostgreSQL a second open store with the same name is refused (-EBUSY,
	 * log store.node_in_use); delivery leases are recorded under it.
	 */
	const char *node_name;
	/*
	 * PostgreSQL: the only store on the database (lazaret-migrate-store): refused
	 * with -EBUSY (log store.pg_in_use) while any other store has it open, and
	 * any other refused while this one has.
	 */
	bool exclusive;

	/* postgresql, optional: a standby for the reads of threads that allow it
	 * (store_read_replica_set); NULL or "": none */
	const char *read_dsn;
	/* postgresql: how long store_open waits for a server that does not answer
	 * (0: fail at once) */
	int64_t connect_wait_ms;
};

/* The longest node name: a host name (RFC 1035). */
#define STORE_NODE_NAME_MAX 253
/* 0 when name is a usable node name, else -EINVAL. */
int store_node_name_check(const char *name);

struct store;

/*
 * Read deadline of the calling thread (thread-local; other threads are not
 * affected): every read call this thread makes from now on (store_list,
 * store_get, store_get_raw, store_quarantines, store_audit_list, ...) that is
 * still working ms milliseconds after this call stops and returns -ETIMEDOUT,
 * leaving its connection ready for the next call. ms <= 0 clears it (as
 * store_read_deadline_clear). SQLite checks it from a progress handler every
 * few thousand virtual-machine steps; a PostgreSQL backend maps it to
 * SET statement_timeout for the statements of the thread's calls. Mutating
 * calls (the writer thread) never have a deadline: a commit is never cut off.
 */
void store_read_deadline_set(int64_t ms);
void store_read_deadline_clear(void);

/*
 * Whether the calling thread's read calls may be answered from the read replica
 * ([store] read_dsn, PostgreSQL; thread-local, off by default). Only for reads
 * that tolerate the replica's lag: the API's reader threads turn it on around a
 * listing, a detail, a download, an audit page. Mutations, the release engine,
 * digests, sessions and logins never do, so they read their own writes. While
 * the replica cannot be reached such reads go to the primary.
 */
void store_read_replica_set(bool allow);

/*
 * True when rc, the result of the calling thread's last store call, means that
 * the database could not be reached or the connection broke during the call
 * (-ENOTCONN, or -EIO from a connection that was lost): the caller answers "store
 * unavailable, try again later" (SMTP 451 4.3.0, HTTP 503), not an internal error.
 */
bool store_error_unavailable(int rc);

/* Connection state for /healthz and /metrics; filled without any I/O. */
struct store_status {
	bool available;		    /* false while the database cannot be reached */
	int64_t down_since_ms;	    /* Unix ms when it became unreachable (0: up) */
	uint64_t connect_failures;  /* connection attempts that failed */
	bool replica;		    /* a read replica is configured */
	bool replica_available;	    /* false while reads fall back to the primary */
	uint64_t replica_fallbacks; /* reads served by the primary instead */
};
/* SQLite has no connection to lose: always available. */
void store_status(struct store *st, struct store_status *out);

/*
 * What backend still lacks: NULL when every function of this interface is there,
 * else a new string naming the missing functions (the caller frees it). lazaretd
 * refuses to start on an incomplete backend.
 */
char *store_backend_missing(const char *backend);

/* Opens (creating and migrating the schema as needed) and starts the writer thread.
 * -EINVAL for an unknown backend or bad options. */
int store_open(const struct store_options *opt, struct store **out);
/* Finishes every queued write, stops the writer, closes. NULL is a no-op. */
void store_close(struct store *st);

struct store_attachment {
	char *filename; /* UTF-8 or NULL */
	char *content_type;
	uint64_t size;
};

/*
 * One quarantine a PVO message enters (X-Lazaret-Quarantine). quarantine names a
 * policy, virus, outbreak or unclassified quarantine; a policy name the store does
 * not know is created with default settings (logged store.quarantine_created).
 */
struct store_new_membership {
	char *quarantine;
	char *reason;	    /* filter or virus name; NULL: "" */
	int64_t entered_at; /* 0: the message's received_at */
	int64_t expires_at; /* 0: entered_at + the quarantine's delete_after */
};

/* A message to store: built by ingest, owned by the store once submitted. */
struct store_new_message {
	char id[37];	  /* UUIDv7 (common/ids.h), set by the caller */
	char *quarantine; /* "spam" for the external spam quarantine */
	int64_t received_at;
	char *sender;	   /* envelope sender, "" for <> */
	char **recipients; /* envelope recipients */
	size_t nrecipients;
	char *gateway;	      /* gateway name or its address */
	char *client_address; /* original sender IP, or NULL */
	char *verdict;	      /* "spam" | "suspect" */
	bool has_score;
	double score;
	char *from;	 /* decoded, UTF-8, may be NULL */
	char *from_addr; /* bare From: address, may be NULL */
	char *to;
	char *subject;
	char *message_id;
	int64_t date_ms;
	struct store_attachment *attachments;
	size_t nattachments;
	unsigned char *raw; /* original bytes as received */
	size_t raw_len;
	/* private to the store: the compressed body, when prepared ahead */
	void *packed;
	size_t packed_len;
	/*
	 * PVO messages (nmemberships > 0): quarantine must be STORE_PVO_MARKER and the
	 * quarantines the message is in are these memberships. With origin_id set, a
	 * message whose (origin_gateway, origin_id) is in the store already is not
	 * stored again: its missing memberships are added to the stored one, and
	 * stored_as (a caller's buffer of 37 bytes, valid until done runs; may be
	 * NULL) gets the stored message's id. Otherwise stored_as gets id.
	 */
	struct store_new_membership *memberships;
	size_t nmemberships;
	char *origin_gateway; /* the sending gateway's address */
	char *origin_id;      /* X-Lazaret-Origin-Id */
	char *stored_as;
};

/* Frees m and everything it points to. NULL is a no-op. */
void store_new_message_free(struct store_new_message *m);
/*
 * Optional: compresses m->raw now, on the calling thread, so the writer thread
 * does less. Idempotent. 0 or -ENOMEM/-EIO.
 */
int store_new_message_prepare(struct store_new_message *m);

typedef void (*store_done_fn)(void *arg, int rc);
/*
 * Queues m for the next group commit; the store takes ownership of m whatever
 * the result. done(arg, 0) runs on the writer thread once m is durable, or
 * done(arg, -errno) if it could not be stored. Returns 0, or -ESHUTDOWN when the
 * store is closing (then done is never called and m has been freed).
 */
int store_submit_message(struct store *st, struct store_new_message *m, store_done_fn done,
			 void *arg);

struct store_recipient {
	char *address;
	enum store_rcpt_state state;
	char *reply; /* last delivery reply ("550 5.1.1 ...") or NULL */
	int64_t updated_at;
};

struct store_message {
	char id[37];
	char *quarantine;
	int64_t received_at;
	char *sender;
	struct store_recipient *recipients;
	size_t nrecipients;
	char *from;
	char *from_addr;
	char *to;
	char *subject;
	char *message_id;
	int64_t date_ms;
	uint64_t size; /* original size in bytes */
	char *verdict;
	bool has_score;
	double score;
	char *gateway;
	char *client_address;
	struct store_attachment *attachments; /* filled by store_get() only */
	size_t nattachments;
	/* PVO messages: the quarantines it is or was in (store_get and store_list) */
	struct store_membership *memberships;
	size_t nmemberships;
};

void store_message_free(struct store_message *m);
void store_message_array_free(struct store_message **v, size_t n);

/*
 * Ids in one bulk action: store_filter.ids here and "ids" in the API's bulk bodies.
 * Each id is one bound variable of one statement, and one bulk action is one write
 * transaction that holds the writer; a thousand keeps both short.
 */
#define STORE_BULK_MAX_IDS 1000
/*
 * Addresses of one account or session, so also of a listing's end-user scoping
 * (store_filter.addresses): a user must be able to list what their account may see.
 * More is a mistake, not a mailbox.
 */
#define STORE_USER_MAX_ADDRESSES 1000
/* Quarantines of one operator's scoping (store_filter.pvo_quarantines). */
#define STORE_OPERATOR_MAX_QUARANTINES 1000

/* Filters for listing and bulk actions; NULL/0 fields do not filter. */
struct store_filter {
	/*
	 * "spam" (and a gateway's local quarantines): messages stored into it. Any
	 * other name also matches the PVO messages with a membership in it (any state).
	 */
	const char *quarantine;
	const char *recipient; /* exact address, case-insensitive */
	/*
	 * An address ("a@x.jp") matches the envelope sender or the From: address,
	 * case-insensitively; a domain ("x.jp" or "@x.jp") matches either's domain.
	 * Both are indexed.
	 */
	const char *sender;
	const char *subject; /* decoded subject: case-insensitive substring */
	const char *verdict;
	const char *gateway;
	int64_t since;		/* received_at >= since (0: unbounded) */
	int64_t until;		/* received_at < until (0: unbounded) */
	const char *const *ids; /* only these ids (bulk by id; at most STORE_BULK_MAX_IDS) */
	size_t nids;
	/*
	 * When set, only messages with at least one recipient in this state (listing),
	 * and bulk actions touch only recipients in a state they can change.
	 */
	const char *state;
	/*
	 * End-user scoping: only messages with a recipient in this list, and bulk
	 * actions change only those recipients. NULL: no scoping.
	 */
	const char *const *addresses; /* at most STORE_USER_MAX_ADDRESSES */
	size_t naddresses;
	/*
	 * Leaves PVO messages out (the spam quarantine's release and delete, which
	 * would bypass their memberships).
	 */
	bool exclude_pvo;
	/*
	 * Operator scoping (scope_pvo): PVO messages only when one of their
	 * memberships (any state) is in pvo_quarantines; other messages are not
	 * touched. An empty list leaves every PVO message out. false: no scoping.
	 */
	bool scope_pvo;
	const char *const *pvo_quarantines; /* at most STORE_OPERATOR_MAX_QUARANTINES */
	size_t npvo_quarantines;
};

/*
 * Lists messages matching f, newest first, at most limit (1..1000). cursor is
 * NULL or the next_cursor of the previous page (keyset paging, never OFFSET).
 * *out is a new array of *n messages (free with store_message_array_free);
 * *next_cursor is a new string, or NULL on the last page.
 */
int store_list(struct store *st, const struct store_filter *f, size_t limit, const char *cursor,
	       struct store_message ***out, size_t *n, char **next_cursor);

/* One message with its recipients and attachments; -ENOENT when unknown. */
int store_get(struct store *st, const char *id, struct store_message **out);

/* The original bytes (decompressed); *raw is the caller's to free(). -ENOENT when unknown. */
int store_get_raw(struct store *st, const char *id, unsigned char **raw, size_t *len);

struct store_quarantine_stats {
	char *name;
	char *type; /* "spam" | "policy" | "virus" | "outbreak" | "unclassified" */
	/*
	 * spam (and a gateway's local quarantines): messages with a recipient still
	 * quarantined, their original size, the received_at of the oldest. PVO
	 * quarantines: messages held in it (membership state held), their size, the
	 * oldest entered_at. 0 when empty.
	 */
	uint64_t messages;
	uint64_t bytes;
	int64_t oldest;
	/* settings (PVO quarantines; spam: 0, "delete", false) */
	int64_t delete_after_ms; /* 0: STORE_PVO_DELETE_AFTER_DEFAULT_MS */
	char *default_action;	 /* "release" | "delete" */
	bool overflow_exempt;
	bool system;	  /* spam, virus, outbreak, unclassified: cannot be deleted */
	char **operators; /* usernames assigned to it, sorted */
	size_t noperators;
};
int store_quarantines(struct store *st, struct store_quarantine_stats **out, size_t *n);
void store_quarantine_stats_free(struct store_quarantine_stats *v, size_t n);

/*
 * Moves recipients of one message from quarantined to releasing and queues one
 * delivery for them (due now). rcpts NULL: all still quarantined. Recipients that
 * are already releasing/released (or final) are left alone. *changed = how many
 * moved (may be NULL). -ENOENT unknown id; -EINVAL when an address in rcpts is not
 * a recipient of the message.
 */
int store_release(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		  int64_t now, int *changed);
/* Like store_release, but quarantined -> deleted; no delivery. */
int store_delete(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		 int64_t now, int *changed);
/* Bulk: the same for every message matching f (honouring f->addresses scoping). */
int store_release_matching(struct store *st, const struct store_filter *f, int64_t now,
			   int *changed);
int store_delete_matching(struct store *st, const struct store_filter *f, int64_t now,
			  int *changed);

/* A queued delivery of released recipients. */
struct store_delivery {
	int64_t job_id;
	char msg_id[37];
	char *sender;
	char **rcpts;
	size_t nrcpts;
	unsigned attempts;	  /* attempts made before this one */
	int64_t first_attempt_at; /* when the first attempt was claimed (this one: now) */
	/*
	 * The route (migration 9). NULL: a spam release or a copy, to [release]'s
	 * primary/secondary host. Otherwise a PVO release, back through the gateway
	 * that quarantined it: its registry name, or "" when no registered gateway
	 * could be named when it was queued (then alternate_release_gateway).
	 */
	char *gateway;
	bool rescan; /* a released outbreak membership: the gateway scans it again */
	/*
	 * store_pvo_copy: rcpts are the copy's addresses, not the message's
	 * recipients; finishing it changes no recipient's state.
	 */
	bool copy;
};
void store_delivery_free(struct store_delivery *d);

/*
 * Claims the delivery that is due first (next attempt <= now) and leases it for
 * lease_ms: it is not handed out again before now + lease_ms, so after a crash it
 * is sent again once the lease runs out. -EAGAIN when nothing is due.
 */
int store_delivery_claim(struct store *st, int64_t now, int64_t lease_ms,
			 struct store_delivery **out);

enum store_delivery_outcome {
	STORE_DELIVERY_DELIVERED, /* 2xx: recipient -> released */
	STORE_DELIVERY_FAILED,	  /* 5xx: recipient -> failed, reply kept */
	STORE_DELIVERY_RETRY,	  /* 4xx or no connection: stays releasing */
};

struct store_delivery_result {
	const char *rcpt;
	enum store_delivery_outcome outcome;
	const char *reply; /* the server's reply line, or why no server answered */
};

/*
 * Records the outcome of one attempt of d. Recipients to RETRY stay in the job,
 * due again at retry_at; the job is removed when none are left.
 */
int store_delivery_finish(struct store *st, const struct store_delivery *d,
			  const struct store_delivery_result *results, size_t nresults, int64_t now,
			  int64_t retry_at);
/*
 * Records final outcomes (DELIVERED, FAILED; RETRY results are ignored) of
 * recipients of d while its attempt goes on: they leave the job, which keeps its
 * lease and attempt count (the job is removed when none are left). The release
 * engine calls it right after the next hop's reply to the data, so that a crash
 * later in the attempt does not send those recipients again. 0, -ENOENT when the
 * job is gone, -EIO.
 */
int store_delivery_confirm(struct store *st, const struct store_delivery *d,
			   const struct store_delivery_result *results, size_t nresults,
			   int64_t now);
/*
 * An Outbreak membership's rescan (PV4, PV10; docs/GATEWAY.md "Rescans when the
 * rules change"): pending once a new outbreak rules version of the gateway that
 * put it there sends it back for rescanning (store_gateway_outbreak_version);
 * then the gateway's verdict, in its reply to the release's data
 * (store_delivery_confirm_rescan): clean (delivered), kept (held again: an
 * outbreak rule still matches), requarantined (it went to another quarantine,
 * a new message on the manager).
 */
enum store_rescan_state {
	STORE_RESCAN_NONE = 0,
	STORE_RESCAN_PENDING,
	STORE_RESCAN_CLEAN,
	STORE_RESCAN_KEPT,
	STORE_RESCAN_REQUARANTINED,
};
const char *store_rescan_state_name(enum store_rescan_state s);

/*
 * A rescan's verdict (docs/GATEWAY.md "Rescans when the rules change"): the
 * gateway's reply to the data of a release marked rescan=yes says it.
 */
struct store_rescan_verdict {
	enum store_rescan_state state; /* CLEAN, KEPT or REQUARANTINED */
	const char *rule;	       /* the rule that kept or requarantined it, or NULL */
};
/*
 * store_delivery_confirm, with the gateway's verdict on the recipients it took
 * (DELIVERED), in the same transaction: on the message's released Outbreak
 * memberships, rescan becomes v->state with the time and rule; kept also makes
 * those recipients quarantined and those memberships held again (their expiry
 * unchanged) instead of released. 0, -ENOENT when the job is gone, -EINVAL, -EIO.
 */
int store_delivery_confirm_rescan(struct store *st, const struct store_delivery *d,
				  const struct store_delivery_result *results, size_t nresults,
				  int64_t now, const struct store_rescan_verdict *v);
/*
 * Makes the deliveries leased by this node (store_options.node_name) due now, at
 * start-up after a crash; and those leased before leases named their node. Other
 * nodes' leases are left alone: their deliveries may be in flight, and come due
 * again by themselves when the lease runs out (their node died).
 */
int store_delivery_reset_leases(struct store *st, int64_t now);
/* Deliveries waiting (for metrics). */
int store_delivery_pending(struct store *st, uint64_t *count);
/* When the next delivery is due; -EAGAIN when the queue is empty. */
int store_delivery_next_due(struct store *st, int64_t *when);

/*
 * Expiry: recipients still quarantined in messages of quarantine q received before
 * cutoff become expired, at most batch messages per transaction (several
 * transactions per call, so ingest is never stalled for long). Then purges
 * messages no recipient needs any more, and gives freed pages back
 * (incremental vacuum). Counts are returned when the pointers are not NULL:
 * *expired in recipients, *purged in messages.
 */
int store_expire(struct store *st, const char *quarantine, int64_t cutoff, int64_t now,
		 size_t batch, uint64_t *expired, uint64_t *purged);
/*
 * Expiry of PVO memberships: memberships held past their expires_at (<= now)
 * become expired, at most batch per transaction; a message none of whose
 * memberships is held any more has its still-quarantined recipients expired, so
 * that the purge removes it (a message in several quarantines thus leaves at its
 * latest expiry). Then purges as store_purge. *expired counts memberships,
 * *purged messages (either may be NULL). 0, -EIO, -ENOTCONN.
 */
int store_expire_memberships(struct store *st, int64_t now, size_t batch, uint64_t *expired,
			     uint64_t *purged);
/* Purges messages that no recipient needs (all final). */
int store_purge(struct store *st, size_t batch, uint64_t *purged);
/*
 * Upkeep of time partitions, called periodically (by the expiry job) with the
 * current time: on PostgreSQL creates the daily partitions of the message tables
 * from now's day to a week ahead (the store does so at open too), and counts the
 * rows that fell outside every day into *stray (may be NULL; logged when not 0:
 * they are expired row by row, not with their day). SQLite keeps no partitions:
 * 0, *stray = 0. Otherwise 0 or -EIO.
 */
int store_maintain(struct store *st, int64_t now, uint64_t *stray);

struct store_stats {
	uint64_t messages;     /* rows in the store */
	uint64_t bytes_stored; /* compressed bytes of bodies */
	uint64_t bytes_original;
	uint64_t file_bytes; /* size of the database files on disk */
	uint64_t deliveries_pending;
};
int store_stats(struct store *st, struct store_stats *out);

/*
 * For tests and benchmarks; not part of the backend contract.
 * store_debug_counters: what the writer has committed so far.
 * store_debug_list_plan: the query plan store_list would use for f (one step a
 * line, the backend's own words); *plan is the caller's to free().
 */
struct store_debug_counters {
	uint64_t commits;	   /* transactions committed by the writer */
	uint64_t batches;	   /* group commits of submitted messages */
	uint64_t batched_messages; /* messages in those group commits */
};
void store_debug_counters(struct store *st, struct store_debug_counters *out);
int store_debug_list_plan(struct store *st, const struct store_filter *f, const char *cursor,
			  char **plan);

/* --- several processes on one database ------------------------------------ */

/*
 * A process sharing the store. PostgreSQL records one row per node name (the nodes
 * table), refreshed every STORE_NODE_BEAT_MS while the store is open; SQLite knows
 * only itself.
 */
struct store_node {
	char *name;
	char *version;
	int64_t started_at;
	int64_t last_seen;
};
/* How often an open store refreshes its node's last_seen (PostgreSQL). */
#define STORE_NODE_BEAT_MS 15000
/* The nodes seen since `since` (0: all), by name; free with store_node_array_free. */
int store_nodes(struct store *st, int64_t since, struct store_node **out, size_t *n);
void store_node_array_free(struct store_node *v, size_t n);
/* This store's node name (borrowed, valid until store_close). */
const char *store_node_name(struct store *st);

/*
 * Work that must run once for all the processes sharing the store (expiry and
 * purge, session purge, the digest schedule). store_job_try: *held = true when
 * this process may run job name now, and then must call store_job_done(name) when
 * the run is over; *held = false when another process is running it (skip this
 * run). PostgreSQL: an advisory lock on a connection kept for the run, so a
 * process that dies loses it at once. SQLite: always granted (one process).
 * 0, -EINVAL (no name, or this process holds it already), -EIO.
 */
int store_job_try(struct store *st, const char *name, bool *held);
void store_job_done(struct store *st, const char *name);

/* The longest secret the store keeps. */
#define STORE_SECRET_MAX 256
/*
 * Secrets every process sharing the store must agree on (the digest link key).
 * store_secret_get: the value of name into out (size len), -ENOENT when there is
 * none, -EINVAL when the stored one is not len bytes. store_secret_add: stores
 * value (len bytes) under name unless one is there already, and puts the one
 * that is there after the call into out (so two processes adding at once agree).
 */
int store_secret_get(struct store *st, const char *name, unsigned char *out, size_t len);
int store_secret_add(struct store *st, const char *name, const unsigned char *value, size_t len,
		     unsigned char *out);

/*
 * A consistent copy of the whole database as of one moment, into the new file
 * path (which must not exist), while writers go on: SQLite's VACUUM INTO on a
 * connection of its own, in one read transaction (WAL lets the writer thread
 * commit meanwhile). Blocking; for a thread off the loop. 0, -EEXIST, or a
 * negative errno; -ENOSYS for a backend whose database is copied by its own
 * tools (PostgreSQL: pg_dump, pgBackRest).
 */
int store_snapshot(struct store *st, const char *path);

/* --- policy, virus and outbreak (PVO) quarantines ------------------------ */

/*
 * A PVO message is stored once (messages, bodies, recipients as any other) with
 * messages.quarantine = STORE_PVO_MARKER, a name no quarantine can have; the
 * quarantines it is in are its memberships, one per quarantine, each with its own
 * reason, entered_at, expires_at and state:
 *
 *   held --store_pvo_act (release)--> released   held --store_pvo_act (delete)--> deleted
 *   held --store_expire_memberships (expires_at <= now)--> expired
 *
 * The message's recipients stay quarantined while any membership is held; the
 * actions (store_pvo_act, below) deliver it only when no membership is held or
 * deleted, and delete it when one is deleted; when none is held any more by
 * expiry its recipients expire and the purge removes it. End users never see PVO messages (they see
 * only the spam quarantine). See docs/OPERATIONS.md "PVO quarantines".
 */
#define STORE_PVO_MARKER "*pvo"
/* A PVO quarantine's delete_after when it has none of its own: 14 days. */
#define STORE_PVO_DELETE_AFTER_DEFAULT_MS (14LL * 86400 * 1000)
/* The longest quarantine name, in bytes. */
#define STORE_QUARANTINE_NAME_MAX 64

enum store_membership_state {
	STORE_MEMBER_HELD = 0,
	STORE_MEMBER_RELEASED,
	STORE_MEMBER_DELETED,
	STORE_MEMBER_EXPIRED,
};
/* "held", "released", "deleted", "expired" */
const char *store_membership_state_name(enum store_membership_state s);

/*
 * Actions on one membership (PV9). A message in several quarantines is delivered
 * only once no membership is held any more and none is deleted: the release that
 * makes it so moves the still-quarantined recipients to releasing and queues
 * exactly one delivery for them (store_delivery.gateway = the gateway that
 * quarantined it, rescan when one of the released memberships is of an outbreak
 * quarantine). An expired membership counts as not held: a message released from
 * its remaining quarantines after another membership expired is delivered. The
 * other way round, a message released from some quarantines whose last held
 * membership then expires is not delivered (expiry is no release: its
 * recipients expire, store_expire_memberships). A delete from any quarantine
 * means never delivered: the membership becomes deleted and the message's
 * quarantined recipients deleted, so the purge removes it; its other held
 * memberships become deleted with it (it is in no quarantine any more).
 *
 *   held --STORE_PVO_RELEASE--> released   (and the delivery, when it was the last)
 *   held --STORE_PVO_DELETE---> deleted    (and the other held ones, the recipients)
 *   held --STORE_PVO_DELAY----> held       (expires_at += by_ms)
 *   held --STORE_PVO_MOVE-----> held in `to` (policy to policy; reason,
 *                                            entered_at and expires_at kept)
 *
 * Each action is one transaction that first locks the message's memberships
 * (PostgreSQL: FOR UPDATE; SQLite: the single writer), so two managers, or two
 * clicks, acting on one message at once are applied one after the other: a
 * second release finds the membership released and changes nothing.
 */
enum store_pvo_action {
	STORE_PVO_RELEASE = 0,
	STORE_PVO_DELETE,
	STORE_PVO_DELAY,
	STORE_PVO_MOVE,
};
/* "release", "delete", "delay", "move" */
const char *store_pvo_action_name(enum store_pvo_action a);

struct store_pvo_request {
	enum store_pvo_action action;
	const char *quarantine; /* the membership acted on (move: the one it leaves) */
	const char *to;		/* move: the policy quarantine it goes to */
	int64_t by_ms;		/* delay: > 0 */
	/*
	 * release: the delivery it queues is not marked rescan=yes even when an
	 * Outbreak membership was released (an admin's override, docs/GATEWAY.md
	 * "Rescans when the rules change"); the memberships' rescan stays as it was
	 */
	bool no_rescan;
};

/* What one action found and did. */
struct store_pvo_outcome {
	enum store_membership_state was; /* the membership's state before the action */
	bool queued;			 /* a release queued the message's delivery */
	bool to_unknown;		 /* move: -ENODEV is about `to`, not `quarantine` */
};

/*
 * Applies r to message id's membership in r->quarantine. 0 when it changed;
 * otherwise nothing changed and: -ENOENT unknown id or not a PVO message; -ENODEV
 * no quarantine of that name (move: either; out->to_unknown says which); -ENXIO
 * the message is not in that quarantine; -EALREADY the membership is not held
 * (out->was says what it is); move: -EPERM when either quarantine is not a policy
 * one, -EEXIST when `to` has (or had) the message already; -EINVAL bad request.
 * out may be NULL.
 */
int store_pvo_act(struct store *st, const char *id, const struct store_pvo_request *r, int64_t now,
		  struct store_pvo_outcome *out);
/*
 * Bulk: r applied to every message matching f (f->quarantine must name the
 * quarantine of r; operator scoping as store_list), one transaction per page of
 * messages so that ingest is not stalled; messages whose membership is not held
 * (or gone) are skipped. *changed (may be NULL) counts the memberships changed,
 * *queued (may be NULL) the deliveries queued. -EINVAL when f->quarantine is not
 * r->quarantine.
 */
int store_pvo_act_matching(struct store *st, const struct store_filter *f,
			   const struct store_pvo_request *r, int64_t now, uint64_t *changed,
			   uint64_t *queued);
/*
 * Queues a copy of PVO message id to the addresses to[0..n) (1..STORE_PVO_COPY_MAX,
 * not checked here beyond being non-empty): a delivery of its own, to [release]'s
 * primary/secondary host, that changes no state of the message. -ENOENT unknown
 * id or not a PVO message, -EINVAL.
 */
#define STORE_PVO_COPY_MAX 100
int store_pvo_copy(struct store *st, const char *id, const char *const *to, size_t n, int64_t now);

/* A PVO quarantine's settings, as an admin gives them. */
struct store_quarantine_settings {
	const char *name;
	int64_t delete_after_ms;    /* 0: STORE_PVO_DELETE_AFTER_DEFAULT_MS */
	const char *default_action; /* "release" | "delete" */
	bool overflow_exempt;
	const char *const *operators; /* usernames; replaces the assigned ones */
	size_t noperators;
};
/*
 * create: adds policy quarantine q->name (-EEXIST when the name is taken).
 * Otherwise: replaces the settings and operators of PVO quarantine q->name, of any
 * PVO type (-ENOENT when unknown, -EPERM for spam). Memberships already made keep
 * their expires_at. 0, -EEXIST, -ENOENT, -EPERM, -EIO.
 */
int store_quarantine_put(struct store *st, const struct store_quarantine_settings *q, bool create,
			 int64_t now);
/*
 * Deletes policy quarantine name with its operators: -ENOENT when unknown, -EPERM
 * when it is not a policy quarantine (spam and the system ones stay), -EBUSY while
 * a message is held in it. Memberships that left it keep its name (history).
 */
int store_quarantine_delete(struct store *st, const char *name);
/*
 * The PVO quarantines operator username is assigned to, sorted: *out is a new
 * array of *n new strings (free with store_string_array_free; NULL when none).
 */
int store_operator_quarantines(struct store *st, const char *username, char ***out, size_t *n);
void store_string_array_free(char **v, size_t n);

struct store_membership {
	char *quarantine;
	char *type; /* the quarantine's type */
	char *reason;
	int64_t entered_at;
	int64_t expires_at;
	enum store_membership_state state;
	enum store_rescan_state rescan;
	int64_t rescanned_at; /* when rescan last changed (0: never) */
	char *rescan_rule;    /* the rule of a kept or requarantined verdict, or NULL */
};

/*
 * Capacity of the PVO quarantines together (PV7; store_capacity.c,
 * store_pg_capacity.c). messages and bytes: the held PVO messages and their
 * original size (the counters of STORE_PVO_MARKER, as GET /api/v1/quarantines
 * shows sizes); sweepable: a membership is held in a quarantine that is not
 * overflow_exempt, i.e. store_pvo_overflow has something to act on.
 */
struct store_pvo_usage {
	uint64_t messages;
	uint64_t bytes;
	bool sweepable;
};
int store_pvo_usage(struct store *st, struct store_pvo_usage *out);

/* One batch of store_pvo_overflow. */
struct store_pvo_overflow {
	uint64_t released; /* memberships released early (default_action release) */
	uint64_t deleted;  /* memberships deleted early (default_action delete) */
	struct store_pvo_usage after;
};
/*
 * When the held PVO bytes exceed max_bytes: the at most batch oldest held
 * memberships (by entered_at; of the outbreak quarantine, PV10, as many as by age
 * but those closest to expiry) of quarantines that are not overflow_exempt get
 * their quarantine's default_action, as the actions on memberships do (a message
 * released from its last held quarantine is delivered; deleted from one, never),
 * each with an audit row (actor "system", action "pvo_overflow_release" or
 * "pvo_overflow_delete", target the message, detail {"quarantine":...}), all in
 * one transaction. Nothing is done when the bytes are within max_bytes. out->after:
 * the usage when it returns. 0, -EIO, -ENOTCONN.
 */
int store_pvo_overflow(struct store *st, uint64_t max_bytes, size_t batch, int64_t now,
		       struct store_pvo_overflow *out);

/* --- safelists / blocklists, implemented in store_slbl.c ----------------- */

/* One recipient's lists. Entries are lower-case addresses or domains. */
struct store_slbl {
	char *recipient;
	char **safelist;
	size_t nsafelist;
	char **blocklist;
	size_t nblocklist;
	int64_t version; /* the change version that last touched this recipient */
};
void store_slbl_free(struct store_slbl *l);
/*
 * Checks and normalizes one entry (an address, "x.com" or ".x.com") or, with
 * address_only, a recipient address: surrounding blanks dropped, ASCII lower-cased.
 * 0 with *out a new string (caller frees), or -EINVAL. The put functions apply the
 * same rules; callers use this to name a bad entry before they store anything.
 */
int store_slbl_normalize(const char *in, bool address_only, char **out);
void store_slbl_array_free(struct store_slbl **v, size_t n);
/* A recipient's lists (empty lists when it has none). */
int store_slbl_get(struct store *st, const char *recipient, struct store_slbl **out);
/*
 * Replaces both lists of l->recipient (deduplicated, lower-cased, order kept) and
 * bumps the version; *version (may be NULL) gets the new one. -E2BIG when a list has
 * more than max_entries entries; -EINVAL for an entry that is not an address or a
 * domain.
 */
int store_slbl_put(struct store *st, const struct store_slbl *l, size_t max_entries,
		   int64_t *version);
/*
 * Recipients changed after version since (0: all), in version order, at most limit
 * (0: no limit); *version = the newest version in the store. Recipients whose lists
 * became empty are included with empty lists, so a syncing gateway drops them.
 */
int store_slbl_changes(struct store *st, int64_t since, size_t limit, struct store_slbl ***out,
		       size_t *n, int64_t *version);

/* --- accounts, sessions, audit (store_users.c) -------------------------- */

/*
 * A login account. Strings are owned by the struct when the store returns it
 * (store_user_free frees them), borrowed when it is given to store_user_add.
 */
struct store_user {
	const char *username;
	char *password_hash;   /* argon2id string (crypto_pwhash_str), NULL: no local password */
	const char *role;      /* "admin" | "operator" | "enduser" */
	const char *source;    /* "local" */
	const char *language;  /* "ja" | "en" or NULL */
	const char *time_zone; /* IANA name or NULL */
	int64_t created_at;
	int64_t last_login_at; /* 0: never */
	char **addresses;      /* lower-cased, in the order given; the first is the primary */
	size_t naddresses;
};
void store_user_free(struct store_user *u);
void store_user_array_free(struct store_user **v, size_t n);
/* Adds u (addresses lower-cased). -EEXIST when the username is taken. */
int store_user_add(struct store *st, const struct store_user *u);
/* One account; -ENOENT when unknown. */
int store_user_get(struct store *st, const char *username, struct store_user **out);
/* Every account, by username. */
int store_user_list(struct store *st, struct store_user ***out, size_t *n);
int store_user_count(struct store *st, uint64_t *count);
/* Removes the account, its addresses and its sessions. -ENOENT when unknown. */
int store_user_delete(struct store *st, const char *username);
/* Sets language and/or time_zone (NULL leaves one as it is). -ENOENT when unknown. */
int store_user_set_prefs(struct store *st, const char *username, const char *language,
			 const char *time_zone);
int store_user_set_last_login(struct store *st, const char *username, int64_t at);

/* A login session, found by the hash of its token (the token itself is never stored). */
struct store_session {
	char *username;
	char *role;
	char **addresses; /* what the session may see (local account or directory) */
	size_t naddresses;
	char *csrf_token;
	int64_t created_at;
	int64_t expires_at; /* idle deadline, moved forward by store_session_touch */
};
void store_session_free(struct store_session *s);
/* -EEXIST when token_hash is taken; -EINVAL for an address containing a newline. */
int store_session_add(struct store *st, const char *token_hash, const struct store_session *s);
/* -ENOENT when no session has this hash (expiry is the caller's to check). */
int store_session_get(struct store *st, const char *token_hash, struct store_session **out);
int store_session_touch(struct store *st, const char *token_hash, int64_t expires_at);
/* -ENOENT when there was none. */
int store_session_delete(struct store *st, const char *token_hash);
/* Deletes sessions idle past their deadline (expires_at <= now) or created before
 * created_before; *purged (may be NULL) counts them. */
int store_session_purge(struct store *st, int64_t now, int64_t created_before, uint64_t *purged);

/*
 * The second factor (TOTP, RFC 6238) of a local account: its secret as the caller
 * gave it (api/auth_totp.c encrypts it first; the store never sees it in clear),
 * whether enrolment was confirmed, the newest time step accepted (a code is
 * accepted once: a step at or before it is refused) and the hashes of its
 * single-use recovery codes. Removed with its account.
 */
#define STORE_TOTP_RECOVERY_CODES 10
struct store_totp {
	char *secret;
	int64_t created_at;
	int64_t enrolled_at; /* 0: enrolment begun, not confirmed */
	int64_t last_step;   /* the newest time step accepted; 0: none */
	size_t recovery_left;
};
void store_totp_free(struct store_totp *t);
/* username's second factor; -ENOENT when it has none (not even one being enrolled). */
int store_totp_get(struct store *st, const char *username, struct store_totp **out);
/*
 * Begins (again) an enrolment with secret, unconfirmed. -EEXIST when username has
 * a confirmed one, -ENOENT when there is no such account.
 */
int store_totp_begin(struct store *st, const char *username, const char *secret, int64_t now);
/*
 * Confirms the enrolment begun: enrolled at now, step accepted, the recovery code
 * hashes (n, at most STORE_TOTP_RECOVERY_CODES) replace any. -ENOENT when none was
 * begun, -EEXIST when it was confirmed already.
 */
int store_totp_confirm(struct store *st, const char *username, int64_t step, int64_t now,
		       const char *const *hashes, size_t n);
/*
 * Accepts time step for a confirmed second factor, once: -EALREADY when step is not
 * after the last one accepted (a replayed code), -ENOENT when none is confirmed.
 */
int store_totp_use_step(struct store *st, const char *username, int64_t step);
/* Consumes the unused recovery code of this hash: 0, or -ENOENT when there is none. */
int store_totp_use_recovery(struct store *st, const char *username, const char *hash, int64_t now);
/* Removes username's second factor and recovery codes; -ENOENT when it had none. */
int store_totp_delete(struct store *st, const char *username);

/* One row of the audit log; seq grows with every row. */
struct store_audit {
	int64_t seq;
	int64_t at;
	/* Owned by the struct from store_audit_list, borrowed by store_audit_add. */
	const char *actor;  /* username, or "token" for the admin token */
	const char *action; /* "release", "delete", "bulk_release", "login", ... */
	const char *target; /* message id, username, or NULL */
	const char *detail; /* JSON text or NULL */
	const char *peer;   /* client address or NULL */
};
void store_audit_free(struct store_audit *a);
void store_audit_array_free(struct store_audit **v, size_t n);
/* Appends a row (a->seq is ignored); committed when it returns 0. */
int store_audit_add(struct store *st, const struct store_audit *a);
/* Rows with seq < before_seq (0: from the newest), newest first, at most limit (1..1000). */
int store_audit_list(struct store *st, size_t limit, int64_t before_seq, struct store_audit ***out,
		     size_t *n);

/* --- the gateway registry (store_gateways.c, store_pg_gateways.c) ---------- */

/*
 * The gateways the manager knows: registered ones (an admin added them; each has
 * the hash of its own Bearer token, never the token) and pending ones (they said
 * hello without a valid token from an address the manager lets record them; no
 * token, no rights). Names are unique whatever their case and state; addresses
 * are unique among registered gateways, so that an SMTP connection's address
 * names one gateway. Addresses are kept in canonical text (inet_ntop; an
 * IPv4-mapped IPv6 address as IPv4): every function here canonicalizes what it is
 * given.
 *
 *   (none)  --store_gateway_pending_put--> pending --store_gateway_pending_put--> pending
 *   (none)  --store_gateway_add----------> registered      (refreshed)
 *   pending --store_gateway_add----------> registered      (the pending entry is replaced)
 *   registered --store_gateway_touch-----> registered      (last_seen, version)
 *   any     --store_gateway_remove-------> (none)
 */
#define STORE_GATEWAY_NAME_MAX		   64 /* a host name label or a few: [A-Za-z0-9._-] */
#define STORE_GATEWAY_LEVEL_MAX		   64 /* a group or cluster name, same characters */
#define STORE_GATEWAY_ADDRESS_MAX	   45 /* the longest IPv6 text (INET6_ADDRSTRLEN - 1) */
#define STORE_GATEWAY_VERSION_MAX	   64 /* printable ASCII, as a gateway reports it */
#define STORE_GATEWAY_DEFAULT_RELEASE_PORT 25

enum store_gateway_state {
	STORE_GATEWAY_REGISTERED = 0,
	STORE_GATEWAY_PENDING,
};

struct store_gateway {
	char *name;
	enum store_gateway_state state;
	char *address;	       /* canonical IPv4/IPv6 text */
	char *group;	       /* NULL: none */
	char *cluster;	       /* NULL: none */
	unsigned release_port; /* where it takes released mail; 0 given: 25 */
	char *token_hash;      /* auth_token_hash of its token; NULL when pending */
	int64_t created_at;    /* registered, or first seen when pending */
	int64_t last_seen;     /* last authenticated contact (pending: last hello); 0: never */
	char *version;	       /* the version it last reported, or NULL */
	unsigned central;      /* what it says it runs with: STORE_CENTRAL_* bits */
	/* read only: the outbreak rules version it last said (NULL: none), when its
	 * Outbreak messages were last sent back for rescanning (0: never), how many,
	 * and how many of those came back clean, kept and requarantined (these from
	 * store_gateway_list only: 0 from a read of one gateway) */
	char *outbreak_version;
	int64_t last_rescan_at;
	uint64_t last_rescan_messages;
	uint64_t last_rescan_clean;
	uint64_t last_rescan_kept;
	uint64_t last_rescan_requarantined;
	/* read only: its quarantine mapping (NULL: automatic, else a JSON object
	 * {"Local": "Central" | null}) and its last migration (store_gateway_migration) */
	char *mapping;
	struct store_migration {
		enum store_migration_state {
			STORE_MIGRATION_NONE = 0, /* never reported: the rest is 0 */
			STORE_MIGRATION_RUNNING,
			STORE_MIGRATION_DONE,
		} state;
		int64_t run; /* the run's start (Unix ms) as the gateway said it */
		int64_t total, done, failed;
		int64_t finished_at; /* when it was first reported done (0: not yet) */
		int64_t notified_at; /* when its "done" mail was claimed (0: not) */
	} migration;
	/* read only: the "done" mail of that run (store_migration_notice; notice.to
	 * NULL when none was asked for; gateway and m are not filled in here) */
	struct store_migration_notice {
		int64_t id;
		char *gateway;		  /* the gateway's name as registered */
		char *to;		  /* the one address the gateway named */
		struct store_migration m; /* the run it tells of (state DONE) */
		int tries;		  /* attempts made */
		/* the next attempt, or the end of a manager's claim while it sends (unix
		 * seconds); 0: settled, sent or failed */
		int64_t next;
		bool sent;	  /* settled: the relay took it (else failed for good) */
		int64_t last_try; /* the last attempt's time (unix seconds; 0: none yet) */
		char *reply;	  /* the relay's last refusal (or why none answered); NULL */
	} notice;
};
/* The bits of store_gateway.central (and of a gateway's hello "centralized"). */
#define STORE_CENTRAL_PVO	1u
#define STORE_CENTRAL_REPORTING 2u
#define STORE_CENTRAL_TRACKING	4u
/* Frees g and its strings (the struct owns them when the store returned it). NULL: no-op. */
void store_gateway_free(struct store_gateway *g);
void store_gateway_array_free(struct store_gateway **v, size_t n);
/* True when name is 1..STORE_GATEWAY_NAME_MAX of [A-Za-z0-9._-] (group and cluster:
 * the same with STORE_GATEWAY_LEVEL_MAX). */
bool store_gateway_name_ok(const char *name);
/* True when v is 1..STORE_GATEWAY_VERSION_MAX printable ASCII characters. */
bool store_gateway_version_ok(const char *v);
/*
 * The canonical text of an IPv4 or IPv6 address into out: 0, or -EINVAL when in
 * is not one (a name, a prefix, a zone, surrounding blanks are all refused).
 */
int store_gateway_address_canonical(const char *in, char out[STORE_GATEWAY_ADDRESS_MAX + 1]);
/*
 * Registers g (g->state is ignored; token_hash is required): replaces a pending
 * entry of the same name in the same transaction. -EEXIST when a registered gateway
 * has the name, -EADDRINUSE when one has the address, -EINVAL for a bad field.
 */
int store_gateway_add(struct store *st, const struct store_gateway *g);
/* Every gateway, registered and pending, by name. */
int store_gateway_list(struct store *st, struct store_gateway ***out, size_t *n);
/* The gateway named name (any case, any state); -ENOENT when none. */
int store_gateway_get(struct store *st, const char *name, struct store_gateway **out);
/* The registered gateway with this address (canonicalized first); -ENOENT when none,
 * -EINVAL when address is not an IP address. Pending entries are never returned. */
int store_gateway_get_by_address(struct store *st, const char *address, struct store_gateway **out);
/* The registered gateway whose token has this hash; -ENOENT when none. */
int store_gateway_get_by_token_hash(struct store *st, const char *token_hash,
				    struct store_gateway **out);
/* Removes the gateway named name (any state); -ENOENT when none. */
int store_gateway_remove(struct store *st, const char *name);
/* A registered gateway's contact: last_seen = now, and version unless NULL. -ENOENT. */
int store_gateway_touch(struct store *st, const char *name, int64_t now, const char *version);
/*
 * Records or refreshes the pending entry g->name (address, group, cluster, version;
 * last_seen = now; created_at = now when new). -EEXIST when a registered gateway
 * has the name (nothing changes), -ENOSPC when max_pending pending entries exist
 * and g->name is not one of them, -EINVAL for a bad field.
 */
int store_gateway_pending_put(struct store *st, const struct store_gateway *g, size_t max_pending,
			      int64_t now);
/* A registered gateway's group and cluster (NULL: none). -ENOENT, -EINVAL. */
int store_gateway_set_levels(struct store *st, const char *name, const char *group,
			     const char *cluster);
/* What a registered gateway says it runs with (STORE_CENTRAL_* bits). -ENOENT. */
int store_gateway_set_central(struct store *st, const char *name, unsigned central);
/*
 * Records version (1 to STORE_GATEWAY_VERSION_MAX printable ASCII characters) as
 * the outbreak rules version registered gateway name last said. *changed: it had
 * said another one before (the first one said is only recorded). Of two managers
 * told the same change at once, one sees it changed. With the change, in the
 * same transaction, the memberships held in the outbreak quarantine of messages
 * whose gateway field is name become rescan pending (rescanned_at now): the
 * caller releases them next. -ENOENT, -EINVAL.
 */
int store_gateway_outbreak_version(struct store *st, const char *name, const char *version,
				   int64_t now, bool *changed);
/*
 * Migration on enabling centralized PVO (PV6). A registered gateway's mapping of
 * its local quarantines to central ones: NULL = automatic (same names), else the
 * JSON object text {"Local": "Central" | null} the API checked (at most
 * STORE_GATEWAY_MAPPING_MAX bytes). Refused with -EBUSY while the gateway's last
 * migration is running (checked in the same transaction; *busy gets it when not
 * NULL), -ENOENT when no registered gateway has the name, -EINVAL.
 */
#define STORE_GATEWAY_MAPPING_MAX 65536
int store_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
			      struct store_migration *busy);
/*
 * A registered gateway's progress report r (r->state RUNNING or DONE, r->run > 0,
 * 0 <= done + failed <= total): a report of a run older than the stored one
 * changes nothing; a newer run replaces it; the same run takes the counts (a
 * "running" report after "done" of the same run changes nothing). When the run
 * is first reported done, finished_at = notified_at = now and *first_done is
 * true, in the same transaction: of two managers (or two retries) one sees it.
 * With notify (one address; NULL: none), that transaction also records the
 * run's "done" mail to it, due at now (store_migration_notice).
 * *out gets the stored migration after the report. -ENOENT, -EINVAL.
 */
int store_gateway_migration_report(struct store *st, const char *name,
				   const struct store_migration *r, const char *notify, int64_t now,
				   struct store_migration *out, bool *first_done);
/*
 * The "done" mail of a migration run, kept until the relay takes it or refuses
 * it for good (store_gateway_migration_report records it with the state, one
 * per gateway and run; migration 24). A notice is pending while next > 0.
 */
#define STORE_NOTICE_REPLY_MAX 512
void store_migration_notice_clear(struct store_migration_notice *n);
void store_migration_notice_array_free(struct store_migration_notice *v, size_t n);
/* At most limit pending notices whose next is in (0, now] (unix seconds), oldest first. */
int store_migration_notice_due(struct store *st, int64_t now, size_t limit,
			       struct store_migration_notice **out, size_t *n);
/*
 * Sets notice id's tries, next, sent, last_try and reply (NULL: none; cut to
 * STORE_NOTICE_REPLY_MAX bytes) where its next still is old_next: 0 when this
 * call did it, -EALREADY when not (another manager claimed or settled it),
 * -ENOENT when it is gone. Of two managers claiming one notice, one gets it.
 */
int store_migration_notice_set(struct store *st, int64_t id, int64_t old_next, int tries,
			       int64_t next, bool sent, int64_t last_try, const char *reply);

/* --- centralization levels (store_levels.c, store_pg_levels.c) --------------- */

/*
 * The settings the manager keeps per level: a cluster, a group (names a gateway's
 * registry entry gives) or a machine (one gateway's name). Each setting is either
 * set at the level or not (STORE_LEVEL_UNSET / NULL filters); what a gateway ends
 * up with and which changes are allowed is the API's business (api_levels.c).
 * One row per (level, name), names unique whatever their case; a row with no
 * setting left is removed.
 */
#define STORE_LEVEL_UNSET	-1
#define STORE_LEVEL_FILTERS_MAX (256 * 1024) /* the rule text, in bytes */

struct store_level {
	char *level; /* "cluster", "group" or "machine" */
	char *name;
	int pvo, reporting, tracking; /* 0, 1 or STORE_LEVEL_UNSET */
	char *filters;		      /* the content-filter rules; NULL: not set */
	int64_t updated_at;
};
void store_level_clear(struct store_level *l);
void store_level_array_free(struct store_level *v, size_t n);
/* True for "cluster", "group" and "machine". */
bool store_level_kind_ok(const char *level);
/* Every level with a setting, by level then name. */
int store_level_list(struct store *st, struct store_level **out, size_t *n);
/*
 * Writes l's settings as they are (replacing the row of (level, name)); with no
 * setting left the row goes. -EINVAL for a bad level, name or filters text.
 */
int store_level_put(struct store *st, const struct store_level *l);

/* --- gateway events and message tracking (store_events.c, store_pg_events.c) */

/*
 * What gateways report (POST /api/v1/gateway/events) and what message tracking
 * searches: every event as it came (one row per (gateway, seq), in the gateway's
 * order), and one row per tracked message (gateway + the gateway's message id)
 * with the fields the searches need (time, envelope sender and recipients,
 * subject, Message-ID, client address, attachment names, flags of what happened
 * to it, last state). A batch is committed whole or not at all; an event whose
 * (gateway, seq) is stored already is skipped, so a replayed batch stores
 * nothing twice.
 *
 *   (none)  --store_events_put (event with msg_id)--> tracked message
 *   tracked --store_events_put ("received")---------> fields filled
 *   tracked --store_events_put ("recipients")-------> recipients added at their indexes
 *   tracked --store_events_put (event with a state)-> last_state, flags |= flags
 */
#define STORE_EVENT_TYPE_MAX   32    /* [a-z_], one of store_event_type_ok's */
#define STORE_EVENT_MSG_ID_MAX 64    /* printable ASCII, no blanks */
#define STORE_EVENT_DETAIL_MAX 65536 /* a JSON object's text */
#define STORE_EVENT_TEXT_MAX   998 /* a sender, recipient, subject, Message-ID (an RFC 5322 line) */
/* A message's recipients at most (a gateway's [listener] max_recipients' highest). */
#define STORE_EVENT_RCPTS_MAX 1000000

/* Flags of a tracked message (TR1's event searches). */
enum store_track_flag {
	STORE_TRACK_SPAM = 1 << 0,
	STORE_TRACK_SUSPECT = 1 << 1,
	STORE_TRACK_VIRUS = 1 << 2,
	STORE_TRACK_DELIVERED = 1 << 3,
	STORE_TRACK_HARD_BOUNCE = 1 << 4,
	STORE_TRACK_SOFT_BOUNCE = 1 << 5,
	STORE_TRACK_QUARANTINED = 1 << 6,
	STORE_TRACK_OUTBREAK = 1 << 7,
	STORE_TRACK_DLP = 1 << 8,
};

/* What a "received" event says about its message (borrowed strings). */
struct store_event_message {
	const char *sender; /* envelope sender, "" for <> */
	const char *const *recipients;
	size_t nrecipients;
	const char *subject;	/* decoded, or NULL */
	const char *message_id; /* Message-ID, or NULL */
	const char *client_ip;	/* or NULL */
	const char *const *attachments;
	size_t nattachments;
	int64_t size;
};

/*
 * What a "recipients" event says: the message's envelope recipients from index
 * first on, those its "received" event (and the "recipients" events before)
 * did not list (borrowed strings). Stored after the ones stored at lower
 * indexes; an index stored already is kept, so a replay adds nothing.
 */
struct store_event_recipients {
	int64_t first; /* 0 .. STORE_EVENT_RCPTS_MAX - n */
	const char *const *names;
	size_t n; /* >= 1 */
};

/*
 * A gateway's "capacity" event (docs/GATEWAY.md "Events"): what it saw since
 * its previous sample and what it holds now. Added, per gateway and hour, to the
 * system_capacity report's rows in the transaction that stores the event, so a
 * replayed event (its (gateway, seq) stored already) counts once.
 */
struct store_capacity_sample {
	int64_t received;    /* messages received since the previous sample */
	int64_t relayed;     /* messages relayed (a copy sent) since then */
	int64_t connections; /* connections opened since then */
	int64_t current;     /* connections open now */
	int64_t backlog;     /* events in the spool not yet acknowledged */
	int64_t load;	     /* the 1-minute load average, in hundredths */
	int64_t memory;	     /* the gateway's resident memory, bytes */
};

/* One hour (or day, month) of the system_capacity report. */
struct store_capacity_row {
	int64_t at;	  /* the bucket's start (Unix ms) */
	int64_t samples;  /* capacity samples in it */
	int64_t received; /* sums */
	int64_t relayed;
	int64_t connections;
	int64_t current_sum; /* of the samples' open connections */
	int64_t current_max; /* peaks */
	int64_t load_sum;    /* hundredths */
	int64_t load_max;    /* hundredths */
	int64_t memory_max;  /* bytes */
	int64_t backlog_max;
};
/*
 * The system_capacity rows of gateway (NULL: all gateways, their sums added
 * and maxima the highest of any) by gran (enum store_report_gran; days and
 * months are made of the hours), buckets since <= start < until, in time order,
 * empty buckets left out. 0, or -EINVAL for a bad query.
 */
int store_capacity_read(struct store *st, const char *gateway, int gran, int64_t since,
			int64_t until, struct store_capacity_row **out, size_t *n);
/*
 * Retention: one transaction removing at most batch hourly rows whose hour
 * starts before before; *rows says how many. Call again while it removes any.
 */
int store_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows);

/* One event of a batch (borrowed strings). */
struct store_event {
	int64_t seq;	    /* >= 1, grows per gateway */
	int64_t at;	    /* Unix ms, the gateway's clock */
	const char *type;   /* store_event_type_ok */
	const char *msg_id; /* the gateway's message id, or NULL */
	const char *detail; /* JSON object text */
	/* the same detail as the caller parsed it (a jansson object that lives as long
	 * as the event), or NULL: the store's reports read it instead of parsing the
	 * text again */
	const struct json_t *parsed;
	/* "received": the message's fields; NULL otherwise */
	const struct store_event_message *message;
	/* "capacity": the gateway's sample; NULL otherwise */
	const struct store_capacity_sample *capacity;
	/* "recipients": the names it adds to the message's; NULL otherwise */
	const struct store_event_recipients *recipients;
	const char *state; /* the tracked message's new last_state, or NULL */
	unsigned flags;	   /* enum store_track_flag bits this event sets */
};

/* True for the event types a gateway may report (docs/GATEWAY.md "Events"). */
bool store_event_type_ok(const char *type);
/* True when id is 1..STORE_EVENT_MSG_ID_MAX printable ASCII without blanks. */
bool store_event_msg_id_ok(const char *id);

/*
 * Commits v[0..n) of gateway (a registered gateway's name) in one transaction,
 * with the gateway's counters: last seq and event time, the backlog it reported
 * (-1: not said), events received, pushed_at = now, in seq order whatever
 * their order in v. Events whose (gateway, seq) is stored already, or that
 * repeat a seq of v, are skipped; *stored (may be NULL) counts the new ones.
 * -EINVAL for a bad field (nothing stored).
 */
int store_events_put(struct store *st, const char *gateway, const struct store_event *v, size_t n,
		     int64_t backlog, int64_t now, uint64_t *stored);

/*
 * The manager's own events (a message quarantined on the manager, released,
 * deleted): stored as a gateway's, under this reserved name, which no gateway
 * may be registered with (store_gateway_reserved).
 */
#define STORE_EVENTS_OWN_GATEWAY "manager"
/* True for a name no gateway may have (STORE_EVENTS_OWN_GATEWAY, in any case). */
bool store_gateway_reserved(const char *name);
/*
 * Commits the manager's own events v[0..n) as store_events_put does for the
 * gateway STORE_EVENTS_OWN_GATEWAY, except that each event's seq is not the
 * caller's: the store numbers them on from that name's last seq in the same
 * transaction, so managers sharing one store never take the same numbers. Types:
 * store_event_type_ok's, and "delete" and "expire". -EINVAL for a bad field.
 */
int store_events_put_own(struct store *st, const struct store_event *v, size_t n, int64_t now,
			 uint64_t *stored);

/* A gateway's event counters. */
struct store_event_state {
	char *gateway;
	int64_t last_seq;      /* highest seq stored */
	int64_t last_event_at; /* newest event time stored, 0: none */
	int64_t backlog;       /* events waiting on the gateway at its last push, -1: unknown */
	int64_t received;      /* events stored */
	int64_t pushed_at;     /* last push, 0: never */
};
void store_event_states_free(struct store_event_state *v, size_t n);
/* The counters of every gateway that pushed events, by name. *out is new. */
int store_event_states(struct store *st, struct store_event_state **out, size_t *n);

/* A stored event (the struct owns its strings). */
struct store_event_row {
	char *gateway;
	int64_t seq;
	int64_t at;
	char *type;
	char *msg_id; /* NULL: none */
	char *detail;
};
void store_event_rows_free(struct store_event_row *v, size_t n);
/*
 * Events of gateway with seq > after_seq in seq order, at most limit (1..10000);
 * msg_id not NULL: only that message's (its timeline), without its "recipients"
 * events (the tracked message lists every recipient they add). *out is new.
 */
int store_events_list(struct store *st, const char *gateway, const char *msg_id, int64_t after_seq,
		      size_t limit, struct store_event_row **out, size_t *n);

/* One tracked message (the struct owns its strings). */
struct store_tracked_message {
	char *gateway;
	char *msg_id;
	int64_t received_at;
	char *sender; /* NULL until its "received" event came */
	char **recipients;
	size_t nrecipients;
	char *subject;
	char *message_id;
	char *client_ip;
	char **attachments;
	size_t nattachments;
	int64_t size;
	char *last_state; /* NULL: none yet */
	unsigned flags;
	int64_t updated_at; /* time of the last event that changed it */
};
void store_tracked_message_free(struct store_tracked_message *m);
/* The tracked message (gateway, msg_id); -ENOENT when none. */
int store_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
			      struct store_tracked_message **out);

/* --- message tracking searches (store_tracking.c) ------------------------ */

/*
 * TR1/TR2: searching the tracked messages and telling one message's story. Both
 * backends answer the same query with the same rows; every filter is answered
 * by an index of the tracking migration (received_at, gateway, sender_lc,
 * recipients' address_lc, subject, message_id, client_ip, attachments' name_lc)
 * or narrows a newest-first walk of received_at (flags).
 */
#define STORE_TRACK_LIMIT_MAX 1000
/* Every flag but STORE_TRACK_DELIVERED: the condition of the partial index
 * tracked_flagged (migration 11 of both backends writes it out: 503). */
#define STORE_TRACK_RARE_FLAGS 503
_Static_assert(STORE_TRACK_RARE_FLAGS ==
		   (STORE_TRACK_SPAM | STORE_TRACK_SUSPECT | STORE_TRACK_VIRUS |
		    STORE_TRACK_HARD_BOUNCE | STORE_TRACK_SOFT_BOUNCE | STORE_TRACK_QUARANTINED |
		    STORE_TRACK_OUTBREAK | STORE_TRACK_DLP),
	       "tracked_flagged's condition");
/* The story of a message takes the tracked messages with its Message-ID received
 * this long before or after it (a message relayed by several gateways). */
#define STORE_TRACK_STORY_WINDOW_MS (7 * 86400000LL)
/* Tracked messages and events a story holds at most. */
#define STORE_TRACK_STORY_MESSAGES 100
#define STORE_TRACK_STORY_EVENTS   10000
/* A story shows the "connection" event of each message's SMTP session (the
 * client, its HELO, the HAT decision) when the session began at most this long
 * before the message came: one session may carry many messages. */
#define STORE_TRACK_SESSION_WINDOW_MS (3600 * 1000LL)
#define STORE_TRACK_SESSION_EVENTS    16

enum store_track_subject_op {
	STORE_TRACK_SUBJECT_CONTAINS = 0,
	STORE_TRACK_SUBJECT_BEGINS,
	STORE_TRACK_SUBJECT_IS,
};

/* A search; every field set narrows it (borrowed strings, NULL/0: any). */
struct store_track_query {
	int64_t since;	       /* received_at >= since (0: unbounded) */
	int64_t until;	       /* received_at < until (0: unbounded) */
	const char *sender;    /* the envelope sender, without case ("" for <>) */
	const char *recipient; /* an envelope recipient, without case; "@dom": any at dom */
	const char *subject;   /* decoded text; case folded as LIKE/ILIKE fold it */
	enum store_track_subject_op subject_op;
	const char *message_id; /* the Message-ID header without <> */
	const char *gateway;
	const char *client_ip;
	const char *attachment; /* an attachment's name, without case */
	unsigned flags;		/* enum store_track_flag: any of these set */
};

/*
 * The tracked messages q matches, newest received_at first (then gateway and
 * msg_id, descending), at most limit (1..STORE_TRACK_LIMIT_MAX), after cursor
 * (NULL: the first page; else a *next of an earlier call). *out is a new array of
 * new messages (store_tracked_messages_free); *next is a new cursor when more
 * may follow, else NULL. -EINVAL for a bad limit, field or cursor.
 */
int store_tracked_search(struct store *st, const struct store_track_query *q, size_t limit,
			 const char *cursor, struct store_tracked_message ***out, size_t *n,
			 char **next);
void store_tracked_messages_free(struct store_tracked_message **v, size_t n);

/*
 * The story of tracked message (gateway, msg_id): the message (*msg) and, in
 * time order (at, then gateway, then seq), its events and those of every other
 * tracked message with the same non-empty Message-ID received within
 * STORE_TRACK_STORY_WINDOW_MS of it, each row naming its gateway; with each
 * message's session "connection" event and the "rcpt_refused" events of its
 * transaction (msg_id NULL: session events, found by the "session" of the
 * message's "received" event within STORE_TRACK_SESSION_WINDOW_MS before it;
 * a refusal belongs to the first message of its session after it). *msg and *ev
 * are new. -ENOENT when the message is not tracked.
 */
int store_tracked_story(struct store *st, const char *gateway, const char *msg_id,
			struct store_tracked_message **msg, struct store_event_row **ev,
			size_t *nev);

/*
 * Tracking retention ([tracking] retention of lazaretd): what is older than
 * before goes, in steps small enough that event ingest never waits long.
 * gateway_event_state (each gateway's last seq) is never touched: events_put
 * skips every event at or below a gateway's last seq, so a replay of a purged
 * batch is not stored again.
 *
 * store_tracking_drop_days: the whole days that ended at or before before, on a
 * backend that keeps the tracking tables in daily partitions (PostgreSQL: one
 * transaction per day, a day whose locks are not had at once is left to the row
 * path); 0 with nothing dropped on the others. *events and *messages count the
 * rows that went.
 *
 * store_tracking_purge: one transaction removing at most batch events with
 * at < before and at most batch tracked messages with received_at < before (with
 * their recipients and attachments). Call again while it removes anything.
 */
int store_tracking_drop_days(struct store *st, int64_t before, uint64_t *events,
			     uint64_t *messages);
int store_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
			 uint64_t *messages);

/* --- reporting rollups, implemented in store_report.c ------------------- */

/*
 * Counters of gateways' traffic per hour, day and month (UTC buckets), per
 * gateway, report and key, filled by store_events_put from the events it newly
 * stores, in the batch's transaction: a replayed batch counts nothing twice.
 * The same transaction adds the batch to the all-gateway rows (the sums over
 * gateways, kept so that a read over all gateways reads one row per bucket and
 * key), which the retention removes with the gateways'. Counting (store_report.c): a
 * message counts once, per recipient, when its "reply" event is stored, in the
 * buckets of its "received" event's time; its class is the first of spam,
 * suspect, virus, content_filter, clean. "connection" and "rate_limit" events
 * count by themselves in the count column (overview: rejected connections).
 */
enum store_report_gran { STORE_REPORT_HOUR, STORE_REPORT_DAY, STORE_REPORT_MONTH };
#define STORE_REPORT_NGRANS 3
enum store_report_kind {
	STORE_REPORT_OVERVIEW,
	STORE_REPORT_INCOMING_DOMAINS,
	STORE_REPORT_INCOMING_IPS,
	STORE_REPORT_SENDER_GROUPS,
	STORE_REPORT_OUTGOING_DESTINATIONS,
	STORE_REPORT_OUTGOING_SENDERS,
	STORE_REPORT_INTERNAL_USERS,
	STORE_REPORT_CONTENT_FILTERS,
	STORE_REPORT_VIRUS_TYPES,
	STORE_REPORT_OUTBREAK,
	STORE_REPORT_TLS,
	STORE_REPORT_RATE_LIMITS,
	STORE_REPORT_NREPORTS
};
/* The counters of a rollup row, in its columns' order. */
enum store_report_counter {
	STORE_REPORT_INCOMING,
	STORE_REPORT_CLEAN,
	STORE_REPORT_SPAM,
	STORE_REPORT_SUSPECT,
	STORE_REPORT_VIRUS,
	STORE_REPORT_CONTENT_FILTER,
	STORE_REPORT_COUNT,
	STORE_REPORT_NCOUNTERS
};
#define STORE_REPORT_LIMIT_MAX 1000

/* The reports' names (the API's), by enum store_report_kind. */
extern const char *const store_report_names[STORE_REPORT_NREPORTS];
/* The report called name, or -1. */
int store_report_by_name(const char *name);
/* The start (Unix ms) of the bucket of granularity gran holding at. */
int64_t store_report_bucket(int gran, int64_t at);

struct store_report_query {
	int report;	      /* enum store_report_kind */
	int gran;	      /* enum store_report_gran */
	int64_t since, until; /* buckets with since <= start < until (Unix ms) */
	const char *gateway;  /* NULL: all summed */
	bool series;	      /* one row per bucket (key NULL), in time order */
	size_t limit;	      /* !series: the top limit keys (1..STORE_REPORT_LIMIT_MAX) */
};
struct store_report_row {
	char *key;  /* !series */
	int64_t at; /* series: the bucket's start */
	int64_t c[STORE_REPORT_NCOUNTERS];
};
void store_report_rows_free(struct store_report_row *v, size_t n);
/*
 * The rows of q: a series, or the keys with the most incoming (then count,
 * then key) summed over the range. A top-N by the day reads the range's whole
 * months from their monthly rows (which hold what their days held, also after
 * the daily retention removed the days) and the days at either end from the
 * daily rows. 0, or -EINVAL for a bad query.
 */
int store_report_read(struct store *st, const struct store_report_query *q,
		      struct store_report_row **out, size_t *n);
/*
 * Rollup retention: one transaction removing at most batch rows of granularity
 * gran whose bucket starts before before; *rows says how many. Call again while
 * it removes anything.
 */
int store_report_purge(struct store *st, int gran, int64_t before, size_t batch, uint64_t *rows);

/*
 * A gateway's own rollups sent once to the manager (POST /api/v1/gateway/rollups,
 * docs/GATEWAY.md "Reporting"): buckets that ended before the gateway reported
 * centrally, which the manager cannot have from events. Each (report, gran,
 * bucket, key) is taken once per gateway, whatever is sent again.
 */
struct store_rollup_in {
	int report; /* enum store_report_kind */
	int gran;   /* enum store_report_gran */
	int64_t bucket;
	const char *key;
	int64_t c[STORE_REPORT_NCOUNTERS];
};
/*
 * Adds v's rows to gateway's rollups (and to report_totals) in one
 * transaction, each only if it was never taken for gateway before; *stored (may
 * be NULL) counts those added. cutoff is when the gateway turned central
 * reporting on: every row's bucket ends by it, and a row is also added to the
 * coarser buckets that did not (the day and month of the switch, which the
 * gateway does not send), so that a month's row is the sum of its days' and a
 * day's of its hours'. done marks the gateway's backfill finished at now.
 * -EALREADY when it was finished already (nothing added), -EINVAL for a bad row.
 */
int store_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
			  const struct store_rollup_in *v, size_t n, bool done, int64_t now,
			  size_t *stored);
/* When the bucket of gran starting at bucket ends (Unix ms). */
int64_t store_report_bucket_end(int gran, int64_t bucket);
/* One row of store_report_export: key is new (store_rollup_rows_free). */
struct store_rollup_row {
	int report, gran;
	int64_t bucket;
	char *key;
	int64_t c[STORE_REPORT_NCOUNTERS];
};
void store_rollup_rows_free(struct store_rollup_row *v, size_t n);
/*
 * The rollups of granularity gran whose bucket starts before before, summed over
 * their gateways, in (report, bucket, key) order after *after (its report name,
 * bucket and key; after->key NULL: from the first), at most limit. What a gateway
 * sends the manager once (lazaret-gw, gw_backfill.c).
 */
int store_report_export(struct store *st, int gran, int64_t before,
			const struct store_rollup_row *after, size_t limit,
			struct store_rollup_row **out, size_t *n);
/* When gateway's backfill finished into *done_at (0: not yet). */
int store_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at);

/* --- digests, implemented in store_digest.c ----------------------------- */

/*
 * What the notification digests need from the store: the end
 * users and their addresses, the new quarantined messages per address, what was
 * already sent (digest_state) and which single-use link tokens were used
 * (used_tokens). Implemented by the SQLite backend in store_digest.c; same
 * conventions as store.h (Unix ms, 0 or a negative errno).
 *
 * "New" is measured in message sequence numbers (the store's insertion order): a
 * digest lists the messages with seq in (last_seq, upto] of each address and then
 * records upto as the address's last_seq, so each message is listed once.
 */

/* An end-user account (role enduser) and every address it owns. */
struct store_digest_user {
	char *username;
	char *language;	  /* "ja" | "en" | NULL (use the default) */
	char *time_zone;  /* tz database name or NULL (use the default) */
	char **addresses; /* lower-case, sorted */
	size_t naddresses;
};
void store_digest_user_free(struct store_digest_user *u);

/* The end-user account owning address (case-insensitive); -ENOENT when none. */
int store_digest_user_by_address(struct store *st, const char *address,
				 struct store_digest_user **out);
/* The end-user account named username; -ENOENT when none (or not an end user). */
int store_digest_user_by_name(struct store *st, const char *username,
			      struct store_digest_user **out);

/* The highest message sequence number in the store (0 when empty). */
int store_digest_max_seq(struct store *st, int64_t *out);

/*
 * Addresses (lower-case, distinct) that are still-quarantined recipients of a message
 * of quarantine q with seq in (after, upto]. *out is a new array of new strings
 * (free each, then the array).
 */
int store_digest_candidates(struct store *st, const char *q, int64_t after, int64_t upto,
			    char ***out, size_t *n);

/* One message as a digest lists it. */
struct store_digest_entry {
	char id[37];
	int64_t seq;
	int64_t received_at;
	char *recipient; /* the address it was sent to, as given in the envelope */
	char *sender;	 /* envelope sender ("" for <>) */
	char *from;	 /* decoded From:, or NULL */
	char *from_addr; /* bare From: address, or NULL */
	char *subject;	 /* decoded, or NULL */
	bool has_score;
	double score;
};
void store_digest_entries_free(struct store_digest_entry *v, size_t n);

/*
 * Messages of quarantine q in which address is a still-quarantined recipient, with
 * seq in (after, upto], oldest first, at most limit (>= 1). *total (may be NULL) is
 * how many match without the limit. *out is new (store_digest_entries_free).
 */
int store_digest_entries(struct store *st, const char *q, const char *address, int64_t after,
			 int64_t upto, size_t limit, struct store_digest_entry **out, size_t *n,
			 size_t *total);

/*
 * What was last sent to address: *last_seq and *last_sent_at (either may be NULL).
 * -ENOENT when nothing was ever recorded. The key "*" holds the scheduler's own
 * low-water mark (an address never is "*").
 */
int store_digest_state_get(struct store *st, const char *address, int64_t *last_seq,
			   int64_t *last_sent_at);
/*
 * Records for each address that messages up to last_seq were listed at sent_at. A
 * recorded last_seq never goes down, except for the key "*" which is set as given.
 */
int store_digest_state_put(struct store *st, const char *const *addresses, size_t n,
			   int64_t last_seq, int64_t sent_at);

/* True in *used when the nonce of a single-use token was used already. */
int store_digest_token_used(struct store *st, const char *nonce, bool *used);
/*
 * Marks nonce as used at now, remembered until expires_at (after that the token
 * itself is expired). -EEXIST when it was used already. Also forgets a bounded
 * number of nonces whose expiry has passed.
 */
int store_digest_token_use(struct store *st, const char *nonce, int64_t now, int64_t expires_at);

/* --- scheduled reports and their archive (store_sched.c, store_pg_sched.c) -- */

/*
 * A report mailed on a schedule: report/period name what GET /api/v1/reports
 * renders, every is "daily", "weekly" or "monthly", recipients are addresses one
 * a line, format "pdf" or "csv". next_run is when it is due (unix seconds); a
 * manager that finds it due claims the run by moving next_run on only where it
 * still has the value it read, so several managers on one store run it once.
 */
#define STORE_SCHED_RECIPIENTS_MAX 16384 /* the recipients text, in bytes */
#define STORE_SCHED_NAME_MAX	   64
#define STORE_ARCHIVE_DATA_MAX	   (32 * 1024 * 1024)

struct store_report_schedule {
	int64_t id;
	char *report, *period, *every, *format;
	char *recipients; /* addresses, one a line */
	char *created_by;
	int64_t created_at, next_run, last_run; /* last_run 0: never */
	int at_minute;	 /* the local time it is sent: minutes after midnight, 0..1439 */
	char *time_zone; /* the tz zone of at_minute ("Asia/Tokyo"); NULL: "UTC" */
};
void store_report_schedule_clear(struct store_report_schedule *s);
void store_report_schedule_array_free(struct store_report_schedule *v, size_t n);
/* Adds s (id is ignored); *id gets the new one. -EINVAL for a bad field. */
int store_report_schedule_add(struct store *st, const struct store_report_schedule *s, int64_t *id);
/* Every schedule, by id. */
int store_report_schedule_list(struct store *st, struct store_report_schedule **out, size_t *n);
/* 0, or -ENOENT. */
int store_report_schedule_delete(struct store *st, int64_t id);
/*
 * Replaces schedule s->id's report, period, every, format, recipients, at_minute,
 * time_zone and next_run (the rest stays). 0, -ENOENT, or -EINVAL for a bad field.
 */
int store_report_schedule_update(struct store *st, const struct store_report_schedule *s);
/*
 * Moves schedule id's next_run from old_next to new_next and sets last_run to
 * now: 0 when this call did it, -EALREADY when next_run was no longer old_next
 * (another manager ran it), -ENOENT when the schedule is gone.
 */
int store_report_schedule_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
				int64_t now);

/* One generated report as it was mailed (or made on demand). */
struct store_report_archived {
	int64_t id;
	int64_t schedule_id; /* 0: made on demand without a schedule */
	char *report, *period, *format;
	int64_t from, to; /* the range it covers, unix seconds, [from, to) */
	int64_t created_at;
	unsigned char *data; /* NULL in listings */
	size_t size;
	/*
	 * Its mail: the recipients it is still to reach, one a line ("" or NULL: none,
	 * it was sent or never meant to be), the attempts made, and when the next is
	 * due (unix seconds; 0 with recipients left: given up).
	 */
	char *mail_pending;
	int mail_tries;
	int64_t mail_next;
};
void store_report_archived_clear(struct store_report_archived *a);
void store_report_archived_array_free(struct store_report_archived *v, size_t n);
/* Keeps a (id is ignored); *id gets the new one. -EINVAL for a bad field. */
int store_report_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id);
/* At most limit copies, newest first, without their data. */
int store_report_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			      size_t *n);
/* One copy with its data: 0 or -ENOENT. */
int store_report_archive_get(struct store *st, int64_t id, struct store_report_archived *out);
/*
 * Removes at most limit copies made before before (unix seconds), oldest first;
 * *removed (may be NULL) counts them. Called again until it removes fewer.
 */
int store_report_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed);
/* At most limit copies with recipients left whose mail_next is in (0, now], without data. */
int store_report_archive_mail_due(struct store *st, int64_t now, size_t limit,
				  struct store_report_archived **out, size_t *n);
/*
 * Sets copy id's mail state to pending/tries/next where mail_next still is
 * old_next: 0 when this call did it, -EALREADY when not (another manager did),
 * -ENOENT when the copy is gone. old_next < 0 sets it whatever it was.
 */
int store_report_archive_mail_set(struct store *st, int64_t id, int64_t old_next,
				  const char *pending, int tries, int64_t next);

#endif
