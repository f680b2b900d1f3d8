/*
 * libFuzzer target for the content-filter language: the input up to its first NUL
 * byte is a filter file, the rest a message (its first line also serves as the
 * envelope sender and a recipient, so patterns meet arbitrary bytes). The run fails
 * on a crash, a sanitizer report, a leak, an error that is not "fuzz:LINE:COLUMN:
 * message", a half-loaded set, an action without its arguments, or an undecided
 * result that does not name its filter and reason or that also took a final action.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/filter.h"
#include "mime/msgmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const char *err)
{
	int line = 0, col = 0, used = 0;
	if (err == NULL || sscanf(err, "fuzz:%d:%d: %n", &line, &col, &used) != 2 || used == 0 ||
	    line < 1 || col < 1 || err[used] == '\0') {
		fprintf(stderr, "bad error message: %s\n", err ? err : "(null)");
		abort();
	}
}

static void check_result(const struct filter_result *r)
{
	size_t finals = 0;
	for (size_t i = 0; i < r->nactions; i++) {
		const struct filter_action *a = &r->actions[i];
		bool one = a->kind == FILTER_ACTION_QUARANTINE ||
			   a->kind == FILTER_ACTION_STRIP_HEADER ||
			   a->kind == FILTER_ACTION_ALT_MAILHOST;
		bool two = a->kind == FILTER_ACTION_INSERT_HEADER;
		if (a->filter_name == NULL || (one || two) != (a->arg != NULL) ||
		    two != (a->arg2 != NULL))
			abort();
		if (filter_action_is_final(a->kind))
			finals++;
	}
	/* A final action ends the evaluation: at most one, from the last filter that ran. */
	if (finals > 1)
		abort();
	/* So does an undecided filter: it names itself and why, and none is final. */
	if (r->undecided != (r->undecided_filter != NULL) ||
	    r->undecided != (r->undecided_reason != NULL) || (r->undecided && finals > 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t flen = nul ? (size_t)(nul - data) : size;
	const uint8_t *msg = nul ? nul + 1 : data + size;
	size_t mlen = size - flen - (nul ? 1 : 0);

	struct filter_set *fs = NULL;
	char *err = NULL;
	int rc = filter_parse("fuzz", (const char *)data, flen, &fs, &err);
	if (rc != 0) {
		if (fs != NULL)
			abort();
		check_error(err);
		free(err);
		return 0;
	}
	if (err != NULL || fs == NULL)
		abort();

	msgmeta_init();
	struct msgmeta *meta = NULL;
	if (msgmeta_parse(msg, mlen, &meta) != 0)
		abort();
	const uint8_t *eol = memchr(msg, '\n', mlen);
	size_t llen = eol ? (size_t)(eol - msg) : mlen;
	char *first = malloc(llen + 1);
	if (first == NULL)
		abort();
	memcpy(first, msg, llen);
	first[llen] = '\0';
	const char *rcpts[] = {"user@example.jp", first};
	struct filter_input in = {
	    .meta = meta,
	    .data = msg,
	    .len = mlen,
	    .mail_from = first,
	    .rcpts = rcpts,
	    .nrcpts = 2,
	    .remote_ip = "192.0.2.1",
	};
	struct filter_result r;
	if (filter_eval(fs, &in, &r) != 0)
		abort();
	check_result(&r);
	filter_result_clear(&r);
	in.remote_ip = first;
	in.meta = NULL;
	if (filter_eval(fs, &in, &r) != 0)
		abort();
	check_result(&r);
	filter_result_clear(&r);
	free(first);
	msgmeta_free(meta);
	filter_set_free(fs);
	return 0;
}
