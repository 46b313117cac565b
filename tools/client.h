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
#include <stdint.h>

#include "api.pb-c.h"
#include "err.h"
#include "pbx.h"

struct client {
    nng_socket sock;
    int timeout_ms;
    struct arena arena; /* holds the last response */
};

int client_open(struct client *c, const char *url, int timeout_ms, struct errbuf *e);
void client_close(struct client *c);

/* Sends `req` (version, time and nonce filled in here) and decodes the
 * response into the client's arena (valid until the next call). Transport
 * failures return APL_ENET/APL_ETIMEDOUT; an error answered by the node is
 * returned in (*resp)->error with 0. */
int client_call(struct client *c, Appeal__Request *req, Appeal__Response **resp, struct errbuf *e);

/* Sends raw bytes and decodes whatever comes back (tests of bad input). */
int client_call_raw(struct client *c, const void *data, size_t len, Appeal__Response **resp,
                    struct errbuf *e);

/* Name of a wire error code: "bad_request", "not_found", ... */
const char *client_code_name(int code);

#endif
