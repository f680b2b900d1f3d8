/*
 * Tests for gateway/event_spool (the gateway's durable event queue) and
 * gw_events_parse_answer (the manager's answer to a push): append and sync,
 * peek in order within the batch limits, ack drops only up to the seq, reopen
 * keeps the unacknowledged events and the numbering, a process killed (SIGKILL)
 * right after its sync loses nothing synced, spool_max drops and counts, a mark
 * (the mode that last took the events) survives a reopen and says its old value,
 * a callback for a durable event comes once it is committed, once per call;
 * the text a peek gives is the JSON a push sends, also when a batch or an ack
 * ends inside a commit group; a spool of the older format (a row an event) is
 * converted when opened, its events and numbers kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sqlite3.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "gateway/event_spool.h"
#include "gateway/gw_events.h"
#include "test_util.h"

struct fixture {
	char dir[64];
	char path[128];
};

/* One event as a peek gives it, read back with jansson. */
struct event_spool_event {
	int64_t seq;
	int64_t at;
	char *type;
	char *msg_id; /* NULL: none */
	char *detail; /* compact JSON */
};

static void event_spool_events_free(struct event_spool_event *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i].type);
		free(v[i].msg_id);
		free(v[i].detail);
	}
	free(v);
}

/*
 * event_spool_peek, its text parsed as the members of a JSON array (as the
 * manager reads a push): fails the test unless it is valid JSON with exactly
 * *n events, the last one's seq the one the peek said.
 */
static int peek(struct event_spool *sp, size_t max_events, size_t max_bytes,
		struct event_spool_event **out, size_t *n)
{
	struct strbuf b = STRBUF_INIT;
	strbuf_puts(&b, "{\"events\":[");
	int64_t last = -1;
	int rc = event_spool_peek(sp, max_events, max_bytes, &b, n, &last);
	*out = NULL;
	if (rc < 0) {
		strbuf_free(&b);
		return rc;
	}
	strbuf_puts(&b, "]}");
	json_error_t err;
	json_t *doc = json_loads(strbuf_str(&b), 0, &err);
	if (doc == NULL)
		fail_msg("peek text is not JSON (%s): %s", err.text, strbuf_str(&b));
	const json_t *a = json_object_get(doc, "events");
	assert_int_equal(json_array_size(a), *n);
	struct event_spool_event *v = xcalloc(*n + 1, sizeof(*v));
	for (size_t i = 0; i < *n; i++) {
		const json_t *e = json_array_get(a, i);
		v[i].seq = json_integer_value(json_object_get(e, "seq"));
		v[i].at = json_integer_value(json_object_get(e, "at"));
		v[i].type = xstrdup(json_string_value(json_object_get(e, "type")));
		const json_t *m = json_object_get(e, "msg_id");
		v[i].msg_id = m != NULL ? xstrdup(json_string_value(m)) : NULL;
		v[i].detail = json_dumps(json_object_get(e, "detail"),
					 JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	}
	assert_int_equal(last, *n > 0 ? v[*n - 1].seq : 0);
	json_decref(doc);
	strbuf_free(&b);
	*out = v;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lazaret-test-spool-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/events.spool", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void test_append_peek_ack_reopen(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	int64_t first = event_spool_append(sp, 1000, "received", "m1", "{\"a\":1}");
	assert_true(first > 1000000); /* a new spool starts at the time in microseconds */
	for (int i = 1; i < 10; i++)
		assert_int_equal(event_spool_append(sp, 1000 + i, "delivery", NULL, "{}"),
				 first + i);
	assert_int_equal(event_spool_sync(sp, first + 9), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 4, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].seq, first);
	assert_int_equal(v[0].at, 1000);
	assert_string_equal(v[0].type, "received");
	assert_string_equal(v[0].msg_id, "m1");
	assert_string_equal(v[0].detail, "{\"a\":1}");
	assert_null(v[1].msg_id);
	assert_int_equal(v[3].seq, first + 3);
	event_spool_events_free(v, n);
	/* the byte limit: always one, then only what fits */
	assert_int_equal(peek(sp, 100, 1, &v, &n), 0);
	assert_int_equal(n, 1);
	event_spool_events_free(v, n);
	assert_int_equal(event_spool_ack(sp, first + 3), 0);
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	assert_int_equal(s.backlog, 6);
	assert_int_equal(s.oldest_at, 1004);
	assert_int_equal(s.dropped, 0);
	event_spool_close(sp);

	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	event_spool_stats(sp, &s);
	assert_int_equal(s.backlog, 6);
	assert_int_equal(s.next_seq, first + 10);
	assert_int_equal(peek(sp, 100, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 6);
	assert_int_equal(v[0].seq, first + 4);
	event_spool_events_free(v, n);
	/* everything acknowledged: the numbering still goes on after a reopen */
	assert_int_equal(event_spool_ack(sp, first + 9), 0);
	event_spool_close(sp);
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	assert_int_equal(event_spool_append(sp, 2000, "bounce", "m2", "{}"), first + 10);
	event_spool_close(sp);
}

/* A child appends and syncs, acknowledges the first 150 (as the pusher does
 * once the manager took them), reports, and is killed (SIGKILL) while it keeps
 * appending: every synced event not acknowledged is there after a reopen, and
 * no acknowledged one. */
static void test_kill_after_sync(void **state)
{
	struct fixture *fx = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		struct event_spool *sp = NULL;
		if (event_spool_open(fx->path, 1 << 24, false, &sp) < 0)
			_exit(1);
		int64_t seq = 0;
		for (int i = 0; i < 200; i++)
			seq = event_spool_append(sp, i, "delivery", "m", "{\"x\":\"y\"}");
		if (event_spool_sync(sp, seq) < 0)
			_exit(1);
		struct strbuf b = STRBUF_INIT;
		size_t n = 0;
		int64_t acked = 0;
		if (event_spool_peek(sp, 150, 1 << 24, &b, &n, &acked) < 0 || n != 150 ||
		    event_spool_ack(sp, acked) < 0)
			_exit(1);
		int64_t said[2] = {seq, acked};
		if (write(fds[1], said, sizeof(said)) != sizeof(said))
			_exit(1);
		for (;;) /* unsynced appends go on until the kill */
			event_spool_append(sp, 9, "delivery", "m", "{}");
	}
	close(fds[1]);
	int64_t said[2] = {0, 0};
	assert_int_equal(read(fds[0], said, sizeof(said)), sizeof(said));
	int64_t synced = said[0], acked = said[1];
	assert_int_equal(acked, synced - 50);
	close(fds[0]);
	usleep(20000);
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status));
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 24, false, &sp), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 50, 1 << 24, &v, &n), 0);
	assert_int_equal(n, 50);
	assert_int_equal(v[0].seq, acked + 1);
	assert_int_equal(v[49].seq, synced);
	for (size_t i = 1; i < n; i++)
		assert_int_equal(v[i].seq, v[i - 1].seq + 1);
	event_spool_events_free(v, n);
	/* numbers after a crash never repeat one that may have been sent */
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	assert_true(s.next_seq > synced);
	event_spool_close(sp);
}

