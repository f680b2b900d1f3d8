/*
 * tz — a time zone of the tz database ("Asia/Tokyo", "Europe/Berlin", "UTC"):
 * its offset and abbreviation at any instant, and local wall-clock times turned
 * into Unix times. Read from the zone files themselves, never through TZ or
 * localtime(), so that one process can serve users in many zones from many threads.
 */
#ifndef LAZARET_TZ_H
#define LAZARET_TZ_H

#include <stddef.h>
#include <stdint.h>

/* A tz database zone file is never larger than this (the largest are ~4 KB). */
#define TZ_FILE_MAX (256 * 1024)
/* Where zone files are looked up when $TZDIR is not set. */
#define TZ_DIR "/usr/share/zoneinfo"

struct tz_zone;

/*
 * Loads zone name from the tz database once; the result is immutable and may be
 * used from any thread (tz_free frees it). -EINVAL for a name that is not a zone
 * name or a file that is not TZif, -ENOENT for an unknown zone; *out is NULL then.
 */
int tz_load(const char *name, struct tz_zone **out);
/* NULL is a no-op. */
void tz_free(struct tz_zone *tz);
/* The zone's offset from UTC in seconds (east positive) at Unix time t. */
int tz_offset(const struct tz_zone *tz, int64_t t);
/* Its abbreviation at t ("JST", "CEST", "+09"). Valid while tz is. */
const char *tz_abbrev(const struct tz_zone *tz, int64_t t);
/*
 * The Unix time of a local wall-clock time. A time that occurs twice (clocks go
 * back) is its first occurrence; a time that does not exist (clocks go forward)
 * is read with the offset before the change, so 02:30 becomes 03:30 summer time.
 */
int64_t tz_to_utc(const struct tz_zone *tz, int year, int month, int day, int hour, int minute);
/* "2026-11-27 09:30 JST" for ms (Unix ms) in tz, into out. */
void tz_format(const struct tz_zone *tz, int64_t ms, char *out, size_t size);
/* The day of the week of days since 1970-01-01: 0 = Sunday ... 6 = Saturday. */
int tz_weekday(int64_t days);

#endif
