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
        const struct origin_state *o = cn != NULL ? repl_held(l, m->origin.data) : NULL;
        if (cn == NULL || (o != NULL && o->frozen) || repl_burst_limited(p->r, m->origin.data)) {
            continue; /* records we would not take: nothing to back */
        }
        uint64_t have = o != NULL ? o->head_seq : 0, proven = 0;
        bool fresh = false;
        pthread_mutex_lock(&p->mu);
        struct pclaim *c = repl_claim_of(p, m->origin.data);
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

/* Records of an origin our cluster file does not list: refused, counted,
 * logged once per peer. */
static void unknown_origin(struct peer *p, const Appeal__Run *run) {
    char kid[KEY_SHORT_HEX + 1];
    key_id_short(run->origin.data, kid);
    char msg[ERRBUF_MSG_BYTES];
    snprintf(msg, sizeof msg, "%s offers records of origin %s, which is not in our cluster file",
             p->cn->juris, kid);
    repl_count_refused(p->r, APL_EORIGIN, run->n_records);
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
        const struct origin_state *o = repl_held(l, c->origin.data);
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
        int rc = repl_ingest_wait(r, p, &c, 1, &appended, e);
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
    const Appeal__Mark *theirs = repl_find_mark(resp->marks, resp->n_marks, r->g->keys.sign_pk);
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
    if (!repl_claim_discarded(p, r->g->keys.sign_pk, &proven) || proven > mine) {
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

/* Sets whether p's link counts as fast (plain answers, 5.6); logs a change.
 * `rate`: the bytes/s that decided it (0: a timeout). */
static void set_fast_link(struct peer *p, bool fast, uint64_t rate) {
    if (fast != p->fast_link) {
        char rs[24];
        snprintf(rs, sizeof rs, "%llu", (unsigned long long)rate);
        olog(OLOG_INFO, "pull_codec", "peer", p->cn->juris, "bytes_per_s", rs, "asks",
             fast ? "plain" : "zstd", NULL);
    }
    p->fast_link = fast;
}

/* A slow link: an answer that timed out waits longer next time, for a
 * smaller batch, and is asked for zstd; answers that come shrink the wait
 * back towards PULL_TIMEOUT_MS (and fetch grows the batch back). */
static void adapt(struct peer *p, int rv) {
    uint32_t t = p->timeout_ms > PULL_TIMEOUT_MS ? p->timeout_ms : PULL_TIMEOUT_MS;
    if (rv == NNG_ETIMEDOUT) {
        p->timeout_ms = t * 2 < PULL_TIMEOUT_MAX_MS ? t * 2 : PULL_TIMEOUT_MAX_MS;
        uint32_t b = p->batch_bytes ? p->batch_bytes : repl_batch_bytes(p->r, PULL_BYTES_MAX);
        p->batch_bytes = b / 2 > BATCH_BYTES_MIN ? b / 2 : BATCH_BYTES_MIN;
        char tm[16], bb[16];
        snprintf(tm, sizeof tm, "%u", p->timeout_ms);
        snprintf(bb, sizeof bb, "%u", p->batch_bytes);
        olog(OLOG_INFO, "pull_adapted", "peer", p->cn->juris, "timeout_ms", tm, "batch_bytes", bb,
             NULL);
        set_fast_link(p, false, 0);
    } else if (rv == 0) {
        p->timeout_ms = t - (t - PULL_TIMEOUT_MS) / 4;
    }
}

static uint32_t request_bytes(const struct peer *p);

/* Whether the link to p is fast enough to go plain (docs/protocol.md 5.6),
 * from a round trip that moved `bytes` (request and answer: a pull's
 * answer, a delivery's records) in `ms` (a timeout: adapt). Smaller round
 * trips than PULL_RATE_SAMPLE_BYTES_MIN (or half the batch asked for,
 * when that is smaller) say more about the latency than the link. */
static void judge_link(struct peer *p, size_t bytes, int64_t ms) {
    uint64_t sample = request_bytes(p) / 2;
    sample = sample < PULL_RATE_SAMPLE_BYTES_MIN ? sample : PULL_RATE_SAMPLE_BYTES_MIN;
    if (bytes < sample) {
        return;
    }
    uint64_t plain = p->r->o.plain_bytes_per_s ? p->r->o.plain_bytes_per_s : PULL_PLAIN_BYTES_PER_S;
    uint64_t rate = (uint64_t)bytes * 1000u / (uint64_t)(ms > 0 ? ms : 1);
    set_fast_link(p, rate >= plain, rate);
}

int repl_send_recv(struct peer *p, nng_msg *out, nng_msg **in, struct errbuf *e) {
    uint64_t t0 = util_mono_ns();
    size_t out_len = nng_msg_len(out);
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
    nng_aio_set_timeout(p->aio, p->timeout_ms > PULL_TIMEOUT_MS ? p->timeout_ms : PULL_TIMEOUT_MS);
    nng_recv_aio(p->req, p->aio);
    nng_aio_wait(p->aio);
    rv = nng_aio_result(p->aio);
    adapt(p, rv);
    if (rv != 0) {
        return err_set(e, rv == NNG_ETIMEDOUT ? APL_ETIMEDOUT : APL_ENET, "no answer from %s: %s",
                       p->cn->juris, nng_strerror(rv));
    }
    *in = nng_aio_get_msg(p->aio);
    judge_link(p, out_len + nng_msg_len(*in), (int64_t)((util_mono_ns() - t0) / 1000000u));
    return 0;
}

/* Our marks, for a pull: a snapshot of the store, then advanced by each
 * verified answer while its records are still being stored (so the next
 * request goes out before the last answer is on disk). */
static int snapshot_marks(struct repl *r, struct origin_list *l) {
    MDB_txn *t;
    int rc = store_rd_begin(&r->g->store, &t);
    if (rc == 0) {
        rc = repl_list_origins(r, t, l);
        store_rd_end(&r->g->store, t);
    }
    return rc;
}

static uint32_t request_bytes(const struct peer *p) {
    uint32_t cap = repl_batch_bytes(p->r, PULL_BYTES_MAX);
    return p->batch_bytes != 0 && p->batch_bytes < cap ? p->batch_bytes : cap;
}

static int pack_request(struct peer *p, Appeal__PullRequest *q, nng_msg **out) {
    q->records_max = PULL_RECORDS_MAX;
    q->bytes_max = request_bytes(p);
    q->codecs = p->fast_link ? 0 : PEER_CODEC_ZSTD;
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULL;
    body.pull = q;
    return repl_peer_pack(p->r, &body, out);
}

static int64_t mono_ms(void) {
    return (int64_t)(util_mono_ns() / 1000000u);
}

/* A compact request's marks: ours, for the origins p holds more of (as
 * its answers and heads showed), and that we would store. With q NULL,
 * only counts them. */
static uint32_t compact_marks(struct peer *p, const struct origin_list *l, struct arena *a,
                              Appeal__PullRequest *q) {
    uint32_t n = 0;
    uint64_t want_bytes = 0;
    pthread_mutex_lock(&p->mu);
    /* From a random origin: listed while the answer could hold more. */
    uint32_t first = p->n_marks ? randombytes_uniform(p->n_marks) : 0;
    for (uint32_t j = 0; j < p->n_marks; j++) {
        uint32_t i = (first + j) % p->n_marks;
        const uint8_t *pk = p->marks[i].origin;
        const struct origin_state *o = repl_held(l, pk);
        struct pclaim *c = repl_claim_of(p, pk);
        if (p->marks[i].seq <= (o != NULL ? o->head_seq : 0) || (o != NULL && o->frozen) ||
            cluster_by_origin(p->r->c, pk) == NULL || repl_burst_limited(p->r, pk) ||
            (c != NULL && c->unbacked >= CLAIM_UNBACKED_SESSIONS_MAX)) {
            continue;
        }
        n++;
        if (q == NULL || want_bytes >= q->bytes_max) {
            continue;
        }
        Appeal__Mark *m = arena_new(a, sizeof *m);
        uint8_t *key = arena_new(a, KEY_PK_BYTES);
        if (m == NULL || key == NULL) {
            continue;
        }
        /* seq only: the hashes (forks) go in the full requests */
        appeal__mark__init(m);
        memcpy(key, pk, KEY_PK_BYTES);
        m->origin.data = key;
        m->origin.len = KEY_PK_BYTES;
        m->seq = o != NULL ? o->head_seq : 0;
        want_bytes += (p->marks[i].seq - m->seq) * COMPACT_RECORD_BYTES_MIN;
        q->marks[q->n_marks++] = m;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

static int request_from(struct peer *p, const struct origin_list *l, struct arena *a,
                        nng_msg **out) {
    Appeal__PullRequest q = APPEAL__PULL_REQUEST__INIT;
    q.marks = arena_new(a, (CLUSTER_NODES_MAX + 1) * sizeof *q.marks);
    if (q.marks == NULL) {
        return APL_ENOMEM;
    }
    /* Compact once the peer has shown it reads compact requests (an answer
     * with an epoch), except while recovering and when a full one is due. */
    int64_t now = mono_ms();
    q.partial = p->srv_epoch != 0 && !atomic_load(&p->r->recovering) && now < p->full_due_ms;
    if (q.partial) {
        q.epoch = p->srv_epoch;
        q.since = p->srv_version;
        q.bytes_max = request_bytes(p);
        compact_marks(p, l, a, &q);
        return pack_request(p, &q, out);
    }
    p->full_due_ms = now + PULL_FULL_MARKS_MS;
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
        const struct origin_state *o = repl_held(l, c->nodes[i].sign_pk);
        if ((o == NULL || !o->frozen) && !repl_burst_limited(p->r, c->nodes[i].sign_pk)) {
            q.wanted[q.n_wanted].data = (uint8_t *)c->nodes[i].sign_pk;
            q.wanted[q.n_wanted].len = KEY_PK_BYTES;
            q.n_wanted++;
        }
    }
    return pack_request(p, &q, out);
}

/* What we will hold once a verified answer is stored. */
static void advance_marks(struct origin_list *l, const Appeal__PullResponse *resp,
                          struct arena *a) {
    for (size_t i = 0; i < resp->n_runs; i++) {
        const Appeal__Run *run = resp->runs[i];
        if (run->n_records == 0) {
            continue;
        }
        struct origin_state *o = (struct origin_state *)repl_held(l, run->origin.data);
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
    ASSERT(l->n <= CLUSTER_NODES_MAX);
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
    if ((rc = repl_send_recv(p, out, &in, e)) != 0) {
        return rc;
    }
    /* Unpacking copies what it keeps into `a`: the message goes at once. */
    bool packed = false;
    rc = peermsg_open_max(r->c, &r->g->store, nng_msg_body(in), nng_msg_len(in), PEER_RAW_BYTES_MAX,
                          a, p->cn, &f->body, NULL, &packed, e);
    nng_msg_free(in);
    p->zstd = p->zstd || packed; /* it reads what it writes: deliveries go packed */
    if (rc == 0 && f->body->msg_case != APPEAL__PEER_BODY__MSG_PULLED) {
        rc = err_set(e, APL_EINVAL, "%s answered a pull with something else", p->cn->juris);
    }
    if (rc == 0 && f->body->pulled->error[0] != '\0') {
        repl_peer_contact(p, f->body, NULL, 0, false);
        rc = err_set(e, APL_EAUTH, "%s refused our pull: %s", p->cn->juris, f->body->pulled->error);
    }
    if (rc != 0) {
        return rc;
    }
    f->resp = f->body->pulled;
    for (size_t i = 0; rc == 0 && i < f->resp->n_runs; i++) {
        bool skip;
        rc = repl_check_origin_run(r, l, f->resp->runs[i], a, &skip, e);
        if (rc == APL_EORIGIN && skip) {
            unknown_origin(p, f->resp->runs[i]);
            rc = 0;
        }
        if (skip) {
            f->resp->runs[i]->n_records = 0;
        } else if (rc == 0) {
            repl_peer_proved(p, f->resp->runs[i]);
        }
        f->records += f->resp->runs[i]->n_records;
    }
    if (rc != 0) {
        repl_count_refused(r, rc, f->records);
        pthread_mutex_lock(&p->mu);
        p->refused += f->records;
        pthread_mutex_unlock(&p->mu);
        char msg[ERRBUF_MSG_BYTES + 64];
        snprintf(msg, sizeof msg, "refused a batch from %s: %s", p->cn->juris, e->msg);
        return err_set(e, rc, "%s", msg);
    }
    atomic_fetch_add_explicit(&r->g->metrics.pulls, 1, memory_order_relaxed);
    repl_peer_contact(p, f->body, (const Appeal__Mark *const *)f->resp->marks, f->resp->n_marks,
                      true);
    /* Its marks are ours as of this answer (an older node sends no epoch). */
    p->srv_epoch = f->resp->epoch;
    p->srv_version = f->resp->version;
    uint32_t cap = repl_batch_bytes(r, PULL_BYTES_MAX);
    if (f->records > 0 && p->batch_bytes != 0) {
        p->batch_bytes = p->batch_bytes < cap / 2 ? p->batch_bytes * 2 : cap;
    }
    return 0;
}

/* Waits for the ingest in flight and counts what it stored; its error
 * becomes the session's unless the session already has one. */
static uint64_t settle(struct peer *p, struct repl_ingest *in, int *rc, struct errbuf *e) {
    uint64_t appended = 0;
    struct errbuf e2;
    err_clear(&e2);
    int rc2 = repl_ingest_end(in, &appended, &e2);
    pthread_mutex_lock(&p->mu);
    p->records_in += appended;
    pthread_mutex_unlock(&p->mu);
    if (rc2 != 0 && *rc == 0) {
        *rc = err_set(e, rc2, "%s", e2.msg);
    }
    return appended;
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
    unsigned empty_answers = 0, partial_rounds = 0;
    int64_t t0 = mono_ms();
    p->yielded = false;
    for (unsigned k = 0; !atomic_load(&r->stopping); k++) {
        /* A long catch-up (a slow link) stops now and then for our
         * deliveries: our records leave before we hold all of theirs. */
        if (k > 0 && mono_ms() - t0 > PULL_SESSION_YIELD_MS && !p->no_deliver) {
            p->yielded = true;
            break;
        }
        struct arena *a = &p->arenas[k & 1];
        arena_reset(a);
        struct fetched f;
        rc = fetch(p, l, a, &f, e);
        if (inflight) {
            uint64_t appended = settle(p, &in, &rc, e);
            inflight = false;
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
            /* A compact answer may show origins we did not ask for that it
             * holds more of: ask for those (a few rounds at most). */
            bool revealed = f.body->pulled->epoch != 0 && compact_marks(p, l, NULL, NULL) > 0 &&
                            ++partial_rounds <= PULL_PARTIAL_ROUNDS_MAX;
            if (!f.resp->more && !revealed) {
                claims_check(p, l, f.resp);
            }
            recovery_check(p, f.resp);
            /* "More", yet nothing we can store: do not spin on it. */
            if ((!f.resp->more && !revealed) || ++empty_answers >= PULL_EMPTY_ANSWERS_MAX) {
                break;
            }
            continue;
        }
        empty_answers = 0;
        if ((rc = repl_ingest_begin(r, p, &in, f.resp->runs, f.resp->n_runs, e)) != 0) {
            break;
        }
        inflight = true;
        expected = f.records;
        advance_marks(l, f.resp, a);
    }
    if (inflight) {
        settle(p, &in, &rc, e);
    }
    return rc;
}

/* ---- recovery ---- */

void repl_recovery_maybe_done(struct repl *r) {
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
    ASSERT(confirmed + dropped <= (int)r->n_peers); /* counted apart */
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
        if (repl_submit_wait(r, &w) == 0) {
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

/* A peer no longer dialled (repl_reload): its dialer is closed and it
 * waits; dialled again, it gets a new dialer. True: do not pull now. */
static bool retire_maybe(struct peer *p) {
    struct repl *r = p->r;
    bool retired = atomic_load(&p->retired);
    if (retired && !p->dialer_closed) {
        nng_dialer_close(p->dialer);
        p->dialer_closed = true;
        olog(OLOG_INFO, "peer_retired", "peer", p->cn->juris, NULL);
    } else if (!retired && p->dialer_closed) {
        struct errbuf e;
        err_clear(&e);
        if (tls_dial(p->req, p->cn->peer_url, r->o.tls, p->cn->juris, NNG_FLAG_NONBLOCK,
                     "pull from", &p->dialer, &e) != 0) {
            repl_peer_error(p, APL_ENET, e.msg);
            return true;
        }
        p->dialer_closed = false;
    }
    return retired;
}

static uint32_t jitter(uint32_t ms) {
    return ms + randombytes_uniform(ms / 4 + 1);
}

void *repl_puller_main(void *arg) {
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
        while (!atomic_load(&r->stopping) && !(p->poke && backoff == 0) && !p->connected &&
               util_mono_ns() < until) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t left = until - util_mono_ns();
            uint64_t step = left < 200000000u ? left : 200000000u;
            ts.tv_sec += (time_t)((uint64_t)ts.tv_nsec + step) / 1000000000;
            ts.tv_nsec = (long)(((uint64_t)ts.tv_nsec + step) % 1000000000u);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        p->poke = p->connected = false;
        pthread_mutex_unlock(&p->mu);
        if (atomic_load(&r->stopping)) {
            break;
        }
        struct errbuf e;
        err_clear(&e);
        if (retire_maybe(p)) {
            again = false;
            continue;
        }
        int rc = pull_session(p, &e);
        if (rc == 0) {
            rc = repl_deliver_session(p, &e);
        }
        if (rc == 0) {
            backoff = 0;
            again = p->yielded; /* go on pulling after the deliveries */
            repl_recovery_maybe_done(r);
        } else if (!atomic_load(&r->stopping)) {
            repl_peer_error(p, rc, e.msg);
            backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
                              : BACKOFF_MIN_MS;
            again = false;
        }
    }
    return NULL;
}
