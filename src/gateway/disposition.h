/*
 * disposition — what happens to each recipient of a message on the gateway, the
 * grouping of recipients with the same outcome (one copy is sent per group), and
 * the edits a copy may need (subject tag, header removal). Pure functions over
 * bytes: no I/O, so they are unit-tested on their own.
 */
#ifndef LAZARET_DISPOSITION_H
#define LAZARET_DISPOSITION_H

#include <stdbool.h>
#include <stddef.h>

enum disposition_route {
	DISPOSITION_NEXT_HOP = 0,  /* [delivery] next_hop */
	DISPOSITION_ALT_HOST,	   /* target: "host:port" */
	DISPOSITION_EXTERNAL_SPAM, /* the manager's spam quarantine over SMTP */
	DISPOSITION_QUARANTINE,	   /* target: a local quarantine ("spam", "Virus", ...) */
	DISPOSITION_DROP,	   /* accepted and discarded */
	DISPOSITION_BOUNCE,	   /* refused with a 5xx */
	DISPOSITION_CENTRAL_PVO,   /* the manager's PVO listener; pvo: which quarantines */
};

/* Edits of the copy sent to a group. */
#define DISPOSITION_EDIT_TAG	0x1u /* the spam tag before the Subject's text */
#define DISPOSITION_EDIT_FILTER 0x2u /* the content filters' header insertions/removals */

struct disposition {
	enum disposition_route route;
	const char *target;  /* borrowed; see the routes; NULL otherwise */
	unsigned edits;	     /* DISPOSITION_EDIT_* */
	const char *verdict; /* "spam" | "suspect" | NULL: recorded with quarantined spam */
	const char *reason;  /* for logs ("spam", "safelist", "filter:NAME"); not compared */
	unsigned pvo;	     /* DISPOSITION_CENTRAL_PVO: a bit per quarantine of the message */
};

struct disposition_group {
	struct disposition d; /* the outcome shared by the group */
	size_t *rcpts;	      /* indices into the recipient list, ascending */
	size_t n;
};

/* "next_hop", "alt_host", "external_spam", "quarantine", "drop", "bounce", "central_pvo". */
const char *disposition_route_name(enum disposition_route r);
/* True when a and b send the same copy to the same place (reason is ignored). */
bool disposition_equal(const struct disposition *a, const struct disposition *b);
/*
 * Groups n per-recipient outcomes: recipients whose outcomes are equal share a
 * group; groups come in the order of their first recipient. *out is a new array
 * of *ngroups groups (disposition_groups_free). n may be 0.
 */
void disposition_group(const struct disposition *per_rcpt, size_t n, struct disposition_group **out,
		       size_t *ngroups);
void disposition_groups_free(struct disposition_group *g, size_t n);

/*
 * The end of the header section: the offset of the empty line that ends it (the
 * body starts after it), or len when the message has no body separator.
 */
size_t disposition_header_end(const unsigned char *data, size_t len);

/*
 * A copy of the message with tag put before the Subject's text (after "Subject:"
 * and its spaces), so that RFC 2047 encoded words stay as they are; a Subject
 * that already starts with the tag is left alone; without a Subject one is added.
 * A space separates the tag from the text. *out_len gets the length; caller frees.
 */
unsigned char *disposition_tag_subject(const unsigned char *data, size_t len, const char *tag,
				       size_t *out_len);
/*
 * A copy without any header field named name (case-insensitive, with its folded
 * continuation lines). *out_len gets the length; caller frees.
 */
unsigned char *disposition_strip_header(const unsigned char *data, size_t len, const char *name,
					size_t *out_len);

#endif
