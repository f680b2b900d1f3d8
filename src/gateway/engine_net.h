/*
 * engine_net — the blocking socket plumbing the scanning engines' clients share
 * (spamd, rspamd, clamd): connect to "host:port" or a unix socket path, write all,
 * read a bounded reply, every step bounded by one absolute deadline.
 * Not for: protocol logic (each engine's file), the event loop, TLS.
 */
#ifndef LAZARET_ENGINE_NET_H
#define LAZARET_ENGINE_NET_H

#include <stddef.h>
#include <stdint.h>

/* Used when a caller gives no timeout (0 or negative). */
#define ENGINE_NET_DEFAULT_TIMEOUT_MS 30000
/* Longest unix socket path or "host:port" we accept. */
#define ENGINE_NET_ADDR_MAX 256

/* A monotonic deadline (clock_mono_ms) timeout_ms from now; the default when <= 0. */
int64_t engine_net_deadline(int64_t timeout_ms);

/*
 * Connects to addr: a path starting with '/' is a unix stream socket, anything else
 * is "host:port" ("[v6]:port" for IPv6 literals; host names are resolved). On 0,
 * *fd is a connected non-blocking socket the caller closes. -EINVAL for a malformed
 * address, -ETIMEDOUT past the deadline, else the connect errno.
 */
int engine_net_connect(const char *addr, int64_t deadline, int *fd);

/* Writes all len bytes. 0, -ETIMEDOUT, or the send errno (-EPIPE when the peer left). */
int engine_net_write_all(int fd, const void *buf, size_t len, int64_t deadline);

/*
 * Reads what the peer sends until it closes the connection, or, when stop_at_nul,
 * until a NUL byte arrives (kept out of the result). At most max bytes: more is
 * -EMSGSIZE. On 0, *out is a new NUL-terminated buffer (caller frees) of *outlen
 * bytes. -ETIMEDOUT past the deadline, or the recv errno.
 */
int engine_net_read_reply(int fd, size_t max, int stop_at_nul, int64_t deadline, char **out,
			  size_t *outlen);

#endif
