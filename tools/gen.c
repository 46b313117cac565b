/*
 * appeal-gen: fills stores with realistic appeals, for benchmarks. Offline
 * (no node may run on the directories: each one's node.lock is taken).
 * Every record is a real, signed, chained record made by the code path of
 * a live filing (appeal_file / appeal_act), in transactions of --batch
 * appeals, and folded into the derived tables as a node does.
 *
 *   appeal-gen --data DIR --appeals N [options]
 *       DIR's own log: its jurisdiction registers every appeal.
 *   appeal-gen --data KZDIR --origins DIR1,DIR2,... --appeals N [options]
 *       KZDIR's store receives the logs of DIR1..DIRn as if replicated:
 *       each DIRi is an initialised node (appeal-node init) of one
 *       jurisdiction; its records so far (genesis, grant) are copied into
 *       KZDIR, then records are signed with DIRi's keys, its rules and its
 *       administrator as the actor, and appended to DIRi's log in KZDIR's
 *       store (DIRi's own store is not written: do not run DIRi with
 *       KZDIR afterwards, their logs of DIRi would fork). Personal data is
 *       sealed under DIRi's data key, which KZDIR cannot open, as in a
 *       real replica. The appeals are spread evenly over the origins
 *       (shared/data has no per-region volumes).
 *
 *   options: [--from YYYY-MM-DD] [--to YYYY-MM-DD] (default 2026-01-05 to
 *            2026-11-20) [--answered PERCENT] (70) [--batch N] (5000
 *            appeals per transaction) [--seed S]
 *
 * The appeals: type shares from shared/data/appeal-facts.md (statements
 * 69%, requests 14%, complaints 6%, the rest proposals, feedback and
 * reports, half of the reports anonymous); a leaf of the origin's
 * classifier; applicants with valid IINs, about half of the appeals from
 * someone who appealed before (in the same category the node marks it a
 * repeat, as live); registration times spread evenly over the period.
 * The history of each appeal follows in time: --answered percent are
 * assigned within a day and answered after 2 to 26 days (so some late),
 * 5% of those after a reasoned extension, a third then closed; of the
 * rest half are assigned, none answered. Records are
 * written in time order, as a node writes them; what would happen after
 * the end of --to is not written (those appeals are still in work).
 *
 * Prints the records written and the rate, then one JSON line ("json {}").
 */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appeal.h"
#include "cal.h"
#include "node.h"
#include "ruleset.h"
#include "util.h"

enum {
    ORIGINS_MAX = 64,
    STAGES = 4, /* assign, extend, answer, close */
    OPS_PER_APPEAL_MAX = 1 + STAGES,
    LEAVES_MAX = 4096,     /* classifier leaves per origin */
    PROGRESS_EVERY_S = 10, /* a progress line on stderr this often */
    DAY_MS = 86400000,
    HOUR_MS = 3600000,
};

enum op_kind { OP_FILE, OP_ASSIGN, OP_EXTEND, OP_ANSWER, OP_CLOSE };

struct origin {
    struct node *n; /* DIRi, opened (multi mode); NULL: the target itself */
    int lock_fd;
    struct origin_state st;    /* its log in the target store (multi mode) */
    struct origin_state *self; /* &st, or the target node's own */
    struct origin_state saved; /* before the transaction being attempted */
    const struct ruleset *rules;
    const struct node_keys *keys;
    const uint8_t *actor;
    const char *leaves[LEAVES_MAX];
    uint32_t n_leaves;
    int regno_year; /* registration numbers: predicted, checked when filed */
    uint32_t regno_last;
    long filed;
};

/* An appeal's actions still to come, by time. */
struct pending {
    int64_t at[STAGES]; /* 0: not to happen */
    int32_t until_day;  /* an extension's new deadline */
    uint32_t serial;
    uint16_t origin;
    uint8_t stage;
    char number[NUMBER_BYTES_MAX + 1];
};

/* One request of a batch, decided before its transaction, so that a
 * transaction run again (map full) writes exactly the same. */
struct op {
    int64_t at;
    int32_t until_day;
    uint32_t serial, applicant;
    uint16_t origin, category;
    uint8_t kind, type;
    bool anonymous;
    char number[NUMBER_BYTES_MAX + 1];
};

