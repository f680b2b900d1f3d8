/*
 * event_spool — the gateway's durable event queue (event_spool.h).
 *
 * Why SQLite and not a segment log of our own: the gateway links SQLite already
 * (its local quarantines), a WAL commit is in the file when it returns (so a
 * kill -9 loses nothing committed) with no torn record to repair, and "drop
 * everything up to seq" is one indexed DELETE instead of segment bookkeeping.
 *
 * One row ("chunk") holds a commit group's events, not one event: written,
 * read and deleted as one B-tree entry. Its text is the events as the push
 * sends them, one JSON object a line, each line ending in ",\n":
 *
 *   {"seq":N,"at":T,"type":"delivery","msg_id":"...","detail":{...}},\n
 *
 * so that a push body is the chunks' texts one after the other (the last ",\n"
 * cut), with nothing parsed or rebuilt on the gateway. JSON text never holds a
 * raw newline (strings escape it), so the lines are the events: a batch or an
 * acknowledgement that ends inside a chunk cuts it at a line. The seqs of a
 * chunk are consecutive (first..last). A spool written before chunks (a table
 * of one row an event) is converted when opened.
 *
 * Power loss ([events] sync): with sync_each the connection runs with
 * synchronous=FULL, so each commit fsyncs the WAL before it returns. Else
 * (sync = group) it runs with synchronous=NORMAL, and the writer thread
 * fdatasyncs the WAL at most EVENT_SPOOL_SYNC_MS after a commit, one fsync for
 * every commit since the last (unsynced, synced_at).
 *
 * State of one event:
 *
 *   state       to          by
 *   (none)      queued      event_spool_append (seq given; or dropped when full)
 *   queued      committed   a committer, one transaction per group
 *   queued      dropped     the committer, when the commit failed (logged, counted)
 *   committed   (gone)      event_spool_ack, after the manager's 200
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
 * it only once it went to sleep (idle for EVENT_SPOOL_IDLE_MS). The statements
 * of a commit are prepared once.
 *
 * Locks: `lock` guards the queue and the counters (held only for memory work);
 * `db_lock` guards the writing connection (held across a commit); `rd_lock`
 * the pusher's reading connection (WAL readers do not block the commits).
 * Never take `lock` while waiting for `db_lock`.
 */
#include "gateway/event_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
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
/* WAL pages after which the writer copies the WAL into the file (SQLite's default). */
#define EVENT_SPOOL_CHECKPOINT_PAGES 1000

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
	/* the writer's statements (db_lock) */
	sqlite3_stmt *st_begin, *st_insert, *st_commit;
	struct strbuf chunk; /* the committer's text of a chunk being written */
	uint64_t max_bytes;
	bool stopping, stopped;
	bool committing;  /* a thread is in event_spool_drain */
	bool asleep;	  /* the writer waits without a deadline: appends wake it */
	int64_t busy_at;  /* monotonic ms the writer last saw something to do */
	bool checkpoint;  /* the WAL is long: the writer checkpoints it */
	sqlite3 *ckpt_db; /* the writer's own connection for that (NULL: not yet) */
	/* sync = group (!sync_each): commits are not fsynced by their committer; the
	 * writer fdatasyncs the WAL (wal_fd) at most EVENT_SPOOL_SYNC_MS after one */
	bool sync_each;
	bool unsynced;	   /* a commit since the writer's last fsync */
	int64_t synced_at; /* monotonic ms of that fsync's start */
	int wal_fd;	   /* the WAL, for that fsync (-1: not open yet) */
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

