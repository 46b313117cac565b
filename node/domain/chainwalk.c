#include "chainwalk.h"

#include <string.h>

#include "assert.h"

void walk_init(struct walk *w, const uint8_t origin[KEY_PK_BYTES], uint64_t seq,
               const uint8_t *prev, const uint8_t key[KEY_PK_BYTES], struct arena *arena) {
    ASSERT(origin != NULL && key != NULL && arena != NULL);
    ASSERT((seq == 0) == (prev == NULL));
    memset(w, 0, sizeof *w);
    memcpy(w->origin, origin, KEY_PK_BYTES);
    w->seq = seq;
    if (prev != NULL) {
        memcpy(w->prev, prev, HASH_BYTES);
    }
    memcpy(w->key, key, KEY_PK_BYTES);
    w->sigs = WALK_SIGS_EVERY;
    w->genesis_check = true;
    w->arena = arena;
    err_clear(&w->why);
}

static int fault(struct walk *w, enum walk_fault f, uint64_t seq) {
    w->fault = f;
    w->fault_seq = seq;
    return f;
}

/* The chain fields every record is checked on: its place and its link. */
static int check_place_link(struct walk *w, uint64_t seq, const uint8_t *origin, uint64_t rseq,
                            const uint8_t *prev) {
    if (rseq != seq || memcmp(origin, w->origin, KEY_PK_BYTES) != 0) {
        return fault(w, WALK_PLACE, seq);
    }
    if (memcmp(prev, w->prev, HASH_BYTES) != 0) {
        return fault(w, WALK_LINK, seq);
    }
    return WALK_OK;
}

static bool genesis_ok(const struct walk *w, const Appeal__Body *b) {
    if (b->event_case != APPEAL__BODY__EVENT_GENESIS) {
        return false;
    }
    return w->genesis_juris == NULL ||
           (strcmp(b->genesis->jurisdiction, w->genesis_juris) == 0 &&
            memcmp(b->genesis->box_key.data, w->genesis_box_key, BOX_PK_BYTES) == 0);
}

/* Decodes the record at `seq` into the arena (WALK_DECODE, the decoder's
 * words in w->why). */
static int decode(struct walk *w, uint64_t seq, const uint8_t *env, size_t len,
                  struct record *rec) {
    err_clear(&w->why);
    if (rec_decode(env, len, w->arena, rec, &w->why) != 0) {
        return fault(w, WALK_DECODE, seq);
    }
    return WALK_OK;
}

/* The checks of one record, up to its signature; `rec->body` is NULL
 * when it was only peeked. */
static int check(struct walk *w, uint64_t seq, const uint8_t *env, size_t len, bool last,
                 struct record *rec, bool *sig) {
    int f;
    rec->body = NULL;
    if (w->sigs == WALK_SIGS_RUN) {
        struct rec_peek pk;
        if (rec_peek(env, len, &pk) != 0) {
            return fault(w, WALK_PEEK, seq);
        }
        if ((f = check_place_link(w, seq, pk.origin, pk.seq, pk.prev)) != WALK_OK) {
            return f;
        }
        bool rotation = pk.event == APPEAL__BODY__EVENT_KEY_ROTATED;
        *sig = last || rotation;
        if (!*sig && !(seq == 1 && w->genesis_check)) {
            return WALK_OK; /* the common case: the chain alone, no unpacking */
        }
        if ((f = decode(w, seq, env, len, rec)) != WALK_OK) {
            return f;
        }
        /* The decoder and the peek agree on the event (fuzz_record). */
        *sig = last || rec->body->event_case == APPEAL__BODY__EVENT_KEY_ROTATED;
    } else {
        if ((f = decode(w, seq, env, len, rec)) != WALK_OK) {
            return f;
        }
        const Appeal__Body *b = rec->body;
        if ((f = check_place_link(w, seq, b->origin.data, b->seq, b->prev.data)) != WALK_OK) {
            return f;
        }
        *sig = w->sigs == WALK_SIGS_EVERY;
    }
    if (seq == 1 && w->genesis_check && !genesis_ok(w, rec->body)) {
        return fault(w, WALK_GENESIS, seq);
    }
    if (*sig && !rec_verify_sig(rec, w->key)) {
        return fault(w, WALK_SIG, seq);
    }
    return WALK_OK;
}

int walk_step(struct walk *w, uint64_t seq, const uint8_t *env, size_t len, bool last) {
    ASSERT(w->fault == WALK_OK); /* a walk stops at its first fault */
    ASSERT(w->arena != NULL);
    if (seq != w->seq + 1) {
        return fault(w, WALK_GAP, seq);
    }
    size_t mark = w->arena->used_bytes;
    struct record rec;
    bool sig = false;
    int f = check(w, seq, env, len, last, &rec, &sig);
    struct walk_rec r = {.seq = seq, .env = env, .len = len, .body = rec.body, .sig_checked = sig};
    if (f == WALK_OK) {
        ASSERT(!sig || rec.body != NULL); /* a signature is checked on a decoded record */
        w->signatures += sig;
        rec_hash(env, len, r.hash);
        if (w->fn != NULL && (w->fn_rc = w->fn(w->arg, &r)) != 0) {
            f = fault(w, WALK_CALLER, seq);
        }
    }
    if (f == WALK_OK) {
        if (rec.body != NULL && rec.body->event_case == APPEAL__BODY__EVENT_KEY_ROTATED) {
            /* A key boundary: the new key signs from the next record on. */
            memcpy(w->key, rec.body->key_rotated->new_key.data, KEY_PK_BYTES);
        }
        memcpy(w->prev, r.hash, HASH_BYTES);
        w->seq = seq;
        w->records++;
    }
    ASSERT(w->arena->used_bytes >= mark);
    w->arena->used_bytes = mark;
    return f;
}

int walk_run(struct walk *w, uint64_t first_seq, const ProtobufCBinaryData *recs, size_t n) {
    ASSERT(n == 0 || recs != NULL);
    for (size_t i = 0; i < n; i++) {
        int f = walk_step(w, first_seq + i, recs[i].data, recs[i].len, i + 1 == n);
        if (f != WALK_OK) {
            return f;
        }
    }
    return WALK_OK;
}
