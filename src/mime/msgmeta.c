/*
 * msgmeta — reads what the manager shows and indexes about one quarantined message:
 * decoded address and subject headers, the top-level header list, the attachments
 * (name, type, decoded size) and the gateway's verdict and score (see msgmeta.h);
 * and, on request, one message's body text or one attachment's decoded content.
 * One walk over the parts numbers the attachments for every caller.
 *
 * GMime splits the message into parts and parses addresses and dates. Header text
 * and file names are decoded here, not by GMime, because Japanese mail needs more
 * than a generic decoder gives: real-world "Shift_JIS" is Windows CP932, text
 * labelled ISO-2022-JP often carries the NEC/IBM extensions of CP50220 (①, ㈱),
 * raw 8-bit headers come in UTF-8, Shift_JIS or EUC-JP with no label at all, and
 * every undecodable byte must become U+FFFD rather than break the UTF-8 output.
 *
 * Broken input never fails: whatever could be read is filled in. The module keeps
 * no state between calls except GMime's one-time initialisation and a read-only
 * parser-options object, so any number of threads may parse at once.
 * Not for: rewriting, re-encoding or storing messages.
 */
#include "mime/msgmeta.h"

#include <errno.h>
#include <iconv.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "common/unconst.h"
#include "common/xalloc.h"

/* Nesting of multiparts and forwarded messages we follow; deeper parts are ignored. */
#define MSGMETA_MAX_DEPTH 32
/* Attachments recorded per message; a mail bomb of tiny parts stops being listed. */
#define MSGMETA_MAX_ATTACHMENTS 1024
/* Top-level header fields recorded; more is abuse, not mail. */
#define MSGMETA_MAX_HEADERS 1024
/* RFC 2231 continuation sections (name*0 .. name*N) of one parameter we assemble. */
#define MSGMETA_MAX_PARAM_SECTIONS 64
/* Repeats of one parameter (a second filename=) kept as other names of the part. */
#define MSGMETA_MAX_PARAM_REPEATS 8
/* Longest charset label in an encoded word or RFC 2231 value we take seriously. */
#define MSGMETA_MAX_CHARSET_LEN 64

static pthread_once_t msgmeta_once = PTHREAD_ONCE_INIT;
static GMimeParserOptions *msgmeta_options;

/* ---- growable UTF-8 output ------------------------------------------------------ */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t n)
{
	if (n == 0) {
		if (b->p)
			b->p[b->len] = '\0';
		return;
	}
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

/* Returns the string (never NULL) and leaves b empty; the caller frees it. */
static char *buf_take(struct buf *b)
{
	char *s = b->p ? b->p : xstrdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

static const char replacement_char[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Appends in as UTF-8, each invalid byte replaced by U+FFFD; returns the count replaced. */
static size_t buf_add_utf8_lossy(struct buf *b, const char *in, size_t len)
{
	size_t bad = 0;
	while (len > 0) {
		const gchar *end;
		if (g_utf8_validate(in, (gssize)len, &end)) {
			buf_add(b, in, len);
			break;
		}
		size_t good = (size_t)(end - in);
		buf_add(b, in, good);
		in += good;
		len -= good;
		/* g_utf8_validate stops at NUL too; a NUL byte is dropped, anything else replaced.
		 */
		if (*in != '\0') {
			buf_add(b, replacement_char, 3);
			bad++;
		}
		in++;
		len--;
	}
	return bad;
}

/* ---- charset conversion --------------------------------------------------------- */

/*
 * Converts len bytes in charset code (an iconv name) to UTF-8 appended to out,
 * each unconvertible byte as U+FFFD. Returns the number of bad bytes, or -1 when
 * iconv does not know the charset (out unchanged).
 */
static long convert_iconv(struct buf *out, const char *code, const char *in, size_t len)
{
	iconv_t cd = iconv_open("UTF-8", code);
	if (cd == (iconv_t)-1)
		return -1;
	long bad = 0;
	size_t mark = out->len;
	char *inp = unconst(in); /* iconv(3) takes char ** but only reads the input */
	size_t inleft = len;
	while (inleft > 0) {
		buf_reserve(out, inleft * 3 + 16);
		char *outp = out->p + out->len;
		size_t outleft = out->cap - out->len - 1;
		size_t rc = iconv(cd, &inp, &inleft, &outp, &outleft);
		int err = errno;
		out->len = (size_t)(outp - out->p);
		out->p[out->len] = '\0';
		if (rc != (size_t)-1 || err == E2BIG)
			continue;
		/* EILSEQ: skip one byte; EINVAL: the input ends inside a character. */
		buf_add(out, replacement_char, 3);
		bad++;
		if (err == EINVAL) {
			bad += (long)inleft - 1;
			break;
		}
		inp++;
		inleft--;
	}
	/* Flush a stateful decoder (ISO-2022-JP) back to its initial state. */
	buf_reserve(out, 16);
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
		out->len = mark;
		bad += (long)buf_add_utf8_lossy(out, copy, n);
		free(copy);
	}
	return bad;
}

/*
 * Converts with the first of two iconv names that decodes cleanly, else with
 * the one that had fewer bad bytes. Returns the bad byte count or -1 (unknown).
 */
static long convert_try2(struct buf *out, const char *first, const char *second, const char *in,
			 size_t len)
{
	size_t mark = out->len;
	long bad = convert_iconv(out, first, in, len);
	if (bad == 0 || second == NULL)
		return bad;
	struct buf alt = {0};
	long bad2 = convert_iconv(&alt, second, in, len);
	if (bad2 >= 0 && (bad < 0 || bad2 < bad)) {
		out->len = mark;
		buf_add(out, alt.p, alt.len);
		bad = bad2;
	}
	free(alt.p);
	return bad;
}

/*
 * ISO-2022-JP as Windows writes it (CP50220/CP50221): JIS X 0208 rows including
 * the NEC and IBM extension rows, and half-width katakana. Each double-byte JIS
 * code is moved to its Shift_JIS position and the result decoded as CP932, which
 * holds the same extensions. Returns the bad byte count.
 */
static long convert_jis_ms(struct buf *out, const char *in, size_t len)
{
	enum { JIS_ASCII, JIS_KANJI, JIS_KANA } mode = JIS_ASCII;
	bool shift_out = false;
	struct buf sjis = {0};
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
				buf_addc(&sjis, '?');
				bad++;
			}
			continue;
		}
		if (c == 0x0E || c == 0x0F) { /* SO/SI: katakana shift of CP50222 */
			shift_out = c == 0x0E;
			continue;
		}
		if (c == '\r' || c == '\n') {
			mode = JIS_ASCII;
			buf_addc(&sjis, (char)c);
			continue;
		}
		if (c >= 0x80) {
			buf_addc(&sjis, '?');
			bad++;
			continue;
		}
		if ((mode == JIS_KANA || shift_out) && c >= 0x21 && c <= 0x5F) {
			buf_addc(&sjis, (char)(c + 0x80));
			continue;
		}
		if (mode == JIS_KANJI && c >= 0x21 && c <= 0x7E) {
			if (i + 1 >= len || s[i + 1] < 0x21 || s[i + 1] > 0x7E) {
				buf_addc(&sjis, '?');
				bad++;
				continue;
			}
			unsigned j1 = c, j2 = s[++i];
			unsigned s1 = ((j1 + 1) >> 1) + (j1 <= 0x5E ? 0x70 : 0xB0);
			unsigned s2 = j2 + ((j1 & 1) ? (j2 >= 0x60 ? 0x20 : 0x1F) : 0x7E);
			buf_addc(&sjis, (char)s1);
			buf_addc(&sjis, (char)s2);
			continue;
		}
		buf_addc(&sjis, (char)c);
	}
	size_t mark = out->len;
	long rc = sjis.len ? convert_iconv(out, "CP932", sjis.p, sjis.len) : 0;
	if (rc < 0) {
		out->len = mark;
		rc = (long)buf_add_utf8_lossy(out, sjis.p, sjis.len);
	}
	free(sjis.p);
	return bad + rc;
}

