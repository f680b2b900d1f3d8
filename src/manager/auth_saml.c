/*
 * auth_saml — SAML 2.0 single sign-on for end users, on liblasso.
 *
 *   GET  /auth/saml/metadata  our SP metadata (entity id, signing certificate, ACS)
 *   GET  /auth/saml/login     302 to the provider's SSO service with a signed
 *                             AuthnRequest (HTTP-Redirect); its ID is remembered,
 *                             once, for AUTH_SAML_PENDING_MS, with a random value
 *                             also set as the browser's AUTH_SAML_COOKIE
 *   POST /auth/saml/acs       the provider's Response (HTTP-POST): lasso checks the
 *                             XML signatures against the provider's metadata key;
 *                             we check the rest (below); success opens an end-user
 *                             session and 302s to the portal, any failure is a 401
 *                             page that says why, and no cookie
 *
 * What the consumer requires: a Response signed by the provider (lasso refuses an
 * unsigned one, or one signed by another key), status Success, Destination = our
 * ACS, InResponseTo = an AuthnRequest we sent and have not seen answered (taken
 * out on first use, so a replayed or unsolicited Response is refused) to this
 * browser (auth_saml_browser_cookie), one
 * assertion issued by the provider, an AudienceRestriction naming our entity id,
 * Conditions and SubjectConfirmationData within their time bounds (with
 * AUTH_SAML_SKEW_S of clock skew), and addresses in the allowed domains. The
 * pending IDs live in this process: a deployment of several lazaretd behind one
 * name must send a login's two requests to the same one.
 */
#include "manager/auth_saml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* GLib's and lasso's headers do not build under our warnings. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <lasso/lasso.h>
#include <lasso/saml-2.0/saml2_helper.h>
#include <lasso/xml/misc_text_node.h>
#include <lasso/xml/saml-2.0/samlp2_authn_request.h>
#include <lasso/xml/saml-2.0/samlp2_response.h>
#include <lasso/xml/saml-2.0/saml2_assertion.h>
#include <lasso/xml/saml-2.0/saml2_attribute.h>
#include <lasso/xml/saml-2.0/saml2_attribute_statement.h>
#include <lasso/xml/saml-2.0/saml2_attribute_value.h>
#pragma GCC diagnostic pop

#include "common/clock.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_users.h"
#include "api/auth.h"

/* How long an AuthnRequest may wait for its Response, and how many may wait. */
#define AUTH_SAML_PENDING_MS  (10 * 60 * 1000)
#define AUTH_SAML_PENDING_MAX 4096
/* Clock skew allowed between us and the provider. */
#define AUTH_SAML_SKEW_S 120
/* Largest key, certificate or metadata file we read. */
#define AUTH_SAML_FILE_MAX (1024 * 1024)
/* The cookie of a sign-in under way (auth_saml_browser_cookie). */
#define AUTH_SAML_COOKIE "lazaret_saml"
/* Most addresses one login may bring. */
#define AUTH_SAML_ADDRESSES_MAX 64

struct auth_saml_pending {
	char *id;
	int64_t expires_at;
	char browser[AUTH_TOKEN_TEXT_LEN + 1]; /* the AUTH_SAML_COOKIE of the browser that asked */
};

struct auth_saml {
	struct api *api;
	LassoServer *server;
	char *idp_id;
	char *entity_id;
	char *acs_url;
	char *metadata; /* our SP metadata, served as is */
	char *address_attribute;
	char **domains;
	size_t ndomains;
	struct auth_saml_pending *pending;
	size_t npending;
	bool secure_cookies;
};

static bool auth_saml_lasso_ready;

/* lasso's GLib messages (their text may quote the documents it was given) into our log. */
static void auth_saml_lasso_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
				gpointer arg)
{
	char q[1024];
	log_quote(q, sizeof(q), message != NULL ? message : "");
	if ((level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) != 0)
		log_warn("saml.lasso", "message=%s", q);
	else
		log_debug("saml.lasso", "message=%s", q);
}

