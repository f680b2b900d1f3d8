/*
 * msgmeta — reads what the manager shows and indexes about one quarantined message:
 * decoded address and subject headers, the top-level header list, the attachments
 * (name, type, decoded size) and the gateway's verdict and score (see msgmeta.h);
 * and, on request, one message's body text or one attachment's decoded content.
 * One walk over the parts numbers the attachments for every caller.
 *
 * GMime splits the message into parts and parses addresses and dates. Header text
 * and file names are decoded by mimeword (RFC 2047 words, RFC 2231 parameters) and
 * charset (Japanese charsets as real mail uses them), not by GMime, because
 * Japanese mail needs more than a generic decoder gives.
 *
 * Broken input never fails: whatever could be read is filled in. The module keeps
 * no state between calls except GMime's one-time initialisation and a read-only
 * parser-options object, so any number of threads may parse at once.
 * Not for: rewriting, re-encoding or storing messages.
 */
#include "mime/msgmeta.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "mime/charset.h"
#include "mime/mimeword.h"

/* Nesting of multiparts and forwarded messages we follow; deeper parts are ignored. */
#define MSGMETA_MAX_DEPTH 32
/* Attachments recorded per message; a mail bomb of tiny parts stops being listed. */
#define MSGMETA_MAX_ATTACHMENTS 1024
/* Top-level header fields recorded; more is abuse, not mail. */
#define MSGMETA_MAX_HEADERS 1024

static pthread_once_t msgmeta_once = PTHREAD_ONCE_INIT;
static GMimeParserOptions *msgmeta_options;

static void msgmeta_init_once(void)
{
	static const char *fallback[] = {"UTF-8", "ISO-2022-JP", "CP932", "EUC-JP", NULL};
	g_mime_init();
	msgmeta_options = g_mime_parser_options_new();
	g_mime_parser_options_set_rfc2047_compliance_mode(msgmeta_options,
							  GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_parameter_compliance_mode(msgmeta_options,
							    GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_address_compliance_mode(msgmeta_options,
							  GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_fallback_charsets(msgmeta_options, fallback);
}

void msgmeta_init(void)
{
	pthread_once(&msgmeta_once, msgmeta_init_once);
}

char *msgmeta_decode_header(const char *raw)
{
	msgmeta_init();
	if (raw == NULL)
		return xstrdup("");
	return mimeword_decode_header(raw);
}

/* ---- message walk ------------------------------------------------------------------- */

static const char *raw_header(GMimeObject *obj, const char *name)
{
	GMimeHeaderList *list = g_mime_object_get_header_list(obj);
	if (list == NULL)
		return NULL;
	GMimeHeader *h = g_mime_header_list_get_header(list, name);
	return h ? g_mime_header_get_raw_value(h) : NULL;
}

static bool disposition_is_attachment(const char *raw)
{
	if (raw == NULL)
		return false;
	while (*raw == ' ' || *raw == '\t' || *raw == '\r' || *raw == '\n')
		raw++;
	return g_ascii_strncasecmp(raw, "attachment", 10) == 0 &&
	       (raw[10] == '\0' || raw[10] == ';' || g_ascii_isspace(raw[10]));
}

static char *mime_type_of(GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	char *t = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	struct strbuf out = STRBUF_INIT;
	charset_add_utf8_lossy(&out, t ? t : "application/octet-stream",
			       strlen(t ? t : "application/octet-stream"));
	g_free(t);
	char *s = strbuf_take(&out);
	for (char *c = s; *c; c++)
		*c = g_ascii_tolower(*c);
	return s;
}

/*
 * Writes what an attachment holds to to: a part's content transfer-decoded
 * (base64, quoted-printable, uuencode), an attached message as its bytes.
 */
static void write_decoded(GMimeObject *obj, GMimeStream *to)
{
	if (GMIME_IS_PART(obj)) {
		GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(obj));
		if (content)
			g_mime_data_wrapper_write_to_stream(content, to);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner)
			g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, to);
	}
}

static uint64_t decoded_size(GMimeObject *obj)
{
	GMimeStream *null = g_mime_stream_null_new();
	write_decoded(obj, null);
	uint64_t n = (uint64_t)GMIME_STREAM_NULL(null)->written;
	g_object_unref(null);
	return n;
}

/*
 * The attachment walk. It visits the parts of a message depth first, in the
 * order they appear, and hands every part that counts as an attachment to the
 * visitor: this order is the numbering of msgmeta.attachments, and every user of
 * attachments (listing, extracting) goes through this one walk so the numbers agree.
 * At most MSGMETA_MAX_ATTACHMENTS are handed over.
 */
