/*
 * digest — the end user's notification digest: login-free link tokens, the
 * digest mail itself (MIME, Japanese and English), and the HTTP endpoints behind its
 * links (/d/{token}) and behind "send my digest now".
 *
 * Who gets a digest and when is manager/notify's business; it installs itself here
 * as the digest service (the key and a "send now" entry point) before the API starts.
 */
#ifndef LAZARET_DIGEST_H
#define LAZARET_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;

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

/* s with & < > " ' as HTML character references. New string (caller frees). */
char *digest_html_escape(const char *s);

/*
 * An unstructured header value (e.g. Subject) as RFC 2047 "B" encoded-words in UTF-8,
 * folded so that no line (with a header name of up to name_len characters) exceeds
 * 76 characters. Plain printable ASCII comes back unchanged. New string.
 */
char *digest_encode_header(const char *utf8, size_t name_len);

/* One message listed in a digest. Strings are borrowed. */
struct digest_entry {
	const char *recipient; /* the address it was sent to */
	const char *sender;    /* envelope sender, "" for <> */
	const char *from;      /* decoded From:, may be NULL */
	const char *subject;   /* decoded, may be NULL */
	const char *received;  /* received time, already in the reader's zone */
	bool has_score;
	double score;
	const char *release_url;  /* may be NULL: no link */
	const char *safelist_url; /* may be NULL: no link */
};

/* One digest mail. Strings are borrowed. */
struct digest_mail {
	enum digest_lang lang;
	const char *from;	      /* From: address */
	const char *to;		      /* To: (the first of the user's addresses) */
	const char *const *addresses; /* every address covered, for the introduction */
	size_t naddresses;
	const struct digest_entry *entries;
	size_t nentries;
	size_t not_listed;	/* new messages beyond max_entries */
	const char *portal_url; /* the web console (base_url), may be NULL */
	int64_t now_ms;		/* for Date: */
	int utc_offset_s;	/* the reader's offset from UTC at now_ms, for Date: */
	const char *hostname;	/* right side of the Message-ID */
};

/*
 * Builds the complete message (header and body, CRLF line ends): From, To, Subject
 * (RFC 2047), Date, Message-ID, MIME-Version, Auto-Submitted, and a
 * multipart/alternative body with text/plain and text/html, both UTF-8 in base64.
 * Every text that came from mail (subjects, senders) is escaped in the HTML. *out is
 * new (caller frees), *len its length. 0 or -EINVAL (no entries).
 */
int digest_build_mail(const struct digest_mail *m, char **out, size_t *len);

/* The subject line of a digest listing n messages, in lang (UTF-8, unencoded). */
char *digest_subject(enum digest_lang lang, size_t n);

/*
 * "Send a digest now" as the service does it: to the end user username (when not
 * NULL) covering addresses, else to whoever owns address (an end user with all of
 * their addresses, or the address alone). Runs the work elsewhere; must not block.
 * 0 when queued, or a negative errno.
 */
typedef int (*digest_send_now_fn)(void *arg, const char *username, const char *const *addresses,
				  size_t naddresses, const char *address);

struct digest_service {
	unsigned char key[DIGEST_KEY_LEN];
	digest_send_now_fn send_now; /* may be NULL: "send now" answers 503 */
	void *arg;
};

/*
 * Installs the process's digest service (copied); NULL removes it. The link
 * endpoints answer 503 while none is installed. Loop thread only.
 */
void digest_service_install(const struct digest_service *svc);

/*
 * Adds the digest endpoints to a's server: GET/POST /d/{token},
 * POST /api/v1/me/digest and POST /api/v1/digests/send. Called by api_start when
 * API_FEATURE_DIGEST is set.
 */
void digest_register(struct api *a);

#endif
