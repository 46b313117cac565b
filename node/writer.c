#include "writer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bounds.h"
#include "olog.h"
#include "util.h"

static bool storage_error(int rc) {
    return rc == APL_EMAPFULL || rc == APL_EDB || rc == APL_EIO || rc == APL_ECORRUPT ||
           rc == APL_ENOMEM;
}

enum batch_outcome { BATCH_DONE, BATCH_RETRY, BATCH_FAILED };

/* One attempt: run the live requests in one transaction and commit. */
static enum batch_outcome attempt(struct store *s, const struct writer_hooks *h,
                                  struct wreq **batch, size_t n, bool *live, int *fail_rc) {
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
    rc = store_commit(s, t);
    if (rc != 0) {
        if (h->rollback != NULL) {
            h->rollback(h->node);
        }
        *fail_rc = rc;
        return rc == APL_EMAPFULL ? BATCH_RETRY : BATCH_FAILED;
    }
    return BATCH_DONE;
}

static void run_batch(struct writer *w, struct store *s, const struct writer_hooks *h,
                      struct wreq **batch, size_t n) {
    bool live[WRITER_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        live[i] = true;
    }
    int fail_rc = 0;
    enum batch_outcome out = BATCH_FAILED;
    for (int tries = 0; tries <= WRITER_RETRIES_MAX + (int)n; tries++) {
        out = attempt(s, h, batch, n, live, &fail_rc);
        if (out != BATCH_RETRY) {
            break;
        }
        if (fail_rc == APL_EMAPFULL && (fail_rc = store_grow(s)) != 0) {
            out = BATCH_FAILED;
            break;
        }
        out = BATCH_FAILED;
    }
    if (out == BATCH_DONE) {
        uint64_t writes = 0;
        for (size_t i = 0; i < n; i++) {
            writes += live[i] && batch[i]->rc == 0;
        }
        if (w != NULL) {
            atomic_fetch_add(&w->commits, 1);
            atomic_fetch_add(&w->committed_writes, writes);
        }
        if (h->committed != NULL) {
            h->committed(h->node);
        }
    } else {
        int code = fail_rc == APL_EFULL || fail_rc == APL_EMAPFULL ? APL_EFULL : fail_rc;
        for (size_t i = 0; i < n; i++) {
            if (live[i]) {
                batch[i]->rc = code;
                err_set(&batch[i]->err, code,
                        code == APL_EFULL
                            ? "storage full: the database reached its maximum size; nothing "
                              "was stored"
                            : "storage error: %s; nothing was stored",
                        apl_strerror(code));
            }
        }
        char c[16];
        snprintf(c, sizeof c, "%zu", n);
        olog(OLOG_ERROR, "batch_failed", "requests", c, "error", apl_strerror(code), NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (!live[i] && batch[i]->rc == 0) {
            batch[i]->rc = batch[i]->err.code;
        }
        if (batch[i]->done != NULL) {
            batch[i]->done(batch[i]);
        }
    }
}

static void *writer_main(void *arg) {
    struct writer *w = arg;
    struct wreq *batch[WRITER_BATCH_MAX];
    uint64_t last_tick = util_mono_ns();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !w->stopping) {
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
        bool stop = w->stopping && n == 0;
        pthread_mutex_unlock(&w->mu);
        if (stop) {
            break;
        }
        if (n > 0) {
            run_batch(w, w->s, &w->hooks, batch, n);
        }
        uint64_t now = util_mono_ns();
        if (now - last_tick >= 1000000000u && w->hooks.tick != NULL) {
            last_tick = now;
            w->hooks.tick(w->hooks.node);
        }
    }
    return NULL;
}

int writer_start(struct writer *w, struct store *s, const struct writer_hooks *hooks) {
    memset(w, 0, sizeof *w);
    w->s = s;
    w->hooks = *hooks;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        return APL_ENOMEM;
    }
    w->running = true;
    return 0;
}

int writer_submit(struct writer *w, struct wreq *r) {
    r->next = NULL;
    r->rc = 0;
    err_clear(&r->err);
    pthread_mutex_lock(&w->mu);
    if (w->stopping || !w->running || w->queued >= WRITER_QUEUE_MAX) {
        bool busy = !w->stopping && w->running;
        pthread_mutex_unlock(&w->mu);
        return err_set(&r->err, APL_EUNAVAIL,
                       busy ? "the node is busy: too many writes waiting; retry"
                            : "the node is shutting down");
    }
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

void writer_stop(struct writer *w) {
    if (!w->running) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->running = false;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

int writer_run_now(struct store *s, const struct writer_hooks *hooks, struct wreq *r) {
    struct wreq *batch[1] = {r};
    run_batch(NULL, s, hooks, batch, 1);
    return r->rc;
}
