/*
 * appeal-bench: N concurrent clients, each on its own persistent
 * connection, filing appeals against one node for a fixed time.
 *
 *   appeal-bench --node URL --key FILE [--clients 32] [--seconds 10] [--warmup 1]
 *                [--auth signed|session] [--inflight 1]
 *
 * FILE is a registrar's key (a node's DIR/admin.key will do). Requests are
 * signed before the clock starts, each with its own nonce: the node's
 * replay cache refuses a request sent twice.
 *
 * With --auth session each connection opens a session first (one signed
 * session_open) and sends each request with a counter and a MAC, computed
 * as it is sent (docs/security.md "Sessions"). --inflight N keeps N
 * requests in flight on each connection (REQ request ids; a latency is
 * from a request's send to its own answer). URL may be tcp://HOST:PORT or
 * ipc://PATH (the node listening on a Unix-domain socket).
 *
 * Prints appeals/s acknowledged, p50/p99/max latency, commits/s and
 * appeals per commit (from the node's own counters), and the machine's
 * Ed25519 signing ceiling measured in the same run, as text and as one
 * JSON line (prefixed "json ") for tools/bench.
 *
 *   appeal-bench --op query --node URL --key FILE [--by region,status]
 *                [--clients 1] [--seconds 10] [--warmup 1]
 *   appeal-bench --op live  --node URL --key FILE [--by region,status]
 *                [--deadline-ms 2000] [--clients 1] [--seconds 10] [--warmup 1]
 *
 * Federated queries instead of filings: each client sends the same
 * aggregate query (grouped by --by, no filters) again and again, one in
 * flight, each request signed as appealctl signs it (FILE needs the
 * national, operator or admin role), and the time of each round trip is
 * measured. `query` asks the node's replica; `live` asks it for a live
 * fan-out to every jurisdiction (QueryRequest.live, --deadline-ms).
 * Prints queries/s, p50/p99/max, the answer's size (groups, and sources
 * by kind; for live, how many answers fell back to the replica for a
 * silent jurisdiction), as text and as one JSON line.
 *
 *   appeal-bench --http HOST:PORT --http-op file|get [--api-key KEY]
 *                [--numbers FILE] [--clients 32] [--seconds 10] [--warmup 1]
 *
 * Open311 over HTTP/1.1 (docs/open311.md): each client a thread on its own
 * keep-alive connection (plain socket, TCP_NODELAY), one request in
 * flight. `file` POSTs requests.json with a form body as a citizens'
 * portal would (KEY: a channel's api_key); `get` GETs requests/NUMBER.json,
 * the numbers taken in turn from FILE (one a line). An answer counts when
 * its status is 200. Prints answers/s, p50/p99/max, as text and as one
 * JSON line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "clock.h"
#include "keys.h"
#include "olog.h"
#include "query.h"
#include "ruleset.h"
#include "store.h"
#include "util.h"

enum {
    CLIENTS_MAX = 512,
    SAMPLES_PER_CLIENT_MAX = 1 << 20,
    POOL_MAX = 2000000,
    INFLIGHT_MAX = 64, /* requests in flight on one connection (a power of two) */
};

/* --auth session: each raw connection opens a session and sends a counter
 * and a MAC per request; --auth signed: every request signed (Ed25519).
 * --inflight N: requests in flight on each connection. */
static bool use_session;
static long inflight = 1;

static const char *key_path;      /* the official's key every request is signed with */
static const char *contacts = ""; /* --contacts: the filings' contacts (tools/bench notify) */

/* A client that signs with key_path. */
static int open_signed(struct client *c, const char *url, struct errbuf *e) {
    int rc = client_open(c, url, 10000, e);
    if (rc == 0 && (rc = client_sign_with(c, key_path, e)) != 0) {
        client_close(c);
    }
    return rc;
}

struct worker {
    pthread_t thread;
    const char *url;
    int id;
    uint64_t until_ns, measure_from_ns;
    uint64_t *lat_ns;
    size_t n_lat;
    uint64_t errors;
    char first_error[ERRBUF_MSG_BYTES];
    bool info_only;
    uint64_t pace_ns; /* raw mode with --rate: per connection, between requests */
};

static const char *const subjects[] = {
    "Recalculation of the old-age pension after moving from another region",
    "Repair of the road between the village and the district centre",
    "Place in a state kindergarten for a child of three years",
    "Heating tariff increase without notice to residents of the building",
};

/* A valid IIN for applicant `n`: a birth date, a century digit, a serial
 * and the check digit (shared/data/appeal-facts.md). */
static void make_iin(unsigned n, char out[13]) {
    for (unsigned serial = n;; serial += 7919) {
        snprintf(out, 13, "%02u%02u%02u%u%04u0", 60 + n % 40, 1 + n % 12, 1 + n % 28, 3 + n % 2,
                 serial % 10000);
        int check = iin_check_digit(out);
        if (check >= 0) {
            out[11] = (char)('0' + check);
            return;
        }
    }
}

static void *work(void *arg) {
    struct worker *w = arg;
    struct client c;
    struct errbuf e = {0};
    if (open_signed(&c, w->url, &e) != 0) {
        snprintf(w->first_error, sizeof w->first_error, "%s", e.msg);
        w->errors++;
        return NULL;
    }
    char body[200], iin[13];
    for (unsigned i = 0;; i++) {
        uint64_t t0 = util_mono_ns();
        if (t0 >= w->until_ns) {
            break;
        }
        snprintf(body, sizeof body,
                 "Applicant asks to review the decision of %u and to answer in writing to the "
                 "address given. Client %d, request %u.",
                 2026, w->id, i);
        Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
        f.type = APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
        f.category = "0002.0001";
        f.subject = (char *)subjects[i % 4];
        f.body = body;
        f.name = "Aigerim Bekova";
        make_iin((unsigned)w->id * 1000003u + i, iin);
        f.iin = iin;
        f.address = "Almaty, Abai avenue 150, apt 12";
        Appeal__Request q = APPEAL__REQUEST__INIT;
        q.op_case = APPEAL__REQUEST__OP_FILE;
        q.file = &f;
        Appeal__InfoRequest inf = APPEAL__INFO_REQUEST__INIT;
        if (w->info_only) {
            q.op_case = APPEAL__REQUEST__OP_INFO;
            q.info = &inf;
        }
        Appeal__Response *r;
        int rc = client_call(&c, &q, &r, &e);
        uint64_t t1 = util_mono_ns();
        if (rc != 0 || (r->error != NULL && r->error->code != 0)) {
            if (w->errors++ == 0) {
                snprintf(w->first_error, sizeof w->first_error, "%s",
                         rc != 0 ? e.msg : r->error->message);
            }
            continue;
        }
        if (t0 >= w->measure_from_ns && w->n_lat < SAMPLES_PER_CLIENT_MAX) {
            w->lat_ns[w->n_lat++] = t1 - t0;
        }
    }
    client_close(&c);
    return NULL;
}

