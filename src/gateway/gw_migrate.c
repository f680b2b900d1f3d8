/*
 * gw_migrate — the migration of the local PVO quarantines to the manager (see
 * gw_migrate.h and docs/GATEWAY.md "Migration on enabling").
 *
 * Crash safety comes from the work list being the store itself: a message is
 * in the work list while it is still quarantined locally, and it leaves the
 * local store (one transaction, store_delete) only after the manager's 250. A
 * crash between the 250 and the local delete sends it again on restart, with the
 * same X-Lazaret-Origin-Id (a function of the gateway's name and the local id),
 * and the manager stores it once. The progress file only keeps the figures of
 * the run (its start, total, failed) and the mapping, written atomically; done
 * is recomputed on restart from what is left.
 */
#include "gateway/gw_migrate.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"
#include "gateway/delivery.h"
#include "gateway/disposition.h"
#include "gateway/filter.h"
#include "gateway/gw_api.h"
#include "gateway/pipeline.h"
#include "gateway/pvo_out.h"
#include "smtp/smtp_client.h"
#include "store/store.h"

/* Calls to the manager's API: connect and the whole call. */
#define GW_MIGRATE_API_TIMEOUT_MS 10000
/* A progress report every so often while a run goes. */
#define GW_MIGRATE_PROGRESS_MS 1000
/* Waits after a failed call or a deferred transfer: from the first to the last. */
#define GW_MIGRATE_BACKOFF_MIN_MS 1000
#define GW_MIGRATE_BACKOFF_MAX_MS 60000
/*
 * Transfers under way at once, each on its own connection: the manager commits
 * them together, and the gateway's workers keep the rest of the machine.
 */
#define GW_MIGRATE_CONNECTIONS 4
/* Messages listed at once. */
#define GW_MIGRATE_PAGE 100
/* The answer of the mapping call, at most. */
#define GW_MIGRATE_ANSWER_MAX (1024 * 1024)
/* Local quarantines the gateway can hold, at most (more are left for the next run). */
#define GW_MIGRATE_QUARANTINES_MAX 1024

static const char *const gw_migrate_system[] = {"virus", "outbreak", "unclassified"};

/* ---- the mapping ---- */

void gw_mapping_clear(struct gw_mapping *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->local[i]);
		free(m->central[i]);
	}
	free(m->local);
	free(m->central);
	memset(m, 0, sizeof(*m));
}

static void gw_mapping_copy(struct gw_mapping *dst, const struct gw_mapping *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->custom = src->custom;
	dst->n = src->n;
	dst->local = xcalloc(src->n + 1, sizeof(char *));
	dst->central = xcalloc(src->n + 1, sizeof(char *));
	for (size_t i = 0; i < src->n; i++) {
		dst->local[i] = xstrdup(src->local[i]);
		dst->central[i] = src->central[i] != NULL ? xstrdup(src->central[i]) : NULL;
	}
}

static int gw_mapping_from_json(const json_t *doc, struct gw_mapping *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	const json_t *mode = json_object_get(doc, "mode");
	const json_t *map = json_object_get(doc, "mapping");
	if (!json_is_object(doc) || !json_is_string(mode)) {
		*why = "no \"mode\"";
		return -EPROTO;
	}
	if (strcmp(json_string_value(mode), "custom") == 0)
		out->custom = true;
	else if (strcmp(json_string_value(mode), "automatic") != 0) {
		*why = "\"mode\" is neither automatic nor custom";
		return -EPROTO;
	}
	if (map == NULL || json_is_null(map))
		return 0;
	if (!json_is_object(map)) {
		*why = "\"mapping\" is not an object";
		return -EPROTO;
	}
	size_t n = json_object_size(map);
	out->local = xcalloc(n + 1, sizeof(char *));
	out->central = xcalloc(n + 1, sizeof(char *));
	const char *k;
	const json_t *v;
	json_object_foreach(unconst(map), k, v) /* jansson has no const iterator */
	{
		if (!json_is_null(v) && !json_is_string(v)) {
			*why = "a mapping's value is neither a name nor null";
			gw_mapping_clear(out);
			return -EPROTO;
		}
		if (json_is_string(v) && !pvo_out_name_ok(json_string_value(v))) {
			*why = "a mapping names a quarantine the manager cannot hold";
			gw_mapping_clear(out);
			return -EPROTO;
		}
		out->local[out->n] = xstrdup(k);
		out->central[out->n] = json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
		out->n++;
	}
	return 0;
}

int gw_mapping_parse(const char *body, size_t len, struct gw_mapping *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	json_error_t jerr;
	json_t *doc = body != NULL && len > 0 ? json_loadb(body, len, 0, &jerr) : NULL;
	if (doc == NULL) {
		*why = "the answer is not JSON";
		return -EPROTO;
	}
	int rc = gw_mapping_from_json(doc, out, why);
	json_decref(doc);
	return rc;
}

/* The system quarantines are named in lowercase on the manager. */
static void gw_mapping_central(const char *name, char *out, size_t cap)
{
	for (size_t k = 0; k < sizeof(gw_migrate_system) / sizeof(gw_migrate_system[0]); k++) {
		if (strcasecmp(name, gw_migrate_system[k]) == 0) {
			snprintf(out, cap, "%s", gw_migrate_system[k]);
			return;
		}
	}
	snprintf(out, cap, "%s", name);
}

