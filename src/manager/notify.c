/*
 * notify — sends the end users' spam-quarantine digests on a schedule, and
 * one digest at once when asked ("send my digest now").
 *
 * Who gets one. Every end-user account (role enduser) with a new quarantined
 * message addressed to any of its addresses gets ONE digest covering all of its
 * addresses (aliases consolidated), in its own language and time zone (else the
 * configured ones). A recipient address that belongs to no account (LDAP and IMAP
 * users exist only once they log in, and many never do) gets a digest of its own,
 * addressed to it, in the configured language. No new message: no mail.
 *
 * What is new. Messages are numbered in the store (seq). digest_state keeps, per
 * address, the highest seq already listed, and under the key "*" the scheduler's
 * low-water mark: every still-quarantined message above it has not been listed to
 * someone yet. A scheduled run:
 *
 *   mark W, top M = max seq    (store_digest_state_get "*", store_digest_max_seq)
 *   addresses with quarantined mail in (W, M]   (store_digest_candidates)
 *   group them by account; per group list (last_seq(address) or W, M]
 *   sent     -> last_seq(address) = M for each address in the group
 *   failed   -> the new mark stays at or below the group's oldest floor, so the
 *               next run (the next scheduled time) offers it again
 *   mark "*" = min(M, floors of failed groups)
 *
 * "Send now" lists (last_seq(address) or 0, M]: everything still quarantined and
 * not yet listed, and records like a scheduled run.
 *
 * How it is sent. Through the release path: SMTP to [release] primary_host, to the
 * secondary on no connection or 4xx, from [notifications] from. A digest that
 * cannot be delivered is not queued: it is built again, with whatever is new by
 * then, at the next scheduled time. (The store's delivery queue holds quarantined
 * messages only, and a day-old digest is worth less than a fresh one.)
 *
 * Threads and time zones. The schedule runs on the event loop as a timer; each
 * digest is built and sent on one worker thread (so runs never overlap and
 * digest_state has one writer). Zones are read from the tz database files by this
 * module (notify_tz_*): loaded once, immutable, usable from any thread. The process
 * environment's TZ and localtime() are never touched, because changing TZ per call
 * is not thread-safe and the process serves many users in many zones.
 *
 * Not for: the mail's format and links (quarantine/digest), accounts (store).
 */
#include "manager/notify.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/confparse.h"
#include "common/log.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/digest.h"
#include "smtp/smtp_client.h"
#include "store/store.h"

/* The external spam quarantine: the only one end users see. */
#define NOTIFY_QUARANTINE "spam"
/* A time-zone abbreviation is short; longer ones are cut. */
#define NOTIFY_TZ_ABBREV_MAX 16
/* SMTP steps one digest session may take in all (see smtp_client session_timeout). */
#define NOTIFY_SESSION_STEPS 10

/* --- time zones ------------------------------------------------------------- */

struct notify_tz_type {
	int32_t utoff;
	bool isdst;
	char abbr[NOTIFY_TZ_ABBREV_MAX];
};

/* A rule "Mm.w.d/time" of a POSIX TZ string. */
struct notify_tz_when {
	int month, week, wday;
	int32_t secs;
};

/* The footer of a TZif file: how the zone goes on after its last transition. */
struct notify_tz_rule {
	bool valid;
	bool has_dst;
	struct notify_tz_type std, dst;
	struct notify_tz_when start, end;
};

struct notify_tz {
	int64_t *times; /* transition times, ascending */
	unsigned char *idx;
	size_t ntimes;
	struct notify_tz_type *types;
	size_t ntypes;
	struct notify_tz_rule rule;
};

static int64_t notify_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* 0 = Sunday. */
static int notify_weekday(int64_t days)
{
	return (int)(((days % 7) + 11) % 7);
}

static void notify_civil(int64_t t, struct tm *tm)
{
	time_t tt = (time_t)t;
	gmtime_r(&tt, tm);
}

static bool notify_tz_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 255 || name[0] == '/' || strstr(name, "..") != NULL)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("_+-./", *p) == NULL)
			return false;
	}
	return true;
}

static uint32_t notify_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t notify_be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)notify_be32(p) << 32 | notify_be32(p + 4));
}

/* POSIX TZ pieces: "<+09>" or "JST". */
static bool notify_tzs_name(const char **pp, char *out)
{
	const char *p = *pp, *start;
	size_t n;
	if (*p == '<') {
		start = ++p;
		while (*p != '\0' && *p != '>')
			p++;
		if (*p != '>')
			return false;
		n = (size_t)(p - start);
		p++;
	} else {
		start = p;
		while (isalpha((unsigned char)*p))
			p++;
		n = (size_t)(p - start);
	}
	if (n < 3)
		return false;
	snprintf(out, NOTIFY_TZ_ABBREV_MAX, "%.*s", (int)n, start);
	*pp = p;
	return true;
}