static void auth_saml_pending_add(struct auth_saml *s, const char *id, const char *browser,
				  int64_t now)
{
	size_t kept = 0;
	for (size_t i = 0; i < s->npending; i++) {
		if (s->pending[i].expires_at > now)
			s->pending[kept++] = s->pending[i];
		else
			free(s->pending[i].id);
	}
	s->npending = kept;
	if (s->npending == AUTH_SAML_PENDING_MAX) { /* the oldest gives way */
		free(s->pending[0].id);
		memmove(s->pending, s->pending + 1, (s->npending - 1) * sizeof(s->pending[0]));
		s->npending--;
	}
	s->pending[s->npending].id = xstrdup(id);
	s->pending[s->npending].expires_at = now + AUTH_SAML_PENDING_MS;
	snprintf(s->pending[s->npending].browser, sizeof(s->pending[0].browser), "%s", browser);
	s->npending++;
}

/*
 * True when id is a request we sent that waits for its answer, with the browser
 * token it was sent to into browser; takes it out (the order, oldest first, kept).
 */
static bool auth_saml_pending_take(struct auth_saml *s, const char *id, int64_t now,
				   char browser[AUTH_TOKEN_TEXT_LEN + 1])
{
	if (id == NULL)
		return false;
	for (size_t i = 0; i < s->npending; i++) {
		if (strcmp(s->pending[i].id, id) != 0)
			continue;
		bool live = s->pending[i].expires_at > now;
		memcpy(browser, s->pending[i].browser, AUTH_TOKEN_TEXT_LEN + 1);
		free(s->pending[i].id);
		memmove(s->pending + i, s->pending + i + 1,
			(s->npending - i - 1) * sizeof(s->pending[0]));
		s->npending--;
		return live;
	}
	return false;
}

/*
 * The cookie that ties a sign-in to the browser that started it. The provider's
 * POST comes from another site: only SameSite=None (which needs Secure) brings
 * it along everywhere, so without secure cookies it is set without SameSite and
 * checked only when it comes. It is not cleared: it ends with its request, which
 * is answered once.
 */
static void auth_saml_browser_cookie(struct auth_saml *s, struct http_server_request *req,
				     const char *value, int max_age)
{
	char *c = xasprintf("%s=%s; Path=/auth/saml/; Max-Age=%d; HttpOnly%s", AUTH_SAML_COOKIE,
			    value, max_age, s->secure_cookies ? "; SameSite=None; Secure" : "");
	http_server_add_header(req, "Set-Cookie", c);
	free(c);
}

static void auth_saml_html_escaped(struct strbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			strbuf_puts(b, "&lt;");
			break;
		case '>':
			strbuf_puts(b, "&gt;");
			break;
		case '&':
			strbuf_puts(b, "&amp;");
			break;
		case '"':
			strbuf_puts(b, "&quot;");
			break;
		case '\'':
			strbuf_puts(b, "&#39;");
			break;
		default:
			strbuf_addc(b, *s);
		}
	}
}

/* 401 with a page that says why; no cookie. */
static void auth_saml_refuse(struct http_server_request *req, const char *why)
{
	log_warn("saml.login_refused", "reason=\"%s\" peer=%s", why, http_server_request_peer(req));
	struct strbuf b = {0};
	strbuf_puts(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
			"<title>Sign-in refused</title></head><body>\n"
			"<h1>Sign-in refused</h1>\n<p id=\"reason\">");
	auth_saml_html_escaped(&b, why);
	strbuf_puts(&b, "</p>\n<p><a href=\"/auth/saml/login\">Sign in again</a></p>\n"
			"</body></html>\n");
	http_server_add_header(req, "Cache-Control", "no-store");
	http_server_reply_bytes(req, 401, "text/html; charset=utf-8", strbuf_str(&b),
				strlen(strbuf_str(&b)));
	strbuf_free(&b);
}

static void auth_saml_metadata(struct http_server_request *req, void *arg)
{
	struct auth_saml *s = arg;
	http_server_reply_bytes(req, 200, "application/samlmetadata+xml", s->metadata,
				strlen(s->metadata));
}

