#include "engine.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assert.h"
#include "bounds.h"
#include "grants.h"
#include "olog.h"
#include "record.h"
#include "util.h"

int64_t engine_now_ms(const struct engine *g) {
    return clock_now_ms(&g->clock);
}

bool engine_self_frozen(const struct engine *g) {
    return atomic_load_explicit(&g->self_frozen, memory_order_relaxed);
}

void engine_publish_frozen(struct engine *g) {
    atomic_store_explicit(&g->self_frozen, g->self.frozen, memory_order_relaxed);
}

/* ---- ingest of replicated records: on the writer thread ---- */

static int save_fork(struct engine *g, MDB_txn *t, struct origin_state *o, uint64_t seq,
                     const MDB_val *ours, const ProtobufCBinaryData *theirs, const char *via) {
    Appeal__Fork f = APPEAL__FORK__INIT;
    f.origin.data = o->pk;
    f.origin.len = KEY_PK_BYTES;
    f.seq = seq;
    f.ours.data = ours->mv_data;
    f.ours.len = ours->mv_size;
    f.theirs = *theirs;
    f.via = (char *)via;
    f.seen_ms = engine_now_ms(g);
    uint8_t k[CHAIN_KEY_BYTES];
    chain_key(k, o->idx, seq);
    int rc = store_put_msg(t, &g->store, DB_FORKS, k, sizeof k, &f.base);
    if (rc != 0) {
        return rc;
    }
    ASSERT(seq > 0 && seq <= o->head_seq); /* a fork is at a seq we hold */
    o->frozen = true;
    atomic_fetch_add(&g->metrics.forks, 1);
    snprintf(o->frozen_reason, sizeof o->frozen_reason, "fork at seq %llu, seen via %s",
             (unsigned long long)seq, via);
    rc = chain_origin_save(&g->store, t, o);
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)seq);
    olog(OLOG_ALERT, "fork", "origin", o->juris, "seq", s, "via", via, "action",
         "origin frozen; keep both records as evidence", NULL);
    return rc;
}

/* A record naming as its actor a key its origin revoked before: the
 * origin signs what its own API must have refused, so it is compromised
 * or broken. Nothing from it is stored past the revocation; it is frozen
 * like a fork and raises the same alert. */
static int freeze_revoked(struct engine *g, MDB_txn *t, struct origin_state *o, uint64_t seq,
                          const uint8_t actor[KEY_PK_BYTES], uint64_t revoked) {
    char who[KEY_SHORT_HEX + 1], s[24];
    util_hex(actor, KEY_SHORT_HEX / 2, who);
    o->frozen = true;
    snprintf(o->frozen_reason, sizeof o->frozen_reason,
             "seq %llu acts as key %s, revoked at seq %llu", (unsigned long long)seq, who,
             (unsigned long long)revoked);
    snprintf(s, sizeof s, "%llu", (unsigned long long)seq);
    olog(OLOG_ALERT, "revoked_actor", "origin", o->juris, "seq", s, "actor", who, "action",
         "origin frozen: it signed for a revoked key", NULL);
    return chain_origin_save(&g->store, t, o);
}

/* The origin state to append to: this node's own (kept in memory by the
 * writer) or another's (loaded, created on first sight). */
static int ingest_origin(struct engine *g, MDB_txn *t, const uint8_t *pk, struct origin_state *tmp,
                         struct origin_state **o) {
    if (memcmp(pk, g->keys.sign_pk, KEY_PK_BYTES) == 0) {
        *o = &g->self;
        return 0;
    }
    int rc = chain_origin_get(&g->store, t, pk, tmp);
    if (rc == APL_ENOTFOUND) {
        rc = chain_origin_create(&g->store, t, pk, tmp);
    }
    ASSERT(rc != 0 || (tmp->idx > 0 && memcmp(tmp->pk, pk, KEY_PK_BYTES) == 0));
    *o = tmp;
    return rc;
}

/* Whether a replicated record of `len` bytes still fits below the room
 * kept for this node's own log. The estimate counts the records this
 * batch has stored so far (LMDB tells only the last commit's use), times
 * what the derived tables add to a record. Inside the write transaction:
 * the decision and the write are one. */
