/*
 * log — one line per event on stderr, as key=value fields.
 *
 * A line reads: "2026-11-27T19:30:00.123Z lazaretd[123] info smtp.accept session=... client=..."
 * The event name comes first, then the fields the caller formats. Values that may
 * hold spaces or quotes (reply texts, subjects) go through log_quote().
 * Not for: audit trails kept in the store, metrics.
 */
#ifndef LAZARET_LOG_H
#define LAZARET_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Sets the program name shown on every line and the least important level written. */
void log_init(const char *progname, enum log_level level);
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* log_set_level by name (a config's log_level); NULL or unknown: LOG_LEVEL_INFO. */
void log_set_level_name(const char *name);

/* Writes one line: event name, then the fields formatted by fmt (may be NULL). Thread-safe. */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(ev, ...) log_event(LOG_LEVEL_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_event(LOG_LEVEL_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_event(LOG_LEVEL_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...) log_event(LOG_LEVEL_DEBUG, ev, __VA_ARGS__)

/*
 * Writes s into buf as one field value: unchanged when it has no space, quote,
 * backslash, '=' or control character, else in double quotes with \" \\ \n \r \t
 * and \xNN escapes. Truncates (ending in "...") to fit; returns buf.
 */
const char *log_quote(char *buf, size_t size, const char *s);

/* A broken invariant: logs file, line and message, then aborts. Never returns. */
void log_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define panic(...) log_panic(__FILE__, __LINE__, __VA_ARGS__)

#endif