static void auth_saml_login(struct http_server_request *req, void *arg)
{
	struct auth_saml *s = arg;
	LassoLogin *login = lasso_login_new(s->server);
	const char *fail = NULL;
	int rc = lasso_login_init_authn_request(login, s->idp_id, LASSO_HTTP_METHOD_REDIRECT);
	if (rc == 0) {
		LassoSamlp2AuthnRequest *r =
		    LASSO_SAMLP2_AUTHN_REQUEST(LASSO_PROFILE(login)->request);
		g_free(r->ProtocolBinding);
		r->ProtocolBinding = g_strdup(LASSO_SAML2_METADATA_BINDING_POST);
		g_free(r->AssertionConsumerServiceURL);
		r->AssertionConsumerServiceURL = g_strdup(s->acs_url);
		if (r->NameIDPolicy != NULL) { /* lasso asks for a transient one */
			g_free(r->NameIDPolicy->Format);
			r->NameIDPolicy->Format =
			    g_strdup(s->address_attribute == NULL
					 ? LASSO_SAML2_NAME_IDENTIFIER_FORMAT_EMAIL
					 : LASSO_SAML2_NAME_IDENTIFIER_FORMAT_UNSPECIFIED);
			r->NameIDPolicy->AllowCreate = TRUE;
		}
		rc = lasso_login_build_authn_request_msg(login);
		if (rc == 0) {
			const char *id = LASSO_SAMLP2_REQUEST_ABSTRACT(r)->ID;
			const char *url = LASSO_PROFILE(login)->msg_url;
			if (id == NULL || url == NULL) {
				fail = "no request was built";
			} else {
				char browser[AUTH_TOKEN_TEXT_LEN + 1];
				auth_token_new(browser);
				auth_saml_pending_add(s, id, browser, clock_now_ms());
				auth_saml_browser_cookie(s, req, browser,
							 AUTH_SAML_PENDING_MS / 1000);
				http_server_add_header(req, "Location", url);
				http_server_add_header(req, "Cache-Control", "no-store");
				http_server_reply_bytes(req, 302, "text/plain", "", 0);
			}
		}
	}
	if (rc != 0)
		fail = lasso_strerror(rc);
	if (fail != NULL) {
		log_error("saml.request_failed", "error=\"%s\"", fail);
		http_server_reply_error(req, 500, "cannot build the SAML request: %s", fail);
	}
	g_object_unref(login);
}

/* "2026-12-06T00:33:29Z" (fractions and a Z or +00:00 allowed) as time_t; -1 if not. */
static time_t auth_saml_time(const char *s)
{
	if (s == NULL)
		return -1;
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return -1;
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	return timegm(&tm);
}

static bool auth_saml_domain_ok(const struct auth_saml *s, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address)
		return false;
	for (size_t i = 0; i < s->ndomains; i++) {
		if (strcasecmp(at + 1, s->domains[i]) == 0)
			return true;
	}
	return false;
}

/* The text of a value node (<AttributeValue>text</AttributeValue>), or NULL. */
static const char *auth_saml_value_text(LassoSaml2AttributeValue *v)
{
	for (GList *n = v->any; n != NULL; n = n->next) {
		if (LASSO_IS_MISC_TEXT_NODE(n->data))
			return LASSO_MISC_TEXT_NODE(n->data)->content;
	}
	return NULL;
}

/* The addresses the assertion carries (before the domain check), into out. */
static size_t auth_saml_addresses(const struct auth_saml *s, LassoSaml2Assertion *as,
				  const char **out)
{
	size_t n = 0;
	if (s->address_attribute == NULL) {
		LassoSaml2NameID *nid = as->Subject != NULL ? as->Subject->NameID : NULL;
		if (nid != NULL && nid->content != NULL && nid->Format != NULL &&
		    strcmp(nid->Format, LASSO_SAML2_NAME_IDENTIFIER_FORMAT_EMAIL) == 0)
			out[n++] = nid->content;
		return n;
	}
	for (GList *st = as->AttributeStatement; st != NULL; st = st->next) {
		if (!LASSO_IS_SAML2_ATTRIBUTE_STATEMENT(st->data))
			continue;
		LassoSaml2AttributeStatement *stmt = st->data;
		for (GList *at = stmt->Attribute; at != NULL; at = at->next) {
			if (!LASSO_IS_SAML2_ATTRIBUTE(at->data))
				continue;
			LassoSaml2Attribute *attr = at->data;
			bool named =
			    (attr->Name != NULL && strcmp(attr->Name, s->address_attribute) == 0) ||
			    (attr->FriendlyName != NULL &&
			     strcmp(attr->FriendlyName, s->address_attribute) == 0);
			if (!named)
				continue;
			for (GList *v = attr->AttributeValue; v != NULL; v = v->next) {
				if (!LASSO_IS_SAML2_ATTRIBUTE_VALUE(v->data))
					continue;
				const char *text = auth_saml_value_text(v->data);
				if (text != NULL && n < AUTH_SAML_ADDRESSES_MAX)
					out[n++] = text;
			}
		}
	}
	return n;
}

