/*
 * api_slbl — safelists and blocklists over HTTP (docs/openapi.yaml,
 * tag slbl): admins read and replace one recipient's lists, gateways pull the
 * change feed (GET /api/v1/slbl?since=VERSION; with their own token, the one
 * route besides the hello that a gateway's token opens), and whole sets move in and out as
 * CSV (RFC 4180: rows "recipient,list,sender", a header row of those names).
 *
 * The per-user limit is api_config.slbl_max_entries per list, counted after
 * normalization and deduplication. Entries are checked here first so that a 422
 * can name the bad one; the store checks again.
 *
 * Import replaces the lists of every recipient that has at least one row in the
 * file; recipients absent from the file are untouched. The whole file is checked
 * before anything is written, so a bad row (422 with its line number) changes
 * nothing; then each recipient is one committed store transaction.
 *
 * Change feed paging: at most `limit` recipients per answer. When more remain,
 * "version" is that of the last change in the page and "more" is true, so a
 * client asking again with since=version continues where it stopped.
 *
 * Not for: matching senders (gateway/slbl_cache.c), end-user scoping (the handlers
 * of /api/v1/me/slbl decide whose lists a user may touch and call the exported
 * reply/put functions), storage (store_slbl.c).
 */
#include "api/api_slbl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_gateways.h"
#include "api/api_read.h"
#include "store/store.h"

/* Fields of one CSV row: recipient, list, sender. */
#define API_SLBL_CSV_FIELDS 3

enum { API_SLBL_SAFE = 0, API_SLBL_BLOCK = 1 };
static const char *const api_slbl_list_names[2] = {"safelist", "blocklist"};

/* ---- entries ---- */

/* A growable list of owned strings, deduplicated on add. */
struct api_slbl_strv {
	char **v;
	size_t n;
};

static void api_slbl_strv_clear(struct api_slbl_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Adds e (taking it) unless already there. */
static void api_slbl_strv_add(struct api_slbl_strv *s, char *e)
{
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i], e) == 0) {
			free(e);
			return;
		}
	}
	s->v = xreallocarray(s->v, s->n + 1, sizeof(*s->v));
	s->v[s->n++] = e;
}

static void api_slbl_set(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		panic("api_slbl: cannot build JSON for \"%s\"", key);
}

static json_t *api_slbl_array(char *const *v, size_t n)
{
	json_t *arr = json_array();
	if (arr == NULL)
		panic("api_slbl: out of memory");
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, http_json_string_or_null(v[i]));
	return arr;
}

/* {"recipient", "safelist", "blocklist"} of l. */
static json_t *api_slbl_json(const struct store_slbl *l)
{
	json_t *o = json_object();
	if (o == NULL)
		panic("api_slbl: out of memory");
	api_slbl_set(o, "recipient", http_json_string_or_null(l->recipient));
	api_slbl_set(o, "safelist", api_slbl_array(l->safelist, l->nsafelist));
	api_slbl_set(o, "blocklist", api_slbl_array(l->blocklist, l->nblocklist));
	return o;
}

static int api_slbl_store_error(struct http_server_request *req, const char *what, int rc)
{
	if (store_error_unavailable(rc)) {
		log_warn("api.store_unavailable", "call=%s", what);
		http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		return rc;
	}
	log_error("api.store_error", "call=%s error=%s", what, strerror(-rc));
	http_server_reply_error(req, 500, "the safelist store failed (%s)", strerror(-rc));
	return rc;
}

static unsigned api_slbl_limit(struct api *a)
{
	unsigned max = api_current_config(a)->slbl_max_entries;
	return max != 0 ? max : 100;
}

/* ---- one recipient ---- */

int api_slbl_reply_lists(struct api *a, struct http_server_request *req, const char *recipient)
{
	struct store_slbl *l = NULL;
	int rc = store_slbl_get(api_store(a), recipient, &l);
	if (rc == -EINVAL) {
		http_server_reply_error(req, 400, "the recipient must be an e-mail address");
		return rc;
	}
	if (rc < 0)
		return api_slbl_store_error(req, "store_slbl_get", rc);
	http_server_reply_json(req, 200, api_slbl_json(l));
	store_slbl_free(l);
	return 0;
}

