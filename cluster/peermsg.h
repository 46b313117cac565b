/*
 * peermsg.h: signed node-to-node messages (docs/protocol.md).
 *
 * Every message between nodes (pulls, pushes, heads, live queries) is a
 * PeerMessage: the exact bytes of a PeerBody, the sender's origin key, and
 * its Ed25519 signature over "appeal-peer-v1" || BLAKE2b-256(body). The
 * receiver refuses a sender that its cluster file does not list, a bad
 * signature, and a clock more than PEER_CLOCK_SKEW_MAX_MS off its own.
 */
#ifndef APPEAL_PEERMSG_H
#define APPEAL_PEERMSG_H

#include <nng/nng.h>

#include "clusterfile.h"
#include "err.h"
#include "keys.h"
#include "pbdecode.h"
#include "repl.pb-c.h"
#include "store.h"

enum {
    PEER_CLOCK_SKEW_MAX_MS = 10 * 60 * 1000,
    PEER_RECV_BYTES_MAX = 16 * 1024 * 1024,
    PEER_REPEATED_MAX = 50000,
};

/* Fills version and time (the system clock, plus `skew_ms`: zero except
 * in clock-skew drills), signs `body` with `k` and packs the message. */
int peermsg_pack(const struct node_keys *k, int64_t skew_ms, Appeal__PeerBody *body, nng_msg **out);

/* Checks and decodes a message from untrusted bytes into `a`; with
 * `expect`, the sender must be that node. With `s`, the signing key must
 * be the one this node's replica of the sender's log says signs now, or a
 * successor the message's key proof leads to. */
int peermsg_open(const struct cluster *c, struct store *s, const void *data, size_t len,
                 struct arena *a, const struct cluster_node *expect, Appeal__PeerBody **body,
                 const struct cluster_node **from, struct errbuf *e);

#endif
