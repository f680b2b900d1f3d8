/*
 * api_quarantines — the settings of the policy, virus and outbreak (PVO)
 * quarantines, for admins: POST /api/v1/quarantines (a new policy quarantine),
 * PATCH and DELETE /api/v1/quarantines/{name}. The listing (GET) is the core's
 * (api.c). Registered by lazaretd with api_quarantines_register.
 */
#ifndef LAZARET_API_QUARANTINES_H
#define LAZARET_API_QUARANTINES_H

#include <jansson.h>

struct api;
struct store_quarantine_stats;

void api_quarantines_register(struct api *a);
/*
 * A Quarantine (docs/openapi.yaml) for admins and operators: name, type,
 * messages, bytes, oldest, and the settings. A new reference.
 */
json_t *api_quarantine_json(const struct store_quarantine_stats *q);

#endif
