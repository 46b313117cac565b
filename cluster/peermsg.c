#include "peermsg.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "assert.h"
#include "clock.h"
#include "chain.h"
#include "record.h"

/* What a peer message's signature covers: a context string and the
 * BLAKE2b-256 of the body, so a large answer costs one fast hash pass
 * instead of Ed25519's two SHA-512 passes over all of it. */
enum { PEER_SIGNED_BYTES = 14 + HASH_BYTES };

static void peer_signed(const uint8_t *body, size_t len, uint8_t out[PEER_SIGNED_BYTES]) {
    memcpy(out, "appeal-peer-v1", 14);
    hash_bytes(body, len, out + 14);
}

/* Signs the encoded body `bb` as this node and packs the PeerMessage. */
static int sign_pack(const struct node_keys *k, const uint8_t *bb, size_t blen, nng_msg **out) {
    uint8_t sig[SIG_BYTES], signed_part[PEER_SIGNED_BYTES];
    peer_signed(bb, blen, signed_part);
    crypto_sign_detached(sig, NULL, signed_part, sizeof signed_part, k->sign_sk);
    Appeal__PeerMessage m = APPEAL__PEER_MESSAGE__INIT;
    m.body.data = (uint8_t *)bb;
    m.body.len = blen;
    m.sender.data = (uint8_t *)k->sign_pk;
    m.sender.len = KEY_PK_BYTES;
    m.sig.data = sig;
    m.sig.len = SIG_BYTES;
    ProtobufCBinaryData proof[KEY_ROTATIONS_MAX];
    for (size_t i = 0; i < k->n_rotations; i++) {
        proof[i].data = k->rotation[i];
        proof[i].len = k->rotation_len[i];
    }
    m.key_proof = proof;
    m.n_key_proof = k->n_rotations;
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    int rv = nng_msg_alloc(out, n);
    if (rv == 0) {
        protobuf_c_message_pack(&m.base, nng_msg_body(*out));
    }
    return rv == 0 ? 0 : APL_ENOMEM;
}

/* Signs `body` as this node and packs the PeerMessage into an nng message. */
int peermsg_pack(const struct node_keys *k, int64_t skew_ms, Appeal__PeerBody *body,
                 nng_msg **out) {
    body->version = 1;
    body->time_ms = clock_system_ms() + skew_ms;
    size_t blen = protobuf_c_message_get_packed_size(&body->base);
    uint8_t *bb = malloc(blen ? blen : 1);
    if (bb == NULL) {
        return APL_ENOMEM;
    }
    protobuf_c_message_pack(&body->base, bb);
    int rc = sign_pack(k, bb, blen, out);
    free(bb);
    return rc;
}

int peermsg_pack_z(const struct node_keys *k, int64_t skew_ms, Appeal__PeerBody *body,
                   nng_msg **out, struct metrics *m) {
    ASSERT(body->msg_case == APPEAL__PEER_BODY__MSG_PULLED ||
           body->msg_case == APPEAL__PEER_BODY__MSG_DELIVER);
    body->version = 0;
    body->time_ms = 0;
    size_t raw_len = protobuf_c_message_get_packed_size(&body->base);
    if (raw_len > PEER_RAW_BYTES_MAX) {
        return APL_ETOOBIG; /* the receiver would refuse it */
    }
    size_t cap = ZSTD_compressBound(raw_len);
    uint8_t *raw = malloc(raw_len ? raw_len : 1), *z = malloc(cap);
    int rc = raw != NULL && z != NULL ? 0 : APL_ENOMEM;
    if (rc == 0) {
        protobuf_c_message_pack(&body->base, raw);
        size_t zlen = ZSTD_compress(z, cap, raw, raw_len, PEER_ZSTD_LEVEL);
        rc = ZSTD_isError(zlen) ? APL_ENOMEM : 0;
        if (rc == 0) {
            Appeal__Packed pk = APPEAL__PACKED__INIT;
            pk.codec = PEER_CODEC_ZSTD;
            pk.raw_bytes = (uint32_t)raw_len;
            pk.data.data = z;
            pk.data.len = zlen;
            Appeal__PeerBody outer = APPEAL__PEER_BODY__INIT;
            outer.msg_case = APPEAL__PEER_BODY__MSG_PACKED;
            outer.packed = &pk;
            rc = peermsg_pack(k, skew_ms, &outer, out);
        }
        if (rc == 0 && m != NULL) {
            atomic_fetch_add_explicit(&m->wire_raw_bytes, raw_len, memory_order_relaxed);
            atomic_fetch_add_explicit(&m->wire_packed_bytes, zlen, memory_order_relaxed);
        }
    }
    free(raw);
    free(z);
    return rc;
}

