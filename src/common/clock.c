/*
 * clock — time in milliseconds and RFC 3339 formatting/parsing (see clock.h).
 */
#include "common/clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t clock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_format_rfc3339(int64_t ms, char out[CLOCK_RFC3339_LEN])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, CLOCK_RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int clock_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**p))
			return -EINVAL;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return 0;
}

int clock_parse_rfc3339(const char *s, int64_t *out_ms)
{
	struct tm tm;
	int year, mon, day, hour = 0, min = 0, sec = 0, frac_ms = 0, off_min = 0;
	const char *p = s;
	memset(&tm, 0, sizeof(tm));
	if (clock_digits(&p, 4, &year) < 0 || *p++ != '-' || clock_digits(&p, 2, &mon) < 0 ||
	    *p++ != '-' || clock_digits(&p, 2, &day) < 0)
		return -EINVAL;
	if (*p != '\0') {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return -EINVAL;
		p++;
		if (clock_digits(&p, 2, &hour) < 0 || *p++ != ':' ||
		    clock_digits(&p, 2, &min) < 0 || *p++ != ':' || clock_digits(&p, 2, &sec) < 0)
			return -EINVAL;
		if (*p == '.') {
			p++;
			int scale = 100, any = 0;
			while (isdigit((unsigned char)*p)) {
				frac_ms += (*p - '0') * scale;
				scale /= 10;
				any = 1;
				p++;
			}
			if (!any)
				return -EINVAL;
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p == '-' ? -1 : 1, oh, om;
			p++;
			if (clock_digits(&p, 2, &oh) < 0 || *p++ != ':' ||
			    clock_digits(&p, 2, &om) < 0)
				return -EINVAL;
			if (oh > 23 || om > 59)
				return -EINVAL;
			off_min = sign * (oh * 60 + om);
		} else {
			return -EINVAL;
		}
		if (*p != '\0')
			return -EINVAL;
	}
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	*out_ms = ((int64_t)t - (int64_t)off_min * 60) * 1000 + frac_ms;
	return 0;
}
