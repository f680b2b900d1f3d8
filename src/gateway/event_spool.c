/*
 * event_spool — the gateway's durable event queue (event_spool.h).
 *
 * Two parts. A commit (on the replies' path) is one write() of the group's
 * lines to an append-only journal (events.spool-j0 or -j1): in the file when
 * it returns, so a kill -9 loses nothing committed, with no lock files, no
 * B-tree and no page writes. The lines also stay in memory (pending), where
 * the pusher reads and acknowledges them. Every EVENT_SPOOL_ROTATE_MS the
 * writer thread rotates the journals (event_spool_rotate): the older one's
 * lines the pusher has not acknowledged meanwhile go into the SQLite file, in
 * one transaction, and that journal is emptied and takes the commits. So
 * while the manager keeps up, events are written once, to a journal; while it
 * does not, the SQLite file holds the backlog, and "drop everything up to
 * seq" is one indexed DELETE there, with no segment bookkeeping of our own.
 * While the SQLite file refuses the moves, nothing leaves memory or the
 * journals: once they hold EVENT_SPOOL_PENDING_MAX bytes (or max_bytes),
 * appends are dropped until a move succeeds (event_spool_limit).
 *
 * A line is an event as the push sends it, one JSON object ending in ",\n":
 *
 *   {"seq":N,"at":T,"type":"delivery","msg_id":"...","detail":{...}},\n
 *
 * JSON text never holds a raw newline (strings escape it), so the lines are
 * the events. One row of the file ("chunk") holds the lines of a rotation, up
 * to EVENT_SPOOL_CHUNK_EVENTS consecutive seqs (first..last): written, read
 * and deleted as one B-tree entry. A push body is the chunks' texts and then
 * the pending lines, one after the other (the last ",\n" cut), with nothing
 * parsed or rebuilt on the gateway. A batch or an acknowledgement that ends
 * inside a chunk cuts it at a line.
 *
 * Crashes: an ack of lines in memory appends {"acked":N} to the current
 * journal; a rotation's transaction records the last seq moved ("moved" in
 * meta) and saves the numbering ("next_seq") and is on disk
 * (synchronous=FULL) before its journal is emptied. An open moves the
 * journals' lines above both marks into the file, in seq order, and leaves
 * out a last line without its newline (a write a crash cut short: its commit
 * never returned). A write that fails is cut back off its journal; when even
 * that fails, the journal is marked torn and its next write starts with a
 * newline, so that the part left is a line of its own, which an open skips
 * like any line that is not a whole event. A spool written before journals
 * and chunks (a table of one row an event) is converted when opened.
 *
 * Power loss ([events] sync): with sync_each a commit fdatasyncs the journal
 * before it returns. Else (sync = group) the writer thread fdatasyncs the
 * journals at most EVENT_SPOOL_SYNC_MS after a commit, one fsync for every
 * commit since the last (unsynced, synced_at).
 *
 * State of one event:
 *
 *   state       to          by
 *   (none)      queued      event_spool_append (seq given; or dropped when full,
 *                           or while the moves fail and pending is at its cap:
 *                           event_spool_limit)
 *   queued      committed   a committer, one journal write per group
 *   queued      dropped     the committer, when the write failed (logged, counted)
 *   committed   (gone)      event_spool_ack, after the manager's 200
 *   committed   stored      event_spool_rotate, not acknowledged within 1-2 rotations
 *   stored      (gone)      event_spool_ack
 *
 * durable_seq is the highest seq such that no event at or below it is still
 * queued; event_spool_sync waits for it, event_spool_when_durable leaves a
 * callback that is called once it passed. One thread at a time commits
 * (`committing`): a thread that needs its events committed commits the whole
 * queue itself when nobody is committing, else the committer takes its events
 * in its next group (want > durable_seq) and calls its callback; so a reply
 * never waits for another thread to be scheduled. The writer thread commits
 * only what nobody waits for: when the queue holds EVENT_SPOOL_QUEUE_MAX
 * events or its oldest waited EVENT_SPOOL_FLUSH_MS. While events keep coming
 * it looks every EVENT_SPOOL_FLUSH_MS by itself; an append or a commit wakes
 * it only once it went to sleep (idle for EVENT_SPOOL_IDLE_MS).
 *
 * Locks: `lock` guards the queue and the counters (held only for memory work);
 * `j_lock` the journals and the pending lines (held across a commit's
 * write); `mv_lock` makes rotations, peeks and acks one at a time, so that no
 * line moves between memory and the file while a peek or an ack looks;
 * `db_lock` guards the SQLite file's writing connection (rotations, acks);
 * `rd_lock` the pusher's reading connection (WAL readers do not block the
 * writes). Order: mv_lock, then j_lock or db_lock; lock before j_lock; never
 * take `lock` while waiting for another.
 */
#include "gateway/event_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http_json.h"

/* What an event costs beyond its line (its share of a row and index entry). */
#define EVENT_SPOOL_ROW_OVERHEAD 16
/* A chunk holds at most this many events (the pusher's batch, GW_EVENTS_BATCH_MAX), */
#define EVENT_SPOOL_CHUNK_EVENTS 1000
/* and no more than about this many bytes of lines. */
#define EVENT_SPOOL_CHUNK_BYTES (256 * 1024)
/* A journal's lines not acknowledged meanwhile are moved into the SQLite file
 * after one to two of these (event_spool_rotate). */
#define EVENT_SPOOL_ROTATE_MS 1000
/* While the moves keep failing, one failure is logged this often. */
#define EVENT_SPOOL_SAY_MS 60000
/* Events nobody waits for are committed within this time, */
#define EVENT_SPOOL_FLUSH_MS 50
/* or once this many are queued. */
#define EVENT_SPOOL_QUEUE_MAX 1024
/* The writer looks at the queue every EVENT_SPOOL_FLUSH_MS instead of being
 * woken by appends, until the spool was idle this long. */
#define EVENT_SPOOL_IDLE_MS 1000
/* sync = group: commits are fsynced (the WAL's fdatasync) by the writer thread
 * at most this long after they were written. */
#define EVENT_SPOOL_SYNC_MS 100
/*
 * While the SQLite file refuses the moves (read-only, locked, full, damaged),
 * the committed lines stay in memory and in the journals, acknowledged or not:
 * at most this many bytes (or max_bytes, when smaller), then appends are
 * dropped until a move succeeds. Far above what two rotations take in while
 * moves work (a second or two of events).
 */
#define EVENT_SPOOL_PENDING_MAX ((uint64_t)64 * 1024 * 1024)

/* One queued event: its line after the seq ("at":...},\n), written when appended. */
struct event_spool_item {
	int64_t seq, at;
	char *text;
	size_t len;    /* of text */
	uint64_t size; /* counted against max_bytes: the whole line + EVENT_SPOOL_ROW_OVERHEAD */
	struct event_spool_item *next;
};

/* A callback for when seq is durable (event_spool_when_durable). */
struct event_spool_waiter {
	int64_t seq;
	event_spool_done_fn fn;
	void *arg;
	struct event_spool_waiter *next;
};

/*
 * A failure that repeats (a journal write, a move): how many since the last
 * success, and when one of them was last logged. It is said at first, then
 * once every EVENT_SPOOL_SAY_MS while it lasts, and when it ends.
 */
struct event_spool_failing {
	uint64_t count;
	int64_t said_at;
};

/* Whether the failure happening now is to be logged. */
static bool event_spool_failing_say(const struct event_spool_failing *f, int64_t now)
{
	return f->count == 0 || now - f->said_at >= EVENT_SPOOL_SAY_MS;
}

/* Counts a failure that happened now; said: it was logged. */
static void event_spool_failing_add(struct event_spool_failing *f, int64_t now, bool said)
{
	if (said)
		f->said_at = now;
	f->count++;
}