static void test_spool_max(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	/*
	 * room for three events only: each is its line of 127 bytes
	 * ({"seq":<16 digits>,"at":0,"type":"delivery","detail":{"x":"<58 x>"}},\n)
	 * and 16 bytes of overhead
	 */
	assert_int_equal(event_spool_open(fx->path, 440, false, &sp), 0);
	char detail[67];
	memset(detail, 'x', sizeof(detail) - 1);
	memcpy(detail, "{\"x\":\"", 6);
	memcpy(detail + sizeof(detail) - 3, "\"}", 3);
	int kept = 0, dropped = 0;
	int64_t last = 0;
	for (int i = 0; i < 10; i++) {
		int64_t seq = event_spool_append(sp, i, "delivery", NULL, detail);
		if (seq > 0) {
			kept++;
			last = seq;
		} else {
			dropped++;
		}
	}
	assert_int_equal(kept, 3);
	assert_int_equal(dropped, 7);
	assert_int_equal(event_spool_sync(sp, last), 0);
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	assert_int_equal(s.dropped, 7);
	assert_int_equal(s.backlog, 3);
	assert_int_equal(s.bytes, 3 * (127 + 16));
	/* acknowledged events make room again; seqs stay contiguous (drops take none) */
	assert_int_equal(event_spool_ack(sp, last), 0);
	assert_int_equal(event_spool_append(sp, 99, "delivery", NULL, detail), last + 1);
	event_spool_close(sp);
}

static void test_mark_swap(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	struct event_spool_stats st;
	int64_t old = -1;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	event_spool_stats(sp, &st);
	assert_true(st.created);
	assert_int_equal(event_spool_mark_swap(sp, "mode", 2, &old), 0);
	assert_int_equal(old, 0);
	assert_int_equal(event_spool_mark_swap(sp, "Mode';--", 1, &old), -EINVAL);
	event_spool_close(sp);
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	event_spool_stats(sp, &st);
	assert_false(st.created);
	assert_int_equal(event_spool_mark_swap(sp, "mode", 1, &old), 0);
	assert_int_equal(old, 2);
	assert_int_equal(event_spool_mark_swap(sp, "mode", 1, &old), 0);
	assert_int_equal(old, 1);
	/* the numbering is not a mark: it goes on */
	assert_true(event_spool_append(sp, 1, "reply", "m1", "{}") > 0);
	event_spool_close(sp);
}

struct durable_ctx {
	atomic_int called;
};

static void on_durable(void *arg)
{
	struct durable_ctx *c = arg;
	atomic_fetch_add(&c->called, 1);
}

struct durable_thread {
	struct event_spool *sp;
	struct durable_ctx *ctx;
};

static void *durable_sender(void *arg)
{
	struct durable_thread *t = arg;
	for (int i = 0; i < 200; i++) {
		int64_t seq = 0;
		for (int k = 0; k < 5; k++)
			seq = event_spool_append(t->sp, i, "delivery", "m", "{\"x\":1}");
		event_spool_when_durable(t->sp, seq, on_durable, t->ctx);
	}
	return NULL;
}

/* The callback comes once the event is committed (here by the caller, nobody
 * else committing), at once for an event already on disk, and exactly once
 * for each of many threads' events while they commit for one another. */
