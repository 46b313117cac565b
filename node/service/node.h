/*
 * node.h: one regional node: its keys, rules, clock, store, writer and
 * client API, and the commands `appeal-node` runs on them.
 *
 * Threads: the writer thread owns every write and the in-memory state of
 * the node's own log (`self`); nng's worker threads serve the API and run
 * short read-only transactions; main waits for a signal. Shutdown stops
 * intake, drains the writer (so every queued write is settled and
 * answered), then stops the API's contexts, then closes the store.
 */
#ifndef APPEAL_NODE_H
#define APPEAL_NODE_H

#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "alerts.h"
#include "engine.h"
#include "olog.h"
#include "ruleset.h"
#include "state.h"
#include "store.h"
#include "writer.h"
#include "api.pb-c.h"

struct api;
struct cluster;
struct repl;
struct survey;
struct http;
struct open311;
struct notify;
struct tls;

enum {
    /* Records from peers may not take the last share of the map: the
     * node's own filings keep that room (a member's huge log cannot fill
     * this node until its own registrars are refused). */
    NODE_OWN_RESERVE_PERCENT_DEFAULT = 10,
    NODE_OWN_RESERVE_PERCENT_MAX = 90,
};
/* below_reserve (engine.c) asserts the reserve leaves part of the map. */
_Static_assert(NODE_OWN_RESERVE_PERCENT_DEFAULT <= NODE_OWN_RESERVE_PERCENT_MAX &&
                   NODE_OWN_RESERVE_PERCENT_MAX < 100,
               "the own reserve is a part of the map, never all of it");

struct node_opts {
    const char *dir;
    const char *clock_file; /* NULL: the system clock */
    uint64_t map_bytes;
    uint64_t map_max_bytes;
    int own_reserve_percent;  /* of map_max_bytes, kept for the own log */
    int heartbeat_idle_ms;    /* a heartbeat after this long without a record */
    bool serving;             /* the store defers meta syncs to the writer */
    const char *cluster_path; /* NULL: standalone */
    int recover_quorum;       /* -1: every peer */
    uint64_t origin_burst;    /* records a peer origin may add per minute at least; 0: no limit */
    struct alert_thresholds alerts;
    const char *http_addr;    /* HOST:PORT for /metrics, /healthz, the dashboard */
    const char *open311_addr; /* HOST:PORT for Open311 GeoReport v2 (public) */
    const char *notify_path;  /* notifications' configuration (docs/notifications.md) */
    int64_t peer_skew_ms;     /* drills only */
    uint32_t
        batch_bytes; /* --batch-bytes: records' bytes per pull answer and delivery; 0: default */
    int64_t
        clock_skew_max_ms; /* an office off its region's clock by more refuses writes; 0: default */
    /* TLS files for tls+tcp:// addresses: all three or none (node/base/tls.h). */
    const char *tls_ca, *tls_cert, *tls_key;
    int64_t auth_window_ms;   /* 0: AUTH_WINDOW_MS_DEFAULT */
    uint32_t connections_max; /* per listener; 0: CONNECTIONS_MAX_DEFAULT */
    int64_t idle_ms;          /* idle connections closed; 0: IDLE_MS_DEFAULT */
    int64_t session_ttl_ms;   /* client sessions; 0: SESSION_TTL_S_DEFAULT */
};

/* Threads and fields: `eng` says its own (engine.h). The rest is set by
 * node_open and node_serve before the threads start and read-only after,
 * but for repl (atomic: node_serve sets it after the writer and its
 * completion thread started, whose hooks read it), last_record_ms and
 * ticks (writer thread only) and the modules' own state behind their
 * pointers (each says its threads). */
