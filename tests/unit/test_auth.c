/*
 * Tests for api/auth: argon2id hashes verify only the right password, an
 * unknown user is refused, tokens are fresh and hashed the same way every time,
 * the constant-time comparison, the session cookie in and out, and the login
 * failure limiter over time. Also the directory helpers of manager/auth_ldap and
 * manager/auth_imap that make user input safe to send, and the IMAP server-line
 * reader (tagged and untagged lines, literals) fed in reads of every size.
 * The second factor (api/auth_totp): RFC 6238 test vectors, the window, sealed
 * secrets, the otpauth URI and QR code, recovery codes and the code parser.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/tls.h"

#include "api/auth_totp.h"
#include "common/xalloc.h"
#include "manager/auth_imap.h"
#include "manager/auth_ldap.h"
#include "common/acl.h"
#include "api/auth.h"

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

/* ---- the IMAP reader's STARTTLS against a scripted server ---- */

/* A one-connection IMAP server: the greeting, then a reply per client line. */
struct imap_script {
	const char *greeting;
	const char *replies[4]; /* sent after each client line; NULL: close */
	int lfd;
	unsigned port;
	pthread_t thread;
	char seen[2048]; /* the client's lines */
};

static void *imap_script_run(void *arg)
{
	struct imap_script *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	(void)!write(fd, s->greeting, strlen(s->greeting));
	char buf[1024];
	size_t len = 0;
	for (size_t step = 0; step < 4 && s->replies[step] != NULL;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) <= 0)
			break;
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		char *nl;
		while ((nl = strchr(buf, '\n')) != NULL && step < 4 && s->replies[step] != NULL) {
			size_t used = (size_t)(nl - buf) + 1;
			strncat(s->seen, buf,
				used < sizeof(s->seen) - strlen(s->seen) - 1
				    ? used
				    : sizeof(s->seen) - strlen(s->seen) - 1);
			memmove(buf, buf + used, len - used + 1);
			len -= used;
			(void)!write(fd, s->replies[step], strlen(s->replies[step]));
			step++;
		}
	}
	close(fd);
	return NULL;
}

static void imap_script_start(struct imap_script *s)
{
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(listen(s->lfd, 1), 0);
	getsockname(s->lfd, (struct sockaddr *)&a, &sl);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, imap_script_run, s), 0);
}

static void test_imap_tls_hostile_servers(void **state)
{
	static const struct {
		const char *name;
		enum auth_imap_tls tls;
		const char *greeting;
		const char *replies[4];
		int rc;
	} cases[] = {
	    {"plain login (tls = none) works with this server",
	     AUTH_IMAP_TLS_NONE,
	     "* OK ready\r\n",
	     {"a1 OK logged in\r\n", "a2 OK bye\r\n"},
	     0},
	    {"no STARTTLS: nothing more is sent",
	     AUTH_IMAP_TLS_STARTTLS,
	     "* OK ready\r\n",
	     {"a0 BAD unknown command\r\n", "a1 OK logged in\r\n"},
	     -EIO},
	    {"STARTTLS refused",
	     AUTH_IMAP_TLS_STARTTLS,
	     "* OK ready\r\n",
	     {"a0 NO not now\r\n", "a1 OK logged in\r\n"},
	     -EIO},
	    {"lines after the STARTTLS OK are an injection",
	     AUTH_IMAP_TLS_STARTTLS,
	     "* OK ready\r\n",
	     {"a0 OK begin TLS\r\na1 OK logged in\r\n", "a1 OK x\r\n"},
	     -EIO},
	    {"no TLS after the STARTTLS OK",
	     AUTH_IMAP_TLS_STARTTLS,
	     "* OK ready\r\n",
	     {"a0 OK begin TLS\r\n", "a1 OK logged in\r\n"},
	     -EIO},
	    {"imaps to a plain server",
	     AUTH_IMAP_TLS_IMAPS,
	     "* OK ready\r\n",
	     {"a1 OK logged in\r\n"},
	     -EIO},
	};
	(void)state;
	char *err = NULL;
	SSL_CTX *ctx = tls_client_context(NULL, NULL, NULL, true, &err);
	assert_non_null(ctx);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_script srv = {.greeting = cases[i].greeting};
		memcpy(srv.replies, cases[i].replies, sizeof(srv.replies));
		imap_script_start(&srv);
		char host[64];
		snprintf(host, sizeof(host), "127.0.0.1:%u", srv.port);
		struct auth_imap_config cfg = {.host = host,
					       .domain = "corp.test",
					       .timeout_ms = 1000,
					       .tls = cases[i].tls,
					       .tls_ctx = ctx};
		char **addrs = NULL;
		size_t n = 0;
		int rc = auth_imap_login(&cfg, "hanako", "secret-pw", &addrs, &n);
		pthread_join(srv.thread, NULL);
		close(srv.lfd);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].name, rc, cases[i].rc);
		/* Whatever went wrong, the password never went out in clear. */
		if (cases[i].tls != AUTH_IMAP_TLS_NONE && strstr(srv.seen, "secret-pw") != NULL)
			fail_msg("%s: the password was sent in clear: %s", cases[i].name, srv.seen);
		if (cases[i].tls == AUTH_IMAP_TLS_NONE)
			assert_non_null(strstr(srv.seen, "a1 LOGIN \"hanako\" \"secret-pw\""));
		for (size_t k = 0; k < n; k++)
			free(addrs[k]);
		free(addrs);
	}
	SSL_CTX_free(ctx);
}

