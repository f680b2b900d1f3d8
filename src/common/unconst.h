/*
 * unconst — the one place a const qualifier may be dropped (the build has
 * -Wcast-qual, so a plain cast that does it is an error). Two uses only:
 *  - a library interface that takes a non-const pointer but only reads through
 *    it: iconv(3)'s input, jansson's object iterator (json_object_foreach has
 *    no const form), OpenSSL's SSL_set_tlsext_host_name macro;
 *  - freeing a string that a struct owns but shows its readers as const
 *    (struct store_user, struct store_audit).
 * Anything else keeps its const: fix the type instead. Not for memory that is
 * really read-only: nothing may write through the result.
 */
#ifndef LAZARET_COMMON_UNCONST_H
#define LAZARET_COMMON_UNCONST_H

#include <stdint.h>

static inline void *unconst(const void *p)
{
	/* Through uintptr_t: well defined, and visible as deliberate. */
	return (void *)(uintptr_t)p;
}

#endif
