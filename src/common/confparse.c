/*
 * confparse — schema-driven INI loader (see confparse.h for the syntax and types).
 *
 * It reads the whole file and splits lines itself rather than through libinih:
 * the library as packaged reports no line numbers to its callback, cuts lines
 * at 200 bytes and returns only the first syntax error, while every message
 * here must name file, line and key and a run must list all mistakes at once.
 *
 * A load goes: confparse_new → confparse_read (parse each line, check each value
 * against its key's type and limits, store it in the target struct, then apply
 * defaults and report missing required keys) → the caller's own checks across
 * keys with confparse_error → confparse_take_errors → confparse_free.
 *
 * Not for: writing files, reloading in place (load into a new struct and swap),
 * or deciding which keys a running program may change.
 */
#include "common/confparse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/acl.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/xalloc.h"

/* A config file larger than this is not a config file (e.g. a device given by mistake). */
#define CONFPARSE_MAX_FILE_SIZE (1024 * 1024)
/* Longest host name (RFC 1035) and label. */
#define CONFPARSE_HOSTNAME_MAX 253
#define CONFPARSE_LABEL_MAX    63

struct confparse_seen {
	char *section;
	char *name;
	unsigned line;
	bool empty; /* set to an empty value: its default applies */
};

struct confparse_section {
	char *name;
	unsigned line; /* of its first header */
};

struct confparse {
	char *path;
	char *dir;
	const struct confparse_key *keys;
	size_t nkeys;
	struct confparse_seen *seen;
	size_t nseen, seen_cap;
	struct confparse_section *sections;
	size_t nsections, sections_cap;
	unsigned last_line;
	char *errors;
	size_t errors_len, errors_cap;
	size_t nerrors;
	confparse_extra_fn extra;
	void *extra_arg;
};

/* confparse_canonical_paths: set once by a daemon before it loads a config. */
static bool confparse_canonical_on;

/* ---- value parsers ---- */

/* Accumulates decimal digits of s into *v; returns the first non-digit, or NULL on overflow. */
static const char *confparse_digits(const char *s, uint64_t limit, uint64_t *v)
{
	uint64_t n = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (n > (limit - d) / 10)
			return NULL;
		n = n * 10 + d;
	}
	*v = n;
	return s;
}

static int confparse_duration_why(const char *s, bool bare_days, int64_t *out, const char **why)
{
	static const char bad[] = "must be a whole number with a unit s, m, h or d (e.g. 30s, 14d)";
	uint64_t n, unit;
	if (s == NULL || *s < '0' || *s > '9') {
		*why = bad;
		return -EINVAL;
	}
	const char *end = confparse_digits(s, INT64_MAX, &n);
	if (end == NULL) {
		*why = "is too large";
		return -ERANGE;
	}
	switch (*end) {
	case 's':
		unit = 1000;
		break;
	case 'm':
		unit = 60 * 1000;
		break;
	case 'h':
		unit = 3600 * 1000;
		break;
	case 'd':
		unit = 86400 * 1000;
		break;
	case '\0':
		if (!bare_days && n != 0) {
			*why = "needs a unit: s, m, h or d (e.g. 30s, 14d)";
			return -EINVAL;
		}
		unit = 86400 * 1000; /* a bare number of days; 0 is 0 in any unit */
		break;
	default:
		*why = bad;
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0') {
		*why = bad;
		return -EINVAL;
	}
	if (n > (uint64_t)INT64_MAX / unit) {
		*why = "is too large";
		return -ERANGE;
	}
	*out = (int64_t)(n * unit);
	return 0;
}

int confparse_duration_ms(const char *s, bool bare_days, int64_t *out)
{
	const char *why;
	return confparse_duration_why(s, bare_days, out, &why);
}

