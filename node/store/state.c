#include "state.h"
#include "chain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "assert.h"
#include "chainwalk.h"
#include "grants.h"
#include "lifecycle.h"
#include "bounds.h"
#include "olog.h"
#include "util.h"

enum {
    STATE_ROWS_ARENA_BYTES = 256 * 1024,
    EVENT_REF_BYTES = 16, /* version (4) | idx (4) | seq (8) */
    PENDING_KEY_BYTES_MAX = NUMBER_BYTES_MAX + 1 + 4,
    STATUS_KEY_BYTES_MAX = JURIS_BYTES_MAX + 1 + 1 + NUMBER_BYTES_MAX,
    DEADLINE_KEY_BYTES_MAX = JURIS_BYTES_MAX + 1 + 4 + NUMBER_BYTES_MAX,
};
/* index_del and index_put build both kinds of key in one buffer. */
_Static_assert(STATUS_KEY_BYTES_MAX <= DEADLINE_KEY_BYTES_MAX,
               "the deadline key's buffer holds a status key");
_Static_assert(EVENT_REF_BYTES == 4 + 4 + 8, "an event ref is version, origin index, seq");

int state_init(struct state *st, struct store *s) {
    memset(st, 0, sizeof *st);
    st->s = s;
    st->fold_pending = true; /* a crash may have left marks: the first idle step looks */
    int rc = arena_init(&st->rows, STATE_ROWS_ARENA_BYTES);
    if (rc == 0) {
        rc = arena_init(&st->parked, RECORD_ARENA_BYTES);
    }
    if (rc == 0) {
        rc = arena_init(&st->folding, RECORD_ARENA_BYTES);
    }
    if (rc == 0) {
        rc = apst_init(&st->applicants, s);
    }
    if (rc != 0) {
        state_fini(st);
    }
    return rc;
}

void state_fini(struct state *st) {
    agg_batch_free(st->sums);
    st->sums = NULL;
    st->batch = NULL;
    arena_fini(&st->rows);
    arena_fini(&st->parked);
    arena_fini(&st->folding);
    apst_fini(&st->applicants);
}

int state_appeal(struct store *s, MDB_txn *t, const char *number, struct arena *a,
                 Appeal__AppealRow **row) {
    return store_get_msg(t, s, DB_APPEALS, number, strlen(number), &appeal__appeal_row__descriptor,
                         a, (ProtobufCMessage **)row);
}

/* The fields that place a row in indexes and counters. */
struct row_keys {
    bool exists;
    char owner[JURIS_BYTES_MAX + 1];
    char received_by[JURIS_BYTES_MAX + 1];
    char category[32];
    char forwarded_to[JURIS_BYTES_MAX + 1];
    int type;
    Appeal__Status status;
    int32_t deadline_day;
    int32_t registered_day;
    struct agg_fields agg;
};

/* strncpy that always terminates (and is cheaper than snprintf here, on
 * the path of every applied record). */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void keys_of(const Appeal__AppealRow *r, struct row_keys *k) {
    memset(k, 0, sizeof *k);
    k->exists = true;
    copy_str(k->owner, sizeof k->owner, r->owner);
    copy_str(k->received_by, sizeof k->received_by, r->received_by);
    copy_str(k->category, sizeof k->category, r->category);
    copy_str(k->forwarded_to, sizeof k->forwarded_to, r->forwarded_to);
    k->type = r->type;
    k->status = r->status;
    k->deadline_day = r->deadline_day;
    k->registered_day = r->registered_day;
    agg_fields_of(r, &k->agg);
}

/* Record validation bounds a jurisdiction (juris_valid) and a number
 * (number_valid) before any row holds them: the keys below fit. */
static size_t status_key(uint8_t *out, const char *owner, int st, const char *number) {
    size_t ol = strlen(owner), nl = strlen(number);
    ASSERT(ol <= JURIS_BYTES_MAX && nl <= NUMBER_BYTES_MAX);
    memcpy(out, owner, ol + 1);
    out[ol + 1] = (uint8_t)st;
    memcpy(out + ol + 2, number, nl);
    return ol + 2 + nl;
}

static size_t deadline_key(uint8_t *out, const char *owner, int32_t day, const char *number) {
    size_t ol = strlen(owner), nl = strlen(number);
    ASSERT(ol <= JURIS_BYTES_MAX && nl <= NUMBER_BYTES_MAX);
    memcpy(out, owner, ol + 1);
    be32_put(out + ol + 1, (uint32_t)day);
    memcpy(out + ol + 5, number, nl);
    return ol + 5 + nl;
}

