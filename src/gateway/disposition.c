/*
 * disposition — per-recipient outcomes of the gateway's pipeline, their grouping,
 * and the byte-level edits of a copy. The pipeline decides, this module only
 * compares and rewrites; nothing here does I/O or keeps state.
 * Not for: parsing MIME (msgmeta) or deciding anything about content.
 */
#include "gateway/disposition.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/strutil.h"
#include "common/xalloc.h"

const char *disposition_route_name(enum disposition_route r)
{
	switch (r) {
	case DISPOSITION_NEXT_HOP:
		return "next_hop";
	case DISPOSITION_ALT_HOST:
		return "alt_host";
	case DISPOSITION_EXTERNAL_SPAM:
		return "external_spam";
	case DISPOSITION_QUARANTINE:
		return "quarantine";
	case DISPOSITION_DROP:
		return "drop";
	case DISPOSITION_BOUNCE:
		return "bounce";
	case DISPOSITION_CENTRAL_PVO:
		return "central_pvo";
	}
	return "unknown";
}

bool disposition_equal(const struct disposition *a, const struct disposition *b)
{
	if (a->route != b->route || a->edits != b->edits)
		return false;
	switch (a->route) {
	case DISPOSITION_DROP:
	case DISPOSITION_BOUNCE:
		/* Nothing is sent: edits and verdicts make no difference. */
		return true;
	case DISPOSITION_CENTRAL_PVO:
		/* One transfer per set of quarantines: the headers differ otherwise. */
		return a->pvo == b->pvo && str_same(a->verdict, b->verdict);
	case DISPOSITION_ALT_HOST:
	case DISPOSITION_QUARANTINE:
		if (a->target == NULL || b->target == NULL)
			return a->target == b->target && str_same(a->verdict, b->verdict);
		/* Host names and the store's quarantine names ignore case. */
		return strcasecmp(a->target, b->target) == 0 && str_same(a->verdict, b->verdict);
	default:
		return str_same(a->verdict, b->verdict);
	}
}

void disposition_group(const struct disposition *per_rcpt, size_t n, struct disposition_group **out,
		       size_t *ngroups)
{
	struct disposition_group *g = NULL;
	size_t ng = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < ng && !disposition_equal(&g[k].d, &per_rcpt[i]))
			k++;
		if (k == ng) {
			g = xreallocarray(g, ng + 1, sizeof(*g));
			memset(&g[ng], 0, sizeof(g[ng]));
			g[ng].d = per_rcpt[i];
			ng++;
		}
		g[k].rcpts = xreallocarray(g[k].rcpts, g[k].n + 1, sizeof(*g[k].rcpts));
		g[k].rcpts[g[k].n++] = i;
	}
	*out = g;
	*ngroups = ng;
}

void disposition_groups_free(struct disposition_group *g, size_t n)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(g[i].rcpts);
	free(g);
}

/* Offset just past the line starting at off (its LF), or len. */
static size_t next_line(const unsigned char *data, size_t len, size_t off)
{
	const unsigned char *nl = memchr(data + off, '\n', len - off);
	return nl != NULL ? (size_t)(nl - data) + 1 : len;
}

static bool line_is_empty(const unsigned char *data, size_t len, size_t off)
{
	return off < len &&
	       (data[off] == '\n' || (data[off] == '\r' && off + 1 < len && data[off + 1] == '\n'));
}

size_t disposition_header_end(const unsigned char *data, size_t len)
{
	size_t off = 0;
	while (off < len) {
		if (line_is_empty(data, len, off))
			return off;
		off = next_line(data, len, off);
	}
	return len;
}

/* True when the line at off is the header field name (followed by optional blanks and ':'). */
static bool header_is(const unsigned char *data, size_t len, size_t off, const char *name)
{
	size_t n = strlen(name);
	if (off + n >= len || strncasecmp((const char *)data + off, name, n) != 0)
		return false;
	size_t p = off + n;
	while (p < len && (data[p] == ' ' || data[p] == '\t'))
		p++;
	return p < len && data[p] == ':';
}

static bool uses_crlf(const unsigned char *data, size_t len)
{
	const unsigned char *nl = memchr(data, '\n', len);
	return nl == NULL || (nl > data && nl[-1] == '\r');
}

unsigned char *disposition_tag_subject(const unsigned char *data, size_t len, const char *tag,
				       size_t *out_len)
{
	size_t hend = disposition_header_end(data, len);
	size_t tlen = strlen(tag);
	size_t off = 0;
	while (off < hend) {
		if (header_is(data, len, off, "Subject")) {
			size_t p =
			    (size_t)((const unsigned char *)memchr(data + off, ':', hend - off) -
				     data) +
			    1;
			while (p < len && (data[p] == ' ' || data[p] == '\t'))
				p++;
			if (tlen == 0 || (len - p >= tlen && memcmp(data + p, tag, tlen) == 0))
				break; /* already tagged: a copy unchanged */
			/* Tag, then a space, then the text as it was (encoded words included). */
			unsigned char *out = xmalloc(len + tlen + 2);
			memcpy(out, data, p);
			memcpy(out + p, tag, tlen);
			size_t q = p + tlen;
			bool eol = p >= len || data[p] == '\r' || data[p] == '\n';
			if (!eol)
				out[q++] = ' ';
			memcpy(out + q, data + p, len - p);
			*out_len = q + len - p;
			return out;
		}
		off = next_line(data, len, off);
	}
	if (off < hend || tlen == 0) {
		unsigned char *out = xmalloc(len + 1);
		memcpy(out, data, len);
		*out_len = len;
		return out;
	}
	/* No Subject: add one at the end of the header section. */
	const char *eol = uses_crlf(data, len) ? "\r\n" : "\n";
	char *line = xasprintf("Subject: %s%s", tag, eol);
	size_t llen = strlen(line);
	unsigned char *out = xmalloc(len + llen + 2);
	size_t q = 0;
	memcpy(out, data, hend);
	q = hend;
	if (hend > 0 && data[hend - 1] != '\n') {
		/* Headers without a final line end (a message of headers only). */
		memcpy(out + q, eol, strlen(eol));
		q += strlen(eol);
	}
	memcpy(out + q, line, llen);
	q += llen;
	memcpy(out + q, data + hend, len - hend);
	q += len - hend;
	free(line);
	*out_len = q;
	return out;
}

unsigned char *disposition_strip_header(const unsigned char *data, size_t len, const char *name,
					size_t *out_len)
{
	size_t hend = disposition_header_end(data, len);
	unsigned char *out = xmalloc(len + 1);
	size_t q = 0, off = 0;
	while (off < hend) {
		size_t end = next_line(data, len, off);
		if (header_is(data, len, off, name)) {
			/* Skip its folded continuation lines too. */
			while (end < hend && (data[end] == ' ' || data[end] == '\t'))
				end = next_line(data, len, end);
		} else {
			memcpy(out + q, data + off, end - off);
			q += end - off;
		}
		off = end;
	}
	memcpy(out + q, data + hend, len - hend);
	q += len - hend;
	*out_len = q;
	return out;
}