struct walk_visitor {
	/* Gets the decoded file name (may be NULL; the visitor owns it). False: stop. */
	bool (*attachment)(struct walk_visitor *v, char *filename, GMimeObject *obj);
	/*
	 * Gets every other name of a part (owned): the name of a named part that is
	 * no attachment, and the names an attachment carries besides its filename.
	 * May be NULL.
	 */
	void (*other_name)(struct walk_visitor *v, char *name);
	size_t seen; /* attachments handed over so far */
	bool stopped;
	bool incomplete; /* parts were left unvisited (too deep, too many) */
};

/* Decides whether a leaf (or an attached message) is an attachment, and hands it over. */
static void consider_leaf(struct walk_visitor *v, GMimeObject *obj)
{
	if (v->seen >= MSGMETA_MAX_ATTACHMENTS) {
		v->stopped = true;
		v->incomplete = true;
		return;
	}
	const char *disp = raw_header(obj, "Content-Disposition");
	struct mimeword_names alts = {0};
	struct mimeword_names *want_alts = v->other_name != NULL ? &alts : NULL;
	char *filename = mimeword_param(disp, "filename", want_alts);
	bool from_disposition = filename != NULL;
	char *ct_name = mimeword_param(raw_header(obj, "Content-Type"), "name", want_alts);
	if (filename == NULL) {
		filename = ct_name;
	} else if (ct_name != NULL && want_alts != NULL) {
		/* Content-Type's name beside a disposition filename: some clients show it. */
		mimeword_names_add(&alts, ct_name, filename);
	} else {
		free(ct_name);
	}
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	bool is_text = ct && g_mime_content_type_is_type(ct, "text", "*");
	if (disposition_is_attachment(disp) || from_disposition ||
	    (filename != NULL && (!is_text || GMIME_IS_MESSAGE_PART(obj)))) {
		v->seen++;
		if (!v->attachment(v, filename, obj))
			v->stopped = true;
	} else if (filename != NULL && v->other_name != NULL) {
		v->other_name(v, filename);
	} else {
		free(filename);
	}
	for (size_t i = 0; i < alts.n; i++) {
		if (v->other_name != NULL)
			v->other_name(v, alts.v[i]);
		else
			free(alts.v[i]);
	}
	free(alts.v);
}

