/*
 * test_smtp_proto — the SMTP server state machine, driven through its public API.
 *
 * Most cases are one row of a table: input bytes, the exact transcript the client
 * would see (replies plus markers for the events the caller acts on) and the
 * on_reject reasons. Every row is run with the input fed in one chunk, one byte
 * at a time and in 7-byte chunks; all three must give the same transcript.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_proto.h"

/* ---- harness ---- */

struct buf {
	char *data;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->data = realloc(b->data, b->cap);
		assert_non_null(b->data);
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

struct harness {
	struct buf out;	    /* replies and event markers */
	struct buf reasons; /* on_reject reasons, each followed by ',' */
	struct buf rejects; /* on_reject reply lines, each followed by '|' */
	const char *after_tls;
	size_t chunk;
	bool closed;
	unsigned messages;
	bool xforward_permit;	 /* what hook_xforward answers */
	unsigned xforward_asked; /* how often it was asked */
};

static void hook_on_reject(void *ctx, const char *reason, const char *reply)
{
	struct harness *h = ctx;
	buf_str(&h->reasons, reason);
	buf_str(&h->reasons, ",");
	buf_str(&h->rejects, reply);
	buf_str(&h->rejects, "|");
}

static int hook_check_mail(void *ctx, const char *sender, char *reply, size_t replylen)
{
	if (strcmp(sender, "spam@bad.example") == 0) {
		snprintf(reply, replylen, "550 5.7.1 Sender blocked");
		return -1;
	}
	return 0;
}

static int hook_check_rcpt(void *ctx, const char *rcpt, char *reply, size_t replylen)
{
	if (strcmp(rcpt, "nobody@x.example") == 0) {
		snprintf(reply, replylen, "ok"); /* not a valid refusal: the default is used */
		return -1;
	}
	if (strcmp(rcpt, "later@x.example") == 0) {
		snprintf(reply, replylen, "451 4.3.0 Try later\r\n250 2.1.5 Ok");
		return -1;
	}
	return 0;
}

static bool hook_xforward(void *ctx)
{
	struct harness *h = ctx;
	h->xforward_asked++;
	return h->xforward_permit;
}

static void collect_output(struct smtp_proto *p, struct harness *h)
{
	size_t n;
	const char *o = smtp_proto_output(p, &n);
	buf_add(&h->out, o, n);
	smtp_proto_output_consumed(p, n);
}

static void record_message(struct harness *h, struct smtp_message *m)
{
	char tmp[128];
	buf_str(&h->out, "[MSG <");
	buf_str(&h->out, m->env.sender);
	buf_str(&h->out, "> ");
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		buf_str(&h->out, "<");
		buf_str(&h->out, m->env.rcpts[i]);
		buf_str(&h->out, ">");
	}
	if (m->env.smtputf8)
		buf_str(&h->out, " utf8");
	if (m->env.body_8bit)
		buf_str(&h->out, " 8bit");
	if (m->env.tls)
		buf_str(&h->out, " tls");
	if (m->env.declared_size != 0) {
		snprintf(tmp, sizeof(tmp), " size=%llu", (unsigned long long)m->env.declared_size);
		buf_str(&h->out, tmp);
	}
	const struct smtp_envelope *e = &m->env;
	if (e->xforward_addr != NULL || e->xforward_name != NULL || e->xforward_helo != NULL ||
	    e->xforward_proto != NULL) {
		snprintf(tmp, sizeof(tmp), " xf=%s/%s/%s/%s",
			 e->xforward_addr != NULL ? e->xforward_addr : "-",
			 e->xforward_name != NULL ? e->xforward_name : "-",
			 e->xforward_helo != NULL ? e->xforward_helo : "-",
			 e->xforward_proto != NULL ? e->xforward_proto : "-");
		buf_str(&h->out, tmp);
	}
	buf_str(&h->out, " {");
	buf_add(&h->out, m->data, m->len);
	buf_str(&h->out, "}]");
}

static void feed_bytes(struct smtp_proto *p, struct harness *h, const char *data, size_t len);

/* Acts on ev the way the session glue does, until the machine wants more input. */
static void handle(struct smtp_proto *p, struct harness *h, enum smtp_proto_event ev)
{
	for (;;) {
		collect_output(p, h);
		switch (ev) {
		case SMTP_EVENT_NONE:
			return;
		case SMTP_EVENT_MESSAGE: {
			assert_true(smtp_proto_awaiting_result(p));
			assert_true(smtp_proto_in_transaction(p));
			/* While the message is out, new input is only buffered. */
			assert_int_equal(smtp_proto_feed(p, NULL, 0), SMTP_EVENT_NONE);
			size_t n;
			smtp_proto_output(p, &n);
			assert_int_equal(n, 0);
			struct smtp_message *m = smtp_proto_message(p);
			assert_non_null(m);
			assert_null(smtp_proto_message(p));
			record_message(h, m);
			smtp_message_free(m);
			h->messages++;
			smtp_proto_message_done(p, "250 2.0.0 Ok: queued");
			assert_false(smtp_proto_awaiting_result(p));
			assert_false(smtp_proto_in_transaction(p));
			ev = smtp_proto_feed(p, NULL, 0);
			break;
		}
		case SMTP_EVENT_STARTTLS: {
			buf_str(&h->out, "[TLS]");
			smtp_proto_tls_started(p);
			const char *more = h->after_tls;
			h->after_tls = NULL;
			if (more != NULL)
				feed_bytes(p, h, more, strlen(more));
			return;
		}
		case SMTP_EVENT_CLOSE:
			buf_str(&h->out, "[CLOSE]");
			h->closed = true;
			return;
		}
	}
}

static void feed_bytes(struct smtp_proto *p, struct harness *h, const char *data, size_t len)
{
	size_t step = h->chunk == 0 ? len : h->chunk;
	for (size_t off = 0; off < len && !h->closed; off += step) {
		size_t n = len - off < step ? len - off : step;
		handle(p, h, smtp_proto_feed(p, data + off, n));
	}
}

struct smtp_case {
	const char *name;
	const char *input;
	const char *expect;
	const char *reasons;   /* NULL: not checked */
	const char *after_tls; /* fed after the TLS handshake */
	bool whole_only;       /* the case depends on what arrives in one read */
	bool starttls;	       /* cfg.starttls_available */
	bool tls_required;     /* cfg.tls_required */
	bool hooks;	       /* install check_mail/check_rcpt */
	int xforward;	       /* 0: no xforward_allowed hook; 1: it permits; -1: it refuses */
	size_t max_command_line;
	size_t max_data_line;
	unsigned max_recipients;
	uint64_t max_message_size;
	unsigned max_header_count;
	size_t max_header_size;
	unsigned max_commands_before_mail;
	unsigned max_errors;
	size_t len; /* input length when it holds NUL bytes */
};