int gw_mapping_resolve(const struct gw_mapping *m, const char *name, char *out, size_t cap)
{
	if (m->custom) {
		for (size_t i = 0; i < m->n; i++) {
			if (strcmp(m->local[i], name) != 0)
				continue;
			if (m->central[i] == NULL)
				return 0;
			gw_mapping_central(m->central[i], out, cap);
			return 1;
		}
	}
	gw_mapping_central(name, out, cap);
	return 1;
}

int gw_mapping_fetch(const struct gw_config *cfg, int64_t timeout_ms, struct gw_mapping *out,
		     char **why)
{
	memset(out, 0, sizeof(*out));
	*why = NULL;
	if (cfg->api_url == NULL) {
		*why = xstrdup("no [manager] api_url");
		return -EINVAL;
	}
	struct gw_api_call call = {
	    .api_url = cfg->api_url,
	    .path = "/api/v1/gateway/mapping",
	    .token = cfg->api_token,
	    .ca = cfg->api_ca,
	    .get = true,
	    .timeout_ms = timeout_ms,
	    .max_answer = GW_MIGRATE_ANSWER_MAX,
	};
	struct gw_api_answer ans;
	int rc = gw_api_post(&call, &ans);
	if (rc < 0) {
		*why = xstrdup(ans.error != NULL ? ans.error : strerror(-rc));
	} else if (ans.status != 200) {
		*why = xasprintf("HTTP %ld", ans.status);
		rc = -EPROTO;
	} else {
		const char *w = NULL;
		rc = gw_mapping_parse(ans.body.p, ans.body.len, out, &w);
		if (rc < 0)
			*why = xstrdup(w);
	}
	strbuf_free(&ans.body);
	return rc;
}

/* The mapping new transfers go by (gw_migrate_map_name). */
static pthread_mutex_t gw_map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_mapping gw_map_current;
static bool gw_map_known;

static void gw_map_set(const struct gw_mapping *m)
{
	struct gw_mapping copy;
	gw_mapping_copy(&copy, m);
	pthread_mutex_lock(&gw_map_lock);
	gw_mapping_clear(&gw_map_current);
	gw_map_current = copy;
	gw_map_known = true;
	pthread_mutex_unlock(&gw_map_lock);
}

void gw_migrate_map_name(const char *name, char *out, size_t cap)
{
	pthread_mutex_lock(&gw_map_lock);
	/* a null-mapped quarantine keeps its own name: its new mail is not deleted */
	if (!gw_map_known || gw_mapping_resolve(&gw_map_current, name, out, cap) == 0)
		snprintf(out, cap, "%s", name);
	pthread_mutex_unlock(&gw_map_lock);
}

/* ---- the run ---- */

struct gw_migrate_conf {
	char *name, *api_url, *api_token, *api_ca, *central, *notify, *data_dir, *helo, *source;
	int64_t timeout_ms, delete_after_ms;
};

struct gw_migrate {
	struct store *st;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started; /* a thread to join */
	bool busy;	     /* the thread runs */
	bool stop;
	bool running; /* messages are being moved */
	uint64_t done, total;
	struct gw_migrate_conf conf;
	void (*on_done)(void *arg);
	void *on_done_arg;
	/* the migration's connections to the manager, one per sender */
	struct smtp_client_session *sess[GW_MIGRATE_CONNECTIONS];
	/* local copies the manager has (or that go): deleted a page at a time */
	char pending[GW_MIGRATE_PAGE][37];
	size_t npending;
};

/* The progress of a run, as kept in GW_MIGRATE_STATE_FILE. */
struct gw_run {
	char run[CLOCK_RFC3339_LEN]; /* "" when there is none */
	bool finished;		     /* state "done" */
	bool reported;		     /* the manager has its final report */
	uint64_t total, done, failed, moved, deleted;
};

static void gw_conf_clear(struct gw_migrate_conf *c)
{
	free(c->name);
	free(c->api_url);
	free(c->api_token);
	free(c->api_ca);
	free(c->central);
	free(c->notify);
	free(c->data_dir);
	free(c->helo);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

struct gw_migrate *gw_migrate_new(struct store *st, void (*done)(void *arg), void *arg)
{
	struct gw_migrate *m = xcalloc(1, sizeof(*m));
	m->st = st;
	m->on_done = done;
	m->on_done_arg = arg;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return m;
}

/* Waits ms unless told to stop: true when it should stop. */
static bool gw_migrate_wait(struct gw_migrate *m, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
			break;
	}
	bool stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

static bool gw_migrate_stopping(struct gw_migrate *m)
{
	pthread_mutex_lock(&m->lock);
	bool stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

static char *gw_state_path(const struct gw_migrate_conf *c)
{
	return xasprintf("%s/%s", c->data_dir, GW_MIGRATE_STATE_FILE);
}

static json_t *gw_mapping_json(const struct gw_mapping *map)
{
	json_t *o = json_object();
	for (size_t i = 0; i < map->n; i++)
		json_object_set_new(o, map->local[i],
				    map->central[i] != NULL ? json_string(map->central[i])
							    : json_null());
	return json_pack("{s:s,s:o}", "mode", map->custom ? "custom" : "automatic", "mapping", o);
}

/* Writes the run's progress and the mapping (atomically). Logged when it fails. */
static void gw_state_save(const struct gw_migrate_conf *c, const struct gw_run *r,
			  const struct gw_mapping *map)
{
	json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:o}", "run", r->run, "state",
			      r->finished ? "done" : "running", "total", (json_int_t)r->total,
			      "done", (json_int_t)r->done, "failed", (json_int_t)r->failed, "moved",
			      (json_int_t)r->moved, "deleted", (json_int_t)r->deleted, "reported",
			      r->reported, "mapping", gw_mapping_json(map));
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL)
		panic("gw_migrate: cannot build the state");
	char *path = gw_state_path(c);
	int rc = write_file_atomic(path, text, strlen(text));
	if (rc < 0)
		log_error("gw.migration_state_failed", "path=%s error=\"%s\"", path, strerror(-rc));
	free(path);
	free(text);
}