/* [+-]h[h][:mm[:ss]] into seconds (hours up to 167, as TZif v3 allows). */
static bool notify_tzs_time(const char **pp, int32_t *out)
{
	const char *p = *pp;
	int sign = 1;
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if (!isdigit((unsigned char)*p))
		return false;
	int32_t parts[3] = {0, 0, 0};
	for (int i = 0; i < 3; i++) {
		int v = 0, digits = 0;
		while (isdigit((unsigned char)*p) && digits < 3) {
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		parts[i] = v;
		if (*p != ':' || i == 2)
			break;
		p++;
	}
	if (parts[0] > 167 || parts[1] > 59 || parts[2] > 59)
		return false;
	*out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
	*pp = p;
	return true;
}

static bool notify_tzs_int(const char **pp, int lo, int hi, int *out)
{
	const char *p = *pp;
	int v = 0;
	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p) && v <= hi)
		v = v * 10 + (*p++ - '0');
	if (v < lo || v > hi)
		return false;
	*out = v;
	*pp = p;
	return true;
}

/* ",Mm.w.d[/time]"; only the M form (every zone in the tz database uses it). */
static bool notify_tzs_when(const char **pp, struct notify_tz_when *w)
{
	const char *p = *pp;
	if (*p++ != ',' || *p++ != 'M')
		return false;
	if (!notify_tzs_int(&p, 1, 12, &w->month) || *p++ != '.' ||
	    !notify_tzs_int(&p, 1, 5, &w->week) || *p++ != '.' ||
	    !notify_tzs_int(&p, 0, 6, &w->wday))
		return false;
	w->secs = 2 * 3600;
	if (*p == '/') {
		p++;
		if (!notify_tzs_time(&p, &w->secs))
			return false;
	}
	*pp = p;
	return true;
}

/* Parses a TZif footer ("CET-1CEST,M3.5.0,M10.5.0/3", "JST-9"). */
static void notify_tz_parse_rule(const char *s, struct notify_tz_rule *r)
{
	const char *p = s;
	int32_t off;
	memset(r, 0, sizeof(*r));
	if (!notify_tzs_name(&p, r->std.abbr) || !notify_tzs_time(&p, &off))
		return;
	r->std.utoff = -off; /* POSIX offsets count west of Greenwich */
	if (*p == '\0') {
		r->valid = true;
		return;
	}
	if (!notify_tzs_name(&p, r->dst.abbr))
		return;
	r->dst.isdst = true;
	r->dst.utoff = r->std.utoff + 3600;
	if (*p != ',' && *p != '\0') {
		if (!notify_tzs_time(&p, &off))
			return;
		r->dst.utoff = -off;
	}
	if (!notify_tzs_when(&p, &r->start) || !notify_tzs_when(&p, &r->end) || *p != '\0')
		return;
	r->has_dst = true;
	r->valid = true;
}

/* The Unix time at which w happens in year y, given the offset in force before it. */
static int64_t notify_tz_when_utc(const struct notify_tz_when *w, int64_t y, int32_t utoff_before)
{
	int64_t first = notify_days_from_civil(y, w->month, 1);
	int64_t next = w->month == 12 ? notify_days_from_civil(y + 1, 1, 1)
				      : notify_days_from_civil(y, w->month + 1, 1);
	int64_t day = first + (w->wday - notify_weekday(first) + 7) % 7 + (w->week - 1) * 7;
	while (day >= next)
		day -= 7;
	return day * 86400 + w->secs - utoff_before;
}

static const struct notify_tz_type *notify_tz_rule_at(const struct notify_tz_rule *r, int64_t t)
{
	if (!r->has_dst)
		return &r->std;
	struct tm tm;
	notify_civil(t + r->std.utoff, &tm);
	int64_t y = (int64_t)tm.tm_year + 1900;
	int64_t start = notify_tz_when_utc(&r->start, y, r->std.utoff);
	int64_t end = notify_tz_when_utc(&r->end, y, r->dst.utoff);
	bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? &r->dst : &r->std;
}

static const struct notify_tz_type *notify_tz_type_at(const struct notify_tz *tz, int64_t t)
{
	if (tz->ntimes == 0 || t < tz->times[0]) {
		if (tz->ntimes == 0 && tz->rule.valid)
			return notify_tz_rule_at(&tz->rule, t);
		return &tz->types[0];
	}
	size_t lo = 0, hi = tz->ntimes; /* the last transition <= t is in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (tz->times[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	/* After the last transition the footer rule says what happens (RFC 8536 3.3). */
	if (lo == tz->ntimes - 1 && tz->rule.valid)
		return notify_tz_rule_at(&tz->rule, t);
	return &tz->types[tz->idx[lo]];
}

int notify_tz_offset(const struct notify_tz *tz, int64_t t)
{
	return notify_tz_type_at(tz, t)->utoff;
}

const char *notify_tz_abbrev(const struct notify_tz *tz, int64_t t)
{
	return notify_tz_type_at(tz, t)->abbr;
}

