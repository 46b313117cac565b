#include "applicants.h"

#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "bounds.h"
#include "err.h"
#include "util.h"

enum {
    ROW_KEY_BYTES = 12, /* "apst" | counter (8, BE) */
};

static const uint8_t row_prefix[4] = {'a', 'p', 's', 't'};

/* "Latest" is the greatest number: longer, or as long and greater. */
static bool greater(const char *a, size_t al, const char *b, size_t bl) {
    return al > bl || (al == bl && memcmp(a, b, al) > 0);
}

static uint32_t hash_key(const uint8_t *key, size_t kl) {
    uint32_t h = 2166136261u; /* FNV-1a; the tag is a keyed hash already */
    for (size_t i = 0; i < kl; i++) {
        h = (h ^ key[i]) * 16777619u;
    }
    return h;
}

/* The slot holding `key`, or the empty one where it would go. */
static uint32_t find_slot(const struct app_stage *g, const uint8_t *key, size_t kl) {
    uint32_t i = hash_key(key, kl) & (APST_SLOTS - 1);
    while (g->slots[i].kl != 0 && (g->slots[i].kl != kl || memcmp(g->slots[i].key, key, kl) != 0)) {
        i = (i + 1) & (APST_SLOTS - 1);
    }
    return i;
}

/* Sets `key` to `number` in memory; with `undo`, remembers what was there. */
static int stage_set(struct app_stage *g, const uint8_t *key, size_t kl, const char *number,
                     size_t nl, bool undo) {
    ASSERT(kl > 0 && kl <= APST_KEY_BYTES_MAX && nl <= NUMBER_BYTES_MAX);
    if (g->slots == NULL && (g->slots = calloc(APST_SLOTS, sizeof *g->slots)) == NULL) {
        return APL_ENOMEM;
    }
    uint32_t i = find_slot(g, key, kl);
    struct apst_entry *e = &g->slots[i];
    if (undo) {
        if (g->n_undo == g->cap_undo) {
            size_t cap = g->cap_undo ? 2 * g->cap_undo : 256;
            struct apst_undo *u = realloc(g->undo, cap * sizeof *u);
            if (u == NULL) {
                return APL_ENOMEM;
            }
            g->undo = u;
            g->cap_undo = cap;
        }
        g->undo[g->n_undo++] = (struct apst_undo){i, *e};
    }
    if (e->kl == 0) {
        g->count++;
    }
    e->kl = (uint8_t)kl;
    memcpy(e->key, key, kl);
    e->nl = (uint8_t)nl;
    memcpy(e->number, number, nl);
    return 0;
}

/* One staged row into memory; the next counter past it. */
static int load_row(void *arg, const MDB_val *k, const MDB_val *v) {
    struct app_stage *g = arg;
    const uint8_t *p = v->mv_data;
    size_t kl = v->mv_size > 0 ? p[0] : 0;
    if (kl == 0 || kl > APST_KEY_BYTES_MAX || v->mv_size < 1 + kl ||
        v->mv_size - 1 - kl > NUMBER_BYTES_MAX) {
        return APL_ECORRUPT;
    }
    const char *num = (const char *)p + 1 + kl;
    size_t nl = v->mv_size - 1 - kl;
    g->next = be64_get((const uint8_t *)k->mv_data + 4) + 1;
    const struct apst_entry *e = g->slots ? &g->slots[find_slot(g, p + 1, kl)] : NULL;
    if (e == NULL || e->kl == 0 || greater(num, nl, e->number, e->nl)) {
        return stage_set(g, p + 1, kl, num, nl, false);
    }
    return 0;
}

int apst_init(struct app_stage *g, struct store *s) {
    memset(g, 0, sizeof *g);
    const char *test = getenv("APPEAL_TEST_APPLICANTS_MERGE");
    long m = test != NULL ? atol(test) : 0;
    g->merge_at = m > 0 && m < APST_MERGE_ENTRIES ? (uint32_t)m : APST_MERGE_ENTRIES;
    MDB_txn *t;
    int rc = store_rd_begin(s, &t);
    if (rc != 0) {
        return rc;
    }
    rc = store_each_prefixed(t, s, DB_META, row_prefix, sizeof row_prefix, ROW_KEY_BYTES, load_row,
                             g);
    store_rd_end(s, t);
    g->count_committed = g->count;
    g->next_committed = g->next;
    if (rc != 0) {
        apst_fini(g);
    }
    return rc;
}

void apst_fini(struct app_stage *g) {
    free(g->slots);
    free(g->undo);
    memset(g, 0, sizeof *g);
}

int apst_latest(struct app_stage *g, struct store *s, MDB_txn *t, const uint8_t *key, size_t kl,
                char out[NUMBER_BYTES_MAX + 1]) {
    out[0] = '\0';
    size_t ol = 0;
    const struct apst_entry *e = g->slots != NULL ? &g->slots[find_slot(g, key, kl)] : NULL;
    if (e != NULL && e->kl != 0) {
        memcpy(out, e->number, e->nl);
        ol = e->nl;
    }
    MDB_val v;
    int rc = store_get(t, s, DB_APPLICANTS, key, kl, &v);
    if (rc == APL_ENOTFOUND) {
        rc = 0;
    } else if (rc == 0 && v.mv_size > NUMBER_BYTES_MAX) {
        rc = APL_ECORRUPT;
    } else if (rc == 0 && greater(v.mv_data, v.mv_size, out, ol)) {
        memcpy(out, v.mv_data, v.mv_size);
        ol = v.mv_size;
    }
    out[ol] = '\0';
    return rc;
}

