/*
 * rat — the gateway's recipient access table: a list of domains, subdomain
 * patterns and addresses parsed once from [rat] accept and asked at every RCPT,
 * after the address is checked for routing tricks (rat.h): the local part is
 * read as RFC 5321 has it (a dot-string, or a quoted string whose backslash
 * escapes are undone) and must hold no routing operator; the domain must be a
 * name, not an IP literal. The next hop resolves the address it is given, and
 * a mail server that "looks inside quotes" (Postfix's resolve_dequoted_address)
 * would route "x%evil"@example.com to evil, so such addresses are never relayed.
 * Not for: checking that a mailbox exists (the next hop does that).
 */
#include "gateway/rat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/confparse.h"
#include "common/xalloc.h"

enum rat_kind {
	RAT_DOMAIN,    /* example.com */
	RAT_SUBDOMAIN, /* .example.org: text kept with the dot */
	RAT_ADDRESS,   /* user@example.net */
	RAT_ANY,       /* * */
};

struct rat_entry {
	enum rat_kind kind;
	char *text; /* lower case */
};

struct rat {
	struct rat_entry *v;
	size_t n;
};

static void lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static bool rat_domain_ok(const char *d)
{
	return d[0] != '\0' && d[0] != '.' && strchr(d, '@') == NULL && confparse_hostname_ok(d);
}

static int rat_add(struct rat *r, const char *word, char **err)
{
	struct rat_entry e = {.text = xstrdup(word)};
	lower(e.text);
	const char *at = strchr(e.text, '@');
	if (strcmp(e.text, "*") == 0) {
		e.kind = RAT_ANY;
	} else if (at != NULL) {
		e.kind = RAT_ADDRESS;
		if (at == e.text || strchr(at + 1, '@') != NULL || !rat_domain_ok(at + 1))
			goto bad;
	} else if (e.text[0] == '.') {
		e.kind = RAT_SUBDOMAIN;
		if (!rat_domain_ok(e.text + 1))
			goto bad;
	} else {
		e.kind = RAT_DOMAIN;
		if (!rat_domain_ok(e.text))
			goto bad;
	}
	if (r->n == RAT_MAX_ENTRIES) {
		*err = xasprintf("more than %d entries", RAT_MAX_ENTRIES);
		free(e.text);
		return -EINVAL;
	}
	r->v = xreallocarray(r->v, r->n + 1, sizeof(*r->v));
	r->v[r->n++] = e;
	return 0;
bad:
	*err = xasprintf("\"%s\" is not a domain, .domain, address or *", word);
	free(e.text);
	return -EINVAL;
}

int rat_parse(const char *list, struct rat **out, char **err)
{
	struct rat *r = xcalloc(1, sizeof(*r));
	char *copy = xstrdup(list != NULL ? list : "");
	int rc = 0;
	*err = NULL;
	*out = NULL;
	for (char *save = NULL, *w = strtok_r(copy, ", \t", &save); w != NULL;
	     w = strtok_r(NULL, ", \t", &save)) {
		if ((rc = rat_add(r, w, err)) < 0)
			goto fail;
	}
	free(copy);
	*out = r;
	return 0;
fail:
	free(copy);
	rat_free(r);
	return rc;
}

void rat_free(struct rat *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].text);
	free(r->v);
	free(r);
}

size_t rat_count(const struct rat *r)
{
	return r->n;
}

/*
 * Finds the '@' that separates the local part from the domain: the first one
 * after the local part, which is either a quoted string or runs to an '@'.
 * Sets *routing when the local part holds a routing operator ('@', '%', '!'),
 * once its quotes and escapes are undone, or is malformed (an unclosed quote,
 * text after the closing quote, a quote inside a dot-string). Returns NULL when
 * there is no '@' after the local part.
 */
static const char *rat_split(const char *rcpt, bool *routing)
{
	const char *p = rcpt;
	*routing = false;
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (*p == '@' || *p == '%' || *p == '!')
				*routing = true;
		}
		if (*p != '"') {
			*routing = true;
			return NULL;
		}
		p++;
		if (*p != '@') {
			*routing = true; /* "a"b@x: text after the quoted string */
			return strrchr(p, '@');
		}
		return p;
	}
	for (; *p != '\0' && *p != '@'; p++)
		if (*p == '%' || *p == '!' || *p == '"' || *p == '\\')
			*routing = true;
	if (*p != '@')
		return NULL;
	if (strchr(p + 1, '@') != NULL)
		*routing = true; /* x@evil@example.com */
	return p;
}

/* True for a domain of dot-separated labels (letters, digits, '-', '_', UTF-8). */
static bool rat_domain_syntax_ok(const char *d, size_t len)
{
	size_t label = 0;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c >= 0x80;
		if (!ok)
			return false;
		label++;
	}
	return label > 0;
}

enum rat_verdict rat_check(const struct rat *r, const char *rcpt)
{
	bool routing;
	const char *at = rat_split(rcpt, &routing);
	if (at == NULL)
		return routing ? RAT_ROUTING : RAT_NOT_LISTED;
	if (at == rcpt || at[1] == '\0')
		return RAT_NOT_LISTED;
	const char *domain = at + 1;
	size_t dlen = strlen(domain);
	if (domain[0] == '[')
		return RAT_ROUTING; /* an IP literal names a host, not a domain we serve */
	/* A trailing dot names the same domain (example.com.). */
	if (domain[dlen - 1] == '.')
		dlen--;
	if (routing || !rat_domain_syntax_ok(domain, dlen))
		return RAT_ROUTING;
	for (size_t i = 0; i < r->n; i++) {
		const struct rat_entry *e = &r->v[i];
		size_t tlen = strlen(e->text);
		switch (e->kind) {
		case RAT_ANY:
			return RAT_ACCEPT;
		case RAT_ADDRESS:
			if (strcasecmp(rcpt, e->text) == 0)
				return RAT_ACCEPT;
			break;
		case RAT_DOMAIN:
			if (dlen == tlen && strncasecmp(domain, e->text, dlen) == 0)
				return RAT_ACCEPT;
			break;
		case RAT_SUBDOMAIN:
			/* ".example.org" matches "a.example.org", not "example.org" or
			 * "xexample.org". */
			if (dlen > tlen && strncasecmp(domain + dlen - tlen, e->text, tlen) == 0)
				return RAT_ACCEPT;
			break;
		}
	}
	return RAT_NOT_LISTED;
}

bool rat_check_reply(const struct rat *r, const char *rcpt, char *reply, size_t replylen)
{
	switch (rat_check(r, rcpt)) {
	case RAT_ACCEPT:
		return true;
	case RAT_ROUTING:
		snprintf(reply, replylen, RAT_REPLY_ROUTING, rcpt);
		return false;
	case RAT_NOT_LISTED:
		break;
	}
	snprintf(reply, replylen, "%s", RAT_REPLY_NOT_LISTED);
	return false;
}

bool rat_accepts(const struct rat *r, const char *rcpt)
{
	return rat_check(r, rcpt) == RAT_ACCEPT;
}
