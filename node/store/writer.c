#include "writer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "assert.h"
#include "olog.h"
#include "util.h"

static bool storage_error(int rc) {
    return rc == APL_EMAPFULL || rc == APL_EDB || rc == APL_EIO || rc == APL_ECORRUPT ||
           rc == APL_ENOMEM;
}

enum batch_outcome { BATCH_DONE, BATCH_RETRY, BATCH_FAILED };

/* The answers after a failed sync. Neither says the change does not
 * exist: a record committed before the failure may be on disk (and is
 * served after the restart), or may be lost. */
static const char MAYBE_MSG[] =
    "storage_failed: the write may or may not be durable (a sync of the store failed); the "
    "node stopped writing: look it up again once its operator has restarted the node";
static const char STOPPED_MSG[] =
    "storage_failed: the node stopped writing after a failed sync of its store (%s); this "
    "request was not run; its operator must restart the node";

void writer_fail(struct writer *w, const char *why) {
    bool was = true;
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->failed)) {
        was = false;
        snprintf(w->failed_reason, sizeof w->failed_reason, "%s", why);
        atomic_store(&w->failed, true);
    }
    pthread_mutex_unlock(&w->mu);
    if (!was) {
        olog(OLOG_ALERT, "writes_stopped", "reason", why, "recovery",
             "restart the node: it re-opens and re-syncs the store", NULL);
    }
}

bool writer_failed(struct writer *w, char *reason, size_t cap) {
    if (!atomic_load(&w->failed)) {
        return false;
    }
    if (reason != NULL && cap > 0) {
        pthread_mutex_lock(&w->mu);
        snprintf(reason, cap, "%s", w->failed_reason);
        pthread_mutex_unlock(&w->mu);
    }
    return true;
}

/* One attempt: run the live requests in one transaction and commit. */
static enum batch_outcome attempt(struct writer *w, struct store *s, const struct writer_hooks *h,
                                  struct wreq **batch, size_t n, bool *live, int *fail_rc) {
    ASSERT(n > 0 && n <= WRITER_BATCH_MAX);
    uint64_t t_begin = util_mono_ns();
    if (h->begin != NULL) {
        h->begin(h->node);
    }
    MDB_txn *t;
    int rc = store_wr_begin(s, &t);
    if (rc != 0) {
        *fail_rc = rc;
        return BATCH_FAILED;
    }
    for (size_t i = 0; i < n; i++) {
        if (!live[i]) {
            continue;
        }
        ASSERT(batch[i]->run != NULL);
        err_clear(&batch[i]->err);
        rc = batch[i]->run(h->node, t, batch[i]);
        batch[i]->rc = rc;
        if (!storage_error(rc)) {
            continue;
        }
        store_abort(s, t);
        if (h->rollback != NULL) {
            h->rollback(h->node);
        }
        if (rc != APL_EMAPFULL) {
            /* This request poisons the batch: fail it alone, rerun the rest. */
            live[i] = false;
            err_set(&batch[i]->err, rc, "storage error: %s", apl_strerror(rc));
        }
        *fail_rc = rc;
        return BATCH_RETRY;
    }
    if (h->precommit != NULL && (rc = h->precommit(h->node, t)) != 0) {
        store_abort(s, t);
        if (h->rollback != NULL) {
            h->rollback(h->node);
        }
        *fail_rc = rc;
        return rc == APL_EMAPFULL ? BATCH_RETRY : BATCH_FAILED;
    }
    uint64_t t0 = util_mono_ns();
    if (h->metrics != NULL) {
        hist_observe_us(&h->metrics->write_run, (t0 - t_begin) / 1000);
    }
    rc = store_commit(s, t);
    if (w != NULL) {
        uint64_t ns = util_mono_ns() - t0;
        atomic_fetch_add(&w->commit_ns_total, ns);
        if (w->commit_hist != NULL) {
            hist_observe_us(w->commit_hist, ns / 1000);
        }
    }
    if (rc != 0) {
        if (h->rollback != NULL) {
            h->rollback(h->node);
        }
        if (rc != APL_EMAPFULL && w != NULL) {
            /* The commit's fsync (or its writes) failed: the meta page of
             * the batch before is not known to be on disk either. */
            writer_fail(w, "a commit of the store failed");
        }
        *fail_rc = rc;
        return rc == APL_EMAPFULL ? BATCH_RETRY : BATCH_FAILED;
    }
    return BATCH_DONE;
}