struct gen {
    struct node n; /* the target */
    struct origin *o[ORIGINS_MAX];
    uint32_t n_origins;
    long appeals, answered_pct, batch;
    int32_t from_day, to_day;
    int64_t from_ms, span_ms, cutoff_ms;
    uint64_t rng;
    long next;            /* the next appeal to plan */
    struct pending *heap; /* min-heap on at[stage] */
    size_t heap_n, heap_cap;
    struct op *ops;
    size_t n_ops, ops_cap;
    uint64_t records, seeded;
    uint64_t kinds[OP_CLOSE + 1];
};

static uint64_t next_rand(struct gen *g) {
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static uint64_t rand_below(struct gen *g, uint64_t n) {
    return n > 0 ? next_rand(g) % n : 0;
}

static int pick_type(struct gen *g) {
    unsigned r = (unsigned)rand_below(g, 100);
    if (r < 69) {
        return APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
    }
    if (r < 83) {
        return APPEAL__APPEAL_TYPE__TYPE_REQUEST;
    }
    if (r < 89) {
        return APPEAL__APPEAL_TYPE__TYPE_COMPLAINT;
    }
    if (r < 94) {
        return APPEAL__APPEAL_TYPE__TYPE_PROPOSAL;
    }
    if (r < 97) {
        return APPEAL__APPEAL_TYPE__TYPE_FEEDBACK;
    }
    return APPEAL__APPEAL_TYPE__TYPE_REPORT;
}

/* A valid IIN for applicant `n` (shared/data/appeal-facts.md): a birth
 * date, a century digit for the 20th century, a serial, the check digit. */
static void make_iin(uint32_t n, char out[13]) {
    for (uint32_t serial = n;; serial += 7919) {
        snprintf(out, 13, "%02u%02u%02u%u%04u0", 50 + n % 50, 1 + n / 50 % 12, 1 + n / 600 % 28,
                 3 + n % 2, serial % 10000);
        int check = iin_check_digit(out);
        if (check >= 0) {
            out[11] = (char)('0' + check);
            return;
        }
    }
}

/* ---- the pending actions, a binary heap on their next time ---- */

static int64_t pending_at(const struct pending *p) {
    return p->at[p->stage];
}

static int heap_push(struct gen *g, const struct pending *p) {
    if (g->heap_n == g->heap_cap) {
        size_t cap = g->heap_cap ? 2 * g->heap_cap : 4096;
        struct pending *h = realloc(g->heap, cap * sizeof *h);
        if (h == NULL) {
            return APL_ENOMEM;
        }
        g->heap = h;
        g->heap_cap = cap;
    }
    size_t i = g->heap_n++;
    while (i > 0 && pending_at(&g->heap[(i - 1) / 2]) > pending_at(p)) {
        g->heap[i] = g->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    g->heap[i] = *p;
    return 0;
}

static void heap_pop(struct gen *g, struct pending *out) {
    *out = g->heap[0];
    struct pending last = g->heap[--g->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= g->heap_n) {
            break;
        }
        if (c + 1 < g->heap_n && pending_at(&g->heap[c + 1]) < pending_at(&g->heap[c])) {
            c++;
        }
        if (pending_at(&g->heap[c]) >= pending_at(&last)) {
            break;
        }
        g->heap[i] = g->heap[c];
        i = c;
    }
    if (g->heap_n > 0) {
        g->heap[i] = last;
    }
}

/* ---- planning: what happens, in time order ---- */

static struct op *new_op(struct gen *g) {
    if (g->n_ops == g->ops_cap) {
        size_t cap = g->ops_cap ? 2 * g->ops_cap : 16384;
        struct op *o = realloc(g->ops, cap * sizeof *o);
        if (o == NULL) {
            return NULL;
        }
        g->ops = o;
        g->ops_cap = cap;
    }
    struct op *o = &g->ops[g->n_ops++];
    memset(o, 0, sizeof *o);
    return o;
}

/* The next action of the earliest pending appeal, as an op. */
static int plan_action(struct gen *g) {
    struct pending p;
    heap_pop(g, &p);
    struct op *o = new_op(g);
    if (o == NULL) {
        return APL_ENOMEM;
    }
    o->at = pending_at(&p);
    o->kind = (uint8_t)(OP_ASSIGN + p.stage);
    o->origin = p.origin;
    o->serial = p.serial;
    o->until_day = p.until_day;
    memcpy(o->number, p.number, sizeof o->number);
    do {
        p.stage++;
    } while (p.stage < STAGES && p.at[p.stage] == 0);
    if (p.stage < STAGES && p.at[p.stage] < g->cutoff_ms) {
        return heap_push(g, &p);
    }
    return 0;
}

/* When appeal `i` is filed: evenly over the period (without overflow for
 * up to a billion appeals over centuries). */
static int64_t filing_time(const struct gen *g, long i) {
    int64_t n = g->appeals;
    return g->from_ms + g->span_ms / n * i + g->span_ms % n * i / n;
}

/* The number appeal_file will give: the origin's next in that year. */
static int predict_number(struct gen *g, struct origin *o, int32_t day, char *out) {
    int year;
    unsigned mon, mday;
    civil_from_day(day, &year, &mon, &mday);
    if (year != o->regno_year) {
        /* Only earlier runs can have numbered appeals of a later year:
         * what this run plans is in time order. */
        MDB_txn *t;
        int rc = store_rd_begin(&g->n.eng.store, &t);
        if (rc == 0) {
            rc = state_regno(&g->n.eng.store, t, o->self->juris, year, &o->regno_last);
            store_rd_end(&g->n.eng.store, t);
        }
        if (rc != 0) {
            return rc;
        }
        o->regno_year = year;
    }
    snprintf(out, NUMBER_BYTES_MAX + 1, "%s-%04d-%06u", o->self->juris, year, ++o->regno_last);
    return 0;
}

/* What follows a filing: assignment, extension, answer, closing. */
static void plan_history(struct gen *g, const struct origin *o, int64_t t, int32_t day,
                         struct pending *p) {
    memset(p->at, 0, sizeof p->at);
    bool answered = (long)rand_below(g, 100) < g->answered_pct;
    if (!answered && rand_below(g, 2) == 0) {
        return; /* registered, nobody assigned yet */
    }
    p->at[0] = t + 2 * HOUR_MS + (int64_t)rand_below(g, 22) * HOUR_MS;
    if (!answered) {
        return;
    }
    int64_t answer = t + (int64_t)(2 + rand_below(g, 25)) * DAY_MS + 5 * HOUR_MS;
    if (rand_below(g, 100) < 5) {
        int32_t deadline = cal_add_working(&o->rules->cal, day, o->rules->term_working_days);
        int32_t limit = day_add_months(day, o->rules->extension_max_months);
        p->until_day = deadline + 14 + (int32_t)rand_below(g, 15);
        if (p->until_day > limit) {
            p->until_day = limit;
        }
        if (p->until_day > deadline) {
            p->at[1] = t + (int64_t)(5 + rand_below(g, 6)) * DAY_MS;
            answer =
                t + (int64_t)(12 + rand_below(g, (uint64_t)(p->until_day - day - 11))) * DAY_MS;
        }
    }
    p->at[2] = answer;
    if (rand_below(g, 3) == 0) {
        p->at[3] = answer + (int64_t)(1 + rand_below(g, 3)) * DAY_MS;
    }
}

static int plan_filing(struct gen *g, long i) {
    int64_t t = filing_time(g, i);
    uint16_t oi = (uint16_t)rand_below(g, g->n_origins);
    struct origin *o = g->o[oi];
    struct op *f = new_op(g);
    if (f == NULL) {
        return APL_ENOMEM;
    }
    int32_t day = day_from_ms(t, o->rules->utc_offset_min);
    f->at = t;
    f->kind = OP_FILE;
    f->origin = oi;
    f->serial = (uint32_t)i;
    f->type = (uint8_t)pick_type(g);
    f->category = (uint16_t)rand_below(g, o->n_leaves);
    f->anonymous = f->type == APPEAL__APPEAL_TYPE__TYPE_REPORT && rand_below(g, 2);
    /* Applicants: a pool of three quarters as many people as appeals, so
     * that some appeal again (in the same category: a detected repeat). */
    uint64_t pool = (uint64_t)g->appeals * 3 / 4 / g->n_origins + 1;
    f->applicant = (uint32_t)(rand_below(g, pool) * ORIGINS_MAX + oi);
    int rc = predict_number(g, o, day, f->number);
    if (rc != 0) {
        return rc;
    }
    struct pending p = {.serial = f->serial, .origin = oi};
    memcpy(p.number, f->number, sizeof p.number);
    plan_history(g, o, t, day, &p);
    while (p.stage < STAGES && p.at[p.stage] == 0) {
        p.stage++;
    }
    if (p.stage < STAGES && p.at[p.stage] < g->cutoff_ms) {
        return heap_push(g, &p);
    }
    return 0;
}

/* The ops of the next transaction: up to --batch filings with the actions
 * due before each; after the last filing, the remaining actions. */
static int plan_batch(struct gen *g) {
    g->n_ops = 0;
    long filings = 0;
    int rc = 0;
    while (rc == 0 && g->next < g->appeals && filings < g->batch) {
        int64_t t = filing_time(g, g->next);
        while (rc == 0 && g->heap_n > 0 && pending_at(&g->heap[0]) <= t) {
            rc = plan_action(g);
        }
        if (rc == 0) {
            rc = plan_filing(g, g->next++);
            filings++;
        }
    }
    size_t cap = (size_t)g->batch * OPS_PER_APPEAL_MAX;
    while (rc == 0 && g->next == g->appeals && g->heap_n > 0 && g->n_ops < cap) {
        rc = plan_action(g);
    }
    return rc;
}

/* ---- running the ops, inside the writer's transaction ---- */

static const char *const subjects[] = {
    "Recalculation of the old-age pension after moving from another region",
    "Repair of the road between the village and the district centre",
    "Place in a state kindergarten for a child of three years",
    "Heating tariff increase without notice to residents of the building",
    "Waiting list for social housing not moving for several years",
    "Refusal to register a land plot without a written reason",
    "Irregular bus service on the route to the district hospital",
    "Request for information on the budget of the school renovation",
};
static const char *const given[] = {"Aigerim", "Nurlan", "Dana",  "Yerlan",  "Saule",
                                    "Timur",   "Asel",   "Bolat", "Gulnara", "Arman"};
static const char *const family[] = {"Bekova",  "Seitkali",  "Omarova", "Zhaksybekov",
                                     "Ivanova", "Nurpeisov", "Abenova", "Kim"};

static void appeal_ctx_of(struct gen *g, struct origin *o, MDB_txn *t, int64_t at,
                          struct appeal_ctx *c) {
    node_appeal_ctx(&g->n, t, c);
    c->rules = o->rules;
    c->keys = o->keys;
    c->self = o->self;
    c->actor = o->actor;
    c->box_key_of = NULL; /* nothing is forwarded */
    c->now_ms = at;
}

static int run_file(struct gen *g, MDB_txn *t, const struct op *op, struct errbuf *e) {
    struct origin *o = g->o[op->origin];
    struct appeal_ctx c;
    appeal_ctx_of(g, o, t, op->at, &c);
    char body[256], name[64], iin[13], address[80];
    snprintf(body, sizeof body,
             "The applicant asks the body to review the situation described and to answer in "
             "writing to the postal address given. Reference %u.",
             op->serial);
    snprintf(name, sizeof name, "%s %s", given[op->applicant % 10], family[op->applicant / 10 % 8]);
    snprintf(address, sizeof address, "Abai avenue %u, apt %u", 1 + op->applicant % 200,
             1 + op->applicant / 200 % 120);
    make_iin(op->applicant, iin);
    Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
    f.type = op->type;
    f.category = (char *)o->leaves[op->category];
    f.subject = (char *)subjects[op->serial % (sizeof subjects / sizeof *subjects)];
    f.body = body;
    f.anonymous = op->anonymous;
    f.name = op->anonymous ? "" : name;
    f.iin = op->anonymous ? "" : iin;
    f.address = op->anonymous ? "" : address;
    struct appeal_result res;
    int rc = appeal_file(&c, &f, &res, e);
    if (rc != 0) {
        return rc;
    }
    free(res.record);
    if (strcmp(res.number, op->number) != 0) {
        return err_set(e, APL_ECORRUPT, "registered as %s, expected %s", res.number, op->number);
    }
    return 0;
}

static int run_act(struct gen *g, MDB_txn *t, const struct op *op, struct errbuf *e) {
    static const Appeal__Action actions[] = {[OP_ASSIGN] = APPEAL__ACTION__ACTION_ASSIGN,
                                             [OP_EXTEND] = APPEAL__ACTION__ACTION_EXTEND,
                                             [OP_ANSWER] = APPEAL__ACTION__ACTION_ANSWER,
                                             [OP_CLOSE] = APPEAL__ACTION__ACTION_CLOSE};
    struct origin *o = g->o[op->origin];
    struct appeal_ctx c;
    appeal_ctx_of(g, o, t, op->at, &c);
    Appeal__ActRequest q = APPEAL__ACT_REQUEST__INIT;
    q.number = (char *)op->number;
    q.action = actions[op->kind];
    q.assignee = "Department on duty";
    q.outcome = op->serial % 4 == 0 ? APPEAL__OUTCOME__OUTCOME_SATISFIED
                                    : APPEAL__OUTCOME__OUTCOME_EXPLAINED;
    q.text = "The body has reviewed the appeal and answers in full; see the letter attached.";
    q.until_day = op->until_day;
    q.reason = "The answer needs documents requested from another body.";
    struct appeal_result res;
    int rc = appeal_act(&c, &q, &res, e);
    if (rc == 0) {
        free(res.record);
    }
    return rc;
}

static bool storage_error(int rc) {
    return rc == APL_EMAPFULL || rc == APL_EDB || rc == APL_EIO || rc == APL_ENOMEM;
}

struct batch_req {
    struct wreq w;
    struct gen *g;
    uint64_t kinds[OP_CLOSE + 1];
};

static int run_batch(void *node, MDB_txn *t, struct wreq *w) {
    (void)node;
    struct batch_req *b = (struct batch_req *)w;
    struct gen *g = b->g;
    memset(b->kinds, 0, sizeof b->kinds);
    int rc = state_batch_begin(&g->n.eng.state);
    for (size_t i = 0; rc == 0 && i < g->n_ops; i++) {
        const struct op *op = &g->ops[i];
        rc = op->kind == OP_FILE ? run_file(g, t, op, &w->err) : run_act(g, t, op, &w->err);
        if (rc == 0) {
            b->kinds[op->kind]++;
        } else if (!storage_error(rc)) {
            /* A generator bug: say which, and store nothing of the batch. */
            fprintf(stderr, "appeal-gen: %s: %s\n", op->number, err_msg(&w->err, rc));
            rc = APL_ECORRUPT;
        }
    }
    int rc2 = state_batch_end(&g->n.eng.state, rc == 0 ? t : NULL);
    return rc != 0 ? rc : rc2;
}

/* The writer's hooks: what the origins keep in memory follows the
 * transaction (an attempt aborted for a full map is run again). */
static void hook_begin(void *arg) {
    struct gen *g = arg;
    for (uint32_t i = 0; i < g->n_origins; i++) {
        g->o[i]->saved = *g->o[i]->self;
    }
}

static void hook_rollback(void *arg) {
    struct gen *g = arg;
    for (uint32_t i = 0; i < g->n_origins; i++) {
        *g->o[i]->self = g->o[i]->saved;
    }
}

static int run_in_txn(struct gen *g, struct wreq *w) {
    struct writer_hooks h = {.node = g, .begin = hook_begin, .rollback = hook_rollback};
    return writer_run_now(&g->n.eng.store, &h, w);
}

/* ---- origins ---- */

static int leaves_of(struct origin *o) {
    for (uint32_t i = 0; i < o->rules->category_count && o->n_leaves < LEAVES_MAX; i++) {
        const char *code = o->rules->categories[i].code;
        if (strchr(code, '.') != NULL) {
            o->leaves[o->n_leaves++] = code; /* a leaf of the classifier */
        }
    }
    return o->n_leaves > 0 ? 0 : APL_EINVAL;
}

/* The target node's own log as the only origin. */
static int origin_self(struct gen *g, struct errbuf *e) {
    struct origin *o = calloc(1, sizeof *o);
    if (o == NULL) {
        return APL_ENOMEM;
    }
    g->o[g->n_origins++] = o;
    o->lock_fd = -1;
    o->self = &g->n.eng.self;
    o->rules = &g->n.rules;
    o->keys = &g->n.eng.keys;
    o->actor = g->n.admin_pk;
    return leaves_of(o) == 0 ? 0 : err_set(e, APL_EINVAL, "%s: no classifier leaves", g->n.dir);
}

static int origin_open(struct gen *g, const char *dir, struct errbuf *e) {
    if (g->n_origins == ORIGINS_MAX) {
        return err_set(e, APL_EINVAL, "at most %d origins", ORIGINS_MAX);
    }
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(dir, a) != NULL && realpath(g->n.dir, b) != NULL && strcmp(a, b) == 0) {
        return err_set(e, APL_EINVAL, "%s is the target node itself", dir);
    }
    struct origin *o = calloc(1, sizeof *o);
    if (o == NULL || (o->n = calloc(1, sizeof *o->n)) == NULL) {
        free(o);
        return APL_ENOMEM;
    }
    g->o[g->n_origins++] = o;
    if ((o->lock_fd = node_lock(dir, e)) < 0) {
        free(o->n);
        o->n = NULL;
        return e->code;
    }
    struct node_opts no = {.dir = dir};
    int rc = node_open(o->n, &no, e);
    if (rc != 0) {
        free(o->n);
        o->n = NULL;
        return rc;
    }
    if (memcmp(o->n->eng.keys.sign_pk, g->n.eng.keys.sign_pk, KEY_PK_BYTES) == 0) {
        return err_set(e, APL_EINVAL, "%s is the target node itself", dir);
    }
    o->self = &o->st;
    o->rules = &o->n->rules;
    o->keys = &o->n->eng.keys;
    o->actor = o->n->admin_pk;
    return leaves_of(o) == 0 ? 0 : err_set(e, APL_EINVAL, "%s: no classifier leaves", dir);
}

