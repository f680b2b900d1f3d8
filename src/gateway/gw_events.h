/*
 * gw_events — the gateway's structured events for message tracking: what
 * happened at each step the gateway takes (connection, recipients, the message,
 * verdicts, quarantine, delivery, bounce, release), written to the durable spool
 * (event_spool.c) and taken from it in batches by one thread: with [tracking]
 * mode = central it pushes them to the manager's POST /api/v1/gateway/events
 * with [manager] api_token; with mode = local it commits them to the gateway's
 * own store (store_events_put under the gateway's name), which the gateway's
 * [http] API searches. Either way an event leaves the spool only once taken
 * (docs/GATEWAY.md "Events").
 *
 * Durability: an SMTP session's "250" for a message is given only after every
 * event of that message is on disk (gw_events_settle, called by the worker that
 * judged it, hands the reply on only then; the worker does not wait for it). Events of the session
 * before the message (connection, recipients) are appended before the message's, so they are on
 * disk too. When the spool is full, events are dropped, counted and logged (events.spool_full, once
 * a minute), and mail keeps flowing.
 *
 * Every function takes a NULL struct gw_events * as "tracking is off" and does
 * nothing, so that call sites need no test.
 */
#ifndef LAZARET_GW_EVENTS_H
#define LAZARET_GW_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct gw_config;
struct gw_events;
struct msgmeta;
struct pipeline_job;
struct store;

/* Events in one push at most, and the body's bytes at most (the manager's [http]
 * max_body must be at least 1M). */
#define GW_EVENTS_BATCH_MAX   1000
#define GW_EVENTS_BATCH_BYTES 1000000
/* A push waits this long for the manager's answer. */
#define GW_EVENTS_PUSH_TIMEOUT_MS 30000
/* Between pushes while the manager is down: doubled from the first up to the last. */
#define GW_EVENTS_BACKOFF_MIN_MS 1000
#define GW_EVENTS_BACKOFF_MAX_MS 60000
/* How often the pusher looks at an empty spool. */
#define GW_EVENTS_IDLE_MS 500
/* A subject, address or name longer than this is cut in an event. */
#define GW_EVENTS_TEXT_MAX 998
/* Recipients or attachment names listed in one "received", "recipients", "delivery" or
 * "quarantine" event at most. */
#define GW_EVENTS_LIST_MAX 1000
/* The largest answer read from the manager. */
#define GW_EVENTS_MAX_ANSWER (64 * 1024)
/* The spool's file under data_dir. */
#define GW_EVENTS_SPOOL_FILE "events.spool"

/*
 * Starts recording per cfg: with [tracking] mode = central or local, opens the
 * spool in data_dir and starts the thread that takes its events (to the manager,
 * or into st for local; st must then be the gateway's open store) (*out set);
 * with off, *out is NULL. A mode other than the one that last took events from
 * the spool is logged (events.mode_switched): the backlog goes to the new mode.
 * 0 or -errno (the spool cannot be opened).
 */
int gw_events_start(const struct gw_config *cfg, struct store *st, struct gw_events **out);
/* New [manager] api_url, api_token, api_ca for the next pushes (SIGHUP). NULL ev: no-op. */
void gw_events_reconfigure(struct gw_events *ev, const struct gw_config *cfg);
/* Pushes nothing more, commits what is queued and stops. NULL: no-op. */
void gw_events_stop(struct gw_events *ev);
/* True when rejected connections are recorded ([tracking] rejected_connections). */
bool gw_events_rejected_connections(const struct gw_events *ev);

/* The session: once per session when its first MAIL comes, or at a HAT reject. */
void gw_events_connection(struct gw_events *ev, const char *session, const char *client,
			  const char *helo, const char *tls_version, const char *tls_cipher,
			  const char *policy, const char *decision);
/*
 * A connection refused at connect ([tracking] rejected_connections): a
 * "connection" event with hat_decision "reject" and reason "hat" (policy names the
 * HAT entry), "connection_limit" or "client_connection_limit" (the listener's
 * limits; no policy, no session). reply (may be NULL) is what the client got.
 */