static void test_when_durable(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 24, false, &sp), 0);
	struct durable_ctx ctx;
	atomic_init(&ctx.called, 0);
	int64_t first = event_spool_append(sp, 1, "received", "m1", "{}");
	event_spool_append(sp, 2, "verdict", "m1", "{}");
	int64_t third = event_spool_append(sp, 3, "delivery", "m1", "{}");
	event_spool_when_durable(sp, third, on_durable, &ctx);
	assert_int_equal(atomic_load(&ctx.called), 1);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 100, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 3); /* committed: the pusher sees them */
	assert_int_equal(v[0].seq, first);
	event_spool_events_free(v, n);
	event_spool_when_durable(sp, first, on_durable, &ctx);
	assert_int_equal(atomic_load(&ctx.called), 2);

	atomic_store(&ctx.called, 0);
	pthread_t th[4];
	struct durable_thread dt = {sp, &ctx};
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, durable_sender, &dt), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	event_spool_close(sp); /* the writer's callbacks, if any, are done */
	assert_int_equal(atomic_load(&ctx.called), 4 * 200);
	assert_int_equal(event_spool_open(fx->path, 1 << 24, false, &sp), 0);
	struct event_spool_stats st;
	event_spool_stats(sp, &st);
	assert_int_equal(st.backlog, 3 + 4 * 200 * 5);
	event_spool_close(sp);
}

/* Texts a push must carry exactly: quotes, backslashes, Japanese, control
 * characters; a raw newline in a detail (not JSON) does not split its line. */
static void test_text_is_json(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	const char *detail = "{\"subject\":\"\\\"見積\\\" \\\\ \\u0001\",\"n\":[1,2]}";
	int64_t a = event_spool_append(sp, 5, "received", "id\"\\\n受信", detail);
	int64_t b = event_spool_append(sp, 6, "reply", NULL, "{\"reply\":\"451\nlater\"}");
	assert_int_equal(event_spool_sync(sp, b), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].seq, a);
	assert_string_equal(v[0].msg_id, "id\"\\\n受信");
	assert_string_equal(v[0].detail, detail);
	assert_string_equal(v[1].detail, "{\"reply\":\"451 later\"}");
	event_spool_events_free(v, n);
	/* one line an event: a batch of one ends after the first */
	assert_int_equal(peek(sp, 1, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, a);
	event_spool_events_free(v, n);
	event_spool_close(sp);
}

/*
 * A group of 2,500 events is written as chunks of at most 1,000. Batches and
 * acknowledgements that end inside a chunk take and drop exactly their events,
 * and the bytes and backlog counted in memory equal what a reopen counts from
 * the file.
 */
static void test_chunks_cut(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 26, false, &sp), 0);
	int64_t first = 0, last = 0;
	char detail[64];
	for (int i = 0; i < 2500; i++) {
		snprintf(detail, sizeof(detail), "{\"i\":%d}", i);
		last = event_spool_append(sp, 10000 + i, "delivery", "m", detail);
		if (i == 0)
			first = last;
	}
	assert_int_equal(last, first + 2499);
	assert_int_equal(event_spool_sync(sp, last), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 1000, 1 << 26, &v, &n), 0);
	assert_int_equal(n, 1000);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i].seq, first + (int64_t)i);
		assert_int_equal(v[i].at, 10000 + (int64_t)i);
	}
	event_spool_events_free(v, n);
	/* the lines wait in the journal and in memory (no rotation within a
	 * second); the close moves them into the file */
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	event_spool_close(sp);
	assert_int_equal(event_spool_open(fx->path, 1 << 26, false, &sp), 0);
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT count(*), max(last - first + 1) FROM chunks",
					    -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 3);
	assert_int_equal(sqlite3_column_int(q, 1), 1000);
	sqlite3_finalize(q);
	sqlite3_close(db);
	/* across chunks, ending inside the second */
	assert_int_equal(peek(sp, 1500, 1 << 26, &v, &n), 0);
	assert_int_equal(n, 1500);
	assert_int_equal(v[1499].seq, first + 1499);
	snprintf(detail, sizeof(detail), "{\"i\":%d}", 1499);
	assert_string_equal(v[1499].detail, detail);
	event_spool_events_free(v, n);
	/* a byte limit inside the first chunk: whole lines only */
	assert_int_equal(peek(sp, 1000, 1000, &v, &n), 0);
	assert_true(n > 5 && n < 20);
	event_spool_events_free(v, n);

	/* an ack inside the second chunk, then inside what is left of it */
	assert_int_equal(event_spool_ack(sp, first + 1299), 0);
	assert_int_equal(event_spool_ack(sp, first + 1499), 0);
	struct event_spool_stats s, r;
	event_spool_stats(sp, &s);
	assert_int_equal(s.backlog, 1000);
	assert_int_equal(s.oldest_at, 10000 + 1500);
	assert_int_equal(peek(sp, 1, 1 << 26, &v, &n), 0);
	assert_int_equal(v[0].seq, first + 1500);
	snprintf(detail, sizeof(detail), "{\"i\":%d}", 1500);
	assert_string_equal(v[0].detail, detail);
	event_spool_events_free(v, n);
	event_spool_close(sp);

	assert_int_equal(event_spool_open(fx->path, 1 << 26, false, &sp), 0);
	event_spool_stats(sp, &r);
	assert_int_equal(r.backlog, s.backlog);
	assert_int_equal(r.bytes, s.bytes);
	assert_int_equal(r.next_seq, last + 1);
	/* a batch from the file's chunks and then the lines in memory */
	int64_t more = 0;
	for (int i = 0; i < 5; i++)
		more = event_spool_append(sp, 20000 + i, "reply", "m", "{}");
	assert_int_equal(more, last + 5);
	assert_int_equal(event_spool_sync(sp, more), 0);
	assert_int_equal(peek(sp, 5000, 1 << 26, &v, &n), 0);
	assert_int_equal(n, 1005);
	assert_int_equal(v[999].seq, last);
	assert_int_equal(v[1000].seq, last + 1);
	assert_int_equal(v[1000].at, 20000);
	assert_int_equal(v[1004].seq, more);
	event_spool_events_free(v, n);
	assert_int_equal(event_spool_ack(sp, more), 0);
	event_spool_stats(sp, &r);
	assert_int_equal(r.backlog, 0);
	assert_int_equal(r.bytes, 0);
	event_spool_close(sp);
	/* lines acknowledged from memory leave no row: the numbering goes on */
	assert_int_equal(event_spool_open(fx->path, 1 << 26, false, &sp), 0);
	event_spool_stats(sp, &r);
	assert_int_equal(r.backlog, 0);
	assert_int_equal(r.next_seq, more + 1);
	event_spool_close(sp);
}

