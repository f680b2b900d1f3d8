/*
 * filter — the gateway's content filters: parses a filter file into a set of
 * compiled rules and evaluates them against one message (see filter.h; the exact
 * grammar, every condition and action, and the error messages are in
 * docs/GATEWAY.md, section "Content filters").
 *
 * Parsing is a hand-written lexer and a recursive-descent parser. The filter file
 * is written by an administrator, but it is still treated as hostile input: every
 * recursion is bounded (FILTER_NESTING_MAX), every size is capped, and on any
 * error the whole set is thrown away, so a caller either gets every filter of the
 * file or none. "and" and "or" chains are kept as n-ary nodes, so evaluating or
 * freeing a long chain does not recurse once per term.
 *
 * Evaluation reads the message as given (decoded headers from msgmeta, the raw
 * bytes, the envelope) and never fails on hostile content. It is a security
 * check, so it fails closed: every condition has three values, true, false and
 * undecided, and a message the filters cannot fully inspect is never "clean".
 * A value up to FILTER_MATCH_TEXT_MAX bytes is matched whole; a longer one in
 * windows of that size overlapping by half, each matched in place (regexec with
 * REG_STARTEND, so "^" and "$" hold only at the value's real start and end and
 * word boundaries see the real neighbours at a window's start; at its end "\>"
 * may take the cut for a word end, the one false match this allows). A match found in a window is a
 * match. When no window matches, the answer is "no match" only when the pattern cannot match more
 * than the overlap (its longest match is computed when it is compiled), otherwise undecided. The
 * matching work of one message is bounded (FILTER_MATCH_BUDGET); a match it can no longer afford is
 * undecided too, and so are conditions on attachments, headers or text parts beyond msgmeta's or
 * this file's walk limits. "and", "or" and "not" follow Kleene's three-valued
 * logic; the first filter whose condition is undecided stops the evaluation and
 * the result says so (filter_result.undecided), for the caller's fail-closed
 * outcome. body-contains scans a bounded prefix with a length-aware search, so
 * NUL bytes in a body are searched like any other byte.
 *
 * Why the C library's POSIX matcher and not another engine: filter files are
 * written in POSIX extended syntax, and the matcher needs no backtracking (back-
 * references are refused), so its worst case is polynomial and the budget bounds
 * it. PCRE2 would change the syntax of every filter file; its backtracking
 * matcher is exponential in the worst case, and its DFA matcher
 * (pcre2_dfa_match) retries at every start position like regexec does, so it
 * would still need the same budget and windows. RE2, which is linear, has only a
 * C++ interface. Regular expressions are compiled and run in a UTF-8 locale so
 * that "." and bracket expressions see characters, not bytes, and "(?i)" folds
 * non-ASCII letters too.
 *
 * A filter set is read-only after parsing: any number of threads may evaluate the
 * same set at once. Not for: changing the message (the caller applies the
 * actions), scanning for spam or viruses, or reloading files.
 */
#include "gateway/filter.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "common/acl.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/xalloc.h"
#include "mime/msgmeta.h"

/* A filter file is written by hand; a megabyte is thousands of rules and bounds parse time. */
#define FILTER_FILE_MAX (1024 * 1024)
/* Filters per file: every message runs through all of them, so their number is its cost. */
#define FILTER_COUNT_MAX 1000
/* Parentheses and "not" nest this deep; the parser recurses once per level. */
#define FILTER_NESTING_MAX 64
/* Bytes of one string literal after unescaping: patterns, header values, names. */
#define FILTER_STRING_MAX 1024
/* Bytes of a filter name, which ends up in logs and added header fields. */
#define FILTER_NAME_MAX 128
/* Compiled regular expressions per file; each one can take tens of kilobytes. */
#define FILTER_REGEX_MAX 4000
/*
 * Elements of one pattern once its repetitions are expanded: regcomp copies the
 * element before "+" once and the element before "{n,m}" m times, so nested and
 * stacked repetitions multiply its memory and time.
 */
#define FILTER_REGEX_SIZE_MAX 5000
/* Actions in one then- or else-block. */
#define FILTER_ACTIONS_MAX 64
/*
 * Bytes of one value (a header, a file name, an address) a pattern is matched
 * against in one regexec. Real values are far shorter; a longer one is matched in
 * windows of this size that overlap by half (FILTER_MATCH_WINDOW_STEP), so that
 * a hostile long header cannot turn one regexec into a long scan, yet every part
 * of it is seen.
 */
#define FILTER_MATCH_TEXT_MAX	 4096
#define FILTER_MATCH_WINDOW_STEP (FILTER_MATCH_TEXT_MAX / 2)
/*
 * A match no longer than this lies wholly inside one window: the overlap, less
 * the few bytes a window's ends move to fall on character boundaries.
 */
#define FILTER_MATCH_WINDOW_SURE (FILTER_MATCH_WINDOW_STEP - 8)
/*
 * The matching work one evaluation may do, as the sum of the squared lengths of
 * the values (or windows) handed to regexec: the C library's matcher takes time
 * that grows with the square of the length for patterns with several unanchored
 * ".*" (about a quarter of a second for a 4 KiB value). The budget allows sixteen
 * windows of the maximum length, or thousands of ordinary values; a match past
 * it is undecided, so a hostile message can neither hold a worker for long nor
 * slip through by spending the budget.
 */
#define FILTER_MATCH_BUDGET (16ULL * FILTER_MATCH_TEXT_MAX * FILTER_MATCH_TEXT_MAX)
/*
 * Bytes of raw body, and of decoded text in total, body-contains searches. Above
 * the usual maximum message size, so all of an accepted message is searched, yet
 * a bound on the time one condition can take.
 */
#define FILTER_BODY_SCAN_MAX (64 * 1024 * 1024)
/* Text parts whose decoded text body-contains reads, and how deep in multiparts. */
#define FILTER_TEXT_PARTS_MAX 64
#define FILTER_PART_DEPTH_MAX 16
/* body-contains folds the body into a buffer of this many bytes at a time. */
#define FILTER_SCAN_CHUNK (64 * 1024)
/* How much of a user's text an error message quotes. */
#define FILTER_EXCERPT_MAX 48

/* ---- the compiled form --------------------------------------------------------- */

enum cond_kind {
	COND_AND,
	COND_OR,
	COND_NOT,
	COND_SUBJECT,
	COND_HEADER,
	COND_BODY_CONTAINS,
	COND_ATTACHMENT_FILENAME,
	COND_ATTACHMENT_TYPE,
	COND_SIZE,
	COND_MAIL_FROM,
	COND_RCPT_TO,
	COND_REMOTE_IP,
	COND_REMOTE_IP_IN,
};

enum size_op { SIZE_EQ, SIZE_NE, SIZE_LT, SIZE_LE, SIZE_GT, SIZE_GE };

struct cond {
	enum cond_kind kind;
	struct cond **kids; /* COND_AND, COND_OR (two or more), COND_NOT (one) */
	size_t nkids;
	bool negate;	  /* "!=": the negation of "==" */
	bool has_regex;	  /* re is compiled */
	regex_t re;	  /* the "==" pattern of a string condition */
	size_t max_match; /* bytes one match of re spans at most; SIZE_MAX: unbounded */
	char *header;	  /* COND_HEADER: the field name */
	char *needle;	  /* COND_BODY_CONTAINS: ASCII lower-cased */
	size_t needle_len;
	enum size_op op; /* COND_SIZE */
	uint64_t size;
	struct acl *acl; /* COND_REMOTE_IP_IN */
};

struct action {
	enum filter_action_kind kind;
	char *arg;
	char *arg2;
};

struct action_list {
	struct action *v;
	size_t n;
};

struct filter {
	char *name;
	int line;
	struct cond *cond;
	struct action_list then_actions;
	struct action_list else_actions;
};

struct filter_set {
	struct filter *filters;
	size_t nfilters;
};

static void cond_free(struct cond *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nkids; i++)
		cond_free(c->kids[i]);
	free(c->kids);
	if (c->has_regex)
		regfree(&c->re);
	free(c->header);
	free(c->needle);
	acl_free(c->acl);
	free(c);
}

static void action_list_clear(struct action_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].arg);
		free(l->v[i].arg2);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void filter_set_free(struct filter_set *fs)
{
	if (fs == NULL)
		return;
	for (size_t i = 0; i < fs->nfilters; i++) {
		free(fs->filters[i].name);
		cond_free(fs->filters[i].cond);
		action_list_clear(&fs->filters[i].then_actions);
		action_list_clear(&fs->filters[i].else_actions);
	}
	free(fs->filters);
	free(fs);
}

size_t filter_set_count(const struct filter_set *fs)
{
	return fs ? fs->nfilters : 0;
}

