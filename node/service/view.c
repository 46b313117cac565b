#include "view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "appeal.h"
#include "cal.h"
#include "lifecycle.h"
#include "bounds.h"
#include "chain.h"
#include "node.h"
#include "record.h"
#include "state.h"

#define NEW(a, T, init)                                                                            \
    __extension__({                                                                                \
        T *p_ = arena_new((a), sizeof(T));                                                         \
        if (p_ != NULL) {                                                                          \
            init(p_);                                                                              \
        }                                                                                          \
        p_;                                                                                        \
    })

bool view_overdue(const struct node *n, const Appeal__AppealRow *row, int32_t today,
                  int32_t *days) {
    bool over = lifecycle_open(row->status) && today > row->deadline_day;
    if (days != NULL) {
        *days = over ? cal_working_between(&n->rules.cal, row->deadline_day, today) : 0;
    }
    return over;
}

/* An official's reason as this caller may read it (docs/record-format.md
 * 7.6): the text where this node can open it and the caller's role reads
 * personal data, else only that one exists. "" when there is none. */
static int reason_shown(struct node *n, const Appeal__Body *b, bool may_read, struct arena *a,
                        const char **out) {
    static const char sealed[] = "(reason sealed)";
    struct rec_reason r;
    *out = "";
    if (!rec_reason_of(b, &r)) {
        return 0;
    }
    if (r.sealed->len != 0 && !may_read) {
        *out = sealed;
        return 0;
    }
    char *text;
    int rc = appeal_open_reason(&n->eng.keys, b, a, &text);
    if (rc == APL_EAUTH) {
        *out = sealed; /* sealed under a key this node lacks */
        return 0;
    }
    if (rc == 0) {
        *out = text;
    }
    return rc;
}

static char *detail_of(struct arena *a, const Appeal__Body *b, const char *reason) {
    char d[11];
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_FILED:
        day_format(b->filed->deadline_day, d);
        return arena_printf(a, "registered by %s as %s, category %s, deadline %s%s%s%s%s",
                            b->filed->jurisdiction, appeal_type_name(b->filed->type),
                            b->filed->category, d, b->filed->urgent ? ", urgent" : "",
                            b->filed->co_signers ? ", collective" : "", reason[0] ? "; late: " : "",
                            reason);
    case APPEAL__BODY__EVENT_ASSIGNED:
        return arena_printf(a, "assigned to %s", b->assigned->assignee);
    case APPEAL__BODY__EVENT_EXTENDED:
        day_format(b->extended->until_day, d);
        return arena_printf(a, "extended until %s: %s", d, reason);
    case APPEAL__BODY__EVENT_FORWARDED:
        return arena_printf(a, "forwarded to %s: %s%s", b->forwarded->to_jurisdiction, reason,
                            b->forwarded->late ? " (after the term)" : "");
    case APPEAL__BODY__EVENT_ACCEPTED:
        day_format(b->accepted->deadline_day, d);
        return arena_printf(a, "accepted, deadline %s", d);
    case APPEAL__BODY__EVENT_RETURNED:
        return arena_printf(a, "returned: %s", reason);
    case APPEAL__BODY__EVENT_ANSWERED:
        return arena_printf(a, "answered: %s", outcome_name(b->answered->outcome));
    case APPEAL__BODY__EVENT_CLOSED:
        return arena_strdup(a, "closed");
    case APPEAL__BODY__EVENT_REOPENED:
        day_format(b->reopened->deadline_day, d);
        return arena_printf(a, "reopened: %s; deadline %s", reason, d);
    case APPEAL__BODY__EVENT_WITHDRAWN:
        return arena_printf(a, "withdrawn%s%s", reason[0] ? ": " : "", reason);
    default:
        return arena_strdup(a, rec_kind(b));
    }
}

