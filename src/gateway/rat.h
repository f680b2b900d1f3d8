/*
 * rat — the recipient access table: which recipients the gateway relays for.
 * Entries: "example.com" (that domain exactly), ".example.org" (its subdomains,
 * not the domain itself), "postmaster@example.net" (that address), "*" (every
 * recipient: for a content filter behind an MTA that already checked relaying).
 * Matching ignores case. Others get "550 5.7.1 Recipient address rejected: relay
 * not permitted" at RCPT.
 */
#ifndef LAZARET_RAT_H
#define LAZARET_RAT_H

#include <stdbool.h>
#include <stddef.h>

/* Entries in one table; a longer list belongs in the next hop's own recipient checks. */
#define RAT_MAX_ENTRIES 10000

struct rat;

/*
 * Parses a comma- or space-separated list. 0 with *out (free with rat_free), or
 * -EINVAL with *err a new message naming the bad entry (caller frees).
 */
int rat_parse(const char *list, struct rat **out, char **err);
void rat_free(struct rat *r);
/* True when rcpt (an address "local@domain") is accepted. */
bool rat_accepts(const struct rat *r, const char *rcpt);
size_t rat_count(const struct rat *r);

#endif
