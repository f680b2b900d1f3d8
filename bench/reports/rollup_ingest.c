/*
 * rollup_ingest — how many messages a second the manager's event ingest
 * (store_events_put, with the reporting rollups it fills in the same
 * transaction) takes, for bench/reports/run.
 *
 * G gateways (one thread each) push the events of M messages in batches of
 * BENCH_BATCH events, as lazaret-gw pushes them: per message its connection,
 * "received" (sender of 5,000 domains, 1-3 of 20,000 recipients, client address),
 * its verdict (spam 12%, suspect 5%), a virus in 1%, a content filter in 2%,
 * its delivery and its reply: 6 to 8 events. Times the whole run and the
 * slowest batch; prints one JSON line {"bench":"reports_ingest",...}.
 *
 * Usage: rollup_ingest --dir DIR | --backend postgresql --dsn DSN
 *                      [--messages M] [--gateways G]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"

#define BENCH_BATCH	 1000 /* events per push, the gateway's largest batch */
#define BENCH_MAX_EVENTS 8

struct bench {
	struct store *st;
	size_t messages, gateways;
	int64_t start_ms;
	_Atomic int64_t slowest_us;
	_Atomic int failed;
};

struct worker {
	struct bench *b;
	size_t index;
	pthread_t thread;
};

static uint64_t rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Appends message i's events to v (n so far, seq on from *seq); their strings to owned. */
static size_t bench_message(size_t i, int64_t at, struct store_event *v, size_t n, int64_t *seq,
			    char **owned, size_t *nowned, struct store_event_message *m,
			    char (*ids)[IDS_UUID_LEN + 1])
{
	uint64_t r = 0x9e3779b97f4a7c15ULL ^ (i * 0xbf58476d1ce4e5b9ULL);
	if (r == 0)
		r = 1;
	rng(&r);
	ids_uuidv7(at, *ids);
	const char *id = *ids;
	size_t dom = rng(&r) % 5000, nr = 1 + rng(&r) % 3;
	char rcpts[160] = "";
	for (size_t k = 0; k < nr; k++) {
		size_t u = rng(&r) % 20000;
		size_t len = strlen(rcpts);
		snprintf(rcpts + len, sizeof(rcpts) - len, "%s\"user%05zu@corp%zu.example.jp\"",
			 k ? "," : "", u, u % 20);
	}
	char ip[32];
	snprintf(ip, sizeof(ip), "198.18.%zu.%zu", (size_t)(rng(&r) % 256),
		 (size_t)(rng(&r) % 256));
#define OWN(s) (owned[(*nowned)++] = (s))
	v[n++] = (struct store_event){
	    .seq = (*seq)++,
	    .at = at,
	    .type = "connection",
	    .detail = OWN(xasprintf("{\"session\":\"%012zx\",\"client_ip\":\"%s\",\"helo\":\"h\","
				    "\"tls_version\":\"TLSv1.3\",\"hat_policy\":\"ACCEPTED\","
				    "\"hat_decision\":\"accept\"}",
				    i, ip))};
	m->sender = OWN(xasprintf("s%zu@d%04zu.example.com", i % 50000, dom));
	m->client_ip = OWN(xstrdup(ip));
	v[n++] = (struct store_event){
	    .seq = (*seq)++,
	    .at = at + 1,
	    .type = "received",
	    .msg_id = id,
	    .message = m,
	    .state = "received",
	    .detail =
		OWN(xasprintf("{\"session\":\"%012zx\",\"client_ip\":\"%s\",\"sender\":\"%s\","
			      "\"recipients\":[%s],\"size\":4000,\"subject\":\"hello\"}",
			      i, ip, m->sender, rcpts))};
	size_t p = rng(&r) % 100;
	const char *level = p < 12 ? "spam" : p < 17 ? "suspect" : "clean";
	v[n++] = (struct store_event){
	    .seq = (*seq)++,
	    .at = at + 2,
	    .type = "verdict",
	    .msg_id = id,
	    .detail =
		OWN(xasprintf("{\"engine\":\"spamd\",\"score\":1.0,\"level\":\"%s\"}", level))};
	if (p == 50)
		v[n++] = (struct store_event){
		    .seq = (*seq)++,
		    .at = at + 3,
		    .type = "virus",
		    .msg_id = id,
		    .detail = OWN(xasprintf("{\"name\":\"Win.Trojan.Agent-%zu\"}", i % 50))};
	if (p >= 60 && p < 62)
		v[n++] = (struct store_event){
		    .seq = (*seq)++,
		    .at = at + 4,
		    .type = "filter",
		    .msg_id = id,
		    .detail =
			OWN(xasprintf("{\"filter\":\"f%zu\",\"action\":\"quarantine\"}", i % 7))};
	v[n++] = (struct store_event){
	    .seq = (*seq)++,
	    .at = at + 5,
	    .type = "delivery",
	    .msg_id = id,
	    .state = "delivered",
	    .detail =
		OWN(xstrdup("{\"route\":\"next_hop\",\"status\":\"sent\",\"reply\":\"250 ok\"}"))};
	v[n++] = (struct store_event){.seq = (*seq)++,
				      .at = at + 6,
				      .type = "reply",
				      .msg_id = id,
				      .detail = OWN(xstrdup("{\"reply\":\"250 2.0.0 Ok\"}"))};
#undef OWN
	return n;
}

