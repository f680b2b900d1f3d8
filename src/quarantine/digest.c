/*
 * digest — the parts of the end users' notification digests that belong to
 * the quarantine services: the signed login-free links, the digest mail, and the
 * endpoints those links and "send my digest now" reach.
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
 * The mail. A digest is multipart/alternative: text/plain and text/html, both
 * UTF-8 in base64; the Subject is RFC 2047 B-encoded. Subjects and senders come from
 * hostile mail: they are escaped in the HTML and stripped of control characters in
 * the text.
 *
 * Not for: deciding who gets a digest, when, or sending it (manager/notify), nor
 * the time zone of a reader (the caller formats times).
 */
#include "quarantine/digest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "quarantine/api.h"
#include "quarantine/release.h"
#include "store/store.h"

/* Token layout: version, action, lang, expiry (8, big-endian), nonce, id, rcpt length,
 * rcpt, then the tag. */
#define DIGEST_TOKEN_VERSION 1
#define DIGEST_TOKEN_FIXED   (3 + 8 + DIGEST_NONCE_LEN + 36 + 1)
#define DIGEST_TOKEN_BIN_MAX (DIGEST_TOKEN_FIXED + DIGEST_ADDRESS_MAX + DIGEST_MAC_LEN)
/* Base64 lines in the mail body: RFC 2045 allows at most 76 characters. */
#define DIGEST_B64_LINE 76
/* A header line we write is at most this long (RFC 5322 recommends 78). */
#define DIGEST_HEADER_LINE 76

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

static bool digest_address_ok(const char *s, size_t len)
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
	if (strlen(t->msg_id) != 36 || !digest_address_ok(t->rcpt, rlen))
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
	if (!ids_valid(out->msg_id) || !digest_address_ok(out->rcpt, rlen))
		return -EBADMSG;
	if (now >= out->expires_ms)
		return -ETIME;
	return 0;
}

/* --- text helpers --------------------------------------------------------- */

/* A growing string. */
struct digest_buf {
	char *p;
	size_t len, cap;
};