static int confparse_size_why(const char *s, uint64_t *out, const char **why)
{
	uint64_t n, mult = 1;
	if (s == NULL || *s < '0' || *s > '9') {
		*why = "must be a number of bytes, optionally with K, M or G (e.g. 512K, 50M)";
		return -EINVAL;
	}
	const char *end = confparse_digits(s, UINT64_MAX, &n);
	if (end == NULL) {
		*why = "is too large";
		return -ERANGE;
	}
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1024;
		break;
	case 'm':
	case 'M':
		mult = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		*why = "must be a number of bytes, optionally with K, M or G (e.g. 512K, 50M)";
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0') {
		*why = "must be a number of bytes, optionally with K, M or G (e.g. 512K, 50M)";
		return -EINVAL;
	}
	if (n > UINT64_MAX / mult) {
		*why = "is too large";
		return -ERANGE;
	}
	*out = n * mult;
	return 0;
}

int confparse_size(const char *s, uint64_t *out)
{
	const char *why;
	return confparse_size_why(s, out, &why);
}

int confparse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	if (s == NULL)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int confparse_uint(const char *s, unsigned *out)
{
	uint64_t n;
	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	const char *end = confparse_digits(s, UINT_MAX, &n);
	if (end == NULL)
		return -ERANGE;
	if (*end != '\0')
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

static bool confparse_is_ip(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

bool confparse_hostname_ok(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	if (confparse_is_ip(s))
		return true;
	size_t len = strlen(s);
	if (len > CONFPARSE_HOSTNAME_MAX)
		return false;
	/* Digits and dots only would be an IPv4 address, and that failed above. */
	if (strspn(s, "0123456789.") == len)
		return false;
	size_t label = 0;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > CONFPARSE_LABEL_MAX)
				return false;
			if (*p == '\0')
				return true;
			label = 0;
			continue;
		}
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
		if (!ok)
			return false;
		label++;
	}
}

static int confparse_hostport_why(const char *s, char **host, char **port, const char **why)
{
	const char *h, *hend, *p;
	if (s == NULL || *s == '\0') {
		*why = "must be host:port";
		return -EINVAL;
	}
	if (s[0] == '[') {
		h = s + 1;
		hend = strchr(h, ']');
		if (hend == NULL || hend[1] != ':') {
			*why = "must be [IPv6 address]:port";
			return -EINVAL;
		}
		p = hend + 2;
		char *inner = xstrndup(h, (size_t)(hend - h));
		unsigned char buf[16];
		bool ok = inet_pton(AF_INET6, inner, buf) == 1;
		free(inner);
		if (!ok) {
			*why = "has no valid IPv6 address between [ and ]";
			return -EINVAL;
		}
	} else {
		h = s;
		hend = strrchr(s, ':');
		if (hend == NULL) {
			*why = "needs a port: host:port";
			return -EINVAL;
		}
		if (memchr(s, ':', (size_t)(hend - s)) != NULL) {
			*why = "IPv6 addresses need brackets: [2001:db8::1]:25";
			return -EINVAL;
		}
		p = hend + 1;
		char *name = xstrndup(h, (size_t)(hend - h));
		bool ok = confparse_hostname_ok(name);
		free(name);
		if (!ok) {
			*why = "has no valid host name or address before the port";
			return -EINVAL;
		}
	}
	uint64_t n;
	const char *end = *p >= '0' && *p <= '9' ? confparse_digits(p, 65535, &n) : NULL;
	if (end == NULL || *end != '\0' || n == 0) {
		*why = "port must be a number 1-65535";
		return -EINVAL;
	}
	if (host != NULL)
		*host = xstrndup(h, (size_t)(hend - h));
	if (port != NULL)
		*port = xstrdup(p);
	return 0;
}

int confparse_hostport(const char *s, char **host, char **port)
{
	const char *why;
	return confparse_hostport_why(s, host, port, &why);
}

/* ---- context and errors ---- */

static char *confparse_dirname_abs(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));

	char *real = realpath(dir, NULL);
	if (real != NULL) {
		free(dir);
		return real;
	}
	if (dir[0] == '/')
		return dir;
	/* The folder does not exist (yet): make it absolute by hand. */
	char *cwd = getcwd(NULL, 0);
	char *abs = xasprintf("%s/%s", cwd ? cwd : "", dir);
	free(cwd);
	free(dir);
	return abs;
}

