/*
 * notify_schedule — when digests go out: the [notifications] schedule forms
 * ("hourly", "daily 09:00,17:00", "weekly mon,fri 08:30", "every 10m") and the next
 * run after a moment, in a time zone (common/tz). Pure functions: no clock, no I/O.
 */
#ifndef LAZARET_NOTIFY_SCHEDULE_H
#define LAZARET_NOTIFY_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

struct tz_zone;

/* Times of day in one schedule ("daily 09:00,13:00,17:00"). */
#define NOTIFY_SCHEDULE_MAX_TIMES 24
/* The shortest interval of the "every" form: a digest per second is already absurd. */
#define NOTIFY_SCHEDULE_MIN_INTERVAL_MS 1000

/*
 * A parsed schedule. Forms (case-insensitive):
 *   hourly                         at every full hour, local time
 *   daily HH:MM[,HH:MM...]         at these local times every day
 *   weekly DAY[,DAY...] HH:MM[,...] on these days (mon ... sun) at these times
 *   every DURATION                 at a fixed interval (30s, 10m, 2h), not tied to
 *                                  the clock
 */
struct notify_schedule {
	int64_t interval_ms;				   /* > 0: the "every" form */
	unsigned weekdays;				   /* bit 0 = Sunday ... bit 6 = Saturday */
	unsigned short minutes[NOTIFY_SCHEDULE_MAX_TIMES]; /* after local midnight, sorted */
	size_t ntimes;
};

/* 0, or -EINVAL with *err a new message saying what is wrong (caller frees). */
int notify_schedule_parse(const char *text, struct notify_schedule *out, char **err);
/* The first run strictly after now_ms (Unix ms), in tz. */
int64_t notify_schedule_next(const struct notify_schedule *s, const struct tz_zone *tz,
			     int64_t now_ms);

#endif
