/*
 * auth_oidc — OpenID Connect logins (auth_oidc.h).
 *
 *   GET /auth/oidc/login     (loop) a pending login: random state, nonce, PKCE
 *                            verifier and a browser binding (the lazaret_oidc
 *                            cookie, whose hash the pending login keeps); defer;
 *   oidc_work                (worker) the provider's discovery document, when not
 *                            cached; the authorization URL
 *   oidc_done                (loop) 302 to the provider with the binding cookie
 *   GET /auth/oidc/callback  (loop) the pending login of "state", taken out of the
 *                            table (single use) and checked against the binding
 *                            cookie and its deadline; defer;
 *   oidc_work                (worker) the code exchanged at the token endpoint
 *                            (client secret, PKCE verifier); the ID token's
 *                            signature checked against the JWKS (fetched again,
 *                            at most once per AUTH_OIDC_JWKS_REFRESH_MS, when its
 *                            key id is unknown: the provider rotated its keys);
 *                            iss, aud, azp, exp, iat, nbf and nonce checked; the
 *                            addresses, allowed domains and role read
 *   oidc_done                (loop) a session (api_users_session_open), 302 to /;
 *                            any failure: 401 with a page that says why, no cookie
 *
 * The discovery document and the JWKS are cached by the workers under a mutex.
 */
#include "manager/auth_oidc.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "api/api.h"
#include "api/api_users.h"
#include "api/auth.h"
#include "http/http_server.h"
#include "manager/manager_config.h"
#include "store/store.h"

/* How long a login may take at the provider (from /login to the callback). */
#define AUTH_OIDC_PENDING_MS (10 * 60 * 1000LL)
/* Pending logins kept at once; the oldest goes first when full. */
#define AUTH_OIDC_PENDING_MAX 4096
/*
 * Logins one client address may start per AUTH_OIDC_START_WINDOW_MS; beyond, 429.
 * Far more than people behind one proxy need, far too few to push the others'
 * pending logins out of the table.
 */
#define AUTH_OIDC_STARTS_MAX	  120
#define AUTH_OIDC_START_WINDOW_MS (60 * 1000LL)
#define AUTH_OIDC_RATELIMIT_KEYS  10000
/* Requests to the provider in flight or queued; beyond, logins get 503. */
#define AUTH_OIDC_JOBS_MAX 64
#define AUTH_OIDC_THREADS  2
/* The discovery document is fetched again after this long. */
#define AUTH_OIDC_DISCOVERY_TTL_MS (60 * 60 * 1000LL)
/* An unknown key id fetches the JWKS again at most this often. */
#define AUTH_OIDC_JWKS_REFRESH_MS (10 * 1000LL)
/* The JWKS is fetched again anyway after this long. */
#define AUTH_OIDC_JWKS_TTL_MS (24 * 60 * 60 * 1000LL)
/* Largest reply read from the provider. */
#define AUTH_OIDC_MAX_REPLY (256 * 1024)
/* An ID token issued longer ago than this (plus the skew) is refused. */
#define AUTH_OIDC_MAX_AGE_S (10 * 60)
/* Random bytes in state, nonce and the PKCE verifier (43 base64url characters). */
#define AUTH_OIDC_RANDOM_BYTES 32
#define AUTH_OIDC_RANDOM_LEN   43
#define AUTH_OIDC_COOKIE       "lazaret_oidc"
#define AUTH_OIDC_ADDRESS_MAX  320

struct oidc_pending {
	char state[AUTH_OIDC_RANDOM_LEN + 1];
	char nonce[AUTH_OIDC_RANDOM_LEN + 1];
	char verifier[AUTH_OIDC_RANDOM_LEN + 1];
	char binding[AUTH_HASH_TEXT_LEN + 1]; /* hash of the lazaret_oidc cookie */
	int64_t expires_at;
};

struct oidc_job;

struct auth_oidc {
	struct api *api;
	struct workpool *pool;
	struct loopq *loopq;
	/* the configuration, copied */
	char *issuer, *client_id, *client_secret, *scopes, *address_claim, *role_claim;
	char *admin_values, *operator_values, *allowed_domains, *ca_file, *redirect_uri;
	int64_t timeout_ms, skew_ms;
	bool secure_cookies;
	/* loop thread */
	struct oidc_pending *pending;  /* ring of AUTH_OIDC_PENDING_MAX */
	struct auth_ratelimit *starts; /* logins started per client address */
	size_t next_slot;
	struct oidc_job *jobs;
	size_t njobs;
	/* workers, under mu */
	pthread_mutex_t mu;
	char *authorization_endpoint, *token_endpoint, *jwks_uri;
	int64_t discovered_at;
	char *jwks; /* the JWKS document's text */
	int64_t jwks_at, jwks_refreshed_at;
};

enum oidc_kind { OIDC_LOGIN, OIDC_CALLBACK };

struct oidc_job {
	struct auth_oidc *o;
	struct http_server_request *req;
	enum oidc_kind kind;
	struct oidc_pending p;
	char cookie[AUTH_TOKEN_TEXT_LEN + 1]; /* login: the binding cookie's value */
	char *code;
	/* results */
	char *error; /* why the login failed (shown), NULL: success */
	int status;  /* of a failure: 401, or 503 when the provider cannot be reached */
	char *location;
	char *username, *role;
	char **addresses;
	size_t naddresses;
	struct oidc_job *prev, *next;
};

/* ---- small helpers ---- */

bool auth_oidc_word_in(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list != NULL ? list : ""; *p != '\0';) {
		p += strspn(p, ", \t");
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		if (len == wl && strncmp(p, word, len) == 0)
			return true;
		p += len;
	}
	return false;
}

