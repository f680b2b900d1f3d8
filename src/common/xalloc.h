/*
 * xalloc — allocation that succeeds or does not return. Out of memory is a
 * broken environment the daemon cannot limp through, so these panic instead of
 * returning NULL. x*_free-style functions elsewhere accept NULL.
 */
#ifndef LAZARET_XALLOC_H
#define LAZARET_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Like reallocarray: panics on overflow of count * size. */
void *xreallocarray(void *p, size_t count, size_t size);
char *xstrdup(const char *s);
/* xstrdup, or NULL for NULL. */
char *xstrdup_or_null(const char *s);
/* Copies at most n bytes of s and terminates the copy. */
char *xstrndup(const char *s, size_t n);
/* A freshly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
