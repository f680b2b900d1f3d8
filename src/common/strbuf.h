/*
 * strbuf — a growable byte string, always NUL-terminated, for building text
 * (decoded headers, MIME bodies, JSON-free reports, CLI output). The one growable
 * buffer of the tree: a zeroed struct strbuf is an empty buffer; allocation
 * failure panics (xalloc.h), so appends never fail.
 *
 *	struct strbuf b = STRBUF_INIT;
 *	strbuf_puts(&b, "220 ");
 *	strbuf_printf(&b, "%s ready", name);
 *	char *s = strbuf_take(&b);	// caller frees s; b is empty again
 *
 * Not for: binary data past the NUL (it works, but len is the only truth then).
 */
#ifndef LAZARET_STRBUF_H
#define LAZARET_STRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct strbuf {
	char *p; /* NULL while nothing was added; else p[len] == '\0' */
	size_t len, cap;
};

#define STRBUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

/* Makes room for more bytes (plus the NUL) without changing the contents. */
void strbuf_reserve(struct strbuf *b, size_t more);

/* Inline: text writers (JSON, MIME) append a few bytes at a time. */
static inline void strbuf_add(struct strbuf *b, const void *data, size_t n)
{
	if (b->cap - b->len <= n) /* no room for n and the NUL (or nothing allocated) */
		strbuf_reserve(b, n);
	if (n != 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static inline void strbuf_addc(struct strbuf *b, char c)
{
	strbuf_add(b, &c, 1);
}

void strbuf_puts(struct strbuf *b, const char *s);
/* Appends v in decimal (as "%lld" writes it, without printf's cost). */
void strbuf_add_int(struct strbuf *b, long long v);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* The contents so far ("" when empty); valid until the next change. */
const char *strbuf_str(const struct strbuf *b);
/* Shortens to len bytes (no-op when already shorter). */
void strbuf_truncate(struct strbuf *b, size_t len);
/* Hands the string to the caller (never NULL) and leaves b empty. */
char *strbuf_take(struct strbuf *b);
/* Frees the contents and leaves b empty. */
void strbuf_free(struct strbuf *b);

#endif
