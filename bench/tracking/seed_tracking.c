/*
 * seed_tracking — fills a manager's store with the message-tracking events of a
 * realistic fleet, for bench/tracking/run to time the tracking searches on.
 *
 * N events over DAYS days ending at --end-ms, from G registered gateways
 * (gw1..gwG), written the way POST /api/v1/gateway/events writes them: batches
 * of BENCH_BATCH events per gateway through store_events_put, one seeding thread
 * per gateway. A message makes four events: its connection, "received" (envelope
 * sender, 1-3 of 20,000 recipients, a decoded subject — Japanese in six of ten —,
 * Message-ID, client address, attachment names in one of five), its verdict (spam
 * 12%, suspect 5%, virus 1%), then its delivery (a 250 reply; 3% soft, 1% hard
 * bounces) or its quarantine. Message i is the same on every run and machine.
 *
 * --queries-out writes a sample of what was stored, one JSON object a line
 * ({"kind","value","gateway","at"}: kinds sender, recipient, message_id,
 * client_ip, subject, attachment), for the run script to search for; each sampled
 * message exists, so every search must find at least it.
 *
 * Usage: seed_tracking --dir DIR | --backend postgresql --dsn DSN
 *                      [--events N] [--days D] [--gateways G] [--end-ms MS]
 *                      [--queries Q] [--queries-out FILE]
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
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

#define BENCH_BATCH	     500 /* events per store_events_put, as a gateway pushes */
#define BENCH_USERS	     20000
#define BENCH_SENDERS	     50000
#define BENCH_DOMAINS	     5000
#define BENCH_CLIENTS	     20000
#define BENCH_GATEWAYS_MAX   16
#define BENCH_SEED_TRACK     0x2545f4914f6cdd1dULL
#define BENCH_ATTACH_PERCENT 20
#define BENCH_RECIPIENTS_MAX 3
#define BENCH_MESSAGE_EVENTS 4

struct seed {
	struct store *st;
	size_t messages, gateways;
	int64_t start_ms, span_ms;
	atomic_size_t done, failed;
};

struct seed_thread {
	struct seed *s;
	size_t gw; /* 0-based */
};

/* What message i is: every string it needs, derived from i alone. */
struct track_msg {
	int64_t at;
	char msg_id[IDS_UUID_LEN + 1];
	char sender[96];
	char rcpt[BENCH_RECIPIENTS_MAX][96];
	const char *rcpts[BENCH_RECIPIENTS_MAX];
	size_t nrcpt;
	char *subject;
	char message_id[128];
	char client[48];
	char attach[128];
	const char *attachments[1];
	size_t nattach;
	int64_t size;
	unsigned verdict; /* 0 ham, 1 spam, 2 suspect, 3 virus */
	unsigned outcome; /* 0 delivered, 1 soft bounce, 2 hard bounce, 3 quarantined */
};

static void track_msg_make(const struct seed *s, size_t i, struct track_msg *m)
{
	uint64_t r = rng_for(BENCH_SEED_TRACK, i);
	memset(m, 0, sizeof(*m));
	m->at = s->start_ms + (int64_t)((double)i * (double)s->span_ms / (double)s->messages);
	ids_uuidv7(m->at, m->msg_id);
	size_t snd = rng_below(&r, BENCH_SENDERS), dom = snd % BENCH_DOMAINS;
	static const char *const tlds[] = {"com", "jp", "net", "co.jp", "info"};
	snprintf(m->sender, sizeof(m->sender), "s%05zu@d%04zu.example.%s", snd, dom, tlds[dom % 5]);
	m->nrcpt = 1 + rng_below(&r, BENCH_RECIPIENTS_MAX);
	for (size_t k = 0; k < m->nrcpt; k++) {
		size_t u = rng_below(&r, BENCH_USERS);
		snprintf(m->rcpt[k], sizeof(m->rcpt[k]), "user%05zu@corp%zu.example.jp", u, u % 20);
		m->rcpts[k] = m->rcpt[k];
	}
	m->subject = make_subject(&r);
	/* without <>, as the gateway records it */
	snprintf(m->message_id, sizeof(m->message_id), "%016llx.%zu@mail.d%04zu.example.%s",
		 (unsigned long long)rng_next(&r), i, dom, tlds[dom % 5]);
	size_t c = rng_below(&r, BENCH_CLIENTS);
	snprintf(m->client, sizeof(m->client), "198.%zu.%zu.%zu", 18 + c / 65536 % 2, c / 256 % 256,
		 c % 256);
	if (rng_below(&r, 100) < BENCH_ATTACH_PERCENT) {
		static const char *const stems[] = {"請求書", "見積書", "invoice",
						    "report", "資料",	"order"};
		static const char *const exts[] = {"pdf", "xlsx", "docx", "zip"};
		snprintf(m->attach, sizeof(m->attach), "%s_%zu.%s", stems[rng_below(&r, 6)],
			 rng_below(&r, 100000), exts[rng_below(&r, 4)]);
		m->attachments[0] = m->attach;
		m->nattach = 1;
	}
	m->size = 2000 + (int64_t)rng_below(&r, 60000);
	size_t v = rng_below(&r, 100);
	m->verdict = v < 12 ? 1 : v < 17 ? 2 : v < 18 ? 3 : 0;
	size_t o = rng_below(&r, 100);
	m->outcome = m->verdict == 1 || m->verdict == 3 ? 3 : o < 3 ? 1 : o < 4 ? 2 : 0;
}

