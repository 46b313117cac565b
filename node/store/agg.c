#include "agg.h"

#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "cal.h"
#include "lifecycle.h"
#include "pbdecode.h"
#include "store.h"

enum {
    BATCH_SLOTS = 16384, /* touched cells one batch keeps in memory */
    DELTA_DAYS = 32,     /* distinct answer delays one cell's delta keeps */
    CELL_ARENA_BYTES = 64 * 1024,
};

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void agg_fields_of(const Appeal__AppealRow *r, struct agg_fields *f) {
    memset(f, 0, sizeof *f);
    copy_str(f->region, sizeof f->region, r->received_by);
    copy_str(f->owner, sizeof f->owner, r->owner);
    copy_str(f->category, sizeof f->category, r->category);
    f->type = (uint8_t)r->type;
    f->status = (uint8_t)r->status;
    f->registered_day = r->registered_day;
    f->deadline_day = r->deadline_day;
    f->open = lifecycle_open(r->status);
    f->answered = r->first_answered_day != 0;
    f->in_term = f->answered && r->first_answer_in_term;
    f->rated = r->rating != APPEAL__RATING__RATING_UNSPECIFIED;
    f->satisfied = r->rating == APPEAL__RATING__RATING_SATISFIED;
    if (f->answered) {
        int32_t d = r->first_answered_day - r->registered_day;
        f->days_to_answer = d < 0 ? 0 : (d > AGG_DAYS_MAX ? AGG_DAYS_MAX : (uint32_t)d);
    }
}

int32_t agg_month_of(int32_t day) {
    int y;
    unsigned m, d;
    civil_from_day(day, &y, &m, &d);
    return y * 12 + (int32_t)m - 1;
}

/* A jurisdiction as its key fields: the region's code zero-padded, the
 * office's KATO code as a BE number (0 for a region). Record validation
 * bounds it (juris_valid). */
static void juris_put(uint8_t *out, const char *juris) {
    size_t rl = strcspn(juris, ".");
    ASSERT(rl <= AGG_REGION_BYTES);
    memset(out, 0, AGG_REGION_BYTES);
    memcpy(out, juris, rl);
    uint32_t office = juris[rl] == '.' ? (uint32_t)strtoul(juris + rl + 1, NULL, 10) : 0;
    be32_put(out + AGG_REGION_BYTES, office);
}

static void juris_get(const uint8_t *p, char out[JURIS_BYTES_MAX + 1]) {
    size_t rl = strnlen((const char *)p, AGG_REGION_BYTES);
    memcpy(out, p, rl);
    uint32_t office = be32_get(p + AGG_REGION_BYTES);
    if (office == 0 || office > 999999999u) {
        out[rl] = '\0';
        return;
    }
    out[rl] = '.';
    for (int i = KATO_DIGITS - 1; i >= 0; i--) {
        out[rl + 1 + (size_t)i] = (char)('0' + office % 10);
        office /= 10;
    }
    out[rl + 1 + KATO_DIGITS] = '\0';
}

/* The dimensions of a key; a rollup leaves the category out. */
static size_t dims(uint8_t *out, const struct agg_fields *f, bool rollup) {
    juris_put(out, f->region);
    juris_put(out + AGG_JURIS_BYTES, f->owner);
    size_t at = 2 * AGG_JURIS_BYTES;
    out[at++] = f->type;
    out[at++] = f->status;
    size_t cl = rollup ? 0 : strlen(f->category);
    memcpy(out + at, f->category, cl);
    return at + cl;
}

size_t agg_key_prefix(uint8_t *out, char grain, int32_t period) {
    out[0] = (uint8_t)grain;
    be32_put(out + 1, (uint32_t)period);
    return 5;
}

static size_t agg_key(uint8_t *out, char grain, const struct agg_fields *f) {
    char g = (char)(grain & ~0x20); /* the rollups are the lowercase grains */
    int32_t period = g == 'A' ? 0 : g == 'M' ? agg_month_of(f->registered_day) : f->registered_day;
    size_t at = agg_key_prefix(out, grain, period);
    return at + dims(out + at, f, grain != g);
}

static size_t due_key(uint8_t *out, const struct agg_fields *f) {
    be32_put(out, (uint32_t)f->deadline_day);
    be32_put(out + 4, (uint32_t)f->registered_day);
    return 8 + dims(out + 8, f, false);
}

