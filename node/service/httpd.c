#include "httpd.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "olog.h"
#include "util.h"

/* C_WAIT: a handler deferred its answer (httpd_answer). */
enum conn_state { C_READ, C_WRITE, C_LINGER, C_WAIT };

struct conn {
    int fd;
    enum conn_state state;
    unsigned char *buf; /* request bytes; NULL while idle */
    size_t cap, len;
    size_t need;      /* bytes of the current request once its head is parsed; 0 before */
    int64_t last_ms;  /* last request finished (idle since) */
    int64_t start_ms; /* first byte of the request, or start of the write */
    bool close_after;
    bool head_only;              /* the deferred answer is to a HEAD */
    uint64_t serial;             /* tickets name it: a reused slot has another */
    char peer[HTTPD_PEER_BYTES]; /* the client's address, numeric */
    char head[512];              /* response head */
    size_t head_len;
    const unsigned char *out;
    size_t out_len, sent; /* over head, then out */
    bool out_free;
};

/* Closes and refusals, logged at most once a second. */
enum { K_CAP, K_FDS, K_EVICTED, K_IDLE, K_REQUEST_TIMEOUT, K_RESPONSE_TIMEOUT, K_BAD, K_COUNT };
static const char *const count_names[K_COUNT] = {
    "refused_cap",     "refused_descriptors", "evicted_idle", "idle",
    "request_timeout", "response_timeout",    "bad_request"};

struct httpd {
    int lfd, wake[2], reserve_fd;
    struct httpd_route routes[HTTPD_ROUTES_MAX];
    size_t n_routes;
    struct httpd_limits lim;
    struct conn **conns; /* lim.connections_max slots, NULL when free */
    uint32_t n_conns;
    struct pollfd *pfd; /* wake pipe, listener, then open connections */
    uint32_t *slot;     /* pfd entry -> conns slot */
    _Atomic uint64_t *gauge;
    int64_t backoff_until_ms;
    uint64_t counts[K_COUNT];
    int64_t logged_ms;
    pthread_t th;
    bool running;
    char scratch[HTTPD_HEAD_BYTES_MAX]; /* the head being parsed */
    struct httpd_header hdrs[HTTPD_HEADERS_MAX];
    uint64_t next_serial;
    /* Deferred answers handed in by other threads (httpd_answer): at most
     * one per waiting connection, so at most connections_max. */
    pthread_mutex_t qmu;
    struct answer *q_head, *q_tail;
    _Atomic bool stopping;
};

struct answer {
    struct httpd_ticket t;
    struct httpd_res res;
    struct answer *next;
};

static int64_t now_ms(void) {
    return (int64_t)(util_mono_ns() / 1000000u);
}

const char *httpd_header(const struct httpd_req *r, const char *name) {
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

/* ---- logging ---- */

static void counts_flush(struct httpd *h, int64_t now, bool force) {
    if (!force && now - h->logged_ms < 1000) {
        return;
    }
    const char *kv[2 * K_COUNT];
    char num[K_COUNT][24];
    size_t n = 0;
    bool warn = false;
    for (int k = 0; k < K_COUNT; k++) {
        if (h->counts[k] != 0) {
            snprintf(num[k], sizeof num[k], "%llu", (unsigned long long)h->counts[k]);
            kv[n++] = count_names[k];
            kv[n++] = num[k];
            warn = warn || k == K_CAP || k == K_FDS;
            h->counts[k] = 0;
        }
    }
    if (n == 0) {
        return;
    }
    h->logged_ms = now;
    while (n < 2 * K_COUNT) {
        kv[n++] = NULL;
    }
    /* One line; the pairs not used are NULL and end the list early. */
    olog(warn ? OLOG_WARN : OLOG_INFO, warn ? "connection_refused" : "connections_closed",
         "listener", h->lim.listener != NULL ? h->lim.listener : "http", kv[0], kv[1], kv[2], kv[3],
         kv[4], kv[5], kv[6], kv[7], kv[8], kv[9], kv[10], kv[11], kv[12], kv[13], NULL);
}

/* ---- connections ---- */

static void conn_close(struct httpd *h, uint32_t i) {
    struct conn *c = h->conns[i];
    close(c->fd);
    if (c->out_free) {
        free((void *)c->out);
    }
    free(c->buf);
    free(c);
    h->conns[i] = NULL;
    h->n_conns--;
    if (h->gauge != NULL) {
        atomic_fetch_sub_explicit(h->gauge, 1, memory_order_relaxed);
    }
}

static void out_release(struct conn *c) {
    if (c->out_free) {
        free((void *)c->out);
    }
    c->out = NULL;
    c->out_len = c->sent = c->head_len = 0;
    c->out_free = false;
}

/* Sets up the response of `c`; a HEAD request gets the headers only. */
static void respond(struct httpd *h, struct conn *c, const struct httpd_res *r, bool head_only,
                    const char *allow) {
    const char *type = r->content_type != NULL ? r->content_type : "text/plain";
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s%s%s"
                     "Connection: %s\r\n\r\n",
                     r->status, reason(r->status), type, r->len,
                     r->cache_control != NULL ? "Cache-Control: " : "",
                     r->cache_control != NULL ? r->cache_control : "",
                     r->cache_control != NULL ? "\r\n" : "", allow != NULL ? allow : "",
                     allow != NULL ? "\r\n" : "", c->close_after ? "close" : "keep-alive");
    assert(n > 0 && (size_t)n < sizeof c->head); /* types and statuses are ours */
    c->head_len = (size_t)n;
    c->out = r->body;
    c->out_len = head_only ? 0 : r->len;
    c->out_free = r->body_free;
    c->sent = 0;
    c->state = C_WRITE;
    c->start_ms = now_ms();
    (void)h;
}

