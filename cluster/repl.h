/*
 * repl.h: replication between nodes (docs/protocol.md).
 *
 * Every node holds a verified copy of every origin's log. Three paths:
 *
 *  - pull (anti-entropy, REQ/REP): one thread per peer sends this node's
 *    high-water mark for every origin; the peer answers with the records
 *    above them, of every origin it holds (so data relays through any
 *    path), in runs capped by count and bytes, plus its own marks. Repeat
 *    until caught up, then wait for a poke or the poll interval.
 *  - push (PUB/SUB): after each durable commit the node publishes its new
 *    records; about once a second it publishes its marks (Heads). A
 *    subscriber applies a push that continues its chain, and otherwise
 *    pokes the puller of that peer.
 *  - serve: a REP socket answering peers' pulls from read transactions.
 *
 * Every run is chain-verified before anything is stored: each record
 * decodes, names its origin and seq, links by BLAKE2b to the one before,
 * and the last record's Ed25519 signature (by the origin's key of the
 * time) verifies, which authenticates the whole run. A response with any
 * bad run is refused whole, counted, logged once per peer and reason, and
 * the peer is backed off exponentially with jitter; the others go on.
 * Records go through the node's writer; high-water marks are read from
 * the store, so they advance only after the commit that stored them.
 *
 * Two different validly signed records for one (origin, seq) are a fork:
 * both are kept in `forks`, the origin is frozen (nothing more accepted,
 * and if it is this node, nothing more signed) and an alert is logged.
 *
 * A node started on an empty store with existing keys (a disk loss), or
 * after a restore, is `recovering`: it learns its own log back from its
 * peers and signs nothing (no writes are accepted) until `recover_quorum`
 * peers have answered and none holds more of its log than it does.
 */
#ifndef APPEAL_REPL_H
#define APPEAL_REPL_H

#include <stdbool.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "clusterfile.h"
#include "err.h"
#include "bounds.h"
#include "pbdecode.h"
#include "repl.pb-c.h"
#include "store.h"

struct engine;
struct repl;
struct tls;
struct wreq;

enum {
    REPL_RECV_BYTES_MAX = 16 * 1024 * 1024, /* any peer message: PEER_RECV_BYTES_MAX */
    PULL_RECORDS_MAX = 50000,               /* records in one pull response */
    PULL_BYTES_MAX = 12 * 1024 * 1024,      /* bytes of records in one response */
    PUSH_RECORDS_MAX = 2000,
    PUSH_BYTES_MAX = 1024 * 1024,
    REPL_CONTEXTS = 8, /* pulls served concurrently */
    PULL_TIMEOUT_MS = 20000,
    /* A delivery (the dialing side's records for the dialed side, over the
     * connection it opened): at most this many bytes of records, so that
     * one fits a slow link between outages (docs/operations.md "Links").
     * The dialed side refuses a larger message. */
    DELIVER_BYTES_MAX = 1024 * 1024,
    DELIVER_MSG_BYTES_MAX = DELIVER_BYTES_MAX + RECORD_BYTES_MAX + 64 * 1024,
    DELIVER_ROUNDS_MAX = 1000, /* deliveries in one session; the next session goes on */
    BATCH_BYTES_MIN = 4096,    /* --batch-bytes */
    /* A puller offers zstd (5.6) unless its last round trip with the
     * peer that moved at least PULL_RATE_SAMPLE_BYTES_MIN (or half the
     * batch asked for) ran at PULL_PLAIN_BYTES_PER_S or more: on such a
     * link (a LAN, loopback) compressing costs the peer more time than the
     * bytes it saves (zstd level 3 packs ~370 MB/s per core on the
     * development machine). A slower one, or a timeout, asks for zstd
     * again. */
    PULL_PLAIN_BYTES_PER_S = 64 * 1024 * 1024,
    PULL_RATE_SAMPLE_BYTES_MIN = 256 * 1024,
    CLOCK_SKEW_MAX_MS_DEFAULT = 120000, /* --clock-skew-max */
    PULL_TLS_CHECK_MS = 1000,   /* a tls+tcp:// peer not connecting: look for failed handshakes */
    PULL_EMPTY_ANSWERS_MAX = 3, /* answers in a row with nothing to store end a session */
    /* A peer's claimed head above what it served and we hold, at the end of
     * this many caught-up sessions in a row, is discarded: counted, logged
     * once, and (of our own log, while recovering) the peer leaves the
     * recovery quorum. An honest answer never does it even once. */
    CLAIM_UNBACKED_SESSIONS_MAX = 3,
    PULL_IDLE_MS = 2000, /* poll interval when caught up */
    BACKOFF_MIN_MS = 200,
    BACKOFF_MAX_MS = 30000,
    HEADS_INTERVAL_MS = 1000,
    /* Heads between are deltas (origins changed since the last) with a
     * digest of all marks; the full set goes out this often. */
    HEADS_FULL_INTERVAL_MS = 30000,
    /* A puller sends compact requests (only the origins a peer holds more
     * of, and asks for the marks changed since its last answer); a full
     * request (every mark, so forks show) at least this often. */
    PULL_FULL_MARKS_MS = 60000,
    PULL_PARTIAL_ROUNDS_MAX = 2,
    /* A compact request lists origins until their missing records, at
     * this many bytes each (a small record), would fill its bytes_max. */
    COMPACT_RECORD_BYTES_MIN = 256,
    /* A pull session that has pulled this long stops (after storing what
     * it has) so that the deliveries of the link go out, then goes on. */
    PULL_SESSION_YIELD_MS = 10000, /* compact answers that only revealed more, in a row */
    /* The receive timeout of a pull grows on each timeout (a slow link:
     * an answer takes longer to cross) up to this, and the batch shrinks. */
    PULL_TIMEOUT_MAX_MS = 120000,
    PEER_SILENT_MS = 3 * PULL_IDLE_MS + 1000, /* no good pull for this long: unreachable */
    REPL_ARENA_BYTES = 64 * 1024 * 1024,
    /* Origin burst budget: in each interval (from the first record of it
     * that this node stores), records of another origin are stored up to
     * max(its head at the interval's start, the floor); the rest are
     * postponed, and the origin is left out of pulls until the interval
     * ends. A log may double every interval, a new one start at the floor. */
    ORIGIN_BURST_INTERVAL_MS = 60000,
    ORIGIN_BURST_FLOOR_DEFAULT = 10000, /* records per interval */
};

