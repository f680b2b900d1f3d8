/*
 * test_charset — mail text to UTF-8: one table row per (label, bytes), with the
 * exact UTF-8 expected. Japanese charsets as real mail carries them (CP932 for
 * Shift_JIS, the CP50220 rows inside ISO-2022-JP, unlabelled 8-bit text guessed),
 * and U+FFFD for what cannot be read.
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
#include "mime/charset.h"

#define FFFD "\xEF\xBF\xBD"

struct charset_case {
	const char *name;
	const char *charset; /* NULL: no label */
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *want;
};

static const struct charset_case cases[] = {
    {.name = "no label, UTF-8", .in = "日本 text", .want = "日本 text"},
    {.name = "empty label, ASCII", .charset = "", .in = "abc", .want = "abc"},
    {.name = "ISO-2022-JP hiragana",
     .charset = "ISO-2022-JP",
     .in = "\x1b$B$3$s$K$A$O\x1b(B",
     .want = "こんにちは"},
    {.name = "ISO-2022-JP with CP50220 rows (① ㈱)",
     .charset = "iso-2022-jp",
     .in = "\x1b$B-!-j\x1b(B",
     .want = "①㈱"},
    /* JIS X 0201 half-width katakana (ESC ( I, CP50221) and its SO/SI shift (CP50222) */
    {.name = "ISO-2022-JP: ESC ( I katakana from ASCII mode",
     .charset = "ISO-2022-JP",
     .in = "\x1b(I6]@^\x1b(B",
     .want = "ｶﾝﾀﾞ"},
    {.name = "ISO-2022-JP: kanji, ESC ( I katakana, ASCII",
     .charset = "ISO-2022-JP",
     .in = "\x1b$B@A5a=q\x1b(I6]@^\x1b(B OK",
     .want = "請求書ｶﾝﾀﾞ OK"},
    {.name = "ISO-2022-JP: kanji, back to ASCII, then katakana",
     .charset = "ISO-2022-JP",
     .in = "\x1b$B@A5a=q\x1b(B\x1b(I6]\x1b(B OK",
     .want = "請求書ｶﾝ OK"},
    {.name = "ISO-2022-JP: ASCII, katakana, kanji, katakana, ASCII",
     .charset = "iso-2022-jp",
     .in = "Re: \x1b(I1\x1b$B$\"\x1b(I2\x1b(B!",
     .want = "Re: ｱあｲ!"},
    {.name = "ISO-2022-JP: katakana at both ends of the set",
     .charset = "ISO-2022-JP",
     .in = "\x1b(I!_\x1b(B",
     .want = "\xEF\xBD\xA1\xEF\xBE\x9F"},
    {.name = "ISO-2022-JP: katakana with WAVE DASH keeps the standard mapping",
     .charset = "ISO-2022-JP",
     .in = "\x1b$B!A\x1b(I1\x1b(B",
     .want = "\xE3\x80\x9Cｱ"},
    {.name = "ISO-2022-JP: katakana run left open at the end",
     .charset = "ISO-2022-JP",
     .in = "a\x1b(I6]",
     .want = "aｶﾝ"},
    {.name = "CP50221 label: katakana", .charset = "CP50221", .in = "\x1b(I6]\x1b(B", .want = "ｶﾝ"},
    {.name = "ISO-2022-JP: SO/SI katakana shift",
     .charset = "ISO-2022-JP",
     .in = "A\x0e"
	   "6]\x0fZ",
     .want = "AｶﾝZ"},
    {.name = "CP50222: SO/SI katakana inside kanji",
     .charset = "CP50222",
     .in = "\x1b$B@A\x0e"
	   "6]\x0f"
	   "5a\x1b(B",
     .want = "請ｶﾝ求"},
    {.name = "no label: raw ISO-2022-JP with ESC ( I",
     .in = "\x1b$B@A5a=q\x1b(I6]@^\x1b(B",
     .want = "請求書ｶﾝﾀﾞ"},
    {.name = "CP50221 label", .charset = "CP50221", .in = "\x1b$B$3\x1b(B", .want = "こ"},
    {.name = "ISO-2022-JP keeps WAVE DASH the standard way",
     .charset = "ISO-2022-JP",
     .in = "\x1b$B!A\x1b(B",
     .want = "\xE3\x80\x9C"},
    {.name = "Shift_JIS is CP932: ① and a backslash",
     .charset = "shift_jis",
     .in = "\x87\x40\x5c",
     .want = "①\\"},
    {.name = "Windows-31J alias", .charset = "Windows-31J", .in = "\x82\xa0", .want = "あ"},
    {.name = "EUC-JP with an NEC row", .charset = "EUC-JP", .in = "\xad\xa1", .want = "①"},
    {.name = "no label: raw ISO-2022-JP", .in = "\x1b$B$3$s$K$A$O\x1b(B", .want = "こんにちは"},
    {.name = "no label: EUC-JP beats its half-width katakana reading as Shift_JIS",
     .in = "\xa4\xb3\xa4\xf3\xa4\xcb\xa4\xc1\xa4\xcf",
     .want = "こんにちは"},
    {.name = "no label: Shift_JIS",
     .in = "\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd",
     .want = "こんにちは"},
    {.name = "UTF-8 label on Shift_JIS bytes: guessed",
     .charset = "UTF-8",
     .in = "\x82\xa0",
     .want = "あ"},
    {.name = "invalid UTF-8 labelled UTF-8", .charset = "UTF-8", .in = "\xff", .want = FFFD},
    {.name = "unknown label: guessed", .charset = "x-bogus", .in = "日本", .want = "日本"},
    {.name = "a label glibc folds into UTF-8, above U+10FFFF",
     .charset = "u=tf-8",
     .in = "\xf7\xb4\xb4\xb4",
     .want = FFFD FFFD FFFD FFFD},
    {.name = "other labels through iconv", .charset = "latin1", .in = "caf\xe9", .want = "café"},
    {.name = "Shift_JIS cut in a character",
     .charset = "Shift_JIS",
     .in = "a\x82",
     .want = "a" FFFD},
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct charset_case *c = &cases[i];
		struct strbuf out = STRBUF_INIT;
		strbuf_puts(&out, "<"); /* appends: what was there stays */
		charset_to_utf8(&out, c->charset, c->in, c->len ? c->len : strlen(c->in));
		const char *got = strbuf_str(&out);
		if (strncmp(got, "<", 1) != 0 || strcmp(got + 1, c->want) != 0)
			fail_msg("%s: got \"%s\", want \"<%s\"", c->name, got, c->want);
		assert_true(g_utf8_validate(got, (gssize)out.len, NULL));
		strbuf_free(&out);
	}
}

