#include "api.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "appeal.h"
#include "auth.h"
#include "client.h"
#include "clock.h"
#include "connlimit.h"
#include "lifecycle.h"
#include "bounds.h"
#include "node.h"
#include "prom.h"
#include "olog.h"
#include "outbox.h"
#include "query.h"
#include "repl.h"
#include "survey.h"
#include "ruleset.h"
#include "session.h"
#include "tls.h"
#include "util.h"
#include "view.h"

enum work_state { W_INIT, W_RECV, W_WAIT, W_SEND };

struct api_work {
    struct api *api;
    nng_aio *aio;
    nng_ctx ctx;
    enum work_state state;
    bool live;     /* handed to the live queue; a spare serves in its place */
    nng_pipe pipe; /* of the request in progress (conn_limit) */
    bool has_pipe;
    struct arena arena;
    Appeal__Request *req;
    struct principal who; /* the official who signed it */
    struct wreq wreq;
    struct appeal_result result;
    uint64_t recv_ns; /* util_mono_ns() when the request arrived */
};

/* Live queries wait for other nodes: they run on a thread of their own,
 * never on nng's, and never hold one of the API_CONTEXTS receiving
 * contexts while they wait. A context that receives one hands it (with
 * its nng context, which the reply must go out on) to this queue and a
 * spare context takes its place receiving; when the reply is sent the
 * context becomes a spare again. LIVE_QUERIES_MAX spares bound the live
 * queries queued or running. */
struct live_queue {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* work queued, or stopping */
    pthread_cond_t idle; /* a spare came back */
    struct api_work *items[LIVE_QUERIES_MAX];
    uint32_t head, count;
    struct api_work *spares[LIVE_QUERIES_MAX];
    uint32_t n_spares;
    bool stopping; /* under mu */
};

enum { LIVE_STOP_WAIT_S = 2 }; /* for the cancelled live queries' answers */

struct api {
    struct node *node;
    nng_socket sock;
    nng_listener listener;
    struct api_work works[API_CONTEXTS + LIVE_QUERIES_MAX];
    size_t started;
    struct live_queue live;
    struct conn_limit *conns;
    struct auth auth;
    struct sessions sessions; /* opened by session_open, bound to a connection */
};

static void live_release(struct api_work *w);

static void recv_next(struct api_work *w) {
    arena_reset(&w->arena);
    w->req = NULL;
    if (w->has_pipe) {
        conn_limit_busy(w->api->conns, w->pipe, -1); /* answered */
        w->has_pipe = false;
    }
    if (w->live) {
        live_release(w); /* its spare receives in its place */
        return;
    }
    w->state = W_RECV;
    nng_ctx_recv(w->ctx, w->aio);
}

/* Packs `resp` and sends it; on any failure goes back to receiving. */
static void send_response(struct api_work *w, const Appeal__Response *resp) {
    size_t n = protobuf_c_message_get_packed_size(&resp->base);
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0) {
        olog(OLOG_ERROR, "reply_alloc_failed", NULL);
        recv_next(w);
        return;
    }
    protobuf_c_message_pack(&resp->base, nng_msg_body(m));
    nng_aio_set_msg(w->aio, m);
    w->state = W_SEND;
    nng_ctx_send(w->ctx, w->aio);
}

static void send_error(struct api_work *w, int rc, const char *msg) {
    atomic_fetch_add_explicit(&w->api->node->eng.metrics.requests_refused, 1, memory_order_relaxed);
    Appeal__Error err = APPEAL__ERROR__INIT;
    err.code = client_error_code(rc);
    err.message = (char *)(msg != NULL && msg[0] ? msg : apl_strerror(rc));
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    resp.error = &err;
    send_response(w, &resp);
}

