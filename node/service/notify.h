/*
 * notify.h: the deliverer of the outbox (node/store/outbox.h) to the
 * applicant, by e-mail over SMTP and by an HTTP webhook for an SMS gateway
 * (docs/notifications.md).
 *
 * Configured by a file of key=value lines (`--notify FILE`): without it
 * the node writes no notifications at all. One thread reads the unsettled
 * rows in the order they were written (one appeal's notifications never
 * overtake each other), sends each through libcurl and settles the results
 * through the writer: sent; or another attempt after a backoff doubling
 * from backoff_ms_min to backoff_ms_max; or, after attempts_max attempts,
 * failed, with an alert line. A crash between a send and its settling
 * sends the row again with the same idempotency key (the webhook's
 * Idempotency-Key header, the e-mail's Message-ID), so the gateway can
 * drop it: nothing is lost, and a duplicate is recognisable.
 *
 * Threads: notify_start's thread only; the counters are atomics read by
 * /metrics and the alert monitor.
 */
#ifndef APPEAL_NOTIFY_H
#define APPEAL_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct node;
struct notify;

enum {
    NOTIFY_CONF_BYTES_MAX = 64 * 1024, /* the configuration file */
    NOTIFY_URL_BYTES_MAX = 512,
    NOTIFY_BATCH_MAX = 32,  /* rows sent before one settling commit */
    NOTIFY_SCAN_MAX = 4096, /* unsettled rows looked at per pass */
    NOTIFY_IDLE_MS = 100,   /* sleep when nothing is due */
    NOTIFY_ATTEMPTS_MAX_DEFAULT = 10,
    NOTIFY_BACKOFF_MS_MIN_DEFAULT = 1000,
    NOTIFY_BACKOFF_MS_MAX_DEFAULT = 15 * 60 * 1000,
    NOTIFY_TIMEOUT_MS_DEFAULT = 10000, /* one attempt */
    NOTIFY_ALERT_S_DEFAULT = 3600,     /* undelivered this long: alert */
    NOTIFY_KEY_BYTES_MAX = 256,        /* the webhook's HMAC key */
    NOTIFY_TEXT_BYTES_MAX = 2048,      /* one notification's text */
};

/* Reads the configuration file at `path` (docs/notifications.md). */
int notify_open(struct notify **out, struct node *n, const char *path, struct errbuf *e);
/* Starts the deliverer thread (after the writer). */
int notify_start(struct notify *nt, struct errbuf *e);
/* Stops the thread (before the writer stops); frees with notify_close. */
void notify_stop(struct notify *nt);
void notify_close(struct notify *nt);

struct notify_stats {
    uint64_t sent, failed, retried; /* since start */
    uint64_t queued;                /* unsettled rows at the last pass */
    int64_t oldest_age_ms;          /* of the oldest unsettled row; 0: none */
};
void notify_stats(const struct notify *nt, struct notify_stats *out);
/* True (with a sentence) when a row is undelivered for longer than
 * alert_s or a row failed for good since start. */
bool notify_alert(const struct notify *nt, char *detail, size_t cap);

#endif
