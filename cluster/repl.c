#include "repl.h"
#include "repl_int.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assert.h"
#include "bounds.h"
#include "chainwalk.h"
#include "grants.h"
#include "peermsg.h"
#include "connlimit.h"
#include "chain.h"
#include "engine.h"
#include "olog.h"
#include "record.h"
#include "state.h"
#include "tls.h"
#include "util.h"

/* Relations between limits, checked by the compiler. */
_Static_assert((long)REPL_RECV_BYTES_MAX == (long)PEER_RECV_BYTES_MAX,
               "a pull answer is a peer message: one receive limit");
_Static_assert((long)PULL_RECORDS_MAX <= (long)PEER_REPEATED_MAX,
               "a full pull answer's run decodes within peermsg's repeated-field guard");
_Static_assert(PUSH_RECORDS_MAX <= PULL_RECORDS_MAX, "a push run passes repl_check_run's cap");
/* The byte budget may be passed by one record; each record costs up to 8
 * bytes of framing; the marks of CLUSTER_NODES_MAX origins about 128. */
_Static_assert((uint64_t)PULL_BYTES_MAX + RECORD_BYTES_MAX + PULL_RECORDS_MAX * 8ull +
                       CLUSTER_NODES_MAX * 128ull <=
                   REPL_RECV_BYTES_MAX,
               "a full pull answer fits the peers' receive limit");
_Static_assert((uint64_t)PUSH_BYTES_MAX + RECORD_BYTES_MAX + PUSH_RECORDS_MAX * 8ull <=
                   2ull * PUSH_BYTES_MAX,
               "a push (the publisher passes PUSH_BYTES_MAX by one record at most) fits the "
               "subscriber's receive limit, 2 * PUSH_BYTES_MAX");
_Static_assert(CLUSTER_NODES_MAX * 160ull <= PULL_REQUEST_BYTES_MAX,
               "a pull request with every origin's mark and wanted key fits");
_Static_assert(REPL_ARENA_BYTES >= 2ull * REPL_RECV_BYTES_MAX + PULL_RECORDS_MAX * 64ull,
               "a puller's arena holds a decoded answer (bytes copied, per-record structs)");
_Static_assert(SRV_ARENA_BYTES >=
                   PULL_REQUEST_BYTES_MAX + PULL_RECORDS_MAX * 16ull + CLUSTER_NODES_MAX * 512ull,
               "a serving context holds a request and an answer's run lists");
_Static_assert(SUB_ARENA_BYTES >= 2ull * PUSH_BYTES_MAX + RECORD_ARENA_BYTES +
                                      sizeof(struct origin_list) + 1024 * 1024,
               "the subscriber's arena holds a push, an origin list and a run check");
_Static_assert(PUB_ARENA_BYTES >=
                   PUSH_RECORDS_MAX * sizeof(ProtobufCBinaryData) + CLUSTER_NODES_MAX * 128ull,
               "the publisher's arena holds a run's pointers or every mark");

/* ---- peer messages ---- */

int repl_peer_pack(struct repl *r, Appeal__PeerBody *body, nng_msg **out) {
    return peermsg_pack(&r->g->keys, r->o.peer_skew_ms, body, out);
}

int repl_peer_open(struct repl *r, const void *data, size_t len, struct arena *a,
                   const struct cluster_node *expect, Appeal__PeerBody **body,
                   const struct cluster_node **from, struct errbuf *e) {
    return peermsg_open(r->c, &r->g->store, data, len, a, expect, body, from, e);
}

bool repl_recovering(const struct repl *r) {
    return r != NULL && atomic_load(&r->recovering);
}

/* ---- chain verification ---- */

/* The walker's fault on a peer's run, in replication's words and codes
 * (what count_refused counts and test_rogue reads). */
static int run_fault(const struct walk *w, const struct run_base *b, struct errbuf *e) {
    unsigned long long seq = (unsigned long long)w->fault_seq;
    switch (w->fault) {
    case WALK_PEEK:
        return err_set(e, APL_EINVAL, "origin %s seq %llu: malformed record", b->juris, seq);
    case WALK_DECODE:
        /* Signed, perhaps, but not a record every node accepts (a field
         * out of its syntax): named as such, not as a bad signature. */
        return err_set(e, APL_EINVAL, "origin %s seq %llu: malformed record (%s)", b->juris, seq,
                       w->why.msg);
    case WALK_PLACE:
        return err_set(e, APL_EGAP, "origin %s seq %llu: record out of order", b->juris, seq);
    case WALK_LINK:
        return err_set(e, APL_ECHAIN, "origin %s seq %llu: hash link broken", b->juris, seq);
    case WALK_GENESIS:
        return err_set(e, APL_EINVAL, "origin %s seq 1: genesis does not match the cluster file",
                       b->juris);
    case WALK_SIG:
        return err_set(e, APL_ESIG, "origin %s seq %llu: bad signature", b->juris, seq);
    default:
        /* WALK_GAP is checked on the run before; no callback here. */
        ASSERT(w->fault != WALK_GAP && w->fault != WALK_CALLER);
        return APL_ECORRUPT;
    }
}

