/*
 * charset — conversion of mail text to UTF-8 (see charset.h). iconv does the
 * table work; this module decides which table, with what Japanese mail really
 * carries in mind, and repairs what iconv lets through:
 *
 *   label                      reading
 *   UTF-8, US-ASCII            as is when valid, else guessed (mislabelled 8-bit)
 *   ISO-2022-JP and CP5022x    iconv ISO-2022-JP, else ISO-2022-JP-2 (ESC ( I
 *                              katakana), else the CP50220 decoder (convert_jis_ms,
 *                              NEC/IBM rows, SO/SI), whichever has fewer bad bytes
 *   Shift_JIS and aliases      CP932 (glibc's SJIS maps 0x5C to YEN SIGN)
 *   EUC-JP and aliases         EUC-JP, else EUC-JP-MS
 *   any other label            iconv through GMime's alias table
 *   none or unknown to iconv   guessed (convert_8bit_guess)
 *
 * Not for: finding the charset of a part or a word (the callers do that).
 */
#include "mime/charset.h"

#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "common/unconst.h"
#include "common/xalloc.h"

static const char replacement_char[] = "\xEF\xBF\xBD"; /* U+FFFD */

size_t charset_add_utf8_lossy(struct strbuf *b, const char *in, size_t len)
{
	size_t bad = 0;
	while (len > 0) {
		const gchar *end;
		if (g_utf8_validate(in, (gssize)len, &end)) {
			strbuf_add(b, in, len);
			break;
		}
		size_t good = (size_t)(end - in);
		strbuf_add(b, in, good);
		in += good;
		len -= good;
		/* g_utf8_validate stops at NUL too; a NUL byte is dropped, anything else replaced.
		 */
		if (*in != '\0') {
			strbuf_add(b, replacement_char, 3);
			bad++;
		}
		in++;
		len--;
	}
	return bad;
}

/*
 * Converts len bytes in charset code (an iconv name) to UTF-8 appended to out,
 * each unconvertible byte as U+FFFD. Returns the number of bad bytes, or -1 when
 * iconv does not know the charset (out unchanged).
 */
static long convert_iconv(struct strbuf *out, const char *code, const char *in, size_t len)
{
	iconv_t cd = iconv_open("UTF-8", code);
	if (cd == (iconv_t)-1)
		return -1;
	long bad = 0;
	size_t mark = out->len;
	char *inp = unconst(in); /* iconv(3) takes char ** but only reads the input */
	size_t inleft = len;
	while (inleft > 0) {
		strbuf_reserve(out, inleft * 3 + 16);
		char *outp = out->p + out->len;
		size_t outleft = out->cap - out->len - 1;
		size_t rc = iconv(cd, &inp, &inleft, &outp, &outleft);
		int err = errno;
		out->len = (size_t)(outp - out->p);
		out->p[out->len] = '\0';
		if (rc != (size_t)-1 || err == E2BIG)
			continue;
		/* EILSEQ: skip one byte; EINVAL: the input ends inside a character. */
		strbuf_add(out, replacement_char, 3);
		bad++;
		if (err == EINVAL) {
			bad += (long)inleft - 1;
			break;
		}
		inp++;
		inleft--;
	}
	/* Flush a stateful decoder (ISO-2022-JP) back to its initial state. */
	strbuf_reserve(out, 16);
	char *outp = out->p + out->len;
	size_t outleft = out->cap - out->len - 1;
	iconv(cd, NULL, NULL, &outp, &outleft);
	out->len = (size_t)(outp - out->p);
	out->p[out->len] = '\0';
	iconv_close(cd);
	/*
	 * iconv's output is not trusted: glibc folds odd labels ("u=tf-8") into real
	 * names and its UTF-8 decoder passes code points above U+10FFFF through.
	 */
	if (!g_utf8_validate(out->p + mark, (gssize)(out->len - mark), NULL)) {
		size_t n = out->len - mark;
		char *copy = xmalloc(n);
		memcpy(copy, out->p + mark, n);
		strbuf_truncate(out, mark);
		bad += (long)charset_add_utf8_lossy(out, copy, n);
		free(copy);
	}
	return bad;
}