int api_slbl_put_lists(struct api *a, struct http_server_request *req, const char *recipient)
{
	static const char *const keys[] = {"recipient", "safelist", "blocklist", NULL};
	json_t *body = NULL;
	char *err = NULL, *rcpt = NULL;
	const char **raw[2] = {NULL, NULL};
	size_t nraw[2] = {0, 0};
	struct api_slbl_strv lists[2] = {{NULL, 0}, {NULL, 0}};
	unsigned max = api_slbl_limit(a);
	int rc = -EINVAL;

	if (store_slbl_normalize(recipient, true, &rcpt) < 0) {
		http_server_reply_error(req, 400, "the recipient must be an e-mail address");
		goto fail;
	}
	rc = http_server_request_json_object(req, api_current_config(a)->max_body, &body);
	if (rc < 0)
		goto fail;
	rc = -EINVAL;
	if (http_json_check_keys(body, keys, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto fail;
	}
	const char *named = NULL;
	int r = http_json_get_string(body, "recipient", &named, &err);
	if (r == -EINVAL) {
		http_server_reply_error(req, 422, "%s", err);
		goto fail;
	}
	if (named != NULL) {
		char *n = NULL;
		bool same = store_slbl_normalize(named, true, &n) == 0 && strcmp(n, rcpt) == 0;
		free(n);
		if (!same) {
			http_server_reply_error(req, 422,
						"\"recipient\" in the body differs from the path");
			goto fail;
		}
	}
	for (size_t k = 0; k < 2; k++) {
		const char *name = api_slbl_list_names[k];
		r = http_json_get_string_array(body, name, API_SLBL_BODY_MAX_ENTRIES, &raw[k],
					       &nraw[k], &err);
		if (r == -ENOENT) {
			http_server_reply_error(req, 422,
						"\"%s\" is required (an array of strings)", name);
			goto fail;
		}
		if (r < 0) {
			http_server_reply_error(req, 422, "%s (the limit is %u entries per list)",
						err, max);
			goto fail;
		}
		for (size_t i = 0; i < nraw[k]; i++) {
			char *e = NULL;
			if (store_slbl_normalize(raw[k][i], false, &e) < 0) {
				char q[300];
				http_server_reply_error(
				    req, 422,
				    "%s entry %s is not an address (a@x.com) or a domain (x.com, "
				    ".x.com)",
				    name, log_quote(q, sizeof(q), raw[k][i]));
				goto fail;
			}
			api_slbl_strv_add(&lists[k], e);
		}
		if (lists[k].n > max) {
			http_server_reply_error(req, 422,
						"%s has %zu entries; the limit is %u per list",
						name, lists[k].n, max);
			goto fail;
		}
	}
	struct store_slbl l = {
	    .recipient = rcpt,
	    .safelist = lists[0].v,
	    .nsafelist = lists[0].n,
	    .blocklist = lists[1].v,
	    .nblocklist = lists[1].n,
	};
	int64_t version = 0;
	rc = store_slbl_put(api_store(a), &l, max, &version);
	if (rc == -EINVAL || rc == -E2BIG) {
		/* Our checks and the store's disagree: a defect, but the client's answer is
		 * still about its input. */
		log_error("api_slbl.check_mismatch", "recipient=%s error=%s", rcpt, strerror(-rc));
		http_server_reply_error(req, 422, "the lists were refused by the store");
		goto fail;
	}
	if (rc < 0) {
		api_slbl_store_error(req, "store_slbl_put", rc);
		goto fail;
	}
	log_info("api.slbl_put",
		 "recipient=%s safelist=%zu blocklist=%zu version=%lld by=%s peer=%s", rcpt,
		 lists[0].n, lists[1].n, (long long)version, api_actor(a, req)->username,
		 http_server_request_peer(req));
	rc = api_slbl_reply_lists(a, req, rcpt);
fail:
	free(raw[0]);
	free(raw[1]);
	api_slbl_strv_clear(&lists[0]);
	api_slbl_strv_clear(&lists[1]);
	json_decref(body);
	free(err);
	free(rcpt);
	return rc;
}

static void api_slbl_get(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	api_slbl_reply_lists(a, req, http_server_request_param(req, "recipient"));
}

static void api_slbl_put(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	api_slbl_put_lists(a, req, http_server_request_param(req, "recipient"));
}

/* ---- change feed ---- */

/* Strictly decimal digits, lo..hi. */
static int api_slbl_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t v = 0;
	if (s == NULL || *s == '\0' || strlen(s) > 18)
		return -EINVAL;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static void api_slbl_changes(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	/* the feed is the gateways': a gateway's own token opens it, as does an admin */
	struct store_gateway *gw = NULL;
	int auth = api_gateways_authenticate(a, req, &gw);
	if (auth == 0) {
		int rc = store_gateway_touch(api_store(a), gw->name, clock_now_ms(), NULL);
		if (rc < 0 && rc != -ENOENT)
			log_warn("api.gateway_touch_failed", "error=%s", strerror(-rc));
		store_gateway_free(gw);
	} else if (store_error_unavailable(auth)) {
		http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		return;
	} else if (!api_require_role(a, req, API_ROLE_ADMIN)) {
		return;
	}
	static const char *const single[] = {"since", "limit"};
	for (size_t i = 0; i < 2; i++) {
		if (http_server_request_query_count(req, single[i]) > 1) {
			http_server_reply_error(
			    req, 400, "query parameter \"%s\" given more than once", single[i]);
			return;
		}
	}
	int64_t since = 0, limit = API_SLBL_CHANGES_DEFAULT_LIMIT;
	const char *text = http_server_request_query(req, "since");
	if (text != NULL && api_slbl_parse_int(text, 0, INT64_MAX, &since) < 0) {
		http_server_reply_error(req, 400, "\"since\" must be a version number (0 or more)");
		return;
	}
	text = http_server_request_query(req, "limit");
	if (text != NULL && api_slbl_parse_int(text, 1, API_SLBL_CHANGES_MAX_LIMIT, &limit) < 0) {
		http_server_reply_error(req, 400, "\"limit\" must be a number from 1 to %d",
					API_SLBL_CHANGES_MAX_LIMIT);
		return;
	}
	struct store_slbl **v = NULL;
	size_t n = 0;
	int64_t newest = 0;
	int rc = store_slbl_changes(api_store(a), since, (size_t)limit, &v, &n, &newest);
	if (rc < 0) {
		api_slbl_store_error(req, "store_slbl_changes", rc);
		return;
	}
	bool more = n == (size_t)limit && v[n - 1]->version < newest;
	json_t *changes = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(changes, api_slbl_json(v[i]));
	json_t *body = json_object();
	api_slbl_set(body, "version", json_integer(more ? v[n - 1]->version : newest));
	api_slbl_set(body, "changes", changes);
	api_slbl_set(body, "more", json_boolean(more));
	store_slbl_array_free(v, n);
	http_server_reply_json(req, 200, body);
}

/* ---- CSV ---- */

/* One field, quoted (RFC 4180 2.6/2.7) when it holds a comma, quote, line break or blank. */
static void api_slbl_csv_field(struct strbuf *b, const char *s)
{
	if (strpbrk(s, ",\"\r\n \t") == NULL) {
		strbuf_add(b, s, strlen(s));
		return;
	}
	strbuf_add(b, "\"", 1);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"')
			strbuf_add(b, "\"\"", 2);
		else
			strbuf_add(b, p, 1);
	}
	strbuf_add(b, "\"", 1);
}