int state_batch_begin(struct state *st) {
    if (st->sums == NULL) { /* allocated once, reused by every batch */
        int rc = agg_batch_new(&st->sums);
        if (rc != 0) {
            return rc;
        }
    }
    st->batch = st->sums;
    return 0;
}

int state_batch_end(struct state *st, MDB_txn *t) {
    int rc = agg_batch_flush(st->batch, st->s, t);
    st->batch = NULL;
    return rc;
}

static int index_del(struct state *st, MDB_txn *t, const struct row_keys *k, const char *number) {
    struct store *s = st->s;
    uint8_t key[DEADLINE_KEY_BYTES_MAX];
    int rc =
        store_del(t, s, DB_BY_STATUS, key, status_key(key, k->owner, k->status, number), NULL, 0);
    if (rc == 0 && lifecycle_open(k->status)) {
        rc = store_del(t, s, DB_BY_DEADLINE, key,
                       deadline_key(key, k->owner, k->deadline_day, number), NULL, 0);
    }
    if (rc == 0 && k->status == APPEAL__STATUS__STATUS_FORWARDED) {
        rc = store_del(t, s, DB_BY_STATUS, key,
                       status_key(key, k->forwarded_to, STATUS_KEY_INCOMING, number), NULL, 0);
    }
    return rc == 0 ? agg_apply(st->batch, s, t, &k->agg, -1) : rc;
}

static int index_put(struct state *st, MDB_txn *t, const struct row_keys *k, const char *number) {
    struct store *s = st->s;
    uint8_t key[DEADLINE_KEY_BYTES_MAX];
    int rc =
        store_put(t, s, DB_BY_STATUS, key, status_key(key, k->owner, k->status, number), "", 0, 0);
    if (rc == 0 && lifecycle_open(k->status)) {
        rc = store_put(t, s, DB_BY_DEADLINE, key,
                       deadline_key(key, k->owner, k->deadline_day, number), "", 0, 0);
    }
    if (rc == 0 && k->status == APPEAL__STATUS__STATUS_FORWARDED) {
        /* The receiver's queue: forwarded to it, waiting for acceptance. */
        rc = store_put(t, s, DB_BY_STATUS, key,
                       status_key(key, k->forwarded_to, STATUS_KEY_INCOMING, number), "", 0, 0);
    }
    return rc == 0 ? agg_apply(st->batch, s, t, &k->agg, +1) : rc;
}

static int save_row(struct state *st, MDB_txn *t, const struct row_keys *old,
                    const Appeal__AppealRow *row, uint32_t idx, uint64_t seq) {
    struct store *s = st->s;
    int rc = store_put_msg(t, s, DB_APPEALS, row->number, strlen(row->number), &row->base);
    if (rc == 0 && old->exists) {
        rc = index_del(st, t, old, row->number);
    }
    struct row_keys now;
    keys_of(row, &now);
    if (rc == 0) {
        rc = index_put(st, t, &now, row->number);
    }
    uint8_t ref[EVENT_REF_BYTES];
    be32_put(ref, row->version);
    be32_put(ref + 4, idx);
    be64_put(ref + 8, seq);
    if (rc == 0) {
        rc = store_put(t, s, DB_EVENTS, row->number, strlen(row->number), ref, sizeof ref, 0);
    }
    return rc;
}

static void ignored(struct state *st, const struct origin_state *o, uint64_t seq,
                    const char *number, const char *why) {
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);
    st->ignored++;
    olog(OLOG_WARN, "event_ignored", "origin", o->juris, "seq", seqs, "number", number, "why", why,
         NULL);
}

static int regno_note(struct store *s, MDB_txn *t, const char *number) {
    char juris[16];
    number_juris(number, juris);
    const char *p = number + strlen(juris) + 1;
    int year = atoi(p);
    long n = atol(p + 5);
    uint8_t key[JURIS_BYTES_MAX + 5];
    size_t jl = strlen(juris);
    memcpy(key, juris, jl + 1);
    be32_put(key + jl + 1, (uint32_t)year);
    MDB_val v;
    int rc = store_get(t, s, DB_REGNO, key, jl + 5, &v);
    uint32_t last = 0;
    if (rc == 0 && v.mv_size == 4) {
        last = be32_get(v.mv_data);
    } else if (rc != APL_ENOTFOUND && rc != 0) {
        return rc;
    }
    if ((uint32_t)n <= last) {
        return 0;
    }
    uint8_t val[4];
    be32_put(val, (uint32_t)n);
    return store_put(t, s, DB_REGNO, key, jl + 5, val, 4, 0);
}

