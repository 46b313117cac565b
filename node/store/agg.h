/*
 * agg.h: aggregates without scans (docs/queries.md).
 *
 * Two derived tables, updated in the transaction of every record that
 * changes an appeal:
 *
 *   agg  grain (1) | period (4, BE) | region (8) | office (4, BE) |
 *        owner region (8) | owner office (4, BE) | type (1) | status (1) |
 *        category  ->  AggCell {count, answered, in_term, days,
 *        rated, satisfied}
 *        Each appeal is counted in three cells, by its registration period
 *        at three grains: 'A' (all time, period 0), 'M' (month, year*12 +
 *        month - 1) and 'D' (day). A query over any registration period
 *        reads whole months where it can and days at the edges, so its cost
 *        depends on the number of groups and months, not of appeals.
 *        Three more cells, grains 'a', 'm', 'd', are the same rolled up
 *        over categories (an empty category): a query that neither groups
 *        nor filters by category reads them, about 18 times fewer.
 *   due  deadline (4, BE) | registered (4, BE) | region | owner | type |
 *        status | category  ->  count of OPEN appeals.
 *        Overdue is computed at query time: open appeals minus those whose
 *        deadline is today or later, a scan that covers at most the terms
 *        still running (about two months of deadlines), however old or
 *        large the backlog.
 *        Its rollup, DUE_ROLLUP | deadline | first day of the registration
 *        month | dims without category, serves queries that neither group
 *        by category or day nor filter by category or period.
 *
 * `region` and `office` are the jurisdiction that registered the appeal,
 * `owner region` and `owner office` the one handling it now: the region's
 * code zero-padded to 8 bytes and, for an office ("KZ-75.751210000"), its
 * KATO code as a number (0 for the region itself). Decoded, `region` and
 * `owner` hold the whole jurisdiction again.
 */
#ifndef APPEAL_AGG_H
#define APPEAL_AGG_H

#include <stdbool.h>
#include <stdint.h>

#include "bounds.h"
#include "store.h"
#include "store.pb-c.h"

enum {
    AGG_REGION_BYTES = 8, /* a region's code, zero-padded */
    AGG_OFFICE_BYTES = 4, /* an office's KATO code, BE; 0: none */
    AGG_JURIS_BYTES = AGG_REGION_BYTES + AGG_OFFICE_BYTES,
    AGG_KEY_BYTES_MAX = 1 + 4 + 2 * AGG_JURIS_BYTES + 2 + 31,
    DUE_KEY_BYTES_MAX = 4 + 4 + 2 * AGG_JURIS_BYTES + 2 + 31,
    AGG_DAYS_MAX = 400, /* days-to-answer beyond this count as this */
    DUE_ROLLUP = 0xFE,  /* first byte of the due rollup's keys */
};

/* One key buffer (AGG_KEY_BYTES_MAX + 4) holds both kinds of key, the due
 * rollup's with its prefix byte; a key's length is kept in a byte; the
 * category's 31 bytes are the longest category code (CATEGORY_BYTES_MAX). */
_Static_assert(DUE_KEY_BYTES_MAX + 1 <= AGG_KEY_BYTES_MAX + 4 && AGG_KEY_BYTES_MAX + 4 <= 255,
               "an agg key buffer holds every due key; key lengths fit a byte");
/* A region's code is at most 6 bytes ("KZ-ABC"), a KATO code 9 digits. */
_Static_assert(AGG_REGION_BYTES >= 6 && KATO_DIGITS == 9, "a jurisdiction fits its key fields");
_Static_assert(CATEGORY_BYTES_MAX == 31, "the keys' category part is CATEGORY_BYTES_MAX");

/* What places an appeal in the aggregates. */
struct agg_fields {
    char region[JURIS_BYTES_MAX + 1];
    char owner[JURIS_BYTES_MAX + 1];
    char category[32];
    uint8_t type, status;
    int32_t registered_day, deadline_day;
    bool open, answered, in_term;
    bool rated, satisfied; /* the applicant rated the answer; satisfied with it */
    uint32_t days_to_answer;
};

void agg_fields_of(const Appeal__AppealRow *r, struct agg_fields *f);

struct agg_batch;

/* Adds (sign +1) or removes (-1) an appeal's contribution. With a batch,
 * the changes are summed in memory until agg_batch_flush(). */
int agg_apply(struct agg_batch *b, struct store *s, MDB_txn *t, const struct agg_fields *f,
              int sign);

int agg_batch_new(struct agg_batch **out);
/* Writes the sums (t NULL: forgets them) and empties the batch for reuse;
 * only the cells it touched are visited. */
int agg_batch_flush(struct agg_batch *b, struct store *s, MDB_txn *t);
void agg_batch_free(struct agg_batch *b);

/* Month number of a day: year * 12 + month - 1. */
int32_t agg_month_of(int32_t day);

/* Decoded keys, for queries. */
struct agg_key {
    char grain;
    int32_t period;
    char region[JURIS_BYTES_MAX + 1];
    char owner[JURIS_BYTES_MAX + 1];
    uint8_t type, status;
    char category[32];
    int32_t deadline_day, registered_day; /* due keys only */
};
int agg_key_decode(const MDB_val *k, struct agg_key *out);
int due_key_decode(const MDB_val *k, struct agg_key *out);
size_t agg_key_prefix(uint8_t *out, char grain, int32_t period);

#endif
