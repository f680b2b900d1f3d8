/*
 * api_read — the reader-thread pool of the REST API (see api_read.h): admission,
 * deferral, the store budget, the reply back on the loop thread, and shutdown.
 * Not for: what a read queries or how its JSON looks (api.c, api_users.c).
 *
 * One read moves through:
 *
 *   api_read_submit   (loop) pending < threads + queue_max, else 503 + Retry-After;
 *                     defer the request, link the job on the pending list, queue
 *   api_read_work     (reader thread) skipped when stopping; else the thread's
 *                     read deadline is set and its reads may use the replica
 *                     ([store] read_dsn), the read function fills the reply,
 *                     both are cleared; posts api_read_done
 *   api_read_done     (loop) unlinks; counts and logs a timeout; finish; replies
 *   api_read_free     (loop) skips the queue, waits for running reads, answers
 *                     every job still pending 503 (the daemon is stopping)
 *
 * Only the loop thread touches the pending list and the configuration; a reader
 * thread touches only its job. A client that left meanwhile costs nothing more:
 * the HTTP layer drops a reply to a closed connection.
 */
#include "api/api_read.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "quarantine/metrics.h"
#include "store/store.h"

struct api_read_job {
	struct api_read *r;
	struct http_server_request *req; /* deferred */
	const char *what;
	api_read_fn fn;
	api_read_finish_fn finish;
	api_read_free_fn ctx_free;
	void *ctx;
	int64_t timeout_ms; /* < 0: none */
	struct api_read_reply reply;
	struct api_read_job *prev, *next;
};

struct api_read {
	struct workpool *pool;
	struct loopq *loopq;
	unsigned threads;
	unsigned queue_max;
	int64_t timeout_ms;
	atomic_bool stopping;
	struct api_read_job *pending; /* between submit and reply */
	size_t npending;
};

/* The budget of the read running on this reader thread, for its error message. */
static _Thread_local int64_t api_read_budget_ms;

static void api_read_reply_clear(struct api_read_reply *out)
{
	json_decref(out->json);
	free(out->bytes);
	free(out->disposition);
	if (out->has_file)
		close(out->fd);
	memset(out, 0, sizeof(*out));
}

void api_read_reply_json(struct api_read_reply *out, int status, json_t *body)
{
	char *disposition = out->disposition;
	out->disposition = NULL;
	api_read_reply_clear(out);
	out->disposition = disposition;
	out->status = status;
	out->json = body != NULL ? body : json_object();
}

void api_read_reply_page(struct api_read_reply *out, json_t *messages, char *next)
{
	json_t *body = json_pack("{s:o, s:o}", "messages", messages, "next_cursor",
				 http_json_string_or_null(next));
	free(next);
	if (body == NULL)
		panic("api_read: cannot build a page");
	api_read_reply_json(out, 200, body);
}

void api_read_reply_error(struct api_read_reply *out, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		panic("api_read: out of memory");
	va_end(ap);
	api_read_reply_clear(out);
	out->status = status;
	out->json = http_json_error_body(http_server_status_code(status), msg);
	free(msg);
}

void api_read_reply_file(struct api_read_reply *out, int status, const char *content_type, int fd,
			 size_t len)
{
	char *disposition = out->disposition;
	out->disposition = NULL;
	api_read_reply_clear(out);
	out->disposition = disposition;
	out->status = status;
	out->content_type = content_type;
	out->fd = fd;
	out->has_file = true;
	out->len = len;
}

void api_read_reply_bytes(struct api_read_reply *out, int status, const char *content_type,
			  unsigned char *bytes, size_t len)
{
	char *disposition = out->disposition;
	out->disposition = NULL;
	api_read_reply_clear(out);
	out->disposition = disposition;
	out->status = status;
	out->bytes = bytes;
	out->len = len;
	out->content_type = content_type;
}

void api_read_reply_store_error(struct api_read_reply *out, const char *call, int rc)
{
	if (rc == -ETIMEDOUT) {
		api_read_reply_clear(out);
		char *msg = xasprintf("the query ran longer than %lld ms and was stopped; narrow "
				      "the search (a longer subject term, a sender, a recipient or "
				      "a time range)",
				      (long long)api_read_budget_ms);
		out->status = 503;
		out->json = http_json_error_body("query_timeout", msg);
		out->store_rc = rc;
		free(msg);
		return;
	}
	if (store_error_unavailable(rc)) {
		log_warn("api.store_unavailable", "call=%s", call);
		api_read_reply_error(out, 503, API_STORE_UNAVAILABLE_TEXT);
		out->store_rc = -ENOTCONN;
		return;
	}
	log_error("api.store_error", "call=%s error=%s", call, strerror(-rc));
	api_read_reply_error(out, 500, "the quarantine store failed (%s)", strerror(-rc));
	out->store_rc = rc;
}

struct api_actor *api_read_actor_copy(const struct api_actor *who)
{
	const char *name = who->username != NULL ? who->username : "";
	size_t size =
	    sizeof(struct api_actor) + who->naddresses * sizeof(char *) + strlen(name) + 1;
	for (size_t i = 0; i < who->naddresses; i++)
		size += strlen(who->addresses[i]) + 1;
	struct api_actor *c = xcalloc(1, size);
	const char **addrs = (const char **)(c + 1);
	char *p = (char *)(addrs + who->naddresses);
	*c = *who;
	for (size_t i = 0; i < who->naddresses; i++) {
		size_t n = strlen(who->addresses[i]) + 1;
		memcpy(p, who->addresses[i], n);
		addrs[i] = p;
		p += n;
	}
	c->addresses = who->naddresses > 0 ? addrs : NULL;
	memcpy(p, name, strlen(name) + 1);
	c->username = p;
	return c;
}

