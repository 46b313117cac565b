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

struct client {
    nng_socket sock;
    int timeout_ms;
    struct arena arena; /* holds the last response */
    bool signing;       /* requests are signed with `sk` */
    uint8_t pk[32];
    uint8_t sk[64];
    char node[16]; /* the node's jurisdiction, asked once (client_hello) */
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

/* Sends raw bytes and decodes whatever comes back (tests of bad input). */
int client_call_raw(struct client *c, const void *data, size_t len, Appeal__Response **resp,
                    struct errbuf *e);

/* Name of a wire error code: "bad_request", "not_found", ... */
const char *client_code_name(int code);
/* The wire error code (Appeal__ErrorCode) that stands for APL_* `rc`: what
 * the node answers and appealctl prints for a local failure. */
int client_error_code(int rc);

#endif
