/*
 * store — what every backend shares: the dispatch from store.h to the backend
 * chosen at store_open (store_backend.h), and the functions that do not depend on
 * one (state names, freeing results, compressing and decoding bodies). Not for:
 * SQL of any kind; that lives in store_sqlite*.c and store_pg*.c.
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

_Thread_local int64_t store_read_deadline_ms;
_Thread_local bool store_read_timed_out;
_Thread_local bool store_read_replica_ok;
_Thread_local bool store_conn_lost;

void store_read_replica_set(bool allow)
{
	store_read_replica_ok = allow;
}

bool store_error_unavailable(int rc)
{
	/* only a storage failure can be a lost connection: -EINVAL, -ENOENT ... are the
	 * caller's, whatever an earlier call of this thread left in store_conn_lost */
	return rc == -ENOTCONN || (rc == -EIO && store_conn_lost);
}

void store_read_deadline_set(int64_t ms)
{
	store_read_deadline_ms = ms > 0 ? clock_mono_ms() + ms : 0;
}

void store_read_deadline_clear(void)
{
	store_read_deadline_ms = 0;
}

/* A read call's result: -ETIMEDOUT when the backend cut it off for the deadline. */
static int store_read_result(int rc)
{
	return rc < 0 && store_read_timed_out ? -ETIMEDOUT : rc;
}

/*
 * Returns from the calling function the result of a read call (an expression),
 * run once more when it failed because its connection was lost: a pooled session the server has
 * just ended (a restart of PostgreSQL) may still look alive when it is taken. The backend then
 * drops every pooled session of that time, so the second try opens a new one, or fails at once
 * while the server is down. Reads change nothing, so trying one again is safe.
 */
#define STORE_READ(call)                                                                           \
	do {                                                                                       \
		store_read_timed_out = false;                                                      \
		int store_read_rc_ = (call);                                                       \
		if (store_error_unavailable(store_read_rc_) && !store_read_timed_out)              \
			store_read_rc_ = (call);                                                   \
		return store_read_result(store_read_rc_);                                          \
	} while (0)

static const struct store_ops *store_ops_of(struct store *st)
{
	return ((const struct store_head *)(void *)st)->ops;
}

/* The backend named name ("sqlite" when NULL or empty), or NULL when unknown. */
static const struct store_ops *store_backend_ops(const char *name)
{
	if (name == NULL || name[0] == '\0' || strcmp(name, "sqlite") == 0)
		return &store_sqlite_ops;
	if (strcmp(name, "postgresql") == 0)
		return &store_pg_ops;
	return NULL;
}

int store_node_name_check(const char *name)
{
	if (name == NULL || name[0] == '\0' || strlen(name) > STORE_NODE_NAME_MAX)
		return -EINVAL;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f)
			return -EINVAL;
	}
	return 0;
}

int store_node_name_of(const struct store_options *opt, char buf[STORE_NODE_NAME_MAX + 1])
{
	if (opt->node_name != NULL && opt->node_name[0] != '\0') {
		if (store_node_name_check(opt->node_name) < 0)
			return -EINVAL;
		snprintf(buf, STORE_NODE_NAME_MAX + 1, "%s", opt->node_name);
		return 0;
	}
	/* the default: one process per host, as most installations run */
	if (gethostname(buf, STORE_NODE_NAME_MAX + 1) < 0)
		return -errno;
	buf[STORE_NODE_NAME_MAX] = '\0';
	return store_node_name_check(buf);
}

int store_open(const struct store_options *opt, struct store **out)
{
	if (opt == NULL)
		return -EINVAL;
	const struct store_ops *ops = store_backend_ops(opt->backend);
	if (ops == &store_sqlite_ops)
		return store_sqlite_open(opt, out);
	if (ops == &store_pg_ops)
		return store_pg_open(opt, out);
	return -EINVAL;
}

static void store_missing_add(struct strbuf *sb, const char *name)
{
	if (sb->len > 0)
		strbuf_puts(sb, ", ");
	strbuf_puts(sb, name);
}

char *store_backend_missing(const char *backend)
{
	const struct store_ops *ops = store_backend_ops(backend);
	if (ops == NULL)
		return xstrdup("every function (unknown backend)");
	struct strbuf sb = STRBUF_INIT;
	if (ops->close == NULL)
		store_missing_add(&sb, "store_close");
	if (ops->submit_message == NULL)
		store_missing_add(&sb, "store_submit_message");
	if (ops->list == NULL)
		store_missing_add(&sb, "store_list");
	if (ops->get == NULL)
		store_missing_add(&sb, "store_get");
	if (ops->get_raw == NULL)
		store_missing_add(&sb, "store_get_raw");
	if (ops->quarantines == NULL)
		store_missing_add(&sb, "store_quarantines");
	if (ops->release == NULL)
		store_missing_add(&sb, "store_release");
	if (ops->delete == NULL)
		store_missing_add(&sb, "store_delete");
	if (ops->release_matching == NULL)
		store_missing_add(&sb, "store_release_matching");
	if (ops->delete_matching == NULL)
		store_missing_add(&sb, "store_delete_matching");
	if (ops->delivery_claim == NULL)
		store_missing_add(&sb, "store_delivery_claim");
	if (ops->delivery_finish == NULL)
		store_missing_add(&sb, "store_delivery_finish");
	if (ops->delivery_confirm == NULL)
		store_missing_add(&sb, "store_delivery_confirm");
	if (ops->delivery_reset_leases == NULL)
		store_missing_add(&sb, "store_delivery_reset_leases");
	if (ops->delivery_pending == NULL)
		store_missing_add(&sb, "store_delivery_pending");
	if (ops->delivery_next_due == NULL)
		store_missing_add(&sb, "store_delivery_next_due");
	if (ops->expire == NULL)
		store_missing_add(&sb, "store_expire");
	if (ops->expire_memberships == NULL)
		store_missing_add(&sb, "store_expire_memberships");
	if (ops->quarantine_put == NULL)
		store_missing_add(&sb, "store_quarantine_put");
	if (ops->quarantine_delete == NULL)
		store_missing_add(&sb, "store_quarantine_delete");
	if (ops->operator_quarantines == NULL)
		store_missing_add(&sb, "store_operator_quarantines");
	if (ops->pvo_act_batch == NULL)
		store_missing_add(&sb, "store_pvo_act");
	if (ops->pvo_act_batch == NULL || ops->list_ids == NULL)
		store_missing_add(&sb, "store_pvo_act_matching");
	if (ops->pvo_copy == NULL)
		store_missing_add(&sb, "store_pvo_copy");
	if (ops->pvo_usage == NULL)
		store_missing_add(&sb, "store_pvo_usage");
	if (ops->pvo_overflow == NULL)
		store_missing_add(&sb, "store_pvo_overflow");
	if (ops->purge == NULL)
		store_missing_add(&sb, "store_purge");
	if (ops->stats == NULL)
		store_missing_add(&sb, "store_stats");
	if (ops->debug_counters == NULL)
		store_missing_add(&sb, "store_debug_counters");
	if (ops->debug_list_plan == NULL)
		store_missing_add(&sb, "store_debug_list_plan");
	if (ops->slbl_get == NULL)
		store_missing_add(&sb, "store_slbl_get");
	if (ops->slbl_put == NULL)
		store_missing_add(&sb, "store_slbl_put");
	if (ops->slbl_changes == NULL)
		store_missing_add(&sb, "store_slbl_changes");
	if (ops->user_add == NULL)
		store_missing_add(&sb, "store_user_add");
	if (ops->user_get == NULL)
		store_missing_add(&sb, "store_user_get");
	if (ops->user_list == NULL)
		store_missing_add(&sb, "store_user_list");
	if (ops->user_count == NULL)
		store_missing_add(&sb, "store_user_count");
	if (ops->user_delete == NULL)
		store_missing_add(&sb, "store_user_delete");
	if (ops->user_set_prefs == NULL)
		store_missing_add(&sb, "store_user_set_prefs");
	if (ops->user_set_last_login == NULL)
		store_missing_add(&sb, "store_user_set_last_login");
	if (ops->session_add == NULL)
		store_missing_add(&sb, "store_session_add");
	if (ops->session_get == NULL)
		store_missing_add(&sb, "store_session_get");
	if (ops->session_touch == NULL)
		store_missing_add(&sb, "store_session_touch");
	if (ops->session_delete == NULL)
		store_missing_add(&sb, "store_session_delete");
	if (ops->session_purge == NULL)
		store_missing_add(&sb, "store_session_purge");
	if (ops->totp_get == NULL)
		store_missing_add(&sb, "store_totp_get");
	if (ops->totp_change == NULL)
		store_missing_add(&sb, "store_totp_change");
	if (ops->audit_add == NULL)
		store_missing_add(&sb, "store_audit_add");
	if (ops->audit_list == NULL)
		store_missing_add(&sb, "store_audit_list");
	if (ops->digest_user_by_address == NULL)
		store_missing_add(&sb, "store_digest_user_by_address");
	if (ops->digest_user_by_name == NULL)
		store_missing_add(&sb, "store_digest_user_by_name");
	if (ops->digest_max_seq == NULL)
		store_missing_add(&sb, "store_digest_max_seq");
	if (ops->digest_candidates == NULL)
		store_missing_add(&sb, "store_digest_candidates");
	if (ops->digest_entries == NULL)
		store_missing_add(&sb, "store_digest_entries");
	if (ops->digest_state_get == NULL)
		store_missing_add(&sb, "store_digest_state_get");
	if (ops->digest_state_put == NULL)
		store_missing_add(&sb, "store_digest_state_put");
	if (ops->digest_token_used == NULL)
		store_missing_add(&sb, "store_digest_token_used");
	if (ops->digest_token_use == NULL)
		store_missing_add(&sb, "store_digest_token_use");
	if (ops->nodes == NULL || ops->node_name == NULL)
		store_missing_add(&sb, "store_nodes");
	if (ops->job_try == NULL || ops->job_done == NULL)
		store_missing_add(&sb, "store_job_try");
	if (ops->secret_get == NULL || ops->secret_add == NULL)
		store_missing_add(&sb, "store_secret_get");
	if (ops->gateway_add == NULL || ops->gateway_list == NULL || ops->gateway_get == NULL ||
	    ops->gateway_get_by_address == NULL || ops->gateway_get_by_token_hash == NULL ||
	    ops->gateway_remove == NULL || ops->gateway_touch == NULL ||
	    ops->gateway_pending_put == NULL || ops->gateway_set_central == NULL ||
	    ops->gateway_set_levels == NULL || ops->gateway_set_mapping == NULL ||
	    ops->gateway_migration_report == NULL || ops->notice_due == NULL ||
	    ops->notice_set == NULL)
		store_missing_add(&sb, "store_gateway_*");
	if (ops->level_list == NULL || ops->level_put == NULL)
		store_missing_add(&sb, "store_level_*");
	if (ops->sched_add == NULL || ops->sched_list == NULL || ops->sched_delete == NULL ||
	    ops->sched_claim == NULL || ops->archive_add == NULL || ops->archive_list == NULL ||
	    ops->archive_get == NULL || ops->sched_update == NULL || ops->archive_purge == NULL ||
	    ops->archive_mail_due == NULL || ops->archive_mail_set == NULL ||
	    ops->report_backfill == NULL || ops->report_backfill_state == NULL ||
	    ops->report_export == NULL)
		store_missing_add(&sb, "store_report_schedule_*");
	if (ops->events_put == NULL || ops->event_states == NULL || ops->events_list == NULL ||
	    ops->tracked_message_get == NULL)
		store_missing_add(&sb, "store_events_*");
	if (sb.len == 0) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_take(&sb);
}

