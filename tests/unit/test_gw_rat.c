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

/* Routing operators, quoted local parts, IP literals, bad domains: refused even with "*". */
static void test_routing_refused(void **state)
{
	(void)state;
	static const struct {
		const char *rcpt;
		enum rat_verdict want;
	} cases[] = {
	    {"x%evil@example.com", RAT_ROUTING},
	    {"x%evil.test@example.com", RAT_ROUTING},
	    {"evil!x@example.com", RAT_ROUTING},
	    {"evil.test!x@example.com", RAT_ROUTING},
	    {"x@evil@example.com", RAT_ROUTING},
	    {"x@evil.test@example.com", RAT_ROUTING},
	    {"\"x@evil\"@example.com", RAT_ROUTING},
	    {"\"x%evil\"@example.com", RAT_ROUTING},
	    {"\"evil!x\"@example.com", RAT_ROUTING},
	    {"\"x\\@evil\"@example.com", RAT_ROUTING}, /* an escaped '@' is still one */
	    {"\"x\"@evil@example.com", RAT_ROUTING},
	    {"\"x\"y@example.com", RAT_ROUTING},   /* text after the quoted string */
	    {"\"x@example.com", RAT_ROUTING},	   /* an unclosed quote */
	    {"x\"y\"@example.com", RAT_ROUTING},   /* a quote inside a dot-string */
	    {"x\\@evil@example.com", RAT_ROUTING}, /* a backslash outside quotes */
	    {"user@[192.0.2.1]", RAT_ROUTING},
	    {"user@[IPv6:2001:db8::1]", RAT_ROUTING},
	    {"user@[127.0.0.1]", RAT_ROUTING},
	    {"user@a..example.org", RAT_ROUTING},
	    {"user@.example.com", RAT_ROUTING},
	    {"user@example.com..", RAT_ROUTING},
	    {"user@exa$mple.com", RAT_ROUTING},
	    {"user@example.com:25", RAT_ROUTING},
	    /* Plain addresses are the table's to judge. */
	    {"user@example.com", RAT_ACCEPT},
	    {"user@example.com.", RAT_ACCEPT},
	    {"first.last+tag@example.com", RAT_ACCEPT},
	    {"\"first.last\"@example.com", RAT_ACCEPT},
	    {"\"a\\\"b\"@example.com", RAT_ACCEPT}, /* an escaped quote, no operator */
	    {"user@a.example.org", RAT_ACCEPT},
	    {"user@sub-1.a_b.example.org", RAT_ACCEPT},
	    {"ユーザー@example.com", RAT_ACCEPT},
	    {"user@evil.test", RAT_NOT_LISTED},
	    {"user@example.com.evil.test", RAT_NOT_LISTED},
	    {"postmaster", RAT_NOT_LISTED},
	    {"user@", RAT_NOT_LISTED},
	    {"@example.com", RAT_NOT_LISTED},
	    {"", RAT_NOT_LISTED},
	};
	struct rat *r = NULL, *star = NULL;
	char *err = NULL;
	assert_int_equal(rat_parse("example.com, .example.org", &r, &err), 0);
	assert_int_equal(rat_parse("*", &star, &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum rat_verdict got = rat_check(r, cases[i].rcpt);
		if (got != cases[i].want)
			fail_msg("%s: %d, want %d", cases[i].rcpt, (int)got, (int)cases[i].want);
		got = rat_check(star, cases[i].rcpt);
		enum rat_verdict want_star = cases[i].want == RAT_NOT_LISTED &&
						     strchr(cases[i].rcpt, '@') != NULL &&
						     cases[i].rcpt[0] != '@' &&
						     cases[i].rcpt[strlen(cases[i].rcpt) - 1] != '@'
						 ? RAT_ACCEPT
						 : cases[i].want;
		if (got != want_star)
			fail_msg("with *: %s: %d, want %d", cases[i].rcpt, (int)got,
				 (int)want_star);
	}

	/* The replies, exactly. */
	char reply[128];
	assert_false(rat_check_reply(r, "x%evil@example.com", reply, sizeof(reply)));
	assert_string_equal(reply, "554 5.7.1 <x%evil@example.com>: Relay access denied");
	assert_false(rat_check_reply(r, "user@evil.test", reply, sizeof(reply)));
	assert_string_equal(reply, "550 5.7.1 Recipient address rejected: relay not permitted");
	strcpy(reply, "untouched");
	assert_true(rat_check_reply(r, "user@example.com", reply, sizeof(reply)));
	assert_string_equal(reply, "untouched");
	/* A long address is cut, the reply stays one terminated line. */
	char lng[300];
	memset(lng, 'a', sizeof(lng));
	memcpy(lng, "x%", 2);
	strcpy(lng + sizeof(lng) - 13, "@example.com");
	char small[64];
	assert_false(rat_check_reply(r, lng, small, sizeof(small)));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, "554 5.7.1 <x%aaa", 16);
	rat_free(r);
	rat_free(star);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matching),
	    cmocka_unit_test(test_star_accepts_everything),
	    cmocka_unit_test(test_empty_accepts_nothing),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_routing_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