/* Reads the kept state: 0, -ENOENT when there is none, -EPROTO when unreadable. */
static int gw_state_load(const struct gw_migrate_conf *c, struct gw_run *r, struct gw_mapping *map)
{
	memset(r, 0, sizeof(*r));
	memset(map, 0, sizeof(*map));
	char *path = gw_state_path(c), *text = NULL;
	size_t len = 0;
	int rc = read_file(path, GW_MIGRATE_ANSWER_MAX, &text, &len);
	free(path);
	if (rc < 0)
		return rc == -ENOENT ? -ENOENT : -EPROTO;
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, 0, &jerr);
	free(text);
	const char *run = json_string_value(json_object_get(doc, "run"));
	const char *state = json_string_value(json_object_get(doc, "state"));
	const char *why = NULL;
	if (doc == NULL || run == NULL || state == NULL ||
	    gw_mapping_from_json(json_object_get(doc, "mapping"), map, &why) < 0) {
		json_decref(doc);
		return -EPROTO;
	}
	snprintf(r->run, sizeof(r->run), "%s", run);
	r->finished = strcmp(state, "done") == 0;
	r->reported = json_is_true(json_object_get(doc, "reported"));
	r->total = (uint64_t)json_integer_value(json_object_get(doc, "total"));
	r->done = (uint64_t)json_integer_value(json_object_get(doc, "done"));
	r->failed = (uint64_t)json_integer_value(json_object_get(doc, "failed"));
	r->moved = (uint64_t)json_integer_value(json_object_get(doc, "moved"));
	r->deleted = (uint64_t)json_integer_value(json_object_get(doc, "deleted"));
	json_decref(doc);
	return 0;
}

/* POST /api/v1/gateway/migration: true on 200. */
static bool gw_report(const struct gw_migrate_conf *c, const struct gw_run *r)
{
	if (c->api_url == NULL || r->run[0] == '\0')
		return false;
	json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:o}", "run", r->run, "state",
			      r->finished ? "done" : "running", "total", (json_int_t)r->total,
			      "done", (json_int_t)r->done, "failed", (json_int_t)r->failed,
			      "notify", c->notify != NULL ? json_string(c->notify) : json_null());
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	struct gw_api_call call = {
	    .api_url = c->api_url,
	    .path = "/api/v1/gateway/migration",
	    .token = c->api_token,
	    .ca = c->api_ca,
	    .body = body,
	    .timeout_ms = GW_MIGRATE_API_TIMEOUT_MS,
	    .max_answer = 65536,
	};
	struct gw_api_answer ans;
	int rc = gw_api_post(&call, &ans);
	bool ok = rc == 0 && ans.status == 200;
	if (!ok && r->finished) {
		char q[256];
		log_warn("gw.migration_report_failed", "url=%s status=%ld error=%s", c->api_url,
			 ans.status,
			 log_quote(q, sizeof(q),
				   ans.error != NULL ? ans.error
				   : rc < 0	     ? strerror(-rc)
						     : "-"));
	}
	strbuf_free(&ans.body);
	free(body);
	return ok;
}

/* The local PVO quarantines (every one but spam) and their message counts. */
struct gw_local_q {
	char *name;
	uint64_t messages;
};

static int gw_local_quarantines(struct store *st, struct gw_local_q **out, size_t *n, uint64_t *sum)
{
	struct store_quarantine_stats *v = NULL;
	size_t nv = 0;
	*out = NULL;
	*n = 0;
	*sum = 0;
	int rc = store_quarantines(st, &v, &nv);
	if (rc < 0)
		return rc;
	*out = xcalloc(nv + 1, sizeof(**out));
	for (size_t i = 0; i < nv && *n < GW_MIGRATE_QUARANTINES_MAX; i++) {
		if (strcmp(v[i].name, "spam") == 0 || strcmp(v[i].name, STORE_PVO_MARKER) == 0)
			continue;
		(*out)[*n].name = xstrdup(v[i].name);
		(*out)[*n].messages = v[i].messages;
		*sum += v[i].messages;
		(*n)++;
	}
	store_quarantine_stats_free(v, nv);
	return 0;
}

