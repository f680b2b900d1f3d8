/*
 * filter — the gateway's content filters: a small rule language modelled on the
 * message filters of commercial gateways, kept in its own file.
 *
 *   block_exe: if attachment-filename == "(?i)\.exe$" { quarantine("Policy"); }
 *   tag_big:   if size > 10M and not (mail-from == "@partner\.example$") {
 *                  insert-header("X-Big", "yes");
 *              }
 *
 * Conditions: subject, header("X-Name"), body-contains, attachment-filename,
 * attachment-type, size, mail-from, rcpt-to, remote-ip; and/or/not, parentheses;
 * "==" is a regular-expression match, "!=" its negation, body-contains("text") a
 * plain substring, size compares numbers (with K/M/G). Actions: quarantine("Name"),
 * drop, bounce, deliver, insert-header("Name", "value"), strip-header("Name"),
 * alt-mailhost("host:port"). Filters run in file order; a final action (quarantine,
 * drop, bounce, deliver) ends the evaluation. The exact grammar is in docs/GATEWAY.md.
 */
#ifndef LAZARET_FILTER_H
#define LAZARET_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgmeta;
struct filter_set;

/*
 * Parses a filter file. On a syntax error returns -EINVAL and *err is
 * "FILE:LINE:COLUMN: message" (caller frees); nothing is half-loaded.
 */
int filter_load(const char *path, struct filter_set **out, char **err);
/* The same for text in memory; name is used in error messages. */
int filter_parse(const char *name, const char *text, size_t len, struct filter_set **out,
		 char **err);
/*
 * Parses an outbreak rules file: the filter language, after a first line (blank
 * lines and comments aside) "version TEXT" naming the rules' release. 0 with *out
 * and *version (caller frees both), or -EINVAL with *err "FILE:LINE:COLUMN:
 * message" (the version line's errors too), or -errno with *err when unreadable.
 */
int filter_load_outbreak(const char *path, struct filter_set **out, char **version, char **err);
void filter_set_free(struct filter_set *fs);
/*
 * Checks every quarantine("Name") of fs with ok(). 0, or -EINVAL with *bad_name,
 * *filter_name (borrowed from fs) and *line (of the filter) of the first refused.
 */
int filter_set_check_quarantines(const struct filter_set *fs, bool (*ok)(const char *name),
				 const char **bad_name, const char **filter_name, int *line);
/* Calls fn with every quarantine("Name") of fs, in order (a name may come twice). */
void filter_set_each_quarantine(const struct filter_set *fs,
				void (*fn)(const char *name, void *arg), void *arg);
/* The number of filters. */
size_t filter_set_count(const struct filter_set *fs);

struct filter_input {
	const struct msgmeta *meta; /* decoded headers, attachments */
	const unsigned char *data;  /* the raw message */
	size_t len;
	const char *mail_from;
	const char *const *rcpts; /* rcpt-to matches when any recipient matches */
	size_t nrcpts;
	const char *remote_ip;
};

enum filter_action_kind {
	FILTER_ACTION_QUARANTINE, /* arg: quarantine name */
	FILTER_ACTION_DROP,
	FILTER_ACTION_BOUNCE,
	FILTER_ACTION_DELIVER,
	FILTER_ACTION_INSERT_HEADER, /* arg: name, arg2: value */
	FILTER_ACTION_STRIP_HEADER,  /* arg: name */
	FILTER_ACTION_ALT_MAILHOST,  /* arg: host:port */
};

struct filter_action {
	enum filter_action_kind kind;
	char *arg;
	char *arg2;
	char *filter_name; /* which filter chose it (for logs and X-headers) */
};

struct filter_result {
	struct filter_action *actions; /* in the order they were taken */
	size_t nactions;
	/*
	 * True when a filter's condition could not be decided (the message holds more
	 * than the limits let the filters inspect): evaluation stopped at that filter,
	 * and the caller must give the message its fail-closed outcome, never treat it
	 * as clean. undecided_filter names the filter; undecided_reason says why
	 * (a static string, for logs).
	 */
	bool undecided;
	char *undecided_filter;
	const char *undecided_reason;
};

/*
 * Evaluates every filter against in. Never fails on hostile input; 0 or -ENOMEM.
 * Conditions have three values: true, false and undecided (a value the matcher
 * could not fully inspect, the matching budget spent, attachments or text parts
 * beyond the walk's limits); "and", "or" and "not" follow Kleene's logic, so an
 * undecided part only matters when it could change the result. The first filter
 * whose condition is undecided ends the evaluation with out->undecided set.
 */
int filter_eval(const struct filter_set *fs, const struct filter_input *in,
		struct filter_result *out);
void filter_result_clear(struct filter_result *r);

/* The action's keyword as written in filter files ("quarantine", "insert-header", ...). */
const char *filter_action_name(enum filter_action_kind kind);
/* True for quarantine, drop, bounce and deliver: actions that end the evaluation. */
bool filter_action_is_final(enum filter_action_kind kind);

#endif
