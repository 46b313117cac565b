/* forge --data DIR --actor PUBLIC: plays a compromised node. Appends to
 * the log of a stopped node, signed with its real key, a heartbeat that
 * names PUBLIC as its actor, bypassing every check of the API (which
 * refuses a revoked key). Peers that replicate it must refuse it when the
 * log revoked PUBLIC before (tests/integration/test_security.py). */
#include <stdio.h>
#include <string.h>

#include "appeal.h"
#include "keys.h"
#include "node.h"
#include "olog.h"

static const uint8_t *actor;

static int run_forge(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    c.actor = actor;
    return appeal_heartbeat(&c, &r->err);
}

int main(int argc, char **argv) {
    if (argc != 5 || strcmp(argv[1], "--data") != 0 || strcmp(argv[3], "--actor") != 0) {
        fprintf(stderr, "usage: forge --data DIR --actor PUBLIC\n");
        return 2;
    }
    olog_init("forge", "-", 2, OLOG_WARN);
    struct errbuf e = {0};
    uint8_t pk[KEY_PK_BYTES];
    if (keys_parse_public(argv[4], pk, &e) != 0) {
        fprintf(stderr, "forge: %s\n", e.msg);
        return 2;
    }
    actor = pk;
    static struct node n;
    struct node_opts o = {.dir = argv[2]};
    if (node_open(&n, &o, &e) != 0) {
        fprintf(stderr, "forge: %s\n", e.msg);
        return 1;
    }
    struct writer_hooks h;
    node_writer_hooks(&n, &h);
    struct wreq r = {.run = run_forge, .arg = &n};
    int rc = writer_run_now(&n.store, &h, &r);
    if (rc != 0) {
        fprintf(stderr, "forge: %s\n", err_msg(&r.err, rc));
    } else {
        printf("forged seq %llu\n", (unsigned long long)n.self.head_seq);
    }
    node_close(&n);
    return rc != 0;
}
