/*
 * repl_deliver.c: deliveries, the second direction of a link
 * (docs/protocol.md 5.5).
 *
 * A link is one connection, opened by the dialing side (an office behind
 * NAT, with no peer address) and used both ways: over its REQ socket the
 * dialing side pulls, and then delivers what the dialed side lacks, in
 * batches of runs above the marks it last showed (its pull answer's, then
 * each Delivered's). The dialed side checks every delivered run exactly as
 * a pull answer (trust store, chain walker, and in the write the checks of
 * engine_ingest_run) and answers once they are durable, with its marks.
 * It stores deliveries on one thread of its own: the write waits for the
 * writer, and a serving context's callback runs on nng's threads.
 */
#include "repl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "olog.h"
#include "peermsg.h"

uint32_t repl_batch_bytes(const struct repl *r, uint32_t cap) {
    uint32_t b = r->o.batch_bytes;
    return b != 0 && b < cap ? b : cap;
}

/* ---- the dialing side ---- */

/* A pull request standing for p's last shown marks: what it lacks is what
 * repl_answer_pull would serve it (no head hashes: no conflicts). */
static int marks_request(struct peer *p, struct arena *a, Appeal__PullRequest *q) {
    appeal__pull_request__init(q);
    pthread_mutex_lock(&p->mu);
    uint32_t n = p->n_marks;
    q->marks = arena_new(a, (n + 1) * sizeof *q->marks);
    Appeal__Mark *ms = arena_new(a, (n + 1) * sizeof *ms);
    uint8_t *keys = arena_new(a, (size_t)(n + 1) * KEY_PK_BYTES);
    for (uint32_t i = 0; q->marks != NULL && ms != NULL && keys != NULL && i < n; i++) {
        appeal__mark__init(&ms[i]);
        memcpy(keys + (size_t)i * KEY_PK_BYTES, p->marks[i].origin, KEY_PK_BYTES);
        ms[i].origin.data = keys + (size_t)i * KEY_PK_BYTES;
        ms[i].origin.len = KEY_PK_BYTES;
        ms[i].seq = p->marks[i].seq;
        q->marks[q->n_marks++] = &ms[i];
    }
    pthread_mutex_unlock(&p->mu);
    if (q->marks == NULL || ms == NULL || keys == NULL) {
        return APL_ENOMEM;
    }
    q->records_max = PULL_RECORDS_MAX;
    q->bytes_max = repl_batch_bytes(p->r, DELIVER_BYTES_MAX);
    return 0;
}

/* The next delivery for p, packed while its records are mapped; *n_runs 0:
 * p lacks nothing we hold. */
static int next_delivery(struct peer *p, struct arena *a, nng_msg **out, size_t *n_runs) {
    struct repl *r = p->r;
    Appeal__PullRequest q;
    int rc = marks_request(p, a, &q);
    MDB_txn *t;
    if (rc != 0 || (rc = store_rd_begin(&r->g->store, &t)) != 0) {
        return rc;
    }
    Appeal__PullResponse resp = APPEAL__PULL_RESPONSE__INIT;
    rc = repl_answer_pull(r, &q, a, t, &resp);
    *n_runs = rc == 0 ? resp.n_runs : 0;
    if (*n_runs > 0) {
        Appeal__Delivery d = APPEAL__DELIVERY__INIT;
        d.runs = resp.runs;
        d.n_runs = resp.n_runs;
        Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
        body.msg_case = APPEAL__PEER_BODY__MSG_DELIVER;
        body.deliver = &d;
        rc = p->zstd && !p->fast_link
                 ? peermsg_pack_z(&r->g->keys, r->o.peer_skew_ms, &body, out, &r->g->metrics)
                 : repl_peer_pack(r, &body, out);
    }
    store_rd_end(&r->g->store, t);
    return rc;
}

