/*
 * hat — the host access table of the gateway (sender groups by client address)
 * and the per-client message counts behind "throttle N".
 *
 * Policies are matched in file order, first match wins; the caller applies the
 * default when none matches. Throttling keeps, per client address, the times of
 * the messages it sent within the last HAT_THROTTLE_WINDOW_MS; times older than
 * the window are dropped whenever the client is looked at, and clients with no
 * time left are dropped when the table is full.
 * Not for: connection limits (smtp_session) or anything about recipients.
 */
#include "gateway/hat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/acl.h"
#include "common/xalloc.h"

/* Buckets of the client table (a power of two). */
#define HAT_THROTTLE_BUCKETS 4096

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int hat_parse_action(const char *text, enum hat_action *action, unsigned *limit, char **err)
{
	const char *s = skip_space(text);
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	*err = NULL;
	if (n == 6 && strncasecmp(s, "accept", 6) == 0) {
		*action = HAT_ACCEPT;
		*limit = 0;
		return 0;
	}
	if (n == 6 && strncasecmp(s, "reject", 6) == 0) {
		*action = HAT_REJECT;
		*limit = 0;
		return 0;
	}
	if (n > 8 && strncasecmp(s, "throttle", 8) == 0 && (s[8] == ' ' || s[8] == '\t')) {
		const char *d = skip_space(s + 8);
		unsigned long v = 0;
		const char *p = d;
		for (; p < s + n && *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > HAT_THROTTLE_MAX_LIMIT)
				break;
		}
		if (p == s + n && p > d && v >= 1 && v <= HAT_THROTTLE_MAX_LIMIT) {
			*action = HAT_THROTTLE;
			*limit = (unsigned)v;
			return 0;
		}
		*err = xasprintf("throttle needs a number of messages per hour, 1 to %d",
				 HAT_THROTTLE_MAX_LIMIT);
		return -EINVAL;
	}
	*err = xasprintf("unknown action \"%.*s\": use accept, reject or throttle N", (int)n, s);
	return -EINVAL;
}

int hat_parse_policy(const char *name, const char *value, struct hat_policy *out, char **err)
{
	memset(out, 0, sizeof(*out));
	*err = NULL;
	const char *colon = strchr(value, ':');
	if (colon == NULL) {
		*err = xstrdup("must be \"ACTION: CIDR, CIDR ...\" (e.g. reject: 198.51.100.0/24)");
		return -EINVAL;
	}
	char *action = xstrndup(value, (size_t)(colon - value));
	int rc = hat_parse_action(action, &out->action, &out->limit, err);
	free(action);
	if (rc < 0)
		return rc;
	char *aclerr = NULL;
	if (acl_parse(colon + 1, &out->nets, &aclerr) < 0) {
		*err = xasprintf("%s", aclerr != NULL ? aclerr : "bad network list");
		free(aclerr);
		return -EINVAL;
	}
	if (acl_count(out->nets) == 0) {
		acl_free(out->nets);
		out->nets = NULL;
		*err = xstrdup("lists no network");
		return -EINVAL;
	}
	out->name = xstrdup(name);
	return 0;
}

void hat_policy_clear(struct hat_policy *p)
{
	if (p == NULL)
		return;
	free(p->name);
	acl_free(p->nets);
	memset(p, 0, sizeof(*p));
}

const struct hat_policy *hat_match(const struct hat_policy *policies, size_t n,
				   const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++) {
		if (policies[i].nets != NULL && acl_match(policies[i].nets, sa))
			return &policies[i];
	}
	return NULL;
}

/* ---- throttling ---- */

struct hat_client {
	struct hat_client *next;
	char *ip;
	int64_t *times; /* ascending */
	size_t n, cap;
	int64_t last_seen;
};

struct hat_throttle {
	struct hat_client *buckets[HAT_THROTTLE_BUCKETS];
	size_t nclients;
};

struct hat_throttle *hat_throttle_new(void)
{
	return xcalloc(1, sizeof(struct hat_throttle));
}

static void hat_client_free(struct hat_client *c)
{
	free(c->ip);
	free(c->times);
	free(c);
}

