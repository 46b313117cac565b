/*
 * fuzz_peer: what a node reads from its peers (docs/protocol.md sections
 * 3-6). A PeerMessage is opened with peermsg_open (cluster/peermsg.h),
 * key proof included, and every Run of a PeerBody that decodes is checked
 * with repl_check_run (cluster/repl.h), as a puller checks an answer and a
 * subscriber a push: replication's policy of the chain walker
 * (node/domain/chainwalk.h), which also runs each run with verify's
 * policy (every signature) to compare.
 *
 * The input is a PeerMessage. An input that does not decode as one is taken
 * as the bytes of a PeerBody, so that the fuzzer can mutate bodies without
 * keeping an outer length right.
 *
 *  1. peermsg_open, without a store (NULL: no replica says which key signs
 *     now), against a cluster of two nodes built in memory: KZ-75 and KZ-11,
 *     whose sign keys are the Ed25519 keys of the seeds FUZZ_SEED_KZ75 and
 *     FUZZ_SEED_KZ11 (make_seeds.py signs with the same seeds). KZ-75 also
 *     has a successor key, FUZZ_SEED_NEXT. An opened message names a node of
 *     the cluster, verifies with the key its key proof leads to (each
 *     KeyRotated record signed by the key before it), has version 1, a time
 *     within PEER_CLOCK_SKEW_MAX_MS and a body within the guards. A refusal
 *     is APL_ETOOBIG, APL_EINVAL or APL_EAUTH, with a message.
 *  2. The seeds are signed at a fixed time, which is off the clock, and a
 *     fuzzer cannot forge signatures: so the body is also decoded directly,
 *     with pb_unpack and the limits peermsg_open uses (the PeerMessage's
 *     body, or the input), and goes on from there.
 *  3. Every Run of `pulled.runs` and `push.run` goes through repl_check_run
 *     against two bases of the origin it names (KZ-75 if it names none of
 *     the two): nothing held (head 0), and records 1..FUZZ_HEAD_SEQ held,
 *     the last with hash FUZZ_HEAD_HASH_BYTE x 32. What repl.h promises of
 *     an accepted run is checked on its records: each peeks, names the
 *     origin and its seq, links to the one before (or to the head); record 1
 *     is the genesis the cluster file gives; the last record decodes and
 *     verifies with the key of the time (after the run's KeyRotated records,
 *     each verified with the key before it). A refusal is one of the codes
 *     repl.c counts, with a message.
 *  4. A body that decodes is signed again with peermsg_pack as KZ-75, now:
 *     by its origin key, or (odd input sizes) by its successor with the
 *     KeyRotated record that leads to it as key proof. peermsg_open must
 *     open that message, expecting KZ-75, to the same body, and must refuse
 *     it as an answer expected from KZ-11. A Packed body (docs/protocol.md
 *     5.6) opens to what it carries (`pulled` or `deliver`) or is refused
 *     with APL_EINVAL or APL_ETOOBIG and a message: a fuzzed zstd frame,
 *     declared size or codec never crashes and never decompresses past
 *     its limit.
 *  5. A `pulled` or `deliver` body packed with peermsg_pack_z opens (packed)
 *     to the same body; with a decompressed-size limit below its size it is
 *     refused with APL_ETOOBIG before decompressing.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "chainwalk.h"
#include "clock.h"
#include "clusterfile.h"
#include "fuzz.h"
#include "peermsg.h"
#include "record.h"
#include "repl.h"

/* The same values as in make_seeds.py. */
enum {
    FUZZ_SEED_KZ75 = 0x42, /* 32 bytes of it: KZ-75's origin key (FUZZ_KEY_SEED) */
    FUZZ_SEED_KZ11 = 0x43,
    FUZZ_SEED_NEXT = 0x44, /* KZ-75's successor key */
    FUZZ_HEAD_SEQ = 3,
    FUZZ_HEAD_HASH_BYTE = 0x33,
    FUZZ_NODES = 2,
    PEERMSG_REPEATED_MAX = 16, /* peermsg_open's limit on a PeerMessage */
    PEER_DEPTH_MAX = 8,        /* PBX_DEPTH_MAX in node/base/pbdecode.c */
};
static const int64_t FUZZ_TIME_MS = 1795000000000; /* T0 in make_seeds.py */

