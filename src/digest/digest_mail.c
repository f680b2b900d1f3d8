/*
 * digest_mail — the digest mail itself and the texts of digests and their
 * pages.
 *
 * The texts. Every fixed text, Japanese and English, is in web/digest/texts.json
 * beside the digest pages, read once at start (digest_texts_load): a missing or
 * incomplete file stops the daemon with the file and the missing text named, never
 * a mail with a hole in it. Counts are written "{n}".
 *
 * The mail. A digest is multipart/alternative: text/plain and text/html, both
 * UTF-8 in base64; the Subject is RFC 2047 B-encoded. Subjects and senders come from
 * hostile mail: they are escaped in the HTML and stripped of control characters in
 * the text.
 *
 * Not for: deciding who gets a digest, when, or sending it (digest/notify), the
 * links (digest_token), the time zone of a reader (the caller formats times).
 */
#include "digest/digest_mail.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/* Base64 lines in the mail body: RFC 2045 allows at most 76 characters. */
#define DIGEST_B64_LINE 76
/* A header line we write is at most this long (RFC 5322 recommends 78). */
#define DIGEST_HEADER_LINE 76

/* --- texts ---------------------------------------------------------------- */

static const struct {
	const char *name;
	size_t offset;
	bool counts; /* must hold "{n}" */
} digest_text_fields[] = {
#define DIGEST_TEXT(f, c)                                                                          \
	{                                                                                          \
#f, offsetof(struct digest_texts, f), c                                            \
	}
    DIGEST_TEXT(mail_subject, true),
    DIGEST_TEXT(mail_subject_one, true),
    DIGEST_TEXT(intro, true),
    DIGEST_TEXT(addresses, false),
    DIGEST_TEXT(sender, false),
    DIGEST_TEXT(subject, false),
    DIGEST_TEXT(received, false),
    DIGEST_TEXT(score, false),
    DIGEST_TEXT(recipient, false),
    DIGEST_TEXT(release, false),
    DIGEST_TEXT(safelist, false),
    DIGEST_TEXT(no_subject, false),
    DIGEST_TEXT(more, true),
    DIGEST_TEXT(portal, false),
    DIGEST_TEXT(footer, false),
    DIGEST_TEXT(page_title, false),
    DIGEST_TEXT(confirm_release, false),
    DIGEST_TEXT(confirm_safelist, false),
    DIGEST_TEXT(button_release, false),
    DIGEST_TEXT(button_safelist, false),
    DIGEST_TEXT(done_release, false),
    DIGEST_TEXT(done_safelist, false),
    DIGEST_TEXT(already_safelisted, false),
    DIGEST_TEXT(invalid, false),
    DIGEST_TEXT(expired, false),
    DIGEST_TEXT(used, false),
    DIGEST_TEXT(gone, false),
    DIGEST_TEXT(full, false),
    DIGEST_TEXT(unusable_sender, false),
    DIGEST_TEXT(failed, false),
    DIGEST_TEXT(unavailable, false),
#undef DIGEST_TEXT
};

#define DIGEST_NFIELDS (sizeof(digest_text_fields) / sizeof(digest_text_fields[0]))

/* The texts in use, by enum digest_lang; written once at start. */
static struct digest_texts digest_loaded[2];
static bool digest_have_texts;

static const char **digest_text_slot(struct digest_texts *tx, size_t i)
{
	return (const char **)((char *)tx + digest_text_fields[i].offset);
}

static void digest_texts_clear(struct digest_texts *tx)
{
	for (size_t i = 0; i < DIGEST_NFIELDS; i++) {
		free(unconst(*digest_text_slot(tx, i)));
		*digest_text_slot(tx, i) = NULL;
	}
}

/* Fills tx from obj, the texts of one language; NULL or a new message. */
static char *digest_texts_from_json(json_t *obj, const char *lang, struct digest_texts *tx)
{
	if (!json_is_object(obj))
		return xasprintf("\"%s\" must be an object of texts", lang);
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		size_t i = 0;
		while (i < DIGEST_NFIELDS && strcmp(digest_text_fields[i].name, key) != 0)
			i++;
		if (i == DIGEST_NFIELDS)
			return xasprintf("\"%s\" has an unknown text \"%s\"", lang, key);
		if (!json_is_string(v) || json_string_length(v) == 0)
			return xasprintf("\"%s\".\"%s\" must be a non-empty string", lang, key);
		if (digest_text_fields[i].counts && strstr(json_string_value(v), "{n}") == NULL)
			return xasprintf("\"%s\".\"%s\" must hold \"{n}\" for the count", lang,
					 key);
		*digest_text_slot(tx, i) = xstrdup(json_string_value(v));
	}
	for (size_t i = 0; i < DIGEST_NFIELDS; i++) {
		if (*digest_text_slot(tx, i) == NULL)
			return xasprintf("\"%s\" has no text \"%s\"", lang,
					 digest_text_fields[i].name);
	}
	return NULL;
}