static int event_spool_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("events.spool_sql_failed", "error=\"%s\"", msg != NULL ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
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

/*
 * A new queued event (no seq yet): its line after the seq. A raw newline in
 * detail (JSON text has none; a caller's mistake) becomes a space, so that
 * the line stays one line.
 */
static struct event_spool_item *event_spool_item_new(int64_t at, const char *type,
						     const char *msg_id, const char *detail)
{
	struct event_spool_item *it = xcalloc(1, sizeof(*it));
	struct strbuf b = STRBUF_INIT;
	size_t ld = strlen(detail);
	strbuf_reserve(&b, ld + 96);
	strbuf_printf(&b, "\"at\":%lld,\"type\":", (long long)at);
	(void)http_json_put_string(&b, type, SIZE_MAX);
	if (msg_id != NULL) {
		strbuf_puts(&b, ",\"msg_id\":");
		(void)http_json_put_string(&b, msg_id, SIZE_MAX);
	}
	strbuf_puts(&b, ",\"detail\":");
	size_t d = b.len;
	strbuf_add(&b, detail, ld);
	for (char *nl = memchr(b.p + d, '\n', ld); nl != NULL;
	     nl = memchr(nl, '\n', (size_t)(b.p + d + ld - nl)))
		*nl = ' ';
	strbuf_puts(&b, "},\n");
	it->at = at;
	it->len = b.len;
	it->text = strbuf_take(&b);
	return it;
}

/*
 * Inserts the events of list (consecutive seqs expected) as chunks of at most
 * EVENT_SPOOL_CHUNK_EVENTS events and about EVENT_SPOOL_CHUNK_BYTES, with st
 * (INSERT INTO chunks) on its connection, in the caller's transaction. buf is
 * the text's buffer (kept for the next call). 0 or -EIO.
 */
static int event_spool_put_chunks(sqlite3_stmt *st, struct strbuf *buf,
				  const struct event_spool_item *list)
{
	int rc = 0;
	const struct event_spool_item *it = list;
	while (rc == 0 && it != NULL) {
		int64_t first = it->seq, at = it->at, last = first - 1;
		uint64_t size = 0;
		size_t k = 0;
		strbuf_truncate(buf, 0);
		while (it != NULL && it->seq == last + 1 && k < EVENT_SPOOL_CHUNK_EVENTS &&
		       (k == 0 || buf->len + it->len < EVENT_SPOOL_CHUNK_BYTES)) {
			strbuf_printf(buf, "{\"seq\":%lld,", (long long)it->seq);
			strbuf_add(buf, it->text, it->len);
			size += it->size;
			last = it->seq;
			k++;
			it = it->next;
		}
		sqlite3_bind_int64(st, 1, first);
		sqlite3_bind_int64(st, 2, last);
		sqlite3_bind_int64(st, 3, at);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
		sqlite3_bind_text(st, 5, buf->p, (int)buf->len, SQLITE_STATIC);
		rc = event_spool_step(st);
	}
	sqlite3_clear_bindings(st);
	return rc;
}

/* Writes a group in one transaction. 0 or -EIO (rolled back). db_lock held. */
static int event_spool_commit(struct event_spool *sp, struct event_spool_item *list)
{
	if (event_spool_step(sp->st_begin) < 0) {
		log_error("events.spool_write_failed", "error=\"%s\"", sqlite3_errmsg(sp->db));
		return -EIO;
	}
	int rc = event_spool_put_chunks(sp->st_insert, &sp->chunk, list);
	/* a long group's text is not kept for the next */
	if (sp->chunk.cap > 4 * EVENT_SPOOL_CHUNK_BYTES)
		strbuf_free(&sp->chunk);
	/* no meta row is written here (a page less a commit): the next number is
	 * the chunks' highest + 1, and event_spool_ack saves it before deleting them */
	if (rc == 0 && event_spool_step(sp->st_commit) == 0)
		return 0;
	log_error("events.spool_write_failed", "error=\"%s\"", sqlite3_errmsg(sp->db));
	(void)event_spool_exec(sp->db, "ROLLBACK");
	return -EIO;
}

/* True when a group should be committed now. lock held. */
static bool event_spool_due(const struct event_spool *sp, int64_t now)
{
	return sp->head != NULL &&
	       (sp->stopping || sp->want > sp->durable_seq || sp->queued >= EVENT_SPOOL_QUEUE_MAX ||
		now - sp->queued_since >= EVENT_SPOOL_FLUSH_MS);
}

/*
 * After each commit (db_lock held): a long WAL is checkpointed by the writer
 * thread on a connection of its own, concurrently with the next commits,
 * instead of by the committer before the replies it carries go out.
 */
static int event_spool_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct event_spool *sp = arg;
	if (pages < EVENT_SPOOL_CHECKPOINT_PAGES)
		return SQLITE_OK;
	pthread_mutex_lock(&sp->lock);
	if (!sp->checkpoint) {
		sp->checkpoint = true;
		pthread_cond_signal(&sp->work);
	}
	pthread_mutex_unlock(&sp->lock);
	return SQLITE_OK;
}

