/*
 * libFuzzer target for pvo_header: any byte string is a message whose header
 * section is read for X-Lazaret-Quarantine and X-Lazaret-Origin-Id, and one field
 * value on its own. The run fails on a crash, a sanitizer report, a leak, or a
 * parsed value that breaks the parser's promises (a name pvo_header_name_ok
 * refuses, an origin id with blanks, more quarantines than the limit).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quarantine/pvo_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pvo_headers h;
	char err[PVO_HEADER_ERR_MAX];
	if (pvo_headers_parse(data, size, &h, err, sizeof(err)) == 0) {
		if (h.nq > PVO_HEADER_QUARANTINES_MAX)
			abort();
		for (size_t i = 0; i < h.nq; i++) {
			if (!pvo_header_name_ok(h.q[i].name) || h.q[i].reason == NULL ||
			    strlen(h.q[i].reason) > PVO_HEADER_REASON_MAX)
				abort();
		}
		if (h.origin_id != NULL && (strlen(h.origin_id) == 0 || strchr(h.origin_id, ' ')))
			abort();
		pvo_headers_clear(&h);
	} else if (memchr(err, '\0', sizeof(err)) == NULL) {
		abort();
	}
	struct pvo_header_quarantine q;
	if (pvo_header_parse_quarantine((const char *)data, size, &q, err, sizeof(err)) == 0) {
		if (!pvo_header_name_ok(q.name))
			abort();
		pvo_header_quarantine_clear(&q);
	}
	int64_t ms;
	(void)pvo_header_parse_time((const char *)data, size, &ms);
	return 0;
}
