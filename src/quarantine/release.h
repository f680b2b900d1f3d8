/*
 * release — delivers released recipients from the store's durable queue to the
 * primary host, else the secondary (PVO releases: back to the gateway that
 * quarantined them, else the alternate release gateway), with bounded
 * concurrency and retries.
 * See docs/ARCHITECTURE.md "Release and expiry" and docs/OPERATIONS.md
 * "Release delivery: at least once".
 */
#ifndef LAZARET_RELEASE_H
#define LAZARET_RELEASE_H

#include <stdint.h>

struct store;

struct release_config {
	const char *manager_name;   /* for the X-Lazaret-Released header */
	const char *primary_host;   /* "host:port" */
	const char *secondary_host; /* "host:port" or NULL */
	/* "host:port" or NULL: where a PVO release goes when the gateway that
	 * quarantined it is unknown, unregistered or does not take it */
	const char *alternate_release_gateway;
	const char *source_address; /* bind address for outbound SMTP, or NULL */
	const char *helo_name;	    /* EHLO name */
	unsigned max_connections;   /* concurrent deliveries (threads); >= 1 */
	int64_t timeout_ms;	    /* per SMTP step */
	int64_t retry_min_ms;	    /* first backoff */
	int64_t retry_max_ms;	    /* backoff cap */
	int64_t give_up_after_ms;   /* a recipient still not delivered this long after its
				       first attempt is failed */
};

struct release;

/*
 * Starts max_connections delivery threads working the store's queue. The strings
 * in cfg are copied. Leased deliveries left by a crash are made due at once.
 */
int release_start(struct store *st, const struct release_config *cfg, struct release **out);
/* A delivery was queued: wake an idle worker now instead of at its next poll. */
void release_kick(struct release *r);
/* New hosts, addresses and backoff (SIGHUP). The thread count stays. */
void release_reconfigure(struct release *r, const struct release_config *cfg);
/* Lets deliveries in progress finish (each bounded by the timeouts), then stops. */
void release_stop(struct release *r);

#endif
