/*
 * notify — the manager's end-user notification digests: when they go out
 * ([notifications] schedule, in a time zone), to whom, with what, and how they are
 * sent. The mail itself and its links are digest/digest_mail's
 * and digest_token's.
 */
#ifndef LAZARET_NOTIFY_H
#define LAZARET_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;

/* --- the digest service ------------------------------------------------------ */

/* Digests waiting to be built and sent at once ("send now" beyond this: 429). */
#define NOTIFY_MAX_QUEUED 64

struct notify_config {
	bool enabled;		 /* scheduled digests; links and "send now" work regardless */
	const char *schedule;	 /* see notify_schedule_parse */
	const char *time_zone;	 /* default zone of schedule and of times in digests */
	const char *from;	 /* From: and envelope sender of digests */
	const char *base_url;	 /* links are base_url + "/d/" + token */
	const char *language;	 /* "ja" | "en": for recipients without their own */
	unsigned max_entries;	 /* messages listed in one digest */
	const char *data_dir;	 /* where digest.key lives */
	const char *hostname;	 /* Message-ID right side */
	int64_t delete_after_ms; /* a message's expiry = received_at + this (0: never) */
	/* the release path */
	const char *primary_host;
	const char *secondary_host; /* may be NULL */
	const char *source_address; /* may be NULL */
	const char *helo_name;
	int64_t timeout_ms; /* per SMTP step */
};

struct notify;

/*
 * Loads (or creates) the link key, installs the digest service for the API
 * (digest/digest_pages.h) and, when cfg->enabled, arms the schedule on base. The
 * strings in cfg are copied. 0, or a negative errno (the key cannot be read or
 * made, an unknown zone, a bad schedule).
 */
int notify_new(struct event_base *base, struct store *st, const struct notify_config *cfg,
	       struct notify **out);
/* New settings (SIGHUP); the schedule is re-armed from now. 0 or -EINVAL (kept old). */
int notify_reconfigure(struct notify *n, const struct notify_config *cfg);
/*
 * Queues one digest now (see digest_send_now_fn). 0, -EAGAIN when NOTIFY_MAX_QUEUED
 * digests are waiting, -ESHUTDOWN while stopping.
 */
int notify_send_now(struct notify *n, const char *username, const char *const *addresses,
		    size_t naddresses, const char *address);
/* Stops the schedule, lets a digest being sent finish, removes the service. NULL: no-op. */
void notify_free(struct notify *n);

#endif