static const char *op_name(const Appeal__Request *q) {
    switch (q->op_case) {
    case APPEAL__REQUEST__OP_FILE:
        return "file";
    case APPEAL__REQUEST__OP_SHOW:
        return "show";
    case APPEAL__REQUEST__OP_LIST:
        return "list";
    case APPEAL__REQUEST__OP_ACT:
        return "act";
    case APPEAL__REQUEST__OP_INFO:
        return "info";
    case APPEAL__REQUEST__OP_CLUSTER_STATUS:
        return "cluster_status";
    case APPEAL__REQUEST__OP_METRICS:
        return "metrics";
    case APPEAL__REQUEST__OP_QUERY:
        return "query";
    case APPEAL__REQUEST__OP_OVERDUE:
        return "overdue";
    case APPEAL__REQUEST__OP_GRANT:
        return "grant";
    case APPEAL__REQUEST__OP_REVOKE:
        return "revoke";
    case APPEAL__REQUEST__OP_GRANTS:
        return "grants";
    case APPEAL__REQUEST__OP_HELLO:
        return "hello";
    case APPEAL__REQUEST__OP_NOTIFICATIONS:
        return "notifications";
    case APPEAL__REQUEST__OP_SESSION_OPEN:
        return "session_open";
    default:
        return "unknown";
    }
}

/* ---- writes ---- */

int api_write(struct node *n, MDB_txn *t, struct principal *who, const Appeal__Request *req,
              struct appeal_result *res, struct errbuf *e) {
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    free(res->record);
    memset(res, 0, sizeof *res);
    /* Again where the record is made: a revocation committed since the
     * request was authenticated (even earlier in this batch) wins. */
    int rc = auth_grant_check(&n->eng.store, t, n->eng.self.idx, n->admin_pk, who, e);
    if (rc == 0) {
        rc = auth_allow(who, req, e);
    }
    if (rc != 0) {
        return rc;
    }
    c.actor = who->pk;
    switch (req->op_case) {
    case APPEAL__REQUEST__OP_FILE:
        return appeal_file(&c, req->file, res, e);
    case APPEAL__REQUEST__OP_GRANT:
        return appeal_grant(&c, req->grant, res, e);
    case APPEAL__REQUEST__OP_REVOKE:
        return appeal_revoke(&c, req->revoke, res, e);
    default:
        return appeal_act(&c, req->act, res, e);
    }
}

static int run_write(void *node, MDB_txn *t, struct wreq *r) {
    struct api_work *w = r->arg;
    return api_write(node, t, &w->who, w->req, &w->result, &r->err);
}

void api_receipt(struct node *n, const struct appeal_result *res, Appeal__Receipt *rc) {
    appeal__receipt__init(rc);
    rc->number = (char *)res->number;
    rc->type = res->type;
    rc->registered_ms = res->registered_ms;
    rc->deadline_day = res->deadline_day;
    rc->receiving_body = n->eng.juris;
    rc->status = res->status;
    rc->repeat_of = (char *)res->repeat_of;
    rc->urgent = res->urgent;
    rc->seq = res->seq;
    rc->record.data = res->record;
    rc->record.len = res->record_len;
    rc->origin.data = n->eng.keys.sign_pk;
    rc->origin.len = KEY_PK_BYTES;
    rc->access_code = (char *)res->access_code;
}

static void write_done(struct wreq *r) {
    struct api_work *w = r->arg;
    if (r->rc != 0) {
        char code[16];
        snprintf(code, sizeof code, "%d", client_error_code(r->rc));
        olog(OLOG_INFO, "request_refused", "op", op_name(w->req), "code", code, "reason",
             err_msg(&r->err, r->rc), NULL);
        send_error(w, r->rc, err_msg(&r->err, r->rc));
        return;
    }
    const struct appeal_result *res = &w->result;
    if (w->req->op_case == APPEAL__REQUEST__OP_FILE) {
        atomic_fetch_add_explicit(&w->api->node->eng.metrics.appeals_filed, 1,
                                  memory_order_relaxed);
    }
    if (w->req->op_case == APPEAL__REQUEST__OP_REVOKE && w->req->revoke->key.len == KEY_PK_BYTES) {
        /* Its sessions end now; until here each request's grant check
         * (and the writer's, in its transaction) refused them. */
        uint32_t dropped = session_drop_key(&w->api->sessions, w->req->revoke->key.data);
        char nd[12];
        snprintf(nd, sizeof nd, "%u", dropped);
        olog(OLOG_INFO, "sessions_ended", "reason", "revoked", "sessions", nd, NULL);
    }
    if (w->req->op_case == APPEAL__REQUEST__OP_GRANT ||
        w->req->op_case == APPEAL__REQUEST__OP_REVOKE) {
        char seq[24], kid[KEY_SHORT_HEX + 1];
        const ProtobufCBinaryData *k = w->req->op_case == APPEAL__REQUEST__OP_GRANT
                                           ? &w->req->grant->key
                                           : &w->req->revoke->key;
        util_hex(k->data, KEY_SHORT_HEX / 2, kid);
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)res->seq);
        olog(OLOG_INFO, op_name(w->req), "key", kid, "role",
             w->req->op_case == APPEAL__REQUEST__OP_GRANT ? w->req->grant->role : "-", "by",
             w->who.kid, "seq", seq, NULL);
    } else {
        const char *what = w->req->op_case == APPEAL__REQUEST__OP_FILE
                               ? "filed"
                               : status_name((Appeal__Status)res->status);
        olog(OLOG_INFO, "appeal_changed", "number", res->number, "change", what, "type",
             appeal_type_name(res->type), "by", w->who.kid, NULL);
    }
    Appeal__Receipt rc;
    api_receipt(w->api->node, res, &rc);
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    resp.result_case = APPEAL__RESPONSE__RESULT_RECEIPT;
    resp.receipt = &rc;
    /* Once sent, `w` may at once receive its next request (already waiting
     * when a client pipelines) and the writer run it, rewriting w->result:
     * nothing of `w` is touched after the send. */
    uint8_t *record = w->result.record;
    w->result.record = NULL;
    hist_observe_us(&w->api->node->eng.metrics.api_write, (util_mono_ns() - w->recv_ns) / 1000);
    send_response(w, &resp); /* packs the record's bytes before sending */
    free(record);
}