void store_close(struct store *st)
{
	if (st != NULL)
		store_ops_of(st)->close(st);
}

int store_submit_message(struct store *st, struct store_new_message *m, store_done_fn done,
			 void *arg)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->submit_message == NULL) {
		store_new_message_free(m);
		return -ENOSYS;
	}
	return ops->submit_message(st, m, done, arg);
}

int store_list(struct store *st, const struct store_filter *f, size_t limit, const char *cursor,
	       struct store_message ***out, size_t *n, char **next_cursor)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->list == NULL)
		return -ENOSYS;
	STORE_READ(ops->list(st, f, limit, cursor, out, n, next_cursor));
}

int store_get(struct store *st, const char *id, struct store_message **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->get == NULL)
		return -ENOSYS;
	STORE_READ(ops->get(st, id, out));
}

int store_get_raw(struct store *st, const char *id, unsigned char **raw, size_t *len)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->get_raw == NULL)
		return -ENOSYS;
	STORE_READ(ops->get_raw(st, id, raw, len));
}

int store_quarantines(struct store *st, struct store_quarantine_stats **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->quarantines == NULL)
		return -ENOSYS;
	STORE_READ(ops->quarantines(st, out, n));
}

int store_release(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		  int64_t now, int *changed)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->release == NULL)
		return -ENOSYS;
	return ops->release(st, id, rcpts, nrcpts, now, changed);
}

int store_delete(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
		 int64_t now, int *changed)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delete == NULL)
		return -ENOSYS;
	return ops->delete (st, id, rcpts, nrcpts, now, changed);
}

int store_release_matching(struct store *st, const struct store_filter *f, int64_t now,
			   int *changed)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->release_matching == NULL)
		return -ENOSYS;
	return ops->release_matching(st, f, now, changed);
}

int store_delete_matching(struct store *st, const struct store_filter *f, int64_t now, int *changed)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delete_matching == NULL)
		return -ENOSYS;
	return ops->delete_matching(st, f, now, changed);
}

int store_delivery_claim(struct store *st, int64_t now, int64_t lease_ms,
			 struct store_delivery **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_claim == NULL)
		return -ENOSYS;
	return ops->delivery_claim(st, now, lease_ms, out);
}

int store_delivery_finish(struct store *st, const struct store_delivery *d,
			  const struct store_delivery_result *results, size_t nresults, int64_t now,
			  int64_t retry_at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_finish == NULL)
		return -ENOSYS;
	return ops->delivery_finish(st, d, results, nresults, now, retry_at);
}

int store_delivery_confirm(struct store *st, const struct store_delivery *d,
			   const struct store_delivery_result *results, size_t nresults,
			   int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_confirm == NULL)
		return -ENOSYS;
	return ops->delivery_confirm(st, d, results, nresults, now, NULL);
}

int store_delivery_confirm_rescan(struct store *st, const struct store_delivery *d,
				  const struct store_delivery_result *results, size_t nresults,
				  int64_t now, const struct store_rescan_verdict *v)
{
	const struct store_ops *ops = store_ops_of(st);
	if (v == NULL || v->state < STORE_RESCAN_CLEAN || v->state > STORE_RESCAN_REQUARANTINED)
		return -EINVAL;
	if (ops->delivery_confirm == NULL)
		return -ENOSYS;
	return ops->delivery_confirm(st, d, results, nresults, now, v);
}

int store_delivery_reset_leases(struct store *st, int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_reset_leases == NULL)
		return -ENOSYS;
	return ops->delivery_reset_leases(st, now);
}

int store_delivery_pending(struct store *st, uint64_t *count)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_pending == NULL)
		return -ENOSYS;
	return ops->delivery_pending(st, count);
}

int store_delivery_next_due(struct store *st, int64_t *when)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->delivery_next_due == NULL)
		return -ENOSYS;
	return ops->delivery_next_due(st, when);
}

int store_expire(struct store *st, const char *quarantine, int64_t cutoff, int64_t now,
		 size_t batch, uint64_t *expired, uint64_t *purged)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->expire == NULL)
		return -ENOSYS;
	return ops->expire(st, quarantine, cutoff, now, batch, expired, purged);
}

