/*
 * antispam — the builtin spam engine: a rules file of regular expressions with
 * scores, and GTUBE (antispam.h). Also the small helpers all spam engines share.
 *
 * What it is for: a first line of scoring that needs no daemon, and a place for an
 * administrator's local rules (Japanese unsolicited-advertising markers, local
 * campaigns). A rule looks at one of three texts:
 *   header NAME  each top-level field called NAME (any case), unfolded and decoded
 *                to UTF-8 (RFC 2047 in ISO-2022-JP, Shift_JIS, EUC-JP, UTF-8 ...):
 *                the same text msgmeta shows; "ALL" is every field as "Name: value"
 *   body         the text parts (text/plain, text/html ...), transfer-decoded and
 *                converted to UTF-8; the raw body after the header block when the
 *                message has no readable text part
 *   uri          each http:// or https:// link found in that body text
 * A rule that matches adds its score once; the result is the sum and the names of
 * the rules that hit. GTUBE anywhere in the raw message or in the body text scores
 * ANTISPAM_GTUBE_SCORE, whatever the rules say. The grammar is in docs/GATEWAY.md.
 *
 * What it is not for: Bayesian learning, DNS block lists, network checks (spamd and
 * rspamd do those).
 *
 * Hostile input: rules are trusted configuration but still bounded (line length,
 * rule count, pattern length, file size); messages are not trusted: every text a
 * pattern runs over is cut at ANTISPAM_REGEX_INPUT_MAX bytes and the number of
 * links looked at is bounded, so one message costs at most
 * rules x ANTISPAM_REGEX_INPUT_MAX bytes of matching. Patterns are POSIX extended
 * regular expressions (regcomp); they match the bytes of UTF-8 text, and
 * case-insensitive matching folds ASCII letters only. A loaded rule set is
 * read-only, so worker threads share it (glibc's regexec is thread-safe).
 */
#include "gateway/antispam.h"
#include "gateway/antispam_int.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/readfile.h"
#include "common/xalloc.h"
#include "mime/msgmeta.h"

/* The rules file: a bounded configuration, read whole. */
#define ANTISPAM_RULES_FILE_MAX (4 * 1024 * 1024)
/* One rule a line; a longer line is a mistake, not a rule. */
#define ANTISPAM_RULES_LINE_MAX 4096
/* Rules in one file: each costs one pass over up to ANTISPAM_REGEX_INPUT_MAX bytes. */
#define ANTISPAM_RULES_MAX 2000
/* Longest pattern between the slashes. */
#define ANTISPAM_REGEX_MAX 1024
/* Bytes of one text a pattern runs over: bounds the cost of a hostile message. */
#define ANTISPAM_REGEX_INPUT_MAX (256 * 1024)
/* Links looked at per message by uri rules, and the longest one kept. */
#define ANTISPAM_URI_MAX     500
#define ANTISPAM_URI_LEN_MAX 2048
/* A rule's score lies within +-this; GTUBE alone reaches ANTISPAM_GTUBE_SCORE. */
#define ANTISPAM_SCORE_MAX 1000.0
/* Nesting of multiparts and attached messages walked for text parts. */
#define ANTISPAM_MIME_DEPTH_MAX 20

static const char antispam_gtube[] =
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

enum antispam_rule_kind {
	ANTISPAM_RULE_HEADER,
	ANTISPAM_RULE_BODY,
	ANTISPAM_RULE_URI,
};

struct antispam_rule {
	enum antispam_rule_kind kind;
	char *header; /* field name for header rules ("ALL": every field) */
	regex_t re;
	double score;
	char name[ANTISPAM_RULE_NAME_MAX + 1];
};

struct antispam_rules {
	struct antispam_rule *rules;
	size_t n;
};

/* The texts one message offers to the rules, built once per scan. */
struct antispam_texts {
	const struct msgmeta *meta; /* the caller's, or owned_meta */
	struct msgmeta *owned_meta;
	char *all_headers; /* "Name: value\n" ..., built on first use */
	GString *body;	   /* decoded text parts */
	char **uris;
	size_t nuris;
	bool uris_done;
};

/* ---- shared helpers -------------------------------------------------------------- */

