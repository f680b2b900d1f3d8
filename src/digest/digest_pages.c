/*
 * digest_pages — what the links of a digest mail reach, and "send my digest now".
 *
 *   GET  /d/{token}   a confirmation page (mail scanners fetch links, so GET
 *                     never changes anything)
 *   POST /d/{token}   does it: release the message to the recipient (single use:
 *                     the token's nonce is recorded) or safelist its sender
 *   GET  /d/page.css  the pages' style sheet
 *
 * The token is the credential: no login, no cookie, no CSRF token. Answers: 200
 * (a question or done), 403 invalid, 410 expired, used or gone, 422 unusable, 503
 * (no service, a store failure).
 *
 * Pages. The HTML is in web/digest/ (page.html, details.html, form.html) and the
 * style sheet beside it (page.css), read once at start by digest_pages_load. A
 * template names its placeholders: {{name}} is replaced by text HTML-escaped (&,
 * <, >, ", ' as references), {{{name}}} by HTML this module made from the other
 * templates, {{! ...}} is a comment (with the line end after it). Which names a
 * template may use, and how, is fixed here (digest_page_templates): a template
 * that would put text unescaped into a page, or names something the page does
 * not fill, stops the daemon at start.
 *
 * Not for: the tokens (digest_token), the texts and the mail (digest_mail), who
 * gets a digest and when (digest/notify).
 */
#include "digest/digest_pages.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "digest/digest_mail.h"
#include "quarantine/release.h"
#include "store/store.h"

/* --- templates ------------------------------------------------------------ */

enum digest_page_file {
	DIGEST_PAGE_HTML,    /* the page */
	DIGEST_PAGE_DETAILS, /* the message summary of a confirmation page */
	DIGEST_PAGE_FORM,    /* the confirmation button */
	DIGEST_PAGE_CSS,     /* the style sheet (no placeholders) */
	DIGEST_PAGE_NFILES
};

/* A placeholder name and whether its value is HTML we made ({{{name}}}). */
struct digest_page_slot {
	const char *name;
	bool html;
};

static const struct {
	const char *file;
	struct digest_page_slot slots[8]; /* at most 7, then a NULL name */
} digest_page_templates[DIGEST_PAGE_NFILES] = {
    [DIGEST_PAGE_HTML] = {"page.html",
			  {{"lang", false},
			   {"kind", false},
			   {"title", false},
			   {"message", false},
			   {"details", true},
			   {"form", true}}},
    [DIGEST_PAGE_DETAILS] = {"details.html",
			     {{"sender_label", false},
			      {"sender", false},
			      {"subject_label", false},
			      {"subject", false}}},
    [DIGEST_PAGE_FORM] = {"form.html", {{"button", false}}},
    [DIGEST_PAGE_CSS] = {"page.css", {{NULL, false}}},
};

/* What digest_pages_load read; written once at start. */
static char *digest_page_files[DIGEST_PAGE_NFILES];
static size_t digest_page_css_len;

/*
 * Fills template tmpl of file: values[i] for the i-th slot of its table (NULL:
 * nothing), escaped unless the slot is HTML. Into out when not NULL. NULL, or a
 * new message saying what in the template is wrong (checked at load).
 */
static char *digest_page_fill(enum digest_page_file file, const char *tmpl,
			      const char *const *values, struct strbuf *out)
{
	const struct digest_page_slot *slots = digest_page_templates[file].slots;
	const char *p = tmpl;
	for (;;) {
		const char *open = strstr(p, "{{");
		if (out != NULL)
			strbuf_add(out, p, open != NULL ? (size_t)(open - p) : strlen(p));
		if (open == NULL)
			return NULL;
		if (open[2] == '!') {
			const char *end = strstr(open, "}}");
			if (end == NULL)
				return xstrdup("a comment {{! is not closed");
			p = end + 2 + (end[2] == '\n');
			continue;
		}
		bool html = open[2] == '{';
		const char *name = open + (html ? 3 : 2);
		const char *end = strstr(name, html ? "}}}" : "}}");
		if (end == NULL)
			return xasprintf("a placeholder %s is not closed", html ? "{{{" : "{{");
		size_t len = (size_t)(end - name);
		size_t i = 0;
		while (slots[i].name != NULL &&
		       (strlen(slots[i].name) != len || strncmp(slots[i].name, name, len) != 0))
			i++;
		if (slots[i].name == NULL)
			return xasprintf("unknown placeholder \"%.*s\"", (int)(len > 40 ? 40 : len),
					 name);
		if (slots[i].html != html)
			return xasprintf(html ? "\"%s\" is text: write {{%s}} so that it is escaped"
					      : "\"%s\" is HTML: write {{{%s}}}",
					 slots[i].name, slots[i].name);
		if (out != NULL && values[i] != NULL) {
			if (html) {
				strbuf_puts(out, values[i]);
			} else {
				char *e = digest_html_escape(values[i]);
				strbuf_puts(out, e);
				free(e);
			}
		}
		p = end + (html ? 3 : 2);
	}
}

