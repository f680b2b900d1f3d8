/*
 * antivirus — clamd's INSTREAM protocol. Blocks (worker threads only), bounded by
 * its timeout. Not for: keeping signatures (clamd does).
 */
#ifndef LAZARET_ANTIVIRUS_H
#define LAZARET_ANTIVIRUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Sends the message to clamd at addr ("host:port" or a unix socket path).
 * 0 with *infected and, when infected, *virus (caller frees, e.g. "Eicar-Signature");
 * -errno when clamd could not be asked or answered an error (the caller must not
 * treat that as clean).
 */
int antivirus_clamd_scan(const char *addr, int64_t timeout_ms, const unsigned char *data,
			 size_t len, bool *infected, char **virus);

/*
 * Parses clamd's answer to INSTREAM (a NUL-terminated line, changed in place: line
 * end trimmed, bytes that are not printable ASCII become '?'). 0 with *infected and,
 * when infected, *virus (new, caller frees); -EFBIG when clamd refused the size;
 * -EPROTO for an ERROR or an answer that is not clamd's. I/O-free, for tests.
 */
int antivirus_clamd_parse_reply(char *reply, bool *infected, char **virus);

#endif
