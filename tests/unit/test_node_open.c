/* test_node_open: node_open releases what it acquired when a later step
 * fails (goto fail unwinding): with a cluster file loaded first, a missing
 * administrator key, a bad rules file or a store it cannot open leave
 * nothing behind (n->cluster NULL; under ASan, LeakSanitizer finds no
 * block once the struct is cleared), and the error names the cause. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "clusterfile.h"
#include "node.h"
#include "olog.h"
#include "util.h"

static struct node n; /* large */

static void path_of(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_cluster(const char *dir, const char *path) {
    struct node_keys k;
    struct errbuf e;
    err_clear(&e);
    CHECK(keys_load(dir, &k, &e) == 0);
    char entry[1024];
    cluster_entry_format(entry, sizeof entry, "KZ-75", k.sign_pk, k.box_pk, "tcp://127.0.0.1:1");
    keys_wipe(&k);
    CHECK(util_write_file(path, entry, strlen(entry), 0644, false) == 0);
}

/* node_open fails with a message containing `want`, and holds nothing. */
static void open_fails(const struct node_opts *o, const char *want) {
    struct errbuf e;
    err_clear(&e);
    CHECK(node_open(&n, o, &e) != 0);
    CHECK_CONTAINS(e.msg, want);
    CHECK(n.cluster == NULL);
    CHECK(n.tls == NULL);
    memset(&n, 0, sizeof n); /* what it leaked is now unreachable: LeakSanitizer reports it */
}

int main(void) {
    if (sodium_init() < 0) {
        return 1;
    }
    olog_init("KZ-75", "test", 2, OLOG_ERROR);
    char dir[] = "/tmp/appeal-test-open-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data[256], cluster[256], a[300], b[300];
    path_of(data, sizeof data, dir, "d");
    path_of(cluster, sizeof cluster, dir, "cluster.conf");
    struct errbuf e;
    err_clear(&e);
    CHECK(node_init(data, "KZ-75", &e) == 0);
    write_cluster(data, cluster);
    struct node_opts o = {.dir = data, .cluster_path = cluster};

    /* Sane: it opens with its cluster, and closes. */
    CHECK(node_open(&n, &o, &e) == 0);
    CHECK(n.cluster != NULL);
    node_close(&n);

    /* No administrator key (neither half): after the cluster file was loaded. */
    char c2[300], d2[300];
    path_of(a, sizeof a, data, "admin.key");
    path_of(b, sizeof b, dir, "admin.key.away");
    path_of(c2, sizeof c2, data, "admin.key.pub");
    path_of(d2, sizeof d2, dir, "admin.key.pub.away");
    CHECK(rename(a, b) == 0);
    CHECK(rename(c2, d2) == 0);
    open_fails(&o, "admin.key.pub");
    CHECK(rename(b, a) == 0);
    CHECK(rename(d2, c2) == 0);

    /* A rules file that does not parse. */
    path_of(a, sizeof a, data, "rules.conf");
    path_of(b, sizeof b, dir, "rules.conf.away");
    (void)rename(a, b); /* it may not exist: the defaults apply */
    CHECK(util_write_file(a, "no such setting = 1\n", 20, 0644, false) == 0);
    open_fails(&o, "rules.conf");
    CHECK(unlink(a) == 0);
    (void)rename(b, a);

    /* A store it cannot open: db is a file, not a folder. */
    path_of(a, sizeof a, data, "db");
    path_of(b, sizeof b, dir, "db.away");
    CHECK(rename(a, b) == 0);
    CHECK(util_write_file(a, "x", 1, 0644, false) == 0);
    open_fails(&o, "db");
    CHECK(unlink(a) == 0);
    CHECK(rename(b, a) == 0);

    /* And it opens again afterwards. */
    err_clear(&e);
    CHECK(node_open(&n, &o, &e) == 0);
    node_close(&n);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
