/*
 * appeal-gen: fills an initialised node's store with realistic appeals, for
 * benchmarks. Offline (the node must not be running). Every record is a
 * real, signed, chained record made by the same code path as a live
 * filing (appeal_file / appeal_act), in transactions of --batch requests.
 *
 *   appeal-gen --data DIR --appeals N [--from YYYY-MM-DD] [--to YYYY-MM-DD]
 *              [--answered PERCENT] [--batch N] [--seed S]
 *
 * Type shares follow shared/data/appeal-facts.md (statements 69%, requests
 * 14%, complaints 6%, the rest proposals, reports and feedback);
 * registration times spread evenly over the period; --answered percent of
 * the appeals are assigned and answered within their term (some late), a
 * third of those closed. Prints the records written and the rate.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appeal.h"
#include "cal.h"
#include "node.h"
#include "util.h"

struct gen {
    struct node n;
    long appeals, answered_pct, batch;
    int32_t from_day, to_day;
    uint64_t rng;
    long done;
    uint64_t records;
};

static uint64_t next_rand(struct gen *g) {
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static int pick_type(struct gen *g) {
    unsigned r = (unsigned)(next_rand(g) % 100);
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

static const char *pick_category(struct gen *g) {
    const struct rules *r = &g->n.rules;
    for (;;) {
        const struct category *c = &r->categories[next_rand(g) % r->category_count];
        if (strchr(c->code, '.') != NULL) {
            return c->code; /* a leaf of the classifier */
        }
    }
}

static int act(struct gen *g, MDB_txn *t, const char *number, Appeal__Action a, int64_t when,
               const char *text) {
    struct appeal_ctx c;
    node_appeal_ctx(&g->n, t, &c);
    c.now_ms = when;
    Appeal__ActRequest q = APPEAL__ACT_REQUEST__INIT;
    q.number = (char *)number;
    q.action = a;
    q.assignee = "Department on duty";
    q.outcome = APPEAL__OUTCOME__OUTCOME_EXPLAINED;
    q.text = (char *)text;
    struct appeal_result res;
    struct errbuf e = {0};
    int rc = appeal_act(&c, &q, &res, &e);
    if (rc == 0) {
        free(res.record);
        g->records++;
    } else if (rc != APL_EMAPFULL) {
        fprintf(stderr, "appeal-gen: %s: %s\n", number, e.msg);
    }
    return rc == APL_EMAPFULL ? rc : 0;
}

static int file_one(struct gen *g, MDB_txn *t, long i) {
    struct appeal_ctx c;
    node_appeal_ctx(&g->n, t, &c);
    int64_t span = (int64_t)(g->to_day - g->from_day + 1) * 86400000;
    c.now_ms = (int64_t)g->from_day * 86400000 + span * i / g->appeals + 3 * 3600000;
    char subject[96], body[240], name[64];
    snprintf(subject, sizeof subject, "Appeal %ld about local services and their quality", i);
    snprintf(body, sizeof body,
             "The applicant asks the body to review the situation described and to answer in "
             "writing to the postal address given. Reference %ld.",
             i);
    snprintf(name, sizeof name, "Applicant %ld", i);
    Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
    f.type = pick_type(g);
    f.category = (char *)pick_category(g);
    f.subject = subject;
    f.body = body;
    f.anonymous = f.type == APPEAL__APPEAL_TYPE__TYPE_REPORT && next_rand(g) % 2;
    f.name = f.anonymous ? "" : name;
    f.address = f.anonymous ? "" : "Abai avenue 150, apt 12";
    struct appeal_result res;
    struct errbuf e = {0};
    int rc = appeal_file(&c, &f, &res, &e);
    if (rc != 0) {
        if (rc != APL_EMAPFULL) {
            fprintf(stderr, "appeal-gen: %s\n", e.msg);
        }
        return rc;
    }
    free(res.record);
    g->records++;
    if ((long)(next_rand(g) % 100) >= g->answered_pct) {
        return 0;
    }
    int64_t day = 86400000;
    rc = act(g, t, res.number, APPEAL__ACTION__ACTION_ASSIGN, c.now_ms + day, "");
    int64_t answered = c.now_ms + (int64_t)(2 + next_rand(g) % 25) * day;
    if (rc == 0) {
        rc = act(g, t, res.number, APPEAL__ACTION__ACTION_ANSWER, answered, "Answered in full.");
    }
    if (rc == 0 && next_rand(g) % 3 == 0) {
        rc = act(g, t, res.number, APPEAL__ACTION__ACTION_CLOSE, answered + day, "");
    }
    return rc;
}