static long convert_iso2022jp(struct buf *out, const char *in, size_t len)
{
	/* Plain ISO-2022-JP first: it maps a few symbols (WAVE DASH ...) the standard way. */
	size_t mark = out->len;
	long bad = convert_iconv(out, "ISO-2022-JP", in, len);
	if (bad == 0)
		return 0;
	struct buf alt = {0};
	long bad2 = convert_jis_ms(&alt, in, len);
	if (bad < 0 || bad2 < bad) {
		out->len = mark;
		buf_add(out, alt.p, alt.len);
		bad = bad2;
	}
	free(alt.p);
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

static long convert_8bit_guess(struct buf *out, const char *in, size_t len);

/*
 * Appends len bytes labelled charset (may be NULL or unknown) to out as UTF-8.
 * Unknown labels fall back to guessing, as for unlabelled 8-bit text.
 */
static void convert_charset(struct buf *out, const char *charset, const char *in, size_t len)
{
	long bad = -1;
	switch (charset_classify(charset)) {
	case CS_UTF8:
	case CS_ASCII:
		/* A mislabelled 8-bit Japanese word is more likely than a broken UTF-8 one. */
		if (g_utf8_validate(in, (gssize)len, NULL))
			buf_add(out, in, len);
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
static long convert_8bit_guess(struct buf *out, const char *in, size_t len)
{
	if (g_utf8_validate(in, (gssize)len, NULL) && memchr(in, 0x1B, len) == NULL) {
		buf_add(out, in, len);
		return 0;
	}
	if (!has_byte_range(in, len, 0x80, 0xFF) && memchr(in, 0x1B, len) != NULL)
		return convert_iso2022jp(out, in, len);
	if (g_utf8_validate(in, (gssize)len, NULL)) {
		buf_add(out, in, len);
		return 0;
	}
	struct buf sj = {0}, euc = {0};
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
		buf_add(out, euc.p, euc.len);
		bad = bad_euc;
	} else if (bad_sj >= 0) {
		buf_add(out, sj.p, sj.len);
		bad = bad_sj;
	} else {
		bad = (long)buf_add_utf8_lossy(out, in, len);
	}
	free(sj.p);
	free(euc.p);
	return bad;
}

/* ---- RFC 2047 header text --------------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Base64 as mailers really write it: stray characters and missing padding tolerated. */
static void decode_b(struct buf *out, const char *s, size_t n)
{
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i], v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else if (c == '=')
			break;
		else
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_addc(out, (char)((acc >> bits) & 0xFF));
		}
	}
}

static void decode_q(struct buf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (s[i] == '_') {
			buf_addc(out, ' ');
		} else if (s[i] == '=' && i + 2 < n &&
			   (h1 = hexval((unsigned char)s[i + 1])) >= 0 &&
			   (h2 = hexval((unsigned char)s[i + 2])) >= 0) {
			buf_addc(out, (char)(h1 * 16 + h2));
			i += 2;
		} else {
			buf_addc(out, s[i]);
		}
	}
}

struct encoded_word {
	const char *charset; /* points into the input; charset_len bytes */
	size_t charset_len;
	char encoding; /* 'B' or 'Q' */
	const char *text;
	size_t text_len;
	size_t total_len; /* from "=?" to after "?=" */
};

/* Recognises an encoded word starting at s ("=?cs?e?text?="); false when s is not one. */
static bool parse_encoded_word(const char *s, const char *end, struct encoded_word *w)
{
	if (end - s < 8 || s[0] != '=' || s[1] != '?')
		return false;
	const char *p = s + 2, *cs = p;
	while (p < end && *p != '?' && (unsigned char)*p > ' ' && p - cs <= MSGMETA_MAX_CHARSET_LEN)
		p++;
	if (p >= end || *p != '?' || p == cs || end - p < 4 || p - cs > MSGMETA_MAX_CHARSET_LEN)
		return false;
	w->charset = cs;
	w->charset_len = (size_t)(p - cs);
	/* RFC 2231 allows "charset*lang"; the language is of no use here. */
	const char *star = memchr(cs, '*', w->charset_len);
	if (star)
		w->charset_len = (size_t)(star - cs);
	char e = (char)g_ascii_toupper(p[1]);
	if ((e != 'B' && e != 'Q') || p[2] != '?')
		return false;
	w->encoding = e;
	w->text = p + 3;
	const char *q = w->text;
	while (q + 1 < end && !(q[0] == '?' && q[1] == '='))
		q++;
	if (q + 1 >= end)
		return false;
	w->text_len = (size_t)(q - w->text);
	w->total_len = (size_t)(q + 2 - s);
	return true;
}

/* Appends plain (not encoded) header text, which may be raw 8-bit or raw ISO-2022-JP. */
static void add_plain(struct buf *out, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (!has_byte_range(s, n, 0x80, 0xFF) && memchr(s, 0x1B, n) == NULL) {
		/* NUL cannot occur here: the caller's string ends at the first one. */
		buf_add(out, s, n);
		return;
	}
	convert_8bit_guess(out, s, n);
}

/*
 * Decodes header text of n bytes (unfolded or not) to UTF-8 appended to out.
 * Encoded words are recognised wherever they stand (also inside quotes and
 * without surrounding space, as broken mailers write them). Whitespace between
 * two encoded words is dropped, and the bytes of adjacent words in the same
 * charset are joined before conversion, so a character split across two words
 * survives.
 */
static void decode_text(struct buf *out, const char *s, size_t n)
{
	const char *p = s, *end = s + n, *plain = s;
	struct buf raw = {0};
	char charset[MSGMETA_MAX_CHARSET_LEN + 1] = "";
	bool in_run = false;

	while (p < end) {
		struct encoded_word w;
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			break;
		if (!parse_encoded_word(eq, end, &w)) {
			p = eq + 1;
			continue;
		}
		/* Text between the previous word and this one: dropped when only whitespace. */
		bool only_space = in_run;
		for (const char *t = plain; t < eq && only_space; t++)
			only_space = *t == ' ' || *t == '\t' || *t == '\r' || *t == '\n';
		bool same_cs = in_run && only_space && strlen(charset) == w.charset_len &&
			       g_ascii_strncasecmp(charset, w.charset, w.charset_len) == 0;
		if (in_run && !same_cs) {
			convert_charset(out, charset, raw.p ? raw.p : "", raw.len);
			raw.len = 0;
			in_run = false;
		}
		if (!only_space)
			add_plain(out, plain, (size_t)(eq - plain));
		if (!same_cs) {
			memcpy(charset, w.charset, w.charset_len);
			charset[w.charset_len] = '\0';
		}
		if (w.encoding == 'B')
			decode_b(&raw, w.text, w.text_len);
		else
			decode_q(&raw, w.text, w.text_len);
		in_run = true;
		p = eq + w.total_len;
		plain = p;
	}
	if (in_run)
		convert_charset(out, charset, raw.p ? raw.p : "", raw.len);
	add_plain(out, plain, (size_t)(end - plain));
	free(raw.p);
}

