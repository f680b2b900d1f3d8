/*
 * pvo_header — parser of X-Lazaret-Quarantine and X-Lazaret-Origin-Id (see the
 * header file for the grammar). Hostile input: every length is bounded
 * (PVO_HEADER_*), names and reasons must be UTF-8 without control characters,
 * and anything that does not parse is refused with a reason, never guessed at.
 * Not for: deciding what a refused header means for the message (manager/ingest.c).
 */
#include "quarantine/pvo_header.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "store/store.h"

static int pvo_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pvo_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool pvo_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Valid UTF-8 (no overlongs, no surrogates) without ASCII control characters. */
static bool pvo_text_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned c = p[i];
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		size_t k;
		unsigned min;
		unsigned cp;
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1, min = 0x80, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, min = 0x800, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

bool pvo_header_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > STORE_QUARANTINE_NAME_MAX || name[0] == '*' || pvo_wsp(name[0]) ||
	    pvo_wsp(name[n - 1]) || strpbrk(name, ";\"\\=") != NULL)
		return false;
	return pvo_text_ok(name, n);
}

/* --- RFC 3339 ------------------------------------------------------------ */

/* n decimal digits at s into *v; false when one is not a digit. */
static bool pvo_digits(const char *s, size_t n, int *v)
{
	int x = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t pvo_days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int pvo_month_days(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return days[m - 1];
}

int pvo_header_parse_time(const char *s, size_t len, int64_t *ms)
{
	/* YYYY-MM-DDTHH:MM:SS at least, then [.frac] and Z or +HH:MM */
	int y, mo, d, h, mi, se;
	if (len < 20 || !pvo_digits(s, 4, &y) || s[4] != '-' || !pvo_digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !pvo_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !pvo_digits(s + 11, 2, &h) || s[13] != ':' || !pvo_digits(s + 14, 2, &mi) ||
	    s[16] != ':' || !pvo_digits(s + 17, 2, &se))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > pvo_month_days(y, mo) || h > 23 || mi > 59 || se > 60)
		return -EINVAL;
	size_t i = 19;
	int frac_ms = 0;
	if (s[i] == '.') {
		size_t n = 0;
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (n < 3)
				frac_ms = frac_ms * 10 + (s[i] - '0');
			n++, i++;
		}
		if (n == 0 || n > 9)
			return -EINVAL;
		for (size_t k = n; k < 3; k++)
			frac_ms *= 10;
	}
	int offset_min = 0;
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		int oh, om;
		if (len - i < 6 || !pvo_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
		    !pvo_digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
		offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
		i += 6;
	} else {
		return -EINVAL;
	}
	if (i != len)
		return -EINVAL;
	int64_t secs = pvo_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
		       (int64_t)offset_min * 60;
	if (secs <= 0)
		return -EINVAL;
	*ms = secs * 1000 + frac_ms;
	return 0;
}

/* --- X-Lazaret-Quarantine ------------------------------------------------ */

void pvo_header_quarantine_clear(struct pvo_header_quarantine *q)
{
	free(q->name);
	free(q->reason);
	memset(q, 0, sizeof(*q));
}

/*
 * A parameter value at s[*i..len): a quoted string (backslash escapes any
 * character but CR, LF and NUL) or a token (up to blank or ';'). New string in
 * *out. 0 or -EINVAL.
 */
static int pvo_value(const char *s, size_t len, size_t *i, char **out, char *err, size_t errlen,
		     const char *key)
{
	struct strbuf b = STRBUF_INIT;
	size_t k = *i;
	if (k < len && s[k] == '"') {
		k++;
		bool closed = false;
		while (k < len) {
			char c = s[k];
			if (c == '"') {
				closed = true;
				k++;
				break;
			}
			if (c == '\\') {
				if (k + 1 >= len || s[k + 1] == '\r' || s[k + 1] == '\n' ||
				    s[k + 1] == '\0') {
					strbuf_free(&b);
					return pvo_fail(err, errlen,
							"%s: a backslash ends the value", key);
				}
				c = s[k + 1];
				k++;
			} else if (c == '\r' || c == '\n' || c == '\0') {
				strbuf_free(&b);
				return pvo_fail(err, errlen, "%s: a control character in quotes",
						key);
			}
			strbuf_addc(&b, c);
			k++;
		}
		if (!closed) {
			strbuf_free(&b);
			return pvo_fail(err, errlen, "%s: an unterminated quoted string", key);
		}
	} else {
		while (k < len && !pvo_wsp(s[k]) && s[k] != ';') {
			if (s[k] == '"' || s[k] == '\\' || (unsigned char)s[k] < 0x20) {
				strbuf_free(&b);
				return pvo_fail(err, errlen,
						"%s: a quote or control character in a token", key);
			}
			strbuf_addc(&b, s[k]);
			k++;
		}
	}
	*i = k;
	*out = strbuf_take(&b);
	return 0;
}

