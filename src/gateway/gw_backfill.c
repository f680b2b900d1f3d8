/*
 * gw_backfill — the rollups of the time before central reporting, sent once
 * (gw_backfill.h). Pages of GW_BACKFILL_PAGE rows per granularity in the store's
 * order, each pushed until the manager answers 200 (a failure waits, doubling
 * from GW_BACKFILL_WAIT_MS to GW_BACKFILL_WAIT_MAX_MS, and sends the same page
 * again), then a push with "done".
 */
#include "gateway/gw_backfill.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "gateway/gw_api.h"
#include "gateway/gw_config.h"
#include "store/store.h"

#define GW_BACKFILL_PAGE	500
#define GW_BACKFILL_WAIT_MS	2000
#define GW_BACKFILL_WAIT_MAX_MS (5 * 60 * 1000)
#define GW_BACKFILL_TIMEOUT_MS	60000
#define GW_BACKFILL_ANSWER_MAX	4096
#define GW_BACKFILL_KEY_MAX	512 /* API_BACKFILL_KEY_MAX */
#define GW_BACKFILL_STATE	"reporting.state"
#define GW_BACKFILL_DONE	"reporting.backfilled"

static const char *const gw_backfill_grans[STORE_REPORT_NGRANS] = {"hour", "day", "month"};
static const char *const gw_backfill_counters[STORE_REPORT_NCOUNTERS] = {
    "incoming", "clean", "spam", "suspect", "virus", "content_filter", "count"};

struct gw_backfill {
	struct store *st;
	char *api_url, *token, *ca, *done_path;
	int64_t since;
	gw_backfill_done_fn done;
	void *done_arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	atomic_bool stopping;
};

static char *gw_backfill_path(const struct gw_config *cfg, const char *name)
{
	return xasprintf("%s/%s", cfg->data_dir, name);
}

int gw_backfill_switch(const struct gw_config *cfg, int64_t now, int64_t *since)
{
	char *path = gw_backfill_path(cfg, GW_BACKFILL_STATE);
	char *text = NULL;
	size_t len = 0;
	/* first: the moment central was first seen (0: unknown), -1: never central */
	int64_t first = -1;
	bool had = read_file(path, 256, &text, &len) == 0;
	long long v = 0;
	if (had &&
	    (sscanf(text, "central %lld", &v) == 1 || sscanf(text, "local first=%lld", &v) == 1) &&
	    v >= 0)
		first = v;
	bool was_local = had && strncmp(text, "local", 5) == 0;
	free(text);
	*since = 0;
	char line[64];
	if (!gw_config_reporting_central(cfg)) {
		if (first >= 0)
			snprintf(line, sizeof(line), "local first=%lld\n", (long long)first);
		else
			snprintf(line, sizeof(line), "local\n");
	} else {
		/* never central before: now, if this version saw it local; else unknown */
		*since = first >= 0 ? first : was_local ? now : 0;
		snprintf(line, sizeof(line), "central %lld\n", (long long)*since);
	}
	int rc = write_file_atomic(path, line, strlen(line));
	if (rc < 0)
		log_error("gw.reporting_state_failed", "path=%s error=%s", path, strerror(-rc));
	free(path);
	return rc;
}

bool gw_backfill_is_done(const struct gw_config *cfg)
{
	char *path = gw_backfill_path(cfg, GW_BACKFILL_DONE);
	struct stat sb;
	bool done = stat(path, &sb) == 0;
	free(path);
	return done;
}

/* Sleeps ms unless stopped; true when stopping. */
static bool gw_backfill_wait(struct gw_backfill *b, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&b->lock);
	while (!atomic_load(&b->stopping)) {
		if (pthread_cond_timedwait(&b->wake, &b->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&b->lock);
	return atomic_load(&b->stopping);
}

/*
 * Pushes body until the manager takes it: 200 (*stored added), 409 (done
 * already: *finished), or stopping (-ECANCELED).
 */
static int gw_backfill_push(struct gw_backfill *b, const char *body, size_t *stored, bool *finished)
{
	int64_t wait = GW_BACKFILL_WAIT_MS;
	for (;;) {
		struct gw_api_call call = {.api_url = b->api_url,
					   .path = "/api/v1/gateway/rollups",
					   .token = b->token,
					   .ca = b->ca,
					   .body = body,
					   .timeout_ms = GW_BACKFILL_TIMEOUT_MS,
					   .max_answer = GW_BACKFILL_ANSWER_MAX,
					   .abort = &b->stopping};
		struct gw_api_answer a;
		int rc = gw_api_post(&call, &a);
		if (rc == 0 && a.status == 200) {
			json_t *doc = json_loadb(strbuf_str(&a.body), a.body.len, 0, NULL);
			*stored += (size_t)json_integer_value(json_object_get(doc, "stored"));
			json_decref(doc);
			strbuf_free(&a.body);
			return 0;
		}
		if (rc == 0 && (a.status == 400 || a.status == 401 || a.status == 403 ||
				a.status == 404 || a.status == 422)) {
			/* not to be helped by sending it again: until the next start */
			log_error("gw.backfill_refused", "status=%ld answer=%.300s", a.status,
				  strbuf_str(&a.body));
			strbuf_free(&a.body);
			return -EPROTO;
		}
		if (rc == 0 && a.status == 409) {
			*finished = true;
			strbuf_free(&a.body);
			return 0;
		}
		log_warn("gw.backfill_push_failed", "status=%ld error=\"%s\" retry_in=%lldms",
			 rc == 0 ? a.status : 0L,
			 rc == 0 ? "see the manager's answer" : (a.error != NULL ? a.error : "?"),
			 (long long)wait);
		strbuf_free(&a.body);
		if (gw_backfill_wait(b, wait))
			return -ECANCELED;
		wait = wait * 2 > GW_BACKFILL_WAIT_MAX_MS ? GW_BACKFILL_WAIT_MAX_MS : wait * 2;
	}
}

static char *gw_backfill_body(int64_t cutoff, const struct store_rollup_row *v, size_t n, bool done)
{
	json_t *rows = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *r =
		    json_pack("{s:s, s:s, s:I, s:s}", "report", store_report_names[v[i].report],
			      "gran", gw_backfill_grans[v[i].gran], "bucket",
			      (json_int_t)v[i].bucket, "key", v[i].key);
		if (r == NULL || strlen(v[i].key) > GW_BACKFILL_KEY_MAX) {
			/* not UTF-8 (not JSON), or longer than the manager takes: stays here */
			json_decref(r);
			log_warn("gw.backfill_row_skipped", "report=%s bucket=%lld",
				 store_report_names[v[i].report], (long long)v[i].bucket);
			continue;
		}
		for (int c = 0; c < STORE_REPORT_NCOUNTERS; c++)
			if (v[i].c[c] != 0)
				json_object_set_new(r, gw_backfill_counters[c],
						    json_integer(v[i].c[c]));
		json_array_append_new(rows, r);
	}
	json_t *body =
	    json_pack("{s:I, s:o, s:b}", "cutoff", (json_int_t)cutoff, "rows", rows, "done", done);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	return text;
}