const char *filter_action_name(enum filter_action_kind kind)
{
	switch (kind) {
	case FILTER_ACTION_QUARANTINE:
		return "quarantine";
	case FILTER_ACTION_DROP:
		return "drop";
	case FILTER_ACTION_BOUNCE:
		return "bounce";
	case FILTER_ACTION_DELIVER:
		return "deliver";
	case FILTER_ACTION_INSERT_HEADER:
		return "insert-header";
	case FILTER_ACTION_STRIP_HEADER:
		return "strip-header";
	case FILTER_ACTION_ALT_MAILHOST:
		return "alt-mailhost";
	}
	return "unknown";
}

bool filter_action_is_final(enum filter_action_kind kind)
{
	return kind == FILTER_ACTION_QUARANTINE || kind == FILTER_ACTION_DROP ||
	       kind == FILTER_ACTION_BOUNCE || kind == FILTER_ACTION_DELIVER;
}

/* ---- the UTF-8 locale regular expressions run in ------------------------------- */

static pthread_once_t filter_locale_once = PTHREAD_ONCE_INIT;
static locale_t filter_locale = (locale_t)0;

static void filter_locale_init(void)
{
	/* C.UTF-8 is in every glibc since 2.35; without it patterns work on bytes. */
	static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		filter_locale = newlocale(LC_CTYPE_MASK | LC_COLLATE_MASK, names[i], (locale_t)0);
		if (filter_locale != (locale_t)0)
			return;
	}
}

/* Switches this thread to the UTF-8 locale; returns what to restore (or 0). */
static locale_t filter_locale_enter(void)
{
	pthread_once(&filter_locale_once, filter_locale_init);
	if (filter_locale == (locale_t)0)
		return (locale_t)0;
	return uselocale(filter_locale);
}

static void filter_locale_leave(locale_t old)
{
	if (old != (locale_t)0)
		uselocale(old);
}

/* ---- lexer --------------------------------------------------------------------- */

enum tok_kind {
	TOK_EOF,
	TOK_IDENT,
	TOK_STRING,
	TOK_NUMBER,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_COLON,
	TOK_SEMI,
	TOK_COMMA,
	TOK_EQ,
	TOK_NE,
	TOK_LT,
	TOK_LE,
	TOK_GT,
	TOK_GE,
};

struct token {
	enum tok_kind kind;
	int line, col;
	char *text; /* TOK_IDENT, TOK_NUMBER: as written; TOK_STRING: unescaped */
	size_t len;
};

struct parser {
	const char *name;
	const unsigned char *s;
	size_t len, pos;
	int line, col;
	struct token tok;
	char *err;
	int depth;
	size_t nregex;
	struct filter_set *fs;
};

/* Copies at most FILTER_EXCERPT_MAX bytes of s (cut at a character), control bytes escaped. */
static void excerpt(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0, i = 0;
	size_t cut = len > FILTER_EXCERPT_MAX ? FILTER_EXCERPT_MAX : len;
	while (cut < len && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
		cut--;
	for (; i < cut && o + 5 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7F)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02X", c);
		else
			buf[o++] = (char)c;
	}
	if (i < len && o + 4 < size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

/* Records the first error at line:col; returns -EINVAL for the caller to pass up. */
static int perr_at(struct parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int perr_at(struct parser *p, int line, int col, const char *fmt, ...)
{
	if (p->err != NULL)
		return -EINVAL;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->err = xasprintf("%s:%d:%d: %s", p->name, line, col, msg);
	return -EINVAL;
}

#define perr(p, fmt, ...) perr_at((p), (p)->tok.line, (p)->tok.col, fmt, __VA_ARGS__)

/* How the current token is named in "expected X, got Y" messages. */
static const char *tok_describe(const struct token *t, char *buf, size_t size)
{
	char ex[FILTER_EXCERPT_MAX * 4 + 8];
	switch (t->kind) {
	case TOK_EOF:
		return "end of file";
	case TOK_IDENT:
	case TOK_NUMBER:
		excerpt(ex, sizeof(ex), t->text, t->len);
		snprintf(buf, size, "'%s'", ex);
		return buf;
	case TOK_STRING:
		excerpt(ex, sizeof(ex), t->text, t->len);
		snprintf(buf, size, "string \"%s\"", ex);
		return buf;
	case TOK_LBRACE:
		return "'{'";
	case TOK_RBRACE:
		return "'}'";
	case TOK_LPAREN:
		return "'('";
	case TOK_RPAREN:
		return "')'";
	case TOK_COLON:
		return "':'";
	case TOK_SEMI:
		return "';'";
	case TOK_COMMA:
		return "','";
	case TOK_EQ:
		return "'=='";
	case TOK_NE:
		return "'!='";
	case TOK_LT:
		return "'<'";
	case TOK_LE:
		return "'<='";
	case TOK_GT:
		return "'>'";
	case TOK_GE:
		return "'>='";
	}
	return "token";
}

/* Advances over one byte, keeping line and column (columns count characters). */
static void lex_advance(struct parser *p)
{
	unsigned char c = p->s[p->pos++];
	if (c == '\n') {
		p->line++;
		p->col = 1;
	} else if ((c & 0xC0) != 0x80) {
		p->col++;
	}
}

static bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

/* Length of the valid UTF-8 sequence at s (of n bytes), 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t need;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		need = 2;
		cp = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		need = 3;
		cp = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		need = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return need;
}

/* Reads a string literal starting at the opening quote into p->tok. */
static int lex_string(struct parser *p)
{
	char *buf = xmalloc(FILTER_STRING_MAX + 1);
	size_t n = 0;
	lex_advance(p); /* the opening quote */
	for (;;) {
		if (p->pos >= p->len || p->s[p->pos] == '\n') {
			free(buf);
			return perr(p, "%s", "unterminated string");
		}
		unsigned char c = p->s[p->pos];
		if (c == '"') {
			lex_advance(p);
			break;
		}
		size_t seq = 1;
		char out[4];
		size_t nout = 1;
		if (c == '\\' && p->pos + 1 < p->len &&
		    (p->s[p->pos + 1] == '"' || p->s[p->pos + 1] == '\\')) {
			/* \" and \\ are the only escapes; other backslashes stay for patterns. */
			out[0] = (char)p->s[p->pos + 1];
			seq = 2;
		} else if ((c < 0x20 && c != '\t') || c == 0x7F) {
			int line = p->line, col = p->col;
			free(buf);
			return perr_at(p, line, col, "control character \\x%02X in string", c);
		} else {
			seq = utf8_seq_len(p->s + p->pos, p->len - p->pos);
			if (seq == 0) {
				int line = p->line, col = p->col;
				free(buf);
				return perr_at(p, line, col, "%s", "invalid UTF-8 in string");
			}
			memcpy(out, p->s + p->pos, seq);
			nout = seq;
		}
		if (n + nout > FILTER_STRING_MAX) {
			free(buf);
			return perr(p, "string longer than %d bytes", FILTER_STRING_MAX);
		}
		memcpy(buf + n, out, nout);
		n += nout;
		for (size_t i = 0; i < seq; i++)
			lex_advance(p);
	}
	buf[n] = '\0';
	p->tok.kind = TOK_STRING;
	p->tok.text = buf;
	p->tok.len = n;
	return 0;
}

/* Reads the next token into p->tok, freeing the previous one. */
static int next(struct parser *p)
{
	free(p->tok.text);
	p->tok.text = NULL;
	p->tok.len = 0;
	for (;;) {
		while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
					   p->s[p->pos] == '\r' || p->s[p->pos] == '\n'))
			lex_advance(p);
		if (p->pos < p->len && p->s[p->pos] == '#') {
			while (p->pos < p->len && p->s[p->pos] != '\n')
				lex_advance(p);
			continue;
		}
		break;
	}
	p->tok.line = p->line;
	p->tok.col = p->col;
	if (p->pos >= p->len) {
		p->tok.kind = TOK_EOF;
		return 0;
	}
	unsigned char c = p->s[p->pos];
	unsigned char c2 = p->pos + 1 < p->len ? p->s[p->pos + 1] : 0;
	if (c == '"')
		return lex_string(p);
	if (is_ident_start(c) || (c >= '0' && c <= '9')) {
		size_t start = p->pos;
		p->tok.kind = is_ident_start(c) ? TOK_IDENT : TOK_NUMBER;
		while (p->pos < p->len && is_ident_char(p->s[p->pos]) &&
		       !(p->tok.kind == TOK_NUMBER && p->s[p->pos] == '-'))
			lex_advance(p);
		p->tok.len = p->pos - start;
		p->tok.text = xstrndup((const char *)p->s + start, p->tok.len);
		return 0;
	}
	static const struct {
		char a, b;
		enum tok_kind kind;
	} punct[] = {
	    {'=', '=', TOK_EQ},	  {'!', '=', TOK_NE},	{'<', '=', TOK_LE},   {'>', '=', TOK_GE},
	    {'<', 0, TOK_LT},	  {'>', 0, TOK_GT},	{'{', 0, TOK_LBRACE}, {'}', 0, TOK_RBRACE},
	    {'(', 0, TOK_LPAREN}, {')', 0, TOK_RPAREN}, {':', 0, TOK_COLON},  {';', 0, TOK_SEMI},
	    {',', 0, TOK_COMMA},
	};
	for (size_t i = 0; i < sizeof(punct) / sizeof(punct[0]); i++) {
		if (c == (unsigned char)punct[i].a && (punct[i].b == 0 || c2 == punct[i].b)) {
			lex_advance(p);
			if (punct[i].b)
				lex_advance(p);
			p->tok.kind = punct[i].kind;
			return 0;
		}
	}
	if (c == '=')
		return perr(p, "%s", "unexpected '=' (comparisons are written '==' or '!=')");
	if (c < 0x20 || c >= 0x7F) {
		size_t seq = utf8_seq_len(p->s + p->pos, p->len - p->pos);
		if (c >= 0x80 && seq > 0)
			return perr(p, "unexpected character '%.*s'", (int)seq,
				    (const char *)p->s + p->pos);
		return perr(p, "unexpected byte \\x%02X", c);
	}
	return perr(p, "unexpected character '%c'", c);
}

static bool tok_is(const struct parser *p, const char *word)
{
	return p->tok.kind == TOK_IDENT && strcmp(p->tok.text, word) == 0;
}

/* Takes the current token's text (the caller owns it unless this fails) and moves on. */
static int take_text(struct parser *p, char **out)
{
	char *text = p->tok.text;
	p->tok.text = NULL;
	int rc = next(p);
	if (rc < 0) {
		free(text);
		return rc;
	}
	*out = text;
	return 0;
}

/* Expects a token of the given kind; "what" names it in the message. */
static int expect(struct parser *p, enum tok_kind kind, const char *what)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	if (p->tok.kind != kind)
		return perr(p, "expected %s, got %s", what, tok_describe(&p->tok, d, sizeof(d)));
	return next(p);
}