static void case_config(const struct smtp_case *c, struct harness *h, struct smtp_proto_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->hostname = "mx.test";
	smtp_proto_limits_default(&cfg->limits);
	if (c->max_command_line)
		cfg->limits.max_command_line = c->max_command_line;
	if (c->max_data_line)
		cfg->limits.max_data_line = c->max_data_line;
	if (c->max_recipients)
		cfg->limits.max_recipients = c->max_recipients;
	if (c->max_message_size)
		cfg->limits.max_message_size = c->max_message_size;
	if (c->max_header_count)
		cfg->limits.max_header_count = c->max_header_count;
	if (c->max_header_size)
		cfg->limits.max_header_size = c->max_header_size;
	if (c->max_commands_before_mail)
		cfg->limits.max_commands_before_mail = c->max_commands_before_mail;
	if (c->max_errors)
		cfg->limits.max_errors = c->max_errors;
	cfg->starttls_available = c->starttls;
	cfg->tls_required = c->tls_required;
	if (c->hooks) {
		cfg->check_mail = hook_check_mail;
		cfg->check_rcpt = hook_check_rcpt;
	}
	if (c->xforward != 0) {
		cfg->xforward_allowed = hook_xforward;
		h->xforward_permit = c->xforward > 0;
	}
	cfg->on_reject = hook_on_reject;
	cfg->hook_ctx = h;
}

static void print_escaped(const char *label, const char *s, size_t n)
{
	fprintf(stderr, "%s: \"", label);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n\"\n  \"", stderr);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputs("\"\n", stderr);
}

static void run_case(const struct smtp_case *c, size_t chunk)
{
	struct harness h = {.chunk = chunk, .after_tls = c->after_tls};
	struct smtp_proto_config cfg;
	case_config(c, &h, &cfg);
	struct smtp_proto *p = smtp_proto_new(&cfg);
	size_t len = c->len ? c->len : strlen(c->input);
	feed_bytes(p, &h, c->input, len);
	if (h.after_tls != NULL)
		fail_msg("%s: STARTTLS expected", c->name);
	collect_output(p, &h);
	buf_str(&h.out, "");
	buf_str(&h.reasons, "");
	if (strcmp(h.out.data, c->expect) != 0) {
		fprintf(stderr, "case %s, chunk %zu\n", c->name, chunk);
		print_escaped("expected", c->expect, strlen(c->expect));
		print_escaped("got     ", h.out.data, h.out.len);
		fail();
	}
	/* Whether XFORWARD is allowed is decided once per session. */
	if (h.xforward_asked > 1)
		fail_msg("case %s, chunk %zu: xforward_allowed asked %u times", c->name, chunk,
			 h.xforward_asked);
	if (c->reasons != NULL && strcmp(h.reasons.data, c->reasons) != 0)
		fail_msg("case %s, chunk %zu: reasons \"%s\", expected \"%s\"", c->name, chunk,
			 h.reasons.data, c->reasons);
	smtp_proto_free(p);
	free(h.out.data);
	free(h.reasons.data);
	free(h.rejects.data);
}

/* ---- the table ---- */

#define EHLO_BASE                                                                                  \
	"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
#define EHLO_R	 EHLO_BASE "250 ENHANCEDSTATUSCODES\r\n"
#define TLS_REQ	 "530 5.7.0 Must issue a STARTTLS command first\r\n"
#define EHLO_TLS EHLO_BASE "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
#define HELO_R	 "250 mx.test\r\n"
#define MAIL_R	 "250 2.1.0 Ok\r\n"
#define RCPT_R	 "250 2.1.5 Ok\r\n"
#define DATA_R	 "354 End data with <CR><LF>.<CR><LF>\r\n"
#define OK_R	 "250 2.0.0 Ok\r\n"
#define QUEUED	 "250 2.0.0 Ok: queued\r\n"
#define BYE	 "221 2.0.0 Bye\r\n[CLOSE]"
#define UNKNOWN	 "502 5.5.2 Error: command not recognized\r\n"
#define SYN_MAIL "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
#define SYN_RCPT "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
#define BAD_FROM "501 5.1.7 Bad sender address syntax\r\n"
#define BAD_TO	 "501 5.1.3 Bad recipient address syntax\r\n"
#define NONASCII "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"
#define TOO_BIG	 "552 5.3.4 Message size exceeds fixed limit\r\n"
#define HTTP_R	 "554 5.7.0 Error: HTTP requests are not accepted here\r\n[CLOSE]"
#define LONG_R	 "500 5.5.2 Error: line too long\r\n"

/* A transaction up to the 354, and its replies. */
#define START	"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
#define START_R HELO_R MAIL_R RCPT_R DATA_R
#define MSG(d)	"[MSG <a@b.example> <u@x.example> {" d "}]" QUEUED

/* XFORWARD: the EHLO reply to a permitted client, a transaction after it, the replies. */
#define EHLO_XF	   EHLO_BASE "250-ENHANCEDSTATUSCODES\r\n250 XFORWARD NAME ADDR PROTO HELO SOURCE\r\n"
#define XF_TX	   "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\nx\r\n.\r\n"
#define XF_TX_R	   MAIL_R RCPT_R DATA_R
#define XF_MSG(xf) "[MSG <a@b.example> <u@x.example> xf=" xf " {x\r\n}]" QUEUED
#define XF_BAD	   "501 5.5.4 Bad XFORWARD attribute\r\n"
#define XF_DENIED  "503 5.5.1 Error: XFORWARD not allowed\r\n"