static void digest_buf_add(struct digest_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void digest_buf_puts(struct digest_buf *b, const char *s)
{
	digest_buf_add(b, s, strlen(s));
}

static void digest_buf_printf(struct digest_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void digest_buf_printf(struct digest_buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("digest: out of memory");
	digest_buf_add(b, s, (size_t)n);
	free(s);
}

static void digest_buf_html(struct digest_buf *b, const char *s)
{
	char *e = digest_html_escape(s);
	digest_buf_puts(b, e);
	free(e);
}

char *digest_html_escape(const char *s)
{
	struct digest_buf b = {0};
	digest_buf_add(&b, "", 0);
	for (const char *p = s != NULL ? s : ""; *p != '\0'; p++) {
		switch (*p) {
		case '&':
			digest_buf_puts(&b, "&amp;");
			break;
		case '<':
			digest_buf_puts(&b, "&lt;");
			break;
		case '>':
			digest_buf_puts(&b, "&gt;");
			break;
		case '"':
			digest_buf_puts(&b, "&quot;");
			break;
		case '\'':
			digest_buf_puts(&b, "&#39;");
			break;
		default:
			digest_buf_add(&b, p, 1);
		}
	}
	return b.p;
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
	struct digest_buf b = {0};
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
			digest_buf_puts(&b, "\r\n ");
		digest_buf_printf(&b, "%s%s?=", prefix, enc);
		pos += take;
		room = DIGEST_HEADER_LINE - 1;
	}
	free(clean);
	return b.p;
}

/* data in base64, DIGEST_B64_LINE characters a line, CRLF after each. */
static void digest_buf_base64(struct digest_buf *b, const char *data, size_t len)
{
	const size_t chunk = DIGEST_B64_LINE / 4 * 3;
	char line[DIGEST_B64_LINE + 4];
	for (size_t pos = 0; pos < len; pos += chunk) {
		size_t take = len - pos < chunk ? len - pos : chunk;
		sodium_bin2base64(line, sizeof(line), (const unsigned char *)data + pos, take,
				  sodium_base64_VARIANT_ORIGINAL);
		digest_buf_puts(b, line);
		digest_buf_puts(b, "\r\n");
	}
}

/* --- texts ---------------------------------------------------------------- */

/* Every fixed text of mails and pages, by language. */
struct digest_texts {
	const char *intro;     /* "{n}": the count */
	const char *addresses; /* label before the list of addresses */
	const char *sender, *subject, *received, *score, *recipient;
	const char *release, *safelist;
	const char *no_subject;
	const char *more; /* "{n}": the count */
	const char *portal;
	const char *footer;
	/* pages */
	const char *page_title;
	const char *confirm_release, *confirm_safelist;
	const char *button_release, *button_safelist;
	const char *done_release, *done_safelist, *already_safelisted;
	const char *invalid, *expired, *used, *gone, *full, *unusable_sender, *failed, *unavailable;
};

static const struct digest_texts digest_texts_ja = {
    .intro = "隔離されたメッセージが {n} 件あります。",
    .addresses = "対象のアドレス",
    .sender = "差出人",
    .subject = "件名",
    .received = "受信日時",
    .score = "スコア",
    .recipient = "宛先",
    .release = "受信する（解放）",
    .safelist = "差出人を許可リストに追加",
    .no_subject = "（件名なし）",
    .more = "ほかに {n} 件のメッセージがあります。Web コンソールでご確認ください。",
    .portal = "Web コンソール",
    .footer = "このメールは自動送信されています。隔離されたメッセージは保存期間が過ぎると"
	      "自動的に削除されます。リンクはその時まで有効です。",
    .page_title = "Lazaret 隔離メッセージ",
    .confirm_release = "このメッセージを受信トレイに配信しますか？",
    .confirm_safelist = "この差出人を許可リストに追加しますか？",
    .button_release = "解放する",
    .button_safelist = "許可リストに追加する",
    .done_release = "メッセージを解放しました。まもなく配信されます。",
    .done_safelist = "差出人を許可リストに追加しました。",
    .already_safelisted = "この差出人はすでに許可リストにあります。",
    .invalid = "このリンクは無効です。",
    .expired = "このリンクは有効期限が切れています。",
    .used = "このリンクはすでに使用されています。",
    .gone = "このメッセージは隔離領域にもうありません（解放済み、削除済み、"
	    "または期限切れ）。",
    .full = "許可リストがいっぱいのため追加できません。",
    .unusable_sender = "このメッセージの差出人は許可リストに追加できません。",
    .failed = "処理できませんでした。しばらくしてからもう一度お試しください。",
    .unavailable = "この機能は現在利用できません。",
};

static const struct digest_texts digest_texts_en = {
    .intro = "You have {n} new message(s) in your spam quarantine.",
    .addresses = "Addresses",
    .sender = "Sender",
    .subject = "Subject",
    .received = "Received",
    .score = "Score",
    .recipient = "To",
    .release = "Release",
    .safelist = "Always allow this sender",
    .no_subject = "(no subject)",
    .more = "{n} more message(s) are not listed here; see the web console.",
    .portal = "Web console",
    .footer = "This message was sent automatically. Quarantined messages are deleted "
	      "when they expire; the links work until then.",
    .page_title = "Lazaret quarantine",
    .confirm_release = "Deliver this message to your inbox?",
    .confirm_safelist = "Add this sender to your safelist?",
    .button_release = "Release",
    .button_safelist = "Add to safelist",
    .done_release = "The message has been released and will be delivered shortly.",
    .done_safelist = "The sender has been added to your safelist.",
    .already_safelisted = "This sender is already on your safelist.",
    .invalid = "This link is invalid.",
    .expired = "This link has expired.",
    .used = "This link has already been used.",
    .gone = "This message is no longer in the quarantine (released, deleted or expired).",
    .full = "Your safelist is full; the sender could not be added.",
    .unusable_sender = "The sender of this message cannot be added to a safelist.",
    .failed = "This could not be done. Please try again later.",
    .unavailable = "This service is not available right now.",
};

/* tmpl with its "{n}" replaced by n. New string. */
static char *digest_count_text(const char *tmpl, size_t n)
{
	const char *at = strstr(tmpl, "{n}");
	if (at == NULL)
		return xstrdup(tmpl);
	return xasprintf("%.*s%zu%s", (int)(at - tmpl), tmpl, n, at + 3);
}

static const struct digest_texts *digest_texts(enum digest_lang l)
{
	return l == DIGEST_LANG_EN ? &digest_texts_en : &digest_texts_ja;
}

char *digest_subject(enum digest_lang lang, size_t n)
{
	if (lang == DIGEST_LANG_EN)
		return xasprintf("[Lazaret] Quarantine digest: %zu new message%s", n,
				 n == 1 ? "" : "s");
	return xasprintf("[Lazaret] 隔離されたメッセージ: %zu 件", n);
}

/* --- the mail ------------------------------------------------------------- */

static const char *digest_sender_text(const struct digest_entry *e)
{
	if (e->from != NULL && *e->from != '\0')
		return e->from;
	return e->sender != NULL && *e->sender != '\0' ? e->sender : "<>";
}

static void digest_text_part(struct digest_buf *b, const struct digest_mail *m)
{
	const struct digest_texts *tx = digest_texts(m->lang);
	char *intro = digest_count_text(tx->intro, m->nentries + m->not_listed);
	digest_buf_printf(b, "%s\n", intro);
	free(intro);
	digest_buf_printf(b, "%s:", tx->addresses);
	for (size_t i = 0; i < m->naddresses; i++)
		digest_buf_printf(b, " %s", m->addresses[i]);
	digest_buf_puts(b, "\n\n");
	for (size_t i = 0; i < m->nentries; i++) {
		const struct digest_entry *e = &m->entries[i];
		char *sender = digest_one_line(digest_sender_text(e));
		char *subject = digest_one_line(
		    e->subject != NULL && *e->subject != '\0' ? e->subject : tx->no_subject);
		digest_buf_printf(b, "%zu. %s: %s\n   %s: %s\n   %s: %s\n", i + 1, tx->subject,
				  subject, tx->sender, sender, tx->received, e->received);
		if (m->naddresses > 1)
			digest_buf_printf(b, "   %s: %s\n", tx->recipient, e->recipient);
		if (e->has_score)
			digest_buf_printf(b, "   %s: %.1f\n", tx->score, e->score);
		if (e->release_url != NULL)
			digest_buf_printf(b, "   %s: %s\n", tx->release, e->release_url);
		if (e->safelist_url != NULL)
			digest_buf_printf(b, "   %s: %s\n", tx->safelist, e->safelist_url);
		digest_buf_puts(b, "\n");
		free(sender);
		free(subject);
	}
	if (m->not_listed > 0) {
		char *more = digest_count_text(tx->more, m->not_listed);
		digest_buf_printf(b, "%s\n", more);
		free(more);
	}
	if (m->portal_url != NULL)
		digest_buf_printf(b, "%s: %s\n", tx->portal, m->portal_url);
	digest_buf_printf(b, "\n-- \n%s\n", tx->footer);
}

static void digest_html_link(struct digest_buf *b, const char *url, const char *label)
{
	digest_buf_puts(b, "<a href=\"");
	digest_buf_html(b, url);
	digest_buf_puts(b, "\">");
	digest_buf_html(b, label);
	digest_buf_puts(b, "</a>");
}

static void digest_html_part(struct digest_buf *b, const struct digest_mail *m)
{
	const struct digest_texts *tx = digest_texts(m->lang);
	char *intro = digest_count_text(tx->intro, m->nentries + m->not_listed);
	char *title = digest_subject(m->lang, m->nentries + m->not_listed);
	digest_buf_printf(b,
			  "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
			  "<title>",
			  digest_lang_name(m->lang));
	digest_buf_html(b, title);
	digest_buf_puts(b, "</title></head>\n<body>\n<p>");
	digest_buf_html(b, intro);
	digest_buf_puts(b, "</p>\n<p>");
	digest_buf_html(b, tx->addresses);
	digest_buf_puts(b, ":");
	for (size_t i = 0; i < m->naddresses; i++) {
		digest_buf_puts(b, " ");
		digest_buf_html(b, m->addresses[i]);
	}
	digest_buf_puts(b, "</p>\n<table border=\"1\" cellspacing=\"0\" cellpadding=\"4\">\n<tr>");
	const char *heads[] = {tx->sender, tx->subject, tx->received, tx->score, ""};
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		digest_buf_puts(b, "<th>");
		digest_buf_html(b, heads[i]);
		digest_buf_puts(b, "</th>");
	}
	digest_buf_puts(b, "</tr>\n");
	for (size_t i = 0; i < m->nentries; i++) {
		const struct digest_entry *e = &m->entries[i];
		digest_buf_puts(b, "<tr><td>");
		digest_buf_html(b, digest_sender_text(e));
		if (m->naddresses > 1) {
			digest_buf_puts(b, "<br>&rarr; ");
			digest_buf_html(b, e->recipient);
		}
		digest_buf_puts(b, "</td><td>");
		digest_buf_html(b, e->subject != NULL && *e->subject != '\0' ? e->subject
									     : tx->no_subject);
		digest_buf_puts(b, "</td><td>");
		digest_buf_html(b, e->received);
		digest_buf_puts(b, "</td><td>");
		if (e->has_score)
			digest_buf_printf(b, "%.1f", e->score);
		else
			digest_buf_puts(b, "&mdash;");
		digest_buf_puts(b, "</td><td>");
		if (e->release_url != NULL)
			digest_html_link(b, e->release_url, tx->release);
		if (e->safelist_url != NULL) {
			digest_buf_puts(b, "<br>");
			digest_html_link(b, e->safelist_url, tx->safelist);
		}
		digest_buf_puts(b, "</td></tr>\n");
	}
	digest_buf_puts(b, "</table>\n");
	if (m->not_listed > 0) {
		char *more = digest_count_text(tx->more, m->not_listed);
		digest_buf_puts(b, "<p>");
		digest_buf_html(b, more);
		digest_buf_puts(b, "</p>\n");
		free(more);
	}
	if (m->portal_url != NULL) {
		digest_buf_puts(b, "<p>");
		digest_html_link(b, m->portal_url, tx->portal);
		digest_buf_puts(b, "</p>\n");
	}
	digest_buf_puts(b, "<p><small>");
	digest_buf_html(b, tx->footer);
	digest_buf_puts(b, "</small></p>\n</body></html>\n");
	free(intro);
	free(title);
}

