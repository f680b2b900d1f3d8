/*
 * auth_imap — IMAP LOGIN for end users (see auth_imap.h). One connection per
 * login, in these steps, each bounded by the timeout:
 *
 *   connect -> [imaps: TLS handshake] -> greeting "* OK"
 *           -> [starttls: "a0 STARTTLS" -> tagged a0 OK -> TLS handshake]
 *           -> "a1 LOGIN user pass" -> tagged a1 OK / NO / BAD
 *           -> "a2 LOGOUT" (best effort) -> close
 *
 * With TLS asked for, LOGIN is sent only once the handshake has verified the
 * server's certificate and name; any failure before that ends the attempt. Lines
 * the server sent in clear after its STARTTLS OK are an attack (RFC 3501 11.1
 * injection) and end it too. Untagged lines before the tagged reply
 * (capabilities) are skipped, literals in them included (auth_imap_reader_next).
 * Not for: mailbox access.
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/confparse.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/xalloc.h"

int auth_imap_tls_parse(const char *s, enum auth_imap_tls *out)
{
	if (s == NULL || strcmp(s, "starttls") == 0)
		*out = AUTH_IMAP_TLS_STARTTLS;
	else if (strcmp(s, "imaps") == 0)
		*out = AUTH_IMAP_TLS_IMAPS;
	else if (strcmp(s, "none") == 0)
		*out = AUTH_IMAP_TLS_NONE;
	else
		return -EINVAL;
	return 0;
}

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
	SSL *ssl; /* once TLS is on, all I/O goes through it */
	int64_t timeout_ms;
	char buf[AUTH_IMAP_LINE_MAX];
	size_t len;
	struct auth_imap_reader reader;
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

/*
 * One transfer through TLS: n > 0 bytes; -EAGAIN with *want the poll event to
 * wait for; -ECONNRESET when the TLS session is closed, cleanly or not.
 */
static ssize_t auth_imap_tls_io(SSL *ssl, int r, short *want)
{
	return tls_io_result(ssl, r, want, -ECONNRESET);
}

/* One send, plain or TLS: > 0, -EAGAIN (*want), or -errno. */
static ssize_t auth_imap_send_some(struct auth_imap_conn *c, const char *p, size_t n, short *want)
{
	*want = POLLOUT;
	if (c->ssl != NULL)
		return auth_imap_tls_io(c->ssl, SSL_write(c->ssl, p, (int)n), want);
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
	if (w < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return w > 0 ? w : -EPIPE;
}

/* One receive, plain or TLS: > 0, -ECONNRESET at the end, -EAGAIN (*want), or -errno. */
static ssize_t auth_imap_recv_some(struct auth_imap_conn *c, char *p, size_t n, short *want)
{
	*want = POLLIN;
	if (c->ssl != NULL)
		return auth_imap_tls_io(c->ssl, SSL_read(c->ssl, p, (int)n), want);
	ssize_t r = recv(c->fd, p, n, 0);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r > 0 ? r : -ECONNRESET;
}

static int auth_imap_write(struct auth_imap_conn *c, const char *s)
{
	size_t len = strlen(s), off = 0;
	while (off < len) {
		short want;
		ssize_t w = auth_imap_send_some(c, s + off, len - off, &want);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w == -EINTR)
			continue;
		if (w == -EAGAIN) {
			int rc = auth_imap_wait(c->fd, want, c->timeout_ms);
			if (rc < 0)
				return rc;
			continue;
		}
		return (int)w;
	}
	return 0;
}

/*
 * The size N of the literal a line announces by ending in "{N}" (literal8's "~{N}"
 * ends the same way): 0 with *n, -ENOENT when it announces none, -EPROTO when N is
 * over AUTH_IMAP_LITERAL_MAX.
 */
static int auth_imap_literal_size(const char *line, size_t len, size_t *n)
{
	if (len < 3 || line[len - 1] != '}')
		return -ENOENT;
	size_t d = len - 1;
	while (d > 0 && line[d - 1] >= '0' && line[d - 1] <= '9')
		d--;
	if (d == len - 1 || d == 0 || line[d - 1] != '{')
		return -ENOENT;
	size_t v = 0;
	for (size_t i = d; i < len - 1; i++) {
		v = v * 10 + (size_t)(line[i] - '0');
		if (v > AUTH_IMAP_LITERAL_MAX)
			return -EPROTO;
	}
	*n = v;
	return 0;
}

