#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "record.h"
#include "util.h"

/* ---- the replay cache ---- */

int auth_init(struct auth *a, int64_t window_ms, size_t entries_max, int64_t now_ms) {
    memset(a, 0, sizeof *a);
    a->window_ms = window_ms;
    a->entries_max = entries_max;
    a->started_ms = now_ms;
    for (size_t i = 0; i < sizeof a->gens / sizeof a->gens[0]; i++) {
        a->gens[i].gen = INT64_MIN;
    }
    return pthread_mutex_init(&a->mu, NULL) == 0 ? 0 : APL_ENOMEM;
}

void auth_fini(struct auth *a) {
    for (size_t i = 0; i < sizeof a->gens / sizeof a->gens[0]; i++) {
        free(a->gens[i].slots);
    }
    pthread_mutex_destroy(&a->mu);
}

static bool slot_empty(const uint8_t s[16]) {
    static const uint8_t zero[16];
    return memcmp(s, zero, 16) == 0;
}

static size_t slot_of(const uint8_t d[16], size_t cap) {
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return (size_t)(h & (cap - 1));
}

/* Inserts `d` unless present; false if it was there. */
static bool gen_insert(struct replay_gen *g, const uint8_t d[16]) {
    for (size_t i = slot_of(d, g->cap);; i = (i + 1) & (g->cap - 1)) {
        if (slot_empty(g->slots[i])) {
            memcpy(g->slots[i], d, 16);
            g->used++;
            return true;
        }
        if (memcmp(g->slots[i], d, 16) == 0) {
            return false;
        }
    }
}

static int gen_grow(struct replay_gen *g) {
    size_t cap = g->cap ? g->cap * 2 : 1024;
    uint8_t(*slots)[16] = calloc(cap, 16);
    if (slots == NULL) {
        return APL_ENOMEM;
    }
    struct replay_gen n = {.gen = g->gen, .slots = slots, .cap = cap};
    for (size_t i = 0; i < g->cap; i++) {
        if (!slot_empty(g->slots[i])) {
            gen_insert(&n, g->slots[i]);
        }
    }
    free(g->slots);
    *g = n;
    return 0;
}

/* The table of generation `gen`, reusing one no request can reach any more. */
static struct replay_gen *gen_for(struct auth *a, int64_t gen, int64_t now_gen) {
    struct replay_gen *free_one = NULL;
    for (size_t i = 0; i < sizeof a->gens / sizeof a->gens[0]; i++) {
        struct replay_gen *g = &a->gens[i];
        if (g->gen == gen) {
            return g;
        }
        if (g->gen < now_gen - 1 && free_one == NULL) {
            free_one = g;
        }
    }
    if (free_one != NULL) {
        a->entries -= free_one->used;
        free(free_one->slots);
        *free_one = (struct replay_gen){.gen = gen};
    }
    return free_one;
}

