/*
 * store_slbl — safelists and blocklists per end-user address, kept by the
 * SQLite backend beside the quarantine: the store_slbl_* calls of store.h.
 *
 * Every put replaces both lists of one recipient and takes the next value of one
 * global change counter (slbl_counter); the recipient's row in slbl_recipients
 * remembers it. A gateway asks for "what changed after version V" and gets every
 * recipient whose row is newer, including recipients whose lists became empty (the
 * row stays, with no entries), so that it can drop them.
 *
 * What an entry may be (checked here, and by the API before it calls us):
 *   - surrounding spaces and tabs are dropped; ASCII letters are lower-cased;
 *   - at most STORE_SLBL_ENTRY_MAX bytes, no space or control character inside;
 *   - an address "local@domain": a non-empty local part without '@', and a domain
 *     of one or more labels ("postmaster@localhost" is fine);
 *   - a domain "x.com": at least two labels, so that a bare word (often a
 *     mistyped user name) is refused;
 *   - a domain with a leading dot ".x.com" or ".com": that domain and every
 *     domain below it (matching is the gateway's job: gateway/slbl_cache.c);
 *   - a label is 1..63 bytes of letters, digits, '-', '_' or UTF-8 (IDN written in
 *     Unicode), neither starting nor ending with '-'. Address literals are refused.
 * A recipient must be an address by the same rules.
 *
 * Not for: matching senders against lists, limits per user (the caller passes
 * max_entries), or the HTTP/CSV forms (api/api_slbl.c).
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "store/store_sqlite_int.h"

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its "<>", so 254 inside. */
#define STORE_SLBL_ENTRY_MAX 254
/* RFC 1035 2.3.4: a label is at most 63 octets, a name at most 253 as text. */
#define STORE_SLBL_LABEL_MAX  63
#define STORE_SLBL_DOMAIN_MAX 253

static const char *const store_slbl_list_names[2] = {"safelist", "blocklist"};

/* ---- entries ---- */

/* A domain name: labels of letters, digits, '-', '_' or UTF-8 bytes. */
static bool store_slbl_domain_ok(const char *d, size_t len, unsigned min_labels)
{
	if (len == 0 || len > STORE_SLBL_DOMAIN_MAX)
		return false;
	unsigned labels = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && d[i] != '.') {
			unsigned char ch = (unsigned char)d[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			      ch == '_' || ch >= 0x80))
				return false;
			continue;
		}
		size_t n = i - start;
		if (n == 0 || n > STORE_SLBL_LABEL_MAX || d[start] == '-' || d[i - 1] == '-')
			return false;
		labels++;
		start = i + 1;
	}
	return labels >= min_labels;
}

/*
 * Normalizes one entry (or, with address_only, a recipient) as the file comment
 * says. 0 with *out a new string (caller frees), or -EINVAL.
 */
int store_slbl_normalize(const char *in, bool address_only, char **out)
{
	if (in == NULL)
		return -EINVAL;
	while (*in == ' ' || *in == '\t')
		in++;
	size_t len = strlen(in);
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t'))
		len--;
	if (len == 0 || len > STORE_SLBL_ENTRY_MAX)
		return -EINVAL;
	char *s = xstrndup(in, len);
	const char *at = NULL;
	for (char *p = s; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch == 0x7f)
			goto fail;
		if (ch >= 'A' && ch <= 'Z')
			*p = (char)(ch - 'A' + 'a');
		if (ch == '@') {
			if (at != NULL)
				goto fail;
			at = p;
		}
	}
	bool ok;
	if (at != NULL)
		ok = at > s && store_slbl_domain_ok(at + 1, strlen(at + 1), 1);
	else if (address_only)
		ok = false;
	else if (s[0] == '.')
		ok = store_slbl_domain_ok(s + 1, len - 1, 1);
	else
		ok = store_slbl_domain_ok(s, len, 2);
	if (!ok)
		goto fail;
	*out = s;
	return 0;
fail:
	free(s);
	return -EINVAL;
}

/*
 * Normalized, deduplicated copies of in[0..n) (first occurrence kept). -EINVAL
 * when one is malformed (nothing is returned then).
 */
