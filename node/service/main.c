/*
 * appeal-node: one regional node of the federated registry of appeals.
 *
 *   appeal-node init    --data DIR --jurisdiction CODE
 *   appeal-node run     --data DIR --api URL [options]
 *   appeal-node verify  --data DIR
 *   appeal-node rebuild --data DIR
 *   appeal-node dump    --data DIR
 *
 * See `appeal-node help` and docs/operations.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "clusterfile.h"
#include "err.h"
#include "bounds.h"
#include "json.h"
#include "keys.h"
#include "lifecycle.h"
#include "chain.h"
#include "record.h"
#include "ruleset.h"
#include "node.h"
#include "olog.h"
#include "state.h"
#include "repl.h"
#include "store.h"
#include "util.h"
#include "verify.h"

static const char usage[] =
    "usage: appeal-node COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  init    --data DIR --jurisdiction CODE [--peer URL] [--kato FILE]\n"
    "          create a node (keys, rules, its log) and print its cluster-file entry;\n"
    "          --peer is the address its peers pull from (pushes: port+1, queries: port+2);\n"
    "          an office under a region is REGION.KATO (KZ-75.751210000), its KATO code\n"
    "          checked against FILE when given (tools/data/kato-sample.tsv's columns)\n"
    "  run     --data DIR --api URL             serve until SIGTERM or SIGINT;\n"
    "                                           SIGHUP re-reads the cluster file\n"
    "          [--cluster FILE]  join the federation the cluster file describes\n"
    "          [--heartbeat-ms N]  heartbeat record after N ms without one (default 10000)\n"
    "          [--recover-quorum N]  peers to hear from before a recovering node signs\n"
    "                              (default: all peers)\n"
    "          [--http HOST:PORT]  serve /metrics, /healthz and the dashboard\n"
    "          [--open311 HOST:PORT]  serve Open311 GeoReport v2 to citizens' portals\n"
    "                              (public; docs/open311.md)\n"
    "          [--notify FILE]  notify applicants by e-mail and SMS webhook\n"
    "                              (docs/notifications.md)\n"
    "          [--tls-ca FILE --tls-cert FILE --tls-key FILE]  the federation's CA and\n"
    "                              this node's certificate and key (PEM), for\n"
    "                              tls+tcp:// addresses (docs/operations.md)\n"
    "          [--alert-silent-s N] [--alert-stale-s N] [--alert-skew-s N]  alert thresholds\n"
    "                              (defaults 300, 900, 30)\n"
    "          [--clock-file F]  take the time from file F (tests, drills)\n"
    "          [--peer-clock-skew-ms N]  shift the time of peer messages (drills)\n"
    "          [--auth-window-s N]  accepted difference between a client's clock and\n"
    "                              the node's (default 60)\n"
    "          [--session-ttl-s N]  a client session ends this long after it was\n"
    "                              opened (default 3600; docs/security.md)\n"
    "          [--connections-max N]  connections per listener (API, --http, peer\n"
    "                              port; default 256)\n"
    "          [--idle-timeout-ms N]  close a connection idle (or stalled mid-request)\n"
    "                              this long (default 60000)\n"
    "          [--map-size BYTES] [--map-max BYTES]  initial and largest LMDB map\n"
    "          [--own-reserve PERCENT]  share of --map-max kept for this node's own log:\n"
    "                              records from peers are postponed above the rest\n"
    "                              (default 10)\n"
    "          [--origin-burst RECORDS]  records another origin may add per minute\n"
    "                              when its log held fewer (it may always double);\n"
    "                              the rest wait for the next minute (default 10000,\n"
    "                              0: no limit)\n"
    "          [--batch-bytes N]   bytes of records per pull answer and delivery\n"
    "                              (default 12 MiB; 65536 on a 64 kbit/s link)\n"
    "          [--clock-skew-max S]  an office more than S s off its region's\n"
    "                              clock refuses to register (default 120)\n"
    "          [--log-level debug|info|warn|error] [--log-file F]\n"
    "  verify  --data DIR      check every chain link and signature, offline\n"
    "  rebuild --data DIR      recompute every derived table from the log\n"
    "  dump    --data DIR      print the derived tables (for comparisons)\n"
    "  log     --data DIR      print every record as a JSON line (no encrypted parts)\n"
    "  backup  --data DIR --to FILE    a compacted copy of the database (node may run)\n"
    "  restore --data DIR --from FILE  put a backup in place (node stopped); the node\n"
    "                                  then relearns its newer records from its peers\n"
    "          [--standalone]  the node has no peers: the next run without --cluster\n"
    "                          signs at once (a fork, if a peer held newer records);\n"
    "                          without --from, says so of a node already restored\n"
    "          run again after a kill or a power loss, it finishes the restore\n"
    "  grant   --data DIR --key PUBLIC --role ROLE [--jurisdiction CODE] [--label TEXT]\n"
    "          grant an official's key a role: registrar, official, national, operator\n"
    "          or admin (a record in the log, signed as the administrator; works on a\n"
    "          running node through its API, or on a stopped one directly)\n"
    "  revoke  --data DIR --key PUBLIC [--reason TEXT]   revoke an official's key\n"
    "  rotate-key --data DIR   a new signing key from the next record on (node stopped);\n"
    "                          the node keeps its identity; peers need no change\n"
    "\n"
    "  --version               print the version\n"
    "\n"
    "URLs are nng addresses such as tcp://127.0.0.1:7100.\n";

struct args {
    const char *data;
    const char *key, *role, *label, *reason;
    long auth_window_s;
    const char *to;
    const char *from;
    const char *http;
    const char *open311;
    const char *notify;
    long alert_silent_s, alert_stale_s, alert_skew_s;
    long peer_skew_ms;
    long connections_max, idle_ms;
    long session_ttl_s;
    const char *peer;
    const char *cluster;
    long heartbeat_ms;
    long recover_quorum;
    long own_reserve_percent;
    long origin_burst;
    long batch_bytes;
    long clock_skew_max_s;
    const char *juris;
    const char *kato; /* init: the KATO classifier to check an office's code against */
    const char *api;
    const char *clock_file;
    const char *log_file;
    const char *tls_ca, *tls_cert, *tls_key;
    enum olog_level level;
    uint64_t map_bytes;
    uint64_t map_max_bytes;
    bool standalone;
};

/* Long options without a one-letter code. */
enum {
    OPT_TLS_CA = 1000,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_STANDALONE,
    OPT_OWN_RESERVE,
    OPT_CONNECTIONS_MAX,
    OPT_IDLE_MS,
    OPT_OPEN311,
    OPT_NOTIFY,
    OPT_ORIGIN_BURST,
    OPT_KATO,
    OPT_BATCH_BYTES,
    OPT_CLOCK_SKEW_MAX,
    OPT_SESSION_TTL
};

static int fail(const char *what, const struct errbuf *e, int rc) {
    fprintf(stderr, "appeal-node %s: %s\n", what, err_msg(e, rc));
    return 1;
}

