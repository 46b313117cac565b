#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "cal.h"
#include "lifecycle.h"
#include "record.h"
#include "ruleset.h"

enum dim {
    D_REGION,
    D_OWNER,
    D_TYPE,
    D_CATEGORY,
    D_SECTION,
    D_STATUS,
    D_YEAR,
    D_MONTH,
    D_DAY,
    D_OVERDUE,
    D_OFFICE,
    D_COUNT
};

static const char *const dim_names[D_COUNT] = {"region",  "owner",      "type",  "category",
                                               "section", "status",     "year",  "month",
                                               "day",     "is_overdue", "office"};

enum { GROUP_KEY_BYTES = 192, SECTION_BYTES = 4 };

static int dim_parse(const char *s) {
    for (int i = 0; i < D_COUNT; i++) {
        if (strcmp(s, dim_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

int query_check(const Appeal__QueryRequest *q, struct errbuf *e) {
    if (q->n_by > QUERY_BY_MAX) {
        return err_set(e, APL_EINVAL, "group by at most %d fields", QUERY_BY_MAX);
    }
    for (size_t i = 0; i < q->n_by; i++) {
        if (dim_parse(q->by[i]) < 0) {
            return err_set(e, APL_EINVAL,
                           "unknown field `%.32s` to group by: use region, office, owner, type, "
                           "category, section, status, year, month, day or is_overdue",
                           q->by[i]);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(q->by[k], q->by[i]) == 0) {
                return err_set(e, APL_EINVAL, "`%.32s` named twice in the grouping", q->by[i]);
            }
        }
    }
    const Appeal__QueryFilter *f = q->filter;
    if (f != NULL) {
        if (f->n_region > QUERY_FILTER_VALUES_MAX || f->n_owner > QUERY_FILTER_VALUES_MAX ||
            f->n_type > QUERY_FILTER_VALUES_MAX || f->n_category > QUERY_FILTER_VALUES_MAX ||
            f->n_status > QUERY_FILTER_VALUES_MAX) {
            return err_set(e, APL_EINVAL, "at most %d values per filter", QUERY_FILTER_VALUES_MAX);
        }
        for (size_t i = 0; i < f->n_region + f->n_owner; i++) {
            const char *j = i < f->n_region ? f->region[i] : f->owner[i - f->n_region];
            if (!juris_valid(j)) {
                return err_set(e, APL_EINVAL, "`%.16s` is not a jurisdiction code", j);
            }
        }
        for (size_t i = 0; i < f->n_type; i++) {
            if (f->type[i] <= 0 || (int)f->type[i] >= APPEAL_TYPE_COUNT) {
                return err_set(e, APL_EINVAL, "unknown appeal type in the filter");
            }
        }
        for (size_t i = 0; i < f->n_status; i++) {
            if (f->status[i] <= 0 || f->status[i] > APPEAL__STATUS__STATUS_REOPENED) {
                return err_set(e, APL_EINVAL, "unknown status in the filter");
            }
        }
        for (size_t i = 0; i < f->n_category; i++) {
            size_t n = strlen(f->category[i]);
            if (n == 0 || n > 31 || strspn(f->category[i], "0123456789.") != n) {
                return err_set(e, APL_EINVAL, "`%.32s` is not a category code", f->category[i]);
            }
        }
        if (f->from_day != 0 && f->to_day != 0 && f->from_day > f->to_day) {
            return err_set(e, APL_EINVAL, "the period is inverted: --from is after --to");
        }
    }
    if (q->groups_max > QUERY_GROUPS_MAX) {
        return err_set(e, APL_EINVAL, "at most %d groups", QUERY_GROUPS_MAX);
    }
    if (q->deadline_ms > QUERY_DEADLINE_MS_MAX) {
        return err_set(e, APL_EINVAL, "a live query waits at most %d ms", QUERY_DEADLINE_MS_MAX);
    }
    return 0;
}

/* ---- groups ---- */

struct qgroup {
    char key[GROUP_KEY_BYTES];
    bool used;
    uint64_t count, open, notdue, answered, in_term, rated, satisfied;
    uint32_t *days; /* [AGG_DAYS_MAX + 1], allocated on first answer */
};

struct qmap {
    struct qgroup *slots;
    uint32_t cap, n, max;
    bool too_many;
};

static int qmap_init(struct qmap *m, uint32_t max) {
    m->max = max;
    m->cap = 16;
    while (m->cap < 2 * max) {
        m->cap *= 2;
    }
    m->n = 0;
    m->too_many = false;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL ? 0 : APL_ENOMEM;
}

static void qmap_fini(struct qmap *m) {
    for (uint32_t i = 0; m->slots != NULL && i < m->cap; i++) {
        free(m->slots[i].days);
    }
    free(m->slots);
    m->slots = NULL;
}

static struct qgroup *qmap_get(struct qmap *m, const char *key, bool create) {
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        struct qgroup *g = &m->slots[(h + i) & (m->cap - 1)];
        if (!g->used) {
            if (!create) {
                return NULL;
            }
            if (m->n >= m->max) {
                m->too_many = true;
                return NULL;
            }
            g->used = true;
            snprintf(g->key, sizeof g->key, "%s", key);
            m->n++;
            return g;
        }
        if (strcmp(g->key, key) == 0) {
            return g;
        }
    }
    return NULL;
}

/* ---- filters and keys ---- */

struct qctx {
    const Appeal__QueryRequest *q;
    const Appeal__QueryFilter *f;
    const char *owner_only;
    int32_t from, to, today;
    int by[QUERY_BY_MAX];
    size_t n_by;
    bool rollup;     /* no category in the grouping or filter: read the rollups */
    bool due_rollup; /* nor a day or a period: the due rollup too */
    struct qmap map;
};

/* A region's code in a filter takes in its offices too (juris_under). */
static bool in_list(char *const *list, size_t n, const char *v) {
    for (size_t i = 0; i < n; i++) {
        if (juris_under(v, list[i])) {
            return true;
        }
    }
    return n == 0;
}

static bool category_ok(const Appeal__QueryFilter *f, const char *cat) {
    for (size_t i = 0; i < f->n_category; i++) {
        size_t n = strlen(f->category[i]);
        if (strncmp(cat, f->category[i], n) == 0 && (cat[n] == '\0' || cat[n] == '.')) {
            return true;
        }
    }
    return f->n_category == 0;
}

static bool passes(const struct qctx *c, const struct agg_key *k, int32_t reg_day) {
    const Appeal__QueryFilter *f = c->f;
    if (c->owner_only != NULL && strcmp(k->owner, c->owner_only) != 0) {
        return false;
    }
    if (reg_day != 0 && (reg_day < c->from || reg_day > c->to)) {
        return false;
    }
    if (f == NULL) {
        return true;
    }
    if (!in_list(f->region, f->n_region, k->region) || !in_list(f->owner, f->n_owner, k->owner) ||
        !category_ok(f, k->category)) {
        return false;
    }
    bool type_ok = f->n_type == 0, status_ok = f->n_status == 0;
    for (size_t i = 0; i < f->n_type; i++) {
        type_ok |= (int)f->type[i] == k->type;
    }
    for (size_t i = 0; i < f->n_status; i++) {
        status_ok |= (int)f->status[i] == k->status;
    }
    return type_ok && status_ok;
}

/* Appends `n` bytes of `s` at `*at`, within GROUP_KEY_BYTES - 1. */
static void put(char *out, size_t *at, const char *s, size_t n) {
    if (*at + n >= GROUP_KEY_BYTES) {
        n = GROUP_KEY_BYTES - 1 - *at;
    }
    memcpy(out + *at, s, n);
    *at += n;
}

/* Appends a number of exactly `width` digits (zero-padded). */
static void put_digits(char *out, size_t *at, uint32_t v, int width) {
    char d[10];
    for (int i = width - 1; i >= 0; i--) {
        d[i] = (char)('0' + v % 10);
        v /= 10;
    }
    put(out, at, d, (size_t)width);
}

/* The group key of a cell: its values for `by`, joined by \x1f. Built by
 * hand: it runs for every cell a query reads (snprintf was half of it). */
static void group_key(const struct qctx *c, const struct agg_key *k, int32_t day, int32_t month,
                      char out[GROUP_KEY_BYTES]) {
    size_t at = 0;
    for (size_t i = 0; i < c->n_by; i++) {
        if (i > 0) {
            put(out, &at, "\x1f", 1);
        }
        const char *s = NULL;
        char region[JURIS_CHARS_MAX + 1];
        switch (c->by[i]) {
        case D_REGION: /* an office's appeals count under its region */
            juris_region(k->region, region);
            s = region;
            break;
        case D_OFFICE:
            s = k->region;
            break;
        case D_OWNER:
            s = k->owner;
            break;
        case D_TYPE:
            s = appeal_type_name(k->type);
            break;
        case D_CATEGORY:
            s = k->category;
            break;
        case D_SECTION:
            put(out, &at, k->category, strnlen(k->category, SECTION_BYTES));
            break;
        case D_STATUS:
            s = status_name((Appeal__Status)k->status);
            break;
        case D_YEAR:
            put_digits(out, &at, (uint32_t)(month / 12 % 10000), 4);
            break;
        case D_MONTH:
            put_digits(out, &at, (uint32_t)(month / 12 % 10000), 4);
            put(out, &at, "-", 1);
            put_digits(out, &at, (uint32_t)(month % 12 + 1), 2);
            break;
        case D_DAY: {
            char v[16];
            day_format(day, v);
            s = v;
            put(out, &at, s, strlen(s));
            s = NULL;
            break;
        }
        default:
            break; /* overdue: split at the end */
        }
        if (s != NULL) {
            put(out, &at, s, strlen(s));
        }
    }
    out[at] = '\0';
}

static bool wants(const struct qctx *c, int dim) {
    for (size_t i = 0; i < c->n_by; i++) {
        if (c->by[i] == dim) {
            return true;
        }
    }
    return false;
}

/* The last cell's group, for the next cell: cells come in key order
 * (period, region, owner, type, status, category), so neighbours often
 * share the grouped fields, and then the group key is not built and looked
 * up again. Equal fields always give the same key; the test is stricter
 * than the key (a whole region where the key takes its region part), which
 * only costs a lookup. */
struct group_memo {
    bool valid;
    struct agg_key k;
    int32_t day, month;
    struct qgroup *g;
};

static bool same_group(const struct qctx *c, const struct group_memo *m, const struct agg_key *k,
                       int32_t day, int32_t month) {
    for (size_t i = 0; i < c->n_by; i++) {
        bool same = true;
        switch (c->by[i]) {
        case D_REGION:
        case D_OFFICE:
            same = strcmp(k->region, m->k.region) == 0;
            break;
        case D_OWNER:
            same = strcmp(k->owner, m->k.owner) == 0;
            break;
        case D_TYPE:
            same = k->type == m->k.type;
            break;
        case D_CATEGORY:
        case D_SECTION:
            same = strcmp(k->category, m->k.category) == 0;
            break;
        case D_STATUS:
            same = k->status == m->k.status;
            break;
        case D_YEAR:
        case D_MONTH:
            same = month == m->month;
            break;
        case D_DAY:
            same = day == m->day;
            break;
        default:
            break; /* overdue: not in the key */
        }
        if (!same) {
            return false;
        }
    }
    return true;
}

/* The group of a cell (created if `create`), through the memo. */
static struct qgroup *group_of(struct qctx *c, struct group_memo *m, const struct agg_key *k,
                               int32_t day, int32_t month, bool create) {
    if (m->valid && same_group(c, m, k, day, month)) {
        return m->g;
    }
    char gk[GROUP_KEY_BYTES];
    group_key(c, k, day, month, gk);
    struct qgroup *g = qmap_get(&c->map, gk, create);
    m->valid = g != NULL || !create; /* (a lookup's miss stays a miss: nothing is created) */
    m->k = *k;
    m->day = day;
    m->month = month;
    m->g = g;
    return g;
}

/* ---- scanning ---- */

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* An AggCell as the node writes it (fields 1-3, 5, 6 as varints, days packed,
 * each at most once), read without unpacking: a query reads thousands of
 * cells. False for anything else, which then goes through pb_unpack. */
struct cell_view {
    uint64_t count, answered, in_term, rated, satisfied;
    const uint8_t *days, *days_end;
};

static bool cell_view(const MDB_val *v, struct cell_view *cv) {
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    memset(cv, 0, sizeof *cv);
    unsigned seen = 0;
    while (p < end) {
        uint64_t tag, x;
        if (!varint(&p, end, &tag) || tag > 48 || (seen & (1u << (tag >> 3))) != 0 ||
            !varint(&p, end, &x)) {
            return false;
        }
        seen |= 1u << (tag >> 3);
        switch (tag) {
        case 8:
            cv->count = x;
            break;
        case 16:
            cv->answered = x;
            break;
        case 24:
            cv->in_term = x;
            break;
        case 40:
            cv->rated = x;
            break;
        case 48:
            cv->satisfied = x;
            break;
        case 34:
            if (x > (uint64_t)(end - p)) {
                return false;
            }
            cv->days = p;
            cv->days_end = p + x;
            p += x;
            break;
        default:
            return false;
        }
    }
    return true;
}

/* Adds the (days, appeals) pairs of a packed days field, as the unpacked
 * path does: uint32 values, at most AGG_DAYS_MAX + 2 pairs, a lone last
 * element ignored. */
static int add_days(struct qgroup *g, const uint8_t *p, const uint8_t *end) {
    for (uint32_t pairs = 0; p < end; pairs++) {
        uint64_t d, n;
        if (pairs > AGG_DAYS_MAX + 1 || !varint(&p, end, &d)) {
            return APL_ECORRUPT;
        }
        if (p == end) {
            break;
        }
        if (!varint(&p, end, &n)) {
            return APL_ECORRUPT;
        }
        uint32_t day = (uint32_t)d;
        g->days[day > AGG_DAYS_MAX ? AGG_DAYS_MAX : day] += (uint32_t)n;
    }
    return 0;
}

static int add_cell(struct qctx *c, struct group_memo *memo, const MDB_val *k, const MDB_val *v,
                    struct arena *scratch) {
    struct agg_key key;
    if (agg_key_decode(k, &key) != 0) {
        return APL_ECORRUPT;
    }
    char grain = (char)(key.grain & ~0x20); /* a rollup's grains are lowercase */
    int32_t day = grain == 'D' ? key.period : 0;
    int32_t month = grain == 'M' ? key.period : (grain == 'D' ? agg_month_of(day) : 0);
    if (!passes(c, &key, 0)) {
        return 0;
    }
    struct qgroup *g = group_of(c, memo, &key, day, month, true);
    if (g == NULL) {
        return APL_ETOOBIG;
    }
    struct cell_view cv;
    if (cell_view(v, &cv)) {
        g->count += cv.count;
        if (lifecycle_open((Appeal__Status)key.status)) {
            g->open += cv.count;
        }
        g->answered += cv.answered;
        g->in_term += cv.in_term;
        g->rated += cv.rated;
        g->satisfied += cv.satisfied;
        if (cv.days == cv.days_end) {
            return 0;
        }
        if (g->days == NULL && (g->days = calloc(AGG_DAYS_MAX + 1, sizeof *g->days)) == NULL) {
            return APL_ENOMEM;
        }
        return add_days(g, cv.days, cv.days_end);
    }
    size_t mark = scratch->used_bytes;
    Appeal__AggCell *cell =
        (Appeal__AggCell *)pb_unpack(&appeal__agg_cell__descriptor, v->mv_data, v->mv_size, scratch,
                                     2 * (AGG_DAYS_MAX + 2), NULL);
    scratch->used_bytes = mark;
    if (cell == NULL) {
        return APL_ECORRUPT;
    }
    g->count += cell->count;
    if (lifecycle_open((Appeal__Status)key.status)) {
        g->open += cell->count;
    }
    g->answered += cell->answered;
    g->in_term += cell->in_term;
    g->rated += cell->rated;
    g->satisfied += cell->satisfied;
    if (cell->n_days >= 2 && g->days == NULL &&
        (g->days = calloc(AGG_DAYS_MAX + 1, sizeof *g->days)) == NULL) {
        return APL_ENOMEM;
    }
    for (size_t i = 0; i + 1 < cell->n_days; i += 2) {
        uint32_t d = cell->days[i] > AGG_DAYS_MAX ? AGG_DAYS_MAX : cell->days[i];
        g->days[d] += cell->days[i + 1];
    }
    return 0;
}

/* Scans agg cells of one grain with periods in [lo, hi]. */
static int scan_cells(struct qctx *c, MDB_txn *t, struct store *s, char grain, int32_t lo,
                      int32_t hi, struct arena *scratch) {
    MDB_cursor *cur;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_AGG], &cur));
    if (rc != 0) {
        return rc;
    }
    if (c->rollup) {
        grain = (char)(grain | 0x20); /* 'A' -> 'a': the same cells without category */
    }
    uint8_t start[8];
    size_t sl = agg_key_prefix(start, grain, lo);
    MDB_val k = {sl, start}, v;
    struct group_memo memo = {.valid = false};
    for (int m = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); m == 0 && rc == 0;
         m = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < 5 || p[0] != (uint8_t)grain || (int32_t)be32_get(p + 1) > hi) {
            break;
        }
        rc = add_cell(c, &memo, &k, &v, scratch);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* The open appeals whose deadline is today or later: not overdue. */
