/*
 * libFuzzer target for msgmeta: any byte string is a message to parse. The run
 * fails on a crash, a sanitizer report, a leak, or a field that is not valid UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "mime/msgmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8_named(const char *s, const char *what)
{
	if (s && !g_utf8_validate(s, -1, NULL)) {
		fprintf(stderr, "invalid UTF-8 in %s\n", what);
		abort();
	}
}
#define check_utf8(s) check_utf8_named((s), #s)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msgmeta *m = NULL;
	msgmeta_init();
	if (msgmeta_parse(data, size, &m) != 0 || m == NULL)
		abort();
	check_utf8(m->from);
	check_utf8(m->from_addr);
	check_utf8(m->to);
	check_utf8(m->cc);
	check_utf8(m->subject);
	check_utf8(m->message_id);
	for (size_t i = 0; i < m->nheaders; i++) {
		check_utf8(m->headers[i].name);
		check_utf8(m->headers[i].value);
	}
	for (size_t i = 0; i < m->nattachments; i++) {
		check_utf8(m->attachments[i].filename);
		check_utf8(m->attachments[i].content_type);
	}
	msgmeta_free(m);

	/* The header decoder on its own, as a NUL-terminated string. */
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char *d = msgmeta_decode_header(s);
	check_utf8(d);
	free(d);
	free(s);
	return 0;
}