/* "Thu, 26 Nov 2026 10:00:00 +0900" (RFC 5322 3.3) for ms in a zone offset_s from UTC. */
static void digest_format_date(int64_t ms, int offset_s, char *out, size_t size)
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
	struct digest_buf text = {0}, html = {0}, b = {0};
	char date[64], boundary[64], id[IDS_UUID_LEN + 1], rnd[17];
	unsigned char r[8];
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(rnd, sizeof(rnd), r, sizeof(r));
	/* "=_" cannot occur in base64 text, so the boundary never appears in a part. */
	snprintf(boundary, sizeof(boundary), "=_lazaret_%s", rnd);
	digest_format_date(m->now_ms, m->utc_offset_s, date, sizeof(date));
	ids_uuidv7(m->now_ms, id);
	char *subject_text = digest_subject(m->lang, m->nentries + m->not_listed);
	char *subject = digest_encode_header(subject_text, strlen("Subject"));
	char *from = digest_one_line(m->from), *to = digest_one_line(m->to);

	digest_text_part(&text, m);
	digest_html_part(&html, m);
	digest_buf_printf(&b,
			  "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
			  "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
			  "Auto-Submitted: auto-generated\r\n"
			  "Content-Language: %s\r\n"
			  "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
			  "This is a multi-part message in MIME format.\r\n",
			  from, to, subject, date, id,
			  m->hostname != NULL ? m->hostname : "lazaret", digest_lang_name(m->lang),
			  boundary);
	digest_buf_printf(&b,
			  "\r\n--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
			  "Content-Transfer-Encoding: base64\r\n\r\n",
			  boundary);
	digest_buf_base64(&b, text.p, text.len);
	digest_buf_printf(&b,
			  "\r\n--%s\r\nContent-Type: text/html; charset=UTF-8\r\n"
			  "Content-Transfer-Encoding: base64\r\n\r\n",
			  boundary);
	digest_buf_base64(&b, html.p, html.len);
	digest_buf_printf(&b, "\r\n--%s--\r\n", boundary);

	free(subject_text);
	free(subject);
	free(from);
	free(to);
	free(text.p);
	free(html.p);
	*out = b.p;
	*len = b.len;
	return 0;
}

