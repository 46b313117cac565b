/* The chain walker (node/domain/chainwalk.h) on crafted runs: a good run,
 * a broken link, a bad last signature, a rotation mid-run, a wrong
 * genesis, a malformed record in the middle, a gap, a callback's refusal;
 * under each signature policy that replication, verify and rebuild use. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "chainwalk.h"
#include "check.h"
#include "record.h"

enum { N = 5, ROT_SEQ = 3 };

static uint8_t pk1[KEY_PK_BYTES], sk1[KEY_SK_BYTES]; /* the origin */
static uint8_t pk2[KEY_PK_BYTES], sk2[KEY_SK_BYTES]; /* its successor from ROT_SEQ + 1 */
static uint8_t box[BOX_PK_BYTES];

struct chain {
    uint8_t *env[N + 1]; /* by seq */
    size_t len[N + 1];
    ProtobufCBinaryData recs[N];
};

/* Signs record `seq` after `prev` (NULL: zeros): genesis at 1 (naming
 * `juris`), KeyRotated at ROT_SEQ, heartbeats otherwise. */
static void make(struct chain *c, uint64_t seq, const uint8_t *prev, const uint8_t *sk,
                 const char *juris) {
    static const uint8_t zero[HASH_BYTES];
    Appeal__Body b = APPEAL__BODY__INIT;
    Appeal__Genesis g = APPEAL__GENESIS__INIT;
    Appeal__Heartbeat hb = APPEAL__HEARTBEAT__INIT;
    Appeal__KeyRotated kr = APPEAL__KEY_ROTATED__INIT;
    b.origin.data = pk1;
    b.origin.len = KEY_PK_BYTES;
    b.seq = seq;
    b.prev.data = (uint8_t *)(prev != NULL ? prev : zero);
    b.prev.len = HASH_BYTES;
    b.time_ms = 1700000000000 + (int64_t)seq;
    if (seq == 1 && juris != NULL) {
        g.jurisdiction = (char *)juris;
        g.box_key.data = box;
        g.box_key.len = BOX_PK_BYTES;
        b.event_case = APPEAL__BODY__EVENT_GENESIS;
        b.genesis = &g;
    } else if (seq == ROT_SEQ) {
        kr.new_key.data = pk2;
        kr.new_key.len = KEY_PK_BYTES;
        kr.from_seq = seq + 1;
        b.event_case = APPEAL__BODY__EVENT_KEY_ROTATED;
        b.key_rotated = &kr;
    } else {
        b.event_case = APPEAL__BODY__EVENT_HEARTBEAT;
        b.heartbeat = &hb;
    }
    free(c->env[seq]);
    CHECK(rec_sign(&b, sk, &c->env[seq], &c->len[seq]) == 0);
    c->recs[seq - 1].data = c->env[seq];
    c->recs[seq - 1].len = c->len[seq];
}

/* A good chain 1..N, each linked to the one before, signed by its key. */
static void good(struct chain *c) {
    memset(c, 0, sizeof *c);
    uint8_t h[HASH_BYTES];
    for (uint64_t s = 1; s <= N; s++) {
        make(c, s, s > 1 ? h : NULL, s <= ROT_SEQ ? sk1 : sk2, "KZ-75");
        rec_hash(c->env[s], c->len[s], h);
    }
}

static void hash_of(const struct chain *c, uint64_t seq, uint8_t out[HASH_BYTES]) {
    rec_hash(c->env[seq], c->len[seq], out);
}

static void drop(struct chain *c) {
    for (int s = 0; s <= N; s++) {
        free(c->env[s]);
    }
}

struct seen {
    uint64_t records, bodies;
    uint64_t refuse_at; /* the callback refuses this seq */
};

static int on_record(void *arg, const struct walk_rec *r) {
    struct seen *s = arg;
    uint8_t h[HASH_BYTES];
    rec_hash(r->env, r->len, h);
    CHECK(memcmp(h, r->hash, HASH_BYTES) == 0);
    if (r->seq == s->refuse_at) {
        return APL_EFORBIDDEN;
    }
    s->records++;
    s->bodies += r->body != NULL;
    return 0;
}

/* A walk of the whole chain from an empty log under `sigs`. */
static void start(struct walk *w, struct arena *a, enum walk_sigs sigs, struct seen *s) {
    walk_init(w, pk1, 0, NULL, pk1, a);
    w->sigs = sigs;
    w->genesis_juris = "KZ-75";
    w->genesis_box_key = box;
    w->fn = on_record;
    w->arg = s;
    memset(s, 0, sizeof *s);
}

