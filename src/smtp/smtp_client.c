/*
 * smtp_client — blocking outbound SMTP for worker threads (see smtp_client.h).
 *
 * What it is for: handing one message to one server and saying, recipient by
 * recipient, what the server answered — the release engine and the gateway's relay
 * both decide retries from that; with a TLS context, over STARTTLS only. What it
 * is not for: the event loop (it blocks on poll(2)), queueing, MX lookups,
 * opportunistic TLS (TLS is either required or not tried).
 *
 * A session goes through these states; each arrow is one command and its reply,
 * each bounded by the step timeout (and the optional session cap):
 *
 *   CONNECT --smtp_client_connect--> GREETING --2xx--> EHLO --2xx--> MAIL
 *   EHLO --5xx--> HELO --2xx--> MAIL
 *   EHLO --2xx, TLS asked--> STARTTLS --220, handshake, verified--> EHLO --2xx--> MAIL
 *   (TLS asked and no STARTTLS offered, no 220, or a failed handshake: all deferred)
 *   MAIL --2xx--> RCPT (one per recipient; each reply is kept for its recipient)
 *   RCPT --none accepted--> QUIT        RCPT --some accepted--> DATA --354--> BODY
 *   BODY --final dot, reply--> QUIT
 *   GREETING/EHLO/HELO/MAIL --4xx/5xx--> QUIT: the session reply answers for all
 *   any state --timeout, lost connection, malformed reply--> closed: recipients
 *                                          without an answer are deferred
 *
 * The body goes out with CRLF line ends (bare LF and bare CR become CRLF, so no
 * peer can see an end of data we did not mean) and a '.' at the start of a line
 * doubled. Server text is hostile: reply lines and their count are limited, and
 * only printable ASCII of it is kept.
 */
#include "smtp/smtp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/xalloc.h"

/* Used when the caller gives no timeout: RFC 5321 4.5.3.2 asks for minutes. */
#define SMTP_CLIENT_DEFAULT_TIMEOUT_MS 60000
#define SMTP_CLIENT_DEFAULT_PORT       25
/* "[" addr "]:" port */
#define SMTP_CLIENT_PEER_MAX (INET6_ADDRSTRLEN + 16)

struct smtp_conn {
	int fd;
	SSL *ssl; /* after STARTTLS: all I/O goes through it */
	char peer[SMTP_CLIENT_PEER_MAX];
	int64_t step_ms;
	int64_t session_deadline; /* monotonic ms, 0: none */
	char rbuf[SMTP_CLIENT_REPLY_LINE_MAX];
	size_t rstart, rend;
	unsigned char *wbuf; /* SMTP_CLIENT_WRITE_CHUNK */
	size_t wlen;
};

struct smtp_reply {
	int code;
	char text[SMTP_CLIENT_REPLY_TEXT_MAX];
};

/* Streams bytes in SMTP DATA form: CRLF line ends, leading dots doubled. */
struct smtp_encoder {
	bool bol;	 /* at the beginning of a line */
	bool pending_cr; /* a CR was seen; its line end is written with what follows */
	uint64_t count;	 /* message size: bytes produced less doubled dots */
};

const char *smtp_client_outcome_name(enum smtp_client_outcome o)
{
	switch (o) {
	case SMTP_CLIENT_DEFERRED:
		return "deferred";
	case SMTP_CLIENT_DELIVERED:
		return "delivered";
	case SMTP_CLIENT_REJECTED:
		return "rejected";
	}
	return "unknown";
}

void smtp_client_result_free(struct smtp_client_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nrcpts; i++)
		free(r->rcpts[i].reply);
	free(r->rcpts);
	free(r->peer);
	free(r->error);
	free(r->session_reply);
	memset(r, 0, sizeof(*r));
}

int smtp_client_parse_hostport(const char *hostport, char **host, unsigned *port)
{
	const char *h, *p;
	size_t hlen;
	*host = NULL;
	*port = 0;
	if (hostport == NULL || *hostport == '\0')
		return -EINVAL;
	if (hostport[0] == '[') {
		const char *end = strchr(hostport, ']');
		if (end == NULL)
			return -EINVAL;
		h = hostport + 1;
		hlen = (size_t)(end - h);
		if (end[1] == '\0')
			p = NULL;
		else if (end[1] == ':')
			p = end + 2;
		else
			return -EINVAL;
	} else {
		const char *colon = strchr(hostport, ':');
		/* A bare IPv6 address is ambiguous with a port: it needs brackets. */
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return -EINVAL;
		h = hostport;
		hlen = colon ? (size_t)(colon - h) : strlen(h);
		p = colon ? colon + 1 : NULL;
	}
	if (hlen == 0)
		return -EINVAL;
	unsigned long n = SMTP_CLIENT_DEFAULT_PORT;
	if (p != NULL) {
		char *end;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		n = strtoul(p, &end, 10);
		if (errno != 0 || *end != '\0' || n == 0 || n > 65535)
			return -EINVAL;
	}
	*host = xstrndup(h, hlen);
	*port = (unsigned)n;
	return 0;
}