struct node {
    struct engine eng; /* store, state, writer, keys, self, durable head */
    char dir[4096];
    uint8_t admin_pk[KEY_PK_BYTES];
    uint8_t admin_id[KEY_ID_BYTES];
    struct ruleset rules;
    struct api *api;
    struct cluster *cluster; /* NULL when standalone; grows on SIGHUP (cluster_merge) */
    char cluster_path[4096];
    uint32_t batch_bytes;
    int64_t clock_skew_max_ms;
    struct repl *_Atomic repl; /* NULL until replication started, and standalone */
    struct survey *survey;
    int recover_quorum;
    uint64_t origin_burst;
    int heartbeat_idle_ms;
    int64_t auth_window_ms;   /* client requests: accepted clock difference */
    uint32_t connections_max; /* per listener (bounds.h) */
    int64_t idle_ms;          /* a connection idle this long is closed */
    int64_t session_ttl_ms;   /* a client session ends this long after it opened */
    int64_t last_record_ms;   /* writer thread only */
    uint64_t ticks;           /* writer thread only */
    struct alerts alerts;
    struct alert_thresholds alert_th;
    struct http *http;
    char http_addr[128];
    struct open311 *open311;
    char open311_addr[128];
    struct notify *notify; /* NULL: no notifications (no --notify) */
    int64_t peer_skew_ms;  /* drills only: shifts the time in our peer messages */
    struct tls *tls;       /* NULL: no TLS files (tcp:// and ipc:// only) */
    bool serving;
    /* node_stop has stopped the writer: every acknowledged write is synced
     * (main's stop watch reads it). */
    _Atomic bool writes_stopped;
};

/* Writes a grant or a revocation (q: GrantRequest or RevokeRequest) into
 * the log of a stopped node, as its administrator. */
int node_admin_write(const char *dir, const Appeal__Request *q, uint64_t *seq, struct errbuf *e);

/* Rotates a stopped node's signing key: writes the KeyRotated record
 * (signed by the old key), moves the old key to sign.key.retired-SEQ and
 * the new one to sign.key. The origin (the identity peers know) stays. */
int node_rotate_key(const char *dir, uint64_t *seq, uint8_t new_pk[KEY_PK_BYTES], struct errbuf *e);

/* Creates DIR with keys, config, default rules files, the genesis record
 * and the grant of the administrator's key (DIR/admin.key). */
int node_init(const char *dir, const char *juris, struct errbuf *e);

/* Opens an initialised node (keys, rules, store). */
int node_open(struct node *n, const struct node_opts *o, struct errbuf *e);
void node_close(struct node *n);

/* Starts the writer and the client API on `api_url`. */
int node_serve(struct node *n, const char *api_url, struct errbuf *e);
/* SIGHUP: reads the cluster file again and merges it into the running one
 * (repl_reload): new nodes become trusted and, if dialled, dialled. A
 * malformed file, or one that changes a listed node's keys, is refused
 * (logged, `cluster_reload_refused`) and the running file kept. */
int node_reload_cluster(struct node *n, struct errbuf *e);
/* Stops intake, drains the writer, stops the API. */
void node_stop(struct node *n);

/* Today in the jurisdiction's local time, by the node's clock. */
int32_t node_today(const struct node *n);
int64_t node_now_ms(const struct node *n);

struct appeal_ctx;
/* The context appeal_file/appeal_act run in, inside write txn `t`. */
void node_appeal_ctx(struct node *n, MDB_txn *t, struct appeal_ctx *c);

/* Writer hooks for offline commands that write (init). */
void node_writer_hooks(struct node *n, struct writer_hooks *h);

/* Recovery is over: removes the restore marker (DIR/recover). */
void node_recovered(struct node *n);

/* Refuses writes after a failed sync (APL_ESTORAGE), while recovering or
 * after a fork of our own log (APL_EUNAVAIL), with the reason in `e`. */
int node_writable(struct node *n, struct errbuf *e);

enum { NODE_HEALTH_REASON_BYTES = 256 };
/* /healthz: "ok", or why writes are refused ("storage_failed",
 * "storage_full", "recovering", "frozen") with a sentence in `reason`
 * (empty when ok). Any thread. */
const char *node_health(struct node *n, char *reason, size_t cap);

/* Takes DIR/node.lock (flock): one process at a time runs, rebuilds or
 * restores a node. Returns the descriptor to keep open, or -1 with `e`. */
int node_lock(const char *dir, struct errbuf *e);

/* Reads DIR/node.conf's jurisdiction. */
int node_read_conf(const char *dir, char juris[16], struct errbuf *e);

#endif