static void test_good_run(struct arena *a) {
    struct chain c;
    good(&c);
    struct walk w;
    struct seen s;
    /* Replication: peeked, the genesis decoded, the rotation and the last
     * signature checked. */
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_OK);
    CHECK_INT(w.seq, N);
    CHECK_INT(w.records, N);
    CHECK_INT(w.signatures, 2);
    CHECK_INT(s.records, N);
    CHECK_INT(s.bodies, 3); /* 1, ROT_SEQ and N */
    CHECK(memcmp(w.key, pk2, KEY_PK_BYTES) == 0);
    uint8_t h[HASH_BYTES];
    hash_of(&c, N, h);
    CHECK(memcmp(w.prev, h, HASH_BYTES) == 0);
    CHECK_INT(a->used_bytes, 0); /* the arena is put back */
    /* Verify: every record decoded and signed. */
    start(&w, a, WALK_SIGS_EVERY, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_OK);
    CHECK_INT(w.signatures, N);
    CHECK_INT(s.bodies, N);
    /* Rebuild: decoded, no signature. */
    start(&w, a, WALK_SIGS_NONE, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_OK);
    CHECK_INT(w.signatures, 0);
    CHECK_INT(s.bodies, N);
    CHECK(memcmp(w.key, pk2, KEY_PK_BYTES) == 0); /* rotations followed even so */
    /* From a trusted position in the middle, with the key of its time. */
    hash_of(&c, 2, h);
    walk_init(&w, pk1, 2, h, pk1, a);
    w.sigs = WALK_SIGS_RUN;
    CHECK_INT(walk_run(&w, 3, &c.recs[2], N - 2), WALK_OK);
    CHECK_INT(w.seq, N);
    drop(&c);
}

static void test_broken_link(struct arena *a) {
    struct chain c;
    good(&c);
    uint8_t other[HASH_BYTES];
    memset(other, 7, sizeof other);
    make(&c, 4, other, sk2, NULL); /* validly signed, linked elsewhere */
    enum walk_sigs pol[] = {WALK_SIGS_RUN, WALK_SIGS_EVERY, WALK_SIGS_NONE};
    for (size_t i = 0; i < 3; i++) {
        struct walk w;
        struct seen s;
        start(&w, a, pol[i], &s);
        CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_LINK);
        CHECK_INT(w.fault, WALK_LINK);
        CHECK_INT(w.fault_seq, 4);
        CHECK_INT(w.seq, 3); /* the position stays at the last good record */
        CHECK_INT(s.records, 3);
    }
    drop(&c);
}

static void test_bad_last_sig(struct arena *a) {
    struct chain c;
    good(&c);
    uint8_t h[HASH_BYTES];
    hash_of(&c, N - 1, h);
    make(&c, N, h, sk1, NULL); /* the retired key signs after the rotation */
    struct walk w;
    struct seen s;
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_SIG);
    CHECK_INT(w.fault_seq, N);
    CHECK_INT(w.seq, N - 1);
    CHECK_INT(s.records, N - 1); /* the callback never saw it */
    /* Rebuild trusts its own log's signatures. */
    start(&w, a, WALK_SIGS_NONE, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_OK);
    drop(&c);
}

/* A bad signature in the middle of a run: replication's run check does not
 * look at it (the last one authenticates the links), verify does. */
static void test_bad_middle_sig(struct arena *a) {
    struct chain c;
    good(&c);
    uint8_t h[HASH_BYTES];
    hash_of(&c, 1, h);
    make(&c, 2, h, sk2, NULL); /* a key that does not sign yet; the rest relinked */
    for (uint64_t s = 3; s <= N; s++) {
        hash_of(&c, s - 1, h);
        make(&c, s, h, s <= ROT_SEQ ? sk1 : sk2, NULL);
    }
    struct walk w;
    struct seen s;
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_OK);
    start(&w, a, WALK_SIGS_EVERY, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_SIG);
    CHECK_INT(w.fault_seq, 2);
    drop(&c);
}

static void test_rotation_mid_run(struct arena *a) {
    struct chain c;
    good(&c);
    struct walk w;
    struct seen s;
    /* The run ends at the rotation: its own signature (the old key's
     * last word) is the one checked. */
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, ROT_SEQ), WALK_OK);
    CHECK_INT(w.signatures, 1);
    CHECK(memcmp(w.key, pk2, KEY_PK_BYTES) == 0);
    /* The rotation signed by the successor instead: refused at it. */
    uint8_t h[HASH_BYTES];
    hash_of(&c, ROT_SEQ - 1, h);
    make(&c, ROT_SEQ, h, sk2, NULL);
    for (uint64_t q = ROT_SEQ + 1; q <= N; q++) {
        hash_of(&c, q - 1, h);
        make(&c, q, h, sk2, NULL);
    }
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_SIG);
    CHECK_INT(w.fault_seq, ROT_SEQ);
    CHECK(memcmp(w.key, pk1, KEY_PK_BYTES) == 0);
    /* After the rotation the old key no longer signs (verify). */
    drop(&c);
    good(&c);
    hash_of(&c, ROT_SEQ, h);
    make(&c, ROT_SEQ + 1, h, sk1, NULL);
    hash_of(&c, ROT_SEQ + 1, h);
    make(&c, ROT_SEQ + 2, h, sk2, NULL);
    start(&w, a, WALK_SIGS_EVERY, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_SIG);
    CHECK_INT(w.fault_seq, ROT_SEQ + 1);
    drop(&c);
}