/* --- the service and its endpoints ------------------------------------------ */

static struct digest_service digest_installed;
static bool digest_have_service;

void digest_service_install(const struct digest_service *svc)
{
	if (svc == NULL) {
		sodium_memzero(&digest_installed, sizeof(digest_installed));
		digest_have_service = false;
		return;
	}
	digest_installed = *svc;
	digest_have_service = true;
}

/*
 * The look of the link pages. The server's CSP (default-src 'self') forbids inline
 * styles, so the pages load this from DIGEST_PAGE_CSS_PATH; without it they still work.
 */
#define DIGEST_PAGE_CSS_PATH "/d/page.css" /* also in digest_register's table */
static const char digest_page_css[] =
    "body{margin:0;background:#f4f6f8;color:#1d2329;font:15px/1.6 system-ui,-apple-system,"
    "\"Segoe UI\",\"Hiragino Sans\",\"Hiragino Kaku Gothic ProN\",\"Noto Sans CJK JP\","
    "\"Noto Sans JP\",Meiryo,sans-serif}\n"
    "main{max-width:560px;margin:10vh auto 24px;padding:24px 28px;background:#fff;"
    "border:1px solid #d9dee4;border-radius:8px}\n"
    "h1{margin:0 0 16px;font-size:17px;color:#1f5f8b}\n"
    "#message{margin:0 0 20px;font-size:16px;font-weight:600}\n"
    ".page-done #message{color:#1a7f37}\n"
    ".page-error #message{color:#b42318}\n"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:0 0 20px;"
    "padding:12px 16px;background:#f7f9fb;border:1px solid #e3e7ec;border-radius:6px}\n"
    "dt{color:#5c6773;font-weight:600}\n"
    "dd{margin:0;overflow-wrap:anywhere}\n"
    "form,#message:last-child{margin:0}\n"
    "button{font:inherit;font-weight:600;color:#fff;background:#1f5f8b;border:0;"
    "border-radius:6px;padding:10px 24px;cursor:pointer}\n"
    "button:hover{background:#184a6c}\n"
    "button:focus-visible{outline:2px solid #2f81f7;outline-offset:2px}\n"
    "@media (max-width:600px){main{margin:0;border-width:0 0 1px;border-radius:0}}\n";

