#include "prom.h"
#include "notify.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "repl.h"
#include "sigahead.h"

struct buf {
    char *p;
    size_t len, cap;
    int rc;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...) {
    if (b->rc != 0) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->rc = APL_EINVAL;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->rc = APL_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v) {
    put(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

static void gauge(struct buf *b, const char *name, const char *help, double v) {
    put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void histogram(struct buf *b, const char *name, const char *help,
                      const struct histogram *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < HIST_BUCKETS) {
            put(b, "%s_bucket{le=\"%g\"} %llu\n", name, hist_bounds_s[i], (unsigned long long)cum);
        } else {
            put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        }
    }
    put(b, "%s_sum %.6f\n%s_count %llu\n", name,
        (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6, name,
        (unsigned long long)cum);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void node_metrics(struct buf *b, struct node *n) {
    struct metrics *m = &n->eng.metrics;
    put(b,
        "# HELP appeal_records_total Records stored, by source.\n"
        "# TYPE appeal_records_total counter\n"
        "appeal_records_total{source=\"own\"} %llu\n"
        "appeal_records_total{source=\"replicated\"} %llu\n",
        (unsigned long long)LOAD(m->own_records), (unsigned long long)LOAD(m->replicated_records));
    counter(b, "appeal_appeals_filed_total", "Appeals registered by this node.",
            LOAD(m->appeals_filed));
    counter(b, "appeal_requests_refused_total", "Client requests answered with an error.",
            LOAD(m->requests_refused));
    put(b,
        "# HELP appeal_requests_denied_total Client requests refused by authentication "
        "(unsigned, unknown or revoked key, bad signature, stale or replayed) or by role.\n"
        "# TYPE appeal_requests_denied_total counter\n"
        "appeal_requests_denied_total{reason=\"unauthenticated\"} %llu\n"
        "appeal_requests_denied_total{reason=\"forbidden\"} %llu\n",
        (unsigned long long)LOAD(m->requests_unauthenticated),
        (unsigned long long)LOAD(m->requests_forbidden));
    struct sigahead_stats sa;
    sigahead_stats(n->eng.keys.ahead, &sa);
    put(b,
        "# HELP appeal_records_signed_total Records this node signed, by whether the signature's "
        "nonce was made ahead on an idle core or the writer signed in full.\n"
        "# TYPE appeal_records_signed_total counter\n"
        "appeal_records_signed_total{nonce=\"ahead\"} %llu\n"
        "appeal_records_signed_total{nonce=\"inline\"} %llu\n",
        (unsigned long long)sa.used, (unsigned long long)sa.fallback);
    counter(b, "appeal_pull_batches_total", "Pull answers received and verified.", LOAD(m->pulls));
    counter(b, "appeal_push_batches_total", "Pushed batches applied.", LOAD(m->pushes));
    put(b, "# HELP appeal_refused_records_total Records refused from peers, by reason.\n"
           "# TYPE appeal_refused_records_total counter\n");
    static const char *const reasons[] = {"bad_chain", "bad_signature", "gap",  "unknown_origin",
                                          "malformed", "revoked_actor", "other"};
    const _Atomic uint64_t *vals[] = {&m->refused_bad_chain, &m->refused_bad_sig,
                                      &m->refused_gap,       &m->refused_unknown_origin,
                                      &m->refused_malformed, &m->refused_revoked_actor,
                                      &m->refused_other};
    for (int i = 0; i < 7; i++) {
        put(b, "appeal_refused_records_total{reason=\"%s\"} %llu\n", reasons[i],
            (unsigned long long)atomic_load_explicit(vals[i], memory_order_relaxed));
    }
    counter(b, "appeal_forks_detected_total", "Forks detected since start.", LOAD(m->forks));
    gauge(b, "appeal_api_connections", "Open client connections.",
          (double)LOAD(m->api_connections));
    gauge(b, "appeal_http_connections", "Open connections to the --http listener.",
          (double)LOAD(m->http_connections));
    histogram(b, "appeal_commit_duration_seconds", "Time to commit one write transaction.",
              &m->commit);
    histogram(b, "appeal_write_queue_seconds",
              "Per write request: queued for the writer until its batch started.", &m->write_queue);
    histogram(b, "appeal_write_run_seconds",
              "Per batch: from the transaction's start to the commit call.", &m->write_run);
    histogram(b, "appeal_write_durable_seconds",
              "Per batch: from its commit's return until it is durable (meta page synced).",
              &m->write_durable);
    histogram(b, "appeal_write_answer_seconds",
              "Per write request: from durable until its answer was handed to nng.",
              &m->write_answer);
    histogram(b, "appeal_api_write_seconds",
              "Per client write: from receipt of the request to the answer sent.", &m->api_write);
    histogram(b, "appeal_replication_lag_seconds",
              "From the origin's signature to our store, per replicated record.",
              &m->replication_lag);
    uint64_t map = 0, used = 0;
    uint32_t readers = 0;
    store_usage(&n->eng.store, &map, &used, &readers);
    gauge(b, "appeal_lmdb_map_bytes", "Size of the LMDB map.", (double)map);
    gauge(b, "appeal_lmdb_used_bytes", "Bytes of the LMDB map in use.", (double)used);
    gauge(b, "appeal_lmdb_map_max_bytes", "Largest size the map may grow to.",
          (double)n->eng.store.map_max_bytes);
    gauge(b, "appeal_lmdb_readers", "LMDB reader slots in use.", (double)readers);
    gauge(b, "appeal_writes_stopped",
          "1 after a failed sync of the store: the node writes nothing until restarted.",
          writer_failed(&n->eng.writer, NULL, 0) ? 1 : 0);
    counter(b, "appeal_ingest_postponed_total",
            "Replicated records not stored (yet): the map reached the room kept for the own "
            "log (--own-reserve).",
            LOAD(n->eng.metrics.ingest_postponed));
    counter(b, "appeal_burst_postponed_total",
            "Replicated records not stored (yet): their origin grew past max(its history, "
            "--origin-burst) within a minute.",
            LOAD(n->eng.metrics.burst_postponed));
    counter(b, "appeal_deliveries_total",
            "Deliveries this node sent over links it dialled and had acknowledged.",
            LOAD(n->eng.metrics.deliveries));
    counter(b, "appeal_records_delivered_total",
            "Records the dialled nodes stored from this node's deliveries.",
            LOAD(n->eng.metrics.records_delivered));
    counter(b, "appeal_records_delivered_in_total",
            "Records this node stored from deliveries by nodes that dial it.",
            LOAD(n->eng.metrics.records_delivered_in));
    counter(b, "appeal_wire_raw_bytes_total",
            "Bytes of the pull answers and deliveries this node sent compressed, before zstd.",
            LOAD(n->eng.metrics.wire_raw_bytes));
    counter(b, "appeal_wire_packed_bytes_total",
            "The same messages' bytes after zstd (what went on the wire, less framing).",
            LOAD(n->eng.metrics.wire_packed_bytes));
    counter(b, "appeal_unproven_claims_total",
            "Heads a peer claimed and did not back with records within "
            "CLAIM_UNBACKED_SESSIONS_MAX caught-up pulls (per peer and origin, counted once).",
            LOAD(n->eng.metrics.unproven_claims));
    gauge(b, "appeal_clock_refused_seconds",
          "An office: its clock minus its region's node's while off by more than "
          "--clock-skew-max (registration refused), else 0.",
          (double)atomic_load(&n->eng.clock_off_ms) / 1000.0);
    gauge(b, "appeal_own_reserve_reached",
          "1 while records from peers are postponed to keep room for the own log.",
          atomic_load(&n->eng.reserve_reached) ? 1 : 0);
    gauge(b, "appeal_writes_refused_full",
          "1 while writes are refused because the map is at its maximum (--map-max).",
          atomic_load(&n->eng.writer.full) ? 1 : 0);
    gauge(b, "appeal_log_head_seq", "Records in this node's own log.",
          (double)atomic_load(&n->eng.durable_head));
    struct alert *active = malloc(ALERTS_MAX * sizeof *active);
    uint32_t na = active != NULL ? alerts_snapshot(&n->alerts, active, ALERTS_MAX) : 0;
    gauge(b, "appeal_alerts_active", "Alerts raised and not cleared.", (double)na);
    put(b, "# HELP appeal_alert 1 for each active alert (docs/operations.md).\n"
           "# TYPE appeal_alert gauge\n");
    for (uint32_t i = 0; i < na; i++) {
        put(b, "appeal_alert{alert=\"%s\",subject=\"%s\"} 1\n", active[i].name, active[i].subject);
    }
    free(active);
}

static void cluster_metrics(struct buf *b, const Appeal__ClusterStatus *s) {
    gauge(b, "appeal_recovering", "1 while the node relearns its own log from peers.",
          s->recovering ? 1 : 0);
    put(b, "# HELP appeal_origin_head_seq Records held of each origin.\n"
           "# TYPE appeal_origin_head_seq gauge\n");
    for (size_t i = 0; i < s->n_origins; i++) {
        put(b, "appeal_origin_head_seq{origin=\"%s\"} %llu\n", s->origins[i]->jurisdiction,
            (unsigned long long)s->origins[i]->local_seq);
    }
    put(b, "# HELP appeal_origin_lag_records Records of each origin that a peer holds and we "
           "do not.\n# TYPE appeal_origin_lag_records gauge\n");
    for (size_t i = 0; i < s->n_origins; i++) {
        put(b, "appeal_origin_lag_records{origin=\"%s\"} %llu\n", s->origins[i]->jurisdiction,
            (unsigned long long)s->origins[i]->lag_records);
    }
    put(b, "# HELP appeal_origin_staleness_seconds Age of the newest record held of each "
           "origin (its clock).\n# TYPE appeal_origin_staleness_seconds gauge\n");
    for (size_t i = 0; i < s->n_origins; i++) {
        if (s->origins[i]->staleness_ms >= 0) {
            put(b, "appeal_origin_staleness_seconds{origin=\"%s\"} %.3f\n",
                s->origins[i]->jurisdiction, (double)s->origins[i]->staleness_ms / 1000.0);
        }
    }
    put(b, "# HELP appeal_origin_frozen 1 if the origin is frozen after a fork.\n"
           "# TYPE appeal_origin_frozen gauge\n");
    for (size_t i = 0; i < s->n_origins; i++) {
        put(b, "appeal_origin_frozen{origin=\"%s\"} %d\n", s->origins[i]->jurisdiction,
            s->origins[i]->frozen ? 1 : 0);
    }
    gauge(b, "appeal_forks", "Forks on record (evidence kept).", (double)s->n_forks);
    static const struct {
        const char *name, *help, *type;
    } per_peer[] = {
        {"appeal_peer_up", "1 if the last pull from the peer worked, recently.", "gauge"},
        {"appeal_peer_last_contact_age_seconds", "Since the peer last answered.", "gauge"},
        {"appeal_peer_errors_total", "Failed pulls from the peer.", "counter"},
        {"appeal_peer_records_in_total", "Records stored from the peer.", "counter"},
        {"appeal_peer_refused_records_total", "Records refused from the peer.", "counter"},
        {"appeal_peer_clock_skew_seconds", "The peer's clock minus ours.", "gauge"},
        {"appeal_peer_backoff_seconds", "Current backoff before the next pull.", "gauge"},
    };
    for (size_t k = 0; k < sizeof per_peer / sizeof per_peer[0]; k++) {
        put(b, "# HELP %s %s\n# TYPE %s %s\n", per_peer[k].name, per_peer[k].help, per_peer[k].name,
            per_peer[k].type);
        for (size_t i = 0; i < s->n_peers; i++) {
            const Appeal__PeerStatus *p = s->peers[i];
            double v[] = {p->reachable ? 1 : 0,
                          p->last_contact_ms ? (double)(s->now_ms - p->last_contact_ms) / 1000.0
                                             : -1,
                          (double)p->errors,
                          (double)p->records_in,
                          (double)p->refused_records,
                          (double)p->clock_skew_ms / 1000.0,
                          (double)p->backoff_ms / 1000.0};
            put(b, "%s{peer=\"%s\"} %.17g\n", per_peer[k].name, p->jurisdiction, v[k]);
        }
    }
}

static void visit_cluster(void *arg, const Appeal__ClusterStatus *s) {
    cluster_metrics(arg, s);
}

/* Notifications (docs/notifications.md): only with --notify. */
static void notify_metrics(struct buf *b, struct node *n) {
    if (n->notify == NULL) {
        return;
    }
    struct notify_stats st;
    notify_stats(n->notify, &st);
    gauge(b, "appeal_notifications_queued", "Notifications not yet delivered nor given up.",
          (double)st.queued);
    counter(b, "appeal_notifications_sent_total", "Notifications a gateway took, since start.",
            st.sent);
    counter(b, "appeal_notifications_failed_total",
            "Notifications given up after attempts_max attempts, since start.", st.failed);
    counter(b, "appeal_notifications_retried_total", "Failed attempts retried later, since start.",
            st.retried);
    gauge(b, "appeal_notifications_oldest_undelivered_seconds",
          "Age of the oldest notification not yet delivered (0: none).",
          (double)st.oldest_age_ms / 1000.0);
}

int prom_render(struct node *n, char **out, size_t *len) {
    struct buf b = {malloc(16384), 0, 16384, 0};
    if (b.p == NULL) {
        return APL_ENOMEM;
    }
    node_metrics(&b, n);
    notify_metrics(&b, n);
    repl_status_visit(n->repl, visit_cluster, &b);
    if (b.rc != 0) {
        free(b.p);
        return b.rc;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