static int history(struct node *n, MDB_txn *t, const char *number, bool may_read, struct arena *a,
                   Appeal__AppealView *v) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, n->eng.store.dbi[DB_EVENTS], &c));
    if (rc != 0) {
        return rc;
    }
    v->history = arena_new(a, HISTORY_SHOWN_MAX * sizeof *v->history);
    if (v->history == NULL) {
        mdb_cursor_close(c);
        return APL_ENOMEM;
    }
    MDB_val k = {strlen(number), (void *)number}, val;
    struct origin_state o = {0};
    for (int m = mdb_cursor_get(c, &k, &val, MDB_SET_KEY);
         m == 0 && v->n_history < HISTORY_SHOWN_MAX && rc == 0;
         m = mdb_cursor_get(c, &k, &val, MDB_NEXT_DUP)) {
        const uint8_t *ref = val.mv_data;
        uint32_t idx = be32_get(ref + 4);
        uint64_t seq = be64_get(ref + 8);
        if (o.idx != idx && (rc = chain_origin_by_idx(&n->eng.store, t, idx, &o)) != 0) {
            break;
        }
        MDB_val env;
        struct record r;
        rc = chain_get(&n->eng.store, t, idx, seq, &env);
        if (rc == 0 && rec_decode(env.mv_data, env.mv_size, a, &r, NULL) != 0) {
            rc = APL_ECORRUPT;
        }
        Appeal__HistoryEntry *h = NEW(a, Appeal__HistoryEntry, appeal__history_entry__init);
        if (rc == 0 && h == NULL) {
            rc = APL_ENOMEM;
        }
        const char *reason = "";
        if (rc == 0) {
            rc = reason_shown(n, r.body, may_read, a, &reason);
        }
        if (rc == 0) {
            h->kind = (char *)rec_kind(r.body);
            h->jurisdiction = arena_strdup(a, o.juris);
            h->seq = seq;
            h->time_ms = r.body->time_ms;
            h->detail = detail_of(a, r.body, reason);
            h->actor = r.body->actor;
            v->history[v->n_history++] = h;
        }
    }
    mdb_cursor_close(c);
    return rc;
}

static int personal(struct node *n, MDB_txn *t, const Appeal__AppealRow *row, struct arena *a,
                    Appeal__AppealView *v) {
    if (row->sealed_at == NULL && row->answer_at == NULL) {
        return 0;
    }
    /* The owner reads it, and so does the region of an owning office
     * (the copy boxed to the region, docs/record-format.md 7.1). */
    bool region_of_owner = juris_is_office(row->owner) && juris_under(row->owner, n->eng.juris);
    if (strcmp(row->owner, n->eng.juris) != 0 && !region_of_owner) {
        v->personal_withheld = true;
        return 0;
    }
    Appeal__Sealed *sd = NULL;
    char *answer = NULL;
    int rc = appeal_open_personal(&n->eng.store, t, &n->eng.keys, row, a, &sd, &answer);
    if (rc == APL_EAUTH) {
        v->personal_withheld = true; /* sealed under a key this node lacks */
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    Appeal__Personal *p = NEW(a, Appeal__Personal, appeal__personal__init);
    if (p == NULL) {
        return APL_ENOMEM;
    }
    if (sd != NULL) {
        p->name = sd->name;
        p->iin = sd->iin;
        p->address = sd->address;
        p->contacts = sd->contacts;
        p->subject = sd->subject;
        p->body = sd->body;
    }
    if (answer != NULL) {
        p->answer_text = answer;
    }
    v->personal = p;
    return 0;
}

int view_appeal(struct node *n, MDB_txn *t, const char *number, bool may_read, struct arena *a,
                Appeal__AppealView **out, struct errbuf *e) {
    if (!number_valid(number)) {
        return err_set(e, APL_EINVAL, "`%.40s` is not a registration number", number);
    }
    Appeal__AppealRow *row;
    int rc = state_appeal(&n->eng.store, t, number, a, &row);
    if (rc == APL_ENOTFOUND) {
        return err_set(e, rc, "no appeal %s on this node (not registered, or not replicated yet)",
                       number);
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot read appeal %s: %s", number, apl_strerror(rc));
    }
    Appeal__AppealView *v = NEW(a, Appeal__AppealView, appeal__appeal_view__init);
    if (v == NULL) {
        return APL_ENOMEM;
    }
    v->row = row;
    v->overdue = view_overdue(n, row, node_today(n), &v->days_overdue);
    rc = history(n, t, number, may_read, a, v);
    if (rc == 0 && may_read) {
        rc = personal(n, t, row, a, v);
    } else if (rc == 0 && (row->sealed_at != NULL || row->answer_at != NULL)) {
        v->personal_withheld = true; /* the caller's role does not read it */
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot read appeal %s: %s", number, apl_strerror(rc));
    }
    *out = v;
    return 0;
}

struct list_scan {
    struct node *n;
    MDB_txn *t;
    struct arena *a;
    Appeal__AppealList *list;
    uint32_t limit;
    int32_t today;
    Appeal__Status status; /* filter for overdue scans; 0: any */
};

/* Adds the appeal `number`; returns 1 when the page is full. */
static int add_item(struct list_scan *s, const char *number, size_t len, const char *token) {
    char num[NUMBER_BYTES_MAX + 1];
    if (len > NUMBER_BYTES_MAX) {
        return APL_ECORRUPT;
    }
    memcpy(num, number, len);
    num[len] = '\0';
    Appeal__AppealRow *row;
    int rc = state_appeal(&s->n->eng.store, s->t, num, s->a, &row);
    if (rc != 0) {
        return rc == APL_ENOTFOUND ? APL_ECORRUPT : rc;
    }
    if (s->status != 0 && row->status != s->status) {
        return 0;
    }
    Appeal__ListItem *it = NEW(s->a, Appeal__ListItem, appeal__list_item__init);
    if (it == NULL) {
        return APL_ENOMEM;
    }
    it->row = row;
    it->overdue = view_overdue(s->n, row, s->today, &it->days_overdue);
    s->list->items[s->list->n_items++] = it;
    if (s->list->n_items == s->limit) {
        s->list->next_after = arena_strdup(s->a, token);
        return 1;
    }
    return 0;
}

static int scan(struct list_scan *s, enum store_db db, const uint8_t *prefix, size_t plen,
                const uint8_t *from, size_t flen, size_t number_at, int32_t before_day, char kind) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(s->t, s->n->eng.store.dbi[db], &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {flen, (void *)from}, v;
    int m = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (m == 0 && flen > plen && k.mv_size == flen && memcmp(k.mv_data, from, flen) == 0) {
        m = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* resume after the token */
    }
    for (; m == 0 && rc == 0; m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size <= number_at || memcmp(p, prefix, plen) != 0) {
            break;
        }
        char token[64];
        if (kind == 'D') {
            int32_t day = (int32_t)be32_get(p + plen);
            if (day >= before_day) {
                break;
            }
            snprintf(token, sizeof token, "D%d/%.*s", day, (int)(k.mv_size - number_at),
                     (const char *)p + number_at);
        } else {
            snprintf(token, sizeof token, "S%d/%.*s", p[plen - 1], (int)(k.mv_size - number_at),
                     (const char *)p + number_at);
        }
        rc = add_item(s, (const char *)p + number_at, k.mv_size - number_at, token);
    }
    mdb_cursor_close(c);
    return rc < 0 ? rc : (rc == 1);
}

