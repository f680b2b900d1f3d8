/*
 * auth_directory — the manager's directory logins for end users, in order: LDAP
 * ([auth_ldap]), then IMAP ([auth_imap]), each when configured. Its login function
 * is what the API's login endpoint calls off the loop thread for a username that
 * is not a local account.
 */
#ifndef LAZARET_AUTH_DIRECTORY_H
#define LAZARET_AUTH_DIRECTORY_H

#include <stddef.h>

struct manager_config;
struct auth_directory;

/*
 * A snapshot of cfg's [auth_ldap] and [auth_imap] settings (they change on restart
 * only: logins in flight keep using it). NULL when neither is configured.
 */
struct auth_directory *auth_directory_new(const struct manager_config *cfg);
void auth_directory_free(struct auth_directory *d);

/*
 * An api_users_directory_fn (api/api_users.h) with arg a struct
 * auth_directory: LDAP first; IMAP when LDAP is not configured, refuses the user
 * or cannot be reached. Blocking.
 */
int auth_directory_login(void *arg, const char *username, const char *password, char ***addresses,
			 size_t *naddresses, const char **method);

#endif
