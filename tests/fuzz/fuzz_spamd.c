/*
 * libFuzzer target for spamd's reply parser (antispam_spamd_parse_reply in
 * src/gateway/spamd.c): the input is what spamd sends after a SYMBOLS request,
 * given to the parser in a buffer of exactly its size (not NUL-terminated, so a
 * read past it is an ASan report).
 *
 * The run fails on a crash, a sanitizer report, a leak, or a broken promise: a
 * return code other than 0 and -EPROTO, a result touched by a failed parse, a
 * score that is not finite, a rule list that antispam_detail_add would not make,
 * a score from a reply that is not "SPAMD/1.x 0 ...".
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "fuzz_engine_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_LEVEL_ERROR);
	char *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data, size);
	struct antispam_result r = {.score = FUZZ_SCORE_UNSET, .detail = NULL};
	int rc = antispam_spamd_parse_reply(buf, size, &r);
	fuzz_check_result(rc, &r);
	if (rc == 0) {
		const char *sp = memchr(buf, ' ', size);
		FUZZ_CHECK(size > 10 && memcmp(buf, "SPAMD/1.", 8) == 0 && sp != NULL &&
			   (size_t)(sp - buf) + 2 < size && sp[1] == '0' && sp[2] == ' ');
	}
	/* The input is not changed: the caller's buffer is read only. */
	FUZZ_CHECK(memcmp(buf, data, size) == 0);
	antispam_result_clear(&r);
	free(buf);
	return 0;
}
