/*
 * delivery — hands one copy of a message to one SMTP destination (the next hop,
 * an alternate host, the manager's spam quarantine) and sums up the replies for
 * the gateway's single answer to its client. Blocks: worker threads only.
 */
#ifndef LAZARET_DELIVERY_H
#define LAZARET_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;

struct delivery_options {
	const char *helo_name;
	const char *source_address; /* NULL: any */
	int64_t timeout_ms;	    /* per SMTP step */
	const char *log_id;	    /* message id for log lines */
	struct ssl_ctx_st *tls_ctx; /* STARTTLS required and verified (smtp_client.h), or NULL */
};

enum delivery_status {
	DELIVERY_OK = 0,	 /* every recipient accepted */
	DELIVERY_PARTLY_REFUSED, /* some accepted, the others refused with 5xx */
	DELIVERY_REFUSED,	 /* every recipient refused with 5xx */
	DELIVERY_DEFERRED,	 /* a recipient got 4xx or no answer: try the whole copy later */
};

struct delivery_outcome {
	enum delivery_status status;
	char *reply;	/* a deciding reply (first refusal or deferral), or NULL; caller frees */
	size_t refused; /* recipients refused with 5xx */
	char *accepted; /* the reply a delivered recipient got (the end of data), or NULL */
	/* with refused > 0: the 5xx reply of each refused recipient, NULL for the
	 * others, nrefusals (the recipients sent to) of them; else NULL */
	char **refusals;
	size_t nrefusals;
};

/* "ok", "partly_refused", "refused", "deferred". */
const char *delivery_status_name(enum delivery_status s);

/*
 * Sends header (lines with line ends, may be NULL) and body to hostport for the n
 * recipients. *out is always filled (delivery_outcome_clear). Each refused
 * recipient is logged. Returns 0, or a negative errno when no server answered
 * (then the status is DELIVERY_DEFERRED).
 */
int delivery_send(const char *hostport, const struct delivery_options *opt, const char *sender,
		  const char *const *rcpts, size_t n, const char *header, const unsigned char *body,
		  size_t len, struct delivery_outcome *out);
void delivery_outcome_clear(struct delivery_outcome *o);

struct smtp_client_result;
/*
 * Sets out->status from a transaction's n recipients, deferred of them deferred
 * and out->refused refused (and, when deferred, a reply if none was kept).
 */
void delivery_settle(const struct smtp_client_result *res, size_t n, size_t deferred,
		     struct delivery_outcome *out);

#endif
