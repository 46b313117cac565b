/*
 * receipt.h: the receipt an applicant takes home, checked by anyone.
 *
 * A receipt is the signed record of the filing (an AppealFiled envelope,
 * docs/record-format.md), as `appealctl file` and Open311's POST requests
 * hand it out (hex). Checking it needs no node: the record's structure
 * (rec_decode), that it is a filing, that its origin is a node of the
 * federation (the cluster file), and the origin's Ed25519 signature over
 * the body. What it then says (number, type, receiving body, registration
 * time, legal deadline, category) is the node's signed word; the
 * applicant's data inside it stays sealed.
 *
 * Limits: RECEIPT_HEX_BYTES_MAX of hex (one record, RECORD_BYTES_MAX).
 * A record signed after its node rotated its key verifies only with the
 * successor key (`also_pk`, e.g. a node's current key for its own log):
 * offline, with the cluster file alone, such a receipt is refused with a
 * sentence saying so.
 */
#ifndef APPEAL_RECEIPT_H
#define APPEAL_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "err.h"
#include "keys.h"
#include "store.h"

struct cluster;

enum {
    RECEIPT_HEX_BYTES_MAX = 2 * RECORD_BYTES_MAX,
    RECEIPT_CATEGORY_BYTES = 32,
};

/* What a valid receipt says. */
struct receipt_info {
    char number[NUMBER_BYTES_MAX + 1];
    int type;              /* Appeal__AppealType */
    char jurisdiction[16]; /* the receiving body */
    char category[RECEIPT_CATEGORY_BYTES];
    int64_t registered_ms;
    int32_t deadline_day; /* last day of the legal term */
    int64_t time_ms;      /* the record's time */
    uint64_t seq;         /* its place in the origin's log */
    bool anonymous, urgent;
    uint8_t origin[KEY_PK_BYTES];
    uint8_t actor[KEY_PK_BYTES]; /* the official, or a channel's key hash */
};

/* Decodes hex (blanks and newlines around it allowed) into a malloc'd
 * buffer; APL_EINVAL with a sentence when it is not hex, APL_ETOOBIG past
 * RECEIPT_HEX_BYTES_MAX. */
int receipt_unhex(const char *text, size_t len, uint8_t **out, size_t *out_len, struct errbuf *e);

/* Checks receipt `env`: structure, an AppealFiled, an origin listed in
 * `c` (or equal to `self_pk` when not NULL: a node checking its own), the
 * signature by the origin's key or by `also_pk` (NULL: none). 0 and `out`
 * filled, or APL_EINVAL (not a receipt), APL_EAUTH (bad signature, or an
 * origin the federation does not list) with a sentence in `e`. */
int receipt_check(const uint8_t *env, size_t len, const struct cluster *c, const uint8_t *self_pk,
                  const char *self_juris, const uint8_t *also_pk, struct receipt_info *out,
                  struct errbuf *e);

#endif