/* The server's own answer of `status` (plain `text`, or the owner's
 * rendering of it) for a request to `path` (NULL: unknown). */
static void own_answer(struct httpd *h, const char *path, int status, const char *text,
                       struct httpd_res *r) {
    *r = (struct httpd_res){.status = status,
                            .content_type = "text/plain; charset=utf-8",
                            .body = text,
                            .len = strlen(text),
                            .cache_control = "no-store"};
    if (h->lim.on_error != NULL) {
        h->lim.on_error(h->lim.on_error_arg, path, status, text, r);
        r->status = status;
    }
}

/* An error answer; the connection closes after it. */
static void fail(struct httpd *h, struct conn *c, const char *path, int status, const char *text) {
    struct httpd_res r;
    own_answer(h, path, status, text, &r);
    c->close_after = true;
    c->need = 0;
    c->len = 0; /* what came with it is not read any further */
    if (status != 404 && status != 405) {
        h->counts[K_BAD]++;
    }
    respond(h, c, &r, false, NULL);
}

/* Writes what it can; true when the whole response is out. */
static int conn_write(struct conn *c) {
    while (c->sent < c->head_len + c->out_len) {
        struct iovec v[2];
        int nv = 0;
        if (c->sent < c->head_len) {
            v[nv++] = (struct iovec){c->head + c->sent, c->head_len - c->sent};
            v[nv++] = (struct iovec){(void *)c->out, c->out_len};
        } else {
            v[nv++] = (struct iovec){(void *)(c->out + (c->sent - c->head_len)),
                                     c->out_len - (c->sent - c->head_len)};
        }
        struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)nv};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return 0;
            }
            return -1;
        }
        c->sent += (size_t)w;
    }
    return 1;
}

/* ---- parsing ---- */

static bool is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int bad(struct httpd_parsed *p, int status, const char *why) {
    p->status = status;
    p->why = why;
    return -1;
}

/* Whether the comma-separated list `v` holds `token` (no case). */
static bool has_token(const char *v, const char *token) {
    size_t tl = strlen(token);
    while (*v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',') {
            v++;
        }
        size_t n = strcspn(v, ",");
        size_t m = n;
        while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t')) {
            m--;
        }
        if (m == tl && strncasecmp(v, token, tl) == 0) {
            return true;
        }
        v += n;
    }
    return false;
}