/* Parses a TZif file (RFC 8536), using the 64-bit data of version 2 and later. */
static int notify_tz_parse(const unsigned char *d, size_t len, struct notify_tz *tz)
{
	size_t pos = 0;
	int ver = 1;
	for (int pass = 0; pass < 2; pass++) {
		if (len - pos < 44 || memcmp(d + pos, "TZif", 4) != 0)
			return -EINVAL;
		ver = d[pos + 4] >= '2' ? 2 : 1;
		uint32_t isut = notify_be32(d + pos + 20), isstd = notify_be32(d + pos + 24),
			 leap = notify_be32(d + pos + 28), timecnt = notify_be32(d + pos + 32),
			 typecnt = notify_be32(d + pos + 36), charcnt = notify_be32(d + pos + 40);
		size_t tsize = pass == 0 ? 4 : 8;
		if (timecnt > 100000 || typecnt == 0 || typecnt > 256 || charcnt > 65536 ||
		    leap > 100000 || isut > 256 || isstd > 256)
			return -EINVAL;
		size_t need = (size_t)timecnt * (tsize + 1) + (size_t)typecnt * 6 + charcnt +
			      (size_t)leap * (tsize + 4) + isstd + isut;
		pos += 44;
		if (len - pos < need)
			return -EINVAL;
		if (pass == 0 && ver >= 2) {
			pos += need; /* skip the 32-bit data */
			continue;
		}
		const unsigned char *p = d + pos;
		tz->ntimes = timecnt;
		tz->times = xcalloc(timecnt + 1, sizeof(int64_t));
		tz->idx = xcalloc(timecnt + 1, 1);
		for (size_t i = 0; i < timecnt; i++) {
			tz->times[i] = tsize == 8 ? notify_be64(p) : (int32_t)notify_be32(p);
			p += tsize;
		}
		for (size_t i = 0; i < timecnt; i++) {
			tz->idx[i] = *p++;
			if (tz->idx[i] >= typecnt)
				return -EINVAL;
		}
		const unsigned char *chars = p + typecnt * 6;
		tz->ntypes = typecnt;
		tz->types = xcalloc(typecnt, sizeof(*tz->types));
		for (size_t i = 0; i < typecnt; i++, p += 6) {
			tz->types[i].utoff = (int32_t)notify_be32(p);
			tz->types[i].isdst = p[4] != 0;
			if (p[5] >= charcnt)
				return -EINVAL;
			snprintf(tz->types[i].abbr, sizeof(tz->types[i].abbr), "%.*s",
				 (int)strnlen((const char *)chars + p[5], charcnt - p[5]),
				 (const char *)chars + p[5]);
		}
		pos += need;
		break;
	}
	if (ver >= 2 && pos < len && d[pos] == '\n') {
		const char *f = (const char *)d + pos + 1;
		const char *e = memchr(f, '\n', len - pos - 1);
		if (e != NULL && e - f < 128) {
			char footer[128];
			snprintf(footer, sizeof(footer), "%.*s", (int)(e - f), f);
			notify_tz_parse_rule(footer, &tz->rule);
		}
	}
	return 0;
}

void notify_tz_free(struct notify_tz *tz)
{
	if (tz == NULL)
		return;
	free(tz->times);
	free(tz->idx);
	free(tz->types);
	free(tz);
}

int notify_tz_load(const char *name, struct notify_tz **out)
{
	*out = NULL;
	if (name == NULL || !notify_tz_name_ok(name))
		return -EINVAL;
	const char *dir = getenv("TZDIR");
	char *path = xasprintf("%s/%s", dir != NULL && *dir == '/' ? dir : NOTIFY_TZ_DIR, name);
	unsigned char *data = NULL;
	struct notify_tz *tz = NULL;
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
		goto fail;
	}
	data = xmalloc(NOTIFY_TZ_FILE_MAX);
	size_t len = 0;
	ssize_t got;
	while (len < NOTIFY_TZ_FILE_MAX &&
	       (got = read(fd, data + len, NOTIFY_TZ_FILE_MAX - len)) > 0)
		len += (size_t)got;
	close(fd);
	tz = xcalloc(1, sizeof(*tz));
	if ((rc = notify_tz_parse(data, len, tz)) < 0)
		goto fail;
	free(data);
	free(path);
	*out = tz;
	return 0;

fail:
	notify_tz_free(tz);
	free(data);
	free(path);
	return rc;
}

int64_t notify_tz_to_utc(const struct notify_tz *tz, int year, int month, int day, int hour,
			 int minute)
{
	int64_t local =
	    notify_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60;
	/* The offset in force is one of those around; keep the earliest that fits. */
	int64_t cands[3] = {local - notify_tz_offset(tz, local - 86400),
			    local - notify_tz_offset(tz, local),
			    local - notify_tz_offset(tz, local + 86400)};
	int64_t best = INT64_MAX;
	for (int i = 0; i < 3; i++) {
		if (notify_tz_offset(tz, cands[i]) == local - cands[i] && cands[i] < best)
			best = cands[i];
	}
	/* In a gap: read it with the offset from before the change. */
	return best != INT64_MAX ? best : cands[0];
}

