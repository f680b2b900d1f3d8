/*
 * Tests for quarantine/auth: argon2id hashes verify only the right password, an
 * unknown user is refused, tokens are fresh and hashed the same way every time,
 * the constant-time comparison, the session cookie in and out, and the login
 * failure limiter over time. Also the directory helpers of manager/auth_ldap and
 * manager/auth_imap that make user input safe to send.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "manager/auth_imap.h"
#include "manager/auth_ldap.h"
#include "quarantine/auth.h"

static void test_password_hash_and_verify(void **state)
{
	char *hash = NULL;
	assert_int_equal(auth_password_hash("correct horse", &hash), 0);
	assert_non_null(hash);
	assert_true(strncmp(hash, "$argon2id$", 10) == 0);
	static const struct {
		const char *password;
		bool ok;
	} cases[] = {
	    {"correct horse", true},  {"correct horse ", false},
	    {"Correct horse", false}, {"", false},
	    {"correct", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(auth_password_verify(hash, cases[i].password), cases[i].ok);
	/* The same password hashes differently each time (random salt). */
	char *again = NULL;
	assert_int_equal(auth_password_hash("correct horse", &again), 0);
	assert_string_not_equal(hash, again);
	assert_true(auth_password_verify(again, "correct horse"));
	free(again);
	free(hash);
}

static void test_password_unknown_user_and_limits(void **state)
{
	/* No hash (unknown user): always refused, whatever is typed. */
	assert_false(auth_password_verify(NULL, "anything"));
	assert_false(auth_password_verify("", ""));
	assert_false(auth_password_verify("not-a-hash", "anything"));
	char *long_pw = malloc(AUTH_PASSWORD_MAX_LEN + 2);
	memset(long_pw, 'x', AUTH_PASSWORD_MAX_LEN + 1);
	long_pw[AUTH_PASSWORD_MAX_LEN + 1] = '\0';
	char *hash = (char *)1;
	assert_int_equal(auth_password_hash(long_pw, &hash), -EINVAL);
	assert_null(hash);
	free(long_pw);
}

static bool all_hex(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	}
	return true;
}

