/*
 * rat — the gateway's recipient access table: a list of domains, subdomain
 * patterns and addresses parsed once from [rat] accept and asked at every RCPT.
 * Not for: checking that a mailbox exists (the next hop does that).
 */
#include "gateway/rat.h"

#include <errno.h>
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

bool rat_accepts(const struct rat *r, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	if (at == NULL || at[1] == '\0')
		return false;
	const char *domain = at + 1;
	size_t dlen = strlen(domain);
	/* A trailing dot names the same domain (example.com.). */
	if (domain[dlen - 1] == '.')
		dlen--;
	for (size_t i = 0; i < r->n; i++) {
		const struct rat_entry *e = &r->v[i];
		size_t tlen = strlen(e->text);
		switch (e->kind) {
		case RAT_ANY:
			return true;
		case RAT_ADDRESS:
			if (strcasecmp(rcpt, e->text) == 0)
				return true;
			break;
		case RAT_DOMAIN:
			if (dlen == tlen && strncasecmp(domain, e->text, dlen) == 0)
				return true;
			break;
		case RAT_SUBDOMAIN:
			/* ".example.org" matches "a.example.org", not "example.org" or
			 * "xexample.org". */
			if (dlen > tlen && strncasecmp(domain + dlen - tlen, e->text, tlen) == 0)
				return true;
			break;
		}
	}
	return false;
}