static void submit_write(struct api_work *w) {
    struct errbuf e;
    err_clear(&e);
    int busy = node_writable(w->api->node, &e);
    if (busy != 0) {
        send_error(w, busy, e.msg);
        return;
    }
    w->wreq.run = run_write;
    w->wreq.done = write_done;
    w->wreq.arg = w;
    w->state = W_WAIT;
    int rc = writer_submit(&w->api->node->eng.writer, &w->wreq);
    if (rc != 0) {
        send_error(w, rc, err_msg(&w->wreq.err, rc));
    }
}

/* ---- reads ---- */

/* Answers a query from this node's replica, in an arena of its own (an
 * answer can be larger than a context's arena). */
static int replica_query(struct node *n, MDB_txn *t, const Appeal__QueryRequest *q,
                         struct arena **qa, Appeal__QueryResult **out, struct errbuf *e) {
    int rc = query_check(q, e);
    if (rc != 0) {
        return rc;
    }
    *qa = malloc(sizeof **qa);
    uint32_t groups = q->groups_max ? q->groups_max : QUERY_GROUPS_DEFAULT;
    if (*qa == NULL || arena_init(*qa, query_arena_bytes(groups)) != 0) {
        free(*qa);
        *qa = NULL;
        return APL_ENOMEM;
    }
    rc = query_run(&n->eng.store, t, q, NULL, node_today(n), *qa, out, e);
    if (rc == 0) {
        rc = survey_sources_replica(&n->eng, n->repl, t, *out, *qa);
    }
    return rc;
}

/* The node's metrics, as Prometheus text, into the answer. */
static int read_metrics(struct node *n, struct arena *a, Appeal__Response *resp, struct errbuf *e) {
    char *text = NULL;
    size_t len = 0;
    int rc = prom_render(n, &text, &len);
    if (rc == 0) {
        resp->metrics_text = arena_strdup(a, text);
        rc = resp->metrics_text != NULL ? 0 : err_set(e, APL_ETOOBIG, "metrics too large");
    }
    free(text);
    resp->result_case = APPEAL__RESPONSE__RESULT_METRICS_TEXT;
    return rc;
}

/* The notifications this node holds of the appeal shown, into `v`. */
static int show_notifications(struct node *n, MDB_txn *t, const char *number, struct arena *a,
                              Appeal__AppealView *v) {
    bool more;
    return outbox_list(&n->eng.store, t, number, false, a, &v->notifications, &v->n_notifications,
                       &more);
}

/* `appealctl notifications`: this node's outbox, or its failed part. */
static int list_notifications(struct node *n, MDB_txn *t, const Appeal__NotificationsRequest *q,
                              struct arena *a, Appeal__NotificationList **out) {
    Appeal__NotificationList *l = arena_new(a, sizeof *l);
    if (l == NULL) {
        return APL_ENOMEM;
    }
    appeal__notification_list__init(l);
    *out = l;
    bool more;
    int rc = outbox_list(&n->eng.store, t, q->number[0] ? q->number : NULL, q->failed, a, &l->rows,
                         &l->n_rows, &more);
    l->more = more;
    return rc;
}