/*
 * Feeds input to the IMAP reader as auth_imap_read_line does, in reads of at most
 * chunk bytes into a buffer of AUTH_IMAP_LINE_MAX, and writes the responses' first
 * lines into got, each followed by '|'. Returns the error that ended the reading,
 * or 0 at the end of the input.
 */
static int imap_read_all(const char *input, size_t size, size_t chunk, char *got, size_t gotcap)
{
	static char buf[AUTH_IMAP_LINE_MAX];
	struct auth_imap_reader r = {0};
	size_t len = 0, off = 0;
	got[0] = '\0';
	for (;;) {
		size_t used;
		char *line = NULL;
		int rc = auth_imap_reader_next(&r, buf, len, &used, &line);
		assert_true(used <= len);
		memmove(buf, buf + used, len - used);
		len -= used;
		if (rc < 0) {
			assert_null(line);
			return rc;
		}
		if (rc == 1) {
			assert_true(strlen(got) + strlen(line) + 2 <= gotcap);
			strcat(got, line);
			strcat(got, "|");
			free(line);
			continue;
		}
		assert_null(line);
		assert_true(len < sizeof(buf));
		if (off == size)
			return 0;
		size_t n = size - off;
		if (n > sizeof(buf) - len)
			n = sizeof(buf) - len;
		if (n > chunk)
			n = chunk;
		memcpy(buf + len, input + off, n);
		len += n;
		off += n;
	}
}

/* The responses a server sends before and after LOGIN, whatever the reads' sizes. */
static void test_imap_reader(void **state)
{
	(void)state;
	static const struct {
		const char *what, *input;
		const char *want; /* each response's first line, followed by '|' */
		int end;
	} cases[] = {
	    {"Dovecot login",
	     "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
	     "a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
	     "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.|"
	     "a1 OK [CAPABILITY IMAP4rev1] Logged in|",
	     0},
	    {"LF only, one CR dropped", "* OK ready\na1 NO bad\r\r\n", "* OK ready|a1 NO bad\r|",
	     0},
	    {"empty lines", "\r\n\n", "||", 0},
	    {"a line without its end waits", "* OK ready\r\na1 O", "* OK ready|", 0},
	    /* A literal is data: a tagged line inside it is not the reply. */
	    {"literal hides a tag",
	     "* ID (\"name\" {12}\r\na1 OK fake\r\n)\r\na1 NO [AUTHENTICATIONFAILED] "
	     "no\r\n",
	     "* ID (\"name\" {12}|a1 NO [AUTHENTICATIONFAILED] no|", 0},
	    {"two literals in one response",
	     "* 1 FETCH (A {3}\r\nx\r\n B {4}\r\na1 O K)\r\na1 OK done\r\n",
	     "* 1 FETCH (A {3}|a1 OK done|", 0},
	    {"empty literal and literal8", "* X {0}\r\n ~{2}\r\n\r\n)\r\na1 OK\r\n",
	     "* X {0}|a1 OK|", 0},
	    {"Japanese literal",
	     "* LIST () \"/\" {9}\r\n\xe5\x8f\x97\xe4\xbf\xa1\xe7\xae\xb1\r\na1 OK\r\n",
	     "* LIST () \"/\" {9}|a1 OK|", 0},
	    {"not a literal: no digits, sign, text after", "* A {}\r\n* B {+1}\r\n* C {1} x\r\n",
	     "* A {}|* B {+1}|* C {1} x|", 0},
	    {"literal over the limit", "* OK\r\n* 1 FETCH (BODY[] {65537}\r\nx\r\n", "* OK|",
	     -EPROTO},
	    {"overflowing literal size", "* X {99999999999999999999999}\r\n", "", -EPROTO},
	};
	char got[1024];
	static const size_t chunks[] = {1, 2, 3, 7, 64, AUTH_IMAP_LINE_MAX};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t size = strlen(cases[i].input);
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			int end = imap_read_all(cases[i].input, size, chunks[c], got, sizeof(got));
			if (end != cases[i].end || strcmp(got, cases[i].want) != 0)
				fail_msg("%s (reads of %zu): end %d \"%s\", want %d \"%s\"",
					 cases[i].what, chunks[c], end, got, cases[i].end,
					 cases[i].want);
		}
	}
}

