/*
 * engine_net — blocking, deadline-bounded socket steps for the engine clients
 * (see engine_net.h).
 *
 * What it is for: one request/reply exchange with a local scanning daemon on a
 * worker thread. Every wait is a poll(2) against the caller's absolute deadline, so
 * a daemon that stalls costs at most the configured timeout. What it is not for:
 * the event loop, keeping connections open, TLS. Name resolution (getaddrinfo) is
 * the one step the deadline does not bound; engine addresses are normally literals.
 */
#include "gateway/engine_net.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/xalloc.h"

/* Bytes read per recv(2); replies are small. */
#define ENGINE_NET_READ_CHUNK 4096

int64_t engine_net_deadline(int64_t timeout_ms)
{
	if (timeout_ms <= 0)
		timeout_ms = ENGINE_NET_DEFAULT_TIMEOUT_MS;
	return clock_mono_ms() + timeout_ms;
}

/* Waits until fd is ready for events. 0, -ETIMEDOUT, or -errno. */
static int engine_net_wait(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 0; /* ready, or an error the next call reports */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* Finishes a non-blocking connect. 0 or -errno. */
static int engine_net_connect_fd(int fd, const struct sockaddr *sa, socklen_t salen,
				 int64_t deadline)
{
	if (connect(fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN)
		return -errno;
	int rc = engine_net_wait(fd, POLLOUT, deadline);
	if (rc < 0)
		return rc;
	int err = 0;
	socklen_t elen = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		return -errno;
	return -err;
}

static int engine_net_connect_unix(const char *path, int64_t deadline, int *out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path))
		return -EINVAL;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = engine_net_connect_fd(fd, (const struct sockaddr *)&sun, sizeof(sun), deadline);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

/* Splits "host:port" or "[v6]:port". 0 or -EINVAL. */
static int engine_net_split(const char *addr, char *host, size_t hostsize, char *port,
			    size_t portsize)
{
	const char *colon, *h = addr;
	size_t hlen;
	if (addr[0] == '[') {
		const char *close_br = strchr(addr, ']');
		if (close_br == NULL || close_br[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hlen = (size_t)(close_br - h);
		colon = close_br + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL)
			return -EINVAL;
		hlen = (size_t)(colon - addr);
	}
	const char *p = colon + 1;
	size_t plen = strlen(p);
	if (hlen == 0 || hlen >= hostsize || plen == 0 || plen >= portsize ||
	    strspn(p, "0123456789") != plen)
		return -EINVAL;
	long pn = strtol(p, NULL, 10);
	if (pn < 1 || pn > 65535)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen + 1);
	return 0;
}

int engine_net_connect(const char *addr, int64_t deadline, int *out)
{
	char host[ENGINE_NET_ADDR_MAX], port[8];
	struct addrinfo *ais = NULL;
	int rc;

	*out = -1;
	if (addr == NULL || addr[0] == '\0' || strlen(addr) >= ENGINE_NET_ADDR_MAX)
		return -EINVAL;
	if (addr[0] == '/')
		return engine_net_connect_unix(addr, deadline, out);
	rc = engine_net_split(addr, host, sizeof(host), port, sizeof(port));
	if (rc < 0)
		return rc;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	int gai = getaddrinfo(host, port, &hints, &ais);
	if (gai != 0) {
		rc = gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
		if (rc == 0)
			rc = -EHOSTUNREACH;
		goto fail;
	}
	rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = ais; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		rc = engine_net_connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline);
		if (rc == 0) {
			*out = fd;
			break;
		}
		close(fd);
		if (rc == -ETIMEDOUT)
			break;
	}
fail:
	if (ais != NULL)
		freeaddrinfo(ais);
	return rc;
}

int engine_net_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	const unsigned char *p = buf;
	while (len > 0) {
		/* MSG_NOSIGNAL: a daemon that hangs up answers EPIPE, not SIGPIPE. */
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = engine_net_wait(fd, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		return n < 0 ? -errno : -EPIPE;
	}
	return 0;
}

int engine_net_read_reply(int fd, size_t max, int stop_at_nul, int64_t deadline, char **out,
			  size_t *outlen)
{
	size_t cap = ENGINE_NET_READ_CHUNK, len = 0;
	char *buf = xmalloc(cap + 1);
	int rc;

	*out = NULL;
	*outlen = 0;
	for (;;) {
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				rc = engine_net_wait(fd, POLLIN, deadline);
				if (rc < 0)
					goto fail;
				continue;
			}
			rc = -errno;
			goto fail;
		}
		if (stop_at_nul) {
			char *nul = memchr(buf + len, '\0', (size_t)n);
			if (nul != NULL) {
				len = (size_t)(nul - buf);
				break;
			}
		}
		len += (size_t)n;
		if (len > max) {
			rc = -EMSGSIZE;
			goto fail;
		}
	}
	if (len > max) {
		rc = -EMSGSIZE;
		goto fail;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	return rc;
}