struct seed_copy {
    struct gen *g;
    struct origin *o;
    MDB_txn *t;
    struct arena a;
};

/* One record of DIRi's own log into the target, as replication stores it. */
static int seed_one(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct seed_copy *s = arg;
    struct origin *o = s->o;
    arena_reset(&s->a);
    struct record r;
    if (rec_decode(env, len, &s->a, &r, NULL) != 0 || r.body->seq != seq ||
        seq != o->st.head_seq + 1) {
        return APL_ECORRUPT;
    }
    int rc =
        chain_append(&s->g->n.eng.store, s->t, &o->st, env, len, r.body, r.body->time_ms, false);
    if (rc == 0) {
        rc = state_apply(&s->g->n.eng.state, s->t, &o->st, seq, r.body);
    }
    s->g->seeded += rc == 0;
    return rc;
}

/* Does the target's copy of DIRi's log agree with DIRi's at `seq`? */
static int seed_agrees(struct seed_copy *s, MDB_txn *own, uint64_t seq) {
    MDB_val a, b;
    int rc = chain_get(&s->o->n->eng.store, own, s->o->n->eng.self.idx, seq, &a);
    if (rc == 0) {
        rc = chain_get(&s->g->n.eng.store, s->t, s->o->st.idx, seq, &b);
    }
    if (rc == 0 && (a.mv_size != b.mv_size || memcmp(a.mv_data, b.mv_data, a.mv_size) != 0)) {
        rc = APL_EEXIST;
    }
    return rc;
}