/* Unfolds (drops CR and LF) and trims a raw header value into a new NUL-free copy. */
static char *unfold(const char *raw, size_t *len_out)
{
	size_t n = strlen(raw);
	char *u = xmalloc(n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (raw[i] != '\r' && raw[i] != '\n')
			u[k++] = raw[i];
	size_t start = 0;
	while (start < k && (u[start] == ' ' || u[start] == '\t'))
		start++;
	while (k > start && (u[k - 1] == ' ' || u[k - 1] == '\t'))
		k--;
	memmove(u, u + start, k - start);
	k -= start;
	u[k] = '\0';
	*len_out = k;
	return u;
}

static void msgmeta_init_once(void)
{
	static const char *fallback[] = {"UTF-8", "ISO-2022-JP", "CP932", "EUC-JP", NULL};
	g_mime_init();
	msgmeta_options = g_mime_parser_options_new();
	g_mime_parser_options_set_rfc2047_compliance_mode(msgmeta_options,
							  GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_parameter_compliance_mode(msgmeta_options,
							    GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_address_compliance_mode(msgmeta_options,
							  GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_fallback_charsets(msgmeta_options, fallback);
}

void msgmeta_init(void)
{
	pthread_once(&msgmeta_once, msgmeta_init_once);
}

char *msgmeta_decode_header(const char *raw)
{
	msgmeta_init();
	if (raw == NULL)
		return xstrdup("");
	size_t n;
	char *u = unfold(raw, &n);
	struct buf out = {0};
	decode_text(&out, u, n);
	free(u);
	return buf_take(&out);
}

/* ---- MIME parameters (file names) --------------------------------------------------- */

static void add_pct_decoded(struct buf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (s[i] == '%' && i + 2 < n && (h1 = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (h2 = hexval((unsigned char)s[i + 2])) >= 0) {
			buf_addc(out, (char)(h1 * 16 + h2));
			i += 2;
		} else {
			buf_addc(out, s[i]);
		}
	}
}

/* One parameter section as found: name*N (plain or extended) or name / name*. */
struct param_section {
	bool present;
	bool extended;
	char *value; /* unquoted, raw bytes */
	size_t len;
};

struct param_search {
	const char *want; /* lower-case parameter name, e.g. "filename" */
	size_t want_len;
	struct param_section plain;			      /* name=   */
	struct param_section ext;			      /* name*=  */
	struct param_section sec[MSGMETA_MAX_PARAM_SECTIONS]; /* name*N= / name*N*= */
	/* Later name= and name*= after the first: mail clients differ in which they show. */
	struct param_section repeats[MSGMETA_MAX_PARAM_REPEATS];
	size_t nrepeats;
};

static void param_store(struct param_section *ps, bool extended, const char *v, size_t n)
{
	if (ps->present)
		return; /* the first occurrence wins */
	ps->present = true;
	ps->extended = extended;
	ps->value = xstrndup(v, n);
	ps->len = n;
}

static void param_offer(struct param_search *ps, const char *name, size_t nlen, const char *v,
			size_t vlen)
{
	if (nlen < ps->want_len || g_ascii_strncasecmp(name, ps->want, ps->want_len) != 0)
		return;
	const char *rest = name + ps->want_len;
	size_t rlen = nlen - ps->want_len;
	if (rlen == 0 || (rlen == 1 && rest[0] == '*')) {
		struct param_section *first = rlen == 0 ? &ps->plain : &ps->ext;
		if (first->present && ps->nrepeats < MSGMETA_MAX_PARAM_REPEATS)
			first = &ps->repeats[ps->nrepeats++];
		param_store(first, rlen == 1, v, vlen);
		return;
	}
	if (rest[0] != '*')
		return;
	size_t i = 1, idx = 0;
	while (i < rlen && rest[i] >= '0' && rest[i] <= '9' && idx < MSGMETA_MAX_PARAM_SECTIONS) {
		idx = idx * 10 + (size_t)(rest[i] - '0');
		i++;
	}
	if (i == 1 || idx >= MSGMETA_MAX_PARAM_SECTIONS)
		return;
	bool extended = i < rlen && rest[i] == '*';
	if (i + (extended ? 1 : 0) != rlen)
		return;
	param_store(&ps->sec[idx], extended, v, vlen);
}

/* Walks "type; a=b; c="d"" and offers each parameter to ps. Loose: unquoted values run
 * to the next ';', quotes may be unterminated. */
static void param_scan(const char *s, struct param_search *ps)
{
	const char *p = strchr(s, ';');
	struct buf v = {0};
	while (p && *p) {
		while (*p == ';' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *name = p;
		while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t')
			p++;
		size_t nlen = (size_t)(p - name);
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '=') {
			while (*p && *p != ';')
				p++;
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		v.len = 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				/* A backslash after a high byte is the second byte of a raw
				 * Shift_JIS character (表 is 0x95 0x5C), not an escape. */
				bool after_8bit = p > s && (unsigned char)p[-1] >= 0x81;
				if (*p == '\\' && p[1] && !after_8bit)
					p++;
				if (*p != '\r' && *p != '\n')
					buf_addc(&v, *p);
				p++;
			}
			if (*p == '"')
				p++;
			while (*p && *p != ';')
				p++;
		} else {
			const char *vs = p;
			while (*p && *p != ';')
				p++;
			const char *ve = p;
			while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r' ||
					   ve[-1] == '\n'))
				ve--;
			for (const char *t = vs; t < ve; t++)
				if (*t != '\r' && *t != '\n')
					buf_addc(&v, *t);
		}
		if (nlen > 0)
			param_offer(ps, name, nlen, v.p ? v.p : "", v.len);
	}
	free(v.p);
}

/* Splits an RFC 2231 extended value "charset'lang'%XX..." into charset and bytes. */
static void add_ext_value(struct buf *bytes, char *charset, size_t cslen, const char *v, size_t n)
{
	const char *q1 = memchr(v, '\'', n);
	const char *q2 = q1 ? memchr(q1 + 1, '\'', (size_t)(v + n - q1 - 1)) : NULL;
	if (q1 && q2) {
		size_t l = (size_t)(q1 - v);
		if (l >= cslen)
			l = cslen - 1;
		memcpy(charset, v, l);
		charset[l] = '\0';
		add_pct_decoded(bytes, q2 + 1, (size_t)(v + n - q2 - 1));
	} else {
		add_pct_decoded(bytes, v, n);
	}
}

/* Returns the decoded value of the parameter searched, or NULL when absent. */
static char *param_result(struct param_search *ps)
{
	char charset[MSGMETA_MAX_CHARSET_LEN + 1] = "";
	struct buf bytes = {0}, out = {0};
	if (ps->ext.present) {
		add_ext_value(&bytes, charset, sizeof(charset), ps->ext.value, ps->ext.len);
		convert_charset(&out, charset[0] ? charset : NULL, bytes.p ? bytes.p : "",
				bytes.len);
	} else if (ps->sec[0].present) {
		bool any_ext = false;
		for (size_t i = 0; i < MSGMETA_MAX_PARAM_SECTIONS && ps->sec[i].present; i++) {
			struct param_section *sec = &ps->sec[i];
			if (i == 0 && sec->extended)
				add_ext_value(&bytes, charset, sizeof(charset), sec->value,
					      sec->len);
			else if (sec->extended)
				add_pct_decoded(&bytes, sec->value, sec->len);
			else
				buf_add(&bytes, sec->value, sec->len);
			any_ext = any_ext || sec->extended;
		}
		if (any_ext)
			convert_charset(&out, charset[0] ? charset : NULL, bytes.p ? bytes.p : "",
					bytes.len);
		else
			decode_text(&out, bytes.p ? bytes.p : "", bytes.len);
	} else if (ps->plain.present) {
		/* Outlook and many Japanese mailers put RFC 2047 words (or raw 8-bit) here. */
		decode_text(&out, ps->plain.value, ps->plain.len);
	}
	free(bytes.p);
	return out.p ? buf_take(&out)
		     : (ps->ext.present || ps->sec[0].present || ps->plain.present ? xstrdup("")
										   : NULL);
}

/* One name=/name*= value decoded alone (RFC 2231 with its charset, else RFC 2047 or raw). */
static char *param_section_decode(const struct param_section *sec)
{
	struct buf bytes = {0}, out = {0};
	if (sec->extended) {
		char charset[MSGMETA_MAX_CHARSET_LEN + 1] = "";
		add_ext_value(&bytes, charset, sizeof(charset), sec->value, sec->len);
		convert_charset(&out, charset[0] ? charset : NULL, bytes.p ? bytes.p : "",
				bytes.len);
	} else {
		decode_text(&out, sec->value, sec->len);
	}
	free(bytes.p);
	return out.p ? buf_take(&out) : xstrdup("");
}

/* The names a part carries besides its chosen one, each new and non-empty. */
struct name_list {
	char **v;
	size_t n;
};

static void name_list_add(struct name_list *l, char *name, const char *primary)
{
	bool dup = name[0] == '\0' || (primary != NULL && strcmp(name, primary) == 0);
	for (size_t i = 0; i < l->n && !dup; i++)
		dup = strcmp(l->v[i], name) == 0;
	if (dup) {
		free(name);
		return;
	}
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = name;
}

/*
 * Adds to alts what a client that reads the parameter differently would show: the
 * plain name= beside an RFC 2231 one that won, and every later repeat.
 */
static void param_alternatives(const struct param_search *ps, const char *primary,
			       struct name_list *alts)
{
	if (ps->plain.present && (ps->ext.present || ps->sec[0].present))
		name_list_add(alts, param_section_decode(&ps->plain), primary);
	for (size_t i = 0; i < ps->nrepeats; i++)
		name_list_add(alts, param_section_decode(&ps->repeats[i]), primary);
}

static void param_search_free(struct param_search *ps)
{
	free(ps->plain.value);
	free(ps->ext.value);
	for (size_t i = 0; i < ps->nrepeats; i++)
		free(ps->repeats[i].value);
	for (size_t i = 0; i < MSGMETA_MAX_PARAM_SECTIONS; i++)
		free(ps->sec[i].value);
}

/*
 * The decoded parameter want of header value raw, or NULL. With alts, the other
 * readings of it (param_alternatives) are added there.
 */
static char *param_get(const char *raw, const char *want, struct name_list *alts)
{
	if (raw == NULL)
		return NULL;
	struct param_search *ps = xcalloc(1, sizeof(*ps));
	ps->want = want;
	ps->want_len = strlen(want);
	param_scan(raw, ps);
	char *v = param_result(ps);
	if (alts != NULL)
		param_alternatives(ps, v, alts);
	param_search_free(ps);
	free(ps);
	return v;
}

/* ---- message walk ------------------------------------------------------------------- */

static const char *raw_header(GMimeObject *obj, const char *name)
{
	GMimeHeaderList *list = g_mime_object_get_header_list(obj);
	if (list == NULL)
		return NULL;
	GMimeHeader *h = g_mime_header_list_get_header(list, name);
	return h ? g_mime_header_get_raw_value(h) : NULL;
}

static bool disposition_is_attachment(const char *raw)
{
	if (raw == NULL)
		return false;
	while (*raw == ' ' || *raw == '\t' || *raw == '\r' || *raw == '\n')
		raw++;
	return g_ascii_strncasecmp(raw, "attachment", 10) == 0 &&
	       (raw[10] == '\0' || raw[10] == ';' || g_ascii_isspace(raw[10]));
}

static char *mime_type_of(GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	char *t = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	struct buf out = {0};
	buf_add_utf8_lossy(&out, t ? t : "application/octet-stream",
			   strlen(t ? t : "application/octet-stream"));
	g_free(t);
	char *s = buf_take(&out);
	for (char *c = s; *c; c++)
		*c = g_ascii_tolower(*c);
	return s;
}

/*
 * Writes what an attachment holds to to: a part's content transfer-decoded
 * (base64, quoted-printable, uuencode), an attached message as its bytes.
 */
static void write_decoded(GMimeObject *obj, GMimeStream *to)
{
	if (GMIME_IS_PART(obj)) {
		GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(obj));
		if (content)
			g_mime_data_wrapper_write_to_stream(content, to);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner)
			g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, to);
	}
}