/* Runs a batch to its end; returns true if it committed. Every request
 * leaves with rc and err set. */
static bool run_batch(struct writer *w, struct store *s, const struct writer_hooks *h,
                      struct wreq **batch, size_t n) {
    ASSERT(n > 0 && n <= WRITER_BATCH_MAX);
    bool live[WRITER_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        live[i] = true;
    }
    int fail_rc = 0;
    enum batch_outcome out = BATCH_FAILED;
    for (int tries = 0; tries <= WRITER_RETRIES_MAX + (int)n; tries++) {
        out = attempt(w, s, h, batch, n, live, &fail_rc);
        if (out != BATCH_RETRY) {
            break;
        }
        if (fail_rc == APL_EMAPFULL && (fail_rc = store_grow(s)) != 0) {
            out = BATCH_FAILED;
            break;
        }
        out = BATCH_FAILED;
    }
    ASSERT(out == BATCH_DONE || out == BATCH_FAILED);
    if (out == BATCH_DONE) {
        uint64_t writes = 0;
        for (size_t i = 0; i < n; i++) {
            writes += live[i] && batch[i]->rc == 0;
        }
        if (w != NULL) {
            atomic_store(&w->full, false);
            atomic_fetch_add(&w->commits, 1);
            atomic_fetch_add(&w->committed_writes, writes);
        }
    } else {
        int code = fail_rc == APL_EFULL || fail_rc == APL_EMAPFULL ? APL_EFULL : fail_rc;
        bool stopped = w != NULL && atomic_load(&w->failed);
        for (size_t i = 0; i < n; i++) {
            if (live[i] && stopped) {
                batch[i]->rc = err_set(&batch[i]->err, APL_ESTORAGE, "%s", MAYBE_MSG);
            } else if (live[i]) {
                batch[i]->rc = code;
                err_set(&batch[i]->err, code,
                        code == APL_EFULL
                            ? "storage full: the database reached its maximum size; nothing "
                              "was stored"
                            : "storage error: %s; nothing was stored",
                        apl_strerror(code));
            }
        }
        if (w != NULL && code == APL_EFULL) {
            atomic_store(&w->full, true); /* until a commit fits again */
        }
        char c[16];
        snprintf(c, sizeof c, "%zu", n);
        olog(OLOG_ERROR, "batch_failed", "requests", c, "error", apl_strerror(code), NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (!live[i] && batch[i]->rc == 0) {
            batch[i]->rc = batch[i]->err.code;
        }
    }
    return out == BATCH_DONE;
}

/* The fsync that makes every commit so far durable. */
static int sync_all(struct writer *w, struct store *s) {
    uint64_t t0 = util_mono_ns();
    int rc = store_sync(s);
    if (w != NULL) {
        atomic_fetch_add(&w->syncs, 1);
        atomic_fetch_add(&w->sync_ns_total, util_mono_ns() - t0);
    }
    if (rc != 0) {
        olog(OLOG_ERROR, "sync_failed", "error", apl_strerror(rc), NULL);
        if (w != NULL) {
            /* A retried fsync may "succeed" after the kernel dropped the
             * dirty pages: never trust this store's page cache again. */
            writer_fail(w, "a sync of the store failed");
        }
        return APL_ESTORAGE;
    }
    return 0;
}

/* Answers a settled batch; a committed one whose sync failed is answered
 * storage_failed: neither "stored" nor "not stored". `answer` (optional)
 * gets each request's time from `since_ns` until its done() returned. */
static void complete(struct wreq *const *reqs, size_t n, bool committed, int sync_rc,
                     struct histogram *answer, uint64_t since_ns) {
    for (size_t i = 0; i < n; i++) {
        struct wreq *r = reqs[i];
        if (committed && sync_rc != 0 && r->rc == 0) {
            r->rc = err_set(&r->err, APL_ESTORAGE, "%s", MAYBE_MSG);
        }
        if (r->done != NULL) {
            r->done(r);
        }
        if (answer != NULL) {
            hist_observe_us(answer, (util_mono_ns() - since_ns) / 1000);
        }
    }
}

static void observe_durable(struct writer *w, struct writer_batch *b) {
    b->durable_ns = util_mono_ns();
    if (w->hooks.metrics != NULL) {
        hist_observe_us(&w->hooks.metrics->write_durable, (b->durable_ns - b->committed_ns) / 1000);
    }
}

static void *completer_main(void *arg) {
    struct writer *w = arg;
    pthread_setname_np(pthread_self(), "completer");
    struct histogram *ans = w->hooks.metrics != NULL ? &w->hooks.metrics->write_answer : NULL;
    struct writer_batch b;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->pipe_count == 0 && !w->writer_done) {
            pthread_cond_wait(&w->done_cv, &w->mu);
        }
        if (w->pipe_count == 0) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        b = w->pipe[w->pipe_head];
        ASSERT(b.n > 0 && b.n <= WRITER_BATCH_MAX);
        w->pipe_head = (w->pipe_head + 1) % WRITER_PIPELINE_MAX;
        w->pipe_count--;
        pthread_cond_broadcast(&w->done_cv); /* room in the pipeline */
        pthread_mutex_unlock(&w->mu);
        if (b.committed && w->hooks.durable != NULL) {
            w->hooks.durable(w->hooks.node, b.mark);
        }
        complete(b.reqs, b.n, b.committed, 0, ans, b.durable_ns);
    }
    return NULL;
}

