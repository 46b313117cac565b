/*
 * auth.h: who may do what on a node (docs/security.md).
 *
 * Officials hold Ed25519 keys, granted roles (roles.h) by the log of the
 * node (grants.h). A client request is signed by the official's key over the exact bytes
 * of the Request, which carries the client's time and a random nonce. The
 * node refuses a request that is unsigned, signed by a key it has not
 * granted (or has revoked), outside the time window, signed before the
 * node started, or seen before (the replay cache); then it checks the
 * key's roles against the operation.
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
#include "grants.h"
#include "roles.h"
#include "store.pb-c.h"
#include "session.h"

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

/* Authenticates a request sent in a session (ClientRequest.session set;
 * session.h): the session, its MAC and counter on connection `pipe` at
 * monotonic `now_ms`, `node` (if given) this node's, then the grant of the
 * session's key as `t` sees it (a revoked key's session answers nothing).
 * Time and nonce are not checked: the counter is the replay protection. */
int auth_session_request(struct auth *a, struct sessions *ss, struct store *s, MDB_txn *t,
                         uint32_t idx, const Appeal__ClientRequest *cr, const Appeal__Request *q,
                         uint32_t pipe, int64_t now_ms, struct principal *p, struct errbuf *e);

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

/* Whether `p` may read personal data (on the node that owns the appeal). */
bool auth_reads_personal(const struct principal *p);

#endif