static int run_seed(void *node, MDB_txn *t, struct wreq *w) {
    (void)node;
    struct seed_copy *s = w->arg;
    struct origin *o = s->o;
    s->t = t;
    int rc = chain_origin_get(&s->g->n.eng.store, t, o->n->eng.keys.sign_pk, &o->st);
    if (rc == APL_ENOTFOUND) {
        rc = chain_origin_create(&s->g->n.eng.store, t, o->n->eng.keys.sign_pk, &o->st);
    }
    MDB_txn *own;
    if (rc != 0 || (rc = store_rd_begin(&o->n->eng.store, &own)) != 0) {
        return rc;
    }
    uint64_t theirs = o->n->eng.self.head_seq,
             common = o->st.head_seq < theirs ? o->st.head_seq : theirs;
    if (common > 0 && (rc = seed_agrees(s, own, common)) == APL_EEXIST) {
        err_set(&w->err, APL_EEXIST, "%s and the target disagree about %s's log", o->n->dir,
                o->n->eng.juris);
    }
    if (rc == 0 && o->st.head_seq < theirs) {
        rc = state_batch_begin(&s->g->n.eng.state);
        if (rc == 0) {
            rc = chain_each(&o->n->eng.store, own, o->n->eng.self.idx, o->st.head_seq + 1, seed_one,
                            s);
        }
        int rc2 = state_batch_end(&s->g->n.eng.state, rc == 0 ? t : NULL);
        rc = rc != 0 ? rc : rc2;
    }
    store_rd_end(&o->n->eng.store, own);
    snprintf(o->st.juris, sizeof o->st.juris, "%s", o->n->eng.juris);
    return rc;
}

