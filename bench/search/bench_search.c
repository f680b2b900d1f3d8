/*
 * bench_search — how fast the quarantine store answers the listings people run,
 * at a realistic size. Seeds N messages (Japanese and English subjects, ~20k
 * users, ~50k senders across ~5k domains, 1-3 recipients) through
 * store_submit_message from two threads, then times: an end user's first and
 * second page, exact sender, sender domain, a one-day time range, and subject
 * substrings: frequent, rare (one subject in BENCH_RARE_EVERY) and absent terms
 * of 1, 2 and 3+ characters, Japanese and Latin. Prints a table, the bytes a
 * message takes (database, database without bodies, trigram index, 1-2
 * character index) and one JSON line. Not a correctness test: see test_store.
 * An end user has about 2 * N / U messages: below ~1M messages, pass a smaller
 * --users for a second page to exist.
 *
 * The bodies are MIME messages like real ones, so that the store holds what it
 * would hold in production: Received and DKIM-Signature headers, a UTF-8 text
 * part of 0.5-1.5 KB, and in BENCH_ATTACH_PERCENT of the messages a base64
 * attachment of 1-8 KB of random bytes (compressed formats such as PDF, JPEG
 * and ZIP look random to zstd). About 4.8 KB per message on average; zstd gets
 * about 1.4x out of them, where text alone would compress several times.
 * Message i is the same on every run and machine: its random numbers come
 * from i, not from the seeding thread.
 *
 * Usage: bench_search --dir DIR [--messages N] [--users U] [--queries Q] [--reuse]
 *                     [--queries-out FILE]
 *        bench_search --backend postgresql --dsn DSN [the same options but --dir]
 * (--reuse skips seeding when the store already holds messages.) On PostgreSQL the
 * store is the database DSN names (empty, or seeded by an earlier run with
 * --reuse); seeding goes through the same store_submit_message group commit. The
 * sizes printed are the database's (pg_database_size), the trigram index is every
 * GIN index of the trigram operator class (gin_trgm_ops), the 1-2 character index
 * every GIN index over an array (lazaret_short_grams, store_pg.c's migration 5).
 *
 * --queries-out writes every timed query to FILE as it runs, one JSON object a
 * line: its kind (the row names of the table), its parameters (address, sender,
 * subject, since_ms/until_ms; always in the spam quarantine, pages of 50) and the
 * rows the store answered. bench/search/run replays the file through the REST API,
 * so the HTTP figures are of the same questions as the store figures. user_page2
 * follows the cursor of the user_page1 line before it. The first line describes
 * the store ({"bench":"search-queries", ...}) and has no kind.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"

#include "bench_seed.h"

/* Submitted but not yet committed: bounds the memory the seeding queue holds. */
#define BENCH_INFLIGHT_MAX   8192
#define BENCH_SEED_THREADS   2
#define BENCH_SENDERS	     50000
#define BENCH_DOMAINS	     5000
#define BENCH_SPAN_MS	     (30LL * 24 * 3600 * 1000) /* messages spread over 30 days */
#define BENCH_TEXT_MIN	     512		       /* bytes of the text part */
#define BENCH_TEXT_MAX	     1536
#define BENCH_ATTACH_PERCENT 40	  /* messages with an attachment */
#define BENCH_ATTACH_MIN     1024 /* bytes of an attachment before base64 */
#define BENCH_ATTACH_MAX     8192
#define BENCH_SEED	     0x9e3779b97f4a7c15ULL
#define BENCH_PAGE	     50

struct bench {
	struct store *st;
	size_t messages;
	size_t users;
	int64_t start_ms;
	atomic_size_t next;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t inflight;
	size_t failed;
};

/* A growable byte buffer for one message body. */
struct body {
	char *p;
	size_t len, cap;
};

static void body_reserve(struct body *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	while (b->len + more + 1 > b->cap)
		b->cap = b->cap != 0 ? b->cap * 2 : 8192;
	b->p = xrealloc(b->p, b->cap);
}