void antispam_result_clear(struct antispam_result *r)
{
	if (r == NULL)
		return;
	free(r->detail);
	r->detail = NULL;
	r->score = 0;
}

bool antispam_detail_add(char **detail, const char *name, size_t len)
{
	char clean[ANTISPAM_RULE_NAME_MAX + 1];
	size_t k = 0;
	while (len > 0 && (*name == ' ' || *name == '\t' || *name == '\r' || *name == '\n')) {
		name++;
		len--;
	}
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t' || name[len - 1] == '\r' ||
			   name[len - 1] == '\n'))
		len--;
	for (size_t i = 0; i < len && k < ANTISPAM_RULE_NAME_MAX; i++) {
		char c = name[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-')
			clean[k++] = c;
	}
	clean[k] = '\0';
	if (k == 0)
		return false;
	size_t have = *detail != NULL ? strlen(*detail) : 0;
	if (have + 1 + k > ANTISPAM_DETAIL_MAX)
		return false;
	char *next = *detail != NULL ? xasprintf("%s,%s", *detail, clean) : xstrdup(clean);
	free(*detail);
	*detail = next;
	return true;
}

/* ---- rules file ---------------------------------------------------------------------- */

static void antispam_rule_fini(struct antispam_rule *rule)
{
	free(rule->header);
	regfree(&rule->re);
}

void antispam_rules_free(struct antispam_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		antispam_rule_fini(&r->rules[i]);
	free(r->rules);
	free(r);
}

size_t antispam_rules_count(const struct antispam_rules *r)
{
	return r != NULL ? r->n : 0;
}

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* The next blank-separated word of *p into buf (cut to size); advances *p. */
static size_t next_word(const char **p, char *buf, size_t size)
{
	const char *s = skip_blanks(*p), *e = s;
	while (*e != '\0' && *e != ' ' && *e != '\t')
		e++;
	size_t n = (size_t)(e - s);
	size_t k = n < size - 1 ? n : size - 1;
	memcpy(buf, s, k);
	buf[k] = '\0';
	*p = e;
	return n;
}

static bool header_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == ':')
			return false;
	return true;
}

static bool rule_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > ANTISPAM_RULE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/*
 * Reads "/REGEX/FLAGS" at *p into a compiled regex. "\/" stands for a slash inside
 * the pattern; other escapes reach regcomp unchanged. Flags: i (ignore ASCII case).
 * A leading "(?i)" in the pattern is taken as the i flag. 0, or -EINVAL with *why.
 */
