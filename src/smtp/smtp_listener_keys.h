/*
 * smtp_listener_keys — the configuration keys every SMTP listener has (address,
 * message and recipient limits, connection limits, timeouts, TLS certificate),
 * as confparse rows. lazaretd's [spam_quarantine] and lazaret-gw's [listener]
 * both read them from here, so the two daemons parse and bound them alike.
 *
 * A daemon describes its section: the name, where each value goes in its config
 * struct, and the defaults it wants different from the shared ones; it joins the
 * rows to its own key table when it loads or frees a config.
 * Not for: keys only one daemon has (accept_from, xforward_from, tls_require ...),
 * or the smtp_server settings only one daemon has (hooks, access list, client CA).
 */
#ifndef LAZARET_SMTP_LISTENER_KEYS_H
#define LAZARET_SMTP_LISTENER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/confparse.h"
#include "smtp/smtp_session.h"

/* A message over 2G fits neither the store's size fields nor a sane relay. */
#define SMTP_LISTENER_MESSAGE_SIZE_LIMIT (UINT64_C(2) * 1024 * 1024 * 1024)

enum smtp_listener_key {
	SMTP_LISTENER_LISTEN,			  /* host:port; no shared default */
	SMTP_LISTENER_MAX_MESSAGE_SIZE,		  /* uint64_t bytes */
	SMTP_LISTENER_MAX_RECIPIENTS,		  /* unsigned */
	SMTP_LISTENER_MAX_CONNECTIONS,		  /* unsigned */
	SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT, /* unsigned */
	SMTP_LISTENER_COMMAND_TIMEOUT,		  /* int64_t ms */
	SMTP_LISTENER_DATA_TIMEOUT,		  /* int64_t ms */
	SMTP_LISTENER_IDLE_TIMEOUT,		  /* int64_t ms */
	SMTP_LISTENER_TLS_CERT,			  /* char *, path */
	SMTP_LISTENER_TLS_KEY,			  /* char *, path */
	SMTP_LISTENER_NKEYS
};

/* One daemon's listener section. */
struct smtp_listener_keys {
	const char *section;
	/* offsetof() in the daemon's config struct, of a field of the type above */
	size_t offset[SMTP_LISTENER_NKEYS];
	/* a default_text of the daemon's own; NULL: the shared one */
	const char *defaults[SMTP_LISTENER_NKEYS];
};

/*
 * The offsets for a config struct type whose fields are named like lazaretd's and
 * lazaret-gw's (max_message_size, max_recipients, max_connections,
 * max_connections_per_client, command_timeout_ms, data_timeout_ms,
 * idle_timeout_ms, tls_cert, tls_key), listen_field holding the address.
 */
#define SMTP_LISTENER_OFFSETS(type, listen_field)                                                  \
	{                                                                                          \
		[SMTP_LISTENER_LISTEN] = offsetof(type, listen_field),                             \
		[SMTP_LISTENER_MAX_MESSAGE_SIZE] = offsetof(type, max_message_size),               \
		[SMTP_LISTENER_MAX_RECIPIENTS] = offsetof(type, max_recipients),                   \
		[SMTP_LISTENER_MAX_CONNECTIONS] = offsetof(type, max_connections),                 \
		[SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT] =                                       \
		    offsetof(type, max_connections_per_client),                                    \
		[SMTP_LISTENER_COMMAND_TIMEOUT] = offsetof(type, command_timeout_ms),              \
		[SMTP_LISTENER_DATA_TIMEOUT] = offsetof(type, data_timeout_ms),                    \
		[SMTP_LISTENER_IDLE_TIMEOUT] = offsetof(type, idle_timeout_ms),                    \
		[SMTP_LISTENER_TLS_CERT] = offsetof(type, tls_cert),                               \
		[SMTP_LISTENER_TLS_KEY] = offsetof(type, tls_key),                                 \
	}

/*
 * A daemon's whole key table: its own n rows of base, then the rows of listener
 * section l, into out (n + SMTP_LISTENER_NKEYS rows). The rows point into base, l
 * and static text, which must outlive them.
 */
void smtp_listener_keys_join(const struct confparse_key *base, size_t n,
			     const struct smtp_listener_keys *l, struct confparse_key *out);

/*
 * The listener values of cfg, a config struct whose fields l's offsets name, into
 * sc: address, message and recipient limits, connection caps, timeouts and the
 * STARTTLS certificate. sc's limits start from smtp_proto_limits_default(); the
 * rest of sc (hostname, hooks, daemon-only keys) is the caller's, set after.
 */
void smtp_listener_keys_server_config(const struct smtp_listener_keys *l, const void *cfg,
				      struct smtp_server_config *sc);

#endif
