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
#include "common/acl.h"
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

/*
 * One step of a limiter scenario: at time t, act on key (from address), then
 * check key from address.
 */
struct limiter_step {
	int64_t t;
	const char *key;
	const char *address;
	enum { STEP_CHECK, STEP_BEGIN, STEP_FAIL, STEP_OK, STEP_ERROR } op;
	int64_t wait; /* what auth_ratelimit_check answers after the step; -1: not checked */
};

static void limiter_run(struct auth_ratelimit *rl, const struct limiter_step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct limiter_step *s = &steps[i];
		if (s->op == STEP_BEGIN)
			auth_ratelimit_begin(rl, s->key, s->t);
		else if (s->op != STEP_CHECK)
			auth_ratelimit_done(rl, s->key,
					    s->op == STEP_FAIL ? AUTH_ATTEMPT_FAILED
					    : s->op == STEP_OK ? AUTH_ATTEMPT_OK
							       : AUTH_ATTEMPT_ERROR,
					    s->address, s->t);
		int64_t got = auth_ratelimit_check(rl, s->key, s->address, s->t);
		if (s->wait >= 0 && got != s->wait)
			fail_msg("step %zu: wait %lld, want %lld", i, (long long)got,
				 (long long)s->wait);
	}
}

/* begin + done(FAILED) at t: one whole failed attempt. */
#define FAILED_AT(t, key, wait)                                                                    \
	{t, key, NULL, STEP_BEGIN, -1},                                                            \
	{                                                                                          \
		t, key, NULL, STEP_FAIL, wait                                                      \
	}

static void test_ratelimit_plain(void **state)
{
	/* 3 failures in 1000 ms block until the window that began with the first ends. */
	static const struct limiter_step steps[] = {
	    {0, "peer:a", NULL, STEP_CHECK, 0},
	    {0, "peer:a", NULL, STEP_BEGIN, 0},
	    {0, "peer:a", NULL, STEP_FAIL, 0},
	    {100, "peer:a", NULL, STEP_BEGIN, 0},
	    {100, "peer:a", NULL, STEP_FAIL, 0},
	    {200, "peer:a", NULL, STEP_BEGIN, AUTH_RATELIMIT_BUSY_WAIT_MS},
	    {200, "peer:a", NULL, STEP_FAIL, 800},
	    {500, "peer:a", NULL, STEP_CHECK, 500},
	    {500, "peer:b", NULL, STEP_CHECK, 0},
	    {999, "peer:a", NULL, STEP_CHECK, 1},
	    {1000, "peer:a", NULL, STEP_CHECK, 0},
	    /* A success does not clear an address: one good account cannot launder guesses. */
	    {1100, "peer:a", NULL, STEP_BEGIN, 0},
	    {1100, "peer:a", NULL, STEP_FAIL, 0},
	    {1200, "peer:a", NULL, STEP_BEGIN, 0},
	    {1200, "peer:a", NULL, STEP_OK, 0},
	    {1300, "peer:a", NULL, STEP_BEGIN, 0},
	    {1300, "peer:a", NULL, STEP_FAIL, 0},
	    /* An error (directory down) is not a failure. */
	    {1400, "peer:a", NULL, STEP_BEGIN, AUTH_RATELIMIT_BUSY_WAIT_MS},
	    {1400, "peer:a", NULL, STEP_ERROR, 0},
	    {1500, "peer:a", NULL, STEP_BEGIN, AUTH_RATELIMIT_BUSY_WAIT_MS},
	    {1500, "peer:a", NULL, STEP_FAIL, 600},
	    /* The window ended: failures start again from nothing. */
	    {2100, "peer:a", NULL, STEP_CHECK, 0},
	    {2100, "peer:a", NULL, STEP_BEGIN, 0},
	    {2100, "peer:a", NULL, STEP_FAIL, 0},
	};
	struct auth_ratelimit *rl = auth_ratelimit_new(3, 1000, 100);
	limiter_run(rl, steps, sizeof(steps) / sizeof(steps[0]));
	auth_ratelimit_free(rl);
}

