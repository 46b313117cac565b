#include "grants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "record.h"
#include "roles.h"
#include "util.h"

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
/* The same, spelled out: the struct, the key, a jurisdiction of at most 6
 * bytes, the longest label and reason with their NULs, each allocation
 * rounded up to 16 bytes. */
_Static_assert(GRANT_ROW_ARENA_BYTES >= sizeof(Appeal__GrantRow) + KEY_PK_BYTES + (6 + 1) +
                                            (LABEL_BYTES_MAX + 1) + (REASON_BYTES_MAX + 1) + 5 * 15,
               "a grant row's arena holds its longest label and reason");

int grant_revoked_seq(struct store *s, MDB_txn *t, uint32_t idx, const uint8_t actor[KEY_PK_BYTES],
                      uint64_t *revoked) {
    _Alignas(16) uint8_t buf[GRANT_ROW_ARENA_BYTES];
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
    _Alignas(16) uint8_t buf[GRANT_ROW_ARENA_BYTES];
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
        if (role_parse(b->key_granted->role) == ROLE_CHANNEL) {
            g->rate_per_minute = b->key_granted->rate_per_minute; /* the last grant's */
        }
    }
    return store_put_msg(t, s, DB_GRANTS, k, sizeof k, &g->base);
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
    v->rate_per_minute = g->rate_per_minute;
    v->roles = arena_new(a, 6 * sizeof *v->roles);
    if (v->roles == NULL) {
        return NULL;
    }
    for (uint32_t bit = 1; bit <= ROLE_LAST; bit <<= 1) {
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
        Appeal__GrantRow *g = (Appeal__GrantRow *)pb_unpack(&appeal__grant_row__descriptor,
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

int grant_actor_revoked(struct store *s, MDB_txn *t, uint32_t idx, const Appeal__Body *b,
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