struct event_spool {
	sqlite3 *db;
	pthread_mutex_t db_lock;
	pthread_mutex_t lock;
	pthread_cond_t work;	/* the writer: something queued, or stopping */
	pthread_cond_t durable; /* sync waiters: durable_seq moved */
	struct event_spool_item *head, *tail;
	uint64_t queued;      /* events in head..tail */
	int64_t queued_since; /* monotonic ms of the oldest queued event */
	struct event_spool_waiter *waiters;
	int64_t next_seq;
	int64_t durable_seq;
	int64_t want; /* the highest seq a sync or a callback waits for */
	uint64_t bytes, count, dropped;
	/* the SQLite file's statements (db_lock) */
	sqlite3_stmt *st_insert;
	/* the journals (j_lock): jfd[jcur] takes the commits (O_APPEND), jlen
	 * their bytes. pending holds the lines of both not moved into chunks, in
	 * seq order: [0, split) the other journal's, [split, len) the current
	 * one's; the lines before head were acknowledged from memory. */
	pthread_mutex_t j_lock;
	int jfd[2];
	off_t jlen[2];
	/* the journal may end with part of a line: a write failed and so did its
	 * cut-back; the next write to it starts with a newline */
	bool torn[2];
	struct event_spool_failing write_failing; /* (j_lock) journal writes */
	int jcur;
	struct strbuf pending;
	size_t head_off, split;
	pthread_mutex_t mv_lock; /* rotations, peeks and acks: one at a time */
	uint64_t stored;	 /* (mv_lock) events in the SQLite file */
	bool unmoved;		 /* (lock) pending holds lines */
	int64_t rotated_at;	 /* (lock) monotonic ms of the last rotation */
	/* pending.len, set under j_lock whenever it changes, read under lock */
	atomic_size_t held;
	/* (lock) the last move into the SQLite file failed (event_spool_limit) */
	bool unmovable;
	struct event_spool_failing move_failing; /* (writer) moves into the file */
	uint64_t spool_max;			 /* as opened */
	/* (lock) what appends may take: spool_max, or 0 while the moves fail and
	 * the pending lines are at their cap */
	uint64_t max_bytes;
	bool stopping, stopped;
	bool committing; /* a thread is in event_spool_drain */
	bool asleep;	 /* the writer waits without a deadline: appends wake it */
	int64_t busy_at; /* monotonic ms the writer last saw something to do */
	/* sync = group (!sync_each): commits are not fsynced by their committer; the
	 * writer fdatasyncs the journals at most EVENT_SPOOL_SYNC_MS after one */
	bool sync_each;
	bool unsynced;	   /* a commit since the writer's last fsync */
	int64_t synced_at; /* monotonic ms of that fsync's start */
	uint64_t syncs;	   /* the writer's fsyncs, for the tests */
	/* the pusher's reads (peek, the oldest event's time): a connection of their
	 * own, so that they never hold db_lock against the commits (WAL readers
	 * do not block the writer) */
	sqlite3 *rd_db;
	sqlite3_stmt *st_peek, *st_oldest;
	pthread_mutex_t rd_lock;
	char *path;
	bool created;
	pthread_t writer;
};

/* Runs sql; a failure is logged when say. 0 or -EIO. */
static int event_spool_exec_say(sqlite3 *db, const char *sql, bool say)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		if (say)
			log_error("events.spool_sql_failed", "error=\"%s\"",
				  msg != NULL ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int event_spool_exec(sqlite3 *db, const char *sql)
{
	return event_spool_exec_say(db, sql, true);
}

/* Runs a prepared statement that returns no row. 0 or -EIO. */
static int event_spool_step(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
	sqlite3_reset(s);
	return rc;
}

static void event_spool_item_free(struct event_spool_item *it)
{
	free(it->text);
	free(it);
}

/* Bytes of the line {"seq":N,<text> (the seq's digits and 8). */
static size_t event_spool_line_len(int64_t seq, size_t text_len)
{
	size_t digits = 1;
	for (int64_t v = seq; v >= 10; v /= 10)
		digits++;
	return 8 + digits + text_len;
}

void event_spool_line_start(struct strbuf *b, int64_t at, const char *type, const char *msg_id)
{
	strbuf_reserve(b, 512); /* most events fit: one allocation */
	strbuf_puts(b, "\"at\":");
	strbuf_add_int(b, at);
	strbuf_puts(b, ",\"type\":");
	(void)http_json_put_string(b, type, SIZE_MAX);
	if (msg_id != NULL) {
		strbuf_puts(b, ",\"msg_id\":");
		(void)http_json_put_string(b, msg_id, SIZE_MAX);
	}
	strbuf_puts(b, ",\"detail\":");
}

/* Opens a line in b with its seq: {"seq":N, (the rest is an item's text). */
static void event_spool_line_seq(struct strbuf *b, int64_t seq)
{
	strbuf_puts(b, "{\"seq\":");
	strbuf_add_int(b, seq);
	strbuf_addc(b, ',');
}

/* Ends the line b holds: "},\n" after its detail, a raw newline in it made a
 * space. */
static void event_spool_line_end(struct strbuf *b)
{
	for (char *nl = memchr(b->p, '\n', b->len); nl != NULL;
	     nl = memchr(nl, '\n', (size_t)(b->p + b->len - nl)))
		*nl = ' ';
	strbuf_puts(b, "},\n");
}

/* The bytes of the line at p: through its newline, or to stop when it has none. */
static size_t event_spool_line(const char *p, const char *stop)
{
	const char *nl = memchr(p, '\n', (size_t)(stop - p));
	return nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(stop - p);
}

/* The seq and time of a line {"seq":N,"at":T,...},\n of len bytes. false: not one. */
static bool event_spool_line_parse(const char *p, size_t len, int64_t *seq, int64_t *at)
{
	if (len < 16 || memcmp(p, "{\"seq\":", 7) != 0 || p[len - 1] != '\n')
		return false;
	/* the line ends in a newline: the numbers cannot run past it */
	char *end = NULL, *end2 = NULL;
	long long s = strtoll(p + 7, &end, 10);
	if (end == p + 7 || s <= 0 || (size_t)(end - p) + 6 > len ||
	    memcmp(end, ",\"at\":", 6) != 0)
		return false;
	long long t = strtoll(end + 6, &end2, 10);
	if (end2 == end + 6)
		return false;
	*seq = s;
	*at = t;
	return true;
}

/*
 * Inserts the lines of text (events, seqs growing) as chunks of at most
 * EVENT_SPOOL_CHUNK_EVENTS consecutive events and about EVENT_SPOOL_CHUNK_BYTES,
 * with st (INSERT INTO chunks), in the caller's transaction. *last gets the
 * last seq. 0 or -EIO (also for a line that is not an event's).
 */
static int event_spool_put_lines(sqlite3_stmt *st, const char *text, size_t len, int64_t *last,
				 uint64_t *count)
{
	int rc = 0;
	*count = 0;
	size_t off = 0;
	while (rc == 0 && off < len) {
		size_t start = off;
		int64_t first = 0, at = 0, end = 0, k = 0;
		uint64_t size = 0;
		while (off < len && k < EVENT_SPOOL_CHUNK_EVENTS &&
		       (k == 0 || off - start < EVENT_SPOOL_CHUNK_BYTES)) {
			size_t line = event_spool_line(text + off, text + len);
			int64_t seq = 0, t = 0;
			if (!event_spool_line_parse(text + off, line, &seq, &t)) {
				log_error("events.spool_corrupt", "offset=%zu", off);
				rc = -EIO;
				break;
			}
			if (k > 0 && seq != end + 1)
				break;
			if (k == 0) {
				first = seq;
				at = t;
			}
			end = seq;
			size += line + EVENT_SPOOL_ROW_OVERHEAD;
			k++;
			off += line;
		}
		if (rc < 0)
			break;
		sqlite3_bind_int64(st, 1, first);
		sqlite3_bind_int64(st, 2, end);
		sqlite3_bind_int64(st, 3, at);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
		sqlite3_bind_text(st, 5, text + start, (int)(off - start), SQLITE_STATIC);
		rc = event_spool_step(st);
		*last = end;
		*count += (uint64_t)k;
	}
	sqlite3_clear_bindings(st);
	return rc;
}

/*
 * One transaction of the SQLite file (db; insert: its INSERT INTO chunks):
 * the lines of text[0, len) become chunks and are recorded as moved, and the
 * numbering is saved above top, the highest seq the journal held (lines
 * acknowledged from memory leave no row: the numbering must outlive them).
 * *n gets how many events were stored. 0 or -EIO (rolled back; logged when say).
 */
static int event_spool_store_lines(sqlite3 *db, sqlite3_stmt *insert, const char *text, size_t len,
				   int64_t top, bool say, uint64_t *n)
{
	char sql[160];
	int64_t last = 0;
	*n = 0;
	int rc = event_spool_exec_say(db, "BEGIN IMMEDIATE", say);
	if (rc == 0 && len > 0)
		rc = event_spool_put_lines(insert, text, len, &last, n);
	if (rc == 0 && last > 0) {
		snprintf(sql, sizeof(sql),
			 "INSERT OR REPLACE INTO meta (key, value) VALUES ('moved', %lld)",
			 (long long)last);
		rc = event_spool_exec_say(db, sql, say);
	}
	if (rc == 0) {
		snprintf(sql, sizeof(sql),
			 "UPDATE meta SET value = max(value, %lld) WHERE key = 'next_seq'",
			 (long long)top + 1);
		rc = event_spool_exec_say(db, sql, say);
	}
	if (rc == 0)
		rc = event_spool_exec_say(db, "COMMIT", say);
	if (rc < 0) {
		/* said before the rollback clears SQLite's message */
		if (say)
			log_error("events.spool_write_failed", "path=%s error=\"%s\"",
				  sqlite3_db_filename(db, "main"), sqlite3_errmsg(db));
		(void)event_spool_exec_say(db, "ROLLBACK", say);
	}
	return rc < 0 ? -EIO : 0;
}

/* Writes all of buf to fd; *done gets the bytes written (also on failure). 0 or -errno. */
static int event_spool_write_all(int fd, const char *buf, size_t len, size_t *done)
{
	*done = 0;
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		buf += w;
		len -= (size_t)w;
		*done += (size_t)w;
	}
	return 0;
}

