#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "record.h"
#include "util.h"

static const char *const role_names[] = {"registrar", "official", "national", "operator", "admin"};

uint32_t role_parse(const char *name) {
    for (uint32_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (strcmp(name, role_names[i]) == 0) {
            return 1u << i;
        }
    }
    return 0;
}

const char *role_name(uint32_t bit) {
    for (uint32_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (bit == 1u << i) {
            return role_names[i];
        }
    }
    return "?";
}

bool grant_scope_ok(uint32_t role, const char *juris, const char *node_juris, struct errbuf *e) {
    if (role == ROLE_NATIONAL) {
        size_t country = strcspn(node_juris, "-");
        if (strlen(juris) != country || strncmp(juris, node_juris, country) != 0) {
            err_set(e, APL_EINVAL, "the national role is granted for the country (%.*s), not %s",
                    (int)country, node_juris, juris);
            return false;
        }
        return true;
    }
    if (strcmp(juris, node_juris) != 0) {
        err_set(e, APL_EINVAL,
                "this node grants the %s role only for its own jurisdiction %s, not %s",
                role_name(role), node_juris, juris);
        return false;
    }
    return true;
}

/* ---- the grants table ---- */

enum { GRANT_KEY_BYTES = 4 + KEY_ID_BYTES };

static void grant_key(uint8_t k[GRANT_KEY_BYTES], uint32_t idx, const uint8_t id[KEY_ID_BYTES]) {
    be32_put(k, idx);
    memcpy(k + 4, id, KEY_ID_BYTES);
}

static int grant_get_by_id(struct store *s, MDB_txn *t, uint32_t idx,
                           const uint8_t id[KEY_ID_BYTES], struct arena *a,
                           Appeal__GrantRow **out) {
    uint8_t k[GRANT_KEY_BYTES];
    grant_key(k, idx, id);
    return store_get_msg(t, s, DB_GRANTS, k, sizeof k, &appeal__grant_row__descriptor, a,
                         (ProtobufCMessage **)out);
}

int grant_get(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t pk[KEY_PK_BYTES],
              struct arena *a, Appeal__GrantRow **out) {
    uint8_t id[KEY_ID_BYTES];
    key_id(pk, id);
    return grant_get_by_id(s, t, idx, id, a, out);
}

/* A grant row holds: the struct, the key, the jurisdiction, the label and
 * the revocation reason, each allocation aligned to 16 bytes. */
_Static_assert(sizeof(Appeal__GrantRow) + 5 * 16 + 16 <= GRANT_ROW_SLACK_BYTES,
               "GRANT_ROW_ARENA_BYTES must hold the longest grant row the node accepts");

int grant_revoked_seq(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t actor[KEY_PK_BYTES],
                      uint64_t *revoked) {
    uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    Appeal__GrantRow *g;
    *revoked = 0;
    int rc = grant_get(s, t, idx, actor, &a, &g);
    if (rc == APL_ENOTFOUND) {
        return 0;
    }
    if (rc == 0) {
        *revoked = g->revoked_seq;
    }
    return rc;
}

int grant_apply(struct store *s, MDB_txn *t, uint32_t idx, uint64_t seq, const Appeal__Body *b) {
    const ProtobufCBinaryData *pk;
    if (b->event_case == APPEAL__BODY__EVENT_KEY_GRANTED) {
        pk = &b->key_granted->key;
    } else if (b->event_case == APPEAL__BODY__EVENT_KEY_REVOKED) {
        pk = &b->key_revoked->key;
    } else {
        return 0;
    }
    uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    uint8_t id[KEY_ID_BYTES], k[GRANT_KEY_BYTES];
    key_id(pk->data, id);
    grant_key(k, idx, id);
    Appeal__GrantRow fresh = APPEAL__GRANT_ROW__INIT, *g = &fresh;
    int rc = grant_get_by_id(s, t, idx, id, &a, &g);
    if (rc == APL_ENOTFOUND) {
        g = &fresh;
        g->key = *pk;
    } else if (rc != 0) {
        return rc;
    }
    if (b->event_case == APPEAL__BODY__EVENT_KEY_REVOKED) {
        if (g->revoked_seq == 0) {
            g->revoked_seq = seq;
            g->revoked_reason = b->key_revoked->reason;
        }
    } else if (g->revoked_seq == 0) { /* a revoked key stays revoked */
        g->roles |= role_parse(b->key_granted->role);
        g->jurisdiction = b->key_granted->jurisdiction;
        if (b->key_granted->label[0] != '\0') {
            g->label = b->key_granted->label;
        }
        if (g->granted_seq == 0) {
            g->granted_seq = seq;
        }
    }
    return store_put_msg(t, s, DB_GRANTS, k, sizeof k, &g->base);
}

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