static void gw_local_q_free(struct gw_local_q *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* The local message's copy without the X-Lazaret-* fields a sender may have put on. */
static unsigned char *gw_strip(const unsigned char *src, size_t srclen, size_t *len)
{
	static const char *const fields[] = {
	    "X-Lazaret-Gateway",	"X-Lazaret-Verdict",	"X-Lazaret-Score",
	    "X-Lazaret-Client-Address", "X-Lazaret-Quarantine", "X-Lazaret-Origin-Id",
	};
	unsigned char *cur = NULL;
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		size_t n = 0;
		unsigned char *next = disposition_strip_header(src, srclen, fields[k], &n);
		free(cur);
		cur = next;
		src = cur;
		srclen = n;
	}
	*len = srclen;
	return cur;
}

enum gw_move {
	GW_MOVE_MOVED,	  /* the manager has it; deleted locally */
	GW_MOVE_DELETED,  /* deleted locally: null-mapped or expired */
	GW_MOVE_FAILED,	  /* refused for good (5xx): left locally */
	GW_MOVE_DEFERRED, /* try again later */
	GW_MOVE_SKIPPED,  /* nothing to move (no recipient quarantined any more) */
};

/* Notes a local copy to delete with the next gw_pending_flush. */
static void gw_pending_add(struct gw_migrate *m, const char *id)
{
	snprintf(m->pending[m->npending++], sizeof(m->pending[0]), "%s", id);
}

/*
 * Deletes the noted local copies in one local transaction. When it fails they
 * stay, and the next pass sends them again under the same origin id: the
 * manager keeps one.
 */
static void gw_pending_flush(struct gw_migrate *m)
{
	if (m->npending == 0)
		return;
	const char *ids[GW_MIGRATE_PAGE];
	for (size_t i = 0; i < m->npending; i++)
		ids[i] = m->pending[i];
	struct store_filter f = {.ids = ids, .nids = m->npending};
	int changed = 0;
	int rc = store_delete_matching(m->st, &f, clock_now_ms(), &changed);
	if (rc < 0)
		log_error("gw.migration_delete_failed", "messages=%zu error=\"%s\"", m->npending,
			  strerror(-rc));
	m->npending = 0;
}

/*
 * One transfer over the migration's connection to the manager (opened when there
 * is none, kept for the next transfer, dropped when it broke): out as
 * delivery_send fills it.
 */
static void gw_send(struct gw_migrate *m, size_t k, const char *sender, const char *const *rcpts,
		    size_t n, const char *header, const unsigned char *body, size_t len,
		    struct delivery_outcome *out)
{
	const struct gw_migrate_conf *c = &m->conf;
	memset(out, 0, sizeof(*out));
	if (m->sess[k] == NULL) {
		struct smtp_client_options co = {
		    .helo_name = c->helo,
		    .source_address = c->source,
		    .timeout_ms = c->timeout_ms,
		    /* one message cannot hold the migration for ever, however slow the peer */
		    .session_timeout_ms = c->timeout_ms * 10,
		};
		int code = 0;
		char *why = NULL;
		if (smtp_client_session_open(c->central, &co, &m->sess[k], &code, &why) < 0) {
			out->status = code / 100 == 5 ? DELIVERY_REFUSED : DELIVERY_DEFERRED;
			out->reply = why != NULL ? why : xstrdup("no answer");
			out->refused = code / 100 == 5 ? n : 0;
			return;
		}
	}
	struct smtp_client_message msg = {
	    .sender = sender,
	    .rcpts = rcpts,
	    .nrcpts = n,
	    .header = header,
	    .body = body,
	    .body_len = len,
	};
	struct smtp_client_result res;
	if (smtp_client_session_send(m->sess[k], &msg, &res) < 0) {
		smtp_client_session_close(m->sess[k]);
		m->sess[k] = NULL;
	}
	size_t deferred = 0;
	for (size_t i = 0; i < res.nrcpts; i++) {
		const struct smtp_client_rcpt_result *r = &res.rcpts[i];
		const char *text = r->reply != NULL ? r->reply : "no reply";
		if (r->outcome == SMTP_CLIENT_REJECTED) {
			out->refused++;
			if (out->reply == NULL)
				out->reply = xstrdup(text);
		} else if (r->outcome == SMTP_CLIENT_DEFERRED) {
			deferred++;
			free(out->reply);
			out->reply = xstrdup(text);
		}
	}
	delivery_settle(&res, n, deferred, out);
	smtp_client_result_free(&res);
}

/* Drops the connection to the manager (before a wait, at the end). */
static void gw_send_close(struct gw_migrate *m)
{
	for (size_t k = 0; k < GW_MIGRATE_CONNECTIONS; k++) {
		smtp_client_session_close(m->sess[k]);
		m->sess[k] = NULL;
	}
}

