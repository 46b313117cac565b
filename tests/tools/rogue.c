/*
 * rogue: a hostile peer, for tests (tests/integration/test_rogue.py).
 *
 *   rogue --key DIR/sign.key --listen-peer URL --listen-pub URL --source URL
 *         --mode MODE [--seconds N] [--honest-every N]
 *   rogue --key KEY --pull URL
 *
 * Server mode. DIR is a node directory made by `appeal-node init` whose
 * entry is in the victims' cluster file: the rogue is a known peer and
 * signs with that node's real key. It first copies the log of an honest
 * node (--source, that node's peer URL) with signed pulls, then answers
 * pulls on --listen-peer (REP) and publishes on --listen-pub (PUB, about
 * every ROGUE_PUBLISH_MS), everything wrong in the way MODE says.
 *
 * What it lies with, per requester (the marks of its last pull):
 *  - real runs: records copied from the source, above the requester's marks;
 *  - bait: a genuine chain of the rogue's own origin (genesis + heartbeats),
 *    which a receiver would rightly store if it came in a valid message;
 *  - forgeries: records continuing each chain the requester holds (its own
 *    included), linked to its head hash but signed by the rogue's key.
 *
 * MODE (in pull answers and in pushes, one run per PushBatch):
 *   forged          real runs and bait with the body of their last record
 *                   changed (the signature fails), plus the forgeries
 *   broken-link     real runs, bait and forgeries with records 0 and 1 swapped
 *   tampered        the body of record 0 changed: its signature is never
 *                   checked (one per run), the hash link to record 1 breaks
 *   gap             every run starts 2 above the requester's mark
 *   replay          the source's records from seq 1, whatever is held
 *   unknown-origin  a valid chain (from genesis) of a fresh key
 *   wrong-genesis   a valid chain of the rogue's origin whose genesis names
 *                   another jurisdiction
 *   too-many        a valid chain of PULL_RECORDS_MAX + 1 records, own origin
 *   oversized       the bait padded past REPL_RECV_BYTES_MAX
 *   garbage         random bytes, not a PeerMessage
 *   bad-sig         real runs and bait; the PeerMessage signature corrupted
 *   impersonate     real runs and bait, claiming the source's key as sender
 *   stale           real runs and bait, time_ms an hour old
 *   mixed           real runs and bait (good) followed by the forgeries: a
 *                   receiver must refuse the whole answer (pushes carry only
 *                   the forgeries: a good run alone would rightly be stored)
 *   fake-fork       no runs; `conflicts` holds altered or forged versions of
 *                   each requester's head record: no fork may be recorded
 *   huge-heads      real runs and bait, all valid (a legitimate member), but
 *                   every mark it sends, in answers and in Heads, claims
 *                   ROGUE_HUGE_SEQ records of that origin
 * Runs a mode cannot spoil (one record where two are needed) are left out:
 * everything sent in an attack is wrong somewhere. Heads are always valid
 * (its true marks, except in huge-heads), so that receivers keep pulling. With --honest-every N,
 * every Nth answer to a requester is valid and empty: it resets the
 * requester's backoff, as a patient attacker would, so the attacks keep
 * coming.
 *
 * What a PeerMessage signature covers is taken from the source's answer:
 * Ed25519 of the body (the first protocol), or of "appeal-peer-v1" ||
 * BLAKE2b-256(body) (the current one). Whichever verifies is spoken, so
 * that attacks are refused for what they carry, not for the dialect.
 *
 * Client mode: one signed pull with no marks to URL; prints the answer's
 * `error` and its runs (a node refuses a key not in its cluster file).
 *
 * stdout, one key=value line per event: `ready ...`, `answer to=KEYHEX
 * kind=attack|honest ...` per pull answered, `done ...` at exit.
 * Exit: 0 (server: stopped by SIGTERM/SIGINT or --seconds; client: an
 * answer came), 1 failure, 2 usage, 3 (client) no answer.
 */
#include <errno.h>
#include <getopt.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "clusterfile.h"
#include "keys.h"
#include "pbdecode.h"
#include "record.h"
#include "repl.h"
#include "util.h"

/* huge-heads: the seq every mark claims (10^15). */
static const uint64_t ROGUE_HUGE_SEQ = 1000000000000000ull;

enum {
    ROGUE_CHAIN_RECORDS = 4,                             /* bait, forgeries, fresh chains */
    ROGUE_REQUESTERS_MAX = 16,                           /* peers whose marks are remembered */
    ROGUE_SOURCE_PULLS_MAX = 64,                         /* pulls to copy the source's log */
    ROGUE_TIMEOUT_MS = 10000,                            /* source pulls, client pulls */
    ROGUE_POLL_MS = 50,                                  /* receive timeout of the serving loop */
    ROGUE_SEND_TIMEOUT_MS = 2000,                        /* an answer to a requester */
    ROGUE_PUBLISH_MS = 200,                              /* pushes and heads */
    ROGUE_PUBLISH_BIG_MS = 1000,                         /* pushes of several megabytes */
    ROGUE_STALE_MS = 60 * 60 * 1000,                     /* how old `stale` messages are */
    ROGUE_GARBAGE_BYTES_MAX = 4096,                      /* random bytes in one `garbage` message */
    ROGUE_PAD_BYTES = REPL_RECV_BYTES_MAX + 1024 * 1024, /* `oversized` */
    ROGUE_PAD_FIELD = 99,                                /* unknown PeerBody field of the padding */
    ROGUE_REQUEST_BYTES_MAX = 1024 * 1024,
    ROGUE_KEEP_ARENA_BYTES = 96 * 1024 * 1024, /* copied log, chains */
    ROGUE_WORK_ARENA_BYTES = 32 * 1024 * 1024, /* one answer or one round of pushes */
    ROGUE_SECONDS_MAX = 24 * 60 * 60,
    ROGUE_HONEST_EVERY_MAX = 1000,
    ROGUE_KEY_HEX = 16, /* hex digits of a key printed */
    ROGUE_RECORD_REPEATED_MAX = 16,
    ROGUE_MESSAGE_REPEATED_MAX = 16,
    ROGUE_CLOSE_TIMEOUT_MS = 1000, /* nng_close, see close_bounded() */
    ROGUE_DRAIN_MS = 100,          /* between closing the listeners and the sockets */
};

/* What a peer message's signature covers. */
enum sig_scheme {
    SIG_CONTEXT_HASH, /* Ed25519("appeal-peer-v1" || BLAKE2b-256(body)) */
    SIG_RAW_BODY,     /* Ed25519(body) */
};

static const char peer_sig_context[] = "appeal-peer-v1";

enum mode {
    MODE_FORGED,
    MODE_BROKEN_LINK,
    MODE_TAMPERED,
    MODE_GAP,
    MODE_REPLAY,
    MODE_UNKNOWN_ORIGIN,
    MODE_WRONG_GENESIS,
    MODE_TOO_MANY,
    MODE_OVERSIZED,
    MODE_GARBAGE,
    MODE_BAD_SIG,
    MODE_IMPERSONATE,
    MODE_STALE,
    MODE_MIXED,
    MODE_FAKE_FORK,
    MODE_HUGE_HEADS,
    MODE_COUNT
};

static const char *const mode_names[MODE_COUNT] = {
    "forged",        "broken-link", "tampered",  "gap",        "replay",  "unknown-origin",
    "wrong-genesis", "too-many",    "oversized", "garbage",    "bad-sig", "impersonate",
    "stale",         "mixed",       "fake-fork", "huge-heads",
};

