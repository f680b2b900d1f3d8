/*
 * spamd — asks SpamAssassin's spamd for a score (antispam.h).
 *
 * What it is for: one SPAMC/1.5 "SYMBOLS" exchange per message on a worker thread,
 * over TCP ("host:port") or a unix socket (a path):
 *   request:  "SYMBOLS SPAMC/1.5\r\n" "Content-length: N\r\n" "\r\n" <message>
 *   reply:    "SPAMD/1.1 0 EX_OK\r\n"
 *             "Content-length: M\r\n"
 *             "Spam: True ; 1003.3 / 5.0\r\n"     (the score may be negative)
 *             "\r\n" "GTUBE,MISSING_DATE,..."     (the rules that hit)
 * A status other than 0 (e.g. "SPAMD/1.0 76 Bad header line") or a reply without a
 * readable Spam: header is an error: the caller must not take it for a score.
 * What it is not for: learning (TELL), rewriting messages (PROCESS), spamd's own
 * threshold (the gateway applies its configured ones).
 */
#include "gateway/antispam.h"
#include "gateway/antispam_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "gateway/engine_net.h"

/* spamd's reply: a few header lines and the rule list; more is not spamd. */
#define SPAMD_REPLY_MAX 65536
/* The longest status text we log. */
#define SPAMD_STATUS_LOG_MAX 128

/* Next line of buf (CRLF or LF) as [*line, *linelen); advances *pos. false at the end. */
static bool spamd_next_line(const char *buf, size_t len, size_t *pos, const char **line,
			    size_t *linelen)
{
	if (*pos >= len)
		return false;
	const char *start = buf + *pos;
	const char *nl = memchr(start, '\n', len - *pos);
	size_t n = nl != NULL ? (size_t)(nl - start) : len - *pos;
	*pos += n + (nl != NULL ? 1 : 0);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	*line = start;
	*linelen = n;
	return true;
}

/* Parses " True ; 1003.3 / 5.0" (after "Spam:"). 0 or -EPROTO. */
static int spamd_parse_spam_header(const char *v, size_t n, double *score)
{
	char tmp[128];
	if (n >= sizeof(tmp))
		return -EPROTO;
	memcpy(tmp, v, n);
	tmp[n] = '\0';
	char *semi = strchr(tmp, ';');
	if (semi == NULL)
		return -EPROTO;
	char *end;
	errno = 0;
	double s = strtod(semi + 1, &end);
	if (end == semi + 1 || errno != 0 || !isfinite(s))
		return -EPROTO;
	while (*end == ' ')
		end++;
	if (*end != '/')
		return -EPROTO;
	*score = s;
	return 0;
}

int antispam_spamd_parse_reply(const char *buf, size_t len, struct antispam_result *out)
{
	size_t pos = 0, linelen;
	const char *line;
	bool have_score = false;
	double score = 0;

	if (!spamd_next_line(buf, len, &pos, &line, &linelen) || linelen < 8 ||
	    strncmp(line, "SPAMD/1.", 8) != 0)
		goto bad;
	const char *sp = memchr(line, ' ', linelen);
	if (sp == NULL)
		goto bad;
	const char *code = sp + 1;
	size_t codelen = linelen - (size_t)(code - line);
	if (codelen < 2 || code[0] != '0' || code[1] != ' ') {
		char text[SPAMD_STATUS_LOG_MAX];
		size_t tn = linelen < sizeof(text) - 1 ? linelen : sizeof(text) - 1;
		for (size_t i = 0; i < tn; i++)
			text[i] =
			    (line[i] >= 0x20 && line[i] < 0x7f && line[i] != '"') ? line[i] : '?';
		text[tn] = '\0';
		log_warn("spamd.refused", "status=\"%s\"", text);
		return -EPROTO;
	}
	while (spamd_next_line(buf, len, &pos, &line, &linelen) && linelen > 0) {
		if (linelen > 5 && strncasecmp(line, "Spam:", 5) == 0) {
			if (spamd_parse_spam_header(line + 5, linelen - 5, &score) < 0)
				goto bad;
			have_score = true;
		}
	}
	if (!have_score)
		goto bad;
	/* The body (SYMBOLS) is the comma-separated list of rules that hit. */
	char *detail = NULL;
	const char *p = buf + pos, *end = buf + len;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma != NULL ? comma : end;
		antispam_detail_add(&detail, p, (size_t)(stop - p));
		p = comma != NULL ? comma + 1 : end;
	}
	out->score = score;
	out->detail = detail;
	return 0;
bad:
	log_warn("spamd.bad_reply", "bytes=%zu", len);
	return -EPROTO;
}

int antispam_spamd_scan(const char *addr, int64_t timeout_ms, const unsigned char *data, size_t len,
			struct antispam_result *out)
{
	int64_t deadline = engine_net_deadline(timeout_ms);
	char *reply = NULL, *req = NULL;
	size_t replylen;
	int fd = -1, rc;

	if (out == NULL || (data == NULL && len > 0))
		return -EINVAL;
	out->score = 0;
	out->detail = NULL;
	rc = engine_net_connect(addr, deadline, &fd);
	if (rc < 0) {
		log_warn("spamd.connect_failed", "addr=%s error=\"%s\"", addr ? addr : "",
			 strerror(-rc));
		goto fail;
	}
	req = xasprintf("SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\n\r\n", len);
	rc = engine_net_write_all(fd, req, strlen(req), deadline);
	if (rc == 0 && len > 0)
		rc = engine_net_write_all(fd, data, len, deadline);
	if (rc < 0) {
		log_warn("spamd.send_failed", "addr=%s error=\"%s\"", addr, strerror(-rc));
		goto fail;
	}
	/* Content-length tells spamd where the message ends; the half-close also
	 * serves daemons that read to the end of the stream. */
	(void)shutdown(fd, SHUT_WR);
	rc = engine_net_read_reply(fd, SPAMD_REPLY_MAX, 0, deadline, &reply, &replylen);
	if (rc < 0) {
		log_warn("spamd.read_failed", "addr=%s error=\"%s\"", addr, strerror(-rc));
		goto fail;
	}
	rc = antispam_spamd_parse_reply(reply, replylen, out);
fail:
	if (fd >= 0)
		close(fd);
	free(req);
	free(reply);
	return rc;
}
