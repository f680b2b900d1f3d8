/*
 * api_static — the web application (web/) served at "/" by the manager's HTTP
 * server: files under api_config.web_root, index.html for client-side routes.
 */
#ifndef LAZARET_API_STATIC_H
#define LAZARET_API_STATIC_H

#include <stdbool.h>
#include <stddef.h>

struct api;

/* Longest file we serve; the application's files are a few KiB to a few hundred. */
#define API_STATIC_MAX_FILE_SIZE (8 * 1024 * 1024)
/*
 * Path segments a static path may have ("/js/app.js", "/m/{id}"). The router has no
 * wildcard and takes the first match, and other modules add their routes after
 * api_start; no route of /api/v1 has fewer than three segments, so at two the
 * application's routes never hide an API route, whatever the order.
 */
#define API_STATIC_MAX_DEPTH 2

/*
 * Adds GET routes for "/" and every path of up to API_STATIC_MAX_DEPTH segments
 * (a route added earlier for such a path, like /healthz, still wins). Paths under
 * /api/, /healthz and /metrics that no other route took answer 404 as before. The web root is read
 * from api_current_config(a) on each request (a SIGHUP may change it); NULL
 * answers 404 for everything.
 */
void api_static_register(struct api *a);

/*
 * Classifies a request path ("/", "/messages", "/assets/app.js", still
 * percent-encoded). Returns 0 and sets *rel to the file to serve, relative to the
 * web root ("index.html" for "/" and for client-side routes: paths whose last
 * segment has no dot), or -EINVAL for a path we never serve: one under /api/,
 * /healthz or /metrics, or one with a segment that is empty or starts with a dot
 * ("..", ".git"), or with any byte outside [A-Za-z0-9._~-] and "/" (which rules
 * out '%', '\\', NUL and every encoded form of them). *rel points into path or at
 * a static string.
 */
int api_static_classify(const char *path, const char **rel);

/* The Content-Type for a file name by its extension, or NULL when we do not serve it. */
const char *api_static_content_type(const char *name);

#endif