static void walk(struct walk_visitor *v, GMimeObject *obj, int depth)
{
	if (obj == NULL || v->stopped)
		return;
	if (depth > MSGMETA_MAX_DEPTH) {
		v->incomplete = true;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && !v->stopped; i++)
			walk(v, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		consider_leaf(v, obj);
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		if (inner && !v->stopped)
			walk(v, g_mime_message_get_mime_part(inner), depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		consider_leaf(v, obj);
	}
}

/* A message parsed by GMime straight from the caller's bytes (parsed_open). */
struct parsed {
	GByteArray *borrowed;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg; /* NULL when GMime found no message at all */
};

/* What msgmeta_parse_kept keeps: the parse, and each attachment's part in it. */
struct kept {
	struct parsed p;
	GMimeObject **parts; /* borrowed from p.msg; one for each attachment */
};

/*
 * The visitor of msgmeta_parse: records each attachment's name, type and size,
 * or, for msgmeta_parse_kept (kept), its part instead of its size.
 */
struct walk_collect {
	struct walk_visitor v; /* first: the walk's pointer is this struct's */
	struct msgmeta *m;
	struct kept *kept; /* NULL: sizes now */
};

static bool collect_attachment(struct walk_visitor *v, char *filename, GMimeObject *obj)
{
	struct walk_collect *c = (struct walk_collect *)v;
	struct msgmeta *m = c->m;
	m->attachments =
	    xreallocarray(m->attachments, m->nattachments + 1, sizeof(*m->attachments));
	if (c->kept != NULL) {
		c->kept->parts =
		    xreallocarray(c->kept->parts, m->nattachments + 1, sizeof(*c->kept->parts));
		c->kept->parts[m->nattachments] = obj;
	}
	struct msgmeta_attachment *a = &m->attachments[m->nattachments++];
	a->filename = filename;
	a->content_type = mime_type_of(obj);
	a->size = c->kept != NULL ? 0 : decoded_size(obj);
	return true;
}

static void collect_other_name(struct walk_visitor *v, char *name)
{
	struct msgmeta *m = ((struct walk_collect *)v)->m;
	/* Bounded like the attachments, and by the repeats a part may hold. */
	if (m->nother_names >= MSGMETA_MAX_ATTACHMENTS) {
		v->incomplete = true;
		free(name);
		return;
	}
	m->other_names =
	    xreallocarray(m->other_names, m->nother_names + 1, sizeof(*m->other_names));
	m->other_names[m->nother_names++] = name;
}

/* The visitor of msgmeta_attachment_data: finds attachment number want. */
struct walk_find {
	struct walk_visitor v; /* first, as above */
	size_t want;
	GMimeObject *found; /* borrowed from the parsed message */
};

static bool find_attachment(struct walk_visitor *v, char *filename, GMimeObject *obj)
{
	struct walk_find *f = (struct walk_find *)v;
	free(filename);
	if (v->seen - 1 != f->want)
		return true;
	f->found = obj;
	return false;
}

/* ---- verdict ------------------------------------------------------------------------ */

static const char *header_value(const struct msgmeta *m, const char *name)
{
	for (size_t i = 0; i < m->nheaders; i++)
		if (g_ascii_strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

/* Reads a finite decimal number at s (C locale); false when there is none. */
static bool parse_number(const char *s, double *out, const char **end)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (!(g_ascii_isdigit(*s) ||
	      ((*s == '-' || *s == '+' || *s == '.') && (g_ascii_isdigit(s[1]) || s[1] == '.'))))
		return false;
	char *e;
	double d = g_ascii_strtod(s, &e);
	if (e == s || !isfinite(d))
		return false;
	*out = d;
	if (end)
		*end = e;
	return true;
}

static bool starts_word(const char *s, const char *word)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(word);
	return g_ascii_strncasecmp(s, word, n) == 0 && !g_ascii_isalnum(s[n]);
}

/* Finds "key=" as a whole word in s and reads its number. */
static bool find_keyed_number(const char *s, const char *key, double *out)
{
	size_t kn = strlen(key);
	for (const char *p = s; (p = strstr(p, key)) != NULL; p += kn)
		if ((p == s || !g_ascii_isalnum(p[-1])) && parse_number(p + kn, out, NULL))
			return true;
	return false;
}

/* SpamAssassin "Yes, score=7.2 required=5.0 tests=..." (older: hits=). */
static void verdict_spam_status(const char *v, const char **verdict, bool *has, double *score)
{
	if (starts_word(v, "yes"))
		*verdict = "spam";
	else if (starts_word(v, "no"))
		*verdict = "suspect";
	*has = find_keyed_number(v, "score=", score) || find_keyed_number(v, "hits=", score);
}

/* rspamd "default: True [15.00 / 15.00]; SYMBOL(1.0)[...]". */
static void verdict_spamd_result(const char *v, const char **verdict, bool *has, double *score)
{
	const char *colon = strchr(v, ':');
	const char *bracket = strchr(v, '[');
	const char *w = colon && (bracket == NULL || colon < bracket) ? colon + 1 : v;
	if (starts_word(w, "true"))
		*verdict = "spam";
	else if (starts_word(w, "false"))
		*verdict = "suspect";
	*has = bracket && parse_number(bracket + 1, score, NULL);
}

static void read_verdict(struct msgmeta *m)
{
	const char *verdict = NULL;
	bool has = false;
	double score = 0;
	const char *v;

	if ((v = header_value(m, "X-Lazaret-Verdict")) != NULL) {
		if (starts_word(v, "spam"))
			verdict = "spam";
		else if (starts_word(v, "suspect"))
			verdict = "suspect";
	}
	if ((v = header_value(m, "X-Lazaret-Score")) != NULL)
		has = parse_number(v, &score, NULL);

	const char *other_verdict = NULL;
	bool other_has = false;
	double other_score = 0;
	if ((v = header_value(m, "X-Spam-Status")) != NULL)
		verdict_spam_status(v, &other_verdict, &other_has, &other_score);
	if ((v = header_value(m, "X-Spamd-Result")) != NULL && (!other_verdict || !other_has)) {
		const char *rv = NULL;
		bool rh = false;
		double rs = 0;
		verdict_spamd_result(v, &rv, &rh, &rs);
		if (!other_verdict)
			other_verdict = rv;
		if (!other_has && rh) {
			other_has = true;
			other_score = rs;
		}
	}
	if (!other_verdict && (v = header_value(m, "X-Spam-Flag")) != NULL) {
		if (starts_word(v, "yes") || starts_word(v, "true"))
			other_verdict = "spam";
		else if (starts_word(v, "no") || starts_word(v, "false"))
			other_verdict = "suspect";
	}
	if (!other_has && (v = header_value(m, "X-Spam-Score")) != NULL)
		other_has = parse_number(v, &other_score, NULL);

	if (!verdict)
		verdict = other_verdict;
	if (!has && other_has) {
		has = true;
		score = other_score;
	}
	m->verdict = verdict ? xstrdup(verdict) : NULL;
	m->has_score = has;
	m->score = has ? score : 0;
	if ((v = header_value(m, "X-Lazaret-Gateway")) != NULL && *v)
		m->gateway = xstrdup(v);
	if ((v = header_value(m, "X-Lazaret-Client-Address")) != NULL && *v)
		m->client_address = xstrdup(v);
}

/* ---- top level ---------------------------------------------------------------------- */

static char *utf8_copy(const char *s)
{
	struct strbuf out = STRBUF_INIT;
	charset_add_utf8_lossy(&out, s, strlen(s));
	return strbuf_take(&out);
}

/* The first mailbox's address, searching inside groups. */
static const char *first_addr(InternetAddressList *list, int depth)
{
	int n = list ? internet_address_list_length(list) : 0;
	for (int i = 0; i < n && depth < MSGMETA_MAX_DEPTH; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *a =
			    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
			if (a && strchr(a, '@'))
				return a;
		} else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			const char *a = first_addr(
			    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
			    depth + 1);
			if (a)
				return a;
		}
	}
	return NULL;
}