/* Unlabelled text goes the same way through the guessing entry point. */
static void test_guess(void **state)
{
	(void)state;
	struct strbuf out = STRBUF_INIT;
	charset_guess_to_utf8(&out, "\x82\xa0\x1b", 3);
	assert_string_equal(strbuf_str(&out), "あ\x1b");
	strbuf_truncate(&out, 0);
	charset_guess_to_utf8(&out, "\xa4\xa2", 2);
	assert_string_equal(strbuf_str(&out), "あ");
	strbuf_free(&out);
}

static void test_utf8_lossy(void **state)
{
	(void)state;
	struct strbuf out = STRBUF_INIT;
	static const char in[] = "a\xff"
				 "b\0c\xe6\x97";
	assert_int_equal(charset_add_utf8_lossy(&out, in, sizeof(in) - 1), 3);
	assert_string_equal(strbuf_str(&out), "a" FFFD "bc" FFFD FFFD);
	strbuf_truncate(&out, 0);
	assert_int_equal(charset_add_utf8_lossy(&out, "日本", strlen("日本")), 0);
	assert_string_equal(strbuf_str(&out), "日本");
	strbuf_free(&out);
}

/* Garbage under every label stays valid UTF-8. */
static void test_garbage(void **state)
{
	(void)state;
	static const char *const labels[] = {NULL,     "UTF-8",	     "ISO-2022-JP", "Shift_JIS",
					     "EUC-JP", "ISO-8859-1", "x-bogus"};
	uint32_t x = 2024;
	char in[64];
	for (int round = 0; round < 2000; round++) {
		for (size_t k = 0; k < sizeof(in); k++) {
			x = x * 1103515245u + 12345u;
			in[k] = (char)(x >> 24);
		}
		for (size_t l = 0; l < sizeof(labels) / sizeof(labels[0]); l++) {
			struct strbuf out = STRBUF_INIT;
			charset_to_utf8(&out, labels[l], in, sizeof(in));
			assert_true(g_utf8_validate(strbuf_str(&out), (gssize)out.len, NULL));
			strbuf_free(&out);
		}
	}
}

int main(void)
{
	g_mime_init(); /* labels not in charset's own table go through GMime's aliases */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_guess),
	    cmocka_unit_test(test_utf8_lossy),
	    cmocka_unit_test(test_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
