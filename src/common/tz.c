/*
 * tz — time zones from the tz database, without TZ or localtime(): a zone is read
 * once from its TZif file (RFC 8536, $TZDIR or TZ_DIR), with its POSIX-TZ footer
 * rule ("CET-1CEST,M3.5.0,M10.5.0/3") for the years after its last transition.
 * The result is immutable and may be used from any thread; changing the process's
 * TZ per call would not be thread-safe, and one process serves users in many zones.
 *
 * Not for: parsing user-written TZ strings, leap seconds, calendars other than
 * the proleptic Gregorian one.
 */
#include "common/tz.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/readfile.h"
#include "common/xalloc.h"

/* A time-zone abbreviation is short; longer ones are cut. */
#define TZ_ABBREV_MAX 16

struct tz_type {
	int32_t utoff;
	bool isdst;
	char abbr[TZ_ABBREV_MAX];
};

/* A rule "Mm.w.d/time" of a POSIX TZ string. */
struct tz_when {
	int month, week, wday;
	int32_t secs;
};

/* The footer of a TZif file: how the zone goes on after its last transition. */
struct tz_rule {
	bool valid;
	bool has_dst;
	struct tz_type std, dst;
	struct tz_when start, end;
};

struct tz_zone {
	int64_t *times; /* transition times, ascending */
	unsigned char *idx;
	size_t ntimes;
	struct tz_type *types;
	size_t ntypes;
	struct tz_rule rule;
};

static int64_t tz_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int tz_weekday(int64_t days)
{
	return (int)(((days % 7) + 11) % 7);
}

static void tz_civil(int64_t t, struct tm *tm)
{
	time_t tt = (time_t)t;
	gmtime_r(&tt, tm);
}

static bool tz_name_ok(const char *name)
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

static uint32_t tz_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t tz_be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)tz_be32(p) << 32 | tz_be32(p + 4));
}

/* POSIX TZ pieces: "<+09>" or "JST". */
static bool tz_posix_name(const char **pp, char *out)
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
	snprintf(out, TZ_ABBREV_MAX, "%.*s", (int)n, start);
	*pp = p;
	return true;
}

/* [+-]h[h][:mm[:ss]] into seconds (hours up to 167, as TZif v3 allows). */
static bool tz_posix_time(const char **pp, int32_t *out)
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

static bool tz_posix_int(const char **pp, int lo, int hi, int *out)
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
static bool tz_posix_when(const char **pp, struct tz_when *w)
{
	const char *p = *pp;
	if (*p++ != ',' || *p++ != 'M')
		return false;
	if (!tz_posix_int(&p, 1, 12, &w->month) || *p++ != '.' ||
	    !tz_posix_int(&p, 1, 5, &w->week) || *p++ != '.' || !tz_posix_int(&p, 0, 6, &w->wday))
		return false;
	w->secs = 2 * 3600;
	if (*p == '/') {
		p++;
		if (!tz_posix_time(&p, &w->secs))
			return false;
	}
	*pp = p;
	return true;
}

/* Parses a TZif footer ("CET-1CEST,M3.5.0,M10.5.0/3", "JST-9"). */
static void tz_parse_rule(const char *s, struct tz_rule *r)
{
	const char *p = s;
	int32_t off;
	memset(r, 0, sizeof(*r));
	if (!tz_posix_name(&p, r->std.abbr) || !tz_posix_time(&p, &off))
		return;
	r->std.utoff = -off; /* POSIX offsets count west of Greenwich */
	if (*p == '\0') {
		r->valid = true;
		return;
	}
	if (!tz_posix_name(&p, r->dst.abbr))
		return;
	r->dst.isdst = true;
	r->dst.utoff = r->std.utoff + 3600;
	if (*p != ',' && *p != '\0') {
		if (!tz_posix_time(&p, &off))
			return;
		r->dst.utoff = -off;
	}
	if (!tz_posix_when(&p, &r->start) || !tz_posix_when(&p, &r->end) || *p != '\0')
		return;
	r->has_dst = true;
	r->valid = true;
}

/* The Unix time at which w happens in year y, given the offset in force before it. */
static int64_t tz_when_utc(const struct tz_when *w, int64_t y, int32_t utoff_before)
{
	int64_t first = tz_days_from_civil(y, w->month, 1);
	int64_t next = w->month == 12 ? tz_days_from_civil(y + 1, 1, 1)
				      : tz_days_from_civil(y, w->month + 1, 1);
	int64_t day = first + (w->wday - tz_weekday(first) + 7) % 7 + (w->week - 1) * 7;
	while (day >= next)
		day -= 7;
	return day * 86400 + w->secs - utoff_before;
}

