/*
 * test_util — small helpers several test programs share. Include after
 * <cmocka.h>; test_list_all() needs "store/store.h" included before this file.
 */
#ifndef LAZARET_TEST_UTIL_H
#define LAZARET_TEST_UTIL_H

#include <stddef.h>
#include <string.h>

/* How many times needle occurs in text (overlapping occurrences counted). */
static inline size_t test_count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

#ifdef LAZARET_STORE_H
/*
 * Every message of st matching f, paged by page with the keyset cursor, as ids
 * into out (at most max); returns how many. Fails the test when a page that has
 * a next one is not full, when a page asked with a cursor is empty, or when the
 * ids are not strictly descending (a duplicate or a step back across pages).
 */
static inline size_t test_list_all(struct store *st, const struct store_filter *f, size_t page,
				   char (*out)[37], size_t max)
{
	char *cursor = NULL;
	size_t seen = 0;
	for (;;) {
		struct store_message **v = NULL;
		size_t n = 0;
		char *next = NULL;
		assert_int_equal(store_list(st, f, page, cursor, &v, &n, &next), 0);
		if (cursor != NULL)
			assert_true(n > 0);
		for (size_t i = 0; i < n; i++) {
			assert_true(seen < max);
			if (seen > 0)
				assert_true(strcmp(v[i]->id, out[seen - 1]) < 0);
			memcpy(out[seen++], v[i]->id, 37);
		}
		store_message_array_free(v, n);
		free(cursor);
		cursor = next;
		if (cursor == NULL)
			break;
		assert_int_equal(n, page);
	}
	return seen;
}
#endif

#endif
