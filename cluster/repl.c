#include "repl.h"

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

struct pmark {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t seq;
};

/* What one peer has shown of one origin. A peer's marks are claims; a
 * claim is believed only up to `proven` (the last seq of a verified run it
 * served us) or what we hold ourselves (docs/protocol.md 7.1). */
struct pclaim {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t proven;
    uint32_t unbacked; /* caught-up sessions in a row with the claim above proven and held */
    bool logged;       /* the unbacked claim was counted and logged */
};

struct peer {
    struct repl *r;
    const struct cluster_node *cn;
    pthread_t thread;
    bool started;
    nng_socket req;
    nng_dialer dialer;
    bool tls;              /* its link is tls+tcp:// */
    uint64_t tls_failures; /* failed handshakes of `dialer` already reported (puller) */
    nng_aio *aio;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool poke;
    struct arena arenas[2];   /* the answer being fetched and the one being stored */
    struct origin_list *ours; /* what we hold or will hold, for requests */
    /* Status, under mu. */
    int64_t last_contact_ms, last_ok_ms, skew_ms;
    char last_error[ERRBUF_MSG_BYTES];
    char logged_error[ERRBUF_MSG_BYTES];
    uint8_t logged_unknown[8][KEY_PK_BYTES]; /* origins already logged as unknown */
    uint32_t n_logged_unknown;
    uint64_t errors, refused, records_in;
    uint32_t backoff_ms;
    uint32_t n_marks;
    struct pmark marks[CLUSTER_NODES_MAX];
    bool confirmed; /* recovery: holds nothing of ours beyond our head */
    bool dropped;   /* recovery: its claim of our log was never backed; not in the quorum */
    uint32_t n_claims;
    struct pclaim claims[CLUSTER_NODES_MAX];
};

/* The burst budget of one origin (ORIGIN_BURST_INTERVAL_MS): written by
 * the writer thread only; `limited_until_ms` is read by the others. */
struct burst {
    int64_t start_ms;                 /* monotonic; 0: no interval yet */
    uint64_t history;                 /* its head when the interval started */
    uint64_t taken;                   /* records stored in the interval */
    _Atomic int64_t limited_until_ms; /* postponed: left out of pulls until then */
};

struct srv_work {
    struct repl *r;
    nng_aio *aio;
    nng_ctx ctx;
    int state; /* 0 init, 1 recv, 2 send */
    struct arena arena;
};

struct repl {
    struct engine *g;
    struct cluster *c;
    struct repl_opts o; /* as given to repl_start, read-only */
    nng_socket rep, pub, sub;
    bool rep_open, pub_open, sub_open;
    struct srv_work works[REPL_CONTEXTS];
    struct conn_limit *conns; /* of the serve socket */
    struct peer *peers;
    uint32_t n_peers;
    pthread_t sub_thread, pub_thread;
    bool sub_started, pub_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t durable_target; /* under mu */
    uint64_t published;      /* publisher thread */
    _Atomic bool stopping;
    _Atomic bool recovering;
    int recover_quorum;
    struct arena ingest_arena; /* writer thread */
    struct arena sub_arena;    /* subscriber thread */
    struct arena pub_arena;    /* publisher thread */
    pthread_mutex_t recover_mu;
    uint64_t burst_floor;                   /* 0: no burst budget */
    struct burst bursts[CLUSTER_NODES_MAX]; /* by index in the cluster file */
};

/* ---- peer messages ---- */

static int64_t now_ms(const struct repl *r) {
    return engine_now_ms(r->g);
}

static int peer_pack(struct repl *r, Appeal__PeerBody *body, nng_msg **out) {
    return peermsg_pack(&r->g->keys, r->o.peer_skew_ms, body, out);
}

