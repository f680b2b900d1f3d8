/*
 * log — the event log every program writes to stderr.
 * Lines are built in a local buffer and written with one write(2), so lines from
 * several threads never interleave. Not for: the audit log (kept in the store).
 *
 * Repeats are folded: the same line (level, event and fields, the time aside)
 * is written at most LOG_REPEAT_BURST times in one second; the rest are counted
 * and reported by one "log.suppressed" line when that line comes again in a
 * later second (or its slot is taken by another line). A loop that fails the
 * same way a million times a second so costs a few lines, not the disk.
 */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096
/* Identical lines written per second before the rest are only counted. */
#define LOG_REPEAT_BURST 5
/* Distinct recent lines remembered (by hash, one per slot). */
#define LOG_REPEAT_SLOTS 64
/* Bytes of the event name kept for the "log.suppressed" line. */
#define LOG_EVENT_NAME_MAX 64

struct log_repeat {
	uint64_t hash; /* 0: free slot */
	time_t second;
	unsigned written;	  /* in that second */
	unsigned long suppressed; /* not written, not yet reported */
	char event[LOG_EVENT_NAME_MAX];
};

static struct log_repeat log_repeats[LOG_REPEAT_SLOTS];
static pthread_mutex_t log_repeats_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *log_progname = "lazaret";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *progname, enum log_level level)
{
	log_progname = progname;
	log_threshold = level;
}

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

void log_set_level_name(const char *name)
{
	enum log_level lvl = LOG_LEVEL_INFO;
	if (name != NULL && log_level_parse(name, &lvl) < 0)
		lvl = LOG_LEVEL_INFO;
	log_set_level(lvl);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcasecmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static size_t log_prefix(char *buf, size_t size, const char *level)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, log_progname, (long)getpid(), level);
	return n < 0 ? 0 : ((size_t)n < size ? (size_t)n : size - 1);
}

static void log_write_line(char *buf, size_t len)
{
	if (len >= LOG_LINE_MAX - 1)
		len = LOG_LINE_MAX - 2;
	buf[len++] = '\n';
	/* One write per line; a short write to stderr is not worth a retry loop. */
	ssize_t r = write(STDERR_FILENO, buf, len);
	(void)r;
}

/* FNV-1a: good enough to tell lines apart in a small table. */
static uint64_t log_hash(const char *s, size_t n)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= UINT64_C(1099511628211);
	}
	return h != 0 ? h : 1;
}

/* Writes the report of r's suppressed lines (caller holds the lock). */
static void log_report_suppressed(struct log_repeat *r, const char *level)
{
	if (r->suppressed == 0)
		return;
	char buf[LOG_LINE_MAX];
	size_t len = log_prefix(buf, sizeof(buf), level);
	int n = snprintf(buf + len, sizeof(buf) - len,
			 "log.suppressed count=%lu event=%s reason=\"similar lines in one second\"",
			 r->suppressed, r->event);
	if (n > 0)
		len += (size_t)n < sizeof(buf) - len ? (size_t)n : sizeof(buf) - len - 1;
	log_write_line(buf, len);
	r->suppressed = 0;
}

/*
 * Whether the line body (everything after the time stamp) may be written now:
 * false when it is the LOG_REPEAT_BURST+1th identical one this second.
 */
static bool log_repeat_allows(const char *body, size_t n, const char *event, const char *level)
{
	uint64_t h = log_hash(body, n);
	time_t now = time(NULL);
	bool ok = true;
	pthread_mutex_lock(&log_repeats_lock);
	struct log_repeat *r = &log_repeats[h % LOG_REPEAT_SLOTS];
	if (r->hash != h) {
		log_report_suppressed(r, level);
		r->hash = h;
		r->second = now;
		r->written = 0;
		snprintf(r->event, sizeof(r->event), "%s", event);
	} else if (r->second != now) {
		log_report_suppressed(r, level);
		r->second = now;
		r->written = 0;
	}
	if (r->written >= LOG_REPEAT_BURST) {
		r->suppressed++;
		ok = false;
	} else {
		r->written++;
	}
	pthread_mutex_unlock(&log_repeats_lock);
	return ok;
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	if (level > log_threshold)
		return;
	char buf[LOG_LINE_MAX];
	int saved_errno = errno;
	size_t len = log_prefix(buf, sizeof(buf), log_level_names[level]);
	/* The prefix holds the time and pid: the rest is what repeats. */
	size_t prefix = len;
	int n = snprintf(buf + len, sizeof(buf) - len, "%s", event);
	if (n > 0)
		len += (size_t)n < sizeof(buf) - len ? (size_t)n : sizeof(buf) - len - 1;
	if (fmt != NULL && len < sizeof(buf) - 2) {
		buf[len++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		n = vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
		va_end(ap);
		if (n > 0)
			len += (size_t)n < sizeof(buf) - len ? (size_t)n : sizeof(buf) - len - 1;
	}
	if (log_repeat_allows(buf + prefix, len - prefix, event, log_level_names[level]))
		log_write_line(buf, len);
	errno = saved_errno;
}

const char *log_quote(char *buf, size_t size, const char *s)
{
	if (size == 0)
		return buf;
	if (s == NULL)
		s = "";
	int plain = *s != '\0';
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' || *p == 0x7f) {
			plain = 0;
			break;
		}
	}
	if (plain) {
		size_t n = strlen(s);
		if (n < size) {
			memcpy(buf, s, n + 1);
			return buf;
		}
	}
	size_t o = 0;
	const size_t reserve = 5; /* closing quote, "...", NUL */
	if (size < reserve + 2) {
		buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		char esc[5];
		size_t n;
		switch (*p) {
		case '"':
			memcpy(esc, "\\\"", 3), n = 2;
			break;
		case '\\':
			memcpy(esc, "\\\\", 3), n = 2;
			break;
		case '\n':
			memcpy(esc, "\\n", 3), n = 2;
			break;
		case '\r':
			memcpy(esc, "\\r", 3), n = 2;
			break;
		case '\t':
			memcpy(esc, "\\t", 3), n = 2;
			break;
		default:
			if (*p < ' ' || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\x%02x", *p);
				n = 4;
			} else {
				esc[0] = (char)*p;
				n = 1;
			}
		}
		if (o + n + reserve > size) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, esc, n);
		o += n;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void log_panic(const char *file, int line, const char *fmt, ...)
{
	char buf[LOG_LINE_MAX];
	size_t len = log_prefix(buf, sizeof(buf), "panic");
	int n = snprintf(buf + len, sizeof(buf) - len, "panic file=%s line=%d msg=\"", file, line);
	if (n > 0)
		len += (size_t)n;
	va_list ap;
	va_start(ap, fmt);
	n = vsnprintf(buf + len, sizeof(buf) - len - 2, fmt, ap);
	va_end(ap);
	if (n > 0)
		len += (size_t)n < sizeof(buf) - len - 2 ? (size_t)n : sizeof(buf) - len - 3;
	buf[len++] = '"';
	log_write_line(buf, len);
	abort();
}