/* Runs read request w->req in `t` into `resp`; a live query's answer may
 * need an arena of its own (`*qa`, the caller's to free). */
static int read_request(struct api_work *w, MDB_txn *t, Appeal__Response *resp, struct arena **qa,
                        struct errbuf *e) {
    struct node *n = w->api->node;
    int rc;
    switch (w->req->op_case) {
    case APPEAL__REQUEST__OP_SHOW:
        rc = view_appeal(n, t, w->req->show->number, auth_reads_personal(&w->who), &w->arena,
                         &resp->appeal, e);
        resp->result_case = APPEAL__RESPONSE__RESULT_APPEAL;
        return rc != 0 ? rc
                       : show_notifications(n, t, w->req->show->number, &w->arena, resp->appeal);
    case APPEAL__REQUEST__OP_NOTIFICATIONS:
        resp->result_case = APPEAL__RESPONSE__RESULT_NOTIFICATIONS;
        return list_notifications(n, t, w->req->notifications, &w->arena, &resp->notifications);
    case APPEAL__REQUEST__OP_LIST:
        resp->result_case = APPEAL__RESPONSE__RESULT_LIST;
        return view_list(n, t, w->req->list, &w->arena, &resp->list, e);
    case APPEAL__REQUEST__OP_METRICS:
        return read_metrics(n, &w->arena, resp, e);
    case APPEAL__REQUEST__OP_CLUSTER_STATUS:
        resp->result_case = APPEAL__RESPONSE__RESULT_CLUSTER;
        return n->repl == NULL
                   ? err_set(e, APL_ENOTFOUND, "this node runs alone: start it with --cluster FILE")
                   : repl_status(n->repl, t, &w->arena, &resp->cluster);
    case APPEAL__REQUEST__OP_QUERY:
        resp->result_case = APPEAL__RESPONSE__RESULT_QUERY;
        return replica_query(n, t, w->req->query, qa, &resp->query, e);
    case APPEAL__REQUEST__OP_GRANTS:
        resp->result_case = APPEAL__RESPONSE__RESULT_GRANTS;
        return grant_list(&n->eng.store, t, n->eng.self_idx,
                          w->req->grants->mine ? w->who.pk : NULL, &w->arena, &resp->grants);
    case APPEAL__REQUEST__OP_OVERDUE:
        resp->result_case = APPEAL__RESPONSE__RESULT_OVERDUE;
        return view_overdue_list(n, t, w->req->overdue, &w->arena, &resp->overdue, e);
    default:
        resp->result_case = APPEAL__RESPONSE__RESULT_INFO;
        return view_info(n, t, &w->arena, &resp->info);
    }
}

static void answer_read(struct api_work *w) {
    struct node *n = w->api->node;
    MDB_txn *t;
    struct errbuf e;
    err_clear(&e);
    struct arena *qa = NULL;
    int rc = store_rd_begin(&n->eng.store, &t);
    if (rc != 0) {
        send_error(w, rc, "cannot read the database");
        return;
    }
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    rc = read_request(w, t, &resp, &qa, &e);
    if (rc == 0 && protobuf_c_message_get_packed_size(&resp.base) > RESPONSE_BYTES_MAX) {
        rc = err_set(&e, APL_ETOOBIG, "the answer is too large; ask for a smaller page");
    }
    if (rc == 0) {
        send_response(w, &resp);
    } else {
        send_error(w, rc, err_msg(&e, rc));
    }
    store_rd_end(&n->eng.store, t);
    if (qa != NULL) {
        arena_fini(qa);
        free(qa);
    }
}

/* ---- decoding and dispatch ---- */