/* Contiguous records of one origin from first_seq. Record bytes are in an
 * arena; `recs` too for chains made here (chain_make), malloc'd for those
 * copied from the source (chain_append). */
struct chain {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t first_seq;
    ProtobufCBinaryData *recs;
    size_t n, cap;
};

struct rmark {
    uint8_t origin[KEY_PK_BYTES];
    uint64_t seq;
    uint8_t hash[HASH_BYTES];
};

/* What one requester said it holds in its last pull. */
struct requester {
    uint8_t pk[KEY_PK_BYTES];
    struct rmark marks[CLUSTER_NODES_MAX];
    uint32_t n_marks;
    uint64_t answers;
};

struct rogue {
    enum mode mode;
    enum sig_scheme scheme;
    uint32_t honest_every;
    uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES], box_pk[BOX_PK_BYTES];
    char juris[16], other_juris[16];
    uint8_t source_pk[KEY_PK_BYTES];
    struct arena keep, work;
    struct chain *copied; /* the source's log, per origin (malloc'd array) */
    uint32_t n_copied;
    struct chain bait, fresh, wrong_genesis, too_many;
    Appeal__Mark **own_marks; /* in keep */
    size_t n_own_marks;
    struct requester *reqs; /* malloc'd, ROGUE_REQUESTERS_MAX */
    uint32_t n_reqs;
    nng_socket rep, pub, src;
    nng_listener rep_l, pub_l;
    bool rep_open, pub_open, src_open, rep_l_open, pub_l_open;
    uint64_t answers, attacks, honest, pushes, heads;
};

/* What one answer or one round of pushes carries. */
struct plan {
    Appeal__Run **runs;
    size_t n_runs, cap_runs;
    size_t bad_from; /* runs before it are good (mixed) */
    Appeal__Run **conflicts;
    size_t n_conflicts;
    uint64_t real_above; /* records of real runs above the requester's marks */
};

static void hex_short(const uint8_t *pk, char out[ROGUE_KEY_HEX + 1]) {
    util_hex(pk, ROGUE_KEY_HEX / 2, out);
}

/* ---- records and chains ---- */

struct rec_spec {
    const uint8_t *sk; /* signs */
    const uint8_t *origin;
    uint64_t seq;
    const uint8_t *prev;
    const char *genesis_juris; /* a genesis record when seq is 1 and this is set */
    const uint8_t *box_pk;
};

static int record_make(struct arena *a, const struct rec_spec *s, ProtobufCBinaryData *out) {
    Appeal__Body b = APPEAL__BODY__INIT;
    Appeal__Genesis g = APPEAL__GENESIS__INIT;
    Appeal__Heartbeat h = APPEAL__HEARTBEAT__INIT;
    b.origin.data = (uint8_t *)s->origin;
    b.origin.len = KEY_PK_BYTES;
    b.seq = s->seq;
    b.prev.data = (uint8_t *)s->prev;
    b.prev.len = HASH_BYTES;
    b.time_ms = clock_system_ms();
    if (s->seq == 1 && s->genesis_juris != NULL) {
        g.jurisdiction = (char *)s->genesis_juris;
        g.box_key.data = (uint8_t *)s->box_pk;
        g.box_key.len = BOX_PK_BYTES;
        b.event_case = APPEAL__BODY__EVENT_GENESIS;
        b.genesis = &g;
    } else {
        h.records_total = s->seq;
        b.event_case = APPEAL__BODY__EVENT_HEARTBEAT;
        b.heartbeat = &h;
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = rec_sign(&b, s->sk, &bytes, &len);
    if (rc != 0) {
        return rc;
    }
    out->data = arena_new(a, len);
    if (out->data != NULL) {
        memcpy(out->data, bytes, len);
        out->len = len;
    }
    free(bytes);
    return out->data != NULL ? 0 : APL_ENOMEM;
}

/* n records of `origin` from first_seq, linked from `prev`, signed by sk. */
static int chain_make(struct arena *a, const struct rec_spec *base, size_t n, struct chain *out) {
    memset(out, 0, sizeof *out);
    memcpy(out->origin, base->origin, KEY_PK_BYTES);
    out->first_seq = base->seq;
    out->recs = arena_new(a, n * sizeof *out->recs);
    if (out->recs == NULL) {
        return APL_ENOMEM;
    }
    out->cap = n;
    uint8_t prev[HASH_BYTES];
    memcpy(prev, base->prev, HASH_BYTES);
    struct rec_spec s = *base;
    s.prev = prev;
    for (size_t i = 0; i < n; i++) {
        s.seq = base->seq + i;
        int rc = record_make(a, &s, &out->recs[i]);
        if (rc != 0) {
            return rc;
        }
        rec_hash(out->recs[i].data, out->recs[i].len, prev);
        out->n++;
    }
    return 0;
}

/* A copy of `in` whose body differs in one bit of time_ms; the signature
 * is the original's, so it no longer verifies, and the hash changes. */
static int record_alter(struct arena *a, const ProtobufCBinaryData *in, ProtobufCBinaryData *out) {
    Appeal__Envelope *env = (Appeal__Envelope *)pb_unpack(
        &appeal__envelope__descriptor, in->data, in->len, a, ROGUE_RECORD_REPEATED_MAX, NULL);
    Appeal__Body *b =
        env == NULL ? NULL
                    : (Appeal__Body *)pb_unpack(&appeal__body__descriptor, env->body.data,
                                                env->body.len, a, ROGUE_RECORD_REPEATED_MAX, NULL);
    if (b == NULL) {
        return APL_EINVAL;
    }
    b->time_ms ^= 1;
    Appeal__Envelope e2 = APPEAL__ENVELOPE__INIT;
    e2.body.len = protobuf_c_message_get_packed_size(&b->base);
    e2.body.data = arena_new(a, e2.body.len + 1);
    if (e2.body.data == NULL) {
        return APL_ENOMEM;
    }
    protobuf_c_message_pack(&b->base, e2.body.data);
    e2.sig = env->sig;
    out->len = protobuf_c_message_get_packed_size(&e2.base);
    out->data = arena_new(a, out->len + 1);
    if (out->data == NULL) {
        return APL_ENOMEM;
    }
    protobuf_c_message_pack(&e2.base, out->data);
    return 0;
}

/* Appends one record (copied into a) to a growable chain. */
static int chain_append(struct arena *a, struct chain *c, const ProtobufCBinaryData *rec) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        ProtobufCBinaryData *recs = realloc(c->recs, cap * sizeof *recs);
        if (recs == NULL) {
            return APL_ENOMEM;
        }
        c->recs = recs;
        c->cap = cap;
    }
    uint8_t *d = arena_new(a, rec->len);
    if (d == NULL) {
        return APL_ENOMEM;
    }
    memcpy(d, rec->data, rec->len);
    c->recs[c->n].data = d;
    c->recs[c->n].len = rec->len;
    c->n++;
    return 0;
}

static uint64_t chain_head(const struct chain *c) {
    return c->n ? c->first_seq + c->n - 1 : c->first_seq - 1;
}

/* The high-water mark of a non-empty chain: its origin, head seq and the
 * hash of its head record. */
