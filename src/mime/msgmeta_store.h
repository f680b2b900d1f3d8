/*
 * msgmeta_store — what the store keeps of a parsed message: the decoded header
 * fields and the attachment list of a msgmeta, copied into a store_new_message.
 * The manager's ingest and the gateway's local quarantine both store messages
 * this way, so a message looks the same in the store whichever daemon took it.
 *
 * Not for: the envelope, the verdict, the score or the gateway fields: each
 * caller knows those from its own side (the X-Lazaret-* headers, its own scan).
 */
#ifndef LAZARET_MSGMETA_STORE_H
#define LAZARET_MSGMETA_STORE_H

struct msgmeta;
struct store_new_message;

/*
 * Copies From (display and bare address), To, Subject, Message-ID, Date and the
 * attachments (file name, content type, size: measured first when
 * msgmeta_parse_kept left them) of meta into nm, whose fields for them must be
 * unset (NULL/0); nm owns the copies. A field meta lacks stays NULL. NULL meta
 * copies nothing.
 */
void msgmeta_store_copy(struct msgmeta *meta, struct store_new_message *nm);

#endif
