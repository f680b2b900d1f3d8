/*
 * store_pg_slbl — safelists and blocklists per end-user address (SQ7) on
 * PostgreSQL, with the semantics of store_slbl.c (which also holds the rules for
 * an entry, shared by both backends: store_slbl_normalize).
 *
 * Every put replaces both lists of one recipient and takes the next value of one
 * change counter (a row of slbl_counter, not a sequence): the put holds that row's
 * lock until it commits, so versions become visible in the order they were taken
 * and a gateway asking "what changed after V" can never miss a put that commits
 * late with a smaller version.
 *
 * Not for: matching senders against lists, limits per user (the caller passes
 * max_entries), or the HTTP/CSV forms.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

/* Fills the lists of v[0..n) (recipients set) from their entries. 0 or -EIO. */
static int store_pg_slbl_load(PGconn *c, struct store_slbl **v, size_t n)
{
	if (n == 0)
		return 0;
	const char **rcpts = xcalloc(n, sizeof(*rcpts));
	for (size_t i = 0; i < n; i++)
		rcpts[i] = v[i]->recipient;
	struct store_pg_params p = {0};
	store_pg_array(&p, rcpts, n);
	free(rcpts);
	PGresult *r =
	    store_pg_exec(c, "slbl_entries",
			  "SELECT recipient_lc, list, sender_lc FROM slbl_entries"
			  " WHERE recipient_lc = ANY($1::text[]) ORDER BY recipient_lc, pos",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	for (size_t i = 0; i < n; i++) {
		struct store_slbl *l = v[i];
		for (int k = 0; k < PQntuples(r); k++) {
			if (strcmp(PQgetvalue(r, k, 0), l->recipient) != 0)
				continue;
			char *sender = store_pg_dup(r, k, 2);
			if (strcmp(PQgetvalue(r, k, 1), "blocklist") == 0) {
				l->blocklist =
				    xreallocarray(l->blocklist, l->nblocklist + 1, sizeof(char *));
				l->blocklist[l->nblocklist++] = sender;
			} else {
				l->safelist =
				    xreallocarray(l->safelist, l->nsafelist + 1, sizeof(char *));
				l->safelist[l->nsafelist++] = sender;
			}
		}
	}
	PQclear(r);
	return 0;
}

int store_pg_slbl_get(struct store *s, const char *recipient, struct store_slbl **out)
{
	struct store_pg *st = store_pg_of(s);
	char *rcpt = NULL;
	if (store_slbl_normalize(recipient, true, &rcpt) < 0)
		return -EINVAL;
	struct store_slbl *l = xcalloc(1, sizeof(*l));
	l->recipient = rcpt;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		goto fail;
	if ((rc = store_pg_read_begin(c->pg)) < 0)
		goto fail;
	struct store_pg_params p = {0};
	store_pg_text(&p, l->recipient);
	PGresult *r =
	    store_pg_exec(c->pg, "slbl_recipient",
			  "SELECT version FROM slbl_recipients WHERE recipient_lc = $1", &p, false);
	store_pg_params_clear(&p);
	rc = -EIO;
	if (r == NULL)
		goto fail;
	if (PQntuples(r) == 1)
		l->version = store_pg_i64(r, 0, 0);
	PQclear(r);
	if ((rc = store_pg_slbl_load(c->pg, &l, 1)) < 0)
		goto fail;
	*out = l;
	l = NULL;
	rc = 0;
fail:
	store_slbl_free(l);
	store_pg_conn_put(st, c);
	return rc;
}

int store_pg_slbl_changes(struct store *s, int64_t since, size_t limit, struct store_slbl ***out,
			  size_t *n, int64_t *version)
{
	struct store_pg *st = store_pg_of(s);
	if (since < 0)
		return -EINVAL;
	struct store_pg_conn *c = NULL;
	struct store_slbl **v = NULL;
	size_t nv = 0;
	PGresult *r = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	if ((rc = store_pg_read_begin(c->pg)) < 0)
		goto fail;
	rc = -EIO;
	if ((r = store_pg_exec(c->pg, "slbl_counter", "SELECT version FROM slbl_counter", NULL,
			       false)) == NULL ||
	    PQntuples(r) != 1)
		goto fail;
	int64_t newest = store_pg_i64(r, 0, 0);
	PQclear(r);
	struct store_pg_params p = {0};
	store_pg_int(&p, since);
	store_pg_owned(&p,
		       limit > 0 && limit <= (size_t)INT64_MAX ? xasprintf("%zu", limit) : NULL);
	r = store_pg_exec(c->pg, "slbl_changes",
			  "SELECT recipient_lc, version FROM slbl_recipients WHERE version > $1"
			  " ORDER BY version LIMIT $2::bigint",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		goto fail;
	nv = (size_t)PQntuples(r);
	v = xcalloc(nv + 1, sizeof(*v));
	for (size_t k = 0; k < nv; k++) {
		v[k] = xcalloc(1, sizeof(**v));
		v[k]->recipient = store_pg_dup(r, (int)k, 0);
		v[k]->version = store_pg_i64(r, (int)k, 1);
	}
	PQclear(r);
	r = NULL;
	if ((rc = store_pg_slbl_load(c->pg, v, nv)) < 0)
		goto fail;
	*out = v;
	*n = nv;
	v = NULL;
	if (version != NULL)
		*version = newest;
	rc = 0;
fail:
	PQclear(r);
	store_slbl_array_free(v, nv);
	store_pg_conn_put(st, c);
	return rc;
}

struct store_pg_slbl_put_args {
	const char *recipient;
	char **lists[2];
	size_t nlists[2];
	int64_t version;
};

static int store_pg_slbl_put_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_slbl_put_args *a = arg;
	PGresult *r = store_pg_exec(
	    c, "slbl_bump", "UPDATE slbl_counter SET version = version + 1 RETURNING version", NULL,
	    false);
	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return -EIO;
	}
	a->version = store_pg_i64(r, 0, 0);
	PQclear(r);
	/* the entries in one statement: safelist first, positions in order */
	const char **senders = xcalloc(a->nlists[0] + a->nlists[1] + 1, sizeof(*senders));
	const char **lists = xcalloc(a->nlists[0] + a->nlists[1] + 1, sizeof(*lists));
	size_t n = 0;
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < a->nlists[k]; i++) {
			senders[n] = a->lists[k][i];
			lists[n++] = k == 0 ? "safelist" : "blocklist";
		}
	}
	struct store_pg_params p = {0};
	store_pg_text(&p, a->recipient);
	store_pg_int(&p, a->version);
	int rc = store_pg_do(c, "slbl_put",
			     "WITH r AS (INSERT INTO slbl_recipients (recipient_lc, version)"
			     " VALUES ($1, $2) ON CONFLICT (recipient_lc)"
			     " DO UPDATE SET version = excluded.version)"
			     " DELETE FROM slbl_entries WHERE recipient_lc = $1",
			     &p, NULL);
	store_pg_params_clear(&p);
	store_pg_text(&p, a->recipient);
	store_pg_array(&p, lists, n);
	store_pg_array(&p, senders, n);
	free(senders);
	free(lists);
	if (rc == 0)
		rc = store_pg_do(c, "slbl_insert",
				 "INSERT INTO slbl_entries (recipient_lc, list, sender_lc, pos)"
				 " SELECT $1, e.list, e.sender, e.k - 1"
				 " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY"
				 " AS e(list, sender, k)",
				 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_slbl_put(struct store *st, const struct store_slbl_clean *c, int64_t *version)
{
	struct store_pg_slbl_put_args a = {.recipient = c->recipient};
	for (int k = 0; k < 2; k++) {
		a.lists[k] = c->lists[k];
		a.nlists[k] = c->nlists[k];
	}
	int rc = store_pg_tx(store_pg_of(st), store_pg_slbl_put_tx, &a);
	if (rc < 0)
		return rc;
	*version = a.version;
	return 0;
}