/*
 * Converts with the first of two iconv names that decodes cleanly, else with
 * the one that had fewer bad bytes. Returns the bad byte count or -1 (unknown).
 */
static long convert_try2(struct strbuf *out, const char *first, const char *second, const char *in,
			 size_t len)
{
	size_t mark = out->len;
	long bad = convert_iconv(out, first, in, len);
	if (bad == 0 || second == NULL)
		return bad;
	struct strbuf alt = STRBUF_INIT;
	long bad2 = convert_iconv(&alt, second, in, len);
	if (bad2 >= 0 && (bad < 0 || bad2 < bad)) {
		strbuf_truncate(out, mark);
		strbuf_add(out, alt.p, alt.len);
		bad = bad2;
	}
	strbuf_free(&alt);
	return bad;
}

/*
 * ISO-2022-JP as Windows writes it (CP50220/CP50221): JIS X 0208 rows including
 * the NEC and IBM extension rows, and half-width katakana. Each double-byte JIS
 * code is moved to its Shift_JIS position and the result decoded as CP932, which
 * holds the same extensions. Returns the bad byte count.
 */
static long convert_jis_ms(struct strbuf *out, const char *in, size_t len)
{
	enum { JIS_ASCII, JIS_KANJI, JIS_KANA } mode = JIS_ASCII;
	bool shift_out = false;
	struct strbuf sjis = STRBUF_INIT;
	long bad = 0;
	const unsigned char *s = (const unsigned char *)in;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c == 0x1B) {
			if (i + 2 < len && s[i + 1] == '$' &&
			    (s[i + 2] == 'B' || s[i + 2] == '@')) {
				mode = JIS_KANJI;
				i += 2;
			} else if (i + 2 < len && s[i + 1] == '(' &&
				   (s[i + 2] == 'B' || s[i + 2] == 'J')) {
				mode = JIS_ASCII;
				i += 2;
			} else if (i + 2 < len && s[i + 1] == '(' && s[i + 2] == 'I') {
				mode = JIS_KANA;
				i += 2;
			} else {
				strbuf_addc(&sjis, '?');
				bad++;
			}
			continue;
		}
		if (c == 0x0E || c == 0x0F) { /* SO/SI: the katakana shift of CP50222 */
			shift_out = c == 0x0E;
			continue;
		}
		if (c == '\r' || c == '\n') {
			mode = JIS_ASCII;
			strbuf_addc(&sjis, (char)c);
			continue;
		}
		if (c >= 0x80) {
			strbuf_addc(&sjis, '?');
			bad++;
			continue;
		}
		if ((mode == JIS_KANA || shift_out) && c >= 0x21 && c <= 0x5F) {
			strbuf_addc(&sjis, (char)(c + 0x80));
			continue;
		}
		if (mode == JIS_KANJI && c >= 0x21 && c <= 0x7E) {
			if (i + 1 >= len || s[i + 1] < 0x21 || s[i + 1] > 0x7E) {
				strbuf_addc(&sjis, '?');
				bad++;
				continue;
			}
			unsigned j1 = c, j2 = s[++i];
			unsigned s1 = ((j1 + 1) >> 1) + (j1 <= 0x5E ? 0x70 : 0xB0);
			unsigned s2 = j2 + ((j1 & 1) ? (j2 >= 0x60 ? 0x20 : 0x1F) : 0x7E);
			strbuf_addc(&sjis, (char)s1);
			strbuf_addc(&sjis, (char)s2);
			continue;
		}
		strbuf_addc(&sjis, (char)c);
	}
	size_t mark = out->len;
	long rc = sjis.len ? convert_iconv(out, "CP932", sjis.p, sjis.len) : 0;
	if (rc < 0) {
		strbuf_truncate(out, mark);
		rc = (long)charset_add_utf8_lossy(out, sjis.p, sjis.len);
	}
	strbuf_free(&sjis);
	return bad + rc;
}

/*
 * An iconv reading of ISO-2022-JP text, each ESC, SO or SI byte in its output
 * counted as bad. Those never stand in decoded text, yet glibc's ISO-2022-JP
 * passes an escape sequence it does not know through as it is when it stands in
 * ASCII mode — ESC ( I, the JIS X 0201 katakana set Windows mailers send as
 * CP50221 allows — and both glibc readers pass the SO/SI katakana shift
 * (CP50222) through without an error. Returns the bad count or -1 (unknown).
 */
