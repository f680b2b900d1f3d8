/*
 * api_levels — centralization levels (docs/openapi.yaml "Levels"): the settings
 * {pvo, reporting, tracking, filters} an admin sets at a cluster, a group or a
 * machine (one gateway), what each gateway ends up with (machine over group over
 * cluster), and the gateway-facing GET /api/v1/gateway/config a managed gateway
 * pulls them from with its own token.
 *
 * The rules (REQUIREMENTS PV5): "pvo" and "filters" set at a level may not be set
 * again below it (nor above a level that sets them: the lower one must go first),
 * and "pvo" may not be enabled at a group or cluster that a pending (unregistered)
 * gateway names. A refused change is 409 with a message naming the other level.
 *
 * A gateway belongs to the group and cluster of its registry entry (compared
 * whatever their case); its machine level is its own name.
 *
 * Not for: storage (store_levels.c), the gateway's side (gateway/gw_managed.c).
 */
#ifndef LAZARET_API_LEVELS_H
#define LAZARET_API_LEVELS_H

#include <stddef.h>

struct api;
struct store_gateway;
struct store_level;

void api_levels_register(struct api *a);
/* The lock a level change is checked and written under; a registration takes it too. */
void api_levels_hold(void);
void api_levels_release(void);

/* What one gateway ends up with: each setting and the level it comes from. */
struct api_levels_effective {
	int pvo, reporting, tracking;	   /* 0, 1 or STORE_LEVEL_UNSET (no level sets it) */
	const char *filters;		   /* NULL: no level sets it */
	const struct store_level *from[4]; /* pvo, reporting, tracking, filters; NULL: none */
};
/* Resolves g's settings from levels v[0..n) (machine over group over cluster). No I/O. */
void api_levels_resolve(const struct store_level *v, size_t n, const struct store_gateway *g,
			struct api_levels_effective *out);
/*
 * Whether next (the whole row of one level after a change; set_pvo/set_filters:
 * the change sets that key) may be written over levels v[0..n) and gateways
 * gw[0..ngw): NULL, or a new message for the 409 (caller frees). No I/O.
 */
char *api_levels_conflict(const struct store_level *v, size_t n, struct store_gateway *const *gw,
			  size_t ngw, const struct store_level *next, int set_pvo, int set_filters);

/*
 * Whether gateway g may join its group and cluster (registration) over levels
 * v[0..n): NULL, or a new message for the 409 when two of its levels set "pvo"
 * or "filters".
 */
char *api_levels_joining(const struct store_level *v, size_t n, const struct store_gateway *g);

#endif
