/*
 * test_gw_hello — the gateway's reading of the manager's answer to its hello
 * (gw_hello_parse_answer), one table row per answer: a registry entry is taken,
 * anything else is refused with the right error and the manager's message kept;
 * and the body the gateway sends (gw_hello_body).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/gw_hello.h"

struct answer_case {
	long status;
	const char *body;
	int rc;
	const char *state, *group, *cluster, *message;
};

static const struct answer_case cases[] = {
    {200,
     "{\"gateway\":{\"name\":\"gw1\",\"state\":\"registered\",\"group\":\"tokyo\","
     "\"cluster\":null}}",
     0, "registered", "tokyo", NULL, NULL},
    {200, "{\"gateway\":{\"name\":\"gw1\",\"state\":\"registered\"}}", 0, "registered", NULL, NULL,
     NULL},
    {200, "{\"gateway\":{\"name\":\"gw1\"}}", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "{\"gateway\":{\"name\":\"gw1\",\"state\":1}}", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "{\"gateway\":{\"name\":\"gw1\",\"state\":\"registered\",\"group\":[]}}", -EPROTO, NULL,
     NULL, NULL, NULL},
    {200, "{\"gateway\":{\"state\":\"registered\"}}", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "{\"gateway\":[]}", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "[]", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "not json", -EPROTO, NULL, NULL, NULL, NULL},
    {200, "", -EPROTO, NULL, NULL, NULL, NULL},
    {401,
     "{\"error\":{\"code\":\"unauthorized\",\"message\":\"a valid gateway token is "
     "required\"}}",
     -EACCES, NULL, NULL, NULL, "a valid gateway token is required"},
    {403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}}", -EACCES, NULL, NULL, NULL,
     "no"},
    {401, "<html>", -EACCES, NULL, NULL, NULL, NULL},
    {404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}", -EPROTO, NULL, NULL,
     NULL, "no such route"},
    {500, "", -EPROTO, NULL, NULL, NULL, NULL},
    {302, "{\"gateway\":{\"name\":\"gw1\",\"state\":\"registered\"}}", -EPROTO, NULL, NULL, NULL,
     NULL},
};

static void assert_str_or_null(const char *got, const char *want)
{
	if (want == NULL)
		assert_null(got);
	else
		assert_string_equal(got, want);
}

static void test_parse_answer(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct answer_case *c = &cases[i];
		struct gw_hello_answer a;
		int rc = gw_hello_parse_answer(c->status, c->body, strlen(c->body), &a);
		if (rc != c->rc)
			fail_msg("case %zu: %ld %s: rc %d, want %d", i, c->status, c->body, rc,
				 c->rc);
		assert_int_equal(a.status, c->status);
		assert_str_or_null(a.state, c->state);
		assert_str_or_null(a.group, c->group);
		assert_str_or_null(a.cluster, c->cluster);
		assert_str_or_null(a.message, c->message);
		gw_hello_answer_clear(&a);
	}
}

static void test_body(void **state)
{
	char *b = gw_hello_body("gw1", "0.1.0", NULL, "east", -1);
	assert_string_equal(b, "{\"name\":\"gw1\",\"version\":\"0.1.0\",\"cluster\":\"east\"}");
	free(b);
	b = gw_hello_body("gw1", NULL, "tokyo", NULL, -1);
	assert_string_equal(b, "{\"name\":\"gw1\",\"group\":\"tokyo\"}");
	free(b);
	/* what it runs with: pvo and tracking, not reporting */
	b = gw_hello_body("gw1", NULL, NULL, NULL, 5);
	assert_string_equal(b, "{\"name\":\"gw1\",\"centralized\":"
			       "{\"pvo\":true,\"reporting\":false,\"tracking\":true}}");
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_answer),
	    cmocka_unit_test(test_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
