/*
 * loopq — hands work from any thread to the thread running a libevent loop.
 * Worker and writer threads finish a job and post its continuation here, so that
 * everything touching sockets stays on the loop thread.
 * Requires evthread_use_pthreads() before the event_base was created.
 */
#ifndef LAZARET_LOOPQ_H
#define LAZARET_LOOPQ_H

struct event_base;
struct loopq;

typedef void (*loopq_fn)(void *arg);

/* A queue bound to base. Never NULL. */
struct loopq *loopq_new(struct event_base *base);
/* Drops anything still queued without running it. NULL is a no-op. */
void loopq_free(struct loopq *q);
/* Queues fn(arg) to run on the loop thread, in posting order. Thread-safe. */
void loopq_post(struct loopq *q, loopq_fn fn, void *arg);

#endif