/* The details (JSON text) of message m's events, in order; new strings. */
static void track_msg_details(const struct track_msg *m, size_t i, char *d[BENCH_MESSAGE_EVENTS])
{
	d[0] =
	    xasprintf("{\"session\":\"%012zx\",\"client\":\"%s\",\"helo\":\"mail%zu.example.net\","
		      "\"tls\":\"TLSv1.3\",\"cipher\":\"TLS_AES_256_GCM_SHA384\","
		      "\"hat\":\"accepted\",\"decision\":\"accept\"}",
		      i, m->client, i % 977);
	d[1] = xasprintf("{\"size\":%lld,\"recipients\":%zu,\"attachments\":%zu}",
			 (long long)m->size, m->nrcpt, m->nattach);
	static const char *const levels[] = {"ham", "spam", "suspect", "virus"};
	d[2] =
	    m->verdict == 3
		? xasprintf("{\"engine\":\"clamav\",\"virus\":\"Win.Trojan.Agent-%zu\"}", i % 500)
		: xasprintf("{\"engine\":\"spamassassin\",\"score\":%.1f,\"level\":\"%s\"}",
			    m->verdict == 1   ? 9.5
			    : m->verdict == 2 ? 4.2
					      : 0.3,
			    levels[m->verdict]);
	switch (m->outcome) {
	case 0:
		d[3] = xasprintf("{\"route\":\"next_hop\",\"host\":\"10.0.0.25:25\",\"rcpts\":%zu,"
				 "\"reply\":\"250 2.0.0 Ok: queued as %08zX\"}",
				 m->nrcpt, i);
		break;
	case 1:
		d[3] = xasprintf("{\"route\":\"next_hop\",\"host\":\"10.0.0.25:25\",\"rcpts\":%zu,"
				 "\"reply\":\"451 4.3.0 Temporary failure, try again\"}",
				 m->nrcpt);
		break;
	case 2:
		d[3] = xasprintf("{\"route\":\"next_hop\",\"host\":\"10.0.0.25:25\",\"rcpts\":%zu,"
				 "\"reply\":\"550 5.1.1 User unknown\"}",
				 m->nrcpt);
		break;
	default:
		d[3] = xasprintf("{\"quarantine\":\"%s\",\"to\":\"manager\"}",
				 m->verdict == 3 ? "virus" : "spam");
	}
}

/* Message m's events from seq on, into v[0..4) (borrowing m's and d's strings). */
static void track_msg_events(const struct track_msg *m, int64_t seq,
			     char *const d[BENCH_MESSAGE_EVENTS], struct store_event_message *em,
			     struct store_event *v)
{
	*em = (struct store_event_message){.sender = m->sender,
					   .recipients = m->rcpts,
					   .nrecipients = m->nrcpt,
					   .subject = m->subject,
					   .message_id = m->message_id,
					   .client_ip = m->client,
					   .attachments = m->attachments,
					   .nattachments = m->nattach,
					   .size = m->size};
	v[0] = (struct store_event){.seq = seq, .at = m->at, .type = "connection", .detail = d[0]};
	v[1] = (struct store_event){.seq = seq + 1,
				    .at = m->at + 40,
				    .type = "received",
				    .msg_id = m->msg_id,
				    .detail = d[1],
				    .message = em,
				    .state = "received"};
	static const unsigned vflags[] = {0, STORE_TRACK_SPAM, STORE_TRACK_SUSPECT,
					  STORE_TRACK_VIRUS};
	v[2] = (struct store_event){.seq = seq + 2,
				    .at = m->at + 400,
				    .type = m->verdict == 3 ? "virus" : "verdict",
				    .msg_id = m->msg_id,
				    .detail = d[2],
				    .flags = vflags[m->verdict]};
	static const char *const states[] = {"delivered", "soft_bounce", "hard_bounce",
					     "quarantined"};
	static const unsigned oflags[] = {STORE_TRACK_DELIVERED, STORE_TRACK_SOFT_BOUNCE,
					  STORE_TRACK_HARD_BOUNCE, STORE_TRACK_QUARANTINED};
	v[3] = (struct store_event){.seq = seq + 3,
				    .at = m->at + 650,
				    .type = m->outcome == 3 ? "quarantine" : "delivery",
				    .msg_id = m->msg_id,
				    .detail = d[3],
				    .state = states[m->outcome],
				    .flags = oflags[m->outcome]};
}

