/*
 * Tests for api_tracking_parse and api_tracking_id_parse: a tracking search's
 * query string and a tracked message's id, read strictly. A table of query
 * strings, each with the exact error (or none) and what a good one yields.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_tracking.h"
#include "common/unconst.h"

/* A query string "k=v&k=v" (no escapes) as api_tracking_query_fn reads it. */
static const char *query_get(void *arg, const char *key, size_t *count)
{
	const char *q = arg;
	const char *found = NULL;
	size_t flen = 0;
	*count = 0;
	while (q != NULL && *q != '\0') {
		size_t len = strcspn(q, "&");
		const char *eq = memchr(q, '=', len);
		size_t klen = eq != NULL ? (size_t)(eq - q) : len;
		if (klen == strlen(key) && strncmp(q, key, klen) == 0) {
			(*count)++;
			if (found == NULL) {
				found = eq != NULL ? eq + 1 : q + len;
				flen = eq != NULL ? len - klen - 1 : 0;
			}
		}
		q += len;
		if (*q == '&')
			q++;
	}
	if (found == NULL)
		return NULL;
	/* the parser keeps the pointers it gets: one buffer per key it reads */
	static char pool[16][2048];
	static size_t next;
	char *v = pool[next++ % 16];
	memcpy(v, found, flen);
	v[flen] = '\0';
	return v;
}

static const struct {
	const char *query;
	const char *err; /* NULL: accepted */
	size_t limit;
	unsigned flags;
	int op;
} cases[] = {
    {"", NULL, 50, 0, STORE_TRACK_SUBJECT_CONTAINS},
    {"limit=1", NULL, 1, 0, 0},
    {"limit=1000", NULL, 1000, 0, 0},
    {"limit=0", "\"limit\" must be a number from 1 to 1000", 0, 0, 0},
    {"limit=1001", "\"limit\" must be a number from 1 to 1000", 0, 0, 0},
    {"limit=99999999999999999999", "\"limit\" must be a number from 1 to 1000", 0, 0, 0},
    {"limit=-5", "\"limit\" must be a number from 1 to 1000", 0, 0, 0},
    {"limit=5x", "\"limit\" must be a number from 1 to 1000", 0, 0, 0},
    {"limit=", NULL, 50, 0, 0},
    {"subject_op=begins", NULL, 50, 0, STORE_TRACK_SUBJECT_BEGINS},
    {"subject_op=is", NULL, 50, 0, STORE_TRACK_SUBJECT_IS},
    {"subject_op=contains", NULL, 50, 0, STORE_TRACK_SUBJECT_CONTAINS},
    {"subject_op=IS", "\"subject_op\" must be one of begins, is, contains", 0, 0, 0},
    {"event=spam", NULL, 50, STORE_TRACK_SPAM, 0},
    {"event=spam,dlp,hard_bounce", NULL, 50,
     STORE_TRACK_SPAM | STORE_TRACK_DLP | STORE_TRACK_HARD_BOUNCE, 0},
    {"event=spam,,dlp",
     "\"event\" must be a comma-separated list of spam, suspect, virus, delivered, "
     "hard_bounce, soft_bounce, quarantined, outbreak, dlp",
     0, 0, 0},
    {"event=Spam",
     "\"event\" must be a comma-separated list of spam, suspect, virus, delivered, "
     "hard_bounce, soft_bounce, quarantined, outbreak, dlp",
     0, 0, 0},
    {"since=2026-01-01T00:00:00Z", NULL, 50, 0, 0},
    {"since=26-01-01", "\"since\" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)", 0, 0,
     0},
    {"until=soon", "\"until\" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)", 0, 0, 0},
    {"sender=a&sender=b", "query parameter \"sender\" given more than once", 0, 0, 0},
    {"cursor=1&cursor=2", "query parameter \"cursor\" given more than once", 0, 0, 0},
};

static void test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct api_tracking_params p;
		char *err = NULL;
		int rc = api_tracking_parse(query_get, unconst(cases[i].query), &p, &err);
		if (cases[i].err == NULL) {
			if (rc != 0)
				fail_msg("case %zu (%s): %s", i, cases[i].query, err);
			assert_int_equal(p.limit, cases[i].limit);
			assert_int_equal(p.q.flags, cases[i].flags);
			assert_int_equal(p.q.subject_op, cases[i].op);
			assert_null(err);
		} else {
			if (rc != -EINVAL)
				fail_msg("case %zu (%s): accepted", i, cases[i].query);
			if (err == NULL || strcmp(err, cases[i].err) != 0)
				fail_msg("case %zu (%s): got %s", i, cases[i].query, err);
		}
		free(err);
	}
}

static void test_parse_fields(void **state)
{
	(void)state;
	struct api_tracking_params p;
	char *err = NULL;
	assert_int_equal(
	    api_tracking_parse(query_get,
			       unconst("sender=a@b&recipient=c@d&subject=x&message_id=m@x&"
				       "gateway=gw1&client_ip=192.0.2.1&attachment=f.pdf&"
				       "cursor=1~gw1~m&since=1970-01-01T00:00:00Z"),
			       &p, &err),
	    0);
	assert_string_equal(p.q.sender, "a@b");
	assert_string_equal(p.q.recipient, "c@d");
	assert_string_equal(p.q.subject, "x");
	assert_string_equal(p.q.message_id, "m@x");
	assert_string_equal(p.q.gateway, "gw1");
	assert_string_equal(p.q.client_ip, "192.0.2.1");
	assert_string_equal(p.q.attachment, "f.pdf");
	assert_string_equal(p.cursor, "1~gw1~m");
	assert_int_equal(p.q.since, 1); /* the epoch is a bound, not "unbounded" */
	assert_int_equal(p.q.until, 0);
	assert_int_equal(api_tracking_parse(query_get, unconst("sender=%3C%3E"), &p, &err), 0);
	assert_string_equal(p.q.sender, "%3C%3E"); /* the getter does not unescape */
	assert_int_equal(api_tracking_parse(query_get, unconst("sender=<>"), &p, &err), 0);
	assert_string_equal(p.q.sender, "");
}

static void test_id_parse(void **state)
{
	(void)state;
	static const struct {
		const char *id;
		const char *gateway, *msg_id; /* NULL: refused */
	} ids[] = {
	    {"gw-a~019aed5c-7e5b-7c1f-8d2e-2b1f0c4a9e11", "gw-a",
	     "019aed5c-7e5b-7c1f-8d2e-2b1f0c4a9e11"},
	    {"gw~a~b", "gw", "a~b"},
	    {"gw~", NULL, NULL},
	    {"~m", NULL, NULL},
	    {"nosep", NULL, NULL},
	    {"bad!gw~m", NULL, NULL},
	    {"gw~a b", NULL, NULL},
	    {"", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		char *g = NULL, *m = NULL;
		int rc = api_tracking_id_parse(ids[i].id, &g, &m);
		if (ids[i].gateway == NULL) {
			assert_int_equal(rc, -EINVAL);
			assert_null(g);
			assert_null(m);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(g, ids[i].gateway);
		assert_string_equal(m, ids[i].msg_id);
		free(g);
		free(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_fields),
	    cmocka_unit_test(test_id_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