/* One delivery and its answer; *stored: records the peer stored. */
static int deliver_once(struct peer *p, struct arena *a, bool *done, uint64_t *stored,
                        struct errbuf *e) {
    struct repl *r = p->r;
    nng_msg *out = NULL, *in = NULL;
    size_t n_runs = 0;
    int rc = next_delivery(p, a, &out, &n_runs);
    *done = rc == 0 && n_runs == 0;
    if (rc != 0) {
        return err_set(e, rc, "cannot prepare a delivery to %s: %s", p->cn->juris,
                       apl_strerror(rc));
    }
    if (*done || (rc = repl_send_recv(p, out, &in, e)) != 0) {
        return rc;
    }
    Appeal__PeerBody *b;
    rc = repl_peer_open(r, nng_msg_body(in), nng_msg_len(in), a, p->cn, &b, NULL, e);
    nng_msg_free(in);
    if (rc != 0) {
        return rc;
    }
    if (b->msg_case == APPEAL__PEER_BODY__MSG_PULLED) {
        /* An older node: it answers what it does not know as a refused pull. */
        p->no_deliver = true;
        olog(OLOG_WARN, "delivery_unsupported", "peer", p->cn->juris, "reason",
             "the peer does not take deliveries (an older version): it gets our records only "
             "by pulling them",
             NULL);
        *done = true;
        return 0;
    }
    if (b->msg_case != APPEAL__PEER_BODY__MSG_DELIVERED) {
        return err_set(e, APL_EINVAL, "%s answered a delivery with something else", p->cn->juris);
    }
    const Appeal__Delivered *d = b->delivered;
    if (d->error[0] != '\0') {
        return err_set(e, APL_EINVAL, "%s refused our delivery: %s", p->cn->juris, d->error);
    }
    repl_peer_contact(p, b, (const Appeal__Mark *const *)d->marks, d->n_marks, true);
    *stored = d->stored;
    return 0;
}

/* Delivers to p, in batches, what it lacks of what we hold, until it lacks
 * nothing, or a delivery stores nothing (records it does not take: an
 * origin its cluster file does not list yet, a budget). Each batch is kept
 * once acknowledged: a dropped link resumes with the next. */
int repl_deliver_session(struct peer *p, struct errbuf *e) {
    struct repl *r = p->r;
    int rc = 0;
    if (cluster_dials(p->cn, &r->c->nodes[r->c->self])) {
        return 0; /* it dials us and pulls what it lacks: a delivery would repeat that */
    }
    for (unsigned k = 0;
         rc == 0 && !p->no_deliver && k < DELIVER_ROUNDS_MAX && !atomic_load(&r->stopping); k++) {
        struct arena *a = &p->arenas[k & 1];
        arena_reset(a);
        bool done = false;
        uint64_t stored = 0;
        rc = deliver_once(p, a, &done, &stored, e);
        if (rc == 0 && !done) {
            atomic_fetch_add_explicit(&r->g->metrics.deliveries, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->g->metrics.records_delivered, stored,
                                      memory_order_relaxed);
        }
        if (done || stored == 0) {
            break;
        }
    }
    return rc;
}

/* ---- the dialed side ---- */

void repl_deliver_queue(struct srv_work *w) {
    struct repl *r = w->r;
    pthread_mutex_lock(&r->mu);
    ASSERT(r->deliver_n < REPL_CONTEXTS); /* one slot per serving context */
    w->state = 3;
    r->deliver_q[r->deliver_n++] = w;
    pthread_cond_signal(&r->deliver_cv);
    pthread_mutex_unlock(&r->mu);
}

/* A delivery is built from the marks we showed the sender; records that
 * reached us since (a pull, another delivery) are left out, and a run
 * that no longer starts at our head + 1 is not stored this time (the
 * next Delivered shows our marks): neither refuses the delivery. */
static void trim_held(const struct origin_list *l, Appeal__Run *run) {
    if (run->origin.len != KEY_PK_BYTES || run->n_records == 0 || run->first_seq == 0) {
        return; /* repl_check_origin_run says what is wrong */
    }
    const struct origin_state *o = repl_held(l, run->origin.data);
    uint64_t head = o != NULL ? o->head_seq : 0;
    if (run->first_seq > head + 1) {
        run->n_records = 0;
    } else if (run->first_seq <= head) {
        uint64_t k = head - run->first_seq + 1;
        k = k < run->n_records ? k : run->n_records;
        run->records += k;
        run->n_records -= (size_t)k;
        run->first_seq += k;
    }
}

/* Checks the delivered runs against what we hold: any bad run refuses the
 * delivery whole; runs of an origin we do not list or hold frozen are left
 * out (as in a pull answer). */
