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
 * thread; each thread gets its own read connection.
 *
 * Times are Unix milliseconds. Returns: 0 or a negative errno (-ENOENT unknown id,
 * -EINVAL bad argument, -EIO storage failure, -EAGAIN nothing due).
 * A PostgreSQL backend must be able to slot in behind this interface.
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
	const char *dir;	/* data directory; created if missing */
	unsigned batch_max;	/* most messages in one group commit (default 256) */
	unsigned batch_wait_us; /* how long the writer waits to fill a batch (default 0:
				   commit what is there; concurrency fills batches) */
};

struct store;

/* Opens (creating and migrating the schema as needed) and starts the writer thread. */
int store_open(const struct store_options *opt, struct store **out);
/* Finishes every queued write, stops the writer, closes. NULL is a no-op. */
void store_close(struct store *st);

struct store_attachment {
	char *filename; /* UTF-8 or NULL */
	char *content_type;
	uint64_t size;
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
};

void store_message_free(struct store_message *m);
void store_message_array_free(struct store_message **v, size_t n);

/* Filters for listing and bulk actions; NULL/0 fields do not filter. */
struct store_filter {
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
	const char *const *ids; /* only these ids (bulk by id) */
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
	const char *const *addresses;
	size_t naddresses;
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
	char *type;	   /* "spam" for now; "policy", "virus", ... later */
	uint64_t messages; /* messages with a recipient still quarantined */
	uint64_t bytes;	   /* their original size */
	int64_t oldest;	   /* received_at of the oldest of them, 0 when empty */
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
	unsigned attempts; /* attempts made before this one */
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
/* Makes every leased delivery due now (at start-up, after a crash). */
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
/* Purges messages that no recipient needs (all final). */
int store_purge(struct store *st, size_t batch, uint64_t *purged);

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

#endif
