/*
 * libFuzzer target for clamd's reply parser (antivirus_clamd_parse_reply in
 * src/gateway/clamd.c): the input up to its first NUL is clamd's answer to
 * INSTREAM, as engine_net_read_reply leaves it (a NUL-terminated buffer of
 * exactly its size).
 *
 * The run fails on a crash, a sanitizer report, a leak, or a broken promise: a
 * return code other than 0, -EFBIG and -EPROTO; an infected verdict without a
 * signature name or a clean one with one; a name that is empty, longer than
 * 256 bytes, blank at either end or not printable ASCII; a verdict from a line
 * that does not start with "stream: ".
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gateway/antivirus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_LEVEL_ERROR);
	const uint8_t *nul = memchr(data, '\0', size);
	size_t n = nul != NULL ? (size_t)(nul - data) : size;
	char *reply = malloc(n + 1);
	FUZZ_CHECK(reply != NULL);
	memcpy(reply, data, n);
	reply[n] = '\0';
	bool infected = false;
	char *virus = NULL;
	int rc = antivirus_clamd_parse_reply(reply, &infected, &virus);
	FUZZ_CHECK(rc == 0 || rc == -EFBIG || rc == -EPROTO);
	if (rc < 0 || !infected) {
		FUZZ_CHECK(virus == NULL);
	} else {
		FUZZ_CHECK(virus != NULL);
		size_t vlen = strlen(virus);
		FUZZ_CHECK(vlen > 0 && vlen <= 256);
		FUZZ_CHECK(virus[0] != ' ' && virus[vlen - 1] != ' ');
		for (size_t i = 0; i < vlen; i++)
			FUZZ_CHECK(virus[i] >= 0x20 && virus[i] < 0x7f);
	}
	if (rc == 0)
		FUZZ_CHECK(n >= 10 && memcmp(data, "stream: ", 8) == 0);
	free(virus);
	free(reply);
	return 0;
}
