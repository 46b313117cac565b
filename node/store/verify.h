/*
 * verify.h: offline verification of every log in a store.
 *
 * For each origin: records 1..head are present with no gap, each decodes,
 * names its origin and seq, links to the hash of the one before (zeros at
 * seq 1), carries a valid Ed25519 signature by the origin's signing key
 * of the time (rotations are followed), and the origin's stored head
 * matches. Stops at the first bad record and names it.
 */
#ifndef APPEAL_VERIFY_H
#define APPEAL_VERIFY_H

#include <stdint.h>

#include "err.h"
#include "store.h"

struct verify_report {
    uint64_t origins;
    uint64_t records;
    uint64_t signatures;
};

/* 0 if everything holds; otherwise APL_ECHAIN/ESIG/EGAP/ECORRUPT with `e`
 * naming the origin, key id and seq of the first bad record. */
int verify_store(struct store *s, struct verify_report *r, struct errbuf *e);

#endif
