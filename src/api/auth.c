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
 * Limiter (one table per kind of key: accounts, client addresses). An attempt is
 * counted when it is admitted, before its password check runs, so parallel
 * requests cannot outrun the count. States of one key:
 *
 *   absent -> counting     auth_ratelimit_begin (the attempt is "in flight")
 *   counting -> counting   auth_ratelimit_done: ERROR, or FAILED below max
 *   counting -> blocked    auth_ratelimit_done: the max-th FAILED within the window;
 *                          blocked for the window (plain), or window << level
 *                          capped at backoff_max (backoff), and level grows
 *   blocked -> counting    time passes (auth_ratelimit_check sees blocked_until)
 *   any -> cleared         auth_ratelimit_done: OK on a backoff table resets
 *                          failures, block and level and remembers the address
 *   any -> absent          nothing left to remember (auth_ratelimit_forgettable),
 *                          or the table is full and the key is the stalest
 *
 * While failures + attempts in flight reach max, auth_ratelimit_check refuses
 * more. A blocked account still admits an address that has logged in to it
 * before (its "known" addresses), so others cannot cheaply lock its owner out;
 * that address is still bound by the per-address table.
 */
#include "api/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <arpa/inet.h>

#include "common/acl.h"
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

/* ---- login limiter ---- */

struct auth_ratelimit_entry {
	char *key;
	unsigned failures; /* within the window that began at window_start */
	unsigned inflight; /* admitted attempts not yet done */
	unsigned level;	   /* backoff: blocks since the last success */
	int64_t window_start;
	int64_t blocked_until; /* 0: not blocked */
	int64_t last_failure;
	int64_t last_used; /* for forgetting the stalest key when full */
	char known[AUTH_RATELIMIT_KNOWN][AUTH_ADDRESS_MAX + 1];
	unsigned next_known;
};

struct auth_ratelimit {
	unsigned max_failures;
	int64_t window_ms;
	int64_t backoff_max_ms; /* 0: plain window, no backoff, no known addresses */
	size_t max_keys;
	struct auth_ratelimit_entry *entries;
	size_t n;
};

