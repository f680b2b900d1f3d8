/*
 * event_spool — the gateway's durable queue of events for the manager, under
 * [gateway] data_dir: a SQLite file (events.spool) and two append-only journals
 * beside it (events.spool-j0, -j1). Appends are queued in memory and committed
 * in groups (off the SMTP hot path), a group one write to a journal;
 * event_spool_sync waits until a given event is committed,
 * event_spool_when_durable calls back then without waiting. "Committed" is in
 * the file, which a kill -9 of the process does not undo. With sync_each it is
 * also fsynced by the commit (a power loss does not undo it either: [events]
 * sync = each); else (sync = group) the writer thread fsyncs the commits of the
 * last EVENT_SPOOL_SYNC_MS (100 ms) in one go, so a power loss can undo at most
 * that much. The pusher (gw_events.c) reads the oldest events, as the JSON
 * text of a push (event_spool_peek), and drops them only when the manager
 * acknowledged them (event_spool_ack); events not acknowledged within a second
 * or two are moved into the SQLite file, which holds the backlog.
 *
 * Sequence numbers grow by one per appended event and never repeat for the life
 * of the file; a new file starts at the current time in microseconds, so that a
 * gateway whose data_dir was wiped does not send numbers the manager has seen.
 *
 * Bound: the events' bytes (rows and queue) stay within max_bytes. An append
 * that would pass it is dropped and counted (event_spool_stats.dropped); the
 * caller logs. The file does not shrink: acknowledged rows leave free pages that
 * later appends reuse. While the moves into the SQLite file fail (it refuses
 * writes: event_spool_stats.unmovable), the committed events stay in memory
 * and in the journals, acknowledged or not, up to 64 MB (or max_bytes, when
 * smaller); past that, appends are dropped the same way until a move succeeds.
 *
 * Not for: what an event says (gw_events.c) or sending it.
 */
#ifndef LAZARET_EVENT_SPOOL_H
#define LAZARET_EVENT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_spool;
struct strbuf;

/*
 * Opens (creating) the spool at path and starts its writer; sync_each: every
 * commit is fsynced before it counts as committed (else in groups, in the
 * background). 0 with *out, or -errno (the file cannot be opened or is not a
 * spool: logged).
 */
int event_spool_open(const char *path, uint64_t max_bytes, bool sync_each,
		     struct event_spool **out);
/* Commits what is queued, stops the writer and closes. NULL: no-op. */
void event_spool_close(struct event_spool *sp);

/*
 * An event's line is written by its caller into one buffer, which the spool then
 * keeps as it is (no copy, no second formatting: this runs for every step of
 * every message):
 *
 *	struct strbuf b = STRBUF_INIT;
 *	event_spool_line_start(&b, clock_now_ms(), "delivery", id);
 *	strbuf_puts(&b, "{\"host\":\"mx\"}");		// the detail: a JSON object
 *	seq = event_spool_append_line(sp, &b);	// b is empty again
 *
 * line_start writes "at":T,"type":"...","msg_id":"..." (msg_id NULL: none) and
 * "detail": into b, which must be empty; type and msg_id are escaped.
 */
void event_spool_line_start(struct strbuf *b, int64_t at, const char *type, const char *msg_id);
/*
 * Queues the event whose line b holds (taken: b is left empty) and returns its
 * seq (>= 1), or 0 when the spool is full (the event is dropped and counted).
 * A raw newline in the detail (JSON text has none: a caller's mistake) becomes
 * a space, so that the line stays one line. Never waits for the disk.
 * Thread-safe.
 */
int64_t event_spool_append_line(struct event_spool *sp, struct strbuf *b);
/* The same for a detail given as a JSON object's text (copied). */
int64_t event_spool_append(struct event_spool *sp, int64_t at, const char *type, const char *msg_id,
			   const char *detail);
/*
 * Waits until the event seq (and every one before it) is committed, or
 * was dropped by a failed write (logged, counted). 0; -ESHUTDOWN when the spool
 * closed first. Thread-safe.
 */
int event_spool_sync(struct event_spool *sp, int64_t seq);
typedef void (*event_spool_done_fn)(void *arg);
/*
 * Calls fn(arg) once the event seq (and every one before it) is committed, or
 * was dropped by a failed write, or the spool closed: at once in the
 * caller's thread when that is already so, else later from the spool's writer
 * thread (fn must not call back into the spool). Never waits. Thread-safe.
 */
void event_spool_when_durable(struct event_spool *sp, int64_t seq, event_spool_done_fn fn,
			      void *arg);

/*
 * The oldest committed events, in seq order: at most max_events, and no more
 * than max_bytes of text (always at least one when any). Appended to out as the
 * members of a push's "events" array, comma-separated, one a line:
 * {"seq":N,"at":T,"type":"...","msg_id":"..." (when it has one),"detail":{...}}.
 * *n gets how many, *last the seq of the last. 0 or -EIO (out as it was).
 */
int event_spool_peek(struct event_spool *sp, size_t max_events, size_t max_bytes,
		     struct strbuf *out, size_t *n, int64_t *last);
/* Drops every committed event with seq <= seq (the manager or the gateway's own
 * tracking store has them). 0 or -EIO. */
int event_spool_ack(struct event_spool *sp, int64_t seq);

struct event_spool_stats {
	uint64_t backlog;  /* events not acknowledged (queued and committed) */
	uint64_t bytes;	   /* their bytes (as pushed, and a little), counted against max_bytes */
	uint64_t dropped;  /* events dropped since open (full, or a failed write) */
	int64_t oldest_at; /* time of the oldest unacknowledged event, 0: none */
	int64_t next_seq;  /* the seq the next append gets */
	bool created;	   /* the file was made by this open */
	uint64_t syncs;	   /* sync = group: the writer's fsyncs since open */
	/* the last move into the SQLite file failed; while they keep failing,
	 * the events waiting in memory are capped (64 MB, or max_bytes when
	 * smaller): past that, appends are dropped (counted) until one succeeds */
	bool unmovable;
};
void event_spool_stats(struct event_spool *sp, struct event_spool_stats *out);

/*
 * Sets the spool's integer mark key (1..31 bytes of [a-z_]) to value, durably,
 * and gives the value it had (*old; 0 when it had none). 0 or -EIO.
 */
int event_spool_mark_swap(struct event_spool *sp, const char *key, int64_t value, int64_t *old);

#endif