static int scan_not_due(struct qctx *c, MDB_txn *t, struct store *s) {
    MDB_cursor *cur;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_DUE], &cur));
    if (rc != 0) {
        return rc;
    }
    uint8_t start[5];
    size_t sl = 0;
    if (c->due_rollup) {
        start[sl++] = DUE_ROLLUP;
    }
    be32_put(start + sl, (uint32_t)c->today);
    sl += 4;
    MDB_val k = {sl, start}, v;
    struct group_memo memo = {.valid = false};
    for (int m = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); m == 0 && rc == 0;
         m = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((((const uint8_t *)k.mv_data)[0] == DUE_ROLLUP) != c->due_rollup) {
            break; /* the plain keys end where the rollup's begin */
        }
        struct agg_key key;
        if (due_key_decode(&k, &key) != 0 || v.mv_size != 8) {
            rc = APL_ECORRUPT;
            break;
        }
        /* The rollup's registration day is its month's first: no period
         * filter uses it (due_rollup is false then). */
        if (!passes(c, &key, c->due_rollup ? 0 : key.registered_day)) {
            continue;
        }
        struct qgroup *g =
            group_of(c, &memo, &key, key.registered_day, agg_month_of(key.registered_day), false);
        if (g != NULL) {
            uint64_t n;
            memcpy(&n, v.mv_data, 8);
            g->notdue += n;
        }
    }
    mdb_cursor_close(cur);
    return rc;
}

