/*
 * auth_totp — the second factor's building blocks: TOTP (RFC 6238: HMAC-SHA1,
 * 6 digits, 30 s steps, liboath) with its secret sealed for the store, the
 * otpauth:// URI and its QR code as SVG (libqrencode) for enrolment, single-use
 * recovery codes and the parser of what a user types. No I/O and no store:
 * api_users.c puts them together.
 */
#ifndef LAZARET_AUTH_TOTP_H
#define LAZARET_AUTH_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A TOTP secret's bytes (160 bits, as RFC 4226 recommends) and their base32 text. */
#define AUTH_TOTP_SECRET_BYTES 20
#define AUTH_TOTP_BASE32_LEN   32
#define AUTH_TOTP_STEP_S       30
#define AUTH_TOTP_DIGITS       6
/* Steps either side of now a code may come from (clocks drift, users type slowly). */
#define AUTH_TOTP_WINDOW 1
/* The key that seals secrets for the store. */
#define AUTH_TOTP_KEY_BYTES 32
/* A recovery code: 16 base32 characters (80 bits), shown as four groups of four. */
#define AUTH_RECOVERY_CHARS    16
#define AUTH_RECOVERY_TEXT_LEN 19
/* The longest input the code parser looks at. */
#define AUTH_CODE_INPUT_MAX 64

/* A new random key to seal secrets with. */
void auth_totp_key_new(unsigned char out[AUTH_TOTP_KEY_BYTES]);
/* A new random secret into out. */
void auth_totp_secret_new(unsigned char out[AUTH_TOTP_SECRET_BYTES]);
/* The base32 text (RFC 4648, no padding) of secret, into out. */
void auth_totp_base32(const unsigned char secret[AUTH_TOTP_SECRET_BYTES],
		      char out[AUTH_TOTP_BASE32_LEN + 1]);
/*
 * The otpauth://totp/ URI an authenticator app reads: label "issuer:account",
 * with secret (base32), issuer, algorithm, digits and period. New, caller frees.
 */
char *auth_totp_uri(const char *issuer, const char *account, const char *base32);
/*
 * An SVG image of text's QR code (error correction M, a 4-module quiet zone), or
 * NULL when text does not fit one. New, caller frees.
 */
char *auth_totp_qr_svg(const char *text);

/*
 * The code of secret for time step step (now_s / AUTH_TOTP_STEP_S), into out.
 * 0, or -EIO when liboath fails.
 */
int auth_totp_code(const unsigned char secret[AUTH_TOTP_SECRET_BYTES], int64_t step,
		   char out[AUTH_TOTP_DIGITS + 1]);
/*
 * Whether code (AUTH_TOTP_DIGITS digits) is secret's for a step within
 * AUTH_TOTP_WINDOW of now_ms's: 0 with *step the step it matched, -EACCES when it
 * matches none. Replays are the caller's to refuse (by the step).
 */
int auth_totp_verify(const unsigned char secret[AUTH_TOTP_SECRET_BYTES], int64_t now_ms,
		     const char *code, int64_t *step);

/*
 * Seals secret for the store: hex text of a random nonce and the
 * XChaCha20-Poly1305 ciphertext, bound to username (the additional data), so a
 * row copied to another account does not open. New, caller frees.
 */
char *auth_totp_seal(const unsigned char key[AUTH_TOTP_KEY_BYTES], const char *username,
		     const unsigned char secret[AUTH_TOTP_SECRET_BYTES]);
/* Opens what auth_totp_seal made for username: 0, or -EINVAL when it does not open. */
int auth_totp_open(const unsigned char key[AUTH_TOTP_KEY_BYTES], const char *username,
		   const char *sealed, unsigned char secret[AUTH_TOTP_SECRET_BYTES]);

/* A new recovery code, "abcd-efgh-ijkl-mnop" (base32 letters and digits, lower case). */
void auth_recovery_code_new(char out[AUTH_RECOVERY_TEXT_LEN + 1]);

/* What a user typed into the code field. */
enum auth_code_kind {
	AUTH_CODE_INVALID,  /* neither */
	AUTH_CODE_TOTP,	    /* out: the AUTH_TOTP_DIGITS digits */
	AUTH_CODE_RECOVERY, /* out: the AUTH_RECOVERY_CHARS characters, lower case */
};
/*
 * Parses input: spaces and hyphens anywhere are dropped (apps show "123 456",
 * recovery codes are shown grouped), letters fold to lower case. Exactly
 * AUTH_TOTP_DIGITS digits are a TOTP code; exactly AUTH_RECOVERY_CHARS base32
 * characters (a-z, 2-7) a recovery code; anything else, or input longer than
 * AUTH_CODE_INPUT_MAX, is invalid. out gets the normalized code (empty if invalid).
 */
enum auth_code_kind auth_code_parse(const char *input, char out[AUTH_RECOVERY_CHARS + 1]);

#endif