static const struct option node_options[] = {
    {"data", required_argument, NULL, 'd'},
    {"jurisdiction", required_argument, NULL, 'j'},
    {"kato", required_argument, NULL, OPT_KATO},
    {"api", required_argument, NULL, 'a'},
    {"clock-file", required_argument, NULL, 'c'},
    {"log-level", required_argument, NULL, 'l'},
    {"log-file", required_argument, NULL, 'f'},
    {"map-size", required_argument, NULL, 'm'},
    {"map-max", required_argument, NULL, 'M'},
    {"own-reserve", required_argument, NULL, OPT_OWN_RESERVE},
    {"origin-burst", required_argument, NULL, OPT_ORIGIN_BURST},
    {"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
    {"clock-skew-max", required_argument, NULL, OPT_CLOCK_SKEW_MAX},
    {"peer", required_argument, NULL, 'p'},
    {"cluster", required_argument, NULL, 'C'},
    {"heartbeat-ms", required_argument, NULL, 'H'},
    {"recover-quorum", required_argument, NULL, 'Q'},
    {"http", required_argument, NULL, 'W'},
    {"open311", required_argument, NULL, OPT_OPEN311},
    {"notify", required_argument, NULL, OPT_NOTIFY},
    {"to", required_argument, NULL, 'o'},
    {"from", required_argument, NULL, 'i'},
    {"alert-silent-s", required_argument, NULL, 'S'},
    {"alert-stale-s", required_argument, NULL, 'T'},
    {"alert-skew-s", required_argument, NULL, 'K'},
    {"peer-clock-skew-ms", required_argument, NULL, 'Z'},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"connections-max", required_argument, NULL, OPT_CONNECTIONS_MAX},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_MS},
    {"session-ttl-s", required_argument, NULL, OPT_SESSION_TTL},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"standalone", no_argument, NULL, OPT_STANDALONE},
    {"key", required_argument, NULL, 'k'},
    {"role", required_argument, NULL, 'r'},
    {"label", required_argument, NULL, 'L'},
    {"reason", required_argument, NULL, 'R'},
    {"auth-window-s", required_argument, NULL, 'A'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Where an option that takes a text (a path, an address, a name) keeps
 * it; NULL for the other options. */
static const char **arg_text(int ch, struct args *a) {
    switch (ch) {
    case 'd':
        return &a->data;
    case 'j':
        return &a->juris;
    case OPT_KATO:
        return &a->kato;
    case 'a':
        return &a->api;
    case 'p':
        return &a->peer;
    case 'C':
        return &a->cluster;
    case 'W':
        return &a->http;
    case OPT_OPEN311:
        return &a->open311;
    case OPT_NOTIFY:
        return &a->notify;
    case 'o':
        return &a->to;
    case 'i':
        return &a->from;
    case 'k':
        return &a->key;
    case 'r':
        return &a->role;
    case 'L':
        return &a->label;
    case 'R':
        return &a->reason;
    case 'c':
        return &a->clock_file;
    case 'f':
        return &a->log_file;
    case OPT_TLS_CA:
        return &a->tls_ca;
    case OPT_TLS_CERT:
        return &a->tls_cert;
    case OPT_TLS_KEY:
        return &a->tls_key;
    default:
        return NULL;
    }
}

/* The options that bound the node's work: 0, -1 (said why), or 1 if `ch`
 * is not one of them. */
static int arg_limit(int ch, const char *v, struct args *a) {
    switch (ch) {
    case 'A':
        if (util_parse_long(v, 1, 3600, &a->auth_window_s) != 0) {
            fprintf(stderr, "appeal-node: --auth-window-s takes 1 to 3600 seconds\n");
            return -1;
        }
        return 0;
    case OPT_OWN_RESERVE:
        if (util_parse_long(v, 0, NODE_OWN_RESERVE_PERCENT_MAX, &a->own_reserve_percent) != 0) {
            fprintf(stderr,
                    "appeal-node: --own-reserve takes a percentage of --map-max "
                    "(0 to %d)\n",
                    NODE_OWN_RESERVE_PERCENT_MAX);
            return -1;
        }
        return 0;
    case OPT_CONNECTIONS_MAX:
        if (util_parse_long(v, 1, CONNECTIONS_MAX_LIMIT, &a->connections_max) != 0) {
            fprintf(stderr, "appeal-node: --connections-max takes 1 to %d\n",
                    CONNECTIONS_MAX_LIMIT);
            return -1;
        }
        return 0;
    case OPT_SESSION_TTL:
        if (util_parse_long(v, 1, SESSION_TTL_S_MAX, &a->session_ttl_s) != 0) {
            fprintf(stderr, "appeal-node: --session-ttl-s takes 1 to %d seconds\n",
                    SESSION_TTL_S_MAX);
            return -1;
        }
        return 0;
    case OPT_IDLE_MS:
        if (util_parse_long(v, IDLE_MS_MIN, 24L * 3600 * 1000, &a->idle_ms) != 0) {
            fprintf(stderr, "appeal-node: --idle-timeout-ms takes %d ms to a day\n", IDLE_MS_MIN);
            return -1;
        }
        return 0;
    case OPT_BATCH_BYTES:
        if (util_parse_long(v, BATCH_BYTES_MIN, PULL_BYTES_MAX, &a->batch_bytes) != 0) {
            fprintf(stderr, "appeal-node: --batch-bytes takes bytes (%d to %d)\n", BATCH_BYTES_MIN,
                    PULL_BYTES_MAX);
            return -1;
        }
        return 0;
    case OPT_CLOCK_SKEW_MAX:
        if (util_parse_long(v, 1, 86400, &a->clock_skew_max_s) != 0) {
            fprintf(stderr, "appeal-node: --clock-skew-max takes seconds (1 to 86400)\n");
            return -1;
        }
        return 0;
    case OPT_ORIGIN_BURST:
        if (util_parse_long(v, 0, PULL_RECORDS_MAX * 1000L, &a->origin_burst) != 0) {
            fprintf(stderr, "appeal-node: --origin-burst takes records per minute (0 to %ld)\n",
                    PULL_RECORDS_MAX * 1000L);
            return -1;
        }
        return 0;
    default:
        return 1;
    }
}

/* The other options that take a number or a level: 0, -1 (said why), or
 * 1 if `ch` is not one of them. */
static int arg_number(int ch, const char *v, struct args *a) {
    switch (ch) {
    case 'Z':
        if (util_parse_long(v, -3600000, 3600000, &a->peer_skew_ms) != 0) {
            fprintf(stderr, "appeal-node: --peer-clock-skew-ms takes milliseconds\n");
            return -1;
        }
        return 0;
    case 'S':
    case 'T':
    case 'K':
        if (util_parse_long(v, 1, 86400 * 30,
                            ch == 'S'   ? &a->alert_silent_s
                            : ch == 'T' ? &a->alert_stale_s
                                        : &a->alert_skew_s) != 0) {
            fprintf(stderr, "appeal-node: alert thresholds take seconds\n");
            return -1;
        }
        return 0;
    case 'H':
    case 'Q':
        if (util_parse_long(v, 0, 86400000, ch == 'H' ? &a->heartbeat_ms : &a->recover_quorum) !=
            0) {
            fprintf(stderr, "appeal-node: --%s takes a number\n",
                    ch == 'H' ? "heartbeat-ms" : "recover-quorum");
            return -1;
        }
        return 0;
    case 'l':
        if (!olog_level_parse(v, &a->level)) {
            fprintf(stderr, "appeal-node: unknown log level %s\n", v);
            return -1;
        }
        return 0;
    case 'm':
    case 'M':
        if (util_parse_u64(v, ch == 'm' ? &a->map_bytes : &a->map_max_bytes) != 0) {
            fprintf(stderr, "appeal-node: --map-size/--map-max take a number of bytes\n");
            return -1;
        }
        return 0;
    default:
        return arg_limit(ch, v, a);
    }
}

static void args_defaults(struct args *a) {
    memset(a, 0, sizeof *a);
    a->level = OLOG_INFO;
    a->heartbeat_ms = 10000;
    a->recover_quorum = -1;
    a->alert_silent_s = 300;
    a->alert_stale_s = 900;
    a->alert_skew_s = 30;
    a->own_reserve_percent = NODE_OWN_RESERVE_PERCENT_DEFAULT;
    a->origin_burst = ORIGIN_BURST_FLOOR_DEFAULT;
}

static int parse_args(int argc, char **argv, struct args *a) {
    args_defaults(a);
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", node_options, NULL)) != -1) {
        const char **text = arg_text(ch, a);
        int rc = text == NULL ? arg_number(ch, optarg, a) : 0;
        if (text != NULL) {
            *text = optarg;
        } else if (rc < 0) {
            return -1;
        } else if (rc > 0 && ch == OPT_STANDALONE) {
            a->standalone = true;
        } else if (rc > 0 && ch == 'h') {
            fputs(usage, stdout);
            exit(0);
        } else if (rc > 0) {
            fputs(usage, stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "appeal-node: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (a->data == NULL) {
        fprintf(stderr, "appeal-node: --data DIR is required\n");
        return -1;
    }
    return 0;
}

enum { KATO_FILE_BYTES_MAX = 16 * 1024 * 1024 };

/* The row of `code` in a KATO file (tab-separated: code, name_kk, name_ru,
 * name_en, level, parent, region; '#' comments): its names into `name`.
 * 0 if the office is listed as a district, town or rural okrug of
 * `region`, else a clear error. */
static int kato_check(const char *path, const char *code, const char *region, char *name,
                      size_t cap, struct errbuf *e) {
    char *text = NULL;
    int rc = util_read_file(path, KATO_FILE_BYTES_MAX, &text, NULL);
    if (rc != 0) {
        return err_set(e, rc, "cannot read the KATO file %s", path);
    }
    rc = err_set(e, APL_ENOTFOUND, "KATO code %s is not in %s", code, path);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *cell[7] = {0}, *in = NULL;
        size_t n = 0;
        for (char *c = strtok_r(line, "\t", &in); c != NULL && n < 7;
             c = strtok_r(NULL, "\t", &in)) {
            cell[n++] = c;
        }
        if (line[0] == '#' || n < 7 || strcmp(cell[0], code) != 0) {
            continue;
        }
        if (strcmp(cell[6], region) != 0) {
            rc = err_set(e, APL_EINVAL, "KATO code %s (%s) belongs to %s, not to %s", code, cell[2],
                         cell[6], region);
        } else if (strcmp(cell[4], "district") != 0 && strcmp(cell[4], "okrug") != 0 &&
                   strcmp(cell[4], "town") != 0) {
            rc = err_set(e, APL_EINVAL, "KATO code %s (%s) is a %s, not a district, town or okrug",
                         code, cell[2], cell[4]);
        } else {
            snprintf(name, cap, "%s / %s / %s", cell[1], cell[2], cell[3]);
            rc = 0;
        }
        break;
    }
    free(text);
    return rc;
}

static int cmd_init(const struct args *a) {
    if (a->juris == NULL) {
        fprintf(stderr, "appeal-node init: --jurisdiction CODE is required (e.g. KZ-75)\n");
        return 2;
    }
    char office[512] = "";
    if (a->kato != NULL && juris_valid(a->juris) && juris_is_office(a->juris)) {
        struct errbuf ke;
        err_clear(&ke);
        char region[JURIS_CHARS_MAX + 1];
        juris_region(a->juris, region);
        int krc =
            kato_check(a->kato, strchr(a->juris, '.') + 1, region, office, sizeof office, &ke);
        if (krc != 0) {
            return fail("init", &ke, krc);
        }
    }
    char derived[CLUSTER_URL_BYTES];
    if (a->peer != NULL && cluster_url_offset(a->peer, 2, derived) != 0) {
        fprintf(stderr, "appeal-node init: --peer takes an address such as tcp://10.0.0.75:7101\n");
        return 2;
    }
    olog_init(a->juris, "-", 2, OLOG_WARN);
    struct errbuf e;
    err_clear(&e);
    int rc = node_init(a->data, a->juris, &e);
    if (rc != 0) {
        return fail("init", &e, rc);
    }
    struct node_keys k;
    if ((rc = keys_load(a->data, &k, &e)) != 0) {
        return fail("init", &e, rc);
    }
    uint8_t apk[KEY_PK_BYTES], ask[KEY_SK_BYTES], kid[KEY_ID_BYTES];
    char path[4096];
    snprintf(path, sizeof path, "%s/admin.key", a->data);
    if ((rc = keys_load_signing(path, apk, ask, &e)) != 0) {
        return fail("init", &e, rc);
    }
    util_wipe(ask, sizeof ask);
    key_id(k.sign_pk, kid);
    char kidhex[2 * KEY_ID_BYTES + 1], apkhex[2 * KEY_PK_BYTES + 1], entry[1024];
    util_hex(kid, KEY_ID_BYTES, kidhex);
    util_hex(apk, KEY_PK_BYTES, apkhex);
    cluster_entry_format(entry, sizeof entry, a->juris, k.sign_pk, k.box_pk, a->peer);
    printf("# %s initialised in %s\n", a->juris, a->data);
    if (office[0] != '\0') {
        printf("# office %s\n", office);
    }
    printf("# node key id %s\n# administrator key %s (%s/admin.key)\n%s", kidhex, apkhex, a->data,
           entry);
    keys_wipe(&k);
    return 0;
}

static int open_log(const struct args *a, const char *node_id) {
    int fd = 2;
    if (a->log_file != NULL) {
        fd = open(a->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            fprintf(stderr, "appeal-node: cannot open log file %s\n", a->log_file);
            return -1;
        }
    }
    (void)node_id;
    return fd;
}

/* The node's options from the command line's. */
static void run_options(const struct args *a, struct node_opts *o) {
    *o = (struct node_opts){.dir = a->data,
                            .clock_file = a->clock_file,
                            .map_bytes = a->map_bytes,
                            .map_max_bytes = a->map_max_bytes,
                            .own_reserve_percent = (int)a->own_reserve_percent,
                            .heartbeat_idle_ms = (int)a->heartbeat_ms,
                            .serving = true,
                            .cluster_path = a->cluster,
                            .recover_quorum = (int)a->recover_quorum,
                            .origin_burst = (uint64_t)a->origin_burst,
                            .http_addr = a->http,
                            .open311_addr = a->open311,
                            .notify_path = a->notify,
                            .peer_skew_ms = a->peer_skew_ms,
                            .batch_bytes = (uint32_t)a->batch_bytes,
                            .clock_skew_max_ms = a->clock_skew_max_s * 1000,
                            .tls_ca = a->tls_ca,
                            .tls_cert = a->tls_cert,
                            .tls_key = a->tls_key,
                            .auth_window_ms = a->auth_window_s * 1000,
                            .connections_max = (uint32_t)a->connections_max,
                            .idle_ms = a->idle_ms,
                            .session_ttl_ms = a->session_ttl_s * 1000,
                            .alerts = {.silent_s = (int)a->alert_silent_s,
                                       .stale_s = (int)a->alert_stale_s,
                                       .skew_s = (int)a->alert_skew_s,
                                       .map_percent = 80}};
}

/* A stop that does not end. nng 1.5's socket close can wait forever for
 * its reaper (nanomsg/nng#1543; seen here as a node that did not exit when
 * SIGTERM came while clients kept pipelining requests: the main thread in
 * nng_close of the API socket, after the writer had stopped). Once the
 * writer has stopped every acknowledged write is synced, so after
 * STOP_WAIT_S the stop watch logs `stop_stuck` and exits instead of leaving
 * the node to systemd's kill (TimeoutStopSec). Before that it never exits. */
enum { STOP_WAIT_S = 10 };

struct stop_watch {
    struct node *n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done; /* under mu: the stop ended by itself */
};

static void *stop_watch_main(void *arg) {
    struct stop_watch *sw = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STOP_WAIT_S;
    pthread_mutex_lock(&sw->mu);
    while (!sw->done) {
        if (pthread_cond_timedwait(&sw->cv, &sw->mu, &until) != ETIMEDOUT || sw->done) {
            continue;
        }
        if (atomic_load(&sw->n->writes_stopped)) {
            char waited[16];
            snprintf(waited, sizeof waited, "%d", STOP_WAIT_S);
            olog(OLOG_WARN, "stop_stuck", "waited_s", waited, "in", "closing the network sockets",
                 "action", "exiting: every acknowledged write is synced", NULL);
            _exit(0);
        }
        until.tv_sec += 1; /* the writer is still finishing: wait for it */
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

/* node_stop and node_close, watched (struct stop_watch). */
static void stop_watched(struct node *n) {
    struct stop_watch sw = {.n = n};
    pthread_mutex_init(&sw.mu, NULL);
    pthread_cond_init(&sw.cv, NULL);
    pthread_t th;
    bool watching = pthread_create(&th, NULL, stop_watch_main, &sw) == 0;
    node_stop(n);
    node_close(n);
    if (watching) {
        pthread_mutex_lock(&sw.mu);
        sw.done = true;
        pthread_cond_signal(&sw.cv);
        pthread_mutex_unlock(&sw.mu);
        pthread_join(th, NULL);
    }
    pthread_mutex_destroy(&sw.mu);
    pthread_cond_destroy(&sw.cv);
}

static int cmd_run(const struct args *a) {
    if (a->api == NULL) {
        fprintf(stderr, "appeal-node run: --api URL is required (e.g. tcp://127.0.0.1:7100)\n");
        return 2;
    }
    if ((a->tls_ca != NULL || a->tls_cert != NULL || a->tls_key != NULL) &&
        (a->tls_ca == NULL || a->tls_cert == NULL || a->tls_key == NULL)) {
        fprintf(stderr, "appeal-node run: TLS takes all of --tls-ca FILE, --tls-cert FILE and "
                        "--tls-key FILE\n");
        return 2;
    }
    /* Signals are taken by sigwait in main only: block them before any
     * thread starts, so every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct errbuf e;
    err_clear(&e);
    char juris[16];
    int rc = node_read_conf(a->data, juris, &e);
    if (rc != 0) {
        return fail("run", &e, rc);
    }
    int lock = node_lock(a->data, &e);
    if (lock < 0) {
        return fail("run", &e, APL_EUNAVAIL);
    }
    int fd = open_log(a, NULL);
    if (fd < 0) {
        return 1;
    }
    olog_init(juris, "-", fd, a->level);
    static struct node n; /* large; lives for the process */
    struct node_opts o;
    run_options(a, &o);
    if ((rc = node_open(&n, &o, &e)) != 0) {
        return fail("run", &e, rc);
    }
    olog_init(juris, n.eng.id_short, fd, a->level);
    if ((rc = node_serve(&n, a->api, &e)) != 0) {
        node_close(&n);
        return fail("run", &e, rc);
    }
    char seq[24];
    /* self is the writer's now: the durable head is for any thread. */
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)atomic_load(&n.eng.durable_head));
    olog(OLOG_INFO, "started", "data", a->data, "head_seq", seq, NULL);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
        err_clear(&e);
        node_reload_cluster(&n, &e); /* logs a refusal itself */
    }
    olog(OLOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    stop_watched(&n);
    olog(OLOG_INFO, "stopped", NULL);
    return 0;
}

/* Removes a directory tree we made (backup checks, old databases). */
static void remove_tree(const char *dir) {
    char cmd[4300];
    if (strchr(dir, '\'') == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "appeal-node: could not remove %s\n", dir);
        }
    }
}