/*
 * Appends the lines of buf to journal i (j_lock held), in one write, with
 * sync: fdatasynced. When the journal may end with part of a line (torn[i]),
 * a newline goes first, so that the lines are not glued to it (an open then
 * skips that part as a line of its own). 0, or -errno: the journal is cut back
 * to where it was; when that fails too (logged), jlen[i] counts what the
 * write left and torn[i] says whether it ends inside a line.
 */
static int event_spool_journal_write(struct event_spool *sp, int i, const char *buf, size_t len,
				     bool sync)
{
	int fd = sp->jfd[i];
	size_t done = 0;
	int rc = 0;
	if (sp->torn[i]) {
		rc = event_spool_write_all(fd, "\n", 1, &done);
		if (rc == 0) {
			sp->jlen[i]++;
			sp->torn[i] = false;
		}
	}
	if (rc == 0)
		rc = event_spool_write_all(fd, buf, len, &done);
	if (rc == 0 && sync && fdatasync(fd) < 0)
		rc = -errno;
	if (rc == 0) {
		sp->jlen[i] += (off_t)len;
		return 0;
	}
	if (ftruncate(fd, sp->jlen[i]) < 0) {
		log_error("events.spool_write_failed", "path=%s-j%d error=\"cannot cut back: %s\"",
			  sp->path, i, strerror(errno));
		sp->jlen[i] += (off_t)done;
		if (done > 0)
			sp->torn[i] = buf[done - 1] != '\n';
	}
	return rc;
}

/*
 * Commits a group: its lines appended to pending (where the pusher reads them)
 * and, from there, to the current journal in one write (with sync_each,
 * fdatasynced). 0 or -EIO (pending and the journal are cut back to where they
 * were; logged, once a minute while writes keep failing). Only the committer
 * calls it.
 */
static int event_spool_commit(struct event_spool *sp, const struct event_spool_item *list)
{
	pthread_mutex_lock(&sp->j_lock);
	struct strbuf *b = &sp->pending;
	size_t from = b->len;
	for (const struct event_spool_item *it = list; it != NULL; it = it->next) {
		event_spool_line_seq(b, it->seq);
		strbuf_add(b, it->text, it->len);
	}
	int cur = sp->jcur;
	int rc = event_spool_journal_write(sp, cur, b->p + from, b->len - from, sp->sync_each);
	if (rc < 0) {
		strbuf_truncate(b, from);
		int64_t now = clock_mono_ms();
		bool say = event_spool_failing_say(&sp->write_failing, now);
		if (say)
			log_error("events.spool_write_failed",
				  "path=%s-j%d error=\"%s\" failed=%llu", sp->path, cur,
				  strerror(-rc), (unsigned long long)sp->write_failing.count + 1);
		event_spool_failing_add(&sp->write_failing, now, say);
	} else if (sp->write_failing.count > 0) {
		log_info("events.spool_writes_resumed", "path=%s-j%d failed=%llu", sp->path, cur,
			 (unsigned long long)sp->write_failing.count);
		sp->write_failing.count = 0;
	}
	atomic_store(&sp->held, b->len);
	pthread_mutex_unlock(&sp->j_lock);
	return rc < 0 ? -EIO : 0;
}

/* The seq of the last line of text[0, len) (0: none). */
static int64_t event_spool_last_seq(const char *text, size_t len)
{
	if (len < 2)
		return 0;
	const char *p = memrchr(text, '\n', len - 1);
	p = p != NULL ? p + 1 : text;
	int64_t seq = 0, at = 0;
	return event_spool_line_parse(p, (size_t)(text + len - p), &seq, &at) ? seq : 0;
}

/*
 * A rotation, every EVENT_SPOOL_ROTATE_MS while lines are pending (all: when
 * closing, with nothing committing). The other journal's lines (all: both
 * journals') not acknowledged meanwhile are moved into chunks, in one
 * transaction that also records the last seq moved and saves the numbering;
 * then that journal is emptied and takes the commits, and the current one's
 * lines wait one rotation more. So what the pusher has acknowledged within
 * EVENT_SPOOL_ROTATE_MS, the usual case while the manager keeps up, never
 * reaches the SQLite file. 0, or -EIO (logged when say; nothing changed, tried
 * again).
 */
static int event_spool_rotate(struct event_spool *sp, bool all, bool say)
{
	pthread_mutex_lock(&sp->mv_lock);
	pthread_mutex_lock(&sp->j_lock);
	size_t end = all ? sp->pending.len : sp->split;
	struct strbuf text = STRBUF_INIT;
	if (sp->head_off < end)
		strbuf_add(&text, sp->pending.p + sp->head_off, end - sp->head_off);
	int64_t top = event_spool_last_seq(sp->pending.p, end);
	int old = 1 - sp->jcur;
	pthread_mutex_unlock(&sp->j_lock);

	int rc = 0;
	uint64_t n = 0;
	if (top > 0) {
		pthread_mutex_lock(&sp->db_lock);
		rc = event_spool_store_lines(sp->db, sp->st_insert, text.p, text.len, top, say, &n);
		pthread_mutex_unlock(&sp->db_lock);
	}
	strbuf_free(&text);
	if (rc < 0) {
		pthread_mutex_unlock(&sp->mv_lock);
		return rc;
	}
	/* every line of the journal is in a chunk or acknowledged now (one left
	 * by a failed truncate is at or below "moved" or "next_seq": an open
	 * skips it; the journal keeps its length, for a cut-back to keep it) */
	bool emptied[2] = {false, false};
	for (int i = 0; i < 2; i++) {
		if (i != old && !all)
			continue;
		emptied[i] = ftruncate(sp->jfd[i], 0) == 0;
		if (!emptied[i])
			log_warn("events.spool_truncate_failed", "path=%s-j%d error=\"%s\"",
				 sp->path, i, strerror(errno));
	}
	pthread_mutex_lock(&sp->j_lock);
	if (end > 0) {
		memmove(sp->pending.p, sp->pending.p + end, sp->pending.len - end);
		strbuf_truncate(&sp->pending, sp->pending.len - end);
	}
	sp->head_off = sp->head_off > end ? sp->head_off - end : 0;
	for (int i = 0; i < 2; i++) {
		if (emptied[i]) {
			sp->jlen[i] = 0;
			sp->torn[i] = false;
		}
	}
	if (!all)
		sp->jcur = old;
	sp->split = sp->pending.len;
	atomic_store(&sp->held, sp->pending.len);
	pthread_mutex_unlock(&sp->j_lock);
	sp->stored += n;
	pthread_mutex_unlock(&sp->mv_lock);
	return 0;
}

