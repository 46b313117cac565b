/*
 * chain.h: the per-origin record logs in the store, and this node's own log.
 *
 * Each origin (an Ed25519 public key) has a gap-free log 1..head_seq. The
 * origin's row keeps its high-water mark and the hash of its head record,
 * so that appending record n+1 checks `prev` against one stored hash.
 * chain_append() is the single place where a record enters the log; it is
 * called inside the writer's transaction, after the caller has checked
 * the record (its own, just signed; or a peer's, chain-verified).
 */
#ifndef APPEAL_CHAIN_H
#define APPEAL_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "keys.h"
#include "record.h"
#include "store.h"

/* A record's key in the `log` table: origin index, then seq (big-endian,
 * so that a cursor walks one origin's chain in order). */
enum { CHAIN_KEY_BYTES = 12 };
void chain_key(uint8_t out[CHAIN_KEY_BYTES], uint32_t idx, uint64_t seq);

struct origin_state {
    uint8_t pk[KEY_PK_BYTES];
    uint32_t idx;
    char juris[16];
    uint64_t head_seq;
    uint8_t head_hash[HASH_BYTES];
    int64_t head_time_ms;
    int64_t head_received_ms;
    uint8_t box_key[BOX_PK_BYTES];
    uint8_t signing_key[KEY_PK_BYTES]; /* verifies records after head */
    bool frozen;
    char frozen_reason[128];
};

/* Loads the origin `pk`; APL_ENOTFOUND if this node has never seen it. */
int chain_origin_get(struct store *s, MDB_txn *t, const uint8_t pk[KEY_PK_BYTES],
                     struct origin_state *o);
int chain_origin_by_idx(struct store *s, MDB_txn *t, uint32_t idx, struct origin_state *o);
/* Creates the origin with the next free index (head 0). */
int chain_origin_create(struct store *s, MDB_txn *t, const uint8_t pk[KEY_PK_BYTES],
                        struct origin_state *o);
int chain_origin_save(struct store *s, MDB_txn *t, const struct origin_state *o);

/* The exact envelope bytes of (idx, seq); valid until the txn ends. */
int chain_get(struct store *s, MDB_txn *t, uint32_t idx, uint64_t seq, MDB_val *env);

/* Stores `env` as record head_seq+1 of `o` and advances the head. The
 * caller has checked body->seq, body->prev and the signature. Origin-level
 * events (genesis, key rotation) update `o` here. The origin's row is
 * written too, unless `defer_save` (a caller appending a run saves it once
 * at the end with chain_origin_save); such a run is tried with MDB_APPEND
 * first (full pages when the origin's records go last in the table). */
int chain_append(struct store *s, MDB_txn *t, struct origin_state *o, const uint8_t *env,
                 size_t len, const Appeal__Body *body, int64_t received_ms, bool defer_save);

/* Applies an origin-level event (genesis, key rotation) to `o`. */
void chain_origin_event(struct origin_state *o, const Appeal__Body *body);

/* Fills origin, seq, prev and time of `body` for this node's next record,
 * signs it, and appends it. `*env` is malloc'd: the caller frees it. */
int chain_sign_append(struct store *s, MDB_txn *t, struct origin_state *self,
                      const struct node_keys *k, Appeal__Body *body, int64_t now_ms, uint8_t **env,
                      size_t *len);

/* Iterates the log of origin `idx` from `from_seq`: calls fn for each
 * record until it returns non-zero (which is returned) or the log ends. */
typedef int (*chain_each_fn)(void *arg, uint64_t seq, const uint8_t *env, size_t len);
int chain_each(struct store *s, MDB_txn *t, uint32_t idx, uint64_t from_seq, chain_each_fn fn,
               void *arg);

#endif