int auth_oidc_url_ok(const char *url, bool loopback_http)
{
	const char *host;
	bool http = false;
	if (url == NULL)
		return -EINVAL;
	if (strncasecmp(url, "https://", 8) == 0) {
		host = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		host = url + 7;
		http = true;
	} else {
		return -EINVAL;
	}
	size_t hlen = strcspn(host, "/?#");
	if (hlen == 0 || memchr(host, '@', hlen) != NULL)
		return -EINVAL;
	for (const char *c = url; *c != '\0'; c++) {
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return -EINVAL;
	}
	if (!http)
		return 0;
	if (!loopback_http)
		return -EINVAL;
	/* the host without its port */
	size_t name = hlen;
	if (host[0] == '[') {
		const char *close = memchr(host, ']', hlen);
		if (close == NULL)
			return -EINVAL;
		bool end = (size_t)(close - host) + 1 == hlen || close[1] == ':';
		return (size_t)(close - host) == 4 && strncmp(host, "[::1", 4) == 0 && end
			   ? 0
			   : -EINVAL;
	}
	const char *colon = memchr(host, ':', hlen);
	if (colon != NULL)
		name = (size_t)(colon - host);
	if (name == 9 && strncasecmp(host, "localhost", 9) == 0)
		return 0;
	if (name > 4 && strncmp(host, "127.", 4) == 0) {
		for (size_t i = 4; i < name; i++) {
			if ((host[i] < '0' || host[i] > '9') && host[i] != '.')
				return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static void oidc_random(char out[AUTH_OIDC_RANDOM_LEN + 1])
{
	unsigned char b[AUTH_OIDC_RANDOM_BYTES];
	randombytes_buf(b, sizeof(b));
	sodium_bin2base64(out, AUTH_OIDC_RANDOM_LEN + 1, b, sizeof(b),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Appends s percent-encoded (everything but RFC 3986's unreserved characters). */
static void oidc_escape(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			strbuf_addc(sb, (char)*p);
		} else {
			strbuf_printf(sb, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
		}
	}
}

static void oidc_param(struct strbuf *sb, bool first, const char *key, const char *value)
{
	strbuf_printf(sb, "%s%s=", first ? "" : "&", key);
	oidc_escape(sb, value);
}

/* ---- requests to the provider (workers) ---- */

struct oidc_sink {
	struct strbuf sb;
	bool too_big;
};

static size_t oidc_write(char *data, size_t size, size_t n, void *arg)
{
	struct oidc_sink *s = arg;
	size_t len = size * n;
	if (s->sb.len + len > AUTH_OIDC_MAX_REPLY) {
		s->too_big = true;
		return 0;
	}
	strbuf_add(&s->sb, data, len);
	return len;
}

/*
 * GET url, or POST form to it (with an Authorization header when auth is not
 * NULL). The reply's JSON object into *out; NULL with the reason in *why (new).
 */
static json_t *oidc_fetch(struct auth_oidc *o, const char *url, const char *form, const char *auth,
			  long *status, char **why)
{
	*status = 0;
	if (auth_oidc_url_ok(url, true) < 0) {
		*why = xasprintf("the provider named an unusable URL");
		return NULL;
	}
	CURL *h = curl_easy_init();
	if (h == NULL) {
		*why = xstrdup("out of memory");
		return NULL;
	}
	struct oidc_sink sink;
	memset(&sink, 0, sizeof(sink));
	memset(&sink.sb, 0, sizeof(sink.sb));
	struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
	char *authz = NULL;
	if (auth != NULL) {
		authz = xasprintf("Authorization: %s", auth);
		hdrs = curl_slist_append(hdrs, authz);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (form != NULL)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, oidc_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (o->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
	CURLcode cc = curl_easy_perform(h);
	json_t *out = NULL;
	if (cc != CURLE_OK) {
		*why = xasprintf("the provider cannot be reached (%s)",
				 sink.too_big ? "reply too large" : curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		json_error_t jerr;
		out = json_loadb(strbuf_str(&sink.sb), sink.sb.len, JSON_REJECT_DUPLICATES, &jerr);
		if (out != NULL && !json_is_object(out)) {
			json_decref(out);
			out = NULL;
		}
		if (out == NULL)
			*why =
			    xasprintf("the provider answered %ld without a JSON object", *status);
	}
	curl_slist_free_all(hdrs);
	if (authz != NULL) {
		explicit_bzero(authz, strlen(authz));
		free(authz);
	}
	curl_easy_cleanup(h);
	strbuf_free(&sink.sb);
	return out;
}

static const char *oidc_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* The discovery document, fetched when not cached (under o->mu). 0, or *why. */
static int oidc_discover(struct auth_oidc *o, char **why)
{
	int64_t now = clock_now_ms();
	if (o->token_endpoint != NULL && now - o->discovered_at < AUTH_OIDC_DISCOVERY_TTL_MS)
		return 0;
	size_t n = strlen(o->issuer);
	while (n > 0 && o->issuer[n - 1] == '/')
		n--;
	char *url = xasprintf("%.*s/.well-known/openid-configuration", (int)n, o->issuer);
	long status;
	json_t *doc = oidc_fetch(o, url, NULL, NULL, &status, why);
	free(url);
	if (doc == NULL)
		return -EIO;
	int rc = 0;
	const char *iss = oidc_str(doc, "issuer");
	const char *authz = oidc_str(doc, "authorization_endpoint");
	const char *token = oidc_str(doc, "token_endpoint");
	const char *jwks = oidc_str(doc, "jwks_uri");
	if (status != 200) {
		*why = xasprintf("the provider's discovery document answered %ld", status);
		rc = -EIO;
	} else if (iss == NULL || strcmp(iss, o->issuer) != 0) {
		*why = xstrdup("the provider's discovery document names another issuer");
		rc = -EIO;
	} else if (auth_oidc_url_ok(authz, true) < 0 || auth_oidc_url_ok(token, true) < 0 ||
		   auth_oidc_url_ok(jwks, true) < 0) {
		*why = xstrdup("the provider's discovery document lacks a usable endpoint");
		rc = -EIO;
	} else {
		free(o->authorization_endpoint);
		free(o->token_endpoint);
		free(o->jwks_uri);
		o->authorization_endpoint = xstrdup(authz);
		o->token_endpoint = xstrdup(token);
		o->jwks_uri = xstrdup(jwks);
		o->discovered_at = now;
	}
	json_decref(doc);
	return rc;
}

/* Fetches the JWKS (under o->mu). 0, or *why. */
static int oidc_fetch_jwks(struct auth_oidc *o, char **why)
{
	long status;
	json_t *doc = oidc_fetch(o, o->jwks_uri, NULL, NULL, &status, why);
	if (doc == NULL)
		return -EIO;
	if (status != 200 || !json_is_array(json_object_get(doc, "keys"))) {
		*why = xasprintf("the provider's JWKS answered %ld without keys", status);
		json_decref(doc);
		return -EIO;
	}
	free(o->jwks);
	o->jwks = json_dumps(doc, JSON_COMPACT);
	o->jwks_at = clock_now_ms();
	json_decref(doc);
	return o->jwks != NULL ? 0 : -ENOMEM;
}

/* ---- the ID token ---- */

/* The JSON object in a base64url segment of len characters, or NULL. */
static json_t *oidc_segment(const char *seg, size_t len)
{
	size_t max = len * 3 / 4 + 3, got = 0;
	unsigned char *bin = xmalloc(max);
	json_t *out = NULL;
	if (sodium_base642bin(bin, max, seg, len, NULL, &got, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0)
		out = json_loadb((const char *)bin, got, JSON_REJECT_DUPLICATES, NULL);
	free(bin);
	if (out != NULL && !json_is_object(out)) {
		json_decref(out);
		out = NULL;
	}
	return out;
}

/* The key type an accepted signature algorithm needs, or NULL when alg is refused. */
static const char *oidc_alg_kty(const char *alg)
{
	static const char *const rsa[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};
	static const char *const ec[] = {"ES256", "ES384", "ES512"};
	for (size_t i = 0; i < sizeof(rsa) / sizeof(rsa[0]); i++) {
		if (strcmp(alg, rsa[i]) == 0)
			return "RSA";
	}
	for (size_t i = 0; i < sizeof(ec) / sizeof(ec[0]); i++) {
		if (strcmp(alg, ec[i]) == 0)
			return "EC";
	}
	return NULL;
}

/*
 * The key of jwks_text for alg and kid (NULL: the only key of the right type),
 * imported; NULL when there is none.
 */
static cjose_jwk_t *oidc_key(const char *jwks_text, const char *alg, const char *kid)
{
	json_t *doc = json_loads(jwks_text, 0, NULL);
	json_t *keys = json_object_get(doc, "keys");
	const char *kty = oidc_alg_kty(alg);
	json_t *found = NULL;
	size_t i, candidates = 0;
	json_t *k;
	json_array_foreach(keys, i, k)
	{
		const char *ktype = oidc_str(k, "kty"), *use = oidc_str(k, "use");
		const char *kalg = oidc_str(k, "alg"), *kkid = oidc_str(k, "kid");
		if (ktype == NULL || strcmp(ktype, kty) != 0)
			continue;
		if (use != NULL && strcmp(use, "sig") != 0)
			continue;
		if (kalg != NULL && strcmp(kalg, alg) != 0)
			continue;
		if (kid != NULL && (kkid == NULL || strcmp(kid, kkid) != 0))
			continue;
		found = k;
		candidates++;
	}
	cjose_jwk_t *jwk = NULL;
	if (found != NULL && candidates == 1) {
		/* the public half only: a JWKS has no business holding a private key */
		json_t *pub = json_deep_copy(found);
		json_object_del(pub, "d");
		char *text = json_dumps(pub, JSON_COMPACT);
		cjose_err err;
		if (text != NULL)
			jwk = cjose_jwk_import(text, strlen(text), &err);
		free(text);
		json_decref(pub);
	}
	json_decref(doc);
	return jwk;
}

/*
 * Checks the signature of the compact JWS token against the provider's keys:
 * its payload (new) into *claims, or the reason in *why.
 */
static int oidc_verify_signature(struct auth_oidc *o, const char *token, json_t **claims,
				 char **why)
{
	*claims = NULL;
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL) {
		*why = xstrdup("the ID token is not a signed JWT");
		return -EACCES;
	}
	json_t *hdr = oidc_segment(token, (size_t)(dot1 - token));
	const char *alg = oidc_str(hdr, "alg"), *kid = oidc_str(hdr, "kid");
	if (alg == NULL) {
		*why = xstrdup("the ID token has no signature algorithm");
		json_decref(hdr);
		return -EACCES;
	}
	if (oidc_alg_kty(alg) == NULL || json_object_get(hdr, "crit") != NULL) {
		char name[17];
		size_t k = 0;
		for (const char *c = alg; *c != '\0' && k < sizeof(name) - 1; c++) {
			if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			    (*c >= '0' && *c <= '9'))
				name[k++] = *c;
		}
		name[k] = '\0';
		*why = xasprintf("the ID token's signature algorithm \"%s\" is not accepted", name);
		json_decref(hdr);
		return -EACCES;
	}
	char *alg_copy = xstrdup(alg), *kid_copy = kid != NULL ? xstrdup(kid) : NULL;
	json_decref(hdr);

	int rc = 0;
	cjose_jwk_t *jwk = NULL;
	pthread_mutex_lock(&o->mu);
	int64_t now = clock_now_ms();
	if (o->jwks == NULL || now - o->jwks_at >= AUTH_OIDC_JWKS_TTL_MS)
		rc = oidc_fetch_jwks(o, why);
	if (rc == 0) {
		jwk = oidc_key(o->jwks, alg_copy, kid_copy);
		if (jwk == NULL && (o->jwks_refreshed_at == 0 ||
				    now - o->jwks_refreshed_at >= AUTH_OIDC_JWKS_REFRESH_MS)) {
			/* the provider may have rotated its keys */
			o->jwks_refreshed_at = now;
			log_info("oidc.jwks_refresh", "reason=unknown_key");
			rc = oidc_fetch_jwks(o, why);
			if (rc == 0)
				jwk = oidc_key(o->jwks, alg_copy, kid_copy);
		}
	}
	pthread_mutex_unlock(&o->mu);
	if (rc < 0)
		goto out;
	if (jwk == NULL) {
		*why = xstrdup("the ID token is signed with a key the provider does not publish");
		rc = -EACCES;
		goto out;
	}
	cjose_err err;
	cjose_jws_t *jws = cjose_jws_import(token, strlen(token), &err);
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	if (jws == NULL || !cjose_jws_verify(jws, jwk, &err) ||
	    !cjose_jws_get_plaintext(jws, &plain, &plain_len, &err)) {
		*why = xstrdup("the ID token's signature does not verify");
		rc = -EACCES;
	} else {
		*claims = json_loadb((const char *)plain, plain_len, JSON_REJECT_DUPLICATES, NULL);
		if (*claims == NULL || !json_is_object(*claims)) {
			json_decref(*claims);
			*claims = NULL;
			*why = xstrdup("the ID token's claims are not a JSON object");
			rc = -EACCES;
		}
	}
	if (jws != NULL)
		cjose_jws_release(jws);
	cjose_jwk_release(jwk);
out:
	free(alg_copy);
	free(kid_copy);
	return rc;
}

/* A claim by name; "a.b" walks into objects (realm_access.roles). */
static json_t *oidc_claim(json_t *claims, const char *name)
{
	json_t *v = claims;
	for (const char *p = name; v != NULL;) {
		size_t len = strcspn(p, ".");
		char *key = xstrndup(p, len);
		v = json_object_get(v, key);
		free(key);
		if (p[len] == '\0')
			return v;
		p += len + 1;
	}
	return NULL;
}

static bool oidc_int(json_t *claims, const char *name, json_int_t *out)
{
	json_t *v = json_object_get(claims, name);
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		*out = (json_int_t)json_real_value(v);
		return true;
	}
	return false;
}

static bool oidc_address_ok(const char *s)
{
	size_t len = strlen(s);
	const char *at = strrchr(s, '@');
	if (len == 0 || len > AUTH_OIDC_ADDRESS_MAX || at == NULL || at == s || at[1] == '\0')
		return false;
	for (const char *c = s; *c != '\0'; c++) {
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '"' ||
		    *c == '<' || *c == '>' || *c == '\\' || *c == ',' || *c == ';')
			return false;
	}
	return true;
}

static bool oidc_domain_allowed(struct auth_oidc *o, const char *address)
{
	if (o->allowed_domains == NULL)
		return true;
	return auth_oidc_word_in(o->allowed_domains, strrchr(address, '@') + 1);
}

/* True when the claim (a string or an array of strings) has one of list's words. */
static bool oidc_claim_has(json_t *v, const char *list)
{
	if (list == NULL)
		return false;
	if (json_is_string(v))
		return auth_oidc_word_in(list, json_string_value(v));
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		if (json_is_string(e) && auth_oidc_word_in(list, json_string_value(e)))
			return true;
	}
	return false;
}

/* The claims of a verified ID token checked; who it names into j. 0, or *why. */
static int oidc_check_claims(struct auth_oidc *o, struct oidc_job *j, json_t *c, char **why)
{
	const char *iss = oidc_str(c, "iss"), *sub = oidc_str(c, "sub");
	const char *nonce = oidc_str(c, "nonce"), *azp = oidc_str(c, "azp");
	json_t *aud = json_object_get(c, "aud");
	json_int_t exp, iat, nbf;
	int64_t now = clock_now_ms() / 1000, skew = o->skew_ms / 1000;
	if (iss == NULL || strcmp(iss, o->issuer) != 0) {
		*why = xstrdup("the ID token comes from another issuer");
		return -EACCES;
	}
	bool for_us = json_is_string(aud) && strcmp(json_string_value(aud), o->client_id) == 0;
	if (json_is_array(aud)) {
		size_t i;
		json_t *e;
		json_array_foreach(aud, i, e)
		{
			if (json_is_string(e) && strcmp(json_string_value(e), o->client_id) == 0)
				for_us = true;
		}
		if (json_array_size(aud) > 1 && azp == NULL)
			for_us = false;
	}
	if (!for_us || (azp != NULL && strcmp(azp, o->client_id) != 0)) {
		*why = xstrdup("the ID token is meant for another client (its audience is not this "
			       "manager)");
		return -EACCES;
	}
	if (!oidc_int(c, "exp", &exp) || !oidc_int(c, "iat", &iat)) {
		*why = xstrdup("the ID token lacks exp or iat");
		return -EACCES;
	}
	if (now >= exp + skew) {
		*why = xstrdup("the ID token has expired");
		return -EACCES;
	}
	if (iat > now + skew || (oidc_int(c, "nbf", &nbf) && nbf > now + skew)) {
		*why = xstrdup("the ID token is dated in the future (check the clocks)");
		return -EACCES;
	}
	if (iat < now - AUTH_OIDC_MAX_AGE_S - skew) {
		*why = xstrdup("the ID token was issued too long ago");
		return -EACCES;
	}
	if (nonce == NULL || !auth_token_equal(nonce, j->p.nonce)) {
		*why = xstrdup("the ID token's nonce does not match this login (a replayed token)");
		return -EACCES;
	}
	if (sub == NULL || *sub == '\0') {
		*why = xstrdup("the ID token names no subject");
		return -EACCES;
	}
	/* the addresses */
	json_t *v = oidc_claim(c, o->address_claim);
	json_t *verified = json_object_get(c, "email_verified");
	if (strcmp(o->address_claim, "email") == 0 &&
	    (json_is_false(verified) ||
	     (json_is_string(verified) && strcmp(json_string_value(verified), "false") == 0))) {
		*why = xstrdup("the provider has not verified this address");
		return -EACCES;
	}
	size_t n = json_is_array(v) ? json_array_size(v) : json_is_string(v) ? 1 : 0;
	if (n > 1000)
		n = 1000;
	j->addresses = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		const char *s = json_string_value(e);
		if (s == NULL || !oidc_address_ok(s))
			continue;
		char *a = xstrdup(s);
		for (char *p = a; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		}
		bool dup = false;
		for (size_t k = 0; k < j->naddresses; k++)
			dup = dup || strcmp(j->addresses[k], a) == 0;
		if (!dup && j->naddresses == 0 && !oidc_domain_allowed(o, a)) {
			char q[400];
			*why = xasprintf("the address %s is outside the allowed domains",
					 log_quote(q, sizeof(q), a));
			free(a);
			return -EACCES;
		}
		if (dup || !oidc_domain_allowed(o, a)) {
			free(a);
			continue;
		}
		j->addresses[j->naddresses++] = a;
	}
	if (j->naddresses == 0) {
		char q[200];
		*why = xasprintf("the ID token carries no mail address in its %s claim",
				 log_quote(q, sizeof(q), o->address_claim));
		return -EACCES;
	}
	j->username = xstrdup(j->addresses[0]);
	json_t *roles = o->role_claim != NULL ? oidc_claim(c, o->role_claim) : NULL;
	if (oidc_claim_has(roles, o->admin_values))
		j->role = xstrdup("admin");
	else if (oidc_claim_has(roles, o->operator_values))
		j->role = xstrdup("operator");
	else
		j->role = xstrdup("enduser");
	return 0;
}

/*
 * A local account (one with a password) of the same name keeps its own login and
 * second factor: the provider's word does not open it. 0, or *why.
 */
static int oidc_not_local(struct auth_oidc *o, struct oidc_job *j, char **why, int *status)
{
	struct store_user *user = NULL;
	int rc = store_user_get(api_store(o->api), j->username, &user);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		*why = xstrdup("the accounts cannot be read right now");
		*status = 503;
		return rc;
	}
	bool local = user->password_hash != NULL;
	store_user_free(user);
	if (local) {
		*why = xstrdup("a local account has this name: sign in with its password");
		return -EACCES;
	}
	return 0;
}

/* The callback's work: code for tokens, the ID token checked. 0, or *why. */
static int oidc_exchange(struct auth_oidc *o, struct oidc_job *j, char **why, int *status)
{
	char *token_endpoint;
	pthread_mutex_lock(&o->mu);
	int rc = oidc_discover(o, why);
	token_endpoint = rc == 0 ? xstrdup(o->token_endpoint) : NULL;
	pthread_mutex_unlock(&o->mu);
	if (rc < 0) {
		*status = 503;
		return rc;
	}
	struct strbuf form, cred;
	memset(&form, 0, sizeof(form));
	memset(&cred, 0, sizeof(cred));
	oidc_param(&form, true, "grant_type", "authorization_code");
	oidc_param(&form, false, "code", j->code);
	oidc_param(&form, false, "redirect_uri", o->redirect_uri);
	oidc_param(&form, false, "code_verifier", j->p.verifier);
	oidc_param(&form, false, "client_id", o->client_id);
	/* client_secret_basic: both halves form-encoded first (RFC 6749 2.3.1) */
	oidc_escape(&cred, o->client_id);
	strbuf_printf(&cred, ":");
	oidc_escape(&cred, o->client_secret);
	size_t b64len = sodium_base64_ENCODED_LEN(cred.len, sodium_base64_VARIANT_ORIGINAL);
	char *auth = xmalloc(sizeof("Basic ") - 1 + b64len);
	memcpy(auth, "Basic ", sizeof("Basic ") - 1);
	sodium_bin2base64(auth + sizeof("Basic ") - 1, b64len,
			  (const unsigned char *)strbuf_str(&cred), cred.len,
			  sodium_base64_VARIANT_ORIGINAL);
	long st;
	json_t *reply = oidc_fetch(o, token_endpoint, strbuf_str(&form), auth, &st, why);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	strbuf_free(&cred);
	strbuf_free(&form);
	free(token_endpoint);
	if (reply == NULL) {
		*status = 503;
		return -EIO;
	}
	const char *id_token = oidc_str(reply, "id_token");
	if (st != 200 || id_token == NULL) {
		const char *err = oidc_str(reply, "error");
		char q[100];
		*why = xasprintf("the provider refused the code (%s)",
				 err != NULL ? log_quote(q, sizeof(q), err) : "no ID token");
		json_decref(reply);
		return -EACCES;
	}
	json_t *claims = NULL;
	rc = oidc_verify_signature(o, id_token, &claims, why);
	if (rc == -EIO)
		*status = 503;
	if (rc == 0)
		rc = oidc_check_claims(o, j, claims, why);
	if (rc == 0)
		rc = oidc_not_local(o, j, why, status);
	json_decref(claims);
	json_decref(reply);
	return rc;
}

/* The login's work: the authorization URL. 0, or *why. */
static int oidc_authorize_url(struct auth_oidc *o, struct oidc_job *j, char **why)
{
	pthread_mutex_lock(&o->mu);
	int rc = oidc_discover(o, why);
	char *endpoint = rc == 0 ? xstrdup(o->authorization_endpoint) : NULL;
	pthread_mutex_unlock(&o->mu);
	if (rc < 0)
		return rc;
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(digest, (const unsigned char *)j->p.verifier, strlen(j->p.verifier));
	char challenge[AUTH_OIDC_RANDOM_LEN + 1];
	sodium_bin2base64(challenge, sizeof(challenge), digest, sizeof(digest),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	struct strbuf sb;
	memset(&sb, 0, sizeof(sb));
	strbuf_printf(&sb, "%s%c", endpoint, strchr(endpoint, '?') != NULL ? '&' : '?');
	oidc_param(&sb, true, "response_type", "code");
	oidc_param(&sb, false, "client_id", o->client_id);
	oidc_param(&sb, false, "redirect_uri", o->redirect_uri);
	oidc_param(&sb, false, "scope", o->scopes);
	oidc_param(&sb, false, "state", j->p.state);
	oidc_param(&sb, false, "nonce", j->p.nonce);
	oidc_param(&sb, false, "code_challenge", challenge);
	oidc_param(&sb, false, "code_challenge_method", "S256");
	j->location = xstrdup(strbuf_str(&sb));
	strbuf_free(&sb);
	free(endpoint);
	return 0;
}

static void oidc_done(void *arg);

static void oidc_work(void *arg)
{
	struct oidc_job *j = arg;
	char *why = NULL;
	int rc;
	j->status = 401;
	if (j->kind == OIDC_LOGIN) {
		rc = oidc_authorize_url(j->o, j, &why);
		j->status = 503;
	} else {
		rc = oidc_exchange(j->o, j, &why, &j->status);
	}
	if (rc < 0)
		j->error = why != NULL ? why : xstrdup("the login failed");
	else
		free(why);
	loopq_post(j->o->loopq, oidc_done, j);
}

/* ---- the loop thread ---- */

static void oidc_job_free(struct oidc_job *j)
{
	free(j->code);
	free(j->error);
	free(j->location);
	free(j->username);
	free(j->role);
	for (size_t i = 0; i < j->naddresses; i++)
		free(j->addresses[i]);
	free(j->addresses);
	explicit_bzero(&j->p, sizeof(j->p));
	free(j);
}

static void oidc_unlink(struct oidc_job *j)
{
	struct auth_oidc *o = j->o;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		o->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	o->njobs--;
}

/* Appends s with HTML's special characters escaped. */
static void oidc_html(struct strbuf *sb, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			strbuf_printf(sb, "&lt;");
			break;
		case '>':
			strbuf_printf(sb, "&gt;");
			break;
		case '&':
			strbuf_printf(sb, "&amp;");
			break;
		case '"':
			strbuf_printf(sb, "&quot;");
			break;
		case '\'':
			strbuf_printf(sb, "&#39;");
			break;
		default:
			strbuf_add(sb, s, 1);
		}
	}
}

/* Answers status with a page that says why the login failed; sets no cookie. */
static void oidc_reply_failure(struct http_server_request *req, int status, const char *why)
{
	struct strbuf sb;
	memset(&sb, 0, sizeof(sb));
	strbuf_printf(&sb, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			   "<title>Login failed - Lazaret</title></head>\n<body>\n"
			   "<h1>Login failed</h1>\n<p id=\"reason\">");
	oidc_html(&sb, why);
	strbuf_printf(&sb,
		      "</p>\n<p><a href=\"/\">Back to the login page</a></p>\n</body></html>\n");
	http_server_add_header(req, "Cache-Control", "no-store");
	http_server_add_header(req, "Referrer-Policy", "no-referrer");
	http_server_reply_bytes(req, status, "text/html; charset=utf-8", strbuf_str(&sb), sb.len);
	strbuf_free(&sb);
}

static void oidc_redirect(struct http_server_request *req, const char *location)
{
	http_server_add_header(req, "Location", location);
	http_server_add_header(req, "Cache-Control", "no-store");
	/* the callback's URL holds the code and the state: they go nowhere else */
	http_server_add_header(req, "Referrer-Policy", "no-referrer");
	http_server_reply_bytes(req, 302, "text/plain; charset=utf-8", "", 0);
}

static void oidc_done(void *arg)
{
	struct oidc_job *j = arg;
	struct auth_oidc *o = j->o;
	struct http_server_request *req = j->req;
	oidc_unlink(j);
	const char *peer = http_server_request_peer(req);
	if (j->error != NULL) {
		char q[600];
		log_warn("oidc.login_failed", "step=%s reason=%s peer=%s",
			 j->kind == OIDC_LOGIN ? "login" : "callback",
			 log_quote(q, sizeof(q), j->error), peer);
		oidc_reply_failure(req, j->status, j->error);
	} else if (j->kind == OIDC_LOGIN) {
		/* the pending login, in the ring; the oldest makes way */
		o->pending[o->next_slot] = j->p;
		o->next_slot = (o->next_slot + 1) % AUTH_OIDC_PENDING_MAX;
		char *cookie =
		    xasprintf("%s=%s; Path=/auth/oidc; Max-Age=%lld; HttpOnly; "
			      "SameSite=Lax%s",
			      AUTH_OIDC_COOKIE, j->cookie, (long long)(AUTH_OIDC_PENDING_MS / 1000),
			      o->secure_cookies ? "; Secure" : "");
		http_server_add_header(req, "Set-Cookie", cookie);
		free(cookie);
		oidc_redirect(req, j->location);
	} else {
		int rc = api_users_session_open(o->api, req, j->username, j->role,
						(const char *const *)j->addresses, j->naddresses,
						"oidc");
		if (rc < 0) {
			log_error("oidc.session_failed", "error=%s", strerror(-rc));
			oidc_reply_failure(req, 503, "the session cannot be stored right now");
		} else {
			/* the binding cookie has served */
			char *cookie =
			    xasprintf("%s=; Path=/auth/oidc; Max-Age=0; HttpOnly; "
				      "SameSite=Lax%s",
				      AUTH_OIDC_COOKIE, o->secure_cookies ? "; Secure" : "");
			http_server_add_header(req, "Set-Cookie", cookie);
			free(cookie);
			oidc_redirect(req, "/");
		}
	}
	oidc_job_free(j);
}

static struct oidc_job *oidc_job_new(struct auth_oidc *o, struct http_server_request *req,
				     enum oidc_kind kind)
{
	if (o->njobs >= AUTH_OIDC_JOBS_MAX) {
		http_server_add_header(req, "Retry-After", "1");
		oidc_reply_failure(req, 503, "too many logins in progress; try again shortly");
		return NULL;
	}
	struct oidc_job *j = xcalloc(1, sizeof(*j));
	j->o = o;
	j->kind = kind;
	return j;
}

static void oidc_submit(struct auth_oidc *o, struct oidc_job *j, struct http_server_request *req)
{
	j->req = http_server_request_defer(req);
	j->next = o->jobs;
	if (j->next != NULL)
		j->next->prev = j;
	o->jobs = j;
	o->njobs++;
	workpool_submit(o->pool, oidc_work, j);
}

static void oidc_login(struct http_server_request *req, void *arg)
{
	struct auth_oidc *o = arg;
	char peer[AUTH_ADDRESS_MAX + 1];
	api_users_client_address_of(o->api, req, peer);
	int64_t now = clock_now_ms();
	int64_t wait = auth_ratelimit_check(o->starts, peer, NULL, now);
	if (wait > 0) {
		log_warn("oidc.login_limited", "peer=%s retry_after_s=%lld", peer,
			 (long long)(wait + 999) / 1000);
		char retry[32];
		snprintf(retry, sizeof(retry), "%lld", (long long)(wait + 999) / 1000);
		http_server_add_header(req, "Retry-After", retry);
		oidc_reply_failure(req, 429, "too many logins from your address; try again later");
		return;
	}
	auth_ratelimit_begin(o->starts, peer, now);
	auth_ratelimit_done(o->starts, peer, AUTH_ATTEMPT_FAILED, NULL, now);
	struct oidc_job *j = oidc_job_new(o, req, OIDC_LOGIN);
	if (j == NULL)
		return;
	oidc_random(j->p.state);
	oidc_random(j->p.nonce);
	oidc_random(j->p.verifier);
	auth_token_new(j->cookie);
	auth_token_hash(j->cookie, j->p.binding);
	j->p.expires_at = clock_now_ms() + AUTH_OIDC_PENDING_MS;
	oidc_submit(o, j, req);
}

/* The pending login of state into *out, taken out of the table (single use); false when none. */
static bool oidc_take(struct auth_oidc *o, const char *state, struct oidc_pending *out)
{
	bool found = false;
	for (size_t i = 0; i < AUTH_OIDC_PENDING_MAX; i++) {
		struct oidc_pending *p = &o->pending[i];
		if (p->state[0] == '\0')
			continue;
		if (!found && auth_token_equal(p->state, state)) {
			*out = *p;
			found = true;
			explicit_bzero(p, sizeof(*p));
		}
	}
	return found;
}

static void oidc_callback(struct http_server_request *req, void *arg)
{
	struct auth_oidc *o = arg;
	const char *state = http_server_request_query(req, "state");
	const char *code = http_server_request_query(req, "code");
	const char *error = http_server_request_query(req, "error");
	struct oidc_pending p;
	memset(&p, 0, sizeof(p));
	bool known = state != NULL && http_server_request_query_count(req, "state") == 1 &&
		     strlen(state) == AUTH_OIDC_RANDOM_LEN && oidc_take(o, state, &p);
	char *cookie = auth_cookie_get(http_server_request_header(req, "Cookie"), AUTH_OIDC_COOKIE);
	char binding[AUTH_HASH_TEXT_LEN + 1];
	bool have_cookie = cookie != NULL;
	if (have_cookie)
		auth_token_hash(cookie, binding);
	free(cookie);
	const char *why = NULL;
	char *msg = NULL;
	if (!known) {
		why = "this login is unknown, expired or has already been used: start again";
	} else if (!have_cookie || !auth_token_equal(binding, p.binding)) {
		why = "this login was not started in this browser: start again";
	} else if (clock_now_ms() >= p.expires_at) {
		why = "this login took too long: start again";
	} else if (error != NULL) {
		char q[200];
		msg = xasprintf("the provider refused the login (%s)",
				log_quote(q, sizeof(q), error));
		why = msg;
	} else if (code == NULL || *code == '\0' || strlen(code) > 4096 ||
		   http_server_request_query_count(req, "code") != 1) {
		why = "the provider sent no authorization code";
	}
	if (why != NULL) {
		char q[600];
		log_warn("oidc.login_failed", "step=callback reason=%s peer=%s",
			 log_quote(q, sizeof(q), why), http_server_request_peer(req));
		oidc_reply_failure(req, 401, why);
		free(msg);
		explicit_bzero(&p, sizeof(p));
		return;
	}
	struct oidc_job *j = oidc_job_new(o, req, OIDC_CALLBACK);
	if (j == NULL)
		return;
	j->p = p;
	explicit_bzero(&p, sizeof(p));
	j->code = xstrdup(code);
	oidc_submit(o, j, req);
}

/* What the login page needs to offer single sign-on. */
static void oidc_info(struct http_server_request *req, void *arg)
{
	http_server_reply_json(req, 200, json_pack("{s:s}", "login_url", "/auth/oidc/login"));
}

static const struct http_server_route_row oidc_routes[] = {
    {"GET", "/api/v1/session/oidc", HTTP_SERVER_ROUTE_PUBLIC, oidc_info},
    {"GET", "/auth/oidc/login", HTTP_SERVER_ROUTE_PUBLIC, oidc_login},
    {"GET", "/auth/oidc/callback", HTTP_SERVER_ROUTE_PUBLIC, oidc_callback},
};

struct auth_oidc *auth_oidc_attach(struct api *a, struct event_base *base,
				   const struct manager_config *cfg)
{
	if (cfg->oidc_issuer == NULL)
		return NULL;
	char *secret = NULL;
	size_t len = 0;
	int rc = read_file(cfg->oidc_client_secret_file, 4096, &secret, &len);
	if (rc < 0) {
		log_error("oidc.secret_unreadable", "error=%s", strerror(-rc));
		return NULL;
	}
	secret[strcspn(secret, "\r\n")] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("oidc.curl_init_failed", "error=%s", "curl_global_init");
		explicit_bzero(secret, len);
		free(secret);
		return NULL;
	}
	struct auth_oidc *o = xcalloc(1, sizeof(*o));
	o->api = a;
	o->client_secret = secret;
	o->issuer = xstrdup(cfg->oidc_issuer);
	o->client_id = xstrdup(cfg->oidc_client_id);
	o->scopes = xstrdup(cfg->oidc_scopes);
	o->address_claim = xstrdup(cfg->oidc_address_claim);
	o->role_claim = cfg->oidc_role_claim != NULL ? xstrdup(cfg->oidc_role_claim) : NULL;
	o->admin_values = cfg->oidc_admin_values != NULL ? xstrdup(cfg->oidc_admin_values) : NULL;
	o->operator_values =
	    cfg->oidc_operator_values != NULL ? xstrdup(cfg->oidc_operator_values) : NULL;
	o->allowed_domains =
	    cfg->oidc_allowed_domains != NULL ? xstrdup(cfg->oidc_allowed_domains) : NULL;
	for (char *p = o->allowed_domains; p != NULL && *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	o->ca_file = cfg->oidc_ca_file != NULL ? xstrdup(cfg->oidc_ca_file) : NULL;
	o->redirect_uri = xstrdup(cfg->oidc_redirect_uri);
	o->timeout_ms = cfg->oidc_timeout_ms;
	o->skew_ms = cfg->oidc_clock_skew_ms;
	o->secure_cookies = cfg->secure_cookies;
	o->pending = xcalloc(AUTH_OIDC_PENDING_MAX, sizeof(*o->pending));
	o->starts = auth_ratelimit_new(AUTH_OIDC_STARTS_MAX, AUTH_OIDC_START_WINDOW_MS,
				       AUTH_OIDC_RATELIMIT_KEYS);
	pthread_mutex_init(&o->mu, NULL);
	o->pool = workpool_new(AUTH_OIDC_THREADS);
	o->loopq = loopq_new(base);
	http_server_route_table(api_http(a), oidc_routes,
				sizeof(oidc_routes) / sizeof(oidc_routes[0]), o);
	char q[600];
	log_info("oidc.start", "issuer=%s redirect_uri=%s", log_quote(q, sizeof(q), o->issuer),
		 o->redirect_uri);
	return o;
}

void auth_oidc_free(struct auth_oidc *o)
{
	if (o == NULL)
		return;
	workpool_free(o->pool);
	loopq_free(o->loopq);
	while (o->jobs != NULL) {
		struct oidc_job *j = o->jobs;
		oidc_unlink(j);
		oidc_reply_failure(j->req, 503, "the manager is stopping");
		oidc_job_free(j);
	}
	explicit_bzero(o->pending, AUTH_OIDC_PENDING_MAX * sizeof(*o->pending));
	free(o->pending);
	auth_ratelimit_free(o->starts);
	pthread_mutex_destroy(&o->mu);
	explicit_bzero(o->client_secret, strlen(o->client_secret));
	free(o->client_secret);
	free(o->issuer);
	free(o->client_id);
	free(o->scopes);
	free(o->address_claim);
	free(o->role_claim);
	free(o->admin_values);
	free(o->operator_values);
	free(o->allowed_domains);
	free(o->ca_file);
	free(o->redirect_uri);
	free(o->authorization_endpoint);
	free(o->token_endpoint);
	free(o->jwks_uri);
	free(o->jwks);
	free(o);
	curl_global_cleanup();
}
