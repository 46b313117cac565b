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

/* ---- status ---- */

static int64_t now_ms(const struct repl *r) {
    return engine_now_ms(r->g);
}

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
        const struct origin_state *o = repl_held(l, p->marks[i].origin);
        m->local_seq = o ? o->head_seq : 0;
        m->peer_seq = repl_believed(p, p->marks[i].origin, p->marks[i].seq, m->local_seq);
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
                             ? repl_believed(p, pk, p->marks[k].seq, have)
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

/* How far the derived tables (queries) include what we hold of `o`. */
static void fold_status(struct repl *r, MDB_txn *t, const struct origin_state *o,
                        Appeal__OriginStatus *os) {
    os->folded_seq = os->local_seq;
    if (o != NULL && state_folded(&r->g->store, t, o->idx, o->head_seq, &os->folded_seq) != 0) {
        os->folded_seq = 0; /* unreadable: claim nothing folded */
    }
    os->fold_lag_records = os->local_seq > os->folded_seq ? os->local_seq - os->folded_seq : 0;
}

/* Our view of one origin of the cluster file. */
static Appeal__OriginStatus *origin_status(struct repl *r, MDB_txn *t,
                                           const struct cluster_node *cn, bool self,
                                           const struct origin_list *l, struct arena *a,
                                           int64_t now) {
    const struct origin_state *o = repl_held(l, cn->sign_pk);
    Appeal__OriginStatus *os = arena_new(a, sizeof *os);
    if (os == NULL) {
        return NULL;
    }
    appeal__origin_status__init(os);
    os->jurisdiction = (char *)cn->juris;
    os->origin.data = (uint8_t *)cn->sign_pk;
    os->origin.len = KEY_PK_BYTES;
    os->local_seq = o ? o->head_seq : 0;
    os->local_head_time_ms = o ? o->head_time_ms : 0;
    os->best_known_seq = best_known(r, cn->sign_pk, os->local_seq);
    if (self || os->best_known_seq < os->local_seq) {
        os->best_known_seq = os->local_seq; /* what we hold is known too */
    }
    os->lag_records = os->best_known_seq > os->local_seq ? os->best_known_seq - os->local_seq : 0;
    fold_status(r, t, o, os);
    /* A head from the future (another node's clock ahead of ours) is
     * as fresh as can be: zero, not negative. */
    os->staleness_ms =
        o && o->head_time_ms ? (now > o->head_time_ms ? now - o->head_time_ms : 0) : -1;
    os->frozen = o ? o->frozen : false;
    if (o != NULL && o->head_seq > 0) {
        os->head_hash.data = arena_new(a, HASH_BYTES);
        if (os->head_hash.data == NULL) {
            return NULL;
        }
        memcpy(os->head_hash.data, o->head_hash, HASH_BYTES);
        os->head_hash.len = HASH_BYTES;
    }
    os->frozen_reason = o ? arena_strdup(a, o->frozen_reason) : "";
    return os;
}

/* The nodes that dial us and that we do not dial (offices behind NAT), as
 * their last messages showed them; and this node's own clock refusal. */
static int dialers(struct repl *r, struct arena *a, Appeal__ClusterStatus *s, uint32_t n_nodes) {
    s->clock_refused_ms = atomic_load(&r->g->clock_off_ms);
    s->clock_ref = r->g->clock_ref;
    s->dialers = arena_new(a, (n_nodes + 1) * sizeof *s->dialers);
    if (s->dialers == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < n_nodes; i++) {
        int64_t last = atomic_load(&r->seen[i].last_ms);
        bool dialled = false;
        for (uint32_t k = 0; k < s->n_peers && !dialled; k++) {
            dialled = strcmp(s->peers[k]->jurisdiction, r->c->nodes[i].juris) == 0;
        }
        if (last == 0 || dialled) {
            continue;
        }
        Appeal__DialerStatus *d = arena_new(a, sizeof *d);
        if (d == NULL) {
            return APL_ENOMEM;
        }
        appeal__dialer_status__init(d);
        d->jurisdiction = (char *)r->c->nodes[i].juris;
        d->last_contact_ms = last;
        d->clock_skew_ms = atomic_load(&r->seen[i].skew_ms);
        d->clock_refused =
            d->clock_skew_ms > r->clock_skew_max_ms || d->clock_skew_ms < -r->clock_skew_max_ms;
        s->dialers[s->n_dialers++] = d;
    }
    return 0;
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
    int rc = repl_list_origins(r, t, l);
    if (rc != 0) {
        return rc;
    }
    /* Both may grow meanwhile (a reload): the arrays are for these. */
    uint32_t n_peers = r->n_peers, n_nodes = r->c->count;
    s->peers = arena_new(a, (n_peers + 1) * sizeof *s->peers);
    s->origins = arena_new(a, (n_nodes + l->n + 1) * sizeof *s->origins);
    if (s->peers == NULL || s->origins == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < n_peers; i++) {
        Appeal__PeerStatus *ps = peer_status(r, &r->peers[i], l, a);
        if (ps == NULL) {
            return APL_ENOMEM;
        }
        s->peers[s->n_peers++] = ps;
    }
    for (uint32_t i = 0; i < n_nodes; i++) {
        Appeal__OriginStatus *os =
            origin_status(r, t, &r->c->nodes[i], (int)i == r->c->self, l, a, s->now_ms);
        if (os == NULL) {
            return APL_ENOMEM;
        }
        s->origins[s->n_origins++] = os;
    }
    /* The arrays were sized for these (arena bounds). */
    ASSERT(s->n_peers == n_peers && s->n_origins <= n_nodes + l->n);
    rc = dialers(r, a, s, n_nodes);
    if (rc == 0) {
        rc = fork_list(r, t, a, s);
    }
    *out = s;
    return rc;
}
