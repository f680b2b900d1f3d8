/*
 * expiry — a loop timer that hands each purge run to a one-thread work pool.
 * A run that is still going when the timer fires again is not doubled.
 * Not for: PVO quarantines' per-message expiry (they keep their own times).
 */
#include "quarantine/expiry.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "store/store.h"

/* Messages per expiry/purge transaction: small enough that ingest never waits long. */
#define EXPIRY_BATCH 500

struct expiry {
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	_Atomic int64_t delete_after_ms;
	int64_t interval_ms;
	atomic_bool running;
};

static void expiry_run(void *arg)
{
	struct expiry *e = arg;
	int64_t now = clock_now_ms();
	int64_t after = atomic_load(&e->delete_after_ms);
	uint64_t expired = 0, purged = 0;
	int rc;
	if (after > 0)
		rc = store_expire(e->st, "spam", now - after, now, EXPIRY_BATCH, &expired, &purged);
	else
		rc = store_purge(e->st, EXPIRY_BATCH, &purged);
	if (rc < 0) {
		log_error("expiry.failed", "rc=%d", rc);
	} else {
		metrics_add(METRICS_EXPIRED, expired);
		metrics_add(METRICS_PURGED, purged);
		if (expired > 0 || purged > 0)
			log_info("expiry.run", "expired=%llu purged=%llu ms=%lld",
				 (unsigned long long)expired, (unsigned long long)purged,
				 (long long)(clock_now_ms() - now));
	}
	atomic_store(&e->running, false);
}

static void expiry_tick(evutil_socket_t fd, short what, void *arg)
{
	struct expiry *e = arg;
	bool expected = false;
	if (atomic_compare_exchange_strong(&e->running, &expected, true))
		workpool_submit(e->wp, expiry_run, e);
}

static void expiry_arm(struct expiry *e)
{
	struct timeval tv = {(time_t)(e->interval_ms / 1000),
			     (suseconds_t)(e->interval_ms % 1000) * 1000};
	event_del(e->timer);
	event_add(e->timer, &tv);
}

struct expiry *expiry_new(struct event_base *base, struct store *st, int64_t delete_after_ms,
			  int64_t interval_ms)
{
	struct expiry *e = xcalloc(1, sizeof(*e));
	e->st = st;
	atomic_init(&e->delete_after_ms, delete_after_ms);
	atomic_init(&e->running, false);
	e->interval_ms = interval_ms > 0 ? interval_ms : 3600000;
	e->wp = workpool_new(1);
	e->timer = event_new(base, -1, EV_PERSIST, expiry_tick, e);
	expiry_arm(e);
	return e;
}

void expiry_reconfigure(struct expiry *e, int64_t delete_after_ms, int64_t interval_ms)
{
	atomic_store(&e->delete_after_ms, delete_after_ms);
	if (interval_ms > 0 && interval_ms != e->interval_ms) {
		e->interval_ms = interval_ms;
		expiry_arm(e);
	}
}

void expiry_free(struct expiry *e)
{
	if (e == NULL)
		return;
	event_free(e->timer);
	workpool_free(e->wp);
	free(e);
}