int pvo_header_parse_quarantine(const char *s, size_t len, struct pvo_header_quarantine *out,
				char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (len > PVO_HEADER_FIELD_MAX)
		return pvo_fail(err, errlen, "longer than %d bytes", PVO_HEADER_FIELD_MAX);
	size_t i = 0;
	while (i < len && pvo_wsp(s[i]))
		i++;
	size_t start = i;
	while (i < len && s[i] != ';') {
		if (s[i] == '"' || s[i] == '\\' || s[i] == '=')
			return pvo_fail(err, errlen, "the quarantine name has '%c'", s[i]);
		i++;
	}
	size_t end = i;
	while (end > start && pvo_wsp(s[end - 1]))
		end--;
	if (end == start)
		return pvo_fail(err, errlen, "no quarantine name");
	if (end - start > STORE_QUARANTINE_NAME_MAX)
		return pvo_fail(err, errlen, "the quarantine name is longer than %d bytes",
				STORE_QUARANTINE_NAME_MAX);
	if (!pvo_text_ok(s + start, end - start))
		return pvo_fail(err, errlen, "the quarantine name is not UTF-8 text");
	if (s[start] == '*')
		return pvo_fail(err, errlen, "the quarantine name begins with '*'");
	out->name = xstrndup(s + start, end - start);
	bool seen_reason = false;
	while (i < len) {
		/* s[i] == ';' */
		i++;
		while (i < len && pvo_wsp(s[i]))
			i++;
		if (i == len)
			break; /* a trailing ';' */
		size_t ks = i;
		while (i < len && s[i] != '=' && s[i] != ';' && !pvo_wsp(s[i]))
			i++;
		size_t kl = i - ks;
		while (i < len && pvo_wsp(s[i]))
			i++;
		if (kl == 0 || i == len || s[i] != '=') {
			pvo_header_quarantine_clear(out);
			return pvo_fail(err, errlen, "a parameter without '=' value");
		}
		i++;
		while (i < len && pvo_wsp(s[i]))
			i++;
		char key[16];
		snprintf(key, sizeof(key), "%.*s", (int)(kl < sizeof(key) ? kl : sizeof(key) - 1),
			 s + ks);
		char *v = NULL;
		if (pvo_value(s, len, &i, &v, err, errlen, key) < 0) {
			pvo_header_quarantine_clear(out);
			return -EINVAL;
		}
		while (i < len && pvo_wsp(s[i]))
			i++;
		int rc = 0;
		if (i < len && s[i] != ';') {
			rc = pvo_fail(err, errlen, "%s: text after the value", key);
		} else if (kl == 6 && strncasecmp(s + ks, "reason", 6) == 0) {
			if (seen_reason)
				rc = pvo_fail(err, errlen, "reason given twice");
			else if (strlen(v) > PVO_HEADER_REASON_MAX)
				rc = pvo_fail(err, errlen, "reason: longer than %d bytes",
					      PVO_HEADER_REASON_MAX);
			else if (!pvo_text_ok(v, strlen(v)))
				rc = pvo_fail(err, errlen, "reason: not UTF-8 text");
			seen_reason = true;
			if (rc == 0) {
				out->reason = v;
				v = NULL;
			}
		} else if ((kl == 7 && strncasecmp(s + ks, "expires", 7) == 0) ||
			   (kl == 7 && strncasecmp(s + ks, "entered", 7) == 0)) {
			int64_t *t = strncasecmp(s + ks, "expires", 7) == 0 ? &out->expires_ms
									    : &out->entered_ms;
			if (*t != 0)
				rc = pvo_fail(err, errlen, "%s given twice", key);
			else if (pvo_header_parse_time(v, strlen(v), t) < 0)
				rc = pvo_fail(err, errlen, "%s: not an RFC 3339 date-time", key);
		}
		/* other parameters: skipped (a newer gateway may send more) */
		free(v);
		if (rc < 0) {
			pvo_header_quarantine_clear(out);
			return rc;
		}
	}
	if (out->reason == NULL)
		out->reason = xstrdup("");
	if (out->entered_ms != 0 && out->expires_ms != 0 && out->expires_ms < out->entered_ms) {
		pvo_header_quarantine_clear(out);
		return pvo_fail(err, errlen, "expires is before entered");
	}
	return 0;
}

/* --- the header section ---------------------------------------------------- */

void pvo_headers_clear(struct pvo_headers *h)
{
	for (size_t i = 0; i < h->nq; i++)
		pvo_header_quarantine_clear(&h->q[i]);
	free(h->origin_id);
	memset(h, 0, sizeof(*h));
}

static const char pvo_quarantine_field[] = "X-Lazaret-Quarantine";
static const char pvo_origin_field[] = "X-Lazaret-Origin-Id";

/* Whether the field at line[0..n) is named name (case-insensitive), and where its value starts. */
static bool pvo_field_is(const char *line, size_t n, const char *name, size_t *value_at)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k) != 0)
		return false;
	size_t i = k;
	while (i < n && pvo_wsp(line[i])) /* obsolete "Name :" form */
		i++;
	if (i >= n || line[i] != ':')
		return false;
	*value_at = i + 1;
	return true;
}