static uint64_t decoded_size(GMimeObject *obj)
{
	GMimeStream *null = g_mime_stream_null_new();
	write_decoded(obj, null);
	uint64_t n = (uint64_t)GMIME_STREAM_NULL(null)->written;
	g_object_unref(null);
	return n;
}

/*
 * The attachment walk. It visits the parts of a message depth first, in the
 * order they appear, and hands every part that counts as an attachment to the
 * visitor: this order is the numbering of msgmeta.attachments, and every user of
 * attachments (listing, extracting) goes through this one walk so the numbers agree.
 * At most MSGMETA_MAX_ATTACHMENTS are handed over.
 */
struct walk_visitor {
	/* Gets the decoded file name (may be NULL; the visitor owns it). False: stop. */
	bool (*attachment)(struct walk_visitor *v, char *filename, GMimeObject *obj);
	/*
	 * Gets every other name of a part (owned): the name of a named part that is
	 * no attachment, and the names an attachment carries besides its filename.
	 * May be NULL.
	 */
	void (*other_name)(struct walk_visitor *v, char *name);
	size_t seen; /* attachments handed over so far */
	bool stopped;
	bool incomplete; /* parts were left unvisited (too deep, too many) */
};

/* Decides whether a leaf (or an attached message) is an attachment, and hands it over. */
static void consider_leaf(struct walk_visitor *v, GMimeObject *obj)
{
	if (v->seen >= MSGMETA_MAX_ATTACHMENTS) {
		v->stopped = true;
		v->incomplete = true;
		return;
	}
	const char *disp = raw_header(obj, "Content-Disposition");
	struct name_list alts = {0};
	struct name_list *want_alts = v->other_name != NULL ? &alts : NULL;
	char *filename = param_get(disp, "filename", want_alts);
	bool from_disposition = filename != NULL;
	char *ct_name = param_get(raw_header(obj, "Content-Type"), "name", want_alts);
	if (filename == NULL) {
		filename = ct_name;
	} else if (ct_name != NULL && want_alts != NULL) {
		/* Content-Type's name beside a disposition filename: some clients show it. */
		name_list_add(&alts, ct_name, filename);
	} else {
		free(ct_name);
	}
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	bool is_text = ct && g_mime_content_type_is_type(ct, "text", "*");
	if (disposition_is_attachment(disp) || from_disposition ||
	    (filename != NULL && (!is_text || GMIME_IS_MESSAGE_PART(obj)))) {
		v->seen++;
		if (!v->attachment(v, filename, obj))
			v->stopped = true;
	} else if (filename != NULL && v->other_name != NULL) {
		v->other_name(v, filename);
	} else {
		free(filename);
	}
	for (size_t i = 0; i < alts.n; i++) {
		if (v->other_name != NULL)
			v->other_name(v, alts.v[i]);
		else
			free(alts.v[i]);
	}
	free(alts.v);
}