/* A spool of the older format, a row an event: converted when opened, every
 * event and the numbering kept, and converted once. */
static void test_convert_old_spool(void **state)
{
	struct fixture *fx = *state;
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db,
			 "PRAGMA journal_mode = WAL;"
			 "CREATE TABLE events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
			 " type TEXT NOT NULL, msg_id TEXT, detail TEXT NOT NULL,"
			 " size INTEGER NOT NULL);"
			 "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
			 "INSERT INTO meta VALUES ('next_seq', 500), ('mode', 1);"
			 "INSERT INTO events VALUES (500, 7, 'received', 'm1',"
			 " '{\"subject\":\"見積\"}', 80), (501, 8, 'delivery', NULL, '{}', 60),"
			 " (503, 9, 'reply', 'm1', '{\"reply\":\"250\"}', 70);",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	for (int round = 0; round < 2; round++) {
		struct event_spool *sp = NULL;
		assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
		struct event_spool_stats s;
		event_spool_stats(sp, &s);
		assert_false(s.created);
		assert_int_equal(s.backlog, 3);
		assert_int_equal(s.next_seq, 504);
		assert_int_equal(s.oldest_at, 7);
		struct event_spool_event *v = NULL;
		size_t n = 0;
		assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
		assert_int_equal(n, 3);
		assert_int_equal(v[0].seq, 500);
		assert_string_equal(v[0].type, "received");
		assert_string_equal(v[0].msg_id, "m1");
		assert_string_equal(v[0].detail, "{\"subject\":\"見積\"}");
		assert_null(v[1].msg_id);
		assert_int_equal(v[2].seq, 503);
		assert_int_equal(v[2].at, 9);
		event_spool_events_free(v, n);
		int64_t old = 0;
		assert_int_equal(event_spool_mark_swap(sp, "mode", 1, &old), 0);
		assert_int_equal(old, 1);
		event_spool_close(sp);
	}
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	sqlite3_stmt *q = NULL;
	assert_int_equal(
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events'", -1,
			       &q, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

/*
 * What a crash leaves in the journals: lines already moved into the file
 * (a crash between a move's commit and the journal's truncation) are not
 * taken twice, lines not moved are, and the end of a write a crash cut
 * short (no newline) is left out; the journals are empty afterwards.
 */
static void test_journal_recovery(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	int64_t first = event_spool_append(sp, 100, "received", "m1", "{}");
	event_spool_append(sp, 101, "verdict", "m1", "{\"score\":1.5}");
	int64_t third = event_spool_append(sp, 102, "delivery", "m1", "{}");
	assert_int_equal(event_spool_sync(sp, third), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0); /* moved */
	assert_int_equal(n, 3);
	event_spool_events_free(v, n);
	struct event_spool_stats s0;
	event_spool_stats(sp, &s0);
	event_spool_close(sp);

	char j0[160], j1[160], line[256];
	snprintf(j0, sizeof(j0), "%s-j0", fx->path);
	snprintf(j1, sizeof(j1), "%s-j1", fx->path);
	struct stat st;
	assert_int_equal(stat(j0, &st), 0);
	assert_int_equal(st.st_size, 0);
	FILE *f = fopen(j1, "a");
	assert_non_null(f);
	/* moved already */
	fprintf(f, "{\"seq\":%lld,\"at\":101,\"type\":\"verdict\",\"detail\":{}},\n",
		(long long)(first + 1));
	/* not moved: two events, the second cut short */
	snprintf(line, sizeof(line),
		 "{\"seq\":%lld,\"at\":103,\"type\":\"reply\",\"msg_id\":\"m1\","
		 "\"detail\":{\"reply\":\"250 ok\"}},\n",
		 (long long)(third + 1));
	fputs(line, f);
	fprintf(f, "{\"seq\":%lld,\"at\":104,\"type\":\"del", (long long)(third + 2));
	fclose(f);

	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	assert_int_equal(s.backlog, 4);
	assert_int_equal(s.next_seq, third + 2);
	assert_int_equal(s.bytes, s0.bytes + strlen(line) + 16);
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].seq, first);
	assert_int_equal(v[1].seq, first + 1);
	assert_int_equal(v[3].seq, third + 1);
	assert_string_equal(v[3].type, "reply");
	assert_string_equal(v[3].detail, "{\"reply\":\"250 ok\"}");
	event_spool_events_free(v, n);
	assert_int_equal(stat(j1, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* the next append continues after the one recovered */
	assert_int_equal(event_spool_append(sp, 105, "bounce", "m1", "{}"), third + 2);
	event_spool_close(sp);
}

/* The text of file path (NUL-terminated; *len its bytes). Freed by the caller. */
static char *read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	struct strbuf b = STRBUF_INIT;
	char buf[4096];
	size_t r;
	while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_add(&b, buf, r);
	fclose(f);
	*len = b.len;
	strbuf_puts(&b, "");
	return strbuf_take(&b);
}

/* Runs sql on the spool file through a connection of the test's own. */
static void spool_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err != NULL ? err : "?");
	sqlite3_close(db);
}

