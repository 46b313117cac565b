/*
 * metrics.h: the node's counters and histograms, rendered in the
 * Prometheus text exposition format (docs/operations.md lists them).
 *
 * Everything here is updated with relaxed atomics from whichever thread
 * does the work, and read without locks by the renderer: a scrape sees
 * each number as it was at some moment during the scrape.
 */
#ifndef APPEAL_METRICS_H
#define APPEAL_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Bucket upper bounds in seconds, shared by every histogram. */
enum { HIST_BUCKETS = 16 };
extern const double hist_bounds_s[HIST_BUCKETS];

struct histogram {
    _Atomic uint64_t buckets[HIST_BUCKETS + 1]; /* the last one is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

void hist_observe_us(struct histogram *h, uint64_t us);
/* The q-quantile (0..1) estimated from bucket counts, in seconds; 0 if
 * empty. Differences of two snapshots give a window's quantiles. */
double hist_quantile(const uint64_t *buckets, uint64_t count, double q);

struct metrics {
    _Atomic uint64_t own_records;        /* records this node signed */
    _Atomic uint64_t replicated_records; /* records stored from peers */
    _Atomic uint64_t appeals_filed;
    _Atomic uint64_t requests_refused; /* client requests answered with an error */
    _Atomic uint64_t requests_unauthenticated;
    _Atomic uint64_t requests_forbidden;
    _Atomic uint64_t pulls;                /* pull answers received */
    _Atomic uint64_t deliveries;           /* deliveries this node sent and had answered */
    _Atomic uint64_t records_delivered;    /* records of them the dialed nodes stored */
    _Atomic uint64_t records_delivered_in; /* records stored from deliveries to this node */
    _Atomic uint64_t wire_raw_bytes;    /* pull answers and deliveries sent packed: before zstd */
    _Atomic uint64_t wire_packed_bytes; /* ...and after */
    _Atomic uint64_t pushes;            /* push batches applied */
    _Atomic uint64_t refused_bad_chain, refused_bad_sig, refused_gap, refused_unknown_origin,
        refused_malformed, refused_revoked_actor, refused_other;
    _Atomic uint64_t forks;
    _Atomic uint64_t ingest_postponed; /* replicated records not stored: own reserve */
    _Atomic uint64_t burst_postponed;  /* replicated records not stored (yet): origin burst */
    _Atomic uint64_t unproven_claims;  /* peers' claimed heads never backed by records */
    _Atomic uint64_t api_connections;
    _Atomic uint64_t http_connections; /* --http (httpd) */
    struct histogram commit;           /* mdb_txn_commit, seconds */
    struct histogram replication_lag;  /* origin's clock at signing to our store */
    /* The stages of a write (docs/performance.md "Filing"): */
    struct histogram write_queue;   /* per request: queued until its batch starts */
    struct histogram write_run;     /* per batch: transaction begin to commit call */
    struct histogram write_durable; /* per batch: commit returned until durable */
    struct histogram write_answer;  /* per request: durable until its done() returned */
    struct histogram api_write;     /* per request: received until answer sent (API) */
};

#endif