static void api_slbl_csv_row(struct strbuf *b, const char *rcpt, const char *list,
			     const char *sender)
{
	api_slbl_csv_field(b, rcpt);
	strbuf_add(b, ",", 1);
	api_slbl_csv_field(b, list);
	strbuf_add(b, ",", 1);
	api_slbl_csv_field(b, sender);
	strbuf_add(b, "\r\n", 2);
}

/* What the export's reader thread needs: the store, and who asked (for the log). */
struct api_slbl_export {
	struct store *st;
	char *by, *peer;
};

static void api_slbl_export_free(void *arg)
{
	struct api_slbl_export *x = arg;
	free(x->by);
	free(x->peer);
	free(x);
}

/* Reader thread: every recipient's lists as one CSV document. */
static void api_slbl_export_work(void *arg, struct api_read_reply *out)
{
	struct api_slbl_export *x = arg;
	struct store_slbl **v = NULL;
	size_t n = 0;
	int rc = store_slbl_changes(x->st, 0, 0, &v, &n, NULL);
	if (rc < 0) {
		api_read_reply_store_error(out, "store_slbl_changes", rc);
		return;
	}
	struct strbuf b = STRBUF_INIT;
	size_t rows = 0;
	strbuf_add(&b, "recipient,list,sender\r\n", 23);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < v[i]->nsafelist; j++, rows++)
			api_slbl_csv_row(&b, v[i]->recipient, "safelist", v[i]->safelist[j]);
		for (size_t j = 0; j < v[i]->nblocklist; j++, rows++)
			api_slbl_csv_row(&b, v[i]->recipient, "blocklist", v[i]->blocklist[j]);
	}
	store_slbl_array_free(v, n);
	out->disposition = xstrdup("attachment; filename=\"slbl.csv\"");
	size_t len = b.len;
	api_read_reply_bytes(out, 200, "text/csv; charset=utf-8", (unsigned char *)strbuf_take(&b),
			     len);
	log_info("api.slbl_export", "rows=%zu by=%s peer=%s", rows, x->by, x->peer);
}

