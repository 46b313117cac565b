/*
 * session.h: authenticated sessions on the client API (docs/security.md
 * "Sessions", ADR 0021).
 *
 * An official opens a session with one signed request (the usual Ed25519
 * checks: signature, node, time, nonce, grant) carrying an ephemeral
 * X25519 key; the node answers with its own ephemeral key and a session id,
 * signed by its origin key, and both derive a MAC key (crypto_kx, then
 * BLAKE2b over the transcript). Each later request on that connection
 * carries the session id, a counter and a BLAKE2b MAC instead of an
 * Ed25519 signature: about a microsecond to check instead of ~50.
 *
 * What the table promises:
 *  - a session is bound to the connection (nng pipe) it was opened on: a
 *    request naming it on another connection is refused, and closing the
 *    connection wipes it (session_drop_pipe); one session per connection
 *    (a second open replaces the first);
 *  - a counter is accepted once, and only if it is above the highest seen
 *    or within SESSION_WINDOW below it (the anti-replay window of IPsec,
 *    RFC 4303 3.4.3): the node's API contexts may check the requests of
 *    one connection in another order than they were sent, so strict order
 *    would refuse a pipelining client's own requests. A counter seen
 *    before is "replayed", one below the window "older than the window";
 *    neither changes anything;
 *  - the MAC is checked before the counter is recorded: a forged request
 *    does not move the window;
 *  - a session ends `ttl_ms` after it was opened (monotonic clock), when
 *    its connection closes, or when its key is revoked
 *    (session_drop_key); its key is wiped then. The key's grant is still
 *    checked on every request, and again by the writer inside its write
 *    transaction, so a revocation wins even over a session not yet dropped;
 *  - at most SESSIONS_MAX open, SESSIONS_PER_KEY_MAX per official's key;
 *    expired ones are reclaimed first, then a new one is refused.
 *
 * All functions take the table's lock; any thread.
 */
#ifndef APPEAL_SESSION_H
#define APPEAL_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "keys.h"

struct session_slot {
    bool used;
    uint8_t id[SESSION_ID_BYTES]; /* slot index (LE32) || 12 random bytes */
    uint8_t pk[KEY_PK_BYTES];     /* the official's key */
    uint8_t key[SESSION_KEY_BYTES];
    uint32_t pipe;      /* nng pipe id of its connection */
    int64_t expires_ms; /* monotonic */
    uint64_t highest;   /* highest counter accepted; 0: none yet */
    uint64_t seen;      /* bit i: counter highest - i was accepted */
};

struct sessions {
    pthread_mutex_t mu;
    struct session_slot *slots; /* max */
    uint32_t max, per_key_max;
    int64_t ttl_ms;
};

int session_init(struct sessions *s, uint32_t max, uint32_t per_key_max, int64_t ttl_ms);
/* Wipes every key. */
void session_fini(struct sessions *s);

/* Opens a session for official `pk` on connection `pipe` with the
 * client's X25519 key: fills `id` and `node_kx`. APL_EAUTH for an
 * unusable client key, APL_EUNAVAIL when the table or the key's share is
 * full (nothing changes then). */
int session_open(struct sessions *s, const uint8_t pk[KEY_PK_BYTES], uint32_t pipe,
                 const uint8_t client_kx[SESSION_KX_BYTES], int64_t now_ms,
                 uint8_t id[SESSION_ID_BYTES], uint8_t node_kx[SESSION_KX_BYTES], struct errbuf *e);

/* Authenticates one request: the session `id` (of `id_len` bytes) on
 * `pipe`, not expired, `mac` over (counter, request) right, the counter
 * new and within the window. Sets `pk` to the session's official's key.
 * APL_EAUTH with a sentence otherwise; a refused request changes nothing
 * but wipes an expired session. */
int session_check(struct sessions *s, const uint8_t *id, size_t id_len, uint32_t pipe,
                  uint64_t counter, const uint8_t *mac, size_t mac_len, const uint8_t *request,
                  size_t request_len, int64_t now_ms, uint8_t pk[KEY_PK_BYTES], struct errbuf *e);

/* Wipes the session of connection `pipe` (it closed). */
void session_drop_pipe(struct sessions *s, uint32_t pipe);
/* Wipes every session of official `pk` (revoked); returns how many. */
uint32_t session_drop_key(struct sessions *s, const uint8_t pk[KEY_PK_BYTES]);

#endif