int auth_imap_reader_next(struct auth_imap_reader *r, const char *buf, size_t len, size_t *used,
			  char **line)
{
	size_t pos = 0;
	int rc = 0;
	*line = NULL;
	for (;;) {
		/* Literal bytes are data, whatever they look like: skip them. */
		size_t skip = len - pos < r->literal_left ? len - pos : r->literal_left;
		pos += skip;
		r->literal_left -= skip;
		if (r->literal_left > 0)
			break;
		size_t avail = len - pos;
		const char *nl = memchr(buf + pos, '\n',
					avail < AUTH_IMAP_LINE_MAX ? avail : AUTH_IMAP_LINE_MAX);
		if (nl == NULL) {
			if (avail >= AUTH_IMAP_LINE_MAX)
				rc = -E2BIG;
			break;
		}
		size_t n = (size_t)(nl - (buf + pos));
		if (n > 0 && buf[pos + n - 1] == '\r')
			n--;
		size_t literal = 0;
		int lrc = auth_imap_literal_size(buf + pos, n, &literal);
		if (lrc == -EPROTO) {
			rc = -EPROTO;
			break;
		}
		bool start = !r->continued;
		if (start)
			*line = xstrndup(buf + pos, n);
		pos = (size_t)(nl - buf) + 1;
		r->continued = lrc == 0;
		r->literal_left = literal;
		if (start) {
			rc = 1;
			break;
		}
	}
	*used = pos;
	return rc;
}

/* The next server response's first line (without CRLF) from c->buf; -E2BIG, -EPROTO. */
static int auth_imap_read_line(struct auth_imap_conn *c, char **line)
{
	for (;;) {
		size_t used;
		int rc = auth_imap_reader_next(&c->reader, c->buf, c->len, &used, line);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (rc != 0)
			return rc < 0 ? rc : 0;
		/* Read first: TLS may hold decrypted bytes the socket no longer shows. */
		short want;
		ssize_t r = auth_imap_recv_some(c, c->buf + c->len, sizeof(c->buf) - c->len, &want);
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN) {
			rc = auth_imap_wait(c->fd, want, c->timeout_ms);
			if (rc < 0)
				return rc;
			continue;
		}
		if (r < 0)
			return (int)r;
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

/*
 * The TLS handshake on c->fd, the certificate verified by cfg->tls_ctx and for
 * the host part of cfg->host. 0 with c->ssl set, or -EIO (logged).
 */
static int auth_imap_handshake(struct auth_imap_conn *c, const struct auth_imap_config *cfg)
{
	char *host = NULL, *port = NULL;
	char why[256];
	if (confparse_hostport(cfg->host, &host, &port) < 0)
		host = xstrdup(cfg->host);
	SSL *ssl = SSL_new(cfg->tls_ctx);
	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1 || tls_client_expect_host(ssl, host) < 0)
		panic("auth_imap: out of memory");
	free(host);
	free(port);
	for (;;) {
		int r = SSL_connect(ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(ssl, r);
		int rc = -EIO;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			rc = auth_imap_wait(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					    c->timeout_ms);
		if (rc == 0)
			continue;
		char q[300];
		log_error("auth.imap_failed", "step=tls host=%s error=%s", cfg->host,
			  log_quote(q, sizeof(q),
				    rc == -ETIMEDOUT ? "timed out"
						     : tls_error_text(ssl, why, sizeof(why))));
		SSL_free(ssl);
		return -EIO;
	}
	c->ssl = ssl;
	return 0;
}

/* After the greeting: "a0 STARTTLS", its OK, and the handshake. 0 or -EIO (logged). */
static int auth_imap_starttls(struct auth_imap_conn *c, const struct auth_imap_config *cfg)
{
	char *line = NULL;
	int rc = auth_imap_write(c, "a0 STARTTLS\r\n");
	if (rc == 0)
		rc = auth_imap_tagged(c, "a0", &line);
	if (rc < 0) {
		log_error("auth.imap_failed", "step=starttls host=%s error=%s", cfg->host,
			  strerror(-rc));
		return -EIO;
	}
	if (!auth_imap_status(line, 2, "OK")) {
		char q[256];
		log_error("auth.imap_failed", "step=starttls host=%s reply=%s", cfg->host,
			  log_quote(q, sizeof(q), line));
		free(line);
		return -EIO;
	}
	free(line);
	if (c->len > 0) {
		log_error("auth.imap_failed",
			  "step=starttls host=%s error=\"data after the "
			  "STARTTLS reply\"",
			  cfg->host);
		return -EIO;
	}
	return auth_imap_handshake(c, cfg);
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
	if (cfg->tls == AUTH_IMAP_TLS_IMAPS && (rc = auth_imap_handshake(c, cfg)) < 0)
		goto fail;
	rc = auth_imap_read_line(c, &line);
	if (rc < 0 || strncasecmp(line, "* OK", 4) != 0) {
		log_error("auth.imap_failed", "step=greeting host=%s error=%s", cfg->host,
			  rc < 0 ? strerror(-rc) : "not an IMAP greeting");
		rc = -EIO;
		goto fail;
	}
	free(line);
	line = NULL;
	if (cfg->tls == AUTH_IMAP_TLS_STARTTLS && (rc = auth_imap_starttls(c, cfg)) < 0)
		goto fail;
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
	if (c->ssl != NULL) {
		(void)SSL_shutdown(c->ssl); /* one close_notify, not waiting for the peer's */
		SSL_free(c->ssl);
		ERR_clear_error();
	}
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