/* Opens a peer message from untrusted bytes: decodes within limits,
 * checks the sender is a known node (and `expect` if given), the
 * signature, and the clock. */
/* The key that signed a message of origin `cn`: its origin key, or the
 * successor its key proof leads to. The chain must pass through the key
 * our own replica of its log says signs now (`known`): a retired key
 * cannot speak for it any more, with or without a proof of its own. */
static int signer_of(const Appeal__PeerMessage *m, const struct cluster_node *cn,
                     const uint8_t *known, struct arena *a, uint8_t key[KEY_PK_BYTES],
                     struct errbuf *e) {
    memcpy(key, cn->sign_pk, KEY_PK_BYTES);
    bool through = known == NULL || memcmp(known, key, KEY_PK_BYTES) == 0;
    if (m->n_key_proof > KEY_ROTATIONS_MAX) {
        return err_set(e, APL_EAUTH, "a key proof of more than %d rotations from %s",
                       KEY_ROTATIONS_MAX, cn->juris);
    }
    for (size_t i = 0; i < m->n_key_proof; i++) {
        struct record rec;
        size_t mark = a->used_bytes;
        if (rec_decode(m->key_proof[i].data, m->key_proof[i].len, a, &rec, NULL) != 0 ||
            rec.body->event_case != APPEAL__BODY__EVENT_KEY_ROTATED ||
            memcmp(rec.body->origin.data, cn->sign_pk, KEY_PK_BYTES) != 0 ||
            !rec_verify_sig(&rec, key)) {
            return err_set(e, APL_EAUTH, "bad key proof in a message from %s", cn->juris);
        }
        memcpy(key, rec.body->key_rotated->new_key.data, KEY_PK_BYTES);
        a->used_bytes = mark;
        through = through || memcmp(known, key, KEY_PK_BYTES) == 0;
    }
    if (!through) {
        return err_set(e, APL_EAUTH, "message from %s signed by a key its log has retired",
                       cn->juris);
    }
    return 0;
}

/* A Packed body's content, decompressed within `raw_max` bytes into `a`
 * and decoded: `pulled` or `deliver`, nothing else (no Packed in Packed). */
static int unpack_z(const Appeal__Packed *pk, size_t raw_max, struct arena *a,
                    const struct cluster_node *cn, Appeal__PeerBody **inner, struct errbuf *e) {
    if (pk->codec != PEER_CODEC_ZSTD) {
        return err_set(e, APL_EINVAL, "%s sent a packed message in codec %u", cn->juris, pk->codec);
    }
    if (raw_max > PEER_RAW_BYTES_MAX) {
        raw_max = PEER_RAW_BYTES_MAX;
    }
    unsigned long long declared = ZSTD_getFrameContentSize(pk->data.data, pk->data.len);
    if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN ||
        declared != pk->raw_bytes) {
        return err_set(e, APL_EINVAL,
                       "%s sent a packed message whose zstd frame is malformed or "
                       "does not declare its size",
                       cn->juris);
    }
    if (declared > raw_max) {
        return err_set(e, APL_ETOOBIG,
                       "%s sent a packed message of %llu bytes decompressed, "
                       "more than %zu: refused without decompressing",
                       cn->juris, declared, raw_max);
    }
    uint8_t *raw = arena_new(a, (size_t)declared + 1);
    if (raw == NULL) {
        return err_set(e, APL_ENOMEM, "no room to decompress a message from %s", cn->juris);
    }
    /* The output buffer holds the declared size and no more: a frame that
     * decodes to more fails here instead of growing anything. */
    size_t got = ZSTD_decompress(raw, (size_t)declared, pk->data.data, pk->data.len);
    if (ZSTD_isError(got) || got != declared) {
        return err_set(e, APL_EINVAL,
                       "%s sent a packed message that does not decompress to its "
                       "declared size",
                       cn->juris);
    }
    Appeal__PeerBody *b = (Appeal__PeerBody *)pb_unpack(&appeal__peer_body__descriptor, raw, got, a,
                                                        PEER_REPEATED_MAX, e);
    if (b == NULL) {
        return e->code ? e->code : APL_EINVAL;
    }
    if (b->msg_case != APPEAL__PEER_BODY__MSG_PULLED &&
        b->msg_case != APPEAL__PEER_BODY__MSG_DELIVER) {
        return err_set(e, APL_EINVAL,
                       "%s packed something other than a pull answer or a "
                       "delivery",
                       cn->juris);
    }
    *inner = b;
    return 0;
}