static void walk(struct walk_visitor *v, GMimeObject *obj, int depth)
{
	if (obj == NULL || v->stopped)
		return;
	if (depth > MSGMETA_MAX_DEPTH) {
		v->incomplete = true;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && !v->stopped; i++)
			walk(v, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		consider_leaf(v, obj);
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner && !v->stopped)
			walk(v, g_mime_message_get_mime_part(inner), depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		consider_leaf(v, obj);
	}
}

/* The visitor of msgmeta_parse: records each attachment's name, type and size. */
struct walk_collect {
	struct walk_visitor v; /* first: the walk's pointer is this struct's */
	struct msgmeta *m;
};

static bool collect_attachment(struct walk_visitor *v, char *filename, GMimeObject *obj)
{
	struct msgmeta *m = ((struct walk_collect *)v)->m;
	m->attachments =
	    xreallocarray(m->attachments, m->nattachments + 1, sizeof(*m->attachments));
	struct msgmeta_attachment *a = &m->attachments[m->nattachments++];
	a->filename = filename;
	a->content_type = mime_type_of(obj);
	a->size = decoded_size(obj);
	return true;
}

static void collect_other_name(struct walk_visitor *v, char *name)
{
	struct msgmeta *m = ((struct walk_collect *)v)->m;
	/* Bounded like the attachments, and by the repeats a part may hold. */
	if (m->nother_names >= MSGMETA_MAX_ATTACHMENTS) {
		v->incomplete = true;
		free(name);
		return;
	}
	m->other_names =
	    xreallocarray(m->other_names, m->nother_names + 1, sizeof(*m->other_names));
	m->other_names[m->nother_names++] = name;
}

/* The visitor of msgmeta_attachment_data: finds attachment number want. */
struct walk_find {
	struct walk_visitor v; /* first, as above */
	size_t want;
	GMimeObject *found; /* borrowed from the parsed message */
};

static bool find_attachment(struct walk_visitor *v, char *filename, GMimeObject *obj)
{
	struct walk_find *f = (struct walk_find *)v;
	free(filename);
	if (v->seen - 1 != f->want)
		return true;
	f->found = obj;
	return false;
}

/* ---- verdict ------------------------------------------------------------------------ */

static const char *header_value(const struct msgmeta *m, const char *name)
{
	for (size_t i = 0; i < m->nheaders; i++)
		if (g_ascii_strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

/* Reads a finite decimal number at s (C locale); false when there is none. */
static bool parse_number(const char *s, double *out, const char **end)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (!(g_ascii_isdigit(*s) ||
	      ((*s == '-' || *s == '+' || *s == '.') && (g_ascii_isdigit(s[1]) || s[1] == '.'))))
		return false;
	char *e;
	double d = g_ascii_strtod(s, &e);
	if (e == s || !isfinite(d))
		return false;
	*out = d;
	if (end)
		*end = e;
	return true;
}

static bool starts_word(const char *s, const char *word)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(word);
	return g_ascii_strncasecmp(s, word, n) == 0 && !g_ascii_isalnum(s[n]);
}

/* Finds "key=" as a whole word in s and reads its number. */
static bool find_keyed_number(const char *s, const char *key, double *out)
{
	size_t kn = strlen(key);
	for (const char *p = s; (p = strstr(p, key)) != NULL; p += kn)
		if ((p == s || !g_ascii_isalnum(p[-1])) && parse_number(p + kn, out, NULL))
			return true;
	return false;
}

/* SpamAssassin "Yes, score=7.2 required=5.0 tests=..." (older: hits=). */
static void verdict_spam_status(const char *v, const char **verdict, bool *has, double *score)
{
	if (starts_word(v, "yes"))
		*verdict = "spam";
	else if (starts_word(v, "no"))
		*verdict = "suspect";
	*has = find_keyed_number(v, "score=", score) || find_keyed_number(v, "hits=", score);
}

/* rspamd "default: True [15.00 / 15.00]; SYMBOL(1.0)[...]". */
static void verdict_spamd_result(const char *v, const char **verdict, bool *has, double *score)
{
	const char *colon = strchr(v, ':');
	const char *bracket = strchr(v, '[');
	const char *w = colon && (bracket == NULL || colon < bracket) ? colon + 1 : v;
	if (starts_word(w, "true"))
		*verdict = "spam";
	else if (starts_word(w, "false"))
		*verdict = "suspect";
	*has = bracket && parse_number(bracket + 1, score, NULL);
}