static const struct smtp_case cases[] = {
    /* greeting and EHLO/HELO */
    {.name = "ehlo", .input = "EHLO client.example\r\n", .expect = EHLO_R},
    {.name = "ehlo offers starttls", .input = "EHLO c\r\n", .expect = EHLO_TLS, .starttls = true},
    {.name = "ehlo size shows the limit",
     .input = "EHLO c\r\n",
     .expect = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
	       "250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
     .max_message_size = 1000},
    {.name = "helo", .input = "HELO c\r\n", .expect = HELO_R},
    {.name = "ehlo without argument",
     .input = "EHLO\r\nEHLO   \r\nHELO\r\n",
     .expect = "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n"
	       "501 5.5.4 Syntax: EHLO hostname\r\n",
     .reasons = "syntax,syntax,syntax,"},
    {.name = "ehlo with a control character",
     .input = "EHLO a\x01z\r\n",
     .expect = "501 5.5.4 Syntax: EHLO hostname\r\n"},
    {.name = "verbs are case-insensitive",
     .input = "ehlo c\r\nMail From:<a@b.example>\r\nrcpt to:<u@x.example>\r\ndata\r\nx\r\n.\r\n"
	      "quit\r\n",
     .expect = EHLO_R MAIL_R RCPT_R DATA_R MSG("x\r\n") BYE},
    {.name = "commands may end in a bare LF",
     .input = "HELO c\nMAIL FROM:<a@b.example>\nRCPT TO:<u@x.example>\nDATA\nx\r\n.\r\nQUIT\n",
     .expect = START_R MSG("x\r\n") BYE},

    /* simple commands */
    {.name = "noop rset vrfy help",
     .input = "NOOP\r\nRSET\r\nVRFY root\r\nHELP\r\nNOOP hello\r\n",
     .expect = OK_R OK_R "252 2.5.2 Cannot VRFY user, but will accept message\r\n"
			 "214 2.0.0 See RFC 5321\r\n" OK_R,
     .reasons = ""},
    {.name = "quit closes and ignores the rest", .input = "QUIT\r\nNOOP\r\n", .expect = BYE},
    {.name = "unrecognised commands",
     .input = "EXPN staff\r\nAUTH PLAIN AGFAYgBj\r\nBDAT 10 LAST\r\nTURN\r\nXYZZY\r\n\r\n",
     .expect = UNKNOWN UNKNOWN UNKNOWN UNKNOWN UNKNOWN UNKNOWN,
     .reasons = "unknown_command,unknown_command,unknown_command,unknown_command,"
		"unknown_command,unknown_command,"},
    {.name = "NUL in a command line",
     .input = "NOOP\0x\r\nNOOP\r\n",
     .len = 14,
     .expect = UNKNOWN OK_R},

    /* sequence */
    {.name = "mail before helo",
     .input = "MAIL FROM:<a@b.example>\r\n",
     .expect = "503 5.5.1 Error: send HELO/EHLO first\r\n",
     .reasons = "bad_sequence,"},
    {.name = "nested mail",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n",
     .expect = HELO_R MAIL_R "503 5.5.1 Error: nested MAIL command\r\n",
     .reasons = "bad_sequence,"},
    {.name = "rcpt without mail",
     .input = "RCPT TO:<u@x.example>\r\nHELO c\r\nRCPT TO:<u@x.example>\r\n",
     .expect =
	 "503 5.5.1 Error: need MAIL command\r\n" HELO_R "503 5.5.1 Error: need MAIL command\r\n"},
    {.name = "data without rcpt",
     .input = "DATA\r\nHELO c\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n",
     .expect =
	 "503 5.5.1 Error: need RCPT command\r\n" HELO_R
	 "503 5.5.1 Error: need RCPT command\r\n" MAIL_R "503 5.5.1 Error: need RCPT command\r\n"},
    {.name = "data with an argument",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA x\r\n",
     .expect = HELO_R MAIL_R RCPT_R "501 5.5.4 Syntax: DATA\r\n"},
    {.name = "rset ends the transaction",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<u@x.example>\r\n"
	      "MAIL FROM:<a@b.example>\r\n",
     .expect = HELO_R MAIL_R OK_R "503 5.5.1 Error: need MAIL command\r\n" MAIL_R},
    {.name = "a second ehlo ends the transaction",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nEHLO c\r\n"
	      "DATA\r\nMAIL FROM:<a@b.example>\r\n",
     .expect = EHLO_R MAIL_R RCPT_R EHLO_R "503 5.5.1 Error: need RCPT command\r\n" MAIL_R},

    /* STARTTLS */
    {.name = "starttls not available",
     .input = "EHLO c\r\nSTARTTLS\r\n",
     .expect = EHLO_R "502 5.5.1 Error: STARTTLS not available\r\n"},
    {.name = "starttls, then ehlo again without starttls",
     .input = "EHLO c\r\nSTARTTLS\r\n",
     .after_tls = "MAIL FROM:<a@b.example>\r\nEHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\n"
		  "RCPT TO:<u@x.example>\r\nDATA\r\nx\r\n.\r\n",
     .starttls = true,
     .expect = EHLO_TLS "220 2.0.0 Ready to start TLS\r\n[TLS]"
			"503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_R
			"503 5.5.1 Error: TLS already active\r\n" MAIL_R RCPT_R DATA_R
			"[MSG <a@b.example> <u@x.example> tls {x\r\n}]" QUEUED},
    {.name = "starttls discards injected commands",
     .input = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n",
     .after_tls = "EHLO c\r\nRCPT TO:<u@x.example>\r\n",
     .starttls = true,
     .whole_only = true,
     .expect = EHLO_TLS "220 2.0.0 Ready to start TLS\r\n[TLS]" EHLO_R
			"503 5.5.1 Error: need MAIL command\r\n"},
    {.name = "starttls with an argument or in a transaction",
     .input = "EHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b.example>\r\nSTARTTLS\r\n",
     .starttls = true,
     .expect = EHLO_TLS "501 5.5.4 Syntax: STARTTLS\r\n" MAIL_R
			"503 5.5.1 Error: MAIL transaction in progress\r\n"},

    {.name = "tls required: transaction commands need starttls first",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
	      "VRFY u\r\nNOOP\r\nSTARTTLS\r\n",
     .after_tls = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
		  "x\r\n.\r\n",
     .starttls = true,
     .tls_required = true,
     .expect = EHLO_TLS TLS_REQ TLS_REQ TLS_REQ TLS_REQ
     "250 2.0.0 Ok\r\n"
     "220 2.0.0 Ready to start TLS\r\n[TLS]" EHLO_R MAIL_R RCPT_R DATA_R
     "[MSG <a@b.example> <u@x.example> tls {x\r\n}]" QUEUED,
     .reasons = "tls_required,tls_required,tls_required,tls_required,"},
    {.name = "tls required counts towards max_errors",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n"
	      "MAIL FROM:<a@b.example>\r\n",
     .starttls = true,
     .tls_required = true,
     .max_errors = 2,
     .expect = EHLO_TLS TLS_REQ TLS_REQ "421 4.7.0 mx.test Error: too many errors\r\n[CLOSE]"},

    /* MAIL syntax and parameters */
    {.name = "mail without from",
     .input = "HELO c\r\nMAIL\r\nMAIL TO:<a@b.example>\r\nMAIL FROM:\r\nMAIL FROM:   \r\n",
     .expect = HELO_R SYN_MAIL SYN_MAIL SYN_MAIL SYN_MAIL,
     .reasons = "syntax,syntax,syntax,syntax,"},
    {.name = "bad sender syntax",
     .input = "HELO c\r\nMAIL FROM:<a b@c.example>\r\nMAIL FROM:<a@b.example\r\n"
	      "MAIL FROM:a@b.example>\r\nMAIL FROM:<a@b.example>x\r\nMAIL FROM:<a@>\r\n"
	      "MAIL FROM:<@b.example>\r\nMAIL FROM:<a<b@c.example>\r\n",
     .expect = HELO_R BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM},
    {.name = "sender forms accepted",
     .input = "HELO c\r\nMAIL FROM: <a@b.example>\r\nRSET\r\nMAIL FROM:<>\r\nRSET\r\n"
	      "MAIL FROM:a@b.example\r\nRSET\r\nmail from:<@r1.example,@r2.example:a@b.example>\r\n"
	      "RCPT TO:<u@x.example>\r\nDATA\r\n.\r\n",
     .expect = HELO_R MAIL_R OK_R MAIL_R OK_R MAIL_R OK_R MAIL_R RCPT_R DATA_R MSG("")},
    {.name = "null sender reaches the message",
     .input = "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@x.example>\r\nDATA\r\nx\r\n.\r\n",
     .expect = START_R "[MSG <> <u@x.example> {x\r\n}]" QUEUED},
    {.name = "mail parameters",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
	      "RCPT TO:<u@x.example>\r\nDATA\r\n.\r\nMAIL FROM:<a@b.example> body=7bit\r\n"
	      "RCPT TO:<u@x.example>\r\nDATA\r\n.\r\n",
     .expect = EHLO_R MAIL_R RCPT_R DATA_R
     "[MSG <a@b.example> <u@x.example> utf8 8bit size=100 {}]" QUEUED MAIL_R RCPT_R DATA_R MSG("")},
    {.name = "bad mail parameters",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=abc\r\nMAIL FROM:<a@b.example> SIZE=\r\n"
	      "MAIL FROM:<a@b.example> SIZE=-1\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
	      "MAIL FROM:<a@b.example> BODY\r\nMAIL FROM:<a@b.example> FOO=1\r\n"
	      "MAIL FROM:<a@b.example> RET=HDRS\r\nMAIL FROM:<a@b.example> "
	      "SIZE=99999999999999999999999\r\n",
     .expect = EHLO_R "501 5.5.4 Bad SIZE parameter value\r\n"
		      "501 5.5.4 Bad SIZE parameter value\r\n"
		      "501 5.5.4 Bad SIZE parameter value\r\n"
		      "501 5.5.4 Bad BODY parameter value\r\n"
		      "501 5.5.4 Bad BODY parameter value\r\n"
		      "555 5.5.4 Unsupported parameter: FOO\r\n"
		      "555 5.5.4 Unsupported parameter: RET\r\n"
		      "501 5.5.4 Bad SIZE parameter value\r\n",
     .max_errors = 50},
    {.name = "declared size over the limit",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=52428801\r\n"
	      "MAIL FROM:<a@b.example> SIZE=52428800\r\n",
     .expect = EHLO_R TOO_BIG MAIL_R,
     .reasons = "message_too_large,"},
    {.name = "non-ascii sender needs smtputf8",
     .input = "EHLO c\r\nMAIL FROM:<\xc3\xbc@b.example>\r\n"
	      "MAIL FROM:<\xc3\xbc@b.example> SMTPUTF8\r\nRCPT TO:<\xe5\xb1\xb1@x.example>\r\n"
	      "DATA\r\n.\r\n",
     .expect = EHLO_R NONASCII MAIL_R RCPT_R DATA_R
     "[MSG <\xc3\xbc@b.example> <\xe5\xb1\xb1@x.example> utf8 {}]" QUEUED},
    {.name = "non-ascii recipient needs smtputf8",
     .input = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<\xe5\xb1\xb1@x.example>\r\n",
     .expect = EHLO_R MAIL_R NONASCII},
    {.name = "malformed utf-8 address",
     .input = "EHLO c\r\nMAIL FROM:<\xff@b.example> SMTPUTF8\r\n"
	      "MAIL FROM:<\xc3@b.example> SMTPUTF8\r\n",
     .expect = EHLO_R BAD_FROM BAD_FROM},

    /* RCPT */
    {.name = "rcpt syntax",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT\r\nRCPT FROM:<u@x.example>\r\n"
	      "RCPT TO:\r\nRCPT TO:<user>\r\nRCPT TO:<>\r\nRCPT TO:<u @x.example>\r\n"
	      "RCPT TO:<u@x.example\r\nRCPT TO:<u@x.example> NOTIFY=NEVER\r\n",
     .expect = HELO_R MAIL_R SYN_RCPT SYN_RCPT SYN_RCPT BAD_TO BAD_TO BAD_TO BAD_TO
     "555 5.5.4 Unsupported parameter: NOTIFY\r\n"},
    {.name = "postmaster without domain",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<postmaster>\r\n"
	      "RCPT TO:<PostMaster>\r\nRCPT TO: <v@x.example>\r\nDATA\r\n.\r\n",
     .expect = HELO_R MAIL_R RCPT_R RCPT_R RCPT_R DATA_R
     "[MSG <a@b.example> <postmaster><PostMaster><v@x.example> {}]" QUEUED},

    /* message data */
    {.name = "simple message",
     .input = START "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
     .expect = START_R MSG("Subject: hi\r\n\r\nbody\r\n") BYE},
    {.name = "empty message", .input = START ".\r\n", .expect = START_R MSG("")},
    {.name = "dot-unstuffing",
     .input = START "..a\r\n...\r\n..\r\n.x\r\n.\r\n",
     .expect = START_R MSG(".a\r\n..\r\n.\r\nx\r\n")},
    {.name = "no unstuffing after a bare LF",
     .input = START "x\n..y\r\n.\r\n",
     .expect = START_R MSG("x\n..y\r\n")},
    {.name = "smuggling: CRLF . LF is data",
     .input = START "a\r\n.\nMAIL FROM:<e@x.example>\r\n.\r\n",
     .expect = START_R MSG("a\r\n.\nMAIL FROM:<e@x.example>\r\n")},
    {.name = "smuggling: LF . LF is data",
     .input = START "a\n.\nb\r\n.\r\n",
     .expect = START_R MSG("a\n.\nb\r\n")},
    {.name = "smuggling: LF . CRLF is data",
     .input = START "a\n.\r\nRSET\r\n.\r\n",
     .expect = START_R MSG("a\n.\r\nRSET\r\n")},
    {.name = "smuggling: bare LF at the start",
     .input = START ".\nQUIT\r\n.\r\n",
     .expect = START_R MSG(".\nQUIT\r\n")},
    {.name = "dot CR without LF",
     .input = START "a\r\n.\r\r\n.\rX\r\n.\r\n",
     .expect = START_R MSG("a\r\n\r\r\n\rX\r\n")},
    {.name = "8-bit and utf-8 data kept byte-exact",
     .input = START "Subject: =?ISO-2022-JP?B?GyRCJEgbKEI=?=\r\n\r\n\x1b$B$3$s\x1b(B\r\n"
		    "\xe6\x97\xa5\xe6\x9c\xac\r\n\x82\xa0\x80\xff\x01\r\n.\r\n",
     .expect = START_R MSG("Subject: =?ISO-2022-JP?B?GyRCJEgbKEI=?=\r\n\r\n\x1b$B$3$s\x1b(B\r\n"
			   "\xe6\x97\xa5\xe6\x9c\xac\r\n\x82\xa0\x80\xff\x01\r\n")},
    {.name = "pipelined transactions",
     .input = START "one\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\n"
		    "RCPT TO:<w@x.example>\r\nDATA\r\ntwo\r\n.\r\nNOOP\r\nQUIT\r\n",
     .expect = START_R MSG("one\r\n") MAIL_R RCPT_R RCPT_R DATA_R
     "[MSG <a@b.example> <u@x.example><w@x.example> {two\r\n}]" QUEUED OK_R BYE},
    {.name = "commands inside data are data",
     .input = START "QUIT\r\nRSET\r\n.\r\n",
     .expect = START_R MSG("QUIT\r\nRSET\r\n")},

    /* limits */
    {.name = "command line length",
     .input = "NOOP 123456789\r\nNOOP 1234567890\r\nNOOP 12345678901234567890123\r\nNOOP\r\n"
	      "NOOP 1234567890\nNOOP 12345678901\n",
     .max_command_line = 16,
     .expect = OK_R LONG_R LONG_R OK_R OK_R LONG_R,
     .reasons = "line_too_long,line_too_long,line_too_long,"},
    {.name = "over-long line split across reads",
     .input = "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx QUIT\r\nNOOP\r\n",
     .max_command_line = 16,
     .expect = LONG_R OK_R},
    {.name = "an endless line is cut after max_errors lines' worth",
     .input = "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
     .max_command_line = 16,
     .max_errors = 2,
     .expect = LONG_R "421 4.7.0 mx.test Error: too many errors\r\n[CLOSE]",
     .reasons = "line_too_long,too_many_errors,"},
    {.name = "an over-long line's excess counts as errors",
     .input = "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nNOOP\r\n"
	      "NOOP xxxxxxxxxxxxxxxx\r\nNOOP\r\n",
     .max_command_line = 16,
     .max_errors = 2,
     .expect = LONG_R OK_R "421 4.7.0 mx.test Error: too many errors\r\n[CLOSE]",
     .reasons = "line_too_long,too_many_errors,"},
    {.name = "too many recipients",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\n"
	      "RCPT TO:<2@x.example>\r\nRCPT TO:<3@x.example>\r\nDATA\r\n.\r\n",
     .max_recipients = 2,
     .expect =
	 HELO_R MAIL_R RCPT_R RCPT_R "452 4.5.3 Error: too many recipients\r\n" DATA_R
				     "[MSG <a@b.example> <1@x.example><2@x.example> {}]" QUEUED,
     .reasons = "too_many_recipients,"},
    {.name = "recipient overshoot counts as errors",
     .input = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\n"
	      "RCPT TO:<2@x.example>\r\nRCPT TO:<3@x.example>\r\nRCPT TO:<4@x.example>\r\n"
	      "RCPT TO:<5@x.example>\r\n",
     .max_recipients = 1,
     .max_errors = 2,
     .expect = HELO_R MAIL_R RCPT_R "452 4.5.3 Error: too many recipients\r\n"
				    "452 4.5.3 Error: too many recipients\r\n"
				    "452 4.5.3 Error: too many recipients\r\n"
				    "421 4.7.0 mx.test Error: too many errors\r\n[CLOSE]"},
    {.name = "message size limit",
     .input = START "123456789\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\n"
		    "DATA\r\n1234567890\r\nmore\r\n.\r\nNOOP\r\n",
     .max_message_size = 11,
     .expect = START_R MSG("123456789\r\n") MAIL_R RCPT_R DATA_R TOO_BIG OK_R,
     .reasons = "message_too_large,"},
    {.name = "header count limit",
     .input = START "A: 1\r\nB: 2\r\n\r\nC: 3\r\n.\r\n"
		    "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
		    "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n.\r\n",
     .max_header_count = 2,
     .expect = START_R MSG("A: 1\r\nB: 2\r\n\r\nC: 3\r\n") MAIL_R RCPT_R DATA_R
     "552 5.3.4 Error: too many header fields\r\n",
     .reasons = "header_limit,"},
    {.name = "header size limit counts folded lines",
     .input = START "Subject: 123456789\r\n\r\n.\r\n"
		    "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
		    "Subject: 1234\r\n 56789\r\n\r\n.\r\n",
     .max_header_size = 20,
     .expect = START_R MSG("Subject: 123456789\r\n\r\n") MAIL_R RCPT_R DATA_R
     "552 5.3.4 Error: header field too long\r\n",
     .reasons = "header_limit,"},
    {.name = "body lines are no headers",
     .input = START "no header here but a very long body line\r\nX: y\r\n.\r\n",
     .max_header_size = 20,
     .max_header_count = 1,
     .expect = START_R MSG("no header here but a very long body line\r\nX: y\r\n")},
    {.name = "data line limit",
     .input = START "12345678\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\n"
		    "DATA\r\n123456789\r\n.\r\n",
     .max_data_line = 10,
     .expect = START_R MSG("12345678\r\n") MAIL_R RCPT_R DATA_R
     "500 5.5.2 Error: line too long in message data\r\n",
     .reasons = "line_too_long,"},
    {.name = "too many commands",
     .input = "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
     .max_commands_before_mail = 3,
     .expect = OK_R OK_R OK_R "421 4.7.0 mx.test Error: too many commands\r\n[CLOSE]",
     .reasons = "too_many_commands,"},
    {.name = "mail resets the command count",
     .input = "HELO c\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nNOOP\r\nHELP\r\nVRFY x\r\n",
     .max_commands_before_mail = 3,
     .expect =
	 HELO_R OK_R MAIL_R OK_R OK_R "214 2.0.0 See RFC 5321\r\n"
				      "421 4.7.0 mx.test Error: too many commands\r\n[CLOSE]"},
    {.name = "too many errors",
     .input = "XYZ\r\nMAIL FROM:<a@b.example>\r\nXYZ\r\nNOOP\r\n",
     .max_errors = 2,
     .expect = UNKNOWN "503 5.5.1 Error: send HELO/EHLO first\r\n"
		       "421 4.7.0 mx.test Error: too many errors\r\n[CLOSE]",
     .reasons = "unknown_command,bad_sequence,too_many_errors,"},

    /* HTTP */
    {.name = "http request first",
     .input = "GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n",
     .expect = HTTP_R,
     .reasons = "http_request,"},
    {.name = "http request later",
     .input = "EHLO c\r\nPOST /api HTTP/1.1\r\n",
     .expect = EHLO_R HTTP_R},
    {.name = "http header lines", .input = "Host: mx.test\r\n", .expect = HTTP_R},
    {.name = "http user-agent", .input = "user-agent: curl/8\r\n", .expect = HTTP_R},
    {.name = "http connect", .input = "CONNECT mx.test:25 HTTP/1.1\r\n", .expect = HTTP_R},
    {.name = "http methods", .input = "HEAD / HTTP/1.0\r\n", .expect = HTTP_R},
    {.name = "http options", .input = "OPTIONS * HTTP/1.1\r\n", .expect = HTTP_R},
    {.name = "not http: GETX", .input = "GETX /\r\n", .expect = UNKNOWN},

    /* XFORWARD (Postfix content filter) */
    {.name = "xforward advertised to a permitted client",
     .input = "EHLO c\r\n",
     .xforward = 1,
     .expect = EHLO_XF},
    {.name = "xforward neither advertised nor accepted when refused",
     .input = "EHLO c\r\nXFORWARD ADDR=192.0.2.7\r\n" XF_TX,
     .xforward = -1,
     .expect = EHLO_R XF_DENIED XF_TX_R MSG("x\r\n"),
     .reasons = "policy,"},
    {.name = "xforward without a hook is never allowed",
     .input = "EHLO c\r\nXFORWARD ADDR=192.0.2.7\r\n",
     .expect = EHLO_R XF_DENIED},
    {.name = "xforward attributes reach the message, then reset",
     .input = "EHLO c\r\nXFORWARD NAME=mail.example.org ADDR=192.0.2.7 PROTO=esmtp "
	      "HELO=mail.example.org SOURCE=REMOTE\r\n" XF_TX XF_TX,
     .xforward = 1,
     .expect = EHLO_XF OK_R XF_TX_R XF_MSG("192.0.2.7/mail.example.org/mail.example.org/ESMTP")
	 XF_TX_R MSG("x\r\n"),
     .reasons = ""},
    {.name = "xforward commands accumulate, names are case-insensitive",
     .input = "EHLO c\r\nxforward addr=192.0.2.7\r\nXFORWARD Helo=h.example\r\n" XF_TX,
     .xforward = 1,
     .expect = EHLO_XF OK_R OK_R XF_TX_R XF_MSG("192.0.2.7/-/h.example/-")},
    /* Which values are bad is test_smtp_xforward's table; here: the replies. */
    {.name = "xforward bad attributes change nothing",
     .input = "EHLO c\r\nXFORWARD ADDR=192.0.2.7 FOO=1\r\nXFORWARD HELO=a+ZZ\r\n"
	      "XFORWARD\r\n" XF_TX,
     .xforward = 1,
     .expect = EHLO_XF XF_BAD XF_BAD
     "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n" XF_TX_R MSG("x\r\n"),
     .reasons = "syntax,syntax,syntax,"},
    {.name = "xforward only before MAIL and after EHLO",
     .input = "XFORWARD ADDR=192.0.2.7\r\nEHLO c\r\nMAIL FROM:<a@b.example>\r\n"
	      "XFORWARD ADDR=192.0.2.7\r\nRCPT TO:<u@x.example>\r\nDATA\r\nx\r\n.\r\n",
     .xforward = 1,
     .expect = "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_XF MAIL_R
	       "503 5.5.1 Error: MAIL transaction in progress\r\n" RCPT_R DATA_R MSG("x\r\n"),
     .reasons = "bad_sequence,bad_sequence,"},
    {.name = "xforward is cleared by RSET, EHLO and a refused message",
     .input = "EHLO c\r\nXFORWARD ADDR=192.0.2.1\r\nRSET\r\n" XF_TX
	      "XFORWARD ADDR=192.0.2.2\r\nEHLO c\r\n" XF_TX
	      "XFORWARD ADDR=192.0.2.3\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\n"
	      "DATA\r\n0123456789\r\n.\r\n" XF_TX,
     .xforward = 1,
     .max_message_size = 8,
     .expect = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 8\r\n250-8BITMIME\r\n"
	       "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250 XFORWARD NAME ADDR PROTO HELO SOURCE\r\n" OK_R OK_R XF_TX_R MSG("x\r\n") OK_R
     "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 8\r\n250-8BITMIME\r\n"
     "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
     "250 XFORWARD NAME ADDR PROTO HELO SOURCE\r\n" XF_TX_R MSG("x\r\n")
	 OK_R XF_TX_R TOO_BIG XF_TX_R MSG("x\r\n")},

    /* policy hooks */
    {.name = "policy refuses a sender",
     .input =
	 "HELO c\r\nMAIL FROM:<spam@bad.example>\r\nMAIL FROM:<a@b.example>\r\n"
	 "RCPT TO:<nobody@x.example>\r\nRCPT TO:<later@x.example>\r\nRCPT TO:<u@x.example>\r\n",
     .hooks = true,
     .expect = HELO_R "550 5.7.1 Sender blocked\r\n" MAIL_R
		      "550 5.7.1 Recipient not accepted\r\n451 4.3.0 Try later\r\n" RCPT_R,
     .reasons = "policy,policy,policy,"},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_case(&cases[i], 0);
		if (cases[i].whole_only)
			continue;
		run_case(&cases[i], 1);
		run_case(&cases[i], 7);
	}
}

