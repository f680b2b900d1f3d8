/*
 * smtp_session — an SMTP listener on libevent: accepts connections, applies the
 * client access list and connection limit, runs smtp_proto for each session, does
 * STARTTLS, idle timeouts and graceful shutdown, and hands complete messages to the
 * owner's handler. Shared by the manager's quarantine listener and the gateway.
 * Bounds what one client can hold: sessions per client address, a deadline for a
 * command line and for message data that trickling bytes do not restart, and a
 * pause in accepting when the process is out of descriptors.
 * Not for: deciding what happens to a message (that is the handler's job).
 *
 * Everything here runs on the loop thread. The handler may finish a message later
 * (after work on other threads) by calling smtp_session_message_done() on the loop
 * thread; until then the session reads nothing more.
 */
#ifndef LAZARET_SMTP_SESSION_H
#define LAZARET_SMTP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smtp/smtp_proto.h"

struct event_base;
struct acl;
struct smtp_server;
struct smtp_session;

/*
 * A complete message arrived. The handler owns m (smtp_message_free) and must call
 * smtp_session_message_done(s, reply) exactly once, now or later, on the loop thread.
 */
typedef void (*smtp_server_message_fn)(void *ctx, struct smtp_session *s, struct smtp_message *m);

struct smtp_server_config {
	const char *listen;		/* "host:port" */
	struct smtp_proto_config proto; /* hostname, limits, optional hooks (hook_ctx) */
	const struct acl *accept_from;	/* borrowed; NULL accepts everyone */
	unsigned max_connections; /* over it: "421 4.7.0 <host> Error: too many connections" */
	/* Sessions from one client address; over it: "421 4.7.0 <host> Error: too many
	 * connections from <address>". 0: no limit of its own. */
	unsigned max_connections_per_client;
	int64_t idle_timeout_ms; /* no input for this long: 421 4.4.2 */
	/* A command line must be complete this long after its first octet, however
	 * slowly it trickles in; else 421 4.4.2. 0: only the idle timeout applies. */
	int64_t command_timeout_ms;
	/* Message data must be complete (end mark read) this long after the 354; else
	 * 421 4.4.2. 0: only the idle timeout applies. */
	int64_t data_timeout_ms;
	const char *tls_cert; /* PEM paths; STARTTLS offered when both are set */
	const char *tls_key;
	/*
	 * PEM path or NULL: with STARTTLS, clients must present a certificate chaining
	 * to this CA; a client without one fails the handshake (and is logged).
	 */
	const char *tls_client_ca;
	smtp_server_message_fn on_message;
	void *ctx;
	/* Optional: told of refused connections and commands (reason, peer address). */
	void (*on_refused)(void *ctx, const char *reason, const char *peer);
	/*
	 * Optional: decides on a new connection after the access list and the
	 * connection limit passed. Return 0 to greet; else write one reply line without
	 * CRLF (e.g. "554 5.7.1 Access denied") into reply and return -1: the reply is
	 * sent and the connection closed. May attach data with smtp_session_set_data().
	 */
	int (*check_connect)(void *ctx, struct smtp_session *s, char *reply, size_t replylen);
	/* Optional: called when a session ends, to free what check_connect attached. */
	void (*on_close)(void *ctx, struct smtp_session *s);
};

/*
 * Binds cfg->listen and starts accepting on base. Strings and limits are copied;
 * accept_from is borrowed (see smtp_server_set_acl). TLS files are loaded now: a
 * bad certificate or key is an error. 0, or a negative errno with *err set to a
 * message the caller frees.
 */
int smtp_server_start(struct event_base *base, const struct smtp_server_config *cfg,
		      struct smtp_server **out, char **err);
/* Swaps the access list (SIGHUP); new connections use it, live ones are kept. */
void smtp_server_set_acl(struct smtp_server *srv, const struct acl *accept_from);
/*
 * Graceful stop: no new connections; idle sessions get "421 4.3.2 ... shutting
 * down" now; sessions in a transaction finish it first, then get the same 421.
 */
void smtp_server_shutdown(struct smtp_server *srv);
/* Closes every session at once (the grace period ran out). */
void smtp_server_close_all(struct smtp_server *srv);
/* Sessions still open. */
unsigned smtp_server_sessions(const struct smtp_server *srv);
/* Frees the server; every session must be gone (or is closed now). NULL is a no-op. */
void smtp_server_free(struct smtp_server *srv);

/* The outcome of the message handed to on_message: one reply line without CRLF. */
void smtp_session_message_done(struct smtp_session *s, const char *reply);
/* For logs: the session's short id and the peer address as text. */
const char *smtp_session_id(const struct smtp_session *s);
const char *smtp_session_peer(const struct smtp_session *s);
/* True when the session is on TLS. */
bool smtp_session_tls(const struct smtp_session *s);
/* The client's EHLO/HELO name, or NULL before one. */
const char *smtp_session_helo(const struct smtp_session *s);
/* The TLS version and cipher agreed (static strings), or NULLs before STARTTLS. */
void smtp_session_tls_info(const struct smtp_session *s, const char **version, const char **cipher);
/* The peer's socket address (for access checks). */
const struct sockaddr *smtp_session_peer_addr(const struct smtp_session *s);
/* The ctx given in smtp_server_config (for the proto hooks, which get the session). */
void *smtp_session_server_ctx(const struct smtp_session *s);
/* Owner data attached to a session (freed by the owner in on_close). */
void smtp_session_set_data(struct smtp_session *s, void *data);
void *smtp_session_data(const struct smtp_session *s);

#endif
