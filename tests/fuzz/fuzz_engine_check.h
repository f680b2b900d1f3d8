/*
 * Checks the fuzz targets of the scanning engines' reply parsers share: a failed
 * parse leaves the result untouched, a good one has a finite score and a detail
 * that keeps the promises of antispam_detail_add.
 */
#ifndef LAZARET_FUZZ_ENGINE_CHECK_H
#define LAZARET_FUZZ_ENGINE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/antispam.h"
#include "gateway/antispam_int.h"

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The value a result holds before a parse: a failed parse must leave it. */
#define FUZZ_SCORE_UNSET (-12345.0)

/* A rule name list: names of [A-Za-z0-9_.-], each at most ANTISPAM_RULE_NAME_MAX, no
 * empty name, comma-separated, at most ANTISPAM_DETAIL_MAX in all. */
static inline void fuzz_check_detail(const char *detail)
{
	if (detail == NULL)
		return;
	size_t len = strlen(detail);
	FUZZ_CHECK(len > 0 && len <= ANTISPAM_DETAIL_MAX);
	size_t run = 0;
	for (const char *p = detail;; p++) {
		if (*p == ',' || *p == '\0') {
			FUZZ_CHECK(run > 0 && run <= ANTISPAM_RULE_NAME_MAX);
			run = 0;
			if (*p == '\0')
				break;
			continue;
		}
		FUZZ_CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			   (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-');
		run++;
	}
}

static inline void fuzz_check_result(int rc, const struct antispam_result *r)
{
	FUZZ_CHECK(rc == 0 || rc == -EPROTO);
	if (rc < 0) {
		FUZZ_CHECK(r->score == FUZZ_SCORE_UNSET && r->detail == NULL);
		return;
	}
	FUZZ_CHECK(isfinite(r->score));
	fuzz_check_detail(r->detail);
}

#endif
