/*
 * grants.h: the derived table `grants` (docs/security.md): which keys each
 * origin's log grants roles to and revokes, folded from KeyGranted and
 * KeyRevoked records of every origin, so the audit trail is the log itself;
 * and the one check "this record's actor was revoked by its origin".
 */
#ifndef APPEAL_GRANTS_H
#define APPEAL_GRANTS_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "bounds.h"
#include "err.h"
#include "keys.h"
#include "pbdecode.h"
#include "record.pb-c.h"
#include "store.h"
#include "store.pb-c.h"

/* Derived table `grants`: applies a KeyGranted or KeyRevoked record of the
 * origin with index `idx` (other events: nothing). */
int grant_apply(struct store *s, MDB_txn *t, uint32_t idx, uint64_t seq, const Appeal__Body *b);
/* The grant of key `pk` in the log of origin `idx`; APL_ENOTFOUND if none. */
int grant_get(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t pk[KEY_PK_BYTES],
              struct arena *a, Appeal__GrantRow **out);
/* The revocation seq of an actor (a public key) in origin `idx` in
 * `*revoked`; 0 if the key is in force or unknown. Any error reading the
 * grant (APL_ECORRUPT, storage errors) is returned: the caller must then
 * treat the actor as revoked (fail closed), never as in force. */
int grant_revoked_seq(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t actor[KEY_PK_BYTES],
                      uint64_t *revoked);

/* Bytes of arena that decode any grant row the node can hold: a row's
 * strings are bounded by what record validation accepts (node/domain/record.c:
 * label <= LABEL_BYTES_MAX, reason <= REASON_BYTES_MAX, a jurisdiction of
 * at most 6 bytes); GRANT_ROW_SLACK_BYTES covers the struct and the
 * arena's alignment (checked in grants.c). */
enum {
    GRANT_ROW_SLACK_BYTES = 512,
    GRANT_ROW_ARENA_BYTES =
        GRANT_ROW_SLACK_BYTES + KEY_PK_BYTES + LABEL_BYTES_MAX + REASON_BYTES_MAX,
};

/* The one check "this record's actor was revoked by its origin before it",
 * for replication (repl ingest) and `appeal-node verify` alike, so that
 * both give one verdict on a log. `c` remembers the last actor's
 * revocation across a walk of one origin's records in order (runs are
 * mostly one official's work); zero it at the start of each origin. The
 * grants table must hold the origin's records before `b` (the walk folds
 * them in order, or the log is already folded). 0: the actor is in force,
 * unknown or absent. APL_EFORBIDDEN: revoked before `b`; `*revoked` is the
 * seq of the revocation and `e` says "seq N acts as key K, revoked at seq
 * R" (K: the first KEY_SHORT_HEX hex digits of the public key). Any error
 * reading the grant is returned as is: callers refuse the record (fail
 * closed). */
struct actor_cache {
    uint8_t actor[KEY_PK_BYTES];
    uint64_t revoked;
    bool have;
};
int grant_actor_revoked(struct store *s, MDB_txn *t, uint32_t idx, const Appeal__Body *b,
                        struct actor_cache *c, uint64_t *revoked, struct errbuf *e);

/* The grants of origin `idx` (only that of `pk` when not NULL). */
int grant_list(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t *pk, struct arena *a,
               Appeal__GrantList **out);

#endif