static void *seed_main(void *arg)
{
	struct seed_thread *t = arg;
	struct seed *s = t->s;
	char gw[16];
	snprintf(gw, sizeof(gw), "gw%zu", t->gw + 1);
	enum { PER = BENCH_BATCH / BENCH_MESSAGE_EVENTS };
	struct track_msg *m = xcalloc(PER, sizeof(*m));
	struct store_event_message *em = xcalloc(PER, sizeof(*em));
	struct store_event *v = xcalloc(PER * BENCH_MESSAGE_EVENTS, sizeof(*v));
	char **d = xcalloc(PER * BENCH_MESSAGE_EVENTS, sizeof(*d));
	int64_t seq = 1;
	size_t i = t->gw;
	while (i < s->messages) {
		size_t n = 0;
		for (; n < PER && i < s->messages; n++, i += s->gateways) {
			track_msg_make(s, i, &m[n]);
			track_msg_details(&m[n], i, &d[n * BENCH_MESSAGE_EVENTS]);
			track_msg_events(&m[n], seq, &d[n * BENCH_MESSAGE_EVENTS], &em[n],
					 &v[n * BENCH_MESSAGE_EVENTS]);
			seq += BENCH_MESSAGE_EVENTS;
		}
		int64_t now = m[n - 1].at + 1000;
		int rc = store_events_put(s->st, gw, v, n * BENCH_MESSAGE_EVENTS, 0, now, NULL);
		if (rc < 0) {
			fprintf(stderr, "store_events_put(%s): %d\n", gw, rc);
			atomic_fetch_add(&s->failed, n);
		}
		for (size_t k = 0; k < n; k++) {
			free(m[k].subject);
			for (size_t e = 0; e < BENCH_MESSAGE_EVENTS; e++)
				free(d[k * BENCH_MESSAGE_EVENTS + e]);
		}
		atomic_fetch_add(&s->done, n);
	}
	free(m);
	free(em);
	free(v);
	free(d);
	return NULL;
}

static void query_line(FILE *fp, const char *kind, const char *value, size_t gw, int64_t at)
{
	fprintf(fp, "{\"kind\":\"%s\",\"value\":", kind);
	json_put_string(fp, value);
	fprintf(fp, ",\"gateway\":\"gw%zu\",\"at\":%lld}\n", gw + 1, (long long)at);
}

/*
 * A sample of q messages spread over the whole span: per message one search by
 * each kind, the subject by one of its words (a Japanese word where it has one).
 */
static void write_queries(const struct seed *s, size_t q, FILE *fp)
{
	for (size_t k = 0; k < q; k++) {
		size_t i = (size_t)((double)(k + 1) * (double)s->messages / (double)(q + 2));
		struct track_msg m;
		track_msg_make(s, i, &m);
		size_t gw = i % s->gateways;
		query_line(fp, "sender", m.sender, gw, m.at);
		query_line(fp, "recipient", m.rcpt[0], gw, m.at);
		query_line(fp, "message_id", m.message_id, gw, m.at);
		query_line(fp, "client_ip", m.client, gw, m.at);
		char word[128];
		const char *sp = strstr(m.subject, "・");
		size_t wl = sp != NULL ? (size_t)(sp - m.subject) : strcspn(m.subject, " ");
		snprintf(word, sizeof(word), "%.*s", (int)wl, m.subject);
		query_line(fp, "subject", word, gw, m.at);
		if (m.nattach > 0)
			query_line(fp, "attachment", m.attach, gw, m.at);
		free(m.subject);
	}
}

/*
 * The daily tracking partitions of the seeded days (as lazaretd makes them), and
 * with vacuum a VACUUM (ANALYZE) after the load: what autovacuum has done long
 * before a day is searched.
 */