void gw_events_refused(struct gw_events *ev, const char *session, const char *client,
		       const char *policy, const char *reason, const char *reply);
void gw_events_rate_limit(struct gw_events *ev, const char *session, const char *client,
			  const char *policy, unsigned limit);
void gw_events_rcpt(struct gw_events *ev, const char *session, const char *client, const char *rcpt,
		    bool accepted, const char *reply);

/* The message (meta may be NULL: no header fields); the recipients its list had no
 * room for follow in "recipients" events. */
void gw_events_received(struct gw_events *ev, const struct pipeline_job *job,
			const struct msgmeta *meta);
void gw_events_released(struct gw_events *ev, const char *id);
/* verdict NULL: clean (when scanned); virus NULL: none found. */
void gw_events_verdict(struct gw_events *ev, const char *id, const char *engine, bool scanned,
		       double score, const char *verdict, const char *rules, const char *virus);
void gw_events_filter(struct gw_events *ev, const char *id, const char *filter, const char *action,
		      const char *arg);
/* rcpts[idx[0..n)] went to quarantine; where: "local" (a store commit) or "external".
 * More recipients than one list holds: more events, each listing the next ones. */
void gw_events_quarantine(struct gw_events *ev, const char *id, const char *quarantine,
			  const char *where, const char *reason, const char *const *rcpts,
			  const size_t *idx, size_t n);
/*
 * A copy sent (or not) to route's host for rcpts[idx[0..n)]: status is
 * delivery_status_name's ("ok" is reported as "sent"), or "dropped"; reply the
 * next hop's last reply. A copy the manager's spam quarantine took is reported
 * as a "quarantine" event (where "external"). More recipients than one list holds:
 * more events, each listing the next ones.
 */
void gw_events_delivery(struct gw_events *ev, const char *id, const char *route, const char *host,
			const char *const *rcpts, const size_t *idx, size_t n, const char *status,
			const char *reply);
/*
 * A copy to route's host for rcpts[idx[0..n)] that the next hop took for some
 * and refused (5xx) for the others: refusals[k] is the reply idx[k] got, NULL
 * for one it took (with the end of data's reply accepted). Told as a
 * "delivery" with status "refused" for each run of refused recipients (in
 * order) that got the same reply, listing them, then the others as
 * gw_events_delivery tells a copy sent.
 */
void gw_events_delivery_partly(struct gw_events *ev, const char *id, const char *route,
			       const char *host, const char *const *rcpts, const size_t *idx,
			       size_t n, const char *accepted, char *const *refusals);
void gw_events_bounce(struct gw_events *ev, const char *id, size_t rcpts, const char *reply);

typedef void (*gw_events_settled_fn)(void *arg);
/*
 * Called by the worker with the reply it is about to give for message id: records
 * it (a "reply" event) and calls fn(arg) when the reply may go out: when it is a
 * 2xx, once every event this thread appended is on disk (later, from the spool's
 * writer thread, without this thread waiting), else at once. With ev NULL: at
 * once.
 */
void gw_events_settle(struct gw_events *ev, const char *id, const char *reply,
		      gw_events_settled_fn fn, void *arg);

/*
 * A "capacity" event ([reporting] capacity_interval): the messages received and
 * relayed (copies sent to a next hop) since the previous one, connections
 * opened since then (given) and open now (given), the spool's backlog, the
 * 1-minute load average and the gateway's resident memory.
 */
void gw_events_capacity(struct gw_events *ev, uint64_t opened, unsigned current);
/* The gateway's /metrics lines (lazaret_gw_events_*); arg is the struct gw_events. */
void gw_events_metrics(FILE *f, void *arg);

/*
 * Reads the manager's answer to a push of events up to last_seq: 0 with *acked
 * (<= last_seq) for a 200 {"acked": N}; -EACCES for 401/403; -E2BIG for 413;
 * -EBADMSG for 400 (an event the manager refuses); -EPROTO for anything else
 * (another status, a body that is not the API's).
 * No I/O.
 */
int gw_events_parse_answer(long status, const char *body, size_t len, int64_t last_seq,
			   int64_t *acked);

#endif