/* ---- scenarios outside the table ---- */

static struct smtp_proto *new_default(struct harness *h, struct smtp_proto_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->hostname = "mx.test";
	smtp_proto_limits_default(&cfg->limits);
	cfg->on_reject = hook_on_reject;
	cfg->hook_ctx = h;
	return smtp_proto_new(cfg);
}

static char *take_output(struct smtp_proto *p)
{
	size_t n;
	const char *o = smtp_proto_output(p, &n);
	char *s = strndup(o, n);
	smtp_proto_output_consumed(p, n);
	return s;
}

static void assert_output(struct smtp_proto *p, const char *expect)
{
	char *s = take_output(p);
	assert_string_equal(s, expect);
	free(s);
}

static void test_defaults(void **state)
{
	struct smtp_proto_limits l;
	smtp_proto_limits_default(&l);
	assert_int_equal(l.max_command_line, 512);
	assert_int_equal(l.max_data_line, 65536);
	assert_int_equal(l.max_recipients, 1000);
	assert_true(l.max_message_size == 50u * 1024 * 1024);
	assert_int_equal(l.max_header_count, 1000);
	assert_int_equal(l.max_header_size, 65536);
	assert_int_equal(l.max_commands_before_mail, 50);
	assert_int_equal(l.max_errors, 20);
}