/* Brings each DIRi's log as far in the target as DIRi itself has it. */
static int seed_origins(struct gen *g) {
    for (uint32_t i = 0; i < g->n_origins; i++) {
        struct seed_copy s = {.g = g, .o = g->o[i]};
        if (arena_init(&s.a, RECORD_ARENA_BYTES) != 0) {
            return APL_ENOMEM;
        }
        struct wreq w = {.run = run_seed, .arg = &s};
        int rc = run_in_txn(g, &w);
        arena_fini(&s.a);
        if (rc != 0) {
            fprintf(stderr, "appeal-gen: %s: %s\n", g->o[i]->n->dir, err_msg(&w.err, rc));
            return rc;
        }
    }
    return 0;
}

static int open_origins(struct gen *g, char *list, struct errbuf *e) {
    if (list == NULL) {
        return origin_self(g, e);
    }
    for (char *save = NULL, *d = strtok_r(list, ",", &save); d != NULL;
         d = strtok_r(NULL, ",", &save)) {
        int rc = origin_open(g, d, e);
        if (rc != 0) {
            return rc;
        }
    }
    return g->n_origins > 0 ? seed_origins(g) : err_set(e, APL_EINVAL, "--origins names none");
}

static void close_origins(struct gen *g) {
    for (uint32_t i = 0; i < g->n_origins; i++) {
        struct origin *o = g->o[i];
        if (o->n != NULL) {
            node_close(o->n);
            free(o->n);
        }
        if (o->lock_fd >= 0) {
            close(o->lock_fd);
        }
        free(o);
    }
    g->n_origins = 0;
}

