/*
 * gw_hello — the gateway's hello to the manager: POST {api_url}/api/v1/gateway/hello
 * with [manager] api_token, saying its name, version, group and cluster
 * (docs/GATEWAY.md "The manager's gateway registry"). The manager records the
 * contact (registered gateways) or lists the gateway as pending (no valid token).
 *
 * Not for: deciding when to say hello (lazaret_gw.c: at start, every
 * hello_interval, on SIGHUP) or acting on the answer; a failed hello is logged,
 * never fatal.
 */
#ifndef LAZARET_GW_HELLO_H
#define LAZARET_GW_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* The largest answer read: a registry entry is a few hundred bytes. */
#define GW_HELLO_MAX_ANSWER (64 * 1024)

/* What the manager answered. Strings are new (gw_hello_answer_clear frees them). */
struct gw_hello_answer {
	long status;   /* the HTTP status, 0 when no answer came */
	char *state;   /* 200: "registered"; else NULL */
	char *group;   /* 200: the registry's group, NULL when none */
	char *cluster; /* 200: the registry's cluster, NULL when none */
	char *message; /* not 200: the manager's error message, or NULL */
};
void gw_hello_answer_clear(struct gw_hello_answer *a);

/*
 * The request body: a new JSON text (caller frees). group, cluster, version may be
 * NULL. central: what the gateway runs with, "centralized" {pvo (1), reporting (2),
 * tracking (4)} as bits (STORE_CENTRAL_*), or -1 to say nothing. outbreak_version:
 * the version line of its outbreak rules ("outbreak_rules_version"; a change makes
 * the manager send its Outbreak quarantine back for rescanning), or NULL.
 */
char *gw_hello_body(const char *name, const char *version, const char *group, const char *cluster,
		    int central, const char *outbreak_version);
/*
 * Reads the manager's answer (status, then len bytes of body) into *out: 0 for a
 * 200 with a registry entry {"gateway": {"name": ..., "state": ..., ...}}; -EACCES
 * for 401 or 403 (out->message says why, when the manager said); -EPROTO for any
 * other status or a body that is not what the API documents. No I/O.
 */
int gw_hello_parse_answer(long status, const char *body, size_t len, struct gw_hello_answer *out);

/*
 * Says hello (blocks at most timeout_ms). token NULL: none is sent (the manager
 * then lists the gateway as pending, if it lets this address). ca_file: the PEM
 * CA of an https api_url, NULL for the system's. 0, -EACCES, -EPROTO (as
 * gw_hello_parse_answer), -ETIMEDOUT or -EIO (no answer); *out is filled as far as
 * known in every case.
 */
int gw_hello_send(const char *api_url, const char *token, const char *ca_file, const char *body,
		  int64_t timeout_ms, struct gw_hello_answer *out);

#endif
