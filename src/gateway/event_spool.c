/*
 * event_spool — the gateway's durable event queue (event_spool.h).
 *
 * Why SQLite and not a segment log of our own: the gateway links SQLite already
 * (its local quarantines), a WAL commit is in the file when it returns (so a
 * kill -9 loses nothing committed) with no torn record to repair, and "drop
 * everything up to seq" is one indexed DELETE instead of segment bookkeeping.
 * The cost (a B-tree insert per event) is paid in group commits, never by an
 * SMTP session while it talks.
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
#include "common/xalloc.h"

/* What an event costs beyond its texts (its row, index entry and seq). */
#define EVENT_SPOOL_ROW_OVERHEAD 48
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

/* One queued event; its texts follow it in the same allocation. */
struct event_spool_item {
	int64_t seq, at;
	const char *type, *msg_id, *detail;
	uint64_t size;
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

/* Writes a group in one transaction. 0 or -EIO (rolled back). db_lock held. */
static int event_spool_commit(struct event_spool *sp, struct event_spool_item *list)
{
	if (event_spool_step(sp->st_begin) < 0) {
		log_error("events.spool_write_failed", "error=\"%s\"", sqlite3_errmsg(sp->db));
		return -EIO;
	}
	sqlite3_stmt *s = sp->st_insert;
	int rc = 0;
	for (struct event_spool_item *it = list; rc == 0 && it != NULL; it = it->next) {
		sqlite3_bind_int64(s, 1, it->seq);
		sqlite3_bind_int64(s, 2, it->at);
		sqlite3_bind_text(s, 3, it->type, -1, SQLITE_STATIC);
		if (it->msg_id != NULL)
			sqlite3_bind_text(s, 4, it->msg_id, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 4);
		sqlite3_bind_text(s, 5, it->detail, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, (sqlite3_int64)it->size);
		rc = event_spool_step(s);
	}
	sqlite3_clear_bindings(s);
	/* no meta row is written here (a page less a commit): the next number is
	 * the rows' highest + 1, and event_spool_ack saves it before deleting them */
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
			free(list);
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
					  "CREATE TABLE IF NOT EXISTS events ("
					  "  seq INTEGER PRIMARY KEY,"
					  "  at INTEGER NOT NULL,"
					  "  type TEXT NOT NULL,"
					  "  msg_id TEXT,"
					  "  detail TEXT NOT NULL,"
					  "  size INTEGER NOT NULL);"
					  "CREATE TABLE IF NOT EXISTS meta ("
					  "  key TEXT PRIMARY KEY,"
					  "  value INTEGER NOT NULL);");
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT value FROM meta WHERE key = 'next_seq'", &next);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT coalesce(max(seq), 0) FROM events", &max_seq);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT coalesce(sum(size), 0) FROM events", &bytes);
	if (rc == 0)
		rc = event_spool_scalar(db, "SELECT count(*) FROM events", &count);
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
		sqlite3_close(db);
		return -EIO;
	}
	struct event_spool *sp = xcalloc(1, sizeof(*sp));
	if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &sp->st_begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "INSERT INTO events (seq, at, type, msg_id, detail, size)"
			       " VALUES (?, ?, ?, ?, ?, ?)",
			       -1, &sp->st_insert, NULL) != SQLITE_OK ||
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
	/* one allocation for the event and its texts, made outside the lock */
	size_t lt = strlen(type) + 1, lm = msg_id != NULL ? strlen(msg_id) + 1 : 0,
	       ld = strlen(detail) + 1;
	struct event_spool_item *it = xmalloc(sizeof(*it) + lt + lm + ld);
	char *p = (char *)(it + 1);
	it->at = at;
	it->type = memcpy(p, type, lt);
	it->msg_id = msg_id != NULL ? memcpy(p + lt, msg_id, lm) : NULL;
	it->detail = memcpy(p + lt + lm, detail, ld);
	it->size = (lt - 1) + (lm > 0 ? lm - 1 : 0) + (ld - 1) + EVENT_SPOOL_ROW_OVERHEAD;
	it->next = NULL;
	pthread_mutex_lock(&sp->lock);
	if (sp->stopping || sp->bytes + it->size > sp->max_bytes) {
		sp->dropped++;
		pthread_mutex_unlock(&sp->lock);
		free(it);
		return 0;
	}
	/* numbered under the lock: the queue is in seq order */
	it->seq = sp->next_seq++;
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

void event_spool_events_free(struct event_spool_event *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].type);
		free(v[i].msg_id);
		free(v[i].detail);
	}
	free(v);
}

static char *event_spool_col(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	return t != NULL ? xstrdup((const char *)t) : NULL;
}

/* The reader connection and its statements (rd_lock held). 0 or -EIO (logged). */
static int event_spool_reader(struct event_spool *sp)
{
	if (sp->rd_db != NULL)
		return 0;
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(sp->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "SELECT seq, at, type, msg_id, detail, size FROM events"
			       " ORDER BY seq LIMIT ?",
			       -1, &sp->st_peek, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT at FROM events ORDER BY seq LIMIT 1", -1, &sp->st_oldest,
			       NULL) != SQLITE_OK) {
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
		     struct event_spool_event **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&sp->rd_lock);
	if (event_spool_reader(sp) < 0) {
		pthread_mutex_unlock(&sp->rd_lock);
		return -EIO;
	}
	sqlite3_stmt *s = sp->st_peek;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)max_events);
	struct event_spool_event *v = NULL;
	size_t k = 0, bytes = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		size_t size = (size_t)sqlite3_column_int64(s, 5);
		if (k > 0 && bytes + size > max_bytes)
			break;
		bytes += size;
		v = xreallocarray(v, k + 1, sizeof(*v));
		v[k].seq = sqlite3_column_int64(s, 0);
		v[k].at = sqlite3_column_int64(s, 1);
		v[k].type = event_spool_col(s, 2);
		v[k].msg_id = event_spool_col(s, 3);
		v[k].detail = event_spool_col(s, 4);
		k++;
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&sp->rd_lock);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		event_spool_events_free(v, k);
		return -EIO;
	}
	*out = v;
	*n = k;
	return 0;
}

int event_spool_ack(struct event_spool *sp, int64_t seq)
{
	int64_t bytes = 0, count = 0;
	pthread_mutex_lock(&sp->db_lock);
	int rc = event_spool_exec(sp->db, "BEGIN IMMEDIATE");
	sqlite3_stmt *s = NULL;
	if (rc == 0 && sqlite3_prepare_v2(sp->db,
					  "SELECT coalesce(sum(size), 0), count(*) FROM events"
					  " WHERE seq <= ?",
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
	/* the numbering survives the rows it deletes (a reopen starts above both) */
	if (rc == 0 && sqlite3_prepare_v2(sp->db,
					  "UPDATE meta SET value = max(value, (SELECT"
					  " coalesce(max(seq), 0) + 1 FROM events WHERE seq <= ?))"
					  " WHERE key = 'next_seq'",
					  -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, seq);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (rc == 0 && sqlite3_prepare_v2(sp->db, "DELETE FROM events WHERE seq <= ?", -1, &s,
					  NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, seq);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_finalize(s);
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
	sp->bytes -= (uint64_t)bytes;
	sp->count -= (uint64_t)count;
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