int repl_check_run(const Appeal__Run *run, const struct run_base *b, struct arena *a,
                   struct errbuf *e) {
    ASSERT(b->origin != NULL && b->signing_key != NULL && b->juris != NULL);
    ASSERT(b->head_seq == 0 || b->head_hash != NULL);
    if (run->origin.len != KEY_PK_BYTES || memcmp(run->origin.data, b->origin, KEY_PK_BYTES)) {
        return err_set(e, APL_EINVAL, "run names another origin");
    }
    if (run->n_records == 0) {
        return 0;
    }
    if (run->n_records > PULL_RECORDS_MAX) {
        return err_set(e, APL_ETOOBIG, "run of %zu records exceeds %d", run->n_records,
                       PULL_RECORDS_MAX);
    }
    if (run->first_seq != b->head_seq + 1) {
        return err_set(e, APL_EGAP, "origin %s: run starts at seq %llu, we hold up to %llu",
                       b->juris, (unsigned long long)run->first_seq,
                       (unsigned long long)b->head_seq);
    }
    /* Every record peeked, placed and linked; the genesis, each rotation
     * and the last record decoded and their signatures checked: the links
     * carry the last signature back over the run (chainwalk.h). */
    struct walk w;
    walk_init(&w, b->origin, b->head_seq, b->head_seq > 0 ? b->head_hash : NULL, b->signing_key, a);
    w.sigs = WALK_SIGS_RUN;
    w.genesis_juris = b->juris;
    w.genesis_box_key = b->box_key;
    if (walk_run(&w, run->first_seq, run->records, run->n_records) != WALK_OK) {
        return run_fault(&w, b, e);
    }
    ASSERT(w.seq == run->first_seq + run->n_records - 1 && w.signatures >= 1);
    return 0;
}

/* ---- ingest: on the writer thread ---- */