/* "METHOD /target HTTP/1.x", NUL-terminated in place. */
static int parse_request_line(char *s, struct httpd_parsed *p) {
    char *sp = s;
    while (is_tchar((unsigned char)*sp)) {
        sp++;
    }
    if (sp == s || *sp != ' ' || sp - s > 16) {
        return bad(p, 400, "bad request: malformed request line\n");
    }
    *sp = '\0';
    char *t = sp + 1, *te = t;
    while ((unsigned char)*te > 0x20 && (unsigned char)*te < 0x7f) {
        te++;
    }
    if (te == t || *te != ' ' || *t != '/') {
        return bad(p, 400, "bad request: malformed request target\n");
    }
    *te = '\0';
    const char *v = te + 1;
    if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9' || v[8] != '\0') {
        return bad(p, 400, "bad request: malformed HTTP version\n");
    }
    if (v[5] != '1' || v[7] > '1') {
        return bad(p, 505, "HTTP version not supported: use HTTP/1.1\n");
    }
    p->req.method = s;
    p->req.minor_version = v[7] - '0';
    char *q = strchr(t, '?');
    p->req.query = "";
    if (q != NULL) {
        *q = '\0';
        p->req.query = q + 1;
    }
    p->req.path = t;
    return 0;
}

/* "Name: value" into hdrs[n]; the line is NUL-terminated. */
static int parse_header_line(char *s, struct httpd_header *hd, struct httpd_parsed *p) {
    char *c = s;
    while (is_tchar((unsigned char)*c)) {
        c++;
    }
    if (c == s || *c != ':') {
        return bad(p, 400, "bad request: malformed header line\n");
    }
    *c++ = '\0';
    while (*c == ' ' || *c == '\t') {
        c++;
    }
    char *end = c + strlen(c);
    for (const char *k = c; k < end; k++) {
        unsigned char ch = (unsigned char)*k;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return bad(p, 400, "bad request: control character in a header\n");
        }
    }
    while (end > c && (end[-1] == ' ' || end[-1] == '\t')) {
        *--end = '\0';
    }
    hd->name = s;
    hd->value = c;
    return 0;
}

/* Content-Length, Transfer-Encoding, Host, Connection, Expect. */
static int head_semantics(struct httpd_parsed *p, size_t body_max) {
    const struct httpd_req *r = &p->req;
    const char *cl = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct httpd_header *hd = &r->headers[i];
        if (strcasecmp(hd->name, "Transfer-Encoding") == 0) {
            return has_token(hd->value, "chunked")
                       ? bad(p, 411,
                             "length required: send the body with Content-Length, not "
                             "chunked\n")
                       : bad(p, 501, "not implemented: Transfer-Encoding\n");
        }
        if (strcasecmp(hd->name, "Content-Length") == 0) {
            if (cl != NULL && strcmp(cl, hd->value) != 0) {
                return bad(p, 400, "bad request: conflicting Content-Length\n");
            }
            cl = hd->value;
        }
    }
    p->body_len = 0;
    if (cl != NULL) {
        size_t n = strlen(cl);
        if (n == 0 || n > 19 || strspn(cl, "0123456789") != n) {
            return bad(p, 400, "bad request: malformed Content-Length\n");
        }
        unsigned long long v = strtoull(cl, NULL, 10);
        if (v > body_max) {
            return bad(p, 413, "content too large\n");
        }
        p->body_len = (size_t)v;
    }
    if (r->minor_version == 1 && httpd_header(r, "Host") == NULL) {
        return bad(p, 400, "bad request: no Host header\n");
    }
    const char *conn = httpd_header(r, "Connection");
    p->keep_alive = r->minor_version == 1 ? !(conn != NULL && has_token(conn, "close"))
                                          : (conn != NULL && has_token(conn, "keep-alive"));
    const char *ex = httpd_header(r, "Expect");
    p->expect_continue = r->minor_version == 1 && ex != NULL && strcasecmp(ex, "100-continue") == 0;
    return 0;
}

/* Parses a complete head (head_len bytes, ending in CRLF CRLF) copied into
 * `scratch`, with room for HTTPD_HEADERS_MAX headers in `hdrs`. */
