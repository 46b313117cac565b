#include "chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "store.pb-c.h"

enum { ORIGIN_ARENA_BYTES = 4096 };

static int origin_decode(const MDB_val *v, struct origin_state *o) {
    /* A small arena on the stack: rows are tiny and bounded. */
    _Alignas(16) uint8_t buf[ORIGIN_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    Appeal__OriginRow *r = (Appeal__OriginRow *)pb_unpack(&appeal__origin_row__descriptor,
                                                          v->mv_data, v->mv_size, &a, 4, NULL);
    int rc = APL_ECORRUPT;
    if (r != NULL && r->origin.len == KEY_PK_BYTES &&
        (r->head_hash.len == HASH_BYTES || r->head_seq == 0) && strlen(r->jurisdiction) < 16 &&
        (r->box_key.len == 0 || r->box_key.len == BOX_PK_BYTES) &&
        (r->signing_key.len == 0 || r->signing_key.len == KEY_PK_BYTES)) {
        memset(o, 0, sizeof *o);
        memcpy(o->pk, r->origin.data, KEY_PK_BYTES);
        o->idx = r->idx;
        snprintf(o->juris, sizeof o->juris, "%s", r->jurisdiction);
        o->head_seq = r->head_seq;
        if (r->head_hash.len == HASH_BYTES) {
            memcpy(o->head_hash, r->head_hash.data, HASH_BYTES);
        }
        o->head_time_ms = r->head_time_ms;
        o->head_received_ms = r->head_received_ms;
        if (r->box_key.len == BOX_PK_BYTES) {
            memcpy(o->box_key, r->box_key.data, BOX_PK_BYTES);
        }
        memcpy(o->signing_key, r->signing_key.len ? r->signing_key.data : r->origin.data,
               KEY_PK_BYTES);
        o->frozen = r->frozen;
        snprintf(o->frozen_reason, sizeof o->frozen_reason, "%s", r->frozen_reason);
        rc = 0;
    }
    return rc;
}

int chain_origin_save(struct store *s, MDB_txn *t, const struct origin_state *o) {
    Appeal__OriginRow r = APPEAL__ORIGIN_ROW__INIT;
    r.origin.data = (uint8_t *)o->pk;
    r.origin.len = KEY_PK_BYTES;
    r.idx = o->idx;
    r.jurisdiction = (char *)o->juris;
    r.head_seq = o->head_seq;
    r.head_hash.data = (uint8_t *)o->head_hash;
    r.head_hash.len = o->head_seq > 0 ? HASH_BYTES : 0;
    r.head_time_ms = o->head_time_ms;
    r.head_received_ms = o->head_received_ms;
    static const uint8_t zero[BOX_PK_BYTES];
    bool has_box = memcmp(o->box_key, zero, BOX_PK_BYTES) != 0;
    r.box_key.data = (uint8_t *)o->box_key;
    r.box_key.len = has_box ? BOX_PK_BYTES : 0;
    r.signing_key.data = (uint8_t *)o->signing_key;
    r.signing_key.len = memcmp(o->signing_key, o->pk, KEY_PK_BYTES) != 0 ? KEY_PK_BYTES : 0;
    r.frozen = o->frozen;
    r.frozen_reason = (char *)o->frozen_reason;
    return store_put_msg(t, s, DB_ORIGINS, o->pk, KEY_PK_BYTES, &r.base);
}

int chain_origin_get(struct store *s, MDB_txn *t, const uint8_t pk[KEY_PK_BYTES],
                     struct origin_state *o) {
    MDB_val v;
    int rc = store_get(t, s, DB_ORIGINS, pk, KEY_PK_BYTES, &v);
    return rc != 0 ? rc : origin_decode(&v, o);
}

int chain_origin_by_idx(struct store *s, MDB_txn *t, uint32_t idx, struct origin_state *o) {
    uint8_t k[4];
    be32_put(k, idx);
    MDB_val v;
    int rc = store_get(t, s, DB_ORIGIN_IDX, k, 4, &v);
    if (rc != 0) {
        return rc;
    }
    if (v.mv_size != KEY_PK_BYTES) {
        return APL_ECORRUPT;
    }
    uint8_t pk[KEY_PK_BYTES];
    memcpy(pk, v.mv_data, KEY_PK_BYTES);
    return chain_origin_get(s, t, pk, o);
}

int chain_origin_create(struct store *s, MDB_txn *t, const uint8_t pk[KEY_PK_BYTES],
                        struct origin_state *o) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_ORIGIN_IDX], &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    uint32_t idx = 1;
    if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == 4) {
        idx = be32_get(k.mv_data) + 1;
    }
    mdb_cursor_close(c);
    memset(o, 0, sizeof *o);
    memcpy(o->pk, pk, KEY_PK_BYTES);
    memcpy(o->signing_key, pk, KEY_PK_BYTES);
    o->idx = idx;
    uint8_t ik[4];
    be32_put(ik, idx);
    rc = store_put(t, s, DB_ORIGIN_IDX, ik, 4, pk, KEY_PK_BYTES, MDB_NOOVERWRITE);
    return rc != 0 ? rc : chain_origin_save(s, t, o);
}

