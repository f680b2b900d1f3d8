/*
 * store_short — an FTS5 tokenizer for substring search of 1 and 2 characters,
 * which the trigram index cannot answer (Japanese words are often two kanji:
 * 請求, 重要). Not for longer terms: those go to the trigram index.
 *
 * A document yields every character and every pair of neighbouring characters,
 * ASCII letters lower-cased: "Ab請" -> "a", "ab", "b", "b請", "請". A query of one
 * or two characters is one token, folded the same way, so a term matches exactly
 * the subjects that contain it, ignoring ASCII case (what LIKE did before this
 * index). The index is made with detail=none: a single-token query needs no
 * positions, and without them the index stays small. FTS5 rather than a plain
 * (gram, seq) table: its delta-coded doclists took 32 bytes a message in
 * bench/search (100k messages), the table about 400; and FTS5 walks one term's
 * rows newest first, lazily, as the listing needs.
 *
 * Characters are UTF-8 sequences as counted by their lead byte; a malformed
 * sequence counts as single bytes, the same way when indexing and querying.
 */
#include "store/store_short.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Bytes of the UTF-8 character starting at p (at most n), 1 for a malformed one. */
static int store_short_charlen(const unsigned char *p, int n)
{
	int len = 1;
	if (p[0] >= 0xf0 && p[0] < 0xf8)
		len = 4;
	else if (p[0] >= 0xe0)
		len = 3;
	else if (p[0] >= 0xc0)
		len = 2;
	if (len > n)
		return 1;
	for (int i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 1;
	}
	return len;
}

size_t store_short_chars(const char *s)
{
	size_t chars = 0;
	int n = (int)strnlen(s, 1 << 20);
	for (int i = 0; i < n; i += store_short_charlen((const unsigned char *)s + i, n - i))
		chars++;
	return chars;
}

/* Copies n bytes of p into out with ASCII letters lower-cased. */
static void store_short_fold(char *out, const char *p, int n)
{
	for (int i = 0; i < n; i++) {
		char c = p[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
}

static int store_short_create(void *ctx, const char **argv, int argc, Fts5Tokenizer **out)
{
	(void)ctx;
	(void)argv;
	if (argc != 0)
		return SQLITE_ERROR;
	/* stateless: any non-NULL handle will do */
	static int handle;
	*out = (Fts5Tokenizer *)&handle;
	return SQLITE_OK;
}

static void store_short_delete(Fts5Tokenizer *t)
{
	(void)t;
}

typedef int (*store_short_token_fn)(void *ctx, int flags, const char *token, int n, int start,
				    int end);

static int store_short_tokenize(Fts5Tokenizer *t, void *ctx, int flags, const char *text, int n,
				store_short_token_fn emit)
{
	(void)t;
	const unsigned char *p = (const unsigned char *)text;
	/* two characters of at most 4 bytes each */
	char tok[8];
	int rc = SQLITE_OK;
	int query = (flags & FTS5_TOKENIZE_QUERY) != 0;
	int i = 0;
	while (i < n && rc == SQLITE_OK) {
		int a = store_short_charlen(p + i, n - i);
		int b = i + a < n ? store_short_charlen(p + i + a, n - i - a) : 0;
		if (query && i + a + b == n) {
			/* the whole query (1 or 2 characters) is one token */
			store_short_fold(tok, text + i, a + b);
			return emit(ctx, 0, tok, a + b, i, n);
		}
		if (!query) {
			store_short_fold(tok, text + i, a);
			rc = emit(ctx, 0, tok, a, i, i + a);
		}
		if (b > 0 && rc == SQLITE_OK) {
			store_short_fold(tok, text + i, a + b);
			rc = emit(ctx, 0, tok, a + b, i, i + a + b);
		}
		i += a;
	}
	return rc;
}

static fts5_api *store_short_api(sqlite3 *db)
{
	fts5_api *api = NULL;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &s, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_pointer(s, 1, (void *)&api, "fts5_api_ptr", NULL);
	sqlite3_step(s);
	sqlite3_finalize(s);
	return api;
}

int store_short_register(sqlite3 *db)
{
	fts5_api *api = store_short_api(db);
	if (api == NULL || api->iVersion < 2)
		return -EIO;
	static fts5_tokenizer tokenizer = {
	    .xCreate = store_short_create,
	    .xDelete = store_short_delete,
	    .xTokenize = store_short_tokenize,
	};
	if (api->xCreateTokenizer(api, STORE_SHORT_TOKENIZER, NULL, &tokenizer, NULL) != SQLITE_OK)
		return -EIO;
	return 0;
}
