/*
 * strbuf — see strbuf.h. Capacity doubles from 64 bytes, so n appends cost O(n)
 * copies in all.
 */
#include "common/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

#define STRBUF_FIRST_CAP 64

void strbuf_reserve(struct strbuf *b, size_t more)
{
	if (more > SIZE_MAX - b->len - 1)
		panic("strbuf: size overflow");
	size_t need = b->len + more + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap != 0 ? b->cap : STRBUF_FIRST_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
	b->p[b->len] = '\0';
}

void strbuf_puts(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

void strbuf_add_int(struct strbuf *b, long long v)
{
	char buf[24];
	char *p = buf + sizeof(buf);
	/* unsigned, so that LLONG_MIN negates without overflow */
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	strbuf_add(b, p, (size_t)(buf + sizeof(buf) - p));
}

void strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap)
{
	va_list again;
	va_copy(again, ap);
	strbuf_reserve(b, 0);
	size_t room = b->cap - b->len;
	int n = vsnprintf(b->p + b->len, room, fmt, ap);
	if (n < 0)
		panic("strbuf: bad format");
	if ((size_t)n >= room) {
		strbuf_reserve(b, (size_t)n);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	b->len += (size_t)n;
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	strbuf_vprintf(b, fmt, ap);
	va_end(ap);
}

const char *strbuf_str(const struct strbuf *b)
{
	return b->p != NULL ? b->p : "";
}

void strbuf_truncate(struct strbuf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->p[len] = '\0';
}

char *strbuf_take(struct strbuf *b)
{
	char *s = b->p != NULL ? b->p : xstrdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

void strbuf_free(struct strbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
