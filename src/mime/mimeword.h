/*
 * mimeword — header text and MIME parameters as mail really writes them, decoded
 * to UTF-8: RFC 2047 encoded words ("=?ISO-2022-JP?B?...?=") wherever they stand,
 * raw 8-bit or ISO-2022-JP text between them, and RFC 2231 parameters
 * (filename*=, filename*0*=, with charset and language) beside the RFC 2047 words
 * and raw bytes that Outlook and Japanese mailers put in plain name= parameters.
 * The bytes go to UTF-8 through charset.h.
 *
 * Nothing fails: what cannot be read stays as text or becomes U+FFFD. No state
 * between calls. Needs g_mime_init() first (charset labels go through GMime).
 * Not for: splitting messages or headers (GMime and msgmeta do that), or encoding.
 */
#ifndef LAZARET_MIME_MIMEWORD_H
#define LAZARET_MIME_MIMEWORD_H

#include <stddef.h>

#include "common/strbuf.h"

/* Longest charset label in an encoded word or RFC 2231 value we take seriously. */
#define MIMEWORD_MAX_CHARSET_LEN 64
/* RFC 2231 continuation sections (name*0 .. name*N) of one parameter we assemble. */
#define MIMEWORD_MAX_PARAM_SECTIONS 64
/* Repeats of one parameter (a second filename=) kept as other names of the part. */
#define MIMEWORD_MAX_PARAM_REPEATS 8

/*
 * Decodes n bytes of header text (unfolded or not) to UTF-8 appended to out.
 * Encoded words are recognised wherever they stand (also inside quotes and
 * without surrounding space, as broken mailers write them). Whitespace between
 * two encoded words is dropped, and the bytes of adjacent words in the same
 * charset are joined before conversion, so a character split across two words
 * survives.
 */
void mimeword_decode(struct strbuf *out, const char *s, size_t n);

/*
 * A raw header value unfolded (CR and LF dropped) and trimmed of spaces and tabs,
 * as a new string the caller frees; its length in *len_out.
 */
char *mimeword_unfold(const char *raw, size_t *len_out);

/*
 * One raw header value unfolded (CR and LF dropped), trimmed and decoded as
 * mimeword_decode() does. Returns a new string the caller frees; "" for NULL.
 */
char *mimeword_decode_header(const char *raw);

/* Names of one part besides its chosen one, each owned, non-empty and different. */
struct mimeword_names {
	char **v;
	size_t n;
};

/*
 * Adds name (taking ownership) to l unless it is empty, equal to primary (may be
 * NULL) or already there; then it is freed.
 */
void mimeword_names_add(struct mimeword_names *l, char *name, const char *primary);

/*
 * The decoded value of parameter want (lower case, e.g. "filename") in the raw
 * header value raw ("attachment; filename*=UTF-8''a.pdf"), or NULL when raw is
 * NULL or has no such parameter. An RFC 2231 value (name*= or name*0...) wins
 * over a plain name=; the first occurrence wins over repeats. With alts, what a
 * client reading the parameter differently would show is added there: the plain
 * name= beside an RFC 2231 one, and every repeat. Returns a new string the
 * caller frees.
 */
char *mimeword_param(const char *raw, const char *want, struct mimeword_names *alts);

#endif