/* The writer's checkpoint: as much of the WAL as no reader needs. No lock held. */
static void event_spool_checkpoint(struct event_spool *sp)
{
	if (sp->ckpt_db == NULL) {
		if (sqlite3_open_v2(sp->path, &sp->ckpt_db, SQLITE_OPEN_READWRITE, NULL) !=
			SQLITE_OK ||
		    event_spool_exec(sp->ckpt_db, "PRAGMA synchronous = FULL") < 0) {
			log_error("events.spool_checkpoint_failed", "error=\"%s\"",
				  sp->ckpt_db != NULL ? sqlite3_errmsg(sp->ckpt_db)
						      : "out of memory");
			sqlite3_close(sp->ckpt_db);
			sp->ckpt_db = NULL;
			return;
		}
		sqlite3_busy_timeout(sp->ckpt_db, 5000);
	}
	int rc =
	    sqlite3_wal_checkpoint_v2(sp->ckpt_db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		log_error("events.spool_checkpoint_failed", "error=\"%s\"",
			  sqlite3_errmsg(sp->ckpt_db));
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

		pthread_mutex_lock(&sp->db_lock);
		int rc = event_spool_commit(sp, list);
		pthread_mutex_unlock(&sp->db_lock);

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
 * sync = group: makes every commit so far durable (power loss). The WAL's pages
 * are fsynced through a descriptor of the writer's own (SQLite's file stays the
 * same while the spool is open: it is reset in place, never replaced). When it
 * cannot be opened, a checkpoint does it (SQLite syncs the WAL before copying
 * it). No lock held.
 */
static void event_spool_fsync(struct event_spool *sp)
{
	if (sp->wal_fd < 0) {
		char *wal = xasprintf("%s-wal", sp->path);
		sp->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
		if (sp->wal_fd < 0)
			log_warn("events.spool_sync_open_failed", "path=%s error=\"%s\"", wal,
				 strerror(errno));
		free(wal);
	}
	if (sp->wal_fd < 0) {
		event_spool_checkpoint(sp);
		return;
	}
	if (fdatasync(sp->wal_fd) < 0)
		log_error("events.spool_sync_failed", "error=\"%s\"", strerror(errno));
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
		if (sp->checkpoint) {
			sp->checkpoint = false;
			pthread_mutex_unlock(&sp->lock);
			event_spool_checkpoint(sp);
			pthread_mutex_lock(&sp->lock);
			continue;
		}
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
		if (sp->stopping && sp->head == NULL && !sp->committing)
			break; /* everything is written (closing the file syncs it) */
		/*
		 * Busy, it ticks every EVENT_SPOOL_FLUSH_MS and nobody wakes it (an
		 * append or a commit would cost the committer a wake-up and a context
		 * switch); idle for EVENT_SPOOL_IDLE_MS, it sleeps until an append, a
		 * commit to fsync or the stop wakes it.
		 */
		if (sp->head != NULL || sp->committing || sp->unsynced)
			sp->busy_at = now;
		int64_t until = -1;
		if (sp->head != NULL && !sp->committing)
			until = sp->queued_since + EVENT_SPOOL_FLUSH_MS;
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
	struct event_spool_item *head = NULL, **tail = &head;
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
		struct event_spool_item *it =
		    event_spool_item_new(sqlite3_column_int64(s, 1), type != NULL ? type : "",
					 msg_id, detail != NULL ? detail : "{}");
		it->seq = sqlite3_column_int64(s, 0);
		*tail = it;
		tail = &it->next;
		n++;
	}
	if (step != SQLITE_DONE)
		rc = -EIO;
	sqlite3_finalize(s);
	struct strbuf buf = STRBUF_INIT;
	if (rc == 0)
		rc = event_spool_put_chunks(insert, &buf, head);
	strbuf_free(&buf);
	while (head != NULL) {
		struct event_spool_item *next = head->next;
		event_spool_item_free(head);
		head = next;
	}
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

static void event_spool_finalize(struct event_spool *sp)
{
	sqlite3_finalize(sp->st_begin);
	sqlite3_finalize(sp->st_insert);
	sqlite3_finalize(sp->st_commit);
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
	/* WAL: a commit is in the file when it returns (kill -9); with FULL it is
	 * on disk too (power loss), with NORMAL once the writer fsynced it */
	int rc = event_spool_exec(db, sync_each ? "PRAGMA synchronous = FULL"
						: "PRAGMA synchronous = NORMAL");
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
		return -EIO;
	}
	struct event_spool *sp = xcalloc(1, sizeof(*sp));
	sp->st_insert = insert;
	if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &sp->st_begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &sp->st_commit, NULL) != SQLITE_OK) {
		log_error("events.spool_open_failed", "path=%s error=\"%s\"", path,
			  sqlite3_errmsg(db));
		event_spool_finalize(sp);
		sqlite3_close(db);
		free(sp);
		return -EIO;
	}
	sp->db = db;
	sp->path = xstrdup(path);
	sp->sync_each = sync_each;
	sp->wal_fd = -1;
	sqlite3_wal_autocheckpoint(db, 0);
	sqlite3_wal_hook(db, event_spool_wal_hook, sp);
	sp->next_seq = next > max_seq ? next : max_seq + 1;
	sp->durable_seq = sp->next_seq - 1;
	sp->bytes = (uint64_t)bytes;
	sp->count = (uint64_t)count;
	sp->max_bytes = max_bytes;
	sp->created = created;
	pthread_mutex_init(&sp->db_lock, NULL);
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
	event_spool_finalize(sp);
	sqlite3_close(sp->ckpt_db);
	sqlite3_finalize(sp->st_peek);
	sqlite3_finalize(sp->st_oldest);
	sqlite3_close(sp->rd_db);
	sqlite3_close(sp->db);
	if (sp->wal_fd >= 0)
		close(sp->wal_fd);
	free(sp->path);
	strbuf_free(&sp->chunk);
	pthread_mutex_destroy(&sp->db_lock);
	pthread_mutex_destroy(&sp->rd_lock);
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->work);
	pthread_cond_destroy(&sp->durable);
	free(sp);
}

