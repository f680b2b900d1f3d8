/*
 * auth_imap — end-user login against an IMAP server ([auth_imap] in
 * docs/CONFIG.md): a LOGIN that the server accepts proves the password; the
 * user's address is the typed local part at the configured domain, whatever the
 * server makes of a domain (auth_imap_address). Blocking: call it off the event
 * loop.
 */
#ifndef LAZARET_AUTH_IMAP_H
#define LAZARET_AUTH_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Longest server line read (greeting, capability, tagged reply). */
#define AUTH_IMAP_LINE_MAX 8192

/* How the password is protected on the way to the server ([auth_imap] tls). */
enum auth_imap_tls {
	AUTH_IMAP_TLS_NONE = 0, /* plain IMAP: loopback or a trusted network only */
	AUTH_IMAP_TLS_STARTTLS, /* "a0 STARTTLS" after the greeting, before LOGIN */
	AUTH_IMAP_TLS_IMAPS,	/* TLS from the first byte (port 993) */
};

/*
 * Largest literal ("{N}" then N bytes) skipped in a server response. Before login a
 * server has no reason to send one (an ID or a capability with odd text at most);
 * the bytes are skipped, never stored, and the limit keeps a peer from feeding us
 * without end.
 */
#define AUTH_IMAP_LITERAL_MAX (64 * 1024)

struct auth_imap_config {
	const char *host;   /* host:port */
	const char *domain; /* the users' mail domain (required: NULL refuses every login) */
	int64_t timeout_ms; /* connect, and each read or write */
	enum auth_imap_tls tls;
	/*
	 * With tls: a client context (common/tls.h) whose trust anchors verify the
	 * server's certificate, which must also name host's host part. Borrowed.
	 */
	struct ssl_ctx_st *tls_ctx;
};

/* "none", "starttls", "imaps" -> the enum; -EINVAL for anything else. */
int auth_imap_tls_parse(const char *s, enum auth_imap_tls *out);

/*
 * 0 when the server accepts username/password: *addresses is a new array of one
 * new string, auth_imap_address's (caller frees both). -EACCES, without asking
 * the server, when username names another domain; -EACCES when the server
 * refuses them (NO) or they cannot be sent as IMAP quoted strings; -EIO (logged)
 * when the server cannot be reached or does not speak IMAP, or TLS was asked for
 * and could not be set up (no STARTTLS, a certificate that does not verify): then
 * the password was not sent.
 */
int auth_imap_login(const struct auth_imap_config *cfg, const char *username, const char *password,
		    char ***addresses, size_t *n);

/*
 * The address of an IMAP user, new in *out (lowercase): "alice" and
 * "alice@<domain>" (domain compared case-insensitively) are alice@<domain>.
 * -EACCES for another domain, an empty local part, more than one '@', or no domain.
 */
int auth_imap_address(const char *domain, const char *username, char **out);

/*
 * s as an IMAP quoted string ("..." with \" and \\), new in *out. -EINVAL when s
 * holds CR, LF or bytes outside 7-bit ASCII, which a quoted string cannot carry.
 */
int auth_imap_quote(const char *s, char **out);

/* What the server-line reader keeps between reads. Zero it before the first. */
struct auth_imap_reader {
	size_t literal_left; /* bytes of a literal still to skip */
	bool continued;	     /* the next line continues a response after a literal */
};

/*
 * Takes the next server response from buf[0, len), the bytes received and not yet
 * consumed; *used says how many of them were consumed (the caller drops them), also
 * when it returns 0 or an error. A response is a line ending in LF (a CR before it
 * is dropped); when it ends in "{N}" the next N bytes are a literal and the line
 * after them continues the same response. Literals and continuation lines are
 * skipped wherever the reads cut them, so a tag or a status is only ever read at
 * the start of a response.
 * 1: *line is the response's first line (new, without line end, up to a NUL byte
 *    in it; caller frees). 0: more bytes are needed. -E2BIG: a line of
 * AUTH_IMAP_LINE_MAX bytes or more; -EPROTO: a literal larger than
 * AUTH_IMAP_LITERAL_MAX. I/O-free.
 */
int auth_imap_reader_next(struct auth_imap_reader *r, const char *buf, size_t len, size_t *used,
			  char **line);

#endif