static struct arena arena;   /* one input's messages, reset per input */
static struct arena scratch; /* the round trip's */
static struct cluster *cluster;
static struct node_keys *signer[2]; /* KZ-75 by its origin key; by its successor */
static uint8_t next_pk[KEY_PK_BYTES];
static uint8_t head_hash[HASH_BYTES];
static struct run_base bases[FUZZ_NODES][2];

static void seed_keypair(uint8_t byte, uint8_t pk[KEY_PK_BYTES], uint8_t sk[KEY_SK_BYTES]) {
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, byte, sizeof seed);
    FUZZ_ASSERT(crypto_sign_seed_keypair(pk, sk, seed) == 0);
}

static void add_node(const char *juris, uint8_t seed, uint8_t box_first, const char *port) {
    struct cluster_node *cn = &cluster->nodes[cluster->count++];
    uint8_t sk[KEY_SK_BYTES];
    seed_keypair(seed, cn->sign_pk, sk);
    snprintf(cn->juris, sizeof cn->juris, "%s", juris);
    for (int i = 0; i < BOX_PK_BYTES; i++) {
        cn->box_pk[i] = (uint8_t)(box_first + i);
    }
    snprintf(cn->peer_url, sizeof cn->peer_url, "tcp://127.0.0.1:%s1", port);
    snprintf(cn->pub_url, sizeof cn->pub_url, "tcp://127.0.0.1:%s2", port);
    snprintf(cn->query_url, sizeof cn->query_url, "tcp://127.0.0.1:%s3", port);
}

/* KZ-75's KeyRotated record at seq FUZZ_HEAD_SEQ + 1, signed by its origin
 * key: the key proof of messages its successor signs. */
static void make_rotation(struct node_keys *k, const uint8_t origin_sk[KEY_SK_BYTES]) {
    Appeal__KeyRotated kr = APPEAL__KEY_ROTATED__INIT;
    kr.new_key.data = next_pk;
    kr.new_key.len = KEY_PK_BYTES;
    kr.from_seq = FUZZ_HEAD_SEQ + 2;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.origin.data = cluster->nodes[0].sign_pk;
    b.origin.len = KEY_PK_BYTES;
    b.seq = FUZZ_HEAD_SEQ + 1;
    b.prev.data = head_hash;
    b.prev.len = HASH_BYTES;
    b.time_ms = FUZZ_TIME_MS;
    b.event_case = APPEAL__BODY__EVENT_KEY_ROTATED;
    b.key_rotated = &kr;
    FUZZ_ASSERT(rec_sign(&b, origin_sk, &k->rotation[0], &k->rotation_len[0]) == 0);
    k->n_rotations = 1;
}

static void make_signers(void) {
    uint8_t origin_sk[KEY_SK_BYTES];
    for (int i = 0; i < 2; i++) {
        signer[i] = calloc(1, sizeof *signer[i]);
        FUZZ_ASSERT(signer[i] != NULL);
    }
    seed_keypair(FUZZ_SEED_KZ75, signer[0]->sign_pk, origin_sk);
    memcpy(signer[0]->sign_sk, origin_sk, KEY_SK_BYTES);
    memcpy(signer[0]->signer_pk, signer[0]->sign_pk, KEY_PK_BYTES);
    memcpy(signer[1]->sign_pk, signer[0]->sign_pk, KEY_PK_BYTES);
    seed_keypair(FUZZ_SEED_NEXT, next_pk, signer[1]->sign_sk);
    memcpy(signer[1]->signer_pk, next_pk, KEY_PK_BYTES);
    make_rotation(signer[1], origin_sk);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(&arena, REPL_ARENA_BYTES);
    fuzz_init(&scratch, REPL_ARENA_BYTES);
    cluster = calloc(1, sizeof *cluster);
    FUZZ_ASSERT(cluster != NULL);
    cluster->self = -1;
    add_node("KZ-75", FUZZ_SEED_KZ75, 0, "710");
    add_node("KZ-11", FUZZ_SEED_KZ11, 32, "711");
    memset(head_hash, FUZZ_HEAD_HASH_BYTE, sizeof head_hash);
    for (int i = 0; i < FUZZ_NODES; i++) {
        const struct cluster_node *cn = &cluster->nodes[i];
        for (int h = 0; h < 2; h++) {
            bases[i][h] = (struct run_base){
                .origin = cn->sign_pk,
                .head_seq = h ? FUZZ_HEAD_SEQ : 0,
                .head_hash = h ? head_hash : NULL,
                .signing_key = cn->sign_pk,
                .juris = cn->juris,
                .box_key = cn->box_pk,
            };
        }
    }
    make_signers();
    return 0;
}