void notify_tz_format(const struct notify_tz *tz, int64_t ms, char *out, size_t size)
{
	int64_t t = ms / 1000;
	const struct notify_tz_type *ty = notify_tz_type_at(tz, t);
	struct tm tm;
	notify_civil(t + ty->utoff, &tm);
	snprintf(out, size, "%04d-%02d-%02d %02d:%02d %s", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, ty->abbr);
}

/* --- schedules -------------------------------------------------------------- */

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

int64_t notify_schedule_next(const struct notify_schedule *s, const struct notify_tz *tz,
			     int64_t now_ms)
{
	if (s->interval_ms > 0)
		return now_ms + s->interval_ms;
	int64_t now = now_ms / 1000;
	int64_t local = now + notify_tz_offset(tz, now);
	int64_t today = local / 86400 - (local % 86400 < 0); /* floor, also before 1970 */
	int64_t best = INT64_MAX;
	/* A week and a day ahead covers every weekly schedule, whatever the offset. */
	for (int64_t day = today - 1; day <= today + 8 && best == INT64_MAX; day++) {
		if ((s->weekdays & (1u << notify_weekday(day))) == 0)
			continue;
		struct tm tm;
		notify_civil(day * 86400, &tm);
		for (size_t i = 0; i < s->ntimes; i++) {
			int64_t t =
			    notify_tz_to_utc(tz, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
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

/* --- the service ------------------------------------------------------------ */

/* One immutable copy of the settings, shared by the loop and running jobs. */
struct notify_settings {
	unsigned refs; /* under notify.lock */
	bool enabled;
	struct notify_schedule sched;
	struct notify_tz *tz;
	char *from, *base_url, *hostname;
	enum digest_lang lang;
	unsigned max_entries;
	int64_t delete_after_ms;
	char *primary, *secondary, *source, *helo;
	int64_t timeout_ms;
	unsigned char key[DIGEST_KEY_LEN];
};

struct notify {
	struct event_base *base;
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	pthread_mutex_t lock;
	struct notify_settings *cur; /* under lock */
	unsigned queued;	     /* jobs waiting or running; under lock */
	bool scheduled_busy;	     /* a scheduled run is queued or running; under lock */
	bool stopping;		     /* under lock */
	int64_t next_run;	     /* loop thread */
};

/* One digest to build: to an account, or to a bare address. */
struct notify_job {
	struct notify *n;
	struct notify_settings *s;
	bool scheduled;
	char *username;
	char **addresses;
	size_t naddresses;
	char *address;
};

static void notify_settings_free(struct notify_settings *s)
{
	if (s == NULL)
		return;
	notify_tz_free(s->tz);
	free(s->from);
	free(s->base_url);
	free(s->hostname);
	free(s->primary);
	free(s->secondary);
	free(s->source);
	free(s->helo);
	sodium_memzero(s->key, sizeof(s->key));
	free(s);
}

static struct notify_settings *notify_settings_ref(struct notify *n)
{
	pthread_mutex_lock(&n->lock);
	struct notify_settings *s = n->cur;
	s->refs++;
	pthread_mutex_unlock(&n->lock);
	return s;
}

static void notify_settings_unref(struct notify *n, struct notify_settings *s)
{
	pthread_mutex_lock(&n->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&n->lock);
	if (last)
		notify_settings_free(s);
}

static char *notify_dup_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? xstrdup(s) : NULL;
}

static int notify_settings_make(const struct notify_config *cfg, const unsigned char *key,
				struct notify_settings **out)
{
	struct notify_settings *s = xcalloc(1, sizeof(*s));
	char *err = NULL;
	int rc;
	char q[256];
	*out = NULL;
	s->refs = 1;
	s->enabled = cfg->enabled;
	if ((rc = notify_schedule_parse(cfg->schedule, &s->sched, &err)) < 0) {
		log_error("notify.bad_schedule", "schedule=%s error=%s",
			  log_quote(q, sizeof(q), cfg->schedule), err);
		free(err);
		goto fail;
	}
	const char *zone = cfg->time_zone != NULL ? cfg->time_zone : "UTC";
	if ((rc = notify_tz_load(zone, &s->tz)) < 0) {
		log_error("notify.bad_time_zone", "time_zone=%s rc=%d",
			  log_quote(q, sizeof(q), zone), rc);
		goto fail;
	}
	if (digest_lang_parse(cfg->language, &s->lang) < 0)
		s->lang = DIGEST_LANG_JA;
	s->from = notify_dup_or_null(cfg->from);
	s->base_url = xstrdup(cfg->base_url != NULL ? cfg->base_url : "");
	size_t blen = strlen(s->base_url);
	while (blen > 0 && s->base_url[blen - 1] == '/')
		s->base_url[--blen] = '\0';
	s->hostname = xstrdup(cfg->hostname != NULL ? cfg->hostname : "lazaret");
	s->max_entries = cfg->max_entries != 0 ? cfg->max_entries : 100;
	s->delete_after_ms = cfg->delete_after_ms;
	s->primary = notify_dup_or_null(cfg->primary_host);
	s->secondary = notify_dup_or_null(cfg->secondary_host);
	s->source = notify_dup_or_null(cfg->source_address);
	s->helo = notify_dup_or_null(cfg->helo_name);
	s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000;
	memcpy(s->key, key, DIGEST_KEY_LEN);
	*out = s;
	return 0;

fail:
	notify_settings_free(s);
	return -EINVAL;
}

/* Tries primary, then secondary on no connection or 4xx. 0 delivered, else negative. */
static int notify_deliver(const struct notify_settings *s, const char *rcpt, const char *data,
			  size_t len)
{
	const char *hosts[] = {s->primary, s->secondary};
	const char *rcpts[] = {rcpt};
	struct smtp_client_options opt = {
	    .helo_name = s->helo,
	    .source_address = s->source,
	    .timeout_ms = s->timeout_ms,
	    .session_timeout_ms = s->timeout_ms * NOTIFY_SESSION_STEPS,
	};
	struct smtp_client_message msg = {
	    .sender = s->from,
	    .rcpts = rcpts,
	    .nrcpts = 1,
	    .body = (const unsigned char *)data,
	    .body_len = len,
	};
	char q[512];
	int rc = -EHOSTUNREACH;
	for (size_t i = 0; i < 2; i++) {
		if (hosts[i] == NULL)
			continue;
		struct smtp_client_result res;
		(void)smtp_client_send(hosts[i], &opt, &msg, &res);
		enum smtp_client_outcome o =
		    res.nrcpts > 0 ? res.rcpts[0].outcome : SMTP_CLIENT_DEFERRED;
		const char *why = res.nrcpts > 0 && res.rcpts[0].reply != NULL ? res.rcpts[0].reply
				  : res.error != NULL			       ? res.error
									       : "";
		if (o != SMTP_CLIENT_DELIVERED)
			log_warn("notify.send_attempt", "host=%s rcpt=%s outcome=%s reply=%s",
				 hosts[i], rcpt, smtp_client_outcome_name(o),
				 log_quote(q, sizeof(q), why));
		smtp_client_result_free(&res);
		if (o == SMTP_CLIENT_DELIVERED)
			return 0;
		rc = o == SMTP_CLIENT_REJECTED ? -EPERM : -EAGAIN;
		if (o == SMTP_CLIENT_REJECTED)
			break;
	}
	return rc;
}

/* The link for one action on one entry, or NULL when it would be dead already. */
static char *notify_link(const struct notify_settings *s, const struct store_digest_entry *e,
			 enum digest_action action, enum digest_lang lang, int64_t now)
{
	struct digest_token t = {.action = action, .lang = lang};
	t.expires_ms = s->delete_after_ms > 0 ? e->received_at + s->delete_after_ms
					      : now + DIGEST_LINK_DEFAULT_TTL_MS;
	if (t.expires_ms <= now)
		return NULL;
	snprintf(t.msg_id, sizeof(t.msg_id), "%s", e->id);
	if (snprintf(t.rcpt, sizeof(t.rcpt), "%s", e->recipient) >= (int)sizeof(t.rcpt))
		return NULL;
	char *tok = digest_token_sign(s->key, &t);
	if (tok == NULL)
		return NULL;
	char *url = xasprintf("%s/d/%s", s->base_url, tok);
	free(tok);
	return url;
}

static int notify_entry_newest_first(const void *pa, const void *pb)
{
	const struct store_digest_entry *a = pa, *b = pb;
	if (a->received_at != b->received_at)
		return a->received_at > b->received_at ? -1 : 1;
	return a->seq > b->seq ? -1 : a->seq < b->seq;
}

/* Who one digest is for. */
struct notify_target {
	const char *const *addresses; /* lower-case */
	size_t naddresses;
	const char *to;
	enum digest_lang lang;
	const struct notify_tz *tz;
};

/*
 * Builds and sends one digest covering tg's addresses: for each, what is
 * quarantined in (its last_seq, or floor when it has none, upto]. *sent tells
 * whether a mail went out. 0 (also when there was nothing new), or negative when it
 * could not be built or delivered (nothing is recorded then).
 */
static int notify_digest(struct store *st, const struct notify_settings *s,
			 const struct notify_target *tg, int64_t floor, int64_t upto, int64_t now,
			 bool *sent)
{
	struct store_digest_entry *all = NULL;
	size_t nall = 0, total = 0;
	struct digest_entry *entries = NULL;
	char **times = NULL, **links = NULL, *mail = NULL; /* own what entries borrow */
	size_t mail_len = 0;
	int rc = 0;
	*sent = false;
	for (size_t i = 0; i < tg->naddresses; i++) {
		int64_t last = floor;
		int r = store_digest_state_get(st, tg->addresses[i], &last, NULL);
		if (r < 0 && r != -ENOENT) {
			rc = r;
			goto done;
		}
		if (r == -ENOENT)
			last = floor;
		struct store_digest_entry *v = NULL;
		size_t k = 0, tot = 0;
		if ((rc = store_digest_entries(st, NOTIFY_QUARANTINE, tg->addresses[i], last, upto,
					       s->max_entries, &v, &k, &tot)) < 0)
			goto done;
		all = xreallocarray(all, nall + k + 1, sizeof(*all));
		if (k > 0) /* v may be NULL when nothing is new */
			memcpy(all + nall, v, k * sizeof(*v));
		nall += k;
		total += tot;
		free(v); /* the strings moved into all */
	}
	if (total == 0)
		goto done;
	qsort(all, nall, sizeof(*all), notify_entry_newest_first);
	size_t listed = nall < s->max_entries ? nall : s->max_entries;
	entries = xcalloc(listed + 1, sizeof(*entries));
	times = xcalloc(listed + 1, sizeof(*times));
	links = xcalloc(2 * listed + 1, sizeof(*links));
	for (size_t i = 0; i < listed; i++) {
		const struct store_digest_entry *e = &all[i];
		char when[64];
		notify_tz_format(tg->tz, e->received_at, when, sizeof(when));
		times[i] = xstrdup(when);
		links[2 * i] = notify_link(s, e, DIGEST_ACTION_RELEASE, tg->lang, now);
		links[2 * i + 1] = notify_link(s, e, DIGEST_ACTION_SAFELIST, tg->lang, now);
		entries[i] = (struct digest_entry){
		    .recipient = e->recipient,
		    .sender = e->sender,
		    .from = e->from,
		    .subject = e->subject,
		    .received = times[i],
		    .has_score = e->has_score,
		    .score = e->score,
		    .release_url = links[2 * i],
		    .safelist_url = links[2 * i + 1],
		};
	}
	struct digest_mail m = {
	    .lang = tg->lang,
	    .from = s->from,
	    .to = tg->to,
	    .addresses = tg->addresses,
	    .naddresses = tg->naddresses,
	    .entries = entries,
	    .nentries = listed,
	    .not_listed = total - listed,
	    .portal_url = *s->base_url != '\0' ? s->base_url : NULL,
	    .now_ms = now,
	    .utc_offset_s = notify_tz_offset(tg->tz, now / 1000),
	    .hostname = s->hostname,
	};
	if ((rc = digest_build_mail(&m, &mail, &mail_len)) < 0)
		goto done;
	if ((rc = notify_deliver(s, tg->to, mail, mail_len)) < 0) {
		log_warn("notify.digest_failed", "to=%s entries=%zu rc=%d", tg->to, total, rc);
		goto done;
	}
	*sent = true;
	log_info("notify.digest_sent", "to=%s addresses=%zu entries=%zu listed=%zu lang=%s", tg->to,
		 tg->naddresses, total, listed, digest_lang_name(tg->lang));
	rc = store_digest_state_put(st, tg->addresses, tg->naddresses, upto, now);
	if (rc < 0)
		log_error("notify.state_failed", "to=%s rc=%d", tg->to, rc);

done:
	for (size_t i = 0; entries != NULL && times != NULL && times[i] != NULL; i++) {
		free(links[2 * i]);
		free(links[2 * i + 1]);
		free(times[i]);
	}
	free(entries);
	free(times);
	free(links);
	free(mail);
	store_digest_entries_free(all, nall);
	return rc;
}

/* Target of an account (or of a bare address when u is NULL). */
static void notify_target_of(const struct notify_settings *s, const struct store_digest_user *u,
			     const char *const *addresses, size_t n, struct notify_tz **own_tz,
			     struct notify_target *tg)
{
	memset(tg, 0, sizeof(*tg));
	tg->addresses = addresses;
	tg->naddresses = n;
	tg->to = addresses[0];
	tg->lang = s->lang;
	tg->tz = s->tz;
	*own_tz = NULL;
	if (u == NULL)
		return;
	/* A username that is one of the account's addresses is the natural inbox. */
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(addresses[i], u->username) == 0)
			tg->to = addresses[i];
	}
	enum digest_lang l;
	if (digest_lang_parse(u->language, &l) == 0)
		tg->lang = l;
	if (u->time_zone != NULL && notify_tz_load(u->time_zone, own_tz) == 0)
		tg->tz = *own_tz;
}

static void notify_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static bool notify_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i], s) == 0)
			return true;
	}
	return false;
}