static void test_wrong_genesis(struct arena *a) {
    struct chain c;
    good(&c);
    make(&c, 1, NULL, sk1, "KZ-11"); /* another jurisdiction than expected */
    struct walk w;
    struct seen s;
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, 1), WALK_GENESIS);
    CHECK_INT(w.fault_seq, 1);
    CHECK_INT(w.seq, 0);
    /* Verify asks only for a genesis, whichever: this one is. */
    start(&w, a, WALK_SIGS_EVERY, &s);
    w.genesis_juris = NULL;
    CHECK_INT(walk_run(&w, 1, c.recs, 1), WALK_OK);
    /* Not a genesis at all. */
    make(&c, 1, NULL, sk1, NULL);
    start(&w, a, WALK_SIGS_EVERY, &s);
    w.genesis_juris = NULL;
    CHECK_INT(walk_run(&w, 1, c.recs, 1), WALK_GENESIS);
    /* Rebuild does not check seq 1. */
    start(&w, a, WALK_SIGS_NONE, &s);
    w.genesis_check = false;
    CHECK_INT(walk_run(&w, 1, c.recs, 1), WALK_OK);
    drop(&c);
}

static void test_malformed_middle(struct arena *a) {
    struct chain c;
    good(&c);
    uint8_t junk[40];
    memset(junk, 0xff, sizeof junk);
    c.recs[1].data = junk; /* seq 2 */
    c.recs[1].len = sizeof junk;
    struct walk w;
    struct seen s;
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_PEEK);
    CHECK_INT(w.fault_seq, 2);
    CHECK_INT(w.seq, 1);
    start(&w, a, WALK_SIGS_EVERY, &s);
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_DECODE);
    CHECK_INT(w.fault_seq, 2);
    CHECK(w.why.msg[0] != '\0'); /* the decoder's words, for the message */
    CHECK_INT(a->used_bytes, 0);
    drop(&c);
}

static void test_gap_and_callback(struct arena *a) {
    struct chain c;
    good(&c);
    struct walk w;
    struct seen s;
    start(&w, a, WALK_SIGS_EVERY, &s);
    CHECK_INT(walk_step(&w, 1, c.env[1], c.len[1], false), WALK_OK);
    CHECK_INT(walk_step(&w, 3, c.env[3], c.len[3], false), WALK_GAP);
    CHECK_INT(w.fault_seq, 3);
    CHECK_INT(w.seq, 1);
    /* A record at the right place naming another seq. */
    start(&w, a, WALK_SIGS_RUN, &s);
    CHECK_INT(walk_run(&w, 2, &c.recs[0], 1), WALK_GAP);
    uint8_t h1[HASH_BYTES];
    hash_of(&c, 1, h1);
    walk_init(&w, pk1, 1, h1, pk1, a);
    CHECK_INT(walk_step(&w, 2, c.env[3], c.len[3], true), WALK_PLACE);
    /* The callback's refusal stops the walk before the position moves. */
    start(&w, a, WALK_SIGS_EVERY, &s);
    s.refuse_at = 4;
    CHECK_INT(walk_run(&w, 1, c.recs, N), WALK_CALLER);
    CHECK_INT(w.fn_rc, APL_EFORBIDDEN);
    CHECK_INT(w.fault_seq, 4);
    CHECK_INT(w.seq, 3);
    drop(&c);
}

int main(void) {
    if (sodium_init() < 0) {
        return 1;
    }
    crypto_sign_keypair(pk1, sk1);
    crypto_sign_keypair(pk2, sk2);
    randombytes_buf(box, sizeof box);
    struct arena a;
    CHECK(arena_init(&a, RECORD_ARENA_BYTES) == 0);
    test_good_run(&a);
    test_broken_link(&a);
    test_bad_last_sig(&a);
    test_bad_middle_sig(&a);
    test_rotation_mid_run(&a);
    test_wrong_genesis(&a);
    test_malformed_middle(&a);
    test_gap_and_callback(&a);
    arena_fini(&a);
    return check_failures != 0;
}