static int parse_head(const unsigned char *buf, size_t head_len, char *scratch,
                      struct httpd_header *hdrs, size_t body_max, struct httpd_parsed *p) {
    memset(p, 0, sizeof *p);
    p->head_len = head_len;
    if (memchr(buf, '\0', head_len) != NULL) {
        return bad(p, 400, "bad request: NUL in the request head\n");
    }
    memcpy(scratch, buf, head_len);
    scratch[head_len - 2] = '\0'; /* the last CRLF: the head ends after its last line's CRLF */
    char *line = scratch, *eol = strstr(line, "\r\n");
    *eol = '\0';
    if (strchr(line, '\n') != NULL || parse_request_line(line, p) != 0) {
        return p->status != 0 ? -1 : bad(p, 400, "bad request: bare LF in the head\n");
    }
    size_t n = 0;
    for (line = eol + 2; *line != '\0'; line = eol + 2) {
        eol = strstr(line, "\r\n");
        assert(eol != NULL); /* every line of a complete head ends in CRLF */
        *eol = '\0';
        if (*line == ' ' || *line == '\t' || strchr(line, '\n') != NULL) {
            return bad(p, 400, "bad request: folded header or bare LF\n");
        }
        if (n == HTTPD_HEADERS_MAX) {
            return bad(p, 431, "request header fields too large: too many\n");
        }
        if (parse_header_line(line, &hdrs[n], p) != 0) {
            return -1;
        }
        n++;
    }
    p->req.headers = hdrs;
    p->req.n_headers = n;
    return head_semantics(p, body_max);
}

/* ---- requests ---- */

/* An exact path, or a prefix when the route's path ends in '*'. */
static bool route_match(const char *route, const char *path) {
    size_t n = strlen(route);
    if (n > 0 && route[n - 1] == '*') {
        return strncmp(route, path, n - 1) == 0;
    }
    return strcmp(route, path) == 0;
}

/* Finds the route and runs it into c's response (c is conns[slot]). */
static void dispatch(struct httpd *h, uint32_t slot, struct conn *c, const struct httpd_parsed *p) {
    const struct httpd_req *r = &p->req;
    bool head = strcmp(r->method, "HEAD") == 0, path_known = false;
    char allow[128] = "Allow: ";
    for (size_t i = 0; i < h->n_routes; i++) {
        const struct httpd_route *rt = &h->routes[i];
        if (!route_match(rt->path, r->path)) {
            continue;
        }
        path_known = true;
        bool get = strcmp(rt->method, "GET") == 0;
        if (strcmp(rt->method, r->method) == 0 || (head && get)) {
            struct httpd_res res = {.status = 500, .content_type = "text/plain"};
            struct httpd_req rq = *r;
            rq.ticket = (struct httpd_ticket){h, slot, c->serial};
            rq.peer = c->peer;
            rt->fn(rt->arg, &rq, &res);
            c->close_after = !p->keep_alive;
            if (res.defer) {
                c->state = C_WAIT; /* httpd_answer() takes it on */
                c->head_only = head;
                c->start_ms = now_ms();
                return;
            }
            respond(h, c, &res, head, NULL);
            return;
        }
        size_t al = strlen(allow);
        snprintf(allow + al, sizeof allow - al, "%s%s%s", al > 7 ? ", " : "", rt->method,
                 get ? ", HEAD" : "");
    }
    struct httpd_res res;
    if (!path_known) {
        own_answer(h, r->path, 404, "not found\n", &res);
        c->close_after = !p->keep_alive;
        respond(h, c, &res, head, NULL);
        return;
    }
    own_answer(h, r->path, 405, "method not allowed\n", &res);
    c->close_after = !p->keep_alive;
    respond(h, c, &res, head, allow);
}

static size_t head_end(const unsigned char *b, size_t len) {
    for (size_t i = 3; i < len; i++) {
        if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r') {
            return i + 1;
        }
    }
    return 0;
}

int httpd_parse(const unsigned char *buf, size_t len, char *scratch, struct httpd_header *hdrs,
                size_t body_max, struct httpd_parsed *p) {
    size_t he = head_end(buf, len < HTTPD_HEAD_BYTES_MAX ? len : HTTPD_HEAD_BYTES_MAX);
    if (he == 0) {
        memset(p, 0, sizeof *p);
        if (len >= HTTPD_HEAD_BYTES_MAX) {
            return bad(p, 431, "request header fields too large\n");
        }
        return 1;
    }
    return parse_head(buf, he, scratch, hdrs, body_max, p);
}

/* With the bytes read so far: answers a complete request, answers an
 * error, or waits for more (the buffer grown to hold the body). */
