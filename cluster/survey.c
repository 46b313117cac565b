#include "survey.h"

#include <nng/nng.h>
#include <nng/protocol/survey0/respond.h>
#include <nng/protocol/survey0/survey.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "cal.h"
#include "engine.h"
#include "olog.h"
#include "peermsg.h"
#include "query.h"
#include "repl.h"
#include "tls.h"

enum {
    SURVEY_RECV_BYTES_MAX = 8 * 1024 * 1024, /* one jurisdiction's answer */
    RESPOND_RECV_BYTES_MAX = 64 * 1024,      /* a query */
};

struct survey {
    struct engine *g;
    struct cluster *c;
    struct survey_opts o; /* read-only after start */
    nng_socket resp, surv;
    bool resp_open, surv_open;
    pthread_t responder;
    bool responder_started;
    _Atomic bool stopping;
    _Atomic bool cancelled; /* shutting down: no survey waits for peers */
    nng_aio *recv_aio;      /* the survey's answers; survey_cancel aborts it */
    pthread_mutex_t mu;     /* one survey at a time */
    struct arena resp_arena;
};

/* ---- answering ---- */

static void respond_one(struct survey *s, nng_msg *m, nng_aio *aio) {
    struct errbuf e;
    err_clear(&e);
    arena_reset(&s->resp_arena);
    Appeal__PeerBody *b;
    const struct cluster_node *from;
    int rc = peermsg_open(s->c, &s->g->store, nng_msg_body(m), nng_msg_len(m), &s->resp_arena, NULL,
                          &b, &from, &e);
    nng_msg_free(m);
    if (rc == 0 && (b->msg_case != APPEAL__PEER_BODY__MSG_QUERY || b->query == NULL)) {
        rc = err_set(&e, APL_EINVAL, "expected a query");
    }
    /* A node relearning its own log, or whose log forked, does not know
     * what it owns: silence makes the asker use (and label) its replica. */
    if (rc == 0 && (repl_recovering(s->o.repl) || engine_self_frozen(s->g))) {
        rc = err_set(&e, APL_EUNAVAIL, "recovering or frozen: not answering live");
    }
    Appeal__QueryResult *r = NULL;
    if (rc == 0) {
        MDB_txn *t;
        rc = store_rd_begin(&s->g->store, &t);
        if (rc == 0) {
            rc = query_run(&s->g->store, t, b->query, s->g->juris,
                           day_from_ms(engine_now_ms(s->g), s->o.utc_offset_min), &s->resp_arena,
                           &r, &e);
            store_rd_end(&s->g->store, t);
        }
    }
    if (rc != 0) {
        olog(OLOG_WARN, "query_refused", "reason", err_msg(&e, rc), NULL);
        return; /* the surveyor treats silence as "use the replica" */
    }
    r->mode = "live";
    r->answered_by = s->g->juris;
    Appeal__PeerBody out = APPEAL__PEER_BODY__INIT;
    out.msg_case = APPEAL__PEER_BODY__MSG_QUERY_RESULT;
    out.query_result = r;
    nng_msg *reply;
    if (peermsg_pack(&s->g->keys, s->o.peer_skew_ms, &out, &reply) != 0) {
        return;
    }
    nng_aio_set_msg(aio, reply);
    nng_aio_set_timeout(aio, 5000);
    nng_send_aio(s->resp, aio);
    nng_aio_wait(aio);
    if (nng_aio_result(aio) != 0) {
        nng_msg_free(reply);
    }
}

static void *responder_main(void *arg) {
    struct survey *s = arg;
    pthread_setname_np(pthread_self(), "respondent");
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        return NULL;
    }
    while (!atomic_load(&s->stopping)) {
        nng_aio_set_timeout(aio, 300);
        nng_recv_aio(s->resp, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) == 0) {
            respond_one(s, nng_aio_get_msg(aio), aio);
        }
    }
    nng_aio_free(aio);
    return NULL;
}

/* ---- asking ---- */

struct answer {
    const struct cluster_node *from;
    Appeal__QueryResult *r;
};

void survey_cancel(struct survey *s) {
    if (s != NULL) {
        atomic_store(&s->cancelled, true);
        nng_aio_cancel(s->recv_aio);
    }
}

/* One answer, or NNG_ETIMEDOUT at the survey's deadline, or NNG_ECANCELED
 * once survey_cancel was called (checked after the receive started, so a
 * cancel that came first is not missed). */