static void digest_page_style(struct http_server_request *req, void *arg)
{
	(void)arg;
	http_server_add_header(req, "Cache-Control", "public, max-age=86400");
	http_server_reply_bytes(req, 200, "text/css; charset=utf-8", digest_page_css,
				sizeof(digest_page_css) - 1);
}

/*
 * A small page of our own: no scripts (CSP default-src 'self'). The body's class says
 * what kind of answer it is: a question (button), done (200), or an error.
 */
static void digest_page(struct http_server_request *req, int status, enum digest_lang lang,
			const char *message, const char *detail_html, const char *button)
{
	const struct digest_texts *tx = digest_texts(lang);
	struct digest_buf b = {0};
	const char *kind = status >= 400 ? "error" : button != NULL ? "confirm" : "done";
	digest_buf_printf(&b,
			  "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
			  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
			  "<meta name=\"robots\" content=\"noindex\">"
			  "<link rel=\"stylesheet\" href=\"" DIGEST_PAGE_CSS_PATH "\"><title>",
			  digest_lang_name(lang));
	digest_buf_html(&b, tx->page_title);
	digest_buf_printf(&b, "</title></head>\n<body class=\"page-%s\">\n<main>\n<h1>", kind);
	digest_buf_html(&b, tx->page_title);
	digest_buf_puts(&b, "</h1>\n<p id=\"message\">");
	digest_buf_html(&b, message);
	digest_buf_puts(&b, "</p>\n");
	if (detail_html != NULL)
		digest_buf_puts(&b, detail_html);
	if (button != NULL) {
		/* An empty action posts back to this same URL, token included. */
		digest_buf_puts(&b, "<form method=\"post\" action=\"\"><button type=\"submit\">");
		digest_buf_html(&b, button);
		digest_buf_puts(&b, "</button></form>\n");
	}
	digest_buf_puts(&b, "</main>\n</body></html>\n");
	/* The token is in the URL: do not hand it to other sites or frames. */
	http_server_add_header(req, "Referrer-Policy", "no-referrer");
	http_server_add_header(req, "X-Frame-Options", "DENY");
	http_server_reply_bytes(req, status, "text/html; charset=utf-8", b.p, b.len);
	free(b.p);
}

