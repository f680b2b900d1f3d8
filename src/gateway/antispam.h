/*
 * antispam — the gateway's spam engines. Each returns a score; the pipeline turns
 * it into positive / suspect / clean with the configured thresholds.
 *   builtin: a rules file of header/body regular expressions with scores; GTUBE
 *            always scores as spam whatever the rules say.
 *   spamd:   SpamAssassin's spamd (SPAMC/1.5 "CHECK"), over TCP or a unix socket.
 *   rspamd:  rspamd's HTTP /checkv2.
 * Calls block (worker threads only) and are bounded by their timeout.
 */
#ifndef LAZARET_ANTISPAM_H
#define LAZARET_ANTISPAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The score GTUBE gets from every engine path that recognises it itself. */
#define ANTISPAM_GTUBE_SCORE 1000.0

struct antispam_result {
	double score;
	char *detail; /* rule names that hit, comma-separated, or NULL; caller frees */
};

struct antispam_rules;
struct msgmeta;

/*
 * Loads a builtin rules file. Format (one rule a line, '#' comments):
 *   header Subject =~ /(?i)viagra/ score 3.5 name SUBJ_VIAGRA
 *   body =~ /click here/i score 1.0 name BODY_CLICK
 * (the helper that implements this documents the exact grammar in docs/GATEWAY.md).
 * A bad line fails with *err = "FILE:LINE: message". path NULL: GTUBE only.
 */
int antispam_rules_load(const char *path, struct antispam_rules **out, char **err);
void antispam_rules_free(struct antispam_rules *r);
/* How many rules r holds (0 for NULL or a GTUBE-only set). */
size_t antispam_rules_count(const struct antispam_rules *r);
/* Scores a message (CRLF or LF line ends). Never fails on hostile input. */
int antispam_builtin_scan(const struct antispam_rules *r, const unsigned char *data, size_t len,
			  struct antispam_result *out);
/*
 * The same with the message's headers already parsed (meta from msgmeta_parse of
 * data, borrowed), so a caller that needs them anyway parses the message once.
 * meta NULL: parsed here.
 */
int antispam_builtin_scan_meta(const struct antispam_rules *r, const unsigned char *data,
			       size_t len, const struct msgmeta *meta, struct antispam_result *out);

/* addr: "host:port" or a unix socket path ("/run/spamd.sock"). 0, or -errno (then no score). */
int antispam_spamd_scan(const char *addr, int64_t timeout_ms, const unsigned char *data, size_t len,
			struct antispam_result *out);

/* Envelope facts rspamd uses; any may be NULL. */
struct antispam_envelope {
	const char *client_ip;
	const char *helo;
	const char *mail_from;
	const char *const *rcpts;
	size_t nrcpts;
};
/* addr: "host:port" of rspamd's normal worker. 0, or -errno. */
int antispam_rspamd_scan(const char *addr, int64_t timeout_ms, const struct antispam_envelope *env,
			 const unsigned char *data, size_t len, struct antispam_result *out);

void antispam_result_clear(struct antispam_result *r);

#endif
