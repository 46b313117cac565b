#include "node.h"

#include <sodium.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "clusterfile.h"
#include "http.h"
#include "notify.h"
#include "open311.h"
#include "repl.h"
#include "survey.h"
#include "tls.h"
#include "appeal.h"
#include "bounds.h"
#include "record.h"
#include "sigahead.h"
#include "util.h"

enum {
    NODE_CONF_BYTES_MAX = 64 * 1024,
    READER_CHECK_TICKS = 60,
};

int node_read_conf(const char *dir, char juris[16], struct errbuf *e) {
    char path[4096], *text = NULL;
    snprintf(path, sizeof path, "%s/node.conf", dir);
    int rc = util_read_file(path, NODE_CONF_BYTES_MAX, &text, NULL);
    if (rc != 0) {
        return err_set(e, rc, "cannot read %s: is %s an initialised node (appeal-node init)?", path,
                       dir);
    }
    juris[0] = '\0';
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *p = util_trim(line), *eq = strchr(p, '=');
        if (*p == '#' || eq == NULL) {
            continue;
        }
        *eq = '\0';
        if (strcmp(util_trim(p), "jurisdiction") == 0) {
            snprintf(juris, 16, "%s", util_trim(eq + 1));
        }
    }
    free(text);
    if (!juris_valid(juris)) {
        return err_set(e, APL_EINVAL, "%s: jurisdiction missing or malformed", path);
    }
    return 0;
}

static int write_default(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = util_write_file(path, text, strlen(text), 0644, true);
    return rc == APL_EEXIST ? 0 : rc;
}

static void hook_begin(void *arg) {
    struct node *n = arg;
    n->eng.self_saved = n->eng.self;
    n->eng.ingest_txn_bytes = 0;
    n->eng.unfolded_saved = n->eng.unfolded_bytes;
    /* The aggregate changes of a whole group commit are summed in memory
     * and written once (a batch of filings shares most of its cells). */
    state_batch_begin(&n->eng.state);
}

static int hook_precommit(void *arg, MDB_txn *t) {
    struct node *n = arg;
    int rc = state_batch_end(&n->eng.state, t);
    return rc != 0 ? rc : apst_settle(&n->eng.state.applicants, &n->eng.store, t);
}

static void hook_rollback(void *arg) {
    struct node *n = arg;
    n->eng.self = n->eng.self_saved;
    n->eng.unfolded_bytes = n->eng.unfolded_saved;
    state_batch_end(&n->eng.state, NULL); /* forget the sums of the aborted batch */
    apst_rollback(&n->eng.state.applicants);
}

static uint64_t hook_committed(void *arg) {
    struct node *n = arg;
    apst_committed(&n->eng.state.applicants);
    if (n->eng.self.head_seq != n->eng.self_saved.head_seq) {
        n->last_record_ms = node_now_ms(n);
        atomic_fetch_add_explicit(&n->eng.metrics.own_records,
                                  n->eng.self.head_seq - n->eng.self_saved.head_seq,
                                  memory_order_relaxed);
    }
    engine_publish_frozen(&n->eng);
    return n->eng.self.head_seq;
}

static void hook_durable(void *arg, uint64_t head) {
    struct node *n = arg;
    atomic_store(&n->eng.durable_head, head);
    repl_durable(n->repl, head);
}

static int run_heartbeat(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    return appeal_heartbeat(&c, &r->err);
}

static void hook_tick(void *arg) {
    struct node *n = arg;
    if (++n->ticks % READER_CHECK_TICKS == 0) {
        int dead = store_reader_check(&n->eng.store);
        if (dead > 0) {
            char d[16];
            snprintf(d, sizeof d, "%d", dead);
            olog(OLOG_WARN, "stale_readers_cleared", "count", d, NULL);
        }
    }
    if (n->cluster == NULL || n->heartbeat_idle_ms <= 0 || repl_recovering(n->repl) ||
        n->eng.self.frozen) {
        return;
    }
    int64_t now = node_now_ms(n);
    if (now - n->last_record_ms < n->heartbeat_idle_ms) {
        return;
    }
    struct writer_hooks h;
    node_writer_hooks(n, &h);
    struct wreq r = {.run = run_heartbeat};
    /* Inline on the writer thread: we are it, between batches. */
    writer_run_now(&n->eng.store, &h, &r);
    if (r.rc == APL_ESTORAGE) {
        writer_fail(&n->eng.writer, "a sync of the store failed");
    }
    if (r.rc != 0) {
        olog(OLOG_ERROR, "heartbeat_failed", "error", err_msg(&r.err, r.rc), NULL);
    }
}

static bool hook_idle(void *arg) {
    struct node *n = arg;
    struct writer_hooks h;
    node_writer_hooks(n, &h);
    return engine_fold_step(&n->eng, &h);
}

