/*
 * fuzz_http_request: the bytes a client sends to an HTTP listener (--http,
 * --open311), through httpd_parse (node/service/httpd.h), the parser the
 * server runs on every request head before any handler. The first two
 * bytes choose the body limit (0..65535 bytes); the rest is what was read.
 *
 * Checks: a refusal is one of the statuses the server answers with a
 * sentence; an incomplete head is shorter than the head limit; an accepted
 * head lies within the input and the limit, its method is a token, its
 * target starts with '/', its body within the limit, and written back as
 * a request line and header lines it parses again to the same request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "httpd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(NULL, 0);
    return 0;
}

static char scratch[HTTPD_HEAD_BYTES_MAX], scratch2[HTTPD_HEAD_BYTES_MAX];
static struct httpd_header hdrs[HTTPD_HEADERS_MAX], hdrs2[HTTPD_HEADERS_MAX];
static char again[2 * HTTPD_HEAD_BYTES_MAX];

static bool status_known(int s) {
    return s == 400 || s == 411 || s == 413 || s == 431 || s == 501 || s == 505;
}

/* The parsed request written back; its length, or 0 if it does not fit. */
static size_t write_back(const struct httpd_parsed *p) {
    const struct httpd_req *r = &p->req;
    int n = snprintf(again, sizeof again, "%s %s%s%s HTTP/1.%d\r\n", r->method, r->path,
                     r->query[0] != '\0' ? "?" : "", r->query, r->minor_version);
    size_t len = (size_t)n;
    for (size_t i = 0; i < r->n_headers && len < sizeof again; i++) {
        n = snprintf(again + len, sizeof again - len, "%s: %s\r\n", r->headers[i].name,
                     r->headers[i].value);
        len += (size_t)n;
    }
    if (len + 2 >= sizeof again) {
        return 0;
    }
    memcpy(again + len, "\r\n", 2);
    return len + 2;
}

static void check_accepted(const struct httpd_parsed *p, size_t len, size_t body_max) {
    const struct httpd_req *r = &p->req;
    FUZZ_ASSERT(p->status == 0);
    FUZZ_ASSERT(p->head_len >= 4 && p->head_len <= len && p->head_len <= HTTPD_HEAD_BYTES_MAX);
    FUZZ_ASSERT(p->body_len <= body_max);
    size_t ml = strlen(r->method);
    FUZZ_ASSERT(ml >= 1 && ml <= 16);
    FUZZ_ASSERT(r->path[0] == '/' && strchr(r->path, '?') == NULL);
    FUZZ_ASSERT(r->minor_version == 0 || r->minor_version == 1);
    FUZZ_ASSERT(r->n_headers <= HTTPD_HEADERS_MAX);
    FUZZ_ASSERT(r->minor_version == 0 || httpd_header(r, "Host") != NULL);
    for (size_t i = 0; i < r->n_headers; i++) {
        FUZZ_ASSERT(r->headers[i].name[0] != '\0');
        FUZZ_ASSERT(httpd_header(r, r->headers[i].name) != NULL);
    }
    size_t n = write_back(p);
    if (n == 0 || n > HTTPD_HEAD_BYTES_MAX) {
        return; /* the blank a header lost may make it longer: nothing to compare */
    }
    struct httpd_parsed q;
    FUZZ_ASSERT(httpd_parse((const unsigned char *)again, n, scratch2, hdrs2, body_max, &q) == 0);
    FUZZ_ASSERT(q.head_len == n && q.body_len == p->body_len);
    FUZZ_ASSERT(strcmp(q.req.method, r->method) == 0 && strcmp(q.req.path, r->path) == 0);
    FUZZ_ASSERT(strcmp(q.req.query, r->query) == 0);
    FUZZ_ASSERT(q.req.minor_version == r->minor_version && q.req.n_headers == r->n_headers);
    FUZZ_ASSERT(q.keep_alive == p->keep_alive && q.expect_continue == p->expect_continue);
    for (size_t i = 0; i < r->n_headers; i++) {
        FUZZ_ASSERT(strcmp(q.req.headers[i].name, r->headers[i].name) == 0);
        FUZZ_ASSERT(strcmp(q.req.headers[i].value, r->headers[i].value) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) {
        return 0;
    }
    size_t body_max = (size_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;
    /* A copy of exactly the input's size, so reading past it is caught. */
    unsigned char *buf = malloc(size > 0 ? size : 1);
    FUZZ_ASSERT(buf != NULL);
    memcpy(buf, data, size);
    struct httpd_parsed p;
    int rc = httpd_parse(buf, size, scratch, hdrs, body_max, &p);
    if (rc < 0) {
        FUZZ_ASSERT(status_known(p.status) && p.why != NULL);
        FUZZ_ASSERT(p.why[0] != '\0' && p.why[strlen(p.why) - 1] == '\n');
    } else if (rc > 0) {
        FUZZ_ASSERT(size < HTTPD_HEAD_BYTES_MAX);
    } else {
        check_accepted(&p, size, body_max);
    }
    free(buf);
    return 0;
}