/* The address in <...>, or the first word with an '@', when GMime found no mailbox. */
static char *addr_by_hand(const char *raw)
{
	const char *lt = strrchr(raw, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt && memchr(lt, '@', (size_t)(gt - lt)))
		return xstrndup(lt + 1, (size_t)(gt - lt - 1));
	const char *at = strchr(raw, '@');
	if (at == NULL)
		return NULL;
	const char *b = at, *e = at;
	while (b > raw && !strchr(" \t\r\n<>\",;:()", b[-1]))
		b--;
	while (*e && !strchr(" \t\r\n<>\",;:()", *e))
		e++;
	return b < at && e > at + 1 ? xstrndup(b, (size_t)(e - b)) : NULL;
}

/* Uses the list GMime already parsed for msg when there is one (not owned). */
static void read_from_addr(struct msgmeta *m, GMimeMessage *msg, const char *raw)
{
	InternetAddressList *parsed = msg ? g_mime_message_get_from(msg) : NULL;
	InternetAddressList *list =
	    parsed ? NULL : internet_address_list_parse(msgmeta_options, raw);
	const char *a = first_addr(parsed ? parsed : list, 0);
	char *found = a ? xstrdup(a) : addr_by_hand(raw);
	if (list)
		g_object_unref(list);
	if (found) {
		m->from_addr = utf8_copy(found);
		free(found);
	}
}

static void read_message_id(struct msgmeta *m, const char *raw)
{
	char *id = g_mime_utils_decode_message_id(raw);
	if (id && *id) {
		m->message_id = utf8_copy(id);
	} else {
		size_t n;
		char *u = mimeword_unfold(raw, &n);
		char *s = u;
		if (*s == '<')
			s++;
		char *gt = strchr(s, '>');
		if (gt)
			*gt = '\0';
		if (*s)
			m->message_id = utf8_copy(s);
		free(u);
	}
	g_free(id);
}

static void read_date(struct msgmeta *m, GMimeMessage *msg, const char *raw)
{
	/* GMime parsed the date already when it built msg; that copy is not ours. */
	GDateTime *dt = msg ? g_mime_message_get_date(msg) : NULL;
	if (dt)
		g_date_time_ref(dt);
	else
		dt = g_mime_utils_header_decode_date(raw);
	if (dt == NULL)
		return;
	m->date_ms =
	    (int64_t)g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000;
	g_date_time_unref(dt);
}