/*
 * Holds the appends to what memory may take (lock held; after a commit or a
 * move): while the moves into the SQLite file fail and the pending lines fill
 * their cap, appends are dropped and counted as when the spool is full
 * (max_bytes 0; the caller logs, event_spool_stats says why); once a move
 * succeeds, they are taken again.
 */
static void event_spool_limit(struct event_spool *sp)
{
	uint64_t cap =
	    sp->spool_max < EVENT_SPOOL_PENDING_MAX ? sp->spool_max : EVENT_SPOOL_PENDING_MAX;
	sp->max_bytes = sp->unmovable && atomic_load(&sp->held) >= cap ? 0 : sp->spool_max;
}

/* True when lines are pending. */
static bool event_spool_pending(struct event_spool *sp)
{
	pthread_mutex_lock(&sp->j_lock);
	bool any = sp->pending.len > 0;
	pthread_mutex_unlock(&sp->j_lock);
	return any;
}

/* True when a group should be committed now. lock held. */
static bool event_spool_due(const struct event_spool *sp, int64_t now)
{
	return sp->head != NULL &&
	       (sp->stopping || sp->want > sp->durable_seq || sp->queued >= EVENT_SPOOL_QUEUE_MAX ||
		now - sp->queued_since >= EVENT_SPOOL_FLUSH_MS);
}

/*
 * Commits groups while one is due, in the calling thread, which becomes the
 * committer (sp->committing; nobody else is). After each group it calls the
 * callbacks of the events now on disk, without the lock. lock held on entry and
 * on return.
 */
static void event_spool_drain(struct event_spool *sp)
{
	sp->committing = true;
	while (event_spool_due(sp, clock_mono_ms())) {
		struct event_spool_item *list = sp->head;
		int64_t last = sp->tail->seq;
		sp->head = sp->tail = NULL;
		sp->queued = 0;
		pthread_mutex_unlock(&sp->lock);

		int rc = event_spool_commit(sp, list);

		uint64_t n = 0, bytes = 0;
		while (list != NULL) {
			struct event_spool_item *next = list->next;
			n++;
			bytes += list->size;
			event_spool_item_free(list);
			list = next;
		}
		pthread_mutex_lock(&sp->lock);
		if (rc == 0 && !sp->sync_each && !sp->unsynced) {
			/* the writer fsyncs it within EVENT_SPOOL_SYNC_MS */
			sp->unsynced = true;
			if (sp->asleep)
				pthread_cond_signal(&sp->work);
		}
		if (rc == 0 && !sp->unmoved) {
			/* the writer's rotations take it from here */
			sp->unmoved = true;
			if (sp->asleep)
				pthread_cond_signal(&sp->work);
		}
		if (rc == 0 && sp->unmovable)
			event_spool_limit(sp);
		if (rc < 0) {
			/* the disk refused them: counted as dropped, the mail flows on */
			sp->dropped += n;
			sp->count -= n;
			sp->bytes -= bytes;
			log_error("events.dropped", "events=%llu reason=write_failed",
				  (unsigned long long)n);
		}
		sp->durable_seq = last;
		pthread_cond_broadcast(&sp->durable);
		/* the callbacks whose events are now on disk */
		struct event_spool_waiter *ready = NULL, **w = &sp->waiters;
		while (*w != NULL) {
			struct event_spool_waiter *it = *w;
			if (it->seq <= last) {
				*w = it->next;
				it->next = ready;
				ready = it;
			} else {
				w = &it->next;
			}
		}
		if (ready != NULL) {
			pthread_mutex_unlock(&sp->lock);
			while (ready != NULL) {
				struct event_spool_waiter *next = ready->next;
				ready->fn(ready->arg);
				free(ready);
				ready = next;
			}
			pthread_mutex_lock(&sp->lock);
		}
	}
	sp->committing = false;
	/* a sync waiting for another committer to finish may take over */
	pthread_cond_broadcast(&sp->durable);
	/* the writer: a deadline for what is left (unless it ticks), or the stop */
	if ((sp->head != NULL && sp->asleep) || sp->stopping)
		pthread_cond_signal(&sp->work);
}

/*
 * sync = group: makes every commit so far durable (power loss): fdatasyncs both
 * journals (a move's transaction is fsynced by SQLite, synchronous = FULL, before
 * its journal is emptied). No lock held.
 */
static void event_spool_fsync(struct event_spool *sp)
{
	for (int i = 0; i < 2; i++)
		if (fdatasync(sp->jfd[i]) < 0)
			log_error("events.spool_sync_failed", "path=%s-j%d error=\"%s\"", sp->path,
				  i, strerror(errno));
}

/* The absolute CLOCK_MONOTONIC time of the monotonic ms at. */
static struct timespec event_spool_deadline(int64_t at)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + (at - clock_mono_ms()) * 1000000;
	if (ns < 0)
		ns = 0;
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	return ts;
}

/*
 * The writer thread commits what nobody waits for (within EVENT_SPOOL_FLUSH_MS),
 * with sync = group fsyncs the commits (within EVENT_SPOOL_SYNC_MS) and, when
 * the spool closes, commits everything left. Groups somebody waits for are
 * committed by that thread itself (event_spool_when_durable, event_spool_sync):
 * no other thread has to be scheduled before a reply can go out.
 */
static void *event_spool_writer(void *arg)
{
	struct event_spool *sp = arg;
	pthread_mutex_lock(&sp->lock);
	for (;;) {
		int64_t now = clock_mono_ms();
		if (!sp->committing && event_spool_due(sp, now)) {
			event_spool_drain(sp);
			continue;
		}
		if (sp->unsynced && now - sp->synced_at >= EVENT_SPOOL_SYNC_MS) {
			/* covers every commit before it; a later one sets unsynced again */
			sp->unsynced = false;
			sp->synced_at = now;
			sp->syncs++;
			pthread_mutex_unlock(&sp->lock);
			event_spool_fsync(sp);
			pthread_mutex_lock(&sp->lock);
			continue;
		}
		if (sp->unmoved && !sp->stopping && now - sp->rotated_at >= EVENT_SPOOL_ROTATE_MS) {
			/* a commit meanwhile sets unmoved again */
			sp->unmoved = false;
			sp->rotated_at = now;
			pthread_mutex_unlock(&sp->lock);
			/* while the moves keep failing, one is said a minute, and then
			 * that they work again */
			struct event_spool_failing *f = &sp->move_failing;
			bool say = event_spool_failing_say(f, now);
			int rc = event_spool_rotate(sp, false, say);
			bool left = event_spool_pending(sp);
			if (rc < 0) {
				if (say && f->count > 0)
					log_error("events.spool_moves_failing",
						  "failed=%llu reason=\"moves into the spool file "
						  "keep failing; the events wait in the journals\"",
						  (unsigned long long)f->count + 1);
				event_spool_failing_add(f, now, say);
			} else if (f->count > 0) {
				log_info("events.spool_moves_resumed", "failed=%llu",
					 (unsigned long long)f->count);
				f->count = 0;
			}
			pthread_mutex_lock(&sp->lock);
			if (rc < 0 || left)
				sp->unmoved = true;
			/* the next try a whole interval after this one ended: one that
			 * waited for a locked file (busy_timeout) held mv_lock, and the
			 * pusher's peeks and acks need their turn */
			if (rc < 0)
				sp->rotated_at = clock_mono_ms();
			sp->unmovable = rc < 0;
			event_spool_limit(sp);
			continue;
		}
		if (sp->stopping && sp->head == NULL && !sp->committing)
			break; /* everything is written (the close moves what is pending) */
		/*
		 * Busy, it ticks every EVENT_SPOOL_FLUSH_MS and nobody wakes it (an
		 * append or a commit would cost the committer a wake-up and a context
		 * switch); idle for EVENT_SPOOL_IDLE_MS, it sleeps until an append, a
		 * commit to fsync and move, or the stop wakes it.
		 */
		if (sp->head != NULL || sp->committing || sp->unsynced || sp->unmoved)
			sp->busy_at = now;
		int64_t until = -1;
		if (sp->head != NULL && !sp->committing)
			until = sp->queued_since + EVENT_SPOOL_FLUSH_MS;
		if (sp->unmoved && (until < 0 || sp->rotated_at + EVENT_SPOOL_ROTATE_MS < until))
			until = sp->rotated_at + EVENT_SPOOL_ROTATE_MS;
		if (sp->unsynced && (until < 0 || sp->synced_at + EVENT_SPOOL_SYNC_MS < until))
			until = sp->synced_at + EVENT_SPOOL_SYNC_MS;
		if (until < 0 && now - sp->busy_at < EVENT_SPOOL_IDLE_MS)
			until = now + EVENT_SPOOL_FLUSH_MS;
		if (until < 0) {
			sp->asleep = true;
			pthread_cond_wait(&sp->work, &sp->lock);
			sp->asleep = false;
		} else {
			struct timespec ts = event_spool_deadline(until);
			pthread_cond_timedwait(&sp->work, &sp->lock, &ts);
		}
	}
	sp->stopped = true;
	pthread_cond_broadcast(&sp->durable);
	/* none can be left (every seq is below next_seq and all was written); for safety */
	struct event_spool_waiter *left = sp->waiters;
	sp->waiters = NULL;
	pthread_mutex_unlock(&sp->lock);
	while (left != NULL) {
		struct event_spool_waiter *next = left->next;
		left->fn(left->arg);
		free(left);
		left = next;
	}
	return NULL;
}