static void waited_done(struct wreq *w) {
    struct waited *x = w->arg;
    pthread_mutex_lock(&x->mu);
    x->done = true;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* Submits `w` to the writer; submit_end() waits for it. */
static int submit_begin(struct repl *r, struct waited *x, struct wreq *w) {
    ASSERT(w->run != NULL);
    x->w = w;
    w->done = waited_done;
    w->arg = x;
    x->done = false;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    int rc = writer_submit(&r->g->writer, w);
    if (rc != 0) {
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
    }
    return rc;
}

/* Waits for a submitted request: 0, or its error with x->w.err set. */
static int submit_end(struct waited *x) {
    pthread_mutex_lock(&x->mu);
    while (!x->done) {
        pthread_cond_wait(&x->cv, &x->mu);
    }
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    return x->w->rc;
}

int repl_submit_wait(struct repl *r, struct wreq *w) {
    struct waited x;
    int rc = submit_begin(r, &x, w);
    return rc != 0 ? rc : submit_end(&x);
}

static int64_t mono_ms(void) {
    return (int64_t)(util_mono_ns() / 1000000u);
}

/* Whether one more record of origin `cn` (another node's) fits its burst
 * budget: max(its head when the interval started, the floor) records per
 * ORIGIN_BURST_INTERVAL_MS. On the writer thread, inside the write
 * transaction: the decision and the write are one. (An aborted batch's
 * records stay counted: the budget errs on the side of taking less.) */
static bool burst_allows(void *arg, const uint8_t *origin, uint64_t head) {
    struct repl *r = arg;
    const struct cluster_node *cn = cluster_by_origin(r->c, origin);
    if (r->burst_floor == 0 || cn == NULL) {
        return true;
    }
    ASSERT(cn >= r->c->nodes && (uint32_t)(cn - r->c->nodes) < r->c->count);
    struct burst *b = &r->bursts[cn - r->c->nodes];
    int64_t now = mono_ms();
    if (b->start_ms == 0 || now - b->start_ms >= ORIGIN_BURST_INTERVAL_MS) {
        b->start_ms = now;
        b->history = head;
        b->taken = 0;
    }
    uint64_t allowed = b->history > r->burst_floor ? b->history : r->burst_floor;
    if (b->taken < allowed) {
        b->taken++;
        return true;
    }
    int64_t until = b->start_ms + ORIGIN_BURST_INTERVAL_MS;
    if (atomic_exchange(&b->limited_until_ms, until) != until) {
        char h[24], al[24];
        snprintf(h, sizeof h, "%llu", (unsigned long long)b->history);
        snprintf(al, sizeof al, "%llu", (unsigned long long)allowed);
        olog(OLOG_WARN, "origin_burst", "origin", cn->juris, "history", h, "allowed", al,
             "interval_s", "60", "action", "records postponed, origin left out of pulls", NULL);
    }
    return false;
}

/* Whether origin `pk` is over its burst budget in this interval. */
bool repl_burst_limited(const struct repl *r, const uint8_t *pk) {
    const struct cluster_node *cn = cluster_by_origin(r->c, pk);
    return cn != NULL && r->burst_floor > 0 &&
           mono_ms() < atomic_load(&r->bursts[cn - r->c->nodes].limited_until_ms);
}

void repl_bursting(struct repl *r, void (*fn)(void *arg, const char *juris, uint64_t allowed),
                   void *arg) {
    for (uint32_t i = 0; r != NULL && r->burst_floor > 0 && i < r->c->count; i++) {
        int64_t until = atomic_load(&r->bursts[i].limited_until_ms);
        if (until != 0 && mono_ms() < until + ORIGIN_BURST_INTERVAL_MS) {
            fn(arg, r->c->nodes[i].juris, r->burst_floor);
        }
    }
}

static const char *juris_of(void *arg, const uint8_t *origin) {
    struct repl *r = arg;
    const struct cluster_node *cn = cluster_by_origin(r->c, origin);
    return cn != NULL ? cn->juris : NULL;
}

/* Hands verified runs to the writer; repl_ingest_end() waits for the commit. */
static int ingest_begin(struct repl *r, struct peer *p, const char *via, struct repl_ingest *ri,
                        Appeal__Run **runs, size_t n_runs, struct errbuf *e) {
    ASSERT(n_runs > 0 && runs != NULL); /* verified runs with records */
    memset(ri, 0, sizeof *ri);
    struct ingest *in = &ri->in;
    in->w.run = engine_ingest_run;
    in->eng = r->g;
    in->runs = runs;
    in->n_runs = n_runs;
    in->via = p != NULL ? p->cn->juris : via;
    in->juris_of = juris_of;
    in->admit = burst_allows;
    in->policy_arg = r;
    in->arena = &r->ingest_arena;
    ri->r = r;
    ri->from = p;
    int rc = submit_begin(r, &ri->wt, &in->w);
    return rc != 0 ? err_set(e, rc, "%s", in->w.err.msg) : 0;
}

int repl_ingest_begin(struct repl *r, struct peer *p, struct repl_ingest *ri, Appeal__Run **runs,
                      size_t n_runs, struct errbuf *e) {
    return ingest_begin(r, p, NULL, ri, runs, n_runs, e);
}

int repl_ingest_end(struct repl_ingest *ri, uint64_t *appended, struct errbuf *e) {
    struct ingest *in = &ri->in;
    int rc = submit_end(&ri->wt);
    *appended = in->appended;
    uint64_t given = 0;
    for (size_t i = 0; i < in->n_runs; i++) {
        given += in->runs[i]->n_records;
    }
    /* The engine settles each record once: stored, or left for later, or
     * refused (a fork or a revoked actor stops a run at one record). */
    ASSERT(rc != 0 || in->appended + in->postponed + in->burst + in->malformed <= given);
    if (rc != 0) {
        return err_set(e, rc, "storing records failed: %s", err_msg(&in->w.err, rc));
    }
    struct engine *n = ri->r->g; /* the counters and the reserve */
    if (in->revoked > 0) {
        repl_count_refused(ri->r, APL_EFORBIDDEN, in->revoked);
    }
    if (in->malformed > 0) {
        repl_count_refused(ri->r, APL_EINVAL, in->malformed);
        if (ri->from != NULL) {
            pthread_mutex_lock(&ri->from->mu);
            ri->from->refused += in->malformed;
            pthread_mutex_unlock(&ri->from->mu);
        }
        return err_set(e, APL_EINVAL, "%s", in->why.msg);
    }
    /* Not an error: the origin is left out of pulls until its budget
     * renews (request_from), the other origins go on. */
    atomic_fetch_add_explicit(&n->metrics.burst_postponed, in->burst, memory_order_relaxed);
    atomic_store(&n->reserve_reached, in->postponed > 0);
    if (in->postponed > 0) {
        atomic_fetch_add_explicit(&n->metrics.ingest_postponed, in->postponed,
                                  memory_order_relaxed);
        return err_set(e, APL_EFULL,
                       "postponed %llu records: the map is within --own-reserve (%llu MiB) of "
                       "--map-max (%llu MiB), room this node keeps for its own log",
                       (unsigned long long)in->postponed,
                       (unsigned long long)(n->own_reserve_bytes >> 20),
                       (unsigned long long)(n->store.map_max_bytes >> 20));
    }
    return 0;
}

int repl_ingest_delivered(struct repl *r, const char *via, Appeal__Run **runs, size_t n_runs,
                          uint64_t *appended, struct errbuf *e) {
    struct repl_ingest ri;
    int rc = ingest_begin(r, NULL, via, &ri, runs, n_runs, e);
    return rc != 0 ? rc : repl_ingest_end(&ri, appended, e);
}

int repl_ingest_wait(struct repl *r, struct peer *p, Appeal__Run **runs, size_t n_runs,
                     uint64_t *appended, struct errbuf *e) {
    struct repl_ingest ri;
    int rc = repl_ingest_begin(r, p, &ri, runs, n_runs, e);
    return rc != 0 ? rc : repl_ingest_end(&ri, appended, e);
}

/* Every origin this store holds (bounded by the trust store's size). */
int repl_list_origins(struct repl *r, MDB_txn *t, struct origin_list *l) {
    l->n = 0;
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, r->g->store.dbi[DB_ORIGINS], &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0 && l->n < CLUSTER_NODES_MAX;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size == KEY_PK_BYTES &&
            chain_origin_get(&r->g->store, t, k.mv_data, &l->o[l->n]) == 0) {
            l->n++;
        }
    }
    mdb_cursor_close(c);
    return 0;
}