static Appeal__Mark *chain_mark(const struct chain *c, struct arena *a) {
    Appeal__Mark *m = arena_new(a, sizeof *m);
    uint8_t *h = arena_new(a, HASH_BYTES);
    if (m == NULL || h == NULL) {
        return NULL;
    }
    appeal__mark__init(m);
    m->origin.data = (uint8_t *)c->origin;
    m->origin.len = KEY_PK_BYTES;
    m->seq = chain_head(c);
    rec_hash(c->recs[c->n - 1].data, c->recs[c->n - 1].len, h);
    m->head_hash.data = h;
    m->head_hash.len = HASH_BYTES;
    return m;
}

/* ---- peer messages ---- */

static size_t varint_put(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        p[n++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
    return n;
}

enum { SIGNED_BYTES_MAX = sizeof peer_sig_context - 1 + HASH_BYTES };

/* The bytes a peer message's signature covers, under `scheme`. */
static const uint8_t *signed_part(enum sig_scheme scheme, const uint8_t *body, size_t len,
                                  uint8_t buf[SIGNED_BYTES_MAX], size_t *out_len) {
    if (scheme == SIG_RAW_BODY) {
        *out_len = len;
        return body;
    }
    memcpy(buf, peer_sig_context, sizeof peer_sig_context - 1);
    hash_bytes(body, len, buf + sizeof peer_sig_context - 1);
    *out_len = SIGNED_BYTES_MAX;
    return buf;
}

static bool sig_ok(enum sig_scheme scheme, const Appeal__PeerMessage *m) {
    uint8_t buf[SIGNED_BYTES_MAX];
    size_t n;
    const uint8_t *sp = signed_part(scheme, m->body.data, m->body.len, buf, &n);
    return crypto_sign_verify_detached(m->sig.data, sp, n, m->sender.data) == 0;
}

/* Envelope defects of an attack message. */
struct defects {
    bool stale, bad_sig, impersonate, pad;
};

static struct defects defects_of(const struct rogue *g, bool attack) {
    struct defects d = {false, false, false, false};
    if (attack) {
        d.stale = g->mode == MODE_STALE;
        d.bad_sig = g->mode == MODE_BAD_SIG;
        d.impersonate = g->mode == MODE_IMPERSONATE;
        d.pad = g->mode == MODE_OVERSIZED;
    }
    return d;
}

/* Signs `body` (version and time set here) and packs the PeerMessage. */
static int seal(const struct rogue *g, Appeal__PeerBody *body, struct defects d, nng_msg **out) {
    body->version = 1;
    body->time_ms = clock_system_ms() - (d.stale ? ROGUE_STALE_MS : 0);
    size_t blen = protobuf_c_message_get_packed_size(&body->base);
    size_t pad = d.pad ? ROGUE_PAD_BYTES : 0;
    uint8_t *bb = calloc(1, blen + pad + 32);
    if (bb == NULL) {
        return APL_ENOMEM;
    }
    protobuf_c_message_pack(&body->base, bb);
    if (pad > 0) {
        /* An unknown length-delimited field: parsers skip it, sizes do not. */
        blen += varint_put(bb + blen, (uint64_t)ROGUE_PAD_FIELD << 3 | 2);
        blen += varint_put(bb + blen, pad);
        blen += pad;
    }
    uint8_t sig[SIG_BYTES], buf[SIGNED_BYTES_MAX];
    size_t sn;
    const uint8_t *sp = signed_part(g->scheme, bb, blen, buf, &sn);
    crypto_sign_detached(sig, NULL, sp, sn, g->sk);
    if (d.bad_sig) {
        sig[SIG_BYTES / 2] ^= 0x40;
    }
    Appeal__PeerMessage m = APPEAL__PEER_MESSAGE__INIT;
    m.body.data = bb;
    m.body.len = blen;
    m.sender.data = (uint8_t *)(d.impersonate ? g->source_pk : g->pk);
    m.sender.len = KEY_PK_BYTES;
    m.sig.data = sig;
    m.sig.len = SIG_BYTES;
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    int rv = nng_msg_alloc(out, n);
    if (rv == 0) {
        protobuf_c_message_pack(&m.base, nng_msg_body(*out));
    }
    free(bb);
    return rv == 0 ? 0 : APL_ENOMEM;
}

static int garbage(nng_msg **out) {
    size_t n = 1 + randombytes_uniform(ROGUE_GARBAGE_BYTES_MAX);
    if (nng_msg_alloc(out, n) != 0) {
        return APL_ENOMEM;
    }
    randombytes_buf(nng_msg_body(*out), n);
    return 0;
}

/* Decodes a peer message and its body. With `scheme`, the signature must
 * verify under one of the schemes, and *scheme says which. */
static int unseal(const void *data, size_t len, struct arena *a, enum sig_scheme *scheme,
                  Appeal__PeerMessage **msg, Appeal__PeerBody **body, struct errbuf *e) {
    Appeal__PeerMessage *m = (Appeal__PeerMessage *)pb_unpack(
        &appeal__peer_message__descriptor, data, len, a, ROGUE_MESSAGE_REPEATED_MAX, e);
    if (m == NULL) {
        return APL_EINVAL;
    }
    if (m->sender.len != KEY_PK_BYTES || m->sig.len != SIG_BYTES) {
        return err_set(e, APL_EAUTH, "a peer message without sender or signature");
    }
    if (scheme != NULL) {
        if (sig_ok(SIG_CONTEXT_HASH, m)) {
            *scheme = SIG_CONTEXT_HASH;
        } else if (sig_ok(SIG_RAW_BODY, m)) {
            *scheme = SIG_RAW_BODY;
        } else {
            return err_set(e, APL_ESIG, "a peer message whose signature verifies in no scheme");
        }
    }
    Appeal__PeerBody *b = (Appeal__PeerBody *)pb_unpack(
        &appeal__peer_body__descriptor, m->body.data, m->body.len, a, PULL_RECORDS_MAX, e);
    if (b == NULL) {
        return APL_EINVAL;
    }
    *msg = m;
    *body = b;
    return 0;
}

/* ---- closing ---- */

struct closing {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int exit_code; /* what the program returns, closed or not */
};

static void *close_watchdog(void *arg) {
    struct closing *c = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)(ROGUE_CLOSE_TIMEOUT_MS % 1000) * 1000000L;
    until.tv_sec += ROGUE_CLOSE_TIMEOUT_MS / 1000 + ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->done && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    }
    bool done = c->done;
    pthread_mutex_unlock(&c->mu);
    if (!done) {
        fprintf(stderr,
                "rogue: nng_close did not return within %d ms (the close deadlock of "
                "nng before 1.8, nanomsg/nng#1813); exiting without it\n",
                ROGUE_CLOSE_TIMEOUT_MS);
        fflush(stdout);
        _exit(c->exit_code); /* the work is done and reported: only nng's teardown hangs */
    }
    return NULL;
}

/* Closes `n` sockets, after all work on them stopped (one thread uses
 * them, and it is this one). nng 1.5 can deadlock in nng_close when a pipe
 * is torn down with a task prepared but not started (nanomsg/nng#1813,
 * fixed in 1.8): a watchdog bounds the wait, then exits with `exit_code`. */