/* The message summary shown on the confirmation page. */
static char *digest_message_details(const struct store_message *m, enum digest_lang lang)
{
	const struct digest_texts *tx = digest_texts(lang);
	struct digest_buf b = {0};
	const char *sender = m->from != NULL && *m->from != '\0'       ? m->from
			     : m->sender != NULL && *m->sender != '\0' ? m->sender
								       : "<>";
	digest_buf_puts(&b, "<dl>\n<dt>");
	digest_buf_html(&b, tx->sender);
	digest_buf_puts(&b, "</dt><dd>");
	digest_buf_html(&b, sender);
	digest_buf_puts(&b, "</dd>\n<dt>");
	digest_buf_html(&b, tx->subject);
	digest_buf_puts(&b, "</dt><dd>");
	digest_buf_html(&b,
			m->subject != NULL && *m->subject != '\0' ? m->subject : tx->no_subject);
	digest_buf_puts(&b, "</dd>\n</dl>\n");
	return b.p;
}

/* The address a safelist entry is made of: the envelope sender, else From:. */
static const char *digest_safelist_sender(const struct store_message *m)
{
	if (m->sender != NULL && strchr(m->sender, '@') != NULL)
		return m->sender;
	if (m->from_addr != NULL && strchr(m->from_addr, '@') != NULL)
		return m->from_addr;
	return NULL;
}

static bool digest_list_has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(v[i], s) == 0)
			return true;
	}
	return false;
}

/*
 * Adds sender to rcpt's safelist (and takes it off the blocklist). 0 added, 1 already
 * there, or a negative errno from the store (-E2BIG: the list is full).
 */
static int digest_safelist_add(struct api *a, const char *rcpt, const char *sender)
{
	struct store *st = api_store(a);
	struct store_slbl *cur = NULL;
	int rc = store_slbl_get(st, rcpt, &cur);
	if (rc < 0)
		return rc;
	if (digest_list_has(cur->safelist, cur->nsafelist, sender)) {
		store_slbl_free(cur);
		return 1;
	}
	char *added = xstrdup(sender); /* the lists hold char *: a copy of the const sender */
	struct store_slbl next = {.recipient = cur->recipient};
	next.safelist = xcalloc(cur->nsafelist + 1, sizeof(char *));
	next.blocklist = xcalloc(cur->nblocklist + 1, sizeof(char *));
	for (size_t i = 0; i < cur->nsafelist; i++)
		next.safelist[next.nsafelist++] = cur->safelist[i];
	next.safelist[next.nsafelist++] = added;
	for (size_t i = 0; i < cur->nblocklist; i++) {
		if (strcasecmp(cur->blocklist[i], sender) != 0)
			next.blocklist[next.nblocklist++] = cur->blocklist[i];
	}
	unsigned max = api_current_config(a)->slbl_max_entries;
	rc = store_slbl_put(st, &next, max != 0 ? max : 100, NULL);
	free(next.safelist);
	free(next.blocklist);
	free(added);
	store_slbl_free(cur);
	return rc;
}

static const struct store_recipient *digest_find_rcpt(const struct store_message *m,
						      const char *rcpt)
{
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (strcasecmp(m->recipients[i].address, rcpt) == 0)
			return &m->recipients[i];
	}
	return NULL;
}

