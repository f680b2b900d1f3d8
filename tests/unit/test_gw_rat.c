/*
 * Tests for gateway/rat: which recipients the gateway relays for (exact domains,
 * subdomain patterns, addresses, "*"), case-insensitively, and the parse errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/rat.h"

static void test_matching(void **state)
{
	(void)state;
	struct rat *r = NULL;
	char *err = NULL;
	assert_int_equal(rat_parse("example.com, .example.org postmaster@Example.NET", &r, &err),
			 0);
	assert_int_equal(rat_count(r), 3);
	static const struct {
		const char *rcpt;
		bool ok;
	} cases[] = {
	    {"bob@example.com", true},
	    {"Bob@EXAMPLE.COM", true},
	    {"bob@example.com.", true},
	    {"bob@sub.example.com", false},
	    {"bob@notexample.com", false},
	    {"bob@example.org", false},
	    {"bob@a.example.org", true},
	    {"bob@a.b.example.org", true},
	    {"bob@xexample.org", false},
	    {"postmaster@example.net", true},
	    {"POSTMASTER@example.net", true},
	    {"abuse@example.net", false},
	    {"example.com", false},
	    {"bob@", false},
	    {"", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (rat_accepts(r, cases[i].rcpt) != cases[i].ok)
			fail_msg("%s: want %s", cases[i].rcpt,
				 cases[i].ok ? "accepted" : "refused");
	}
	rat_free(r);
}

static void test_star_accepts_everything(void **state)
{
	(void)state;
	struct rat *r = NULL;
	char *err = NULL;
	assert_int_equal(rat_parse("*", &r, &err), 0);
	assert_true(rat_accepts(r, "anyone@anywhere.test"));
	assert_false(rat_accepts(r, "no-domain"));
	rat_free(r);
}

static void test_empty_accepts_nothing(void **state)
{
	(void)state;
	struct rat *r = NULL;
	char *err = NULL;
	assert_int_equal(rat_parse("", &r, &err), 0);
	assert_int_equal(rat_count(r), 0);
	assert_false(rat_accepts(r, "bob@example.com"));
	rat_free(r);
}

static void test_errors(void **state)
{
	(void)state;
	const char *bad[] = {"exa mple@@x", "@example.com", "..example.org",
			     "bob@",	    "exa$mple.com", "a@b@c.com"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rat *r = NULL;
		char *err = NULL;
		if (rat_parse(bad[i], &r, &err) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_null(r);
		assert_non_null(err);
		free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matching),
	    cmocka_unit_test(test_star_accepts_everything),
	    cmocka_unit_test(test_empty_accepts_nothing),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