static int recv_answer(struct survey *s, nng_msg **in) {
    nng_recv_aio(s->surv, s->recv_aio);
    if (atomic_load(&s->cancelled)) {
        nng_aio_cancel(s->recv_aio);
    }
    nng_aio_wait(s->recv_aio);
    int rv = nng_aio_result(s->recv_aio);
    if (rv == 0) {
        *in = nng_aio_get_msg(s->recv_aio);
    }
    return rv;
}

static int collect(struct survey *s, const Appeal__QueryRequest *q, struct arena *a,
                   struct answer *answers, uint32_t *n_answers) {
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_QUERY;
    body.query = (Appeal__QueryRequest *)q;
    nng_msg *m;
    int rc = peermsg_pack(&s->g->keys, s->o.peer_skew_ms, &body, &m);
    if (rc != 0) {
        return rc;
    }
    uint32_t deadline = q->deadline_ms ? q->deadline_ms : QUERY_DEADLINE_MS_DEFAULT;
    nng_socket_set_ms(s->surv, NNG_OPT_SURVEYOR_SURVEYTIME, (nng_duration)deadline);
    if (atomic_load(&s->cancelled)) {
        nng_msg_free(m);
        return APL_EUNAVAIL;
    }
    if (nng_sendmsg(s->surv, m, 0) != 0) {
        nng_msg_free(m);
        return APL_ENET;
    }
    *n_answers = 0;
    for (;;) {
        nng_msg *in;
        int rv = recv_answer(s, &in);
        if (rv == NNG_ECANCELED || (rv == 0 && atomic_load(&s->cancelled))) {
            if (rv == 0) {
                nng_msg_free(in);
            }
            return APL_EUNAVAIL;
        }
        if (rv != 0) {
            break; /* NNG_ETIMEDOUT: the deadline passed */
        }
        struct errbuf e;
        err_clear(&e);
        Appeal__PeerBody *b;
        const struct cluster_node *from;
        rc = peermsg_open(s->c, &s->g->store, nng_msg_body(in), nng_msg_len(in), a, NULL, &b, &from,
                          &e);
        nng_msg_free(in);
        if (rc != 0 || b->msg_case != APPEAL__PEER_BODY__MSG_QUERY_RESULT ||
            b->query_result == NULL || strcmp(b->query_result->answered_by, from->juris) != 0 ||
            *n_answers >= s->c->count) {
            olog(OLOG_WARN, "query_answer_refused", "reason", rc ? e.msg : "malformed", NULL);
            continue;
        }
        bool dup = false;
        for (uint32_t i = 0; i < *n_answers; i++) {
            dup |= answers[i].from == from;
        }
        if (!dup) {
            answers[(*n_answers)++] = (struct answer){from, b->query_result};
        }
        if (*n_answers + 1 >= s->c->count) {
            break; /* every other member answered: no need to wait out the deadline */
        }
    }
    return 0;
}

static const Appeal__OriginStatus *origin_status(const Appeal__ClusterStatus *st,
                                                 const char *juris) {
    for (size_t i = 0; st != NULL && i < st->n_origins; i++) {
        if (strcmp(st->origins[i]->jurisdiction, juris) == 0) {
            return st->origins[i];
        }
    }
    return NULL;
}

static Appeal__SourceInfo *source(struct arena *a, const char *juris, const char *kind,
                                  const Appeal__OriginStatus *o) {
    Appeal__SourceInfo *si = arena_new(a, sizeof *si);
    if (si != NULL) {
        appeal__source_info__init(si);
        si->jurisdiction = (char *)juris;
        si->source = (char *)kind;
        si->staleness_ms = o != NULL ? o->staleness_ms : -1;
        si->lag_records = o != NULL ? o->lag_records : 0;
        si->fold_lag_records = o != NULL ? o->fold_lag_records : 0;
    }
    return si;
}

