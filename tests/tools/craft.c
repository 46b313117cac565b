/* craft: plays a broken or compromised node writing record shapes no node
 * writes, for the verifiers to judge (tests/integration/test_pyverify.py).
 *
 *   craft --data DIR --sign HEX     prints the Ed25519 signature of the
 *                                   bytes HEX by DIR/sign.key (hex)
 *   craft --data DIR --append HEX   appends the bytes HEX, unchecked, as the
 *                                   next record of the node's own log and
 *                                   moves its head there (node stopped); if
 *                                   they decode as a grant or a revocation,
 *                                   folds it into the grants table, as the
 *                                   node does for what it writes
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bounds.h"
#include "keys.h"
#include "chain.h"
#include "olog.h"
#include "record.h"
#include "store.h"
#include "util.h"

static int from_hex(const char *hex, uint8_t **out, size_t *len) {
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > RECORD_BYTES_MAX * 2) {
        return APL_EINVAL;
    }
    *len = n / 2;
    *out = malloc(*len + 1);
    return *out == NULL ? APL_ENOMEM : util_unhex(hex, *out, *len);
}

static int sign(const char *dir, const uint8_t *b, size_t len, struct errbuf *e) {
    static struct node_keys k;
    int rc = keys_load(dir, &k, e);
    if (rc != 0) {
        return rc;
    }
    uint8_t sig[SIG_BYTES];
    crypto_sign_detached(sig, NULL, b, len, k.sign_sk);
    for (size_t i = 0; i < SIG_BYTES; i++) {
        printf("%02x", sig[i]);
    }
    printf("\n");
    return 0;
}

/* The grants table follows the log (section 6.4 of record-format.md is
 * checked against it by `appeal-node verify`): a record that decodes is
 * folded; one that does not is left to the verifiers to refuse. */
static int fold_grant(struct store *s, MDB_txn *t, uint64_t seq, const uint8_t *b, size_t len) {
    struct arena a;
    if (arena_init(&a, RECORD_ARENA_BYTES) != 0) {
        return APL_ENOMEM;
    }
    struct record rec;
    int rc = 0;
    if (rec_decode(b, len, &a, &rec, NULL) == 0) {
        rc = grant_apply(s, t, 1, seq, rec.body);
    }
    arena_fini(&a);
    return rc;
}

static int append(const char *dir, const uint8_t *b, size_t len, struct errbuf *e) {
    struct store s;
    struct store_opts so = {.map_bytes = 1 << 20, .map_max_bytes = 1 << 30};
    int rc = store_open(&s, dir, &so, e);
    if (rc != 0) {
        return rc;
    }
    MDB_txn *t;
    struct origin_state o;
    rc = store_wr_begin(&s, &t);
    if (rc != 0) {
        store_close(&s);
        return rc;
    }
    rc = chain_origin_by_idx(&s, t, 1, &o); /* a node's own origin is index 1 */
    uint8_t k[CHAIN_KEY_BYTES];
    if (rc == 0) {
        chain_key(k, o.idx, o.head_seq + 1);
        rc = store_put(t, &s, DB_LOG, k, CHAIN_KEY_BYTES, b, len, MDB_NOOVERWRITE);
    }
    if (rc == 0) {
        o.head_seq++;
        rec_hash(b, len, o.head_hash);
        rc = chain_origin_save(&s, t, &o);
    }
    if (rc == 0) {
        rc = fold_grant(&s, t, o.head_seq, b, len);
    }
    rc = rc == 0 ? store_commit(&s, t) : (store_abort(&s, t), rc);
    if (rc == 0) {
        printf("appended seq %llu\n", (unsigned long long)o.head_seq);
    }
    store_close(&s);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 5 || strcmp(argv[1], "--data") != 0 ||
        (strcmp(argv[3], "--sign") != 0 && strcmp(argv[3], "--append") != 0)) {
        fprintf(stderr, "usage: craft --data DIR (--sign HEX | --append HEX)\n");
        return 2;
    }
    olog_init("craft", "-", 2, OLOG_WARN);
    if (sodium_init() < 0) {
        return 1;
    }
    struct errbuf e = {0};
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = from_hex(argv[4], &b, &len);
    if (rc != 0) {
        fprintf(stderr, "craft: HEX is not hex\n");
        free(b);
        return 2;
    }
    rc = strcmp(argv[3], "--sign") == 0 ? sign(argv[2], b, len, &e) : append(argv[2], b, len, &e);
    if (rc != 0) {
        fprintf(stderr, "craft: %s\n", e.msg[0] ? e.msg : apl_strerror(rc));
    }
    free(b);
    return rc != 0;
}
