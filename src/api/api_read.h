/*
 * api_read — the REST API's reads (listings, searches, a message's detail, raw
 * bytes, attachments, quarantine totals, the audit log, the safelist CSV export)
 * off the event loop: a bounded pool of reader threads that run the store query
 * and build the reply body, while the loop thread only checks the request, hands
 * it over and writes the answer. A search that scans half a second of rows then delays neither
 * /healthz nor an SMTP greeting on the same loop.
 *
 * Contract of a read: the handler (loop thread) does every check that needs the
 * request or the api (authentication, roles, CSRF, parameters) and copies what
 * the read needs into its own context; api_read_submit defers the request. The
 * read function (reader thread) sees only that context and the store; it fills
 * a struct api_read_reply and touches nothing else. Its store calls share one
 * budget, [http] query_timeout (store_read_deadline_set). The finish function,
 * if any, runs on the loop thread just before the reply goes out (the audit row
 * of a download) and never for a read that was dropped at shutdown.
 */
#ifndef LAZARET_API_READ_H
#define LAZARET_API_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct http_server_request;
struct api_actor;

/* Reader threads by default, and the most a configuration may ask for. */
#define API_READ_DEFAULT_THREADS 4
#define API_READ_MAX_THREADS	 64
/* Reads waiting for a free reader thread (besides the running ones) by default. */
#define API_READ_DEFAULT_QUEUE_MAX 64
/* The store time budget of one read by default (ms). */
#define API_READ_DEFAULT_TIMEOUT_MS 5000

/* What a read answers: JSON, or bytes of a content type, and optional extras. */
struct api_read_reply {
	int status;		  /* HTTP status; 0 until set */
	json_t *json;		  /* the body as JSON, or NULL for bytes */
	unsigned char *bytes;	  /* else these bytes (free()d after the reply) */
	size_t len;		  /* of bytes */
	const char *content_type; /* of bytes: a string constant */
	char *disposition;	  /* Content-Disposition, or NULL */
	int store_rc;		  /* the store error that made the answer, or 0 */
	int fd; /* else, when has_file, this file's first len bytes (closed after) */
	bool has_file;
};

/* The answer while the store's database cannot be reached (503, code unavailable),
 * and its Retry-After in seconds. */
#define API_STORE_UNAVAILABLE_TEXT                                                                 \
	"the quarantine store is unavailable: its database cannot be reached; try again shortly"
#define API_STORE_UNAVAILABLE_RETRY "5"

struct api_read;

/* Reader thread: answers the read described by ctx into out. */
typedef void (*api_read_fn)(void *ctx, struct api_read_reply *out);
/* Loop thread: runs just before out is sent (req is the deferred request). */
typedef void (*api_read_finish_fn)(struct http_server_request *req, void *ctx,
				   const struct api_read_reply *out);
typedef void (*api_read_free_fn)(void *ctx);

/* Starts threads (1..API_READ_MAX_THREADS; 0: the default) reader threads on base. */
struct api_read *api_read_new(struct event_base *base, unsigned threads);
/*
 * The queue bound (0: default) and the store budget of one read in ms (0: default;
 * < 0: none). Reads already queued keep the budget they were given.
 */
void api_read_configure(struct api_read *r, unsigned queue_max, int64_t timeout_ms);
/*
 * Stops: reads not started yet are skipped, running ones end (within their
 * budget), and every request still waiting is answered 503 "the server is
 * stopping" (which reaches the client only if the HTTP server gets to write it
 * before it closes the connection). Call before the HTTP server is freed. NULL
 * is a no-op.
 */
void api_read_free(struct api_read *r);

/*
 * Loop thread: runs fn(ctx) on a reader thread and answers req with its reply
 * (finish, may be NULL, first). When every thread is busy and queue_max reads
 * already wait, answers 503 with Retry-After: 1 at once, counts it in /metrics
 * (lazaret_api_read_busy_total) and logs api.read_busy. what names the read in
 * logs ("list", "raw", ...; a string constant). ctx is freed with ctx_free in
 * every case, after the reply.
 */
void api_read_submit(struct api_read *r, struct http_server_request *req, const char *what,
		     api_read_fn fn, api_read_finish_fn finish, void *ctx,
		     api_read_free_fn ctx_free);

/* Reader-thread helpers filling a reply (each replaces what was there). */
void api_read_reply_json(struct api_read_reply *out, int status, json_t *body);
/* 200 with a page of a listing: {"messages": messages, "next_cursor": next or null};
 * takes messages and next (free()d). */
void api_read_reply_page(struct api_read_reply *out, json_t *messages, char *next);
void api_read_reply_error(struct api_read_reply *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes bytes (free()d after the reply). */
void api_read_reply_bytes(struct api_read_reply *out, int status, const char *content_type,
			  unsigned char *bytes, size_t len);
/* Takes fd: its first len bytes are the body, sent as the connection drains. */
void api_read_reply_file(struct api_read_reply *out, int status, const char *content_type, int fd,
			 size_t len);
/*
 * A store call failed with rc: -ETIMEDOUT (over budget) answers 503 with the
 * code "query_timeout" and no Retry-After (the same query would fail again);
 * anything else is logged (api.store_error, naming call) and answers 500.
 */
void api_read_reply_store_error(struct api_read_reply *out, const char *call, int rc);

/*
 * A copy of who that a reader thread may keep (the session's actor lives only
 * as long as the handler). One allocation; free with free().
 */
struct api_actor *api_read_actor_copy(const struct api_actor *who);

#endif
