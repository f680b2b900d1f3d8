/*
 * Tests for msgmeta: the Japanese header corpus in data/ja (expected values made by
 * data/ja/make_expected.py with Python's email package as the reference),
 * verdict/score headers, broken MIME, UTF-8 validity on garbage, concurrent
 * parsing, and parse time. Header words and parameters are test_mimeword's,
 * charsets test_charset's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <jansson.h>

#include "mime/msgmeta.h"

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static const char *data_dir(void)
{
	const char *d = getenv("LAZARET_TEST_DATA");
	return d ? d : "tests/unit/data";
}

static struct msgmeta *parse_str(const char *s)
{
	struct msgmeta *m = NULL;
	assert_int_equal(msgmeta_parse(s, strlen(s), &m), 0);
	assert_non_null(m);
	return m;
}

static void assert_valid_utf8(const char *s)
{
	if (s)
		assert_true(g_utf8_validate(s, -1, NULL));
}

static void assert_all_utf8(const struct msgmeta *m)
{
	assert_valid_utf8(m->from);
	assert_valid_utf8(m->from_addr);
	assert_valid_utf8(m->to);
	assert_valid_utf8(m->cc);
	assert_valid_utf8(m->subject);
	assert_valid_utf8(m->message_id);
	for (size_t i = 0; i < m->nheaders; i++) {
		assert_valid_utf8(m->headers[i].name);
		assert_valid_utf8(m->headers[i].value);
	}
	for (size_t i = 0; i < m->nattachments; i++) {
		assert_valid_utf8(m->attachments[i].filename);
		assert_valid_utf8(m->attachments[i].content_type);
	}
}

/* ---- Japanese corpus -------------------------------------------------------------- */

static void check_opt_string(const char *file, const char *field, json_t *want, const char *got)
{
	if (!json_is_string(want))
		return;
	if (got == NULL || strcmp(got, json_string_value(want)) != 0) {
		print_error("%s: %s: got \"%s\", want \"%s\"\n", file, field, got ? got : "(null)",
			    json_string_value(want));
		fail();
	}
}

static void test_ja_corpus(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/ja/expected.json", data_dir());
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (root == NULL) {
		print_error("%s: %s\n", path, err.text);
		fail();
	}
	json_t *cases = json_object_get(root, "cases");
	assert_true(json_array_size(cases) >= 20);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c)
	{
		const char *file = json_string_value(json_object_get(c, "file"));
		snprintf(path, sizeof(path), "%s/ja/%s", data_dir(), file);
		size_t len;
		char *data = read_file(path, &len);
		assert_non_null(data);
		/* msgmeta_parse_kept reads the same, and keeps the parse of a message */
		for (int kept = 0; kept < 2; kept++) {
			struct msgmeta *m = NULL;
			assert_int_equal(kept ? msgmeta_parse_kept(data, len, &m)
					      : msgmeta_parse(data, len, &m),
					 0);
			if ((msgmeta_mime(m) != NULL) != (kept == 1)) {
				print_error("%s: kept %d, parse %p\n", file, kept, msgmeta_mime(m));
				fail();
			}
			assert_true(m->sizes_pending == (kept == 1 && m->nattachments > 0));
			msgmeta_measure(m);
			assert_false(m->sizes_pending);
			assert_all_utf8(m);
			check_opt_string(file, "subject", json_object_get(c, "subject"),
					 m->subject);
			check_opt_string(file, "from", json_object_get(c, "from"), m->from);
			check_opt_string(file, "to", json_object_get(c, "to"), m->to);
			json_t *atts = json_object_get(c, "attachments");
			if (json_array_size(atts) != m->nattachments) {
				print_error("%s: %zu attachments, want %zu\n", file,
					    m->nattachments, json_array_size(atts));
				fail();
			}
			size_t k;
			json_t *a;
			json_array_foreach(atts, k, a)
			{
				struct msgmeta_attachment *got = &m->attachments[k];
				check_opt_string(file, "attachment filename",
						 json_object_get(a, "filename"), got->filename);
				check_opt_string(file, "attachment type",
						 json_object_get(a, "content_type"),
						 got->content_type);
				json_int_t size = json_integer_value(json_object_get(a, "size"));
				if (size >= 0 && (uint64_t)size != got->size) {
					print_error("%s: attachment %zu size %llu, want %lld\n",
						    file, k, (unsigned long long)got->size,
						    (long long)size);
					fail();
				}
			}
			msgmeta_free(m);
		}
		free(data);
	}
	json_decref(root);
}

