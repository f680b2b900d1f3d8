/*
 * smtp_failover — one delivery to a primary host with a secondary behind it. The
 * recipients the primary did not settle (no connection, a 4xx, a session that
 * broke off) go to the secondary in a second session; a 5xx is final and is not
 * tried elsewhere. The release engine and the digest mailer deliver this way.
 *
 * Not for: retries over time or queueing (the caller decides when to try again
 * and what a deferred recipient means), MX lookups. Blocking, like smtp_client.
 */
#ifndef LAZARET_SMTP_FAILOVER_H
#define LAZARET_SMTP_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp/smtp_client.h"

/* One session of a failover delivery: the host, and which recipients it was sent. */
struct smtp_failover_session {
	const char *host;
	bool secondary;	   /* the second host */
	const size_t *idx; /* the message's recipients in it: msg->rcpts[idx[k]], k < n */
	size_t n;
};

/* What the caller sees while it runs; every member may be NULL. */
struct smtp_failover_hooks {
	/*
	 * smtp_client_options.progress for the session ss: res->rcpts[k] is the
	 * recipient msg->rcpts[ss->idx[k]].
	 */
	void (*progress)(void *arg, enum smtp_client_stage stage,
			 const struct smtp_failover_session *ss,
			 const struct smtp_client_result *res);
	/*
	 * After each session, with its result (indexed as for progress). failing_over:
	 * the recipients it deferred are sent to the secondary next.
	 */
	void (*attempted)(void *arg, const struct smtp_failover_session *ss,
			  const struct smtp_client_result *res, bool failing_over);
	void *arg;
};

/* One recipient's outcome once every host was tried. */
struct smtp_failover_rcpt {
	enum smtp_client_outcome outcome;
	char *reply;	  /* the reply (or local reason) that decided it; NULL when no host */
	const char *host; /* primary or secondary (the caller's string) that said so, or NULL */
};

/*
 * Sends msg to primary and then the recipients primary deferred to secondary. A
 * NULL primary or secondary is not tried; opt is used for both sessions (its
 * progress member is ignored: hooks->progress replaces it; hooks may be NULL).
 * out has msg->nrcpts entries and gets each recipient's final outcome; free it
 * with smtp_failover_rcpts_free, whatever the return.
 *
 * Returns 0 when every recipient was delivered, -EAGAIN when one is still
 * deferred, -EPERM when none is deferred but one was rejected, -EHOSTUNREACH when
 * neither host is given (every recipient deferred, no reply), -EINVAL without
 * recipients.
 */
int smtp_failover_send(const char *primary, const char *secondary,
		       const struct smtp_client_options *opt, const struct smtp_client_message *msg,
		       const struct smtp_failover_hooks *hooks, struct smtp_failover_rcpt *out);

/* Frees the replies of n outcomes (not the array) and zeroes them. */
void smtp_failover_rcpts_free(struct smtp_failover_rcpt *out, size_t n);

#endif
