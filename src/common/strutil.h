/*
 * strutil — small helpers for C strings that may be NULL (an unset config value).
 * Not for: building strings (strbuf.h) or copying them (xalloc.h).
 */
#ifndef LAZARET_STRUTIL_H
#define LAZARET_STRUTIL_H

#include <stdbool.h>
#include <string.h>

/* Both NULL, or both set and equal. */
static inline bool str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

#endif
