/*
 * api_events — the gateway-facing event intake (docs/openapi.yaml, tag gateways):
 * POST /api/v1/gateway/events with the gateway's own token. A batch is checked
 * whole (api_events_parse, no I/O), committed in one store transaction
 * (store_events_put) and only then acknowledged with {"acked": <highest seq>};
 * a replay stores nothing twice. An extension of the API core: the daemon adds it
 * with api_events_register after api_start.
 *
 * api_events_parse is also how a gateway with [tracking] mode = local checks
 * its own batches before committing them to its store (gateway/gw_events.c), so
 * that both keep the same tracked messages.
 *
 * Not for: storage (store_events.c and the backends), the gateway's spool and
 * pusher (gateway/event_spool.c, gateway/gw_events.c).
 */
#ifndef LAZARET_API_EVENTS_H
#define LAZARET_API_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "store/store.h"

struct api;

/* Events in one batch at most (a gateway sends at most this many). */
#define API_EVENTS_MAX_BATCH 1000
/* Recipients or attachment names in one "received" or "recipients" event at most. */
#define API_EVENTS_MAX_LIST 1000

/* One parsed batch: events point into the body (and into list arrays kept here). */
struct api_events_batch {
	const char *gateway; /* the name the body says, NULL when it says none */
	int64_t backlog;     /* -1: not said */
	struct store_event *events;
	size_t nevents;
	struct store_event_message *messages;  /* nevents entries, used by "received" */
	char **details;			       /* nevents compact JSON texts (owned) */
	const char ***lists;		       /* 2 * nevents arrays (owned) */
	struct store_capacity_sample *samples; /* nevents entries, used by "capacity" */
	struct store_event_recipients *more;   /* nevents entries, used by "recipients" */
};
void api_events_batch_clear(struct api_events_batch *b);
/*
 * Checks a batch body {"gateway"?, "backlog"?, "events": [{"seq", "at", "type",
 * "msg_id"?, "detail"?}, ...]}: 0 with *out (valid while body is; clear it), or
 * -EINVAL with *err a new message naming the first bad field ("events[2]: ..."),
 * or -E2BIG (more than API_EVENTS_MAX_BATCH events). No I/O.
 */
int api_events_parse(const json_t *body, struct api_events_batch *out, char **err);

/* Adds the route to a's server. */
void api_events_register(struct api *a);

/* The per-gateway event counters for /metrics (lazaret_gateway_events_*). */
void api_events_metrics(FILE *f, void *st);

#endif
