/*
 * own_events — the manager's own tracking events: a message quarantined on the
 * manager (spam or PVO ingest), released (its delivery, with the reply), deleted.
 * They are stored as a gateway's events are, under the reserved name
 * STORE_EVENTS_OWN_GATEWAY with the store's own seq counter (store.h
 * store_events_put_own), so that tracking tells one story per message: the
 * gateway's events and the manager's share the Message-ID header.
 *
 * Whoever sees it happen queues the event (own_events_add, any thread, never a
 * store call); one thread commits the queue in groups (a group commit: one
 * transaction every OWN_EVENTS_FLUSH_MS, whatever the number of messages), so
 * ingest never waits for it. Events queued but not committed when the process
 * dies are lost (tracking, not the message); more than OWN_EVENTS_QUEUE_MAX
 * waiting (a store down for long) are dropped and logged (events.own_dropped).
 *
 * Not started (the gateway, tools): own_events_add is a no-op.
 */
#ifndef LAZARET_OWN_EVENTS_H
#define LAZARET_OWN_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct store;

#define OWN_EVENTS_FLUSH_MS  100
#define OWN_EVENTS_GROUP     1000 /* events per transaction at most */
#define OWN_EVENTS_QUEUE_MAX 100000

/* A quarantined message's fields (owned copies; own_events_message_free). */
struct own_events_message {
	char *sender;
	char **recipients;
	size_t nrecipients;
	char *subject; /* decoded, or NULL */
	char *message_id;
	char *client_ip;
	char **attachments;
	size_t nattachments;
	int64_t size;
};
void own_events_message_free(struct own_events_message *m);

/* Starts the committing thread for st. Once per process. */
void own_events_start(struct store *st);
/* Commits what is queued, then stops. No-op when not started. */
void own_events_stop(void);

/*
 * Queues one event of message msg_id (may be NULL) at at (Unix ms): type as
 * store_events_put_own takes, state the tracked message's new last state (or
 * NULL), flags enum store_track_flag bits. detail (a JSON object, may be NULL for
 * {}) and m (may be NULL) are taken. Thread-safe; a no-op when not started.
 */
void own_events_add(int64_t at, const char *type, const char *msg_id, const char *state,
		    unsigned flags, json_t *detail, struct own_events_message *m);

#endif
