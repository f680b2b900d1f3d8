/*
 * gw_events — the gateway's events: their JSON details, the durable spool
 * (event_spool.c) and the pusher thread (gw_events.h).
 *
 * Pusher, one thread:
 *
 *   state      to          when
 *   idle       pushing     the spool holds committed events (looked at every
 *                          GW_EVENTS_IDLE_MS)
 *   pushing    idle        200 {"acked": N}: events up to N dropped from the spool
 *   pushing    backoff     no answer, 5xx, 401/403 (logged: events.push_failed,
 *                          once a minute while it lasts), 413 (the batch halves)
 *   backoff    pushing     after GW_EVENTS_BACKOFF_MIN_MS, doubled up to _MAX
 *   any        stopped     gw_events_stop
 *
 * Local mode ([tracking] mode = local): the same thread and states, "pushing"
 * being one commit of the batch to the gateway's own store (gw_events_apply,
 * with the manager's parser); a store failure backs off as a push does, an
 * event the parser or the store refuses is narrowed down and dropped as a 400
 * is. The spool's "mode" mark records which mode takes its events, so that a
 * restart in another mode is logged and only the backlog changes hands.
 *
 * Local and central at once ([tracking] mode = local with [reporting] mode =
 * central, docs/GATEWAY.md "Reporting"): each batch is committed to the
 * gateway's store, then pushed; it leaves the spool when the manager
 * acknowledges it. A batch tried again is skipped by the store for the seqs it
 * has, and by the manager likewise, so neither side counts an event twice.
 *
 * Not for: when events happen (pipeline.c and lazaret_gw.c call the functions
 * here at their steps), storing them on the manager (api_events.c).
 */
#include "gateway/gw_events.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "api/api_events.h"
#include "gateway/event_spool.h"
#include "gateway/gw_api.h"
#include "gateway/gw_config.h"
#include "gateway/pipeline.h"
#include "http/http_json.h"
#include "mime/msgmeta.h"
#include "smtp/smtp_proto.h"
#include "store/store.h"

/* Bytes of recipient or attachment names one event lists at most ("received",
 * "recipients", "delivery", "quarantine"), so that its detail stays within the
 * manager's limit (STORE_EVENT_DETAIL_MAX). */
#define GW_EVENTS_LIST_BYTES 24000
/* A detail's JSON text at most; beyond it, its lists are left out (the manager's
 * limit, STORE_EVENT_DETAIL_MAX, is 64 KiB). */
#define GW_EVENTS_DETAIL_MAX 60000
/* How often a lasting condition (spool full, manager down) is logged again. */
#define GW_EVENTS_LOG_EVERY_MS 60000
/* The body's bytes beyond the events' own (gateway name, backlog, brackets). */
#define GW_EVENTS_BODY_SLACK 4096

struct gw_events {
	struct event_spool *sp;
	struct store *local; /* [tracking] mode = local: the store events go to; NULL: central */
	bool push;	     /* events go to the manager (tracking or reporting central) */
	bool rejected_connections;
	char *name, *url, *token, *ca;
	pthread_t pusher;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	atomic_uint_fast64_t pushed, push_failures, last_acked;
	atomic_uint_fast64_t applied, apply_failures; /* local mode's */
	atomic_uint_fast64_t refused; /* single events the manager refused (400), dropped */
	atomic_bool abort_push;	      /* set by gw_events_stop */
	atomic_int_fast64_t full_logged_at;
	atomic_uint_fast64_t dropped_logged;
	/* since the last capacity event: messages received, copies relayed */
	atomic_uint_fast64_t cap_received, cap_relayed;
};

/* The highest seq this thread appended since its last settle. */
static _Thread_local int64_t gw_events_thread_seq;

bool gw_events_rejected_connections(const struct gw_events *ev)
{
	return ev != NULL && ev->rejected_connections;
}

/*
 * An event is written as the spool's JSON line straight into one buffer (no
 * jansson values, no copy: this runs for every step of every message): its
 * head, then its detail's members (gw_events_begin .. gw_events_emit). Keys are
 * literals; a comma goes before a member unless it opens its object or array.
 */
static void gw_events_begin(struct strbuf *d, const char *type, const char *msg_id)
{
	event_spool_line_start(d, clock_now_ms(), type, msg_id);
	strbuf_addc(d, '{');
}

static void gw_events_key(struct strbuf *d, const char *key)
{
	char last = d->p[d->len - 1];
	if (last != '{' && last != '[')
		strbuf_addc(d, ',');
	strbuf_addc(d, '"');
	strbuf_puts(d, key);
	strbuf_add(d, "\":", 2);
}

/* A string member (NULL: null), invalid UTF-8 replaced, cut to GW_EVENTS_TEXT_MAX
 * bytes at a character boundary. */
static void gw_events_text(struct strbuf *d, const char *key, const char *s)
{
	gw_events_key(d, key);
	(void)http_json_put_string(d, s, GW_EVENTS_TEXT_MAX);
}

static void gw_events_int(struct strbuf *d, const char *key, long long v)
{
	gw_events_key(d, key);
	strbuf_add_int(d, v);
}

static void gw_events_bool(struct strbuf *d, const char *key, bool v)
{
	gw_events_key(d, key);
	strbuf_puts(d, v ? "true" : "false");
}