/* ---- main ---- */

static int generate(struct gen *g) {
    uint64_t t0 = util_mono_ns(), last = t0;
    int rc = 0;
    for (;;) {
        if ((rc = plan_batch(g)) != 0 || g->n_ops == 0) {
            break;
        }
        struct batch_req b = {.g = g};
        b.w.run = run_batch;
        if ((rc = run_in_txn(g, &b.w)) != 0) {
            fprintf(stderr, "appeal-gen: batch before appeal %ld failed: %s\n", g->next,
                    err_msg(&b.w.err, rc));
            break;
        }
        for (int k = 0; k <= OP_CLOSE; k++) {
            g->kinds[k] += b.kinds[k];
            g->records += b.kinds[k];
        }
        uint64_t now = util_mono_ns();
        if (now - last >= (uint64_t)PROGRESS_EVERY_S * 1000000000u) {
            last = now;
            double s = (double)(now - t0) / 1e9;
            fprintf(stderr, "appeal-gen: %ld/%ld appeals, %llu records, %.0f records/s, %.0f s\n",
                    g->next, g->appeals, (unsigned long long)g->records, (double)g->records / s, s);
        }
    }
    return rc;
}

static void report(const struct gen *g, double s) {
    uint64_t heads = 0;
    for (uint32_t i = 0; i < g->n_origins; i++) {
        heads += g->o[i]->self != NULL ? g->o[i]->self->head_seq : 0;
    }
    printf("appeals %ld records %llu seconds %.1f records/s %.0f head %llu\n", g->appeals,
           (unsigned long long)g->records, s, (double)g->records / s, (unsigned long long)heads);
    printf("json {\"appeals\":%ld,\"records\":%llu,\"seconds\":%.3f,\"records_per_s\":%.0f,"
           "\"appeals_per_s\":%.0f,\"origins\":%u,\"seeded\":%llu,\"filed\":%llu,"
           "\"assigned\":%llu,\"extended\":%llu,\"answered\":%llu,\"closed\":%llu,"
           "\"heads\":%llu}\n",
           g->appeals, (unsigned long long)g->records, s, (double)g->records / s,
           (double)g->appeals / s, g->n_origins, (unsigned long long)g->seeded,
           (unsigned long long)g->kinds[OP_FILE], (unsigned long long)g->kinds[OP_ASSIGN],
           (unsigned long long)g->kinds[OP_EXTEND], (unsigned long long)g->kinds[OP_ANSWER],
           (unsigned long long)g->kinds[OP_CLOSE], (unsigned long long)heads);
}

