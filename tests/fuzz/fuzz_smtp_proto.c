/*
 * fuzz_smtp_proto — libFuzzer target for the SMTP server state machine.
 *
 * The first bytes of the input choose small limits and how the rest is cut into
 * reads, so limit paths and read boundaries are explored along with the command
 * and data parsers. The target acts on every event like the session glue does
 * and checks the machine's promises: every reply ends in CRLF, a message is
 * handed out only with SMTP_EVENT_MESSAGE, and nothing but CLOSE follows CLOSE.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_check(void *ctx, const char *addr, char *reply, size_t replylen)
{
	/* Refuse some addresses with a hostile reply text (CRLF inside). */
	if (addr[0] == 'x') {
		strncpy(reply, "550 5.7.1 no\r\n250 forged", replylen - 1);
		reply[replylen - 1] = '\0';
		return -1;
	}
	return 0;
}

static void fuzz_on_reject(void *ctx, const char *reason, const char *reply)
{
	if (reason == NULL || reply == NULL || (reply[0] != '4' && reply[0] != '5'))
		abort();
}

static void drain(struct smtp_proto *p)
{
	size_t n;
	const char *o = smtp_proto_output(p, &n);
	if (n > 0 && (n < 2 || o[n - 2] != '\r' || o[n - 1] != '\n'))
		abort();
	/* Consume in two steps to exercise partial writes. */
	smtp_proto_output_consumed(p, n / 2);
	smtp_proto_output(p, &n);
	smtp_proto_output_consumed(p, n);
}

/* Acts on ev; returns false once the session is closed. */
static bool handle(struct smtp_proto *p, enum smtp_proto_event ev)
{
	for (;;) {
		drain(p);
		switch (ev) {
		case SMTP_EVENT_NONE:
			return true;
		case SMTP_EVENT_MESSAGE: {
			struct smtp_message *m = smtp_proto_message(p);
			if (m == NULL || m->env.nrcpts == 0 || m->env.sender == NULL)
				abort();
			if (m->len > 0 && m->data == NULL)
				abort();
			smtp_message_free(m);
			smtp_proto_message_done(p, "250 2.0.0 Ok");
			ev = smtp_proto_feed(p, NULL, 0);
			break;
		}
		case SMTP_EVENT_STARTTLS:
			smtp_proto_tls_started(p);
			return true;
		case SMTP_EVENT_CLOSE:
			if (smtp_proto_feed(p, "NOOP\r\n", 6) != SMTP_EVENT_CLOSE)
				abort();
			return false;
		}
	}
}

/* XFORWARD permitted for this input (knob 16): the parser of its attributes runs. */
static bool fuzz_xforward_allowed(void *ctx)
{
	(void)ctx;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	struct smtp_proto_config cfg = {.hostname = "fuzz.test"};
	smtp_proto_limits_default(&cfg.limits);
	uint8_t knobs = data[0];
	size_t step = data[1] == 0 ? size : data[1];
	if (knobs & 1) {
		cfg.limits.max_command_line = 16 + (data[2] & 63);
		cfg.limits.max_data_line = 8 + (data[2] & 31);
		cfg.limits.max_message_size = 64 + data[2];
		cfg.limits.max_header_count = 1 + (data[2] & 3);
		cfg.limits.max_header_size = 10 + (data[2] & 15);
		cfg.limits.max_recipients = 1 + (data[2] & 3);
		cfg.limits.max_commands_before_mail = 2 + (data[2] & 7);
		cfg.limits.max_errors = 1 + (data[2] & 7);
	}
	cfg.starttls_available = (knobs & 2) != 0;
	if (knobs & 4) {
		cfg.check_mail = fuzz_check;
		cfg.check_rcpt = fuzz_check;
	}
	if (knobs & 16)
		cfg.xforward_allowed = fuzz_xforward_allowed;
	cfg.on_reject = fuzz_on_reject;
	data += 3;
	size -= 3;

	struct smtp_proto *p = smtp_proto_new(&cfg);
	smtp_proto_greeting(p);
	drain(p);
	bool open = true;
	for (size_t off = 0; off < size && open; off += step) {
		size_t n = size - off < step ? size - off : step;
		open = handle(p, smtp_proto_feed(p, data + off, n));
	}
	if (open && (knobs & 8))
		handle(p, smtp_proto_timeout(p));
	smtp_proto_free(p);
	return 0;
}