/* 0 if (key, nonce) at `time_ms` is new (and is now remembered). */
static int replay_check(struct auth *a, const uint8_t *key, const uint8_t *nonce, size_t nonce_len,
                        int64_t time_ms, int64_t now_ms, struct errbuf *e) {
    uint8_t d[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof d);
    crypto_generichash_update(&st, key, KEY_PK_BYTES);
    crypto_generichash_update(&st, nonce, nonce_len);
    crypto_generichash_final(&st, d, sizeof d);
    if (slot_empty(d)) {
        d[0] = 1;
    }
    int64_t w = a->window_ms > 0 ? a->window_ms : 1;
    int64_t gen = time_ms / w, now_gen = now_ms / w;
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    struct replay_gen *g = gen_for(a, gen, now_gen);
    if (g == NULL || a->entries >= a->entries_max) {
        rc = err_set(e, APL_EUNAVAIL,
                     "too many requests in the replay window; try again in a few seconds");
    } else if ((g->used + 1) * 2 > g->cap && gen_grow(g) != 0) {
        rc = err_set(e, APL_EUNAVAIL, "out of memory for the replay cache");
    } else if (!gen_insert(g, d)) {
        rc = err_set(e, APL_EAUTH, "replayed request: this nonce was used already");
    } else {
        a->entries++;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* ---- requests ---- */

/* The request's time against the node's clock and start. The window is
 * checked without subtracting the two (any int64 is a valid wire value:
 * `time_ms - now_ms` could overflow). */
static int check_time(const struct auth *a, int64_t time_ms, int64_t now_ms, struct errbuf *e) {
    if (time_ms < now_ms - a->window_ms || time_ms > now_ms + a->window_ms) {
        if (time_ms < now_ms - AUTH_TIME_RANGE_MS || time_ms > now_ms + AUTH_TIME_RANGE_MS) {
            return err_set(e, APL_EAUTH,
                           "request time out of range: more than %lld days from the node's "
                           "clock (the window is %lld s): check the clocks",
                           (long long)(AUTH_TIME_RANGE_MS / 86400000),
                           (long long)(a->window_ms / 1000));
        }
        return err_set(e, APL_EAUTH,
                       "request time is %+lld s from the node's clock (the window is %lld s): "
                       "check the clocks",
                       (long long)((time_ms - now_ms) / 1000), (long long)(a->window_ms / 1000));
    }
    if (time_ms < a->started_ms) {
        return err_set(e, APL_EAUTH, "request signed before the node started: sign it again");
    }
    return 0;
}

int auth_grant_check(struct store *s, MDB_txn *t, uint32_t idx,
                     const uint8_t admin_pk[KEY_PK_BYTES], struct principal *p, struct errbuf *e) {
    uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena ga;
    arena_on(&ga, buf, sizeof buf);
    Appeal__GrantRow *g;
    p->roles = 0;
    int rc = grant_get(s, t, idx, p->pk, &ga, &g);
    static const Appeal__GrantRow admin = {
        .base = PROTOBUF_C_MESSAGE_INIT(&appeal__grant_row__descriptor), .roles = ROLE_ADMIN};
    if (rc == APL_ENOTFOUND && memcmp(p->pk, admin_pk, KEY_PK_BYTES) == 0) {
        g = (Appeal__GrantRow *)&admin;
        rc = 0;
    }
    if (rc == APL_ENOTFOUND) {
        return err_set(e, APL_EAUTH, "key %s has no grant on this node", p->kid);
    }
    if (rc != 0) { /* fail closed: a grant we cannot read grants nothing */
        return err_set(e, rc, "cannot read the grant of key %s: refused", p->kid);
    }
    if (g->revoked_seq != 0) {
        return err_set(e, APL_EAUTH, "key %s was revoked (log seq %llu)%s%s", p->kid,
                       (unsigned long long)g->revoked_seq, g->revoked_reason[0] ? ": " : "",
                       g->revoked_reason);
    }
    p->roles = g->roles & ROLE_ADMIN ? ROLE_ALL : g->roles;
    return 0;
}

int auth_request(struct auth *a, struct store *s, MDB_txn *t, uint32_t idx,
                 const Appeal__ClientRequest *cr, const Appeal__Request *q, int64_t now_ms,
                 struct principal *p, struct errbuf *e) {
    memset(p, 0, sizeof *p);
    if (cr->key.len == 0 && cr->sig.len == 0) {
        return err_set(e, APL_EAUTH,
                       "unsigned request: sign it with an official's key (appealctl --key FILE)");
    }
    if (cr->key.len != KEY_PK_BYTES || cr->sig.len != SIG_BYTES) {
        return err_set(e, APL_EAUTH, "malformed signature: a %d-byte key and a %d-byte signature",
                       KEY_PK_BYTES, SIG_BYTES);
    }
    memcpy(p->pk, cr->key.data, KEY_PK_BYTES);
    key_id(p->pk, p->id);
    util_hex(p->pk, KEY_SHORT_HEX / 2, p->kid); /* as appealctl keygen shows it */
    if (crypto_sign_verify_detached(cr->sig.data, cr->request.data, cr->request.len,
                                    cr->key.data) != 0) {
        return err_set(e, APL_EAUTH, "bad signature from key %s", p->kid);
    }
    if (q->node[0] == '\0') {
        return err_set(e, APL_EAUTH,
                       "request not bound to a node: sign it for this node (%s); "
                       "update the client",
                       a->juris);
    }
    if (strcmp(q->node, a->juris) != 0) {
        return err_set(e, APL_EAUTH, "request signed for %.16s, not for this node (%s)", q->node,
                       a->juris);
    }
    int rc = check_time(a, q->time_ms, now_ms, e);
    if (rc != 0) {
        return rc;
    }
    if (q->nonce.len < 16 || q->nonce.len > 64) {
        return err_set(e, APL_EAUTH, "request without a nonce of 16 to 64 bytes");
    }
    rc = auth_grant_check(s, t, idx, a->admin_pk, p, e);
    if (rc != 0) {
        return rc;
    }
    return replay_check(a, p->pk, q->nonce.data, q->nonce.len, q->time_ms, now_ms, e);
}

int auth_session_request(struct auth *a, struct sessions *ss, struct store *s, MDB_txn *t,
                         uint32_t idx, const Appeal__ClientRequest *cr, const Appeal__Request *q,
                         uint32_t pipe, int64_t now_ms, struct principal *p, struct errbuf *e) {
    memset(p, 0, sizeof *p);
    if (cr->key.len != 0 || cr->sig.len != 0) {
        return err_set(e, APL_EAUTH, "a request is either signed or sent in a session, not both");
    }
    int rc = session_check(ss, cr->session.data, cr->session.len, pipe, cr->counter, cr->mac.data,
                           cr->mac.len, cr->request.data, cr->request.len, now_ms, p->pk, e);
    if (rc != 0) {
        return rc;
    }
    key_id(p->pk, p->id);
    util_hex(p->pk, KEY_SHORT_HEX / 2, p->kid);
    if (q->node[0] != '\0' && strcmp(q->node, a->juris) != 0) {
        return err_set(e, APL_EAUTH, "request signed for %.16s, not for this node (%s)", q->node,
                       a->juris);
    }
    if (q->op_case == APPEAL__REQUEST__OP_SESSION_OPEN) {
        return err_set(e, APL_EAUTH, "a session is opened by a signed request, not in a session");
    }
    return auth_grant_check(s, t, idx, a->admin_pk, p, e);
}

static uint32_t roles_for(const Appeal__Request *q) {
    switch (q->op_case) {
    case APPEAL__REQUEST__OP_FILE:
        return ROLE_REGISTRAR | ROLE_CHANNEL;
    case APPEAL__REQUEST__OP_ACT:
        return ROLE_OFFICIAL;
    case APPEAL__REQUEST__OP_SHOW:
    case APPEAL__REQUEST__OP_LIST:
    case APPEAL__REQUEST__OP_OVERDUE:
    case APPEAL__REQUEST__OP_QUERY:
        return ROLE_REGISTRAR | ROLE_OFFICIAL | ROLE_NATIONAL;
    case APPEAL__REQUEST__OP_CLUSTER_STATUS:
    case APPEAL__REQUEST__OP_METRICS:
        return ROLE_OPERATOR | ROLE_NATIONAL;
    case APPEAL__REQUEST__OP_GRANT:
    case APPEAL__REQUEST__OP_REVOKE:
        return ROLE_ADMIN;
    case APPEAL__REQUEST__OP_NOTIFICATIONS:
        return ROLE_OFFICIAL | ROLE_ADMIN;
    case APPEAL__REQUEST__OP_GRANTS:
        return q->grants->mine ? ROLE_ALL : ROLE_ADMIN | ROLE_OPERATOR;
    case APPEAL__REQUEST__OP_SESSION_OPEN: /* any granted key; each request is checked */
    default:                               /* info */
        return ROLE_ALL;
    }
}

int auth_allow(const struct principal *p, const Appeal__Request *q, struct errbuf *e) {
    uint32_t need = roles_for(q);
    if ((p->roles & need) != 0) {
        return 0;
    }
    char names[96] = "";
    size_t used = 0;
    for (uint32_t bit = 1; bit <= ROLE_LAST && used < sizeof names; bit <<= 1) {
        if (need & bit) {
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? " or " : "",
                                     role_name(bit));
        }
    }
    char have[96] = "";
    used = 0;
    for (uint32_t bit = 1; bit <= ROLE_LAST && used < sizeof have; bit <<= 1) {
        if (p->roles & bit) {
            used += (size_t)snprintf(have + used, sizeof have - used, "%s%s", used ? ", " : "",
                                     role_name(bit));
        }
    }
    return err_set(e, APL_EFORBIDDEN, "key %s (%s) may not do this: it needs the %s role", p->kid,
                   have[0] ? have : "no role", names);
}

bool auth_reads_personal(const struct principal *p) {
    return (p->roles & (ROLE_REGISTRAR | ROLE_OFFICIAL)) != 0;
}
