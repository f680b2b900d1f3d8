/*
 * msgmeta — what the manager needs to know about a message, read with GMime:
 * decoded From/To/Subject/Date/Message-ID, the header list, attachments, and the
 * gateway's verdict (X-Lazaret-* headers, else SpamAssassin or rspamd headers).
 *
 * Every text field is UTF-8. Japanese headers (RFC 2047 in ISO-2022-JP, Shift_JIS,
 * EUC-JP, UTF-8, and raw 8-bit in those charsets) are the normal case. Broken MIME
 * never fails: the fields that could be read are filled, the rest stay NULL.
 * Not for: storing or rewriting messages.
 */
#ifndef LAZARET_MSGMETA_H
#define LAZARET_MSGMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgmeta_header {
	char *name;  /* as in the message */
	char *value; /* unfolded, RFC 2047 decoded, UTF-8 */
};

struct msgmeta_attachment {
	char *filename;	    /* decoded (RFC 2047 and RFC 2231), UTF-8; NULL when none */
	char *content_type; /* "application/pdf", lower case */
	uint64_t size;	    /* decoded (transfer-decoded) size in bytes */
};

struct msgmeta {
	char *from;	  /* decoded From: display form, e.g. "山田 太郎 <taro@example.jp>" */
	char *from_addr;  /* the bare address of the first From: mailbox, or NULL */
	char *to;	  /* decoded To: */
	char *cc;	  /* decoded Cc: */
	char *subject;	  /* decoded Subject: */
	char *message_id; /* without <> */
	int64_t date_ms;  /* Date: as Unix ms, 0 when absent or unreadable */

	struct msgmeta_header *headers; /* top-level header fields, in order */
	size_t nheaders;
	struct msgmeta_attachment *attachments;
	size_t nattachments;
	/*
	 * Every other file name the parts carry, decoded like filename: the name of a
	 * named text part that is shown inline rather than listed as an attachment,
	 * and the names an attachment carries besides its filename (Content-Type's
	 * name= beside a Content-Disposition filename=, a plain filename= beside an
	 * RFC 2231 filename*=, a repeated parameter). Mail clients differ in which
	 * one they show, so a content filter on file names must see them all.
	 */
	char **other_names;
	size_t nother_names;
	/*
	 * True when the lists above are not the whole message: parts nested deeper
	 * than the walk follows, or more attachments than are listed.
	 */
	bool parts_incomplete;
	bool headers_incomplete; /* more top-level header fields than are recorded */

	/* The gateway's judgement. verdict is "spam" or "suspect" or NULL when no header says. */
	char *verdict;
	bool has_score;
	double score;
	char *gateway;	      /* X-Lazaret-Gateway, or NULL */
	char *client_address; /* X-Lazaret-Client-Address, or NULL */
	/*
	 * msgmeta_parse_kept: attachments[].size is 0 until msgmeta_measure (a size
	 * takes decoding the whole attachment; relaying mail needs none).
	 */
	bool sizes_pending;
	void *kept; /* msgmeta_parse_kept's parse (msgmeta_mime); private */
};

/* Initialises GMime once; safe to call from any thread, any number of times. */
void msgmeta_init(void);

/*
 * Parses len bytes of a message (CRLF or LF line ends). On success *out is a new
 * msgmeta the caller frees with msgmeta_free(). Broken input still succeeds with
 * best-effort fields. Returns 0, or -EINVAL only when data is NULL.
 */
int msgmeta_parse(const void *data, size_t len, struct msgmeta **out);
void msgmeta_free(struct msgmeta *m);
/*
 * msgmeta_parse that also keeps GMime's parse of the message for msgmeta_mime,
 * so that a caller reading the parts again (the gateway's anti-spam rules) does
 * not parse the message a second time, and leaves the attachments' sizes to
 * msgmeta_measure (sizes_pending). The parse borrows data: data must outlive
 * *out (msgmeta_free frees the parse, never data).
 */
int msgmeta_parse_kept(const void *data, size_t len, struct msgmeta **out);
/* Fills in the attachments' sizes msgmeta_parse_kept left (no-op otherwise). */
void msgmeta_measure(struct msgmeta *m);
/*
 * The message msgmeta_parse_kept parsed, a GMimeMessage * (void * here, so that
 * this header needs no GMime), owned by m: NULL when m was made by
 * msgmeta_parse, or when GMime found no message at all.
 */
void *msgmeta_mime(const struct msgmeta *m);

/*
 * The content of attachment index (0-based) of len bytes of a message, numbered
 * exactly as msgmeta_parse numbers msgmeta.attachments: a part's bytes
 * transfer-decoded (base64, quoted-printable), an attached message as its bytes;
 * its length is the attachment's size. On success *out is new (caller frees;
 * not NULL, also for an empty attachment) and *out_len its length. 0; -ENOENT
 * when the message has no attachment index; -EINVAL when a pointer is NULL.
 */
int msgmeta_attachment_data(const void *data, size_t len, size_t index, unsigned char **out,
			    size_t *out_len);

/*
 * Decodes one raw header value (RFC 2047 words, raw 8-bit in a Japanese charset or
 * UTF-8) to UTF-8. Returns a new string the caller frees (never NULL).
 */
char *msgmeta_decode_header(const char *raw);

/* The readable text of a message, for showing it without rendering anything. */
struct msgmeta_text {
	char *text;	/* UTF-8, LF line ends; "" when the message has no text part */
	bool truncated; /* text was cut at the limit (on a character boundary) */
	bool from_html; /* no text/plain part: text is the HTML part made plain */
};

/*
 * The body text of len bytes of a message: its first text/plain part that is not
 * an attachment, decoded (transfer encoding and charset, Japanese charsets as for
 * headers), else its first text/html part turned into plain text (tags dropped,
 * script and style contents dropped, entities decoded, block ends as line breaks;
 * nothing is fetched or run). At most max bytes of text (0: no limit). On success
 * out->text is new (caller frees). 0, or -EINVAL when data or out is NULL.
 */
int msgmeta_text_body(const void *data, size_t len, size_t max, struct msgmeta_text *out);

#endif
