/*
 * api_report_sched — scheduled reports and their archive for administrators
 * (docs/openapi.yaml, tag reports): POST/GET /api/v1/report-schedules, DELETE
 * and PUT /api/v1/report-schedules/{id}, POST /api/v1/report-schedules/{id}/run (makes
 * the report now, keeps it in the archive and mails it), GET /api/v1/report-archive and
 * GET /api/v1/report-archive/{id} (the document as it was made).
 *
 * Administrators only, as the reports themselves (api_reports.h).
 *
 * Not for: rendering (api_reports.c), the SQL (store_*sched.c).
 */
#ifndef LAZARET_API_REPORT_SCHED_H
#define LAZARET_API_REPORT_SCHED_H

#include <stdbool.h>
#include <stdint.h>

struct api;

/* The hour (UTC) at which schedules fall due. */
#define API_SCHED_HOUR 6

/*
 * When a schedule that repeats every ("daily", "weekly": Mondays, "monthly":
 * the 1st) is next due after now (Unix seconds), at API_SCHED_HOUR UTC; -1 for a
 * bad every.
 */
int64_t api_sched_next_run(const char *every, int64_t now);
struct tz_zone;
/*
 * The same at a local time of its own: at_minute minutes after midnight
 * (0..1439) in tz (NULL: UTC), the weekday and day of the month read there too.
 * A time skipped or repeated by a clock change is read as tz_to_utc does.
 */
int64_t api_sched_next_run_at(const char *every, int at_minute, const struct tz_zone *tz,
			      int64_t now);
/* The retries of a copy's mail: at most this many attempts, the Nth after this many s. */
#define API_SCHED_MAIL_TRIES 8
int64_t api_sched_mail_backoff(int tries);
/* How long a manager holds a copy's mail while it sends it (s): then another may. */
#define API_SCHED_MAIL_LEASE 600

struct store_report_schedule;
/* The next run of s (its every, at_minute and time_zone) after now; -1 if none. */
int64_t api_sched_next_for(const struct store_report_schedule *s, int64_t now);
/* True for a plain address (local@domain, no spaces, quotes, brackets or commas). */
bool api_sched_address_ok(const char *addr);

struct store;
struct store_report_schedule;
struct store_report_archived;
/*
 * Reader thread: makes schedule s's report at now_ms (Unix ms) and keeps it in
 * the archive, its mail pending to s's recipients and claimed until mail_next
 * (the sender sets it on); *out gets the archived copy with its data (clear
 * it). 0 or <0.
 */
int api_sched_make(struct store *st, const struct store_report_schedule *s, int64_t now_ms,
		   int64_t mail_next, struct store_report_archived *out);

/*
 * Mails an archived copy a of schedule s to its recipients (report_sched.h),
 * without waiting; called on a reader thread after a run made on demand.
 */
typedef void (*api_sched_mail_fn)(void *arg, const struct store_report_schedule *s,
				  const struct store_report_archived *a);

/* Adds the routes to a's server; mail (may be NULL: no mail) sends what "run" makes. */
void api_report_sched_register(struct api *a, api_sched_mail_fn mail, void *mail_arg);

#endif
