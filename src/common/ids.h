/*
 * ids — message ids: UUIDv7 text (RFC 9562). The first 48 bits are the Unix time
 * in milliseconds, so ids sort by arrival; 74 random bits make them unguessable
 * enough to appear in URLs. Not for: secrets (tokens are signed elsewhere).
 */
#ifndef LAZARET_IDS_H
#define LAZARET_IDS_H

#include <stdbool.h>
#include <stdint.h>

#define IDS_UUID_LEN 36

/*
 * Writes a new UUIDv7 for time now_ms into out (36 characters + NUL). Ids this
 * process makes for the same millisecond sort in the order they were made.
 */
void ids_uuidv7(int64_t now_ms, char out[IDS_UUID_LEN + 1]);
/* True when s is a canonical lower-case UUID text (what ids_uuidv7 writes). */
bool ids_valid(const char *s);
/* The millisecond time stored in a UUIDv7. */
int64_t ids_uuidv7_time_ms(const char *id);
/* A short random session id for logs: 12 hex characters + NUL. */
void ids_session(char out[13]);

#endif
