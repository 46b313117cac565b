/*
 * query.h: aggregate queries over the local store (docs/queries.md).
 *
 * A query is filters (region, owner, type, category or section, status,
 * registration period, overdue) and a grouping by any of region, owner,
 * type, category, section, status, year, month, day, overdue. Measures per
 * group: count, open, overdue (at `today`, by the working-day calendar's
 * deadlines written in the records), answered, answered within term, and
 * the (days to first answer, appeals) pairs from which medians merge
 * exactly across nodes. Its cost depends on the groups and months asked
 * for, not on the number of appeals (agg.h).
 */
#ifndef APPEAL_QUERY_H
#define APPEAL_QUERY_H

#include "api.pb-c.h"
#include "err.h"
#include "pbdecode.h"
#include "store.h"

enum {
    QUERY_BY_MAX = 6,
    QUERY_FILTER_VALUES_MAX = 64,
    QUERY_GROUPS_DEFAULT = 2000,
    QUERY_GROUPS_MAX = 20000,
    QUERY_DEADLINE_MS_DEFAULT = 2000,
    QUERY_DEADLINE_MS_MAX = 30000,
};

/* Refuses unknown fields, an inverted period, too many values. */
int query_check(const Appeal__QueryRequest *q, struct errbuf *e);

/* Evaluates `q` on the store. With `owner_only`, only appeals that
 * jurisdiction owns (a live answer). The result lives in `a`. */
int query_run(struct store *s, MDB_txn *t, const Appeal__QueryRequest *q, const char *owner_only,
              int32_t today, struct arena *a, Appeal__QueryResult **out, struct errbuf *e);

/* Adds `from`'s groups into `into` (same `by`), allocating in `a`. */
int query_merge(Appeal__QueryResult *into, const Appeal__QueryResult *from, uint32_t groups_max,
                struct arena *a, struct errbuf *e);

/* Median of (days, appeals) pairs; -1 if none. */
double query_median_days(const uint32_t *pairs, size_t n);

/* Bytes an arena needs for an answer of up to `groups` groups. */
size_t query_arena_bytes(uint32_t groups);

#endif
