/*
 * fuzz_pb_guard: the bounded protobuf decoding every decoder above rests on
 * (pb_guard, pb_unpack, node/base/pbdecode.h), against the messages the node and
 * its tools read from outside: records, client requests and responses,
 * peer messages, and rows read back from LMDB.
 *
 * The first two input bytes choose the case; the rest is the message (NULL
 * when there is none, as protobuf-c hands over an empty bytes field):
 *   byte 0     the descriptor: descs[byte % DESCS]
 *   byte 1     bits 0-2: depth_max - 1 given to pb_guard (1..8)
 *              bits 3-5: repeated_max, repeated_maxes[bits % REPEATED_MAXES]
 * Then pb_unpack decodes the message into an arena. What pbdecode.h promises is
 * checked on every message that passes: no repeated field holds more than
 * repeated_max elements, nothing is nested deeper than depth_max. The
 * message is then packed, decoded and packed again.
 */
#include <stdio.h>
#include <string.h>

#include "api.pb-c.h"
#include "bounds.h"
#include "fuzz.h"
#include "record.pb-c.h"
#include "repl.h"
#include "repl.pb-c.h"
#include "store.pb-c.h"

enum { PBX_UNPACK_DEPTH_MAX = 8 }; /* PBX_DEPTH_MAX in node/base/pbdecode.c */

/* The order is the first byte of the seeds (make_seeds.py): append only. */
static const ProtobufCMessageDescriptor *const descs[] = {
    &appeal__envelope__descriptor,       &appeal__body__descriptor,
    &appeal__client_request__descriptor, &appeal__request__descriptor,
    &appeal__response__descriptor,       &appeal__appeal_row__descriptor,
    &appeal__origin_row__descriptor,     &appeal__sealed__descriptor,
    &appeal__fork__descriptor,           &appeal__peer_message__descriptor,
    &appeal__peer_body__descriptor,
};
enum { DESCS = sizeof descs / sizeof descs[0] };

/* What the callers pass: a tight limit, records, requests, store rows,
 * peer bodies, responses in appealctl. */
static const uint32_t repeated_maxes[] = {
    1, 16, REQUEST_REPEATED_MAX, 4096, PULL_RECORDS_MAX, 1u << 20,
};
enum { REPEATED_MAXES = sizeof repeated_maxes / sizeof repeated_maxes[0] };

static struct arena arena;   /* one message, reset per input */
static struct arena scratch; /* the round trip's */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(&arena, RECORD_ARENA_BYTES);
    fuzz_init(&scratch, 2 * (size_t)RECORD_ARENA_BYTES);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) {
        return 0;
    }
    const ProtobufCMessageDescriptor *desc = descs[data[0] % DESCS];
    uint32_t depth_max = 1u + (data[1] & 7u);
    uint32_t repeated_max = repeated_maxes[((data[1] >> 3) & 7u) % REPEATED_MAXES];
    size_t len = size - 2;
    /* protobuf-c leaves an empty bytes field as (NULL, 0), and callers pass
     * that on (a ClientRequest's `request`, an Envelope's `body`). */
    const uint8_t *msg = len > 0 ? data + 2 : NULL;
    if (msg == NULL && fuzz_skip_known()) {
        return 0; /* known bug pbx-null-data (tests/fuzz/regressions/README.md) */
    }

    struct errbuf e;
    err_clear(&e);
    int guard_rc = pb_guard(desc, msg, len, repeated_max, depth_max, &e);
    if (guard_rc != 0) {
        FUZZ_ASSERT(guard_rc == e.code);
        FUZZ_ASSERT(guard_rc == APL_EINVAL || guard_rc == APL_ETOOBIG);
    }

    arena_reset(&arena);
    err_clear(&e);
    ProtobufCMessage *m = pb_unpack(desc, msg, len, &arena, repeated_max, &e);
    if (m == NULL) {
        FUZZ_ASSERT(e.code == APL_EINVAL || e.code == APL_ETOOBIG);
        if (guard_rc == 0) {
            /* pb_unpack guards with depth 8 >= depth_max: what the guard let
             * through above passes again, so protobuf-c refused it. */
            char expect[ERRBUF_MSG_BYTES];
            snprintf(expect, sizeof expect, "malformed %s message", desc->short_name);
            FUZZ_ASSERT(strcmp(e.msg, expect) == 0);
        }
        return 0;
    }
    FUZZ_ASSERT(m->descriptor == desc);
    FUZZ_ASSERT(arena.used_bytes <= arena.cap_bytes);
    fuzz_check_bounds(m, repeated_max, PBX_UNPACK_DEPTH_MAX);
    if (guard_rc == 0) {
        fuzz_check_bounds(m, repeated_max, depth_max);
    }
    fuzz_roundtrip(m, &scratch);
    return 0;
}