/* Appends the event d holds (gw_events_begin, its detail's members; taken). */
static void gw_events_emit(struct gw_events *ev, struct strbuf *d)
{
	strbuf_addc(d, '}');
	int64_t seq = event_spool_append_line(ev->sp, d);
	if (seq > 0) {
		if (seq > gw_events_thread_seq)
			gw_events_thread_seq = seq;
		return;
	}
	/* full, or the spool file refuses the moves: said loudly, once a minute,
	 * with how many were dropped meanwhile */
	int64_t now = clock_now_ms();
	int64_t last = atomic_load(&ev->full_logged_at);
	if (now - last >= GW_EVENTS_LOG_EVERY_MS &&
	    atomic_compare_exchange_strong(&ev->full_logged_at, &last, now)) {
		struct event_spool_stats s;
		event_spool_stats(ev->sp, &s);
		uint64_t before = atomic_exchange(&ev->dropped_logged, s.dropped);
		if (s.unmovable) {
			/* moves fail: its lines in memory are at their cap */
			log_error("events.spool_unmovable",
				  "dropped=%llu dropped_total=%llu backlog=%llu bytes=%llu "
				  "reason=\"the spool file (events.spool) refuses writes: events "
				  "are dropped until a move into it succeeds\"",
				  (unsigned long long)(s.dropped - before),
				  (unsigned long long)s.dropped, (unsigned long long)s.backlog,
				  (unsigned long long)s.bytes);
			return;
		}
		log_warn("events.spool_full",
			 "dropped=%llu dropped_total=%llu backlog=%llu bytes=%llu "
			 "reason=\"[events] spool_max reached: events are dropped until the "
			 "manager takes the backlog\"",
			 (unsigned long long)(s.dropped - before), (unsigned long long)s.dropped,
			 (unsigned long long)s.backlog, (unsigned long long)s.bytes);
	}
}

void gw_events_connection(struct gw_events *ev, const char *session, const char *client,
			  const char *helo, const char *tls_version, const char *tls_cipher,
			  const char *policy, const char *decision)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "connection", NULL);
	gw_events_text(&d, "session", session);
	gw_events_text(&d, "client_ip", client);
	gw_events_text(&d, "helo", helo);
	gw_events_text(&d, "tls_version", tls_version);
	gw_events_text(&d, "tls_cipher", tls_cipher);
	gw_events_text(&d, "hat_policy", policy);
	gw_events_text(&d, "hat_decision", decision);
	gw_events_emit(ev, &d);
}

void gw_events_refused(struct gw_events *ev, const char *session, const char *client,
		       const char *policy, const char *reason, const char *reply)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "connection", NULL);
	gw_events_text(&d, "session", session);
	gw_events_text(&d, "client_ip", client);
	gw_events_text(&d, "helo", NULL);
	gw_events_text(&d, "tls_version", NULL);
	gw_events_text(&d, "tls_cipher", NULL);
	gw_events_text(&d, "hat_policy", policy);
	gw_events_text(&d, "hat_decision", "reject");
	gw_events_text(&d, "reason", reason);
	gw_events_text(&d, "reply", reply);
	gw_events_emit(ev, &d);
}

void gw_events_rate_limit(struct gw_events *ev, const char *session, const char *client,
			  const char *policy, unsigned limit)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "rate_limit", NULL);
	gw_events_text(&d, "session", session);
	gw_events_text(&d, "client_ip", client);
	gw_events_text(&d, "hat_policy", policy);
	gw_events_int(&d, "limit", limit);
	gw_events_emit(ev, &d);
}

void gw_events_rcpt(struct gw_events *ev, const char *session, const char *client, const char *rcpt,
		    bool accepted, const char *reply)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, accepted ? "rcpt_accepted" : "rcpt_refused", NULL);
	gw_events_text(&d, "session", session);
	gw_events_text(&d, "client_ip", client);
	gw_events_text(&d, "rcpt", rcpt);
	if (reply != NULL)
		gw_events_text(&d, "reply", reply);
	gw_events_emit(ev, &d);
}

/*
 * A list of names v[0..n) into d[key], or, when lists is false (the detail would
 * be over the manager's limit with them), only d[key_total]. With lists, at
 * most GW_EVENTS_LIST_MAX names and GW_EVENTS_LIST_BYTES bytes of them; when
 * cut, d[key_total] (key_total NULL: none) says how many there were. Returns
 * how many names it listed.
 */
static size_t gw_events_list(struct strbuf *d, bool lists, const char *key, const char *key_total,
			     const char *const *v, size_t n)
{
	size_t k = 0;
	if (lists) {
		gw_events_key(d, key);
		strbuf_addc(d, '[');
		size_t bytes = 0;
		for (; k < n && k < GW_EVENTS_LIST_MAX; k++) {
			size_t mark = d->len;
			if (k > 0)
				strbuf_addc(d, ',');
			bytes += http_json_put_string(d, v[k], GW_EVENTS_TEXT_MAX) + 3;
			if (bytes > GW_EVENTS_LIST_BYTES) {
				strbuf_truncate(d, mark);
				break;
			}
		}
		strbuf_addc(d, ']');
	}
	if (k < n && key_total != NULL)
		gw_events_int(d, key_total, (long long)n);
	return k;
}

/*
 * The recipients rcpts[first..n) that the "received" event of message id could
 * not list: "recipients" events, each listing the next ones as a "received"
 * event does (GW_EVENTS_LIST_MAX, GW_EVENTS_LIST_BYTES) with the index of its
 * first, so that the manager tracks every recipient (docs/GATEWAY.md "Events").
 */