static void test_tokens(void **state)
{
	char a[AUTH_TOKEN_TEXT_LEN + 1], b[AUTH_TOKEN_TEXT_LEN + 1];
	auth_token_new(a);
	auth_token_new(b);
	assert_int_equal(strlen(a), AUTH_TOKEN_TEXT_LEN);
	assert_true(all_hex(a));
	assert_string_not_equal(a, b);

	/* BLAKE2b-256 test vector: "abc". */
	char h[AUTH_HASH_TEXT_LEN + 1];
	auth_token_hash("abc", h);
	assert_string_equal(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
	char h2[AUTH_HASH_TEXT_LEN + 1];
	auth_token_hash(a, h);
	auth_token_hash(a, h2);
	assert_string_equal(h, h2);
	assert_string_not_equal(h, a);
}

static void test_token_equal(void **state)
{
	static const struct {
		const char *a, *b;
		bool equal;
	} cases[] = {
	    {"abc", "abc", true},   {"abc", "abd", false}, {"abc", "ab", false},
	    {"abc", "abcd", false}, {"", "", true},	   {"abc", NULL, false},
	    {NULL, "abc", false},   {NULL, NULL, false},   {"ABC", "abc", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(auth_token_equal(cases[i].a, cases[i].b), cases[i].equal);
}

static void test_cookie_get(void **state)
{
	static const struct {
		const char *header;
		const char *want;
	} cases[] = {
	    {"lazaret_session=abc", "abc"},
	    {"a=1; lazaret_session=abc; b=2", "abc"},
	    {"a=1;lazaret_session=abc", "abc"},
	    {"x_lazaret_session=abc", NULL},
	    {"lazaret_session_x=abc", NULL},
	    {"lazaret_session=\"abc\"", "abc"},
	    {"lazaret_session=", ""},
	    {"", NULL},
	    {NULL, NULL},
	    {"a=1; lazaret_session=first; lazaret_session=second", "first"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = auth_cookie_get(cases[i].header, AUTH_COOKIE_NAME);
		if (cases[i].want == NULL)
			assert_null(got);
		else
			assert_string_equal(got, cases[i].want);
		free(got);
	}
}

static void test_cookie_set(void **state)
{
	char *c = auth_cookie_set("tok", 3600, false);
	assert_string_equal(c,
			    "lazaret_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict");
	free(c);
	c = auth_cookie_set("tok", 60, true);
	assert_string_equal(
	    c, "lazaret_session=tok; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
	free(c);
	c = auth_cookie_set(NULL, 60, false);
	assert_string_equal(c, "lazaret_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
	free(c);
}

/* One step of a limiter scenario: at time t, fail (or reset) key, then check key. */
struct limiter_step {
	int64_t t;
	const char *key;
	enum { STEP_CHECK, STEP_FAIL, STEP_RESET } op;
	int64_t wait; /* what auth_ratelimit_check answers after the step */
};

static void test_ratelimit(void **state)
{
	/* 3 failures in 1000 ms block until the window that began with the first ends. */
	static const struct limiter_step steps[] = {
	    {0, "user:a", STEP_CHECK, 0},
	    {0, "user:a", STEP_FAIL, 0},
	    {100, "user:a", STEP_FAIL, 0},
	    {200, "user:a", STEP_FAIL, 800},
	    {500, "user:a", STEP_CHECK, 500},
	    {500, "user:b", STEP_CHECK, 0},
	    {999, "user:a", STEP_CHECK, 1},
	    {1000, "user:a", STEP_CHECK, 0},
	    /* A new window starts with the next failure. */
	    {1100, "user:a", STEP_FAIL, 0},
	    {1200, "user:a", STEP_FAIL, 0},
	    {1300, "user:a", STEP_RESET, 0},
	    {1300, "user:a", STEP_FAIL, 0},
	    {1400, "user:a", STEP_FAIL, 0},
	    {1500, "user:a", STEP_FAIL, 800},
	};
	struct auth_ratelimit *rl = auth_ratelimit_new(3, 1000, 100);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const struct limiter_step *s = &steps[i];
		if (s->op == STEP_FAIL)
			auth_ratelimit_fail(rl, s->key, s->t);
		else if (s->op == STEP_RESET)
			auth_ratelimit_reset(rl, s->key);
		int64_t got = auth_ratelimit_check(rl, s->key, s->t);
		if (got != s->wait)
			fail_msg("step %zu: wait %lld, want %lld", i, (long long)got,
				 (long long)s->wait);
	}
	auth_ratelimit_free(rl);
}

static void test_ratelimit_forgets_the_stalest_key_when_full(void **state)
{
	struct auth_ratelimit *rl = auth_ratelimit_new(1, 10000, 2);
	auth_ratelimit_fail(rl, "k1", 0);
	auth_ratelimit_fail(rl, "k2", 10);
	assert_true(auth_ratelimit_check(rl, "k1", 20) > 0);
	auth_ratelimit_fail(rl, "k3", 30); /* table full: k1 (oldest window) goes */
	assert_int_equal(auth_ratelimit_check(rl, "k1", 40), 0);
	assert_true(auth_ratelimit_check(rl, "k2", 40) > 0);
	assert_true(auth_ratelimit_check(rl, "k3", 40) > 0);
	auth_ratelimit_free(rl);
}

static void test_imap_address(void **state)
{
	static const struct {
		const char *domain, *username, *want; /* want NULL: -EACCES */
	} cases[] = {
	    {"corp.test", "hanako", "hanako@corp.test"},
	    {"corp.test", "Hanako", "hanako@corp.test"},
	    {"corp.test", "jiro@corp.test", "jiro@corp.test"},
	    {"corp.test", "Jiro@CORP.Test", "jiro@corp.test"},
	    /* Another domain is refused, however the server would read it. */
	    {"corp.test", "alice@other.test", NULL},
	    {"corp.test", "alice@corp.test.evil", NULL},
	    {"corp.test", "alice@sub.corp.test", NULL},
	    {"corp.test", "alice@", NULL},
	    {"corp.test", "@corp.test", NULL},
	    {"corp.test", "a@b@corp.test", NULL},
	    {"corp.test", "", NULL},
	    {NULL, "hanako", NULL},
	    {"", "hanako", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = NULL;
		int rc = auth_imap_address(cases[i].domain, cases[i].username, &got);
		if (cases[i].want == NULL) {
			if (rc != -EACCES || got != NULL)
				fail_msg("case %zu: %d %s, want refusal", i, rc, got);
			continue;
		}
		if (rc != 0 || strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: %d %s, want %s", i, rc, got != NULL ? got : "-",
				 cases[i].want);
		free(got);
	}
}

static void test_ldap_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"taro", "taro"},
	    {"*", "\\2a"},
	    {"a*)(uid=*", "a\\2a\\29\\28uid=\\2a"},
	    {"back\\slash", "back\\5cslash"},
	    {"山田", "山田"},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = auth_ldap_escape(cases[i].in);
		assert_string_equal(got, cases[i].out);
		free(got);
	}
}

static void test_imap_quote(void **state)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
	} cases[] = {
	    {"hanako", "\"hanako\""},
	    {"pa ss", "\"pa ss\""},
	    {"q\"uote", "\"q\\\"uote\""},
	    {"back\\slash", "\"back\\\\slash\""},
	    {"", "\"\""},
	    {"a\r\nb2 LOGOUT", NULL},
	    {"line\n", NULL},
	    {"山田", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = NULL;
		int rc = auth_imap_quote(cases[i].in, &got);
		if (cases[i].out == NULL) {
			assert_int_equal(rc, -EINVAL);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(got, cases[i].out);
		}
		free(got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_password_hash_and_verify),
	    cmocka_unit_test(test_password_unknown_user_and_limits),
	    cmocka_unit_test(test_tokens),
	    cmocka_unit_test(test_token_equal),
	    cmocka_unit_test(test_cookie_get),
	    cmocka_unit_test(test_cookie_set),
	    cmocka_unit_test(test_ratelimit),
	    cmocka_unit_test(test_ratelimit_forgets_the_stalest_key_when_full),
	    cmocka_unit_test(test_imap_address),
	    cmocka_unit_test(test_ldap_escape),
	    cmocka_unit_test(test_imap_quote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