static enum gw_move gw_move_one(struct gw_migrate *m, size_t k, const char *local,
				const struct gw_mapping *map, const struct store_message *msg)
{
	const struct gw_migrate_conf *c = &m->conf;
	int64_t now = clock_now_ms();
	const char **rcpts = xcalloc(msg->nrecipients + 1, sizeof(*rcpts));
	size_t nr = 0;
	for (size_t i = 0; i < msg->nrecipients; i++)
		if (msg->recipients[i].state == STORE_RCPT_QUARANTINED)
			rcpts[nr++] = msg->recipients[i].address;
	char central[STORE_QUARANTINE_NAME_MAX + 1];
	int64_t expires = msg->received_at + c->delete_after_ms;
	enum gw_move res;
	char q[512];
	int rc;
	if (nr == 0) {
		res = GW_MOVE_SKIPPED;
		goto out;
	}
	if (gw_mapping_resolve(map, local, central, sizeof(central)) == 0 || expires <= now) {
		/* null in the mapping, or expired: not migrated, deleted */
		res = GW_MOVE_DELETED;
		goto out;
	}
	if (!pvo_out_name_ok(central)) {
		log_warn("gw.migration_failed", "id=%s quarantine=%s reason=%s", msg->id,
			 log_quote(q, sizeof(q), local), "\"not a name the manager can hold\"");
		res = GW_MOVE_FAILED;
		goto out;
	}
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	if ((rc = store_get_raw(m->st, msg->id, &raw, &rawlen)) < 0) {
		res = rc == -ENOENT ? GW_MOVE_SKIPPED : GW_MOVE_DEFERRED;
		goto out;
	}
	size_t len = 0;
	unsigned char *body = gw_strip(raw, rawlen, &len);
	/* the reason the local store kept: its verdict, and where the message was */
	char *reason =
	    xasprintf("%s, migrated from %s", msg->verdict != NULL ? msg->verdict : "-", local);
	char *qline = pvo_out_quarantine_header(central, reason, msg->received_at, expires);
	char origin[PVO_OUT_ORIGIN_LEN];
	const char *idv[1] = {msg->id};
	pvo_out_origin_id(c->name, "migrate", idv, 1, NULL, 0, NULL, 0, origin);
	struct strbuf h = STRBUF_INIT;
	strbuf_printf(&h, "X-Lazaret-Gateway: %s\r\n", c->name);
	if (msg->client_address != NULL && msg->client_address[0] != '\0')
		strbuf_printf(&h, "X-Lazaret-Client-Address: %s\r\n", msg->client_address);
	strbuf_add(&h, qline, strlen(qline));
	strbuf_printf(&h, "X-Lazaret-Origin-Id: %s\r\n", origin);
	char *header = strbuf_take(&h);
	struct delivery_outcome out;
	gw_send(m, k, msg->sender != NULL ? msg->sender : "", rcpts, nr, header,
		body != NULL ? body : raw, body != NULL ? len : rawlen, &out);
	const char *reply = out.reply != NULL ? out.reply : "ok";
	if (out.status == DELIVERY_OK) {
		res = GW_MOVE_MOVED;
	} else if (out.status == DELIVERY_PARTLY_REFUSED) {
		/*
		 * The manager holds the recipients it took; the local copy stays for the
		 * ones it refused, so that none is lost. A later pass sends it again under
		 * the same origin id: the manager stores nothing twice.
		 */
		char lq[160];
		log_warn("gw.migration_failed", "id=%s quarantine=%s host=%s refused=%zu reply=%s",
			 msg->id, log_quote(lq, sizeof(lq), local), c->central, out.refused,
			 log_quote(q, sizeof(q), reply));
		res = GW_MOVE_FAILED;
	} else if (out.status == DELIVERY_REFUSED && strstr(reply, " expired at ") != NULL) {
		/* it expired on its way: the manager does not keep it, neither do we */
		res = GW_MOVE_DELETED;
	} else if (out.status == DELIVERY_REFUSED) {
		char lq[160];
		log_warn("gw.migration_failed", "id=%s quarantine=%s host=%s reply=%s", msg->id,
			 log_quote(lq, sizeof(lq), local), c->central,
			 log_quote(q, sizeof(q), reply));
		res = GW_MOVE_FAILED;
	} else {
		log_warn("gw.migration_deferred", "id=%s host=%s reply=%s", msg->id, c->central,
			 log_quote(q, sizeof(q), reply));
		res = GW_MOVE_DEFERRED;
	}
	delivery_outcome_clear(&out);
	free(header);
	free(qline);
	free(reason);
	free(body);
	free(raw);
out:
	free(rcpts);
	return res;
}

static void gw_progress(struct gw_migrate *m, const struct gw_run *r)
{
	pthread_mutex_lock(&m->lock);
	m->done = r->done + r->failed;
	m->total = r->total;
	pthread_mutex_unlock(&m->lock);
}

/* Fetches the mapping, retrying with backoff: 0, or -ECANCELED when stopping. */
static int gw_fetch_retrying(struct gw_migrate *m, struct gw_mapping *map)
{
	struct gw_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.api_url = m->conf.api_url;
	cfg.api_token = m->conf.api_token;
	cfg.api_ca = m->conf.api_ca;
	int64_t wait = GW_MIGRATE_BACKOFF_MIN_MS;
	for (;;) {
		char *why = NULL;
		if (gw_mapping_fetch(&cfg, GW_MIGRATE_API_TIMEOUT_MS, map, &why) == 0) {
			log_info("gw.migration_mapping", "mode=%s entries=%zu",
				 map->custom ? "custom" : "automatic", map->n);
			return 0;
		}
		char q[256];
		log_warn("gw.migration_mapping_failed", "url=%s error=%s retry_ms=%lld",
			 m->conf.api_url != NULL ? m->conf.api_url : "-",
			 log_quote(q, sizeof(q), why != NULL ? why : "?"), (long long)wait);
		free(why);
		if (gw_migrate_wait(m, wait))
			return -ECANCELED;
		wait = wait * 2 > GW_MIGRATE_BACKOFF_MAX_MS ? GW_MIGRATE_BACKOFF_MAX_MS : wait * 2;
	}
}

