/*
 * ingest — turns a message received on the quarantine listener into a stored,
 * quarantined message: metadata (msgmeta), compression and the store's group
 * commit happen off the event loop; the SMTP reply (250 with the id, or 451) is
 * sent only after the commit returned.
 */
#ifndef LAZARET_INGEST_H
#define LAZARET_INGEST_H

#include <stddef.h>

struct event_base;
struct store;
struct smtp_session;
struct smtp_message;
struct ingest;
struct capacity;

/* Starts nthreads parse/compress threads. Never fails. st is borrowed. */
struct ingest *ingest_new(struct event_base *base, struct store *st, unsigned nthreads);
/* Gives the ingest its store (opened after the listener was bound). */
void ingest_set_store(struct ingest *ing, struct store *st);
/*
 * The SMTP listener's on_message handler (ctx = the ingest): stores m into the
 * "spam" quarantine and answers the session when the store has committed.
 */
void ingest_message(void *ctx, struct smtp_session *s, struct smtp_message *m);
/*
 * The PVO listener's on_message handler (ctx = the same ingest): stores m into
 * the quarantines its X-Lazaret-Quarantine headers name (see ingest.c for the
 * refusals), and answers when the store has committed.
 */
void ingest_pvo_message(void *ctx, struct smtp_session *s, struct smtp_message *m);
/* What a connection from an address that is not a registered gateway gets. */
#define INGEST_PVO_UNREGISTERED_REPLY "554 5.7.1 Error: not a registered gateway"
/* ... and any connection while the registry could never be read (the store down). */
#define INGEST_PVO_REGISTRY_UNKNOWN_REPLY                                                          \
	"421 4.3.0 Error: gateway registry unavailable, try again later"
/* How often the registry is read again (changes made on another manager). */
#define INGEST_GATEWAYS_REFRESH_MS 5000
/*
 * Reads the gateway registry now (the store must be set), then every
 * INGEST_GATEWAYS_REFRESH_MS on a worker. Call once, when the PVO listener runs.
 */
void ingest_gateways_start(struct ingest *ing);
/* The registry changed on this node (ctx = the ingest): reads it again at once. */
void ingest_gateways_changed(void *ctx);
/*
 * The PVO listener's check_connect hook (ctx = the ingest): refuses peers that
 * are not registered gateways (INGEST_PVO_UNREGISTERED_REPLY, logged
 * pvo.unregistered_gateway), and everyone while the registry was never read
 * (INGEST_PVO_REGISTRY_UNKNOWN_REPLY). accept_from is checked before it, by the
 * listener. A gateway registered on another manager is let in within
 * INGEST_GATEWAYS_REFRESH_MS, at once on the node that registered it.
 */
int ingest_pvo_check_connect(void *ctx, struct smtp_session *s, char *reply, size_t replylen);
/* What MAIL FROM on the PVO listener gets while the PVO quarantines are full. */
#define INGEST_PVO_FULL_REPLY "452 4.3.1 Error: quarantine storage full, try again later"
/* The PVO quarantines' capacity check (capacity.h); borrowed, NULL: none. */
void ingest_set_capacity(struct ingest *ing, const struct capacity *cap);
/*
 * The PVO listener's check_mail hook (ctx = the session): INGEST_PVO_FULL_REPLY
 * while capacity_full (logged pvo.full, counted), so that the gateway keeps the
 * message and answers 451 upstream.
 */
int ingest_pvo_check_mail(void *ctx, const char *sender, char *reply, size_t replylen);
/* Messages received but not yet answered. */
unsigned ingest_inflight(const struct ingest *ing);
/*
 * Shutdown, in this order: ingest_stop() finishes queued parse work (the store must
 * still be open) and stops the threads; then the caller closes the store (which
 * runs the last commit callbacks) and turns the loop once so the answers are
 * delivered; then ingest_free().
 */
void ingest_stop(struct ingest *ing);
void ingest_free(struct ingest *ing);

#endif
