/*
 * gw_backfill — the gateway's side of the rollups' backfill (docs/GATEWAY.md
 * "Reporting"): when it switched from local to central reporting, and, with
 * [reporting] backfill = yes, sending its own rollups of the time before to the
 * manager once (POST /api/v1/gateway/rollups) on a thread of its own.
 *
 * The switch is known from data_dir/reporting.state, written at every start:
 * "local", or "central MS" with the moment central was first seen after local
 * ("central 0" when this gateway's first start with it was already central: the
 * moment is unknown and nothing is sent), or "local first=MS" after central. The
 * moment is always the first one: a gateway that went back to local and central
 * again sends only what ended before its first central period, whose events the
 * manager has. data_dir/reporting.backfilled is
 * written once the manager said done (or that it was done already): nothing is
 * sent again after that, across restarts. Only buckets that ended by the switch
 * are sent (their start before the start of the bucket it fell in); the manager
 * takes each once, so a push sent again after a crash adds nothing.
 */
#ifndef LAZARET_GW_BACKFILL_H
#define LAZARET_GW_BACKFILL_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct gw_config;
struct gw_backfill;

/* Called on the backfill's thread once the manager has it all (or had it). */
typedef void (*gw_backfill_done_fn)(void *arg);

/*
 * Records the reporting mode of this start and returns the switch moment in
 * *since (Unix ms; 0: none or unknown). 0 or -errno (the state file could not be
 * written).
 */
int gw_backfill_switch(const struct gw_config *cfg, int64_t now, int64_t *since);
/* True when data_dir says the backfill is done. */
bool gw_backfill_is_done(const struct gw_config *cfg);
/* Starts sending st's rollups that ended by since; done (may be NULL) after. */
int gw_backfill_start(struct store *st, const struct gw_config *cfg, int64_t since,
		      gw_backfill_done_fn done, void *done_arg, struct gw_backfill **out);
/* Stops the thread (a call in flight is cut off) and frees; NULL is a no-op. */
void gw_backfill_stop(struct gw_backfill *b);

#endif