int apst_note(struct app_stage *g, struct store *s, MDB_txn *t, const uint8_t *key, size_t kl,
              const char *number) {
    char cur[NUMBER_BYTES_MAX + 1];
    int rc = apst_latest(g, s, t, key, kl, cur);
    size_t nl = strlen(number);
    if (rc != 0 || nl > NUMBER_BYTES_MAX || !greater(number, nl, cur, strlen(cur))) {
        return rc != 0 ? rc : nl > NUMBER_BYTES_MAX ? APL_EINVAL : 0;
    }
    if (!g->enabled || g->count >= APST_ENTRIES_MAX) {
        return store_put(t, s, DB_APPLICANTS, key, kl, number, nl, 0);
    }
    uint8_t rk[ROW_KEY_BYTES], row[1 + APST_KEY_BYTES_MAX + NUMBER_BYTES_MAX];
    memcpy(rk, row_prefix, sizeof row_prefix);
    be64_put(rk + 4, g->next);
    row[0] = (uint8_t)kl;
    memcpy(row + 1, key, kl);
    memcpy(row + 1 + kl, number, nl);
    rc = store_put(t, s, DB_META, rk, sizeof rk, row, 1 + kl + nl, MDB_NOOVERWRITE);
    if (rc == 0) {
        g->next++;
        rc = stage_set(g, key, kl, number, nl, true);
    }
    return rc;
}

static int delete_row(void *arg, const MDB_val *k, const MDB_val *v) {
    (void)arg;
    (void)k;
    (void)v;
    return STORE_EACH_DELETE;
}

/* Deletes every staged row. */
static int delete_rows(struct store *s, MDB_txn *t) {
    return store_each_prefixed(t, s, DB_META, row_prefix, sizeof row_prefix, ROW_KEY_BYTES,
                               delete_row, NULL);
}

/* LMDB's order of keys: bytes, then the shorter first. */
static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

static int cmp_entry(const void *a, const void *b) {
    const struct apst_entry *x = *(const struct apst_entry *const *)a;
    const struct apst_entry *y = *(const struct apst_entry *const *)b;
    return key_cmp(x->key, x->kl, y->key, y->kl);
}

/* The staged entries in key order (malloc'd; *n of them, NULL when none). */
static int sorted(const struct app_stage *g, struct apst_entry ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (g->count == 0) {
        return 0;
    }
    struct apst_entry **order = malloc(g->count * sizeof *order);
    if (order == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < APST_SLOTS; i++) {
        if (g->slots[i].kl != 0) {
            order[(*n)++] = &g->slots[i];
        }
    }
    ASSERT(*n == g->count);
    qsort(order, *n, sizeof *order, cmp_entry);
    *out = order;
    return 0;
}

int apst_settle(struct app_stage *g, struct store *s, MDB_txn *t) {
    if (!g->enabled || g->count < g->merge_at) {
        return 0;
    }
    /* In key order: each page of `applicants` is written once. */
    struct apst_entry **order;
    size_t n;
    int rc = sorted(g, &order, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct apst_entry *e = order[i];
        MDB_val v;
        rc = store_get(t, s, DB_APPLICANTS, e->key, e->kl, &v);
        if (rc == APL_ENOTFOUND || (rc == 0 && greater(e->number, e->nl, v.mv_data, v.mv_size))) {
            rc = store_put(t, s, DB_APPLICANTS, e->key, e->kl, e->number, e->nl, 0);
        }
    }
    free(order);
    if (rc == 0) {
        rc = delete_rows(s, t);
    }
    g->merged = rc == 0;
    return rc;
}

int apst_each(struct app_stage *g, struct store *s, MDB_txn *t,
              void (*fn)(void *arg, const uint8_t *key, size_t kl, const char *number, size_t nl),
              void *arg) {
    struct apst_entry **order;
    size_t n, i = 0;
    int rc = sorted(g, &order, &n);
    MDB_cursor *c = NULL;
    if (rc == 0) {
        rc = store_rc(mdb_cursor_open(t, s->dbi[DB_APPLICANTS], &c));
    }
    MDB_val k, v;
    int r = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    while (rc == 0 && (r == 0 || i < n)) {
        const struct apst_entry *e = i < n ? order[i] : NULL;
        if (r == 0 && (k.mv_size == 0 || k.mv_size > APST_KEY_BYTES_MAX)) {
            rc = APL_ECORRUPT;
            break;
        }
        int cmp = r != 0 ? 1 : e == NULL ? -1 : key_cmp(k.mv_data, k.mv_size, e->key, e->kl);
        if (cmp < 0 || (cmp == 0 && !greater(e->number, e->nl, v.mv_data, v.mv_size))) {
            fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size); /* the index's */
        } else {
            fn(arg, e->key, e->kl, e->number, e->nl); /* the staged one */
        }
        if (cmp >= 0) {
            i++;
        }
        if (cmp <= 0) {
            r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    free(order);
    return rc;
}

/* Empties the stage in memory. */
static void forget(struct app_stage *g) {
    if (g->slots != NULL) {
        memset(g->slots, 0, APST_SLOTS * sizeof *g->slots);
    }
    g->count = 0;
}

void apst_committed(struct app_stage *g) {
    if (g->merged) {
        forget(g);
    }
    g->merged = false;
    g->n_undo = 0;
    g->count_committed = g->count;
    g->next_committed = g->next;
}

void apst_rollback(struct app_stage *g) {
    while (g->n_undo > 0) {
        const struct apst_undo *u = &g->undo[--g->n_undo];
        g->slots[u->slot] = u->was;
    }
    g->count = g->count_committed;
    g->next = g->next_committed;
    g->merged = false;
}

int apst_clear(struct app_stage *g, struct store *s, MDB_txn *t) {
    int rc = delete_rows(s, t);
    forget(g);
    g->count_committed = 0;
    g->n_undo = 0;
    return rc;
}