int state_regno(struct store *s, MDB_txn *t, const char *juris, int year, uint32_t *last) {
    uint8_t key[JURIS_BYTES_MAX + 5];
    size_t jl = strlen(juris);
    if (jl > JURIS_BYTES_MAX) {
        return APL_EINVAL;
    }
    memcpy(key, juris, jl + 1);
    be32_put(key + jl + 1, (uint32_t)year);
    MDB_val v;
    int rc = store_get(t, s, DB_REGNO, key, jl + 5, &v);
    *last = rc == 0 && v.mv_size == 4 ? be32_get(v.mv_data) : 0;
    return rc == APL_ENOTFOUND ? 0 : rc;
}

size_t applicant_key(uint8_t *out, const uint8_t tag[APPLICANT_TAG_BYTES], const char *category) {
    size_t cl = strnlen(category, 31);
    memcpy(out, tag, APPLICANT_TAG_BYTES);
    memcpy(out + APPLICANT_TAG_BYTES, category, cl);
    return APPLICANT_TAG_BYTES + cl;
}

/* Remembers the latest appeal of an applicant on a category. "Latest" is
 * the greatest number, so every node agrees whatever the order. */
static int applicant_note(struct state *st, MDB_txn *t, const ProtobufCBinaryData *tag,
                          const char *category, const char *number) {
    if (tag->len != APPLICANT_TAG_BYTES) {
        return 0;
    }
    uint8_t key[APPLICANT_TAG_BYTES + 32];
    size_t kl = applicant_key(key, tag->data, category);
    return apst_note(&st->applicants, st->s, t, key, kl, number);
}

static int apply_filed(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                       const Appeal__AppealFiled *f) {
    MDB_val v;
    int rc = store_get(t, st->s, DB_APPEALS, f->number, strlen(f->number), &v);
    if (rc == 0) {
        ignored(st, o, seq, f->number, "number already registered");
        return 0;
    }
    if (rc != APL_ENOTFOUND) {
        return rc;
    }
    char juris[16];
    number_juris(f->number, juris);
    if (strcmp(juris, o->juris) != 0 || strcmp(f->jurisdiction, o->juris) != 0) {
        ignored(st, o, seq, f->number, "filed under another jurisdiction's number");
        return 0;
    }
    Appeal__AppealRow row = APPEAL__APPEAL_ROW__INIT;
    Appeal__LogRef at = APPEAL__LOG_REF__INIT;
    at.origin_idx = o->idx;
    at.seq = seq;
    row.number = f->number;
    row.type = f->type;
    row.category = f->category;
    row.owner = f->jurisdiction;
    row.received_by = f->jurisdiction;
    row.status = APPEAL__STATUS__STATUS_REGISTERED;
    row.registered_ms = f->registered_ms;
    row.registered_day = f->registered_day;
    row.deadline_day = f->deadline_day;
    row.term_day = f->deadline_day;
    row.anonymous = f->anonymous;
    row.co_signers = f->co_signers;
    row.repeat_of = f->repeat_of;
    row.complaint_of = f->complaint_of;
    row.urgent = f->urgent;
    row.lang = f->lang;
    row.learned_day = f->learned_day;
    row.applicant_tag = f->applicant_tag;
    row.term_start_day = f->registered_day;
    row.sealed_at = f->sealed.len > 0 ? &at : NULL;
    struct row_keys none = {0};
    rc = save_row(st, t, &none, &row, o->idx, seq);
    if (rc == 0) {
        rc = regno_note(st->s, t, f->number);
    }
    if (rc == 0) {
        rc = applicant_note(st, t, &f->applicant_tag, f->category, f->number);
    }
    return rc;
}

/* What a forward, its acceptance or its return changes in `row`. */
static void change_forward(Appeal__AppealRow *row, const Appeal__Body *b, Appeal__LogRef *at) {
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_FORWARDED:
        row->status_before_forward = row->status;
        row->status = APPEAL__STATUS__STATUS_FORWARDED;
        row->forwarded_to = b->forwarded->to_jurisdiction;
        row->forwarded_late = b->forwarded->late;
        break;
    case APPEAL__BODY__EVENT_ACCEPTED:
        row->owner = row->forwarded_to;
        row->forwarded_to = "";
        row->status = APPEAL__STATUS__STATUS_REGISTERED;
        row->status_before_forward = APPEAL__STATUS__STATUS_UNSPECIFIED;
        row->deadline_day = b->accepted->deadline_day;
        row->term_day = b->accepted->deadline_day;
        row->assignee = "";
        row->sealed_at = b->accepted->sealed.len > 0 ? at : NULL;
        row->applicant_tag = b->accepted->applicant_tag;
        row->term_start_day = b->accepted->start_day;
        break;
    default:
        ASSERT(b->event_case == APPEAL__BODY__EVENT_RETURNED);
        row->status = row->status_before_forward;
        row->status_before_forward = APPEAL__STATUS__STATUS_UNSPECIFIED;
        row->forwarded_to = "";
        break;
    }
}

