/*
 * digest_token — the signed login-free links of the end users' digests and
 * the key they are signed with.
 *
 * Links. A token names one message, one recipient, one action (release, or
 * safelist the sender), the page language, an expiry (the message's own) and a
 * random nonce, and carries an HMAC (libsodium crypto_auth) over all of it with the
 * manager's key (data_dir/digest.key). Nothing else is needed to use it: no login,
 * no lookup table. A release link is single use: its nonce goes into used_tokens
 * when it is used. A link moves through:
 *
 *   issued --digest_token_sign--> valid
 *   valid  --GET /d/{t}----------> valid (a confirmation page only: mail scanners
 *                                   fetch links, so GET never changes anything)
 *   valid  --POST /d/{t}---------> used (release: nonce recorded) / done (safelist)
 *   any    --clock past expiry---> expired (410); altered --> invalid (403)
 *
 * Not for: what a link shows or does (digest_pages), the mail that carries it
 * (digest_mail).
 */
#include "digest/digest_token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"

/* Token layout: version, action, lang, expiry (8, big-endian), nonce, id, rcpt length,
 * rcpt, then the tag. */
#define DIGEST_TOKEN_VERSION 1
#define DIGEST_TOKEN_FIXED   (3 + 8 + DIGEST_NONCE_LEN + 36 + 1)
#define DIGEST_TOKEN_BIN_MAX (DIGEST_TOKEN_FIXED + DIGEST_ADDRESS_MAX + DIGEST_MAC_LEN)

/* --- languages ------------------------------------------------------------ */

int digest_lang_parse(const char *s, enum digest_lang *out)
{
	if (s == NULL)
		return -EINVAL;
	if (strcasecmp(s, "ja") == 0) {
		*out = DIGEST_LANG_JA;
		return 0;
	}
	if (strcasecmp(s, "en") == 0) {
		*out = DIGEST_LANG_EN;
		return 0;
	}
	return -EINVAL;
}

const char *digest_lang_name(enum digest_lang l)
{
	return l == DIGEST_LANG_EN ? "en" : "ja";
}

/* --- key ------------------------------------------------------------------ */

static int digest_key_read(const char *path, unsigned char key[DIGEST_KEY_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	int rc = 0;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
	} else if (sb.st_size != DIGEST_KEY_LEN) {
		rc = -EINVAL;
	} else {
		ssize_t got = read(fd, key, DIGEST_KEY_LEN);
		if (got != DIGEST_KEY_LEN)
			rc = got < 0 ? -errno : -EINVAL;
	}
	close(fd);
	return rc;
}

/* Writes a new key file; -EEXIST when another process got there first. */
static int digest_key_create(const char *dir, const char *path, unsigned char key[DIGEST_KEY_LEN])
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	randombytes_buf(key, DIGEST_KEY_LEN);
	int rc = 0;
	if (write(fd, key, DIGEST_KEY_LEN) != DIGEST_KEY_LEN || fsync(fd) < 0)
		rc = errno != 0 ? -errno : -EIO;
	close(fd);
	if (rc < 0) {
		unlink(path);
		return rc;
	}
	/* The key must survive a crash with the links already mailed. */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	log_info("digest.key_created", "file=%s", path);
	return 0;
}

int digest_key_load(const char *dir, unsigned char key[DIGEST_KEY_LEN])
{
	if (sodium_init() < 0)
		panic("digest: libsodium cannot initialise");
	char *path = xasprintf("%s/%s", dir, DIGEST_KEY_FILE);
	int rc = digest_key_read(path, key);
	if (rc == -ENOENT) {
		rc = digest_key_create(dir, path, key);
		if (rc == -EEXIST)
			rc = digest_key_read(path, key);
	}
	if (rc == -EINVAL)
		log_error("digest.key_invalid", "file=%s size_expected=%d", path, DIGEST_KEY_LEN);
	free(path);
	return rc;
}

/* --- tokens --------------------------------------------------------------- */