static bool below_reserve(struct engine *n, size_t len) {
    if (n->own_reserve_bytes == 0) {
        return true;
    }
    uint64_t used = 0;
    if (store_used_bytes(&n->store, &used) != 0) {
        return false; /* unknown: keep the room */
    }
    ASSERT(n->own_reserve_bytes < n->store.map_max_bytes);
    uint64_t line = n->store.map_max_bytes - n->own_reserve_bytes;
    /* Records appended before this batch and not yet folded will add
     * their derived rows later: counted too, as all but their log bytes. */
    uint64_t more = (n->ingest_txn_bytes + len) * INGEST_BYTES_FACTOR +
                    n->unfolded_saved * (INGEST_BYTES_FACTOR - 1);
    return used + more <= line;
}

/* What the steps below say of a record besides an error (which aborts the
 * whole ingest): go on; stop the run here (the rest waits or is refused;
 * what is stored so far is a chain prefix, the origin's row is saved at
 * the end); or stop with the origin frozen and its row already saved. */
enum { INGEST_NEXT = 0, INGEST_STOP = -1, INGEST_FROZEN = -2 };

/* A record at or below the head: the same bytes (another peer was
 * quicker), or a fork, kept as evidence, its origin frozen. */
static int ingest_held(struct ingest *in, MDB_txn *t, struct origin_state *o, uint64_t seq,
                       const ProtobufCBinaryData *rb) {
    MDB_val ours;
    int rc = chain_get(&in->eng->store, t, o->idx, seq, &ours);
    if (rc != 0) {
        return rc;
    }
    if (ours.mv_size == rb->len && memcmp(ours.mv_data, rb->data, rb->len) == 0) {
        return INGEST_NEXT;
    }
    in->forks++;
    rc = save_fork(in->eng, t, o, seq, &ours, rb, in->via != NULL ? in->via : "?");
    return rc != 0 ? rc : INGEST_FROZEN;
}

/* The checks that decide whether record head+1 of a run is stored, inside
 * the write transaction: it decodes and continues what we hold now, its
 * actor was not revoked, and the own reserve and the admission budget
 * have room. `left`: the run's records from this one on. */
static int ingest_admit(struct ingest *in, MDB_txn *t, struct origin_state *o, uint64_t seq,
                        const ProtobufCBinaryData *rb, size_t left, struct record *rec,
                        struct actor_cache *actors) {
    struct engine *n = in->eng;
    static const uint8_t zero[HASH_BYTES];
    struct errbuf de;
    err_clear(&de);
    if (rec_decode(rb->data, rb->len, in->arena, rec, &de) != 0) {
        /* Signed by its origin (the chain reaches the run's checked
         * signature) but outside what every node accepts: the records
         * before it are stored, it and the rest are refused, named. */
        in->malformed += left;
        if (in->why.msg[0] == '\0') {
            err_set(&in->why, APL_EINVAL, "origin %s seq %llu: malformed record (%s)", o->juris,
                    (unsigned long long)seq, de.msg);
        }
        return INGEST_STOP;
    }
    if (rec->body->seq != seq || memcmp(rec->body->origin.data, o->pk, KEY_PK_BYTES) != 0) {
        /* The chain was checked without unpacking every record: one
         * that does not decode poisons the whole ingest, and the
         * writer's abort stores nothing of it. */
        return APL_ECORRUPT;
    }
    if (memcmp(rec->body->prev.data, o->head_seq ? o->head_hash : zero, HASH_BYTES) != 0) {
        return INGEST_STOP; /* does not continue what we now hold: pull again */
    }
    /* The same check as `appeal-node verify` (grant_actor_revoked). */
    uint64_t revoked;
    struct errbuf re;
    err_clear(&re);
    int rc = grant_actor_revoked(&n->store, t, o->idx, rec->body, actors, &revoked, &re);
    if (rc == APL_EFORBIDDEN) {
        in->revoked++;
        rc = freeze_revoked(n, t, o, seq, rec->body->actor.data, revoked);
        return rc != 0 ? rc : INGEST_FROZEN;
    }
    if (rc != 0) {
        /* Fail closed: a grant we cannot read stores nothing (the
         * writer aborts the ingest and the next pull retries). */
        olog(OLOG_ERROR, "grant_unreadable", "origin", o->juris, "error", err_msg(&re, rc),
             "action", "ingest refused", NULL);
        return rc;
    }
    if (o != &n->self && !below_reserve(n, rb->len)) {
        in->postponed += left;
        return INGEST_STOP; /* the rest waits: stored so far is a chain prefix */
    }
    if (o != &n->self && in->admit != NULL && !in->admit(in->policy_arg, o->pk, o->head_seq)) {
        in->burst += left;
        return INGEST_STOP; /* the same: the next interval takes more */
    }
    return INGEST_NEXT;
}

