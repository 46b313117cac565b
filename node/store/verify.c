#include "verify.h"

#include <stdio.h>
#include <string.h>

#include "assert.h"
#include "bounds.h"
#include "chain.h"
#include "chainwalk.h"
#include "grants.h"
#include "record.h"

struct vwalk {
    struct origin_state o;
    struct walk w;
    struct arena a;
    struct verify_report *r;
    struct errbuf *e;
    struct store *s;
    MDB_txn *t;
    struct actor_cache actors;
    char who[64];
};

static int bad(struct vwalk *v, int code, uint64_t seq, const char *what) {
    return err_set(v->e, code, "origin %s seq %llu: %s", v->who, (unsigned long long)seq, what);
}

/* After the walker's checks: the same check as replication
 * (grant_actor_revoked): a record that peers refuse, freezing its origin,
 * does not verify either. */
static int check_actor(void *arg, const struct walk_rec *r) {
    struct vwalk *v = arg;
    ASSERT(r->body != NULL && r->sig_checked); /* WALK_SIGS_EVERY */
    uint64_t revoked;
    struct errbuf re;
    err_clear(&re);
    int rc = grant_actor_revoked(v->s, v->t, v->o.idx, r->body, &v->actors, &revoked, &re);
    if (rc == APL_EFORBIDDEN) {
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "its actor was revoked before it (%s); peers refuse it", re.msg);
        return bad(v, APL_EFORBIDDEN, r->seq, msg);
    }
    if (rc != 0) {
        return bad(v, rc, r->seq, "cannot read the grants of its actor");
    }
    v->r->signatures++;
    v->r->records++;
    return 0;
}

/* The walker's fault, in verify's words (tools/pyverify.py says the same). */
static int walk_fault_msg(struct vwalk *v) {
    const struct walk *w = &v->w;
    char msg[ERRBUF_MSG_BYTES + 32];
    switch (w->fault) {
    case WALK_GAP:
        return bad(v, APL_EGAP, w->seq + 1, "record missing (gap in the log)");
    case WALK_DECODE:
        snprintf(msg, sizeof msg, "record does not decode (%s)", err_msg(&w->why, w->why.code));
        return bad(v, APL_ECORRUPT, w->fault_seq, msg);
    case WALK_PLACE:
        return bad(v, APL_ECORRUPT, w->fault_seq,
                   "record names another origin or seq than its place");
    case WALK_LINK:
        return bad(v, APL_ECHAIN, w->fault_seq, "hash link to the previous record does not hold");
    case WALK_GENESIS:
        return bad(v, APL_ECORRUPT, w->fault_seq, "the first record is not a genesis record");
    case WALK_SIG:
        return bad(v, APL_ESIG, w->fault_seq, "bad signature");
    case WALK_CALLER:
        return w->fn_rc; /* check_actor said it */
    default:
        ASSERT(w->fault != WALK_PEEK); /* verify decodes every record: it never peeks */
        return APL_ECORRUPT;
    }
}

static int walk_one(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct vwalk *v = arg;
    return walk_step(&v->w, seq, env, len, false) == WALK_OK ? 0 : walk_fault_msg(v);
}

static int verify_origin(struct store *s, MDB_txn *t, uint32_t idx, struct vwalk *w) {
    int rc = chain_origin_by_idx(s, t, idx, &w->o);
    if (rc != 0) {
        return err_set(w->e, APL_ECORRUPT, "origin index %u has no origin row", idx);
    }
    char kid[KEY_SHORT_HEX + 1];
    key_id_short(w->o.pk, kid);
    snprintf(w->who, sizeof w->who, "%s (key %s)", w->o.juris[0] ? w->o.juris : "?", kid);
    /* Every record decoded and its signature checked (WALK_SIGS_EVERY),
     * from the origin's own key on, following its rotations. */
    walk_init(&w->w, w->o.pk, 0, NULL, w->o.pk, &w->a);
    w->w.fn = check_actor;
    w->w.arg = w;
    memset(&w->actors, 0, sizeof w->actors);
    w->s = s;
    w->t = t;
    rc = chain_each(s, t, idx, 1, walk_one, w);
    if (rc != 0) {
        return rc;
    }
    uint64_t last = w->w.seq;
    if (last != w->o.head_seq) {
        return bad(w, APL_EGAP, last + 1,
                   last < w->o.head_seq ? "record missing (the head says more were stored)"
                                        : "records stored past the recorded head");
    }
    if (last > 0 && memcmp(w->w.prev, w->o.head_hash, HASH_BYTES) != 0) {
        return bad(w, APL_ECHAIN, last, "the stored head hash does not match the head record");
    }
    w->r->origins++;
    return 0;
}

int verify_store(struct store *s, struct verify_report *r, struct errbuf *e) {
    memset(r, 0, sizeof *r);
    struct vwalk w;
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
