/*
 * auth_imap — IMAP LOGIN for end users (see auth_imap.h). One connection per
 * login, in these steps, each bounded by the timeout:
 *
 *   connect -> greeting "* OK" -> "a1 LOGIN user pass" -> tagged a1 OK / NO / BAD
 *           -> "a2 LOGOUT" (best effort) -> close
 *
 * Untagged lines before the tagged reply (capabilities) are skipped. Not for:
 * STARTTLS or IMAPS (the server should be on a trusted network or loopback),
 * mailbox access.
 */
#include "manager/auth_imap.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/confparse.h"
#include "common/log.h"
#include "common/xalloc.h"

int auth_imap_quote(const char *s, char **out)
{
	size_t n = 2;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n' || *p >= 0x80)
			return -EINVAL;
		n += *p == '"' || *p == '\\' ? 2 : 1;
	}
	char *q = xmalloc(n + 1);
	char *o = q;
	*o++ = '"';
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			*o++ = '\\';
		*o++ = *p;
	}
	*o++ = '"';
	*o = '\0';
	*out = q;
	return 0;
}

int auth_imap_address(const char *domain, const char *username, char **out)
{
	*out = NULL;
	if (domain == NULL || *domain == '\0' || username == NULL)
		return -EACCES;
	const char *at = strchr(username, '@');
	size_t local = at != NULL ? (size_t)(at - username) : strlen(username);
	/* One '@' at most, a local part, and only the configured domain after it. */
	if (local == 0 ||
	    (at != NULL && (strchr(at + 1, '@') != NULL || strcasecmp(at + 1, domain) != 0)))
		return -EACCES;
	char *addr = xasprintf("%.*s@%s", (int)local, username, domain);
	for (char *p = addr; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	*out = addr;
	return 0;
}

struct auth_imap_conn {
	int fd;
	int64_t timeout_ms;
	char buf[AUTH_IMAP_LINE_MAX];
	size_t len;
};

/* Waits for fd to be ready for events; 0, or -ETIMEDOUT / -errno. */
static int auth_imap_wait(int fd, short events, int64_t timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int r;
	do {
		r = poll(&pfd, 1, (int)timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

static int auth_imap_connect(const char *hostport, int64_t timeout_ms, int *out)
{
	char *host = NULL, *port = NULL;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int rc = -EINVAL, fd = -1;
	if (confparse_hostport(hostport, &host, &port) < 0)
		goto done;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		rc = -EHOSTUNREACH;
		goto done;
	}
	rc = -ECONNREFUSED;
	for (struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    p->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) {
			rc = 0;
			break;
		}
		if (errno == EINPROGRESS && auth_imap_wait(fd, POLLOUT, timeout_ms) == 0) {
			int err = 0;
			socklen_t el = sizeof(err);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
				rc = 0;
				break;
			}
			rc = err != 0 ? -err : -EIO;
		} else {
			rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		}
		close(fd);
		fd = -1;
	}
done:
	if (ai != NULL)
		freeaddrinfo(ai);
	free(host);
	free(port);
	*out = fd;
	return rc;
}

static int auth_imap_write(struct auth_imap_conn *c, const char *s)
{
	size_t len = strlen(s), off = 0;
	while (off < len) {
		ssize_t w = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = auth_imap_wait(c->fd, POLLOUT, c->timeout_ms);
			if (rc < 0)
				return rc;
			continue;
		}
		return w < 0 ? -errno : -EPIPE;
	}
	return 0;
}

/* The next line (without CRLF) into c->buf; -E2BIG for an overlong line. */
static int auth_imap_read_line(struct auth_imap_conn *c, char **line)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl != NULL) {
			size_t used = (size_t)(nl - c->buf) + 1;
			*nl = '\0';
			if (nl > c->buf && nl[-1] == '\r')
				nl[-1] = '\0';
			*line = xstrdup(c->buf);
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -E2BIG;
		int rc = auth_imap_wait(c->fd, POLLIN, c->timeout_ms);
		if (rc < 0)
			return rc;
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		c->len += (size_t)r;
	}
}

