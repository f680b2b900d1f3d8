/*
 * api_migration — migration on enabling centralized PVO (REQUIREMENTS PV6;
 * docs/OPERATIONS.md "Migration: the manager's side"): an admin chooses per
 * gateway how its local quarantines map to central ones
 * (GET/PUT /api/v1/gateways/{name}/mapping), the gateway reads that mapping
 * (GET /api/v1/gateway/mapping, its own token) and reports its progress
 * (POST /api/v1/gateway/migration); when a run is first reported done, the
 * address the gateway names gets one mail (ja and en): recorded with the state
 * in one transaction (store_migration_notice), sent and retried by the manager's
 * scheduled-report worker (report_sched.h).
 *
 * A mapping is {"Local": "Central" | null}: keys are the gateway's local names
 * (1 to 64 bytes, no control characters), values the central quarantine names
 * the manager could hold (pvo_header_name_ok, not spam; the system names in any
 * case become lowercase) or null (not migrated: deleted on the gateway). {} is
 * automatic (same names). It cannot change while the gateway's migration runs.
 *
 * Not for: storage (store_gateways.c), the gateway's side (the gateway's
 * migration), sending mail (report_sched.c; the function api_migration_register
 * is given only hurries it).
 */
#ifndef LAZARET_API_MIGRATION_H
#define LAZARET_API_MIGRATION_H

#include <jansson.h>

#include <stdint.h>

struct api;
struct store_migration;
struct store_migration_notice;

/* Tells the sender that a notice was recorded: it looks for due ones now (thread-safe). */
typedef void (*api_migration_kick_fn)(void *arg);

/*
 * The routes; kick may be NULL (a recorded notice then waits for the sender's
 * next look, once a minute).
 */
void api_migration_register(struct api *a, api_migration_kick_fn kick, void *kick_arg);

/*
 * A gateway's migration as the API shows it: JSON null when it never reported
 * one. With notice (the registry's reads: its last run's mail), a "notice"
 * member: null when none was asked for, else {to, state, tries, next_try,
 * last_try, reply}.
 */
json_t *api_migration_json(const struct store_migration *m,
			   const struct store_migration_notice *notice);

/* The mail's subject and text (UTF-8, ja and en) for notice n; both malloc()ed. No I/O. */
void api_migration_notice_mail(const struct store_migration_notice *n, char **subject, char **text);

/*
 * The retries of a notice the relay deferred (4xx, no answer): at most this many
 * attempts, after 1, 5, 15 minutes, 1 hour, then every 4 hours (about a week).
 * The next attempt after tries attempts, from now (unix seconds): 0 when it is
 * given up.
 */
#define API_MIGRATION_NOTICE_TRIES 48
int64_t api_migration_notice_next(int tries, int64_t now);

/*
 * Checks a mapping body: 0 with *out a new cleaned object (system names
 * lowercase) or NULL for {} (automatic); -EINVAL with *err a new message naming
 * the bad key or value. No I/O.
 */
int api_migration_parse_mapping(const json_t *body, json_t **out, char **err);

#endif
