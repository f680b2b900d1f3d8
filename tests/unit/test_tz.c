/*
 * Time zones from the tz database (common/tz): offsets and abbreviations around
 * daylight-saving changes, beyond the file's last transition (its POSIX-TZ rule),
 * and names that are not zones.
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

#include "common/clock.h"
#include "common/tz.h"

static int64_t ms(const char *rfc3339)
{
	int64_t v = 0;
	assert_int_equal(clock_parse_rfc3339(rfc3339, &v), 0);
	return v;
}

static struct tz_zone *zone(const char *name)
{
	struct tz_zone *tz = NULL;
	int rc = tz_load(name, &tz);
	if (rc != 0)
		fail_msg("cannot load zone %s: %d", name, rc);
	return tz;
}

static void test_tz_load(void **state)
{
	struct tz_zone *tz = NULL;
	assert_int_equal(tz_load("Mars/Olympus_Mons", &tz), -ENOENT);
	assert_int_equal(tz_load("../../etc/passwd", &tz), -EINVAL);
	assert_int_equal(tz_load("/etc/passwd", &tz), -EINVAL);
	assert_int_equal(tz_load("", &tz), -EINVAL);
	assert_null(tz);

	tz = zone("Asia/Tokyo");
	assert_int_equal(tz_offset(tz, ms("2026-11-27T00:00:00Z") / 1000), 9 * 3600);
	char buf[64];
	tz_format(tz, ms("2026-11-27T00:30:00Z"), buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-27 09:30 JST");
	tz_free(tz);

	tz = zone("Europe/Berlin");
	assert_int_equal(tz_offset(tz, ms("2026-01-15T12:00:00Z") / 1000), 3600);
	assert_int_equal(tz_offset(tz, ms("2026-07-15T12:00:00Z") / 1000), 7200);
	/* The switch itself: 01:00Z on the last Sunday of March and of October. */
	assert_int_equal(tz_offset(tz, ms("2026-03-29T00:59:59Z") / 1000), 3600);
	assert_int_equal(tz_offset(tz, ms("2026-03-29T01:00:00Z") / 1000), 7200);
	assert_int_equal(tz_offset(tz, ms("2026-10-25T00:59:59Z") / 1000), 7200);
	assert_int_equal(tz_offset(tz, ms("2026-10-25T01:00:00Z") / 1000), 3600);
	/* Beyond the file's transitions its rule goes on: summer 2050 is CEST. */
	assert_int_equal(tz_offset(tz, ms("2050-07-01T12:00:00Z") / 1000), 7200);
	assert_int_equal(tz_offset(tz, ms("2050-12-01T12:00:00Z") / 1000), 3600);
	tz_format(tz, ms("2026-07-15T12:00:00Z"), buf, sizeof(buf));
	assert_string_equal(buf, "2026-07-15 14:00 CEST");
	tz_free(tz);
}

/* Files that are not zones, whatever their name: read through read_file, refused. */
static void test_tz_not_zones(void **state)
{
	struct tz_zone *tz = NULL;
	assert_int_equal(tz_load("Asia", &tz), -EINVAL); /* a folder of zones */
	assert_null(tz);
	char dir[] = "/tmp/lazaret-tz-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	static const struct {
		const char *name;
		size_t size; /* bytes of "TZif2" padding */
		int rc;
	} cases[] = {
	    {"Empty", 0, -EINVAL},
	    {"Short", 40, -EINVAL},		/* header cut off */
	    {"Huge", TZ_FILE_MAX + 1, -EINVAL}, /* over the limit */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].name);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		for (size_t k = 0; k < cases[i].size; k++)
			fputc(k < 5 ? "TZif2"[k] : 0, f);
		fclose(f);
	}
	setenv("TZDIR", dir, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (tz_load(cases[i].name, &tz) != cases[i].rc)
			fail_msg("%s: want %d", cases[i].name, cases[i].rc);
		assert_null(tz);
	}
	assert_int_equal(tz_load("Nowhere", &tz), -ENOENT);
	assert_int_equal(tz_load("Empty/Below", &tz), -ENOENT); /* a file as a folder */
	unsetenv("TZDIR");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].name);
		unlink(path);
	}
	rmdir(dir);
}

static void test_tz_local_times(void **state)
{
	static const struct {
		const char *zone;
		int y, mo, d, h, mi;
		const char *utc;
	} cases[] = {
	    {"Asia/Tokyo", 2026, 11, 27, 9, 0, "2026-11-27T00:00:00Z"},
	    /* 02:30 does not exist in Berlin on 2026-03-29: read with CET, so 01:30Z. */
	    {"Europe/Berlin", 2026, 3, 29, 2, 30, "2026-03-29T01:30:00Z"},
	    /* 02:30 happens twice on 2026-10-25: the first (CEST) one. */
	    {"Europe/Berlin", 2026, 10, 25, 2, 30, "2026-10-25T00:30:00Z"},
	    {"UTC", 1970, 1, 1, 0, 0, "1970-01-01T00:00:00Z"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tz_zone *tz = zone(cases[i].zone);
		int64_t t =
		    tz_to_utc(tz, cases[i].y, cases[i].mo, cases[i].d, cases[i].h, cases[i].mi);
		if (t * 1000 != ms(cases[i].utc))
			fail_msg("%s case %zu: %lld", cases[i].zone, i, (long long)t);
		tz_free(tz);
	}
	assert_int_equal(tz_weekday(0), 4);  /* 1970-01-01 was a Thursday */
	assert_int_equal(tz_weekday(-1), 3); /* and the day before a Wednesday */
	assert_int_equal(tz_weekday(ms("2026-11-29T00:00:00Z") / 86400000), 0); /* Sunday */
	tz_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tz_load),
	    cmocka_unit_test(test_tz_not_zones),
	    cmocka_unit_test(test_tz_local_times),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
