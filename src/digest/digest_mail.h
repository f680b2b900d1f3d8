/*
 * digest_mail — the digest mail an end user receives: its fixed texts in
 * Japanese and English (web/digest/texts.json, loaded once at start), and the
 * MIME message listing quarantined mail with its release and safelist links.
 *
 * Not for: making the links (digest_token), the pages behind them (digest_pages),
 * sending the mail or choosing its reader (digest/notify).
 */
#ifndef LAZARET_DIGEST_MAIL_H
#define LAZARET_DIGEST_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest/digest_token.h"

/* The texts file in the folder of the digest's web files. */
#define DIGEST_TEXTS_FILE "texts.json"
/* A texts file is a few KB; anything near this is not one. */
#define DIGEST_TEXTS_FILE_MAX (256 * 1024)

/* Every fixed text of mails and pages, by language. */
struct digest_texts {
	const char *mail_subject, *mail_subject_one; /* "{n}": the count; one for n == 1 */
	const char *intro;			     /* "{n}": the count */
	const char *addresses;			     /* label before the list of addresses */
	const char *sender, *subject, *received, *score, *recipient;
	const char *release, *safelist;
	const char *no_subject;
	const char *more; /* "{n}": the count */
	const char *portal;
	const char *footer;
	/* pages */
	const char *page_title;
	const char *confirm_release, *confirm_safelist;
	const char *button_release, *button_safelist;
	const char *done_release, *done_safelist, *already_safelisted;
	const char *invalid, *expired, *used, *gone, *full, *unusable_sender, *failed, *unavailable;
};

/*
 * Reads the texts of both languages from path (a JSON object {"ja": {...},
 * "en": {...}}, every field of struct digest_texts a string, no other keys) and
 * makes them the process's texts. Call once at start, before any thread uses
 * them. 0, or a negative errno with *err a new message naming the file and what is
 * wrong (caller frees); the texts in use are then unchanged.
 */
int digest_texts_load(const char *path, char **err);
/* Frees the loaded texts (at exit). */
void digest_texts_unload(void);
/* The texts of lang. Panics when digest_texts_load has not succeeded. */
const struct digest_texts *digest_texts(enum digest_lang lang);
/* tmpl with its "{n}" replaced by n. New string. */
char *digest_count_text(const char *tmpl, size_t n);

/* s with & < > " ' as HTML character references. New string (caller frees). */
char *digest_html_escape(const char *s);

/*
 * An unstructured header value (e.g. Subject) as RFC 2047 "B" encoded-words in UTF-8,
 * folded so that no line (with a header name of up to name_len characters) exceeds
 * 76 characters. Plain printable ASCII comes back unchanged. New string.
 */
char *digest_encode_header(const char *utf8, size_t name_len);

struct strbuf;
/* data in base64, 76 characters a line, CRLF after each (a MIME part's body). */
void digest_base64_lines(struct strbuf *b, const char *data, size_t len);
/* An RFC 5322 Date of ms (Unix ms) at offset_s from UTC. */
void digest_mail_date(int64_t ms, int offset_s, char *out, size_t size);

/* One message listed in a digest. Strings are borrowed. */
struct digest_entry {
	const char *recipient; /* the address it was sent to */
	const char *sender;    /* envelope sender, "" for <> */
	const char *from;      /* decoded From:, may be NULL */
	const char *subject;   /* decoded, may be NULL */
	const char *received;  /* received time, already in the reader's zone */
	bool has_score;
	double score;
	const char *release_url;  /* may be NULL: no link */
	const char *safelist_url; /* may be NULL: no link */
};

/* One digest mail. Strings are borrowed. */
struct digest_mail {
	enum digest_lang lang;
	const char *from;	      /* From: address */
	const char *to;		      /* To: (the first of the user's addresses) */
	const char *const *addresses; /* every address covered, for the introduction */
	size_t naddresses;
	const struct digest_entry *entries;
	size_t nentries;
	size_t not_listed;	/* new messages beyond max_entries */
	const char *portal_url; /* the web console (base_url), may be NULL */
	int64_t now_ms;		/* for Date: */
	int utc_offset_s;	/* the reader's offset from UTC at now_ms, for Date: */
	const char *hostname;	/* right side of the Message-ID */
};

/*
 * Builds the complete message (header and body, CRLF line ends): From, To, Subject
 * (RFC 2047), Date, Message-ID, MIME-Version, Auto-Submitted, and a
 * multipart/alternative body with text/plain and text/html, both UTF-8 in base64.
 * Every text that came from mail (subjects, senders) is escaped in the HTML. *out is
 * new (caller frees), *len its length. 0 or -EINVAL (no entries).
 */
int digest_build_mail(const struct digest_mail *m, char **out, size_t *len);

/* The subject line of a digest listing n messages, in lang (UTF-8, unencoded). New. */
char *digest_subject(enum digest_lang lang, size_t n);

#endif
