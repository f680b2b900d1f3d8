/*
 * test_mimeword — header text and MIME parameters to UTF-8. One table row per raw
 * header value with the exact text expected; one per parameter search with the
 * value and the other names a differently reading client would show.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "common/strbuf.h"
#include "mime/mimeword.h"

/* ---- RFC 2047 header text ---- */

static const struct {
	const char *raw;
	const char *want;
} decode_cases[] = {
    {"", ""},
    {"plain ascii", "plain ascii"},
    {"  folded\r\n\tvalue  ", "folded\tvalue"},
    /* ISO-2022-JP: こんにちは */
    {"=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"},
    /* the same word split in the middle of a JIS pair across two words */
    {"=?ISO-2022-JP?B?GyRCJDMkcyQ=?= =?ISO-2022-JP?B?SyRBJE8bKEI=?=", "こんにちは"},
    /* whitespace between words is dropped, kept between word and text */
    {"=?UTF-8?B?5pel?=  =?UTF-8?B?5pys?= text", "日本 text"},
    {"a =?UTF-8?Q?=E6=97=A5?= b", "a 日 b"},
    /* Q hex triplet split across two words of one charset */
    {"=?UTF-8?Q?=E6=97?= =?UTF-8?Q?=A5?=", "日"},
    /* CP50220: ① (JIS 0x2D21) and ㈱ (0x2D6A) labelled ISO-2022-JP */
    {"=?iso-2022-jp?B?GyRCLSEtahsoQg==?=", "①㈱"},
    /* JIS X 0201 katakana (ESC ( I) in ISO-2022-JP words: ｶﾝﾀﾞ, also split over two words */
    {"=?ISO-2022-JP?B?GyhJNl1AXhsoQg==?=", "ｶﾝﾀﾞ"},
    {"=?ISO-2022-JP?B?GyRCQEE1YT1xGyhJNl1AXhsoQiBPSw==?=", "請求書ｶﾝﾀﾞ OK"},
    {"Re: =?ISO-2022-JP?B?GyhJNl0=?= =?ISO-2022-JP?B?QF4bKEI=?= x", "Re: ｶﾝﾀﾞ x"},
    {"=?ISO-2022-JP?B?DjZdDw==?=", "ｶﾝ"},
    {"=?iso-2022-jp?q?=1B(I6]=1B(B?=", "ｶﾝ"},
    /* Shift_JIS as Windows means it: ① is CP932 0x8740, backslash stays a backslash */
    {"=?shift_jis?B?h0Bc?=", "①\\"},
    /* EUC-JP with an NEC extension (① = 0xADA1) */
    {"=?EUC-JP?B?raE=?=", "①"},
    /* raw ISO-2022-JP in a header, no encoded word */
    {"\x1b$B$3$s$K$A$O\x1b(B", "こんにちは"},
    /* raw EUC-JP hiragana: also valid Shift_JIS half-width katakana */
    {"\xa4\xb3\xa4\xf3\xa4\xcb\xa4\xc1\xa4\xcf", "こんにちは"},
    /* raw Shift_JIS */
    {"\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd", "こんにちは"},
    /* invalid UTF-8 inside a UTF-8 word: every bad byte becomes U+FFFD */
    {"=?UTF-8?B?/w==?=", "\xEF\xBF\xBD"},
    /* unknown charset: the bytes are guessed (here UTF-8) */
    {"=?x-bogus?B?5pel5pys?=", "日本"},
    /* a label glibc folds into UTF-8, carrying a code point above U+10FFFF */
    {"=?u=tf-8?B?97S0tA==?=", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
    /* charset with RFC 2231 language tag */
    {"=?UTF-8*ja?B?5pel?=", "日"},
    /* not encoded words: left alone */
    {"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="},
    {"=?UTF-8?B?5pel", "=?UTF-8?B?5pel"},
    {"a=?b", "a=?b"},
    {"=?"
     "?B?"
     "?=",
     "=?"
     "?B?"
     "?="},
    /* encoded word glued to text */
    {"Re:=?UTF-8?B?5pel?=end", "Re:日end"},
};

static void test_decode_header(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		char *got = mimeword_decode_header(decode_cases[i].raw);
		assert_non_null(got);
		assert_true(g_utf8_validate(got, -1, NULL));
		if (strcmp(got, decode_cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, decode_cases[i].want);
		free(got);
	}
	/* a charset label longer than any real one: not an encoded word, kept as text */
	char long_cs[128] = "=?";
	memset(long_cs + 2, 'a', MIMEWORD_MAX_CHARSET_LEN + 1);
	strcpy(long_cs + 2 + MIMEWORD_MAX_CHARSET_LEN + 1, "?B?5pel?=");
	char *lc = mimeword_decode_header(long_cs);
	assert_string_equal(lc, long_cs);
	free(lc);
	/* one at the limit still is */
	long_cs[2 + MIMEWORD_MAX_CHARSET_LEN] = '\0';
	strcat(long_cs, "?B?5pel?=");
	lc = mimeword_decode_header(long_cs);
	assert_string_equal(lc, "日");
	free(lc);

	char *n = mimeword_decode_header(NULL);
	assert_string_equal(n, "");
	free(n);
}

/* mimeword_decode appends and does not unfold. */
static void test_decode_appends(void **state)
{
	(void)state;
	struct strbuf out = STRBUF_INIT;
	strbuf_puts(&out, "x:");
	static const char in[] = "=?UTF-8?B?5pel?=\r\n =?UTF-8?B?5pys?= a\r\n b";
	mimeword_decode(&out, in, strlen(in));
	assert_string_equal(strbuf_str(&out), "x:日本 a\r\n b");
	strbuf_free(&out);
	char *u;
	size_t n;
	u = mimeword_unfold(" \ta\r\n\tb \t", &n);
	assert_string_equal(u, "a\tb");
	assert_int_equal(n, 3);
	free(u);
}

/* ---- RFC 2231 parameters ---- */

struct param_case {
	const char *raw;
	const char *want;   /* parameter name */
	const char *expect; /* NULL: absent */
	const char *alts;   /* the other names, each followed by '|' */
};

static const struct param_case param_cases[] = {
    {.raw = "attachment; filename=\"a.pdf\"", .want = "filename", .expect = "a.pdf", .alts = ""},
    {.raw = "attachment; FileName=a.pdf", .want = "filename", .expect = "a.pdf", .alts = ""},
    {.raw = "attachment; filename=my file.pdf ; size=3",
     .want = "filename",
     .expect = "my file.pdf",
     .alts = ""},
    {.raw = "attachment; size=3;filename = \"a\\\"b\"",
     .want = "filename",
     .expect = "a\"b",
     .alts = ""},
    {.raw = "attachment; filename=\"unterminated",
     .want = "filename",
     .expect = "unterminated",
     .alts = ""},
    {.raw = "attachment; filename=\"\"", .want = "filename", .expect = "", .alts = ""},
    {.raw = "attachment", .want = "filename", .expect = NULL, .alts = ""},
    {.raw = "attachment; filenamex=a.pdf", .want = "filename", .expect = NULL, .alts = ""},
    {.raw = "attachment; filename*=UTF-8''%E6%97%A5.pdf",
     .want = "filename",
     .expect = "日.pdf",
     .alts = ""},
    {.raw = "attachment; filename*=utf-8'ja'%E6%97%A5",
     .want = "filename",
     .expect = "日",
     .alts = ""},
    {.raw = "application/pdf; name*=''%41%42", .want = "name", .expect = "AB", .alts = ""},
    /* continuations, with and without charset */
    {.raw = "attachment; filename*0*=ISO-2022-JP''%1B%24B%40A5a%3Dq; filename*1*=%1B%28B.exe",
     .want = "filename",
     .expect = "請求書.exe",
     .alts = ""},
    {.raw = "attachment; filename*0=\"inv\"; filename*1*=%6F%69ce.exe",
     .want = "filename",
     .expect = "invoice.exe",
     .alts = ""},
    {.raw = "attachment; filename*1=\"b\"; filename*0=\"a\"",
     .want = "filename",
     .expect = "ab",
     .alts = ""},
    {.raw = "attachment; filename*0=a; filename*2=c",
     .want = "filename",
     .expect = "a",
     .alts = ""},
    {.raw = "attachment; filename*64=a", .want = "filename", .expect = NULL, .alts = ""},
    /* RFC 2047 words and raw bytes in a plain parameter */
    {.raw = "application/octet-stream; name=\"=?ISO-2022-JP?B?GyRCQEE1YT1xGyhCLmV4ZQ==?=\"",
     .want = "name",
     .expect = "請求書.exe",
     .alts = ""},
    {.raw = "attachment; filename=\"\x83\x5c\x95\x5c.xls\"",
     .want = "filename",
     .expect = "ソ表.xls",
     .alts = ""},
    /* other names: a plain one beside RFC 2231, repeats */
    {.raw = "attachment; filename=\"c.exe\"; filename*=UTF-8''c.pdf",
     .want = "filename",
     .expect = "c.pdf",
     .alts = "c.exe|"},
    {.raw = "attachment; filename=\"d.pdf\"; filename=\"=?UTF-8?Q?d=2Eexe?=\"; filename=\"d.pdf\"",
     .want = "filename",
     .expect = "d.pdf",
     .alts = "d.exe|"},
    {.raw = "attachment; filename=a; filename=b; filename=c",
     .want = "filename",
     .expect = "a",
     .alts = "b|c|"},
};

static void test_param_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]); i++) {
		const struct param_case *c = &param_cases[i];
		struct mimeword_names alts = {0};
		char *got = mimeword_param(c->raw, c->want, &alts);
		if ((got == NULL) != (c->expect == NULL) ||
		    (got != NULL && strcmp(got, c->expect) != 0))
			fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i, c->raw,
				 got ? got : "(null)", c->expect ? c->expect : "(null)");
		struct strbuf joined = STRBUF_INIT;
		for (size_t k = 0; k < alts.n; k++) {
			strbuf_puts(&joined, alts.v[k]);
			strbuf_addc(&joined, '|');
			free(alts.v[k]);
		}
		free(alts.v);
		if (strcmp(strbuf_str(&joined), c->alts) != 0)
			fail_msg("case %zu (%s): other names \"%s\", want \"%s\"", i, c->raw,
				 strbuf_str(&joined), c->alts);
		strbuf_free(&joined);
		free(got);
	}
	assert_null(mimeword_param(NULL, "filename", NULL));
}

/* Names are kept once, never empty, never the chosen one. */
static void test_names_add(void **state)
{
	(void)state;
	struct mimeword_names l = {0};
	mimeword_names_add(&l, g_strdup("a"), "p");
	mimeword_names_add(&l, g_strdup("p"), "p");
	mimeword_names_add(&l, g_strdup(""), "p");
	mimeword_names_add(&l, g_strdup("a"), NULL);
	mimeword_names_add(&l, g_strdup("b"), NULL);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0], "a");
	assert_string_equal(l.v[1], "b");
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
}

int main(void)
{
	g_mime_init(); /* charset labels go through GMime's aliases */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_header),
	    cmocka_unit_test(test_decode_appends),
	    cmocka_unit_test(test_param_table),
	    cmocka_unit_test(test_names_add),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