static long convert_iconv_jis(struct strbuf *out, const char *code, const char *in, size_t len)
{
	size_t mark = out->len;
	long bad = convert_iconv(out, code, in, len);
	if (bad < 0)
		return bad;
	for (size_t i = mark; i < out->len; i++)
		if (out->p[i] == 0x1B || out->p[i] == 0x0E || out->p[i] == 0x0F)
			bad++;
	return bad;
}

/*
 * ISO-2022-JP and what Windows writes under that name. Readers in order of
 * preference, the first clean one wins, else the one with the fewest bad bytes:
 * plain ISO-2022-JP (it maps a few symbols, WAVE DASH ..., the standard way);
 * glibc's ISO-2022-JP-2, which adds ESC ( I half-width katakana with the same
 * mappings; the CP50220 decoder (convert_jis_ms), which also knows the NEC and
 * IBM rows and the SO/SI shift.
 */
static long convert_iso2022jp(struct strbuf *out, const char *in, size_t len)
{
	size_t mark = out->len;
	long bad = convert_iconv_jis(out, "ISO-2022-JP", in, len);
	for (int reader = 0; reader < 2 && bad != 0; reader++) {
		struct strbuf alt = STRBUF_INIT;
		long bad2 = reader == 0 ? convert_iconv_jis(&alt, "ISO-2022-JP-2", in, len)
					: convert_jis_ms(&alt, in, len);
		if (bad2 >= 0 && (bad < 0 || bad2 < bad)) {
			strbuf_truncate(out, mark);
			strbuf_add(out, alt.p, alt.len);
			bad = bad2;
		}
		strbuf_free(&alt);
	}
	return bad;
}

enum charset_kind {
	CS_UNKNOWN,
	CS_UTF8,
	CS_ASCII,
	CS_ISO2022JP,
	CS_SJIS,
	CS_EUCJP,
	CS_OTHER,
};

static enum charset_kind charset_classify(const char *cs)
{
	static const struct {
		const char *name;
		enum charset_kind kind;
	} names[] = {
	    {"utf-8", CS_UTF8},
	    {"utf8", CS_UTF8},
	    {"us-ascii", CS_ASCII},
	    {"ascii", CS_ASCII},
	    {"iso-2022-jp", CS_ISO2022JP},
	    {"iso2022jp", CS_ISO2022JP},
	    {"csiso2022jp", CS_ISO2022JP},
	    {"iso-2022-jp-1", CS_ISO2022JP},
	    {"iso-2022-jp-ms", CS_ISO2022JP},
	    {"cp50220", CS_ISO2022JP},
	    {"cp50221", CS_ISO2022JP},
	    {"cp50222", CS_ISO2022JP},
	    {"shift_jis", CS_SJIS},
	    {"shift-jis", CS_SJIS},
	    {"sjis", CS_SJIS},
	    {"x-sjis", CS_SJIS},
	    {"ms_kanji", CS_SJIS},
	    {"csshiftjis", CS_SJIS},
	    {"windows-31j", CS_SJIS},
	    {"cp932", CS_SJIS},
	    {"ms932", CS_SJIS},
	    {"x-ms-cp932", CS_SJIS},
	    {"euc-jp", CS_EUCJP},
	    {"eucjp", CS_EUCJP},
	    {"x-euc-jp", CS_EUCJP},
	    {"x-euc", CS_EUCJP},
	    {"ujis", CS_EUCJP},
	    {"cseucpkdfmtjapanese", CS_EUCJP},
	    {"cp51932", CS_EUCJP},
	    {"eucjp-ms", CS_EUCJP},
	    {"euc-jp-ms", CS_EUCJP},
	};
	if (cs == NULL || *cs == '\0')
		return CS_UNKNOWN;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (g_ascii_strcasecmp(cs, names[i].name) == 0)
			return names[i].kind;
	return CS_OTHER;
}

static long convert_8bit_guess(struct strbuf *out, const char *in, size_t len);

/*
 * Appends len bytes labelled charset (may be NULL or unknown) to out as UTF-8.
 * Unknown labels fall back to guessing, as for unlabelled 8-bit text.
 */