/* NULL when the assertion is good for us, else why not. */
static const char *auth_saml_check_assertion(struct auth_saml *s, LassoSaml2Assertion *as,
					     const char *request_id, time_t now)
{
	if (as->Issuer == NULL || as->Issuer->content == NULL ||
	    strcmp(as->Issuer->content, s->idp_id) != 0)
		return "the assertion is not from the identity provider";
	if (as->Conditions == NULL || !lasso_saml2_assertion_has_audience_restriction(as))
		return "the assertion names no audience";
	if (lasso_saml2_assertion_validate_audience(as, s->entity_id) !=
	    LASSO_SAML2_ASSERTION_VALID)
		return "the assertion is meant for another service (audience)";
	if (lasso_saml2_assertion_validate_time_checks(as, AUTH_SAML_SKEW_S, now) !=
	    LASSO_SAML2_ASSERTION_VALID)
		return "the assertion has expired or is not valid yet";
	LassoSaml2SubjectConfirmationData *cd =
	    lasso_saml2_assertion_get_subject_confirmation_data(as, FALSE);
	if (cd == NULL)
		return "the assertion has no subject confirmation";
	time_t until = auth_saml_time(cd->NotOnOrAfter);
	if (until < 0)
		return "the assertion has no expiry (SubjectConfirmationData NotOnOrAfter)";
	if (now >= until + AUTH_SAML_SKEW_S)
		return "the assertion has expired (subject confirmation)";
	if (cd->NotBefore != NULL) {
		time_t from = auth_saml_time(cd->NotBefore);
		if (from < 0 || now + AUTH_SAML_SKEW_S < from)
			return "the assertion's subject confirmation is not valid yet";
	}
	if (cd->Recipient == NULL || strcmp(cd->Recipient, s->acs_url) != 0)
		return "the assertion is meant for another recipient";
	if (cd->InResponseTo != NULL && strcmp(cd->InResponseTo, request_id) != 0)
		return "the assertion answers another request";
	return NULL;
}

/* True when the Response in p has one assertion, with an XML signature of its own. */
static bool auth_saml_assertion_signed(LassoProfile *p)
{
	if (!LASSO_IS_SAMLP2_RESPONSE(p->response))
		return false;
	GList *as = LASSO_SAMLP2_RESPONSE(p->response)->Assertion;
	if (as == NULL || as->next != NULL || !LASSO_IS_SAML2_ASSERTION(as->data))
		return false;
	xmlNode *x = lasso_node_get_original_xmlnode(LASSO_NODE(as->data));
	if (x == NULL)
		return false;
	for (xmlNode *c = x->children; c != NULL; c = c->next) {
		if (c->type == XML_ELEMENT_NODE && c->ns != NULL &&
		    xmlStrcmp(c->name, (const xmlChar *)"Signature") == 0 &&
		    xmlStrcmp(c->ns->href, (const xmlChar *)LASSO_DS_HREF) == 0)
			return true;
	}
	return false;
}

/*
 * Checks the Response in body; NULL when it vouches for someone, with the
 * addresses in addrs[0..*naddrs) (pointing into login), else why not.
 */