static int peer_open(struct repl *r, const void *data, size_t len, struct arena *a,
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
        ASSERT(!"a fault replication's walk cannot give");
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
    walk_init(&w, b->origin, b->head_seq, b->head_seq > 0 ? b->head_hash : NULL, b->signing_key,
              a);
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

/* A write request whose submitter waits for it to be settled. */
struct waited {
    struct wreq *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void waited_done(struct wreq *w) {
    struct waited *x = w->arg;
    pthread_mutex_lock(&x->mu);
    x->done = true;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* Submits `w` to the writer; submit_end() waits for it. */
static int submit_begin(struct repl *r, struct waited *x, struct wreq *w) {
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

static int submit_wait(struct repl *r, struct wreq *w) {
    struct waited x;
    int rc = submit_begin(r, &x, w);
    return rc != 0 ? rc : submit_end(&x);
}

/* A batch of verified runs on its way to the engine (engine_ingest_run). */
struct repl_ingest {
    struct ingest in;
    struct waited wt;
    struct repl *r;
    struct peer *from;
};

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
static bool burst_limited(const struct repl *r, const uint8_t *pk) {
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

/* Hands verified runs to the writer; ingest_end() waits for the commit. */
static void count_refused(struct repl *r, int rc, uint64_t records);

static int ingest_begin(struct repl *r, struct peer *p, struct repl_ingest *ri,
                        Appeal__Run **runs, size_t n_runs, struct errbuf *e) {
    memset(ri, 0, sizeof *ri);
    struct ingest *in = &ri->in;
    in->w.run = engine_ingest_run;
    in->eng = r->g;
    in->runs = runs;
    in->n_runs = n_runs;
    in->via = p != NULL ? p->cn->juris : NULL;
    in->juris_of = juris_of;
    in->admit = burst_allows;
    in->policy_arg = r;
    in->arena = &r->ingest_arena;
    ri->r = r;
    ri->from = p;
    int rc = submit_begin(r, &ri->wt, &in->w);
    return rc != 0 ? err_set(e, rc, "%s", in->w.err.msg) : 0;
}

static int ingest_end(struct repl_ingest *ri, uint64_t *appended, struct errbuf *e) {
    struct ingest *in = &ri->in;
    int rc = submit_end(&ri->wt);
    *appended = in->appended;
    if (rc != 0) {
        return err_set(e, rc, "storing records failed: %s", err_msg(&in->w.err, rc));
    }
    struct engine *n = ri->r->g; /* the counters and the reserve */
    if (in->revoked > 0) {
        count_refused(ri->r, APL_EFORBIDDEN, in->revoked);
    }
    if (in->malformed > 0) {
        count_refused(ri->r, APL_EINVAL, in->malformed);
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

static int ingest(struct repl *r, struct peer *p, Appeal__Run **runs, size_t n_runs,
                  uint64_t *appended, struct errbuf *e) {
    struct repl_ingest ri;
    int rc = ingest_begin(r, p, &ri, runs, n_runs, e);
    return rc != 0 ? rc : ingest_end(&ri, appended, e);
}

/* ---- serving pulls ---- */

/* What we may serve of an origin: everything held, except our own
 * records that are not durable yet. */
static uint64_t servable_head(struct repl *r, const struct origin_state *o) {
    if (memcmp(o->pk, r->g->keys.sign_pk, KEY_PK_BYTES) == 0) {
        uint64_t d = atomic_load(&r->g->durable_head);
        return d < o->head_seq ? d : o->head_seq;
    }
    return o->head_seq;
}

struct origin_list {
    struct origin_state o[CLUSTER_NODES_MAX];
    uint32_t n;
};

/* Every origin this store holds (bounded by the trust store's size). */
static int list_origins(struct repl *r, MDB_txn *t, struct origin_list *l) {
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

/* Our mark for origin o: what we serve (`serving`) or what we hold. */
static Appeal__Mark *mark_of(struct arena *a, struct repl *r, const struct origin_state *o,
                             MDB_txn *t, bool serving) {
    Appeal__Mark *m = arena_new(a, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    appeal__mark__init(m);
    uint64_t head = serving ? servable_head(r, o) : o->head_seq;
    m->origin.data = (uint8_t *)arena_new(a, KEY_PK_BYTES);
    if (m->origin.data == NULL) {
        return NULL;
    }
    memcpy(m->origin.data, o->pk, KEY_PK_BYTES);
    m->origin.len = KEY_PK_BYTES;
    m->seq = head;
    if (head == 0) {
        return m;
    }
    uint8_t *h = arena_new(a, HASH_BYTES);
    if (h == NULL) {
        return NULL;
    }
    if (head == o->head_seq) {
        memcpy(h, o->head_hash, HASH_BYTES);
        m->head_time_ms = o->head_time_ms;
    } else {
        MDB_val env;
        if (chain_get(&r->g->store, t, o->idx, head, &env) != 0) {
            return NULL;
        }
        rec_hash(env.mv_data, env.mv_size, h);
    }
    m->head_hash.data = h;
    m->head_hash.len = HASH_BYTES;
    return m;
}

static const Appeal__Mark *find_mark(Appeal__Mark **marks, size_t n, const uint8_t *pk) {
    for (size_t i = 0; i < n; i++) {
        if (marks[i]->origin.len == KEY_PK_BYTES &&
            memcmp(marks[i]->origin.data, pk, KEY_PK_BYTES) == 0) {
            return marks[i];
        }
    }
    return NULL;
}

/* One origin's part of a pull answer: a run above the requester's mark, or
 * a conflict when its mark names a record we hold differently. */
static int serve_origin(struct repl *r, MDB_txn *t, struct arena *a, const struct origin_state *o,
                        const Appeal__Mark *theirs, bool wanted, Appeal__PullResponse *resp,
                        size_t *budget_n, size_t *budget_bytes) {
    uint64_t head = servable_head(r, o), from = theirs ? theirs->seq : 0;
    if (!wanted) {
        return 0;
    }
    if (from > 0 && from <= head && theirs->head_hash.len == HASH_BYTES) {
        MDB_val env;
        uint8_t h[HASH_BYTES];
        if (chain_get(&r->g->store, t, o->idx, from, &env) != 0) {
            return APL_ECORRUPT;
        }
        rec_hash(env.mv_data, env.mv_size, h);
        if (memcmp(h, theirs->head_hash.data, HASH_BYTES) != 0) {
            Appeal__Run *c = arena_new(a, sizeof *c);
            ProtobufCBinaryData *one = arena_new(a, sizeof *one);
            if (c == NULL || one == NULL) {
                return APL_ENOMEM;
            }
            appeal__run__init(c);
            c->origin.data = (uint8_t *)o->pk;
            c->origin.len = KEY_PK_BYTES;
            c->first_seq = from;
            one->data = env.mv_data;
            one->len = env.mv_size;
            c->records = one;
            c->n_records = 1;
            resp->conflicts[resp->n_conflicts++] = c;
            return 0;
        }
    }
    if (head <= from || *budget_n == 0) {
        resp->more |= head > from;
        return 0;
    }
    uint64_t want = head - from;
    size_t cap = want < *budget_n ? (size_t)want : *budget_n;
    Appeal__Run *run = arena_new(a, sizeof *run);
    ProtobufCBinaryData *recs = arena_new(a, cap * sizeof *recs);
    if (run == NULL || recs == NULL) {
        return APL_ENOMEM;
    }
    appeal__run__init(run);
    run->origin.data = (uint8_t *)o->pk;
    run->origin.len = KEY_PK_BYTES;
    run->first_seq = from + 1;
    run->records = recs;
    for (uint64_t s = from + 1; s <= head && run->n_records < cap; s++) {
        MDB_val env;
        if (chain_get(&r->g->store, t, o->idx, s, &env) != 0) {
            return APL_ECORRUPT;
        }
        if (env.mv_size > *budget_bytes && (run->n_records > 0 || resp->n_runs > 0)) {
            break; /* only a first record ever passes the byte budget */
        }
        recs[run->n_records].data = env.mv_data;
        recs[run->n_records].len = env.mv_size;
        run->n_records++;
        *budget_bytes = env.mv_size > *budget_bytes ? 0 : *budget_bytes - env.mv_size;
    }
    *budget_n -= run->n_records;
    resp->more |= from + run->n_records < head;
    if (run->n_records > 0) {
        resp->runs[resp->n_runs++] = run;
    }
    return 0;
}

static int answer_pull(struct repl *r, const Appeal__PullRequest *q, struct arena *a, MDB_txn *t,
                       Appeal__PullResponse *resp) {
    struct origin_list *l = arena_new(a, sizeof *l);
    if (l == NULL) {
        return APL_ENOMEM;
    }
    int rc = list_origins(r, t, l);
    if (rc != 0) {
        return rc;
    }
    resp->runs = arena_new(a, l->n * sizeof *resp->runs + 1);
    resp->conflicts = arena_new(a, l->n * sizeof *resp->conflicts + 1);
    resp->marks = arena_new(a, l->n * sizeof *resp->marks + 1);
    if (resp->runs == NULL || resp->conflicts == NULL || resp->marks == NULL) {
        return APL_ENOMEM;
    }
    size_t budget_n =
        q->records_max && q->records_max < PULL_RECORDS_MAX ? q->records_max : PULL_RECORDS_MAX;
    size_t budget_bytes =
        q->bytes_max && q->bytes_max < PULL_BYTES_MAX ? q->bytes_max : PULL_BYTES_MAX;
    /* Start at a rotating origin so that one busy origin does not starve
     * the others of a capped answer. */
    uint32_t first = l->n ? randombytes_uniform(l->n) : 0;
    for (uint32_t k = 0; k < l->n && rc == 0; k++) {
        const struct origin_state *o = &l->o[(first + k) % l->n];
        const Appeal__Mark *theirs = find_mark(q->marks, q->n_marks, o->pk);
        bool wanted = q->n_wanted == 0;
        for (size_t w = 0; w < q->n_wanted && !wanted; w++) {
            wanted = q->wanted[w].len == KEY_PK_BYTES &&
                     memcmp(q->wanted[w].data, o->pk, KEY_PK_BYTES) == 0;
        }
        rc = serve_origin(r, t, a, o, theirs, wanted, resp, &budget_n, &budget_bytes);
        Appeal__Mark *m = rc == 0 ? mark_of(a, r, o, t, true) : NULL;
        if (rc == 0 && m == NULL) {
            rc = APL_ENOMEM;
        }
        if (rc == 0) {
            resp->marks[resp->n_marks++] = m;
        }
    }
    return rc;
}

static void srv_reply(struct srv_work *w, Appeal__PullResponse *resp) {
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULLED;
    body.pulled = resp;
    nng_msg *m;
    if (peer_pack(w->r, &body, &m) != 0) {
        w->state = 1;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    nng_aio_set_msg(w->aio, m);
    w->state = 2;
    nng_ctx_send(w->ctx, w->aio);
}

static void srv_handle(struct srv_work *w, nng_msg *msg) {
    struct repl *r = w->r;
    struct errbuf e;
    err_clear(&e);
    arena_reset(&w->arena);
    Appeal__PeerBody *body = NULL;
    const struct cluster_node *from;
    Appeal__PullResponse resp = APPEAL__PULL_RESPONSE__INIT;
    int rc = peer_open(r, nng_msg_body(msg), nng_msg_len(msg), &w->arena, NULL, &body, &from, &e);
    if (rc == 0 && body->msg_case != APPEAL__PEER_BODY__MSG_PULL) {
        rc = err_set(&e, APL_EINVAL, "expected a pull request");
    }
    if (rc == 0 && body->pull->n_marks > CLUSTER_NODES_MAX) {
        rc = err_set(&e, APL_ETOOBIG, "pull request with %zu marks", body->pull->n_marks);
    }
    if (rc != 0) {
        olog(OLOG_WARN, "pull_refused", "reason", e.msg, NULL);
        resp.error = e.msg;
        nng_msg_free(msg);
        srv_reply(w, &resp);
        return;
    }
    MDB_txn *t;
    rc = store_rd_begin(&r->g->store, &t);
    if (rc == 0) {
        rc = answer_pull(r, body->pull, &w->arena, t, &resp);
        if (rc != 0) {
            appeal__pull_response__init(&resp);
            resp.error = "the node could not read its store";
        }
        srv_reply(w, &resp); /* packs while the records are mapped */
        store_rd_end(&r->g->store, t);
    } else {
        resp.error = "the node could not read its store";
        srv_reply(w, &resp);
    }
    nng_msg_free(msg);
}

static void srv_cb(void *arg) {
    struct srv_work *w = arg;
    int rv;
    switch (w->state) {
    case 0:
        w->state = 1;
        nng_ctx_recv(w->ctx, w->aio);
        break;
    case 1:
        rv = nng_aio_result(w->aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            return;
        }
        if (rv != 0) {
            nng_ctx_recv(w->ctx, w->aio);
            return;
        }
        conn_limit_busy(w->r->conns, nng_msg_get_pipe(nng_aio_get_msg(w->aio)), 0);
        srv_handle(w, nng_aio_get_msg(w->aio));
        break;
    default:
        rv = nng_aio_result(w->aio);
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio));
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return;
            }
        }
        w->state = 1;
        nng_ctx_recv(w->ctx, w->aio);
        break;
    }
}

/* ---- pulling ---- */

static void peer_error(struct peer *p, int rc, const char *msg) {
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

static void peer_contact(struct peer *p, const Appeal__PeerBody *b,
                         const Appeal__Mark *const *marks, size_t n, bool ok) {
    int64_t now = clock_system_ms();
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
        if (k < p->n_marks) {
            p->marks[k].seq = marks[i]->seq;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

static const struct origin_state *held(const struct origin_list *l, const uint8_t *pk) {
    for (uint32_t i = 0; i < l->n; i++) {
        if (memcmp(l->o[i].pk, pk, KEY_PK_BYTES) == 0) {
            return &l->o[i];
        }
    }
    return NULL;
}

/* p->mu held. The claim slot of `origin`, made on first use (NULL when
 * all CLUSTER_NODES_MAX are taken: the cluster file lists no more). */
static struct pclaim *claim_of(struct peer *p, const uint8_t *origin) {
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
static void peer_proved(struct peer *p, const Appeal__Run *run) {
    if (run->n_records == 0) {
        return;
    }
    uint64_t last = run->first_seq + run->n_records - 1;
    pthread_mutex_lock(&p->mu);
    struct pclaim *c = claim_of(p, run->origin.data);
    if (c != NULL && last > c->proven) {
        c->proven = last;
    }
    pthread_mutex_unlock(&p->mu);
}

/* p->mu held. What we believe p holds of `origin` when it claims `claim`
 * and we hold `have`: the claim, but no more than it proved or we hold
 * (a claim at or below our own head costs nothing to believe). */
static uint64_t believed(const struct peer *p, const uint8_t *origin, uint64_t claim,
                         uint64_t have) {
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
static bool claim_discarded(struct peer *p, const uint8_t *origin, uint64_t *proven) {
    pthread_mutex_lock(&p->mu);
    struct pclaim *c = claim_of(p, origin);
    bool gone = c != NULL && c->unbacked >= CLAIM_UNBACKED_SESSIONS_MAX;
    if (proven != NULL) {
        *proven = c != NULL ? c->proven : 0;
    }
    pthread_mutex_unlock(&p->mu);
    return gone;
}

/* At the end of a caught-up session (no records, `more` false): the answer
 * came from one read transaction that served everything above our marks,
 * so a mark above what p proved and what we hold is a claim without
 * records. After CLAIM_UNBACKED_SESSIONS_MAX such sessions in a row it is
 * discarded: counted and logged once per peer and origin. */
static void claims_check(struct peer *p, const struct origin_list *l,
                         const Appeal__PullResponse *resp) {
    for (size_t i = 0; i < resp->n_marks && i < CLUSTER_NODES_MAX; i++) {
        const Appeal__Mark *m = resp->marks[i];
        const struct cluster_node *cn =
            m->origin.len == KEY_PK_BYTES ? cluster_by_origin(p->r->c, m->origin.data) : NULL;
        const struct origin_state *o = cn != NULL ? held(l, m->origin.data) : NULL;
        if (cn == NULL || (o != NULL && o->frozen) || burst_limited(p->r, m->origin.data)) {
            continue; /* records we would not take: nothing to back */
        }
        uint64_t have = o != NULL ? o->head_seq : 0, proven = 0;
        bool fresh = false;
        pthread_mutex_lock(&p->mu);
        struct pclaim *c = claim_of(p, m->origin.data);
        if (c != NULL) {
            bool unbacked = m->seq > have && m->seq > c->proven;
            c->unbacked = !unbacked                                   ? 0
                          : c->unbacked < CLAIM_UNBACKED_SESSIONS_MAX ? c->unbacked + 1
                                                                      : c->unbacked;
            fresh = c->unbacked >= CLAIM_UNBACKED_SESSIONS_MAX && !c->logged;
            c->logged = c->logged || fresh;
            proven = c->proven;
        }
        pthread_mutex_unlock(&p->mu);
        if (fresh) {
            atomic_fetch_add_explicit(&p->r->g->metrics.unproven_claims, 1, memory_order_relaxed);
            char claimed[24], pr[24], hv[24];
            snprintf(claimed, sizeof claimed, "%llu", (unsigned long long)m->seq);
            snprintf(pr, sizeof pr, "%llu", (unsigned long long)proven);
            snprintf(hv, sizeof hv, "%llu", (unsigned long long)have);
            olog(OLOG_WARN, "unproven_head", "peer", p->cn->juris, "origin", cn->juris, "claimed",
                 claimed, "proven", pr, "held", hv, "reason",
                 "claims records it does not serve: not counted as lag", NULL);
        }
    }
}

/* Checks a run against the snapshot `l` and the cluster file. Returns 0
 * and sets *skip for a frozen origin, and for an origin our cluster file
 * does not list (its records are refused; a peer whose cluster file lists
 * more nodes than ours is not hostile, and the rest of its answer stands). */
static int check_run(struct repl *r, const struct origin_list *l, const Appeal__Run *run,
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
    const struct origin_state *o = held(l, run->origin.data);
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
static void count_refused(struct repl *r, int rc, uint64_t records) {
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

/* Records of an origin our cluster file does not list: refused, counted,
 * logged once per peer. */
static void unknown_origin(struct peer *p, const Appeal__Run *run) {
    char kid[KEY_SHORT_HEX + 1];
    key_id_short(run->origin.data, kid);
    char msg[ERRBUF_MSG_BYTES];
    snprintf(msg, sizeof msg, "%s offers records of origin %s, which is not in our cluster file",
             p->cn->juris, kid);
    count_refused(p->r, APL_EORIGIN, run->n_records);
    pthread_mutex_lock(&p->mu);
    p->refused += run->n_records;
    bool fresh = true;
    for (uint32_t i = 0; i < p->n_logged_unknown && fresh; i++) {
        fresh = memcmp(p->logged_unknown[i], run->origin.data, KEY_PK_BYTES) != 0;
    }
    if (fresh && p->n_logged_unknown < 8) {
        memcpy(p->logged_unknown[p->n_logged_unknown++], run->origin.data, KEY_PK_BYTES);
    }
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    pthread_mutex_unlock(&p->mu);
    if (fresh) {
        olog(OLOG_WARN, "records_refused", "peer", p->cn->juris, "origin", kid, "reason",
             "not in the cluster file", NULL);
    }
}

/* A peer holds a different record where we hold ours: if it is signed by
 * the origin, that is a fork, and both are kept. */
static int check_conflicts(struct peer *p, const struct origin_list *l,
                           const Appeal__PullResponse *resp, struct arena *a, struct errbuf *e) {
    struct repl *r = p->r;
    for (size_t i = 0; i < resp->n_conflicts; i++) {
        Appeal__Run *c = resp->conflicts[i];
        if (c->origin.len != KEY_PK_BYTES || c->n_records != 1) {
            continue;
        }
        const struct origin_state *o = held(l, c->origin.data);
        struct record rec;
        size_t mark = a->used_bytes;
        bool signed_ok = o != NULL && !o->frozen && c->first_seq <= o->head_seq &&
                         rec_decode(c->records[0].data, c->records[0].len, a, &rec, NULL) == 0 &&
                         rec.body->seq == c->first_seq &&
                         memcmp(rec.body->origin.data, o->pk, KEY_PK_BYTES) == 0 &&
                         (rec_verify_sig(&rec, o->signing_key) || rec_verify_sig(&rec, o->pk));
        a->used_bytes = mark;
        if (!signed_ok) {
            continue; /* not evidence of anything but a confused peer */
        }
        uint64_t appended;
        int rc = ingest(r, p, &c, 1, &appended, e);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void recovery_check(struct peer *p, const Appeal__PullResponse *resp) {
    struct repl *r = p->r;
    if (!atomic_load(&r->recovering)) {
        return;
    }
    const Appeal__Mark *theirs = find_mark(resp->marks, resp->n_marks, r->g->keys.sign_pk);
    MDB_txn *t;
    struct origin_state self;
    if (store_rd_begin(&r->g->store, &t) != 0) {
        return;
    }
    int rc = chain_origin_get(&r->g->store, t, r->g->keys.sign_pk, &self);
    store_rd_end(&r->g->store, t);
    uint64_t mine = rc == 0 ? self.head_seq : 0;
    if (theirs == NULL || theirs->seq <= mine) {
        pthread_mutex_lock(&p->mu);
        p->confirmed = true;
        p->dropped = false;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    /* It claims more of our log than it serves: after the bound, it leaves
     * the quorum, so one peer's lie cannot hold the recovery forever. */
    uint64_t proven = 0;
    if (!claim_discarded(p, r->g->keys.sign_pk, &proven) || proven > mine) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    bool fresh = !p->dropped;
    p->dropped = true;
    pthread_mutex_unlock(&p->mu);
    if (fresh) {
        char claimed[24];
        snprintf(claimed, sizeof claimed, "%llu", (unsigned long long)theirs->seq);
        olog(OLOG_WARN, "recovery_quorum_dropped", "peer", p->cn->juris, "claimed", claimed,
             "reason", "claims records of our log that it does not serve", NULL);
    }
}

/* Sends on the peer's REQ socket, which waits for a connection. Over
 * tls+tcp:// a handshake failing on a certificate is said within about
 * PULL_TLS_CHECK_MS, instead of as a timeout after PULL_TIMEOUT_MS: nng
 * retries dials quietly and counts their failures only in its statistics,
 * which are read only while we wait. On failure `out` is still ours. */
static int send_wait(struct peer *p, nng_msg *out) {
    int slice_ms = p->tls ? PULL_TLS_CHECK_MS : PULL_TIMEOUT_MS;
    for (int waited_ms = 0;; waited_ms += slice_ms) {
        nng_aio_set_msg(p->aio, out);
        nng_aio_set_timeout(p->aio, slice_ms);
        nng_send_aio(p->req, p->aio);
        nng_aio_wait(p->aio);
        int rv = nng_aio_result(p->aio);
        if (rv == 0 && waited_ms > 0) {
            p->tls_failures = tls_dialer_cert_failures(p->dialer); /* connected at last */
        }
        if (rv != NNG_ETIMEDOUT || waited_ms + slice_ms >= PULL_TIMEOUT_MS ||
            atomic_load(&p->r->stopping)) {
            return rv;
        }
        uint64_t failures = tls_dialer_cert_failures(p->dialer);
        if (failures > p->tls_failures) {
            p->tls_failures = failures;
            return NNG_ECRYPTO;
        }
    }
}

static int send_recv(struct peer *p, nng_msg *out, nng_msg **in, struct errbuf *e) {
    int rv = send_wait(p, out);
    if (rv == NNG_ECRYPTO) {
        nng_msg_free(out);
        return err_set(e, APL_EAUTH,
                       "TLS handshake with %s (%s) failed: its certificate is not signed by our "
                       "CA or does not name %s, or it refused ours",
                       p->cn->juris, p->cn->peer_url, p->cn->juris);
    }
    if (rv != 0) {
        nng_msg_free(out);
        return err_set(e, rv == NNG_ETIMEDOUT ? APL_ETIMEDOUT : APL_ENET, "cannot send to %s: %s",
                       p->cn->juris, nng_strerror(rv));
    }
    nng_aio_set_timeout(p->aio, PULL_TIMEOUT_MS);
    nng_recv_aio(p->req, p->aio);
    nng_aio_wait(p->aio);
    rv = nng_aio_result(p->aio);
    if (rv != 0) {
        return err_set(e, rv == NNG_ETIMEDOUT ? APL_ETIMEDOUT : APL_ENET, "no answer from %s: %s",
                       p->cn->juris, nng_strerror(rv));
    }
    *in = nng_aio_get_msg(p->aio);
    return 0;
}

/* Our marks, for a pull: a snapshot of the store, then advanced by each
 * verified answer while its records are still being stored (so the next
 * request goes out before the last answer is on disk). */
static int snapshot_marks(struct repl *r, struct origin_list *l) {
    MDB_txn *t;
    int rc = store_rd_begin(&r->g->store, &t);
    if (rc == 0) {
        rc = list_origins(r, t, l);
        store_rd_end(&r->g->store, t);
    }
    return rc;
}

static int request_from(struct peer *p, const struct origin_list *l, struct arena *a,
                        nng_msg **out) {
    Appeal__PullRequest q = APPEAL__PULL_REQUEST__INIT;
    q.marks = arena_new(a, (l->n + 1) * sizeof *q.marks);
    if (q.marks == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < l->n; i++) {
        const struct origin_state *o = &l->o[i];
        if (o->head_seq == 0) {
            continue;
        }
        Appeal__Mark *m = arena_new(a, sizeof *m);
        if (m == NULL) {
            return APL_ENOMEM;
        }
        appeal__mark__init(m);
        m->origin.data = (uint8_t *)o->pk;
        m->origin.len = KEY_PK_BYTES;
        m->seq = o->head_seq;
        m->head_hash.data = (uint8_t *)o->head_hash;
        m->head_hash.len = HASH_BYTES;
        m->head_time_ms = o->head_time_ms;
        q.marks[q.n_marks++] = m;
    }
    /* Only the origins we would store: our cluster file's, not frozen. */
    const struct cluster *c = p->r->c;
    q.wanted = arena_new(a, (c->count + 1) * sizeof *q.wanted);
    if (q.wanted == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < c->count; i++) {
        const struct origin_state *o = held(l, c->nodes[i].sign_pk);
        if ((o == NULL || !o->frozen) && !burst_limited(p->r, c->nodes[i].sign_pk)) {
            q.wanted[q.n_wanted].data = (uint8_t *)c->nodes[i].sign_pk;
            q.wanted[q.n_wanted].len = KEY_PK_BYTES;
            q.n_wanted++;
        }
    }
    q.records_max = PULL_RECORDS_MAX;
    q.bytes_max = PULL_BYTES_MAX;
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULL;
    body.pull = &q;
    return peer_pack(p->r, &body, out);
}

/* What we will hold once a verified answer is stored. */
static void advance_marks(struct origin_list *l, const Appeal__PullResponse *resp,
                          struct arena *a) {
    for (size_t i = 0; i < resp->n_runs; i++) {
        const Appeal__Run *run = resp->runs[i];
        if (run->n_records == 0) {
            continue;
        }
        struct origin_state *o = (struct origin_state *)held(l, run->origin.data);
        if (o == NULL) {
            if (l->n >= CLUSTER_NODES_MAX) {
                continue;
            }
            o = &l->o[l->n++];
            memset(o, 0, sizeof *o);
            memcpy(o->pk, run->origin.data, KEY_PK_BYTES);
            memcpy(o->signing_key, run->origin.data, KEY_PK_BYTES);
        }
        for (size_t k = 0; k < run->n_records; k++) {
            struct rec_peek pk;
            struct record rec;
            size_t mark = a->used_bytes;
            if (rec_peek(run->records[k].data, run->records[k].len, &pk) == 0 &&
                pk.event == APPEAL__BODY__EVENT_KEY_ROTATED &&
                rec_decode(run->records[k].data, run->records[k].len, a, &rec, NULL) == 0) {
                memcpy(o->signing_key, rec.body->key_rotated->new_key.data, KEY_PK_BYTES);
            }
            a->used_bytes = mark;
        }
        const ProtobufCBinaryData *last = &run->records[run->n_records - 1];
        o->head_seq = run->first_seq + run->n_records - 1;
        rec_hash(last->data, last->len, o->head_hash);
    }
}

struct fetched {
    Appeal__PeerBody *body;
    Appeal__PullResponse *resp;
    size_t records;
};

/* One request and its verified answer, decoded into `a`. */
static int fetch(struct peer *p, const struct origin_list *l, struct arena *a, struct fetched *f,
                 struct errbuf *e) {
    struct repl *r = p->r;
    memset(f, 0, sizeof *f);
    nng_msg *out = NULL, *in = NULL;
    int rc = request_from(p, l, a, &out);
    if (rc != 0) {
        return err_set(e, rc, "cannot prepare a pull: %s", apl_strerror(rc));
    }
    if ((rc = send_recv(p, out, &in, e)) != 0) {
        return rc;
    }
    /* Unpacking copies what it keeps into `a`: the message goes at once. */
    rc = peer_open(r, nng_msg_body(in), nng_msg_len(in), a, p->cn, &f->body, NULL, e);
    nng_msg_free(in);
    if (rc == 0 && f->body->msg_case != APPEAL__PEER_BODY__MSG_PULLED) {
        rc = err_set(e, APL_EINVAL, "%s answered a pull with something else", p->cn->juris);
    }
    if (rc == 0 && f->body->pulled->error[0] != '\0') {
        peer_contact(p, f->body, NULL, 0, false);
        rc = err_set(e, APL_EAUTH, "%s refused our pull: %s", p->cn->juris, f->body->pulled->error);
    }
    if (rc != 0) {
        return rc;
    }
    f->resp = f->body->pulled;
    for (size_t i = 0; rc == 0 && i < f->resp->n_runs; i++) {
        bool skip;
        rc = check_run(r, l, f->resp->runs[i], a, &skip, e);
        if (rc == APL_EORIGIN && skip) {
            unknown_origin(p, f->resp->runs[i]);
            rc = 0;
        }
        if (skip) {
            f->resp->runs[i]->n_records = 0;
        } else if (rc == 0) {
            peer_proved(p, f->resp->runs[i]);
        }
        f->records += f->resp->runs[i]->n_records;
    }
    if (rc != 0) {
        count_refused(r, rc, f->records);
        pthread_mutex_lock(&p->mu);
        p->refused += f->records;
        pthread_mutex_unlock(&p->mu);
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "refused a batch from %s: %s", p->cn->juris, e->msg);
        return err_set(e, rc, "%s", msg);
    }
    atomic_fetch_add_explicit(&r->g->metrics.pulls, 1, memory_order_relaxed);
    peer_contact(p, f->body, (const Appeal__Mark *const *)f->resp->marks, f->resp->n_marks, true);
    return 0;
}

/* Pulls from one peer until caught up. Answer k+1 is fetched and verified
 * while answer k is being stored: one ingest in flight at most, and every
 * answer checked against what we will hold when it is stored. */
static int pull_session(struct peer *p, struct errbuf *e) {
    struct repl *r = p->r;
    struct origin_list *l = p->ours;
    int rc = snapshot_marks(r, l);
    if (rc != 0) {
        return err_set(e, rc, "cannot read our marks: %s", apl_strerror(rc));
    }
    struct repl_ingest in;
    bool inflight = false;
    size_t expected = 0;
    unsigned empty_answers = 0;
    for (unsigned k = 0; !atomic_load(&r->stopping); k++) {
        struct arena *a = &p->arenas[k & 1];
        arena_reset(a);
        struct fetched f;
        rc = fetch(p, l, a, &f, e);
        if (inflight) {
            uint64_t appended = 0;
            struct errbuf e2;
            err_clear(&e2);
            int rc2 = ingest_end(&in, &appended, &e2);
            inflight = false;
            pthread_mutex_lock(&p->mu);
            p->records_in += appended;
            pthread_mutex_unlock(&p->mu);
            if (rc2 != 0 && rc == 0) {
                rc = err_set(e, rc2, "%s", e2.msg);
            }
            if (rc == 0 && appended < expected && (rc = snapshot_marks(r, l)) != 0) {
                err_set(e, rc, "cannot read our marks");
            }
        }
        if (rc == 0 && f.resp->n_conflicts > 0) {
            rc = check_conflicts(p, l, f.resp, a, e);
        }
        if (rc != 0) {
            break;
        }
        if (f.records == 0) {
            if (!f.resp->more) {
                claims_check(p, l, f.resp);
            }
            recovery_check(p, f.resp);
            /* "More", yet nothing we can store: do not spin on it. */
            if (!f.resp->more || ++empty_answers >= PULL_EMPTY_ANSWERS_MAX) {
                break;
            }
            continue;
        }
        empty_answers = 0;
        if ((rc = ingest_begin(r, p, &in, f.resp->runs, f.resp->n_runs, e)) != 0) {
            break;
        }
        inflight = true;
        expected = f.records;
        advance_marks(l, f.resp, a);
    }
    if (inflight) {
        uint64_t appended = 0;
        struct errbuf e2;
        err_clear(&e2);
        int rc2 = ingest_end(&in, &appended, &e2);
        pthread_mutex_lock(&p->mu);
        p->records_in += appended;
        pthread_mutex_unlock(&p->mu);
        if (rc2 != 0 && rc == 0) {
            rc = err_set(e, rc2, "%s", e2.msg);
        }
    }
    return rc;
}

/* ---- recovery ---- */


static void recovery_maybe_done(struct repl *r) {
    if (!atomic_load(&r->recovering)) {
        return;
    }
    int confirmed = 0, dropped = 0;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        pthread_mutex_lock(&r->peers[i].mu);
        dropped += r->peers[i].dropped;
        confirmed += r->peers[i].confirmed && !r->peers[i].dropped;
        pthread_mutex_unlock(&r->peers[i].mu);
    }
    /* Peers whose claims of our log were never backed are out of the quorum. */
    int live = (int)r->n_peers - dropped;
    int need = r->recover_quorum < 0 || r->recover_quorum > live ? live : r->recover_quorum;
    if (confirmed < need) {
        return;
    }
    /* One puller finishes the recovery. Not r->mu: the writer's completion
     * takes that one (repl_durable) before our wait can end. */
    pthread_mutex_lock(&r->recover_mu);
    if (atomic_load(&r->recovering)) {
        struct wreq w;
        memset(&w, 0, sizeof w);
        w.run = r->o.recovered_run;
        if (submit_wait(r, &w) == 0) {
            atomic_store(&r->recovering, false);
            r->o.recovered(r->o.recovered_arg);
            char c[16];
            snprintf(c, sizeof c, "%d", confirmed);
            olog(OLOG_INFO, "recovered", "peers_confirmed", c, NULL);
        } else {
            olog(OLOG_ERROR, "recovery_failed", "reason", err_msg(&w.err, w.rc), NULL);
        }
    }
    pthread_mutex_unlock(&r->recover_mu);
}

/* ---- the puller thread of one peer ---- */

static uint32_t jitter(uint32_t ms) {
    return ms + randombytes_uniform(ms / 4 + 1);
}

static void *puller_main(void *arg) {
    struct peer *p = arg;
    struct repl *r = p->r;
    char name[16];
    snprintf(name, sizeof name, "pull:%.10s", p->cn->juris);
    pthread_setname_np(pthread_self(), name);
    uint32_t backoff = 0;
    bool again = true;
    while (!atomic_load(&r->stopping)) {
        uint32_t wait_ms = backoff ? jitter(backoff) : (again ? 0 : PULL_IDLE_MS);
        uint64_t until = util_mono_ns() + (uint64_t)wait_ms * 1000000u;
        pthread_mutex_lock(&p->mu);
        p->backoff_ms = backoff;
        while (!atomic_load(&r->stopping) && !(p->poke && backoff == 0) && util_mono_ns() < until) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t left = until - util_mono_ns();
            uint64_t step = left < 200000000u ? left : 200000000u;
            ts.tv_sec += (time_t)((uint64_t)ts.tv_nsec + step) / 1000000000;
            ts.tv_nsec = (long)(((uint64_t)ts.tv_nsec + step) % 1000000000u);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        p->poke = false;
        pthread_mutex_unlock(&p->mu);
        if (atomic_load(&r->stopping)) {
            break;
        }
        struct errbuf e;
        err_clear(&e);
        int rc = pull_session(p, &e);
        if (rc == 0) {
            backoff = 0;
            again = false;
            recovery_maybe_done(r);
        } else if (!atomic_load(&r->stopping)) {
            peer_error(p, rc, e.msg);
            backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
                              : BACKOFF_MIN_MS;
            again = false;
        }
    }
    return NULL;
}

static void poke(struct peer *p) {
    pthread_mutex_lock(&p->mu);
    p->poke = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static struct peer *peer_of(struct repl *r, const struct cluster_node *cn) {
    for (uint32_t i = 0; i < r->n_peers; i++) {
        if (r->peers[i].cn == cn) {
            return &r->peers[i];
        }
    }
    return NULL;
}

/* ---- the subscriber thread ---- */

static uint64_t local_head(struct repl *r, const uint8_t *pk, struct origin_state *o) {
    MDB_txn *t;
    if (store_rd_begin(&r->g->store, &t) != 0) {
        return 0;
    }
    int rc = chain_origin_get(&r->g->store, t, pk, o);
    store_rd_end(&r->g->store, t);
    return rc == 0 ? o->head_seq : 0;
}

static void on_heads(struct repl *r, struct peer *p, const Appeal__PeerBody *b) {
    const Appeal__Heads *h = b->heads;
    peer_contact(p, b, (const Appeal__Mark *const *)h->marks, h->n_marks, false);
    for (size_t i = 0; i < h->n_marks; i++) {
        if (h->marks[i]->origin.len != KEY_PK_BYTES ||
            cluster_by_origin(r->c, h->marks[i]->origin.data) == NULL) {
            continue; /* not an origin we would store */
        }
        struct origin_state o;
        memset(&o, 0, sizeof o);
        if (h->marks[i]->seq > local_head(r, h->marks[i]->origin.data, &o) && !o.frozen &&
            !claim_discarded(p, h->marks[i]->origin.data, NULL) &&
            !burst_limited(r, h->marks[i]->origin.data)) {
            poke(p); /* it holds more than we do: pull from it now */
            return;
        }
    }
}

static void on_push(struct repl *r, struct peer *p, Appeal__PeerBody *b) {
    Appeal__Run *run = b->push->run;
    if (run == NULL || run->origin.len != KEY_PK_BYTES || run->n_records == 0 ||
        burst_limited(r, run->origin.data)) {
        return; /* a bursting origin waits for its budget */
    }
    struct origin_state o;
    memset(&o, 0, sizeof o);
    uint64_t head = local_head(r, run->origin.data, &o);
    if (run->first_seq + run->n_records - 1 <= head) {
        return; /* already held */
    }
    if (run->first_seq != head + 1) {
        poke(p); /* does not continue our chain: pull the gap */
        return;
    }
    struct origin_list *l = arena_new(&r->sub_arena, sizeof *l);
    if (l == NULL) {
        return;
    }
    l->n = 0;
    if (head > 0) {
        l->o[l->n++] = o;
    }
    struct errbuf e;
    err_clear(&e);
    bool skip;
    int rc = check_run(r, l, run, &r->sub_arena, &skip, &e);
    if (rc == 0 && !skip) {
        peer_proved(p, run);
    }
    if (rc != 0) {
        count_refused(r, rc, run->n_records);
        pthread_mutex_lock(&p->mu);
        p->refused += run->n_records;
        pthread_mutex_unlock(&p->mu);
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "refused a push from %s: %s", p->cn->juris, e.msg);
        peer_error(p, rc, msg);
        return;
    }
    uint64_t appended = 0;
    if (!skip && ingest(r, p, &run, 1, &appended, &e) == 0) {
        atomic_fetch_add_explicit(&r->g->metrics.pushes, 1, memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
        p->records_in += appended;
        pthread_mutex_unlock(&p->mu);
    }
}

static void *subscriber_main(void *arg) {
    struct repl *r = arg;
    pthread_setname_np(pthread_self(), "subscriber");
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        return NULL;
    }
    while (!atomic_load(&r->stopping)) {
        nng_aio_set_timeout(aio, 500);
        nng_recv_aio(r->sub, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0) {
            continue;
        }
        nng_msg *m = nng_aio_get_msg(aio);
        arena_reset(&r->sub_arena);
        struct errbuf e;
        err_clear(&e);
        Appeal__PeerBody *b;
        const struct cluster_node *from;
        int rc = peer_open(r, nng_msg_body(m), nng_msg_len(m), &r->sub_arena, NULL, &b, &from, &e);
        struct peer *p = rc == 0 ? peer_of(r, from) : NULL;
        if (p == NULL) {
            if (rc != 0) {
                olog(OLOG_WARN, "push_refused", "reason", e.msg, NULL);
            }
        } else if (b->msg_case == APPEAL__PEER_BODY__MSG_HEADS && b->heads != NULL) {
            on_heads(r, p, b);
        } else if (b->msg_case == APPEAL__PEER_BODY__MSG_PUSH && b->push != NULL) {
            on_push(r, p, b);
        }
        nng_msg_free(m);
    }
    nng_aio_free(aio);
    return NULL;
}

/* ---- the publisher thread ---- */

static void publish(struct repl *r, Appeal__PeerBody *body) {
    nng_msg *m;
    if (peer_pack(r, body, &m) != 0) {
        return;
    }
    if (nng_sendmsg(r->pub, m, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(m); /* PUB drops for slow subscribers: they pull instead */
    }
}

/* Publishes our records from..to (durable, in the store) in capped runs. */
static void publish_range(struct repl *r, uint64_t from, uint64_t to) {
    MDB_txn *t;
    if (store_rd_begin(&r->g->store, &t) != 0) {
        return;
    }
    struct origin_state self;
    if (chain_origin_get(&r->g->store, t, r->g->keys.sign_pk, &self) != 0) {
        store_rd_end(&r->g->store, t);
        return;
    }
    while (from <= to && !atomic_load(&r->stopping)) {
        arena_reset(&r->pub_arena);
        ProtobufCBinaryData *recs = arena_new(&r->pub_arena, PUSH_RECORDS_MAX * sizeof *recs);
        if (recs == NULL) {
            break;
        }
        Appeal__Run run = APPEAL__RUN__INIT;
        run.origin.data = self.pk;
        run.origin.len = KEY_PK_BYTES;
        run.first_seq = from;
        run.records = recs;
        size_t bytes = 0;
        while (from <= to && run.n_records < PUSH_RECORDS_MAX && bytes < PUSH_BYTES_MAX) {
            MDB_val env;
            if (chain_get(&r->g->store, t, self.idx, from, &env) != 0) {
                break;
            }
            recs[run.n_records].data = env.mv_data;
            recs[run.n_records].len = env.mv_size;
            run.n_records++;
            bytes += env.mv_size;
            from++;
        }
        if (run.n_records == 0) {
            break;
        }
        Appeal__PushBatch push = APPEAL__PUSH_BATCH__INIT;
        push.run = &run;
        Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
        body.msg_case = APPEAL__PEER_BODY__MSG_PUSH;
        body.push = &push;
        publish(r, &body);
    }
    store_rd_end(&r->g->store, t);
}

static void publish_heads(struct repl *r) {
    MDB_txn *t;
    if (store_rd_begin(&r->g->store, &t) != 0) {
        return;
    }
    arena_reset(&r->pub_arena);
    struct origin_list *l = arena_new(&r->pub_arena, sizeof *l);
    Appeal__Heads h = APPEAL__HEADS__INIT;
    if (l != NULL && list_origins(r, t, l) == 0) {
        h.marks = arena_new(&r->pub_arena, (l->n + 1) * sizeof *h.marks);
        for (uint32_t i = 0; h.marks != NULL && i < l->n; i++) {
            Appeal__Mark *m = mark_of(&r->pub_arena, r, &l->o[i], t, true);
            if (m != NULL) {
                h.marks[h.n_marks++] = m;
            }
        }
        Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
        body.msg_case = APPEAL__PEER_BODY__MSG_HEADS;
        body.heads = &h;
        publish(r, &body);
    }
    store_rd_end(&r->g->store, t);
}

static void *publisher_main(void *arg) {
    struct repl *r = arg;
    pthread_setname_np(pthread_self(), "publisher");
    /* With no peer to wait for (none listed, or --recover-quorum 0), a
     * recovering node is done at once. */
    recovery_maybe_done(r);
    uint64_t next_heads = util_mono_ns();
    while (!atomic_load(&r->stopping)) {
        pthread_mutex_lock(&r->mu);
        while (!atomic_load(&r->stopping) && r->durable_target <= r->published &&
               util_mono_ns() < next_heads) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        uint64_t target = r->durable_target;
        pthread_mutex_unlock(&r->mu);
        if (target > r->published) {
            publish_range(r, r->published + 1, target);
            r->published = target;
        }
        if (util_mono_ns() >= next_heads) {
            publish_heads(r);
            next_heads = util_mono_ns() + (uint64_t)HEADS_INTERVAL_MS * 1000000u;
        }
    }
    return NULL;
}

void repl_durable(struct repl *r, uint64_t head) {
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (head > r->durable_target) {
        r->durable_target = head;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
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
        /* Pull requests are small: marks of at most CLUSTER_NODES_MAX origins. */
        rv = open_socket_opts(r->rep, 256 * 1024);
    }
    if (rv == 0) {
        rv = conn_limit_start(&r->conns, r->rep, "peer", r->o.connections_max, r->o.idle_ms,
                              NULL);
    }
    for (int i = 0; rv == 0 && i < REPL_CONTEXTS; i++) {
        struct srv_work *w = &r->works[i];
        w->r = r;
        rv = arena_init(&w->arena, 4u << 20) == 0 ? 0 : NNG_ENOMEM;
        if (rv == 0) {
            rv = nng_aio_alloc(&w->aio, srv_cb, w);
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
        srv_cb(&r->works[i]);
    }
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
    r->peers = calloc(r->c->count, sizeof *r->peers);
    if (r->peers == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < r->c->count; i++) {
        const struct cluster_node *cn = &r->c->nodes[i];
        if ((int)i == r->c->self || cn->peer_url[0] == '\0') {
            continue;
        }
        /* The peer's certificate must name its jurisdiction. */
        int rc = tls_dial(r->sub, cn->pub_url, r->o.tls, cn->juris, NNG_FLAG_NONBLOCK,
                          "subscribe to", NULL, e);
        if (rc != 0) {
            return rc;
        }
        struct peer *p = &r->peers[r->n_peers];
        p->r = r;
        p->cn = cn;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        rv = nng_req0_open(&p->req);
        if (rv == 0) {
            rv = open_socket_opts(p->req, REPL_RECV_BYTES_MAX);
        }
        if (rv == 0) {
            rv = nng_socket_set_ms(p->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
        }
        if (rv == 0) {
            rv = nng_aio_alloc(&p->aio, NULL, NULL);
        }
        if (rv == 0) {
            p->tls = tls_url(cn->peer_url);
            rc = tls_dial(p->req, cn->peer_url, r->o.tls, cn->juris, NNG_FLAG_NONBLOCK,
                          "pull from", &p->dialer, e);
            if (rc != 0) {
                r->n_peers++;
                return rc;
            }
        }
        if (rv == 0 && (arena_init(&p->arenas[0], REPL_ARENA_BYTES) != 0 ||
                        arena_init(&p->arenas[1], REPL_ARENA_BYTES) != 0 ||
                        (p->ours = malloc(sizeof *p->ours)) == NULL)) {
            rv = NNG_ENOMEM;
        }
        r->n_peers++;
        if (rv != 0) {
            return err_set(e, APL_ENET, "cannot set up peer %s (%s): %s", cn->juris, cn->peer_url,
                           nng_strerror(rv));
        }
    }
    return 0;
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
    r->burst_floor = o->burst_floor;
    atomic_store(&r->recovering, o->recovering);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->recover_mu, NULL);
    r->published = r->durable_target = atomic_load(&g->durable_head);
    int rc = arena_init(&r->ingest_arena, RECORD_ARENA_BYTES);
    if (rc == 0) {
        rc = arena_init(&r->sub_arena, 8u << 20);
    }
    if (rc == 0) {
        rc = arena_init(&r->pub_arena, 1u << 20);
    }
    const struct cluster_node *self = &c->nodes[c->self];
    if (rc == 0 && self->peer_url[0] != '\0') {
        rc = start_server(r, self, e);
    }
    if (rc == 0) {
        rc = start_peers(r, e);
    }
    if (rc == 0) {
        rc = pthread_create(&r->pub_thread, NULL, publisher_main, r) == 0 ? 0 : APL_ENOMEM;
        r->pub_started = rc == 0;
    }
    if (rc == 0) {
        rc = pthread_create(&r->sub_thread, NULL, subscriber_main, r) == 0 ? 0 : APL_ENOMEM;
        r->sub_started = rc == 0;
    }
    for (uint32_t i = 0; rc == 0 && i < r->n_peers; i++) {
        rc = pthread_create(&r->peers[i].thread, NULL, puller_main, &r->peers[i]) == 0 ? 0
                                                                                       : APL_ENOMEM;
        r->peers[i].started = rc == 0;
    }
    if (rc != 0) {
        repl_stop_intake(r);
        repl_stop(r);
        return e->msg[0] ? rc : err_set(e, rc, "cannot start replication: %s", apl_strerror(rc));
    }
    char peers[16];
    snprintf(peers, sizeof peers, "%u", r->n_peers);
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
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->recover_mu);
    free(r);
}

/* ---- status ---- */

static Appeal__PeerStatus *peer_status(struct repl *r, struct peer *p, const struct origin_list *l,
                                       struct arena *a) {
    Appeal__PeerStatus *s = arena_new(a, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    appeal__peer_status__init(s);
    pthread_mutex_lock(&p->mu);
    s->jurisdiction = (char *)p->cn->juris;
    s->url = (char *)p->cn->peer_url;
    s->last_contact_ms = p->last_contact_ms;
    s->last_ok_ms = p->last_ok_ms;
    /* Reachable: the last pull worked, and not long ago. */
    s->reachable = p->last_ok_ms > 0 && p->last_error[0] == '\0' &&
                   clock_system_ms() - p->last_ok_ms < PEER_SILENT_MS;
    s->last_error = arena_strdup(a, p->last_error);
    s->errors = p->errors;
    s->refused_records = p->refused;
    s->records_in = p->records_in;
    s->backoff_ms = p->backoff_ms;
    s->clock_skew_ms = p->skew_ms;
    s->marks = arena_new(a, (p->n_marks + 1) * sizeof *s->marks);
    for (uint32_t i = 0; s->marks != NULL && i < p->n_marks; i++) {
        Appeal__PeerMark *m = arena_new(a, sizeof *m);
        const struct cluster_node *cn = cluster_by_origin(r->c, p->marks[i].origin);
        if (m == NULL) {
            break;
        }
        appeal__peer_mark__init(m);
        m->jurisdiction = (char *)(cn ? cn->juris : "?");
        const struct origin_state *o = held(l, p->marks[i].origin);
        m->local_seq = o ? o->head_seq : 0;
        m->peer_seq = believed(p, p->marks[i].origin, p->marks[i].seq, m->local_seq);
        s->marks[s->n_marks++] = m;
    }
    pthread_mutex_unlock(&p->mu);
    if (s->last_error == NULL || s->marks == NULL) {
        return NULL;
    }
    return s;
}

/* The highest head of `pk` that a peer holds, as far as believed: a claim
 * counts only up to what that peer proved with records (or we hold). */
static uint64_t best_known(struct repl *r, const uint8_t *pk, uint64_t have) {
    uint64_t best = 0;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        pthread_mutex_lock(&p->mu);
        for (uint32_t k = 0; k < p->n_marks; k++) {
            uint64_t b = memcmp(p->marks[k].origin, pk, KEY_PK_BYTES) == 0
                             ? believed(p, pk, p->marks[k].seq, have)
                             : 0;
            best = b > best ? b : best;
        }
        pthread_mutex_unlock(&p->mu);
    }
    return best;
}

static int fork_list(struct repl *r, MDB_txn *t, struct arena *a, Appeal__ClusterStatus *s) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, r->g->store.dbi[DB_FORKS], &c));
    if (rc != 0) {
        return rc;
    }
    s->forks = arena_new(a, CLUSTER_NODES_MAX * sizeof *s->forks);
    MDB_val k, v;
    for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST);
         m == 0 && s->forks != NULL && s->n_forks < CLUSTER_NODES_MAX;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        Appeal__Fork *f =
            (Appeal__Fork *)pb_unpack(&appeal__fork__descriptor, v.mv_data, v.mv_size, a, 4, NULL);
        Appeal__ForkInfo *fi = arena_new(a, sizeof *fi);
        if (f == NULL || fi == NULL || f->origin.len != KEY_PK_BYTES) {
            continue;
        }
        appeal__fork_info__init(fi);
        const struct cluster_node *cn = cluster_by_origin(r->c, f->origin.data);
        fi->jurisdiction = (char *)(cn ? cn->juris : "?");
        fi->seq = f->seq;
        fi->via = f->via;
        fi->seen_ms = f->seen_ms;
        s->forks[s->n_forks++] = fi;
    }
    mdb_cursor_close(c);
    return 0;
}

void repl_status_visit(struct repl *r, void (*fn)(void *arg, const Appeal__ClusterStatus *s),
                       void *arg) {
    struct arena a;
    MDB_txn *t;
    if (r == NULL || arena_init(&a, 1u << 20) != 0) {
        return;
    }
    if (store_rd_begin(&r->g->store, &t) == 0) {
        Appeal__ClusterStatus *s;
        if (repl_status(r, t, &a, &s) == 0) {
            fn(arg, s);
        }
        store_rd_end(&r->g->store, t);
    }
    arena_fini(&a);
}

int repl_status(struct repl *r, MDB_txn *t, struct arena *a, Appeal__ClusterStatus **out) {
    Appeal__ClusterStatus *s = arena_new(a, sizeof *s);
    struct origin_list *l = arena_new(a, sizeof *l);
    if (s == NULL || l == NULL) {
        return APL_ENOMEM;
    }
    appeal__cluster_status__init(s);
    s->jurisdiction = r->g->juris;
    s->recovering = atomic_load(&r->recovering);
    s->now_ms = now_ms(r);
    int rc = list_origins(r, t, l);
    if (rc != 0) {
        return rc;
    }
    s->peers = arena_new(a, (r->n_peers + 1) * sizeof *s->peers);
    s->origins = arena_new(a, (r->c->count + l->n + 1) * sizeof *s->origins);
    if (s->peers == NULL || s->origins == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < r->n_peers; i++) {
        Appeal__PeerStatus *ps = peer_status(r, &r->peers[i], l, a);
        if (ps == NULL) {
            return APL_ENOMEM;
        }
        s->peers[s->n_peers++] = ps;
    }
    for (uint32_t i = 0; i < r->c->count; i++) {
        const struct cluster_node *cn = &r->c->nodes[i];
        const struct origin_state *o = held(l, cn->sign_pk);
        Appeal__OriginStatus *os = arena_new(a, sizeof *os);
        if (os == NULL) {
            return APL_ENOMEM;
        }
        appeal__origin_status__init(os);
        os->jurisdiction = (char *)cn->juris;
        os->origin.data = (uint8_t *)cn->sign_pk;
        os->origin.len = KEY_PK_BYTES;
        os->local_seq = o ? o->head_seq : 0;
        os->local_head_time_ms = o ? o->head_time_ms : 0;
        os->best_known_seq = best_known(r, cn->sign_pk, os->local_seq);
        if ((int)i == r->c->self || os->best_known_seq < os->local_seq) {
            os->best_known_seq = os->local_seq; /* what we hold is known too */
        }
        os->lag_records =
            os->best_known_seq > os->local_seq ? os->best_known_seq - os->local_seq : 0;
        /* A head from the future (another node's clock ahead of ours) is
         * as fresh as can be: zero, not negative. */
        os->staleness_ms = o && o->head_time_ms
                               ? (s->now_ms > o->head_time_ms ? s->now_ms - o->head_time_ms : 0)
                               : -1;
        os->frozen = o ? o->frozen : false;
        if (o != NULL && o->head_seq > 0) {
            os->head_hash.data = arena_new(a, HASH_BYTES);
            if (os->head_hash.data == NULL) {
                return APL_ENOMEM;
            }
            memcpy(os->head_hash.data, o->head_hash, HASH_BYTES);
            os->head_hash.len = HASH_BYTES;
        }
        os->frozen_reason = o ? arena_strdup(a, o->frozen_reason) : "";
        s->origins[s->n_origins++] = os;
    }
    rc = fork_list(r, t, a, s);
    *out = s;
    return rc;
}