/* GET shows, POST does. */
static void digest_link(struct http_server_request *req, struct api *a, bool act)
{
	struct digest_token t;
	struct store_message *m = NULL;
	char q[128];
	int64_t now = clock_now_ms();
	const char *text = http_server_request_param(req, "token");
	if (!digest_have_service) {
		digest_page(req, 503, DIGEST_LANG_JA, digest_texts_ja.unavailable, NULL, NULL);
		return;
	}
	int rc = digest_token_verify(digest_installed.key, text, now, &t);
	if (rc == -EBADMSG) {
		log_warn("digest.link_invalid", "peer=%s", http_server_request_peer(req));
		/* Whose language is unknown: say it in both. */
		digest_page(req, 403, DIGEST_LANG_JA,
			    "このリンクは無効です。 / This link is invalid.", NULL, NULL);
		return;
	}
	const struct digest_texts *tx = digest_texts(t.lang);
	if (rc == -ETIME) {
		digest_page(req, 410, t.lang, tx->expired, NULL, NULL);
		return;
	}
	struct store *st = api_store(a);
	if (t.action == DIGEST_ACTION_RELEASE) {
		bool used = false;
		if (store_digest_token_used(st, t.nonce, &used) < 0) {
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
			return;
		}
		if (used) {
			digest_page(req, 410, t.lang, tx->used, NULL, NULL);
			return;
		}
	}
	rc = store_get(st, t.msg_id, &m);
	if (rc == -ENOENT) {
		digest_page(req, 410, t.lang, tx->gone, NULL, NULL);
		return;
	}
	if (rc < 0) {
		digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
		return;
	}
	const struct store_recipient *r = digest_find_rcpt(m, t.rcpt);
	if (r == NULL) {
		/* Signed by us yet not a recipient: a broken invariant or another store. */
		digest_page(req, 403, t.lang, tx->invalid, NULL, NULL);
		goto done;
	}
	if (t.action == DIGEST_ACTION_RELEASE && r->state != STORE_RCPT_QUARANTINED) {
		digest_page(req, 410, t.lang,
			    r->state == STORE_RCPT_RELEASED || r->state == STORE_RCPT_RELEASING
				? tx->used
				: tx->gone,
			    NULL, NULL);
		goto done;
	}
	const char *sender = digest_safelist_sender(m);
	if (t.action == DIGEST_ACTION_SAFELIST && sender == NULL) {
		digest_page(req, 422, t.lang, tx->unusable_sender, NULL, NULL);
		goto done;
	}
	if (!act) {
		char *details = digest_message_details(m, t.lang);
		bool rel = t.action == DIGEST_ACTION_RELEASE;
		digest_page(req, 200, t.lang, rel ? tx->confirm_release : tx->confirm_safelist,
			    details, rel ? tx->button_release : tx->button_safelist);
		free(details);
		goto done;
	}
	if (t.action == DIGEST_ACTION_RELEASE) {
		int changed = 0;
		const char *rcpts[] = {r->address};
		rc = store_release(st, m->id, rcpts, 1, now, &changed);
		if (rc < 0) {
			log_error("digest.release_failed", "id=%s rc=%d", m->id, rc);
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
			goto done;
		}
		/* After the release: a crash between the two cannot lose the release. */
		int used = store_digest_token_use(st, t.nonce, now, t.expires_ms);
		if (used < 0 && used != -EEXIST)
			log_warn("digest.token_record_failed", "id=%s rc=%d", m->id, used);
		if (changed == 0) {
			digest_page(req, 410, t.lang, tx->used, NULL, NULL);
			goto done;
		}
		if (api_release(a) != NULL)
			release_kick(api_release(a));
		log_info("digest.released", "id=%s rcpt=%s peer=%s", m->id,
			 log_quote(q, sizeof(q), r->address), http_server_request_peer(req));
		digest_page(req, 200, t.lang, tx->done_release, NULL, NULL);
		goto done;
	}
	rc = digest_safelist_add(a, r->address, sender);
	if (rc < 0) {
		log_warn("digest.safelist_failed", "rcpt=%s rc=%d",
			 log_quote(q, sizeof(q), r->address), rc);
		if (rc == -E2BIG)
			digest_page(req, 422, t.lang, tx->full, NULL, NULL);
		else if (rc == -EINVAL)
			digest_page(req, 422, t.lang, tx->unusable_sender, NULL, NULL);
		else
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
		goto done;
	}
	log_info("digest.safelisted", "rcpt=%s sender=%s peer=%s",
		 log_quote(q, sizeof(q), r->address), sender, http_server_request_peer(req));
	digest_page(req, 200, t.lang, rc == 1 ? tx->already_safelisted : tx->done_safelist, NULL,
		    NULL);

done:
	store_message_free(m);
}

static void digest_link_get(struct http_server_request *req, void *arg)
{
	digest_link(req, arg, false);
}

static void digest_link_post(struct http_server_request *req, void *arg)
{
	digest_link(req, arg, true);
}

static bool digest_address_arg_ok(const char *s)
{
	return s != NULL && strchr(s, '@') != NULL && digest_address_ok(s, strlen(s));
}

