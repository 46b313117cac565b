/* oldschema --data DIR: marks the store of a stopped node as written by the
 * previous schema (STORE_SCHEMA_REBUILDABLE), as an upgrade finds it: the
 * node must rebuild its derived tables from the log when it next opens the
 * store (tests/integration/test_verify.py). */
#include <stdio.h>
#include <string.h>

#include "olog.h"
#include "store.h"

int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "--data") != 0) {
        fprintf(stderr, "usage: oldschema --data DIR\n");
        return 2;
    }
    olog_init("oldschema", "-", 2, OLOG_WARN);
    struct errbuf e = {0};
    struct store s;
    struct store_opts so = {.map_bytes = 1 << 20, .map_max_bytes = 1 << 20};
    int rc = store_open(&s, argv[2], &so, &e);
    if (rc != 0) {
        fprintf(stderr, "oldschema: %s\n", e.msg);
        return 1;
    }
    MDB_txn *t;
    uint8_t ver[4];
    be32_put(ver, STORE_SCHEMA_REBUILDABLE);
    rc = store_wr_begin(&s, &t);
    if (rc == 0) {
        rc = store_put(t, &s, DB_META, "schema", 6, ver, sizeof ver, 0);
        rc = rc == 0 ? store_commit(&s, t) : (store_abort(&s, t), rc);
    }
    store_close(&s);
    if (rc != 0) {
        fprintf(stderr, "oldschema: %s\n", apl_strerror(rc));
        return 1;
    }
    printf("schema %d\n", STORE_SCHEMA_REBUILDABLE);
    return 0;
}
