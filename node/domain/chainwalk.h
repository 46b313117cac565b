/*
 * chainwalk.h: the one chain walker (docs/record-format.md 10). Replication
 * (cluster/repl.c, a peer's run), `appeal-node verify` (node/store/verify.c,
 * every stored log) and rebuild (node/store/state.c) walk an origin's
 * records through it.
 *
 * A walk starts at a trusted position of one origin: the last record
 * trusted (seq, 0 for an empty log), its hash (`prev` of the next record;
 * zeros at seq 0) and the key that signs the next record. Each step takes
 * the next record's exact envelope bytes and checks, in this order:
 *
 *   WALK_GAP      the step's seq is the position's seq + 1;
 *   WALK_PEEK     the chain fields read (rec_peek; when not decoding all);
 *   WALK_DECODE   the record decodes (rec_decode), when it is decoded;
 *   WALK_PLACE    it names the walk's origin and the step's seq;
 *   WALK_LINK     its prev is the hash of the record before;
 *   WALK_GENESIS  at seq 1: a genesis (and the expected one, if given);
 *   WALK_SIG      its signature verifies with the key of its time, when
 *                 the policy checks it;
 *   WALK_CALLER   the caller's callback accepts it (its error in fn_rc).
 *
 * then advances: the position becomes this record, and a KeyRotated record
 * makes its new key sign from the next seq on. On a fault the position
 * stays at the last good record and the walk says which check failed, at
 * which seq, and why (`why`: the decoder's words); each caller words its
 * own message and error code from that.
 *
 * What is decoded and which signatures are checked is the caller's policy:
 *   - WALK_SIGS_EVERY (verify): every record decoded, every signature.
 *   - WALK_SIGS_RUN (replication): records are peeked (no allocation); the
 *     genesis, each KeyRotated record (a key's last word) and the run's
 *     last record are decoded and their signatures checked: the hash links
 *     carry the last signature back over the whole run.
 *   - WALK_SIGS_NONE (rebuild: its own log, written verified): every
 *     record decoded, links and seqs recomputed, no signature.
 *
 * Costs: one BLAKE2b per record, one Ed25519 per checked signature. Decoded
 * records live in the caller's arena from the step's start to its end (the
 * arena is put back where it was after the callback): the callback must
 * copy what it keeps.
 */
#ifndef APPEAL_CHAINWALK_H
#define APPEAL_CHAINWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "err.h"
#include "keys.h"
#include "pbdecode.h"
#include "record.h"

enum walk_sigs {
    WALK_SIGS_NONE,  /* links and seqs only; every record decoded */
    WALK_SIGS_RUN,   /* genesis, rotations and the run's last; records peeked */
    WALK_SIGS_EVERY, /* every record decoded and its signature checked */
};

enum walk_fault {
    WALK_OK = 0,
    WALK_GAP,
    WALK_PEEK,
    WALK_DECODE,
    WALK_PLACE,
    WALK_LINK,
    WALK_GENESIS,
    WALK_SIG,
    WALK_CALLER,
};

/* One record that passed the walker's checks, for the callback. */
struct walk_rec {
    uint64_t seq;
    const uint8_t *env; /* the exact envelope bytes */
    size_t len;
    const Appeal__Body *body; /* NULL when only peeked (WALK_SIGS_RUN) */
    uint8_t hash[HASH_BYTES]; /* rec_hash(env): the next record's prev */
    bool sig_checked;
};

/* 0 to go on; anything else stops the walk (WALK_CALLER, the value in
 * fn_rc). */
typedef int (*walk_fn)(void *arg, const struct walk_rec *r);

struct walk {
    /* The position: the last record trusted. */
    uint8_t origin[KEY_PK_BYTES];
    uint64_t seq;
    uint8_t prev[HASH_BYTES];
    uint8_t key[KEY_PK_BYTES]; /* signs seq + 1 */
    /* The policy, set after walk_init. */
    enum walk_sigs sigs;
    /* Check seq 1 at all (WALK_GENESIS); then, if `genesis_juris` is not
     * NULL, that it names it and `genesis_box_key`. */
    bool genesis_check;
    const char *genesis_juris;
    const uint8_t *genesis_box_key;
    struct arena *arena; /* decoding scratch: RECORD_ARENA_BYTES free at least */
    walk_fn fn;          /* NULL: none */
    void *arg;
    /* Results. */
    uint64_t records;    /* stepped over */
    uint64_t signatures; /* checked */
    enum walk_fault fault;
    uint64_t fault_seq;
    int fn_rc;         /* the callback's error (WALK_CALLER) */
    struct errbuf why; /* WALK_DECODE: the decoder's message */
};

/* Starts a walk of `origin` after its record `seq` (0: from the start),
 * whose hash is `prev` (NULL when seq is 0), with `key` signing seq + 1.
 * The policy is WALK_SIGS_EVERY with the genesis checked, no callback. */
void walk_init(struct walk *w, const uint8_t origin[KEY_PK_BYTES], uint64_t seq,
               const uint8_t *prev, const uint8_t key[KEY_PK_BYTES], struct arena *arena);

/* Checks the record at `seq` and advances: WALK_OK, or the fault (also in
 * w->fault, with w->fault_seq). `last`: the run ends here (WALK_SIGS_RUN
 * checks its signature). */
int walk_step(struct walk *w, uint64_t seq, const uint8_t *env, size_t len, bool last);

/* walk_step over `n` records from `first_seq`, the last of them the run's
 * end; stops at the first fault. */
int walk_run(struct walk *w, uint64_t first_seq, const ProtobufCBinaryData *recs, size_t n);

#endif