/* file filled with values; a new string. The template was checked at load. */
static char *digest_page_make(enum digest_page_file file, const char *const *values)
{
	struct strbuf b = STRBUF_INIT;
	char *err = digest_page_fill(file, digest_page_files[file], values, &b);
	if (err != NULL)
		panic("digest_pages: %s: %s", digest_page_templates[file].file, err);
	return strbuf_take(&b);
}

int digest_pages_load(const char *dir, char **err)
{
	char *files[DIGEST_PAGE_NFILES] = {NULL};
	size_t css_len = 0;
	int rc = 0;
	*err = NULL;
	for (size_t f = 0; f < DIGEST_PAGE_NFILES && rc == 0; f++) {
		char *path = xasprintf("%s/%s", dir, digest_page_templates[f].file);
		size_t len = 0;
		rc = read_file(path, DIGEST_PAGE_FILE_MAX, &files[f], &len);
		if (rc < 0) {
			*err = xasprintf("cannot read the digest page %s: %s", path, strerror(-rc));
		} else if (strlen(files[f]) != len) {
			*err = xasprintf("digest page %s: contains a NUL byte", path);
			rc = -EINVAL;
		} else if (f == DIGEST_PAGE_CSS) {
			css_len = len;
		} else {
			char *why = digest_page_fill(f, files[f], NULL, NULL);
			if (why != NULL) {
				*err = xasprintf("digest page %s: %s", path, why);
				free(why);
				rc = -EINVAL;
			}
		}
		free(path);
	}
	if (rc < 0) {
		for (size_t f = 0; f < DIGEST_PAGE_NFILES; f++)
			free(files[f]);
		return rc;
	}
	digest_pages_unload();
	memcpy(digest_page_files, files, sizeof(files));
	digest_page_css_len = css_len;
	return 0;
}

void digest_pages_unload(void)
{
	for (size_t f = 0; f < DIGEST_PAGE_NFILES; f++) {
		free(digest_page_files[f]);
		digest_page_files[f] = NULL;
	}
	digest_page_css_len = 0;
}

/* --- the service and its endpoints ------------------------------------------ */

static struct digest_service digest_installed;
static bool digest_have_service;

void digest_service_install(const struct digest_service *svc)
{
	if (svc == NULL) {
		sodium_memzero(&digest_installed, sizeof(digest_installed));
		digest_have_service = false;
		return;
	}
	digest_installed = *svc;
	digest_have_service = true;
}

static void digest_page_style(struct http_server_request *req, void *arg)
{
	(void)arg;
	http_server_add_header(req, "Cache-Control", "public, max-age=86400");
	http_server_reply_bytes(req, 200, "text/css; charset=utf-8",
				digest_page_files[DIGEST_PAGE_CSS], digest_page_css_len);
}

/*
 * A small page of our own: no scripts (CSP default-src 'self'). The body's class says
 * what kind of answer it is: a question (button), done (200), or an error.
 */
