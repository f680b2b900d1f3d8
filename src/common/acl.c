/*
 * acl — CIDR lists and the question "is this peer in the list?" (see acl.h).
 *
 * Entries are parsed strictly: a network must be written with its host bits
 * clear ("10.0.0.0/8", not "10.0.0.1/8"), because a stray host address with a
 * prefix usually means a typo that would open the list wider than intended. The
 * error suggests the network that was probably meant. Prefix lengths are
 * decimal, 0-32 for IPv4 and 0-128 for IPv6; scope ids ("fe80::1%eth0") and
 * host names are rejected. IPv4-mapped IPv6 entries (::ffff:10.0.0.0/104) are
 * stored as the IPv4 network they denote, and IPv4-mapped peers are matched
 * against IPv4 entries only: "::/0" means every IPv6 peer, not every IPv4 peer
 * that a dual-stack socket happens to show as mapped.
 *
 * Not for: host names, port numbers, or ordered allow/deny rules.
 */
#include "common/acl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* The longest entry text worth parsing: an IPv6 address with a prefix, with room. */
#define ACL_ENTRY_MAX 64

struct acl_entry {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct acl {
	struct acl_entry *entries;
	size_t count;
};

static const unsigned char acl_v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* True when the first prefix bits of a and b agree. */
static bool acl_prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* Clears the bits after prefix in addr (len bytes); returns true when any was set. */
static bool acl_clear_host_bits(unsigned char *addr, size_t len, unsigned prefix)
{
	bool had = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char keep;
		if (prefix >= 8 * (i + 1))
			keep = 0xff;
		else if (prefix <= 8 * i)
			keep = 0;
		else
			keep = (unsigned char)(0xff << (8 - (prefix - 8 * i)));
		if (addr[i] & (unsigned char)~keep)
			had = true;
		addr[i] &= keep;
	}
	return had;
}

/*
 * Parses one entry (len bytes at s) into *e. Returns 0, or -EINVAL with *err a
 * new message naming the entry.
 */
static int acl_parse_entry(const char *s, size_t len, struct acl_entry *e, char **err)
{
	char text[ACL_ENTRY_MAX + 1];
	char shown[ACL_ENTRY_MAX + 4];
	const char *why = NULL;

	if (len > ACL_ENTRY_MAX) {
		snprintf(shown, sizeof(shown), "%.*s...", ACL_ENTRY_MAX - 3, s);
		*err = xasprintf("bad entry \"%s\": too long for an address", shown);
		return -EINVAL;
	}
	memcpy(text, s, len);
	text[len] = '\0';
	snprintf(shown, sizeof(shown), "%s", text);

	memset(e, 0, sizeof(*e));
	char *slash = strchr(text, '/');
	bool has_prefix = slash != NULL;
	long prefix = -1;
	if (has_prefix) {
		*slash = '\0';
		const char *p = slash + 1;
		if (*p == '\0' || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p)) {
			why = "prefix length must be a decimal number";
			goto fail;
		}
		prefix = strtol(p, NULL, 10);
	}

	if (inet_pton(AF_INET, text, e->addr) == 1) {
		e->family = AF_INET;
		if (prefix > 32) {
			why = "IPv4 prefix length must be 0-32";
			goto fail;
		}
		e->prefix = has_prefix ? (unsigned)prefix : 32;
	} else if (inet_pton(AF_INET6, text, e->addr) == 1) {
		e->family = AF_INET6;
		if (prefix > 128) {
			why = "IPv6 prefix length must be 0-128";
			goto fail;
		}
		e->prefix = has_prefix ? (unsigned)prefix : 128;
	} else {
		why = "not an IPv4 or IPv6 address";
		goto fail;
	}

	unsigned char net[16];
	size_t alen = e->family == AF_INET ? 4 : 16;
	memcpy(net, e->addr, alen);
	if (acl_clear_host_bits(net, alen, e->prefix)) {
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(e->family, net, buf, sizeof(buf));
		*err =
		    xasprintf("bad entry \"%s\": host bits are set after /%u (did you mean %s/%u?)",
			      shown, e->prefix, buf, e->prefix);
		return -EINVAL;
	}

	/* ::ffff:a.b.c.d/p with p >= 96 is the IPv4 network a.b.c.d/(p - 96). */
	if (e->family == AF_INET6 && e->prefix >= 96 &&
	    memcmp(e->addr, acl_v4mapped_prefix, sizeof(acl_v4mapped_prefix)) == 0) {
		memmove(e->addr, e->addr + 12, 4);
		memset(e->addr + 4, 0, 12);
		e->family = AF_INET;
		e->prefix -= 96;
	}
	return 0;

fail:
	*err = xasprintf("bad entry \"%s\": %s", shown, why);
	return -EINVAL;
}

int acl_parse(const char *list, struct acl **out, char **err)
{
	static const char seps[] = ", \t\r\n";
	struct acl *a = xcalloc(1, sizeof(*a));
	size_t cap = 0;
	char *msg = NULL;
	int rc = 0;

	const char *p = list ? list : "";
	for (;;) {
		p += strspn(p, seps);
		if (*p == '\0')
			break;
		size_t len = strcspn(p, seps);
		struct acl_entry e;
		rc = acl_parse_entry(p, len, &e, &msg);
		if (rc < 0)
			goto fail;
		if (a->count == cap) {
			cap = cap ? 2 * cap : 4;
			a->entries = xreallocarray(a->entries, cap, sizeof(*a->entries));
		}
		a->entries[a->count++] = e;
		p += len;
	}
	*out = a;
	return 0;

fail:
	acl_free(a);
	if (err != NULL)
		*err = msg;
	else
		free(msg);
	return rc;
}

void acl_free(struct acl *a)
{
	if (a == NULL)
		return;
	free(a->entries);
	free(a);
}

/* Matches a raw address of family (AF_INET: 4 bytes, AF_INET6: 16 bytes). */
static bool acl_match_raw(const struct acl *a, int family, const unsigned char *addr)
{
	if (a == NULL)
		return false;
	if (family == AF_INET6 && memcmp(addr, acl_v4mapped_prefix, 12) == 0) {
		family = AF_INET;
		addr += 12;
	}
	for (size_t i = 0; i < a->count; i++) {
		const struct acl_entry *e = &a->entries[i];
		if (e->family == family && acl_prefix_equal(e->addr, addr, e->prefix))
			return true;
	}
	return false;
}

bool acl_match(const struct acl *a, const struct sockaddr *sa)
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		return acl_match_raw(a, AF_INET, (const unsigned char *)&sin->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		return acl_match_raw(a, AF_INET6, (const unsigned char *)&sin6->sin6_addr);
	}
	return false;
}

bool acl_match_text(const struct acl *a, const char *addr)
{
	unsigned char raw[16];
	if (addr == NULL)
		return false;
	if (inet_pton(AF_INET, addr, raw) == 1)
		return acl_match_raw(a, AF_INET, raw);
	if (inet_pton(AF_INET6, addr, raw) == 1)
		return acl_match_raw(a, AF_INET6, raw);
	return false;
}

size_t acl_count(const struct acl *a)
{
	return a ? a->count : 0;
}