/* What event `b` changes in `row`; `at` (the event's log position) must
 * outlive the row's save. APL_EINVAL for an event that is not an action
 * on an appeal. */
static int change_row(Appeal__AppealRow *row, const Appeal__Body *b, Appeal__LogRef *at) {
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_ASSIGNED:
        row->assignee = b->assigned->assignee;
        if (row->status != APPEAL__STATUS__STATUS_EXTENDED) {
            row->status = APPEAL__STATUS__STATUS_ASSIGNED;
        }
        break;
    case APPEAL__BODY__EVENT_EXTENDED:
        row->deadline_day = b->extended->until_day;
        row->status = APPEAL__STATUS__STATUS_EXTENDED;
        break;
    case APPEAL__BODY__EVENT_FORWARDED:
    case APPEAL__BODY__EVENT_ACCEPTED:
    case APPEAL__BODY__EVENT_RETURNED:
        change_forward(row, b, at);
        break;
    case APPEAL__BODY__EVENT_ANSWERED:
        row->status = APPEAL__STATUS__STATUS_ANSWERED;
        row->outcome = b->answered->outcome;
        row->answered_day = b->answered->answered_day;
        if (row->first_answered_day == 0) {
            row->first_answered_day = b->answered->answered_day;
            row->first_answer_in_term = b->answered->answered_day <= row->deadline_day;
        }
        row->answer_at = at;
        break;
    case APPEAL__BODY__EVENT_CLOSED:
        row->status = APPEAL__STATUS__STATUS_CLOSED;
        row->closed_day = b->closed->closed_day;
        break;
    case APPEAL__BODY__EVENT_REOPENED:
        row->status = APPEAL__STATUS__STATUS_REOPENED;
        row->deadline_day = b->reopened->deadline_day;
        row->term_day = b->reopened->deadline_day;
        row->term_start_day = b->reopened->start_day;
        row->answered_day = 0;
        row->closed_day = 0;
        break;
    case APPEAL__BODY__EVENT_WITHDRAWN:
        row->status = APPEAL__STATUS__STATUS_WITHDRAWN;
        break;
    case APPEAL__BODY__EVENT_RATED:
        row->rating = b->rated->rating; /* the status stays */
        break;
    default:
        return APL_EINVAL;
    }
    return 0;
}

/* Applies an event that continues `row` (version = row->version + 1). */
static int apply_event(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                       const Appeal__Body *b, Appeal__AppealRow *row) {
    ASSERT(b->event_case != APPEAL__BODY__EVENT_FILED); /* filings are apply_filed's */
    const char *may_act =
        row->status == APPEAL__STATUS__STATUS_FORWARDED ? row->forwarded_to : row->owner;
    if (strcmp(o->juris, may_act) != 0) {
        ignored(st, o, seq, row->number, "origin may not act on this appeal");
        return 0;
    }
    if (!lifecycle_allowed(b->event_case, row->status)) {
        ignored(st, o, seq, row->number, "transition not allowed");
        return 0;
    }
    if (b->event_case == APPEAL__BODY__EVENT_RATED && row->rating != 0) {
        ignored(st, o, seq, row->number, "already rated: the first rating counts");
        return 0;
    }
    struct row_keys old;
    keys_of(row, &old);
    Appeal__LogRef at = APPEAL__LOG_REF__INIT;
    at.origin_idx = o->idx;
    at.seq = seq;
    uint32_t before = row->version;
    int rc = change_row(row, b, &at);
    if (rc != 0) {
        return rc;
    }
    row->version++;
    ASSERT(row->version == before + 1); /* a history is a line: one step at a time */
    rc = save_row(st, t, &old, row, o->idx, seq);
    if (rc == 0 && b->event_case == APPEAL__BODY__EVENT_ACCEPTED) {
        rc = applicant_note(st, t, &b->accepted->applicant_tag, row->category, row->number);
    }
    return rc;
}

static size_t pending_key(uint8_t *out, const char *number, uint32_t version) {
    size_t nl = strlen(number);
    ASSERT(nl <= NUMBER_BYTES_MAX);
    memcpy(out, number, nl + 1);
    be32_put(out + nl + 1, version);
    return nl + 5;
}