/* Replaces a Packed body's msg by what it carries. */
static int open_packed(Appeal__PeerBody *b, size_t raw_max, struct arena *a,
                       const struct cluster_node *cn, struct errbuf *e) {
    Appeal__PeerBody *inner = NULL; /* set by unpack_z on success (-O2 cannot tell) */
    int rc = unpack_z(b->packed, raw_max, a, cn, &inner, e);
    if (rc != 0) {
        return rc;
    }
    b->msg_case = inner->msg_case;
    if (inner->msg_case == APPEAL__PEER_BODY__MSG_PULLED) {
        b->pulled = inner->pulled;
    } else {
        b->deliver = inner->deliver;
    }
    return 0;
}

int peermsg_open(const struct cluster *c, struct store *s, const void *data, size_t len,
                 struct arena *a, const struct cluster_node *expect, Appeal__PeerBody **body,
                 const struct cluster_node **from, struct errbuf *e) {
    bool packed;
    return peermsg_open_max(c, s, data, len, PEER_RAW_BYTES_MAX, a, expect, body, from, &packed, e);
}

int peermsg_open_max(const struct cluster *c, struct store *s, const void *data, size_t len,
                     size_t raw_max, struct arena *a, const struct cluster_node *expect,
                     Appeal__PeerBody **body, const struct cluster_node **from, bool *packed,
                     struct errbuf *e) {
    *packed = false;
    if (len > PEER_RECV_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "peer message of %zu bytes exceeds %d", len,
                       PEER_RECV_BYTES_MAX);
    }
    Appeal__PeerMessage *m =
        (Appeal__PeerMessage *)pb_unpack(&appeal__peer_message__descriptor, data, len, a, 16, e);
    if (m == NULL) {
        return e->code ? e->code : APL_EINVAL;
    }
    if (m->sender.len != KEY_PK_BYTES || m->sig.len != SIG_BYTES) {
        return err_set(e, APL_EAUTH, "peer message without a sender key and signature");
    }
    const struct cluster_node *cn = cluster_by_origin(c, m->sender.data);
    if (cn == NULL) {
        return err_set(e, APL_EAUTH, "unknown peer: its key is not in the cluster file");
    }
    if (expect != NULL && cn != expect) {
        return err_set(e, APL_EAUTH, "answer signed by %s, not by the peer asked (%s)", cn->juris,
                       expect->juris);
    }
    struct origin_state held;
    const uint8_t *known = NULL;
    MDB_txn *t;
    if (s != NULL && store_rd_begin(s, &t) == 0) {
        if (chain_origin_get(s, t, cn->sign_pk, &held) == 0) {
            known = held.signing_key;
        }
        store_rd_end(s, t);
    }
    uint8_t key[KEY_PK_BYTES];
    int rc = signer_of(m, cn, known, a, key, e);
    if (rc != 0) {
        return rc;
    }
    uint8_t signed_part[PEER_SIGNED_BYTES];
    peer_signed(m->body.data, m->body.len, signed_part);
    if (crypto_sign_verify_detached(m->sig.data, signed_part, sizeof signed_part, key) != 0) {
        return err_set(e, APL_EAUTH, "bad signature on a message from %s", cn->juris);
    }
    Appeal__PeerBody *b = (Appeal__PeerBody *)pb_unpack(
        &appeal__peer_body__descriptor, m->body.data, m->body.len, a, PEER_REPEATED_MAX, e);
    if (b == NULL) {
        return e->code ? e->code : APL_EINVAL;
    }
    if (b->version != 1) {
        return err_set(e, APL_EINVAL, "peer %s speaks protocol version %u", cn->juris, b->version);
    }
    int64_t skew = b->time_ms - clock_system_ms();
    if (skew > PEER_CLOCK_SKEW_MAX_MS || skew < -PEER_CLOCK_SKEW_MAX_MS) {
        return err_set(e, APL_EAUTH, "message from %s is %lld s off our clock", cn->juris,
                       (long long)(skew / 1000));
    }
    if (b->msg_case == APPEAL__PEER_BODY__MSG_PACKED) {
        if ((rc = open_packed(b, raw_max, a, cn, e)) != 0) {
            return rc;
        }
        *packed = true;
    }
    *body = b;
    if (from != NULL) {
        *from = cn;
    }
    return 0;
}
