/*
 * Tests for msgmeta_store: what a parsed message leaves in the store's new-message
 * record, from real messages through msgmeta_parse (headers present, absent,
 * RFC 2047 encoded, attachments with and without a name) and for no metadata.
 * The records are freed with store_new_message_free, so the sanitizer build also
 * checks that the record owns every copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "mime/msgmeta.h"
#include "mime/msgmeta_store.h"
#include "store/store.h"

struct copy_case {
	const char *name;
	const char *message;
	const char *from, *from_addr, *to, *subject, *message_id; /* NULL: must stay NULL */
	bool has_date;
	size_t nattachments;
	const char *att_filename[2]; /* NULL: the attachment has no name */
	const char *att_type[2];
	uint64_t att_size[2];
};

static const struct copy_case copy_cases[] = {
    {"every header",
     "From: Taro <taro@example.jp>\r\nTo: hanako@example.jp\r\nSubject: hello\r\n"
     "Message-ID: <m1@example.jp>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0900\r\n\r\nbody\r\n",
     "Taro <taro@example.jp>",
     "taro@example.jp",
     "hanako@example.jp",
     "hello",
     "m1@example.jp",
     true,
     0,
     {NULL, NULL},
     {NULL, NULL},
     {0, 0}},
    {"no headers",
     "\r\nbody only\r\n",
     NULL,
     NULL,
     NULL,
     NULL,
     NULL,
     false,
     0,
     {NULL, NULL},
     {NULL, NULL},
     {0, 0}},
    {"encoded subject",
     "Subject: =?UTF-8?B?44GT44KT44Gr44Gh44Gv?=\r\n\r\nx\r\n",
     NULL,
     NULL,
     NULL,
     "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf",
     NULL,
     false,
     0,
     {NULL, NULL},
     {NULL, NULL},
     {0, 0}},
    {"two attachments",
     "From: a@example.com\r\nMIME-Version: 1.0\r\n"
     "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
     "--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
     "--b\r\nContent-Type: application/pdf\r\n"
     "Content-Disposition: attachment; filename=\"a.pdf\"\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n"
     "--b\r\nContent-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment\r\n\r\nxyz\r\n"
     "--b--\r\n",
     "a@example.com",
     "a@example.com",
     NULL,
     NULL,
     NULL,
     false,
     2,
     {"a.pdf", NULL},
     {"application/pdf", "application/octet-stream"},
     {4, 3}},
};

static void assert_same(const char *what, const char *got, const char *want)
{
	if (want == NULL && got != NULL)
		fail_msg("%s: \"%s\", want NULL", what, got);
	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		fail_msg("%s: \"%s\", want \"%s\"", what, got != NULL ? got : "(null)", want);
}

static void test_copy_table(void **state)
{
	(void)state;
	msgmeta_init();
	for (size_t i = 0; i < sizeof(copy_cases) / sizeof(copy_cases[0]); i++) {
		const struct copy_case *c = &copy_cases[i];
		/* the gateway's kept parse: the copy measures the sizes it left */
		for (int kept = 0; kept < 2; kept++) {
			struct msgmeta *meta = NULL;
			assert_int_equal(
			    kept ? msgmeta_parse_kept(c->message, strlen(c->message), &meta)
				 : msgmeta_parse(c->message, strlen(c->message), &meta),
			    0);
			struct store_new_message *nm = xcalloc(1, sizeof(*nm));
			msgmeta_store_copy(meta, nm);
			assert_same(c->name, nm->from, c->from);
			assert_same(c->name, nm->from_addr, c->from_addr);
			assert_same(c->name, nm->to, c->to);
			assert_same(c->name, nm->subject, c->subject);
			assert_same(c->name, nm->message_id, c->message_id);
			assert_int_equal(nm->date_ms, meta->date_ms);
			assert_true(c->has_date ? nm->date_ms != 0 : nm->date_ms == 0);
			if (nm->nattachments != c->nattachments)
				fail_msg("%s: %zu attachments, want %zu", c->name, nm->nattachments,
					 c->nattachments);
			assert_true(c->nattachments == 0 ? nm->attachments == NULL
							 : nm->attachments != NULL);
			for (size_t k = 0; k < c->nattachments; k++) {
				assert_same(c->name, nm->attachments[k].filename,
					    c->att_filename[k]);
				assert_same(c->name, nm->attachments[k].content_type,
					    c->att_type[k]);
				assert_int_equal(nm->attachments[k].size, c->att_size[k]);
				/* Copies, not the parser's strings: they outlive msgmeta_free. */
				if (nm->attachments[k].filename != NULL)
					assert_ptr_not_equal(nm->attachments[k].filename,
							     meta->attachments[k].filename);
			}
			if (nm->subject != NULL)
				assert_ptr_not_equal(nm->subject, meta->subject);
			msgmeta_free(meta);
			store_new_message_free(nm);
		}
	}
}

/* No metadata (the parser had nothing): the record is left as it was. */
static void test_copy_null_meta(void **state)
{
	(void)state;
	struct store_new_message nm;
	memset(&nm, 0, sizeof(nm));
	nm.date_ms = 7;
	msgmeta_store_copy(NULL, &nm);
	assert_null(nm.from);
	assert_null(nm.subject);
	assert_null(nm.attachments);
	assert_int_equal(nm.nattachments, 0);
	assert_int_equal(nm.date_ms, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy_table),
	    cmocka_unit_test(test_copy_null_meta),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
