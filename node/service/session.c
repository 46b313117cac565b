#include "session.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "bounds.h"
#include "util.h"

int session_init(struct sessions *s, uint32_t max, uint32_t per_key_max, int64_t ttl_ms) {
    ASSERT(max > 0 && per_key_max > 0 && ttl_ms > 0);
    memset(s, 0, sizeof *s);
    s->slots = calloc(max, sizeof *s->slots);
    if (s->slots == NULL) {
        return APL_ENOMEM;
    }
    s->max = max;
    s->per_key_max = per_key_max;
    s->ttl_ms = ttl_ms;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->slots);
        s->slots = NULL;
        return APL_ENOMEM;
    }
    return 0;
}

static void wipe(struct session_slot *sl) {
    sodium_memzero(sl, sizeof *sl);
}

void session_fini(struct sessions *s) {
    if (s->slots == NULL) {
        return;
    }
    sodium_memzero(s->slots, (size_t)s->max * sizeof *s->slots);
    free(s->slots);
    s->slots = NULL;
    pthread_mutex_destroy(&s->mu);
}

/* A free slot for a new session of `pk` on `pipe`, with mu held: the
 * connection's old session is replaced, expired ones are reclaimed on the
 * way; NULL with `*why` when the table or the key's share is full. */
static struct session_slot *slot_for(struct sessions *s, const uint8_t pk[KEY_PK_BYTES],
                                     uint32_t pipe, int64_t now_ms, const char **why) {
    struct session_slot *free_one = NULL;
    uint32_t of_key = 0;
    for (uint32_t i = 0; i < s->max; i++) {
        struct session_slot *sl = &s->slots[i];
        if (sl->used && (sl->pipe == pipe || sl->expires_ms <= now_ms)) {
            wipe(sl);
        }
        if (!sl->used) {
            free_one = free_one != NULL ? free_one : sl;
            continue;
        }
        of_key += memcmp(sl->pk, pk, KEY_PK_BYTES) == 0;
    }
    if (of_key >= s->per_key_max) {
        *why = "too many sessions for this key: close some connections, or wait for them to "
               "expire";
        return NULL;
    }
    if (free_one == NULL) {
        *why = "too many sessions on this node: try again later, or sign each request";
    }
    return free_one;
}

int session_open(struct sessions *s, const uint8_t pk[KEY_PK_BYTES], uint32_t pipe,
                 const uint8_t client_kx[SESSION_KX_BYTES], int64_t now_ms,
                 uint8_t id[SESSION_ID_BYTES], uint8_t node_kx[SESSION_KX_BYTES],
                 struct errbuf *e) {
    uint8_t kx_sk[crypto_kx_SECRETKEYBYTES];
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    crypto_kx_keypair(node_kx, kx_sk);
    int rc = crypto_kx_server_session_keys(rx, tx, node_kx, kx_sk, client_kx);
    sodium_memzero(kx_sk, sizeof kx_sk);
    sodium_memzero(tx, sizeof tx);
    if (rc != 0) {
        sodium_memzero(rx, sizeof rx);
        return err_set(e, APL_EAUTH, "the session's client key is unusable (a low-order point)");
    }
    const char *why = NULL;
    pthread_mutex_lock(&s->mu);
    struct session_slot *sl = slot_for(s, pk, pipe, now_ms, &why);
    if (sl != NULL) {
        uint32_t idx = (uint32_t)(sl - s->slots);
        for (int i = 0; i < 4; i++) {
            id[i] = (uint8_t)(idx >> (8 * i));
        }
        randombytes_buf(id + 4, SESSION_ID_BYTES - 4);
        uint8_t tr[SESSION_TRANSCRIPT_BYTES];
        client_session_transcript(id, client_kx, node_kx, pk, tr);
        client_session_key(rx, tr, sl->key);
        memcpy(sl->id, id, SESSION_ID_BYTES);
        memcpy(sl->pk, pk, KEY_PK_BYTES);
        sl->pipe = pipe;
        sl->expires_ms = now_ms + s->ttl_ms;
        sl->highest = 0;
        sl->seen = 0;
        sl->used = true;
    }
    pthread_mutex_unlock(&s->mu);
    sodium_memzero(rx, sizeof rx);
    return sl != NULL ? 0 : err_set(e, APL_EUNAVAIL, "%s", why);
}

