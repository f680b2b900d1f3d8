/*
 * test_slbl_cache — the gateway's safelist/blocklist cache: the matching rules
 * (addresses, exact domains, ".x.com" = x.com and below, blocklist first, case),
 * loading the saved file, sync against a tiny scripted HTTP server on loopback
 * (paging, Bearer token, removals, a manager that went back in time) and that a
 * failed sync keeps what the cache had, across reopening too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "gateway/slbl_cache.h"

/* ---- a scripted HTTP server: one answer per connection, in order ---- */

#define FAKE_MAX 8

struct fake_answer {
	int status;
	const char *body;
	bool hang; /* read the request, answer nothing until the client gives up */
};

struct fake_server {
	int fd;
	unsigned port;
	pthread_t thread;
	pthread_mutex_t lock;
	struct fake_answer answers[FAKE_MAX];
	size_t nanswers, next;
	char request[FAKE_MAX][256]; /* request lines */
	char auth[FAKE_MAX][256];    /* Authorization values */
	size_t nrequests;
	bool stop;
};

static void fake_serve_one(struct fake_server *f, int conn)
{
	char buf[8192];
	size_t n = 0;
	while (n < sizeof(buf) - 1) {
		ssize_t r = recv(conn, buf + n, sizeof(buf) - 1 - n, 0);
		if (r <= 0)
			return;
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			break;
	}
	pthread_mutex_lock(&f->lock);
	struct fake_answer a = {500, "{}", false};
	if (f->next < f->nanswers)
		a = f->answers[f->next++];
	if (f->nrequests < FAKE_MAX) {
		size_t i = f->nrequests++;
		snprintf(f->request[i], sizeof(f->request[i]), "%.*s", (int)strcspn(buf, "\r\n"),
			 buf);
		const char *h = strcasestr(buf, "\r\nAuthorization: ");
		f->auth[i][0] = '\0';
		if (h != NULL) {
			h += strlen("\r\nAuthorization: ");
			snprintf(f->auth[i], sizeof(f->auth[i]), "%.*s", (int)strcspn(h, "\r\n"),
				 h);
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (a.hang) {
		while (recv(conn, buf, sizeof(buf), 0) > 0)
			;
		return;
	}
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			  a.status, strlen(a.body));
	if (send(conn, head, (size_t)hl, MSG_NOSIGNAL) < 0 ||
	    send(conn, a.body, strlen(a.body), MSG_NOSIGNAL) < 0)
		return;
}

static void *fake_main(void *arg)
{
	struct fake_server *f = arg;
	for (;;) {
		pthread_mutex_lock(&f->lock);
		bool stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			break;
		struct pollfd p = {.fd = f->fd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		int conn = accept(f->fd, NULL, NULL);
		if (conn < 0)
			continue;
		fake_serve_one(f, conn);
		close(conn);
	}
	return NULL;
}

static struct fake_server *fake_start(void)
{
	struct fake_server *f = xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->fd, 8), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &sl), 0);
	f->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

static void fake_stop(struct fake_server *f)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	close(f->fd);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Replaces the script and forgets earlier requests. */
static void fake_script(struct fake_server *f, const struct fake_answer *a, size_t n)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < n; i++)
		f->answers[i] = a[i];
	f->nanswers = n;
	f->next = 0;
	f->nrequests = 0;
	pthread_mutex_unlock(&f->lock);
}

/* ---- fixture ---- */