static void digest_page(struct http_server_request *req, int status, enum digest_lang lang,
			const char *message, const char *detail_html, const char *button)
{
	const struct digest_texts *tx = digest_texts(lang);
	const char *kind = status >= 400 ? "error" : button != NULL ? "confirm" : "done";
	char *form = NULL;
	if (button != NULL) {
		const char *fv[] = {button};
		form = digest_page_make(DIGEST_PAGE_FORM, fv);
	}
	const char *pv[] = {
	    digest_lang_name(lang), kind, tx->page_title, message, detail_html, form};
	char *page = digest_page_make(DIGEST_PAGE_HTML, pv);
	/* The token is in the URL: do not hand it to other sites or frames. */
	http_server_add_header(req, "Referrer-Policy", "no-referrer");
	http_server_add_header(req, "X-Frame-Options", "DENY");
	http_server_reply_bytes(req, status, "text/html; charset=utf-8", page, strlen(page));
	free(page);
	free(form);
}

/* The message summary shown on the confirmation page. */
static char *digest_message_details(const struct store_message *m, enum digest_lang lang)
{
	const struct digest_texts *tx = digest_texts(lang);
	const char *sender = m->from != NULL && *m->from != '\0'       ? m->from
			     : m->sender != NULL && *m->sender != '\0' ? m->sender
								       : "<>";
	const char *values[] = {tx->sender, sender, tx->subject,
				m->subject != NULL && *m->subject != '\0' ? m->subject
									  : tx->no_subject};
	return digest_page_make(DIGEST_PAGE_DETAILS, values);
}

/* The address a safelist entry is made of: the envelope sender, else From:. */
static const char *digest_safelist_sender(const struct store_message *m)
{
	if (m->sender != NULL && strchr(m->sender, '@') != NULL)
		return m->sender;
	if (m->from_addr != NULL && strchr(m->from_addr, '@') != NULL)
		return m->from_addr;
	return NULL;
}

static bool digest_list_has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(v[i], s) == 0)
			return true;
	}
	return false;
}

/*
 * Adds sender to rcpt's safelist (and takes it off the blocklist). 0 added, 1 already
 * there, or a negative errno from the store (-E2BIG: the list is full).
 */
static int digest_safelist_add(struct api *a, const char *rcpt, const char *sender)
{
	struct store *st = api_store(a);
	struct store_slbl *cur = NULL;
	int rc = store_slbl_get(st, rcpt, &cur);
	if (rc < 0)
		return rc;
	if (digest_list_has(cur->safelist, cur->nsafelist, sender)) {
		store_slbl_free(cur);
		return 1;
	}
	char *added = xstrdup(sender); /* the lists hold char *: a copy of the const sender */
	struct store_slbl next = {.recipient = cur->recipient};
	next.safelist = xcalloc(cur->nsafelist + 1, sizeof(char *));
	next.blocklist = xcalloc(cur->nblocklist + 1, sizeof(char *));
	for (size_t i = 0; i < cur->nsafelist; i++)
		next.safelist[next.nsafelist++] = cur->safelist[i];
	next.safelist[next.nsafelist++] = added;
	for (size_t i = 0; i < cur->nblocklist; i++) {
		if (strcasecmp(cur->blocklist[i], sender) != 0)
			next.blocklist[next.nblocklist++] = cur->blocklist[i];
	}
	unsigned max = api_current_config(a)->slbl_max_entries;
	rc = store_slbl_put(st, &next, max != 0 ? max : 100, NULL);
	free(next.safelist);
	free(next.blocklist);
	free(added);
	store_slbl_free(cur);
	return rc;
}

static const struct store_recipient *digest_find_rcpt(const struct store_message *m,
						      const char *rcpt)
{
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (strcasecmp(m->recipients[i].address, rcpt) == 0)
			return &m->recipients[i];
	}
	return NULL;
}