int digest_texts_load(const char *path, char **err)
{
	static const char *const langs[] = {[DIGEST_LANG_JA] = "ja", [DIGEST_LANG_EN] = "en"};
	struct digest_texts tx[2];
	char *data = NULL, *why = NULL;
	size_t len = 0;
	json_t *root = NULL;
	json_error_t jerr;
	*err = NULL;
	memset(tx, 0, sizeof(tx));
	int rc = read_file(path, DIGEST_TEXTS_FILE_MAX, &data, &len);
	if (rc < 0) {
		*err = xasprintf("cannot read the digest texts %s: %s", path, strerror(-rc));
		return rc;
	}
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		why = xasprintf("line %d: %s", jerr.line, jerr.text);
	} else if (!json_is_object(root) || json_object_size(root) != 2) {
		why = xstrdup("must be an object with exactly \"ja\" and \"en\"");
	} else {
		for (size_t l = 0; l < 2 && why == NULL; l++)
			why = digest_texts_from_json(json_object_get(root, langs[l]), langs[l],
						     &tx[l]);
	}
	json_decref(root);
	free(data);
	if (why != NULL) {
		*err = xasprintf("digest texts %s: %s", path, why);
		free(why);
		digest_texts_clear(&tx[0]);
		digest_texts_clear(&tx[1]);
		return -EINVAL;
	}
	digest_texts_unload();
	memcpy(digest_loaded, tx, sizeof(tx));
	digest_have_texts = true;
	return 0;
}

void digest_texts_unload(void)
{
	if (!digest_have_texts)
		return;
	digest_texts_clear(&digest_loaded[0]);
	digest_texts_clear(&digest_loaded[1]);
	digest_have_texts = false;
}

const struct digest_texts *digest_texts(enum digest_lang lang)
{
	if (!digest_have_texts)
		panic("digest: texts used before digest_texts_load");
	return &digest_loaded[lang == DIGEST_LANG_EN ? DIGEST_LANG_EN : DIGEST_LANG_JA];
}

char *digest_count_text(const char *tmpl, size_t n)
{
	const char *at = strstr(tmpl, "{n}");
	if (at == NULL)
		return xstrdup(tmpl);
	return xasprintf("%.*s%zu%s", (int)(at - tmpl), tmpl, n, at + 3);
}

char *digest_subject(enum digest_lang lang, size_t n)
{
	const struct digest_texts *tx = digest_texts(lang);
	return digest_count_text(n == 1 ? tx->mail_subject_one : tx->mail_subject, n);
}

/* --- text helpers --------------------------------------------------------- */

char *digest_html_escape(const char *s)
{
	struct strbuf b = STRBUF_INIT;
	for (const char *p = s != NULL ? s : ""; *p != '\0'; p++) {
		switch (*p) {
		case '&':
			strbuf_puts(&b, "&amp;");
			break;
		case '<':
			strbuf_puts(&b, "&lt;");
			break;
		case '>':
			strbuf_puts(&b, "&gt;");
			break;
		case '"':
			strbuf_puts(&b, "&quot;");
			break;
		case '\'':
			strbuf_puts(&b, "&#39;");
			break;
		default:
			strbuf_add(&b, p, 1);
		}
	}
	return strbuf_take(&b);
}

/* Appends s HTML-escaped. */
static void digest_strbuf_html(struct strbuf *b, const char *s)
{
	char *e = digest_html_escape(s);
	strbuf_puts(b, e);
	free(e);
}

/* s on one line: control characters (CR, LF, TAB, ESC ...) become spaces. */
static char *digest_one_line(const char *s)
{
	char *out = xstrdup(s != NULL ? s : "");
	for (unsigned char *p = (unsigned char *)out; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return out;
}

static bool digest_plain_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			return false;
	}
	return strstr(s, "=?") == NULL;
}

char *digest_encode_header(const char *utf8, size_t name_len)
{
	static const char prefix[] = "=?UTF-8?B?";
	const size_t overhead = sizeof(prefix) - 1 + 2;
	char *clean = digest_one_line(utf8);
	if (digest_plain_ascii(clean))
		return clean;
	struct strbuf b = STRBUF_INIT;
	size_t len = strlen(clean), pos = 0;
	/* The first line holds "Name: ", the others a leading space. */
	size_t room = DIGEST_HEADER_LINE - (name_len + 2);
	while (pos < len) {
		size_t max_raw = room > overhead + 4 ? (room - overhead) / 4 * 3 : 3;
		size_t take = len - pos < max_raw ? len - pos : max_raw;
		/* Never split a UTF-8 sequence: back off to the start of a character. */
		while (take > 0 && pos + take < len &&
		       ((unsigned char)clean[pos + take] & 0xc0) == 0x80)
			take--;
		if (take == 0)
			take = len - pos < max_raw ? len - pos : max_raw;
		char enc[DIGEST_HEADER_LINE * 2];
		sodium_bin2base64(enc, sizeof(enc), (const unsigned char *)clean + pos, take,
				  sodium_base64_VARIANT_ORIGINAL);
		if (pos > 0)
			strbuf_puts(&b, "\r\n ");
		strbuf_printf(&b, "%s%s?=", prefix, enc);
		pos += take;
		room = DIGEST_HEADER_LINE - 1;
	}
	free(clean);
	return strbuf_take(&b);
}