/* An integer from sql's first row (0 when none). */
static int event_spool_scalar(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	*out = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -EIO;
}

/*
 * A spool written before chunks has a table of one row an event: its events
 * become chunks (their numbers kept) and the table goes, in one transaction,
 * so that an upgrade sends every event once. 0 or -EIO (logged by the caller).
 */
static int event_spool_convert(sqlite3 *db, sqlite3_stmt *insert)
{
	int64_t old = 0;
	if (event_spool_scalar(db,
			       "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
			       " AND name = 'events'",
			       &old) < 0)
		return -EIO;
	if (old == 0)
		return 0;
	if (event_spool_exec(db, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	sqlite3_stmt *s = NULL;
	struct strbuf lines = STRBUF_INIT;
	uint64_t n = 0;
	int rc =
	    sqlite3_prepare_v2(db, "SELECT seq, at, type, msg_id, detail FROM events ORDER BY seq",
			       -1, &s, NULL) == SQLITE_OK
		? 0
		: -EIO;
	int step = SQLITE_DONE;
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(s, 2);
		const char *msg_id = (const char *)sqlite3_column_text(s, 3);
		const char *detail = (const char *)sqlite3_column_text(s, 4);
		struct strbuf line = STRBUF_INIT;
		event_spool_line_start(&line, sqlite3_column_int64(s, 1), type != NULL ? type : "",
				       msg_id);
		strbuf_puts(&line, detail != NULL ? detail : "{}");
		event_spool_line_end(&line);
		event_spool_line_seq(&lines, sqlite3_column_int64(s, 0));
		strbuf_add(&lines, line.p, line.len);
		strbuf_free(&line);
		n++;
	}
	if (step != SQLITE_DONE)
		rc = -EIO;
	sqlite3_finalize(s);
	int64_t last = 0;
	uint64_t count = 0;
	if (rc == 0)
		rc = event_spool_put_lines(insert, lines.p, lines.len, &last, &count);
	strbuf_free(&lines);
	if (rc == 0)
		rc = event_spool_exec(db, "DROP TABLE events");
	if (rc == 0)
		rc = event_spool_exec(db, "COMMIT");
	if (rc < 0) {
		(void)event_spool_exec(db, "ROLLBACK");
		return -EIO;
	}
	log_info("events.spool_converted", "events=%llu", (unsigned long long)n);
	return 0;
}

/* Reads all of fd into b. 0 or -errno. */
static int event_spool_read_all(int fd, struct strbuf *b)
{
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t r = pread(fd, buf, sizeof(buf), off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return 0;
		strbuf_add(b, buf, (size_t)r);
		off += r;
	}
}

/*
 * True when the line at p (len bytes, through its newline) is a whole event's
 * line, {"seq":N,"at":T,...},\n around one JSON object, with *seq and *at. At
 * open: a journal line can also be the part of a write that failed, ended by
 * the newline of the next one (event_spool_journal_write), or damage, which
 * the quick parse alone could take for an event.
 */
static bool event_spool_line_whole(const char *p, size_t len, int64_t *seq, int64_t *at)
{
	if (!event_spool_line_parse(p, len, seq, at) || memcmp(p + len - 2, ",\n", 2) != 0)
		return false;
	json_t *j = json_loadb(p, len - 2, JSON_ALLOW_NUL, NULL);
	bool whole = json_is_object(j);
	json_decref(j);
	return whole;
}

/* A journal line found at open: seq, where. */
struct event_spool_found {
	int64_t seq;
	const char *p;
	size_t len;
};

static int event_spool_found_cmp(const void *a, const void *b)
{
	const struct event_spool_found *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * At open: the events of the journals that no rotation took and the pusher
 * did not acknowledge (a crash, or a close whose rotation failed) become
 * chunks, in seq order, in one transaction that records them as moved; then
 * both journals are emptied. A line cut by a crash (no newline yet: its commit
 * never returned) is left out, and so is a line that is not a whole event's or
 * an {"acked":N} (the part a failed write left, or damage), counted and said
 * in the log. *top gets the highest seq of any event line (the numbering goes
 * on above it). 0 or -EIO (logged by the caller).
 */
static int event_spool_recover(sqlite3 *db, sqlite3_stmt *insert, const char *path,
			       const int jfd[2], int64_t *top)
{
	int64_t moved = 0, max_last = 0;
	if (event_spool_scalar(db, "SELECT coalesce(max(value), 0) FROM meta WHERE key = 'moved'",
			       &moved) < 0 ||
	    event_spool_scalar(db, "SELECT coalesce(max(last), 0) FROM chunks", &max_last) < 0)
		return -EIO;
	int64_t base = moved > max_last ? moved : max_last, acked = 0;
	struct strbuf text[2] = {STRBUF_INIT, STRBUF_INIT};
	struct event_spool_found *v = NULL;
	size_t n = 0, cap = 0, torn = 0, bad = 0;
	int rc = 0;
	*top = 0;
	for (int i = 0; rc == 0 && i < 2; i++) {
		rc = event_spool_read_all(jfd[i], &text[i]);
		size_t off = 0, len = text[i].len;
		while (rc == 0 && off < len) {
			const char *p = text[i].p + off;
			const char *nl = memchr(p, '\n', len - off);
			if (nl == NULL) {
				torn += len - off;
				break;
			}
			size_t line = (size_t)(nl - p) + 1;
			int64_t seq = 0, at = 0;
			off += line;
			if (line > 9 && memcmp(p, "{\"acked\":", 9) == 0) {
				/* {"acked":N}: the pusher's ack of lines in memory */
				char *e = NULL;
				int64_t a = strtoll(p + 9, &e, 10);
				if (e == p + 9 || (size_t)(e - p) + 2 != line || *e != '}') {
					bad++;
					continue;
				}
				acked = a > acked ? a : acked;
				continue;
			}
			if (!event_spool_line_whole(p, line, &seq, &at)) {
				bad++;
				continue;
			}
			*top = seq > *top ? seq : *top;
			if (seq <= base)
				continue; /* moved before */
			if (n == cap) {
				cap = cap == 0 ? 256 : cap * 2;
				v = xreallocarray(v, cap, sizeof(*v));
			}
			v[n++] = (struct event_spool_found){seq, p, line};
		}
	}
	/* the lines acknowledged from memory: taken already */
	size_t taken = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].seq > acked)
			v[taken++] = v[i];
	n = taken;
	if (rc == 0 && n > 0) {
		qsort(v, n, sizeof(*v), event_spool_found_cmp);
		struct strbuf lines = STRBUF_INIT;
		for (size_t i = 0; i < n; i++)
			if (i == 0 || v[i].seq != v[i - 1].seq)
				strbuf_add(&lines, v[i].p, v[i].len);
		uint64_t count = 0;
		rc = event_spool_store_lines(db, insert, lines.p, lines.len, *top, true, &count);
		strbuf_free(&lines);
	}
	free(v);
	strbuf_free(&text[0]);
	strbuf_free(&text[1]);
	if (rc < 0)
		return -EIO;
	if (torn > 0 || bad > 0)
		log_warn("events.spool_journal_damaged",
			 "path=%s torn_bytes=%zu bad_lines=%zu reason=\"the end of a write a "
			 "crash cut short or that failed (its events were never acknowledged "
			 "to anyone), or damage: left out\"",
			 path, torn, bad);
	if (n > 0)
		log_info("events.spool_recovered", "path=%s events=%zu", path, n);
	for (int i = 0; i < 2; i++)
		if (ftruncate(jfd[i], 0) < 0)
			return -errno;
	return 0;
}

