/*
 * rspamd — asks rspamd's normal worker for a score over HTTP (antispam.h).
 *
 * What it is for: one "POST /checkv2" per message on a worker thread, over TCP
 * ("host:port") or a unix socket (a path, for rspamd's bind_socket = "/path"):
 *   request:  HTTP/1.0 with Content-Length and the envelope as headers
 *             IP, Helo, From, Rcpt (one per recipient), then the message
 *   reply:    200 with JSON {"score": 7.9, "required_score": 15, "action": ...,
 *             "symbols": {"NAME": {"score": ...}, ...}}
 * The score is rspamd's "score"; the detail lists the symbols' names. rspamd
 * answers GTUBE with a pre-result ("action": "reject") and a GTUBE symbol whose
 * score is 0, so a GTUBE symbol scores ANTISPAM_GTUBE_SCORE here, as it does in
 * the other engines. A non-200 status, or JSON without a numeric "score", is an
 * error (the caller must not take it for a score).
 * What it is not for: learning, rspamd's actions (the gateway applies its own
 * thresholds), keep-alive connections.
 */
#include "gateway/antispam.h"
#include "gateway/antispam_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "gateway/engine_net.h"

/* rspamd's JSON lists every symbol with its description and options. */
#define RSPAMD_REPLY_MAX (1024 * 1024)
/* Envelope headers we send at most (rspamd's own max_recipients is 1024). */
#define RSPAMD_RCPT_MAX 1000
/* Longest envelope value sent as a header; longer ones are left out. */
#define RSPAMD_HEADER_VALUE_MAX 512

/* A value is sent only when it cannot break the request: no CR, LF or other control. */
static bool rspamd_header_value_ok(const char *v)
{
	size_t n = 0;
	for (; v[n] != '\0'; n++)
		if ((unsigned char)v[n] < 0x20 || (unsigned char)v[n] == 0x7f)
			return false;
	return n > 0 && n <= RSPAMD_HEADER_VALUE_MAX;
}

/* Appends "Name: value\r\n" to *req when value is safe to send. */
static void rspamd_add_header(char **req, const char *name, const char *value)
{
	if (value == NULL)
		return;
	if (!rspamd_header_value_ok(value)) {
		log_warn("rspamd.header_skipped", "header=%s", name);
		return;
	}
	char *next = xasprintf("%s%s: %s\r\n", *req, name, value);
	free(*req);
	*req = next;
}

/*
 * Decodes a chunked body in place. 0 with *len the decoded length, or -EPROTO.
 */
static int rspamd_dechunk(char *body, size_t *len)
{
	size_t in = 0, outp = 0, n = *len;
	for (;;) {
		char *end;
		if (in >= n)
			return -EPROTO;
		errno = 0;
		unsigned long size = strtoul(body + in, &end, 16);
		if (end == body + in || errno != 0)
			return -EPROTO;
		char *nl = memchr(end, '\n', n - (size_t)(end - body));
		if (nl == NULL)
			return -EPROTO;
		in = (size_t)(nl - body) + 1;
		if (size == 0)
			break;
		if (size > n - in)
			return -EPROTO;
		memmove(body + outp, body + in, size);
		outp += size;
		in += size;
		if (in < n && body[in] == '\r')
			in++;
		if (in < n && body[in] == '\n')
			in++;
	}
	*len = outp;
	return 0;
}

/*
 * The status code of a status line "HTTP/1.x NNN" followed by a space or the line
 * end; 0 when the line is not one (atoi would take "200o" or " 200" for 200).
 */