/* The due rollup: no category, the registration month's first day. */
static size_t due_rollup_key(uint8_t *out, const struct agg_fields *f) {
    int32_t month = agg_month_of(f->registered_day);
    out[0] = DUE_ROLLUP;
    be32_put(out + 1, (uint32_t)f->deadline_day);
    be32_put(out + 5, (uint32_t)day_from_civil(month / 12, (unsigned)(month % 12 + 1), 1));
    return 9 + dims(out + 9, f, true);
}

static int dims_decode(const uint8_t *p, size_t len, struct agg_key *out) {
    size_t fixed = 2 * AGG_JURIS_BYTES + 2;
    if (len < fixed || len - fixed >= sizeof out->category) {
        return APL_ECORRUPT;
    }
    juris_get(p, out->region);
    juris_get(p + AGG_JURIS_BYTES, out->owner);
    out->type = p[2 * AGG_JURIS_BYTES];
    out->status = p[2 * AGG_JURIS_BYTES + 1];
    memcpy(out->category, p + fixed, len - fixed);
    out->category[len - fixed] = '\0';
    return 0;
}

int agg_key_decode(const MDB_val *k, struct agg_key *out) {
    const uint8_t *p = k->mv_data;
    if (k->mv_size < 5) {
        return APL_ECORRUPT;
    }
    memset(out, 0, sizeof *out);
    out->grain = (char)p[0];
    out->period = (int32_t)be32_get(p + 1);
    return dims_decode(p + 5, k->mv_size - 5, out);
}

int due_key_decode(const MDB_val *k, struct agg_key *out) {
    const uint8_t *p = k->mv_data;
    size_t len = k->mv_size;
    bool rollup = len > 0 && p[0] == DUE_ROLLUP;
    if (rollup) {
        p++;
        len--;
    }
    if (len < 8) {
        return APL_ECORRUPT;
    }
    memset(out, 0, sizeof *out);
    out->grain = rollup ? 'r' : 0;
    out->deadline_day = (int32_t)be32_get(p);
    out->registered_day = (int32_t)be32_get(p + 4);
    return dims_decode(p + 8, len - 8, out);
}

/* A change to one cell: of `agg` (is_due false) or of `due`. */
struct delta {
    uint8_t key[AGG_KEY_BYTES_MAX + 4];
    uint8_t len;
    bool is_due;
    int64_t count, answered, in_term, rated, satisfied;
    uint32_t n_days;
    uint32_t day[DELTA_DAYS];
    int64_t day_delta[DELTA_DAYS];
};

struct agg_batch {
    struct delta slots[BATCH_SLOTS];
    /* Each slot's key hash | 1, 0 if free: probing reads this compact
     * array, and a slot's key only when the hashes match. */
    uint32_t tag[BATCH_SLOTS];
    uint32_t used;
    uint32_t used_at[BATCH_SLOTS / 2]; /* which slots, to flush and clear only those */
};

static int due_write(struct store *s, MDB_txn *t, const struct delta *d) {
    MDB_val v;
    uint64_t n = 0;
    int rc = store_get(t, s, DB_DUE, d->key, d->len, &v);
    if (rc == 0 && v.mv_size == 8) {
        memcpy(&n, v.mv_data, 8);
    } else if (rc != 0 && rc != APL_ENOTFOUND) {
        return rc;
    }
    if (d->count < 0 && n < (uint64_t)-d->count) {
        return APL_ECORRUPT; /* below zero: derived state is wrong */
    }
    n = (uint64_t)((int64_t)n + d->count);
    if (n == 0) {
        rc = store_del(t, s, DB_DUE, d->key, d->len, NULL, 0);
        return rc == APL_ENOTFOUND ? 0 : rc; /* changes in a batch may cancel out */
    }
    return store_put(t, s, DB_DUE, d->key, d->len, &n, 8, 0);
}

