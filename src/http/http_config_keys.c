/*
 * http_config_keys — see http_config_keys.h. The rows below are the one place the
 * HTTP listener keys' names, types, defaults and bounds are written; docs/CONFIG.md
 * and docs/GATEWAY.md describe them under each daemon's [http] section.
 */
#include "http/http_config_keys.h"

#include <stdint.h>
#include <string.h>

#define KIB (UINT64_C(1024))
#define GIB (KIB * 1024 * 1024)
#define SEC (UINT64_C(1000))

static const struct confparse_key http_config_rows[HTTP_CONFIG_NKEYS] = {
    [HTTP_CONFIG_LISTEN] = {.name = "listen", .type = CONFPARSE_HOSTPORT},
    [HTTP_CONFIG_MAX_BODY] =
	{.name = "max_body", .type = CONFPARSE_SIZE, .default_text = "1M", .min = KIB, .max = GIB},
    [HTTP_CONFIG_MAX_CONNECTIONS] = {.name = "max_connections",
				     .type = CONFPARSE_UINT,
				     .default_text = "256",
				     .min = 1,
				     .max = 1000000},
    [HTTP_CONFIG_MAX_CONNECTIONS_PER_CLIENT] = {.name = "max_connections_per_client",
						.type = CONFPARSE_UINT,
						.default_text = "32",
						.min = 1,
						.max = 1000000},
    [HTTP_CONFIG_REQUEST_TIMEOUT] = {.name = "request_timeout",
				     .type = CONFPARSE_DURATION,
				     .default_text = "30s",
				     .min = SEC,
				     .max = 3600 * SEC},
    [HTTP_CONFIG_KEEPALIVE_TIMEOUT] = {.name = "keepalive_timeout",
				       .type = CONFPARSE_DURATION,
				       .default_text = "15s",
				       .min = SEC,
				       .max = 3600 * SEC},
};

void http_config_keys_rows(const struct http_config_keys *h, struct confparse_key *out)
{
	confparse_place_rows(http_config_rows, HTTP_CONFIG_NKEYS, h->section, h->offset,
			     h->defaults, out);
}

/* The value of key k in cfg, of the type its row gives, into out. */
static void http_config_value(const struct http_config_keys *h, const void *cfg,
			      enum http_config_key k, void *out, size_t size)
{
	memcpy(out, (const char *)cfg + h->offset[k], size);
}

void http_config_keys_conn_limits(const struct http_config_keys *h, const void *cfg,
				  unsigned fd_reserve, struct http_server_conn_limits *l)
{
	int64_t request_ms, keepalive_ms;
	memset(l, 0, sizeof(*l));
	http_config_value(h, cfg, HTTP_CONFIG_MAX_CONNECTIONS, &l->max_connections,
			  sizeof(l->max_connections));
	http_config_value(h, cfg, HTTP_CONFIG_MAX_CONNECTIONS_PER_CLIENT,
			  &l->max_connections_per_client, sizeof(l->max_connections_per_client));
	http_config_value(h, cfg, HTTP_CONFIG_REQUEST_TIMEOUT, &request_ms, sizeof(request_ms));
	http_config_value(h, cfg, HTTP_CONFIG_KEEPALIVE_TIMEOUT, &keepalive_ms,
			  sizeof(keepalive_ms));
	l->request_timeout_s = (unsigned)(request_ms / 1000);
	l->keepalive_timeout_s = (unsigned)(keepalive_ms / 1000);
	l->fd_reserve = fd_reserve;
}
