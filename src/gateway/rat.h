/*
 * rat — the recipient access table: which recipients the gateway relays for.
 * Entries: "example.com" (that domain exactly), ".example.org" (its subdomains,
 * not the domain itself), "postmaster@example.net" (that address), "*" (every
 * recipient: for a content filter behind an MTA that already checked relaying).
 * Matching ignores case. Others get "550 5.7.1 Recipient address rejected: relay
 * not permitted" at RCPT.
 *
 * Before the table is asked, an address that names another route than its domain
 * is refused whatever the table says ("*" included), as Postfix's
 * reject_unauth_destination does: the routing operators "%", "!" and "@" in the
 * local part, quoted or not ("x%evil@example.com", "evil!x@example.com",
 * "x@evil@example.com", "\"x@evil\"@example.com"), IP-literal domains
 * ("user@[192.0.2.1]"), and domains that are not a dot-separated list of labels
 * ("user@a..example.com"). They get RAT_REPLY_ROUTING. A source route
 * "<@hop:user@example.com>" never gets here: the SMTP layer drops the route
 * (RFC 5321 4.1.2), and the message goes to user@example.com. One trailing dot
 * names the same domain ("user@example.com.").
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
enum rat_verdict {
	RAT_ACCEPT = 0,
	RAT_NOT_LISTED, /* a plain address the table does not accept */
	RAT_ROUTING,	/* a routing operator, IP literal or malformed domain */
};

/* The reply for RAT_NOT_LISTED, and the format of the one for RAT_ROUTING (%s: address). */
#define RAT_REPLY_NOT_LISTED "550 5.7.1 Recipient address rejected: relay not permitted"
#define RAT_REPLY_ROUTING    "554 5.7.1 <%s>: Relay access denied"

/* The verdict for rcpt (an address "local@domain" as given at RCPT, without <>). */
enum rat_verdict rat_check(const struct rat *r, const char *rcpt);
/*
 * True when rcpt is accepted; otherwise writes the one-line reply (no CRLF) for
 * the client into reply (replylen bytes, always terminated).
 */
bool rat_check_reply(const struct rat *r, const char *rcpt, char *reply, size_t replylen);
/* True when rat_check says RAT_ACCEPT. */
bool rat_accepts(const struct rat *r, const char *rcpt);
size_t rat_count(const struct rat *r);

#endif
