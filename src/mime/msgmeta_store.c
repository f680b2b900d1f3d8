/*
 * msgmeta_store — see msgmeta_store.h. Plain copies: no parsing, no I/O.
 */
#include "mime/msgmeta_store.h"

#include "common/xalloc.h"
#include "mime/msgmeta.h"
#include "store/store.h"

void msgmeta_store_copy(struct msgmeta *meta, struct store_new_message *nm)
{
	if (meta == NULL)
		return;
	msgmeta_measure(meta);
	nm->from = xstrdup_or_null(meta->from);
	nm->from_addr = xstrdup_or_null(meta->from_addr);
	nm->to = xstrdup_or_null(meta->to);
	nm->subject = xstrdup_or_null(meta->subject);
	nm->message_id = xstrdup_or_null(meta->message_id);
	nm->date_ms = meta->date_ms;
	if (meta->nattachments == 0)
		return;
	nm->attachments = xcalloc(meta->nattachments, sizeof(*nm->attachments));
	nm->nattachments = meta->nattachments;
	for (size_t i = 0; i < meta->nattachments; i++) {
		nm->attachments[i].filename = xstrdup_or_null(meta->attachments[i].filename);
		nm->attachments[i].content_type =
		    xstrdup_or_null(meta->attachments[i].content_type);
		nm->attachments[i].size = meta->attachments[i].size;
	}
}
