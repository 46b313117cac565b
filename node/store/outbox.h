/*
 * outbox.h: notifications to the applicant, written in the transaction of
 * the record that causes them (docs/notifications.md).
 *
 * Every record this node signs about an appeal it owns, of a kind the
 * applicant is entitled to hear of (filed, forwarded, accepted, extended,
 * answered, closed, reopened), adds one row per contact the applicant gave
 * (e-mail addresses and phone numbers in Sealed.contacts) to `outbox`, and
 * its key to `outbox_due`, in the same LMDB write transaction: the record
 * and its notifications are durable together or not at all. Only the
 * owner can do it (it alone opens the contacts); after a forwarding the
 * receiver, on accepting, notifies from then on.
 *
 * The deliverer (node/service/notify.c) reads `outbox_due` in key order
 * and settles rows with outbox_settle() on the writer thread. Each row has
 * an idempotency key, "NUMBER.vVERSION.CHANNEL.INDEX", the same on every
 * attempt, so a gateway that saw an attempt whose result the node never
 * wrote (a crash between sending and settling) can drop the repeat.
 *
 * Costs: one open of the sealed data and at most OUTBOX_CONTACTS_MAX rows
 * per notifiable record; nothing for other records or when disabled.
 */
#ifndef APPEAL_OUTBOX_H
#define APPEAL_OUTBOX_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "keys.h"
#include "pbdecode.h"
#include "record.pb-c.h"
#include "store.h"
#include "store.pb-c.h"

enum {
    OUTBOX_CONTACTS_MAX = 4,        /* contacts notified per appeal */
    OUTBOX_ADDRESS_BYTES_MAX = 254, /* an e-mail address (RFC 5321 path) */
    OUTBOX_PHONE_DIGITS_MIN = 7,
    OUTBOX_PHONE_DIGITS_MAX = 15, /* E.164 */
    OUTBOX_KEY_BYTES_MAX = NUMBER_BYTES_MAX + 1 + 8,
    OUTBOX_ERROR_BYTES_MAX = 200, /* last_error kept */
    OUTBOX_LIST_MAX = 1000,       /* rows one listing returns */
};

/* Inside write transaction `t`, just after `b` (a record of this node)
 * was applied: adds the notifications it causes. 0 when it causes none. */
int outbox_note(struct store *s, MDB_txn *t, const struct node_keys *k, const char *juris,
                const Appeal__Body *b, int64_t now_ms);

/* Writer thread: stores `row` (its state, attempts, next_ms, error) back
 * under its key; a row that is sent or failed leaves `outbox_due` and
 * forgets its address. */
int outbox_settle(struct store *s, MDB_txn *t, const Appeal__OutboxRow *row);

/* The key of a row in `outbox`: number \0 id (8, BE). Returns its length. */
size_t outbox_key(const char *number, uint64_t id, uint8_t out[OUTBOX_KEY_BYTES_MAX]);

/* Splits `contacts` (items separated by commas, semicolons or lines)
 * into e-mail addresses and phone numbers: up to
 * OUTBOX_CONTACTS_MAX, in order, duplicates and anything else skipped.
 * `channel[i]` is "email" or "sms"; `addr[i]` holds the address (a phone
 * as + and digits). */
size_t outbox_contacts(const char *contacts, const char *channel[OUTBOX_CONTACTS_MAX],
                       char addr[OUTBOX_CONTACTS_MAX][OUTBOX_ADDRESS_BYTES_MAX + 1]);

/* Reading `t`: the notifications of appeal `number` (NULL: of every
 * appeal; `failed_only`: only those given up), oldest first, at most
 * OUTBOX_LIST_MAX (`*more` set when there were more), unpacked into `a`.
 * Addresses and reasons are cleared in the copies: a listing is for the
 * delivery state, not the applicant's contacts. */
int outbox_list(struct store *s, MDB_txn *t, const char *number, bool failed_only, struct arena *a,
                Appeal__OutboxRow ***rows, size_t *n, bool *more);

#endif
