/*
 * engine.h: what a node is below its services: the store, the derived
 * state, the writer, the node's keys and its own log (`self`), and the
 * ingest of records replicated from peers. Replication and live queries
 * (cluster/) work on the engine; the service layer (node/service/) owns
 * one engine inside `struct node` and wires the writer's hooks.
 *
 * Threads and fields:
 *   - set before the writer starts, read-only after (any thread): juris,
 *     id_short, keys, clock, own_reserve_bytes; `store` is shared through
 *     LMDB's own transactions.
 *   - writer thread only: state, self, self_saved, ingest_txn_bytes,
 *     fold_more, fold_last, fold_last_bytes, fold_after_ns, fold_budget, unfolded_bytes,
 *     unfolded_saved
 *     (inside
 *     the writer's batches: its run functions and hooks). Except self.idx,
 *     this node's origin index: fixed once node_open has loaded it, and
 *     read by the API and Open311 threads for grant lookups (the rollback
 *     hook's copy of `self` rewrites it with the same value).
 *   - any thread, atomics: durable_head (written by the writer's completion
 *     thread), self_frozen (the writer publishes `self.frozen` after each
 *     commit), reserve_reached (written by ingest's submitter), metrics
 *     (relaxed counters).
 */
#ifndef APPEAL_ENGINE_H
#define APPEAL_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "clock.h"
#include "keys.h"
#include "metrics.h"
#include "pbdecode.h"
#include "repl.pb-c.h"
#include "state.h"
#include "store.h"
#include "writer.h"

enum {
    /* A replicated record's bytes in the map, over its envelope's: the log
     * row, derived rows and B-tree pages (measured about 3; kept above). */
    INGEST_BYTES_FACTOR = 4,
    /* Records the fold takes into one transaction between the writer's
     * batches: large enough that a derived page is rewritten for many
     * records, small enough that a filing queued behind it waits well
     * under a second. */
    FOLD_TXN_RECORDS_MAX = 20000,
    /* While no request comes between its steps, each step may double, up
     * to this (a filing arriving then waits for one step, about 1 s). */
    FOLD_TXN_RECORDS_IDLE_MAX = 80000,
    /* An ingest of at least this many records is a bulk catch-up (a full
     * pull answer is PULL_RECORDS_MAX, 50,000): the fold waits until no
     * such ingest came for FOLD_BULK_WAIT_MS, so that the log is caught up
     * first (queries report the lag meanwhile). Pushes and small pulls
     * are folded at once. */
    FOLD_BULK_RECORDS = 10000,
    FOLD_BULK_WAIT_MS = 1000,
};

struct engine {
    char juris[16];
    char id_short[KEY_SHORT_HEX + 1]; /* key id of the node, for logs */
    struct node_keys keys;
    struct clock clock;
    struct store store;
    struct state state;             /* writer thread only */
    struct origin_state self;       /* writer thread only */
    struct origin_state self_saved; /* writer thread only */
    /* self.idx, for the other threads (the API's and Open311's grant
     * reads): set when the node opens, read-only after; the writer's
     * rollback copies all of `self` back, so they must not read it there. */
    uint32_t self_idx;
    struct writer writer;
    /* This node's own log is on disk up to here: what peers may be served
     * (a record served before it is durable could be lost in a power cut
     * and signed again differently: a fork). */
    _Atomic uint64_t durable_head;
    /* self.frozen as of the last commit, for the other threads. */
    _Atomic bool self_frozen;
    /* Replicated ingest stops when the map's use would pass
     * map_max_bytes - own_reserve_bytes; the records wait (postponed). */
    uint64_t own_reserve_bytes;
    uint64_t ingest_txn_bytes;    /* writer thread: replicated bytes in this batch */
    _Atomic bool reserve_reached; /* the last replicated ingest was postponed */
    /* An office's clock against its region's node (a jurisdiction with a
     * '.' against the part before it, `clock_ref`, set at open and
     * read-only after): replication stores the difference it saw in the
     * region's last signed answer, our clock minus the region's, when it
     * exceeds the threshold, else 0. While it is non-zero the office signs
     * no timed action: appeal.c checks it inside the write. */
    _Atomic int64_t clock_off_ms;
    char clock_ref[16];       /* "" for a node that is not an office */
    bool fold_more;           /* writer thread: the last fold step left records */
    uint64_t fold_last;       /* writer thread: records the last fold step folded */
    uint64_t fold_last_bytes; /* writer thread: their log bytes */
    uint64_t fold_after_ns;   /* writer thread: no fold before (monotonic), bulk catch-up */
    uint64_t fold_budget;     /* writer thread: records of the next fold step (0: default) */
    /* Writer thread: log bytes of replicated records appended since this
     * process started and not yet folded (the own reserve counts what
     * their derived rows will take), and its value at the batch's start
     * (restored when a batch is rolled back). */
    uint64_t unfolded_bytes;
    uint64_t unfolded_saved;
    struct metrics metrics;
};

int64_t engine_now_ms(const struct engine *g);
/* Any thread: whether this node's own log was frozen (a fork) at the last
 * commit. */
bool engine_self_frozen(const struct engine *g);
/* Writer thread, after a commit (and at open): publishes self.frozen. */
void engine_publish_frozen(struct engine *g);

/* One batch of chain-verified runs for the writer (cluster/repl.c checks
 * the chains first). Submit `w` with writer_submit(); the writer calls
 * w.run, which appends what continues each origin's chain (the revoked
 * actor check, the own reserve and the caller's admission budget first),
 * keeps forks as evidence and freezes their origin. */
struct ingest {
    struct wreq w; /* w.run = engine_ingest_run; w.arg: the submitter's */
    struct engine *eng;
    Appeal__Run **runs;
    size_t n_runs;
    const char *via; /* the peer the runs came from, for fork evidence ("?") */
    /* The jurisdiction of an origin not seen before; NULL if unknown. */
    const char *(*juris_of)(void *arg, const uint8_t *origin);
    /* Whether one more record of another origin, whose head is `head`, may
     * be stored now (the burst budget); NULL: always. Writer thread. */
    bool (*admit)(void *arg, const uint8_t *origin, uint64_t head);
    void *policy_arg;
    struct arena *arena; /* decoding scratch (RECORD_ARENA_BYTES), the run's alone */
    bool fold_marked;    /* writer: the current run's origin has its fold mark */
    /* Results, set by the run. */
    uint64_t appended;
    uint64_t forks;
    uint64_t postponed; /* records left for later: the own reserve */
    uint64_t malformed; /* records refused from a malformed one on */
    uint64_t revoked;   /* records refused: actor revoked (origin frozen) */
    uint64_t burst;     /* records left for later: the admission budget */
    struct errbuf why;  /* what the first malformed record broke */
};
int engine_ingest_run(void *unused, MDB_txn *t, struct wreq *w);

/* Writer thread, with nothing queued (the writer's `idle` hook): folds up
 * to FOLD_TXN_RECORDS_MAX records that the ingest appended but did not
 * fold, in one transaction of its own (writer_run_now with `h`). True if
 * it did some, so that the writer looks at its queue before waiting. */
bool engine_fold_step(struct engine *g, const struct writer_hooks *h);

#endif