int64_t event_spool_append(struct event_spool *sp, int64_t at, const char *type, const char *msg_id,
			   const char *detail)
{
	/* the line is written outside the lock; only its seq is added under it */
	struct event_spool_item *it = event_spool_item_new(at, type, msg_id, detail);
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

int event_spool_peek(struct event_spool *sp, size_t max_events, size_t max_bytes,
		     struct strbuf *out, size_t *n, int64_t *last)
{
	*n = 0;
	*last = 0;
	size_t start = out->len, k = 0, bytes = 0;
	pthread_mutex_lock(&sp->rd_lock);
	if (event_spool_reader(sp) < 0) {
		pthread_mutex_unlock(&sp->rd_lock);
		return -EIO;
	}
	sqlite3_stmt *s = sp->st_peek;
	int step = SQLITE_DONE;
	while (k < max_events && (step = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t first = sqlite3_column_int64(s, 0), end = sqlite3_column_int64(s, 1);
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
		/* the batch ends inside this chunk: line by line (always one) */
		const char *p = text, *stop = text + len;
		for (int64_t seq = first; seq <= end && k < max_events && p < stop; seq++) {
			const char *nl = memchr(p, '\n', (size_t)(stop - p));
			size_t line = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(stop - p);
			if (k > 0 && bytes + line > max_bytes)
				break;
			strbuf_add(out, p, line);
			k++;
			bytes += line;
			*last = seq;
			p += line;
		}
		break;
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&sp->rd_lock);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		strbuf_truncate(out, start);
		*last = 0;
		return -EIO;
	}
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
		int64_t k = 0;
		while (text != NULL && k < seq - first + 1 && off < len) {
			const char *nl = memchr(text + off, '\n', len - off);
			off = nl != NULL ? (size_t)(nl - text) + 1 : len;
			k++;
		}
		/* the rest's first line: {"seq":N,"at":T, */
		const char *at = text != NULL && off < len ? strstr(text + off, ",\"at\":") : NULL;
		if (k != seq - first + 1 || at == NULL) {
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
			sqlite3_bind_int64(u, 2, strtoll(at + 6, NULL, 10));
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

int event_spool_ack(struct event_spool *sp, int64_t seq)
{
	int64_t bytes = 0, count = 0, cut_bytes = 0, cut_count = 0;
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
	pthread_mutex_lock(&sp->lock);
	sp->bytes -= (uint64_t)(bytes + cut_bytes);
	sp->count -= (uint64_t)(count + cut_count);
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
	pthread_mutex_lock(&sp->lock);
	out->backlog = sp->count;
	out->bytes = sp->bytes;
	out->dropped = sp->dropped;
	out->next_seq = sp->next_seq;
	out->created = sp->created;
	out->syncs = sp->syncs;
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