/* data in base64, DIGEST_B64_LINE characters a line, CRLF after each. */
void digest_base64_lines(struct strbuf *b, const char *data, size_t len)
{
	const size_t chunk = DIGEST_B64_LINE / 4 * 3;
	char line[DIGEST_B64_LINE + 4];
	for (size_t pos = 0; pos < len; pos += chunk) {
		size_t take = len - pos < chunk ? len - pos : chunk;
		sodium_bin2base64(line, sizeof(line), (const unsigned char *)data + pos, take,
				  sodium_base64_VARIANT_ORIGINAL);
		strbuf_puts(b, line);
		strbuf_puts(b, "\r\n");
	}
}

/* --- the mail ------------------------------------------------------------- */

static const char *digest_sender_text(const struct digest_entry *e)
{
	if (e->from != NULL && *e->from != '\0')
		return e->from;
	return e->sender != NULL && *e->sender != '\0' ? e->sender : "<>";
}

static void digest_text_part(struct strbuf *b, const struct digest_mail *m)
{
	const struct digest_texts *tx = digest_texts(m->lang);
	char *intro = digest_count_text(tx->intro, m->nentries + m->not_listed);
	strbuf_printf(b, "%s\n", intro);
	free(intro);
	strbuf_printf(b, "%s:", tx->addresses);
	for (size_t i = 0; i < m->naddresses; i++)
		strbuf_printf(b, " %s", m->addresses[i]);
	strbuf_puts(b, "\n\n");
	for (size_t i = 0; i < m->nentries; i++) {
		const struct digest_entry *e = &m->entries[i];
		char *sender = digest_one_line(digest_sender_text(e));
		char *subject = digest_one_line(
		    e->subject != NULL && *e->subject != '\0' ? e->subject : tx->no_subject);
		strbuf_printf(b, "%zu. %s: %s\n   %s: %s\n   %s: %s\n", i + 1, tx->subject, subject,
			      tx->sender, sender, tx->received, e->received);
		if (m->naddresses > 1)
			strbuf_printf(b, "   %s: %s\n", tx->recipient, e->recipient);
		if (e->has_score)
			strbuf_printf(b, "   %s: %.1f\n", tx->score, e->score);
		if (e->release_url != NULL)
			strbuf_printf(b, "   %s: %s\n", tx->release, e->release_url);
		if (e->safelist_url != NULL)
			strbuf_printf(b, "   %s: %s\n", tx->safelist, e->safelist_url);
		strbuf_puts(b, "\n");
		free(sender);
		free(subject);
	}
	if (m->not_listed > 0) {
		char *more = digest_count_text(tx->more, m->not_listed);
		strbuf_printf(b, "%s\n", more);
		free(more);
	}
	if (m->portal_url != NULL)
		strbuf_printf(b, "%s: %s\n", tx->portal, m->portal_url);
	strbuf_printf(b, "\n-- \n%s\n", tx->footer);
}

static void digest_html_link(struct strbuf *b, const char *url, const char *label)
{
	strbuf_puts(b, "<a href=\"");
	digest_strbuf_html(b, url);
	strbuf_puts(b, "\">");
	digest_strbuf_html(b, label);
	strbuf_puts(b, "</a>");
}