/* ---- single header values ------------------------------------------------------------ */

/*
 * msgmeta_decode_header is mimeword_decode_header behind GMime's initialisation:
 * the cases themselves are test_mimeword's and test_charset's tables.
 */
static void test_decode_header(void **state)
{
	char *got = msgmeta_decode_header("=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=");
	assert_string_equal(got, "こんにちは");
	free(got);
	got = msgmeta_decode_header("  folded\r\n\t=?x-bogus?B?5pel5pys?=  ");
	assert_string_equal(got, "folded\t日本");
	free(got);
	char *n = msgmeta_decode_header(NULL);
	assert_string_equal(n, "");
	free(n);
}

/*
 * JIS X 0201 half-width katakana inside ISO-2022-JP (ESC ( I, as Windows mailers
 * send it), between JIS X 0208 kanji and ASCII, in the Subject and in a text/plain
 * body: decoded to U+FF61..U+FF9F, no escape bytes left.
 */
static void test_halfwidth_katakana(void **state)
{
	(void)state;
	static const char msg[] = "From: a@example.jp\r\n"
				  "Subject: =?ISO-2022-JP?B?GyRCQEE1YT1xGyhJNl1AXhsoQiBPSw==?=\r\n"
				  "MIME-Version: 1.0\r\n"
				  "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
				  "Content-Transfer-Encoding: 7bit\r\n\r\n"
				  "\x1b(I6]@^\x1b(B No.1\r\n"
				  "\x1b$B@A5a=q\x1b(I1\x1b$B$G$9\x1b(B\r\n"
				  "\x1b(I!_\x1b(B\r\n";
	struct msgmeta *m = parse_str(msg);
	assert_string_equal(m->subject, "請求書ｶﾝﾀﾞ OK");
	msgmeta_free(m);
	struct msgmeta_text t;
	assert_int_equal(msgmeta_text_body(msg, strlen(msg), 0, &t), 0);
	assert_string_equal(t.text, "ｶﾝﾀﾞ No.1\n請求書ｱです\n\xEF\xBD\xA1\xEF\xBE\x9F");
	assert_null(strchr(t.text, 0x1b));
	free(t.text);

	/* Katakana only, entered from ASCII mode: glibc's ISO-2022-JP lets ESC ( I through. */
	static const char kana_only[] = "Subject: =?ISO-2022-JP?B?GyhJNl1AXhsoQg==?=\r\n"
					"Content-Type: text/plain; charset=\"iso-2022-jp\"\r\n\r\n"
					"Re: \x1b(I6]@^\x1b(B OK\r\n";
	m = parse_str(kana_only);
	assert_string_equal(m->subject, "ｶﾝﾀﾞ");
	msgmeta_free(m);
	assert_int_equal(msgmeta_text_body(kana_only, strlen(kana_only), 0, &t), 0);
	assert_string_equal(t.text, "Re: ｶﾝﾀﾞ OK");
	free(t.text);
}

/* ---- top-level fields ---------------------------------------------------------------- */

