/*
 * pvo_out — what the gateway writes on a message it hands to the manager's PVO
 * listener ([centralized_pvo]) and what it reads on mail the manager releases
 * back: the X-Lazaret-Quarantine and X-Lazaret-Origin-Id header lines in the
 * grammar quarantine/pvo_header.c parses, and the rescan flag of
 * X-Lazaret-Released. Pure functions over bytes: no I/O.
 */
#ifndef LAZARET_PVO_OUT_H
#define LAZARET_PVO_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hex SHA-256 and its NUL. */
#define PVO_OUT_ORIGIN_LEN 65

/*
 * Whether name can be sent as a central quarantine's name (pvo_header_name_ok:
 * 1..64 bytes of UTF-8 text, no ';', '"', '\\', '=', no blank at either end).
 */
bool pvo_out_name_ok(const char *name);

/*
 * One "X-Lazaret-Quarantine: NAME; reason="..."; entered=RFC3339\r\n" line
 * (folded before each parameter). The reason is made safe: invalid UTF-8 and
 * control characters become '?', '"' and '\\' are escaped, and it is cut at a
 * character boundary to PVO_HEADER_REASON_MAX bytes. expires_ms 0: no expires
 * parameter (the manager applies the quarantine's own delete_after). name must
 * pass pvo_out_name_ok. Caller frees.
 */
char *pvo_out_quarantine_header(const char *name, const char *reason, int64_t entered_ms,
				int64_t expires_ms);

/*
 * The origin id of one transfer: hex SHA-256 over the gateway's name, the
 * envelope, the quarantine names and the message as received. A client's retry
 * of the same message gives the same id, so the manager stores it once.
 */
void pvo_out_origin_id(const char *gateway, const char *sender, const char *const *rcpts,
		       size_t nrcpts, const char *const *quarantines, size_t nq,
		       const unsigned char *raw, size_t len, char out[PVO_OUT_ORIGIN_LEN]);

/*
 * Whether the first X-Lazaret-Released field of the header section (the latest
 * release: each release adds its field on top) has the parameter rescan=yes
 * (name and value case-insensitive; the value a token or a quoted string).
 * Fields are unfolded. Only the first counts: mail released with rescan=yes,
 * quarantined again and released without it is not rescanned a second time.
 */
bool pvo_out_released_rescan(const unsigned char *data, size_t len);

/* The longest message id a rescan's release names (the manager's are UUIDs). */
#define PVO_OUT_RESCAN_ID_MAX 64
/*
 * The parameter id= of that same first X-Lazaret-Released field (the manager's
 * message id of a release marked rescan=yes) into id: true when it has one of 1
 * to PVO_OUT_RESCAN_ID_MAX letters, digits and '-', else false and id "". Only
 * trusted from the manager's addresses, as rescan=yes is.
 */
bool pvo_out_released_rescan_id(const unsigned char *data, size_t len,
				char id[PVO_OUT_RESCAN_ID_MAX + 1]);

#endif