static void close_bounded(nng_socket *socks, size_t n, int exit_code) {
    struct closing c = {.done = false, .exit_code = exit_code};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_t w;
    bool watched = pthread_create(&w, NULL, close_watchdog, &c) == 0;
    for (size_t i = 0; i < n; i++) {
        nng_close(socks[i]);
    }
    pthread_mutex_lock(&c.mu);
    c.done = true;
    pthread_cond_signal(&c.cv);
    pthread_mutex_unlock(&c.mu);
    if (watched) {
        pthread_join(w, NULL);
    }
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* ---- copying the source's log ---- */

static struct chain *copied_find(struct rogue *g, const uint8_t *origin) {
    for (uint32_t i = 0; i < g->n_copied; i++) {
        if (memcmp(g->copied[i].origin, origin, KEY_PK_BYTES) == 0) {
            return &g->copied[i];
        }
    }
    return NULL;
}

/* The copied chain of `origin`, started empty on first sight. */
static struct chain *copied_of(struct rogue *g, const uint8_t *origin) {
    struct chain *found = copied_find(g, origin);
    if (found != NULL) {
        return found;
    }
    if (g->n_copied == CLUSTER_NODES_MAX) {
        return NULL;
    }
    struct chain *c = &g->copied[g->n_copied++];
    memset(c, 0, sizeof *c);
    memcpy(c->origin, origin, KEY_PK_BYTES);
    c->first_seq = 1;
    return c;
}

/* A pull request naming what the rogue holds of the source's log. */
static int pull_request(struct rogue *g, struct arena *a, nng_msg **out) {
    Appeal__PullRequest q = APPEAL__PULL_REQUEST__INIT;
    q.marks = arena_new(a, (g->n_copied + 1) * sizeof *q.marks);
    if (q.marks == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i < g->n_copied; i++) {
        const struct chain *c = &g->copied[i];
        if (c->n == 0) {
            continue;
        }
        Appeal__Mark *m = chain_mark(c, a);
        if (m == NULL) {
            return APL_ENOMEM;
        }
        q.marks[q.n_marks++] = m;
    }
    q.records_max = PULL_RECORDS_MAX;
    q.bytes_max = PULL_BYTES_MAX;
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULL;
    body.pull = &q;
    return seal(g, &body, defects_of(g, false), out);
}

/* One signed pull over `s`; the answer decoded into `a`. */
static int pull_call(struct rogue *g, nng_socket s, struct arena *a, Appeal__PeerMessage **m,
                     Appeal__PullResponse **resp, struct errbuf *e) {
    nng_msg *out = NULL, *in = NULL;
    int rc = pull_request(g, a, &out);
    if (rc != 0) {
        return err_set(e, rc, "cannot make a pull request");
    }
    int rv = nng_sendmsg(s, out, 0);
    if (rv != 0) {
        nng_msg_free(out);
        return err_set(e, APL_ENET, "cannot send the pull: %s", nng_strerror(rv));
    }
    if ((rv = nng_recvmsg(s, &in, 0)) != 0) {
        return err_set(e, APL_ETIMEDOUT, "no answer to the pull: %s", nng_strerror(rv));
    }
    Appeal__PeerBody *b = NULL;
    rc = unseal(nng_msg_body(in), nng_msg_len(in), a, &g->scheme, m, &b, e);
    nng_msg_free(in); /* decoded copies live in the arena */
    if (rc == 0 && (b->msg_case != APPEAL__PEER_BODY__MSG_PULLED || b->pulled == NULL)) {
        rc = err_set(e, APL_EINVAL, "the answer to a pull is not a PullResponse");
    }
    if (rc == 0) {
        *resp = b->pulled;
    }
    return rc;
}

static int req_open(nng_socket *s, const char *url, struct errbuf *e) {
    int rv = nng_req0_open(s);
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot open a REQ socket: %s", nng_strerror(rv));
    }
    rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, REPL_RECV_BYTES_MAX);
    if (rv == 0) {
        rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, ROGUE_TIMEOUT_MS);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, ROGUE_TIMEOUT_MS);
    }
    if (rv == 0) {
        rv = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK);
    }
    if (rv != 0) {
        nng_close(*s);
        return err_set(e, APL_ENET, "cannot dial %s: %s", url, nng_strerror(rv));
    }
    return 0;
}

