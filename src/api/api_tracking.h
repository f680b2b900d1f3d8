/*
 * api_tracking — message tracking for administrators (docs/openapi.yaml, tag
 * tracking): GET /api/v1/tracking/messages searches the tracked messages
 * (store_tracked_search) and GET /api/v1/tracking/messages/{id} tells one
 * message's story (store_tracked_story). The query string is read by
 * api_tracking_parse (no I/O); the store is read on a reader thread. An
 * extension of the API core: the daemon adds it with api_tracking_register.
 *
 * A tracked message's id is "<gateway>~<msg_id>": the gateway's name
 * ([A-Za-z0-9._-], never '~') and the gateway's own message id (a UUID), so it
 * is URL-safe as it is and says where to look.
 *
 * Not for: storing events (api_events.c), the SQL (store_tracking.c).
 */
#ifndef LAZARET_API_TRACKING_H
#define LAZARET_API_TRACKING_H

#include <stddef.h>

#include "store/store.h"

struct api;

/* Page size when the query gives none. */
#define API_TRACKING_DEFAULT_LIMIT 50

/*
 * The value of query parameter key and how often it came (*count; 0: absent),
 * as http_server_request_query/_count give them.
 */
typedef const char *(*api_tracking_query_fn)(void *arg, const char *key, size_t *count);

/* A parsed search: q's strings and cursor point into the query's values. */
struct api_tracking_params {
	struct store_track_query q;
	size_t limit;
	const char *cursor; /* NULL: the first page */
};

/*
 * Reads a search's query string through get. 0, or -EINVAL with *err a new
 * message for the client's 400 (the first bad parameter).
 */
int api_tracking_parse(api_tracking_query_fn get, void *arg, struct api_tracking_params *out,
		       char **err);

/* Splits id "<gateway>~<msg_id>" into new strings. 0, or -EINVAL. */
int api_tracking_id_parse(const char *id, char **gateway, char **msg_id);

/* Adds the routes to a's server. */
void api_tracking_register(struct api *a);

#endif