static void read_verdict(struct msgmeta *m)
{
	const char *verdict = NULL;
	bool has = false;
	double score = 0;
	const char *v;

	if ((v = header_value(m, "X-Lazaret-Verdict")) != NULL) {
		if (starts_word(v, "spam"))
			verdict = "spam";
		else if (starts_word(v, "suspect"))
			verdict = "suspect";
	}
	if ((v = header_value(m, "X-Lazaret-Score")) != NULL)
		has = parse_number(v, &score, NULL);

	const char *other_verdict = NULL;
	bool other_has = false;
	double other_score = 0;
	if ((v = header_value(m, "X-Spam-Status")) != NULL)
		verdict_spam_status(v, &other_verdict, &other_has, &other_score);
	if ((v = header_value(m, "X-Spamd-Result")) != NULL && (!other_verdict || !other_has)) {
		const char *rv = NULL;
		bool rh = false;
		double rs = 0;
		verdict_spamd_result(v, &rv, &rh, &rs);
		if (!other_verdict)
			other_verdict = rv;
		if (!other_has && rh) {
			other_has = true;
			other_score = rs;
		}
	}
	if (!other_verdict && (v = header_value(m, "X-Spam-Flag")) != NULL) {
		if (starts_word(v, "yes") || starts_word(v, "true"))
			other_verdict = "spam";
		else if (starts_word(v, "no") || starts_word(v, "false"))
			other_verdict = "suspect";
	}
	if (!other_has && (v = header_value(m, "X-Spam-Score")) != NULL)
		other_has = parse_number(v, &other_score, NULL);

	if (!verdict)
		verdict = other_verdict;
	if (!has && other_has) {
		has = true;
		score = other_score;
	}
	m->verdict = verdict ? xstrdup(verdict) : NULL;
	m->has_score = has;
	m->score = has ? score : 0;
	if ((v = header_value(m, "X-Lazaret-Gateway")) != NULL && *v)
		m->gateway = xstrdup(v);
	if ((v = header_value(m, "X-Lazaret-Client-Address")) != NULL && *v)
		m->client_address = xstrdup(v);
}

/* ---- top level ---------------------------------------------------------------------- */

static char *utf8_copy(const char *s)
{
	struct buf out = {0};
	buf_add_utf8_lossy(&out, s, strlen(s));
	return buf_take(&out);
}

/* The first mailbox's address, searching inside groups. */
static const char *first_addr(InternetAddressList *list, int depth)
{
	int n = list ? internet_address_list_length(list) : 0;
	for (int i = 0; i < n && depth < MSGMETA_MAX_DEPTH; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *a =
			    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			if (a && strchr(a, '@'))
				return a;
		} else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			const char *a = first_addr(
			    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
			    depth + 1);
			if (a)
				return a;
		}
	}
	return NULL;
}

/* The address in <...>, or the first word with an '@', when GMime found no mailbox. */
static char *addr_by_hand(const char *raw)
{
	const char *lt = strrchr(raw, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt && memchr(lt, '@', (size_t)(gt - lt)))
		return xstrndup(lt + 1, (size_t)(gt - lt - 1));
	const char *at = strchr(raw, '@');
	if (at == NULL)
		return NULL;
	const char *b = at, *e = at;
	while (b > raw && !strchr(" \t\r\n<>\",;:()", b[-1]))
		b--;
	while (*e && !strchr(" \t\r\n<>\",;:()", *e))
		e++;
	return b < at && e > at + 1 ? xstrndup(b, (size_t)(e - b)) : NULL;
}

/* Uses the list GMime already parsed for msg when there is one (not owned). */
static void read_from_addr(struct msgmeta *m, GMimeMessage *msg, const char *raw)
{
	InternetAddressList *parsed = msg ? g_mime_message_get_from(msg) : NULL;
	InternetAddressList *list =
	    parsed ? NULL : internet_address_list_parse(msgmeta_options, raw);
	const char *a = first_addr(parsed ? parsed : list, 0);
	char *found = a ? xstrdup(a) : addr_by_hand(raw);
	if (list)
		g_object_unref(list);
	if (found) {
		m->from_addr = utf8_copy(found);
		free(found);
	}
}

static void read_message_id(struct msgmeta *m, const char *raw)
{
	char *id = g_mime_utils_decode_message_id(raw);
	if (id && *id) {
		m->message_id = utf8_copy(id);
	} else {
		size_t n;
		char *u = unfold(raw, &n);
		char *s = u;
		if (*s == '<')
			s++;
		char *gt = strchr(s, '>');
		if (gt)
			*gt = '\0';
		if (*s)
			m->message_id = utf8_copy(s);
		free(u);
	}
	g_free(id);
}

static void read_date(struct msgmeta *m, GMimeMessage *msg, const char *raw)
{
	/* GMime parsed the date already when it built msg; that copy is not ours. */
	GDateTime *dt = msg ? g_mime_message_get_date(msg) : NULL;
	if (dt)
		g_date_time_ref(dt);
	else
		dt = g_mime_utils_header_decode_date(raw);
	if (dt == NULL)
		return;
	m->date_ms =
	    (int64_t)g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000;
	g_date_time_unref(dt);
}

/* Records one top-level field and fills the summary field it stands for. */
static void add_header(struct msgmeta *m, GMimeMessage *msg, const char *name, size_t nlen,
		       const char *raw)
{
	m->headers = xreallocarray(m->headers, m->nheaders + 1, sizeof(*m->headers));
	struct msgmeta_header *mh = &m->headers[m->nheaders++];
	struct buf nb = {0};
	buf_add_utf8_lossy(&nb, name, nlen);
	mh->name = buf_take(&nb);
	mh->value = msgmeta_decode_header(raw);
	name = mh->name;

	if (!m->from && g_ascii_strcasecmp(name, "From") == 0) {
		m->from = xstrdup(mh->value);
		read_from_addr(m, msg, raw);
	} else if (!m->to && g_ascii_strcasecmp(name, "To") == 0) {
		m->to = xstrdup(mh->value);
	} else if (!m->cc && g_ascii_strcasecmp(name, "Cc") == 0) {
		m->cc = xstrdup(mh->value);
	} else if (!m->subject && g_ascii_strcasecmp(name, "Subject") == 0) {
		m->subject = xstrdup(mh->value);
	} else if (!m->message_id && g_ascii_strcasecmp(name, "Message-ID") == 0) {
		read_message_id(m, raw);
	} else if (m->date_ms == 0 && g_ascii_strcasecmp(name, "Date") == 0) {
		read_date(m, msg, raw);
	}
}

/*
 * Splits the top-level header block (up to the first empty line) into fields,
 * in order. This is done here rather than through GMime because GMime files the
 * Content-* fields under the body part, and gives up on a block with no valid
 * field at all. Lines that are not "name: value" (an mbox "From " line, garbage)
 * are skipped; NUL bytes are dropped from values.
 */
static void read_headers(struct msgmeta *m, GMimeMessage *msg, const char *data, size_t len)
{
	const char *p = data, *end = data + len;
	const char *name = NULL;
	size_t nlen = 0;
	struct buf value = {0};

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;
		const char *le = eol ? eol : end;
		if (le > p && le[-1] == '\r')
			le--;
		bool continuation = (*p == ' ' || *p == '\t') && le > p;
		if (!continuation && name) {
			if (m->nheaders < MSGMETA_MAX_HEADERS)
				add_header(m, msg, name, nlen, value.p ? value.p : "");
			else
				m->headers_incomplete = true;
			name = NULL;
		}
		if (le == p)
			break; /* the empty line ending the header block */
		const char *vstart = NULL;
		if (continuation) {
			if (name)
				vstart = p;
		} else {
			const char *colon = memchr(p, ':', (size_t)(le - p));
			const char *ne = colon;
			while (ne && ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			bool valid = ne && ne > p;
			for (const char *t = p; valid && t < ne; t++)
				valid = (unsigned char)*t > ' ' && *t != 0x7F;
			if (valid) {
				name = p;
				nlen = (size_t)(ne - p);
				value.len = 0;
				if (value.p)
					value.p[0] = '\0';
				vstart = colon + 1;
			}
		}
		while (vstart && vstart < le) {
			const char *nul = memchr(vstart, '\0', (size_t)(le - vstart));
			const char *stop = nul ? nul : le;
			buf_add(&value, vstart, (size_t)(stop - vstart));
			vstart = nul ? nul + 1 : NULL;
		}
		p = next;
	}
	if (name && m->nheaders < MSGMETA_MAX_HEADERS)
		add_header(m, msg, name, nlen, value.p ? value.p : "");
	else if (name)
		m->headers_incomplete = true;
	free(value.p);
}