static void body_add(struct body *b, const char *s, size_t n)
{
	body_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void body_printf(struct body *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void body_printf(struct body *b, const char *fmt, ...)
{
	body_reserve(b, 256);
	for (;;) {
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		body_reserve(b, (size_t)n); /* too long for the room: grow and format again */
	}
}

/* base64 of n random bytes in lines of 76 characters, CRLF after each. */
static void body_add_random_base64(struct body *b, uint64_t *r, size_t n, size_t first_line)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = first_line;
	for (size_t done = 0; done < n; done += 3) {
		uint32_t v = (uint32_t)rng_next(r) & 0xffffffu;
		char quad[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
		if (n - done == 1)
			quad[2] = quad[3] = '=';
		else if (n - done == 2)
			quad[3] = '=';
		body_add(b, quad, 4);
		col += 4;
		if (col >= 76 && done + 3 < n) {
			body_add(b, "\r\n", 2);
			col = 0;
		}
	}
	body_add(b, "\r\n", 2);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void user_addr(size_t u, char *out, size_t size)
{
	snprintf(out, size, "user%05zu@corp%zu.example.jp", u, u % 20);
}

static void sender_addr(size_t s, char *out, size_t size)
{
	static const char *const tlds[] = {"com", "jp", "net", "co.jp", "info"};
	size_t d = s % BENCH_DOMAINS;
	snprintf(out, size, "s%05zu@d%04zu.example.%s", s, d, tlds[d % 5]);
}

static void sender_domain(size_t d, char *out, size_t size)
{
	static const char *const tlds[] = {"com", "jp", "net", "co.jp", "info"};
	snprintf(out, size, "d%04zu.example.%s", d, tlds[d % 5]);
}

static void seed_done(void *arg, int rc)
{
	struct bench *b = arg;
	pthread_mutex_lock(&b->lock);
	b->inflight--;
	if (rc != 0)
		b->failed++;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static struct store_new_message *make_message(struct bench *b, size_t i, uint64_t *r)
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	int64_t at = b->start_ms + (int64_t)((double)i * BENCH_SPAN_MS / (double)b->messages);
	ids_uuidv7(at, m->id);
	m->quarantine = xstrdup("spam");
	m->received_at = at;
	char addr[128];
	size_t s = rng_below(r, BENCH_SENDERS);
	sender_addr(s, addr, sizeof(addr));
	m->sender = xstrdup(addr);
	if (rng_below(r, 10) < 3)
		sender_addr(rng_below(r, BENCH_SENDERS), addr, sizeof(addr));
	m->from_addr = xstrdup(addr);
	m->from = xasprintf("\"Sender %zu\" <%s>", s, addr);
	m->nrecipients = 1 + rng_below(r, 3);
	m->recipients = xcalloc(m->nrecipients, sizeof(char *));
	size_t u0 = rng_below(r, b->users);
	for (size_t k = 0; k < m->nrecipients; k++) {
		user_addr((u0 + k * 7919) % b->users, addr, sizeof(addr));
		m->recipients[k] = xstrdup(addr);
	}
	m->to = xstrdup(m->recipients[0]);
	m->subject = make_subject(r);
	m->message_id = xasprintf("<bench.%zu@%s>", i, strchr(m->sender, '@') + 1);
	m->date_ms = at - 2000;
	m->verdict = xstrdup(rng_below(r, 5) == 0 ? "suspect" : "spam");
	m->has_score = true;
	m->score = (double)rng_below(r, 1000) / 10.0;
	m->gateway = xasprintf("gw%zu", rng_below(r, 4));
	m->client_address = xasprintf("192.0.2.%zu", rng_below(r, 250));
	/* a body like a real message: trace and DKIM headers, a text part, maybe an attachment */
	struct body body = {0};
	char date[64];
	time_t secs = (time_t)(at / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* one random draw per statement: argument order must not decide the message */
	size_t mx = rng_below(r, 9);
	const char *sender_dom = strchr(m->sender, '@') + 1;
	char boundary[40];
	snprintf(boundary, sizeof(boundary), "----=_Part_%016llx", (unsigned long long)rng_next(r));
	body_printf(&body,
		    "Received: from mx%zu.%s (mx%zu.%s [%s])\r\n"
		    "\tby gw0.example.jp (lazaret-gw) with ESMTP id %08zx\r\n"
		    "\tfor <%s>; %s\r\n"
		    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=s1;\r\n"
		    "\th=from:to:subject:date:message-id; b=",
		    mx, sender_dom, mx, sender_dom, m->client_address, i, m->to, date, sender_dom);
	body_add_random_base64(&body, r, 256, 40);
	body_printf(&body,
		    "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n"
		    "MIME-Version: 1.0\r\n"
		    "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
		    "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
		    "Content-Transfer-Encoding: 8bit\r\n\r\n",
		    m->from, m->to, m->subject, m->message_id, boundary, boundary);
	size_t text_end = body.len + BENCH_TEXT_MIN + rng_below(r, BENCH_TEXT_MAX - BENCH_TEXT_MIN);
	while (body.len < text_end) {
		const char *w =
		    rng_below(r, 2) ? words_ja[rng_below(r, NJA)] : words_en[rng_below(r, NEN)];
		body_printf(&body, "%s%s", w, rng_below(r, 12) == 0 ? "\r\n" : " ");
	}
	body_add(&body, "\r\n", 2);
	if (rng_below(r, 100) < BENCH_ATTACH_PERCENT) {
		body_printf(&body,
			    "--%s\r\nContent-Type: application/pdf; name=\"doc%zu.pdf\"\r\n"
			    "Content-Disposition: attachment; filename=\"doc%zu.pdf\"\r\n"
			    "Content-Transfer-Encoding: base64\r\n\r\n",
			    boundary, i, i);
		body_add_random_base64(
		    &body, r, BENCH_ATTACH_MIN + rng_below(r, BENCH_ATTACH_MAX - BENCH_ATTACH_MIN),
		    0);
	}
	body_printf(&body, "--%s--\r\n", boundary);
	m->raw = (unsigned char *)body.p;
	m->raw_len = body.len;
	return m;
}

static void *seed_main(void *arg)
{
	struct bench *b = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->messages)
			break;
		uint64_t r = rng_for(BENCH_SEED, i);
		struct store_new_message *m = make_message(b, i, &r);
		store_new_message_prepare(m); /* compress here, as ingest workers do */
		pthread_mutex_lock(&b->lock);
		while (b->inflight >= BENCH_INFLIGHT_MAX)
			pthread_cond_wait(&b->cond, &b->lock);
		b->inflight++;
		pthread_mutex_unlock(&b->lock);
		if (store_submit_message(b->st, m, seed_done, b) != 0)
			seed_done(b, -1);
	}
	return NULL;
}

struct series {
	const char *name;
	double *ms;
	size_t n;
	size_t rows; /* rows returned in total, to show the queries found something */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const struct series *s, double p)
{
	if (s->n == 0)
		return 0;
	size_t k = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->ms[k];
}

/*
 * Times one store_list call; returns the rows it answered, and its next cursor
 * (caller frees) when asked.
 */
static size_t timed_list(struct bench *b, struct series *s, const struct store_filter *f,
			 const char *cursor, char **next_out)
{
	struct store_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	double t0 = now_us();
	int rc = store_list(b->st, f, BENCH_PAGE, cursor, &v, &n, &next);
	double t1 = now_us();
	if (rc != 0) {
		fprintf(stderr, "store_list(%s) failed: %d\n", s->name, rc);
		exit(1);
	}
	s->ms[s->n++] = (t1 - t0) / 1000.0;
	s->rows += n;
	store_message_array_free(v, n);
	if (next_out != NULL)
		*next_out = next;
	else
		free(next);
	return n;
}

/*
 * One line of --queries-out (nothing when fp is NULL): the kind, one string
 * parameter (key, value) or none, and the rows the store answered.
 */
static void query_out(FILE *fp, const char *kind, const char *key, const char *value, size_t rows)
{
	if (fp == NULL)
		return;
	fputs("{\"kind\":", fp);
	json_put_string(fp, kind);
	if (key != NULL) {
		fprintf(fp, ",\"%s\":", key);
		json_put_string(fp, value);
	}
	fprintf(fp, ",\"rows\":%zu}\n", rows);
}

static long proc_status_kb(const char *key)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t klen = strlen(key);
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			v = strtol(line + klen + 1, NULL, 10);
	}
	if (fp != NULL)
		fclose(fp);
	return v;
}