/* ---- the raw SP client: the benchmark's own load generator ----
 *
 * nng's REQ socket costs the client about as much CPU per request as the
 * node spends answering it, and on a two-core machine the client's CPU is
 * taken from the node. So the load comes from one thread speaking the SP
 * protocol over TCP directly (the node still runs nng's REP): an 8-byte
 * handshake, then frames of an 8-byte big-endian length, the 4-byte REQ
 * request id (high bit set) and the body. */

struct raw_conn {
    int fd;
    uint8_t *out;
    size_t out_len, out_sent;
    uint8_t in[65536];
    size_t in_len;
    uint64_t sent_ns;               /* of the last request sent */
    uint64_t sent_at[INFLIGHT_MAX]; /* by request id modulo INFLIGHT_MAX */
    uint8_t session_id[SESSION_ID_BYTES];
    uint8_t session_key[SESSION_KEY_BYTES];
    uint64_t counter;
    uint32_t outstanding; /* requests sent, not yet answered */
    uint32_t id;
    unsigned next;
    bool handshaken;
    bool waiting; /* paced: the next request is due at due_ns */
    uint64_t due_ns;
};

static const uint8_t sp_hello_req[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};

/* SP over nng's ipc:// transport frames each message with a type byte
 * (1) before the 8-byte length; over tcp:// the length comes first. */
static size_t frame_pre;

/* Writes a frame's header for a message of `len` bytes (the request id
 * included) into `out`; returns its size. */
static size_t frame_hdr(uint8_t *out, uint64_t len) {
    if (frame_pre > 0) {
        out[0] = 1;
    }
    for (int i = 0; i < 8; i++) {
        out[frame_pre + (size_t)i] = (uint8_t)(len >> (56 - 8 * i));
    }
    return frame_pre + 8;
}

static int raw_connect(const char *url, int *fd_out) {
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    char host[64];
    int port;
    if (strncmp(url, "ipc://", 6) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "%s", url + 6);
        sl = sizeof *a;
        frame_pre = 1;
    } else if (sscanf(url, "tcp://%63[^:]:%d", host, &port) == 2) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a->sin_addr);
        sl = sizeof *a;
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    int one = 1;
    if (frame_pre == 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (write(fd, sp_hello_req, 8) != 8) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *fd_out = fd;
    return 0;
}

/* Writes or reads all `n` bytes on non-blocking `fd`; -1 on error. */
static int io_full(int fd, uint8_t *buf, size_t n, bool out) {
    for (size_t at = 0; at < n;) {
        ssize_t r = out ? write(fd, buf + at, n - at) : read(fd, buf + at, n - at);
        if (r > 0) {
            at += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = out ? POLLOUT : POLLIN};
            if (poll(&p, 1, 10000) == 1) {
                continue;
            }
        }
        return -1;
    }
    return 0;
}

static char bench_node[16];
static uint8_t bench_pk[KEY_PK_BYTES], bench_sk[KEY_SK_BYTES];

/* One request and its answer on a raw connection whose SP handshake is
 * done: `body` framed with request id `id`; the answer decoded into `a`. */
static Appeal__Response *raw_call(int fd, const uint8_t *body, size_t len, uint32_t id,
                                  struct arena *a) {
    uint8_t hdr[13];
    size_t hl = frame_hdr(hdr, 4 + len);
    be32_put(hdr + hl, 0x80000000u | id);
    if (io_full(fd, hdr, hl + 4, true) != 0 || io_full(fd, (uint8_t *)body, len, true) != 0 ||
        io_full(fd, hdr, hl + 4, false) != 0) {
        return NULL;
    }
    uint64_t n = be64_get(hdr + frame_pre);
    uint8_t *in = n >= 4 && n < (1u << 20) ? malloc(n - 4) : NULL;
    if (in == NULL || io_full(fd, in, n - 4, false) != 0) {
        free(in);
        return NULL;
    }
    Appeal__Response *r = (Appeal__Response *)protobuf_c_message_unpack(
        &appeal__response__descriptor, &a->allocator, n - 4, in);
    free(in);
    return r;
}

/* Opens a session on raw connection `c` (docs/security.md "Sessions"):
 * the SP handshake's answer, then a signed session_open. */
static int raw_session(struct raw_conn *c, struct arena *a) {
    uint8_t hello[8];
    if (io_full(c->fd, hello, 8, false) != 0) {
        return -1;
    }
    c->handshaken = true;
    uint8_t kx_pk[crypto_kx_PUBLICKEYBYTES], kx_sk[crypto_kx_SECRETKEYBYTES], nonce[16];
    crypto_kx_keypair(kx_pk, kx_sk);
    randombytes_buf(nonce, sizeof nonce);
    Appeal__SessionOpenRequest so = APPEAL__SESSION_OPEN_REQUEST__INIT;
    so.client_kx = (ProtobufCBinaryData){sizeof kx_pk, kx_pk};
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.version = 1;
    q.time_ms = clock_system_ms();
    q.nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    q.node = bench_node;
    q.op_case = APPEAL__REQUEST__OP_SESSION_OPEN;
    q.session_open = &so;
    uint8_t *inner, *wire, sig[SIG_BYTES];
    size_t ilen, wlen;
    pb_pack(&q.base, &inner, &ilen);
    crypto_sign_detached(sig, NULL, inner, ilen, bench_sk);
    Appeal__ClientRequest cr = APPEAL__CLIENT_REQUEST__INIT;
    cr.request = (ProtobufCBinaryData){ilen, inner};
    cr.key = (ProtobufCBinaryData){sizeof bench_pk, bench_pk};
    cr.sig = (ProtobufCBinaryData){sizeof sig, sig};
    pb_pack(&cr.base, &wire, &wlen);
    free(inner);
    arena_reset(a);
    Appeal__Response *r = raw_call(c->fd, wire, wlen, ++c->id, a);
    free(wire);
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    if (r == NULL || r->result_case != APPEAL__RESPONSE__RESULT_SESSION ||
        r->session->id.len != SESSION_ID_BYTES || r->session->node_kx.len != SESSION_KX_BYTES ||
        crypto_kx_client_session_keys(rx, tx, kx_pk, kx_sk, r->session->node_kx.data) != 0) {
        fprintf(stderr, "appeal-bench: no session: %s\n",
                r != NULL && r->error != NULL ? r->error->message : "no answer");
        return -1;
    }
    uint8_t tr[SESSION_TRANSCRIPT_BYTES];
    client_session_transcript(r->session->id.data, kx_pk, r->session->node_kx.data, bench_pk, tr);
    client_session_key(tx, tr, c->session_key);
    memcpy(c->session_id, r->session->id.data, SESSION_ID_BYTES);
    sodium_memzero(kx_sk, sizeof kx_sk);
    return 0;
}