static void notify_run_scheduled(struct notify *n, const struct notify_settings *s, int64_t now)
{
	int64_t mark = 0, top = 0;
	char **cands = NULL, **covered = NULL;
	size_t ncands = 0, ncovered = 0, sent = 0, failed = 0;
	int rc = store_digest_state_get(n->st, "*", &mark, NULL);
	if (rc < 0 && rc != -ENOENT)
		return;
	if (rc == -ENOENT)
		mark = 0;
	if (store_digest_max_seq(n->st, &top) < 0 || top <= mark)
		return;
	if (store_digest_candidates(n->st, NOTIFY_QUARANTINE, mark, top, &cands, &ncands) < 0)
		return;
	int64_t next_mark = top;
	for (size_t i = 0; i < ncands; i++) {
		/* "*" is the mark's own key in digest_state, never a mailbox to write to. */
		if (strcmp(cands[i], "*") == 0 || notify_has(covered, ncovered, cands[i]))
			continue;
		struct store_digest_user *u = NULL;
		const char *const *addrs = (const char *const *)&cands[i];
		size_t naddrs = 1;
		if (store_digest_user_by_address(n->st, cands[i], &u) == 0 && u->naddresses > 0) {
			addrs = (const char *const *)u->addresses;
			naddrs = u->naddresses;
		}
		for (size_t k = 0; k < naddrs; k++) {
			covered = xreallocarray(covered, ncovered + 1, sizeof(*covered));
			covered[ncovered++] = xstrdup(addrs[k]);
		}
		struct notify_tz *own = NULL;
		struct notify_target tg;
		notify_target_of(s, u, addrs, naddrs, &own, &tg);
		bool was_sent = false;
		if (notify_digest(n->st, s, &tg, mark, top, now, &was_sent) < 0) {
			failed++;
			/* Offer this group again next time: keep the mark at its oldest floor. */
			for (size_t k = 0; k < naddrs; k++) {
				int64_t last = mark;
				if (store_digest_state_get(n->st, addrs[k], &last, NULL) < 0)
					last = mark;
				if (last < next_mark)
					next_mark = last;
			}
		} else if (was_sent) {
			sent++;
		}
		notify_tz_free(own);
		store_digest_user_free(u);
	}
	const char *key[] = {"*"};
	if (store_digest_state_put(n->st, key, 1, next_mark, now) < 0)
		log_error("notify.mark_failed", "mark=%lld", (long long)next_mark);
	log_info("notify.run", "candidates=%zu sent=%zu failed=%zu from_seq=%lld to_seq=%lld",
		 ncands, sent, failed, (long long)mark, (long long)top);
	for (size_t i = 0; i < ncands; i++)
		free(cands[i]);
	free(cands);
	for (size_t i = 0; i < ncovered; i++)
		free(covered[i]);
	free(covered);
}