int api_decode(const uint8_t *data, size_t len, struct arena *a, Appeal__ClientRequest **outer,
               Appeal__Request **req, struct errbuf *e) {
    if (len > REQUEST_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "request of %zu bytes exceeds the limit of %d bytes", len,
                       REQUEST_BYTES_MAX);
    }
    Appeal__ClientRequest *cr = (Appeal__ClientRequest *)pb_unpack(
        &appeal__client_request__descriptor, data, len, a, REQUEST_REPEATED_MAX, e);
    if (cr == NULL) {
        return e->code ? e->code : APL_EINVAL;
    }
    Appeal__Request *q =
        (Appeal__Request *)pb_unpack(&appeal__request__descriptor, cr->request.data,
                                     cr->request.len, a, REQUEST_REPEATED_MAX, e);
    if (q == NULL) {
        return e->code ? e->code : APL_EINVAL;
    }
    if (q->version != 1) {
        return err_set(e, APL_EINVAL, "unsupported protocol version %u (this node speaks 1)",
                       q->version);
    }
    if (q->op_case == APPEAL__REQUEST__OP__NOT_SET) {
        return err_set(e, APL_EINVAL, "request names no operation this node knows");
    }
    *outer = cr;
    *req = q;
    return 0;
}

/* Who sent the request, and may they? */
static int authorize(struct api_work *w, const Appeal__ClientRequest *cr, struct errbuf *e) {
    struct node *n = w->api->node;
    MDB_txn *t;
    int rc = store_rd_begin(&n->eng.store, &t);
    if (rc != 0) {
        return err_set(e, rc, "cannot read the grants");
    }
    if (cr->session.len > 0 || cr->mac.len > 0 || cr->counter != 0) {
        rc = auth_session_request(&w->api->auth, &w->api->sessions, &n->eng.store, t,
                                  n->eng.self_idx, cr, w->req, (uint32_t)nng_pipe_id(w->pipe),
                                  (int64_t)(util_mono_ns() / 1000000), &w->who, e);
    } else {
        rc = auth_request(&w->api->auth, &n->eng.store, t, n->eng.self_idx, cr, w->req,
                          clock_system_ms(), &w->who, e);
    }
    store_rd_end(&n->eng.store, t);
    return rc != 0 ? rc : auth_allow(&w->who, w->req, e);
}

/* The context of an answered live query becomes a spare again. */
static void live_release(struct api_work *w) {
    struct live_queue *lq = &w->api->live;
    pthread_mutex_lock(&lq->mu);
    w->live = false;
    w->state = W_INIT;
    lq->spares[lq->n_spares++] = w;
    pthread_cond_broadcast(&lq->idle);
    pthread_mutex_unlock(&lq->mu);
}

static void live_answer(struct api *a, struct api_work *w) {
    struct errbuf e;
    err_clear(&e);
    const Appeal__QueryRequest *q = w->req->query;
    uint32_t groups = q->groups_max ? q->groups_max : QUERY_GROUPS_DEFAULT;
    struct arena qa;
    int rc = arena_init(&qa, 2 * query_arena_bytes(groups) + (4u << 20));
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    resp.result_case = APPEAL__RESPONSE__RESULT_QUERY;
    if (rc == 0) {
        rc = survey_run(a->node->survey, q, &qa, &resp.query, &e);
    }
    if (rc == 0) {
        send_response(w, &resp);
    } else {
        send_error(w, rc, err_msg(&e, rc));
    }
    if (qa.base != NULL) {
        arena_fini(&qa);
    }
}

static void *live_main(void *arg) {
    struct api *a = arg;
    struct live_queue *lq = &a->live;
    pthread_setname_np(pthread_self(), "live-query");
    for (;;) {
        pthread_mutex_lock(&lq->mu);
        while (lq->count == 0 && !lq->stopping) {
            pthread_cond_wait(&lq->cv, &lq->mu);
        }
        if (lq->count == 0) {
            pthread_mutex_unlock(&lq->mu);
            return NULL;
        }
        struct api_work *w = lq->items[lq->head];
        lq->head = (lq->head + 1) % LIVE_QUERIES_MAX;
        lq->count--;
        bool stopping = lq->stopping;
        pthread_mutex_unlock(&lq->mu);
        if (stopping) {
            send_error(w, APL_EUNAVAIL, "the node is shutting down: live query cancelled");
        } else {
            live_answer(a, w);
        }
    }
}

/* Live queries of one key, queued or running; called with live.mu held. */
static uint32_t live_of_key(const struct api *a, const struct principal *who) {
    uint32_t n = 0;
    for (size_t i = 0; i < a->started; i++) {
        const struct api_work *o = &a->works[i];
        n += o->live && memcmp(o->who.pk, who->pk, sizeof who->pk) == 0;
    }
    return n;
}