static void api_read_unlink(struct api_read_job *j)
{
	struct api_read *r = j->r;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		r->pending = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
	r->npending--;
}

static void api_read_job_free(struct api_read_job *j)
{
	api_read_reply_clear(&j->reply);
	if (j->ctx_free != NULL)
		j->ctx_free(j->ctx);
	free(j);
}

/* Loop thread: answers the deferred request with the job's reply. */
static void api_read_send(struct api_read_job *j)
{
	struct api_read_reply *out = &j->reply;
	if (out->status == 0) /* a read function that answered nothing: a bug */
		panic("api_read: the %s read gave no reply", j->what);
	if (out->disposition != NULL)
		http_server_add_header(j->req, "Content-Disposition", out->disposition);
	if (out->store_rc == -ENOTCONN)
		http_server_add_header(j->req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
	if (out->json != NULL) {
		http_server_reply_json(j->req, out->status, out->json);
		out->json = NULL;
	} else if (out->has_file) {
		http_server_reply_file(j->req, out->status, out->content_type, out->fd, out->len);
		out->has_file = false;
	} else {
		http_server_reply_bytes(j->req, out->status, out->content_type, out->bytes,
					out->len);
	}
}

static void api_read_done(void *arg)
{
	struct api_read_job *j = arg;
	api_read_unlink(j);
	if (j->reply.store_rc == -ETIMEDOUT) {
		metrics_add(METRICS_API_QUERY_TIMEOUTS, 1);
		log_warn("api.query_timeout", "what=%s budget_ms=%lld peer=%s", j->what,
			 (long long)j->timeout_ms, http_server_request_peer(j->req));
	}
	if (j->finish != NULL)
		j->finish(j->req, j->ctx, &j->reply);
	api_read_send(j);
	api_read_job_free(j);
}

static void api_read_work(void *arg)
{
	struct api_read_job *j = arg;
	struct api_read *r = j->r;
	if (!atomic_load(&r->stopping)) {
		api_read_budget_ms = j->timeout_ms;
		store_read_deadline_set(j->timeout_ms);
		store_read_replica_set(true); /* every read here tolerates a lagging copy */
		j->fn(j->ctx, &j->reply);
		store_read_replica_set(false);
		store_read_deadline_clear();
	}
	loopq_post(r->loopq, api_read_done, j);
}

void api_read_submit(struct api_read *r, struct http_server_request *req, const char *what,
		     api_read_fn fn, api_read_finish_fn finish, void *ctx,
		     api_read_free_fn ctx_free)
{
	if (r->npending >= (size_t)r->threads + r->queue_max) {
		/* Every thread is busy and the queue is full: refuse now rather than pile up. */
		metrics_add(METRICS_API_READ_BUSY, 1);
		log_warn("api.read_busy", "what=%s queued=%zu peer=%s", what, r->npending,
			 http_server_request_peer(req));
		http_server_add_header(req, "Retry-After", "1");
		http_server_reply_error(req, 503,
					"too many queries in progress; try again shortly");
		if (ctx_free != NULL)
			ctx_free(ctx);
		return;
	}
	struct api_read_job *j = xcalloc(1, sizeof(*j));
	j->r = r;
	j->what = what;
	j->fn = fn;
	j->finish = finish;
	j->ctx = ctx;
	j->ctx_free = ctx_free;
	j->timeout_ms = r->timeout_ms;
	j->req = http_server_request_defer(req);
	j->next = r->pending;
	if (j->next != NULL)
		j->next->prev = j;
	r->pending = j;
	r->npending++;
	workpool_submit(r->pool, api_read_work, j);
}

struct api_read *api_read_new(struct event_base *base, unsigned threads)
{
	struct api_read *r = xcalloc(1, sizeof(*r));
	if (threads == 0)
		threads = API_READ_DEFAULT_THREADS;
	if (threads > API_READ_MAX_THREADS)
		threads = API_READ_MAX_THREADS;
	r->threads = threads;
	r->pool = workpool_new(threads);
	r->loopq = loopq_new(base);
	atomic_init(&r->stopping, false);
	api_read_configure(r, 0, 0);
	return r;
}

void api_read_configure(struct api_read *r, unsigned queue_max, int64_t timeout_ms)
{
	r->queue_max = queue_max != 0 ? queue_max : API_READ_DEFAULT_QUEUE_MAX;
	r->timeout_ms = timeout_ms == 0 ? API_READ_DEFAULT_TIMEOUT_MS : timeout_ms;
}

void api_read_free(struct api_read *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stopping, true);
	/* Queued reads are skipped, running ones end; their continuations go with the queue. */
	workpool_free(r->pool);
	loopq_free(r->loopq);
	while (r->pending != NULL) {
		struct api_read_job *j = r->pending;
		api_read_unlink(j);
		http_server_reply_error(j->req, 503, "the server is stopping");
		api_read_job_free(j);
	}
	free(r);
}