static void conn_parse(struct httpd *h, uint32_t slot, struct conn *c) {
    size_t skip = 0; /* empty lines before a request are ignored */
    while (skip < c->len && (c->buf[skip] == '\r' || c->buf[skip] == '\n')) {
        skip++;
    }
    if (skip > 0) {
        memmove(c->buf, c->buf + skip, c->len - skip);
        c->len -= skip;
    }
    struct httpd_parsed p;
    int rc = httpd_parse(c->buf, c->len, h->scratch, h->hdrs, h->lim.body_bytes_max, &p);
    if (rc > 0) {
        return;
    }
    if (rc < 0) {
        fail(h, c, p.req.path, p.status, p.why);
        return;
    }
    size_t he = p.head_len;
    size_t need = he + p.body_len;
    if (c->len < need) {
        if (c->cap < need) {
            unsigned char *nb = realloc(c->buf, need);
            if (nb == NULL) {
                fail(h, c, p.req.path, 503, "service unavailable: out of memory\n");
                return;
            }
            c->buf = nb;
            c->cap = need;
        }
        if (p.expect_continue && c->need == 0) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            (void)send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        c->need = need;
        return;
    }
    p.req.body = c->buf + he;
    p.req.body_len = p.body_len;
    c->need = need;
    dispatch(h, slot, c, &p);
}