static const struct tz_type *tz_rule_at(const struct tz_rule *r, int64_t t)
{
	if (!r->has_dst)
		return &r->std;
	struct tm tm;
	tz_civil(t + r->std.utoff, &tm);
	int64_t y = (int64_t)tm.tm_year + 1900;
	int64_t start = tz_when_utc(&r->start, y, r->std.utoff);
	int64_t end = tz_when_utc(&r->end, y, r->dst.utoff);
	bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? &r->dst : &r->std;
}

static const struct tz_type *tz_type_at(const struct tz_zone *tz, int64_t t)
{
	if (tz->ntimes == 0 || t < tz->times[0]) {
		if (tz->ntimes == 0 && tz->rule.valid)
			return tz_rule_at(&tz->rule, t);
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
		return tz_rule_at(&tz->rule, t);
	return &tz->types[tz->idx[lo]];
}

int tz_offset(const struct tz_zone *tz, int64_t t)
{
	return tz_type_at(tz, t)->utoff;
}

const char *tz_abbrev(const struct tz_zone *tz, int64_t t)
{
	return tz_type_at(tz, t)->abbr;
}

/* Parses a TZif file (RFC 8536), using the 64-bit data of version 2 and later. */
static int tz_parse(const unsigned char *d, size_t len, struct tz_zone *tz)
{
	size_t pos = 0;
	int ver = 1;
	for (int pass = 0; pass < 2; pass++) {
		if (len - pos < 44 || memcmp(d + pos, "TZif", 4) != 0)
			return -EINVAL;
		ver = d[pos + 4] >= '2' ? 2 : 1;
		uint32_t isut = tz_be32(d + pos + 20), isstd = tz_be32(d + pos + 24),
			 leap = tz_be32(d + pos + 28), timecnt = tz_be32(d + pos + 32),
			 typecnt = tz_be32(d + pos + 36), charcnt = tz_be32(d + pos + 40);
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
			tz->times[i] = tsize == 8 ? tz_be64(p) : (int32_t)tz_be32(p);
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
			tz->types[i].utoff = (int32_t)tz_be32(p);
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
			tz_parse_rule(footer, &tz->rule);
		}
	}
	return 0;
}

void tz_free(struct tz_zone *tz)
{
	if (tz == NULL)
		return;
	free(tz->times);
	free(tz->idx);
	free(tz->types);
	free(tz);
}

int tz_load(const char *name, struct tz_zone **out)
{
	*out = NULL;
	if (name == NULL || !tz_name_ok(name))
		return -EINVAL;
	const char *dir = getenv("TZDIR");
	char *path = xasprintf("%s/%s", dir != NULL && *dir == '/' ? dir : TZ_DIR, name);
	char *data = NULL;
	size_t len = 0;
	struct tz_zone *tz = NULL;
	int rc = read_file(path, TZ_FILE_MAX, &data, &len);
	if (rc == -ENOTDIR)
		rc = -ENOENT;
	/* A folder ("Asia") or an oversized file is a name, but not of a zone. */
	if (rc == -EISDIR || rc == -EFBIG)
		rc = -EINVAL;
	if (rc < 0)
		goto fail;
	tz = xcalloc(1, sizeof(*tz));
	if ((rc = tz_parse((const unsigned char *)data, len, tz)) < 0)
		goto fail;
	free(data);
	free(path);
	*out = tz;
	return 0;

fail:
	tz_free(tz);
	free(data);
	free(path);
	return rc;
}

int64_t tz_to_utc(const struct tz_zone *tz, int year, int month, int day, int hour, int minute)
{
	int64_t local = tz_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60;
	/* The offset in force is one of those around; keep the earliest that fits. */
	int64_t cands[3] = {local - tz_offset(tz, local - 86400), local - tz_offset(tz, local),
			    local - tz_offset(tz, local + 86400)};
	int64_t best = INT64_MAX;
	for (int i = 0; i < 3; i++) {
		if (tz_offset(tz, cands[i]) == local - cands[i] && cands[i] < best)
			best = cands[i];
	}
	/* In a gap: read it with the offset from before the change. */
	return best != INT64_MAX ? best : cands[0];
}

void tz_format(const struct tz_zone *tz, int64_t ms, char *out, size_t size)
{
	int64_t t = ms / 1000;
	const struct tz_type *ty = tz_type_at(tz, t);
	struct tm tm;
	tz_civil(t + ty->utoff, &tm);
	snprintf(out, size, "%04d-%02d-%02d %02d:%02d %s", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, ty->abbr);
}