int event_spool_open(const char *path, uint64_t max_bytes, bool sync_each, struct event_spool **out)
{
	*out = NULL;
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		log_error("events.spool_open_failed", "path=%s error=\"%s\"", path,
			  db != NULL ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	int64_t next = 0, max_seq = 0, bytes = 0, count = 0;
	bool created = false;
	int jfd[2] = {-1, -1};
	/* the SQLite file is written off the replies' path (moves, acks): each of
	 * its commits is on disk when it returns, before a journal is emptied */
	int rc = event_spool_exec(db, "PRAGMA synchronous = FULL");
	if (rc == 0)
		rc = event_spool_exec(db, "PRAGMA journal_mode = WAL;"
					  "CREATE TABLE IF NOT EXISTS chunks ("
					  "  first INTEGER PRIMARY KEY," /* its first event's seq */
					  "  last INTEGER NOT NULL,"	 /* its last event's */
					  "  at INTEGER NOT NULL,"   /* its first event's time */
					  "  size INTEGER NOT NULL," /* counted against max_bytes */
					  "  text TEXT NOT NULL);"
					  "CREATE TABLE IF NOT EXISTS meta ("
					  "  key TEXT PRIMARY KEY,"
					  "  value INTEGER NOT NULL);");
	sqlite3_stmt *insert = NULL;
	if (rc == 0 && sqlite3_prepare_v2(db,
					  "INSERT INTO chunks (first, last, at, size, text)"
					  " VALUES (?, ?, ?, ?, ?)",
					  -1, &insert, NULL) != SQLITE_OK)
		rc = -EIO;
	if (rc == 0)
		rc = event_spool_convert(db, insert);
	for (int i = 0; rc == 0 && i < 2; i++) {
		char *j = xasprintf("%s-j%d", path, i);
		jfd[i] = open(j, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (jfd[i] < 0) {
			log_error("events.spool_open_failed", "path=%s error=\"%s\"", j,
				  strerror(errno));
			rc = -EIO;
		}
		free(j);
	}
	int64_t top = 0;
	if (rc == 0)
		rc = event_spool_recover(db, insert, path, jfd, &top);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT value FROM meta WHERE key = 'next_seq'", &next);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT coalesce(max(last), 0) FROM chunks", &max_seq);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT coalesce(sum(size), 0) FROM chunks", &bytes);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT coalesce(sum(last - first + 1), 0) FROM chunks",
					&count);
	if (rc == 0 && next == 0 && max_seq == 0) {
		/* a new spool: numbers above any an earlier spool of this gateway gave */
		next = clock_now_ms() * 1000;
		created = true;
		char sql[128];
		snprintf(sql, sizeof(sql),
			 "INSERT INTO meta (key, value) VALUES ('next_seq', %lld)",
			 (long long)next);
		rc = event_spool_exec(db, sql);
	}
	if (rc < 0) {
		log_error("events.spool_open_failed", "path=%s error=\"%s\"", path,
			  sqlite3_errmsg(db));
		sqlite3_finalize(insert);
		sqlite3_close(db);
		for (int i = 0; i < 2; i++)
			if (jfd[i] >= 0)
				close(jfd[i]);
		return -EIO;
	}
	struct event_spool *sp = xcalloc(1, sizeof(*sp));
	sp->st_insert = insert;
	sp->db = db;
	sp->path = xstrdup(path);
	sp->sync_each = sync_each;
	sp->jfd[0] = jfd[0];
	sp->jfd[1] = jfd[1];
	sp->next_seq = next > max_seq ? next : max_seq + 1;
	if (sp->next_seq <= top)
		sp->next_seq = top + 1;
	sp->stored = (uint64_t)count;
	sp->durable_seq = sp->next_seq - 1;
	sp->bytes = (uint64_t)bytes;
	sp->count = (uint64_t)count;
	sp->spool_max = max_bytes;
	sp->max_bytes = max_bytes;
	atomic_init(&sp->held, 0);
	sp->created = created;
	pthread_mutex_init(&sp->db_lock, NULL);
	pthread_mutex_init(&sp->j_lock, NULL);
	pthread_mutex_init(&sp->mv_lock, NULL);
	pthread_mutex_init(&sp->rd_lock, NULL);
	pthread_mutex_init(&sp->lock, NULL);
	/* the writer's deadline is on the monotonic clock */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&sp->durable, NULL);
	if (pthread_create(&sp->writer, NULL, event_spool_writer, sp) != 0)
		panic("events: cannot start the spool writer");
	*out = sp;
	return 0;
}

void event_spool_close(struct event_spool *sp)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->stopping = true;
	pthread_cond_signal(&sp->work);
	pthread_mutex_unlock(&sp->lock);
	pthread_join(sp->writer, NULL);
	/* what is pending goes into the file; failing that, it stays in the
	 * journals (made durable here) for the next open */
	if (event_spool_rotate(sp, true, true) < 0)
		event_spool_fsync(sp);
	sqlite3_finalize(sp->st_insert);
	sqlite3_finalize(sp->st_peek);
	sqlite3_finalize(sp->st_oldest);
	sqlite3_close(sp->rd_db);
	sqlite3_close(sp->db);
	/* empty after the writer's last move; else the next open moves the rest */
	close(sp->jfd[0]);
	close(sp->jfd[1]);
	free(sp->path);
	strbuf_free(&sp->pending);
	pthread_mutex_destroy(&sp->db_lock);
	pthread_mutex_destroy(&sp->j_lock);
	pthread_mutex_destroy(&sp->mv_lock);
	pthread_mutex_destroy(&sp->rd_lock);
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->work);
	pthread_cond_destroy(&sp->durable);
	free(sp);
}

int64_t event_spool_append_line(struct event_spool *sp, struct strbuf *b)
{
	/* the line is ended outside the lock; only its seq is added under it */
	event_spool_line_end(b);
	struct event_spool_item *it = xcalloc(1, sizeof(*it));
	it->at = strtoll(b->p + strlen("\"at\":"), NULL, 10); /* event_spool_line_start's */
	it->len = b->len;
	it->text = strbuf_take(b);
	pthread_mutex_lock(&sp->lock);
	uint64_t size = event_spool_line_len(sp->next_seq, it->len) + EVENT_SPOOL_ROW_OVERHEAD;
	if (sp->stopping || sp->bytes + size > sp->max_bytes) {
		sp->dropped++;
		pthread_mutex_unlock(&sp->lock);
		event_spool_item_free(it);
		return 0;
	}
	/* numbered under the lock: the queue is in seq order */
	it->seq = sp->next_seq++;
	it->size = size;
	if (sp->tail != NULL) {
		sp->tail->next = it;
	} else {
		sp->head = it;
		sp->queued_since = clock_mono_ms();
	}
	sp->tail = it;
	sp->queued++;
	/* the writer ticks while busy; asleep, it needs a deadline for these */
	if (sp->asleep || (!sp->committing && sp->queued == EVENT_SPOOL_QUEUE_MAX)) {
		sp->asleep = false;
		pthread_cond_signal(&sp->work);
	}
	sp->bytes += it->size;
	sp->count++;
	int64_t seq = it->seq;
	pthread_mutex_unlock(&sp->lock);
	return seq;
}

