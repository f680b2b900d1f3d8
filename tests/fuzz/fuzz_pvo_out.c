/*
 * libFuzzer target for pvo_out: any byte string is a message whose header section
 * is read for the rescan flag of X-Lazaret-Released, and, as a reason (up to its
 * first NUL), is written into an X-Lazaret-Quarantine line that the manager's
 * parser (quarantine/pvo_header.c) must read back: the run fails when a written
 * line does not parse, or parses to another name, or to a reason over the limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pvo_out.h"
#include "quarantine/pvo_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)pvo_out_released_rescan(data, size);
	char id[PVO_OUT_RESCAN_ID_MAX + 1];
	(void)pvo_out_released_rescan_id(data, size, id);

	char *reason = malloc(size + 1);
	memcpy(reason, data, size);
	reason[size] = '\0';
	char *line = pvo_out_quarantine_header("Policy", reason, INT64_C(1796464800000), 0);
	struct pvo_headers h;
	char err[PVO_HEADER_ERR_MAX];
	if (pvo_headers_parse((const unsigned char *)line, strlen(line), &h, err, sizeof(err)) != 0)
		abort();
	if (h.nq != 1 || strcmp(h.q[0].name, "Policy") != 0 ||
	    strlen(h.q[0].reason) > PVO_HEADER_REASON_MAX)
		abort();
	pvo_headers_clear(&h);
	free(line);
	free(reason);
	return 0;
}
