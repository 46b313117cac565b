/*
 * keys.h: a node's keys and the cryptography built on them (libsodium).
 *
 *  - signing key (Ed25519): the node's origin; signs every record, once.
 *  - box key (X25519): receives applicants' data sealed by another node
 *    when an appeal is forwarded here (crypto_box_seal, ~90 us; rare).
 *  - data key (XChaCha20-Poly1305): encrypts applicants' personal data and
 *    the texts of appeals at rest and in replicas (~1 us per appeal). It
 *    never leaves the node; other nodes store ciphertext they cannot open.
 *
 * `appeal-node init` writes them to DATA/sign.key, DATA/box.key and
 * DATA/data.key with mode 0600, refusing to overwrite. Losing them loses
 * the ability to sign and to read the region's personal data: back them up
 * (docs/operations.md).
 *
 * A key id is BLAKE2b-256("appeal-key-id" || public key); ids of different
 * keys never collide in practice, and an id is never reused.
 */
#ifndef APPEAL_KEYS_H
#define APPEAL_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    KEY_PK_BYTES = 32,
    KEY_SK_BYTES = 64,
    KEY_ID_BYTES = 32,
    SIG_BYTES = 64,
    HASH_BYTES = 32,
    BOX_PK_BYTES = 32,
    BOX_SK_BYTES = 32,
    DATA_KEY_BYTES = 32,
    DATA_KEY_ID_BYTES = 8,
    APPLICANT_TAG_BYTES = 16,
    SEAL_NONCE_BYTES = 24,
    SEAL_OVERHEAD_BYTES = 24 + 16, /* nonce and tag */
    BOX_SEAL_OVERHEAD_BYTES = 48,
    KEY_SHORT_HEX = 16, /* hex digits shown for a key id in logs */
};

enum { KEY_ROTATIONS_MAX = 16 };

struct sigahead;

struct node_keys {
    /* The origin: the log's identity, named in every record and in the
     * cluster file. It never changes. */
    uint8_t sign_pk[KEY_PK_BYTES];
    /* The key that signs now: the origin's own until a rotation
     * (`appeal-node rotate-key`), then its successor; DIR/origin.pub keeps
     * the origin's public key once sign.key holds a successor. */
    uint8_t sign_sk[KEY_SK_BYTES];
    uint8_t signer_pk[KEY_PK_BYTES];
    /* Signatures' costly half made ahead (sigahead.h); NULL signs as usual. */
    struct sigahead *ahead;
    /* The KeyRotated records from the origin key to the signer, in order:
     * peers that have not replicated them yet check a message signed by
     * the signer against them (node_open loads them). */
    uint8_t *rotation[KEY_ROTATIONS_MAX];
    size_t rotation_len[KEY_ROTATIONS_MAX];
    size_t n_rotations;
    uint8_t box_pk[BOX_PK_BYTES];
    uint8_t box_sk[BOX_SK_BYTES];
    uint8_t data_key[DATA_KEY_BYTES];
    uint8_t data_key_id[DATA_KEY_ID_BYTES];
    uint8_t tag_key[32]; /* derived from the data key: applicant tags */
};

/* Fresh random keys. */
void keys_generate(struct node_keys *k);
/* Writes the secret files (mode 0600); APL_EEXIST if any exists. */
int keys_save(const char *dir, const struct node_keys *k, struct errbuf *e);
int keys_load(const char *dir, struct node_keys *k, struct errbuf *e);
/* Wipes secrets from memory. */
void keys_wipe(struct node_keys *k);

/* Reads/writes one Ed25519 key file (an official's or the admin's). */
int keys_load_signing(const char *path, uint8_t pk[KEY_PK_BYTES], uint8_t sk[KEY_SK_BYTES],
                      struct errbuf *e);
int keys_save_signing(const char *path, const uint8_t sk[KEY_SK_BYTES], const char *what,
                      struct errbuf *e);

/* An Ed25519 public key from 64 hex digits, a public key file (.pub) or
 * a secret key file (its public half). */
int keys_parse_public(const char *arg, uint8_t pk[KEY_PK_BYTES], struct errbuf *e);
/* Writes a public key file (mode 0644); APL_EEXIST if it exists. */
int keys_save_public(const char *path, const uint8_t pk[KEY_PK_BYTES], const char *what,
                     struct errbuf *e);

void key_id(const uint8_t pk[KEY_PK_BYTES], uint8_t out[KEY_ID_BYTES]);
/* First KEY_SHORT_HEX hex digits of the key id of `pk`. */
void key_id_short(const uint8_t pk[KEY_PK_BYTES], char out[KEY_SHORT_HEX + 1]);

void hash_bytes(const uint8_t *data, size_t len, uint8_t out[HASH_BYTES]);

/* XChaCha20-Poly1305 under the data key; `number` is the associated data,
 * binding the ciphertext to its appeal. Output: nonce || ciphertext || tag,
 * malloc'd. */
int seal_data(const struct node_keys *k, const char *number, const uint8_t *pt, size_t len,
              uint8_t **out, size_t *out_len);
/* APL_EAUTH if the ciphertext was not made by this node's key for `number`. */
int open_data(const struct node_keys *k, const char *number, const uint8_t *ct, size_t len,
              uint8_t **out, size_t *out_len);

/* The same with any associated data (an official's reason binds the
 * appeal number, the event and its version: docs/record-format.md 7.6). */
int seal_data_ad(const struct node_keys *k, const char *ad, const uint8_t *pt, size_t len,
                 uint8_t **out, size_t *out_len);
int open_data_ad(const struct node_keys *k, const char *ad, const uint8_t *ct, size_t len,
                 uint8_t **out, size_t *out_len);

/* crypto_box_seal to another node's box key, and its opening. */
int seal_box(const uint8_t box_pk[BOX_PK_BYTES], const uint8_t *pt, size_t len, uint8_t **out,
             size_t *out_len);
int open_box(const struct node_keys *k, const uint8_t *ct, size_t len, uint8_t **out,
             size_t *out_len);

/* Keyed hash of an IIN: equal for the same person on this node, meaningless
 * elsewhere. */
void applicant_tag(const struct node_keys *k, const char *iin, uint8_t out[APPLICANT_TAG_BYTES]);

#endif