void node_writer_hooks(struct node *n, struct writer_hooks *h) {
    memset(h, 0, sizeof *h);
    h->node = n;
    h->begin = hook_begin;
    h->rollback = hook_rollback;
    h->precommit = hook_precommit;
    h->committed = hook_committed;
    h->durable = hook_durable;
    h->tick = hook_tick;
    h->idle = hook_idle;
    h->metrics = &n->eng.metrics;
}

static int run_genesis(void *arg, MDB_txn *t, struct wreq *r) {
    struct node *n = arg;
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    int rc = appeal_genesis(&c, n->eng.juris, &r->err);
    if (rc != 0) {
        return rc;
    }
    /* The administrator's key holds every role for the jurisdiction. */
    Appeal__GrantRequest g = APPEAL__GRANT_REQUEST__INIT;
    g.key.data = n->admin_pk;
    g.key.len = KEY_PK_BYTES;
    g.role = "admin";
    g.label = "node administrator (admin.key)";
    return appeal_grant(&c, &g, NULL, &r->err);
}

struct admin_write {
    struct node *n;
    const Appeal__Request *q;
    struct appeal_result res;
};

static int run_admin(void *node, MDB_txn *t, struct wreq *r) {
    (void)node;
    struct admin_write *aw = r->arg;
    struct appeal_ctx c;
    node_appeal_ctx(aw->n, t, &c);
    return aw->q->op_case == APPEAL__REQUEST__OP_GRANT
               ? appeal_grant(&c, aw->q->grant, &aw->res, &r->err)
               : appeal_revoke(&c, aw->q->revoke, &aw->res, &r->err);
}

int node_admin_write(const char *dir, const Appeal__Request *q, uint64_t *seq, struct errbuf *e) {
    struct node n;
    struct node_opts o = {.dir = dir};
    int rc = node_open(&n, &o, e);
    if (rc != 0) {
        return rc;
    }
    struct writer_hooks h;
    node_writer_hooks(&n, &h);
    struct admin_write aw = {.n = &n, .q = q};
    struct wreq r = {.run = run_admin, .arg = &aw};
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/recover", dir);
    if (access(marker, F_OK) == 0) {
        rc = err_set(e, APL_EUNAVAIL,
                     "the node is recovering: start it with its cluster so it relearns its own "
                     "log, then grant");
    } else {
        rc = writer_run_now(&n.eng.store, &h, &r);
        if (rc != 0) {
            err_set(e, rc, "%s", err_msg(&r.err, rc));
        }
    }
    free(aw.res.record);
    *seq = aw.res.seq;
    node_close(&n);
    return rc;
}

struct rotate_write {
    struct node *n;
    uint8_t new_pk[KEY_PK_BYTES];
    struct appeal_result res;
};

static int run_rotate(void *node, MDB_txn *t, struct wreq *r) {
    (void)node;
    struct rotate_write *rw = r->arg;
    struct appeal_ctx c;
    node_appeal_ctx(rw->n, t, &c);
    return appeal_rotate(&c, rw->new_pk, &rw->res, &r->err);
}

int node_rotate_key(const char *dir, uint64_t *seq, uint8_t new_pk[KEY_PK_BYTES],
                    struct errbuf *e) {
    static struct node n; /* large */
    struct node_opts o = {.dir = dir};
    int rc = node_open(&n, &o, e);
    if (rc != 0) {
        return rc;
    }
    char path[4200], next[4200], cur[4200];
    snprintf(path, sizeof path, "%s/recover", dir);
    if (access(path, F_OK) == 0 || n.eng.self.head_seq == 0) {
        node_close(&n);
        return err_set(e, APL_EUNAVAIL,
                       "the node is recovering its log from its peers: start it with its "
                       "cluster until it has, then rotate");
    }
    snprintf(path, sizeof path, "%s/origin.pub", dir);
    snprintf(next, sizeof next, "%s/sign.key.next", dir);
    snprintf(cur, sizeof cur, "%s/sign.key", dir);
    if (access(path, F_OK) != 0) {
        rc = keys_save_public(path, n.eng.keys.sign_pk,
                              "Ed25519 origin key of this node (its identity)", e);
    }
    uint8_t sk[KEY_SK_BYTES];
    struct rotate_write rw = {.n = &n};
    crypto_sign_keypair(rw.new_pk, sk);
    unlink(next); /* a rotation that never reached the log */
    if (rc == 0) {
        rc = keys_save_signing(next, sk, "Ed25519 signing key of this node (successor)", e);
    }
    util_wipe(sk, sizeof sk);
    if (rc == 0) {
        struct writer_hooks h;
        node_writer_hooks(&n, &h);
        struct wreq r = {.run = run_rotate, .arg = &rw};
        rc = writer_run_now(&n.eng.store, &h, &r);
        if (rc != 0) {
            err_set(e, rc, "cannot write the rotation record: %s", err_msg(&r.err, rc));
            unlink(next);
        }
    }
    free(rw.res.record);
    if (rc == 0) {
        *seq = rw.res.seq;
        memcpy(new_pk, rw.new_pk, KEY_PK_BYTES);
        char old[4200];
        snprintf(old, sizeof old, "%s/sign.key.retired-%llu", dir, (unsigned long long)*seq);
        /* A crash before these renames is finished by the next node_open. */
        if (rename(cur, old) != 0 || rename(next, cur) != 0) {
            rc = err_set(e, APL_EIO,
                         "the rotation is in the log but %s could not be put in "
                         "place (%s): the next start finishes it",
                         next, strerror(errno));
        } else {
            util_fsync_dir_of(cur);
        }
    }
    node_close(&n);
    return rc;
}

