/*
 * auth_totp — TOTP codes, sealed secrets, the enrolment QR code, recovery codes
 * and the code parser (see auth_totp.h). Not for: deciding who needs a second
 * factor, rate limits, storage or replies (api_users.c).
 *
 * Why these choices: liboath computes and checks the codes (RFC 6238 with the
 * parameters every authenticator app defaults to: SHA-1, 6 digits, 30 s), so
 * this file holds no HMAC truncation of its own. A secret is stored sealed
 * (XChaCha20-Poly1305, libsodium) with a key kept among the store's secrets:
 * the users table alone, in a dump or a report, gives no usable secret.
 * Recovery codes carry 80 random bits, so a fast hash (BLAKE2b, auth_token_hash)
 * is enough to keep them; the store never sees one in clear.
 */
#include "api/auth_totp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <liboath/oath.h>
#include <qrencode.h>
#include <sodium.h>

#include "api/auth.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

/* RFC 4648 base32, lower case (recovery codes). */
static const char auth_totp_b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static pthread_once_t auth_totp_once = PTHREAD_ONCE_INIT;

static void auth_totp_init_once(void)
{
	if (oath_init() != OATH_OK)
		panic("auth_totp: liboath cannot initialise");
}

static void auth_totp_init(void)
{
	auth_init();
	pthread_once(&auth_totp_once, auth_totp_init_once);
}

void auth_totp_key_new(unsigned char out[AUTH_TOTP_KEY_BYTES])
{
	auth_totp_init();
	randombytes_buf(out, AUTH_TOTP_KEY_BYTES);
}

void auth_totp_secret_new(unsigned char out[AUTH_TOTP_SECRET_BYTES])
{
	auth_totp_init();
	randombytes_buf(out, AUTH_TOTP_SECRET_BYTES);
}

void auth_totp_base32(const unsigned char secret[AUTH_TOTP_SECRET_BYTES],
		      char out[AUTH_TOTP_BASE32_LEN + 1])
{
	auth_totp_init();
	char *text = NULL;
	size_t len = 0;
	if (oath_base32_encode((const char *)secret, AUTH_TOTP_SECRET_BYTES, &text, &len) !=
		OATH_OK ||
	    len < AUTH_TOTP_BASE32_LEN)
		panic("auth_totp: cannot encode a secret in base32");
	/* 20 bytes are 32 characters exactly: no padding to drop */
	memcpy(out, text, AUTH_TOTP_BASE32_LEN);
	out[AUTH_TOTP_BASE32_LEN] = '\0';
	sodium_memzero(text, len);
	free(text);
}

/* Appends s percent-encoded (RFC 3986 unreserved characters stay). */
static void auth_totp_escape(struct strbuf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			strbuf_addc(b, (char)*p);
		else
			strbuf_printf(b, "%%%02X", *p);
	}
}

char *auth_totp_uri(const char *issuer, const char *account, const char *base32)
{
	struct strbuf b = STRBUF_INIT;
	strbuf_puts(&b, "otpauth://totp/");
	auth_totp_escape(&b, issuer);
	strbuf_addc(&b, ':');
	auth_totp_escape(&b, account);
	strbuf_puts(&b, "?secret=");
	strbuf_puts(&b, base32);
	strbuf_puts(&b, "&issuer=");
	auth_totp_escape(&b, issuer);
	strbuf_printf(&b, "&algorithm=SHA1&digits=%d&period=%d", AUTH_TOTP_DIGITS,
		      AUTH_TOTP_STEP_S);
	return strbuf_take(&b);
}

char *auth_totp_qr_svg(const char *text)
{
	QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	if (qr == NULL)
		return NULL;
	int quiet = 4, size = qr->width + 2 * quiet;
	struct strbuf b = STRBUF_INIT;
	strbuf_printf(&b,
		      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
		      "shape-rendering=\"crispEdges\"><rect width=\"%d\" height=\"%d\" "
		      "fill=\"#fff\"/><path fill=\"#000\" d=\"",
		      size, size, size, size);
	for (int y = 0; y < qr->width; y++) {
		for (int x = 0; x < qr->width; x++) {
			/* bit 0: dark module */
			if ((qr->data[y * qr->width + x] & 1) != 0)
				strbuf_printf(&b, "M%d %dh1v1h-1z", x + quiet, y + quiet);
		}
	}
	strbuf_puts(&b, "\"/></svg>");
	QRcode_free(qr);
	return strbuf_take(&b);
}

int auth_totp_code(const unsigned char secret[AUTH_TOTP_SECRET_BYTES], int64_t step,
		   char out[AUTH_TOTP_DIGITS + 1])
{
	auth_totp_init();
	int rc = oath_totp_generate((const char *)secret, AUTH_TOTP_SECRET_BYTES,
				    (time_t)(step * AUTH_TOTP_STEP_S), AUTH_TOTP_STEP_S, 0,
				    AUTH_TOTP_DIGITS, out);
	return rc == OATH_OK ? 0 : -EIO;
}

