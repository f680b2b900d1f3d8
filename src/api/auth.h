/*
 * auth — the building blocks of logging in: password hashes (argon2id), session
 * and CSRF tokens, their hashes, constant-time comparison, the session cookie and
 * a login failure limiter. No I/O and no store: api_users.c puts them together.
 */
#ifndef LAZARET_AUTH_H
#define LAZARET_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Shortest password accepted for a local account. */
#define AUTH_PASSWORD_MIN_LEN 8
/* Longest password or username looked at: longer input is hostile, not a secret. */
#define AUTH_PASSWORD_MAX_LEN 1024
#define AUTH_USERNAME_MAX_LEN 256
/* Random bytes in a session or CSRF token, and the length of its hex text. */
#define AUTH_TOKEN_BYTES    32
#define AUTH_TOKEN_TEXT_LEN (AUTH_TOKEN_BYTES * 2)
/* The hex text of a token's BLAKE2b-256 hash. */
#define AUTH_HASH_TEXT_LEN 64
/* The session cookie's name. */
#define AUTH_COOKIE_NAME "lazaret_session"

/* Initialises libsodium; panics when it cannot. Idempotent and thread-safe. */
void auth_init(void);

/*
 * An argon2id hash string of password (OPSLIMIT/MEMLIMIT interactive), new in *out
 * (caller frees). -EINVAL for a password longer than AUTH_PASSWORD_MAX_LEN, -ENOMEM
 * when the hash's memory cannot be had.
 */
int auth_password_hash(const char *password, char **out);
/*
 * True when password matches hash. A NULL hash (no such user, or no local
 * password) is verified against a fixed dummy hash and answers false, so the
 * time taken does not tell whether the user exists.
 */
bool auth_password_verify(const char *hash, const char *password);

/* A new random token: AUTH_TOKEN_TEXT_LEN hex characters and a NUL. */
void auth_token_new(char out[AUTH_TOKEN_TEXT_LEN + 1]);
/* The hex BLAKE2b-256 of token: what the store keeps instead of the token. */
void auth_token_hash(const char *token, char out[AUTH_HASH_TEXT_LEN + 1]);
/* True when a and b are equal; the time taken depends on neither. NULL never matches. */
bool auth_token_equal(const char *a, const char *b);

/*
 * The value of cookie name in a Cookie header ("a=1; lazaret_session=x"), new
 * (caller frees), or NULL when absent.
 */
char *auth_cookie_get(const char *cookie_header, const char *name);
/*
 * The Set-Cookie value for a session token: HttpOnly; SameSite=Strict; Path=/,
 * Max-Age max_age_s, and Secure when secure. token NULL: a cookie that clears it.
 * New string, caller frees.
 */
char *auth_cookie_set(const char *token, int64_t max_age_s, bool secure);

/* The longest client address kept (an IPv6 address in text form). */
#define AUTH_ADDRESS_MAX 63
/* Addresses a backoff table remembers per account as having logged in to it. */
#define AUTH_RATELIMIT_KNOWN 4
/* The wait answered while attempts in flight fill a key's allowance. */
#define AUTH_RATELIMIT_BUSY_WAIT_MS 1000

struct acl;

/*
 * Login limiter: a key (an account or a client address) may have at most
 * max_failures failed or in-flight attempts within window_ms; the max-th failure
 * blocks the key. A plain table (backoff_max_ms 0) blocks until the window that
 * began with the first failure ends. A backoff table blocks for window_ms, then
 * twice that, ... up to backoff_max_ms, and a success clears the key and
 * remembers the address it came from: that address is not refused while the key
 * is blocked. Keeps at most max_keys keys (the stalest is forgotten). Loop thread
 * only. Use: check (refuse when it says wait), begin (the attempt counts from
 * now), later done with the result.
 */
struct auth_ratelimit;
enum auth_attempt {
	AUTH_ATTEMPT_OK,     /* the password was right */
	AUTH_ATTEMPT_FAILED, /* the password or the user was wrong */
	AUTH_ATTEMPT_ERROR,  /* no answer (a directory was down): not counted */
};
struct auth_ratelimit *auth_ratelimit_new(unsigned max_failures, int64_t window_ms,
					  size_t max_keys);
void auth_ratelimit_free(struct auth_ratelimit *rl);
/* New limits; counts so far are kept. backoff_max_ms 0: a plain table. */
void auth_ratelimit_configure(struct auth_ratelimit *rl, unsigned max_failures, int64_t window_ms,
			      int64_t backoff_max_ms);
/*
 * 0 when key may try now from address (may be NULL), else how many ms until it
 * may. Changes no count.
 */
int64_t auth_ratelimit_check(struct auth_ratelimit *rl, const char *key, const char *address,
			     int64_t now);
/* Counts an admitted attempt of key as in flight. */
void auth_ratelimit_begin(struct auth_ratelimit *rl, const char *key, int64_t now);
/* Settles an attempt counted by auth_ratelimit_begin. */
void auth_ratelimit_done(struct auth_ratelimit *rl, const char *key, enum auth_attempt result,
			 const char *address, int64_t now);

/*
 * The client's address for limits and logs, into out: peer, unless peer is in
 * trusted (NULL: none) and forwarded_for (an X-Forwarded-For value, may be NULL)
 * names hops: then the rightmost hop that is not in trusted, walking left over
 * trusted ones. A hop that is not a plain IPv4/IPv6 address ends the walk (the
 * last good hop stands), so a client cannot name itself past a proxy's entry.
 */
void auth_client_address(const char *peer, const char *forwarded_for, const struct acl *trusted,
			 char out[AUTH_ADDRESS_MAX + 1]);

#endif
