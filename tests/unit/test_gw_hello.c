/*
 * test_gw_hello — the gateway's reading of the manager's answer to its hello
 * (gw_hello_parse_answer), one table row per answer: a registry entry is taken,
 * anything else is refused with the right error and the manager's message kept;
 * and the body the gateway sends (gw_hello_body). Also a managed gateway's
 * settings (gw_managed.c): the manager's answer read strictly, and what the
 * settings change in a configuration.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/gw_config.h"
#include "gateway/gw_hello.h"
#include "gateway/gw_managed.h"
#include "common/xalloc.h"

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
	char *b = gw_hello_body("gw1", "0.1.0", NULL, "east", -1, NULL);
	assert_string_equal(b, "{\"name\":\"gw1\",\"version\":\"0.1.0\",\"cluster\":\"east\"}");
	free(b);
	b = gw_hello_body("gw1", NULL, "tokyo", NULL, -1, NULL);
	assert_string_equal(b, "{\"name\":\"gw1\",\"group\":\"tokyo\"}");
	free(b);
	/* what it runs with: pvo and tracking, not reporting */
	b = gw_hello_body("gw1", NULL, NULL, NULL, 5, NULL);
	assert_string_equal(b, "{\"name\":\"gw1\",\"centralized\":"
			       "{\"pvo\":true,\"reporting\":false,\"tracking\":true}}");
	free(b);
	/* its outbreak rules' version line */
	b = gw_hello_body("gw1", NULL, NULL, NULL, -1, "2026120501");
	assert_string_equal(b, "{\"name\":\"gw1\",\"outbreak_rules_version\":\"2026120501\"}");
	free(b);
}

struct managed_case {
	const char *body;
	int rc;
	int pvo, reporting, tracking;
	const char *filters;
};

static const struct managed_case managed_cases[] = {
    {"{\"settings\":{\"pvo\":true,\"reporting\":false,\"tracking\":null,"
     "\"filters\":\"x\"},\"from\":{},\"gateway\":\"gw1\"}",
     0, 1, 0, -1, "x"},
    {"{\"settings\":{}}", 0, -1, -1, -1, NULL},
    {"{\"settings\":{\"filters\":\"\"}}", 0, -1, -1, -1, ""},
    {"{\"settings\":{\"pvo\":1}}", -EPROTO, -1, -1, -1, NULL},
    {"{\"settings\":{\"filters\":[\"x\"]}}", -EPROTO, -1, -1, -1, NULL},
    {"{\"settings\":{\"filters\":\"a\\u0000b\"}}", -EPROTO, -1, -1, -1, NULL},
    {"{\"settings\":true}", -EPROTO, -1, -1, -1, NULL},
    {"{\"pvo\":true}", -EPROTO, -1, -1, -1, NULL},
    {"[]", -EPROTO, -1, -1, -1, NULL},
    {"", -EPROTO, -1, -1, -1, NULL},
    {"{\"settings\":", -EPROTO, -1, -1, -1, NULL},
};

static void test_managed_parse(void **state)
{
	for (size_t i = 0; i < sizeof(managed_cases) / sizeof(managed_cases[0]); i++) {
		const struct managed_case *c = &managed_cases[i];
		struct gw_managed m;
		int rc = gw_managed_parse(c->body, strlen(c->body), &m);
		if (rc != c->rc)
			fail_msg("case %zu: %s: rc %d, want %d", i, c->body, rc, c->rc);
		assert_int_equal(m.pvo, c->pvo);
		assert_int_equal(m.reporting, c->reporting);
		assert_int_equal(m.tracking, c->tracking);
		if (c->filters == NULL)
			assert_null(m.filters);
		else
			assert_string_equal(m.filters, c->filters);
		/* what the cache keeps reads back the same */
		char *text = gw_managed_text(&m);
		struct gw_managed again;
		assert_int_equal(gw_managed_parse(text, strlen(text), &again), 0);
		assert_true(gw_managed_equal(&m, &again));
		free(text);
		gw_managed_clear(&again);
		gw_managed_clear(&m);
	}
}

static void test_managed_apply(void **state)
{
	struct gw_config cfg = {.data_dir = "/var/lib/lazaret-gw",
				.tracking_mode = xstrdup("central"),
				.filters_file = xstrdup("/etc/lazaret/local.rules"),
				.managed_reporting = -1};
	/* nothing set: the file's values stay */
	struct gw_managed none = {.pvo = -1, .reporting = -1, .tracking = -1};
	gw_managed_apply(&cfg, &none);
	assert_false(cfg.central_pvo_enabled);
	assert_string_equal(cfg.tracking_mode, "central");
	assert_string_equal(cfg.filters_file, "/etc/lazaret/local.rules");
	assert_int_equal(cfg.managed_reporting, -1);

	struct gw_managed m = {.pvo = 1, .reporting = 0, .tracking = 0, .filters = "x"};
	gw_managed_apply(&cfg, &m);
	assert_true(cfg.central_pvo_enabled);
	assert_string_equal(cfg.tracking_mode, "local");
	assert_string_equal(cfg.filters_file, "/var/lib/lazaret-gw/managed-filters.rules");
	assert_int_equal(cfg.managed_reporting, 0);

	/* tracking off leaves off alone; "" filters is no filters */
	free(cfg.tracking_mode);
	cfg.tracking_mode = xstrdup("off");
	struct gw_managed m2 = {.pvo = 0, .reporting = 1, .tracking = 0, .filters = ""};
	gw_managed_apply(&cfg, &m2);
	assert_false(cfg.central_pvo_enabled);
	assert_string_equal(cfg.tracking_mode, "off");
	assert_null(cfg.filters_file);
	struct gw_managed m3 = {.pvo = -1, .reporting = -1, .tracking = 1};
	gw_managed_apply(&cfg, &m3);
	assert_string_equal(cfg.tracking_mode, "central");
	/* reporting as tracking: 1 makes it central, 0 makes central local */
	assert_string_equal(cfg.reporting_mode, "central");
	assert_true(gw_config_reporting_central(&cfg));
	free(cfg.tracking_mode);
	cfg.tracking_mode = xstrdup("local");
	struct gw_managed m4 = {.pvo = -1, .reporting = 0, .tracking = -1};
	gw_managed_apply(&cfg, &m4);
	assert_string_equal(cfg.reporting_mode, "local");
	assert_false(gw_config_reporting_central(&cfg));
	assert_int_equal(cfg.managed_reporting, 0);
	free(cfg.reporting_mode);
	free(cfg.tracking_mode);
	free(cfg.filters_file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_answer),
	    cmocka_unit_test(test_managed_parse),
	    cmocka_unit_test(test_managed_apply),
	    cmocka_unit_test(test_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