struct raw_pool {
    uint8_t **msgs;
    size_t *lens;
    size_t n, next;        /* each is sent once */
    uint64_t exhausted_ns; /* when the last one was sent; 0: not yet */
};

/* Requests prepared before the clock starts: distinct applicants and texts. */
static int raw_prepare(struct raw_pool *p, size_t n, const char *url) {
    uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES];
    struct errbuf e = {0};
    struct client hc; /* the node the requests are signed for */
    if (client_open(&hc, url, 10000, &e) != 0 || client_hello(&hc, &e) != 0) {
        fprintf(stderr, "appeal-bench: %s\n", e.msg);
        return -1;
    }
    char node[sizeof hc.node];
    memcpy(node, hc.node, sizeof node);
    memcpy(bench_node, hc.node, sizeof bench_node);
    client_close(&hc);
    if (keys_load_signing(key_path, pk, sk, &e) != 0) {
        fprintf(stderr, "appeal-bench: %s\n", e.msg);
        return -1;
    }
    memcpy(bench_pk, pk, sizeof pk);
    memcpy(bench_sk, sk, sizeof sk);
    p->msgs = calloc(n, sizeof *p->msgs);
    p->lens = calloc(n, sizeof *p->lens);
    p->n = n;
    p->next = 0;
    char body[200], iin[13];
    for (size_t i = 0; i < n; i++) {
        snprintf(body, sizeof body,
                 "Applicant asks to review the decision and to answer in writing to the "
                 "address given. Request %zu.",
                 i);
        make_iin((unsigned)i, iin);
        Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
        f.type = APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
        f.category = "0002.0001";
        f.subject = (char *)subjects[i % 4];
        f.body = body;
        f.name = "Aigerim Bekova";
        f.iin = iin;
        f.address = "Almaty, Abai avenue 150, apt 12";
        f.contacts = (char *)contacts;
        uint8_t nonce[16];
        randombytes_buf(nonce, sizeof nonce);
        Appeal__Request q = APPEAL__REQUEST__INIT;
        q.version = 1;
        q.time_ms = clock_system_ms();
        q.nonce.data = nonce;
        q.nonce.len = sizeof nonce;
        q.node = node;
        q.op_case = APPEAL__REQUEST__OP_FILE;
        q.file = &f;
        uint8_t *inner;
        size_t ilen;
        pb_pack(&q.base, &inner, &ilen);
        if (use_session) { /* a counter and a MAC are added as each is sent */
            p->msgs[i] = inner;
            p->lens[i] = ilen;
            continue;
        }
        uint8_t sig[SIG_BYTES];
        crypto_sign_detached(sig, NULL, inner, ilen, sk);
        Appeal__ClientRequest cr = APPEAL__CLIENT_REQUEST__INIT;
        cr.request.data = inner;
        cr.request.len = ilen;
        cr.key.data = pk;
        cr.key.len = sizeof pk;
        cr.sig.data = sig;
        cr.sig.len = sizeof sig;
        pb_pack(&cr.base, &p->msgs[i], &p->lens[i]);
        free(inner);
    }
    sodium_memzero(sk, sizeof sk);
    return 0;
}

static void raw_send(struct raw_conn *c, struct raw_pool *p) {
    if (p->next == p->n) {
        return; /* every prepared request is sent: the run ends early */
    }
    size_t k = p->next++;
    c->next++;
    if (p->next == p->n) {
        p->exhausted_ns = util_mono_ns();
    }
    size_t len = p->lens[k];
    uint8_t *wire = NULL;
    if (use_session) {
        uint8_t mac[SESSION_MAC_BYTES];
        client_session_mac(c->session_key, ++c->counter, p->msgs[k], len, mac);
        Appeal__ClientRequest cr = APPEAL__CLIENT_REQUEST__INIT;
        cr.request = (ProtobufCBinaryData){len, p->msgs[k]};
        cr.session = (ProtobufCBinaryData){SESSION_ID_BYTES, c->session_id};
        cr.counter = c->counter;
        cr.mac = (ProtobufCBinaryData){sizeof mac, mac};
        pb_pack(&cr.base, &wire, &len);
    }
    c->out = realloc(c->out, 13 + len);
    size_t hl = frame_hdr(c->out, 4 + len);
    c->id = (c->id + 1) & 0x7fffffffu;
    be32_put(c->out + hl, 0x80000000u | c->id);
    memcpy(c->out + hl + 4, wire != NULL ? wire : p->msgs[k], len);
    free(wire);
    c->out_len = hl + 4 + len;
    c->out_sent = 0;
    c->sent_ns = util_mono_ns();
    c->sent_at[c->id % INFLIGHT_MAX] = c->sent_ns;
    c->outstanding++;
    if (io_full(c->fd, c->out, c->out_len, true) == 0) {
        c->out_sent = c->out_len;
    }
}