static void notify_run_now(struct notify *n, const struct notify_settings *s,
			   const struct notify_job *j, int64_t now)
{
	struct store_digest_user *u = NULL;
	char **addrs = NULL;
	size_t naddrs = 0;
	int64_t top = 0;
	if (j->username != NULL)
		(void)store_digest_user_by_name(n->st, j->username, &u);
	else if (store_digest_user_by_address(n->st, j->address, &u) < 0)
		u = NULL;
	/* The account's addresses, and those the session brought (LDAP, IMAP). */
	if (u != NULL) {
		for (size_t i = 0; i < u->naddresses; i++) {
			addrs = xreallocarray(addrs, naddrs + 1, sizeof(*addrs));
			addrs[naddrs++] = xstrdup(u->addresses[i]);
		}
	}
	for (size_t i = 0; i < j->naddresses + (j->address != NULL ? 1 : 0); i++) {
		char *a = xstrdup(i < j->naddresses ? j->addresses[i] : j->address);
		notify_lower(a);
		if (notify_has(addrs, naddrs, a)) {
			free(a);
			continue;
		}
		addrs = xreallocarray(addrs, naddrs + 1, sizeof(*addrs));
		addrs[naddrs++] = a;
	}
	if (naddrs > 0 && store_digest_max_seq(n->st, &top) == 0) {
		struct notify_tz *own = NULL;
		struct notify_target tg;
		bool sent = false;
		notify_target_of(s, u, (const char *const *)addrs, naddrs, &own, &tg);
		int rc = notify_digest(n->st, s, &tg, 0, top, now, &sent);
		if (rc == 0 && !sent)
			log_info("notify.nothing_new", "to=%s", tg.to);
		notify_tz_free(own);
	}
	for (size_t i = 0; i < naddrs; i++)
		free(addrs[i]);
	free(addrs);
	store_digest_user_free(u);
}

