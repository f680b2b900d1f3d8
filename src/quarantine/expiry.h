/*
 * expiry — the periodic purge run of the spam quarantine: recipients older
 * than delete_after become expired, messages nobody needs are purged, and freed
 * space is given back. Runs on its own thread so the loop and ingest never wait.
 */
#ifndef LAZARET_EXPIRY_H
#define LAZARET_EXPIRY_H

#include <stdint.h>

struct event_base;
struct store;
struct expiry;

/* delete_after_ms 0 = never expire (purging of finished messages still runs). */
struct expiry *expiry_new(struct event_base *base, struct store *st, int64_t delete_after_ms,
			  int64_t interval_ms);
/* New period and interval (SIGHUP); a shorter period applies at the next run. */
void expiry_reconfigure(struct expiry *e, int64_t delete_after_ms, int64_t interval_ms);
/* Waits for a run in progress, then frees. NULL is a no-op. */
void expiry_free(struct expiry *e);

#endif
