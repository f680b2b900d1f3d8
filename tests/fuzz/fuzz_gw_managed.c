/*
 * libFuzzer target for a managed gateway's settings as the manager answers them
 * (gw_managed_parse): the input is the answer's body. The run fails on a crash, a
 * sanitizer report, a value outside what the settings can be (0, 1 or -1), or
 * settings that do not read back the same from the text the cache keeps of them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_managed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int flag_ok(int v)
{
	return v == -1 || v == 0 || v == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_managed m;
	if (gw_managed_parse((const char *)data, size, &m) < 0)
		return 0;
	if (!flag_ok(m.pvo) || !flag_ok(m.reporting) || !flag_ok(m.tracking))
		abort();
	char *text = gw_managed_text(&m);
	struct gw_managed again;
	if (gw_managed_parse(text, strlen(text), &again) < 0 || !gw_managed_equal(&m, &again))
		abort();
	free(text);
	gw_managed_clear(&again);
	gw_managed_clear(&m);
	return 0;
}