/* A NUL byte ends a line's text (the rest of the line is not taken for more). */
static void test_imap_reader_nul(void **state)
{
	(void)state;
	char got[64];
	static const char in[] = "* OK a\0b\r\na1 OK\r\n";
	assert_int_equal(imap_read_all(in, sizeof(in) - 1, 3, got, sizeof(got)), 0);
	assert_string_equal(got, "* OK a|a1 OK|");
}

/* Literal bytes are skipped as they arrive, however many reads they span. */
static void test_imap_reader_limits(void **state)
{
	(void)state;
	static char got[AUTH_IMAP_LINE_MAX + 16];
	size_t n = AUTH_IMAP_LITERAL_MAX;
	char *in = malloc(n + 64);
	assert_non_null(in);
	int head = snprintf(in, 64, "* X {%zu}\r\n", n);
	memset(in + head, 'a', n);
	/* A tag line inside the literal, at a read boundary, is still data. */
	memcpy(in + head + AUTH_IMAP_LINE_MAX - 10, "\r\na1 OK x\r\n", 11);
	memcpy(in + head + n, ")\r\na1 OK\r\n", 11);
	size_t size = (size_t)head + n + 10;
	assert_int_equal(imap_read_all(in, size, AUTH_IMAP_LINE_MAX, got, sizeof(got)), 0);
	assert_string_equal(got, "* X {65536}|a1 OK|");
	free(in);

	/* A line must fit the buffer with its LF. */
	in = malloc(AUTH_IMAP_LINE_MAX + 2);
	assert_non_null(in);
	memset(in, 'x', AUTH_IMAP_LINE_MAX + 2);
	in[AUTH_IMAP_LINE_MAX - 1] = '\n';
	assert_int_equal(imap_read_all(in, AUTH_IMAP_LINE_MAX, 100, got, sizeof(got)), 0);
	assert_int_equal(strlen(got), AUTH_IMAP_LINE_MAX - 1 + 1);
	in[AUTH_IMAP_LINE_MAX - 1] = 'x';
	in[AUTH_IMAP_LINE_MAX] = '\n';
	assert_int_equal(imap_read_all(in, AUTH_IMAP_LINE_MAX + 1, 100, got, sizeof(got)), -E2BIG);
	free(in);
}

/* ---- the second factor ---- */