struct confparse *confparse_new(const char *path, const struct confparse_key *keys, size_t nkeys)
{
	struct confparse *cp = xcalloc(1, sizeof(*cp));
	cp->path = xstrdup(path);
	cp->dir = confparse_dirname_abs(path);
	cp->keys = keys;
	cp->nkeys = nkeys;
	return cp;
}

void confparse_free(struct confparse *cp)
{
	if (cp == NULL)
		return;
	for (size_t i = 0; i < cp->nseen; i++) {
		free(cp->seen[i].section);
		free(cp->seen[i].name);
	}
	for (size_t i = 0; i < cp->nsections; i++)
		free(cp->sections[i].name);
	free(cp->seen);
	free(cp->sections);
	free(cp->errors);
	free(cp->path);
	free(cp->dir);
	free(cp);
}

void confparse_set_extra(struct confparse *cp, confparse_extra_fn fn, void *arg)
{
	cp->extra = fn;
	cp->extra_arg = arg;
}

static void confparse_append(struct confparse *cp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void confparse_append(struct confparse *cp, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("vsnprintf failed");
	size_t need = cp->errors_len + (size_t)n + 1;
	if (need > cp->errors_cap) {
		cp->errors_cap = need > 2 * cp->errors_cap ? need : 2 * cp->errors_cap;
		cp->errors = xrealloc(cp->errors, cp->errors_cap);
	}
	va_start(ap, fmt);
	vsnprintf(cp->errors + cp->errors_len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	cp->errors_len += (size_t)n;
}

/* An error on a line that is not about one key (syntax, unknown section). */
static void confparse_line_error(struct confparse *cp, unsigned line, const char *section,
				 const char *msg)
{
	if (section != NULL)
		confparse_append(cp, "%s:%u: [%s] %s\n", cp->path, line, section, msg);
	else
		confparse_append(cp, "%s:%u: %s\n", cp->path, line, msg);
	cp->nerrors++;
}

static void confparse_key_error(struct confparse *cp, unsigned line, const char *section,
				const char *name, const char *msg)
{
	confparse_append(cp, "%s:%u: [%s] %s: %s\n", cp->path, line, section, name, msg);
	cp->nerrors++;
}

static const struct confparse_seen *confparse_find_seen(const struct confparse *cp,
							const char *section, const char *name)
{
	for (size_t i = 0; i < cp->nseen; i++) {
		if (strcmp(cp->seen[i].section, section) == 0 &&
		    strcmp(cp->seen[i].name, name) == 0)
			return &cp->seen[i];
	}
	return NULL;
}

static const struct confparse_section *confparse_find_section(const struct confparse *cp,
							      const char *section)
{
	for (size_t i = 0; i < cp->nsections; i++) {
		if (strcmp(cp->sections[i].name, section) == 0)
			return &cp->sections[i];
	}
	return NULL;
}

/* The line to blame for [section] name: where it was set, its section, or the end. */
static unsigned confparse_blame_line(const struct confparse *cp, const char *section,
				     const char *name)
{
	const struct confparse_seen *s = confparse_find_seen(cp, section, name);
	if (s != NULL)
		return s->line;
	const struct confparse_section *sec = confparse_find_section(cp, section);
	if (sec != NULL)
		return sec->line;
	return cp->last_line > 0 ? cp->last_line : 1;
}

void confparse_error(struct confparse *cp, const char *section, const char *name, const char *fmt,
		     ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		panic("out of memory formatting a config error");
	va_end(ap);
	confparse_key_error(cp, confparse_blame_line(cp, section, name), section, name, msg);
	free(msg);
}

unsigned confparse_line(const struct confparse *cp, const char *section, const char *name)
{
	const struct confparse_seen *s = confparse_find_seen(cp, section, name);
	return s ? s->line : 0;
}

bool confparse_is_set(const struct confparse *cp, const char *section, const char *name)
{
	return confparse_find_seen(cp, section, name) != NULL;
}

bool confparse_has_value(const struct confparse *cp, const char *section, const char *name)
{
	const struct confparse_seen *s = confparse_find_seen(cp, section, name);
	return s != NULL && !s->empty;
}

int confparse_load(struct confparse *cp, void *target,
		   void (*validate)(struct confparse *cp, void *target, void *arg), void *arg,
		   char **errors)
{
	int rc = confparse_read(cp, target);
	if (rc < 0 && rc != -EINVAL) {
		rc = -ENOENT;
	} else {
		validate(cp, target, arg);
		rc = confparse_error_count(cp) > 0 ? -EINVAL : 0;
	}
	*errors = rc < 0 ? confparse_take_errors(cp) : NULL;
	confparse_free(cp);
	return rc;
}

void confparse_place_rows(const struct confparse_key *rows, size_t n, const char *section,
			  const size_t *offset, const char *const *defaults,
			  struct confparse_key *out)
{
	for (size_t i = 0; i < n; i++) {
		out[i] = rows[i];
		out[i].section = section;
		out[i].offset = offset[i];
		if (defaults[i] != NULL)
			out[i].default_text = defaults[i];
	}
}

void confparse_check_readable(struct confparse *cp, const char *section, const char *name,
			      const char *path)
{
	if (path != NULL && access(path, R_OK) != 0)
		confparse_error(cp, section, name, "cannot read %s: %s", path, strerror(errno));
}

void confparse_check_tls_pair(struct confparse *cp, const char *section, const char *cert,
			      const char *key)
{
	if (cert != NULL && key == NULL)
		confparse_error(cp, section, "tls_key", "is required when tls_cert is set");
	if (key != NULL && cert == NULL)
		confparse_error(cp, section, "tls_cert", "is required when tls_key is set");
}

bool confparse_token_ok(const char *t)
{
	for (const unsigned char *p = (const unsigned char *)t; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	}
	return true;
}

size_t confparse_error_count(const struct confparse *cp)
{
	return cp->nerrors;
}

char *confparse_take_errors(struct confparse *cp)
{
	char *e = cp->errors;
	cp->errors = NULL;
	cp->errors_len = cp->errors_cap = 0;
	return e;
}

const char *confparse_dir(const struct confparse *cp)
{
	return cp->dir;
}

void confparse_canonical_paths(bool on)
{
	confparse_canonical_on = on;
}

/*
 * The absolute path p canonical: realpath(3) of its longest existing part (links
 * followed, "." and ".." gone), the rest appended with its "." and ".." taken by
 * name. New string. Walks from the end: one realpath per missing component.
 */
char *confparse_canonical(const char *p)
{
	char *real = realpath(p, NULL);
	if (real != NULL || p[0] != '/' || strcmp(p, "/") == 0)
		return real != NULL ? real : xstrdup(p);
	const char *slash = strrchr(p, '/');
	const char *base = slash + 1;
	char *parent = slash == p ? xstrdup("/") : xstrndup(p, (size_t)(slash - p));
	char *head = confparse_canonical(parent);
	free(parent);
	if (*base == '\0' || strcmp(base, ".") == 0)
		return head;
	if (strcmp(base, "..") == 0) {
		char *cut = strrchr(head, '/');
		cut[cut == head ? 1 : 0] = '\0';
		return head;
	}
	char *out = xasprintf("%s/%s", strcmp(head, "/") == 0 ? "" : head, base);
	free(head);
	return out;
}

char *confparse_resolve_path(const struct confparse *cp, const char *p)
{
	char *abs;
	if (p[0] == '/')
		abs = xstrdup(p);
	else if (strcmp(p, ".") == 0)
		abs = xstrdup(cp->dir);
	else if (strcmp(cp->dir, "/") == 0)
		abs = xasprintf("/%s", strncmp(p, "./", 2) == 0 ? p + 2 : p);
	else
		abs = xasprintf("%s/%s", cp->dir, strncmp(p, "./", 2) == 0 ? p + 2 : p);
	if (!confparse_canonical_on)
		return abs;
	char *canonical = confparse_canonical(abs);
	free(abs);
	return canonical;
}

/* ---- storing values ---- */

static void *confparse_field(void *target, size_t offset)
{
	return (char *)target + offset;
}

static void confparse_set_string(void *target, size_t offset, char *value)
{
	char **slot = confparse_field(target, offset);
	free(*slot);
	*slot = value;
}

static bool confparse_choice_ok(const char *choices, const char *value)
{
	size_t vlen = strlen(value);
	const char *p = choices;
	while (*p != '\0') {
		size_t len = strcspn(p, "|");
		if (len == vlen && strncmp(p, value, len) == 0)
			return true;
		p += len;
		if (*p == '|')
			p++;
	}
	return false;
}

/* Checks n against the key's min/max; sets *msg (new) when outside. */
static bool confparse_in_range(const struct confparse_key *k, uint64_t n, const char *unit,
			       char **msg)
{
	if (n < k->min) {
		*msg = xasprintf("must be at least %llu%s", (unsigned long long)k->min, unit);
		return false;
	}
	if (k->max != 0 && n > k->max) {
		*msg = xasprintf("must be at most %llu%s", (unsigned long long)k->max, unit);
		return false;
	}
	return true;
}

/*
 * Parses value (non-empty) for key k and stores it in target. Returns 0, or
 * -EINVAL with *msg a new message.
 */
static int confparse_store(const struct confparse *cp, const struct confparse_key *k,
			   const char *value, void *target, char **msg)
{
	const char *why = NULL;
	void *field = confparse_field(target, k->offset);

	switch (k->type) {
	case CONFPARSE_STRING:
		confparse_set_string(target, k->offset, xstrdup(value));
		return 0;
	case CONFPARSE_PATH:
		confparse_set_string(target, k->offset, confparse_resolve_path(cp, value));
		return 0;
	case CONFPARSE_CHOICE:
		if (k->choices == NULL || !confparse_choice_ok(k->choices, value)) {
			*msg = xasprintf("\"%s\" is not one of %s", value,
					 k->choices ? k->choices : "(none)");
			return -EINVAL;
		}
		confparse_set_string(target, k->offset, xstrdup(value));
		return 0;
	case CONFPARSE_HOSTNAME:
		if (!confparse_hostname_ok(value)) {
			*msg = xasprintf("\"%s\" is not a host name or address", value);
			return -EINVAL;
		}
		confparse_set_string(target, k->offset, xstrdup(value));
		return 0;
	case CONFPARSE_ADDRESS:
		if (!confparse_is_ip(value)) {
			*msg = xasprintf("\"%s\" is not an IPv4 or IPv6 address", value);
			return -EINVAL;
		}
		confparse_set_string(target, k->offset, xstrdup(value));
		return 0;
	case CONFPARSE_HOSTPORT:
		if (confparse_hostport_why(value, NULL, NULL, &why) < 0) {
			*msg = xasprintf("\"%s\" %s", value, why);
			return -EINVAL;
		}
		confparse_set_string(target, k->offset, xstrdup(value));
		return 0;
	case CONFPARSE_BOOL:
		if (confparse_bool(value, field) < 0) {
			*msg = xasprintf("\"%s\" is not yes or no", value);
			return -EINVAL;
		}
		return 0;
	case CONFPARSE_UINT: {
		unsigned n;
		int rc = confparse_uint(value, &n);
		if (rc < 0) {
			*msg = xasprintf("\"%s\" %s", value,
					 rc == -ERANGE ? "is too large" : "is not a whole number");
			return -EINVAL;
		}
		if (!confparse_in_range(k, n, "", msg))
			return -EINVAL;
		*(unsigned *)field = n;
		return 0;
	}
	case CONFPARSE_SIZE: {
		uint64_t n;
		if (confparse_size_why(value, &n, &why) < 0) {
			*msg = xasprintf("\"%s\" %s", value, why);
			return -EINVAL;
		}
		if (!confparse_in_range(k, n, " bytes", msg))
			return -EINVAL;
		*(uint64_t *)field = n;
		return 0;
	}
	case CONFPARSE_DURATION: {
		int64_t ms;
		size_t nlen = strlen(k->name);
		bool bare_days = nlen >= 5 && strcmp(k->name + nlen - 5, "_days") == 0;
		if (confparse_duration_why(value, bare_days, &ms, &why) < 0) {
			*msg = xasprintf("\"%s\" %s", value, why);
			return -EINVAL;
		}
		if ((uint64_t)ms < k->min) {
			*msg = xasprintf("must be at least %llus",
					 (unsigned long long)(k->min + 999) / 1000);
			return -EINVAL;
		}
		if (k->max != 0 && (uint64_t)ms > k->max) {
			*msg =
			    xasprintf("must be at most %llus", (unsigned long long)k->max / 1000);
			return -EINVAL;
		}
		*(int64_t *)field = ms;
		return 0;
	}
	case CONFPARSE_DOUBLE: {
		char *end;
		errno = 0;
		double d = strtod(value, &end);
		if (end == value || *end != '\0' || errno != 0 || !isfinite(d)) {
			*msg = xasprintf("\"%s\" is not a number", value);
			return -EINVAL;
		}
		*(double *)field = d;
		return 0;
	}
	case CONFPARSE_ACL: {
		struct acl *a = NULL;
		char *err = NULL;
		if (acl_parse(value, &a, &err) < 0) {
			*msg = err ? err : xstrdup("bad address list");
			return -EINVAL;
		}
		struct acl **slot = field;
		acl_free(*slot);
		*slot = a;
		if (k->flags & CONFPARSE_KEEP_TEXT)
			confparse_set_string(target, k->text_offset, xstrdup(value));
		return 0;
	}
	}
	panic("unknown confparse type %d for [%s] %s", (int)k->type, k->section, k->name);
}

void confparse_free_target(const struct confparse_key *keys, size_t nkeys, void *target)
{
	for (size_t i = 0; i < nkeys; i++) {
		const struct confparse_key *k = &keys[i];
		switch (k->type) {
		case CONFPARSE_STRING:
		case CONFPARSE_PATH:
		case CONFPARSE_CHOICE:
		case CONFPARSE_HOSTNAME:
		case CONFPARSE_ADDRESS:
		case CONFPARSE_HOSTPORT:
			confparse_set_string(target, k->offset, NULL);
			break;
		case CONFPARSE_ACL: {
			struct acl **slot = confparse_field(target, k->offset);
			acl_free(*slot);
			*slot = NULL;
			if (k->flags & CONFPARSE_KEEP_TEXT)
				confparse_set_string(target, k->text_offset, NULL);
			break;
		}
		default:
			break;
		}
	}
}

/* ---- reading lines ---- */

static bool confparse_section_known(const struct confparse *cp, const char *section)
{
	for (size_t i = 0; i < cp->nkeys; i++) {
		if (strcmp(cp->keys[i].section, section) == 0)
			return true;
	}
	return false;
}

static const struct confparse_key *confparse_find_key(const struct confparse *cp,
						      const char *section, const char *name)
{
	for (size_t i = 0; i < cp->nkeys; i++) {
		if (strcmp(cp->keys[i].section, section) == 0 &&
		    strcmp(cp->keys[i].name, name) == 0)
			return &cp->keys[i];
	}
	return NULL;
}

static bool confparse_name_ok(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
		if (!ok)
			return false;
	}
	return true;
}

static bool confparse_space(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Reduces the text after '=' (NUL-terminated, modifiable) to the value: strips
 * an inline comment and surrounding blanks, or unquotes a quoted value. Returns
 * the value, or NULL with *why set.
 */
static char *confparse_value(char *v, const char **why)
{
	while (confparse_space(*v))
		v++;
	if (*v == '"') {
		char *out = v, *p = v + 1;
		for (;; p++) {
			if (*p == '\0') {
				*why = "quoted value has no closing \"";
				return NULL;
			}
			if (*p == '"')
				break;
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			*out++ = *p;
		}
		*out = '\0';
		p++;
		while (confparse_space(*p))
			p++;
		if (*p != '\0' && *p != ';' && *p != '#') {
			*why = "text after the closing \" of a quoted value";
			return NULL;
		}
		return v;
	}
	if (*v == ';' || *v == '#') {
		*v = '\0';
		return v;
	}
	for (char *p = v; *p != '\0'; p++) {
		if ((*p == ';' || *p == '#') && confparse_space(p[-1])) {
			*p = '\0';
			break;
		}
	}
	size_t len = strlen(v);
	while (len > 0 && confparse_space(v[len - 1]))
		v[--len] = '\0';
	return v;
}

static void confparse_note_section(struct confparse *cp, const char *name, unsigned line)
{
	if (confparse_find_section(cp, name) != NULL)
		return;
	if (cp->nsections == cp->sections_cap) {
		cp->sections_cap = cp->sections_cap ? 2 * cp->sections_cap : 8;
		cp->sections = xreallocarray(cp->sections, cp->sections_cap, sizeof(*cp->sections));
	}
	cp->sections[cp->nsections].name = xstrdup(name);
	cp->sections[cp->nsections].line = line;
	cp->nsections++;
}

static void confparse_note_seen(struct confparse *cp, const char *section, const char *name,
				unsigned line, bool empty)
{
	if (cp->nseen == cp->seen_cap) {
		cp->seen_cap = cp->seen_cap ? 2 * cp->seen_cap : 16;
		cp->seen = xreallocarray(cp->seen, cp->seen_cap, sizeof(*cp->seen));
	}
	cp->seen[cp->nseen].section = xstrdup(section);
	cp->seen[cp->nseen].name = xstrdup(name);
	cp->seen[cp->nseen].line = line;
	cp->seen[cp->nseen].empty = empty;
	cp->nseen++;
}

/* Handles one "name = value" line; value NULL when it could not be read (why says why). */
static void confparse_key_value(struct confparse *cp, unsigned line, const char *section,
				const char *name, const char *value, const char *why, void *target)
{
	const struct confparse_seen *before = confparse_find_seen(cp, section, name);
	if (before != NULL) {
		char *msg = xasprintf("set twice (first at line %u)", before->line);
		confparse_key_error(cp, line, section, name, msg);
		free(msg);
		return;
	}
	confparse_note_seen(cp, section, name, line, value != NULL && value[0] == '\0');
	if (value == NULL) {
		confparse_key_error(cp, line, section, name, why);
		return;
	}

	const struct confparse_key *k = confparse_find_key(cp, section, name);
	char *msg = NULL;
	if (k == NULL) {
		int rc = -ENOENT;
		if (cp->extra != NULL)
			rc = cp->extra(target, section, name, value, &msg, cp->extra_arg);
		if (rc == -ENOENT)
			confparse_key_error(cp, line, section, name, "unknown key");
		else if (rc < 0)
			confparse_key_error(cp, line, section, name, msg ? msg : "bad value");
		free(msg);
		return;
	}
	if (value[0] == '\0')
		return; /* an empty value means the default; checked in confparse_finish */
	if (confparse_store(cp, k, value, target, &msg) < 0) {
		confparse_key_error(cp, line, section, name, msg);
		free(msg);
	}
}

/* Defaults for the keys the file left out or empty, and missing required keys. */
static void confparse_finish(struct confparse *cp, void *target)
{
	for (size_t i = 0; i < cp->nkeys; i++) {
		const struct confparse_key *k = &cp->keys[i];
		const struct confparse_seen *s = confparse_find_seen(cp, k->section, k->name);
		if (s != NULL && !s->empty)
			continue;
		if (k->flags & CONFPARSE_REQUIRED) {
			confparse_key_error(cp, confparse_blame_line(cp, k->section, k->name),
					    k->section, k->name,
					    s ? "must not be empty" : "is required but missing");
			continue;
		}
		if (k->default_text == NULL)
			continue;
		char *msg = NULL;
		if (confparse_store(cp, k, k->default_text, target, &msg) < 0)
			panic("default of [%s] %s is invalid: %s", k->section, k->name, msg);
	}
}

int confparse_read_buffer(struct confparse *cp, const char *text, size_t len, void *target)
{
	char *buf = xmalloc(len + 1);
	memcpy(buf, text, len);
	buf[len] = '\0';
	char *section = NULL;
	bool skip_section = false;
	unsigned line = 0;
	char *p = buf;
	size_t before = cp->nerrors;

	/* A UTF-8 byte order mark, as some editors write one. */
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;

	while (p < buf + len) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		char *end = nl ? nl : buf + len;
		char *next = nl ? nl + 1 : buf + len;
		line++;
		if (memchr(p, '\0', (size_t)(end - p)) != NULL) {
			confparse_line_error(cp, line, section, "line contains a NUL byte");
			p = next;
			continue;
		}
		*end = '\0';
		if (end > p && end[-1] == '\r')
			end[-1] = '\0';

		while (confparse_space(*p))
			p++;
		if (*p == '\0' || *p == ';' || *p == '#') {
			p = next;
			continue;
		}

		if (*p == '[') {
			char *close = strchr(p, ']');
			char *rest = close ? close + 1 : NULL;
			while (rest && confparse_space(*rest))
				rest++;
			char *name = p + 1;
			while (confparse_space(*name))
				name++;
			char *name_end = close;
			while (name_end && name_end > name && confparse_space(name_end[-1]))
				name_end--;
			if (close == NULL || (*rest != '\0' && *rest != ';' && *rest != '#') ||
			    !confparse_name_ok(name, (size_t)(name_end - name))) {
				confparse_line_error(cp, line, NULL,
						     "bad section header: expected [name]");
				free(section);
				section = NULL;
				skip_section = true; /* its keys would only repeat the error */
				p = next;
				continue;
			}
			*name_end = '\0';
			free(section);
			section = xstrdup(name);
			skip_section = false;
			if (!confparse_section_known(cp, section) && cp->extra == NULL) {
				confparse_line_error(cp, line, section, "unknown section");
				skip_section = true;
			}
			confparse_note_section(cp, section, line);
			p = next;
			continue;
		}

		char *eq = strchr(p, '=');
		if (eq == NULL) {
			confparse_line_error(cp, line, section, "expected \"key = value\"");
			p = next;
			continue;
		}
		char *kend = eq;
		while (kend > p && confparse_space(kend[-1]))
			kend--;
		if (!confparse_name_ok(p, (size_t)(kend - p))) {
			confparse_line_error(cp, line, section,
					     "bad key name: letters, digits, '_', '-', '.' only");
			p = next;
			continue;
		}
		*kend = '\0';
		if (skip_section) {
			p = next;
			continue;
		}
		if (section == NULL) {
			char *msg = xasprintf("%s: key before the first [section]", p);
			confparse_line_error(cp, line, NULL, msg);
			free(msg);
			p = next;
			continue;
		}
		const char *why = NULL;
		char *value = confparse_value(eq + 1, &why);
		confparse_key_value(cp, line, section, p, value, why, target);
		p = next;
	}
	cp->last_line = line;
	free(section);
	free(buf);

	confparse_finish(cp, target);
	return cp->nerrors > before ? -EINVAL : 0;
}

int confparse_read(struct confparse *cp, void *target)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = read_file(cp->path, CONFPARSE_MAX_FILE_SIZE, &buf, &n);
	if (rc == -EFBIG) {
		confparse_append(cp, "%s: larger than %d bytes: not a config file\n", cp->path,
				 CONFPARSE_MAX_FILE_SIZE);
		cp->nerrors++;
		return rc;
	}
	if (rc == -EISDIR || rc == -EIO) {
		/* It opened but did not read (a folder does that). */
		confparse_append(cp, "%s: cannot read: %s\n", cp->path, strerror(-rc));
		cp->nerrors++;
		return -EIO;
	}
	if (rc < 0) {
		confparse_append(cp, "%s: cannot open: %s\n", cp->path, strerror(-rc));
		cp->nerrors++;
		return rc;
	}
	rc = confparse_read_buffer(cp, buf, n, target);
	free(buf);
	return rc;
}