static void test_ratelimit_counts_attempts_in_flight(void **state)
{
	/* A parallel burst: the third attempt is refused before any check has ended. */
	static const struct limiter_step steps[] = {
	    {0, "user:v", NULL, STEP_BEGIN, 0},
	    {0, "user:v", NULL, STEP_BEGIN, AUTH_RATELIMIT_BUSY_WAIT_MS},
	    {0, "user:w", NULL, STEP_CHECK, 0},
	    {50, "user:v", NULL, STEP_FAIL, AUTH_RATELIMIT_BUSY_WAIT_MS},
	    {60, "user:v", NULL, STEP_FAIL, 990}, /* the window began at the first failure */
	};
	struct auth_ratelimit *rl = auth_ratelimit_new(2, 1000, 100);
	limiter_run(rl, steps, sizeof(steps) / sizeof(steps[0]));
	auth_ratelimit_free(rl);
}

static void test_ratelimit_backoff(void **state)
{
	/* 2 failures block for 1 s, then 2 s, then 4 s, capped at 3 s; success clears. */
	static const struct limiter_step steps[] = {
	    FAILED_AT(0, "user:v", 0),
	    FAILED_AT(0, "user:v", 1000),
	    {999, "user:v", NULL, STEP_CHECK, 1},
	    FAILED_AT(1000, "user:v", 0),
	    FAILED_AT(1000, "user:v", 2000),
	    FAILED_AT(3000, "user:v", 0),
	    FAILED_AT(3000, "user:v", 3000),
	    FAILED_AT(6000, "user:v", 0),
	    FAILED_AT(6000, "user:v", 3000),
	    /* The owner logs in after the block: cleared, and 10.0.0.1 is remembered. */
	    {9000, "user:v", "10.0.0.1", STEP_BEGIN, 0},
	    {9000, "user:v", "10.0.0.1", STEP_OK, 0},
	    FAILED_AT(9100, "user:v", 0),
	    FAILED_AT(9100, "user:v", 1000),
	    /* Blocked for others, not for the address that logged in before. */
	    {9200, "user:v", "10.0.0.1", STEP_CHECK, 0},
	    {9200, "user:v", "10.0.0.2", STEP_CHECK, 900},
	    {9200, "user:v", "10.0.0.1", STEP_BEGIN, 0},
	    {9300, "user:v", "10.0.0.1", STEP_OK, 0},
	    {9300, "user:v", "10.0.0.2", STEP_CHECK, 0},
	};
	struct auth_ratelimit *rl = auth_ratelimit_new(2, 1000, 100);
	auth_ratelimit_configure(rl, 2, 1000, 3000);
	limiter_run(rl, steps, sizeof(steps) / sizeof(steps[0]));
	auth_ratelimit_free(rl);
}

static void test_ratelimit_backoff_level_decays(void **state)
{
	static const struct limiter_step steps[] = {
	    FAILED_AT(0, "user:v", 1000),
	    FAILED_AT(1000, "user:v", 2000),
	    /* Quiet for backoff_max + window after the last failure: back to 1 s. */
	    {7000, "user:v", NULL, STEP_CHECK, 0},
	    FAILED_AT(7000, "user:v", 1000),
	};
	struct auth_ratelimit *rl = auth_ratelimit_new(1, 1000, 100);
	auth_ratelimit_configure(rl, 1, 1000, 5000);
	limiter_run(rl, steps, sizeof(steps) / sizeof(steps[0]));
	auth_ratelimit_free(rl);
}