int store_slbl_clean_list(char *const *in, size_t n, char ***out, size_t *nout)
{
	char **v = n > 0 ? xcalloc(n, sizeof(*v)) : NULL;
	size_t nv = 0;
	for (size_t i = 0; i < n; i++) {
		char *e = NULL;
		if (store_slbl_normalize(in[i], false, &e) < 0) {
			for (size_t j = 0; j < nv; j++)
				free(v[j]);
			free(v);
			return -EINVAL;
		}
		bool seen = false;
		for (size_t j = 0; j < nv && !seen; j++)
			seen = strcmp(v[j], e) == 0;
		if (seen)
			free(e);
		else
			v[nv++] = e;
	}
	*out = v;
	*nout = nv;
	return 0;
}

static void store_slbl_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void store_slbl_free(struct store_slbl *l)
{
	if (l == NULL)
		return;
	free(l->recipient);
	store_slbl_strv_free(l->safelist, l->nsafelist);
	store_slbl_strv_free(l->blocklist, l->nblocklist);
	free(l);
}

void store_slbl_array_free(struct store_slbl **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		store_slbl_free(v[i]);
	free(v);
}

/* ---- reads ---- */

static const char sql_slbl_entries[] = "SELECT list, sender_lc FROM slbl_entries"
				       " WHERE recipient_lc = ?1 ORDER BY pos";
static const char sql_slbl_recipient[] =
    "SELECT version FROM slbl_recipients WHERE recipient_lc = ?1";
static const char sql_slbl_counter[] = "SELECT version FROM slbl_counter WHERE one = 1";
static const char sql_slbl_changed[] = "SELECT recipient_lc, version FROM slbl_recipients"
				       " WHERE version > ?1 ORDER BY version LIMIT ?2";

/* Fills l's lists from its entries (l->recipient is set). 0 or -EIO. */
static int store_slbl_load_entries(struct store_conn *c, struct store_slbl *l)
{
	sqlite3_stmt *s = store_int_stmt(c, sql_slbl_entries);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, l->recipient, -1, SQLITE_STATIC);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *list = (const char *)sqlite3_column_text(s, 0);
		char *sender = store_int_col_dup(s, 1);
		if (list != NULL && strcmp(list, "blocklist") == 0) {
			l->blocklist =
			    xreallocarray(l->blocklist, l->nblocklist + 1, sizeof(char *));
			l->blocklist[l->nblocklist++] = sender;
		} else {
			l->safelist = xreallocarray(l->safelist, l->nsafelist + 1, sizeof(char *));
			l->safelist[l->nsafelist++] = sender;
		}
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("slbl_entries", store_int_db(c));
		return -EIO;
	}
	return 0;
}

/* One integer from s (bound by the caller); *found false when there is no row. */
static int store_slbl_read_int(struct store_conn *c, sqlite3_stmt *s, int64_t *out, bool *found)
{
	int r = sqlite3_step(s);
	*found = r == SQLITE_ROW;
	if (r == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		store_int_log_sqlite("slbl_read", store_int_db(c));
		return -EIO;
	}
	return 0;
}

/* Opens a read transaction so that several SELECTs see one state. */
static int store_slbl_begin_read(struct store_conn *c)
{
	if (sqlite3_exec(store_int_db(c), "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		store_int_log_sqlite("slbl_begin", store_int_db(c));
		return -EIO;
	}
	return 0;
}

int store_sqlite_slbl_get(struct store *st, const char *recipient, struct store_slbl **out)
{
	struct store_slbl *l = NULL;
	char *rcpt = NULL;
	if (store_slbl_normalize(recipient, true, &rcpt) < 0)
		return -EINVAL;
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0) {
		free(rcpt);
		return rc;
	}
	l = xcalloc(1, sizeof(*l));
	l->recipient = rcpt;
	if ((rc = store_slbl_begin_read(c)) < 0)
		goto fail;
	sqlite3_stmt *s = store_int_stmt(c, sql_slbl_recipient);
	rc = -EIO;
	if (s == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, l->recipient, -1, SQLITE_STATIC);
	bool found;
	if ((rc = store_slbl_read_int(c, s, &l->version, &found)) < 0)
		goto fail;
	if ((rc = store_slbl_load_entries(c, l)) < 0)
		goto fail;
	*out = l;
	l = NULL;
	rc = 0;
fail:
	store_slbl_free(l);
	store_int_reader_put(st, c);
	return rc;
}

