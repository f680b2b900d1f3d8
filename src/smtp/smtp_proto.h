/*
 * smtp_proto — the I/O-free SMTP server state machine (RFC 5321 with PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS, and Postfix's XFORWARD for
 * the MTA in front of a content filter).
 *
 * Bytes go in with smtp_proto_feed(); replies come out of smtp_proto_output();
 * things the caller must act on come back as events. It never touches a socket,
 * a clock or the store, so it can be unit-tested and fuzzed without a network.
 * Used by the manager's quarantine listener and by the gateway's listener.
 *
 * Typical glue loop:
 *   p = smtp_proto_new(&cfg); smtp_proto_greeting(p); flush output;
 *   on bytes: ev = smtp_proto_feed(p, buf, n); flush output; act on ev;
 *   SMTP_EVENT_MESSAGE: m = smtp_proto_message(p); store it (asynchronously,
 *       reading stops meanwhile); then smtp_proto_message_done(p, "250 2.0.0 ...");
 *       flush; ev = smtp_proto_feed(p, NULL, 0) to run pipelined input; ...
 *   SMTP_EVENT_STARTTLS: flush, do the TLS handshake, smtp_proto_tls_started(p).
 *   SMTP_EVENT_CLOSE: flush, close.
 */
#ifndef LAZARET_SMTP_PROTO_H
#define LAZARET_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Named limits; every one has a reply when exceeded (documented in docs/CONFIG.md). */
struct smtp_proto_limits {
	size_t max_command_line;	   /* octets incl. CRLF; over: "500 5.5.2 ..." */
	size_t max_data_line;		   /* a line inside DATA; over: message refused 500 5.5.2 */
	unsigned max_recipients;	   /* per transaction; over: "452 4.5.3 ..." */
	uint64_t max_message_size;	   /* octets; over: "552 5.3.4 ..." (also SIZE= at MAIL) */
	unsigned max_header_count;	   /* header fields; over: "552 5.3.4 ..." at end of DATA */
	size_t max_header_size;		   /* one header field incl. folding; over: 552 5.3.4 */
	unsigned max_commands_before_mail; /* non-transaction commands in a row; over: 421 4.7.0 */
	unsigned max_errors; /* error replies per session (and each further max_command_line
				octets of an over-long line); over: 421 4.7.0 */
};

/* Defaults: 512, 65536, 1000, 50 MiB, 1000, 65536, 50, 20. */
void smtp_proto_limits_default(struct smtp_proto_limits *l);

struct smtp_proto_config {
	const char *hostname; /* shown in the greeting and the EHLO reply */
	struct smtp_proto_limits limits;
	bool starttls_available; /* advertise STARTTLS (until TLS is on) */
	/*
	 * MAIL, RCPT, DATA, VRFY and XFORWARD before STARTTLS are refused "530 5.7.0
	 * Must issue a STARTTLS command first" (RFC 3207 4). Needs starttls_available.
	 */
	bool tls_required;
	/*
	 * Optional policy hooks. Return 0 to accept; else write one reply line without
	 * CRLF (e.g. "550 5.7.1 Recipient not accepted") into reply and return -1.
	 */
	int (*check_mail)(void *ctx, const char *sender, char *reply, size_t replylen);
	int (*check_rcpt)(void *ctx, const char *rcpt, char *reply, size_t replylen);
	/*
	 * Optional: told of every 4xx/5xx reply the machine sends, with a short
	 * machine-readable reason (see SMTP_REASON_* below) — for logs and metrics.
	 */
	void (*on_reject)(void *ctx, const char *reason, const char *reply);
	/*
	 * Optional: whether this session's client may send XFORWARD (Postfix's
	 * smtp_send_xforward_command: the MTA in front of a content filter passes on
	 * its own client's address, name and HELO). Asked once per session, at the
	 * first EHLO or XFORWARD; NULL or false: XFORWARD is neither advertised nor
	 * accepted ("503 5.5.1 Error: XFORWARD not allowed").
	 */
	bool (*xforward_allowed)(void *ctx);
	void *hook_ctx;
};

/* Reasons passed to on_reject. */
#define SMTP_REASON_LINE_TOO_LONG     "line_too_long"
#define SMTP_REASON_MESSAGE_TOO_LARGE "message_too_large"
#define SMTP_REASON_TOO_MANY_RCPTS    "too_many_recipients"
#define SMTP_REASON_HEADERS	      "header_limit"
#define SMTP_REASON_TOO_MANY_COMMANDS "too_many_commands"
#define SMTP_REASON_TOO_MANY_ERRORS   "too_many_errors"
#define SMTP_REASON_HTTP	      "http_request"
#define SMTP_REASON_SYNTAX	      "syntax"
#define SMTP_REASON_SEQUENCE	      "bad_sequence"
#define SMTP_REASON_UNKNOWN_COMMAND   "unknown_command"
#define SMTP_REASON_POLICY	      "policy"
#define SMTP_REASON_TIMEOUT	      "timeout"
#define SMTP_REASON_SHUTDOWN	      "shutdown"
#define SMTP_REASON_TLS_REQUIRED      "tls_required"

#define SMTP_REPLY_TLS_REQUIRED "530 5.7.0 Must issue a STARTTLS command first"

