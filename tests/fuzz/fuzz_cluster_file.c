/*
 * fuzz_cluster_file: the text of the cluster file, the federation's trust
 * store (cluster_parse, cluster/clusterfile.h). An operator assembles it from
 * the entries `appeal-node init` prints for every node, so its text passes
 * through several hands. A text the node accepts must mean what it says:
 *  - every node's address is the one its last `peer`, `pub` or `query` line
 *    gives (as written);
 *  - printed back the way `appeal-node init` prints entries (derived
 *    addresses left out) and parsed again, it gives the same nodes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterfile.h"
#include "fuzz.h"
#include "record.h"
#include "util.h"

/* A node's entry printed back is at most this long (three URLs, two keys). */
enum { ENTRY_BYTES_MAX = 64 + 3 * (CLUSTER_URL_BYTES + 8) + 2 * (2 * KEY_PK_BYTES + 8) };

static struct cluster *parsed, *again; /* about 200 KB each: allocated once */
static char *printed;                  /* CLUSTER_NODES_MAX entries */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(NULL, 0);
    parsed = malloc(sizeof *parsed);
    again = malloc(sizeof *again);
    printed = malloc((size_t)CLUSTER_NODES_MAX * ENTRY_BYTES_MAX);
    FUZZ_ASSERT(parsed != NULL && again != NULL && printed != NULL);
    return 0;
}

/* `url` is what cluster_parse derives from the peer address: not printed. */
static bool derived(const struct cluster_node *nd, const char *url, int delta) {
    char d[CLUSTER_URL_BYTES];
    return nd->peer_url[0] != '\0' && cluster_url_offset(nd->peer_url, delta, d) == 0 &&
           strcmp(d, url) == 0;
}

/* The cluster in the format cluster.h documents. */
static void print_cluster(const struct cluster *c, char *out, size_t cap) {
    size_t n = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        const struct cluster_node *nd = &c->nodes[i];
        char sign[2 * KEY_PK_BYTES + 1], box[2 * BOX_PK_BYTES + 1];
        util_hex(nd->sign_pk, KEY_PK_BYTES, sign);
        util_hex(nd->box_pk, BOX_PK_BYTES, box);
        int w = snprintf(out + n, cap - n, "node %s\n  sign %s\n  box %s\n", nd->juris, sign, box);
        FUZZ_ASSERT(w > 0 && (size_t)w < cap - n);
        n += (size_t)w;
        const char *const keys[3] = {"peer", "pub", "query"};
        const char *const urls[3] = {nd->peer_url, nd->pub_url, nd->query_url};
        for (int k = 0; k < 3; k++) {
            if (urls[k][0] != '\0' && (k == 0 || !derived(nd, urls[k], k))) {
                w = snprintf(out + n, cap - n, "  %s %s\n", keys[k], urls[k]);
                FUZZ_ASSERT(w > 0 && (size_t)w < cap - n);
                n += (size_t)w;
            }
        }
    }
}

/* True if a line after `rest` and before the next `node` sets the address
 * that a `word` line sets (cluster_parse keeps the last one). */
static bool set_again(const char *rest, const char *word) {
    for (const char *q = rest; q != NULL;) {
        char w[16] = {0};
        if (sscanf(q, "%15s", w) == 1 && strcmp(w, "node") == 0) {
            return false;
        }
        /* With the known bug cluster-query-as-pub, `query` sets pub_url. */
        if (strcmp(w, word) == 0 ||
            (fuzz_skip_known() && strcmp(word, "pub") == 0 && strcmp(w, "query") == 0)) {
            return true;
        }
        q = strchr(q, '\n');
        q = q != NULL ? q + 1 : NULL;
    }
    return false;
}

/* The address lines of the text, read the way cluster_parse reads lines:
 * the last `peer`, `pub` and `query` of each node is what it stores. */
static void check_as_written(const struct cluster *c, char *text) {
    int node = -1;
    for (char *rest = NULL, *p = text; p != NULL; p = rest) {
        char *nl = strchr(p, '\n');
        rest = nl != NULL ? nl + 1 : NULL;
        if (nl != NULL) {
            *nl = '\0';
        }
        char *hash = strchr(p, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char word[16] = {0}, val[CLUSTER_URL_BYTES] = {0};
        if (sscanf(p, "%15s %255s", word, val) != 2) {
            continue;
        }
        if (strcmp(word, "node") == 0) {
            node++;
            continue;
        }
        FUZZ_ASSERT(node >= 0 && (uint32_t)node < c->count);
        const struct cluster_node *nd = &c->nodes[node];
        const char *stored = strcmp(word, "peer") == 0    ? nd->peer_url
                             : strcmp(word, "pub") == 0   ? nd->pub_url
                             : strcmp(word, "query") == 0 ? nd->query_url
                                                          : NULL;
        /* Known bug cluster-query-as-pub (tests/fuzz/regressions/README.md). */
        bool known = fuzz_skip_known() && strcmp(word, "query") == 0;
        if (stored != NULL && !known && strcmp(stored, val) != 0 && !set_again(rest, word)) {
            fprintf(stderr, "node %s: `%s %s` is stored as `%s`\n", nd->juris, word, val, stored);
            FUZZ_ASSERT(strcmp(stored, val) == 0);
        }
    }
}

static void check_same(const struct cluster *a, const struct cluster *b) {
    FUZZ_ASSERT(a->count == b->count);
    for (uint32_t i = 0; i < a->count; i++) {
        const struct cluster_node *x = &a->nodes[i], *y = &b->nodes[i];
        FUZZ_ASSERT(strcmp(x->juris, y->juris) == 0);
        FUZZ_ASSERT(memcmp(x->sign_pk, y->sign_pk, KEY_PK_BYTES) == 0);
        FUZZ_ASSERT(memcmp(x->box_pk, y->box_pk, BOX_PK_BYTES) == 0);
        FUZZ_ASSERT(strcmp(x->peer_url, y->peer_url) == 0);
        FUZZ_ASSERT(strcmp(x->pub_url, y->pub_url) == 0);
        FUZZ_ASSERT(strcmp(x->query_url, y->query_url) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    struct errbuf e;
    err_clear(&e);
    int rc = cluster_parse(parsed, text, &e);
    if (rc != 0) {
        free(text);
        FUZZ_ASSERT(rc == APL_EINVAL || rc == APL_ETOOBIG);
        return 0;
    }
    FUZZ_ASSERT(parsed->count >= 1 && parsed->count <= CLUSTER_NODES_MAX);
    for (uint32_t i = 0; i < parsed->count; i++) {
        const struct cluster_node *nd = &parsed->nodes[i];
        FUZZ_ASSERT(juris_valid(nd->juris));
        FUZZ_ASSERT(cluster_by_origin(parsed, nd->sign_pk) == nd);
        FUZZ_ASSERT(cluster_by_juris(parsed, nd->juris) == nd);
    }
    check_as_written(parsed, text);
    free(text);
    print_cluster(parsed, printed, (size_t)CLUSTER_NODES_MAX * ENTRY_BYTES_MAX);
    err_clear(&e);
    rc = cluster_parse(again, printed, &e);
    if (rc != 0) {
        fprintf(stderr, "printed back, the cluster is refused: %s\n%s", e.msg, printed);
        FUZZ_ASSERT(rc == 0);
    }
    check_same(parsed, again);
    return 0;
}