/* The log (stderr) goes to the file path until log_restore(saved). */
static int log_to(const char *path)
{
	int saved = dup(STDERR_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	return saved;
}

static void log_restore(int saved)
{
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
}

/* Waits up to 10 s for the spool's moves to fail (unmovable) or work again. */
static void wait_unmovable(struct event_spool *sp, bool unmovable)
{
	struct event_spool_stats s;
	for (int i = 0; i < 1000; i++) {
		event_spool_stats(sp, &s);
		if (s.unmovable == unmovable)
			return;
		usleep(10000);
	}
	fail_msg("the spool's moves did not %s", unmovable ? "fail" : "work again");
}

/*
 * The SQLite file refuses the moves (here: triggers that abort its writes)
 * while the journals take the commits and the manager acknowledges: the lines
 * in memory stop at their cap (max_bytes here), far before the spool is full,
 * and appends are dropped and counted; nothing committed is lost, and once a
 * move succeeds, appends are taken again.
 */
static void test_unmovable(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	const uint64_t max = 8000;
	assert_int_equal(event_spool_open(fx->path, max, false, &sp), 0);
	spool_sql(fx->path, "CREATE TRIGGER refuse_chunks BEFORE INSERT ON chunks"
			    " BEGIN SELECT RAISE(ABORT, 'refused'); END;"
			    "CREATE TRIGGER refuse_meta BEFORE UPDATE ON meta"
			    " BEGIN SELECT RAISE(ABORT, 'refused'); END;");
	int64_t seq = event_spool_append(sp, 1, "received", "m0", "{}");
	assert_int_equal(event_spool_sync(sp, seq), 0);
	char log[160];
	snprintf(log, sizeof(log), "%s/log", fx->dir);
	int saved = log_to(log);
	wait_unmovable(sp, true); /* the second rotation, a second later */
	usleep(2300000);	  /* and two more: said once a minute */
	/* acknowledged lines leave the backlog, not the memory (nor the journal) */
	for (int i = 0; i < 30; i++)
		seq = event_spool_append(sp, 2, "delivery", "m0", "{\"acked\":true}");
	assert_int_equal(event_spool_sync(sp, seq), 0);
	assert_int_equal(event_spool_ack(sp, seq), 0);
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	assert_int_equal(s.backlog, 0);

	int64_t kept[200];
	size_t k = 0;
	char detail[64];
	for (;;) {
		assert_true(k < 200);
		snprintf(detail, sizeof(detail), "{\"i\":%zu}", k);
		int64_t q = event_spool_append(sp, 3, "delivery", "m1", detail);
		if (q == 0)
			break;
		kept[k++] = q;
		assert_int_equal(event_spool_sync(sp, q), 0);
	}
	event_spool_stats(sp, &s);
	assert_int_equal(s.dropped, 1);
	assert_true(s.unmovable);
	assert_int_equal(s.backlog, k);
	/* room left in the spool: the cap dropped it, not spool_max */
	assert_true(s.bytes + 500 < max);
	assert_int_equal(event_spool_append(sp, 4, "delivery", "m1", "{}"), 0);
	event_spool_stats(sp, &s);
	assert_int_equal(s.dropped, 2);

	spool_sql(fx->path, "DROP TRIGGER refuse_chunks; DROP TRIGGER refuse_meta");
	wait_unmovable(sp, false);
	log_restore(saved);
	/* the first failure with SQLite's reason, no other until a minute has
	 * passed, and when the moves work again, how many failed */
	size_t len = 0;
	char *text = read_text(log, &len);
	char want[300];
	snprintf(want, sizeof(want), "error events.spool_write_failed path=%s error=\"refused\"",
		 fx->path);
	const char *first = strstr(text, want);
	if (first == NULL ||
	    strstr(first + strlen(want), "events.spool_write_failed path=") != NULL ||
	    test_count_of(text, "events.spool_sql_failed") > 1 ||
	    strstr(text, "events.spool_moves_failing") != NULL)
		fail_msg("the log says: %s", text);
	const char *resumed = strstr(text, "info events.spool_moves_resumed failed=");
	if (resumed == NULL ||
	    atoi(resumed + strlen("info events.spool_moves_resumed failed=")) < 3)
		fail_msg("the log says: %s", text);
	free(text);
	int64_t more = event_spool_append(sp, 5, "bounce", "m1", "{}");
	assert_true(more > kept[k - 1]);
	assert_int_equal(event_spool_sync(sp, more), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 1000, 1 << 20, &v, &n), 0);
	assert_int_equal(n, k + 1);
	for (size_t i = 0; i < k; i++) {
		assert_int_equal(v[i].seq, kept[i]);
		snprintf(detail, sizeof(detail), "{\"i\":%zu}", i);
		assert_string_equal(v[i].detail, detail);
	}
	assert_int_equal(v[k].seq, more);
	event_spool_events_free(v, n);
	event_spool_close(sp);
	/* and after a reopen */
	assert_int_equal(event_spool_open(fx->path, max, false, &sp), 0);
	assert_int_equal(peek(sp, 1000, 1 << 20, &v, &n), 0);
	assert_int_equal(n, k + 1);
	assert_int_equal(v[0].seq, kept[0]);
	assert_int_equal(v[k].seq, more);
	event_spool_events_free(v, n);
	event_spool_close(sp);
}