int survey_sources_replica(struct engine *n, struct repl *repl, MDB_txn *t, Appeal__QueryResult *r,
                           struct arena *a) {
    Appeal__ClusterStatus *st = NULL;
    if (repl != NULL && repl_status(repl, t, a, &st) != 0) {
        st = NULL;
    }
    size_t count = st != NULL ? st->n_origins : 1;
    r->sources = arena_new(a, (count + 1) * sizeof *r->sources);
    if (r->sources == NULL) {
        return APL_ENOMEM;
    }
    if (st == NULL) {
        r->sources[r->n_sources] = source(a, n->juris, "live", NULL);
        if (r->sources[r->n_sources] == NULL) {
            return APL_ENOMEM;
        }
        r->sources[r->n_sources++]->staleness_ms = 0;
        return 0;
    }
    for (size_t i = 0; i < st->n_origins; i++) {
        const Appeal__OriginStatus *o = st->origins[i];
        bool self = strcmp(o->jurisdiction, n->juris) == 0;
        Appeal__SourceInfo *si =
            source(a, o->jurisdiction, self ? "live" : (o->local_seq > 0 ? "replica" : "missing"),
                   self ? NULL : o);
        if (si == NULL) {
            return APL_ENOMEM;
        }
        if (self) {
            si->staleness_ms = 0;
        }
        r->sources[r->n_sources++] = si;
    }
    return 0;
}

/* Our own part, and the silent jurisdictions' from our replica. */
static int local_part(struct survey *s, MDB_txn *t, const Appeal__QueryRequest *q,
                      const char *juris, struct arena *a, Appeal__QueryResult **r,
                      struct errbuf *e) {
    return query_run(&s->g->store, t, q, juris,
                     day_from_ms(engine_now_ms(s->g), s->o.utc_offset_min), a, r, e);
}

/* One node's part of a live answer: this node's own (already in `r`), or
 * its answer, or else what this node holds of it (a replica, or missing). */
static int merge_node(struct survey *s, MDB_txn *t, const Appeal__QueryRequest *q,
                      const struct cluster_node *cn, const struct answer *answers,
                      uint32_t n_answers, const Appeal__ClusterStatus *st, Appeal__QueryResult *r,
                      uint32_t max, struct arena *a, struct errbuf *e) {
    const Appeal__OriginStatus *o = origin_status(st, cn->juris);
    if ((int)(cn - s->c->nodes) == s->c->self) {
        Appeal__SourceInfo *self = source(a, cn->juris, "live", NULL);
        if (self == NULL) {
            return APL_ENOMEM;
        }
        self->staleness_ms = 0;
        r->sources[r->n_sources++] = self;
        return 0;
    }
    Appeal__QueryResult *part = NULL;
    const char *kind = "live";
    for (uint32_t k = 0; k < n_answers && part == NULL; k++) {
        if (answers[k].from == cn) {
            part = answers[k].r;
        }
    }
    int rc = 0;
    if (part == NULL) {
        kind = o != NULL && o->local_seq > 0 ? "replica" : "missing";
        rc = local_part(s, t, q, cn->juris, a, &part, e);
    }
    if (rc == 0) {
        rc = query_merge(r, part, max, a, e);
    }
    Appeal__SourceInfo *si = source(a, cn->juris, kind, o);
    if (rc == 0 && si == NULL) {
        rc = APL_ENOMEM;
    }
    if (rc == 0) {
        if (strcmp(kind, "live") == 0) {
            si->staleness_ms = 0;
            si->lag_records = 0;
        }
        r->sources[r->n_sources++] = si;
    }
    return rc;
}

int survey_run(struct survey *s, const Appeal__QueryRequest *q, struct arena *a,
               Appeal__QueryResult **out, struct errbuf *e) {
    int rc = query_check(q, e);
    if (rc != 0) {
        return rc;
    }
    uint32_t max = q->groups_max ? q->groups_max : QUERY_GROUPS_DEFAULT;
    struct answer *answers = arena_new(a, (s->c->count + 1) * sizeof *answers);
    if (answers == NULL) {
        return APL_ENOMEM;
    }
    uint32_t n_answers = 0;
    pthread_mutex_lock(&s->mu);
    rc = collect(s, q, a, answers, &n_answers);
    pthread_mutex_unlock(&s->mu);
    if (rc == APL_EUNAVAIL) {
        return err_set(e, rc, "the node is shutting down: live query cancelled");
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot send the survey: %s", apl_strerror(rc));
    }
    MDB_txn *t;
    if ((rc = store_rd_begin(&s->g->store, &t)) != 0) {
        return err_set(e, rc, "cannot read the store");
    }
    Appeal__ClusterStatus *st = NULL;
    if (s->o.repl != NULL && repl_status(s->o.repl, t, a, &st) != 0) {
        st = NULL;
    }
    Appeal__QueryResult *r = NULL;
    rc = local_part(s, t, q, s->g->juris, a, &r, e);
    if (rc == 0) {
        r->mode = "live";
        r->sources = arena_new(a, (s->c->count + 1) * sizeof *r->sources);
        rc = r->sources != NULL ? 0 : APL_ENOMEM;
    }
    for (uint32_t i = 0; rc == 0 && i < s->c->count; i++) {
        rc = merge_node(s, t, q, &s->c->nodes[i], answers, n_answers, st, r, max, a, e);
    }
    ASSERT(rc != 0 || r->n_sources == s->c->count); /* one source per node, in r->sources */
    store_rd_end(&s->g->store, t);
    if (rc != 0) {
        return e->msg[0] ? rc : err_set(e, rc, "the live query failed: %s", apl_strerror(rc));
    }
    *out = r;
    return 0;
}