/* One sender of a page: messages k, k + K, k + 2K ... still to be moved. */
struct gw_sender {
	struct gw_migrate *m;
	size_t k;
	const char *name;
	const struct gw_mapping *map;
	struct store_message **v;
	size_t n;
	enum gw_move *res;
};

static void *gw_sender_main(void *arg)
{
	struct gw_sender *w = arg;
	for (size_t i = w->k; i < w->n; i += GW_MIGRATE_CONNECTIONS) {
		if (w->res[i] == GW_MOVE_DEFERRED)
			w->res[i] = gw_move_one(w->m, w->k, w->name, w->map, w->v[i]);
		if (w->res[i] == GW_MOVE_DEFERRED)
			break; /* the manager cannot take it now: the rest waits too */
	}
	return NULL;
}

/* Moves the page's messages marked GW_MOVE_DEFERRED over the connections. */
static void gw_move_page(struct gw_migrate *m, const char *name, const struct gw_mapping *map,
			 struct store_message **v, size_t n, enum gw_move *res)
{
	struct gw_sender w[GW_MIGRATE_CONNECTIONS];
	pthread_t t[GW_MIGRATE_CONNECTIONS];
	bool started[GW_MIGRATE_CONNECTIONS];
	for (size_t k = 0; k < GW_MIGRATE_CONNECTIONS; k++) {
		w[k] = (struct gw_sender){m, k, name, map, v, n, res};
		started[k] = k > 0 && pthread_create(&t[k], NULL, gw_sender_main, &w[k]) == 0;
	}
	gw_sender_main(&w[0]);
	for (size_t k = 1; k < GW_MIGRATE_CONNECTIONS; k++) {
		if (started[k])
			pthread_join(t[k], NULL);
		else
			gw_sender_main(&w[k]);
	}
}

/* Moves what local quarantine name holds. false when stopping. */
static bool gw_migrate_quarantine(struct gw_migrate *m, const char *name,
				  const struct gw_mapping *map, struct gw_run *r,
				  int64_t *last_report)
{
	char *cursor = NULL;
	bool go = true;
	int64_t wait = GW_MIGRATE_BACKOFF_MIN_MS;
	for (;;) {
		struct store_filter f = {.quarantine = name, .state = "quarantined"};
		struct store_message **v = NULL;
		size_t n = 0;
		char *next = NULL;
		int rc = store_list(m->st, &f, GW_MIGRATE_PAGE, cursor, &v, &n, &next);
		if (rc < 0) {
			log_warn("gw.migration_store_failed", "error=\"%s\"", strerror(-rc));
			free(next);
			if (gw_migrate_wait(m, wait)) {
				go = false;
				break;
			}
			continue;
		}
		/* the page's messages, K at a time; the deferred ones again after a wait */
		enum gw_move *res = xcalloc(n + 1, sizeof(*res));
		for (size_t i = 0; i < n; i++)
			res[i] = strcmp(v[i]->quarantine, name) == 0 ? GW_MOVE_DEFERRED
								     : GW_MOVE_SKIPPED;
		for (;;) {
			gw_move_page(m, name, map, v, n, res);
			size_t deferred = 0;
			for (size_t i = 0; i < n; i++) {
				switch (res[i]) {
				case GW_MOVE_MOVED:
					r->moved++;
					r->done++;
					gw_pending_add(m, v[i]->id);
					break;
				case GW_MOVE_DELETED:
					r->deleted++;
					r->done++;
					gw_pending_add(m, v[i]->id);
					break;
				case GW_MOVE_FAILED:
					r->failed++;
					break;
				case GW_MOVE_DEFERRED:
					deferred++;
					continue;
				default:
					break;
				}
				res[i] = GW_MOVE_SKIPPED; /* accounted for */
			}
			gw_progress(m, r);
			int64_t now = clock_mono_ms();
			if (now - *last_report >= GW_MIGRATE_PROGRESS_MS) {
				*last_report = now;
				gw_pending_flush(m);
				gw_state_save(&m->conf, r, map);
				log_info("gw.migration_progress",
					 "total=%llu done=%llu moved=%llu failed=%llu deleted=%llu",
					 (unsigned long long)r->total, (unsigned long long)r->done,
					 (unsigned long long)r->moved,
					 (unsigned long long)r->failed,
					 (unsigned long long)r->deleted);
				(void)gw_report(&m->conf, r);
			}
			if (gw_migrate_stopping(m)) {
				go = false;
				break;
			}
			if (deferred == 0) {
				wait = GW_MIGRATE_BACKOFF_MIN_MS;
				break;
			}
			gw_send_close(m);
			gw_pending_flush(m);
			if (gw_migrate_wait(m, wait)) {
				go = false;
				break;
			}
			wait = wait * 2 > GW_MIGRATE_BACKOFF_MAX_MS ? GW_MIGRATE_BACKOFF_MAX_MS
								    : wait * 2;
		}
		free(res);
		gw_pending_flush(m);
		store_message_array_free(v, n);
		free(cursor);
		cursor = next;
		if (!go || cursor == NULL)
			break;
	}
	free(cursor);
	return go;
}