static void gw_events_more_recipients(struct gw_events *ev, const char *id,
				      const char *const *rcpts, size_t first, size_t n)
{
	while (first < n) {
		struct strbuf d = STRBUF_INIT;
		gw_events_begin(&d, "recipients", id);
		gw_events_int(&d, "first", (long long)first);
		size_t k = gw_events_list(&d, true, "recipients", NULL, rcpts + first, n - first);
		if (k == 0) {
			/* cannot be: a name cut to GW_EVENTS_TEXT_MAX fits the bytes */
			strbuf_free(&d);
			return;
		}
		gw_events_emit(ev, &d);
		first += k;
	}
}

/*
 * The main header fields of a message, decoded, for the manager's tracking
 * detail (docs/GATEWAY.md "Events"): From, To, Cc, Subject, Date (RFC 3339, null
 * when absent or unreadable) and Message-ID (without <>).
 */
static void gw_events_headers(struct strbuf *d, const struct msgmeta *meta)
{
	gw_events_key(d, "headers");
	strbuf_addc(d, '{');
	gw_events_text(d, "from", meta->from);
	gw_events_text(d, "to", meta->to);
	gw_events_text(d, "cc", meta->cc);
	gw_events_text(d, "subject", meta->subject);
	if (meta->date_ms > 0) {
		char buf[CLOCK_RFC3339_LEN];
		clock_format_rfc3339(meta->date_ms, buf);
		gw_events_text(d, "date", buf);
	} else {
		gw_events_text(d, "date", NULL);
	}
	gw_events_text(d, "message_id", meta->message_id);
	strbuf_addc(d, '}');
}

/* Ends a detail written with lists, its members from offset start: true when it
 * is within the manager's limit; else they are cut for a second writing without
 * them. */
static bool gw_events_fits(struct strbuf *d, size_t start, bool lists)
{
	if (!lists) {
		gw_events_bool(d, "truncated", true);
		return true;
	}
	if (d->len - start < GW_EVENTS_DETAIL_MAX)
		return true;
	strbuf_truncate(d, start);
	return false;
}

void gw_events_received(struct gw_events *ev, const struct pipeline_job *job,
			const struct msgmeta *meta)
{
	if (ev == NULL)
		return;
	const struct smtp_envelope *env = &job->msg->env;
	size_t na = meta != NULL ? meta->nattachments : 0;
	const char **names = xcalloc(na + 1, sizeof(*names));
	size_t k = 0;
	for (size_t i = 0; i < na; i++) {
		if (meta->attachments[i].filename != NULL)
			names[k++] = meta->attachments[i].filename;
	}
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "received", job->id);
	size_t start = d.len;
	size_t listed = 0;
	for (bool lists = true;; lists = false) {
		gw_events_text(&d, "session", job->session_id);
		gw_events_text(&d, "client_ip", job->client_ip);
		gw_events_text(&d, "helo", env->helo);
		gw_events_bool(&d, "tls", env->tls);
		gw_events_text(&d, "sender", env->sender != NULL ? env->sender : "");
		listed = gw_events_list(&d, lists, "recipients", "recipients_total",
					(const char *const *)env->rcpts, env->nrcpts);
		gw_events_int(&d, "size", (long long)job->msg->len);
		gw_events_text(&d, "subject", meta != NULL ? meta->subject : NULL);
		gw_events_text(&d, "message_id", meta != NULL ? meta->message_id : NULL);
		gw_events_text(&d, "from", meta != NULL ? meta->from_addr : NULL);
		gw_events_list(&d, lists, "attachments", "attachments_total", names, k);
		if (meta != NULL)
			gw_events_headers(&d, meta);
		if (gw_events_fits(&d, start, lists))
			break;
	}
	free(names);
	gw_events_emit(ev, &d);
	gw_events_more_recipients(ev, job->id, (const char *const *)env->rcpts, listed,
				  env->nrcpts);
	atomic_fetch_add(&ev->cap_received, 1);
}

void gw_events_released(struct gw_events *ev, const char *id)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "released", id);
	gw_events_text(&d, "scan", "bypassed");
	gw_events_emit(ev, &d);
}

void gw_events_verdict(struct gw_events *ev, const char *id, const char *engine, bool scanned,
		       double score, const char *verdict, const char *rules, const char *virus)
{
	if (ev == NULL)
		return;
	if (scanned) {
		struct strbuf d = STRBUF_INIT;
		gw_events_begin(&d, "verdict", id);
		gw_events_text(&d, "engine", engine);
		gw_events_key(&d, "score");
		http_json_put_real(&d, score);
		gw_events_text(&d, "level", verdict != NULL ? verdict : "clean");
		gw_events_text(&d, "rules", rules);
		gw_events_emit(ev, &d);
	}
	if (virus != NULL) {
		struct strbuf d = STRBUF_INIT;
		gw_events_begin(&d, "virus", id);
		gw_events_text(&d, "name", virus);
		gw_events_emit(ev, &d);
	}
}

void gw_events_filter(struct gw_events *ev, const char *id, const char *filter, const char *action,
		      const char *arg)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "filter", id);
	gw_events_text(&d, "filter", filter);
	gw_events_text(&d, "action", action);
	gw_events_text(&d, "arg", arg);
	gw_events_emit(ev, &d);
}