static void submit_live(struct api_work *w) {
    struct api *a = w->api;
    struct live_queue *lq = &a->live;
    if (a->node->survey == NULL) {
        send_error(w, APL_ENOTFOUND, "live queries need the federation: this node runs alone");
        return;
    }
    char why[200] = "";
    struct api_work *spare = NULL;
    pthread_mutex_lock(&lq->mu);
    if (lq->stopping) {
        snprintf(why, sizeof why, "the node is shutting down");
    } else if (live_of_key(a, &w->who) >= LIVE_QUERIES_PER_KEY_MAX) {
        snprintf(why, sizeof why,
                 "too many live queries for this key (at most %d at a time): wait for the answers",
                 LIVE_QUERIES_PER_KEY_MAX);
    } else if (lq->n_spares == 0) {
        snprintf(why, sizeof why,
                 "too many live queries on this node (%d queued or running): try again later, "
                 "or query the replica without --live",
                 LIVE_QUERIES_MAX);
    } else {
        spare = lq->spares[--lq->n_spares];
        w->live = true;
        w->state = W_WAIT;
        lq->items[(lq->head + lq->count) % LIVE_QUERIES_MAX] = w;
        lq->count++;
        pthread_cond_signal(&lq->cv);
    }
    pthread_mutex_unlock(&lq->mu);
    if (spare == NULL) {
        olog(OLOG_INFO, "live_query_refused", "key", w->who.kid, "reason", why, NULL);
        send_error(w, APL_EUNAVAIL, why);
        return;
    }
    olog(OLOG_INFO, "live_query_queued", "key", w->who.kid, NULL);
    recv_next(spare);
}

/* Public: what a client signs its requests for (Request.node). */
static void answer_hello(struct api_work *w) {
    struct node *n = w->api->node;
    Appeal__NodeInfo info = APPEAL__NODE_INFO__INIT;
    info.jurisdiction = n->eng.juris;
    info.origin.data = n->eng.keys.sign_pk;
    info.origin.len = KEY_PK_BYTES;
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    resp.result_case = APPEAL__RESPONSE__RESULT_INFO;
    resp.info = &info;
    send_response(w, &resp);
}

/* A session for the signed requester on this connection (session.h),
 * answered with the node's half of the key exchange, signed by its
 * origin key. */
static void answer_session_open(struct api_work *w) {
    struct node *n = w->api->node;
    const Appeal__SessionOpenRequest *so = w->req->session_open;
    struct errbuf e;
    err_clear(&e);
    if (so->client_kx.len != SESSION_KX_BYTES) {
        send_error(w, APL_EINVAL, "session_open needs a 32-byte X25519 client_kx");
        return;
    }
    uint8_t id[SESSION_ID_BYTES], node_kx[SESSION_KX_BYTES], sig[SIG_BYTES];
    uint8_t tr[SESSION_TRANSCRIPT_BYTES];
    int rc = session_open(&w->api->sessions, w->who.pk, (uint32_t)nng_pipe_id(w->pipe),
                          so->client_kx.data, (int64_t)(util_mono_ns() / 1000000), id, node_kx, &e);
    if (rc != 0) {
        olog(OLOG_INFO, "session_refused", "key", w->who.kid, "reason", err_msg(&e, rc), NULL);
        send_error(w, rc, err_msg(&e, rc));
        return;
    }
    client_session_transcript(id, so->client_kx.data, node_kx, w->who.pk, tr);
    crypto_sign_detached(sig, NULL, tr, sizeof tr, n->eng.keys.sign_sk);
    olog(OLOG_INFO, "session_opened", "key", w->who.kid, NULL);
    Appeal__SessionOpened out = APPEAL__SESSION_OPENED__INIT;
    out.id = (ProtobufCBinaryData){SESSION_ID_BYTES, id};
    out.node_kx = (ProtobufCBinaryData){SESSION_KX_BYTES, node_kx};
    out.ttl_s = (uint32_t)(n->session_ttl_ms / 1000);
    out.window = SESSION_WINDOW;
    out.sig = (ProtobufCBinaryData){SIG_BYTES, sig};
    Appeal__Response resp = APPEAL__RESPONSE__INIT;
    resp.result_case = APPEAL__RESPONSE__RESULT_SESSION;
    resp.session = &out;
    send_response(w, &resp);
}

