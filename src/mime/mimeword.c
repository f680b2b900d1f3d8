/*
 * mimeword — RFC 2047 encoded words and RFC 2231 parameters to UTF-8 (see
 * mimeword.h), loose in what it takes because real mail is: encoded words glued
 * to text or inside quotes, a JIS character split across two words, raw 8-bit
 * bytes in a quoted file name (a raw Shift_JIS 0x5C is half a character, not a
 * quoting backslash), RFC 2047 words in a plain name= parameter.
 *
 * A parameter search (param_scan) collects every occurrence of one parameter
 * into a struct param_search, then param_result assembles the value a client
 * following RFC 2231 would show and param_alternatives the others.
 * Not for: charset tables (charset.c), header splitting or unfolding whole blocks.
 */
#include "mime/mimeword.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "common/xalloc.h"
#include "mime/charset.h"

/* ---- RFC 2047 header text ---- */

/* Base64 as mailers really write it: stray characters and missing padding tolerated. */
static void decode_b(struct strbuf *out, const char *s, size_t n)
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
			strbuf_addc(out, (char)((acc >> bits) & 0xFF));
		}
	}
}

static void decode_q(struct strbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (s[i] == '_') {
			strbuf_addc(out, ' ');
		} else if (s[i] == '=' && i + 2 < n &&
			   (h1 = g_ascii_xdigit_value((char)s[i + 1])) >= 0 &&
			   (h2 = g_ascii_xdigit_value((char)s[i + 2])) >= 0) {
			strbuf_addc(out, (char)(h1 * 16 + h2));
			i += 2;
		} else {
			strbuf_addc(out, s[i]);
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
	while (p < end && *p != '?' && (unsigned char)*p > ' ' &&
	       p - cs <= MIMEWORD_MAX_CHARSET_LEN)
		p++;
	if (p >= end || *p != '?' || p == cs || end - p < 4 || p - cs > MIMEWORD_MAX_CHARSET_LEN)
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
static void add_plain(struct strbuf *out, const char *s, size_t n)
{
	/* NUL cannot occur here: the caller's string ends at the first one. */
	if (n > 0)
		charset_guess_to_utf8(out, s, n);
}

void mimeword_decode(struct strbuf *out, const char *s, size_t n)
{
	const char *p = s, *end = s + n, *plain = s;
	struct strbuf raw = STRBUF_INIT;
	char charset[MIMEWORD_MAX_CHARSET_LEN + 1] = "";
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
			charset_to_utf8(out, charset, strbuf_str(&raw), raw.len);
			strbuf_truncate(&raw, 0);
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
		charset_to_utf8(out, charset, strbuf_str(&raw), raw.len);
	add_plain(out, plain, (size_t)(end - plain));
	strbuf_free(&raw);
}

char *mimeword_unfold(const char *raw, size_t *len_out)
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

char *mimeword_decode_header(const char *raw)
{
	if (raw == NULL)
		return xstrdup("");
	size_t n;
	char *u = mimeword_unfold(raw, &n);
	struct strbuf out = STRBUF_INIT;
	mimeword_decode(&out, u, n);
	free(u);
	return strbuf_take(&out);
}

/* ---- RFC 2231 parameters (file names) ---- */

static void add_pct_decoded(struct strbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (s[i] == '%' && i + 2 < n && (h1 = g_ascii_xdigit_value((char)s[i + 1])) >= 0 &&
		    (h2 = g_ascii_xdigit_value((char)s[i + 2])) >= 0) {
			strbuf_addc(out, (char)(h1 * 16 + h2));
			i += 2;
		} else {
			strbuf_addc(out, s[i]);
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
	struct param_section plain;			       /* name=   */
	struct param_section ext;			       /* name*=  */
	struct param_section sec[MIMEWORD_MAX_PARAM_SECTIONS]; /* name*N= / name*N*= */
	/* Later name= and name*= after the first: mail clients differ in which they show. */
	struct param_section repeats[MIMEWORD_MAX_PARAM_REPEATS];
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
		if (first->present && ps->nrepeats < MIMEWORD_MAX_PARAM_REPEATS)
			first = &ps->repeats[ps->nrepeats++];
		param_store(first, rlen == 1, v, vlen);
		return;
	}
	if (rest[0] != '*')
		return;
	size_t i = 1, idx = 0;
	while (i < rlen && rest[i] >= '0' && rest[i] <= '9' && idx < MIMEWORD_MAX_PARAM_SECTIONS) {
		idx = idx * 10 + (size_t)(rest[i] - '0');
		i++;
	}
	if (i == 1 || idx >= MIMEWORD_MAX_PARAM_SECTIONS)
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
	struct strbuf v = STRBUF_INIT;
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
		strbuf_truncate(&v, 0);
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				/* A backslash after a high byte is the second byte of a raw
				 * Shift_JIS character (表 is 0x95 0x5C), not an escape. */
				bool after_8bit = p > s && (unsigned char)p[-1] >= 0x81;
				if (*p == '\\' && p[1] && !after_8bit)
					p++;
				if (*p != '\r' && *p != '\n')
					strbuf_addc(&v, *p);
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
					strbuf_addc(&v, *t);
		}
		if (nlen > 0)
			param_offer(ps, name, nlen, strbuf_str(&v), v.len);
	}
	strbuf_free(&v);
}