static void test_fields(void **state)
{
	struct msgmeta *m =
	    parse_str("Return-Path: <bounce@example.jp>\r\n"
		      "From: =?UTF-8?B?5bGx55SwIOWkqumDjg==?= <Taro@Example.JP>\r\n"
		      "To: a@example.com\r\n"
		      "Cc: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <c@example.com>, d@example.com\r\n"
		      "Subject: hello\r\n"
		      "Date: Tue, 01 Apr 2025 10:00:00 +0900\r\n"
		      "Message-ID: <20250401.abc@mail.example.jp>\r\n"
		      "X-Lazaret-Gateway: gw1\r\n"
		      "X-Lazaret-Client-Address: 192.0.2.7\r\n"
		      "MIME-Version: 1.0\r\n"
		      "Content-Type: text/plain; charset=UTF-8\r\n"
		      "\r\n"
		      "body\r\n");
	assert_string_equal(m->from, "山田 太郎 <Taro@Example.JP>");
	assert_string_equal(m->from_addr, "Taro@Example.JP");
	assert_string_equal(m->to, "a@example.com");
	assert_string_equal(m->cc, "山田 <c@example.com>, d@example.com");
	assert_string_equal(m->subject, "hello");
	assert_string_equal(m->message_id, "20250401.abc@mail.example.jp");
	assert_int_equal(m->date_ms, INT64_C(1743469200000));
	assert_string_equal(m->gateway, "gw1");
	assert_string_equal(m->client_address, "192.0.2.7");
	assert_null(m->verdict);
	assert_false(m->has_score);
	/* every top-level field in order, Content-* included */
	static const char *names[] = {"Return-Path",
				      "From",
				      "To",
				      "Cc",
				      "Subject",
				      "Date",
				      "Message-ID",
				      "X-Lazaret-Gateway",
				      "X-Lazaret-Client-Address",
				      "MIME-Version",
				      "Content-Type"};
	assert_int_equal(m->nheaders, sizeof(names) / sizeof(names[0]));
	for (size_t i = 0; i < m->nheaders; i++)
		assert_string_equal(m->headers[i].name, names[i]);
	assert_string_equal(m->headers[3].value, m->cc);
	assert_string_equal(m->headers[10].value, "text/plain; charset=UTF-8");
	assert_int_equal(m->nattachments, 0);
	msgmeta_free(m);

	/* group syntax and a From with no angle brackets */
	m = parse_str("From: Team: x@example.org, y@example.org;\r\nSubject: g\r\n\r\n");
	assert_string_equal(m->from_addr, "x@example.org");
	msgmeta_free(m);
	m = parse_str("From: bare@example.net\r\n\r\n");
	assert_string_equal(m->from_addr, "bare@example.net");
	msgmeta_free(m);
	m = parse_str("From: nobody\r\nDate: not a date\r\n\r\n");
	assert_null(m->from_addr);
	assert_int_equal(m->date_ms, 0);
	msgmeta_free(m);
}

/* ---- verdict and score ----------------------------------------------------------------- */

static const struct {
	const char *headers;
	const char *verdict; /* NULL: none */
	bool has_score;
	double score;
} verdict_cases[] = {
    {"X-Lazaret-Verdict: spam\r\nX-Lazaret-Score: 12.5\r\n", "spam", true, 12.5},
    {"X-Lazaret-Verdict: SUSPECT\r\nX-Lazaret-Score: -1.25\r\n", "suspect", true, -1.25},
    {"X-Lazaret-Verdict: Spam\r\n", "spam", false, 0},
    {"X-Lazaret-Verdict: ham\r\n", NULL, false, 0},
    {"X-Lazaret-Score: junk\r\n", NULL, false, 0},
    {"X-Spam-Status: Yes, score=7.2 required=5.0 tests=BAYES_99,HTML_MESSAGE\r\n", "spam", true,
     7.2},
    {"X-Spam-Status: No, score=3.1 required=5.0 tests=NONE autolearn=no\r\n", "suspect", true, 3.1},
    {"X-Spam-Status: No, score=-0.5 required=5.0\r\n", "suspect", true, -0.5},
    {"X-Spam-Status: Yes, hits=9.0 required=5.0\r\n", "spam", true, 9.0},
    {"X-Spam-Status: Yes,\r\n\tscore=11.3\r\n\trequired=5.0\r\n", "spam", true, 11.3},
    {"X-Spam-Flag: YES\r\nX-Spam-Score: 7.2\r\n", "spam", true, 7.2},
    {"X-Spam-Flag: NO\r\n", "suspect", false, 0},
    {"X-Spam-Score: -2.4\r\n", NULL, true, -2.4},
    {"X-Spamd-Result: default: True [15.00 / 15.00]; GTUBE(15.00)[]\r\n", "spam", true, 15.0},
    {"X-Spamd-Result: default: False [2.10 / 15.00]; R_SPF_ALLOW(-0.20)\r\n", "suspect", true, 2.1},
    {"X-Spamd-Result: default: False [-1.50 / 15.00]\r\n", "suspect", true, -1.5},
    /* our own headers win over the filters' */
    {"X-Spam-Status: No, score=1.0\r\nX-Lazaret-Verdict: spam\r\nX-Lazaret-Score: 20\r\n", "spam",
     true, 20.0},
    /* a verdict of our own, the score from SpamAssassin */
    {"X-Lazaret-Verdict: suspect\r\nX-Spam-Status: Yes, score=8.8\r\n", "suspect", true, 8.8},
    {"x-spam-status: yes, score=6\r\n", "spam", true, 6.0},
    {"X-Spam-Status: Yes, score=nan\r\n", "spam", false, 0},
    {"Subject: nothing\r\n", NULL, false, 0},
};

