/* sessprobe URL KEYFILE: one connection to a node's API, driven by
 * commands on stdin, one a line, each answered by one JSON line on stdout
 * (tests of sessions, test_sessions.py):
 *
 *   open            open a session (signed with KEYFILE)
 *   file N          file an appeal in the session with counter N
 *   forge N         the same with a MAC that is one bit off
 *   replay          send the last request's bytes again
 *   signed          file an appeal signed with KEYFILE (no session)
 *   pipeline N      N filings in flight at once on this connection (REQ
 *                   contexts), in the session if one is open: answers
 *                   {"code": "none", "message": "N receipts"} when all came
 *
 * Answers: {"code": "none"|"unauthenticated"|..., "message": "...",
 * "number": "KZ-..."} ("number" on a receipt). Exit 0 at end of input. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

enum { PIPELINE_MAX = 512 };

static uint8_t *last;
static size_t last_len;

static void print_json(const char *code, const char *msg, const char *number) {
    printf("{\"code\": \"%s\", \"message\": \"", code);
    for (const char *p = msg; *p; p++) {
        if (*p == '"' || *p == '\\') {
            putchar('\\');
        }
        putchar(*p >= ' ' ? *p : ' ');
    }
    printf("\", \"number\": \"%s\"}\n", number);
    fflush(stdout);
}

static void print_answer(int rc, const Appeal__Response *r, const struct errbuf *e) {
    const char *code = "none", *msg = "", *number = "";
    if (rc != 0) {
        code = "transport";
        msg = e->msg;
    } else if (r->error != NULL && r->error->code != 0) {
        code = client_code_name(r->error->code);
        msg = r->error->message;
    } else if (r->result_case == APPEAL__RESPONSE__RESULT_RECEIPT) {
        number = r->receipt->number;
    }
    print_json(code, msg, number);
}

static void fill_file(Appeal__Request *q, Appeal__FileRequest *f, uint8_t nonce[16]) {
    f->type = APPEAL__APPEAL_TYPE__TYPE_STATEMENT;
    f->category = "0002.0001";
    f->subject = "Pension recalculation";
    f->name = "Aigerim Bekova";
    f->iin = "900101300126";
    q->op_case = APPEAL__REQUEST__OP_FILE;
    q->file = f;
    q->version = 1;
    randombytes_buf(nonce, 16);
    q->nonce.data = nonce;
    q->nonce.len = 16;
}

/* A filing in the session with counter `n`; `forge` flips a MAC bit. */
static int send_in_session(struct client *c, uint64_t n, bool forge, Appeal__Response **r,
                           struct errbuf *e) {
    Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    uint8_t nonce[16], mac[SESSION_MAC_BYTES];
    fill_file(&q, &f, nonce);
    uint8_t *inner;
    size_t inner_len;
    if (pb_pack(&q.base, &inner, &inner_len) != 0) {
        return APL_ENOMEM;
    }
    client_session_mac(c->session_key, n, inner, inner_len, mac);
    if (forge) {
        mac[0] ^= 1;
    }
    Appeal__ClientRequest cr = APPEAL__CLIENT_REQUEST__INIT;
    cr.request = (ProtobufCBinaryData){inner_len, inner};
    cr.session = (ProtobufCBinaryData){SESSION_ID_BYTES, c->session_id};
    cr.counter = n;
    cr.mac = (ProtobufCBinaryData){SESSION_MAC_BYTES, mac};
    free(last);
    int rc = pb_pack(&cr.base, &last, &last_len);
    free(inner);
    return rc != 0 ? rc : client_call_raw(c, last, last_len, r, e);
}

