/*
 * smtp_proto — the SMTP server conversation as a pure state machine (see
 * smtp_proto.h). It turns input bytes into replies and events and keeps the
 * envelope and message bytes of the current transaction. It is not for sockets,
 * timers, TLS, logging or storing mail: the caller (smtp_session) does those.
 *
 * States and transitions (function that makes each):
 *
 *   CONNECTED --EHLO/HELO--------------------------> GREETED   (cmd_helo)
 *   GREETED   --MAIL accepted----------------------> MAIL      (cmd_mail)
 *   MAIL      --RCPT accepted----------------------> RCPT      (cmd_rcpt)
 *   RCPT      --DATA-------------------------------> DATA      (cmd_data)
 *   DATA      --CRLF.CRLF, message within limits---> AWAIT     (data_end, SMTP_EVENT_MESSAGE)
 *   DATA      --CRLF.CRLF, a limit was exceeded----> GREETED   (data_end, 5xx reply)
 *   AWAIT     --smtp_proto_message_done()----------> GREETED
 *   MAIL/RCPT --RSET, EHLO/HELO--------------------> GREETED   (cmd_rset, cmd_helo)
 *   GREETED   --XFORWARD (permitted client)--------> GREETED   (cmd_xforward: attributes
 *                                                               for the next transaction)
 *   GREETED   --STARTTLS---------------------------> TLS_WAIT  (cmd_starttls, SMTP_EVENT_STARTTLS)
 *   TLS_WAIT  --smtp_proto_tls_started()-----------> CONNECTED (EHLO needed again)
 *   any       --QUIT, HTTP request, too many errors
 *               or commands, timeout, shutdown-----> CLOSED    (SMTP_EVENT_CLOSE)
 *
 * Invariants: input is processed strictly in order, one command line or one run
 * of message data at a time; nothing is processed in AWAIT, TLS_WAIT or CLOSED.
 * Message data ends only at CRLF "." CRLF (a bare LF never ends it and never
 * starts a line that could end it), so a message cannot be smuggled past a peer
 * that reads line ends differently. Every limit is a field of smtp_proto_limits
 * and has its own reply. XFORWARD attributes belong to the next transaction only:
 * every path that ends or abandons a transaction (transaction_reset, data_end)
 * clears them.
 */
#include "smtp/smtp_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "smtp/smtp_xforward.h"

/* Hostnames longer than a DNS name (253) are cut so every reply fits REPLY_MAX. */
#define HOSTNAME_MAX 255
/* One reply line without CRLF; hook replies and parameter names are cut to fit. */
#define REPLY_MAX 1024
/* The parameter name echoed in a 555 reply. */
#define PARAM_NAME_ECHO_MAX 64

enum proto_state {
	ST_CONNECTED,
	ST_GREETED,
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_AWAIT,
	ST_TLS_WAIT,
	ST_CLOSED,
};

/* Where the end-of-data scanner stands. Only DOT_LINE_START can begin the end mark. */
enum dot_state {
	DOT_LINE_START, /* right after CRLF, or the first byte after the 354 */
	DOT_SEEN,	/* "." at such a line start */
	DOT_CR_SEEN,	/* ".\r" at such a line start */
	DOT_MID,	/* anywhere else */
};

enum header_name_state {
	NAME_SCANNING,
	NAME_OK,  /* printable characters then ':' */
	NAME_BAD, /* not a header field: the header section has ended */
};

struct data_state {
	enum dot_state dot;
	bool prev_cr; /* in DOT_MID: the last byte stored was CR */
	size_t line_len;
	bool too_big, line_too_long, too_many_headers, header_too_long;
	bool in_headers;
	int line_first; /* first byte of the current line, -1 before it */
	enum header_name_state name;
	bool have_field;
	size_t field_size;
	unsigned header_count;
};

struct smtp_proto {
	struct smtp_proto_config cfg;
	char *hostname;
	enum proto_state state;
	bool tls;
	enum smtp_xforward_permit xforward;

	/* Unprocessed input: in[in_start..in_len). */
	unsigned char *in;
	size_t in_start, in_len, in_cap;
	bool discard_line;   /* skipping the rest of an over-long command line */
	size_t discarded;    /* octets of it skipped since the last error counted */
	uint64_t lines_done; /* command lines completed (smtp_proto_lines_done) */

	/* Pending replies: out[out_start..out_len). */
	char *out;
	size_t out_start, out_len, out_cap;

	/* The current command line, NUL-terminated. */
	char *line;
	size_t line_cap;

	unsigned errors;
	unsigned commands;	 /* non-transaction commands since the last MAIL */
	unsigned rcpt_overshoot; /* RCPTs refused for the recipient limit */

	struct smtp_envelope env;
	size_t rcpts_cap;

	struct data_state data;
	unsigned char *msg;
	size_t msg_len, msg_cap;

	struct smtp_message *ready; /* handed out by smtp_proto_message() */
};

void smtp_proto_limits_default(struct smtp_proto_limits *l)
{
	l->max_command_line = 512;
	l->max_data_line = 65536;
	l->max_recipients = 1000;
	l->max_message_size = 50 * 1024 * 1024;
	l->max_header_count = 1000;
	l->max_header_size = 65536;
	l->max_commands_before_mail = 50;
	l->max_errors = 20;
}

/* Grows *buf so it holds at least need bytes, doubling to keep appends amortised O(1). */
static void grow(void **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t n = *cap < 256 ? 256 : *cap;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			panic("buffer size overflow: %zu", need);
		n *= 2;
	}
	*buf = xrealloc(*buf, n);
	*cap = n;
}

/* ---- output ---- */

