/*
 * clock — wall-clock and monotonic milliseconds, and RFC 3339 text.
 * All times the store and API exchange are Unix milliseconds (int64_t, UTC).
 */
#ifndef LAZARET_CLOCK_H
#define LAZARET_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_RFC3339_LEN 32

/* Unix time in milliseconds. */
int64_t clock_now_ms(void);
/* Monotonic milliseconds, for timeouts and durations. */
int64_t clock_mono_ms(void);
/* Formats ms as "2026-11-27T19:30:00Z" (seconds precision, UTC) into out. */
void clock_format_rfc3339(int64_t ms, char out[CLOCK_RFC3339_LEN]);
/*
 * Parses an RFC 3339 date-time ("2026-11-27T19:30:00Z", "...T19:30:00.250+09:00",
 * also a bare date "2026-11-27" as its midnight UTC) into Unix ms. 0 or -EINVAL.
 */
int clock_parse_rfc3339(const char *s, int64_t *out_ms);

#endif
