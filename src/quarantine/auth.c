/*
 * auth — password hashing, tokens, cookies and the login failure limiter (see
 * auth.h). Not for: looking up accounts, creating sessions or answering requests
 * (api_users.c), directories (manager/auth_ldap.c, auth_imap.c).
 *
 * Why these choices: argon2id with libsodium's "interactive" limits costs an
 * attacker with a stolen database real memory per guess while a login still takes
 * well under a second; tokens are 256 random bits, so the store only needs a fast
 * hash (BLAKE2b) of them — a stolen database holds no usable session.
 *
 * Limiter states of one key: absent -> counting (first failure starts the window)
 * -> blocked (failures reach max within the window) -> absent (the window ends,
 * auth_ratelimit_check forgets it, or auth_ratelimit_reset).
 */
#include "quarantine/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/log.h"
#include "common/xalloc.h"

static pthread_once_t auth_once = PTHREAD_ONCE_INIT;
static char auth_dummy_hash[crypto_pwhash_STRBYTES];

static void auth_init_once(void)
{
	if (sodium_init() < 0)
		panic("auth: libsodium cannot initialise");
}

void auth_init(void)
{
	pthread_once(&auth_once, auth_init_once);
}

int auth_password_hash(const char *password, char **out)
{
	auth_init();
	*out = NULL;
	size_t len = strlen(password);
	if (len > AUTH_PASSWORD_MAX_LEN)
		return -EINVAL;
	char buf[crypto_pwhash_STRBYTES];
	if (crypto_pwhash_str(buf, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
			      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return -ENOMEM;
	*out = xstrdup(buf);
	return 0;
}

static pthread_once_t auth_dummy_once = PTHREAD_ONCE_INIT;

static void auth_dummy_init(void)
{
	unsigned char secret[16];
	randombytes_buf(secret, sizeof(secret));
	if (crypto_pwhash_str(auth_dummy_hash, (const char *)secret, sizeof(secret),
			      crypto_pwhash_OPSLIMIT_INTERACTIVE,
			      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		panic("auth: cannot compute the dummy password hash");
}

bool auth_password_verify(const char *hash, const char *password)
{
	auth_init();
	size_t len = strlen(password);
	if (len > AUTH_PASSWORD_MAX_LEN)
		len = AUTH_PASSWORD_MAX_LEN;
	if (hash == NULL || *hash == '\0') {
		/* Same work as a real check, so an unknown user is not faster to refuse. */
		pthread_once(&auth_dummy_once, auth_dummy_init);
		if (crypto_pwhash_str_verify(auth_dummy_hash, password, len) == 0)
			log_warn("auth.dummy_matched", "reason=\"a random secret was guessed\"");
		return false;
	}
	return crypto_pwhash_str_verify(hash, password, len) == 0;
}

void auth_token_new(char out[AUTH_TOKEN_TEXT_LEN + 1])
{
	auth_init();
	unsigned char raw[AUTH_TOKEN_BYTES];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(out, AUTH_TOKEN_TEXT_LEN + 1, raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
}

void auth_token_hash(const char *token, char out[AUTH_HASH_TEXT_LEN + 1])
{
	auth_init();
	unsigned char digest[AUTH_HASH_TEXT_LEN / 2];
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)token, strlen(token),
			   NULL, 0);
	sodium_bin2hex(out, AUTH_HASH_TEXT_LEN + 1, digest, sizeof(digest));
}

bool auth_token_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return false;
	auth_init();
	/* Fixed-length digests: neither the content nor the length of b leaks. */
	unsigned char da[crypto_generichash_BYTES], db[crypto_generichash_BYTES];
	crypto_generichash(da, sizeof(da), (const unsigned char *)a, strlen(a), NULL, 0);
	crypto_generichash(db, sizeof(db), (const unsigned char *)b, strlen(b), NULL, 0);
	return sodium_memcmp(da, db, sizeof(da)) == 0;
}

char *auth_cookie_get(const char *header, const char *name)
{
	if (header == NULL)
		return NULL;
	size_t nlen = strlen(name);
	const char *p = header;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		size_t len = strcspn(p, ";");
		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			size_t vlen = len - nlen - 1;
			while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
				v++;
				vlen -= 2;
			}
			return xstrndup(v, vlen);
		}
		p += len;
	}
	return NULL;
}