/* What the session's deadlines follow: the wait state and the completed lines. */
static void test_waiting_for(void **state)
{
	static const struct {
		const char *input; /* fed in one piece after the previous ones */
		enum smtp_proto_wait wait;
		uint64_t lines;
	} steps[] = {
	    {"", SMTP_WAIT_COMMAND, 0},
	    {"EH", SMTP_WAIT_COMMAND_REST, 0},
	    {"LO c\r", SMTP_WAIT_COMMAND_REST, 0},
	    {"\n", SMTP_WAIT_COMMAND, 1},
	    {"NOOP\r\nNO", SMTP_WAIT_COMMAND_REST, 2},
	    {"OP\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n", SMTP_WAIT_DATA,
	     6},
	    {"Subject: x\r\n\r\nbody", SMTP_WAIT_DATA, 6},
	    {"\r\n.\r\n", SMTP_WAIT_NOTHING, 6}, /* the message awaits its result */
	};
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		smtp_proto_feed(p, steps[i].input, strlen(steps[i].input));
		assert_int_equal(smtp_proto_waiting_for(p), steps[i].wait);
		assert_int_equal(smtp_proto_lines_done(p), steps[i].lines);
	}
	smtp_message_free(smtp_proto_message(p));
	smtp_proto_message_done(p, "250 2.0.0 Ok");
	assert_int_equal(smtp_proto_waiting_for(p), SMTP_WAIT_COMMAND);
	/* An over-long line stays "begun" while its rest is skipped. */
	char longline[600];
	memset(longline, 'x', sizeof(longline));
	smtp_proto_feed(p, longline, sizeof(longline));
	assert_int_equal(smtp_proto_waiting_for(p), SMTP_WAIT_COMMAND_REST);
	smtp_proto_feed(p, "\r\n", 2);
	assert_int_equal(smtp_proto_waiting_for(p), SMTP_WAIT_COMMAND);
	assert_int_equal(smtp_proto_lines_done(p), 7);
	smtp_proto_timeout(p);
	assert_int_equal(smtp_proto_waiting_for(p), SMTP_WAIT_NOTHING);
	smtp_proto_free(p);
	free(h.reasons.data);
	free(h.rejects.data);
}

