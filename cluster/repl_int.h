/*
 * repl_int.h: what the parts of replication share (private to cluster/):
 * struct repl and struct peer, and the functions one part calls in
 * another. repl.h is the interface; the parts are
 *   repl.c         start and stop, the run checks, ingest through the
 *                  writer, the burst budget, what a peer claimed and proved;
 *   repl_serve.c   answering peers' pulls (the REP contexts);
 *   repl_pull.c    the puller thread of each peer, and recovery;
 *   repl_push.c    the subscriber and the publisher threads;
 *   repl_status.c  the cluster view (`appealctl cluster status`).
 *
 * Threads (docs/architecture.md): a peer's fields marked "under mu" are
 * shared by its puller, the subscriber and status readers; the rest of
 * struct peer is its puller's. struct repl: `o`, `c`, `g`, the sockets and
 * `peers` are set by repl_start and read-only while threads run.
 */
#ifndef APPEAL_REPL_INT_H
#define APPEAL_REPL_INT_H

#include <errno.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "clusterfile.h"
#include "connlimit.h"
#include "engine.h"
#include "repl.h"

struct pmark {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t seq;
};

/* What one peer has shown of one origin. A peer's marks are claims; a
 * claim is believed only up to `proven` (the last seq of a verified run it
 * served us) or what we hold ourselves (docs/protocol.md 7.1). */
struct pclaim {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t proven;
    uint32_t unbacked; /* caught-up sessions in a row with the claim above proven and held */
    bool logged;       /* the unbacked claim was counted and logged */
};

struct peer {
    struct repl *r;
    const struct cluster_node *cn;
    pthread_t thread;
    bool started;
    nng_socket req;
    nng_dialer dialer;
    bool tls;              /* its link is tls+tcp:// */
    nng_dialer sub_dialer; /* our subscription to its publisher */
    bool zstd;             /* it answered a pull packed: it reads Packed too (puller) */
    bool fast_link;        /* its last large answer came fast: ask plain (puller) */
    bool no_deliver;       /* it does not take deliveries (an older node; puller) */
    _Atomic bool retired;  /* no longer dialled (cluster file reloaded) */
    bool dialer_closed;    /* puller: its dialer was closed on retiring */
    uint64_t tls_failures; /* failed handshakes of `dialer` already reported (puller) */
    nng_aio *aio;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool poke;                /* under mu: the subscriber asks for a pull now */
    bool connected;           /* under mu: a connection came up: pull now, even in a backoff */
    bool yielded;             /* puller: the last session stopped to let deliveries go */
    struct arena arenas[2];   /* the answer being fetched and the one being stored */
    struct origin_list *ours; /* what we hold or will hold, for requests */
    /* Status, under mu. */
    int64_t last_contact_ms, last_ok_ms, skew_ms;
    char last_error[ERRBUF_MSG_BYTES];
    char logged_error[ERRBUF_MSG_BYTES];
    uint8_t logged_unknown[8][KEY_PK_BYTES]; /* origins already logged as unknown */
    uint32_t n_logged_unknown;
    uint64_t errors, refused, records_in;
    uint32_t backoff_ms;
    uint32_t n_marks;
    struct pmark marks[CLUSTER_NODES_MAX];
    bool confirmed; /* recovery: holds nothing of ours beyond our head */
    bool dropped;   /* recovery: its claim of our log was never backed; not in the quorum */
    uint32_t n_claims;
    struct pclaim claims[CLUSTER_NODES_MAX];
    /* Compact requests (puller): the peer's run and marks' version as of
     * its last answer (0: unknown, or it is an older node), and when the
     * next full request is due (monotonic ms). */
    uint64_t srv_epoch, srv_version;
    int64_t full_due_ms;
    uint32_t timeout_ms;  /* receive timeout of a pull: grows on timeouts */
    uint32_t batch_bytes; /* bytes_max asked: shrinks on timeouts, grows back */
};

/* What this node last showed of one origin (its servable head), and the
 * version of its marks at which that changed (repl_serve.c). */
struct shown {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t seq;
    uint64_t version;
};

