/*
 * capacity — the PVO capacity check and overflow sweep (see capacity.h).
 *
 * States of the listener's flag, set by the worker only:
 *
 *   room --(over max_size, nothing sweepable after the sweep)--> full
 *   full --(within max_size, or a quarantine became sweepable)--> room
 *
 * Not for: which memberships go first and what happens to them (the store's
 * store_pvo_overflow), the reply to the client (manager/ingest.c).
 */
#include "quarantine/capacity.h"

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

/* The sweep's name among the cluster-wide jobs (store_job_try). */
#define CAPACITY_JOB "pvo_capacity"

struct capacity {
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	_Atomic uint64_t max_size;
	atomic_bool running;
	atomic_bool full;
	atomic_bool stopping; /* capacity_free: a sweep in progress ends after its batch */
};

/* Lets the ingest's commits through between two of the sweep's transactions. */
static void capacity_pause(void)
{
	struct timespec ts = {0, CAPACITY_PAUSE_MS * 1000000L};
	nanosleep(&ts, NULL);
}

/* Sweeps batch after batch while over max; returns the usage it left. */
static int capacity_sweep(struct capacity *c, uint64_t max, struct store_pvo_usage *u)
{
	int64_t t0 = clock_now_ms();
	uint64_t released = 0, deleted = 0, before = u->bytes;
	int rc = 0;
	while (u->bytes > max && u->sweepable && !atomic_load(&c->stopping)) {
		struct store_pvo_overflow o;
		rc = store_pvo_overflow(c->st, max, CAPACITY_BATCH, clock_now_ms(), &o);
		if (rc < 0) {
			log_error("pvo.overflow_failed", "rc=%d", rc);
			break;
		}
		released += o.released;
		deleted += o.deleted;
		metrics_add(METRICS_PVO_OVERFLOW_RELEASED, o.released);
		metrics_add(METRICS_PVO_OVERFLOW_DELETED, o.deleted);
		*u = o.after;
		if (o.released + o.deleted == 0)
			break;
		log_debug("pvo.overflow", "released=%llu deleted=%llu bytes=%llu max_size=%llu",
			  (unsigned long long)o.released, (unsigned long long)o.deleted,
			  (unsigned long long)u->bytes, (unsigned long long)max);
		capacity_pause();
	}
	if (released + deleted > 0) {
		/* what the deletes left behind goes now, not at the next purge run */
		uint64_t purged = 0, p;
		do {
			p = 0;
			if (atomic_load(&c->stopping) ||
			    store_purge(c->st, CAPACITY_PURGE_BATCH, &p) < 0)
				break;
			purged += p;
			capacity_pause();
		} while (p > 0);
		metrics_add(METRICS_PURGED, purged);
		log_info("pvo.overflow_done",
			 "acted=%llu released=%llu deleted=%llu purged=%llu bytes_before=%llu "
			 "bytes=%llu max_size=%llu ms=%lld",
			 (unsigned long long)(released + deleted), (unsigned long long)released,
			 (unsigned long long)deleted, (unsigned long long)purged,
			 (unsigned long long)before, (unsigned long long)u->bytes,
			 (unsigned long long)max, (long long)(clock_now_ms() - t0));
	}
	return rc;
}

static void capacity_set_full(struct capacity *c, bool full, const struct store_pvo_usage *u,
			      uint64_t max)
{
	if (atomic_exchange(&c->full, full) == full)
		return;
	if (full)
		log_warn("pvo.capacity_full",
			 "bytes=%llu max_size=%llu messages=%llu reason=\"every held message is in "
			 "an overflow-exempt quarantine\" reply=\"452 4.3.1\"",
			 (unsigned long long)u->bytes, (unsigned long long)max,
			 (unsigned long long)u->messages);
	else
		log_info("pvo.capacity_ok", "bytes=%llu max_size=%llu",
			 (unsigned long long)u->bytes, (unsigned long long)max);
}

static void capacity_run(void *arg)
{
	struct capacity *c = arg;
	uint64_t max = atomic_load(&c->max_size);
	struct store_pvo_usage u;
	int rc = store_pvo_usage(c->st, &u);
	if (rc < 0) {
		log_debug("pvo.capacity_unread", "rc=%d", rc);
		atomic_store(&c->running, false);
		return;
	}
	if (u.bytes > max && u.sweepable) {
		bool held = false;
		int jrc = store_job_try(c->st, CAPACITY_JOB, &held);
		if (jrc == 0 && held) {
			capacity_sweep(c, max, &u);
			store_job_done(c->st, CAPACITY_JOB);
		} else if (jrc < 0) {
			log_error("pvo.overflow_failed", "op=job_try rc=%d", jrc);
		}
	}
	/* another node's sweep in progress: full only when nothing is left to sweep */
	capacity_set_full(c, u.bytes > max && !u.sweepable, &u, max);
	atomic_store(&c->running, false);
}

static void capacity_tick(evutil_socket_t fd, short what, void *arg)
{
	struct capacity *c = arg;
	bool expected = false;
	if (atomic_load(&c->max_size) == 0) {
		atomic_store(&c->full, false);
		return;
	}
	if (atomic_compare_exchange_strong(&c->running, &expected, true))
		workpool_submit(c->wp, capacity_run, c);
}

struct capacity *capacity_new(struct event_base *base, struct store *st, uint64_t max_size)
{
	struct capacity *c = xcalloc(1, sizeof(*c));
	c->st = st;
	atomic_init(&c->max_size, max_size);
	atomic_init(&c->running, false);
	atomic_init(&c->full, false);
	atomic_init(&c->stopping, false);
	c->wp = workpool_new(1);
	c->timer = event_new(base, -1, EV_PERSIST, capacity_tick, c);
	struct timeval tv = {CAPACITY_INTERVAL_MS / 1000, (CAPACITY_INTERVAL_MS % 1000) * 1000};
	event_add(c->timer, &tv);
	return c;
}

void capacity_reconfigure(struct capacity *c, uint64_t max_size)
{
	atomic_store(&c->max_size, max_size);
}

bool capacity_full(const struct capacity *c)
{
	return c != NULL && atomic_load(&c->full);
}

void capacity_free(struct capacity *c)
{
	if (c == NULL)
		return;
	event_free(c->timer);
	/* a sweep in progress stops after its transaction; the next start goes on */
	atomic_store(&c->stopping, true);
	workpool_free(c->wp);
	free(c);
}