char *auth_cookie_set(const char *token, int64_t max_age_s, bool secure)
{
	return xasprintf("%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
			 AUTH_COOKIE_NAME, token != NULL ? token : "",
			 (long long)(token != NULL ? max_age_s : 0), secure ? "; Secure" : "");
}

/* ---- login failure limiter ---- */

struct auth_ratelimit_entry {
	char *key;
	unsigned failures;
	int64_t window_start;
};

struct auth_ratelimit {
	unsigned max_failures;
	int64_t window_ms;
	size_t max_keys;
	struct auth_ratelimit_entry *entries;
	size_t n;
};

struct auth_ratelimit *auth_ratelimit_new(unsigned max_failures, int64_t window_ms, size_t max_keys)
{
	struct auth_ratelimit *rl = xcalloc(1, sizeof(*rl));
	rl->max_keys = max_keys > 0 ? max_keys : 1;
	auth_ratelimit_configure(rl, max_failures, window_ms);
	return rl;
}

void auth_ratelimit_free(struct auth_ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < rl->n; i++)
		free(rl->entries[i].key);
	free(rl->entries);
	free(rl);
}

void auth_ratelimit_configure(struct auth_ratelimit *rl, unsigned max_failures, int64_t window_ms)
{
	rl->max_failures = max_failures > 0 ? max_failures : 1;
	rl->window_ms = window_ms > 0 ? window_ms : 1;
}

static void auth_ratelimit_remove(struct auth_ratelimit *rl, size_t i)
{
	free(rl->entries[i].key);
	rl->entries[i] = rl->entries[--rl->n];
}

/* Key's entry, forgetting it first when its window has ended; NULL when absent. */
static struct auth_ratelimit_entry *auth_ratelimit_find(struct auth_ratelimit *rl, const char *key,
							int64_t now)
{
	for (size_t i = 0; i < rl->n; i++) {
		if (strcmp(rl->entries[i].key, key) != 0)
			continue;
		if (now - rl->entries[i].window_start >= rl->window_ms) {
			auth_ratelimit_remove(rl, i);
			return NULL;
		}
		return &rl->entries[i];
	}
	return NULL;
}

int64_t auth_ratelimit_check(struct auth_ratelimit *rl, const char *key, int64_t now)
{
	struct auth_ratelimit_entry *e = auth_ratelimit_find(rl, key, now);
	if (e == NULL || e->failures < rl->max_failures)
		return 0;
	return e->window_start + rl->window_ms - now;
}

void auth_ratelimit_fail(struct auth_ratelimit *rl, const char *key, int64_t now)
{
	struct auth_ratelimit_entry *e = auth_ratelimit_find(rl, key, now);
	if (e == NULL) {
		if (rl->n == rl->max_keys) {
			/* Full: forget the key whose window started first. */
			size_t oldest = 0;
			for (size_t i = 1; i < rl->n; i++) {
				if (rl->entries[i].window_start < rl->entries[oldest].window_start)
					oldest = i;
			}
			auth_ratelimit_remove(rl, oldest);
		}
		rl->entries = xreallocarray(rl->entries, rl->n + 1, sizeof(*rl->entries));
		e = &rl->entries[rl->n++];
		e->key = xstrdup(key);
		e->failures = 0;
		e->window_start = now;
	}
	e->failures++;
}

void auth_ratelimit_reset(struct auth_ratelimit *rl, const char *key)
{
	for (size_t i = 0; i < rl->n; i++) {
		if (strcmp(rl->entries[i].key, key) == 0) {
			auth_ratelimit_remove(rl, i);
			return;
		}
	}
}
