/*
 * release — the delivery workers behind the store's release queue (see release.h).
 *
 * What it is for: taking due deliveries from the store, sending the original bytes
 * (with one X-Lazaret-Released header prepended) to the primary host, else the
 * secondary (or along a PVO release's route, below), and recording each recipient's outcome back in
 * the store. What it is not for: deciding what is released (the API does, through store_release) or
 * keeping any queue of its own — the store's queue is the only one, so a crash
 * loses nothing.
 *
 * Concurrency toward the primary host is bounded by the number of worker threads
 * (max_connections): each has at most one SMTP session open at any time.
 *
 * A delivery, as one worker sees it:
 *
 *   due ----store_delivery_claim (leased)-------------------> SENDING
 *   SENDING --host's reply to the data--store_delivery_confirm--> per recipient
 *        2xx -> released, 5xx -> failed, at once (before QUIT, before the secondary)
 *   SENDING --primary: no connection, any 4xx--> SECONDARY   (only those recipients)
 *   SENDING/SECONDARY --store_delivery_finish--> the recipients not confirmed yet:
 *        2xx                       -> delivered (released)
 *        5xx                       -> failed, reply kept
 *        4xx / no connection       -> retried at now + backoff (stays queued)
 *        not delivered give_up_after_ms after the first attempt -> failed
 *   crash while SENDING: the lease runs out (or store_delivery_reset_leases at the
 *        next start) and the delivery is due again for the recipients not confirmed.
 *
 * The guarantee is at least once (docs/OPERATIONS.md): a recipient is sent again
 * only when the process dies between the host's 250 to the data and the commit of
 * store_delivery_confirm (one SQLite commit), or when the connection breaks after
 * the final dot before the reply arrives (RFC 1047). Crash points for the tests
 * (common/fault.h): release_before_connect, release_after_rcpt, release_after_250,
 * release_after_commit.
 *
 * Routes: a spam release and a copy of a PVO message (store_delivery.gateway
 * NULL) go to primary_host, else secondary_host. A PVO release goes back to the
 * gateway that quarantined it, looked up in the registry at each attempt (its
 * address and release_port), else to alternate_release_gateway: the gateway is
 * unknown or no longer registered, or it did not take the recipients (no
 * connection, 4xx). With neither, the recipients stay queued and are retried.
 * Every route sends from [release] source_address (SQ5), so that the gateway
 * knows it as released mail; a released outbreak message says rescan=yes and
 * id=<its id> in its X-Lazaret-Released header, and the gateway scans it again.
 * The gateway's reply to the data says its verdict (docs/GATEWAY.md "Rescans
 * when the rules change"): "rescan=clean|kept|requarantined id=<the id>
 * [rule=<name>]" among its words. It is recorded with the recipients' outcome,
 * in the same transaction (store_delivery_confirm_rescan); kept recipients are
 * held again instead of released. A reply without a verdict for this id (a
 * gateway that does not say one) is an ordinary delivery.
 *
 * A worker with nothing due sleeps until release_kick(), the next due time, or a
 * poll interval, whichever comes first.
 */
#include "quarantine/own_events.h"
#include "quarantine/release.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_failover.h"
#include "store/store.h"

/*
 * Even without a kick a worker looks at the queue this often: work may become
 * due through another process sharing the store, or a changed clock.
 */
#define RELEASE_POLL_MS 1000
/*
 * When the queue says something is due but claiming found nothing, other workers
 * hold it; look again after this long rather than spin.
 */
#define RELEASE_BUSY_WAIT_MS 100
/*
 * One SMTP session may take at most this many step timeouts; a delivery tries two
 * hosts, so its lease is longer than both sessions together plus the store calls.
 * The lease must outlast the attempt, or another worker would send it again.
 */
#define RELEASE_SESSION_STEPS 10
#define RELEASE_LEASE_STEPS   24
/* Retry times are spread by up to this share of the backoff, so retries do not
 * arrive at the primary in lock step after an outage. */