/* Bytes of an FTS5 index's segments (its _data table), 0 when the table is missing. */
static uint64_t fts_bytes(const char *dir, const char *table)
{
	char *path = xasprintf("%s/lazaret.db", dir);
	char *sql = xasprintf("SELECT sum(length(block)) FROM \"%s_data\"", table);
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	uint64_t v = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(sql);
	free(path);
	return v;
}

/*
 * Bytes of every GIN index of operator class opclass (gin_trgm_ops: the trigram
 * indexes; array_ops: the 1-2 character one) of the PostgreSQL database, every
 * partition's; 0 on error.
 */
static uint64_t pg_gin_bytes(const char *dsn, const char *opclass)
{
	PGconn *c = PQconnectdb(dsn);
	uint64_t v = 0;
	if (PQstatus(c) == CONNECTION_OK) {
		const char *values[1] = {opclass};
		PGresult *r = PQexecParams(
		    c,
		    "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)"
		    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
		    " JOIN pg_am a ON a.oid = c.relam JOIN pg_opclass o ON o.oid = i.indclass[0]"
		    " WHERE a.amname = 'gin' AND o.opcname = $1",
		    1, NULL, values, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			v = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	}
	PQfinish(c);
	return v;
}

/*
 * The daily partitions of the seeded days on PostgreSQL, as lazaretd makes them
 * for the days its mail arrives on (store_pg_partition.c): without them every
 * seeded message would land in the DEFAULT partition, a layout production never
 * has. 0 or -1.
 */
static int pg_partitions(const char *dsn, int64_t from_ms, int64_t to_ms)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT lazaret_message_partitions(%lld, %lld)",
		 (long long)from_ms, (long long)to_ms);
	return bench_pg_run(dsn, "partitions", sql);
}