/* Milliseconds left until the earlier of deadline and the session cap; >= 0. */
static int smtp_conn_wait_ms(const struct smtp_conn *c, int64_t deadline)
{
	if (c->session_deadline != 0 && c->session_deadline < deadline)
		deadline = c->session_deadline;
	int64_t left = deadline - clock_mono_ms();
	if (left < 0)
		left = 0;
	if (left > 1000000000)
		left = 1000000000;
	return (int)left;
}

/*
 * Waits until fd is ready for events or the deadline passes. 0, -ETIMEDOUT, or
 * -errno.
 */
static int smtp_conn_poll(const struct smtp_conn *c, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = c->fd, .events = events};
		int ms = smtp_conn_wait_ms(c, deadline);
		int n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static bool smtp_str_is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Looks at every byte of a relayed message: eight at a time. */
static bool smtp_bytes_have_8bit(const unsigned char *p, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, sizeof(w));
		if ((w & UINT64_C(0x8080808080808080)) != 0)
			return true;
	}
	for (; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

/* An envelope address we can put between <> without changing the command. */
static bool smtp_address_ok(const char *s, bool may_be_empty)
{
	if (s == NULL || (*s == '\0' && !may_be_empty))
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x21 || ch == 0x7f || ch == '<' || ch == '>')
			return false;
	}
	return true;
}

static void smtp_format_peer(const struct sockaddr *sa, char out[SMTP_CLIENT_PEER_MAX])
{
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
		port = ntohs(s6->sin6_port);
		snprintf(out, SMTP_CLIENT_PEER_MAX, "[%s]:%u", addr, port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
		port = ntohs(s4->sin_port);
		snprintf(out, SMTP_CLIENT_PEER_MAX, "%s:%u", addr, port);
	}
}

