/*
 * bench_seed — what the C benchmarks' seeders share: the words subjects are made
 * of (Japanese and English, as mail in a Japanese company mixes them), a small
 * reproducible random number generator, JSON strings for the query files they
 * write, and one SQL statement on a PostgreSQL store. A header of static
 * definitions, as each benchmark is one program.
 */
#ifndef LAZARET_BENCH_SEED_H
#define LAZARET_BENCH_SEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "common/xalloc.h"

/* Rare words: in one subject in BENCH_RARE_EVERY (make_subject). */
#define BENCH_RARE_EVERY 1000
#define BENCH_RARE_JA	 "鰻重弁当"
#define BENCH_RARE_EN	 "quokka"

static const char *const words_ja[] = {
    "請求書",	"お支払い",	"ご案内",   "重要なお知らせ", "アカウント",   "パスワード",
    "確認",	"更新",		"配送状況", "お荷物",	      "当選",	      "無料",
    "限定",	"キャンペーン", "セール",   "口座",	      "ご本人様",     "至急",
    "招待",	"資料",		"会議",	    "見積書",	      "注文",	      "発送",
    "ポイント", "有効期限",	"停止",	    "ログイン",	      "セキュリティ", "不正利用",
    "カード",	"利用明細",	"お得",	    "特別",	      "プレゼント",   "抽選",
    "会員",	"登録",		"解除",	    "返金",	      "税金",	      "還付金",
    "銀行",	"振込",		"年末",	    "新春",	      "健康",	      "サプリ",
    "投資",	"副業",		"在宅",	    "高収入",	      "出会い",	      "予約",
    "クーポン", "メルマガ",	"配信停止", "お問い合わせ",   "本日",	      "最終",
};
static const char *const words_en[] = {
    "invoice",	"payment", "account",	 "password", "verify",	 "update",    "delivery",
    "package",	"winner",  "free",	 "limited",  "offer",	 "sale",      "bank",
    "urgent",	"invite",  "meeting",	 "document", "order",	 "shipping",  "points",
    "expires",	"suspend", "login",	 "security", "unusual",	 "card",      "statement",
    "discount", "special", "gift",	 "lottery",  "member",	 "register",  "refund",
    "tax",	"crypto",  "investment", "bonus",    "reward",	 "webinar",   "newsletter",
    "coupon",	"dating",  "pharmacy",	 "loan",     "mortgage", "insurance", "casino",
    "jackpot",	"deal",	   "voucher",	 "survey",   "claim",	 "prize",     "exclusive",
    "premium",	"trial",   "unlock",	 "confirm",
};
#define NJA (sizeof(words_ja) / sizeof(words_ja[0]))
#define NEN (sizeof(words_en) / sizeof(words_en[0]))

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: fast, reproducible per seed */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* The random state of item i of a seeder: splitmix64 of i, never 0 (xorshift's
 * fixed point), so that item i is the same on every run whatever thread makes it. */
static uint64_t rng_for(uint64_t seed, size_t i)
{
	uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z != 0 ? z : 1;
}

static size_t rng_below(uint64_t *s, size_t n)
{
	return (size_t)(rng_next(s) % n);
}

/*
 * A subject of 2-5 words, Japanese in six of ten; one in BENCH_RARE_EVERY carries
 * a rare word (BENCH_RARE_JA or BENCH_RARE_EN), for the rare-term searches, and
 * one in four a number. A new string.
 */
static char *make_subject(uint64_t *r)
{
	char buf[512] = "";
	size_t len = 0;
	bool ja = rng_below(r, 10) < 6;
	size_t n = 2 + rng_below(r, 4);
	for (size_t i = 0; i < n; i++) {
		const char *w = ja ? words_ja[rng_below(r, NJA)] : words_en[rng_below(r, NEN)];
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
					i > 0 && !ja ? " " : (i > 0 ? "・" : ""), w);
	}
	/* one subject in BENCH_RARE_EVERY carries a rare word, for the rare-term searches */
	if (rng_below(r, BENCH_RARE_EVERY) == 0)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %s",
					ja ? BENCH_RARE_JA : BENCH_RARE_EN);
	if (rng_below(r, 4) == 0)
		snprintf(buf + len, sizeof(buf) - len, " #%zu", rng_below(r, 100000));
	return xstrdup(buf);
}

/* Writes s as a JSON string: quotes, backslashes and control characters escaped. */
static void json_put_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(fp, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(fp, "\\u%04x", *p);
		else
			fputc(*p, fp);
	}
	fputc('"', fp);
}

/* Runs sql on its own connection to dsn; what names it in the error. 0 or -1. */
static int bench_pg_run(const char *dsn, const char *what, const char *sql)
{
	PGconn *c = PQconnectdb(dsn);
	int rc = -1;
	if (PQstatus(c) == CONNECTION_OK) {
		PGresult *r = PQexec(c, sql);
		rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
			 ? 0
			 : -1;
		PQclear(r);
	}
	if (rc < 0)
		fprintf(stderr, "%s: %s", what, PQerrorMessage(c));
	PQfinish(c);
	return rc;
}

#endif