static void digest_html_part(struct strbuf *b, const struct digest_mail *m)
{
	const struct digest_texts *tx = digest_texts(m->lang);
	char *intro = digest_count_text(tx->intro, m->nentries + m->not_listed);
	char *title = digest_subject(m->lang, m->nentries + m->not_listed);
	strbuf_printf(b,
		      "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
		      "<title>",
		      digest_lang_name(m->lang));
	digest_strbuf_html(b, title);
	strbuf_puts(b, "</title></head>\n<body>\n<p>");
	digest_strbuf_html(b, intro);
	strbuf_puts(b, "</p>\n<p>");
	digest_strbuf_html(b, tx->addresses);
	strbuf_puts(b, ":");
	for (size_t i = 0; i < m->naddresses; i++) {
		strbuf_puts(b, " ");
		digest_strbuf_html(b, m->addresses[i]);
	}
	strbuf_puts(b, "</p>\n<table border=\"1\" cellspacing=\"0\" cellpadding=\"4\">\n<tr>");
	const char *heads[] = {tx->sender, tx->subject, tx->received, tx->score, ""};
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		strbuf_puts(b, "<th>");
		digest_strbuf_html(b, heads[i]);
		strbuf_puts(b, "</th>");
	}
	strbuf_puts(b, "</tr>\n");
	for (size_t i = 0; i < m->nentries; i++) {
		const struct digest_entry *e = &m->entries[i];
		strbuf_puts(b, "<tr><td>");
		digest_strbuf_html(b, digest_sender_text(e));
		if (m->naddresses > 1) {
			strbuf_puts(b, "<br>&rarr; ");
			digest_strbuf_html(b, e->recipient);
		}
		strbuf_puts(b, "</td><td>");
		digest_strbuf_html(b, e->subject != NULL && *e->subject != '\0' ? e->subject
										: tx->no_subject);
		strbuf_puts(b, "</td><td>");
		digest_strbuf_html(b, e->received);
		strbuf_puts(b, "</td><td>");
		if (e->has_score)
			strbuf_printf(b, "%.1f", e->score);
		else
			strbuf_puts(b, "&mdash;");
		strbuf_puts(b, "</td><td>");
		if (e->release_url != NULL)
			digest_html_link(b, e->release_url, tx->release);
		if (e->safelist_url != NULL) {
			strbuf_puts(b, "<br>");
			digest_html_link(b, e->safelist_url, tx->safelist);
		}
		strbuf_puts(b, "</td></tr>\n");
	}
	strbuf_puts(b, "</table>\n");
	if (m->not_listed > 0) {
		char *more = digest_count_text(tx->more, m->not_listed);
		strbuf_puts(b, "<p>");
		digest_strbuf_html(b, more);
		strbuf_puts(b, "</p>\n");
		free(more);
	}
	if (m->portal_url != NULL) {
		strbuf_puts(b, "<p>");
		digest_html_link(b, m->portal_url, tx->portal);
		strbuf_puts(b, "</p>\n");
	}
	strbuf_puts(b, "<p><small>");
	digest_strbuf_html(b, tx->footer);
	strbuf_puts(b, "</small></p>\n</body></html>\n");
	free(intro);
	free(title);
}

/* "Thu, 26 Nov 2026 10:00:00 +0900" (RFC 5322 3.3) for ms in a zone offset_s from UTC. */
void digest_mail_date(int64_t ms, int offset_s, char *out, size_t size)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(ms / 1000) + offset_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	int off = offset_s < 0 ? -offset_s : offset_s;
	snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d %c%02d%02d", days[tm.tm_wday],
		 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 offset_s < 0 ? '-' : '+', off / 3600, off % 3600 / 60);
}

int digest_build_mail(const struct digest_mail *m, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (m->nentries == 0 || m->from == NULL || m->to == NULL)
		return -EINVAL;
	struct strbuf text = STRBUF_INIT, html = STRBUF_INIT, b = STRBUF_INIT;
	char date[64], boundary[64], id[IDS_UUID_LEN + 1], rnd[17];
	unsigned char r[8];
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(rnd, sizeof(rnd), r, sizeof(r));
	/* "=_" cannot occur in base64 text, so the boundary never appears in a part. */
	snprintf(boundary, sizeof(boundary), "=_lazaret_%s", rnd);
	digest_mail_date(m->now_ms, m->utc_offset_s, date, sizeof(date));
	ids_uuidv7(m->now_ms, id);
	char *subject_text = digest_subject(m->lang, m->nentries + m->not_listed);
	char *subject = digest_encode_header(subject_text, strlen("Subject"));
	char *from = digest_one_line(m->from), *to = digest_one_line(m->to);

	digest_text_part(&text, m);
	digest_html_part(&html, m);
	strbuf_printf(&b,
		      "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
		      "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
		      "Auto-Submitted: auto-generated\r\n"
		      "Content-Language: %s\r\n"
		      "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
		      "This is a multi-part message in MIME format.\r\n",
		      from, to, subject, date, id, m->hostname != NULL ? m->hostname : "lazaret",
		      digest_lang_name(m->lang), boundary);
	strbuf_printf(&b,
		      "\r\n--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n",
		      boundary);
	digest_base64_lines(&b, strbuf_str(&text), text.len);
	strbuf_printf(&b,
		      "\r\n--%s\r\nContent-Type: text/html; charset=UTF-8\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n",
		      boundary);
	digest_base64_lines(&b, strbuf_str(&html), html.len);
	strbuf_printf(&b, "\r\n--%s--\r\n", boundary);

	free(subject_text);
	free(subject);
	free(from);
	free(to);
	strbuf_free(&text);
	strbuf_free(&html);
	*len = b.len;
	*out = strbuf_take(&b);
	return 0;
}
