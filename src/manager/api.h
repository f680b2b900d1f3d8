/*
 * api — the manager's HTTP interface: /healthz, /metrics and the REST API under
 * /api/v1 (CONTRACT.md "REST API", docs/openapi.yaml). Runs on the event loop
 * thread; reads go straight to the store, changes through its synchronous calls.
 */
#ifndef LAZARET_API_H
#define LAZARET_API_H

#include <stdint.h>

struct event_base;
struct store;
struct release;

struct api_config {
	const char *listen;	 /* "host:port" */
	const char *admin_token; /* Bearer token with admin rights */
	const char *manager_name;
	uint64_t max_body;	 /* request body limit in bytes */
	int64_t delete_after_ms; /* for expires_at: received_at + this; 0 = never */
};

struct api;

/*
 * Binds cfg->listen and serves on base. st and rel (may be NULL) are borrowed and
 * must outlive the api. Strings in cfg are copied. 0 or a negative errno.
 */
int api_start(struct event_base *base, const struct api_config *cfg, struct store *st,
	      struct release *rel, struct api **out);
/* New token, name, body limit, expiry (SIGHUP). The listener stays. */
void api_reconfigure(struct api *a, const struct api_config *cfg);
/* Closes the listener and frees. NULL is a no-op. */
void api_stop(struct api *a);

#endif