static void test_verdict(void **state)
{
	for (size_t i = 0; i < sizeof(verdict_cases) / sizeof(verdict_cases[0]); i++) {
		char *msg = g_strdup_printf("From: a@example.com\r\n%sSubject: x\r\n\r\nbody\r\n",
					    verdict_cases[i].headers);
		struct msgmeta *m = parse_str(msg);
		if (verdict_cases[i].verdict) {
			if (m->verdict == NULL || strcmp(m->verdict, verdict_cases[i].verdict)) {
				print_error("case %zu: verdict %s\n", i,
					    m->verdict ? m->verdict : "(null)");
				fail();
			}
		} else if (m->verdict) {
			print_error("case %zu: unexpected verdict %s\n", i, m->verdict);
			fail();
		}
		if (m->has_score != verdict_cases[i].has_score ||
		    fabs(m->score - verdict_cases[i].score) > 1e-9) {
			print_error("case %zu: score %d/%g\n", i, m->has_score, m->score);
			fail();
		}
		msgmeta_free(m);
		g_free(msg);
	}
}

/* ---- broken MIME --------------------------------------------------------------------- */

static const struct {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen */
	const char *subject;
	const char *from_addr;
	size_t min_attachments;
	const char *first_filename;
} broken_cases[] = {
    {"empty", "", 0, NULL, NULL, 0, NULL},
    {"no headers, body only", "\r\njust a body\r\n", 0, NULL, NULL, 0, NULL},
    {"text without any header", "hello world, no colon here\r\nmore\r\n", 0, NULL, NULL, 0, NULL},
    {"truncated multipart",
     "From: a@example.jp\r\nSubject: =?UTF-8?B?5YiH44KM44Gf?=\r\n"
     "Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\n"
     "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK",
     0, "切れた", "a@example.jp", 1, "a.pdf"},
    {"multipart without boundary",
     "Subject: nb\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n"
     "hi\r\n--x--\r\n",
     0, "nb", NULL, 0, NULL},
    {"header without colon in the middle",
     "From: b@example.jp\r\nthis line is broken\r\nSubject: still read\r\n\r\nbody", 0,
     "still read", "b@example.jp", 0, NULL},
    {"garbage header names", "\x01\x02: x\r\n: empty name\r\nSubject: ok\r\n\xff\xfe:\xff\r\n\r\n",
     0, "ok", NULL, 0, NULL},
    {"mbox From line first", "From someone@example.com Mon Jan  1 00:00:00 2024\nSubject: mbox\n\n",
     0, "mbox", NULL, 0, NULL},
    {"NUL bytes", "Subject: a\0b\r\nFrom: c@example.jp\r\n\r\n\0\0\0", 39, "ab", "c@example.jp", 0,
     NULL},
    {"8-bit everywhere",
     "Subject: \xff\xfe\xfd\r\nFrom: \x80\x81 <x@example.jp>\r\nContent-Type: multipart/mixed; "
     "boundary=\"\xe3\x81\x82\"\r\n\r\n--\xe3\x81\x82\r\nContent-Type: application/\xff; "
     "name=\"\xff\xff.bin\"\r\n\r\n\xff\xff\r\n--\xe3\x81\x82--\r\n",
     0, NULL, "x@example.jp", 1, NULL},
    {"header block never ends", "Subject: unterminated\r\nX-A: b", 0, "unterminated", NULL, 0,
     NULL},
    {"LF only", "Subject: lf\nFrom: l@example.jp\n\nbody\n", 0, "lf", "l@example.jp", 0, NULL},
    {"bad base64 attachment",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: image/png; "
     "name=x.png\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!@@@***\r\n--b--\r\n",
     0, NULL, NULL, 1, "x.png"},
    {"unterminated quotes in parameters",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/zip; "
     "name=\"open.zip\r\n\r\nPK\r\n--b--\r\n",
     0, NULL, NULL, 1, "open.zip"},
    {"RFC 2231 sections out of order and missing",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
     "Content-Disposition: attachment; filename*1=\"b.pdf\"; filename*0=\"a\"; filename*9=\"z\"\r\n"
     "\r\nx\r\n--b--\r\n",
     0, NULL, NULL, 1, "ab.pdf"},
};