/* A text member of a "delivery" or "quarantine" event. */
struct gw_events_member {
	const char *key, *value;
};

static void gw_events_members(struct strbuf *d, const struct gw_events_member *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gw_events_text(d, m[i].key, m[i].value);
}

/*
 * One copy's recipients rcpts[idx[0..n)] in events of type for message id,
 * each with the members before[0..nbefore) and after[0..nafter) around its
 * "rcpts": one event when they fit in one list (GW_EVENTS_LIST_MAX names,
 * GW_EVENTS_LIST_BYTES bytes of them), else as many as it takes, every one
 * saying "rcpts_total" (n) and the later ones "first" (the index, from 0, of
 * their first name among the copy's), so that each recipient has its delivery
 * or quarantine in its story (docs/GATEWAY.md "Events"). A list whose escaping
 * would put the detail over GW_EVENTS_DETAIL_MAX is halved until it fits.
 */
static void gw_events_rcpts(struct gw_events *ev, const char *type, const char *id,
			    const struct gw_events_member *before, size_t nbefore,
			    const struct gw_events_member *after, size_t nafter,
			    const char *const *rcpts, const size_t *idx, size_t n)
{
	const char **v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = rcpts[idx[i]];
	size_t first = 0, most = GW_EVENTS_LIST_MAX;
	do {
		struct strbuf d = STRBUF_INIT;
		gw_events_begin(&d, type, id);
		size_t start = d.len;
		gw_events_members(&d, before, nbefore);
		if (first > 0)
			gw_events_int(&d, "first", (long long)first);
		size_t k = gw_events_list(&d, true, "rcpts", NULL, v + first,
					  n - first < most ? n - first : most);
		if (first > 0 || first + k < n)
			gw_events_int(&d, "rcpts_total", (long long)n);
		gw_events_members(&d, after, nafter);
		if (d.len - start >= GW_EVENTS_DETAIL_MAX && k > 1) {
			/* names full of escapes: fewer of them */
			strbuf_free(&d);
			most = k / 2;
			continue;
		}
		/* k is 0 only when n is: a name cut to GW_EVENTS_TEXT_MAX fits the bytes */
		gw_events_emit(ev, &d);
		if (k == 0)
			break;
		first += k;
	} while (first < n);
	free(v);
}

void gw_events_quarantine(struct gw_events *ev, const char *id, const char *quarantine,
			  const char *where, const char *reason, const char *const *rcpts,
			  const size_t *idx, size_t n)
{
	if (ev == NULL)
		return;
	const struct gw_events_member before[] = {
	    {"quarantine", quarantine}, {"where", where}, {"reason", reason}};
	gw_events_rcpts(ev, "quarantine", id, before, 3, NULL, 0, rcpts, idx, n);
}

void gw_events_delivery(struct gw_events *ev, const char *id, const char *route, const char *host,
			const char *const *rcpts, const size_t *idx, size_t n, const char *status,
			const char *reply)
{
	if (ev == NULL)
		return;
	bool ok = strcmp(status, "ok") == 0;
	if (ok && strcmp(route, "external_spam") == 0) {
		const struct gw_events_member before[] = {{"quarantine", "spam"},
							  {"where", "external"},
							  {"host", host},
							  {"reply", reply}};
		gw_events_rcpts(ev, "quarantine", id, before, 4, NULL, 0, rcpts, idx, n);
		return;
	}
	const struct gw_events_member before[] = {{"route", route}, {"host", host}};
	const struct gw_events_member after[] = {{"status", ok ? "sent" : status},
						 {"reply", reply}};
	gw_events_rcpts(ev, "delivery", id, before, 2, after, 2, rcpts, idx, n);
	/* one copy, however many events list its recipients */
	if (ok || strcmp(status, "partly_refused") == 0)
		atomic_fetch_add(&ev->cap_relayed, 1);
}

void gw_events_delivery_partly(struct gw_events *ev, const char *id, const char *route,
			       const char *host, const char *const *rcpts, const size_t *idx,
			       size_t n, const char *accepted, char *const *refusals)
{
	if (ev == NULL)
		return;
	const struct gw_events_member before[] = {{"route", route}, {"host", host}};
	size_t *sub = xcalloc(n + 1, sizeof(*sub));
	/* the refused, in order, one event for each run of them that got the same
	 * reply (linear: a reply often names its recipient, so most differ) */
	size_t m = 0;
	const char *said = NULL;
	for (size_t k = 0; k <= n; k++) {
		if (k < n && refusals[k] == NULL)
			continue;
		if (m > 0 && (k == n || strcmp(refusals[k], said) != 0)) {
			const struct gw_events_member after[] = {{"status", "refused"},
								 {"reply", said}};
			gw_events_rcpts(ev, "delivery", id, before, 2, after, 2, rcpts, sub, m);
			m = 0;
		}
		if (k < n) {
			said = refusals[k];
			sub[m++] = idx[k];
		}
	}
	/* then the others, as a copy sent to them (a quarantine event when the
	 * manager's spam quarantine took them; the copy counted once): last, so
	 * that the message ends delivered, with the hard bounce flag the
	 * refusals gave it */
	m = 0;
	for (size_t k = 0; k < n; k++)
		if (refusals[k] == NULL)
			sub[m++] = idx[k];
	if (m > 0)
		gw_events_delivery(ev, id, route, host, rcpts, sub, m, "ok", accepted);
	free(sub);
}

