/*
 * clamd — asks ClamAV's daemon whether a message carries a virus (antivirus.h).
 *
 * What it is for: one INSTREAM exchange per message on a worker thread:
 *   "zINSTREAM\0", then the message in chunks of ANTIVIRUS_CLAMD_CHUNK bytes, each
 *   behind its length as 4 bytes big-endian, then a zero length; clamd answers one
 *   NUL-terminated line and closes:
 *     "stream: OK"                       clean
 *     "stream: <signature> FOUND"        infected
 *     "<text> ERROR"                     clamd could not scan (e.g. the stream went
 *                                        past its StreamMaxLength)
 * What it is not for: signatures, scanning files by path (clamd may not see our
 * files), keeping sessions (IDSESSION) open.
 *
 * clamd drops the connection as soon as the stream passes its StreamMaxLength
 * (25 MB by default), often before our last chunk is out: a failed write is
 * therefore followed by an attempt to read clamd's reason.
 */
#include "gateway/antivirus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "gateway/engine_net.h"

/* Bytes per INSTREAM chunk. Well under clamd's StreamMaxLength (default 25 MB, and
 * no sane setting is below 1 MB) and its per-chunk buffer, so one chunk never
 * trips the limit on its own. */
#define ANTIVIRUS_CLAMD_CHUNK 65536
/* clamd's answer is one short line; anything longer is not clamd. */
#define ANTIVIRUS_CLAMD_REPLY_MAX 1024
/* Longest signature name we pass on. */
#define ANTIVIRUS_CLAMD_VIRUS_MAX 256

/* Keeps only printable ASCII of s, for logs. */
static void clamd_printable(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

int antivirus_clamd_parse_reply(char *reply, bool *infected, char **virus)
{
	size_t len = strlen(reply);
	while (len > 0 &&
	       (reply[len - 1] == '\n' || reply[len - 1] == '\r' || reply[len - 1] == ' '))
		reply[--len] = '\0';
	clamd_printable(reply);
	if (len >= 6 && strcmp(reply + len - 6, " ERROR") == 0) {
		if (strstr(reply, "size limit exceeded") != NULL) {
			log_warn("clamd.too_large", "reply=\"%s\"", reply);
			return -EFBIG;
		}
		log_warn("clamd.error", "reply=\"%s\"", reply);
		return -EPROTO;
	}
	static const char prefix[] = "stream: ";
	if (strncmp(reply, prefix, sizeof(prefix) - 1) != 0)
		goto bad;
	const char *rest = reply + sizeof(prefix) - 1;
	if (strcmp(rest, "OK") == 0) {
		*infected = false;
		return 0;
	}
	size_t rlen = strlen(rest);
	if (rlen > 6 && strcmp(rest + rlen - 6, " FOUND") == 0) {
		/* The name without the blanks around it: "stream:   FOUND" names nothing. */
		size_t vlen = rlen - 6;
		while (vlen > 0 && *rest == ' ') {
			rest++;
			vlen--;
		}
		while (vlen > 0 && rest[vlen - 1] == ' ')
			vlen--;
		if (vlen == 0)
			goto bad;
		if (vlen > ANTIVIRUS_CLAMD_VIRUS_MAX)
			vlen = ANTIVIRUS_CLAMD_VIRUS_MAX;
		while (vlen > 0 && rest[vlen - 1] == ' ')
			vlen--; /* a cut may end on a blank */
		*infected = true;
		*virus = xstrndup(rest, vlen);
		return 0;
	}
bad:
	log_warn("clamd.bad_reply", "reply=\"%s\"", reply);
	return -EPROTO;
}

int antivirus_clamd_scan(const char *addr, int64_t timeout_ms, const unsigned char *data,
			 size_t len, bool *infected, char **virus)
{
	int64_t deadline = engine_net_deadline(timeout_ms);
	unsigned char hdr[4];
	char *reply = NULL;
	size_t replylen;
	int fd = -1, rc, wrc = 0;

	if (infected == NULL || virus == NULL || (data == NULL && len > 0))
		return -EINVAL;
	*infected = false;
	*virus = NULL;
	rc = engine_net_connect(addr, deadline, &fd);
	if (rc < 0) {
		log_warn("clamd.connect_failed", "addr=%s error=\"%s\"", addr ? addr : "",
			 strerror(-rc));
		goto fail;
	}
	static const char cmd[] = "zINSTREAM"; /* sent with its NUL */
	wrc = engine_net_write_all(fd, cmd, sizeof(cmd), deadline);
	for (size_t off = 0; wrc == 0 && off < len; off += ANTIVIRUS_CLAMD_CHUNK) {
		size_t n = len - off < ANTIVIRUS_CLAMD_CHUNK ? len - off : ANTIVIRUS_CLAMD_CHUNK;
		hdr[0] = (unsigned char)(n >> 24);
		hdr[1] = (unsigned char)(n >> 16);
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		wrc = engine_net_write_all(fd, hdr, sizeof(hdr), deadline);
		if (wrc == 0)
			wrc = engine_net_write_all(fd, data + off, n, deadline);
	}
	if (wrc == 0) {
		memset(hdr, 0, sizeof(hdr));
		wrc = engine_net_write_all(fd, hdr, sizeof(hdr), deadline);
	}
	if (wrc == -ETIMEDOUT) {
		rc = wrc;
		log_warn("clamd.timeout", "addr=%s stage=send", addr);
		goto fail;
	}
	/* Even after a failed write clamd may have said why it hung up. */
	rc = engine_net_read_reply(fd, ANTIVIRUS_CLAMD_REPLY_MAX, 1, deadline, &reply, &replylen);
	if (rc < 0) {
		log_warn("clamd.read_failed", "addr=%s error=\"%s\"", addr, strerror(-rc));
		goto fail;
	}
	if (replylen == 0) {
		rc = wrc < 0 ? wrc : -ECONNRESET;
		log_warn("clamd.no_reply", "addr=%s", addr);
		goto fail;
	}
	rc = antivirus_clamd_parse_reply(reply, infected, virus);
fail:
	if (fd >= 0)
		close(fd);
	free(reply);
	return rc;
}
