/*
 * gw_migrate — moving the messages of the local PVO quarantines to the manager
 * when [centralized_pvo] is turned on (REQUIREMENTS PV6; docs/GATEWAY.md
 * "Migration on enabling"). One background thread: it fetches the mapping from
 * the manager (GET /api/v1/gateway/mapping), sends each local message as one
 * transfer to the manager's PVO listener, deletes the local copy after the
 * manager's 250, reports progress (POST /api/v1/gateway/migration) and deletes
 * the emptied local quarantines at the end. The work list is what is still in
 * the local PVO quarantines and the progress is kept in data_dir, so a restart
 * continues the same run.
 *
 * The mapping also renames the quarantines of new transfers (gw_migrate_map_name).
 * Not for: the transfers of the pipeline (pipeline.c), the manager's side.
 */
#ifndef LAZARET_GW_MIGRATE_H
#define LAZARET_GW_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gw_config.h"

struct store;
struct gw_migrate;
struct pipeline_rules;

/* The progress file in data_dir. */
#define GW_MIGRATE_STATE_FILE "migration.json"

/* The manager's mapping: local quarantine name -> central name, or NULL (not migrated). */
struct gw_mapping {
	bool custom; /* "custom"; false: "automatic" */
	size_t n;
	char **local;
	char **central; /* entries NULL: null (deleted, not migrated) */
};
void gw_mapping_clear(struct gw_mapping *m);
/*
 * Reads the manager's answer {"mode":"automatic"|"custom","mapping":{...}}:
 * 0, or -EPROTO with *why (static text).
 */
int gw_mapping_parse(const char *body, size_t len, struct gw_mapping *out, const char **why);
/*
 * Where the messages of local quarantine name go: 1 with out (at least
 * STORE_QUARANTINE_NAME_MAX + 1 bytes) the central name (the system ones
 * lowercase), 0 when the mapping says null (deleted).
 */
int gw_mapping_resolve(const struct gw_mapping *m, const char *name, char *out, size_t cap);
/*
 * Fetches the mapping from [manager] api_url once: 0, or -errno with *why (a
 * new string, caller frees).
 */
int gw_mapping_fetch(const struct gw_config *cfg, int64_t timeout_ms, struct gw_mapping *out,
		     char **why);

/*
 * The central name a new transfer gives quarantine name, through the mapping
 * last fetched (or kept in data_dir): the mapped one, or name itself when there
 * is none or the mapping says null. Writes into out (cap bytes). Any thread.
 */
void gw_migrate_map_name(const char *name, char *out, size_t cap);

/*
 * done (may be NULL) runs on the migration thread when a run has finished
 * (moved what it could), before its final report.
 */
struct gw_migrate *gw_migrate_new(struct store *st, void (*done)(void *arg), void *arg);
/*
 * With [centralized_pvo] on (central_hostport not NULL): unless a run is going,
 * starts the thread that fetches the mapping and migrates whatever the local PVO
 * quarantines hold (a run left by a restart continues). Off: nothing.
 */
void gw_migrate_start(struct gw_migrate *m, const struct gw_config *cfg,
		      const char *central_hostport);
/* Whether a run is going (messages are being moved), with its figures. */
bool gw_migrate_running(struct gw_migrate *m, uint64_t *done, uint64_t *total);
/* Stops the thread (a transfer under way finishes) and frees. NULL is a no-op. */
void gw_migrate_free(struct gw_migrate *m);

/*
 * lazaret-gw --migration-plan: prints what a migration would do with the local
 * store of cfg (read only) and the manager's mapping. 0, or 1 with a message on
 * stderr.
 */
int gw_migrate_plan(const struct pipeline_rules *r);

#endif