int store_expire_memberships(struct store *st, int64_t now, size_t batch, uint64_t *expired,
			     uint64_t *purged)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->expire_memberships == NULL)
		return -ENOSYS;
	return ops->expire_memberships(st, now, batch, expired, purged);
}

int store_quarantine_put(struct store *st, const struct store_quarantine_settings *q, bool create,
			 int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->quarantine_put == NULL)
		return -ENOSYS;
	if (q == NULL || q->name == NULL || q->name[0] == '\0' || q->default_action == NULL ||
	    (strcmp(q->default_action, "release") != 0 &&
	     strcmp(q->default_action, "delete") != 0) ||
	    q->delete_after_ms < 0 || (q->noperators > 0 && q->operators == NULL))
		return -EINVAL;
	return ops->quarantine_put(st, q, create, now);
}

int store_quarantine_delete(struct store *st, const char *name)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->quarantine_delete == NULL)
		return -ENOSYS;
	if (name == NULL)
		return -ENOENT;
	return ops->quarantine_delete(st, name);
}

const char *store_pvo_action_name(enum store_pvo_action a)
{
	switch (a) {
	case STORE_PVO_RELEASE:
		return "release";
	case STORE_PVO_DELETE:
		return "delete";
	case STORE_PVO_DELAY:
		return "delay";
	case STORE_PVO_MOVE:
		return "move";
	}
	return "?";
}

/* A request both backends can act on: the same refusals whatever the backend. */
static bool store_pvo_request_ok(const struct store_pvo_request *r)
{
	if (r == NULL || r->quarantine == NULL || r->quarantine[0] == '\0' ||
	    strlen(r->quarantine) > STORE_QUARANTINE_NAME_MAX)
		return false;
	switch (r->action) {
	case STORE_PVO_RELEASE:
	case STORE_PVO_DELETE:
		return true;
	case STORE_PVO_DELAY:
		return r->by_ms > 0;
	case STORE_PVO_MOVE:
		return r->to != NULL && r->to[0] != '\0' &&
		       strlen(r->to) <= STORE_QUARANTINE_NAME_MAX;
	}
	return false;
}

/* Messages per transaction of a bulk PVO action (store_pvo_act_matching). */
#define STORE_PVO_BULK_BATCH 200

/* store_pvo_act_matching's pages: what each acts with, and the sums. */
struct store_pvo_pages {
	const struct store_pvo_request *r;
	int64_t now;
	int (*tx)(struct store *st, struct store_pvo_batch *b);
	uint64_t *changed, *queued;
};

static int store_pvo_page(struct store *st, const char *const *ids, size_t n, void *arg)
{
	struct store_pvo_pages *p = arg;
	struct store_pvo_batch b = {.ids = ids, .nids = n, .r = p->r, .now = p->now, .bulk = true};
	int rc = p->tx(st, &b);
	*p->changed += b.changed;
	*p->queued += b.queued;
	return rc;
}

int store_pvo_act(struct store *st, const char *id, const struct store_pvo_request *r, int64_t now,
		  struct store_pvo_outcome *out)
{
	const struct store_ops *ops = store_ops_of(st);
	struct store_pvo_outcome ignored;
	if (out == NULL)
		out = &ignored;
	memset(out, 0, sizeof(*out));
	if (ops->pvo_act_batch == NULL)
		return -ENOSYS;
	if (!store_pvo_request_ok(r))
		return -EINVAL;
	if (id == NULL || !ids_valid(id))
		return -ENOENT;
	struct store_pvo_batch b = {.ids = &id, .nids = 1, .r = r, .now = now};
	int rc = ops->pvo_act_batch(st, &b);
	*out = b.out;
	return rc;
}

int store_pvo_act_matching(struct store *st, const struct store_filter *f,
			   const struct store_pvo_request *r, int64_t now, uint64_t *changed,
			   uint64_t *queued)
{
	const struct store_ops *ops = store_ops_of(st);
	uint64_t c = 0, q = 0;
	if (ops->pvo_act_batch == NULL || ops->list_ids == NULL)
		return -ENOSYS;
	if (!store_pvo_request_ok(r) || f == NULL || f->quarantine == NULL ||
	    strcmp(f->quarantine, r->quarantine) != 0)
		return -EINVAL;
	struct store_filter held = *f;
	held.state = NULL; /* memberships have their own states: the action picks the held ones */
	struct store_pvo_pages p = {
	    .r = r, .now = now, .tx = ops->pvo_act_batch, .changed = &c, .queued = &q};
	/* a page per transaction of the backend */
	int rc =
	    store_each_id_page(st, &held, STORE_PVO_BULK_BATCH, ops->list_ids, store_pvo_page, &p);
	if (changed != NULL)
		*changed = c;
	if (queued != NULL)
		*queued = q;
	return rc;
}

int store_each_id_page(struct store *st, const struct store_filter *f, size_t batch,
		       store_list_ids_fn list, store_page_fn act, void *arg)
{
	char *cursor = NULL;
	int rc = 0;
	for (;;) {
		char **ids = NULL;
		size_t n = 0;
		rc = list(st, f, cursor, batch, &ids, &n);
		if (rc < 0)
			break;
		if (n > 0)
			rc = act(st, (const char *const *)ids, n, arg);
		free(cursor);
		cursor = n > 0 ? xstrdup(ids[n - 1]) : NULL;
		for (size_t i = 0; i < n; i++)
			free(ids[i]);
		free(ids);
		if (rc < 0 || n < batch)
			break;
	}
	free(cursor);
	return rc;
}

bool store_change_scope(const struct store_filter *f, const char *one[1], const char *const **scope,
			size_t *nscope)
{
	bool has_rcpt = f->recipient != NULL && f->recipient[0] != '\0';
	*scope = NULL;
	*nscope = 0;
	if (f->addresses != NULL && !has_rcpt) {
		*scope = f->addresses;
		*nscope = f->naddresses;
		return true;
	}
	if (f->addresses != NULL) {
		bool in = false;
		for (size_t i = 0; i < f->naddresses; i++)
			in = in || strcasecmp(f->addresses[i], f->recipient) == 0;
		if (!in)
			return false;
	}
	if (has_rcpt) {
		one[0] = f->recipient;
		*scope = one;
		*nscope = 1;
	}
	return true;
}

int store_pvo_type_policy(int rc, char *type, bool *policy)
{
	*policy = type != NULL && strcmp(type, "policy") == 0;
	free(type);
	return rc == -ENOENT ? -ENODEV : rc < 0 ? rc : 0;
}

int store_pvo_batch_apply(struct store_pvo_batch *b, store_pvo_apply_fn apply, void *conn)
{
	b->changed = b->queued = 0;
	for (size_t i = 0; i < b->nids; i++) {
		int rc = apply(conn, b->ids[i], b->r, b->now, &b->out);
		if (rc == 0) {
			b->changed++;
			b->queued += b->out.queued ? 1 : 0;
			continue;
		}
		/* in bulk, what changed meanwhile (or never could) is skipped */
		if (b->bulk && rc != -EIO && rc != -ENODEV)
			continue;
		return rc;
	}
	return 0;
}

int store_pvo_copy(struct store *st, const char *id, const char *const *to, size_t n, int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->pvo_copy == NULL)
		return -ENOSYS;
	if (to == NULL || n == 0 || n > STORE_PVO_COPY_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (to[i] == NULL || to[i][0] == '\0')
			return -EINVAL;
	}
	if (id == NULL || !ids_valid(id))
		return -ENOENT;
	return ops->pvo_copy(st, id, to, n, now);
}

int store_operator_quarantines(struct store *st, const char *username, char ***out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->operator_quarantines == NULL)
		return -ENOSYS;
	if (username == NULL)
		return -EINVAL;
	return ops->operator_quarantines(st, username, out, n);
}

int store_pvo_usage(struct store *st, struct store_pvo_usage *out)
{
	const struct store_ops *ops = store_ops_of(st);
	memset(out, 0, sizeof(*out));
	if (ops->pvo_usage == NULL)
		return -ENOSYS;
	return ops->pvo_usage(st, out);
}