/* Hash of the record at a log position, for tie-breaks. */
static int hash_at(struct state *st, MDB_txn *t, uint32_t idx, uint64_t seq,
                   uint8_t out[HASH_BYTES]) {
    MDB_val env;
    int rc = chain_get(st->s, t, idx, seq, &env);
    if (rc == 0) {
        rec_hash(env.mv_data, env.mv_size, out);
    }
    return rc;
}

static int park(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                const char *number, uint32_t version) {
    uint8_t key[PENDING_KEY_BYTES_MAX], ref[CHAIN_KEY_BYTES];
    size_t kl = pending_key(key, number, version);
    chain_key(ref, o->idx, seq);
    MDB_val old;
    int rc = store_get(t, st->s, DB_PENDING, key, kl, &old);
    if (rc == 0 && old.mv_size == CHAIN_KEY_BYTES &&
        memcmp(old.mv_data, ref, CHAIN_KEY_BYTES) != 0) {
        /* Two different events claim the same place in one appeal: only a
         * misbehaving origin does that. Keep the one with the smaller
         * record hash, so that every node keeps the same whatever the
         * order they arrived in. */
        uint8_t h_old[HASH_BYTES], h_new[HASH_BYTES];
        rc = hash_at(st, t, be32_get(old.mv_data), be64_get((const uint8_t *)old.mv_data + 4),
                     h_old);
        if (rc == 0) {
            rc = hash_at(st, t, o->idx, seq, h_new);
        }
        ignored(st, o, seq, number, "two events for one place in the appeal's history");
        if (rc != 0 || memcmp(h_new, h_old, HASH_BYTES) >= 0) {
            return rc;
        }
    } else if (rc != 0 && rc != APL_ENOTFOUND) {
        return rc;
    }
    return store_put(t, st->s, DB_PENDING, key, kl, ref, sizeof ref, 0);
}