/* Reads until the line tagged tag; *reply is that line (new, caller frees). */
static int auth_imap_tagged(struct auth_imap_conn *c, const char *tag, char **reply)
{
	size_t tl = strlen(tag);
	for (;;) {
		char *line = NULL;
		int rc = auth_imap_read_line(c, &line);
		if (rc < 0)
			return rc;
		if (strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
			*reply = line;
			return 0;
		}
		free(line);
	}
}

static bool auth_imap_status(const char *reply, size_t taglen, const char *status)
{
	size_t sl = strlen(status);
	const char *p = reply + taglen + 1;
	return strncasecmp(p, status, sl) == 0 && (p[sl] == ' ' || p[sl] == '\0');
}

int auth_imap_login(const struct auth_imap_config *cfg, const char *username, const char *password,
		    char ***addresses, size_t *n)
{
	struct auth_imap_conn *c = xcalloc(1, sizeof(*c));
	char *quser = NULL, *qpass = NULL, *cmd = NULL, *line = NULL, *address = NULL;
	int rc;
	*addresses = NULL;
	*n = 0;
	c->fd = -1;
	c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
	/*
	 * The address is decided before the server is asked: many servers ignore a
	 * domain they do not serve, so "alice@other.example" must never become an
	 * address here just because alice's password was right.
	 */
	if (auth_imap_address(cfg->domain, username, &address) < 0) {
		char q[300];
		log_warn("auth.imap_refused", "user=%s reason=\"not in domain %s\"",
			 log_quote(q, sizeof(q), username),
			 cfg->domain != NULL ? cfg->domain : "-");
		rc = -EACCES;
		goto fail;
	}
	if (*username == '\0' || *password == '\0' || auth_imap_quote(username, &quser) < 0 ||
	    auth_imap_quote(password, &qpass) < 0) {
		rc = -EACCES;
		goto fail;
	}
	rc = auth_imap_connect(cfg->host, c->timeout_ms, &c->fd);
	if (rc < 0) {
		log_error("auth.imap_failed", "step=connect host=%s error=%s", cfg->host,
			  strerror(-rc));
		rc = -EIO;
		goto fail;
	}
	rc = auth_imap_read_line(c, &line);
	if (rc < 0 || strncasecmp(line, "* OK", 4) != 0) {
		log_error("auth.imap_failed", "step=greeting host=%s error=%s", cfg->host,
			  rc < 0 ? strerror(-rc) : "not an IMAP greeting");
		rc = -EIO;
		goto fail;
	}
	free(line);
	line = NULL;
	cmd = xasprintf("a1 LOGIN %s %s\r\n", quser, qpass);
	rc = auth_imap_write(c, cmd);
	explicit_bzero(cmd, strlen(cmd));
	if (rc == 0)
		rc = auth_imap_tagged(c, "a1", &line);
	if (rc < 0) {
		log_error("auth.imap_failed", "step=login host=%s error=%s", cfg->host,
			  strerror(-rc));
		rc = -EIO;
		goto fail;
	}
	if (auth_imap_status(line, 2, "NO")) {
		rc = -EACCES;
		goto fail;
	}
	if (!auth_imap_status(line, 2, "OK")) {
		char q[256];
		log_error("auth.imap_failed", "step=login host=%s reply=%s", cfg->host,
			  log_quote(q, sizeof(q), line));
		rc = -EIO;
		goto fail;
	}
	free(line);
	line = NULL;
	/* Best effort: the login has succeeded whatever LOGOUT does. */
	if (auth_imap_write(c, "a2 LOGOUT\r\n") == 0 && auth_imap_tagged(c, "a2", &line) == 0) {
		free(line);
		line = NULL;
	}
	*addresses = xcalloc(1, sizeof(char *));
	(*addresses)[0] = address;
	address = NULL;
	*n = 1;
	rc = 0;

fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	free(line);
	free(cmd);
	free(address);
	free(quser);
	if (qpass != NULL) {
		explicit_bzero(qpass, strlen(qpass));
		free(qpass);
	}
	return rc;
}