static const char *auth_saml_check(struct auth_saml *s, struct http_server_request *req,
				   LassoLogin *login, const char **addrs, size_t *naddrs)
{
	const char *data;
	size_t len;
	http_server_request_body(req, &data, &len);
	char *body = xstrndup(data, len);
	struct http_server_query *form = NULL;
	int rc = http_server_query_parse(body, &form);
	free(body);
	if (rc < 0)
		return "the form is malformed";
	const char *msg = http_server_query_get(form, "SAMLResponse");
	const char *why = NULL;
	if (msg == NULL || http_server_query_count(form, "SAMLResponse") != 1) {
		why = "no SAMLResponse in the form";
		goto out;
	}
	rc = lasso_login_process_authn_response_msg(login, (char *)(uintptr_t)msg);
	LassoProfile *p = LASSO_PROFILE(login);
	/*
	 * The Response's own signature is in signature_status (a missing one is
	 * SIGNATURE_NOT_FOUND). An unsigned Response whose one assertion is signed
	 * will do: lasso has checked the assertion's signature against the
	 * provider's key (a bad one fails the call with VERIFICATION_FAILED).
	 */
	if (rc == 0 && p->signature_status != 0)
		rc = p->signature_status;
	if (rc == LASSO_DS_ERROR_SIGNATURE_NOT_FOUND && auth_saml_assertion_signed(p))
		rc = 0;
	if (rc == LASSO_DS_ERROR_SIGNATURE_NOT_FOUND) {
		why = "the response is not signed";
		goto out;
	}
	if (rc == LASSO_DS_ERROR_SIGNATURE_VERIFICATION_FAILED ||
	    rc == LASSO_DS_ERROR_INVALID_SIGNATURE) {
		why = "the response's signature does not verify with the identity provider's key";
		goto out;
	}
	if (rc != 0) {
		log_warn("saml.response_error", "error=\"%s\" code=%d", lasso_strerror(rc), rc);
		why = rc == LASSO_PROFILE_ERROR_STATUS_NOT_SUCCESS
			  ? "the identity provider did not sign you in"
			  : "the response is not valid";
		goto out;
	}
	if (!LASSO_IS_SAMLP2_RESPONSE(p->response)) {
		why = "the response is not valid";
		goto out;
	}
	LassoSamlp2StatusResponse *r = LASSO_SAMLP2_STATUS_RESPONSE(p->response);
	if (p->remote_providerID == NULL || strcmp(p->remote_providerID, s->idp_id) != 0) {
		why = "the response is not from the identity provider";
		goto out;
	}
	if (r->Destination == NULL || strcmp(r->Destination, s->acs_url) != 0) {
		why = "the response is meant for another destination";
		goto out;
	}
	const char *request_id = r->InResponseTo;
	char browser[AUTH_TOKEN_TEXT_LEN + 1];
	if (!auth_saml_pending_take(s, request_id, clock_now_ms(), browser)) {
		why = "the response answers no sign-in started here (unsolicited, replayed or "
		      "too late)";
		goto out;
	}
	char *cookie = auth_cookie_get(http_server_request_header(req, "Cookie"), AUTH_SAML_COOKIE);
	bool same = cookie != NULL && auth_token_equal(cookie, browser);
	bool refuse = cookie != NULL ? !same : s->secure_cookies;
	free(cookie);
	if (refuse) {
		why = "the sign-in was started in another browser";
		goto out;
	}
	GList *assertions = LASSO_SAMLP2_RESPONSE(r)->Assertion;
	if (assertions == NULL || assertions->next != NULL ||
	    !LASSO_IS_SAML2_ASSERTION(assertions->data)) {
		why = "the response does not carry exactly one assertion";
		goto out;
	}
	LassoSaml2Assertion *as = assertions->data;
	why = auth_saml_check_assertion(s, as, request_id, time(NULL));
	if (why != NULL)
		goto out;
	const char *all[AUTH_SAML_ADDRESSES_MAX];
	size_t n = auth_saml_addresses(s, as, all), kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (auth_saml_domain_ok(s, all[i])) {
			addrs[kept++] = all[i];
		} else {
			char q[300];
			log_info("saml.address_dropped", "address=%s",
				 log_quote(q, sizeof(q), all[i]));
		}
	}
	*naddrs = kept;
	if (n == 0)
		why = "the assertion carries no mail address";
	else if (kept == 0)
		why = "your mail address is not in a domain served here";
out:
	http_server_query_free(form);
	return why;
}

static void auth_saml_acs(struct http_server_request *req, void *arg)
{
	struct auth_saml *s = arg;
	LassoLogin *login = lasso_login_new(s->server);
	const char *addrs[AUTH_SAML_ADDRESSES_MAX];
	size_t n = 0;
	const char *why = auth_saml_check(s, req, login, addrs, &n);
	if (why != NULL) {
		auth_saml_refuse(req, why);
		g_object_unref(login);
		return;
	}
	int rc = api_users_session_open(s->api, req, addrs[0], "enduser", addrs, n, "saml");
	if (rc == -EINVAL) {
		auth_saml_refuse(req, "the assertion carries a malformed mail address");
	} else if (rc < 0) {
		log_error("saml.session_failed", "error=%s", strerror(-rc));
		http_server_reply_error(req, 503, "login is not possible right now");
	} else {
		http_server_add_header(req, "Location", "/");
		http_server_add_header(req, "Cache-Control", "no-store");
		http_server_reply_bytes(req, 302, "text/plain", "", 0);
	}
	g_object_unref(login);
}

