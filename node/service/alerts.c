#include "alerts.h"
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"
#include "olog.h"
#include "repl.h"

struct found {
    struct alert a[ALERTS_MAX];
    uint32_t n;
};

static void add(struct found *f, const char *name, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(struct found *f, const char *name, const char *subject, const char *fmt, ...) {
    if (f->n >= ALERTS_MAX) {
        return;
    }
    struct alert *x = &f->a[f->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->subject, sizeof x->subject, "%s", subject);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->detail, sizeof x->detail, fmt, ap);
    va_end(ap);
}

static void cluster_conditions(struct alerts *al, const Appeal__ClusterStatus *s, struct found *f) {
    const struct alert_thresholds *th = &al->th;
    for (size_t i = 0; i < s->n_forks; i++) {
        add(f, "fork", s->forks[i]->jurisdiction, "two records for seq %llu (other via %s)",
            (unsigned long long)s->forks[i]->seq, s->forks[i]->via);
    }
    for (size_t i = 0; i < s->n_peers && i < 256; i++) {
        const Appeal__PeerStatus *p = s->peers[i];
        int64_t quiet = p->last_ok_ms ? s->now_ms - p->last_ok_ms : -1;
        if (quiet > (int64_t)th->silent_s * 1000) {
            add(f, "peer_silent", p->jurisdiction, "no good pull for %lld s (last error: %s)",
                (long long)(quiet / 1000), p->last_error);
        }
        int64_t skew = p->clock_skew_ms < 0 ? -p->clock_skew_ms : p->clock_skew_ms;
        if (p->last_contact_ms && skew > (int64_t)th->skew_s * 1000) {
            add(f, "clock_skew", p->jurisdiction, "its clock is %lld s off ours",
                (long long)(p->clock_skew_ms / 1000));
        }
        bool refused_now = p->refused_records > al->refused_seen[i];
        al->refused_seen[i] = p->refused_records;
        al->refusal_bits[i] = (uint8_t)((al->refusal_bits[i] << 1 | refused_now) &
                                        ((1u << ALERT_REFUSALS_WINDOW) - 1));
        if (__builtin_popcount(al->refusal_bits[i]) >= ALERT_REFUSALS_MIN) {
            add(f, "peer_refusing", p->jurisdiction, "%llu records refused (last: %s)",
                (unsigned long long)p->refused_records, p->last_error);
        }
    }
    for (size_t i = 0; i < s->n_dialers; i++) {
        const Appeal__DialerStatus *d = s->dialers[i];
        if (d->clock_refused) {
            add(f, "office_clock_skew", d->jurisdiction,
                "its clock is %lld s off ours: it refuses to register until corrected",
                (long long)(d->clock_skew_ms / 1000));
        }
    }
    if (s->clock_refused_ms != 0) {
        add(f, "clock_refused", s->clock_ref,
            "this node's clock is %lld s off %s's: registration refused",
            (long long)(s->clock_refused_ms / 1000), s->clock_ref);
    }
    for (size_t i = 0; i < s->n_origins; i++) {
        const Appeal__OriginStatus *o = s->origins[i];
        if (o->frozen && s->n_forks == 0) {
            add(f, "fork", o->jurisdiction, "frozen: %s", o->frozen_reason);
        }
        if (o->staleness_ms > (int64_t)th->stale_s * 1000 &&
            strcmp(o->jurisdiction, s->jurisdiction) != 0) {
            add(f, "origin_stale", o->jurisdiction, "newest record %lld s old, %llu behind",
                (long long)(o->staleness_ms / 1000), (unsigned long long)o->lag_records);
        }
    }
}

static bool same(const struct alert *a, const struct alert *b) {
    return strcmp(a->name, b->name) == 0 && strcmp(a->subject, b->subject) == 0;
}

/* Logs the alerts that start and end, and keeps the new set. */
static void settle(struct alerts *al, struct found *f) {
    int64_t now = node_now_ms(al->n);
    pthread_mutex_lock(&al->mu);
    for (uint32_t i = 0; i < al->n_active; i++) {
        bool still = false;
        for (uint32_t k = 0; k < f->n && !still; k++) {
            still = same(&al->active[i], &f->a[k]);
        }
        if (!still) {
            olog(OLOG_INFO, "alert_cleared", "alert", al->active[i].name, "subject",
                 al->active[i].subject, NULL);
        }
    }
    for (uint32_t k = 0; k < f->n; k++) {
        const struct alert *old = NULL;
        for (uint32_t i = 0; i < al->n_active && old == NULL; i++) {
            old = same(&al->active[i], &f->a[k]) ? &al->active[i] : NULL;
        }
        if (old != NULL) {
            f->a[k].since_ms = old->since_ms;
        } else {
            f->a[k].since_ms = now;
            olog(OLOG_ALERT, "alert_raised", "alert", f->a[k].name, "subject", f->a[k].subject,
                 "detail", f->a[k].detail, NULL);
        }
    }
    memcpy(al->active, f->a, f->n * sizeof *f->a);
    al->n_active = f->n;
    pthread_mutex_unlock(&al->mu);
}

