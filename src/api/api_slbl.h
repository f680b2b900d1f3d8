/*
 * api_slbl — the safelist/blocklist endpoints of the REST API (docs/openapi.yaml,
 * tag slbl): one recipient's lists, the change feed gateways sync
 * with, and CSV export/import. An extension of the API core: the daemon adds it
 * with api_slbl_register.
 */
#ifndef LAZARET_API_SLBL_H
#define LAZARET_API_SLBL_H

#include <stdbool.h>

struct api;
struct http_server_request;

/* Changes in one GET /api/v1/slbl?since= page when the client gives no limit, and the cap. */
#define API_SLBL_CHANGES_DEFAULT_LIMIT 1000
#define API_SLBL_CHANGES_MAX_LIMIT     10000
/*
 * Strings one list of a PUT body may hold before deduplication: far above any
 * per-user limit (500 at most), low enough that a hostile body stays cheap.
 */
#define API_SLBL_BODY_MAX_ENTRIES 10000

/*
 * Adds the admin endpoints (GET /api/v1/slbl, GET /api/v1/slbl/export.csv,
 * POST /api/v1/slbl/import.csv, GET and PUT /api/v1/slbl/{recipient}) to a's
 * server. Call once, after api_start.
 */
void api_slbl_register(struct api *a);

/*
 * For handlers that have already decided the caller may see or change recipient's
 * lists (the admin endpoints here; an end user's own addresses elsewhere): they
 * answer req themselves. api_slbl_reply_lists answers 200 with
 * {"recipient", "safelist", "blocklist"}; api_slbl_put_lists replaces both lists
 * from req's JSON body ({"safelist": [...], "blocklist": [...]}, "recipient"
 * optional and then equal to recipient) and answers like a GET. Errors: 400 for a
 * recipient that is not an address or a body that is not JSON, 413 for a body over
 * the limit, 422 naming the list and the limit when a list is too long or naming
 * the entry that is not an address or a domain, 500 when the store fails.
 * Return 0 when the answer was 2xx, else a negative errno.
 */
int api_slbl_reply_lists(struct api *a, struct http_server_request *req, const char *recipient);
int api_slbl_put_lists(struct api *a, struct http_server_request *req, const char *recipient);

#endif