void hat_throttle_free(struct hat_throttle *t)
{
	if (t == NULL)
		return;
	for (size_t b = 0; b < HAT_THROTTLE_BUCKETS; b++) {
		struct hat_client *c = t->buckets[b];
		while (c != NULL) {
			struct hat_client *next = c->next;
			hat_client_free(c);
			c = next;
		}
	}
	free(t);
}

static size_t hat_hash(const char *s)
{
	size_t h = 5381;
	for (; *s != '\0'; s++)
		h = h * 33 + (unsigned char)*s;
	return h & (HAT_THROTTLE_BUCKETS - 1);
}

/* Drops the times that left the window. */
static void hat_client_prune(struct hat_client *c, int64_t now_ms)
{
	size_t drop = 0;
	while (drop < c->n && c->times[drop] <= now_ms - HAT_THROTTLE_WINDOW_MS)
		drop++;
	if (drop > 0) {
		memmove(c->times, c->times + drop, (c->n - drop) * sizeof(*c->times));
		c->n -= drop;
	}
}

static struct hat_client *hat_find(struct hat_throttle *t, const char *ip)
{
	for (struct hat_client *c = t->buckets[hat_hash(ip)]; c != NULL; c = c->next) {
		if (strcmp(c->ip, ip) == 0)
			return c;
	}
	return NULL;
}

static void hat_unlink(struct hat_throttle *t, struct hat_client *victim)
{
	struct hat_client **pp = &t->buckets[hat_hash(victim->ip)];
	while (*pp != victim)
		pp = &(*pp)->next;
	*pp = victim->next;
	hat_client_free(victim);
	t->nclients--;
}

/* The table is full: drop clients with nothing in the window, else the least recent. */
static void hat_make_room(struct hat_throttle *t, int64_t now_ms)
{
	struct hat_client *oldest = NULL;
	for (size_t b = 0; b < HAT_THROTTLE_BUCKETS; b++) {
		struct hat_client **pp = &t->buckets[b];
		while (*pp != NULL) {
			struct hat_client *c = *pp;
			hat_client_prune(c, now_ms);
			if (c->n == 0) {
				*pp = c->next;
				hat_client_free(c);
				t->nclients--;
				continue;
			}
			if (oldest == NULL || c->last_seen < oldest->last_seen)
				oldest = c;
			pp = &c->next;
		}
	}
	if (t->nclients >= HAT_THROTTLE_MAX_CLIENTS && oldest != NULL)
		hat_unlink(t, oldest);
}

bool hat_throttle_allows(struct hat_throttle *t, const char *ip, unsigned limit, int64_t now_ms)
{
	struct hat_client *c = hat_find(t, ip);
	if (c == NULL)
		return limit > 0;
	hat_client_prune(c, now_ms);
	return c->n < limit;
}

void hat_throttle_count(struct hat_throttle *t, const char *ip, int64_t now_ms)
{
	struct hat_client *c = hat_find(t, ip);
	if (c == NULL) {
		if (t->nclients >= HAT_THROTTLE_MAX_CLIENTS)
			hat_make_room(t, now_ms);
		c = xcalloc(1, sizeof(*c));
		c->ip = xstrdup(ip);
		size_t b = hat_hash(ip);
		c->next = t->buckets[b];
		t->buckets[b] = c;
		t->nclients++;
	}
	hat_client_prune(c, now_ms);
	if (c->n == HAT_THROTTLE_MAX_LIMIT) {
		/* More than any limit can ask for: the oldest time no longer matters. */
		memmove(c->times, c->times + 1, (c->n - 1) * sizeof(*c->times));
		c->n--;
	}
	if (c->n == c->cap) {
		c->cap = c->cap == 0 ? 8 : c->cap * 2;
		c->times = xreallocarray(c->times, c->cap, sizeof(*c->times));
	}
	c->times[c->n++] = now_ms;
	c->last_seen = now_ms;
}

size_t hat_throttle_clients(const struct hat_throttle *t)
{
	return t->nclients;
}