#define RELEASE_JITTER_PERCENT 10
/* Recording an outcome is retried this often (the store may be briefly busy). */
#define RELEASE_FINISH_TRIES	3
#define RELEASE_FINISH_RETRY_MS 200
/* Room for one quoted value in a log line. */
#define RELEASE_LOG_VALUE_MAX 1024

/* One immutable copy of the configuration; swapped whole by reconfigure. */
struct release_settings {
	unsigned refs; /* under release.lock */
	char *manager_name;
	char *primary_host;
	char *secondary_host; /* NULL when none */
	char *alternate;      /* alternate_release_gateway, NULL when none */
	char *source_address; /* NULL when none */
	char *helo_name;
	int64_t timeout_ms;
	int64_t retry_min_ms;
	int64_t retry_max_ms;
	int64_t give_up_after_ms;
};

struct release_worker {
	struct release *r;
	unsigned index;
	uint64_t rng;
	pthread_t thread;
	bool started;
};

struct release {
	struct store *st;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* CLOCK_MONOTONIC */
	struct release_settings *cfg;
	uint64_t kicks; /* bumped by release_kick */
	bool stopping;
	unsigned nworkers;
	struct release_worker *workers;
};

/* A copy of s fit for a header or a log field: control characters become '?'. */
static char *release_clean_copy(const char *s)
{
	if (s == NULL || *s == '\0')
		return NULL;
	char *c = xstrdup(s);
	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return c;
}

static struct release_settings *release_settings_new(const struct release_config *cfg)
{
	struct release_settings *s = xcalloc(1, sizeof(*s));
	s->refs = 1;
	s->manager_name = release_clean_copy(cfg->manager_name);
	if (s->manager_name == NULL)
		s->manager_name = xstrdup("lazaret");
	s->primary_host = xstrdup(cfg->primary_host);
	s->secondary_host = release_clean_copy(cfg->secondary_host);
	s->alternate = release_clean_copy(cfg->alternate_release_gateway);
	s->source_address = release_clean_copy(cfg->source_address);
	s->helo_name = release_clean_copy(cfg->helo_name);
	if (s->helo_name == NULL)
		s->helo_name = xstrdup(s->manager_name);
	s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000;
	s->retry_min_ms = cfg->retry_min_ms > 0 ? cfg->retry_min_ms : 60000;
	s->retry_max_ms =
	    cfg->retry_max_ms >= s->retry_min_ms ? cfg->retry_max_ms : s->retry_min_ms;
	s->give_up_after_ms = cfg->give_up_after_ms;
	return s;
}

static void release_settings_free(struct release_settings *s)
{
	if (s == NULL)
		return;
	free(s->manager_name);
	free(s->primary_host);
	free(s->secondary_host);
	free(s->alternate);
	free(s->source_address);
	free(s->helo_name);
	free(s);
}

/* The caller holds r->lock. */
static struct release_settings *release_settings_ref(struct release *r)
{
	r->cfg->refs++;
	return r->cfg;
}