/* Records one top-level field and fills the summary field it stands for. */
static void add_header(struct msgmeta *m, GMimeMessage *msg, const char *name, size_t nlen,
		       const char *raw)
{
	m->headers = xreallocarray(m->headers, m->nheaders + 1, sizeof(*m->headers));
	struct msgmeta_header *mh = &m->headers[m->nheaders++];
	struct strbuf nb = STRBUF_INIT;
	charset_add_utf8_lossy(&nb, name, nlen);
	mh->name = strbuf_take(&nb);
	mh->value = msgmeta_decode_header(raw);
	name = mh->name;

	if (!m->from && g_ascii_strcasecmp(name, "From") == 0) {
		m->from = xstrdup(mh->value);
		read_from_addr(m, msg, raw);
	} else if (!m->to && g_ascii_strcasecmp(name, "To") == 0) {
		m->to = xstrdup(mh->value);
	} else if (!m->cc && g_ascii_strcasecmp(name, "Cc") == 0) {
		m->cc = xstrdup(mh->value);
	} else if (!m->subject && g_ascii_strcasecmp(name, "Subject") == 0) {
		m->subject = xstrdup(mh->value);
	} else if (!m->message_id && g_ascii_strcasecmp(name, "Message-ID") == 0) {
		read_message_id(m, raw);
	} else if (m->date_ms == 0 && g_ascii_strcasecmp(name, "Date") == 0) {
		read_date(m, msg, raw);
	}
}

/*
 * Splits the top-level header block (up to the first empty line) into fields,
 * in order. This is done here rather than through GMime because GMime files the
 * Content-* fields under the body part, and gives up on a block with no valid
 * field at all. Lines that are not "name: value" (an mbox "From " line, garbage)
 * are skipped; NUL bytes are dropped from values.
 */
static void read_headers(struct msgmeta *m, GMimeMessage *msg, const char *data, size_t len)
{
	const char *p = data, *end = data + len;
	const char *name = NULL;
	size_t nlen = 0;
	struct strbuf value = STRBUF_INIT;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;
		const char *le = eol ? eol : end;
		if (le > p && le[-1] == '\r')
			le--;
		bool continuation = (*p == ' ' || *p == '\t') && le > p;
		if (!continuation && name) {
			if (m->nheaders < MSGMETA_MAX_HEADERS)
				add_header(m, msg, name, nlen, strbuf_str(&value));
			else
				m->headers_incomplete = true;
			name = NULL;
		}
		if (le == p)
			break; /* the empty line ending the header block */
		const char *vstart = NULL;
		if (continuation) {
			if (name)
				vstart = p;
		} else {
			const char *colon = memchr(p, ':', (size_t)(le - p));
			const char *ne = colon;
			while (ne && ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			bool valid = ne && ne > p;
			for (const char *t = p; valid && t < ne; t++)
				valid = (unsigned char)*t > ' ' && *t != 0x7F;
			if (valid) {
				name = p;
				nlen = (size_t)(ne - p);
				strbuf_truncate(&value, 0);
				vstart = colon + 1;
			}
		}
		while (vstart && vstart < le) {
			const char *nul = memchr(vstart, '\0', (size_t)(le - vstart));
			const char *stop = nul ? nul : le;
			strbuf_add(&value, vstart, (size_t)(stop - vstart));
			vstart = nul ? nul + 1 : NULL;
		}
		p = next;
	}
	if (name && m->nheaders < MSGMETA_MAX_HEADERS)
		add_header(m, msg, name, nlen, strbuf_str(&value));
	else if (name)
		m->headers_incomplete = true;
	strbuf_free(&value);
}

/*
 * Parses len bytes at data in place: the stream's array only borrows them (the
 * stream does not own it) and parsed_close detaches it again, so nothing is
 * copied and nothing of the caller's is freed. data must outlive p.
 */
static void parsed_open(struct parsed *p, const void *data, size_t len)
{
	msgmeta_init();
	size_t stream_len = len > G_MAXUINT ? G_MAXUINT : len; /* a GByteArray's limit */
	p->borrowed = g_byte_array_new_take((guint8 *)(uintptr_t)data, stream_len);
	p->stream = g_mime_stream_mem_new_with_byte_array(p->borrowed);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(p->stream), FALSE);
	p->parser = g_mime_parser_new_with_stream(p->stream);
	g_mime_parser_set_format(p->parser, GMIME_FORMAT_MESSAGE);
	p->msg = g_mime_parser_construct_message(p->parser, msgmeta_options);
}

static void parsed_close(struct parsed *p)
{
	if (p->msg != NULL)
		g_object_unref(p->msg);
	g_object_unref(p->parser);
	g_object_unref(p->stream);
	g_byte_array_free(p->borrowed, FALSE); /* frees the wrapper only, not the data */
}