/* Appends record head+1, admitted. This node's own records (recovery) are
 * applied to the derived state at once; another origin's appeal records
 * are left to the fold (state_fold_step), behind the mark set here, and
 * only its origin-level records (grants, which the next record's revoked
 * actor check reads) are applied now. */
static int ingest_store(struct ingest *in, MDB_txn *t, struct origin_state *o, uint64_t seq,
                        const ProtobufCBinaryData *rb, const struct record *rec, int64_t now) {
    struct engine *n = in->eng;
    ASSERT(seq == o->head_seq + 1 && !o->frozen); /* chain_append's precondition */
    n->ingest_txn_bytes += rb->len;
    const char *number;
    uint32_t version;
    bool defer = o != &n->self && rec_appeal_ref(rec->body, &number, &version);
    int rc = defer && !in->fold_marked ? state_fold_defer(&n->store, t, o->idx, o->head_seq) : 0;
    in->fold_marked = in->fold_marked || defer;
    if (rc == 0) {
        rc = chain_append(&n->store, t, o, rb->data, rb->len, rec->body, now, true);
    }
    if (rc != 0) {
        return rc;
    }
    ASSERT(o->head_seq == seq);
    if (o != &n->self) {
        atomic_fetch_add_explicit(&n->metrics.replicated_records, 1, memory_order_relaxed);
        int64_t lag_ms = now - rec->body->time_ms;
        hist_observe_us(&n->metrics.replication_lag, lag_ms > 0 ? (uint64_t)lag_ms * 1000 : 0);
    }
    if (defer) {
        n->state.fold_pending = true;
        n->unfolded_bytes += rb->len;
    } else {
        rc = state_apply(&n->state, t, o, seq, rec->body);
    }
    if (rc == 0) {
        in->appended++;
    }
    return rc;
}

static int ingest_run(struct ingest *in, MDB_txn *t, const Appeal__Run *run) {
    struct engine *n = in->eng;
    ASSERT(run->origin.len == KEY_PK_BYTES); /* the submitter checked the run */
    ASSERT(in->arena != NULL && in->arena->cap_bytes >= RECORD_ARENA_BYTES);
    struct origin_state tmp, *o;
    int rc = ingest_origin(n, t, run->origin.data, &tmp, &o);
    if (rc != 0) {
        return rc;
    }
    const char *juris = in->juris_of != NULL ? in->juris_of(in->policy_arg, o->pk) : NULL;
    if (o->juris[0] == '\0' && juris != NULL) {
        snprintf(o->juris, sizeof o->juris, "%s", juris);
    }
    int64_t now = engine_now_ms(n);
    struct actor_cache actors = {0};
    in->fold_marked = false; /* this run's origin: its fold mark not yet set */
    rc = INGEST_NEXT;
    for (size_t i = 0; i < run->n_records && !o->frozen && rc == INGEST_NEXT; i++) {
        uint64_t seq = run->first_seq + i;
        const ProtobufCBinaryData *rb = &run->records[i];
        if (seq <= o->head_seq) {
            rc = ingest_held(in, t, o, seq, rb);
        } else if (seq != o->head_seq + 1) {
            return 0; /* a gap: the next pull fills it */
        } else {
            arena_reset(in->arena);
            struct record rec;
            rc = ingest_admit(in, t, o, seq, rb, run->n_records - i, &rec, &actors);
            if (rc == INGEST_NEXT) {
                rc = ingest_store(in, t, o, seq, rb, &rec, now);
            }
        }
        if (rc == INGEST_FROZEN) {
            return 0; /* a fork or a revoked actor: frozen, saved */
        }
        if (rc != INGEST_NEXT && rc != INGEST_STOP) {
            return rc;
        }
    }
    return chain_origin_save(&n->store, t, o);
}