static void release_settings_unref(struct release *r, struct release_settings *s)
{
	pthread_mutex_lock(&r->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		release_settings_free(s);
}

/* The backoff before attempt number attempts + 1, without jitter. */
static int64_t release_backoff(const struct release_settings *s, unsigned attempts)
{
	int64_t d = s->retry_min_ms;
	for (unsigned i = 0; i < attempts && d < s->retry_max_ms; i++)
		d = d > s->retry_max_ms / 2 ? s->retry_max_ms : d * 2;
	return d < s->retry_max_ms ? d : s->retry_max_ms;
}

/*
 * Whether a recipient deferred on this attempt is given up: when its next attempt
 * would come later than give_up_after_ms after the delivery's first attempt (the
 * store keeps that time, so a restart or a long outage does not extend it).
 */
static bool release_give_up(const struct release_settings *s, const struct store_delivery *d,
			    int64_t now)
{
	if (s->give_up_after_ms <= 0)
		return false;
	return now + release_backoff(s, d->attempts) > d->first_attempt_at + s->give_up_after_ms;
}

static uint64_t release_random(struct release_worker *w)
{
	/* xorshift64: spreading retries needs no more than this. */
	uint64_t x = w->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	w->rng = x;
	return x;
}

static int64_t release_retry_at(struct release_worker *w, const struct release_settings *s,
				unsigned attempts, int64_t now)
{
	int64_t d = release_backoff(s, attempts);
	int64_t spread = d * RELEASE_JITTER_PERCENT / 100;
	if (spread > 0)
		d -= (int64_t)(release_random(w) % (uint64_t)(spread + 1));
	return now + d;
}

/* What we know about one recipient of the delivery in progress. */
struct release_rcpt {
	enum smtp_client_outcome outcome;
	char *reply;
	const char *host; /* the host that answered last */
	bool recorded;	  /* its final outcome is committed (store_delivery_confirm) */
	bool kept;	  /* the gateway's rescan kept it: held again, not delivered */
	bool unsettled;	  /* kept, but not recorded so: sent again, not taken as delivered */
};

/* Room for a verdict's rule name (the gateway's rule names are shorter). */
#define RELEASE_RULE_MAX 128

/*
 * The gateway's rescan verdict in reply, for message id: its state
 * (STORE_RESCAN_NONE when the reply says none for this id) and rule (a
 * printable word, "" when none).
 */
static enum store_rescan_state release_verdict(const char *reply, const char *id, char *rule,
					       size_t rulecap)
{
	enum store_rescan_state v = STORE_RESCAN_NONE;
	bool id_ok = false;
	rule[0] = '\0';
	if (reply == NULL || reply[0] != '2')
		return STORE_RESCAN_NONE;
	for (const char *w = reply; *w != '\0';) {
		while (*w == ' ')
			w++;
		size_t n = strcspn(w, " ");
		if (n > 7 && strncmp(w, "rescan=", 7) == 0) {
			if (n - 7 == 5 && strncmp(w + 7, "clean", 5) == 0)
				v = STORE_RESCAN_CLEAN;
			else if (n - 7 == 4 && strncmp(w + 7, "kept", 4) == 0)
				v = STORE_RESCAN_KEPT;
			else if (n - 7 == 13 && strncmp(w + 7, "requarantined", 13) == 0)
				v = STORE_RESCAN_REQUARANTINED;
		} else if (n > 3 && strncmp(w, "id=", 3) == 0) {
			id_ok = n - 3 == strlen(id) && strncmp(w + 3, id, n - 3) == 0;
		} else if (n > 5 && n - 5 < rulecap && strncmp(w, "rule=", 5) == 0) {
			memcpy(rule, w + 5, n - 5);
			rule[n - 5] = '\0';
		}
		w += n;
	}
	if (!id_ok)
		return STORE_RESCAN_NONE;
	return v;
}

/* One attempt of a delivery, as its SMTP sessions see it. */
struct release_attempt {
	struct release *r;
	const struct store_delivery *d;
	unsigned attempt;
	struct release_rcpt *rr; /* per recipient of d */
};

/*
 * smtp_client progress: the crash points, and the record of final outcomes as soon
 * as the host answered the data, before anything else can go wrong in the session.
 */
static void release_progress(void *arg, enum smtp_client_stage stage,
			     const struct smtp_failover_session *ss,
			     const struct smtp_client_result *res)
{
	struct release_attempt *at = arg;
	if (stage == SMTP_CLIENT_AT_RCPTS_DONE) {
		fault_point("release_after_rcpt");
		return;
	}
	struct store_delivery_result *results = xcalloc(ss->n ? ss->n : 1, sizeof(*results));
	size_t *which = xcalloc(ss->n ? ss->n : 1, sizeof(*which));
	size_t nres = 0;
	bool delivered = false;
	for (size_t k = 0; k < ss->n && k < res->nrcpts; k++) {
		enum smtp_client_outcome o = res->rcpts[k].outcome;
		if (o == SMTP_CLIENT_DEFERRED)
			continue;
		delivered |= o == SMTP_CLIENT_DELIVERED;
		results[nres].rcpt = at->d->rcpts[ss->idx[k]];
		results[nres].outcome =
		    o == SMTP_CLIENT_DELIVERED ? STORE_DELIVERY_DELIVERED : STORE_DELIVERY_FAILED;
		results[nres].reply = res->rcpts[k].reply;
		which[nres++] = ss->idx[k];
	}
	/* a rescan's verdict, in the gateway's reply to the data (the same for all) */
	char rule[RELEASE_RULE_MAX] = "";
	struct store_rescan_verdict v = {.state = STORE_RESCAN_NONE};
	for (size_t j = 0; j < nres && at->d->rescan && v.state == STORE_RESCAN_NONE; j++)
		if (results[j].outcome == STORE_DELIVERY_DELIVERED)
			v.state =
			    release_verdict(results[j].reply, at->d->msg_id, rule, sizeof(rule));
	v.rule = rule[0] != '\0' ? rule : NULL;
	bool kept = v.state == STORE_RESCAN_KEPT;
	for (size_t j = 0; j < nres && kept; j++)
		if (results[j].outcome == STORE_DELIVERY_DELIVERED)
			at->rr[which[j]].kept = true;
	if (nres > 0) {
		if (delivered)
			fault_point("release_after_250");
		int rc =
		    v.state != STORE_RESCAN_NONE
			? store_delivery_confirm_rescan(at->r->st, at->d, results, nres,
							clock_now_ms(), &v)
			: store_delivery_confirm(at->r->st, at->d, results, nres, clock_now_ms());
		if (rc == 0) {
			for (size_t j = 0; j < nres; j++)
				at->rr[which[j]].recorded = true;
			if (v.state != STORE_RESCAN_NONE) {
				char qr[RELEASE_LOG_VALUE_MAX];
				log_info("release.rescan", "msg=%s verdict=%s rule=%s rcpts=%zu",
					 at->d->msg_id, store_rescan_state_name(v.state),
					 log_quote(qr, sizeof(qr), v.rule != NULL ? v.rule : "-"),
					 nres);
			}
			if (delivered)
				fault_point("release_after_commit");
		} else if (kept) {
			/* not taken as delivered at the end of the attempt: sent again */
			for (size_t j = 0; j < nres; j++)
				at->rr[which[j]].unsettled = at->rr[which[j]].kept;
			log_warn("release.store_error",
				 "op=confirm_rescan msg=%s job=%lld error=%s", at->d->msg_id,
				 (long long)at->d->job_id, strerror(-rc));
		} else {
			/* Not lost: release_finish records them at the end of the attempt. */
			log_warn("release.store_error", "op=confirm msg=%s job=%lld error=%s",
				 at->d->msg_id, (long long)at->d->job_id, strerror(-rc));
		}
	}
	free(which);
	free(results);
}

static void release_log_outcome(const char *event, const struct store_delivery *d, const char *rcpt,
				const char *host, unsigned attempt, const char *reply,
				const char *extra)
{
	char qrcpt[RELEASE_LOG_VALUE_MAX], qreply[RELEASE_LOG_VALUE_MAX];
	log_quote(qrcpt, sizeof(qrcpt), rcpt);
	/* The reply is always quoted so that lines look alike to a reader's grep. */
	log_quote(qreply, sizeof(qreply) - 2, reply ? reply : "");
	bool quoted = qreply[0] == '"';
	bool info =
	    strcmp(event, "release.delivered") == 0 || strcmp(event, "release.rescan_kept") == 0;
	log_event(info ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, event,
		  "msg=%s rcpt=%s host=%s attempt=%u reply=%s%s%s%s%s", d->msg_id, qrcpt, host,
		  attempt, quoted ? "" : "\"", qreply, quoted ? "" : "\"", extra ? " " : "",
		  extra ? extra : "");
}

/*
 * The manager's tracking event of one recipient's delivery (own_events.h):
 * "delivery" with the host's reply; a delivered recipient makes the message
 * "released", a failed one "release_failed".
 */
static void release_own_event(const struct store_delivery *d, const char *rcpt, const char *host,
			      unsigned attempt, const struct store_delivery_result *res)
{
	const char *status = res->outcome == STORE_DELIVERY_DELIVERED ? "sent"
			     : res->outcome == STORE_DELIVERY_FAILED  ? "failed"
								      : "deferred";
	json_t *detail =
	    json_pack("{s:s?,s:s?,s:s?,s:i,s:s,s:b}", "rcpt", rcpt, "reply", res->reply, "host",
		      host, "attempt", (json_int_t)attempt, "status", status, "released", 1);
	own_events_add(clock_now_ms(), "delivery", d->msg_id,
		       res->outcome == STORE_DELIVERY_DELIVERED ? "released"
		       : res->outcome == STORE_DELIVERY_FAILED	? "release_failed"
								: NULL,
		       res->outcome == STORE_DELIVERY_DELIVERED ? STORE_TRACK_DELIVERED : 0, detail,
		       NULL);
}

/* Before the secondary: says which recipients the primary deferred, and why. */
static void release_attempted(void *arg, const struct smtp_failover_session *ss,
			      const struct smtp_client_result *res, bool failing_over)
{
	struct release_attempt *at = arg;
	if (!failing_over)
		return;
	for (size_t k = 0; k < ss->n && k < res->nrcpts; k++)
		if (res->rcpts[k].outcome == SMTP_CLIENT_DEFERRED)
			release_log_outcome("release.deferred", at->d, at->d->rcpts[ss->idx[k]],
					    ss->host, at->attempt, res->rcpts[k].reply,
					    "next=secondary");
}

/* Where one delivery goes: first host, and the one behind it (either may be NULL). */
struct release_route {
	const char *primary;
	const char *secondary;
	char *owned;   /* the gateway's "address:port", when primary is it */
	char why[160]; /* no host at all: why, for the log and the store */
};

/*
 * The route of d (see the top of the file). A store error while looking up the
 * gateway leaves the route empty: the attempt is deferred, nothing is lost.
 */
static void release_route_of(struct release *r, const struct release_settings *s,
			     const struct store_delivery *d, struct release_route *rt)
{
	memset(rt, 0, sizeof(*rt));
	if (d->gateway == NULL) {
		rt->primary = s->primary_host;
		rt->secondary = s->secondary_host;
		return;
	}
	struct store_gateway *g = NULL;
	int rc = d->gateway[0] != '\0' ? store_gateway_get(r->st, d->gateway, &g) : -ENOENT;
	if (rc == 0 && g->state == STORE_GATEWAY_REGISTERED) {
		unsigned port =
		    g->release_port ? g->release_port : STORE_GATEWAY_DEFAULT_RELEASE_PORT;
		rt->owned = strchr(g->address, ':') != NULL ? xasprintf("[%s]:%u", g->address, port)
							    : xasprintf("%s:%u", g->address, port);
		rt->primary = rt->owned;
		rt->secondary = s->alternate;
	} else if (rc == 0 || rc == -ENOENT) {
		rt->primary = s->alternate;
		if (rt->primary == NULL && d->gateway[0] == '\0')
			snprintf(rt->why, sizeof(rt->why),
				 "no release route: the gateway that quarantined it is not "
				 "registered and no alternate_release_gateway is set");
		else if (rt->primary == NULL)
			snprintf(rt->why, sizeof(rt->why),
				 "no release route: gateway %s is not registered and no "
				 "alternate_release_gateway is set",
				 d->gateway);
	} else {
		log_error("release.store_error", "op=gateway_get msg=%s error=%s", d->msg_id,
			  strerror(-rc));
		snprintf(rt->why, sizeof(rt->why), "the gateway registry cannot be read: %s",
			 strerror(-rc));
	}
	store_gateway_free(g);
}

/*
 * Sends the message to the route's first host, the recipients it deferred to the
 * one behind it, and notes each recipient's outcome in rr.
 */
static void release_send(struct release *r, const struct release_settings *s,
			 const struct release_route *rt, const struct store_delivery *d,
			 unsigned attempt, const char *header, const unsigned char *raw,
			 size_t raw_len, struct release_rcpt *rr)
{
	size_t n = d->nrcpts;
	struct release_attempt at = {.r = r, .d = d, .attempt = attempt, .rr = rr};
	struct smtp_client_options opt = {
	    .helo_name = s->helo_name,
	    .source_address = s->source_address,
	    .connect_timeout_ms = s->timeout_ms,
	    .timeout_ms = s->timeout_ms,
	    .final_timeout_ms = s->timeout_ms,
	    .session_timeout_ms = s->timeout_ms * RELEASE_SESSION_STEPS,
	};
	struct smtp_client_message msg = {
	    .sender = d->sender ? d->sender : "",
	    .rcpts = (const char *const *)d->rcpts,
	    .nrcpts = n,
	    .header = header,
	    .body = raw,
	    .body_len = raw_len,
	};
	struct smtp_failover_hooks hooks = {
	    .progress = release_progress, .attempted = release_attempted, .arg = &at};
	struct smtp_failover_rcpt *out = xcalloc(n ? n : 1, sizeof(*out));
	fault_point("release_before_connect");
	(void)smtp_failover_send(rt->primary, rt->secondary, &opt, &msg, &hooks, out);
	for (size_t i = 0; i < n; i++) {
		free(rr[i].reply);
		rr[i].outcome = out[i].outcome;
		rr[i].reply = out[i].reply;
		out[i].reply = NULL;
		rr[i].host = out[i].host != NULL ? out[i].host : rt->primary;
	}
	free(out);
}

/* Records the outcome, trying again briefly if the store is busy. */
static int release_finish(struct release *r, const struct store_delivery *d,
			  const struct store_delivery_result *results, size_t n, int64_t now,
			  int64_t retry_at)
{
	int rc = 0;
	for (int i = 0; i < RELEASE_FINISH_TRIES; i++) {
		rc = store_delivery_finish(r->st, d, results, n, now, retry_at);
		if (rc == 0 || rc == -EINVAL || rc == -ENOENT)
			break;
		usleep(RELEASE_FINISH_RETRY_MS * 1000);
	}
	if (rc < 0)
		log_error("release.store_error",
			  "op=finish msg=%s job=%lld error=%s: sent again when the lease ends",
			  d->msg_id, (long long)d->job_id, strerror(-rc));
	return rc;
}

/* One attempt of delivery d: send, then record every recipient's outcome. */
static void release_deliver(struct release_worker *w, const struct release_settings *s,
			    const struct store_delivery *d)
{
	struct release *r = w->r;
	unsigned attempt = d->attempts + 1;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	char *header = NULL;
	size_t n = d->nrcpts;
	struct release_rcpt *rr = xcalloc(n ? n : 1, sizeof(*rr));
	struct store_delivery_result *results = xcalloc(n ? n : 1, sizeof(*results));
	char **give_up = xcalloc(n ? n : 1, sizeof(*give_up));
	int64_t now = clock_now_ms();
	uint64_t ndelivered = 0, nfailed = 0, nretry = 0;
	struct release_route route = {0};

	int rc = store_get_raw(r->st, d->msg_id, &raw, &raw_len);
	if (rc < 0) {
		/* Without the bytes nothing can be sent: gone is final, a store error is not. */
		char *why = xasprintf("message %s: %s",
				      rc == -ENOENT ? "no longer in the store" : "cannot be read",
				      strerror(-rc));
		log_error("release.store_error", "op=get_raw msg=%s error=%s", d->msg_id,
			  strerror(-rc));
		for (size_t i = 0; i < n; i++) {
			rr[i].outcome = rc == -ENOENT ? SMTP_CLIENT_REJECTED : SMTP_CLIENT_DEFERRED;
			rr[i].reply = xstrdup(why);
			rr[i].host = "-";
		}
		free(why);
		goto decide;
	}

	char when[CLOCK_RFC3339_LEN];
	clock_format_rfc3339(now, when);
	header = d->rescan ? xasprintf("X-Lazaret-Released: %s; %s; rescan=yes; id=%s\r\n",
				       s->manager_name, when, d->msg_id)
			   : xasprintf("X-Lazaret-Released: %s; %s\r\n", s->manager_name, when);

	release_route_of(r, s, d, &route);
	if (route.primary == NULL) {
		for (size_t i = 0; i < n; i++) {
			rr[i].outcome = SMTP_CLIENT_DEFERRED;
			rr[i].reply = xstrdup(route.why);
			rr[i].host = "-";
		}
		goto decide;
	}
	release_send(r, s, &route, d, attempt, header, raw, raw_len, rr);

decide:;
	int64_t retry_at = release_retry_at(w, s, d->attempts, now);
	bool giving_up = release_give_up(s, d, now);
	for (size_t i = 0; i < n; i++) {
		results[i].rcpt = d->rcpts[i];
		results[i].reply = rr[i].reply;
		if (rr[i].unsettled)
			rr[i].outcome = SMTP_CLIENT_DEFERRED;
		if (rr[i].kept && rr[i].recorded) {
			/* held again on the manager: neither delivered nor failed */
			results[i].outcome = STORE_DELIVERY_RETRY;
			release_log_outcome("release.rescan_kept", d, d->rcpts[i], rr[i].host,
					    attempt, rr[i].reply, NULL);
			continue;
		}
		switch (rr[i].outcome) {
		case SMTP_CLIENT_DELIVERED:
			results[i].outcome = STORE_DELIVERY_DELIVERED;
			ndelivered++;
			release_log_outcome("release.delivered", d, d->rcpts[i], rr[i].host,
					    attempt, rr[i].reply, NULL);
			break;
		case SMTP_CLIENT_REJECTED:
			results[i].outcome = STORE_DELIVERY_FAILED;
			nfailed++;
			release_log_outcome("release.failed", d, d->rcpts[i], rr[i].host, attempt,
					    rr[i].reply, NULL);
			break;
		case SMTP_CLIENT_DEFERRED:
			if (giving_up) {
				give_up[i] = xasprintf("giving up after %u attempts: %s", attempt,
						       rr[i].reply ? rr[i].reply : "no reply");
				results[i].outcome = STORE_DELIVERY_FAILED;
				results[i].reply = give_up[i];
				nfailed++;
				release_log_outcome("release.failed", d, d->rcpts[i], rr[i].host,
						    attempt, give_up[i], NULL);
			} else {
				char extra[64];
				snprintf(extra, sizeof(extra), "retry_in_ms=%lld",
					 (long long)(retry_at - now));
				results[i].outcome = STORE_DELIVERY_RETRY;
				nretry++;
				release_log_outcome("release.deferred", d, d->rcpts[i], rr[i].host,
						    attempt, rr[i].reply, extra);
			}
			break;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (!(rr[i].kept && rr[i].recorded))
			release_own_event(d, d->rcpts[i], rr[i].host, attempt, &results[i]);
	/* What store_delivery_confirm recorded already is not recorded twice; the job
	 * is gone when every recipient was. */
	size_t nopen = 0;
	for (size_t i = 0; i < n; i++)
		if (!rr[i].recorded)
			results[nopen++] = results[i];
	if (nopen > 0)
		(void)release_finish(r, d, results, nopen, clock_now_ms(), retry_at);
	if (ndelivered)
		metrics_add(METRICS_RELEASED, ndelivered);
	if (nfailed)
		metrics_add(METRICS_RELEASE_FAILED, nfailed);
	if (nretry)
		metrics_add(METRICS_RELEASE_RETRIED, 1);

	for (size_t i = 0; i < n; i++) {
		free(rr[i].reply);
		free(give_up[i]);
	}
	free(give_up);
	free(results);
	free(rr);
	free(header);
	free(raw);
	free(route.owned);
}

/* Sleeps until a kick, stop, or ms have passed. The caller holds r->lock. */
static void release_wait(struct release *r, uint64_t kicks_seen, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (!r->stopping && r->kicks == kicks_seen) {
		if (pthread_cond_timedwait(&r->wake, &r->lock, &ts) == ETIMEDOUT)
			break;
	}
}

static void *release_worker_main(void *arg)
{
	struct release_worker *w = arg;
	struct release *r = w->r;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		if (r->stopping) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		uint64_t kicks_seen = r->kicks;
		struct release_settings *s = release_settings_ref(r);
		pthread_mutex_unlock(&r->lock);

		struct store_delivery *d = NULL;
		int64_t now = clock_now_ms();
		int rc = store_delivery_claim(r->st, now, s->timeout_ms * RELEASE_LEASE_STEPS, &d);
		if (rc == 0) {
			release_deliver(w, s, d);
			store_delivery_free(d);
			release_settings_unref(r, s);
			continue;
		}
		release_settings_unref(r, s);

		int64_t wait_ms = RELEASE_POLL_MS;
		if (rc == -EAGAIN) {
			int64_t due;
			if (store_delivery_next_due(r->st, &due) == 0) {
				int64_t until = due - clock_now_ms();
				wait_ms = until > 0 ? until : RELEASE_BUSY_WAIT_MS;
				if (wait_ms > RELEASE_POLL_MS)
					wait_ms = RELEASE_POLL_MS;
			}
		} else {
			log_error("release.store_error", "op=claim error=%s", strerror(-rc));
		}
		pthread_mutex_lock(&r->lock);
		release_wait(r, kicks_seen, wait_ms);
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

int release_start(struct store *st, const struct release_config *cfg, struct release **out)
{
	struct release *r = NULL;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (st == NULL || cfg == NULL || cfg->primary_host == NULL || *cfg->primary_host == '\0' ||
	    cfg->max_connections == 0)
		return -EINVAL;
	rc = store_delivery_reset_leases(st, clock_now_ms());
	if (rc < 0) {
		log_error("release.store_error", "op=reset_leases error=%s", strerror(-rc));
		return rc;
	}

	r = xcalloc(1, sizeof(*r));
	r->st = st;
	r->cfg = release_settings_new(cfg);
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &ca);
	pthread_condattr_destroy(&ca);
	r->nworkers = cfg->max_connections;
	r->workers = xcalloc(r->nworkers, sizeof(*r->workers));
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct release_worker *w = &r->workers[i];
		w->r = r;
		w->index = i;
		w->rng = (uint64_t)clock_mono_ms() * 6364136223846793005ULL +
			 (uint64_t)i * 1442695040888963407ULL + (uint64_t)(uintptr_t)w;
		if (w->rng == 0)
			w->rng = 1;
		int e = pthread_create(&w->thread, NULL, release_worker_main, w);
		if (e != 0) {
			rc = -e;
			goto fail;
		}
		w->started = true;
	}
	log_info("release.start", "workers=%u primary=%s secondary=%s alternate=%s source=%s",
		 r->nworkers, r->cfg->primary_host,
		 r->cfg->secondary_host ? r->cfg->secondary_host : "-",
		 r->cfg->alternate ? r->cfg->alternate : "-",
		 r->cfg->source_address ? r->cfg->source_address : "-");
	*out = r;
	return 0;
fail:
	log_error("release.start_failed", "error=%s", strerror(-rc));
	release_stop(r);
	return rc;
}

void release_kick(struct release *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->kicks++;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

void release_reconfigure(struct release *r, const struct release_config *cfg)
{
	if (r == NULL || cfg == NULL || cfg->primary_host == NULL || *cfg->primary_host == '\0')
		return;
	struct release_settings *fresh = release_settings_new(cfg);
	pthread_mutex_lock(&r->lock);
	struct release_settings *old = r->cfg;
	r->cfg = fresh;
	bool last = --old->refs == 0;
	/* New hosts may be reachable now: let idle workers look at once. */
	r->kicks++;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->lock);
	if (last)
		release_settings_free(old);
	log_info("release.reconfigure", "primary=%s secondary=%s source=%s", cfg->primary_host,
		 cfg->secondary_host && *cfg->secondary_host ? cfg->secondary_host : "-",
		 cfg->source_address && *cfg->source_address ? cfg->source_address : "-");
}

void release_stop(struct release *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < r->nworkers; i++)
		if (r->workers[i].started)
			pthread_join(r->workers[i].thread, NULL);
	free(r->workers);
	release_settings_free(r->cfg); /* every worker has let go of its reference */
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