/* The key a message of origin `origin` is signed by after its key proof,
 * as peermsg.h states it; false if a proof record does not hold. */
static bool proof_key(const Appeal__PeerMessage *m, const uint8_t *origin,
                      uint8_t key[KEY_PK_BYTES]) {
    memcpy(key, origin, KEY_PK_BYTES);
    for (size_t i = 0; i < m->n_key_proof; i++) {
        struct record rec;
        size_t mark = arena.used_bytes;
        bool ok = rec_decode(m->key_proof[i].data, m->key_proof[i].len, &arena, &rec, NULL) == 0 &&
                  rec.body->event_case == APPEAL__BODY__EVENT_KEY_ROTATED &&
                  memcmp(rec.body->origin.data, origin, KEY_PK_BYTES) == 0 &&
                  rec_verify_sig(&rec, key);
        if (ok) {
            memcpy(key, rec.body->key_rotated->new_key.data, KEY_PK_BYTES);
        }
        arena.used_bytes = mark;
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* What peermsg.h promises of a message it opened: `m` is the same input
 * decoded here with the same limits. */
static void check_opened(const Appeal__PeerMessage *m, const Appeal__PeerBody *body,
                         const struct cluster_node *from) {
    FUZZ_ASSERT(m != NULL && body != NULL && from != NULL);
    FUZZ_ASSERT(from >= cluster->nodes && from < cluster->nodes + cluster->count);
    FUZZ_ASSERT(m->sender.len == KEY_PK_BYTES && m->sig.len == SIG_BYTES);
    FUZZ_ASSERT(memcmp(m->sender.data, from->sign_pk, KEY_PK_BYTES) == 0);
    FUZZ_ASSERT(m->n_key_proof <= KEY_ROTATIONS_MAX);
    uint8_t key[KEY_PK_BYTES], digest[HASH_BYTES], signed_part[14 + HASH_BYTES];
    FUZZ_ASSERT(proof_key(m, from->sign_pk, key));
    hash_bytes(m->body.data, m->body.len, digest);
    memcpy(signed_part, "appeal-peer-v1", 14);
    memcpy(signed_part + 14, digest, HASH_BYTES);
    FUZZ_ASSERT(crypto_sign_verify_detached(m->sig.data, signed_part, sizeof signed_part, key) ==
                0);
    FUZZ_ASSERT(body->version == 1);
    int64_t skew = body->time_ms - clock_system_ms();
    /* A second may pass between the open and this check. */
    FUZZ_ASSERT(skew <= PEER_CLOCK_SKEW_MAX_MS && skew >= -PEER_CLOCK_SKEW_MAX_MS - 1000);
    fuzz_check_bounds(&body->base, PEER_REPEATED_MAX, PEER_DEPTH_MAX);
}

/* A KeyRotated record of an accepted run: it decodes and verifies with
 * `key`, the key before it, and `key` becomes its successor ("the origin's
 * key of the time", repl.h, for the records after it). */
static void check_rotation(const ProtobufCBinaryData *rb, uint8_t key[KEY_PK_BYTES]) {
    struct record rec;
    size_t mark = arena.used_bytes;
    FUZZ_ASSERT(rec_decode(rb->data, rb->len, &arena, &rec, NULL) == 0);
    FUZZ_ASSERT(rec.body->event_case == APPEAL__BODY__EVENT_KEY_ROTATED);
    FUZZ_ASSERT(rec_verify_sig(&rec, key));
    memcpy(key, rec.body->key_rotated->new_key.data, KEY_PK_BYTES);
    arena.used_bytes = mark;
}

static void check_genesis(const ProtobufCBinaryData *rb, const struct run_base *b) {
    struct record rec;
    size_t mark = arena.used_bytes;
    FUZZ_ASSERT(rec_decode(rb->data, rb->len, &arena, &rec, NULL) == 0);
    FUZZ_ASSERT(rec.body->event_case == APPEAL__BODY__EVENT_GENESIS);
    FUZZ_ASSERT(strcmp(rec.body->genesis->jurisdiction, b->juris) == 0);
    FUZZ_ASSERT(rec.body->genesis->box_key.len == BOX_PK_BYTES &&
                memcmp(rec.body->genesis->box_key.data, b->box_key, BOX_PK_BYTES) == 0);
    arena.used_bytes = mark;
}

/* What repl.h promises of a run repl_check_run accepted against `b`. */
static void check_accepted(const Appeal__Run *run, const struct run_base *b) {
    FUZZ_ASSERT(run->origin.len == KEY_PK_BYTES &&
                memcmp(run->origin.data, b->origin, KEY_PK_BYTES) == 0);
    if (run->n_records == 0) {
        return;
    }
    FUZZ_ASSERT(run->n_records <= PULL_RECORDS_MAX);
    FUZZ_ASSERT(run->first_seq == b->head_seq + 1);
    uint8_t prev[HASH_BYTES] = {0}, key[KEY_PK_BYTES];
    if (b->head_seq > 0) {
        memcpy(prev, b->head_hash, HASH_BYTES);
    }
    memcpy(key, b->signing_key, KEY_PK_BYTES);
    uint8_t last_key[KEY_PK_BYTES];
    bool last_rotated = false;
    for (size_t i = 0; i < run->n_records; i++) {
        const ProtobufCBinaryData *rb = &run->records[i];
        struct rec_peek pk;
        FUZZ_ASSERT(rec_peek(rb->data, rb->len, &pk) == 0);
        FUZZ_ASSERT(pk.seq == run->first_seq + i);
        FUZZ_ASSERT(memcmp(pk.origin, b->origin, KEY_PK_BYTES) == 0);
        FUZZ_ASSERT(memcmp(pk.prev, prev, HASH_BYTES) == 0);
        if (pk.seq == 1) {
            check_genesis(rb, b);
        }
        memcpy(last_key, key, KEY_PK_BYTES);
        last_rotated = pk.event == APPEAL__BODY__EVENT_KEY_ROTATED;
        if (last_rotated) {
            check_rotation(rb, key);
        }
        rec_hash(rb->data, rb->len, prev);
    }
    /* The last record authenticates the run: by the key of its time (a
     * KeyRotated record is the old key's last word, verified above). */
    const ProtobufCBinaryData *last = &run->records[run->n_records - 1];
    struct record rec;
    size_t mark = arena.used_bytes;
    FUZZ_ASSERT(rec_decode(last->data, last->len, &arena, &rec, NULL) == 0);
    FUZZ_ASSERT(rec_verify_sig(&rec, last_rotated ? last_key : key));
    arena.used_bytes = mark;
}

/* The same run through the chain walker with every signature checked
 * (verify's policy, chainwalk.h), from the same base: stricter than
 * replication's (the genesis, rotations and the last signature). What it
 * accepts, repl_check_run accepts; what repl_check_run accepts, it refuses
 * only at a middle record's signature or decoding. */
static void check_walk_every(const Appeal__Run *run, const struct run_base *b, int repl_rc) {
    if (run->origin.len != KEY_PK_BYTES || memcmp(run->origin.data, b->origin, KEY_PK_BYTES) != 0 ||
        run->n_records == 0 || run->n_records > PULL_RECORDS_MAX ||
        run->first_seq != b->head_seq + 1) {
        return; /* refused before any walk */
    }
    struct walk w;
    walk_init(&w, b->origin, b->head_seq, b->head_seq > 0 ? b->head_hash : NULL, b->signing_key,
              &arena);
    w.genesis_juris = b->juris;
    w.genesis_box_key = b->box_key;
    int f = walk_run(&w, run->first_seq, run->records, run->n_records);
    if (f == WALK_OK) {
        FUZZ_ASSERT(repl_rc == 0);
        FUZZ_ASSERT(w.signatures == run->n_records);
    } else if (repl_rc == 0) {
        FUZZ_ASSERT(f == WALK_SIG || f == WALK_DECODE);
        FUZZ_ASSERT(w.fault_seq < run->first_seq + run->n_records - 1);
    }
}

static void check_run(const Appeal__Run *run) {
    int node = 0;
    for (int i = 1; i < FUZZ_NODES; i++) {
        if (run->origin.len == KEY_PK_BYTES &&
            memcmp(run->origin.data, cluster->nodes[i].sign_pk, KEY_PK_BYTES) == 0) {
            node = i;
        }
    }
    for (int h = 0; h < 2; h++) {
        const struct run_base *b = &bases[node][h];
        struct errbuf e;
        err_clear(&e);
        size_t mark = arena.used_bytes;
        int rc = repl_check_run(run, b, &arena, &e);
        if (rc == 0) {
            check_accepted(run, b);
        } else {
            /* The codes fetch() and the subscriber count by reason. */
            FUZZ_ASSERT(rc == APL_EINVAL || rc == APL_ETOOBIG || rc == APL_EGAP ||
                        rc == APL_ECHAIN || rc == APL_ESIG);
            FUZZ_ASSERT(e.code == rc && e.msg[0] != '\0');
        }
        arena.used_bytes = mark;
        check_walk_every(run, b, rc);
        FUZZ_ASSERT(arena.used_bytes == mark); /* the walker puts the arena back */
    }
}

static void check_runs(const Appeal__PeerBody *body) {
    if (body->msg_case == APPEAL__PEER_BODY__MSG_PULLED) {
        for (size_t i = 0; i < body->pulled->n_runs; i++) {
            check_run(body->pulled->runs[i]);
        }
    } else if (body->msg_case == APPEAL__PEER_BODY__MSG_PUSH && body->push->run != NULL) {
        check_run(body->push->run);
    } else if (body->msg_case == APPEAL__PEER_BODY__MSG_DELIVER) {
        for (size_t i = 0; i < body->deliver->n_runs; i++) {
            check_run(body->deliver->runs[i]); /* checked as a pull answer's */
        }
    }
}

/* Step 5: packed with zstd, the same body; over a small limit, refused. */
static const ProtobufCMessage *inner_msg(const Appeal__PeerBody *b) {
    return b->msg_case == APPEAL__PEER_BODY__MSG_PULLED ? &b->pulled->base : &b->deliver->base;
}

static void check_packed(Appeal__PeerBody *body, const struct node_keys *k) {
    if (body->msg_case != APPEAL__PEER_BODY__MSG_PULLED &&
        body->msg_case != APPEAL__PEER_BODY__MSG_DELIVER) {
        return;
    }
    uint8_t *want = NULL;
    size_t want_len = 0;
    FUZZ_ASSERT(pb_pack(inner_msg(body), &want, &want_len) == 0);
    nng_msg *out = NULL;
    FUZZ_ASSERT(peermsg_pack_z(k, 0, body, &out, NULL) == 0);
    arena_reset(&scratch);
    struct errbuf e;
    err_clear(&e);
    Appeal__PeerBody *again = NULL;
    bool packed = false;
    int rc =
        peermsg_open_max(cluster, NULL, nng_msg_body(out), nng_msg_len(out), PEER_RAW_BYTES_MAX,
                         &scratch, &cluster->nodes[0], &again, NULL, &packed, &e);
    FUZZ_ASSERT(rc == 0 && packed && again->msg_case == body->msg_case);
    uint8_t *got = NULL;
    size_t got_len = 0;
    FUZZ_ASSERT(pb_pack(inner_msg(again), &got, &got_len) == 0);
    FUZZ_ASSERT(got_len == want_len && memcmp(got, want, want_len) == 0);
    free(got);
    free(want);
    arena_reset(&scratch);
    err_clear(&e);
    rc = peermsg_open_max(cluster, NULL, nng_msg_body(out), nng_msg_len(out), 1, &scratch,
                          &cluster->nodes[0], &again, NULL, &packed, &e);
    FUZZ_ASSERT(rc == APL_ETOOBIG && e.msg[0] != '\0');
    nng_msg_free(out);
}

/* Step 4: `body` signed as KZ-75, now, opens again to the same body. */
static void check_resigned(Appeal__PeerBody *body, const struct node_keys *k) {
    nng_msg *out = NULL;
    FUZZ_ASSERT(peermsg_pack(k, 0, body, &out) == 0);
    uint8_t *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0;
    FUZZ_ASSERT(pb_pack(&body->base, &want, &want_len) == 0);
    arena_reset(&scratch);
    struct errbuf e;
    err_clear(&e);
    Appeal__PeerBody *again = NULL;
    const struct cluster_node *from = NULL;
    int rc = peermsg_open(cluster, NULL, nng_msg_body(out), nng_msg_len(out), &scratch,
                          &cluster->nodes[1], &again, &from, &e);
    FUZZ_ASSERT(rc == APL_EAUTH && e.msg[0] != '\0');
    err_clear(&e);
    rc = peermsg_open(cluster, NULL, nng_msg_body(out), nng_msg_len(out), &scratch,
                      &cluster->nodes[0], &again, &from, &e);
    if (body->msg_case == APPEAL__PEER_BODY__MSG_PACKED) {
        /* Opened to what it carries, or refused as a bad frame. */
        FUZZ_ASSERT(rc == 0 ? again->msg_case == APPEAL__PEER_BODY__MSG_PULLED ||
                                  again->msg_case == APPEAL__PEER_BODY__MSG_DELIVER
                            : (rc == APL_EINVAL || rc == APL_ETOOBIG) && e.msg[0] != '\0');
        free(want);
        nng_msg_free(out);
        return;
    }
    if (rc != 0) {
        fprintf(stderr, "fuzz_peer: a message peermsg_pack signed does not open: %s\n", e.msg);
    }
    FUZZ_ASSERT(rc == 0);
    FUZZ_ASSERT(from == &cluster->nodes[0]);
    FUZZ_ASSERT(pb_pack(&again->base, &got, &got_len) == 0);
    FUZZ_ASSERT(got_len == want_len && memcmp(got, want, want_len) == 0);
    free(want);
    free(got);
    nng_msg_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arena_reset(&arena);
    struct errbuf e;
    err_clear(&e);
    Appeal__PeerBody *body = NULL;
    const struct cluster_node *from = NULL;
    int rc = peermsg_open(cluster, NULL, size ? data : NULL, size, &arena, NULL, &body, &from, &e);
    if (rc != 0) {
        FUZZ_ASSERT(rc == APL_ETOOBIG || rc == APL_EINVAL || rc == APL_EAUTH);
        FUZZ_ASSERT(e.code == rc && e.msg[0] != '\0');
    }
    /* The input decoded here with peermsg_open's limits: the message the
     * checks above are about, and the body if peermsg_open refused it. */
    const Appeal__PeerMessage *m = (const Appeal__PeerMessage *)pb_unpack(
        &appeal__peer_message__descriptor, size ? data : NULL, size, &arena, PEERMSG_REPEATED_MAX,
        NULL);
    if (rc == 0) {
        check_opened(m, body, from);
    } else {
        const uint8_t *b = m != NULL ? m->body.data : (size ? data : NULL);
        size_t len = m != NULL ? m->body.len : size;
        body = (Appeal__PeerBody *)pb_unpack(&appeal__peer_body__descriptor, b, len, &arena,
                                             PEER_REPEATED_MAX, NULL);
        if (body == NULL) {
            return 0;
        }
        fuzz_check_bounds(&body->base, PEER_REPEATED_MAX, PEER_DEPTH_MAX);
    }
    check_runs(body);
    check_resigned(body, signer[size & 1]);
    check_packed(body, signer[0]);
    return 0;
}