void repl_peer_error(struct peer *p, int rc, const char *msg) {
    pthread_mutex_lock(&p->mu);
    p->errors++;
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    bool fresh = strcmp(p->logged_error, msg) != 0;
    if (fresh) {
        snprintf(p->logged_error, sizeof p->logged_error, "%s", msg);
    }
    pthread_mutex_unlock(&p->mu);
    if (fresh) {
        /* Logged once per peer and reason, not on every retry. */
        olog(rc == APL_ENET || rc == APL_ETIMEDOUT ? OLOG_WARN : OLOG_ERROR, "pull_failed", "peer",
             p->cn->juris, "reason", msg, NULL);
    }
}

/* An office's clock against its region's node, from the region's signed
 * message: stored for the writer's check (engine.clock_off_ms), and
 * logged when it starts or stops refusing. */
static void clock_follow(struct peer *p, int64_t their_ms, int64_t now) {
    struct engine *g = p->r->g;
    if (g->clock_ref[0] == '\0' || strcmp(p->cn->juris, g->clock_ref) != 0) {
        return;
    }
    (void)now;
    /* Against the clock our records take their time from (the system
     * clock, or a clock file in tests and drills). */
    int64_t off = engine_now_ms(g) - their_ms;
    int64_t refuse = off > p->r->clock_skew_max_ms || off < -p->r->clock_skew_max_ms ? off : 0;
    int64_t was = atomic_exchange(&g->clock_off_ms, refuse);
    if ((was == 0) != (refuse == 0)) {
        char o[24], m[24];
        snprintf(o, sizeof o, "%lld", (long long)(off / 1000));
        snprintf(m, sizeof m, "%lld", (long long)(p->r->clock_skew_max_ms / 1000));
        olog(refuse ? OLOG_ERROR : OLOG_INFO, refuse ? "clock_skew_refusing" : "clock_skew_cleared",
             "region", g->clock_ref, "off_s", o, "max_s", m, "action",
             refuse ? "registration and timed actions refused until the clock is corrected"
                    : "registration accepted again",
             NULL);
    }
}

void repl_peer_contact(struct peer *p, const Appeal__PeerBody *b, const Appeal__Mark *const *marks,
                       size_t n, bool ok) {
    int64_t now = clock_system_ms();
    clock_follow(p, b->time_ms, now);
    pthread_mutex_lock(&p->mu);
    p->last_contact_ms = now;
    p->skew_ms = b->time_ms - now;
    if (ok) {
        p->last_ok_ms = now;
        if (p->logged_error[0] != '\0') {
            olog(OLOG_INFO, "pull_recovered", "peer", p->cn->juris, NULL);
        }
        p->logged_error[0] = '\0';
        p->last_error[0] = '\0';
    }
    /* Merged, not replaced: a pull answer has no mark for an origin we did
     * not ask for (frozen, or over its burst budget), and logs only grow. */
    for (size_t i = 0; marks != NULL && i < n; i++) {
        if (marks[i]->origin.len != KEY_PK_BYTES) {
            continue;
        }
        uint32_t k = 0;
        while (k < p->n_marks && memcmp(p->marks[k].origin, marks[i]->origin.data, KEY_PK_BYTES)) {
            k++;
        }
        if (k == p->n_marks && p->n_marks < CLUSTER_NODES_MAX) {
            memcpy(p->marks[p->n_marks++].origin, marks[i]->origin.data, KEY_PK_BYTES);
        }
        /* Heads (not ok) may be older than the last answer: they only raise. */
        if (k < p->n_marks && (ok || marks[i]->seq > p->marks[k].seq)) {
            p->marks[k].seq = marks[i]->seq;
        }
    }
    ASSERT(p->n_marks <= CLUSTER_NODES_MAX);
    pthread_mutex_unlock(&p->mu);
}

static int pmark_cmp(const void *a, const void *b) {
    return memcmp(((const struct pmark *)a)->origin, ((const struct pmark *)b)->origin,
                  KEY_PK_BYTES);
}

/* The digest of Heads (docs/protocol.md 4): BLAKE2b-256 over the marks
 * with seq > 0 sorted by origin key, 32-byte key and 8-byte big-endian
 * seq each. Sorts `marks` in place. */
void repl_marks_digest(struct pmark *marks, uint32_t n, uint8_t out[32]) {
    qsort(marks, n, sizeof *marks, pmark_cmp);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    for (uint32_t i = 0; i < n; i++) {
        if (marks[i].seq == 0) {
            continue;
        }
        uint8_t be[8];
        be64_put(be, marks[i].seq);
        crypto_generichash_update(&st, marks[i].origin, KEY_PK_BYTES);
        crypto_generichash_update(&st, be, sizeof be);
    }
    crypto_generichash_final(&st, out, 32);
}

const struct origin_state *repl_held(const struct origin_list *l, const uint8_t *pk) {
    for (uint32_t i = 0; i < l->n; i++) {
        if (memcmp(l->o[i].pk, pk, KEY_PK_BYTES) == 0) {
            return &l->o[i];
        }
    }
    return NULL;
}