static int pg_partitions(const char *dsn, int64_t from_ms, int64_t to_ms, bool vacuum)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT lazaret_tracking_partitions(%lld, %lld)",
		 (long long)from_ms, (long long)to_ms);
	if (bench_pg_run(dsn, "partitions", sql) < 0)
		return -1;
	return vacuum ? bench_pg_run(dsn, "vacuum", "VACUUM (ANALYZE)") : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: seed_tracking --dir DIR | --backend postgresql --dsn DSN\n"
			"       [--events N] [--days D] [--gateways G] [--end-ms MS] [--queries Q]"
			" [--queries-out FILE]\n");
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *backend = "sqlite", *dsn = NULL, *queries_out = NULL;
	size_t events = 10000000, days = 30, gateways = 4, queries = 100;
	int64_t end_ms = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *val = argv[i + 1];
		if (strcmp(k, "--dir") == 0)
			dir = val;
		else if (strcmp(k, "--backend") == 0)
			backend = val;
		else if (strcmp(k, "--dsn") == 0)
			dsn = val;
		else if (strcmp(k, "--events") == 0)
			events = strtoul(val, NULL, 10);
		else if (strcmp(k, "--days") == 0)
			days = strtoul(val, NULL, 10);
		else if (strcmp(k, "--gateways") == 0)
			gateways = strtoul(val, NULL, 10);
		else if (strcmp(k, "--end-ms") == 0)
			end_ms = strtoll(val, NULL, 10);
		else if (strcmp(k, "--queries") == 0)
			queries = strtoul(val, NULL, 10);
		else if (strcmp(k, "--queries-out") == 0)
			queries_out = val;
		else
			usage();
	}
	if (argc % 2 == 0)
		usage();
	bool pg = strcmp(backend, "postgresql") == 0;
	if ((pg ? dsn == NULL || dir != NULL : dir == NULL) || events < BENCH_MESSAGE_EVENTS ||
	    days == 0 || gateways == 0 || gateways > BENCH_GATEWAYS_MAX)
		usage();
	log_init("seed_tracking", LOG_LEVEL_WARN);
	if (end_ms == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		end_ms = (int64_t)ts.tv_sec * 1000;
	}
	struct seed s = {.messages = events / BENCH_MESSAGE_EVENTS, .gateways = gateways};
	s.span_ms = (int64_t)days * 86400000LL;
	s.start_ms = end_ms - s.span_ms;
	struct store_options opt = {.backend = backend, .dir = dir, .dsn = dsn};
	int rc = store_open(&opt, &s.st);
	if (rc != 0) {
		fprintf(stderr, "store_open(%s): %d\n", pg ? "postgresql" : dir, rc);
		return 1;
	}
	for (size_t g = 0; g < gateways; g++) {
		char name[16], addr[32], hash[65];
		snprintf(name, sizeof(name), "gw%zu", g + 1);
		snprintf(addr, sizeof(addr), "192.0.2.%zu", g + 10);
		snprintf(hash, sizeof(hash), "%064zx", g + 1);
		struct store_gateway gwr = {
		    .name = name, .address = addr, .token_hash = hash, .created_at = s.start_ms};
		rc = store_gateway_add(s.st, &gwr);
		if (rc < 0 && rc != -EEXIST) {
			fprintf(stderr, "store_gateway_add(%s): %d\n", name, rc);
			return 1;
		}
	}
	if (pg && pg_partitions(dsn, s.start_ms, end_ms + 86400000LL, false) < 0)
		return 1;
	double t0 = now_s();
	pthread_t th[BENCH_GATEWAYS_MAX];
	struct seed_thread st[BENCH_GATEWAYS_MAX];
	for (size_t g = 0; g < gateways; g++) {
		st[g] = (struct seed_thread){.s = &s, .gw = g};
		pthread_create(&th[g], NULL, seed_main, &st[g]);
	}
	size_t last = 0, ticks = 0;
	while (atomic_load(&s.done) < s.messages) {
		struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (++ticks % 300 != 0)
			continue;
		size_t n = atomic_load(&s.done);
		fprintf(stderr, "seeding: %zu/%zu messages (%.0f events/s recent)\n", n, s.messages,
			(double)(n - last) * BENCH_MESSAGE_EVENTS / 30.0);
		last = n;
	}
	for (size_t g = 0; g < gateways; g++)
		pthread_join(th[g], NULL);
	double secs = now_s() - t0;
	size_t failed = atomic_load(&s.failed);
	printf("seeded %zu events (%zu messages, %zu gateways, %zu days) in %.1f s:"
	       " %.0f events/s (%s; %zu messages failed)\n",
	       s.messages * BENCH_MESSAGE_EVENTS, s.messages, gateways, days, secs,
	       (double)(s.messages * BENCH_MESSAGE_EVENTS) / secs, pg ? "PostgreSQL" : "SQLite",
	       failed);
	if (pg && pg_partitions(dsn, s.start_ms, end_ms, true) < 0)
		return 1;
	if (queries_out != NULL) {
		FILE *fp = fopen(queries_out, "w");
		if (fp == NULL) {
			perror(queries_out);
			return 1;
		}
		write_queries(&s, queries, fp);
		fclose(fp);
	}
	store_close(s.st);
	return failed > 0 ? 1 : 0;
}