int node_init(const char *dir, const char *juris, struct errbuf *e) {
    if (!juris_valid(juris)) {
        return err_set(e, APL_EINVAL, "`%s` is not a jurisdiction code (e.g. KZ-75, or KZ)", juris);
    }
    if (util_mkdir(dir, 0700) != 0) {
        return err_set(e, APL_EIO, "cannot create %s", dir);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/node.conf", dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        return err_set(e, APL_EEXIST, "%s is already an initialised node", dir);
    }
    struct node_keys k;
    keys_generate(&k);
    int rc = keys_save(dir, &k, e);
    keys_wipe(&k);
    if (rc != 0) {
        return rc;
    }
    uint8_t apk[KEY_PK_BYTES], ask[KEY_SK_BYTES];
    crypto_sign_keypair(apk, ask);
    snprintf(path, sizeof path, "%s/admin.key", dir);
    rc = keys_save_signing(path, ask, "Ed25519 key of this node's administrator", e);
    util_wipe(ask, sizeof ask);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/admin.key.pub", dir);
        rc = keys_save_public(path, apk, "Ed25519 public key of this node's administrator", e);
    }
    if (rc != 0) {
        return rc;
    }
    char conf[256];
    int len = snprintf(conf, sizeof conf,
                       "# appeal-node configuration (written by appeal-node init)\n"
                       "jurisdiction = %s\n",
                       juris);
    rc = write_default(dir, "rules.conf", rules_default_conf);
    if (rc == 0) {
        rc = write_default(dir, "holidays.conf", cal_default_text);
    }
    if (rc == 0) {
        rc = write_default(dir, "categories.tsv", rules_default_categories);
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot write the default rules files in %s", dir);
    }
    struct node n;
    struct node_opts o = {.dir = dir};
    /* node.conf last: its presence means "initialised". */
    snprintf(path, sizeof path, "%s/node.conf", dir);
    rc = util_write_file(path, conf, (size_t)len, 0644, true);
    if (rc != 0) {
        return err_set(e, rc, "cannot write %s", path);
    }
    rc = node_open(&n, &o, e);
    if (rc != 0) {
        return rc;
    }
    struct writer_hooks h;
    node_writer_hooks(&n, &h);
    struct wreq r = {.run = run_genesis};
    rc = writer_run_now(&n.eng.store, &h, &r);
    if (rc != 0) {
        err_set(e, rc, "cannot write the genesis record: %s", err_msg(&r.err, rc));
    }
    node_close(&n);
    return rc;
}

/* Replication's recovery is over (repl_opts): on the writer, the genesis
 * record if the log is still empty; then the restore marker goes. */
static int run_recovered(void *arg, MDB_txn *t, struct wreq *w) {
    struct node *n = arg;
    if (n->eng.self.head_seq > 0) {
        return 0;
    }
    struct appeal_ctx c;
    node_appeal_ctx(n, t, &c);
    return appeal_genesis(&c, n->eng.juris, &w->err);
}

static void recovered(void *arg) {
    node_recovered(arg);
}

static int box_key_of(void *arg, const char *juris, uint8_t out[BOX_PK_BYTES]) {
    const struct cluster_node *cn = cluster_by_juris(arg, juris);
    if (cn == NULL) {
        return APL_ENOTFOUND;
    }
    memcpy(out, cn->box_pk, BOX_PK_BYTES);
    return 0;
}

void node_appeal_ctx(struct node *n, MDB_txn *t, struct appeal_ctx *c) {
    memset(c, 0, sizeof *c);
    c->s = &n->eng.store;
    c->t = t;
    c->rules = &n->rules;
    c->keys = &n->eng.keys;
    c->self = &n->eng.self;
    c->st = &n->eng.state;
    c->now_ms = node_now_ms(n);
    c->actor = n->admin_pk;
    c->notify = n->notify != NULL;
    c->clock_off_ms = atomic_load(&n->eng.clock_off_ms);
    c->clock_ref = n->eng.clock_ref;
    if (n->cluster != NULL) {
        c->box_key_of = box_key_of;
        c->box_key_arg = n->cluster;
    }
}

