/*
 * smtp_failover — see smtp_failover.h. At most two smtp_client sessions: the
 * first to the primary with every recipient, the second to the secondary with
 * the ones still deferred. The session's recipient indexes let the caller's
 * hooks map a session's results back to the message.
 */
#include "smtp/smtp_failover.h"

#include <errno.h>
#include <stdlib.h>

#include "common/xalloc.h"

struct smtp_failover_run {
	const struct smtp_failover_hooks *hooks;
	const struct smtp_failover_session *ss;
};

static void smtp_failover_progress(void *arg, enum smtp_client_stage stage,
				   const struct smtp_client_result *res)
{
	struct smtp_failover_run *run = arg;
	run->hooks->progress(run->hooks->arg, stage, run->ss, res);
}

int smtp_failover_send(const char *primary, const char *secondary,
		       const struct smtp_client_options *opt, const struct smtp_client_message *msg,
		       const struct smtp_failover_hooks *hooks, struct smtp_failover_rcpt *out)
{
	size_t n = msg->nrcpts;
	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = (struct smtp_failover_rcpt){SMTP_CLIENT_DEFERRED, NULL, NULL};
	size_t *idx = xcalloc(n, sizeof(*idx));
	const char **rcpts = xcalloc(n, sizeof(*rcpts));
	size_t nleft = n;
	for (size_t i = 0; i < n; i++)
		idx[i] = i;

	const char *hosts[2] = {primary, secondary};
	for (int h = 0; h < 2 && nleft > 0; h++) {
		if (hosts[h] == NULL)
			continue;
		struct smtp_failover_session ss = {
		    .host = hosts[h], .secondary = h == 1, .idx = idx, .n = nleft};
		struct smtp_failover_run run = {.hooks = hooks, .ss = &ss};
		struct smtp_client_options o = *opt;
		o.progress =
		    hooks != NULL && hooks->progress != NULL ? smtp_failover_progress : NULL;
		o.progress_arg = &run;
		for (size_t k = 0; k < nleft; k++)
			rcpts[k] = msg->rcpts[idx[k]];
		struct smtp_client_message m = *msg;
		m.rcpts = rcpts;
		m.nrcpts = nleft;
		struct smtp_client_result res;
		(void)smtp_client_send(hosts[h], &o, &m, &res); /* the result says it all */
		for (size_t k = 0; k < nleft && k < res.nrcpts; k++) {
			struct smtp_failover_rcpt *r = &out[idx[k]];
			free(r->reply);
			r->outcome = res.rcpts[k].outcome;
			r->reply = xstrdup_or_null(res.rcpts[k].reply);
			r->host = hosts[h];
		}
		size_t ndeferred = 0;
		for (size_t k = 0; k < nleft; k++)
			ndeferred += out[idx[k]].outcome == SMTP_CLIENT_DEFERRED;
		if (hooks != NULL && hooks->attempted != NULL)
			hooks->attempted(hooks->arg, &ss, &res,
					 h == 0 && ndeferred > 0 && secondary != NULL);
		smtp_client_result_free(&res);
		/* The deferred ones, in message order, are the next session's recipients. */
		size_t next = 0;
		for (size_t k = 0; k < nleft; k++)
			if (out[idx[k]].outcome == SMTP_CLIENT_DEFERRED)
				idx[next++] = idx[k];
		nleft = next;
	}
	free(rcpts);
	free(idx);

	if (primary == NULL && secondary == NULL)
		return -EHOSTUNREACH;
	bool deferred = false, rejected = false;
	for (size_t i = 0; i < n; i++) {
		deferred |= out[i].outcome == SMTP_CLIENT_DEFERRED;
		rejected |= out[i].outcome == SMTP_CLIENT_REJECTED;
	}
	return deferred ? -EAGAIN : rejected ? -EPERM : 0;
}

void smtp_failover_rcpts_free(struct smtp_failover_rcpt *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(out[i].reply);
		out[i] = (struct smtp_failover_rcpt){SMTP_CLIENT_DEFERRED, NULL, NULL};
	}
}