/*
 * Another program holds the spool file's write lock: a move waits for it (the
 * spool's busy_timeout, 5 s) and fails, and the next waits as long, but only
 * a second later, so that the pusher's peeks and acks get their turn in
 * between; once the lock is gone, the moves work again.
 */
static void test_locked_file(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	int64_t seq = event_spool_append(sp, 1, "received", "m1", "{}");
	assert_int_equal(event_spool_sync(sp, seq), 0);
	wait_unmovable(sp, true); /* the second rotation, a second later, and 5 s */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	seq = event_spool_append(sp, 2, "delivery", "m1", "{}");
	assert_int_equal(event_spool_sync(sp, seq), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 2);
	event_spool_events_free(v, n);
	assert_int_equal(event_spool_ack(sp, seq), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	int64_t ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms < 500);
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	seq = event_spool_append(sp, 3, "reply", "m1", "{}");
	assert_int_equal(event_spool_sync(sp, seq), 0);
	wait_unmovable(sp, false);
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, seq);
	event_spool_events_free(v, n);
	event_spool_close(sp);
}

/*
 * Lines in the middle of a journal that are not whole events (the part of a
 * failed write, ended by the next write's newline; damage) are left out at
 * open, also when they start like one; the whole lines around them are all
 * taken, in order.
 */
static void test_journal_fragments(void **state)
{
	struct fixture *fx = *state;
	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	int64_t s = event_spool_append(sp, 100, "received", "m1", "{}");
	assert_int_equal(event_spool_sync(sp, s), 0);
	event_spool_close(sp); /* moved into the file */

	char j0[160];
	snprintf(j0, sizeof(j0), "%s-j0", fx->path);
	FILE *f = fopen(j0, "a");
	assert_non_null(f);
	fprintf(f, "{\"seq\":%lld,\"at\":101,\"type\":\"verdict\",\"detail\":{}},\n",
		(long long)(s + 1));
	/* the start of a line, then a newline: its seq and time read like an event's */
	fprintf(f, "{\"seq\":%lld,\"at\":102,\"type\":\"deliv\n", (long long)(s + 2));
	fprintf(f, "{\"seq\":%lld,\"at\":103,\"type\":\"reply\",\"detail\":{\"a\":[1,\"}\"]}},\n",
		(long long)(s + 3));
	/* cut inside the detail, after a nested object: ends in "},\n" too */
	fprintf(f, "{\"seq\":%lld,\"at\":104,\"type\":\"x\",\"detail\":{\"a\":{\"b\":1},\n",
		(long long)(s + 4));
	fputs("{\"acked\":1\n", f);
	fputs("\n", f);
	fputs("not an event at all\n", f);
	fprintf(f,
		"{\"seq\":%lld,\"at\":105,\"type\":\"bounce\",\"msg_id\":\"m1\",\"detail\":{}},\n",
		(long long)(s + 5));
	fclose(f);

	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].seq, s);
	assert_int_equal(v[1].seq, s + 1);
	assert_string_equal(v[1].type, "verdict");
	assert_int_equal(v[2].seq, s + 3);
	assert_string_equal(v[2].detail, "{\"a\":[1,\"}\"]}");
	assert_int_equal(v[3].seq, s + 5);
	assert_string_equal(v[3].type, "bounce");
	event_spool_events_free(v, n);
	struct event_spool_stats st;
	event_spool_stats(sp, &st);
	assert_int_equal(st.backlog, 4);
	assert_int_equal(st.next_seq, s + 6);
	event_spool_close(sp);
}

/* In the calling thread only (not the spool's writer): ftruncate fails with EIO. */
static void ftruncate_fails(void)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ftruncate, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EIO),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		_exit(2);
}

/* In every thread of the process: ftruncate(fd, 0), emptying a file, fails with EIO. */
static void emptying_fails(void)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ftruncate, 0, 5),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]) + 4),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EIO),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		_exit(2);
}

/* Waits up to 5 s until the spool file holds n chunks (the writer moved them). */
static int wait_chunks(const char *path, int n)
{
	for (int i = 0; i < 500; i++) {
		sqlite3 *db = NULL;
		sqlite3_stmt *q = NULL;
		int k = -1;
		if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
		    sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &q, NULL) ==
			SQLITE_OK &&
		    sqlite3_step(q) == SQLITE_ROW)
			k = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
		sqlite3_close(db);
		if (k == n)
			return 0;
		usleep(10000);
	}
	return -1;
}