void charset_to_utf8(struct strbuf *out, const char *charset, const char *in, size_t len)
{
	long bad = -1;
	switch (charset_classify(charset)) {
	case CS_UTF8:
	case CS_ASCII:
		/* A mislabelled 8-bit Japanese word is more likely than a broken UTF-8 one. */
		if (g_utf8_validate(in, (gssize)len, NULL))
			strbuf_add(out, in, len);
		else
			convert_8bit_guess(out, in, len);
		return;
	case CS_ISO2022JP:
		bad = convert_iso2022jp(out, in, len);
		break;
	case CS_SJIS:
		/* glibc's SJIS maps 0x5C to YEN SIGN; senders mean CP932. */
		bad = convert_iconv(out, "CP932", in, len);
		break;
	case CS_EUCJP:
		bad = convert_try2(out, "EUC-JP", "EUC-JP-MS", in, len);
		break;
	case CS_OTHER: {
		const char *name = g_mime_charset_iconv_name(charset);
		bad = convert_iconv(out, name ? name : charset, in, len);
		break;
	}
	case CS_UNKNOWN:
		break;
	}
	if (bad < 0)
		convert_8bit_guess(out, in, len);
}

static bool has_byte_range(const char *in, size_t len, unsigned char lo, unsigned char hi)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)in[i] >= lo && (unsigned char)in[i] <= hi)
			return true;
	return false;
}

/* Counts half-width katakana (U+FF61..U+FF9F), rare in real headers but what EUC-JP
 * text turns into when misread as Shift_JIS. */
static size_t count_halfwidth_kana(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i + 2 < len; i++) {
		unsigned char a = (unsigned char)s[i], b = (unsigned char)s[i + 1];
		if (a == 0xEF && (b == 0xBD || b == 0xBE)) {
			unsigned cp = ((a & 0x0Fu) << 12) | ((b & 0x3Fu) << 6) |
				      ((unsigned char)s[i + 2] & 0x3Fu);
			if (cp >= 0xFF61 && cp <= 0xFF9F)
				n++;
		}
	}
	return n;
}

/*
 * Text with no charset label: UTF-8 if it is valid UTF-8, ISO-2022-JP if it
 * carries its escapes, else whichever of Shift_JIS (CP932) and EUC-JP decodes
 * with fewer errors (EUC-JP wins a tie when the Shift_JIS reading is half-width
 * katakana). Returns the bad byte count.
 */
static long convert_8bit_guess(struct strbuf *out, const char *in, size_t len)
{
	if (g_utf8_validate(in, (gssize)len, NULL) && memchr(in, 0x1B, len) == NULL) {
		strbuf_add(out, in, len);
		return 0;
	}
	if (!has_byte_range(in, len, 0x80, 0xFF) && memchr(in, 0x1B, len) != NULL)
		return convert_iso2022jp(out, in, len);
	if (g_utf8_validate(in, (gssize)len, NULL)) {
		strbuf_add(out, in, len);
		return 0;
	}
	struct strbuf sj = STRBUF_INIT, euc = STRBUF_INIT;
	long bad_sj = convert_iconv(&sj, "CP932", in, len);
	long bad_euc = convert_try2(&euc, "EUC-JP", "EUC-JP-MS", in, len);
	long bad;
	bool pick_euc;
	if (bad_sj < 0 || bad_euc < 0)
		pick_euc = bad_sj < 0 && bad_euc >= 0;
	else if (bad_euc != bad_sj)
		pick_euc = bad_euc < bad_sj;
	else
		pick_euc =
		    count_halfwidth_kana(sj.p, sj.len) > count_halfwidth_kana(euc.p, euc.len);
	if (pick_euc) {
		strbuf_add(out, euc.p, euc.len);
		bad = bad_euc;
	} else if (bad_sj >= 0) {
		strbuf_add(out, sj.p, sj.len);
		bad = bad_sj;
	} else {
		bad = (long)charset_add_utf8_lossy(out, in, len);
	}
	strbuf_free(&sj);
	strbuf_free(&euc);
	return bad;
}

void charset_guess_to_utf8(struct strbuf *out, const char *in, size_t len)
{
	convert_8bit_guess(out, in, len);
}
