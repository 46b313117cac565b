#include "client.h"

#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "clock.h"
#include "tls.h"
#include "keys.h"

enum { CLIENT_ARENA_BYTES = 2 * RESPONSE_BYTES_MAX + (1 << 20) };

/* Dials once and waits for the connection. Over tls+tcp:// the node's
 * certificate must be signed by the CA in `ca_path` and name `server_name`
 * (NULL: the URL's host). */
static int client_dial(struct client *c, const char *url, const char *ca_path,
                       const char *server_name, struct errbuf *e) {
    struct tls *t = NULL;
    if (tls_url(url)) {
        if (ca_path == NULL || ca_path[0] == '\0') {
            return err_set(e, APL_EINVAL,
                           "%s is a tls+tcp:// address: give the federation's CA certificate "
                           "with --tls-ca FILE (or APPEAL_TLS_CA)",
                           url);
        }
        int rc = tls_load(&t, ca_path, NULL, NULL, e);
        if (rc != 0) {
            return rc;
        }
    }
    int rc = tls_dial(c->sock, url, t, server_name, 0, "reach the node at", NULL, e);
    tls_free(t);
    return rc;
}

int client_open(struct client *c, const char *url, int timeout_ms, struct errbuf *e) {
    return client_open_tls(c, url, timeout_ms, NULL, NULL, e);
}

int client_open_tls(struct client *c, const char *url, int timeout_ms, const char *ca_path,
                    const char *server_name, struct errbuf *e) {
    memset(c, 0, sizeof *c);
    c->timeout_ms = timeout_ms;
    int rv = nng_req0_open(&c->sock);
    if (rv == 0) {
        rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms);
    }
    if (rv == 0) {
        rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, RESPONSE_BYTES_MAX + 4096);
    }
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot open a socket: %s", nng_strerror(rv));
    }
    int rc = client_dial(c, url, ca_path, server_name, e);
    if (rc != 0) {
        nng_close(c->sock);
        return rc;
    }
    if (arena_init(&c->arena, CLIENT_ARENA_BYTES) != 0) {
        nng_close(c->sock);
        return APL_ENOMEM;
    }
    return 0;
}

void client_close(struct client *c) {
    nng_close(c->sock);
    arena_fini(&c->arena);
    sodium_memzero(c->sk, sizeof c->sk);
}

int client_sign_with(struct client *c, const char *path, struct errbuf *e) {
    int rc = keys_load_signing(path, c->pk, c->sk, e);
    c->signing = rc == 0;
    return rc;
}

int client_call_raw(struct client *c, const void *data, size_t len, Appeal__Response **resp,
                    struct errbuf *e) {
    arena_reset(&c->arena);
    int rv = nng_send(c->sock, (void *)data, len, 0);
    if (rv != 0) {
        return err_set(e, rv == NNG_ETIMEDOUT ? APL_ETIMEDOUT : APL_ENET,
                       "cannot send to the node: %s", nng_strerror(rv));
    }
    nng_msg *m;
    rv = nng_recvmsg(c->sock, &m, 0);
    if (rv != 0) {
        return err_set(e, rv == NNG_ETIMEDOUT ? APL_ETIMEDOUT : APL_ENET,
                       "no answer from the node: %s", nng_strerror(rv));
    }
    *resp = (Appeal__Response *)pb_unpack(&appeal__response__descriptor, nng_msg_body(m),
                                          nng_msg_len(m), &c->arena, 1u << 20, e);
    nng_msg_free(m);
    return *resp != NULL ? 0 : APL_EINVAL;
}