struct repl_opts {
    int recover_quorum; /* peers that must answer before a recovering node signs; -1: all */
    bool recovering;
    uint64_t burst_floor; /* records per ORIGIN_BURST_INTERVAL_MS any origin may add; 0: no limit */
    struct tls *tls;      /* NULL: no TLS files (tcp:// and ipc:// only) */
    uint32_t connections_max; /* of the serve socket (bounds.h) */
    int64_t idle_ms;          /* an idle peer connection is closed */
    int64_t peer_skew_ms;     /* drills only: shifts the time in our peer messages */
    /* Bytes of records asked for in one pull answer and sent in one
     * delivery (--batch-bytes); 0: PULL_BYTES_MAX and DELIVER_BYTES_MAX.
     * Each acknowledged batch is kept: a dropped link resumes after it. */
    uint32_t batch_bytes;
    /* A link whose large answers come at this many bytes/s or more is
     * asked for plain answers (5.6); 0: PULL_PLAIN_BYTES_PER_S. Tests set
     * it low (APPEAL_TEST_PLAIN_BYTES_PER_S) so that a loaded machine's
     * loopback still counts as fast. */
    uint64_t plain_bytes_per_s;
    /* An office (a jurisdiction with a '.') whose clock is off its region's
     * node's by more refuses timed actions (engine.clock_off_ms); 0:
     * CLOCK_SKEW_MAX_MS_DEFAULT. Also what the region marks on its dialers. */
    int64_t clock_skew_max_ms;
    /* Recovery is over: `recovered_run` runs on the writer (the service
     * writes the genesis record if the log is still empty), then
     * `recovered(recovered_arg)` (the service removes its marker). */
    int (*recovered_run)(void *writer_arg, MDB_txn *t, struct wreq *w);
    void (*recovered)(void *arg);
    void *recovered_arg;
};

/* Calls fn for each origin whose records are postponed by the burst budget
 * in this interval or the one before (the alert `origin_burst`). */
void repl_bursting(struct repl *r, void (*fn)(void *arg, const char *juris, uint64_t allowed),
                   void *arg);

int repl_start(struct repl **out, struct engine *g, struct cluster *c, const struct repl_opts *o,
               struct errbuf *e);
/* First half of shutdown: stops pulling and subscribing (their pending
 * ingests complete through the still-running writer). */
void repl_stop_intake(struct repl *r);
/* Second half, after the writer stopped: stops serving, frees. */
void repl_stop(struct repl *r);

/* From the writer's completion thread: own records up to `head` are
 * durable and may be published and served. */
void repl_durable(struct repl *r, uint64_t head);
bool repl_recovering(const struct repl *r);

/* A reloaded cluster file (SIGHUP): merged into the running one
 * (cluster_merge), then new nodes this node dials get a puller and a
 * subscription, and nodes no longer dialled are let go. Refused with the
 * running file unchanged (and said why in e) when cluster_merge refuses. */
int repl_reload(struct repl *r, const struct cluster *fresh, struct errbuf *e);

/* The cluster view for `appealctl cluster status`. */
int repl_status(struct repl *r, MDB_txn *t, struct arena *a, Appeal__ClusterStatus **out);
/* Reads the cluster view in a read transaction of its own and hands it to
 * fn; fn is not called when it cannot be read (r NULL: not replicating). */
void repl_status_visit(struct repl *r, void (*fn)(void *arg, const Appeal__ClusterStatus *s),
                       void *arg);

/* Chain verification of one run against what we hold of its origin (the
 * head and the signing key): exported for tests and fuzzing. */
struct run_base {
    const uint8_t *origin;
    uint64_t head_seq;
    const uint8_t *head_hash; /* NULL when head_seq is 0 */
    const uint8_t *signing_key;
    const char *juris; /* from the cluster file: genesis must match */
    const uint8_t *box_key;
};
int repl_check_run(const Appeal__Run *run, const struct run_base *b, struct arena *a,
                   struct errbuf *e);

#endif