static int pvo_origin(const char *v, size_t n, struct pvo_headers *out, char *err, size_t errlen)
{
	while (n > 0 && pvo_wsp(*v))
		v++, n--;
	while (n > 0 && pvo_wsp(v[n - 1]))
		n--;
	if (out->origin_id != NULL)
		return pvo_fail(err, errlen, "%s: given twice", pvo_origin_field);
	if (n == 0)
		return pvo_fail(err, errlen, "%s: empty", pvo_origin_field);
	if (n > PVO_HEADER_ORIGIN_MAX)
		return pvo_fail(err, errlen, "%s: longer than %d bytes", pvo_origin_field,
				PVO_HEADER_ORIGIN_MAX);
	for (size_t i = 0; i < n; i++) {
		if (v[i] <= ' ' || v[i] >= 0x7f)
			return pvo_fail(err, errlen, "%s: not printable ASCII without blanks",
					pvo_origin_field);
	}
	out->origin_id = xstrndup(v, n);
	return 0;
}

/* One unfolded field: parsed when it is one of ours. */
static int pvo_field(const char *f, size_t n, struct pvo_headers *out, char *err, size_t errlen)
{
	size_t at = 0;
	bool quarantine = pvo_field_is(f, n, pvo_quarantine_field, &at);
	bool origin = !quarantine && pvo_field_is(f, n, pvo_origin_field, &at);
	if (!quarantine && !origin)
		return 0;
	if (n > PVO_HEADER_FIELD_MAX)
		return pvo_fail(err, errlen, "%s: longer than %d bytes",
				quarantine ? pvo_quarantine_field : pvo_origin_field,
				PVO_HEADER_FIELD_MAX);
	if (origin)
		return pvo_origin(f + at, n - at, out, err, errlen);
	if (out->nq == PVO_HEADER_QUARANTINES_MAX)
		return pvo_fail(err, errlen, "more than %d %s headers", PVO_HEADER_QUARANTINES_MAX,
				pvo_quarantine_field);
	char why[PVO_HEADER_ERR_MAX];
	struct pvo_header_quarantine q;
	if (pvo_header_parse_quarantine(f + at, n - at, &q, why, sizeof(why)) < 0)
		return pvo_fail(err, errlen, "%s: %s", pvo_quarantine_field, why);
	for (size_t i = 0; i < out->nq; i++) {
		if (strcasecmp(out->q[i].name, q.name) == 0) {
			int rc = pvo_fail(err, errlen, "%s: quarantine \"%s\" named twice",
					  pvo_quarantine_field, q.name);
			pvo_header_quarantine_clear(&q);
			return rc;
		}
	}
	out->q[out->nq++] = q;
	return 0;
}

size_t pvo_header_line(const char *s, size_t len, size_t i, size_t *n)
{
	size_t eol = i;
	while (eol < len && s[eol] != '\n')
		eol++;
	*n = eol - i;
	if (*n > 0 && s[eol - 1] == '\r')
		(*n)--;
	return eol < len ? eol + 1 : len;
}

int pvo_headers_parse(const unsigned char *raw, size_t len, struct pvo_headers *out, char *err,
		      size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *s = (const char *)raw;
	struct strbuf field = STRBUF_INIT;
	bool have = false;
	bool too_long = false;
	size_t i = 0;
	int rc = 0;
	while (i < len && rc == 0) {
		size_t n;
		size_t next = pvo_header_line(s, len, i, &n);
		bool empty = n == 0;
		bool continued = !empty && pvo_wsp(s[i]);
		if (continued && have) {
			/* unfolding: the line break goes, the blank stays */
			if (field.len + n <= PVO_HEADER_FIELD_MAX + 1)
				strbuf_add(&field, s + i, n);
			else
				too_long = true;
			i = next;
			continue;
		}
		if (have) {
			if (too_long)
				strbuf_add(&field, "", 0);
			rc = pvo_field(strbuf_str(&field),
				       too_long ? PVO_HEADER_FIELD_MAX + 1 : field.len, out, err,
				       errlen);
			strbuf_truncate(&field, 0);
			have = false;
			too_long = false;
		}
		if (empty || rc < 0)
			break; /* the end of the header section */
		strbuf_add(&field, s + i,
			   n < PVO_HEADER_FIELD_MAX + 1 ? n : PVO_HEADER_FIELD_MAX + 1);
		too_long = n > PVO_HEADER_FIELD_MAX;
		have = true;
		i = next;
	}
	if (rc == 0 && have)
		rc = pvo_field(strbuf_str(&field), too_long ? PVO_HEADER_FIELD_MAX + 1 : field.len,
			       out, err, errlen);
	strbuf_free(&field);
	if (rc < 0)
		pvo_headers_clear(out);
	return rc;
}