/* ---- start and stop ---- */

int survey_start(struct survey **out, struct engine *n, struct cluster *c,
                 const struct survey_opts *o, struct errbuf *e) {
    struct survey *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return APL_ENOMEM;
    }
    s->g = n;
    s->c = c;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    const struct cluster_node *self = &c->nodes[c->self];
    int rv = arena_init(&s->resp_arena, query_arena_bytes(QUERY_GROUPS_MAX)) == 0 ? 0 : NNG_ENOMEM;
    if (rv == 0) {
        rv = nng_aio_alloc(&s->recv_aio, NULL, NULL);
    }
    if (rv == 0) {
        rv = nng_surveyor0_open(&s->surv);
        s->surv_open = rv == 0;
    }
    if (rv == 0) {
        rv = nng_socket_set_size(s->surv, NNG_OPT_RECVMAXSZ, SURVEY_RECV_BYTES_MAX);
    }
    /* nng's default waits up to a second before dialling a peer again: a
     * peer that started a moment after us would miss the first queries. */
    if (rv == 0) {
        rv = nng_socket_set_ms(s->surv, NNG_OPT_RECONNMINT, 100);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(s->surv, NNG_OPT_RECONNMAXT, 1000);
    }
    /* tls+tcp://: each peer's certificate must name its jurisdiction, and
     * only nodes with a certificate from the federation's CA may ask us. */
    int rc = 0;
    for (uint32_t i = 0; rv == 0 && rc == 0 && i < c->count; i++) {
        if ((int)i != c->self && c->nodes[i].query_url[0] != '\0') {
            rc = tls_dial(s->surv, c->nodes[i].query_url, s->o.tls, c->nodes[i].juris,
                          NNG_FLAG_NONBLOCK, "send live queries to", NULL, e);
        }
    }
    if (rv == 0 && rc == 0 && self->query_url[0] != '\0') {
        rv = nng_respondent0_open(&s->resp);
        s->resp_open = rv == 0;
        if (rv == 0) {
            rv = nng_socket_set_size(s->resp, NNG_OPT_RECVMAXSZ, RESPOND_RECV_BYTES_MAX);
        }
        if (rv == 0) {
            rc = tls_listen(s->resp, self->query_url, s->o.tls, TLS_AUTH_PEERS,
                            "serve live queries on", NULL, e);
        }
        if (rv == 0 && rc == 0) {
            rv = pthread_create(&s->responder, NULL, responder_main, s) == 0 ? 0 : NNG_ENOMEM;
            s->responder_started = rv == 0;
        }
    }
    if (rc != 0) {
        survey_stop(s);
        return rc;
    }
    if (rv != 0) {
        survey_stop(s);
        return err_set(e, APL_ENET, "cannot serve live queries on %s: %s", self->query_url,
                       nng_strerror(rv));
    }
    *out = s;
    return 0;
}

void survey_stop(struct survey *s) {
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stopping, true);
    if (s->responder_started) {
        pthread_join(s->responder, NULL);
    }
    pthread_mutex_lock(&s->mu); /* no survey in flight */
    if (s->resp_open) {
        nng_close(s->resp);
    }
    if (s->surv_open) {
        nng_close(s->surv);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&s->mu);
    if (s->recv_aio != NULL) {
        nng_aio_free(s->recv_aio);
    }
    arena_fini(&s->resp_arena);
    free(s);
}