static int parse_regex(const char **p, regex_t *re, char **why)
{
	char pat[ANTISPAM_REGEX_MAX + 1];
	size_t k = 0;
	const char *s = skip_blanks(*p);
	bool icase = false, closed = false;

	if (*s != '/') {
		*why = xstrdup("expected /REGEX/ after =~");
		return -EINVAL;
	}
	for (s++; *s != '\0'; s++) {
		char c = *s;
		if (c == '\\' && s[1] == '/') {
			c = '/';
			s++;
		} else if (c == '\\' && s[1] != '\0') {
			if (k + 2 > ANTISPAM_REGEX_MAX)
				goto too_long;
			pat[k++] = c;
			c = *++s;
		} else if (c == '/') {
			closed = true;
			s++;
			break;
		}
		if (k + 1 > ANTISPAM_REGEX_MAX)
			goto too_long;
		pat[k++] = c;
	}
	if (!closed) {
		*why = xstrdup("unterminated regular expression (no closing /)");
		return -EINVAL;
	}
	pat[k] = '\0';
	for (; *s != '\0' && *s != ' ' && *s != '\t'; s++) {
		if (*s != 'i') {
			*why = xasprintf("unknown regular expression flag '%c' (only i)", *s);
			return -EINVAL;
		}
		icase = true;
	}
	const char *src = pat;
	if (strncmp(src, "(?i)", 4) == 0) {
		icase = true;
		src += 4;
	}
	if (*src == '\0') {
		*why = xstrdup("empty regular expression");
		return -EINVAL;
	}
	int rc = regcomp(re, src, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
	if (rc != 0) {
		char msg[256];
		regerror(rc, re, msg, sizeof(msg));
		*why = xasprintf("bad regular expression: %s", msg);
		return -EINVAL;
	}
	*p = s;
	return 0;
too_long:
	*why = xasprintf("regular expression longer than %d bytes", ANTISPAM_REGEX_MAX);
	return -EINVAL;
}

/*
 * Parses one non-blank, non-comment line into rule. 0, or -EINVAL with *why (the
 * message without FILE:LINE). lineno names rules that have no name.
 */
static int parse_rule_line(const char *line, unsigned lineno, struct antispam_rule *rule,
			   char **why)
{
	char word[ANTISPAM_RULES_LINE_MAX + 1];
	const char *p = line;
	bool have_re = false, have_score = false, have_name = false;

	memset(rule, 0, sizeof(*rule));
	next_word(&p, word, sizeof(word));
	if (strcmp(word, "header") == 0) {
		rule->kind = ANTISPAM_RULE_HEADER;
		next_word(&p, word, sizeof(word));
		if (!header_name_ok(word) || strcmp(word, "=~") == 0) {
			*why = xstrdup("expected a header field name after 'header'");
			goto fail;
		}
		rule->header = xstrdup(word);
	} else if (strcmp(word, "body") == 0) {
		rule->kind = ANTISPAM_RULE_BODY;
	} else if (strcmp(word, "uri") == 0) {
		rule->kind = ANTISPAM_RULE_URI;
	} else {
		*why = xasprintf("unknown rule type \"%s\" (header, body or uri)", word);
		goto fail;
	}
	next_word(&p, word, sizeof(word));
	if (strcmp(word, "=~") != 0) {
		*why = xstrdup("expected =~");
		goto fail;
	}
	if (parse_regex(&p, &rule->re, why) < 0)
		goto fail;
	have_re = true;
	for (;;) {
		p = skip_blanks(p);
		if (*p == '\0' || *p == '#')
			break;
		next_word(&p, word, sizeof(word));
		if (strcmp(word, "score") == 0 && !have_score) {
			char num[64], *end;
			if (next_word(&p, num, sizeof(num)) >= sizeof(num) || num[0] == '\0') {
				*why = xstrdup("expected a number after 'score'");
				goto fail;
			}
			errno = 0;
			double s = strtod(num, &end);
			if (*end != '\0' || errno != 0 || !isfinite(s)) {
				*why = xasprintf("bad score \"%s\"", num);
				goto fail;
			}
			if (fabs(s) > ANTISPAM_SCORE_MAX) {
				*why = xasprintf("score %s out of range (-%g to %g)", num,
						 ANTISPAM_SCORE_MAX, ANTISPAM_SCORE_MAX);
				goto fail;
			}
			rule->score = s;
			have_score = true;
		} else if (strcmp(word, "name") == 0 && !have_name) {
			size_t n = next_word(&p, word, sizeof(word));
			if (!rule_name_ok(word, n)) {
				*why = xasprintf("bad rule name (1 to %d of A-Z a-z 0-9 _)",
						 ANTISPAM_RULE_NAME_MAX);
				goto fail;
			}
			memcpy(rule->name, word, n + 1);
			have_name = true;
		} else if (strcmp(word, "score") == 0 || strcmp(word, "name") == 0) {
			*why = xasprintf("'%s' given twice", word);
			goto fail;
		} else {
			*why = xasprintf("unexpected \"%s\" (expected score N [name RULE])", word);
			goto fail;
		}
	}
	if (!have_score) {
		*why = xstrdup("missing 'score N'");
		goto fail;
	}
	if (!have_name)
		snprintf(rule->name, sizeof(rule->name), "RULE_%u", lineno);
	return 0;
fail:
	free(rule->header);
	rule->header = NULL;
	if (have_re)
		regfree(&rule->re);
	return -EINVAL;
}

/* Reads the whole file (bounded). 0, or -errno with *why. */
static int read_rules_file(const char *path, char **out, size_t *outlen, char **why)
{
	int rc = read_file(path, ANTISPAM_RULES_FILE_MAX, out, outlen);
	if (rc == -EFBIG)
		*why = xasprintf("%s: larger than %d bytes", path, ANTISPAM_RULES_FILE_MAX);
	else if (rc == -EISDIR || rc == -EIO) {
		/* The file opened but could not be read (a folder reads as an error). */
		rc = -EIO;
		*why = xasprintf("%s: read error", path);
	} else if (rc < 0)
		*why = xasprintf("%s: %s", path, strerror(-rc));
	return rc;
}

int antispam_rules_load(const char *path, struct antispam_rules **out, char **err)
{
	struct antispam_rules *r = xcalloc(1, sizeof(*r));
	char *text = NULL, *why = NULL;
	size_t len = 0, cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (path == NULL)
		goto done; /* GTUBE only */
	rc = read_rules_file(path, &text, &len, &why);
	if (rc < 0)
		goto fail;
	for (char *line = text; line < text + len;) {
		char *nl = memchr(line, '\n', (size_t)(text + len - line));
		size_t n = nl != NULL ? (size_t)(nl - line) : (size_t)(text + len - line);
		char *next = nl != NULL ? nl + 1 : text + len;
		lineno++;
		if (n > ANTISPAM_RULES_LINE_MAX) {
			why = xasprintf("line longer than %d bytes", ANTISPAM_RULES_LINE_MAX);
			goto bad_line;
		}
		if (memchr(line, '\0', n) != NULL) {
			why = xstrdup("NUL byte in line");
			goto bad_line;
		}
		line[n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[n - 1] = '\0';
		const char *s = skip_blanks(line);
		if (*s != '\0' && *s != '#') {
			if (r->n >= ANTISPAM_RULES_MAX) {
				why = xasprintf("more than %d rules", ANTISPAM_RULES_MAX);
				goto bad_line;
			}
			struct antispam_rule rule;
			if (parse_rule_line(s, lineno, &rule, &why) < 0)
				goto bad_line;
			for (size_t i = 0; i < r->n; i++) {
				if (strcmp(r->rules[i].name, rule.name) == 0) {
					why = xasprintf("duplicate rule name %s", rule.name);
					antispam_rule_fini(&rule);
					goto bad_line;
				}
			}
			if (r->n == cap) {
				cap = cap ? cap * 2 : 16;
				r->rules = xreallocarray(r->rules, cap, sizeof(*r->rules));
			}
			r->rules[r->n++] = rule;
		}
		line = next;
	}
done:
	free(text);
	*out = r;
	return 0;
bad_line : {
	char *msg = xasprintf("%s:%u: %s", path, lineno, why);
	free(why);
	why = msg;
	rc = -EINVAL;
}
fail:
	if (err != NULL)
		*err = why;
	else
		free(why);
	free(text);
	antispam_rules_free(r);
	return rc;
}

/* ---- message texts ------------------------------------------------------------------- */

/* Appends len bytes to body, NULs made blanks, within ANTISPAM_REGEX_INPUT_MAX. */
static void body_append(GString *body, const char *s, size_t len)
{
	if (body->len >= ANTISPAM_REGEX_INPUT_MAX)
		return;
	if (body->len > 0)
		g_string_append_c(body, '\n');
	size_t room = ANTISPAM_REGEX_INPUT_MAX - body->len;
	if (len > room)
		len = room;
	size_t start = body->len;
	g_string_append_len(body, s, (gssize)len);
	for (size_t i = start; i < body->len; i++)
		if (body->str[i] == '\0')
			body->str[i] = ' ';
}

/* Converts bytes from charset to UTF-8; NULL when that fails. */
static char *to_utf8(const char *s, size_t len, const char *charset, gsize *outlen)
{
	if (charset == NULL)
		return NULL;
	const char *name = g_mime_charset_iconv_name(charset);
	return g_convert(s, (gssize)len, "UTF-8", name ? name : charset, NULL, outlen, NULL);
}

/*
 * Adds one text part, transfer-decoded and in UTF-8: its declared charset, else
 * UTF-8 when it is valid, else the Japanese charsets in turn, else the raw bytes.
 */
static void add_text_part(GString *body, GMimePart *part)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	if (content == NULL)
		return;
	GMimeStream *mem = g_mime_stream_mem_new();
	g_mime_data_wrapper_write_to_stream(content, mem);
	GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	const char *s = (const char *)bytes->data;
	size_t len = bytes->len > ANTISPAM_REGEX_INPUT_MAX ? ANTISPAM_REGEX_INPUT_MAX : bytes->len;
	const char *charset =
	    g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
	static const char *const fallback[] = {"ISO-2022-JP", "CP932", "EUC-JP"};
	gsize ulen = 0;
	char *u = NULL;

	if (charset != NULL && g_ascii_strcasecmp(charset, "us-ascii") != 0)
		u = to_utf8(s, len, charset, &ulen);
	if (u == NULL && g_utf8_validate(s, (gssize)len, NULL)) {
		body_append(body, s, len);
	} else {
		for (size_t i = 0; u == NULL && i < G_N_ELEMENTS(fallback); i++)
			u = to_utf8(s, len, fallback[i], &ulen);
		if (u != NULL)
			body_append(body, u, ulen);
		else
			body_append(body, s, len);
	}
	g_free(u);
	g_object_unref(mem);
}

static void walk_text_parts(GString *body, GMimeObject *obj, int depth)
{
	if (obj == NULL || depth > ANTISPAM_MIME_DEPTH_MAX || body->len >= ANTISPAM_REGEX_INPUT_MAX)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n; i++)
			walk_text_parts(body, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner != NULL)
			walk_text_parts(body, g_mime_message_get_mime_part(inner), depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		GMimeContentType *ct = g_mime_object_get_content_type(obj);
		if (ct == NULL || g_mime_content_type_is_type(ct, "text", "*"))
			add_text_part(body, GMIME_PART(obj));
	}
}

