/*
 * fuzz_record: a record envelope from untrusted bytes, as replication, the
 * store and `verify` read one, through both decoders of node/domain/record.h:
 * rec_peek (the chain fields without unpacking, what repl_check_run reads
 * from most records of a peer's run) and rec_decode (the full decoding and
 * checks). Then what callers do with a decoded record: its hash, its
 * signature checked with a fixed key and with the origin key it names, its
 * kind and appeal reference.
 *
 * The two decoders must agree: a record rec_decode accepts, rec_peek
 * accepts too, with the same body, origin, seq, prev and event.
 *
 * Records reach the node as elements of a Run's `repeated bytes records`;
 * protobuf-c gives an empty one as (NULL, 0), and callers pass that on, so
 * the empty input is given as (NULL, 0).
 *
 * The fixed key is the Ed25519 key of seed FUZZ_KEY_SEED; make_seeds.py signs
 * the seed records with the same key, so the corpus reaches the path where a
 * signature verifies.
 */
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "bounds.h"
#include "fuzz.h"
#include "record.h"

static struct arena arena; /* one record's messages, reset per input */
static uint8_t fixed_pk[KEY_PK_BYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(&arena, RECORD_ARENA_BYTES);
    /* 32 bytes of 0x42: the same seed as FUZZ_KEY_SEED in make_seeds.py. */
    uint8_t seed[crypto_sign_SEEDBYTES], sk[KEY_SK_BYTES];
    memset(seed, 0x42, sizeof seed);
    FUZZ_ASSERT(crypto_sign_seed_keypair(fixed_pk, sk, seed) == 0);
    return 0;
}

/* What rec_decode promises of a record it accepts (node/domain/record.h). */
static void check_decoded(const struct record *r, const uint8_t *data, size_t size) {
    FUZZ_ASSERT(r->bytes == data && r->len == size);
    FUZZ_ASSERT(r->env != NULL && r->body != NULL);
    FUZZ_ASSERT(r->env->sig.len == SIG_BYTES);
    FUZZ_ASSERT(r->body->origin.len == KEY_PK_BYTES);
    FUZZ_ASSERT(r->body->prev.len == HASH_BYTES);
    FUZZ_ASSERT(r->body->seq != 0);
    const char *number = NULL;
    uint32_t version = 0;
    if (rec_appeal_ref(r->body, &number, &version)) {
        FUZZ_ASSERT(number != NULL && number_valid(number));
        char juris[16];
        number_juris(number, juris);
        FUZZ_ASSERT(juris_valid(juris));
    }
    FUZZ_ASSERT(strcmp(rec_kind(r->body), "unknown") != 0);
}

/* Known bug pbx-null-data (tests/fuzz/regressions/README.md): an Envelope
 * with a 64-byte sig and an empty body has body.data == NULL, and pb_guard
 * computes NULL + 0. True for such inputs when skipping known bugs. */
static bool known_bug(const uint8_t *data, size_t size) {
    if (!fuzz_skip_known() || size > RECORD_BYTES_MAX) {
        return false;
    }
    struct arena *a = &arena;
    arena_reset(a);
    Appeal__Envelope *env = (Appeal__Envelope *)protobuf_c_message_unpack(
        &appeal__envelope__descriptor, &a->allocator, size, data);
    return env != NULL && env->sig.len == SIG_BYTES && env->body.data == NULL;
}

/* What rec_peek promises of a record it accepts: pointers into the bytes. */
static void check_peeked(const struct rec_peek *pk, const uint8_t *bytes, size_t len) {
    FUZZ_ASSERT(pk->body != NULL && pk->origin != NULL && pk->prev != NULL);
    FUZZ_ASSERT(pk->body >= bytes && pk->body_len <= len &&
                (size_t)(pk->body - bytes) <= len - pk->body_len);
    const uint8_t *body_end = pk->body + pk->body_len;
    FUZZ_ASSERT(pk->origin >= pk->body && KEY_PK_BYTES <= body_end - pk->origin);
    FUZZ_ASSERT(pk->prev >= pk->body && HASH_BYTES <= body_end - pk->prev);
    FUZZ_ASSERT(pk->seq != 0 && pk->event >= 10 && pk->event <= 25);
}

/* rec_peek and rec_decode read the same fields of the same bytes. */
static void check_agree(const struct rec_peek *pk, const struct record *r) {
    const Appeal__Body *b = r->body;
    FUZZ_ASSERT(pk->body_len == r->env->body.len);
    FUZZ_ASSERT(memcmp(pk->body, r->env->body.data, pk->body_len) == 0);
    FUZZ_ASSERT(memcmp(pk->origin, b->origin.data, KEY_PK_BYTES) == 0);
    FUZZ_ASSERT(pk->seq == b->seq);
    FUZZ_ASSERT(memcmp(pk->prev, b->prev.data, HASH_BYTES) == 0);
    FUZZ_ASSERT(pk->event == (uint32_t)b->event_case);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *bytes = size > 0 ? data : NULL;
    if (bytes == NULL && fuzz_skip_known()) {
        return 0; /* known bugs peek-null-data, pbx-null-data (regressions/README.md) */
    }
    if (known_bug(data, size)) {
        return 0;
    }
    uint8_t hash[HASH_BYTES];
    rec_hash(bytes, size, hash);
    struct rec_peek pk;
    int peek_rc = rec_peek(bytes, size, &pk);
    if (peek_rc == 0) {
        check_peeked(&pk, bytes, size);
    } else {
        FUZZ_ASSERT(peek_rc == APL_EINVAL);
    }
    arena_reset(&arena);
    struct record r;
    struct errbuf e;
    err_clear(&e);
    int rc = rec_decode(bytes, size, &arena, &r, &e);
    if (rc != 0) {
        FUZZ_ASSERT(rc >= APL_ELAST && rc <= APL_EINVAL);
        return 0;
    }
    check_decoded(&r, bytes, size);
    FUZZ_ASSERT(peek_rc == 0);
    check_agree(&pk, &r);
    (void)rec_verify_sig(&r, fixed_pk);
    (void)rec_verify_sig(&r, r.body->origin.data);
    return 0;
}