int node_writable(struct node *n, struct errbuf *e) {
    char why[WRITER_REASON_BYTES];
    if (writer_failed(&n->eng.writer, why, sizeof why)) {
        return err_set(e, APL_ESTORAGE,
                       "storage_failed: the node stopped writing after a failed sync of its "
                       "store (%s); its operator must restart it",
                       why);
    }
    if (repl_recovering(n->repl)) {
        return err_set(e, APL_EUNAVAIL,
                       "the node is recovering: it is learning its own log back from its peers "
                       "and signs nothing until then");
    }
    return 0;
}

const char *node_health(struct node *n, char *reason, size_t cap) {
    reason[0] = '\0';
    char why[WRITER_REASON_BYTES];
    if (writer_failed(&n->eng.writer, why, sizeof why)) {
        snprintf(reason, cap,
                 "writes refused: %s; the node stopped writing (restart it: docs/operations.md)",
                 why);
        return "storage_failed";
    }
    if (atomic_load(&n->eng.writer.full)) {
        snprintf(reason, cap,
                 "writes refused: the database reached its maximum size (--map-max %llu MiB)",
                 (unsigned long long)(n->eng.store.map_max_bytes >> 20));
        return "storage_full";
    }
    if (repl_recovering(n->repl)) {
        snprintf(reason, cap, "writes refused: relearning its own log from its peers");
        return "recovering";
    }
    if (engine_self_frozen(&n->eng)) {
        snprintf(reason, cap, "writes refused: this node's own log is frozen after a fork");
        return "frozen";
    }
    return "ok";
}

int64_t node_now_ms(const struct node *n) {
    return engine_now_ms(&n->eng);
}

int32_t node_today(const struct node *n) {
    return day_from_ms(node_now_ms(n), n->rules.utc_offset_min);
}

/* A rotation interrupted between its record and the swap of key files:
 * the log names the successor, DIR/sign.key.next holds it. */
static int finish_rotation(struct node *n, struct errbuf *e) {
    char next[4200], cur[4200], old[4200];
    snprintf(next, sizeof next, "%s/sign.key.next", n->dir);
    snprintf(cur, sizeof cur, "%s/sign.key", n->dir);
    snprintf(old, sizeof old, "%s/sign.key.retired-%llu", n->dir,
             (unsigned long long)n->eng.self.head_seq);
    uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES];
    struct errbuf ignored;
    bool have = keys_load_signing(next, pk, sk, &ignored) == 0;
    util_wipe(sk, sizeof sk);
    char want[2 * KEY_PK_BYTES + 1];
    util_hex(n->eng.self.signing_key, KEY_PK_BYTES, want);
    if (!have || memcmp(pk, n->eng.self.signing_key, KEY_PK_BYTES) != 0) {
        return err_set(e, APL_EAUTH,
                       "%s does not hold the key this node's log says signs now (%.16s...): "
                       "put that key back (see docs/security.md, key rotation)",
                       cur, want);
    }
    if (rename(cur, old) != 0 || rename(next, cur) != 0) {
        return err_set(e, APL_EIO, "cannot finish the key rotation: rename %s: %s", next,
                       strerror(errno));
    }
    util_fsync_dir_of(cur);
    olog(OLOG_WARN, "rotation_finished", "signer", want, NULL);
    keys_wipe(&n->eng.keys);
    return keys_load(n->dir, &n->eng.keys, e);
}

/* One "rotation" | seq row of `meta` (a key proof) into the keys. */
static int load_rotation(void *arg, const MDB_val *k, const MDB_val *v) {
    struct node_keys *keys = arg;
    (void)k;
    if (keys->n_rotations == KEY_ROTATIONS_MAX) {
        return APL_ETOOBIG;
    }
    uint8_t *copy = malloc(v->mv_size);
    if (copy == NULL) {
        return APL_ENOMEM;
    }
    memcpy(copy, v->mv_data, v->mv_size);
    keys->rotation[keys->n_rotations] = copy;
    keys->rotation_len[keys->n_rotations++] = v->mv_size;
    return 0;
}

/* The KeyRotated records of this node's own log (meta "rotation" + seq),
 * which prove its current signing key to peers. */
static int load_rotations(struct node *n, struct errbuf *e) {
    MDB_txn *t;
    int rc = store_rd_begin(&n->eng.store, &t);
    if (rc != 0) {
        return err_set(e, rc, "cannot read the rotations");
    }
    rc = store_each_prefixed(t, &n->eng.store, DB_META, "rotation", 8, 16, load_rotation,
                             &n->eng.keys);
    store_rd_end(&n->eng.store, t);
    if (rc == APL_ETOOBIG) {
        return err_set(e, rc, "more than %d key rotations", KEY_ROTATIONS_MAX);
    }
    return rc;
}

