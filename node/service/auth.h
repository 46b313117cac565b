/*
 * auth.h: who may do what on a node (docs/security.md).
 *
 * Officials hold Ed25519 keys. A node's log grants a key roles for a
 * jurisdiction (KeyGranted) and revokes it (KeyRevoked); the grants table
 * is derived from the log of every origin, so the audit trail is the log
 * itself and a record naming an actor its origin revoked is refused by
 * every node that replicates it.
 *
 * A client request is signed by the official's key over the exact bytes
 * of the Request, which carries the client's time and a random nonce. The
 * node refuses a request that is unsigned, signed by a key it has not
 * granted (or has revoked), outside the time window, signed before the
 * node started, or seen before (the replay cache); then it checks the
 * key's roles against the operation.
 *
 * Roles:
 *   registrar  registers appeals; reads the node's appeals, personal data included
 *   official   acts on appeals (assign, answer, close, ...); reads them too
 *   national   reads aggregates and appeal metadata, never personal data
 *   operator   reads node info, replication status and metrics only
 *   admin      all of the above, and grants and revokes keys
 * Every role but `national` is granted for the node's own jurisdiction;
 * `national` for the country (e.g. "KZ").
 */
#ifndef APPEAL_AUTH_H
#define APPEAL_AUTH_H

#include <lmdb.h>
#include <pthread.h>
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

enum role {
    ROLE_REGISTRAR = 1u << 0,
    ROLE_OFFICIAL = 1u << 1,
    ROLE_NATIONAL = 1u << 2,
    ROLE_OPERATOR = 1u << 3,
    ROLE_ADMIN = 1u << 4,
    ROLE_ALL = (1u << 5) - 1,
};

/* The bit of a role's name; 0 if there is no such role. */
uint32_t role_parse(const char *name);
/* The name of one role bit. */
const char *role_name(uint32_t bit);

/* Whether `juris` is a jurisdiction a key may be granted `role` for on the
 * node of `node_juris`; on false, `e` says why. */
bool grant_scope_ok(uint32_t role, const char *juris, const char *node_juris, struct errbuf *e);

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
 * strings are bounded by what record validation accepts (node/record.c:
 * label <= LABEL_BYTES_MAX, reason <= REASON_BYTES_MAX, a jurisdiction of
 * at most 6 bytes); GRANT_ROW_SLACK_BYTES covers the struct and the
 * arena's alignment (checked in auth.c). */
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
int auth_actor_revoked(struct store *s, MDB_txn *t, uint32_t idx, const Appeal__Body *b,
                       struct actor_cache *c, uint64_t *revoked, struct errbuf *e);

/* Who sent a request. */
struct principal {
    uint8_t pk[KEY_PK_BYTES];
    uint8_t id[KEY_ID_BYTES];
    uint32_t roles; /* with ROLE_ADMIN: every role */
    char kid[KEY_SHORT_HEX + 1];
};

/* Requests seen in the time window, by BLAKE2b(key || nonce): one table
 * per window-long generation of request times (a replay carries the same
 * time, so only its generation is searched), dropped when no acceptable
 * request can fall into it any more. */
struct replay_gen {
    int64_t gen;
    uint8_t (*slots)[16];
    size_t cap, used;
};

struct auth {
    pthread_mutex_t mu;
    struct replay_gen gens[4];
    size_t entries, entries_max;
    int64_t window_ms;  /* accepted: |request time - now| <= window */
    int64_t started_ms; /* requests signed before this are refused */
    /* The node's administrator (DIR/admin.key): every role even before the
     * log holds its grant (a node recovering its log from peers), unless
     * the log revokes it. */
    uint8_t admin_pk[KEY_PK_BYTES];
    /* The node's jurisdiction: a request must name it in `Request.node`. */
    char juris[16];
};

/* A request time further than this from the node's clock is reported as
 * out of range rather than as a number of seconds off (the node's clock
 * and the window are far smaller, so nothing here can overflow). */
#define AUTH_TIME_RANGE_MS ((int64_t)366 * 86400 * 1000)

int auth_init(struct auth *a, int64_t window_ms, size_t entries_max, int64_t now_ms);
void auth_fini(struct auth *a);

/* Authenticates a request: signature, time, replay, grant. `idx` is the
 * node's own origin index (its grants are the ones that count). */
int auth_request(struct auth *a, struct store *s, MDB_txn *t, uint32_t idx,
                 const Appeal__ClientRequest *cr, const Appeal__Request *q, int64_t now_ms,
                 struct principal *p, struct errbuf *e);

/* Checks the grant of `p->pk` in the log of origin `idx` as transaction
 * `t` sees it and sets `p->roles`: APL_EAUTH if the key has no grant (and
 * is not `admin_pk`) or was revoked; any error reading the grant denies.
 * The writer calls it again inside its write transaction, so that a key
 * revoked by a record committed before (even in the same batch) signs
 * nothing after its revocation. */
int auth_grant_check(struct store *s, MDB_txn *t, uint32_t idx,
                     const uint8_t admin_pk[KEY_PK_BYTES], struct principal *p, struct errbuf *e);

/* Whether `p` may perform `q`; APL_EFORBIDDEN with a message otherwise. */
int auth_allow(const struct principal *p, const Appeal__Request *q, struct errbuf *e);

/* The grants of origin `idx` (only that of `pk` when not NULL). */
int grant_list(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t *pk, struct arena *a,
               Appeal__GrantList **out);

/* Whether `p` may read personal data (on the node that owns the appeal). */
bool auth_reads_personal(const struct principal *p);

#endif
