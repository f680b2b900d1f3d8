/*
 * gw_api — one JSON POST (or GET) from the gateway to the manager's API (libcurl), shared
 * by the hello (gw_hello.c) and the event pusher (gw_events.c): the URL built
 * from [manager] api_url, the Bearer token, https with the peer and its name
 * always verified (TLS 1.2 at least, [manager] api_ca when set), a whole-call
 * timeout, and an answer bounded in size. What the answer means is the caller's.
 *
 * Not for: the safelist sync's GET (slbl_cache.c), which streams its answer.
 */
#ifndef LAZARET_GW_API_H
#define LAZARET_GW_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"

struct gw_api_call {
	const char *api_url; /* [manager] api_url; trailing slashes are ignored */
	const char *path;    /* "/api/v1/..." */
	const char *token;   /* NULL: no Authorization header */
	const char *ca;	     /* NULL: the system's CAs */
	const char *body;    /* JSON text (not with get) */
	bool get;	     /* a GET without a body instead of the POST */
	int64_t timeout_ms;  /* for connecting and for the whole call */
	size_t max_answer;   /* a longer answer fails the call ("answer too large") */
	atomic_bool *abort;  /* NULL, or set from another thread to cut the call off */
};

struct gw_api_answer {
	long status;	    /* the HTTP status, 0 when none came */
	struct strbuf body; /* the answer's bytes (strbuf_free it) */
	const char *error;  /* static text when the call failed, else NULL */
};

/* libcurl's global set-up, once; gw_api_post calls it too (thread-safe). */
void gw_api_init(void);

/*
 * Makes the call. 0 with out->status and out->body (any status: the caller
 * reads it); -ETIMEDOUT, -EIO (out->error says why), -EINVAL (no URL, body or
 * timeout), -ENOMEM. out->body is to be freed in every case.
 */
int gw_api_post(const struct gw_api_call *call, struct gw_api_answer *out);

#endif
