/*
 * auth_ldap — LDAP login for end users (see auth_ldap.h). One connection per
 * login: bind as the search account (or anonymously), search the subtree under
 * base_dn with user_filter, require exactly one entry, read its mail attributes,
 * then bind again as that entry's DN with the user's password. The search runs
 * before the user's bind, so the addresses are read with the search account's
 * rights. With TLS (ldaps://, or StartTLS on ldap://) the connection is made and
 * verified before the first bind, so no password leaves before the server's
 * certificate and name have been checked. Not for: groups, roles (directory
 * users are end users), caching.
 */
#include "manager/auth_ldap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <ldap.h>

#include "common/log.h"
#include "common/xalloc.h"

/* Attributes named in mail_attributes. */
#define AUTH_LDAP_MAX_ATTRIBUTES 16
/* Addresses kept from one entry: more is a directory mistake. */
#define AUTH_LDAP_MAX_ADDRESSES 1000

char *auth_ldap_escape(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p != '\0'; p++)
		n += strchr("*()\\", *p) != NULL ? 3 : 1;
	char *out = xmalloc(n + 1);
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (strchr("*()\\", *p) != NULL) {
			static const char hex[] = "0123456789abcdef";
			*o++ = '\\';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = '\0';
	return out;
}

/* user_filter with %s replaced by the escaped username. */
static char *auth_ldap_filter(const char *pattern, const char *username)
{
	const char *pct = strstr(pattern, "%s");
	char *esc = auth_ldap_escape(username);
	char *out = pct != NULL ? xasprintf("%.*s%s%s", (int)(pct - pattern), pattern, esc, pct + 2)
				: xstrdup(pattern);
	free(esc);
	return out;
}

static void auth_ldap_add(char ***v, size_t *n, const char *value, size_t len)
{
	if (*n >= AUTH_LDAP_MAX_ADDRESSES || len == 0 || memchr(value, '\0', len) != NULL)
		return;
	char *lc = xstrndup(value, len);
	for (char *p = lc; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((*v)[i], lc) == 0) {
			free(lc);
			return;
		}
	}
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = lc;
}

/* The server's last diagnostic text (TLS errors land there), or "-". Caller ldap_memfree()s. */
static char *auth_ldap_diagnostic(LDAP *ld)
{
	char *msg = NULL;
	if (ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) != LDAP_OPT_SUCCESS)
		msg = NULL;
	return msg;
}

static void auth_ldap_log_tls(LDAP *ld, const struct auth_ldap_config *cfg, const char *step,
			      int lrc)
{
	char *diag = auth_ldap_diagnostic(ld);
	char q[300], e[100];
	log_error("auth.ldap_failed", "step=%s uri=%s error=%s detail=%s", step, cfg->uri,
		  log_quote(e, sizeof(e), ldap_err2string(lrc)),
		  log_quote(q, sizeof(q), diag != NULL && *diag != '\0' ? diag : "-"));
	if (diag != NULL)
		ldap_memfree(diag);
}

/*
 * The handle's TLS settings (per handle, not libldap's process-wide ones), then
 * the secure channel itself: StartTLS on ldap://, the connection on ldaps://.
 * 0, or -EIO (logged).
 */
static int auth_ldap_tls(LDAP *ld, const struct auth_ldap_config *cfg)
{
	int demand = LDAP_OPT_X_TLS_DEMAND;
	int min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
	int zero = 0;
	int lrc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (lrc == LDAP_OPT_SUCCESS)
		lrc = ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &min);
	if (lrc == LDAP_OPT_SUCCESS && cfg->ca_file != NULL)
		lrc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, cfg->ca_file);
	/* The settings above apply to a context made after them. */
	if (lrc == LDAP_OPT_SUCCESS)
		lrc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
	if (lrc != LDAP_OPT_SUCCESS) {
		auth_ldap_log_tls(ld, cfg, "tls_setup", lrc);
		return -EIO;
	}
	if (cfg->starttls) {
		lrc = ldap_start_tls_s(ld, NULL, NULL);
		if (lrc != LDAP_SUCCESS) {
			auth_ldap_log_tls(ld, cfg, "starttls", lrc);
			return -EIO;
		}
	} else if (strncasecmp(cfg->uri, "ldaps://", 8) == 0) {
		/* Connect (and verify) now, so a TLS failure is reported as one. */
		lrc = ldap_connect(ld);
		if (lrc != LDAP_SUCCESS) {
			auth_ldap_log_tls(ld, cfg, "tls", lrc);
			return -EIO;
		}
	}
	return 0;
}

