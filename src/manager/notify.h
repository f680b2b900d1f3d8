/*
 * notify — the manager's end-user notification digests: when they go out
 * ([notifications] schedule, in a time zone), to whom, with what, and how they are
 * sent. The mail itself and its links are quarantine/digest's.
 */
#ifndef LAZARET_NOTIFY_H
#define LAZARET_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;

/* --- time zones ------------------------------------------------------------- */

/* A tz database zone file is never larger than this (the largest are ~4 KB). */
#define NOTIFY_TZ_FILE_MAX (256 * 1024)
/* Where zone files are looked up when $TZDIR is not set. */
#define NOTIFY_TZ_DIR "/usr/share/zoneinfo"

struct notify_tz;

/*
 * Loads zone name ("Asia/Tokyo", "Europe/Berlin", "UTC") from the tz database once;
 * the result is immutable and may be used from any thread. -EINVAL for a name that
 * is not a zone name or a file that is not TZif, -ENOENT for an unknown zone.
 */
int notify_tz_load(const char *name, struct notify_tz **out);
void notify_tz_free(struct notify_tz *tz);
/* The zone's offset from UTC in seconds (east positive) at Unix time t. */
int notify_tz_offset(const struct notify_tz *tz, int64_t t);
/* Its abbreviation at t ("JST", "CEST", "+09"). Valid while tz is. */
const char *notify_tz_abbrev(const struct notify_tz *tz, int64_t t);
/*
 * The Unix time of a local wall-clock time. A time that occurs twice (clocks go
 * back) is its first occurrence; a time that does not exist (clocks go forward)
 * is read with the offset before the change, so 02:30 becomes 03:30 summer time.
 */
int64_t notify_tz_to_utc(const struct notify_tz *tz, int year, int month, int day, int hour,
			 int minute);
/* "2026-11-27 09:30 JST" for ms in tz, into out. */
void notify_tz_format(const struct notify_tz *tz, int64_t ms, char *out, size_t size);

/* --- schedules -------------------------------------------------------------- */

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
int64_t notify_schedule_next(const struct notify_schedule *s, const struct notify_tz *tz,
			     int64_t now_ms);

/* --- the digest service ------------------------------------------------------ */

/* Digests waiting to be built and sent at once ("send now" beyond this: 429). */
#define NOTIFY_MAX_QUEUED 64

struct notify_config {
	bool enabled;		 /* scheduled digests; links and "send now" work regardless */
	const char *schedule;	 /* see notify_schedule_parse */
	const char *time_zone;	 /* default zone of schedule and of times in digests */
	const char *from;	 /* From: and envelope sender of digests */
	const char *base_url;	 /* links are base_url + "/d/" + token */
	const char *language;	 /* "ja" | "en": for recipients without their own */
	unsigned max_entries;	 /* messages listed in one digest */
	const char *data_dir;	 /* where digest.key lives */
	const char *hostname;	 /* Message-ID right side */
	int64_t delete_after_ms; /* a message's expiry = received_at + this (0: never) */
	/* the release path */
	const char *primary_host;
	const char *secondary_host; /* may be NULL */
	const char *source_address; /* may be NULL */
	const char *helo_name;
	int64_t timeout_ms; /* per SMTP step */
};

struct notify;

/*
 * Loads (or creates) the link key, installs the digest service for the API
 * (quarantine/digest.h) and, when cfg->enabled, arms the schedule on base. The
 * strings in cfg are copied. 0, or a negative errno (the key cannot be read or
 * made, an unknown zone, a bad schedule).
 */
int notify_new(struct event_base *base, struct store *st, const struct notify_config *cfg,
	       struct notify **out);
/* New settings (SIGHUP); the schedule is re-armed from now. 0 or -EINVAL (kept old). */
int notify_reconfigure(struct notify *n, const struct notify_config *cfg);
/*
 * Queues one digest now (see digest_send_now_fn). 0, -EAGAIN when NOTIFY_MAX_QUEUED
 * digests are waiting, -ESHUTDOWN while stopping.
 */
int notify_send_now(struct notify *n, const char *username, const char *const *addresses,
		    size_t naddresses, const char *address);
/* Stops the schedule, lets a digest being sent finish, removes the service. NULL: no-op. */
void notify_free(struct notify *n);

#endif