static void test_broken(void **state)
{
	for (size_t i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++) {
		const char *d = broken_cases[i].data;
		size_t len = broken_cases[i].len ? broken_cases[i].len : strlen(d);
		struct msgmeta *m = NULL;
		assert_int_equal(msgmeta_parse(d, len, &m), 0);
		assert_non_null(m);
		assert_all_utf8(m);
		const char *want = broken_cases[i].subject;
		if (want && (m->subject == NULL || strcmp(m->subject, want))) {
			print_error("%s: subject %s\n", broken_cases[i].name,
				    m->subject ? m->subject : "(null)");
			fail();
		}
		want = broken_cases[i].from_addr;
		if (want && (m->from_addr == NULL || strcmp(m->from_addr, want))) {
			print_error("%s: from_addr %s\n", broken_cases[i].name,
				    m->from_addr ? m->from_addr : "(null)");
			fail();
		}
		if (m->nattachments < broken_cases[i].min_attachments) {
			print_error("%s: %zu attachments\n", broken_cases[i].name, m->nattachments);
			fail();
		}
		want = broken_cases[i].first_filename;
		if (want && (m->attachments[0].filename == NULL ||
			     strcmp(m->attachments[0].filename, want))) {
			print_error("%s: filename %s\n", broken_cases[i].name,
				    m->attachments[0].filename ? m->attachments[0].filename
							       : "(null)");
			fail();
		}
		msgmeta_free(m);
	}
	struct msgmeta *m = NULL;
	assert_int_equal(msgmeta_parse(NULL, 0, &m), -EINVAL);
	msgmeta_free(NULL);
}

/* A text body is not an attachment; a text part with a file name is. */
static void test_attachment_rules(void **state)
{
	struct msgmeta *m = parse_str(
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
	    "--b\r\nContent-Type: text/html; name=only-name.html\r\n\r\n<p>x</p>\r\n"
	    "--b\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename=note.txt\r\n"
	    "\r\nnote\r\n"
	    "--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment\r\n\r\na,b\r\n"
	    "--b\r\nContent-Type: Application/PDF; name=\"q.pdf\"\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n=41=42C\r\n"
	    "--b\r\nContent-Type: message/rfc822; name=fwd.eml\r\n\r\n"
	    "Subject: inner\r\nContent-Type: application/octet-stream; name=in.bin\r\n\r\nxyz\r\n"
	    "--b--\r\n");
	assert_int_equal(m->nattachments, 5);
	assert_string_equal(m->attachments[0].filename, "note.txt");
	assert_string_equal(m->attachments[0].content_type, "text/plain");
	assert_null(m->attachments[1].filename);
	assert_string_equal(m->attachments[1].content_type, "text/csv");
	assert_string_equal(m->attachments[2].filename, "q.pdf");
	assert_string_equal(m->attachments[2].content_type, "application/pdf");
	assert_int_equal(m->attachments[2].size,
			 3); /* "ABC": the CRLF before a boundary is the boundary's */
	assert_string_equal(m->attachments[3].filename, "fwd.eml");
	assert_string_equal(m->attachments[3].content_type, "message/rfc822");
	assert_string_equal(m->attachments[4].filename, "in.bin");
	assert_int_equal(m->attachments[4].size, 3);
	msgmeta_free(m);
}

/* The message of test_attachment_rules, with a base64 part with a Japanese name. */
static const char attachments_msg[] =
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    "--b\r\nContent-Type: text/html; name=only-name.html\r\n\r\n<p>x</p>\r\n"
    "--b\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename=note.txt\r\n"
    "\r\nnote\r\n"
    "--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment\r\n\r\na,b\r\n"
    "--b\r\nContent-Type: Application/PDF; name=\"q.pdf\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n=41=42C\r\n"
    "--b\r\nContent-Type: message/rfc822; name=fwd.eml\r\n\r\n"
    "Subject: inner\r\nContent-Type: application/octet-stream; name=in.bin\r\n\r\nxyz\r\n"
    "--b\r\nContent-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.bin\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nAAH/gH8NCg==\r\n"
    "--b--\r\n";

