/*
 * api.h: the client API, nng REQ/REP with protobuf messages (api.proto).
 *
 * One REP socket listening on the node's API address, served by
 * API_CONTEXTS nng contexts, each an asynchronous state machine (receive,
 * handle, send). Reads are answered on nng's threads from short read-only
 * transactions; writes go to the writer and are answered after their
 * commit. NNG_OPT_RECVMAXSZ is set: a message up to API_RECV_BYTES_MAX is
 * received and, past REQUEST_BYTES_MAX, answered with ERR_TOO_LARGE;
 * larger ones make nng drop the connection before anything is allocated.
 */
#ifndef APPEAL_API_H
#define APPEAL_API_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "api.pb-c.h"
#include "appeal.h"
#include "auth.h"
#include "err.h"
#include "pbdecode.h"

struct node;
struct api;

enum {
    /* What nng holds for one message while its bytes arrive: past
     * REQUEST_BYTES_MAX a request is answered ERR_TOO_LARGE, past this the
     * connection is dropped. Stalled senders hold at most
     * --connections-max times this, for at most --idle-timeout-ms. */
    API_RECV_BYTES_MAX = 256 * 1024,
    /* Requests remembered for replay protection: at most ~64 MiB (16-byte
     * digests, half-full tables); past it requests wait for the window. */
    AUTH_REPLAY_ENTRIES_MAX = 2 * 1024 * 1024,
    AUTH_WINDOW_MS_DEFAULT = 60 * 1000,
};
_Static_assert((long)API_RECV_BYTES_MAX > (long)REQUEST_BYTES_MAX,
               "a request past REQUEST_BYTES_MAX is received, to be answered ERR_TOO_LARGE");

int api_start(struct api **out, struct node *n, const char *url, struct errbuf *e);
/* First step of shutdown: cancels the live queries (the running one stops
 * waiting for peers, the queued ones are answered "the node is shutting
 * down") and waits up to LIVE_STOP_WAIT_S for those answers to be sent.
 * Later live queries are refused the same way. */
void api_stop_live(struct api *a);
/* Stops every context, then closes the socket with its listener and
 * connections, frees `a`. The writer must be stopped first, so no write
 * completion is still to come: until then the listener stays open and every
 * request in flight gets its answer (or "the node is shutting down"). */
void api_stop(struct api *a);

/* Decodes a request from untrusted bytes: size limit, protobuf guards,
 * version and operation. The messages live in `a`. */
int api_decode(const uint8_t *data, size_t len, struct arena *a, Appeal__ClientRequest **outer,
               Appeal__Request **req, struct errbuf *e);

/* One client write, on the writer thread inside its transaction `t`: the
 * grant of `who` checked again (a revocation committed since the request
 * was authenticated, even earlier in this batch, wins), its roles against
 * `req`, then appeal_file / appeal_act / appeal_grant / appeal_revoke with
 * `who` as the actor. The nng API and Open311 (node/open311.c) both write
 * through it, so a filing is the same whichever door it came in by.
 * `res->record` is freed first and malloc'd anew on success. */
int api_write(struct node *n, MDB_txn *t, struct principal *who, const Appeal__Request *req,
              struct appeal_result *res, struct errbuf *e);
/* The receipt of a write's result; points into `res` and `n`. */
void api_receipt(struct node *n, const struct appeal_result *res, Appeal__Receipt *rc);

#endif