struct fixture {
	char dir[64];
	char *path;
	char *url;
	struct fake_server *srv;
	struct slbl_cache *c;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lazaret-test-slblc-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->path = xasprintf("%s/slbl.json", fx->dir);
	fx->srv = fake_start();
	fx->url = xasprintf("http://127.0.0.1:%u/", fx->srv->port);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	slbl_cache_free(fx->c);
	fake_stop(fx->srv);
	char *tmp = xasprintf("%s.tmp", fx->path);
	unlink(tmp);
	unlink(fx->path);
	rmdir(fx->dir);
	free(tmp);
	free(fx->path);
	free(fx->url);
	free(fx);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void reopen(struct fixture *fx)
{
	slbl_cache_free(fx->c);
	fx->c = NULL;
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
}

/* ---- matching ---- */

static const char matching_file[] =
    "{\"format\":1,\"version\":7,\"recipients\":{"
    "\"user@corp.example\":{"
    "\"safelist\":[\"friend@partner.example\",\"partner.example\",\".trusted.example\","
    "\"both@x.example\"],"
    "\"blocklist\":[\"spam.example\",\".evil.example\",\"bad@partner.example\","
    "\"both@x.example\"]},"
    "\"other@corp.example\":{\"safelist\":[],\"blocklist\":[\".com\"]}}}";

static const struct {
	const char *rcpt;
	const char *sender;
	enum slbl_verdict want;
} match_cases[] = {
    {"user@corp.example", "friend@partner.example", SLBL_SAFE},
    {"USER@Corp.Example", "Friend@PARTNER.example", SLBL_SAFE},
    {"user@corp.example", "anyone@partner.example", SLBL_SAFE},	  /* domain entry */
    {"user@corp.example", "bad@partner.example", SLBL_BLOCK},	  /* blocklist first */
    {"user@corp.example", "a@mail.partner.example", SLBL_NONE},	  /* "x.com" is exact */
    {"user@corp.example", "a@trusted.example", SLBL_SAFE},	  /* ".x.com" has x.com */
    {"user@corp.example", "a@mx.trusted.example", SLBL_SAFE},	  /* and below */
    {"user@corp.example", "a@b.mx.trusted.example", SLBL_SAFE},	  /* any depth */
    {"user@corp.example", "a@untrusted.example", SLBL_NONE},	  /* label boundary */
    {"user@corp.example", "a@spam.example", SLBL_BLOCK},	  /* */
    {"user@corp.example", "a@x.spam.example", SLBL_NONE},	  /* */
    {"user@corp.example", "a@evil.example", SLBL_BLOCK},	  /* */
    {"user@corp.example", "a@deep.evil.example", SLBL_BLOCK},	  /* */
    {"user@corp.example", "both@x.example", SLBL_BLOCK},	  /* on both lists */
    {"user@corp.example", "other@x.example", SLBL_NONE},	  /* */
    {"user@corp.example", "", SLBL_NONE},			  /* null sender */
    {"user@corp.example", "partner.example", SLBL_NONE},	  /* no '@': no domain */
    {"nobody@corp.example", "friend@partner.example", SLBL_NONE}, /* no lists */
    {"other@corp.example", "x@y.com", SLBL_BLOCK},		  /* TLD-wide entry */
    {"other@corp.example", "x@y.com.example", SLBL_NONE},	  /* */
};

static void test_matching(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->path, matching_file);
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	assert_int_equal(slbl_cache_version(fx->c), 7);
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		enum slbl_verdict v =
		    slbl_cache_check(fx->c, match_cases[i].rcpt, match_cases[i].sender);
		if (v != match_cases[i].want)
			fail_msg("case %zu: %s -> %s gave %d, want %d", i, match_cases[i].sender,
				 match_cases[i].rcpt, (int)v, (int)match_cases[i].want);
	}
	assert_int_equal(slbl_cache_check(fx->c, NULL, "a@b.c"), SLBL_NONE);
}

static void test_open_missing_and_corrupt(void **state)
{
	struct fixture *fx = *state;
	/* No file yet: empty at version 0. */
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	assert_int_equal(slbl_cache_version(fx->c), 0);
	/* A damaged file: logged, empty, refilled by the next sync. */
	static const char *const bad[] = {
	    "{\"format\":1,\"version\":3,\"recipients\":{\"a@b.example\":{",
	    ("{\"format\":1,\"version\":3,\"recipients\":{\"a@b.example\":{\"safelist\":[1],"
	     "\"blocklist\":[]}}}"),
	    "{\"format\":99,\"version\":3,\"recipients\":{}}",
	    "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(fx->path, bad[i]);
		reopen(fx);
		assert_int_equal(slbl_cache_version(fx->c), 0);
		assert_int_equal(slbl_cache_check(fx->c, "a@b.example", "x@y.example"), SLBL_NONE);
	}
}

/* ---- sync ---- */

