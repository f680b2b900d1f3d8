/*
 * pipeline — what the gateway does with one message, on a worker thread:
 * released-mail bypass, safelist/blocklist per recipient, anti-spam, anti-virus,
 * content filters, then one copy per group of recipients with the same outcome
 * to the next hop, an alternate host, the manager's spam quarantine or a local
 * quarantine. It returns the one SMTP reply for the client: 250 only when every
 * destination accepted its copy, 451 when any could not (nothing is kept here:
 * the client retries), 554 when the message is refused.
 *
 * The rules a message is judged by (pipeline_rules: the configuration and what
 * was compiled from it) are reference-counted, so that SIGHUP can swap them
 * while messages are still being judged by the old ones.
 */
#ifndef LAZARET_PIPELINE_H
#define LAZARET_PIPELINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/gw_config.h"

struct rat;
struct filter_set;
struct antispam_rules;
struct store;
struct slbl_cache;
struct smtp_message;
struct gw_events;

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct pipeline_rules {
	struct gw_config cfg;
	struct rat *rat;
	struct filter_set *filters;	 /* NULL: no content filters */
	struct antispam_rules *spam;	 /* builtin engine's rules */
	char *external_hostport;	 /* NULL when the external spam quarantine is off */
	struct ssl_ctx_st *external_tls; /* client context for it ([...] tls = yes), or NULL */
	struct filter_set *outbreak;	 /* [outbreak] rules, or NULL */
	char *outbreak_version;		 /* their version line */
	char *central_hostport;		 /* the manager's PVO listener, or NULL: local PVO */
	/* SHA-256 (hex) of the filter file's text as compiled, "" without one */
	char filters_digest[65];
	atomic_uint refs;
};

/*
 * Compiles the rules of cfg (taken over: zeroed on return, freed on failure):
 * RAT, content filters, builtin anti-spam rules. 0 with *out (one reference), or
 * -EINVAL with *err a new message (a filter error reads "FILE:LINE:COLUMN: ...").
 */
int pipeline_rules_build(struct gw_config *cfg, struct pipeline_rules **out, char **err);
struct pipeline_rules *pipeline_rules_ref(struct pipeline_rules *r);
/* Drops a reference; the last one frees. NULL is a no-op. */
void pipeline_rules_unref(struct pipeline_rules *r);

/*
 * Calls fn with the name of every local quarantine r can put mail into besides
 * spam: Virus, Outbreak, Unclassified, then each one a content filter or outbreak
 * rule names (a name may come twice).
 */
void pipeline_rules_each_pvo_quarantine(const struct pipeline_rules *r,
					void (*fn)(const char *name, void *arg), void *arg);

/* One message to judge. Strings are borrowed for the duration of pipeline_run. */
struct pipeline_job {
	const struct pipeline_rules *rules;
	struct store *st;	 /* local quarantines */
	struct slbl_cache *slbl; /* NULL: no safelists/blocklists */
	const char *id;		 /* the gateway's id of this message, for logs and replies */
	const char *session_id;
	const char *client_ip;
	bool released; /* from [manager] addresses: straight to the next hop */
	const struct smtp_message *msg;
	struct gw_events *events; /* message tracking (gw_events.h); NULL: off */
};

/* Judges and relays the message; writes the reply line (no CRLF) into reply. */
void pipeline_run(const struct pipeline_job *job, char *reply, size_t replylen);

/* Replies the gateway gives (also for tests and documentation). */
#define PIPELINE_REPLY_SPAM_BOUNCE   "554 5.7.1 Message refused as spam"
#define PIPELINE_REPLY_FILTER_BOUNCE "554 5.7.1 Message refused by content filter"
#define PIPELINE_REPLY_ENGINE	     "451 4.3.0 Error: message could not be scanned, try again later"
/* [filters] undecided = tempfail: the content filters could not inspect the whole message. */
#define PIPELINE_REPLY_UNDECIDED                                                                   \
	"451 4.7.0 Error: message could not be fully inspected, try again later"
/*
 * The system quarantines, named as the store and the manager name them
 * (lowercase): [filters] undecided = unclassified keeps such messages in the
 * first; outbreak rules put a message into the second (central or local).
 */
#define PIPELINE_Q_UNCLASSIFIED "unclassified"
#define PIPELINE_Q_OUTBREAK	"outbreak"
#define PIPELINE_Q_VIRUS	"virus"

/*
 * The name mail is filed under for a quarantine a rule names: a system
 * quarantine's name in any case ("Virus") is that quarantine's own name
 * ("virus"), so that a gateway has one of each; any other name is itself.
 */
const char *pipeline_quarantine_name(const char *name);

#endif
