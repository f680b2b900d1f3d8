/*
 * smtp_listener_keys — see smtp_listener_keys.h. The rows below are the one place
 * the listener keys' names, types, defaults and bounds are written; docs/CONFIG.md
 * and docs/GATEWAY.md describe them under each daemon's section.
 */
#include "smtp/smtp_listener_keys.h"

#include <stdint.h>
#include <string.h>

#define SEC (UINT64_C(1000))

static const struct confparse_key smtp_listener_rows[SMTP_LISTENER_NKEYS] = {
    [SMTP_LISTENER_LISTEN] = {.name = "listen", .type = CONFPARSE_HOSTPORT},
    [SMTP_LISTENER_MAX_MESSAGE_SIZE] = {.name = "max_message_size",
					.type = CONFPARSE_SIZE,
					.default_text = "50M",
					.min = 1,
					.max = SMTP_LISTENER_MESSAGE_SIZE_LIMIT},
    [SMTP_LISTENER_MAX_RECIPIENTS] = {.name = "max_recipients",
				      .type = CONFPARSE_UINT,
				      .default_text = "1000",
				      .min = 1,
				      .max = 1000000},
    [SMTP_LISTENER_MAX_CONNECTIONS] = {.name = "max_connections",
				       .type = CONFPARSE_UINT,
				       .default_text = "500",
				       .min = 1,
				       .max = 1000000},
    [SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT] = {.name = "max_connections_per_client",
						  .type = CONFPARSE_UINT,
						  .default_text = "50",
						  .min = 1,
						  .max = 1000000},
    [SMTP_LISTENER_COMMAND_TIMEOUT] = {.name = "command_timeout",
				       .type = CONFPARSE_DURATION,
				       .default_text = "1m",
				       .min = SEC},
    [SMTP_LISTENER_DATA_TIMEOUT] = {.name = "data_timeout",
				    .type = CONFPARSE_DURATION,
				    .default_text = "10m",
				    .min = SEC},
    [SMTP_LISTENER_IDLE_TIMEOUT] = {.name = "idle_timeout",
				    .type = CONFPARSE_DURATION,
				    .default_text = "5m",
				    .min = SEC},
    [SMTP_LISTENER_TLS_CERT] = {.name = "tls_cert", .type = CONFPARSE_PATH},
    [SMTP_LISTENER_TLS_KEY] = {.name = "tls_key", .type = CONFPARSE_PATH},
};

void smtp_listener_keys_join(const struct confparse_key *base, size_t n,
			     const struct smtp_listener_keys *l, struct confparse_key *out)
{
	for (size_t i = 0; i < n; i++)
		*out++ = base[i];
	confparse_place_rows(smtp_listener_rows, SMTP_LISTENER_NKEYS, l->section, l->offset,
			     l->defaults, out);
}

/* The value of key k in cfg, of the type its row gives, into out. */
static void smtp_listener_value(const struct smtp_listener_keys *l, const void *cfg,
				enum smtp_listener_key k, void *out, size_t size)
{
	memcpy(out, (const char *)cfg + l->offset[k], size);
}

#define SMTP_LISTENER_GET(l, cfg, k, dst) smtp_listener_value(l, cfg, k, &(dst), sizeof(dst))

void smtp_listener_keys_server_config(const struct smtp_listener_keys *l, const void *cfg,
				      struct smtp_server_config *sc)
{
	memset(sc, 0, sizeof(*sc));
	smtp_proto_limits_default(&sc->proto.limits);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_LISTEN, sc->listen);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_MAX_MESSAGE_SIZE,
			  sc->proto.limits.max_message_size);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_MAX_RECIPIENTS, sc->proto.limits.max_recipients);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_MAX_CONNECTIONS, sc->max_connections);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT,
			  sc->max_connections_per_client);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_COMMAND_TIMEOUT, sc->command_timeout_ms);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_DATA_TIMEOUT, sc->data_timeout_ms);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_IDLE_TIMEOUT, sc->idle_timeout_ms);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_TLS_CERT, sc->tls_cert);
	SMTP_LISTENER_GET(l, cfg, SMTP_LISTENER_TLS_KEY, sc->tls_key);
}
