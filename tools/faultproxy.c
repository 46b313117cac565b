/*
 * appeal-faultproxy: a TCP proxy that cuts, hangs, delays and resets the
 * link between two nodes on command. Operators put one in front of a peer
 * to rehearse a failure; the integration tests use it to break links.
 *
 *   appeal-faultproxy --listen HOST:PORT --to HOST:PORT --control HOST:PORT
 *                     [--name NAME] [--conns-max N]
 *   appeal-faultproxy ctl HOST:PORT COMMAND [ARG]
 *
 * One thread, one epoll set, non-blocking sockets, edge-triggered: each
 * socket keeps `readable`/`writable` flags that epoll sets and EAGAIN
 * clears, so a full buffer simply stops reading until the other side
 * drains. Each accepted client gets its own upstream connection. Each
 * direction holds at most CONN_BUFFER_BYTES_MAX bytes in a ring, cut into
 * timestamped chunks: a chunk is written once its due time has passed and
 * only after every chunk before it, so `delay` never reorders bytes.
 *
 * The control port takes one command per line and answers one line, "ok
 * ..." or "error ...": cut, blackhole, heal, delay MS, reset, status. See
 * docs/faultproxy.md for what each does to the connections.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

enum {
    CONN_BUFFER_BYTES_MAX = 128 * 1024, /* bytes held per direction of one connection */
    CONN_CHUNKS_MAX = 1024,             /* timestamped chunks per direction */
    CONNS_DEFAULT = 256,                /* proxied connections at once */
    CONNS_MAX = 4096,                   /* ceiling of --conns-max */
    CTL_CONNS_MAX = 16,                 /* control connections at once */
    CTL_LINE_BYTES_MAX = 256,           /* one command, newline included */
    CTL_REPLY_BYTES_MAX = 256,          /* one reply, newline included */
    CTL_OUT_BYTES_MAX = 4096,           /* replies not yet read by a control client */
    CTL_WORDS_MAX = 3,                  /* command and arguments (flap UP_MS DOWN_MS) */
    CTL_CLIENT_TIMEOUT_MS = 5000,       /* `ctl`: connect, send and answer */
    DELAY_MS_MAX = 600000,
    RATE_BYTES_PER_S_MAX = 1000000000, /* `rate`: 0 is no limit */
    RATE_BURST_BYTES_MIN = 1500,       /* a token bucket holds rate/10 s, at least this */
    FLAP_MS_MAX = 86400000,            /* each phase of `flap` */
    PUMP_ROUNDS_MAX = 32,              /* read/write rounds per connection per loop turn */
    ACCEPT_BATCH_MAX = 64,             /* accepts per readiness event */
    EPOLL_EVENTS_MAX = 128,            /* events per epoll_wait */
    LOG_LINE_BYTES_MAX = 1024,
    ADDR_TEXT_BYTES_MAX = 128, /* "[v6 address]:port" */
    NAME_BYTES_MAX = 64,
    ECHO_WORD_BYTES_MAX = 32, /* bytes of a bad command quoted back */
    LISTEN_BACKLOG = 128,
    FDS_SPARE = 16, /* listen, control, epoll, signal, stdio */
};

static const char usage_text[] =
    "usage: appeal-faultproxy --listen HOST:PORT --to HOST:PORT --control HOST:PORT\n"
    "                         [--name NAME] [--conns-max N]\n"
    "       appeal-faultproxy ctl HOST:PORT COMMAND [ARG]\n"
    "\n"
    "Forwards every connection accepted on --listen to its own connection to\n"
    "--to, and takes commands on --control, one per line:\n"
    "  cut          close all connections; accept and close new ones\n"
    "  blackhole    keep connections open, drop all bytes both ways\n"
    "  heal         forward normally again\n"
    "  delay MS     hold every chunk MS milliseconds each way (0 removes it)\n"
    "  reset        send RST on all current connections\n"
    "  status       mode, delay, connections and bytes forwarded\n"
    "--name tags the log lines (default: the --listen address); --conns-max\n"
    "bounds the proxied connections (default 256, at most 4096).\n"
    "The ctl form sends one command and prints the reply: exit 0 for ok, 1\n"
    "otherwise. See docs/faultproxy.md.\n";

enum mode { MODE_NORMAL, MODE_CUT, MODE_BLACKHOLE };

static const char *const mode_names[] = {"normal", "cut", "blackhole"};

/* What an epoll event is about: the kind in the top byte, then the slot,
 * then the slot's generation, so that an event for a closed connection
 * never reaches the connection that took its slot in the same batch. */
enum kind { KIND_LISTEN = 1, KIND_CONTROL, KIND_SIGNAL, KIND_CLIENT, KIND_UPSTREAM, KIND_CTL };

struct chunk {
    uint64_t due_ns; /* monotonic time before which it is not written */
    size_t len;
};

/* One end of a proxied connection. */
struct side {
    int fd;
    bool readable, writable; /* set by epoll, cleared by EAGAIN */
    bool eof;                /* it sent FIN: read returned 0 */
    bool shut;               /* we sent it FIN: shutdown(SHUT_WR) */
};

/* One direction: bytes read from `src` wait in the ring until due, then
 * go to `dst`. */
struct dir {
    struct side *src, *dst;
    uint64_t *total; /* the proxy's counter for this direction */
    uint8_t *ring;   /* CONN_BUFFER_BYTES_MAX */
    size_t head, used;
    struct chunk *chunks; /* CONN_CHUNKS_MAX, a ring */
    size_t chunk_head, chunk_count;
    uint64_t bytes, dropped_bytes;
};

enum upstream_state {
    UP_PENDING,    /* accepted during blackhole: not connected until heal */
    UP_CONNECTING, /* non-blocking connect in progress */
    UP_OPEN,
};

struct conn {
    bool used;
    uint32_t gen;
    uint64_t id;
    enum upstream_state up_state;
    struct side client, upstream;
    struct dir up, down; /* up: client to upstream; down: back */
    const char *why;     /* set when the connection must close */
    int why_errno;
    bool why_rst;
    char peer[ADDR_TEXT_BYTES_MAX];
};

struct ctl {
    bool used;
    uint32_t gen;
    int fd;
    bool readable, writable, eof, closing;
    size_t in_len, out_off, out_len;
    char in[CTL_LINE_BYTES_MAX];
    char out[CTL_OUT_BYTES_MAX];
};

struct options {
    const char *listen, *to, *control, *name;
    long conns_max;
};