static uint32_t roles_for(const Appeal__Request *q) {
    switch (q->op_case) {
    case APPEAL__REQUEST__OP_FILE:
        return ROLE_REGISTRAR;
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
    case APPEAL__REQUEST__OP_GRANTS:
        return q->grants->mine ? ROLE_ALL : ROLE_ADMIN | ROLE_OPERATOR;
    default: /* info */
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
    for (uint32_t bit = 1; bit < ROLE_ALL && used < sizeof names; bit <<= 1) {
        if (need & bit) {
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? " or " : "",
                                     role_name(bit));
        }
    }
    char have[96] = "";
    used = 0;
    for (uint32_t bit = 1; bit < ROLE_ALL && used < sizeof have; bit <<= 1) {
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

static Appeal__Grant *grant_view(const Appeal__GrantRow *g, struct arena *a) {
    Appeal__Grant *v = arena_new(a, sizeof *v);
    if (v == NULL) {
        return NULL;
    }
    appeal__grant__init(v);
    v->key = g->key;
    v->jurisdiction = g->jurisdiction;
    v->label = g->label;
    v->granted_seq = g->granted_seq;
    v->revoked_seq = g->revoked_seq;
    v->revoked_reason = g->revoked_reason;
    v->roles = arena_new(a, 5 * sizeof *v->roles);
    if (v->roles == NULL) {
        return NULL;
    }
    for (uint32_t bit = 1; bit < ROLE_ALL; bit <<= 1) {
        if (g->roles & bit) {
            v->roles[v->n_roles++] = (char *)role_name(bit);
        }
    }
    return v;
}

int grant_list(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t *pk, struct arena *a,
               Appeal__GrantList **out) {
    Appeal__GrantList *l = arena_new(a, sizeof *l);
    if (l == NULL) {
        return APL_ENOMEM;
    }
    appeal__grant_list__init(l);
    *out = l;
    if (pk != NULL) {
        Appeal__GrantRow *g;
        int rc = grant_get(s, t, idx, pk, a, &g);
        if (rc == APL_ENOTFOUND) {
            return 0;
        }
        l->grants = arena_new(a, sizeof *l->grants);
        if (rc != 0 || l->grants == NULL || (l->grants[0] = grant_view(g, a)) == NULL) {
            return rc ? rc : APL_ETOOBIG;
        }
        l->n_grants = 1;
        return 0;
    }
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_GRANTS], &c));
    if (rc != 0) {
        return rc;
    }
    uint8_t prefix[4];
    be32_put(prefix, idx);
    MDB_val k = {.mv_size = sizeof prefix, .mv_data = prefix}, v;
    size_t cap = 0;
    for (int m = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         m == 0 && k.mv_size == GRANT_KEY_BYTES && memcmp(k.mv_data, prefix, 4) == 0;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        Appeal__GrantRow *g = (Appeal__GrantRow *)pbx_unpack(&appeal__grant_row__descriptor,
                                                             v.mv_data, v.mv_size, a, 16, NULL);
        if (g == NULL) {
            rc = APL_ECORRUPT;
            break;
        }
        if (l->n_grants == cap) {
            cap = cap ? cap * 2 : 16;
            Appeal__Grant **grown = arena_new(a, cap * sizeof *grown);
            if (grown == NULL) {
                rc = APL_ETOOBIG;
                break;
            }
            if (l->n_grants) {
                memcpy(grown, l->grants, l->n_grants * sizeof *grown);
            }
            l->grants = grown;
        }
        if ((l->grants[l->n_grants] = grant_view(g, a)) == NULL) {
            rc = APL_ETOOBIG;
            break;
        }
        l->n_grants++;
    }
    mdb_cursor_close(c);
    return rc;
}

int auth_actor_revoked(struct store *s, MDB_txn *t, uint32_t idx, const Appeal__Body *b,
                       struct actor_cache *c, uint64_t *revoked, struct errbuf *e) {
    *revoked = 0;
    if (b->actor.len != KEY_PK_BYTES) {
        return 0;
    }
    if (!c->have || memcmp(c->actor, b->actor.data, KEY_PK_BYTES) != 0) {
        memcpy(c->actor, b->actor.data, KEY_PK_BYTES);
        c->have = false;
        int rc = grant_revoked_seq(s, t, idx, c->actor, &c->revoked);
        if (rc != 0) {
            /* Fail closed: the caller refuses the record (never "in force"). */
            return err_set(e, rc, "cannot read the grant of the actor of seq %llu: %s",
                           (unsigned long long)b->seq, apl_strerror(rc));
        }
        c->have = true;
    }
    if (b->event_case == APPEAL__BODY__EVENT_KEY_REVOKED) {
        c->have = false; /* the grants change with this record */
    }
    if (c->revoked == 0 || b->seq <= c->revoked) {
        return 0;
    }
    *revoked = c->revoked;
    char who[KEY_SHORT_HEX + 1];
    util_hex(b->actor.data, KEY_SHORT_HEX / 2, who);
    return err_set(e, APL_EFORBIDDEN, "seq %llu acts as key %s, revoked at seq %llu",
                   (unsigned long long)b->seq, who, (unsigned long long)*revoked);
}
