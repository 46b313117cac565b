#include "keys.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigahead.h"
#include "util.h"

static const char key_id_context[] = "appeal-key-id";

void key_id(const uint8_t pk[KEY_PK_BYTES], uint8_t out[KEY_ID_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, KEY_ID_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)key_id_context, sizeof key_id_context - 1);
    crypto_generichash_update(&st, pk, KEY_PK_BYTES);
    crypto_generichash_final(&st, out, KEY_ID_BYTES);
}

void key_id_short(const uint8_t pk[KEY_PK_BYTES], char out[KEY_SHORT_HEX + 1]) {
    uint8_t id[KEY_ID_BYTES];
    key_id(pk, id);
    util_hex(id, KEY_SHORT_HEX / 2, out);
}

void hash_bytes(const uint8_t *data, size_t len, uint8_t out[HASH_BYTES]) {
    crypto_generichash(out, HASH_BYTES, data, len, NULL, 0);
}

static void derive(struct node_keys *k) {
    static const char id_ctx[] = "appeal-data-key-id";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, DATA_KEY_ID_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)id_ctx, sizeof id_ctx - 1);
    crypto_generichash_update(&st, k->data_key, DATA_KEY_BYTES);
    crypto_generichash_final(&st, k->data_key_id, DATA_KEY_ID_BYTES);
    crypto_kdf_derive_from_key(k->tag_key, sizeof k->tag_key, 1, "appltag_", k->data_key);
}

void keys_generate(struct node_keys *k) {
    crypto_sign_keypair(k->sign_pk, k->sign_sk);
    memcpy(k->signer_pk, k->sign_pk, KEY_PK_BYTES);
    crypto_box_keypair(k->box_pk, k->box_sk);
    crypto_aead_xchacha20poly1305_ietf_keygen(k->data_key);
    derive(k);
}

void keys_wipe(struct node_keys *k) {
    for (size_t i = 0; i < k->n_rotations; i++) {
        free(k->rotation[i]);
    }
    sigahead_stop(k->ahead); /* a node that failed to start serving still has it */
    sodium_memzero(k, sizeof *k);
}

enum { KEY_FILE_BYTES_MAX = 4096 };

static int write_secret(const char *dir, const char *name, const char *what, const uint8_t *key,
                        size_t len, struct errbuf *e) {
    char path[4096], hex[2 * KEY_SK_BYTES + 1], text[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    util_hex(key, len, hex);
    int n = snprintf(text, sizeof text,
                     "# %s. Secret: keep mode 0600 and back it up offline.\n%s\n", what, hex);
    sodium_memzero(hex, sizeof hex);
    int rc = util_write_file(path, text, (size_t)n, 0600, true);
    sodium_memzero(text, sizeof text);
    if (rc == APL_EEXIST) {
        return err_set(e, rc, "%s already exists: refusing to overwrite a key", path);
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot write %s", path);
    }
    return 0;
}

static int read_secret(const char *path, uint8_t *key, size_t len, struct errbuf *e) {
    char *text = NULL;
    int rc = util_read_file(path, KEY_FILE_BYTES_MAX, &text, NULL);
    if (rc != 0) {
        return err_set(e, rc, "cannot read key file %s: %s", path, apl_strerror(rc));
    }
    rc = APL_EINVAL;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line = util_trim(line);
        if (*line == '#' || *line == '\0') {
            continue;
        }
        rc = util_unhex(line, key, len);
        break;
    }
    sodium_memzero(text, strlen(text));
    free(text);
    if (rc != 0) {
        return err_set(e, APL_EINVAL, "key file %s is malformed", path);
    }
    return 0;
}

int keys_save(const char *dir, const struct node_keys *k, struct errbuf *e) {
    uint8_t box[BOX_SK_BYTES + BOX_PK_BYTES];
    memcpy(box, k->box_sk, BOX_SK_BYTES);
    memcpy(box + BOX_SK_BYTES, k->box_pk, BOX_PK_BYTES);
    int rc = write_secret(dir, "sign.key", "Ed25519 signing key of this node", k->sign_sk,
                          KEY_SK_BYTES, e);
    if (rc == 0) {
        rc = write_secret(dir, "box.key", "X25519 key receiving forwarded appeals", box, sizeof box,
                          e);
    }
    if (rc == 0) {
        rc = write_secret(dir, "data.key", "XChaCha20-Poly1305 key of applicants' data",
                          k->data_key, DATA_KEY_BYTES, e);
    }
    sodium_memzero(box, sizeof box);
    return rc;
}