/* Consumes whole frames in c->in; returns replies seen (-1 on error). */
static int raw_replies(struct raw_conn *c, struct worker *w, struct raw_pool *p, struct arena *a) {
    int got = 0;
    size_t at = 0;
    if (!c->handshaken) {
        if (c->in_len < 8) {
            return 0;
        }
        c->handshaken = true;
        at = 8;
        for (long i = 0; i < inflight; i++) {
            raw_send(c, p);
        }
    }
    size_t hl = frame_pre + 8;
    while (c->in_len - at >= hl + 4) {
        uint64_t len = be64_get(c->in + at + frame_pre);
        if (len < 4 || len > sizeof c->in - hl) {
            return -1;
        }
        if (c->in_len - at < hl + len) {
            break;
        }
        uint64_t now = util_mono_ns();
        uint64_t sent = c->sent_at[(be32_get(c->in + at + hl) & 0x7fffffffu) % INFLIGHT_MAX];
        c->outstanding -= c->outstanding > 0;
        arena_reset(a);
        Appeal__Response *r = (Appeal__Response *)protobuf_c_message_unpack(
            &appeal__response__descriptor, &a->allocator, len - 4, c->in + at + hl + 4);
        if (r == NULL || (r->error != NULL && r->error->code != 0)) {
            if (w->errors++ == 0) {
                snprintf(w->first_error, sizeof w->first_error, "%s",
                         r && r->error ? r->error->message : "malformed reply");
            }
        } else if (sent >= w->measure_from_ns && w->n_lat < SAMPLES_PER_CLIENT_MAX) {
            w->lat_ns[w->n_lat++] = now - sent;
        }
        at += hl + len;
        got++;
        if (now < w->until_ns) {
            if (w->pace_ns > 0) {
                c->waiting = true;
                c->due_ns = sent + w->pace_ns;
            } else {
                raw_send(c, p);
            }
        }
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return got;
}

/* The whole load from one thread: `clients` connections, one request in
 * flight on each. Latencies go into w. */
static void raw_run(const char *url, long clients, struct worker *w, struct raw_pool *pool) {
    struct raw_conn *conns = calloc((size_t)clients, sizeof *conns);
    int ep = epoll_create1(0);
    struct arena a;
    arena_init(&a, 1 << 20);
    for (long i = 0; i < clients; i++) {
        if (raw_connect(url, &conns[i].fd) != 0 ||
            (use_session && raw_session(&conns[i], &a) != 0)) {
            snprintf(w->first_error, sizeof w->first_error, "cannot connect to %s", url);
            w->errors++;
            return;
        }
        conns[i].next = (unsigned)i * 97u;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    for (long i = 0; use_session && i < clients; i++) {
        for (long k = 0; k < inflight; k++) {
            raw_send(&conns[i], pool);
        }
    }
    long open = clients;
    struct epoll_event evs[64];
    while (open > 0) {
        int timeout_ms = 1000;
        uint64_t now = util_mono_ns();
        for (long i = 0; i < clients; i++) {
            struct raw_conn *c = &conns[i];
            if (c->waiting && c->fd >= 0) {
                if (c->due_ns <= now || now >= w->until_ns) {
                    c->waiting = false;
                    if (now < w->until_ns) {
                        raw_send(c, pool);
                    }
                } else if ((int)((c->due_ns - now) / 1000000) < timeout_ms) {
                    timeout_ms = (int)((c->due_ns - now) / 1000000);
                }
            }
        }
        int n = epoll_wait(ep, evs, 64, timeout_ms);
        for (int i = 0; i < n; i++) {
            struct raw_conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) {
                    continue;
                }
                w->errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                open--;
                continue;
            }
            c->in_len += (size_t)r;
            if (raw_replies(c, w, pool, &a) < 0) {
                w->errors++;
            }
            if (util_mono_ns() >= w->until_ns && c->in_len == 0 && c->outstanding == 0 &&
                c->handshaken && c->fd >= 0 && !c->waiting) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                open--;
            }
        }
        if (n == 0 && util_mono_ns() >= w->until_ns + 2000000000u) {
            break;
        }
    }
    for (long i = 0; i < clients; i++) {
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
        }
        free(conns[i].out);
    }
    arena_fini(&a);
    free(conns);
    close(ep);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts `all` (total latencies in ns) and gives its p50, p99 and max in ms
 * (0 when empty). */
static void latencies_ms(uint64_t *all, size_t total, double *p50, double *p99, double *pmax) {
    qsort(all, total, sizeof *all, cmp_u64);
    *p50 = total ? (double)all[total / 2] / 1e6 : 0;
    *p99 = total ? (double)all[(size_t)((double)total * 0.99)] / 1e6 : 0;
    *pmax = total ? (double)all[total - 1] / 1e6 : 0;
}

static double sign_ceiling(void) {
    uint8_t pk[32], sk[64], msg[300], sig[64];
    crypto_sign_keypair(pk, sk);
    randombytes_buf(msg, sizeof msg);
    uint64_t t0 = util_mono_ns(), n = 0;
    while (util_mono_ns() - t0 < 1000000000u) {
        for (int i = 0; i < 100; i++, n++) {
            msg[0] = (uint8_t)n;
            crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
        }
    }
    return (double)n / ((double)(util_mono_ns() - t0) / 1e9);
}

static int node_counters(const char *url, uint64_t *commits, uint64_t *writes) {
    struct client c;
    struct errbuf e = {0};
    if (open_signed(&c, url, &e) != 0) {
        fprintf(stderr, "appeal-bench: %s\n", e.msg);
        return -1;
    }
    Appeal__InfoRequest i = APPEAL__INFO_REQUEST__INIT;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_INFO;
    q.info = &i;
    Appeal__Response *r;
    int rc = client_call(&c, &q, &r, &e);
    bool ok = rc == 0 && r->info != NULL;
    if (ok) {
        *commits = r->info->commits;
        *writes = r->info->committed_writes;
    }
    client_close(&c);
    return ok ? 0 : -1;
}

struct counters_probe {
    const char *url;
    time_t after_s;
    uint64_t *commits, *writes;
    int rc;
};

static void *probe_counters(void *arg) {
    struct counters_probe *p = arg;
    struct timespec ts = {p->after_s, 0};
    nanosleep(&ts, NULL);
    p->rc = node_counters(p->url, p->commits, p->writes);
    return NULL;
}

/* The hash-bound limit of replication on this machine: every record of a
 * store hashed with BLAKE2b and written in batches into a fresh LMDB file,
 * with a durable commit per batch. What a receiver cannot beat. */