/* The burst budget of one origin (ORIGIN_BURST_INTERVAL_MS): written by
 * the writer thread only; `limited_until_ms` is read by the others. */
struct burst {
    int64_t start_ms;                 /* monotonic; 0: no interval yet */
    uint64_t history;                 /* its head when the interval started */
    uint64_t taken;                   /* records stored in the interval */
    _Atomic int64_t limited_until_ms; /* postponed: left out of pulls until then */
};

struct srv_work {
    struct repl *r;
    nng_aio *aio;
    nng_ctx ctx;
    int state; /* 0 init, 1 recv, 2 send, 3 queued for the delivery thread */
    struct arena arena;
    Appeal__PeerBody *body; /* a queued delivery, decoded in `arena` */
    const struct cluster_node *from;
    bool packed; /* it came packed: answer packed */
};

/* What a node's messages to our serve socket showed (a node that dials
 * us, perhaps one we never dial): by index in the cluster file. */
struct seen {
    _Atomic int64_t last_ms; /* our clock; 0: never */
    _Atomic int64_t skew_ms; /* its clock minus ours */
};

struct repl {
    struct engine *g;
    struct cluster *c;
    struct repl_opts o; /* as given to repl_start, read-only */
    nng_socket rep, pub, sub;
    bool rep_open, pub_open, sub_open;
    struct srv_work works[REPL_CONTEXTS];
    struct conn_limit *conns;  /* of the serve socket */
    struct peer *peers;        /* CLUSTER_NODES_MAX slots */
    _Atomic uint32_t n_peers;  /* slots in use: raised by repl_reload once a slot is ready */
    pthread_mutex_t reload_mu; /* one reload at a time */
    /* Deliveries are stored by one thread (they wait for the writer, which
     * a serving context's callback must not): the contexts queue here. */
    pthread_t deliver_thread;
    bool deliver_started;
    pthread_cond_t deliver_cv;                 /* with mu */
    struct srv_work *deliver_q[REPL_CONTEXTS]; /* under mu */
    uint32_t deliver_n;                        /* under mu */
    struct seen seen[CLUSTER_NODES_MAX];
    int64_t clock_skew_max_ms;
    pthread_t sub_thread, pub_thread;
    bool sub_started, pub_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t durable_target; /* under mu */
    uint64_t published;      /* publisher thread */
    _Atomic bool stopping;
    _Atomic bool recovering;
    int recover_quorum;
    struct arena ingest_arena; /* writer thread */
    struct arena sub_arena;    /* subscriber thread */
    struct arena pub_arena;    /* publisher thread */
    pthread_mutex_t recover_mu;
    uint64_t burst_floor;                   /* 0: no burst budget */
    struct burst bursts[CLUSTER_NODES_MAX]; /* by index in the cluster file */
    /* Versions of our marks, for compact answers and delta heads. */
    pthread_mutex_t shown_mu;
    uint64_t epoch;   /* random at start, not 0 */
    uint64_t version; /* under shown_mu: bumped when a shown head changes */
    uint32_t n_shown; /* under shown_mu */
    struct shown shown[CLUSTER_NODES_MAX];
};