/* Expects a string literal and takes it. */
static int expect_string(struct parser *p, const char *after, char **out, int *line, int *col)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	if (p->tok.kind != TOK_STRING)
		return perr(p, "expected a string %s, got %s", after,
			    tok_describe(&p->tok, d, sizeof(d)));
	if (line) {
		*line = p->tok.line;
		*col = p->tok.col;
	}
	return take_text(p, out);
}

/* ---- semantic checks ----------------------------------------------------------- */

/* A header field name: printable ASCII without ':' or space (RFC 5322 ftext). */
static bool header_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 200)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return false;
	return true;
}

/* "host:port", "[v6]:port": a host without spaces or controls and a port 1-65535. */
static bool mailhost_ok(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close == s + 1 || close[1] != ':')
			return false;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return false;
	}
	for (const char *h = s; h < colon; h++)
		if ((unsigned char)*h <= ' ' || *h == '/' || *h == 0x7F)
			return false;
	const char *d = colon + 1;
	if (*d == '\0' || strlen(d) > 5)
		return false;
	long port = 0;
	for (; *d; d++) {
		if (*d < '0' || *d > '9')
			return false;
		port = port * 10 + (*d - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Skips a bracket expression starting at re[i] == '['; returns the index of its ']'. */
static size_t skip_bracket(const char *re, size_t i)
{
	/* ']' first (after an optional '^') is a member; [:class:] [=e=] [.c.] hold a ']'. */
	i++;
	if (re[i] == '^')
		i++;
	if (re[i] == ']')
		i++;
	while (re[i] && re[i] != ']') {
		if (re[i] == '[' && (re[i + 1] == ':' || re[i + 1] == '=' || re[i + 1] == '.')) {
			char delim = re[i + 1];
			i += 2;
			while (re[i] && !(re[i] == delim && re[i + 1] == ']'))
				i++;
			if (re[i])
				i += 2;
			continue;
		}
		i++;
	}
	return i;
}

/*
 * Reads a repetition count "{n}", "{n,}" or "{n,m}" at re[i] == '{'; returns how
 * many copies of the repeated element the compiler makes, and sets *end to the
 * '}'. Returns 0 when the text is not a count (regcomp then judges it).
 */
static uint64_t repeat_count(const char *re, size_t i, size_t *end)
{
	uint64_t lo = 0, hi;
	size_t j = i + 1;
	bool digits = false;
	while (re[j] >= '0' && re[j] <= '9' && lo <= 100000) {
		lo = lo * 10 + (uint64_t)(re[j++] - '0');
		digits = true;
	}
	hi = lo;
	if (re[j] == ',') {
		j++;
		if (re[j] >= '0' && re[j] <= '9') {
			hi = 0;
			while (re[j] >= '0' && re[j] <= '9' && hi <= 100000)
				hi = hi * 10 + (uint64_t)(re[j++] - '0');
		} else {
			hi = lo + 1; /* {n,} is n copies and a star */
		}
	}
	if (!digits || re[j] != '}')
		return 0;
	*end = j;
	return hi > lo ? (hi > 0 ? hi : 1) : (lo > 0 ? lo : 1);
}

/*
 * Refuses what regcomp would accept but what makes compiling or matching
 * unbounded: back-references (a backtracking search), and patterns that grow too
 * large once repetitions are expanded. regcomp copies the element before "+" once
 * and the element before "{n,m}" m times, so stacked or nested repetitions
 * ("x+++++", "((a+)+)+", "(a{100}){100}") multiply; this estimates the expanded
 * size the same way (a stack of groups, no recursion) and refuses it above
 * FILTER_REGEX_SIZE_MAX. Sets *why on refusal.
 */
static bool pattern_ok(const char *re, const char **why)
{
	struct group_size {
		uint64_t alternatives; /* the finished alternatives of the group */
		uint64_t sequence;     /* the current alternative, but its last element */
		uint64_t last;	       /* the last element, which a quantifier repeats */
	} stack[FILTER_STRING_MAX + 2];
	size_t depth = 0;
	memset(&stack[0], 0, sizeof(stack[0]));
	for (size_t i = 0; re[i]; i++) {
		struct group_size *g = &stack[depth];
		uint64_t atom = 1, factor = 0; /* factor > 0: a quantifier */
		size_t end = i;
		switch (re[i]) {
		case '\\':
			if (re[i + 1] >= '1' && re[i + 1] <= '9') {
				*why = "back-references (\\1 ... \\9) are not supported";
				return false;
			}
			if (re[i + 1] != '\0')
				i++;
			break;
		case '[':
			i = skip_bracket(re, i);
			if (re[i] == '\0')
				return true; /* unbalanced: regcomp says so */
			break;
		case '(':
			if (depth + 1 >= sizeof(stack) / sizeof(stack[0]))
				return true; /* cannot happen: a string is shorter */
			memset(&stack[++depth], 0, sizeof(stack[0]));
			continue;
		case ')':
			if (depth == 0)
				break; /* a literal or an error: regcomp judges it */
			atom = g->alternatives + g->sequence + g->last;
			g = &stack[--depth];
			break;
		case '|':
			g->alternatives += g->sequence + g->last;
			g->sequence = g->last = 0;
			continue;
		case '*':
		case '?':
			factor = 1;
			break;
		case '+':
			factor = 2;
			break;
		case '{':
			factor = repeat_count(re, i, &end);
			i = factor > 0 ? end : i;
			break;
		default:
			break;
		}
		if (factor > 0) {
			g->last *= factor; /* repeats the last element in place */
		} else {
			g->sequence += g->last;
			g->last = atom;
		}
		if (g->last > FILTER_REGEX_SIZE_MAX ||
		    g->alternatives + g->sequence + g->last > FILTER_REGEX_SIZE_MAX) {
			*why = "pattern too large once its repetitions are expanded (at most "
			       "5000 elements)";
			return false;
		}
	}
	return true;
}

/* "Unbounded" for pattern_max_match; the sums saturate there. */
#define MATCH_LEN_INF ((uint64_t)1 << 40)

static uint64_t len_add(uint64_t a, uint64_t b)
{
	return a + b >= MATCH_LEN_INF ? MATCH_LEN_INF : a + b;
}

static uint64_t len_mul(uint64_t a, uint64_t b)
{
	if (a == 0 || b == 0)
		return 0;
	return a >= MATCH_LEN_INF / b ? MATCH_LEN_INF : a * b;
}

/*
 * The upper bound of a repetition "{n}", "{n,}" or "{n,m}" at re[i] == '{':
 * MATCH_LEN_INF for "{n,}"; sets *end to the '}'. Returns 0 when the text is not
 * a count (regcomp then takes "{" as itself or refuses it).
 */
static uint64_t repeat_upper(const char *re, size_t i, size_t *end, bool *is_count)
{
	size_t j = i + 1;
	uint64_t lo = 0, hi;
	bool digits = false;
	*is_count = false;
	while (re[j] >= '0' && re[j] <= '9') {
		lo = len_add(len_mul(lo, 10), (uint64_t)(re[j++] - '0'));
		digits = true;
	}
	hi = lo;
	if (re[j] == ',') {
		j++;
		if (re[j] >= '0' && re[j] <= '9') {
			hi = 0;
			while (re[j] >= '0' && re[j] <= '9')
				hi = len_add(len_mul(hi, 10), (uint64_t)(re[j++] - '0'));
		} else {
			hi = MATCH_LEN_INF;
		}
	}
	if (!digits || re[j] != '}')
		return 0;
	*end = j;
	*is_count = true;
	return hi;
}

/*
 * The most bytes one match of the (valid, "(?i)"-less) pattern re can span, or
 * SIZE_MAX when it is unbounded ("*", "+", "{n,}"). Every character position
 * counts as 4 bytes, the longest UTF-8 character, because "." and bracket
 * expressions match any character and case folding may change a letter's length;
 * over-counting is safe (it only makes a long value undecided more often).
 */
static size_t pattern_max_match(const char *re)
{
	struct group_len {
		uint64_t best;	   /* the longest finished alternative */
		uint64_t sequence; /* the current alternative, but its last element */
		uint64_t last;	   /* the last element, which a quantifier repeats */
	} stack[FILTER_STRING_MAX + 2];
	size_t depth = 0;
	memset(&stack[0], 0, sizeof(stack[0]));
	for (size_t i = 0; re[i]; i++) {
		struct group_len *g = &stack[depth];
		unsigned char c = (unsigned char)re[i];
		uint64_t atom = 4;
		size_t end = i;
		bool is_count = false;
		uint64_t upper;
		if ((c & 0xC0) == 0x80)
			continue; /* the rest of a multi-byte character, already counted */
		switch (c) {
		case '\\':
			if (re[i + 1] != '\0')
				i++;
			while ((re[i + 1] & 0xC0) == 0x80)
				i++;
			break;
		case '[':
			i = skip_bracket(re, i);
			if (re[i] == '\0')
				return SIZE_MAX;
			break;
		case '(':
			if (depth + 1 >= sizeof(stack) / sizeof(stack[0]))
				return SIZE_MAX;
			memset(&stack[++depth], 0, sizeof(stack[0]));
			continue;
		case ')':
			if (depth == 0)
				break;
			atom = len_add(g->sequence, g->last);
			atom = atom > g->best ? atom : g->best;
			g = &stack[--depth];
			break;
		case '|':
			upper = len_add(g->sequence, g->last);
			g->best = upper > g->best ? upper : g->best;
			g->sequence = g->last = 0;
			continue;
		case '^':
		case '$':
			atom = 0;
			break;
		case '*':
		case '+':
			g->last = len_mul(g->last, MATCH_LEN_INF);
			continue;
		case '?':
			continue;
		case '{':
			upper = repeat_upper(re, i, &end, &is_count);
			if (is_count) {
				g->last = len_mul(g->last, upper);
				i = end;
				continue;
			}
			break;
		default:
			break;
		}
		g->sequence = len_add(g->sequence, g->last);
		g->last = atom;
	}
	/* Unclosed groups (regcomp refused those already) count as closed. */
	uint64_t total = 0;
	while (true) {
		struct group_len *g = &stack[depth];
		uint64_t alt = len_add(g->sequence, g->last);
		alt = alt > g->best ? alt : g->best;
		total = len_add(total, alt);
		if (depth == 0)
			break;
		depth--;
	}
	return total >= MATCH_LEN_INF || total > SIZE_MAX / 2 ? SIZE_MAX : (size_t)total;
}

/* Compiles pattern (with an optional leading "(?i)") into c->re. */
static int compile_regex(struct parser *p, struct cond *c, const char *pattern, int line, int col)
{
	int flags = REG_EXTENDED | REG_NOSUB;
	const char *why = NULL;
	if (strncmp(pattern, "(?i)", 4) == 0) {
		flags |= REG_ICASE;
		pattern += 4;
	}
	if (p->nregex >= FILTER_REGEX_MAX)
		return perr_at(p, line, col, "too many regular expressions (at most %d per file)",
			       FILTER_REGEX_MAX);
	if (!pattern_ok(pattern, &why))
		return perr_at(p, line, col, "bad regular expression: %s", why);
	locale_t old = filter_locale_enter();
	int rc = regcomp(&c->re, pattern, flags);
	filter_locale_leave(old);
	if (rc != 0) {
		char msg[256];
		regerror(rc, &c->re, msg, sizeof(msg));
		return perr_at(p, line, col, "bad regular expression: %s", msg);
	}
	c->has_regex = true;
	c->max_match = pattern_max_match(pattern);
	p->nregex++;
	return 0;
}

/* ---- conditions ---------------------------------------------------------------- */

static int parse_or(struct parser *p, struct cond **out);

static struct cond *cond_new(enum cond_kind kind)
{
	struct cond *c = xcalloc(1, sizeof(*c));
	c->kind = kind;
	return c;
}

static void cond_add_kid(struct cond *c, struct cond *kid)
{
	c->kids = xreallocarray(c->kids, c->nkids + 1, sizeof(*c->kids));
	c->kids[c->nkids++] = kid;
}

/* Parses "== STRING" or "!= STRING" after a string field and compiles the pattern. */
static int parse_string_compare(struct parser *p, struct cond *c, const char *field)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	char *pattern = NULL;
	int line = 0, col = 0, rc;
	if (p->tok.kind != TOK_EQ && p->tok.kind != TOK_NE)
		return perr(p, "expected '==' or '!=' after '%s', got %s", field,
			    tok_describe(&p->tok, d, sizeof(d)));
	c->negate = p->tok.kind == TOK_NE;
	if ((rc = next(p)) < 0)
		return rc;
	if ((rc = expect_string(p, "(a regular expression)", &pattern, &line, &col)) < 0)
		goto fail;
	rc = compile_regex(p, c, pattern, line, col);
fail:
	free(pattern);
	return rc;
}

/* Parses "( STRING )" after a condition or action name. */
static int parse_paren_string(struct parser *p, const char *what, char **out, int *line, int *col)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	int rc;
	if (p->tok.kind != TOK_LPAREN)
		return perr(p, "expected '(' after '%s', got %s", what,
			    tok_describe(&p->tok, d, sizeof(d)));
	if ((rc = next(p)) < 0)
		return rc;
	if ((rc = expect_string(p, "in '(...)'", out, line, col)) < 0)
		return rc;
	if (p->tok.kind != TOK_RPAREN) {
		free(*out);
		*out = NULL;
		return perr(p, "expected ')' after the argument of '%s', got %s", what,
			    tok_describe(&p->tok, d, sizeof(d)));
	}
	return next(p);
}

