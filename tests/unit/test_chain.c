/* Records and chains, on a real node's LMDB store: a record survives the
 * round trip; verify accepts the untouched log; any byte flipped in any
 * stored record is caught by verify, which names that record; rebuild
 * reproduces the derived tables exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "appeal.h"
#include "check.h"
#include "bounds.h"
#include "node.h"
#include "repl.h"
#include "verify.h"

struct file_req {
    struct wreq w;
    Appeal__FileRequest f;
    Appeal__ActRequest a;
    bool act;
    struct appeal_result res;
};

static int run_req(void *arg, MDB_txn *t, struct wreq *r) {
    struct file_req *q = (struct file_req *)r;
    struct appeal_ctx c;
    node_appeal_ctx(arg, t, &c);
    free(q->res.record);
    q->res.record = NULL;
    return q->act ? appeal_act(&c, &q->a, &q->res, &r->err)
                  : appeal_file(&c, &q->f, &q->res, &r->err);
}

static int run_heartbeat(void *arg, MDB_txn *t, struct wreq *r) {
    struct appeal_ctx c;
    node_appeal_ctx(arg, t, &c);
    return appeal_heartbeat(&c, &r->err);
}

static void populate(struct node *n) {
    struct writer_hooks h;
    node_writer_hooks(n, &h);
    h.tick = NULL;
    const char *subjects[3] = {"Road repair on Abai street", "Kindergarten place",
                               "Water tariff recalculation"};
    for (int i = 0; i < 3; i++) {
        struct file_req q;
        memset(&q, 0, sizeof q);
        q.w.run = run_req;
        appeal__file_request__init(&q.f);
        q.f.type =
            i == 2 ? APPEAL__APPEAL_TYPE__TYPE_COMPLAINT : APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
        q.f.category = "0003.0002";
        q.f.subject = (char *)subjects[i];
        q.f.name = "Test Applicant";
        q.f.iin = "900101300126";
        CHECK(writer_run_now(&n->eng.store, &h, &q.w) == 0);
        free(q.res.record);
    }
    struct file_req q;
    memset(&q, 0, sizeof q);
    q.w.run = run_req;
    q.act = true;
    appeal__act_request__init(&q.a);
    q.a.number = "KZ-75-2026-000001";
    q.a.action = APPEAL__ACTION__ACTION_ASSIGN;
    q.a.assignee = "Roads department";
    CHECK(writer_run_now(&n->eng.store, &h, &q.w) == 0);
    free(q.res.record);
}

struct rec_pos {
    uint32_t idx;
    uint64_t seq;
    size_t len;
};

static size_t list_records(struct store *s, struct rec_pos *out, size_t max) {
    MDB_txn *t;
    CHECK(store_rd_begin(s, &t) == 0);
    MDB_cursor *c;
    mdb_cursor_open(t, s->dbi[DB_LOG], &c);
    MDB_val k, v;
    size_t n = 0;
    for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0 && n < max;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        out[n].idx = be32_get(k.mv_data);
        out[n].seq = be64_get((uint8_t *)k.mv_data + 4);
        out[n].len = v.mv_size;
        n++;
    }
    mdb_cursor_close(c);
    store_rd_end(s, t);
    return n;
}

static void flip(struct store *s, const struct rec_pos *p, size_t at) {
    MDB_txn *t;
    CHECK(store_wr_begin(s, &t) == 0);
    MDB_val v;
    CHECK(chain_get(s, t, p->idx, p->seq, &v) == 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at] ^= 0x01;
    uint8_t k[CHAIN_KEY_BYTES];
    chain_key(k, p->idx, p->seq);
    CHECK(store_put(t, s, DB_LOG, k, CHAIN_KEY_BYTES, copy, v.mv_size, 0) == 0);
    CHECK(store_commit(s, t) == 0);
    free(copy);
}

static void every_flip_is_caught(struct store *s) {
    struct rec_pos recs[32];
    size_t n = list_records(s, recs, 32);
    CHECK_INT(n, 6); /* genesis, the admin's grant, three filings, one assignment */
    size_t flips = 0, caught = 0;
    for (size_t r = 0; r < n; r++) {
        char want[48];
        snprintf(want, sizeof want, "seq %llu:", (unsigned long long)recs[r].seq);
        for (size_t at = 0; at < recs[r].len; at++) {
            flip(s, &recs[r], at);
            struct verify_report rep;
            struct errbuf e;
            err_clear(&e);
            int rc = verify_store(s, &rep, &e);
            flips++;
            if (rc != 0 && strstr(e.msg, want) != NULL) {
                caught++;
            } else {
                fprintf(stderr, "flip of byte %zu in seq %llu: rc %d, %s\n", at,
                        (unsigned long long)recs[r].seq, rc, e.msg);
            }
            flip(s, &recs[r], at); /* restore */
        }
    }
    CHECK(flips > 1000);
    CHECK_INT(caught, flips);
    struct verify_report rep;
    struct errbuf e;
    CHECK(verify_store(s, &rep, &e) == 0);
    CHECK_INT(rep.records, 6);
}