/* The raw body: what follows the first empty line (CRLF or LF). */
static void raw_body(GString *body, const unsigned char *data, size_t len)
{
	const char *s = (const char *)data;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] != '\n')
			continue;
		size_t j = i + 1;
		if (j < len && s[j] == '\r')
			j++;
		if (j < len && s[j] == '\n') {
			body_append(body, s + j + 1, len - j - 1);
			return;
		}
	}
}

/* The text parts of the message, from meta's kept parse (msgmeta_parse_kept);
 * the raw body when there are none. */
static void build_body(struct antispam_texts *t, const unsigned char *data, size_t len,
		       const struct msgmeta *meta)
{
	t->body = g_string_new(NULL);
	GMimeMessage *msg = msgmeta_mime(meta);
	if (msg != NULL)
		walk_text_parts(t->body, g_mime_message_get_mime_part(msg), 0);
	if (t->body->len == 0)
		raw_body(t->body, data, len);
}

static void build_all_headers(struct antispam_texts *t)
{
	GString *all = g_string_new(NULL);
	for (size_t i = 0; i < t->meta->nheaders && all->len < ANTISPAM_REGEX_INPUT_MAX; i++)
		g_string_append_printf(all, "%s: %s\n", t->meta->headers[i].name,
				       t->meta->headers[i].value);
	if (all->len > ANTISPAM_REGEX_INPUT_MAX)
		g_string_truncate(all, ANTISPAM_REGEX_INPUT_MAX);
	t->all_headers = xstrdup(all->str);
	g_string_free(all, TRUE);
}