/* p->mu held. The claim slot of `origin`, made on first use (NULL when
 * all CLUSTER_NODES_MAX are taken: the cluster file lists no more). */
struct pclaim *repl_claim_of(struct peer *p, const uint8_t *origin) {
    ASSERT(repl_locked(&p->mu));
    ASSERT(p->n_claims <= CLUSTER_NODES_MAX);
    for (uint32_t i = 0; i < p->n_claims; i++) {
        if (memcmp(p->claims[i].origin, origin, KEY_PK_BYTES) == 0) {
            return &p->claims[i];
        }
    }
    if (p->n_claims >= CLUSTER_NODES_MAX) {
        return NULL;
    }
    struct pclaim *c = &p->claims[p->n_claims++];
    memset(c, 0, sizeof *c);
    memcpy(c->origin, origin, KEY_PK_BYTES);
    return c;
}

/* A verified run that p served proves that p holds its records. */
void repl_peer_proved(struct peer *p, const Appeal__Run *run) {
    if (run->n_records == 0) {
        return;
    }
    uint64_t last = run->first_seq + run->n_records - 1;
    pthread_mutex_lock(&p->mu);
    struct pclaim *c = repl_claim_of(p, run->origin.data);
    if (c != NULL && last > c->proven) {
        c->proven = last;
    }
    pthread_mutex_unlock(&p->mu);
}

/* p->mu held. What we believe p holds of `origin` when it claims `claim`
 * and we hold `have`: the claim, but no more than it proved or we hold
 * (a claim at or below our own head costs nothing to believe). */
uint64_t repl_believed(const struct peer *p, const uint8_t *origin, uint64_t claim, uint64_t have) {
    ASSERT(repl_locked((pthread_mutex_t *)&p->mu));
    uint64_t cap = have;
    for (uint32_t i = 0; i < p->n_claims; i++) {
        if (memcmp(p->claims[i].origin, origin, KEY_PK_BYTES) == 0 && p->claims[i].proven > cap) {
            cap = p->claims[i].proven;
        }
    }
    return claim < cap ? claim : cap;
}

/* Whether p's claim of `origin` was discarded (unbacked for
 * CLAIM_UNBACKED_SESSIONS_MAX caught-up sessions); *proven: what it proved. */
bool repl_claim_discarded(struct peer *p, const uint8_t *origin, uint64_t *proven) {
    pthread_mutex_lock(&p->mu);
    struct pclaim *c = repl_claim_of(p, origin);
    bool gone = c != NULL && c->unbacked >= CLAIM_UNBACKED_SESSIONS_MAX;
    if (proven != NULL) {
        *proven = c != NULL ? c->proven : 0;
    }
    pthread_mutex_unlock(&p->mu);
    return gone;
}

/* Checks a run against the snapshot `l` and the cluster file. Returns 0
 * and sets *skip for a frozen origin, and for an origin our cluster file
 * does not list (its records are refused; a peer whose cluster file lists
 * more nodes than ours is not hostile, and the rest of its answer stands). */
int repl_check_origin_run(struct repl *r, const struct origin_list *l, const Appeal__Run *run,
                          struct arena *a, bool *skip, struct errbuf *e) {
    *skip = false;
    if (run->origin.len != KEY_PK_BYTES) {
        return err_set(e, APL_EINVAL, "a run without an origin");
    }
    const struct cluster_node *cn = cluster_by_origin(r->c, run->origin.data);
    if (cn == NULL) {
        *skip = true;
        char kid[KEY_SHORT_HEX + 1];
        key_id_short(run->origin.data, kid);
        return err_set(e, APL_EORIGIN, "origin %s is not in our cluster file", kid);
    }
    const struct origin_state *o = repl_held(l, run->origin.data);
    if (o != NULL && o->frozen) {
        *skip = true;
        return 0;
    }
    struct run_base b = {
        .origin = run->origin.data,
        .head_seq = o ? o->head_seq : 0,
        .head_hash = o && o->head_seq ? o->head_hash : NULL,
        .signing_key = o ? o->signing_key : run->origin.data,
        .juris = cn->juris,
        .box_key = cn->box_pk,
    };
    return repl_check_run(run, &b, a, e);
}

/* Counts refused records by reason, for the metrics. */
void repl_count_refused(struct repl *r, int rc, uint64_t records) {
    struct metrics *m = &r->g->metrics;
    _Atomic uint64_t *c = rc == APL_ECHAIN                        ? &m->refused_bad_chain
                          : rc == APL_ESIG                        ? &m->refused_bad_sig
                          : rc == APL_EGAP                        ? &m->refused_gap
                          : rc == APL_EORIGIN                     ? &m->refused_unknown_origin
                          : rc == APL_EINVAL || rc == APL_ETOOBIG ? &m->refused_malformed
                          : rc == APL_EFORBIDDEN                  ? &m->refused_revoked_actor
                                                                  : &m->refused_other;
    atomic_fetch_add_explicit(c, records ? records : 1, memory_order_relaxed);
}

/* ---- start and stop ---- */