/* GET shows, POST does. */
static void digest_link(struct http_server_request *req, struct api *a, bool act)
{
	struct digest_token t;
	struct store_message *m = NULL;
	char q[128];
	int64_t now = clock_now_ms();
	const char *text = http_server_request_param(req, "token");
	if (!digest_have_service) {
		digest_page(req, 503, DIGEST_LANG_JA, digest_texts(DIGEST_LANG_JA)->unavailable,
			    NULL, NULL);
		return;
	}
	int rc = digest_token_verify(digest_installed.key, text, now, &t);
	if (rc == -EBADMSG) {
		log_warn("digest.link_invalid", "peer=%s", http_server_request_peer(req));
		/* Whose language is unknown: say it in both. */
		char *both = xasprintf("%s / %s", digest_texts(DIGEST_LANG_JA)->invalid,
				       digest_texts(DIGEST_LANG_EN)->invalid);
		digest_page(req, 403, DIGEST_LANG_JA, both, NULL, NULL);
		free(both);
		return;
	}
	const struct digest_texts *tx = digest_texts(t.lang);
	if (rc == -ETIME) {
		digest_page(req, 410, t.lang, tx->expired, NULL, NULL);
		return;
	}
	struct store *st = api_store(a);
	if (t.action == DIGEST_ACTION_RELEASE) {
		bool used = false;
		if (store_digest_token_used(st, t.nonce, &used) < 0) {
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
			return;
		}
		if (used) {
			digest_page(req, 410, t.lang, tx->used, NULL, NULL);
			return;
		}
	}
	rc = store_get(st, t.msg_id, &m);
	if (rc == -ENOENT) {
		digest_page(req, 410, t.lang, tx->gone, NULL, NULL);
		return;
	}
	if (rc < 0) {
		digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
		return;
	}
	const struct store_recipient *r = digest_find_rcpt(m, t.rcpt);
	if (r == NULL) {
		/* Signed by us yet not a recipient: a broken invariant or another store. */
		digest_page(req, 403, t.lang, tx->invalid, NULL, NULL);
		goto done;
	}
	if (t.action == DIGEST_ACTION_RELEASE && r->state != STORE_RCPT_QUARANTINED) {
		digest_page(req, 410, t.lang,
			    r->state == STORE_RCPT_RELEASED || r->state == STORE_RCPT_RELEASING
				? tx->used
				: tx->gone,
			    NULL, NULL);
		goto done;
	}
	const char *sender = digest_safelist_sender(m);
	if (t.action == DIGEST_ACTION_SAFELIST && sender == NULL) {
		digest_page(req, 422, t.lang, tx->unusable_sender, NULL, NULL);
		goto done;
	}
	if (!act) {
		char *details = digest_message_details(m, t.lang);
		bool rel = t.action == DIGEST_ACTION_RELEASE;
		digest_page(req, 200, t.lang, rel ? tx->confirm_release : tx->confirm_safelist,
			    details, rel ? tx->button_release : tx->button_safelist);
		free(details);
		goto done;
	}
	if (t.action == DIGEST_ACTION_RELEASE) {
		int changed = 0;
		const char *rcpts[] = {r->address};
		rc = store_release(st, m->id, rcpts, 1, now, &changed);
		if (rc < 0) {
			log_error("digest.release_failed", "id=%s rc=%d", m->id, rc);
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
			goto done;
		}
		/* After the release: a crash between the two cannot lose the release. */
		int used = store_digest_token_use(st, t.nonce, now, t.expires_ms);
		if (used < 0 && used != -EEXIST)
			log_warn("digest.token_record_failed", "id=%s rc=%d", m->id, used);
		if (changed == 0) {
			digest_page(req, 410, t.lang, tx->used, NULL, NULL);
			goto done;
		}
		if (api_release(a) != NULL)
			release_kick(api_release(a));
		log_info("digest.released", "id=%s rcpt=%s peer=%s", m->id,
			 log_quote(q, sizeof(q), r->address), http_server_request_peer(req));
		digest_page(req, 200, t.lang, tx->done_release, NULL, NULL);
		goto done;
	}
	rc = digest_safelist_add(a, r->address, sender);
	if (rc < 0) {
		log_warn("digest.safelist_failed", "rcpt=%s rc=%d",
			 log_quote(q, sizeof(q), r->address), rc);
		if (rc == -E2BIG)
			digest_page(req, 422, t.lang, tx->full, NULL, NULL);
		else if (rc == -EINVAL)
			digest_page(req, 422, t.lang, tx->unusable_sender, NULL, NULL);
		else
			digest_page(req, 503, t.lang, tx->failed, NULL, NULL);
		goto done;
	}
	log_info("digest.safelisted", "rcpt=%s sender=%s peer=%s",
		 log_quote(q, sizeof(q), r->address), sender, http_server_request_peer(req));
	digest_page(req, 200, t.lang, rc == 1 ? tx->already_safelisted : tx->done_safelist, NULL,
		    NULL);

done:
	store_message_free(m);
}