static int scan_period(struct qctx *c, MDB_txn *t, struct store *s, struct arena *scratch) {
    bool by_day = wants(c, D_DAY), by_month = wants(c, D_MONTH) || wants(c, D_YEAR);
    bool period = c->f != NULL && (c->f->from_day != 0 || c->f->to_day != 0);
    if (!period) {
        if (by_day) {
            return scan_cells(c, t, s, 'D', 0, INT32_MAX, scratch);
        }
        return by_month ? scan_cells(c, t, s, 'M', 0, INT32_MAX, scratch)
                        : scan_cells(c, t, s, 'A', 0, 0, scratch);
    }
    if (by_day) {
        return scan_cells(c, t, s, 'D', c->from, c->to, scratch);
    }
    /* Whole months from the month table, the days at the edges from the
     * day table. */
    int32_t m_first = agg_month_of(c->from), m_last = agg_month_of(c->to);
    int32_t first_full = day_from_civil(m_first / 12, (unsigned)(m_first % 12 + 1), 1) == c->from
                             ? m_first
                             : m_first + 1;
    int32_t next_day_after = c->to + 1;
    int32_t last_full = agg_month_of(next_day_after) != m_last ? m_last : m_last - 1;
    int rc = 0;
    if (first_full <= last_full) {
        rc = scan_cells(c, t, s, 'M', first_full, last_full, scratch);
        int32_t full_from = day_from_civil(first_full / 12, (unsigned)(first_full % 12 + 1), 1);
        int32_t after = last_full + 1;
        int32_t full_to = day_from_civil(after / 12, (unsigned)(after % 12 + 1), 1) - 1;
        if (rc == 0 && c->from < full_from) {
            rc = scan_cells(c, t, s, 'D', c->from, full_from - 1, scratch);
        }
        if (rc == 0 && c->to > full_to) {
            rc = scan_cells(c, t, s, 'D', full_to + 1, c->to, scratch);
        }
        return rc;
    }
    return scan_cells(c, t, s, 'D', c->from, c->to, scratch);
}