/* The PEM body of a certificate, without its armour and line breaks. */
static char *auth_saml_cert_base64(const char *pem)
{
	const char *begin = strstr(pem, "-----BEGIN CERTIFICATE-----");
	const char *end = begin != NULL ? strstr(begin, "-----END CERTIFICATE-----") : NULL;
	if (end == NULL)
		return NULL;
	begin += strlen("-----BEGIN CERTIFICATE-----");
	struct strbuf b = {0};
	for (const char *p = begin; p < end; p++) {
		if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
			strbuf_addc(&b, *p);
	}
	return strbuf_take(&b);
}

static char *auth_saml_xml_attr(const char *s)
{
	struct strbuf b = {0};
	auth_saml_html_escaped(&b, s);
	return strbuf_take(&b);
}

static char *auth_saml_sp_metadata(const char *entity_id, const char *acs_url, const char *cert64)
{
	char *eid = auth_saml_xml_attr(entity_id), *acs = auth_saml_xml_attr(acs_url);
	char *md = xasprintf(
	    "<?xml version=\"1.0\"?>\n"
	    "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" "
	    "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"%s\">\n"
	    " <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\" "
	    "protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n"
	    "  <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>"
	    "%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n"
	    "  <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
	    "</md:NameIDFormat>\n"
	    "  <md:AssertionConsumerService "
	    "Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"%s\" "
	    "index=\"0\" isDefault=\"true\"/>\n"
	    " </md:SPSSODescriptor>\n"
	    "</md:EntityDescriptor>\n",
	    eid, cert64, acs);
	free(eid);
	free(acs);
	return md;
}

static char **auth_saml_words(const char *text, size_t *n)
{
	char **out = NULL;
	*n = 0;
	if (text == NULL)
		return NULL;
	const char *p = text;
	while (*p != '\0') {
		p += strspn(p, ", \t");
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		out = xrealloc(out, (*n + 1) * sizeof(*out));
		out[(*n)++] = xstrndup(p, len);
		p += len;
	}
	return out;
}