struct batch_req {
    struct wreq w;
    struct gen *g;
    long from, to;
};

static int run_batch(void *node, MDB_txn *t, struct wreq *w) {
    (void)node;
    struct batch_req *b = (struct batch_req *)w;
    uint64_t records = b->g->records;
    for (long i = b->from; i < b->to; i++) {
        int rc = file_one(b->g, t, i);
        if (rc != 0) {
            b->g->records = records; /* the batch is retried whole */
            return rc;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    static struct gen g;
    const char *dir = NULL, *from = "2026-01-05", *to = "2026-11-20";
    g.appeals = 100000;
    g.answered_pct = 70;
    g.batch = 5000;
    g.rng = 88172645463325252ull;
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = 0;
        if (strcmp(argv[i], "--data") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--from") == 0) {
            from = argv[i + 1];
        } else if (strcmp(argv[i], "--to") == 0) {
            to = argv[i + 1];
        } else if (util_parse_long(argv[i + 1], 0, 1000000000, &v) != 0) {
            fprintf(stderr, "appeal-gen: %s takes a number\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--appeals") == 0) {
            g.appeals = v;
        } else if (strcmp(argv[i], "--answered") == 0) {
            g.answered_pct = v;
        } else if (strcmp(argv[i], "--batch") == 0) {
            g.batch = v > 0 ? v : 1;
        } else if (strcmp(argv[i], "--seed") == 0) {
            g.rng ^= (uint64_t)v * 0x9E3779B97F4A7C15ull;
        }
    }
    if (dir == NULL || sodium_init() < 0 || day_parse(from, &g.from_day) != 0 ||
        day_parse(to, &g.to_day) != 0 || g.to_day < g.from_day) {
        fprintf(stderr, "usage: appeal-gen --data DIR --appeals N [--from D --to D] "
                        "[--answered PCT] [--batch N] [--seed S]\n");
        return 2;
    }
    olog_init("gen", "-", 2, OLOG_WARN);
    struct errbuf e = {0};
    struct node_opts o = {.dir = dir};
    if (node_open(&g.n, &o, &e) != 0) {
        fprintf(stderr, "appeal-gen: %s\n", e.msg);
        return 1;
    }
    struct writer_hooks h;
    node_writer_hooks(&g.n, &h);
    h.tick = NULL;
    uint64_t t0 = util_mono_ns();
    int rc = 0;
    for (long i = 0; i < g.appeals && rc == 0; i += g.batch) {
        struct batch_req b = {
            .g = &g, .from = i, .to = i + g.batch < g.appeals ? i + g.batch : g.appeals};
        b.w.run = run_batch;
        rc = writer_run_now(&g.n.store, &h, &b.w);
        if (rc != 0) {
            fprintf(stderr, "appeal-gen: batch at %ld failed: %s\n", i, err_msg(&b.w.err, rc));
        }
    }
    double s = (double)(util_mono_ns() - t0) / 1e9;
    printf("appeals %ld records %llu seconds %.1f records/s %.0f head %llu\n", g.appeals,
           (unsigned long long)g.records, s, (double)g.records / s,
           (unsigned long long)g.n.self.head_seq);
    node_close(&g.n);
    return rc == 0 ? 0 : 1;
}