/* Opens the copy of a backup in DIR, verifies every record and rebuilds
 * the derived tables from the log, in a child process: LMDB does not
 * checksum its pages, so a damaged file may crash whoever reads it, and
 * that must not be the restoring command. */
static int check_backup(const char *dir, const uint8_t self[KEY_PK_BYTES], struct verify_report *vr,
                        struct errbuf *e) {
    int fds[2];
    if (pipe(fds) != 0) {
        return err_set(e, APL_EIO, "cannot check the backup: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        struct store s;
        struct store_opts so = {.map_bytes = 256ull << 20, .map_max_bytes = 1ull << 40};
        int rc = store_open(&s, dir, &so, e);
        if (rc == 0) {
            rc = verify_store(&s, vr, e);
            MDB_txn *t;
            struct origin_state o;
            if (rc == 0 && (rc = store_rd_begin(&s, &t)) == 0) {
                MDB_val whose;
                int mine = store_get(t, &s, DB_META, "self", 4, &whose);
                bool other = mine == 0 && (whose.mv_size != KEY_PK_BYTES ||
                                           memcmp(whose.mv_data, self, KEY_PK_BYTES) != 0);
                rc = chain_origin_get(&s, t, self, &o);
                store_rd_end(&s, t);
                if (other || rc != 0 || o.head_seq == 0) {
                    rc = err_set(e, APL_EINVAL,
                                 "the backup is another node's backup, or holds no log of this "
                                 "node's key; nothing was changed");
                }
            }
            if (rc == 0) {
                rc = state_rebuild(&s, e);
                if (rc == 0) {
                    rc = store_mark_current(&s);
                }
            }
            store_close(&s);
        }
        struct {
            int rc;
            struct verify_report vr;
            char msg[sizeof e->msg];
        } out = {.rc = rc, .vr = *vr};
        memcpy(out.msg, e->msg, sizeof out.msg);
        ssize_t w = write(fds[1], &out, sizeof out);
        _exit(w == (ssize_t)sizeof out ? 0 : 1);
    }
    close(fds[1]);
    struct {
        int rc;
        struct verify_report vr;
        char msg[sizeof e->msg];
    } in;
    ssize_t got = pid < 0 ? -1 : util_read_full(fds[0], &in, sizeof in);
    close(fds[0]);
    int status = 0;
    if (pid > 0) {
        waitpid(pid, &status, 0);
    }
    if (got != (ssize_t)sizeof in) {
        return err_set(e, APL_ECORRUPT,
                       "the backup is damaged: checking it %s; nothing was changed",
                       WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "failed");
    }
    *vr = in.vr;
    if (in.rc != 0) {
        return err_set(e, in.rc, "%s", in.msg);
    }
    return 0;
}

static int open_store_only(const struct args *a, struct store *s, bool ro, struct errbuf *e) {
    char juris[16];
    int rc = node_read_conf(a->data, juris, e);
    if (rc != 0) {
        return rc;
    }
    olog_init(juris, "-", 2, OLOG_WARN);
    struct store_opts so = {.map_bytes = a->map_bytes ? a->map_bytes : 256ull << 20,
                            .map_max_bytes = 1ull << 40,
                            .read_only = ro};
    return store_open(s, a->data, &so, e);
}

static int cmd_verify(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    struct store s;
    int rc = open_store_only(a, &s, true, &e);
    if (rc != 0) {
        return fail("verify", &e, rc);
    }
    struct verify_report r;
    rc = verify_store(&s, &r, &e);
    store_close(&s);
    if (rc != 0) {
        printf("FAILED: %s\n", err_msg(&e, rc));
        return 1;
    }
    printf("ok: %llu records of %llu origins; every chain link and signature holds\n",
           (unsigned long long)r.records, (unsigned long long)r.origins);
    return 0;
}

/* A compacted copy of the node's database, safe while the node runs (a
 * read transaction's snapshot), written atomically to `to`. */
static int cmd_backup(const struct args *a) {
    if (a->to == NULL) {
        fprintf(stderr, "appeal-node backup: --to FILE is required\n");
        return 2;
    }
    struct errbuf e;
    err_clear(&e);
    struct store s;
    int rc = open_store_only(a, &s, true, &e);
    if (rc != 0) {
        return fail("backup", &e, rc);
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", a->to);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int mrc = fd < 0 ? EIO : mdb_env_copyfd2(s.env, fd, MDB_CP_COMPACT);
    if (fd >= 0 && mrc == 0 && fsync(fd) != 0) {
        mrc = EIO;
    }
    if (fd >= 0) {
        close(fd);
    }
    store_close(&s);
    if (mrc != 0 || rename(tmp, a->to) != 0) {
        unlink(tmp);
        fprintf(stderr, "appeal-node backup: cannot write %s: %s\n", a->to,
                mrc ? mdb_strerror(mrc) : "rename failed");
        return 1;
    }
    struct stat st;
    stat(a->to, &st);
    printf("ok: %s (%lld bytes); the keys are not in it: back them up apart\n", a->to,
           (long long)st.st_size);
    return 0;
}

/* A restore moves directories in steps; each step is synced (files and
 * directories) before the next, and DIR/restore-check/checked, written
 * once the copy has passed its check, says the restore is decided: from
 * then on any later `restore` finishes it (rolls forward), whatever step
 * a kill or a power loss stopped it at. Before that file, nothing of the
 * node was changed and a leftover DIR/restore-check/ is discarded. */
struct restore_paths {
    char dir[4100], check[4200], copy[4200], ready[4200], db[4200], old[4200], marker[4200];
};

/* The steps a test may stop a restore at (APPEAL_TEST_RESTORE_STOP_AT):
 * copied, checked, marker, aside, swapped, cleaned. The process _exits
 * there, as a kill would stop it. */
static void restore_stop_at(const char *step) {
    const char *at = getenv("APPEAL_TEST_RESTORE_STOP_AT");
    if (at != NULL && strcmp(at, step) == 0) {
        _exit(99);
    }
}

static void restore_paths_init(struct restore_paths *p, const char *dir) {
    snprintf(p->dir, sizeof p->dir, "%.4000s", dir);
    snprintf(p->check, sizeof p->check, "%s/restore-check", p->dir);
    snprintf(p->copy, sizeof p->copy, "%s/restore-check/db", p->dir);
    snprintf(p->ready, sizeof p->ready, "%s/restore-check/checked", p->dir);
    snprintf(p->db, sizeof p->db, "%s/db", p->dir);
    snprintf(p->old, sizeof p->old, "%s/db.before-restore", p->dir);
    snprintf(p->marker, sizeof p->marker, "%s/recover", p->dir);
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* True if a restore of `dir` was decided and not finished. */
static bool restore_pending(const char *dir) {
    struct restore_paths p;
    restore_paths_init(&p, dir);
    return exists(p.ready);
}

/* The recover marker as the restore's mode says: present (relearn from
 * the peers before signing) or, standalone, absent. Synced either way. */
static int restore_set_marker(const struct restore_paths *p, bool standalone) {
    if (!standalone) {
        return util_write_file(p->marker, "restored from a backup\n", 23, 0600, false);
    }
    if (unlink(p->marker) != 0 && errno != ENOENT) {
        return APL_EIO;
    }
    return util_fsync_dir_of(p->marker);
}

/* Rolls a decided restore forward from whatever step it reached: the
 * marker, the current db/ aside, the checked copy in place, the check
 * directory removed. Each step is idempotent and synced. */
static int restore_finish(const struct restore_paths *p, bool standalone, struct errbuf *e) {
    if (restore_set_marker(p, standalone) != 0) {
        return err_set(e, APL_EIO, "cannot write %s: %s", p->marker, strerror(errno));
    }
    restore_stop_at("marker");
    bool copy = exists(p->copy);
    if (copy && exists(p->db)) {
        if (exists(p->old)) {
            return err_set(e, APL_EEXIST,
                           "%s is in the way of the restore: move it away, then run restore "
                           "again to finish",
                           p->old);
        }
        if (rename(p->db, p->old) != 0 || util_fsync_dir_of(p->db) != 0) {
            return err_set(e, APL_EIO, "cannot move the database aside: %s", strerror(errno));
        }
        restore_stop_at("aside");
    }
    if (copy) {
        if (rename(p->copy, p->db) != 0 || util_fsync_dir_of(p->db) != 0 ||
            util_fsync_dir_of(p->copy) != 0) {
            return err_set(e, APL_EIO, "cannot put the backup in place: %s", strerror(errno));
        }
        restore_stop_at("swapped");
    } else if (!exists(p->db)) {
        return err_set(e, APL_ECORRUPT,
                       "the interrupted restore left neither %s nor the checked copy: restore "
                       "again from the backup file after moving %s away",
                       p->db, p->check);
    }
    remove_tree(p->check);
    if (exists(p->check) || util_fsync_dir_of(p->check) != 0) {
        return err_set(e, APL_EIO, "cannot remove %s", p->check);
    }
    restore_stop_at("cleaned");
    return 0;
}

/* The mode and the source a decided restore recorded: "recover FILE" or
 * "standalone FILE". */
static int restore_read_ready(const struct restore_paths *p, bool *standalone, char *from,
                              size_t from_len) {
    char *text = NULL;
    size_t len = 0;
    int rc = util_read_file(p->ready, 8192, &text, &len);
    if (rc != 0) {
        return rc;
    }
    char *nl = strchr(text, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    char *space = strchr(text, ' ');
    *standalone = strncmp(text, "standalone", 10) == 0;
    snprintf(from, from_len, "%s", space != NULL ? space + 1 : "");
    free(text);
    return 0;
}

/* Copies the backup into DIR/restore-check/db (synced, directories too)
 * and checks it in a child process. */
static int restore_check_copy(const struct restore_paths *p, const char *from,
                              struct verify_report *vr, struct errbuf *e) {
    remove_tree(p->check);
    char file[4300];
    snprintf(file, sizeof file, "%s/data.mdb", p->copy);
    if (util_mkdir(p->copy, 0700) != 0 || util_copy_file(from, file, 0600) != 0 ||
        util_fsync_dir_of(file) != 0 || util_fsync_dir_of(p->copy) != 0 ||
        util_fsync_dir_of(p->check) != 0) {
        return err_set(e, APL_EIO, "cannot read %s", from);
    }
    restore_stop_at("copied");
    struct node_keys keys;
    int rc = keys_load(p->dir, &keys, e);
    if (rc != 0) {
        return rc;
    }
    rc = check_backup(p->check, keys.sign_pk, vr, e);
    keys_wipe(&keys);
    return rc;
}

/* restore --standalone with no --from, on a node a restore left waiting to
 * relearn: the administrator states it has no peers. */
static int restore_declare_standalone(const struct restore_paths *p) {
    if (!exists(p->marker)) {
        fprintf(stderr, "appeal-node restore: --from FILE is required (the node is not waiting "
                        "to relearn its log: --standalone alone has nothing to do)\n");
        return 2;
    }
    if (restore_set_marker(p, true) != 0) {
        fprintf(stderr, "appeal-node restore: cannot remove %s: %s\n", p->marker, strerror(errno));
        return 1;
    }
    printf("ok: the node is standalone: the next run without --cluster signs at once.\n"
           "If a peer held newer records of it, its next record forks its log.\n");
    return 0;
}

static void restore_say_done(const struct restore_paths *p, bool standalone) {
    if (standalone) {
        printf("Standalone: the next run without --cluster signs at once (if a peer held\n"
               "newer records of this node, its next record forks its log).\n");
    } else {
        printf("Start the node with --cluster: it relearns its own newer records from its peers\n"
               "before it signs anything. A node with no peers: appeal-node restore --data %s\n"
               "--standalone, then run it without --cluster.\n",
               p->dir);
    }
}

/* Finishes a restore a kill or a power loss interrupted (the lock held). */
static int restore_resume(const struct restore_paths *p, const struct args *a) {
    bool standalone = false;
    char from[4200], want[PATH_MAX];
    struct errbuf e;
    err_clear(&e);
    int rc = restore_read_ready(p, &standalone, from, sizeof from);
    standalone = standalone || a->standalone;
    if (rc == 0) {
        rc = restore_finish(p, standalone, &e);
    } else {
        err_set(&e, rc, "cannot read %s", p->ready);
    }
    if (rc != 0) {
        return fail("restore", &e, rc);
    }
    printf("ok: finished an interrupted restore of %s (checked before it was interrupted; "
           "the previous database is in %s).\n",
           from, p->old);
    restore_say_done(p, standalone);
    if (a->from != NULL && (realpath(a->from, want) == NULL || strcmp(want, from) != 0)) {
        fprintf(stderr,
                "appeal-node restore: that restore was of %s, not %s: to restore %s, move %s "
                "away and run restore again\n",
                from, a->from, a->from, p->old);
        return 1;
    }
    return 0;
}

/* Puts a backup in place of the node's database. The node must be
 * stopped. The restored node is marked to recover: with --cluster it
 * relearns its own newer records from its peers before signing; with
 * --standalone (no peers) it signs at once. */
static int cmd_restore(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    char juris[16];
    int rc = node_read_conf(a->data, juris, &e);
    if (rc != 0) {
        return fail("restore", &e, rc);
    }
    int lock = node_lock(a->data, &e);
    if (lock < 0) {
        return fail("restore", &e, APL_EUNAVAIL);
    }
    struct restore_paths p;
    restore_paths_init(&p, a->data);
    if (exists(p.ready)) {
        rc = restore_resume(&p, a);
        close(lock);
        return rc;
    }
    if (a->from == NULL) {
        rc = a->standalone ? restore_declare_standalone(&p) : 2;
        if (!a->standalone) {
            fprintf(stderr, "appeal-node restore: --from FILE is required\n");
        }
        close(lock);
        return rc;
    }
    char from[PATH_MAX];
    struct verify_report vr;
    if (realpath(a->from, from) == NULL) {
        rc = err_set(&e, APL_ENOTFOUND, "cannot read %s: %s", a->from, strerror(errno));
    } else if ((rc = restore_check_copy(&p, from, &vr, &e)) == 0 && exists(p.old)) {
        rc = err_set(&e, APL_EEXIST,
                     "%s (left by an earlier restore) is in the way: move it "
                     "away first",
                     p.old);
    }
    if (rc != 0) {
        remove_tree(p.check);
        close(lock);
        return fail("restore", &e, rc);
    }
    /* Decided: from here on any later restore finishes this one. */
    char ready[PATH_MAX + 16];
    int n =
        snprintf(ready, sizeof ready, "%s %s\n", a->standalone ? "standalone" : "recover", from);
    if (util_write_file(p.ready, ready, (size_t)n, 0600, false) != 0) {
        remove_tree(p.check);
        close(lock);
        fprintf(stderr, "appeal-node restore: cannot write %s: %s\n", p.ready, strerror(errno));
        return 1;
    }
    restore_stop_at("checked");
    rc = restore_finish(&p, a->standalone, &e);
    close(lock);
    if (rc != 0) {
        return fail("restore", &e, rc);
    }
    printf("ok: restored %llu records of %llu origins (the previous database is in %s).\n",
           (unsigned long long)vr.records, (unsigned long long)vr.origins, p.old);
    restore_say_done(&p, a->standalone);
    return 0;
}

/* A grant or a revocation: through the running node's API when it runs
 * (signed with DIR/admin.key), else straight into its log. */
static int admin_write(const struct args *a, const char *what, Appeal__Request *q) {
    struct errbuf e;
    err_clear(&e);
    char juris[16], path[4200];
    int rc = node_read_conf(a->data, juris, &e);
    if (rc != 0) {
        return fail(what, &e, rc);
    }
    olog_init(juris, "-", 2, OLOG_WARN);
    uint64_t seq = 0;
    int lock = node_lock(a->data, &e);
    if (lock >= 0) {
        rc = node_admin_write(a->data, q, &seq, &e);
        close(lock);
    } else {
        char *url = NULL;
        snprintf(path, sizeof path, "%.4000s/api.url", a->data);
        if (util_read_file(path, 4096, &url, NULL) != 0) {
            err_set(&e, APL_EUNAVAIL, "the node runs but %s is missing: use appealctl --key", path);
            return fail(what, &e, APL_EUNAVAIL);
        }
        snprintf(path, sizeof path, "%.4000s/admin.key", a->data);
        struct client c;
        err_clear(&e);
        /* A tls+tcp:// API: the node's certificate, checked against --tls-ca. */
        rc = client_open_tls(&c, url, 15000, a->tls_ca ? a->tls_ca : getenv("APPEAL_TLS_CA"), NULL,
                             &e);
        free(url);
        if (rc == 0) {
            rc = client_sign_with(&c, path, &e);
        }
        Appeal__Response *resp = NULL;
        if (rc == 0) {
            rc = client_call(&c, q, &resp, &e);
        }
        if (rc == 0 && resp->error != NULL && resp->error->code != 0) {
            rc = err_set(&e, APL_EREFUSED, "%s", resp->error->message);
        } else if (rc == 0) {
            seq = resp->receipt != NULL ? resp->receipt->seq : 0;
        }
        if (c.arena.base != NULL) {
            client_close(&c);
        }
    }
    if (rc != 0) {
        return fail(what, &e, rc);
    }
    printf("ok: %s (log seq %llu)\n",
           q->op_case == APPEAL__REQUEST__OP_GRANT ? "granted" : "revoked",
           (unsigned long long)seq);
    return 0;
}

static int cmd_grant(const struct args *a, bool revoke) {
    const char *what = revoke ? "revoke" : "grant";
    if (a->key == NULL || (!revoke && a->role == NULL)) {
        fprintf(stderr, "appeal-node %s: --key PUBLIC%s is required\n", what,
                revoke ? "" : " and --role ROLE");
        return 2;
    }
    struct errbuf e;
    err_clear(&e);
    uint8_t pk[KEY_PK_BYTES];
    if (keys_parse_public(a->key, pk, &e) != 0) {
        return fail(what, &e, APL_EINVAL);
    }
    Appeal__Request q = APPEAL__REQUEST__INIT;
    Appeal__GrantRequest g = APPEAL__GRANT_REQUEST__INIT;
    Appeal__RevokeRequest r = APPEAL__REVOKE_REQUEST__INIT;
    if (revoke) {
        r.key.data = pk;
        r.key.len = KEY_PK_BYTES;
        r.reason = (char *)(a->reason ? a->reason : "");
        q.op_case = APPEAL__REQUEST__OP_REVOKE;
        q.revoke = &r;
    } else {
        g.key.data = pk;
        g.key.len = KEY_PK_BYTES;
        g.role = (char *)a->role;
        g.jurisdiction = (char *)(a->juris ? a->juris : "");
        g.label = (char *)(a->label ? a->label : "");
        q.op_case = APPEAL__REQUEST__OP_GRANT;
        q.grant = &g;
    }
    return admin_write(a, what, &q);
}

static int cmd_rotate(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    char juris[16];
    int rc = node_read_conf(a->data, juris, &e);
    if (rc != 0) {
        return fail("rotate-key", &e, rc);
    }
    olog_init(juris, "-", 2, OLOG_WARN);
    int lock = node_lock(a->data, &e);
    if (lock < 0) {
        return fail("rotate-key", &e, APL_EUNAVAIL);
    }
    uint64_t seq = 0;
    uint8_t pk[KEY_PK_BYTES];
    rc = node_rotate_key(a->data, &seq, pk, &e);
    close(lock);
    if (rc != 0) {
        return fail("rotate-key", &e, rc);
    }
    char hex[2 * KEY_PK_BYTES + 1];
    util_hex(pk, KEY_PK_BYTES, hex);
    printf("ok: record %llu hands signing to key %s; records from %llu on are signed by it.\n"
           "The old key is in %s/sign.key.retired-%llu: move it offline or destroy it.\n"
           "Back up the new %s/sign.key.\n",
           (unsigned long long)seq, hex, (unsigned long long)seq + 1, a->data,
           (unsigned long long)seq, a->data);
    return 0;
}

static int cmd_rebuild(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    int lock = node_lock(a->data, &e);
    if (lock < 0) {
        return fail("rebuild", &e, APL_EUNAVAIL);
    }
    struct store s; /* state_rebuild sizes the map it needs */
    int rc = open_store_only(a, &s, false, &e);
    if (rc == 0) {
        rc = state_rebuild(&s, &e);
        if (rc == 0) {
            rc = store_mark_current(&s);
        }
        store_close(&s);
    }
    if (rc != 0) {
        return fail("rebuild", &e, rc);
    }
    printf("ok: derived tables rebuilt from the log\n");
    return 0;
}

static void json_event(struct json *j, const Appeal__Body *b) {
    const char *number;
    uint32_t version;
    if (rec_appeal_ref(b, &number, &version)) {
        json_str(j, "number", number);
        json_uint(j, "version", version);
    }
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_GENESIS:
        json_str(j, "jurisdiction", b->genesis->jurisdiction);
        break;
    case APPEAL__BODY__EVENT_FILED:
        json_str(j, "type", appeal_type_name(b->filed->type));
        json_str(j, "category", b->filed->category);
        json_str(j, "jurisdiction", b->filed->jurisdiction);
        json_int(j, "registered_day", b->filed->registered_day);
        json_int(j, "deadline_day", b->filed->deadline_day);
        json_bool(j, "anonymous", b->filed->anonymous);
        json_uint(j, "co_signers", b->filed->co_signers);
        json_bool(j, "urgent", b->filed->urgent);
        json_str(j, "lang", b->filed->lang);
        break;
    case APPEAL__BODY__EVENT_EXTENDED:
        json_int(j, "until_day", b->extended->until_day);
        break;
    case APPEAL__BODY__EVENT_FORWARDED:
        json_str(j, "to", b->forwarded->to_jurisdiction);
        break;
    case APPEAL__BODY__EVENT_ACCEPTED:
        json_int(j, "deadline_day", b->accepted->deadline_day);
        json_int(j, "start_day", b->accepted->start_day);
        break;
    case APPEAL__BODY__EVENT_ANSWERED:
        json_str(j, "outcome", outcome_name(b->answered->outcome));
        json_int(j, "answered_day", b->answered->answered_day);
        break;
    case APPEAL__BODY__EVENT_CLOSED:
        json_int(j, "closed_day", b->closed->closed_day);
        break;
    case APPEAL__BODY__EVENT_REOPENED:
        json_int(j, "deadline_day", b->reopened->deadline_day);
        json_int(j, "start_day", b->reopened->start_day);
        break;
    case APPEAL__BODY__EVENT_RATED:
        json_str(j, "rating",
                 b->rated->rating == APPEAL__RATING__RATING_SATISFIED ? "satisfied"
                                                                      : "not_satisfied");
        json_int(j, "rated_day", b->rated->rated_day);
        break;
    case APPEAL__BODY__EVENT_KEY_GRANTED:
        json_hex(j, "key", b->key_granted->key.data, b->key_granted->key.len);
        json_str(j, "role", b->key_granted->role);
        json_str(j, "jurisdiction", b->key_granted->jurisdiction);
        json_str(j, "label", b->key_granted->label);
        break;
    case APPEAL__BODY__EVENT_KEY_REVOKED:
        json_hex(j, "key", b->key_revoked->key.data, b->key_revoked->key.len);
        json_str(j, "reason", b->key_revoked->reason);
        break;
    case APPEAL__BODY__EVENT_KEY_ROTATED:
        json_hex(j, "new_key", b->key_rotated->new_key.data, b->key_rotated->new_key.len);
        json_uint(j, "from_seq", b->key_rotated->from_seq);
        break;
    default:
        break;
    }
}

struct log_walk {
    struct arena a;
    const char *juris;
};

static int log_line(void *arg, uint64_t seq, const uint8_t *env, size_t len) {
    struct log_walk *w = arg;
    arena_reset(&w->a);
    struct record r;
    if (rec_decode(env, len, &w->a, &r, NULL) != 0) {
        return APL_ECORRUPT;
    }
    struct json j;
    json_init(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "origin", w->juris);
    json_uint(&j, "seq", seq);
    json_int(&j, "time_ms", r.body->time_ms);
    json_str(&j, "kind", rec_kind(r.body));
    json_hex(&j, "actor", r.body->actor.data, r.body->actor.len);
    json_event(&j, r.body);
    json_end_obj(&j);
    json_done(&j);
    return 0;
}

/* Every record of every origin as one JSON line, without the encrypted
 * parts: for audits and for tests that recount independently. */
static int cmd_log(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    struct store s;
    int rc = open_store_only(a, &s, true, &e);
    if (rc != 0) {
        return fail("log", &e, rc);
    }
    struct log_walk w;
    if (arena_init(&w.a, RECORD_ARENA_BYTES) != 0) {
        store_close(&s);
        return 1;
    }
    MDB_txn *t;
    rc = store_rd_begin(&s, &t);
    if (rc == 0) {
        for (uint32_t idx = 1; rc == 0; idx++) {
            struct origin_state o;
            if (chain_origin_by_idx(&s, t, idx, &o) != 0) {
                break;
            }
            w.juris = o.juris;
            rc = chain_each(&s, t, idx, 1, log_line, &w);
        }
        store_rd_end(&s, t);
    }
    arena_fini(&w.a);
    store_close(&s);
    return rc == 0 ? 0 : fail("log", &e, rc);
}

static int dump_line(const char *table, const void *key, size_t kl, const void *val, size_t vl) {
    char *hk = malloc(2 * kl + 1), *hv = malloc(2 * vl + 1);
    int rc = hk != NULL && hv != NULL ? 0 : APL_ENOMEM;
    if (rc == 0) {
        util_hex(key, kl, hk);
        util_hex(val, vl, hv);
        printf("%s %s %s\n", table, hk, hv);
    }
    free(hk);
    free(hv);
    return rc;
}

/* `arg`: the dump's status; after a failed line, the rest are not printed. */
static void dump_applicant(void *arg, const uint8_t *key, size_t kl, const char *number,
                           size_t nl) {
    int *rc = arg;
    if (*rc == 0) {
        *rc = dump_line("applicants", key, kl, number, nl);
    }
}

static int cmd_dump(const struct args *a) {
    struct errbuf e;
    err_clear(&e);
    struct store s;
    int rc = open_store_only(a, &s, true, &e);
    if (rc != 0) {
        return fail("dump", &e, rc);
    }
    struct app_stage staged;
    if ((rc = apst_init(&staged, &s)) != 0) {
        store_close(&s);
        return fail("dump", &e, rc);
    }
    MDB_txn *t = NULL;
    rc = store_rd_begin(&s, &t);
    for (int db = 0; rc == 0 && db < DB_COUNT; db++) {
        if (!store_db_derived((enum store_db)db) && db != DB_ORIGINS) {
            continue;
        }
        if (db == DB_APPLICANTS) { /* with its staged entries, as merged */
            int line_rc = 0;
            rc = apst_each(&staged, &s, t, dump_applicant, &line_rc);
            rc = rc != 0 ? rc : line_rc;
            continue;
        }
        MDB_cursor *c;
        if (mdb_cursor_open(t, s.dbi[db], &c) != 0) {
            rc = APL_EDB;
            break;
        }
        MDB_val k, v;
        for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0 && rc == 0;
             m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            rc = dump_line(store_db_name((enum store_db)db), k.mv_data, k.mv_size, v.mv_data,
                           v.mv_size);
        }
        mdb_cursor_close(c);
    }
    if (t != NULL) {
        store_rd_end(&s, t);
    }
    apst_fini(&staged);
    store_close(&s);
    return rc == 0 ? 0 : fail("dump", &e, rc);
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) {
        fprintf(stderr, "appeal-node: libsodium failed to initialise\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("appeal-node %s\n", APPEAL_VERSION);
        return 0;
    }
    struct args a;
    if (parse_args(argc, argv, &a) != 0) {
        return 2;
    }
    const char *cmd = argv[1];
    /* A decided restore left half done (a kill, a power loss): nothing may
     * open DIR/db, which may be missing or the old one, until it is done. */
    if (strcmp(cmd, "init") != 0 && strcmp(cmd, "restore") != 0 && a.data != NULL &&
        restore_pending(a.data)) {
        fprintf(stderr,
                "appeal-node %s: a restore of %s was interrupted before it finished: run "
                "appeal-node restore --data %s to finish it (nothing else is needed)\n",
                cmd, a.data, a.data);
        return 1;
    }
    if (strcmp(cmd, "init") == 0) {
        return cmd_init(&a);
    }
    if (strcmp(cmd, "run") == 0) {
        return cmd_run(&a);
    }
    if (strcmp(cmd, "verify") == 0) {
        return cmd_verify(&a);
    }
    if (strcmp(cmd, "rebuild") == 0) {
        return cmd_rebuild(&a);
    }
    if (strcmp(cmd, "dump") == 0) {
        return cmd_dump(&a);
    }
    if (strcmp(cmd, "log") == 0) {
        return cmd_log(&a);
    }
    if (strcmp(cmd, "backup") == 0) {
        return cmd_backup(&a);
    }
    if (strcmp(cmd, "rotate-key") == 0) {
        return cmd_rotate(&a);
    }
    if (strcmp(cmd, "grant") == 0 || strcmp(cmd, "revoke") == 0) {
        return cmd_grant(&a, strcmp(cmd, "revoke") == 0);
    }
    if (strcmp(cmd, "restore") == 0) {
        return cmd_restore(&a);
    }
    fprintf(stderr, "appeal-node: unknown command %s\n%s", cmd, usage);
    return 2;
}