int store_pvo_overflow(struct store *st, uint64_t max_bytes, size_t batch, int64_t now,
		       struct store_pvo_overflow *out)
{
	const struct store_ops *ops = store_ops_of(st);
	memset(out, 0, sizeof(*out));
	if (ops->pvo_overflow == NULL)
		return -ENOSYS;
	if (batch == 0)
		return -EINVAL;
	return ops->pvo_overflow(st, max_bytes, batch, now, out);
}

void store_string_array_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int store_purge(struct store *st, size_t batch, uint64_t *purged)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->purge == NULL)
		return -ENOSYS;
	return ops->purge(st, batch, purged);
}

int store_maintain(struct store *st, int64_t now, uint64_t *stray)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->maintain == NULL) {
		if (stray != NULL)
			*stray = 0;
		return 0;
	}
	return ops->maintain(st, now, stray);
}

int store_stats(struct store *st, struct store_stats *out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->stats == NULL)
		return -ENOSYS;
	STORE_READ(ops->stats(st, out));
}

void store_debug_counters(struct store *st, struct store_debug_counters *out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->debug_counters != NULL)
		ops->debug_counters(st, out);
	else
		memset(out, 0, sizeof(*out));
}

void store_status(struct store *st, struct store_status *out)
{
	const struct store_ops *ops = store_ops_of(st);
	memset(out, 0, sizeof(*out));
	out->available = true;
	out->replica_available = true;
	if (ops->status != NULL)
		ops->status(st, out);
}

int store_debug_list_plan(struct store *st, const struct store_filter *f, const char *cursor,
			  char **plan)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->debug_list_plan == NULL)
		return -ENOSYS;
	return ops->debug_list_plan(st, f, cursor, plan);
}

int store_slbl_get(struct store *st, const char *recipient, struct store_slbl **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->slbl_get == NULL)
		return -ENOSYS;
	return ops->slbl_get(st, recipient, out);
}

static void store_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int store_slbl_put(struct store *st, const struct store_slbl *l, size_t max_entries,
		   int64_t *version)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->slbl_put == NULL)
		return -ENOSYS;
	if (l == NULL)
		return -EINVAL;
	struct store_slbl_clean c = {0};
	char *rcpt = NULL;
	int64_t v = 0;
	int rc = -EINVAL;
	if (store_slbl_normalize(l->recipient, true, &rcpt) < 0)
		goto fail;
	c.recipient = rcpt;
	if (store_slbl_clean_list(l->safelist, l->nsafelist, &c.lists[0], &c.nlists[0]) < 0 ||
	    store_slbl_clean_list(l->blocklist, l->nblocklist, &c.lists[1], &c.nlists[1]) < 0)
		goto fail;
	rc = -E2BIG;
	if (c.nlists[0] > max_entries || c.nlists[1] > max_entries)
		goto fail;
	rc = ops->slbl_put(st, &c, &v);
	if (rc < 0)
		goto fail;
	log_debug("store.slbl_put", "recipient=%s safelist=%zu blocklist=%zu version=%lld", rcpt,
		  c.nlists[0], c.nlists[1], (long long)v);
	if (version != NULL)
		*version = v;
	rc = 0;
fail:
	store_strv_free(c.lists[0], c.nlists[0]);
	store_strv_free(c.lists[1], c.nlists[1]);
	free(rcpt);
	return rc;
}

int store_slbl_changes(struct store *st, int64_t since, size_t limit, struct store_slbl ***out,
		       size_t *n, int64_t *version)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->slbl_changes == NULL)
		return -ENOSYS;
	STORE_READ(ops->slbl_changes(st, since, limit, out, n, version));
}

int store_user_add(struct store *st, const struct store_user *u)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_add == NULL)
		return -ENOSYS;
	return ops->user_add(st, u);
}

int store_user_get(struct store *st, const char *username, struct store_user **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_get == NULL)
		return -ENOSYS;
	return ops->user_get(st, username, out);
}

int store_user_list(struct store *st, struct store_user ***out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_list == NULL)
		return -ENOSYS;
	return ops->user_list(st, out, n);
}

int store_user_count(struct store *st, uint64_t *count)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_count == NULL)
		return -ENOSYS;
	return ops->user_count(st, count);
}

int store_user_delete(struct store *st, const char *username)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_delete == NULL)
		return -ENOSYS;
	return ops->user_delete(st, username);
}

int store_user_set_prefs(struct store *st, const char *username, const char *language,
			 const char *time_zone)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_set_prefs == NULL)
		return -ENOSYS;
	return ops->user_set_prefs(st, username, language, time_zone);
}

int store_user_set_last_login(struct store *st, const char *username, int64_t at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->user_set_last_login == NULL)
		return -ENOSYS;
	return ops->user_set_last_login(st, username, at);
}

void store_totp_free(struct store_totp *t)
{
	if (t == NULL)
		return;
	free(t->secret);
	free(t);
}

int store_totp_get(struct store *st, const char *username, struct store_totp **out)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	if (ops->totp_get == NULL)
		return -ENOSYS;
	if (username == NULL || *username == '\0')
		return -EINVAL;
	return ops->totp_get(st, username, out);
}

static int store_totp_run(struct store *st, const struct store_totp_change *ch)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->totp_change == NULL)
		return -ENOSYS;
	if (ch->username == NULL || *ch->username == '\0')
		return -EINVAL;
	return ops->totp_change(st, ch);
}

int store_totp_begin(struct store *st, const char *username, const char *secret, int64_t now)
{
	if (secret == NULL || *secret == '\0')
		return -EINVAL;
	struct store_totp_change ch = {
	    .op = STORE_TOTP_BEGIN, .username = username, .secret = secret, .now = now};
	return store_totp_run(st, &ch);
}

int store_totp_confirm(struct store *st, const char *username, int64_t step, int64_t now,
		       const char *const *hashes, size_t n)
{
	if (n > STORE_TOTP_RECOVERY_CODES || (n > 0 && hashes == NULL))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (hashes[i] == NULL || *hashes[i] == '\0')
			return -EINVAL;
	}
	struct store_totp_change ch = {.op = STORE_TOTP_CONFIRM,
				       .username = username,
				       .step = step,
				       .now = now,
				       .hashes = hashes,
				       .nhashes = n};
	return store_totp_run(st, &ch);
}

int store_totp_use_step(struct store *st, const char *username, int64_t step)
{
	struct store_totp_change ch = {
	    .op = STORE_TOTP_USE_STEP, .username = username, .step = step};
	return store_totp_run(st, &ch);
}

int store_totp_use_recovery(struct store *st, const char *username, const char *hash, int64_t now)
{
	if (hash == NULL || *hash == '\0')
		return -EINVAL;
	struct store_totp_change ch = {
	    .op = STORE_TOTP_USE_RECOVERY, .username = username, .hash = hash, .now = now};
	return store_totp_run(st, &ch);
}

int store_totp_delete(struct store *st, const char *username)
{
	struct store_totp_change ch = {.op = STORE_TOTP_DELETE, .username = username};
	return store_totp_run(st, &ch);
}

int store_session_add(struct store *st, const char *token_hash, const struct store_session *s)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->session_add == NULL)
		return -ENOSYS;
	return ops->session_add(st, token_hash, s);
}

int store_session_get(struct store *st, const char *token_hash, struct store_session **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->session_get == NULL)
		return -ENOSYS;
	return ops->session_get(st, token_hash, out);
}

int store_session_touch(struct store *st, const char *token_hash, int64_t expires_at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->session_touch == NULL)
		return -ENOSYS;
	return ops->session_touch(st, token_hash, expires_at);
}

int store_session_delete(struct store *st, const char *token_hash)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->session_delete == NULL)
		return -ENOSYS;
	return ops->session_delete(st, token_hash);
}

int store_session_purge(struct store *st, int64_t now, int64_t created_before, uint64_t *purged)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->session_purge == NULL)
		return -ENOSYS;
	return ops->session_purge(st, now, created_before, purged);
}