static void handle(struct api_work *w, nng_msg *m) {
    struct errbuf e;
    err_clear(&e);
    w->pipe = nng_msg_get_pipe(m);
    w->has_pipe = true;
    conn_limit_busy(w->api->conns, w->pipe, +1);
    Appeal__ClientRequest *cr;
    int rc = api_decode(nng_msg_body(m), nng_msg_len(m), &w->arena, &cr, &w->req, &e);
    if (rc != 0) {
        nng_msg_free(m);
        w->req = NULL;
        olog(OLOG_INFO, "request_malformed", "reason", err_msg(&e, rc), NULL);
        send_error(w, rc, err_msg(&e, rc));
        return;
    }
    if (w->req->op_case == APPEAL__REQUEST__OP_HELLO) {
        nng_msg_free(m);
        answer_hello(w);
        return;
    }
    rc = authorize(w, cr, &e);
    nng_msg_free(m); /* decoding copied what it needs into the arena */
    if (rc != 0) {
        olog(OLOG_INFO, rc == APL_EAUTH ? "request_unauthenticated" : "request_forbidden", "op",
             op_name(w->req), "key", w->who.kid[0] ? w->who.kid : "-", "reason", err_msg(&e, rc),
             NULL);
        if (rc == APL_EAUTH || rc == APL_EFORBIDDEN) {
            atomic_fetch_add_explicit(rc == APL_EAUTH
                                          ? &w->api->node->eng.metrics.requests_unauthenticated
                                          : &w->api->node->eng.metrics.requests_forbidden,
                                      1, memory_order_relaxed);
        }
        send_error(w, rc, err_msg(&e, rc));
        return;
    }
    switch (w->req->op_case) {
    case APPEAL__REQUEST__OP_FILE:
    case APPEAL__REQUEST__OP_ACT:
    case APPEAL__REQUEST__OP_GRANT:
    case APPEAL__REQUEST__OP_REVOKE:
        submit_write(w);
        break;
    case APPEAL__REQUEST__OP_SESSION_OPEN:
        answer_session_open(w);
        break;
    case APPEAL__REQUEST__OP_QUERY:
        if (w->req->query->live) {
            submit_live(w);
        } else {
            answer_read(w);
        }
        break;
    default:
        answer_read(w);
        break;
    }
}

static void work_cb(void *arg) {
    struct api_work *w = arg;
    nng_msg *m;
    int rv;
    switch (w->state) {
    case W_INIT:
        recv_next(w);
        break;
    case W_RECV:
        rv = nng_aio_result(w->aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            return; /* shutting down */
        }
        if (rv != 0) {
            recv_next(w);
            return;
        }
        w->recv_ns = util_mono_ns();
        m = nng_aio_get_msg(w->aio);
        nng_aio_set_msg(w->aio, NULL); /* handle frees it */
        handle(w, m);
        break;
    case W_SEND:
        rv = nng_aio_result(w->aio);
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio)); /* a failed send leaves it ours */
            nng_aio_set_msg(w->aio, NULL);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return;
            }
        }
        recv_next(w);
        break;
    case W_WAIT:
        break; /* the writer owns it */
    }
}

/* A connection closed: its session ends with it. */
static void on_pipe_close(void *arg, uint32_t pipe) {
    session_drop_pipe(arg, pipe);
}

/* The REP socket and its contexts (the last LIVE_QUERIES_MAX are the live
 * queue's spares); an nng error code. */
static int open_contexts(struct api *a) {
    int rv = nng_rep0_open(&a->sock);
    if (rv == 0) {
        rv = nng_socket_set_size(a->sock, NNG_OPT_RECVMAXSZ, API_RECV_BYTES_MAX);
    }
    for (size_t i = 0; rv == 0 && i < API_CONTEXTS + LIVE_QUERIES_MAX; i++) {
        struct api_work *w = &a->works[i];
        w->api = a;
        if (arena_init(&w->arena, API_ARENA_BYTES) != 0) {
            return NNG_ENOMEM;
        }
        rv = nng_aio_alloc(&w->aio, work_cb, w);
        if (rv == 0) {
            rv = nng_ctx_open(&w->ctx, a->sock);
        }
        if (rv == 0) {
            a->started = i + 1;
        }
        if (rv == 0 && i >= API_CONTEXTS) {
            a->live.spares[a->live.n_spares++] = w;
        }
    }
    return rv;
}