static void out_append(struct smtp_proto *p, const char *s, size_t n)
{
	/* Reclaim consumed space once it is the larger part, so a slow reader costs no quadratic
	 * copying. */
	if (p->out_start > 0 && p->out_start >= p->out_len - p->out_start) {
		memmove(p->out, p->out + p->out_start, p->out_len - p->out_start);
		p->out_len -= p->out_start;
		p->out_start = 0;
	}
	void *buf = p->out;
	grow(&buf, &p->out_cap, p->out_len + n);
	p->out = buf;
	memcpy(p->out + p->out_len, s, n);
	p->out_len += n;
}

/* Queues one reply line plus CRLF. */
static void reply_line(struct smtp_proto *p, const char *line)
{
	out_append(p, line, strlen(line));
	out_append(p, "\r\n", 2);
}

static void reply(struct smtp_proto *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct smtp_proto *p, const char *fmt, ...)
{
	char buf[REPLY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	reply_line(p, buf);
}

/* Queues a 4xx/5xx reply that does not count as a client error, and tells on_reject. */
static void reject_line(struct smtp_proto *p, const char *reason, const char *line)
{
	reply_line(p, line);
	if (p->cfg.on_reject != NULL)
		p->cfg.on_reject(p->cfg.hook_ctx, reason, line);
}

static enum smtp_proto_event close_with(struct smtp_proto *p, const char *reason, const char *fmt,
					...) __attribute__((format(printf, 3, 4)));
static enum smtp_proto_event close_with(struct smtp_proto *p, const char *reason, const char *fmt,
					...)
{
	char buf[REPLY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	reject_line(p, reason, buf);
	p->state = ST_CLOSED;
	return SMTP_EVENT_CLOSE;
}

/*
 * Queues an error reply caused by the client. The client may earn max_errors of
 * them; the one after that is replaced by 421 and the session ends (CLOSE).
 */
static enum smtp_proto_event refuse_line(struct smtp_proto *p, const char *reason, const char *line)
{
	p->errors++;
	if (p->errors > p->cfg.limits.max_errors)
		return close_with(p, SMTP_REASON_TOO_MANY_ERRORS,
				  "421 4.7.0 %s Error: too many errors", p->hostname);
	reject_line(p, reason, line);
	return SMTP_EVENT_NONE;
}

static enum smtp_proto_event refuse(struct smtp_proto *p, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum smtp_proto_event refuse(struct smtp_proto *p, const char *reason, const char *fmt, ...)
{
	char buf[REPLY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return refuse_line(p, reason, buf);
}

/* ---- transaction ---- */

static void envelope_clear(struct smtp_envelope *e)
{
	smtp_xforward_reset(e);
	free(e->helo);
	free(e->sender);
	for (size_t i = 0; i < e->nrcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	memset(e, 0, sizeof(*e));
}

/* Drops sender, recipients, XFORWARD attributes and message bytes; keeps HELO, ESMTP, TLS. */
static void transaction_reset(struct smtp_proto *p)
{
	smtp_xforward_reset(&p->env);
	free(p->env.sender);
	p->env.sender = NULL;
	for (size_t i = 0; i < p->env.nrcpts; i++)
		free(p->env.rcpts[i]);
	free(p->env.rcpts);
	p->env.rcpts = NULL;
	p->env.nrcpts = 0;
	p->rcpts_cap = 0;
	p->env.smtputf8 = false;
	p->env.body_8bit = false;
	p->env.declared_size = 0;
	p->rcpt_overshoot = 0;
	free(p->msg);
	p->msg = NULL;
	p->msg_len = p->msg_cap = 0;
	memset(&p->data, 0, sizeof(p->data));
	if (p->state == ST_MAIL || p->state == ST_RCPT || p->state == ST_DATA ||
	    p->state == ST_AWAIT)
		p->state = ST_GREETED;
}

/* ---- lifecycle ---- */

struct smtp_proto *smtp_proto_new(const struct smtp_proto_config *cfg)
{
	struct smtp_proto *p = xcalloc(1, sizeof(*p));
	p->cfg = *cfg;
	p->hostname = xstrndup(cfg->hostname != NULL ? cfg->hostname : "localhost", HOSTNAME_MAX);
	p->cfg.hostname = p->hostname;
	p->state = ST_CONNECTED;
	return p;
}

void smtp_message_free(struct smtp_message *m)
{
	if (m == NULL)
		return;
	envelope_clear(&m->env);
	free(m->data);
	free(m);
}

void smtp_proto_free(struct smtp_proto *p)
{
	if (p == NULL)
		return;
	envelope_clear(&p->env);
	free(p->msg);
	smtp_message_free(p->ready);
	free(p->in);
	free(p->out);
	free(p->line);
	free(p->hostname);
	free(p);
}

void smtp_proto_greeting(struct smtp_proto *p)
{
	reply(p, "220 %s ESMTP Lazaret", p->hostname);
}

/* ---- address syntax ---- */

enum path_result {
	PATH_OK,
	PATH_MISSING, /* nothing after FROM:/TO: */
	PATH_BAD,     /* malformed address */
};

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static bool has_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/*
 * Parses a reverse- or forward-path at s: "<addr>", "<>" or a bare "addr", up to
 * the next space. On PATH_OK *addr is the address without <> and without a
 * source route (caller frees) and *rest points after the path.
 */
static enum path_result parse_path(const char *s, char **addr, const char **rest)
{
	const char *start, *end;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return PATH_MISSING;
	if (*s == '<') {
		start = s + 1;
		end = strchr(start, '>');
		if (end == NULL)
			return PATH_BAD;
		*rest = end + 1;
		if (**rest != '\0' && **rest != ' ')
			return PATH_BAD;
	} else {
		start = s;
		end = strchr(s, ' ');
		if (end == NULL)
			end = s + strlen(s);
		*rest = end;
	}
	for (const char *c = start; c < end; c++) {
		unsigned char u = (unsigned char)*c;
		if (u <= ' ' || u == 0x7f || u == '<' || u == '>')
			return PATH_BAD;
	}
	if (!utf8_valid((const unsigned char *)start, (size_t)(end - start)))
		return PATH_BAD;
	/* An obsolete source route "@a,@b:user@c" is accepted and ignored (RFC 5321 4.1.2). */
	if (start < end && *start == '@') {
		const char *colon = memchr(start, ':', (size_t)(end - start));
		if (colon == NULL)
			return PATH_BAD;
		start = colon + 1;
	}
	const char *at = NULL;
	for (const char *c = start; c < end; c++)
		if (*c == '@')
			at = c;
	if (at != NULL && (at == start || at + 1 == end))
		return PATH_BAD;
	*addr = xstrndup(start, (size_t)(end - start));
	return PATH_OK;
}

/* Copies a parameter keyword for a reply, replacing what is not printable ASCII. */
static void param_name_echo(char *dst, size_t size, const char *name, size_t n)
{
	size_t i;
	for (i = 0; i < n && i + 1 < size; i++) {
		unsigned char c = (unsigned char)name[i];
		dst[i] = (c > ' ' && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

/*
 * Asks a policy hook; on refusal queues its reply (or a default when the hook
 * wrote no valid 4xx/5xx line). Returns true when refused; *ev is then set.
 */
static bool policy_refuses(struct smtp_proto *p, int (*hook)(void *, const char *, char *, size_t),
			   const char *arg, const char *fallback, enum smtp_proto_event *ev)
{
	if (hook == NULL)
		return false;
	char buf[REPLY_MAX] = "";
	if (hook(p->cfg.hook_ctx, arg, buf, sizeof(buf)) == 0)
		return false;
	buf[sizeof(buf) - 1] = '\0';
	/* A hook's text must stay one line: a CR or LF would let it forge replies. */
	buf[strcspn(buf, "\r\n")] = '\0';
	bool valid = (buf[0] == '4' || buf[0] == '5') && buf[1] >= '0' && buf[1] <= '9' &&
		     buf[2] >= '0' && buf[2] <= '9' && (buf[3] == ' ' || buf[3] == '\0');
	*ev = refuse_line(p, SMTP_REASON_POLICY, valid ? buf : fallback);
	return true;
}

/* ---- commands ---- */

static bool xforward_permitted(struct smtp_proto *p);

/* Case-insensitive "FROM:"/"TO:" prefix; returns what follows, or NULL. */
static const char *after_keyword(const char *arg, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(arg, kw, n) != 0)
		return NULL;
	return arg + n;
}

static enum smtp_proto_event cmd_helo(struct smtp_proto *p, const char *arg, bool esmtp)
{
	if (*arg == '\0')
		return refuse(p, SMTP_REASON_SYNTAX, "501 5.5.4 Syntax: EHLO hostname");
	for (const char *c = arg; *c != '\0'; c++)
		if ((unsigned char)*c < ' ' || *c == 0x7f)
			return refuse(p, SMTP_REASON_SYNTAX, "501 5.5.4 Syntax: EHLO hostname");
	transaction_reset(p);
	free(p->env.helo);
	p->env.helo = xstrdup(arg);
	p->env.esmtp = esmtp;
	p->state = ST_GREETED;
	if (!esmtp) {
		reply(p, "250 %s", p->hostname);
		return SMTP_EVENT_NONE;
	}
	char size[48];
	snprintf(size, sizeof(size), "SIZE %" PRIu64, p->cfg.limits.max_message_size);
	const char *caps[8];
	size_t n = 0;
	caps[n++] = "PIPELINING";
	caps[n++] = size;
	caps[n++] = "8BITMIME";
	caps[n++] = "SMTPUTF8";
	caps[n++] = "ENHANCEDSTATUSCODES";
	if (p->cfg.starttls_available && !p->tls)
		caps[n++] = "STARTTLS";
	if (xforward_permitted(p))
		caps[n++] = SMTP_XFORWARD_KEYWORD;
	reply(p, "250-%s", p->hostname);
	for (size_t i = 0; i < n; i++)
		reply(p, "250%c%s", i + 1 == n ? ' ' : '-', caps[i]);
	return SMTP_EVENT_NONE;
}

static bool parse_size_value(const char *v, size_t n, uint64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		unsigned d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

static enum smtp_proto_event cmd_mail(struct smtp_proto *p, const char *arg)
{
	static const char syntax[] = "501 5.5.4 Syntax: MAIL FROM:<address>";
	enum smtp_proto_event ev = SMTP_EVENT_NONE;
	char *sender = NULL;
	const char *rest;

	if (p->state == ST_CONNECTED)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: send HELO/EHLO first");
	if (p->state != ST_GREETED)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: nested MAIL command");
	const char *path = after_keyword(arg, "FROM:");
	if (path == NULL)
		return refuse(p, SMTP_REASON_SYNTAX, "%s", syntax);
	switch (parse_path(path, &sender, &rest)) {
	case PATH_MISSING:
		return refuse(p, SMTP_REASON_SYNTAX, "%s", syntax);
	case PATH_BAD:
		return refuse(p, SMTP_REASON_SYNTAX, "501 5.1.7 Bad sender address syntax");
	case PATH_OK:
		break;
	}

	bool smtputf8 = false, body_8bit = false;
	uint64_t size = 0;
	while (*rest != '\0') {
		while (*rest == ' ')
			rest++;
		if (*rest == '\0')
			break;
		size_t n = strcspn(rest, " ");
		const char *eq = memchr(rest, '=', n);
		size_t klen = eq != NULL ? (size_t)(eq - rest) : n;
		const char *val = eq != NULL ? eq + 1 : NULL;
		size_t vlen = eq != NULL ? n - klen - 1 : 0;
		if (klen == 4 && strncasecmp(rest, "SIZE", 4) == 0) {
			if (val == NULL || !parse_size_value(val, vlen, &size)) {
				ev = refuse(p, SMTP_REASON_SYNTAX,
					    "501 5.5.4 Bad SIZE parameter value");
				goto fail;
			}
		} else if (klen == 4 && strncasecmp(rest, "BODY", 4) == 0) {
			if (val != NULL && vlen == 4 && strncasecmp(val, "7BIT", 4) == 0) {
				body_8bit = false;
			} else if (val != NULL && vlen == 8 &&
				   strncasecmp(val, "8BITMIME", 8) == 0) {
				body_8bit = true;
			} else {
				ev = refuse(p, SMTP_REASON_SYNTAX,
					    "501 5.5.4 Bad BODY parameter value");
				goto fail;
			}
		} else if (klen == 8 && val == NULL && strncasecmp(rest, "SMTPUTF8", 8) == 0) {
			smtputf8 = true;
		} else {
			char name[PARAM_NAME_ECHO_MAX + 1];
			param_name_echo(name, sizeof(name), rest, klen);
			ev = refuse(p, SMTP_REASON_SYNTAX, "555 5.5.4 Unsupported parameter: %s",
				    name);
			goto fail;
		}
		rest += n;
	}
	if (!smtputf8 && has_non_ascii(sender)) {
		ev = refuse(p, SMTP_REASON_SYNTAX, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		goto fail;
	}
	if (size > p->cfg.limits.max_message_size) {
		ev = refuse(p, SMTP_REASON_MESSAGE_TOO_LARGE,
			    "552 5.3.4 Message size exceeds fixed limit");
		goto fail;
	}
	if (policy_refuses(p, p->cfg.check_mail, sender, "550 5.7.1 Sender not accepted", &ev))
		goto fail;

	p->env.sender = sender;
	p->env.smtputf8 = smtputf8;
	p->env.body_8bit = body_8bit;
	p->env.declared_size = size;
	p->state = ST_MAIL;
	p->commands = 0;
	reply(p, "250 2.1.0 Ok");
	return SMTP_EVENT_NONE;
fail:
	free(sender);
	return ev;
}

static enum smtp_proto_event cmd_rcpt(struct smtp_proto *p, const char *arg)
{
	static const char syntax[] = "501 5.5.4 Syntax: RCPT TO:<address>";
	static const char bad[] = "501 5.1.3 Bad recipient address syntax";
	enum smtp_proto_event ev = SMTP_EVENT_NONE;
	char *rcpt = NULL;
	const char *rest;

	if (p->state != ST_MAIL && p->state != ST_RCPT)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: need MAIL command");
	const char *path = after_keyword(arg, "TO:");
	if (path == NULL)
		return refuse(p, SMTP_REASON_SYNTAX, "%s", syntax);
	switch (parse_path(path, &rcpt, &rest)) {
	case PATH_MISSING:
		return refuse(p, SMTP_REASON_SYNTAX, "%s", syntax);
	case PATH_BAD:
		return refuse(p, SMTP_REASON_SYNTAX, "%s", bad);
	case PATH_OK:
		break;
	}
	if (strchr(rcpt, '@') == NULL && strcasecmp(rcpt, "postmaster") != 0) {
		ev = refuse(p, SMTP_REASON_SYNTAX, "%s", bad);
		goto fail;
	}
	while (*rest == ' ')
		rest++;
	if (*rest != '\0') {
		char name[PARAM_NAME_ECHO_MAX + 1];
		size_t n = strcspn(rest, " ");
		const char *eq = memchr(rest, '=', n);
		param_name_echo(name, sizeof(name), rest, eq != NULL ? (size_t)(eq - rest) : n);
		ev = refuse(p, SMTP_REASON_SYNTAX, "555 5.5.4 Unsupported parameter: %s", name);
		goto fail;
	}
	if (!p->env.smtputf8 && has_non_ascii(rcpt)) {
		ev = refuse(p, SMTP_REASON_SYNTAX, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		goto fail;
	}
	if (p->env.nrcpts >= p->cfg.limits.max_recipients) {
		/*
		 * A client with a long list legitimately pipelines past the limit and
		 * sends the rest later; only a large overshoot counts as an error.
		 */
		if (p->rcpt_overshoot++ < p->cfg.limits.max_recipients) {
			reject_line(p, SMTP_REASON_TOO_MANY_RCPTS,
				    "452 4.5.3 Error: too many recipients");
		} else {
			ev = refuse(p, SMTP_REASON_TOO_MANY_RCPTS,
				    "452 4.5.3 Error: too many recipients");
		}
		goto fail;
	}
	if (policy_refuses(p, p->cfg.check_rcpt, rcpt, "550 5.7.1 Recipient not accepted", &ev))
		goto fail;

	if (p->env.nrcpts == p->rcpts_cap) {
		p->rcpts_cap = p->rcpts_cap ? p->rcpts_cap * 2 : 4;
		p->env.rcpts = xreallocarray(p->env.rcpts, p->rcpts_cap, sizeof(char *));
	}
	p->env.rcpts[p->env.nrcpts++] = rcpt;
	p->state = ST_RCPT;
	reply(p, "250 2.1.5 Ok");
	return SMTP_EVENT_NONE;
fail:
	free(rcpt);
	return ev;
}

static enum smtp_proto_event cmd_data(struct smtp_proto *p, const char *arg)
{
	if (p->state != ST_RCPT)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: need RCPT command");
	if (*arg != '\0')
		return refuse(p, SMTP_REASON_SYNTAX, "501 5.5.4 Syntax: DATA");
	memset(&p->data, 0, sizeof(p->data));
	p->data.dot = DOT_LINE_START;
	p->data.in_headers = true;
	p->data.line_first = -1;
	p->data.name = NAME_SCANNING;
	p->state = ST_DATA;
	reply(p, "354 End data with <CR><LF>.<CR><LF>");
	return SMTP_EVENT_NONE;
}

static enum smtp_proto_event cmd_starttls(struct smtp_proto *p, const char *arg)
{
	if (p->tls)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: TLS already active");
	if (!p->cfg.starttls_available)
		return refuse(p, SMTP_REASON_UNKNOWN_COMMAND,
			      "502 5.5.1 Error: STARTTLS not available");
	if (*arg != '\0')
		return refuse(p, SMTP_REASON_SYNTAX, "501 5.5.4 Syntax: STARTTLS");
	if (p->state != ST_CONNECTED && p->state != ST_GREETED)
		return refuse(p, SMTP_REASON_SEQUENCE,
			      "503 5.5.1 Error: MAIL transaction in progress");
	reply(p, "220 2.0.0 Ready to start TLS");
	p->state = ST_TLS_WAIT;
	return SMTP_EVENT_STARTTLS;
}

/* ---- XFORWARD (Postfix's content-filter extension, see smtp_xforward.h) ---- */

static bool xforward_permitted(struct smtp_proto *p)
{
	return smtp_xforward_permitted(&p->xforward, p->cfg.xforward_allowed, p->cfg.hook_ctx);
}

/*
 * XFORWARD attr=value ... : attributes for the next transaction. A command with
 * any bad attribute changes nothing. Only before MAIL; only from a permitted client.
 */
static enum smtp_proto_event cmd_xforward(struct smtp_proto *p, const char *arg)
{
	if (!xforward_permitted(p))
		return refuse(p, SMTP_REASON_POLICY, "503 5.5.1 Error: XFORWARD not allowed");
	if (p->state == ST_CONNECTED)
		return refuse(p, SMTP_REASON_SEQUENCE, "503 5.5.1 Error: send HELO/EHLO first");
	if (p->state != ST_GREETED)
		return refuse(p, SMTP_REASON_SEQUENCE,
			      "503 5.5.1 Error: MAIL transaction in progress");
	struct smtp_xforward_attrs attrs;
	int r = smtp_xforward_parse(arg, &attrs);
	if (r == -ENODATA)
		return refuse(p, SMTP_REASON_SYNTAX,
			      "501 5.5.4 Syntax: XFORWARD attribute=value...");
	if (r < 0)
		return refuse(p, SMTP_REASON_SYNTAX, "501 5.5.4 Bad XFORWARD attribute");
	smtp_xforward_apply(&p->env, &attrs);
	reply(p, "250 2.0.0 Ok");
	return SMTP_EVENT_NONE;
}

/* An HTTP request line or header: a browser or proxy has been pointed at the SMTP port. */
static bool looks_like_http(const char *line)
{
	static const char *const methods[] = {"GET ",	 "POST ",    "HEAD ",	 "PUT ",
					      "DELETE ", "OPTIONS ", "CONNECT ", "PATCH "};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strncasecmp(line, methods[i], strlen(methods[i])) == 0)
			return true;
	return strncasecmp(line, "Host:", 5) == 0 || strncasecmp(line, "User-Agent:", 11) == 0;
}

enum verb {
	V_UNKNOWN,
	V_EHLO,
	V_HELO,
	V_MAIL,
	V_RCPT,
	V_DATA,
	V_RSET,
	V_NOOP,
	V_QUIT,
	V_VRFY,
	V_HELP,
	V_STARTTLS,
	V_XFORWARD,
};

static enum verb verb_lookup(const char *s, size_t n)
{
	static const struct {
		const char *name;
		enum verb verb;
	} verbs[] = {
	    {"EHLO", V_EHLO}, {"HELO", V_HELO}, {"MAIL", V_MAIL},	  {"RCPT", V_RCPT},
	    {"DATA", V_DATA}, {"RSET", V_RSET}, {"NOOP", V_NOOP},	  {"QUIT", V_QUIT},
	    {"VRFY", V_VRFY}, {"HELP", V_HELP}, {"STARTTLS", V_STARTTLS}, {"XFORWARD", V_XFORWARD},
	};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i].name) == n && strncasecmp(s, verbs[i].name, n) == 0)
			return verbs[i].verb;
	return V_UNKNOWN;
}

/* Handles one command line (line end removed, n bytes at raw). */
static enum smtp_proto_event command(struct smtp_proto *p, const unsigned char *raw, size_t n)
{
	void *buf = p->line;
	grow(&buf, &p->line_cap, n + 1);
	p->line = buf;
	memcpy(p->line, raw, n);
	p->line[n] = '\0';
	while (n > 0 && (p->line[n - 1] == ' ' || p->line[n - 1] == '\t'))
		p->line[--n] = '\0';
	char *line = p->line;
	while (*line == ' ' || *line == '\t')
		line++;

	if (looks_like_http(line))
		return close_with(p, SMTP_REASON_HTTP,
				  "554 5.7.0 Error: HTTP requests are not accepted here");

	size_t vlen = strcspn(line, " \t");
	/* A NUL byte cannot be part of any command; such a line is not recognised. */
	enum verb v =
	    strlen(line) + (size_t)(line - p->line) == n ? verb_lookup(line, vlen) : V_UNKNOWN;
	const char *arg = line + vlen;
	while (*arg == ' ' || *arg == '\t')
		arg++;

	if (v != V_MAIL && v != V_RCPT && v != V_DATA && v != V_QUIT) {
		if (++p->commands > p->cfg.limits.max_commands_before_mail)
			return close_with(p, SMTP_REASON_TOO_MANY_COMMANDS,
					  "421 4.7.0 %s Error: too many commands", p->hostname);
	}

	/* RFC 3207 4: until TLS is on, only the commands that lead to it and QUIT. */
	if (p->cfg.tls_required && !p->tls &&
	    (v == V_MAIL || v == V_RCPT || v == V_DATA || v == V_VRFY || v == V_XFORWARD))
		return refuse_line(p, SMTP_REASON_TLS_REQUIRED, SMTP_REPLY_TLS_REQUIRED);

	switch (v) {
	case V_EHLO:
		return cmd_helo(p, arg, true);
	case V_HELO:
		return cmd_helo(p, arg, false);
	case V_MAIL:
		return cmd_mail(p, arg);
	case V_RCPT:
		return cmd_rcpt(p, arg);
	case V_DATA:
		return cmd_data(p, arg);
	case V_RSET:
		transaction_reset(p);
		reply(p, "250 2.0.0 Ok");
		return SMTP_EVENT_NONE;
	case V_NOOP:
		reply(p, "250 2.0.0 Ok");
		return SMTP_EVENT_NONE;
	case V_QUIT:
		reply(p, "221 2.0.0 Bye");
		p->state = ST_CLOSED;
		return SMTP_EVENT_CLOSE;
	case V_VRFY:
		reply(p, "252 2.5.2 Cannot VRFY user, but will accept message");
		return SMTP_EVENT_NONE;
	case V_HELP:
		reply(p, "214 2.0.0 See RFC 5321");
		return SMTP_EVENT_NONE;
	case V_STARTTLS:
		return cmd_starttls(p, arg);
	case V_XFORWARD:
		return cmd_xforward(p, arg);
	case V_UNKNOWN:
		break;
	}
	return refuse(p, SMTP_REASON_UNKNOWN_COMMAND, "502 5.5.2 Error: command not recognized");
}

/* ---- message data ---- */

/* Follows the header section of the current line's bytes b[0..n) (no LF inside except last). */
static void header_scan(struct data_state *d, const unsigned char *b, size_t n)
{
	if (d->line_first < 0 && n > 0)
		d->line_first = b[0];
	for (size_t i = 0; i < n && d->name == NAME_SCANNING; i++) {
		unsigned char c = b[i];
		if (c == ':')
			d->name = d->line_len + i > 0 ? NAME_OK : NAME_BAD;
		else if (c <= ' ' || c >= 0x7f)
			d->name = NAME_BAD;
	}
}

/* A line of the header section is complete (d->line_len bytes, line end included). */
static void header_line_end(struct data_state *d, const struct smtp_proto_limits *l)
{
	if (d->line_len == 1 || (d->line_len == 2 && d->line_first == '\r')) {
		d->in_headers = false; /* the empty line before the body */
		return;
	}
	if (d->line_first == ' ' || d->line_first == '\t') {
		if (!d->have_field) {
			d->in_headers = false;
			return;
		}
		d->field_size += d->line_len;
		if (d->field_size > l->max_header_size)
			d->header_too_long = true;
		return;
	}
	if (d->name != NAME_OK) {
		d->in_headers = false; /* a body without the empty line */
		return;
	}
	d->have_field = true;
	d->field_size = d->line_len;
	if (d->field_size > l->max_header_size)
		d->header_too_long = true;
	if (++d->header_count > l->max_header_count)
		d->too_many_headers = true;
}

/* Stores message bytes (already unstuffed) and follows lines and headers for the limits. */
static void data_emit(struct smtp_proto *p, const unsigned char *b, size_t n)
{
	struct data_state *d = &p->data;
	const struct smtp_proto_limits *l = &p->cfg.limits;
	if (!d->too_big) {
		if ((uint64_t)n > l->max_message_size - p->msg_len) {
			/* Keep reading to the end mark, but store nothing more. */
			d->too_big = true;
			free(p->msg);
			p->msg = NULL;
			p->msg_len = p->msg_cap = 0;
		} else {
			void *buf = p->msg;
			grow(&buf, &p->msg_cap, p->msg_len + n);
			p->msg = buf;
			memcpy(p->msg + p->msg_len, b, n);
			p->msg_len += n;
		}
	}
	while (n > 0) {
		const unsigned char *lf = memchr(b, '\n', n);
		size_t seg = lf != NULL ? (size_t)(lf - b) + 1 : n;
		if (d->in_headers)
			header_scan(d, b, seg);
		d->line_len += seg;
		if (d->line_len > l->max_data_line)
			d->line_too_long = true;
		if (lf != NULL) {
			if (d->in_headers)
				header_line_end(d, l);
			d->line_len = 0;
			d->line_first = -1;
			d->name = NAME_SCANNING;
		}
		b += seg;
		n -= seg;
	}
}

/*
 * Consumes message data from buf[*pos..len). Returns true when the end mark
 * CRLF "." CRLF was consumed. A "." at a line start that follows CRLF is removed
 * (dot-stuffing), except in ".\n", which is kept as it came: that is no end mark
 * and was not stuffed by any sender that follows RFC 5321.
 */
static bool data_consume(struct smtp_proto *p, const unsigned char *buf, size_t len, size_t *pos)
{
	struct data_state *d = &p->data;
	while (*pos < len) {
		switch (d->dot) {
		case DOT_LINE_START:
			if (buf[*pos] == '.') {
				(*pos)++;
				d->dot = DOT_SEEN;
			} else {
				d->dot = DOT_MID;
				d->prev_cr = false;
			}
			break;
		case DOT_SEEN:
			if (buf[*pos] == '\r') {
				(*pos)++;
				d->dot = DOT_CR_SEEN;
				break;
			}
			if (buf[*pos] == '\n')
				data_emit(p, (const unsigned char *)".", 1);
			d->dot = DOT_MID;
			d->prev_cr = false;
			break;
		case DOT_CR_SEEN:
			if (buf[*pos] == '\n') {
				(*pos)++;
				return true;
			}
			data_emit(p, (const unsigned char *)"\r", 1);
			d->dot = DOT_MID;
			d->prev_cr = true;
			break;
		case DOT_MID: {
			const unsigned char *start = buf + *pos;
			size_t avail = len - *pos;
			const unsigned char *lf = memchr(start, '\n', avail);
			if (lf == NULL) {
				data_emit(p, start, avail);
				d->prev_cr = start[avail - 1] == '\r';
				*pos = len;
				break;
			}
			size_t seg = (size_t)(lf - start) + 1;
			bool crlf = seg >= 2 ? lf[-1] == '\r' : d->prev_cr;
			data_emit(p, start, seg);
			*pos += seg;
			d->prev_cr = false;
			if (crlf)
				d->dot = DOT_LINE_START;
			break;
		}
		}
	}
	return false;
}

/* The end mark was read: refuse for an exceeded limit, or hand the message out. */
static enum smtp_proto_event data_end(struct smtp_proto *p)
{
	struct data_state d = p->data;
	if (d.too_big || d.header_too_long || d.too_many_headers || d.line_too_long) {
		transaction_reset(p);
		if (d.too_big)
			return refuse(p, SMTP_REASON_MESSAGE_TOO_LARGE,
				      "552 5.3.4 Message size exceeds fixed limit");
		if (d.header_too_long)
			return refuse(p, SMTP_REASON_HEADERS,
				      "552 5.3.4 Error: header field too long");
		if (d.too_many_headers)
			return refuse(p, SMTP_REASON_HEADERS,
				      "552 5.3.4 Error: too many header fields");
		return refuse(p, SMTP_REASON_LINE_TOO_LONG,
			      "500 5.5.2 Error: line too long in message data");
	}
	struct smtp_message *m = xcalloc(1, sizeof(*m));
	m->env = p->env;
	m->env.helo = xstrdup_or_null(p->env.helo);
	m->env.tls = p->tls;
	m->data = p->msg != NULL ? p->msg : xmalloc(1);
	m->len = p->msg_len;
	p->env.sender = NULL;
	p->env.rcpts = NULL;
	p->env.nrcpts = 0;
	/* The message took the XFORWARD attributes: the next transaction starts without. */
	p->env.xforward_addr = p->env.xforward_name = NULL;
	p->env.xforward_helo = p->env.xforward_proto = NULL;
	p->rcpts_cap = 0;
	p->msg = NULL;
	p->msg_len = p->msg_cap = 0;
	p->ready = m;
	p->state = ST_AWAIT;
	return SMTP_EVENT_MESSAGE;
}

/* ---- input ---- */

/*
 * n more octets of an over-long command line (beyond its first max_command_line,
 * LF not counted) were skipped. Every max_command_line of them counts as one more
 * client error without a reply of its own, so an endless line ends the session
 * with "421 4.7.0 ... too many errors" after about max_errors * max_command_line
 * octets instead of being read for ever; the count is the same however the line
 * was split into reads.
 */
static enum smtp_proto_event discard_count(struct smtp_proto *p, size_t n)
{
	const struct smtp_proto_limits *l = &p->cfg.limits;
	p->discarded += n;
	while (p->discarded >= l->max_command_line) {
		p->discarded -= l->max_command_line;
		p->errors++;
		if (p->errors > l->max_errors)
			return close_with(p, SMTP_REASON_TOO_MANY_ERRORS,
					  "421 4.7.0 %s Error: too many errors", p->hostname);
	}
	return SMTP_EVENT_NONE;
}

/* Processes buf[*pos..len) as far as the state allows. */
static enum smtp_proto_event run(struct smtp_proto *p, const unsigned char *buf, size_t len,
				 size_t *pos)
{
	const struct smtp_proto_limits *l = &p->cfg.limits;
	while (*pos < len) {
		switch (p->state) {
		case ST_AWAIT:
		case ST_TLS_WAIT:
			return SMTP_EVENT_NONE;
		case ST_CLOSED:
			return SMTP_EVENT_CLOSE;
		case ST_DATA:
			if (data_consume(p, buf, len, pos)) {
				enum smtp_proto_event ev = data_end(p);
				if (ev != SMTP_EVENT_NONE)
					return ev;
			}
			continue;
		default:
			break;
		}
		const unsigned char *start = buf + *pos;
		size_t avail = len - *pos;
		const unsigned char *lf = memchr(start, '\n', avail);
		if (p->discard_line) {
			if (lf == NULL) {
				*pos = len;
				enum smtp_proto_event ev = discard_count(p, avail);
				if (ev != SMTP_EVENT_NONE)
					return ev;
				break;
			}
			*pos += (size_t)(lf - start) + 1;
			p->discard_line = false;
			p->lines_done++;
			enum smtp_proto_event ev = discard_count(p, (size_t)(lf - start));
			if (ev != SMTP_EVENT_NONE)
				return ev;
			continue;
		}
		if (lf == NULL) {
			/* Without its LF this line is already at least one octet too long. */
			if (avail >= l->max_command_line) {
				*pos = len;
				p->discard_line = true;
				p->discarded = 0;
				enum smtp_proto_event ev = refuse(p, SMTP_REASON_LINE_TOO_LONG,
								  "500 5.5.2 Error: line too long");
				if (ev == SMTP_EVENT_NONE)
					ev = discard_count(p, avail - l->max_command_line);
				if (ev != SMTP_EVENT_NONE)
					return ev;
			}
			break;
		}
		size_t linelen = (size_t)(lf - start) + 1;
		*pos += linelen;
		p->lines_done++;
		if (linelen > l->max_command_line) {
			enum smtp_proto_event ev =
			    refuse(p, SMTP_REASON_LINE_TOO_LONG, "500 5.5.2 Error: line too long");
			/* Count the excess as a split read would have (see discard_count). */
			p->discarded = 0;
			if (ev == SMTP_EVENT_NONE)
				ev = discard_count(p, linelen - 1 - l->max_command_line);
			if (ev != SMTP_EVENT_NONE)
				return ev;
			continue;
		}
		size_t n = linelen - 1;
		if (n > 0 && start[n - 1] == '\r')
			n--;
		enum smtp_proto_event ev = command(p, start, n);
		if (ev != SMTP_EVENT_NONE)
			return ev;
	}
	return p->state == ST_CLOSED ? SMTP_EVENT_CLOSE : SMTP_EVENT_NONE;
}

static void in_append(struct smtp_proto *p, const void *data, size_t len)
{
	if (p->in_start > 0) {
		memmove(p->in, p->in + p->in_start, p->in_len - p->in_start);
		p->in_len -= p->in_start;
		p->in_start = 0;
	}
	void *buf = p->in;
	grow(&buf, &p->in_cap, p->in_len + len);
	p->in = buf;
	memcpy(p->in + p->in_len, data, len);
	p->in_len += len;
}

static void in_discard(struct smtp_proto *p)
{
	p->in_start = p->in_len = 0;
	p->discard_line = false;
}

static void in_reclaim(struct smtp_proto *p)
{
	if (p->in_start == p->in_len)
		p->in_start = p->in_len = 0;
}

enum smtp_proto_event smtp_proto_feed(struct smtp_proto *p, const void *data, size_t len)
{
	if (p->state == ST_CLOSED)
		return SMTP_EVENT_CLOSE;
	if (p->state == ST_TLS_WAIT)
		return SMTP_EVENT_NONE; /* plaintext sent before the handshake is never read */
	if (data == NULL)
		len = 0;
	enum smtp_proto_event ev;
	if (len > 0 && p->in_start == p->in_len && p->state != ST_AWAIT) {
		/* Nothing buffered: work on the caller's bytes and keep only what is left. */
		size_t pos = 0;
		ev = run(p, data, len, &pos);
		if (pos < len && p->state != ST_TLS_WAIT && p->state != ST_CLOSED)
			in_append(p, (const unsigned char *)data + pos, len - pos);
	} else {
		if (len > 0)
			in_append(p, data, len);
		if (p->state == ST_AWAIT)
			return SMTP_EVENT_NONE;
		size_t pos = p->in_start;
		ev = run(p, p->in, p->in_len, &pos);
		p->in_start = pos;
	}
	/* Input after STARTTLS could be a command injected before the handshake. */
	if (p->state == ST_TLS_WAIT || p->state == ST_CLOSED)
		in_discard(p);
	in_reclaim(p);
	return ev;
}

/* ---- output and events ---- */

const char *smtp_proto_output(struct smtp_proto *p, size_t *len)
{
	*len = p->out_len - p->out_start;
	return p->out != NULL ? p->out + p->out_start : "";
}

void smtp_proto_output_consumed(struct smtp_proto *p, size_t n)
{
	if (n > p->out_len - p->out_start)
		panic("smtp_proto_output_consumed: %zu bytes consumed, %zu pending", n,
		      p->out_len - p->out_start);
	p->out_start += n;
	if (p->out_start == p->out_len)
		p->out_start = p->out_len = 0;
}

struct smtp_message *smtp_proto_message(struct smtp_proto *p)
{
	struct smtp_message *m = p->ready;
	p->ready = NULL;
	return m;
}

void smtp_proto_message_done(struct smtp_proto *p, const char *reply_text)
{
	if (p->state != ST_AWAIT)
		panic("smtp_proto_message_done without a message awaiting its result");
	smtp_message_free(p->ready);
	p->ready = NULL;
	/* The caller's text must stay one reply line. */
	size_t n = strcspn(reply_text, "\r\n");
	out_append(p, reply_text, n);
	out_append(p, "\r\n", 2);
	transaction_reset(p);
	p->state = ST_GREETED;
}

void smtp_proto_tls_started(struct smtp_proto *p)
{
	if (p->state == ST_AWAIT)
		panic("smtp_proto_tls_started while a message awaits its result");
	if (p->state == ST_CLOSED)
		return;
	transaction_reset(p);
	free(p->env.helo);
	p->env.helo = NULL;
	p->env.esmtp = false;
	p->tls = true;
	p->state = ST_CONNECTED;
	in_discard(p);
}

enum smtp_proto_event smtp_proto_timeout(struct smtp_proto *p)
{
	if (p->state == ST_CLOSED)
		return SMTP_EVENT_CLOSE;
	return close_with(p, SMTP_REASON_TIMEOUT, "421 4.4.2 %s Error: timeout exceeded",
			  p->hostname);
}

enum smtp_proto_event smtp_proto_shutdown(struct smtp_proto *p)
{
	if (p->state == ST_CLOSED)
		return SMTP_EVENT_CLOSE;
	return close_with(p, SMTP_REASON_SHUTDOWN, "421 4.3.2 %s Service shutting down",
			  p->hostname);
}

const char *smtp_proto_helo(const struct smtp_proto *p)
{
	return p->env.helo;
}

bool smtp_proto_in_transaction(const struct smtp_proto *p)
{
	return p->state == ST_MAIL || p->state == ST_RCPT || p->state == ST_DATA ||
	       p->state == ST_AWAIT;
}

bool smtp_proto_awaiting_result(const struct smtp_proto *p)
{
	return p->state == ST_AWAIT;
}

enum smtp_proto_wait smtp_proto_waiting_for(const struct smtp_proto *p)
{
	switch (p->state) {
	case ST_CONNECTED:
	case ST_GREETED:
	case ST_MAIL:
	case ST_RCPT:
		return p->in_len > p->in_start || p->discard_line ? SMTP_WAIT_COMMAND_REST
								  : SMTP_WAIT_COMMAND;
	case ST_DATA:
		return SMTP_WAIT_DATA;
	case ST_AWAIT:
	case ST_TLS_WAIT:
	case ST_CLOSED:
		break;
	}
	return SMTP_WAIT_NOTHING;
}

uint64_t smtp_proto_lines_done(const struct smtp_proto *p)
{
	return p->lines_done;
}
