/*
 * workpool — a fixed set of threads for blocking work (MIME parsing, compression)
 * that must not run on the event loop. Jobs run in FIFO order; no result is
 * returned: a job posts its own continuation (see loopq.h).
 */
#ifndef LAZARET_WORKPOOL_H
#define LAZARET_WORKPOOL_H

struct workpool;

typedef void (*workpool_fn)(void *arg);

/* Starts nthreads (>= 1) threads. Never NULL. */
struct workpool *workpool_new(unsigned nthreads);
/* Queues fn(arg). Thread-safe. */
void workpool_submit(struct workpool *wp, workpool_fn fn, void *arg);
/* Runs every queued job, then joins the threads and frees. NULL is a no-op. */
void workpool_free(struct workpool *wp);

#endif
