/*
 * auth_imap — end-user login against an IMAP server ([auth_imap] in
 * docs/CONFIG.md): a LOGIN that the server accepts proves the password; the
 * user's address is the typed local part at the configured domain, whatever the
 * server makes of a domain (auth_imap_address). Blocking: call it off the event
 * loop.
 */
#ifndef LAZARET_AUTH_IMAP_H
#define LAZARET_AUTH_IMAP_H

#include <stddef.h>
#include <stdint.h>

/* Longest server line read (greeting, capability, tagged reply). */
#define AUTH_IMAP_LINE_MAX 8192

struct auth_imap_config {
	const char *host;   /* host:port */
	const char *domain; /* the users' mail domain (required: NULL refuses every login) */
	int64_t timeout_ms; /* connect, and each read or write */
};

/*
 * 0 when the server accepts username/password: *addresses is a new array of one
 * new string, auth_imap_address's (caller frees both). -EACCES, without asking
 * the server, when username names another domain; -EACCES when the server
 * refuses them (NO) or they cannot be sent as IMAP quoted strings; -EIO (logged) when the server
 * cannot be reached or does not speak IMAP.
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

#endif
