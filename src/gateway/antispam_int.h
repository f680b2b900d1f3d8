/*
 * antispam_int — helpers the antispam engines' files share (builtin, spamd,
 * rspamd). Not part of the gateway's interface: use antispam.h.
 */
#ifndef LAZARET_ANTISPAM_INT_H
#define LAZARET_ANTISPAM_INT_H

#include <stdbool.h>
#include <stddef.h>

/* Longest rule name kept in a result; longer names are cut. */
#define ANTISPAM_RULE_NAME_MAX 64
/* Longest result detail (comma-separated rule names); further names are dropped. */
#define ANTISPAM_DETAIL_MAX 4096

/*
 * Appends rule name (len bytes, not NUL-terminated) to the comma-separated list in
 * *detail (NULL when empty; a new string replaces it). Names come from daemons and
 * are hostile: only [A-Za-z0-9_.-] is kept, surrounding blanks are trimmed, an
 * empty result is skipped. Returns whether the name was added.
 */
bool antispam_detail_add(char **detail, const char *name, size_t len);

struct antispam_result;

/*
 * The engines' reply parsers, I/O-free so they can be tested and fuzzed on a buffer.
 * Each fills out (out->detail new, caller frees) and returns 0, or -EPROTO for a
 * reply that is an error or not the daemon's (out untouched); a bad reply is logged.
 *   spamd:  len bytes of buf (need not be NUL-terminated): status line, headers with
 *           "Spam: True ; 7.1 / 5.0", blank line, comma-separated rule names.
 *   rspamd: the HTTP reply; buf[len] must be '\0' (engine_net_read_reply's buffer)
 *           and buf is changed in place.
 */
int antispam_spamd_parse_reply(const char *buf, size_t len, struct antispam_result *out);
int antispam_rspamd_parse_reply(char *buf, size_t len, struct antispam_result *out);

#endif
