/*
 * auth_ldap — end-user login against an LDAP directory ([auth_ldap] in
 * docs/CONFIG.md): find the user's entry, bind as it with the password, and read
 * the user's mail addresses (aliases included) from the configured attributes.
 * Blocking: call it off the event loop.
 */
#ifndef LAZARET_AUTH_LDAP_H
#define LAZARET_AUTH_LDAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_ldap_config {
	const char *uri;	     /* ldap://host:port/ or ldaps://... */
	const char *base_dn;	     /* where users are searched (subtree) */
	const char *bind_dn;	     /* for the search; NULL: anonymous */
	const char *bind_password;   /* with bind_dn */
	const char *user_filter;     /* with one %s for the escaped username: (uid=%s) */
	const char *mail_attributes; /* comma- or space-separated: "mail, mailAlternateAddress" */
	int64_t timeout_ms;	     /* per network operation */
	/*
	 * TLS: with an ldaps:// uri, or starttls on an ldap:// uri, the server's
	 * certificate must chain to ca_file (NULL: the system's store) and name the
	 * uri's host (LDAP_OPT_X_TLS_REQUIRE_CERT demand), TLS 1.2 or newer; nothing
	 * is sent before that. starttls: the StartTLS extended operation first.
	 */
	bool starttls;
	const char *ca_file;
};

/*
 * Checks username/password. 0 with *addresses a new array of *n new lower-cased
 * addresses, without repeats (caller frees each and the array). -EACCES when the
 * user is unknown, ambiguous (several entries) or the password is wrong or empty;
 * -EIO (logged) when the directory cannot be reached or refuses the search, or
 * TLS could not be set up (then no password was sent).
 */
int auth_ldap_login(const struct auth_ldap_config *cfg, const char *username, const char *password,
		    char ***addresses, size_t *n);

/* s escaped for an LDAP filter value (RFC 4515: * ( ) \ NUL as \XX). New string. */
char *auth_ldap_escape(const char *s);

#endif