/* Splits an RFC 2231 extended value "charset'lang'%XX..." into charset and bytes. */
static void add_ext_value(struct strbuf *bytes, char *charset, size_t cslen, const char *v,
			  size_t n)
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
	char charset[MIMEWORD_MAX_CHARSET_LEN + 1] = "";
	struct strbuf bytes = STRBUF_INIT, out = STRBUF_INIT;
	if (ps->ext.present) {
		add_ext_value(&bytes, charset, sizeof(charset), ps->ext.value, ps->ext.len);
		charset_to_utf8(&out, charset[0] ? charset : NULL, strbuf_str(&bytes), bytes.len);
	} else if (ps->sec[0].present) {
		bool any_ext = false;
		for (size_t i = 0; i < MIMEWORD_MAX_PARAM_SECTIONS && ps->sec[i].present; i++) {
			struct param_section *sec = &ps->sec[i];
			if (i == 0 && sec->extended)
				add_ext_value(&bytes, charset, sizeof(charset), sec->value,
					      sec->len);
			else if (sec->extended)
				add_pct_decoded(&bytes, sec->value, sec->len);
			else
				strbuf_add(&bytes, sec->value, sec->len);
			any_ext = any_ext || sec->extended;
		}
		if (any_ext)
			charset_to_utf8(&out, charset[0] ? charset : NULL, strbuf_str(&bytes),
					bytes.len);
		else
			mimeword_decode(&out, strbuf_str(&bytes), bytes.len);
	} else if (ps->plain.present) {
		/* Outlook and many Japanese mailers put RFC 2047 words (or raw 8-bit) here. */
		mimeword_decode(&out, ps->plain.value, ps->plain.len);
	}
	strbuf_free(&bytes);
	if (!ps->ext.present && !ps->sec[0].present && !ps->plain.present)
		return NULL; /* out was never written */
	return strbuf_take(&out);
}

/* One name=/name*= value decoded alone (RFC 2231 with its charset, else RFC 2047 or raw). */
static char *param_section_decode(const struct param_section *sec)
{
	struct strbuf bytes = STRBUF_INIT, out = STRBUF_INIT;
	if (sec->extended) {
		char charset[MIMEWORD_MAX_CHARSET_LEN + 1] = "";
		add_ext_value(&bytes, charset, sizeof(charset), sec->value, sec->len);
		charset_to_utf8(&out, charset[0] ? charset : NULL, strbuf_str(&bytes), bytes.len);
	} else {
		mimeword_decode(&out, sec->value, sec->len);
	}
	strbuf_free(&bytes);
	return strbuf_take(&out);
}

void mimeword_names_add(struct mimeword_names *l, char *name, const char *primary)
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
			       struct mimeword_names *alts)
{
	if (ps->plain.present && (ps->ext.present || ps->sec[0].present))
		mimeword_names_add(alts, param_section_decode(&ps->plain), primary);
	for (size_t i = 0; i < ps->nrepeats; i++)
		mimeword_names_add(alts, param_section_decode(&ps->repeats[i]), primary);
}

static void param_search_free(struct param_search *ps)
{
	free(ps->plain.value);
	free(ps->ext.value);
	for (size_t i = 0; i < ps->nrepeats; i++)
		free(ps->repeats[i].value);
	for (size_t i = 0; i < MIMEWORD_MAX_PARAM_SECTIONS; i++)
		free(ps->sec[i].value);
}

char *mimeword_param(const char *raw, const char *want, struct mimeword_names *alts)
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