/* The process's resident memory in bytes (/proc/self/statm), 0 when unknown. */
static int64_t gw_events_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	long long size = 0, rss = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lld %lld", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	return rss > 0 && page > 0 ? (int64_t)rss * page : 0;
}

void gw_events_capacity(struct gw_events *ev, uint64_t opened, unsigned current)
{
	if (ev == NULL)
		return;
	double load[1] = {0};
	if (getloadavg(load, 1) != 1 || load[0] < 0)
		load[0] = 0;
	struct event_spool_stats st;
	event_spool_stats(ev->sp, &st);
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "capacity", NULL);
	gw_events_int(&d, "received", (long long)atomic_exchange(&ev->cap_received, 0));
	gw_events_int(&d, "relayed", (long long)atomic_exchange(&ev->cap_relayed, 0));
	gw_events_int(&d, "connections", (long long)opened);
	gw_events_int(&d, "current", (long long)current);
	gw_events_int(&d, "backlog", (long long)st.backlog);
	gw_events_key(&d, "load");
	http_json_put_real(&d, load[0]);
	gw_events_int(&d, "memory", (long long)gw_events_rss());
	gw_events_emit(ev, &d);
}

void gw_events_bounce(struct gw_events *ev, const char *id, size_t rcpts, const char *reply)
{
	if (ev == NULL)
		return;
	struct strbuf d = STRBUF_INIT;
	gw_events_begin(&d, "bounce", id);
	gw_events_int(&d, "rcpts", (long long)rcpts);
	gw_events_text(&d, "reply", reply);
	gw_events_emit(ev, &d);
}

void gw_events_settle(struct gw_events *ev, const char *id, const char *reply,
		      gw_events_settled_fn fn, void *arg)
{
	if (ev != NULL && reply != NULL) {
		/* what the client was told: a 451 or 554 has no other trace */
		struct strbuf d = STRBUF_INIT;
		gw_events_begin(&d, "reply", id);
		gw_events_text(&d, "reply", reply);
		gw_events_emit(ev, &d);
	}
	int64_t seq = gw_events_thread_seq;
	gw_events_thread_seq = 0;
	if (ev == NULL || seq == 0 || reply == NULL || reply[0] != '2') {
		fn(arg);
		return;
	}
	/* no thread waits: the spool's writer calls fn with the group's commit */
	event_spool_when_durable(ev->sp, seq, fn, arg);
}

/* ---- the pusher ---- */

int gw_events_parse_answer(long status, const char *body, size_t len, int64_t last_seq,
			   int64_t *acked)
{
	*acked = 0;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 413)
		return -E2BIG;
	if (status == 400)
		return -EBADMSG;
	if (status != 200 || body == NULL || len == 0)
		return -EPROTO;
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr);
	const json_t *a = json_object_get(doc, "acked");
	int rc = -EPROTO;
	if (json_is_integer(a) && json_integer_value(a) >= 0 && json_integer_value(a) <= last_seq) {
		*acked = json_integer_value(a);
		rc = 0;
	}
	json_decref(doc);
	return rc;
}

/*
 * The type of the first event of a push body, for the log of an event the
 * manager refused (buf; "?" when it cannot be read).
 */
static const char *gw_events_first_type(const char *body, char *buf, size_t size)
{
	json_error_t jerr;
	json_t *doc = json_loads(body, 0, &jerr);
	const char *t = json_string_value(
	    json_object_get(json_array_get(json_object_get(doc, "events"), 0), "type"));
	snprintf(buf, size, "%s", t != NULL ? t : "?");
	json_decref(doc);
	return buf;
}

/*
 * One POST. 0 with *acked, or -errno (*why a static text for the log). used gets
 * the manager's URL this push went to (for the log).
 */
static int gw_events_post(struct gw_events *ev, const char *body, int64_t last_seq, int64_t *acked,
			  long *status, const char **why, char *used, size_t usedlen)
{
	/* a reload may change them meanwhile: this push uses one consistent copy */
	pthread_mutex_lock(&ev->lock);
	char *base = xstrdup(ev->url);
	char *token = xstrdup(ev->token);
	char *ca = xstrdup_or_null(ev->ca);
	pthread_mutex_unlock(&ev->lock);
	snprintf(used, usedlen, "%s", base);
	struct gw_api_call call = {.api_url = base,
				   .path = "/api/v1/gateway/events",
				   .token = token,
				   .ca = ca,
				   .body = body,
				   .timeout_ms = GW_EVENTS_PUSH_TIMEOUT_MS,
				   .max_answer = GW_EVENTS_MAX_ANSWER,
				   .abort = &ev->abort_push};
	struct gw_api_answer a;
	int rc = gw_api_post(&call, &a);
	*status = a.status;
	if (rc < 0) {
		rc = rc == -ENOMEM ? rc : -EIO;
		*why = a.error != NULL ? a.error : "no answer";
	} else {
		rc = gw_events_parse_answer(a.status, strbuf_str(&a.body), a.body.len, last_seq,
					    acked);
		*why = rc == -EACCES	? "the manager refused the token"
		       : rc == -E2BIG	? "batch too large for the manager"
		       : rc == -EBADMSG ? "the manager refused an event as malformed"
		       : rc < 0		? "unexpected answer"
					: "ok";
	}
	strbuf_free(&a.body);
	free(base);
	free(token);
	free(ca);
	return rc;
}

