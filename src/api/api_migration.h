/*
 * api_migration — migration on enabling centralized PVO (REQUIREMENTS PV6;
 * docs/OPERATIONS.md "Migration: the manager's side"): an admin chooses per
 * gateway how its local quarantines map to central ones
 * (GET/PUT /api/v1/gateways/{name}/mapping), the gateway reads that mapping
 * (GET /api/v1/gateway/mapping, its own token) and reports its progress
 * (POST /api/v1/gateway/migration); when a run is first reported done, the
 * address the gateway names gets one mail (ja and en).
 *
 * A mapping is {"Local": "Central" | null}: keys are the gateway's local names
 * (1 to 64 bytes, no control characters), values the central quarantine names
 * the manager could hold (pvo_header_name_ok, not spam; the system names in any
 * case become lowercase) or null (not migrated: deleted on the gateway). {} is
 * automatic (same names). It cannot change while the gateway's migration runs.
 *
 * Not for: storage (store_gateways.c), the gateway's side (the gateway's
 * migration), sending mail (the function api_migration_register is given).
 */
#ifndef LAZARET_API_MIGRATION_H
#define LAZARET_API_MIGRATION_H

#include <jansson.h>

struct api;
struct store_migration;

/* Queues a text mail to one address (thread-safe; strings are copied). */
typedef void (*api_migration_mail_fn)(void *arg, const char *to, const char *subject,
				      const char *text);

/* The routes; mail may be NULL (no mail is sent then, a warning is logged). */
void api_migration_register(struct api *a, api_migration_mail_fn mail, void *mail_arg);

/* A gateway's migration as the API shows it: JSON null when it never reported one. */
json_t *api_migration_json(const struct store_migration *m);

/*
 * Checks a mapping body: 0 with *out a new cleaned object (system names
 * lowercase) or NULL for {} (automatic); -EINVAL with *err a new message naming
 * the bad key or value. No I/O.
 */
int api_migration_parse_mapping(const json_t *body, json_t **out, char **err);

#endif