/*
 * A journal a rotation could not empty (its lines were moved) takes the
 * commits after them: a later failed write is cut back to the end of what the
 * journal holds, not to the length of the commits since the rotation, which
 * would cut them off. After a crash, every committed event is there.
 */
static void test_journal_not_emptied(void **state)
{
	struct fixture *fx = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		struct event_spool *sp = NULL;
		if (event_spool_open(fx->path, 1 << 20, false, &sp) < 0)
			_exit(1);
		emptying_fails();
		int64_t said[4];
		/* into j0; the first rotation (at once) turns to j1, */
		said[0] = event_spool_append(
		    sp, 1, "received", "m1",
		    "{\"from\":\"someone@example.org\",\"to\":\"a@example.org\"}");
		if (event_spool_sync(sp, said[0]) < 0)
			_exit(1);
		usleep(100000);
		said[1] = event_spool_append(sp, 2, "verdict", "m1", "{}");
		if (event_spool_sync(sp, said[1]) < 0)
			_exit(1);
		/* the second, a second later, moves j0's line and cannot empty j0 */
		if (wait_chunks(fx->path, 1) < 0)
			_exit(1);
		said[2] = event_spool_append(sp, 3, "delivery", "m1", "{}");
		if (event_spool_sync(sp, said[2]) < 0)
			_exit(1);
		/* a write to j0 that fails, nothing written */
		char j0[160];
		snprintf(j0, sizeof(j0), "%s-j0", fx->path);
		struct stat st;
		struct rlimit was, low;
		if (stat(j0, &st) < 0 || getrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		low = was;
		low.rlim_cur = (rlim_t)st.st_size;
		if (setrlimit(RLIMIT_FSIZE, &low) < 0)
			_exit(1);
		said[3] = event_spool_append(sp, 4, "reply", "m1", "{}");
		if (event_spool_sync(sp, said[3]) < 0 || setrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		if (write(fds[1], said, sizeof(said)) != sizeof(said))
			_exit(1);
		_exit(0); /* a crash */
	}
	close(fds[1]);
	int64_t said[4] = {0, 0, 0, 0};
	assert_int_equal(read(fds[0], said, sizeof(said)), sizeof(said));
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].seq, said[0]);
	assert_int_equal(v[1].seq, said[1]);
	assert_int_equal(v[2].seq, said[2]);
	assert_string_equal(v[2].type, "delivery");
	event_spool_events_free(v, n);
	struct event_spool_stats st;
	event_spool_stats(sp, &st);
	assert_int_equal(st.backlog, 3);
	event_spool_close(sp);
}

/*
 * Journal writes that keep failing (the file size limit: no byte may be
 * written) drop their events and are logged once, not once a commit; the
 * first that works again says how many failed.
 */