static int rspamd_http_status(const char *buf, size_t len)
{
	if (len < 12 || buf[7] < '0' || buf[7] > '9' || buf[8] != ' ')
		return 0;
	int status = 0;
	for (size_t i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return 0;
		status = status * 10 + (buf[i] - '0');
	}
	if (len > 12 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
		return 0;
	return status;
}

int antispam_rspamd_parse_reply(char *buf, size_t len, struct antispam_result *out)
{
	json_t *root = NULL;
	char *detail = NULL;
	int rc = -EPROTO, status = 0;
	bool chunked = false;
	long long clen = -1;

	if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
		goto fail;
	status = rspamd_http_status(buf, len);
	char *hend = strstr(buf, "\r\n\r\n");
	size_t skip = 4;
	if (hend == NULL) {
		hend = strstr(buf, "\n\n");
		skip = 2;
	}
	if (hend == NULL)
		goto fail;
	*hend = '\0';
	char *body = hend + skip;
	size_t blen = len - (size_t)(body - buf);
	for (char *line = strchr(buf, '\n'); line != NULL; line = strchr(line, '\n')) {
		line++;
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			clen = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
			 strstr(line, "chunked") != NULL)
			chunked = true;
	}
	if (status != 200) {
		log_warn("rspamd.http_error", "status=%d", status);
		goto fail;
	}
	if (chunked) {
		if (rspamd_dechunk(body, &blen) < 0)
			goto fail;
	} else if (clen >= 0) {
		if ((unsigned long long)clen > blen)
			goto fail; /* cut short */
		blen = (size_t)clen;
	}
	json_error_t jerr;
	root = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root))
		goto fail;
	json_t *score = json_object_get(root, "score");
	if (!json_is_number(score) || !isfinite(json_number_value(score)))
		goto fail;
	double s = json_number_value(score);
	json_t *symbols = json_object_get(root, "symbols");
	if (json_is_object(symbols)) {
		const char *key;
		json_t *val;
		json_object_foreach(symbols, key, val)
		{
			antispam_detail_add(&detail, key, strlen(key));
			if (strcmp(key, "GTUBE") == 0 && s < ANTISPAM_GTUBE_SCORE)
				s = ANTISPAM_GTUBE_SCORE;
		}
	}
	out->score = s;
	out->detail = detail;
	detail = NULL;
	rc = 0;
fail:
	if (rc < 0 && status == 200)
		log_warn("rspamd.bad_reply", "bytes=%zu", len);
	json_decref(root);
	free(detail);
	return rc;
}

int antispam_rspamd_scan(const char *addr, int64_t timeout_ms, const struct antispam_envelope *env,
			 const unsigned char *data, size_t len, struct antispam_result *out)
{
	int64_t deadline = engine_net_deadline(timeout_ms);
	char *reply = NULL, *req = NULL;
	size_t replylen;
	int fd = -1, rc;

	if (out == NULL || (data == NULL && len > 0))
		return -EINVAL;
	out->score = 0;
	out->detail = NULL;
	req = xasprintf("POST /checkv2 HTTP/1.0\r\nHost: rspamd\r\nContent-Length: %zu\r\n", len);
	if (env != NULL) {
		rspamd_add_header(&req, "IP", env->client_ip);
		rspamd_add_header(&req, "Helo", env->helo);
		rspamd_add_header(&req, "From", env->mail_from);
		for (size_t i = 0; env->rcpts != NULL && i < env->nrcpts && i < RSPAMD_RCPT_MAX;
		     i++)
			rspamd_add_header(&req, "Rcpt", env->rcpts[i]);
	}
	char *full = xasprintf("%s\r\n", req);
	free(req);
	req = full;

	rc = engine_net_connect(addr, deadline, &fd);
	if (rc < 0) {
		log_warn("rspamd.connect_failed", "addr=%s error=\"%s\"", addr ? addr : "",
			 strerror(-rc));
		goto fail;
	}
	rc = engine_net_write_all(fd, req, strlen(req), deadline);
	if (rc == 0 && len > 0)
		rc = engine_net_write_all(fd, data, len, deadline);
	if (rc < 0) {
		log_warn("rspamd.send_failed", "addr=%s error=\"%s\"", addr, strerror(-rc));
		goto fail;
	}
	rc = engine_net_read_reply(fd, RSPAMD_REPLY_MAX, 0, deadline, &reply, &replylen);
	if (rc < 0) {
		log_warn("rspamd.read_failed", "addr=%s error=\"%s\"", addr, strerror(-rc));
		goto fail;
	}
	rc = antispam_rspamd_parse_reply(reply, replylen, out);
fail:
	if (fd >= 0)
		close(fd);
	free(req);
	free(reply);
	return rc;
}