/*
 * VACUUM (ANALYZE) of the seeded database: what autovacuum has done to a day's
 * partitions long before they are searched (statistics, the visibility map, the
 * GIN indexes' pending entries merged). Timing the queries right after a bulk
 * load would time them against autovacuum's work on every partition at once.
 * 0 or -1.
 */
static int pg_vacuum(const char *dsn)
{
	return bench_pg_run(dsn, "vacuum", "VACUUM (ANALYZE)");
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_search --dir DIR [--messages N] [--users U] [--queries Q]"
			" [--reuse] [--queries-out FILE]\n"
			"       bench_search --backend postgresql --dsn DSN [--messages N] ...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *queries_out = NULL, *backend = "sqlite", *dsn = NULL;
	size_t messages = 1000000, users = 20000, queries = 200;
	bool reuse = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reuse") == 0) {
			reuse = true;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[++i];
		else if (strcmp(argv[i], "--messages") == 0)
			messages = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--users") == 0)
			users = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--queries") == 0)
			queries = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--queries-out") == 0)
			queries_out = argv[++i];
		else if (strcmp(argv[i], "--backend") == 0)
			backend = argv[++i];
		else if (strcmp(argv[i], "--dsn") == 0)
			dsn = argv[++i];
		else
			usage();
	}
	bool pg = strcmp(backend, "postgresql") == 0;
	if (!pg && strcmp(backend, "sqlite") != 0)
		usage();
	if ((pg ? dsn == NULL || dir != NULL : dir == NULL) || messages == 0 || users == 0 ||
	    queries == 0)
		usage();
	log_init("bench_search", LOG_LEVEL_WARN);

	struct bench b = {.messages = messages, .users = users};
	/* a fixed start so --reuse runs query the same time span */
	b.start_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	struct store_options opt = {.backend = backend, .dir = dir, .dsn = dsn};
	int rc = store_open(&opt, &b.st);
	if (rc != 0) {
		fprintf(stderr, "store_open(%s): %d\n", pg ? "postgresql" : dir, rc);
		return 1;
	}
	struct store_stats ss;
	store_stats(b.st, &ss);
	double seed_s = 0;
	if (!(reuse && ss.messages > 0)) {
		if (pg && pg_partitions(dsn, b.start_ms, b.start_ms + BENCH_SPAN_MS) < 0)
			return 1;
		double t0 = now_us();
		pthread_t th[BENCH_SEED_THREADS];
		for (int i = 0; i < BENCH_SEED_THREADS; i++)
			pthread_create(&th[i], NULL, seed_main, &b);
		size_t last = 0, ticks = 0;
		for (;;) {
			/* every 10 ms, so that the rate of a small run is not rounded to a second
			 */
			struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
			pthread_mutex_lock(&b.lock);
			bool done = atomic_load(&b.next) >= messages && b.inflight == 0;
			pthread_mutex_unlock(&b.lock);
			if (done)
				break;
			nanosleep(&ts, NULL);
			if (++ticks % 1000 != 0)
				continue;
			size_t now_n = atomic_load(&b.next);
			fprintf(stderr, "seeding: %zu/%zu (%.0f msg/s recent)\n",
				now_n < messages ? now_n : messages, messages,
				(double)(now_n - last) / 10.0);
			last = now_n;
		}
		for (int i = 0; i < BENCH_SEED_THREADS; i++)
			pthread_join(th[i], NULL);
		seed_s = (now_us() - t0) / 1e6;
		printf("seeded %zu messages in %.1f s: %.0f messages/s (%zu failed; %s, %d seeding"
		       " threads, the store's group commit)\n",
		       messages, seed_s, (double)messages / seed_s, b.failed,
		       pg ? "PostgreSQL" : "SQLite", BENCH_SEED_THREADS);
		if (pg) {
			double v0 = now_us();
			if (pg_vacuum(dsn) < 0)
				return 1;
			printf("VACUUM (ANALYZE) after seeding: %.1f s\n", (now_us() - v0) / 1e6);
		}
	}
	store_stats(b.st, &ss);

	/*
	 * Subject searches: frequent, rare and absent terms of 1, 2 and 3+ characters,
	 * Japanese and Latin. "frequent" terms are in a few percent of the subjects or
	 * more; "rare" ones in about one in BENCH_RARE_EVERY; "absent" ones in none.
	 * An entry with a NULL term picks a random word of the list named by pick.
	 */
	enum { PICK_FIXED, PICK_JA3, PICK_JA2, PICK_EN };
	static const struct {
		const char *name;
		int pick;
		const char *term;
	} subj[] = {
	    {"subj_ja1_frequent", PICK_FIXED, "書"},
	    {"subj_ja2_frequent", PICK_JA2, NULL},
	    {"subj_ja3_frequent", PICK_JA3, NULL},
	    {"subj_ja1_rare", PICK_FIXED, "鰻"},
	    {"subj_ja2_rare", PICK_FIXED, "鰻重"},
	    {"subj_ja3_rare", PICK_FIXED, BENCH_RARE_JA},
	    {"subj_ja1_absent", PICK_FIXED, "鯖"},
	    {"subj_ja2_absent", PICK_FIXED, "鯖缶"},
	    {"subj_ja3_absent", PICK_FIXED, "鯖缶詰"},
	    {"subj_en1_frequent", PICK_FIXED, "e"},
	    {"subj_en2_frequent", PICK_FIXED, "In"},
	    {"subj_en3_frequent", PICK_EN, NULL},
	    {"subj_en1_rare", PICK_FIXED, "Q"},
	    {"subj_en2_rare", PICK_FIXED, "qu"},
	    {"subj_en3_rare", PICK_FIXED, BENCH_RARE_EN},
	    {"subj_en1_absent", PICK_FIXED, "\xc3\xa9"}, /* é */
	    {"subj_en2_absent", PICK_FIXED, "zq"},
	    {"subj_en3_absent", PICK_FIXED, "zqxj"},
	    /* rare phrases made of frequent trigrams: the index must intersect */
	    {"subj_ja3_rare_phrase", PICK_FIXED, "請求書・お支払い"},
	    {"subj_en3_rare_phrase", PICK_FIXED, "invoice payment"},
	};
	enum { NSUBJ = sizeof(subj) / sizeof(subj[0]) };
	enum { S_USER1, S_USER2, S_SENDER, S_DOMAIN, S_TIME, S_SUBJ0, S_N = S_SUBJ0 + NSUBJ };
	struct series s[S_N] = {
	    {.name = "user_page1"},    {.name = "user_page2"},	  {.name = "sender_address"},
	    {.name = "sender_domain"}, {.name = "time_range_1d"},
	};
	for (int k = 0; k < NSUBJ; k++)
		s[S_SUBJ0 + k].name = subj[k].name;
	for (int k = 0; k < S_N; k++)
		s[k].ms = xcalloc(queries, sizeof(double));
	FILE *qout = NULL;
	if (queries_out != NULL) {
		qout = fopen(queries_out, "w");
		if (qout == NULL) {
			fprintf(stderr, "%s: %s\n", queries_out, strerror(errno));
			return 1;
		}
		fprintf(qout,
			"{\"bench\":\"search-queries\",\"messages\":%llu,\"users\":%zu,"
			"\"quarantine\":\"spam\",\"limit\":%d}\n",
			(unsigned long long)ss.messages, users, BENCH_PAGE);
	}
	uint64_t r = 42;
	/* Japanese words of 3+ characters and of 2 */
	const char *ja3[NJA], *ja2[NJA];
	size_t nja3 = 0, nja2 = 0;
	for (size_t i = 0; i < NJA; i++) {
		size_t chars = 0;
		for (const unsigned char *p = (const unsigned char *)words_ja[i]; *p; p++)
			chars += (*p & 0xc0) != 0x80;
		if (chars >= 3)
			ja3[nja3++] = words_ja[i];
		else if (chars == 2)
			ja2[nja2++] = words_ja[i];
	}
	for (size_t q = 0; q < queries; q++) {
		char addr[128];
		user_addr(rng_below(&r, users), addr, sizeof(addr));
		const char *scope[1] = {addr};
		struct store_filter fu = {
		    .quarantine = "spam", .addresses = scope, .naddresses = 1};
		char *next = NULL;
		size_t rows = timed_list(&b, &s[S_USER1], &fu, NULL, &next);
		query_out(qout, s[S_USER1].name, "address", addr, rows);
		if (next != NULL) {
			rows = timed_list(&b, &s[S_USER2], &fu, next, NULL);
			query_out(qout, s[S_USER2].name, "address", addr, rows);
			free(next);
		}

		sender_addr(rng_below(&r, BENCH_SENDERS), addr, sizeof(addr));
		struct store_filter fs = {.quarantine = "spam", .sender = addr};
		rows = timed_list(&b, &s[S_SENDER], &fs, NULL, NULL);
		query_out(qout, s[S_SENDER].name, "sender", addr, rows);

		sender_domain(rng_below(&r, BENCH_DOMAINS), addr, sizeof(addr));
		struct store_filter fd = {.quarantine = "spam", .sender = addr};
		rows = timed_list(&b, &s[S_DOMAIN], &fd, NULL, NULL);
		query_out(qout, s[S_DOMAIN].name, "sender", addr, rows);

		for (int k = 0; k < NSUBJ; k++) {
			const char *term = subj[k].term;
			if (subj[k].pick == PICK_JA3)
				term = ja3[rng_below(&r, nja3)];
			else if (subj[k].pick == PICK_JA2)
				term = ja2[rng_below(&r, nja2)];
			else if (subj[k].pick == PICK_EN)
				term = words_en[rng_below(&r, NEN)];
			struct store_filter fj = {.quarantine = "spam", .subject = term};
			rows = timed_list(&b, &s[S_SUBJ0 + k], &fj, NULL, NULL);
			query_out(qout, s[S_SUBJ0 + k].name, "subject", term, rows);
		}

		int64_t day = 24LL * 3600 * 1000;
		int64_t since = b.start_ms + (int64_t)rng_below(&r, 29) * day +
				(int64_t)rng_below(&r, (size_t)day);
		struct store_filter ft = {
		    .quarantine = "spam", .since = since, .until = since + day};
		rows = timed_list(&b, &s[S_TIME], &ft, NULL, NULL);
		if (qout != NULL)
			fprintf(qout,
				"{\"kind\":\"%s\",\"since_ms\":%lld,\"until_ms\":%lld,"
				"\"rows\":%zu}\n",
				s[S_TIME].name, (long long)since, (long long)(since + day), rows);
	}
	if (qout != NULL && fclose(qout) != 0) {
		fprintf(stderr, "%s: %s\n", queries_out, strerror(errno));
		return 1;
	}

	long rss_kb = proc_status_kb("VmRSS"), hwm_kb = proc_status_kb("VmHWM");
	double body_ratio =
	    ss.bytes_stored > 0 ? (double)ss.bytes_original / (double)ss.bytes_stored : 0.0;
	double body_avg = ss.messages > 0 ? (double)ss.bytes_original / (double)ss.messages : 0.0;
	printf("\n%s: %llu messages, database %.1f MB on disk (bodies %.1f MB stored, %.1f MB"
	       " original: %.0f bytes a message, zstd ratio %.2f), RSS %.1f MB (peak %.1f MB)\n",
	       pg ? "PostgreSQL" : "SQLite", (unsigned long long)ss.messages,
	       (double)ss.file_bytes / 1e6, (double)ss.bytes_stored / 1e6,
	       (double)ss.bytes_original / 1e6, body_avg, body_ratio, (double)rss_kb / 1024.0,
	       (double)hwm_kb / 1024.0);
	uint64_t tri = pg ? pg_gin_bytes(dsn, "gin_trgm_ops") : fts_bytes(dir, "subject_fts");
	uint64_t bi = pg ? pg_gin_bytes(dsn, "array_ops") : fts_bytes(dir, "subject_short");
	double per = ss.messages > 0 ? (double)ss.messages : 1.0;
	if (pg)
		printf("bytes a message: database %.0f, without bodies %.0f, trigram index (GIN)"
		       " %.0f, 1-2 character index (GIN) %.0f\n",
		       (double)ss.file_bytes / per,
		       ((double)ss.file_bytes - (double)ss.bytes_stored) / per, (double)tri / per,
		       (double)bi / per);
	else
		printf("bytes a message: database %.0f, without bodies %.0f, trigram index %.0f,"
		       " 1-2 character index %.0f\n",
		       (double)ss.file_bytes / per,
		       ((double)ss.file_bytes - (double)ss.bytes_stored) / per, (double)tri / per,
		       (double)bi / per);
	printf("%-20s %7s %9s %9s %9s %10s\n", "query (limit 50)", "n", "p50 ms", "p99 ms",
	       "max ms", "rows/query");
	for (int k = 0; k < S_N; k++) {
		qsort(s[k].ms, s[k].n, sizeof(double), cmp_double);
		printf("%-20s %7zu %9.2f %9.2f %9.2f %10.1f\n", s[k].name, s[k].n, pct(&s[k], 0.5),
		       pct(&s[k], 0.99), s[k].n > 0 ? s[k].ms[s[k].n - 1] : 0.0,
		       s[k].n > 0 ? (double)s[k].rows / (double)s[k].n : 0.0);
	}
	printf("{\"bench\":\"search\",\"backend\":\"%s\",\"messages\":%llu,\"users\":%zu,\"seed_"
	       "seconds\":%.1f,"
	       "\"seed_rate\":%.0f,\"db_bytes\":%llu,\"body_bytes_avg\":%.0f,"
	       "\"body_zstd_ratio\":%.2f,\"db_bytes_per_message\":%.0f,"
	       "\"trigram_bytes_per_message\":%.0f,\"short_bytes_per_message\":%.0f,"
	       "\"rss_kb\":%ld,\"rss_peak_kb\":%ld,\"queries\":{",
	       backend, (unsigned long long)ss.messages, users, seed_s,
	       seed_s > 0 ? (double)messages / seed_s : 0.0, (unsigned long long)ss.file_bytes,
	       body_avg, body_ratio, (double)ss.file_bytes / per, (double)tri / per,
	       (double)bi / per, rss_kb, hwm_kb);
	for (int k = 0; k < S_N; k++) {
		printf("%s\"%s\":{\"n\":%zu,\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,"
		       "\"max_ms\":%.3f,\"rows\":%.1f}",
		       k > 0 ? "," : "", s[k].name, s[k].n, pct(&s[k], 0.5), pct(&s[k], 0.95),
		       pct(&s[k], 0.99), s[k].n > 0 ? s[k].ms[s[k].n - 1] : 0.0,
		       s[k].n > 0 ? (double)s[k].rows / (double)s[k].n : 0.0);
		free(s[k].ms);
	}
	printf("}}\n");
	store_close(b.st);
	pthread_mutex_destroy(&b.lock);
	pthread_cond_destroy(&b.cond);
	return b.failed > 0 ? 1 : 0;
}