static void test_sync_pages_and_persists(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	const struct fake_answer pages[] = {
	    {200,
	     "{\"version\":3,\"more\":true,\"changes\":["
	     "{\"recipient\":\"a@corp.example\",\"safelist\":[\"friend.example\"],"
	     "\"blocklist\":[]},"
	     "{\"recipient\":\"B@corp.example\",\"safelist\":[],\"blocklist\":[\"Spam.Example\"]}]"
	     "}",
	     false},
	    {200,
	     "{\"version\":5,\"more\":false,\"changes\":["
	     "{\"recipient\":\"c@corp.example\",\"safelist\":[\".partner.example\"],"
	     "\"blocklist\":[\"x@partner.example\"]}]}",
	     false},
	};
	fake_script(fx->srv, pages, 2);
	assert_int_equal(slbl_cache_sync(fx->c, fx->url, "s3cret", 5000), 0);
	assert_int_equal(fx->srv->nrequests, 2);
	assert_string_equal(fx->srv->request[0], "GET /api/v1/slbl?since=0 HTTP/1.1");
	assert_string_equal(fx->srv->request[1], "GET /api/v1/slbl?since=3 HTTP/1.1");
	assert_string_equal(fx->srv->auth[0], "Bearer s3cret");
	assert_string_equal(fx->srv->auth[1], "Bearer s3cret");
	assert_int_equal(slbl_cache_version(fx->c), 5);
	assert_int_equal(slbl_cache_check(fx->c, "a@corp.example", "z@friend.example"), SLBL_SAFE);
	assert_int_equal(slbl_cache_check(fx->c, "b@corp.example", "z@spam.example"), SLBL_BLOCK);
	assert_int_equal(slbl_cache_check(fx->c, "c@corp.example", "y@partner.example"), SLBL_SAFE);
	assert_int_equal(slbl_cache_check(fx->c, "c@corp.example", "x@partner.example"),
			 SLBL_BLOCK);

	/* Saved: a new process sees the same, with the manager gone. */
	reopen(fx);
	assert_int_equal(slbl_cache_version(fx->c), 5);
	assert_int_equal(slbl_cache_check(fx->c, "b@corp.example", "z@spam.example"), SLBL_BLOCK);
	assert_int_equal(slbl_cache_check(fx->c, "c@corp.example", "y@partner.example"), SLBL_SAFE);
	char *tmp = xasprintf("%s.tmp", fx->path);
	assert_int_equal(access(tmp, F_OK), -1); /* no temp file left behind */
	free(tmp);

	/* A change with empty lists removes the recipient; the next sync asks since=5. */
	const struct fake_answer removal[] = {
	    {200,
	     "{\"version\":6,\"changes\":[{\"recipient\":\"b@corp.example\",\"safelist\":[],"
	     "\"blocklist\":[]}]}",
	     false},
	};
	fake_script(fx->srv, removal, 1);
	assert_int_equal(slbl_cache_sync(fx->c, fx->url, "s3cret", 5000), 0);
	assert_string_equal(fx->srv->request[0], "GET /api/v1/slbl?since=5 HTTP/1.1");
	assert_int_equal(slbl_cache_check(fx->c, "b@corp.example", "z@spam.example"), SLBL_NONE);
	reopen(fx);
	assert_int_equal(slbl_cache_version(fx->c), 6);
	assert_int_equal(slbl_cache_check(fx->c, "b@corp.example", "z@spam.example"), SLBL_NONE);
	assert_int_equal(slbl_cache_check(fx->c, "a@corp.example", "z@friend.example"), SLBL_SAFE);
}