int store_audit_add(struct store *st, const struct store_audit *a)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->audit_add == NULL)
		return -ENOSYS;
	return ops->audit_add(st, a);
}

int store_audit_list(struct store *st, size_t limit, int64_t before_seq, struct store_audit ***out,
		     size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->audit_list == NULL)
		return -ENOSYS;
	STORE_READ(ops->audit_list(st, limit, before_seq, out, n));
}

int store_digest_user_by_address(struct store *st, const char *address,
				 struct store_digest_user **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_user_by_address == NULL)
		return -ENOSYS;
	return ops->digest_user_by_address(st, address, out);
}

int store_digest_user_by_name(struct store *st, const char *username,
			      struct store_digest_user **out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_user_by_name == NULL)
		return -ENOSYS;
	return ops->digest_user_by_name(st, username, out);
}

int store_digest_max_seq(struct store *st, int64_t *out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_max_seq == NULL)
		return -ENOSYS;
	return ops->digest_max_seq(st, out);
}

int store_digest_candidates(struct store *st, const char *q, int64_t after, int64_t upto,
			    char ***out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_candidates == NULL)
		return -ENOSYS;
	return ops->digest_candidates(st, q, after, upto, out, n);
}

int store_digest_entries(struct store *st, const char *q, const char *address, int64_t after,
			 int64_t upto, size_t limit, struct store_digest_entry **out, size_t *n,
			 size_t *total)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_entries == NULL)
		return -ENOSYS;
	return ops->digest_entries(st, q, address, after, upto, limit, out, n, total);
}

int store_digest_state_get(struct store *st, const char *address, int64_t *last_seq,
			   int64_t *last_sent_at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_state_get == NULL)
		return -ENOSYS;
	return ops->digest_state_get(st, address, last_seq, last_sent_at);
}

int store_digest_state_put(struct store *st, const char *const *addresses, size_t n,
			   int64_t last_seq, int64_t sent_at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_state_put == NULL)
		return -ENOSYS;
	return ops->digest_state_put(st, addresses, n, last_seq, sent_at);
}

int store_digest_token_used(struct store *st, const char *nonce, bool *used)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_token_used == NULL)
		return -ENOSYS;
	return ops->digest_token_used(st, nonce, used);
}

int store_digest_token_use(struct store *st, const char *nonce, int64_t now, int64_t expires_at)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->digest_token_use == NULL)
		return -ENOSYS;
	return ops->digest_token_use(st, nonce, now, expires_at);
}

/* --- the gateway registry ------------------------------------------------ */

static bool store_gateway_chars_ok(const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;
	if (n == 0 || n > max)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			return false;
	}
	return true;
}

bool store_gateway_name_ok(const char *name)
{
	return store_gateway_chars_ok(name, STORE_GATEWAY_NAME_MAX);
}

bool store_gateway_version_ok(const char *v)
{
	size_t n = v != NULL ? strlen(v) : 0;
	if (n == 0 || n > STORE_GATEWAY_VERSION_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			return false;
	}
	return true;
}

int store_gateway_address_canonical(const char *in, char out[STORE_GATEWAY_ADDRESS_MAX + 1])
{
	unsigned char bin[16];
	char buf[INET6_ADDRSTRLEN];
	if (in == NULL || strlen(in) > STORE_GATEWAY_ADDRESS_MAX)
		return -EINVAL;
	if (inet_pton(AF_INET, in, bin) == 1) {
		if (inet_ntop(AF_INET, bin, buf, sizeof(buf)) == NULL)
			return -EINVAL;
	} else if (inet_pton(AF_INET6, in, bin) == 1) {
		/* an IPv4 client on a dual-stack socket is the same gateway as over IPv4 */
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		bool v4 = memcmp(bin, mapped, sizeof(mapped)) == 0;
		if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? bin + 12 : bin, buf, sizeof(buf)) ==
		    NULL)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	snprintf(out, STORE_GATEWAY_ADDRESS_MAX + 1, "%s", buf);
	return 0;
}

void store_gateway_free(struct store_gateway *g)
{
	if (g == NULL)
		return;
	free(g->name);
	free(g->address);
	free(g->group);
	free(g->cluster);
	free(g->token_hash);
	free(g->version);
	free(g->outbreak_version);
	free(g->mapping);
	store_migration_notice_clear(&g->notice);
	free(g);
}

void store_migration_notice_clear(struct store_migration_notice *n)
{
	if (n == NULL)
		return;
	free(n->gateway);
	free(n->to);
	free(n->reply);
	memset(n, 0, sizeof(*n));
}

void store_migration_notice_array_free(struct store_migration_notice *v, size_t n)
{
	for (size_t i = 0; i < n && v != NULL; i++)
		store_migration_notice_clear(&v[i]);
	free(v);
}

void store_gateway_array_free(struct store_gateway **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_gateway_free(v[i]);
	free(v);
}

/*
 * g checked, with its address canonical in addr and the default port applied:
 * what the backends are given (they check nothing again). 0 or -EINVAL.
 */
static int store_gateway_clean(const struct store_gateway *g, bool registered,
			       char addr[STORE_GATEWAY_ADDRESS_MAX + 1], struct store_gateway *out)
{
	if (g == NULL || !store_gateway_name_ok(g->name) || store_gateway_reserved(g->name) ||
	    store_gateway_address_canonical(g->address, addr) < 0 ||
	    (g->group != NULL && !store_gateway_chars_ok(g->group, STORE_GATEWAY_LEVEL_MAX)) ||
	    (g->cluster != NULL && !store_gateway_chars_ok(g->cluster, STORE_GATEWAY_LEVEL_MAX)) ||
	    (g->version != NULL && !store_gateway_version_ok(g->version)) ||
	    g->release_port > 65535)
		return -EINVAL;
	if (registered && (g->token_hash == NULL || g->token_hash[0] == '\0'))
		return -EINVAL;
	*out = *g;
	out->address = addr;
	out->state = registered ? STORE_GATEWAY_REGISTERED : STORE_GATEWAY_PENDING;
	if (out->release_port == 0)
		out->release_port = STORE_GATEWAY_DEFAULT_RELEASE_PORT;
	if (!registered)
		out->token_hash = NULL;
	return 0;
}

int store_gateway_add(struct store *st, const struct store_gateway *g)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_add == NULL)
		return -ENOSYS;
	char addr[STORE_GATEWAY_ADDRESS_MAX + 1];
	struct store_gateway clean;
	if (store_gateway_clean(g, true, addr, &clean) < 0)
		return -EINVAL;
	return ops->gateway_add(st, &clean);
}

int store_gateway_list(struct store *st, struct store_gateway ***out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->gateway_list == NULL)
		return -ENOSYS;
	return ops->gateway_list(st, out, n);
}

int store_gateway_get(struct store *st, const char *name, struct store_gateway **out)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	if (ops->gateway_get == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(name))
		return -ENOENT; /* no gateway can have it */
	return ops->gateway_get(st, name, out);
}

int store_gateway_get_by_address(struct store *st, const char *address, struct store_gateway **out)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	if (ops->gateway_get_by_address == NULL)
		return -ENOSYS;
	char addr[STORE_GATEWAY_ADDRESS_MAX + 1];
	if (store_gateway_address_canonical(address, addr) < 0)
		return -EINVAL;
	return ops->gateway_get_by_address(st, addr, out);
}

int store_gateway_get_by_token_hash(struct store *st, const char *token_hash,
				    struct store_gateway **out)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	if (ops->gateway_get_by_token_hash == NULL)
		return -ENOSYS;
	if (token_hash == NULL || token_hash[0] == '\0')
		return -ENOENT;
	return ops->gateway_get_by_token_hash(st, token_hash, out);
}

int store_gateway_remove(struct store *st, const char *name)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_remove == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_remove(st, name);
}

int store_gateway_touch(struct store *st, const char *name, int64_t now, const char *version)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_touch == NULL)
		return -ENOSYS;
	if (version != NULL && !store_gateway_version_ok(version))
		return -EINVAL;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_touch(st, name, now, version);
}