static int limit_run(const char *from, const char *scratch) {
    struct store src, dst;
    struct errbuf e = {0};
    struct store_opts ro = {
        .map_bytes = 1ull << 30, .map_max_bytes = 1ull << 40, .read_only = true};
    struct store_opts wo = {.map_bytes = 4ull << 30, .map_max_bytes = 1ull << 40};
    if (store_open(&src, from, &ro, &e) != 0 || store_open(&dst, scratch, &wo, &e) != 0) {
        fprintf(stderr, "appeal-bench: %s\n", e.msg);
        return 1;
    }
    MDB_txn *rt, *wt = NULL;
    store_rd_begin(&src, &rt);
    MDB_cursor *c;
    mdb_cursor_open(rt, src.dbi[DB_LOG], &c);
    MDB_val k, v;
    uint64_t n = 0, t0 = util_mono_ns(), hash_ns = 0;
    uint8_t h[32];
    for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0;
         m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint64_t a = util_mono_ns();
        hash_bytes(v.mv_data, v.mv_size, h);
        hash_ns += util_mono_ns() - a;
        if (wt == NULL) {
            store_wr_begin(&dst, &wt);
        }
        store_put(wt, &dst, DB_LOG, k.mv_data, k.mv_size, v.mv_data, v.mv_size, MDB_APPEND);
        if (++n % 20000 == 0) {
            store_commit(&dst, wt);
            wt = NULL;
        }
    }
    if (wt != NULL) {
        store_commit(&dst, wt);
    }
    double s = (double)(util_mono_ns() - t0) / 1e9;
    mdb_cursor_close(c);
    store_rd_end(&src, rt);
    store_close(&src);
    store_close(&dst);
    printf("json {\"records\":%llu,\"seconds\":%.3f,\"limit_per_s\":%.0f,"
           "\"blake2b_per_s\":%.0f}\n",
           (unsigned long long)n, s, (double)n / s, (double)n / ((double)hash_ns / 1e9));
    return 0;
}

/* ---- federated queries: --op query | live ---- */

struct query_opts {
    const char *url;
    char *by[QUERY_BY_MAX];
    size_t n_by;
    char by_text[256];
    bool live;
    long deadline_ms, clients, seconds, warmup;
};

struct query_worker {
    struct worker w; /* thread, deadlines, latencies, errors */
    const struct query_opts *o;
    size_t groups;       /* of the last answer */
    uint32_t sources[3]; /* live, replica, missing: of the last answer */
    uint32_t live_min;   /* fewest jurisdictions answering live in one answer */
    uint64_t partial;    /* live answers with a silent jurisdiction */
    uint64_t replies;    /* answers, warm-up included */
};

static void count_sources(struct query_worker *qw, const Appeal__QueryResult *r) {
    static const char *const kinds[3] = {"live", "replica", "missing"};
    memset(qw->sources, 0, sizeof qw->sources);
    for (size_t i = 0; i < r->n_sources; i++) {
        for (int k = 0; k < 3; k++) {
            qw->sources[k] += strcmp(r->sources[i]->source, kinds[k]) == 0;
        }
    }
    qw->groups = r->n_groups;
    if (qw->o->live) {
        if (qw->sources[0] < qw->live_min) {
            qw->live_min = qw->sources[0];
        }
        qw->partial += qw->sources[1] + qw->sources[2] > 0;
    }
}

static void *query_work(void *arg) {
    struct query_worker *qw = arg;
    struct worker *w = &qw->w;
    struct client c;
    struct errbuf e = {0};
    int timeout = (int)(qw->o->live ? qw->o->deadline_ms + 5000 : 10000);
    if (client_open(&c, w->url, timeout, &e) != 0 || client_sign_with(&c, key_path, &e) != 0) {
        snprintf(w->first_error, sizeof w->first_error, "%s", e.msg);
        w->errors++;
        return NULL;
    }
    Appeal__QueryRequest qr = APPEAL__QUERY_REQUEST__INIT;
    qr.by = (char **)qw->o->by;
    qr.n_by = qw->o->n_by;
    qr.live = qw->o->live;
    qr.deadline_ms = (uint32_t)qw->o->deadline_ms;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_QUERY;
    q.query = &qr;
    while (util_mono_ns() < w->until_ns) {
        uint64_t t0 = util_mono_ns();
        Appeal__Response *r;
        int rc = client_call(&c, &q, &r, &e);
        uint64_t t1 = util_mono_ns();
        if (rc != 0 || (r->error != NULL && r->error->code != 0) || r->query == NULL) {
            if (w->errors++ == 0) {
                snprintf(w->first_error, sizeof w->first_error, "%s",
                         rc != 0 ? e.msg : (r->error ? r->error->message : "no query result"));
            }
            if (rc != 0) {
                break; /* the connection is gone: REQ would wait on it */
            }
            continue;
        }
        qw->replies++;
        if (t0 >= w->measure_from_ns) {
            count_sources(qw, r->query);
            if (w->n_lat < SAMPLES_PER_CLIENT_MAX) {
                w->lat_ns[w->n_lat++] = t1 - t0;
            }
        }
    }
    client_close(&c);
    return NULL;
}

static int parse_by(struct query_opts *o, const char *text) {
    snprintf(o->by_text, sizeof o->by_text, "%s", text);
    static char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    o->n_by = 0;
    for (char *save = NULL, *f = strtok_r(buf, ",", &save); f != NULL;
         f = strtok_r(NULL, ",", &save)) {
        if (o->n_by == QUERY_BY_MAX) {
            fprintf(stderr, "appeal-bench: --by names at most %d fields\n", QUERY_BY_MAX);
            return -1;
        }
        o->by[o->n_by++] = f;
    }
    return 0;
}

