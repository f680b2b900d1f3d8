/*
 * expiry — one purge run over a list of quarantines with their retentions, and a
 * loop timer that hands the spam quarantine's run to a one-thread work pool. A run
 * that is still going when the timer fires again is not doubled.
 * PVO memberships expire at their own times (store_expire_memberships) in the same run.
 * Not for: scheduling the gateway's runs (its maintenance thread does).
 */
#include "quarantine/expiry.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "quarantine/own_events.h"
#include "store/store.h"

/* The run's name among the cluster-wide jobs (store_job_try). */
#define EXPIRY_JOB "expiry"
/* Messages a run records "expire" events for at most (own_events.h's queue). */
#define EXPIRY_OWN_EVENTS_MAX 50000

struct expiry {
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	_Atomic int64_t delete_after_ms;
	int64_t interval_ms;
	atomic_bool running;
};

/* The retention of quarantine name: its own entry, else the NULL entry's, else 0. */
static int64_t expiry_period(const struct expiry_retention *r, size_t n, const char *name)
{
	int64_t other = 0;
	for (size_t i = 0; i < n; i++) {
		if (r[i].quarantine == NULL)
			other = r[i].delete_after_ms;
		else if (strcmp(r[i].quarantine, name) == 0)
			return r[i].delete_after_ms;
	}
	return other;
}

/* Expires quarantine name's recipients older than after; 0 or -errno (logged). */
static int expiry_one(struct store *st, const char *name, int64_t after, int64_t now,
		      uint64_t *expired, uint64_t *purged)
{
	uint64_t e = 0, p = 0;
	int rc = store_expire(st, name, now - after, now, EXPIRY_BATCH, &e, &p);
	if (rc < 0)
		log_error("expiry.failed", "quarantine=%s rc=%d", name, rc);
	*expired += e;
	*purged += p;
	return rc;
}

int expiry_run_once(struct store *st, const struct expiry_retention *r, size_t n, int64_t now,
		    uint64_t *expired, uint64_t *purged)
{
	int first = 0, rc;
	bool others = false;
	/* the days ahead exist before they are needed; whole old days go with expiry */
	uint64_t stray = 0;
	rc = store_maintain(st, now, &stray);
	if (rc < 0) {
		log_error("expiry.failed", "op=maintain rc=%d", rc);
		first = rc;
	}
	for (size_t i = 0; i < n; i++)
		others |= r[i].quarantine == NULL;
	if (!others) {
		/* Only the named ones: no need to ask the store which there are. */
		for (size_t i = 0; i < n; i++) {
			if (r[i].delete_after_ms <= 0)
				continue;
			rc = expiry_one(st, r[i].quarantine, r[i].delete_after_ms, now, expired,
					purged);
			if (rc < 0 && first == 0)
				first = rc;
		}
	} else {
		struct store_quarantine_stats *v = NULL;
		size_t nv = 0;
		rc = store_quarantines(st, &v, &nv);
		if (rc < 0) {
			log_error("expiry.failed", "op=list rc=%d", rc);
			first = rc;
		}
		for (size_t i = 0; i < nv; i++) {
			int64_t after = expiry_period(r, n, v[i].name);
			if (after <= 0 || v[i].messages == 0)
				continue;
			rc = expiry_one(st, v[i].name, after, now, expired, purged);
			if (rc < 0 && first == 0)
				first = rc;
		}
		store_quarantine_stats_free(v, nv);
	}
	/* PVO memberships carry their own expiry (none on a gateway's store) */
	uint64_t me = 0, mp = 0;
	rc = store_expire_memberships(st, now, EXPIRY_BATCH, &me, &mp);
	if (rc < 0) {
		log_error("expiry.failed", "op=memberships rc=%d", rc);
		if (first == 0)
			first = rc;
	}
	*expired += me;
	*purged += mp;
	/* What release and expiry finished in any quarantine; usually nothing is left. */
	uint64_t p = 0;
	rc = store_purge(st, EXPIRY_BATCH, &p);
	if (rc < 0)
		log_error("expiry.failed", "op=purge rc=%d", rc);
	*purged += p;
	return first < 0 ? first : rc;
}

/*
 * The manager's "expire" events (own_events.h) of the spam quarantine's messages
 * that this run is about to expire: those received before cutoff with a
 * recipient still quarantined, listed a page at a time before store_expire
 * changes them. At most EXPIRY_OWN_EVENTS_MAX a run (logged when there were
 * more: the rest expire unrecorded).
 */
static void expiry_own_events(struct store *st, int64_t cutoff, int64_t now)
{
	struct store_filter f = {
	    .quarantine = "spam", .until = cutoff, .state = "quarantined", .exclude_pvo = true};
	char *cursor = NULL;
	size_t recorded = 0;
	for (;;) {
		struct store_message **v = NULL;
		size_t n = 0;
		char *next = NULL;
		int rc = store_list(st, &f, EXPIRY_BATCH, cursor, &v, &n, &next);
		free(cursor);
		cursor = NULL;
		if (rc < 0) {
			log_warn("expiry.own_events_failed", "rc=%d", rc);
			break;
		}
		for (size_t i = 0; i < n && recorded < EXPIRY_OWN_EVENTS_MAX; i++) {
			json_t *rcpts = json_array();
			for (size_t k = 0; k < v[i]->nrecipients; k++) {
				if (v[i]->recipients[k].state == STORE_RCPT_QUARANTINED)
					json_array_append_new(
					    rcpts, json_string(v[i]->recipients[k].address));
			}
			own_events_add(
			    now, "expire", v[i]->id, "expired", 0,
			    json_pack("{s:s,s:o}", "quarantine", "spam", "recipients", rcpts),
			    NULL);
			recorded++;
		}
		for (size_t i = 0; i < n; i++)
			store_message_free(v[i]);
		free(v);
		if (recorded >= EXPIRY_OWN_EVENTS_MAX) {
			if (next != NULL)
				log_warn("expiry.own_events_capped",
					 "recorded=%zu reason=\"more expire in this run than are "
					 "recorded\"",
					 recorded);
			free(next);
			break;
		}
		if (next == NULL)
			break;
		cursor = next;
	}
}

/*
 * One run, once for every lazaretd sharing the store (store_job_try): a process
 * that finds another one running it skips this time.
 */
static void expiry_run(void *arg)
{
	struct expiry *e = arg;
	bool held = false;
	int jrc = store_job_try(e->st, EXPIRY_JOB, &held);
	if (jrc < 0 || !held) {
		if (jrc < 0)
			log_error("expiry.failed", "op=job_try rc=%d", jrc);
		else
			log_debug("expiry.skipped", "reason=\"another node is running it\"");
		atomic_store(&e->running, false);
		return;
	}
	int64_t now = clock_now_ms();
	struct expiry_retention spam = {"spam", atomic_load(&e->delete_after_ms)};
	if (spam.delete_after_ms > 0)
		expiry_own_events(e->st, now - spam.delete_after_ms, now);
	uint64_t expired = 0, purged = 0;
	int rc = expiry_run_once(e->st, &spam, 1, now, &expired, &purged);
	if (rc == 0) {
		metrics_add(METRICS_EXPIRED, expired);
		metrics_add(METRICS_PURGED, purged);
		if (expired > 0 || purged > 0)
			log_info("expiry.run", "expired=%llu purged=%llu ms=%lld",
				 (unsigned long long)expired, (unsigned long long)purged,
				 (long long)(clock_now_ms() - now));
	}
	store_job_done(e->st, EXPIRY_JOB);
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
