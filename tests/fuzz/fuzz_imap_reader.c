/*
 * libFuzzer target for the IMAP server-line reader (auth_imap_reader_next in
 * src/manager/auth_imap.c): the input is what an IMAP server sends. It is read as
 * auth_imap_read_line does — into a buffer of AUTH_IMAP_LINE_MAX bytes, consumed
 * bytes dropped — twice: once with reads as large as the buffer allows, once in
 * small reads whose size byte 0 gives (1..64).
 *
 * The run fails on a crash, a sanitizer report, a leak, or a broken promise: a
 * return code the header does not list; more bytes used than were there; a line
 * holding a LF or as long as AUTH_IMAP_LINE_MAX; a full buffer from which nothing
 * is taken (the reader would stall); responses or a final error other than those
 * an independent scan of the whole input finds (so none depends on where the reads
 * were cut, and no response is read from inside a literal or a continuation line).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/auth_imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct reading {
	char **lines; /* room for one line per input byte, and one */
	size_t nlines;
	int end; /* the error that ended the reading, 0 at the end of the input */
};

static void reading_init(struct reading *rd, size_t size)
{
	rd->lines = calloc(size + 1, sizeof(*rd->lines));
	FUZZ_CHECK(rd->lines != NULL);
	rd->nlines = 0;
	rd->end = 0;
}

static void reading_free(struct reading *rd)
{
	for (size_t i = 0; i < rd->nlines; i++)
		free(rd->lines[i]);
	free(rd->lines);
}

/* Reads the input in reads of at most chunk bytes, as auth_imap_read_line does. */
static void read_all(const uint8_t *data, size_t size, size_t chunk, struct reading *rd)
{
	static char buf[AUTH_IMAP_LINE_MAX];
	struct auth_imap_reader r = {0};
	size_t len = 0, off = 0; /* bytes in buf; input bytes put into buf */
	for (;;) {
		size_t used = (size_t)-1;
		char *line = NULL;
		int rc = auth_imap_reader_next(&r, buf, len, &used, &line);
		FUZZ_CHECK(rc == 1 || rc == 0 || rc == -E2BIG || rc == -EPROTO);
		FUZZ_CHECK(used <= len);
		memmove(buf, buf + used, len - used);
		len -= used;
		if (rc < 0) {
			FUZZ_CHECK(line == NULL);
			rd->end = rc;
			return;
		}
		if (rc == 1) {
			FUZZ_CHECK(line != NULL && used > 0);
			FUZZ_CHECK(strchr(line, '\n') == NULL && strlen(line) < AUTH_IMAP_LINE_MAX);
			rd->lines[rd->nlines++] = line;
			continue;
		}
		FUZZ_CHECK(line == NULL);
		/* Needs more: there must be room for it, or the reader would never move. */
		FUZZ_CHECK(len < sizeof(buf));
		if (off == size)
			return;
		size_t n = size - off;
		if (n > sizeof(buf) - len)
			n = sizeof(buf) - len;
		if (n > chunk)
			n = chunk;
		memcpy(buf + len, data + off, n);
		len += n;
		off += n;
	}
}

/*
 * The same reading done independently, on the whole input at once: what the
 * reader must find whatever the reads. A line ending in "{N}" (N one digit or
 * more, before CRLF or LF) is followed by N literal bytes, then a line that
 * continues the response; a literal over AUTH_IMAP_LITERAL_MAX ends the reading
 * with -EPROTO before its line is taken; a line that does not fit the buffer with
 * its LF ends it with -E2BIG.
 */
static void model_read(const uint8_t *data, size_t size, struct reading *rd)
{
	size_t pos = 0;
	bool continued = false;
	while (pos < size) {
		size_t k = size - pos < AUTH_IMAP_LINE_MAX ? size - pos : AUTH_IMAP_LINE_MAX;
		const uint8_t *nl = memchr(data + pos, '\n', k);
		if (nl == NULL) {
			rd->end = size - pos >= AUTH_IMAP_LINE_MAX ? -E2BIG : 0;
			return;
		}
		size_t e = (size_t)(nl - data);
		if (e > pos && data[e - 1] == '\r')
			e--;
		size_t literal = 0;
		bool has_literal = false;
		if (e > pos && data[e - 1] == '}') {
			size_t d = e - 1;
			while (d > pos && data[d - 1] >= '0' && data[d - 1] <= '9')
				d--;
			if (d < e - 1 && d > pos && data[d - 1] == '{') {
				has_literal = true;
				for (size_t i = d; i < e - 1 && literal <= AUTH_IMAP_LITERAL_MAX;
				     i++)
					literal = literal * 10 + (size_t)(data[i] - '0');
			}
		}
		if (has_literal && literal > AUTH_IMAP_LITERAL_MAX) {
			rd->end = -EPROTO;
			return;
		}
		if (!continued) {
			char *line = malloc(e - pos + 1);
			FUZZ_CHECK(line != NULL);
			memcpy(line, data + pos, e - pos);
			line[e - pos] = '\0';
			rd->lines[rd->nlines++] = line;
		}
		pos = (size_t)(nl - data) + 1;
		continued = has_literal;
		if (has_literal)
			pos = size - pos < literal ? size : pos + literal;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reading big, small, model;
	if (size < 1)
		return 0;
	size_t chunk = 1 + data[0] % 64;
	data++;
	size--;

	reading_init(&big, size);
	reading_init(&small, size);
	reading_init(&model, size);
	read_all(data, size, AUTH_IMAP_LINE_MAX, &big);
	read_all(data, size, chunk, &small);
	model_read(data, size, &model);
	FUZZ_CHECK(big.end == model.end && small.end == model.end);
	FUZZ_CHECK(big.nlines == model.nlines && small.nlines == model.nlines);
	for (size_t i = 0; i < model.nlines; i++) {
		FUZZ_CHECK(strcmp(big.lines[i], model.lines[i]) == 0);
		FUZZ_CHECK(strcmp(small.lines[i], model.lines[i]) == 0);
	}
	reading_free(&big);
	reading_free(&small);
	reading_free(&model);
	return 0;
}
