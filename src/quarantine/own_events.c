/*
 * own_events — the queue of the manager's own events and the thread that commits
 * it in groups (see own_events.h).
 *
 * Thread: wakes every OWN_EVENTS_FLUSH_MS (or when stopping), takes what is
 * queued and commits it in transactions of at most OWN_EVENTS_GROUP events. A
 * group the store refuses for a transient reason (unavailable) stays at the head
 * of the queue and is tried again at the next wake-up; a group refused as
 * invalid (a bug) is dropped and logged, so it cannot block the rest.
 */
#include "quarantine/own_events.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"

/* How often the dropping of events is logged again while it lasts. */
#define OWN_EVENTS_LOG_EVERY_MS 60000

struct own_event {
	int64_t at;
	char *type;
	char *msg_id;
	char *state;
	unsigned flags;
	char *detail;
	struct own_events_message *m;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool started, stopping;
	struct store *st;
	struct own_event *v; /* the queue, oldest first */
	size_t n, cap;
	uint64_t dropped;
	int64_t dropped_logged_at;
} own_events = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

void own_events_message_free(struct own_events_message *m)
{
	if (m == NULL)
		return;
	free(m->sender);
	for (size_t i = 0; i < m->nrecipients; i++)
		free(m->recipients[i]);
	free(m->recipients);
	free(m->subject);
	free(m->message_id);
	free(m->client_ip);
	for (size_t i = 0; i < m->nattachments; i++)
		free(m->attachments[i]);
	free(m->attachments);
	free(m);
}

/* Cuts s to the store's limit of a text field, at a UTF-8 character's start. */
static void own_events_cut(char *s)
{
	if (s == NULL || strlen(s) <= STORE_EVENT_TEXT_MAX)
		return;
	size_t n = STORE_EVENT_TEXT_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	s[n] = '\0';
}

/* m fit for the store: every text within its limit, no NULL sender. */
static void own_events_fit(struct own_events_message *m)
{
	if (m->sender == NULL)
		m->sender = xstrdup("");
	own_events_cut(m->sender);
	own_events_cut(m->subject);
	own_events_cut(m->message_id);
	own_events_cut(m->client_ip);
	for (size_t i = 0; i < m->nrecipients; i++)
		own_events_cut(m->recipients[i]);
	for (size_t i = 0; i < m->nattachments; i++)
		own_events_cut(m->attachments[i]);
	if (m->size < 0)
		m->size = 0;
}

static void own_event_clear(struct own_event *e)
{
	free(e->type);
	free(e->msg_id);
	free(e->state);
	free(e->detail);
	own_events_message_free(e->m);
}

/* Commits v[0..n) in one transaction: 0, or the store's error. */
static int own_events_commit(struct store *st, struct own_event *v, size_t n)
{
	struct store_event *se = xcalloc(n, sizeof(*se));
	struct store_event_message *sm = xcalloc(n, sizeof(*sm));
	for (size_t i = 0; i < n; i++) {
		se[i] = (struct store_event){.seq = 1,
					     .at = v[i].at,
					     .type = v[i].type,
					     .msg_id = v[i].msg_id,
					     .detail = v[i].detail,
					     .state = v[i].state,
					     .flags = v[i].flags};
		const struct own_events_message *m = v[i].m;
		if (m == NULL)
			continue;
		sm[i] =
		    (struct store_event_message){.sender = m->sender,
						 .recipients = (const char *const *)m->recipients,
						 .nrecipients = m->nrecipients,
						 .subject = m->subject,
						 .message_id = m->message_id,
						 .client_ip = m->client_ip,
						 .attachments = (const char *const *)m->attachments,
						 .nattachments = m->nattachments,
						 .size = m->size};
		se[i].message = &sm[i];
	}
	int rc = store_events_put_own(st, se, n, clock_now_ms(), NULL);
	free(sm);
	free(se);
	return rc;
}

/*
 * Commits what was queued when it began, in groups, until done or the store
 * fails. What comes meanwhile waits for the next wake-up: one transaction per
 * OWN_EVENTS_FLUSH_MS, not one per event that trickles in while committing.
 */