int store_gateway_pending_put(struct store *st, const struct store_gateway *g, size_t max_pending,
			      int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_pending_put == NULL)
		return -ENOSYS;
	char addr[STORE_GATEWAY_ADDRESS_MAX + 1];
	struct store_gateway clean;
	if (store_gateway_clean(g, false, addr, &clean) < 0)
		return -EINVAL;
	return ops->gateway_pending_put(st, &clean, max_pending, now);
}

int store_gateway_set_central(struct store *st, const char *name, unsigned central)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_set_central == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_set_central(
	    st, name,
	    central & (STORE_CENTRAL_PVO | STORE_CENTRAL_REPORTING | STORE_CENTRAL_TRACKING));
}

int store_gateway_outbreak_version(struct store *st, const char *name, const char *version,
				   int64_t now, bool *changed)
{
	*changed = false;
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_outbreak_version == NULL)
		return -ENOSYS;
	if (version == NULL || !store_gateway_version_ok(version))
		return -EINVAL;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_outbreak_version(st, name, version, now, changed);
}

int store_gateway_set_levels(struct store *st, const char *name, const char *group,
			     const char *cluster)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->gateway_set_levels == NULL)
		return -ENOSYS;
	if ((group != NULL && !store_gateway_chars_ok(group, STORE_GATEWAY_LEVEL_MAX)) ||
	    (cluster != NULL && !store_gateway_chars_ok(cluster, STORE_GATEWAY_LEVEL_MAX)))
		return -EINVAL;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_set_levels(st, name, group, cluster);
}

bool store_migration_next(const struct store_migration *cur, const struct store_migration *r,
			  int64_t now, struct store_migration *next, bool *first_done)
{
	*first_done = false;
	*next = *cur;
	if (cur->state != STORE_MIGRATION_NONE && r->run < cur->run)
		return false; /* an older run's late report */
	if (cur->state == STORE_MIGRATION_DONE && r->run == cur->run)
		return false; /* done already: a retry, or a late "running" */
	if (cur->state == STORE_MIGRATION_NONE || r->run > cur->run) {
		*next = (struct store_migration){.run = r->run};
	}
	next->state = r->state;
	next->total = r->total;
	next->done = r->done;
	next->failed = r->failed;
	if (r->state == STORE_MIGRATION_DONE) {
		next->finished_at = now;
		next->notified_at = now;
		*first_done = true;
	}
	return true;
}

int store_gateway_set_mapping(struct store *st, const char *name, const char *mapping,
			      struct store_migration *busy)
{
	const struct store_ops *ops = store_ops_of(st);
	struct store_migration none = {0};
	if (busy != NULL)
		*busy = none;
	if (ops->gateway_set_mapping == NULL)
		return -ENOSYS;
	if (mapping != NULL && (mapping[0] != '{' || strlen(mapping) > STORE_GATEWAY_MAPPING_MAX))
		return -EINVAL;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_set_mapping(st, name, mapping, busy != NULL ? busy : &none);
}

/* A notice's address: 3 to 254 bytes of printable ASCII without blanks. */
static bool store_notice_to_ok(const char *to)
{
	size_t n = strlen(to);
	if (n < 3 || n > 254)
		return false;
	for (const unsigned char *p = (const unsigned char *)to; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return false;
	return true;
}

int store_gateway_migration_report(struct store *st, const char *name,
				   const struct store_migration *r, const char *notify, int64_t now,
				   struct store_migration *out, bool *first_done)
{
	const struct store_ops *ops = store_ops_of(st);
	memset(out, 0, sizeof(*out));
	*first_done = false;
	if (ops->gateway_migration_report == NULL)
		return -ENOSYS;
	if (r == NULL ||
	    (r->state != STORE_MIGRATION_RUNNING && r->state != STORE_MIGRATION_DONE) ||
	    r->run <= 0 || r->total < 0 || r->done < 0 || r->failed < 0 || r->done > r->total ||
	    r->failed > r->total - r->done)
		return -EINVAL;
	if (notify != NULL && !store_notice_to_ok(notify))
		return -EINVAL;
	if (!store_gateway_name_ok(name))
		return -ENOENT;
	return ops->gateway_migration_report(st, name, r, notify, now, out, first_done);
}

int store_migration_notice_due(struct store *st, int64_t now, size_t limit,
			       struct store_migration_notice **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->notice_due == NULL)
		return -ENOSYS;
	if (limit == 0)
		return -EINVAL;
	return ops->notice_due(st, now, limit, out, n);
}

int store_migration_notice_set(struct store *st, int64_t id, int64_t old_next, int tries,
			       int64_t next, bool sent, int64_t last_try, const char *reply)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->notice_set == NULL)
		return -ENOSYS;
	if (id <= 0 || tries < 0 || next < 0 || last_try < 0)
		return -EINVAL;
	char *cut = NULL;
	if (reply != NULL && strlen(reply) > STORE_NOTICE_REPLY_MAX) {
		/* cut on a character's first byte: the text stays UTF-8 */
		size_t k = STORE_NOTICE_REPLY_MAX;
		while (k > 0 && ((unsigned char)reply[k] & 0xc0) == 0x80)
			k--;
		cut = xstrndup(reply, k);
	}
	int rc = ops->notice_set(st, id, old_next, tries, next, sent, last_try,
				 cut != NULL ? cut : reply);
	free(cut);
	return rc;
}

/* --- centralization levels -------------------------------------------------- */

void store_level_clear(struct store_level *l)
{
	if (l == NULL)
		return;
	free(l->level);
	free(l->name);
	free(l->filters);
	memset(l, 0, sizeof(*l));
}

void store_level_array_free(struct store_level *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_level_clear(&v[i]);
	free(v);
}

bool store_level_kind_ok(const char *level)
{
	return level != NULL && (strcmp(level, "cluster") == 0 || strcmp(level, "group") == 0 ||
				 strcmp(level, "machine") == 0);
}

static bool store_level_flag_ok(int v)
{
	return v == 0 || v == 1 || v == STORE_LEVEL_UNSET;
}

int store_level_list(struct store *st, struct store_level **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->level_list == NULL)
		return -ENOSYS;
	return ops->level_list(st, out, n);
}

int store_level_put(struct store *st, const struct store_level *l)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->level_put == NULL)
		return -ENOSYS;
	if (l == NULL || !store_level_kind_ok(l->level) ||
	    !store_gateway_chars_ok(l->name, STORE_GATEWAY_LEVEL_MAX) ||
	    !store_level_flag_ok(l->pvo) || !store_level_flag_ok(l->reporting) ||
	    !store_level_flag_ok(l->tracking) ||
	    (l->filters != NULL && strlen(l->filters) > STORE_LEVEL_FILTERS_MAX))
		return -EINVAL;
	return ops->level_put(st, l);
}

/* --- shared by every backend -------------------------------------------- */

static const char *const store_state_names[] = {
    [STORE_RCPT_QUARANTINED] = "quarantined", [STORE_RCPT_RELEASING] = "releasing",
    [STORE_RCPT_RELEASED] = "released",	      [STORE_RCPT_DELETED] = "deleted",
    [STORE_RCPT_EXPIRED] = "expired",	      [STORE_RCPT_FAILED] = "failed",
};

const char *store_rcpt_state_name(enum store_rcpt_state s)
{
	if ((unsigned)s >= sizeof(store_state_names) / sizeof(store_state_names[0]))
		return "unknown";
	return store_state_names[s];
}

static const char *const store_membership_state_names[] = {"held", "released", "deleted",
							   "expired"};

const char *store_membership_state_name(enum store_membership_state s)
{
	if ((unsigned)s >=
	    sizeof(store_membership_state_names) / sizeof(store_membership_state_names[0]))
		return "unknown";
	return store_membership_state_names[s];
}

static const char *const store_rescan_state_names[] = {"none", "pending", "clean", "kept",
						       "requarantined"};