int64_t event_spool_append(struct event_spool *sp, int64_t at, const char *type, const char *msg_id,
			   const char *detail)
{
	struct strbuf b = STRBUF_INIT;
	event_spool_line_start(&b, at, type, msg_id);
	strbuf_puts(&b, detail);
	return event_spool_append_line(sp, &b);
}

int event_spool_sync(struct event_spool *sp, int64_t seq)
{
	pthread_mutex_lock(&sp->lock);
	if (sp->want < seq)
		sp->want = seq;
	while (sp->durable_seq < seq && !sp->stopped) {
		if (!sp->committing && sp->head != NULL)
			event_spool_drain(sp); /* this thread commits */
		else
			pthread_cond_wait(&sp->durable, &sp->lock);
	}
	int rc = sp->durable_seq >= seq ? 0 : -ESHUTDOWN;
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

void event_spool_when_durable(struct event_spool *sp, int64_t seq, event_spool_done_fn fn,
			      void *arg)
{
	pthread_mutex_lock(&sp->lock);
	if (sp->durable_seq >= seq || sp->stopped) {
		pthread_mutex_unlock(&sp->lock);
		fn(arg);
		return;
	}
	struct event_spool_waiter *w = xmalloc(sizeof(*w));
	w->seq = seq;
	w->fn = fn;
	w->arg = arg;
	w->next = sp->waiters;
	sp->waiters = w;
	if (sp->want < seq)
		sp->want = seq;
	/* the committer at work takes this group next; else this thread commits */
	if (!sp->committing)
		event_spool_drain(sp);
	pthread_mutex_unlock(&sp->lock);
}

/* The reader connection and its statements (rd_lock held). 0 or -EIO (logged). */
static int event_spool_reader(struct event_spool *sp)
{
	if (sp->rd_db != NULL)
		return 0;
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(sp->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT first, last, text FROM chunks ORDER BY first", -1,
			       &sp->st_peek, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT at FROM chunks ORDER BY first LIMIT 1", -1,
			       &sp->st_oldest, NULL) != SQLITE_OK) {
		log_error("events.spool_read_failed", "error=\"%s\"",
			  db != NULL ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_finalize(sp->st_peek);
		sqlite3_finalize(sp->st_oldest);
		sp->st_peek = sp->st_oldest = NULL;
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	sp->rd_db = db;
	return 0;
}

/*
 * Appends to out the lines of text[0, len) that fit in a batch holding *k
 * events and *bytes already: up to max_events and max_bytes in all, always
 * one in an empty batch. *k and *bytes grow; *last gets the seq of the last
 * line taken.
 */
static void event_spool_take(const char *text, size_t len, size_t max_events, size_t max_bytes,
			     struct strbuf *out, size_t *k, size_t *bytes, int64_t *last)
{
	const char *p = text, *stop = text + len;
	while (p < stop && *k < max_events) {
		size_t line = event_spool_line(p, stop);
		if (*k > 0 && *bytes + line > max_bytes)
			break;
		(*k)++;
		*bytes += line;
		p += line;
	}
	if (p == text)
		return;
	strbuf_add(out, text, (size_t)(p - text));
	*last = event_spool_last_seq(text, (size_t)(p - text));
}

int event_spool_peek(struct event_spool *sp, size_t max_events, size_t max_bytes,
		     struct strbuf *out, size_t *n, int64_t *last)
{
	*n = 0;
	*last = 0;
	size_t start = out->len, k = 0, bytes = 0;
	/* the file's chunks come first (older), then the lines pending in memory:
	 * no rotation moves lines between the two meanwhile */
	pthread_mutex_lock(&sp->mv_lock);
	int step = SQLITE_DONE;
	bool limit = false;
	if (sp->stored > 0) {
		pthread_mutex_lock(&sp->rd_lock);
		if (event_spool_reader(sp) < 0) {
			pthread_mutex_unlock(&sp->rd_lock);
			pthread_mutex_unlock(&sp->mv_lock);
			return -EIO;
		}
		sqlite3_stmt *s = sp->st_peek;
		while (k < max_events && (step = sqlite3_step(s)) == SQLITE_ROW) {
			int64_t first = sqlite3_column_int64(s, 0),
				end = sqlite3_column_int64(s, 1);
			const char *text = (const char *)sqlite3_column_text(s, 2);
			size_t len = (size_t)sqlite3_column_bytes(s, 2);
			if (text == NULL || end < first)
				continue;
			uint64_t count = (uint64_t)(end - first) + 1;
			if (k + count <= max_events && bytes + len <= max_bytes) {
				/* the whole chunk: its lines as they are */
				strbuf_add(out, text, len);
				k += count;
				bytes += len;
				*last = end;
				continue;
			}
			/* the batch ends inside this chunk */
			event_spool_take(text, len, max_events, max_bytes, out, &k, &bytes, last);
			limit = true;
			break;
		}
		sqlite3_reset(s);
		pthread_mutex_unlock(&sp->rd_lock);
	}
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		pthread_mutex_unlock(&sp->mv_lock);
		strbuf_truncate(out, start);
		*last = 0;
		return -EIO;
	}
	if (!limit && k < max_events) {
		pthread_mutex_lock(&sp->j_lock);
		if (sp->head_off < sp->pending.len)
			event_spool_take(sp->pending.p + sp->head_off,
					 sp->pending.len - sp->head_off, max_events, max_bytes, out,
					 &k, &bytes, last);
		pthread_mutex_unlock(&sp->j_lock);
	}
	pthread_mutex_unlock(&sp->mv_lock);
	/* the last line's ",\n" is not part of a list */
	if (k > 0 && out->len >= start + 2 && out->p[out->len - 2] == ',' &&
	    out->p[out->len - 1] == '\n')
		strbuf_truncate(out, out->len - 2);
	*n = k;
	return 0;
}

/*
 * Cuts the chunk that holds seq and events after it (db_lock held, in the
 * ack's transaction): its lines up to seq go, the rest stays a chunk from
 * seq + 1. *bytes and *count get what went. 0 (also when no chunk is cut) or
 * -EIO.
 */
static int event_spool_cut(struct event_spool *sp, int64_t seq, int64_t *bytes, int64_t *count)
{
	*bytes = *count = 0;
	sqlite3_stmt *s = NULL, *u = NULL;
	if (sqlite3_prepare_v2(sp->db,
			       "SELECT first, last, size, text FROM chunks"
			       " WHERE first <= ?1 AND last > ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(s, 1, seq);
	int step = sqlite3_step(s);
	int rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -EIO;
	if (step == SQLITE_ROW) {
		int64_t first = sqlite3_column_int64(s, 0), size = sqlite3_column_int64(s, 2);
		const char *text = (const char *)sqlite3_column_text(s, 3);
		size_t len = (size_t)sqlite3_column_bytes(s, 3), off = 0;
		int64_t k = 0, rest_seq = 0, rest_at = 0;
		while (text != NULL && k < seq - first + 1 && off < len) {
			off += event_spool_line(text + off, text + len);
			k++;
		}
		/* the rest starts with the line of seq + 1 */
		if (k != seq - first + 1 || off >= len ||
		    !event_spool_line_parse(text + off, event_spool_line(text + off, text + len),
					    &rest_seq, &rest_at) ||
		    rest_seq != seq + 1) {
			log_error("events.spool_corrupt", "first=%lld seq=%lld", (long long)first,
				  (long long)seq);
			rc = -EIO;
		} else if (sqlite3_prepare_v2(sp->db,
					      "UPDATE chunks SET first = ?, at = ?, size = ?,"
					      " text = ? WHERE first = ?",
					      -1, &u, NULL) == SQLITE_OK) {
			*count = k;
			*bytes = (int64_t)off + k * EVENT_SPOOL_ROW_OVERHEAD;
			sqlite3_bind_int64(u, 1, seq + 1);
			sqlite3_bind_int64(u, 2, rest_at);
			sqlite3_bind_int64(u, 3, size - *bytes);
			sqlite3_bind_text(u, 4, text + off, (int)(len - off), SQLITE_TRANSIENT);
			sqlite3_bind_int64(u, 5, first);
			rc = sqlite3_step(u) == SQLITE_DONE ? 0 : -EIO;
		} else {
			rc = -EIO;
		}
	}
	sqlite3_finalize(u);
	sqlite3_finalize(s);
	return rc;
}

/*
 * The file's part of an ack (mv_lock held): chunks up to seq deleted, the one
 * holding seq cut, the numbering saved. *bytes, *count: what went. 0 or -EIO.
 */
static int event_spool_ack_stored(struct event_spool *sp, int64_t seq, int64_t *bytes_out,
				  int64_t *count_out)
{
	int64_t bytes = 0, count = 0, cut_bytes = 0, cut_count = 0;
	*bytes_out = *count_out = 0;
	pthread_mutex_lock(&sp->db_lock);
	int rc = event_spool_exec(sp->db, "BEGIN IMMEDIATE");
	sqlite3_stmt *s = NULL;
	if (rc == 0 &&
	    sqlite3_prepare_v2(sp->db,
			       "SELECT coalesce(sum(size), 0), coalesce(sum(last - first + 1), 0)"
			       " FROM chunks WHERE last <= ?",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, seq);
		if (sqlite3_step(s) == SQLITE_ROW) {
			bytes = sqlite3_column_int64(s, 0);
			count = sqlite3_column_int64(s, 1);
		} else {
			rc = -EIO;
		}
	} else {
		rc = -EIO;
	}
	sqlite3_finalize(s);
	s = NULL;
	/* the numbering survives the chunks it deletes (a reopen starts above both) */
	if (rc == 0 &&
	    sqlite3_prepare_v2(sp->db,
			       "UPDATE meta SET value = max(value, (SELECT"
			       " coalesce(max(last), 0) + 1 FROM chunks WHERE last <= ?))"
			       " WHERE key = 'next_seq'",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, seq);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (rc == 0 && sqlite3_prepare_v2(sp->db, "DELETE FROM chunks WHERE last <= ?", -1, &s,
					  NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, seq);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_finalize(s);
	if (rc == 0)
		rc = event_spool_cut(sp, seq, &cut_bytes, &cut_count);
	if (rc == 0)
		rc = event_spool_exec(sp->db, "COMMIT");
	if (rc < 0) {
		log_error("events.spool_ack_failed", "seq=%lld error=\"%s\"", (long long)seq,
			  sqlite3_errmsg(sp->db));
		(void)event_spool_exec(sp->db, "ROLLBACK");
	}
	pthread_mutex_unlock(&sp->db_lock);
	if (rc < 0)
		return rc;
	*bytes_out = bytes + cut_bytes;
	*count_out = count + cut_count;
	sp->stored -= (uint64_t)*count_out;
	return 0;
}

/*
 * The memory's part of an ack (mv_lock held): the pending lines up to seq
 * are skipped, and {"acked":seq} appended to the current journal so that an
 * open after a crash does not take them again (if that write fails, it would
 * send them again: the manager skips seqs it has). *bytes, *count: what went.
 */
static void event_spool_ack_pending(struct event_spool *sp, int64_t seq, int64_t *bytes,
				    int64_t *count)
{
	*bytes = *count = 0;
	pthread_mutex_lock(&sp->j_lock);
	while (sp->head_off < sp->pending.len) {
		const char *p = sp->pending.p + sp->head_off;
		size_t line = event_spool_line(p, sp->pending.p + sp->pending.len);
		int64_t s = 0, at = 0;
		if (!event_spool_line_parse(p, line, &s, &at) || s > seq)
			break;
		sp->head_off += line;
		*bytes += (int64_t)(line + EVENT_SPOOL_ROW_OVERHEAD);
		(*count)++;
	}
	if (*count > 0) {
		char mark[48];
		int len = snprintf(mark, sizeof(mark), "{\"acked\":%lld}\n", (long long)seq);
		int rc = event_spool_journal_write(sp, sp->jcur, mark, (size_t)len, false);
		if (rc < 0)
			log_warn("events.spool_write_failed", "path=%s-j%d error=\"%s\"", sp->path,
				 sp->jcur, strerror(-rc));
	}
	pthread_mutex_unlock(&sp->j_lock);
}

int event_spool_ack(struct event_spool *sp, int64_t seq)
{
	int64_t bytes = 0, count = 0, pbytes = 0, pcount = 0;
	pthread_mutex_lock(&sp->mv_lock);
	int rc = sp->stored > 0 ? event_spool_ack_stored(sp, seq, &bytes, &count) : 0;
	if (rc == 0)
		event_spool_ack_pending(sp, seq, &pbytes, &pcount);
	pthread_mutex_unlock(&sp->mv_lock);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&sp->lock);
	sp->bytes -= (uint64_t)(bytes + pbytes);
	sp->count -= (uint64_t)(count + pcount);
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

void event_spool_stats(struct event_spool *sp, struct event_spool_stats *out)
{
	memset(out, 0, sizeof(*out));
	int64_t oldest = 0;
	pthread_mutex_lock(&sp->rd_lock);
	if (event_spool_reader(sp) == 0) {
		if (sqlite3_step(sp->st_oldest) == SQLITE_ROW)
			oldest = sqlite3_column_int64(sp->st_oldest, 0);
		sqlite3_reset(sp->st_oldest);
	}
	pthread_mutex_unlock(&sp->rd_lock);
	if (oldest == 0) {
		/* committed, pending in memory */
		pthread_mutex_lock(&sp->j_lock);
		int64_t seq = 0;
		if (sp->head_off < sp->pending.len) {
			const char *p = sp->pending.p + sp->head_off;
			(void)event_spool_line_parse(
			    p, event_spool_line(p, sp->pending.p + sp->pending.len), &seq, &oldest);
		}
		pthread_mutex_unlock(&sp->j_lock);
	}
	pthread_mutex_lock(&sp->lock);
	out->backlog = sp->count;
	out->bytes = sp->bytes;
	out->dropped = sp->dropped;
	out->next_seq = sp->next_seq;
	out->created = sp->created;
	out->syncs = sp->syncs;
	out->unmovable = sp->unmovable;
	out->oldest_at = oldest != 0 ? oldest : sp->head != NULL ? sp->head->at : 0;
	pthread_mutex_unlock(&sp->lock);
}

int event_spool_mark_swap(struct event_spool *sp, const char *key, int64_t value, int64_t *old)
{
	*old = 0;
	size_t len = strlen(key);
	if (len == 0 || len > 31 || strspn(key, "abcdefghijklmnopqrstuvwxyz_") != len)
		return -EINVAL;
	char sql[160];
	pthread_mutex_lock(&sp->db_lock);
	int rc = event_spool_exec(sp->db, "BEGIN IMMEDIATE");
	if (rc == 0) {
		snprintf(sql, sizeof(sql), "SELECT value FROM meta WHERE key = '%s'", key);
		rc = event_spool_scalar(sp->db, sql, old);
	}
	if (rc == 0) {
		snprintf(sql, sizeof(sql),
			 "INSERT OR REPLACE INTO meta (key, value) VALUES ('%s', %lld)", key,
			 (long long)value);
		rc = event_spool_exec(sp->db, sql);
	}
	if (rc == 0)
		rc = event_spool_exec(sp->db, "COMMIT");
	if (rc < 0)
		(void)event_spool_exec(sp->db, "ROLLBACK");
	pthread_mutex_unlock(&sp->db_lock);
	return rc;
}