/* Parses a numeric source address ("127.0.0.2", "::1", "[::1]") into ss. */
static int smtp_parse_source(const char *src, struct sockaddr_storage *ss, socklen_t *len)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(src);
	if (n >= sizeof(buf))
		return -EINVAL;
	if (src[0] == '[' && n >= 2 && src[n - 1] == ']') {
		memcpy(buf, src + 1, n - 2);
		buf[n - 2] = '\0';
	} else {
		memcpy(buf, src, n + 1);
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		*len = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

/*
 * Connects to one resolved address. 0 with c->fd set, or -errno with *why set to a
 * new string.
 */
static int smtp_connect_one(struct smtp_conn *c, const struct addrinfo *ai,
			    const struct sockaddr_storage *src, socklen_t srclen,
			    const char *source_text, int64_t connect_ms, char **why)
{
	char peer[SMTP_CLIENT_PEER_MAX];
	int fd = -1, rc;
	smtp_format_peer(ai->ai_addr, peer);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		*why = xasprintf("connect to %s: %s", peer, strerror(-rc));
		goto fail;
	}
	if (src != NULL) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Pick the port at connect time, so many sessions from one address work. */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
		if (bind(fd, (const struct sockaddr *)src, srclen) < 0) {
			rc = -errno;
			*why = xasprintf("bind to %s: %s", source_text, strerror(-rc));
			goto fail;
		}
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			rc = -errno;
			*why = xasprintf("connect to %s: %s", peer, strerror(-rc));
			goto fail;
		}
		c->fd = fd;
		rc = smtp_conn_poll(c, POLLOUT, clock_mono_ms() + connect_ms);
		c->fd = -1;
		if (rc == 0) {
			int err = 0;
			socklen_t elen = sizeof(err);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
				err = errno;
			rc = -err;
		}
		if (rc < 0) {
			*why = xasprintf("connect to %s: %s", peer, strerror(-rc));
			goto fail;
		}
	}
	c->fd = fd;
	memcpy(c->peer, peer, sizeof(peer));
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Resolves and connects, trying each address in turn. 0, or -errno with *why set. */
static int smtp_client_connect(struct smtp_conn *c, const char *hostport,
			       const struct smtp_client_options *opt, int64_t connect_ms,
			       char **why)
{
	char *host = NULL;
	unsigned port;
	struct addrinfo *ais = NULL;
	struct sockaddr_storage src;
	socklen_t srclen = 0;
	int rc;

	rc = smtp_client_parse_hostport(hostport, &host, &port);
	if (rc < 0) {
		*why = xasprintf("invalid host \"%s\"", hostport ? hostport : "");
		goto fail;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	if (opt->source_address != NULL && *opt->source_address != '\0') {
		rc = smtp_parse_source(opt->source_address, &src, &srclen);
		if (rc < 0) {
			*why = xasprintf("invalid source address \"%s\"", opt->source_address);
			goto fail;
		}
		/* Only destinations we can reach from that address. */
		hints.ai_family = src.ss_family;
	}
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	int gai = getaddrinfo(host, portstr, &hints, &ais);
	if (gai != 0) {
		rc = (gai == EAI_NONAME || gai == EAI_NODATA) ? -ENOENT
		     : gai == EAI_AGAIN			      ? -EAGAIN
		     : gai == EAI_SYSTEM		      ? -errno
							      : -EHOSTUNREACH;
		if (rc == 0)
			rc = -EHOSTUNREACH;
		*why = xasprintf("resolve %s: %s", host, gai_strerror(gai));
		goto fail;
	}
	rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = ais; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (c->session_deadline != 0 && clock_mono_ms() >= c->session_deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		free(*why);
		*why = NULL;
		rc = smtp_connect_one(c, ai, srclen ? &src : NULL, srclen, opt->source_address,
				      connect_ms, why);
		if (rc == 0)
			break;
	}
	if (rc < 0 && *why == NULL)
		*why = xasprintf("connect to %s: %s", hostport, strerror(-rc));
fail:
	if (ais != NULL)
		freeaddrinfo(ais);
	free(host);
	return rc;
}

/*
 * What an SSL_read/SSL_write result means: n > 0 passes through; wanting to read
 * or write is -EAGAIN with *want the poll event; a closed or broken TLS session is
 * 0 (peer closed) or -ECONNRESET.
 */
static ssize_t smtp_tls_result(SSL *ssl, int n, short *want)
{
	return tls_io_result(ssl, n, want, 0);
}

/* One send on the connection, plain or TLS: > 0 bytes, 0 peer closed, -EAGAIN (*want), -errno. */
static ssize_t smtp_conn_send_some(struct smtp_conn *c, const void *p, size_t n, short *want)
{
	*want = POLLOUT;
	if (c->ssl != NULL)
		return smtp_tls_result(
		    c->ssl, SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), want);
	ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
	if (k < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return k;
}

/* One receive, plain or TLS: as smtp_conn_send_some. */
static ssize_t smtp_conn_recv_some(struct smtp_conn *c, void *p, size_t n, short *want)
{
	*want = POLLIN;
	if (c->ssl != NULL)
		return smtp_tls_result(
		    c->ssl, SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), want);
	ssize_t k = recv(c->fd, p, n, 0);
	if (k < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return k;
}

/* Writes the buffered output (at most one chunk) within one step. 0 or -errno. */
static int smtp_conn_flush(struct smtp_conn *c)
{
	int64_t deadline = clock_mono_ms() + c->step_ms;
	size_t off = 0;
	while (off < c->wlen) {
		short want;
		ssize_t n = smtp_conn_send_some(c, c->wbuf + off, c->wlen - off, &want);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN) {
			int rc = smtp_conn_poll(c, want, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		return n < 0 ? (int)n : -ECONNRESET;
	}
	c->wlen = 0;
	return 0;
}

/* Appends to the output, writing out full chunks. 0 or -errno. */
static int smtp_conn_put(struct smtp_conn *c, const void *data, size_t n)
{
	const unsigned char *p = data;
	while (n > 0) {
		size_t room = SMTP_CLIENT_WRITE_CHUNK - c->wlen;
		size_t k = n < room ? n : room;
		memcpy(c->wbuf + c->wlen, p, k);
		c->wlen += k;
		p += k;
		n -= k;
		if (c->wlen == SMTP_CLIENT_WRITE_CHUNK) {
			int rc = smtp_conn_flush(c);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Sends one command line (CRLF added) within one step. 0 or -errno. */
static int smtp_conn_command(struct smtp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int smtp_conn_command(struct smtp_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *line = NULL;
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("out of memory");
	int rc = smtp_conn_put(c, line, (size_t)n);
	if (rc == 0)
		rc = smtp_conn_put(c, "\r\n", 2);
	if (rc == 0)
		rc = smtp_conn_flush(c);
	free(line);
	return rc;
}

/*
 * Reads one line (without its line end) into line (NUL-terminated, at most
 * SMTP_CLIENT_REPLY_LINE_MAX). 0, -ETIMEDOUT, -ECONNRESET (peer closed), -EPROTO
 * (line too long) or -errno.
 */
static int smtp_conn_read_line(struct smtp_conn *c, int64_t deadline, char *line)
{
	for (;;) {
		char *nl = memchr(c->rbuf + c->rstart, '\n', c->rend - c->rstart);
		if (nl != NULL) {
			size_t len = (size_t)(nl - (c->rbuf + c->rstart));
			memcpy(line, c->rbuf + c->rstart, len);
			if (len > 0 && line[len - 1] == '\r')
				len--;
			line[len] = '\0';
			c->rstart = (size_t)(nl - c->rbuf) + 1;
			return 0;
		}
		if (c->rstart > 0) {
			memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
			c->rend -= c->rstart;
			c->rstart = 0;
		}
		if (c->rend == sizeof(c->rbuf))
			return -EPROTO;
		short want;
		ssize_t n =
		    smtp_conn_recv_some(c, c->rbuf + c->rend, sizeof(c->rbuf) - c->rend, &want);
		if (n > 0) {
			c->rend += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return (int)n;
		int rc = smtp_conn_poll(c, want, deadline);
		if (rc < 0)
			return rc;
	}
}

/* Appends src to dst (a NUL-terminated text of capacity cap), keeping printable ASCII. */
static void smtp_text_append(char *dst, size_t cap, const char *src)
{
	size_t len = strlen(dst);
	for (; *src && len + 1 < cap; src++) {
		unsigned char ch = (unsigned char)*src;
		dst[len++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[len] = '\0';
}

/* Notes an EHLO keyword line ("8BITMIME", "SIZE 10240000", ...). */
static void smtp_note_extension(struct smtp_client_result *res, const char *kw)
{
	size_t n = strcspn(kw, " =");
	if (n == 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
		res->ext_8bitmime = true;
	else if (n == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
		res->ext_smtputf8 = true;
	else if (n == 10 && strncasecmp(kw, "PIPELINING", 10) == 0)
		res->ext_pipelining = true;
	else if (n == 4 && strncasecmp(kw, "SIZE", 4) == 0)
		res->ext_size = true;
	else if (n == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
		res->ext_starttls = true;
}

int smtp_client_reply_line(const char *line, unsigned index, int *code, char *text, size_t textcap,
			   struct smtp_client_result *ehlo)
{
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
	    line[2] > '9' || (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
		return -EPROTO;
	int this_code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (index > 0 && this_code != *code)
		return -EPROTO;
	if (index == 0)
		text[0] = '\0';
	*code = this_code;
	if (index > 0)
		smtp_text_append(text, textcap, " ");
	smtp_text_append(text, textcap, line);
	if (ehlo != NULL && index > 0 && line[3] != '\0')
		smtp_note_extension(ehlo, line + 4);
	return line[3] == '-' ? 1 : 0;
}

/*
 * Reads one reply, multiline included: "250-first" ... "250 last". The lines are
 * kept in r->text joined by a space. When ehlo is not NULL the lines after the
 * first are noted as extensions. 0, or -errno as smtp_conn_read_line, -EPROTO for
 * a malformed reply.
 */
static int smtp_conn_read_reply(struct smtp_conn *c, int64_t timeout_ms, struct smtp_reply *r,
				struct smtp_client_result *ehlo)
{
	char line[SMTP_CLIENT_REPLY_LINE_MAX];
	int64_t deadline = clock_mono_ms() + timeout_ms;
	r->code = 0;
	r->text[0] = '\0';
	for (unsigned i = 0;; i++) {
		if (i >= SMTP_CLIENT_REPLY_LINES_MAX)
			return -EPROTO;
		int rc = smtp_conn_read_line(c, deadline, line);
		if (rc < 0)
			return rc;
		rc = smtp_client_reply_line(line, i, &r->code, r->text, sizeof(r->text), ehlo);
		if (rc <= 0)
			return rc;
	}
}

static enum smtp_client_outcome smtp_outcome_of(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_CLIENT_DELIVERED;
	if (code >= 500 && code < 600)
		return SMTP_CLIENT_REJECTED;
	return SMTP_CLIENT_DEFERRED;
}

static void smtp_rcpt_set(struct smtp_client_rcpt_result *rr, enum smtp_client_outcome o, int code,
			  const char *reply)
{
	free(rr->reply);
	rr->outcome = o;
	rr->code = code;
	rr->reply = xstrdup(reply);
}

/* Every recipient still without a reply gets this one. */
static void smtp_rcpts_settle(struct smtp_client_result *res, enum smtp_client_outcome o, int code,
			      const char *reply)
{
	for (size_t i = 0; i < res->nrcpts; i++)
		if (res->rcpts[i].reply == NULL)
			smtp_rcpt_set(&res->rcpts[i], o, code, reply);
}

/* Writes n bytes to c (NULL: only counts them into the message size). */
static int smtp_encode_put(struct smtp_encoder *e, struct smtp_conn *c, const void *p, size_t n,
			   size_t counted)
{
	e->count += counted;
	return c != NULL ? smtp_conn_put(c, p, n) : 0;
}

/*
 * Feeds n bytes through the DATA encoding; c NULL only counts. 0 or -errno.
 * Every line ends in CRLF (a bare CR or LF becomes one) and a line's leading
 * dot is doubled. The text between line ends is copied in one piece, found
 * with memchr: this runs over every byte of every relayed message.
 */
static int smtp_encode(struct smtp_encoder *e, struct smtp_conn *c, const unsigned char *p,
		       size_t n)
{
	size_t i = 0;
	size_t lf = 0; /* the next LF at or after i (n: none), valid while lf >= i */
	bool lf_known = false;
	int rc = 0;
	while (i < n && rc == 0) {
		if (e->pending_cr) {
			/* a CR's line end: a CRLF's LF is consumed, a bare CR's next byte
			 * starts the new line */
			e->pending_cr = false;
			e->bol = true;
			rc = smtp_encode_put(e, c, "\r\n", 2, 2);
			if (p[i] == '\n')
				i++;
			continue;
		}
		if (p[i] == '\r') {
			e->pending_cr = true;
			i++;
		} else if (p[i] == '\n') {
			e->bol = true;
			rc = smtp_encode_put(e, c, "\r\n", 2, 2);
			i++;
		} else if (e->bol && p[i] == '.') {
			/* The count is the message size of RFC 1870: doubled dots do not count. */
			e->bol = false;
			rc = smtp_encode_put(e, c, "..", 2, 1);
			i++;
		} else {
			if (!lf_known || lf < i) {
				const unsigned char *q = memchr(p + i, '\n', n - i);
				lf = q != NULL ? (size_t)(q - p) : n;
				lf_known = true;
			}
			const unsigned char *cr = memchr(p + i, '\r', lf - i);
			size_t end = cr != NULL ? (size_t)(cr - p) : lf;
			if (lf < n && end + 1 == lf) {
				/* the line ends in CRLF, as mail's lines do: it goes as it is */
				e->bol = true;
				rc = smtp_encode_put(e, c, p + i, lf + 1 - i, lf + 1 - i);
				i = lf + 1;
				continue;
			}
			e->bol = false;
			rc = smtp_encode_put(e, c, p + i, end - i, end - i);
			i = end;
		}
	}
	return rc;
}

/* Ends the data: the last line end if missing, then the lone dot. */
static int smtp_encode_end(struct smtp_encoder *e, struct smtp_conn *c)
{
	bool line_open = e->pending_cr || !e->bol;
	const char *tail = line_open ? "\r\n.\r\n" : ".\r\n";
	e->pending_cr = false;
	e->bol = true;
	e->count += line_open ? 2 : 0; /* the final dot is not part of the message */
	return c != NULL ? smtp_conn_put(c, tail, strlen(tail)) : 0;
}

static const char *smtp_step_text(int rc)
{
	switch (rc) {
	case -ETIMEDOUT:
		return "timed out";
	case -ECONNRESET:
		return "lost connection";
	case -EPROTO:
		return "malformed reply";
	default:
		return strerror(-rc);
	}
}

/* Records why the session broke off at step; returns rc. */
static int smtp_broke(struct smtp_client_result *res, const struct smtp_conn *c, int rc,
		      const char *step)
{
	free(res->error);
	res->error = xasprintf("%s with %s during %s", smtp_step_text(rc), c->peer, step);
	return rc;
}

/* Says goodbye; a peer that does not answer costs at most one step. */
static void smtp_quit(struct smtp_conn *c)
{
	struct smtp_reply r;
	if (smtp_conn_command(c, "QUIT") == 0)
		(void)smtp_conn_read_reply(c, c->step_ms, &r, NULL);
}

/* The server refused the session with reply r: it answers for every recipient. */
static void smtp_session_refused(struct smtp_client_result *res, const struct smtp_reply *r)
{
	res->session_code = r->code;
	res->session_reply = xstrdup(r->text);
	enum smtp_client_outcome o = smtp_outcome_of(r->code);
	if (o == SMTP_CLIENT_DELIVERED)
		o = SMTP_CLIENT_DEFERRED; /* a 2xx cannot refuse; treat as confusion */
	smtp_rcpts_settle(res, o, r->code, r->text);
}

/*
 * The TLS handshake on c's socket within one step, expecting a certificate for
 * host. 0 with c->ssl set, or -EPROTO / -ETIMEDOUT with res->error saying why.
 */
static int smtp_conn_handshake(struct smtp_conn *c, SSL_CTX *ctx, const char *host,
			       struct smtp_client_result *res)
{
	int64_t deadline = clock_mono_ms() + c->step_ms;
	SSL *ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1 || tls_client_expect_host(ssl, host) < 0)
		panic("smtp_client: out of memory");
	for (;;) {
		int r = SSL_connect(ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(ssl, r);
		int rc = -EPROTO;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			rc = smtp_conn_poll(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					    deadline);
		if (rc == 0)
			continue;
		char why[256];
		free(res->error);
		res->error = xasprintf("TLS with %s failed: %s", c->peer,
				       rc == -ETIMEDOUT ? "timed out"
							: tls_error_text(ssl, why, sizeof(why)));
		SSL_free(ssl);
		return rc;
	}
	c->ssl = ssl;
	return 0;
}

/*
 * STARTTLS after a successful EHLO (r is its reply), the handshake, and EHLO
 * again: 0 with the new EHLO's reply in *r; 1 when the server refused STARTTLS
 * (recipients settled as deferred, the caller says QUIT); or a negative errno
 * with res->error set (the connection is unusable).
 */
static int smtp_client_starttls(struct smtp_conn *c, const struct smtp_client_options *opt,
				const char *host, const char *helo, struct smtp_reply *r,
				struct smtp_client_result *res)
{
	if (!res->ext_starttls) {
		char *text = xasprintf("TLS required but %s does not offer STARTTLS", c->peer);
		smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, 0, text);
		free(text);
		return 1;
	}
	int rc = smtp_conn_command(c, "STARTTLS");
	if (rc == 0)
		rc = smtp_conn_read_reply(c, c->step_ms, r, NULL);
	if (rc < 0)
		return smtp_broke(res, c, rc, "STARTTLS");
	if (r->code != 220) {
		/* A TLS policy problem, not a verdict on the message: try again later. */
		smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, r->code, r->text);
		return 1;
	}
	/* Bytes after the 220 were sent in clear; they must not count as TLS replies. */
	if (c->rend > c->rstart) {
		free(res->error);
		res->error = xasprintf("%s sent data after its STARTTLS reply", c->peer);
		return -EPROTO;
	}
	rc =
	    smtp_conn_handshake(c, opt->tls_ctx, opt->tls_host != NULL ? opt->tls_host : host, res);
	if (rc < 0)
		return rc;
	res->tls = true;
	/* RFC 3207 4.2: forget what the server said before TLS. */
	res->ext_8bitmime = res->ext_smtputf8 = res->ext_pipelining = res->ext_size = false;
	res->ext_starttls = false;
	rc = smtp_conn_command(c, "EHLO %s", helo);
	if (rc == 0)
		rc = smtp_conn_read_reply(c, c->step_ms, r, res);
	if (rc < 0)
		return smtp_broke(res, c, rc, "EHLO after STARTTLS");
	return 0;
}

/*
 * Connect, greeting, EHLO (HELO after a 5xx), STARTTLS with opt->tls_ctx: 0 when the
 * session is ready for MAIL; 1 when the server refused it (res settled, the caller
 * sends QUIT); -errno when it broke off (res->error says why).
 */
static int smtp_open(struct smtp_conn *c, const char *hostport,
		     const struct smtp_client_options *opt, struct smtp_client_result *res)
{
	struct smtp_reply r;
	char *why = NULL;
	c->step_ms = opt->timeout_ms > 0 ? opt->timeout_ms : SMTP_CLIENT_DEFAULT_TIMEOUT_MS;
	int64_t connect_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : c->step_ms;
	const char *helo = opt->helo_name && *opt->helo_name ? opt->helo_name : "localhost";

	int rc = smtp_client_connect(c, hostport, opt, connect_ms, &why);
	if (rc < 0) {
		res->error = why;
		return rc;
	}
	res->connected = true;
	res->peer = xstrdup(c->peer);
	c->wbuf = xmalloc(SMTP_CLIENT_WRITE_CHUNK);

	rc = smtp_conn_read_reply(c, c->step_ms, &r, NULL);
	if (rc < 0)
		return smtp_broke(res, c, rc, "greeting");
	if (r.code / 100 != 2) {
		smtp_session_refused(res, &r);
		return 1;
	}

	rc = smtp_conn_command(c, "EHLO %s", helo);
	if (rc == 0)
		rc = smtp_conn_read_reply(c, c->step_ms, &r, res);
	if (rc < 0)
		return smtp_broke(res, c, rc, "EHLO");
	if (r.code / 100 == 2 && opt->tls_ctx != NULL) {
		char *host = NULL;
		unsigned port;
		(void)smtp_client_parse_hostport(hostport, &host, &port); /* parsed at connect */
		rc = smtp_client_starttls(c, opt, host, helo, &r, res);
		free(host);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return 1;
		if (r.code / 100 != 2) {
			smtp_session_refused(res, &r);
			return 1;
		}
		res->esmtp = true;
	} else if (r.code / 100 == 2) {
		res->esmtp = true;
	} else if (opt->tls_ctx != NULL) {
		/* HELO cannot lead to STARTTLS. */
		char *text = xasprintf("TLS required but %s refused EHLO: %s", c->peer, r.text);
		smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, r.code, text);
		free(text);
		return 1;
	} else if (r.code / 100 == 5) {
		res->ext_8bitmime = res->ext_smtputf8 = res->ext_pipelining = res->ext_size = false;
		rc = smtp_conn_command(c, "HELO %s", helo);
		if (rc == 0)
			rc = smtp_conn_read_reply(c, c->step_ms, &r, NULL);
		if (rc < 0)
			return smtp_broke(res, c, rc, "HELO");
		if (r.code / 100 != 2) {
			smtp_session_refused(res, &r);
			return 1;
		}
	} else {
		smtp_session_refused(res, &r);
		return 1;
	}
	return 0;
}

/*
 * One transaction on a ready session, MAIL to the reply to the final dot: 0 when
 * the server answered for every recipient, -errno when the session broke off.
 */
static int smtp_transact(struct smtp_conn *c, const struct smtp_client_options *opt,
			 const struct smtp_client_message *msg, struct smtp_client_result *res)
{
	struct smtp_reply r;
	int rc = 0;
	int64_t final_ms = opt->final_timeout_ms > 0 ? opt->final_timeout_ms : c->step_ms;

	/* Non-ASCII addresses need SMTPUTF8; without it they cannot be sent at all. */
	bool need_utf8 = !smtp_str_is_ascii(msg->sender);
	for (size_t i = 0; i < msg->nrcpts; i++)
		if (!smtp_str_is_ascii(msg->rcpts[i]))
			need_utf8 = true;
	if (need_utf8 && !res->ext_smtputf8) {
		char *text = xasprintf("SMTPUTF8 is required for a non-ASCII address but %s "
				       "does not offer it",
				       c->peer);
		for (size_t i = 0; i < msg->nrcpts; i++)
			if (!smtp_str_is_ascii(msg->sender) || !smtp_str_is_ascii(msg->rcpts[i]))
				smtp_rcpt_set(&res->rcpts[i], SMTP_CLIENT_REJECTED, 0, text);
		free(text);
		need_utf8 = false;
	}
	bool eightbit = smtp_bytes_have_8bit(msg->body, msg->body_len) ||
			(msg->header && !smtp_str_is_ascii(msg->header));
	bool any_left = false;
	for (size_t i = 0; i < msg->nrcpts; i++)
		any_left |= res->rcpts[i].reply == NULL;
	if (!any_left)
		return 0;

	char sizebuf[32] = "";
	if (res->ext_size) {
		struct smtp_encoder count = {.bol = true};
		if (msg->header)
			smtp_encode(&count, NULL, (const unsigned char *)msg->header,
				    strlen(msg->header));
		smtp_encode(&count, NULL, msg->body, msg->body_len);
		smtp_encode_end(&count, NULL);
		snprintf(sizebuf, sizeof(sizebuf), " SIZE=%llu", (unsigned long long)count.count);
	}
	rc = smtp_conn_command(c, "MAIL FROM:<%s>%s%s%s", msg->sender, sizebuf,
			       eightbit && res->ext_8bitmime ? " BODY=8BITMIME" : "",
			       need_utf8 ? " SMTPUTF8" : "");
	if (rc == 0)
		rc = smtp_conn_read_reply(c, c->step_ms, &r, NULL);
	if (rc < 0)
		return smtp_broke(res, c, rc, "MAIL FROM");
	if (r.code / 100 != 2) {
		smtp_session_refused(res, &r);
		return 0;
	}

	size_t naccepted = 0;
	for (size_t i = 0; i < msg->nrcpts; i++) {
		if (res->rcpts[i].reply != NULL)
			continue;
		rc = smtp_conn_command(c, "RCPT TO:<%s>", msg->rcpts[i]);
		if (rc == 0)
			rc = smtp_conn_read_reply(c, c->step_ms, &r, NULL);
		if (rc < 0)
			return smtp_broke(res, c, rc, "RCPT TO");
		if (r.code / 100 == 2) {
			naccepted++;
		} else {
			smtp_rcpt_set(&res->rcpts[i], smtp_outcome_of(r.code), r.code, r.text);
		}
	}
	if (naccepted == 0)
		return 0;
	if (opt->progress != NULL)
		opt->progress(opt->progress_arg, SMTP_CLIENT_AT_RCPTS_DONE, res);

	rc = smtp_conn_command(c, "DATA");
	if (rc == 0)
		rc = smtp_conn_read_reply(c, c->step_ms, &r, NULL);
	if (rc < 0)
		return smtp_broke(res, c, rc, "DATA");
	if (r.code != 354) {
		enum smtp_client_outcome o = smtp_outcome_of(r.code);
		smtp_rcpts_settle(res, o == SMTP_CLIENT_DELIVERED ? SMTP_CLIENT_DEFERRED : o,
				  r.code, r.text);
		return 0;
	}

	/* Each chunk of the message is one write step; the session cap bounds the sum. */
	struct smtp_encoder enc = {.bol = true};
	if (msg->header)
		rc = smtp_encode(&enc, c, (const unsigned char *)msg->header, strlen(msg->header));
	if (rc == 0)
		rc = smtp_encode(&enc, c, msg->body, msg->body_len);
	if (rc == 0)
		rc = smtp_encode_end(&enc, c);
	if (rc == 0)
		rc = smtp_conn_flush(c);
	if (rc < 0)
		return smtp_broke(res, c, rc, "message transfer");
	res->data_sent = true;
	rc = smtp_conn_read_reply(c, final_ms, &r, NULL);
	if (rc < 0)
		return smtp_broke(res, c, rc, "end of data");
	smtp_rcpts_settle(res, smtp_outcome_of(r.code), r.code, r.text);
	if (opt->progress != NULL)
		opt->progress(opt->progress_arg, SMTP_CLIENT_AT_DATA_REPLY, res);
	return 0;
}

/* Checks msg and gives res one entry per recipient: 0, or -EINVAL (res settled). */
static int smtp_result_init(const struct smtp_client_message *msg, struct smtp_client_result *res)
{
	memset(res, 0, sizeof(*res));
	if (msg == NULL || msg->nrcpts == 0) {
		res->error = xstrdup("no recipients");
		return -EINVAL;
	}
	res->nrcpts = msg->nrcpts;
	res->rcpts = xcalloc(msg->nrcpts, sizeof(*res->rcpts));
	bool args_ok =
	    smtp_address_ok(msg->sender, true) && (msg->body != NULL || msg->body_len == 0);
	for (size_t i = 0; i < msg->nrcpts && args_ok; i++)
		args_ok = smtp_address_ok(msg->rcpts[i], false);
	if (!args_ok) {
		res->error = xstrdup("invalid envelope address");
		smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, 0, res->error);
		return -EINVAL;
	}
	return 0;
}

static void smtp_conn_close(struct smtp_conn *c)
{
	if (c->ssl != NULL) {
		/* One close_notify without waiting for the peer's: the session is over. */
		(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->wbuf);
	c->wbuf = NULL;
}

int smtp_client_send(const char *hostport, const struct smtp_client_options *opt,
		     const struct smtp_client_message *msg, struct smtp_client_result *res)
{
	struct smtp_conn c = {.fd = -1};
	if (opt == NULL) {
		memset(res, 0, sizeof(*res));
		res->error = xstrdup("no recipients");
		return -EINVAL;
	}
	int rc = smtp_result_init(msg, res);
	if (rc < 0)
		return rc;
	if (opt->session_timeout_ms > 0)
		c.session_deadline = clock_mono_ms() + opt->session_timeout_ms;
	rc = smtp_open(&c, hostport, opt, res);
	if (rc == 0)
		rc = smtp_transact(&c, opt, msg, res);
	if (rc >= 0) {
		smtp_quit(&c);
		rc = 0;
	} else {
		smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, 0,
				  res->error ? res->error : strerror(-rc));
	}
	smtp_conn_close(&c);
	return rc;
}

/* ---- a session for many transactions ---- */

struct smtp_client_session {
	struct smtp_conn c;
	struct smtp_client_options opt;
	struct smtp_client_result ehlo; /* what the server offered */
	unsigned transactions;
};

int smtp_client_session_open(const char *hostport, const struct smtp_client_options *opt,
			     struct smtp_client_session **out, int *code, char **why)
{
	*out = NULL;
	*code = 0;
	*why = NULL;
	struct smtp_client_session *s = xcalloc(1, sizeof(*s));
	s->c.fd = -1;
	s->opt = *opt;
	s->opt.progress = NULL;
	if (opt->session_timeout_ms > 0)
		s->c.session_deadline = clock_mono_ms() + opt->session_timeout_ms;
	int rc = smtp_open(&s->c, hostport, &s->opt, &s->ehlo);
	if (rc == 0) {
		s->c.session_deadline = 0;
		*out = s;
		return 0;
	}
	if (rc == 1) {
		*code = s->ehlo.session_code;
		*why = xstrdup(s->ehlo.session_reply != NULL ? s->ehlo.session_reply : "refused");
		smtp_quit(&s->c);
		rc = -ECONNREFUSED;
	} else {
		*why = xstrdup(s->ehlo.error != NULL ? s->ehlo.error : strerror(-rc));
	}
	smtp_conn_close(&s->c);
	smtp_client_result_free(&s->ehlo);
	free(s);
	return rc;
}

int smtp_client_session_send(struct smtp_client_session *s, const struct smtp_client_message *msg,
			     struct smtp_client_result *res)
{
	int rc = smtp_result_init(msg, res);
	if (rc < 0)
		return rc;
	res->connected = true;
	res->peer = xstrdup(s->c.peer);
	res->esmtp = s->ehlo.esmtp;
	res->ext_8bitmime = s->ehlo.ext_8bitmime;
	res->ext_smtputf8 = s->ehlo.ext_smtputf8;
	res->ext_pipelining = s->ehlo.ext_pipelining;
	res->ext_size = s->ehlo.ext_size;
	res->ext_starttls = s->ehlo.ext_starttls;
	res->tls = s->ehlo.tls;
	s->c.session_deadline =
	    s->opt.session_timeout_ms > 0 ? clock_mono_ms() + s->opt.session_timeout_ms : 0;
	if (s->transactions++ > 0) {
		/* whatever the last transaction left behind is forgotten */
		struct smtp_reply r;
		rc = smtp_conn_command(&s->c, "RSET");
		if (rc == 0)
			rc = smtp_conn_read_reply(&s->c, s->c.step_ms, &r, NULL);
		if (rc == 0 && r.code / 100 != 2)
			rc = -EPROTO;
		if (rc < 0) {
			smtp_broke(res, &s->c, rc, "RSET");
			goto fail;
		}
	}
	rc = smtp_transact(&s->c, &s->opt, msg, res);
	if (rc == 0)
		return 0;
fail:
	smtp_rcpts_settle(res, SMTP_CLIENT_DEFERRED, 0, res->error ? res->error : strerror(-rc));
	return rc;
}

void smtp_client_session_close(struct smtp_client_session *s)
{
	if (s == NULL)
		return;
	if (s->c.fd >= 0) {
		s->c.session_deadline = 0;
		smtp_quit(&s->c);
	}
	smtp_conn_close(&s->c);
	smtp_client_result_free(&s->ehlo);
	free(s);
}
