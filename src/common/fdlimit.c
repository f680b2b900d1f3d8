/*
 * fdlimit — descriptor limits and accept() back-off (see fdlimit.h).
 *
 * A listening socket whose accept() fails with EMFILE stays readable, so without
 * a pause the event loop calls accept() again at once, for ever, at full CPU, and
 * every failure is a log line. The guard turns that into one pause of
 * FDLIMIT_ACCEPT_PAUSE_MS per failure: at most four accept() attempts a second
 * until descriptors are free again. Not for: deciding which connections to refuse.
 */
#include "common/fdlimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "common/log.h"
#include "common/xalloc.h"

struct fdlimit_guard {
	struct evconnlistener *listener;
	struct event *resume;
	const char *what;
	bool stopped;
	struct fdlimit_guard *next;
};

/*
 * libevent hands the error callback the listener's own argument (the server that
 * owns it, or evhttp), not ours: guards are found by listener in this list.
 */
static struct fdlimit_guard *fdlimit_guards;
static pthread_mutex_t fdlimit_guards_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned long fdlimit_raise(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			log_warn("fdlimit.raise_failed", "soft=%llu hard=%llu error=%s",
				 (unsigned long long)was, (unsigned long long)rl.rlim_max,
				 strerror(errno));
			rl.rlim_cur = was;
		}
	}
	log_info("fdlimit", "nofile=%llu", (unsigned long long)rl.rlim_cur);
	return rl.rlim_cur == RLIM_INFINITY ? (unsigned long)-1 : (unsigned long)rl.rlim_cur;
}

bool fdlimit_in_reserve(int fd, unsigned reserve)
{
	struct rlimit rl;
	if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return false;
	rlim_t keep = reserve;
	if (keep > rl.rlim_cur / 2)
		keep = rl.rlim_cur / 2;
	return (rlim_t)fd >= rl.rlim_cur - keep;
}

static void fdlimit_resume(evutil_socket_t fd, short what, void *arg)
{
	struct fdlimit_guard *g = arg;
	if (!g->stopped)
		evconnlistener_enable(g->listener);
}

static void fdlimit_accept_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct fdlimit_guard *g;
	pthread_mutex_lock(&fdlimit_guards_lock);
	for (g = fdlimit_guards; g != NULL && g->listener != l; g = g->next)
		;
	pthread_mutex_unlock(&fdlimit_guards_lock);
	if (g == NULL)
		panic("fdlimit: accept error on a listener without a guard");
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_warn("fdlimit.accept_failed", "listener=%s error=%s", g->what, strerror(err));
		return;
	}
	/* The same line for every pause: the log folds the repeats. */
	log_warn("fdlimit.accept_paused", "listener=%s error=%s pause_ms=%d", g->what,
		 strerror(err), FDLIMIT_ACCEPT_PAUSE_MS);
	evconnlistener_disable(l);
	struct timeval tv = {0, FDLIMIT_ACCEPT_PAUSE_MS * 1000};
	evtimer_add(g->resume, &tv);
}

struct fdlimit_guard *fdlimit_guard_listener(struct event_base *base, struct evconnlistener *l,
					     const char *what)
{
	struct fdlimit_guard *g = xcalloc(1, sizeof(*g));
	g->listener = l;
	g->what = what;
	g->resume = evtimer_new(base, fdlimit_resume, g);
	if (g->resume == NULL)
		panic("fdlimit: out of memory");
	pthread_mutex_lock(&fdlimit_guards_lock);
	g->next = fdlimit_guards;
	fdlimit_guards = g;
	pthread_mutex_unlock(&fdlimit_guards_lock);
	evconnlistener_set_error_cb(l, fdlimit_accept_error);
	return g;
}

void fdlimit_guard_stop(struct fdlimit_guard *g)
{
	if (g == NULL)
		return;
	g->stopped = true;
	evtimer_del(g->resume);
}

void fdlimit_guard_free(struct fdlimit_guard *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&fdlimit_guards_lock);
	for (struct fdlimit_guard **pp = &fdlimit_guards; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	pthread_mutex_unlock(&fdlimit_guards_lock);
	event_free(g->resume);
	free(g);
}
