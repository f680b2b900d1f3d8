/*
 * acl — lists of CIDR networks ("127.0.0.1/32, ::1/128, 10.0.0.0/8") and the
 * question whether a peer address is in one. IPv4-mapped IPv6 peers
 * (::ffff:127.0.0.1) match IPv4 entries. A bare address means a single host.
 */
#ifndef LAZARET_ACL_H
#define LAZARET_ACL_H

#include <stdbool.h>
#include <sys/socket.h>

struct acl;

/*
 * Parses a comma- or space-separated list. An empty list matches nothing.
 * On success *out is a new acl (free with acl_free). On error returns -EINVAL and,
 * when err is not NULL, *err is a new message naming the bad entry (caller frees).
 */
int acl_parse(const char *list, struct acl **out, char **err);
void acl_free(struct acl *a);
/* True when the socket address (AF_INET or AF_INET6) is in the list. */
bool acl_match(const struct acl *a, const struct sockaddr *sa);
/* Same for a textual address ("192.0.2.1", "::1"); false when it is not an address. */
bool acl_match_text(const struct acl *a, const char *addr);
/* The number of entries. */
size_t acl_count(const struct acl *a);

#endif
