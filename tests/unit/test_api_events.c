/*
 * Tests for api_events_parse: the batch body a gateway pushes, read strictly.
 * A table of bodies, each with the exact error (or none) and what a good one
 * yields: seqs, the "received" fields, the state and flags of each event.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_events.h"

static const struct {
	const char *body;
	int rc;
	const char *err;
} cases[] = {
    {"{\"events\":[]}", 0, NULL},
    {"{}", -EINVAL, "\"events\" is required (an array)"},
    {"{\"events\":{}}", -EINVAL, "\"events\" is required (an array)"},
    {"{\"events\":[],\"extra\":1}", -EINVAL, NULL},
    {"{\"events\":[],\"backlog\":-1}", -EINVAL,
     "\"backlog\" must be a count of events (0 or more)"},
    {"{\"events\":[],\"gateway\":5}", -EINVAL, "\"gateway\" must be a string"},
    {"{\"events\":[1]}", -EINVAL, "events[0]: must be an object"},
    {"{\"events\":[{\"at\":1,\"type\":\"connection\"}]}", -EINVAL,
     "events[0]: \"seq\" must be an integer of at least 1"},
    {"{\"events\":[{\"seq\":0,\"at\":1,\"type\":\"connection\"}]}", -EINVAL,
     "events[0]: \"seq\" must be an integer of at least 1"},
    {"{\"events\":[{\"seq\":\"1\",\"at\":1,\"type\":\"connection\"}]}", -EINVAL,
     "events[0]: \"seq\" must be an integer of at least 1"},
    {"{\"events\":[{\"seq\":2,\"at\":1,\"type\":\"connection\"},"
     "{\"seq\":2,\"at\":1,\"type\":\"connection\"}]}",
     -EINVAL, "events[1]: \"seq\" 2 is not above the one before it"},
    {"{\"events\":[{\"seq\":1,\"type\":\"connection\"}]}", -EINVAL,
     "events[0]: \"at\" must be a time in Unix milliseconds"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"exploded\"}]}", -EINVAL,
     "events[0]: \"type\" \"exploded\" is not an event type"},
    {"{\"events\":[{\"seq\":1,\"at\":1}]}", -EINVAL, "events[0]: \"type\" is required (a string)"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"connection\",\"msg_id\":\"a b\"}]}", -EINVAL,
     "events[0]: \"msg_id\" must be 1 to 64 printable characters without blanks"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"connection\",\"detail\":[]}]}", -EINVAL,
     "events[0]: \"detail\" must be an object"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"received\",\"detail\":{\"sender\":\"\"}}]}",
     -EINVAL, "events[0]: a \"received\" event needs \"msg_id\""},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"received\",\"msg_id\":\"m1\"}]}", -EINVAL,
     "events[0]: \"detail\".\"sender\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"received\",\"msg_id\":\"m1\","
     "\"detail\":{\"sender\":\"a@b\",\"recipients\":[1]}}]}",
     -EINVAL, "events[0]: \"detail\".\"recipients\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"received\",\"msg_id\":\"m1\","
     "\"detail\":{\"sender\":\"a@b\",\"size\":-4}}]}",
     -EINVAL, "events[0]: \"detail\".\"size\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"connection\",\"bogus\":1}]}", -EINVAL, NULL},
    /* "recipients": the names a cut "received" list left out */
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\","
     "\"detail\":{\"first\":3,\"recipients\":[\"a@b\"]}}]}",
     -EINVAL, "events[0]: a \"recipients\" event needs \"msg_id\""},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\"}]}", -EINVAL,
     "events[0]: \"detail\".\"first\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":-1,\"recipients\":[\"a@b\"]}}]}",
     -EINVAL, "events[0]: \"detail\".\"first\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":\"3\",\"recipients\":[\"a@b\"]}}]}",
     -EINVAL, "events[0]: \"detail\".\"first\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":3}}]}",
     -EINVAL, "events[0]: \"detail\".\"recipients\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":3,\"recipients\":[]}}]}",
     -EINVAL, "events[0]: \"detail\".\"recipients\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":3,\"recipients\":[\"a@b\",null]}}]}",
     -EINVAL, "events[0]: \"detail\".\"recipients\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":999999,\"recipients\":[\"a@b\",\"c@d\"]}}]}",
     -EINVAL, "events[0]: \"detail\".\"recipients\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":1000000,\"recipients\":[\"a@b\"]}}]}",
     -EINVAL, "events[0]: \"detail\".\"first\" is missing or malformed"},
    {"{\"events\":[{\"seq\":1,\"at\":1,\"type\":\"recipients\",\"msg_id\":\"m1\","
     "\"detail\":{\"first\":999999,\"recipients\":[\"a@b\"]}}]}",
     0, NULL},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_error_t je;
		json_t *body = json_loads(cases[i].body, 0, &je);
		assert_non_null(body);
		struct api_events_batch b;
		char *err = NULL;
		int rc = api_events_parse(body, &b, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc,
				 err != NULL ? err : "-");
		if (cases[i].err != NULL) {
			assert_non_null(err);
			if (strcmp(err, cases[i].err) != 0)
				fail_msg("case %zu: \"%s\", want \"%s\"", i, err, cases[i].err);
		}
		if (rc == 0)
			api_events_batch_clear(&b);
		else
			assert_non_null(err);
		free(err);
		json_decref(body);
	}
}