static void *gw_migrate_main(void *arg)
{
	struct gw_migrate *m = arg;
	struct gw_run r;
	struct gw_mapping map, kept;
	memset(&map, 0, sizeof(map));
	int lrc = gw_state_load(&m->conf, &r, &kept);
	if (lrc == 0)
		gw_map_set(&kept); /* new transfers go by it until the manager says */
	gw_mapping_clear(&kept);
	if (lrc < 0)
		memset(&r, 0, sizeof(r));

	struct gw_local_q *qs = NULL;
	size_t nq = 0;
	uint64_t left = 0;
	int rc = gw_local_quarantines(m->st, &qs, &nq, &left);
	if (rc < 0) {
		log_error("gw.migration_store_failed", "error=\"%s\"", strerror(-rc));
		goto done_qs;
	}
	bool resumed = r.run[0] != '\0' && !r.finished;
	if (m->conf.api_url == NULL) {
		/* without the manager's API there is no mapping: the messages stay */
		if (resumed || left > 0)
			log_warn("gw.migration_waiting",
				 "messages=%llu reason=\"no [manager] api_url: the local PVO "
				 "quarantines keep their messages\"",
				 (unsigned long long)left);
		goto done_qs;
	}
	if (resumed || left > 0) {
		/* the run has begun: the local PVO quarantines take no mail any more */
		pthread_mutex_lock(&m->lock);
		m->running = true;
		m->done = 0;
		m->total = resumed && r.total > left ? r.total : left;
		pthread_mutex_unlock(&m->lock);
	}
	if (gw_fetch_retrying(m, &map) < 0)
		goto done_qs;
	gw_map_set(&map);
	if (resumed) {
		/* a run a restart cut short: the same run goes on */
		r.failed = 0;
		if (left > r.total)
			r.total = left;
		r.done = r.total - left;
		/* the figures written last may be behind: what is gone counts */
		if (r.deleted > r.done)
			r.deleted = r.done;
		r.moved = r.done - r.deleted;
		log_info("gw.migration_resumed", "run=%s total=%llu done=%llu", r.run,
			 (unsigned long long)r.total, (unsigned long long)r.done);
	} else if (left > 0) {
		memset(&r, 0, sizeof(r));
		clock_format_rfc3339(clock_now_ms(), r.run);
		r.total = left;
		log_info("gw.migration_started", "total=%llu run=%s", (unsigned long long)left,
			 r.run);
	} else {
		/* nothing to move; a final report the manager never got is sent again */
		gw_state_save(&m->conf, &r, &map);
		if (r.run[0] != '\0' && !r.reported)
			goto report_final;
		goto done_qs;
	}
	gw_progress(m, &r);
	gw_state_save(&m->conf, &r, &map);
	(void)gw_report(&m->conf, &r);
	int64_t last = clock_mono_ms();
	for (size_t i = 0; i < nq; i++) {
		if (qs[i].messages == 0)
			continue;
		if (!gw_migrate_quarantine(m, qs[i].name, &map, &r, &last)) {
			gw_state_save(&m->conf, &r, &map);
			goto done_qs;
		}
	}
	gw_send_close(m);
	/* the emptied local quarantines go (the system ones stay: they always exist) */
	gw_local_q_free(qs, nq);
	qs = NULL;
	nq = 0;
	uint64_t left_over = 0;
	if (gw_local_quarantines(m->st, &qs, &nq, &left_over) == 0) {
		for (size_t i = 0; i < nq; i++) {
			if (qs[i].messages > 0)
				continue;
			rc = store_quarantine_delete(m->st, qs[i].name);
			char q[160];
			if (rc == 0)
				log_info("gw.local_quarantine_deleted", "name=%s",
					 log_quote(q, sizeof(q), qs[i].name));
		}
	}
	r.finished = true;
	if (r.done + r.failed > r.total)
		r.total = r.done + r.failed;
	gw_state_save(&m->conf, &r, &map);
	gw_progress(m, &r);
	log_info("gw.migration_done", "total=%llu moved=%llu failed=%llu deleted=%llu",
		 (unsigned long long)r.total, (unsigned long long)r.moved,
		 (unsigned long long)r.failed, (unsigned long long)r.deleted);
	pthread_mutex_lock(&m->lock);
	m->running = false;
	pthread_mutex_unlock(&m->lock);
	if (m->on_done != NULL)
		m->on_done(m->on_done_arg);
report_final:;
	int64_t wait = GW_MIGRATE_BACKOFF_MIN_MS;
	while (!gw_report(&m->conf, &r)) {
		if (gw_migrate_wait(m, wait))
			goto done_qs;
		wait = wait * 2 > GW_MIGRATE_BACKOFF_MAX_MS ? GW_MIGRATE_BACKOFF_MAX_MS : wait * 2;
	}
	r.reported = true;
	gw_state_save(&m->conf, &r, &map);
done_qs:
	gw_send_close(m);
	gw_pending_flush(m);
	gw_local_q_free(qs, nq);
	gw_mapping_clear(&map);
	pthread_mutex_lock(&m->lock);
	m->running = false;
	m->busy = false;
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

void gw_migrate_start(struct gw_migrate *m, const struct gw_config *cfg,
		      const char *central_hostport)
{
	if (m == NULL || central_hostport == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	if (m->busy || m->stop) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started) {
		pthread_join(m->thread, NULL);
		m->thread_started = false;
	}
	gw_conf_clear(&m->conf);
	m->conf.name = xstrdup(cfg->name);
	m->conf.api_url = cfg->api_url != NULL ? xstrdup(cfg->api_url) : NULL;
	m->conf.api_token = cfg->api_token != NULL ? xstrdup(cfg->api_token) : NULL;
	m->conf.api_ca = cfg->api_ca != NULL ? xstrdup(cfg->api_ca) : NULL;
	m->conf.central = xstrdup(central_hostport);
	m->conf.notify = cfg->central_pvo_notify != NULL ? xstrdup(cfg->central_pvo_notify) : NULL;
	m->conf.data_dir = xstrdup(cfg->data_dir);
	m->conf.helo = cfg->hostname != NULL ? xstrdup(cfg->hostname) : NULL;
	m->conf.source = cfg->source_address != NULL ? xstrdup(cfg->source_address) : NULL;
	m->conf.timeout_ms = cfg->delivery_timeout_ms;
	m->conf.delete_after_ms = cfg->quarantines_delete_after_ms;
	m->busy = true;
	if (pthread_create(&m->thread, NULL, gw_migrate_main, m) != 0)
		panic("gw_migrate: cannot start the thread");
	m->thread_started = true;
}

bool gw_migrate_running(struct gw_migrate *m, uint64_t *done, uint64_t *total)
{
	if (m == NULL)
		return false;
	pthread_mutex_lock(&m->lock);
	bool running = m->running;
	*done = m->done;
	*total = m->total;
	pthread_mutex_unlock(&m->lock);
	return running;
}

void gw_migrate_free(struct gw_migrate *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	gw_conf_clear(&m->conf);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

/* ---- lazaret-gw --migration-plan ---- */

struct gw_plan_names {
	char **v;
	size_t n;
};

static void gw_plan_name(const char *name, void *arg)
{
	struct gw_plan_names *p = arg;
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i], name) == 0)
			return;
	p->v = xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
	p->v[p->n++] = xstrdup(name);
}

