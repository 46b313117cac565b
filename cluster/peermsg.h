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
#include "metrics.h"
#include "pbdecode.h"
#include "repl.pb-c.h"
#include "store.h"

enum {
    PEER_CLOCK_SKEW_MAX_MS = 10 * 60 * 1000,
    PEER_RECV_BYTES_MAX = 16 * 1024 * 1024,
    PEER_REPEATED_MAX = 50000,
    /* A Packed message decompresses to at most this many bytes: checked
     * against the frame's declared size before decompressing, and the
     * output buffer is no larger (a zip bomb is refused, not expanded). */
    PEER_RAW_BYTES_MAX = 16 * 1024 * 1024,
    PEER_ZSTD_LEVEL = 3,
    PEER_CODEC_ZSTD = 1, /* Packed.codec, and bit 0 of PullRequest.codecs */
};

/* Fills version and time (the system clock, plus `skew_ms`: zero except
 * in clock-skew drills), signs `body` with `k` and packs the message. */
int peermsg_pack(const struct node_keys *k, int64_t skew_ms, Appeal__PeerBody *body, nng_msg **out);

/* As peermsg_pack, but `body`'s msg (`pulled` or `deliver`) travels as a
 * zstd frame in a Packed message (docs/protocol.md 5.6). With `m`, the
 * sizes before and after compression are counted (wire_raw_bytes,
 * wire_packed_bytes). */
int peermsg_pack_z(const struct node_keys *k, int64_t skew_ms, Appeal__PeerBody *body,
                   nng_msg **out, struct metrics *m);

/* Checks and decodes a message from untrusted bytes into `a`; with
 * `expect`, the sender must be that node. With `s`, the signing key must
 * be the one this node's replica of the sender's log says signs now, or a
 * successor the message's key proof leads to. */
int peermsg_open(const struct cluster *c, struct store *s, const void *data, size_t len,
                 struct arena *a, const struct cluster_node *expect, Appeal__PeerBody **body,
                 const struct cluster_node **from, struct errbuf *e);
/* As peermsg_open; a Packed body is decompressed (at most `raw_max`
 * bytes, else APL_ETOOBIG) and replaced by what it carries, so the caller
 * sees `pulled` or `deliver` either way; *packed says which it was. */
int peermsg_open_max(const struct cluster *c, struct store *s, const void *data, size_t len,
                     size_t raw_max, struct arena *a, const struct cluster_node *expect,
                     Appeal__PeerBody **body, const struct cluster_node **from, bool *packed,
                     struct errbuf *e);

#endif