/* msgmeta_parse; keep: the parse stays in m->kept, the sizes wait. */
static int msgmeta_parse_with(const void *data, size_t len, bool keep, struct msgmeta **out)
{
	if (data == NULL || out == NULL)
		return -EINVAL;
	struct msgmeta *m = xcalloc(1, sizeof(*m));
	struct kept k = {0};
	parsed_open(&k.p, data, len);
	read_headers(m, k.p.msg, data, len);
	if (k.p.msg) {
		struct walk_collect c = {
		    .v = {.attachment = collect_attachment, .other_name = collect_other_name},
		    .m = m,
		    .kept = keep ? &k : NULL};
		walk(&c.v, g_mime_message_get_mime_part(k.p.msg), 0);
		m->parts_incomplete = c.v.incomplete;
	}
	read_verdict(m);
	if (keep) {
		struct kept *kk = xmalloc(sizeof(*kk));
		*kk = k;
		m->kept = kk;
		m->sizes_pending = m->nattachments > 0;
	} else {
		parsed_close(&k.p);
	}
	*out = m;
	return 0;
}

void msgmeta_measure(struct msgmeta *m)
{
	if (m == NULL || !m->sizes_pending)
		return;
	struct kept *k = m->kept;
	for (size_t i = 0; i < m->nattachments; i++)
		m->attachments[i].size = decoded_size(k->parts[i]);
	m->sizes_pending = false;
}

int msgmeta_parse(const void *data, size_t len, struct msgmeta **out)
{
	return msgmeta_parse_with(data, len, false, out);
}

int msgmeta_parse_kept(const void *data, size_t len, struct msgmeta **out)
{
	return msgmeta_parse_with(data, len, true, out);
}

void *msgmeta_mime(const struct msgmeta *m)
{
	return m != NULL && m->kept != NULL ? ((struct kept *)m->kept)->p.msg : NULL;
}

int msgmeta_attachment_data(const void *data, size_t len, size_t index, unsigned char **out,
			    size_t *out_len)
{
	if (data == NULL || out == NULL || out_len == NULL)
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	struct parsed p;
	parsed_open(&p, data, len);
	struct walk_find f = {.v = {.attachment = find_attachment}, .want = index};
	if (p.msg != NULL)
		walk(&f.v, g_mime_message_get_mime_part(p.msg), 0);
	int rc = -ENOENT;
	if (f.found != NULL) {
		GMimeStream *mem = g_mime_stream_mem_new();
		write_decoded(f.found, mem);
		GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		size_t n = bytes != NULL ? bytes->len : 0;
		*out = xmalloc(n > 0 ? n : 1);
		if (n > 0)
			memcpy(*out, bytes->data, n);
		*out_len = n;
		g_object_unref(mem);
		rc = 0;
	}
	parsed_close(&p);
	return rc;
}