static int auth_ldap_bind(LDAP *ld, const char *dn, const char *password)
{
	struct berval cred;
	ber_str2bv(password != NULL ? password : "", 0, 0, &cred); /* borrowed, not copied */
	return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

int auth_ldap_login(const struct auth_ldap_config *cfg, const char *username, const char *password,
		    char ***addresses, size_t *n)
{
	LDAP *ld = NULL;
	LDAPMessage *res = NULL;
	char *filter = NULL, *attr_text = NULL, *dn = NULL;
	char *attrs[AUTH_LDAP_MAX_ATTRIBUTES + 1];
	size_t nattrs = 0;
	int rc = -EIO, lrc;
	*addresses = NULL;
	*n = 0;
	/* An empty password would be an unauthenticated bind, which servers accept. */
	if (password == NULL || *password == '\0' || username == NULL || *username == '\0')
		return -EACCES;

	attr_text = xstrdup(cfg->mail_attributes != NULL ? cfg->mail_attributes : "mail");
	for (char *save = NULL, *tok = strtok_r(attr_text, ", \t", &save);
	     tok != NULL && nattrs < AUTH_LDAP_MAX_ATTRIBUTES; tok = strtok_r(NULL, ", \t", &save))
		attrs[nattrs++] = tok;
	attrs[nattrs] = NULL;

	if ((lrc = ldap_initialize(&ld, cfg->uri)) != LDAP_SUCCESS) {
		log_error("auth.ldap_failed", "step=initialize uri=%s error=%s", cfg->uri,
			  ldap_err2string(lrc));
		goto fail;
	}
	int version = LDAP_VERSION3;
	struct timeval tv = {.tv_sec = cfg->timeout_ms / 1000,
			     .tv_usec = (cfg->timeout_ms % 1000) * 1000};
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	if (auth_ldap_tls(ld, cfg) < 0)
		goto fail;

	lrc = auth_ldap_bind(ld, cfg->bind_dn, cfg->bind_dn != NULL ? cfg->bind_password : NULL);
	if (lrc != LDAP_SUCCESS) {
		log_error("auth.ldap_failed", "step=service_bind uri=%s error=%s", cfg->uri,
			  ldap_err2string(lrc));
		goto fail;
	}
	filter =
	    auth_ldap_filter(cfg->user_filter != NULL ? cfg->user_filter : "(uid=%s)", username);
	lrc = ldap_search_ext_s(ld, cfg->base_dn, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL,
				&tv, 2, &res);
	if (lrc == LDAP_SIZELIMIT_EXCEEDED) {
		log_warn("auth.ldap_ambiguous", "filter=%s", filter);
		rc = -EACCES;
		goto fail;
	}
	if (lrc != LDAP_SUCCESS) {
		log_error("auth.ldap_failed", "step=search uri=%s error=%s", cfg->uri,
			  ldap_err2string(lrc));
		goto fail;
	}
	if (ldap_count_entries(ld, res) != 1) {
		rc = -EACCES;
		goto fail;
	}
	LDAPMessage *entry = ldap_first_entry(ld, res);
	dn = ldap_get_dn(ld, entry);
	if (dn == NULL)
		goto fail;
	for (size_t i = 0; i < nattrs; i++) {
		struct berval **vals = ldap_get_values_len(ld, entry, attrs[i]);
		for (size_t j = 0; vals != NULL && vals[j] != NULL; j++)
			auth_ldap_add(addresses, n, vals[j]->bv_val, vals[j]->bv_len);
		ldap_value_free_len(vals);
	}
	lrc = auth_ldap_bind(ld, dn, password);
	if (lrc == LDAP_INVALID_CREDENTIALS) {
		rc = -EACCES;
		goto fail;
	}
	if (lrc != LDAP_SUCCESS) {
		log_error("auth.ldap_failed", "step=user_bind uri=%s error=%s", cfg->uri,
			  ldap_err2string(lrc));
		goto fail;
	}
	ldap_memfree(dn);
	ldap_msgfree(res);
	ldap_unbind_ext_s(ld, NULL, NULL);
	free(filter);
	free(attr_text);
	return 0;

fail:
	for (size_t i = 0; i < *n; i++)
		free((*addresses)[i]);
	free(*addresses);
	*addresses = NULL;
	*n = 0;
	if (dn != NULL)
		ldap_memfree(dn);
	if (res != NULL)
		ldap_msgfree(res);
	if (ld != NULL)
		ldap_unbind_ext_s(ld, NULL, NULL);
	free(filter);
	free(attr_text);
	return rc;
}