static void test_failing_writes_said_once(void **state)
{
	struct fixture *fx = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		if (dup2(fds[1], STDERR_FILENO) < 0) /* the log, to the parent */
			_exit(1);
		close(fds[1]);
		struct event_spool *sp = NULL;
		if (event_spool_open(fx->path, 1 << 20, false, &sp) < 0)
			_exit(1);
		struct rlimit was, none;
		if (getrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		none = was;
		none.rlim_cur = 0;
		if (setrlimit(RLIMIT_FSIZE, &none) < 0)
			_exit(1);
		for (int i = 0; i < 5; i++) {
			int64_t seq = event_spool_append(sp, 1, "received", "m1", "{}");
			if (seq <= 0 || event_spool_sync(sp, seq) < 0)
				_exit(1);
		}
		if (setrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		int64_t seq = event_spool_append(sp, 2, "reply", "m1", "{}");
		if (seq <= 0 || event_spool_sync(sp, seq) < 0)
			_exit(1);
		struct event_spool_stats st;
		event_spool_stats(sp, &st);
		event_spool_close(sp);
		_exit(st.dropped == 5 ? 0 : 2);
	}
	close(fds[1]);
	struct strbuf log = STRBUF_INIT;
	char buf[4096];
	ssize_t got;
	while ((got = read(fds[0], buf, sizeof(buf))) > 0)
		strbuf_add(&log, buf, (size_t)got);
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	const char *text = strbuf_str(&log);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("status %d; the log says: %s", status, text);
	char want[300];
	snprintf(want, sizeof(want), "error events.spool_write_failed path=%s-j", fx->path);
	const char *first = strstr(text, want);
	if (first == NULL || strstr(first + 1, want) != NULL ||
	    strstr(first, "failed=1\n") == NULL ||
	    strstr(text, "info events.spool_writes_resumed path=") == NULL ||
	    strstr(text, " failed=5\n") == NULL)
		fail_msg("the log says: %s", text);
	strbuf_free(&log);
}

/*
 * A commit whose write stops partway (the file size limit) and whose cut-back
 * fails (ftruncate refused) leaves part of a line in the journal; the next
 * commit starts with a newline, so that after a crash its event is recovered
 * and the part is left out. The failed commit's event is dropped and counted.
 */
static void test_torn_write(void **state)
{
	struct fixture *fx = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		struct event_spool *sp = NULL;
		if (event_spool_open(fx->path, 1 << 20, false, &sp) < 0)
			_exit(1);
		/* nothing committed yet: the write goes to the empty journal j0 */
		struct rlimit was, low;
		if (getrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		low = was;
		low.rlim_cur = 40;
		if (setrlimit(RLIMIT_FSIZE, &low) < 0)
			_exit(1);
		ftruncate_fails(); /* this thread commits what it syncs */
		int64_t said[3];
		said[0] =
		    event_spool_append(sp, 1, "received", "m1", "{\"from\":\"a@example.org\"}");
		if (event_spool_sync(sp, said[0]) < 0 || setrlimit(RLIMIT_FSIZE, &was) < 0)
			_exit(1);
		said[1] = event_spool_append(sp, 2, "delivery", "m1", "{\"status\":\"sent\"}");
		if (event_spool_sync(sp, said[1]) < 0)
			_exit(1);
		struct event_spool_stats st;
		event_spool_stats(sp, &st);
		said[2] = (int64_t)st.dropped;
		if (write(fds[1], said, sizeof(said)) != sizeof(said))
			_exit(1);
		_exit(0); /* a crash: the journal as it is */
	}
	close(fds[1]);
	int64_t said[3] = {0, 0, 0};
	assert_int_equal(read(fds[0], said, sizeof(said)), sizeof(said));
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(said[2], 1);

	char j0[160], start[64];
	snprintf(j0, sizeof(j0), "%s-j0", fx->path);
	size_t len = 0;
	char *text = read_text(j0, &len);
	/* 40 bytes of the first line, a newline, the second line */
	assert_true(len > 41);
	snprintf(start, sizeof(start), "{\"seq\":%lld,", (long long)said[0]);
	assert_memory_equal(text, start, strlen(start));
	assert_int_equal(text[40], '\n');
	snprintf(start, sizeof(start), "{\"seq\":%lld,", (long long)said[1]);
	assert_memory_equal(text + 41, start, strlen(start));
	assert_string_equal(text + len - 3, "},\n");
	free(text);

	struct event_spool *sp = NULL;
	assert_int_equal(event_spool_open(fx->path, 1 << 20, false, &sp), 0);
	struct event_spool_event *v = NULL;
	size_t n = 0;
	assert_int_equal(peek(sp, 10, 1 << 20, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, said[1]);
	assert_string_equal(v[0].type, "delivery");
	assert_string_equal(v[0].detail, "{\"status\":\"sent\"}");
	event_spool_events_free(v, n);
	event_spool_close(sp);
}

static void test_parse_answer(void **state)
{
	static const struct {
		long status;
		const char *body;
		int64_t last;
		int rc;
		int64_t acked;
	} cases[] = {
	    {200, "{\"acked\":42,\"stored\":3}", 42, 0, 42},
	    {200, "{\"acked\":40}", 42, 0, 40},
	    {200, "{\"acked\":43}", 42, -EPROTO, 0}, /* more than was sent */
	    {200, "{\"acked\":-1}", 42, -EPROTO, 0},
	    {200, "{\"acked\":\"42\"}", 42, -EPROTO, 0},
	    {200, "{}", 42, -EPROTO, 0},
	    {200, "not json", 42, -EPROTO, 0},
	    {200, "", 42, -EPROTO, 0},
	    {401, "{\"error\":{\"message\":\"no\"}}", 42, -EACCES, 0},
	    {403, "{}", 42, -EACCES, 0},
	    {413, "{}", 42, -E2BIG, 0},
	    {400, "{\"error\":{\"message\":\"events[0]: bad\"}}", 42, -EBADMSG, 0},
	    {500, "{\"acked\":42}", 42, -EPROTO, 0},
	    {503, "", 42, -EPROTO, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t acked = 7;
		int rc = gw_events_parse_answer(cases[i].status, cases[i].body,
						strlen(cases[i].body), cases[i].last, &acked);
		if (rc != cases[i].rc || acked != cases[i].acked)
			fail_msg("case %zu: rc %d acked %lld", i, rc, (long long)acked);
	}
}

/* sync = group: a sync returns once committed and the writer fsyncs within
 * 100 ms; sync = each: every commit is fsynced by itself, the writer never is. */
static void test_sync_modes(void **state)
{
	struct fixture *fx = *state;
	for (int each = 0; each <= 1; each++) {
		struct event_spool *sp = NULL;
		assert_int_equal(event_spool_open(fx->path, 1 << 20, each, &sp), 0);
		int64_t seq = event_spool_append(sp, 1000, "received", "m1", "{}");
		assert_int_equal(event_spool_sync(sp, seq), 0);
		struct event_spool_stats s;
		for (int i = 0; i < 100; i++) {
			event_spool_stats(sp, &s);
			if (s.syncs > 0)
				break;
			usleep(10000);
		}
		if (each)
			assert_int_equal(s.syncs, 0);
		else
			assert_true(s.syncs >= 1);
		assert_int_equal(s.backlog, each ? 2 : 1);
		event_spool_close(sp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_append_peek_ack_reopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_after_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_when_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spool_max, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mark_swap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_is_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_cut, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_convert_old_spool, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_recovery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_fragments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_not_emptied, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failing_writes_said_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unmovable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locked_file, setup, teardown),
	    cmocka_unit_test(test_parse_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
