/*
 * delivery — one outbound SMTP transaction per copy, with smtp_client, and the
 * reading of its per-recipient replies as one status: everything accepted,
 * some or all refused for good (5xx), or deferred (a 4xx or no answer for any
 * recipient — the gateway then answers its client 451 and the client retries).
 * Not for: queueing or retrying (the gateway keeps no queue), MX lookups.
 */
#include "gateway/delivery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "smtp/smtp_client.h"

const char *delivery_status_name(enum delivery_status s)
{
	switch (s) {
	case DELIVERY_OK:
		return "ok";
	case DELIVERY_PARTLY_REFUSED:
		return "partly_refused";
	case DELIVERY_REFUSED:
		return "refused";
	case DELIVERY_DEFERRED:
		return "deferred";
	}
	return "unknown";
}

void delivery_outcome_clear(struct delivery_outcome *o)
{
	if (o == NULL)
		return;
	free(o->reply);
	free(o->accepted);
	for (size_t i = 0; i < o->nrefusals; i++)
		free(o->refusals[i]);
	free(o->refusals);
	memset(o, 0, sizeof(*o));
}

void delivery_settle(const struct smtp_client_result *res, size_t n, size_t deferred,
		     struct delivery_outcome *out)
{
	if (deferred > 0 || res->nrcpts != n)
		out->status = DELIVERY_DEFERRED;
	else if (out->refused == n)
		out->status = DELIVERY_REFUSED;
	else if (out->refused > 0)
		out->status = DELIVERY_PARTLY_REFUSED;
	else
		out->status = DELIVERY_OK;
	if (out->status == DELIVERY_DEFERRED && out->reply == NULL)
		out->reply = xstrdup(res->error != NULL ? res->error : "no answer");
}

int delivery_send(const char *hostport, const struct delivery_options *opt, const char *sender,
		  const char *const *rcpts, size_t n, const char *header, const unsigned char *body,
		  size_t len, struct delivery_outcome *out)
{
	struct smtp_client_options co = {
	    .helo_name = opt->helo_name,
	    .source_address = opt->source_address,
	    .timeout_ms = opt->timeout_ms,
	    /* One message cannot hold a worker for ever, however slow the peer. */
	    .session_timeout_ms = opt->timeout_ms * 10,
	    .tls_ctx = opt->tls_ctx,
	};
	struct smtp_client_message msg = {
	    .sender = sender,
	    .rcpts = rcpts,
	    .nrcpts = n,
	    .header = header,
	    .body = body,
	    .body_len = len,
	};
	struct smtp_client_result res;
	memset(out, 0, sizeof(*out));
	int rc = smtp_client_send(hostport, &co, &msg, &res);
	size_t delivered = 0, deferred = 0;
	char q[512];
	for (size_t i = 0; i < res.nrcpts; i++) {
		const struct smtp_client_rcpt_result *r = &res.rcpts[i];
		const char *text = r->reply != NULL ? r->reply : "no reply";
		switch (r->outcome) {
		case SMTP_CLIENT_DELIVERED:
			delivered++;
			if (out->accepted == NULL && r->reply != NULL)
				out->accepted = xstrdup(r->reply);
			break;
		case SMTP_CLIENT_REJECTED:
			out->refused++;
			if (out->refusals == NULL) {
				out->refusals = xcalloc(n, sizeof(*out->refusals));
				out->nrefusals = n;
			}
			out->refusals[i] = xstrdup(text);
			log_warn("gw.rcpt_refused", "id=%s host=%s rcpt=<%s> reply=%s",
				 opt->log_id != NULL ? opt->log_id : "-", hostport, rcpts[i],
				 log_quote(q, sizeof(q), text));
			if (out->reply == NULL)
				out->reply = xstrdup(text);
			break;
		case SMTP_CLIENT_DEFERRED:
			deferred++;
			if (out->reply == NULL || out->refused > 0) {
				free(out->reply);
				out->reply = xstrdup(text);
			}
			break;
		}
	}
	delivery_settle(&res, n, deferred, out);
	(void)delivered;
	smtp_client_result_free(&res);
	return rc < 0 ? rc : 0;
}