/* A write request whose submitter waits for it to be settled. */
struct waited {
    struct wreq *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

/* A batch of verified runs on its way to the engine (engine_ingest_run). */
struct repl_ingest {
    struct ingest in;
    struct waited wt;
    struct repl *r;
    struct peer *from;
};

struct origin_list {
    struct origin_state o[CLUSTER_NODES_MAX];
    uint32_t n;
};

enum {
    /* A pull request: marks and wanted origins of at most
     * CLUSTER_NODES_MAX origins (about 120 bytes each), the envelope. */
    PULL_REQUEST_BYTES_MAX = 256 * 1024,
    /* A serving context decodes a request and builds its answer's run
     * lists (the records stay in the read transaction's map). */
    SRV_ARENA_BYTES = 8 * 1024 * 1024,
    /* The subscriber decodes one push (at most 2 * PUSH_BYTES_MAX), holds
     * one origin_list and checks the run (RECORD_ARENA_BYTES). */
    SUB_ARENA_BYTES = 8 * 1024 * 1024,
    /* The publisher: one run of PUSH_RECORDS_MAX pointers, or the marks. */
    PUB_ARENA_BYTES = 1024 * 1024,
};

/* Whether `mu` is held (by this thread, in the functions that say "p->mu
 * held"): for ASSERT only. A normal mutex held by anyone refuses trylock;
 * one that was free is taken, and the ASSERT aborts anyway. */
static inline bool repl_locked(pthread_mutex_t *mu) {
    return pthread_mutex_trylock(mu) == EBUSY;
}

/* repl.c */
int repl_peer_pack(struct repl *r, Appeal__PeerBody *body, nng_msg **out);
int repl_peer_open(struct repl *r, const void *data, size_t len, struct arena *a,
                   const struct cluster_node *expect, Appeal__PeerBody **body,
                   const struct cluster_node **from, struct errbuf *e);
int repl_submit_wait(struct repl *r, struct wreq *w);
bool repl_burst_limited(const struct repl *r, const uint8_t *pk);
int repl_ingest_begin(struct repl *r, struct peer *p, struct repl_ingest *ri, Appeal__Run **runs,
                      size_t n_runs, struct errbuf *e);
/* As repl_ingest_wait, for runs a node delivered (`via`: its jurisdiction). */
int repl_ingest_delivered(struct repl *r, const char *via, Appeal__Run **runs, size_t n_runs,
                          uint64_t *appended, struct errbuf *e);
int repl_ingest_end(struct repl_ingest *ri, uint64_t *appended, struct errbuf *e);
int repl_ingest_wait(struct repl *r, struct peer *p, Appeal__Run **runs, size_t n_runs,
                     uint64_t *appended, struct errbuf *e);
int repl_list_origins(struct repl *r, MDB_txn *t, struct origin_list *l);
void repl_peer_error(struct peer *p, int rc, const char *msg);
void repl_peer_contact(struct peer *p, const Appeal__PeerBody *b, const Appeal__Mark *const *marks,
                       size_t n, bool ok);
const struct origin_state *repl_held(const struct origin_list *l, const uint8_t *pk);
void repl_peer_proved(struct peer *p, const Appeal__Run *run);
uint64_t repl_believed(const struct peer *p, const uint8_t *origin, uint64_t claim, uint64_t have);
bool repl_claim_discarded(struct peer *p, const uint8_t *origin, uint64_t *proven);
struct pclaim *repl_claim_of(struct peer *p, const uint8_t *origin);
int repl_check_origin_run(struct repl *r, const struct origin_list *l, const Appeal__Run *run,
                          struct arena *a, bool *skip, struct errbuf *e);
void repl_count_refused(struct repl *r, int rc, uint64_t records);

/* repl_serve.c */
int repl_answer_pull(struct repl *r, const Appeal__PullRequest *q, struct arena *a, MDB_txn *t,
                     Appeal__PullResponse *resp);
void repl_srv_reply(struct srv_work *w, Appeal__PeerBody *body, bool packed);
Appeal__Mark *repl_mark_of(struct arena *a, struct repl *r, const struct origin_state *o,
                           MDB_txn *t, bool serving);
const Appeal__Mark *repl_find_mark(Appeal__Mark **marks, size_t n, const uint8_t *pk);
uint64_t repl_shown(struct repl *r, const uint8_t *origin, uint64_t seq);
uint64_t repl_version(struct repl *r);
void repl_marks_digest(struct pmark *marks, uint32_t n, uint8_t out[32]);
void repl_srv_cb(void *arg);

/* repl_pull.c */
void repl_recovery_maybe_done(struct repl *r);
void *repl_puller_main(void *arg);

/* repl_deliver.c */
int repl_deliver_session(struct peer *p, struct errbuf *e);
void *repl_deliver_main(void *arg);
void repl_deliver_queue(struct srv_work *w);
int repl_send_recv(struct peer *p, nng_msg *out, nng_msg **in, struct errbuf *e);
uint32_t repl_batch_bytes(const struct repl *r, uint32_t cap);

/* repl_push.c */
void *repl_subscriber_main(void *arg);
void *repl_publisher_main(void *arg);

#endif