/* Reads what is there; -1 when the connection is to be closed. */
static int conn_read(struct httpd *h, struct conn *c) {
    if (c->buf == NULL) {
        c->buf = malloc(HTTPD_HEAD_BYTES_MAX);
        if (c->buf == NULL) {
            return -1;
        }
        c->cap = HTTPD_HEAD_BYTES_MAX;
    }
    for (;;) {
        if (c->len == c->cap) {
            return 0; /* full: conn_parse answers 431 or has grown it for a body */
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (r == 0) {
            return -1;
        }
        if (r < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        }
        if (c->len == 0) {
            c->start_ms = now_ms(); /* the request's deadline runs from here */
        }
        c->len += (size_t)r;
        (void)h;
    }
}

static int conn_read_or_release(struct httpd *h, struct conn *c) {
    int rc = conn_read(h, c);
    if (rc == 0 && c->len == 0 && c->need == 0) {
        free(c->buf); /* woken with nothing to read: still idle */
        c->buf = NULL;
        c->cap = 0;
    }
    return rc;
}

/* After a response is out: close, linger, or go on with the next request
 * (pipelined bytes are kept). */
static int conn_done(struct httpd *h, struct conn *c) {
    out_release(c);
    if (c->close_after) {
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->start_ms = now_ms();
        return 0;
    }
    size_t used = c->need <= c->len ? c->need : c->len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    c->need = 0;
    c->state = C_READ;
    c->last_ms = c->start_ms = now_ms();
    if (c->len == 0) {
        free(c->buf); /* an idle connection holds no buffer */
        c->buf = NULL;
        c->cap = 0;
    }
    (void)h;
    return 1;
}

/* Moves `c` as far as its bytes and the socket allow; -1: close it. */
static int conn_step(struct httpd *h, uint32_t slot, struct conn *c, short revents) {
    if (c->state == C_WAIT) { /* nothing is read until the answer comes */
        return (revents & (POLLHUP | POLLERR)) != 0 ? -1 : 0;
    }
    if (c->state == C_LINGER) {
        char sink[4096];
        ssize_t r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ? -1 : 0;
    }
    if (c->state == C_READ && (revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
        conn_read_or_release(h, c) != 0) {
        return -1;
    }
    /* Each round answers one request of the buffer: bounded by its size. */
    for (size_t round = 0; round < HTTPD_HEAD_BYTES_MAX; round++) {
        if (c->state == C_READ) {
            if (c->len == 0) {
                return 0;
            }
            conn_parse(h, slot, c);
            if (c->state == C_READ || c->state == C_WAIT) {
                return 0;
            }
        }
        int w = conn_write(c);
        if (w <= 0) {
            return w;
        }
        if (conn_done(h, c) == 0) {
            return 0;
        }
    }
    return 0;
}

/* ---- the listener ---- */

/* When the cap is reached: the connection idle longest (no request begun,
 * none waiting to be read) makes room; none idle: -1. */
static int evict_idle(struct httpd *h) {
    uint32_t victim = UINT32_MAX;
    for (uint32_t i = 0; i < h->lim.connections_max; i++) {
        const struct conn *c = h->conns[i];
        char b;
        if (c != NULL && c->state == C_READ && c->buf == NULL &&
            (victim == UINT32_MAX || c->last_ms < h->conns[victim]->last_ms) &&
            recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) { /* no request waiting unread */
            victim = i;
        }
    }
    if (victim == UINT32_MAX) {
        return -1;
    }
    conn_close(h, victim);
    h->counts[K_EVICTED]++;
    return 0;
}

static void refuse(struct httpd *h, int fd) {
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 31\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                               "service unavailable: too busy\r\n";
    char sink[1024]; /* what already came: unread bytes make close() send a reset */
    (void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    (void)send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    close(fd);
    h->counts[K_CAP]++;
}

/* Out of descriptors: the reserve one is given up to take the pending
 * connection off the queue and close it; without it, the listener rests. */
static void out_of_descriptors(struct httpd *h, int64_t now) {
    h->counts[K_FDS]++;
    if (h->reserve_fd >= 0) {
        close(h->reserve_fd);
        h->reserve_fd = -1;
        int fd = accept(h->lfd, NULL, NULL);
        if (fd >= 0) {
            close(fd);
        }
        h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (h->reserve_fd < 0) {
        h->backoff_until_ms = now + HTTPD_BACKOFF_MS;
    }
}

/* The numeric address of the other end of `fd` ("" if unknown). */
static void peer_name(int fd, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    out[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST) !=
            0) {
        out[0] = '\0';
    }
}

static void accept_some(struct httpd *h, int64_t now) {
    for (uint32_t k = 0; k < 64; k++) { /* then the others get their turn */
        int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                out_of_descriptors(h, now);
            }
            return; /* EAGAIN, or a connection aborted before it was taken */
        }
        if (h->n_conns == h->lim.connections_max && evict_idle(h) != 0) {
            refuse(h, fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        uint32_t i = 0;
        while (c != NULL && h->conns[i] != NULL) {
            i++; /* a free slot exists: n_conns < connections_max */
        }
        if (c == NULL) {
            refuse(h, fd);
            continue;
        }
        c->fd = fd;
        peer_name(fd, c->peer, sizeof c->peer);
        c->serial = ++h->next_serial;
        c->state = C_READ;
        c->last_ms = c->start_ms = now;
        h->conns[i] = c;
        h->n_conns++;
        if (h->gauge != NULL) {
            atomic_fetch_add_explicit(h->gauge, 1, memory_order_relaxed);
        }
    }
}

/* The time by which `c` must have moved on. */
static int64_t conn_deadline(const struct httpd *h, const struct conn *c) {
    switch (c->state) {
    case C_READ:
        return c->buf == NULL ? c->last_ms + h->lim.idle_ms : c->start_ms + h->lim.request_ms;
    case C_WRITE:
    case C_WAIT:
        return c->start_ms + h->lim.response_ms;
    case C_LINGER:
        return c->start_ms + HTTPD_LINGER_MS;
    }
    return c->start_ms;
}

/* Closes the connections past their deadline; a slow request gets 408. */
static void expire(struct httpd *h, uint32_t i, int64_t now) {
    struct conn *c = h->conns[i];
    if (c->state == C_READ && c->buf != NULL) {
        h->counts[K_REQUEST_TIMEOUT]++;
        fail(h, c, NULL, 408, "request timeout: send the whole request within the time limit\n");
        h->counts[K_BAD]--;
        if (conn_write(c) == 1 && conn_done(h, c) == 0) {
            return; /* lingers a moment so that the client reads the 408 */
        }
    } else if (c->state == C_READ) {
        h->counts[K_IDLE]++;
    } else if (c->state == C_WRITE || c->state == C_WAIT) {
        h->counts[K_RESPONSE_TIMEOUT]++;
    }
    (void)now;
    conn_close(h, i);
}

/* One round: deadlines, then poll, then the sockets that are ready. */
static void loop_once(struct httpd *h) {
    int64_t now = now_ms(), next = now + 1000;
    for (uint32_t i = 0; i < h->lim.connections_max; i++) {
        if (h->conns[i] != NULL && conn_deadline(h, h->conns[i]) <= now) {
            expire(h, i, now);
        }
    }
    counts_flush(h, now, false);
    h->pfd[0] = (struct pollfd){.fd = h->wake[0], .events = POLLIN};
    h->pfd[1] = (struct pollfd){.fd = now >= h->backoff_until_ms ? h->lfd : -1, .events = POLLIN};
    if (now < h->backoff_until_ms && h->backoff_until_ms < next) {
        next = h->backoff_until_ms;
    }
    /* Only the open connections: poll refuses more entries than RLIMIT_NOFILE. */
    nfds_t np = 2;
    for (uint32_t i = 0; i < h->lim.connections_max; i++) {
        const struct conn *c = h->conns[i];
        if (c == NULL) {
            continue;
        }
        h->slot[np] = i;
        short ev = c->state == C_WRITE ? POLLOUT : c->state == C_WAIT ? 0 : POLLIN;
        h->pfd[np++] = (struct pollfd){.fd = c->fd, .events = ev};
        int64_t d = conn_deadline(h, c);
        next = d < next ? d : next;
    }
    int timeout = next > now ? (int)(next - now) : 0;
    int ready = poll(h->pfd, np, timeout);
    if (ready < 0 && errno != EINTR) {
        (void)poll(h->pfd, 1, HTTPD_BACKOFF_MS); /* ENOMEM: rest, never spin */
    }
    if (ready <= 0) {
        return;
    }
    now = now_ms();
    for (nfds_t k = 2; k < np; k++) {
        uint32_t i = h->slot[k];
        if (h->pfd[k].revents != 0 && conn_step(h, i, h->conns[i], h->pfd[k].revents) != 0) {
            conn_close(h, i);
        }
    }
    if ((h->pfd[1].revents & POLLIN) != 0) {
        accept_some(h, now);
    }
}

static void answer_free(struct answer *a) {
    if (a->res.body_free) {
        free((void *)a->res.body);
    }
    free(a);
}

void httpd_answer(const struct httpd_ticket *t, const struct httpd_res *res) {
    struct httpd *h = t->h;
    struct answer *a = malloc(sizeof *a);
    if (a == NULL) {
        if (res->body_free) {
            free((void *)res->body);
        }
        return; /* the connection times out */
    }
    *a = (struct answer){.t = *t, .res = *res};
    a->res.defer = false;
    pthread_mutex_lock(&h->qmu);
    if (h->q_tail != NULL) {
        h->q_tail->next = a;
    } else {
        h->q_head = a;
    }
    h->q_tail = a;
    pthread_mutex_unlock(&h->qmu);
    char b = 1;
    while (write(h->wake[1], &b, 1) < 0 && errno == EINTR) {
    } /* EAGAIN: the pipe is full, so the thread wakes anyway */
}

/* The deferred answers handed in: each to its connection if it still
 * waits (same slot, same serial), else dropped. */
static void answers_take(struct httpd *h) {
    char sink[256];
    while (read(h->wake[0], sink, sizeof sink) > 0) {
    }
    pthread_mutex_lock(&h->qmu);
    struct answer *a = h->q_head;
    h->q_head = h->q_tail = NULL;
    pthread_mutex_unlock(&h->qmu);
    while (a != NULL) {
        struct answer *next = a->next;
        uint32_t i = a->t.slot;
        struct conn *c = i < h->lim.connections_max ? h->conns[i] : NULL;
        if (c == NULL || c->serial != a->t.serial || c->state != C_WAIT) {
            answer_free(a);
        } else {
            respond(h, c, &a->res, c->head_only, NULL);
            free(a); /* the body now belongs to the connection */
            if (conn_step(h, i, c, 0) != 0) {
                conn_close(h, i);
            }
        }
        a = next;
    }
}

static void *serve(void *arg) {
    struct httpd *h = arg;
    char name[16]; /* the kernel keeps 15 bytes of a thread's name */
    snprintf(name, sizeof name, "httpd:%.9s", h->lim.listener != NULL ? h->lim.listener : "http");
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        loop_once(h);
        if ((h->pfd[0].revents & POLLIN) != 0) {
            if (atomic_load(&h->stopping)) {
                break; /* httpd_stop */
            }
            answers_take(h);
        }
    }
    counts_flush(h, now_ms(), true);
    return NULL;
}

/* HOST:PORT, [V6]:PORT or V6-without-brackets:PORT; binds and listens. */
static int listen_on(struct httpd *h, const char *addr, struct errbuf *e) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon != NULL ? (size_t)(colon - addr) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof host || colon[1] == '\0') {
        return err_set(e, APL_EINVAL, "--http takes HOST:PORT, not %s", addr);
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0) {
        return err_set(e, APL_EINVAL, "cannot serve HTTP on %s: %s", addr, gai_strerror(g));
    }
    int err = 0;
    for (struct addrinfo *a = ai; a != NULL && h->lfd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            h->lfd = fd;
        } else {
            err = errno;
            if (fd >= 0) {
                close(fd);
            }
        }
    }
    freeaddrinfo(ai);
    if (h->lfd < 0) {
        return err_set(e, APL_ENET, "cannot serve HTTP on %s: %s", addr, strerror(err));
    }
    return 0;
}

