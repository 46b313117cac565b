/*
 * client.h: a synchronous client of a node's API, for appealctl, the
 * benchmark and tests. One REQ socket, one request in flight.
 *
 * REQ's automatic resend is switched off: a write the node did not answer
 * is not sent twice behind the caller's back (it could register an appeal
 * twice); the caller sees a timeout and decides.
 */
#ifndef APPEAL_CLIENT_H
#define APPEAL_CLIENT_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "err.h"
#include "pbdecode.h"

enum {
    SESSION_ID_BYTES = 16,
    SESSION_KEY_BYTES = 32, /* the MAC key */
    SESSION_MAC_BYTES = 32, /* BLAKE2b-256 */
    SESSION_KX_BYTES = 32,  /* X25519 public keys (crypto_kx) */
    /* "appeal-session-v1" || id || client_kx || node_kx || official's key */
    SESSION_TRANSCRIPT_BYTES = 17 + SESSION_ID_BYTES + 2 * SESSION_KX_BYTES + 32,
};

struct client {
    nng_socket sock;
    int timeout_ms;
    struct arena arena; /* holds the last response */
    bool signing;       /* requests are signed with `sk` */
    uint8_t pk[32];
    uint8_t sk[64];
    char node[16];      /* the node's jurisdiction, asked once (client_hello) */
    uint8_t origin[32]; /* the node's origin key, from the same hello */
    /* A session (client_session_open): requests carry a counter and a MAC
     * instead of a signature. */
    bool session;
    uint8_t session_id[SESSION_ID_BYTES];
    uint8_t session_key[SESSION_KEY_BYTES];
    uint64_t counter; /* the last one sent */
};

int client_open(struct client *c, const char *url, int timeout_ms, struct errbuf *e);
/* The same, for tls+tcp:// too: the node's certificate must be signed by
 * the CA in `ca_path` and name `server_name` (NULL: the URL's host).
 * Errors: APL_EINVAL and the file's errors for a missing or unusable CA
 * file, APL_EAUTH for a certificate refused in the handshake, APL_ENET
 * for the rest. */
int client_open_tls(struct client *c, const char *url, int timeout_ms, const char *ca_path,
                    const char *server_name, struct errbuf *e);
void client_close(struct client *c);

/* Signs every request from now on with the official's key in `path`
 * (appealctl keygen writes one; a node's DIR/admin.key is one too). */
int client_sign_with(struct client *c, const char *path, struct errbuf *e);

/* Asks the node who it is (an unsigned `hello`) and keeps its
 * jurisdiction in `c->node`: requests are signed for that node only. */
int client_hello(struct client *c, struct errbuf *e);

/* Sends `req` (version, time, nonce and, when signing, the node it is for
 * (client_hello on first use) filled in here) and decodes the
 * response into the client's arena (valid until the next call). Transport
 * failures return APL_ENET/APL_ETIMEDOUT; an error answered by the node is
 * returned in (*resp)->error with 0. */
int client_call(struct client *c, Appeal__Request *req, Appeal__Response **resp, struct errbuf *e);

/* Opens a session on this connection (docs/security.md "Sessions"): one
 * signed request with an ephemeral X25519 key; the node's answer is
 * checked against its origin key (from client_hello). From then on
 * client_call sends a counter and a MAC instead of a signature, until the
 * session expires (the node answers ERR_UNAUTHENTICATED) or the
 * connection closes. Needs client_sign_with first. */
int client_session_open(struct client *c, struct errbuf *e);

/* The session's parts both sides compute. The transcript both sign and
 * derive from: "appeal-session-v1" || id || client_kx || node_kx || pk. */
void client_session_transcript(const uint8_t id[SESSION_ID_BYTES],
                               const uint8_t client_kx[SESSION_KX_BYTES],
                               const uint8_t node_kx[SESSION_KX_BYTES], const uint8_t pk[32],
                               uint8_t out[SESSION_TRANSCRIPT_BYTES]);
/* The MAC key: BLAKE2b-256 keyed with the client-to-node crypto_kx key over
 * the transcript. */
void client_session_key(const uint8_t kx_key[32],
                        const uint8_t transcript[SESSION_TRANSCRIPT_BYTES],
                        uint8_t out[SESSION_KEY_BYTES]);
/* A request's MAC: BLAKE2b-256 keyed with `key` over
 * "appeal-session-req-v1" || counter (little-endian) || request. */
void client_session_mac(const uint8_t key[SESSION_KEY_BYTES], uint64_t counter,
                        const uint8_t *request, size_t len, uint8_t out[SESSION_MAC_BYTES]);

/* What client_call sends for `req` (filled in as it says; signed, or
 * counted and MAC'd in a session), malloc'd into *out: for a caller that
 * keeps several requests in flight on the socket's contexts (nng_ctx). */
int client_pack(struct client *c, Appeal__Request *req, uint8_t **out, size_t *out_len,
                struct errbuf *e);

/* Sends raw bytes and decodes whatever comes back (tests of bad input). */
int client_call_raw(struct client *c, const void *data, size_t len, Appeal__Response **resp,
                    struct errbuf *e);

/* Name of a wire error code: "bad_request", "not_found", ... */
const char *client_code_name(int code);
/* The wire error code (Appeal__ErrorCode) that stands for APL_* `rc`: what
 * the node answers and appealctl prints for a local failure. */
int client_error_code(int rc);

#endif
