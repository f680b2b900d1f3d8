/*
 * api_pvo_actions — the actions on policy, virus and outbreak (PVO) messages
 * (PV9): release, delete, delay, move (one message or every message of a
 * filter) and copy. The core's release/delete routes (api.c) hand PVO messages
 * and PVO filters here; delay, move and copy of one message are registered by
 * lazaretd with api_pvo_actions_register.
 */
#ifndef LAZARET_API_PVO_ACTIONS_H
#define LAZARET_API_PVO_ACTIONS_H

#include <jansson.h>
#include <stdbool.h>

#include "store/store.h"

struct api;
struct http_server_request;

/* POST /api/v1/messages/{id}/delay, .../move, .../copy. */
void api_pvo_actions_register(struct api *a);
/*
 * Answers req: action act on PVO message m (the core's lookup, unscoped) with the
 * request's body (NULL: none). Borrowed: m and body.
 */
void api_pvo_message_action(struct api *a, struct http_server_request *req,
			    const struct store_message *m, const json_t *body,
			    enum store_pvo_action act);
/*
 * Answers req: act on the memberships in f->quarantine of every message matching
 * f (filter fields and ids as the core parsed them; have_ids: f->ids was given,
 * even when none of them was valid). body: for "by" (delay) and "to" (move).
 */
void api_pvo_bulk_action(struct api *a, struct http_server_request *req, const json_t *body,
			 struct store_filter *f, bool have_ids, enum store_pvo_action act);
/* True when name is a PVO quarantine (policy, virus, outbreak, unclassified). */
bool api_pvo_is_quarantine(struct api *a, const char *name);

#endif