struct visit {
    struct alerts *al;
    struct found *f;
};

static void visit_burst(void *arg, const char *juris, uint64_t floor) {
    struct visit *v = arg;
    add(v->f, "origin_burst", juris,
        "records postponed: the origin grew past max(its history, %llu) records within a "
        "minute; it is pulled again when its budget renews",
        (unsigned long long)floor);
}

static void visit_cluster(void *arg, const Appeal__ClusterStatus *s) {
    struct visit *v = arg;
    cluster_conditions(v->al, s, v->f);
}

void alerts_eval(struct alerts *al) {
    struct node *n = al->n;
    struct found *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return;
    }
    uint64_t map = 0, used = 0;
    uint32_t readers = 0;
    if (store_usage(&n->eng.store, &map, &used, &readers) == 0 && n->eng.store.map_max_bytes > 0 &&
        used * 100 > n->eng.store.map_max_bytes * (uint64_t)al->th.map_percent) {
        add(f, "map_full", n->eng.juris, "%llu of %llu MiB used", (unsigned long long)(used >> 20),
            (unsigned long long)(n->eng.store.map_max_bytes >> 20));
    }
    char why[WRITER_REASON_BYTES];
    if (writer_failed(&n->eng.writer, why, sizeof why)) {
        add(f, "storage_failed", n->eng.juris, "%s: writes stopped until a restart", why);
    }
    if (atomic_load(&n->eng.reserve_reached)) {
        add(f, "own_reserve", n->eng.juris,
            "records from peers postponed: the map is within --own-reserve of --map-max "
            "(%llu MiB)",
            (unsigned long long)(n->eng.store.map_max_bytes >> 20));
    }
    if (atomic_load(&n->eng.writer.full)) {
        add(f, "writes_refused", n->eng.juris, "the map is at its maximum (%llu MiB)",
            (unsigned long long)(n->eng.store.map_max_bytes >> 20));
    }
    char nd[160];
    if (notify_alert(n->notify, nd, sizeof nd)) {
        add(f, "notify_failing", n->eng.juris, "%s", nd);
    }
    struct visit v = {al, f};
    repl_status_visit(n->repl, visit_cluster, &v);
    repl_bursting(n->repl, visit_burst, &v);
    settle(al, f);
    free(f);
}

static void *monitor_main(void *arg) {
    struct alerts *al = arg;
    pthread_setname_np(pthread_self(), "monitor");
    pthread_mutex_lock(&al->mu);
    while (!al->stopping) {
        pthread_mutex_unlock(&al->mu);
        alerts_eval(al);
        pthread_mutex_lock(&al->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ALERT_EVAL_MS / 1000;
        ts.tv_nsec += (long)(ALERT_EVAL_MS % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (!al->stopping) {
            pthread_cond_timedwait(&al->cv, &al->mu, &ts);
        }
    }
    pthread_mutex_unlock(&al->mu);
    return NULL;
}

int alerts_start(struct alerts *al, struct node *n, const struct alert_thresholds *th) {
    memset(al, 0, sizeof *al);
    al->n = n;
    al->th = *th;
    pthread_mutex_init(&al->mu, NULL);
    pthread_cond_init(&al->cv, NULL);
    if (pthread_create(&al->thread, NULL, monitor_main, al) != 0) {
        return APL_ENOMEM;
    }
    al->started = true;
    return 0;
}

void alerts_stop(struct alerts *al) {
    if (!al->started) {
        return;
    }
    pthread_mutex_lock(&al->mu);
    al->stopping = true;
    pthread_cond_signal(&al->cv);
    pthread_mutex_unlock(&al->mu);
    pthread_join(al->thread, NULL);
    al->started = false;
    pthread_mutex_destroy(&al->mu);
    pthread_cond_destroy(&al->cv);
}

uint32_t alerts_snapshot(struct alerts *al, struct alert *out, uint32_t max) {
    if (!al->started) {
        return 0;
    }
    pthread_mutex_lock(&al->mu);
    uint32_t n = al->n_active < max ? al->n_active : max;
    memcpy(out, al->active, n * sizeof *out);
    pthread_mutex_unlock(&al->mu);
    return n;
}