/* Reads a size: digits with an optional K, M or G (1024-based). */
static int parse_size_value(struct parser *p, uint64_t *out)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	if (p->tok.kind != TOK_NUMBER)
		return perr(p, "expected a size (e.g. 512K, 10M) after the comparison, got %s",
			    tok_describe(&p->tok, d, sizeof(d)));
	const char *s = p->tok.text;
	uint64_t n = 0, mult = 1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return perr(p, "%s", "size too large");
		n = n * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\0') {
		if (s[1] == '\0' && (*s == 'k' || *s == 'K'))
			mult = 1024;
		else if (s[1] == '\0' && (*s == 'm' || *s == 'M'))
			mult = 1024 * 1024;
		else if (s[1] == '\0' && (*s == 'g' || *s == 'G'))
			mult = 1024 * 1024 * 1024;
		else {
			char ex[FILTER_EXCERPT_MAX * 4 + 8];
			excerpt(ex, sizeof(ex), s, strlen(s));
			return perr(p, "bad size suffix '%s' (use K, M or G)", ex);
		}
	}
	if (n > UINT64_MAX / mult)
		return perr(p, "%s", "size too large");
	*out = n * mult;
	return next(p);
}

static int parse_condition(struct parser *p, struct cond **out)
{
	static const struct {
		const char *word;
		enum cond_kind kind;
	} string_fields[] = {
	    {"subject", COND_SUBJECT},
	    {"attachment-filename", COND_ATTACHMENT_FILENAME},
	    {"attachment-type", COND_ATTACHMENT_TYPE},
	    {"mail-from", COND_MAIL_FROM},
	    {"rcpt-to", COND_RCPT_TO},
	};
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	struct cond *c = NULL;
	char *arg = NULL;
	int line = 0, col = 0, rc;

	if (p->tok.kind != TOK_IDENT)
		return perr(p, "expected a condition, got %s", tok_describe(&p->tok, d, sizeof(d)));
	for (size_t i = 0; i < sizeof(string_fields) / sizeof(string_fields[0]); i++) {
		if (tok_is(p, string_fields[i].word)) {
			c = cond_new(string_fields[i].kind);
			if ((rc = next(p)) < 0)
				goto fail;
			if ((rc = parse_string_compare(p, c, string_fields[i].word)) < 0)
				goto fail;
			*out = c;
			return 0;
		}
	}
	if (tok_is(p, "remote-ip")) {
		if ((rc = next(p)) < 0)
			return rc;
		if (tok_is(p, "in")) {
			c = cond_new(COND_REMOTE_IP_IN);
			char *why = NULL;
			if ((rc = next(p)) < 0)
				goto fail;
			if ((rc = expect_string(p, "(a list of networks) after 'in'", &arg, &line,
						&col)) < 0)
				goto fail;
			if (acl_parse(arg, &c->acl, &why) < 0) {
				rc = perr_at(p, line, col, "bad network list: %s",
					     why ? why : "unreadable");
				free(why);
				goto fail;
			}
			if (acl_count(c->acl) == 0) {
				rc = perr_at(p, line, col, "%s", "empty network list");
				goto fail;
			}
		} else {
			c = cond_new(COND_REMOTE_IP);
			if ((rc = parse_string_compare(p, c, "remote-ip")) < 0)
				goto fail;
		}
	} else if (tok_is(p, "header")) {
		c = cond_new(COND_HEADER);
		if ((rc = next(p)) < 0)
			goto fail;
		if ((rc = parse_paren_string(p, "header", &c->header, &line, &col)) < 0)
			goto fail;
		if (!header_name_ok(c->header)) {
			char ex[FILTER_EXCERPT_MAX * 4 + 8];
			excerpt(ex, sizeof(ex), c->header, strlen(c->header));
			rc = perr_at(p, line, col, "bad header name \"%s\"", ex);
			goto fail;
		}
		if ((rc = parse_string_compare(p, c, "header(...)")) < 0)
			goto fail;
	} else if (tok_is(p, "body-contains")) {
		c = cond_new(COND_BODY_CONTAINS);
		if ((rc = next(p)) < 0)
			goto fail;
		if ((rc = parse_paren_string(p, "body-contains", &c->needle, &line, &col)) < 0)
			goto fail;
		c->needle_len = strlen(c->needle);
		if (c->needle_len == 0) {
			rc = perr_at(p, line, col, "%s", "body-contains needs a non-empty string");
			goto fail;
		}
		for (size_t i = 0; i < c->needle_len; i++)
			if (c->needle[i] >= 'A' && c->needle[i] <= 'Z')
				c->needle[i] = (char)(c->needle[i] - 'A' + 'a');
	} else if (tok_is(p, "size")) {
		c = cond_new(COND_SIZE);
		if ((rc = next(p)) < 0)
			goto fail;
		switch (p->tok.kind) {
		case TOK_EQ:
			c->op = SIZE_EQ;
			break;
		case TOK_NE:
			c->op = SIZE_NE;
			break;
		case TOK_LT:
			c->op = SIZE_LT;
			break;
		case TOK_LE:
			c->op = SIZE_LE;
			break;
		case TOK_GT:
			c->op = SIZE_GT;
			break;
		case TOK_GE:
			c->op = SIZE_GE;
			break;
		default:
			rc = perr(p, "expected a comparison (== != < <= > >=) after 'size', got %s",
				  tok_describe(&p->tok, d, sizeof(d)));
			goto fail;
		}
		if ((rc = next(p)) < 0)
			goto fail;
		if ((rc = parse_size_value(p, &c->size)) < 0)
			goto fail;
	} else {
		return perr(p, "unknown condition %s", tok_describe(&p->tok, d, sizeof(d)));
	}
	free(arg);
	*out = c;
	return 0;
fail:
	free(arg);
	cond_free(c);
	return rc;
}