static void query_report(const struct query_opts *o, struct query_worker *qw, double elapsed) {
    size_t total = 0;
    uint64_t errors = 0, partial = 0, replies = 0;
    uint32_t live_min = UINT32_MAX;
    const struct query_worker *last = NULL;
    for (long i = 0; i < o->clients; i++) {
        total += qw[i].w.n_lat;
        errors += qw[i].w.errors;
        partial += qw[i].partial;
        replies += qw[i].replies;
        live_min = qw[i].w.n_lat && qw[i].live_min < live_min ? qw[i].live_min : live_min;
        last = qw[i].w.n_lat ? &qw[i] : last;
        if (qw[i].w.errors) {
            fprintf(stderr, "client %ld: %llu errors, first: %s\n", i,
                    (unsigned long long)qw[i].w.errors, qw[i].w.first_error);
        }
    }
    uint64_t *all = malloc((total + 1) * sizeof *all);
    size_t k = 0;
    for (long i = 0; i < o->clients; i++) {
        memcpy(all + k, qw[i].w.lat_ns, qw[i].w.n_lat * sizeof *all);
        k += qw[i].w.n_lat;
    }
    double p50, p99, pmax;
    latencies_ms(all, total, &p50, &p99, &pmax);
    free(all);
    size_t groups = last ? last->groups : 0;
    uint32_t src[3] = {0, 0, 0};
    if (last) {
        memcpy(src, last->sources, sizeof src);
    }
    const char *mode = o->live ? "live" : "query";
    printf("op                 %s, by %s\n", o->live ? "live (fan-out)" : "query (replica)",
           o->by_text);
    printf("clients            %ld\n", o->clients);
    printf("queries/s          %.0f  (%zu answered in %.1f s, %llu errors)\n",
           (double)total / elapsed, total, elapsed, (unsigned long long)errors);
    printf("latency ms         p50 %.2f  p99 %.2f  max %.2f\n", p50, p99, pmax);
    printf("answer             %zu groups; sources %u live, %u replica, %u missing\n", groups,
           src[0], src[1], src[2]);
    if (o->live) {
        printf("live               deadline %ld ms; %llu of %zu answers used the replica for a "
               "silent jurisdiction; fewest live in one answer: %u\n",
               o->deadline_ms, (unsigned long long)partial, total,
               live_min == UINT32_MAX ? 0 : live_min);
    }
    printf("json {\"op\":\"%s\",\"by\":\"%s\",\"clients\":%ld,\"queries_per_s\":%.1f,"
           "\"answered\":%zu,\"errors\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"groups\":%zu,\"sources_live\":%u,\"sources_replica\":%u,\"sources_missing\":%u,"
           "\"deadline_ms\":%ld,\"partial\":%llu,\"live_min\":%u,\"replies\":%llu}\n",
           mode, o->by_text, o->clients, (double)total / elapsed, total, (unsigned long long)errors,
           p50, p99, pmax, groups, src[0], src[1], src[2], o->live ? o->deadline_ms : 0,
           (unsigned long long)partial, live_min == UINT32_MAX ? 0 : live_min,
           (unsigned long long)replies);
}

static int query_main(struct query_opts *o) {
    struct query_worker *qw = calloc((size_t)o->clients, sizeof *qw);
    uint64_t from = util_mono_ns() + (uint64_t)o->warmup * 1000000000u;
    uint64_t until = from + (uint64_t)o->seconds * 1000000000u;
    for (long i = 0; i < o->clients; i++) {
        qw[i].o = o;
        qw[i].live_min = UINT32_MAX;
        qw[i].w.url = o->url;
        qw[i].w.id = (int)i;
        qw[i].w.until_ns = until;
        qw[i].w.measure_from_ns = from;
        qw[i].w.lat_ns = malloc(SAMPLES_PER_CLIENT_MAX * sizeof(uint64_t));
        pthread_create(&qw[i].w.thread, NULL, query_work, &qw[i]);
    }
    for (long i = 0; i < o->clients; i++) {
        pthread_join(qw[i].w.thread, NULL);
    }
    uint64_t end = util_mono_ns();
    query_report(o, qw, (double)(end > from ? end - from : 1) / 1e9);
    uint64_t errors = 0;
    for (long i = 0; i < o->clients; i++) {
        errors += qw[i].w.errors;
        free(qw[i].w.lat_ns);
    }
    free(qw);
    return errors > 0 ? 1 : 0;
}

/* ---- Open311 over HTTP (--http) ---- */

enum {
    HTTP_REQ_BYTES_MAX = 4096,
    HTTP_RESP_BYTES_MAX = 64 * 1024, /* a filing's answer carries the receipt (~2 KB hex) */
    HTTP_NUMBERS_MAX = 100000,
    HTTP_NUMBER_BYTES = 32,
};

struct http_load {
    struct sockaddr_in addr;
    const char *host; /* the Host header */
    bool file;        /* POST requests.json; else GET requests/N.json */
    const char *form;
    char (*numbers)[HTTP_NUMBER_BYTES];
    size_t n_numbers;
};

struct http_worker {
    pthread_t thread;
    const struct http_load *load;
    int id;
    uint64_t until_ns, measure_from_ns;
    uint64_t *lat_ns;
    size_t n_lat;
    uint64_t errors;
    char first_error[160];
};

static int http_connect(const struct http_load *l) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&l->addr, sizeof l->addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One response: its status, or -1 when the connection failed. */
static int http_response(int fd, char *buf, size_t cap) {
    size_t len = 0, need = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0) {
            return -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (need == 0) {
            char *he = strstr(buf, "\r\n\r\n");
            if (he == NULL) {
                if (len + 1 >= cap) {
                    return -1;
                }
                continue;
            }
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t body = cl != NULL && cl < he ? strtoul(cl + 17, NULL, 10) : 0;
            need = (size_t)(he + 4 - buf) + body;
            if (need >= cap) {
                return -1;
            }
        }
        if (len >= need) {
            return len > 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
        }
    }
}

static int http_request(const struct http_load *l, int i, char *out, size_t cap) {
    if (l->file) {
        return snprintf(out, cap,
                        "POST /open311/v2/requests.json HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                        "Content-Length: %zu\r\n\r\n%s",
                        l->host, strlen(l->form), l->form);
    }
    return snprintf(out, cap, "GET /open311/v2/requests/%s.json HTTP/1.1\r\nHost: %s\r\n\r\n",
                    l->numbers[(size_t)i % l->n_numbers], l->host);
}

static void http_error(struct http_worker *w, const char *what, int status) {
    if (w->errors++ == 0) {
        snprintf(w->first_error, sizeof w->first_error, "%s (status %d, errno %d)", what, status,
                 errno);
    }
}

static void *http_work(void *arg) {
    struct http_worker *w = arg;
    const struct http_load *l = w->load;
    char req[HTTP_REQ_BYTES_MAX];
    char *resp = malloc(HTTP_RESP_BYTES_MAX);
    int fd = -1;
    for (int i = w->id * 7919; resp != NULL && util_mono_ns() < w->until_ns; i++) {
        if (fd < 0 && (fd = http_connect(l)) < 0) {
            http_error(w, "connect", 0);
            break;
        }
        int n = http_request(l, i, req, sizeof req);
        uint64_t t0 = util_mono_ns();
        int st = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n
                     ? http_response(fd, resp, HTTP_RESP_BYTES_MAX)
                     : -1;
        uint64_t t1 = util_mono_ns();
        if (st < 0) {
            http_error(w, "connection lost", st);
            close(fd);
            fd = -1;
            continue;
        }
        if (st != 200) {
            http_error(w, "answer", st);
            continue;
        }
        if (t0 >= w->measure_from_ns && w->n_lat < SAMPLES_PER_CLIENT_MAX) {
            w->lat_ns[w->n_lat++] = t1 - t0;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    free(resp);
    return NULL;
}

static int http_numbers(struct http_load *l, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "appeal-bench: cannot read %s\n", path);
        return -1;
    }
    l->numbers = calloc(HTTP_NUMBERS_MAX, HTTP_NUMBER_BYTES);
    char line[128];
    while (l->numbers != NULL && l->n_numbers < HTTP_NUMBERS_MAX && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0' && strlen(line) < HTTP_NUMBER_BYTES) {
            memcpy(l->numbers[l->n_numbers++], line, strlen(line) + 1); /* fits: checked */
        }
    }
    fclose(f);
    return l->n_numbers > 0 ? 0 : -1;
}