int auth_totp_verify(const unsigned char secret[AUTH_TOTP_SECRET_BYTES], int64_t now_ms,
		     const char *code, int64_t *step)
{
	auth_totp_init();
	if (code == NULL || strlen(code) != AUTH_TOTP_DIGITS)
		return -EACCES;
	int64_t now_s = now_ms / 1000;
	int pos = 0;
	uint64_t counter = 0;
	int rc = oath_totp_validate3((const char *)secret, AUTH_TOTP_SECRET_BYTES, (time_t)now_s,
				     AUTH_TOTP_STEP_S, 0, AUTH_TOTP_WINDOW, &pos, &counter, code);
	if (rc < 0)
		return -EACCES;
	*step = (int64_t)counter;
	return 0;
}

/* XChaCha20-Poly1305: nonce, then the ciphertext with its tag. */
#define AUTH_TOTP_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AUTH_TOTP_SEALED                                                                           \
	(AUTH_TOTP_NONCE + AUTH_TOTP_SECRET_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)

char *auth_totp_seal(const unsigned char key[AUTH_TOTP_KEY_BYTES], const char *username,
		     const unsigned char secret[AUTH_TOTP_SECRET_BYTES])
{
	auth_totp_init();
	unsigned char raw[AUTH_TOTP_SEALED];
	unsigned long long clen = 0;
	randombytes_buf(raw, AUTH_TOTP_NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    raw + AUTH_TOTP_NONCE, &clen, secret, AUTH_TOTP_SECRET_BYTES,
	    (const unsigned char *)username, strlen(username), NULL, raw, key);
	char *out = xmalloc(2 * AUTH_TOTP_SEALED + 1);
	sodium_bin2hex(out, 2 * AUTH_TOTP_SEALED + 1, raw, AUTH_TOTP_NONCE + (size_t)clen);
	return out;
}

int auth_totp_open(const unsigned char key[AUTH_TOTP_KEY_BYTES], const char *username,
		   const char *sealed, unsigned char secret[AUTH_TOTP_SECRET_BYTES])
{
	auth_totp_init();
	unsigned char raw[AUTH_TOTP_SEALED];
	size_t len = 0;
	if (sealed == NULL || strlen(sealed) != 2 * AUTH_TOTP_SEALED ||
	    sodium_hex2bin(raw, sizeof(raw), sealed, strlen(sealed), NULL, &len, NULL) != 0 ||
	    len != AUTH_TOTP_SEALED)
		return -EINVAL;
	unsigned long long mlen = 0;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		secret, &mlen, NULL, raw + AUTH_TOTP_NONCE, AUTH_TOTP_SEALED - AUTH_TOTP_NONCE,
		(const unsigned char *)username, strlen(username), raw, key) != 0 ||
	    mlen != AUTH_TOTP_SECRET_BYTES)
		return -EINVAL;
	return 0;
}

void auth_recovery_code_new(char out[AUTH_RECOVERY_TEXT_LEN + 1])
{
	auth_totp_init();
	size_t k = 0;
	for (int i = 0; i < AUTH_RECOVERY_CHARS; i++) {
		if (i > 0 && i % 4 == 0)
			out[k++] = '-';
		out[k++] = auth_totp_b32[randombytes_uniform(32)];
	}
	out[k] = '\0';
}

enum auth_code_kind auth_code_parse(const char *input, char out[AUTH_RECOVERY_CHARS + 1])
{
	out[0] = '\0';
	if (input == NULL || strlen(input) > AUTH_CODE_INPUT_MAX)
		return AUTH_CODE_INVALID;
	char buf[AUTH_RECOVERY_CHARS + 1];
	size_t n = 0, digits = 0;
	for (const unsigned char *p = (const unsigned char *)input; *p != '\0'; p++) {
		unsigned char c = *p;
		if (c == ' ' || c == '-')
			continue;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		bool digit = c >= '0' && c <= '9';
		if (!digit && !(c >= 'a' && c <= 'z'))
			return AUTH_CODE_INVALID;
		if (n == AUTH_RECOVERY_CHARS)
			return AUTH_CODE_INVALID;
		digits += digit;
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	if (n == AUTH_TOTP_DIGITS && digits == n) {
		memcpy(out, buf, n + 1);
		return AUTH_CODE_TOTP;
	}
	if (n != AUTH_RECOVERY_CHARS)
		return AUTH_CODE_INVALID;
	for (size_t i = 0; i < n; i++) {
		if (strchr(auth_totp_b32, buf[i]) == NULL)
			return AUTH_CODE_INVALID;
	}
	memcpy(out, buf, n + 1);
	return AUTH_CODE_RECOVERY;
}