static void notify_job_free(struct notify_job *j)
{
	free(j->username);
	for (size_t i = 0; i < j->naddresses; i++)
		free(j->addresses[i]);
	free(j->addresses);
	free(j->address);
	free(j);
}

/* Worker thread. */
static void notify_job_run(void *arg)
{
	struct notify_job *j = arg;
	struct notify *n = j->n;
	pthread_mutex_lock(&n->lock);
	bool stopping = n->stopping;
	pthread_mutex_unlock(&n->lock);
	if (!stopping) {
		if (j->s->from == NULL)
			log_warn("notify.no_from", "reason=\"[notifications] from is not set\"");
		else if (j->scheduled)
			notify_run_scheduled(n, j->s, clock_now_ms());
		else
			notify_run_now(n, j->s, j, clock_now_ms());
	}
	notify_settings_unref(n, j->s);
	pthread_mutex_lock(&n->lock);
	n->queued--;
	if (j->scheduled)
		n->scheduled_busy = false;
	pthread_mutex_unlock(&n->lock);
	notify_job_free(j);
}

/* Queues j unless too many are waiting; takes j either way. */
static int notify_submit(struct notify *n, struct notify_job *j)
{
	pthread_mutex_lock(&n->lock);
	int rc = 0;
	if (n->stopping)
		rc = -ESHUTDOWN;
	else if (n->queued >= NOTIFY_MAX_QUEUED || (j->scheduled && n->scheduled_busy))
		rc = -EAGAIN;
	if (rc == 0) {
		n->queued++;
		if (j->scheduled)
			n->scheduled_busy = true;
	}
	pthread_mutex_unlock(&n->lock);
	if (rc < 0) {
		notify_job_free(j);
		return rc;
	}
	j->s = notify_settings_ref(n);
	workpool_submit(n->wp, notify_job_run, j);
	return 0;
}