void msgmeta_free(struct msgmeta *m)
{
	if (m == NULL)
		return;
	free(m->from);
	free(m->from_addr);
	free(m->to);
	free(m->cc);
	free(m->subject);
	free(m->message_id);
	for (size_t i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	for (size_t i = 0; i < m->nattachments; i++) {
		free(m->attachments[i].filename);
		free(m->attachments[i].content_type);
	}
	free(m->attachments);
	for (size_t i = 0; i < m->nother_names; i++)
		free(m->other_names[i]);
	free(m->other_names);
	free(m->verdict);
	free(m->gateway);
	free(m->client_address);
	if (m->kept != NULL) {
		struct kept *k = m->kept;
		parsed_close(&k->p);
		free(k->parts);
		free(k);
	}
	free(m);
}

/* ---- body text ------------------------------------------------------------------------ */

/* Elements whose content is never text to show. */
static const char *const html_hidden_elements[] = {"script",   "style",	   "head",   "title",
						   "noscript", "template", "object", NULL};
/* Elements whose start or end breaks the line. */
static const char *const html_block_elements[] = {
    "p",       "div",	 "br",	   "tr", "li", "h1",	     "h2",     "h3", "h4",
    "h5",      "h6",	 "table",  "ul", "ol", "blockquote", "pre",    "hr", "section",
    "article", "header", "footer", "dt", "dd", "address",    "center", NULL};
/* Named character references we decode; others stay as written. */
static const struct {
	const char *name;
	const char *utf8;
} html_entities[] = {
    {"amp", "&"},
    {"lt", "<"},
    {"gt", ">"},
    {"quot", "\""},
    {"apos", "'"},
    {"nbsp", " "},
    {"copy", "\xC2\xA9"},
    {"reg", "\xC2\xAE"},
    {"yen", "\xC2\xA5"},
    {"hellip", "\xE2\x80\xA6"},
    {"mdash", "\xE2\x80\x94"},
    {"ndash", "\xE2\x80\x93"},
    {"laquo", "\xC2\xAB"},
    {"raquo", "\xC2\xBB"},
    {"middot", "\xC2\xB7"},
    {"bull", "\xE2\x80\xA2"},
    {"trade", "\xE2\x84\xA2"},
};

static bool word_in(const char *w, size_t n, const char *const *list)
{
	for (; *list != NULL; list++) {
		if (strlen(*list) == n && g_ascii_strncasecmp(*list, w, n) == 0)
			return true;
	}
	return false;
}

/* Appends the code point cp as UTF-8 (U+FFFD for what is not a scalar value). */
static void add_codepoint(struct strbuf *b, unsigned long cp)
{
	char u[6];
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		cp = 0xFFFD;
	int n = g_unichar_to_utf8((gunichar)cp, u);
	strbuf_add(b, u, (size_t)n);
}

/* Decodes the character reference at s ('&'); returns the bytes used (0: not one). */
static size_t html_entity(struct strbuf *out, const char *s, const char *end)
{
	const char *semi = memchr(s, ';', (size_t)(end - s) < 12 ? (size_t)(end - s) : 12);
	if (semi == NULL)
		return 0;
	if (s[1] == '#') {
		bool hex = semi - s > 2 && (s[2] == 'x' || s[2] == 'X');
		const char *d = s + (hex ? 3 : 2);
		unsigned long cp = 0;
		if (d == semi)
			return 0;
		for (; d < semi; d++) {
			int v = hex ? g_ascii_xdigit_value((char)*d)
				    : (*d >= '0' && *d <= '9' ? *d - '0' : -1);
			if (v < 0)
				return 0;
			cp = cp * (hex ? 16 : 10) + (unsigned long)v;
			if (cp > 0x10FFFF)
				cp = 0x110000;
		}
		add_codepoint(out, cp);
		return (size_t)(semi - s) + 1;
	}
	for (size_t i = 0; i < sizeof(html_entities) / sizeof(html_entities[0]); i++) {
		size_t n = strlen(html_entities[i].name);
		if ((size_t)(semi - s - 1) == n && strncmp(s + 1, html_entities[i].name, n) == 0) {
			strbuf_add(out, html_entities[i].utf8, strlen(html_entities[i].utf8));
			return n + 2;
		}
	}
	return 0;
}

/* Adds a line break unless the text already ends in one (or is empty). */
static void text_break(struct strbuf *out)
{
	if (out->len > 0 && out->p[out->len - 1] != '\n')
		strbuf_addc(out, '\n');
}

/*
 * HTML (already UTF-8) to plain text. A small tokenizer, not a browser: tags go,
 * the contents of hidden elements go, blocks end lines, runs of white space outside
 * <pre> become one space, character references are decoded.
 */
static char *html_to_text(const char *s, size_t len)
{
	struct strbuf out = STRBUF_INIT;
	const char *end = s + len;
	const char *hidden_until = NULL; /* name of the element whose end we wait for */
	size_t hidden_len = 0;
	int pre = 0;
	bool space = false;
	while (s < end) {
		/* "<" starts markup only before a letter, "/" or "!"; "a < b" is text. */
		if (*s == '<' && end - s > 1 &&
		    (g_ascii_isalpha(s[1]) || s[1] == '/' || s[1] == '!')) {
			if (end - s >= 4 && memcmp(s, "<!--", 4) == 0) {
				const char *c = g_strstr_len(s + 4, end - s - 4, "-->");
				s = c != NULL ? c + 3 : end;
				continue;
			}
			const char *gt = memchr(s, '>', (size_t)(end - s));
			if (gt == NULL)
				break;
			const char *n = s + 1;
			bool closing = *n == '/';
			if (closing)
				n++;
			const char *ne = n;
			while (ne < gt && (g_ascii_isalnum(*ne)))
				ne++;
			size_t nlen = (size_t)(ne - n);
			s = gt + 1;
			if (hidden_until != NULL) {
				if (closing && nlen == hidden_len &&
				    g_ascii_strncasecmp(n, hidden_until, nlen) == 0)
					hidden_until = NULL;
				continue;
			}
			if (!closing && word_in(n, nlen, html_hidden_elements) && gt[-1] != '/') {
				for (const char *const *h = html_hidden_elements; *h; h++) {
					if (strlen(*h) == nlen &&
					    g_ascii_strncasecmp(*h, n, nlen) == 0)
						hidden_until = *h;
				}
				hidden_len = nlen;
				continue;
			}
			if (nlen == 3 && g_ascii_strncasecmp(n, "pre", 3) == 0)
				pre += closing ? (pre > 0 ? -1 : 0) : 1;
			if (word_in(n, nlen, html_block_elements)) {
				if (nlen == 2 && g_ascii_strncasecmp(n, "br", 2) == 0)
					strbuf_addc(&out, '\n');
				else
					text_break(&out);
				if (!closing && nlen == 2 && g_ascii_strncasecmp(n, "li", 2) == 0)
					strbuf_add(&out, "\xE2\x80\xA2 ", 4);
				space = false;
			} else if (!closing && nlen == 2 &&
				   (g_ascii_strncasecmp(n, "td", 2) == 0 ||
				    g_ascii_strncasecmp(n, "th", 2) == 0)) {
				if (out.len > 0 && out.p[out.len - 1] != '\n')
					strbuf_addc(&out, '\t');
				space = false;
			}
			continue;
		}
		if (hidden_until != NULL) {
			s++;
			continue;
		}
		if (pre == 0 &&
		    (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\f')) {
			space = true;
			s++;
			continue;
		}
		if (space && out.len > 0 && out.p[out.len - 1] != '\n' &&
		    out.p[out.len - 1] != '\t')
			strbuf_addc(&out, ' ');
		space = false;
		if (*s == '&') {
			size_t used = html_entity(&out, s, end);
			if (used > 0) {
				s += used;
				continue;
			}
		}
		if (*s != '\r')
			strbuf_addc(&out, *s);
		s++;
	}
	return strbuf_take(&out);
}

/* Finds the first inline text/plain and text/html leaves (no descent into attached mail). */
static void find_text_parts(GMimeObject *obj, int depth, GMimeObject **plain, GMimeObject **html)
{
	if (obj == NULL || depth > MSGMETA_MAX_DEPTH || *plain != NULL)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && *plain == NULL; i++)
			find_text_parts(g_mime_multipart_get_part(mp, i), depth + 1, plain, html);
		return;
	}
	if (!GMIME_IS_PART(obj))
		return;
	const char *disp = raw_header(obj, "Content-Disposition");
	if (disposition_is_attachment(disp))
		return;
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	if (ct == NULL || g_mime_content_type_is_type(ct, "text", "plain"))
		*plain = obj;
	else if (*html == NULL && g_mime_content_type_is_type(ct, "text", "html"))
		*html = obj;
}