static int open_socket_opts(nng_socket s, size_t recv_max) {
    int rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, recv_max);
    /* A peer that comes back is dialled again within a second: the backoff
     * doubles from 100 ms and stops there (a SYN a second to a peer that
     * is down costs nothing; a region back online waiting 5 s does). */
    if (rv == 0) {
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 1000);
    }
    return rv;
}

static int start_server(struct repl *r, const struct cluster_node *self, struct errbuf *e) {
    int rv = nng_rep0_open(&r->rep);
    if (rv == 0) {
        r->rep_open = true;
        /* Pull requests are small (marks of at most CLUSTER_NODES_MAX
         * origins); deliveries are capped by DELIVER_BYTES_MAX. */
        rv = open_socket_opts(r->rep, DELIVER_MSG_BYTES_MAX);
    }
    if (rv == 0) {
        rv = conn_limit_start(&r->conns, r->rep, "peer", r->o.connections_max, r->o.idle_ms, NULL);
    }
    for (int i = 0; rv == 0 && i < REPL_CONTEXTS; i++) {
        struct srv_work *w = &r->works[i];
        w->r = r;
        rv = arena_init(&w->arena, SRV_ARENA_BYTES) == 0 ? 0 : NNG_ENOMEM;
        if (rv == 0) {
            rv = nng_aio_alloc(&w->aio, repl_srv_cb, w);
        }
        if (rv == 0) {
            rv = nng_ctx_open(&w->ctx, r->rep);
        }
    }
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot serve peers on %s: %s", self->peer_url,
                       nng_strerror(rv));
    }
    /* Over tls+tcp:// only nodes with a certificate from the federation's
     * CA connect; which node it is, its signatures say (peermsg.c). */
    int rc =
        tls_listen(r->rep, self->peer_url, r->o.tls, TLS_AUTH_PEERS, "serve peers on", NULL, e);
    if (rc != 0) {
        return rc;
    }
    rv = nng_pub0_open(&r->pub);
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot publish on %s: %s", self->pub_url, nng_strerror(rv));
    }
    r->pub_open = true;
    rc = tls_listen(r->pub, self->pub_url, r->o.tls, TLS_AUTH_PEERS, "publish on", NULL, e);
    if (rc != 0) {
        return rc;
    }
    for (int i = 0; i < REPL_CONTEXTS; i++) {
        repl_srv_cb(&r->works[i]);
    }
    return 0;
}

/* nng's callback: a connection to the peer is up (again). Its puller
 * starts a session now, even in a backoff: a link that returns is used
 * at once, not after up to BACKOFF_MAX_MS. */
