/*
 * digest_token — the login-free links of the end users' digests: the
 * manager's link key (data_dir/digest.key) and the signed tokens that name one
 * message, one recipient, one action, the page language and an expiry.
 *
 * Not for: the digest mail (digest_mail), the pages behind the links
 * (digest_pages), who gets a digest when (digest/notify).
 */
#ifndef LAZARET_DIGEST_TOKEN_H
#define LAZARET_DIGEST_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libsodium crypto_auth (HMAC-SHA-512-256) key and tag sizes. */
#define DIGEST_KEY_LEN 32
#define DIGEST_MAC_LEN 32
/* The key file in the data directory, created on first start (mode 0600). */
#define DIGEST_KEY_FILE "digest.key"
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets, so an
 * address is at most 254; its length fits the token's one length byte. */
#define DIGEST_ADDRESS_MAX 254
/* Random bytes that make each token unique; as hex in the used_tokens table. */
#define DIGEST_NONCE_LEN 16
/* A token as text is never longer than this (base64url of the fields and the tag). */
#define DIGEST_TOKEN_MAX 512
/* A message that never expires (delete_after = 0): its links expire after this. */
#define DIGEST_LINK_DEFAULT_TTL_MS (30LL * 24 * 3600 * 1000)

enum digest_action {
	DIGEST_ACTION_RELEASE = 1,  /* release the message to this recipient (single use) */
	DIGEST_ACTION_SAFELIST = 2, /* add the message's sender to the recipient's safelist */
};

enum digest_lang {
	DIGEST_LANG_JA = 0,
	DIGEST_LANG_EN = 1,
};

/* "ja" or "en" (any case) into *out: 0 or -EINVAL. */
int digest_lang_parse(const char *s, enum digest_lang *out);
const char *digest_lang_name(enum digest_lang l);

/*
 * Reads dir/digest.key into key, or creates it with DIGEST_KEY_LEN random bytes
 * (mode 0600, fsync'd) when it does not exist. 0, -EINVAL for a file of the wrong
 * size, or a negative errno.
 */
int digest_key_load(const char *dir, unsigned char key[DIGEST_KEY_LEN]);

/* What a link may do: bound to one message, one recipient, one action, one expiry. */
struct digest_token {
	enum digest_action action;
	enum digest_lang lang; /* language of the pages the link shows */
	int64_t expires_ms;    /* Unix ms */
	char msg_id[37];       /* UUID text */
	char rcpt[DIGEST_ADDRESS_MAX + 1];
	char nonce[2 * DIGEST_NONCE_LEN + 1]; /* hex; filled by digest_token_sign */
};

/*
 * Signs t (a fresh random nonce is written into t->nonce) and returns the token as a
 * new URL-safe string (caller frees). NULL when a field does not fit (a recipient
 * longer than DIGEST_ADDRESS_MAX, an id that is not 36 characters).
 */
char *digest_token_sign(const unsigned char key[DIGEST_KEY_LEN], struct digest_token *t);

/*
 * Checks text's tag and fields. 0 with *out filled; -EBADMSG when it is malformed or
 * the tag does not match (tampered, or another key); -ETIME when it is intact but
 * expired at now (*out is filled, so the page can be in the right language).
 */
int digest_token_verify(const unsigned char key[DIGEST_KEY_LEN], const char *text, int64_t now,
			struct digest_token *out);

/*
 * True when s (len bytes) may be a token's recipient: 1 to DIGEST_ADDRESS_MAX
 * bytes, no spaces, no control characters.
 */
bool digest_token_address_ok(const char *s, size_t len);

#endif