/*
 * Local mode: commits the batch body (the pusher's, up to last_seq) to the
 * gateway's own tracking store, read by the manager's own parser so that what
 * is stored and what a search finds are the same as on the manager. 0 with
 * *acked = last_seq; -EBADMSG (an event the parser refuses: nothing stored);
 * -EIO (the store failed: nothing stored, tried again).
 */
static int gw_events_apply(struct gw_events *ev, const char *body, int64_t last_seq, int64_t *acked,
			   const char **why)
{
	*acked = 0;
	json_error_t jerr;
	json_t *doc = json_loads(body, 0, &jerr);
	struct api_events_batch b;
	char *err = NULL;
	int rc = doc != NULL ? api_events_parse(doc, &b, &err) : -EINVAL;
	if (rc < 0) {
		free(err);
		json_decref(doc);
		*why = "an event is malformed";
		return -EBADMSG;
	}
	uint64_t stored = 0;
	rc = store_events_put(ev->local, ev->name, b.events, b.nevents, b.backlog, clock_now_ms(),
			      &stored);
	api_events_batch_clear(&b);
	json_decref(doc);
	if (rc == -EINVAL) {
		*why = "the store refused an event as malformed";
		return -EBADMSG;
	}
	if (rc < 0) {
		*why = "the tracking store failed";
		return -EIO;
	}
	*acked = last_seq;
	*why = "ok";
	return 0;
}

/* Sleeps ms or until stopped; true when stopping. */
static bool gw_events_sleep(struct gw_events *ev, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ev->lock);
	while (!ev->stopping) {
		if (pthread_cond_timedwait(&ev->wake, &ev->lock, &ts) == ETIMEDOUT)
			break;
	}
	bool stopping = ev->stopping;
	pthread_mutex_unlock(&ev->lock);
	return stopping;
}

static void *gw_events_pusher(void *arg)
{
	struct gw_events *ev = arg;
	int64_t backoff = 0, failing_since = 0, failure_logged = 0;
	/* 413: the manager takes smaller batches (kept); 400: halved until the one
	 * event it refuses is alone (reset by a success) */
	size_t size_cap = GW_EVENTS_BATCH_MAX, bisect_cap = GW_EVENTS_BATCH_MAX;
	for (;;) {
		size_t cap = size_cap < bisect_cap ? size_cap : bisect_cap;
		pthread_mutex_lock(&ev->lock);
		bool stopping = ev->stopping;
		pthread_mutex_unlock(&ev->lock);
		if (stopping)
			break;
		/* the body: the spool's text of the events as it is, between the
		 * gateway's name and the backlog beyond them */
		struct strbuf b = STRBUF_INIT;
		strbuf_puts(&b, "{\"gateway\":");
		(void)http_json_put_string(&b, ev->name, SIZE_MAX);
		strbuf_puts(&b, ",\"events\":[\n");
		size_t n = 0;
		int64_t last = 0;
		if (event_spool_peek(ev->sp, cap, GW_EVENTS_BATCH_BYTES - GW_EVENTS_BODY_SLACK, &b,
				     &n, &last) < 0 ||
		    n == 0) {
			strbuf_free(&b);
			if (gw_events_sleep(ev, GW_EVENTS_IDLE_MS))
				break;
			continue;
		}
		struct event_spool_stats st;
		event_spool_stats(ev->sp, &st);
		strbuf_printf(&b, "],\"backlog\":%llu}",
			      (unsigned long long)(st.backlog > n ? st.backlog - n : 0));
		char *body = strbuf_take(&b);
		int64_t acked = 0;
		long status = 0;
		const char *why = NULL;
		char used[512];
		int rc;
		if (ev->local != NULL) {
			snprintf(used, sizeof(used), "local");
			rc = gw_events_apply(ev, body, last, &acked, &why);
			if (rc == 0 && ev->push)
				rc = gw_events_post(ev, body, last, &acked, &status, &why, used,
						    sizeof(used));
		} else {
			rc = gw_events_post(ev, body, last, &acked, &status, &why, used,
					    sizeof(used));
		}
		/* the side that answered last: the local store, or the manager */
		bool was_local = strcmp(used, "local") == 0;
		int64_t now = clock_now_ms();
		/* an event refused alone is dropped below, and logged with its type */
		char type[STORE_EVENT_TYPE_MAX + 1] = "";
		if (rc == -EBADMSG && n == 1)
			gw_events_first_type(body, type, sizeof(type));
		free(body);
		if (rc == 0) {
			/* a crash before the ack replays the batch: the store skips the
			 * seqs it has (store_events_put), so nothing is stored twice */
			if (acked > 0 && event_spool_ack(ev->sp, acked) == 0)
				atomic_store(&ev->last_acked, (uint64_t)acked);
			if (ev->local != NULL)
				atomic_fetch_add(&ev->applied, n);
			if (ev->push)
				atomic_fetch_add(&ev->pushed, n);
			if (failing_since != 0)
				log_info(was_local ? "events.apply_resumed" : "events.push_resumed",
					 "url=%s after_ms=%lld acked=%lld", used,
					 (long long)(now - failing_since), (long long)acked);
			failing_since = 0;
			failure_logged = 0;
			backoff = 0;
			bisect_cap = GW_EVENTS_BATCH_MAX;
			/* more were waiting behind this batch: push on at once */
			if (st.backlog <= n && gw_events_sleep(ev, GW_EVENTS_IDLE_MS))
				break;
			continue;
		}
		atomic_fetch_add(was_local ? &ev->apply_failures : &ev->push_failures, 1);
		if (rc == -E2BIG && size_cap > 1)
			size_cap = n / 2 > 0 ? n / 2 : 1; /* the manager's max_body is below ours */
		if (rc == -EBADMSG && n > 1) {
			/* one event the manager will never take must not stop the others */
			bisect_cap = n / 2;
			continue;
		}
		if (rc == -EBADMSG) {
			/* found: dropped, counted and said, so that the rest flows */
			if (event_spool_ack(ev->sp, last) == 0) {
				atomic_fetch_add(&ev->refused, 1);
				log_error("events.refused",
					  "seq=%lld type=%s url=%s reason=\"%s: dropped\"",
					  (long long)last, type, used,
					  was_local
					      ? "the tracking store refused the event as malformed"
					      : "the manager refused the event as malformed (400)");
			}
			bisect_cap = GW_EVENTS_BATCH_MAX;
			continue;
		}
		if (failing_since == 0)
			failing_since = now;
		if (now - failure_logged >= GW_EVENTS_LOG_EVERY_MS) {
			failure_logged = now;
			char q[256];
			if (was_local)
				log_error("events.apply_failed", "url=local error=%s backlog=%llu",
					  log_quote(q, sizeof(q), why),
					  (unsigned long long)st.backlog);
			else if (rc == -EACCES)
				log_error("events.push_failed",
					  "url=%s status=%ld error=%s backlog=%llu", used, status,
					  log_quote(q, sizeof(q), why),
					  (unsigned long long)st.backlog);
			else
				log_warn("events.push_failed",
					 "url=%s status=%ld error=%s backlog=%llu", used, status,
					 log_quote(q, sizeof(q), why),
					 (unsigned long long)st.backlog);
		}
		backoff = backoff == 0 ? GW_EVENTS_BACKOFF_MIN_MS : backoff * 2;
		if (backoff > GW_EVENTS_BACKOFF_MAX_MS)
			backoff = GW_EVENTS_BACKOFF_MAX_MS;
		if (gw_events_sleep(ev, backoff))
			break;
	}
	return NULL;
}

