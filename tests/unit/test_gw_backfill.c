/*
 * test_gw_backfill — when the gateway switched to central reporting
 * (gw_backfill_switch, data_dir/reporting.state): seen after local, kept across
 * restarts, the first one kept across a return to local, unknown when the first
 * start was central already; and the done marker.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/readfile.h"
#include "common/unconst.h"
#include "common/xalloc.h"
#include "gateway/gw_backfill.h"
#include "gateway/gw_config.h"

static char *state_of(const char *dir)
{
	char *path = xasprintf("%s/reporting.state", dir);
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(read_file(path, 256, &text, &len), 0);
	free(path);
	return text;
}

static int64_t start_as(struct gw_config *cfg, const char *mode, int64_t now)
{
	cfg->reporting_mode = unconst(mode);
	int64_t since = -1;
	assert_int_equal(gw_backfill_switch(cfg, now, &since), 0);
	return since;
}

static void test_switch(void **state)
{
	(void)state;
	char dir[] = "/tmp/lazaret-gw-backfill-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct gw_config cfg = {.data_dir = dir, .tracking_mode = unconst("local")};
	assert_int_equal(start_as(&cfg, "local", 1000), 0);
	char *s = state_of(dir);
	assert_string_equal(s, "local\n");
	free(s);
	/* local -> central at 2000, kept on the next starts */
	assert_int_equal(start_as(&cfg, "central", 2000), 2000);
	assert_int_equal(start_as(&cfg, "central", 3000), 2000);
	s = state_of(dir);
	assert_string_equal(s, "central 2000\n");
	free(s);
	/* back to local and central again: the first moment stays */
	assert_int_equal(start_as(&cfg, "local", 4000), 0);
	s = state_of(dir);
	assert_string_equal(s, "local first=2000\n");
	free(s);
	assert_int_equal(start_as(&cfg, "central", 5000), 2000);
	assert_false(gw_backfill_is_done(&cfg));
	char *done = xasprintf("%s/reporting.backfilled", dir);
	assert_int_equal(write_file_atomic(done, "1\n", 2), 0);
	assert_true(gw_backfill_is_done(&cfg));
	unlink(done);
	free(done);

	/* a first start already central: unknown, and it stays unknown */
	char *path = xasprintf("%s/reporting.state", dir);
	unlink(path);
	assert_int_equal(start_as(&cfg, "central", 6000), 0);
	assert_int_equal(start_as(&cfg, "local", 7000), 0);
	assert_int_equal(start_as(&cfg, "central", 8000), 0);
	s = state_of(dir);
	assert_string_equal(s, "central 0\n");
	free(s);
	/* a file that says nothing known is not a switch seen */
	assert_int_equal(write_file_atomic(path, "garbage\n", 8), 0);
	assert_int_equal(start_as(&cfg, "central", 9000), 0);
	unlink(path);
	free(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_switch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