/* Each attachment's decoded bytes, by the index the listing gives it. */
static void test_attachment_data(void **state)
{
	static const struct {
		size_t index;
		int rc;
		const char *bytes; /* NULL: compare only the length */
		size_t len;
	} cases[] = {
	    {0, 0, "note", 4},
	    {1, 0, "a,b", 3},
	    {2, 0, "ABC", 3}, /* quoted-printable decoded */
	    {3, 0, NULL, 0},  /* the attached message as it is: checked below */
	    {4, 0, "xyz", 3}, /* a part inside the attached message */
	    {5, 0, "\x00\x01\xff\x80\x7f\r\n", 7}, /* base64 decoded, binary kept */
	    {6, -ENOENT, NULL, 0},
	    {1000, -ENOENT, NULL, 0},
	};
	struct msgmeta *m = parse_str(attachments_msg);
	assert_int_equal(m->nattachments, 6);
	assert_string_equal(m->attachments[5].filename, "見積.bin");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *out = (unsigned char *)"sentinel";
		size_t n = 99;
		int rc = msgmeta_attachment_data(attachments_msg, strlen(attachments_msg),
						 cases[i].index, &out, &n);
		if (rc != cases[i].rc) {
			print_error("index %zu: rc %d, want %d\n", cases[i].index, rc, cases[i].rc);
			fail();
		}
		if (rc < 0) {
			assert_null(out);
			assert_int_equal(n, 0);
			continue;
		}
		assert_non_null(out);
		/* The listing's size is the size of what is handed out. */
		assert_int_equal(n, m->attachments[cases[i].index].size);
		if (cases[i].bytes != NULL) {
			assert_int_equal(n, cases[i].len);
			assert_memory_equal(out, cases[i].bytes, n);
		} else {
			assert_non_null(memmem(out, n, "Subject: inner", 14));
			assert_non_null(memmem(out, n, "xyz", 3));
		}
		free(out);
	}
	msgmeta_free(m);

	unsigned char *out = NULL;
	size_t n = 0;
	assert_int_equal(msgmeta_attachment_data(NULL, 0, 0, &out, &n), -EINVAL);
	assert_int_equal(msgmeta_attachment_data("x", 1, 0, NULL, &n), -EINVAL);
	/* No MIME at all, and garbage: no attachment, no crash. */
	assert_int_equal(msgmeta_attachment_data("", 0, 0, &out, &n), -ENOENT);
	assert_int_equal(msgmeta_attachment_data("\x01\x02garbage", 9, 0, &out, &n), -ENOENT);
}

/* Past the listing's limit nothing is numbered, so nothing can be fetched either. */
static void test_attachment_data_limit(void **state)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 1030; i++)
		g_string_append_printf(s,
				       "--b\r\nContent-Type: application/octet-stream; "
				       "name=f%d.bin\r\n\r\n%d\r\n",
				       i, i);
	g_string_append(s, "--b--\r\n");
	struct msgmeta *m = parse_str(s->str);
	size_t listed = m->nattachments;
	assert_true(listed >= 1 && listed < 1030);
	assert_string_equal(m->attachments[listed - 1].filename, "f1023.bin");
	msgmeta_free(m);
	unsigned char *out = NULL;
	size_t n = 0;
	assert_int_equal(msgmeta_attachment_data(s->str, s->len, listed - 1, &out, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "1023", 4);
	free(out);
	assert_int_equal(msgmeta_attachment_data(s->str, s->len, listed, &out, &n), -ENOENT);
	g_string_free(s, TRUE);
}

/* Raw Shift_JIS file names: 0x5C inside a quoted string is half of a character. */
static void test_raw_sjis_backslash(void **state)
{
	struct msgmeta *m =
	    parse_str("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		      "Content-Type: application/vnd.ms-excel; name=\"\x95\x5c.xls\"\r\n"
		      "Content-Disposition: attachment; filename=\"\x83\x5c\x95\x5c.xls\"\r\n"
		      "\r\nx\r\n--b--\r\n");
	assert_int_equal(m->nattachments, 1);
	assert_string_equal(m->attachments[0].filename, "ソ表.xls");
	msgmeta_free(m);
}