/* Every derived table, as one string, for comparisons. */
static char *dump_derived(struct store *s) {
    size_t cap = 1 << 20, len = 0;
    char *out = calloc(1, cap);
    MDB_txn *t;
    CHECK(store_rd_begin(s, &t) == 0);
    for (int db = 0; db < DB_COUNT; db++) {
        if (!store_db_derived((enum store_db)db) && db != DB_ORIGINS) {
            continue;
        }
        MDB_cursor *c;
        mdb_cursor_open(t, s->dbi[db], &c);
        MDB_val k, v;
        for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0;
             m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (len + 2 * (k.mv_size + v.mv_size) + 16 > cap) {
                break;
            }
            len += (size_t)snprintf(out + len, cap - len, "%d ", db);
            sodium_bin2hex(out + len, cap - len, k.mv_data, k.mv_size);
            len += 2 * k.mv_size;
            out[len++] = ' ';
            sodium_bin2hex(out + len, cap - len, v.mv_data, v.mv_size);
            len += 2 * v.mv_size;
            out[len++] = '\n';
        }
        mdb_cursor_close(c);
    }
    store_rd_end(s, t);
    return out;
}

static void heartbeat(struct node *n) {
    struct writer_hooks h;
    node_writer_hooks(n, &h);
    h.tick = NULL;
    struct wreq w = {.run = run_heartbeat};
    CHECK(writer_run_now(&n->eng.store, &h, &w) == 0);
}

/* A rotated key signs from the record after the rotation on: the chain
 * verifies; a record the old key signs after it is refused by verify and
 * by the checks replication makes on a run. */
static void rotation_is_enforced(const char *dir) {
    struct errbuf e;
    err_clear(&e);
    uint64_t rot_seq;
    uint8_t new_pk[KEY_PK_BYTES], old_pk[KEY_PK_BYTES], old_sk[KEY_SK_BYTES];
    CHECK(node_rotate_key(dir, &rot_seq, new_pk, &e) == 0);
    char path[512];
    snprintf(path, sizeof path, "%s/sign.key.retired-%llu", dir, (unsigned long long)rot_seq);
    CHECK(keys_load_signing(path, old_pk, old_sk, &e) == 0);
    struct node n;
    struct node_opts o = {.dir = dir};
    CHECK(node_open(&n, &o, &e) == 0);
    CHECK(memcmp(n.eng.keys.sign_pk, old_pk, KEY_PK_BYTES) == 0); /* the identity stays */
    CHECK(memcmp(n.eng.keys.signer_pk, new_pk, KEY_PK_BYTES) == 0);
    CHECK(memcmp(n.eng.self.signing_key, new_pk, KEY_PK_BYTES) == 0);
    CHECK_INT(n.eng.keys.n_rotations, 1);
    heartbeat(&n); /* signed by the new key */
    struct verify_report rep;
    CHECK(verify_store(&n.eng.store, &rep, &e) == 0);

    /* The old key signs the next record anyway (a thief of the old key). */
    Appeal__Heartbeat hb = APPEAL__HEARTBEAT__INIT;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_HEARTBEAT;
    b.heartbeat = &hb;
    b.origin.data = old_pk;
    b.origin.len = KEY_PK_BYTES;
    b.seq = n.eng.self.head_seq + 1;
    b.prev.data = n.eng.self.head_hash;
    b.prev.len = HASH_BYTES;
    b.time_ms = 1;
    uint8_t *env;
    size_t len;
    CHECK(rec_sign(&b, old_sk, &env, &len) == 0);
    MDB_txn *t;
    CHECK(store_wr_begin(&n.eng.store, &t) == 0);
    struct origin_state forged = n.eng.self;
    CHECK(chain_append(&n.eng.store, t, &forged, env, len, &b, 0, false) == 0);
    CHECK(store_commit(&n.eng.store, t) == 0);
    err_clear(&e);
    CHECK_INT(verify_store(&n.eng.store, &rep, &e), APL_ESIG);
    char want[64];
    snprintf(want, sizeof want, "seq %llu: bad signature", (unsigned long long)b.seq);
    CHECK(strstr(e.msg, want) != NULL);

    /* Replication: a run from the rotation to the forged record. */
    ProtobufCBinaryData recs[3];
    MDB_txn *rt;
    CHECK(store_rd_begin(&n.eng.store, &rt) == 0);
    for (uint64_t s = rot_seq; s <= b.seq; s++) {
        MDB_val v;
        CHECK(chain_get(&n.eng.store, rt, n.eng.self.idx, s, &v) == 0);
        recs[s - rot_seq].data = v.mv_data;
        recs[s - rot_seq].len = v.mv_size;
    }
    MDB_val before;
    CHECK(chain_get(&n.eng.store, rt, n.eng.self.idx, rot_seq - 1, &before) == 0);
    uint8_t before_hash[HASH_BYTES];
    rec_hash(before.mv_data, before.mv_size, before_hash);
    Appeal__Run run = APPEAL__RUN__INIT;
    run.origin.data = old_pk;
    run.origin.len = KEY_PK_BYTES;
    run.first_seq = rot_seq;
    run.records = recs;
    run.n_records = 3;
    struct run_base base = {.origin = old_pk,
                            .head_seq = rot_seq - 1,
                            .head_hash = before_hash,
                            .signing_key = old_pk,
                            .juris = "KZ-75",
                            .box_key = n.eng.keys.box_pk};
    struct arena a;
    CHECK(arena_init(&a, 1 << 20) == 0);
    err_clear(&e);
    CHECK_INT(repl_check_run(&run, &base, &a, &e), APL_ESIG);
    run.n_records = 2; /* up to the new key's heartbeat: accepted */
    err_clear(&e);
    CHECK_INT(repl_check_run(&run, &base, &a, &e), 0);
    arena_fini(&a);
    store_rd_end(&n.eng.store, rt);
    free(env);
    node_close(&n);
}

