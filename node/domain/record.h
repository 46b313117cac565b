/*
 * record.h: building, decoding and checking records (docs/record-format.md).
 *
 * A record is the exact bytes of an Envelope{body, sig}; `body` is an
 * encoded Body, `sig` Ed25519(body) by the origin. rec_sign() makes one
 * (once, at ingest); rec_decode() checks one from untrusted bytes: sizes,
 * protobuf well-formedness, field lengths and formats, before anything
 * else looks at it. Signatures and hash links are checked separately
 * (rec_verify_sig, chain checks in the callers) because chain-verified
 * batches verify one signature per run.
 */
#ifndef APPEAL_RECORD_H
#define APPEAL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "err.h"
#include "keys.h"
#include "pbdecode.h"
#include "record.pb-c.h"

struct record {
    const uint8_t *bytes; /* the envelope, exactly as stored */
    size_t len;
    Appeal__Envelope *env; /* decoded into the caller's arena */
    Appeal__Body *body;
};

/* Packs `body`, signs it with `sk` and packs the envelope into a malloc'd
 * buffer. */
int rec_sign(const Appeal__Body *body, const uint8_t sk[KEY_SK_BYTES], uint8_t **out, size_t *len);
/* The same, the signature finished from a pair made ahead when `ahead` has
 * one (sigahead.h); NULL signs as rec_sign. */
struct sigahead;
int rec_sign_ahead(const Appeal__Body *body, const uint8_t sk[KEY_SK_BYTES], struct sigahead *ahead,
                   uint8_t **out, size_t *len);

/* Decodes and checks the structure of a record (not its signature). */
int rec_decode(const uint8_t *bytes, size_t len, struct arena *a, struct record *out,
               struct errbuf *e);

/* The chain fields of a record, read from its bytes without unpacking
 * (no allocation): what a receiver checks on every record of a batch
 * before it fully decodes and verifies the one signature that matters.
 * Fields repeated in the bytes resolve as protobuf does (the last wins). */
struct rec_peek {
    const uint8_t *body;
    size_t body_len;
    const uint8_t *origin; /* KEY_PK_BYTES */
    uint64_t seq;
    const uint8_t *prev;  /* HASH_BYTES */
    uint32_t event;       /* field number of the event: Body's oneof case */
    const uint8_t *actor; /* KEY_PK_BYTES, or NULL */
};
int rec_peek(const uint8_t *bytes, size_t len, struct rec_peek *out);

/* Ed25519 verification of the body with `pk`. */
bool rec_verify_sig(const struct record *r, const uint8_t pk[KEY_PK_BYTES]);

/* BLAKE2b-256 of the exact envelope bytes: what the next record's `prev` holds. */
void rec_hash(const uint8_t *bytes, size_t len, uint8_t out[HASH_BYTES]);

/* The appeal number and version an appeal event carries; false for
 * events that are not about an appeal (genesis, heartbeat, keys). */
bool rec_appeal_ref(const Appeal__Body *b, const char **number, uint32_t *version);

/* A short name of the event kind: "filed", "assigned", ... */
const char *rec_kind(const Appeal__Body *b);

/* An official's reason carried by an event (docs/record-format.md 7.6):
 * the legacy clear text, the copy sealed under the writer's data key and,
 * for forwards and returns, the copy boxed to the other node. Fields the
 * event does not have are empty (boxed: len 0). */
struct rec_reason {
    const char *number;
    uint32_t version;
    const char *clear;
    const ProtobufCBinaryData *sealed;
    const ProtobufCBinaryData *data_key_id;
    const ProtobufCBinaryData *boxed; /* NULL: the event has no boxed copy */
};
/* False for events that carry no reason. */
bool rec_reason_of(const Appeal__Body *b, struct rec_reason *out);

enum {
    /* "NUMBER:EVENT:VERSION" and its terminator: 31 + 1 + 9 + 1 + 10 + 1. */
    REASON_AD_BYTES = 64,
    /* A sealed_reason: nonce, a reason of at most REASON_BYTES_MAX (2000)
     * bytes, tag. A boxed_reason: the ad, a zero byte, the reason and the
     * sealed box's 48 bytes. */
    SEALED_REASON_BYTES_MAX = REASON_BYTES_MAX + SEAL_OVERHEAD_BYTES,
    BOXED_REASON_BYTES_MAX = REASON_AD_BYTES + REASON_BYTES_MAX + BOX_SEAL_OVERHEAD_BYTES,
};
/* The associated data of a sealed reason: "KZ-75-2026-000001:extended:1". */
void rec_reason_ad(const Appeal__Body *b, const struct rec_reason *r, char out[REASON_AD_BYTES]);

/* The classifier's syntax for a category code (categories.tsv): 1..31
 * bytes, each an ASCII digit or a dot. */
bool category_valid(const char *s);

/* Formats: a region "KZ" or "KZ-75"; an office under a region, its
 * region's code, '.' and its 9-digit KATO code, "KZ-75.751210000"
 * (docs/record-format.md 8.1); numbers "KZ-75-2026-000001" and
 * "KZ-75.751210000-2026-000001". */
bool juris_valid(const char *s);
/* The region of a valid jurisdiction: the part before '.' (a region's
 * region is itself). */
void juris_region(const char *juris, char out[JURIS_CHARS_MAX + 1]);
/* True for an office's code. */
bool juris_is_office(const char *juris);
/* True when `juris` is `region` or one of its offices. */
bool juris_under(const char *juris, const char *region);
bool number_valid(const char *s);
/* The jurisdiction part of a registration number into `out`. */
void number_juris(const char *number, char out[16]);

#endif