static void test_greeting_timeout_shutdown(void **state)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	smtp_proto_greeting(p);
	assert_output(p, "220 mx.test ESMTP Lazaret\r\n");
	assert_int_equal(smtp_proto_timeout(p), SMTP_EVENT_CLOSE);
	assert_output(p, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	/* Closed: further input is ignored. */
	assert_int_equal(smtp_proto_feed(p, "NOOP\r\n", 6), SMTP_EVENT_CLOSE);
	assert_output(p, "");
	smtp_proto_free(p);

	p = new_default(&h, &cfg);
	assert_int_equal(smtp_proto_feed(p, START "partial", strlen(START "partial")),
			 SMTP_EVENT_NONE);
	assert_true(smtp_proto_in_transaction(p));
	assert_int_equal(smtp_proto_shutdown(p), SMTP_EVENT_CLOSE);
	assert_output(p, START_R "421 4.3.2 mx.test Service shutting down\r\n");
	buf_str(&h.reasons, "");
	assert_string_equal(h.reasons.data, "timeout,shutdown,");
	smtp_proto_free(p);
	free(h.reasons.data);
	free(h.rejects.data);
	smtp_proto_free(NULL);
	smtp_message_free(NULL);
}

/* A message event stops processing until message_done; then the rest runs in order. */
static void test_message_event_pauses_pipeline(void **state)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	static const char in[] = START "hello\r\n.\r\nNOOP\r\nMAIL FROM:<c@d.example>\r\n";
	assert_int_equal(smtp_proto_feed(p, in, strlen(in)), SMTP_EVENT_MESSAGE);
	assert_output(p, START_R);
	assert_true(smtp_proto_awaiting_result(p));
	/* More input while the message is out is only buffered. */
	assert_int_equal(smtp_proto_feed(p, "QUIT\r\n", 6), SMTP_EVENT_NONE);
	assert_output(p, "");
	struct smtp_message *m = smtp_proto_message(p);
	assert_non_null(m);
	assert_string_equal(m->env.helo, "c");
	assert_false(m->env.esmtp);
	assert_string_equal(m->env.sender, "a@b.example");
	assert_int_equal(m->env.nrcpts, 1);
	assert_string_equal(m->env.rcpts[0], "u@x.example");
	assert_int_equal(m->len, 7);
	assert_memory_equal(m->data, "hello\r\n", 7);
	smtp_message_free(m);
	smtp_proto_message_done(p, "451 4.3.0 Temporary storage failure\r\n250 forged");
	assert_output(p, "451 4.3.0 Temporary storage failure\r\n");
	assert_false(smtp_proto_in_transaction(p));
	assert_int_equal(smtp_proto_feed(p, NULL, 0), SMTP_EVENT_CLOSE);
	assert_output(p, OK_R MAIL_R "221 2.0.0 Bye\r\n");
	smtp_proto_free(p);
	free(h.reasons.data);
	free(h.rejects.data);
}

