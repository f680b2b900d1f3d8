/*
 * libFuzzer target for rspamd's reply parser (antispam_rspamd_parse_reply in
 * src/gateway/rspamd.c): the input is the HTTP reply to POST /checkv2, given to
 * the parser as engine_net_read_reply leaves it: a buffer of its size plus a NUL.
 * NUL bytes inside are kept (a peer may send them).
 *
 * The run fails on a crash, a sanitizer report, a leak, or a broken promise: a
 * return code other than 0 and -EPROTO, a result touched by a failed parse, a
 * score that is not finite, a rule list that antispam_detail_add would not make, a
 * score from a reply whose status line is not "HTTP/1.x 200".
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
	char *buf = malloc(size + 1);
	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data, size);
	buf[size] = '\0';
	struct antispam_result r = {.score = FUZZ_SCORE_UNSET, .detail = NULL};
	int rc = antispam_rspamd_parse_reply(buf, size, &r);
	fuzz_check_result(rc, &r);
	if (rc == 0)
		FUZZ_CHECK(size >= 12 && memcmp(data, "HTTP/1.", 7) == 0 && data[8] == ' ' &&
			   memcmp(data + 9, "200", 3) == 0 &&
			   (size == 12 || data[12] == ' ' || data[12] == '\r' || data[12] == '\n'));
	antispam_result_clear(&r);
	free(buf);
	return 0;
}