static int parse_token(const char *tok, char kind, int32_t *n, const char **number) {
    if (tok[0] == '\0') {
        return 0;
    }
    const char *slash = strchr(tok, '/');
    if (tok[0] != kind || slash == NULL || slash - tok > 12 || !number_valid(slash + 1)) {
        return APL_EINVAL;
    }
    *n = atoi(tok + 1);
    *number = slash + 1;
    return 0;
}

int view_list(struct node *n, MDB_txn *t, const Appeal__ListRequest *q, struct arena *a,
              Appeal__AppealList **out, struct errbuf *e) {
    const char *owner = q->owner[0] != '\0' ? q->owner : n->eng.juris;
    if (!juris_valid(owner)) {
        return err_set(e, APL_EINVAL, "owner must be a jurisdiction code such as KZ-75");
    }
    uint32_t limit = q->limit ? q->limit : LIST_LIMIT_DEFAULT;
    if (limit > LIST_LIMIT_MAX) {
        return err_set(e, APL_EINVAL, "limit is at most %d", LIST_LIMIT_MAX);
    }
    if (q->status < 0 || q->status > APPEAL__STATUS__STATUS_REOPENED) {
        return err_set(e, APL_EINVAL, "unknown status");
    }
    struct list_scan s = {n, t, a, NULL, limit, node_today(n), 0};
    s.list = NEW(a, Appeal__AppealList, appeal__appeal_list__init);
    if (s.list == NULL || (s.list->items = arena_new(a, limit * sizeof(void *))) == NULL) {
        return APL_ENOMEM;
    }
    uint8_t prefix[JURIS_BYTES_MAX + 2], from[JURIS_BYTES_MAX + 6 + NUMBER_BYTES_MAX];
    size_t ol = strlen(owner);
    memcpy(prefix, owner, ol + 1);
    int32_t tok_n = 0;
    const char *tok_number = "";
    int rc;
    if (q->overdue) {
        s.status = q->status;
        if (parse_token(q->after, 'D', &tok_n, &tok_number) != 0) {
            return err_set(e, APL_EINVAL, "malformed page token");
        }
        memcpy(from, prefix, ol + 1);
        be32_put(from + ol + 1, (uint32_t)tok_n);
        size_t tl = strlen(tok_number);
        memcpy(from + ol + 5, tok_number, tl);
        rc = scan(&s, DB_BY_DEADLINE, prefix, ol + 1, from, ol + 5 + tl, ol + 5, s.today, 'D');
    } else {
        if (parse_token(q->after, 'S', &tok_n, &tok_number) != 0) {
            return err_set(e, APL_EINVAL, "malformed page token");
        }
        int first = q->status ? (int)q->status : (tok_n > 0 ? tok_n : 1);
        int last = q->status ? (int)q->status : (int)APPEAL__STATUS__STATUS_REOPENED;
        if (q->incoming) {
            first = last = STATUS_KEY_INCOMING;
        }
        rc = 0;
        for (int st = first; st <= last && rc == 0; st++) {
            prefix[ol + 1] = (uint8_t)st;
            memcpy(from, prefix, ol + 2);
            size_t tl = st == tok_n ? strlen(tok_number) : 0;
            memcpy(from + ol + 2, tok_number, tl);
            rc = scan(&s, DB_BY_STATUS, prefix, ol + 2, from, ol + 2 + tl, ol + 2, 0, 'S');
        }
    }
    if (rc < 0) {
        return err_set(e, rc, "cannot list appeals: %s", apl_strerror(rc));
    }
    *out = s.list;
    return 0;
}

