/*
 * pvo_header — the headers a gateway puts on a message it sends to the manager's
 * PVO listener: one X-Lazaret-Quarantine per quarantine the message is in, and
 * X-Lazaret-Origin-Id, the gateway's own id for the transfer:
 *
 *   X-Lazaret-Quarantine: <name>; reason="<...>"; expires=<RFC 3339>;
 *       entered=<RFC 3339>
 *   X-Lazaret-Origin-Id: <id>
 *
 * I/O-free: it reads the header section of a message in memory. Not for: what
 * the manager does with a parsed header (manager/ingest.c).
 */
#ifndef LAZARET_PVO_HEADER_H
#define LAZARET_PVO_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A message is in at most this many quarantines (one header each): more is a bug. */
#define PVO_HEADER_QUARANTINES_MAX 32
/* The longest reason (a filter or virus name, with room), in bytes. */
#define PVO_HEADER_REASON_MAX 512
/* The longest origin id (a gateway's queue id or UUID, with room). */
#define PVO_HEADER_ORIGIN_MAX 128
/* The longest header field looked at, unfolded: longer X-Lazaret-* fields are malformed. */
#define PVO_HEADER_FIELD_MAX 2048
/* The longest error text pvo_header_* write. */
#define PVO_HEADER_ERR_MAX 160

struct pvo_header_quarantine {
	char *name;	    /* 1..STORE_QUARANTINE_NAME_MAX bytes of UTF-8, trimmed */
	char *reason;	    /* "" when not given */
	int64_t entered_ms; /* 0: not given */
	int64_t expires_ms; /* 0: not given */
};

struct pvo_headers {
	struct pvo_header_quarantine q[PVO_HEADER_QUARANTINES_MAX];
	size_t nq;
	char *origin_id; /* NULL when the message has none */
};

/*
 * Parses one X-Lazaret-Quarantine value (already unfolded; surrounding blanks
 * allowed). Parameters reason, expires, entered (case-insensitive; each at most
 * once; unknown ones are skipped); values are tokens or quoted strings with
 * backslash escapes. 0 with *out filled (free with pvo_header_quarantine_clear),
 * or -EINVAL with err (size errlen) saying why.
 */
int pvo_header_parse_quarantine(const char *value, size_t len, struct pvo_header_quarantine *out,
				char *err, size_t errlen);
void pvo_header_quarantine_clear(struct pvo_header_quarantine *q);

/*
 * Whether name can name a PVO quarantine: 1..STORE_QUARANTINE_NAME_MAX bytes of
 * UTF-8 text without control characters, no ';', '"', '\\' or '=', no blank at
 * either end, not beginning with '*'. The rule X-Lazaret-Quarantine applies.
 */
bool pvo_header_name_ok(const char *name);

/*
 * An RFC 3339 date-time ("2026-12-05T07:00:00Z", "2026-12-05T16:00:00.250+09:00")
 * to Unix milliseconds. 0, or -EINVAL (not one, or a field out of range).
 */
int pvo_header_parse_time(const char *s, size_t len, int64_t *ms);

/*
 * The line of s[0..len) that begins at i: its length without the line break (LF
 * or CR LF) into *n. Returns where the next line begins (len after the last).
 */
size_t pvo_header_line(const char *s, size_t len, size_t i, size_t *n);

/*
 * Reads the header section of raw (up to the first empty line), unfolding fields
 * (RFC 5322: a line break followed by a blank continues the field), and parses
 * every X-Lazaret-Quarantine and X-Lazaret-Origin-Id. 0 with *out filled (free
 * with pvo_headers_clear; nq may be 0), or -EINVAL with err saying which header
 * is malformed and why (nothing to free then).
 */
int pvo_headers_parse(const unsigned char *raw, size_t len, struct pvo_headers *out, char *err,
		      size_t errlen);
void pvo_headers_clear(struct pvo_headers *h);

#endif