int api_start(struct api **out, struct node *n, const char *url, struct errbuf *e) {
    struct api *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return APL_ENOMEM;
    }
    a->node = n;
    if (auth_init(&a->auth, n->auth_window_ms, AUTH_REPLAY_ENTRIES_MAX, clock_system_ms()) != 0) {
        free(a);
        return APL_ENOMEM;
    }
    if (session_init(&a->sessions, SESSIONS_MAX, SESSIONS_PER_KEY_MAX, n->session_ttl_ms) != 0) {
        auth_fini(&a->auth);
        free(a);
        return APL_ENOMEM;
    }
    memcpy(a->auth.admin_pk, n->admin_pk, KEY_PK_BYTES);
    snprintf(a->auth.juris, sizeof a->auth.juris, "%s", n->eng.juris);
    pthread_mutex_init(&a->live.mu, NULL);
    pthread_cond_init(&a->live.cv, NULL);
    pthread_cond_init(&a->live.idle, NULL);
    int rv = open_contexts(a);
    if (rv == 0) {
        rv = conn_limit_start(&a->conns, a->sock, "api", n->connections_max, n->idle_ms,
                              &n->eng.metrics.api_connections);
    }
    if (rv == 0) {
        conn_limit_on_close(a->conns, on_pipe_close, &a->sessions);
    }
    if (rv == 0) {
        /* tls+tcp://: the node's certificate; clients show none (they sign). */
        int rc =
            tls_listen(a->sock, url, n->tls, TLS_AUTH_NONE, "serve the API on", &a->listener, e);
        if (rc != 0) {
            api_stop(a);
            return rc;
        }
    }
    if (rv == 0) {
        rv = pthread_create(&a->live.thread, NULL, live_main, a) == 0 ? 0 : NNG_ENOMEM;
        a->live.started = rv == 0;
    }
    if (rv != 0) {
        err_set(e, APL_ENET, "cannot serve the API on %s: %s", url, nng_strerror(rv));
        api_stop(a);
        return APL_ENET;
    }
    for (size_t i = 0; i < API_CONTEXTS; i++) {
        work_cb(&a->works[i]);
    }
    olog(OLOG_INFO, "api_listening", "url", url, NULL);
    *out = a;
    return 0;
}

void api_stop_live(struct api *a) {
    if (a == NULL || !a->live.started) {
        return;
    }
    struct live_queue *lq = &a->live;
    pthread_mutex_lock(&lq->mu);
    lq->stopping = true;
    pthread_cond_signal(&lq->cv);
    pthread_mutex_unlock(&lq->mu);
    survey_cancel(a->node->survey);
    pthread_join(lq->thread, NULL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LIVE_STOP_WAIT_S;
    pthread_mutex_lock(&lq->mu);
    while (lq->n_spares < LIVE_QUERIES_MAX &&
           pthread_cond_timedwait(&lq->idle, &lq->mu, &until) == 0) {
    }
    lq->started = false;
    pthread_mutex_unlock(&lq->mu);
}

void api_stop(struct api *a) {
    if (a == NULL) {
        return;
    }
    api_stop_live(a);
    conn_limit_stop(a->conns);
    for (size_t i = 0; i < API_CONTEXTS + LIVE_QUERIES_MAX; i++) {
        if (a->works[i].aio != NULL) {
            nng_aio_stop(a->works[i].aio);
        }
    }
    for (size_t i = 0; i < a->started; i++) {
        nng_ctx_close(a->works[i].ctx);
    }
    nng_close(a->sock);
    for (size_t i = 0; i < API_CONTEXTS + LIVE_QUERIES_MAX; i++) {
        if (a->works[i].aio != NULL) {
            /* An answer whose send the stop refused (nng runs no callback
             * for an operation begun on a stopped aio) is still ours. */
            nng_msg *left = nng_aio_get_msg(a->works[i].aio);
            if (left != NULL) {
                nng_msg_free(left);
            }
            nng_aio_free(a->works[i].aio);
        }
        free(a->works[i].result.record);
        arena_fini(&a->works[i].arena);
    }
    conn_limit_free(a->conns);
    pthread_mutex_destroy(&a->live.mu);
    pthread_cond_destroy(&a->live.cv);
    pthread_cond_destroy(&a->live.idle);
    auth_fini(&a->auth);
    session_fini(&a->sessions);
    free(a);
}
