/*
 * smtp_xforward — parsing, validating and keeping Postfix's XFORWARD attributes
 * (see smtp_xforward.h). It is not for the conversation around the command
 * (sequence checks, replies, counting errors): smtp_proto does that and calls
 * here.
 *
 * The state it keeps, and the function that changes it:
 *
 *   permit   NOT_ASKED --first EHLO or XFORWARD--> PERMITTED | DENIED
 *                                                   (smtp_xforward_permitted; for the session)
 *   envelope none --XFORWARD, all attributes good--> set    (smtp_xforward_parse + _apply)
 *            set  --end of transaction, RSET, EHLO,
 *                   STARTTLS------------------------> none  (smtp_xforward_reset)
 *
 * A command with any bad attribute changes nothing: parse builds the whole
 * command's attributes aside and apply only runs on success.
 */
#include "smtp/smtp_xforward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decodes an xtext value (RFC 3461: "+HH" for a byte, other characters printable
 * ASCII except '=' and '+') of n bytes. Returns the text (caller frees), or NULL
 * when the encoding is broken or the decoded text holds a control character.
 */
static char *xtext_decode(const char *v, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '+') {
			int hi = i + 2 < n ? hex_digit(v[i + 1]) : -1;
			int lo = hi >= 0 ? hex_digit(v[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				goto fail;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else if (c <= ' ' || c >= 0x7f || c == '=') {
			goto fail;
		}
		if (c < ' ' || c >= 0x7f)
			goto fail;
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

/* Letters, digits and the given extra characters only, and not empty. */
static bool only_chars(const char *s, const char *extra)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c) != NULL))
			return false;
	}
	return true;
}

/* A numeric address, optionally "IPv6:"-prefixed; the canonical text or NULL. */
static char *numeric_address(const char *v)
{
	unsigned char bin[16];
	char text[INET6_ADDRSTRLEN];
	if (strncasecmp(v, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, v + 5, bin) != 1)
			return NULL;
		return xstrdup(inet_ntop(AF_INET6, bin, text, sizeof(text)));
	}
	if (inet_pton(AF_INET, v, bin) == 1)
		return xstrdup(inet_ntop(AF_INET, bin, text, sizeof(text)));
	if (inet_pton(AF_INET6, v, bin) == 1)
		return xstrdup(inet_ntop(AF_INET6, bin, text, sizeof(text)));
	return NULL;
}

/* Postfix sends these when it does not know a value. */
static bool unavailable_value(const char *v)
{
	return strcasecmp(v, "[UNAVAILABLE]") == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0;
}

/* Replaces *slot with value (owned, may be NULL). */
static void set_value(char **slot, char *value)
{
	free(*slot);
	*slot = value;
}

/*
 * One decoded attribute into out. Takes ownership of value. Returns 0, or
 * -EINVAL for an unknown name or a value the attribute does not allow.
 */
static int parse_attribute(const char *key, size_t klen, char *value,
			   struct smtp_xforward_attrs *out)
{
	bool unavailable = unavailable_value(value);
	int r = 0;
	if (klen == 4 && strncasecmp(key, "ADDR", 4) == 0) {
		char *addr = unavailable ? NULL : numeric_address(value);
		if (!unavailable && addr == NULL)
			r = -EINVAL;
		else
			set_value(&out->addr, addr);
		out->given |= SMTP_XFORWARD_ADDR;
	} else if (klen == 4 && strncasecmp(key, "NAME", 4) == 0) {
		if (!unavailable && !only_chars(value, ".-_:"))
			r = -EINVAL;
		else
			set_value(&out->name, unavailable ? NULL : xstrdup(value));
		out->given |= SMTP_XFORWARD_NAME;
	} else if (klen == 4 && strncasecmp(key, "HELO", 4) == 0) {
		set_value(&out->helo, unavailable || value[0] == '\0' ? NULL : xstrdup(value));
		out->given |= SMTP_XFORWARD_HELO;
	} else if (klen == 5 && strncasecmp(key, "PROTO", 5) == 0) {
		if (!unavailable && !only_chars(value, "")) {
			r = -EINVAL;
		} else if (unavailable) {
			set_value(&out->proto, NULL);
		} else {
			/* Upper case, as smtp_envelope promises ("ESMTP", "SMTP"). */
			for (char *c = value; *c != '\0'; c++)
				if (*c >= 'a' && *c <= 'z')
					*c = (char)(*c - 'a' + 'A');
			set_value(&out->proto, xstrdup(value));
		}
		out->given |= SMTP_XFORWARD_PROTO;
	} else if (klen == 6 && strncasecmp(key, "SOURCE", 6) == 0) {
		if (!unavailable && strcasecmp(value, "LOCAL") != 0 &&
		    strcasecmp(value, "REMOTE") != 0)
			r = -EINVAL;
		out->given |= SMTP_XFORWARD_SOURCE;
	} else {
		r = -EINVAL;
	}
	free(value);
	return r;
}

int smtp_xforward_parse(const char *arg, struct smtp_xforward_attrs *out)
{
	memset(out, 0, sizeof(*out));
	if (*arg == '\0')
		return -ENODATA;
	const char *rest = arg;
	while (*rest != '\0') {
		size_t n = strcspn(rest, " \t");
		const char *eq = memchr(rest, '=', n);
		if (eq == NULL)
			goto fail;
		size_t klen = (size_t)(eq - rest);
		char *value = xtext_decode(eq + 1, n - klen - 1);
		if (value == NULL || parse_attribute(rest, klen, value, out) < 0)
			goto fail;
		rest += n;
		while (*rest == ' ' || *rest == '\t')
			rest++;
	}
	return 0;
fail:
	smtp_xforward_attrs_free(out);
	return -EINVAL;
}

void smtp_xforward_attrs_free(struct smtp_xforward_attrs *a)
{
	free(a->addr);
	free(a->name);
	free(a->helo);
	free(a->proto);
	memset(a, 0, sizeof(*a));
}

void smtp_xforward_apply(struct smtp_envelope *env, struct smtp_xforward_attrs *a)
{
	if (a->given & SMTP_XFORWARD_ADDR) {
		set_value(&env->xforward_addr, a->addr);
		a->addr = NULL;
	}
	if (a->given & SMTP_XFORWARD_NAME) {
		set_value(&env->xforward_name, a->name);
		a->name = NULL;
	}
	if (a->given & SMTP_XFORWARD_HELO) {
		set_value(&env->xforward_helo, a->helo);
		a->helo = NULL;
	}
	if (a->given & SMTP_XFORWARD_PROTO) {
		set_value(&env->xforward_proto, a->proto);
		a->proto = NULL;
	}
	smtp_xforward_attrs_free(a);
}

void smtp_xforward_reset(struct smtp_envelope *env)
{
	free(env->xforward_addr);
	free(env->xforward_name);
	free(env->xforward_helo);
	free(env->xforward_proto);
	env->xforward_addr = env->xforward_name = env->xforward_helo = env->xforward_proto = NULL;
}

bool smtp_xforward_permitted(enum smtp_xforward_permit *permit, bool (*allowed)(void *ctx),
			     void *ctx)
{
	if (*permit == SMTP_XFORWARD_NOT_ASKED) {
		bool ok = allowed != NULL && allowed(ctx);
		*permit = ok ? SMTP_XFORWARD_PERMITTED : SMTP_XFORWARD_DENIED;
	}
	return *permit == SMTP_XFORWARD_PERMITTED;
}
