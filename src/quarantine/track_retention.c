/*
 * track_retention — the tracking tables' retention run (see track_retention.h),
 * on a one-thread work pool fed by a loop timer, as expiry.c's run. A run that is
 * still going when the timer fires again is not doubled; track_retention_free
 * sets stopping, so a run ends after the transaction it is in.
 *
 * A run: whole days first (store_tracking_drop_days, nothing on SQLite), then
 * store_tracking_purge batch after batch, TRACK_RETENTION_PAUSE_MS apart, until
 * a batch removes nothing; then the reporting rollups' old buckets
 * ([reporting] retention per granularity) the same way.
 *
 * Not for: which rows are old (the store's), creating the days ahead (expiry's
 * store_maintain).
 */
#include "quarantine/track_retention.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "store/store.h"

/* The run's name among the cluster-wide jobs (store_job_try). */
#define TRACK_RETENTION_JOB "tracking_retention"

/* Process-wide, as the other counters of /metrics. */
static _Atomic uint64_t track_retention_events, track_retention_messages, track_retention_rollups;
static atomic_bool track_retention_section;

struct track_retention {
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	_Atomic int64_t retention_ms;
	_Atomic int64_t report_ms[STORE_REPORT_NGRANS]; /* [reporting] */
	int64_t interval_ms;
	atomic_bool running;
	atomic_bool stopping;
};

static void track_retention_pause(void)
{
	struct timespec ts = {0, TRACK_RETENTION_PAUSE_MS * 1000000L};
	nanosleep(&ts, NULL);
}

int track_retention_run_once(struct store *st, int64_t retention_ms, int64_t now,
			     const _Atomic(_Bool) *stop, uint64_t *events, uint64_t *messages)
{
	*events = 0;
	*messages = 0;
	if (retention_ms <= 0)
		return 0;
	int64_t before = now - retention_ms;
	uint64_t e = 0, m = 0;
	int rc = store_tracking_drop_days(st, before, &e, &m);
	if (rc < 0)
		log_error("tracking.purge_failed", "op=drop_days rc=%d", rc);
	*events += e;
	*messages += m;
	atomic_fetch_add(&track_retention_events, e);
	atomic_fetch_add(&track_retention_messages, m);
	int first = rc;
	while (stop == NULL || !atomic_load(stop)) {
		rc = store_tracking_purge(st, before, TRACK_RETENTION_BATCH, &e, &m);
		if (rc < 0) {
			log_error("tracking.purge_failed", "op=purge rc=%d", rc);
			break;
		}
		*events += e;
		*messages += m;
		atomic_fetch_add(&track_retention_events, e);
		atomic_fetch_add(&track_retention_messages, m);
		if (e == 0 && m == 0)
			break;
		track_retention_pause();
	}
	return first < 0 ? first : rc;
}

int track_retention_reports_once(struct store *st, const int64_t *retention_ms, int64_t now,
				 const _Atomic(_Bool) *stop, uint64_t *rows)
{
	*rows = 0;
	int rc = 0;
	for (int g = 0; g < STORE_REPORT_NGRANS && rc == 0; g++) {
		if (retention_ms[g] <= 0)
			continue;
		/* a bucket goes once all of it is older than the retention */
		int64_t before = store_report_bucket(g, now - retention_ms[g]);
		while (stop == NULL || !atomic_load(stop)) {
			uint64_t n = 0;
			rc = store_report_purge(st, g, before, TRACK_RETENTION_BATCH, &n);
			if (rc < 0) {
				log_error("reporting.purge_failed", "gran=%d rc=%d", g, rc);
				break;
			}
			*rows += n;
			atomic_fetch_add(&track_retention_rollups, n);
			if (n == 0)
				break;
			track_retention_pause();
		}
	}
	/*
	 * the system_capacity hours make its days and months too: they are kept as
	 * long as the daily rollups
	 */
	int64_t keep = retention_ms[STORE_REPORT_DAY];
	while (rc == 0 && keep > 0 && (stop == NULL || !atomic_load(stop))) {
		uint64_t n = 0;
		rc = store_capacity_purge(st, store_report_bucket(STORE_REPORT_DAY, now - keep),
					  TRACK_RETENTION_BATCH, &n);
		if (rc < 0) {
			log_error("reporting.purge_failed", "what=capacity rc=%d", rc);
			break;
		}
		*rows += n;
		atomic_fetch_add(&track_retention_rollups, n);
		if (n == 0)
			break;
		track_retention_pause();
	}
	return rc;
}

