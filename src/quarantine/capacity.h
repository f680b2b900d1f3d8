/*
 * capacity — keeps the PVO quarantines together within [pvo_quarantine]
 * max_size (PV7). Every CAPACITY_INTERVAL_MS a worker thread reads how much they
 * hold; over the limit it runs the overflow sweep (store_pvo_overflow) batch
 * after batch, so that ingest's commits go between the batches, until the limit
 * holds or nothing is left to act on. Then, over the limit with every held
 * message in an exempt quarantine, the listener must refuse new PVO mail
 * (capacity_full: "452 4.3.1") until there is room again. One node of a cluster
 * sweeps at a time (store_job_try).
 */
#ifndef LAZARET_CAPACITY_H
#define LAZARET_CAPACITY_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct capacity;

/* How often the usage is read (and the sweep runs when over). */
#define CAPACITY_INTERVAL_MS 1000
/*
 * Memberships per sweep transaction. An ingest commit that arrives while one runs
 * waits for it, so it is kept to about one commit's own time (mostly its fsync).
 */
#define CAPACITY_BATCH 5
/* Messages per purge transaction after a sweep. */
#define CAPACITY_PURGE_BATCH 10
/* The pause between two sweep (or purge) transactions, in which ingest commits. */
#define CAPACITY_PAUSE_MS 5

/* max_size 0: no limit (never sweeps, never full). */
struct capacity *capacity_new(struct event_base *base, struct store *st, uint64_t max_size);
/* A new limit (SIGHUP); applies at the next check. */
void capacity_reconfigure(struct capacity *c, uint64_t max_size);
/* Whether new PVO mail must be refused now. Any thread; c NULL: false. */
bool capacity_full(const struct capacity *c);
/* Ends a sweep in progress after its current transaction, then frees. NULL is a no-op. */
void capacity_free(struct capacity *c);

#endif