/* Adds the delta's day counts into the cell's (day, count) pairs. */
static int merge_days(Appeal__AggCell *c, const struct delta *d, uint32_t *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i + 1 < c->n_days && n + 2 <= cap; i += 2) {
        out[n++] = c->days[i];
        out[n++] = c->days[i + 1];
    }
    for (uint32_t k = 0; k < d->n_days; k++) {
        size_t i = 0;
        while (i < n && out[i] != d->day[k]) {
            i += 2;
        }
        if (i == n) {
            if (n + 2 > cap || d->day_delta[k] < 0) {
                return APL_ECORRUPT;
            }
            out[n++] = d->day[k];
            out[n++] = 0;
        }
        int64_t v = (int64_t)out[i + 1] + d->day_delta[k];
        if (v < 0) {
            return APL_ECORRUPT;
        }
        out[i + 1] = (uint32_t)v;
    }
    size_t w = 0; /* drop pairs that reached zero */
    for (size_t i = 0; i < n; i += 2) {
        if (out[i + 1] != 0) {
            out[w++] = out[i];
            out[w++] = out[i + 1];
        }
    }
    /* Sorted by day, so that a cell's bytes do not depend on the order and
     * the batches in which its appeals were applied: a rebuild (one batch)
     * then equals the live store (many). Few pairs: insertion sort. */
    for (size_t i = 2; i < w; i += 2) {
        uint32_t day = out[i], count = out[i + 1];
        size_t j = i;
        for (; j >= 2 && out[j - 2] > day; j -= 2) {
            out[j] = out[j - 2];
            out[j + 1] = out[j - 1];
        }
        out[j] = day;
        out[j + 1] = count;
    }
    c->days = out;
    c->n_days = w;
    return 0;
}

static int agg_write(struct store *s, MDB_txn *t, const struct delta *d) {
    _Alignas(16) uint8_t buf[CELL_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    Appeal__AggCell empty = APPEAL__AGG_CELL__INIT, *c = &empty;
    int rc = store_get_msg(t, s, DB_AGG, d->key, d->len, &appeal__agg_cell__descriptor, &a,
                           (ProtobufCMessage **)&c);
    if (rc == APL_ENOTFOUND) {
        c = &empty;
    } else if (rc != 0) {
        return rc;
    }
    if ((d->count < 0 && c->count < (uint64_t)-d->count) ||
        (d->answered < 0 && c->answered < (uint64_t)-d->answered) ||
        (d->in_term < 0 && c->in_term < (uint64_t)-d->in_term) ||
        (d->rated < 0 && c->rated < (uint64_t)-d->rated) ||
        (d->satisfied < 0 && c->satisfied < (uint64_t)-d->satisfied)) {
        return APL_ECORRUPT;
    }
    c->count = (uint64_t)((int64_t)c->count + d->count);
    c->answered = (uint64_t)((int64_t)c->answered + d->answered);
    c->in_term = (uint64_t)((int64_t)c->in_term + d->in_term);
    c->rated = (uint64_t)((int64_t)c->rated + d->rated);
    c->satisfied = (uint64_t)((int64_t)c->satisfied + d->satisfied);
    uint32_t *days = arena_new(&a, 2 * (AGG_DAYS_MAX + 2) * sizeof *days);
    if (days == NULL || (rc = merge_days(c, d, days, 2 * (AGG_DAYS_MAX + 2))) != 0) {
        return days == NULL ? APL_ENOMEM : rc;
    }
    if (c->count == 0) {
        rc = store_del(t, s, DB_AGG, d->key, d->len, NULL, 0);
        return rc == APL_ENOTFOUND ? 0 : rc; /* changes in a batch may cancel out */
    }
    return store_put_msg(t, s, DB_AGG, d->key, d->len, &c->base);
}

static int write_delta(struct store *s, MDB_txn *t, const struct delta *d) {
    return d->is_due ? due_write(s, t, d) : agg_write(s, t, d);
}

static void delta_init(struct delta *d, const uint8_t *key, size_t len, bool is_due) {
    /* Not memset: day[] and day_delta[] are read only below n_days. */
    ASSERT(len <= sizeof d->key && len <= UINT8_MAX);
    memcpy(d->key, key, len);
    d->len = (uint8_t)len;
    d->is_due = is_due;
    d->count = d->answered = d->in_term = d->rated = d->satisfied = 0;
    d->n_days = 0;
}

/* Adds one appeal's contribution into delta d; false if its day list is
 * full (the caller writes the delta out first). */
static bool delta_add(struct delta *d, const struct agg_fields *f, int sign) {
    if (!d->is_due && f->answered) {
        uint32_t k = 0;
        while (k < d->n_days && d->day[k] != f->days_to_answer) {
            k++;
        }
        if (k == d->n_days) {
            if (k == DELTA_DAYS) {
                return false;
            }
            d->day[k] = f->days_to_answer;
            d->day_delta[k] = 0;
            d->n_days++;
        }
        d->day_delta[k] += sign;
        d->answered += sign;
        d->in_term += f->in_term ? sign : 0;
    }
    if (!d->is_due) {
        d->rated += f->rated ? sign : 0;
        d->satisfied += f->satisfied ? sign : 0;
    }
    d->count += sign;
    return true;
}

static uint32_t hash_key(const uint8_t *key, size_t len, bool is_due) {
    uint32_t h = is_due ? 0x9747b28cu : 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ key[i]) * 16777619u;
    }
    return h;
}