static void digest_send_reply(struct http_server_request *req, int rc, const char *who)
{
	if (rc == -EAGAIN) {
		http_server_add_header(req, "Retry-After", "60");
		http_server_reply_error(req, 429, "a digest for %s is being prepared already", who);
		return;
	}
	if (rc < 0) {
		http_server_reply_error(req, 503, "digests cannot be sent now");
		return;
	}
	http_server_reply_json(req, 202, json_pack("{s:b}", "queued", 1));
}

/* POST /api/v1/me/digest: the logged-in end user's own digest, now. */
static void digest_me_send(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return;
	if (!digest_have_service || digest_installed.send_now == NULL) {
		http_server_reply_error(req, 503, "digests are not enabled");
		return;
	}
	const struct api_actor *who = api_actor(a, req);
	int rc;
	if (who->session && who->naddresses > 0) {
		rc = digest_installed.send_now(digest_installed.arg, who->username, who->addresses,
					       who->naddresses, NULL);
		digest_send_reply(req, rc, who->username);
		return;
	}
	/* The admin token acts for the end user owning ?address=. */
	const char *address = http_server_request_query(req, "address");
	if (who->role < API_ROLE_ADMIN || address == NULL) {
		http_server_reply_error(req, 422, "%s",
					who->role < API_ROLE_ADMIN
					    ? "no addresses belong to this account"
					    : "give ?address= for whom to send the digest");
		return;
	}
	if (!digest_address_arg_ok(address)) {
		http_server_reply_error(req, 422, "\"address\" must be an e-mail address");
		return;
	}
	rc = digest_installed.send_now(digest_installed.arg, NULL, NULL, 0, address);
	digest_send_reply(req, rc, address);
}

/* POST /api/v1/digests/send {"address": "..."} (admin). */
static void digest_admin_send(struct http_server_request *req, void *arg)
{
	static const char *const allowed[] = {"address", NULL};
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char *data, *address = NULL;
	size_t len;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (!digest_have_service || digest_installed.send_now == NULL) {
		http_server_reply_error(req, 503, "digests are not enabled");
		return;
	}
	http_server_request_body(req, &data, &len);
	struct http_json_limits lim = {.max_size = api_current_config(a)->max_body};
	int rc = http_json_parse(data, len, &lim, &body, &err);
	if (rc < 0) {
		http_server_reply_error(req, rc == -E2BIG ? 413 : 400, "%s",
					err != NULL ? err : "invalid JSON");
		goto done;
	}
	if (!json_is_object(body) || http_json_check_keys(body, allowed, &err) < 0 ||
	    http_json_get_string(body, "address", &address, &err) < 0 ||
	    !digest_address_arg_ok(address)) {
		http_server_reply_error(req, 422, "%s",
					err != NULL ? err
						    : "the body must be {\"address\": "
						      "\"user@example.jp\"}");
		goto done;
	}
	rc = digest_installed.send_now(digest_installed.arg, NULL, NULL, 0, address);
	digest_send_reply(req, rc, address);

done:
	free(err);
	json_decref(body);
}

void digest_register(struct api *a)
{
	static const struct {
		const char *method;
		const char *pattern;
		unsigned flags;
		http_server_handler_fn fn;
	} routes[] = {
	    /* Before "/d/{token}": the first matching route answers. */
	    {"GET", "/d/page.css", HTTP_SERVER_ROUTE_PUBLIC, digest_page_style},
	    /* The token is the credential: no login, no cookie, no CSRF token. */
	    {"GET", "/d/{token}", HTTP_SERVER_ROUTE_PUBLIC, digest_link_get},
	    {"POST", "/d/{token}", HTTP_SERVER_ROUTE_PUBLIC, digest_link_post},
	    /* The API's own guard: Bearer token or session, CSRF for sessions. */
	    {"POST", "/api/v1/me/digest", HTTP_SERVER_ROUTE_AUTH, digest_me_send},
	    {"POST", "/api/v1/digests/send", HTTP_SERVER_ROUTE_AUTH, digest_admin_send},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (http_server_route(api_http(a), routes[i].method, routes[i].pattern,
				      routes[i].flags, routes[i].fn, a) < 0)
			panic("digest: bad route %s", routes[i].pattern);
	}
}