static void track_retention_run(void *arg)
{
	struct track_retention *t = arg;
	bool held = false;
	int jrc = store_job_try(t->st, TRACK_RETENTION_JOB, &held);
	if (jrc < 0 || !held) {
		if (jrc < 0)
			log_error("tracking.purge_failed", "op=job_try rc=%d", jrc);
		atomic_store(&t->running, false);
		return;
	}
	int64_t now = clock_now_ms();
	uint64_t e = 0, m = 0;
	track_retention_run_once(t->st, atomic_load(&t->retention_ms), now, &t->stopping, &e, &m);
	if (e > 0 || m > 0)
		log_info("tracking.purged", "events=%llu messages=%llu ms=%lld",
			 (unsigned long long)e, (unsigned long long)m,
			 (long long)(clock_now_ms() - now));
	int64_t rms[STORE_REPORT_NGRANS];
	for (int g = 0; g < STORE_REPORT_NGRANS; g++)
		rms[g] = atomic_load(&t->report_ms[g]);
	uint64_t rows = 0;
	int64_t start = clock_now_ms();
	track_retention_reports_once(t->st, rms, start, &t->stopping, &rows);
	if (rows > 0)
		log_info("reporting.purged", "rows=%llu ms=%lld", (unsigned long long)rows,
			 (long long)(clock_now_ms() - start));
	store_job_done(t->st, TRACK_RETENTION_JOB);
	atomic_store(&t->running, false);
}

static void track_retention_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct track_retention *t = arg;
	bool expected = false;
	bool any = atomic_load(&t->retention_ms) > 0;
	for (int g = 0; g < STORE_REPORT_NGRANS; g++)
		any = any || atomic_load(&t->report_ms[g]) > 0;
	if (!any)
		return;
	if (atomic_compare_exchange_strong(&t->running, &expected, true))
		workpool_submit(t->wp, track_retention_run, t);
}

static void track_retention_arm(struct track_retention *t)
{
	struct timeval tv = {(time_t)(t->interval_ms / 1000),
			     (suseconds_t)(t->interval_ms % 1000) * 1000};
	event_del(t->timer);
	event_add(t->timer, &tv);
}

static void track_retention_metrics(FILE *f, void *arg)
{
	(void)arg;
	fprintf(f,
		"# HELP lazaret_tracking_purged_total Gateway events and tracked messages removed"
		" by [tracking] retention.\n"
		"# TYPE lazaret_tracking_purged_total counter\n"
		"lazaret_tracking_purged_total{kind=\"events\"} %llu\n"
		"lazaret_tracking_purged_total{kind=\"messages\"} %llu\n"
		"# HELP lazaret_reporting_purged_total Report rollup rows removed by [reporting]"
		" retention.\n"
		"# TYPE lazaret_reporting_purged_total counter\n"
		"lazaret_reporting_purged_total %llu\n",
		(unsigned long long)atomic_load(&track_retention_events),
		(unsigned long long)atomic_load(&track_retention_messages),
		(unsigned long long)atomic_load(&track_retention_rollups));
}

struct track_retention *track_retention_new(struct event_base *base, struct store *st,
					    int64_t retention_ms, int64_t interval_ms)
{
	struct track_retention *t = xcalloc(1, sizeof(*t));
	t->st = st;
	atomic_init(&t->retention_ms, retention_ms);
	for (int g = 0; g < STORE_REPORT_NGRANS; g++)
		atomic_init(&t->report_ms[g], 0);
	atomic_init(&t->running, false);
	atomic_init(&t->stopping, false);
	t->interval_ms = interval_ms > 0 ? interval_ms : 3600000;
	t->wp = workpool_new(1);
	t->timer = event_new(base, -1, EV_PERSIST, track_retention_tick, t);
	track_retention_arm(t);
	if (!atomic_exchange(&track_retention_section, true))
		metrics_add_section(track_retention_metrics, NULL);
	return t;
}

void track_retention_reconfigure(struct track_retention *t, int64_t retention_ms,
				 int64_t interval_ms)
{
	atomic_store(&t->retention_ms, retention_ms);
	if (interval_ms > 0 && interval_ms != t->interval_ms) {
		t->interval_ms = interval_ms;
		track_retention_arm(t);
	}
}

void track_retention_reports(struct track_retention *t, const int64_t *retention_ms)
{
	for (int g = 0; g < STORE_REPORT_NGRANS; g++)
		atomic_store(&t->report_ms[g], retention_ms[g]);
}

void track_retention_free(struct track_retention *t)
{
	if (t == NULL)
		return;
	event_free(t->timer);
	atomic_store(&t->stopping, true);
	workpool_free(t->wp);
	free(t);
}
