/*
 * api_gateways — the gateway registry over HTTP (docs/openapi.yaml, tag
 * gateways): admins add, list and remove gateways (POST/GET /api/v1/gateways,
 * DELETE /api/v1/gateways/{name}); a gateway says hello with its own token
 * (POST /api/v1/gateway/hello). An extension of the API core: the daemon adds it
 * with api_gateways_attach after api_start.
 *
 * A gateway's token opens only the gateway-facing API: the hello here, the
 * safelist change feed (api_slbl.c asks api_gateways_token_ok) and the event
 * intake (api_events.c). Everywhere else it
 * is no credential at all, so those routes answer it as they answer no token.
 */
#ifndef LAZARET_API_GATEWAYS_H
#define LAZARET_API_GATEWAYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct api;
struct api_gateways;
struct http_server_request;
struct store_gateway;

/* Pending entries kept when the configuration gives no bound. */
#define API_GATEWAYS_DEFAULT_MAX_PENDING 100
/* How often one address may record or refresh a pending entry, by default. */
#define API_GATEWAYS_DEFAULT_PENDING_INTERVAL_MS 60000
/* Client addresses the pending rate limit remembers (the stalest is forgotten). */
#define API_GATEWAYS_PENDING_ADDRESSES 4096

struct api_gateways_config {
	/* Addresses whose unauthenticated hellos are recorded as pending ("10.0.0.0/8,
	 * ::1"); NULL or "": none are. */
	const char *pending_from;
	unsigned max_pending;	     /* 0: API_GATEWAYS_DEFAULT_MAX_PENDING */
	int64_t pending_interval_ms; /* 0: API_GATEWAYS_DEFAULT_PENDING_INTERVAL_MS */
	/* Called (with changed_arg) after a gateway was registered or removed. */
	void (*changed)(void *changed_arg);
	void *changed_arg;
};

/*
 * Adds the registry's routes to a's server with cfg (copied). The result is the
 * daemon's to free with api_gateways_free after api_stop. Once per api.
 */
struct api_gateways *api_gateways_attach(struct api *a, const struct api_gateways_config *cfg);
/* New settings (SIGHUP); the rate limit's memory is kept. */
void api_gateways_configure(struct api_gateways *g, const struct api_gateways_config *cfg);
void api_gateways_free(struct api_gateways *g);

/*
 * True when req carries "Authorization: Bearer <token>" with the token of a
 * registered gateway; *out (may be NULL) then gets its entry (the caller frees it
 * with store_gateway_free). False for anything else, the admin token included.
 */
bool api_gateways_token_ok(struct api *a, struct http_server_request *req,
			   struct store_gateway **out);
/* The same as 0, -ENOENT (no gateway's token), or the store's error (-ENOTCONN,
 * -EIO ...) when it could not look the token up. */
int api_gateways_authenticate(struct api *a, struct http_server_request *req,
			      struct store_gateway **out);

/* The fields of POST /api/v1/gateways, pointing into the body they came from. */
struct api_gateways_new {
	const char *name;
	const char *address;
	const char *group;   /* NULL: none */
	const char *cluster; /* NULL: none */
	unsigned release_port;
};
/* The fields of POST /api/v1/gateway/hello, pointing into the body. */
struct api_gateways_hello {
	const char *name;
	const char *version; /* NULL: not said */
	const char *group;
	const char *cluster;
	int central;		      /* "centralized" as STORE_CENTRAL_* bits; -1: not said */
	const char *outbreak_version; /* "outbreak_rules_version"; NULL: not said */
};
/*
 * Checks a registration body (a JSON object): 0 with *out, or -EINVAL with *err a
 * new message for a 422 (caller frees). No I/O.
 */
int api_gateways_parse_new(const json_t *body, struct api_gateways_new *out, char **err);
/* The same for a hello body. */
int api_gateways_parse_hello(const json_t *body, struct api_gateways_hello *out, char **err);
/*
 * A registry entry as the API shows it (docs/openapi.yaml Gateway): never its
 * token hash. The fields nothing sets yet are constant: centralized all false,
 * migration null, event_backlog 0.
 */
json_t *api_gateways_json(const struct store_gateway *g);

#endif
