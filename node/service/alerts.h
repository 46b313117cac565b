/*
 * alerts.h: conditions an operator must hear about (docs/operations.md).
 *
 * A monitor thread evaluates them every ALERT_EVAL_MS: a fork; repeated
 * refused batches from a peer; a peer silent longer than a threshold; an
 * origin staler than a threshold; the LMDB map above 80% of its maximum; a
 * peer's clock off ours by more than a threshold. An alert is logged once
 * when it starts (`level=alert event=alert_raised`) and once when it ends
 * (`event=alert_cleared`), and is exposed as `appeal_alert{alert,subject}`.
 */
#ifndef APPEAL_ALERTS_H
#define APPEAL_ALERTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct node;
struct buf_out;

enum {
    ALERT_EVAL_MS = 2000,
    ALERTS_MAX = 256,
    ALERT_REFUSALS_WINDOW = 6, /* evaluations looked back over */
    ALERT_REFUSALS_MIN = 3,    /* evaluations with refusals in that window */
};

struct alert_thresholds {
    int silent_s; /* a peer with no good pull for this long */
    int stale_s;  /* an origin whose newest record is this old */
    int skew_s;   /* a peer's clock this far off */
    int map_percent;
};

struct alert {
    char name[24];    /* fork, peer_refusing, peer_silent, origin_stale, map_full, clock_skew */
    char subject[16]; /* a jurisdiction, or the node's own */
    char detail[160];
    int64_t since_ms;
};

/* Threads: `active`, `n_active` and `stopping` under mu (the monitor
 * writes them, /metrics and /api/status copy them with alerts_snapshot);
 * refused_seen and refusal_bits are the monitor thread's; th and n are
 * set by alerts_start and read-only after. */
struct alerts {
    pthread_mutex_t mu;
    struct alert active[ALERTS_MAX];
    uint32_t n_active;
    struct alert_thresholds th;
    /* Per peer: the refused count at each of the last evaluations. */
    uint64_t refused_seen[256];
    uint8_t refusal_bits[256];
    pthread_t thread;
    bool started;
    bool stopping; /* under mu */
    pthread_cond_t cv;
    struct node *n;
};

int alerts_start(struct alerts *a, struct node *n, const struct alert_thresholds *th);
void alerts_stop(struct alerts *a);
/* Runs one evaluation: the monitor thread, every ALERT_EVAL_MS. */
void alerts_eval(struct alerts *a);
/* Copies the active alerts; returns how many. */
uint32_t alerts_snapshot(struct alerts *a, struct alert *out, uint32_t max);

#endif