struct auth_ratelimit *auth_ratelimit_new(unsigned max_failures, int64_t window_ms, size_t max_keys)
{
	struct auth_ratelimit *rl = xcalloc(1, sizeof(*rl));
	rl->max_keys = max_keys > 0 ? max_keys : 1;
	auth_ratelimit_configure(rl, max_failures, window_ms, 0);
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

void auth_ratelimit_configure(struct auth_ratelimit *rl, unsigned max_failures, int64_t window_ms,
			      int64_t backoff_max_ms)
{
	rl->max_failures = max_failures > 0 ? max_failures : 1;
	rl->window_ms = window_ms > 0 ? window_ms : 1;
	rl->backoff_max_ms =
	    backoff_max_ms > 0 && backoff_max_ms < rl->window_ms ? rl->window_ms : backoff_max_ms;
}

static void auth_ratelimit_remove(struct auth_ratelimit *rl, size_t i)
{
	free(rl->entries[i].key);
	rl->entries[i] = rl->entries[--rl->n];
}

/* Ends what time has ended: the failure window, and (backoff) a level long quiet. */
static void auth_ratelimit_age(const struct auth_ratelimit *rl, struct auth_ratelimit_entry *e,
			       int64_t now)
{
	if (e->failures > 0 && now - e->window_start >= rl->window_ms)
		e->failures = 0;
	if (e->level > 0 && now >= e->blocked_until &&
	    now - e->last_failure >= rl->backoff_max_ms + rl->window_ms)
		e->level = 0;
}

/* True when e holds nothing worth keeping at now. */
static bool auth_ratelimit_forgettable(const struct auth_ratelimit_entry *e, int64_t now)
{
	return e->failures == 0 && e->inflight == 0 && e->level == 0 && now >= e->blocked_until &&
	       e->known[0][0] == '\0';
}

static struct auth_ratelimit_entry *auth_ratelimit_find(struct auth_ratelimit *rl, const char *key,
							int64_t now)
{
	for (size_t i = 0; i < rl->n; i++) {
		struct auth_ratelimit_entry *e = &rl->entries[i];
		if (strcmp(e->key, key) != 0)
			continue;
		auth_ratelimit_age(rl, e, now);
		return e;
	}
	return NULL;
}

static bool auth_ratelimit_known(const struct auth_ratelimit_entry *e, const char *address)
{
	if (address == NULL || *address == '\0')
		return false;
	for (size_t i = 0; i < AUTH_RATELIMIT_KNOWN; i++) {
		if (strcmp(e->known[i], address) == 0)
			return true;
	}
	return false;
}

int64_t auth_ratelimit_check(struct auth_ratelimit *rl, const char *key, const char *address,
			     int64_t now)
{
	struct auth_ratelimit_entry *e = auth_ratelimit_find(rl, key, now);
	if (e == NULL)
		return 0;
	if (rl->backoff_max_ms > 0 && auth_ratelimit_known(e, address))
		return 0;
	if (now < e->blocked_until)
		return e->blocked_until - now;
	if (e->failures + e->inflight >= rl->max_failures) {
		/* Attempts in flight will settle it within a password check or so. */
		return AUTH_RATELIMIT_BUSY_WAIT_MS;
	}
	return 0;
}

void auth_ratelimit_begin(struct auth_ratelimit *rl, const char *key, int64_t now)
{
	struct auth_ratelimit_entry *e = auth_ratelimit_find(rl, key, now);
	if (e == NULL) {
		if (rl->n == rl->max_keys) {
			/* Full: forget the stalest key, preferring one with nothing in flight. */
			size_t oldest = 0;
			for (size_t i = 1; i < rl->n; i++) {
				const struct auth_ratelimit_entry *a = &rl->entries[i];
				const struct auth_ratelimit_entry *b = &rl->entries[oldest];
				if ((a->inflight == 0) != (b->inflight == 0)
					? a->inflight == 0
					: a->last_used < b->last_used)
					oldest = i;
			}
			auth_ratelimit_remove(rl, oldest);
		}
		rl->entries = xreallocarray(rl->entries, rl->n + 1, sizeof(*rl->entries));
		e = &rl->entries[rl->n++];
		memset(e, 0, sizeof(*e));
		e->key = xstrdup(key);
	}
	e->inflight++;
	e->last_used = now;
}

void auth_ratelimit_done(struct auth_ratelimit *rl, const char *key, enum auth_attempt result,
			 const char *address, int64_t now)
{
	struct auth_ratelimit_entry *e = auth_ratelimit_find(rl, key, now);
	if (e == NULL)
		return; /* forgotten meanwhile (the table was full) */
	if (e->inflight > 0)
		e->inflight--;
	e->last_used = now;
	if (result == AUTH_ATTEMPT_OK && rl->backoff_max_ms > 0) {
		e->failures = 0;
		e->level = 0;
		e->blocked_until = 0;
		if (address != NULL && *address != '\0' && !auth_ratelimit_known(e, address)) {
			snprintf(e->known[e->next_known], sizeof(e->known[0]), "%s", address);
			e->next_known = (e->next_known + 1) % AUTH_RATELIMIT_KNOWN;
		}
	} else if (result == AUTH_ATTEMPT_FAILED) {
		if (e->failures == 0)
			e->window_start = now;
		e->failures++;
		e->last_failure = now;
		if (e->failures >= rl->max_failures) {
			int64_t block = rl->window_ms;
			if (rl->backoff_max_ms > 0) {
				for (unsigned i = 0; i < e->level && block < rl->backoff_max_ms;
				     i++)
					block *= 2;
				if (block > rl->backoff_max_ms)
					block = rl->backoff_max_ms;
				if (block < rl->backoff_max_ms)
					e->level++;
				e->blocked_until = now + block;
			} else {
				e->blocked_until = e->window_start + block;
			}
			e->failures = 0;
		}
	}
	for (size_t i = 0; i < rl->n; i++) {
		if (&rl->entries[i] == e && auth_ratelimit_forgettable(e, now)) {
			auth_ratelimit_remove(rl, i);
			break;
		}
	}
}

/* True when s is an IPv4 or IPv6 address in text form. */
static bool auth_is_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

void auth_client_address(const char *peer, const char *forwarded_for, const struct acl *trusted,
			 char out[AUTH_ADDRESS_MAX + 1])
{
	snprintf(out, AUTH_ADDRESS_MAX + 1, "%s", peer != NULL ? peer : "");
	if (trusted == NULL || forwarded_for == NULL || peer == NULL ||
	    !acl_match_text(trusted, peer))
		return;
	/* From the right: each hop was added by the one after it, the last by our peer. */
	const char *end = forwarded_for + strlen(forwarded_for);
	while (end > forwarded_for) {
		const char *start = end;
		while (start > forwarded_for && start[-1] != ',')
			start--;
		const char *a = start, *b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		char hop[AUTH_ADDRESS_MAX + 1];
		if (b - a == 0 || b - a > AUTH_ADDRESS_MAX)
			return; /* not an address: trust nothing further left */
		memcpy(hop, a, (size_t)(b - a));
		hop[b - a] = '\0';
		if (!auth_is_address(hop))
			return;
		snprintf(out, AUTH_ADDRESS_MAX + 1, "%s", hop);
		if (!acl_match_text(trusted, hop))
			return; /* the rightmost hop we do not trust: the client */
		end = start > forwarded_for ? start - 1 : start;
	}
}