int view_info(struct node *n, MDB_txn *t, struct arena *a, Appeal__NodeInfo **out) {
    Appeal__NodeInfo *i = NEW(a, Appeal__NodeInfo, appeal__node_info__init);
    if (i == NULL) {
        return APL_ENOMEM;
    }
    struct origin_state self;
    int rc = chain_origin_get(&n->eng.store, t, n->eng.keys.sign_pk, &self);
    if (rc != 0) {
        return rc;
    }
    MDB_stat st;
    mdb_stat(t, n->eng.store.dbi[DB_APPEALS], &st);
    i->jurisdiction = n->eng.juris;
    i->origin.data = n->eng.keys.sign_pk;
    i->origin.len = KEY_PK_BYTES;
    i->box_key.data = n->eng.keys.box_pk;
    i->box_key.len = BOX_PK_BYTES;
    i->head_seq = self.head_seq;
    i->appeals = st.ms_entries;
    i->now_ms = node_now_ms(n);
    i->today = day_from_ms(i->now_ms, n->rules.utc_offset_min);
    i->software = "appeal-node " APPEAL_VERSION;
    i->commits = atomic_load(&n->eng.writer.commits);
    i->committed_writes = atomic_load(&n->eng.writer.committed_writes);
    uint32_t readers;
    store_usage(&n->eng.store, &i->map_bytes, &i->map_used_bytes, &readers);
    *out = i;
    return 0;
}

/* Adds `code` to the `k` codes in `out` unless it is there; the new count. */
static size_t add_juris(char out[][16], size_t k, const char *code) {
    for (size_t i = 0; i < k; i++) {
        if (strcmp(out[i], code) == 0) {
            return k;
        }
    }
    snprintf(out[k], 16, "%s", code);
    return k + 1;
}

/* The jurisdictions this node knows: its own and every origin's. */
static size_t known_jurisdictions(struct node *n, MDB_txn *t, char out[][16], size_t max) {
    size_t k = 0;
    snprintf(out[k++], 16, "%s", n->eng.juris);
    MDB_cursor *c;
    if (mdb_cursor_open(t, n->eng.store.dbi[DB_ORIGINS], &c) != 0) {
        return k;
    }
    MDB_val key, v;
    for (int m = mdb_cursor_get(c, &key, &v, MDB_FIRST); m == 0 && k < max;
         m = mdb_cursor_get(c, &key, &v, MDB_NEXT)) {
        struct origin_state o;
        if (key.mv_size != KEY_PK_BYTES ||
            chain_origin_get(&n->eng.store, t, key.mv_data, &o) != 0 || o.juris[0] == '\0') {
            continue;
        }
        k = add_juris(out, k, o.juris);
    }
    mdb_cursor_close(c);
    return k;
}

