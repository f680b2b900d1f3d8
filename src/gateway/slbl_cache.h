/*
 * slbl_cache — the gateway's copy of the manager's safelists/blocklists:
 * pulled with GET /api/v1/slbl?since=VERSION, kept on disk so it applies while
 * the manager is down, consulted per recipient just before anti-spam.
 * Entries are addresses ("a@x.com") or domains ("x.com"; ".x.com" = its subdomains
 * too). Lookups are thread-safe and never block on the network.
 */
#ifndef LAZARET_SLBL_CACHE_H
#define LAZARET_SLBL_CACHE_H

#include <stdint.h>

struct slbl_cache;

enum slbl_verdict {
	SLBL_NONE = 0,
	SLBL_SAFE,  /* the sender is on the recipient's safelist */
	SLBL_BLOCK, /* on the blocklist (the blocklist wins when on both) */
};

/* Opens (loading what an earlier run saved at path, if any). 0 or -errno. */
int slbl_cache_open(const char *path, struct slbl_cache **out);
void slbl_cache_free(struct slbl_cache *c);
/* What the lists of rcpt say about sender (both case-insensitive). */
enum slbl_verdict slbl_cache_check(struct slbl_cache *c, const char *rcpt, const char *sender);
/*
 * Pulls the changes since the cached version from the manager (api_url like
 * "http://127.0.0.1:8080", Bearer token) and saves them (written to a temp file,
 * fsync'd, renamed). Blocks; bounded by timeout_ms. 0 or -errno; on failure the
 * cache keeps what it had.
 */
int slbl_cache_sync(struct slbl_cache *c, const char *api_url, const char *token,
		    int64_t timeout_ms);
/*
 * The same; for an https api_url the manager's certificate must chain to ca_file
 * (PEM path; NULL: the system's store) and name the URL's host. TLS 1.2 or newer.
 */
int slbl_cache_sync_ca(struct slbl_cache *c, const char *api_url, const char *token,
		       const char *ca_file, int64_t timeout_ms);
/* The manager's version the cache is at (0 before the first sync). */
int64_t slbl_cache_version(struct slbl_cache *c);

#endif