bool digest_token_address_ok(const char *s, size_t len)
{
	if (len == 0 || len > DIGEST_ADDRESS_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f)
			return false;
	}
	return true;
}

char *digest_token_sign(const unsigned char key[DIGEST_KEY_LEN], struct digest_token *t)
{
	size_t rlen = strlen(t->rcpt);
	if (strlen(t->msg_id) != 36 || !digest_token_address_ok(t->rcpt, rlen))
		return NULL;
	unsigned char bin[DIGEST_TOKEN_BIN_MAX];
	unsigned char nonce[DIGEST_NONCE_LEN];
	size_t n = 0;
	randombytes_buf(nonce, sizeof(nonce));
	sodium_bin2hex(t->nonce, sizeof(t->nonce), nonce, sizeof(nonce));
	bin[n++] = DIGEST_TOKEN_VERSION;
	bin[n++] = (unsigned char)t->action;
	bin[n++] = (unsigned char)t->lang;
	uint64_t exp = (uint64_t)t->expires_ms;
	for (int i = 7; i >= 0; i--)
		bin[n++] = (unsigned char)(exp >> (8 * i));
	memcpy(bin + n, nonce, sizeof(nonce));
	n += sizeof(nonce);
	memcpy(bin + n, t->msg_id, 36);
	n += 36;
	bin[n++] = (unsigned char)rlen;
	memcpy(bin + n, t->rcpt, rlen);
	n += rlen;
	crypto_auth(bin + n, bin, n, key);
	n += DIGEST_MAC_LEN;
	size_t outlen = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = xmalloc(outlen);
	sodium_bin2base64(out, outlen, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

int digest_token_verify(const unsigned char key[DIGEST_KEY_LEN], const char *text, int64_t now,
			struct digest_token *out)
{
	unsigned char bin[DIGEST_TOKEN_BIN_MAX];
	size_t n = 0;
	if (text == NULL || strlen(text) > DIGEST_TOKEN_MAX)
		return -EBADMSG;
	if (sodium_base642bin(bin, sizeof(bin), text, strlen(text), NULL, &n, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return -EBADMSG;
	if (n < DIGEST_TOKEN_FIXED + 1 + DIGEST_MAC_LEN || bin[0] != DIGEST_TOKEN_VERSION)
		return -EBADMSG;
	size_t rlen = bin[DIGEST_TOKEN_FIXED - 1];
	size_t body = DIGEST_TOKEN_FIXED + rlen;
	if (n != body + DIGEST_MAC_LEN)
		return -EBADMSG;
	if (crypto_auth_verify(bin + body, bin, body, key) != 0)
		return -EBADMSG;
	/* Intact and ours: the fields were checked when it was made, check them anyway. */
	memset(out, 0, sizeof(*out));
	if (bin[1] != DIGEST_ACTION_RELEASE && bin[1] != DIGEST_ACTION_SAFELIST)
		return -EBADMSG;
	if (bin[2] != DIGEST_LANG_JA && bin[2] != DIGEST_LANG_EN)
		return -EBADMSG;
	out->action = (enum digest_action)bin[1];
	out->lang = (enum digest_lang)bin[2];
	uint64_t exp = 0;
	for (int i = 0; i < 8; i++)
		exp = (exp << 8) | bin[3 + i];
	out->expires_ms = (int64_t)exp;
	sodium_bin2hex(out->nonce, sizeof(out->nonce), bin + 11, DIGEST_NONCE_LEN);
	memcpy(out->msg_id, bin + 11 + DIGEST_NONCE_LEN, 36);
	out->msg_id[36] = '\0';
	memcpy(out->rcpt, bin + DIGEST_TOKEN_FIXED, rlen);
	out->rcpt[rlen] = '\0';
	if (!ids_valid(out->msg_id) || !digest_token_address_ok(out->rcpt, rlen))
		return -EBADMSG;
	if (now >= out->expires_ms)
		return -ETIME;
	return 0;
}
