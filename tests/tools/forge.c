/* forge: plays a compromised node. Appends to the log of a stopped node,
 * signed with its real key, a record that its API would have refused,
 * bypassing every check of the API:
 *
 *   forge --data DIR --actor PUBLIC     a heartbeat that names PUBLIC as its
 *                                       actor; peers must refuse it when the
 *                                       log revoked PUBLIC before
 *                                       (tests/integration/test_security.py)
 *   forge --data DIR --category TEXT    a filing whose category is TEXT, any
 *                                       bytes; peers must refuse it unless it
 *                                       is a classifier code
 *                                       (tests/integration/test_csv.py)
 *   forge --data DIR --lang TEXT        a filing in category 0002.0001 whose
 *                                       language of the appeal is TEXT, any
 *                                       bytes; peers must refuse it unless it
 *                                       is kk, ru or en
 *                                       (tests/integration/test_security.py)
 *   forge --data DIR --assign NUMBER TEXT
 *                                       an assignment of appeal NUMBER to
 *                                       TEXT, any bytes; peers must refuse
 *                                       it unless TEXT is one clean line
 *                                       (tests/integration/test_security.py)
 *
 * Prints "forged seq N [number NUMBER]". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appeal.h"
#include "cal.h"
#include "keys.h"
#include "node.h"
#include "olog.h"
#include "state.h"

static const uint8_t *actor;
static const char *category, *assignee, *lang;
static char number[32];

static int run_forge(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    c.actor = actor;
    return appeal_heartbeat(&c, &r->err);
}

/* A filing as appeal_file makes it, but with any category: signed,
 * appended and folded into this node's own state. */
static int run_forge_filing(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    (void)r;
    int32_t day = day_from_ms(c.now_ms, c.rules->utc_offset_min);
    snprintf(number, sizeof number, "%s-2026-9%05llu", n->eng.juris,
             (unsigned long long)(n->eng.self.head_seq + 1) % 100000);
    Appeal__AppealFiled f = APPEAL__APPEAL_FILED__INIT;
    f.number = number;
    f.type = APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
    f.category = (char *)category;
    f.jurisdiction = n->eng.juris;
    f.registered_ms = c.now_ms;
    f.registered_day = day;
    f.deadline_day = day + 21;
    if (lang != NULL) {
        f.lang = (char *)lang;
    }
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_FILED;
    b.filed = &f;
    uint8_t *env = NULL;
    size_t len = 0;
    int rc = chain_sign_append(c.s, t, c.self, c.keys, &b, c.now_ms, &env, &len);
    if (rc == 0) {
        rc = state_apply(c.st, t, c.self, c.self->head_seq, &b);
    }
    free(env);
    return rc;
}

/* An assignment as appeal_act makes it, but to any assignee text: the
 * next version of the appeal, signed, appended and folded. */
static int run_forge_assignment(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    _Alignas(16) uint8_t rowbuf[16384];
    struct arena a;
    arena_on(&a, rowbuf, sizeof rowbuf);
    Appeal__AppealRow *row;
    int rc = state_appeal(c.s, t, number, &a, &row);
    if (rc != 0) {
        return err_set(&r->err, rc, "no appeal %s", number);
    }
    Appeal__Assigned as = APPEAL__ASSIGNED__INIT;
    as.number = number;
    as.version = row->version + 1;
    as.assignee = (char *)assignee;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_ASSIGNED;
    b.assigned = &as;
    uint8_t *env = NULL;
    size_t len = 0;
    rc = chain_sign_append(c.s, t, c.self, c.keys, &b, c.now_ms, &env, &len);
    if (rc == 0) {
        rc = state_apply(c.st, t, c.self, c.self->head_seq, &b);
    }
    free(env);
    return rc;
}

int main(int argc, char **argv) {
    bool by_actor = argc == 5 && strcmp(argv[3], "--actor") == 0;
    bool assign = argc == 6 && strcmp(argv[3], "--assign") == 0;
    bool by_lang = argc == 5 && strcmp(argv[3], "--lang") == 0;
    if ((argc != 5 && !assign) || strcmp(argv[1], "--data") != 0 ||
        (!by_actor && !assign && !by_lang && strcmp(argv[3], "--category") != 0)) {
        fprintf(stderr, "usage: forge --data DIR (--actor PUBLIC | --category TEXT | "
                        "--lang TEXT | --assign NUMBER TEXT)\n");
        return 2;
    }
    if (assign) {
        snprintf(number, sizeof number, "%s", argv[4]);
        assignee = argv[5];
    }
    olog_init("forge", "-", 2, OLOG_WARN);
    struct errbuf e = {0};
    uint8_t pk[KEY_PK_BYTES];
    if (by_actor && keys_parse_public(argv[4], pk, &e) != 0) {
        fprintf(stderr, "forge: %s\n", e.msg);
        return 2;
    }
    actor = by_actor ? pk : NULL;
    category = by_lang ? "0002.0001" : argv[4];
    lang = by_lang ? argv[4] : NULL;
    static struct node n;
    struct node_opts o = {.dir = argv[2]};
    if (node_open(&n, &o, &e) != 0) {
        fprintf(stderr, "forge: %s\n", e.msg);
        return 1;
    }
    struct writer_hooks h;
    node_writer_hooks(&n, &h);
    struct wreq r = {.run = by_actor ? run_forge
                            : assign ? run_forge_assignment
                                     : run_forge_filing,
                     .arg = &n};
    int rc = writer_run_now(&n.eng.store, &h, &r);
    if (rc != 0) {
        fprintf(stderr, "forge: %s\n", err_msg(&r.err, rc));
    } else if (by_actor) {
        printf("forged seq %llu\n", (unsigned long long)n.eng.self.head_seq);
    } else {
        printf("forged seq %llu number %s\n", (unsigned long long)n.eng.self.head_seq, number);
    }
    node_close(&n);
    return rc != 0;
}
