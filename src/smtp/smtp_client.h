/*
 * smtp_client — a blocking outbound SMTP client for worker threads: one
 * connection, one transaction, a reply for every recipient.
 *
 * Used by the manager's release engine (to the primary/secondary host) and meant
 * for the gateway's relay to its next hop. Every step is bounded by a timeout, so
 * a call always returns. STARTTLS when the caller gives a TLS context (then it is
 * required and the server's certificate verified). Not for: the event loop (it
 * blocks), queueing or retries (the caller decides what a 4xx means), MX lookups.
 */
#ifndef LAZARET_SMTP_CLIENT_H
#define LAZARET_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/*
 * Limits on what a server may send us. RFC 5321 4.5.3.1.5 caps a reply line at
 * 512 octets; we allow more for servers that are generous with text, but a peer
 * sending endless lines must not make us allocate without bound.
 */
#define SMTP_CLIENT_REPLY_LINE_MAX  2048 /* octets in one reply line, CRLF included */
#define SMTP_CLIENT_REPLY_LINES_MAX 100	 /* lines in one (multiline) reply */
/* Reply text kept per recipient: the lines of a reply joined by a space. */
#define SMTP_CLIENT_REPLY_TEXT_MAX 4096
/* Output is buffered and written in pieces of this size. */
#define SMTP_CLIENT_WRITE_CHUNK 65536

/* The points of a session at which smtp_client_options.progress is called. */
enum smtp_client_stage {
	SMTP_CLIENT_AT_RCPTS_DONE, /* every RCPT answered, at least one accepted; before DATA */
	SMTP_CLIENT_AT_DATA_REPLY, /* the reply to the final dot settled the recipients;
				      before QUIT */
};

struct smtp_client_result;

struct smtp_client_options {
	const char *helo_name;	    /* EHLO/HELO argument; NULL: "localhost" */
	const char *source_address; /* numeric IP to bind before connecting, or NULL */
	int64_t connect_timeout_ms; /* per address tried; 0: timeout_ms */
	int64_t timeout_ms;	    /* each read or write step (default 60 s when 0) */
	int64_t final_timeout_ms;   /* reply after the message's final dot; 0: timeout_ms */
	/*
	 * Cap on the whole session, connect to QUIT; 0: none. Lets a caller holding a
	 * lease on the work know the session ends in time, however many steps it has.
	 */
	int64_t session_timeout_ms;
	/*
	 * A client context (common/tls.h tls_client_context), or NULL for plain SMTP.
	 * Set, TLS is required: after EHLO the client sends STARTTLS, verifies the
	 * server's certificate (the context's trust anchors) and that it names
	 * tls_host (NULL: the host part of hostport), then EHLOs again. A server that
	 * does not offer STARTTLS, refuses it, or fails the handshake or verification
	 * gets nothing: every recipient is SMTP_CLIENT_DEFERRED with the reason.
	 */
	struct ssl_ctx_st *tls_ctx;
	const char *tls_host;
	/*
	 * Called (when not NULL) on the calling thread at each stage, with the result
	 * as it stands. At SMTP_CLIENT_AT_DATA_REPLY the recipients the server took are
	 * SMTP_CLIENT_DELIVERED: a caller that records outcomes does it here, so that
	 * little can happen between the server's 250 and the record (not even QUIT).
	 */
	void (*progress)(void *arg, enum smtp_client_stage stage,
			 const struct smtp_client_result *res);
	void *progress_arg;
};

/* One transaction. Nothing here is kept after smtp_client_send() returns. */
struct smtp_client_message {
	const char *sender;	  /* envelope sender without <>; "" for the null sender */
	const char *const *rcpts; /* envelope recipients without <> */
	size_t nrcpts;
	/*
	 * Header lines sent before body (e.g. "X-Trace: a\r\n"), or NULL. Line ends are
	 * normalised like the body's.
	 */
	const char *header;
	const unsigned char *body; /* the message as stored: any mix of CRLF, LF */
	size_t body_len;
};

enum smtp_client_outcome {
	SMTP_CLIENT_DEFERRED = 0, /* 4xx, no answer, lost connection: try again later */
	SMTP_CLIENT_DELIVERED,	  /* the server took responsibility (2xx after the data) */
	SMTP_CLIENT_REJECTED,	  /* 5xx: do not try again */
};

/* "deferred", "delivered", "rejected". */
const char *smtp_client_outcome_name(enum smtp_client_outcome o);