/* Applies parked events that now continue the appeal, in version order. */
static int drain(struct state *st, MDB_txn *t, const char *number_in) {
    MDB_stat ps;
    if (mdb_stat(t, st->s->dbi[DB_PENDING], &ps) == 0 && ps.ms_entries == 0) {
        return 0; /* nothing parked: the common case, one O(1) look */
    }
    char number[NUMBER_BYTES_MAX + 1];
    snprintf(number, sizeof number, "%s", number_in);
    for (;;) {
        arena_reset(&st->rows);
        Appeal__AppealRow *row;
        int rc = state_appeal(st->s, t, number, &st->rows, &row);
        if (rc != 0) {
            return rc == APL_ENOTFOUND ? 0 : rc;
        }
        uint8_t key[PENDING_KEY_BYTES_MAX];
        size_t kl = pending_key(key, number, row->version + 1);
        MDB_val ref;
        rc = store_get(t, st->s, DB_PENDING, key, kl, &ref);
        if (rc == APL_ENOTFOUND) {
            return 0;
        }
        if (rc != 0 || ref.mv_size != CHAIN_KEY_BYTES) {
            return rc != 0 ? rc : APL_ECORRUPT;
        }
        uint32_t idx = be32_get(ref.mv_data);
        uint64_t seq = be64_get((const uint8_t *)ref.mv_data + 4);
        struct origin_state o;
        MDB_val env;
        struct record r;
        arena_reset(&st->parked);
        rc = chain_origin_by_idx(st->s, t, idx, &o);
        if (rc == 0) {
            rc = chain_get(st->s, t, idx, seq, &env);
        }
        if (rc == 0) {
            rc =
                rec_decode(env.mv_data, env.mv_size, &st->parked, &r, NULL) == 0 ? 0 : APL_ECORRUPT;
        }
        if (rc == 0) {
            rc = store_del(t, st->s, DB_PENDING, key, kl, NULL, 0);
        }
        if (rc == 0) {
            uint32_t before = row->version;
            rc = apply_event(st, t, &o, seq, r.body, row);
            if (rc == 0 && row->version == before) {
                return 0; /* ignored: what follows it stays parked */
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
}

static int apply_appeal(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                        const Appeal__Body *b) {
    if (b->event_case == APPEAL__BODY__EVENT_FILED) {
        int rc = apply_filed(st, t, o, seq, b->filed);
        return rc == 0 ? drain(st, t, b->filed->number) : rc;
    }
    const char *number;
    uint32_t version;
    rec_appeal_ref(b, &number, &version);
    arena_reset(&st->rows);
    Appeal__AppealRow *row = NULL;
    int rc = state_appeal(st->s, t, number, &st->rows, &row);
    if (rc != 0 && rc != APL_ENOTFOUND) {
        return rc;
    }
    if (row == NULL || version > row->version + 1) {
        return park(st, t, o, seq, number, version);
    }
    if (version <= row->version) {
        ignored(st, o, seq, number, "stale or conflicting version");
        return 0;
    }
    ASSERT(version == row->version + 1);
    rc = apply_event(st, t, o, seq, b, row);
    return rc == 0 ? drain(st, t, number) : rc;
}

int state_apply(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                const Appeal__Body *b) {
    ASSERT(seq > 0 && seq <= o->head_seq); /* folded once it is in the log */
    const char *number;
    uint32_t version;
    if (rec_appeal_ref(b, &number, &version)) {
        return apply_appeal(st, t, o, seq, b);
    }
    /* genesis, heartbeat, rotation: origin-level, handled by chain_append */
    return grant_apply(st->s, t, o->idx, seq, b);
}

/* ---- the fold behind the log ---- */

enum {
    FOLD_KEY_BYTES = 8,     /* "fold" | origin index (4, BE) */
    FOLD_ORIGINS_MAX = 256, /* origins one fold step looks at; the rest wait for the next */
    FOLD_ENOUGH = 1,        /* fold_one: the step's budget is spent (not an error) */
};

static void fold_key(uint8_t k[FOLD_KEY_BYTES], uint32_t idx) {
    memcpy(k, "fold", 4);
    be32_put(k + 4, idx);
}

int state_folded(struct store *s, MDB_txn *t, uint32_t idx, uint64_t head, uint64_t *folded) {
    uint8_t k[FOLD_KEY_BYTES];
    fold_key(k, idx);
    MDB_val v;
    int rc = store_get(t, s, DB_META, k, sizeof k, &v);
    if (rc == APL_ENOTFOUND) {
        *folded = head;
        return 0;
    }
    if (rc == 0 && v.mv_size != 8) {
        rc = APL_ECORRUPT;
    }
    if (rc == 0) {
        *folded = be64_get(v.mv_data);
    }
    return rc;
}

int state_fold_defer(struct store *s, MDB_txn *t, uint32_t idx, uint64_t head) {
    uint8_t k[FOLD_KEY_BYTES], v[8];
    fold_key(k, idx);
    be64_put(v, head);
    int rc = store_put(t, s, DB_META, k, sizeof k, v, sizeof v, MDB_NOOVERWRITE);
    return rc == APL_EEXIST ? 0 : rc;
}

struct marks_visit {
    int (*fn)(void *, uint32_t, uint64_t);
    void *arg;
};

static int visit_mark(void *arg, const MDB_val *k, const MDB_val *v) {
    const struct marks_visit *mv = arg;
    if (v->mv_size != 8) {
        return APL_ECORRUPT;
    }
    return mv->fn == NULL
               ? STORE_EACH_DELETE
               : mv->fn(mv->arg, be32_get((const uint8_t *)k->mv_data + 4), be64_get(v->mv_data));
}

/* Visits the marks in origin order: fn(arg, idx, seq), or deletes them
 * (fn NULL: rebuild folds everything). */
static int fold_marks(struct store *s, MDB_txn *t, int (*fn)(void *, uint32_t, uint64_t),
                      void *arg) {
    struct marks_visit mv = {fn, arg};
    return store_each_prefixed(t, s, DB_META, "fold", 4, FOLD_KEY_BYTES, visit_mark, &mv);
}

static int fold_any(void *arg, uint32_t idx, uint64_t seq) {
    (void)idx;
    (void)seq;
    *(bool *)arg = true;
    return FOLD_ENOUGH;
}

int state_fold_behind(struct store *s, MDB_txn *t, bool *behind) {
    *behind = false;
    int rc = fold_marks(s, t, fold_any, behind);
    return rc == FOLD_ENOUGH ? 0 : rc;
}

struct fold_list {
    uint32_t idx[FOLD_ORIGINS_MAX];
    uint64_t seq[FOLD_ORIGINS_MAX];
    size_t n;
    bool more; /* more marks than the list holds */
};

static int fold_list_add(void *arg, uint32_t idx, uint64_t seq) {
    struct fold_list *l = arg;
    if (l->n == FOLD_ORIGINS_MAX) {
        l->more = true;
        return FOLD_ENOUGH;
    }
    l->idx[l->n] = idx;
    l->seq[l->n++] = seq;
    return 0;
}

struct fold {
    struct state *st;
    MDB_txn *t;
    struct origin_state o;
    uint64_t upto;  /* fold no further than this seq in this step */
    uint64_t last;  /* folded up to here */
    uint64_t bytes; /* the log bytes of the records folded */
};

/* One record of the log into the derived tables: its appeal's row,
 * indexes and cells (origin-level records were applied when appended). */
static int fold_one(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct fold *f = arg;
    if (seq > f->upto) {
        return FOLD_ENOUGH;
    }
    if (seq != f->last + 1) {
        return APL_ECORRUPT; /* the log has a hole below its head */
    }
    arena_reset(&f->st->folding);
    struct record r;
    if (rec_decode(env, len, &f->st->folding, &r, NULL) != 0 || r.body->seq != seq) {
        return APL_ECORRUPT;
    }
    const char *number;
    uint32_t version;
    int rc = 0;
    if (rec_appeal_ref(r.body, &number, &version)) {
        rc = apply_appeal(f->st, f->t, &f->o, seq, r.body);
    }
    f->last = rc == 0 ? seq : f->last;
    f->bytes += rc == 0 ? len : 0;
    return rc;
}

/* Folds origin `idx` from mark `seq` on, at most `budget` records. */
static int fold_origin(struct state *st, MDB_txn *t, uint32_t idx, uint64_t seq, uint64_t budget,
                       uint64_t *folded, uint64_t *bytes, bool *behind) {
    struct fold f = {.st = st, .t = t, .last = seq};
    int rc = chain_origin_by_idx(st->s, t, idx, &f.o);
    if (rc != 0) {
        return rc;
    }
    f.upto =
        f.o.head_seq <= seq ? seq : (f.o.head_seq - seq > budget ? seq + budget : f.o.head_seq);
    if (seq < f.upto) {
        rc = chain_each(st->s, t, idx, seq + 1, fold_one, &f);
        rc = rc == FOLD_ENOUGH ? 0 : rc;
    }
    if (rc == 0 && f.last < f.upto) {
        rc = APL_ECORRUPT; /* the log ends below the origin's head */
    }
    *folded = f.last - seq;
    *bytes += f.bytes;
    *behind = f.last < f.o.head_seq;
    uint8_t k[FOLD_KEY_BYTES], v[8];
    fold_key(k, idx);
    be64_put(v, f.last);
    if (rc == 0 && *behind) {
        rc = store_put(t, st->s, DB_META, k, sizeof k, v, sizeof v, 0);
    } else if (rc == 0) {
        rc = store_del(t, st->s, DB_META, k, sizeof k, NULL, 0); /* caught up */
    }
    return rc;
}

int state_fold_step(struct state *st, MDB_txn *t, uint64_t budget, uint64_t *folded,
                    uint64_t *bytes, bool *more) {
    struct fold_list l;
    l.n = 0;
    l.more = false;
    *folded = 0;
    *bytes = 0;
    int rc = fold_marks(st->s, t, fold_list_add, &l);
    rc = rc == FOLD_ENOUGH ? 0 : rc;
    *more = l.more;
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        if (*folded >= budget) {
            *more = true;
            break;
        }
        uint64_t n = 0;
        bool behind = false;
        rc = fold_origin(st, t, l.idx[i], l.seq[i], budget - *folded, &n, bytes, &behind);
        *folded += n;
        *more = *more || behind;
    }
    return rc;
}

/* ---- rebuild ---- */

struct rebuild {
    struct store *s;
    MDB_txn *t;
    struct state st;
    struct origin_state o;
    struct arena a;
    struct walk w;
    uint64_t since_commit;
    uint64_t records;
    struct errbuf *e;
};

/* After the walker recomputed the record's place and link (its own log,
 * written verified: no signature checked, WALK_SIGS_NONE). */
static int rebuild_apply(void *arg, const struct walk_rec *r) {
    struct rebuild *rb = arg;
    ASSERT(r->body != NULL && r->seq == rb->o.head_seq + 1);
    /* Re-derive the head in memory; the stored row is written at the end. */
    rb->o.head_seq = r->seq;
    memcpy(rb->o.head_hash, r->hash, HASH_BYTES);
    rb->o.head_time_ms = r->body->time_ms;
    chain_origin_event(&rb->o, r->body); /* the same as when it was appended */
    rb->records++;
    return state_apply(&rb->st, rb->t, &rb->o, r->seq, r->body);
}

static int rebuild_one(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct rebuild *rb = arg;
    int f = walk_step(&rb->w, seq, env, len, false);
    if (f == WALK_OK) {
        return 0;
    }
    if (f == WALK_CALLER) {
        return rb->w.fn_rc;
    }
    if (f == WALK_DECODE) {
        return err_set(rb->e, APL_ECORRUPT, "origin %s seq %llu: record does not decode",
                       rb->o.juris, (unsigned long long)seq);
    }
    return err_set(rb->e, APL_ECHAIN, "origin %s seq %llu: chain broken (run verify)", rb->o.juris,
                   (unsigned long long)seq);
}

static int rebuild_origin(struct rebuild *rb, uint32_t idx) {
    struct origin_state stored;
    int rc = chain_origin_by_idx(rb->s, rb->t, idx, &stored);
    if (rc != 0) {
        return err_set(rb->e, rc, "origin index %u has no origin row", idx);
    }
    rb->o = stored;
    rb->o.head_seq = 0;
    memset(rb->o.head_hash, 0, HASH_BYTES);
    memcpy(rb->o.signing_key, rb->o.pk, KEY_PK_BYTES);
    walk_init(&rb->w, rb->o.pk, 0, NULL, rb->o.pk, &rb->a);
    rb->w.sigs = WALK_SIGS_NONE;
    rb->w.genesis_check = false; /* as before: verify checks seq 1, rebuild trusts it */
    rb->w.fn = rebuild_apply;
    rb->w.arg = rb;
    rc = chain_each(rb->s, rb->t, idx, 1, rebuild_one, rb);
    if (rc != 0) {
        return rc;
    }
    if (rb->o.head_seq != stored.head_seq) {
        char n[64];
        snprintf(n, sizeof n, "%llu/%llu", (unsigned long long)rb->o.head_seq,
                 (unsigned long long)stored.head_seq);
        olog(OLOG_WARN, "rebuild_head_differs", "origin", rb->o.juris, "log/row", n, NULL);
    }
    rb->o.head_received_ms = stored.head_received_ms;
    return chain_origin_save(rb->s, rb->t, &rb->o);
}

static int rebuild_once(struct store *s, struct errbuf *e) {
    struct rebuild rb;
    memset(&rb, 0, sizeof rb);
    rb.s = s;
    rb.e = e;
    int rc = state_init(&rb.st, s);
    if (rc == 0) {
        rc = arena_init(&rb.a, RECORD_ARENA_BYTES);
    }
    if (rc == 0) {
        rc = store_wr_begin(s, &rb.t);
    }
    if (rc == 0) {
        rc = state_batch_begin(&rb.st);
    }
    for (int db = 0; rc == 0 && db < DB_COUNT; db++) {
        if (store_db_derived((enum store_db)db)) {
            rc = store_drop(rb.t, s, (enum store_db)db);
        }
    }
    if (rc == 0) {
        rc = fold_marks(s, rb.t, NULL, NULL); /* rebuild folds every record */
    }
    if (rc == 0) {
        rc = apst_clear(&rb.st.applicants, s, rb.t); /* and notes every applicant again */
    }
    MDB_cursor *c = NULL;
    if (rc == 0) {
        rc = store_rc(mdb_cursor_open(rb.t, s->dbi[DB_ORIGIN_IDX], &c));
    }
    uint32_t idxs[4096];
    size_t n = 0;
    MDB_val k, v;
    for (int m = c ? mdb_cursor_get(c, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
         rc == 0 && m == 0 && n < 4096; m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        idxs[n++] = be32_get(k.mv_data);
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = rebuild_origin(&rb, idxs[i]);
    }
    int rc2 = state_batch_end(&rb.st, rc == 0 ? rb.t : NULL);
    rc = rc != 0 ? rc : rc2;
    if (rb.t != NULL) {
        if (rc == 0) {
            rc = store_commit(s, rb.t);
        } else {
            store_abort(s, rb.t);
        }
    }
    if (rc == 0) {
        char recs[24], ign[24];
        snprintf(recs, sizeof recs, "%llu", (unsigned long long)rb.records);
        snprintf(ign, sizeof ign, "%llu", (unsigned long long)rb.st.ignored);
        olog(OLOG_INFO, "rebuilt", "records", recs, "ignored_events", ign, NULL);
    } else if (e != NULL && e->msg[0] == '\0') {
        err_set(e, rc, "rebuild failed: %s", apl_strerror(rc));
    }
    arena_fini(&rb.a);
    state_fini(&rb.st);
    return rc;
}

int state_rebuild(struct store *s, struct errbuf *e) {
    /* One transaction rewrites every derived table while the pages of the
     * old ones stay allocated until it commits: ask for a map of twice
     * what is in use, and more (it is address space, not disk). Should
     * that still be short, grow and start again: nothing was committed. */
    uint64_t map, used;
    uint32_t readers;
    int rc = store_usage(s, &map, &used, &readers);
    if (rc == 0) {
        rc = store_reserve(s, 2 * used + (256ull << 20));
    }
    while (rc == 0) {
        rc = rebuild_once(s, e);
        if (rc != APL_EMAPFULL || store_grow(s) != 0) {
            break;
        }
        rc = 0;
        if (e != NULL) {
            err_clear(e);
        }
    }
    return rc;
}