static void digest_link_get(struct http_server_request *req, void *arg)
{
	digest_link(req, arg, false);
}

static void digest_link_post(struct http_server_request *req, void *arg)
{
	digest_link(req, arg, true);
}

static bool digest_address_arg_ok(const char *s)
{
	return s != NULL && strchr(s, '@') != NULL && digest_token_address_ok(s, strlen(s));
}

static void digest_send_reply(struct http_server_request *req, int rc, const char *who)
{
	if (rc == -EAGAIN) {
		http_server_add_header(req, "Retry-After", "60");
		http_server_reply_error(req, 429, "a digest for %s is being prepared already", who);
		return;
	}
	if (rc < 0) {
		http_server_reply_error(req, 503, "digests cannot be sent now");
		return;
	}
	http_server_reply_json(req, 202, json_pack("{s:b}", "queued", 1));
}

/* POST /api/v1/me/digest: the logged-in end user's own digest, now. */
static void digest_me_send(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return;
	if (!digest_have_service || digest_installed.send_now == NULL) {
		http_server_reply_error(req, 503, "digests are not enabled");
		return;
	}
	const struct api_actor *who = api_actor(a, req);
	int rc;
	if (who->session && who->naddresses > 0) {
		rc = digest_installed.send_now(digest_installed.arg, who->username, who->addresses,
					       who->naddresses, NULL);
		digest_send_reply(req, rc, who->username);
		return;
	}
	/* The admin token acts for the end user owning ?address=. */
	const char *address = http_server_request_query(req, "address");
	if (who->role < API_ROLE_ADMIN || address == NULL) {
		http_server_reply_error(req, 422, "%s",
					who->role < API_ROLE_ADMIN
					    ? "no addresses belong to this account"
					    : "give ?address= for whom to send the digest");
		return;
	}
	if (!digest_address_arg_ok(address)) {
		http_server_reply_error(req, 422, "\"address\" must be an e-mail address");
		return;
	}
	rc = digest_installed.send_now(digest_installed.arg, NULL, NULL, 0, address);
	digest_send_reply(req, rc, address);
}

/* POST /api/v1/digests/send {"address": "..."} (admin). */
static void digest_admin_send(struct http_server_request *req, void *arg)
{
	static const char *const allowed[] = {"address", NULL};
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char *address = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (!digest_have_service || digest_installed.send_now == NULL) {
		http_server_reply_error(req, 503, "digests are not enabled");
		return;
	}
	int rc = http_server_request_json_object(req, api_current_config(a)->max_body, &body);
	if (rc < 0)
		goto done;
	if (http_json_check_keys(body, allowed, &err) < 0 ||
	    http_json_get_string(body, "address", &address, &err) < 0 ||
	    !digest_address_arg_ok(address)) {
		http_server_reply_error(req, 422, "%s",
					err != NULL ? err
						    : "the body must be {\"address\": "
						      "\"user@example.jp\"}");
		goto done;
	}
	rc = digest_installed.send_now(digest_installed.arg, NULL, NULL, 0, address);
	digest_send_reply(req, rc, address);

done:
	free(err);
	json_decref(body);
}

void digest_pages_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    /* Before "/d/{token}": the first matching route answers. */
	    {"GET", "/d/page.css", HTTP_SERVER_ROUTE_PUBLIC, digest_page_style},
	    /* The token is the credential: no login, no cookie, no CSRF token. */
	    {"GET", "/d/{token}", HTTP_SERVER_ROUTE_PUBLIC, digest_link_get},
	    {"POST", "/d/{token}", HTTP_SERVER_ROUTE_PUBLIC, digest_link_post},
	    /* The API's own guard: Bearer token or session, CSRF for sessions. */
	    {"POST", "/api/v1/me/digest", HTTP_SERVER_ROUTE_AUTH, digest_me_send},
	    {"POST", "/api/v1/digests/send", HTTP_SERVER_ROUTE_AUTH, digest_admin_send},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