struct auth_saml *auth_saml_attach(struct api *a, const struct auth_saml_config *cfg, char **err)
{
	*err = NULL;
	if (!auth_saml_lasso_ready) {
		if (lasso_init() != 0) {
			*err = xstrdup("cannot initialise liblasso");
			return NULL;
		}
		auth_saml_lasso_ready = true;
		g_log_set_handler("Lasso",
				  G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
				  auth_saml_lasso_log, NULL);
	}
	struct auth_saml *s = xcalloc(1, sizeof(*s));
	s->api = a;
	s->pending = xcalloc(AUTH_SAML_PENDING_MAX, sizeof(s->pending[0]));
	s->secure_cookies = cfg->secure_cookies;
	char *key = NULL, *cert = NULL, *cert64 = NULL;
	size_t len;
	int rc;
	s->domains = auth_saml_words(cfg->allowed_domains, &s->ndomains);
	if (s->ndomains == 0) {
		*err = xstrdup("[auth_saml] allowed_domains is required");
		goto fail;
	}
	if (cfg->base_url == NULL || cfg->idp_metadata == NULL || cfg->sp_key_file == NULL ||
	    cfg->sp_cert_file == NULL) {
		*err = xstrdup(
		    "[auth_saml] needs base_url, idp_metadata, sp_key_file and sp_cert_file");
		goto fail;
	}
	size_t bl = strlen(cfg->base_url);
	while (bl > 0 && cfg->base_url[bl - 1] == '/')
		bl--;
	if (strncmp(cfg->base_url, "https://", 8) != 0 &&
	    strncmp(cfg->base_url, "http://", 7) != 0) {
		*err = xstrdup("[auth_saml] base_url must be an http:// or https:// URL");
		goto fail;
	}
	s->acs_url = xasprintf("%.*s/auth/saml/acs", (int)bl, cfg->base_url);
	s->entity_id = cfg->entity_id != NULL
			   ? xstrdup(cfg->entity_id)
			   : xasprintf("%.*s/auth/saml/metadata", (int)bl, cfg->base_url);
	/* "NameID" (or nothing): the subject's NameID, in the emailAddress format. */
	s->address_attribute = cfg->address_attribute != NULL &&
				       cfg->address_attribute[0] != '\0' &&
				       strcasecmp(cfg->address_attribute, "NameID") != 0
				   ? xstrdup(cfg->address_attribute)
				   : NULL;
	if ((rc = read_file(cfg->sp_key_file, AUTH_SAML_FILE_MAX, &key, &len)) < 0) {
		*err = xasprintf("cannot read [auth_saml] sp_key_file %s: %s", cfg->sp_key_file,
				 strerror(-rc));
		goto fail;
	}
	if ((rc = read_file(cfg->sp_cert_file, AUTH_SAML_FILE_MAX, &cert, &len)) < 0) {
		*err = xasprintf("cannot read [auth_saml] sp_cert_file %s: %s", cfg->sp_cert_file,
				 strerror(-rc));
		goto fail;
	}
	if ((cert64 = auth_saml_cert_base64(cert)) == NULL) {
		*err = xasprintf("[auth_saml] sp_cert_file %s holds no PEM certificate",
				 cfg->sp_cert_file);
		goto fail;
	}
	s->metadata = auth_saml_sp_metadata(s->entity_id, s->acs_url, cert64);
	s->server =
	    lasso_server_new_from_buffers(s->metadata, cfg->sp_key_file, NULL, cfg->sp_cert_file);
	if (s->server == NULL) {
		*err = xasprintf("[auth_saml] sp_key_file %s or sp_cert_file %s cannot be used",
				 cfg->sp_key_file, cfg->sp_cert_file);
		goto fail;
	}
	s->server->signature_method = LASSO_SIGNATURE_METHOD_RSA_SHA256;
	LassoProvider *idp =
	    lasso_provider_new(LASSO_PROVIDER_ROLE_IDP, cfg->idp_metadata, NULL, NULL);
	if (idp == NULL || idp->ProviderID == NULL) {
		if (idp != NULL)
			g_object_unref(idp);
		*err = xasprintf("[auth_saml] idp_metadata %s is not SAML 2.0 metadata of an "
				 "identity provider",
				 cfg->idp_metadata);
		goto fail;
	}
	s->idp_id = xstrdup(idp->ProviderID);
	if ((rc = lasso_server_add_provider2(s->server, idp)) != 0) {
		g_object_unref(idp);
		*err = xasprintf("[auth_saml] idp_metadata %s: %s", cfg->idp_metadata,
				 lasso_strerror(rc));
		goto fail;
	}
	g_object_unref(idp);
	explicit_bzero(key, strlen(key));
	free(key);
	free(cert);
	free(cert64);
	struct http_server *h = api_http(a);
	http_server_route(h, "GET", "/auth/saml/metadata", HTTP_SERVER_ROUTE_PUBLIC,
			  auth_saml_metadata, s);
	http_server_route(h, "GET", "/auth/saml/login", HTTP_SERVER_ROUTE_PUBLIC, auth_saml_login,
			  s);
	http_server_route(h, "POST", "/auth/saml/acs", HTTP_SERVER_ROUTE_PUBLIC, auth_saml_acs, s);
	log_info("saml.ready", "idp=\"%s\" entity_id=\"%s\"", s->idp_id, s->entity_id);
	return s;

fail:
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(cert);
	free(cert64);
	auth_saml_free(s);
	return NULL;
}

void auth_saml_free(struct auth_saml *s)
{
	if (s == NULL)
		return;
	if (s->server != NULL)
		g_object_unref(s->server);
	for (size_t i = 0; i < s->npending; i++)
		free(s->pending[i].id);
	free(s->pending);
	for (size_t i = 0; i < s->ndomains; i++)
		free(s->domains[i]);
	free(s->domains);
	free(s->idp_id);
	free(s->entity_id);
	free(s->acs_url);
	free(s->metadata);
	free(s->address_attribute);
	free(s);
}