static bool uri_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f && c != '"' && c != '\'' && c != '<' && c != '>' && c != '(' &&
	       c != ')' && c != '[' && c != ']' && c != '{' && c != '}' && c != '\\' && c != '^' &&
	       c != '`' && c != '|';
}

static void build_uris(struct antispam_texts *t)
{
	const char *s = t->body->str;
	size_t len = t->body->len, cap = 0;
	t->uris_done = true;
	for (size_t i = 0; i + 8 <= len && t->nuris < ANTISPAM_URI_MAX; i++) {
		size_t skip;
		if ((s[i] | 0x20) != 'h') /* most bytes: no call for them */
			continue;
		if (g_ascii_strncasecmp(s + i, "http://", 7) == 0)
			skip = 7;
		else if (g_ascii_strncasecmp(s + i, "https://", 8) == 0)
			skip = 8;
		else
			continue;
		size_t e = i + skip;
		while (e < len && uri_char((unsigned char)s[e]) && e - i < ANTISPAM_URI_LEN_MAX)
			e++;
		if (e == i + skip)
			continue;
		if (t->nuris == cap) {
			cap = cap ? cap * 2 : 16;
			t->uris = xreallocarray(t->uris, cap, sizeof(*t->uris));
		}
		t->uris[t->nuris++] = xstrndup(s + i, e - i);
		i = e - 1;
	}
}

