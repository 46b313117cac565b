#include "connlimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "err.h"
#include "olog.h"

enum { CONN_REAP_INTERVAL_MS_MAX = 1000 };

struct conn {
    nng_pipe pipe;
    int64_t last_ms; /* last request received or answered */
    uint32_t busy;   /* requests in progress */
};

struct conn_limit {
    const char *listener;
    uint32_t max;
    int64_t idle_ms;
    _Atomic uint64_t *gauge;
    void (*on_close)(void *arg, uint32_t pipe);
    void *on_close_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct conn *conns; /* max entries, the first `count` in use */
    uint32_t count;
    int64_t refused_logged_ms;
    uint64_t refused;
    bool stopping; /* under mu */
    bool started;
    pthread_t reaper;
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct conn *find(struct conn_limit *cl, nng_pipe p) {
    for (uint32_t i = 0; i < cl->count; i++) {
        if (nng_pipe_id(cl->conns[i].pipe) == nng_pipe_id(p)) {
            return &cl->conns[i];
        }
    }
    return NULL;
}

/* Runs on nng's threads. At ADD_PRE closing the pipe is allowed (the
 * socket never sees it); nothing here calls into the socket. */
static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg) {
    struct conn_limit *cl = arg;
    bool refuse = false, log = false;
    uint64_t refused = 0;
    pthread_mutex_lock(&cl->mu);
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        refuse = cl->count >= cl->max;
        if (!refuse) {
            cl->conns[cl->count++] = (struct conn){p, mono_ms(), 0};
        } else {
            refused = ++cl->refused;
            int64_t now = mono_ms();
            log = now - cl->refused_logged_ms >= 1000;
            cl->refused_logged_ms = log ? now : cl->refused_logged_ms;
        }
    } else {
        struct conn *c = find(cl, p);
        if (c != NULL) {
            *c = cl->conns[--cl->count];
        }
        refuse = c == NULL; /* not counted: not in the gauge either */
    }
    pthread_mutex_unlock(&cl->mu);
    if (ev == NNG_PIPE_EV_ADD_PRE && refuse) {
        nng_pipe_close(p);
    }
    if (log) {
        char max[16], total[24];
        snprintf(max, sizeof max, "%u", cl->max);
        snprintf(total, sizeof total, "%llu", (unsigned long long)refused);
        olog(OLOG_WARN, "connection_refused", "listener", cl->listener, "reason",
             "too many connections", "max", max, "refused_total", total, NULL);
    }
    if (ev != NNG_PIPE_EV_ADD_PRE && !refuse && cl->on_close != NULL) {
        cl->on_close(cl->on_close_arg, nng_pipe_id(p));
    }
    if (cl->gauge != NULL && !refuse) {
        if (ev == NNG_PIPE_EV_ADD_PRE) {
            atomic_fetch_add_explicit(cl->gauge, 1, memory_order_relaxed);
        } else {
            atomic_fetch_sub_explicit(cl->gauge, 1, memory_order_relaxed);
        }
    }
}

void conn_limit_busy(struct conn_limit *cl, nng_pipe p, int delta) {
    pthread_mutex_lock(&cl->mu);
    struct conn *c = find(cl, p);
    if (c != NULL) {
        c->last_ms = mono_ms();
        if (delta > 0) {
            c->busy++;
        } else if (delta < 0 && c->busy > 0) {
            c->busy--;
        }
    }
    pthread_mutex_unlock(&cl->mu);
}

/* Closes the connections idle past idle_ms; nng_pipe_close outside the
 * lock (the close calls pipe_event). */
static void *reaper_main(void *arg) {
    struct conn_limit *cl = arg;
    pthread_setname_np(pthread_self(), "conn-reaper");
    int64_t step =
        cl->idle_ms / 4 < CONN_REAP_INTERVAL_MS_MAX ? cl->idle_ms / 4 : CONN_REAP_INTERVAL_MS_MAX;
    nng_pipe *idle = malloc(cl->max * sizeof *idle);
    pthread_mutex_lock(&cl->mu);
    while (!cl->stopping && idle != NULL) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(step > 0 ? step : 1) * 1000000;
        until.tv_sec += until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&cl->cv, &cl->mu, &until);
        int64_t now = mono_ms();
        uint32_t n = 0;
        for (uint32_t i = 0; i < cl->count; i++) {
            if (cl->conns[i].busy == 0 && now - cl->conns[i].last_ms >= cl->idle_ms) {
                idle[n++] = cl->conns[i].pipe;
                cl->conns[i].last_ms = now; /* closed once, not every step */
            }
        }
        pthread_mutex_unlock(&cl->mu);
        for (uint32_t i = 0; i < n; i++) {
            nng_pipe_close(idle[i]);
        }
        if (n > 0) {
            char count[16];
            snprintf(count, sizeof count, "%u", n);
            olog(OLOG_INFO, "connections_idle_closed", "listener", cl->listener, "count", count,
                 NULL);
        }
        pthread_mutex_lock(&cl->mu);
    }
    pthread_mutex_unlock(&cl->mu);
    free(idle);
    return NULL;
}

int conn_limit_start(struct conn_limit **out, nng_socket s, const char *listener, uint32_t max,
                     int64_t idle_ms, _Atomic uint64_t *gauge) {
    struct conn_limit *cl = calloc(1, sizeof *cl);
    if (cl == NULL || (cl->conns = calloc(max, sizeof *cl->conns)) == NULL) {
        free(cl);
        return NNG_ENOMEM;
    }
    cl->listener = listener;
    cl->max = max;
    cl->idle_ms = idle_ms;
    cl->gauge = gauge;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_cond_init(&cl->cv, NULL);
    *out = cl;
    int rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, pipe_event, cl);
    if (rv == 0) {
        rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, pipe_event, cl);
    }
    if (rv == 0) {
        rv = pthread_create(&cl->reaper, NULL, reaper_main, cl) == 0 ? 0 : NNG_ENOMEM;
        cl->started = rv == 0;
    }
    return rv;
}

void conn_limit_on_close(struct conn_limit *cl, void (*fn)(void *arg, uint32_t pipe), void *arg) {
    cl->on_close = fn;
    cl->on_close_arg = arg;
}

void conn_limit_stop(struct conn_limit *cl) {
    if (cl == NULL || !cl->started) {
        return;
    }
    pthread_mutex_lock(&cl->mu);
    cl->stopping = true;
    pthread_cond_signal(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
    pthread_join(cl->reaper, NULL);
    cl->started = false;
}

void conn_limit_free(struct conn_limit *cl) {
    if (cl == NULL) {
        return;
    }
    conn_limit_stop(cl);
    pthread_mutex_destroy(&cl->mu);
    pthread_cond_destroy(&cl->cv);
    free(cl->conns);
    free(cl);
}