static void on_connected(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
    (void)pipe;
    (void)ev;
    struct peer *p = arg;
    pthread_mutex_lock(&p->mu);
    p->connected = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* One peer's puller resources: its REQ socket dialling the peer, an aio,
 * two answer arenas and its marks. On failure, what was acquired is
 * released here (the slot stays zeroed, outside n_peers). */
static int start_peer(struct repl *r, const struct cluster_node *cn, struct peer *p,
                      struct errbuf *e) {
    ASSERT(p->aio == NULL && p->ours == NULL); /* a fresh, zeroed slot */
    p->r = r;
    p->cn = cn;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = 0;
    int rv = nng_req0_open(&p->req);
    if (rv != 0) {
        goto fail_mu;
    }
    rv = open_socket_opts(p->req, REPL_RECV_BYTES_MAX);
    if (rv == 0) {
        rv = nng_socket_set_ms(p->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    }
    if (rv == 0) {
        rv = nng_pipe_notify(p->req, NNG_PIPE_EV_ADD_POST, on_connected, p);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&p->aio, NULL, NULL);
    }
    if (rv != 0) {
        goto fail_req;
    }
    p->tls = tls_url(cn->peer_url);
    rc = tls_dial(p->req, cn->peer_url, r->o.tls, cn->juris, NNG_FLAG_NONBLOCK, "pull from",
                  &p->dialer, e);
    if (rc != 0) {
        goto fail_aio; /* tls_dial said why in e */
    }
    rv = NNG_ENOMEM;
    if (arena_init(&p->arenas[0], REPL_ARENA_BYTES) != 0) {
        goto fail_aio;
    }
    if (arena_init(&p->arenas[1], REPL_ARENA_BYTES) != 0) {
        goto fail_arena;
    }
    if ((p->ours = malloc(sizeof *p->ours)) == NULL) {
        goto fail_arenas;
    }
    return 0;
fail_arenas:
    arena_fini(&p->arenas[1]);
fail_arena:
    arena_fini(&p->arenas[0]);
fail_aio:
    nng_aio_free(p->aio);
fail_req:
    nng_close(p->req);
fail_mu:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    memset(p, 0, sizeof *p);
    return rc != 0 ? rc
                   : err_set(e, APL_ENET, "cannot set up peer %s (%s): %s", cn->juris, cn->peer_url,
                             nng_strerror(rv));
}

/* Subscribes to cn's publisher and starts a puller slot for it (its
 * thread is started by the caller). */
static int add_peer(struct repl *r, const struct cluster_node *cn, struct errbuf *e) {
    ASSERT(r->n_peers < CLUSTER_NODES_MAX);
    struct peer *p = &r->peers[r->n_peers];
    /* The peer's certificate must name its jurisdiction. */
    nng_dialer sd;
    int rc = tls_dial(r->sub, cn->pub_url, r->o.tls, cn->juris, NNG_FLAG_NONBLOCK, "subscribe to",
                      &sd, e);
    if (rc != 0) {
        return rc;
    }
    rc = start_peer(r, cn, p, e);
    if (rc != 0) {
        nng_dialer_close(sd);
        return rc; /* the peers before it are repl_stop's to free */
    }
    p->sub_dialer = sd;
    atomic_fetch_add(&r->n_peers, 1);
    return 0;
}

static int start_peers(struct repl *r, struct errbuf *e) {
    int rv = nng_sub0_open(&r->sub);
    if (rv == 0) {
        r->sub_open = true;
        rv = open_socket_opts(r->sub, PUSH_BYTES_MAX * 2);
    }
    if (rv == 0) {
        rv = nng_socket_set(r->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    }
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot open the subscriber: %s", nng_strerror(rv));
    }
    /* Slots for every node the file may list, so a reload adds peers
     * without moving the ones running. */
    r->peers = calloc(CLUSTER_NODES_MAX, sizeof *r->peers);
    if (r->peers == NULL) {
        return APL_ENOMEM;
    }
    const struct cluster_node *self = &r->c->nodes[r->c->self];
    for (uint32_t i = 0; i < r->c->count; i++) {
        const struct cluster_node *cn = &r->c->nodes[i];
        if (!cluster_dials(self, cn)) {
            continue;
        }
        int rc = add_peer(r, cn, e);
        if (rc != 0) {
            return rc;
        }
        ASSERT(r->n_peers < r->c->count); /* never one for this node */
    }
    return 0;
}

static struct peer *peer_slot(struct repl *r, const struct cluster_node *cn) {
    for (uint32_t i = 0; i < r->n_peers; i++) {
        if (r->peers[i].cn == cn) {
            return &r->peers[i];
        }
    }
    return NULL;
}

/* After a merge: every node we dial has a running puller and a
 * subscription; a node no longer dialled is retired (its puller closes
 * its dialer and waits, its subscription is closed). */
static int apply_dials(struct repl *r, uint32_t *started, uint32_t *retired, struct errbuf *e) {
    const struct cluster_node *self = &r->c->nodes[r->c->self];
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < r->c->count; i++) {
        const struct cluster_node *cn = &r->c->nodes[i];
        struct peer *p = peer_slot(r, cn);
        bool dial = cluster_dials(self, cn);
        if (p != NULL && dial == atomic_load(&p->retired)) {
            atomic_store(&p->retired, !dial);
            if (dial) {
                rc = tls_dial(r->sub, cn->pub_url, r->o.tls, cn->juris, NNG_FLAG_NONBLOCK,
                              "subscribe to", &p->sub_dialer, e);
            } else {
                nng_dialer_close(p->sub_dialer);
            }
            *started += dial;
            *retired += !dial;
        } else if (p == NULL && dial && (rc = add_peer(r, cn, e)) == 0) {
            p = &r->peers[r->n_peers - 1];
            rc = pthread_create(&p->thread, NULL, repl_puller_main, p) == 0 ? 0 : APL_ENOMEM;
            p->started = rc == 0;
            *started += 1;
        }
        if (p != NULL) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return rc;
}

int repl_reload(struct repl *r, const struct cluster *fresh, struct errbuf *e) {
    pthread_mutex_lock(&r->reload_mu);
    uint32_t added = 0, started = 0, retired = 0;
    int rc = cluster_merge(r->c, fresh, &added, e);
    if (rc == 0) {
        rc = apply_dials(r, &started, &retired, e);
    }
    pthread_mutex_unlock(&r->reload_mu);
    if (rc == 0) {
        char a[16], s[16], x[16];
        snprintf(a, sizeof a, "%u", added);
        snprintf(s, sizeof s, "%u", started);
        snprintf(x, sizeof x, "%u", retired);
        olog(OLOG_INFO, "cluster_reloaded", "nodes_added", a, "peers_started", s, "peers_retired",
             x, NULL);
    }
    return rc;
}

/* Our run's epoch for compact pulls: random, never 0. */
static uint64_t new_epoch(void) {
    uint64_t e = 0;
    while (e == 0) {
        randombytes_buf(&e, sizeof e);
    }
    return e;
}

int repl_start(struct repl **out, struct engine *g, struct cluster *c, const struct repl_opts *o,
               struct errbuf *e) {
    struct repl *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return APL_ENOMEM;
    }
    r->g = g;
    r->c = c;
    r->o = *o;
    r->recover_quorum = o->recover_quorum;
    r->clock_skew_max_ms =
        o->clock_skew_max_ms > 0 ? o->clock_skew_max_ms : CLOCK_SKEW_MAX_MS_DEFAULT;
    /* An office follows its region's clock: the jurisdiction before '.'. */
    const char *dot = strchr(g->juris, '.');
    snprintf(g->clock_ref, sizeof g->clock_ref, "%.*s", dot ? (int)(dot - g->juris) : 0, g->juris);
    r->burst_floor = o->burst_floor;
    atomic_store(&r->recovering, o->recovering);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->recover_mu, NULL);
    pthread_mutex_init(&r->reload_mu, NULL);
    pthread_mutex_init(&r->shown_mu, NULL);
    r->epoch = new_epoch();
    pthread_cond_init(&r->deliver_cv, NULL);
    r->published = r->durable_target = atomic_load(&g->durable_head);
    int rc = arena_init(&r->ingest_arena, RECORD_ARENA_BYTES);
    if (rc == 0) {
        rc = arena_init(&r->sub_arena, SUB_ARENA_BYTES);
    }
    if (rc == 0) {
        rc = arena_init(&r->pub_arena, PUB_ARENA_BYTES);
    }
    const struct cluster_node *self = &c->nodes[c->self];
    if (rc == 0 && self->peer_url[0] != '\0') {
        rc = start_server(r, self, e);
    }
    if (rc == 0) {
        rc = start_peers(r, e);
    }
    if (rc == 0) {
        rc = pthread_create(&r->pub_thread, NULL, repl_publisher_main, r) == 0 ? 0 : APL_ENOMEM;
        r->pub_started = rc == 0;
    }
    if (rc == 0) {
        rc = pthread_create(&r->sub_thread, NULL, repl_subscriber_main, r) == 0 ? 0 : APL_ENOMEM;
        r->sub_started = rc == 0;
    }
    if (rc == 0 && r->rep_open) {
        rc = pthread_create(&r->deliver_thread, NULL, repl_deliver_main, r) == 0 ? 0 : APL_ENOMEM;
        r->deliver_started = rc == 0;
    }
    for (uint32_t i = 0; rc == 0 && i < r->n_peers; i++) {
        rc = pthread_create(&r->peers[i].thread, NULL, repl_puller_main, &r->peers[i]) == 0
                 ? 0
                 : APL_ENOMEM;
        r->peers[i].started = rc == 0;
    }
    if (rc != 0) {
        repl_stop_intake(r);
        repl_stop(r);
        return e->msg[0] ? rc : err_set(e, rc, "cannot start replication: %s", apl_strerror(rc));
    }
    char peers[16];
    snprintf(peers, sizeof peers, "%u", (unsigned)r->n_peers);
    olog(OLOG_INFO, "replication_started", "peers", peers, "listen",
         self->peer_url[0] ? self->peer_url : "-", "recovering", o->recovering ? "yes" : "no",
         NULL);
    *out = r;
    return 0;
}

