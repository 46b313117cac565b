/*
 * writer.h: the node's single writer thread, its group commit, and the
 * completion thread that makes commits durable before anyone hears of them.
 *
 * Every change to the store goes through here. Callers queue a request
 * (struct wreq) and are called back when it is settled. The writer takes
 * up to WRITER_BATCH_MAX queued requests, runs each inside one write
 * transaction and commits once.
 *
 * Durability costs one fsync per batch, not two: the store runs with
 * MDB_NOMETASYNC, so a commit fsyncs its data pages and then writes (but
 * does not sync) the meta page that points to them; the database stays
 * consistent whatever happens, and the meta page becomes durable with the
 * next commit's fsync of the same file. So batch k is durable once batch
 * k+1 has committed; when nothing follows, the writer syncs at once. Only
 * a durable batch goes to the completion thread, which calls the `durable`
 * hook (replication publishes there) and each request's `done`. A reply
 * sent from `done` therefore means the change is on disk, and N concurrent
 * clients cost about one fsync.
 *
 * A request's `run` must check everything before writing: if it returns a
 * request-level error (bad input, refused, invalid transition) it has
 * written nothing and the batch goes on. If it returns APL_EMAPFULL, the
 * writer aborts the transaction, grows the map and runs the batch again;
 * at the map's maximum every request gets APL_EFULL. Any other storage
 * error fails that request and the batch is run again without it.
 *
 * `done` runs on the completion thread and must not block.
 *
 * A failed sync (or a failed commit, whose fsync may be what failed) stops
 * the writer for good: after one failed fsync the kernel may have dropped
 * the dirty pages and a retry may report success, so nothing this process
 * commits afterwards could be trusted. The batch whose durability is
 * unknown is answered APL_ESTORAGE ("may or may not be durable"), never
 * published (the `durable` hook is not called for it), and every later
 * request is refused with APL_ESTORAGE without running. The operator
 * restarts the node: LMDB re-opens at the last meta page on disk.
 */
#ifndef APPEAL_WRITER_H
#define APPEAL_WRITER_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bounds.h"
#include "err.h"
#include "metrics.h"
#include "store.h"

struct wreq;
typedef int (*wreq_run_fn)(void *node, MDB_txn *t, struct wreq *r);
typedef void (*wreq_done_fn)(struct wreq *r);

struct wreq {
    wreq_run_fn run;
    wreq_done_fn done;
    void *arg; /* the submitter's */
    int rc;
    struct errbuf err;
    struct wreq *next;
    uint64_t submitted_ns; /* util_mono_ns() at writer_submit */
};

struct writer_hooks {
    void *node;
    /* Writer thread: before each attempt at a batch, and after an aborted
     * one, the node saves and restores what it keeps in memory about its
     * own log; after a commit it notes what changed. */
    void (*begin)(void *node);
    void (*rollback)(void *node);
    /* Writer thread, inside the batch's transaction, just before its
     * commit: the node writes what it summed in memory. An error aborts
     * the batch like a storage error. */
    int (*precommit)(void *node, MDB_txn *t);
    /* Returns a mark of what the commit contains (the node's log head). */
    uint64_t (*committed)(void *node);
    /* Completion thread: everything up to `mark` is on disk. */
    void (*durable)(void *node, uint64_t mark);
    /* Writer thread, about once a second, outside any transaction. */
    void (*tick)(void *node);
    /* Writer thread, when nothing is queued and every commit is durable:
     * one bounded piece of background work (the fold behind the log) in
     * its own transaction; true if it did some (the writer then looks at
     * its queue again instead of waiting). NULL: none. */
    bool (*idle)(void *node);
    /* Optional: the stage histograms (queue, run, durable wait, answer). */
    struct metrics *metrics;
};

enum {
    WRITER_PIPELINE_MAX = 8,  /* settled batches waiting for their replies */
    WRITER_REASON_BYTES = 96, /* why the writer stopped */
};

struct writer_batch {
    struct wreq *reqs[WRITER_BATCH_MAX];
    size_t n;
    bool committed;
    uint64_t mark;
    uint64_t committed_ns; /* when its commit returned */
    uint64_t durable_ns;   /* when it was known durable */
};

struct writer {
    struct store *s;
    struct writer_hooks hooks;
    pthread_t thread, completer;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work for the writer */
    pthread_cond_t done_cv; /* work for the completer, or room in the pipeline */
    struct wreq *head, *tail;
    uint32_t queued;
    struct writer_batch pipe[WRITER_PIPELINE_MAX];
    uint32_t pipe_head, pipe_count;
    struct writer_batch pending; /* committed, durable with the next fsync */
    bool stopping;               /* under mu */
    bool writer_done;            /* under mu */
    bool running;                /* under mu; set and cleared by the thread that starts and stops */
    _Atomic bool failed;         /* writes stopped: see writer_fail */
    char failed_reason[WRITER_REASON_BYTES]; /* under mu */
    _Atomic bool full;                       /* the last batch was refused at the map's maximum */
    _Atomic uint64_t commits;
    _Atomic uint64_t committed_writes;
    _Atomic uint64_t syncs;
    _Atomic uint64_t commit_ns_total; /* time in mdb_txn_commit */
    struct histogram *commit_hist;    /* optional: every commit's duration */
    _Atomic uint64_t sync_ns_total;   /* time in explicit syncs */
};

int writer_start(struct writer *w, struct store *s, const struct writer_hooks *hooks);
/* Queues `r`; APL_EUNAVAIL if stopping or the queue is full (then `done`
 * is not called). */
int writer_submit(struct writer *w, struct wreq *r);
/* Requests queued and not yet taken by the writer. Any thread. */
uint32_t writer_queued(struct writer *w);
/* Stops every further write (a sync failed): logs an alert line once.
 * Any thread. */
void writer_fail(struct writer *w, const char *why);
/* True once writes stopped; copies why into `reason` (may be NULL). */
bool writer_failed(struct writer *w, char *reason, size_t cap);
/* Runs everything queued, completes it, then stops both threads. */
void writer_stop(struct writer *w);
/* Runs `r` in its own transaction, syncs, and completes it, on the
 * calling thread: for offline commands, and for the writer's own periodic
 * work between batches. */
int writer_run_now(struct store *s, const struct writer_hooks *hooks, struct wreq *r);

#endif
