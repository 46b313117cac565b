/*
 * open311.h: Open311 GeoReport v2 on the node's public listener
 * (`appeal-node run --open311 HOST:PORT`, docs/open311.md).
 *
 *   GET  /open311/discovery.{json,xml}
 *   GET  /open311/v2/services.{json,xml}            the classifier's categories
 *   GET  /open311/v2/services/CODE.{json,xml}       attributes an appeal needs
 *   POST /open311/v2/requests.{json,xml}            files an appeal (api_key)
 *   GET  /open311/v2/requests.{json,xml}            public status, filtered
 *   GET  /open311/v2/requests/NUMBER.{json,xml}     public status of one appeal
 *   POST /open311/v2/receipts/verify.{json,xml}     checks a receipt
 *
 * A filing goes through exactly the path of `appealctl file` (api_write:
 * grant re-check in the write transaction, rules, signing, sealing, the
 * writer's durable group commit); the channel's API key hash is the
 * actor. The answer is sent after the commit (httpd's deferred answers).
 * Status answers come from the owner's state or this node's verified
 * replica, for any region's appeal, and carry no personal data.
 *
 * Runs on its own httpd (thread, connection cap, idle and slow-client
 * deadlines, head and body caps), apart from the API and replication.
 * Per channel, at most its rate (KeyGranted.rate_per_minute, default
 * CHANNEL_RATE_PER_MIN_DEFAULT, node/domain/channel.h) filings per minute:
 * past it, 429.
 */
#ifndef APPEAL_OPEN311_H
#define APPEAL_OPEN311_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "i18n.h"
#include "keys.h"

struct node;
struct open311;
struct Appeal__AppealRow;

enum {
    OPEN311_BODY_BYTES_MAX = 64 * 1024,  /* a POST body (413 past it, before it is read) */
    OPEN311_FIELDS_MAX = 64,             /* form and query fields of one request */
    OPEN311_RESULTS_MAX = 1000,          /* GET requests: the spec's default and our cap */
    OPEN311_IDS_MAX = 1000,              /* service_request_id values in one GET */
    OPEN311_SCAN_ROWS_MAX = 200 * 1000,  /* appeals looked at for one GET requests */
    OPEN311_RANGE_DAYS_DEFAULT = 90,     /* GET requests without dates */
    OPEN311_CHANNELS_TRACKED_MAX = 1024, /* rate windows held (LRU past it) */
};

/* Serves on `addr` (HOST:PORT). */
int open311_start(struct open311 **out, struct node *n, const char *addr, struct errbuf *e);
/* Stops the listener. Call after the writer has stopped (every deferred
 * filing answered); NULL is allowed. */
void open311_stop(struct open311 *o);

/* The `status_notes` of an appeal in `lang` (its status, outcome, term,
 * where it went, how overdue on `today`), into `buf`: the public status
 * and the applicant's view say the same. Nothing personal. */
void open311_status_notes(const struct i18n *tr, struct node *n, enum i18n_lang lang, int32_t today,
                          const struct Appeal__AppealRow *r, char *buf, size_t cap);

#endif