enum smtp_proto_event {
	SMTP_EVENT_NONE = 0, /* nothing to do but flush output and read more */
	SMTP_EVENT_MESSAGE,  /* a complete message: see smtp_proto_message() */
	SMTP_EVENT_STARTTLS, /* flush output, start TLS, then smtp_proto_tls_started() */
	SMTP_EVENT_CLOSE,    /* flush output, then close the connection */
};

struct smtp_envelope {
	char *helo;   /* as given in EHLO/HELO */
	char *sender; /* reverse-path without <>; "" for the null sender */
	char **rcpts; /* forward-paths without <> */
	size_t nrcpts;
	bool esmtp;		/* EHLO (not HELO) was used */
	bool smtputf8;		/* SMTPUTF8 given at MAIL */
	bool body_8bit;		/* BODY=8BITMIME given at MAIL */
	uint64_t declared_size; /* SIZE= at MAIL, 0 when absent */
	bool tls;		/* the transaction ran over TLS */
	/*
	 * XFORWARD attributes given before MAIL for this transaction (the original
	 * client as the forwarding MTA saw it); NULL when not given or given as
	 * [UNAVAILABLE]. They apply to one transaction: reset at its end (end of
	 * data, RSET, EHLO/HELO, STARTTLS). xforward_addr is a numeric address
	 * without an "IPv6:" prefix ("192.0.2.1", "2001:db8::1"); xforward_proto is
	 * upper case ("SMTP", "ESMTP").
	 */
	char *xforward_addr;
	char *xforward_name;
	char *xforward_helo;
	char *xforward_proto;
};

struct smtp_message {
	struct smtp_envelope env;
	unsigned char *data; /* dot-unstuffed message, line ends as received */
	size_t len;
};

struct smtp_proto;

/* A new session in the "connected" state. Never NULL. cfg is copied (hostname too). */
struct smtp_proto *smtp_proto_new(const struct smtp_proto_config *cfg);
/* Frees p and everything it owns (a message not yet taken too). NULL is a no-op. */
void smtp_proto_free(struct smtp_proto *p);

/* Queues the "220 <hostname> ESMTP Lazaret" greeting. */
void smtp_proto_greeting(struct smtp_proto *p);

/*
 * Appends len bytes of input and processes as much as the state allows; call
 * with (NULL, 0) to resume after smtp_proto_message_done(). Stops at the first
 * event other than NONE; the rest of the input stays buffered for the next call.
 * While a message awaits smtp_proto_message_done() input is only buffered.
 */
enum smtp_proto_event smtp_proto_feed(struct smtp_proto *p, const void *data, size_t len);

/* Replies waiting to be sent; *len may be 0. Valid until the next call on p. */
const char *smtp_proto_output(struct smtp_proto *p, size_t *len);
/* Drops the first n bytes of pending output (after they were written). */
void smtp_proto_output_consumed(struct smtp_proto *p, size_t n);

/*
 * After SMTP_EVENT_MESSAGE: the message. The caller takes ownership and frees it
 * with smtp_message_free(). Returns NULL when no message is ready.
 */
struct smtp_message *smtp_proto_message(struct smtp_proto *p);
void smtp_message_free(struct smtp_message *m);

/*
 * The outcome of the message handed out: one reply line without CRLF, e.g.
 * "250 2.0.0 Ok: stored as <id>" or "451 4.3.0 Temporary storage failure".
 * Resets the transaction (sender and recipients) and lets input flow again.
 */
void smtp_proto_message_done(struct smtp_proto *p, const char *reply);

/* After the TLS handshake: back to the greeted state, EHLO required again. */
void smtp_proto_tls_started(struct smtp_proto *p);

/* The idle timer fired: queues "421 4.4.2 <host> Error: timeout exceeded". Returns CLOSE. */
enum smtp_proto_event smtp_proto_timeout(struct smtp_proto *p);
/* The server is stopping: queues "421 4.3.2 <host> Service shutting down". Returns CLOSE. */
enum smtp_proto_event smtp_proto_shutdown(struct smtp_proto *p);

/* True while in a transaction (after MAIL, until the message is done or RSET). */
/* The name the client gave in its last EHLO/HELO, or NULL before one. */
const char *smtp_proto_helo(const struct smtp_proto *p);
bool smtp_proto_in_transaction(const struct smtp_proto *p);
/* True while a message awaits smtp_proto_message_done(). */
bool smtp_proto_awaiting_result(const struct smtp_proto *p);

/* What the machine waits for from the client; the caller's deadlines follow it. */
enum smtp_proto_wait {
	SMTP_WAIT_NOTHING,	/* a message result, a TLS handshake, or closed */
	SMTP_WAIT_COMMAND,	/* the first octet of the next command line */
	SMTP_WAIT_COMMAND_REST, /* the rest of a command line already begun */
	SMTP_WAIT_DATA,		/* message data, up to the end mark */
};
enum smtp_proto_wait smtp_proto_waiting_for(const struct smtp_proto *p);
/*
 * Command lines completed so far (over-long ones too): a caller that saw
 * SMTP_WAIT_COMMAND_REST before and after a feed tells by this count whether it
 * is still the same line.
 */
uint64_t smtp_proto_lines_done(const struct smtp_proto *p);

#endif