int engine_ingest_run(void *unused, MDB_txn *t, struct wreq *w) {
    (void)unused;
    struct ingest *in = (struct ingest *)(void *)w;
    in->appended = 0;
    in->forks = 0;
    in->postponed = 0;
    in->malformed = 0;
    err_clear(&in->why);
    in->burst = 0;
    in->revoked = 0;
    int rc = state_batch_begin(&in->eng->state);
    for (size_t i = 0; rc == 0 && i < in->n_runs; i++) {
        rc = ingest_run(in, t, in->runs[i]);
    }
    int rc2 = state_batch_end(&in->eng->state, rc == 0 ? t : NULL);
    if (in->appended >= FOLD_BULK_RECORDS) {
        /* A bulk catch-up: more is likely on its way; fold after it. */
        in->eng->fold_after_ns = util_mono_ns() + FOLD_BULK_WAIT_MS * 1000000ull;
    }
    return rc != 0 ? rc : rc2;
}

/* ---- the fold behind the log: on the writer thread, between batches ---- */

/* For tests (tests/integration/test_fold.py), read from the environment:
 * APPEAL_TEST_FOLD_HOLD names a file while which exists the fold waits
 * (a lag held still to look at); APPEAL_TEST_FOLD_RECORDS, the records of
 * a step (instead of FOLD_TXN_RECORDS_MAX); APPEAL_TEST_FOLD_EXIT_AFTER,
 * the steps after whose commit the process _exits, as a kill would. */
static bool fold_held(void) {
    const char *hold = getenv("APPEAL_TEST_FOLD_HOLD");
    return hold != NULL && access(hold, F_OK) == 0;
}

static uint64_t fold_budget(const struct engine *g) {
    const char *n = getenv("APPEAL_TEST_FOLD_RECORDS");
    long v = n != NULL ? atol(n) : 0;
    if (v > 0) {
        return (uint64_t)v;
    }
    return g->fold_budget > 0 ? g->fold_budget : FOLD_TXN_RECORDS_MAX;
}

static void fold_exit_after(void) {
    static long steps;
    const char *n = getenv("APPEAL_TEST_FOLD_EXIT_AFTER");
    if (n != NULL && ++steps >= atol(n)) {
        _exit(99);
    }
}

static int fold_run(void *unused, MDB_txn *t, struct wreq *w) {
    (void)unused;
    struct engine *g = w->arg;
    uint64_t folded = 0, bytes = 0;
    bool more = false;
    int rc = state_batch_begin(&g->state);
    if (rc == 0) {
        rc = state_fold_step(&g->state, t, fold_budget(g), &folded, &bytes, &more);
    }
    int rc2 = state_batch_end(&g->state, rc == 0 ? t : NULL);
    g->fold_more = more;
    g->fold_last = folded;
    g->fold_last_bytes = bytes;
    return rc != 0 ? rc : rc2;
}

bool engine_fold_step(struct engine *g, const struct writer_hooks *h) {
    if (!g->state.fold_pending || fold_held() || util_mono_ns() < g->fold_after_ns) {
        return false;
    }
    struct wreq r = {.run = fold_run, .arg = g};
    g->fold_more = false;
    g->fold_last = 0;
    writer_run_now(&g->store, h, &r);
    if (r.rc == APL_ESTORAGE) {
        writer_fail(&g->writer, "a sync of the store failed");
    }
    if (r.rc != 0) {
        /* Not retried until the next ingest: the queries keep saying how
         * far each origin is folded, and a restart (or rebuild) resumes. */
        olog(OLOG_ERROR, "fold_failed", "error", err_msg(&r.err, r.rc), "action",
             "fold stopped until the next ingest or restart", NULL);
        g->state.fold_pending = false;
        return false;
    }
    g->state.fold_pending = g->fold_more;
    /* Nothing came while it folded: the next step may take longer (fewer
     * pages rewritten per record); a request waited: back to short steps. */
    uint64_t next = 2 * fold_budget(g);
    g->fold_budget = writer_queued(&g->writer) > 0      ? FOLD_TXN_RECORDS_MAX
                     : next < FOLD_TXN_RECORDS_IDLE_MAX ? next
                                                        : FOLD_TXN_RECORDS_IDLE_MAX;
    uint64_t done = g->fold_last_bytes;
    g->unfolded_bytes -= done < g->unfolded_bytes ? done : g->unfolded_bytes;
    fold_exit_after();
    if (!g->fold_more) {
        olog(OLOG_INFO, "fold_caught_up", NULL);
    }
    return g->fold_last > 0 || g->fold_more;
}
