/*
 * gw_managed — a managed gateway's centralization settings ([manager] managed =
 * yes): pulled from the manager's GET /api/v1/gateway/config with the gateway's
 * token, kept in data_dir (managed.json, and the filter rules the manager set in
 * managed-filters.rules, both written atomically), and laid over the
 * configuration read from the INI file (gw_managed_apply). What no level sets
 * stays as the INI file says; listeners, next hop and everything else
 * machine-specific always come from the file.
 *
 * Not for: when to pull (lazaret_gw.c: at start, every [manager] sync_interval,
 * on SIGHUP) or the manager's side (api/api_levels.c).
 */
#ifndef LAZARET_GW_MANAGED_H
#define LAZARET_GW_MANAGED_H

#include <stddef.h>
#include <stdint.h>

struct gw_config;

#define GW_MANAGED_FILE		"managed.json"
#define GW_MANAGED_FILTERS_FILE "managed-filters.rules"
/* The largest answer read: the filter rules are at most 256 KiB. */
#define GW_MANAGED_MAX_ANSWER (1024 * 1024)

/* The settings: 0, 1 or -1 (no level sets it); filters NULL when none sets them. */
struct gw_managed {
	int pvo, reporting, tracking;
	char *filters;
};
void gw_managed_clear(struct gw_managed *m);
/* Whether a and b say the same. */
int gw_managed_equal(const struct gw_managed *a, const struct gw_managed *b);

/*
 * Reads {"settings": {"pvo", "reporting", "tracking", "filters"}, ...} (the
 * manager's answer, or the cached file, which has the same shape) into *out:
 * 0, or -EPROTO for anything else. No I/O.
 */
int gw_managed_parse(const char *text, size_t len, struct gw_managed *out);
/* The JSON text of m as the cache keeps it (new; caller frees). */
char *gw_managed_text(const struct gw_managed *m);

/*
 * Pulls the settings (blocks at most timeout_ms): 0 with *out; -EACCES (401/403),
 * -EPROTO (another status or a bad answer), -ETIMEDOUT or -EIO (no answer), with
 * *why (new, may be NULL) saying more.
 */
int gw_managed_fetch(const struct gw_config *cfg, int64_t timeout_ms, struct gw_managed *out,
		     char **why);

/* The cached settings of data_dir: 0, -ENOENT (none yet), -EPROTO or -errno. */
int gw_managed_load(const char *data_dir, struct gw_managed *out);
/*
 * Checks m's filter rules (they must compile: else -EINVAL with *err) and keeps m
 * in data_dir, the rules first, each file replaced atomically and durably.
 */
int gw_managed_save(const char *data_dir, const struct gw_managed *m, char **err);

/*
 * Whether the configuration of conf_path with m laid over it builds (the filter
 * rules compile and name quarantines it may use): 0, or -EINVAL with *err (new).
 * A file that does not load itself is 0: that is the reload's to say.
 */
int gw_managed_check(const char *conf_path, const struct gw_managed *m, char **err);

/*
 * Lays m over cfg: pvo sets [centralized_pvo] enabled; tracking yes sets
 * [tracking] mode = central, no turns central into local; filters set
 * [filters] file to the cached rules (none when they are empty); reporting is
 * kept in cfg->managed_reporting for the hello.
 */
void gw_managed_apply(struct gw_config *cfg, const struct gw_managed *m);

#endif