static void test_sync_failures_keep_state(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->path, matching_file);
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	static const struct {
		struct fake_answer answers[2];
		size_t n;
		int want;
	} cases[] = {
	    {{{500, "{}", false}}, 1, -EPROTO},
	    {{{401, "{}", false}}, 1, -EACCES},
	    {{{200, "not json", false}}, 1, -EPROTO},
	    {{{200, "{\"version\":9,\"changes\":[{\"recipient\":\"user@corp.example\"}]}", false}},
	     1,
	     -EPROTO},
	    {{{200, "{\"version\":\"9\",\"changes\":[]}", false}}, 1, -EPROTO},
	    /* The second page fails: the first is not applied either. */
	    {{{200,
	       "{\"version\":8,\"more\":true,\"changes\":[{\"recipient\":\"user@corp.example\","
	       "\"safelist\":[],\"blocklist\":[]}]}",
	       false},
	      {503, "{}", false}},
	     2,
	     -EPROTO},
	    {{{0, "", true}}, 1, -ETIMEDOUT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake_script(fx->srv, cases[i].answers, cases[i].n);
		int64_t t0 = clock_mono_ms();
		int rc = slbl_cache_sync(fx->c, fx->url, "tok", 400);
		if (rc != cases[i].want)
			fail_msg("case %zu: sync gave %d, want %d", i, rc, cases[i].want);
		assert_true(clock_mono_ms() - t0 < 3000);
		assert_int_equal(slbl_cache_version(fx->c), 7);
		assert_int_equal(slbl_cache_check(fx->c, "user@corp.example", "a@spam.example"),
				 SLBL_BLOCK);
	}
	/* Nobody listening. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	bind(s, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(s, (struct sockaddr *)&sa, &sl);
	char *dead = xasprintf("http://127.0.0.1:%u", ntohs(sa.sin_port));
	close(s);
	assert_true(slbl_cache_sync(fx->c, dead, "tok", 1000) < 0);
	free(dead);
	reopen(fx);
	assert_int_equal(slbl_cache_version(fx->c), 7);
	assert_int_equal(slbl_cache_check(fx->c, "user@corp.example", "a@spam.example"),
			 SLBL_BLOCK);
}

static void test_sync_manager_behind(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->path, matching_file); /* version 7 */
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	const struct fake_answer answers[] = {
	    {200, "{\"version\":2,\"changes\":[]}", false},
	    {200,
	     "{\"version\":2,\"changes\":[{\"recipient\":\"new@corp.example\","
	     "\"safelist\":[\"ok.example\"],\"blocklist\":[]}]}",
	     false},
	};
	fake_script(fx->srv, answers, 2);
	assert_int_equal(slbl_cache_sync(fx->c, fx->url, "tok", 5000), 0);
	assert_string_equal(fx->srv->request[0], "GET /api/v1/slbl?since=7 HTTP/1.1");
	assert_string_equal(fx->srv->request[1], "GET /api/v1/slbl?since=0 HTTP/1.1");
	assert_int_equal(slbl_cache_version(fx->c), 2);
	/* The old table is gone: the manager's is the truth. */
	assert_int_equal(slbl_cache_check(fx->c, "user@corp.example", "a@spam.example"), SLBL_NONE);
	assert_int_equal(slbl_cache_check(fx->c, "new@corp.example", "a@ok.example"), SLBL_SAFE);
}

/* Lookups from other threads while syncs replace lists: no torn reads (run under TSan/ASan). */
struct reader_arg {
	struct slbl_cache *c;
	volatile bool stop;
	unsigned bad;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	while (!a->stop) {
		enum slbl_verdict v = slbl_cache_check(a->c, "a@corp.example", "x@spam.example");
		if (v == SLBL_SAFE)
			a->bad++;
	}
	return NULL;
}

static void test_concurrent_lookups(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(slbl_cache_open(fx->path, &fx->c), 0);
	struct reader_arg ra = {.c = fx->c};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reader_main, &ra), 0);
	char bodies[6][256];
	struct fake_answer answers[6];
	for (int i = 0; i < 6; i++) {
		snprintf(bodies[i], sizeof(bodies[i]),
			 "{\"version\":%d,\"changes\":[{\"recipient\":\"a@corp.example\","
			 "\"safelist\":[],\"blocklist\":[%s]}]}",
			 i + 1, i % 2 == 0 ? "\"spam.example\"" : "");
		answers[i] = (struct fake_answer){200, bodies[i], false};
	}
	for (int i = 0; i < 6; i++) {
		fake_script(fx->srv, &answers[i], 1);
		assert_int_equal(slbl_cache_sync(fx->c, fx->url, "tok", 5000), 0);
	}
	ra.stop = true;
	pthread_join(th, NULL);
	assert_int_equal(ra.bad, 0);
	assert_int_equal(slbl_cache_version(fx->c), 6);
	assert_int_equal(slbl_cache_check(fx->c, "a@corp.example", "x@spam.example"), SLBL_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_matching, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_missing_and_corrupt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_pages_and_persists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_failures_keep_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_manager_behind, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_lookups, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