/* Enters one level of nesting ("(" or "not"); refuses past FILTER_NESTING_MAX. */
static int nest_enter(struct parser *p)
{
	if (p->depth >= FILTER_NESTING_MAX)
		return perr(p, "conditions nested deeper than %d levels", FILTER_NESTING_MAX);
	p->depth++;
	return 0;
}

static int parse_not(struct parser *p, struct cond **out)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	struct cond *kid = NULL;
	int rc;
	if (tok_is(p, "not")) {
		if ((rc = nest_enter(p)) < 0)
			return rc;
		if ((rc = next(p)) < 0)
			return rc;
		if ((rc = parse_not(p, &kid)) < 0)
			return rc;
		p->depth--;
		struct cond *c = cond_new(COND_NOT);
		cond_add_kid(c, kid);
		*out = c;
		return 0;
	}
	if (p->tok.kind == TOK_LPAREN) {
		if ((rc = nest_enter(p)) < 0)
			return rc;
		if ((rc = next(p)) < 0)
			return rc;
		if ((rc = parse_or(p, &kid)) < 0)
			return rc;
		if (p->tok.kind != TOK_RPAREN) {
			rc = perr(p, "expected ')' or 'and'/'or', got %s",
				  tok_describe(&p->tok, d, sizeof(d)));
			cond_free(kid);
			return rc;
		}
		if ((rc = next(p)) < 0) {
			cond_free(kid);
			return rc;
		}
		p->depth--;
		*out = kid;
		return 0;
	}
	return parse_condition(p, out);
}

/* Parses a chain of sub-expressions joined by word ("and" or "or") into one node. */
static int parse_chain(struct parser *p, const char *word, enum cond_kind kind,
		       int (*sub)(struct parser *, struct cond **), struct cond **out)
{
	struct cond *first = NULL, *chain = NULL, *kid = NULL;
	int rc;
	if ((rc = sub(p, &first)) < 0)
		return rc;
	while (tok_is(p, word)) {
		if (chain == NULL) {
			chain = cond_new(kind);
			cond_add_kid(chain, first);
			first = NULL;
		}
		if ((rc = next(p)) < 0)
			goto fail;
		if ((rc = sub(p, &kid)) < 0)
			goto fail;
		cond_add_kid(chain, kid);
	}
	*out = chain ? chain : first;
	return 0;
fail:
	cond_free(first);
	cond_free(chain);
	return rc;
}

static int parse_and(struct parser *p, struct cond **out)
{
	return parse_chain(p, "and", COND_AND, parse_not, out);
}

static int parse_or(struct parser *p, struct cond **out)
{
	return parse_chain(p, "or", COND_OR, parse_and, out);
}

/* ---- actions ------------------------------------------------------------------- */

static const struct {
	const char *word;
	enum filter_action_kind kind;
	size_t nargs;
} action_words[] = {
    {"quarantine", FILTER_ACTION_QUARANTINE, 1},
    {"drop", FILTER_ACTION_DROP, 0},
    {"bounce", FILTER_ACTION_BOUNCE, 0},
    {"deliver", FILTER_ACTION_DELIVER, 0},
    {"insert-header", FILTER_ACTION_INSERT_HEADER, 2},
    {"strip-header", FILTER_ACTION_STRIP_HEADER, 1},
    {"alt-mailhost", FILTER_ACTION_ALT_MAILHOST, 1},
};

