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
#include "clock.h"
#include "engine.h"
#include "olog.h"
#include "record.h"
#include "state.h"
#include "tls.h"
#include "util.h"

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

/* Our mark for origin o: what we serve (`serving`) or what we hold. */
Appeal__Mark *repl_mark_of(struct arena *a, struct repl *r, const struct origin_state *o,
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

const Appeal__Mark *repl_find_mark(Appeal__Mark **marks, size_t n, const uint8_t *pk) {
    for (size_t i = 0; i < n; i++) {
        if (marks[i]->origin.len == KEY_PK_BYTES &&
            memcmp(marks[i]->origin.data, pk, KEY_PK_BYTES) == 0) {
            return marks[i];
        }
    }
    return NULL;
}

/* Notes that we show `seq` as our head of `origin` (an answer's or a
 * Heads' mark) and returns the version of our marks at which it last
 * changed: a compact request gets only marks changed since its `since`. */
uint64_t repl_shown(struct repl *r, const uint8_t *origin, uint64_t seq) {
    pthread_mutex_lock(&r->shown_mu);
    uint32_t k = 0;
    while (k < r->n_shown && memcmp(r->shown[k].origin, origin, KEY_PK_BYTES) != 0) {
        k++;
    }
    uint64_t v = r->version + 1; /* no slot left: always shown */
    if (k == r->n_shown && k < CLUSTER_NODES_MAX) {
        memcpy(r->shown[k].origin, origin, KEY_PK_BYTES);
        r->shown[k].seq = seq;
        r->shown[k].version = ++r->version;
        r->n_shown++;
    } else if (k < r->n_shown && r->shown[k].seq != seq) {
        r->shown[k].seq = seq;
        r->shown[k].version = ++r->version;
    }
    if (k < r->n_shown) {
        v = r->shown[k].version;
    }
    ASSERT(r->n_shown <= CLUSTER_NODES_MAX);
    pthread_mutex_unlock(&r->shown_mu);
    return v;
}

uint64_t repl_version(struct repl *r) {
    pthread_mutex_lock(&r->shown_mu);
    uint64_t v = r->version;
    pthread_mutex_unlock(&r->shown_mu);
    return v;
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
    ASSERT(run->n_records <= cap && cap <= *budget_n); /* the run's array holds cap */
    *budget_n -= run->n_records;
    resp->more |= from + run->n_records < head;
    if (run->n_records > 0) {
        resp->runs[resp->n_runs++] = run;
    }
    return 0;
}

int repl_answer_pull(struct repl *r, const Appeal__PullRequest *q, struct arena *a, MDB_txn *t,
                     Appeal__PullResponse *resp) {
    struct origin_list *l = arena_new(a, sizeof *l);
    if (l == NULL) {
        return APL_ENOMEM;
    }
    int rc = repl_list_origins(r, t, l);
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
    /* A compact request: marks changed since its `since` only (the
     * version read first: a change while we answer is shown again). */
    resp->epoch = r->epoch;
    resp->version = repl_version(r);
    bool since = q->epoch == r->epoch && q->since > 0;
    uint32_t first = l->n ? randombytes_uniform(l->n) : 0;
    for (uint32_t k = 0; k < l->n && rc == 0; k++) {
        const struct origin_state *o = &l->o[(first + k) % l->n];
        const Appeal__Mark *theirs = repl_find_mark(q->marks, q->n_marks, o->pk);
        bool wanted = q->n_wanted == 0 && (!q->partial || theirs != NULL);
        for (size_t w = 0; w < q->n_wanted && !wanted; w++) {
            wanted = q->wanted[w].len == KEY_PK_BYTES &&
                     memcmp(q->wanted[w].data, o->pk, KEY_PK_BYTES) == 0 &&
                     (!q->partial || theirs != NULL);
        }
        rc = serve_origin(r, t, a, o, theirs, wanted, resp, &budget_n, &budget_bytes);
        Appeal__Mark *m = rc == 0 ? repl_mark_of(a, r, o, t, true) : NULL;
        if (rc == 0 && m == NULL) {
            rc = APL_ENOMEM;
        }
        uint64_t changed = rc == 0 ? repl_shown(r, o->pk, m->seq) : 0;
        if (rc == 0 && (!since || changed > q->since)) {
            resp->marks[resp->n_marks++] = m;
        }
    }
    /* Each origin adds at most one run or one conflict, and one mark: the
     * arrays above hold l->n; the budgets only shrink. */
    ASSERT(resp->n_runs + resp->n_conflicts <= l->n && resp->n_marks <= l->n);
    ASSERT(budget_n <= PULL_RECORDS_MAX && budget_bytes <= PULL_BYTES_MAX);
    return rc;
}

/* Sends `body` as the answer of w's request (packed: compressed, when the
 * requester reads it), or goes back to receiving if it cannot be packed. */
void repl_srv_reply(struct srv_work *w, Appeal__PeerBody *body, bool packed) {
    nng_msg *m;
    int rc = packed
                 ? peermsg_pack_z(&w->r->g->keys, w->r->o.peer_skew_ms, body, &m, &w->r->g->metrics)
                 : repl_peer_pack(w->r, body, &m);
    if (rc != 0) {
        w->state = 1;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    nng_aio_set_msg(w->aio, m);
    w->state = 2;
    nng_ctx_send(w->ctx, w->aio);
}

static void srv_reply(struct srv_work *w, Appeal__PullResponse *resp, bool packed) {
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULLED;
    body.pulled = resp;
    /* An answer with nothing in it goes plain: nothing to gain. */
    repl_srv_reply(w, &body, packed && resp->error[0] == '\0' && resp->n_runs > 0);
}

static void srv_handle(struct srv_work *w, nng_msg *msg) {
    struct repl *r = w->r;
    struct errbuf e;
    err_clear(&e);
    arena_reset(&w->arena);
    Appeal__PeerBody *body = NULL;
    const struct cluster_node *from;
    Appeal__PullResponse resp = APPEAL__PULL_RESPONSE__INIT;
    bool packed = false;
    int rc = peermsg_open_max(r->c, &r->g->store, nng_msg_body(msg), nng_msg_len(msg),
                              DELIVER_MSG_BYTES_MAX, &w->arena, NULL, &body, &from, &packed, &e);
    if (rc == 0) {
        struct seen *sn = &r->seen[from - r->c->nodes];
        int64_t now = clock_system_ms();
        atomic_store(&sn->skew_ms, body->time_ms - now);
        atomic_store(&sn->last_ms, now);
    }
    if (rc == 0 && body->msg_case == APPEAL__PEER_BODY__MSG_DELIVER) {
        nng_msg_free(msg);
        w->body = body;
        w->from = from;
        w->packed = packed;
        repl_deliver_queue(w); /* the delivery thread answers */
        return;
    }
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
        srv_reply(w, &resp, false);
        return;
    }
    bool zstd = (body->pull->codecs & PEER_CODEC_ZSTD) != 0;
    MDB_txn *t;
    rc = store_rd_begin(&r->g->store, &t);
    if (rc == 0) {
        rc = repl_answer_pull(r, body->pull, &w->arena, t, &resp);
        if (rc != 0) {
            appeal__pull_response__init(&resp);
            resp.error = "the node could not read its store";
        }
        srv_reply(w, &resp, zstd); /* packs while the records are mapped */
        store_rd_end(&r->g->store, t);
    } else {
        resp.error = "the node could not read its store";
        srv_reply(w, &resp, false);
    }
    nng_msg_free(msg);
}

void repl_srv_cb(void *arg) {
    struct srv_work *w = arg;
    nng_msg *in;
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
        in = nng_aio_get_msg(w->aio);
        nng_aio_set_msg(w->aio, NULL); /* srv_handle frees it */
        conn_limit_busy(w->r->conns, nng_msg_get_pipe(in), 0);
        srv_handle(w, in);
        break;
    default:
        ASSERT(w->state == 2); /* a send completed */
        rv = nng_aio_result(w->aio);
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio)); /* a failed send leaves it ours */
            nng_aio_set_msg(w->aio, NULL);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return;
            }
        }
        w->state = 1;
        nng_ctx_recv(w->ctx, w->aio);
        break;
    }
}
