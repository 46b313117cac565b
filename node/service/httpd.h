/*
 * httpd.h: a small bounded HTTP/1.1 server (docs/decisions/0013-own-http-server.md).
 *
 * One thread polls a listening socket and its connections (non-blocking);
 * handlers run on that thread, so they must be quick (reads of the store,
 * rendering a page). What it serves is given as a table of routes: exact
 * paths (the query string is not part of the match), one method each; a
 * GET route answers HEAD too (same headers, no body).
 *
 * Everything a client can hold is bounded (docs/operations.md "Limits"):
 *
 *  - at most `connections_max` connections. A new one past the cap makes
 *    room by closing the connection idle longest (no request in progress:
 *    a client that reconnects loses nothing); when every connection is in
 *    the middle of a request, the new one is answered 503 and closed at
 *    once, so the listen queue drains.
 *  - a connection with no request in progress for `idle_ms` is closed.
 *  - a request (head and body) must arrive whole within `request_ms` of its
 *    first byte, however slowly it trickles (slowloris): else 408 and close.
 *  - a response must be taken by the client within `response_ms`: else the
 *    connection is closed.
 *  - a request head is at most HTTPD_HEAD_BYTES_MAX (431), with at most
 *    HTTPD_HEADERS_MAX header lines (431); a body at most `body_bytes_max`
 *    (413), sent with Content-Length only: Transfer-Encoding chunked is
 *    answered 411 (send a length), other codings 501.
 *  - out of file descriptors (EMFILE, ENFILE), a descriptor held in reserve
 *    (/dev/null) is given up to accept the pending connection and close it,
 *    so the listener never spins; if even that fails the listener is left
 *    alone for HTTPD_BACKOFF_MS.
 *
 * Memory: an idle connection holds no buffer; one with a request in
 * progress at most HTTPD_HEAD_BYTES_MAX + body_bytes_max. So the server
 * holds at most connections_max x (8 KiB + body_bytes_max) for client data.
 *
 * Answers: HTTP/1.1 and HTTP/1.0 (keep-alive by default in 1.1, on request
 * in 1.0; `Connection: close` honoured), Content-Length on every response,
 * 400 for a malformed request (bad request line, header line, Content-
 * Length, missing Host in 1.1), 404 for an unknown path, 405 (with Allow)
 * for a known path with another method, 505 for another HTTP version.
 * After an error the connection is closed. Closed connections and refusals
 * are counted and logged at most once a second (olog: connection_refused,
 * connections_closed, with listener=http).
 */
#ifndef APPEAL_HTTPD_H
#define APPEAL_HTTPD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    HTTPD_HEAD_BYTES_MAX = 8 * 1024,          /* request line and headers */
    HTTPD_HEADERS_MAX = 64,                   /* header lines in one request */
    HTTPD_BODY_BYTES_MAX_DEFAULT = 64 * 1024, /* request body */
    HTTPD_REQUEST_MS_MAX = 10 * 1000,         /* a request, first byte to last */
    HTTPD_RESPONSE_MS_DEFAULT = 10 * 1000,    /* a response, to be read */
    HTTPD_LINGER_MS = 2 * 1000,               /* reading what follows a final answer */
    HTTPD_BACKOFF_MS = 100,                   /* listener left alone when accept fails */
    HTTPD_ROUTES_MAX = 64,
    HTTPD_PEER_BYTES = 64, /* a numeric IPv4 or IPv6 address */
};

struct httpd_res;

/* Optional: renders the body of an answer the server itself gives (400,
 * 404, 405, 408, 411, 413, 431, 501, 503, 505) instead of its plain text,
 * e.g. as a protocol's error document. `path` is the request's path, or
 * NULL when the head could not be parsed that far; `why` the server's
 * sentence. `res` comes with the status set; the function sets the type
 * and body (static, or malloc'd with body_free). Runs on the server's
 * thread: it must be quick. */
typedef void (*httpd_error_fn)(void *arg, const char *path, int status, const char *why,
                               struct httpd_res *res);

struct httpd_limits {
    uint32_t connections_max;
    int64_t idle_ms;
    int64_t request_ms;      /* 0: min(HTTPD_REQUEST_MS_MAX, idle_ms) */
    int64_t response_ms;     /* 0: HTTPD_RESPONSE_MS_DEFAULT; also bounds a deferred answer */
    size_t body_bytes_max;   /* 0: HTTPD_BODY_BYTES_MAX_DEFAULT */
    httpd_error_fn on_error; /* NULL: plain text */
    void *on_error_arg;
    const char *listener; /* in logs (listener=...); NULL: "http" */
};