static int load_self(struct node *n, struct errbuf *e) {
    MDB_txn *t;
    int rc = store_wr_begin(&n->eng.store, &t);
    if (rc != 0) {
        return err_set(e, rc, "cannot open a transaction: %s", apl_strerror(rc));
    }
    rc = chain_origin_get(&n->eng.store, t, n->eng.keys.sign_pk, &n->eng.self);
    if (rc == APL_ENOTFOUND) {
        rc = chain_origin_create(&n->eng.store, t, n->eng.keys.sign_pk, &n->eng.self);
    }
    /* Whose database this is: every node holds every origin's log, so a
     * backup names its node here (restore checks it). */
    MDB_val mine;
    if (rc == 0 && store_get(t, &n->eng.store, DB_META, "self", 4, &mine) == APL_ENOTFOUND) {
        rc = store_put(t, &n->eng.store, DB_META, "self", 4, n->eng.keys.sign_pk, KEY_PK_BYTES, 0);
    }
    if (rc == 0) {
        snprintf(n->eng.self.juris, sizeof n->eng.self.juris, "%s", n->eng.juris);
        rc = store_commit(&n->eng.store, t);
    } else {
        store_abort(&n->eng.store, t);
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot load this node's own log: %s", apl_strerror(rc));
    }
    n->eng.self_idx = n->eng.self.idx;
    n->last_record_ms = n->eng.self.head_time_ms;
    if (n->eng.self.head_seq > 0 &&
        memcmp(n->eng.self.signing_key, n->eng.keys.signer_pk, KEY_PK_BYTES) != 0 &&
        (rc = finish_rotation(n, e)) != 0) {
        return rc;
    }
    return load_rotations(n, e);
}