/* Gives a settled batch to the completion thread (waits if it is behind). */
static void hand_over(struct writer *w, const struct writer_batch *b) {
    pthread_mutex_lock(&w->mu);
    while (w->pipe_count == WRITER_PIPELINE_MAX) {
        pthread_cond_wait(&w->done_cv, &w->mu);
    }
    ASSERT(w->pipe_count < WRITER_PIPELINE_MAX && b->n > 0 && b->n <= WRITER_BATCH_MAX);
    w->pipe[(w->pipe_head + w->pipe_count) % WRITER_PIPELINE_MAX] = *b;
    w->pipe_count++;
    pthread_cond_broadcast(&w->done_cv);
    pthread_mutex_unlock(&w->mu);
}

/* The pending batch is durable: by the commit that just followed it
 * (sync_rc 0 without a sync), or by an explicit sync. */
static void release_pending(struct writer *w, int sync_rc) {
    if (w->pending.n == 0) {
        return;
    }
    ASSERT(w->pending.committed); /* only a commit waits for the next one's fsync */
    observe_durable(w, &w->pending);
    if (sync_rc != 0) {
        complete(w->pending.reqs, w->pending.n, true, sync_rc, NULL, 0);
    } else {
        hand_over(w, &w->pending);
    }
    w->pending.n = 0;
}

static void settle(struct writer *w, struct wreq **batch, size_t n, bool committed) {
    ASSERT(n > 0 && n <= WRITER_BATCH_MAX);
    struct writer_batch b = {.n = n, .committed = committed};
    memcpy(b.reqs, batch, n * sizeof *batch);
    if (!committed) {
        if (atomic_load(&w->failed)) {
            release_pending(w, APL_ESTORAGE); /* its meta page was never synced */
        }
        b.durable_ns = util_mono_ns();
        hand_over(w, &b); /* nothing stored: nothing to wait for */
        return;
    }
    b.mark = w->hooks.committed != NULL ? w->hooks.committed(w->hooks.node) : 0;
    b.committed_ns = util_mono_ns();
    release_pending(w, 0); /* this commit's fsync covered the last meta page */
    ASSERT(w->pending.n == 0);
    w->pending = b;
}

/* After a failed sync nothing more is committed (a later commit would make
 * the unsynced records durable-looking and let replication publish them). */
static void refuse_stopped(struct writer *w, struct wreq **batch, size_t n) {
    char why[WRITER_REASON_BYTES];
    writer_failed(w, why, sizeof why);
    for (size_t i = 0; i < n; i++) {
        batch[i]->rc = err_set(&batch[i]->err, APL_ESTORAGE, STOPPED_MSG, why);
    }
    settle(w, batch, n, false);
}

static void observe_queue(struct writer *w, struct wreq *const *batch, size_t n) {
    if (w->hooks.metrics == NULL) {
        return;
    }
    uint64_t now = util_mono_ns();
    for (size_t i = 0; i < n; i++) {
        hist_observe_us(&w->hooks.metrics->write_queue, (now - batch[i]->submitted_ns) / 1000);
    }
}

