/*
 * confparse — schema-driven INI configuration files.
 *
 * A program describes its keys in a table (section, name, type, where the value
 * goes in its config struct, default, limits); confparse reads the file, checks
 * every value against its type, fills the struct and applies defaults. Unknown
 * sections and keys are errors, a key set twice is an error, and all errors are
 * collected (not just the first), each as one line
 *     "FILE:LINE: [section] key: message".
 * Relative paths are made absolute against the folder of the config file.
 *
 * Syntax: "[section]" headers, "key = value" lines, whole-line comments starting
 * with ';' or '#', and inline comments: ';' or '#' preceded by a space or tab.
 * A value in double quotes keeps ';', '#' and surrounding spaces (\" and \\ escape).
 *
 * Value forms (also available on their own below):
 *   bool      yes/no, true/false, on/off, 1/0 (any case)
 *   uint      decimal digits, fits in unsigned
 *   size      bytes, or with a K, M or G suffix (1024-based): 512K, 50M, 1G
 *   duration  integer with unit s, m, h or d (30s, 5m, 1h, 14d); "0" needs no unit;
 *             a bare number means days when the key name ends in "_days"
 *   host:port 192.0.2.1:25, [2001:db8::1]:25, mx.example.com:25 (port 1-65535)
 *
 * Not for: writing config files, or values that span lines.
 */
#ifndef LAZARET_CONFPARSE_H
#define LAZARET_CONFPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum confparse_type {
	CONFPARSE_STRING,   /* char *; an empty value leaves NULL */
	CONFPARSE_PATH,	    /* char *, absolute after loading; empty leaves NULL */
	CONFPARSE_CHOICE,   /* char *, one of the '|'-separated words in .choices */
	CONFPARSE_HOSTNAME, /* char *: letters, digits, '.', '-', '_'; or an IP address */
	CONFPARSE_ADDRESS,  /* char *: an IPv4 or IPv6 address literal (no port) */
	CONFPARSE_HOSTPORT, /* char *: host:port as above, kept as written */
	CONFPARSE_BOOL,	    /* bool */
	CONFPARSE_UINT,	    /* unsigned */
	CONFPARSE_SIZE,	    /* uint64_t bytes */
	CONFPARSE_DURATION, /* int64_t milliseconds */
	CONFPARSE_DOUBLE,   /* double */
	CONFPARSE_ACL,	    /* struct acl * (common/acl.h); text kept at .text_offset */
};

enum confparse_flags {
	/* The key must be set in the file to a non-empty value. */
	CONFPARSE_REQUIRED = 1u << 0,
	/* For CONFPARSE_ACL: also store the list's text (char *) at .text_offset. */
	CONFPARSE_KEEP_TEXT = 1u << 1,
};

/*
 * One key of the schema. min/max bound uint, size and duration values (in
 * units, bytes and milliseconds); max 0 means "no bound but the type's own".
 * default_text is parsed like a value from the file (a relative default path is
 * relative to the config file's folder); NULL leaves the field zero/NULL.
 */
struct confparse_key {
	const char *section;
	const char *name;
	enum confparse_type type;
	size_t offset;
	const char *default_text;
	unsigned flags;
	uint64_t min;
	uint64_t max;
	const char *choices;
	size_t text_offset;
};

struct confparse;

/*
 * Called for a key that is not in the table (for families of keys such as
 * "policy.NAME"). Returns 0 when it took the value, -ENOENT when the key is
 * unknown (confparse then reports "unknown key"), or -EINVAL with *msg a new
 * message (confparse frees it) when the value is bad.
 */
typedef int (*confparse_extra_fn)(void *target, const char *section, const char *key,
				  const char *value, char **msg, void *arg);

/*
 * A loading context for the file path (used in messages and to resolve relative
 * paths; it is read by confparse_read). keys must outlive the context. Never NULL.
 */
struct confparse *confparse_new(const char *path, const struct confparse_key *keys, size_t nkeys);
void confparse_free(struct confparse *cp);
/* Installs a handler for keys that are not in the table (NULL: none). */
void confparse_set_extra(struct confparse *cp, confparse_extra_fn fn, void *arg);

/*
 * Reads the file into target (a struct the key offsets point into), then applies
 * defaults to the keys the file did not set. Returns 0, -EINVAL when errors were
 * collected, or a negative errno when the file cannot be read (an error is
 * collected too). On failure target may hold values: free it with
 * confparse_free_target.
 */