static void own_events_flush(void)
{
	pthread_mutex_lock(&own_events.lock);
	size_t todo = own_events.n;
	pthread_mutex_unlock(&own_events.lock);
	while (todo > 0) {
		pthread_mutex_lock(&own_events.lock);
		size_t n = todo < OWN_EVENTS_GROUP ? todo : OWN_EVENTS_GROUP;
		struct store *st = own_events.st;
		pthread_mutex_unlock(&own_events.lock);
		if (n == 0)
			return;
		/* only this thread removes from the head: v[0..n) stays put meanwhile, but
		 * the array may move when another thread appends, so copy the head */
		struct own_event *head = xcalloc(n, sizeof(*head));
		pthread_mutex_lock(&own_events.lock);
		memcpy(head, own_events.v, n * sizeof(*head));
		pthread_mutex_unlock(&own_events.lock);
		int rc = own_events_commit(st, head, n);
		free(head);
		if (rc < 0 && rc != -EINVAL) {
			log_warn("events.own_failed",
				 "events=%zu rc=%d reason=\"kept, tried again\"", n, rc);
			return;
		}
		if (rc == -EINVAL)
			log_error("events.own_dropped", "events=%zu reason=\"refused as invalid\"",
				  n);
		pthread_mutex_lock(&own_events.lock);
		for (size_t i = 0; i < n; i++)
			own_event_clear(&own_events.v[i]);
		memmove(own_events.v, own_events.v + n, (own_events.n - n) * sizeof(*own_events.v));
		own_events.n -= n;
		pthread_mutex_unlock(&own_events.lock);
		todo -= n;
	}
}

static void *own_events_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&own_events.lock);
	while (!own_events.stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += OWN_EVENTS_FLUSH_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&own_events.wake, &own_events.lock, &ts);
		pthread_mutex_unlock(&own_events.lock);
		own_events_flush();
		pthread_mutex_lock(&own_events.lock);
	}
	pthread_mutex_unlock(&own_events.lock);
	own_events_flush(); /* what came in the meantime */
	return NULL;
}

void own_events_start(struct store *st)
{
	pthread_mutex_lock(&own_events.lock);
	own_events.st = st;
	own_events.stopping = false;
	own_events.started = true;
	if (pthread_create(&own_events.thread, NULL, own_events_main, NULL) != 0)
		panic("cannot start the own events thread");
	pthread_mutex_unlock(&own_events.lock);
}

void own_events_stop(void)
{
	pthread_mutex_lock(&own_events.lock);
	if (!own_events.started) {
		pthread_mutex_unlock(&own_events.lock);
		return;
	}
	own_events.stopping = true;
	pthread_cond_signal(&own_events.wake);
	pthread_mutex_unlock(&own_events.lock);
	pthread_join(own_events.thread, NULL);
	pthread_mutex_lock(&own_events.lock);
	own_events.started = false;
	if (own_events.n > 0)
		log_warn("events.own_dropped", "events=%zu reason=\"not committed at the stop\"",
			 own_events.n);
	for (size_t i = 0; i < own_events.n; i++)
		own_event_clear(&own_events.v[i]);
	free(own_events.v);
	own_events.v = NULL;
	own_events.n = own_events.cap = 0;
	pthread_mutex_unlock(&own_events.lock);
}

void own_events_add(int64_t at, const char *type, const char *msg_id, const char *state,
		    unsigned flags, json_t *detail, struct own_events_message *m)
{
	pthread_mutex_lock(&own_events.lock);
	bool on = own_events.started && !own_events.stopping;
	pthread_mutex_unlock(&own_events.lock);
	if (!on) {
		json_decref(detail);
		own_events_message_free(m);
		return;
	}
	/* the text outside the lock: only the append is under it */
	if (m != NULL)
		own_events_fit(m);
	char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT) : NULL;
	if (text != NULL && strlen(text) > STORE_EVENT_DETAIL_MAX) {
		free(text);
		text = xstrdup("{\"truncated\":true}");
	}
	json_decref(detail);
	struct own_event e = {.at = at,
			      .type = xstrdup(type),
			      .msg_id = xstrdup_or_null(msg_id),
			      .state = xstrdup_or_null(state),
			      .flags = flags,
			      .detail = text != NULL ? text : xstrdup("{}"),
			      .m = m};
	pthread_mutex_lock(&own_events.lock);
	if (!own_events.started || own_events.stopping) {
		/* stopped meanwhile */
		pthread_mutex_unlock(&own_events.lock);
		own_event_clear(&e);
		return;
	}
	if (own_events.n >= OWN_EVENTS_QUEUE_MAX) {
		own_events.dropped++;
		int64_t now = clock_now_ms();
		bool say = now - own_events.dropped_logged_at >= OWN_EVENTS_LOG_EVERY_MS;
		if (say)
			own_events.dropped_logged_at = now;
		uint64_t dropped = own_events.dropped;
		pthread_mutex_unlock(&own_events.lock);
		if (say)
			log_warn("events.own_dropped",
				 "dropped_total=%llu reason=\"%d events wait for the store\"",
				 (unsigned long long)dropped, OWN_EVENTS_QUEUE_MAX);
		own_event_clear(&e);
		return;
	}
	if (own_events.n == own_events.cap) {
		own_events.cap = own_events.cap ? own_events.cap * 2 : 256;
		own_events.v = xrealloc(own_events.v, own_events.cap * sizeof(*own_events.v));
	}
	own_events.v[own_events.n++] = e;
	pthread_mutex_unlock(&own_events.lock);
}