/* Records `counter` in the window of `sl` (mu held), or says why not. */
static int window_take(struct session_slot *sl, uint64_t counter, struct errbuf *e) {
    if (counter > sl->highest) {
        uint64_t shift = counter - sl->highest;
        sl->seen = shift >= SESSION_WINDOW ? 1 : (sl->seen << shift) | 1;
        sl->highest = counter;
        return 0;
    }
    uint64_t back = sl->highest - counter;
    if (back >= SESSION_WINDOW) {
        return err_set(e, APL_EAUTH,
                       "reordered request: counter %llu is older than the session's window "
                       "(highest %llu, window %d); nothing was done",
                       (unsigned long long)counter, (unsigned long long)sl->highest,
                       SESSION_WINDOW);
    }
    if (sl->seen & ((uint64_t)1 << back)) {
        return err_set(e, APL_EAUTH,
                       "replayed request: counter %llu of this session was used already; "
                       "nothing was done",
                       (unsigned long long)counter);
    }
    sl->seen |= (uint64_t)1 << back;
    return 0;
}

/* The session named by `id`, with mu held; NULL if none. */
static struct session_slot *find(struct sessions *s, const uint8_t id[SESSION_ID_BYTES]) {
    uint32_t idx = 0;
    for (int i = 0; i < 4; i++) {
        idx |= (uint32_t)id[i] << (8 * i);
    }
    if (idx >= s->max || !s->slots[idx].used ||
        sodium_memcmp(s->slots[idx].id, id, SESSION_ID_BYTES) != 0) {
        return NULL;
    }
    return &s->slots[idx];
}

int session_check(struct sessions *s, const uint8_t *id, size_t id_len, uint32_t pipe,
                  uint64_t counter, const uint8_t *mac, size_t mac_len, const uint8_t *request,
                  size_t request_len, int64_t now_ms, uint8_t pk[KEY_PK_BYTES], struct errbuf *e) {
    if (id_len != SESSION_ID_BYTES || mac_len != SESSION_MAC_BYTES || counter == 0) {
        return err_set(e, APL_EAUTH,
                       "malformed session request: a %d-byte session id, a counter above 0 and "
                       "a %d-byte MAC",
                       SESSION_ID_BYTES, SESSION_MAC_BYTES);
    }
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    struct session_slot *sl = find(s, id);
    uint8_t want[SESSION_MAC_BYTES];
    if (sl == NULL) {
        rc = err_set(e, APL_EAUTH,
                     "unknown session (closed, expired, revoked or never opened): open a new "
                     "one");
    } else if (sl->pipe != pipe) {
        rc = err_set(e, APL_EAUTH, "the session belongs to another connection: open one on this");
    } else if (sl->expires_ms <= now_ms) {
        wipe(sl);
        rc = err_set(e, APL_EAUTH, "the session expired (after %lld s): open a new one",
                     (long long)(s->ttl_ms / 1000));
    } else {
        client_session_mac(sl->key, counter, request, request_len, want);
        if (sodium_memcmp(want, mac, SESSION_MAC_BYTES) != 0) {
            rc = err_set(e, APL_EAUTH, "bad MAC on a session request: refused");
        } else if ((rc = window_take(sl, counter, e)) == 0) {
            memcpy(pk, sl->pk, KEY_PK_BYTES);
        }
    }
    pthread_mutex_unlock(&s->mu);
    sodium_memzero(want, sizeof want);
    return rc;
}

void session_drop_pipe(struct sessions *s, uint32_t pipe) {
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < s->max; i++) {
        if (s->slots[i].used && s->slots[i].pipe == pipe) {
            wipe(&s->slots[i]);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

uint32_t session_drop_key(struct sessions *s, const uint8_t pk[KEY_PK_BYTES]) {
    uint32_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < s->max; i++) {
        if (s->slots[i].used && memcmp(s->slots[i].pk, pk, KEY_PK_BYTES) == 0) {
            wipe(&s->slots[i]);
            n++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
