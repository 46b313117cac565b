#include "verify.h"

#include <stdio.h>
#include <string.h>

#include "grants.h"
#include "bounds.h"
#include "chain.h"
#include "record.h"

struct walk {
    struct origin_state o;
    uint8_t prev[HASH_BYTES];
    uint8_t key[KEY_PK_BYTES];
    uint64_t expect;
    struct arena a;
    struct verify_report *r;
    struct errbuf *e;
    struct store *s;
    MDB_txn *t;
    struct actor_cache actors;
    char who[64];
};

static int bad(struct walk *w, int code, uint64_t seq, const char *what) {
    return err_set(w->e, code, "origin %s seq %llu: %s", w->who, (unsigned long long)seq, what);
}

static int walk_one(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct walk *w = arg;
    if (seq != w->expect) {
        return bad(w, APL_EGAP, w->expect, "record missing (gap in the log)");
    }
    arena_reset(&w->a);
    struct record rec;
    struct errbuf de;
    err_clear(&de);
    if (rec_decode(env, len, &w->a, &rec, &de) != 0) {
        char msg[ERRBUF_MSG_BYTES + 32];
        snprintf(msg, sizeof msg, "record does not decode (%s)", err_msg(&de, de.code));
        return bad(w, APL_ECORRUPT, seq, msg);
    }
    const Appeal__Body *b = rec.body;
    if (b->seq != seq || memcmp(b->origin.data, w->o.pk, KEY_PK_BYTES) != 0) {
        return bad(w, APL_ECORRUPT, seq, "record names another origin or seq than its place");
    }
    if (memcmp(b->prev.data, w->prev, HASH_BYTES) != 0) {
        return bad(w, APL_ECHAIN, seq, "hash link to the previous record does not hold");
    }
    if (seq == 1 && b->event_case != APPEAL__BODY__EVENT_GENESIS) {
        return bad(w, APL_ECORRUPT, seq, "the first record is not a genesis record");
    }
    if (!rec_verify_sig(&rec, w->key)) {
        return bad(w, APL_ESIG, seq, "bad signature");
    }
    /* The same check as replication (grant_actor_revoked): a record that
     * peers refuse, freezing its origin, does not verify either. */
    uint64_t revoked;
    struct errbuf re;
    err_clear(&re);
    int rc = grant_actor_revoked(w->s, w->t, w->o.idx, b, &w->actors, &revoked, &re);
    if (rc == APL_EFORBIDDEN) {
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "its actor was revoked before it (%s); peers refuse it", re.msg);
        return bad(w, APL_EFORBIDDEN, seq, msg);
    }
    if (rc != 0) {
        return bad(w, rc, seq, "cannot read the grants of its actor");
    }
    w->r->signatures++;
    w->r->records++;
    if (b->event_case == APPEAL__BODY__EVENT_KEY_ROTATED) {
        memcpy(w->key, b->key_rotated->new_key.data, KEY_PK_BYTES);
    }
    rec_hash(env, len, w->prev);
    w->expect++;
    return 0;
}

static int verify_origin(struct store *s, MDB_txn *t, uint32_t idx, struct walk *w) {
    int rc = chain_origin_by_idx(s, t, idx, &w->o);
    if (rc != 0) {
        return err_set(w->e, APL_ECORRUPT, "origin index %u has no origin row", idx);
    }
    char kid[KEY_SHORT_HEX + 1];
    key_id_short(w->o.pk, kid);
    snprintf(w->who, sizeof w->who, "%s (key %s)", w->o.juris[0] ? w->o.juris : "?", kid);
    memset(w->prev, 0, HASH_BYTES);
    memcpy(w->key, w->o.pk, KEY_PK_BYTES);
    memset(&w->actors, 0, sizeof w->actors);
    w->s = s;
    w->t = t;
    w->expect = 1;
    rc = chain_each(s, t, idx, 1, walk_one, w);
    if (rc != 0) {
        return rc;
    }
    uint64_t last = w->expect - 1;
    if (last != w->o.head_seq) {
        return bad(w, APL_EGAP, last + 1,
                   last < w->o.head_seq ? "record missing (the head says more were stored)"
                                        : "records stored past the recorded head");
    }
    if (last > 0 && memcmp(w->prev, w->o.head_hash, HASH_BYTES) != 0) {
        return bad(w, APL_ECHAIN, last, "the stored head hash does not match the head record");
    }
    w->r->origins++;
    return 0;
}

int verify_store(struct store *s, struct verify_report *r, struct errbuf *e) {
    memset(r, 0, sizeof *r);
    struct walk w;
    memset(&w, 0, sizeof w);
    w.r = r;
    w.e = e;
    if (arena_init(&w.a, RECORD_ARENA_BYTES) != 0) {
        return APL_ENOMEM;
    }
    MDB_txn *t;
    int rc = store_rd_begin(s, &t);
    if (rc != 0) {
        arena_fini(&w.a);
        return err_set(e, rc, "cannot read the database");
    }
    MDB_cursor *c = NULL;
    rc = store_rc(mdb_cursor_open(t, s->dbi[DB_ORIGIN_IDX], &c));
    MDB_val k, v;
    for (int m = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_FIRST) : MDB_NOTFOUND; m == 0 && rc == 0;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        rc = k.mv_size == 4 ? verify_origin(s, t, be32_get(k.mv_data), &w)
                            : err_set(e, APL_ECORRUPT, "malformed origin index");
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    store_rd_end(s, t);
    arena_fini(&w.a);
    return rc;
}