int keys_load(const char *dir, struct node_keys *k, struct errbuf *e) {
    char path[4096];
    uint8_t box[BOX_SK_BYTES + BOX_PK_BYTES];
    memset(k, 0, sizeof *k);
    snprintf(path, sizeof path, "%s/sign.key", dir);
    int rc = read_secret(path, k->sign_sk, KEY_SK_BYTES, e);
    if (rc == 0) {
        crypto_sign_ed25519_sk_to_pk(k->signer_pk, k->sign_sk);
        memcpy(k->sign_pk, k->signer_pk, KEY_PK_BYTES);
        snprintf(path, sizeof path, "%s/origin.pub", dir);
        if (access(path, F_OK) == 0) {
            rc = keys_parse_public(path, k->sign_pk, e);
        }
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/box.key", dir);
        rc = read_secret(path, box, sizeof box, e);
    }
    if (rc == 0) {
        memcpy(k->box_sk, box, BOX_SK_BYTES);
        crypto_scalarmult_base(k->box_pk, k->box_sk);
        if (memcmp(k->box_pk, box + BOX_SK_BYTES, BOX_PK_BYTES) != 0) {
            rc = err_set(e, APL_EINVAL, "%s: public and secret halves do not match", path);
        }
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/data.key", dir);
        rc = read_secret(path, k->data_key, DATA_KEY_BYTES, e);
    }
    sodium_memzero(box, sizeof box);
    if (rc == 0) {
        derive(k);
    } else {
        keys_wipe(k);
    }
    return rc;
}

int keys_load_signing(const char *path, uint8_t pk[KEY_PK_BYTES], uint8_t sk[KEY_SK_BYTES],
                      struct errbuf *e) {
    int rc = read_secret(path, sk, KEY_SK_BYTES, e);
    if (rc == 0) {
        crypto_sign_ed25519_sk_to_pk(pk, sk);
    }
    return rc;
}

int keys_parse_public(const char *arg, uint8_t pk[KEY_PK_BYTES], struct errbuf *e) {
    if (strlen(arg) == 2 * KEY_PK_BYTES && util_unhex(arg, pk, KEY_PK_BYTES) == 0) {
        return 0;
    }
    char *text = NULL;
    int rc = util_read_file(arg, KEY_FILE_BYTES_MAX, &text, NULL);
    if (rc != 0) {
        return err_set(e, APL_EINVAL,
                       "`%.80s` is neither a public key (64 hex digits) nor a readable key file",
                       arg);
    }
    uint8_t sk[KEY_SK_BYTES];
    rc = APL_EINVAL;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line = util_trim(line);
        if (*line == '#' || *line == '\0') {
            continue;
        }
        if (strlen(line) == 2 * KEY_PK_BYTES) {
            rc = util_unhex(line, pk, KEY_PK_BYTES);
        } else if (strlen(line) == 2 * KEY_SK_BYTES && util_unhex(line, sk, KEY_SK_BYTES) == 0) {
            crypto_sign_ed25519_sk_to_pk(pk, sk);
            rc = 0;
        }
        break;
    }
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(text, strlen(text));
    free(text);
    return rc == 0 ? 0 : err_set(e, APL_EINVAL, "%.200s holds no Ed25519 key", arg);
}

int keys_save_public(const char *path, const uint8_t pk[KEY_PK_BYTES], const char *what,
                     struct errbuf *e) {
    char hex[2 * KEY_PK_BYTES + 1], text[512];
    util_hex(pk, KEY_PK_BYTES, hex);
    int n = snprintf(text, sizeof text, "# %s. Public: give it to the node's administrator.\n%s\n",
                     what, hex);
    int rc = util_write_file(path, text, (size_t)n, 0644, true);
    if (rc == APL_EEXIST) {
        return err_set(e, rc, "%s already exists: refusing to overwrite a key", path);
    }
    return rc != 0 ? err_set(e, rc, "cannot write %s", path) : 0;
}

