/*
 * auth_imap — end-user login against an IMAP server ([auth_imap] in
 * docs/CONFIG.md): a LOGIN that the server accepts proves the password; the
 * user's address is the username (with "@domain" appended when it has none and a
 * domain is configured). Blocking: call it off the event loop.
 */
#ifndef LAZARET_AUTH_IMAP_H
#define LAZARET_AUTH_IMAP_H

#include <stddef.h>
#include <stdint.h>

/* Longest server line read (greeting, capability, tagged reply). */
#define AUTH_IMAP_LINE_MAX 8192

struct auth_imap_config {
	const char *host;   /* host:port */
	const char *domain; /* appended to usernames without '@'; NULL: none */
	int64_t timeout_ms; /* connect, and each read or write */
};

/*
 * 0 when the server accepts username/password: *addresses is a new array of one
 * new string (caller frees both). -EACCES when it refuses them (NO) or they
 * cannot be sent as IMAP quoted strings; -EIO (logged) when the server cannot be
 * reached or does not speak IMAP.
 */
int auth_imap_login(const struct auth_imap_config *cfg, const char *username, const char *password,
		    char ***addresses, size_t *n);

/*
 * s as an IMAP quoted string ("..." with \" and \\), new in *out. -EINVAL when s
 * holds CR, LF or bytes outside 7-bit ASCII, which a quoted string cannot carry.
 */
int auth_imap_quote(const char *s, char **out);

#endif