/* A message parsed by GMime straight from the caller's bytes. */
struct parsed {
	GByteArray *borrowed;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg; /* NULL when GMime found no message at all */
};

/*
 * Parses len bytes at data in place: the stream's array only borrows them (the
 * stream does not own it) and parsed_close detaches it again, so nothing is
 * copied and nothing of the caller's is freed. data must outlive p.
 */
static void parsed_open(struct parsed *p, const void *data, size_t len)
{
	msgmeta_init();
	size_t stream_len = len > G_MAXUINT ? G_MAXUINT : len; /* a GByteArray's limit */
	p->borrowed = g_byte_array_new_take((guint8 *)(uintptr_t)data, stream_len);
	p->stream = g_mime_stream_mem_new_with_byte_array(p->borrowed);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(p->stream), FALSE);
	p->parser = g_mime_parser_new_with_stream(p->stream);
	g_mime_parser_set_format(p->parser, GMIME_FORMAT_MESSAGE);
	p->msg = g_mime_parser_construct_message(p->parser, msgmeta_options);
}

static void parsed_close(struct parsed *p)
{
	if (p->msg != NULL)
		g_object_unref(p->msg);
	g_object_unref(p->parser);
	g_object_unref(p->stream);
	g_byte_array_free(p->borrowed, FALSE); /* frees the wrapper only, not the data */
}

int msgmeta_parse(const void *data, size_t len, struct msgmeta **out)
{
	if (data == NULL || out == NULL)
		return -EINVAL;
	struct msgmeta *m = xcalloc(1, sizeof(*m));
	struct parsed p;
	parsed_open(&p, data, len);
	read_headers(m, p.msg, data, len);
	if (p.msg) {
		struct walk_collect c = {
		    .v = {.attachment = collect_attachment, .other_name = collect_other_name},
		    .m = m};
		walk(&c.v, g_mime_message_get_mime_part(p.msg), 0);
		m->parts_incomplete = c.v.incomplete;
	}
	read_verdict(m);
	parsed_close(&p);
	*out = m;
	return 0;
}

int msgmeta_attachment_data(const void *data, size_t len, size_t index, unsigned char **out,
			    size_t *out_len)
{
	if (data == NULL || out == NULL || out_len == NULL)
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	struct parsed p;
	parsed_open(&p, data, len);
	struct walk_find f = {.v = {.attachment = find_attachment}, .want = index};
	if (p.msg != NULL)
		walk(&f.v, g_mime_message_get_mime_part(p.msg), 0);
	int rc = -ENOENT;
	if (f.found != NULL) {
		GMimeStream *mem = g_mime_stream_mem_new();
		write_decoded(f.found, mem);
		GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		size_t n = bytes != NULL ? bytes->len : 0;
		*out = xmalloc(n > 0 ? n : 1);
		if (n > 0)
			memcpy(*out, bytes->data, n);
		*out_len = n;
		g_object_unref(mem);
		rc = 0;
	}
	parsed_close(&p);
	return rc;
}

