/*
 * expiry — the purge run over a store's quarantines: recipients older than
 * their quarantine's retention become expired, messages nobody needs are purged,
 * and freed space is given back. expiry_run_once is one run, for any list of
 * quarantines (the gateway's local ones run it from its maintenance thread);
 * expiry_new runs it periodically for the manager's spam quarantine, on its own
 * thread so the loop and ingest never wait.
 */
#ifndef LAZARET_EXPIRY_H
#define LAZARET_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct expiry;

/* Messages per expiry/purge transaction: small enough that ingest never waits long. */
#define EXPIRY_BATCH 500

/* How long one quarantine keeps its messages. */
struct expiry_retention {
	/* NULL: every quarantine of the store that no other entry names */
	const char *quarantine;
	int64_t delete_after_ms; /* 0: never expires */
};

/*
 * One run at now over the n retentions of r: first the store's time partitions
 * are kept up (store_maintain: days created ahead); in each quarantine with a period,
 * recipients received longer ago than it become expired; then every message that
 * no recipient needs any more is purged, whatever the retentions. With a NULL
 * entry the store is asked which quarantines hold messages, and empty ones are
 * skipped. A quarantine that fails is logged (expiry.failed) and the run goes on.
 * Adds to *expired (recipients) and *purged (messages). 0, or the first negative
 * errno.
 */
int expiry_run_once(struct store *st, const struct expiry_retention *r, size_t n, int64_t now,
		    uint64_t *expired, uint64_t *purged);

/* The manager's spam quarantine: delete_after_ms 0 = never expire (purging of finished messages
 * still runs). */
struct expiry *expiry_new(struct event_base *base, struct store *st, int64_t delete_after_ms,
			  int64_t interval_ms);
/* New period and interval (SIGHUP); a shorter period applies at the next run. */
void expiry_reconfigure(struct expiry *e, int64_t delete_after_ms, int64_t interval_ms);
/* Waits for a run in progress, then frees. NULL is a no-op. */
void expiry_free(struct expiry *e);

#endif