static int overdue_of(struct node *n, MDB_txn *t, const char *owner, int32_t today, struct arena *a,
                      Appeal__OverdueList *l, uint32_t limit) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, n->eng.store.dbi[DB_BY_DEADLINE], &c));
    if (rc != 0) {
        return rc;
    }
    size_t ol = strlen(owner);
    uint8_t prefix[JURIS_BYTES_MAX + 2];
    memcpy(prefix, owner, ol + 1);
    MDB_val k = {ol + 1, prefix}, v;
    for (int m = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); m == 0 && rc == 0;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size <= ol + 5 || memcmp(p, prefix, ol + 1) != 0 ||
            (int32_t)be32_get(p + ol + 1) >= today) {
            break;
        }
        if (l->n_items >= limit) {
            l->truncated = true;
            break;
        }
        char number[NUMBER_BYTES_MAX + 1];
        size_t nl = k.mv_size - ol - 5;
        if (nl > NUMBER_BYTES_MAX) {
            rc = APL_ECORRUPT;
            break;
        }
        memcpy(number, p + ol + 5, nl);
        number[nl] = '\0';
        Appeal__AppealRow *row;
        Appeal__OverdueItem *it = NEW(a, Appeal__OverdueItem, appeal__overdue_item__init);
        if (it == NULL || (rc = state_appeal(&n->eng.store, t, number, a, &row)) != 0) {
            rc = rc != 0 ? rc : APL_ENOMEM;
            break;
        }
        it->number = row->number;
        it->owner = row->owner;
        it->region = row->received_by;
        it->type = row->type;
        it->category = row->category;
        it->status = row->status;
        it->deadline_day = row->deadline_day;
        view_overdue(n, row, today, &it->days_overdue);
        l->items[l->n_items++] = it;
    }
    mdb_cursor_close(c);
    return rc;
}

/* The jurisdictions `--region` asks for, in place of the `n` known ones in
 * `known` (room for 256): each code asked, and with a region's code the
 * offices under it that the node knows (as `stats --region` takes them in). */
static size_t asked_jurisdictions(const Appeal__OverdueRequest *q, char known[][16], size_t n) {
    char all[256][16];
    memcpy(all, known, n * sizeof all[0]);
    size_t k = 0;
    for (size_t i = 0; i < q->n_owner; i++) {
        bool region = strchr(q->owner[i], '.') == NULL;
        for (size_t j = 0; j <= n && k < 256; j++) {
            const char *c = j == n ? q->owner[i] : all[j];
            char r[JURIS_CHARS_MAX + 1];
            juris_region(c, r);
            if (strcmp(c, q->owner[i]) == 0 || (region && strcmp(r, q->owner[i]) == 0)) {
                k = add_juris(known, k, c);
            }
        }
    }
    return k;
}

int view_overdue_list(struct node *n, MDB_txn *t, const Appeal__OverdueRequest *q, struct arena *a,
                      Appeal__OverdueList **out, struct errbuf *e) {
    uint32_t limit = q->limit ? q->limit : LIST_LIMIT_DEFAULT;
    if (limit > LIST_LIMIT_MAX || q->n_owner > 64) {
        return err_set(e, APL_EINVAL, "at most %d appeals and 64 jurisdictions", LIST_LIMIT_MAX);
    }
    char(*known)[16] = arena_new(a, 256 * 16);
    if (known == NULL) {
        return APL_ENOMEM;
    }
    size_t n_known = known_jurisdictions(n, t, known, 256);
    if (q->n_owner > 0) {
        for (size_t i = 0; i < q->n_owner; i++) {
            if (!juris_valid(q->owner[i])) {
                return err_set(e, APL_EINVAL, "`%.16s` is not a jurisdiction code", q->owner[i]);
            }
        }
        n_known = asked_jurisdictions(q, known, n_known);
    }
    Appeal__OverdueList *l = NEW(a, Appeal__OverdueList, appeal__overdue_list__init);
    if (l == NULL || (l->items = arena_new(a, (limit + 1) * sizeof *l->items)) == NULL) {
        return APL_ENOMEM;
    }
    int32_t today = node_today(n);
    for (size_t i = 0; i < n_known && !l->truncated; i++) {
        int rc = overdue_of(n, t, known[i], today, a, l, limit);
        if (rc != 0) {
            return err_set(e, rc, "cannot list overdue appeals: %s", apl_strerror(rc));
        }
    }
    *out = l;
    return 0;
}