static void *gw_backfill_main(void *arg)
{
	struct gw_backfill *b = arg;
	size_t sent = 0, stored = 0;
	bool finished = false;
	int rc = 0;
	log_info("gw.backfill_started", "cutoff=%lld", (long long)b->since);
	for (int g = 0; g < STORE_REPORT_NGRANS && rc == 0 && !finished; g++) {
		int64_t before = store_report_bucket(g, b->since);
		struct store_rollup_row after = {0};
		char *after_key = NULL;
		for (;;) {
			struct store_rollup_row *v = NULL;
			size_t n = 0;
			after.key = after_key;
			rc =
			    store_report_export(b->st, g, before, &after, GW_BACKFILL_PAGE, &v, &n);
			if (rc < 0) {
				log_error("gw.backfill_read_failed", "error=%s", strerror(-rc));
				break;
			}
			if (n == 0) {
				free(v);
				break;
			}
			char *body = gw_backfill_body(b->since, v, n, false);
			rc = gw_backfill_push(b, body, &stored, &finished);
			free(body);
			sent += n;
			free(after_key);
			after_key = xstrdup(v[n - 1].key);
			after.report = v[n - 1].report;
			after.bucket = v[n - 1].bucket;
			store_rollup_rows_free(v, n);
			if (rc < 0 || finished || n < GW_BACKFILL_PAGE)
				break;
		}
		free(after_key);
	}
	if (rc == 0 && !finished) {
		char *body = gw_backfill_body(b->since, NULL, 0, true);
		rc = gw_backfill_push(b, body, &stored, &finished);
		free(body);
	}
	if (rc == 0) {
		char line[96];
		snprintf(line, sizeof(line), "%lld rows=%zu stored=%zu\n",
			 (long long)clock_now_ms(), sent, stored);
		rc = write_file_atomic(b->done_path, line, strlen(line));
		if (rc < 0)
			log_error("gw.backfill_mark_failed", "path=%s error=%s", b->done_path,
				  strerror(-rc));
		log_info("gw.backfill_done", "rows=%zu stored=%zu", sent, stored);
		if (b->done != NULL)
			b->done(b->done_arg);
	}
	return NULL;
}

int gw_backfill_start(struct store *st, const struct gw_config *cfg, int64_t since,
		      gw_backfill_done_fn done, void *done_arg, struct gw_backfill **out)
{
	*out = NULL;
	if (cfg->api_url == NULL || cfg->api_token == NULL || since <= 0)
		return -EINVAL;
	struct gw_backfill *b = xcalloc(1, sizeof(*b));
	b->st = st;
	b->api_url = xstrdup(cfg->api_url);
	b->token = xstrdup(cfg->api_token);
	b->ca = cfg->api_ca != NULL ? xstrdup(cfg->api_ca) : NULL;
	b->done_path = gw_backfill_path(cfg, GW_BACKFILL_DONE);
	b->since = since;
	b->done = done;
	b->done_arg = done_arg;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->wake, NULL);
	atomic_init(&b->stopping, false);
	gw_api_init();
	int rc = pthread_create(&b->thread, NULL, gw_backfill_main, b);
	if (rc != 0) {
		gw_backfill_stop(b);
		return -rc;
	}
	*out = b;
	return 0;
}

void gw_backfill_stop(struct gw_backfill *b)
{
	if (b == NULL)
		return;
	if (b->thread != 0) {
		pthread_mutex_lock(&b->lock);
		atomic_store(&b->stopping, true);
		pthread_cond_broadcast(&b->wake);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->thread, NULL);
	}
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->wake);
	free(b->api_url);
	free(b->token);
	free(b->ca);
	free(b->done_path);
	free(b);
}
