/*
 * access.h: the applicant's access code (docs/notifications.md, docs/open311.md).
 *
 * On filing the node draws a random code, hands it to the applicant once
 * (the receipt) and writes only a salted hash of it into AppealFiled
 * (access_hash, docs/record-format.md 4.2). With the appeal's number and
 * the code the applicant reads their own appeal, rates the answer and
 * complains about it.
 *
 * The code is ACCESS_CODE_BITS random bits written in lower-case base32
 * (RFC 4648 alphabet, no padding): ACCESS_CODE_CHARS characters. Input is
 * read case-insensitively, with spaces and dashes ignored (a receipt prints
 * it in groups of four).
 *
 * The hash is salt (ACCESS_SALT_BYTES random) || BLAKE2b-256(code, key =
 * salt). A fast hash is enough: a code has 120 bits of entropy, so the hash
 * in the replicated record cannot be searched; online guessing is bounded
 * by the endpoints' rate limits.
 */
#ifndef APPEAL_ACCESS_H
#define APPEAL_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    ACCESS_CODE_BYTES = 15, /* 120 bits */
    ACCESS_CODE_BITS = ACCESS_CODE_BYTES * 8,
    ACCESS_CODE_CHARS = ACCESS_CODE_BYTES * 8 / 5, /* 24 */
    ACCESS_SALT_BYTES = 16,
    ACCESS_HASH_BYTES = ACCESS_SALT_BYTES + 32, /* 48 */
    ACCESS_INPUT_CHARS_MAX = 64,                /* what a caller may send, grouping included */
};

/* Draws a new code (NUL-terminated, ACCESS_CODE_CHARS long) and its hash. */
void access_code_new(char code[ACCESS_CODE_CHARS + 1], uint8_t hash[ACCESS_HASH_BYTES]);

/* True when `input` (grouping and case ignored) is the code behind `hash`.
 * A hash of another length, an input of the wrong shape: false. The
 * comparison of the digests is constant-time. */
bool access_code_check(const char *input, const uint8_t *hash, size_t hash_len);

#endif