/* ---- the answer ---- */

static char **split_key(const char *key, size_t n, struct arena *a) {
    char **out = arena_new(a, (n + 1) * sizeof *out);
    char *copy = arena_strdup(a, key);
    if (out == NULL || copy == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = copy;
        char *sep = strchr(copy, '\x1f');
        if (sep != NULL) {
            *sep = '\0';
            copy = sep + 1;
        } else {
            copy += strlen(copy);
        }
    }
    return out;
}

static Appeal__QueryGroup *emit(const struct qctx *c, const struct qgroup *g, struct arena *a,
                                int overdue_part) {
    Appeal__QueryGroup *out = arena_new(a, sizeof *out);
    if (out == NULL) {
        return NULL;
    }
    appeal__query_group__init(out);
    out->keys = split_key(g->key, c->n_by, a);
    out->n_keys = c->n_by;
    if (out->keys == NULL) {
        return NULL;
    }
    uint64_t overdue = g->open > g->notdue ? g->open - g->notdue : 0;
    out->count = g->count;
    out->open = g->open;
    out->overdue = overdue;
    out->answered = g->answered;
    out->answered_in_term = g->in_term;
    out->rated = g->rated;
    out->satisfied = g->satisfied;
    if (c->f != NULL && c->f->overdue) {
        overdue_part = 1; /* only the overdue appeals count */
    }
    if (overdue_part != 0) {
        bool yes = overdue_part > 0;
        out->count = yes ? overdue : g->count - overdue;
        out->open = yes ? overdue : g->open - overdue;
        out->overdue = yes ? overdue : 0;
        if (yes) {
            out->answered = out->answered_in_term = out->rated = out->satisfied = 0;
            return out;
        }
    }
    size_t pairs = 0;
    for (uint32_t d = 0; g->days != NULL && d <= AGG_DAYS_MAX; d++) {
        pairs += g->days[d] != 0;
    }
    out->days = arena_new(a, 2 * pairs * sizeof *out->days + 1);
    if (out->days == NULL) {
        return NULL;
    }
    for (uint32_t d = 0; g->days != NULL && d <= AGG_DAYS_MAX; d++) {
        if (g->days[d] != 0) {
            out->days[out->n_days++] = d;
            out->days[out->n_days++] = g->days[d];
        }
    }
    return out;
}