void gw_events_metrics(FILE *f, void *arg)
{
	struct gw_events *ev = arg;
	struct event_spool_stats s;
	event_spool_stats(ev->sp, &s);
	int64_t age = s.oldest_at > 0 ? clock_now_ms() - s.oldest_at : 0;
	fprintf(f,
		"# HELP lazaret_gw_events_backlog Events not yet acknowledged by the manager "
		"(central) or stored in the gateway's own tracking store (local).\n"
		"# TYPE lazaret_gw_events_backlog gauge\nlazaret_gw_events_backlog %llu\n"
		"# HELP lazaret_gw_events_spool_bytes Bytes of those events, as counted "
		"against [events] spool_max.\n"
		"# TYPE lazaret_gw_events_spool_bytes gauge\nlazaret_gw_events_spool_bytes %llu\n"
		"# HELP lazaret_gw_events_oldest_unacked_seconds Age of the oldest event "
		"not acknowledged.\n"
		"# TYPE lazaret_gw_events_oldest_unacked_seconds gauge\n"
		"lazaret_gw_events_oldest_unacked_seconds %.3f\n"
		"# HELP lazaret_gw_events_dropped_total Events dropped (spool full, a "
		"failed write, or refused by the manager as malformed).\n"
		"# TYPE lazaret_gw_events_dropped_total counter\nlazaret_gw_events_dropped_total "
		"%llu\n"
		"# HELP lazaret_gw_events_pushed_total Events sent in acknowledged pushes.\n"
		"# TYPE lazaret_gw_events_pushed_total counter\nlazaret_gw_events_pushed_total "
		"%llu\n"
		"# HELP lazaret_gw_events_push_failures_total Pushes the manager did not "
		"acknowledge.\n"
		"# TYPE lazaret_gw_events_push_failures_total counter\n"
		"lazaret_gw_events_push_failures_total %llu\n"
		"# HELP lazaret_gw_events_applied_total Events moved to the gateway's own "
		"tracking store ([tracking] mode = local).\n"
		"# TYPE lazaret_gw_events_applied_total counter\nlazaret_gw_events_applied_total "
		"%llu\n"
		"# HELP lazaret_gw_events_apply_failures_total Batches the gateway's own "
		"tracking store did not take.\n"
		"# TYPE lazaret_gw_events_apply_failures_total counter\n"
		"lazaret_gw_events_apply_failures_total %llu\n",
		(unsigned long long)s.backlog, (unsigned long long)s.bytes, (double)age / 1000.0,
		(unsigned long long)(s.dropped + atomic_load(&ev->refused)),
		(unsigned long long)atomic_load(&ev->pushed),
		(unsigned long long)atomic_load(&ev->push_failures),
		(unsigned long long)atomic_load(&ev->applied),
		(unsigned long long)atomic_load(&ev->apply_failures));
}

/* The spool's "mode" mark: which mode last took events out of it. */
enum { GW_EVENTS_MARK_CENTRAL = 1, GW_EVENTS_MARK_LOCAL = 2, GW_EVENTS_MARK_BOTH = 3 };

