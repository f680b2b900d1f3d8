/*
 * api_backfill — POST /api/v1/gateway/rollups (docs/openapi.yaml, tag gateways;
 * docs/GATEWAY.md "Reporting"): a gateway that turned central reporting on sends
 * its own rollups of the time before, once, with its token. The rows are the
 * gateway's (its token says which); each is taken once whatever is sent again,
 * and none after the gateway said it was done. Registered with
 * api_backfill_register after api_start.
 */
#ifndef LAZARET_API_BACKFILL_H
#define LAZARET_API_BACKFILL_H

#include <stdint.h>

struct api;

/* Rows in one push at most. */
#define API_BACKFILL_ROWS_MAX 1000
/* A rollup key's length at most (bytes). */
#define API_BACKFILL_KEY_MAX 512
/* A counter at most. */
#define API_BACKFILL_COUNTER_MAX 1000000000000LL
/* How far ahead of the manager's clock a gateway's cutoff may be (ms). */
#define API_BACKFILL_SKEW_MS 60000

/* The end (Unix ms) of the bucket of granularity gran starting at bucket. */
int64_t api_backfill_bucket_end(int gran, int64_t bucket);

void api_backfill_register(struct api *a);

#endif