/* message_done without taking the message, and free with a message pending: no leaks. */
static void test_message_ownership(void **state)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	static const char in[] = START "x\r\n.\r\n";
	assert_int_equal(smtp_proto_feed(p, in, strlen(in)), SMTP_EVENT_MESSAGE);
	smtp_proto_message_done(p, "250 2.0.0 Ok: dropped");
	assert_null(smtp_proto_message(p));
	static const char again[] = "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
				    "y\r\n.\r\n";
	assert_int_equal(smtp_proto_feed(p, again, strlen(again)), SMTP_EVENT_MESSAGE);
	smtp_proto_free(p);
}

static void test_output_partially_consumed(void **state)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	smtp_proto_greeting(p);
	size_t n;
	smtp_proto_output(p, &n);
	smtp_proto_output_consumed(p, 4);
	assert_int_equal(smtp_proto_feed(p, "NOOP\r\nNOOP\r\n", 12), SMTP_EVENT_NONE);
	assert_output(p, "mx.test ESMTP Lazaret\r\n" OK_R OK_R);
	smtp_proto_free(p);
}

/* Builds n bytes of message text in 78-octet CRLF lines, some starting with ".". */
static char *make_body(size_t n)
{
	char *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++) {
		size_t col = i % 80;
		b[i] = col == 78 ? '\r' : col == 79 ? '\n' : (char)('!' + (i / 80 + col) % 90);
	}
	return b;
}