static void texts_free(struct antispam_texts *t)
{
	msgmeta_free(t->owned_meta);
	free(t->all_headers);
	if (t->body != NULL)
		g_string_free(t->body, TRUE);
	for (size_t i = 0; i < t->nuris; i++)
		free(t->uris[i]);
	free(t->uris);
}

/* regexec on at most ANTISPAM_REGEX_INPUT_MAX bytes of s. */
static bool regex_hits(const regex_t *re, const char *s)
{
	size_t n = strnlen(s, ANTISPAM_REGEX_INPUT_MAX + 1);
	if (n <= ANTISPAM_REGEX_INPUT_MAX)
		return regexec(re, s, 0, NULL, 0) == 0;
	char *cut = xstrndup(s, ANTISPAM_REGEX_INPUT_MAX);
	bool hit = regexec(re, cut, 0, NULL, 0) == 0;
	free(cut);
	return hit;
}

static bool rule_hits(const struct antispam_rule *rule, struct antispam_texts *t)
{
	switch (rule->kind) {
	case ANTISPAM_RULE_HEADER:
		if (strcasecmp(rule->header, "ALL") == 0) {
			if (t->all_headers == NULL)
				build_all_headers(t);
			return regex_hits(&rule->re, t->all_headers);
		}
		for (size_t i = 0; i < t->meta->nheaders; i++)
			if (strcasecmp(t->meta->headers[i].name, rule->header) == 0 &&
			    regex_hits(&rule->re, t->meta->headers[i].value))
				return true;
		return false;
	case ANTISPAM_RULE_BODY:
		return regex_hits(&rule->re, t->body->str);
	case ANTISPAM_RULE_URI:
		if (!t->uris_done)
			build_uris(t);
		for (size_t i = 0; i < t->nuris; i++)
			if (regex_hits(&rule->re, t->uris[i]))
				return true;
		return false;
	}
	return false;
}

int antispam_builtin_scan(const struct antispam_rules *r, const unsigned char *data, size_t len,
			  struct antispam_result *out)
{
	return antispam_builtin_scan_meta(r, data, len, NULL, out);
}

int antispam_builtin_scan_meta(const struct antispam_rules *r, const unsigned char *data,
			       size_t len, const struct msgmeta *meta, struct antispam_result *out)
{
	static const unsigned char empty[1];
	struct antispam_texts t = {0};

	if (out == NULL)
		return -EINVAL;
	out->score = 0;
	out->detail = NULL;
	if (data == NULL) {
		data = empty;
		len = 0;
	}
	if (memmem(data, len, antispam_gtube, sizeof(antispam_gtube) - 1) != NULL)
		goto gtube;
	if (msgmeta_mime(meta) == NULL) {
		/* one parse for the text parts and the headers; never fails on a
		 * non-NULL buffer */
		(void)msgmeta_parse_kept(data, len, &t.owned_meta);
		meta = t.owned_meta;
	}
	build_body(&t, data, len, meta);
	if (memmem(t.body->str, t.body->len, antispam_gtube, sizeof(antispam_gtube) - 1) != NULL)
		goto gtube;
	if (r == NULL || r->n == 0)
		goto done;
	t.meta = meta;
	for (size_t i = 0; i < r->n; i++) {
		if (rule_hits(&r->rules[i], &t)) {
			out->score += r->rules[i].score;
			antispam_detail_add(&out->detail, r->rules[i].name,
					    strlen(r->rules[i].name));
		}
	}
done:
	texts_free(&t);
	return 0;
gtube:
	out->score = ANTISPAM_GTUBE_SCORE;
	out->detail = xstrdup("GTUBE");
	texts_free(&t);
	return 0;
}