static int parse_args(struct gen *g, int argc, char **argv, const char **dir, char **origins) {
    const char *from = "2026-01-05", *to = "2026-11-20";
    for (int i = 1; i < argc; i += 2) {
        long v = 0;
        if (i + 1 >= argc) {
            fprintf(stderr, "appeal-gen: %s takes a value\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--data") == 0) {
            *dir = argv[i + 1];
        } else if (strcmp(argv[i], "--origins") == 0) {
            *origins = argv[i + 1];
        } else if (strcmp(argv[i], "--from") == 0) {
            from = argv[i + 1];
        } else if (strcmp(argv[i], "--to") == 0) {
            to = argv[i + 1];
        } else if (util_parse_long(argv[i + 1], 0, 1000000000, &v) != 0) {
            fprintf(stderr, "appeal-gen: %s takes a number\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--appeals") == 0) {
            g->appeals = v;
        } else if (strcmp(argv[i], "--answered") == 0) {
            g->answered_pct = v > 100 ? 100 : v;
        } else if (strcmp(argv[i], "--batch") == 0) {
            g->batch = v > 0 ? v : 1;
        } else if (strcmp(argv[i], "--seed") == 0) {
            g->rng ^= (uint64_t)v * 0x9E3779B97F4A7C15ull;
        } else {
            fprintf(stderr, "appeal-gen: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (*dir == NULL || g->appeals <= 0 || day_parse(from, &g->from_day) != 0 ||
        day_parse(to, &g->to_day) != 0 || g->to_day < g->from_day) {
        fprintf(stderr, "usage: appeal-gen --data DIR [--origins DIR1,DIR2,...] --appeals N "
                        "[--from D --to D] [--answered PCT] [--batch N] [--seed S]\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    static struct gen g;
    const char *dir = NULL;
    char *origins = NULL;
    g.appeals = 100000;
    g.answered_pct = 70;
    g.batch = 5000;
    g.rng = 88172645463325252ull;
    int rc = parse_args(&g, argc, argv, &dir, &origins);
    if (rc != 0 || sodium_init() < 0) {
        return 2;
    }
    olog_init("gen", "-", 2, OLOG_WARN);
    struct errbuf e = {0};
    struct node_opts o = {.dir = dir};
    int lock = node_lock(dir, &e);
    if (lock < 0 || node_open(&g.n, &o, &e) != 0) {
        fprintf(stderr, "appeal-gen: %s\n", e.msg);
        return 1;
    }
    uint64_t t0 = util_mono_ns();
    rc = open_origins(&g, origins, &e);
    if (rc != 0 && e.msg[0] != '\0') {
        fprintf(stderr, "appeal-gen: %s\n", e.msg);
    }
    if (rc == 0) {
        /* Local midnight of --from at the first origin's offset, to the
         * end of --to: the period's instants. */
        int64_t off = (int64_t)g.o[0]->rules->utc_offset_min * 60000;
        g.from_ms = (int64_t)g.from_day * DAY_MS - off;
        g.cutoff_ms = (int64_t)(g.to_day + 1) * DAY_MS - off;
        g.span_ms = g.cutoff_ms - g.from_ms;
        rc = generate(&g);
    }
    report(&g, (double)(util_mono_ns() - t0) / 1e9);
    close_origins(&g);
    node_close(&g.n);
    free(g.heap);
    free(g.ops);
    close(lock);
    return rc == 0 ? 0 : 1;
}