static int overdue_index(const struct qctx *c) {
    for (size_t i = 0; i < c->n_by; i++) {
        if (c->by[i] == D_OVERDUE) {
            return (int)i;
        }
    }
    return -1;
}

static int cmp_groups(const void *a, const void *b) {
    const Appeal__QueryGroup *x = *(Appeal__QueryGroup *const *)a;
    const Appeal__QueryGroup *y = *(Appeal__QueryGroup *const *)b;
    for (size_t i = 0; i < x->n_keys && i < y->n_keys; i++) {
        int c = strcmp(x->keys[i], y->keys[i]);
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

static int build_result(struct qctx *c, struct arena *a, Appeal__QueryResult *r) {
    int oi = overdue_index(c);
    r->groups = arena_new(a, (2 * c->map.n + 1) * sizeof *r->groups);
    if (r->groups == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < c->map.cap; i++) {
        const struct qgroup *g = &c->map.slots[i];
        if (!g->used) {
            continue;
        }
        for (int part = oi >= 0 ? -1 : 0; part <= (oi >= 0 ? 1 : 0); part += 2) {
            Appeal__QueryGroup *out = emit(c, g, a, part);
            if (out == NULL) {
                return APL_ENOMEM;
            }
            if (oi >= 0) {
                out->keys[oi] = part > 0 ? "yes" : "no";
            }
            if (out->count > 0 || g->count == 0) {
                r->groups[r->n_groups++] = out;
            }
        }
    }
    qsort(r->groups, r->n_groups, sizeof *r->groups, cmp_groups);
    return 0;
}

int query_run(struct store *s, MDB_txn *t, const Appeal__QueryRequest *q, const char *owner_only,
              int32_t today, struct arena *a, Appeal__QueryResult **out, struct errbuf *e) {
    int rc = query_check(q, e);
    if (rc != 0) {
        return rc;
    }
    struct qctx c;
    memset(&c, 0, sizeof c);
    c.q = q;
    c.f = q->filter;
    c.owner_only = owner_only;
    c.today = today;
    /* An open end of the period is the calendar's range: dates past it
     * cannot be registration dates. */
    int32_t first = day_from_civil(1970, 1, 1), last = day_from_civil(2199, 12, 31);
    c.from = c.f != NULL && c.f->from_day ? c.f->from_day : first;
    c.to = c.f != NULL && c.f->to_day ? c.f->to_day : last;
    c.from = c.from < first ? first : c.from;
    c.to = c.to > last ? last : c.to;
    c.n_by = q->n_by;
    for (size_t i = 0; i < q->n_by; i++) {
        c.by[i] = dim_parse(q->by[i]);
    }
    bool period = c.f != NULL && (c.f->from_day != 0 || c.f->to_day != 0);
    c.rollup =
        !wants(&c, D_CATEGORY) && !wants(&c, D_SECTION) && (c.f == NULL || c.f->n_category == 0);
    c.due_rollup = c.rollup && !wants(&c, D_DAY) && !period;
    uint32_t max = q->groups_max ? q->groups_max : QUERY_GROUPS_DEFAULT;
    if ((rc = qmap_init(&c.map, max)) != 0) {
        return rc;
    }
    struct arena scratch;
    if ((rc = arena_init(&scratch, 256 * 1024)) != 0) {
        qmap_fini(&c.map);
        return rc;
    }
    rc = scan_period(&c, t, s, &scratch);
    if (rc == 0) {
        rc = scan_not_due(&c, t, s);
    }
    Appeal__QueryResult *r = arena_new(a, sizeof *r);
    if (rc == 0 && r == NULL) {
        rc = APL_ENOMEM;
    }
    if (rc == 0) {
        appeal__query_result__init(r);
        r->mode = "replica";
        r->by = q->by;
        r->n_by = q->n_by;
        r->today = today;
        rc = build_result(&c, a, r);
    }
    arena_fini(&scratch);
    qmap_fini(&c.map);
    if (rc == APL_ETOOBIG) {
        return err_set(e, rc, "more than %u groups: narrow the filters or group by fewer fields",
                       max);
    }
    if (rc != 0) {
        return err_set(e, rc, "the query failed: %s", apl_strerror(rc));
    }
    *out = r;
    return 0;
}

int query_merge(Appeal__QueryResult *into, const Appeal__QueryResult *from, uint32_t groups_max,
                struct arena *a, struct errbuf *e) {
    size_t cap = into->n_groups + from->n_groups;
    if (cap > groups_max) {
        cap = groups_max + 1;
    }
    Appeal__QueryGroup **all = arena_new(a, (cap + 1) * sizeof *all);
    if (all == NULL) {
        return APL_ENOMEM;
    }
    if (into->n_groups > 0) {
        memcpy(all, into->groups, into->n_groups * sizeof *all);
    }
    size_t n = into->n_groups;
    for (size_t i = 0; i < from->n_groups; i++) {
        const Appeal__QueryGroup *g = from->groups[i];
        size_t k = 0;
        while (k < n && cmp_groups(&all[k], &g) != 0) {
            k++;
        }
        if (k == n) {
            if (n >= groups_max) {
                return err_set(e, APL_ETOOBIG, "more than %u groups", groups_max);
            }
            all[n++] = (Appeal__QueryGroup *)g;
            continue;
        }
        /* Same group from two owners: add, merging the day pairs. */
        Appeal__QueryGroup *m = arena_new(a, sizeof *m);
        uint32_t *days = arena_new(a, (all[k]->n_days + g->n_days + 1) * sizeof *days);
        if (m == NULL || days == NULL) {
            return APL_ENOMEM;
        }
        *m = *all[k];
        m->count += g->count;
        m->open += g->open;
        m->overdue += g->overdue;
        m->answered += g->answered;
        m->answered_in_term += g->answered_in_term;
        m->rated += g->rated;
        m->satisfied += g->satisfied;
        if (all[k]->n_days > 0) { /* days is NULL when there are none */
            memcpy(days, all[k]->days, all[k]->n_days * sizeof *days);
        }
        size_t nd = all[k]->n_days;
        for (size_t i2 = 0; i2 + 1 < g->n_days; i2 += 2) {
            size_t j = 0;
            while (j < nd && days[j] != g->days[i2]) {
                j += 2;
            }
            if (j == nd) {
                days[nd++] = g->days[i2];
                days[nd++] = 0;
            }
            days[j + 1] += g->days[i2 + 1];
        }
        m->days = days;
        m->n_days = nd;
        all[k] = m;
    }
    qsort(all, n, sizeof *all, cmp_groups);
    into->groups = all;
    into->n_groups = n;
    return 0;
}

double query_median_days(const uint32_t *pairs, size_t n) {
    uint64_t total = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        total += pairs[i + 1];
    }
    if (total == 0) {
        return -1;
    }
    /* Pairs may come unsorted after a merge: walk days in order. */
    uint64_t want_lo = (total + 1) / 2, want_hi = total / 2 + 1, seen = 0;
    double lo = -1, hi = -1;
    for (uint32_t d = 0; d <= AGG_DAYS_MAX && hi < 0; d++) {
        for (size_t i = 0; i + 1 < n; i += 2) {
            if (pairs[i] == d) {
                seen += pairs[i + 1];
            }
        }
        if (lo < 0 && seen >= want_lo) {
            lo = d;
        }
        if (seen >= want_hi) {
            hi = d;
        }
    }
    return (lo + hi) / 2;
}

size_t query_arena_bytes(uint32_t groups) {
    return (size_t)groups * (512 + 16 * (AGG_DAYS_MAX / 8)) + 256 * 1024;
}
