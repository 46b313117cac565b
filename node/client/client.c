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
    sodium_memzero(c->session_key, sizeof c->session_key);
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
    bool signing = c->signing, session = c->session;
    c->signing = false; /* hello is answered to anyone */
    c->session = false;
    Appeal__HelloRequest h = APPEAL__HELLO_REQUEST__INIT;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_HELLO;
    q.hello = &h;
    Appeal__Response *r;
    int rc = client_call(c, &q, &r, e);
    c->signing = signing;
    c->session = session;
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
    if (r->info->origin.len == sizeof c->origin) {
        memcpy(c->origin, r->info->origin.data, sizeof c->origin);
    }
    return 0;
}

static const char SESSION_LABEL[] = "appeal-session-v1";
static const char SESSION_REQ_LABEL[] = "appeal-session-req-v1";

void client_session_transcript(const uint8_t id[SESSION_ID_BYTES],
                               const uint8_t client_kx[SESSION_KX_BYTES],
                               const uint8_t node_kx[SESSION_KX_BYTES], const uint8_t pk[32],
                               uint8_t out[SESSION_TRANSCRIPT_BYTES]) {
    size_t at = 0;
    memcpy(out + at, SESSION_LABEL, sizeof SESSION_LABEL - 1);
    at += sizeof SESSION_LABEL - 1;
    memcpy(out + at, id, SESSION_ID_BYTES);
    at += SESSION_ID_BYTES;
    memcpy(out + at, client_kx, SESSION_KX_BYTES);
    at += SESSION_KX_BYTES;
    memcpy(out + at, node_kx, SESSION_KX_BYTES);
    at += SESSION_KX_BYTES;
    memcpy(out + at, pk, 32);
}

void client_session_key(const uint8_t kx_key[32],
                        const uint8_t transcript[SESSION_TRANSCRIPT_BYTES],
                        uint8_t out[SESSION_KEY_BYTES]) {
    crypto_generichash(out, SESSION_KEY_BYTES, transcript, SESSION_TRANSCRIPT_BYTES, kx_key, 32);
}

void client_session_mac(const uint8_t key[SESSION_KEY_BYTES], uint64_t counter,
                        const uint8_t *request, size_t len, uint8_t out[SESSION_MAC_BYTES]) {
    uint8_t ctr[8];
    for (int i = 0; i < 8; i++) {
        ctr[i] = (uint8_t)(counter >> (8 * i));
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, SESSION_KEY_BYTES, SESSION_MAC_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)SESSION_REQ_LABEL,
                              sizeof SESSION_REQ_LABEL - 1);
    crypto_generichash_update(&st, ctr, sizeof ctr);
    crypto_generichash_update(&st, request, len);
    crypto_generichash_final(&st, out, SESSION_MAC_BYTES);
}

/* Checks the node's answer to session_open and derives the MAC key. */
static int session_accept(struct client *c, const Appeal__SessionOpened *so,
                          const uint8_t kx_pk[SESSION_KX_BYTES],
                          const uint8_t kx_sk[crypto_kx_SECRETKEYBYTES], struct errbuf *e) {
    if (so->id.len != SESSION_ID_BYTES || so->node_kx.len != SESSION_KX_BYTES ||
        so->sig.len != crypto_sign_BYTES) {
        return err_set(e, APL_EINVAL, "the node's session answer is malformed");
    }
    uint8_t tr[SESSION_TRANSCRIPT_BYTES];
    client_session_transcript(so->id.data, kx_pk, so->node_kx.data, c->pk, tr);
    if (crypto_sign_verify_detached(so->sig.data, tr, sizeof tr, c->origin) != 0) {
        return err_set(e, APL_EAUTH, "the session answer is not signed by the node's origin key");
    }
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    if (crypto_kx_client_session_keys(rx, tx, kx_pk, kx_sk, so->node_kx.data) != 0) {
        return err_set(e, APL_EAUTH, "the node's session key is unusable");
    }
    client_session_key(tx, tr, c->session_key);
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    memcpy(c->session_id, so->id.data, SESSION_ID_BYTES);
    c->counter = 0;
    c->session = true;
    return 0;
}

int client_session_open(struct client *c, struct errbuf *e) {
    if (!c->signing) {
        return err_set(e, APL_EINVAL, "a session needs an official's key (--key FILE)");
    }
    if (c->node[0] == '\0') {
        int rc = client_hello(c, e);
        if (rc != 0) {
            return rc;
        }
    }
    c->session = false;
    uint8_t kx_pk[crypto_kx_PUBLICKEYBYTES], kx_sk[crypto_kx_SECRETKEYBYTES];
    crypto_kx_keypair(kx_pk, kx_sk);
    Appeal__SessionOpenRequest so = APPEAL__SESSION_OPEN_REQUEST__INIT;
    so.client_kx.data = kx_pk;
    so.client_kx.len = sizeof kx_pk;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_SESSION_OPEN;
    q.session_open = &so;
    Appeal__Response *r;
    int rc = client_call(c, &q, &r, e);
    if (rc == 0 && r->error != NULL && r->error->code != 0) {
        rc = err_set(
            e, r->error->code == APPEAL__ERROR_CODE__ERR_UNAUTHENTICATED ? APL_EAUTH : APL_EUNAVAIL,
            "%s", r->error->message);
    } else if (rc == 0 && r->result_case != APPEAL__RESPONSE__RESULT_SESSION) {
        rc = err_set(e, APL_EINVAL, "the node did not open a session (an older node?)");
    } else if (rc == 0) {
        rc = session_accept(c, r->session, kx_pk, kx_sk, e);
    }
    sodium_memzero(kx_sk, sizeof kx_sk);
    return rc;
}

int client_pack(struct client *c, Appeal__Request *req, uint8_t **out, size_t *out_len,
                struct errbuf *e) {
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
    uint8_t mac[SESSION_MAC_BYTES];
    if (c->session) {
        c->counter++;
        client_session_mac(c->session_key, c->counter, inner, inner_len, mac);
        cr.session.data = c->session_id;
        cr.session.len = sizeof c->session_id;
        cr.counter = c->counter;
        cr.mac.data = mac;
        cr.mac.len = sizeof mac;
    } else if (c->signing) {
        crypto_sign_detached(sig, NULL, inner, inner_len, c->sk);
        cr.key.data = c->pk;
        cr.key.len = sizeof c->pk;
        cr.sig.data = sig;
        cr.sig.len = sizeof sig;
    }
    rc = pb_pack(&cr.base, out, out_len);
    free(inner);
    if (rc != 0) {
        return rc;
    }
    if (*out_len > REQUEST_BYTES_MAX) {
        free(*out);
        *out = NULL;
        return err_set(e, APL_ETOOBIG, "the request is %zu bytes; the limit is %d", *out_len,
                       REQUEST_BYTES_MAX);
    }
    return 0;
}

int client_call(struct client *c, Appeal__Request *req, Appeal__Response **resp, struct errbuf *e) {
    uint8_t *wire;
    size_t wire_len;
    int rc = client_pack(c, req, &wire, &wire_len, e);
    if (rc != 0) {
        return rc;
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
