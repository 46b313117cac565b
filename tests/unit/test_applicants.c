/* The applicants index's stage (node/store/applicants.h) on a real LMDB
 * store: an entry is found staged, merged and reloaded; an aborted
 * transaction's entries (and its merge) are forgotten in memory as LMDB
 * forgets them on disk; "latest" is the greatest number wherever it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "applicants.h"
#include "check.h"
#include "err.h"

static struct store s;
static struct app_stage g;

static void key_of(uint8_t key[17], char c) {
    memset(key, c, 16);
    key[16] = 'x';
}

static const char *latest(char c) {
    static char out[NUMBER_BYTES_MAX + 1];
    uint8_t key[17];
    key_of(key, c);
    MDB_txn *t;
    CHECK(store_rd_begin(&s, &t) == 0);
    CHECK(apst_latest(&g, &s, t, key, sizeof key, out) == 0);
    store_rd_end(&s, t);
    return out;
}

struct listing {
    char text[256];
};

/* "k:N " for each applicant: its key's first byte, its number's last digit. */
static void list_one(void *arg, const uint8_t *key, size_t kl, const char *number, size_t nl) {
    struct listing *l = arg;
    size_t at = strlen(l->text);
    CHECK_INT(kl, 17);
    snprintf(l->text + at, sizeof l->text - at, "%c:%c ", key[0], number[nl - 1]);
}

/* Notes each (key, number) in one transaction, settles it and commits, or
 * aborts it. */
static void write_txn(const char *keys, const char *const *numbers, bool commit) {
    MDB_txn *t;
    CHECK(store_wr_begin(&s, &t) == 0);
    for (size_t i = 0; keys[i] != '\0'; i++) {
        uint8_t key[17];
        key_of(key, keys[i]);
        CHECK(apst_note(&g, &s, t, key, sizeof key, numbers[i]) == 0);
    }
    CHECK(apst_settle(&g, &s, t) == 0);
    if (commit) {
        CHECK(store_commit(&s, t) == 0);
        apst_committed(&g);
    } else {
        store_abort(&s, t);
        apst_rollback(&g);
    }
}

static size_t rows(enum store_db db, const char *prefix) {
    MDB_txn *t;
    MDB_cursor *c;
    CHECK(store_rd_begin(&s, &t) == 0);
    CHECK(mdb_cursor_open(t, s.dbi[db], &c) == 0);
    size_t n = 0;
    MDB_val k, v;
    for (int r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0;
         r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        n += prefix == NULL || (k.mv_size >= 4 && memcmp(k.mv_data, prefix, 4) == 0);
    }
    mdb_cursor_close(c);
    store_rd_end(&s, t);
    return n;
}

int main(void) {
    char dir[] = "/tmp/appeal-test-applicants-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct errbuf e;
    err_clear(&e);
    struct store_opts o = {.map_bytes = 8u << 20, .map_max_bytes = 64u << 20};
    CHECK(store_open(&s, dir, &o, &e) == 0);
    CHECK(apst_init(&g, &s) == 0);
    g.enabled = true;
    g.merge_at = 3;

    /* staged: found, not in the index yet */
    write_txn("a", (const char *[]){"KZ-75-2026-000001"}, true);
    CHECK_STR(latest('a'), "KZ-75-2026-000001");
    CHECK_INT(rows(DB_APPLICANTS, NULL), 0);
    CHECK_INT(rows(DB_META, "apst"), 1);

    /* aborted: forgotten, the earlier entry stays */
    write_txn("ab", (const char *[]){"KZ-75-2026-000002", "KZ-75-2026-000003"}, false);
    CHECK_STR(latest('a'), "KZ-75-2026-000001");
    CHECK_STR(latest('b'), "");
    CHECK_INT(g.count, 1);
    CHECK_INT(rows(DB_META, "apst"), 1);

    /* an older number never replaces a newer one */
    write_txn("a", (const char *[]){"KZ-75-2026-000000"}, true);
    CHECK_STR(latest('a'), "KZ-75-2026-000001");

    /* a merge that is aborted: the stage is kept whole */
    write_txn("bc", (const char *[]){"KZ-75-2026-000004", "KZ-75-2026-000005"}, false);
    CHECK_INT(g.count, 1);
    CHECK_INT(rows(DB_APPLICANTS, NULL), 0);
    CHECK_STR(latest('b'), "");

    /* the third key merges: index in key order, rows gone, memory empty */
    write_txn("bc", (const char *[]){"KZ-75-2026-000004", "KZ-75-2026-000005"}, true);
    CHECK_INT(g.count, 0);
    CHECK_INT(rows(DB_META, "apst"), 0);
    CHECK_INT(rows(DB_APPLICANTS, NULL), 3);
    CHECK_STR(latest('a'), "KZ-75-2026-000001");
    CHECK_STR(latest('c'), "KZ-75-2026-000005");

    /* staged over an indexed entry: the greater wins, from either side */
    write_txn("a", (const char *[]){"KZ-75-2026-000006"}, true);
    CHECK_STR(latest('a'), "KZ-75-2026-000006");
    write_txn("c", (const char *[]){"KZ-75-2026-000002"}, true);
    CHECK_STR(latest('c'), "KZ-75-2026-000005");
    write_txn("0", (const char *[]){"KZ-75-2026-000008"}, true); /* sorts first */
    /* the merged view, in key order: what `appeal-node dump` prints */
    struct listing l = {0};
    MDB_txn *rt;
    CHECK(store_rd_begin(&s, &rt) == 0);
    CHECK(apst_each(&g, &s, rt, list_one, &l) == 0);
    store_rd_end(&s, rt);
    CHECK_STR(l.text, "0:8 a:6 b:4 c:5 ");

    /* reloaded after a restart */
    apst_fini(&g);
    CHECK(apst_init(&g, &s) == 0);
    g.enabled = true;
    CHECK_INT(g.count, 2);
    CHECK_STR(latest('a'), "KZ-75-2026-000006");
    CHECK_STR(latest('0'), "KZ-75-2026-000008");

    /* not enabled (offline commands): straight into the index */
    g.enabled = false;
    write_txn("d", (const char *[]){"KZ-75-2026-000007"}, true);
    CHECK_INT(rows(DB_APPLICANTS, NULL), 4);
    CHECK_STR(latest('d'), "KZ-75-2026-000007");

    /* rebuild's clear: rows and memory */
    MDB_txn *t;
    CHECK(store_wr_begin(&s, &t) == 0);
    CHECK(apst_clear(&g, &s, t) == 0);
    CHECK(store_commit(&s, t) == 0);
    CHECK_INT(rows(DB_META, "apst"), 0);
    CHECK_INT(g.count, 0);

    apst_fini(&g);
    store_close(&s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_failures != 0;
}