int client_hello(struct client *c, struct errbuf *e) {
    bool signing = c->signing;
    c->signing = false; /* hello is answered to anyone */
    Appeal__HelloRequest h = APPEAL__HELLO_REQUEST__INIT;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_HELLO;
    q.hello = &h;
    Appeal__Response *r;
    int rc = client_call(c, &q, &r, e);
    c->signing = signing;
    if (rc != 0) {
        return rc;
    }
    if (r->error != NULL && r->error->code != 0) {
        return err_set(e, APL_EINVAL, "the node did not say who it is: %s", r->error->message);
    }
    if (r->result_case != APPEAL__RESPONSE__RESULT_INFO || r->info->jurisdiction[0] == '\0' ||
        strlen(r->info->jurisdiction) >= sizeof c->node) {
        return err_set(e, APL_EINVAL, "the node did not say who it is (an older node?)");
    }
    snprintf(c->node, sizeof c->node, "%s", r->info->jurisdiction);
    return 0;
}

int client_call(struct client *c, Appeal__Request *req, Appeal__Response **resp, struct errbuf *e) {
    if (c->signing && c->node[0] == '\0') {
        int rc = client_hello(c, e);
        if (rc != 0) {
            return rc;
        }
    }
    if (c->signing) {
        req->node = c->node;
    }
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    req->version = 1;
    req->time_ms = clock_system_ms();
    req->nonce.data = nonce;
    req->nonce.len = sizeof nonce;
    uint8_t *inner;
    size_t inner_len;
    int rc = pb_pack(&req->base, &inner, &inner_len);
    if (rc != 0) {
        return rc;
    }
    Appeal__ClientRequest cr = APPEAL__CLIENT_REQUEST__INIT;
    cr.request.data = inner;
    cr.request.len = inner_len;
    uint8_t sig[crypto_sign_BYTES];
    if (c->signing) {
        crypto_sign_detached(sig, NULL, inner, inner_len, c->sk);
        cr.key.data = c->pk;
        cr.key.len = sizeof c->pk;
        cr.sig.data = sig;
        cr.sig.len = sizeof sig;
    }
    uint8_t *wire;
    size_t wire_len;
    rc = pb_pack(&cr.base, &wire, &wire_len);
    free(inner);
    if (rc != 0) {
        return rc;
    }
    if (wire_len > REQUEST_BYTES_MAX) {
        free(wire);
        return err_set(e, APL_ETOOBIG, "the request is %zu bytes; the limit is %d", wire_len,
                       REQUEST_BYTES_MAX);
    }
    rc = client_call_raw(c, wire, wire_len, resp, e);
    free(wire);
    return rc;
}

const char *client_code_name(int code) {
    static const char *const names[] = {
        "none",      "bad_request",  "not_found",     "invalid_transition", "refused",
        "too_large", "storage_full", "unavailable",   "internal",           "unauthenticated",
        "forbidden", "not_owner",    "storage_failed"};
    return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "unknown";
}

int client_error_code(int rc) {
    switch (rc) {
    case 0:
        return APPEAL__ERROR_CODE__ERR_NONE;
    case APL_EINVAL:
        return APPEAL__ERROR_CODE__ERR_BAD_REQUEST;
    case APL_ENOTFOUND:
        return APPEAL__ERROR_CODE__ERR_NOT_FOUND;
    case APL_ETRANSITION:
        return APPEAL__ERROR_CODE__ERR_INVALID_TRANSITION;
    case APL_EREFUSED:
        return APPEAL__ERROR_CODE__ERR_REFUSED;
    case APL_ETOOBIG:
        return APPEAL__ERROR_CODE__ERR_TOO_LARGE;
    case APL_EFULL:
        return APPEAL__ERROR_CODE__ERR_STORAGE_FULL;
    case APL_EUNAVAIL:
        return APPEAL__ERROR_CODE__ERR_UNAVAILABLE;
    case APL_ENOTOWNER:
        return APPEAL__ERROR_CODE__ERR_NOT_OWNER;
    case APL_ESTORAGE:
        return APPEAL__ERROR_CODE__ERR_STORAGE_FAILED;
    case APL_EAUTH:
        return APPEAL__ERROR_CODE__ERR_UNAUTHENTICATED;
    case APL_EFORBIDDEN:
        return APPEAL__ERROR_CODE__ERR_FORBIDDEN;
    default:
        return APPEAL__ERROR_CODE__ERR_INTERNAL;
    }
}