int chain_get(struct store *s, MDB_txn *t, uint32_t idx, uint64_t seq, MDB_val *env) {
    uint8_t k[CHAIN_KEY_BYTES];
    chain_key(k, idx, seq);
    return store_get(t, s, DB_LOG, k, CHAIN_KEY_BYTES, env);
}

void chain_origin_event(struct origin_state *o, const Appeal__Body *b) {
    if (b->event_case == APPEAL__BODY__EVENT_GENESIS) {
        snprintf(o->juris, sizeof o->juris, "%s", b->genesis->jurisdiction);
        memcpy(o->box_key, b->genesis->box_key.data, BOX_PK_BYTES);
    } else if (b->event_case == APPEAL__BODY__EVENT_KEY_ROTATED) {
        memcpy(o->signing_key, b->key_rotated->new_key.data, KEY_PK_BYTES);
        if (b->key_rotated->new_box_key.len == BOX_PK_BYTES) {
            memcpy(o->box_key, b->key_rotated->new_box_key.data, BOX_PK_BYTES);
        }
    }
}

int chain_append(struct store *s, MDB_txn *t, struct origin_state *o, const uint8_t *env,
                 size_t len, const Appeal__Body *body, int64_t received_ms, bool defer_save) {
    /* The caller checked the record continues this chain (ingest) or made
     * it so (chain_sign_append): a record past a gap is never appended. */
    ASSERT(body->seq == o->head_seq + 1);
    ASSERT(len > 0 && len <= RECORD_BYTES_MAX);
    uint8_t k[CHAIN_KEY_BYTES];
    chain_key(k, o->idx, o->head_seq + 1);
    /* Catching up (an ingest: defer_save), this origin is often the
     * highest-numbered one, so its next record goes last in `log`:
     * MDB_APPEND then fills each page instead of splitting it, and LMDB
     * refuses it (MDB_KEYEXIST) when the key does not go last. */
    int rc =
        defer_save ? store_put(t, s, DB_LOG, k, CHAIN_KEY_BYTES, env, len, MDB_APPEND) : APL_EEXIST;
    if (rc == APL_EEXIST) {
        rc = store_put(t, s, DB_LOG, k, CHAIN_KEY_BYTES, env, len, MDB_NOOVERWRITE);
    }
    if (rc != 0) {
        return rc;
    }
    o->head_seq++;
    ASSERT(o->head_seq == body->seq);
    rec_hash(env, len, o->head_hash);
    o->head_time_ms = body->time_ms;
    o->head_received_ms = received_ms;
    chain_origin_event(o, body);
    return defer_save ? 0 : chain_origin_save(s, t, o);
}

int chain_sign_append(struct store *s, MDB_txn *t, struct origin_state *self,
                      const struct node_keys *k, Appeal__Body *body, int64_t now_ms, uint8_t **env,
                      size_t *len) {
    body->origin.data = (uint8_t *)k->sign_pk;
    body->origin.len = KEY_PK_BYTES;
    ASSERT(self->head_seq < UINT64_MAX);
    body->seq = self->head_seq + 1;
    static const uint8_t zero[HASH_BYTES];
    body->prev.data = self->head_seq > 0 ? self->head_hash : (uint8_t *)zero;
    body->prev.len = HASH_BYTES;
    body->time_ms = now_ms;
    if (memcmp(self->signing_key, k->signer_pk, KEY_PK_BYTES) != 0) {
        return APL_EAUTH; /* sign.key is not the key our log says signs now */
    }
    int rc = rec_sign_ahead(body, k->sign_sk, k->ahead, env, len);
    if (rc != 0) {
        return rc;
    }
    rc = chain_append(s, t, self, *env, *len, body, now_ms, false);
    if (rc != 0) {
        free(*env);
        *env = NULL;
    }
    return rc;
}

int chain_each(struct store *s, MDB_txn *t, uint32_t idx, uint64_t from_seq, chain_each_fn fn,
               void *arg) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_LOG], &c));
    if (rc != 0) {
        return rc;
    }
    uint8_t start[CHAIN_KEY_BYTES];
    chain_key(start, idx, from_seq);
    MDB_val k = {CHAIN_KEY_BYTES, start}, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    rc = 0;
    while (mrc == 0 && rc == 0) {
        if (k.mv_size != CHAIN_KEY_BYTES || be32_get(k.mv_data) != idx) {
            break;
        }
        ASSERT(be64_get((const uint8_t *)k.mv_data + 4) >= from_seq); /* MDB_SET_RANGE, then on */
        rc = fn(arg, be64_get((const uint8_t *)k.mv_data + 4), v.mv_data, v.mv_size);
        if (rc == 0) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = store_rc(mrc);
    }
    return rc;
}

void chain_key(uint8_t out[CHAIN_KEY_BYTES], uint32_t idx, uint64_t seq) {
    be32_put(out, idx);
    be64_put(out + 4, seq);
}