struct proxy {
    char name[NAME_BYTES_MAX];
    char to_text[ADDR_TEXT_BYTES_MAX];
    struct sockaddr_storage to;
    socklen_t to_len;
    int epfd, listen_fd, control_fd, signal_fd;
    enum mode mode;
    long delay_ms;
    /* `rate`: one token bucket per direction (0 up, 1 down) shared by every
     * connection, as one link carries them all. */
    long rate_bytes_per_s;
    uint64_t tokens[2];
    uint64_t tokens_ns; /* when the buckets were last filled */
    /* `flap`: up for flap_up_ms (normal), down for flap_down_ms (cut). */
    long flap_up_ms, flap_down_ms;
    bool flap_down;
    uint64_t flap_next_ns; /* the next change of phase; 0: not flapping */
    struct conn *conns;
    size_t conns_max, conns_live;
    struct ctl ctls[CTL_CONNS_MAX];
    uint64_t next_id, bytes_up, bytes_down;
    bool stopping;
    bool busy; /* a connection still had work when its rounds ran out */
};

/* -- logging -- */

static void log_event(const struct proxy *p, const char *level, const char *event, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void log_event(const struct proxy *p, const char *level, const char *event, const char *fmt,
                      ...) {
    char line[LOG_LINE_BYTES_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s proxy=%s event=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level, p->name, event);
    size_t at = n > 0 ? (size_t)n : 0;
    if (at < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + at, sizeof line - at, fmt, ap);
        va_end(ap);
        at += m > 0 ? (size_t)m : 0;
    }
    if (at > sizeof line - 1) {
        at = sizeof line - 1; /* truncated: keep it one line */
    }
    line[at++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, at);
    (void)w; /* nowhere left to report a failed log write */
}

/* A word from a control client, safe to quote in a reply or a log line:
 * printable, no quotes or backslashes, at most ECHO_WORD_BYTES_MAX. Replies
 * quote it with ' because the log quotes the whole reply with ". */
static void safe_word(const char *in, char *out, size_t cap) {
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < cap && i < ECHO_WORD_BYTES_MAX; i++) {
        char ch = in[i];
        bool plain = ch > ' ' && ch < 127 && ch != '"' && ch != '\'' && ch != '\\';
        out[i] = plain ? ch : '?';
    }
    out[i] = '\0';
}

/* -- addresses -- */

/* Splits "host:port" or "[v6]:port"; the port must be 1..65535. */
static int split_hostport(const char *text, char *host, size_t host_cap, char *port,
                          size_t port_cap) {
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) {
        return APL_EINVAL;
    }
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']') {
            return APL_EINVAL;
        }
        h++;
        hlen -= 2;
    }
    long num;
    if (hlen + 1 > host_cap || util_parse_long(colon + 1, 1, 65535, &num) != 0) {
        return APL_EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_cap, "%ld", num);
    return 0;
}

static int resolve(const char *text, bool passive, struct sockaddr_storage *out, socklen_t *len,
                   char *why, size_t why_cap) {
    char host[ADDR_TEXT_BYTES_MAX], port[8];
    if (split_hostport(text, host, sizeof host, port, sizeof port) != 0) {
        snprintf(why, why_cap, "'%s' is not HOST:PORT with a port in 1..65535", text);
        return APL_EINVAL;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(why, why_cap, "cannot resolve %s: %s", text, gai_strerror(rc));
        return APL_ENOTFOUND;
    }
    assert(res->ai_addrlen <= sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap) {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, cap, "unknown");
        return;
    }
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
}