int confparse_read(struct confparse *cp, void *target);
/* Same as confparse_read for text already in memory (len bytes; NULs are errors). */
/*
 * A daemon's whole load: confparse_read into target, then validate(cp, target, arg)
 * (checks across keys, defaults derived from other keys) when the file was read,
 * then confparse_free(cp). 0 with *errors NULL; or -ENOENT (the file could not be
 * read) or -EINVAL (errors in it), with *errors the messages (caller frees); the
 * target, filled or partly filled, is the caller's to free either way.
 */
int confparse_load(struct confparse *cp, void *target,
		   void (*validate)(struct confparse *cp, void *target, void *arg), void *arg,
		   char **errors);
int confparse_read_buffer(struct confparse *cp, const char *text, size_t len, void *target);

/*
 * Adds an error for [section] name in the usual form. The line is where the key
 * was set; for a key the file did not set, the line of its section header, or
 * else the last line of the file. Used by callers for checks across keys.
 */
void confparse_error(struct confparse *cp, const char *section, const char *name, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
/* The line where [section] name was set, 0 when the file did not set it. */
unsigned confparse_line(const struct confparse *cp, const char *section, const char *name);
/* True when the file set [section] name (even to an empty value). */
bool confparse_is_set(const struct confparse *cp, const char *section, const char *name);
/* True when the file gave [section] name a value (an empty value means the default). */
bool confparse_has_value(const struct confparse *cp, const char *section, const char *name);
size_t confparse_error_count(const struct confparse *cp);
/* Checks across keys that several daemons make, each adding a confparse_error. */
/* path (a value of [section] name), when set, must be readable by this process. */
void confparse_check_readable(struct confparse *cp, const char *section, const char *name,
			      const char *path);
/* [section] tls_cert and tls_key: both set or neither (readability is apart). */
void confparse_check_tls_pair(struct confparse *cp, const char *section, const char *cert,
			      const char *key);
/* A token sent in an HTTP header (Bearer): visible ASCII only, no spaces. */
bool confparse_token_ok(const char *t);
/* The collected errors, one per line, each ending in '\n'; NULL when none. Caller frees. */
char *confparse_take_errors(struct confparse *cp);
/* The absolute folder of the config file. */
const char *confparse_dir(const struct confparse *cp);
/*
 * p made absolute against the config file's folder (unchanged if absolute), and
 * canonical after confparse_canonical_paths. Every path value goes through here.
 * Caller frees.
 */
char *confparse_resolve_path(const struct confparse *cp, const char *p);
/*
 * With on, every path value (and confparse_resolve_path) is made canonical by
 * confparse_canonical from then on: lazaretd and lazaret-gw set it once at start,
 * before they load their config, so that they use and log /srv/var/x, never
 * /srv/etc/../var/x. Off by default: other callers get the plain join.
 */
void confparse_canonical_paths(bool on);
/*
 * The absolute path p canonical: realpath(3) of its longest existing part (links
 * followed), the rest appended with its "." and ".." taken by name. New string.
 */
char *confparse_canonical(const char *p);

/* Frees the strings and acls that the keys' fields in target own, and zeroes them. */
/*
 * The n rows of a key table several daemons share into out, each placed under
 * section, at offset[i] in the daemon's struct, and with defaults[i] instead of
 * the row's default_text where that is not NULL.
 */
void confparse_place_rows(const struct confparse_key *rows, size_t n, const char *section,
			  const size_t *offset, const char *const *defaults,
			  struct confparse_key *out);
void confparse_free_target(const struct confparse_key *keys, size_t nkeys, void *target);

/*
 * Value parsers, usable on their own. Each returns 0 or -EINVAL (-ERANGE when
 * the number does not fit) and leaves *out alone on failure.
 */
/* Duration into milliseconds; bare_days: a number without unit means days. */
int confparse_duration_ms(const char *s, bool bare_days, int64_t *out);
/* Size in bytes: digits with an optional K, M or G suffix (either case). */
int confparse_size(const char *s, uint64_t *out);
int confparse_bool(const char *s, bool *out);
/* Decimal digits that fit in unsigned. */
int confparse_uint(const char *s, unsigned *out);
/* True when s is a host name (dot-separated labels of letters, digits, '-', '_') or IP address. */
bool confparse_hostname_ok(const char *s);
/*
 * Splits host:port. IPv6 addresses need brackets ("[::1]:25"); host is returned
 * without them. *host and *port are new strings (caller frees) on success.
 */
int confparse_hostport(const char *s, char **host, char **port);

#endif
