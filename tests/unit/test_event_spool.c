/*
 * Tests for gateway/event_spool (the gateway's durable event queue) and
 * gw_events_parse_answer (the manager's answer to a push): append and sync,
 * peek in order within the batch limits, ack drops only up to the seq, reopen
 * keeps the unacknowledged events and the numbering, a process killed (SIGKILL)
 * right after its sync loses nothing synced, spool_max drops and counts, a mark
 * (the mode that last took the events) survives a reopen and says its old value,
 * a callback for a durable event comes once it is committed, once per call.
 */
#include <errno.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/xalloc.h"
#include "gateway/event_spool.h"
#include "gateway/gw_events.h"

struct fixture {
	char dir[64];
	char path[128];
};

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
	assert_int_equal(event_spool_peek(sp, 4, 1 << 20, &v, &n), 0);
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
	assert_int_equal(event_spool_peek(sp, 100, 1, &v, &n), 0);
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
	assert_int_equal(event_spool_peek(sp, 100, 1 << 20, &v, &n), 0);
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

/* A child appends and syncs, reports the last synced seq, and is killed (SIGKILL)
 * while it keeps appending: every synced event is there after a reopen. */
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
		if (write(fds[1], &seq, sizeof(seq)) != sizeof(seq))
			_exit(1);
		for (;;) /* unsynced appends go on until the kill */
			event_spool_append(sp, 9, "delivery", "m", "{}");
	}
	close(fds[1]);
	int64_t synced = 0;
	assert_int_equal(read(fds[0], &synced, sizeof(synced)), sizeof(synced));
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
	assert_int_equal(event_spool_peek(sp, 200, 1 << 24, &v, &n), 0);
	assert_int_equal(n, 200);
	assert_int_equal(v[199].seq, synced);
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
	/* room for a few events of ~100 bytes only */
	assert_int_equal(event_spool_open(fx->path, 400, false, &sp), 0);
	char detail[64];
	memset(detail, 'x', sizeof(detail) - 1);
	detail[sizeof(detail) - 1] = '\0';
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
	assert_int_equal(event_spool_peek(sp, 100, 1 << 20, &v, &n), 0);
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
	    cmocka_unit_test(test_parse_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
