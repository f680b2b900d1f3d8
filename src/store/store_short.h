/*
 * store_short — the FTS5 tokenizer behind the index of 1-2 character subject
 * terms (store_sqlite.c's subject_short). Only the SQLite backend uses it.
 */
#ifndef LAZARET_STORE_SHORT_H
#define LAZARET_STORE_SHORT_H

#include <sqlite3.h>
#include <stddef.h>

/* The tokenizer's name in tokenize='...'. */
#define STORE_SHORT_TOKENIZER "lazaret_short"

/*
 * Registers the tokenizer on db. Every connection that reads or writes the index
 * (or fires the triggers that keep it) needs it. 0, or -EIO when db has no FTS5.
 */
int store_short_register(sqlite3 *db);

/*
 * How many characters the tokenizer sees in s (a malformed UTF-8 sequence
 * counts byte by byte): the index answers terms of 1 or 2 of them.
 */
size_t store_short_chars(const char *s);

#endif