/* Reads and checks a cluster file for this node into a new `*out`. */
static int read_cluster(struct node *n, const char *path, struct cluster **out, struct errbuf *e) {
    struct cluster *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return APL_ENOMEM;
    }
    int rc = cluster_load(c, path, e);
    if (rc == 0) {
        rc = cluster_find_self(c, n->eng.keys.sign_pk, n->eng.juris, e);
    }
    if (rc == 0 && memcmp(c->nodes[c->self].box_pk, n->eng.keys.box_pk, BOX_PK_BYTES) != 0) {
        rc = err_set(e, APL_EINVAL, "the cluster file lists another box key for this node");
    }
    char region[JURIS_CHARS_MAX + 1];
    juris_region(n->eng.juris, region);
    if (rc == 0 && juris_is_office(n->eng.juris) && cluster_by_juris(c, region) == NULL) {
        /* An office seals its applicants' data to its region's box key
         * too (docs/record-format.md 7.1): no region, no office. */
        rc = err_set(e, APL_EINVAL,
                     "%s is an office of %s, and the cluster file has no node of %s: add the "
                     "region's entry first (docs/operations.md \"Offices under a region\")",
                     n->eng.juris, region, region);
    }
    if (rc != 0) {
        free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

static int load_cluster(struct node *n, const char *path, struct errbuf *e) {
    snprintf(n->cluster_path, sizeof n->cluster_path, "%s", path);
    return read_cluster(n, path, &n->cluster, e);
}

int node_reload_cluster(struct node *n, struct errbuf *e) {
    struct repl *r = atomic_load(&n->repl);
    if (n->cluster == NULL || r == NULL) {
        return err_set(e, APL_EINVAL, "the node runs without a cluster file: nothing to reload");
    }
    struct cluster *fresh;
    int rc = read_cluster(n, n->cluster_path, &fresh, e);
    if (rc == 0) {
        rc = repl_reload(r, fresh, e);
        free(fresh);
    }
    if (rc != 0) {
        olog(OLOG_ERROR, "cluster_reload_refused", "file", n->cluster_path, "reason", e->msg,
             "action", "the running cluster file is kept", NULL);
    }
    return rc;
}

/* The options, with their defaults, into `n` (nothing to undo). */
static void node_settings(struct node *n, const struct node_opts *o) {
    snprintf(n->dir, sizeof n->dir, "%s", o->dir);
    if (o->clock_file != NULL) {
        snprintf(n->eng.clock.path, sizeof n->eng.clock.path, "%s", o->clock_file);
    }
    n->heartbeat_idle_ms = o->heartbeat_idle_ms;
    n->recover_quorum = o->recover_quorum;
    n->origin_burst = o->origin_burst;
    n->alert_th = o->alerts;
    n->peer_skew_ms = o->peer_skew_ms;
    n->batch_bytes = o->batch_bytes;
    n->clock_skew_max_ms = o->clock_skew_max_ms;
    n->auth_window_ms = o->auth_window_ms > 0 ? o->auth_window_ms : AUTH_WINDOW_MS_DEFAULT;
    n->connections_max = o->connections_max > 0 ? o->connections_max : CONNECTIONS_MAX_DEFAULT;
    n->idle_ms = o->idle_ms > 0 ? o->idle_ms : IDLE_MS_DEFAULT;
    n->session_ttl_ms =
        o->session_ttl_ms > 0 ? o->session_ttl_ms : (int64_t)SESSION_TTL_S_DEFAULT * 1000;
    if (o->open311_addr != NULL) {
        snprintf(n->open311_addr, sizeof n->open311_addr, "%s", o->open311_addr);
    }
    if (o->http_addr != NULL) {
        snprintf(n->http_addr, sizeof n->http_addr, "%s", o->http_addr);
    }
    if (n->alert_th.silent_s <= 0) {
        n->alert_th = (struct alert_thresholds){300, 900, 30, 80};
    }
}

/* The administrator's public key. Its secret key may live elsewhere (an
 * official's machine): admin.key if present, else admin.key.pub. */
static int load_admin(struct node *n, const char *dir, struct errbuf *e) {
    char path[4096];
    uint8_t ask[KEY_SK_BYTES];
    snprintf(path, sizeof path, "%s/admin.key", dir);
    int rc = keys_load_signing(path, n->admin_pk, ask, e);
    util_wipe(ask, sizeof ask);
    if (rc == APL_ENOTFOUND) {
        snprintf(path, sizeof path, "%s/admin.key.pub", dir);
        err_clear(e);
        rc = keys_parse_public(path, n->admin_pk, e);
    }
    if (rc == 0) {
        key_id(n->admin_pk, n->admin_id);
    }
    return rc;
}

/* Opens the store; an older schema's derived tables are rebuilt. On
 * failure the store is closed. */
static int open_store(struct node *n, const struct node_opts *o, struct errbuf *e) {
    struct store_opts so = {
        .map_bytes = o->map_bytes ? o->map_bytes : 256ull << 20,
        .map_max_bytes = o->map_max_bytes ? o->map_max_bytes : 1ull << 40,
        .defer_meta_sync = o->serving,
    };
    int rc = store_open(&n->eng.store, o->dir, &so, e);
    if (rc != 0) {
        return rc;
    }
    n->eng.own_reserve_bytes = n->eng.store.map_max_bytes / 100 *
                               (uint64_t)(o->own_reserve_percent > 0 ? o->own_reserve_percent : 0);
    if (n->eng.store.derived_stale) {
        /* An older schema: same log, older derived tables. */
        olog(OLOG_WARN, "rebuilding", "reason", "database schema upgrade", NULL);
        rc = state_rebuild(&n->eng.store, e);
        if (rc == 0) {
            rc = store_mark_current(&n->eng.store);
        }
        if (rc != 0) {
            store_close(&n->eng.store);
        }
    }
    return rc;
}

/* The TLS files, if given; peers check that the certificate names this
 * node's jurisdiction. On failure nothing is held. */
static int load_tls(struct node *n, const struct node_opts *o, struct errbuf *e) {
    if (o->tls_ca == NULL && o->tls_cert == NULL && o->tls_key == NULL) {
        return 0;
    }
    int rc = tls_load(&n->tls, o->tls_ca, o->tls_cert, o->tls_key, e);
    if (rc == 0) {
        rc = tls_check_own(n->tls, n->cluster != NULL ? n->eng.juris : NULL, e);
    }
    if (rc != 0) {
        tls_free(n->tls);
        n->tls = NULL;
    }
    return rc;
}

int node_open(struct node *n, const struct node_opts *o, struct errbuf *e) {
    memset(n, 0, sizeof *n);
    node_settings(n, o);
    int rc = node_read_conf(o->dir, n->eng.juris, e);
    if (rc != 0) {
        return rc;
    }
    if (o->notify_path != NULL && notify_open(&n->notify, n, o->notify_path, e) != 0) {
        return APL_EINVAL;
    }
    if ((rc = keys_load(o->dir, &n->eng.keys, e)) != 0) {
        goto fail_keys;
    }
    key_id_short(n->eng.keys.sign_pk, n->eng.id_short);
    if (o->cluster_path != NULL && (rc = load_cluster(n, o->cluster_path, e)) != 0) {
        goto fail_keys;
    }
    if ((rc = load_admin(n, o->dir, e)) != 0) {
        goto fail_cluster;
    }
    if ((rc = ruleset_load(&n->rules, o->dir, e)) != 0 || (rc = open_store(n, o, e)) != 0) {
        goto fail_rules; /* ruleset_fini takes a partly loaded rule set too */
    }
    if ((rc = state_init(&n->eng.state, &n->eng.store)) != 0) {
        goto fail_store;
    }
    if ((rc = load_self(n, e)) != 0 || (rc = load_tls(n, o, e)) != 0) {
        goto fail_state;
    }
    return 0;
fail_state:
    state_fini(&n->eng.state);
fail_store:
    store_close(&n->eng.store);
fail_rules:
    ruleset_fini(&n->rules);
fail_cluster:
    free(n->cluster);
    n->cluster = NULL;
fail_keys:
    keys_wipe(&n->eng.keys);
    notify_close(n->notify);
    n->notify = NULL;
    return rc;
}

void node_close(struct node *n) {
    notify_close(n->notify);
    n->notify = NULL;
    tls_free(n->tls);
    n->tls = NULL;
    free(n->cluster);
    n->cluster = NULL;
    state_fini(&n->eng.state);
    store_close(&n->eng.store);
    ruleset_fini(&n->rules);
    keys_wipe(&n->eng.keys);
}

static bool recover_marker(const struct node *n, bool remove) {
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/recover", n->dir);
    if (remove) {
        unlink(path);
        return false;
    }
    return access(path, F_OK) == 0;
}

/* A tls+tcp:// address this node listens on or dials, when it has no TLS
 * files: said before anything starts, rather than by the first socket. */
static int check_tls_urls(const struct node *n, const char *api_url, struct errbuf *e) {
    if (n->tls != NULL) {
        return 0;
    }
    const char *url = tls_url(api_url) ? api_url : NULL, *where = "--api";
    for (uint32_t i = 0; url == NULL && n->cluster != NULL && i < n->cluster->count; i++) {
        const struct cluster_node *cn = &n->cluster->nodes[i];
        where = cn->juris;
        url = tls_url(cn->peer_url)    ? cn->peer_url
              : tls_url(cn->pub_url)   ? cn->pub_url
              : tls_url(cn->query_url) ? cn->query_url
                                       : NULL;
    }
    if (url == NULL) {
        return 0;
    }
    struct errbuf probe;
    err_clear(&probe);
    if (tls_probe(&probe) != 0) {
        return err_set(e, APL_EUNAVAIL, "%s (%s) is a tls+tcp:// address, but %s", url, where,
                       probe.msg);
    }
    return err_set(e, APL_EINVAL,
                   "%s (%s) is a tls+tcp:// address: give the node its TLS files with "
                   "--tls-ca FILE --tls-cert FILE --tls-key FILE",
                   url, where);
}

/* APPEAL_TEST_PLAIN_BYTES_PER_S (tests only): repl_opts.plain_bytes_per_s. */
static uint64_t test_plain_bytes_per_s(void) {
    const char *v = getenv("APPEAL_TEST_PLAIN_BYTES_PER_S");
    return v != NULL ? strtoull(v, NULL, 10) : 0;
}

/* Replication and live queries, on the engine; with `recovering`, the node
 * learns its own log back from its peers before it signs. On failure
 * replication's intake is stopped and n->repl is left for repl_stop after
 * the writer. */
static int start_cluster(struct node *n, bool recovering, struct errbuf *e) {
    struct repl_opts ro = {.recover_quorum = n->recover_quorum,
                           .recovering = recovering,
                           .burst_floor = n->origin_burst,
                           .tls = n->tls,
                           .connections_max = n->connections_max,
                           .idle_ms = n->idle_ms,
                           .peer_skew_ms = n->peer_skew_ms,
                           .batch_bytes = n->batch_bytes,
                           .plain_bytes_per_s = test_plain_bytes_per_s(),
                           .clock_skew_max_ms = n->clock_skew_max_ms,
                           .recovered_run = run_recovered,
                           .recovered = recovered,
                           .recovered_arg = n};
    struct repl *repl = NULL; /* n->repl is _Atomic: the writer's hooks read it */
    int rc = repl_start(&repl, &n->eng, n->cluster, &ro, e);
    n->repl = repl;
    if (rc != 0) {
        return rc;
    }
    /* A batch made durable before n->repl was set told no one: tell
     * replication the durable head again (it only ever moves up). */
    repl_durable(repl, atomic_load(&n->eng.durable_head));
    struct survey_opts so = {.repl = repl,
                             .tls = n->tls,
                             .peer_skew_ms = n->peer_skew_ms,
                             .utc_offset_min = n->rules.utc_offset_min};
    if ((rc = survey_start(&n->survey, &n->eng, n->cluster, &so, e)) != 0) {
        repl_stop_intake(n->repl); /* the caller stops the writer, then replication */
    }
    return rc;
}

/* The listeners and workers that face the outside (dashboard, Open311,
 * notifications), started once the node serves; the caller stops the
 * node on a failure. */
static int start_outer(struct node *n, struct errbuf *e) {
    int rc = 0;
    if (n->http_addr[0] != '\0' && (rc = http_start(&n->http, n, n->http_addr, e)) != 0) {
        return rc;
    }
    if (n->open311_addr[0] != '\0' &&
        (rc = open311_start(&n->open311, n, n->open311_addr, e)) != 0) {
        return rc;
    }
    if (n->notify != NULL) {
        rc = notify_start(n->notify, e);
    }
    return rc;
}

/* What the writer's records get from here on: the applicants index's new
 * entries staged (ADR 0023; the writer's hooks follow each transaction),
 * and signatures from nonces made ahead on an idle core (ADR 0022;
 * APPEAL_SIGN_AHEAD=0 signs each in full on the writer, as before). */
static void prepare_writes(struct node *n) {
    n->eng.state.applicants.enabled = true;
    const char *ahead = getenv("APPEAL_SIGN_AHEAD");
    if ((ahead == NULL || strcmp(ahead, "0") != 0) && sigahead_start(&n->eng.keys.ahead) != 0) {
        olog(OLOG_WARN, "sign_ahead_not_started", NULL);
    }
}

int node_serve(struct node *n, const char *api_url, struct errbuf *e) {
    int tls_rc = check_tls_urls(n, api_url, e);
    if (tls_rc != 0) {
        return tls_rc;
    }
    struct writer_hooks h;
    node_writer_hooks(n, &h);
    /* A node with keys but no log of its own (its disk was lost), or one
     * restored from a backup, may be behind what its peers hold of it:
     * with a federation it learns its log back before signing anything. */
    if (n->cluster == NULL && recover_marker(n, false)) {
        return err_set(e, APL_EUNAVAIL,
                       "restored from a backup, this node may be behind its peers: start it "
                       "with --cluster FILE to relearn its newer records first; with no peers, "
                       "run appeal-node restore --data %.80s --standalone (a fork if a peer "
                       "held newer records)",
                       n->dir);
    }
    bool recovering = n->cluster != NULL && (n->eng.self.head_seq == 0 || recover_marker(n, false));
    if (n->eng.self.head_seq == 0 && !recovering) {
        struct wreq r = {.run = run_genesis};
        int rc = writer_run_now(&n->eng.store, &h, &r);
        if (rc != 0) {
            return err_set(e, rc, "cannot write the genesis record: %s", err_msg(&r.err, rc));
        }
    }
    atomic_store(&n->eng.durable_head, n->eng.self.head_seq);
    engine_publish_frozen(&n->eng);
    prepare_writes(n);
    int rc = writer_start(&n->eng.writer, &n->eng.store, &h);
    if (rc != 0) {
        return err_set(e, rc, "cannot start the writer thread");
    }
    n->eng.writer.commit_hist = &n->eng.metrics.commit;
    if (n->cluster != NULL && (rc = start_cluster(n, recovering, e)) != 0) {
        writer_stop(&n->eng.writer);
        repl_stop(n->repl);
        n->repl = NULL;
        return rc;
    }
    rc = api_start(&n->api, n, api_url, e);
    if (rc != 0) {
        repl_stop_intake(n->repl);
        writer_stop(&n->eng.writer);
        survey_stop(n->survey);
        repl_stop(n->repl);
        n->repl = NULL;
        n->survey = NULL;
        return rc;
    }
    if ((rc = alerts_start(&n->alerts, n, &n->alert_th)) != 0) {
        olog(OLOG_ERROR, "monitor_not_started", NULL);
    }
    n->serving = true;
    /* Where offline commands (appeal-node grant) find the running node. */
    char path[4200];
    snprintf(path, sizeof path, "%s/api.url", n->dir);
    unlink(path);
    util_write_file(path, api_url, strlen(api_url), 0600, false);
    if ((rc = start_outer(n, e)) != 0) {
        node_stop(n);
    }
    return rc;
}

void node_recovered(struct node *n) {
    recover_marker(n, true);
}

void node_stop(struct node *n) {
    if (!n->serving) {
        return;
    }
    api_stop_live(n->api); /* answered before api_stop closes their connections */
    http_stop(n->http);
    n->http = NULL;
    alerts_stop(&n->alerts);
    notify_stop(n->notify);    /* before the writer: it settles through it */
    repl_stop_intake(n->repl); /* pullers finish their ingests first */
    writer_stop(&n->eng.writer);
    atomic_store(&n->writes_stopped, true);
    open311_stop(n->open311); /* after the writer: every deferred filing is answered */
    n->open311 = NULL;
    api_stop(n->api);
    survey_stop(n->survey);
    repl_stop(n->repl);
    /* Last: /metrics, on the API's threads until api_stop, reads its counts. */
    sigahead_stop(n->eng.keys.ahead);
    n->eng.keys.ahead = NULL;
    n->api = NULL;
    n->repl = NULL;
    n->survey = NULL;
    n->serving = false;
}

int node_lock(const char *dir, struct errbuf *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/node.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(e, APL_EIO, "cannot open %s", path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        err_set(e, APL_EUNAVAIL, "another appeal-node process is using %s (stop it first)", dir);
        return -1;
    }
    return fd;
}