/* rec_decode of a Withdrawn (or filing) signed with `sk`: 0 or its error. */
static int decode_body(Appeal__Body *b, const uint8_t *pk, const uint8_t *sk) {
    static const uint8_t zero[HASH_BYTES];
    b->origin.data = (uint8_t *)pk;
    b->origin.len = KEY_PK_BYTES;
    b->prev.data = (uint8_t *)zero;
    b->prev.len = HASH_BYTES;
    b->seq = 5;
    uint8_t *env = NULL;
    size_t len = 0;
    CHECK(rec_sign(b, sk, &env, &len) == 0);
    struct arena a;
    CHECK(arena_init(&a, RECORD_ARENA_BYTES) == 0);
    struct record r;
    int rc = rec_decode(env, len, &a, &r, NULL);
    arena_fini(&a);
    free(env);
    return rc;
}

/* The record rules of issue 10 F and G (docs/record-format.md 4.2, 7.6):
 * a legacy clear reason is accepted, a reason both clear and sealed is
 * not, a sealed reason needs its data key id, and a category must be a
 * classifier code. */
static void reason_and_category_rules(void) {
    uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES], kid[DATA_KEY_ID_BYTES] = {1},
                                                ct[SEAL_OVERHEAD_BYTES + 5] = {2};
    crypto_sign_keypair(pk, sk);
    Appeal__Withdrawn w = APPEAL__WITHDRAWN__INIT;
    w.number = "KZ-75-2026-000001";
    w.version = 3;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_WITHDRAWN;
    b.withdrawn = &w;
    CHECK_INT(decode_body(&b, pk, sk), 0); /* no reason */
    w.reason = "legacy: withdrawn by phone";
    CHECK_INT(decode_body(&b, pk, sk), 0); /* a legacy clear reason */
    w.sealed_reason.data = ct;
    w.sealed_reason.len = sizeof ct;
    CHECK(decode_body(&b, pk, sk) != 0); /* clear and sealed */
    w.reason = "";
    CHECK(decode_body(&b, pk, sk) != 0); /* sealed, no data key id */
    w.data_key_id.data = kid;
    w.data_key_id.len = sizeof kid;
    CHECK_INT(decode_body(&b, pk, sk), 0);
    w.sealed_reason.len = SEAL_OVERHEAD_BYTES; /* an empty text is not sealed */
    CHECK(decode_body(&b, pk, sk) != 0);

    Appeal__AppealFiled f = APPEAL__APPEAL_FILED__INIT;
    f.number = "KZ-75-2026-000001";
    f.type = APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
    f.jurisdiction = "KZ-75";
    b.event_case = APPEAL__BODY__EVENT_FILED;
    b.filed = &f;
    const char *good[] = {"0002.0001", "1", "0003.0002.0001"};
    const char *bad[] = {"",
                         "=1+1",
                         "@SUM(1+1)",
                         "0002,0001",
                         "-1",
                         "0002.0001 ",
                         "12345678901234567890123456789012"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        f.category = (char *)good[i];
        CHECK_INT(decode_body(&b, pk, sk), 0);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f.category = (char *)bad[i];
        CHECK(decode_body(&b, pk, sk) != 0);
    }
}

int main(void) {
    if (sodium_init() < 0) {
        return 1;
    }
    olog_init("KZ-75", "test", 2, OLOG_WARN);
    char dir[] = "/tmp/appeal-test-chain-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct errbuf e;
    err_clear(&e);
    CHECK(node_init(dir, "KZ-75", &e) == 0);
    struct node n;
    struct node_opts o = {.dir = dir};
    CHECK(node_open(&n, &o, &e) == 0);
    populate(&n);

    char *before = dump_derived(&n.eng.store);
    CHECK(strlen(before) > 100);
    CHECK(state_rebuild(&n.eng.store, &e) == 0);
    char *after = dump_derived(&n.eng.store);
    CHECK_STR(after, before);
    free(before);
    free(after);

    every_flip_is_caught(&n.eng.store);
    reason_and_category_rules();
    node_close(&n);
    rotation_is_enforced(dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