/* GET /api/v1/slbl/export.csv: a read of every list, so on a reader thread. */
static void api_slbl_export(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct api_slbl_export *x = xcalloc(1, sizeof(*x));
	x->st = api_store(a);
	const char *by = api_actor(a, req)->username;
	x->by = xstrdup(by != NULL ? by : "-");
	x->peer = xstrdup(http_server_request_peer(req));
	api_read_submit(api_reads(a), req, "slbl_export", api_slbl_export_work, NULL, x,
			api_slbl_export_free);
}

/* One CSV record: its fields and the line it starts on. */
struct api_slbl_record {
	char *fields[API_SLBL_CSV_FIELDS + 1];
	size_t nfields; /* may exceed API_SLBL_CSV_FIELDS: then the row is refused */
	unsigned line;
};

static void api_slbl_record_clear(struct api_slbl_record *r)
{
	for (size_t i = 0; i < r->nfields && i <= API_SLBL_CSV_FIELDS; i++)
		free(r->fields[i]);
	memset(r, 0, sizeof(*r));
}

/*
 * Reads the record at *pos of data[0..len) (RFC 4180; a bare LF ends a line too).
 * 1 with *r filled, 0 at the end of data, -EINVAL with *err (new) for a malformed
 * quoted field. *line counts lines and moves past the record.
 */
static int api_slbl_csv_next(const char *data, size_t len, size_t *pos, unsigned *line,
			     struct api_slbl_record *r, char **err)
{
	size_t i = *pos;
	if (i >= len)
		return 0;
	memset(r, 0, sizeof(*r));
	r->line = *line;
	struct strbuf f = STRBUF_INIT;
	for (;;) {
		strbuf_truncate(&f, 0);
		if (i < len && data[i] == '"') {
			unsigned open_line = *line;
			i++;
			for (;;) {
				if (i >= len) {
					*err = xasprintf("line %u: a quoted field is not closed",
							 open_line);
					goto bad;
				}
				if (data[i] == '"') {
					if (i + 1 < len && data[i + 1] == '"') {
						strbuf_add(&f, "\"", 1);
						i += 2;
						continue;
					}
					i++;
					break;
				}
				if (data[i] == '\n')
					(*line)++;
				strbuf_add(&f, &data[i], 1);
				i++;
			}
			if (i < len && data[i] != ',' && data[i] != '\r' && data[i] != '\n') {
				*err = xasprintf("line %u: text after a closing quote", *line);
				goto bad;
			}
		} else {
			size_t start = i;
			while (i < len && data[i] != ',' && data[i] != '\r' && data[i] != '\n') {
				if (data[i] == '"') {
					*err = xasprintf(
					    "line %u: a quote inside an unquoted field", *line);
					goto bad;
				}
				i++;
			}
			strbuf_add(&f, data + start, i - start);
		}
		if (r->nfields <= API_SLBL_CSV_FIELDS)
			r->fields[r->nfields] = xstrdup(strbuf_str(&f));
		r->nfields++;
		if (i < len && data[i] == ',') {
			i++;
			continue;
		}
		if (i < len && data[i] == '\r')
			i++;
		if (i < len && data[i] == '\n')
			i++;
		(*line)++;
		break;
	}
	strbuf_free(&f);
	*pos = i;
	return 1;
bad:
	strbuf_free(&f);
	api_slbl_record_clear(r);
	return -EINVAL;
}

