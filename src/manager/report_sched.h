/*
 * report_sched — scheduled reports (POST /api/v1/report-schedules): once a
 * minute the manager looks for schedules that are due, claims each run in the
 * store (store_report_schedule_claim: of several managers sharing a store, one
 * runs it), makes the report (api_sched_make: rendered and archived) and mails
 * it with the PDF or CSV attached through the release path ([release]
 * primary_host, then secondary_host), From [notifications] from. A copy's
 * recipients refused for a while (4xx, no answer) are tried again with a backoff
 * (api_sched_mail_backoff), the copy's mail state claimed like a run; copies
 * older than [reporting] archive_retention are removed in batches on the same tick.
 * The same worker sends the "done" mails of gateways' migration runs
 * (report_sched_notices_now).
 *
 * Test only: with LAZARET_FAULT=report_sched_ahead (common/fault.h) the
 * schedules' clock runs 32 days ahead and is looked at every second, so that a new
 * schedule is due at once, and once only. With LAZARET_FAULT=migration_notice_fast
 * a deferred migration notice is tried again a second later (the timer ticks
 * every second) instead of after the backoff.
 *
 * Not for: when a schedule is due (api_sched_next_run), rendering (api_reports.c).
 */
#ifndef LAZARET_REPORT_SCHED_H
#define LAZARET_REPORT_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_report_schedule;
struct store_report_archived;

struct report_sched_config {
	const char *from;     /* From: and envelope sender */
	const char *hostname; /* Message-ID right side */
	const char *primary_host;
	const char *secondary_host; /* may be NULL */
	const char *source_address; /* may be NULL */
	const char *helo_name;
	int64_t timeout_ms; /* per SMTP step */
	/* [reporting] archive_retention: copies made longer ago go; 0 keeps them */
	int64_t archive_retention_ms;
};

/* One report's mail. */
struct report_sched_mail {
	const char *from;
	const char *const *to;
	size_t nto;
	const char *hostname;
	const char *report, *period, *format;
	int64_t since, until; /* the range it covers, Unix ms */
	int64_t now_ms;
	int64_t archive_id; /* names the attachment */
	const unsigned char *data;
	size_t size;
};

/*
 * The message (CRLF lines): multipart/mixed with a short text part and the
 * document attached in base64; the Subject names the report and its period in
 * RFC 2047 encoded-words (it carries Japanese). *out is malloc()ed. 0 or -EINVAL.
 */
int report_sched_build_mail(const struct report_sched_mail *m, char **out, size_t *len);

struct report_sched;

/* Arms the minute timer on base; cfg's strings are copied. 0 or a negative errno. */
int report_sched_new(struct event_base *base, struct store *st,
		     const struct report_sched_config *cfg, struct report_sched **out);
/*
 * Queues the mail of archived copy a of schedule s (copied) to its recipients
 * (api_sched_mail_fn, for runs made on demand). Thread-safe.
 */
void report_sched_mail_later(void *r, const struct store_report_schedule *s,
			     const struct store_report_archived *a);
/* New settings (SIGHUP); a run already going keeps the ones it started with. */
void report_sched_reconfigure(struct report_sched *r, const struct report_sched_config *cfg);
/* Stops the timer and waits for a run being made. NULL: no-op. */
void report_sched_free(struct report_sched *r);

/*
 * A short notice (a text part in UTF-8, Subject encoded for RFC 2047) to one
 * address: *out is malloc()ed (CRLF lines). 0 or -EINVAL. No I/O.
 */
int report_sched_build_notice(const char *from, const char *to, const char *hostname,
			      const char *subject, const char *text, int64_t now_ms, char **out,
			      size_t *len);
/*
 * Looks for the "done" mails of migration runs that are due
 * (store_migration_notice_due) on the scheduled reports' worker, now
 * (api_migration_kick_fn; also at start and on every tick). Each is claimed in
 * the store for API_SCHED_MAIL_LEASE, so that of several managers one sends it,
 * and goes to its one address through the release path. A 2xx settles it
 * "sent", a 5xx "failed" for good (logged migration_notice.failed); a deferral
 * (4xx, no answer) is tried again after api_migration_notice_next, and given up
 * ("failed") after API_MIGRATION_NOTICE_TRIES attempts. Thread-safe.
 */
void report_sched_notices_now(void *r);

#endif
