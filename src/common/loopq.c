/*
 * loopq — a mutex-protected FIFO of callbacks plus one libevent event that is
 * activated from the posting thread (see loopq.h). Not for: timers.
 */
#include "common/loopq.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/xalloc.h"

struct loopq_item {
	loopq_fn fn;
	void *arg;
	struct loopq_item *next;
};

struct loopq {
	pthread_mutex_t lock;
	struct loopq_item *head, *tail;
	struct event *ev;
};

static void loopq_run(evutil_socket_t fd, short what, void *arg)
{
	struct loopq *q = arg;
	pthread_mutex_lock(&q->lock);
	struct loopq_item *it = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->lock);
	while (it != NULL) {
		struct loopq_item *next = it->next;
		it->fn(it->arg);
		free(it);
		it = next;
	}
}

struct loopq *loopq_new(struct event_base *base)
{
	struct loopq *q = xcalloc(1, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	q->ev = event_new(base, -1, 0, loopq_run, q);
	if (q->ev == NULL)
		abort();
	return q;
}

void loopq_free(struct loopq *q)
{
	if (q == NULL)
		return;
	event_free(q->ev);
	for (struct loopq_item *it = q->head; it != NULL;) {
		struct loopq_item *next = it->next;
		free(it);
		it = next;
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void loopq_post(struct loopq *q, loopq_fn fn, void *arg)
{
	struct loopq_item *it = xmalloc(sizeof(*it));
	it->fn = fn;
	it->arg = arg;
	it->next = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	pthread_mutex_unlock(&q->lock);
	/* Safe from any thread once evthread_use_pthreads() was called. */
	event_active(q->ev, 0, 1);
}