/* Where a deferred answer goes: the connection, by slot and serial (a
 * connection closed meanwhile, or its slot reused, has another serial). */
struct httpd_ticket {
    struct httpd *h;
    uint32_t slot;
    uint64_t serial;
};

struct httpd_header {
    const char *name;  /* as sent; compare without case */
    const char *value; /* leading and trailing blanks removed */
};

/* A request, valid during the handler call only. Strings are NUL-
 * terminated; `query` is "" when the target has no '?'. The body is not
 * NUL-terminated and may hold any bytes. */
struct httpd_req {
    const char *method;
    const char *path;
    const char *query;
    int minor_version; /* 0 or 1: HTTP/1.x */
    const struct httpd_header *headers;
    size_t n_headers;
    const unsigned char *body;
    size_t body_len;
    struct httpd_ticket ticket; /* for a deferred answer (httpd_answer) */
    const char *peer;           /* the client's numeric address (behind a proxy: the proxy's) */
};

/* A request head as the server parses it. */
struct httpd_parsed {
    struct httpd_req req; /* body and ticket unset */
    size_t head_len;      /* request line to the blank line, inclusive */
    size_t body_len;      /* from Content-Length, at most body_max */
    bool keep_alive, expect_continue;
    int status;      /* 0, or the error to answer (400, 411, 413, 431, 501, 505) */
    const char *why; /* the error's sentence, static, ending in a newline */
};

/* Parses the request head at the start of `buf` (len bytes read so far,
 * blank lines before it already skipped), the way the server does: copies
 * it into `scratch` (HTTPD_HEAD_BYTES_MAX bytes), which then holds the
 * request's strings, with its headers in `hdrs` (HTTPD_HEADERS_MAX).
 * Returns 0 with `p` filled in; 1 when the head is not complete yet (fewer
 * than HTTPD_HEAD_BYTES_MAX bytes and no blank line); -1 with p->status
 * and p->why set when the request is refused. Reads nothing past the
 * head's end nor past HTTPD_HEAD_BYTES_MAX. Decoder of untrusted bytes:
 * fuzzed (tests/fuzz/fuzz_http_request.c). */
int httpd_parse(const unsigned char *buf, size_t len, char *scratch, struct httpd_header *hdrs,
                size_t body_max, struct httpd_parsed *p);

/* The first header of that name (case-insensitive), or NULL. */
const char *httpd_header(const struct httpd_req *r, const char *name);

/* What a handler fills in. It starts as 500 text/plain with no body.
 * `body` is either static (lives as long as the server) or malloc'd with
 * `body_free` set, then the server frees it once written. `cache_control`
 * (a static string) is sent when not NULL.
 *
 * A handler whose answer waits for something slow (a write's durable
 * commit) sets `defer`, keeps `req->ticket` and returns at once; the rest
 * of `res` is ignored. The connection then reads nothing more until
 * httpd_answer() is called with the ticket, from any thread, exactly once;
 * if the answer does not come within response_ms the connection is
 * closed (and the late answer dropped). */
struct httpd_res {
    int status;
    const char *content_type;
    const void *body;
    size_t len;
    bool body_free;
    const char *cache_control;
    bool defer;
};

/* Sends the deferred answer of `t` (any thread). The body is taken over:
 * if the connection is gone, or memory runs out, it is freed (when
 * body_free) and the answer dropped. */
void httpd_answer(const struct httpd_ticket *t, const struct httpd_res *res);

typedef void (*httpd_fn)(void *arg, const struct httpd_req *req, struct httpd_res *res);

struct httpd_route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact, e.g. "/healthz"; ending in '*': a prefix ("/a/b/" then a star) */
    httpd_fn fn;
    void *arg;
};

struct httpd;

/* Binds `addr` (HOST:PORT; HOST an IPv4 or IPv6 address, [v6] too, or a
 * name such as localhost) with SO_REUSEADDR and starts the thread. The
 * routes are copied (their strings must outlive the server). `open_gauge`,
 * if not NULL, counts the open connections. */
int httpd_start(struct httpd **out, const char *addr, const struct httpd_route *routes,
                size_t n_routes, const struct httpd_limits *lim, _Atomic uint64_t *open_gauge,
                struct errbuf *e);
/* Wakes the thread, joins it, closes every connection; NULL is allowed.
 * No httpd_answer() may follow: settle every deferred answer first (for
 * writes: stop the writer, whose completions answer them). */
void httpd_stop(struct httpd *h);

#endif
