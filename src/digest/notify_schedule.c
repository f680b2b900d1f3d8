/*
 * notify_schedule — parses the [notifications] schedule and finds its next run.
 * Local times are turned into Unix times with common/tz, so a schedule follows its
 * zone's daylight-saving changes: a time that does not exist runs an hour later,
 * a time that happens twice runs once (the first time).
 *
 * Not for: timers or running digests (digest/notify).
 */
#include "digest/notify_schedule.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/confparse.h"
#include "common/log.h"
#include "common/tz.h"
#include "common/xalloc.h"

static int notify_schedule_times(const char *s, struct notify_schedule *out, char **err)
{
	char *copy = xstrdup(s), *save = NULL;
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned h = 0, m = 0;
		int used = 0;
		if (sscanf(tok, "%2u:%2u%n", &h, &m, &used) != 2 || tok[used] != '\0' || h > 23 ||
		    m > 59 || strlen(tok) < 4 || tok[strlen(tok) - 3] != ':') {
			*err =
			    xasprintf("\"%s\" is not a time of day (HH:MM, 00:00 to 23:59)", tok);
			rc = -EINVAL;
			break;
		}
		unsigned short v = (unsigned short)(h * 60 + m);
		bool dup = false;
		for (size_t i = 0; i < out->ntimes; i++)
			dup = dup || out->minutes[i] == v;
		if (dup)
			continue;
		if (out->ntimes == NOTIFY_SCHEDULE_MAX_TIMES) {
			*err = xasprintf("at most %d times of day", NOTIFY_SCHEDULE_MAX_TIMES);
			rc = -EINVAL;
			break;
		}
		size_t i = out->ntimes++;
		while (i > 0 && out->minutes[i - 1] > v) {
			out->minutes[i] = out->minutes[i - 1];
			i--;
		}
		out->minutes[i] = v;
	}
	if (rc == 0 && out->ntimes == 0) {
		*err = xstrdup("no time of day given");
		rc = -EINVAL;
	}
	free(copy);
	return rc;
}

static int notify_schedule_days(const char *s, unsigned *days, char **err)
{
	static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
	static const char *const long_names[] = {"sunday",   "monday", "tuesday", "wednesday",
						 "thursday", "friday", "saturday"};
	char *copy = xstrdup(s), *save = NULL;
	int rc = 0;
	*days = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		int found = -1;
		for (int i = 0; i < 7; i++) {
			if (strcasecmp(tok, names[i]) == 0 || strcasecmp(tok, long_names[i]) == 0)
				found = i;
		}
		if (found < 0) {
			*err = xasprintf("\"%s\" is not a day (mon, tue, wed, thu, fri, sat, sun)",
					 tok);
			rc = -EINVAL;
			break;
		}
		*days |= 1u << found;
	}
	free(copy);
	return rc;
}

int notify_schedule_parse(const char *text, struct notify_schedule *out, char **err)
{
	char *words[4] = {NULL};
	size_t n = 0;
	int rc = -EINVAL;
	*err = NULL;
	memset(out, 0, sizeof(*out));
	char *copy = xstrdup(text != NULL ? text : ""), *save = NULL;
	for (char *w = strtok_r(copy, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
		if (n == 3) {
			n++;
			break;
		}
		words[n++] = w;
	}
	if (n == 1 && strcasecmp(words[0], "hourly") == 0) {
		out->weekdays = 0x7f;
		for (unsigned short h = 0; h < 24; h++)
			out->minutes[out->ntimes++] = (unsigned short)(h * 60);
		rc = 0;
	} else if (n == 2 && strcasecmp(words[0], "daily") == 0) {
		out->weekdays = 0x7f;
		rc = notify_schedule_times(words[1], out, err);
	} else if (n == 3 && strcasecmp(words[0], "weekly") == 0) {
		rc = notify_schedule_days(words[1], &out->weekdays, err);
		if (rc == 0)
			rc = notify_schedule_times(words[2], out, err);
	} else if (n == 2 && strcasecmp(words[0], "every") == 0) {
		int64_t ms = 0;
		if (confparse_duration_ms(words[1], false, &ms) < 0 ||
		    ms < NOTIFY_SCHEDULE_MIN_INTERVAL_MS) {
			*err = xasprintf("\"%s\" is not a duration of at least 1s (30s, 10m, 2h)",
					 words[1]);
		} else {
			out->interval_ms = ms;
			rc = 0;
		}
	}
	if (rc < 0 && *err == NULL)
		*err = xstrdup("must be \"hourly\", \"daily HH:MM[,HH:MM...]\", "
			       "\"weekly DAY[,DAY...] HH:MM[,HH:MM...]\" or \"every DURATION\"");
	free(copy);
	return rc;
}

int64_t notify_schedule_next(const struct notify_schedule *s, const struct tz_zone *tz,
			     int64_t now_ms)
{
	if (s->interval_ms > 0)
		return now_ms + s->interval_ms;
	int64_t now = now_ms / 1000;
	int64_t local = now + tz_offset(tz, now);
	int64_t today = local / 86400 - (local % 86400 < 0); /* floor, also before 1970 */
	int64_t best = INT64_MAX;
	/* A week and a day ahead covers every weekly schedule, whatever the offset. */
	for (int64_t day = today - 1; day <= today + 8 && best == INT64_MAX; day++) {
		if ((s->weekdays & (1u << tz_weekday(day))) == 0)
			continue;
		struct tm tm;
		time_t midnight = (time_t)(day * 86400);
		gmtime_r(&midnight, &tm);
		for (size_t i = 0; i < s->ntimes; i++) {
			int64_t t = tz_to_utc(tz, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
					      s->minutes[i] / 60, s->minutes[i] % 60) *
				    1000;
			if (t > now_ms && t < best)
				best = t;
		}
	}
	if (best == INT64_MAX)
		panic("notify: schedule without a next run");
	return best;
}