static void *bench_worker(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	char gw[32];
	snprintf(gw, sizeof(gw), "gw%zu", w->index + 1);
	struct store_event *v = xcalloc(BENCH_BATCH + BENCH_MAX_EVENTS, sizeof(*v));
	char **owned = xcalloc((BENCH_BATCH + BENCH_MAX_EVENTS) * 4, sizeof(*owned));
	struct store_event_message *msgs = xcalloc(BENCH_BATCH, sizeof(*msgs));
	char(*ids)[IDS_UUID_LEN + 1] = xcalloc(BENCH_BATCH, sizeof(*ids));
	int64_t seq = 1;
	size_t n = 0, nowned = 0, nm = 0;
	for (size_t i = w->index; i < b->messages; i += b->gateways) {
		int64_t at = b->start_ms + (int64_t)i * 10; /* 100 messages a second */
		memset(&msgs[nm], 0, sizeof(msgs[nm]));
		n = bench_message(i, at, v, n, &seq, owned, &nowned, &msgs[nm], &ids[nm]);
		nm++;
		bool last = i + b->gateways >= b->messages;
		if (n + BENCH_MAX_EVENTS <= BENCH_BATCH && !last)
			continue;
		int64_t t0 = now_us();
		uint64_t stored = 0;
		int rc = store_events_put(b->st, gw, v, n, 0, clock_now_ms(), &stored);
		int64_t us = now_us() - t0;
		if (rc < 0 || stored != n) {
			fprintf(stderr,
				"rollup_ingest: %s: store_events_put rc=%d stored=%llu of %zu\n",
				gw, rc, (unsigned long long)stored, n);
			atomic_store(&b->failed, 1);
			break;
		}
		int64_t prev = atomic_load(&b->slowest_us);
		while (us > prev && !atomic_compare_exchange_weak(&b->slowest_us, &prev, us))
			;
		for (size_t k = 0; k < nowned; k++)
			free(owned[k]);
		n = nowned = nm = 0;
	}
	for (size_t k = 0; k < nowned; k++)
		free(owned[k]);
	free(owned);
	free(v);
	free(msgs);
	free(ids);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *backend = "sqlite", *dsn = NULL;
	size_t messages = 60000, gateways = 4;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *val = argv[i + 1];
		if (strcmp(k, "--dir") == 0)
			dir = val;
		else if (strcmp(k, "--backend") == 0)
			backend = val;
		else if (strcmp(k, "--dsn") == 0)
			dsn = val;
		else if (strcmp(k, "--messages") == 0)
			messages = strtoull(val, NULL, 10);
		else if (strcmp(k, "--gateways") == 0)
			gateways = strtoull(val, NULL, 10);
		else
			dir = NULL, dsn = NULL, i = argc;
	}
	if ((dir == NULL && dsn == NULL) || messages < 1 || gateways < 1 || gateways > 64) {
		fprintf(stderr, "usage: rollup_ingest --dir DIR | --backend postgresql --dsn DSN"
				" [--messages M] [--gateways G]\n");
		return 2;
	}
	log_init("rollup_ingest", LOG_LEVEL_WARN);
	struct bench b = {.messages = messages, .gateways = gateways};
	struct store_options opt = {.backend = backend, .dir = dir, .dsn = dsn};
	if (store_open(&opt, &b.st) < 0) {
		fprintf(stderr, "rollup_ingest: cannot open the store\n");
		return 1;
	}
	b.start_ms = clock_now_ms() - (int64_t)messages * 10;
	struct worker *w = xcalloc(gateways, sizeof(*w));
	int64_t t0 = now_us();
	for (size_t i = 0; i < gateways; i++) {
		w[i] = (struct worker){&b, i, 0};
		pthread_create(&w[i].thread, NULL, bench_worker, &w[i]);
	}
	for (size_t i = 0; i < gateways; i++)
		pthread_join(w[i].thread, NULL);
	double secs = (double)(now_us() - t0) / 1e6;
	/* the rollups say what went in */
	struct store_report_query q = {.report = STORE_REPORT_OVERVIEW,
				       .gran = STORE_REPORT_MONTH,
				       .since = 0,
				       .until = clock_now_ms() + 1,
				       .series = true};
	struct store_report_row *rows = NULL;
	size_t nrows = 0;
	int64_t incoming = 0;
	if (store_report_read(b.st, &q, &rows, &nrows) == 0) {
		for (size_t i = 0; i < nrows; i++)
			incoming += rows[i].c[STORE_REPORT_INCOMING];
		store_report_rows_free(rows, nrows);
	}
	store_close(b.st);
	free(w);
	if (atomic_load(&b.failed))
		return 1;
	printf("{\"bench\":\"reports_ingest\",\"backend\":\"%s\",\"messages\":%zu,"
	       "\"gateways\":%zu,\"seconds\":%.2f,\"messages_per_s\":%.0f,"
	       "\"slowest_batch_ms\":%.1f,\"incoming_counted\":%lld}\n",
	       backend, messages, gateways, secs, (double)messages / secs,
	       (double)atomic_load(&b.slowest_us) / 1000.0, (long long)incoming);
	return 0;
}
