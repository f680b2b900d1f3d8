/*
 * Tests for expiry_run_once: a real store in a temporary folder holds messages of
 * several quarantines and ages; each row of the table runs one expiry with a list
 * of retentions and checks which messages are left and what was counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "quarantine/expiry.h"
#include "store/store.h"

#define HOUR (3600 * INT64_C(1000))

/* The messages every case starts with: one recipient each. */
static const struct {
	const char *quarantine;
	int64_t age_ms;
} corpus[] = {
    {"spam", 10 * HOUR},   /* 0 */
    {"spam", 1 * HOUR},	   /* 1 */
    {"Policy", 10 * HOUR}, /* 2 */
    {"Virus", 3 * HOUR},   /* 3 */
    {"Policy", 1 * HOUR},  /* 4 */
};
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

struct expiry_case {
	const char *name;
	struct expiry_retention keep[3];
	size_t nkeep;
	bool left[NCORPUS]; /* still in the store afterwards */
	uint64_t want_expired, want_purged;
};

static const struct expiry_case cases[] = {
    {"spam only, named", {{"spam", 2 * HOUR}}, 1, {false, true, true, true, true}, 1, 1},
    {"spam kept, the others 2h",
     {{"spam", 0}, {NULL, 2 * HOUR}},
     2,
     {true, true, false, false, true},
     2,
     2},
    {"spam 20h, the others 5h",
     {{NULL, 5 * HOUR}, {"spam", 20 * HOUR}},
     2,
     {true, true, false, true, true},
     1,
     1},
    {"two named, the rest untouched",
     {{"spam", 2 * HOUR}, {"Virus", 2 * HOUR}},
     2,
     {false, true, true, false, true},
     2,
     2},
    {"everything 30m", {{NULL, HOUR / 2}}, 1, {false, false, false, false, false}, 5, 5},
    {"no retention at all", {{NULL, 0}}, 1, {true, true, true, true, true}, 0, 0},
    {"empty list: purge only", {{NULL, 0}}, 0, {true, true, true, true, true}, 0, 0},
    {"a quarantine the store does not have",
     {{"Outbreak", 1}},
     1,
     {true, true, true, true, true},
     0,
     0},
};

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

static void waiter_done(void *arg, int rc)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rc = rc;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void add_message(struct store *st, const char *quarantine, int64_t at, char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(at, m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup(quarantine);
	m->received_at = at;
	m->sender = xstrdup("s@x.test");
	m->recipients = xcalloc(1, sizeof(char *));
	m->recipients[0] = xstrdup("r@y.test");
	m->nrecipients = 1;
	m->gateway = xstrdup("gw1");
	m->verdict = xstrdup("spam");
	m->raw = (unsigned char *)xstrdup("Subject: x\r\n\r\nbody\r\n");
	m->raw_len = strlen((char *)m->raw);
	struct waiter w = {.done = false};
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	assert_int_equal(store_submit_message(st, m, waiter_done, &w), 0);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	assert_int_equal(w.rc, 0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_run_once_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct expiry_case *c = &cases[i];
		char dir[] = "/tmp/lazaret-test-expiry-XXXXXX";
		assert_non_null(mkdtemp(dir));
		struct store_options opt = {.dir = dir};
		struct store *st = NULL;
		assert_int_equal(store_open(&opt, &st), 0);
		int64_t now = clock_now_ms();
		char ids[NCORPUS][37];
		for (size_t k = 0; k < NCORPUS; k++)
			add_message(st, corpus[k].quarantine, now - corpus[k].age_ms, ids[k]);

		uint64_t expired = 0, purged = 0;
		int rc = expiry_run_once(st, c->keep, c->nkeep, now, &expired, &purged);
		if (rc != 0)
			fail_msg("%s: rc %d", c->name, rc);
		if (expired != c->want_expired || purged != c->want_purged)
			fail_msg("%s: expired %llu purged %llu, want %llu and %llu", c->name,
				 (unsigned long long)expired, (unsigned long long)purged,
				 (unsigned long long)c->want_expired,
				 (unsigned long long)c->want_purged);
		for (size_t k = 0; k < NCORPUS; k++) {
			struct store_message *m = NULL;
			int got = store_get(st, ids[k], &m);
			if (got != (c->left[k] ? 0 : -ENOENT))
				fail_msg("%s: message %zu (%s, %lld h old): store_get %d", c->name,
					 k, corpus[k].quarantine,
					 (long long)(corpus[k].age_ms / HOUR), got);
			if (m != NULL) {
				assert_int_equal(m->recipients[0].state, STORE_RCPT_QUARANTINED);
				store_message_free(m);
			}
		}
		/* A second run finds nothing more to do. */
		expired = purged = 0;
		assert_int_equal(expiry_run_once(st, c->keep, c->nkeep, now, &expired, &purged), 0);
		assert_int_equal(expired, 0);
		assert_int_equal(purged, 0);
		store_close(st);
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_once_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