int store_sqlite_slbl_changes(struct store *st, int64_t since, size_t limit,
			      struct store_slbl ***out, size_t *n, int64_t *version)
{
	if (since < 0)
		return -EINVAL;
	struct store_conn *c = NULL;
	struct store_slbl **v = NULL;
	size_t nv = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	if ((rc = store_slbl_begin_read(c)) < 0)
		goto fail;
	rc = -EIO;
	sqlite3_stmt *s = store_int_stmt(c, sql_slbl_counter);
	if (s == NULL)
		goto fail;
	bool found;
	int64_t newest = 0;
	if ((rc = store_slbl_read_int(c, s, &newest, &found)) < 0)
		goto fail;
	rc = -EIO;
	if ((s = store_int_stmt(c, sql_slbl_changed)) == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, since);
	sqlite3_bind_int64(s, 2,
			   limit > 0 && limit <= (size_t)INT64_MAX ? (sqlite3_int64)limit : -1);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_slbl *l = xcalloc(1, sizeof(*l));
		l->recipient = store_int_col_dup(s, 0);
		l->version = sqlite3_column_int64(s, 1);
		v = xreallocarray(v, nv + 1, sizeof(*v));
		v[nv++] = l;
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_int_log_sqlite("slbl_changes", store_int_db(c));
		goto fail;
	}
	for (size_t i = 0; i < nv; i++) {
		if ((rc = store_slbl_load_entries(c, v[i])) < 0)
			goto fail;
	}
	*out = v;
	*n = nv;
	v = NULL;
	if (version != NULL)
		*version = newest;
	rc = 0;
fail:
	store_slbl_array_free(v, nv);
	store_int_reader_put(st, c);
	return rc;
}

/* ---- writes ---- */

static const char sql_slbl_bump[] =
    "UPDATE slbl_counter SET version = version + 1 WHERE one = 1 RETURNING version";
static const char sql_slbl_set_recipient[] =
    "INSERT INTO slbl_recipients (recipient_lc, version) VALUES (?1, ?2)"
    " ON CONFLICT (recipient_lc) DO UPDATE SET version = excluded.version";
static const char sql_slbl_clear[] = "DELETE FROM slbl_entries WHERE recipient_lc = ?1";
static const char sql_slbl_insert[] =
    "INSERT INTO slbl_entries (recipient_lc, list, sender_lc, pos) VALUES (?1, ?2, ?3, ?4)";

struct store_slbl_put_args {
	const char *recipient;
	char **lists[2];
	size_t nlists[2];
	int64_t version;
};

static int store_slbl_put_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_slbl_put_args *a = arg;
	sqlite3_stmt *s = store_int_stmt(c, sql_slbl_bump);
	if (s == NULL)
		return -EIO;
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		a->version = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r != SQLITE_ROW) {
		store_int_log_sqlite("slbl_bump", store_int_db(c));
		return -EIO;
	}
	if ((s = store_int_stmt(c, sql_slbl_set_recipient)) == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, a->recipient, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, a->version);
	int rc = store_int_step_done(c, s, "slbl_set_recipient");
	if (rc < 0)
		return rc;
	if ((s = store_int_stmt(c, sql_slbl_clear)) == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, a->recipient, -1, SQLITE_STATIC);
	if ((rc = store_int_step_done(c, s, "slbl_clear")) < 0)
		return rc;
	int64_t pos = 0;
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < a->nlists[k]; i++) {
			if ((s = store_int_stmt(c, sql_slbl_insert)) == NULL)
				return -EIO;
			sqlite3_bind_text(s, 1, a->recipient, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 2, store_slbl_list_names[k], -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 3, a->lists[k][i], -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 4, pos++);
			if ((rc = store_int_step_done(c, s, "slbl_insert")) < 0)
				return rc;
		}
	}
	return 0;
}

int store_sqlite_slbl_put(struct store *st, const struct store_slbl_clean *c, int64_t *version)
{
	struct store_slbl_put_args a = {.recipient = c->recipient};
	for (int k = 0; k < 2; k++) {
		a.lists[k] = c->lists[k];
		a.nlists[k] = c->nlists[k];
	}
	int rc = store_int_run_job(st, store_slbl_put_job, &a);
	if (rc < 0)
		return rc;
	*version = a.version;
	return 0;
}