/* `n` filings sent before any answer is read, on contexts of c->sock. */
static void pipeline(struct client *c, int n) {
    nng_ctx ctx[PIPELINE_MAX];
    nng_aio *aio[PIPELINE_MAX];
    int receipts = 0, opened = 0;
    char why[256] = "";
    for (; opened < n; opened++) {
        Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
        Appeal__Request q = APPEAL__REQUEST__INIT;
        uint8_t nonce[16], *wire;
        size_t len;
        nng_msg *m;
        struct errbuf e = {0};
        fill_file(&q, &f, nonce);
        if (client_pack(c, &q, &wire, &len, &e) != 0 || nng_ctx_open(&ctx[opened], c->sock) != 0 ||
            nng_aio_alloc(&aio[opened], NULL, NULL) != 0 || nng_msg_alloc(&m, len) != 0) {
            snprintf(why, sizeof why, "cannot prepare request %d", opened);
            break;
        }
        memcpy(nng_msg_body(m), wire, len);
        free(wire);
        nng_aio_set_msg(aio[opened], m);
        nng_ctx_send(ctx[opened], aio[opened]);
    }
    for (int i = 0; i < opened; i++) {
        nng_aio_wait(aio[i]);
        nng_ctx_recv(ctx[i], aio[i]);
    }
    for (int i = 0; i < opened; i++) {
        nng_aio_wait(aio[i]);
        nng_msg *m = nng_aio_result(aio[i]) == 0 ? nng_aio_get_msg(aio[i]) : NULL;
        Appeal__Response *r =
            m == NULL ? NULL : appeal__response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
        if (r != NULL && r->result_case == APPEAL__RESPONSE__RESULT_RECEIPT) {
            receipts++;
        } else if (why[0] == '\0') {
            snprintf(why, sizeof why, "%s",
                     r == NULL          ? "no answer"
                     : r->error != NULL ? r->error->message
                                        : "no receipt");
        }
        if (r != NULL) {
            appeal__response__free_unpacked(r, NULL);
        }
        if (m != NULL) {
            nng_msg_free(m);
        }
        nng_aio_free(aio[i]);
        nng_ctx_close(ctx[i]);
    }
    char msg[300];
    snprintf(msg, sizeof msg, "%d receipts%s%s", receipts, why[0] ? ": " : "", why);
    print_json(receipts == n ? "none" : "failed", msg, "");
}

int main(int argc, char **argv) {
    if (argc != 3 || sodium_init() < 0) {
        fprintf(stderr, "usage: sessprobe URL KEYFILE < commands\n");
        return 2;
    }
    struct client c;
    struct errbuf e = {0};
    if (client_open(&c, argv[1], 10000, &e) != 0 || client_sign_with(&c, argv[2], &e) != 0 ||
        client_hello(&c, &e) != 0) {
        fprintf(stderr, "sessprobe: %s\n", e.msg);
        return 1;
    }
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        Appeal__Response *r = NULL;
        int rc;
        unsigned long long n = 0;
        err_clear(&e);
        if (strncmp(line, "open", 4) == 0) {
            rc = client_session_open(&c, &e);
            print_json(rc == 0 ? "none" : "refused", rc == 0 ? "" : e.msg, "");
            continue;
        } else if (sscanf(line, "file %llu", &n) == 1) {
            rc = send_in_session(&c, n, false, &r, &e);
        } else if (sscanf(line, "forge %llu", &n) == 1) {
            rc = send_in_session(&c, n, true, &r, &e);
        } else if (strncmp(line, "replay", 6) == 0 && last != NULL) {
            rc = client_call_raw(&c, last, last_len, &r, &e);
        } else if (sscanf(line, "pipeline %llu", &n) == 1 && n > 0 && n <= PIPELINE_MAX) {
            pipeline(&c, (int)n);
            continue;
        } else if (strncmp(line, "signed", 6) == 0) {
            Appeal__FileRequest f = APPEAL__FILE_REQUEST__INIT;
            Appeal__Request q = APPEAL__REQUEST__INIT;
            uint8_t nonce[16];
            fill_file(&q, &f, nonce);
            bool session = c.session;
            c.session = false;
            rc = client_call(&c, &q, &r, &e);
            c.session = session;
        } else {
            fprintf(stderr, "sessprobe: unknown command: %s", line);
            return 2;
        }
        print_answer(rc, r, &e);
    }
    free(last);
    client_close(&c);
    return 0;
}