static void test_batch_limit(void **state)
{
	json_t *ev = json_array();
	for (int i = 0; i <= API_EVENTS_MAX_BATCH; i++)
		json_array_append_new(
		    ev, json_pack("{s:i,s:i,s:s}", "seq", i + 1, "at", 1, "type", "connection"));
	json_t *body = json_pack("{s:o}", "events", ev);
	struct api_events_batch b;
	char *err = NULL;
	assert_int_equal(api_events_parse(body, &b, &err), -E2BIG);
	assert_string_equal(err, "a batch holds at most 1000 events, not 1001");
	free(err);
	json_decref(body);
}

static void test_good_batch(void **state)
{
	const char *text =
	    "{\"gateway\":\"gw1\",\"backlog\":3,\"events\":["
	    "{\"seq\":5,\"at\":100,\"type\":\"received\",\"msg_id\":\"m1\",\"detail\":"
	    "{\"sender\":\"a@x\",\"recipients\":[\"b@y\",\"c@y\"],\"subject\":\"Hi\","
	    "\"message_id\":\"<1@x>\",\"client_ip\":\"192.0.2.1\",\"attachments\":[\"f.pdf\"],"
	    "\"size\":10}},"
	    "{\"seq\":6,\"at\":101,\"type\":\"verdict\",\"msg_id\":\"m1\",\"detail\":{\"level\":"
	    "\"spam\",\"score\":9.5}},"
	    "{\"seq\":7,\"at\":102,\"type\":\"quarantine\",\"msg_id\":\"m1\",\"detail\":"
	    "{\"quarantine\":\"outbreak\"}},"
	    "{\"seq\":8,\"at\":103,\"type\":\"delivery\",\"msg_id\":\"m1\",\"detail\":{\"status\":"
	    "\"deferred\"}},"
	    "{\"seq\":9,\"at\":104,\"type\":\"rcpt_refused\"},"
	    "{\"seq\":10,\"at\":104,\"type\":\"recipients\",\"msg_id\":\"m1\",\"detail\":"
	    "{\"first\":2,\"recipients\":[\"d@y\",\"e@y\"]}}]}";
	json_error_t je;
	json_t *body = json_loads(text, 0, &je);
	struct api_events_batch b;
	char *err = NULL;
	assert_int_equal(api_events_parse(body, &b, &err), 0);
	assert_string_equal(b.gateway, "gw1");
	assert_int_equal(b.backlog, 3);
	assert_int_equal(b.nevents, 6);
	const struct store_event *e = b.events;
	assert_string_equal(e[0].state, "received");
	assert_non_null(e[0].message);
	assert_string_equal(e[0].message->sender, "a@x");
	assert_int_equal(e[0].message->nrecipients, 2);
	assert_string_equal(e[0].message->recipients[1], "c@y");
	assert_string_equal(e[0].message->attachments[0], "f.pdf");
	assert_int_equal(e[0].message->size, 10);
	assert_int_equal(e[1].flags, STORE_TRACK_SPAM);
	assert_null(e[1].state);
	assert_string_equal(e[1].detail, "{\"level\":\"spam\",\"score\":9.5}");
	assert_int_equal(e[2].flags, STORE_TRACK_QUARANTINED | STORE_TRACK_OUTBREAK);
	assert_string_equal(e[3].state, "soft_bounce");
	assert_string_equal(e[4].detail, "{}");
	assert_null(e[4].msg_id);
	assert_null(e[4].recipients);
	/* the names a cut list left out, at their indexes; no state, no flags */
	assert_non_null(e[5].recipients);
	assert_null(e[0].recipients);
	assert_int_equal(e[5].recipients->first, 2);
	assert_int_equal(e[5].recipients->n, 2);
	assert_string_equal(e[5].recipients->names[1], "e@y");
	assert_null(e[5].state);
	assert_int_equal(e[5].flags, 0);
	assert_null(e[5].message);
	api_events_batch_clear(&b);
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_batch_limit),
	    cmocka_unit_test(test_good_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