const char *store_rescan_state_name(enum store_rescan_state s)
{
	if ((unsigned)s >= sizeof(store_rescan_state_names) / sizeof(store_rescan_state_names[0]))
		return "unknown";
	return store_rescan_state_names[s];
}

int store_filter_check(const struct store_filter *f, int *state)
{
	*state = -1;
	if (f->nids > STORE_BULK_MAX_IDS || f->naddresses > STORE_USER_MAX_ADDRESSES ||
	    (f->nids > 0 && f->ids == NULL) || (f->naddresses > 0 && f->addresses == NULL) ||
	    f->npvo_quarantines > STORE_OPERATOR_MAX_QUARANTINES ||
	    (f->npvo_quarantines > 0 && f->pvo_quarantines == NULL))
		return -EINVAL;
	if (f->state != NULL && f->state[0] != '\0') {
		enum store_rcpt_state s;
		if (store_rcpt_state_parse(f->state, &s) < 0)
			return -EINVAL;
		*state = (int)s;
	}
	return 0;
}

int store_rcpt_state_parse(const char *name, enum store_rcpt_state *out)
{
	if (name == NULL)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(store_state_names) / sizeof(store_state_names[0]); i++) {
		if (strcmp(name, store_state_names[i]) == 0) {
			*out = (enum store_rcpt_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

void store_new_message_free(struct store_new_message *m)
{
	if (m == NULL)
		return;
	free(m->quarantine);
	free(m->sender);
	for (size_t i = 0; i < m->nrecipients; i++)
		free(m->recipients[i]);
	free(m->recipients);
	free(m->gateway);
	free(m->client_address);
	free(m->verdict);
	free(m->from);
	free(m->from_addr);
	free(m->to);
	free(m->subject);
	free(m->message_id);
	for (size_t i = 0; i < m->nattachments; i++) {
		free(m->attachments[i].filename);
		free(m->attachments[i].content_type);
	}
	free(m->attachments);
	free(m->raw);
	free(m->packed);
	for (size_t i = 0; i < m->nmemberships; i++) {
		free(m->memberships[i].quarantine);
		free(m->memberships[i].reason);
	}
	free(m->memberships);
	free(m->origin_gateway);
	free(m->origin_id);
	free(m);
}

int store_new_message_prepare(struct store_new_message *m)
{
	if (m->packed != NULL)
		return 0;
	size_t bound = ZSTD_compressBound(m->raw_len);
	void *buf = xmalloc(bound > 0 ? bound : 1);
	size_t n = ZSTD_compress(buf, bound, m->raw != NULL ? m->raw : (const void *)"", m->raw_len,
				 STORE_ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		log_error("store.compress_failed", "id=%s error=%s", m->id, ZSTD_getErrorName(n));
		free(buf);
		return -EIO;
	}
	m->packed = buf;
	m->packed_len = n;
	return 0;
}

void store_message_free(struct store_message *m)
{
	if (m == NULL)
		return;
	free(m->quarantine);
	free(m->sender);
	for (size_t i = 0; i < m->nrecipients; i++) {
		free(m->recipients[i].address);
		free(m->recipients[i].reply);
	}
	free(m->recipients);
	free(m->from);
	free(m->from_addr);
	free(m->to);
	free(m->subject);
	free(m->message_id);
	free(m->verdict);
	free(m->gateway);
	free(m->client_address);
	for (size_t i = 0; i < m->nattachments; i++) {
		free(m->attachments[i].filename);
		free(m->attachments[i].content_type);
	}
	free(m->attachments);
	for (size_t i = 0; i < m->nmemberships; i++) {
		free(m->memberships[i].quarantine);
		free(m->memberships[i].type);
		free(m->memberships[i].reason);
		free(m->memberships[i].rescan_rule);
	}
	free(m->memberships);
	free(m);
}

void store_message_array_free(struct store_message **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		store_message_free(v[i]);
	free(v);
}

void store_delivery_free(struct store_delivery *d)
{
	if (d == NULL)
		return;
	free(d->sender);
	free(d->gateway);
	for (size_t i = 0; i < d->nrcpts; i++)
		free(d->rcpts[i]);
	free(d->rcpts);
	free(d);
}

void store_quarantine_stats_free(struct store_quarantine_stats *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].type);
		free(v[i].default_action);
		for (size_t k = 0; k < v[i].noperators; k++)
			free(v[i].operators[k]);
		free(v[i].operators);
	}
	free(v);
}

int store_body_unpack(const char *id, const char *codec, const void *data, size_t dlen,
		      uint64_t size, unsigned char **out)
{
	if (size > STORE_BODY_MAX) {
		log_error("store.body_corrupt", "id=%s size=%llu", id, (unsigned long long)size);
		return -EIO;
	}
	unsigned char *buf = xmalloc(size > 0 ? size : 1);
	if (codec != NULL && strcmp(codec, "none") == 0) {
		if (dlen != size) {
			free(buf);
			log_error("store.body_corrupt", "id=%s codec=none", id);
			return -EIO;
		}
		if (size > 0)
			memcpy(buf, data, size);
	} else if (codec != NULL && strcmp(codec, "zstd") == 0) {
		size_t n = ZSTD_decompress(buf, size, data, dlen);
		if (ZSTD_isError(n) || n != size) {
			free(buf);
			log_error("store.body_corrupt", "id=%s codec=zstd error=%s", id,
				  ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size");
			return -EIO;
		}
	} else {
		free(buf);
		log_error("store.body_corrupt", "id=%s codec=%s", id, codec != NULL ? codec : "?");
		return -EIO;
	}
	*out = buf;
	return 0;
}

/* --- several processes on one database ------------------------------------ */

int store_nodes(struct store *st, int64_t since, struct store_node **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->nodes == NULL)
		return -ENOSYS;
	*out = NULL;
	*n = 0;
	STORE_READ(ops->nodes(st, since, out, n));
}

void store_node_array_free(struct store_node *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].version);
	}
	free(v);
}

const char *store_node_name(struct store *st)
{
	const struct store_ops *ops = store_ops_of(st);
	return ops->node_name != NULL ? ops->node_name(st) : "";
}

int store_job_try(struct store *st, const char *name, bool *held)
{
	const struct store_ops *ops = store_ops_of(st);
	*held = false;
	if (name == NULL || name[0] == '\0')
		return -EINVAL;
	if (ops->job_try == NULL)
		return -ENOSYS;
	return ops->job_try(st, name, held);
}

void store_job_done(struct store *st, const char *name)
{
	const struct store_ops *ops = store_ops_of(st);
	if (name != NULL && ops->job_done != NULL)
		ops->job_done(st, name);
}

int store_secret_get(struct store *st, const char *name, unsigned char *out, size_t len)
{
	const struct store_ops *ops = store_ops_of(st);
	if (name == NULL || name[0] == '\0' || len == 0 || len > STORE_SECRET_MAX)
		return -EINVAL;
	if (ops->secret_get == NULL)
		return -ENOSYS;
	return ops->secret_get(st, name, out, len);
}

int store_secret_add(struct store *st, const char *name, const unsigned char *value, size_t len,
		     unsigned char *out)
{
	const struct store_ops *ops = store_ops_of(st);
	if (name == NULL || name[0] == '\0' || value == NULL || len == 0 || len > STORE_SECRET_MAX)
		return -EINVAL;
	if (ops->secret_add == NULL)
		return -ENOSYS;
	return ops->secret_add(st, name, value, len, out);
}

int store_snapshot(struct store *st, const char *path)
{
	const struct store_ops *ops = store_ops_of(st);
	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	if (ops->snapshot == NULL)
		return -ENOSYS;
	return ops->snapshot(st, path);
}

/* --- scheduled reports and their archive ------------------------------------ */

void store_report_schedule_clear(struct store_report_schedule *s)
{
	if (s == NULL)
		return;
	free(s->report);
	free(s->period);
	free(s->every);
	free(s->format);
	free(s->recipients);
	free(s->created_by);
	free(s->time_zone);
	memset(s, 0, sizeof(*s));
}