static int http_main(int argc, char **argv) {
    const char *hostport = NULL, *op = "file", *api_key = "", *numbers = NULL;
    long clients = 32, seconds = 10, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--http") == 0) {
            hostport = argv[i + 1];
        } else if (strcmp(argv[i], "--http-op") == 0) {
            op = argv[i + 1];
        } else if (strcmp(argv[i], "--api-key") == 0) {
            api_key = argv[i + 1];
        } else if (strcmp(argv[i], "--numbers") == 0) {
            numbers = argv[i + 1];
        } else if (strcmp(argv[i], "--clients") == 0) {
            util_parse_long(argv[i + 1], 1, CLIENTS_MAX, &clients);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            util_parse_long(argv[i + 1], 1, 3600, &seconds);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            util_parse_long(argv[i + 1], 0, 60, &warmup);
        }
    }
    struct http_load l = {.host = hostport, .file = strcmp(op, "file") == 0};
    const char *colon = hostport != NULL ? strrchr(hostport, ':') : NULL;
    char ip[64];
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof ip) {
        fprintf(stderr, "usage: appeal-bench --http HOST:PORT --http-op file|get "
                        "[--api-key KEY] [--numbers FILE] [--clients N] [--seconds S]\n");
        return 2;
    }
    snprintf(ip, sizeof ip, "%.*s", (int)(colon - hostport), hostport);
    l.addr.sin_family = AF_INET;
    l.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, ip, &l.addr.sin_addr) != 1 ||
        (!l.file && (numbers == NULL || http_numbers(&l, numbers) != 0))) {
        fprintf(stderr, "appeal-bench: --http needs an IPv4 HOST:PORT; get needs --numbers\n");
        return 2;
    }
    static char form[1024];
    snprintf(form, sizeof form,
             "api_key=%s&service_code=0002.0001&attribute%%5Btype%%5D=statement"
             "&first_name=Aigerim&last_name=Bekova&attribute%%5Biin%%5D=900101300126"
             "&description=Applicant+asks+to+review+the+decision+and+to+answer+in+writing"
             "&address_string=Almaty%%2C+Abai+avenue+150%%2C+apt+12",
             api_key);
    l.form = form;
    struct http_worker *w = calloc((size_t)clients, sizeof *w);
    uint64_t from = util_mono_ns() + (uint64_t)warmup * 1000000000u;
    uint64_t until = from + (uint64_t)seconds * 1000000000u;
    for (long i = 0; i < clients; i++) {
        w[i] = (struct http_worker){
            .load = &l, .id = (int)i, .until_ns = until, .measure_from_ns = from};
        w[i].lat_ns = malloc(SAMPLES_PER_CLIENT_MAX * sizeof(uint64_t));
        pthread_create(&w[i].thread, NULL, http_work, &w[i]);
    }
    size_t total = 0;
    uint64_t errors = 0;
    for (long i = 0; i < clients; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n_lat;
        errors += w[i].errors;
        if (w[i].errors) {
            fprintf(stderr, "client %ld: %llu errors, first: %s\n", i,
                    (unsigned long long)w[i].errors, w[i].first_error);
        }
    }
    uint64_t *all = malloc((total + 1) * sizeof *all);
    size_t k = 0;
    for (long i = 0; i < clients; i++) {
        memcpy(all + k, w[i].lat_ns, w[i].n_lat * sizeof *all);
        k += w[i].n_lat;
        free(w[i].lat_ns);
    }
    double p50, p99, pmax;
    latencies_ms(all, total, &p50, &p99, &pmax);
    double per_s = (double)total / (double)seconds;
    printf("http %s  clients %ld  answers/s %.0f  p50 %.2f ms  p99 %.2f ms  max %.2f ms  "
           "errors %llu\n",
           op, clients, per_s, p50, p99, pmax, (unsigned long long)errors);
    printf("json {\"op\":\"%s\",\"clients\":%ld,\"per_s\":%.1f,\"answers\":%zu,\"errors\":%llu,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           op, clients, per_s, total, (unsigned long long)errors, p50, p99, pmax);
    free(all);
    free(w);
    free(l.numbers);
    return errors > 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--http") == 0) {
        return http_main(argc, argv);
    }
    if (argc == 4 && strcmp(argv[1], "--limit") == 0) {
        olog_init("bench", "-", 2, OLOG_WARN);
        return limit_run(argv[2], argv[3]);
    }
    const char *url = NULL;
    long clients = 32, seconds = 10, warmup = 1;
    bool info_only = false, raw = true, query_op = false;
    long rate = 0;
    struct query_opts qo = {.deadline_ms = 2000};
    const char *by = "region,status";
    bool clients_given = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--node") == 0) {
            url = argv[i + 1];
        } else if (strcmp(argv[i], "--clients") == 0) {
            util_parse_long(argv[i + 1], 1, CLIENTS_MAX, &clients);
            clients_given = true;
        } else if (strcmp(argv[i], "--seconds") == 0) {
            util_parse_long(argv[i + 1], 1, 3600, &seconds);
        } else if (strcmp(argv[i], "--rate") == 0) {
            util_parse_long(argv[i + 1], 0, 1000000, &rate);
        } else if (strcmp(argv[i], "--transport") == 0) {
            raw = strcmp(argv[i + 1], "nng") != 0;
        } else if (strcmp(argv[i], "--op") == 0) {
            info_only = strcmp(argv[i + 1], "info") == 0;
            qo.live = strcmp(argv[i + 1], "live") == 0;
            query_op = qo.live || strcmp(argv[i + 1], "query") == 0;
        } else if (strcmp(argv[i], "--by") == 0) {
            by = argv[i + 1];
        } else if (strcmp(argv[i], "--deadline-ms") == 0) {
            util_parse_long(argv[i + 1], 1, 30000, &qo.deadline_ms);
        } else if (strcmp(argv[i], "--key") == 0) {
            key_path = argv[i + 1];
        } else if (strcmp(argv[i], "--auth") == 0) {
            use_session = strcmp(argv[i + 1], "session") == 0;
        } else if (strcmp(argv[i], "--inflight") == 0) {
            util_parse_long(argv[i + 1], 1, INFLIGHT_MAX, &inflight);
        } else if (strcmp(argv[i], "--contacts") == 0) {
            contacts = argv[i + 1];
        } else if (strcmp(argv[i], "--warmup") == 0) {
            util_parse_long(argv[i + 1], 0, 60, &warmup);
        }
    }
    if (key_path == NULL) {
        key_path = getenv("APPEAL_KEY");
    }
    if (url == NULL || key_path == NULL || sodium_init() < 0) {
        fprintf(stderr,
                "usage: appeal-bench --node URL --key FILE [--clients N] [--seconds S] [--rate N]\n"
                "       appeal-bench --op query|live --node URL --key FILE [--by F1,F2]\n"
                "                    [--deadline-ms N] [--clients N] [--seconds S] [--warmup S]\n");
        return 2;
    }
    if (query_op) {
        qo.url = url;
        qo.clients = clients_given ? clients : 1;
        qo.seconds = seconds;
        qo.warmup = warmup;
        return parse_by(&qo, by) == 0 ? query_main(&qo) : 2;
    }
    struct raw_pool pool = {0};
    if (raw && !info_only) {
        /* Enough requests for the run at the rate asked, or at more than
         * this machine's node has ever done (each signed one costs a
         * signature to prepare). */
        double per_s = rate > 0 ? (double)rate * 1.1 : use_session ? 40000.0 : 25000.0;
        size_t n = (size_t)(per_s * (double)(seconds + warmup)) + (size_t)clients;
        if (raw_prepare(&pool, n < POOL_MAX ? n : POOL_MAX, url) != 0) {
            return 2;
        }
    }
    double ceiling = sign_ceiling();
    struct worker *w = calloc((size_t)clients, sizeof *w);
    uint64_t now = util_mono_ns();
    uint64_t from = now + (uint64_t)warmup * 1000000000u;
    uint64_t until = from + (uint64_t)seconds * 1000000000u;
    uint64_t c0 = 0, w0 = 0, c1 = 0, w1 = 0;
    long clients_measured = 0;
    for (long i = 0; i < (raw && !info_only ? 0 : clients); i++) {
        w[i].url = url;
        w[i].id = (int)i;
        w[i].until_ns = until;
        w[i].measure_from_ns = from;
        w[i].info_only = info_only;
        w[i].lat_ns = malloc(SAMPLES_PER_CLIENT_MAX * sizeof(uint64_t));
        pthread_create(&w[i].thread, NULL, work, &w[i]);
    }
    int counters = 0;
    if (raw && !info_only) {
        /* Counters are read while the load runs, from a second thread. */
        struct worker *ww = &w[0];
        ww->until_ns = until;
        ww->measure_from_ns = from;
        ww->pace_ns = rate > 0 ? (uint64_t)(1e9 * (double)clients / (double)rate) : 0;
        ww->lat_ns = malloc(SAMPLES_PER_CLIENT_MAX * sizeof(uint64_t));
        struct counters_probe probe = {url, (time_t)warmup, &c0, &w0, -1};
        pthread_t pt;
        pthread_create(&pt, NULL, probe_counters, &probe);
        raw_run(url, clients, ww, &pool);
        pthread_join(pt, NULL);
        counters = probe.rc;
        clients_measured = 1;
    } else {
        struct timespec ts = {(time_t)warmup, 0};
        nanosleep(&ts, NULL);
        counters = node_counters(url, &c0, &w0);
        for (long i = 0; i < clients; i++) {
            pthread_join(w[i].thread, NULL);
        }
        clients_measured = clients;
    }
    uint64_t end = util_mono_ns();
    if (pool.exhausted_ns != 0 && pool.exhausted_ns < end) {
        fprintf(stderr,
                "appeal-bench: all %zu prepared requests were sent before the end; the "
                "rate is measured up to then\n",
                pool.n);
        end = pool.exhausted_ns;
    }
    double elapsed = (double)(end - from) / 1e9;
    if (counters == 0) {
        counters = node_counters(url, &c1, &w1);
    }
    size_t total = 0;
    uint64_t errors = 0;
    for (long i = 0; i < clients_measured; i++) {
        total += w[i].n_lat;
        errors += w[i].errors;
        if (w[i].errors) {
            fprintf(stderr, "client %ld: %llu errors, first: %s\n", i,
                    (unsigned long long)w[i].errors, w[i].first_error);
        }
    }
    uint64_t *all = malloc((total + 1) * sizeof *all);
    size_t k = 0;
    for (long i = 0; i < clients_measured; i++) {
        memcpy(all + k, w[i].lat_ns, w[i].n_lat * sizeof *all);
        k += w[i].n_lat;
        free(w[i].lat_ns);
    }
    double p50, p99, pmax;
    latencies_ms(all, total, &p50, &p99, &pmax);
    double achieved = (double)total / elapsed;
    double commits = counters == 0 ? (double)(c1 - c0) / elapsed : 0;
    double per_commit = c1 > c0 ? (double)(w1 - w0) / (double)(c1 - c0) : 0;
    printf("clients            %ld\n", clients);
    printf("appeals/s          %.0f  (%zu acknowledged in %.1f s, %llu errors)\n", achieved, total,
           elapsed, (unsigned long long)errors);
    printf("latency ms         p50 %.2f  p99 %.2f  max %.2f\n", p50, p99, pmax);
    printf("commits/s          %.0f  (%.1f appeals per commit)\n", commits, per_commit);
    printf("signing ceiling/s  %.0f  (Ed25519, 300 B, one core)\n", ceiling);
    printf("json {\"clients\":%ld,\"auth\":\"%s\",\"inflight\":%ld,\"appeals_per_s\":%.1f,"
           "\"acknowledged\":%zu,\"errors\":%llu,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"commits_per_s\":%.1f,"
           "\"appeals_per_commit\":%.2f,\"sign_per_s\":%.0f}\n",
           clients, use_session ? "session" : "signed", inflight, achieved, total,
           (unsigned long long)errors, p50, p99, pmax, commits, per_commit, ceiling);
    free(all);
    free(w);
    return errors > 0 ? 1 : 0;
}