int notify_send_now(struct notify *n, const char *username, const char *const *addresses,
		    size_t naddresses, const char *address)
{
	if (username == NULL && address == NULL)
		return -EINVAL;
	struct notify_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->username = username != NULL ? xstrdup(username) : NULL;
	j->address = address != NULL ? xstrdup(address) : NULL;
	if (naddresses > 0) {
		j->addresses = xcalloc(naddresses, sizeof(char *));
		for (size_t i = 0; i < naddresses; i++)
			j->addresses[i] = xstrdup(addresses[i]);
		j->naddresses = naddresses;
	}
	return notify_submit(n, j);
}

static int notify_send_now_hook(void *arg, const char *username, const char *const *addresses,
				size_t naddresses, const char *address)
{
	return notify_send_now(arg, username, addresses, naddresses, address);
}

static void notify_arm(struct notify *n)
{
	struct notify_settings *s = n->cur; /* loop thread: the only writer of cur */
	if (!s->enabled) {
		evtimer_del(n->timer);
		return;
	}
	int64_t now = clock_now_ms();
	n->next_run = notify_schedule_next(&s->sched, s->tz, now);
	int64_t wait = n->next_run - now;
	struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000 * 1000)};
	evtimer_add(n->timer, &tv);
	char when[64];
	notify_tz_format(s->tz, n->next_run, when, sizeof(when));
	log_debug("notify.next_run", "at=%s", log_quote((char[80]){0}, 80, when));
}

static void notify_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	struct notify_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->scheduled = true;
	int rc = notify_submit(n, j);
	if (rc == -EAGAIN)
		log_warn("notify.run_skipped", "reason=\"the previous run is still going\"");
	notify_arm(n);
}

int notify_new(struct event_base *base, struct store *st, const struct notify_config *cfg,
	       struct notify **out)
{
	unsigned char key[DIGEST_KEY_LEN];
	struct notify_settings *s = NULL;
	*out = NULL;
	int rc = digest_key_load(cfg->data_dir, key);
	if (rc < 0) {
		log_error("notify.key_failed", "dir=%s rc=%d", cfg->data_dir, rc);
		return rc;
	}
	rc = notify_settings_make(cfg, key, &s);
	sodium_memzero(key, sizeof(key));
	if (rc < 0)
		return rc;
	struct notify *n = xcalloc(1, sizeof(*n));
	n->base = base;
	n->st = st;
	n->cur = s;
	pthread_mutex_init(&n->lock, NULL);
	/* One thread: runs never overlap, and digest_state has a single writer. */
	n->wp = workpool_new(1);
	n->timer = evtimer_new(base, notify_on_timer, n);
	struct digest_service svc = {.send_now = notify_send_now_hook, .arg = n};
	memcpy(svc.key, s->key, DIGEST_KEY_LEN);
	digest_service_install(&svc);
	sodium_memzero(&svc, sizeof(svc));
	notify_arm(n);
	log_info("notify.start", "enabled=%s schedule=%s lang=%s", s->enabled ? "yes" : "no",
		 cfg->schedule != NULL ? log_quote((char[128]){0}, 128, cfg->schedule) : "-",
		 digest_lang_name(s->lang));
	*out = n;
	return 0;
}

int notify_reconfigure(struct notify *n, const struct notify_config *cfg)
{
	struct notify_settings *s = NULL;
	int rc = notify_settings_make(cfg, n->cur->key, &s);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&n->lock);
	struct notify_settings *old = n->cur;
	n->cur = s;
	pthread_mutex_unlock(&n->lock);
	notify_settings_unref(n, old);
	notify_arm(n);
	return 0;
}

void notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	digest_service_install(NULL);
	event_free(n->timer);
	pthread_mutex_lock(&n->lock);
	n->stopping = true;
	pthread_mutex_unlock(&n->lock);
	workpool_free(n->wp); /* queued jobs see stopping; one being sent finishes */
	notify_settings_unref(n, n->cur);
	pthread_mutex_destroy(&n->lock);
	free(n);
}
