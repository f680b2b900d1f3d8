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

#endif