struct smtp_client_rcpt_result {
	enum smtp_client_outcome outcome;
	int code; /* the reply code that decided the outcome; 0 when no server said */
	/*
	 * The reply that decided it: the RCPT reply if the recipient was refused, else
	 * the reply to DATA or to the final dot, or the session-level reply; when no
	 * server said, why ("connect to 127.0.0.1:10025: Connection refused").
	 */
	char *reply;
};

struct smtp_client_result {
	bool connected;	  /* a TCP connection was made */
	char *peer;	  /* "127.0.0.1:10025" / "[::1]:25" once connected, else NULL */
	char *error;	  /* the local reason the session did not complete, or NULL */
	int session_code; /* when the server refused the whole session (greeting, EHLO/HELO
			     or MAIL): its code, else 0 */
	char *session_reply;
	bool data_sent;			       /* the final dot was written */
	struct smtp_client_rcpt_result *rcpts; /* one per message recipient, same order */
	size_t nrcpts;
	/* What the server offered in its EHLO reply. */
	bool esmtp, ext_8bitmime, ext_smtputf8, ext_pipelining, ext_size, ext_starttls;
	bool tls; /* the transaction ran over TLS (STARTTLS succeeded) */
};

/* Frees what r owns (not r itself) and zeroes it. NULL is a no-op. */
void smtp_client_result_free(struct smtp_client_result *r);

/*
 * Splits "host:port", "[v6addr]:port" or "host" (port 25) into a new host string
 * (caller frees) and a port. 0, or -EINVAL.
 */
int smtp_client_parse_hostport(const char *hostport, char **host, unsigned *port);

/*
 * Delivers msg to hostport ("127.0.0.1:10025", "[::1]:25", "mx.example:25"):
 * connect (optionally from opt->source_address), EHLO (HELO when EHLO gets a 5xx),
 * MAIL, one RCPT per recipient, DATA when at least one RCPT was accepted, the
 * header and body (CRLF line ends, dot-stuffed), QUIT.
 *
 * *res is always filled (the caller frees it with smtp_client_result_free), with
 * one entry per recipient whatever happened. Returns 0 when the server answered
 * for every recipient (accepted or not); -EINVAL for bad arguments (no recipient,
 * an unusable host or source address); -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH,
 * -ENOENT (name not found), ... when no connection was made; -ETIMEDOUT,
 * -ECONNRESET, -EPROTO (malformed reply; with opt->tls_ctx also no STARTTLS or a
 * failed handshake) when the session broke off. In those
 * cases recipients without a server's answer are SMTP_CLIENT_DEFERRED with
 * res->error as their reply.
 */
int smtp_client_send(const char *hostport, const struct smtp_client_options *opt,
		     const struct smtp_client_message *msg, struct smtp_client_result *res);

/*
 * A session for many transactions to one server (the gateway's migration to the
 * manager): connected, greeted and EHLO'd once, then one smtp_client_session_send
 * per message, with RSET between them. opt is copied (its progress is not used);
 * session_timeout_ms caps each transaction, not the session.
 *
 * open: 0 with *out; -ECONNREFUSED with *code the server's refusal (greeting,
 * EHLO/HELO or STARTTLS; 0 when there was none) and *why its text; other -errno
 * (no connection, broke off) with *why. *why is the caller's to free.
 */
struct smtp_client_session;
int smtp_client_session_open(const char *hostport, const struct smtp_client_options *opt,
			     struct smtp_client_session **out, int *code, char **why);
/*
 * One transaction as smtp_client_send's (same *res, same returns). After a
 * negative return the session is broken: close it and open another.
 */
int smtp_client_session_send(struct smtp_client_session *s, const struct smtp_client_message *msg,
			     struct smtp_client_result *res);
/* QUIT (when the connection still stands), close, free. NULL is a no-op. */
void smtp_client_session_close(struct smtp_client_session *s);

/*
 * Takes line number index (from 0) of a server reply: line is one line without its
 * line end, NUL-terminated. Checks it ("250-..." / "250 ..." / "250", the same code
 * on every line of a multiline reply), sets *code, and keeps its printable ASCII in
 * text (capacity textcap; cleared at index 0, later lines joined by a space, cut at
 * the capacity). With ehlo not NULL, lines after the first are noted as EHLO
 * extensions. 1 when more lines of the reply follow ('-'), 0 when it is complete,
 * -EPROTO for a malformed line. I/O-free; smtp_client_send reads replies with it.
 */
int smtp_client_reply_line(const char *line, unsigned index, int *code, char *text, size_t textcap,
			   struct smtp_client_result *ehlo);

#endif
