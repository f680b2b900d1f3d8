/*
 * hat — the host access table: sender groups chosen by the client's address,
 * first match wins, each with an action: accept, reject (554 at connect) or
 * throttle N (452 at MAIL once the client sent N messages in the last hour).
 * Not for: recipients (rat.h) or content (the pipeline).
 */
#ifndef LAZARET_HAT_H
#define LAZARET_HAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The window a throttle limit counts messages in. */
#define HAT_THROTTLE_WINDOW_MS (3600 * 1000)
/* The largest throttle limit: each counted message keeps a timestamp per client. */
#define HAT_THROTTLE_MAX_LIMIT 100000
/*
 * Clients tracked at once; past it the oldest-seen client is forgotten (a flood
 * of addresses must not grow memory without bound).
 */
#define HAT_THROTTLE_MAX_CLIENTS 65536

enum hat_action {
	HAT_ACCEPT = 0,
	HAT_REJECT,
	HAT_THROTTLE,
};

struct acl;

struct hat_policy {
	char *name;
	enum hat_action action;
	unsigned limit; /* messages per hour for HAT_THROTTLE */
	struct acl *nets;
};

/*
 * Parses an action: "accept", "reject" or "throttle N" (1..HAT_THROTTLE_MAX_LIMIT).
 * 0, or -EINVAL with *err a new message (caller frees).
 */
int hat_parse_action(const char *text, enum hat_action *action, unsigned *limit, char **err);
/*
 * Parses "ACTION: CIDR, CIDR" into *out (name copied). 0, or -EINVAL with *err.
 * The list must not be empty.
 */
int hat_parse_policy(const char *name, const char *value, struct hat_policy *out, char **err);
/* Frees what p owns and zeroes it. */
void hat_policy_clear(struct hat_policy *p);

/*
 * The policy for a client address: the first of n policies whose networks hold
 * sa, else NULL (the default applies).
 */
const struct hat_policy *hat_match(const struct hat_policy *policies, size_t n,
				   const struct sockaddr *sa);

/* Per-client message counts for throttling. Loop thread only. */
struct hat_throttle;

struct hat_throttle *hat_throttle_new(void);
void hat_throttle_free(struct hat_throttle *t);
/* True when client ip sent fewer than limit messages in the window ending at now_ms. */
bool hat_throttle_allows(struct hat_throttle *t, const char *ip, unsigned limit, int64_t now_ms);
/* Counts one message from ip at now_ms. */
void hat_throttle_count(struct hat_throttle *t, const char *ip, int64_t now_ms);
/* Clients tracked (for tests). */
size_t hat_throttle_clients(const struct hat_throttle *t);

#endif