void repl_stop_intake(struct repl *r) {
    if (r == NULL) {
        return;
    }
    atomic_store(&r->stopping, true);
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (p->aio != NULL) {
            nng_aio_cancel(p->aio);
        }
    }
    for (uint32_t i = 0; i < r->n_peers; i++) {
        if (r->peers[i].started) {
            /* A puller waiting on the writer finishes: the writer still runs. */
            while (pthread_tryjoin_np(r->peers[i].thread, NULL) != 0) {
                if (r->peers[i].aio != NULL) {
                    nng_aio_cancel(r->peers[i].aio);
                }
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
            }
            r->peers[i].started = false;
        }
    }
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->pub_started) {
        pthread_join(r->pub_thread, NULL);
        r->pub_started = false;
    }
    if (r->sub_started) {
        pthread_join(r->sub_thread, NULL);
        r->sub_started = false;
    }
    if (r->deliver_started) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->deliver_cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->deliver_thread, NULL);
        r->deliver_started = false;
    }
}

void repl_stop(struct repl *r) {
    if (r == NULL) {
        return;
    }
    conn_limit_stop(r->conns);
    for (int i = 0; i < REPL_CONTEXTS; i++) {
        if (r->works[i].aio != NULL) {
            nng_aio_stop(r->works[i].aio);
        }
    }
    if (r->rep_open) {
        nng_close(r->rep);
    }
    conn_limit_free(r->conns);
    if (r->pub_open) {
        nng_close(r->pub);
    }
    if (r->sub_open) {
        nng_close(r->sub);
    }
    for (int i = 0; i < REPL_CONTEXTS; i++) {
        if (r->works[i].aio != NULL) {
            /* An answer whose send the stop refused (nng runs no callback
             * for an operation begun on a stopped aio) is still ours. */
            nng_msg *left = nng_aio_get_msg(r->works[i].aio);
            if (left != NULL) {
                nng_msg_free(left);
            }
            nng_aio_free(r->works[i].aio);
        }
        arena_fini(&r->works[i].arena);
    }
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        if (p->aio != NULL) {
            nng_aio_stop(p->aio);
            nng_aio_free(p->aio);
        }
        nng_close(p->req);
        arena_fini(&p->arenas[0]);
        arena_fini(&p->arenas[1]);
        free(p->ours);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    free(r->peers);
    arena_fini(&r->ingest_arena);
    arena_fini(&r->sub_arena);
    arena_fini(&r->pub_arena);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->shown_mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->recover_mu);
    pthread_mutex_destroy(&r->reload_mu);
    pthread_cond_destroy(&r->deliver_cv);
    free(r);
}