static const char *gw_events_mark_name(int64_t mark)
{
	return mark == GW_EVENTS_MARK_CENTRAL ? "central"
	       : mark == GW_EVENTS_MARK_LOCAL ? "local"
	       : mark == GW_EVENTS_MARK_BOTH  ? "local+central"
					      : "unknown";
}

int gw_events_start(const struct gw_config *cfg, struct store *st, struct gw_events **out)
{
	*out = NULL;
	bool local = strcmp(cfg->tracking_mode, "local") == 0;
	/* central reporting needs the events on the manager, whatever tracking is */
	bool push = strcmp(cfg->tracking_mode, "central") == 0 || gw_config_reporting_central(cfg);
	if (!local && !push)
		return 0;
	if (local && st == NULL)
		return -EINVAL;
	char *path = xasprintf("%s/%s", cfg->data_dir, GW_EVENTS_SPOOL_FILE);
	struct event_spool *sp = NULL;
	int rc = event_spool_open(path, cfg->events_spool_max,
				  cfg->events_sync != NULL && strcmp(cfg->events_sync, "each") == 0,
				  &sp);
	if (rc < 0) {
		free(path);
		return rc;
	}
	struct event_spool_stats s;
	event_spool_stats(sp, &s);
	/*
	 * The mark says which mode the spool's backlog is for. Events leave the spool
	 * only once taken (acknowledged by the manager, or committed to the local
	 * store), so what it holds now was taken by neither: the new mode takes it,
	 * and no event is ever in both places. A spool without a mark was written
	 * before the local mode existed, by central.
	 */
	int64_t mark = local && push ? GW_EVENTS_MARK_BOTH
		       : local	     ? GW_EVENTS_MARK_LOCAL
				     : GW_EVENTS_MARK_CENTRAL,
		was = 0;
	rc = event_spool_mark_swap(sp, "mode", mark, &was);
	if (rc < 0) {
		event_spool_close(sp);
		free(path);
		return rc;
	}
	if (was == 0 && !s.created)
		was = GW_EVENTS_MARK_CENTRAL;
	if (was != 0 && was != mark)
		log_warn("events.mode_switched",
			 "from=%s to=%s backlog=%llu reason=\"[tracking] or [reporting] mode "
			 "changed: events already %s stay there; the %llu in the spool go to "
			 "%s\"",
			 gw_events_mark_name(was), gw_events_mark_name(mark),
			 (unsigned long long)s.backlog,
			 was == GW_EVENTS_MARK_LOCAL  ? "in the gateway's own tracking store"
			 : was == GW_EVENTS_MARK_BOTH ? "taken"
						      : "on the manager",
			 (unsigned long long)s.backlog,
			 local && push ? "the gateway's own tracking store and the manager"
			 : local       ? "the gateway's own tracking store"
				       : "the manager");
	if (push)
		gw_api_init(); /* before the pusher thread */
	struct gw_events *ev = xcalloc(1, sizeof(*ev));
	ev->sp = sp;
	ev->local = local ? st : NULL;
	ev->push = push;
	ev->rejected_connections = cfg->tracking_rejected_connections;
	ev->name = xstrdup(cfg->name);
	ev->url = xstrdup(push ? cfg->api_url : "local");
	ev->token = xstrdup(push ? cfg->api_token : "");
	ev->ca = push ? xstrdup_or_null(cfg->api_ca) : NULL;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->wake, NULL);
	log_info("events.start",
		 "mode=%s reporting=%s sync=%s spool=%s backlog=%llu bytes=%llu spool_max=%llu "
		 "next_seq=%lld url=%s",
		 cfg->tracking_mode, push ? "central" : "local",
		 cfg->events_sync != NULL ? cfg->events_sync : "group", path,
		 (unsigned long long)s.backlog, (unsigned long long)s.bytes,
		 (unsigned long long)cfg->events_spool_max, (long long)s.next_seq, ev->url);
	free(path);
	if (pthread_create(&ev->pusher, NULL, gw_events_pusher, ev) != 0)
		panic("gw_events: cannot start the pusher");
	*out = ev;
	return 0;
}

void gw_events_reconfigure(struct gw_events *ev, const struct gw_config *cfg)
{
	if (ev == NULL || !ev->push || cfg->api_url == NULL || cfg->api_token == NULL)
		return; /* the config check keeps both set with central */
	pthread_mutex_lock(&ev->lock);
	free(ev->url);
	free(ev->token);
	free(ev->ca);
	ev->url = xstrdup(cfg->api_url);
	ev->token = xstrdup(cfg->api_token);
	ev->ca = xstrdup_or_null(cfg->api_ca);
	pthread_mutex_unlock(&ev->lock);
}

void gw_events_stop(struct gw_events *ev)
{
	if (ev == NULL)
		return;
	pthread_mutex_lock(&ev->lock);
	ev->stopping = true;
	pthread_cond_broadcast(&ev->wake);
	pthread_mutex_unlock(&ev->lock);
	/* unacknowledged events stay in the spool for the next start */
	atomic_store(&ev->abort_push, true);
	pthread_join(ev->pusher, NULL);
	event_spool_close(ev->sp);
	pthread_mutex_destroy(&ev->lock);
	pthread_cond_destroy(&ev->wake);
	free(ev->name);
	free(ev->url);
	free(ev->token);
	free(ev->ca);
	free(ev);
}
