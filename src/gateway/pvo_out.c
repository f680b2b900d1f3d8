/*
 * pvo_out — the gateway's side of the PVO header grammar (see pvo_out.h): it
 * writes what quarantine/pvo_header.c reads, so the unit tests parse every line
 * written here with that parser. Not for: deciding which quarantines a message
 * is in (pipeline.c) or sending it (delivery.c).
 */
#include "gateway/pvo_out.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "quarantine/pvo_header.h"

bool pvo_out_name_ok(const char *name)
{
	return name != NULL && pvo_header_name_ok(name);
}

/* The length of the valid UTF-8 character at s[0..n), or 0 when it is not one. */
static size_t pvo_out_utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t k;
	unsigned min, cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 1, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		k = 2, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 3, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if (k >= n)
		return 0;
	for (size_t j = 1; j <= k; j++) {
		if ((s[j] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[j] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k + 1;
}

/* reason as a quoted string: safe characters only, at most PVO_HEADER_REASON_MAX bytes. */
static void pvo_out_quote(struct strbuf *b, const char *reason)
{
	const unsigned char *s = (const unsigned char *)(reason != NULL ? reason : "");
	size_t n = strlen((const char *)s);
	size_t used = 0; /* bytes of the unescaped value, as the parser counts them */
	strbuf_addc(b, '"');
	for (size_t i = 0; i < n;) {
		size_t k = pvo_out_utf8_len(s + i, n - i);
		if (k == 0 || (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			/* a byte the manager would refuse: shown, not sent */
			if (used + 1 > PVO_HEADER_REASON_MAX)
				break;
			strbuf_addc(b, '?');
			used++;
			i += k == 0 ? 1 : k;
			continue;
		}
		if (used + k > PVO_HEADER_REASON_MAX)
			break;
		if (k == 1 && (s[i] == '"' || s[i] == '\\'))
			strbuf_addc(b, '\\');
		strbuf_add(b, (const char *)s + i, k);
		used += k;
		i += k;
	}
	strbuf_addc(b, '"');
}

char *pvo_out_quarantine_header(const char *name, const char *reason, int64_t entered_ms,
				int64_t expires_ms)
{
	struct strbuf b = STRBUF_INIT;
	char when[CLOCK_RFC3339_LEN];
	strbuf_printf(&b, "X-Lazaret-Quarantine: %s;\r\n\treason=", name);
	pvo_out_quote(&b, reason);
	if (expires_ms > 0) {
		clock_format_rfc3339(expires_ms, when);
		strbuf_printf(&b, ";\r\n\texpires=%s", when);
	}
	clock_format_rfc3339(entered_ms, when);
	strbuf_printf(&b, ";\r\n\tentered=%s\r\n", when);
	return strbuf_take(&b);
}

static void pvo_out_digest_str(EVP_MD_CTX *ctx, const char *s)
{
	/* the NUL separates the fields, so ("ab","c") and ("a","bc") differ */
	EVP_DigestUpdate(ctx, s != NULL ? s : "", strlen(s != NULL ? s : "") + 1);
}

void pvo_out_origin_id(const char *gateway, const char *sender, const char *const *rcpts,
		       size_t nrcpts, const char *const *quarantines, size_t nq,
		       const unsigned char *raw, size_t len, char out[PVO_OUT_ORIGIN_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		panic("pvo_out: no SHA-256");
	pvo_out_digest_str(ctx, gateway);
	pvo_out_digest_str(ctx, sender);
	for (size_t i = 0; i < nrcpts; i++)
		pvo_out_digest_str(ctx, rcpts[i]);
	pvo_out_digest_str(ctx, "");
	for (size_t i = 0; i < nq; i++)
		pvo_out_digest_str(ctx, quarantines[i]);
	pvo_out_digest_str(ctx, "");
	EVP_DigestUpdate(ctx, raw, len);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32 && i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* --- X-Lazaret-Released ---------------------------------------------------- */

static bool pvo_out_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The value of parameter name (case-insensitive) in the unfolded value v[0..n):
 * true with v[*va..*vz) (a quoted string's quotes left out), false when none.
 */
static bool pvo_out_value_param(const char *v, size_t n, const char *name, size_t *va_out,
				size_t *vz_out)
{
	size_t i = 0, nl = strlen(name);
	while (i < n) {
		size_t end = i;
		bool quoted = false;
		while (end < n && (quoted || v[end] != ';')) {
			if (v[end] == '"')
				quoted = !quoted;
			else if (quoted && v[end] == '\\' && end + 1 < n)
				end++;
			end++;
		}
		size_t a = i, z = end;
		while (a < z && pvo_out_wsp(v[a]))
			a++;
		while (z > a && pvo_out_wsp(v[z - 1]))
			z--;
		size_t eq = a;
		while (eq < z && v[eq] != '=')
			eq++;
		size_t kz = eq;
		while (kz > a && pvo_out_wsp(v[kz - 1]))
			kz--;
		if (eq < z && kz - a == nl && strncasecmp(v + a, name, nl) == 0) {
			size_t va = eq + 1;
			while (va < z && pvo_out_wsp(v[va]))
				va++;
			size_t vz = z;
			if (vz - va >= 2 && v[va] == '"' && v[vz - 1] == '"')
				va++, vz--;
			*va_out = va;
			*vz_out = vz;
			return true;
		}
		i = end + 1;
	}
	return false;
}

/* The unfolded value of the first X-Lazaret-Released field into v; false when none. */
static bool pvo_out_first_released(const unsigned char *data, size_t len, struct strbuf *v)
{
	static const char field[] = "X-Lazaret-Released";
	const size_t fl = sizeof(field) - 1;
	const char *s = (const char *)data;
	size_t i = 0;
	while (i < len) {
		size_t n;
		size_t next = pvo_header_line(s, len, i, &n);
		if (n == 0)
			return false; /* the end of the header section */
		size_t k = fl;
		if (n > fl && strncasecmp(s + i, field, fl) == 0) {
			while (k < n && (s[i + k] == ' ' || s[i + k] == '\t'))
				k++;
		}
		if (n > fl && k < n && s[i + k] == ':' && strncasecmp(s + i, field, fl) == 0) {
			/* the field and its continuation lines, unfolded */
			strbuf_add(v, s + i + k + 1, n - k - 1);
			while (next < len && (s[next] == ' ' || s[next] == '\t')) {
				size_t n2;
				size_t after = pvo_header_line(s, len, next, &n2);
				strbuf_add(v, s + next, n2);
				next = after;
			}
			return true;
		}
		i = next;
	}
	return false;
}

bool pvo_out_released_rescan(const unsigned char *data, size_t len)
{
	struct strbuf v = STRBUF_INIT;
	size_t va = 0, vz = 0;
	bool yes = pvo_out_first_released(data, len, &v) &&
		   pvo_out_value_param(strbuf_str(&v), v.len, "rescan", &va, &vz) && vz - va == 3 &&
		   strncasecmp(strbuf_str(&v) + va, "yes", 3) == 0;
	strbuf_free(&v);
	return yes;
}

bool pvo_out_released_rescan_id(const unsigned char *data, size_t len,
				char id[PVO_OUT_RESCAN_ID_MAX + 1])
{
	struct strbuf v = STRBUF_INIT;
	size_t va = 0, vz = 0;
	bool ok = pvo_out_first_released(data, len, &v) &&
		  pvo_out_value_param(strbuf_str(&v), v.len, "id", &va, &vz) && vz > va &&
		  vz - va <= PVO_OUT_RESCAN_ID_MAX;
	const char *s = strbuf_str(&v);
	for (size_t k = va; ok && k < vz; k++)
		ok = (s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'z') ||
		     (s[k] >= 'A' && s[k] <= 'Z') || s[k] == '-';
	if (ok) {
		memcpy(id, s + va, vz - va);
		id[vz - va] = '\0';
	} else {
		id[0] = '\0';
	}
	strbuf_free(&v);
	return ok;
}