static int apply_one(struct agg_batch *b, struct store *s, MDB_txn *t, const uint8_t *key,
                     size_t len, bool is_due, const struct agg_fields *f, int sign) {
    if (b == NULL) {
        struct delta d;
        delta_init(&d, key, len, is_due);
        delta_add(&d, f, sign);
        return write_delta(s, t, &d);
    }
    uint32_t h = hash_key(key, len, is_due);
    uint32_t tag = h | 1u;
    for (uint32_t probe = 0; probe < BATCH_SLOTS; probe++) {
        uint32_t i = (h + probe) % BATCH_SLOTS;
        struct delta *d = &b->slots[i];
        if (b->tag[i] == 0) {
            if (b->used >= BATCH_SLOTS / 2) {
                break; /* keep the table sparse: write through instead */
            }
            delta_init(d, key, len, is_due);
            b->tag[i] = tag;
            ASSERT(b->used < BATCH_SLOTS / 2);
            b->used_at[b->used++] = i;
        } else if (b->tag[i] != tag || d->is_due != is_due || d->len != len ||
                   memcmp(d->key, key, len) != 0) {
            continue;
        }
        if (delta_add(d, f, sign)) {
            return 0;
        }
        int rc = write_delta(s, t, d); /* too many distinct delays: write it out */
        delta_init(d, key, len, is_due);
        if (rc != 0) {
            return rc;
        }
        delta_add(d, f, sign);
        return 0;
    }
    struct delta d;
    delta_init(&d, key, len, is_due);
    delta_add(&d, f, sign);
    return write_delta(s, t, &d);
}

int agg_apply(struct agg_batch *b, struct store *s, MDB_txn *t, const struct agg_fields *f,
              int sign) {
    uint8_t key[AGG_KEY_BYTES_MAX + 4];
    static const char grains[6] = {'A', 'M', 'D', 'a', 'm', 'd'};
    int rc = 0;
    for (int g = 0; g < 6 && rc == 0; g++) {
        rc = apply_one(b, s, t, key, agg_key(key, grains[g], f), false, f, sign);
    }
    if (rc == 0 && f->open) {
        rc = apply_one(b, s, t, key, due_key(key, f), true, f, sign);
    }
    if (rc == 0 && f->open) {
        rc = apply_one(b, s, t, key, due_rollup_key(key, f), true, f, sign);
    }
    return rc;
}

int agg_batch_new(struct agg_batch **out) {
    *out = calloc(1, sizeof **out);
    return *out != NULL ? 0 : APL_ENOMEM;
}

int agg_batch_flush(struct agg_batch *b, struct store *s, MDB_txn *t) {
    if (b == NULL) {
        return 0;
    }
    int rc = 0;
    for (uint32_t i = 0; i < b->used; i++) {
        struct delta *d = &b->slots[b->used_at[i]];
        if (t != NULL && rc == 0 &&
            (d->count != 0 || d->answered != 0 || d->n_days != 0 || d->rated != 0 ||
             d->satisfied != 0)) {
            rc = write_delta(s, t, d);
        }
        ASSERT(b->used_at[i] < BATCH_SLOTS && b->tag[b->used_at[i]] != 0);
        b->tag[b->used_at[i]] = 0;
    }
    b->used = 0;
    return rc;
}

void agg_batch_free(struct agg_batch *b) {
    free(b);
}