static void *writer_main(void *arg) {
    struct writer *w = arg;
    pthread_setname_np(pthread_self(), "writer");
    struct wreq *batch[WRITER_BATCH_MAX];
    uint64_t last_tick = util_mono_ns();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (w->head == NULL && w->pending.n > 0) {
            /* Nothing follows the last commit to carry its meta page to
             * disk: sync now rather than keep its clients waiting. */
            pthread_mutex_unlock(&w->mu);
            release_pending(w, sync_all(w, w->s));
            continue;
        }
        bool worked = false;
        if (w->head == NULL && !w->stopping && w->hooks.idle != NULL && !atomic_load(&w->failed)) {
            /* Queued requests go first: background work only between them. */
            pthread_mutex_unlock(&w->mu);
            worked = w->hooks.idle(w->hooks.node);
            pthread_mutex_lock(&w->mu);
        }
        while (w->head == NULL && !w->stopping && !worked) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) {
                break;
            }
        }
        size_t n = 0;
        while (w->head != NULL && n < WRITER_BATCH_MAX) {
            batch[n++] = w->head;
            w->head = w->head->next;
            w->queued--;
        }
        if (w->head == NULL) {
            w->tail = NULL;
        }
        ASSERT(w->head != NULL || w->queued == 0);
        bool stop = w->stopping && n == 0;
        pthread_mutex_unlock(&w->mu);
        observe_queue(w, batch, n);
        if (stop) {
            break;
        }
        if (n > 0 && atomic_load(&w->failed)) {
            refuse_stopped(w, batch, n);
        } else if (n > 0) {
            settle(w, batch, n, run_batch(w, w->s, &w->hooks, batch, n));
        }
        uint64_t now = util_mono_ns();
        /* About once a second (the wait above ends after about a second). */
        if (now - last_tick >= 900000000u && w->hooks.tick != NULL && w->pending.n == 0 &&
            !atomic_load(&w->failed)) {
            last_tick = now;
            w->hooks.tick(w->hooks.node);
        }
    }
    release_pending(w, sync_all(w, w->s));
    pthread_mutex_lock(&w->mu);
    w->writer_done = true;
    pthread_cond_broadcast(&w->done_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int writer_start(struct writer *w, struct store *s, const struct writer_hooks *hooks) {
    memset(w, 0, sizeof *w);
    w->s = s;
    w->hooks = *hooks;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->done_cv, NULL);
    if (pthread_create(&w->completer, NULL, completer_main, w) != 0) {
        return APL_ENOMEM;
    }
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_lock(&w->mu);
        w->writer_done = true;
        pthread_cond_broadcast(&w->done_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->completer, NULL);
        return APL_ENOMEM;
    }
    w->running = true;
    return 0;
}

int writer_submit(struct writer *w, struct wreq *r) {
    r->next = NULL;
    r->submitted_ns = util_mono_ns();
    r->rc = 0;
    err_clear(&r->err);
    if (atomic_load(&w->failed)) {
        char why[WRITER_REASON_BYTES];
        writer_failed(w, why, sizeof why);
        return err_set(&r->err, APL_ESTORAGE, STOPPED_MSG, why);
    }
    pthread_mutex_lock(&w->mu);
    if (w->stopping || !w->running || w->queued >= WRITER_QUEUE_MAX) {
        bool busy = !w->stopping && w->running;
        pthread_mutex_unlock(&w->mu);
        return err_set(&r->err, APL_EUNAVAIL,
                       busy ? "the node is busy: too many writes waiting; retry"
                            : "the node is shutting down");
    }
    ASSERT((w->head == NULL) == (w->tail == NULL));
    if (w->tail != NULL) {
        w->tail->next = r;
    } else {
        w->head = r;
    }
    w->tail = r;
    w->queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

uint32_t writer_queued(struct writer *w) {
    pthread_mutex_lock(&w->mu);
    uint32_t n = w->queued;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void writer_stop(struct writer *w) {
    if (!w->running) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_join(w->completer, NULL);
    w->running = false;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->done_cv);
}

int writer_run_now(struct store *s, const struct writer_hooks *hooks, struct wreq *r) {
    struct wreq *batch[1] = {r};
    bool committed = run_batch(NULL, s, hooks, batch, 1);
    uint64_t mark = committed && hooks->committed != NULL ? hooks->committed(hooks->node) : 0;
    int rc = committed ? sync_all(NULL, s) : 0;
    if (committed && rc == 0 && hooks->durable != NULL) {
        hooks->durable(hooks->node, mark);
    }
    complete(batch, 1, committed, rc, NULL, 0);
    return r->rc;
}