void store_report_schedule_array_free(struct store_report_schedule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_report_schedule_clear(&v[i]);
	free(v);
}

void store_report_archived_clear(struct store_report_archived *a)
{
	if (a == NULL)
		return;
	free(a->report);
	free(a->period);
	free(a->format);
	free(a->data);
	free(a->mail_pending);
	memset(a, 0, sizeof(*a));
}

void store_report_archived_array_free(struct store_report_archived *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_report_archived_clear(&v[i]);
	free(v);
}

/* A short name of letters, digits, '_' and '-'. */
static bool store_sched_name_ok(const char *s)
{
	if (s == NULL || s[0] == '\0' || strlen(s) > STORE_SCHED_NAME_MAX)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	return true;
}

static bool store_sched_format_ok(const char *f)
{
	return f != NULL && (strcmp(f, "pdf") == 0 || strcmp(f, "csv") == 0);
}

/* A tz database name as the API takes it: letters, digits, "/_+-", no "..". */
static bool store_sched_zone_ok(const char *z)
{
	if (z == NULL || z[0] == '\0' || z[0] == '/' || strlen(z) > STORE_SCHED_NAME_MAX ||
	    strstr(z, "..") != NULL)
		return false;
	for (const char *p = z; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("/_+-", *p) != NULL))
			return false;
	return true;
}

static bool store_sched_ok(const struct store_report_schedule *s)
{
	return s != NULL && store_sched_name_ok(s->report) && store_sched_name_ok(s->period) &&
	       s->every != NULL &&
	       (strcmp(s->every, "daily") == 0 || strcmp(s->every, "weekly") == 0 ||
		strcmp(s->every, "monthly") == 0) &&
	       store_sched_format_ok(s->format) && s->recipients != NULL &&
	       s->recipients[0] != '\0' && strlen(s->recipients) <= STORE_SCHED_RECIPIENTS_MAX &&
	       s->next_run > 0 && s->at_minute >= 0 && s->at_minute < 1440 &&
	       (s->time_zone == NULL || store_sched_zone_ok(s->time_zone));
}

int store_report_schedule_add(struct store *st, const struct store_report_schedule *s, int64_t *id)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->sched_add == NULL)
		return -ENOSYS;
	if (!store_sched_ok(s) || s->created_by == NULL)
		return -EINVAL;
	return ops->sched_add(st, s, id);
}

int store_report_schedule_update(struct store *st, const struct store_report_schedule *s)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->sched_update == NULL)
		return -ENOSYS;
	if (!store_sched_ok(s) || s->id <= 0)
		return -EINVAL;
	return ops->sched_update(st, s);
}

int store_report_schedule_list(struct store *st, struct store_report_schedule **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->sched_list == NULL)
		return -ENOSYS;
	return ops->sched_list(st, out, n);
}

int store_report_schedule_delete(struct store *st, int64_t id)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->sched_delete == NULL)
		return -ENOSYS;
	return ops->sched_delete(st, id);
}

int store_report_schedule_claim(struct store *st, int64_t id, int64_t old_next, int64_t new_next,
				int64_t now)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->sched_claim == NULL)
		return -ENOSYS;
	if (new_next <= old_next)
		return -EINVAL;
	return ops->sched_claim(st, id, old_next, new_next, now);
}

int store_report_archive_add(struct store *st, const struct store_report_archived *a, int64_t *id)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->archive_add == NULL)
		return -ENOSYS;
	if (a == NULL || !store_sched_name_ok(a->report) || !store_sched_name_ok(a->period) ||
	    !store_sched_format_ok(a->format) || a->data == NULL ||
	    a->size > STORE_ARCHIVE_DATA_MAX || a->to < a->from || a->mail_tries < 0 ||
	    a->mail_next < 0 ||
	    (a->mail_pending != NULL && strlen(a->mail_pending) > STORE_SCHED_RECIPIENTS_MAX))
		return -EINVAL;
	return ops->archive_add(st, a, id);
}

int store_report_archive_list(struct store *st, size_t limit, struct store_report_archived **out,
			      size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->archive_list == NULL)
		return -ENOSYS;
	return ops->archive_list(st, limit, out, n);
}

int store_report_archive_get(struct store *st, int64_t id, struct store_report_archived *out)
{
	const struct store_ops *ops = store_ops_of(st);
	memset(out, 0, sizeof(*out));
	if (ops->archive_get == NULL)
		return -ENOSYS;
	return ops->archive_get(st, id, out);
}

int store_report_backfill(struct store *st, const char *gateway, int64_t cutoff,
			  const struct store_rollup_in *v, size_t n, bool done, int64_t now,
			  size_t *stored)
{
	const struct store_ops *ops = store_ops_of(st);
	size_t dummy = 0;
	if (stored == NULL)
		stored = &dummy;
	*stored = 0;
	if (ops->report_backfill == NULL)
		return -ENOSYS;
	if (gateway == NULL || gateway[0] == '\0' || (n > 0 && v == NULL) || cutoff <= 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (v[i].report < 0 || v[i].report >= STORE_REPORT_NREPORTS || v[i].gran < 0 ||
		    v[i].gran >= STORE_REPORT_NGRANS || v[i].key == NULL || v[i].bucket < 0 ||
		    store_report_bucket(v[i].gran, v[i].bucket) != v[i].bucket ||
		    store_report_bucket_end(v[i].gran, v[i].bucket) > cutoff)
			return -EINVAL;
		for (int k = 0; k < STORE_REPORT_NCOUNTERS; k++)
			if (v[i].c[k] < 0)
				return -EINVAL;
	}
	return ops->report_backfill(st, gateway, cutoff, v, n, done, now, stored);
}

void store_rollup_rows_free(struct store_rollup_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].key);
	free(v);
}

int store_report_export(struct store *st, int gran, int64_t before,
			const struct store_rollup_row *after, size_t limit,
			struct store_rollup_row **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->report_export == NULL)
		return -ENOSYS;
	if (gran < 0 || gran >= STORE_REPORT_NGRANS || limit == 0 || after == NULL ||
	    (after->key != NULL && (after->report < 0 || after->report >= STORE_REPORT_NREPORTS)))
		return -EINVAL;
	return ops->report_export(st, gran, before, after, limit, out, n);
}

int store_report_backfill_state(struct store *st, const char *gateway, int64_t *done_at)
{
	const struct store_ops *ops = store_ops_of(st);
	*done_at = 0;
	if (ops->report_backfill_state == NULL)
		return -ENOSYS;
	if (gateway == NULL)
		return -EINVAL;
	return ops->report_backfill_state(st, gateway, done_at);
}

int store_report_archive_purge(struct store *st, int64_t before, size_t limit, size_t *removed)
{
	const struct store_ops *ops = store_ops_of(st);
	size_t dummy = 0;
	if (removed == NULL)
		removed = &dummy;
	*removed = 0;
	if (ops->archive_purge == NULL)
		return -ENOSYS;
	if (limit == 0)
		return -EINVAL;
	return ops->archive_purge(st, before, limit, removed);
}

int store_report_archive_mail_due(struct store *st, int64_t now, size_t limit,
				  struct store_report_archived **out, size_t *n)
{
	const struct store_ops *ops = store_ops_of(st);
	*out = NULL;
	*n = 0;
	if (ops->archive_mail_due == NULL)
		return -ENOSYS;
	if (limit == 0)
		return -EINVAL;
	return ops->archive_mail_due(st, now, limit, out, n);
}

int store_report_archive_mail_set(struct store *st, int64_t id, int64_t old_next,
				  const char *pending, int tries, int64_t next)
{
	const struct store_ops *ops = store_ops_of(st);
	if (ops->archive_mail_set == NULL)
		return -ENOSYS;
	if (id <= 0 || tries < 0 || next < 0 ||
	    (pending != NULL && strlen(pending) > STORE_SCHED_RECIPIENTS_MAX))
		return -EINVAL;
	return ops->archive_mail_set(st, id, old_next, pending != NULL ? pending : "", tries, next);
}