static void test_ratelimit_forgets_the_stalest_key_when_full(void **state)
{
	struct auth_ratelimit *rl = auth_ratelimit_new(1, 10000, 2);
	auth_ratelimit_begin(rl, "k1", 0);
	auth_ratelimit_done(rl, "k1", AUTH_ATTEMPT_FAILED, NULL, 0);
	auth_ratelimit_begin(rl, "k2", 10);
	auth_ratelimit_done(rl, "k2", AUTH_ATTEMPT_FAILED, NULL, 10);
	assert_true(auth_ratelimit_check(rl, "k1", NULL, 20) > 0);
	auth_ratelimit_begin(rl, "k3", 30); /* table full: k1 (used longest ago) goes */
	auth_ratelimit_done(rl, "k3", AUTH_ATTEMPT_FAILED, NULL, 30);
	assert_int_equal(auth_ratelimit_check(rl, "k1", NULL, 40), 0);
	assert_true(auth_ratelimit_check(rl, "k2", NULL, 40) > 0);
	assert_true(auth_ratelimit_check(rl, "k3", NULL, 40) > 0);
	/* A key with an attempt in flight is kept over a staler idle one. */
	auth_ratelimit_begin(rl, "k2", 50);
	auth_ratelimit_begin(rl, "k4", 60);
	assert_true(auth_ratelimit_check(rl, "k2", NULL, 70) > 0);
	assert_int_equal(auth_ratelimit_check(rl, "k3", NULL, 70), 0);
	auth_ratelimit_free(rl);
}

static void test_client_address(void **state)
{
	static const struct {
		const char *peer, *xff, *want;
	} cases[] = {
	    /* The peer is not a trusted proxy: the header is the client's word, ignored. */
	    {"192.0.2.7", "203.0.113.9", "192.0.2.7"},
	    {"192.0.2.7", NULL, "192.0.2.7"},
	    /* A trusted proxy: its rightmost entry is the client. */
	    {"10.0.0.5", "203.0.113.9", "203.0.113.9"},
	    {"10.0.0.5", " 203.0.113.9 ", "203.0.113.9"},
	    {"10.0.0.5", NULL, "10.0.0.5"},
	    {"10.0.0.5", "", "10.0.0.5"},
	    /* What the client wrote sits to the left of what the proxy added. */
	    {"10.0.0.5", "1.1.1.1, 203.0.113.9", "203.0.113.9"},
	    /* Trusted hops are walked over. */
	    {"10.0.0.5", "1.1.1.1, 203.0.113.9, 10.0.0.6", "203.0.113.9"},
	    {"10.0.0.5", "10.0.0.7,10.0.0.6", "10.0.0.7"},
	    {"10.0.0.5", "2001:db8::1, 10.0.0.6", "2001:db8::1"},
	    /* Not an address: stop at the last hop that was one. */
	    {"10.0.0.5", "203.0.113.9, unknown", "10.0.0.5"},
	    {"10.0.0.5", "evil, 10.0.0.6", "10.0.0.6"},
	    {"10.0.0.5", "203.0.113.9:4711", "10.0.0.5"},
	    {"10.0.0.5", "203.0.113.9,", "10.0.0.5"},
	    {"10.0.0.5", ",,,", "10.0.0.5"},
	    {"10.0.0.5",
	     "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee:ffff:0000",
	     "10.0.0.5"},
	    {"::ffff:10.0.0.5", "203.0.113.9", "203.0.113.9"},
	};
	struct acl *trusted = NULL;
	assert_int_equal(acl_parse("10.0.0.0/24", &trusted, NULL), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[AUTH_ADDRESS_MAX + 1];
		auth_client_address(cases[i].peer, cases[i].xff, trusted, out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: %s, want %s", i, out, cases[i].want);
	}
	char out[AUTH_ADDRESS_MAX + 1];
	auth_client_address("10.0.0.5", "203.0.113.9", NULL, out);
	assert_string_equal(out, "10.0.0.5");
	acl_free(trusted);
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
	    cmocka_unit_test(test_ratelimit_plain),
	    cmocka_unit_test(test_ratelimit_counts_attempts_in_flight),
	    cmocka_unit_test(test_ratelimit_backoff),
	    cmocka_unit_test(test_ratelimit_backoff_level_decays),
	    cmocka_unit_test(test_ratelimit_forgets_the_stalest_key_when_full),
	    cmocka_unit_test(test_client_address),
	    cmocka_unit_test(test_imap_address),
	    cmocka_unit_test(test_ldap_escape),
	    cmocka_unit_test(test_imap_quote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
