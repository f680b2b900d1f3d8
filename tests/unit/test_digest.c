/*
 * Digest links, schedules and the digest mail: what a reader of the mail and of
 * its link pages would notice; and the files the texts and pages come from.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/clock.h"
#include "common/tz.h"
#include "digest/notify_schedule.h"
#include "mime/msgmeta.h"
#include "digest/digest_mail.h"
#include "digest/digest_pages.h"
#include "digest/digest_token.h"

static const unsigned char key1[DIGEST_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static const unsigned char key2[DIGEST_KEY_LEN] = "fedcba9876543210fedcba9876543210";

static int64_t ms(const char *rfc3339)
{
	int64_t v = 0;
	assert_int_equal(clock_parse_rfc3339(rfc3339, &v), 0);
	return v;
}

/* --- tokens --------------------------------------------------------------- */

static char *sign(struct digest_token *t)
{
	char *s = digest_token_sign(key1, t);
	assert_non_null(s);
	assert_true(strlen(s) <= DIGEST_TOKEN_MAX);
	/* URL-safe: goes into a path segment unescaped. */
	assert_int_equal(strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789-_"),
			 strlen(s));
	return s;
}

static void test_token_roundtrip(void **state)
{
	struct digest_token t = {.action = DIGEST_ACTION_RELEASE,
				 .lang = DIGEST_LANG_EN,
				 .expires_ms = ms("2026-12-11T00:00:00Z")};
	snprintf(t.msg_id, sizeof(t.msg_id), "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	snprintf(t.rcpt, sizeof(t.rcpt), "Taro.Yamada@example.jp");
	char *s = sign(&t);
	struct digest_token got;
	assert_int_equal(digest_token_verify(key1, s, ms("2026-11-27T00:00:00Z"), &got), 0);
	assert_int_equal(got.action, DIGEST_ACTION_RELEASE);
	assert_int_equal(got.lang, DIGEST_LANG_EN);
	assert_true(got.expires_ms == t.expires_ms);
	assert_string_equal(got.msg_id, t.msg_id);
	assert_string_equal(got.rcpt, "Taro.Yamada@example.jp");
	assert_string_equal(got.nonce, t.nonce);
	assert_int_equal(strlen(got.nonce), 2 * DIGEST_NONCE_LEN);

	/* Two links for the same thing are different (each has its own nonce). */
	struct digest_token t2 = t;
	char *s2 = sign(&t2);
	assert_string_not_equal(s, s2);
	assert_string_not_equal(t.nonce, t2.nonce);
	free(s);
	free(s2);
}

static void test_token_tampered(void **state)
{
	struct digest_token t = {.action = DIGEST_ACTION_SAFELIST,
				 .lang = DIGEST_LANG_JA,
				 .expires_ms = ms("2026-12-11T00:00:00Z")};
	snprintf(t.msg_id, sizeof(t.msg_id), "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	snprintf(t.rcpt, sizeof(t.rcpt), "u1@corp.test");
	char *s = sign(&t);
	int64_t now = ms("2026-11-27T00:00:00Z");
	struct digest_token got;
	size_t len = strlen(s);
	/* Any changed character, anywhere, is refused. */
	for (size_t i = 0; i < len; i++) {
		char *c = strdup(s);
		c[i] = c[i] == 'A' ? 'B' : 'A';
		int rc = digest_token_verify(key1, c, now, &got);
		if (rc != -EBADMSG)
			fail_msg("changed character %zu was accepted (rc %d)", i, rc);
		free(c);
	}
	/* Cut short, made longer, another key, nothing, garbage. */
	char *cut = strndup(s, len - 4);
	assert_int_equal(digest_token_verify(key1, cut, now, &got), -EBADMSG);
	char *longer = malloc(len + 3);
	snprintf(longer, len + 3, "%sAA", s);
	assert_int_equal(digest_token_verify(key1, longer, now, &got), -EBADMSG);
	assert_int_equal(digest_token_verify(key2, s, now, &got), -EBADMSG);
	assert_int_equal(digest_token_verify(key1, "", now, &got), -EBADMSG);
	assert_int_equal(digest_token_verify(key1, "../../etc/passwd", now, &got), -EBADMSG);
	assert_int_equal(digest_token_verify(key1, NULL, now, &got), -EBADMSG);
	free(cut);
	free(longer);
	free(s);
}

static void test_token_expiry(void **state)
{
	struct digest_token t = {.action = DIGEST_ACTION_RELEASE,
				 .lang = DIGEST_LANG_JA,
				 .expires_ms = ms("2026-12-11T00:00:00Z")};
	snprintf(t.msg_id, sizeof(t.msg_id), "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	snprintf(t.rcpt, sizeof(t.rcpt), "u1@corp.test");
	char *s = sign(&t);
	struct digest_token got;
	assert_int_equal(digest_token_verify(key1, s, t.expires_ms - 1, &got), 0);
	/* Expired: still identified (its page speaks the reader's language). */
	memset(&got, 0, sizeof(got));
	assert_int_equal(digest_token_verify(key1, s, t.expires_ms, &got), -ETIME);
	assert_string_equal(got.rcpt, "u1@corp.test");
	assert_int_equal(got.lang, DIGEST_LANG_JA);
	free(s);
}

static void test_token_limits(void **state)
{
	struct digest_token t = {.action = DIGEST_ACTION_RELEASE, .expires_ms = 1};
	snprintf(t.msg_id, sizeof(t.msg_id), "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	memset(t.rcpt, 'a', DIGEST_ADDRESS_MAX);
	t.rcpt[DIGEST_ADDRESS_MAX - 10] = '@';
	t.rcpt[DIGEST_ADDRESS_MAX] = '\0';
	char *s = digest_token_sign(key1, &t); /* the longest address fits */
	assert_non_null(s);
	assert_true(strlen(s) <= DIGEST_TOKEN_MAX);
	free(s);
	snprintf(t.rcpt, sizeof(t.rcpt), "a b@c"); /* no spaces or controls */
	assert_null(digest_token_sign(key1, &t));
	snprintf(t.rcpt, sizeof(t.rcpt), "a@b");
	snprintf(t.msg_id, sizeof(t.msg_id), "short");
	assert_null(digest_token_sign(key1, &t));
}

/* --- time zones and schedules ------------------------------------------------ */

static struct tz_zone *zone(const char *name)
{
	struct tz_zone *tz = NULL;
	int rc = tz_load(name, &tz);
	if (rc != 0)
		fail_msg("cannot load zone %s: %d", name, rc);
	return tz;
}

static void test_schedule_parse(void **state)
{
	static const struct {
		const char *text;
		int rc;
		size_t ntimes;
		unsigned weekdays;
		int64_t interval_ms;
	} cases[] = {
	    {"daily 09:00", 0, 1, 0x7f, 0},
	    {"DAILY 9:00", 0, 1, 0x7f, 0},
	    {"daily 17:00,09:00,13:00", 0, 3, 0x7f, 0},
	    {"daily 09:00,09:00", 0, 1, 0x7f, 0},
	    {"hourly", 0, 24, 0x7f, 0},
	    {"weekly mon 09:00", 0, 1, 0x02, 0},
	    {"weekly mon,fri 08:30,17:00", 0, 2, 0x22, 0},
	    {"weekly Sunday 00:00", 0, 1, 0x01, 0},
	    {"every 2s", 0, 0, 0, 2000},
	    {"every 10m", 0, 0, 0, 600000},
	    {"daily 24:00", -EINVAL, 0, 0, 0},
	    {"daily 09:60", -EINVAL, 0, 0, 0},
	    {"daily 0900", -EINVAL, 0, 0, 0},
	    {"daily 09:00x", -EINVAL, 0, 0, 0},
	    {"daily", -EINVAL, 0, 0, 0},
	    {"weekly xyz 09:00", -EINVAL, 0, 0, 0},
	    {"weekly mon", -EINVAL, 0, 0, 0},
	    {"every 0s", -EINVAL, 0, 0, 0},
	    {"every 500", -EINVAL, 0, 0, 0},
	    {"sometimes", -EINVAL, 0, 0, 0},
	    {"", -EINVAL, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct notify_schedule s;
		char *err = NULL;
		int rc = notify_schedule_parse(cases[i].text, &s, &err);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
		if (rc < 0) {
			assert_non_null(err); /* the config error names what is wrong */
			free(err);
			continue;
		}
		assert_null(err);
		assert_int_equal(s.ntimes, cases[i].ntimes);
		assert_int_equal(s.weekdays, cases[i].weekdays);
		assert_true(s.interval_ms == cases[i].interval_ms);
	}
	struct notify_schedule s;
	char *err = NULL;
	assert_int_equal(notify_schedule_parse("daily 17:00,09:00,13:00", &s, &err), 0);
	assert_int_equal(s.minutes[0], 9 * 60);
	assert_int_equal(s.minutes[2], 17 * 60);
}

static void test_schedule_next(void **state)
{
	static const struct {
		const char *zone, *schedule, *now, *next;
	} cases[] = {
	    /* Tokyo: 09:00 JST is 00:00Z. */
	    {"Asia/Tokyo", "daily 09:00", "2026-11-26T23:59:00Z", "2026-11-27T00:00:00Z"},
	    {"Asia/Tokyo", "daily 09:00", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"},
	    {"Asia/Tokyo", "daily 09:00", "2026-11-27T00:30:00Z", "2026-11-28T00:00:00Z"},
	    {"Asia/Tokyo", "daily 09:00,13:00,17:00", "2026-11-27T04:30:00Z",
	     "2026-11-27T08:00:00Z"},
	    {"Asia/Tokyo", "daily 09:00,13:00,17:00", "2026-11-27T08:00:00Z",
	     "2026-11-28T00:00:00Z"},
	    /* 2026-11-27 is a Friday; the next Monday 09:00 JST is 2026-11-30. */
	    {"Asia/Tokyo", "weekly mon 09:00", "2026-11-27T00:30:00Z", "2026-11-30T00:00:00Z"},
	    /* Sunday 20:00Z is already Monday 05:00 in Tokyo: today's 09:00 counts. */
	    {"Asia/Tokyo", "weekly mon 09:00", "2026-11-29T20:00:00Z", "2026-11-30T00:00:00Z"},
	    {"Asia/Tokyo", "hourly", "2026-11-27T00:30:00Z", "2026-11-27T01:00:00Z"},
	    /* Half-hour zone: hourly means on the local hour. */
	    {"Asia/Kolkata", "hourly", "2026-11-27T00:31:00Z", "2026-11-27T01:30:00Z"},
	    /* Berlin, the day before spring forward: 09:00 CET then 09:00 CEST. */
	    {"Europe/Berlin", "daily 09:00", "2026-03-28T07:59:00Z", "2026-03-28T08:00:00Z"},
	    {"Europe/Berlin", "daily 09:00", "2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"},
	    /* 02:30 does not exist on 2026-03-29: it runs at 03:30 CEST. */
	    {"Europe/Berlin", "daily 02:30", "2026-03-28T12:00:00Z", "2026-03-29T01:30:00Z"},
	    /* 02:30 happens twice on 2026-10-25: the first time (CEST), once. */
	    {"Europe/Berlin", "daily 02:30", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
	    {"Europe/Berlin", "daily 02:30", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
	    {"Europe/Berlin", "daily 09:00", "2026-10-24T08:00:00Z", "2026-10-25T08:00:00Z"},
	    {"UTC", "every 2s", "2026-11-27T00:00:00Z", "2026-11-27T00:00:02Z"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tz_zone *tz = zone(cases[i].zone);
		struct notify_schedule s;
		char *err = NULL;
		assert_int_equal(notify_schedule_parse(cases[i].schedule, &s, &err), 0);
		int64_t got = notify_schedule_next(&s, tz, ms(cases[i].now));
		char buf[CLOCK_RFC3339_LEN];
		clock_format_rfc3339(got, buf);
		if (strcmp(buf, cases[i].next) != 0)
			fail_msg("%s \"%s\" after %s: %s, want %s", cases[i].zone,
				 cases[i].schedule, cases[i].now, buf, cases[i].next);
		tz_free(tz);
	}
}

/* --- the mail ---------------------------------------------------------------- */

static void test_html_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"},
	    {"a&b \"c\" 'd'", "a&amp;b &quot;c&quot; &#39;d&#39;"},
	    {"日本語", "日本語"},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = digest_html_escape(cases[i].in);
		assert_string_equal(got, cases[i].out);
		free(got);
	}
}

static void test_encode_header(void **state)
{
	static const char *const cases[] = {
	    "[Lazaret] Quarantine digest: 3 new messages",
	    "[Lazaret] 隔離されたメッセージ: 3 件",
	    ("とても長い件名のテストです。とても長い件名のテストです。とても長い件名のテストです。"
	     "とても長い件名のテストです。"),
	    "=?UTF-8?B?not-a-word?= looks like one",
	};
	msgmeta_init();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *enc = digest_encode_header(cases[i], strlen("Subject"));
		/* Every line fits, counting "Subject: " on the first. */
		size_t first = strlen("Subject: ");
		for (const char *line = enc; *line != '\0';) {
			const char *end = strstr(line, "\r\n");
			size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
			if (n + first > 76)
				fail_msg("line of %zu characters in %s", n + first, enc);
			first = 0;
			line = end != NULL ? end + 2 : line + n;
		}
		for (const unsigned char *p = (const unsigned char *)enc; *p != '\0'; p++)
			assert_true(*p < 0x80);
		char *dec = msgmeta_decode_header(enc);
		assert_string_equal(dec, cases[i]);
		free(dec);
		free(enc);
	}
}

/* The decoded body of the part with content type ctype. */
static char *mime_part(const char *mail, const char *ctype)
{
	char *hdr = strstr(mail, ctype);
	assert_non_null(hdr);
	char *start = strstr(hdr, "\r\n\r\n");
	assert_non_null(start);
	start += 4;
	char *end = strstr(start, "\r\n--");
	assert_non_null(end);
	size_t cap = (size_t)(end - start);
	unsigned char *out = malloc(cap + 1);
	size_t len = 0;
	assert_int_equal(sodium_base642bin(out, cap, start, (size_t)(end - start), "\r\n", &len,
					   NULL, sodium_base64_VARIANT_ORIGINAL),
			 0);
	out[len] = '\0';
	return (char *)out;
}

static void test_build_mail(void **state)
{
	const char *addresses[] = {"taro@corp.test", "yamada@corp.test"};
	struct digest_entry entries[] = {
	    {.recipient = "taro@corp.test",
	     .sender = "spammer@bad.example",
	     .from = "\"Evil\" <spammer@bad.example>",
	     .subject = "<script>alert(1)</script> 当選しました",
	     .received = "2026-11-27 09:30 JST",
	     .has_score = true,
	     .score = 12.5,
	     .release_url = "http://127.0.0.1:8080/d/AAA",
	     .safelist_url = "http://127.0.0.1:8080/d/BBB"},
	    {.recipient = "yamada@corp.test",
	     .sender = "",
	     .subject = NULL,
	     .received = "2026-11-27 08:00 JST",
	     .release_url = "http://127.0.0.1:8080/d/CCC"},
	};
	msgmeta_init();
	for (int lang = DIGEST_LANG_JA; lang <= DIGEST_LANG_EN; lang++) {
		struct digest_mail m = {
		    .lang = (enum digest_lang)lang,
		    .from = "digest@corp.test",
		    .to = "taro@corp.test",
		    .addresses = addresses,
		    .naddresses = 2,
		    .entries = entries,
		    .nentries = 2,
		    .now_ms = ms("2026-11-27T00:00:00Z"),
		    .utc_offset_s = 9 * 3600,
		    .hostname = "lazaret.test",
		};
		char *mail = NULL;
		size_t len = 0;
		assert_int_equal(digest_build_mail(&m, &mail, &len), 0);
		assert_int_equal(strlen(mail), len);
		/* 7-bit on the wire: every byte ASCII, CRLF line ends. */
		for (size_t i = 0; i < len; i++) {
			assert_true((unsigned char)mail[i] < 0x80);
			if (mail[i] == '\n')
				assert_true(i > 0 && mail[i - 1] == '\r');
		}
		struct msgmeta *meta = NULL;
		assert_int_equal(msgmeta_parse(mail, len, &meta), 0);
		assert_string_equal(meta->subject,
				    lang == DIGEST_LANG_JA
					? "[Lazaret] 隔離されたメッセージ: 2 件"
					: "[Lazaret] Quarantine digest: 2 new messages");
		assert_non_null(meta->message_id);
		assert_non_null(strstr(meta->message_id, "@lazaret.test"));
		assert_true(meta->date_ms == ms("2026-11-27T00:00:00Z"));
		msgmeta_free(meta);
		assert_non_null(strstr(mail, "Date: Fri, 27 Nov 2026 09:00:00 +0900\r\n"));
		assert_non_null(strstr(mail, "MIME-Version: 1.0\r\n"));
		assert_non_null(strstr(mail, "Content-Type: multipart/alternative; boundary="));

		char *html = mime_part(mail, "Content-Type: text/html; charset=UTF-8");
		assert_null(strstr(html, "<script>"));
		assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; 当選しました"));
		assert_non_null(strstr(html, "&quot;Evil&quot; &lt;spammer@bad.example&gt;"));
		assert_non_null(strstr(html, "href=\"http://127.0.0.1:8080/d/AAA\""));
		assert_non_null(strstr(html, "href=\"http://127.0.0.1:8080/d/CCC\""));
		assert_non_null(strstr(html, "12.5"));
		assert_non_null(strstr(html, "2026-11-27 09:30 JST"));
		char *text = mime_part(mail, "Content-Type: text/plain; charset=UTF-8");
		assert_non_null(strstr(text, "<script>alert(1)</script> 当選しました"));
		assert_non_null(strstr(text, "http://127.0.0.1:8080/d/BBB"));
		assert_non_null(strstr(text, "yamada@corp.test"));
		assert_non_null(
		    strstr(text, lang == DIGEST_LANG_JA ? "（件名なし）" : "(no subject)"));
		free(html);
		free(text);
		free(mail);
	}
	struct digest_mail empty = {.from = "a@b", .to = "c@d"};
	char *mail = NULL;
	size_t len = 0;
	assert_int_equal(digest_build_mail(&empty, &mail, &len), -EINVAL);
	assert_null(mail);
}

static void test_key_file(void **state)
{
	char dir[] = "/tmp/lazaret-digest-key-XXXXXX";
	assert_non_null(mkdtemp(dir));
	unsigned char a[DIGEST_KEY_LEN], b[DIGEST_KEY_LEN];
	assert_int_equal(digest_key_load(dir, a), 0);
	assert_int_equal(digest_key_load(dir, b), 0); /* the same key on the next start */
	assert_memory_equal(a, b, DIGEST_KEY_LEN);
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, DIGEST_KEY_FILE);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, DIGEST_KEY_LEN);
	/* A damaged key file is an error, not a silently new key. */
	FILE *f = fopen(path, "w");
	fputs("short", f);
	fclose(f);
	assert_int_equal(digest_key_load(dir, b), -EINVAL);
	unlink(path);
	rmdir(dir);
}

/* --- the texts and page files ---------------------------------------------- */

#define WEB_DIGEST LAZARET_WEB_DIR "/digest"

/* A scratch copy of web/digest/ in which a test may spoil one file. */
struct scratch {
	char dir[64];
};

static void scratch_make(struct scratch *s)
{
	static const char *const files[] = {"texts.json", "page.html", "details.html", "form.html",
					    "page.css"};
	snprintf(s->dir, sizeof(s->dir), "/tmp/lazaret-digest-web-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char src[512], dst[512], buf[65536];
		snprintf(src, sizeof(src), "%s/%s", WEB_DIGEST, files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", s->dir, files[i]);
		FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
		assert_non_null(in);
		assert_non_null(out);
		size_t n = fread(buf, 1, sizeof(buf), in);
		assert_int_equal(fwrite(buf, 1, n, out), n);
		fclose(in);
		fclose(out);
	}
}

static void scratch_write(struct scratch *s, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", s->dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void scratch_remove(struct scratch *s)
{
	static const char *const files[] = {"texts.json", "page.html", "details.html", "form.html",
					    "page.css"};
	char path[512];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]);
		unlink(path);
	}
	rmdir(s->dir);
}

static void test_texts_file(void **state)
{
	static const struct {
		const char *json; /* NULL: no file */
		const char *error;
	} cases[] = {
	    {NULL, "cannot read the digest texts"},
	    {"{", "line 1"},
	    {"[]", "exactly \"ja\" and \"en\""},
	    {"{\"en\": {}, \"de\": {}}", "\"ja\" must be an object"},
	    {"{\"ja\": {\"intro\": \"x {n}\"}, \"en\": {}}", "\"ja\" has no text \"mail_subject\""},
	    {"{\"ja\": {\"intro\": \"no count\"}, \"en\": {}}",
	     "\"ja\".\"intro\" must hold \"{n}\""},
	    {"{\"ja\": {\"intro\": 5}, \"en\": {}}", "\"ja\".\"intro\" must be a non-empty string"},
	    {"{\"ja\": {\"intro\": \"\"}, \"en\": {}}", "must be a non-empty string"},
	    {"{\"ja\": {\"Intro\": \"x\"}, \"en\": {}}", "\"ja\" has an unknown text \"Intro\""},
	    {"{\"ja\": {}, \"ja\": {}}", "duplicate"},
	};
	struct scratch s;
	char path[600];
	scratch_make(&s);
	snprintf(path, sizeof(path), "%s/texts.json", s.dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].json == NULL)
			unlink(path);
		else
			scratch_write(&s, "texts.json", cases[i].json);
		char *err = NULL;
		assert_true(digest_texts_load(path, &err) < 0);
		assert_non_null(err);
		if (strstr(err, cases[i].error) == NULL || strstr(err, path) == NULL)
			fail_msg("case %zu: \"%s\", want \"%s\" and the path", i, err,
				 cases[i].error);
		free(err);
	}
	/* A refused file leaves the texts in use as they were. */
	assert_string_equal(digest_texts(DIGEST_LANG_EN)->no_subject, "(no subject)");
	scratch_remove(&s);
}

static void test_page_files(void **state)
{
	static const struct {
		const char *file, *text; /* text NULL: the file is missing */
		const char *error;
	} cases[] = {
	    {"page.css", NULL, "cannot read the digest page"},
	    {"form.html", NULL, "cannot read the digest page"},
	    /* Text into a page unescaped: refused. */
	    {"page.html", "<p>{{{message}}}</p>", "\"message\" is text: write {{message}}"},
	    {"details.html", "<dd>{{{subject}}}</dd>", "\"subject\" is text"},
	    /* Our own HTML escaped would show tags as text: refused too. */
	    {"page.html", "<main>{{details}}</main>", "\"details\" is HTML: write {{{details}}}"},
	    {"form.html", "<button>{{label}}</button>", "unknown placeholder \"label\""},
	    {"page.html", "<p>{{message}}{{{footer}}}</p>", "unknown placeholder \"footer\""},
	    {"form.html", "<button>{{button</button>", "a placeholder {{ is not closed"},
	    {"form.html", "{{! a comment", "a comment {{! is not closed"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scratch s;
		scratch_make(&s);
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", s.dir, cases[i].file);
		if (cases[i].text == NULL)
			unlink(path);
		else
			scratch_write(&s, cases[i].file, cases[i].text);
		char *err = NULL;
		assert_true(digest_pages_load(s.dir, &err) < 0);
		assert_non_null(err);
		if (strstr(err, cases[i].error) == NULL || strstr(err, path) == NULL)
			fail_msg("case %zu: \"%s\", want \"%s\" and the path", i, err,
				 cases[i].error);
		free(err);
		scratch_remove(&s);
	}
	char *err = NULL;
	assert_int_equal(digest_pages_load(WEB_DIGEST, &err), 0);
	assert_null(err);
	digest_pages_unload();
}

static int setup_texts(void **state)
{
	char *err = NULL;
	if (digest_texts_load(WEB_DIGEST "/" DIGEST_TEXTS_FILE, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int teardown_texts(void **state)
{
	digest_texts_unload();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_roundtrip), cmocka_unit_test(test_token_tampered),
	    cmocka_unit_test(test_token_expiry),    cmocka_unit_test(test_token_limits),
	    cmocka_unit_test(test_schedule_parse),  cmocka_unit_test(test_schedule_next),
	    cmocka_unit_test(test_html_escape),	    cmocka_unit_test(test_encode_header),
	    cmocka_unit_test(test_build_mail),	    cmocka_unit_test(test_key_file),
	    cmocka_unit_test(test_texts_file),	    cmocka_unit_test(test_page_files),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup_texts, teardown_texts);
}