/* The part's content, transfer-decoded and converted to UTF-8. Caller frees. */
static char *part_text_utf8(GMimeObject *obj)
{
	GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(obj));
	GMimeStream *mem = g_mime_stream_mem_new();
	if (content != NULL)
		g_mime_data_wrapper_write_to_stream(content, mem);
	GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	const char *charset = g_mime_object_get_content_type_parameter(obj, "charset");
	struct strbuf out = STRBUF_INIT;
	if (bytes != NULL && bytes->len > 0)
		charset_to_utf8(&out, charset, (const char *)bytes->data, bytes->len);
	g_object_unref(mem);
	return strbuf_take(&out);
}

/* CRLF and lone CR to LF, NULs dropped, at most three line breaks in a row; in place. */
static void text_tidy(char *s)
{
	char *w = s;
	int breaks = 0;
	for (const char *r = s; *r != '\0'; r++) {
		char c = *r;
		if (c == '\r') {
			if (r[1] == '\n')
				continue;
			c = '\n';
		}
		breaks = c == '\n' ? breaks + 1 : 0;
		if (breaks > 3)
			continue;
		*w++ = c;
	}
	while (w > s && (w[-1] == '\n' || w[-1] == ' '))
		w--;
	*w = '\0';
}

int msgmeta_text_body(const void *data, size_t len, size_t max, struct msgmeta_text *out)
{
	if (data == NULL || out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	struct parsed p;
	parsed_open(&p, data, len);
	GMimeObject *plain = NULL, *html = NULL;
	char *text = NULL;
	if (p.msg != NULL)
		find_text_parts(g_mime_message_get_mime_part(p.msg), 0, &plain, &html);
	if (plain != NULL) {
		text = part_text_utf8(plain);
	} else if (html != NULL) {
		char *h = part_text_utf8(html);
		text = html_to_text(h, strlen(h));
		free(h);
		out->from_html = true;
	} else {
		text = xstrdup("");
	}
	parsed_close(&p);

	text_tidy(text);
	size_t n = strlen(text);
	if (max > 0 && n > max) {
		/* Back up to the start of a UTF-8 sequence so the text stays valid. */
		size_t cut = max;
		while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
			cut--;
		text[cut] = '\0';
		out->truncated = true;
	}
	out->text = text;
	return 0;
}
