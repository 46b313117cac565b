/*
 * writer.h: the node's single writer thread and its group commit.
 *
 * Every change to the store goes through here. Callers queue a request
 * (struct wreq) and are called back when it is settled. The writer takes
 * up to WRITER_BATCH_MAX queued requests, runs each inside one write
 * transaction, commits once (fsync), and only then calls each request's
 * `done`. So a reply sent from `done` means the change is on disk, and
 * N concurrent clients cost one fsync, not N.
 *
 * A request's `run` must check everything before writing: if it returns a
 * request-level error (bad input, refused, invalid transition) it has
 * written nothing and the batch goes on. If it returns APL_EMAPFULL, the
 * writer aborts the transaction, grows the map and runs the batch again;
 * at the map's maximum every request gets APL_EFULL. Any other storage
 * error fails that request and the batch is run again without it.
 *
 * `done` runs on the writer thread: it must not block.
 */
#ifndef APPEAL_WRITER_H
#define APPEAL_WRITER_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
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
};

struct writer_hooks {
    void *node;
    /* Before each attempt at a batch, and after an aborted one: the node
     * saves and restores what it keeps in memory about its own log. */
    void (*begin)(void *node);
    void (*rollback)(void *node);
    /* After a successful commit, before the `done` calls. */
    void (*committed)(void *node);
    /* About once a second when idle, outside any transaction. */
    void (*tick)(void *node);
};

struct writer {
    struct store *s;
    struct writer_hooks hooks;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wreq *head, *tail;
    uint32_t queued;
    bool stopping;
    bool running;
    _Atomic uint64_t commits;
    _Atomic uint64_t committed_writes;
};

int writer_start(struct writer *w, struct store *s, const struct writer_hooks *hooks);
/* Queues `r`; APL_EUNAVAIL if stopping or the queue is full (then `done`
 * is not called). */
int writer_submit(struct writer *w, struct wreq *r);
/* Runs everything queued, then stops the thread. */
void writer_stop(struct writer *w);
/* Runs `r` synchronously in its own transaction from a thread where the
 * writer is not running (init, offline tools). */
int writer_run_now(struct store *s, const struct writer_hooks *hooks, struct wreq *r);

#endif
