/*
 * charset — text in a mail charset to UTF-8, as Japanese mail needs it: real-world
 * "Shift_JIS" is Windows CP932, text labelled ISO-2022-JP often carries the NEC/IBM
 * extension rows and half-width katakana of CP50220/CP50221, raw 8-bit text comes
 * in UTF-8, Shift_JIS or EUC-JP with no label at all, and every undecodable byte
 * becomes U+FFFD rather than break the UTF-8 output.
 *
 * Every function appends to a strbuf and always leaves valid UTF-8 there; none
 * fails. No state between calls (iconv descriptors are opened per call), so any
 * number of threads may convert at once. Charset labels not listed here go to
 * iconv through GMime's alias table, which needs g_mime_init() first.
 * Not for: RFC 2047 words or RFC 2231 parameters (mimeword does those), or
 * converting from UTF-8 to anything.
 */
#ifndef LAZARET_MIME_CHARSET_H
#define LAZARET_MIME_CHARSET_H

#include <stddef.h>

#include "common/strbuf.h"

/*
 * Appends len bytes of text labelled charset (a MIME charset name; NULL or ""
 * when there is no label) to out as UTF-8. A missing or unknown label is guessed
 * as charset_guess_to_utf8() does; a UTF-8 or US-ASCII label on bytes that are not
 * UTF-8 too (a mislabelled Japanese word is more likely than broken UTF-8).
 */
void charset_to_utf8(struct strbuf *out, const char *charset, const char *in, size_t len);

/*
 * Appends len bytes of unlabelled text to out as UTF-8: kept when it is UTF-8
 * without escapes, read as ISO-2022-JP when it is 7-bit with escapes, else as
 * whichever of Shift_JIS (CP932) and EUC-JP decodes with fewer errors (EUC-JP wins
 * a tie when the Shift_JIS reading is half-width katakana).
 */
void charset_guess_to_utf8(struct strbuf *out, const char *in, size_t len);

/*
 * Appends in as UTF-8, each byte that is not part of a valid UTF-8 sequence as
 * U+FFFD and each NUL byte dropped. Returns the number of bytes replaced.
 */
size_t charset_add_utf8_lossy(struct strbuf *out, const char *in, size_t len);

#endif