static int copy_runs(struct rogue *g, const Appeal__PullResponse *resp) {
    for (size_t i = 0; i < resp->n_runs; i++) {
        const Appeal__Run *run = resp->runs[i];
        if (run->origin.len != KEY_PK_BYTES || run->n_records == 0) {
            continue;
        }
        struct chain *c = copied_find(g, run->origin.data);
        if (c == NULL && run->first_seq == 1) {
            c = copied_of(g, run->origin.data);
        }
        if (c == NULL || run->first_seq != chain_head(c) + 1) {
            continue; /* not what we asked for: keep what is contiguous */
        }
        for (size_t k = 0; k < run->n_records; k++) {
            int rc = chain_append(&g->keep, c, &run->records[k]);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* Copies the source's whole log with pulls, as a peer would. */
static int source_copy(struct rogue *g, const char *url, struct errbuf *e) {
    int rc = req_open(&g->src, url, e);
    if (rc != 0) {
        return rc;
    }
    g->src_open = true; /* closed with the others at exit: see close_bounded() */
    nng_socket s = g->src;
    bool more = true;
    for (int i = 0; rc == 0 && more && i < ROGUE_SOURCE_PULLS_MAX; i++) {
        arena_reset(&g->work);
        Appeal__PeerMessage *m = NULL;
        Appeal__PullResponse *resp = NULL;
        enum sig_scheme used = g->scheme;
        rc = pull_call(g, s, &g->work, &m, &resp, e);
        if (rc == 0 && resp->error[0] != '\0' && g->scheme != used && i == 0) {
            continue; /* refused in the other dialect: once more in the source's */
        }
        if (rc == 0 && resp->error[0] != '\0') {
            rc = err_set(e, APL_EAUTH, "the source refused: %s", resp->error);
        }
        if (rc == 0) {
            memcpy(g->source_pk, m->sender.data, KEY_PK_BYTES);
            rc = copy_runs(g, resp);
            more = resp->more;
        }
    }
    arena_reset(&g->work);
    return rc;
}

/* ---- the rogue's own chains ---- */

/* The jurisdiction named by the genesis of the source's own chain. */
static void source_juris(struct rogue *g) {
    snprintf(g->other_juris, sizeof g->other_juris, "%s", "KZ-99");
    for (uint32_t i = 0; i < g->n_copied; i++) {
        const struct chain *c = &g->copied[i];
        struct record r;
        if (memcmp(c->origin, g->source_pk, KEY_PK_BYTES) != 0 || c->n == 0 ||
            rec_decode(c->recs[0].data, c->recs[0].len, &g->work, &r, NULL) != 0 ||
            r.body->event_case != APPEAL__BODY__EVENT_GENESIS) {
            continue;
        }
        if (strcmp(r.body->genesis->jurisdiction, g->juris) != 0) {
            snprintf(g->other_juris, sizeof g->other_juris, "%s", r.body->genesis->jurisdiction);
        }
    }
    arena_reset(&g->work);
}

static int own_marks(struct rogue *g) {
    g->own_marks = arena_new(&g->keep, (g->n_copied + 1) * sizeof *g->own_marks);
    if (g->own_marks == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; i <= g->n_copied; i++) {
        const struct chain *c = i < g->n_copied ? &g->copied[i] : &g->bait;
        if (c->n == 0) {
            continue;
        }
        Appeal__Mark *m = chain_mark(c, &g->keep);
        if (m == NULL) {
            return APL_ENOMEM;
        }
        if (g->mode == MODE_HUGE_HEADS) {
            m->seq = ROGUE_HUGE_SEQ; /* the hash stays its true head's */
        }
        g->own_marks[g->n_own_marks++] = m;
    }
    return 0;
}

/* Bait, and what the mode needs of fresh chains. */
static int own_chains(struct rogue *g) {
    static const uint8_t zero[HASH_BYTES];
    struct rec_spec s = {g->sk, g->pk, 1, zero, g->juris, g->box_pk};
    int rc = chain_make(&g->keep, &s, ROGUE_CHAIN_RECORDS, &g->bait);
    if (rc == 0 && g->mode == MODE_WRONG_GENESIS) {
        s.genesis_juris = g->other_juris;
        rc = chain_make(&g->keep, &s, ROGUE_CHAIN_RECORDS, &g->wrong_genesis);
        s.genesis_juris = g->juris;
    }
    if (rc == 0 && g->mode == MODE_TOO_MANY) {
        rc = chain_make(&g->keep, &s, (size_t)PULL_RECORDS_MAX + 1, &g->too_many);
    }
    if (rc == 0 && g->mode == MODE_UNKNOWN_ORIGIN) {
        uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES], box_sk[BOX_SK_BYTES], box_pk[BOX_PK_BYTES];
        crypto_sign_keypair(pk, sk);
        crypto_box_keypair(box_pk, box_sk);
        struct rec_spec f = {sk, pk, 1, zero, g->juris, box_pk};
        rc = chain_make(&g->keep, &f, ROGUE_CHAIN_RECORDS, &g->fresh);
        sodium_memzero(sk, sizeof sk);
        sodium_memzero(box_sk, sizeof box_sk);
    }
    return rc == 0 ? own_marks(g) : rc;
}

/* ---- plans: what to send one requester ---- */

static const struct rmark *mark_for(const struct requester *r, const uint8_t *origin) {
    for (uint32_t i = 0; r != NULL && i < r->n_marks; i++) {
        if (memcmp(r->marks[i].origin, origin, KEY_PK_BYTES) == 0) {
            return &r->marks[i];
        }
    }
    return NULL;
}

/* Adds a run of recs[0..n) (the array copied, so that it can be spoilt). */
static Appeal__Run *plan_add(struct arena *a, struct plan *p, const uint8_t *origin,
                             uint64_t first_seq, const ProtobufCBinaryData *recs, size_t n) {
    if (n == 0 || p->n_runs == p->cap_runs) {
        return NULL;
    }
    Appeal__Run *run = arena_new(a, sizeof *run);
    ProtobufCBinaryData *copy = arena_new(a, n * sizeof *copy);
    if (run == NULL || copy == NULL) {
        return NULL;
    }
    appeal__run__init(run);
    run->origin.data = (uint8_t *)origin;
    run->origin.len = KEY_PK_BYTES;
    run->first_seq = first_seq;
    memcpy(copy, recs, n * sizeof *copy);
    run->records = copy;
    run->n_records = n;
    p->runs[p->n_runs++] = run;
    return run;
}

/* The part of `c` above the requester's mark for its origin (all of it
 * with `from_one`). */
static Appeal__Run *plan_chain(struct arena *a, struct plan *p, const struct chain *c,
                               const struct requester *r, bool from_one) {
    const struct rmark *m = from_one ? NULL : mark_for(r, c->origin);
    uint64_t held = m ? m->seq : 0;
    if (held >= chain_head(c) || held + 1 < c->first_seq) {
        return NULL;
    }
    size_t skip = (size_t)(held + 1 - c->first_seq);
    return plan_add(a, p, c->origin, held + 1, c->recs + skip, c->n - skip);
}

static void plan_real(struct rogue *g, struct plan *p, const struct requester *r, bool from_one) {
    for (uint32_t i = 0; i < g->n_copied; i++) {
        Appeal__Run *run = plan_chain(&g->work, p, &g->copied[i], r, from_one);
        if (run != NULL && !from_one) {
            p->real_above += run->n_records;
        }
    }
}

static bool plan_has(const struct plan *p, const uint8_t *origin) {
    for (size_t i = 0; i < p->n_runs; i++) {
        if (memcmp(p->runs[i]->origin.data, origin, KEY_PK_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

/* Continuations of every chain the requester holds, signed by the rogue. */
static int plan_forgeries(struct rogue *g, struct plan *p, const struct requester *r) {
    for (uint32_t i = 0; r != NULL && i < r->n_marks; i++) {
        const struct rmark *m = &r->marks[i];
        if (m->seq == 0 || memcmp(m->origin, g->pk, KEY_PK_BYTES) == 0 || plan_has(p, m->origin)) {
            continue;
        }
        struct rec_spec s = {g->sk, m->origin, m->seq + 1, m->hash, NULL, NULL};
        struct chain c;
        int rc = chain_make(&g->work, &s, ROGUE_CHAIN_RECORDS, &c);
        if (rc != 0) {
            return rc;
        }
        uint8_t *origin = arena_new(&g->work, KEY_PK_BYTES);
        if (origin == NULL) {
            return APL_ENOMEM;
        }
        memcpy(origin, m->origin, KEY_PK_BYTES);
        plan_add(&g->work, p, origin, c.first_seq, c.recs, c.n);
    }
    return 0;
}

/* Spoils every run as the mode says; drops runs it cannot spoil. */
static int plan_spoil(struct rogue *g, struct plan *p) {
    size_t kept = 0;
    for (size_t i = 0; i < p->n_runs; i++) {
        Appeal__Run *run = p->runs[i];
        ProtobufCBinaryData *recs = run->records, t;
        bool keep = true;
        int rc = 0;
        if (g->mode == MODE_FORGED) {
            rc = record_alter(&g->work, &recs[run->n_records - 1], &recs[run->n_records - 1]);
        } else if (g->mode == MODE_BROKEN_LINK && (keep = run->n_records >= 2)) {
            t = recs[0];
            recs[0] = recs[1];
            recs[1] = t;
        } else if (g->mode == MODE_TAMPERED && (keep = run->n_records >= 2)) {
            rc = record_alter(&g->work, &recs[0], &recs[0]);
        } else if (g->mode == MODE_GAP && run->n_records >= 2) {
            run->records++;
            run->n_records--;
            run->first_seq++;
        } else if (g->mode == MODE_GAP) {
            run->first_seq++;
        }
        if (rc != 0) {
            return rc;
        }
        if (keep) {
            p->runs[kept++] = run;
        }
    }
    p->n_runs = kept;
    return 0;
}

/* Conflicts naming each requester's head record, altered or forged. */
static int plan_fake_forks(struct rogue *g, struct plan *p, const struct requester *r) {
    p->conflicts = arena_new(&g->work, (r ? r->n_marks : 0) * sizeof *p->conflicts + 1);
    if (p->conflicts == NULL) {
        return APL_ENOMEM;
    }
    for (uint32_t i = 0; r != NULL && i < r->n_marks; i++) {
        const struct rmark *m = &r->marks[i];
        const struct chain *c = copied_find(g, m->origin);
        ProtobufCBinaryData rec;
        int rc;
        if (m->seq == 0) {
            continue;
        }
        if (c != NULL && m->seq >= c->first_seq && m->seq <= chain_head(c)) {
            rc = record_alter(&g->work, &c->recs[m->seq - c->first_seq], &rec);
        } else {
            static const uint8_t zero[HASH_BYTES];
            struct rec_spec s = {g->sk, m->origin, m->seq, zero, NULL, NULL};
            rc = record_make(&g->work, &s, &rec);
        }
        Appeal__Run *run = rc == 0 ? arena_new(&g->work, sizeof *run) : NULL;
        ProtobufCBinaryData *one = run ? arena_new(&g->work, sizeof *one) : NULL;
        if (one == NULL) {
            return rc != 0 ? rc : APL_ENOMEM;
        }
        appeal__run__init(run);
        run->origin.data = arena_new(&g->work, KEY_PK_BYTES);
        if (run->origin.data == NULL) {
            return APL_ENOMEM;
        }
        memcpy(run->origin.data, m->origin, KEY_PK_BYTES);
        run->origin.len = KEY_PK_BYTES;
        run->first_seq = m->seq;
        *one = rec;
        run->records = one;
        run->n_records = 1;
        p->conflicts[p->n_conflicts++] = run;
    }
    return 0;
}

/* Mixed for a requester that holds nothing (no forgeries): the last good
 * run again, its last record altered, so that one bad run always follows. */
static int plan_mixed_fallback(struct rogue *g, struct plan *p) {
    if (p->n_runs != p->bad_from || p->n_runs == 0) {
        return 0;
    }
    const Appeal__Run *good = p->runs[p->n_runs - 1];
    Appeal__Run *bad =
        plan_add(&g->work, p, good->origin.data, good->first_seq, good->records, good->n_records);
    if (bad == NULL) {
        return APL_ENOMEM;
    }
    return record_alter(&g->work, &bad->records[bad->n_records - 1],
                        &bad->records[bad->n_records - 1]);
}

/* The attack for requester r (NULL: one that holds nothing). */
static int plan_build(struct rogue *g, const struct requester *r, struct plan *p) {
    memset(p, 0, sizeof *p);
    p->cap_runs = 2 * (size_t)g->n_copied + (r ? r->n_marks : 0) + 4;
    p->runs = arena_new(&g->work, p->cap_runs * sizeof *p->runs);
    if (p->runs == NULL) {
        return APL_ENOMEM;
    }
    int rc = 0;
    switch (g->mode) {
    case MODE_FORGED:
        plan_real(g, p, r, false);
        plan_chain(&g->work, p, &g->bait, r, false);
        rc = plan_spoil(g, p);
        return rc != 0 ? rc : plan_forgeries(g, p, r);
    case MODE_BROKEN_LINK:
    case MODE_TAMPERED:
    case MODE_GAP:
        plan_real(g, p, r, false);
        plan_chain(&g->work, p, &g->bait, r, false);
        rc = plan_forgeries(g, p, r);
        return rc != 0 ? rc : plan_spoil(g, p);
    case MODE_REPLAY:
        plan_real(g, p, r, true);
        return 0;
    case MODE_UNKNOWN_ORIGIN:
        plan_chain(&g->work, p, &g->fresh, NULL, true);
        return 0;
    case MODE_WRONG_GENESIS:
        plan_chain(&g->work, p, &g->wrong_genesis, r, false);
        return 0;
    case MODE_TOO_MANY:
        plan_chain(&g->work, p, &g->too_many, NULL, true);
        return 0;
    case MODE_OVERSIZED:
        plan_chain(&g->work, p, &g->bait, NULL, true);
        return 0;
    case MODE_MIXED:
        plan_real(g, p, r, false);
        plan_chain(&g->work, p, &g->bait, r, false);
        p->bad_from = p->n_runs;
        rc = plan_forgeries(g, p, r);
        return rc != 0 ? rc : plan_mixed_fallback(g, p);
    case MODE_FAKE_FORK:
        return plan_fake_forks(g, p, r);
    case MODE_HUGE_HEADS: /* the lie is in the marks */
        plan_real(g, p, r, false);
        plan_chain(&g->work, p, &g->bait, r, false);
        return 0;
    default: /* envelope defects: valid content, and garbage */
        plan_real(g, p, r, false);
        plan_chain(&g->work, p, &g->bait, r, false);
        return 0;
    }
}

/* ---- serving ---- */

static struct requester *requester_of(struct rogue *g, const Appeal__PeerMessage *m,
                                      const Appeal__PullRequest *q) {
    struct requester *r = NULL;
    for (uint32_t i = 0; i < g->n_reqs && r == NULL; i++) {
        if (memcmp(g->reqs[i].pk, m->sender.data, KEY_PK_BYTES) == 0) {
            r = &g->reqs[i];
        }
    }
    if (r == NULL && g->n_reqs < ROGUE_REQUESTERS_MAX) {
        r = &g->reqs[g->n_reqs++];
        memset(r, 0, sizeof *r);
        memcpy(r->pk, m->sender.data, KEY_PK_BYTES);
    }
    if (r == NULL) {
        return NULL;
    }
    r->n_marks = 0;
    for (size_t i = 0; i < q->n_marks && r->n_marks < CLUSTER_NODES_MAX; i++) {
        const Appeal__Mark *x = q->marks[i];
        if (x->origin.len != KEY_PK_BYTES || x->head_hash.len != (x->seq ? HASH_BYTES : 0)) {
            continue;
        }
        struct rmark *o = &r->marks[r->n_marks++];
        memcpy(o->origin, x->origin.data, KEY_PK_BYTES);
        o->seq = x->seq;
        if (x->seq > 0) {
            memcpy(o->hash, x->head_hash.data, HASH_BYTES);
        }
    }
    return r;
}

static void plan_rotate(struct plan *p, uint64_t k) {
    if (p->n_runs < 2 || p->bad_from > 0) {
        return; /* mixed keeps its good runs first */
    }
    for (uint64_t i = 0; i < k % p->n_runs; i++) {
        Appeal__Run *first = p->runs[0];
        memmove(p->runs, p->runs + 1, (p->n_runs - 1) * sizeof *p->runs);
        p->runs[p->n_runs - 1] = first;
    }
}

static uint64_t plan_records(const struct plan *p) {
    uint64_t n = 0;
    for (size_t i = 0; i < p->n_runs; i++) {
        n += p->runs[i]->n_records;
    }
    return n;
}

/* The answer to a pull: an attack, or (honest) valid and empty. */
static int answer(struct rogue *g, struct requester *r, bool honest, nng_msg **out,
                  struct plan *p) {
    memset(p, 0, sizeof *p);
    if (!honest && g->mode == MODE_GARBAGE) {
        return garbage(out);
    }
    int rc = honest ? 0 : plan_build(g, r, p);
    if (rc != 0) {
        return rc;
    }
    if (!honest) {
        plan_rotate(p, r ? r->answers : 0);
    }
    Appeal__PullResponse resp = APPEAL__PULL_RESPONSE__INIT;
    resp.runs = p->runs;
    resp.n_runs = p->n_runs;
    resp.conflicts = p->conflicts;
    resp.n_conflicts = p->n_conflicts;
    resp.marks = g->own_marks;
    resp.n_marks = g->n_own_marks;
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_PULLED;
    body.pulled = &resp;
    return seal(g, &body, defects_of(g, !honest), out);
}

static void serve_one(struct rogue *g, nng_msg *in) {
    arena_reset(&g->work);
    Appeal__PeerMessage *m = NULL;
    Appeal__PeerBody *b = NULL;
    struct requester *r = NULL;
    if (unseal(nng_msg_body(in), nng_msg_len(in), &g->work, NULL, &m, &b, NULL) == 0 &&
        b->msg_case == APPEAL__PEER_BODY__MSG_PULL && b->pull != NULL) {
        r = requester_of(g, m, b->pull);
    }
    nng_msg_free(in);
    uint64_t k = r ? ++r->answers : ++g->answers;
    bool honest = g->honest_every > 0 && k % g->honest_every == 0;
    nng_msg *out = NULL;
    struct plan p;
    int rc = answer(g, r, honest, &out, &p);
    if (rc != 0) {
        fprintf(stderr, "rogue: cannot make an answer: %s\n", apl_strerror(rc));
        return;
    }
    char who[ROGUE_KEY_HEX + 1] = "unknown";
    if (r != NULL) {
        hex_short(r->pk, who);
    }
    printf("answer to=%s kind=%s runs=%zu records=%llu real_above=%llu conflicts=%zu "
           "bytes=%zu\n",
           who, honest ? "honest" : "attack", p.n_runs, (unsigned long long)plan_records(&p),
           (unsigned long long)p.real_above, p.n_conflicts, nng_msg_len(out));
    g->honest += honest;
    g->attacks += !honest;
    int rv = nng_sendmsg(g->rep, out, 0);
    if (rv != 0) {
        nng_msg_free(out);
        fprintf(stderr, "rogue: cannot send an answer: %s\n", nng_strerror(rv));
    }
}

/* ---- publishing ---- */

static void publish(struct rogue *g, nng_msg *m, uint64_t *count) {
    if (nng_sendmsg(g->pub, m, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(m);
        return;
    }
    (*count)++;
}

static void publish_heads(struct rogue *g) {
    Appeal__Heads h = APPEAL__HEADS__INIT;
    h.marks = g->own_marks;
    h.n_marks = g->n_own_marks;
    Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
    body.msg_case = APPEAL__PEER_BODY__MSG_HEADS;
    body.heads = &h;
    nng_msg *m;
    if (seal(g, &body, defects_of(g, false), &m) == 0) {
        publish(g, m, &g->heads);
    }
}

/* The spoilt runs of r's plan, one PushBatch each. */
static void publish_plan(struct rogue *g, const struct requester *r) {
    arena_reset(&g->work);
    struct plan p;
    if (plan_build(g, r, &p) != 0) {
        return;
    }
    for (size_t i = p.bad_from; i < p.n_runs; i++) {
        Appeal__PushBatch push = APPEAL__PUSH_BATCH__INIT;
        push.run = p.runs[i];
        Appeal__PeerBody body = APPEAL__PEER_BODY__INIT;
        body.msg_case = APPEAL__PEER_BODY__MSG_PUSH;
        body.push = &push;
        nng_msg *m;
        if (seal(g, &body, defects_of(g, true), &m) == 0) {
            publish(g, m, &g->pushes);
        }
    }
}

static void publish_round(struct rogue *g, bool big_due) {
    publish_heads(g);
    bool big = g->mode == MODE_TOO_MANY || g->mode == MODE_OVERSIZED;
    if (g->mode == MODE_FAKE_FORK || (big && !big_due)) {
        return; /* pushes carry no conflicts; big ones go out less often */
    }
    if (g->mode == MODE_GARBAGE) {
        nng_msg *m;
        if (garbage(&m) == 0) {
            publish(g, m, &g->pushes);
        }
        return;
    }
    if (g->n_reqs == 0 || big) {
        publish_plan(g, NULL);
    }
    for (uint32_t i = 0; i < g->n_reqs && !big; i++) {
        publish_plan(g, &g->reqs[i]);
    }
}

/* ---- main loop ---- */

/* SIGTERM and SIGINT are blocked in every thread: a stop request stays
 * pending, and the loop polls for it. */
static bool stop_pending(void) {
    sigset_t pending;
    if (sigpending(&pending) != 0) {
        return false;
    }
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

static int listen_all(struct rogue *g, const char *peer_url, const char *pub_url,
                      struct errbuf *e) {
    int rv = nng_rep0_open(&g->rep);
    g->rep_open = rv == 0;
    if (rv == 0) {
        rv = nng_socket_set_size(g->rep, NNG_OPT_RECVMAXSZ, ROGUE_REQUEST_BYTES_MAX);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(g->rep, NNG_OPT_RECVTIMEO, ROGUE_POLL_MS);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(g->rep, NNG_OPT_SENDTIMEO, ROGUE_SEND_TIMEOUT_MS);
    }
    if (rv == 0) {
        rv = nng_listen(g->rep, peer_url, &g->rep_l, 0);
        g->rep_l_open = rv == 0;
    }
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot serve pulls on %s: %s", peer_url, nng_strerror(rv));
    }
    rv = nng_pub0_open(&g->pub);
    g->pub_open = rv == 0;
    if (rv == 0) {
        rv = nng_listen(g->pub, pub_url, &g->pub_l, 0);
        g->pub_l_open = rv == 0;
    }
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot publish on %s: %s", pub_url, nng_strerror(rv));
    }
    return 0;
}

/* One thread does everything, so no socket is closed under a blocked call. */
static void serve(struct rogue *g, long seconds) {
    uint64_t start = util_mono_ns(), next = start, next_big = start;
    uint64_t until = seconds > 0 ? start + (uint64_t)seconds * 1000000000u : UINT64_MAX;
    while (!stop_pending() && util_mono_ns() < until) {
        nng_msg *in = NULL;
        int rv = nng_recvmsg(g->rep, &in, 0);
        if (rv == 0) {
            serve_one(g, in);
        } else if (rv != NNG_ETIMEDOUT) {
            fprintf(stderr, "rogue: receiving a pull failed: %s\n", nng_strerror(rv));
        }
        uint64_t now = util_mono_ns();
        if (now >= next) {
            bool big_due = now >= next_big;
            publish_round(g, big_due);
            next = now + (uint64_t)ROGUE_PUBLISH_MS * 1000000u;
            if (big_due) {
                next_big = now + (uint64_t)ROGUE_PUBLISH_BIG_MS * 1000000u;
            }
        }
    }
}

/* Own jurisdiction (DIR/node.conf) and box key (DIR/box.key), next to the
 * signing key. */
static int load_identity(struct rogue *g, const char *key_path, struct errbuf *e) {
    int rc = keys_load_signing(key_path, g->pk, g->sk, e);
    if (rc != 0) {
        return rc;
    }
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", key_path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    struct node_keys k;
    if ((rc = keys_load(dir, &k, e)) != 0) {
        return rc;
    }
    memcpy(g->box_pk, k.box_pk, BOX_PK_BYTES);
    keys_wipe(&k);
    snprintf(path, sizeof path, "%s/node.conf", dir);
    char *text = NULL;
    if ((rc = util_read_file(path, 4096, &text, NULL)) != 0) {
        return err_set(e, rc, "cannot read %s", path);
    }
    const char *at = strstr(text, "jurisdiction =");
    if (at == NULL || sscanf(at, "jurisdiction = %15s", g->juris) != 1 || !juris_valid(g->juris)) {
        rc = err_set(e, APL_EINVAL, "%s names no jurisdiction", path);
    }
    free(text);
    return rc;
}

struct opts {
    const char *key, *listen_peer, *listen_pub, *source, *mode, *pull;
    long seconds, honest_every;
};

static const char usage_text[] =
    "usage: rogue --key DIR/sign.key --listen-peer URL --listen-pub URL --source URL\n"
    "             --mode MODE [--seconds N] [--honest-every N]\n"
    "       rogue --key KEY --pull URL\n"
    "MODE: forged broken-link tampered gap replay unknown-origin wrong-genesis too-many\n"
    "      oversized garbage bad-sig impersonate stale mixed fake-fork\n";

static int parse(int argc, char **argv, struct opts *o) {
    static const struct option longs[] = {{"key", required_argument, NULL, 'k'},
                                          {"listen-peer", required_argument, NULL, 'l'},
                                          {"listen-pub", required_argument, NULL, 'p'},
                                          {"source", required_argument, NULL, 's'},
                                          {"mode", required_argument, NULL, 'm'},
                                          {"seconds", required_argument, NULL, 'S'},
                                          {"honest-every", required_argument, NULL, 'H'},
                                          {"pull", required_argument, NULL, 'P'},
                                          {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        const char **s = ch == 'k'   ? &o->key
                         : ch == 'l' ? &o->listen_peer
                         : ch == 'p' ? &o->listen_pub
                         : ch == 's' ? &o->source
                         : ch == 'm' ? &o->mode
                         : ch == 'P' ? &o->pull
                                     : NULL;
        if (s != NULL) {
            *s = optarg;
        } else if (ch == 'S' && util_parse_long(optarg, 1, ROGUE_SECONDS_MAX, &o->seconds) == 0) {
            continue;
        } else if (ch == 'H' &&
                   util_parse_long(optarg, 0, ROGUE_HONEST_EVERY_MAX, &o->honest_every) == 0) {
            continue;
        } else {
            return -1;
        }
    }
    if (optind != argc || o->key == NULL) {
        return -1;
    }
    if (o->pull != NULL) {
        return 0;
    }
    return o->listen_peer && o->listen_pub && o->source && o->mode ? 0 : -1;
}

/* Client mode: one pull, print what came back. */
static int client(struct rogue *g, const char *url) {
    struct errbuf e;
    err_clear(&e);
    nng_socket s;
    if (req_open(&s, url, &e) != 0) {
        fprintf(stderr, "rogue: %s\n", e.msg);
        return 1;
    }
    Appeal__PeerMessage *m = NULL;
    Appeal__PullResponse *resp = NULL;
    int rc = pull_call(g, s, &g->work, &m, &resp, &e);
    if (rc == 0) {
        char who[ROGUE_KEY_HEX + 1];
        hex_short(m->sender.data, who);
        printf("error: %s\nfrom: %s\nruns: %zu\nmarks: %zu\nscheme: %s\n", resp->error, who,
               resp->n_runs, resp->n_marks,
               g->scheme == SIG_RAW_BODY ? "raw-body" : "context-hash");
    } else {
        fprintf(stderr, "rogue: %s\n", e.msg);
    }
    int code = rc == 0 ? 0 : (rc == APL_ETIMEDOUT ? 3 : 1);
    close_bounded(&s, 1, code);
    return code;
}

static int server_start(struct rogue *g, const struct opts *o, struct errbuf *e) {
    int rc = load_identity(g, o->key, e);
    if (rc == 0) {
        rc = source_copy(g, o->source, e);
    }
    if (rc == 0) {
        source_juris(g);
        rc = own_chains(g);
        if (rc != 0) {
            err_set(e, rc, "cannot make the rogue's chains: %s", apl_strerror(rc));
        }
    }
    if (rc == 0) {
        rc = listen_all(g, o->listen_peer, o->listen_pub, e);
    }
    return rc;
}

static int mode_parse(const char *s, enum mode *out) {
    for (int i = 0; i < MODE_COUNT; i++) {
        if (strcmp(s, mode_names[i]) == 0) {
            *out = (enum mode)i;
            return 0;
        }
    }
    return APL_EINVAL;
}

static int server_main(struct rogue *g, const struct opts *o) {
    if (mode_parse(o->mode, &g->mode) != 0) {
        fprintf(stderr, "rogue: unknown mode %s\n%s", o->mode, usage_text);
        return 2;
    }
    g->honest_every = (uint32_t)o->honest_every;
    struct errbuf e;
    err_clear(&e);
    if (server_start(g, o, &e) != 0) {
        fprintf(stderr, "rogue: %s\n", e.msg);
        return 1;
    }
    uint64_t records = 0;
    for (uint32_t i = 0; i < g->n_copied; i++) {
        records += g->copied[i].n;
    }
    printf("ready mode=%s juris=%s origins=%u records=%llu other=%s scheme=%s\n",
           mode_names[g->mode], g->juris, g->n_copied, (unsigned long long)records, g->other_juris,
           g->scheme == SIG_RAW_BODY ? "raw-body" : "context-hash");
    serve(g, o->seconds);
    printf("done mode=%s answers=%llu attacks=%llu honest=%llu pushes=%llu heads=%llu\n",
           mode_names[g->mode], (unsigned long long)(g->attacks + g->honest),
           (unsigned long long)g->attacks, (unsigned long long)g->honest,
           (unsigned long long)g->pushes, (unsigned long long)g->heads);
    return 0;
}

/* After the loop: nothing else uses the sockets any more. */
static void rogue_fini(struct rogue *g, int exit_code) {
    /* Peers first: no new pipes, and the current ones wind down before the
     * sockets close (which makes nng's close deadlock rarer). */
    if (g->rep_l_open) {
        nng_listener_close(g->rep_l);
    }
    if (g->pub_l_open) {
        nng_listener_close(g->pub_l);
    }
    if (g->rep_l_open || g->pub_l_open) {
        struct timespec drain = {0, (long)ROGUE_DRAIN_MS * 1000000L};
        nanosleep(&drain, NULL);
    }
    nng_socket socks[3];
    size_t n = 0;
    if (g->rep_open) {
        socks[n++] = g->rep;
    }
    if (g->pub_open) {
        socks[n++] = g->pub;
    }
    if (g->src_open) {
        socks[n++] = g->src;
    }
    close_bounded(socks, n, exit_code);
    for (uint32_t i = 0; g->copied != NULL && i < g->n_copied; i++) {
        free(g->copied[i].recs);
    }
    free(g->copied);
    free(g->reqs);
    arena_fini(&g->keep);
    arena_fini(&g->work);
    sodium_memzero(g->sk, sizeof g->sk);
    free(g);
}

int main(int argc, char **argv) {
    struct opts o;
    if (parse(argc, argv, &o) != 0) {
        fputs(usage_text, stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Blocked before nng starts its threads, which inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (sodium_init() < 0 || pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        fprintf(stderr, "rogue: cannot initialise\n");
        return 1;
    }
    struct rogue *g = calloc(1, sizeof *g);
    if (g == NULL) {
        fprintf(stderr, "rogue: out of memory\n");
        return 1;
    }
    if (arena_init(&g->keep, ROGUE_KEEP_ARENA_BYTES) != 0 ||
        arena_init(&g->work, ROGUE_WORK_ARENA_BYTES) != 0 ||
        (g->copied = calloc(CLUSTER_NODES_MAX, sizeof *g->copied)) == NULL ||
        (g->reqs = calloc(ROGUE_REQUESTERS_MAX, sizeof *g->reqs)) == NULL) {
        fprintf(stderr, "rogue: out of memory\n");
        rogue_fini(g, 1);
        return 1;
    }
    int rc;
    if (o.pull != NULL) {
        struct errbuf e;
        err_clear(&e);
        rc = keys_load_signing(o.key, g->pk, g->sk, &e);
        if (rc != 0) {
            fprintf(stderr, "rogue: %s\n", e.msg);
        }
        rc = rc == 0 ? client(g, o.pull) : 1;
    } else {
        rc = server_main(g, &o);
    }
    rogue_fini(g, rc);
    return rc;
}
