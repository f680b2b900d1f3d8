/*
 * metrics — the manager's counters and their Prometheus text rendering.
 * Counters are process-wide atomics, bumped from any thread. Gauges (store size,
 * queue depth) are read from the store when /metrics is rendered.
 */
#ifndef LAZARET_METRICS_H
#define LAZARET_METRICS_H

#include <stdint.h>
#include <stdio.h>

struct store;

enum metrics_counter {
	METRICS_MESSAGES_RECEIVED,   /* messages stored from the SMTP listener */
	METRICS_BYTES_RECEIVED,	     /* their size in bytes */
	METRICS_RECIPIENTS_RECEIVED, /* quarantined recipients */
	METRICS_SMTP_CONNECTIONS,    /* connections accepted (greeted) */
	METRICS_RELEASED,	     /* recipients delivered after release */
	METRICS_RELEASE_FAILED,	     /* recipients that got a 5xx (or gave up) */
	METRICS_RELEASE_RETRIED,     /* delivery attempts deferred for a retry */
	METRICS_EXPIRED,	     /* recipients expired by the purge run */
	METRICS_PURGED,		     /* messages removed from the store */
	METRICS_DELETED,	     /* recipients deleted by users */
	METRICS_STORE_ERRORS,	     /* messages that could not be stored (451) */
	METRICS_LOGIN_CHECKS,	     /* login credential checks run (argon2id or a directory) */
	METRICS_LOGIN_LIMITED,	     /* logins refused by the limiter (429) before any check */
	METRICS_LOGIN_BUSY,	     /* logins refused because the check queue was full (503) */
	METRICS_API_READ_BUSY,	     /* API reads refused because the reader queue was full (503) */
	METRICS_API_QUERY_TIMEOUTS,  /* API reads stopped by [http] query_timeout (503) */
	METRICS_PVO_OVERFLOW_RELEASED, /* PVO memberships released early by the capacity sweep */
	METRICS_PVO_OVERFLOW_DELETED,  /* PVO memberships deleted early by the capacity sweep */
	METRICS_PVO_FULL_REFUSED, /* PVO transfers refused with 452: the quarantines are full */
	METRICS_BACKUPS,	  /* backup archives written (API and schedule) */
	METRICS_BACKUP_FAILURES,  /* backups that failed (not: refused while another ran) */
	METRICS_COUNTER_COUNT
};

/* Adds n to counter c. Thread-safe. */
void metrics_add(enum metrics_counter c, uint64_t n);
uint64_t metrics_get(enum metrics_counter c);

/*
 * Counts a refused SMTP connection or command by reason: "acl", "connection_limit",
 * "client_connection_limit",
 * "line_too_long", "message_too_large", "too_many_recipients", "header_limit",
 * "too_many_commands", "too_many_errors", "http_request", "syntax",
 * "bad_sequence", "unknown_command", "policy", "timeout", "shutdown";
 * any other reason counts as "other". Thread-safe.
 */
void metrics_refused(const char *reason);

/*
 * Counts an HTTP connection closed at accept or at its request deadline:
 * "connection_limit", "client_connection_limit", "descriptors", "request_timeout";
 * any other reason counts as "other". Thread-safe.
 */
void metrics_http_refused(const char *reason);

/*
 * Adds a section to the exposition: fn(f, arg) writes its lines after the
 * built-in ones on every render, from the rendering thread. At most
 * METRICS_SECTIONS_MAX (more: panic); registered once at start.
 */
#define METRICS_SECTIONS_MAX 8
typedef void (*metrics_section_fn)(FILE *f, void *arg);
void metrics_add_section(metrics_section_fn fn, void *arg);

/* The Prometheus text exposition; the caller frees it. st may be NULL (no gauges). */
char *metrics_render(struct store *st);

#endif