static bool api_slbl_blank(const char *s)
{
	return s[strspn(s, " \t")] == '\0';
}

/* A checked row of an import. */
struct api_slbl_row {
	char *recipient;
	int list;
	char *sender;
	unsigned line;
	size_t seq; /* keeps file order among equal recipients when sorting */
};

static int api_slbl_row_cmp(const void *x, const void *y)
{
	const struct api_slbl_row *a = x, *b = y;
	int c = strcmp(a->recipient, b->recipient);
	if (c != 0)
		return c;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Checks one record as a row; 0 or -EINVAL with *err (new). */
static int api_slbl_check_row(const struct api_slbl_record *r, struct api_slbl_row *out, char **err)
{
	char q[300];
	if (r->nfields != API_SLBL_CSV_FIELDS) {
		*err = xasprintf("line %u: expected 3 fields (recipient,list,sender), found %zu",
				 r->line, r->nfields);
		return -EINVAL;
	}
	char *list = r->fields[1];
	list += strspn(list, " \t");
	size_t ll = strcspn(list, " \t");
	if (!api_slbl_blank(list + ll))
		ll = 0;
	if (ll == 8 && strncasecmp(list, "safelist", 8) == 0) {
		out->list = API_SLBL_SAFE;
	} else if (ll == 9 && strncasecmp(list, "blocklist", 9) == 0) {
		out->list = API_SLBL_BLOCK;
	} else {
		*err = xasprintf("line %u: list %s is neither safelist nor blocklist", r->line,
				 log_quote(q, sizeof(q), r->fields[1]));
		return -EINVAL;
	}
	if (store_slbl_normalize(r->fields[0], true, &out->recipient) < 0) {
		*err = xasprintf("line %u: recipient %s is not an e-mail address", r->line,
				 log_quote(q, sizeof(q), r->fields[0]));
		return -EINVAL;
	}
	if (store_slbl_normalize(r->fields[2], false, &out->sender) < 0) {
		free(out->recipient);
		out->recipient = NULL;
		*err = xasprintf("line %u: sender %s is not an address (a@x.com) or a domain "
				 "(x.com, .x.com)",
				 r->line, log_quote(q, sizeof(q), r->fields[2]));
		return -EINVAL;
	}
	out->line = r->line;
	return 0;
}

static bool api_slbl_is_header(const struct api_slbl_record *r)
{
	static const char *const names[API_SLBL_CSV_FIELDS] = {"recipient", "list", "sender"};
	if (r->nfields != API_SLBL_CSV_FIELDS)
		return false;
	for (size_t i = 0; i < API_SLBL_CSV_FIELDS; i++) {
		const char *s = r->fields[i] + strspn(r->fields[i], " \t");
		size_t n = strlen(names[i]);
		if (strncasecmp(s, names[i], n) != 0 || !api_slbl_blank(s + n))
			return false;
	}
	return true;
}

/* One recipient's lists gathered from the sorted rows. */
struct api_slbl_group {
	char *recipient; /* borrowed from the rows */
	struct api_slbl_strv lists[2];
};

static void api_slbl_import(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	unsigned max = api_slbl_limit(a);
	const char *data;
	size_t len;
	http_server_request_body(req, &data, &len);
	struct api_slbl_row *rows = NULL;
	size_t nrows = 0;
	struct api_slbl_group *groups = NULL;
	size_t ngroups = 0, entries = 0, done = 0;
	char *err = NULL;
	struct api_slbl_record r;
	memset(&r, 0, sizeof(r));

	size_t pos = 0;
	unsigned line = 1;
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
		pos = 3; /* a UTF-8 byte order mark, as spreadsheets write */
	if (memchr(data, '\0', len) != NULL) {
		http_server_reply_error(req, 422, "the CSV holds a NUL character");
		goto done;
	}
	bool first = true;
	int got;
	while ((got = api_slbl_csv_next(data, len, &pos, &line, &r, &err)) > 0) {
		bool skip = (r.nfields == 1 && api_slbl_blank(r.fields[0])) ||
			    (first && api_slbl_is_header(&r));
		first = false;
		if (!skip) {
			rows = xreallocarray(rows, nrows + 1, sizeof(*rows));
			memset(&rows[nrows], 0, sizeof(rows[nrows]));
			if (api_slbl_check_row(&r, &rows[nrows], &err) < 0) {
				api_slbl_record_clear(&r);
				got = -EINVAL;
				break;
			}
			rows[nrows].seq = nrows;
			nrows++;
		}
		api_slbl_record_clear(&r);
	}
	if (got < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}

	/* Group by recipient in file order, deduplicating and checking the limit. */
	if (nrows > 0)
		qsort(rows, nrows, sizeof(*rows), api_slbl_row_cmp);
	for (size_t i = 0; i < nrows; i++) {
		if (ngroups == 0 || strcmp(groups[ngroups - 1].recipient, rows[i].recipient) != 0) {
			groups = xreallocarray(groups, ngroups + 1, sizeof(*groups));
			memset(&groups[ngroups], 0, sizeof(groups[ngroups]));
			groups[ngroups++].recipient = rows[i].recipient;
		}
		struct api_slbl_strv *l = &groups[ngroups - 1].lists[rows[i].list];
		api_slbl_strv_add(l, rows[i].sender);
		rows[i].sender = NULL; /* taken (or freed as a duplicate) */
		if (l->n > max) {
			http_server_reply_error(
			    req, 422, "line %u: %s of %s has more than %u entries (the limit)",
			    rows[i].line, api_slbl_list_names[rows[i].list], rows[i].recipient,
			    max);
			goto done;
		}
	}

	for (size_t i = 0; i < ngroups; i++) {
		struct store_slbl l = {
		    .recipient = groups[i].recipient,
		    .safelist = groups[i].lists[0].v,
		    .nsafelist = groups[i].lists[0].n,
		    .blocklist = groups[i].lists[1].v,
		    .nblocklist = groups[i].lists[1].n,
		};
		int rc = store_slbl_put(api_store(a), &l, max, NULL);
		if (rc < 0) {
			log_error("api.slbl_import_failed",
				  "recipient=%s error=%s imported=%zu of=%zu", groups[i].recipient,
				  strerror(-rc), done, ngroups);
			http_server_reply_error(req, 500,
						"storing the lists of %s failed (%s); %zu of %zu "
						"recipients were imported",
						groups[i].recipient, strerror(-rc), done, ngroups);
			goto done;
		}
		done++;
		entries += l.nsafelist + l.nblocklist;
	}
	log_info("api.slbl_import", "recipients=%zu entries=%zu by=%s peer=%s", ngroups, entries,
		 api_actor(a, req)->username, http_server_request_peer(req));
	http_server_reply_json(req, 200,
			       json_pack("{s:I,s:I}", "recipients", (json_int_t)ngroups, "entries",
					 (json_int_t)entries));
done:
	for (size_t i = 0; i < ngroups; i++) {
		api_slbl_strv_clear(&groups[i].lists[0]);
		api_slbl_strv_clear(&groups[i].lists[1]);
	}
	free(groups);
	for (size_t i = 0; i < nrows; i++) {
		free(rows[i].recipient);
		free(rows[i].sender);
	}
	free(rows);
	free(err);
}

void api_slbl_register(struct api *a)
{
	/* Public to the router: each handler checks the role itself (api_require_role),
	 * so that sessions count as well as the Bearer token. */
	static const struct http_server_route_row routes[] = {
	    {"GET", "/api/v1/slbl", HTTP_SERVER_ROUTE_PUBLIC, api_slbl_changes},
	    /* Literal paths before "{recipient}". */
	    {"GET", "/api/v1/slbl/export.csv", HTTP_SERVER_ROUTE_PUBLIC, api_slbl_export},
	    {"POST", "/api/v1/slbl/import.csv", HTTP_SERVER_ROUTE_PUBLIC, api_slbl_import},
	    {"GET", "/api/v1/slbl/{recipient}", HTTP_SERVER_ROUTE_PUBLIC, api_slbl_get},
	    {"PUT", "/api/v1/slbl/{recipient}", HTTP_SERVER_ROUTE_PUBLIC, api_slbl_put},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}