/* RFC 6238 appendix B (SHA-1), the last 6 of its 8 digits. */
static void test_totp_rfc6238_vectors(void **state)
{
	(void)state;
	const unsigned char *secret = (const unsigned char *)"12345678901234567890";
	static const struct {
		int64_t t;
		const char *code;
	} v[] = {
	    {59, "287082"},	    {1111111109, "081804"}, {1111111111, "050471"},
	    {1234567890, "005924"}, {2000000000, "279037"}, {20000000000LL, "353130"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char code[AUTH_TOTP_DIGITS + 1];
		assert_int_equal(auth_totp_code(secret, v[i].t / AUTH_TOTP_STEP_S, code), 0);
		assert_string_equal(code, v[i].code);
		int64_t step = -1;
		assert_int_equal(auth_totp_verify(secret, v[i].t * 1000, v[i].code, &step), 0);
		assert_int_equal(step, v[i].t / AUTH_TOTP_STEP_S);
	}
	char b32[AUTH_TOTP_BASE32_LEN + 1];
	auth_totp_base32(secret, b32);
	assert_string_equal(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}

/* A code is good one step either side of now, not two. */
static void test_totp_window(void **state)
{
	(void)state;
	unsigned char secret[AUTH_TOTP_SECRET_BYTES];
	auth_totp_secret_new(secret);
	int64_t now_ms = 1764900000000LL + 12345, now_step = now_ms / 1000 / AUTH_TOTP_STEP_S;
	for (int d = -3; d <= 3; d++) {
		char code[AUTH_TOTP_DIGITS + 1];
		assert_int_equal(auth_totp_code(secret, now_step + d, code), 0);
		int64_t step = 0;
		int rc = auth_totp_verify(secret, now_ms, code, &step);
		if (d >= -AUTH_TOTP_WINDOW && d <= AUTH_TOTP_WINDOW) {
			assert_int_equal(rc, 0);
			assert_int_equal(step, now_step + d);
		} else {
			/* (a random secret's far code may equal a near one: 1 in 10^6) */
			assert_int_equal(rc, -EACCES);
		}
	}
	int64_t step = 0;
	assert_int_equal(auth_totp_verify(secret, now_ms, "12345", &step), -EACCES);
	assert_int_equal(auth_totp_verify(secret, now_ms, "1234567", &step), -EACCES);
	assert_int_equal(auth_totp_verify(secret, now_ms, NULL, &step), -EACCES);
}

static void test_totp_seal(void **state)
{
	(void)state;
	unsigned char key[AUTH_TOTP_KEY_BYTES], other[AUTH_TOTP_KEY_BYTES];
	unsigned char secret[AUTH_TOTP_SECRET_BYTES], got[AUTH_TOTP_SECRET_BYTES];
	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	auth_totp_secret_new(secret);
	char *a = auth_totp_seal(key, "alice", secret);
	char *b = auth_totp_seal(key, "alice", secret);
	assert_string_not_equal(a, b); /* a fresh nonce each time */
	assert_int_equal(auth_totp_open(key, "alice", a, got), 0);
	assert_memory_equal(got, secret, sizeof(secret));
	assert_int_equal(auth_totp_open(key, "bob", a, got), -EINVAL);
	assert_int_equal(auth_totp_open(other, "alice", a, got), -EINVAL);
	a[10] = a[10] == '0' ? '1' : '0';
	assert_int_equal(auth_totp_open(key, "alice", a, got), -EINVAL);
	assert_int_equal(auth_totp_open(key, "alice", "", got), -EINVAL);
	assert_int_equal(auth_totp_open(key, "alice", "zz", got), -EINVAL);
	assert_int_equal(auth_totp_open(key, "alice", NULL, got), -EINVAL);
	free(a);
	free(b);
}

static void test_totp_uri_and_qr(void **state)
{
	(void)state;
	char *uri = auth_totp_uri("Lazaret", "a b@x/y", "ABCDEFGH");
	assert_string_equal(uri, "otpauth://totp/Lazaret:a%20b%40x%2Fy?secret=ABCDEFGH"
				 "&issuer=Lazaret&algorithm=SHA1&digits=6&period=30");
	char *svg = auth_totp_qr_svg(uri);
	assert_non_null(svg);
	assert_true(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ", 52) ==
		    0);
	assert_non_null(strstr(svg, "h1v1h-1z"));
	assert_string_equal(svg + strlen(svg) - 9, "\"/></svg>");
	free(svg);
	free(uri);
	/* far more than a QR code holds */
	char *big = xcalloc(8000, 1);
	memset(big, 'a', 7999);
	assert_null(auth_totp_qr_svg(big));
	free(big);
}

static void test_recovery_codes(void **state)
{
	(void)state;
	char a[AUTH_RECOVERY_TEXT_LEN + 1], b[AUTH_RECOVERY_TEXT_LEN + 1];
	auth_recovery_code_new(a);
	auth_recovery_code_new(b);
	assert_int_equal(strlen(a), AUTH_RECOVERY_TEXT_LEN);
	assert_string_not_equal(a, b);
	assert_true(a[4] == '-' && a[9] == '-' && a[14] == '-');
	char out[AUTH_RECOVERY_CHARS + 1];
	assert_int_equal(auth_code_parse(a, out), AUTH_CODE_RECOVERY);
	assert_int_equal(strlen(out), AUTH_RECOVERY_CHARS);
}

/* Every shape of input the code field may get. */
static void test_code_parse(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		enum auth_code_kind kind;
		const char *out;
	} v[] = {
	    {"123456", AUTH_CODE_TOTP, "123456"},
	    {"123 456", AUTH_CODE_TOTP, "123456"},
	    {" 123-456 ", AUTH_CODE_TOTP, "123456"},
	    {"000000", AUTH_CODE_TOTP, "000000"},
	    {"12345", AUTH_CODE_INVALID, ""},
	    {"1234567", AUTH_CODE_INVALID, ""},
	    {"12345a", AUTH_CODE_INVALID, ""},
	    {"１２３４５６", AUTH_CODE_INVALID, ""}, /* full-width digits */
	    {"123456\n", AUTH_CODE_INVALID, ""},
	    {"12\t3456", AUTH_CODE_INVALID, ""},
	    {"", AUTH_CODE_INVALID, ""},
	    {"      ", AUTH_CODE_INVALID, ""},
	    {"abcd-efgh-ijkl-mn23", AUTH_CODE_RECOVERY, "abcdefghijklmn23"},
	    {"ABCD EFGH IJKL MN23", AUTH_CODE_RECOVERY, "abcdefghijklmn23"},
	    {"abcdefghijklmn23", AUTH_CODE_RECOVERY, "abcdefghijklmn23"},
	    {"2345-6723-4567-2345", AUTH_CODE_RECOVERY, "2345672345672345"},
	    {"abcd-efgh-ijkl-mn0", AUTH_CODE_INVALID, ""},   /* 15 */
	    {"abcd-efgh-ijkl-mn234", AUTH_CODE_INVALID, ""}, /* 17 */
	    {"abcd-efgh-ijkl-mn01", AUTH_CODE_INVALID, ""},  /* 0 and 1 are not base32 */
	    {"abcd-efgh-ijkl-mn8!", AUTH_CODE_INVALID, ""},
	    {"abcd_efgh_ijkl_mn23", AUTH_CODE_INVALID, ""},
	    {"------------------------------------------------------------------123456",
	     AUTH_CODE_INVALID, ""}, /* longer than AUTH_CODE_INPUT_MAX */
	    {"---------------------------------------------------------123456", AUTH_CODE_TOTP,
	     "123456"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char out[AUTH_RECOVERY_CHARS + 1];
		memset(out, 'x', sizeof(out));
		enum auth_code_kind k = auth_code_parse(v[i].in, out);
		if (k != v[i].kind)
			fail_msg("case %zu \"%s\": kind %d, want %d", i, v[i].in, k, v[i].kind);
		assert_string_equal(out, v[i].out);
	}
	char out[AUTH_RECOVERY_CHARS + 1];
	assert_int_equal(auth_code_parse(NULL, out), AUTH_CODE_INVALID);
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
	    cmocka_unit_test(test_totp_rfc6238_vectors),
	    cmocka_unit_test(test_totp_window),
	    cmocka_unit_test(test_totp_seal),
	    cmocka_unit_test(test_totp_uri_and_qr),
	    cmocka_unit_test(test_recovery_codes),
	    cmocka_unit_test(test_code_parse),
	    cmocka_unit_test(test_imap_address),
	    cmocka_unit_test(test_ldap_escape),
	    cmocka_unit_test(test_imap_tls_hostile_servers),
	    cmocka_unit_test(test_imap_quote),
	    cmocka_unit_test(test_imap_reader),
	    cmocka_unit_test(test_imap_reader_nul),
	    cmocka_unit_test(test_imap_reader_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