int keys_save_signing(const char *path, const uint8_t sk[KEY_SK_BYTES], const char *what,
                      struct errbuf *e) {
    char hex[2 * KEY_SK_BYTES + 1], text[512];
    util_hex(sk, KEY_SK_BYTES, hex);
    int n = snprintf(text, sizeof text,
                     "# %s. Secret: keep mode 0600 and back it up offline.\n%s\n", what, hex);
    sodium_memzero(hex, sizeof hex);
    int rc = util_write_file(path, text, (size_t)n, 0600, true);
    sodium_memzero(text, sizeof text);
    if (rc == APL_EEXIST) {
        return err_set(e, rc, "%s already exists: refusing to overwrite a key", path);
    }
    return rc != 0 ? err_set(e, rc, "cannot write %s", path) : 0;
}

int seal_data(const struct node_keys *k, const char *number, const uint8_t *pt, size_t len,
              uint8_t **out, size_t *out_len) {
    return seal_data_ad(k, number, pt, len, out, out_len);
}

int open_data(const struct node_keys *k, const char *number, const uint8_t *ct, size_t len,
              uint8_t **out, size_t *out_len) {
    return open_data_ad(k, number, ct, len, out, out_len);
}

int seal_data_ad(const struct node_keys *k, const char *ad, const uint8_t *pt, size_t len,
                 uint8_t **out, size_t *out_len) {
    size_t n = SEAL_NONCE_BYTES + len + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *buf = malloc(n);
    if (buf == NULL) {
        return APL_ENOMEM;
    }
    randombytes_buf(buf, SEAL_NONCE_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + SEAL_NONCE_BYTES, &clen, pt, len,
                                               (const uint8_t *)ad, strlen(ad), NULL, buf,
                                               k->data_key);
    *out = buf;
    *out_len = SEAL_NONCE_BYTES + (size_t)clen;
    return 0;
}

int open_data_ad(const struct node_keys *k, const char *ad, const uint8_t *ct, size_t len,
                 uint8_t **out, size_t *out_len) {
    if (len < SEAL_OVERHEAD_BYTES) {
        return APL_EAUTH;
    }
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        return APL_ENOMEM;
    }
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(buf, &plen, NULL, ct + SEAL_NONCE_BYTES,
                                                   len - SEAL_NONCE_BYTES, (const uint8_t *)ad,
                                                   strlen(ad), ct, k->data_key) != 0) {
        free(buf);
        return APL_EAUTH;
    }
    *out = buf;
    *out_len = (size_t)plen;
    return 0;
}

int seal_box(const uint8_t box_pk[BOX_PK_BYTES], const uint8_t *pt, size_t len, uint8_t **out,
             size_t *out_len) {
    uint8_t *buf = malloc(len + crypto_box_SEALBYTES);
    if (buf == NULL) {
        return APL_ENOMEM;
    }
    if (crypto_box_seal(buf, pt, len, box_pk) != 0) {
        free(buf);
        return APL_EINVAL;
    }
    *out = buf;
    *out_len = len + crypto_box_SEALBYTES;
    return 0;
}

int open_box(const struct node_keys *k, const uint8_t *ct, size_t len, uint8_t **out,
             size_t *out_len) {
    if (len < crypto_box_SEALBYTES) {
        return APL_EAUTH;
    }
    uint8_t *buf = malloc(len - crypto_box_SEALBYTES + 1);
    if (buf == NULL) {
        return APL_ENOMEM;
    }
    if (crypto_box_seal_open(buf, ct, len, k->box_pk, k->box_sk) != 0) {
        free(buf);
        return APL_EAUTH;
    }
    *out = buf;
    *out_len = len - crypto_box_SEALBYTES;
    return 0;
}

void applicant_tag(const struct node_keys *k, const char *iin, uint8_t out[APPLICANT_TAG_BYTES]) {
    crypto_generichash(out, APPLICANT_TAG_BYTES, (const uint8_t *)iin, strlen(iin), k->tag_key,
                       sizeof k->tag_key);
}
