/*
 * libFuzzer target for the recipient access table's address reading: the input
 * (up to its first NUL byte) is a recipient as RCPT gives it. The run fails on a
 * crash, a sanitizer report, a reply that is not a 550/554 line, or an accepted
 * address that names another route: a '%' or '!', or a domain other than the
 * table's after its first unquoted '@'.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/rat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rat *table;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (table == NULL) {
		char *err = NULL;
		if (rat_parse("example.com, .example.org", &table, &err) != 0)
			abort();
	}
	char *rcpt = malloc(size + 1);
	if (rcpt == NULL)
		abort();
	memcpy(rcpt, data, size);
	rcpt[size] = '\0';
	char reply[128];
	bool ok = rat_check_reply(table, rcpt, reply, sizeof(reply));
	if (ok != rat_accepts(table, rcpt))
		abort();
	if (!ok && strncmp(reply, "550 5.7.1 ", 10) != 0 && strncmp(reply, "554 5.7.1 <", 11) != 0)
		abort();
	if (ok) {
		if (strchr(rcpt, '%') != NULL || strchr(rcpt, '!') != NULL)
			abort();
		/* The domain: after the quoted local part, else after the first '@'. */
		const char *at =
		    rcpt[0] == '"' ? strchr(strchr(rcpt + 1, '"'), '@') : strchr(rcpt, '@');
		if (at == NULL || strchr(at + 1, '@') != NULL || strchr(at + 1, '[') != NULL)
			abort();
		size_t n = strlen(at + 1);
		if (n > 0 && at[n] == '.')
			n--;
		bool listed = (n == 11 && strncasecmp(at + 1, "example.com", 11) == 0) ||
			      (n > 12 && strncasecmp(at + 1 + n - 12, ".example.org", 12) == 0);
		if (!listed)
			abort();
	}
	free(rcpt);
	return 0;
}