/* Forwarded messages nested far deeper than the limit: parsed, bounded, no crash. */
static void test_deep_nesting(void **state)
{
	GString *s = g_string_new("Subject: deep\r\n");
	for (int i = 0; i < 200; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\nSubject: level\r\n");
	g_string_append(s, "Content-Type: application/zip; name=bottom.zip\r\n\r\nPK\r\n");
	struct msgmeta *m = parse_str(s->str);
	assert_string_equal(m->subject, "deep");
	assert_int_equal(m->nattachments, 0); /* beyond the depth limit */
	msgmeta_free(m);
	g_string_free(s, TRUE);

	s = g_string_new("Subject: shallow\r\n");
	for (int i = 0; i < 5; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\nSubject: level\r\n");
	g_string_append(s, "Content-Type: application/zip; name=bottom.zip\r\n\r\nPK\r\n");
	m = parse_str(s->str);
	assert_int_equal(m->nattachments, 1);
	assert_string_equal(m->attachments[0].filename, "bottom.zip");
	msgmeta_free(m);
	g_string_free(s, TRUE);
}

/*
 * What the gateway's content filters rely on: names written as RFC 2231
 * continuations with charsets and as RFC 2047 words are decoded; named text parts
 * that are not attachments are kept apart; walks cut short say so.
 */
static void test_names_for_filters(void **state)
{
	(void)state;
	struct msgmeta *m = parse_str(
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: text/plain; name=\"note.exe\"\r\n\r\nhi\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
	    " filename*0*=ISO-2022-JP''%1B%24B%40A5a%3Dq; filename*1*=%1B%28B.exe\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
	    " filename*0=\"inv\"; filename*1*=%6F%69ce.exe\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream;\r\n"
	    " name=\"=?ISO-2022-JP?B?GyRCQEE1YT1xGyhCLmV4ZQ==?=\"\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?Q?a=2Eexe?=\"\r\n"
	    "\r\nMZ\r\n"
	    "--b--\r\n");
	assert_int_equal(m->nattachments, 4);
	assert_string_equal(m->attachments[0].filename, "請求書.exe");
	assert_string_equal(m->attachments[1].filename, "invoice.exe");
	assert_string_equal(m->attachments[2].filename, "請求書.exe");
	assert_string_equal(m->attachments[3].filename, "a.exe");
	assert_int_equal(m->nother_names, 1);
	assert_string_equal(m->other_names[0], "note.exe");
	assert_false(m->parts_incomplete);
	assert_false(m->headers_incomplete);
	msgmeta_free(m);

	/* A part's other names: whichever a client picks, the filters see it. */
	m = parse_str(
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: application/octet-stream; name=\"b.exe\"\r\n"
	    "Content-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
	    " filename=\"c.exe\"; filename*=UTF-8''c.pdf\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
	    " filename=\"d.pdf\"; filename=\"=?UTF-8?Q?d=2Eexe?=\"; "
	    "filename=\"d.pdf\"\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/octet-stream; name=\"e.exe\"\r\n"
	    "Content-Disposition: attachment; filename=\"\"\r\n\r\nMZ\r\n"
	    "--b\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\n"
	    "Content-Disposition: attachment; filename=\"f.pdf\"\r\n\r\nx\r\n"
	    "--b--\r\n");
	assert_int_equal(m->nattachments, 5);
	/* The listing itself is unchanged: the disposition's name, RFC 2231 first. */
	assert_string_equal(m->attachments[0].filename, "a.pdf");
	assert_string_equal(m->attachments[1].filename, "c.pdf");
	assert_string_equal(m->attachments[2].filename, "d.pdf");
	assert_string_equal(m->attachments[3].filename, "");
	assert_string_equal(m->attachments[4].filename, "f.pdf");
	static const char *const others[] = {"b.exe", "c.exe", "d.exe", "e.exe"};
	assert_int_equal(m->nother_names, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(m->other_names[i], others[i]);
	msgmeta_free(m);

	/* Deeper than the walk follows. */
	GString *s = g_string_new("Subject: deep\r\n");
	for (int i = 0; i < 40; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\nSubject: level\r\n");
	g_string_append(s, "Content-Type: application/zip; name=bottom.zip\r\n\r\nPK\r\n");
	m = parse_str(s->str);
	assert_true(m->parts_incomplete);
	msgmeta_free(m);
	g_string_free(s, TRUE);

	/* More attachments than listed; more header fields than recorded. */
	s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 1030; i++)
		g_string_append_printf(s,
				       "--b\r\nContent-Type: application/pdf; name=f%d.pdf\r\n\r\n"
				       "x\r\n",
				       i);
	g_string_append(s, "--b--\r\n");
	m = parse_str(s->str);
	assert_true(m->parts_incomplete);
	msgmeta_free(m);
	g_string_free(s, TRUE);

	s = g_string_new("");
	for (int i = 0; i < 1100; i++)
		g_string_append_printf(s, "X-H%d: v\r\n", i);
	g_string_append(s, "\r\nbody\r\n");
	m = parse_str(s->str);
	assert_true(m->headers_incomplete);
	assert_false(m->parts_incomplete);
	msgmeta_free(m);
	g_string_free(s, TRUE);
}

/* Random bytes and mutated real messages: every field stays valid UTF-8. */
static void test_garbage_stays_utf8(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/ja/19-forwarded-rfc822.eml", data_dir());
	size_t len;
	char *base = read_file(path, &len);
	assert_non_null(base);
	uint32_t x = 12345;
	for (int round = 0; round < 300; round++) {
		char *d = malloc(len);
		memcpy(d, base, len);
		for (int k = 0; k < 20; k++) {
			x = x * 1103515245u + 12345u;
			d[(x >> 8) % len] = (char)(x >> 24);
		}
		struct msgmeta *m = NULL;
		assert_int_equal(msgmeta_parse(d, len, &m), 0);
		assert_all_utf8(m);
		msgmeta_free(m);
		free(d);
	}
	free(base);
}

/* ---- concurrency and speed ------------------------------------------------------------ */

struct thread_job {
	const char *data;
	size_t len;
	const char *want_subject;
	size_t want_attachments;
	int failures;
};

static void *parse_many(void *arg)
{
	struct thread_job *job = arg;
	for (int i = 0; i < 200; i++) {
		struct msgmeta *m = NULL;
		if (msgmeta_parse(job->data, job->len, &m) != 0 || m->subject == NULL ||
		    strcmp(m->subject, job->want_subject) != 0 ||
		    m->nattachments != job->want_attachments)
			job->failures++;
		msgmeta_free(m);
	}
	return NULL;
}

static void test_threads(void **state)
{
	static const struct {
		const char *file, *subject;
		size_t natt;
	} files[] = {
	    {"18-nested-multipart.eml", "資料送付", 2},
	    {"19-forwarded-rfc822.eml", "転送：元のメール", 1},
	    {"21-cp50220-nec.eml", "①ご案内 ㈱サンプル", 0},
	    {"13-raw-eucjp.eml", "おしらせ です", 0},
	};
	enum { NTHREADS = 4 };
	pthread_t t[NTHREADS];
	struct thread_job jobs[NTHREADS];
	char *bufs[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/ja/%s", data_dir(), files[i].file);
		bufs[i] = read_file(path, &jobs[i].len);
		assert_non_null(bufs[i]);
		jobs[i].data = bufs[i];
		jobs[i].want_subject = files[i].subject;
		jobs[i].want_attachments = files[i].natt;
		jobs[i].failures = 0;
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, parse_many, &jobs[i]), 0);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(jobs[i].failures, 0);
		free(bufs[i]);
	}
}

/* A 10 KB message with a Japanese subject and an attachment, parsed repeatedly. */
static void test_speed(void **state)
{
	GString *s = g_string_new(NULL);
	for (int i = 0; i < 10; i++)
		g_string_append(s, "Received: from mx.example.jp (mx.example.jp [192.0.2.1])\r\n"
				   "\tby gw.example.co.jp with ESMTPS id 4Vx; Mon, 13 May 2024 "
				   "09:30:00 +0900\r\n");
	g_string_append(s, "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <a@example.jp>\r\n"
			   "Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
			   "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
			   "Content-Type: text/plain\r\n\r\n");
	for (int i = 0; i < 20; i++)
		g_string_append(s, "本文の行です。本文の行です。本文の行です。\r\n");
	g_string_append(s, "--b\r\nContent-Type: application/pdf; name=a.pdf\r\n"
			   "Content-Transfer-Encoding: base64\r\n\r\n");
	while (s->len < 10 * 1024)
		g_string_append(
		    s, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\r\n");
	g_string_append(s, "--b--\r\n");

	enum { ROUNDS = 2000 };
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < ROUNDS; i++) {
		struct msgmeta *m = NULL;
		assert_int_equal(msgmeta_parse(s->str, s->len, &m), 0);
		assert_int_equal(m->nattachments, 1);
		msgmeta_free(m);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
		    ROUNDS / 1000.0;
	print_message("msgmeta_parse: %.1f us per %zu-byte message\n", us, s->len);
	/* Generous for sanitizer builds and a loaded machine; catches a blow-up, not noise. */
	assert_true(us < 5000.0);
	g_string_free(s, TRUE);
}

int main(void)
{
	msgmeta_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ja_corpus),
	    cmocka_unit_test(test_decode_header),
	    cmocka_unit_test(test_halfwidth_katakana),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_verdict),
	    cmocka_unit_test(test_broken),
	    cmocka_unit_test(test_attachment_rules),
	    cmocka_unit_test(test_attachment_data),
	    cmocka_unit_test(test_attachment_data_limit),
	    cmocka_unit_test(test_raw_sjis_backslash),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_names_for_filters),
	    cmocka_unit_test(test_garbage_stays_utf8),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_speed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
