/*
 * http_config_keys — the configuration keys every HTTP listener has (address,
 * request body limit, connection caps, request and keep-alive timeouts), as
 * confparse rows. lazaretd's and lazaret-gw's [http] both read them from here, so
 * the two daemons parse and bound them alike.
 *
 * A daemon describes its section: the name, where each value goes in its config
 * struct, and the defaults it wants different from the shared ones; it adds the
 * rows to its own key table when it loads or frees a config.
 * Not for: keys only one daemon has (admin_token's rules, web_root, tls_cert,
 * sessions ...), or the daemon's API settings (address, body limit).
 */
#ifndef LAZARET_HTTP_CONFIG_KEYS_H
#define LAZARET_HTTP_CONFIG_KEYS_H

#include <stddef.h>

#include "common/confparse.h"
#include "http/http_server.h"

enum http_config_key {
	HTTP_CONFIG_LISTEN,			/* char *, host:port; no shared default */
	HTTP_CONFIG_MAX_BODY,			/* uint64_t bytes */
	HTTP_CONFIG_MAX_CONNECTIONS,		/* unsigned */
	HTTP_CONFIG_MAX_CONNECTIONS_PER_CLIENT, /* unsigned */
	HTTP_CONFIG_REQUEST_TIMEOUT,		/* int64_t ms */
	HTTP_CONFIG_KEEPALIVE_TIMEOUT,		/* int64_t ms */
	HTTP_CONFIG_NKEYS
};

/* One daemon's HTTP section. */
struct http_config_keys {
	const char *section;
	/* offsetof() in the daemon's config struct, of a field of the type above */
	size_t offset[HTTP_CONFIG_NKEYS];
	/* a default_text of the daemon's own; NULL: the shared one */
	const char *defaults[HTTP_CONFIG_NKEYS];
};

/*
 * The offsets for a config struct type whose fields are named like lazaretd's and
 * lazaret-gw's (http_listen, http_max_body, http_max_connections,
 * http_max_connections_per_client, http_request_timeout_ms,
 * http_keepalive_timeout_ms).
 */
#define HTTP_CONFIG_OFFSETS(type)                                                                  \
	{                                                                                          \
		[HTTP_CONFIG_LISTEN] = offsetof(type, http_listen),                                \
		[HTTP_CONFIG_MAX_BODY] = offsetof(type, http_max_body),                            \
		[HTTP_CONFIG_MAX_CONNECTIONS] = offsetof(type, http_max_connections),              \
		[HTTP_CONFIG_MAX_CONNECTIONS_PER_CLIENT] =                                         \
		    offsetof(type, http_max_connections_per_client),                               \
		[HTTP_CONFIG_REQUEST_TIMEOUT] = offsetof(type, http_request_timeout_ms),           \
		[HTTP_CONFIG_KEEPALIVE_TIMEOUT] = offsetof(type, http_keepalive_timeout_ms),       \
	}

/*
 * The HTTP_CONFIG_NKEYS rows of section h into out, to follow a daemon's own rows
 * in its key table. The rows point into h and static text, which must outlive them.
 */
void http_config_keys_rows(const struct http_config_keys *h, struct confparse_key *out);

/*
 * The connection caps and timeouts of cfg, a config struct whose fields h's offsets
 * name, into l, with fd_reserve (the descriptors the daemon keeps for its other
 * work) as given.
 */
void http_config_keys_conn_limits(const struct http_config_keys *h, const void *cfg,
				  unsigned fd_reserve, struct http_server_conn_limits *l);

#endif