/* Checks the arguments of a; line/col point at the first argument. */
static int check_action_args(struct parser *p, const struct action *a, const int *line,
			     const int *col)
{
	char ex[FILTER_EXCERPT_MAX * 4 + 8];
	switch (a->kind) {
	case FILTER_ACTION_QUARANTINE:
		if (a->arg[0] == '\0' || strlen(a->arg) > FILTER_NAME_MAX)
			return perr_at(p, line[0], col[0],
				       "quarantine name must be 1 to %d bytes long",
				       FILTER_NAME_MAX);
		break;
	case FILTER_ACTION_INSERT_HEADER:
		if (strpbrk(a->arg2, "\r\n") != NULL)
			return perr_at(p, line[1], col[1], "%s",
				       "header value must not contain line breaks");
		/* The name is checked like strip-header's. */
		__attribute__((fallthrough));
	case FILTER_ACTION_STRIP_HEADER:
		if (!header_name_ok(a->arg)) {
			excerpt(ex, sizeof(ex), a->arg, strlen(a->arg));
			return perr_at(p, line[0], col[0], "bad header name \"%s\"", ex);
		}
		break;
	case FILTER_ACTION_ALT_MAILHOST:
		if (!mailhost_ok(a->arg)) {
			excerpt(ex, sizeof(ex), a->arg, strlen(a->arg));
			return perr_at(p, line[0], col[0],
				       "bad mail host \"%s\" (expected host:port or [v6]:port)",
				       ex);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int parse_action(struct parser *p, struct action *out)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	char *args[2] = {NULL, NULL};
	int lines[2] = {0, 0}, cols[2] = {0, 0};
	size_t nargs = 0, want = 0, w;
	int line = p->tok.line, col = p->tok.col, rc;
	const char *word = NULL;

	if (p->tok.kind != TOK_IDENT)
		return perr(p, "expected an action or '}', got %s",
			    tok_describe(&p->tok, d, sizeof(d)));
	for (w = 0; w < sizeof(action_words) / sizeof(action_words[0]); w++)
		if (tok_is(p, action_words[w].word))
			break;
	if (w == sizeof(action_words) / sizeof(action_words[0]))
		return perr(p, "unknown action %s", tok_describe(&p->tok, d, sizeof(d)));
	word = action_words[w].word;
	want = action_words[w].nargs;
	if ((rc = next(p)) < 0)
		return rc;
	if (p->tok.kind == TOK_LPAREN) {
		if ((rc = next(p)) < 0)
			return rc;
		while (p->tok.kind != TOK_RPAREN) {
			if (nargs > 0 && (rc = expect(p, TOK_COMMA, "',' or ')'")) < 0)
				goto fail;
			char *s = NULL;
			int l = 0, c = 0;
			if ((rc = expect_string(p, "as an argument", &s, &l, &c)) < 0)
				goto fail;
			if (nargs < 2) {
				args[nargs] = s;
				lines[nargs] = l;
				cols[nargs] = c;
			} else {
				free(s);
			}
			nargs++;
		}
		if ((rc = next(p)) < 0)
			goto fail;
	}
	if (nargs != want) {
		rc = perr_at(p, line, col, "'%s' takes %zu argument%s, got %zu", word, want,
			     want == 1 ? "" : "s", nargs);
		goto fail;
	}
	out->kind = action_words[w].kind;
	out->arg = args[0];
	out->arg2 = args[1];
	if ((rc = check_action_args(p, out, lines, cols)) < 0) {
		out->arg = out->arg2 = NULL;
		goto fail;
	}
	return 0;
fail:
	free(args[0]);
	free(args[1]);
	return rc;
}

/* Parses "{ ACTION; ... }" into l. */
static int parse_block(struct parser *p, struct action_list *l, const char *after)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	const char *final_word = NULL;
	int rc;
	if (p->tok.kind != TOK_LBRACE)
		return perr(p, "expected '{' after %s, got %s", after,
			    tok_describe(&p->tok, d, sizeof(d)));
	if ((rc = next(p)) < 0)
		return rc;
	while (p->tok.kind != TOK_RBRACE) {
		struct action a = {0};
		int line = p->tok.line, col = p->tok.col;
		if (l->n >= FILTER_ACTIONS_MAX)
			return perr(p, "more than %d actions in one block", FILTER_ACTIONS_MAX);
		if ((rc = parse_action(p, &a)) < 0)
			return rc;
		l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
		l->v[l->n++] = a;
		if (filter_action_is_final(a.kind)) {
			if (final_word != NULL)
				return perr_at(p, line, col,
					       "a block takes only one final action ('%s' "
					       "already ends it)",
					       final_word);
			final_word = filter_action_name(a.kind);
		}
		if (p->tok.kind != TOK_SEMI)
			return perr(p, "expected ';' after '%s', got %s",
				    filter_action_name(a.kind),
				    tok_describe(&p->tok, d, sizeof(d)));
		if ((rc = next(p)) < 0)
			return rc;
	}
	return next(p);
}

/* ---- filters ------------------------------------------------------------------- */

static bool reserved_word(const char *s)
{
	static const char *const words[] = {"if", "else", "and", "or", "not", "in"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(s, words[i]) == 0)
			return true;
	return false;
}

static int parse_filter(struct parser *p)
{
	char d[FILTER_EXCERPT_MAX * 4 + 32];
	struct filter_set *fs = p->fs;
	int rc;
	if (p->tok.kind != TOK_IDENT)
		return perr(p, "expected a filter name, got %s",
			    tok_describe(&p->tok, d, sizeof(d)));
	if (reserved_word(p->tok.text))
		return perr(p, "'%s' is a reserved word, not a filter name", p->tok.text);
	if (p->tok.len > FILTER_NAME_MAX)
		return perr(p, "filter name longer than %d bytes", FILTER_NAME_MAX);
	for (size_t i = 0; i < fs->nfilters; i++)
		if (strcmp(fs->filters[i].name, p->tok.text) == 0)
			return perr(p, "duplicate filter name '%s' (first defined on line %d)",
				    p->tok.text, fs->filters[i].line);
	if (fs->nfilters >= FILTER_COUNT_MAX)
		return perr(p, "more than %d filters", FILTER_COUNT_MAX);

	/* The filter joins the set first, so one cleanup frees whatever was parsed. */
	fs->filters = xreallocarray(fs->filters, fs->nfilters + 1, sizeof(*fs->filters));
	struct filter *f = &fs->filters[fs->nfilters++];
	memset(f, 0, sizeof(*f));
	f->line = p->tok.line;
	if ((rc = take_text(p, &f->name)) < 0)
		return rc;
	if (p->tok.kind != TOK_COLON)
		return perr(p, "expected ':' after the filter name '%s', got %s", f->name,
			    tok_describe(&p->tok, d, sizeof(d)));
	if ((rc = next(p)) < 0)
		return rc;
	if (!tok_is(p, "if"))
		return perr(p, "expected 'if' after '%s:', got %s", f->name,
			    tok_describe(&p->tok, d, sizeof(d)));
	if ((rc = next(p)) < 0)
		return rc;
	p->depth = 0;
	if ((rc = parse_or(p, &f->cond)) < 0)
		return rc;
	if ((rc = parse_block(p, &f->then_actions, "the condition")) < 0)
		return rc;
	if (tok_is(p, "else")) {
		if ((rc = next(p)) < 0)
			return rc;
		if ((rc = parse_block(p, &f->else_actions, "'else'")) < 0)
			return rc;
	}
	return 0;
}

int filter_parse(const char *name, const char *text, size_t len, struct filter_set **out,
		 char **err)
{
	struct parser p = {0};
	int rc;
	*out = NULL;
	if (err)
		*err = NULL;
	p.name = name ? name : "(filters)";
	p.s = (const unsigned char *)(text ? text : "");
	p.len = text ? len : 0;
	p.line = 1;
	p.col = 1;
	p.fs = xcalloc(1, sizeof(*p.fs));
	if (p.len > FILTER_FILE_MAX) {
		rc = perr_at(&p, 1, 1, "file larger than %d bytes", FILTER_FILE_MAX);
		goto fail;
	}
	if (p.len >= 3 && memcmp(p.s, "\xEF\xBB\xBF", 3) == 0)
		p.pos = 3; /* a UTF-8 byte order mark */
	if ((rc = next(&p)) < 0)
		goto fail;
	while (p.tok.kind != TOK_EOF)
		if ((rc = parse_filter(&p)) < 0)
			goto fail;
	free(p.tok.text);
	*out = p.fs;
	return 0;
fail:
	free(p.tok.text);
	filter_set_free(p.fs);
	if (err)
		*err = p.err;
	else
		free(p.err);
	return rc;
}

int filter_load(const char *path, struct filter_set **out, char **err)
{
	char *buf = NULL;
	size_t n = 0;
	*out = NULL;
	if (err)
		*err = NULL;
	int rc = read_file(path, FILTER_FILE_MAX, &buf, &n);
	if (rc == -EFBIG) {
		/* Said as filter_parse says it of oversized text: at the file's start. */
		if (err)
			*err =
			    xasprintf("%s:1:1: file larger than %d bytes", path, FILTER_FILE_MAX);
		return -EINVAL;
	}
	if (rc < 0) {
		if (err)
			*err = xasprintf("%s: cannot read: %s", path, strerror(-rc));
		return rc;
	}
	rc = filter_parse(path, buf, n, out, err);
	free(buf);
	return rc;
}

int filter_set_check_quarantines(const struct filter_set *fs, bool (*ok)(const char *name),
				 const char **bad_name, const char **filter_name, int *line)
{
	for (size_t i = 0; i < fs->nfilters; i++) {
		const struct filter *f = &fs->filters[i];
		const struct action_list *lists[] = {&f->then_actions, &f->else_actions};
		for (size_t l = 0; l < 2; l++) {
			for (size_t k = 0; k < lists[l]->n; k++) {
				const struct action *a = &lists[l]->v[k];
				if (a->kind == FILTER_ACTION_QUARANTINE && !ok(a->arg)) {
					*bad_name = a->arg;
					*filter_name = f->name;
					*line = f->line;
					return -EINVAL;
				}
			}
		}
	}
	return 0;
}

void filter_set_each_quarantine(const struct filter_set *fs,
				void (*fn)(const char *name, void *arg), void *arg)
{
	for (size_t i = 0; i < fs->nfilters; i++) {
		const struct filter *f = &fs->filters[i];
		const struct action_list *lists[] = {&f->then_actions, &f->else_actions};
		for (size_t l = 0; l < 2; l++)
			for (size_t k = 0; k < lists[l]->n; k++)
				if (lists[l]->v[k].kind == FILTER_ACTION_QUARANTINE)
					fn(lists[l]->v[k].arg, arg);
	}
}

/* The longest version text of an outbreak rules file: it is logged and shown. */
#define FILTER_VERSION_MAX 64

/*
 * Finds the version line of an outbreak rules file in buf (the first line that is
 * neither blank nor a comment): "version TEXT". Blanks it out in place, so that
 * the filter parser sees the rules at their own lines and columns. 0 with
 * *version (caller frees), or -EINVAL with *err "FILE:LINE:COLUMN: message".
 */
static int filter_take_version(const char *path, char *buf, size_t n, char **version, char **err)
{
	size_t off = 0;
	unsigned line = 1;
	while (off < n) {
		size_t end = off;
		while (end < n && buf[end] != '\n')
			end++;
		size_t i = off;
		while (i < end && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r'))
			i++;
		if (i == end || buf[i] == '#') {
			off = end + 1;
			line++;
			continue;
		}
		size_t col = i - off + 1;
		if (end - i < 8 || strncmp(buf + i, "version", 7) != 0 ||
		    (buf[i + 7] != ' ' && buf[i + 7] != '\t')) {
			*err = xasprintf("%s:%u:%zu: expected 'version TEXT' before the first rule",
					 path, line, col);
			return -EINVAL;
		}
		size_t v = i + 7;
		while (v < end && (buf[v] == ' ' || buf[v] == '\t'))
			v++;
		size_t ve = v;
		while (ve < end && buf[ve] > ' ' && buf[ve] < 0x7f && buf[ve] != '#')
			ve++;
		size_t rest = ve;
		while (rest < end && (buf[rest] == ' ' || buf[rest] == '\t' || buf[rest] == '\r'))
			rest++;
		if (ve == v || ve - v > FILTER_VERSION_MAX || (rest < end && buf[rest] != '#')) {
			*err = xasprintf("%s:%u:%zu: the version is 1 to %d printable ASCII "
					 "characters without blanks",
					 path, line, v - off + 1, FILTER_VERSION_MAX);
			return -EINVAL;
		}
		*version = xstrndup(buf + v, ve - v);
		memset(buf + off, ' ', end - off);
		return 0;
	}
	*err = xasprintf("%s:%u:1: expected 'version TEXT' before the first rule", path, line);
	return -EINVAL;
}

int filter_load_outbreak(const char *path, struct filter_set **out, char **version, char **err)
{
	char *buf = NULL;
	size_t n = 0;
	*out = NULL;
	*version = NULL;
	*err = NULL;
	int rc = read_file(path, FILTER_FILE_MAX, &buf, &n);
	if (rc == -EFBIG) {
		*err = xasprintf("%s:1:1: file larger than %d bytes", path, FILTER_FILE_MAX);
		return -EINVAL;
	}
	if (rc < 0) {
		*err = xasprintf("%s: cannot read: %s", path, strerror(-rc));
		return rc;
	}
	rc = filter_take_version(path, buf, n, version, err);
	if (rc == 0)
		rc = filter_parse(path, buf, n, out, err);
	if (rc < 0) {
		free(*version);
		*version = NULL;
	}
	free(buf);
	return rc;
}

/* ---- evaluation ---------------------------------------------------------------- */

/* The value of a condition: Kleene's three-valued logic. */
enum tri { TRI_FALSE = 0, TRI_TRUE = 1, TRI_UNDECIDED = 2 };

static enum tri tri_not(enum tri t)
{
	return t == TRI_UNDECIDED ? t : (t == TRI_TRUE ? TRI_FALSE : TRI_TRUE);
}

struct eval_ctx {
	const struct filter_input *in;
	bool body_found;
	size_t body_off; /* where the raw body starts; in->len when there is none */
	bool texts_read;
	bool texts_incomplete; /* text parts beyond the walk's limits were left out */
	char **texts;	       /* decoded text parts, UTF-8 */
	size_t *text_lens;
	size_t ntexts, text_total;
	uint64_t match_cost; /* spent of FILTER_MATCH_BUDGET */
	bool budget_spent;
	const char *why; /* the first reason a condition was undecided */
};

static enum tri undecided(struct eval_ctx *x, const char *why)
{
	if (x->why == NULL)
		x->why = why;
	return TRI_UNDECIDED;
}

/* Charges one regexec over n bytes to the budget; false when it cannot be afforded. */
static bool budget_take(struct eval_ctx *x, size_t n)
{
	uint64_t cost = (uint64_t)(n + 16) * (n + 16);
	if (x->budget_spent || x->match_cost + cost > FILTER_MATCH_BUDGET) {
		x->budget_spent = true;
		return false;
	}
	x->match_cost += cost;
	return true;
}

static bool utf8_continuation(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

/*
 * Matches the pattern of c against the value s. A value up to
 * FILTER_MATCH_TEXT_MAX bytes is matched whole; a longer one window by window
 * (see the top of this file). Undecided when the budget is spent, or when no
 * window matched and a match of the pattern could be longer than the overlap.
 */
static enum tri regex_match(struct eval_ctx *x, const struct cond *c, const char *s)
{
	if (s == NULL)
		s = "";
	size_t n = strlen(s);
	if (n <= FILTER_MATCH_TEXT_MAX) {
		if (!budget_take(x, n))
			return undecided(x, "match budget spent");
		return regexec(&c->re, s, 0, NULL, 0) == 0 ? TRI_TRUE : TRI_FALSE;
	}
	size_t start = 0;
	for (;;) {
		size_t end = start + FILTER_MATCH_TEXT_MAX;
		if (end >= n) {
			end = n;
		} else {
			/* Windows end and start on character boundaries for the UTF-8 matcher. */
			while (end > start + 1 && utf8_continuation((unsigned char)s[end]))
				end--;
		}
		if (!budget_take(x, end - start))
			return undecided(x, "match budget spent");
		/* In place: the matcher sees the real neighbours of the window. */
		regmatch_t range = {.rm_so = (regoff_t)start, .rm_eo = (regoff_t)end};
		int eflags = REG_STARTEND | (end < n ? REG_NOTEOL : 0);
		if (regexec(&c->re, s, 1, &range, eflags) == 0)
			return TRI_TRUE;
		if (end == n)
			break;
		size_t next = start + FILTER_MATCH_WINDOW_STEP;
		if (next + FILTER_MATCH_TEXT_MAX > n)
			next = n - FILTER_MATCH_TEXT_MAX; /* the last window ends at the end */
		while (next < n && utf8_continuation((unsigned char)s[next]))
			next++;
		start = next > start ? next : start + 1;
	}
	if (c->max_match <= FILTER_MATCH_WINDOW_SURE)
		return TRI_FALSE;
	return undecided(x, "value too long for a pattern without a bounded match length");
}

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * True when the lower-cased needle occurs in hay, ASCII letters compared without
 * case. Folds the haystack a chunk at a time (overlapping by the needle's length
 * less one), so it needs no copy of the body and stays linear (memmem).
 */
static bool contains_folded(const unsigned char *hay, size_t len, const char *needle, size_t nlen)
{
	if (len > FILTER_BODY_SCAN_MAX)
		len = FILTER_BODY_SCAN_MAX;
	if (nlen == 0 || len < nlen)
		return nlen == 0;
	unsigned char *buf = xmalloc(FILTER_SCAN_CHUNK + nlen);
	bool found = false;
	size_t pos = 0;
	while (pos < len && !found) {
		size_t n = len - pos;
		if (n > FILTER_SCAN_CHUNK + nlen - 1)
			n = FILTER_SCAN_CHUNK + nlen - 1;
		if (n < nlen)
			break;
		for (size_t i = 0; i < n; i++)
			buf[i] = fold(hay[pos + i]);
		found = memmem(buf, n, needle, nlen) != NULL;
		pos += n - (nlen - 1);
	}
	free(buf);
	return found;
}

/* Finds the first empty line; the raw body starts after it. */
static void find_body(struct eval_ctx *x)
{
	const unsigned char *d = x->in->data;
	size_t len = d ? x->in->len : 0, pos = 0;
	x->body_found = true;
	x->body_off = len;
	while (pos < len) {
		if (d[pos] == '\n') {
			x->body_off = pos + 1;
			return;
		}
		if (d[pos] == '\r' && pos + 1 < len && d[pos + 1] == '\n') {
			x->body_off = pos + 2;
			return;
		}
		const unsigned char *nl = memchr(d + pos, '\n', len - pos);
		if (nl == NULL)
			return;
		pos = (size_t)(nl - d) + 1;
	}
}

static void add_text(struct eval_ctx *x, GMimeObject *obj)
{
	if (!GMIME_IS_TEXT_PART(obj) || g_mime_part_is_attachment(GMIME_PART(obj)))
		return;
	if (x->ntexts >= FILTER_TEXT_PARTS_MAX || x->text_total >= FILTER_BODY_SCAN_MAX) {
		x->texts_incomplete = true;
		return;
	}
	char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
	if (t == NULL)
		return;
	size_t n = strlen(t);
	if (n > FILTER_BODY_SCAN_MAX - x->text_total)
		x->texts_incomplete = true; /* contains_folded searches a prefix only */
	x->texts = xreallocarray(x->texts, x->ntexts + 1, sizeof(*x->texts));
	x->text_lens = xreallocarray(x->text_lens, x->ntexts + 1, sizeof(*x->text_lens));
	x->texts[x->ntexts] = xstrndup(t, n);
	x->text_lens[x->ntexts++] = n;
	x->text_total += n;
	g_free(t);
}

static void walk_texts(struct eval_ctx *x, GMimeObject *obj, int depth)
{
	if (obj == NULL)
		return;
	if (depth > FILTER_PART_DEPTH_MAX) {
		x->texts_incomplete = true;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n; i++)
			walk_texts(x, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner)
			walk_texts(x, g_mime_message_get_mime_part(inner), depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		add_text(x, obj);
	}
}

/* Decodes the text parts once per evaluation, the first time body-contains asks. */
static void read_texts(struct eval_ctx *x)
{
	x->texts_read = true;
	if (x->in->data == NULL || x->in->len == 0)
		return;
	msgmeta_init(); /* initialises GMime */
	size_t len = x->in->len;
	if (len > FILTER_BODY_SCAN_MAX) {
		len = FILTER_BODY_SCAN_MAX;
		x->texts_incomplete = true;
	}
	/* The stream borrows the caller's bytes; the wrapper is detached before returning. */
	GByteArray *borrowed = g_byte_array_new_take((guint8 *)(uintptr_t)x->in->data, len);
	GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(borrowed);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
	if (msg) {
		walk_texts(x, g_mime_message_get_mime_part(msg), 0);
		g_object_unref(msg);
	}
	g_object_unref(parser);
	g_object_unref(stream);
	g_byte_array_free(borrowed, FALSE);
}

static enum tri body_contains(struct eval_ctx *x, const struct cond *c)
{
	if (!x->body_found)
		find_body(x);
	size_t body_len = x->in->len - x->body_off;
	if (x->in->data != NULL &&
	    contains_folded(x->in->data + x->body_off, body_len, c->needle, c->needle_len))
		return TRI_TRUE;
	if (!x->texts_read)
		read_texts(x);
	for (size_t i = 0; i < x->ntexts; i++)
		if (contains_folded((const unsigned char *)x->texts[i], x->text_lens[i], c->needle,
				    c->needle_len))
			return TRI_TRUE;
	if (body_len > FILTER_BODY_SCAN_MAX || x->texts_incomplete)
		return undecided(x, "body beyond the limits of body-contains");
	return TRI_FALSE;
}

static bool size_compare(enum size_op op, uint64_t a, uint64_t b)
{
	switch (op) {
	case SIZE_EQ:
		return a == b;
	case SIZE_NE:
		return a != b;
	case SIZE_LT:
		return a < b;
	case SIZE_LE:
		return a <= b;
	case SIZE_GT:
		return a > b;
	case SIZE_GE:
		return a >= b;
	}
	return false;
}

/* The "any of several values" of a string condition: true wins over undecided. */
static void tri_any(enum tri *acc, enum tri t)
{
	if (t == TRI_TRUE || *acc == TRI_TRUE)
		*acc = TRI_TRUE;
	else if (t == TRI_UNDECIDED)
		*acc = TRI_UNDECIDED;
}

/* The file names the attachment conditions see, and whether the list is whole. */
static enum tri attachment_names(struct eval_ctx *x, const struct cond *c, const struct msgmeta *m)
{
	enum tri r = TRI_FALSE;
	for (size_t i = 0; m && i < m->nattachments && r != TRI_TRUE; i++)
		if (m->attachments[i].filename)
			tri_any(&r, regex_match(x, c, m->attachments[i].filename));
	/* Every other name a client may show: inline text parts', Content-Type's, repeats. */
	for (size_t i = 0; m && i < m->nother_names && r != TRI_TRUE; i++)
		tri_any(&r, regex_match(x, c, m->other_names[i]));
	if (r == TRI_FALSE && m && m->parts_incomplete)
		r = undecided(x, "more attachments or deeper nesting than the filters inspect");
	return r;
}

/* "==" of a string condition: true when the value (or any of the values) matches. */
static enum tri string_match(struct eval_ctx *x, const struct cond *c)
{
	const struct filter_input *in = x->in;
	const struct msgmeta *m = in->meta;
	enum tri r = TRI_FALSE;
	switch (c->kind) {
	case COND_SUBJECT:
		/* A message without a Subject: has nothing to match. */
		if (m && m->subject)
			return regex_match(x, c, m->subject);
		return m && m->headers_incomplete
			   ? undecided(x, "more header fields than the filters inspect")
			   : TRI_FALSE;
	case COND_HEADER:
		for (size_t i = 0; m && i < m->nheaders && r != TRI_TRUE; i++)
			if (m->headers[i].name && strcasecmp(m->headers[i].name, c->header) == 0)
				tri_any(&r, regex_match(x, c, m->headers[i].value));
		if (r == TRI_FALSE && m && m->headers_incomplete)
			r = undecided(x, "more header fields than the filters inspect");
		return r;
	case COND_ATTACHMENT_FILENAME:
		return attachment_names(x, c, m);
	case COND_ATTACHMENT_TYPE:
		for (size_t i = 0; m && i < m->nattachments && r != TRI_TRUE; i++)
			if (m->attachments[i].content_type)
				tri_any(&r, regex_match(x, c, m->attachments[i].content_type));
		if (r == TRI_FALSE && m && m->parts_incomplete)
			r = undecided(
			    x, "more attachments or deeper nesting than the filters inspect");
		return r;
	case COND_MAIL_FROM:
		return regex_match(x, c, in->mail_from);
	case COND_RCPT_TO:
		for (size_t i = 0; in->rcpts && i < in->nrcpts && r != TRI_TRUE; i++)
			if (in->rcpts[i])
				tri_any(&r, regex_match(x, c, in->rcpts[i]));
		return r;
	case COND_REMOTE_IP:
		return regex_match(x, c, in->remote_ip);
	default:
		panic("filter: condition kind %d is not a string condition", (int)c->kind);
	}
}

static enum tri eval_cond(struct eval_ctx *x, const struct cond *c)
{
	enum tri r;
	switch (c->kind) {
	case COND_AND:
		/* False as soon as one part is false; undecided parts may still be outvoted. */
		r = TRI_TRUE;
		for (size_t i = 0; i < c->nkids; i++) {
			enum tri k = eval_cond(x, c->kids[i]);
			if (k == TRI_FALSE)
				return TRI_FALSE;
			if (k == TRI_UNDECIDED)
				r = TRI_UNDECIDED;
		}
		return r;
	case COND_OR:
		r = TRI_FALSE;
		for (size_t i = 0; i < c->nkids; i++) {
			enum tri k = eval_cond(x, c->kids[i]);
			if (k == TRI_TRUE)
				return TRI_TRUE;
			if (k == TRI_UNDECIDED)
				r = TRI_UNDECIDED;
		}
		return r;
	case COND_NOT:
		return tri_not(eval_cond(x, c->kids[0]));
	case COND_BODY_CONTAINS:
		return body_contains(x, c);
	case COND_SIZE:
		return size_compare(c->op, (uint64_t)x->in->len, c->size) ? TRI_TRUE : TRI_FALSE;
	case COND_REMOTE_IP_IN:
		return x->in->remote_ip && acl_match_text(c->acl, x->in->remote_ip) ? TRI_TRUE
										    : TRI_FALSE;
	default:
		r = string_match(x, c);
		return c->negate ? tri_not(r) : r;
	}
}

static void result_add(struct filter_result *r, const struct action *a, const char *filter)
{
	r->actions = xreallocarray(r->actions, r->nactions + 1, sizeof(*r->actions));
	struct filter_action *o = &r->actions[r->nactions++];
	o->kind = a->kind;
	o->arg = xstrdup_or_null(a->arg);
	o->arg2 = xstrdup_or_null(a->arg2);
	o->filter_name = xstrdup(filter);
}

int filter_eval(const struct filter_set *fs, const struct filter_input *in,
		struct filter_result *out)
{
	static const struct filter_input empty = {0};
	struct eval_ctx x = {.in = in ? in : &empty};
	memset(out, 0, sizeof(*out));
	if (fs == NULL)
		return 0;
	locale_t old = filter_locale_enter();
	bool final = false;
	for (size_t i = 0; i < fs->nfilters && !final; i++) {
		const struct filter *f = &fs->filters[i];
		enum tri t = eval_cond(&x, f->cond);
		if (t == TRI_UNDECIDED) {
			/* Neither block can be chosen: the caller's fail-closed outcome decides. */
			out->undecided = true;
			out->undecided_filter = xstrdup(f->name);
			out->undecided_reason = x.why != NULL ? x.why : "undecided";
			break;
		}
		const struct action_list *l = t == TRI_TRUE ? &f->then_actions : &f->else_actions;
		for (size_t j = 0; j < l->n; j++) {
			result_add(out, &l->v[j], f->name);
			final = final || filter_action_is_final(l->v[j].kind);
		}
	}
	filter_locale_leave(old);
	if (x.budget_spent)
		log_warn("filter.match_budget", "matched=%llu limit=%llu",
			 (unsigned long long)x.match_cost, (unsigned long long)FILTER_MATCH_BUDGET);
	if (out->undecided) {
		char q[256];
		log_warn("filter.undecided", "filter=%s reason=%s", out->undecided_filter,
			 log_quote(q, sizeof(q), out->undecided_reason));
	}
	for (size_t i = 0; i < x.ntexts; i++)
		free(x.texts[i]);
	free(x.texts);
	free(x.text_lens);
	return 0;
}

void filter_result_clear(struct filter_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nactions; i++) {
		free(r->actions[i].arg);
		free(r->actions[i].arg2);
		free(r->actions[i].filter_name);
	}
	free(r->actions);
	free(r->undecided_filter);
	memset(r, 0, sizeof(*r));
}
