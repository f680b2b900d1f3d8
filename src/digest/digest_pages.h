/*
 * digest_pages — the HTTP side of the end users' digests: the pages behind
 * the mailed links (/d/{token}), their style sheet, and "send my digest now". The
 * pages are templates in web/digest/ (page.html, details.html, form.html, page.css)
 * read once at start.
 *
 * Who gets a digest and when is digest/notify's business; it installs itself here
 * as the digest service (the key and a "send now" entry point) before the API starts.
 */
#ifndef LAZARET_DIGEST_PAGES_H
#define LAZARET_DIGEST_PAGES_H

#include <stddef.h>

#include "digest/digest_token.h"

struct api;

/* A page template or the style sheet is a few KB; anything near this is not one. */
#define DIGEST_PAGE_FILE_MAX (64 * 1024)

/*
 * Reads the page templates and the style sheet from dir (web/digest) and checks
 * that every placeholder is one the page fills, escaped where it must be. Call once
 * at start, before the API serves. 0, or a negative errno with *err a new message
 * naming the file and what is wrong (caller frees).
 */
int digest_pages_load(const char *dir, char **err);
/* Frees what digest_pages_load read (at exit). */
void digest_pages_unload(void);

/*
 * "Send a digest now" as the service does it: to the end user username (when not
 * NULL) covering addresses, else to whoever owns address (an end user with all of
 * their addresses, or the address alone). Runs the work elsewhere; must not block.
 * 0 when queued, or a negative errno.
 */
typedef int (*digest_send_now_fn)(void *arg, const char *username, const char *const *addresses,
				  size_t naddresses, const char *address);

struct digest_service {
	unsigned char key[DIGEST_KEY_LEN];
	digest_send_now_fn send_now; /* may be NULL: "send now" answers 503 */
	void *arg;
};

/*
 * Installs the process's digest service (copied); NULL removes it. The link
 * endpoints answer 503 while none is installed. Loop thread only.
 */
void digest_service_install(const struct digest_service *svc);

/*
 * Adds the digest endpoints to a's server: GET /d/page.css, GET/POST /d/{token},
 * POST /api/v1/me/digest and POST /api/v1/digests/send. Call once, before the web
 * application's routes (api_static_register), which would otherwise take /d/....
 * The pages must have been loaded (digest_pages_load).
 */
void digest_pages_register(struct api *a);

#endif
