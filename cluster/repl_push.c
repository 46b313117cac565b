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

/* Whether what we hold of p's marks (its answers', its heads') is what
 * its digest covers; if not, a pull brings the marks that changed. */
static bool heads_match(struct repl *r, struct peer *p, const Appeal__Heads *h) {
    struct pmark *copy = arena_new(&r->sub_arena, CLUSTER_NODES_MAX * sizeof *copy);
    if (h->digest.len != HASH_BYTES || copy == NULL) {
        return true; /* an older node: no digest */
    }
    pthread_mutex_lock(&p->mu);
    uint32_t n = p->n_marks;
    memcpy(copy, p->marks, n * sizeof *copy);
    pthread_mutex_unlock(&p->mu);
    uint8_t d[HASH_BYTES];
    repl_marks_digest(copy, n, d);
    return memcmp(d, h->digest.data, HASH_BYTES) == 0;
}

static void on_heads(struct repl *r, struct peer *p, const Appeal__PeerBody *b) {
    const Appeal__Heads *h = b->heads;
    repl_peer_contact(p, b, (const Appeal__Mark *const *)h->marks, h->n_marks, false);
    if (!heads_match(r, p, h)) {
        poke(p);
        return;
    }
    for (size_t i = 0; i < h->n_marks; i++) {
        if (h->marks[i]->origin.len != KEY_PK_BYTES ||
            cluster_by_origin(r->c, h->marks[i]->origin.data) == NULL) {
            continue; /* not an origin we would store */
        }
        struct origin_state o;
        memset(&o, 0, sizeof o);
        if (h->marks[i]->seq > local_head(r, h->marks[i]->origin.data, &o) && !o.frozen &&
            !repl_claim_discarded(p, h->marks[i]->origin.data, NULL) &&
            !repl_burst_limited(r, h->marks[i]->origin.data)) {
            poke(p); /* it holds more than we do: pull from it now */
            return;
        }
    }
}

static void on_push(struct repl *r, struct peer *p, Appeal__PeerBody *b) {
    Appeal__Run *run = b->push->run;
    if (run == NULL || run->origin.len != KEY_PK_BYTES || run->n_records == 0 ||
        repl_burst_limited(r, run->origin.data)) {
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
    int rc = repl_check_origin_run(r, l, run, &r->sub_arena, &skip, &e);
    if (rc == 0 && !skip) {
        repl_peer_proved(p, run);
    }
    if (rc != 0) {
        repl_count_refused(r, rc, run->n_records);
        pthread_mutex_lock(&p->mu);
        p->refused += run->n_records;
        pthread_mutex_unlock(&p->mu);
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "refused a push from %s: %s", p->cn->juris, e.msg);
        repl_peer_error(p, rc, msg);
        return;
    }
    uint64_t appended = 0;
    if (!skip && repl_ingest_wait(r, p, &run, 1, &appended, &e) == 0) {
        atomic_fetch_add_explicit(&r->g->metrics.pushes, 1, memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
        p->records_in += appended;
        pthread_mutex_unlock(&p->mu);
    }
}

void *repl_subscriber_main(void *arg) {
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
        int rc =
            repl_peer_open(r, nng_msg_body(m), nng_msg_len(m), &r->sub_arena, NULL, &b, &from, &e);
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
    if (repl_peer_pack(r, body, &m) != 0) {
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
        /* The run's array holds PUSH_RECORDS_MAX; one record may pass the
         * byte cap (_Static_assert in repl.c: it still fits a push). */
        ASSERT(run.n_records <= PUSH_RECORDS_MAX && bytes < PUSH_BYTES_MAX + RECORD_BYTES_MAX);
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

/* Heads: the marks changed since the last Heads (*since: the version of
 * our marks then), or all of them (`full`), and the digest of all. */
static void publish_heads(struct repl *r, bool full, uint64_t *since) {
    MDB_txn *t;
    if (store_rd_begin(&r->g->store, &t) != 0) {
        return;
    }
    arena_reset(&r->pub_arena);
    struct origin_list *l = arena_new(&r->pub_arena, sizeof *l);
    struct pmark *all = arena_new(&r->pub_arena, CLUSTER_NODES_MAX * sizeof *all);
    uint8_t *digest = arena_new(&r->pub_arena, HASH_BYTES);
    Appeal__Heads h = APPEAL__HEADS__INIT;
    uint64_t v0 = repl_version(r);
    if (l != NULL && all != NULL && digest != NULL && repl_list_origins(r, t, l) == 0) {
        h.marks = arena_new(&r->pub_arena, (l->n + 1) * sizeof *h.marks);
        uint32_t n_all = 0;
        for (uint32_t i = 0; h.marks != NULL && i < l->n; i++) {
            Appeal__Mark *m = repl_mark_of(&r->pub_arena, r, &l->o[i], t, true);
            if (m == NULL) {
                continue;
            }
            memcpy(all[n_all].origin, l->o[i].pk, KEY_PK_BYTES);
            all[n_all++].seq = m->seq;
            if (repl_shown(r, l->o[i].pk, m->seq) > *since || full) {
                h.marks[h.n_marks++] = m;
            }
        }
        repl_marks_digest(all, n_all, digest);
        h.digest.data = digest;
        h.digest.len = HASH_BYTES;
        h.delta = !full;
        *since = v0;
        Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
        body.msg_case = APPEAL__PEER_BODY__MSG_HEADS;
        body.heads = &h;
        publish(r, &body);
    }
    store_rd_end(&r->g->store, t);
}

void *repl_publisher_main(void *arg) {
    struct repl *r = arg;
    pthread_setname_np(pthread_self(), "publisher");
    /* With no peer to wait for (none listed, or --recover-quorum 0), a
     * recovering node is done at once. */
    repl_recovery_maybe_done(r);
    uint64_t next_heads = util_mono_ns(), next_full = next_heads, heads_since = 0;
    while (!atomic_load(&r->stopping)) {
        pthread_mutex_lock(&r->mu);
        while (!atomic_load(&r->stopping) && r->durable_target <= r->published &&
               util_mono_ns() < next_heads) {
            /* Woken by repl_durable, or when the next Heads is due. */
            uint64_t left = next_heads - util_mono_ns();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(((uint64_t)ts.tv_nsec + left) / 1000000000u);
            ts.tv_nsec = (long)(((uint64_t)ts.tv_nsec + left) % 1000000000u);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        uint64_t target = r->durable_target;
        pthread_mutex_unlock(&r->mu);
        if (target > r->published) {
            publish_range(r, r->published + 1, target);
            r->published = target;
        }
        if (util_mono_ns() >= next_heads) {
            bool full = util_mono_ns() >= next_full;
            publish_heads(r, full, &heads_since);
            if (full) {
                next_full = util_mono_ns() + (uint64_t)HEADS_FULL_INTERVAL_MS * 1000000u;
            }
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
    /* A node that chose its links (a dial list) may have no one pulling
     * from it: its pullers deliver the new records now. */
    if (r->c->nodes[r->c->self].n_dial > 0) {
        for (uint32_t i = 0; i < r->n_peers; i++) {
            poke(&r->peers[i]);
        }
    }
}