int httpd_start(struct httpd **out, const char *addr, const struct httpd_route *routes,
                size_t n_routes, const struct httpd_limits *lim, _Atomic uint64_t *open_gauge,
                struct errbuf *e) {
    assert(n_routes <= HTTPD_ROUTES_MAX && lim->connections_max > 0 && lim->idle_ms > 0);
    struct httpd *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return err_set(e, APL_ENOMEM, "out of memory");
    }
    h->lfd = h->reserve_fd = h->wake[0] = h->wake[1] = -1;
    pthread_mutex_init(&h->qmu, NULL);
    memcpy(h->routes, routes, n_routes * sizeof *routes);
    h->n_routes = n_routes;
    h->lim = *lim;
    if (h->lim.request_ms <= 0) {
        h->lim.request_ms =
            lim->idle_ms < HTTPD_REQUEST_MS_MAX ? lim->idle_ms : HTTPD_REQUEST_MS_MAX;
    }
    h->lim.response_ms = lim->response_ms > 0 ? lim->response_ms : HTTPD_RESPONSE_MS_DEFAULT;
    h->lim.body_bytes_max =
        lim->body_bytes_max > 0 ? lim->body_bytes_max : HTTPD_BODY_BYTES_MAX_DEFAULT;
    h->gauge = open_gauge;
    h->conns = calloc(lim->connections_max, sizeof *h->conns);
    h->pfd = calloc(2 + (size_t)lim->connections_max, sizeof *h->pfd);
    h->slot = calloc(2 + (size_t)lim->connections_max, sizeof *h->slot);
    int rc = 0;
    if (h->conns == NULL || h->pfd == NULL || h->slot == NULL) {
        rc = err_set(e, APL_ENOMEM, "out of memory");
        goto fail;
    }
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
        (h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        rc = err_set(e, APL_EIO, "cannot serve HTTP: %s", strerror(errno));
        goto fail;
    }
    if ((rc = listen_on(h, addr, e)) != 0) {
        goto fail;
    }
    if (pthread_create(&h->th, NULL, serve, h) != 0) {
        rc = err_set(e, APL_ENOMEM, "cannot start the HTTP thread");
        goto fail;
    }
    h->running = true;
    *out = h;
    return 0;
fail:
    httpd_stop(h);
    return rc;
}

void httpd_stop(struct httpd *h) {
    if (h == NULL) {
        return;
    }
    if (h->running) {
        atomic_store(&h->stopping, true);
        char b = 1;
        while (write(h->wake[1], &b, 1) < 0 && errno == EINTR) {
        }
        pthread_join(h->th, NULL);
    }
    for (uint32_t i = 0; h->conns != NULL && i < h->lim.connections_max; i++) {
        if (h->conns[i] != NULL) {
            conn_close(h, i);
        }
    }
    int fds[] = {h->lfd, h->reserve_fd, h->wake[0], h->wake[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    for (struct answer *a = h->q_head, *next; a != NULL; a = next) {
        next = a->next;
        answer_free(a);
    }
    pthread_mutex_destroy(&h->qmu);
    free(h->conns);
    free(h->pfd);
    free(h->slot);
    free(h);
}
