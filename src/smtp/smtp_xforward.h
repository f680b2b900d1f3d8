/*
 * smtp_xforward — Postfix's XFORWARD extension on the server side: the MTA in
 * front of a content filter (smtp_send_xforward_command) passes on the client it
 * saw itself — address, name, HELO, protocol — before MAIL.
 *
 * This module parses and validates an XFORWARD command's attributes, applies
 * them to the pending transaction's envelope, resets them, and keeps the
 * once-per-session answer to "may this client use XFORWARD at all". The SMTP
 * conversation (when the command is allowed, which reply it gets) stays in
 * smtp_proto; like it, this module is I/O-free.
 *
 *	struct smtp_xforward_attrs a;
 *	int r = smtp_xforward_parse("ADDR=192.0.2.7 HELO=mx.example", &a);
 *	if (r == 0)
 *		smtp_xforward_apply(&env, &a);	// a is empty again
 *	// r == -EINVAL: a bad attribute; -ENODATA: no attribute at all
 */
#ifndef LAZARET_SMTP_XFORWARD_H
#define LAZARET_SMTP_XFORWARD_H

#include <stdbool.h>

#include "smtp/smtp_proto.h"

/* The attributes we take, in the order the EHLO keyword lists them. */
#define SMTP_XFORWARD_KEYWORD "XFORWARD NAME ADDR PROTO HELO SOURCE"

/* Which attributes a command named (bits of smtp_xforward_attrs.given). */
enum {
	SMTP_XFORWARD_NAME = 1u << 0,
	SMTP_XFORWARD_ADDR = 1u << 1,
	SMTP_XFORWARD_PROTO = 1u << 2,
	SMTP_XFORWARD_HELO = 1u << 3,
	SMTP_XFORWARD_SOURCE = 1u << 4, /* validated, not kept */
};

/*
 * The attributes of one XFORWARD command. A named attribute whose value was
 * [UNAVAILABLE] or [TEMPUNAVAIL] (or an empty HELO) has its bit in given and a
 * NULL value: applying it clears what an earlier command set. Values are in the
 * form smtp_envelope documents (canonical numeric address, upper-case PROTO).
 */
struct smtp_xforward_attrs {
	unsigned given;
	char *addr;
	char *name;
	char *helo;
	char *proto;
};

/*
 * Parses the argument of an XFORWARD command ("attr=xtext-value ..." separated
 * by spaces or tabs; attribute names are case-insensitive; a repeated attribute
 * takes the last value). Returns 0 and fills *out (free it with
 * smtp_xforward_attrs_free() or hand it to smtp_xforward_apply()); -ENODATA for
 * an empty argument; -EINVAL for any bad attribute (unknown name, no '=', broken
 * xtext, a control character, an address that is not numeric, a NAME or PROTO
 * with characters other than letters, digits and ".-_:" resp. none, a SOURCE
 * other than LOCAL/REMOTE). On failure *out is empty: nothing to free.
 */
int smtp_xforward_parse(const char *arg, struct smtp_xforward_attrs *out);

/* Frees the values and leaves a empty. */
void smtp_xforward_attrs_free(struct smtp_xforward_attrs *a);

/*
 * Moves the attributes a names into env's xforward_* fields (replacing, or
 * clearing for a NULL value) and keeps the ones it does not name. a is empty
 * afterwards.
 */
void smtp_xforward_apply(struct smtp_envelope *env, struct smtp_xforward_attrs *a);

/* Frees env's xforward_* fields: the transaction they belonged to is over. */
void smtp_xforward_reset(struct smtp_envelope *env);

/* Whether the client may use XFORWARD: asked of the caller's hook once per session. */
enum smtp_xforward_permit {
	SMTP_XFORWARD_NOT_ASKED = 0,
	SMTP_XFORWARD_DENIED,
	SMTP_XFORWARD_PERMITTED,
};

/*
 * The session's answer, asking allowed(ctx) the first time (from NOT_ASKED) and
 * remembering it in *permit. A NULL hook denies.
 */
bool smtp_xforward_permitted(enum smtp_xforward_permit *permit, bool (*allowed)(void *ctx),
			     void *ctx);

#endif
