/*
 * workpool — threads taking jobs off one mutex/condvar FIFO (see workpool.h).
 * Shutdown drains the queue before joining, so no accepted job is dropped.
 */
#include "common/workpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/xalloc.h"

struct workpool_job {
	workpool_fn fn;
	void *arg;
	struct workpool_job *next;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct workpool_job *head, *tail;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static void *workpool_thread(void *arg)
{
	struct workpool *wp = arg;
	for (;;) {
		pthread_mutex_lock(&wp->lock);
		while (wp->head == NULL && !wp->stopping)
			pthread_cond_wait(&wp->cond, &wp->lock);
		struct workpool_job *job = wp->head;
		if (job == NULL) {
			pthread_mutex_unlock(&wp->lock);
			return NULL;
		}
		wp->head = job->next;
		if (wp->head == NULL)
			wp->tail = NULL;
		pthread_mutex_unlock(&wp->lock);
		job->fn(job->arg);
		free(job);
	}
}

struct workpool *workpool_new(unsigned nthreads)
{
	struct workpool *wp = xcalloc(1, sizeof(*wp));
	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->cond, NULL);
	wp->nthreads = nthreads ? nthreads : 1;
	wp->threads = xcalloc(wp->nthreads, sizeof(pthread_t));
	for (unsigned i = 0; i < wp->nthreads; i++) {
		if (pthread_create(&wp->threads[i], NULL, workpool_thread, wp) != 0)
			panic("cannot start worker thread");
	}
	return wp;
}

void workpool_submit(struct workpool *wp, workpool_fn fn, void *arg)
{
	struct workpool_job *job = xmalloc(sizeof(*job));
	job->fn = fn;
	job->arg = arg;
	job->next = NULL;
	pthread_mutex_lock(&wp->lock);
	if (wp->tail != NULL)
		wp->tail->next = job;
	else
		wp->head = job;
	wp->tail = job;
	pthread_cond_signal(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
}

void workpool_free(struct workpool *wp)
{
	if (wp == NULL)
		return;
	pthread_mutex_lock(&wp->lock);
	wp->stopping = true;
	pthread_cond_broadcast(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
	for (unsigned i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	free(wp->threads);
	pthread_mutex_destroy(&wp->lock);
	pthread_cond_destroy(&wp->cond);
	free(wp);
}
