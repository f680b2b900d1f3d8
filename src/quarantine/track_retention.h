/*
 * track_retention — the manager's [tracking] retention: a worker that removes
 * gateway events and tracked messages (with their recipients and attachments)
 * older than the retention, in small transactions with short pauses, so that
 * event ingest (POST /api/v1/gateway/events) keeps being answered while it runs.
 * Whole old days go first where the store keeps them in daily partitions
 * (PostgreSQL); each gateway's seq counter is never removed, so a replay of a
 * purged batch is not stored again (store.h "store_tracking_purge").
 * The reporting rollups' old buckets go in the same run ([reporting]).
 * Counted in /metrics as lazaret_tracking_purged_total and
 * lazaret_reporting_purged_total.
 */
#ifndef LAZARET_TRACK_RETENTION_H
#define LAZARET_TRACK_RETENTION_H

#include <stdint.h>

struct event_base;
struct store;
struct track_retention;

/* Events and tracked messages each per purge transaction. */
#define TRACK_RETENTION_BATCH 500
/* The pause between two purge transactions: ingest's commits go in between. */
#define TRACK_RETENTION_PAUSE_MS 20

/*
 * One run at now: removes what is older than now - retention_ms; *events and
 * *messages count it. stop (may be NULL) ends the run after the transaction in
 * progress when it becomes true. 0 or the first negative errno (logged).
 */
int track_retention_run_once(struct store *st, int64_t retention_ms, int64_t now,
			     const _Atomic(_Bool) *stop, uint64_t *events, uint64_t *messages);

/*
 * Runs every interval_ms on its own thread (once per cluster: store_job_try);
 * retention_ms 0 keeps everything. Registers the metric section once.
 */
struct track_retention *track_retention_new(struct event_base *base, struct store *st,
					    int64_t retention_ms, int64_t interval_ms);
/*
 * The reporting rollups' retention: buckets of granularity g (enum
 * store_report_gran) that ended more than retention_ms[g] before now go, in
 * batches; 0 keeps them. *rows counts them. 0 or the first negative errno.
 */
int track_retention_reports_once(struct store *st, const int64_t *retention_ms, int64_t now,
				 const _Atomic(_Bool) *stop, uint64_t *rows);
/* The rollups' retention per granularity (3 values; at start and on SIGHUP). */
void track_retention_reports(struct track_retention *t, const int64_t *retention_ms);
/* New retention and interval (SIGHUP). */
void track_retention_reconfigure(struct track_retention *t, int64_t retention_ms,
				 int64_t interval_ms);
/* Stops a run in progress after its transaction, waits for it, frees. NULL: no-op. */
void track_retention_free(struct track_retention *t);

#endif
