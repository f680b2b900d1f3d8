/*
 * fdlimit — the process's file descriptors as a resource that hostile clients can
 * exhaust: raising RLIMIT_NOFILE at start-up, telling whether a new descriptor
 * eats into a reserve kept for other listeners, and pausing a listener whose
 * accept() fails for want of descriptors instead of letting it spin.
 * Not for: counting connections (each server does that for itself).
 */
#ifndef LAZARET_FDLIMIT_H
#define LAZARET_FDLIMIT_H

#include <stdbool.h>

struct evconnlistener;
struct event_base;

/* How long a listener stays paused after accept() failed with EMFILE/ENFILE. */
#define FDLIMIT_ACCEPT_PAUSE_MS 250

/*
 * Raises the soft RLIMIT_NOFILE to the hard one (systemd's LimitNOFILE sets both)
 * and logs the result once. Returns the soft limit now in force.
 */
unsigned long fdlimit_raise(void);

/*
 * True when descriptor fd lies in the top `reserve` descriptors of the current
 * soft limit. Descriptors are handed out lowest first, so such an fd means at
 * most `reserve` are left. The reserve is capped at half the limit.
 */
bool fdlimit_in_reserve(int fd, unsigned reserve);

struct fdlimit_guard;

/*
 * Watches listener l (served on base): when accept() fails with EMFILE, ENFILE,
 * ENOBUFS or ENOMEM, l is disabled for FDLIMIT_ACCEPT_PAUSE_MS and enabled again;
 * other accept errors are logged. what names the listener in the log ("smtp",
 * "http"). Free the guard (fdlimit_guard_free) after the listener; NULL is a no-op.
 */
struct fdlimit_guard *fdlimit_guard_listener(struct event_base *base, struct evconnlistener *l,
					     const char *what);
/* Stops a paused listener from being enabled again (the owner is shutting down). */
void fdlimit_guard_stop(struct fdlimit_guard *g);
void fdlimit_guard_free(struct fdlimit_guard *g);

#endif