/* A non-blocking listening socket on `text`, or -1 with `why` set. */
static int listen_on(const char *text, char *why, size_t why_cap) {
    struct sockaddr_storage sa;
    socklen_t len;
    if (resolve(text, true, &sa, &len, why, why_cap) != 0) {
        return -1;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_cap, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(why, why_cap, "cannot listen on %s: %s", text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int watch(struct proxy *p, int fd, uint32_t events, enum kind k, size_t slot, uint32_t gen) {
    struct epoll_event ev = {.events = events};
    ev.data.u64 = (uint64_t)k << 56 | (uint64_t)slot << 32 | gen;
    return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : APL_EIO;
}

/* Closes `fd` with RST instead of FIN: the peer sees ECONNRESET. */
static void close_rst(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* FIN if it fails: still closed */
    close(fd);
}

/* -- one direction's buffer -- */

static int dir_init(struct dir *d, struct side *src, struct side *dst, uint64_t *total) {
    *d = (struct dir){.src = src, .dst = dst, .total = total};
    d->ring = malloc(CONN_BUFFER_BYTES_MAX);
    d->chunks = malloc(CONN_CHUNKS_MAX * sizeof *d->chunks);
    return d->ring != NULL && d->chunks != NULL ? 0 : APL_ENOMEM;
}

static void dir_free(struct dir *d) {
    free(d->ring);
    free(d->chunks);
    d->ring = NULL;
    d->chunks = NULL;
}

/* Drops every byte held: a blackholed link loses what was in flight. */
static void dir_clear(struct dir *d) {
    d->dropped_bytes += d->used;
    d->head = d->used = 0;
    d->chunk_head = d->chunk_count = 0;
}

static struct chunk *dir_tail(struct dir *d) {
    assert(d->chunk_count > 0);
    return &d->chunks[(d->chunk_head + d->chunk_count - 1) % CONN_CHUNKS_MAX];
}

/* Bytes due at `due` may join the last chunk when they would be written no
 * earlier anyway: the last chunk is due at the same time or later. */
static bool dir_can_merge(struct dir *d, uint64_t due) {
    return d->chunk_count > 0 && due <= dir_tail(d)->due_ns;
}

/* Room for one more read: a free chunk slot is kept so that the read's due
 * time, taken after it returns, never has to merge. */
static size_t dir_room(const struct dir *d) {
    return d->chunk_count < CONN_CHUNKS_MAX ? CONN_BUFFER_BYTES_MAX - d->used : 0;
}

static ssize_t dir_read(struct dir *d, int fd, size_t room) {
    assert(room > 0 && room <= CONN_BUFFER_BYTES_MAX - d->used);
    size_t tail = (d->head + d->used) % CONN_BUFFER_BYTES_MAX;
    size_t first = CONN_BUFFER_BYTES_MAX - tail < room ? CONN_BUFFER_BYTES_MAX - tail : room;
    struct iovec iov[2] = {{d->ring + tail, first}, {d->ring, room - first}};
    return readv(fd, iov, room > first ? 2 : 1);
}

static void dir_push(struct dir *d, size_t n, uint64_t due) {
    d->used += n;
    assert(d->used <= CONN_BUFFER_BYTES_MAX);
    if (dir_can_merge(d, due)) {
        dir_tail(d)->len += n;
        return;
    }
    assert(d->chunk_count < CONN_CHUNKS_MAX);
    d->chunks[(d->chunk_head + d->chunk_count) % CONN_CHUNKS_MAX] =
        (struct chunk){.due_ns = due, .len = n};
    d->chunk_count++;
}

/* Bytes of the first chunk if it is due, else 0. */
static size_t dir_ready(const struct dir *d, uint64_t now_ns) {
    if (d->chunk_count == 0 || d->chunks[d->chunk_head].due_ns > now_ns) {
        return 0;
    }
    return d->chunks[d->chunk_head].len;
}

static ssize_t dir_write(struct dir *d, int fd, size_t len) {
    size_t first = CONN_BUFFER_BYTES_MAX - d->head < len ? CONN_BUFFER_BYTES_MAX - d->head : len;
    struct iovec iov[2] = {{d->ring + d->head, first}, {d->ring, len - first}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len > first ? 2 : 1};
    return sendmsg(fd, &m, MSG_NOSIGNAL); /* a closed peer is EPIPE, not a signal */
}

static void dir_consume(struct dir *d, size_t n) {
    struct chunk *c = &d->chunks[d->chunk_head];
    assert(d->chunk_count > 0 && n <= c->len && n <= d->used);
    d->head = (d->head + n) % CONN_BUFFER_BYTES_MAX;
    d->used -= n;
    c->len -= n;
    if (c->len == 0) {
        d->chunk_head = (d->chunk_head + 1) % CONN_CHUNKS_MAX;
        d->chunk_count--;
    }
    d->bytes += n;
    *d->total += n;
}

/* -- proxied connections -- */

static int conn_fail(struct conn *c, const char *why, int err) {
    c->why = why;
    c->why_errno = err;
    c->why_rst = err == ECONNRESET; /* pass a reset on as a reset */
    return APL_EIO;
}

static bool side_open(const struct conn *c, const struct side *s) {
    return s == &c->client || c->up_state == UP_OPEN;
}

static int dir_pump_read(struct proxy *p, struct conn *c, struct dir *d, bool *progress) {
    size_t room = dir_room(d);
    if (room == 0) {
        return 0; /* full: the sender waits in its kernel buffer */
    }
    ssize_t n = dir_read(d, d->src->fd, room);
    if (n > 0) {
        if (p->mode == MODE_BLACKHOLE) {
            d->dropped_bytes += (uint64_t)n;
        } else {
            /* Timed from now, not from the loop's start: never early. With
             * no delay, due at 0: ready at once, and merged into the last
             * chunk so that it still waits behind earlier delayed bytes. */
            uint64_t due = 0;
            if (p->delay_ms > 0) {
                due = util_mono_ns() + (uint64_t)p->delay_ms * 1000000u;
            }
            dir_push(d, (size_t)n, due);
        }
        *progress = true;
    } else if (n == 0) {
        d->src->eof = true;
        *progress = true;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        d->src->readable = false;
    } else if (errno != EINTR) {
        return conn_fail(c, "read_failed", errno);
    }
    return 0;
}

/* Moves what it can of one direction: reads while there is room, writes
 * due bytes, and passes a FIN on once every byte before it is written.
 * A blackholed link reads and drops, and passes nothing on. */
static int dir_pump(struct proxy *p, struct conn *c, struct dir *d, uint64_t now_ns,
                    bool *progress) {
    if (d->src->readable && !d->src->eof && side_open(c, d->src)) {
        int rc = dir_pump_read(p, c, d, progress);
        if (rc != 0) {
            return rc;
        }
    }
    if (p->mode == MODE_BLACKHOLE || !side_open(c, d->dst)) {
        return 0;
    }
    size_t ready = dir_ready(d, now_ns);
    uint64_t *tokens = &p->tokens[d == &c->up ? 0 : 1];
    if (p->rate_bytes_per_s > 0 && ready > *tokens) {
        ready = (size_t)*tokens; /* the rest waits for the bucket (pump_all's timeout) */
    }
    if (ready > 0 && d->dst->writable) {
        ssize_t n = dir_write(d, d->dst->fd, ready);
        if (n > 0) {
            dir_consume(d, (size_t)n);
            if (p->rate_bytes_per_s > 0) {
                *tokens -= (uint64_t)n;
            }
            *progress = true;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            d->dst->writable = false;
        } else if (n < 0 && errno != EINTR) {
            return conn_fail(c, "write_failed", errno);
        }
    }
    if (d->src->eof && d->used == 0 && !d->dst->shut) {
        if (shutdown(d->dst->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
            return conn_fail(c, "shutdown_failed", errno);
        }
        d->dst->shut = true;
        *progress = true;
    }
    return 0;
}

/* Returns 0 while the connection lives; non-zero with c->why set when it
 * must close (both FINs passed on, or an error). */
static int conn_pump(struct proxy *p, struct conn *c, uint64_t now_ns) {
    for (int round = 0; round < PUMP_ROUNDS_MAX; round++) {
        bool progress = false;
        int rc = dir_pump(p, c, &c->up, now_ns, &progress);
        if (rc == 0) {
            rc = dir_pump(p, c, &c->down, now_ns, &progress);
        }
        if (rc != 0) {
            return rc;
        }
        if (c->client.shut && c->upstream.shut) {
            return conn_fail(c, "closed", 0);
        }
        if (!progress) {
            return 0;
        }
    }
    p->busy = true; /* come back before sleeping */
    return 0;
}

static void conn_close(struct proxy *p, struct conn *c, const char *why, bool rst, int err) {
    assert(c->used);
    char errtext[160] = "";
    if (err != 0) {
        snprintf(errtext, sizeof errtext, " error=\"%s\"", strerror(err));
    }
    log_event(p, "info", "conn_closed",
              "conn=%" PRIu64 " client=%s reason=%s%s bytes_up=%" PRIu64 " bytes_down=%" PRIu64
              " dropped_bytes=%" PRIu64,
              c->id, c->peer, why, errtext, c->up.bytes, c->down.bytes,
              c->up.dropped_bytes + c->down.dropped_bytes);
    int fds[2] = {c->client.fd, c->upstream.fd};
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0 && rst) {
            close_rst(fds[i]);
        } else if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    dir_free(&c->up);
    dir_free(&c->down);
    uint32_t gen = c->gen + 1;
    *c = (struct conn){.gen = gen, .client.fd = -1, .upstream.fd = -1};
    p->conns_live--;
}

/* Starts the upstream connection; the event loop learns the outcome. */
static int conn_connect(struct proxy *p, struct conn *c, size_t slot) {
    int fd = socket(p->to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return conn_fail(c, "upstream_failed", errno);
    }
    c->upstream = (struct side){.fd = fd};
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* latency only */
    if (watch(p, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, KIND_UPSTREAM, slot, c->gen) != 0) {
        return conn_fail(c, "epoll_failed", errno);
    }
    c->up_state = UP_CONNECTING;
    if (connect(fd, (struct sockaddr *)&p->to, p->to_len) == 0) {
        c->up_state = UP_OPEN;
        c->upstream.writable = true;
    } else if (errno != EINPROGRESS) {
        int err = errno;
        conn_fail(c, "upstream_failed", err);
        c->why_rst = true; /* the client sees a refusal, not a clean end */
        return APL_EIO;
    }
    return 0;
}

/* The outcome of a non-blocking connect, on the upstream's first event. */
static void conn_connected(struct proxy *p, struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->upstream.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        log_event(p, "warn", "upstream_failed", "conn=%" PRIu64 " to=%s error=\"%s\"", c->id,
                  p->to_text, strerror(err));
        conn_close(p, c, "upstream_failed", true, err);
        return;
    }
    c->up_state = UP_OPEN;
    log_event(p, "info", "upstream_connected", "conn=%" PRIu64 " to=%s", c->id, p->to_text);
}

static struct conn *conn_slot(struct proxy *p, size_t *slot) {
    for (size_t i = 0; i < p->conns_max; i++) {
        if (!p->conns[i].used) {
            *slot = i;
            return &p->conns[i];
        }
    }
    return NULL;
}

static int conn_open(struct proxy *p, int fd, const char *peer) {
    size_t slot = 0;
    struct conn *c = conn_slot(p, &slot);
    assert(c != NULL); /* the caller checked conns_live < conns_max */
    c->used = true;
    c->id = ++p->next_id;
    c->client = (struct side){.fd = fd};
    c->upstream = (struct side){.fd = -1};
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    p->conns_live++;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* latency only */
    int rc = dir_init(&c->up, &c->client, &c->upstream, &p->bytes_up);
    if (rc == 0) {
        rc = dir_init(&c->down, &c->upstream, &c->client, &p->bytes_down);
    }
    if (rc != 0) {
        conn_fail(c, "out_of_memory", ENOMEM);
        goto fail;
    }
    if (watch(p, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, KIND_CLIENT, slot, c->gen) != 0) {
        conn_fail(c, "epoll_failed", errno);
        goto fail;
    }
    c->up_state = UP_PENDING;
    if (p->mode != MODE_BLACKHOLE && conn_connect(p, c, slot) != 0) {
        goto fail;
    }
    static const char *const up_names[] = {"pending", "connecting", "open"};
    log_event(p, "info", "conn_opened", "conn=%" PRIu64 " client=%s to=%s upstream=%s conns=%zu",
              c->id, c->peer, p->to_text, up_names[c->up_state], p->conns_live);
    return 0;
fail:
    log_event(p, "warn", "conn_failed", "conn=%" PRIu64 " client=%s reason=%s error=\"%s\"", c->id,
              c->peer, c->why, strerror(c->why_errno));
    conn_close(p, c, c->why, c->why_rst, c->why_errno);
    return APL_EIO;
}

static void on_accept(struct proxy *p) {
    for (int i = 0; i < ACCEPT_BATCH_MAX; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(p->listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_event(p, "error", "accept_failed", "error=\"%s\"", strerror(errno));
            }
            return; /* level-triggered: what is left in the backlog comes back */
        }
        char peer[ADDR_TEXT_BYTES_MAX];
        addr_text((struct sockaddr *)&sa, len, peer, sizeof peer);
        if (p->mode == MODE_CUT) {
            log_event(p, "info", "conn_refused", "client=%s reason=cut", peer);
            close(fd);
        } else if (p->conns_live >= p->conns_max) {
            log_event(p, "warn", "conn_refused",
                      "client=%s reason=conns_max conns=%zu conns_max=%zu", peer, p->conns_live,
                      p->conns_max);
            close(fd);
        } else {
            (void)conn_open(p, fd, peer); /* a failure is logged and closed there */
        }
    }
}

/* -- the faults -- */

static size_t close_all(struct proxy *p, const char *why, bool rst) {
    size_t n = 0;
    for (size_t i = 0; i < p->conns_max; i++) {
        if (p->conns[i].used) {
            conn_close(p, &p->conns[i], why, rst, 0);
            n++;
        }
    }
    return n;
}

static void set_mode(struct proxy *p, enum mode m) {
    if (p->mode != m) {
        log_event(p, "info", "mode_changed", "from=%s to=%s conns=%zu", mode_names[p->mode],
                  mode_names[m], p->conns_live);
    }
    p->mode = m;
}

static void fault_blackhole(struct proxy *p) {
    for (size_t i = 0; i < p->conns_max; i++) {
        if (p->conns[i].used) {
            dir_clear(&p->conns[i].up);
            dir_clear(&p->conns[i].down);
        }
    }
    set_mode(p, MODE_BLACKHOLE);
}

/* Back to forwarding; connections accepted while blackholed get their
 * upstream connection now. */
static void fault_heal(struct proxy *p) {
    set_mode(p, MODE_NORMAL);
    for (size_t i = 0; i < p->conns_max; i++) {
        struct conn *c = &p->conns[i];
        if (c->used && c->up_state == UP_PENDING && conn_connect(p, c, i) != 0) {
            log_event(p, "warn", "upstream_failed", "conn=%" PRIu64 " to=%s error=\"%s\"", c->id,
                      p->to_text, strerror(c->why_errno));
            conn_close(p, c, c->why, c->why_rst, c->why_errno);
        }
    }
}

/* -- control connections -- */

static void ctl_status(const struct proxy *p, char *reply, size_t cap) {
    snprintf(reply, cap,
             "ok mode=%s delay_ms=%ld conns=%zu bytes_up=%" PRIu64 " bytes_down=%" PRIu64
             " rate_bytes_per_s=%ld flap_up_ms=%ld flap_down_ms=%ld",
             mode_names[p->mode], p->delay_ms, p->conns_live, p->bytes_up, p->bytes_down,
             p->rate_bytes_per_s, p->flap_up_ms, p->flap_down_ms);
}

static void ctl_delay(struct proxy *p, const char *arg, char *reply, size_t cap) {
    long ms;
    if (arg == NULL || util_parse_long(arg, 0, DELAY_MS_MAX, &ms) != 0) {
        snprintf(reply, cap, "error usage: delay MS, with MS a whole number in 0..%d",
                 DELAY_MS_MAX);
        return;
    }
    if (ms != p->delay_ms) {
        log_event(p, "info", "delay_changed", "from_ms=%ld to_ms=%ld", p->delay_ms, ms);
    }
    p->delay_ms = ms;
    snprintf(reply, cap, "ok delay_ms=%ld", ms);
}

static uint64_t rate_burst(const struct proxy *p) {
    uint64_t b = (uint64_t)p->rate_bytes_per_s / 10;
    return b > RATE_BURST_BYTES_MIN ? b : RATE_BURST_BYTES_MIN;
}

/* Adds the tokens earned since the last fill (whole bytes; the remainder
 * of time is kept for the next fill). */
static void rate_fill(struct proxy *p, uint64_t now_ns) {
    if (p->rate_bytes_per_s <= 0 || now_ns <= p->tokens_ns) {
        return;
    }
    uint64_t rate = (uint64_t)p->rate_bytes_per_s;
    uint64_t earned = (now_ns - p->tokens_ns) / 1000u * rate / 1000000u;
    if (earned == 0) {
        return;
    }
    p->tokens_ns += earned * 1000000000u / rate;
    for (int i = 0; i < 2; i++) {
        p->tokens[i] =
            p->tokens[i] + earned > rate_burst(p) ? rate_burst(p) : p->tokens[i] + earned;
    }
}

/* When a bucket that is empty holds a packet's worth again. */
static uint64_t rate_next_ns(const struct proxy *p) {
    uint64_t need = RATE_BURST_BYTES_MIN;
    return p->tokens_ns + need * 1000000000u / (uint64_t)p->rate_bytes_per_s;
}

static void ctl_rate(struct proxy *p, const char *arg, char *reply, size_t cap) {
    long r;
    if (arg == NULL || util_parse_long(arg, 0, RATE_BYTES_PER_S_MAX, &r) != 0) {
        snprintf(reply, cap,
                 "error usage: rate BYTES_PER_S, with a whole number in 0..%d (0: no limit; "
                 "64 kbit/s is 8000)",
                 RATE_BYTES_PER_S_MAX);
        return;
    }
    if (r != p->rate_bytes_per_s) {
        log_event(p, "info", "rate_changed", "from_bytes_per_s=%ld to_bytes_per_s=%ld",
                  p->rate_bytes_per_s, r);
    }
    p->rate_bytes_per_s = r;
    p->tokens_ns = util_mono_ns();
    p->tokens[0] = p->tokens[1] = r > 0 ? rate_burst(p) : 0;
    snprintf(reply, cap, "ok rate_bytes_per_s=%ld", r);
}

static void flap_stop(struct proxy *p) {
    if (p->flap_next_ns != 0) {
        log_event(p, "info", "flap_stopped", "up_ms=%ld down_ms=%ld", p->flap_up_ms,
                  p->flap_down_ms);
    }
    p->flap_next_ns = 0;
    p->flap_up_ms = p->flap_down_ms = 0;
    p->flap_down = false;
}

/* `flap UP_MS DOWN_MS` starts with the link up; `flap 0 0` stops it. */
static void ctl_flap(struct proxy *p, const char *up, const char *down, char *reply, size_t cap) {
    long u, d;
    if (up == NULL || down == NULL || util_parse_long(up, 0, FLAP_MS_MAX, &u) != 0 ||
        util_parse_long(down, 0, FLAP_MS_MAX, &d) != 0 || (u == 0) != (d == 0)) {
        snprintf(reply, cap,
                 "error usage: flap UP_MS DOWN_MS, each a whole number in 1..%d (flap 0 0: stop)",
                 FLAP_MS_MAX);
        return;
    }
    if (u == 0) {
        flap_stop(p);
        fault_heal(p);
        snprintf(reply, cap, "ok flap=off mode=%s", mode_names[p->mode]);
        return;
    }
    fault_heal(p);
    p->flap_up_ms = u;
    p->flap_down_ms = d;
    p->flap_down = false;
    p->flap_next_ns = util_mono_ns() + (uint64_t)u * 1000000u;
    log_event(p, "info", "flap_started", "up_ms=%ld down_ms=%ld", u, d);
    snprintf(reply, cap, "ok flap_up_ms=%ld flap_down_ms=%ld mode=normal", u, d);
}

/* The next phase of a flapping link, when it is due: down is `cut` (every
 * connection closed, new ones closed at once), up is `heal`. */
static void flap_tick(struct proxy *p, uint64_t now_ns) {
    if (p->flap_next_ns == 0 || now_ns < p->flap_next_ns) {
        return;
    }
    p->flap_down = !p->flap_down;
    long ms = p->flap_down ? p->flap_down_ms : p->flap_up_ms;
    p->flap_next_ns = now_ns + (uint64_t)ms * 1000000u;
    if (p->flap_down) {
        set_mode(p, MODE_CUT);
        close_all(p, "flap", false);
    } else {
        fault_heal(p);
    }
}

static const char command_list[] = "cut blackhole heal delay rate flap reset status";

static bool ctl_known(const char *cmd) {
    static const char *const names[] = {"cut",  "blackhole", "heal",  "delay",
                                        "rate", "flap",      "reset", "status"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(cmd, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Runs one command line; writes one reply line (no newline) to `reply`. */
static void ctl_execute(struct proxy *p, char *line, char *reply, size_t cap) {
    char *words[CTL_WORDS_MAX + 1] = {0};
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(line, " \t\r", &save); w != NULL && n <= CTL_WORDS_MAX;
         w = strtok_r(NULL, " \t\r", &save)) {
        words[n++] = w;
    }
    const char *cmd = words[0];
    int args = cmd == NULL                                             ? 0
               : strcmp(cmd, "delay") == 0 || strcmp(cmd, "rate") == 0 ? 1
               : strcmp(cmd, "flap") == 0                              ? 2
                                                                       : 0;
    char shown[ECHO_WORD_BYTES_MAX + 1];
    if (cmd == NULL) {
        snprintf(reply, cap, "error empty command; commands: %s", command_list);
    } else if (!ctl_known(cmd)) {
        safe_word(cmd, shown, sizeof shown);
        snprintf(reply, cap, "error unknown command '%s'; commands: %s", shown, command_list);
    } else if (n > args + 1) {
        safe_word(cmd, shown, sizeof shown);
        snprintf(reply, cap, "error too many arguments for %s", shown);
    } else if (strcmp(cmd, "status") == 0) {
        ctl_status(p, reply, cap);
    } else if (strcmp(cmd, "rate") == 0) {
        ctl_rate(p, words[1], reply, cap);
    } else if (strcmp(cmd, "flap") == 0) {
        ctl_flap(p, words[1], words[2], reply, cap);
    } else if (strcmp(cmd, "cut") == 0) {
        flap_stop(p); /* a fault set by hand ends the flapping */
        set_mode(p, MODE_CUT);
        size_t closed = close_all(p, "cut", false);
        snprintf(reply, cap, "ok mode=cut closed=%zu", closed);
    } else if (strcmp(cmd, "blackhole") == 0) {
        flap_stop(p);
        fault_blackhole(p);
        snprintf(reply, cap, "ok mode=blackhole conns=%zu", p->conns_live);
    } else if (strcmp(cmd, "heal") == 0) {
        flap_stop(p);
        fault_heal(p);
        snprintf(reply, cap, "ok mode=normal conns=%zu", p->conns_live);
    } else if (strcmp(cmd, "reset") == 0) {
        size_t reset = close_all(p, "reset", true);
        log_event(p, "info", "reset", "conns_reset=%zu mode=%s", reset, mode_names[p->mode]);
        snprintf(reply, cap, "ok reset=%zu mode=%s", reset, mode_names[p->mode]);
    } else {
        assert(args == 1);
        ctl_delay(p, words[1], reply, cap);
    }
    if (strncmp(reply, "error", 5) == 0) {
        log_event(p, "warn", "ctl_error", "reply=\"%s\"", reply + 6);
    }
}

static void ctl_reply(struct ctl *t, const char *reply) {
    size_t len = strlen(reply);
    assert(len + 1 <= CTL_REPLY_BYTES_MAX);
    assert(t->out_len + len + 1 <= CTL_OUT_BYTES_MAX);
    memcpy(t->out + t->out_len, reply, len);
    t->out[t->out_len + len] = '\n';
    t->out_len += len + 1;
}

/* Answers every complete line held, while replies fit. */
static bool ctl_lines(struct proxy *p, struct ctl *t) {
    bool progress = false;
    char *nl;
    while (CTL_OUT_BYTES_MAX - t->out_len >= CTL_REPLY_BYTES_MAX &&
           (nl = memchr(t->in, '\n', t->in_len)) != NULL) {
        *nl = '\0';
        char reply[CTL_REPLY_BYTES_MAX];
        ctl_execute(p, t->in, reply, sizeof reply);
        ctl_reply(t, reply);
        size_t used = (size_t)(nl - t->in) + 1;
        memmove(t->in, t->in + used, t->in_len - used);
        t->in_len -= used;
        progress = true;
    }
    return progress;
}

static int ctl_flush(struct ctl *t, bool *progress) {
    if (!t->writable || t->out_off == t->out_len) {
        return 0;
    }
    ssize_t n = send(t->fd, t->out + t->out_off, t->out_len - t->out_off, MSG_NOSIGNAL);
    if (n > 0) {
        t->out_off += (size_t)n;
        if (t->out_off == t->out_len) {
            t->out_off = t->out_len = 0;
        }
        *progress = true;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        t->writable = false;
    } else if (n < 0 && errno != EINTR) {
        return APL_EIO;
    }
    return 0;
}

static int ctl_read(struct ctl *t, bool *progress) {
    bool line_held = memchr(t->in, '\n', t->in_len) != NULL;
    if (!t->readable || t->eof || (!t->closing && (line_held || t->in_len == sizeof t->in))) {
        return 0;
    }
    ssize_t n = recv(t->fd, t->in + t->in_len, sizeof t->in - t->in_len, 0);
    if (n > 0) {
        /* Once closing, input is drained and dropped: closing with unread
         * bytes would send RST, which can discard the error reply. */
        t->in_len = t->closing ? 0 : t->in_len + (size_t)n;
        *progress = true;
    } else if (n == 0) {
        t->eof = true;
        *progress = true;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        t->readable = false;
    } else if (errno != EINTR) {
        return APL_EIO;
    }
    return 0;
}

/* A line past CTL_LINE_BYTES_MAX is answered and ends the connection; a
 * last line without a newline counts as a line. */
static bool ctl_odd_input(struct ctl *t) {
    if (t->closing || memchr(t->in, '\n', t->in_len) != NULL) {
        return false;
    }
    if (t->in_len == sizeof t->in) {
        if (CTL_OUT_BYTES_MAX - t->out_len < CTL_REPLY_BYTES_MAX) {
            return false; /* answer once the client has read the replies before */
        }
        ctl_reply(t, "error line too long");
        t->in_len = 0;
        t->closing = true;
        return true;
    }
    if (t->eof && t->in_len > 0) {
        t->in[t->in_len++] = '\n';
        return true;
    }
    return false;
}

/* Returns non-zero when the control connection should close. Sets
 * p->busy when its rounds ran out with work left. */
static int ctl_pump(struct proxy *p, struct ctl *t) {
    for (int round = 0; round < PUMP_ROUNDS_MAX; round++) {
        bool progress = ctl_lines(p, t);
        if (ctl_flush(t, &progress) != 0 || ctl_read(t, &progress) != 0) {
            return APL_EIO;
        }
        progress |= ctl_odd_input(t);
        if (!progress) {
            bool idle = t->in_len == 0 || t->closing;
            return t->out_len == 0 && idle && (t->eof || t->closing) ? APL_EIO : 0;
        }
    }
    p->busy = true;
    return 0;
}

static void ctl_close(struct ctl *t) {
    close(t->fd);
    uint32_t gen = t->gen + 1;
    *t = (struct ctl){.gen = gen, .fd = -1};
}

static void on_control_accept(struct proxy *p) {
    for (int i = 0; i < ACCEPT_BATCH_MAX; i++) {
        int fd = accept4(p->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_event(p, "error", "ctl_accept_failed", "error=\"%s\"", strerror(errno));
            }
            return; /* level-triggered: what is left in the backlog comes back */
        }
        size_t slot = CTL_CONNS_MAX;
        for (size_t j = 0; j < CTL_CONNS_MAX && slot == CTL_CONNS_MAX; j++) {
            slot = p->ctls[j].used ? slot : j;
        }
        if (slot == CTL_CONNS_MAX) {
            log_event(p, "warn", "ctl_refused", "reason=ctl_conns_max ctl_conns_max=%d",
                      CTL_CONNS_MAX);
            close(fd);
            continue;
        }
        struct ctl *t = &p->ctls[slot];
        *t = (struct ctl){.used = true, .gen = t->gen, .fd = fd};
        if (watch(p, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, KIND_CTL, slot, t->gen) != 0) {
            log_event(p, "error", "epoll_failed", "error=\"%s\"", strerror(errno));
            ctl_close(t);
        }
    }
}

/* -- the loop -- */

static void on_signal(struct proxy *p) {
    struct signalfd_siginfo si;
    ssize_t n = read(p->signal_fd, &si, sizeof si);
    if (n == (ssize_t)sizeof si) {
        log_event(p, "info", "stopping", "signal=%s", si.ssi_signo == SIGINT ? "INT" : "TERM");
        p->stopping = true;
    }
}

static void dispatch(struct proxy *p, const struct epoll_event *ev) {
    enum kind k = (enum kind)(ev->data.u64 >> 56);
    size_t slot = (size_t)(ev->data.u64 >> 32 & 0xffffff);
    uint32_t gen = (uint32_t)ev->data.u64;
    bool in = (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    bool out = (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    if (k == KIND_LISTEN) {
        on_accept(p);
    } else if (k == KIND_CONTROL) {
        on_control_accept(p);
    } else if (k == KIND_SIGNAL) {
        on_signal(p);
    } else if (k == KIND_CTL) {
        struct ctl *t = &p->ctls[slot];
        if (t->used && t->gen == gen) {
            t->readable |= in;
            t->writable |= out;
        }
    } else if (k == KIND_CLIENT || k == KIND_UPSTREAM) {
        struct conn *c = &p->conns[slot];
        if (!c->used || c->gen != gen) {
            return; /* closed earlier in this batch */
        }
        struct side *s = k == KIND_CLIENT ? &c->client : &c->upstream;
        s->readable |= in;
        s->writable |= out;
        if (k == KIND_UPSTREAM && c->up_state == UP_CONNECTING && out) {
            conn_connected(p, c);
        }
    }
}

/* Pumps every control and proxied connection; returns the epoll timeout
 * until the next delayed chunk falls due (-1: none, 0: work left). */
static int pump_all(struct proxy *p) {
    p->busy = false;
    for (size_t i = 0; i < CTL_CONNS_MAX; i++) {
        if (p->ctls[i].used && ctl_pump(p, &p->ctls[i]) != 0) {
            ctl_close(&p->ctls[i]);
        }
    }
    uint64_t now_ns = util_mono_ns();
    flap_tick(p, now_ns);
    rate_fill(p, now_ns);
    uint64_t next_ns = p->flap_next_ns != 0 ? p->flap_next_ns : UINT64_MAX;
    for (size_t i = 0; i < p->conns_max; i++) {
        struct conn *c = &p->conns[i];
        if (!c->used) {
            continue;
        }
        if (conn_pump(p, c, now_ns) != 0) {
            conn_close(p, c, c->why, c->why_rst, c->why_errno);
            continue;
        }
        struct dir *dirs[2] = {&c->up, &c->down};
        for (int j = 0; j < 2; j++) {
            struct dir *d = dirs[j];
            uint64_t due = d->chunk_count > 0 ? d->chunks[d->chunk_head].due_ns : UINT64_MAX;
            if (due <= now_ns && p->rate_bytes_per_s > 0 && p->mode == MODE_NORMAL) {
                due = rate_next_ns(p); /* due, held back by the rate */
            }
            if (due > now_ns && due < next_ns) {
                next_ns = due;
            }
        }
    }
    if (p->busy) {
        return 0;
    }
    if (next_ns == UINT64_MAX) {
        return -1;
    }
    uint64_t wait_ms = (next_ns - now_ns + 999999u) / 1000000u; /* round up: never early */
    return wait_ms > DELAY_MS_MAX ? DELAY_MS_MAX : (int)wait_ms;
}

static int proxy_run(struct proxy *p) {
    struct epoll_event evs[EPOLL_EVENTS_MAX];
    int timeout_ms = -1;
    while (!p->stopping) {
        int n = epoll_wait(p->epfd, evs, EPOLL_EVENTS_MAX, timeout_ms);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            log_event(p, "error", "epoll_failed", "error=\"%s\"", strerror(errno));
            return APL_EIO;
        }
        for (int i = 0; i < n; i++) {
            dispatch(p, &evs[i]);
        }
        timeout_ms = pump_all(p);
    }
    return 0;
}

/* -- setup and teardown -- */

/* Each connection takes two descriptors: raise the soft limit to fit
 * --conns-max, or say plainly that it cannot. */
static int fit_fd_limit(size_t conns_max, char *why, size_t why_cap) {
    rlim_t need = (rlim_t)(2 * conns_max + CTL_CONNS_MAX + FDS_SPARE);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(why, why_cap, "getrlimit: %s", strerror(errno));
        return APL_EIO;
    }
    if (rl.rlim_cur >= need) {
        return 0;
    }
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        snprintf(why, why_cap, "--conns-max %zu needs %ju file descriptors; the limit is %ju",
                 conns_max, (uintmax_t)need, (uintmax_t)rl.rlim_max);
        return APL_EUNAVAIL;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(why, why_cap, "setrlimit: %s", strerror(errno));
        return APL_EIO;
    }
    return 0;
}

static int proxy_open(struct proxy *p, const struct options *o, char *why, size_t why_cap) {
    p->conns_max = (size_t)o->conns_max;
    snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : o->listen);
    snprintf(p->to_text, sizeof p->to_text, "%s", o->to);
    int rc = fit_fd_limit(p->conns_max, why, why_cap);
    if (rc == 0) {
        rc = resolve(o->to, false, &p->to, &p->to_len, why, why_cap);
    }
    if (rc != 0) {
        return rc;
    }
    p->conns = calloc(p->conns_max, sizeof *p->conns);
    if (p->conns == NULL) {
        snprintf(why, why_cap, "out of memory for %zu connections", p->conns_max);
        return APL_ENOMEM;
    }
    for (size_t i = 0; i < p->conns_max; i++) {
        p->conns[i].client.fd = p->conns[i].upstream.fd = -1;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0 ||
        (p->signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        (p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(why, why_cap, "signals and epoll: %s", strerror(errno));
        return APL_EIO;
    }
    if ((p->listen_fd = listen_on(o->listen, why, why_cap)) < 0 ||
        (p->control_fd = listen_on(o->control, why, why_cap)) < 0) {
        return APL_EIO;
    }
    if (watch(p, p->listen_fd, EPOLLIN, KIND_LISTEN, 0, 0) != 0 ||
        watch(p, p->control_fd, EPOLLIN, KIND_CONTROL, 0, 0) != 0 ||
        watch(p, p->signal_fd, EPOLLIN, KIND_SIGNAL, 0, 0) != 0) {
        snprintf(why, why_cap, "epoll_ctl: %s", strerror(errno));
        return APL_EIO;
    }
    return 0;
}

/* Closes what proxy_open and the loop opened; safe after a partial open. */
static void proxy_close(struct proxy *p) {
    if (p->conns != NULL) {
        close_all(p, "shutdown", false);
    }
    for (size_t i = 0; i < CTL_CONNS_MAX; i++) {
        if (p->ctls[i].used) {
            ctl_close(&p->ctls[i]);
        }
    }
    int fds[4] = {p->listen_fd, p->control_fd, p->signal_fd, p->epfd};
    for (int i = 0; i < 4; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    free(p->conns);
    p->conns = NULL;
}

/* -- command line -- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...) {
    fprintf(stderr, "appeal-faultproxy: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_text);
    return 2;
}

static bool name_ok(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len >= NAME_BYTES_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] >= 127 || s[i] == '"' || s[i] == '=' || s[i] == '\\') {
            return false;
        }
    }
    return true;
}

/* Returns 0, 1 for --help, or the exit status of a usage error. */
static int parse_options(int argc, char **argv, struct options *o) {
    *o = (struct options){.conns_max = CONNS_DEFAULT};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            return 1;
        }
        const char **slot = strcmp(opt, "--listen") == 0    ? &o->listen
                            : strcmp(opt, "--to") == 0      ? &o->to
                            : strcmp(opt, "--control") == 0 ? &o->control
                            : strcmp(opt, "--name") == 0    ? &o->name
                                                            : NULL;
        bool is_conns = strcmp(opt, "--conns-max") == 0;
        if (slot == NULL && !is_conns) {
            return usage_error("unknown argument '%s'", opt);
        }
        if (i + 1 >= argc) {
            return usage_error("%s needs a value", opt);
        }
        const char *val = argv[++i];
        if (is_conns && util_parse_long(val, 1, CONNS_MAX, &o->conns_max) != 0) {
            return usage_error("--conns-max must be a whole number in 1..4096, not '%s'", val);
        }
        if (slot != NULL) {
            *slot = val;
        }
    }
    const char *missing = !o->listen ? "--listen" : !o->to ? "--to" : !o->control ? "--control" : 0;
    if (missing != NULL) {
        return usage_error("%s is required", missing);
    }
    const char *addrs[3] = {o->listen, o->to, o->control};
    char host[ADDR_TEXT_BYTES_MAX], port[8];
    for (int i = 0; i < 3; i++) {
        if (split_hostport(addrs[i], host, sizeof host, port, sizeof port) != 0) {
            return usage_error("'%s' is not HOST:PORT with a port in 1..65535", addrs[i]);
        }
    }
    if (o->name != NULL && !name_ok(o->name)) {
        return usage_error("--name '%s' must be 1..63 printable bytes without spaces, '\"' or '='",
                           o->name);
    }
    return 0;
}

/* -- ctl: the client side of the control port -- */

static int ctl_send(const char *addr, const char *line, char *reply, size_t cap) {
    struct sockaddr_storage sa;
    socklen_t len;
    char why[256];
    if (resolve(addr, false, &sa, &len, why, sizeof why) != 0) {
        fprintf(stderr, "appeal-faultproxy ctl: %s\n", why);
        return APL_EINVAL;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "appeal-faultproxy ctl: socket: %s\n", strerror(errno));
        return APL_EIO;
    }
    int rc = APL_EIO;
    size_t got = 0;
    struct timeval tv = {.tv_sec = CTL_CLIENT_TIMEOUT_MS / 1000,
                         .tv_usec = (CTL_CLIENT_TIMEOUT_MS % 1000) * 1000};
    /* On Linux SO_SNDTIMEO also bounds connect(). */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&sa, len) != 0) {
        fprintf(stderr, "appeal-faultproxy ctl: cannot connect to %s: %s\n", addr, strerror(errno));
        goto fail;
    }
    size_t line_len = strlen(line);
    if (send(fd, line, line_len, MSG_NOSIGNAL) != (ssize_t)line_len) {
        fprintf(stderr, "appeal-faultproxy ctl: cannot send to %s: %s\n", addr, strerror(errno));
        goto fail;
    }
    while (got + 1 < cap && memchr(reply, '\n', got) == NULL) {
        ssize_t n = recv(fd, reply + got, cap - 1 - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    char *nl = memchr(reply, '\n', got);
    if (nl == NULL) {
        fprintf(stderr, "appeal-faultproxy ctl: no reply line from %s (closed or timed out)\n",
                addr);
        goto fail;
    }
    *nl = '\0';
    rc = 0;
fail:
    close(fd);
    return rc;
}

static int ctl_main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        return usage_error("%s", "ctl takes HOST:PORT, a command and at most one argument");
    }
    char line[CTL_LINE_BYTES_MAX];
    int n = snprintf(line, sizeof line, "%s%s%s\n", argv[1], argc == 3 ? " " : "",
                     argc == 3 ? argv[2] : "");
    if (n < 0 || (size_t)n >= sizeof line || strpbrk(argv[1], "\r\n") != NULL ||
        (argc == 3 && strpbrk(argv[2], "\r\n") != NULL)) {
        return usage_error("%s", "the command must be one line shorter than 256 bytes");
    }
    char reply[CTL_REPLY_BYTES_MAX + 1];
    if (ctl_send(argv[0], line, reply, sizeof reply) != 0) {
        return 1;
    }
    printf("%s\n", reply);
    bool ok = strncmp(reply, "ok", 2) == 0 && (reply[2] == '\0' || reply[2] == ' ');
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
        return ctl_main(argc - 2, argv + 2);
    }
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc == 1) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    struct proxy p = {.epfd = -1, .listen_fd = -1, .control_fd = -1, .signal_fd = -1};
    for (size_t i = 0; i < CTL_CONNS_MAX; i++) {
        p.ctls[i].fd = -1;
    }
    char why[512] = "";
    rc = proxy_open(&p, &o, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "appeal-faultproxy: %s\n", why);
        proxy_close(&p);
        return 1; /* arguments were checked above: this is the system saying no */
    }
    log_event(&p, "info", "started", "listen=%s to=%s control=%s conns_max=%zu", o.listen, o.to,
              o.control, p.conns_max);
    rc = proxy_run(&p);
    proxy_close(&p);
    log_event(&p, "info", "stopped", "bytes_up=%" PRIu64 " bytes_down=%" PRIu64, p.bytes_up,
              p.bytes_down);
    return rc == 0 ? 0 : 1;
}
