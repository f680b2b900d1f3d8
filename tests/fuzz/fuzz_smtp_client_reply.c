/*
 * libFuzzer target for the outbound SMTP client's reply parser
 * (smtp_client_reply_line in src/smtp/smtp_client.c): the input is what a server
 * sends, cut into lines as the client reads them (at LF, one CR before it dropped,
 * a line of SMTP_CLIENT_REPLY_LINE_MAX bytes or more ends the session), and fed as
 * a sequence of replies.
 *
 * Byte 0: bit 0 makes the replies EHLO replies (extension lines noted); the other
 * bits and byte 1 give the reply text's capacity (so the cut at the capacity is
 * reached with short inputs; 0 = SMTP_CLIENT_REPLY_TEXT_MAX).
 *
 * The run fails on a crash, a sanitizer report, or a broken promise: a return code
 * the header does not list; a reply whose code is not its lines' first three
 * digits or differs between lines; a reply going on after a line without '-' or
 * ending on one with it; text that is not exactly the lines joined by spaces, with
 * bytes that are not printable ASCII as '?', cut at the capacity; an extension
 * flag set outside an EHLO reply.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The text we expect: the reply's lines so far, joined and cleaned, uncut. */
struct expected_text {
	char buf[SMTP_CLIENT_REPLY_LINES_MAX * (SMTP_CLIENT_REPLY_LINE_MAX + 1)];
	size_t len;
};

static void expected_add(struct expected_text *e, const char *line, bool first)
{
	if (!first)
		e->buf[e->len++] = ' ';
	for (const unsigned char *p = (const unsigned char *)line; *p != '\0'; p++)
		e->buf[e->len++] = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
	e->buf[e->len] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct expected_text expect;
	static char text[SMTP_CLIENT_REPLY_TEXT_MAX];
	static char line[SMTP_CLIENT_REPLY_LINE_MAX];

	if (size < 2)
		return 0;
	bool ehlo_mode = data[0] & 1;
	size_t cap = (((size_t)data[0] >> 1) << 8 | data[1]) % (SMTP_CLIENT_REPLY_TEXT_MAX + 1);
	if (cap == 0)
		cap = SMTP_CLIENT_REPLY_TEXT_MAX;
	data += 2;
	size -= 2;

	struct smtp_client_result ehlo = {0};
	unsigned index = 0;
	int code = 0, first_code = 0;
	size_t pos = 0;
	while (pos < size) {
		/* As smtp_conn_read_line: a line must fit the read buffer with its LF. */
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		if (nl == NULL)
			break; /* the peer closed mid-line */
		size_t n = (size_t)(nl - (data + pos));
		if (n + 1 > SMTP_CLIENT_REPLY_LINE_MAX)
			break; /* -EPROTO */
		memcpy(line, data + pos, n);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		pos = (size_t)(nl - data) + 1;
		if (index >= SMTP_CLIENT_REPLY_LINES_MAX)
			break; /* the client gives up on the reply: -EPROTO */

		bool saw_ehlo_flag =
		    ehlo.ext_8bitmime || ehlo.ext_smtputf8 || ehlo.ext_pipelining || ehlo.ext_size;
		int rc =
		    smtp_client_reply_line(line, index, &code, text, cap, ehlo_mode ? &ehlo : NULL);
		FUZZ_CHECK(rc == 1 || rc == 0 || rc == -EPROTO);
		bool has_ehlo_flag =
		    ehlo.ext_8bitmime || ehlo.ext_smtputf8 || ehlo.ext_pipelining || ehlo.ext_size;
		/* The first line of a reply ("250 mx.example greets you") is not an extension. */
		FUZZ_CHECK(index > 0 || has_ehlo_flag == saw_ehlo_flag);
		FUZZ_CHECK(ehlo_mode || !has_ehlo_flag);
		bool well_formed = line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
				   line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
				   (line[3] == '\0' || line[3] == ' ' || line[3] == '-');
		bool same_code = index == 0 || (well_formed && atoi(line) == first_code);
		FUZZ_CHECK((rc < 0) == !(well_formed && same_code));
		if (rc < 0)
			break; /* a session ends at a malformed line */
		FUZZ_CHECK(strlen(line) >= 3);
		int digits = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		FUZZ_CHECK(code == digits && code >= 200 && code <= 599);
		FUZZ_CHECK(line[3] == '\0' || line[3] == ' ' || line[3] == '-');
		if (index == 0)
			first_code = code;
		FUZZ_CHECK(code == first_code);
		FUZZ_CHECK((rc == 1) == (line[3] == '-'));

		if (index == 0)
			expect.len = 0;
		expected_add(&expect, line, index == 0);
		size_t tl = strlen(text);
		FUZZ_CHECK(tl < cap);
		FUZZ_CHECK(tl == (expect.len < cap - 1 ? expect.len : cap - 1));
		FUZZ_CHECK(memcmp(text, expect.buf, tl) == 0);

		index = rc == 1 ? index + 1 : 0;
	}
	return 0;
}