static void run_large(size_t body_len, bool expect_stored)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	char *body = make_body(body_len);
	/* Dot-stuff it as a client would. */
	size_t cap = body_len + body_len / 40 + 16, wlen = 0;
	char *wire = malloc(cap);
	assert_non_null(wire);
	for (size_t i = 0; i < body_len; i++) {
		if ((i == 0 || (body[i - 1] == '\n')) && body[i] == '.')
			wire[wlen++] = '.';
		wire[wlen++] = body[i];
	}
	memcpy(wire + wlen, ".\r\n", 3);
	wlen += 3;

	assert_int_equal(smtp_proto_feed(p, START, strlen(START)), SMTP_EVENT_NONE);
	enum smtp_proto_event ev = SMTP_EVENT_NONE;
	size_t off = 0;
	while (off < wlen) {
		size_t n = wlen - off < 65536 ? wlen - off : 65536;
		ev = smtp_proto_feed(p, wire + off, n);
		off += n;
		if (ev != SMTP_EVENT_NONE)
			break;
	}
	assert_int_equal(off, wlen);
	if (expect_stored) {
		assert_int_equal(ev, SMTP_EVENT_MESSAGE);
		struct smtp_message *m = smtp_proto_message(p);
		assert_int_equal(m->len, body_len);
		assert_true(memcmp(m->data, body, body_len) == 0);
		smtp_message_free(m);
		smtp_proto_message_done(p, "250 2.0.0 Ok");
		assert_output(p, START_R "250 2.0.0 Ok\r\n");
	} else {
		assert_int_equal(ev, SMTP_EVENT_NONE);
		assert_output(p, START_R TOO_BIG);
		assert_false(smtp_proto_in_transaction(p));
	}
	free(body);
	free(wire);
	free(h.reasons.data);
	free(h.rejects.data);
	smtp_proto_free(p);
}

static void test_large_message(void **state)
{
	run_large(50u * 1024 * 1024, true);
	run_large(50u * 1024 * 1024 + 80, false);
}

/* Many small messages on one session, all pipelined in one feed. */
static void test_many_messages(void **state)
{
	struct harness h = {0};
	struct smtp_proto_config cfg;
	struct smtp_proto *p = new_default(&h, &cfg);
	static const char one[] = "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"
				  "Subject: x\r\n\r\nbody\r\n.\r\n";
	const unsigned count = 20000;
	size_t len = strlen(one) * count + 8;
	char *in = malloc(len);
	assert_non_null(in);
	memcpy(in, "EHLO c\r\n", 8);
	for (unsigned i = 0; i < count; i++)
		memcpy(in + 8 + i * strlen(one), one, strlen(one));
	h.chunk = 0;
	feed_bytes(p, &h, in, len);
	assert_int_equal(h.messages, count);
	assert_false(h.closed);
	free(in);
	free(h.out.data);
	smtp_proto_free(p);
}

/* Random splits of a long mixed session give the same transcript as one feed. */
static void test_random_splits(void **state)
{
	static const char in[] =
	    "EHLO c\r\nNOOP\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n"
	    "RCPT TO:<u@x.example>\r\nRCPT TO:<v@x.example>\r\nDATA\r\n"
	    "A: b\r\n c\r\n\r\n..x\r\n.\ny\n.\r\nz\r\n.\r\r\n.\r\n"
	    "RSET\r\nVRFY a\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n"
	    ".\r\nQUIT\r\n";
	char *reference = NULL;
	srand(12345);
	for (int round = 0; round < 300; round++) {
		struct harness h = {0};
		struct smtp_proto_config cfg;
		struct smtp_proto *p = new_default(&h, &cfg);
		size_t len = strlen(in), off = 0;
		while (off < len && !h.closed) {
			size_t n = round == 0 ? len : 1 + (size_t)rand() % 13;
			if (n > len - off)
				n = len - off;
			handle(p, &h, smtp_proto_feed(p, in + off, n));
			off += n;
		}
		buf_str(&h.out, "");
		if (reference == NULL)
			reference = strdup(h.out.data);
		else
			assert_string_equal(h.out.data, reference);
		free(h.out.data);
		smtp_proto_free(p);
	}
	assert_non_null(strstr(reference, "{A: b\r\n c\r\n\r\n.x\r\n.\ny\n.\r\nz\r\n\r\r\n}"));
	assert_non_null(strstr(reference, "[CLOSE]"));
	free(reference);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_greeting_timeout_shutdown),
	    cmocka_unit_test(test_waiting_for),
	    cmocka_unit_test(test_message_event_pauses_pipeline),
	    cmocka_unit_test(test_message_ownership),
	    cmocka_unit_test(test_output_partially_consumed),
	    cmocka_unit_test(test_large_message),
	    cmocka_unit_test(test_many_messages),
	    cmocka_unit_test(test_random_splits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