int gw_migrate_plan(const struct pipeline_rules *rules)
{
	const struct gw_config *cfg = &rules->cfg;
	struct gw_mapping map;
	char *why = NULL;
	if (gw_mapping_fetch(cfg, GW_MIGRATE_API_TIMEOUT_MS, &map, &why) < 0) {
		fprintf(stderr,
			"lazaret-gw: cannot get the quarantine mapping from the manager (%s): %s\n",
			cfg->api_url != NULL ? cfg->api_url : "no [manager] api_url",
			why != NULL ? why : "?");
		free(why);
		return 1;
	}
	char *path = xasprintf("%s/lazaret.db", cfg->data_dir);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	sqlite3_stmt *s = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
		    db,
		    "SELECT q.name, (SELECT count(*) FROM messages m WHERE m.quarantine = q.name"
		    " AND EXISTS (SELECT 1 FROM recipients r WHERE r.msg_id = m.id AND r.state = "
		    "0))"
		    " FROM quarantines q WHERE q.type <> 'spam' AND q.name <> '" STORE_PVO_MARKER
		    "' ORDER BY q.name",
		    -1, &s, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "lazaret-gw: cannot read the local store %s: %s\n", path,
			db != NULL ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		free(path);
		gw_mapping_clear(&map);
		return 1;
	}
	printf("mapping: %s\n", map.custom ? "custom" : "automatic");
	char central[STORE_QUARANTINE_NAME_MAX + 1];
	struct strbuf del = STRBUF_INIT;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		long long count = sqlite3_column_int64(s, 1);
		if (gw_mapping_resolve(&map, name, central, sizeof(central)) == 0)
			strbuf_printf(&del, "delete: %s: %lld messages (not migrated)\n", name,
				      count);
		else
			printf("move: %s: %lld messages -> %s\n", name, count, central);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(path);
	if (del.len > 0)
		fputs(del.p, stdout);
	strbuf_free(&del);
	struct gw_plan_names fn = {0}, on = {0};
	if (rules->filters != NULL)
		filter_set_each_quarantine(rules->filters, gw_plan_name, &fn);
	for (size_t i = 0; i < fn.n; i++) {
		const char *local = pipeline_quarantine_name(fn.v[i]);
		if (gw_mapping_resolve(&map, local, central, sizeof(central)) == 0)
			printf("filter: quarantine(\"%s\") -> %s (null in the mapping: its own "
			       "name)\n",
			       fn.v[i], local);
		else
			printf("filter: quarantine(\"%s\") -> %s\n", fn.v[i], central);
		free(fn.v[i]);
	}
	if (rules->outbreak != NULL) {
		filter_set_each_quarantine(rules->outbreak, gw_plan_name, &on);
		if (gw_mapping_resolve(&map, "outbreak", central, sizeof(central)) == 0)
			snprintf(central, sizeof(central), "outbreak");
		printf("outbreak: rules -> %s\n", central);
	}
	for (size_t i = 0; i < on.n; i++)
		free(on.v[i]);
	free(fn.v);
	free(on.v);
	gw_mapping_clear(&map);
	return 0;
}