void msgmeta_free(struct msgmeta *m)
{
	if (m == NULL)
		return;
	free(m->from);
	free(m->from_addr);
	free(m->to);
	free(m->cc);
	free(m->subject);
	free(m->message_id);
	for (size_t i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	for (size_t i = 0; i < m->nattachments; i++) {
		free(m->attachments[i].filename);
		free(m->attachments[i].content_type);
	}
	free(m->attachments);
	for (size_t i = 0; i < m->nother_names; i++)
		free(m->other_names[i]);
	free(m->other_names);
	free(m->verdict);
	free(m->gateway);
	free(m->client_address);
	free(m);
}

/* ---- body text ------------------------------------------------------------------------ */

/* Elements whose content is never text to show. */
static const char *const html_hidden_elements[] = {"script",   "style",	   "head",   "title",
						   "noscript", "template", "object", NULL};
/* Elements whose start or end breaks the line. */
static const char *const html_block_elements[] = {
    "p",       "div",	 "br",	   "tr", "li", "h1",	     "h2",     "h3", "h4",
    "h5",      "h6",	 "table",  "ul", "ol", "blockquote", "pre",    "hr", "section",
    "article", "header", "footer", "dt", "dd", "address",    "center", NULL};
/* Named character references we decode; others stay as written. */
static const struct {
	const char *name;
	const char *utf8;
} html_entities[] = {
    {"amp", "&"},
    {"lt", "<"},
    {"gt", ">"},
    {"quot", "\""},
    {"apos", "'"},
    {"nbsp", " "},
    {"copy", "\xC2\xA9"},
    {"reg", "\xC2\xAE"},
    {"yen", "\xC2\xA5"},
    {"hellip", "\xE2\x80\xA6"},
    {"mdash", "\xE2\x80\x94"},
    {"ndash", "\xE2\x80\x93"},
    {"laquo", "\xC2\xAB"},
    {"raquo", "\xC2\xBB"},
    {"middot", "\xC2\xB7"},
    {"bull", "\xE2\x80\xA2"},
    {"trade", "\xE2\x84\xA2"},
};

static bool word_in(const char *w, size_t n, const char *const *list)
{
	for (; *list != NULL; list++) {
		if (strlen(*list) == n && g_ascii_strncasecmp(*list, w, n) == 0)
			return true;
	}
	return false;
}

/* Appends the code point cp as UTF-8 (U+FFFD for what is not a scalar value). */
static void buf_add_codepoint(struct buf *b, unsigned long cp)
{
	char u[6];
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		cp = 0xFFFD;
	int n = g_unichar_to_utf8((gunichar)cp, u);
	buf_add(b, u, (size_t)n);
}

/* Decodes the character reference at s ('&'); returns the bytes used (0: not one). */
static size_t html_entity(struct buf *out, const char *s, const char *end)
{
	const char *semi = memchr(s, ';', (size_t)(end - s) < 12 ? (size_t)(end - s) : 12);
	if (semi == NULL)
		return 0;
	if (s[1] == '#') {
		bool hex = semi - s > 2 && (s[2] == 'x' || s[2] == 'X');
		const char *d = s + (hex ? 3 : 2);
		unsigned long cp = 0;
		if (d == semi)
			return 0;
		for (; d < semi; d++) {
			int v = hex ? hexval((unsigned char)*d)
				    : (*d >= '0' && *d <= '9' ? *d - '0' : -1);
			if (v < 0)
				return 0;
			cp = cp * (hex ? 16 : 10) + (unsigned long)v;
			if (cp > 0x10FFFF)
				cp = 0x110000;
		}
		buf_add_codepoint(out, cp);
		return (size_t)(semi - s) + 1;
	}
	for (size_t i = 0; i < sizeof(html_entities) / sizeof(html_entities[0]); i++) {
		size_t n = strlen(html_entities[i].name);
		if ((size_t)(semi - s - 1) == n && strncmp(s + 1, html_entities[i].name, n) == 0) {
			buf_add(out, html_entities[i].utf8, strlen(html_entities[i].utf8));
			return n + 2;
		}
	}
	return 0;
}

/* Adds a line break unless the text already ends in one (or is empty). */
static void text_break(struct buf *out)
{
	if (out->len > 0 && out->p[out->len - 1] != '\n')
		buf_addc(out, '\n');
}

/*
 * HTML (already UTF-8) to plain text. A small tokenizer, not a browser: tags go,
 * the contents of hidden elements go, blocks end lines, runs of white space outside
 * <pre> become one space, character references are decoded.
 */
static char *html_to_text(const char *s, size_t len)
{
	struct buf out = {0};
	const char *end = s + len;
	const char *hidden_until = NULL; /* name of the element whose end we wait for */
	size_t hidden_len = 0;
	int pre = 0;
	bool space = false;
	while (s < end) {
		/* "<" starts markup only before a letter, "/" or "!"; "a < b" is text. */
		if (*s == '<' && end - s > 1 &&
		    (g_ascii_isalpha(s[1]) || s[1] == '/' || s[1] == '!')) {
			if (end - s >= 4 && memcmp(s, "<!--", 4) == 0) {
				const char *c = g_strstr_len(s + 4, end - s - 4, "-->");
				s = c != NULL ? c + 3 : end;
				continue;
			}
			const char *gt = memchr(s, '>', (size_t)(end - s));
			if (gt == NULL)
				break;
			const char *n = s + 1;
			bool closing = *n == '/';
			if (closing)
				n++;
			const char *ne = n;
			while (ne < gt && (g_ascii_isalnum(*ne)))
				ne++;
			size_t nlen = (size_t)(ne - n);
			s = gt + 1;
			if (hidden_until != NULL) {
				if (closing && nlen == hidden_len &&
				    g_ascii_strncasecmp(n, hidden_until, nlen) == 0)
					hidden_until = NULL;
				continue;
			}
			if (!closing && word_in(n, nlen, html_hidden_elements) && gt[-1] != '/') {
				for (const char *const *h = html_hidden_elements; *h; h++) {
					if (strlen(*h) == nlen &&
					    g_ascii_strncasecmp(*h, n, nlen) == 0)
						hidden_until = *h;
				}
				hidden_len = nlen;
				continue;
			}
			if (nlen == 3 && g_ascii_strncasecmp(n, "pre", 3) == 0)
				pre += closing ? (pre > 0 ? -1 : 0) : 1;
			if (word_in(n, nlen, html_block_elements)) {
				if (nlen == 2 && g_ascii_strncasecmp(n, "br", 2) == 0)
					buf_addc(&out, '\n');
				else
					text_break(&out);
				if (!closing && nlen == 2 && g_ascii_strncasecmp(n, "li", 2) == 0)
					buf_add(&out, "\xE2\x80\xA2 ", 4);
				space = false;
			} else if (!closing && nlen == 2 &&
				   (g_ascii_strncasecmp(n, "td", 2) == 0 ||
				    g_ascii_strncasecmp(n, "th", 2) == 0)) {
				if (out.len > 0 && out.p[out.len - 1] != '\n')
					buf_addc(&out, '\t');
				space = false;
			}
			continue;
		}
		if (hidden_until != NULL) {
			s++;
			continue;
		}
		if (pre == 0 &&
		    (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\f')) {
			space = true;
			s++;
			continue;
		}
		if (space && out.len > 0 && out.p[out.len - 1] != '\n' &&
		    out.p[out.len - 1] != '\t')
			buf_addc(&out, ' ');
		space = false;
		if (*s == '&') {
			size_t used = html_entity(&out, s, end);
			if (used > 0) {
				s += used;
				continue;
			}
		}
		if (*s != '\r')
			buf_addc(&out, *s);
		s++;
	}
	return buf_take(&out);
}

/* Finds the first inline text/plain and text/html leaves (no descent into attached mail). */
static void find_text_parts(GMimeObject *obj, int depth, GMimeObject **plain, GMimeObject **html)
{
	if (obj == NULL || depth > MSGMETA_MAX_DEPTH || *plain != NULL)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && *plain == NULL; i++)
			find_text_parts(g_mime_multipart_get_part(mp, i), depth + 1, plain, html);
		return;
	}
	if (!GMIME_IS_PART(obj))
		return;
	const char *disp = raw_header(obj, "Content-Disposition");
	if (disposition_is_attachment(disp))
		return;
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	if (ct == NULL || g_mime_content_type_is_type(ct, "text", "plain"))
		*plain = obj;
	else if (*html == NULL && g_mime_content_type_is_type(ct, "text", "html"))
		*html = obj;
}

/* The part's content, transfer-decoded and converted to UTF-8. Caller frees. */
static char *part_text_utf8(GMimeObject *obj)
{
	GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(obj));
	GMimeStream *mem = g_mime_stream_mem_new();
	if (content != NULL)
		g_mime_data_wrapper_write_to_stream(content, mem);
	GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	const char *charset = g_mime_object_get_content_type_parameter(obj, "charset");
	struct buf out = {0};
	if (bytes != NULL && bytes->len > 0)
		convert_charset(&out, charset, (const char *)bytes->data, bytes->len);
	g_object_unref(mem);
	return buf_take(&out);
}

/* CRLF and lone CR to LF, NULs dropped, at most three line breaks in a row; in place. */
static void text_tidy(char *s)
{
	char *w = s;
	int breaks = 0;
	for (const char *r = s; *r != '\0'; r++) {
		char c = *r;
		if (c == '\r') {
			if (r[1] == '\n')
				continue;
			c = '\n';
		}
		breaks = c == '\n' ? breaks + 1 : 0;
		if (breaks > 3)
			continue;
		*w++ = c;
	}
	while (w > s && (w[-1] == '\n' || w[-1] == ' '))
		w--;
	*w = '\0';
}

int msgmeta_text_body(const void *data, size_t len, size_t max, struct msgmeta_text *out)
{
	if (data == NULL || out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	struct parsed p;
	parsed_open(&p, data, len);
	GMimeObject *plain = NULL, *html = NULL;
	char *text = NULL;
	if (p.msg != NULL)
		find_text_parts(g_mime_message_get_mime_part(p.msg), 0, &plain, &html);
	if (plain != NULL) {
		text = part_text_utf8(plain);
	} else if (html != NULL) {
		char *h = part_text_utf8(html);
		text = html_to_text(h, strlen(h));
		free(h);
		out->from_html = true;
	} else {
		text = xstrdup("");
	}
	parsed_close(&p);

	text_tidy(text);
	size_t n = strlen(text);
	if (max > 0 && n > max) {
		/* Back up to the start of a UTF-8 sequence so the text stays valid. */
		size_t cut = max;
		while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
			cut--;
		text[cut] = '\0';
		out->truncated = true;
	}
	out->text = text;
	return 0;
}