static int check_delivery(struct repl *r, const struct cluster_node *from, Appeal__Delivery *d,
                          struct arena *a, size_t *records, struct errbuf *e) {
    struct origin_list *l = arena_new(a, sizeof *l);
    MDB_txn *t;
    int rc = l == NULL ? APL_ENOMEM : store_rd_begin(&r->g->store, &t);
    if (rc != 0) {
        return err_set(e, rc, "the node could not read its store");
    }
    rc = repl_list_origins(r, t, l);
    store_rd_end(&r->g->store, t);
    *records = 0;
    for (size_t i = 0; rc == 0 && i < d->n_runs; i++) {
        bool skip;
        trim_held(l, d->runs[i]);
        rc = repl_check_origin_run(r, l, d->runs[i], a, &skip, e);
        if (skip) {
            if (rc == APL_EORIGIN) {
                repl_count_refused(r, rc, d->runs[i]->n_records);
            }
            d->runs[i]->n_records = 0;
            rc = 0;
        }
        *records += d->runs[i]->n_records;
    }
    if (rc != 0) {
        repl_count_refused(r, rc, *records);
        olog(OLOG_WARN, "delivery_refused", "peer", from->juris, "reason", e->msg, NULL);
    }
    return rc;
}

/* Our marks of the origins delivered, for a Delivered (the sender's pulls
 * show it the others). */
static int held_marks(struct repl *r, struct arena *a, const Appeal__Delivery *d,
                      Appeal__Delivered *ack) {
    struct origin_list *l = arena_new(a, sizeof *l);
    MDB_txn *t;
    int rc = l == NULL ? APL_ENOMEM : store_rd_begin(&r->g->store, &t);
    if (rc != 0) {
        return rc;
    }
    rc = repl_list_origins(r, t, l);
    ack->marks = rc == 0 ? arena_new(a, (l->n + 1) * sizeof *ack->marks) : NULL;
    for (uint32_t i = 0; rc == 0 && i < l->n; i++) {
        bool delivered = false;
        for (size_t k = 0; k < d->n_runs && !delivered; k++) {
            delivered = d->runs[k]->origin.len == KEY_PK_BYTES &&
                        memcmp(d->runs[k]->origin.data, l->o[i].pk, KEY_PK_BYTES) == 0;
        }
        if (!delivered) {
            continue;
        }
        Appeal__Mark *m = ack->marks != NULL ? repl_mark_of(a, r, &l->o[i], t, false) : NULL;
        if (m == NULL) {
            rc = APL_ENOMEM;
        } else {
            ack->marks[ack->n_marks++] = m;
        }
    }
    store_rd_end(&r->g->store, t);
    return rc;
}

static void deliver_handle(struct repl *r, struct srv_work *w) {
    struct errbuf e;
    err_clear(&e);
    Appeal__Delivery *d = w->body->deliver;
    Appeal__Delivered ack = APPEAL__DELIVERED__INIT;
    size_t records = 0;
    int rc = d->n_runs > CLUSTER_NODES_MAX
                 ? err_set(&e, APL_ETOOBIG, "a delivery of %zu runs", d->n_runs)
                 : check_delivery(r, w->from, d, &w->arena, &records, &e);
    uint64_t appended = 0;
    if (rc == 0 && records > 0) {
        /* Only the runs with records go to the writer. */
        Appeal__Run **runs = arena_new(&w->arena, d->n_runs * sizeof *runs);
        size_t n = 0;
        for (size_t i = 0; runs != NULL && i < d->n_runs; i++) {
            if (d->runs[i]->n_records > 0) {
                runs[n++] = d->runs[i];
            }
        }
        rc = runs == NULL ? err_set(&e, APL_ENOMEM, "out of memory")
                          : repl_ingest_delivered(r, w->from->juris, runs, n, &appended, &e);
    }
    if (rc == 0 && held_marks(r, &w->arena, d, &ack) != 0) {
        rc = err_set(&e, APL_ENOMEM, "the node could not read its store");
    }
    if (rc != 0) {
        appeal__delivered__init(&ack);
        ack.error = e.msg;
    }
    ack.stored = appended;
    atomic_fetch_add_explicit(&r->g->metrics.records_delivered_in, appended, memory_order_relaxed);
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_DELIVERED;
    body.delivered = &ack;
    repl_srv_reply(w, &body, false);
}

void *repl_deliver_main(void *arg) {
    struct repl *r = arg;
    pthread_setname_np(pthread_self(), "deliveries");
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->deliver_n == 0 && !atomic_load(&r->stopping)) {
            pthread_cond_wait(&r->deliver_cv, &r->mu);
        }
        struct srv_work *w = r->deliver_n > 0 ? r->deliver_q[0] : NULL;
        if (w != NULL) {
            memmove(r->deliver_q, r->deliver_q + 1, --r->deliver_n * sizeof *r->deliver_q);
        }
        pthread_mutex_unlock(&r->mu);
        if (w == NULL) {
            break; /* stopping, nothing queued */
        }
        deliver_handle(r, w);
    }
    return NULL;
}
